use super::super::dot_stuff;
use super::*;

/// Tricky inputs: every kind of line end, leading dots, a dot-CRLF that must not end the
/// section early, CRs and LFs at both ends.
const TRICKY: &[&[u8]] = &[
    b"",
    b".",
    b"\r",
    b"\n",
    b"\r\n",
    b"\n\r",
    b"\r\r\n",
    b".\r\n.\r\n",
    b"a\r\n.\r\nb",
    b"..\r\n...\n.\r.",
    b"Subject: x\r\n\r\n.hidden\rMAIL FROM:<x>\n.\nend",
    b"line\r\n\r\n.\r\n\r",
    b"\r\n.\n\r.\r\r\n\n.",
    b"x\r",
    b"Subj\xc3\xa9: x\n\nbody\xff\r\n",
    b"a\n\nb\r\n\r\nc\xe9",
    b"\xe9\r\n\r\n",
    b"h: v\r\n\r\xe9\n\r\n",
];

fn stuffed(mut s: DotStuffer, chunks: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for c in chunks {
        s.feed(c, &mut out);
    }
    s.finish(&mut out);
    out
}

/// `dot_stuff` without the dot rules: what BDAT sends.
fn crlf_only(message: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < message.len() {
        match message[i] {
            b'\r' | b'\n' => {
                if message[i] == b'\r' && message.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
                out.extend_from_slice(b"\r\n");
            }
            b => out.push(b),
        }
        i += 1;
    }
    out
}

/// The whole-message scan `MessageTraits::of` did before it was built on [`TraitsScanner`].
fn reference_traits(sender: &str, recipients: &[String], message: &[u8]) -> MessageTraits {
    let header_end = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .or_else(|| message.windows(2).position(|w| w == b"\n\n"))
        .unwrap_or(message.len());
    let smtputf8 = !sender.is_ascii()
        || recipients.iter().any(|r| !r.is_ascii())
        || !message[..header_end].is_ascii();
    let bare = message
        .iter()
        .enumerate()
        .filter(|&(i, &b)| {
            (b == b'\n' && (i == 0 || message[i - 1] != b'\r'))
                || (b == b'\r' && message.get(i + 1) != Some(&b'\n'))
        })
        .count();
    MessageTraits {
        smtputf8,
        eight_bit: !message.is_ascii(),
        size: message.len() as u64 + bare as u64,
        require_tls: false,
    }
}

fn traits_of(chunks: &[&[u8]]) -> MessageTraits {
    let mut s = TraitsScanner::new();
    for c in chunks {
        s.feed(c);
    }
    s.finish("a@x.org", &["b@y.org".to_string()])
}

/// Checks one split of `m` against the whole-message functions.
fn check_split(m: &[u8], chunks: &[&[u8]]) {
    assert_eq!(
        stuffed(DotStuffer::data(), chunks),
        dot_stuff(m),
        "{m:?} as {chunks:?}"
    );
    assert_eq!(
        stuffed(DotStuffer::chunked(), chunks),
        crlf_only(m),
        "{m:?} as {chunks:?}"
    );
    let rcpts = ["b@y.org".to_string()];
    assert_eq!(
        traits_of(chunks),
        reference_traits("a@x.org", &rcpts, m),
        "{m:?} as {chunks:?}"
    );
}

#[test]
fn every_split_point_of_tricky_inputs() {
    for m in TRICKY {
        check_split(m, &[m]);
        for i in 0..=m.len() {
            check_split(m, &[&m[..i], &m[i..]]);
            for j in i..=m.len() {
                check_split(m, &[&m[..i], &m[i..j], &m[j..]]);
            }
        }
        // One octet at a time, with empty chunks between.
        let bytes: Vec<&[u8]> = m.chunks(1).flat_map(|c| [c, &b""[..]]).collect();
        check_split(m, &bytes);
    }
}

#[test]
fn never_a_bare_cr_or_lf_and_never_an_early_end() {
    for m in TRICKY {
        for i in 0..=m.len() {
            for s in [DotStuffer::data(), DotStuffer::chunked()] {
                let dots = s == DotStuffer::data();
                let out = stuffed(s, &[&m[..i], &m[i..]]);
                for (k, &b) in out.iter().enumerate() {
                    if b == b'\r' {
                        assert_eq!(out.get(k + 1), Some(&b'\n'), "{out:?}");
                    }
                    if b == b'\n' {
                        assert!(k > 0 && out[k - 1] == b'\r', "{out:?}");
                    }
                }
                if dots {
                    // The section ends at its last three octets and nowhere before.
                    let framed = [b"\r\n", &out[..]].concat();
                    let end = framed.windows(5).position(|w| w == b"\r\n.\r\n");
                    assert_eq!(end, Some(framed.len() - 5), "{out:?}");
                }
            }
        }
    }
}

#[test]
fn chunked_form_leaves_crlf_messages_alone() {
    let m: &[u8] = b"Subject: x\r\n\r\n.dot\r\n.\r\nend\r\n";
    assert_eq!(stuffed(DotStuffer::chunked(), &[m]), m);
    assert_eq!(stuffed(DotStuffer::chunked(), &[b"no end"]), b"no end");
    assert_eq!(
        stuffed(DotStuffer::data(), &[b"no end"]),
        b"no end\r\n.\r\n"
    );
}

#[test]
fn output_is_bounded_by_max_output() {
    for m in [&b"\n\n\n\n"[..], b"\r\r\r", b".\n.\n.\n", b"\r"] {
        let mut s = DotStuffer::data();
        let mut out = Vec::new();
        s.feed(m, &mut out);
        s.finish(&mut out);
        assert!(out.len() <= DotStuffer::max_output(m.len()), "{m:?}");
    }
}

/// A small deterministic generator (xorshift), so the property test needs no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn property_streaming_equals_whole_message() {
    let alphabet: &[u8] = b"\r\n.\r\n.ab \xc3\xe9";
    let mut rng = Rng(0x5eed_1234_abcd_0001);
    for _ in 0..3000 {
        let len = (rng.next() % 40) as usize;
        let m: Vec<u8> = (0..len)
            .map(|_| alphabet[(rng.next() % alphabet.len() as u64) as usize])
            .collect();
        let mut chunks: Vec<&[u8]> = Vec::new();
        let mut at = 0;
        while at < m.len() {
            let n = ((rng.next() % 6) as usize).min(m.len() - at);
            chunks.push(&m[at..at + n]);
            at += n;
        }
        check_split(&m, &chunks);
    }
}
