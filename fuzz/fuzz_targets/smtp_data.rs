//! The DATA reader (`proto::smtp::DataReader`) against a reference model of RFC 5321
//! §4.1.1.4 / §4.5.2, fed whole, byte by byte and in arbitrary chunks.
//!
//! Input: byte 0 = size limit selector, byte 1 = chunking, the rest = bytes after the 354.
//!
//! Checks: the three feedings agree (output, consumed count, ending, size; past the size
//! limit the stored outputs need only be prefixes of each other); the message ends exactly
//! at the first `<CRLF>.<CRLF>` (the start of the section counts as a line start) and nowhere
//! else, so no bare-LF / bare-CR sequence (`<LF>.<LF>`, `<CR>.<CR>`, ...) can end it (SMTP
//! smuggling, CVE-2023-51764); `Complete` implies the section had no bare CR or LF and was
//! within the limit; `BareLineEnding` implies it had one; the output of a clean section is its
//! dot-unstuffed text, and dot-stuffing that gives a section that reads back the same; stored
//! bytes never exceed the limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mailroom_fuzz::Splitter;
use proto::smtp::{DataEnd, DataReader};

struct Run {
    out: Vec<u8>,
    used: usize,
    end: Option<DataEnd>,
    size: u64,
}

fn feed(max: u64, chunks: &[&[u8]]) -> Run {
    let mut r = DataReader::new(max);
    let mut out = Vec::new();
    let mut used = 0;
    let mut end = None;
    for chunk in chunks {
        let (n, e) = r.feed(chunk, &mut out);
        assert!(n <= chunk.len());
        used += n;
        if e.is_some() {
            end = e;
            break;
        }
        assert_eq!(n, chunk.len(), "input left over without an end");
    }
    Run {
        out,
        used,
        end,
        size: r.size(),
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// True if `s` holds a CR not followed by LF or an LF not preceded by CR.
fn has_bare(s: &[u8]) -> bool {
    s.iter().enumerate().any(|(i, &b)| {
        (b == b'\r' && s.get(i + 1) != Some(&b'\n'))
            || (b == b'\n' && (i == 0 || s[i - 1] != b'\r'))
    })
}

fuzz_target!(|input: &[u8]| {
    if input.len() < 2 {
        return;
    }
    let max = match input[0] % 4 {
        0 => 0,
        1 => input[0] as u64 / 4,
        2 => 1 << 10,
        _ => u64::MAX,
    };
    let data = &input[2..];

    let whole = feed(max, &[data]);
    let bytes: Vec<&[u8]> = data.chunks(1).collect();
    let bytewise = feed(max, &bytes);
    let chunks = Splitter::new(input[1] as u64, (input[1] as usize % 16) + 1).split(data);
    let chunked = feed(max, &chunks);
    for other in [&bytewise, &chunked] {
        if whole.size <= max {
            assert_eq!(whole.out, other.out, "output depends on chunking");
        } else {
            // Past the limit the stored prefix may stop at a different piece boundary
            // (documented: only a prefix is kept); it is thrown away anyway.
            let (a, b) = (&whole.out, &other.out);
            assert!(
                a.starts_with(b) || b.starts_with(a),
                "outputs diverge past the limit"
            );
        }
        assert_eq!(whole.used, other.used, "consumed count depends on chunking");
        assert_eq!(whole.end, other.end, "ending depends on chunking");
        assert_eq!(whole.size, other.size, "size depends on chunking");
    }
    assert!(whole.out.len() as u64 <= max, "stored past the limit");

    // Reference: the section starts at a line start, so it ends at the first CRLF.CRLF of
    // CRLF + data (the leading CRLF being virtual).
    let mut framed = b"\r\n".to_vec();
    framed.extend_from_slice(data);
    match find(&framed, b"\r\n.\r\n") {
        None => {
            assert_eq!(whole.end, None, "ended without a CRLF.CRLF");
            assert_eq!(whole.used, data.len());
        }
        Some(at) => {
            let used = at + 5 - 2;
            assert_eq!(
                whole.used, used,
                "ended somewhere else than the first CRLF.CRLF"
            );
            let section = &data[..used];
            let body = &section[..used - 3]; // without the ".\r\n" line
            let bare = has_bare(section);
            match whole.end {
                Some(DataEnd::BareLineEnding) => assert!(bare, "flagged a clean section"),
                Some(DataEnd::Complete) | Some(DataEnd::TooBig) => {
                    assert!(!bare, "bare CR/LF not flagged: {section:?}");
                    // Clean: the body is CRLF lines; unstuff each.
                    let mut expected = Vec::new();
                    for line in body.split_inclusive(|&b| b == b'\n') {
                        expected.extend_from_slice(line.strip_prefix(b".").unwrap_or(line));
                    }
                    assert_eq!(whole.size, expected.len() as u64, "size");
                    if whole.end == Some(DataEnd::Complete) {
                        assert!(expected.len() as u64 <= max);
                        assert_eq!(whole.out, expected, "unstuffed output");
                        // And it stuffs back to the input.
                        let mut stuffed = Vec::new();
                        for line in whole.out.split_inclusive(|&b| b == b'\n') {
                            if line.starts_with(b".") {
                                stuffed.push(b'.');
                            }
                            stuffed.extend_from_slice(line);
                        }
                        stuffed.extend_from_slice(b".\r\n");
                        // (Not always equal to the input: a dot before other text is dropped
                        // by the reader and not restored by stuffing.)
                        let again = feed(max, &[&stuffed]);
                        assert_eq!(again.end, Some(DataEnd::Complete), "re-stuffed message");
                        assert_eq!(again.used, stuffed.len());
                        assert_eq!(again.out, whole.out, "stuff/unstuff round trip");
                    } else {
                        assert!(expected.len() as u64 > max, "TooBig within the limit");
                        assert!(expected.starts_with(&whole.out));
                    }
                }
                None => panic!("CRLF.CRLF did not end the section"),
            }
        }
    }
});
