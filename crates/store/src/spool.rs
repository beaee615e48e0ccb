//! The spool: the durable queue between receiving (SMTP) and delivering. A message is accepted
//! (SMTP may say 250, RFC 5321 section 6.1) only once [`Spool::enqueue`] has returned, and that
//! happens only after the message file and its directory entry are on disk.
//!
//! Layout under `<data_dir>/queue/`: `tmp/` (being written, never acknowledged) and `msg/`
//! (accepted). One file `msg/<id>` per message:
//!
//! ```text
//! MAILROOM-QUEUE 1\n
//! received <unix secs>\n
//! sender <address, empty for the null sender>\n
//! rcpt <address>\n            (one per recipient, in order)
//! client <free text>\n
//! \n
//! <raw message bytes to the end of the file>
//! ```
//!
//! Values are percent-escaped (`%`, bytes below 0x20 and 0x7F become `%XX`), so a hostile
//! address containing CR, LF or NUL can never add or end an envelope line. Per-recipient
//! delivery attempts are appended to `msg/<id>.state`, one escaped line each.
//!
//! Group commit: each `enqueue` writes and fsyncs `tmp/<id>` on the blocking pool (so
//! concurrent sessions fsync in parallel), then hands the id to one committer thread, which
//! renames every pending file into `msg/` and fsyncs `msg/` once per batch; arrivals during
//! that fsync form the next batch.
//!
//! This module does not deliver, schedule retries or decide bounces; it only stores. It
//! assumes one server process owns the spool (`open` deletes whatever is in `tmp/`).

use std::collections::HashSet;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::oneshot;

use crate::maildir::{ensure_dir, sync_dir};

const MAGIC_LINE: &str = "MAILROOM-QUEUE 1\n";
const MAGIC: &[u8] = MAGIC_LINE.as_bytes();
const STATE_SUFFIX: &str = ".state";
const ID_LEN: usize = 16;
/// Base32 alphabet whose ASCII order is its numeric order, so ids sort by time.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHIJKLMNOPQRSTUV";
/// The per-recipient states [`Spool::record_attempt`] accepts.
/// Per-recipient states (`done`, `deferred`, `failed`), and message-level marks (index 0):
/// `warned` (the delay DSN went out), `bounce` (the admin asked to bounce it).
const STATES: [&str; 5] = ["done", "deferred", "failed", "warned", "bounce"];

/// The envelope of a queued message (RFC 5321 section 2.3.1 envelope plus bookkeeping).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// Queue id: 16 characters of `[0-9A-V]`, sortable by arrival time.
    pub id: String,
    /// When the message was received, unix seconds.
    pub received: u64,
    /// The reverse path; `""` is the null sender `<>`.
    pub sender: String,
    /// Forward paths, in the order given.
    pub recipients: Vec<String>,
    /// Free text about the client (HELO name, IP address).
    pub client: String,
}

/// A message whose tmp file is durable, waiting to be moved into `msg/`.
struct Pending {
    id: String,
    reply: oneshot::Sender<io::Result<()>>,
}

/// A message being streamed into `tmp/` (see [`Spool::begin`]). Removed when dropped
/// without [`Spool::commit`].
pub struct Draft {
    id: String,
    path: PathBuf,
    file: Option<fs::File>,
}

impl Draft {
    /// The queue id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Appends body bytes (blocking file I/O; small compared with a network read).
    pub fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.write_all(bytes),
            None => Err(io::Error::other("draft already finished")),
        }
    }
}

impl Drop for Draft {
    fn drop(&mut self) {
        if self.file.is_some() {
            // Never acknowledged: nothing may keep it.
            let _ = fs::remove_file(&self.path);
        }
    }
}

/// The queue. Share it behind an `Arc`; all methods take `&self`.
pub struct Spool {
    tmp: PathBuf,
    msg: PathBuf,
    dir_syncs: Arc<AtomicU64>,
    committer: mpsc::Sender<Pending>,
}

fn invalid_data(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

fn invalid_input(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg.into())
}

/// Whether `s` looks like a queue id (also keeps ids from naming paths outside `msg/`).
fn is_id(s: &str) -> bool {
    s.len() == ID_LEN && s.bytes().all(|b| ALPHABET.contains(&b))
}

