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

use std::sync::Arc;

use std::time::Instant;

use proto::smtp::{Policy, RcptVerdict};
use store::directory::{Directory, DirectoryError, Resolution};

use store::forward_failures::ForwardFailures;

/// The recipient policy over the directory.
pub struct DirectoryPolicy {
    directory: Arc<Directory>,
    postmaster: Option<String>,
    forward_failures: Arc<ForwardFailures>,
}

impl DirectoryPolicy {
    /// `postmaster`: the configured account for `postmaster@` mail, if any.
    pub fn new(directory: Arc<Directory>, postmaster: Option<String>) -> DirectoryPolicy {
        DirectoryPolicy {
            directory,
            postmaster,
            forward_failures: Arc::default(),
        }
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
        match self.directory.resolve(&address, self.postmaster.as_deref()) {
            Ok(Resolution::NotLocal) if relay_allowed => RcptVerdict::Accept(address),
            Ok(Resolution::NotLocal) => RcptVerdict::RelayDenied,
            Ok(Resolution::Unknown) => RcptVerdict::UnknownUser,
            Ok(Resolution::Loop) => RcptVerdict::Loop,
            Ok(Resolution::Deliver { local, remote }) => {
                // Backscatter: an alias that only forwards to addresses which refused mail
                // permanently would accept mail we know will bounce.
                let now = Instant::now();
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
