//! The reading side of a Maildir, for POP3: lock, snapshot listing, reading, and the UPDATE
//! state's deletions and seen-flag moves.
//!
//! What it does:
//! - [`Mailbox::open`] takes an exclusive lock, `flock(LOCK_EX|LOCK_NB)` on
//!   `<root>/mailroom.lock`. The kernel drops it when the descriptor is closed or the process
//!   dies, so a crash cannot leave a stale lock; separate opens conflict even within one
//!   process. A held lock gives [`MailboxError::Locked`] (POP3 `[IN-USE]`, RFC 3206 §4). Only
//!   POP3 sessions take this lock: delivery (tmp/ then rename into new/) is safe without it and
//!   simply is not seen by a session that already listed.
//! - It lists `new/` and `cur/` (not `tmp/`, not dotfiles, not directories) once, at open: the
//!   snapshot. Order is delivery order: the leading Unix time of the name, then the name.
//! - UIDL is the base name, the part before the maildir(5) info `:2,...`, so it survives the
//!   move from new/ to cur/, flag changes and restarts, and is never reused (names are unique
//!   by construction). If the base name is not 1..=70 octets of 0x21..=0x7E (RFC 1939 §7,
//!   UIDL), the UIDL is `H` + the hex FNV-1a-128 hash of the base name, which is stable too.
//! - The size is taken from the name: `,W=<n>` (Dovecot's CRLF size) if present, else
//!   `,S=<n>`, else `stat()`. Mailroom's MDA writes CRLF files named `...,S=<exact size>`.
//!
//! There is no index file: the file name *is* the index (S=), and stat() is the fallback for
//! foreign files, done from the directory entry without opening the message. An index could
//! only save the readdir, which is cheap: measured with the `lists_10000_messages` test (debug
//! build, overlay filesystem, 2 shared cores, warm cache), listing 10,000 messages with `S=`
//! names takes about 60 ms, and about 75 ms for 10,000 foreign names needing stat().
//!
//! What POP3 does to the Maildir, so other readers (mutt, Dovecot) stay consistent:
//! - Listing, TOP, and RETR never rename or modify anything during the session.
//! - At QUIT (UPDATE) only: messages marked with DELE are unlinked, wherever they are (new/ or
//!   cur/); messages retrieved with RETR and kept get the Seen flag: a message in `new/` moves
//!   to `cur/<base>:2,S`, a message in `cur/` without `S` is renamed to add it (flags kept,
//!   sorted as maildir(5) requires). TOP does not mark seen. Other messages are untouched.
//!   Then the directories a message was unlinked from (new/, cur/) are fsynced: deletions are
//!   durable before `+OK` to QUIT. The Seen renames are not fsynced (neither the files nor the
//!   directories): after a power loss a retrieved message may show as unseen in new/ again,
//!   never lost and never twice. A dropped connection changes nothing.
//! - RETR of a message up to a size bound reads it whole into the session's buffer in one call
//!   ([`Mailbox::read_into`]); larger ones are streamed from the open file.
//! - If another reader moved or re-flagged a message meanwhile, it is found again in cur/ by
//!   base name.
//!
//! What it does not do: deliver (see `maildir`), parse messages, or know about POP3 commands.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::durable::Disk;

/// Name of the lock file in the Maildir root.
pub const LOCK_FILE: &str = "mailroom.lock";

/// Errors opening a mailbox.
#[derive(Debug)]
pub enum MailboxError {
    /// Another session holds the lock.
    Locked,
    /// An I/O error.
    Io(io::Error),
}

impl fmt::Display for MailboxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MailboxError::Locked => f.write_str("mailbox is locked by another session"),
            MailboxError::Io(e) => write!(f, "mailbox I/O error: {e}"),
        }
    }
}

impl std::error::Error for MailboxError {}

impl From<io::Error> for MailboxError {
    fn from(e: io::Error) -> Self {
        MailboxError::Io(e)
    }
}

/// One message of the snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageEntry {
    /// The RFC 1939 unique-id.
    pub uidl: String,
    /// Size in octets as sent by RETR before byte-stuffing.
    pub size: u64,
    /// Base name (before `:`): the stable Maildir unique name.
    base: String,
    /// Current file name (with info suffix, if any).
    name: String,
    /// True if the file is in `new/`, false if in `cur/`.
    in_new: bool,
}

