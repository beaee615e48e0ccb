//! The admin flag of accounts (`mailroom user add --admin`, `mailroom user admin ADDRESS
//! on|off`): who may use the web face's `/admin`. A column of `accounts` (schema version 2;
//! a version 1 database gets it, all off, when it is opened), so it goes with the account
//! when the account is removed.
//!
//! Not here: sessions or what an admin may do (the `web` crate).

use rusqlite::params;

use super::{parse_address, Directory, DirectoryError};

/// Version 1 -> 2: the `admin` column.
pub(super) const MIGRATION_2: &str =
    "ALTER TABLE accounts ADD COLUMN admin INTEGER NOT NULL DEFAULT 0;";

impl Directory {
    /// Marks `address` as an admin or not.
    pub fn set_admin(&self, address: &str, admin: bool) -> Result<(), DirectoryError> {
        let a = parse_address(address)?;
        let n = self.lock()?.execute(
            "UPDATE accounts SET admin = ?1 WHERE key = ?2",
            params![i64::from(admin), a.key()],
        )?;
        if n == 0 {
            return Err(DirectoryError::NoSuchAccount(a.display()));
        }
        Ok(())
    }

    /// Whether `address` is an account marked admin (false for no such account).
    pub fn is_admin(&self, address: &str) -> Result<bool, DirectoryError> {
        let Ok(a) = parse_address(address) else {
            return Ok(false);
        };
        let conn = self.lock()?;
        let mut stmt = conn.prepare_cached("SELECT admin FROM accounts WHERE key = ?1")?;
        let mut rows = stmt.query([a.key()])?;
        Ok(match rows.next()? {
            Some(r) => r.get::<_, i64>(0)? != 0,
            None => false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_flag_set_cleared_and_gone_with_the_account() {
        let tmp = tempfile::tempdir().unwrap();
        let d = Directory::open(tmp.path()).unwrap();
        d.add_domain("example.org").unwrap();
        d.add_user("Boss@example.org", "pw").unwrap();
        assert!(!d.is_admin("boss@example.org").unwrap());
        d.set_admin("boss@EXAMPLE.org", true).unwrap();
        assert!(d.is_admin("Boss@example.org").unwrap());
        d.set_admin("boss@example.org", false).unwrap();
        assert!(!d.is_admin("boss@example.org").unwrap());
        d.set_admin("boss@example.org", true).unwrap();
        d.remove_user("boss@example.org").unwrap();
        d.add_user("boss@example.org", "pw").unwrap();
        assert!(!d.is_admin("boss@example.org").unwrap());
        assert_eq!(
            d.set_admin("nobody@example.org", true),
            Err(DirectoryError::NoSuchAccount("nobody@example.org".into()))
        );
        assert!(!d.is_admin("not an address").unwrap());
    }

    #[test]
    fn a_version_1_database_is_migrated() {
        let tmp = tempfile::tempdir().unwrap();
        {
            let conn = rusqlite::Connection::open(tmp.path().join("directory.sqlite3")).unwrap();
            conn.execute_batch(super::super::SCHEMA).unwrap();
            conn.execute("INSERT INTO domains (name) VALUES ('example.org')", [])
                .unwrap();
            conn.execute(
                "INSERT INTO accounts (key, address, local, domain, hash) \
                 VALUES ('old@example.org', 'old@example.org', 'old', 'example.org', 'x')",
                [],
            )
            .unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
        }
        let d = Directory::open(tmp.path()).unwrap();
        assert!(!d.is_admin("old@example.org").unwrap());
        d.set_admin("old@example.org", true).unwrap();
        drop(d);
        let d = Directory::open(tmp.path()).unwrap();
        assert!(d.is_admin("old@example.org").unwrap());
    }
}
