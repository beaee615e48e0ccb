//! The relay's view of a message that is read in chunks, sans-I/O: [`DotStuffer`] turns
//! message bytes into what goes on the wire (the DATA section of RFC 5321 §4.5.2, or the
//! octets of `BDAT` chunks, RFC 3030) and [`TraitsScanner`] finds the [`MessageTraits`]
//! (size, 8-bit data, SMTPUTF8) before MAIL is sent. Both carry their state across chunk
//! boundaries, so a chunk may end anywhere (between CR and LF, right before a leading dot),
//! and both keep only a few octets of state whatever the message size.
//!
//! They do no I/O and do not choose chunk sizes: the relay reads the spool file in bounded
//! blocks and feeds them here.

use super::MessageTraits;

/// Streaming form of [`super::dot_stuff`]: fed the message in chunks of any size, it emits
/// exactly the bytes `dot_stuff` emits for the whole message. Every line end leaves as CRLF
/// (a bare CR or bare LF too: no bare CR or LF ever reaches the wire, RFC 5321 §2.3.8), and
/// with [`DotStuffer::data`] a leading dot is doubled and [`finish`](Self::finish) ends the
/// section with `.` CRLF. [`DotStuffer::chunked`] repairs line ends only, for `BDAT`, where
/// the octets are counted instead of dot-terminated (RFC 3030 §2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DotStuffer {
    /// Double a leading dot and end with `.` CRLF (DATA); otherwise line ends only (BDAT).
    dots: bool,
    /// The next octet starts a line.
    line_start: bool,
    /// The last octet fed was a CR whose line end has not been written yet: the next octet
    /// decides whether it was CRLF or a bare CR (both leave as one CRLF).
    cr: bool,
}

impl DotStuffer {
    /// For a DATA section: dot-stuffing, CRLF line ends, the `.` CRLF terminator.
    pub fn data() -> DotStuffer {
        DotStuffer {
            dots: true,
            line_start: true,
            cr: false,
        }
    }

    /// For `BDAT` chunks: CRLF line ends only; a message already in CRLF form passes unchanged.
    pub fn chunked() -> DotStuffer {
        DotStuffer {
            dots: false,
            ..DotStuffer::data()
        }
    }

    /// The most octets [`feed`](Self::feed) appends for `n` octets of input (every octet a
    /// bare line end or a leading dot), and [`finish`](Self::finish) at most 5 more.
    pub fn max_output(n: usize) -> usize {
        2 * n + 5
    }

    /// Appends the wire form of `input` to `out`. A CR at the end of `input` is held back
    /// until the next octet (or [`finish`](Self::finish)) shows whether an LF follows.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        let mut i = 0;
        while i < input.len() {
            if self.cr {
                self.cr = false;
                out.extend_from_slice(b"\r\n");
                self.line_start = true;
                if input[i] == b'\n' {
                    i += 1;
                    continue;
                }
            }
            match input[i] {
                b'\r' => {
                    self.cr = true;
                    i += 1;
                }
                b'\n' => {
                    out.extend_from_slice(b"\r\n");
                    self.line_start = true;
                    i += 1;
                }
                b => {
                    if self.line_start && self.dots && b == b'.' {
                        out.push(b'.');
                    }
                    self.line_start = false;
                    // The rest of the line goes out as it is.
                    let end =
                        memchr::memchr2(b'\r', b'\n', &input[i..]).map_or(input.len(), |p| i + p);
                    out.extend_from_slice(&input[i..end]);
                    i = end;
                }
            }
        }
    }

    /// Appends what ends the message: a held-back CR as CRLF; for DATA, a CRLF if the last
    /// line has none and then `.` CRLF.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.cr {
            self.cr = false;
            out.extend_from_slice(b"\r\n");
            self.line_start = true;
        }
        if self.dots {
            if !self.line_start {
                out.extend_from_slice(b"\r\n");
                self.line_start = true;
            }
            out.extend_from_slice(b".\r\n");
        }
    }
}

