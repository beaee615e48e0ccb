//! The directory: local domains, accounts (with argon2id password hashes) and aliases, kept in
//! SQLite at `<data_dir>/directory.sqlite3`, plus the router ([`Directory::resolve`]) that says
//! what an envelope recipient means.
//!
//! The CLI and the server open the same file at the same time, so the database runs in WAL mode
//! with a 5 s busy timeout and nothing read from it is cached: every call goes to SQLite and sees
//! whatever another process has committed.
//!
//! Addresses: the syntax is `proto::address::check`, the one the SMTP session applies at MAIL
//! and RCPT, plus the rules for names of our own mailboxes (`directory_address.rs`). The domain
//! is compared case-insensitively and stored lowercase (no IDNA conversion); the local part keeps its case for display but is compared case-insensitively
//! through a lookup key (the whole address lowercased). RFC 5321 section 2.4 lets a server treat
//! local parts case-sensitively; we deliberately do not, as almost every site does.
//!
//! This module does not create Maildirs, does not know about SMTP replies and never logs or
//! returns a password or a hash.

use std::fmt;
use std::path::Path;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

#[path = "directory_address.rs"]
mod address;

pub use address::login_key;
pub use resolve::Resolution;

#[path = "directory_resolve.rs"]
mod resolve;

#[path = "directory_admins.rs"]
mod admins;
use address::{invalid, parse_address, parse_alias, parse_domain};

/// Schema version stored in `PRAGMA user_version`.
const SCHEMA_VERSION: i64 = 2;
/// Why a directory operation failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DirectoryError {
    /// The domain is not one of ours.
    NoSuchDomain(String),
    /// `add_domain` of a domain we already have.
    DomainExists(String),
    /// No account with that address.
    NoSuchAccount(String),
    /// `add_user` (or `add_alias`) of an address that already is an account.
    AccountExists(String),
    /// No alias with that name.
    NoSuchAlias(String),
    /// `add_user` of an address that already is an alias.
    AliasExists(String),
    /// The text is not an address we accept (the payload says what and why).
    InvalidAddress(String),
    /// `remove_domain` of a domain that still has accounts.
    DomainHasAccounts(String),
    /// `remove_domain` of a domain that still has aliases.
    DomainHasAliases(String),
    /// `add_domain` of a name that cannot be a mail domain of ours (the payload says why).
    InvalidDomain(String),
    /// `add_alias` that would make alias expansion loop or exceed its limits.
    AliasLoop(String),
    /// `add_alias` with a target in one of our domains that is neither account nor alias.
    UnknownTarget(String),
    /// SQLite (or hashing) failed.
    Db(String),
}

impl fmt::Display for DirectoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DirectoryError::NoSuchDomain(d) => write!(f, "no such domain: {d}"),
            DirectoryError::DomainExists(d) => write!(f, "domain already exists: {d}"),
            DirectoryError::NoSuchAccount(a) => write!(f, "no such account: {a}"),
            DirectoryError::AccountExists(a) => write!(f, "account already exists: {a}"),
            DirectoryError::NoSuchAlias(a) => write!(f, "no such alias: {a}"),
            DirectoryError::AliasExists(a) => write!(f, "alias already exists: {a}"),
            DirectoryError::InvalidAddress(a) => write!(f, "invalid address: {a}"),
            DirectoryError::DomainHasAccounts(d) => write!(f, "domain {d} still has accounts"),
            DirectoryError::DomainHasAliases(d) => write!(f, "domain {d} still has aliases"),
            DirectoryError::InvalidDomain(d) => write!(f, "invalid domain: {d}"),
            DirectoryError::AliasLoop(a) => write!(
                f,
                "alias {a} would loop (or nest deeper than the limits) through its targets"
            ),
            DirectoryError::UnknownTarget(t) => write!(
                f,
                "no such account or alias in our domain: {t} (create it first)"
            ),
            DirectoryError::Db(e) => write!(f, "directory database error: {e}"),
        }
    }
}

impl std::error::Error for DirectoryError {}

impl From<rusqlite::Error> for DirectoryError {
    fn from(e: rusqlite::Error) -> Self {
        DirectoryError::Db(e.to_string())
    }
}

/// A mail account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Account {
    /// The address as it was created, case preserved: `Alice@example.org`.
    pub address: String,
    /// The local part, case preserved: `Alice`.
    pub local: String,
    /// The domain, lowercase: `example.org`.
    pub domain: String,
}

