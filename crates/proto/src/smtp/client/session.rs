//! One SMTP client connection as a sans-I/O state machine: what the relay says to a remote MTA
//! and what each reply means, from the greeting to QUIT.
//!
//! Setup: the `220` greeting (anything else: give up on this host), EHLO and HELO when EHLO
//! gets a 5xx (RFC 5321 §3.2), STARTTLS when offered and wanted (RFC 3207; bytes behind its
//! `220` are an injection attempt and end the connection, §6), EHLO again over TLS, and AUTH
//! PLAIN when credentials are given (RFC 4954; never without TLS). Then transactions
//! ([`super::transaction`]), RSET before reusing an idle connection, and QUIT.
//!
//! The driver feeds what it reads to [`Session::received`], reports failures and finished
//! writes, and does what [`Session::poll`] returns ([`Action`]). The session owns the reply
//! parser, so a reply split over reads, several replies in one read, or a malformed reply are
//! all handled here. It does no I/O, keeps no clock (each wait names its [`Timer`]), and does
//! not choose hosts or retry: a [`TxEnd::TryNext`] says so and the driver's caller acts.

use std::collections::VecDeque;

use super::action::{Action, Timer, TxEnd};
use super::transaction::Transaction;
use super::{auth_plain, ehlo, helo, reply_text, Capabilities, MessageTraits, ReplyParser};
use crate::smtp::Reply;

/// How to set up a session.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Hello {
    /// Our EHLO name.
    pub name: String,
    /// Upgrade with STARTTLS when the server offers it.
    pub starttls: bool,
    /// STARTTLS is mandatory: a server that does not offer it, or refuses it, fails the
    /// session (a verified smarthost).
    pub require_tls: bool,
    /// User and password for AUTH PLAIN; TLS is then required unless `plaintext_auth`.
    pub auth: Option<(String, String)>,
    /// AUTH may go out without TLS (only when the admin chose `smarthost_tls = "none"`).
    pub plaintext_auth: bool,
}

impl std::fmt::Debug for Hello {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The password never reaches a log.
        f.debug_struct("Hello")
            .field("name", &self.name)
            .field("starttls", &self.starttls)
            .field("require_tls", &self.require_tls)
            .field("auth_user", &self.auth.as_ref().map(|(user, _)| user))
            .field("plaintext_auth", &self.plaintext_auth)
            .finish()
    }
}

#[derive(Debug)]
enum State {
    /// Waiting for the `220` greeting.
    Greeting,
    Ehlo,
    Helo,
    /// Waiting for the reply to STARTTLS.
    StartTls,
    /// The driver runs the TLS handshake.
    Handshake,
    Auth,
    /// Set up, no transaction running.
    Ready,
    Transaction(Box<Transaction>),
    /// Waiting for the reply to RSET.
    Reset,
    /// A transaction ended in a way that leaves the connection unusable: QUIT or drop it.
    Spent,
    /// Waiting for the reply to QUIT.
    Quit,
    Failed(String),
    Closed,
}

/// The client side of one connection.
#[derive(Debug)]
pub struct Session {
    hello: Hello,
    state: State,
    parser: ReplyParser,
    caps: Capabilities,
    tls: bool,
    /// Writes and other one-shot actions, in order.
    out: VecDeque<Action>,
    /// Replies taken from the parser so far.
    replies: u64,
    /// Transactions begun (those that passed the pre-flight checks).
    transactions: usize,
}

impl Session {
    /// A session on a fresh connection: it waits for the greeting.
    pub fn new(hello: Hello) -> Session {
        Session {
            hello,
            state: State::Greeting,
            parser: ReplyParser::new(),
            caps: Capabilities::default(),
            tls: false,
            out: VecDeque::new(),
            replies: 0,
            transactions: 0,
        }
    }

    /// What the server offered in its last EHLO reply (nothing after HELO).
    pub fn caps(&self) -> &Capabilities {
        &self.caps
    }

    /// Whether the connection has been upgraded with STARTTLS.
    pub fn tls(&self) -> bool {
        self.tls
    }

    /// Replies taken so far: a driver that sees the same count on two `Receive`s in a row is
    /// still waiting for the same reply (its timer runs on).
    pub fn replies(&self) -> u64 {
        self.replies
    }

    /// Transactions begun on this connection.
    pub fn transactions(&self) -> usize {
        self.transactions
    }

    /// Bytes read from the server. Call only after [`poll`](Self::poll) returned
    /// [`Action::Receive`], so the parser's buffer stays bounded.
    pub fn received(&mut self, bytes: &[u8]) {
        self.parser.feed(bytes);
    }