fn check_id(id: &str) -> io::Result<()> {
    if is_id(id) {
        Ok(())
    } else {
        Err(invalid_input(format!(
            "bad queue id: {}",
            id.escape_debug()
        )))
    }
}

/// Microseconds since the epoch of the last id handed out in this process; ids use
/// `max(now, last + 1)`, so they are unique and increasing within the process (this is the
/// process-wide counter), and the random tail keeps them unique across restarts even if the
/// clock steps back.
static LAST_MICROS: AtomicU64 = AtomicU64::new(0);

/// A fresh queue id: 11 base32 digits of a microsecond timestamp (good until the year 3000+),
/// then 5 base32 digits (25 bits) of randomness.
pub fn new_id() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0);
    let mut prev = LAST_MICROS.load(Ordering::Relaxed);
    let micros = loop {
        let next = now.max(prev.saturating_add(1));
        match LAST_MICROS.compare_exchange_weak(prev, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => break next,
            Err(actual) => prev = actual,
        }
    };
    let random: u64 = rand::random::<u64>() & ((1 << 25) - 1);
    let mut id = String::with_capacity(ID_LEN);
    for i in (0..11).rev() {
        id.push(ALPHABET[((micros >> (5 * i)) & 31) as usize] as char);
    }
    for i in (0..5).rev() {
        id.push(ALPHABET[((random >> (5 * i)) & 31) as usize] as char);
    }
    id
}

/// Percent-escapes `%`, control bytes and DEL so the value fits on one record line.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '%' || (c as u32) < 0x20 || c == '\x7f' {
            out.push_str(&format!("%{:02X}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// Reverses [`escape`]. Malformed escapes, raw control bytes and non-UTF-8 are errors.
fn unescape(s: &[u8]) -> io::Result<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let b = s[i];
        if b == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| invalid_data("bad %-escape in queue record"))?;
            out.push(hex);
            i += 3;
        } else if b < 0x20 || b == 0x7f {
            return Err(invalid_data("control byte in queue record line"));
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| invalid_data("queue record value is not UTF-8"))
}

/// The record header (everything before the message bytes).
fn encode_header(sender: &str, recipients: &[String], client: &str, received: u64) -> Vec<u8> {
    let mut h = String::new();
    h.push_str(MAGIC_LINE);
    h.push_str(&format!("received {received}\n"));
    h.push_str(&format!("sender {}\n", escape(sender)));
    for r in recipients {
        h.push_str(&format!("rcpt {}\n", escape(r)));
    }
    h.push_str(&format!("client {}\n\n", escape(client)));
    h.into_bytes()
}

/// Parses a record. Any deviation from the format is an `InvalidData` error.
fn parse_record(id: &str, mut data: Vec<u8>) -> io::Result<(Envelope, Vec<u8>)> {
    if !data.starts_with(MAGIC) {
        return Err(invalid_data(format!("{id}: not a queue record")));
    }
    let mut pos = MAGIC.len();
    let mut received = None;
    let mut sender = None;
    let mut client = None;
    let mut recipients = Vec::new();
    loop {
        let nl = data[pos..]
            .iter()
            .position(|&b| b == b'\n')
            .ok_or_else(|| invalid_data(format!("{id}: truncated envelope")))?;
        let line = &data[pos..pos + nl];
        pos += nl + 1;
        if line.is_empty() {
            break;
        }
        let sp = line
            .iter()
            .position(|&b| b == b' ')
            .ok_or_else(|| invalid_data(format!("{id}: envelope line without a value")))?;
        let (key, value) = (&line[..sp], &line[sp + 1..]);
        let value = unescape(value).map_err(|e| invalid_data(format!("{id}: {e}")))?;
        let dup = || invalid_data(format!("{id}: repeated envelope field"));
        match key {
            b"received" => {
                let n = value
                    .parse::<u64>()
                    .map_err(|_| invalid_data(format!("{id}: bad received time")))?;
                if received.replace(n).is_some() {
                    return Err(dup());
                }
            }
            b"sender" => {
                if sender.replace(value).is_some() {
                    return Err(dup());
                }
            }
            b"client" => {
                if client.replace(value).is_some() {
                    return Err(dup());
                }
            }
            b"rcpt" => recipients.push(value),
            _ => return Err(invalid_data(format!("{id}: unknown envelope field"))),
        }
    }
    let (Some(received), Some(sender), Some(client)) = (received, sender, client) else {
        return Err(invalid_data(format!("{id}: envelope field missing")));
    };
    if recipients.is_empty() {
        return Err(invalid_data(format!("{id}: no recipients")));
    }
    data.drain(..pos);
    Ok((
        Envelope {
            id: id.to_string(),
            received,
            sender,
            recipients,
            client,
        },
        data,
    ))
}

