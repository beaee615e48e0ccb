//! BDAT framing (RFC 3030) in `proto::smtp::Connection` with large messages: chunk sizes,
//! `LAST`, RSET and other commands between chunks, and how the commands and chunk octets fall
//! into reads, including whole chunks arriving in the same read as their `BDAT` line (the case
//! that once kept a whole message in memory). The chunk octets are generated, so one small
//! input describes megabytes of mail.
//!
//! Input: byte 0 = settings (bits 0-1: items per read, 1..=4; bit 2: each `BDAT` line in a read
//! of its own, apart from its octets; bit 3: a header block that fails the header checks;
//! bits 4-5: the header size limit, below or above the 256 KiB spill size), then two-byte ops:
//! `0xFF n` is a command (`n % 4`: RSET and a new transaction, NOOP, the next chunk is `LAST`,
//! a malformed BDAT), anything else a chunk of `hi << 8 | lo` octets (high bit set: 32 times
//! `(hi & 0x7f) << 8 | lo`, up to about 1 MiB).
//!
//! Checks: no panic; replies well-formed; every spilled and committed octet is the generated
//! message at its offset (nothing lost, repeated or reordered across chunks and spills), a
//! commit's size equals the octets handed out, within the size limit; a message whose header
//! block is refused is never spilled; and heap use stays bounded by the spill size and the
//! largest read, never by the message size.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use mailroom_fuzz::{check_smtp_replies, peak, reset_peak, CountingAlloc};
use proto::smtp::{Connection, Event, Peer, Policy, RcptVerdict, Service, Session, SessionConfig};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

const MAX_SIZE: u64 = 2 << 20;
/// Octets generated per input at most (more than the size limit, so it is reached).
const MAX_GENERATED: usize = 3 << 20;
const START: &[u8] = b"MAIL FROM:<a@remote.test>\r\nRCPT TO:<b@example.test>\r\n";
const GOOD_HEADER: &[u8] = b"X-T: fuzz\r\n\r\n";
/// No end of header block follows: longer than the header limit, it is refused.
const BAD_HEADER: &[u8] = b"X-Long: ";

struct Local;

impl Policy for Local {
    fn check_rcpt(&self, address: &str, _sender: &str, _relay: bool) -> RcptVerdict {
        RcptVerdict::Accept(address.to_string())
    }

    fn may_send_as(&self, _user: &str, _address: &str) -> bool {
        false
    }
}

/// Length of the body pattern: prime, so it does not line up with chunk sizes.
const PERIOD: usize = 65_521;

/// The body pattern: letters, no line ends.
static PATTERN: [u8; PERIOD] = pattern();

