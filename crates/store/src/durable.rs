//! The three steps that make a write durable — fsync a file, rename it into place, fsync the
//! directory — behind one seam, so the promise "no `250` before the message and its directory
//! entry are on stable storage" can be seen and broken in tests.
//!
//! [`Disk`] is passed to the spool (and from it to every Maildir the MTA writes), the way the
//! guide passes the resolver and the clock: [`Os`] does the real system calls; [`Recorder`]
//! does them too and also writes down each step in order, and can be told to fail the next
//! file or directory fsync whose path contains a given text (as a disk error would), so tests
//! can assert the order "file fsync -> rename -> directory fsync -> acknowledgement" and that a
//! failed fsync leaves nothing visible. A SIGKILL keeps the page cache, so only this seam lets
//! a test notice a missing fsync.
//!
//! Not here: what is written, or where; the callers decide.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Durable-write primitives. Implementations must do the real work (callers rely on it).
pub trait Disk: Send + Sync + 'static {
    /// fsync of a file's data and metadata (`fsync(2)`).
    fn sync_file(&self, file: &File, path: &Path) -> io::Result<()>;
    /// `rename(2)`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// fsync of a directory, making entries created, renamed or removed in it durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// The real system calls.
#[derive(Clone, Copy, Debug, Default)]
pub struct Os;

impl Disk for Os {
    fn sync_file(&self, file: &File, _path: &Path) -> io::Result<()> {
        file.sync_all()
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

/// The default disk, shared.
pub fn os() -> Arc<dyn Disk> {
    Arc::new(Os)
}

/// One step a [`Recorder`] saw, in the order it happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    SyncFile(PathBuf),
    Rename(PathBuf, PathBuf),
    SyncDir(PathBuf),
    /// Something the test itself noted between steps (e.g. "250 received").
    Note(String),
    /// A step that was made to fail.
    Failed(String),
}

/// The real disk, with every step written down and fsync failures on request.
#[derive(Debug, Default)]
pub struct Recorder {
    steps: Mutex<Vec<Step>>,
    /// (kind, path text): the next `sync_file` ("file") or `sync_dir` ("dir") whose path
    /// contains the text fails with EIO, once per entry.
    faults: Mutex<Vec<(&'static str, String)>>,
}

impl Recorder {
    pub fn new() -> Arc<Recorder> {
        Arc::new(Recorder::default())
    }

    /// Every step so far.
    pub fn steps(&self) -> Vec<Step> {
        self.lock_steps().clone()
    }

    /// Adds a step of the test's own (an acknowledgement seen, for instance).
    pub fn note(&self, text: &str) {
        self.lock_steps().push(Step::Note(text.to_string()));
    }

    /// The next file fsync whose path contains `path_text` fails with EIO.
    pub fn fail_next_file_sync(&self, path_text: &str) {
        self.lock_faults().push(("file", path_text.to_string()));
    }

    /// The next directory fsync whose path contains `path_text` fails with EIO.
    pub fn fail_next_dir_sync(&self, path_text: &str) {
        self.lock_faults().push(("dir", path_text.to_string()));
    }

    fn lock_steps(&self) -> std::sync::MutexGuard<'_, Vec<Step>> {
        self.steps.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_faults(&self) -> std::sync::MutexGuard<'_, Vec<(&'static str, String)>> {
        self.faults.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn fault(&self, kind: &'static str, path: &Path) -> io::Result<()> {
        let shown = path.to_string_lossy();
        let mut faults = self.lock_faults();
        if let Some(i) = faults
            .iter()
            .position(|(k, text)| *k == kind && shown.contains(text.as_str()))
        {
            faults.remove(i);
            drop(faults);
            self.lock_steps()
                .push(Step::Failed(format!("{kind} sync {shown}")));
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        Ok(())
    }
}

impl Disk for Recorder {
    fn sync_file(&self, file: &File, path: &Path) -> io::Result<()> {
        self.fault("file", path)?;
        Os.sync_file(file, path)?;
        self.lock_steps().push(Step::SyncFile(path.to_path_buf()));
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        Os.rename(from, to)?;
        self.lock_steps()
            .push(Step::Rename(from.to_path_buf(), to.to_path_buf()));
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.fault("dir", dir)?;
        Os.sync_dir(dir)?;
        self.lock_steps().push(Step::SyncDir(dir.to_path_buf()));
        Ok(())
    }
}

/// Checks that `file` was made durable the Maildir/queue way before the note `ack`: a file
/// fsync of `tmp`, then the rename of `tmp` to `dest`, then an fsync of `dest`'s directory, all
/// before the note. Returns what is wrong, for an assertion message.
pub fn check_durable_before(
    steps: &[Step],
    tmp: &Path,
    dest: &Path,
    ack: &str,
) -> Result<(), String> {
    let pos = |want: &dyn Fn(&Step) -> bool| steps.iter().position(want);
    let synced = pos(&|s| matches!(s, Step::SyncFile(p) if p == tmp))
        .ok_or_else(|| format!("{} was never fsynced", tmp.display()))?;
    let renamed = pos(&|s| matches!(s, Step::Rename(a, b) if a == tmp && b == dest))
        .ok_or_else(|| format!("{} was never renamed to {}", tmp.display(), dest.display()))?;
    let dir = dest.parent().unwrap_or(Path::new("/"));
    let dir_synced = steps
        .iter()
        .enumerate()
        .skip(renamed)
        .find(|(_, s)| matches!(s, Step::SyncDir(d) if d == dir))
        .map(|(i, _)| i)
        .ok_or_else(|| format!("{} not fsynced after the rename", dir.display()))?;
    let acked = pos(&|s| matches!(s, Step::Note(n) if n == ack))
        .ok_or_else(|| format!("no acknowledgement {ack:?}"))?;
    if !(synced < renamed && renamed < dir_synced && dir_synced < acked) {
        return Err(format!(
            "order is file fsync {synced}, rename {renamed}, dir fsync {dir_synced}, ack {acked}: {steps:#?}"
        ));
    }
    Ok(())
}
