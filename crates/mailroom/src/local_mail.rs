//! Local submission (`mailroom sendmail`): the request a local user makes, as written to the
//! maildrop, and how it becomes a queued message. Pure: no files, no clock, no directory.
//!
//! Who sent it is never taken from the request: the caller's Unix user ([`Caller`]) comes from
//! the kernel (the maildrop file's owner, or the CLI's own uid when it queues directly). Their
//! address is `<unix name>@<local domain>`; `-f` may name another sender (as Postfix allows),
//! which is then recorded in an `X-Authentication-Warning:` (sendmail's convention) and the
//! sender counts as unverified. The `Received:` header names the uid.
//!
//! It does not decide where recipients go (the queue runner does) nor read standard input.

use mail_parser::MessageParser;

const MAGIC: &str = "MAILROOM-MAILDROP 1\n";

/// What `sendmail` was asked to do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Request {
    /// `-f` / `-r`: the envelope sender (`""` is the null sender); `None`: the caller's address.
    pub sender: Option<String>,
    /// `-F`: the full name for an added `From:`.
    pub full_name: Option<String>,
    /// Recipients from the command line.
    pub recipients: Vec<String>,
    /// `-t`: also take recipients from `To:`, `Cc:` and `Bcc:`.
    pub from_headers: bool,
    /// The message, line ends already CRLF (normalised again by [`compose`]).
    pub message: Vec<u8>,
}

/// Percent-escapes `%`, controls and DEL, so a value can never end or add a line.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c == '%' || (c as u32) < 0x20 || c as u32 == 0x7f {
            out.push_str(&format!("%{:02X}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

fn unescape(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3).ok_or("bad escape")?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| "bad escape")?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "not UTF-8".to_string())
}

/// The maildrop file for `r`.
pub fn encode(r: &Request) -> Vec<u8> {
    let mut head = String::from(MAGIC);
    if let Some(s) = &r.sender {
        head.push_str(&format!("sender {}\n", escape(s)));
    }
    if let Some(n) = &r.full_name {
        head.push_str(&format!("full-name {}\n", escape(n)));
    }
    if r.from_headers {
        head.push_str("from-headers\n");
    }
    for rcpt in &r.recipients {
        head.push_str(&format!("rcpt {}\n", escape(rcpt)));
    }
    head.push('\n');
    let mut out = head.into_bytes();
    out.extend_from_slice(&r.message);
    out
}

/// Reads a maildrop file (a local user's bytes: anything may be wrong with it).
pub fn decode(bytes: &[u8]) -> Result<Request, String> {
    let rest = bytes
        .strip_prefix(MAGIC.as_bytes())
        .ok_or("not a maildrop file")?;
    let end = rest
        .windows(2)
        .position(|w| w == b"\n\n")
        .ok_or("no end of envelope")?;
    let head = std::str::from_utf8(&rest[..end]).map_err(|_| "envelope not UTF-8")?;
    let mut r = Request {
        message: rest[end + 2..].to_vec(),
        ..Request::default()
    };
    for line in head.split('\n') {
        let (key, value) = line.split_once(' ').unwrap_or((line, ""));
        match key {
            "sender" => r.sender = Some(unescape(value)?),
            "full-name" => r.full_name = Some(unescape(value)?),
            "from-headers" => r.from_headers = true,
            "rcpt" => r.recipients.push(unescape(value)?),
            _ => return Err(format!("unknown envelope line {:?}", key)),
        }
    }
    Ok(r)
}

/// Who asked, from the kernel.
#[derive(Clone, Debug)]
pub struct Caller {
    pub uid: u32,
    /// The Unix user name (`uid<N>` when the uid has no name).
    pub name: String,
    /// root or the service user: `-f` is theirs to set without a warning.
    pub trusted: bool,
}

/// A message ready for [`store::spool::Spool::enqueue`].
#[derive(Debug)]
pub struct Composed {
    pub sender: String,
    pub recipients: Vec<String>,
    pub sender_verified: bool,
    pub client: String,
    pub message: Vec<u8>,
}

/// Where the message is made: our host name, the domain for unqualified addresses, the queue
/// id and the time.
pub struct Site<'a> {
    pub hostname: &'a str,
    pub local_domain: &'a str,
    pub id: &'a str,
    pub unix_secs: i64,
    /// `smtp.max_recipients`, as for SMTP.
    pub max_recipients: usize,
}

/// `addr`, without `<>`, qualified with the local domain when it has no `@`, checked.
fn qualify(addr: &str, site: &Site<'_>) -> Result<String, String> {
    let a = addr.trim();
    let a = a
        .strip_prefix('<')
        .and_then(|a| a.strip_suffix('>'))
        .unwrap_or(a);
    let full = if a.contains('@') {
        a.to_string()
    } else {
        format!("{a}@{}", site.local_domain)
    };
    proto::address::check(&full).map_err(|e| format!("bad address {:?}: {e:?}", addr))?;
    Ok(full)
}

