//! Per-account overrides of the sending limits (`mailroom user limits ADDRESS
//! --messages-per-hour N --recipients-per-day M`), in the `account_limits` table of
//! `directory.sqlite3` (created when missing; the directory's schema version is not
//! touched). A column left NULL means "the `[limits]` default"; 0 means "no limit".
//!
//! Not here: counting what was sent (`sending_limits`) or deciding (`smtpd::filter`).

use std::path::Path;
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS account_limits (
    key TEXT PRIMARY KEY,
    messages_per_hour INTEGER,
    recipients_per_day INTEGER
);
";

/// `(messages_per_hour, recipients_per_day)`, each `None` for the default.
pub type Override = (Option<u32>, Option<u32>);

/// The overrides table.
pub struct AccountLimits {
    conn: Mutex<Connection>,
}

impl AccountLimits {
    pub fn open(data_dir: &Path) -> Result<AccountLimits, String> {
        crate::directory::open_side_table(data_dir, SCHEMA)
            .map(|conn| AccountLimits {
                conn: Mutex::new(conn),
            })
            .map_err(|e| format!("account limits: {e}"))
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The override of `account`, if any.
    pub fn get(&self, account: &str) -> Result<Option<Override>, String> {
        // Cached: asked at MAIL and RCPT of every authenticated sender.
        self.conn()
            .prepare_cached(
                "SELECT messages_per_hour, recipients_per_day FROM account_limits WHERE key = ?1",
            )
            .and_then(|mut stmt| {
                stmt.query_row(params![account.to_lowercase()], |r| {
                    Ok((r.get::<_, Option<u32>>(0)?, r.get::<_, Option<u32>>(1)?))
                })
            })
            .optional()
            .map_err(|e| e.to_string())
    }

    /// Sets `account`'s override; `(None, None)` removes it.
    pub fn set(&self, account: &str, limits: Override) -> Result<(), String> {
        let key = account.to_lowercase();
        let conn = self.conn();
        let r = if limits == (None, None) {
            conn.execute("DELETE FROM account_limits WHERE key = ?1", params![key])
        } else {
            conn.execute(
                "INSERT INTO account_limits (key, messages_per_hour, recipients_per_day)
                 VALUES (?1, ?2, ?3)
                 ON CONFLICT (key) DO UPDATE SET messages_per_hour = ?2, recipients_per_day = ?3",
                params![key, limits.0, limits.1],
            )
        };
        r.map(|_| ()).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_are_kept_per_account_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let l = AccountLimits::open(dir.path()).unwrap();
        assert_eq!(l.get("a@x").unwrap(), None);
        l.set("A@x", (Some(5), None)).unwrap();
        assert_eq!(l.get("a@X").unwrap(), Some((Some(5), None)));
        l.set("a@x", (Some(5), Some(0))).unwrap();
        drop(l);
        let l = AccountLimits::open(dir.path()).unwrap();
        assert_eq!(l.get("a@x").unwrap(), Some((Some(5), Some(0))));
        l.set("a@x", (None, None)).unwrap();
        assert_eq!(l.get("a@x").unwrap(), None);
    }
}
