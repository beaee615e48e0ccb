//! Per-IP failed-login accounting for the POP3 listener.
//!
//! What it does: remembers the times of recent failed logins per client IP address, and says
//! whether an address has reached the limit within the window (then its logins are refused
//! without checking the password). Memory is bounded: at most `max` timestamps per address,
//! and stale addresses are pruned.
//!
//! What it does not do: delay replies (the connection loop does) or persist anything.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Prune the whole table when it grows beyond this many addresses.
const PRUNE_AT: usize = 4096;

/// Failed-login counter per IP address.
#[derive(Debug)]
pub struct FailedLogins {
    max: u32,
    window: Duration,
    table: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
}

impl FailedLogins {
    /// At most `max` failures per `window` per address.
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

    /// True if `ip` has reached the limit and must be refused for now.
    pub fn is_blocked(&self, ip: IpAddr) -> bool {
        let now = Instant::now();
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        match table.get_mut(&ip) {
            Some(q) => {
                Self::expire(q, self.window, now);
                q.len() >= self.max as usize
            }
            None => false,
        }
    }

    /// Records one failed login from `ip`.
    pub fn record_failure(&self, ip: IpAddr) {
        let now = Instant::now();
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        if table.len() >= PRUNE_AT {
            let window = self.window;
            table.retain(|_, q| {
                Self::expire(q, window, now);
                !q.is_empty()
            });
        }
        let q = table.entry(ip).or_default();
        Self::expire(q, self.window, now);
        q.push_back(now);
        while q.len() > self.max.max(1) as usize {
            q.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_after_max_and_expires() {
        let f = FailedLogins::new(2, Duration::from_millis(50));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(!f.is_blocked(ip));
        f.record_failure(ip);
        assert!(!f.is_blocked(ip));
        f.record_failure(ip);
        assert!(f.is_blocked(ip));
        assert!(!f.is_blocked(other));
        std::thread::sleep(Duration::from_millis(60));
        assert!(!f.is_blocked(ip));
    }
}
