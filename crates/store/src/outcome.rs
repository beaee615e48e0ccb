//! The one word for what happened to one recipient: delivered, deferred (with the reply and
//! when to try next) or failed (with the RFC 3463 status, the reply and who said it). The relay
//! client, the queue runner, the spool's state log, `mailroom queue list` and the bounce builder
//! all speak it; nothing converts between look-alike types any more.
//!
//! The state log stores it as a versioned record (`v2 ...`, [`Entry::to_line`]); lines written
//! by the first version (`<index> <done|deferred|failed|warned|bounce> <detail>`) are still read.
//! Pure: no I/O here (the spool does the reading and writing).

use crate::spool::{escape, unescape};

/// What happened to one recipient in one attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Delivered: where (a mailbox, or the remote host and its reply).
    Delivered { detail: String },
    /// Try again later: the reply or the reason, and when the next attempt is due (unix
    /// seconds) if the runner has decided.
    Deferred {
        reply: String,
        next_attempt: Option<u64>,
    },
    /// Will not be delivered: RFC 3463 status (`5.1.1`), the reply or reason, and the remote
    /// MTA that gave it, if one did.
    Failed {
        status: String,
        reply: String,
        remote_mta: Option<String>,
    },
}

impl Outcome {
    /// A deferral whose next attempt the runner will decide.
    pub fn deferred(reply: impl Into<String>) -> Outcome {
        Outcome::Deferred {
            reply: reply.into(),
            next_attempt: None,
        }
    }

    /// A failure without a remote MTA.
    pub fn failed(status: impl Into<String>, reply: impl Into<String>) -> Outcome {
        Outcome::Failed {
            status: status.into(),
            reply: reply.into(),
            remote_mta: None,
        }
    }

    /// True for `Deferred`.
    pub fn is_deferred(&self) -> bool {
        matches!(self, Outcome::Deferred { .. })
    }

    /// The reply or detail, for logs and `queue list`.
    pub fn text(&self) -> String {
        match self {
            Outcome::Delivered { detail } => detail.clone(),
            Outcome::Deferred { reply, .. } => reply.clone(),
            Outcome::Failed { status, reply, .. } => format!("{status} {reply}"),
        }
    }
}

/// A message-level mark in the state log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mark {
    /// The one "delayed" DSN went out.
    Warned,
    /// `mailroom queue bounce` asked to give up.
    BounceRequested,
}

/// One line of a message's state log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Entry {
    /// Recipient `index` (in envelope order) had this outcome.
    Rcpt(usize, Outcome),
    Mark(Mark),
}

/// A field followed by others: `=` then the value with spaces escaped too (`%20`), so an
/// empty value is `=` and `-` can mean "none".
fn word(v: &str) -> String {
    format!("={}", escape(v).replace(' ', "%20"))
}

fn unword(w: &str) -> Option<String> {
    field(w.strip_prefix('=')?)
}

fn opt(v: &Option<String>) -> String {
    v.as_deref().map(word).unwrap_or_else(|| "-".into())
}

impl Entry {
    /// The state-log line (without the newline). Every free-text field is escaped, so no line
    /// can hold a space-separated field boundary, a newline or a control byte of its own.
    pub fn to_line(&self) -> String {
        match self {
            Entry::Mark(Mark::Warned) => "v2 - warned".into(),
            Entry::Mark(Mark::BounceRequested) => "v2 - bounce".into(),
            Entry::Rcpt(i, Outcome::Delivered { detail }) => {
                format!("v2 {i} delivered {}", escape(detail))
            }
            Entry::Rcpt(
                i,
                Outcome::Deferred {
                    reply,
                    next_attempt,
                },
            ) => format!(
                "v2 {i} deferred {} {}",
                next_attempt.map_or("-".to_string(), |t| t.to_string()),
                escape(reply)
            ),
            Entry::Rcpt(
                i,
                Outcome::Failed {
                    status,
                    reply,
                    remote_mta,
                },
            ) => format!(
                "v2 {i} failed {} {} {}",
                word(status),
                opt(remote_mta),
                escape(reply)
            ),
        }
    }

    /// Parses a state-log line of either version; `None` if it is not one.
    pub fn parse(line: &[u8]) -> Option<Entry> {
        let text = std::str::from_utf8(line).ok()?;
        if let Some(rest) = text.strip_prefix("v2 ") {
            return parse_v2(rest);
        }
        parse_v1(text)
    }
}

fn field(s: &str) -> Option<String> {
    unescape(s.as_bytes()).ok()
}

