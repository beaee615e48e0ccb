//! Byte-stuffing of a message for a POP3 multi-line response (RFC 1939 §3), with the header
//! plus N body lines cut of `TOP` (RFC 1939 §7).
//!
//! What it does: given the message in arbitrary chunks, emits the bytes to send: every line
//! beginning with `.` gets an extra `.`, bare LF becomes CRLF, and `finish` makes sure the last
//! line ends in CRLF before appending the terminating `.\r\n`. Chunk boundaries may fall
//! anywhere, including between CR and LF.
//!
//! What it does not do: read files or write sockets. Note that normalising a bare LF adds an
//! octet, so for a (foreign) file with bare LFs the octets sent exceed its stat() size; files
//! written by Mailroom's MDA are already CRLF and are sent unchanged apart from stuffing.

/// Incremental dot-stuffer; one per message sent.
#[derive(Debug, Clone)]
pub struct DotStuffer {
    /// `Some(n)`: TOP, send the header and at most `n` body lines.
    top_lines: Option<u64>,
    at_line_start: bool,
    prev_cr: bool,
    line_has_content: bool,
    in_body: bool,
    body_lines: u64,
    done: bool,
}

impl DotStuffer {
    /// Creates a stuffer for RETR (`None`) or for `TOP msg n` (`Some(n)`).
    pub fn new(top_lines: Option<u64>) -> Self {
        DotStuffer {
            top_lines,
            at_line_start: true,
            prev_cr: false,
            line_has_content: false,
            in_body: false,
            body_lines: 0,
            done: false,
        }
    }

    /// True once a TOP cut has been reached: the rest of the message need not be read.
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Appends the stuffed form of `chunk` to `out`.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        out.reserve(chunk.len() + chunk.len() / 64 + 4);
        for &b in chunk {
            if self.done {
                return;
            }
            if self.at_line_start {
                if let (true, Some(max)) = (self.in_body, self.top_lines) {
                    if self.body_lines >= max {
                        self.done = true;
                        return;
                    }
                }
                // RFC 1939 §3: lines starting with the termination octet are byte-stuffed.
                if b == b'.' {
                    out.push(b'.');
                }
                self.at_line_start = false;
                self.line_has_content = false;
            }
            match b {
                b'\n' => {
                    if !self.prev_cr {
                        out.push(b'\r');
                    }
                    out.push(b'\n');
                    self.end_line();
                }
                b'\r' => {
                    if self.prev_cr {
                        // The previous CR was not part of a CRLF: it is content.
                        self.line_has_content = true;
                    }
                    out.push(b'\r');
                    self.prev_cr = true;
                }
                _ => {
                    out.push(b);
                    self.line_has_content = true;
                    self.prev_cr = false;
                }
            }
        }
    }

    fn end_line(&mut self) {
        if self.in_body {
            self.body_lines += 1;
        } else if !self.line_has_content {
            // RFC 5322 §2.1: the first empty line separates header from body.
            self.in_body = true;
        }
        self.at_line_start = true;
        self.prev_cr = false;
    }

    /// Terminates the response: completes an unfinished last line with CRLF and appends the
    /// `.\r\n` terminator (RFC 1939 §3).
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if !self.done && !self.at_line_start {
            if self.prev_cr {
                out.push(b'\n');
            } else {
                out.extend_from_slice(b"\r\n");
            }
        }
        self.done = true;
        out.extend_from_slice(b".\r\n");
    }
}

/// True when RETR sends `message` exactly as it is, followed by `.\r\n`: no line starts with
/// `.`, every LF is preceded by CR, and the message is empty or ends with CRLF. Mailroom's MDA
/// writes such files unless a line starts with a dot; the network loop then sends the file's
/// bytes without the byte-at-a-time [`DotStuffer`] pass. One `memchr` scan over the line ends.
pub fn sent_unchanged(message: &[u8]) -> bool {
    if message.first() == Some(&b'.') {
        return false;
    }
    if !message.is_empty() && !message.ends_with(b"\r\n") {
        return false;
    }
    memchr::memchr_iter(b'\n', message)
        .all(|i| i > 0 && message[i - 1] == b'\r' && message.get(i + 1) != Some(&b'.'))
}

