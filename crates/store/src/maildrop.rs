//! The maildrop: where `mailroom sendmail` run by an ordinary Unix user (cron, PHP `mail()`,
//! mailx) leaves a message for the server, which may be down. Postfix's `maildrop` without the
//! setgid `postdrop`: nothing of Mailroom is setuid or setgid.
//!
//! `data_dir/maildrop/` is mode `1733` (write and search for everyone, no listing, sticky):
//! a user creates `.<random>` (128 random bits, `O_EXCL | O_NOFOLLOW`, mode `0604`), writes
//! and fsyncs it, renames it to `<random>` and syncs the file system (a user cannot open the
//! directory to fsync it). Nobody can list the directory, so the names are not known to other
//! users; the sticky bit keeps users from removing each other's files. The file's owner (the
//! kernel's `st_uid`, not anything in the file) says who sent it. `data_dir` gets the search
//! bit for others (`0711`) so the maildrop can be reached; everything else under it stays
//! private to the service user.
//!
//! The server ([`take`]) reads each file with `O_NOFOLLOW | O_NONBLOCK` and accepts only a
//! regular file with one link and a bounded size. What the bytes mean is the caller's business
//! (hostile input from a local user); this module only moves them.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

use crate::at;

/// The directory's name under `data_dir`.
pub const DIR: &str = "maildrop";
const DIR_MODE: libc::mode_t = 0o1733;
const FILE_MODE: libc::mode_t = 0o604;
/// A `.<name>` file older than this was left by a writer that died.
const STALE_SECS: i64 = 24 * 3600;

/// Creates `data_dir/maildrop` (mode 1733) and lets everyone search `data_dir`; run by the
/// server at start (as root before the drop, or as the user it runs as).
pub fn prepare(data_dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(data_dir)?;
    let top = at::open_configured_dir(data_dir)?;
    let st = at::fstat(&top)?;
    fchmod(&top, (st.st_mode & 0o7777) | 0o011)?;
    let dir = at::subdir(&top, &at::c_name(DIR)?, 0o700)?;
    fchmod(&dir, DIR_MODE)
}

fn fchmod(fd: &OwnedFd, mode: libc::mode_t) -> std::io::Result<()> {
    // SAFETY: plain system call on a descriptor we own.
    at::cvt(unsafe { libc::fchmod(fd.as_raw_fd(), mode) }).map(drop)
}

