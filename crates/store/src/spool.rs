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
//! sender-verified yes\n      (optional: the sender authenticated or came from a trusted network)
//! notify never\n             (optional: never send a DSN for this message, RFC 3461 NOTIFY=NEVER)
//! \n
//! <raw message bytes to the end of the file>
//! ```
//!
//! Values are percent-escaped (`%`, bytes below 0x20 and 0x7F become `%XX`), so a hostile
//! address containing CR, LF or NUL can never add or end an envelope line. Per-recipient
//! delivery outcomes are appended to `msg/<id>.state`, one escaped line each
//! ([`crate::outcome::Entry`]).
//!
//! Group commit: each `enqueue` writes and fsyncs `tmp/<id>` on the blocking pool (so
//! concurrent sessions fsync in parallel), then hands the id to one committer thread, which
//! renames every pending file into `msg/` and fsyncs `msg/` once per batch; arrivals during
//! that fsync form the next batch.
//!
//! A message is delivered from its file without loading it: [`Spool::open_message`] gives
//! the envelope and a [`Body`] to read in blocks ([`body`]).
//!
//! This module does not deliver, schedule retries or decide bounces; it only stores. It
//! assumes one server process owns the spool (`open` deletes whatever is in `tmp/`).

use std::collections::HashSet;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{SystemTime, UNIX_EPOCH};

use tokio::sync::oneshot;

use crate::durable::Disk;
use crate::maildir::ensure_dir;

mod body;
mod draft_headers;
mod recycle;
mod state;
pub use body::{Body, BodyReader, BLOCK};
pub use recycle::open_shared;

const MAGIC_LINE: &str = "MAILROOM-QUEUE 1\n";
const MAGIC: &[u8] = MAGIC_LINE.as_bytes();
const STATE_SUFFIX: &str = ".state";
const ID_LEN: usize = 16;
/// Base32 alphabet whose ASCII order is its numeric order, so ids sort by time.
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHIJKLMNOPQRSTUV";

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
    /// The sender was verified when the message arrived (authenticated, or a trusted
    /// network). Forwarded copies of mail from unverified senders get `notify_never`.
    pub sender_verified: bool,
    /// Never send a DSN about this message (forwarded mail from an unverified sender: a
    /// bounce would go to an address anyone can forge, i.e. backscatter).
    pub notify_never: bool,
    /// RFC 8689 REQUIRETLS: relayed only over TLS verified by MTA-STS or DANE (records
    /// written before it have no such line: false).
    pub require_tls: bool,
}

/// Where a message comes from, as recorded in its envelope.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Origin<'a> {
    /// Free text about the client (HELO name, IP address), or what made the message.
    pub client: &'a str,
    /// See [`Envelope::sender_verified`].
    pub sender_verified: bool,
    /// See [`Envelope::notify_never`].
    pub notify_never: bool,
    /// See [`Envelope::require_tls`].
    pub require_tls: bool,
}

