//! The greylisting memory (`data_dir/greylist.sqlite3`): for each triplet of client network,
//! sender and recipient, when it was first seen and when it last passed.
//!
//! What it does: [`Greylist::check`] records a first attempt and answers "wait" until
//! `delay` has passed since it; a retry after the delay (and within `retry_window`) passes,
//! and the triplet then passes at once for `pass_lifetime` after its last pass (36 days by
//! default). A first attempt never retried is forgotten after `retry_window`. The table is
//! bounded: expired rows are deleted now and then, and past `max_entries` the oldest
//! unpassed ones go first.
//!
//! What it does not do: decide who is greylisted (trusted, authenticated and allowlisted
//! clients never are: `smtpd::filter`), or build the triplet (the caller passes the client's
//! /24 or /64 as text). Kept in its own SQLite file so that a flood of first attempts never
//! contends with the directory's lock.

use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};

/// The timing of greylisting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Timing {
    /// A retry before this much time after the first attempt still waits.
    pub delay: u64,
    /// A first attempt not retried within this is forgotten (seconds).
    pub retry_window: u64,
    /// A triplet that passed passes at once for this long after its last pass (seconds).
    pub pass_lifetime: u64,
    /// Rows kept at most.
    pub max_entries: u64,
}

impl Timing {
    /// `delay` seconds, a retry window of a day, 36 days after a pass, a million rows.
    pub fn with_delay(delay: u64) -> Timing {
        Timing {
            delay,
            retry_window: 86_400,
            pass_lifetime: 36 * 86_400,
            max_entries: 1_000_000,
        }
    }
}

/// The answer for one triplet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Known and passed: accept.
    Pass,
    /// New or retried too early: `451`, try again in this many seconds.
    Wait(u64),
}

/// The greylisting table.
pub struct Greylist {
    conn: Mutex<Connection>,
    timing: Timing,
    /// Checks since the last clean-up.
    since_cleanup: Mutex<u64>,
}

