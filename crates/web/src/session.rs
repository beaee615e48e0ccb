//! Login sessions of the `/admin` and `/account` pages, kept in memory (a restart logs
//! everybody out): a random id (32 bytes from ring's `SystemRandom`, hex) in a cookie, the
//! account's address and a CSRF token per session.
//!
//! A session ends after [`IDLE`] without a request (30 minutes), [`ABSOLUTE`] after the login
//! whatever happens (12 hours), or at logout. At most [`MAX_SESSIONS`] live at once: a new
//! login past that drops the session seen least recently, and each account keeps at most
//! [`MAX_PER_ACCOUNT`] (its own oldest goes), so one account logging in in a loop cannot fill
//! the table. Tokens are compared in constant time (`subtle`).
//!
//! Times are passed in (`now`), so the expiry rules are unit-tested without waiting.
//! Not here: who may log in (the `Console`), cookies' text (`pages`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ring::rand::{SecureRandom, SystemRandom};
use subtle::ConstantTimeEq;

/// A session unused this long is over.
pub const IDLE: Duration = Duration::from_secs(30 * 60);
/// A session is over this long after its login, used or not.
pub const ABSOLUTE: Duration = Duration::from_secs(12 * 3600);
/// Sessions in memory at most.
pub const MAX_SESSIONS: usize = 4096;
/// Sessions of one account at most.
pub const MAX_PER_ACCOUNT: usize = 16;

/// 32 random bytes as 64 hex digits.
pub fn token() -> String {
    let mut bytes = [0u8; 32];
    // SystemRandom fails only when the OS has no randomness at all; then nothing is safe and
    // an empty token matches nothing (see `same`).
    if SystemRandom::new().fill(&mut bytes).is_err() {
        return String::new();
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether two tokens are equal, in time independent of where they differ; empty never
/// matches.
pub fn same(a: &str, b: &str) -> bool {
    !a.is_empty() && a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// One live session.
#[derive(Clone, Debug)]
pub struct Session {
    pub address: String,
    pub csrf: String,
    created: Instant,
    seen: Instant,
}

/// The table of live sessions.
#[derive(Default)]
pub struct Sessions {
    table: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    fn table(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new session for `address`: its id (the cookie's value) and CSRF token.
    pub fn create(&self, address: &str, now: Instant) -> Option<(String, String)> {
        let (id, csrf) = (token(), token());
        if id.is_empty() || csrf.is_empty() {
            return None;
        }
        let mut table = self.table();
        table.retain(|_, s| live(s, now));
        let key = address.to_lowercase();
        let mine: Vec<(String, Instant)> = table
            .iter()
            .filter(|(_, s)| s.address.to_lowercase() == key)
            .map(|(id, s)| (id.clone(), s.seen))
            .collect();
        if mine.len() >= MAX_PER_ACCOUNT {
            if let Some((oldest, _)) = mine.iter().min_by_key(|(_, seen)| *seen) {
                table.remove(oldest);
            }
        }
        if table.len() >= MAX_SESSIONS {
            let oldest = table
                .iter()
                .min_by_key(|(_, s)| s.seen)
                .map(|(id, _)| id.clone());
            if let Some(oldest) = oldest {
                table.remove(&oldest);
            }
        }
        table.insert(
            id.clone(),
            Session {
                address: address.to_string(),
                csrf: csrf.clone(),
                created: now,
                seen: now,
            },
        );
        Some((id, csrf))
    }

    /// The live session `id`, marked as used now; an expired one is removed.
    pub fn get(&self, id: &str, now: Instant) -> Option<Session> {
        if id.len() != 64 {
            return None;
        }
        let mut table = self.table();
        let found = table.get_mut(id)?;
        if !live(found, now) {
            table.remove(id);
            return None;
        }
        found.seen = now;
        Some(found.clone())
    }

    /// Logout.
    pub fn remove(&self, id: &str) {
        self.table().remove(id);
    }

    /// Every session of `address` but `keep` ends (after a password change).
    pub fn remove_others(&self, address: &str, keep: &str) {
        let key = address.to_lowercase();
        self.table()
            .retain(|id, s| id == keep || s.address.to_lowercase() != key);
    }

    pub fn len(&self) -> usize {
        self.table().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn live(s: &Session, now: Instant) -> bool {
    now.saturating_duration_since(s.seen) < IDLE
        && now.saturating_duration_since(s.created) < ABSOLUTE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_compared_whole() {
        let (a, b) = (token(), token());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert!(same(&a, &a.clone()));
        assert!(!same(&a, &b));
        assert!(!same(&a, &a[..63]));
        assert!(!same("", ""));
    }

    #[test]
    fn sessions_expire_when_idle_and_after_twelve_hours() {
        let s = Sessions::default();
        let t0 = Instant::now();
        let (id, csrf) = s.create("a@example.org", t0).unwrap();
        let got = s.get(&id, t0 + Duration::from_secs(60)).unwrap();
        assert_eq!(got.address, "a@example.org");
        assert_eq!(got.csrf, csrf);
        // Used every 20 minutes: alive until the absolute limit.
        let mut t = t0;
        while t + Duration::from_secs(20 * 60) < t0 + ABSOLUTE {
            t += Duration::from_secs(20 * 60);
            assert!(s.get(&id, t).is_some(), "{:?}", t - t0);
        }
        assert!(s.get(&id, t0 + ABSOLUTE).is_none());
        assert!(s.is_empty());
        // Idle for 30 minutes: over.
        let (id, _) = s.create("a@example.org", t0).unwrap();
        assert!(s.get(&id, t0 + IDLE - Duration::from_secs(1)).is_some());
        assert!(s.get(&id, t0 + 2 * IDLE).is_none());
        assert!(s.get("not-a-session", t0).is_none());
    }

    #[test]
    fn logout_and_bounds() {
        let s = Sessions::default();
        let t0 = Instant::now();
        let (id, _) = s.create("a@example.org", t0).unwrap();
        s.remove(&id);
        assert!(s.get(&id, t0).is_none());
        let ids: Vec<String> = (0..MAX_PER_ACCOUNT + 3)
            .map(|i| {
                s.create("A@example.org", t0 + Duration::from_millis(i as u64))
                    .unwrap()
                    .0
            })
            .collect();
        assert_eq!(s.len(), MAX_PER_ACCOUNT);
        assert!(s.get(&ids[0], t0).is_none());
        assert!(s.get(ids.last().unwrap(), t0).is_some());
        for i in 0..MAX_SESSIONS {
            s.create(&format!("u{i}@example.org"), t0 + Duration::from_secs(1))
                .unwrap();
        }
        assert_eq!(s.len(), MAX_SESSIONS);
        let keep = s
            .create("b@example.org", t0 + Duration::from_secs(2))
            .unwrap()
            .0;
        let other = s
            .create("b@example.org", t0 + Duration::from_secs(2))
            .unwrap()
            .0;
        s.remove_others("B@example.org", &keep);
        assert!(s.get(&keep, t0 + Duration::from_secs(3)).is_some());
        assert!(s.get(&other, t0 + Duration::from_secs(3)).is_none());
    }
}
