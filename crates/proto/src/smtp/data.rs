//! The DATA reader: turns the dot-stuffed byte stream after `354` into message bytes.
//!
//! RFC 5321 §4.1.1.4 and §4.5.2: the message ends only at `<CR><LF>.<CR><LF>`, and a leading
//! dot on a line is removed. RFC 5321 §2.3.8 forbids bare CR and bare LF; accepting them as line
//! ends is what makes SMTP smuggling possible (CVE-2023-51764), so this reader never treats
//! them as a line end: it notes that the message holds one, keeps reading to the real end, and
//! the session then rejects the whole message. It also counts the size and stops storing bytes
//! once the limit is passed (the rest is read and dropped). It does no I/O: the network loop
//! feeds it whatever bytes arrived and gets back how many it consumed.

/// How a DATA section ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataEnd {
    /// A clean message; its bytes are in the output buffer.
    Complete,
    /// Larger than the limit (the output holds only a prefix).
    TooBig,
    /// The message held a bare CR or LF (possible smuggling attempt).
    BareLineEnding,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// At the start of a line.
    LineStart,
    /// Inside a line.
    Text,
    /// Just after a CR inside a line.
    Cr,
    /// A line started with a dot.
    Dot,
    /// A line holding only a dot, then CR.
    DotCr,
}

/// Incremental DATA decoder. Create one per DATA command.
#[derive(Debug)]
pub struct DataReader {
    state: State,
    max_size: u64,
    size: u64,
    too_big: bool,
    bare: bool,
}

impl DataReader {
    /// A reader that stores at most `max_size` octets of message.
    pub fn new(max_size: u64) -> DataReader {
        DataReader {
            state: State::LineStart,
            max_size,
            size: 0,
            too_big: false,
            bare: false,
        }
    }

    /// Octets of message seen so far (after unstuffing), including any dropped past the limit.
    pub fn size(&self) -> u64 {
        self.size
    }

    fn emit(&mut self, out: &mut Vec<u8>, bytes: &[u8]) {
        self.size += bytes.len() as u64;
        if self.size > self.max_size {
            self.too_big = true;
        }
        if !self.too_big {
            out.extend_from_slice(bytes);
        }
    }

