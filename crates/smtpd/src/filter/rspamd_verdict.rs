//! What rspamd's `/checkv2` answer means for a message (pure): its `action` becomes a
//! refusal (`reject`: `550 5.7.1` with rspamd's `smtp_message`; `soft reject` and
//! `greylist`: `451 4.7.1`), tags (`add header`, `rewrite subject`: `X-Spam-Flag: YES` and
//! `X-Spam-Status: Yes, score=... required=... symbols=...` prepended, and for the latter the
//! `Subject:` rspamd proposes), or nothing (`no action`, and anything unknown). Also what
//! happens when rspamd cannot be asked (`fail_open`).
//!
//! Not here: talking to rspamd (`super::rspamd`). The reply text and the headers carry only
//! printable ASCII from rspamd's answer, bounded in length.

use proto::smtp::Reply;
use serde_json::Value;

/// What to do with the message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Store it unchanged.
    Accept,
    /// Store it with these header lines (CRLF-terminated) on top, and this subject instead
    /// of its own when `Some`.
    Tag {
        headers: String,
        subject: Option<String>,
    },
    /// Refuse it with this reply; nothing stored.
    Refuse(Reply),
}

/// Longest text taken from rspamd for a reply or a header.
const MAX_TEXT: usize = 200;
/// Symbols named in `X-Spam-Status` at most.
const MAX_SYMBOLS: usize = 30;

/// Printable ASCII only, bounded.
fn clean(text: &str) -> String {
    text.chars()
        .map(|c| if (' '..='~').contains(&c) { c } else { ' ' })
        .take(MAX_TEXT)
        .collect::<String>()
        .trim()
        .to_string()
}

/// The verdict of an answer (the JSON body of `/checkv2`). A body that is not rspamd's
/// JSON is an error, handled like rspamd being down.
pub fn decide(body: &[u8]) -> Result<Verdict, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("bad JSON: {e}"))?;
    let action = v
        .get("action")
        .and_then(Value::as_str)
        .ok_or("no action in the answer")?;
    let message = v
        .get("messages")
        .and_then(|m| m.get("smtp_message"))
        .and_then(Value::as_str)
        .map(clean)
        .filter(|m| !m.is_empty());
    Ok(match action {
        "reject" => Verdict::Refuse(Reply::new(
            550,
            format!(
                "5.7.1 {}",
                message.unwrap_or_else(|| "Spam message rejected".into())
            ),
        )),
        "soft reject" | "greylist" => Verdict::Refuse(Reply::new(
            451,
            format!(
                "4.7.1 {}",
                message.unwrap_or_else(|| "Try again later".into())
            ),
        )),
        "add header" | "rewrite subject" => {
            let score = v.get("score").and_then(Value::as_f64).unwrap_or(0.0);
            let required = v
                .get("required_score")
                .and_then(Value::as_f64)
                .unwrap_or(0.0);
            let mut symbols: Vec<(f64, String)> = v
                .get("symbols")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(name, s)| {
                            let sc = s.get("score").and_then(Value::as_f64).unwrap_or(0.0);
                            (sc, clean(name).replace([' ', ','], "_"))
                        })
                        .collect()
                })
                .unwrap_or_default();
            // Highest scores first, then by name, so the header is stable.
            symbols.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
            let names: Vec<&str> = symbols
                .iter()
                .take(MAX_SYMBOLS)
                .map(|(_, n)| n.as_str())
                .collect();
            let headers = format!(
                "X-Spam-Flag: YES\r\nX-Spam-Status: Yes, score={score:.2} required={required:.2}\r\n\tsymbols={}\r\n",
                names.join(",")
            );
            let subject = (action == "rewrite subject")
                .then(|| v.get("subject").and_then(Value::as_str).map(clean))
                .flatten()
                .filter(|s| !s.is_empty());
            Verdict::Tag { headers, subject }
        }
        _ => Verdict::Accept,
    })
}

/// rspamd could not be asked (down, too slow, a bad answer): accept, or `451 4.7.1`.
pub fn unavailable(fail_open: bool) -> Verdict {
    if fail_open {
        Verdict::Accept
    } else {
        Verdict::Refuse(Reply::new(
            451,
            "4.7.1 Content filter unavailable, try again later",
        ))
    }
}

/// `message` with `headers` on top and, when `subject` is given, its first `Subject:` field
/// (with its continuation lines) replaced, or added when it has none.
pub fn tagged(message: &[u8], headers: &str, subject: Option<&str>) -> Vec<u8> {
    let mut out = Vec::with_capacity(message.len() + headers.len() + 128);
    out.extend_from_slice(headers.as_bytes());
    let Some(subject) = subject else {
        out.extend_from_slice(message);
        return out;
    };
    let header_end = if message.starts_with(b"\r\n") {
        0
    } else {
        find(message, b"\r\n\r\n").map_or(message.len(), |i| i + 2)
    };
    let mut pos = 0;
    let mut replaced = false;
    while pos < header_end {
        let line_end = find(&message[pos..header_end], b"\r\n").map_or(header_end, |i| pos + i + 2);
        let line = &message[pos..line_end];
        let is_subject = line.len() >= 8 && line[..8].eq_ignore_ascii_case(b"subject:");
        if is_subject && !replaced {
            replaced = true;
            out.extend_from_slice(format!("Subject: {subject}\r\n").as_bytes());
            // Skip its continuation lines.
            let mut next = line_end;
            while next < header_end && matches!(message[next], b' ' | b'\t') {
                next =
                    find(&message[next..header_end], b"\r\n").map_or(header_end, |i| next + i + 2);
            }
            pos = next;
            continue;
        }
        out.extend_from_slice(line);
        pos = line_end;
    }
    if !replaced {
        out.extend_from_slice(format!("Subject: {subject}\r\n").as_bytes());
    }
    out.extend_from_slice(&message[pos.min(message.len())..]);
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
#[path = "rspamd_verdict_tests.rs"]
mod tests;