/// CRLF line ends; a bare CR (smuggling material) becomes a space.
pub fn normalize(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + message.len() / 40);
    let mut lines = message.split(|&b| b == b'\n').peekable();
    while let Some(line) = lines.next() {
        let last = lines.peek().is_none();
        if last && line.is_empty() {
            break;
        }
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        out.extend(line.iter().map(|&b| if b == b'\r' { b' ' } else { b }));
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Splits a CRLF message into its header lines (each with its CRLF, continuations joined to
/// their field) and the body. A line that is not a header field starts the body (RFC 5322 §2.2).
fn split_headers(message: &[u8]) -> (Vec<&[u8]>, &[u8]) {
    let mut fields: Vec<&[u8]> = Vec::new();
    let mut pos = 0;
    while pos < message.len() {
        let end = message[pos..]
            .windows(2)
            .position(|w| w == b"\r\n")
            .map_or(message.len(), |i| pos + i + 2);
        let line = &message[pos..end];
        if line == b"\r\n" {
            return (fields, &message[end..]);
        }
        if matches!(line[0], b' ' | b'\t') && !fields.is_empty() {
            let start = pos - fields.last().map_or(0, |f| f.len());
            *fields.last_mut().expect("not empty") = &message[start..end];
        } else if is_field(line) {
            fields.push(line);
        } else {
            return (fields, &message[pos..]);
        }
        pos = end;
    }
    (fields, &message[message.len()..])
}

fn is_field(line: &[u8]) -> bool {
    match line.iter().position(|&b| b == b':') {
        Some(0) | None => false,
        Some(i) => line[..i].iter().all(|&b| b.is_ascii_graphic()),
    }
}

fn field_is(field: &[u8], name: &str) -> bool {
    field.len() > name.len()
        && field[..name.len()].eq_ignore_ascii_case(name.as_bytes())
        && field[name.len()] == b':'
}

/// `From:` with the full name as a quoted string (RFC 5322 §3.2.4).
fn from_header(full_name: Option<&str>, sender: &str) -> String {
    match full_name.map(str::trim).filter(|n| !n.is_empty()) {
        Some(name) => {
            let q: String = name
                .chars()
                .filter(|c| !c.is_control())
                .flat_map(|c| match c {
                    '"' | '\\' => vec!['\\', c],
                    c => vec![c],
                })
                .collect();
            format!("From: \"{q}\" <{sender}>\r\n")
        }
        None => format!("From: {sender}\r\n"),
    }
}

/// The queued message for `r` from `caller`.
pub fn compose(r: &Request, caller: &Caller, site: &Site<'_>) -> Result<Composed, String> {
    let own = format!("{}@{}", caller.name, site.local_domain);
    let sender = match r.sender.as_deref().map(str::trim) {
        None => own.clone(),
        Some("" | "<>") => String::new(),
        Some(s) => qualify(s, site)?,
    };
    let message = normalize(&r.message);
    let (fields, body) = split_headers(&message);
    let mut recipients = Vec::new();
    for rcpt in &r.recipients {
        recipients.push(qualify(rcpt, site)?);
    }
    if r.from_headers {
        let head: Vec<u8> = fields.concat();
        if let Some(parsed) = MessageParser::default().parse_headers(&head) {
            for list in [parsed.to(), parsed.cc(), parsed.bcc()]
                .into_iter()
                .flatten()
            {
                // A bare `Cc: dave` parses as a name without an address: a local user.
                let bare = |a: &mail_parser::Addr<'_>| {
                    a.name()
                        .filter(|n| !n.contains(char::is_whitespace))
                        .map(str::to_string)
                };
                let addrs = list
                    .iter()
                    .filter_map(|a| a.address().map(str::to_string).or_else(|| bare(a)));
                for a in addrs {
                    let a = a.as_str();
                    recipients.push(qualify(a, site)?);
                }
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    recipients.retain(|r| seen.insert(r.to_ascii_lowercase()));
    if recipients.is_empty() {
        return Err("no recipients given (name them, or use -t with To:/Cc:/Bcc:)".into());
    }
    if recipients.len() > site.max_recipients {
        return Err(format!(
            "{} recipients, more than smtp.max_recipients ({})",
            recipients.len(),
            site.max_recipients
        ));
    }
    let own_sender = sender.eq_ignore_ascii_case(&own);
    let mut out = format!(
        "Received: by {} (Mailroom, from userid {})\r\n\tid {}; {}\r\n",
        site.hostname,
        caller.uid,
        site.id,
        proto::smtp::received::rfc5322_date(site.unix_secs)
    );
    if !caller.trusted && !own_sender {
        out.push_str(&format!(
            "X-Authentication-Warning: {}: {} set sender to <{}> using -f\r\n",
            site.hostname, caller.name, sender
        ));
    }
    let mut out = out.into_bytes();
    let has = |name: &str| fields.iter().any(|f| field_is(f, name));
    for f in fields.iter().filter(|f| !field_is(f, "bcc")) {
        out.extend_from_slice(f);
    }
    if !has("from") {
        let from = if sender.is_empty() { &own } else { &sender };
        out.extend_from_slice(from_header(r.full_name.as_deref(), from).as_bytes());
    }
    if !has("date") {
        let date = proto::smtp::received::rfc5322_date(site.unix_secs);
        out.extend_from_slice(format!("Date: {date}\r\n").as_bytes());
    }
    if !has("message-id") {
        out.extend_from_slice(
            format!("Message-ID: <{}@{}>\r\n", site.id, site.hostname).as_bytes(),
        );
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    Ok(Composed {
        sender,
        recipients,
        sender_verified: caller.trusted || own_sender,
        client: format!("local uid={} user={}", caller.uid, caller.name),
        message: out,
    })
}

#[cfg(test)]
#[path = "local_mail_tests.rs"]
mod tests;