/// Parses the bytes of a queue record exactly as [`Spool::read`] parses a `msg/<id>` file
/// (`id` is only used in error messages). Pure; for fuzzing and tests.
pub fn parse_record_bytes(id: &str, data: &[u8]) -> io::Result<(Envelope, Vec<u8>)> {
    parse_record(id, data.to_vec())
}

/// The bytes [`Spool::enqueue`] writes for this envelope (`env.id` is not part of the
/// record) and message. Pure; for fuzzing and tests.
pub fn encode_record(env: &Envelope, message: &[u8]) -> Vec<u8> {
    let mut record = encode_header(&env.sender, &env.recipients, &env.client, env.received);
    record.extend_from_slice(message);
    record
}

/// Writes `parts` to a new file (O_EXCL, mode 0600) and fsyncs it; removes it on failure.
fn write_durable(path: &Path, parts: &[&[u8]]) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    let result = (|| {
        for p in parts {
            file.write_all(p)?;
        }
        file.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(path);
    }
    result
}

/// The committer thread: renames each batch into `msg/`, fsyncs `msg/` once, answers.
fn committer(rx: mpsc::Receiver<Pending>, tmp: PathBuf, msg: PathBuf, syncs: Arc<AtomicU64>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while let Ok(p) = rx.try_recv() {
            batch.push(p);
        }
        let mut results: Vec<io::Result<()>> = batch
            .iter()
            .map(|p| {
                let from = tmp.join(&p.id);
                let to = msg.join(&p.id);
                if fs::symlink_metadata(&to).is_ok() {
                    let _ = fs::remove_file(&from);
                    return Err(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        format!("queue id {} already in use", p.id),
                    ));
                }
                fs::rename(&from, &to).inspect_err(|_| {
                    let _ = fs::remove_file(&from);
                })
            })
            .collect();
        if results.iter().any(|r| r.is_ok()) {
            if let Err(e) = sync_dir(&msg) {
                // The files are in msg/ but may not survive a crash: report failure (the
                // client will retry; a duplicate is better than a loss).
                for r in results.iter_mut().filter(|r| r.is_ok()) {
                    *r = Err(io::Error::new(
                        e.kind(),
                        format!("fsync of queue failed: {e}"),
                    ));
                }
            }
            syncs.fetch_add(1, Ordering::Relaxed);
        }
        for (p, r) in batch.into_iter().zip(results) {
            // The waiter may have gone away (client disconnected); nothing to do then.
            let _ = p.reply.send(r);
        }
    }
}

impl Spool {
    /// Opens the queue for the server: [`Spool::open`], then removes leftovers in tmp/ (never
    /// acknowledged) and `.state` files whose message is gone. Only the one server process may
    /// call this: another process's tmp files would be in flight.
    pub fn open_and_recover(data_dir: &Path) -> io::Result<Spool> {
        let spool = Spool::open(data_dir)?;
        spool.clean()?;
        Ok(spool)
    }

