//! Tests of the memory bound on a message being received: past
//! [`Connection::spill_at`] octets the bytes leave as [`Event::Spill`], however the client
//! frames them (DATA, BDAT chunks cut across reads, or each chunk arriving whole together
//! with its `BDAT` line, as a pipelining client sends them).

use std::sync::Arc;

use super::*;

struct LocalOnly;

impl Policy for LocalOnly {
    fn may_send_as(&self, _user: &str, _address: &str) -> bool {
        false
    }

    fn check_rcpt(&self, address: &str, _sender: &str, _relay_allowed: bool) -> RcptVerdict {
        match address::split(address) {
            Some((_, "example.test")) => RcptVerdict::Accept(address.to_string()),
            _ => RcptVerdict::UnknownUser,
        }
    }
}

/// What a run produced.
#[derive(Default)]
struct Totals {
    spills: usize,
    spilled: Vec<u8>,
    /// Largest number of message octets handed out in one event.
    largest_event: usize,
    commits: Vec<(Envelope, Vec<u8>)>,
    abandons: u32,
    output: String,
}

/// Feeds each read to a port 25 session (8 MiB size limit, `max_header_size` header limit)
/// and performs the events as the network loop does.
fn feed(reads: &[Vec<u8>], max_header_size: usize) -> (Totals, usize) {
    let session = Session::new(
        Arc::new(SessionConfig {
            max_message_size: 8 << 20,
            max_header_size,
            ..SessionConfig::new("mx.example.test", Service::Mx)
        }),
        Peer {
            ip: "192.0.2.1".parse().unwrap(),
            trusted: false,
        },
    );
    let mut conn = Connection::new(session);
    let spill_at = conn.spill_at();
    let mut t = Totals::default();
    for read in reads {
        conn.receive(read);
        loop {
            match conn.advance(&LocalOnly) {
                Event::NeedInput => break,
                Event::Spill(b) => {
                    t.spills += 1;
                    t.largest_event = t.largest_event.max(b.len());
                    t.spilled.extend_from_slice(&b);
                }
                Event::Abandon => {
                    t.abandons += 1;
                    t.spilled.clear();
                }
                Event::Commit { envelope, message } => {
                    t.largest_event = t.largest_event.max(message.len());
                    t.commits.push((envelope, message));
                    conn.committed(Ok("ID"));
                }
                e => panic!("{e:?}"),
            }
        }
        t.output
            .push_str(&String::from_utf8(conn.take_output()).unwrap());
    }
    (t, spill_at)
}

const START: &[u8] = b"EHLO c\r\nMAIL FROM:<s@r.test>\r\nRCPT TO:<alice@example.test>\r\n";

/// The message: a header block, then `size` octets of body in total.
fn message(header: &str, size: usize) -> Vec<u8> {
    let mut m = format!("{header}\r\n\r\n").into_bytes();
    let mut i = 0u32;
    while m.len() < size {
        m.extend_from_slice(format!("{i:08} {}\r\n", "x".repeat(50)).as_bytes());
        i += 1;
    }
    m.truncate(size);
    m
}

/// One read per chunk: `BDAT n` and its `n` octets together (`LAST` on the final one).
fn bdat_reads(message: &[u8], chunk: usize) -> Vec<Vec<u8>> {
    let mut reads = vec![START.to_vec()];
    let pieces: Vec<&[u8]> = message.chunks(chunk).collect();
    for (i, piece) in pieces.iter().enumerate() {
        let last = if i + 1 == pieces.len() { " LAST" } else { "" };
        let mut read = format!("BDAT {}{last}\r\n", piece.len()).into_bytes();
        read.extend_from_slice(piece);
        reads.push(read);
    }
    reads
}

