//! Our DKIM keys: the private keys as files under `<data_dir>/dkim/` (mode 0600, created with
//! `O_EXCL | O_NOFOLLOW`, fsynced, renamed into place, directory fsynced), and what is known of
//! each key (domain, selector, algorithm, generation, created, state, retired-at, public key) in
//! the `dkim_keys` table of the directory database (`directory.sqlite3`, its own table and its
//! own connection: the directory's schema is not touched).
//!
//! Keys come in generations: a generation is one Ed25519 and one RSA key made together, with
//! selectors `<yyyymmdd>g<n>-ed25519` and `<yyyymmdd>g<n>-rsa`. A new generation is
//! `published` (for `dns-records`, not signing) unless it is the domain's first, which is
//! `active` at once; activating a generation retires the one that was active (retired-at = now).
//!
//! Not here: making keys or signing (crate `dkim`), DNS text (`dkim::record`). Key bytes are
//! whatever the caller gives (DER); this module never interprets them.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

/// Largest private key file we read (an RSA-4096 PKCS#8 DER is about 2.4 KB).
const MAX_KEY_FILE: u64 = 16 * 1024;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS dkim_keys (
    id INTEGER PRIMARY KEY,
    domain TEXT NOT NULL,
    selector TEXT NOT NULL,
    algorithm TEXT NOT NULL,
    generation INTEGER NOT NULL,
    created INTEGER NOT NULL,
    state TEXT NOT NULL,
    retired_at INTEGER,
    public_key BLOB NOT NULL,
    UNIQUE (domain, selector)
);
";

/// The signature algorithms we make keys for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Ed25519,
    Rsa,
}

impl Algorithm {
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Ed25519 => "ed25519",
            Algorithm::Rsa => "rsa",
        }
    }
    fn parse(s: &str) -> Option<Algorithm> {
        match s {
            "ed25519" => Some(Algorithm::Ed25519),
            "rsa" => Some(Algorithm::Rsa),
            _ => None,
        }
    }
}

/// Where a key is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyState {
    /// In DNS (or about to be), not signing yet.
    Published,
    /// Signing.
    Active,
    /// No longer signing; stays in DNS a week after `retired_at`.
    Retired,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyState::Published => "published",
            KeyState::Active => "active",
            KeyState::Retired => "retired",
        }
    }
    fn parse(s: &str) -> KeyState {
        match s {
            "published" => KeyState::Published,
            "active" => KeyState::Active,
            _ => KeyState::Retired,
        }
    }
}

/// What is known of one key (never the private half).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyInfo {
    pub domain: String,
    pub selector: String,
    pub algorithm: Algorithm,
    pub generation: i64,
    /// Unix seconds.
    pub created: u64,
    pub state: KeyState,
    /// Unix seconds, for retired keys.
    pub retired_at: Option<u64>,
    /// The public key as published in DNS (`p=`), DER.
    pub public_key: Vec<u8>,
}

/// A key pair to store, as made by the caller.
pub struct NewKey {
    pub algorithm: Algorithm,
    /// PKCS#8 (Ed25519) or PKCS#1 (RSA) DER.
    pub private_der: Vec<u8>,
    /// What goes into `p=`.
    pub public_der: Vec<u8>,
}

/// Why a key operation failed.
#[derive(Debug)]
pub enum KeyError {
    /// `activate` of a selector the domain does not have.
    NoSuchKey(String),
    /// The domain name cannot name a key file.
    BadDomain(String),
    Io(io::Error),
    Db(String),
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::NoSuchKey(s) => write!(f, "no such DKIM key: {s}"),
            KeyError::BadDomain(d) => write!(f, "not a domain name: {d}"),
            KeyError::Io(e) => write!(f, "DKIM key file: {e}"),
            KeyError::Db(e) => write!(f, "directory database error: {e}"),
        }
    }
}

impl std::error::Error for KeyError {}

impl From<rusqlite::Error> for KeyError {
    fn from(e: rusqlite::Error) -> Self {
        KeyError::Db(e.to_string())
    }
}

impl From<io::Error> for KeyError {
    fn from(e: io::Error) -> Self {
        KeyError::Io(e)
    }
}

