//! SMTP client side (RFC 5321 §3, §4), sans-I/O: what the relay needs to talk to a remote MTA.
//!
//! - [`ReplyParser`]: bytes in, complete replies out (multi-line replies, one code per reply,
//!   bounded line length and line count, malformed input is an error, never a panic).
//! - [`Capabilities`]: the EHLO keywords we use (RFC 2920, 1870, 6152, 6531, 3207, 4954, 3030,
//!   2034).
//! - [`dot_stuff`]: the DATA body with CRLF-only line ends and doubled leading dots;
//!   [`DotStuffer`] does the same (or line ends only, for BDAT) over a message read in chunks,
//!   and [`TraitsScanner`] finds its [`MessageTraits`] the same way.
//! - [`plan`]: the MAIL FROM / RCPT TO lines and their pipelining grouping, after pre-flight
//!   checks against the remote limits (SIZE, SMTPUTF8, 8BITMIME: 8-bit data to a server without
//!   8BITMIME is refused with `5.6.3`, not converted).
//! - [`outcomes`]: per-recipient results from the replies of one transaction.
//! - [`Session`] (`session`, `transaction`): the state machine of one connection, from the
//!   greeting to QUIT: which command follows which reply, what a 4xx or 421 means at each step,
//!   pipelined replies paired with their commands, when to try the next host ([`TxEnd`]).
//!
//! It does no I/O, keeps no timers and makes no routing decisions (which MX, retry when): the
//! relay in `mta` moves the bytes, does the TLS handshake, enforces the timeouts of RFC 5321
//! §4.5.3.2 (named by [`Timer`]) and decides.

use base64::Engine as _;

use super::reply::Reply;

mod action;
mod session;
mod stream;
mod transaction;
pub use action::{Action, Timer, TxEnd};
pub use session::{Hello, Session};
pub use stream::{DotStuffer, TraitsScanner};
pub use transaction::BDAT_WINDOW;

/// RFC 5321 §4.5.3.1.5 allows reply lines of 512 octets; real servers send longer ones, so we
/// accept up to this many octets (without CRLF) before calling the reply malformed.
pub const MAX_REPLY_LINE: usize = 2048;
/// Lines in one (multi-line) reply before we give up on it.
pub const MAX_REPLY_LINES: usize = 100;

/// Why the bytes from the server are not a valid reply. The connection cannot go on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplyError {
    /// A line longer than [`MAX_REPLY_LINE`].
    LineTooLong,
    /// A reply of more than [`MAX_REPLY_LINES`] lines.
    TooManyLines,
    /// Not `code[-| ]text`, or a continuation line with another code.
    Malformed(String),
}

impl std::fmt::Display for ReplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReplyError::LineTooLong => write!(f, "reply line too long"),
            ReplyError::TooManyLines => write!(f, "too many reply lines"),
            ReplyError::Malformed(line) => write!(f, "malformed reply: {line}"),
        }
    }
}

impl std::error::Error for ReplyError {}

/// Incremental reply parser. Feed it what the socket gave, then take replies until `Ok(None)`.
#[derive(Debug, Default)]
pub struct ReplyParser {
    buf: Vec<u8>,
    code: Option<u16>,
    lines: Vec<String>,
}

impl ReplyParser {
    pub fn new() -> ReplyParser {
        ReplyParser::default()
    }

    /// Appends received bytes. The caller feeds more only after [`next_reply`](Self::next_reply)
    /// returned `Ok(None)`, so the buffer stays below `MAX_REPLY_LINE` plus one read.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes received and not yet part of a returned reply. After a reply to STARTTLS this must
    /// be zero: anything else was sent before the handshake (RFC 3207 §6, CVE-2011-0411 class).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// The next complete reply, `Ok(None)` if more bytes are needed.
    pub fn next_reply(&mut self) -> Result<Option<Reply>, ReplyError> {
        loop {
            let Some(end) = self.buf.iter().position(|&b| b == b'\n') else {
                if self.buf.len() > MAX_REPLY_LINE + 1 {
                    return Err(ReplyError::LineTooLong);
                }
                return Ok(None);
            };
            let mut line = &self.buf[..end];
            // CRLF is the line end (RFC 5321 §2.3.8); a lone LF from a sloppy server is taken too,
            // since a reply cannot smuggle anything towards us.
            if let Some(stripped) = line.strip_suffix(b"\r") {
                line = stripped;
            }
            if line.len() > MAX_REPLY_LINE {
                return Err(ReplyError::LineTooLong);
            }
            let (code, last, text) = parse_line(line)?;
            if let Some(previous) = self.code {
                if previous != code {
                    return Err(ReplyError::Malformed(printable(line)));
                }
            }
            self.code = Some(code);
            self.lines.push(text);
            self.buf.drain(..=end);
            if last {
                self.code = None;
                let lines = std::mem::take(&mut self.lines);
                return Ok(Some(Reply { code, lines }));
            }
            if self.lines.len() >= MAX_REPLY_LINES {
                return Err(ReplyError::TooManyLines);
            }
        }
    }
}

