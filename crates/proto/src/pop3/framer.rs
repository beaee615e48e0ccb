//! Line framing for one POP3 connection: received octets in, complete command lines out.
//!
//! The network loop hands over whatever it read ([`LineFramer::receive`]) and asks for the next
//! line ([`LineFramer::next_line`]) with the limit the session sets now
//! ([`Session::max_line_length`](super::Session::max_line_length)): 253 octets for a command
//! (RFC 2449 §4: 255 with CRLF), more for a SASL response. A line ends at LF; one CR before
//! it is dropped. Memory stays bounded: of an unfinished line at most `max + 2` octets are kept
//! and the rest is dropped as it arrives; an over-long line comes out as exactly `max + 1`
//! octets, so the session answers it with its usual `-ERR` and the next line is read normally.
//! Octets after a complete line stay buffered (pipelined commands, RFC 2449 §6.6), and
//! [`LineFramer::discard_buffered`] throws them away after `+OK` to STLS (RFC 2595 §4,
//! CVE-2011-0411: clear-text commands must never run inside TLS).
//!
//! Not here: reading the socket, timeouts, what a line means (`command`, `session`).

/// Cuts received octets into lines.
#[derive(Debug, Default)]
pub struct LineFramer {
    /// Received octets; those before `start` are already framed.
    input: Vec<u8>,
    start: usize,
    /// The line being assembled, at most `max + 2` octets (room for a CR to strip while an
    /// overflow still shows).
    line: Vec<u8>,
    /// The line being assembled had more octets than were kept.
    truncated: bool,
}

impl LineFramer {
    /// An empty framer.
    pub fn new() -> LineFramer {
        LineFramer::default()
    }

    /// Appends octets read from the connection. The loop calls this only after
    /// [`LineFramer::next_line`] returned `None`, so at most one read's worth is held here.
    pub fn receive(&mut self, bytes: &[u8]) {
        self.input.extend_from_slice(bytes);
    }

    /// The next complete line without its line end, or `None` until more octets arrive. A line
    /// longer than `max` octets is returned as `max + 1` octets (its first octets, padded if its
    /// CR was cut off), which the session refuses as too long.
    pub fn next_line(&mut self, max: usize) -> Option<Vec<u8>> {
        let pending = &self.input[self.start..];
        let (part, used, end) = match pending.iter().position(|&b| b == b'\n') {
            Some(p) => (&pending[..p], p + 1, true),
            None => (pending, pending.len(), false),
        };
        let room = (max + 2).saturating_sub(self.line.len());
        if part.len() > room {
            self.truncated = true;
        }
        self.line.extend_from_slice(&part[..part.len().min(room)]);
        self.start += used;
        if self.start == self.input.len() {
            self.input.clear();
            self.start = 0;
        }
        if !end {
            return None;
        }
        let mut line = std::mem::take(&mut self.line);
        let truncated = std::mem::take(&mut self.truncated);
        if line.last() == Some(&b'\r') && !truncated {
            line.pop();
        }
        if truncated || line.len() > max {
            line.truncate(max + 1);
            line.resize(max + 1, b'x');
        }
        Some(line)
    }

    /// Whether octets are buffered that no line has been returned for yet (the client
    /// pipelined more): the loop flushes its replies only when this is false.
    pub fn has_buffered(&self) -> bool {
        self.start < self.input.len() || !self.line.is_empty() || self.truncated
    }

    /// Drops every buffered octet (after `+OK` to STLS) and returns how many there were.
    pub fn discard_buffered(&mut self) -> usize {
        let dropped = self.input.len() - self.start + self.line.len();
        *self = LineFramer::default();
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every line of `input`, fed in pieces of `piece` octets.
    fn lines(input: &[u8], piece: usize, max: usize) -> Vec<Vec<u8>> {
        let mut framer = LineFramer::new();
        let mut out = Vec::new();
        for chunk in input.chunks(piece) {
            framer.receive(chunk);
            while let Some(line) = framer.next_line(max) {
                out.push(line);
            }
        }
        out
    }

    #[test]
    fn bounded_lines() {
        for piece in [1, 2, 7, 4096] {
            let got = lines(
                b"STAT\r\nLIST 1\nabcdefghijklmnop\r\nNOOP\r\npartial",
                piece,
                10,
            );
            assert_eq!(got.len(), 4, "piece {piece}");
            assert_eq!(got[0], b"STAT");
            assert_eq!(got[1], b"LIST 1");
            assert_eq!(got[2], b"abcdefghijk");
            assert_eq!(got[3], b"NOOP");
            // Exactly max octets plus CRLF is fine; max + 1 octets is too long even if the
            // truncation point falls on the CR.
            let got = lines(b"0123456789\r\n0123456789a\r\n", piece, 10);
            assert_eq!(got[0], b"0123456789");
            assert_eq!(got[1], b"0123456789a");
            let got = lines(b"0123456789ab\r\n", piece, 10);
            assert_eq!(got[0], b"0123456789a");
        }
    }

    #[test]
    fn long_line_keeps_bounded_memory() {
        let mut framer = LineFramer::new();
        for _ in 0..1000 {
            framer.receive(&[b'a'; 4096]);
            assert_eq!(framer.next_line(253), None);
            assert!(framer.line.len() <= 255 && framer.input.is_empty());
        }
        framer.receive(b"\r\nNOOP\r\n");
        assert_eq!(framer.next_line(253), Some(vec![b'a'; 254]));
        assert_eq!(framer.next_line(253), Some(b"NOOP".to_vec()));
        assert!(!framer.has_buffered());
    }

    #[test]
    fn pipelined_input_stays_buffered_until_discarded() {
        let mut framer = LineFramer::new();
        framer.receive(b"STLS\r\nUSER a\r\nPASS b\r\npart");
        assert_eq!(framer.next_line(253), Some(b"STLS".to_vec()));
        assert!(framer.has_buffered());
        assert_eq!(framer.discard_buffered(), 20);
        assert!(!framer.has_buffered());
        assert_eq!(framer.next_line(253), None);
        framer.receive(b"CAPA\r\n");
        assert_eq!(framer.next_line(253), Some(b"CAPA".to_vec()));
    }

    #[test]
    fn partial_line_counts_as_buffered() {
        let mut framer = LineFramer::new();
        framer.receive(b"US");
        assert_eq!(framer.next_line(253), None);
        assert!(framer.has_buffered());
        assert_eq!(framer.discard_buffered(), 2);
        framer.receive(b"ER x\r\n");
        assert_eq!(framer.next_line(253), Some(b"ER x".to_vec()));
    }
}
