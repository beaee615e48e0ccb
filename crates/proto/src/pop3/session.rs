//! The POP3 server session state machine (RFC 1939 §3–§6), with CAPA (RFC 2449), response
//! codes (RFC 3206), SASL PLAIN via AUTH (RFC 5034) and STLS (RFC 2595).
//!
//! What it does: takes one client line at a time and returns an [`Action`] telling the I/O loop
//! what to do: send a reply, check a password, stream a message, run the UPDATE state, or close.
//! It owns the per-session view of the maildrop: a snapshot listing given at login, the
//! deletion marks, and the counters for the QUIT log line.
//!
//! It also decides the clear-text login rule: USER/PASS and AUTH PLAIN are refused with
//! `-ERR [AUTH]` unless TLS is active or the loop said the client is trusted, and CAPA lists
//! only what is allowed in the current state (RFC 2449 §5, RFC 2595 §4).
//!
//! What it does not do: any I/O, the TLS handshake, password checking, locking, delays or rate
//! limiting. The loop performs an action, then reports the result through
//! [`Session::auth_result`], [`Session::tls_started`], [`Session::send_failed`] or
//! [`Session::update_result`], and must not feed further lines while an `Authenticate` or
//! `StartTls` action is outstanding. Discarding client input that arrived before the TLS
//! handshake is the loop's job (RFC 2595 §4 / CVE-2011-0411); the session only guarantees that
//! nothing from before [`Session::tls_started`] survives it.
//!
//! APOP (RFC 1939 §7) is refused: it needs the clear-text password on the server, and Mailroom
//! stores only argon2id hashes.
//!
//! Message indices in actions are 0-based positions in the login snapshot; message numbers on
//! the wire are 1-based.

use super::command::{parse_command, Command, MAX_COMMAND_LINE};
use crate::sasl::{decode_plain, SaslError, MAX_RESPONSE_LEN};

/// Maximum number of failed logins on one connection before it is closed.
pub const MAX_AUTH_FAILURES: u32 = 3;

/// The RFC 1939 §3 session states, plus the wait for the loop's password check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Not logged in yet.
    Authorization,
    /// An `Authenticate` action is outstanding.
    Authenticating,
    /// A `StartTls` action is outstanding: the loop is negotiating TLS (RFC 2595 §4).
    StartingTls,
    /// Logged in; the maildrop is locked and listed.
    Transaction,
    /// QUIT received in TRANSACTION: the loop is applying deletions.
    Update,
    /// The session is over; the loop closes the connection.
    Closed,
}

/// What the I/O loop must do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send this complete response (CRLF included), then read the next line.
    Reply(String),
    /// Check these credentials (slowly, off the event loop), lock and list the maildrop, then
    /// call [`Session::auth_result`] and send the reply it returns.
    Authenticate {
        /// User name as given by the client.
        user: String,
        /// Password as given by the client; never log it.
        password: String,
    },
    /// Open message `index` (0-based); if that fails send [`Session::send_failed`]'s reply.
    /// Otherwise send `reply`, then the message through a
    /// [`DotStuffer`](super::stuff::DotStuffer) built with `top_lines`, ending with `.\r\n`.
    SendMessage {
        /// 0-based index into the login snapshot.
        index: usize,
        /// `None` for RETR; `Some(n)` for `TOP msg n`.
        top_lines: Option<u64>,
        /// The `+OK` status line to send first.
        reply: String,
    },
    /// Send `reply` and flush it, throw away any client input already received after the
    /// STLS line (it was sent in clear text and must never be executed inside TLS), negotiate
    /// TLS, then call [`Session::tls_started`] (RFC 2595 §4). If the handshake fails, close the
    /// connection.
    StartTls(String),
    /// Enter UPDATE (RFC 1939 §6): delete the messages at `delete`, mark the messages at
    /// `seen` (retrieved and kept) as seen, then send [`Session::update_result`]'s reply and
    /// close.
    Quit {
        /// 0-based indices of messages marked deleted.
        delete: Vec<usize>,
        /// 0-based indices of messages retrieved with RETR and not deleted.
        seen: Vec<usize>,
    },
    /// Send this response, then close the connection without entering UPDATE.
    Close(String),
}

