//! The POP3 dot-stuffer (`proto::pop3::DotStuffer`, RETR and TOP) on arbitrary message bytes
//! in arbitrary chunks.
//!
//! Input: byte 0 = RETR (< 128) or `TOP n` (n = low 3 bits), byte 1 = chunking, the rest = the message file.
//!
//! Checks: chunked and whole agree; the response is CRLF lines ending in `.CRLF`, with no other
//! line that is just `.` (the client cannot be made to see an early end) and no bare CR-less
//! LF; for RETR, unstuffing the response gives back the message with bare LFs turned into
//! CRLF and a CRLF added to an unfinished last line; TOP output is a prefix of RETR output.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailroom_fuzz::Splitter;
use proto::pop3::{dot_stuff, DotStuffer};

fn stuffed(top: Option<u64>, chunks: &[&[u8]]) -> Vec<u8> {
    let mut s = DotStuffer::new(top);
    let mut out = Vec::new();
    for c in chunks {
        s.push(c, &mut out);
    }
    s.finish(&mut out);
    out
}

fuzz_target!(|input: &[u8]| {
    if input.len() < 2 {
        return;
    }
    let top = (input[0] >= 128).then_some((input[0] & 7) as u64);
    let msg = &input[2..];
    let whole = dot_stuff(msg, top);
    let chunks = Splitter::new(input[1] as u64, input[1] as usize % 8 + 1).split(msg);
    assert_eq!(stuffed(top, &chunks), whole, "chunking changes the output");

    assert!(whole.ends_with(b".\r\n"));
    let body = &whole[..whole.len() - 3];
    assert!(
        body.is_empty() || body.ends_with(b"\r\n"),
        "last line not terminated"
    );
    for (i, &b) in body.iter().enumerate() {
        if b == b'\n' {
            assert!(i > 0 && body[i - 1] == b'\r', "bare LF sent");
        }
    }
    for line in body.split(|&b| b == b'\n') {
        assert_ne!(line, b".\r", "early terminator line");
    }

    let retr = dot_stuff(msg, None);
    assert!(retr.starts_with(body), "TOP is not a prefix of RETR");
    if top.is_none() {
        // Unstuff and compare with the normalised message.
        let mut unstuffed = Vec::new();
        for line in body.split_inclusive(|&b| b == b'\n') {
            unstuffed.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
        }
        let mut norm = Vec::new();
        for (i, &b) in msg.iter().enumerate() {
            if b == b'\n' && (i == 0 || msg[i - 1] != b'\r') {
                norm.push(b'\r');
            }
            norm.push(b);
        }
        if !norm.is_empty() && !norm.ends_with(b"\n") {
            if norm.ends_with(b"\r") {
                norm.push(b'\n');
            } else {
                norm.extend_from_slice(b"\r\n");
            }
        }
        assert_eq!(unstuffed, norm, "RETR does not give back the message");
    }
});
