//! Submission checks on a complete message (RFC 6409): the `From:` header must name only
//! addresses the authenticated account may send as (§8.1 lets the server enforce this), and
//! the server adds `Date:` and `Message-ID:` when they are missing (§8.2, §8.3).
//!
//! Headers are parsed with `mail-parser`; only the header block is read. RFC 5322 §3.6
//! allows exactly one `From:`: a message with two is refused (mail-parser's `from()` returns
//! only the last one, so a second header would otherwise hide a forged first), and every
//! mailbox of that one header must be owned; a mailbox without a parseable address is refused.

use mail_parser::{HeaderName, HeaderValue, MessageParser};

use super::reply::Reply;
use super::types::Policy;

/// Headers the message lacks and the server must add.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Missing {
    pub date: bool,
    pub message_id: bool,
}

/// Checks the `From:` header against the account; returns what must be added.
pub fn check(message: &[u8], user: &str, policy: &dyn Policy) -> Result<Missing, Reply> {
    let Some(parsed) = MessageParser::default().parse_headers(message) else {
        return Err(Reply::new(554, "5.6.0 Message could not be parsed"));
    };
    let from_headers: Vec<&HeaderValue> = parsed
        .headers()
        .iter()
        .filter(|h| h.name == HeaderName::From)
        .map(|h| &h.value)
        .collect();
    if from_headers.len() > 1 {
        return Err(Reply::new(
            553,
            "5.7.1 Message refused: more than one From: header (RFC 5322 section 3.6)",
        ));
    }
    let mut from: Vec<String> = Vec::new();
    if let Some(HeaderValue::Address(list)) = from_headers.first() {
        for addr in list.iter() {
            match addr.address() {
                Some(a) if !a.is_empty() => from.push(a.to_string()),
                _ => {
                    return Err(Reply::new(
                        553,
                        "5.7.1 Message refused: a From: mailbox has no valid address",
                    ))
                }
            }
        }
    }
    for addr in &from {
        if !policy.may_send_as(user, addr) {
            return Err(Reply::new(
                553,
                format!(
                    "5.7.1 From: <{}> refused: not owned by user {user}",
                    super::address::escape(addr)
                ),
            ));
        }
    }
    Ok(Missing {
        date: parsed.date().is_none(),
        message_id: parsed.message_id().is_none(),
    })
}
