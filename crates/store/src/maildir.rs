//! Durable delivery into a Maildir, following maildir(5) (and D. J. Bernstein's
//! "Using maildir format"): write the message to `tmp/`, fsync it, rename it into `new/`, fsync
//! `new/`. Only then is the delivery done. The fsyncs and the rename go through the
//! [`Disk`] seam given at [`Maildir::with_disk`], so tests can watch their order.
//!
//! [`Maildir::deliver`] takes the message as byte slices, [`Maildir::deliver_from`] from a
//! reader, copied in bounded blocks.
//!
//! Layout: `<data_dir>/mail/<domain>/<local part lowercased>/Maildir/{tmp,new,cur}`.
//!
//! This module does not read or list messages for POP3 (see `mailbox`), does not resolve
//! recipients and does not decide file names beyond [`Maildir::file_name`]'s format.

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::directory::Account;
use crate::durable::Disk;

/// Where an account's Maildir lives: `<data_dir>/mail/<domain>/<local lowercased>/Maildir`.
/// The directory validated both parts when the account was created (no `/`, no leading dot).
pub fn maildir_path(data_dir: &Path, account: &Account) -> PathBuf {
    data_dir
        .join("mail")
        .join(account.domain.to_lowercase())
        .join(account.local.to_lowercase())
        .join("Maildir")
}

/// A Maildir (the directory holding `tmp/`, `new/` and `cur/`).
#[derive(Clone)]
pub struct Maildir {
    root: PathBuf,
    disk: Arc<dyn Disk>,
}

impl std::fmt::Debug for Maildir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Maildir").field("root", &self.root).finish()
    }
}

fn invalid_input(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg)
}

/// Creates `dir` (mode 0700) and any missing parents, fsyncing the parent of each directory
/// it creates so the new entry survives a crash.
pub(crate) fn ensure_dir(dir: &Path, disk: &dyn Disk) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    ensure_dir(parent, disk)?;
    match fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => disk.sync_dir(parent),
        // Someone else (another delivery) created it meanwhile.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => Ok(()),
        Err(e) => Err(e),
    }
}

/// Checks a message file name given to [`Maildir::deliver`] / [`Maildir::contains`]: not
/// empty, no `/`, no NUL, does not start with a dot.
fn check_name(name: &str) -> io::Result<()> {
    if name.is_empty() || name.starts_with('.') || name.contains('/') || name.contains('\0') {
        return Err(invalid_input(format!(
            "bad maildir file name: {}",
            name.escape_debug()
        )));
    }
    Ok(())
}

/// Octets copied at a time by [`Maildir::deliver_from`].
const COPY_BLOCK: usize = 64 * 1024;

/// The `S=` of `name`, when it has one, must be `total`.
fn check_size(name: &str, total: u64) -> io::Result<()> {
    if let Some(s) = size_field(name) {
        if s.parse::<u64>().ok() != Some(total) {
            return Err(invalid_input(format!(
                "maildir name {name} says S={s} but the message is {total} octets"
            )));
        }
    }
    Ok(())
}

/// The `S=<size>` field of a file name (maildir(5) / Courier extension), if present.
fn size_field(name: &str) -> Option<&str> {
    let base = name.split(':').next().unwrap_or(name);
    base.split(',').find_map(|f| f.strip_prefix("S="))
}

impl Maildir {
    /// A Maildir rooted at `root` (nothing is created until [`Maildir::create`] or
    /// [`Maildir::deliver`]).
    pub fn new(root: PathBuf) -> Maildir {
        Maildir::with_disk(root, crate::durable::os())
    }

    /// A Maildir whose fsyncs and renames go through `disk`.
    pub fn with_disk(root: PathBuf, disk: Arc<dyn Disk>) -> Maildir {
        Maildir { root, disk }
    }

    /// The directory holding `tmp/`, `new/` and `cur/`.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Creates tmp/ new/ cur/ (and parents) if missing, fsyncing each created directory's parent.
    pub fn create(&self) -> io::Result<()> {
        for sub in ["tmp", "new", "cur"] {
            ensure_dir(&self.root.join(sub), &*self.disk)?;
        }
        Ok(())
    }

