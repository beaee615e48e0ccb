//! Mailbox quotas: the limit of each account (its own, else its domain's) in the `quotas`
//! table of `directory.sqlite3`, and the usage of each Maildir in its Maildir++
//! `maildirsize` file (the format Dovecot and Courier read: a first line `<bytes>S` giving
//! the quota, then lines `<bytes> <messages>` whose sums are the usage).
//!
//! What it does: the MDA adds a line per delivered copy ([`delivered`]), POP3's update one
//! line per QUIT that deleted messages ([`removed`]): appends of a few octets, no scan of the
//! Maildir per message. When the file is missing, unreadable, or grew past 5120 octets (the
//! Maildir++ rule) it is rebuilt from the file names' `,S=` sizes (or `stat`). [`usage`]
//! reads the sums. Lines are appended with `O_APPEND | O_NOFOLLOW`, each one `write`, so
//! concurrent writers do not interleave within a line.
//!
//! [`is_full`] is the one rule (usage at or over the quota) that the RCPT policy (`452 4.2.2`)
//! and the MDA (a queued copy deferred with `4.2.2 Mailbox full`) apply.
//!
//! What it does not do: lock: a line lost to a race is corrected at the next rebuild, and two
//! copies checked at once may both pass (the mailbox ends a message further past its quota).

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension};

/// Rebuild past this size (Maildir++).
const MAX_FILE: u64 = 5120;
/// Largest `maildirsize` read.
const READ_LIMIT: u64 = 64 * 1024;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS quotas (
    key TEXT PRIMARY KEY,
    bytes INTEGER NOT NULL
);
";

/// Quota limits: per account (`key` = the address lowercased) or per domain (`@domain`).
pub struct Quotas {
    conn: Mutex<Connection>,
}

impl Quotas {
    pub fn open(data_dir: &Path) -> Result<Quotas, String> {
        crate::directory::open_side_table(data_dir, SCHEMA)
            .map(|c| Quotas {
                conn: Mutex::new(c),
            })
            .map_err(|e| format!("quotas: {e}"))
    }

    fn get(&self, key: &str) -> Result<Option<u64>, String> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        // Cached: asked at every local RCPT and for every copy written into a Maildir.
        conn.prepare_cached("SELECT bytes FROM quotas WHERE key = ?1")
            .and_then(|mut stmt| stmt.query_row(params![key], |r| r.get::<_, i64>(0)))
            .optional()
            .map(|v| v.map(|b| b.max(0) as u64))
            .map_err(|e| e.to_string())
    }

    fn set(&self, key: &str, bytes: Option<u64>) -> Result<(), String> {
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        match bytes {
            Some(b) => conn.execute(
                "INSERT INTO quotas (key, bytes) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET bytes = ?2",
                params![key, b as i64],
            ),
            None => conn.execute("DELETE FROM quotas WHERE key = ?1", params![key]),
        }
        .map(|_| ())
        .map_err(|e| e.to_string())
    }

    /// Sets (or with `None` removes) an account's own quota.
    pub fn set_account(&self, address: &str, bytes: Option<u64>) -> Result<(), String> {
        self.set(&address.to_lowercase(), bytes)
    }

    /// Sets (or removes) a domain's default quota.
    pub fn set_domain(&self, domain: &str, bytes: Option<u64>) -> Result<(), String> {
        self.set(&format!("@{}", domain.to_lowercase()), bytes)
    }

    /// The quota of an account: its own, else its domain's; `None`: unlimited.
    pub fn of(&self, address: &str) -> Result<Option<u64>, String> {
        let address = address.to_lowercase();
        if let Some(q) = self.get(&address)? {
            return Ok(Some(q));
        }
        match address.rsplit_once('@') {
            Some((_, domain)) => self.get(&format!("@{domain}")),
            None => Ok(None),
        }
    }
}

