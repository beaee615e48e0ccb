//! The SMTP server session state machine (RFC 5321 §4.1, §4.3.2), without I/O.
//!
//! The network loop hands it one command line at a time (with its CRLF) and performs the
//! [`Action`] it gets back: write a reply, read a DATA section or a BDAT chunk, commit a
//! message to the queue, or close. Recipient checks are asked of a [`Policy`] (check, then
//! proceed): the session never touches the directory or the queue itself. It owns the rules
//! of the protocol: command order, limits on recipients and size, ESMTP parameters, and the
//! reply code of every refusal.
//!
//! Not here: reading bytes, timeouts, TLS, AUTH (later issues), or writing the message.

use std::sync::Arc;

use smtp_proto::{Error as ParseError, Request};

use super::address::{self, AddressProblem};
use super::data::DataEnd;
use super::received::{received_header, Trace};
use super::reply::Reply;
use super::types::{
    Action, CommitError, Envelope, Peer, Policy, RcptVerdict, SessionConfig, TlsInfo,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Hello {
    None,
    Helo,
    Ehlo,
}

#[derive(Debug, Default)]
pub(super) struct Transaction {
    pub(super) sender: String,
    smtputf8: bool,
    recipients: Vec<String>,
    /// RFC 6409 §8.3, §8.2: headers the submission server adds when missing.
    pub(super) add_date: bool,
    pub(super) add_message_id: bool,
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
pub(super) enum Sasl {
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
    pub(super) config: Arc<SessionConfig>,
    peer: Peer,
    hello: Hello,
    helo_name: String,
    pub(super) tx: Option<Transaction>,
    pub(super) tls: Option<TlsInfo>,
    /// The account that authenticated.
    pub(super) user: Option<String>,
    pub(super) sasl: Option<Sasl>,
    /// A BDAT chunk is being read; its verdict waits for [`Session::chunk_end`].
    pending_chunk: Option<(u64, bool)>,
}

pub(super) fn reply(code: u16, text: impl Into<String>) -> Action {
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
        }
    }

    /// The TLS handshake finished (STARTTLS, or before the greeting on port 465). RFC 3207
    /// §4.2: everything learnt before is forgotten; the client starts again with EHLO.
    pub fn tls_started(&mut self, info: TlsInfo) {
        self.tls = Some(info);
        self.hello = Hello::None;
        self.helo_name.clear();
        self.tx = None;
        self.user = None;
        self.sasl = None;
        self.pending_chunk = None;
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

    /// The 220 greeting (RFC 5321 §4.2).
    pub fn greeting(&self) -> Reply {
        Reply::new(220, format!("{} ESMTP Mailroom", self.config.hostname))
    }

    /// The reply for a command line longer than the limit (RFC 5321 §4.5.3.1.4). An AUTH
    /// response that is too long ends the exchange: the client reads the 500 as AUTH's final
    /// reply, so its next line is a command, not another response.
    pub fn line_too_long(&mut self) -> Action {
        self.sasl = None;
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
        let request = match Request::parse(&mut iter) {
            Ok(r) => r,
            Err(e) => return self.parse_error(e),
        };
        match request {
            Request::Ehlo { host } => self.hello(Hello::Ehlo, &host),
            Request::Helo { host } => self.hello(Hello::Helo, &host),
            // smtp-proto 0.2 wraps a SIZE value past usize::MAX round to a small number;
            // such a declaration is simply too big.
            Request::Mail { .. } if declared_size_overflows(line) => {
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

    fn hello(&mut self, kind: Hello, host: &str) -> Action {
        // RFC 5321 §4.1.4: EHLO/HELO resets any transaction.
        self.tx = None;
        self.hello = kind;
        self.helo_name = host.to_string();
        match kind {
            Hello::Ehlo => {
                let mut lines = vec![
                    self.config.hostname.clone(),
                    "PIPELINING".into(),
                    format!("SIZE {}", self.config.max_message_size),
                    "8BITMIME".into(),
                    "ENHANCEDSTATUSCODES".into(),
                    "SMTPUTF8".into(),
                    "CHUNKING".into(),
                ];
                if self.starttls_offered() {
                    lines.push("STARTTLS".into());
                }
                if self.auth_offered() {
                    lines.push("AUTH PLAIN LOGIN".into());
                }
                Action::Reply(Reply::multi(250, lines))
            }
            _ => reply(250, self.config.hostname.clone()),
        }
    }

    fn mail(
        &mut self,
        from: smtp_proto::MailFrom<std::borrow::Cow<'_, str>>,
        policy: &dyn Policy,
    ) -> Action {
        if self.hello == Hello::None {
            return reply(503, "5.5.1 Error: send HELO/EHLO first");
        }
        if self.tx.is_some() {
            return reply(503, "5.5.1 Error: nested MAIL command");
        }
        if self.config.service.is_submission() && self.user.is_none() {
            // RFC 4954 §6 / RFC 6409 §4.3: submission needs authentication first.
            return reply(530, "5.7.0 Authentication required");
        }
        let allowed =
            smtp_proto::MAIL_BODY_7BIT | smtp_proto::MAIL_BODY_8BITMIME | smtp_proto::MAIL_SMTPUTF8;
        let has_params = from.flags != 0 || from.size != 0;
        let unadvertised = from.flags & !allowed != 0
            || from.trans_id.is_some()
            || from.env_id.is_some()
            || from.solicit.is_some()
            || from.mtrk.is_some()
            || from.auth.is_some()
            || from.by != 0
            || from.hold_for != 0
            || from.hold_until != 0
            || from.mt_priority != 0;
        // RFC 5321 §4.1.1.11: parameters only for extensions that EHLO advertised.
        if unadvertised || (has_params && self.hello == Hello::Helo) {
            return reply(555, "5.5.4 Unsupported MAIL parameter");
        }
        // RFC 1870 §6.1: a declared size over the limit is refused at MAIL.
        if from.size as u64 > self.config.max_message_size {
            return reply(552, "5.3.4 Message size exceeds fixed maximum message size");
        }
        let smtputf8 = from.flags & smtp_proto::MAIL_SMTPUTF8 != 0;
        let sender = from.address.to_string();
        if !sender.is_empty() {
            if let Err(p) = address::check(&sender) {
                return address_refusal(p, "5.1.7", "sender");
            }
            if !sender.is_ascii() && !smtputf8 {
                // RFC 6531 §3.4: non-ASCII addresses need SMTPUTF8.
                return reply(
                    553,
                    "5.6.7 Non-ASCII address requires the SMTPUTF8 parameter",
                );
            }
        }
        if let Some(user) = &self.user {
            // RFC 6409 §8.1 allows the submission server to enforce the sender: only an
            // address the account owns (the null sender is never one).
            if sender.is_empty() || !policy.may_send_as(user, &sender) {
                return reply(
                    553,
                    format!("5.7.1 <{sender}>: Sender address rejected: not owned by user {user}"),
                );
            }
        }
        self.tx = Some(Transaction {
            sender,
            smtputf8,
            ..Transaction::default()
        });
        reply(250, "2.1.0 Ok")
    }

    fn rcpt(
        &mut self,
        to: smtp_proto::RcptTo<std::borrow::Cow<'_, str>>,
        policy: &dyn Policy,
    ) -> Action {
        let max = self.config.max_recipients;
        let relay_allowed = self.peer.trusted || self.user.is_some();
        let Some(tx) = self.tx.as_mut() else {
            return reply(503, "5.5.1 Error: need MAIL command");
        };
        if tx.chunking {
            return reply(503, "5.5.1 Error: RCPT during BDAT transfer");
        }
        // DSN (RFC 3461) parameters are not advertised.
        if to.flags != 0 || to.orcpt.is_some() || to.rrvs != 0 {
            return reply(555, "5.5.4 Unsupported RCPT parameter");
        }
        let addr = to.address.to_string();
        if !addr.is_empty() {
            if let Err(p) = address::check(&addr) {
                return address_refusal(p, "5.1.3", "recipient");
            }
            if !addr.is_ascii() && !tx.smtputf8 {
                return reply(
                    553,
                    "5.6.7 Non-ASCII address requires the SMTPUTF8 parameter",
                );
            }
        }
        if tx.recipients.len() >= max {
            // RFC 5321 §4.5.3.1.10: 452 for too many recipients.
            return reply(452, "4.5.3 Error: too many recipients");
        }
        let shown = if addr.is_empty() { "postmaster" } else { &addr };
        match policy.check_rcpt(&addr, &tx.sender, relay_allowed) {
            RcptVerdict::Accept(canonical) => {
                if !tx
                    .recipients
                    .iter()
                    .any(|r| r.eq_ignore_ascii_case(&canonical))
                {
                    tx.recipients.push(canonical);
                }
                reply(250, "2.1.5 Ok")
            }
            RcptVerdict::UnknownUser => reply(
                550,
                format!("5.1.1 <{shown}>: Recipient address rejected: User unknown"),
            ),
            RcptVerdict::RelayDenied => reply(554, format!("5.7.1 <{shown}>: Relay access denied")),
            RcptVerdict::Loop => reply(
                550,
                format!("5.4.6 <{shown}>: Recipient address rejected: alias loop"),
            ),
            RcptVerdict::TempFail => reply(
                451,
                format!("4.3.0 <{shown}>: Temporary lookup failure, try again later"),
            ),
        }
    }

    fn data(&mut self) -> Action {
        let Some(tx) = self.tx.as_ref() else {
            return reply(503, "5.5.1 Error: need MAIL command");
        };
        if tx.chunking {
            // RFC 3030 §2: DATA may not follow BDAT in one transaction.
            return reply(503, "5.5.1 Error: DATA during BDAT transfer");
        }
        if tx.recipients.is_empty() {
            return reply(554, "5.5.1 Error: no valid recipients");
        }
        Action::ReadData {
            reply: Reply::new(354, "End data with <CR><LF>.<CR><LF>"),
            max_size: self.config.max_message_size,
        }
    }

    /// After the DATA section ended: commit or refuse.
    pub fn data_end(
        &mut self,
        end: DataEnd,
        size: u64,
        message: &[u8],
        policy: &dyn Policy,
    ) -> Action {
        match end {
            DataEnd::Complete => self.finish_message(size, message, policy),
            DataEnd::TooBig => {
                self.tx = None;
                reply(552, "5.3.4 Message size exceeds fixed maximum message size")
            }
            DataEnd::BareLineEnding => {
                self.tx = None;
                // RFC 5321 §2.3.8: bare CR and LF are not allowed; refusing the whole
                // message closes the smuggling hole (CVE-2023-51764).
                reply(
                    550,
                    "5.6.11 Message refused: bare CR or LF in data; lines must end with CRLF",
                )
            }
        }
    }

    fn bdat(&mut self, size: u64, last: bool) -> Action {
        // The chunk bytes follow the command whatever we think of it (RFC 3030 §2): they must
        // be read and, if refused, thrown away.
        self.pending_chunk = Some((size, last));
        let error = match self.tx.as_ref() {
            None => Some(Reply::new(503, "5.5.1 Error: need MAIL command")),
            Some(tx) if tx.recipients.is_empty() => {
                Some(Reply::new(554, "5.5.1 Error: no valid recipients"))
            }
            Some(tx) if tx.chunk_error.is_some() => tx.chunk_error.clone(),
            Some(tx) if tx.chunk_size.saturating_add(size) > self.config.max_message_size => Some(
                Reply::new(552, "5.3.4 Message size exceeds fixed maximum message size"),
            ),
            Some(_) => None,
        };
        if let Some(tx) = self.tx.as_mut() {
            tx.chunking = true;
            if error.is_some() && tx.chunk_error.is_none() {
                tx.chunk_error = error.clone();
            }
        }
        Action::ReadChunk {
            size,
            keep: error.is_none(),
        }
    }

    /// Whether the BDAT chunk being read is the LAST one.
    pub fn pending_chunk_is_last(&self) -> bool {
        self.pending_chunk.is_some_and(|(_, last)| last)
    }

    /// The connection found a bare CR or LF in this transaction's BDAT data: the message is
    /// refused like DATA's (`550 5.6.11`), this chunk and every later one of the transaction.
    pub fn refuse_bare_line_ending(&mut self) {
        if let Some(tx) = self.tx.as_mut() {
            if tx.chunk_error.is_none() {
                tx.chunk_error = Some(Reply::new(
                    550,
                    "5.6.11 Message refused: bare CR or LF in data; lines must end with CRLF",
                ));
            }
        }
    }

    /// After a BDAT chunk has been read; `message` holds every chunk kept so far.
    pub fn chunk_end(&mut self, message: &[u8], policy: &dyn Policy) -> Action {
        let Some((size, last)) = self.pending_chunk.take() else {
            return reply(503, "5.5.1 Error: no BDAT chunk pending");
        };
        let Some(tx) = self.tx.as_mut() else {
            return reply(503, "5.5.1 Error: need MAIL command");
        };
        if let Some(err) = tx.chunk_error.clone() {
            if last {
                self.tx = None;
            }
            return Action::Reply(err);
        }
        tx.chunk_size += size;
        if last {
            let total = tx.chunk_size;
            return self.finish_message(total, message, policy);
        }
        reply(250, format!("2.0.0 {size} octets received"))
    }

    /// Header limits, submission checks on the complete message, then commit.
    fn finish_message(&mut self, size: u64, message: &[u8], policy: &dyn Policy) -> Action {
        let checked = self.tx.as_ref().is_some_and(|tx| tx.checked);
        if !checked {
            self.check_headers(message, policy);
        }
        if let Some(refusal) = self.tx.as_mut().and_then(|tx| tx.refusal.take()) {
            self.tx = None;
            return Action::Reply(refusal);
        }
        self.commit(size)
    }

    /// Checks the header block at the start of `message` (the whole message, or its first
    /// part when the body is streamed to disk): size and hop count limits, and on submission
    /// the `From:` ownership and the missing `Date:`/`Message-ID:`. A refusal is kept for the
    /// end of the message ([`Session::refused`]).
    pub fn check_headers(&mut self, message: &[u8], policy: &dyn Policy) {
        let limits = super::headers::check(
            message,
            self.config.max_header_size,
            self.config.max_received_headers,
        );
        let user = self.user.clone();
        let submission = self.config.service.is_submission();
        let Some(tx) = self.tx.as_mut() else {
            return;
        };
        tx.checked = true;
        match limits {
            Ok(()) => {}
            Err(super::headers::HeaderProblem::TooLarge) => {
                tx.refusal = Some(Reply::new(552, "5.3.4 Message header size exceeds limit"));
                return;
            }
            Err(super::headers::HeaderProblem::TooManyHops) => {
                // RFC 5321 §6.3: a loop; RFC 3463 5.4.6 "routing loop detected".
                tx.refusal = Some(Reply::new(
                    554,
                    "5.4.6 Too many hops (Received: headers): mail loop",
                ));
                return;
            }
        }
        if let (Some(user), true) = (user, submission) {
            match super::submission::check(message, &user, policy) {
                Ok(missing) => {
                    tx.add_date = missing.date;
                    tx.add_message_id = missing.message_id;
                }
                Err(refusal) => tx.refusal = Some(refusal),
            }
        }
    }

    /// The message in progress will be refused at its end (its bytes need not be kept).
    pub fn refused(&self) -> bool {
        self.tx.as_ref().is_some_and(|tx| tx.refusal.is_some())
    }

    /// Sender and recipients of the transaction in progress.
    pub fn envelope(&self) -> Option<(&str, &[String])> {
        self.tx
            .as_ref()
            .map(|tx| (tx.sender.as_str(), tx.recipients.as_slice()))
    }

    fn commit(&mut self, size: u64) -> Action {
        match self.tx.as_ref() {
            Some(tx) => Action::Commit(Envelope {
                sender: tx.sender.clone(),
                recipients: tx.recipients.clone(),
                size,
            }),
            None => reply(503, "5.5.1 Error: no transaction"),
        }
    }

    /// The headers to prepend to the message being committed under `id`: `Received:`, and on
    /// submission `Date:` and `Message-ID:` when the message has none (RFC 6409 §8).
    pub fn trace_headers(&self, id: &str, unix_secs: i64) -> String {
        let (utf8, single) = match &self.tx {
            Some(tx) => (
                tx.smtputf8,
                (tx.recipients.len() == 1).then(|| tx.recipients[0].as_str()),
            ),
            None => (false, None),
        };
        // RFC 3848 / RFC 6531 with-protocol types: S for TLS, A for AUTH.
        let mut protocol = match (self.hello, utf8) {
            (_, true) => "UTF8SMTP",
            (Hello::Ehlo, false) => "ESMTP",
            _ => "SMTP",
        }
        .to_string();
        if self.tls.is_some() {
            protocol.push('S');
        }
        if self.user.is_some() {
            protocol.push('A');
        }
        let mut headers = received_header(&Trace {
            helo: &self.helo_name,
            client_ip: self.peer.ip,
            hostname: &self.config.hostname,
            protocol: &protocol,
            id,
            for_rcpt: single,
            unix_secs,
            tls: self.tls.as_ref(),
            authenticated: self.user.is_some(),
        });
        if let Some(tx) = &self.tx {
            if tx.add_date {
                headers.push_str(&format!(
                    "Date: {}\r\n",
                    super::received::rfc5322_date(unix_secs)
                ));
            }
            if tx.add_message_id {
                headers.push_str(&format!("Message-ID: <{id}@{}>\r\n", self.config.hostname));
            }
        }
        headers
    }

    /// After the queue answered: `Ok(id)` once the message is durable.
    pub fn committed(&mut self, result: Result<&str, CommitError>) -> Reply {
        self.tx = None;
        match result {
            Ok(id) => Reply::new(250, format!("2.0.0 Ok: queued as {id}")),
            Err(CommitError::NoSpace) => {
                Reply::new(452, "4.3.1 Insufficient system storage, try again later")
            }
            Err(CommitError::Failed) => {
                Reply::new(451, "4.3.0 Local error in processing, try again later")
            }
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
    pub(super) fn said_hello(&self) -> bool {
        self.hello != Hello::None
    }

    /// True between MAIL and the end of the message (or RSET).
    pub fn in_transaction(&self) -> bool {
        self.tx.is_some()
    }

    /// The EHLO/HELO name the client gave (for logs).
    pub fn helo_name(&self) -> &str {
        &self.helo_name
    }
}

/// True when a MAIL line declares `SIZE=` with more digits than any real size has.
fn declared_size_overflows(line: &[u8]) -> bool {
    line.windows(5)
        .enumerate()
        .filter(|(_, w)| w.eq_ignore_ascii_case(b"SIZE="))
        .any(|(i, _)| {
            line[i + 5..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count()
                > 19
        })
}

fn address_refusal(p: AddressProblem, status: &str, what: &str) -> Action {
    let text = match p {
        AddressProblem::Syntax => format!("{status} Bad {what} address syntax"),
        AddressProblem::LocalTooLong => format!("{status} Local part of {what} address too long"),
        AddressProblem::DomainTooLong => format!("{status} Domain of {what} address too long"),
        AddressProblem::PathTooLong => format!("{status} The {what} path is too long"),
        AddressProblem::BadCharacter => format!("{status} Bad character in {what} address"),
        AddressProblem::BadDomain => format!("{status} Bad domain in {what} address"),
    };
    // RFC 5321 §4.5.3.1: 501 for a path that breaks the syntax or size rules.
    reply(501, text)
}
