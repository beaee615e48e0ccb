//! Remote addresses that recently refused mail permanently, remembered so that an alias
//! forwarding to one of them is refused at RCPT time instead of accepting mail we already know
//! will bounce (backscatter through forwarding: the bounce would go to a sender anyone can
//! forge).
//!
//! The queue runner records a remote recipient here when its MTA answered with a `5.1.x`
//! status (bad mailbox or domain, RFC 3463) or a null MX (`5.1.10`); the recipient policy
//! asks [`ForwardFailures::known_bad`] for each remote target of an alias. Entries expire after
//! [`ForwardFailures::TTL`], so a fixed mailbox is used again without an admin. In memory
//! only: a restart forgets, which costs at most one more bounce per target. Bounded in size.
//! Not here: deciding whether a DSN is sent (the runner does, from the envelope's flags).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Recently failed forwarding targets, shared by the queue runner and the RCPT policy.
#[derive(Default)]
pub struct ForwardFailures {
    entries: Mutex<HashMap<String, (Instant, String)>>,
}

impl ForwardFailures {
    /// How long a permanent failure is remembered.
    pub const TTL: Duration = Duration::from_secs(24 * 3600);
    /// At most this many addresses are remembered; the oldest go first.
    pub const MAX_ENTRIES: usize = 10_000;

    /// Whether a permanent failure with this enhanced status code means the address itself
    /// is bad (rather than this one message being refused).
    pub fn is_address_failure(status: &str) -> bool {
        status.starts_with("5.1.")
    }

    /// Records that `address` refused mail permanently at `now` with `reply`.
    pub fn record(&self, address: &str, reply: &str, now: Instant) {
        let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= Self::MAX_ENTRIES {
            map.retain(|_, (at, _)| now.saturating_duration_since(*at) < Self::TTL);
        }
        if map.len() >= Self::MAX_ENTRIES {
            if let Some(oldest) = map
                .iter()
                .min_by_key(|(_, (at, _))| *at)
                .map(|(k, _)| k.clone())
            {
                map.remove(&oldest);
            }
        }
        map.insert(address.to_lowercase(), (now, reply.to_string()));
    }

    /// The remembered reply if `address` failed permanently within [`Self::TTL`] of `now`.
    pub fn known_bad(&self, address: &str, now: Instant) -> Option<String> {
        let map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&address.to_lowercase())
            .filter(|(at, _)| now.saturating_duration_since(*at) < Self::TTL)
            .map(|(_, reply)| reply.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_case_insensitively_until_the_ttl() {
        let f = ForwardFailures::default();
        let t0 = Instant::now();
        assert_eq!(f.known_bad("a@remote.example", t0), None);
        f.record("A@Remote.Example", "550 5.1.1 no such user", t0);
        assert_eq!(
            f.known_bad("a@remote.example", t0 + Duration::from_secs(60))
                .as_deref(),
            Some("550 5.1.1 no such user")
        );
        assert_eq!(
            f.known_bad("a@remote.example", t0 + ForwardFailures::TTL),
            None
        );
    }

    #[test]
    fn bounded() {
        let f = ForwardFailures::default();
        let t0 = Instant::now();
        for i in 0..ForwardFailures::MAX_ENTRIES + 5 {
            f.record(
                &format!("u{i}@r.example"),
                "x",
                t0 + Duration::from_millis(i as u64),
            );
        }
        assert!(f.entries.lock().unwrap().len() <= ForwardFailures::MAX_ENTRIES);
        assert_eq!(
            f.known_bad("u0@r.example", t0 + Duration::from_secs(20)),
            None
        );
    }

    #[test]
    fn only_address_failures_count() {
        assert!(ForwardFailures::is_address_failure("5.1.1"));
        assert!(ForwardFailures::is_address_failure("5.1.10"));
        assert!(!ForwardFailures::is_address_failure("5.7.1"));
        assert!(!ForwardFailures::is_address_failure("4.1.1"));
    }
}