/// What [`Mailbox::update`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UpdateReport {
    /// Messages unlinked (or already gone).
    pub deleted: usize,
    /// Messages that could not be unlinked.
    pub not_deleted: usize,
    /// Messages given the Seen flag.
    pub marked_seen: usize,
}

/// A locked Maildir with its snapshot listing. The lock is released on drop.
pub struct Mailbox {
    root: PathBuf,
    messages: Vec<MessageEntry>,
    /// The renames and directory fsyncs of UPDATE.
    disk: Arc<dyn Disk>,
    /// Holds the flock; closing it releases the lock.
    _lock: File,
}

impl fmt::Debug for Mailbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mailbox")
            .field("root", &self.root)
            .field("messages", &self.messages.len())
            .finish()
    }
}

pub(crate) fn lock(root: &Path) -> Result<File, MailboxError> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(root.join(LOCK_FILE))?;
    // SAFETY: flock on a valid descriptor we own; no memory is passed.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
            return Err(MailboxError::Locked);
        }
        return Err(e.into());
    }
    Ok(file)
}

/// The base name: everything before the maildir(5) info separator `:`.
fn base_name(name: &str) -> &str {
    name.split_once(':').map_or(name, |(b, _)| b)
}

/// Size from the `,W=` or `,S=` fields of a base name (Maildir++ / Dovecot convention).
fn size_from_name(base: &str) -> Option<u64> {
    let mut s = None;
    let mut w = None;
    for field in base.split(',').skip(1) {
        let digits = |v: &str| {
            if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) {
                v.parse::<u64>().ok()
            } else {
                None
            }
        };
        if let Some(v) = field.strip_prefix("S=") {
            s = digits(v);
        } else if let Some(v) = field.strip_prefix("W=") {
            w = digits(v);
        }
    }
    w.or(s)
}

/// FNV-1a, 128 bits: a tiny hash whose output is fixed by its definition, hence stable.
fn fnv1a_128(data: &[u8]) -> u128 {
    let mut h: u128 = 0x6c62272e07bb014262b821756295c58d;
    for &b in data {
        h ^= u128::from(b);
        h = h.wrapping_mul(0x0000000001000000000000000000013B);
    }
    h
}

/// The RFC 1939 §7 unique-id for a base name.
fn uidl_for(base: &[u8]) -> String {
    let safe = (1..=70).contains(&base.len()) && base.iter().all(|b| (0x21..=0x7e).contains(b));
    match std::str::from_utf8(base) {
        Ok(s) if safe => s.to_owned(),
        _ => format!("H{:032x}", fnv1a_128(base)),
    }
}

/// Leading decimal digits of a name (delivery time), for ordering.
pub(crate) fn leading_time(name: &str) -> u64 {
    let end = name
        .bytes()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(name.len());
    name[..end].parse().unwrap_or(u64::MAX)
}