/// The loop's answer to an [`Action::Authenticate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthOutcome {
    /// Credentials good and maildrop locked: its snapshot as (UIDL, size in octets).
    Ok(Vec<(String, u64)>),
    /// Unknown user or wrong password (deliberately indistinguishable).
    BadCredentials,
    /// Too many recent failures from this client; the check was not even attempted.
    Throttled,
    /// The maildrop is locked by another session (RFC 3206 §4, `[IN-USE]`).
    InUse,
    /// A temporary server problem, e.g. an I/O error listing the maildrop.
    TempFailure,
    /// A permanent problem with the account (e.g. disabled).
    PermFailure,
}

/// Flags from the I/O loop about the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SessionFlags {
    /// The client is in a trusted network, so plain-text logins (USER/PASS, AUTH PLAIN) are
    /// allowed even without TLS. Over TLS they are always allowed, whatever this says.
    pub plaintext_login_allowed: bool,
    /// The server could start TLS on this connection (STLS).
    pub tls_available: bool,
    /// TLS is already active (implicit TLS, RFC 8314, or after STLS).
    pub tls_active: bool,
}

#[derive(Debug, Clone)]
struct Message {
    uidl: String,
    size: u64,
    deleted: bool,
    retrieved: bool,
}

/// One POP3 server session. Create it after sending [`greeting`].
#[derive(Debug)]
pub struct Session {
    state: State,
    flags: SessionFlags,
    /// USER given, waiting for PASS.
    pending_user: Option<String>,
    /// `AUTH PLAIN` sent without initial response: the next line is the response.
    sasl_pending: bool,
    /// The user of the outstanding `Authenticate` action.
    authenticating: Option<String>,
    user: Option<String>,
    messages: Vec<Message>,
    auth_failures: u32,
    retrieved: usize,
    deleted: usize,
}

/// The greeting to send on connect (RFC 1939 §4).
pub fn greeting(hostname: &str) -> String {
    format!("+OK {hostname} POP3 server ready\r\n")
}

fn ok(text: &str) -> Action {
    Action::Reply(format!("+OK {text}\r\n"))
}

fn err(text: &str) -> Action {
    Action::Reply(format!("-ERR {text}\r\n"))
}

const TLS_REQUIRED: &str =
    "[AUTH] Plain-text login is only allowed over TLS or from trusted networks";
const STLS_REPLY: &str = "+OK Begin TLS negotiation\r\n";
const BAD_CREDENTIALS: &str = "[AUTH] Invalid user name or password";

impl Session {
    /// Creates a session in the AUTHORIZATION state.
    pub fn new(flags: SessionFlags) -> Self {
        Session {
            state: State::Authorization,
            flags,
            pending_user: None,
            sasl_pending: false,
            authenticating: None,
            user: None,
            messages: Vec::new(),
            auth_failures: 0,
            retrieved: 0,
            deleted: 0,
        }
    }

    /// Current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// The logged-in user, once in TRANSACTION.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// Messages retrieved with RETR (distinct) and messages deleted at QUIT, for the log.
    pub fn counts(&self) -> (usize, usize) {
        (self.retrieved, self.deleted)
    }

    /// The longest line (without CRLF) the loop should read next; longer lines should be
    /// truncated to one octet more than this and passed in, which yields `-ERR`.
    ///
    /// Command lines are bounded by RFC 2449 §4 (255 octets with CRLF). A SASL response line
    /// after `+ ` is not a command line, so it is allowed up to [`MAX_RESPONSE_LEN`]; RFC 5034
    /// §4 only asks clients not to put an initial response that would exceed 255 octets on the
    /// AUTH command line itself.
    pub fn max_line_length(&self) -> usize {
        if self.sasl_pending {
            MAX_RESPONSE_LEN
        } else {
            MAX_COMMAND_LINE - 2
        }
    }

