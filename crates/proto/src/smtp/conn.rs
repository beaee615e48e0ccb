//! Framing for one SMTP connection: splits received bytes into command lines, DATA sections
//! and BDAT chunks, drives the [`Session`], and collects the reply bytes to send.
//!
//! The network loop only moves bytes: it calls [`Connection::receive`] with what it read,
//! [`Connection::advance`] until that asks for more input, writes [`Connection::take_output`],
//! and performs the [`Event`]s (commit a message, close). Pipelined commands (RFC 2920) are
//! answered in order because lines are handled strictly one after another. Memory stays
//! bounded: an unfinished command line is kept only up to the line limit (the rest of an
//! over-long line is dropped and answered with `500 5.5.2`; the limit is the session's
//! [`Session::max_line`]), message bytes past the size limit are dropped as they arrive, and
//! at most [`Connection::spill_at`] octets of a message stay in memory: the check runs
//! whenever input runs out inside a DATA section or a chunk, and after every complete BDAT
//! chunk (a chunk that arrives in the same read as its command never waits for input).

use super::data::DataReader;

/// Below this many octets a message stays in memory; above, it streams to disk.
pub const SPILL_AT: usize = 256 * 1024;
use super::rejection::Rejection;
use super::reply::Reply;
use super::session::Session;
use super::types::{Action, CommitError, Envelope, Policy, TlsInfo};

/// What the network loop must do after [`Connection::advance`].
#[derive(Debug, PartialEq, Eq)]
pub enum Event {
    /// All buffered input is handled: send the output, then read more.
    NeedInput,
    /// Make this message durable in the queue, then call [`Connection::committed`].
    Commit {
        envelope: Envelope,
        message: Vec<u8>,
    },
    /// Send the output, then close the connection.
    Close,
    /// Send the output (the 220), run the TLS handshake, then call
    /// [`Connection::tls_started`]. Input received after the STARTTLS line has been dropped.
    StartTls,
    /// Check these credentials, then call [`Connection::auth_result`].
    Authenticate { user: String, password: String },
    /// The message being received is large: write these bytes to its spool file (start
    /// one at the first spill, with [`Connection::trace_headers`]); the rest comes later in
    /// further spills and in [`Event::Commit`]'s `message`.
    Spill(Vec<u8>),
    /// The message whose bytes were spilled was refused or reset: throw its file away.
    Abandon,
}

#[derive(Debug)]
enum Mode {
    Command,
    /// Dropping the rest of an over-long command line.
    SkipLine,
    Data(DataReader),
    Chunk {
        left: u64,
        keep: bool,
    },
    /// Waiting for the loop: a commit, a TLS handshake or a password check.
    Paused,
    Closed,
}

/// A scanner for bare CR and LF across BDAT chunks (DATA has its own in `data`).
#[derive(Debug, Default)]
struct LineEnds {
    /// The last byte seen was a CR (it must be followed by LF).
    after_cr: bool,
    /// A bare CR or LF was seen.
    bad: bool,
}

impl LineEnds {
    fn scan(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if self.after_cr && b != b'\n' {
                self.bad = true;
            }
            if b == b'\n' && !self.after_cr {
                self.bad = true;
            }
            self.after_cr = b == b'\r';
        }
    }
}

/// One SMTP connection's protocol state: session, input framing, pending output.
#[derive(Debug)]
pub struct Connection {
    session: Session,
    input: Vec<u8>,
    output: Vec<u8>,
    message: Vec<u8>,
    mode: Mode,
    /// Replies that refused a command (RFC 5321 §4.2: 4xx/5xx), for session error limits.
    errors: u32,
    /// Part of the current message went out in [`Event::Spill`].
    spilled: bool,
    /// Line ends seen so far in this transaction's BDAT chunks.
    chunk_lines: LineEnds,
    /// The current message will be refused: its bytes are not kept.
    dropping: bool,
    /// A lower error limit than the configured one (the listener's stress mode).
    error_limit: Option<u32>,
    /// Refused transaction steps not yet taken by the listener (for its log).
    rejections: Vec<Rejection>,
}

impl Connection {
    /// A connection whose greeting is already queued for output.
    pub fn new(session: Session) -> Connection {
        let mut output = Vec::with_capacity(512);
        output.extend_from_slice(session.greeting().to_wire().as_bytes());
        Connection {
            session,
            input: Vec::new(),
            output,
            message: Vec::new(),
            mode: Mode::Command,
            errors: 0,
            spilled: false,
            chunk_lines: LineEnds::default(),
            dropping: false,
            error_limit: None,
            rejections: Vec::new(),
        }
    }

    /// Room in the buffer of the message being received (tests of its reservation).
    #[cfg(test)]
    pub(crate) fn message_capacity(&self) -> usize {
        self.message.capacity()
    }

    /// The session (for the `Received:` header and logging).
    pub fn session(&self) -> &Session {
        &self.session
    }

