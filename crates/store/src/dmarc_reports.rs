//! The DMARC results kept for aggregate reports (RFC 7489 §7.2): one line per checked message
//! whose `From:` domain asked for reports (`rua=`), appended to `dmarc/<domain>.jsonl` under
//! `data_dir`, until the report task takes a domain's ([`DmarcReports::take`]) to report them.
//!
//! Bounded: a line is at most [`MAX_LINE`] octets, a domain's file at most [`MAX_FILE`]
//! (later results of that period are dropped, and counted in the log by the caller), at most
//! [`MAX_DOMAINS`] files. The lines are opaque here (the caller writes and reads them). Not
//! fsynced: a crash loses at most a period's statistics, never mail. A domain name is
//! checked before it names a file (letters, digits, `-`, `.`; no leading dot).

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// One result line.
pub const MAX_LINE: usize = 16 * 1024;
/// One domain's results in a period.
pub const MAX_FILE: u64 = 4 << 20;
/// Domains with results in a period.
pub const MAX_DOMAINS: usize = 1000;

/// What [`DmarcReports::record`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recorded {
    Kept,
    /// A bound was reached (or the line or name was unfit): not kept.
    Dropped,
}

/// The results directory `data_dir/dmarc`.
pub struct DmarcReports {
    dir: PathBuf,
    /// Serializes appends and takes.
    lock: Mutex<()>,
}

fn fit_domain(d: &str) -> bool {
    !d.is_empty()
        && d.len() <= 253
        && !d.starts_with('.')
        && !d.contains("..")
        && d.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
}

impl DmarcReports {
    pub fn open(data_dir: &Path) -> io::Result<DmarcReports> {
        let dir = data_dir.join("dmarc");
        match fs::create_dir(&dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        Ok(DmarcReports {
            dir,
            lock: Mutex::new(()),
        })
    }

    /// Appends `line` (no line end in it) to `domain`'s results.
    pub fn record(&self, domain: &str, line: &[u8]) -> io::Result<Recorded> {
        if !fit_domain(domain) || line.len() > MAX_LINE || line.contains(&b'\n') {
            return Ok(Recorded::Dropped);
        }
        let _one = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let path = self.dir.join(format!("{domain}.jsonl"));
        let size = match fs::symlink_metadata(&path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if fs::read_dir(&self.dir)?.count() >= MAX_DOMAINS {
                    return Ok(Recorded::Dropped);
                }
                0
            }
            Err(e) => return Err(e),
        };
        if size + line.len() as u64 + 1 > MAX_FILE {
            return Ok(Recorded::Dropped);
        }
        let mut f = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)?;
        let mut buf = Vec::with_capacity(line.len() + 1);
        buf.extend_from_slice(line);
        buf.push(b'\n');
        f.write_all(&buf)?;
        Ok(Recorded::Kept)
    }

    /// The domains with results kept, sorted.
    pub fn domains(&self) -> io::Result<Vec<String>> {
        let _one = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(domain) = name.strip_suffix(".jsonl") {
                if fit_domain(domain) && entry.file_type()?.is_file() {
                    out.push(domain.to_string());
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// `domain`'s results so far (at most [`MAX_FILE`] octets), removed from disk.
    pub fn take(&self, domain: &str) -> io::Result<Vec<Vec<u8>>> {
        if !fit_domain(domain) {
            return Ok(Vec::new());
        }
        let _one = self.lock.lock().unwrap_or_else(|e| e.into_inner());
        let path = self.dir.join(format!("{domain}.jsonl"));
        let mut bytes = Vec::new();
        match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
        {
            Ok(f) => {
                io::Read::read_to_end(&mut io::Read::take(f, MAX_FILE), &mut bytes)?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        }
        fs::remove_file(&path)?;
        Ok(bytes
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(<[u8]>::to_vec)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_kept_per_domain_taken_once_and_bounded() {
        let t = tempfile::tempdir().unwrap();
        let r = DmarcReports::open(t.path()).unwrap();
        assert_eq!(r.record("a.test", b"{1}").unwrap(), Recorded::Kept);
        assert_eq!(r.record("a.test", b"{2}").unwrap(), Recorded::Kept);
        assert_eq!(r.record("b.test", b"{3}").unwrap(), Recorded::Kept);
        for bad in ["../x", ".a", "A.test", "a/b", ""] {
            assert_eq!(r.record(bad, b"{}").unwrap(), Recorded::Dropped, "{bad}");
        }
        assert_eq!(r.record("a.test", b"x\ny").unwrap(), Recorded::Dropped);
        assert_eq!(
            r.record("a.test", &vec![b'x'; MAX_LINE + 1]).unwrap(),
            Recorded::Dropped
        );
        assert_eq!(r.domains().unwrap(), vec!["a.test", "b.test"]);
        assert_eq!(
            r.take("a.test").unwrap(),
            vec![b"{1}".to_vec(), b"{2}".to_vec()]
        );
        assert_eq!(r.take("b.test").unwrap(), vec![b"{3}".to_vec()]);
        assert!(r.take("a.test").unwrap().is_empty());
        assert!(r.domains().unwrap().is_empty());
        let line = vec![b'x'; MAX_LINE];
        let mut kept = 0;
        while r.record("a.test", &line).unwrap() == Recorded::Kept {
            kept += 1;
        }
        assert_eq!(kept as u64, MAX_FILE / (MAX_LINE as u64 + 1));
    }
}
