//! The SMTP server session state machine (RFC 5321 §4.1, §4.3.2), without I/O.
//!
//! The network loop hands it one command line at a time (with its CRLF) and performs the
//! [`Action`] it gets back: write a reply, read a DATA section or a BDAT chunk, commit a
//! message to the queue, or close. Recipient checks are asked of a [`Policy`] (check, then
//! proceed): the session never touches the directory or the queue itself. It owns the rules
//! of the protocol: command order, limits on recipients and size, ESMTP parameters, and the
//! reply code of every refusal.
//!
//! This file holds the session's state and the dispatch of one command line to its handler;
//! the handlers live by phase, one `impl Session` block each:
//! - `hello`: the greeting, EHLO and HELO;
//! - `envelope`: MAIL and RCPT;
//! - `message`: DATA and BDAT, the end of a message, its trace headers and the commit;
//! - `tls_auth`: STARTTLS and AUTH.
//!
//! Not here: reading bytes and framing (`conn`), timeouts, the TLS handshake, password checks,
//! or writing the message.

mod envelope;
mod hello;
mod message;
mod tls_auth;

use std::sync::Arc;

use smtp_proto::{Error as ParseError, Request};

use super::address;
use super::rejection::{Attempt, Rejection, Stage};
use super::reply::Reply;
use super::types::{Action, Peer, Policy, SessionConfig, TlsInfo};

/// Which greeting the client gave since the connection (or the last TLS handshake) began.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hello {
    None,
    Helo,
    Ehlo,
}

/// One mail transaction: from MAIL to the end of the message, RSET, EHLO/HELO or STARTTLS.
#[derive(Debug, Default)]
struct Transaction {
    sender: String,
    /// The size MAIL declared (RFC 1870 `SIZE=`), 0 when none: a hint for the buffer only.
    declared_size: u64,
    smtputf8: bool,
    /// RFC 8689 REQUIRETLS.
    require_tls: bool,
    recipients: Vec<String>,
    /// RFC 6409 §8.3, §8.2: headers the submission server adds when missing.
    add_date: bool,
    add_message_id: bool,
    /// The message's own `Message-ID:` (for the log).
    message_id: Option<String>,
    /// The header block was checked (early, when the body is streamed to disk).
    checked: bool,
    /// The reply the message gets at its end, decided early.
    refusal: Option<Reply>,
    /// BDAT chunks received so far (RFC 3030).
    chunking: bool,
    chunk_size: u64,
    chunk_error: Option<Reply>,
}

/// An AUTH exchange in progress (RFC 4954).
#[derive(Debug)]
enum Sasl {
    /// PLAIN without initial response: waiting for the client's response.
    Plain,
    /// LOGIN: waiting for the user name.
    LoginUser,
    /// LOGIN: waiting for the password of this user.
    LoginPassword(String),
    /// Credentials handed to the loop; waiting for [`Session::auth_result`].
    Checking(String),
}

/// One SMTP server session.
#[derive(Debug)]
pub struct Session {
    config: Arc<SessionConfig>,
    peer: Peer,
    hello: Hello,
    helo_name: String,
    tx: Option<Transaction>,
    tls: Option<TlsInfo>,
    /// The account that authenticated.
    user: Option<String>,
    sasl: Option<Sasl>,
    /// A BDAT chunk is being read; its verdict waits for [`Session::chunk_end`].
    pending_chunk: Option<(u64, bool)>,
    /// The transaction step being answered, for [`Session::rejection`].
    attempt: Option<Attempt>,
}

fn reply(code: u16, text: impl Into<String>) -> Action {
    Action::Reply(Reply::new(code, text))
}

impl Session {
    /// A new session for a connection from `peer`.
    pub fn new(config: Arc<SessionConfig>, peer: Peer) -> Session {
        Session {
            config,
            peer,
            hello: Hello::None,
            helo_name: String::new(),
            tx: None,
            tls: None,
            user: None,
            sasl: None,
            pending_chunk: None,
            attempt: None,
        }
    }

    /// Largest header block accepted.
    pub fn max_header_size(&self) -> usize {
        self.config.max_header_size
    }

    /// Refused commands allowed before the session is closed.
    pub fn max_errors(&self) -> u32 {
        self.config.max_errors
    }