impl<'a> Origin<'a> {
    /// An origin with only the free text: unverified sender, DSNs allowed.
    pub fn client(client: &'a str) -> Origin<'a> {
        Origin {
            client,
            ..Origin::default()
        }
    }
}

/// A message whose tmp file is durable, waiting to be moved into `msg/`.
struct Pending {
    id: String,
    /// The durable file in `tmp/` (`tmp/<id>`, or a recycled `tmp/free-<n>`).
    from: PathBuf,
    reply: oneshot::Sender<io::Result<()>>,
}

/// A message being streamed into `tmp/` (see [`Spool::begin`]). Removed when dropped
/// without [`Spool::commit`].
pub struct Draft {
    id: String,
    path: PathBuf,
    file: Option<fs::File>,
    /// Octets of the envelope record before the message (see `draft_headers`).
    head_len: u64,
    /// Octets of the trace fields written by [`Spool::begin`] before the client's message.
    prefix_len: u64,
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

/// Bytes made on the spool's writer thread just before the message is written
/// ([`Spool::enqueue_shared`]).
pub type Lead = Box<dyn FnOnce() -> Vec<u8> + Send>;

/// The queue. Share it behind an `Arc`; all methods take `&self`.
pub struct Spool {
    tmp: PathBuf,
    msg: PathBuf,
    dir_syncs: Arc<AtomicU64>,
    committer: mpsc::Sender<Pending>,
    disk: Arc<dyn Disk>,
    /// Emptied files of delivered messages, `tmp/free-<n>` (see `recycle`).
    free: std::sync::Mutex<Vec<u64>>,
    next_free: AtomicU64,
    /// The most files the pool keeps ([`recycle::MAX_FREE`]; smaller in tests).
    max_free: usize,
    recycled: AtomicU64,
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
pub(crate) fn escape(s: &str) -> String {
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
pub(crate) fn unescape(s: &[u8]) -> io::Result<String> {
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
fn encode_header(sender: &str, recipients: &[String], origin: &Origin, received: u64) -> Vec<u8> {
    let mut h = String::new();
    h.push_str(MAGIC_LINE);
    h.push_str(&format!("received {received}\n"));
    h.push_str(&format!("sender {}\n", escape(sender)));
    for r in recipients {
        h.push_str(&format!("rcpt {}\n", escape(r)));
    }
    h.push_str(&format!("client {}\n", escape(origin.client)));
    if origin.sender_verified {
        h.push_str("sender-verified yes\n");
    }
    if origin.notify_never {
        h.push_str("notify never\n");
    }
    if origin.require_tls {
        h.push_str("require-tls yes\n");
    }
    h.push('\n');
    h.into_bytes()
}

/// Parses a record. Any deviation from the format is an `InvalidData` error.
fn parse_record(id: &str, mut data: Vec<u8>) -> io::Result<(Envelope, Vec<u8>)> {
    let (envelope, end) = parse_envelope(id, &data)?;
    data.drain(..end);
    Ok((envelope, data))
}

/// Parses the envelope at the start of a record; returns it and where the message starts.
fn parse_envelope(id: &str, data: &[u8]) -> io::Result<(Envelope, usize)> {
    if !data.starts_with(MAGIC) {
        return Err(invalid_data(format!("{id}: not a queue record")));
    }
    let mut pos = MAGIC.len();
    let mut received = None;
    let mut sender = None;
    let mut client = None;
    let mut sender_verified = false;
    let mut require_tls = false;
    let mut notify_never = false;
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
            b"sender-verified" if value == "yes" && !sender_verified => sender_verified = true,
            b"notify" if value == "never" && !notify_never => notify_never = true,
            b"require-tls" if value == "yes" && !require_tls => require_tls = true,
            _ => return Err(invalid_data(format!("{id}: unknown envelope field"))),
        }
    }
    let (Some(received), Some(sender), Some(client)) = (received, sender, client) else {
        return Err(invalid_data(format!("{id}: envelope field missing")));
    };
    if recipients.is_empty() {
        return Err(invalid_data(format!("{id}: no recipients")));
    }
    Ok((
        Envelope {
            id: id.to_string(),
            received,
            sender,
            recipients,
            client,
            sender_verified,
            notify_never,
            require_tls,
        },
        pos,
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
    let origin = Origin {
        client: &env.client,
        sender_verified: env.sender_verified,
        notify_never: env.notify_never,
        require_tls: env.require_tls,
    };
    let mut record = encode_header(&env.sender, &env.recipients, &origin, env.received);
    record.extend_from_slice(message);
    record
}

/// Writes `parts` to `file` (new or recycled, empty, at `path`) and fsyncs it; removes it on
/// failure.
fn write_durable(
    mut file: fs::File,
    path: &Path,
    parts: &[&[u8]],
    disk: &dyn Disk,
) -> io::Result<()> {
    let result = (|| {
        write_all_vectored(&mut file, parts)?;
        disk.sync_file(&file, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(path);
    }
    result
}

/// Writes every part, in order, with as few `writev` calls as the kernel allows (one, for a
/// message in page cache).
fn write_all_vectored(file: &mut fs::File, parts: &[&[u8]]) -> io::Result<()> {
    let mut slices: Vec<io::IoSlice<'_>> = parts
        .iter()
        .filter(|p| !p.is_empty())
        .map(|p| io::IoSlice::new(p))
        .collect();
    let mut left = &mut slices[..];
    while !left.is_empty() {
        match file.write_vectored(left) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => io::IoSlice::advance_slices(&mut left, n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The committer thread: renames each batch into `msg/`, fsyncs `msg/` once, answers.
fn committer(
    rx: mpsc::Receiver<Pending>,
    msg: PathBuf,
    syncs: Arc<AtomicU64>,
    disk: Arc<dyn Disk>,
) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while let Ok(p) = rx.try_recv() {
            batch.push(p);
        }
        let mut results: Vec<io::Result<()>> = batch
            .iter()
            .map(|p| {
                let from = &p.from;
                let to = msg.join(&p.id);
                if fs::symlink_metadata(&to).is_ok() {
                    let _ = fs::remove_file(from);
                    return Err(io::Error::new(
                        io::ErrorKind::AlreadyExists,
                        format!("queue id {} already in use", p.id),
                    ));
                }
                disk.rename(from, &to).inspect_err(|_| {
                    let _ = fs::remove_file(from);
                })
            })
            .collect();
        if results.iter().any(|r| r.is_ok()) {
            if let Err(e) = disk.sync_dir(&msg) {
                // The files are in msg/ but may not survive a crash: take them back out and
                // report failure, so the client's retry is the only copy (nothing is
                // delivered that was not acknowledged; if the unlink is lost in a crash too,
                // the worst case is a duplicate, never a loss).
                for (p, r) in batch.iter().zip(results.iter_mut()) {
                    if r.is_ok() {
                        let _ = fs::remove_file(msg.join(&p.id));
                        *r = Err(io::Error::new(
                            e.kind(),
                            format!("fsync of queue failed: {e}"),
                        ));
                    }
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
        Spool::open_and_recover_with_disk(data_dir, crate::durable::os())
    }

    /// [`Spool::open_and_recover`] with every fsync and rename going through `disk`.
    pub fn open_and_recover_with_disk(data_dir: &Path, disk: Arc<dyn Disk>) -> io::Result<Spool> {
        let spool = Spool::open_with_disk(data_dir, disk)?;
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
            let entry = entry?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if is_id(name) {
                // Empty: a delivered message's file emptied for reuse whose move out of
                // msg/ a crash lost (see `recycle`); a queued file is never empty.
                if entry.metadata()?.len() == 0 {
                    fs::remove_file(entry.path())?;
                    continue;
                }
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
        Spool::open_with_disk(data_dir, crate::durable::os())
    }

    /// [`Spool::open`] with every fsync and rename going through `disk` (tests pass a
    /// [`crate::durable::Recorder`]).
    pub fn open_with_disk(data_dir: &Path, disk: Arc<dyn Disk>) -> io::Result<Spool> {
        let root = data_dir.join("queue");
        let tmp = root.join("tmp");
        let msg = root.join("msg");
        ensure_dir(&tmp, &*disk)?;
        ensure_dir(&msg, &*disk)?;
        let dir_syncs = Arc::new(AtomicU64::new(0));
        let (tx, rx) = mpsc::channel();
        let (m, s, d) = (msg.clone(), dir_syncs.clone(), disk.clone());
        std::thread::Builder::new()
            .name("spool-commit".into())
            .spawn(move || committer(rx, m, s, d))?;
        Ok(Spool {
            tmp,
            msg,
            dir_syncs,
            committer: tx,
            disk,
            free: std::sync::Mutex::new(Vec::new()),
            next_free: AtomicU64::new(0),
            max_free: recycle::MAX_FREE,
            recycled: AtomicU64::new(0),
        })
    }

    /// The disk seam this spool writes through; Maildirs written for its messages use it too.
    pub fn disk(&self) -> Arc<dyn Disk> {
        self.disk.clone()
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
        origin: &Origin<'_>,
        received: u64,
        parts: &[&[u8]],
    ) -> io::Result<()> {
        self.enqueue_shared(id, sender, recipients, origin, received, None, parts, None)
            .await
    }

    /// [`Spool::enqueue`] of the message `parts` followed by `body`, which is written from
    /// where it is, not copied (the SMTP session's buffer of a message). `lead`, when given,
    /// makes bytes on the writer thread that go before `parts` (the DKIM signature of the
    /// rest: made there, it costs the session no second trip through the blocking pool).
    #[allow(clippy::too_many_arguments)]
    pub async fn enqueue_shared(
        &self,
        id: &str,
        sender: &str,
        recipients: &[String],
        origin: &Origin<'_>,
        received: u64,
        lead: Option<Lead>,
        parts: &[&[u8]],
        body: Option<Arc<Vec<u8>>>,
    ) -> io::Result<()> {
        check_id(id)?;
        if recipients.is_empty() {
            return Err(invalid_input(
                "a queued message needs at least one recipient",
            ));
        }
        let envelope = encode_header(sender, recipients, origin, received);
        let rest = parts.concat();
        let id = id.to_string();
        let (path, file) = self.new_tmp_file(&id)?;
        let disk = self.disk.clone();
        let from = path.clone();
        tokio::task::spawn_blocking(move || {
            let lead = lead.map(|make| make()).unwrap_or_default();
            let body = body.as_deref().map_or(&[][..], |b| &b[..]);
            write_durable(file, &path, &[&envelope, &lead, &rest, body], &*disk)
        })
        .await
        .map_err(|e| io::Error::other(format!("spool writer task failed: {e}")))??;
        let (reply, done) = oneshot::channel();
        self.committer
            .send(Pending {
                id: id.clone(),
                from,
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
        origin: &Origin<'_>,
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
        let head = encode_header(sender, recipients, origin, received);
        let head_len = head.len() as u64;
        let mut draft_file = || -> io::Result<()> {
            file.write_all(&head)?;
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
            head_len,
            prefix_len: prefix.len() as u64,
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
        let (disk, p) = (self.disk.clone(), path.clone());
        let synced = tokio::task::spawn_blocking(move || disk.sync_file(&file, &p))
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
                from: draft.path.clone(),
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
        let mut data = Vec::new();
        open_shared(&self.msg.join(id))?.read_to_end(&mut data)?;
        parse_record(id, data)
    }

    /// Removes a message and its state file once every recipient is done (unlink; no fsync of
    /// msg/, because a redelivery after a crash is detected by `Maildir::contains`).
    /// [`Spool::remove_delivered`] keeps the file for reuse instead.
    pub fn remove(&self, id: &str) -> io::Result<()> {
        check_id(id)?;
        let removed = fs::remove_file(self.msg.join(id));
        self.remove_state(id)?;
        removed
    }

    fn remove_state(&self, id: &str) -> io::Result<()> {
        match fs::remove_file(self.state_path(id)) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// How many times the committer has fsynced `msg/` (one per batch). With group commit
    /// this is lower than the number of messages under concurrent load.
    pub fn dir_syncs(&self) -> u64 {
        self.dir_syncs.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
#[path = "spool_tests.rs"]
mod tests;