    /// The next thing to do. Replies already received are taken one at a time, each moving
    /// the state on, before more bytes are asked for.
    pub fn poll(&mut self) -> Action {
        loop {
            if let Some(action) = self.pending() {
                return action;
            }
            let Some(timer) = self.awaiting() else {
                return self.standing();
            };
            match self.parser.next_reply() {
                Ok(Some(reply)) => {
                    self.replies += 1;
                    self.on_reply(reply);
                }
                Ok(None) => return Action::Receive(timer),
                Err(e) => self.failed(e.to_string()),
            }
        }
    }

    /// The connection failed: a read or write error, a timeout, the server closing it.
    pub fn failed(&mut self, error: String) {
        match &mut self.state {
            State::Transaction(tx) => tx.failed(error),
            State::Quit | State::Closed => self.state = State::Closed,
            _ => self.state = State::Failed(error),
        }
    }

    /// The TLS handshake asked for by [`Action::StartTls`] succeeded: the session starts over
    /// with EHLO, forgetting what it learned in plaintext (RFC 3207 §4.2).
    pub fn tls_started(&mut self) {
        if let State::Handshake = self.state {
            self.tls = true;
            self.parser = ReplyParser::new();
            self.caps = Capabilities::default();
            self.send(ehlo(&self.hello.name), Timer::Greeting);
            self.state = State::Ehlo;
        }
    }

    /// Starts a transaction (only when [`Action::Ready`]); [`Action::End`] ends it.
    pub fn begin(&mut self, sender: &str, recipients: &[String], traits: &MessageTraits) {
        if !matches!(self.state, State::Ready) {
            self.out.push_back(Action::End(TxEnd::TryNext {
                reason: "the session is not ready for a transaction".into(),
                io: false,
            }));
            return;
        }
        match Transaction::new(&self.caps, sender, recipients, traits) {
            Ok(tx) => {
                self.transactions += 1;
                self.state = State::Transaction(Box::new(tx));
            }
            Err(end) => self.out.push_back(Action::End(end)),
        }
    }

    /// The DATA section asked for by [`Action::SendData`] is written.
    pub fn body_sent(&mut self) {
        if let State::Transaction(tx) = &mut self.state {
            tx.body_sent();
        }
    }

    /// The chunk asked for by [`Action::SendChunk`] is written; `last` if it was the last.
    pub fn chunk_sent(&mut self, last: bool) {
        if let State::Transaction(tx) = &mut self.state {
            tx.chunk_sent(last);
        }
    }

    /// The queued message could not be read while sending it.
    pub fn body_failed(&mut self, reason: String) {
        if let State::Transaction(tx) = &mut self.state {
            tx.body_failed(reason);
        }
    }

    /// RSET before reusing an idle connection: [`Action::Ready`] when the server agrees,
    /// [`Action::Failed`] otherwise.
    pub fn reset(&mut self) {
        if let State::Ready = self.state {
            self.send("RSET\r\n".into(), Timer::Reset);
            self.state = State::Reset;
        } else {
            self.state = State::Failed("RSET: the session is not idle".into());
        }
    }

    /// QUIT: whatever the reply, or none, [`Action::Closed`] follows.
    pub fn quit(&mut self) {
        if matches!(self.state, State::Closed) {
            return;
        }
        self.out.clear();
        self.send("QUIT\r\n".into(), Timer::Quit);
        self.state = State::Quit;
    }

    fn send(&mut self, line: String, timer: Timer) {
        self.out.push_back(Action::Send(line.into_bytes(), timer));
    }

    /// A queued action, or one the running transaction has ready.
    fn pending(&mut self) -> Option<Action> {
        if let Some(action) = self.out.pop_front() {
            return Some(action);
        }
        let State::Transaction(tx) = &mut self.state else {
            return None;
        };
        let action = tx.next_action()?;
        if let Action::End(end) = &action {
            let reusable = matches!(end, TxEnd::Done { reusable: true, .. });
            self.state = if reusable { State::Ready } else { State::Spent };
        }
        Some(action)
    }

    /// The timer of the reply awaited, if one is.
    fn awaiting(&self) -> Option<Timer> {
        match &self.state {
            State::Greeting | State::Ehlo | State::Helo | State::StartTls | State::Auth => {
                Some(Timer::Greeting)
            }
            State::Transaction(tx) => tx.awaiting(),
            State::Reset => Some(Timer::Reset),
            State::Quit => Some(Timer::Quit),
            _ => None,
        }
    }

