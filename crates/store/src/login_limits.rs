//! Failed-login counters per key (a client network or a canonical account name), the table
//! under [`crate::login_guard::LoginGuard`].
//!
//! What it does: remembers, per key, the times of recent failed logins and the number of
//! attempts in flight (reserved before their password check, not yet settled), and says
//! whether a key has reached its limit within the window: failures plus attempts in flight,
//! so parallel guesses cannot all pass the check before the first failure is recorded. It
//! also computes the growing delay before a failure reply ([`backoff`]). Memory is bounded:
//! at most `max` timestamps per key, stale keys are pruned, and when the table is still full
//! the idle key whose last failure is oldest is evicted, so at most [`MAX_KEYS`] keys without
//! attempts in flight are kept.
//!
//! What it does not do: read a clock (every call is given `now`, so tests use a fake one),
//! sleep (the connection loop does), log, or persist anything. Evicting keys under a flood of
//! distinct keys can forget some failures; that is the price of bounded memory, and the
//! per-IP limit still applies to the flooding client.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Prune stale keys when the table grows beyond this many keys.
const PRUNE_AT: usize = 4096;

/// Hard limit on the number of idle keys in one table.
pub const MAX_KEYS: usize = 2 * PRUNE_AT;

#[derive(Debug, Default)]
struct Entry {
    failures: VecDeque<Instant>,
    in_flight: u32,
}

impl Entry {
    fn expire(&mut self, window: Duration, now: Instant) {
        while self
            .failures
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= window)
        {
            self.failures.pop_front();
        }
    }

    fn is_idle(&self) -> bool {
        self.failures.is_empty() && self.in_flight == 0
    }

    fn failures(&self) -> u32 {
        u32::try_from(self.failures.len()).unwrap_or(u32::MAX)
    }
}

/// Failed-login counter per key: client networks by default, or account names.
#[derive(Debug)]
pub struct FailedLogins<K = IpAddr> {
    max: u32,
    window: Duration,
    table: Mutex<HashMap<K, Entry>>,
}

impl<K: Eq + Hash + Clone> FailedLogins<K> {
    /// At most `max` failures (and attempts in flight) per `window` per key.
    pub fn new(max: u32, window: Duration) -> Self {
        FailedLogins {
            max: max.max(1),
            window,
            table: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, Entry>> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Number of failures recorded for `key` within the window (at most `max`).
    pub fn recent(&self, key: &K, now: Instant) -> u32 {
        let mut table = self.lock();
        let Some(e) = table.get_mut(key) else {
            return 0;
        };
        e.expire(self.window, now);
        let n = e.failures();
        if e.is_idle() {
            table.remove(key);
        }
        n
    }

    /// True if `key` has reached the limit (failures plus attempts in flight).
    pub fn is_blocked(&self, key: &K, now: Instant) -> bool {
        let mut table = self.lock();
        table.get_mut(key).is_some_and(|e| {
            e.expire(self.window, now);
            e.failures() + e.in_flight >= self.max
        })
    }

    /// Reserves one attempt for `key` unless the failures within the window plus the attempts
    /// already in flight have reached the limit; then returns the number of recent failures.
    /// A reservation must be ended by [`FailedLogins::release`] or
    /// [`FailedLogins::settle_failure`].
    pub fn try_reserve(&self, key: &K, now: Instant) -> Result<(), u32> {
        let mut table = self.lock();
        let e = self.entry(&mut table, key, now);
        if e.failures() + e.in_flight >= self.max {
            return Err(e.failures());
        }
        e.in_flight += 1;
        Ok(())
    }

    /// Ends a reservation without a failure (the password was right).
    pub fn release(&self, key: &K) {
        let mut table = self.lock();
        if let Some(e) = table.get_mut(key) {
            e.in_flight = e.in_flight.saturating_sub(1);
            if e.is_idle() {
                table.remove(key);
            }
        }
    }

    /// Ends a reservation with a failure; returns the failures now recorded within the window.
    pub fn settle_failure(&self, key: &K, now: Instant) -> u32 {
        let mut table = self.lock();
        let e = self.entry(&mut table, key, now);
        e.in_flight = e.in_flight.saturating_sub(1);
        self.push(e, now)
    }

    /// Records one failed login for `key` without a reservation; returns the number of
    /// failures now recorded for it within the window (at least 1).
    pub fn record_failure(&self, key: &K, now: Instant) -> u32 {
        let mut table = self.lock();
        let e = self.entry(&mut table, key, now);
        self.push(e, now)
    }

    fn push(&self, e: &mut Entry, now: Instant) -> u32 {
        e.failures.push_back(now);
        while e.failures.len() > self.max as usize {
            e.failures.pop_front();
        }
        e.failures()
    }

    /// The entry for `key`, expired up to `now`; makes room first when the key is new.
    fn entry<'t>(&self, table: &'t mut HashMap<K, Entry>, key: &K, now: Instant) -> &'t mut Entry {
        if !table.contains_key(key) && table.len() >= PRUNE_AT {
            let window = self.window;
            table.retain(|_, e| {
                e.expire(window, now);
                !e.is_idle()
            });
            if table.len() >= MAX_KEYS {
                // Still full of live keys: forget the one whose last failure is oldest, but
                // never one with an attempt in flight (its settlement is still to come).
                let oldest = table
                    .iter()
                    .filter(|(_, e)| e.in_flight == 0)
                    .min_by_key(|(_, e)| e.failures.back().copied())
                    .map(|(k, _)| k.clone());
                if let Some(k) = oldest {
                    table.remove(&k);
                }
            }
        }
        let e = table.entry(key.clone()).or_default();
        e.expire(self.window, now);
        e
    }