/// The key store. Like the directory, nothing is cached: every call sees what another
/// process (the CLI) committed.
pub struct DkimKeys {
    conn: Mutex<Connection>,
    dir: PathBuf,
    /// Writes committed through this connection (SQLite's `data_version` counts the others).
    writes: std::sync::atomic::AtomicU64,
}

/// A domain as it may appear in a file name: lowercase letters, digits, `-` and `.`, not
/// starting with `.`.
fn check_domain(domain: &str) -> Result<String, KeyError> {
    let d = domain.to_ascii_lowercase();
    let ok = !d.is_empty()
        && d.len() <= 253
        && !d.starts_with('.')
        && d.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
    if ok {
        Ok(d)
    } else {
        Err(KeyError::BadDomain(domain.to_string()))
    }
}

/// `yyyymmdd` of a Unix time (UTC), for selectors.
fn ymd(unix: u64) -> String {
    // Howard Hinnant's civil_from_days.
    let z = (unix / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}{m:02}{d:02}")
}

fn file_name(domain: &str, selector: &str) -> String {
    format!("{domain}_{selector}.der")
}

fn row_to_info(r: &rusqlite::Row<'_>) -> rusqlite::Result<KeyInfo> {
    let algorithm: String = r.get(2)?;
    let state: String = r.get(5)?;
    Ok(KeyInfo {
        domain: r.get(0)?,
        selector: r.get(1)?,
        algorithm: Algorithm::parse(&algorithm).unwrap_or(Algorithm::Rsa),
        generation: r.get(3)?,
        created: r.get::<_, i64>(4)? as u64,
        state: KeyState::parse(&state),
        retired_at: r.get::<_, Option<i64>>(6)?.map(|t| t as u64),
        public_key: r.get(7)?,
    })
}

const COLUMNS: &str =
    "domain, selector, algorithm, generation, created, state, retired_at, public_key";

