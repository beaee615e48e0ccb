//! Submission checks on a complete message (RFC 6409): the `From:` header must name only
//! addresses the authenticated account may send as (§8.1 lets the server enforce this), and
//! the server adds `Date:` and `Message-ID:` when they are missing (§8.2, §8.3).
//!
//! Headers are parsed with `mail-parser`; only the header block is read.

use mail_parser::MessageParser;

use super::reply::Reply;
use super::session::Policy;

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
    let from: Vec<String> = parsed
        .from()
        .map(|a| {
            a.iter()
                .filter_map(|addr| addr.address().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if from.is_empty() {
        return Err(Reply::new(
            553,
            "5.7.1 Message refused: a From: header with the sender's address is required",
        ));
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