    /// Number of refused commands so far.
    pub fn errors(&self) -> u32 {
        self.errors
    }

    /// Lowers the refused commands allowed before the close below the configured
    /// `max_errors` (`None`: back to it). The listener does this in stress mode.
    pub fn limit_errors(&mut self, limit: Option<u32>) {
        self.error_limit = limit;
    }

    /// Adds bytes read from the client.
    pub fn receive(&mut self, bytes: &[u8]) {
        self.input.extend_from_slice(bytes);
    }

    /// Bytes to send to the client now.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.output)
    }

    /// True if there is output waiting.
    pub fn has_output(&self) -> bool {
        !self.output.is_empty()
    }

    /// Queues a reply that the loop decided on (timeout, shutdown).
    pub fn push_reply(&mut self, reply: &Reply) {
        self.output.extend_from_slice(reply.to_wire().as_bytes());
    }

    /// Refusals of MAIL, RCPT, DATA, BDAT, a message or AUTH written since the last call,
    /// each with the envelope so far: the listener logs them.
    pub fn take_rejections(&mut self) -> Vec<Rejection> {
        std::mem::take(&mut self.rejections)
    }

    fn write(&mut self, reply: Reply) {
        self.output.extend_from_slice(reply.to_wire().as_bytes());
        if let Some(rejection) = self.session.rejection(&reply) {
            self.rejections.push(rejection);
        }
        if !reply.is_positive() {
            self.errors += 1;
            let max = self.session.max_errors();
            let max = self.error_limit.map_or(max, |l| l.min(max));
            if self.errors >= max && !matches!(self.mode, Mode::Closed) {
                // RFC 5321 §7.8: a client that keeps failing is cut off.
                self.output
                    .extend_from_slice(b"421 4.7.0 Too many errors, closing connection\r\n");
                self.mode = Mode::Closed;
            }
        }
    }

    /// Handles as much buffered input as possible.
    pub fn advance(&mut self, policy: &dyn Policy) -> Event {
        let mut pos = 0;
        let max_line = self.session.max_line();
        let event = loop {
            match &mut self.mode {
                Mode::Closed => break Event::Close,
                Mode::Paused => break Event::NeedInput,
                Mode::SkipLine => match self.input[pos..].iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        pos += i + 1;
                        self.mode = Mode::Command;
                        let action = self.session.line_too_long();
                        if let Some(ev) = self.perform(action, policy) {
                            break ev;
                        }
                    }
                    None => {
                        pos = self.input.len();
                        break Event::NeedInput;
                    }
                },
                Mode::Command => {
                    let rest = &self.input[pos..];
                    match rest.iter().position(|&b| b == b'\n') {
                        Some(i) if i < max_line => {
                            let line = rest[..=i].to_vec();
                            pos += i + 1;
                            let action = self.session.command(&line, policy);
                            if let Some(ev) = self.perform(action, policy) {
                                if ev == Event::StartTls {
                                    // RFC 3207 §4.2 / CVE-2011-0411: whatever the client sent
                                    // after STARTTLS in plaintext is never executed.
                                    pos = self.input.len();
                                }
                                break ev;
                            }
                        }
                        Some(_) => {
                            self.mode = Mode::SkipLine;
                        }
                        None if rest.len() >= max_line => {
                            self.mode = Mode::SkipLine;
                        }
                        None => break Event::NeedInput,
                    }
                }
                Mode::Data(reader) => {
                    let (used, end) = reader.feed(&self.input[pos..], &mut self.message);
                    pos += used;
                    match end {
                        Some(end) => {
                            let size = reader.size();
                            self.mode = Mode::Command;
                            let action = self.session.data_end(end, size, &self.message, policy);
                            if let Some(ev) = self.perform(action, policy) {
                                break ev;
                            }
                        }
                        None => {
                            if let Some(ev) = self.maybe_spill(policy) {
                                break ev;
                            }
                            break Event::NeedInput;
                        }
                    }
                }
                Mode::Chunk { left, keep } => {
                    let avail = (self.input.len() - pos) as u64;
                    let take = avail.min(*left) as usize;
                    if *keep {
                        let bytes = &self.input[pos..pos + take];
                        self.chunk_lines.scan(bytes);
                        self.message.extend_from_slice(bytes);
                    }
                    pos += take;
                    *left -= take as u64;
                    if *left > 0 {
                        if let Some(ev) = self.maybe_spill(policy) {
                            break ev;
                        }
                        break Event::NeedInput;
                    }
                    self.mode = Mode::Command;
                    // RFC 5321 §2.3.8 holds for BDAT too: a bare CR or LF anywhere in the
                    // message (a CR ending one chunk may pair with an LF starting the next,
                    // but not end the message) refuses it like DATA does.
                    if self.chunk_lines.bad
                        || (self.chunk_lines.after_cr && self.session.pending_chunk_is_last())
                    {
                        self.session.refuse_bare_line_ending();
                    }
                    let action = self.session.chunk_end(&self.message, policy);
                    if let Some(ev) = self.perform(action, policy) {
                        break ev;
                    }
                    // A chunk that arrived whole with its BDAT line never waited for input:
                    // check the spill size here too, or a message sent as many such chunks
                    // would stay in memory up to the size limit.
                    if self.session.in_transaction() {
                        if let Some(ev) = self.maybe_spill(policy) {
                            break ev;
                        }
                    }
                }
            }
        };
        self.input.drain(..pos);
        event
    }

    /// Performs a session action; returns an event when the loop must act.
    fn perform(&mut self, action: Action, policy: &dyn Policy) -> Option<Event> {
        match action {
            Action::Reply(r) => {
                self.write(r);
                if !self.session.in_transaction() {
                    // RSET, a refused message, a new EHLO: drop any bytes kept.
                    self.message = Vec::new();
                    self.chunk_lines = LineEnds::default();
                    self.dropping = false;
                    if self.spilled {
                        self.spilled = false;
                        return Some(Event::Abandon);
                    }
                }
                None
            }
            Action::Close(r) => {
                self.write(r);
                self.mode = Mode::Closed;
                Some(Event::Close)
            }
            Action::ReadData { reply, max_size } => {
                self.write(reply);
                self.message.clear();
                // Room for the declared size at once (no regrowth copies), at most
                // `SPILL_AT`: a client that declares much and sends nothing gets no more.
                let declared = usize::try_from(self.session.declared_size()).unwrap_or(usize::MAX);
                self.message.reserve(declared.min(SPILL_AT));
                self.mode = Mode::Data(DataReader::new(max_size));
                None
            }
            Action::ReadChunk { size, keep } => {
                if size == 0 {
                    self.mode = Mode::Command;
                    let next = self.session.chunk_end(&self.message, policy);
                    return self.perform(next, policy);
                }
                self.mode = Mode::Chunk { left: size, keep };
                None
            }
            Action::Commit(envelope) => {
                self.mode = Mode::Paused;
                self.spilled = false;
                self.chunk_lines = LineEnds::default();
                self.dropping = false;
                Some(Event::Commit {
                    envelope,
                    message: std::mem::take(&mut self.message),
                })
            }
            Action::StartTls(r) => {
                self.write(r);
                self.mode = Mode::Paused;
                Some(Event::StartTls)
            }
            Action::Authenticate { user, password } => {
                self.mode = Mode::Paused;
                Some(Event::Authenticate { user, password })
            }
        }
    }

    /// Hands the message bytes to the loop once they pass the spill size; before the first
    /// spill the header block is checked, so a message to be refused is not kept at all.
    fn maybe_spill(&mut self, policy: &dyn Policy) -> Option<Event> {
        if self.dropping {
            self.message.clear();
            return None;
        }
        if self.message.len() < self.spill_at() {
            return None;
        }
        if !self.spilled {
            self.session.check_headers(&self.message, policy);
            if self.session.refused() {
                self.dropping = true;
                self.message = Vec::new();
                return None;
            }
            self.spilled = true;
        }
        Some(Event::Spill(std::mem::take(&mut self.message)))
    }

    /// Message bytes kept in memory before they go to disk: at least the largest header block
    /// allowed, so the header checks see it whole.
    pub fn spill_at(&self) -> usize {
        self.session
            .max_header_size()
            .saturating_add(1)
            .max(SPILL_AT)
    }

    /// The sender and recipients of the message in progress (for its spool file).
    pub fn envelope(&self) -> Option<(&str, &[String])> {
        self.session.envelope()
    }

    /// The TLS handshake after [`Event::StartTls`] succeeded.
    pub fn tls_started(&mut self, info: TlsInfo) {
        self.input.clear();
        self.message = Vec::new();
        self.session.tls_started(info);
        self.mode = Mode::Command;
    }

    /// The verdict on the credentials of [`Event::Authenticate`].
    pub fn auth_result(&mut self, account: Option<String>) {
        let reply = self.session.auth_result(account);
        if matches!(self.mode, Mode::Paused) {
            self.mode = Mode::Command;
        }
        self.write(reply);
    }

    /// The headers to prepend to the message being committed (see
    /// [`Session::trace_headers`]).
    pub fn trace_headers(&self, id: &str, unix_secs: i64) -> String {
        self.session.trace_headers(id, unix_secs)
    }

    /// The queue's answer for the message of the last [`Event::Commit`].
    pub fn committed(&mut self, result: Result<&str, CommitError>) {
        let reply = self.session.committed(result);
        self.write(reply);
        self.message = Vec::new();
        if matches!(self.mode, Mode::Paused) {
            self.mode = Mode::Command;
        }
    }

    /// True once the session ended (QUIT, or a fatal error).
    pub fn is_closed(&self) -> bool {
        matches!(self.mode, Mode::Closed)
    }
}