fn parse_v2(rest: &str) -> Option<Entry> {
    let (index, rest) = rest.split_once(' ')?;
    if index == "-" {
        return match rest {
            "warned" => Some(Entry::Mark(Mark::Warned)),
            "bounce" => Some(Entry::Mark(Mark::BounceRequested)),
            _ => None,
        };
    }
    let index: usize = index.parse().ok()?;
    let (kind, rest) = rest.split_once(' ')?;
    let outcome = match kind {
        "delivered" => Outcome::Delivered {
            detail: field(rest)?,
        },
        "deferred" => {
            let (next, reply) = rest.split_once(' ')?;
            Outcome::Deferred {
                reply: field(reply)?,
                next_attempt: match next {
                    "-" => None,
                    n => Some(n.parse().ok()?),
                },
            }
        }
        "failed" => {
            let (status, rest) = rest.split_once(' ')?;
            let (mta, reply) = rest.split_once(' ')?;
            Outcome::Failed {
                status: unword(status)?,
                reply: field(reply)?,
                remote_mta: match mta {
                    "-" => None,
                    m => Some(unword(m)?),
                },
            }
        }
        _ => return None,
    };
    Some(Entry::Rcpt(index, outcome))
}

/// First-version lines: `<index> <state> <escaped detail>`.
fn parse_v1(text: &str) -> Option<Entry> {
    let mut fields = text.splitn(3, ' ');
    let index: usize = fields.next()?.parse().ok()?;
    let state = fields.next()?;
    let detail = field(fields.next()?)?;
    Some(match state {
        "warned" => Entry::Mark(Mark::Warned),
        "bounce" => Entry::Mark(Mark::BounceRequested),
        "done" => Entry::Rcpt(index, Outcome::Delivered { detail }),
        "deferred" => Entry::Rcpt(index, Outcome::deferred(detail)),
        "failed" => {
            // Version 1 wrote "<status> <reply>".
            let (status, reply) = match detail.split_once(' ') {
                Some((s, r)) if s.split('.').count() == 3 => (s.to_string(), r.to_string()),
                _ => ("5.0.0".to_string(), detail.clone()),
            };
            Entry::Rcpt(index, Outcome::failed(status, reply))
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_lines_round_trip() {
        let entries = [
            Entry::Rcpt(
                0,
                Outcome::Delivered {
                    detail: "mx [192.0.2.1]:25: 250 2.0.0 ok".into(),
                },
            ),
            Entry::Rcpt(
                3,
                Outcome::Deferred {
                    reply: "451 4.7.1 try\r\nlater %".into(),
                    next_attempt: Some(1_800_000_000),
                },
            ),
            Entry::Rcpt(1, Outcome::deferred("")),
            Entry::Rcpt(
                2,
                Outcome::Failed {
                    status: "5.1.1".into(),
                    reply: "550 5.1.1 no such user".into(),
                    remote_mta: Some("mx.example [192.0.2.1]:25".into()),
                },
            ),
            Entry::Rcpt(4, Outcome::failed("4.4.7", "expired")),
            Entry::Rcpt(
                5,
                Outcome::Failed {
                    status: String::new(),
                    reply: String::new(),
                    remote_mta: Some("-".into()),
                },
            ),
            Entry::Mark(Mark::Warned),
            Entry::Mark(Mark::BounceRequested),
        ];
        for e in entries {
            let line = e.to_line();
            assert!(!line.contains('\n') && !line.contains('\r'), "{line}");
            assert_eq!(Entry::parse(line.as_bytes()), Some(e), "{line}");
        }
    }

    #[test]
    fn first_version_lines_still_read() {
        assert_eq!(
            Entry::parse(b"0 done delivered"),
            Some(Entry::Rcpt(
                0,
                Outcome::Delivered {
                    detail: "delivered".into()
                }
            ))
        );
        assert_eq!(
            Entry::parse(b"1 deferred 451%204.2.0 try later"),
            Some(Entry::Rcpt(1, Outcome::deferred("451 4.2.0 try later")))
        );
        assert_eq!(
            Entry::parse(b"2 failed 5.1.1 550 no such user"),
            Some(Entry::Rcpt(2, Outcome::failed("5.1.1", "550 no such user")))
        );
        assert_eq!(Entry::parse(b"0 warned "), Some(Entry::Mark(Mark::Warned)));
        assert_eq!(
            Entry::parse(b"0 bounce bounced by the administrator"),
            Some(Entry::Mark(Mark::BounceRequested))
        );
        assert_eq!(Entry::parse(b"0 exploded x"), None);
        assert_eq!(Entry::parse(b"v2 0 sideways x"), None);
        assert_eq!(Entry::parse(b"v2 x delivered y"), None);
    }
}