    /// The file name a delivery of this message gets:
    /// `{unix_secs}.{unique}.{host},S={size}` (maildir(5)), where `host` has `/` replaced by
    /// `\057` and `:` by `\072`, and `unique` is a caller-given token such as `Q<queue id>R<n>`
    /// that must match `[A-Za-z0-9_-]+`.
    ///
    /// Deviation from a plain `String` return: an invalid `unique` is an `InvalidInput` error
    /// instead of being silently rewritten (rewriting could make two tokens collide).
    pub fn file_name(unix_secs: u64, unique: &str, host: &str, size: u64) -> io::Result<String> {
        if unique.is_empty()
            || !unique
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(invalid_input(format!(
                "bad maildir unique token: {}",
                unique.escape_debug()
            )));
        }
        let mut h = String::with_capacity(host.len());
        for c in host.chars() {
            match c {
                '/' => h.push_str("\\057"),
                ':' => h.push_str("\\072"),
                // Not in maildir(5), but a host name with these would break the file name.
                '\0' => h.push_str("\\000"),
                c => h.push(c),
            }
        }
        if h.is_empty() {
            h.push_str("localhost");
        }
        Ok(format!("{unix_secs}.{unique}.{h},S={size}"))
    }

    /// Durable delivery: create the Maildir if needed; write `parts` (concatenated) to
    /// `tmp/<name>` (O_EXCL), fsync the file, rename to `new/<name>`, fsync new/. Returns the path
    /// in new/. On any error the tmp file is removed. The size in the name (`,S=`) must be the
    /// total length of the parts; a name whose `S=` disagrees is rejected. A message already
    /// in new/ under that name is not overwritten (`AlreadyExists`).
    pub fn deliver(&self, name: &str, parts: &[&[u8]]) -> io::Result<PathBuf> {
        check_name(name)?;
        let total: u64 = parts.iter().map(|p| p.len() as u64).sum();
        check_size(name, total)?;
        self.deliver_with(name, |file| {
            for p in parts {
                file.write_all(p)?;
            }
            Ok(())
        })
    }

    /// [`Maildir::deliver`] for a message read from `message` to its end, copied in bounded
    /// blocks (a large message is never held in memory): the same tmp/ -> fsync -> rename ->
    /// fsync new/ steps. The `S=` of the name must match the octets read; if not, nothing is
    /// delivered (`InvalidInput`).
    pub fn deliver_from(&self, name: &str, message: &mut dyn Read) -> io::Result<PathBuf> {
        check_name(name)?;
        self.deliver_with(name, |file| {
            let mut block = vec![0u8; COPY_BLOCK];
            let mut total = 0u64;
            loop {
                let n = match message.read(&mut block) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                };
                file.write_all(&block[..n])?;
                total += n as u64;
            }
            check_size(name, total)
        })
    }

    /// The steps of a delivery around `write`, which fills the open tmp file.
    fn deliver_with(
        &self,
        name: &str,
        write: impl FnOnce(&mut fs::File) -> io::Result<()>,
    ) -> io::Result<PathBuf> {
        self.create()?;
        let tmp = self.root.join("tmp").join(name);
        let new = self.root.join("new").join(name);
        let open = || {
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)
        };
        let mut file = match open() {
            // Names are unique per delivery, so a tmp file of this name is what a crashed
            // earlier attempt of this very delivery left behind: never visible, safe to drop.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                fs::remove_file(&tmp)?;
                open()?
            }
            other => other?,
        };
        let result = (|| {
            write(&mut file)?;
            self.disk.sync_file(&file, &tmp)?;
            drop(file);
            if fs::symlink_metadata(&new).is_ok() {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} already exists", new.display()),
                ));
            }
            self.disk.rename(&tmp, &new)?;
            self.disk.sync_dir(&self.root.join("new"))
        })();
        match result {
            Ok(()) => {
                crate::quota::delivered(&self.root, fs::metadata(&new).map_or(0, |m| m.len()));
                Ok(new)
            }
            Err(e) => {
                // If the rename happened and only the fsync failed, this is a no-op and the
                // message may or may not survive a crash; the caller treats it as a failure.
                let _ = fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    /// Takes back a copy [`Maildir::deliver`] wrote (`path` as it returned): unlinks it and
    /// fsyncs new/, so a rolled-back copy does not come back after a crash. Used when a
    /// multi-copy delivery fails halfway and the client is told to try again.
    pub fn withdraw(&self, path: &Path) -> io::Result<()> {
        let new = self.root.join("new");
        if path.parent() != Some(new.as_path()) {
            return Err(invalid_input(format!(
                "{} is not in {}",
                path.display(),
                new.display()
            )));
        }
        let size = fs::symlink_metadata(path).map_or(0, |m| m.len());
        match fs::remove_file(path) {
            Ok(()) => crate::quota::removed(&self.root, size, 1),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        }
        self.disk.sync_dir(&new)
    }

    /// True if a message whose file name starts with `name` exists in new/ (exact) or cur/
    /// (`name` followed by `:` and the info, or exact). Used after a crash to avoid delivering
    /// twice. A Maildir that does not exist contains nothing.
    pub fn contains(&self, name: &str) -> io::Result<bool> {
        check_name(name)?;
        match fs::symlink_metadata(self.root.join("new").join(name)) {
            Ok(_) => return Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let entries = match fs::read_dir(self.root.join("cur")) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let file_name = entry.file_name();
            let Some(f) = file_name.to_str() else {
                continue;
            };
            if let Some(rest) = f.strip_prefix(name) {
                if rest.is_empty() || rest.starts_with(':') {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn count(dir: &Path) -> usize {
        fs::read_dir(dir).expect("read_dir").count()
    }

    #[test]
    fn path_layout() {
        let acc = Account {
            address: "Alice@example.org".into(),
            local: "Alice".into(),
            domain: "example.org".into(),
        };
        assert_eq!(
            maildir_path(Path::new("/data"), &acc),
            PathBuf::from("/data/mail/example.org/alice/Maildir")
        );
    }

    #[test]
    fn file_names() {
        assert_eq!(
            Maildir::file_name(1700000000, "Q0123ABCR1", "mx.example.org", 42).expect("name"),
            "1700000000.Q0123ABCR1.mx.example.org,S=42"
        );
        assert_eq!(
            Maildir::file_name(1, "a_b-c", "h/o:st", 0).expect("name"),
            "1.a_b-c.h\\057o\\072st,S=0"
        );
        for bad in ["", "a.b", "a/b", "a:b", "a b", "é"] {
            assert!(Maildir::file_name(1, bad, "h", 0).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn deliver_is_exact_and_leaves_nothing_in_tmp() {
        let t = tempfile::tempdir().expect("tempdir");
        let md = Maildir::new(t.path().join("mail/example.org/alice/Maildir"));
        assert!(!md.contains("x").expect("contains"));
        let head: &[u8] = b"Return-Path: <a@b>\r\n";
        let body: &[u8] = b"Subject: hi\r\n\r\n\0\xff bare\r cr\r\n";
        let size = (head.len() + body.len()) as u64;
        let name = Maildir::file_name(1700000000, "QABCR0", "mx", size).expect("name");
        let path = md.deliver(&name, &[head, body]).expect("deliver");
        assert_eq!(path, md.root().join("new").join(&name));
        let mut expected = head.to_vec();
        expected.extend_from_slice(body);
        assert_eq!(fs::read(&path).expect("read"), expected);
        assert_eq!(count(&md.root().join("tmp")), 0);
        assert_eq!(count(&md.root().join("new")), 1);
        assert!(md.root().join("cur").is_dir());
        assert!(md.contains(&name).expect("contains"));
        // Delivering the same name again does not overwrite, and cleans its tmp file.
        let err = md.deliver(&name, &[head, body]).expect_err("exists");
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(count(&md.root().join("tmp")), 0);
        assert_eq!(fs::read(&path).expect("read"), expected);
    }

    #[test]
    fn deliver_rejects_bad_names_and_wrong_size() {
        let t = tempfile::tempdir().expect("tempdir");
        let md = Maildir::new(t.path().join("Maildir"));
        for bad in ["", ".x", "a/b", "../x", "a\0b"] {
            assert!(md.deliver(bad, &[b"x"]).is_err(), "{bad:?}");
        }
        let err = md.deliver("1.a.h,S=5", &[b"1234"]).expect_err("size");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        md.deliver("1.a.h,S=4", &[b"12", b"34"]).expect("ok");
        assert_eq!(count(&md.root().join("tmp")), 0);
    }

    #[test]
    fn deliver_from_a_reader_copies_in_blocks_and_checks_the_size() {
        let t = tempfile::tempdir().expect("tempdir");
        let md = Maildir::new(t.path().join("Maildir"));
        // Larger than one block, and not a multiple of it.
        let body: Vec<u8> = (0..3 * COPY_BLOCK + 17).map(|i| (i % 251) as u8).collect();
        let head: &[u8] = b"Return-Path: <a@b>\r\n";
        let size = (head.len() + body.len()) as u64;
        let name = Maildir::file_name(1, "Q1R0", "h", size).expect("name");
        let path = md
            .deliver_from(&name, &mut head.chain(&body[..]))
            .expect("deliver");
        assert_eq!(fs::read(&path).expect("read"), [head, &body[..]].concat());
        // A reader that gives fewer octets than S= says: nothing delivered, nothing left.
        let short = Maildir::file_name(2, "Q1R1", "h", size).expect("name");
        let err = md.deliver_from(&short, &mut &body[..10]).expect_err("size");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(!md.contains(&short).expect("contains"));
        assert_eq!(count(&md.root().join("tmp")), 0);
        // A failing reader: nothing delivered either.
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::other("disk gone"))
            }
        }
        let broken = Maildir::file_name(3, "Q1R2", "h", 0).expect("name");
        assert!(md.deliver_from(&broken, &mut Broken).is_err());
        assert!(!md.contains(&broken).expect("contains"));
        assert_eq!(count(&md.root().join("tmp")), 0);
    }

    #[test]
    fn contains_after_move_to_cur() {
        let t = tempfile::tempdir().expect("tempdir");
        let md = Maildir::new(t.path().join("Maildir"));
        let name = Maildir::file_name(5, "QR1", "h", 3).expect("name");
        let path = md.deliver(&name, &[b"abc"]).expect("deliver");
        let cur = md.root().join("cur").join(format!("{name}:2,S"));
        fs::rename(&path, &cur).expect("rename");
        assert!(md.contains(&name).expect("contains"));
        // A longer name sharing the prefix does not count.
        let other = Maildir::file_name(5, "QR", "h", 3).expect("name");
        assert!(!md.contains(&other).expect("contains"));
        assert!(!md.contains("5.QR1.h,S=").expect("contains"));
        fs::rename(&cur, md.root().join("cur").join(&name)).expect("rename");
        assert!(md.contains(&name).expect("contains"));
    }

    #[test]
    fn create_is_idempotent() {
        let t = tempfile::tempdir().expect("tempdir");
        let md = Maildir::new(t.path().join("a/b/Maildir"));
        md.create().expect("create");
        md.create().expect("create again");
        for sub in ["tmp", "new", "cur"] {
            assert!(md.root().join(sub).is_dir());
        }
    }

    #[test]
    fn leftover_tmp_from_a_crash_is_replaced() {
        let t = tempfile::tempdir().expect("tempdir");
        let md = Maildir::new(t.path().join("Maildir"));
        md.create().expect("create");
        let name = Maildir::file_name(1, "Q1R0", "h", 5).expect("name");
        fs::write(md.root().join("tmp").join(&name), b"half").expect("write");
        let path = md.deliver(&name, &[b"hello"]).expect("deliver");
        assert_eq!(fs::read(path).expect("read"), b"hello");
        assert_eq!(fs::read_dir(md.root().join("tmp")).expect("tmp").count(), 0);
    }
}
