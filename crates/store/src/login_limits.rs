//! Failed-login accounting for SMTP AUTH and POP3 logins: per client IP and per account.
//!
//! What it does: remembers the times of recent failed logins per key (a client IP address, or
//! a normalised account name, see [`account_key`]), and says whether a key has reached the
//! limit within the window (then its logins are refused without checking the password). It
//! also computes the growing delay before a failure reply ([`backoff`]). Memory is bounded: at
//! most `max` timestamps per key, stale keys are pruned, and when the table is still full the
//! key whose last failure is oldest is evicted, so at most [`MAX_KEYS`] keys are kept.
//!
//! What it does not do: sleep (the connection loop does), log, or persist anything. Evicting
//! keys under a flood of distinct keys can forget some failures; that is the price of bounded
//! memory, and the per-IP limit still applies to the flooding client.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Prune stale keys when the table grows beyond this many keys.
const PRUNE_AT: usize = 4096;

/// Hard limit on the number of keys in one table.
pub const MAX_KEYS: usize = 2 * PRUNE_AT;

/// Longest account name (in octets) used as a key; longer names share the truncated key.
const MAX_ACCOUNT_KEY: usize = 256;

/// Failed-login counter per key: client IP addresses by default, or account names.
#[derive(Debug)]
pub struct FailedLogins<K = IpAddr> {
    max: u32,
    window: Duration,
    table: Mutex<HashMap<K, VecDeque<Instant>>>,
}

impl<K: Eq + Hash + Clone> FailedLogins<K> {
    /// At most `max` failures per `window` per key.
    pub fn new(max: u32, window: Duration) -> Self {
        FailedLogins {
            max,
            window,
            table: Mutex::new(HashMap::new()),
        }
    }

    fn expire(q: &mut VecDeque<Instant>, window: Duration, now: Instant) {
        while q.front().is_some_and(|t| now.duration_since(*t) >= window) {
            q.pop_front();
        }
    }

    /// Number of failures recorded for `key` within the window (at most `max`).
    pub fn recent(&self, key: &K) -> u32 {
        let now = Instant::now();
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        match table.get_mut(key) {
            Some(q) => {
                Self::expire(q, self.window, now);
                let n = q.len();
                if n == 0 {
                    table.remove(key);
                }
                u32::try_from(n).unwrap_or(u32::MAX)
            }
            None => 0,
        }
    }

    /// True if `key` has reached the limit and must be refused for now.
    pub fn is_blocked(&self, key: &K) -> bool {
        self.recent(key) >= self.max
    }

    /// Records one failed login for `key`; returns the number of failures now recorded for it
    /// within the window (at least 1).
    pub fn record_failure(&self, key: &K) -> u32 {
        let now = Instant::now();
        let window = self.window;
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        if !table.contains_key(key) && table.len() >= PRUNE_AT {
            table.retain(|_, q| {
                Self::expire(q, window, now);
                !q.is_empty()
            });
            if table.len() >= MAX_KEYS {
                // Still full of live keys: forget the one whose last failure is oldest.
                let oldest = table
                    .iter()
                    .min_by_key(|(_, q)| q.back().copied())
                    .map(|(k, _)| k.clone());
                if let Some(k) = oldest {
                    table.remove(&k);
                }
            }
        }
        let q = table.entry(key.clone()).or_default();
        Self::expire(q, window, now);
        q.push_back(now);
        while q.len() > self.max.max(1) as usize {
            q.pop_front();
        }
        u32::try_from(q.len()).unwrap_or(u32::MAX)
    }

    /// Number of keys currently held (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.table.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// The key for per-account accounting: the user name, ASCII-lowercased (so that case variants
/// of one name share a counter) and truncated to a bounded length.
pub fn account_key(user: &str) -> String {
    let mut end = user.len().min(MAX_ACCOUNT_KEY);
    while !user.is_char_boundary(end) {
        end -= 1;
    }
    user[..end].to_ascii_lowercase()
}

/// The delay before answering a failed login: `base × 2^(failures − 1)`, at most `cap`
/// (`base` for the first failure, doubling for each further recent failure).
pub fn backoff(base: Duration, failures: u32, cap: Duration) -> Duration {
    let exp = failures.saturating_sub(1).min(20);
    base.saturating_mul(1u32 << exp).min(cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_max_and_expires() {
        let f = FailedLogins::new(2, Duration::from_millis(50));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(!f.is_blocked(&ip));
        assert_eq!(f.record_failure(&ip), 1);
        assert!(!f.is_blocked(&ip));
        assert_eq!(f.record_failure(&ip), 2);
        assert!(f.is_blocked(&ip));
        assert!(!f.is_blocked(&other));
        // At most `max` timestamps are kept.
        assert_eq!(f.record_failure(&ip), 2);
        std::thread::sleep(Duration::from_millis(60));
        assert!(!f.is_blocked(&ip));
        assert_eq!(f.recent(&ip), 0);
    }

    #[test]
    fn per_account_lockout_is_shared_by_all_addresses() {
        // The loop records account failures under account_key(user), whatever the client IP,
        // so failures from different addresses add up and case variants share the counter.
        let accounts: FailedLogins<String> = FailedLogins::new(3, Duration::from_secs(60));
        let ips = FailedLogins::new(3, Duration::from_secs(60));
        for (i, user) in ["alice", "Alice", "ALICE"].iter().enumerate() {
            let ip = IpAddr::from([192, 0, 2, i as u8 + 1]);
            assert!(!accounts.is_blocked(&account_key(user)));
            accounts.record_failure(&account_key(user));
            ips.record_failure(&ip);
            assert!(!ips.is_blocked(&ip));
        }
        assert!(accounts.is_blocked(&account_key("alice")));
        assert!(accounts.is_blocked(&account_key("aLiCe")));
        assert!(!accounts.is_blocked(&account_key("bob")));
    }

    #[test]
    fn account_key_is_bounded_and_utf8_safe() {
        let long = "é".repeat(300);
        let k = account_key(&long);
        assert!(k.len() <= MAX_ACCOUNT_KEY && k.starts_with('é'));
        assert_eq!(account_key("Bob@Example.TEST"), "bob@example.test");
    }

    #[test]
    fn memory_is_bounded() {
        let f: FailedLogins<u32> = FailedLogins::new(5, Duration::from_secs(600));
        for k in 0..(MAX_KEYS as u32 + 1000) {
            f.record_failure(&k);
        }
        assert!(f.len() <= MAX_KEYS);
        // The newest keys are kept.
        assert_eq!(f.recent(&(MAX_KEYS as u32 + 999)), 1);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let base = Duration::from_millis(500);
        let cap = Duration::from_secs(8);
        let got: Vec<u64> = (0..8)
            .map(|n| backoff(base, n, cap).as_millis() as u64)
            .collect();
        assert_eq!(got, [500, 500, 1000, 2000, 4000, 8000, 8000, 8000]);
        assert_eq!(backoff(base, u32::MAX, cap), cap);
    }
}