fn scan_dir(dir: &Path, in_new: bool, out: &mut Vec<MessageEntry>) -> io::Result<()> {
    let rd = match fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in rd {
        let entry = entry?;
        let os_name = entry.file_name();
        let Some(name) = os_name.to_str() else {
            // Non-UTF-8 names cannot be represented in our listing; skip rather than fail.
            continue;
        };
        if name.starts_with('.') {
            continue;
        }
        let ft = entry.file_type()?;
        if !ft.is_file() {
            continue;
        }
        let base = base_name(name);
        let size = match size_from_name(base) {
            Some(s) => s,
            None => match entry.metadata() {
                Ok(m) => m.len(),
                // Moved or deleted by another reader since readdir: find it later or skip.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            },
        };
        out.push(MessageEntry {
            uidl: uidl_for(base.as_bytes()),
            size,
            base: base.to_owned(),
            name: name.to_owned(),
            in_new,
        });
    }
    Ok(())
}

impl Mailbox {
    /// Locks the Maildir at `root` (creating `root`, `new/`, `cur/`, `tmp/` if missing) and
    /// takes the snapshot listing. Blocking: call from a blocking thread.
    pub fn open(root: &Path) -> Result<Mailbox, MailboxError> {
        Mailbox::open_with_disk(root, crate::durable::os())
    }

    /// [`Mailbox::open`] with UPDATE's renames and fsyncs going through `disk` (tests watch
    /// them with `durable::Recorder`).
    pub fn open_with_disk(root: &Path, disk: Arc<dyn Disk>) -> Result<Mailbox, MailboxError> {
        for sub in ["new", "cur", "tmp"] {
            fs::create_dir_all(root.join(sub))?;
        }
        let lock = lock(root)?;
        let mut messages = Vec::new();
        // new/ first: a message moved to cur/ between the two reads is then seen twice
        // (deduplicated below) rather than missed.
        scan_dir(&root.join("new"), true, &mut messages)?;
        scan_dir(&root.join("cur"), false, &mut messages)?;
        messages.sort_by(|a, b| {
            (leading_time(&a.base), &a.base, a.in_new).cmp(&(
                leading_time(&b.base),
                &b.base,
                b.in_new,
            ))
        });
        // Same base in cur/ and new/: keep the cur/ one (sorted first since false < true).
        messages.dedup_by(|later, earlier| later.base == earlier.base);
        Ok(Mailbox {
            root: root.to_owned(),
            messages,
            disk,
            _lock: lock,
        })
    }

    /// The snapshot, in POP3 order (message number = index + 1).
    pub fn messages(&self) -> &[MessageEntry] {
        &self.messages
    }

    /// The snapshot as (UIDL, size) pairs, as the POP3 session wants it.
    pub fn listing(&self) -> Vec<(String, u64)> {
        self.messages
            .iter()
            .map(|m| (m.uidl.clone(), m.size))
            .collect()
    }

    fn path_of(&self, m: &MessageEntry) -> PathBuf {
        self.root
            .join(if m.in_new { "new" } else { "cur" })
            .join(&m.name)
    }

    /// Finds a message again in cur/ by base name after someone else moved it.
    fn relocate(&mut self, index: usize) -> io::Result<bool> {
        let base = self.messages[index].base.clone();
        for entry in fs::read_dir(self.root.join("cur"))? {
            let entry = entry?;
            let os_name = entry.file_name();
            let Some(name) = os_name.to_str() else {
                continue;
            };
            if base_name(name) == base {
                let m = &mut self.messages[index];
                m.name = name.to_owned();
                m.in_new = false;
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Opens message `index` (0-based) for reading, finding it again by base name if another
    /// reader moved it from new/ to cur/ or changed its flags.
    pub fn open_message(&mut self, index: usize) -> io::Result<File> {
        let Some(m) = self.messages.get(index) else {
            return Err(io::Error::new(io::ErrorKind::NotFound, "no such message"));
        };
        match File::open(self.path_of(m)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if self.relocate(index)? {
                    File::open(self.path_of(&self.messages[index]))
                } else {
                    Err(e)
                }
            }
            r => r,
        }
    }

    /// Reads message `index` whole, appending it to `out`, when its file holds at most
    /// `max_whole` octets: one open, one fstat, one read, no copy through another buffer.
    /// A larger file is not read: it is returned open, for streaming. Blocking.
    pub fn read_into(
        &mut self,
        index: usize,
        out: &mut Vec<u8>,
        max_whole: u64,
    ) -> io::Result<Option<File>> {
        use std::io::Read;
        let mut file = self.open_message(index)?;
        let len = file.metadata()?.len();
        if len > max_whole {
            return Ok(Some(file));
        }
        // Bounded even if the file grows meanwhile (another program appending to it).
        out.reserve(len as usize + 1);
        (&mut file).take(max_whole).read_to_end(out)?;
        Ok(None)
    }

    /// The UPDATE state (RFC 1939 §6): unlinks the messages at `delete`, gives the messages at
    /// `seen` the Seen flag (moving them from new/ to cur/), then fsyncs the directories a
    /// message was unlinked from (the renames are not made durable: see the module header).
    /// Blocking. Errors on single messages are counted, not returned.
    pub fn update(&mut self, delete: &[usize], seen: &[usize]) -> UpdateReport {
        let mut report = UpdateReport::default();
        let n = self.messages.len();
        // [new/, cur/]: a message was unlinked there.
        let mut unlinked = [false; 2];
        for &i in delete.iter().filter(|&&i| i < n) {
            unlinked[usize::from(!self.messages[i].in_new)] = true;
            let ok = match fs::remove_file(self.path_of(&self.messages[i])) {
                Ok(()) => true,
                Err(e) if e.kind() == io::ErrorKind::NotFound => match self.relocate(i) {
                    Ok(true) => {
                        unlinked[1] = true;
                        fs::remove_file(self.path_of(&self.messages[i])).is_ok()
                    }
                    // Gone already: someone else deleted it; the goal is reached.
                    Ok(false) => true,
                    Err(_) => false,
                },
                Err(_) => false,
            };
            if ok {
                report.deleted += 1;
            } else {
                report.not_deleted += 1;
            }
        }
        crate::quota::removed(
            &self.root,
            delete
                .iter()
                .filter(|&&i| i < n)
                .map(|&i| self.messages[i].size)
                .sum(),
            report.deleted as u64,
        );
        for i in seen_not_deleted(delete, seen, n) {
            if self.mark_seen(i).unwrap_or(false) {
                report.marked_seen += 1;
            }
        }
        for (sub, _) in ["new", "cur"].iter().zip(unlinked).filter(|(_, u)| *u) {
            if self.disk.sync_dir(&self.root.join(sub)).is_err() {
                // The unlinks may not survive a crash: say so rather than `+OK`.
                report.not_deleted += report.deleted;
                report.deleted = 0;
            }
        }
        report
    }

    fn mark_seen(&mut self, i: usize) -> io::Result<bool> {
        let mut tries = 0;
        loop {
            let m = &self.messages[i];
            let flags = m.name.split_once(":2,").map_or("", |(_, f)| f);
            if !m.in_new && flags.contains('S') {
                return Ok(false);
            }
            let mut new_flags: Vec<char> = flags.chars().chain(['S']).collect();
            new_flags.sort_unstable();
            new_flags.dedup();
            let new_name = format!("{}:2,{}", m.base, new_flags.into_iter().collect::<String>());
            let from = self.path_of(m);
            let to = self.root.join("cur").join(&new_name);
            match self.disk.rename(&from, &to) {
                Ok(()) => {
                    let m = &mut self.messages[i];
                    m.name = new_name;
                    m.in_new = false;
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound && tries == 0 => {
                    tries += 1;
                    if !self.relocate(i)? {
                        return Ok(false);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// The Maildir root.
    pub fn root(&self) -> &Path {
        &self.root
    }
}

/// The messages of `seen` (indexes below `n`) that are not also in `delete`, each once, in
/// the order given. Linear: a QUIT with 25,000 deletions and 25,000 retrieved messages must
/// not cost 625 million comparisons (security review 12).
fn seen_not_deleted(delete: &[usize], seen: &[usize], n: usize) -> Vec<usize> {
    let mut skip = vec![false; n];
    for &i in delete.iter().filter(|&&i| i < n) {
        skip[i] = true;
    }
    let mut out = Vec::with_capacity(seen.len().min(n));
    for &i in seen.iter().filter(|&&i| i < n) {
        if !skip[i] {
            skip[i] = true;
            out.push(i);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn maildir() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        for sub in ["new", "cur", "tmp"] {
            fs::create_dir_all(d.path().join(sub)).unwrap();
        }
        d
    }

    fn put(root: &Path, sub: &str, name: &str, body: &[u8]) {
        fs::write(root.join(sub).join(name), body).unwrap();
    }

    fn read(mb: &mut Mailbox, i: usize) -> Vec<u8> {
        let mut v = Vec::new();
        mb.open_message(i).unwrap().read_to_end(&mut v).unwrap();
        v
    }

    #[test]
    fn lists_in_delivery_order_with_sizes_and_uidls() {
        let d = maildir();
        let r = d.path();
        put(r, "new", "1764200002.Q2R0.mx,S=5", b"three");
        put(r, "cur", "1764200001.Q1R0.mx,S=3:2,S", b"two");
        put(r, "new", "999999999.Q0R0.mx", b"first!");
        put(r, "new", ".hidden", b"x");
        put(r, "tmp", "1764200003.Q3R0.mx,S=1", b"t");
        fs::create_dir(r.join("new").join("subdir")).unwrap();
        let mb = Mailbox::open(r).unwrap();
        assert_eq!(
            mb.listing(),
            vec![
                ("999999999.Q0R0.mx".to_string(), 6),
                ("1764200001.Q1R0.mx,S=3".to_string(), 3),
                ("1764200002.Q2R0.mx,S=5".to_string(), 5),
            ]
        );
    }

    #[test]
    fn size_fields() {
        assert_eq!(size_from_name("1.a,S=10"), Some(10));
        assert_eq!(size_from_name("1.a,S=10,W=12"), Some(12));
        assert_eq!(size_from_name("1.a,S=x"), None);
        assert_eq!(size_from_name("1.a,S=-1"), None);
        assert_eq!(size_from_name("1.a"), None);
    }

    #[test]
    fn unsafe_base_names_get_hashed_stable_uidls() {
        let long = "1".repeat(71);
        let u = uidl_for(long.as_bytes());
        assert_eq!(u.len(), 33);
        assert!(u.starts_with('H'));
        assert_eq!(u, uidl_for(long.as_bytes()));
        assert_ne!(uidl_for(b"a b"), uidl_for(b"a c"));
        assert_eq!(uidl_for(b"abc"), "abc");
        assert_eq!(uidl_for("caf\u{e9}".as_bytes()).len(), 33);
    }

    #[test]
    fn lock_is_exclusive_and_released_on_drop() {
        let d = maildir();
        let mb = Mailbox::open(d.path()).unwrap();
        assert!(matches!(Mailbox::open(d.path()), Err(MailboxError::Locked)));
        drop(mb);
        Mailbox::open(d.path()).unwrap();
    }

    #[test]
    fn creates_missing_maildir() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("a/Maildir");
        let mb = Mailbox::open(&root).unwrap();
        assert!(mb.messages().is_empty());
        assert!(root.join("tmp").is_dir());
    }

    #[test]
    fn finds_message_moved_by_another_reader() {
        let d = maildir();
        let r = d.path();
        put(r, "new", "1.A.mx,S=2", b"hi");
        let mut mb = Mailbox::open(r).unwrap();
        fs::rename(r.join("new/1.A.mx,S=2"), r.join("cur/1.A.mx,S=2:2,F")).unwrap();
        assert_eq!(read(&mut mb, 0), b"hi");
        assert!(mb.open_message(5).is_err());
    }

    #[test]
    fn seen_not_deleted_skips_deleted_duplicates_and_out_of_range() {
        assert_eq!(
            seen_not_deleted(&[1, 3, 99], &[0, 1, 2, 2, 3, 4, 7], 5),
            vec![0, 2, 4]
        );
        // Large marks: every index once, all of the deleted ones skipped.
        let delete: Vec<usize> = (0..50_000).step_by(2).collect();
        let seen: Vec<usize> = (0..50_000).collect();
        let kept = seen_not_deleted(&delete, &seen, 50_000);
        assert_eq!(kept.len(), 25_000);
        assert!(kept.iter().all(|i| i % 2 == 1));
    }

    #[test]
    fn update_deletes_and_marks_seen() {
        let d = maildir();
        let r = d.path();
        put(r, "new", "1.A.mx,S=1", b"a");
        put(r, "new", "2.B.mx,S=1", b"b");
        put(r, "cur", "3.C.mx,S=1:2,RF", b"c");
        put(r, "new", "4.D.mx,S=1", b"d");
        put(r, "cur", "5.E.mx,S=1:2,", b"e");
        let mut mb = Mailbox::open(r).unwrap();
        let uidls_before: Vec<_> = mb.listing();
        let rep = mb.update(&[0], &[1, 2, 4]);
        assert_eq!(
            rep,
            UpdateReport {
                deleted: 1,
                not_deleted: 0,
                marked_seen: 3
            }
        );
        drop(mb);
        let mut names: Vec<String> = fs::read_dir(r.join("cur"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["2.B.mx,S=1:2,S", "3.C.mx,S=1:2,FRS", "5.E.mx,S=1:2,S"]
        );
        assert!(!r.join("new/1.A.mx,S=1").exists());
        assert!(r.join("new/4.D.mx,S=1").exists());
        // UIDLs are stable across the moves.
        let mb = Mailbox::open(r).unwrap();
        let after = mb.listing();
        assert_eq!(after, uidls_before[1..].to_vec());
    }

    #[test]
    fn read_into_whole_or_open_for_streaming() {
        let d = maildir();
        let r = d.path();
        put(r, "new", "1.A.mx,S=5", b"small");
        put(r, "new", "2.B.mx,S=11", b"larger body");
        let mut mb = Mailbox::open(r).unwrap();
        let mut out = b"+OK\r\n".to_vec();
        assert!(mb.read_into(0, &mut out, 5).unwrap().is_none());
        assert_eq!(out, b"+OK\r\nsmall");
        let mut f = mb.read_into(1, &mut out, 5).unwrap().expect("streamed");
        assert_eq!(out, b"+OK\r\nsmall", "nothing appended for a large file");
        let mut v = Vec::new();
        f.read_to_end(&mut v).unwrap();
        assert_eq!(v, b"larger body");
        assert!(mb.read_into(7, &mut out, 5).is_err());
    }

    /// The crash promise of QUIT, seen through the fsync seam (a SIGKILL keeps the page cache,
    /// so only the seam shows a missing fsync): the directory of every unlinked message is
    /// fsynced before `update` returns, i.e. before `+OK`; the Seen renames are not (a power
    /// loss may show those messages as unseen again).
    #[test]
    fn deletions_are_durable_seen_renames_are_not_synced() {
        use crate::durable::{Recorder, Step};
        let d = maildir();
        let r = d.path();
        put(r, "new", "1.A.mx,S=1", b"a");
        put(r, "new", "2.B.mx,S=1", b"b");
        put(r, "cur", "3.C.mx,S=1:2,", b"c");
        let disk = Recorder::new();
        let mut mb = Mailbox::open_with_disk(r, disk.clone()).unwrap();
        let rep = mb.update(&[0], &[1, 2]);
        assert_eq!((rep.deleted, rep.marked_seen), (1, 2));
        let steps = disk.steps();
        let syncs: Vec<_> = steps
            .iter()
            .filter_map(|s| match s {
                Step::SyncDir(p) => Some(p.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(syncs, vec![r.join("new")], "{steps:?}");
        assert!(!steps.iter().any(|s| matches!(s, Step::SyncFile(_))));
        assert_eq!(
            steps
                .iter()
                .filter(|s| matches!(s, Step::Rename(..)))
                .count(),
            2
        );
        drop(mb);

        // Only Seen marks: no fsync at all.
        put(r, "new", "4.D.mx,S=1", b"d");
        let disk = Recorder::new();
        let mut mb = Mailbox::open_with_disk(r, disk.clone()).unwrap();
        let i = mb
            .messages()
            .iter()
            .position(|m| m.uidl == "4.D.mx,S=1")
            .unwrap();
        assert_eq!(mb.update(&[], &[i]).marked_seen, 1);
        assert!(!disk
            .steps()
            .iter()
            .any(|s| matches!(s, Step::SyncDir(_) | Step::SyncFile(_))));
        drop(mb);

        // A deletion from cur/ whose directory fsync fails is not reported as done.
        let disk = Recorder::new();
        disk.fail_next_dir_sync("cur");
        let mut mb = Mailbox::open_with_disk(r, disk.clone()).unwrap();
        let rep = mb.update(&[0], &[]);
        assert_eq!((rep.deleted, rep.not_deleted), (0, 1), "{:?}", disk.steps());
    }

    #[test]
    fn update_tolerates_vanished_and_moved_files() {
        let d = maildir();
        let r = d.path();
        put(r, "new", "1.A.mx,S=1", b"a");
        put(r, "new", "2.B.mx,S=1", b"b");
        let mut mb = Mailbox::open(r).unwrap();
        fs::remove_file(r.join("new/1.A.mx,S=1")).unwrap();
        fs::rename(r.join("new/2.B.mx,S=1"), r.join("cur/2.B.mx,S=1:2,S")).unwrap();
        let rep = mb.update(&[0, 1], &[]);
        assert_eq!(rep.deleted, 2);
        assert!(fs::read_dir(r.join("cur")).unwrap().next().is_none());
    }

    #[test]
    fn lists_10000_messages() {
        let d = maildir();
        let r = d.path();
        for i in 0..10_000u32 {
            // Empty files: the sizes prove nothing was opened or stat()ed.
            let name = format!("{}.Q{i:016X}R0.mx.example.test,S=1234", 1_764_200_000 + i);
            File::create(r.join("new").join(name)).unwrap();
        }
        let t = std::time::Instant::now();
        let mb = Mailbox::open(r).unwrap();
        let elapsed = t.elapsed();
        eprintln!("listed 10,000 messages in {elapsed:?}");
        assert_eq!(mb.messages().len(), 10_000);
        assert!(mb.messages().iter().all(|m| m.size == 1234));
        assert!(mb.messages()[0].uidl.starts_with("1764200000."));
        assert!(mb.messages()[9999].uidl.starts_with("1764209999."));
        drop(mb);

        // Foreign names without S=: the stat() fallback.
        let d = maildir();
        for i in 0..10_000u32 {
            let name = format!("{}.M{i}P1.other", 1_764_200_000 + i);
            fs::write(d.path().join("cur").join(name + ":2,S"), b"xy").unwrap();
        }
        let t = std::time::Instant::now();
        let mb = Mailbox::open(d.path()).unwrap();
        eprintln!("listed 10,000 messages with stat() in {:?}", t.elapsed());
        assert!(mb.messages().iter().all(|m| m.size == 2));
    }
}