#[test]
fn whole_bdat_chunks_spill_and_memory_stays_bounded() {
    // 130 chunks of 60,000 octets (7.8 MB), each arriving whole with its BDAT line: the case
    // that once kept the entire message in memory.
    let msg = message("Subject: chunks", 130 * 60_000);
    let (t, spill_at) = feed(&bdat_reads(&msg, 60_000), 4096);
    assert_eq!(t.commits.len(), 1, "{}", t.output);
    let (env, tail) = &t.commits[0];
    assert!(t.spills > 20, "only {} spills", t.spills);
    assert!(
        t.largest_event <= spill_at + 60_000 + 16,
        "{} octets held in memory at once (limit {spill_at} + one read)",
        t.largest_event
    );
    // The message arrives whole and in order.
    assert_eq!(env.size, msg.len() as u64);
    let mut all = t.spilled.clone();
    all.extend_from_slice(tail);
    assert!(all == msg, "message bytes differ");
    assert!(t.output.ends_with("250 2.0.0 Ok: queued as ID\r\n"));
}

#[test]
fn several_whole_chunks_in_one_read_spill_too() {
    // Five 100,000-octet chunks per read (a client that pipelines BDATs).
    let msg = message("Subject: batched", 5_000_000);
    let reads: Vec<Vec<u8>> = bdat_reads(&msg, 100_000)
        .chunks(5)
        .map(|group| group.concat())
        .collect();
    let (t, spill_at) = feed(&reads, 4096);
    assert_eq!(t.commits.len(), 1, "{}", t.output);
    assert!(t.spills > 5, "only {} spills", t.spills);
    assert!(t.largest_event <= spill_at + 100_000, "{}", t.largest_event);
    let mut all = t.spilled.clone();
    all.extend_from_slice(&t.commits[0].1);
    assert!(all == msg, "message bytes differ");
}

#[test]
fn whole_chunks_with_a_refused_header_block_are_never_spilled() {
    // More Received: headers than allowed: found before the first spill, nothing is kept.
    let mut header = String::new();
    for _ in 0..101 {
        header.push_str("Received: from a by b; date\r\n");
    }
    header.push_str("Subject: loop");
    let msg = message(&header, 2_000_000);
    let (t, _) = feed(&bdat_reads(&msg, 50_000), 8192);
    assert_eq!((t.spills, t.commits.len(), t.abandons), (0, 0, 0));
    assert!(t
        .output
        .ends_with("554 5.4.6 Too many hops (Received: headers): mail loop\r\n"));
}

#[test]
fn spilled_chunks_of_a_reset_message_are_abandoned() {
    let msg = message("Subject: reset", 1_000_000);
    let mut reads = bdat_reads(&msg, 50_000);
    reads.pop();
    reads.push(b"RSET\r\n".to_vec());
    let (t, _) = feed(&reads, 4096);
    assert!(t.spills > 0);
    assert_eq!((t.commits.len(), t.abandons), (0, 1));
    assert!(t.output.ends_with("250 2.0.0 Ok\r\n"), "{}", t.output);
}

/// DATA reserves the `SIZE=` that MAIL declared (so a message is not copied as its buffer
/// grows), but at most `SPILL_AT`: a client that declares 8 MiB and sends nothing gets no
/// 8 MiB buffer (nor one of `max_header_size`, 1 MiB here).
#[test]
fn data_reserves_the_declared_size_up_to_the_spill_point() {
    for (declared, want_at_least, want_at_most) in [
        (None, 0, 0),
        (Some(100_000), 100_000, conn::SPILL_AT),
        (Some(8_000_000), conn::SPILL_AT, conn::SPILL_AT),
    ] {
        let session = Session::new(
            Arc::new(SessionConfig {
                max_message_size: 8 << 20,
                ..SessionConfig::new("mx.example.test", Service::Mx)
            }),
            Peer {
                ip: "192.0.2.1".parse().unwrap(),
                trusted: false,
            },
        );
        let mut conn = Connection::new(session);
        let size = declared.map(|n| format!(" SIZE={n}")).unwrap_or_default();
        conn.receive(
            format!(
                "EHLO c.test\r\nMAIL FROM:<a@c.test>{size}\r\nRCPT TO:<u@example.test>\r\nDATA\r\n"
            )
            .as_bytes(),
        );
        assert!(matches!(conn.advance(&LocalOnly), Event::NeedInput));
        let cap = conn.message_capacity();
        assert!(
            (want_at_least..=want_at_most).contains(&cap),
            "SIZE {declared:?}: capacity {cap}"
        );
    }
}
