//! SMTP replies (RFC 5321 §4.2) with enhanced status codes (RFC 3463, RFC 2034).
//!
//! A [`Reply`] is a code and one or more text lines; it knows how to write itself as
//! `code-text` continuation lines ending in `code text`. It does no I/O and makes no policy
//! decisions: the session decides which reply to give.

use std::fmt::Write as _;

/// One SMTP reply: a three-digit code and its text lines (each line already holds the
/// enhanced status code where one applies).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub lines: Vec<String>,
}

impl Reply {
    /// A single-line reply.
    pub fn new(code: u16, text: impl Into<String>) -> Reply {
        Reply {
            code,
            lines: vec![text.into()],
        }
    }

    /// A multi-line reply (EHLO, HELP).
    pub fn multi(code: u16, lines: Vec<String>) -> Reply {
        Reply { code, lines }
    }

    /// True for 2xx and 3xx.
    pub fn is_positive(&self) -> bool {
        self.code < 400
    }

    /// The wire form: every line CRLF-terminated, `-` after the code on all but the last.
    pub fn to_wire(&self) -> String {
        let mut out = String::new();
        let last = self.lines.len().saturating_sub(1);
        for (i, line) in self.lines.iter().enumerate() {
            let sep = if i == last { ' ' } else { '-' };
            // The text of a reply never holds CR or LF: it would split the reply.
            let clean: String = line
                .chars()
                .map(|c| if c == '\r' || c == '\n' { ' ' } else { c })
                .collect();
            let _ = write!(out, "{}{}{}\r\n", self.code, sep, clean);
        }
        if self.lines.is_empty() {
            let _ = write!(out, "{} \r\n", self.code);
        }
        out
    }

    /// The first line as it would appear in a log (no CRLF).
    pub fn summary(&self) -> String {
        format!(
            "{} {}",
            self.code,
            self.lines.first().map(String::as_str).unwrap_or("")
        )
    }
}

impl std::fmt::Display for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_wire())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_line() {
        assert_eq!(Reply::new(250, "2.0.0 Ok").to_wire(), "250 2.0.0 Ok\r\n");
    }

    #[test]
    fn multi_line() {
        let r = Reply::multi(
            250,
            vec!["mx".into(), "PIPELINING".into(), "SIZE 10".into()],
        );
        assert_eq!(r.to_wire(), "250-mx\r\n250-PIPELINING\r\n250 SIZE 10\r\n");
    }

    #[test]
    fn text_cannot_inject_lines() {
        let r = Reply::new(550, "5.1.1 <a\r\n250 ok>");
        assert_eq!(r.to_wire(), "550 5.1.1 <a  250 ok>\r\n");
    }
}
