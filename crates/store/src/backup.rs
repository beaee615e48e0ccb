//! `mailroom backup DIR` / `mailroom restore DIR`: a copy of `data_dir` taken while the server
//! runs, and putting one back into an empty `data_dir`.
//!
//! What a backup holds: the directory as one consistent SQLite snapshot (`VACUUM INTO`, which
//! reads inside one transaction while the server goes on writing), then the queue, then
//! everything else (Maildirs, keys, certificates), and last a `mailroom-backup` marker that
//! says the copy is complete. The queue is copied before the Maildirs because a message only
//! ever moves from the queue into Maildirs: every message acknowledged before the backup
//! started is in it, in the queue copy or in a Maildir copy. A message delivered while the
//! backup runs can be in both and is then delivered once more after a restore (a duplicate,
//! never a loss). Maildir and queue `tmp/` directories, the SQLite WAL files and lock files
//! are left out. Every file and directory of the backup is fsynced.
//!
//! Restore refuses a backup without the marker and a `data_dir` that is not empty (stop the
//! server and move the old one away first). It does not change owners: the server gives
//! `data_dir` to its user at start.

use std::fs;
use std::io;
use std::path::Path;

/// Written last into a complete backup.
pub const MARKER: &str = "mailroom-backup";
const DIRECTORY_DB: &str = "directory.sqlite3";

/// What a backup or restore copied.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Copied {
    pub files: u64,
    pub bytes: u64,
}

/// Backs `data_dir` up into `dest` (created; it must not exist or be empty).
pub fn backup(data_dir: &Path, dest: &Path) -> io::Result<Copied> {
    empty_or_new(dest)?;
    let mut copied = Copied::default();
    let db = data_dir.join(DIRECTORY_DB);
    if db.exists() {
        let conn = rusqlite::Connection::open(&db).map_err(io::Error::other)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))
            .map_err(io::Error::other)?;
        let target = dest.join(DIRECTORY_DB);
        let target = target
            .to_str()
            .ok_or_else(|| io::Error::other("backup path is not UTF-8"))?;
        conn.execute("VACUUM INTO ?1", [target])
            .map_err(io::Error::other)?;
        fs::File::open(dest.join(DIRECTORY_DB))?.sync_all()?;
        copied.files += 1;
    }
    // The queue first (see the module header), then the rest.
    copy_tree(&data_dir.join("queue"), &dest.join("queue"), &mut copied)?;
    for entry in fs::read_dir(data_dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let n = name.to_string_lossy();
        if n == "queue" || n.starts_with(DIRECTORY_DB) || skipped(&n) {
            continue;
        }
        copy_entry(&entry.path(), &dest.join(&name), &mut copied)?;
    }
    fs::write(
        dest.join(MARKER),
        format!("files={} bytes={}\n", copied.files, copied.bytes),
    )?;
    fs::File::open(dest.join(MARKER))?.sync_all()?;
    fs::File::open(dest)?.sync_all()?;
    Ok(copied)
}

/// Copies a complete backup `src` into the empty (or new) `data_dir`.
pub fn restore(src: &Path, data_dir: &Path) -> io::Result<Copied> {
    if !src.join(MARKER).is_file() {
        return Err(io::Error::other(format!(
            "{} is not a complete backup (no {MARKER} marker)",
            src.display()
        )));
    }
    empty_or_new(data_dir)?;
    let mut copied = Copied::default();
    for entry in fs::read_dir(src)? {
        let entry = entry?;
        if entry.file_name() == MARKER {
            continue;
        }
        copy_entry(
            &entry.path(),
            &data_dir.join(entry.file_name()),
            &mut copied,
        )?;
    }
    fs::File::open(data_dir)?.sync_all()?;
    Ok(copied)
}

fn empty_or_new(dir: &Path) -> io::Result<()> {
    match fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!("{} is not empty", dir.display()),
                ));
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(dir)?;
            let parent = dir.parent().unwrap_or(Path::new("/"));
            fs::File::open(parent)?.sync_all()
        }
        Err(e) => Err(e),
    }
}

/// Names never copied: lock files, and what only lives while being written.
fn skipped(name: &str) -> bool {
    name.ends_with(".lock") || name.ends_with("-wal") || name.ends_with("-shm")
}