    /// Feeds received bytes. Message bytes are appended to `out`. Returns how many input bytes
    /// were consumed and, when the terminating `.` line was consumed, how the message ended; the
    /// bytes after that belong to the next command.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> (usize, Option<DataEnd>) {
        let mut i = 0;
        while i < input.len() {
            match self.state {
                State::Text | State::LineStart => {
                    // Fast path: copy everything up to the next CR or LF in one go.
                    let rest = &input[i..];
                    let start_of_line = self.state == State::LineStart;
                    if start_of_line && rest[0] == b'.' {
                        self.state = State::Dot;
                        i += 1;
                        continue;
                    }
                    let stop = memchr::memchr2(b'\r', b'\n', rest).unwrap_or(rest.len());
                    if stop > 0 {
                        self.emit(out, &rest[..stop]);
                        self.state = State::Text;
                        i += stop;
                        continue;
                    }
                    if rest[0] == b'\r' {
                        self.state = State::Cr;
                    } else {
                        // Bare LF: kept as data, never a line end.
                        self.bare = true;
                        self.emit(out, b"\n");
                        self.state = State::Text;
                    }
                    i += 1;
                }
                State::Cr => {
                    if input[i] == b'\n' {
                        self.emit(out, b"\r\n");
                        self.state = State::LineStart;
                        i += 1;
                    } else {
                        // Bare CR: keep it, reprocess this byte as text.
                        self.bare = true;
                        self.emit(out, b"\r");
                        self.state = State::Text;
                    }
                }
                State::Dot => match input[i] {
                    b'\r' => {
                        self.state = State::DotCr;
                        i += 1;
                    }
                    _ => {
                        // RFC 5321 §4.5.2: drop the leading dot, the rest is text
                        // (a bare LF right after the dot is caught by the Text state).
                        self.state = State::Text;
                    }
                },
                State::DotCr => {
                    if input[i] == b'\n' {
                        i += 1;
                        self.state = State::LineStart;
                        let end = if self.bare {
                            DataEnd::BareLineEnding
                        } else if self.too_big {
                            DataEnd::TooBig
                        } else {
                            DataEnd::Complete
                        };
                        return (i, Some(end));
                    }
                    // ".\r" then something else: a bare CR after an unstuffed dot.
                    self.bare = true;
                    self.emit(out, b"\r");
                    self.state = State::Text;
                }
            }
        }
        (i, None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` one byte at a time and in one piece; both must agree.
    fn run(input: &[u8]) -> (Vec<u8>, Option<DataEnd>, usize) {
        let mut whole = Vec::new();
        let mut r = DataReader::new(1 << 20);
        let (used, end) = r.feed(input, &mut whole);

        let mut bytewise = Vec::new();
        let mut r2 = DataReader::new(1 << 20);
        let mut used2 = 0;
        let mut end2 = None;
        for b in input {
            let (n, e) = r2.feed(std::slice::from_ref(b), &mut bytewise);
            used2 += n;
            if e.is_some() {
                end2 = e;
                break;
            }
        }
        assert_eq!(whole, bytewise);
        assert_eq!(end, end2);
        assert_eq!(used, used2);
        (whole, end, used)
    }

    #[test]
    fn plain_message() {
        let (out, end, used) = run(b"Subject: x\r\n\r\nhello\r\n.\r\nQUIT\r\n");
        assert_eq!(out, b"Subject: x\r\n\r\nhello\r\n");
        assert_eq!(end, Some(DataEnd::Complete));
        assert_eq!(used, 24);
    }

    #[test]
    fn empty_message() {
        let (out, end, used) = run(b".\r\n");
        assert!(out.is_empty());
        assert_eq!(end, Some(DataEnd::Complete));
        assert_eq!(used, 3);
    }

    #[test]
    fn dot_unstuffing() {
        let (out, end, _) = run(b"..leading\r\n...\r\n.x\r\n.\r\n");
        assert_eq!(out, b".leading\r\n..\r\nx\r\n");
        assert_eq!(end, Some(DataEnd::Complete));
    }

    #[test]
    fn smuggling_sequences_never_end_data() {
        // Each of these must not end the message; the real end follows.
        for seq in [
            &b"\n.\r\n"[..],
            b"\n.\n",
            b"\r.\r\n",
            b"\r\n.\n",
            b"\r\n.\r",
            b"\r.\n",
            b"\n.\r",
        ] {
            let mut input = b"a".to_vec();
            input.extend_from_slice(seq);
            input.extend_from_slice(b"MAIL FROM:<evil@x>\r\n.\r\n");
            let (out, end, used) = run(&input);
            assert_eq!(end, Some(DataEnd::BareLineEnding), "{seq:?}");
            assert_eq!(used, input.len(), "{seq:?}");
            assert!(out.ends_with(b"MAIL FROM:<evil@x>\r\n"), "{seq:?}");
        }
    }

    #[test]
    fn bare_lf_and_cr_flagged() {
        assert_eq!(run(b"a\nb\r\n.\r\n").1, Some(DataEnd::BareLineEnding));
        assert_eq!(run(b"a\rb\r\n.\r\n").1, Some(DataEnd::BareLineEnding));
        assert_eq!(run(b"a\r\r\n.\r\n").1, Some(DataEnd::BareLineEnding));
    }

    #[test]
    fn crlf_only_is_clean() {
        assert_eq!(run(b"a\r\n\r\nb\r\n.\r\n").1, Some(DataEnd::Complete));
    }

    #[test]
    fn incomplete_needs_more() {
        let (_, end, used) = run(b"abc\r\n.\r");
        assert_eq!(end, None);
        assert_eq!(used, 7);
    }

    #[test]
    fn size_limit() {
        let mut r = DataReader::new(5);
        let mut out = Vec::new();
        let (_, end) = r.feed(b"0123456789\r\n.\r\n", &mut out);
        assert_eq!(end, Some(DataEnd::TooBig));
        assert!(out.len() <= 5);
        assert_eq!(r.size(), 12);
    }

    #[test]
    fn eight_bit_and_nul_pass_through() {
        let (out, end, _) = run(b"caf\xc3\xa9 \x00\xff\r\n.\r\n");
        assert_eq!(out, b"caf\xc3\xa9 \x00\xff\r\n");
        assert_eq!(end, Some(DataEnd::Complete));
    }
}