    /// The TLS parameters, if TLS is active.
    /// The transaction in progress asked for REQUIRETLS (RFC 8689).
    pub fn require_tls(&self) -> bool {
        self.tx.as_ref().is_some_and(|tx| tx.require_tls)
    }

    pub fn tls(&self) -> Option<&TlsInfo> {
        self.tls.as_ref()
    }

    /// The authenticated account, if any.
    pub fn user(&self) -> Option<&str> {
        self.user.as_deref()
    }

    /// Whether the envelope sender can be trusted to be the real one: the client
    /// authenticated, or it is in a trusted network. (SPF will add to this.)
    pub fn sender_verified(&self) -> bool {
        self.user.is_some() || self.peer.trusted
    }

    /// Longest line accepted now: 512 octets for commands (RFC 5321 §4.5.3.1.4), 12288 for
    /// AUTH responses (RFC 4954 §4).
    pub fn max_line(&self) -> usize {
        if self.sasl.is_some() {
            12_288
        } else {
            512
        }
    }

    /// The reply for a command line longer than the limit (RFC 5321 §4.5.3.1.4). An AUTH
    /// response that is too long ends the exchange: the client reads the 500 as AUTH's final
    /// reply, so its next line is a command, not another response.
    pub fn line_too_long(&mut self) -> Action {
        self.sasl = None;
        self.attempt = None;
        reply(500, "5.5.2 Line too long")
    }

    /// Handles one command line (including its line ending), or an AUTH response line while
    /// an exchange is in progress.
    pub fn command(&mut self, line: &[u8], policy: &dyn Policy) -> Action {
        if self.sasl.is_some() {
            return self.sasl_line(line);
        }
        // A CR anywhere but before the final LF: the parser would silently drop it; refuse.
        let body = line.strip_suffix(b"\n").unwrap_or(line);
        let body = body.strip_suffix(b"\r").unwrap_or(body);
        if body.contains(&b'\r') {
            return reply(501, "5.5.2 Syntax error: bare CR in command line");
        }
        let mut iter = line.iter();
        let request = Request::parse(&mut iter);
        self.note_attempt(line, &request);
        let request = match request {
            Ok(r) => r,
            Err(e) => return self.parse_error(e),
        };
        match request {
            Request::Ehlo { host } => self.hello(Hello::Ehlo, &host),
            Request::Helo { host } => self.hello(Hello::Helo, &host),
            // smtp-proto 0.2 wraps a SIZE value past usize::MAX round to a small number;
            // such a declaration is simply too big.
            Request::Mail { .. } if envelope::declared_size_overflows(line) => {
                reply(552, "5.3.4 Message size exceeds fixed maximum message size")
            }
            Request::Mail { from } => self.mail(from, policy),
            Request::Rcpt { to } => self.rcpt(to, policy),
            Request::Data => self.data(),
            Request::Bdat {
                chunk_size,
                is_last,
            } => self.bdat(chunk_size as u64, is_last),
            Request::Rset => {
                self.tx = None;
                reply(250, "2.0.0 Ok")
            }
            Request::Noop { .. } => reply(250, "2.0.0 Ok"),
            Request::Quit => Action::Close(Reply::new(221, "2.0.0 Bye")),
            // RFC 5321 §3.5.3: 252 when we will not verify but will accept and try.
            Request::Vrfy { .. } => reply(
                252,
                "2.5.2 Cannot VRFY user, but will accept message and attempt delivery",
            ),
            Request::Expn { .. } => reply(502, "5.5.1 EXPN not available"),
            Request::Help { .. } => Action::Reply(Reply::multi(
                214,
                vec![
                    "2.0.0 Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY HELP".into(),
                    "2.0.0 See RFC 5321".into(),
                ],
            )),
            Request::StartTls => self.starttls(),
            Request::Auth {
                mechanism,
                initial_response,
            } => self.auth(mechanism, &initial_response),
            Request::Lhlo { .. }
            | Request::Etrn { .. }
            | Request::Atrn { .. }
            | Request::Burl { .. } => reply(502, "5.5.1 Command not implemented"),
        }
    }

