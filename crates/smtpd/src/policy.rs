//! Who may send to whom: the [`proto::smtp::Policy`] that SMTP sessions ask at RCPT time,
//! answered from the directory.
//!
//! A recipient in one of our domains must exist (account, alias, plus-address, catch-all or
//! postmaster), else `550 5.1.1` now rather than a bounce later. A recipient in another domain
//! is accepted only from a client in `smtp.trusted_networks` or an authenticated one;
//! everyone else gets `554 5.7.1`: never an open relay. Address tricks such as `u%remote@local`
//! or a quoted `"u@remote"@local` end up as a local part of the local domain (the address is
//! split at its last `@`), so they can only be unknown local users. On submission it also says
//! which sender addresses an account owns: its own, and every address that delivers to it
//! (`postmaster@` of another domain only through an alias or the configured postmaster).
//!
//! SRS: a recipient `SRS0=...@<our domain>` (a bounce to mail we forwarded) is accepted from
//! anyone when its hash and age check out, and recorded as the original address it stands
//! for, so the queue relays it back; a forged or stale one is `550 5.1.1`.

use std::sync::Arc;

use proto::smtp::{Policy, RcptVerdict};
use store::directory::{Directory, DirectoryError, Resolution};

use store::forward_failures::ForwardFailures;

/// The recipient policy over the directory.
pub struct DirectoryPolicy {
    directory: Arc<Directory>,
    postmaster: Option<String>,
    forward_failures: Arc<ForwardFailures>,
    srs_secret: Option<Arc<[u8]>>,
    /// "Now" for the forwarding-failure memory (the runner's clock).
    clock: Arc<dyn store::clock::Clock>,
}

impl DirectoryPolicy {
    /// `postmaster`: the configured account for `postmaster@` mail, if any.
    pub fn new(directory: Arc<Directory>, postmaster: Option<String>) -> DirectoryPolicy {
        DirectoryPolicy {
            directory,
            postmaster,
            forward_failures: Arc::default(),
            srs_secret: None,
            clock: Arc::new(store::clock::SystemClock),
        }
    }

    /// Reads time from `clock` (the queue runner's, so both agree on what is recent).
    pub fn with_clock(mut self, clock: Arc<dyn store::clock::Clock>) -> DirectoryPolicy {
        self.clock = clock;
        self
    }

    /// Decodes SRS recipients with this secret (the queue runner's).
    pub fn with_srs(mut self, secret: Arc<[u8]>) -> DirectoryPolicy {
        self.srs_secret = Some(secret);
        self
    }

    /// `Some(verdict)` when `address` is an SRS address of one of our domains.
    fn check_srs(&self, address: &str) -> Option<RcptVerdict> {
        let secret = self.srs_secret.as_ref()?;
        let (local, domain) = address.rsplit_once('@')?;
        if !proto::srs::is_srs(local) {
            return None;
        }
        match self.directory.is_local_domain(&domain.to_ascii_lowercase()) {
            Ok(true) => {}
            Ok(false) => return None,
            Err(e) => {
                tracing::error!("directory lookup failed: {e}");
                return Some(RcptVerdict::TempFail);
            }
        }
        let day = self.clock.unix() / 86_400;
        Some(match proto::srs::decode(secret, local, day) {
            Ok(original) => RcptVerdict::Accept(original),
            Err(why) => {
                let why = match why {
                    proto::srs::SrsError::Malformed => "Malformed",
                    proto::srs::SrsError::BadHash => "BadHash",
                    proto::srs::SrsError::Expired => "Expired",
                };
                tracing::info!(
                    to = %format!("<{}>", proto::smtp::address::escape(address)),
                    "policy: refused: SRS address {why}"
                );
                RcptVerdict::UnknownUser
            }
        })
    }

    /// Shares the queue runner's memory of forwarding targets that refused mail, so an alias
    /// whose every target is known bad (and that has no local account) is refused at RCPT.
    pub fn with_forward_failures(mut self, failures: Arc<ForwardFailures>) -> DirectoryPolicy {
        self.forward_failures = failures;
        self
    }
}

impl Policy for DirectoryPolicy {
    fn may_send_as(&self, user: &str, address: &str) -> bool {
        if address.eq_ignore_ascii_case(user) {
            return true;
        }
        // An alias (or plus-address, or catch-all) that delivers to the account; the
        // postmaster fallback only within the account's own domain (security review 12).
        match self
            .directory
            .resolve_sender(address, self.postmaster.as_deref())
        {
            Ok(Resolution::Deliver { local, .. }) => local
                .iter()
                .any(|a| a.address.to_lowercase() == user.to_lowercase()),
            _ => false,
        }
    }

    fn check_rcpt(&self, address: &str, _sender: &str, relay_allowed: bool) -> RcptVerdict {
        let address = if address.is_empty() {
            // RFC 5321 §4.5.1: the bare `<postmaster>` must be accepted; it means the
            // postmaster of our first domain.
            match self.directory.list_domains() {
                Ok(domains) => match domains.first() {
                    Some(d) => format!("postmaster@{d}"),
                    None => return RcptVerdict::UnknownUser,
                },
                Err(e) => {
                    tracing::error!("directory lookup failed: {e}");
                    return RcptVerdict::TempFail;
                }
            }
        } else {
            address.to_string()
        };
        if let Some(verdict) = self.check_srs(&address) {
            return verdict;
        }
        match self.directory.resolve(&address, self.postmaster.as_deref()) {
            Ok(Resolution::NotLocal) if relay_allowed => RcptVerdict::Accept(address),
            Ok(Resolution::NotLocal) => RcptVerdict::RelayDenied,
            Ok(Resolution::Unknown) => RcptVerdict::UnknownUser,
            Ok(Resolution::Loop) => RcptVerdict::Loop,
            Ok(Resolution::Deliver { local, remote }) => {
                // Backscatter: an alias that only forwards to addresses which refused mail
                // permanently would accept mail we know will bounce.
                let now = self.clock.instant();
                let bad: Vec<(String, String)> = remote
                    .iter()
                    .filter_map(|t| {
                        self.forward_failures
                            .known_bad(t, now)
                            .map(|r| (t.clone(), r))
                    })
                    .collect();
                if local.is_empty() && !remote.is_empty() && bad.len() == remote.len() {
                    tracing::info!(
                        "policy: to=<{}> refused: every forwarding target failed recently ({})",
                        proto::smtp::address::escape(&address),
                        proto::smtp::address::escape(&bad[0].1)
                    );
                    return RcptVerdict::UnknownUser;
                }
                RcptVerdict::Accept(address)
            }
            // A local part that cannot name a mailbox ("u@remote"@local, "/x", ...).
            Err(DirectoryError::InvalidAddress(_)) => RcptVerdict::UnknownUser,
            Err(e) => {
                tracing::error!("directory lookup failed: {e}");
                RcptVerdict::TempFail
            }
        }
    }
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
