//! Cached TLS policies of remote domains (MTA-STS, RFC 8461 §5.1): one file per domain under
//! `<data_dir>/mta-sts/`, written whole (tmp file, fsync, rename, directory fsync) so a cached
//! policy survives restarts and a crash leaves the old one or the new one.
//!
//! The content is opaque here (the relay's `tls_policy::cache` writes and reads it); this
//! file only knows names and bounds: a domain that is not a plain lower-case host name gets
//! no file, and a file larger than [`MAX_FILE`] is not read.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Larger files are ignored (a policy is at most 64 KiB, plus a few header lines).
pub const MAX_FILE: u64 = 80 * 1024;
const DIR: &str = "mta-sts";

/// The policy files of one `data_dir`.
#[derive(Clone, Debug)]
pub struct TlsPolicies {
    dir: PathBuf,
}

fn file_name(domain: &str) -> Option<String> {
    let d = domain.trim_end_matches('.').to_ascii_lowercase();
    let ok = !d.is_empty()
        && d.len() <= 253
        && !d.starts_with('.')
        && !d.contains("..")
        && d.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    ok.then_some(d)
}

impl TlsPolicies {
    pub fn new(data_dir: &Path) -> TlsPolicies {
        TlsPolicies {
            dir: data_dir.join(DIR),
        }
    }

    /// The stored record of `domain`, if any.
    pub fn read(&self, domain: &str) -> io::Result<Option<Vec<u8>>> {
        let Some(name) = file_name(domain) else {
            return Ok(None);
        };
        let f = match OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(self.dir.join(name))
        {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        f.take(MAX_FILE + 1).read_to_end(&mut out)?;
        if out.len() as u64 > MAX_FILE {
            return Ok(None);
        }
        Ok(Some(out))
    }

    /// Replaces the record of `domain` (durable when this returns).
    pub fn write(&self, domain: &str, record: &[u8]) -> io::Result<()> {
        let Some(name) = file_name(domain) else {
            return Ok(());
        };
        match fs::create_dir(&self.dir) {
            Ok(()) => File::open(self.dir.parent().unwrap_or(Path::new("/")))?.sync_all()?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        let tmp = self.dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let _ = fs::remove_file(&tmp);
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        f.write_all(record)?;
        f.sync_all()?;
        fs::rename(&tmp, self.dir.join(name))?;
        File::open(&self.dir)?.sync_all()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_then_read_and_names_checked() {
        let t = tempfile::tempdir().unwrap();
        let p = TlsPolicies::new(t.path());
        assert_eq!(p.read("example.org").unwrap(), None);
        p.write("Example.ORG.", b"one").unwrap();
        assert_eq!(p.read("example.org").unwrap().unwrap(), b"one");
        p.write("example.org", b"two").unwrap();
        assert_eq!(p.read("EXAMPLE.org").unwrap().unwrap(), b"two");
        // Names that could leave the directory get no file.
        for bad in ["../x", "a/b", "..", ".hidden", "a..b", ""] {
            p.write(bad, b"x").unwrap();
            assert_eq!(p.read(bad).unwrap(), None);
        }
        assert_eq!(fs::read_dir(t.path().join(DIR)).unwrap().count(), 1);
        // An oversized file is not read.
        fs::write(t.path().join(DIR).join("big.example"), vec![b'x'; 100_000]).unwrap();
        assert_eq!(p.read("big.example").unwrap(), None);
    }
}
