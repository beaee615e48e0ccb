//! Text from the network made safe for the admin's terminal: `mailroom queue show|list` print
//! header lines, addresses and remote replies that a stranger wrote, and an escape sequence in
//! a Subject could otherwise drive the terminal (retitle it, rewrite the screen, paste into
//! the shell on some emulators).
//!
//! Every control character (C0 but TAB, DEL, C1, and the Unicode line and paragraph
//! separators) is shown as `\xNN` or `\u{NNNN}`; bytes that are not UTF-8 as `\xNN`; a
//! backslash as `\\`, so the output cannot be mistaken for an escape we made. Pure; no I/O.

/// `text` with every control character escaped.
pub fn safe(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        push_char(&mut out, c);
    }
    out
}

fn push_char(out: &mut String, c: char) {
    match c {
        '\\' => out.push_str("\\\\"),
        '\t' => out.push('\t'),
        c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
        c if (0x80..0xa0).contains(&(c as u32))
            || matches!(c, '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}')
            || ('\u{202a}'..='\u{202e}').contains(&c)
            || ('\u{2066}'..='\u{2069}').contains(&c) =>
        {
            out.push_str(&format!("\\u{{{:04x}}}", c as u32))
        }
        c => out.push(c),
    }
}

/// The header block of a raw message (up to the empty line) as printable lines: CRLF line
/// ends become `\n`; everything else, bare CR and LF included, is escaped.
pub fn header_block(message: &[u8]) -> String {
    let end = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 2)
        .unwrap_or(message.len());
    lines(&message[..end])
}

/// Message bytes as printable lines: CRLF line ends become `\n`; everything else, bare CR and
/// LF included, is escaped.
pub fn lines(bytes: &[u8]) -> String {
    let mut out = String::new();
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        let (body, eol) = match line.strip_suffix(b"\r\n") {
            Some(b) => (b, true),
            None => (line, false),
        };
        for chunk in body.utf8_chunks() {
            out.push_str(&safe(chunk.valid()));
            for b in chunk.invalid() {
                out.push_str(&format!("\\x{b:02x}"));
            }
        }
        if eol {
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_controls_and_keeps_text() {
        assert_eq!(safe("Grüße\tok"), "Grüße\tok");
        assert_eq!(safe("a\x1b]0;pwned\x07b"), "a\\x1b]0;pwned\\x07b");
        assert_eq!(
            safe("x\u{9b}31m\u{2028}\u{202e}"),
            "x\\u{009b}31m\\u{2028}\\u{202e}"
        );
        assert_eq!(safe("back\\x1b"), "back\\\\x1b");
        assert_eq!(safe("\x7f\r\n"), "\\x7f\\x0d\\x0a");
    }

    #[test]
    fn header_block_stops_at_the_body_and_escapes_bare_line_ends() {
        let msg = b"Subject: \x1b[2Jhi\r\nX: a\rb\nc\xff\r\n folded\r\n\r\nbody \x1b";
        assert_eq!(
            header_block(msg),
            "Subject: \\x1b[2Jhi\nX: a\\x0db\\x0ac\\xff\n folded\n"
        );
        assert!(!header_block(msg).contains('\x1b'));
    }
}
