//! The junk filters of receiving: DNS block- and allowlists ([`dnsbl`]), greylisting
//! (and the full-mailbox check, `452 4.2.2`, for every client),
//! (`store::greylist`) and the sending limits of accounts and trusted clients
//! (`store::sending_limits`), applied at MAIL and RCPT through [`Screened`], a [`Policy`]
//! that wraps the directory's.
//!
//! Who meets what:
//! - an untrusted, unauthenticated client on port 25: the lists (looked up at connect by
//!   [`ClientCheck::start`], awaited before its first command after HELO/EHLO), then
//!   greylisting; an allowlisted one meets neither (nor rspamd).
//! - an authenticated account, or a client in `trusted_networks`: the sending limits,
//!   `451 4.7.1` at MAIL past `messages_per_hour`, at RCPT past `recipients_per_day`.
//!
//! The directory's verdict comes first (an unknown user is `550 5.1.1` whatever the lists
//! say; a filter refuses only a recipient the directory would accept). Not here: the DNS
//! lookups (`dnsbl::Lists`), the greylisting table and the counters (`store`).

pub mod dnsbl;
pub mod rspamd;
pub mod rspamd_draft;
pub mod rspamd_verdict;

use std::net::IpAddr;
use std::sync::Arc;

use proto::smtp::{Policy, RcptVerdict, Reply, Service};
use store::clock::Clock;
use store::greylist::{Decision, Greylist};
use store::sending_limits::SendingLimits;

use dnsbl::Listing;

/// A per-account override of the sending limits (`mailroom user limits`).
pub type LimitOverride = dyn Fn(&str) -> Option<(Option<u32>, Option<u32>)> + Send + Sync;

/// Whether a recipient's mailbox is full (`store::quota`, wired by the binary).
pub type MailboxFull = dyn Fn(&str) -> bool + Send + Sync;

/// The sending limits (0: off).
pub struct Limits {
    pub messages_per_hour: u32,
    pub recipients_per_day: u32,
    pub counts: SendingLimits,
    /// `(messages_per_hour, recipients_per_day)` of an account, each `None` for the default.
    pub overrides: Option<Box<LimitOverride>>,
}

impl Limits {
    pub fn new(messages_per_hour: u32, recipients_per_day: u32) -> Limits {
        Limits {
            messages_per_hour,
            recipients_per_day,
            counts: SendingLimits::new(),
            overrides: None,
        }
    }

    fn of(&self, account: Option<&str>) -> (u32, u32) {
        let o = account
            .and_then(|a| self.overrides.as_ref().and_then(|f| f(a)))
            .unwrap_or((None, None));
        (
            o.0.unwrap_or(self.messages_per_hour),
            o.1.unwrap_or(self.recipients_per_day),
        )
    }
}

/// What the sessions of all SMTP listeners share.
pub struct Filters {
    /// Block- and allowlists; `None`: none configured.
    pub lists: Option<Arc<dnsbl::Lists>>,
    /// Greylisting; `None`: off.
    pub greylist: Option<Arc<Greylist>>,
    pub limits: Limits,
    /// True when the account `address` names is at or over its quota (`452 4.2.2`).
    pub mailbox_full: Option<Box<MailboxFull>>,
    /// The content filter after DATA; `None`: off.
    pub rspamd: Option<Arc<rspamd::Rspamd>>,
    pub clock: Arc<dyn Clock>,
}

/// The lists' answer about one session's client: not asked, coming, or known.
#[derive(Debug)]
pub enum ClientCheck {
    NotAsked,
    Pending(tokio::task::JoinHandle<Listing>),
    Known(Listing),
}

impl ClientCheck {
    /// Starts the lookups for a client on port 25 that is not trusted.
    pub fn start(
        filters: Option<&Filters>,
        service: Service,
        ip: IpAddr,
        trusted: bool,
    ) -> ClientCheck {
        match filters.and_then(|f| f.lists.as_ref()) {
            Some(lists) if service == Service::Mx && !trusted && lists.any() => {
                ClientCheck::Pending(tokio::spawn(lists.clone().check(ip)))
            }
            _ => ClientCheck::NotAsked,
        }
    }

    /// True while the answer is still coming.
    pub fn pending(&self) -> bool {
        matches!(self, ClientCheck::Pending(_))
    }

    /// Waits for the answer (the lookups are under their own deadline).
    pub async fn wait(&mut self) {
        if let ClientCheck::Pending(handle) = self {
            let listing = handle.await.unwrap_or(Listing::Clean);
            *self = ClientCheck::Known(listing);
        }
    }

    /// True for a client on an allowlist: no other filter (greylisting, rspamd) applies.
    pub fn allowlisted(&self) -> bool {
        matches!(self, ClientCheck::Known(Listing::Allowed(_)))
    }
}