/// RFC 5321 §4.2: `Reply-code [ SP textstring ]` for the last line, `Reply-code "-" [ textstring ]`
/// for the others. Codes are `[2-5][0-5][0-9]`.
fn parse_line(line: &[u8]) -> Result<(u16, bool, String), ReplyError> {
    let bad = || ReplyError::Malformed(printable(line));
    if line.len() < 3 {
        return Err(bad());
    }
    let digits = &line[..3];
    if !(b'2'..=b'5').contains(&digits[0])
        || !(b'0'..=b'5').contains(&digits[1])
        || !digits[2].is_ascii_digit()
    {
        return Err(bad());
    }
    let code = digits
        .iter()
        .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    match line.get(3) {
        None => Ok((code, true, String::new())),
        Some(b' ') => Ok((code, true, printable(&line[4..]))),
        Some(b'-') => Ok((code, false, printable(&line[4..]))),
        Some(_) => Err(bad()),
    }
}

/// Reply text as it may go into logs and bounces: UTF-8 (lossy), control characters as `?`.
fn printable(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes)
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

/// The reply on one line for diagnostics: `550 5.1.1 text`, continuation lines joined by spaces.
pub fn reply_text(reply: &Reply) -> String {
    let mut out = reply.code.to_string();
    for line in &reply.lines {
        if !line.is_empty() {
            out.push(' ');
            out.push_str(line);
        }
    }
    out
}

/// The enhanced status code (RFC 3463) at the start of the reply text, when its class matches
/// the reply code's; otherwise the generic `X.0.0` of the reply code's class.
pub fn status_of(reply: &Reply) -> String {
    let class = reply.code / 100;
    let first = reply.lines.first().map(String::as_str).unwrap_or("");
    let word = first.split(' ').next().unwrap_or("");
    let mut parts = word.split('.');
    let ok = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(c), Some(s), Some(d), None) => {
            c == class.to_string()
                && (1..=3).contains(&s.len())
                && (1..=3).contains(&d.len())
                && s.bytes().chain(d.bytes()).all(|b| b.is_ascii_digit())
        }
        _ => false,
    };
    if ok {
        word.to_string()
    } else {
        format!("{class}.0.0")
    }
}

/// What the server offered in its EHLO reply. [`Capabilities::default`] is what HELO gives:
/// nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// RFC 2920.
    pub pipelining: bool,
    /// RFC 1870: `Some(0)` when offered without a limit, `Some(n)` for a limit of n octets.
    pub size: Option<u64>,
    /// RFC 6152.
    pub eight_bit_mime: bool,
    /// RFC 6531.
    pub smtputf8: bool,
    /// RFC 3207.
    pub starttls: bool,
    /// RFC 4954: the SASL mechanisms, upper case.
    pub auth: Vec<String>,
    /// RFC 3030.
    pub chunking: bool,
    /// RFC 2034.
    pub enhanced_status_codes: bool,
    /// RFC 8689.
    pub requiretls: bool,
}

impl Capabilities {
    /// Reads the keywords from the lines after the greeting line of a 250 EHLO reply
    /// (RFC 5321 §4.1.1.1). Unknown keywords are ignored; keywords are case-insensitive.
    pub fn from_ehlo(reply: &Reply) -> Capabilities {
        let mut caps = Capabilities::default();
        for line in reply.lines.iter().skip(1) {
            let mut words = line.split_ascii_whitespace();
            let Some(keyword) = words.next() else {
                continue;
            };
            match keyword.to_ascii_uppercase().as_str() {
                "PIPELINING" => caps.pipelining = true,
                "SIZE" => {
                    caps.size = Some(words.next().and_then(|n| n.parse().ok()).unwrap_or(0));
                }
                "8BITMIME" => caps.eight_bit_mime = true,
                "SMTPUTF8" => caps.smtputf8 = true,
                "STARTTLS" => caps.starttls = true,
                "CHUNKING" => caps.chunking = true,
                "REQUIRETLS" => caps.requiretls = true,
                "ENHANCEDSTATUSCODES" => caps.enhanced_status_codes = true,
                "AUTH" => {
                    for mechanism in words {
                        let mechanism = mechanism.to_ascii_uppercase();
                        if !caps.auth.contains(&mechanism) {
                            caps.auth.push(mechanism);
                        }
                    }
                }
                _ => {}
            }
        }
        caps
    }

    /// The remote size limit, if it has one.
    pub fn max_size(&self) -> Option<u64> {
        self.size.filter(|&n| n > 0)
    }
}

