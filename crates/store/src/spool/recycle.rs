//! Reusing the files of delivered messages: when the queue runner is done with a message,
//! [`Spool::remove_delivered`] empties its file and moves it to `tmp/free-<n>` instead of
//! unlinking it, and the next [`Spool::enqueue`] writes its message into such a file instead of
//! creating one. A message then costs no inode allocation and no inode release: on ext4
//! those are the most expensive steps of a queue file's life (the allocator skips every inode
//! freed in the last minutes whose table block is still dirty, so under a steady flow of mail
//! each creation scans thousands of them while holding the directory's lock; measured at 30 %
//! of the server's CPU in the S2 relay bench, docs/performance.md).
//!
//! Readers of the queue (delivery, `mailroom queue`, the metrics, `mailroom backup`) open a
//! message with [`open_shared`]: a shared `flock` held as long as the file is open, and a
//! check that the path still names the file they opened. The recycler takes the lock
//! exclusively without waiting; when any reader holds the file open it unlinks it as before
//! (a reader keeps a removed message's bytes), so no reader ever sees another message's bytes
//! in a file it opened as this one. A reader that opened the file just before it was recycled
//! finds after locking that the path is gone: the message has left the queue (`NotFound`).
//!
//! Crash safety: the file is renamed out of `msg/` before it is emptied, and nothing in
//! `tmp/` survives a restart (`Spool::open_and_recover` deletes it, the pool lives in memory).
//! If the crash keeps the emptying but loses the rename (ext4 without a journal orders
//! neither), an empty `msg/<id>` is left: recovery deletes empty message files, which can be
//! nothing else (a queued file always starts with its envelope, fsynced before the rename
//! into `msg/`). If it loses both, the message is delivered once more, as after a lost unlink.
//!
//! Not here: the group commit (`spool`), the message format (`spool`, `body`).

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use super::{check_id, Spool};

/// Empty files kept for reuse at most: about the messages a busy relay has in its queue at
/// once (the S2 bench peaks near 1,500), so that under a steady flow every new message finds
/// one. An empty file costs an inode and a directory entry, no data block.
pub(super) const MAX_FREE: usize = 4096;
const FREE_PREFIX: &str = "free-";

/// Opens a queue file for reading with a shared lock held while it is open, after checking
/// that `path` still names the opened file (else `NotFound`: recycled, i.e. delivered). Every
/// reader of a `msg/` file must open it this way (see the module header).
pub fn open_shared(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)?;
    lock_shared_named(file, path)
}

/// The second half of [`open_shared`]: lock `file`, opened from `path`, and check the name.
fn lock_shared_named(file: File, path: &Path) -> io::Result<File> {
    file.lock_shared()?;
    let opened = file.metadata()?;
    let named = fs::symlink_metadata(path)?;
    if (opened.dev(), opened.ino()) != (named.dev(), named.ino()) {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{} left the queue while being opened", path.display()),
        ));
    }
    Ok(file)
}

impl Spool {
    /// A file in `tmp/` to write a new message into, opened for writing and empty: a recycled
    /// one when the pool has one, else `tmp/<id>` created (O_EXCL, mode 0600).
    pub(super) fn new_tmp_file(&self, id: &str) -> io::Result<(PathBuf, File)> {
        while let Some(n) = self.lock_free().pop() {
            let path = self.tmp.join(format!("{FREE_PREFIX}{n}"));
            let opened = OpenOptions::new()
                .write(true)
                .truncate(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path);
            if let Ok(file) = opened {
                return Ok((path, file));
            }
        }
        let path = self.tmp.join(id);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        Ok((path, file))
    }

    /// Removes a message the queue runner has finished with, and its state file. The file
    /// is kept for reuse when no reader has it open and the pool has room; otherwise it is
    /// unlinked (as [`Spool::remove`] does). No fsync: a message that comes back after a
    /// crash is delivered again (see the module header).
    pub fn remove_delivered(&self, id: &str) -> io::Result<()> {
        check_id(id)?;
        let path = self.msg.join(id);
        let removed = if self.lock_free().len() < self.max_free {
            self.recycle(&path).or_else(|_| fs::remove_file(&path))
        } else {
            fs::remove_file(&path)
        };
        self.remove_state(id)?;
        removed
    }

    /// Moves `msg/<id>` to `tmp/free-<n>` and empties it, if nobody has it open.
    fn recycle(&self, path: &Path) -> io::Result<()> {
        let file = OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(path)?;
        file.try_lock().map_err(io::Error::other)?;
        let n = self.next_free.fetch_add(1, Ordering::Relaxed);
        let free = self.tmp.join(format!("{FREE_PREFIX}{n}"));
        fs::rename(path, &free)?;
        if file.set_len(0).is_err() {
            // Out of msg/ already, but not reusable: unlinked, as `remove` would have.
            return fs::remove_file(&free);
        }
        drop(file);
        self.lock_free().push(n);
        self.recycled.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// How many delivered messages' files went back to the pool (tests, docs).
    pub fn recycled(&self) -> u64 {
        self.recycled.load(Ordering::Relaxed)
    }

    fn lock_free(&self) -> std::sync::MutexGuard<'_, Vec<u64>> {
        self.free.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
#[path = "recycle_tests.rs"]
mod tests;