/// `2G`, `500M`, `100K`, `12345` (bytes; powers of 1024) or `none`.
pub fn parse_size(text: &str) -> Result<Option<u64>, String> {
    let t = text.trim();
    if t.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    let (digits, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => t.split_at(i),
        None => (t, ""),
    };
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?}: a size like 2G, 500M, 100K or none"))?;
    let mult: u64 = match unit.to_ascii_uppercase().as_str() {
        "" | "B" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        "T" => 1 << 40,
        _ => return Err(format!("{text:?}: a size like 2G, 500M, 100K or none")),
    };
    n.checked_mul(mult)
        .map(Some)
        .ok_or_else(|| format!("{text:?}: too large"))
}

/// The usage of a Maildir: `(bytes, messages)`.
pub type Usage = (u64, u64);

/// The usage and the quota of the first line (`None` when it gives no `S` limit).
fn parse(text: &str) -> Option<(Usage, Option<u64>)> {
    let mut lines = text.lines();
    let first = lines.next()?;
    let limit = first
        .split(',')
        .find_map(|f| f.strip_suffix('S').and_then(|n| n.parse::<u64>().ok()))
        .filter(|&n| n > 0);
    if !first.split(',').all(|f| {
        f.is_empty()
            || f.ends_with(['S', 'C']) && f[..f.len() - 1].bytes().all(|b| b.is_ascii_digit())
    }) {
        return None;
    }
    let (mut bytes, mut count) = (0i64, 0i64);
    for line in lines {
        let mut f = line.split_ascii_whitespace();
        let b: i64 = f.next()?.parse().ok()?;
        let c: i64 = f.next()?.parse().ok()?;
        bytes = bytes.saturating_add(b);
        count = count.saturating_add(c);
    }
    Some(((bytes.max(0) as u64, count.max(0) as u64), limit))
}

fn file_size(dir: &Path, name: &str) -> u64 {
    let base = name.split_once(':').map_or(name, |(b, _)| b);
    base.split(',')
        .skip(1)
        .find_map(|f| f.strip_prefix("S=").and_then(|v| v.parse().ok()))
        .unwrap_or_else(|| {
            fs::symlink_metadata(dir.join(name))
                .map(|m| m.len())
                .unwrap_or(0)
        })
}

/// Counts `new/` and `cur/` and writes a fresh `maildirsize` (tmp file, rename).
pub fn rebuild(root: &Path, quota: Option<u64>) -> io::Result<Usage> {
    let (mut bytes, mut count) = (0u64, 0u64);
    for sub in ["new", "cur"] {
        let dir = root.join(sub);
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if name.starts_with('.') {
                continue;
            }
            bytes += file_size(&dir, name);
            count += 1;
        }
    }
    let tmp = root.join(format!("tmp/maildirsize.{}", std::process::id()));
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(format!("{}S\n{bytes} {count}\n", quota.unwrap_or(0)).as_bytes())?;
    drop(f);
    fs::rename(&tmp, root.join("maildirsize"))?;
    Ok((bytes, count))
}

/// The usage of the Maildir at `root`, rebuilding `maildirsize` when needed (also when its
/// first line does not name `quota`, so other readers see the limit in force).
pub fn usage(root: &Path, quota: Option<u64>) -> io::Result<Usage> {
    let path = root.join("maildirsize");
    let read = || -> io::Result<Option<(Usage, Option<u64>, u64)>> {
        let f = match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let len = f.metadata()?.len();
        let mut text = String::new();
        f.take(READ_LIMIT).read_to_string(&mut text)?;
        Ok(parse(&text).map(|(u, limit)| (u, limit, len)))
    };
    match read()? {
        Some((u, limit, len)) if len <= MAX_FILE && limit == quota.filter(|&q| q > 0) => Ok(u),
        _ => rebuild(root, quota),
    }
}

fn append(root: &Path, bytes: i64, count: i64) -> io::Result<()> {
    let path = root.join("maildirsize");
    if fs::symlink_metadata(&path).is_err() {
        // Counted from the files, this copy included.
        return rebuild(root, None).map(|_| ());
    }
    let mut f = OpenOptions::new()
        .append(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)?;
    f.write_all(format!("{bytes} {count}\n").as_bytes())
}