impl Drop for ClientCheck {
    fn drop(&mut self) {
        if let ClientCheck::Pending(handle) = self {
            handle.abort();
        }
    }
}

/// The directory's policy with the filters in front, for one step of one session.
pub struct Screened<'a> {
    pub inner: &'a dyn Policy,
    pub filters: &'a Filters,
    pub service: Service,
    pub ip: IpAddr,
    pub trusted: bool,
    /// The authenticated account, if any.
    pub user: Option<&'a str>,
    pub check: &'a ClientCheck,
}

impl Screened<'_> {
    /// Whose sending is counted: the account, else a trusted client's address.
    fn sender_key(&self) -> Option<String> {
        match self.user {
            Some(u) => Some(u.to_lowercase()),
            None if self.trusted => Some(format!("[{}]", self.ip)),
            None => None,
        }
    }

    fn now(&self) -> u64 {
        self.filters.clock.unix()
    }

    fn greylisted(&self, sender: &str, recipient: &str) -> Option<Reply> {
        let greylist = self.filters.greylist.as_ref()?;
        let net = store::admission::net_key(self.ip).to_string();
        match greylist.check(&Greylist::key(&net, sender, recipient), self.now()) {
            Ok(Decision::Pass) => None,
            Ok(Decision::Wait(secs)) => Some(Reply::new(
                451,
                format!(
                    "4.7.1 <{}>: Recipient address rejected: Greylisted, try again in {secs} seconds",
                    proto::smtp::address::escape(recipient)
                ),
            )),
            Err(e) => {
                // A broken table must not stop mail: let it through.
                tracing::error!("filter: event=greylist_failed error={e:?}");
                None
            }
        }
    }
}

impl Policy for Screened<'_> {
    fn may_send_as(&self, user: &str, address: &str) -> bool {
        self.inner.may_send_as(user, address)
    }

    fn check_mail(&self, sender: &str, user: Option<&str>) -> Option<Reply> {
        if let Some(refusal) = self.inner.check_mail(sender, user) {
            return Some(refusal);
        }
        let key = self.sender_key()?;
        let (per_hour, _) = self.filters.limits.of(self.user);
        if self
            .filters
            .limits
            .counts
            .take_message(&key, per_hour, self.now())
        {
            return None;
        }
        tracing::warn!(
            "filter: event=limit_reached limit=messages_per_hour max={per_hour} sender={} client=[{}]",
            proto::smtp::address::escape(&key),
            self.ip
        );
        Some(Reply::new(
            451,
            format!("4.7.1 Sending limit reached: {per_hour} messages per hour, try again later"),
        ))
    }

    fn check_rcpt(&self, address: &str, sender: &str, relay_allowed: bool) -> RcptVerdict {
        let verdict = self.inner.check_rcpt(address, sender, relay_allowed);
        let RcptVerdict::Accept(canonical) = verdict else {
            return verdict;
        };
        if self
            .filters
            .mailbox_full
            .as_ref()
            .is_some_and(|full| full(&canonical))
        {
            return RcptVerdict::Refused(Reply::new(
                452,
                format!(
                    "4.2.2 <{}>: Recipient address rejected: Mailbox full",
                    proto::smtp::address::escape(&canonical)
                ),
            ));
        }
        if let Some(key) = self.sender_key() {
            let (_, per_day) = self.filters.limits.of(self.user);
            if self
                .filters
                .limits
                .counts
                .take_recipient(&key, per_day, self.now())
            {
                return RcptVerdict::Accept(canonical);
            }
            tracing::warn!(
                "filter: event=limit_reached limit=recipients_per_day max={per_day} sender={} client=[{}]",
                proto::smtp::address::escape(&key),
                self.ip
            );
            return RcptVerdict::Refused(Reply::new(
                451,
                format!(
                    "4.7.1 Sending limit reached: {per_day} recipients per day, try again later"
                ),
            ));
        }
        if self.service != Service::Mx {
            return RcptVerdict::Accept(canonical);
        }
        match self.check {
            ClientCheck::Known(Listing::Allowed(_)) => return RcptVerdict::Accept(canonical),
            ClientCheck::Known(Listing::Blocked(zone)) => {
                return RcptVerdict::Refused(dnsbl::refusal(self.ip, zone))
            }
            // Commands pipelined behind HELO before the answer came: ask again later.
            ClientCheck::Pending(_) => {
                return RcptVerdict::Refused(Reply::new(
                    451,
                    "4.7.1 Client host check in progress, try again later",
                ))
            }
            ClientCheck::Known(Listing::Clean) | ClientCheck::NotAsked => {}
        }
        match self.greylisted(sender, &canonical) {
            Some(reply) => RcptVerdict::Refused(reply),
            None => RcptVerdict::Accept(canonical),
        }
    }
}

#[cfg(test)]
#[path = "filter_tests.rs"]
mod tests;