    /// Number of keys currently held (for tests).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
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
        // A fake clock: every call is given its `now`.
        let t0 = Instant::now();
        let window = Duration::from_millis(50);
        let f = FailedLogins::new(2, window);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(!f.is_blocked(&ip, t0));
        assert_eq!(f.record_failure(&ip, t0), 1);
        assert!(!f.is_blocked(&ip, t0));
        let t1 = t0 + Duration::from_millis(10);
        assert_eq!(f.record_failure(&ip, t1), 2);
        assert!(f.is_blocked(&ip, t1));
        assert!(!f.is_blocked(&other, t1));
        // At most `max` timestamps are kept.
        assert_eq!(f.record_failure(&ip, t1), 2);
        // The first failure leaves the window at t0 + 50 ms, the others at t1 + 50 ms.
        assert!(f.is_blocked(&ip, t0 + window));
        assert_eq!(f.recent(&ip, t1 + window - Duration::from_millis(1)), 2);
        assert!(!f.is_blocked(&ip, t1 + window));
        assert_eq!(f.recent(&ip, t1 + window), 0);
    }

    #[test]
    fn attempts_in_flight_count_toward_the_limit() {
        let now = Instant::now();
        let f: FailedLogins<u8> = FailedLogins::new(3, Duration::from_secs(60));
        assert_eq!(f.try_reserve(&1, now), Ok(()));
        assert_eq!(f.try_reserve(&1, now), Ok(()));
        assert_eq!(f.try_reserve(&1, now), Ok(()));
        assert_eq!(f.try_reserve(&1, now), Err(0), "three in flight");
        assert!(f.is_blocked(&1, now));
        f.release(&1);
        assert_eq!(f.settle_failure(&1, now), 1);
        assert_eq!(f.try_reserve(&1, now), Ok(()));
        assert_eq!(f.try_reserve(&1, now), Err(1), "one failure, two in flight");
        f.release(&1);
        f.release(&1);
        assert_eq!(f.recent(&1, now), 1);
        assert_eq!(f.try_reserve(&2, now), Ok(()));
    }

    #[test]
    fn memory_is_bounded() {
        let now = Instant::now();
        let f: FailedLogins<u32> = FailedLogins::new(5, Duration::from_secs(600));
        for k in 0..(MAX_KEYS as u32 + 1000) {
            f.record_failure(&k, now);
        }
        assert!(f.len() <= MAX_KEYS);
        // The newest keys are kept.
        assert_eq!(f.recent(&(MAX_KEYS as u32 + 999), now), 1);
        // Keys with an attempt in flight are never evicted.
        let g: FailedLogins<u32> = FailedLogins::new(5, Duration::from_secs(600));
        g.try_reserve(&u32::MAX, now).unwrap();
        for k in 0..(MAX_KEYS as u32 + 10) {
            g.record_failure(&k, now);
        }
        assert_eq!(g.settle_failure(&u32::MAX, now), 1);
        assert_eq!(g.try_reserve(&u32::MAX, now), Ok(()));
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