/// `EHLO name` (RFC 5321 §4.1.1.1).
pub fn ehlo(name: &str) -> String {
    format!("EHLO {}\r\n", clean(name))
}

/// `HELO name`, for servers that refuse EHLO.
pub fn helo(name: &str) -> String {
    format!("HELO {}\r\n", clean(name))
}

/// `AUTH PLAIN` with the initial response (RFC 4954 §4, RFC 4616): `\0user\0password`.
pub fn auth_plain(user: &str, password: &str) -> String {
    let mut raw = Vec::with_capacity(user.len() + password.len() + 2);
    raw.push(0);
    raw.extend_from_slice(user.as_bytes());
    raw.push(0);
    raw.extend_from_slice(password.as_bytes());
    format!(
        "AUTH PLAIN {}\r\n",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

/// A name for a command line: nothing that could end or split the line.
fn clean(name: &str) -> String {
    name.chars()
        .filter(|c| !c.is_control() && !c.is_whitespace())
        .collect()
}

/// The DATA section for `message` (RFC 5321 §4.5.2): every line end becomes CRLF (a bare CR or
/// bare LF too, so that no bare CR or LF ever reaches the wire: RFC 5321 §2.3.8, the
/// RUSTSEC-2021-0069 and SMTP smuggling class), a leading dot on any line is doubled, the body
/// ends with CRLF and then `.` CRLF ends the section.
pub fn dot_stuff(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 64 + 5);
    let mut line_start = true;
    let mut i = 0;
    while i < message.len() {
        let b = message[i];
        match b {
            b'\r' | b'\n' => {
                // CRLF is one line end; any other CR or LF is one too.
                if b == b'\r' && message.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
                out.extend_from_slice(b"\r\n");
                line_start = true;
            }
            _ => {
                if line_start && b == b'.' {
                    out.push(b'.');
                }
                out.push(b);
                line_start = false;
            }
        }
        i += 1;
    }
    if !line_start {
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b".\r\n");
    out
}

/// What about a message decides its MAIL FROM parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageTraits {
    /// Non-ASCII in an envelope address or in the header section (RFC 6531 §3.2).
    pub smtputf8: bool,
    /// Any octet above 127 (RFC 6152).
    pub eight_bit: bool,
    /// Octets of the message as it will be sent (CRLF line ends, before dot-stuffing).
    pub size: u64,
    /// Sent with `REQUIRETLS` (RFC 8689): only to a server that offers it (set by the relay
    /// from the envelope, not found in the message).
    pub require_tls: bool,
}

impl MessageTraits {
    pub fn of(sender: &str, recipients: &[String], message: &[u8]) -> MessageTraits {
        let mut scanner = TraitsScanner::new();
        scanner.feed(message);
        scanner.finish(sender, recipients)
    }
}

/// The commands of one mail transaction, ready to write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    /// `MAIL FROM:<...> [SIZE=n] [BODY=8BITMIME] [SMTPUTF8]` CRLF.
    pub mail: String,
    /// `RCPT TO:<...>` CRLF, one per recipient, in order.
    pub rcpts: Vec<String>,
    /// RFC 2920: MAIL, all RCPTs and DATA go in one write, then the replies are read in order.
    pub pipelining: bool,
    /// RFC 3030: the server offered CHUNKING, so the message goes as `BDAT` chunks (not
    /// dot-stuffed) instead of DATA; [`Plan::writes`] then ends with the last RCPT.
    pub chunking: bool,
}

impl Plan {
    /// The writes in order: one holding MAIL, the RCPTs and DATA with PIPELINING, else one
    /// command per write (each waits for its reply). With CHUNKING there is no DATA: the
    /// `BDAT` commands follow once the RCPT replies are in ([`bdat`]).
    pub fn writes(&self) -> Vec<String> {
        let mut commands = Vec::with_capacity(self.rcpts.len() + 2);
        commands.push(self.mail.clone());
        commands.extend(self.rcpts.iter().cloned());
        if !self.chunking {
            commands.push("DATA\r\n".to_string());
        }
        if self.pipelining {
            vec![commands.concat()]
        } else {
            commands
        }
    }
}

/// A pre-flight refusal: the message cannot go to this server; every recipient fails with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub status: &'static str,
    pub reason: String,
}