fn copy_entry(from: &Path, to: &Path, copied: &mut Copied) -> io::Result<()> {
    let meta = match fs::symlink_metadata(from) {
        Ok(m) => m,
        // Gone since the listing (a message delivered or removed meanwhile).
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if meta.is_dir() {
        // A Maildir's tmp/ holds only messages being written, never acknowledged ones; so
        // does the queue's (next to its msg/), with the emptied files kept for reuse, and
        // the server clears it at start anyway.
        if from.file_name().is_some_and(|n| n == "tmp")
            && from
                .parent()
                .is_some_and(|p| p.join("new").is_dir() || p.join("msg").is_dir())
        {
            fs::create_dir_all(to)?;
            return Ok(());
        }
        return copy_tree(from, to, copied);
    }
    if !meta.is_file() {
        return Ok(()); // Symlinks, sockets: nothing Mailroom writes.
    }
    // Shared-locked like every reader of a queue file: a delivered message's file may be
    // reused for the next message (`spool::open_shared`).
    let mut input = match crate::spool::open_shared(from) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut out = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(to)?;
    let n = io::copy(&mut input, &mut out)?;
    out.set_permissions(meta.permissions())?;
    out.sync_all()?;
    copied.files += 1;
    copied.bytes += n;
    Ok(())
}

fn copy_tree(from: &Path, to: &Path, copied: &mut Copied) -> io::Result<()> {
    let entries = match fs::read_dir(from) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    fs::create_dir_all(to)?;
    let mut names: Vec<_> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .collect();
    names.sort();
    for name in names {
        if skipped(&name.to_string_lossy()) {
            continue;
        }
        copy_entry(&from.join(&name), &to.join(&name), copied)?;
    }
    fs::File::open(to)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_and_restore_round_trip() {
        let t = tempfile::tempdir().unwrap();
        let data = t.path().join("data");
        let dir = crate::directory::Directory::open(&data).unwrap();
        dir.add_domain("example.org").unwrap();
        dir.add_user("alice@example.org", "pw").unwrap();
        let md = data.join("mail/example.org/alice/Maildir");
        for sub in ["new", "cur", "tmp"] {
            fs::create_dir_all(md.join(sub)).unwrap();
        }
        fs::write(md.join("new/1.a,S=3"), "abc").unwrap();
        fs::write(md.join("tmp/2.half"), "partial").unwrap();
        fs::write(md.join("mailroom.lock"), "").unwrap();
        fs::create_dir_all(data.join("queue/msg")).unwrap();
        fs::write(data.join("queue/msg/ID1"), "queued").unwrap();
        fs::create_dir_all(data.join("queue/tmp")).unwrap();
        fs::write(data.join("queue/tmp/ID2"), "being written").unwrap();
        fs::write(data.join("queue/tmp/free-0"), "").unwrap();

        let b = t.path().join("backup");
        let c = backup(&data, &b).unwrap();
        assert!(c.files >= 3, "{c:?}");
        assert!(b.join(MARKER).is_file());
        assert!(!b.join("mail/example.org/alice/Maildir/tmp/2.half").exists());
        assert!(b.join("queue/tmp").is_dir());
        assert_eq!(fs::read_dir(b.join("queue/tmp")).unwrap().count(), 0);
        assert!(!b
            .join("mail/example.org/alice/Maildir/mailroom.lock")
            .exists());
        assert!(backup(&data, &b).is_err(), "not over an existing backup");

        let fresh = t.path().join("fresh");
        restore(&b, &fresh).unwrap();
        assert_eq!(fs::read(fresh.join("queue/msg/ID1")).unwrap(), b"queued");
        assert_eq!(
            fs::read(fresh.join("mail/example.org/alice/Maildir/new/1.a,S=3")).unwrap(),
            b"abc"
        );
        let dir = crate::directory::Directory::open(&fresh).unwrap();
        assert!(dir
            .verify_password("alice@example.org", "pw")
            .unwrap()
            .is_some());
        assert!(restore(&b, &fresh).is_err(), "not into a data_dir in use");
        fs::remove_file(b.join(MARKER)).unwrap();
        assert!(
            restore(&b, &t.path().join("other")).is_err(),
            "incomplete backup"
        );
    }
}