/// Stuffs a whole message in one go (convenience for tests and small messages).
pub fn dot_stuff(message: &[u8], top_lines: Option<u64>) -> Vec<u8> {
    let mut s = DotStuffer::new(top_lines);
    let mut out = Vec::with_capacity(message.len() + 8);
    s.push(message, &mut out);
    s.finish(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const MSG: &[u8] = b"Subject: x\r\nFrom: a@b\r\n\r\nline1\r\n.line2\r\n.\r\nline4\r\n";

    #[test]
    fn stuffs_dots() {
        assert_eq!(
            dot_stuff(MSG, None),
            b"Subject: x\r\nFrom: a@b\r\n\r\nline1\r\n..line2\r\n..\r\nline4\r\n.\r\n"
        );
    }

    #[test]
    fn every_chunking_gives_the_same_result() {
        let whole = dot_stuff(MSG, None);
        for size in 1..MSG.len() {
            let mut s = DotStuffer::new(None);
            let mut out = Vec::new();
            for c in MSG.chunks(size) {
                s.push(c, &mut out);
            }
            s.finish(&mut out);
            assert_eq!(out, whole, "chunk size {size}");
        }
        for top in 0..5 {
            let whole = dot_stuff(MSG, Some(top));
            let mut s = DotStuffer::new(Some(top));
            let mut out = Vec::new();
            for c in MSG.chunks(1) {
                s.push(c, &mut out);
            }
            s.finish(&mut out);
            assert_eq!(out, whole, "top {top}");
        }
    }

    #[test]
    fn final_line_without_crlf() {
        assert_eq!(dot_stuff(b"a\r\nb", None), b"a\r\nb\r\n.\r\n");
        assert_eq!(dot_stuff(b"a\r\n.", None), b"a\r\n..\r\n.\r\n");
        assert_eq!(dot_stuff(b"a\r", None), b"a\r\n.\r\n");
        assert_eq!(dot_stuff(b"", None), b".\r\n");
    }

    /// `sent_unchanged` says yes exactly when stuffing changes nothing, over every message of
    /// up to 6 octets from an alphabet of the octets that matter.
    #[test]
    fn sent_unchanged_agrees_with_the_stuffer() {
        let alphabet = [b'.', b'\r', b'\n', b'a'];
        let mut yes = 0;
        for len in 0..=6u32 {
            for code in 0..alphabet.len().pow(len) {
                let mut c = code;
                let msg: Vec<u8> = (0..len)
                    .map(|_| {
                        let b = alphabet[c % alphabet.len()];
                        c /= alphabet.len();
                        b
                    })
                    .collect();
                let mut same = msg.clone();
                same.extend_from_slice(b".\r\n");
                let want = dot_stuff(&msg, None) == same;
                assert_eq!(sent_unchanged(&msg), want, "{msg:?}");
                yes += usize::from(want);
            }
        }
        assert!(yes > 10);
        assert!(sent_unchanged(b"Subject: x\r\n\r\nbody\r\n"));
        assert!(!sent_unchanged(MSG));
    }

    #[test]
    fn bare_lf_becomes_crlf() {
        assert_eq!(dot_stuff(b"a\nb\n", None), b"a\r\nb\r\n.\r\n");
    }

    #[test]
    fn top() {
        assert_eq!(
            dot_stuff(MSG, Some(0)),
            b"Subject: x\r\nFrom: a@b\r\n\r\n.\r\n"
        );
        assert_eq!(
            dot_stuff(MSG, Some(2)),
            b"Subject: x\r\nFrom: a@b\r\n\r\nline1\r\n..line2\r\n.\r\n"
        );
        assert_eq!(dot_stuff(MSG, Some(100)), dot_stuff(MSG, None));
        // No body at all: the whole message is header.
        assert_eq!(
            dot_stuff(b"Subject: x\r\n", Some(0)),
            b"Subject: x\r\n.\r\n"
        );
        let mut s = DotStuffer::new(Some(0));
        let mut out = Vec::new();
        s.push(MSG, &mut out);
        assert!(s.is_done());
    }
}