    /// What to do when nothing is queued and no reply is awaited.
    fn standing(&mut self) -> Action {
        match &self.state {
            State::Handshake => Action::StartTls,
            State::Ready => Action::Ready,
            State::Failed(reason) => Action::Failed(reason.clone()),
            State::Closed => Action::Closed,
            State::Spent => {
                Action::Failed("the connection cannot carry another transaction".into())
            }
            State::Transaction(_) => {
                // Cannot happen: a transaction always awaits a reply, asks for its body, or
                // has ended.
                self.state = State::Spent;
                Action::End(TxEnd::TryNext {
                    reason: "the transaction stalled".into(),
                    io: false,
                })
            }
            // These always await a reply.
            State::Greeting
            | State::Ehlo
            | State::Helo
            | State::StartTls
            | State::Auth
            | State::Reset
            | State::Quit => Action::Failed("no reply awaited".into()),
        }
    }

    fn on_reply(&mut self, reply: Reply) {
        let fail = |what: &str| State::Failed(format!("{what}: {}", reply_text(&reply)));
        match &mut self.state {
            State::Greeting if reply.code == 220 => {
                self.send(ehlo(&self.hello.name), Timer::Greeting);
                self.state = State::Ehlo;
            }
            State::Greeting => self.state = fail("greeting"),
            State::Ehlo if reply.code == 250 => {
                self.caps = Capabilities::from_ehlo(&reply);
                self.hello_done();
            }
            State::Ehlo if reply.code >= 500 => {
                // RFC 5321 §3.2: a server that does not know EHLO gets HELO.
                self.send(helo(&self.hello.name), Timer::Greeting);
                self.state = State::Helo;
            }
            State::Ehlo => self.state = fail("EHLO"),
            State::Helo if reply.code == 250 => {
                self.caps = Capabilities::default();
                self.hello_done();
            }
            State::Helo => self.state = fail("HELO"),
            State::StartTls if reply.code == 220 => {
                self.state = if self.parser.buffered() != 0 {
                    // RFC 3207 §6: bytes sent before the handshake must not count as TLS
                    // data (CVE-2011-0411 class).
                    State::Failed("data after STARTTLS reply (injection attempt)".into())
                } else {
                    State::Handshake
                };
            }
            State::StartTls if self.hello.require_tls => {
                self.state = State::Failed(format!(
                    "STARTTLS refused and TLS is required: {}",
                    reply_text(&reply)
                ));
            }
            State::StartTls => {
                let note = format!("STARTTLS refused: {}", reply_text(&reply));
                self.out.push_back(Action::Note(note));
                self.authenticate();
            }
            State::Auth if reply.code == 235 => self.state = State::Ready,
            State::Auth => self.state = fail("AUTH failed"),
            State::Reset if reply.code == 250 => self.state = State::Ready,
            State::Reset => self.state = fail("RSET"),
            State::Quit => self.state = State::Closed,
            State::Transaction(tx) => tx.on_reply(reply),
            // No reply is awaited in these states, so none is taken.
            State::Handshake | State::Ready | State::Spent | State::Failed(_) | State::Closed => {}
        }
    }

    /// EHLO or HELO succeeded: STARTTLS if wanted and offered, else on to AUTH.
    fn hello_done(&mut self) {
        if !self.tls && self.hello.starttls && self.caps.starttls {
            if self.parser.buffered() != 0 {
                // A reply before STARTTLS was even sent would be taken as its answer: the
                // server (or someone on the path) is talking out of turn.
                self.state =
                    State::Failed("data before STARTTLS was sent (injection attempt)".into());
                return;
            }
            self.send("STARTTLS\r\n".into(), Timer::Greeting);
            self.state = State::StartTls;
        } else if !self.tls && self.hello.require_tls {
            self.state = State::Failed("STARTTLS not offered and TLS is required".into());
        } else {
            self.authenticate();
        }
    }

    /// AUTH PLAIN when credentials are set (only over TLS), else ready.
    fn authenticate(&mut self) {
        let Some((user, password)) = &self.hello.auth else {
            self.state = State::Ready;
            return;
        };
        if !self.tls && !self.hello.plaintext_auth {
            self.state = State::Failed(
                "smarthost does not offer STARTTLS; refusing to send credentials in plaintext"
                    .into(),
            );
        } else if !self.caps.auth.iter().any(|m| m == "PLAIN") {
            self.state = State::Failed("smarthost does not offer AUTH PLAIN".into());
        } else {
            let line = auth_plain(user, password);
            self.send(line, Timer::Greeting);
            self.state = State::Auth;
        }
    }
}
