//! Builds bounces: delivery status notifications (RFC 3464) in an RFC 6522 `multipart/report`.
//!
//! [`build`] turns one queued message's failed or delayed recipients into the bytes of a
//! complete report (CRLF line ends) addressed to the original envelope sender: a human-readable
//! `text/plain` part, a machine-readable `message/delivery-status` part and the original
//! message's header block as `text/rfc822-headers`.
//!
//! What it does not do: no I/O and no clock (the caller passes `now`); it does not queue or send
//! the report. The caller must send it with the null envelope sender `MAIL FROM:<>` (RFC 5321
//! §6.1, RFC 3464 §1), so that a report that cannot be delivered never produces another one;
//! for the same reason [`build`] refuses to report on a message whose own sender was null. It
//! does not decide which status code fits a failure, nor when to send a delay warning. The only
//! impurity is randomness for the MIME boundary and the `Message-ID`.
//!
//! Every value that goes into a header or a delivery-status field is sanitized: control
//! characters (CR, LF and NUL among them) become spaces, runs of white space collapse and the
//! length is capped, since diagnostic text comes from remote servers and is hostile. The
//! `message/delivery-status` part is kept 7-bit: non-ASCII characters are written as
//! `\x{HHHH}` (the RFC 6533 escape). Only the human-readable part and the copied headers may
//! carry 8-bit text, and are then labelled `8bit`.
//!
//! RFC 6533: when a recipient address (final or original) is not ASCII, the report is an
//! internationalized one: the second part is `message/global-delivery-status` (8bit,
//! `report-type=global-delivery-status`, the part's subtype as RFC 6522 §3 asks), and such an
//! address is written in UTF-8 with the address type `utf-8` (`Final-Recipient: utf-8; ...`),
//! never as `rfc822`, which allows ASCII only. Copied headers that are not ASCII go in a
//! `message/global-headers` part (RFC 6533 §6.3) instead of `text/rfc822-headers`.

use std::fmt::Write as _;

use proto::smtp::received::rfc5322_date;

/// The original header block copied into the report is cut (at a line end) to this many bytes.
pub const MAX_HEADERS: usize = 64 * 1024;

/// Longest address, host and diagnostic text put in a field; keeps each line under 998 octets.
const MAX_ADDRESS: usize = 512;
const MAX_HOST: usize = 255;
const MAX_DIAGNOSTIC: usize = 900;

/// One recipient's line in a DSN.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientStatus {
    /// The envelope recipient (`Final-Recipient: rfc822; ...`).
    pub recipient: String,
    /// `Original-Recipient`, when it differs (alias expansion).
    pub original: Option<String>,
    /// Failed or Delayed.
    pub action: Action,
    /// The enhanced status code, e.g. `5.1.1` or `4.4.1`.
    pub status: String,
    /// `Remote-MTA: dns; host`.
    pub remote_mta: Option<String>,
    /// `Diagnostic-Code: smtp; <the remote reply>`.
    pub diagnostic: Option<String>,
    /// Unix seconds, for `Last-Attempt-Date`.
    pub last_attempt: Option<i64>,
    /// Unix seconds, for `Will-Retry-Until` (written for [`Action::Delayed`] only).
    pub will_retry_until: Option<i64>,
}

/// What happened to a recipient.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Permanently undeliverable: the message is given up for this recipient.
    Failed,
    /// Not delivered yet; still being retried.
    Delayed,
}

impl Action {
    fn field(self) -> &'static str {
        match self {
            Action::Failed => "failed",
            Action::Delayed => "delayed",
        }
    }
}

/// Everything a report is made of.
#[derive(Debug, Clone, Copy)]
pub struct Bounce<'a> {
    /// Our hostname.
    pub reporting_mta: &'a str,
    pub queue_id: &'a str,
    /// The original envelope sender: the DSN goes to it.
    pub sender: &'a str,
    /// Unix seconds.
    pub arrival_date: i64,
    /// Unix seconds.
    pub now: i64,
    pub recipients: &'a [RecipientStatus],
    /// Its header block is copied into the report (`text/rfc822-headers`).
    pub original_message: &'a [u8],
}