    /// True if TLS is active on this connection.
    pub fn tls_active(&self) -> bool {
        self.flags.tls_active
    }

    /// True if USER/PASS and AUTH PLAIN are allowed now: over TLS, or from a trusted client.
    fn plaintext_allowed(&self) -> bool {
        self.flags.tls_active || self.flags.plaintext_login_allowed
    }

    /// Records that the TLS handshake after [`Action::StartTls`] succeeded.
    ///
    /// The session goes back to a fresh AUTHORIZATION state: a USER name or a SASL exchange
    /// begun before TLS is forgotten, as the server must not trust anything the client said
    /// in clear text (RFC 2595 §4; compare RFC 3207 §4.2). Only the per-connection count of
    /// failed logins is kept, since it is the server's own accounting, not client input.
    /// Called in any other state than after `StartTls`, it does nothing.
    pub fn tls_started(&mut self) {
        if self.state != State::StartingTls {
            return;
        }
        self.state = State::Authorization;
        self.flags.tls_active = true;
        self.pending_user = None;
        self.sasl_pending = false;
        self.user = None;
    }

    /// Handles one client line, given without its CRLF (or LF).
    pub fn handle_line(&mut self, line: &[u8]) -> Action {
        if self.sasl_pending {
            self.sasl_pending = false;
            return self.sasl_response(line);
        }
        // Bad lines get -ERR and the session goes on (RFC 2449 §4 for over-long lines).
        let cmd = match parse_command(line) {
            Ok(c) => c,
            Err(e) => return err(&e.to_string()),
        };
        match self.state {
            State::Authorization => self.authorization(cmd),
            State::Transaction => self.transaction(cmd),
            State::Authenticating | State::StartingTls | State::Update => err("Busy"),
            State::Closed => Action::Close("-ERR Session closed\r\n".into()),
        }
    }

    fn capa(&self) -> Action {
        // RFC 2449 §5: list only what is true in the current state.
        let mut s = String::from("+OK Capability list follows\r\n");
        s.push_str("TOP\r\nUIDL\r\nRESP-CODES\r\nAUTH-RESP-CODE\r\nPIPELINING\r\n");
        if self.state == State::Authorization {
            if self.plaintext_allowed() {
                s.push_str("USER\r\nSASL PLAIN\r\n");
            }
            if self.flags.tls_available && !self.flags.tls_active {
                s.push_str("STLS\r\n");
            }
        }
        s.push_str("EXPIRE NEVER\r\nIMPLEMENTATION Mailroom\r\n.\r\n");
        Action::Reply(s)
    }

    fn authorization(&mut self, cmd: Command) -> Action {
        match cmd {
            Command::Capa => self.capa(),
            Command::Quit => {
                self.state = State::Closed;
                Action::Close("+OK Bye\r\n".into())
            }
            Command::Noop => ok(""),
            Command::Apop => err("APOP not supported"),
            // RFC 2595 §4: STLS only in AUTHORIZATION, and only once.
            Command::Stls => {
                if self.flags.tls_active {
                    err("TLS already active")
                } else if self.flags.tls_available {
                    self.pending_user = None;
                    self.state = State::StartingTls;
                    Action::StartTls(STLS_REPLY.into())
                } else {
                    err("STLS not available")
                }
            }
            Command::User(u) => {
                if !self.plaintext_allowed() {
                    return err(TLS_REQUIRED);
                }
                // RFC 1939 §7 allows -ERR for an unknown name; we never reveal it.
                self.pending_user = Some(u);
                ok("Send PASS")
            }
            Command::Pass(password) => {
                if !self.plaintext_allowed() {
                    return err(TLS_REQUIRED);
                }
                match self.pending_user.take() {
                    Some(user) => {
                        self.state = State::Authenticating;
                        self.authenticating = Some(user.clone());
                        Action::Authenticate { user, password }
                    }
                    None => err("USER first"),
                }
            }
            Command::Auth { mechanism, initial } => {
                self.pending_user = None;
                if !self.plaintext_allowed() {
                    return err(TLS_REQUIRED);
                }
                match (mechanism.as_deref(), initial) {
                    // Legacy mechanism listing (RFC 1734 style) used by some clients.
                    (None, _) => Action::Reply("+OK\r\nPLAIN\r\n.\r\n".into()),
                    (Some("PLAIN"), None) => {
                        self.sasl_pending = true;
                        // RFC 5034 §4: empty server challenge.
                        Action::Reply("+ \r\n".into())
                    }
                    // RFC 5034 §4: "=" is an empty initial response.
                    (Some("PLAIN"), Some(i)) if i == "=" => self.sasl_response(b""),
                    (Some("PLAIN"), Some(i)) => self.sasl_response(i.as_bytes()),
                    (Some(_), _) => err("Unsupported SASL mechanism"),
                }
            }
            _ => err("Not allowed before login"),
        }
    }