/// Clean up once per this many new triplets.
const CLEANUP_EVERY: u64 = 1000;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS triplets (
    key TEXT PRIMARY KEY,
    first_seen INTEGER NOT NULL,
    passed INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS triplets_first_seen ON triplets (first_seen);
";

impl Greylist {
    /// Opens (creating) `<data_dir>/greylist.sqlite3`.
    pub fn open(data_dir: &Path, timing: Timing) -> Result<Greylist, String> {
        let path = data_dir.join("greylist.sqlite3");
        let conn = Connection::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let setup = || -> rusqlite::Result<()> {
            conn.busy_timeout(Duration::from_secs(5))?;
            let _: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
            // Losing the last few triplets at a power cut only greylists them again.
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            conn.execute_batch(SCHEMA)
        };
        setup().map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Greylist {
            conn: Mutex::new(conn),
            timing,
            since_cleanup: Mutex::new(0),
        })
    }

    /// The key of a triplet: network, sender and recipient, the addresses lowercased.
    pub fn key(net: &str, sender: &str, recipient: &str) -> String {
        format!(
            "{net}\u{0}{}\u{0}{}",
            sender.to_lowercase(),
            recipient.to_lowercase()
        )
    }

    /// Records an attempt of `key` at `now` (Unix seconds) and answers it.
    pub fn check(&self, key: &str, now: u64) -> Result<Decision, String> {
        let t = &self.timing;
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        let row: Option<(i64, i64)> = conn
            .query_row(
                "SELECT first_seen, passed FROM triplets WHERE key = ?1",
                params![key],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| e.to_string())?;
        let now_i = now as i64;
        let decision = match row {
            Some((_, passed))
                if passed > 0 && now.saturating_sub(passed as u64) <= t.pass_lifetime =>
            {
                Decision::Pass
            }
            Some((first, 0)) => {
                let age = now.saturating_sub(first as u64);
                if age >= t.delay && age <= t.retry_window {
                    Decision::Pass
                } else if age < t.delay {
                    return Ok(Decision::Wait(t.delay - age));
                } else {
                    Decision::Wait(t.delay)
                }
            }
            _ => Decision::Wait(t.delay),
        };
        let result = match decision {
            Decision::Pass => conn.execute(
                "UPDATE triplets SET passed = ?2 WHERE key = ?1",
                params![key, now_i],
            ),
            Decision::Wait(_) => conn.execute(
                "INSERT INTO triplets (key, first_seen, passed) VALUES (?1, ?2, 0)
                 ON CONFLICT (key) DO UPDATE SET first_seen = ?2, passed = 0",
                params![key, now_i],
            ),
        };
        result.map_err(|e| e.to_string())?;
        if matches!(decision, Decision::Wait(_)) {
            let mut n = self.since_cleanup.lock().unwrap_or_else(|p| p.into_inner());
            *n += 1;
            if *n >= CLEANUP_EVERY {
                *n = 0;
                Self::cleanup(&conn, t, now).map_err(|e| e.to_string())?;
            }
        }
        Ok(decision)
    }

    /// Deletes expired rows, then the oldest unpassed ones past `max_entries`.
    fn cleanup(conn: &Connection, t: &Timing, now: u64) -> rusqlite::Result<()> {
        let now = now as i64;
        conn.execute(
            "DELETE FROM triplets WHERE (passed = 0 AND first_seen < ?1) OR (passed > 0 AND passed < ?2)",
            params![now - t.retry_window as i64, now - t.pass_lifetime as i64],
        )?;
        let rows: i64 = conn.query_row("SELECT COUNT(*) FROM triplets", [], |r| r.get(0))?;
        let excess = rows - t.max_entries as i64;
        if excess > 0 {
            conn.execute(
                "DELETE FROM triplets WHERE key IN
                 (SELECT key FROM triplets ORDER BY passed > 0, first_seen LIMIT ?1)",
                params![excess],
            )?;
        }
        Ok(())
    }

    /// Rows kept now.
    pub fn len(&self) -> u64 {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        conn.query_row("SELECT COUNT(*) FROM triplets", [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .unwrap_or(0)
    }

    /// True when no triplet is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(delay: u64) -> (tempfile::TempDir, Greylist) {
        let dir = tempfile::tempdir().unwrap();
        let g = Greylist::open(dir.path(), Timing::with_delay(delay)).unwrap();
        (dir, g)
    }

    #[test]
    fn first_attempt_waits_and_a_retry_after_the_delay_passes() {
        let (_d, g) = open(300);
        let k = Greylist::key("192.0.2.0", "a@x.example", "b@y.example");
        assert_eq!(g.check(&k, 1000).unwrap(), Decision::Wait(300));
        // Too early: still waiting, the first attempt's time kept.
        assert_eq!(g.check(&k, 1100).unwrap(), Decision::Wait(200));
        assert_eq!(g.check(&k, 1300).unwrap(), Decision::Pass);
        // Remembered: passes at once from then on.
        assert_eq!(g.check(&k, 1301).unwrap(), Decision::Pass);
        // Another recipient is another triplet.
        let other = Greylist::key("192.0.2.0", "a@x.example", "c@y.example");
        assert_eq!(g.check(&other, 1301).unwrap(), Decision::Wait(300));
    }

    #[test]
    fn a_pass_is_remembered_for_36_days_after_the_last_one() {
        let (_d, g) = open(60);
        let k = Greylist::key("n", "a@x", "b@y");
        g.check(&k, 0).unwrap();
        assert_eq!(g.check(&k, 60).unwrap(), Decision::Pass);
        let day = 86_400;
        assert_eq!(g.check(&k, 60 + 30 * day).unwrap(), Decision::Pass);
        assert_eq!(g.check(&k, 60 + 66 * day).unwrap(), Decision::Pass);
        // 37 days of silence: greylisted again.
        assert_eq!(g.check(&k, 60 + 103 * day + 1).unwrap(), Decision::Wait(60));
    }

    #[test]
    fn a_retry_after_the_window_starts_over() {
        let (_d, g) = open(60);
        let k = Greylist::key("n", "a@x", "b@y");
        g.check(&k, 0).unwrap();
        assert_eq!(g.check(&k, 86_401).unwrap(), Decision::Wait(60));
        assert_eq!(g.check(&k, 86_461).unwrap(), Decision::Pass);
    }

    #[test]
    fn keys_ignore_case_of_addresses() {
        assert_eq!(
            Greylist::key("n", "A@X", "B@Y"),
            Greylist::key("n", "a@x", "b@y")
        );
    }

    #[test]
    fn the_table_stays_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let mut t = Timing::with_delay(60);
        t.max_entries = 100;
        let g = Greylist::open(dir.path(), t).unwrap();
        for i in 0..(CLEANUP_EVERY + 5) {
            g.check(&Greylist::key("n", &format!("s{i}@x"), "r@y"), 10)
                .unwrap();
        }
        assert!(g.len() <= 100 + 5, "{} rows", g.len());
        // Reopened: the memory survives a restart.
        drop(g);
        let g = Greylist::open(dir.path(), Timing::with_delay(60)).unwrap();
        assert!(!g.is_empty());
    }
}