impl DkimKeys {
    /// Opens the key table in `<data_dir>/directory.sqlite3` (creating it) and the key
    /// directory `<data_dir>/dkim/` (mode 0700).
    pub fn open(data_dir: &Path) -> Result<DkimKeys, KeyError> {
        let dir = data_dir.join("dkim");
        match fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e.into()),
        }
        let conn = crate::directory::open_side_table(data_dir, SCHEMA)?;
        Ok(DkimKeys {
            conn: Mutex::new(conn),
            dir,
            writes: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Changes whenever the key table may have changed: a write through this handle, or a
    /// commit by any other connection to the database (SQLite's `PRAGMA data_version`: the
    /// CLI's `dkim activate`, another process). Cheaper than [`DkimKeys::signing`], so a
    /// reader can keep what it read until this moves.
    pub fn version(&self) -> Result<(i64, u64), KeyError> {
        let conn = self.lock()?;
        let data: i64 = conn
            .prepare_cached("PRAGMA data_version")?
            .query_row([], |r| r.get(0))?;
        Ok((data, self.writes.load(std::sync::atomic::Ordering::SeqCst)))
    }

    fn lock(&self) -> Result<MutexGuard<'_, Connection>, KeyError> {
        self.conn
            .lock()
            .map_err(|_| KeyError::Db("key store lock poisoned".into()))
    }

    /// Stores a new generation of keys for `domain`: the domain's first generation is active
    /// at once, later ones are published. Key files are durable before the rows exist.
    pub fn add_generation(
        &self,
        domain: &str,
        keys: &[NewKey],
        now: u64,
    ) -> Result<Vec<KeyInfo>, KeyError> {
        let domain = check_domain(domain)?;
        let mut conn = self.lock()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let last: Option<i64> = tx.query_row(
            "SELECT MAX(generation) FROM dkim_keys WHERE domain = ?1",
            [&domain],
            |r| r.get(0),
        )?;
        let generation = last.unwrap_or(0) + 1;
        let state = if last.is_none() {
            KeyState::Active
        } else {
            KeyState::Published
        };
        let mut out = Vec::new();
        for key in keys {
            let selector = format!("{}g{generation}-{}", ymd(now), key.algorithm.as_str());
            self.write_key_file(&file_name(&domain, &selector), &key.private_der)?;
            tx.execute(
                "INSERT INTO dkim_keys (domain, selector, algorithm, generation, created, state, public_key)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    domain,
                    selector,
                    key.algorithm.as_str(),
                    generation,
                    now as i64,
                    state.as_str(),
                    key.public_der
                ],
            )?;
            out.push(KeyInfo {
                domain: domain.clone(),
                selector,
                algorithm: key.algorithm,
                generation,
                created: now,
                state,
                retired_at: None,
                public_key: key.public_der.clone(),
            });
        }
        tx.commit()?;
        self.writes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(out)
    }

    /// Every key of `domain` (or of every domain), by domain then generation.
    pub fn list(&self, domain: Option<&str>) -> Result<Vec<KeyInfo>, KeyError> {
        let conn = self.lock()?;
        let rows = match domain {
            Some(d) => {
                let d = check_domain(d)?;
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM dkim_keys WHERE domain = ?1 ORDER BY generation, algorithm"
                ))?;
                let rows = stmt.query_map([d], row_to_info)?;
                rows.collect::<Result<Vec<_>, _>>()?
            }
            None => {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {COLUMNS} FROM dkim_keys ORDER BY domain, generation, algorithm"
                ))?;
                let rows = stmt.query_map([], row_to_info)?;
                rows.collect::<Result<Vec<_>, _>>()?
            }
        };
        Ok(rows)
    }

    /// The keys `domain` signs with now (one per algorithm), without their private halves.
    pub fn signing(&self, domain: &str) -> Result<Vec<KeyInfo>, KeyError> {
        let domain = check_domain(domain)?;
        let conn = self.lock()?;
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM dkim_keys WHERE domain = ?1 AND state = 'active' ORDER BY algorithm"
        ))?;
        let rows = stmt.query_map([domain], row_to_info)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Makes the generation of `selector` the one that signs; the generation active before is
    /// retired as of `now`. Activating the active generation changes nothing.
    pub fn activate(&self, domain: &str, selector: &str, now: u64) -> Result<(), KeyError> {
        let domain = check_domain(domain)?;
        let mut conn = self.lock()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let generation: Option<i64> = tx
            .query_row(
                "SELECT generation FROM dkim_keys WHERE domain = ?1 AND selector = ?2",
                params![domain, selector],
                |r| r.get(0),
            )
            .optional()?;
        let Some(generation) = generation else {
            return Err(KeyError::NoSuchKey(format!("{selector} of {domain}")));
        };
        tx.execute(
            "UPDATE dkim_keys SET state = 'retired', retired_at = ?3
             WHERE domain = ?1 AND state = 'active' AND generation != ?2",
            params![domain, generation, now as i64],
        )?;
        tx.execute(
            "UPDATE dkim_keys SET state = 'active', retired_at = NULL
             WHERE domain = ?1 AND generation = ?2",
            params![domain, generation],
        )?;
        tx.commit()?;
        self.writes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    /// The private key (DER) of one key, read without following a symlink.
    pub fn private_key(&self, key: &KeyInfo) -> Result<Vec<u8>, KeyError> {
        let domain = check_domain(&key.domain)?;
        let path = self.dir.join(file_name(&domain, &key.selector));
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)?;
        let mut der = Vec::new();
        file.take(MAX_KEY_FILE).read_to_end(&mut der)?;
        Ok(der)
    }

    /// The path of a key's private file (for the admin: `dkim list` shows nothing secret).
    pub fn key_path(&self, key: &KeyInfo) -> PathBuf {
        self.dir.join(file_name(&key.domain, &key.selector))
    }

    /// Writes `bytes` to `dkim/<name>` through [`crate::private_files`] (0600, `O_EXCL |
    /// O_NOFOLLOW`, fsync, rename into place, fsync of the directory).
    fn write_key_file(&self, name: &str, bytes: &[u8]) -> Result<(), KeyError> {
        let data_dir = self.dir.parent().unwrap_or(Path::new("."));
        crate::private_files::write(data_dir, "dkim", &[(name, bytes)])?;
        Ok(())
    }
}

#[cfg(test)]
#[path = "dkim_keys_tests.rs"]
mod tests;