const fn pattern() -> [u8; PERIOD] {
    let mut p = [0u8; PERIOD];
    let mut i = 0;
    while i < PERIOD {
        p[i] = b'a' + (((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40) % 26) as u8;
        i += 1;
    }
    p
}

/// Calls `f` with the pieces of the generated message (the header, then the pattern) that
/// cover `len` octets from `pos`.
fn pieces(header: &[u8], mut pos: usize, mut len: usize, mut f: impl FnMut(&[u8])) {
    while len > 0 {
        let piece = match header.get(pos..) {
            Some(rest) if !rest.is_empty() => rest,
            _ => &PATTERN[(pos - header.len()) % PERIOD..],
        };
        let n = piece.len().min(len);
        f(&piece[..n]);
        pos += n;
        len -= n;
    }
}

/// Checks that `bytes` is the generated message at `offset`.
fn verify(header: &[u8], bytes: &[u8], offset: u64) {
    let mut at = 0;
    pieces(header, offset as usize, bytes.len(), |want| {
        assert!(
            &bytes[at..at + want.len()] == want,
            "message octets {}..{} differ",
            offset as usize + at,
            offset as usize + at + want.len()
        );
        at += want.len();
    });
}

/// Cuts the client's bytes into reads of `per_read` items.
struct Reads {
    per_read: usize,
    items: usize,
    current: Vec<u8>,
    largest: usize,
}

impl Reads {
    fn push(&mut self, bytes: &[u8], conn: &mut Connection, out: &mut Outcome) {
        self.current.extend_from_slice(bytes);
        self.items += 1;
        if self.items >= self.per_read {
            self.flush(conn, out);
        }
    }

    fn flush(&mut self, conn: &mut Connection, out: &mut Outcome) {
        if self.current.is_empty() || out.closed {
            self.current.clear();
            return;
        }
        self.largest = self.largest.max(self.current.len());
        conn.receive(&self.current);
        self.current = Vec::new();
        self.items = 0;
        out.drive(conn);
    }
}

#[derive(Default)]
struct Outcome {
    header: &'static [u8],
    /// Octets of the current message handed out so far.
    offset: u64,
    spills: usize,
    commits: usize,
    closed: bool,
    /// Messages have a header block without an end: refused once longer than this.
    refused_past: Option<u64>,
}

impl Outcome {
    fn drive(&mut self, conn: &mut Connection) {
        loop {
            let event = conn.advance(&Local);
            check_smtp_replies(&conn.take_output());
            match event {
                Event::NeedInput => return,
                Event::Close => {
                    self.closed = true;
                    return;
                }
                Event::Spill(bytes) => {
                    // The spill size is above the header limit: the check has run.
                    assert!(self.refused_past.is_none(), "a refused header block spilled");
                    verify(self.header, &bytes, self.offset);
                    self.offset += bytes.len() as u64;
                    self.spills += 1;
                }
                Event::Abandon => self.offset = 0,
                Event::Commit { envelope, message } => {
                    verify(self.header, &message, self.offset);
                    let size = self.offset + message.len() as u64;
                    if let Some(limit) = self.refused_past {
                        assert!(size <= limit, "a refused header block committed");
                    }
                    assert_eq!(envelope.size, size, "size vs octets handed out");
                    assert!(size <= MAX_SIZE, "message over the size limit");
                    self.offset = 0;
                    self.commits += 1;
                    conn.committed(Ok("0123456789ABCDEF"));
                    check_smtp_replies(&conn.take_output());
                }
                e => panic!("unexpected event {e:?}"),
            }
        }
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&settings, ops)) = input.split_first() else {
        return;
    };
    let per_read = (settings & 3) as usize + 1;
    let line_apart = settings & 4 != 0;
    let bad_header = settings & 8 != 0;
    let max_header_size = match (settings >> 4) & 3 {
        0 => 1024,
        1 => 64 * 1024,
        2 => 300_000,
        _ => 4096,
    };
    let header = if bad_header { BAD_HEADER } else { GOOD_HEADER };

    let baseline = reset_peak();
    let config = Arc::new(SessionConfig {
        max_message_size: MAX_SIZE,
        max_header_size,
        max_errors: 50,
        ..SessionConfig::new("mx.example.test", Service::Mx)
    });
    let peer = Peer {
        ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        trusted: false,
    };
    let mut conn = Connection::new(Session::new(config, peer));
    let spill_at = conn.spill_at();
    check_smtp_replies(&conn.take_output());
    let mut out = Outcome {
        header,
        refused_past: bad_header.then_some(max_header_size as u64),
        ..Outcome::default()
    };
    let mut reads = Reads {
        per_read,
        items: 0,
        current: Vec::new(),
        largest: 0,
    };
    reads.push(b"EHLO fuzz\r\n", &mut conn, &mut out);
    reads.push(START, &mut conn, &mut out);
    // Octets of the current message sent so far, and of all messages.
    let (mut sent, mut generated) = (0u64, 0usize);
    let mut last = false;
    for op in ops.chunks_exact(2) {
        if out.closed || generated >= MAX_GENERATED {
            break;
        }
        let (hi, lo) = (op[0], op[1]);
        if hi == 0xFF {
            match lo % 4 {
                0 => {
                    reads.push(b"RSET\r\n", &mut conn, &mut out);
                    reads.push(START, &mut conn, &mut out);
                    sent = 0;
                }
                1 => reads.push(b"NOOP\r\n", &mut conn, &mut out),
                2 => last = true,
                _ => reads.push(b"BDAT 12x\r\n", &mut conn, &mut out),
            }
            continue;
        }
        let size = if hi & 0x80 == 0 {
            (hi as usize) << 8 | lo as usize
        } else {
            (((hi & 0x7f) as usize) << 8 | lo as usize) * 32
        };
        let size = size.min(MAX_GENERATED - generated);
        let command = format!("BDAT {size}{}\r\n", if last { " LAST" } else { "" });
        let mut chunk = Vec::with_capacity(command.len() + size);
        if line_apart {
            reads.push(command.as_bytes(), &mut conn, &mut out);
            reads.flush(&mut conn, &mut out);
        } else {
            chunk.extend_from_slice(command.as_bytes());
        }
        pieces(header, sent as usize, size, |p| chunk.extend_from_slice(p));
        reads.push(&chunk, &mut conn, &mut out);
        drop(chunk);
        sent += size as u64;
        generated += size;
        if last {
            reads.flush(&mut conn, &mut out);
            reads.push(START, &mut conn, &mut out);
            sent = 0;
            last = false;
        }
    }
    reads.flush(&mut conn, &mut out);
    // Heap: the message kept in memory (below the spill size, plus one read, doubled for Vec
    // growth), the connection's input (one read, kept as capacity, doubled), the read being
    // built and the chunk copied into it; never the whole message.
    let used = peak().saturating_sub(baseline);
    let bound = 2 * (spill_at + reads.largest) + 4 * reads.largest + 64 * 1024;
    assert!(
        used <= bound,
        "{used} bytes of heap (spill size {spill_at}, largest read {}, {} spills, {} commits)",
        reads.largest,
        out.spills,
        out.commits
    );
});