/// Builds the complete RFC 3464 report (RFC 6522 `multipart/report;
/// report-type=delivery-status`) as bytes with CRLF line ends, to be sent to `sender` with
/// the null envelope sender.
///
/// Headers: `From: "Mail Delivery System" <MAILER-DAEMON@reporting_mta>`, `To: <sender>`,
/// `Subject` ("Undelivered Mail Returned to Sender" when any recipient failed, otherwise
/// "Delayed Mail (still being retried)"), `Date`, `Message-ID`, `Auto-Submitted:
/// auto-replied` (RFC 3834). Parts: (1) `text/plain` explanation listing each recipient and
/// the reason, (2) `message/delivery-status` with `Reporting-MTA`, `X-Queue-ID`,
/// `Arrival-Date` and one block per recipient, (3) `text/rfc822-headers` with the original
/// header block (up to the first empty line, at most [`MAX_HEADERS`] bytes).
///
/// Returns `None` when `sender` is empty or `<>` (never a bounce of a bounce), and when there
/// are no recipients (a report needs at least one per-recipient block).
pub fn build(b: &Bounce<'_>) -> Option<Vec<u8>> {
    let sender = clean(b.sender, MAX_ADDRESS);
    if sender.is_empty() || sender == "<>" || b.recipients.is_empty() {
        return None;
    }
    let sender = sender
        .strip_prefix('<')
        .and_then(|s| s.strip_suffix('>'))
        .unwrap_or(&sender)
        .to_string();
    let host = hostname(b.reporting_mta);
    let any_failed = b.recipients.iter().any(|r| r.action == Action::Failed);

    let text = human_part(b, &host);
    // RFC 6533 §3: a non-ASCII address needs the `utf-8` type, and in its UTF-8 form it may
    // only appear in a `message/global-delivery-status` part.
    let global = b
        .recipients
        .iter()
        .any(|r| !r.recipient.is_ascii() || r.original.as_deref().is_some_and(|o| !o.is_ascii()));
    let status = status_part(b, &host);
    let headers = header_block(b.original_message);

    // A random boundary cannot be guessed by whoever wrote the copied headers or the
    // diagnostics; still make sure it occurs in no part.
    let boundary = loop {
        let boundary = format!(
            "dsn-{:016x}{:016x}",
            rand::random::<u64>(),
            rand::random::<u64>()
        );
        let needle = boundary.as_bytes();
        if ![text.as_bytes(), status.as_bytes(), &headers]
            .iter()
            .any(|part| contains(part, needle))
        {
            break boundary;
        }
    };
    let text_8bit = !text.is_ascii();
    let headers_8bit = !headers.is_ascii();

    let mut out = String::with_capacity(1024 + text.len() + status.len());
    let subject = if any_failed {
        "Undelivered Mail Returned to Sender"
    } else {
        "Delayed Mail (still being retried)"
    };
    let _ = write!(
        out,
        "From: \"Mail Delivery System\" <MAILER-DAEMON@{host}>\r\n\
         To: <{sender}>\r\n\
         Subject: {subject}\r\n\
         Date: {date}\r\n\
         Message-ID: <{now}.{qid}.{token:016x}@{host}>\r\n\
         Auto-Submitted: auto-replied\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type={report_type};\r\n\
         \tboundary=\"{boundary}\"\r\n\
         Content-Transfer-Encoding: {cte}\r\n\
         \r\n\
         This is a MIME-encapsulated delivery status notification.\r\n\
         \r\n",
        report_type = if global {
            "global-delivery-status"
        } else {
            "delivery-status"
        },
        date = rfc5322_date(b.now),
        now = b.now,
        qid = id_token(b.queue_id),
        token = rand::random::<u64>(),
        cte = if text_8bit || headers_8bit || global {
            "8bit"
        } else {
            "7bit"
        },
    );
    let _ = write!(
        out,
        "--{boundary}\r\n\
         Content-Type: text/plain; charset=utf-8\r\n\
         Content-Description: Notification\r\n\
         Content-Transfer-Encoding: {}\r\n\
         \r\n\
         {text}\r\n\
         --{boundary}\r\n\
         Content-Type: message/{status_type}\r\n\
         Content-Description: Delivery report\r\n\
         {status_cte}\
         \r\n\
         {status}\r\n\
         --{boundary}\r\n\
         Content-Type: {headers_type}\r\n\
         Content-Description: Undelivered message headers\r\n\
         Content-Transfer-Encoding: {}\r\n\
         \r\n",
        if text_8bit { "8bit" } else { "7bit" },
        if headers_8bit { "8bit" } else { "7bit" },
        status_type = if global {
            "global-delivery-status"
        } else {
            "delivery-status"
        },
        status_cte = if global {
            "Content-Transfer-Encoding: 8bit\r\n"
        } else {
            ""
        },
        headers_type = if headers_8bit {
            "message/global-headers"
        } else {
            "text/rfc822-headers"
        },
    );
    let mut out = out.into_bytes();
    out.extend_from_slice(&headers);
    out.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    Some(out)
}

