//! The message (RFC 5321 §4.1.1.4 DATA, RFC 3030 BDAT): starting a DATA section or a chunk,
//! the verdict at its end, the header checks (size, hop count, and on submission RFC 6409's
//! `From:` ownership), the trace headers prepended to it, and the reply once the queue has it.
//!
//! Not here: decoding the DATA section or cutting chunks out of the byte stream (`data`,
//! `conn`), writing the message anywhere (the network loop commits it).

use super::{reply, Hello, Session};
use crate::smtp::data::DataEnd;
use crate::smtp::received::{received_header, rfc5322_date, Trace};
use crate::smtp::rejection::Stage;
use crate::smtp::reply::Reply;
use crate::smtp::types::{Action, CommitError, Envelope, Policy};

impl Session {
    pub(super) fn data(&mut self) -> Action {
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
        self.begin_attempt(Stage::EndOfMessage);
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

    pub(super) fn bdat(&mut self, size: u64, last: bool) -> Action {
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
        if last {
            self.begin_attempt(Stage::EndOfMessage);
        }
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
        let limits = crate::smtp::headers::check(
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
        tx.message_id = crate::smtp::headers::message_id(message);
        match limits {
            Ok(()) => {}
            Err(crate::smtp::headers::HeaderProblem::TooLarge) => {
                tx.refusal = Some(Reply::new(552, "5.3.4 Message header size exceeds limit"));
                return;
            }
            Err(crate::smtp::headers::HeaderProblem::TooManyHops) => {
                // RFC 5321 §6.3: a loop; RFC 3463 5.4.6 "routing loop detected".
                tx.refusal = Some(Reply::new(
                    554,
                    "5.4.6 Too many hops (Received: headers): mail loop",
                ));
                return;
            }
        }
        if let (Some(user), true) = (user, submission) {
            match crate::smtp::submission::check(message, &user, policy) {
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

    fn commit(&mut self, size: u64) -> Action {
        match self.tx.as_ref() {
            Some(tx) => Action::Commit(Envelope {
                sender: tx.sender.clone(),
                recipients: tx.recipients.clone(),
                size,
                require_tls: tx.require_tls,
            }),
            None => reply(503, "5.5.1 Error: no transaction"),
        }
    }

    /// The `with` protocol of `Received:` (RFC 3848 / RFC 6531: `ESMTP`, `UTF8SMTP`, S for
    /// TLS, A for AUTH), also the `proto=` of the accepted log line.
    pub fn protocol(&self) -> String {
        let utf8 = self.tx.as_ref().is_some_and(|tx| tx.smtputf8);
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
        protocol
    }

    /// The headers to prepend to the message being committed under `id`: `Received:`, and on
    /// submission `Date:` and `Message-ID:` when the message has none (RFC 6409 §8).
    pub fn trace_headers(&self, id: &str, unix_secs: i64) -> String {
        let single = match &self.tx {
            Some(tx) => (tx.recipients.len() == 1).then(|| tx.recipients[0].as_str()),
            None => None,
        };
        let protocol = self.protocol();
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
                headers.push_str(&format!("Date: {}\r\n", rfc5322_date(unix_secs)));
            }
            if tx.add_message_id {
                headers.push_str(&format!("Message-ID: <{id}@{}>\r\n", self.config.hostname));
            }
        }
        headers
    }

    /// The Message-ID of the message being committed under `id`: its own, or the one
    /// [`Session::trace_headers`] adds (for the log line).
    pub fn message_id(&self, id: &str) -> Option<String> {
        let tx = self.tx.as_ref()?;
        if tx.add_message_id {
            return Some(format!("<{id}@{}>", self.config.hostname));
        }
        tx.message_id.clone()
    }

    /// After the queue answered: `Ok(id)` once the message is durable.
    pub fn committed(&mut self, result: Result<&str, CommitError>) -> Reply {
        self.begin_attempt(Stage::EndOfMessage);
        self.tx = None;
        match result {
            Ok(id) => Reply::new(250, format!("2.0.0 Ok: queued as {id}")),
            Err(CommitError::NoSpace) => {
                Reply::new(452, "4.3.1 Insufficient system storage, try again later")
            }
            Err(CommitError::Failed) => {
                Reply::new(451, "4.3.0 Local error in processing, try again later")
            }
            Err(CommitError::Refused(reply)) => reply,
        }
    }
}