/// Checks the message against the server's capabilities and builds the transaction.
pub fn plan(
    caps: &Capabilities,
    sender: &str,
    recipients: &[String],
    traits: &MessageTraits,
) -> Result<Plan, Refusal> {
    let bad_address = |a: &str| {
        a.bytes()
            .any(|b| b.is_ascii_control() || b == b'<' || b == b'>')
    };
    if bad_address(sender) || recipients.iter().any(|r| bad_address(r) || r.is_empty()) {
        return Err(Refusal {
            status: "5.1.3",
            reason: "invalid envelope address".into(),
        });
    }
    if let Some(limit) = caps.max_size() {
        if traits.size > limit {
            // RFC 1870 §6: do not send a message the server has said it will not take.
            return Err(Refusal {
                status: "5.3.4",
                reason: format!("message size {} exceeds remote limit {limit}", traits.size),
            });
        }
    }
    if traits.require_tls && !caps.requiretls {
        // RFC 8689 §4.2.1 step 4: the next hop must support REQUIRETLS, or the message is
        // returned.
        return Err(Refusal {
            status: "5.7.30",
            reason: "REQUIRETLS support required: remote server does not offer REQUIRETLS".into(),
        });
    }
    if traits.smtputf8 && !caps.smtputf8 {
        // RFC 6531 §3.4: no downgrade here; the message is returned.
        return Err(Refusal {
            status: "5.6.7",
            reason: "remote server does not support SMTPUTF8".into(),
        });
    }
    if traits.eight_bit && !caps.eight_bit_mime {
        // RFC 6152 §3: 8-bit data goes only to a server that offered 8BITMIME. We do not
        // rewrite MIME parts to quoted-printable; the message is returned instead (RFC 3463
        // 5.6.3: conversion required but not supported), never sent as is.
        return Err(Refusal {
            status: "5.6.3",
            reason: "remote server does not support 8BITMIME and the message has 8-bit data".into(),
        });
    }
    // RFC 5321 §4.1.2: a local part that is not a Dot-string goes out quoted, so that
    // `"a b ORCPT=..."@x` cannot turn into parameters on the next server.
    let mut mail = format!("MAIL FROM:<{}>", super::address::quoted(sender));
    if caps.size.is_some() {
        mail.push_str(&format!(" SIZE={}", traits.size));
    }
    if traits.eight_bit {
        mail.push_str(" BODY=8BITMIME");
    }
    if traits.smtputf8 {
        mail.push_str(" SMTPUTF8");
    }
    if traits.require_tls {
        mail.push_str(" REQUIRETLS");
    }
    mail.push_str("\r\n");
    Ok(Plan {
        mail,
        rcpts: recipients
            .iter()
            .map(|r| format!("RCPT TO:<{}>\r\n", super::address::quoted(r)))
            .collect(),
        pipelining: caps.pipelining,
        chunking: caps.chunking,
    })
}

/// `BDAT <size>` or `BDAT <size> LAST` CRLF (RFC 3030 §2); the `size` octets follow it.
pub fn bdat(size: usize, last: bool) -> String {
    if last {
        format!("BDAT {size} LAST\r\n")
    } else {
        format!("BDAT {size}\r\n")
    }
}

/// The result for one recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// 2xx to the final `.`.
    Delivered { reply: String },
    /// 4xx: try again later.
    Deferred { reply: String },
    /// 5xx: give up now (a DSN goes to the sender).
    Failed { status: String, reply: String },
}

impl Outcome {
    /// 2xx/3xx delivered, 4xx deferred, anything else failed.
    pub fn of(reply: &Reply) -> Outcome {
        let text = reply_text(reply);
        match reply.code {
            200..=399 => Outcome::Delivered { reply: text },
            400..=499 => Outcome::Deferred { reply: text },
            _ => Outcome::Failed {
                status: status_of(reply),
                reply: text,
            },
        }
    }
}

/// The replies of one transaction. `rcpts` has one reply per recipient, in order; `data` and
/// `end` are `None` when the transaction stopped before them (MAIL refused, no recipient
/// accepted). With BDAT (RFC 3030) `data` is `None` and `end` is the reply to the `LAST`
/// chunk, or to the first chunk that was refused.
#[derive(Clone, Debug)]
pub struct Replies<'a> {
    pub mail: &'a Reply,
    pub rcpts: &'a [Reply],
    pub data: Option<&'a Reply>,
    pub end: Option<&'a Reply>,
}

/// One outcome per recipient: a refused MAIL, DATA or final `.` applies to every recipient whose
/// RCPT was accepted; a refused RCPT only to its recipient.
pub fn outcomes(replies: &Replies<'_>) -> Vec<Outcome> {
    let mail_ok = (200..300).contains(&replies.mail.code);
    let common = if !mail_ok {
        Outcome::of(replies.mail)
    } else {
        match (replies.data, replies.end) {
            (Some(data), _) if data.code != 354 => Outcome::of(data),
            (_, Some(end)) => Outcome::of(end),
            _ => Outcome::Deferred {
                reply: "transaction did not complete".into(),
            },
        }
    };
    replies
        .rcpts
        .iter()
        .map(|rcpt| {
            if mail_ok && !(200..300).contains(&rcpt.code) {
                Outcome::of(rcpt)
            } else {
                common.clone()
            }
        })
        .collect()
}

#[cfg(test)]
mod session_tests;
#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
#[cfg(test)]
mod transaction_tests;
#[cfg(test)]
mod transcript;
