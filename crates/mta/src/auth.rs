//! Password checks for SMTP AUTH: argon2id verification off the event loop on a bounded pool,
//! and brute-force limits per client IP and per account with growing delays.
//!
//! A failed attempt costs the client a delay of 1 s doubled for each recent failure from its
//! IP or against the account (capped at 8 s). Past `max_failures` within `window`, further
//! attempts from that IP or against that account are refused without checking the password
//! (same reply, same delay), so a guesser learns nothing and burns no CPU. Memory is bounded:
//! at most `max_failures` timestamps per key and at most [`MAX_KEYS`] keys. Every failure is
//! logged with IP and account, never the password.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use store::directory::Directory;
use tokio::sync::Semaphore;

/// Keys tracked at most (IPs and accounts together); the oldest are dropped beyond.
pub const MAX_KEYS: usize = 10_000;

/// Recent failures per key.
#[derive(Debug)]
pub struct Failures {
    max: usize,
    window: Duration,
    table: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl Failures {
    /// At most `max` failures per `window` per key.
    pub fn new(max: usize, window: Duration) -> Failures {
        Failures {
            max: max.max(1),
            window,
            table: Mutex::new(HashMap::new()),
        }
    }

    /// Recent failures of `key` at `now`.
    pub fn count(&self, key: &str, now: Instant) -> usize {
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        match table.get_mut(key) {
            Some(q) => {
                while q
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= self.window)
                {
                    q.pop_front();
                }
                q.len()
            }
            None => 0,
        }
    }

    /// True when `key` reached the limit.
    pub fn blocked(&self, key: &str, now: Instant) -> bool {
        self.count(key, now) >= self.max
    }

    /// Records a failure of `key` at `now`.
    pub fn record(&self, key: &str, now: Instant) {
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        if table.len() >= MAX_KEYS && !table.contains_key(key) {
            let window = self.window;
            table.retain(|_, q| q.back().is_some_and(|t| now.duration_since(*t) < window));
            if table.len() >= MAX_KEYS {
                // Still full of recent failures: forget an arbitrary one rather than grow.
                if let Some(k) = table.keys().next().cloned() {
                    table.remove(&k);
                }
            }
        }
        let q = table.entry(key.to_string()).or_default();
        q.push_back(now);
        while q.len() > self.max {
            q.pop_front();
        }
    }
}

/// Delay after a failure, given the number of recent failures (1 s, 2 s, 4 s, 8 s, 8 s...).
pub fn delay_for(failures: usize) -> Duration {
    let exp = failures.saturating_sub(1).min(3) as u32;
    Duration::from_secs(1u64 << exp)
}

/// Checks credentials for the SMTP listeners.
pub struct LoginGuard {
    directory: Arc<Directory>,
    failures: Failures,
    /// argon2id costs tens of milliseconds of CPU: at most this many at once.
    pool: Semaphore,
    /// Base delay unit (1 s in production; tests may shorten it).
    pub delay_unit: Duration,
}

impl LoginGuard {
    pub fn new(directory: Arc<Directory>, max_failures: usize, window: Duration) -> LoginGuard {
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        LoginGuard {
            directory,
            failures: Failures::new(max_failures, window),
            pool: Semaphore::new(cpus),
            delay_unit: Duration::from_secs(1),
        }
    }

    /// The account's canonical address when `user`/`password` are right.
    pub async fn check(&self, ip: IpAddr, user: &str, password: &str) -> Option<String> {
        let now = Instant::now();
        let ip_key = format!("ip:{ip}");
        let user_key = format!("user:{}", user.to_lowercase());
        let fail_delay = |n: usize| self.delay_unit.mul_f64(delay_for(n).as_secs_f64());
        if self.failures.blocked(&ip_key, now) || self.failures.blocked(&user_key, now) {
            tracing::warn!(
                "auth: refused user={:?} ip={ip}: too many recent failures",
                proto::smtp::address::escape(user)
            );
            tokio::time::sleep(fail_delay(4)).await;
            return None;
        }
        let verdict = {
            let _permit = self.pool.acquire().await.ok()?;
            let directory = self.directory.clone();
            let (u, p) = (user.to_string(), password.to_string());
            tokio::task::spawn_blocking(move || directory.verify_password(&u, &p))
                .await
                .ok()
        };
        match verdict {
            Some(Ok(Some(account))) => {
                tracing::info!("auth: ok user={} ip={ip}", account.address);
                Some(account.address)
            }
            other => {
                if let Some(Err(e)) = &other {
                    tracing::error!("auth: directory error: {e}");
                }
                let now = Instant::now();
                self.failures.record(&ip_key, now);
                self.failures.record(&user_key, now);
                let n = self
                    .failures
                    .count(&ip_key, now)
                    .max(self.failures.count(&user_key, now));
                tracing::warn!(
                    "auth: failed user={:?} ip={ip} recent_failures={n}",
                    proto::smtp::address::escape(user)
                );
                tokio::time::sleep(fail_delay(n)).await;
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_cap() {
        let d: Vec<u64> = (1..=6).map(|n| delay_for(n).as_secs()).collect();
        assert_eq!(d, vec![1, 2, 4, 8, 8, 8]);
    }

    #[test]
    fn limit_per_key_within_window() {
        let f = Failures::new(3, Duration::from_secs(60));
        let t0 = Instant::now();
        for _ in 0..3 {
            assert!(!f.blocked("user:a", t0));
            f.record("user:a", t0);
        }
        assert!(f.blocked("user:a", t0));
        assert!(!f.blocked("user:b", t0));
        assert!(!f.blocked("user:a", t0 + Duration::from_secs(61)));
    }

    #[test]
    fn memory_is_bounded() {
        let f = Failures::new(2, Duration::from_secs(60));
        let t0 = Instant::now();
        for i in 0..(MAX_KEYS + 100) {
            f.record(&format!("ip:{i}"), t0);
        }
        assert!(f.table.lock().unwrap().len() <= MAX_KEYS);
    }
}