/// Streaming form of [`MessageTraits::of`]: fed the message in chunks, [`finish`]
/// (Self::finish) gives the same traits as `of` on the whole message. Keeps the last three
/// octets and a few positions, nothing else.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TraitsScanner {
    /// Octets fed so far.
    len: u64,
    /// Where the first octet above 127 is.
    first_8bit: Option<u64>,
    /// Where the first CRLF CRLF starts (the end of the header section).
    crlfcrlf: Option<u64>,
    /// Where the first LF LF starts (the header end of a message with bare LFs).
    lflf: Option<u64>,
    /// Bare CRs and bare LFs: each becomes two octets on the wire.
    bare: u64,
    /// The last three octets fed, the latest last (zeros before the start).
    tail: [u8; 3],
}

impl TraitsScanner {
    pub fn new() -> TraitsScanner {
        TraitsScanner::default()
    }

    /// Looks at the next chunk of the message. Line ends are found with `memchr` (one pass
    /// for LFs, one count of CRs): bare CRs are the CRs not followed by an LF.
    pub fn feed(&mut self, chunk: &[u8]) {
        let Some(&last) = chunk.last() else {
            return;
        };
        let start = self.len;
        // The octet at absolute position `at` (which is in this chunk or among the last three).
        let octet = |at: u64| -> u8 {
            if at >= start {
                chunk[(at - start) as usize]
            } else {
                // 1 to 3 octets back: the callers never look further.
                self.tail[3 - (start - at) as usize]
            }
        };
        // A CR at the end of the previous chunk was waiting for this octet.
        if start > 0 && self.tail[2] == b'\r' && chunk[0] != b'\n' {
            self.bare += 1;
        }
        if self.first_8bit.is_none() && !chunk.is_ascii() {
            if let Some(p) = chunk.iter().position(|b| !b.is_ascii()) {
                self.first_8bit = Some(start + p as u64);
            }
        }
        let (mut crlfcrlf, mut lflf) = (self.crlfcrlf, self.lflf);
        // CRs of this chunk followed by an LF in this chunk, and bare LFs.
        let (mut pairs, mut bare_lf) = (0u64, 0u64);
        for k in memchr::memchr_iter(b'\n', chunk) {
            let at = start + k as u64;
            let prev = if at == 0 { 0 } else { octet(at - 1) };
            if prev == b'\r' {
                pairs += u64::from(k > 0);
            } else {
                bare_lf += 1;
            }
            if prev == b'\n' && lflf.is_none() {
                lflf = Some(at - 1);
            }
            if at >= 3 && crlfcrlf.is_none() && [octet(at - 3), octet(at - 2), prev] == *b"\r\n\r" {
                crlfcrlf = Some(at - 3);
            }
        }
        // A CR at the end of the chunk: the next chunk (or `finish`) decides.
        let crs = memchr::memchr_iter(b'\r', chunk).count() as u64 - u64::from(last == b'\r');
        (self.crlfcrlf, self.lflf) = (crlfcrlf, lflf);
        self.bare += bare_lf + (crs - pairs);
        for &b in chunk.iter().rev().take(3).rev() {
            self.tail = [self.tail[1], self.tail[2], b];
        }
        self.len += chunk.len() as u64;
    }

    /// The traits of everything fed, for this envelope.
    pub fn finish(&self, sender: &str, recipients: &[String]) -> MessageTraits {
        let bare_cr_at_end = u64::from(self.len > 0 && self.tail[2] == b'\r');
        let header_end = self.crlfcrlf.or(self.lflf).unwrap_or(self.len);
        MessageTraits {
            smtputf8: !sender.is_ascii()
                || recipients.iter().any(|r| !r.is_ascii())
                || self.first_8bit.is_some_and(|p| p < header_end),
            eight_bit: self.first_8bit.is_some(),
            size: self.len + self.bare + bare_cr_at_end,
            require_tls: false,
        }
    }
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;