    /// Notes which transaction step this command line is (by its verb, so a MAIL with a
    /// syntax error is a refused MAIL too) and the envelope so far.
    fn note_attempt(
        &mut self,
        line: &[u8],
        request: &Result<Request<std::borrow::Cow<'_, str>>, ParseError>,
    ) {
        let verb = line.get(..4).map(|v| v.to_ascii_uppercase());
        let stage = match verb.as_deref() {
            Some(b"MAIL") => Stage::Mail,
            Some(b"RCPT") => Stage::Rcpt,
            Some(b"DATA") => Stage::Data,
            Some(b"BDAT") => Stage::Bdat,
            Some(b"AUTH") => Stage::Auth,
            _ => {
                self.attempt = None;
                return;
            }
        };
        self.begin_attempt(stage);
        if let Some(attempt) = self.attempt.as_mut() {
            match request {
                Ok(Request::Mail { from }) => attempt.from = Some(from.address.to_string()),
                Ok(Request::Rcpt { to }) => attempt.to = Some(to.address.to_string()),
                _ => {}
            }
        }
    }

    /// A transaction step begins: remember it with the envelope as it is now.
    fn begin_attempt(&mut self, stage: Stage) {
        let (from, to, nrcpt) = match &self.tx {
            Some(tx) => (
                Some(tx.sender.clone()),
                tx.recipients.first().cloned(),
                tx.recipients.len(),
            ),
            None => (None, None, 0),
        };
        self.attempt = Some(Attempt {
            stage,
            from,
            to,
            nrcpt,
            user: None,
        });
    }

    /// What a refusal written now refused: `None` when `reply` is positive or answers no
    /// transaction step (EHLO, STARTTLS, an unknown command...).
    pub fn rejection(&self, reply: &Reply) -> Option<Rejection> {
        if reply.is_positive() {
            return None;
        }
        let attempt = self.attempt.clone()?;
        Some(Rejection {
            attempt,
            reply: reply.clone(),
            helo: self.helo_name.clone(),
            proto: match self.hello {
                Hello::None => "-",
                Hello::Helo => "SMTP",
                Hello::Ehlo => "ESMTP",
            },
        })
    }

    fn parse_error(&self, e: ParseError) -> Action {
        match e {
            ParseError::UnknownCommand => reply(500, "5.5.1 Command unrecognized"),
            ParseError::InvalidSenderAddress => reply(501, "5.1.7 Bad sender address syntax"),
            ParseError::InvalidRecipientAddress => reply(501, "5.1.3 Bad recipient address syntax"),
            ParseError::SyntaxError { syntax } => reply(501, format!("5.5.4 Syntax: {syntax}")),
            ParseError::InvalidParameter { param } => {
                reply(501, format!("5.5.4 Invalid parameter value for {param}"))
            }
            // RFC 5321 §4.1.1.11 / RFC 1869: an unknown ESMTP parameter.
            ParseError::UnsupportedParameter { param } => reply(
                555,
                format!("5.5.4 Unsupported parameter {}", address::escape(&param)),
            ),
            ParseError::NeedsMoreData { .. }
            | ParseError::ResponseTooLong
            | ParseError::InvalidResponse { .. } => reply(500, "5.5.2 Syntax error"),
        }
    }

    /// The reply when the server shuts down or a session limit is reached (RFC 5321 §3.8).
    pub fn shutting_down(&self) -> Reply {
        Reply::new(
            421,
            format!(
                "4.3.2 {} Service shutting down, closing connection",
                self.config.hostname
            ),
        )
    }

    /// The reply after an idle timeout (RFC 5321 §4.5.3.2).
    pub fn timed_out(&self) -> Reply {
        Reply::new(
            421,
            format!("4.4.2 {} Error: timeout exceeded", self.config.hostname),
        )
    }

    /// EHLO or HELO was given (since the last TLS handshake).
    pub fn said_hello(&self) -> bool {
        self.hello != Hello::None
    }

    /// The size the transaction's MAIL declared with `SIZE=` (0: none or no transaction).
    /// Only a hint: the client may send more or less.
    pub fn declared_size(&self) -> u64 {
        self.tx.as_ref().map_or(0, |tx| tx.declared_size)
    }

    /// True between MAIL and the end of the message (or RSET).
    pub fn in_transaction(&self) -> bool {
        self.tx.is_some()
    }

    /// Who is connected.
    pub fn peer(&self) -> &Peer {
        &self.peer
    }

    /// The EHLO/HELO name the client gave (for logs).
    pub fn helo_name(&self) -> &str {
        &self.helo_name
    }
}