    fn clean(&self) -> io::Result<()> {
        let (tmp, msg) = (&self.tmp, &self.msg);
        for entry in fs::read_dir(tmp)? {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                fs::remove_dir_all(entry.path())?;
            } else {
                fs::remove_file(entry.path())?;
            }
        }
        let mut ids = HashSet::new();
        let mut states = Vec::new();
        for entry in fs::read_dir(msg)? {
            let name = entry?.file_name();
            let Some(name) = name.to_str() else { continue };
            if is_id(name) {
                ids.insert(name.to_string());
            } else if let Some(id) = name.strip_suffix(STATE_SUFFIX) {
                if is_id(id) {
                    states.push(id.to_string());
                }
            }
        }
        for id in states.iter().filter(|id| !ids.contains(*id)) {
            fs::remove_file(msg.join(format!("{id}{STATE_SUFFIX}")))?;
        }
        Ok(())
    }

    /// Opens/creates the queue dirs and starts the committer thread. Safe while the server
    /// runs (the admin CLI uses it): it removes nothing.
    pub fn open(data_dir: &Path) -> io::Result<Spool> {
        let root = data_dir.join("queue");
        let tmp = root.join("tmp");
        let msg = root.join("msg");
        ensure_dir(&tmp)?;
        ensure_dir(&msg)?;
        let dir_syncs = Arc::new(AtomicU64::new(0));
        let (tx, rx) = mpsc::channel();
        let (t, m, s) = (tmp.clone(), msg.clone(), dir_syncs.clone());
        std::thread::Builder::new()
            .name("spool-commit".into())
            .spawn(move || committer(rx, t, m, s))?;
        Ok(Spool {
            tmp,
            msg,
            dir_syncs,
            committer: tx,
        })
    }

    /// Makes the message durable under `id` (from [`new_id`]) and only then returns: the
    /// message is the concatenation of `parts`. Write `tmp/<id>`, fsync it (in
    /// `spawn_blocking`; concurrent sessions fsync in parallel), then hand it to the committer,
    /// which renames every pending file into msg/ and fsyncs msg/ once for the whole batch
    /// (group commit), then wakes each waiter. Must be called inside a tokio runtime.
    ///
    /// At least one recipient is required. If this future is dropped after the hand-off, the
    /// message may still be committed without the caller knowing (a possible duplicate, never
    /// a loss); if dropped before, a tmp file may remain until the next `open`.
    pub async fn enqueue(
        &self,
        id: &str,
        sender: &str,
        recipients: &[String],
        client: &str,
        received: u64,
        parts: &[&[u8]],
    ) -> io::Result<()> {
        check_id(id)?;
        if recipients.is_empty() {
            return Err(invalid_input(
                "a queued message needs at least one recipient",
            ));
        }
        let mut record = encode_header(sender, recipients, client, received);
        record.reserve(parts.iter().map(|p| p.len()).sum());
        for p in parts {
            record.extend_from_slice(p);
        }
        let id = id.to_string();
        let path = self.tmp.join(&id);
        tokio::task::spawn_blocking(move || write_durable(&path, &[&record]))
            .await
            .map_err(|e| io::Error::other(format!("spool writer task failed: {e}")))??;
        let (reply, done) = oneshot::channel();
        self.committer
            .send(Pending {
                id: id.clone(),
                reply,
            })
            .map_err(|_| io::Error::other("spool committer has stopped"))?;
        done.await
            .map_err(|_| io::Error::other("spool committer has stopped"))??;
        Ok(())
    }

    /// Starts a message whose body is streamed to disk as it arrives (large messages): creates
    /// `tmp/<id>` with the envelope and `prefix` (the trace headers). Write the body with
    /// [`Draft::write`], then [`Spool::commit`] it; a draft dropped uncommitted is removed.
    pub fn begin(
        &self,
        id: &str,
        sender: &str,
        recipients: &[String],
        client: &str,
        received: u64,
        prefix: &[u8],
    ) -> io::Result<Draft> {
        check_id(id)?;
        if recipients.is_empty() {
            return Err(invalid_input(
                "a queued message needs at least one recipient",
            ));
        }
        let path = self.tmp.join(id);
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        let mut draft_file = || -> io::Result<()> {
            file.write_all(&encode_header(sender, recipients, client, received))?;
            file.write_all(prefix)
        };
        if let Err(e) = draft_file() {
            let _ = fs::remove_file(&path);
            return Err(e);
        }
        Ok(Draft {
            id: id.to_string(),
            path,
            file: Some(file),
        })
    }

    /// Makes a streamed message durable (fsync, then the same group commit as
    /// [`Spool::enqueue`]) and only then returns.
    pub async fn commit(&self, mut draft: Draft) -> io::Result<()> {
        let file = draft
            .file
            .take()
            .ok_or_else(|| io::Error::other("draft already finished"))?;
        let path = draft.path.clone();
        let synced = tokio::task::spawn_blocking(move || file.sync_all())
            .await
            .map_err(|e| io::Error::other(format!("spool writer task failed: {e}")))?;
        if let Err(e) = synced {
            let _ = fs::remove_file(&path);
            return Err(e);
        }
        let (reply, done) = oneshot::channel();
        self.committer
            .send(Pending {
                id: draft.id.clone(),
                reply,
            })
            .map_err(|_| io::Error::other("spool committer has stopped"))?;
        done.await
            .map_err(|_| io::Error::other("spool committer has stopped"))??;
        Ok(())
    }

    /// Ids of every message in msg/ (recovery on start, and the queue runner), oldest first.
    pub fn list(&self) -> io::Result<Vec<String>> {
        let mut ids = Vec::new();
        for entry in fs::read_dir(&self.msg)? {
            let name = entry?.file_name();
            if let Some(name) = name.to_str() {
                if is_id(name) {
                    ids.push(name.to_string());
                }
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Reads one message: envelope and message bytes. A malformed file is `InvalidData`.
    pub fn read(&self, id: &str) -> io::Result<(Envelope, Vec<u8>)> {
        check_id(id)?;
        let data = fs::read(self.msg.join(id))?;
        parse_record(id, data)
    }

    /// Removes a message and its state file once every recipient is done (unlink; no fsync of
    /// msg/, because a redelivery after a crash is detected by `Maildir::contains`).
    pub fn remove(&self, id: &str) -> io::Result<()> {
        check_id(id)?;
        let removed = fs::remove_file(self.msg.join(id));
        match fs::remove_file(self.state_path(id)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        removed
    }

    fn state_path(&self, id: &str) -> PathBuf {
        self.msg.join(format!("{id}{STATE_SUFFIX}"))
    }

    /// Appends one line `<rcpt_index> <state> <escaped detail>` to `msg/<id>.state` (created
    /// on demand; the file, and the directory when the file is new, are fsynced). `state` is
    /// `done`, `deferred` or `failed`, or a message-level mark `warned` or `bounce`; the
    /// message must exist.
    pub fn record_attempt(
        &self,
        id: &str,
        rcpt_index: usize,
        state: &str,
        detail: &str,
    ) -> io::Result<()> {
        check_id(id)?;
        if !STATES.contains(&state) {
            return Err(invalid_input(format!(
                "bad recipient state: {}",
                state.escape_debug()
            )));
        }
        fs::metadata(self.msg.join(id))?;
        let path = self.state_path(id);
        let (mut file, created) = match OpenOptions::new()
            .append(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(f) => (f, true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                (OpenOptions::new().append(true).open(&path)?, false)
            }
            Err(e) => return Err(e),
        };
        let line = format!("{rcpt_index} {state} {}\n", escape(detail));
        file.write_all(line.as_bytes())?;
        file.sync_all()?;
        if created {
            sync_dir(&self.msg)?;
        }
        Ok(())
    }

    /// Reads back every recorded attempt `(rcpt_index, state, detail)`, in order. No state
    /// file means no attempts; a torn last line (crash while appending) is ignored; any other
    /// malformed line is `InvalidData`.
    pub fn attempts(&self, id: &str) -> io::Result<Vec<(usize, String, String)>> {
        check_id(id)?;
        let data = match fs::read(self.state_path(id)) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut out = Vec::new();
        let mut lines: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
        // The piece after the last '\n' is empty, or a torn line.
        lines.pop();
        for line in lines {
            let bad = || invalid_data(format!("{id}: malformed state line"));
            let mut fields = line.splitn(3, |&b| b == b' ');
            let index = fields
                .next()
                .and_then(|f| std::str::from_utf8(f).ok())
                .and_then(|f| f.parse::<usize>().ok())
                .ok_or_else(bad)?;
            let state = fields
                .next()
                .and_then(|f| std::str::from_utf8(f).ok())
                .filter(|s| STATES.contains(s))
                .ok_or_else(bad)?;
            let detail = unescape(fields.next().ok_or_else(bad)?)?;
            out.push((index, state.to_string(), detail));
        }
        Ok(out)
    }

    /// How many times the committer has fsynced `msg/` (one per batch). With group commit
    /// this is lower than the number of messages under concurrent load.
    pub fn dir_syncs(&self) -> u64 {
        self.dir_syncs.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Spool {
        /// The old one-call form: a fresh id, one part.
        async fn enqueue_new(
            &self,
            sender: &str,
            recipients: &[String],
            client: &str,
            received: u64,
            message: &[u8],
        ) -> io::Result<String> {
            let id = new_id();
            self.enqueue(&id, sender, recipients, client, received, &[message])
                .await
                .map(|()| id)
        }
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn ids_are_well_formed_unique_and_sorted() {
        let ids: Vec<String> = (0..1000).map(|_| new_id()).collect();
        for id in &ids {
            assert!(is_id(id), "{id}");
        }
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(sorted, ids, "ids sort in creation order");
        let set: HashSet<&String> = ids.iter().collect();
        assert_eq!(set.len(), ids.len());
        assert!(!is_id("../../etc/passwd"));
        assert!(!is_id("0123456789abcdef"));
    }

    #[test]
    fn escape_round_trip() {
        for v in ["", "a b", "%", "%41", "x\r\ny\0z\x7f", "ünï€"] {
            let e = escape(v);
            assert!(!e.bytes().any(|b| b < 0x20 || b == 0x7f), "{e:?}");
            assert_eq!(unescape(e.as_bytes()).expect("unescape"), v);
        }
        assert!(unescape(b"%4").is_err());
        assert!(unescape(b"%zz").is_err());
        assert!(unescape(b"a\rb").is_err());
        assert!(unescape(b"%FF").is_err());
    }

    #[tokio::test]
    async fn round_trip_binary() {
        let t = tempfile::tempdir().expect("tempdir");
        let spool = Spool::open(t.path()).expect("open");
        let msg: &[u8] = b"Subject: x\r\n\r\n\0\x80\xff bare\rcr\n\nMAILROOM-QUEUE 1\n";
        let id = spool
            .enqueue_new(
                "",
                &s(&["a@example.org", "B@remote.net"]),
                "helo mx.example [192.0.2.1]",
                1700000000,
                msg,
            )
            .await
            .expect("enqueue");
        assert!(is_id(&id));
        assert_eq!(spool.list().expect("list"), vec![id.clone()]);
        let (env, body) = spool.read(&id).expect("read");
        assert_eq!(
            env,
            Envelope {
                id: id.clone(),
                received: 1700000000,
                sender: String::new(),
                recipients: s(&["a@example.org", "B@remote.net"]),
                client: "helo mx.example [192.0.2.1]".into(),
            }
        );
        assert_eq!(body, msg);
        assert_eq!(fs::read_dir(&spool.tmp).expect("tmp").count(), 0);
        assert_eq!(spool.dir_syncs(), 1);
        // Empty message is fine too.
        let id2 = spool
            .enqueue_new("s@x.org", &s(&["a@b.c"]), "", 1, b"")
            .await
            .expect("enqueue");
        assert_eq!(spool.read(&id2).expect("read").1, b"");
        assert_eq!(spool.list().expect("list"), vec![id.clone(), id2.clone()]);
        // No recipients is refused.
        assert!(spool
            .enqueue_new("s@x.org", &[], "", 1, b"x")
            .await
            .is_err());
    }

    #[tokio::test]
    async fn hostile_values_cannot_inject_lines() {
        let t = tempfile::tempdir().expect("tempdir");
        let spool = Spool::open(t.path()).expect("open");
        let sender = "evil@x.org\r\nrcpt victim@example.org\r\n\r\nFake: body";
        let rcpts = s(&[
            "a@b.c\nrcpt injected@x.org",
            "c@d.e\0\n\nclient x",
            "%0Arcpt z@z",
        ]);
        let client = "helo\n\nreceived 0";
        let id = spool
            .enqueue_new(sender, &rcpts, client, 42, b"real body")
            .await
            .expect("enqueue");
        let (env, body) = spool.read(&id).expect("read");
        assert_eq!(env.sender, sender);
        assert_eq!(env.recipients, rcpts);
        assert_eq!(env.client, client);
        assert_eq!(env.received, 42);
        assert_eq!(body, b"real body");
        let raw = fs::read(spool.msg.join(&id)).expect("raw");
        let header_end = raw
            .windows(2)
            .position(|w| w == b"\n\n")
            .expect("header end");
        let header = std::str::from_utf8(&raw[..header_end]).expect("utf8");
        assert_eq!(header.lines().count(), 1 + 1 + 1 + 3 + 1);
        assert_eq!(header.lines().filter(|l| l.starts_with("rcpt ")).count(), 3);
    }

    #[test]
    fn malformed_files_are_errors() {
        let t = tempfile::tempdir().expect("tempdir");
        let spool = Spool::open(t.path()).expect("open");
        let id = new_id();
        let cases: Vec<&[u8]> = vec![
            b"",
            b"garbage",
            b"MAILROOM-QUEUE 2\nreceived 1\nsender \nrcpt a@b\nclient \n\nx",
            b"MAILROOM-QUEUE 1\n",
            b"MAILROOM-QUEUE 1\nreceived 1\nsender \nrcpt a@b\nclient x",
            b"MAILROOM-QUEUE 1\nreceived x\nsender \nrcpt a@b\nclient \n\n",
            b"MAILROOM-QUEUE 1\nreceived 1\nrcpt a@b\nclient \n\n",
            b"MAILROOM-QUEUE 1\nreceived 1\nsender \nclient \n\n",
            b"MAILROOM-QUEUE 1\nreceived 1\nsender \nsender \nrcpt a@b\nclient \n\n",
            b"MAILROOM-QUEUE 1\nreceived 1\nsender \nrcpt a@b\nclient \nbogus 1\n\n",
            b"MAILROOM-QUEUE 1\nreceived 1\nsender\nrcpt a@b\nclient \n\n",
            b"MAILROOM-QUEUE 1\nreceived 1\nsender a\rb\nrcpt a@b\nclient \n\n",
            b"MAILROOM-QUEUE 1\nreceived 1\nsender %G0\nrcpt a@b\nclient \n\n",
            b"MAILROOM-QUEUE 1\nreceived 1\nsender \xff\nrcpt a@b\nclient \n\n",
            b"MAILROOM-QUEUE 1\nreceived 99999999999999999999999\nsender \nrcpt a@b\nclient \n\n",
        ];
        for (i, data) in cases.iter().enumerate() {
            fs::write(spool.msg.join(&id), data).expect("write");
            let err = spool.read(&id).expect_err(&format!("case {i} should fail"));
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "case {i}: {err}");
        }
        fs::write(
            spool.msg.join(&id),
            b"MAILROOM-QUEUE 1\nreceived 1\nsender \nrcpt a@b\nclient \n\n",
        )
        .expect("write");
        assert!(spool.read(&id).is_ok());
        assert_eq!(
            spool.read("../x").expect_err("bad id").kind(),
            io::ErrorKind::InvalidInput
        );
        assert_eq!(
            spool.read(&new_id()).expect_err("missing").kind(),
            io::ErrorKind::NotFound
        );
    }

    #[test]
    fn open_cleans_tmp_and_orphan_state() {
        let t = tempfile::tempdir().expect("tempdir");
        {
            let spool = Spool::open(t.path()).expect("open");
            fs::write(spool.tmp.join(new_id()), b"half written").expect("write");
            fs::create_dir(spool.tmp.join("junkdir")).expect("mkdir");
            let orphan = new_id();
            fs::write(spool.state_path(&orphan), b"0 done x\n").expect("write");
        }
        let spool = Spool::open_and_recover(t.path()).expect("reopen");
        assert_eq!(fs::read_dir(&spool.tmp).expect("tmp").count(), 0);
        assert_eq!(fs::read_dir(&spool.msg).expect("msg").count(), 0);
        assert!(spool.list().expect("list").is_empty());
    }

    #[tokio::test]
    async fn attempts_and_remove() {
        let t = tempfile::tempdir().expect("tempdir");
        let spool = Spool::open(t.path()).expect("open");
        let id = spool
            .enqueue_new("s@x.org", &s(&["a@b.c", "d@e.f"]), "c", 1, b"m")
            .await
            .expect("enqueue");
        assert!(spool.attempts(&id).expect("attempts").is_empty());
        spool
            .record_attempt(&id, 1, "deferred", "451 4.4.1 no answer\r\nfrom host")
            .expect("record");
        spool.record_attempt(&id, 0, "done", "").expect("record");
        spool
            .record_attempt(&id, 1, "failed", "550 5.1.1 gone")
            .expect("record");
        assert!(spool.record_attempt(&id, 0, "bogus", "x").is_err());
        assert!(spool.record_attempt(&new_id(), 0, "done", "x").is_err());
        assert_eq!(
            spool.attempts(&id).expect("attempts"),
            vec![
                (
                    1,
                    "deferred".into(),
                    "451 4.4.1 no answer\r\nfrom host".into()
                ),
                (0, "done".into(), String::new()),
                (1, "failed".into(), "550 5.1.1 gone".into()),
            ]
        );
        // list() does not show the state file.
        assert_eq!(spool.list().expect("list"), vec![id.clone()]);
        // A torn last line is ignored; a malformed full line is an error.
        let mut f = OpenOptions::new()
            .append(true)
            .open(spool.state_path(&id))
            .expect("open");
        f.write_all(b"0 do").expect("write");
        drop(f);
        assert_eq!(spool.attempts(&id).expect("attempts").len(), 3);
        fs::write(spool.state_path(&id), b"x done y\n").expect("write");
        assert_eq!(
            spool.attempts(&id).expect_err("bad").kind(),
            io::ErrorKind::InvalidData
        );
        spool.remove(&id).expect("remove");
        assert!(spool.list().expect("list").is_empty());
        assert!(!spool.state_path(&id).exists());
        assert!(spool.remove(&id).is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_enqueues_group_commit() {
        let t = tempfile::tempdir().expect("tempdir");
        let spool = Arc::new(Spool::open(t.path()).expect("open"));
        let mut tasks = Vec::new();
        for i in 0..200u32 {
            let spool = spool.clone();
            tasks.push(tokio::spawn(async move {
                let body = format!("message {i}\r\n").into_bytes();
                let id = spool
                    .enqueue_new("s@x.org", &[format!("r{i}@example.org")], "c", 1, &body)
                    .await?;
                Ok::<_, io::Error>((id, i, body))
            }));
        }
        let mut ids = HashSet::new();
        let mut results = Vec::new();
        for t in tasks {
            let r = t.await.expect("join").expect("enqueue");
            assert!(ids.insert(r.0.clone()), "duplicate id {}", r.0);
            results.push(r);
        }
        for (id, i, body) in &results {
            let (env, got) = spool.read(id).expect("read");
            assert_eq!(env.recipients, vec![format!("r{i}@example.org")]);
            assert_eq!(&got, body);
        }
        assert_eq!(spool.list().expect("list").len(), 200);
        let syncs = spool.dir_syncs();
        eprintln!("200 enqueues, {syncs} directory fsyncs");
        assert!(
            (1..200).contains(&syncs),
            "{syncs} directory fsyncs for 200 messages"
        );
    }

    #[tokio::test]
    async fn streamed_draft_round_trip_and_abandon() {
        let t = tempfile::tempdir().expect("tempdir");
        let spool = Spool::open(t.path()).expect("open");
        let id = new_id();
        let mut d = spool
            .begin(&id, "s@x.org", &s(&["a@b.c"]), "c", 7, b"Received: x\r\n")
            .expect("begin");
        d.write(b"part one, ").expect("write");
        d.write(b"part two").expect("write");
        spool.commit(d).await.expect("commit");
        let (env, msg) = spool.read(&id).expect("read");
        assert_eq!(env.recipients, s(&["a@b.c"]));
        assert_eq!(msg, b"Received: x\r\npart one, part two");
        let id2 = new_id();
        let d = spool
            .begin(&id2, "s@x.org", &s(&["a@b.c"]), "c", 7, b"")
            .expect("begin");
        drop(d);
        assert_eq!(fs::read_dir(&spool.tmp).expect("tmp").count(), 0);
        assert_eq!(spool.list().expect("list"), vec![id]);
    }
}