/// Whether the Maildir at `root` is at or over `quota` octets: the one rule of a full
/// mailbox, for the RCPT check (`452 4.2.2`) and the MDA's check before each copy (the queue
/// then defers it, `4.2.2 Mailbox full`). Below its quota a mailbox takes one more message of
/// any size, so it may end up one message past it. A Maildir that cannot be read (not made
/// yet) counts as empty.
pub fn is_full(root: &Path, quota: u64) -> bool {
    match usage(root, Some(quota)) {
        Ok((bytes, _)) => bytes >= quota,
        Err(_) => false,
    }
}

/// A copy of `bytes` octets was delivered into the Maildir at `root`. Errors are logged: the
/// next rebuild corrects the count.
pub fn delivered(root: &Path, bytes: u64) {
    if let Err(e) = append(root, bytes as i64, 1) {
        tracing::warn!("quota: {}: maildirsize not updated: {e}", root.display());
    }
}

/// `count` messages of `bytes` octets in all were deleted from the Maildir at `root`.
pub fn removed(root: &Path, bytes: u64, count: u64) {
    if count == 0 {
        return;
    }
    if let Err(e) = append(root, -(bytes as i64), -(count as i64)) {
        tracing::warn!("quota: {}: maildirsize not updated: {e}", root.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("2G").unwrap(), Some(2 << 30));
        assert_eq!(parse_size("500m").unwrap(), Some(500 << 20));
        assert_eq!(parse_size("1234").unwrap(), Some(1234));
        assert_eq!(parse_size("none").unwrap(), None);
        assert!(parse_size("2X").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("99999999999T").is_err());
    }

    #[test]
    fn maildirsize_is_kept_by_appends_and_rebuilt_when_missing_or_large() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path();
        for sub in ["tmp", "new", "cur"] {
            fs::create_dir(root.join(sub)).unwrap();
        }
        fs::write(root.join("new/1.Q1R0.mx,S=5"), b"hello").unwrap();
        fs::write(root.join("cur/2.Q2R0.mx,S=3:2,S"), b"abc").unwrap();
        assert_eq!(usage(root, Some(100)).unwrap(), (8, 2));
        assert_eq!(
            fs::read_to_string(root.join("maildirsize")).unwrap(),
            "100S\n8 2\n"
        );
        fs::write(root.join("new/3.Q3R0.mx,S=4"), b"four").unwrap();
        delivered(root, 4);
        removed(root, 5, 1);
        assert_eq!(
            fs::read_to_string(root.join("maildirsize")).unwrap(),
            "100S\n8 2\n4 1\n-5 -1\n"
        );
        assert_eq!(usage(root, Some(100)).unwrap(), (7, 2));
        for _ in 0..1500 {
            delivered(root, 0);
        }
        // Past 5120 octets: rebuilt from the files.
        assert_eq!(usage(root, Some(100)).unwrap(), (12, 3));
        assert!(fs::metadata(root.join("maildirsize")).unwrap().len() < 100);
        // Garbage is rebuilt too.
        fs::write(root.join("maildirsize"), b"nonsense\nx y\n").unwrap();
        assert_eq!(usage(root, None).unwrap(), (12, 3));
    }

    #[test]
    fn an_accounts_quota_wins_over_its_domains() {
        let d = tempfile::tempdir().unwrap();
        let q = Quotas::open(d.path()).unwrap();
        assert_eq!(q.of("a@x.test").unwrap(), None);
        q.set_domain("X.test", Some(1000)).unwrap();
        assert_eq!(q.of("a@x.test").unwrap(), Some(1000));
        q.set_account("A@x.test", Some(50)).unwrap();
        assert_eq!(q.of("a@X.test").unwrap(), Some(50));
        q.set_account("a@x.test", None).unwrap();
        assert_eq!(q.of("a@x.test").unwrap(), Some(1000));
    }
}