/// The `text/plain` part: each recipient with the reason, failures first.
fn human_part(b: &Bounce<'_>, host: &str) -> String {
    let mut text = format!("This is the mail system at host {host}.\r\n");
    let failed: Vec<_> = b
        .recipients
        .iter()
        .filter(|r| r.action == Action::Failed)
        .collect();
    let delayed: Vec<_> = b
        .recipients
        .iter()
        .filter(|r| r.action == Action::Delayed)
        .collect();
    if !failed.is_empty() {
        text.push_str(
            "\r\nI'm sorry to have to inform you that your message could not be delivered\r\n\
             to the recipients below. It has been given up on; this is a permanent error.\r\n\r\n",
        );
        for r in &failed {
            text.push_str(&human_line(r));
        }
    }
    if !delayed.is_empty() {
        text.push_str(
            "\r\nYour message has not been delivered yet to the recipients below.\r\n\
             The mail system will keep trying; you do not need to send it again.\r\n\r\n",
        );
        for r in &delayed {
            text.push_str(&human_line(r));
            if let Some(until) = r.will_retry_until {
                let _ = write!(text, "    (will retry until {})\r\n", rfc5322_date(until));
            }
        }
    }
    text.push_str("\r\nThe headers of your message are attached.\r\n");
    text
}

fn human_line(r: &RecipientStatus) -> String {
    let reason = match &r.diagnostic {
        Some(d) if !clean(d, MAX_DIAGNOSTIC).is_empty() => clean(d, MAX_DIAGNOSTIC),
        _ => format!("status {}", status_code(r)),
    };
    let mut line = format!("<{}>: ", clean(&r.recipient, MAX_ADDRESS));
    match r.remote_mta.as_deref().map(hostname_field) {
        Some(mta) if !mta.is_empty() => {
            let _ = write!(line, "host {mta} said: {reason}");
        }
        _ => line.push_str(&reason),
    }
    line.push_str("\r\n");
    line
}

/// The delivery-status part, ending without its last CRLF: 7-bit unless an address is not
/// ASCII (then it goes in a `message/global-delivery-status` part).
fn status_part(b: &Bounce<'_>, host: &str) -> String {
    let mut s = format!("Reporting-MTA: dns; {host}\r\n");
    let qid = clean(b.queue_id, MAX_HOST);
    if !qid.is_empty() {
        let _ = write!(s, "X-Queue-ID: {}\r\n", seven_bit(&qid));
    }
    let _ = write!(s, "Arrival-Date: {}\r\n", rfc5322_date(b.arrival_date));
    for r in b.recipients {
        let recipient = clean(&r.recipient, MAX_ADDRESS);
        s.push_str("\r\n");
        if let Some(original) = &r.original {
            let original = clean(original, MAX_ADDRESS);
            if !original.is_empty() && original != recipient {
                let _ = write!(s, "Original-Recipient: {}\r\n", typed_address(&original));
            }
        }
        let _ = write!(
            s,
            "Final-Recipient: {}\r\nAction: {}\r\nStatus: {}\r\n",
            typed_address(&recipient),
            r.action.field(),
            status_code(r)
        );
        if let Some(mta) = r.remote_mta.as_deref().map(hostname_field) {
            if !mta.is_empty() {
                let _ = write!(s, "Remote-MTA: dns; {}\r\n", seven_bit(&mta));
            }
        }
        if let Some(diagnostic) = &r.diagnostic {
            let diagnostic = seven_bit(&clean(diagnostic, MAX_DIAGNOSTIC));
            if !diagnostic.is_empty() {
                let _ = write!(s, "Diagnostic-Code: smtp; {diagnostic}\r\n");
            }
        }
        if let Some(at) = r.last_attempt {
            let _ = write!(s, "Last-Attempt-Date: {}\r\n", rfc5322_date(at));
        }
        if let (Action::Delayed, Some(until)) = (r.action, r.will_retry_until) {
            let _ = write!(s, "Will-Retry-Until: {}\r\n", rfc5322_date(until));
        }
    }
    s.truncate(s.len() - 2);
    s
}