/// The directory database. Cheap to share behind an `Arc`; calls are serialized on one
/// connection, and argon2 work is done outside the lock.
pub struct Directory {
    conn: Mutex<Connection>,
    /// argon2 concurrency limit and success cache.
    checks: crate::password_check::PasswordCheck,
    /// The cost of new hashes (and of rehashes at login).
    argon2: crate::password_hash::Argon2Params,
    /// A hash of a random password with those parameters, verified against when the account
    /// does not exist so that the cost is the same either way.
    dummy: OnceLock<String>,
}

impl Directory {
    /// Sets the cost of the argon2id hashes written from now on (`[auth] argon2_*`); hashes
    /// with other parameters are rehashed at their next successful login.
    pub fn with_argon2(mut self, params: crate::password_hash::Argon2Params) -> Directory {
        self.argon2 = params;
        self.dummy = OnceLock::new();
        self
    }

    fn hash_password(&self, password: &str) -> Result<String, DirectoryError> {
        crate::password_hash::hash_with(password, self.argon2).map_err(DirectoryError::Db)
    }

    fn dummy_hash(&self) -> &str {
        self.dummy.get_or_init(|| {
            let pw: [u8; 16] = rand::random();
            let pw: String = pw.iter().map(|b| format!("{b:02x}")).collect();
            // If hashing ever failed, an unparsable string still makes verification fail
            // (quickly).
            self.hash_password(&pw).unwrap_or_default()
        })
    }
}

fn verify_hash(hash: &str, password: &str) -> bool {
    crate::password_hash::verify(hash, password)
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::ConstraintViolation
    )
}

const SCHEMA: &str = "
CREATE TABLE domains (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE
);
CREATE TABLE accounts (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    address TEXT NOT NULL,
    local TEXT NOT NULL,
    domain TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX accounts_domain ON accounts(domain);
CREATE TABLE alias_targets (
    id INTEGER PRIMARY KEY,
    alias_key TEXT NOT NULL,
    alias TEXT NOT NULL,
    domain TEXT NOT NULL,
    target TEXT NOT NULL,
    target_key TEXT NOT NULL,
    UNIQUE (alias_key, target_key)
);
CREATE INDEX alias_targets_domain ON alias_targets(domain);
";

fn account_by_key(conn: &Connection, key: &str) -> Result<Option<Account>, DirectoryError> {
    Ok(conn
        .prepare_cached("SELECT address, local, domain FROM accounts WHERE key = ?1")?
        .query_row([key], |r| {
            Ok(Account {
                address: r.get(0)?,
                local: r.get(1)?,
                domain: r.get(2)?,
            })
        })
        .optional()?)
}

fn first_account(
    conn: &Connection,
    domain: Option<&str>,
) -> Result<Option<Account>, DirectoryError> {
    let map = |r: &rusqlite::Row<'_>| {
        Ok(Account {
            address: r.get(0)?,
            local: r.get(1)?,
            domain: r.get(2)?,
        })
    };
    Ok(match domain {
        Some(d) => conn
            .prepare_cached(
                "SELECT address, local, domain FROM accounts WHERE domain = ?1 ORDER BY id LIMIT 1",
            )?
            .query_row([d], map)
            .optional()?,
        None => conn
            .prepare_cached("SELECT address, local, domain FROM accounts ORDER BY id LIMIT 1")?
            .query_row([], map)
            .optional()?,
    })
}

fn domain_exists(conn: &Connection, domain: &str) -> Result<bool, DirectoryError> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM domains WHERE name = ?1")?
        .query_row([domain], |_| Ok(()))
        .optional()?
        .is_some())
}

fn alias_targets(conn: &Connection, alias_key: &str) -> Result<Vec<String>, DirectoryError> {
    let mut stmt =
        conn.prepare_cached("SELECT target FROM alias_targets WHERE alias_key = ?1 ORDER BY id")?;
    let rows = stmt.query_map([alias_key], |r| r.get::<_, String>(0))?;
    Ok(rows.collect::<Result<Vec<_>, _>>()?)
}

/// A connection to `<data_dir>/directory.sqlite3` (as the directory opens it: 5 s busy
/// timeout, WAL) with a side table's `schema` (`CREATE TABLE IF NOT EXISTS ...`) applied:
/// the tables other `store` modules keep beside the directory's own (DKIM keys, quotas,
/// per-account limits and retention), outside its schema version.
pub(crate) fn open_side_table(data_dir: &Path, schema: &str) -> rusqlite::Result<Connection> {
    let conn = Connection::open(data_dir.join("directory.sqlite3"))?;
    conn.busy_timeout(Duration::from_secs(5))?;
    let _: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    conn.execute_batch(schema)?;
    Ok(conn)
}