fn random_name() -> String {
    let bytes: [u8; 16] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn is_name(s: &str) -> bool {
    s.len() == 32
        && s.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// Leaves `bytes` in the maildrop as the calling user and returns once the file is durable.
/// Fails when the server never prepared the maildrop.
pub fn post(data_dir: &Path, bytes: &[u8]) -> std::io::Result<String> {
    // O_PATH: users may search the directory, not read it.
    let path = at::c_name(data_dir.join(DIR))?;
    let flags = libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC;
    // SAFETY: path is a valid C string; the result is a new descriptor we own.
    let dir = unsafe { OwnedFd::from_raw_fd(at::cvt(libc::open(path.as_ptr(), flags))?) };
    let name = random_name();
    let tmp = at::c_name(format!(".{name}"))?;
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL;
    let fd = at::open_at(&dir, &tmp, flags, FILE_MODE)?;
    let written = (|| {
        // The umask (077) took the bit the server needs to read the file.
        fchmod(&fd, FILE_MODE)?;
        let mut f = std::fs::File::from(fd.try_clone()?);
        f.write_all(bytes)?;
        f.sync_all()?;
        at::rename_at(&dir, &tmp, &at::c_name(&name)?)?;
        // SAFETY: plain system call on a descriptor we own. The directory cannot be opened
        // for fsync by its users (no read permission): sync its file system instead.
        at::cvt(unsafe { libc::syncfs(fd.as_raw_fd()) }).map(drop)
    })();
    if let Err(e) = written {
        let _ = at::unlink_at(&dir, &tmp);
        return Err(e);
    }
    Ok(name)
}

/// The names of the messages waiting, oldest first (by name order is enough: each pass takes
/// them all). Stale `.<name>` files from writers that died are removed on the way.
pub fn list(data_dir: &Path) -> std::io::Result<Vec<String>> {
    let path = data_dir.join(DIR);
    let now = std::time::SystemTime::now();
    let mut names = Vec::new();
    for entry in std::fs::read_dir(&path)? {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if is_name(&name) {
            names.push(name);
        } else if name.strip_prefix('.').is_some_and(is_name) {
            let old = entry
                .metadata()
                .ok()
                .and_then(|m| m.modified().ok())
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|age| age.as_secs() as i64 > STALE_SECS);
            if old {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    names.sort();
    Ok(names)
}

/// One message from the maildrop.
#[derive(Debug)]
pub struct Dropped {
    /// Who left it (the file's owner).
    pub uid: u32,
    pub bytes: Vec<u8>,
}

/// Reads `name`: a regular file with one link and at most `max` bytes, never through a symlink
/// or a FIFO. The file stays until [`remove`].
pub fn take(data_dir: &Path, name: &str, max: u64) -> std::io::Result<Dropped> {
    let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
    if !is_name(name) {
        return Err(bad("not a maildrop name"));
    }
    let dir = at::open_configured_dir(&data_dir.join(DIR))?;
    let fd = at::open_at(
        &dir,
        &at::c_name(name)?,
        libc::O_RDONLY | libc::O_NONBLOCK,
        0,
    )?;
    let st = at::fstat(&fd)?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return Err(bad("not a regular file"));
    }
    if st.st_nlink != 1 {
        return Err(bad("a file with several links"));
    }
    if st.st_size as u64 > max {
        return Err(bad("too large"));
    }
    let mut bytes = Vec::with_capacity(st.st_size as usize);
    std::fs::File::from(fd)
        .take(max + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max {
        return Err(bad("too large"));
    }
    Ok(Dropped {
        uid: st.st_uid,
        bytes,
    })
}

/// Removes `name` once its message is in the queue (or refused for good).
pub fn remove(data_dir: &Path, name: &str) -> std::io::Result<()> {
    let dir = at::open_configured_dir(&data_dir.join(DIR))?;
    at::unlink_at(&dir, &at::c_name(name)?)?;
    std::fs::File::from(dir).sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    #[test]
    fn posted_messages_are_listed_taken_and_removed() {
        let t = tempfile::tempdir().unwrap();
        prepare(t.path()).unwrap();
        let m = std::fs::metadata(t.path().join(DIR)).unwrap();
        assert_eq!(m.permissions().mode() & 0o7777, 0o1733);
        assert_eq!(
            std::fs::metadata(t.path()).unwrap().mode() & 0o011,
            0o011,
            "data_dir searchable"
        );
        let name = post(t.path(), b"hello").unwrap();
        let f = std::fs::metadata(t.path().join(DIR).join(&name)).unwrap();
        assert_eq!(f.permissions().mode() & 0o777, FILE_MODE);
        assert_eq!(list(t.path()).unwrap(), vec![name.clone()]);
        let d = take(t.path(), &name, 100).unwrap();
        assert_eq!(d.bytes, b"hello");
        // SAFETY: geteuid has no preconditions.
        assert_eq!(d.uid, unsafe { libc::geteuid() });
        assert!(take(t.path(), &name, 4).is_err(), "over the bound");
        remove(t.path(), &name).unwrap();
        assert!(list(t.path()).unwrap().is_empty());
    }

    #[test]
    fn links_fifos_and_odd_names_are_refused() {
        let t = tempfile::tempdir().unwrap();
        prepare(t.path()).unwrap();
        let dir = t.path().join(DIR);
        let secret = t.path().join("secret");
        std::fs::write(&secret, "private").unwrap();
        let (a, b, c) = ("a".repeat(32), "b".repeat(32), "c".repeat(32));
        std::os::unix::fs::symlink(&secret, dir.join(&a)).unwrap();
        std::fs::hard_link(&secret, dir.join(&b)).unwrap();
        let fifo = at::c_name(dir.join(&c)).unwrap();
        // SAFETY: valid C string.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        for n in [&a, &b, &c] {
            assert!(take(t.path(), n, 100).is_err(), "{n}");
        }
        assert!(take(t.path(), "../secret", 100).is_err());
        std::fs::write(dir.join("README"), "x").unwrap();
        assert_eq!(list(t.path()).unwrap().len(), 3);
    }
}