    fn sasl_response(&mut self, line: &[u8]) -> Action {
        let Ok(text) = std::str::from_utf8(line) else {
            return err("[AUTH] Invalid SASL response");
        };
        match decode_plain(text) {
            Ok(c) => {
                self.state = State::Authenticating;
                self.authenticating = Some(c.authcid.clone());
                Action::Authenticate {
                    user: c.authcid,
                    password: c.password,
                }
            }
            // RFC 5034 §4: a cancelled exchange gets -ERR.
            Err(SaslError::Cancelled) => err("Authentication cancelled"),
            Err(e) => err(&format!("[AUTH] {e}")),
        }
    }

    /// Reports the result of an [`Action::Authenticate`]; returns what to send.
    pub fn auth_result(&mut self, outcome: AuthOutcome) -> Action {
        if self.state != State::Authenticating {
            return err("Busy");
        }
        self.state = State::Authorization;
        let user = self.authenticating.take();
        match outcome {
            AuthOutcome::Ok(listing) => {
                self.user = user;
                self.messages = listing
                    .into_iter()
                    .map(|(uidl, size)| Message {
                        uidl,
                        size,
                        deleted: false,
                        retrieved: false,
                    })
                    .collect();
                self.state = State::Transaction;
                let (n, size) = self.stat();
                ok(&format!("Logged in, {n} messages ({size} octets)"))
            }
            AuthOutcome::BadCredentials => {
                self.auth_failures += 1;
                if self.auth_failures >= MAX_AUTH_FAILURES {
                    self.state = State::Closed;
                    Action::Close(format!("-ERR {BAD_CREDENTIALS}; closing\r\n"))
                } else {
                    err(BAD_CREDENTIALS)
                }
            }
            AuthOutcome::Throttled => {
                err("[AUTH] Too many failed logins from your address; try again later")
            }
            // RFC 3206 §4.
            AuthOutcome::InUse => err("[IN-USE] Maildrop is locked by another session"),
            AuthOutcome::TempFailure => err("[SYS/TEMP] Temporary problem; try again later"),
            AuthOutcome::PermFailure => err("[SYS/PERM] Maildrop unavailable"),
        }
    }

    fn stat(&self) -> (usize, u64) {
        self.messages
            .iter()
            .filter(|m| !m.deleted)
            .fold((0, 0), |(n, s), m| (n + 1, s + m.size))
    }

    /// Resolves a 1-based message number to an index of a visible message.
    fn lookup(&self, msg: usize) -> Result<usize, Action> {
        if msg == 0 || msg > self.messages.len() {
            return Err(err(&format!(
                "No such message; {} messages in maildrop",
                self.messages.len()
            )));
        }
        let i = msg - 1;
        if self.messages[i].deleted {
            return Err(err(&format!("Message {msg} already deleted")));
        }
        Ok(i)
    }

    fn multiline<F: Fn(usize, &Message) -> String>(&self, head: &str, f: F) -> Action {
        let mut s = format!("+OK {head}\r\n");
        for (i, m) in self.messages.iter().enumerate().filter(|(_, m)| !m.deleted) {
            s.push_str(&f(i + 1, m));
        }
        s.push_str(".\r\n");
        Action::Reply(s)
    }

