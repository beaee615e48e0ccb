//! The cost control around argon2id password checks: at most one check per CPU at a time
//! (each costs ~20 MiB and tens of milliseconds on purpose), and a short-lived cache of
//! successful checks, as Dovecot's auth cache does, so that mail clients polling every few
//! minutes do not re-run argon2 each time.
//!
//! The cache keeps, per account, a keyed BLAKE2b digest of the password (the key is random per
//! process, so a memory dump does not give an offline oracle) together with the stored PHC
//! hash: a password change makes the entry stale at once. Failures are never cached. It does
//! not decide anything about accounts; `directory` calls it.

use std::collections::HashMap;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use blake2::digest::{KeyInit, Mac};
use blake2::Blake2bMac512;

/// How long a successful check is remembered.
pub const CACHE_TTL: Duration = Duration::from_secs(600);
/// Accounts remembered at most.
const CACHE_MAX: usize = 10_000;

/// Bounded concurrency for argon2 and the success cache.
pub struct PasswordCheck {
    running: Mutex<usize>,
    freed: Condvar,
    max_running: usize,
    key: [u8; 32],
    cache: Mutex<HashMap<String, Entry>>,
}

struct Entry {
    stored_hash: String,
    digest: [u8; 64],
    at: Instant,
}

impl Default for PasswordCheck {
    fn default() -> PasswordCheck {
        PasswordCheck::new(
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
        )
    }
}

impl PasswordCheck {
    /// At most `max_running` argon2 computations at once.
    pub fn new(max_running: usize) -> PasswordCheck {
        PasswordCheck {
            running: Mutex::new(0),
            freed: Condvar::new(),
            max_running: max_running.max(1),
            key: rand::random(),
            cache: Mutex::new(HashMap::new()),
        }
    }

    fn digest(&self, password: &str) -> [u8; 64] {
        let mut mac = <Blake2bMac512 as KeyInit>::new_from_slice(&self.key)
            .expect("a 32-byte key is valid for BLAKE2b");
        mac.update(password.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// True when `key`'s password was checked against this very `stored_hash` recently.
    pub fn cached(&self, key: &str, stored_hash: &str, password: &str) -> bool {
        let d = self.digest(password);
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        match cache.get(key) {
            Some(e) => {
                e.stored_hash == stored_hash
                    && e.at.elapsed() < CACHE_TTL
                    && constant_time_eq(&e.digest, &d)
            }
            None => false,
        }
    }

    /// Remembers a successful check.
    pub fn remember(&self, key: &str, stored_hash: &str, password: &str) {
        let digest = self.digest(password);
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CACHE_MAX && !cache.contains_key(key) {
            cache.retain(|_, e| e.at.elapsed() < CACHE_TTL);
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
        }
        cache.insert(
            key.to_string(),
            Entry {
                stored_hash: stored_hash.to_string(),
                digest,
                at: Instant::now(),
            },
        );
    }

    /// Runs `f` (an argon2 computation) when a slot is free; blocks the calling (blocking)
    /// thread meanwhile.
    pub fn limited<T>(&self, f: impl FnOnce() -> T) -> T {
        {
            let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
            while *running >= self.max_running {
                running = self.freed.wait(running).unwrap_or_else(|p| p.into_inner());
            }
            *running += 1;
        }
        let out = f();
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        *running -= 1;
        self.freed.notify_one();
        out
    }
}

fn constant_time_eq(a: &[u8; 64], b: &[u8; 64]) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn cache_hits_only_for_same_password_and_hash() {
        let c = PasswordCheck::new(1);
        assert!(!c.cached("a@b", "$h1", "pw"));
        c.remember("a@b", "$h1", "pw");
        assert!(c.cached("a@b", "$h1", "pw"));
        assert!(!c.cached("a@b", "$h1", "other"));
        assert!(
            !c.cached("a@b", "$h2", "pw"),
            "a changed password invalidates"
        );
        assert!(!c.cached("c@d", "$h1", "pw"));
    }

    #[test]
    fn at_most_n_at_once() {
        let c = Arc::new(PasswordCheck::new(2));
        let now = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (c, now, peak) = (c.clone(), now.clone(), peak.clone());
                std::thread::spawn(move || {
                    c.limited(|| {
                        let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                        peak.fetch_max(n, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(20));
                        now.fetch_sub(1, Ordering::SeqCst);
                    })
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        assert!(peak.load(Ordering::SeqCst) <= 2);
    }
}