/// `rfc822; addr` for an ASCII address; `utf-8; addr` in UTF-8 (the `utf-8-address` form of
/// RFC 6533 §3) for any other, which only a `message/global-delivery-status` part may carry.
fn typed_address(address: &str) -> String {
    if address.is_ascii() {
        format!("rfc822; {address}")
    } else {
        format!("utf-8; {address}")
    }
}

/// The recipient's status code when it is well formed (`class.subject.detail`, RFC 3463),
/// otherwise the generic one for its action.
fn status_code(r: &RecipientStatus) -> String {
    let status = r.status.trim();
    let mut parts = status.split('.');
    let class = parts.next().unwrap_or("");
    let rest: Vec<&str> = parts.collect();
    let ok = matches!(class, "2" | "4" | "5")
        && rest.len() == 2
        && rest
            .iter()
            .all(|p| (1..=3).contains(&p.len()) && p.bytes().all(|c| c.is_ascii_digit()));
    if ok {
        status.to_string()
    } else if r.action == Action::Failed {
        "5.0.0".to_string()
    } else {
        "4.0.0".to_string()
    }
}

/// The original header block: up to the first empty line (or the whole message if there is
/// none), with CRLF line ends, NUL and stray CR as spaces, cut at a line end to
/// [`MAX_HEADERS`] bytes.
fn header_block(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for line in message.split_inclusive(|&c| c == b'\n') {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() || out.len() + line.len() + 2 > MAX_HEADERS {
            break;
        }
        out.extend(
            line.iter()
                .map(|&c| if c == b'\r' || c == 0 { b' ' } else { c }),
        );
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A value fit for one header or field line: control characters (CR, LF, NUL, ...) and
/// Unicode line separators become spaces, white space runs collapse, the ends are trimmed
/// and the length is capped at `max` bytes (on a character boundary).
fn clean(value: &str, max: usize) -> String {
    let mut out = String::with_capacity(value.len().min(max));
    for c in value.chars() {
        let c = if c.is_control() || c.is_whitespace() {
            ' '
        } else {
            c
        };
        if c == ' ' && (out.is_empty() || out.ends_with(' ')) {
            continue;
        }
        if out.len() + c.len_utf8() > max {
            break;
        }
        out.push(c);
    }
    out.truncate(out.trim_end().len());
    out
}

/// Non-ASCII characters as RFC 6533 `\x{HHHH}`, so that the delivery-status part stays 7-bit.
fn seven_bit(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let _ = write!(out, "\\x{{{:X}}}", c as u32);
        }
    }
    out
}

/// Our hostname for `From`, `Message-ID` and `Reporting-MTA`: letters, digits, `.`, `-`, `_`
/// and brackets and colons for an address literal; anything else is dropped.
fn hostname(host: &str) -> String {
    let host = hostname_field(host);
    if host.is_empty() {
        "localhost".to_string()
    } else {
        host
    }
}

fn hostname_field(host: &str) -> String {
    host.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '[' | ']' | ':'))
        .take(MAX_HOST)
        .collect()
}

/// The queue id as a `Message-ID` token: letters, digits, `.`, `-` and `_` only.
fn id_token(queue_id: &str) -> String {
    let token: String = queue_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        .take(64)
        .collect();
    if token.is_empty() {
        "dsn".to_string()
    } else {
        token
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
#[path = "bounce_tests.rs"]
mod tests;