    fn transaction(&mut self, cmd: Command) -> Action {
        match cmd {
            Command::Capa => self.capa(),
            Command::Noop => ok(""),
            Command::Stat => {
                let (n, size) = self.stat();
                ok(&format!("{n} {size}"))
            }
            Command::List(None) => {
                let (n, size) = self.stat();
                self.multiline(&format!("{n} messages ({size} octets)"), |i, m| {
                    format!("{i} {}\r\n", m.size)
                })
            }
            Command::List(Some(msg)) => match self.lookup(msg) {
                Ok(i) => ok(&format!("{msg} {}", self.messages[i].size)),
                Err(a) => a,
            },
            Command::Uidl(None) => self.multiline("Unique-ID listing follows", |i, m| {
                format!("{i} {}\r\n", m.uidl)
            }),
            Command::Uidl(Some(msg)) => match self.lookup(msg) {
                Ok(i) => ok(&format!("{msg} {}", self.messages[i].uidl)),
                Err(a) => a,
            },
            Command::Retr(msg) => match self.lookup(msg) {
                Ok(i) => {
                    let m = &mut self.messages[i];
                    if !m.retrieved {
                        m.retrieved = true;
                        self.retrieved += 1;
                    }
                    Action::SendMessage {
                        index: i,
                        top_lines: None,
                        reply: format!("+OK {} octets\r\n", m.size),
                    }
                }
                Err(a) => a,
            },
            Command::Top { msg, lines } => match self.lookup(msg) {
                Ok(i) => Action::SendMessage {
                    index: i,
                    top_lines: Some(lines),
                    reply: "+OK Top of message follows\r\n".into(),
                },
                Err(a) => a,
            },
            Command::Dele(msg) => match self.lookup(msg) {
                Ok(i) => {
                    self.messages[i].deleted = true;
                    ok(&format!("Message {msg} deleted"))
                }
                Err(a) => a,
            },
            Command::Rset => {
                // RFC 1939 §5: unmark all messages marked as deleted.
                for m in &mut self.messages {
                    m.deleted = false;
                }
                let (n, size) = self.stat();
                ok(&format!("Maildrop has {n} messages ({size} octets)"))
            }
            Command::Quit => {
                self.state = State::Update;
                let delete = (0..self.messages.len())
                    .filter(|&i| self.messages[i].deleted)
                    .collect();
                let seen = (0..self.messages.len())
                    .filter(|&i| self.messages[i].retrieved && !self.messages[i].deleted)
                    .collect();
                Action::Quit { delete, seen }
            }
            Command::User(_)
            | Command::Pass(_)
            | Command::Apop
            | Command::Auth { .. }
            | Command::Stls => err("Already logged in"),
        }
    }

    /// Reports that message `index` of a [`Action::SendMessage`] could not be opened; returns
    /// the reply to send instead of the message.
    pub fn send_failed(&mut self, index: usize) -> String {
        if let Some(m) = self.messages.get_mut(index) {
            if m.retrieved {
                m.retrieved = false;
                self.retrieved = self.retrieved.saturating_sub(1);
            }
        }
        "-ERR [SYS/TEMP] Message cannot be read now\r\n".into()
    }

    /// Reports the result of the UPDATE state: `not_removed` is how many of the messages to
    /// delete could not be removed. Returns the final reply; then close (RFC 1939 §6).
    pub fn update_result(&mut self, not_removed: usize) -> String {
        let to_delete = self.messages.iter().filter(|m| m.deleted).count();
        self.deleted = to_delete.saturating_sub(not_removed);
        self.state = State::Closed;
        if not_removed > 0 {
            "-ERR [SYS/TEMP] Some deleted messages not removed\r\n".into()
        } else {
            let left = self.messages.len() - to_delete;
            format!("+OK Bye ({left} messages left)\r\n")
        }
    }
}