impl Directory {
    /// Opens (creating if needed) `<data_dir>/directory.sqlite3`, creating `data_dir` if
    /// missing, and creates or checks the schema.
    pub fn open(data_dir: &Path) -> Result<Directory, DirectoryError> {
        std::fs::create_dir_all(data_dir).map_err(|e| {
            DirectoryError::Db(format!("cannot create {}: {e}", data_dir.display()))
        })?;
        let mut conn = Connection::open(data_dir.join("directory.sqlite3"))?;
        conn.busy_timeout(Duration::from_secs(5))?;
        let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(DirectoryError::Db(format!(
                "cannot switch to WAL mode (got {mode})"
            )));
        }
        // Schema creation in an IMMEDIATE transaction, so two processes opening a fresh
        // database at once do not both try to create it.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let version: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        match version {
            0 => {
                tx.execute_batch(SCHEMA)?;
                tx.execute_batch(admins::MIGRATION_2)?;
                tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
            }
            1 => {
                tx.execute_batch(admins::MIGRATION_2)?;
                tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
            }
            SCHEMA_VERSION => {}
            v => {
                return Err(DirectoryError::Db(format!(
                    "directory schema version {v} is newer than this program ({SCHEMA_VERSION})"
                )))
            }
        }
        tx.commit()?;
        Ok(Directory {
            conn: Mutex::new(conn),
            checks: crate::password_check::PasswordCheck::default(),
            argon2: crate::password_hash::Argon2Params::default(),
            dummy: OnceLock::new(),
        })
    }

    fn lock(&self) -> Result<MutexGuard<'_, Connection>, DirectoryError> {
        self.conn
            .lock()
            .map_err(|_| DirectoryError::Db("directory lock poisoned".into()))
    }

    /// Adds a local domain (stored lowercase).
    pub fn add_domain(&self, domain: &str) -> Result<(), DirectoryError> {
        let d = parse_domain(domain, domain).map_err(|_| {
            DirectoryError::InvalidDomain(format!(
                "{} ({})",
                domain.escape_debug(),
                address::domain_syntax_why(domain)
            ))
        })?;
        if let Some(why) = address::new_domain_rule(&d) {
            return Err(DirectoryError::InvalidDomain(format!(
                "{} ({why})",
                domain.escape_debug()
            )));
        }
        let conn = self.lock()?;
        match conn.execute("INSERT INTO domains (name) VALUES (?1)", [&d]) {
            Ok(_) => Ok(()),
            Err(e) if is_unique_violation(&e) => Err(DirectoryError::DomainExists(d)),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes a local domain; refuses while it still has accounts or aliases.
    pub fn remove_domain(&self, domain: &str) -> Result<(), DirectoryError> {
        let d = parse_domain(domain, domain)?;
        let mut conn = self.lock()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if !domain_exists(&tx, &d)? {
            return Err(DirectoryError::NoSuchDomain(d));
        }
        let accounts: i64 = tx.query_row(
            "SELECT COUNT(*) FROM accounts WHERE domain = ?1",
            [&d],
            |r| r.get(0),
        )?;
        if accounts > 0 {
            return Err(DirectoryError::DomainHasAccounts(d));
        }
        let aliases: i64 = tx.query_row(
            "SELECT COUNT(*) FROM alias_targets WHERE domain = ?1",
            [&d],
            |r| r.get(0),
        )?;
        if aliases > 0 {
            return Err(DirectoryError::DomainHasAliases(d));
        }
        tx.execute("DELETE FROM domains WHERE name = ?1", [&d])?;
        tx.commit()?;
        Ok(())
    }

    /// The local domains, sorted.
    pub fn list_domains(&self) -> Result<Vec<String>, DirectoryError> {
        let conn = self.lock()?;
        let mut stmt = conn.prepare_cached("SELECT name FROM domains ORDER BY name")?;
        let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Whether `domain` (any case) is one of ours. An invalid domain is simply not local.
    pub fn is_local_domain(&self, domain: &str) -> Result<bool, DirectoryError> {
        let Ok(d) = parse_domain(domain, domain) else {
            return Ok(false);
        };
        let conn = self.lock()?;
        domain_exists(&conn, &d)
    }

    /// Creates an account; its domain must be local and the address must not already be an
    /// account or an alias.
    pub fn add_user(&self, address: &str, password: &str) -> Result<(), DirectoryError> {
        // Hash before taking the lock: argon2 is deliberately slow.
        let hash = self.hash_password(password)?;
        self.insert_account(address, &hash)
    }

    /// Creates an account with a hash brought from another server (see
    /// [`crate::password_hash::from_dovecot`]); it is rehashed to argon2id at the first
    /// successful login.
    pub fn import_user(&self, address: &str, stored_hash: &str) -> Result<(), DirectoryError> {
        self.insert_account(address, stored_hash)
    }

    fn insert_account(&self, address: &str, hash: &str) -> Result<(), DirectoryError> {
        let a = parse_address(address)?;
        let mut conn = self.lock()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if !domain_exists(&tx, &a.domain)? {
            return Err(DirectoryError::NoSuchDomain(a.domain));
        }
        if !alias_targets(&tx, &a.key())?.is_empty() {
            return Err(DirectoryError::AliasExists(a.display()));
        }
        match tx.execute(
            "INSERT INTO accounts (key, address, local, domain, hash) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![a.key(), a.display(), a.local, a.domain, hash],
        ) {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => {
                return Err(DirectoryError::AccountExists(a.display()))
            }
            Err(e) => return Err(e.into()),
        }
        tx.commit()?;
        Ok(())
    }

    /// Replaces an account's password.
    pub fn set_password(&self, address: &str, password: &str) -> Result<(), DirectoryError> {
        let a = parse_address(address)?;
        let hash = self.hash_password(password)?;
        let conn = self.lock()?;
        let n = conn.execute(
            "UPDATE accounts SET hash = ?1 WHERE key = ?2",
            params![hash, a.key()],
        )?;
        if n == 0 {
            return Err(DirectoryError::NoSuchAccount(a.display()));
        }
        Ok(())
    }

    /// Deletes an account (its Maildir is left alone). Aliases pointing at it are kept; the
    /// router skips targets that no longer exist.
    pub fn remove_user(&self, address: &str) -> Result<(), DirectoryError> {
        let a = parse_address(address)?;
        let conn = self.lock()?;
        let n = conn.execute("DELETE FROM accounts WHERE key = ?1", [a.key()])?;
        if n == 0 {
            return Err(DirectoryError::NoSuchAccount(a.display()));
        }
        Ok(())
    }

    /// Account addresses (as stored), sorted case-insensitively; only `domain`'s when given.
    pub fn list_users(&self, domain: Option<&str>) -> Result<Vec<String>, DirectoryError> {
        let conn = self.lock()?;
        let rows = match domain {
            Some(d) => {
                let d = parse_domain(d, d)?;
                if !domain_exists(&conn, &d)? {
                    return Err(DirectoryError::NoSuchDomain(d));
                }
                let mut stmt = conn.prepare_cached(
                    "SELECT address FROM accounts WHERE domain = ?1 ORDER BY key",
                )?;
                let rows = stmt.query_map([&d], |r| r.get::<_, String>(0))?;
                rows.collect::<Result<Vec<_>, _>>()?
            }
            None => {
                let mut stmt = conn.prepare_cached("SELECT address FROM accounts ORDER BY key")?;
                let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
                rows.collect::<Result<Vec<_>, _>>()?
            }
        };
        Ok(rows)
    }

    /// Adds targets to an alias, creating it if needed (`@domain` is the domain's catch-all).
    /// The alias's domain must be local and the alias must not be an account; targets are
    /// addresses, local or remote. Targets already present are not added twice.
    pub fn add_alias(&self, alias: &str, targets: &[String]) -> Result<(), DirectoryError> {
        self.insert_alias(alias, targets, true)
    }

    /// [`Directory::add_alias`] without the target and loop checks: only for tests of how the
    /// router and the RCPT policy treat tables written before those checks existed.
    #[doc(hidden)]
    pub fn add_alias_unchecked(
        &self,
        alias: &str,
        targets: &[String],
    ) -> Result<(), DirectoryError> {
        self.insert_alias(alias, targets, false)
    }

    fn insert_alias(
        &self,
        alias: &str,
        targets: &[String],
        checked: bool,
    ) -> Result<(), DirectoryError> {
        let (name, key, domain) = parse_alias(alias)?;
        if targets.is_empty() {
            return Err(invalid(alias, "an alias needs at least one target"));
        }
        let parsed = targets
            .iter()
            .map(|t| parse_address(t))
            .collect::<Result<Vec<_>, _>>()?;
        let mut conn = self.lock()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if !domain_exists(&tx, &domain)? {
            return Err(DirectoryError::NoSuchDomain(domain));
        }
        if account_by_key(&tx, &key)?.is_some() {
            return Err(DirectoryError::AccountExists(name));
        }
        for t in &parsed {
            tx.execute(
                "INSERT OR IGNORE INTO alias_targets (alias_key, alias, domain, target, target_key)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![key, name, domain, t.display(), t.key()],
            )?;
        }
        // Checked with the new targets in place, before the commit: a target in our domains
        // must name something, and the expansion must end (otherwise nothing is stored).
        for t in parsed.iter().filter(|_| checked) {
            let tkey = t.key();
            if domain_exists(&tx, &t.domain)?
                && account_by_key(&tx, &tkey)?.is_none()
                && alias_targets(&tx, &tkey)?.is_empty()
            {
                return Err(DirectoryError::UnknownTarget(t.display()));
            }
        }
        if checked && resolve::loops(&tx, &key)? {
            return Err(DirectoryError::AliasLoop(name));
        }
        tx.commit()?;
        Ok(())
    }

    /// Removes an alias and all its targets.
    pub fn remove_alias(&self, alias: &str) -> Result<(), DirectoryError> {
        let (name, key, _) = parse_alias(alias)?;
        let conn = self.lock()?;
        let n = conn.execute("DELETE FROM alias_targets WHERE alias_key = ?1", [key])?;
        if n == 0 {
            return Err(DirectoryError::NoSuchAlias(name));
        }
        Ok(())
    }

    /// Removes one target of an alias (the alias goes when its last target does).
    pub fn remove_alias_target(&self, alias: &str, target: &str) -> Result<(), DirectoryError> {
        let (name, key, _) = parse_alias(alias)?;
        let t = parse_address(target)?;
        let conn = self.lock()?;
        let n = conn.execute(
            "DELETE FROM alias_targets WHERE alias_key = ?1 AND target_key = ?2",
            [key, t.key()],
        )?;
        if n == 0 {
            return Err(DirectoryError::NoSuchAlias(format!(
                "{name} -> {}",
                t.display()
            )));
        }
        Ok(())
    }

    /// Every alias with its targets (in the order added), sorted by alias.
    pub fn list_aliases(&self) -> Result<Vec<(String, Vec<String>)>, DirectoryError> {
        let conn = self.lock()?;
        let mut stmt = conn.prepare_cached(
            "SELECT alias_key, alias, target FROM alias_targets ORDER BY alias_key, id",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
            ))
        })?;
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        let mut last_key: Option<String> = None;
        for row in rows {
            let (key, alias, target) = row?;
            match out.last_mut() {
                Some(last) if last_key.as_deref() == Some(key.as_str()) => last.1.push(target),
                _ => {
                    out.push((alias, vec![target]));
                    last_key = Some(key);
                }
            }
        }
        Ok(out)
    }

    /// The account with this address (compared case-insensitively), if any.
    pub fn account(&self, address: &str) -> Result<Option<Account>, DirectoryError> {
        let a = parse_address(address)?;
        let conn = self.lock()?;
        account_by_key(&conn, &a.key())
    }

    /// argon2id check; returns the account on success. Same cost whether or not the account
    /// exists (verify against a dummy hash when unknown) so timing does not reveal accounts.
    pub fn verify_password(
        &self,
        address: &str,
        password: &str,
    ) -> Result<Option<Account>, DirectoryError> {
        let found = match parse_address(address) {
            Ok(a) => {
                let conn = self.lock()?;
                let mut stmt = conn.prepare_cached(
                    "SELECT address, local, domain, hash FROM accounts WHERE key = ?1",
                )?;
                stmt.query_row([a.key()], |r| {
                    Ok((
                        Account {
                            address: r.get(0)?,
                            local: r.get(1)?,
                            domain: r.get(2)?,
                        },
                        r.get::<_, String>(3)?,
                    ))
                })
                .optional()?
            }
            Err(_) => None,
        };
        // The lock is released here; argon2 runs without it, bounded by `checks`.
        match found {
            Some((account, hash)) => {
                let key = account.address.to_lowercase();
                if self.checks.cached(&key, &hash, password) {
                    return Ok(Some(account));
                }
                let ok = self.checks.limited(|| verify_hash(&hash, password));
                if ok && crate::password_hash::needs_rehash_for(&hash, self.argon2) {
                    // An imported hash, or argon2id with other parameters: replaced by the
                    // configured argon2id now that we know the password (only if nobody
                    // changed it meanwhile).
                    let new = self.checks.limited(|| self.hash_password(password))?;
                    self.lock()?.execute(
                        "UPDATE accounts SET hash = ?1 WHERE key = ?2 AND hash = ?3",
                        params![new, key, hash],
                    )?;
                } else if ok {
                    self.checks.remember(&key, &hash, password);
                }
                Ok(ok.then_some(account))
            }
            None => {
                let _ = self
                    .checks
                    .limited(|| verify_hash(self.dummy_hash(), password));
                Ok(None)
            }
        }
    }
}

#[cfg(test)]
#[path = "directory_tests.rs"]
mod tests;
