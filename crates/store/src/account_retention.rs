//! Per-account overrides of the POP3 retention policy (`mailroom user retention ADDRESS
//! --delete-retrieved-after 30d --delete-after none`), in the `account_retention` table of
//! `directory.sqlite3` (created when missing). A NULL column keeps the `[pop3]` default; 0
//! means "never" for that account, whatever the default.
//!
//! Not here: the sweep (`retention`), which takes the merged [`Policy`] per mailbox.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};

use crate::retention::Policy;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS account_retention (
    key TEXT PRIMARY KEY,
    delete_retrieved_after INTEGER,
    delete_after INTEGER
);
";

/// One override: each field `None` for the default, `Some(0)` for never, else seconds.
pub type Override = (Option<u64>, Option<u64>);

pub struct AccountRetention {
    conn: Mutex<Connection>,
}

fn merge(default: Option<Duration>, over: Option<u64>) -> Option<Duration> {
    match over {
        None => default,
        Some(0) => None,
        Some(s) => Some(Duration::from_secs(s)),
    }
}

/// The policy of an account with `over` on top of `default`.
pub fn policy(default: &Policy, over: Override) -> Policy {
    Policy {
        delete_retrieved_after: merge(default.delete_retrieved_after, over.0),
        delete_after: merge(default.delete_after, over.1),
    }
}

impl AccountRetention {
    pub fn open(data_dir: &Path) -> Result<AccountRetention, String> {
        crate::directory::open_side_table(data_dir, SCHEMA)
            .map(|c| AccountRetention {
                conn: Mutex::new(c),
            })
            .map_err(|e| format!("account retention: {e}"))
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, account: &str) -> Result<Option<Override>, String> {
        self.conn()
            .query_row(
                "SELECT delete_retrieved_after, delete_after FROM account_retention WHERE key = ?1",
                params![account.to_lowercase()],
                |r| Ok((r.get::<_, Option<i64>>(0)?, r.get::<_, Option<i64>>(1)?)),
            )
            .optional()
            .map(|o| o.map(|(a, b)| (a.map(|v| v.max(0) as u64), b.map(|v| v.max(0) as u64))))
            .map_err(|e| e.to_string())
    }

    /// Sets an override; `(None, None)` removes it.
    pub fn set(&self, account: &str, over: Override) -> Result<(), String> {
        let key = account.to_lowercase();
        let conn = self.conn();
        let to_sql = |v: Option<u64>| v.map(|s| s.min(i64::MAX as u64) as i64);
        if over == (None, None) {
            conn.execute("DELETE FROM account_retention WHERE key = ?1", params![key])
        } else {
            conn.execute(
                "INSERT INTO account_retention (key, delete_retrieved_after, delete_after)
                 VALUES (?1, ?2, ?3) ON CONFLICT (key) DO UPDATE
                 SET delete_retrieved_after = ?2, delete_after = ?3",
                params![key, to_sql(over.0), to_sql(over.1)],
            )
        }
        .map(|_| ())
        .map_err(|e| e.to_string())
    }

    /// Every override, by account (lowercased), for one sweep.
    pub fn all(&self) -> Result<HashMap<String, Override>, String> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT key, delete_retrieved_after, delete_after FROM account_retention")
            .map_err(|e| e.to_string())?;
        let rows = stmt
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Option<i64>>(1)?,
                    r.get::<_, Option<i64>>(2)?,
                ))
            })
            .map_err(|e| e.to_string())?;
        let mut out = HashMap::new();
        for row in rows {
            let (k, a, b) = row.map_err(|e| e.to_string())?;
            out.insert(k, (a.map(|v| v.max(0) as u64), b.map(|v| v.max(0) as u64)));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_merge_over_the_default() {
        let d = tempfile::tempdir().unwrap();
        let t = AccountRetention::open(d.path()).unwrap();
        t.set("A@x.test", (Some(2), Some(0))).unwrap();
        assert_eq!(t.get("a@x.test").unwrap(), Some((Some(2), Some(0))));
        assert_eq!(t.all().unwrap().len(), 1);
        let default = Policy {
            delete_retrieved_after: None,
            delete_after: Some(Duration::from_secs(100)),
        };
        assert_eq!(
            policy(&default, (Some(2), Some(0))),
            Policy {
                delete_retrieved_after: Some(Duration::from_secs(2)),
                delete_after: None
            }
        );
        assert_eq!(policy(&default, (None, None)), default);
        t.set("a@x.test", (None, None)).unwrap();
        assert!(t.all().unwrap().is_empty());
    }
}
