//! `proto::smtp::verdict`: removal of incoming `Authentication-Results:` naming our host
//! (`strip_ours`) on arbitrary message bytes, and the header we write (`headers`) from
//! arbitrary domains, selectors and reasons (texts from the message and from DNS).
//!
//! Checks: `strip_ours` only removes (the output is no longer than the input, the body after
//! the header block is untouched, and a second pass finds nothing more to remove); `headers`
//! writes CRLF only at line ends, each line a header field or a continuation, all printable
//! ASCII or tab.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::smtp::verdict::{
    headers, strip_ours, AuthResult, Decision, Dkim, Dmarc, DmarcPolicy, Spf, Verdict,
};

fuzz_target!(|data: &[u8]| {
    if let Some(out) = strip_ours(data, "mx.test") {
        assert!(out.len() < data.len());
        assert_eq!(
            strip_ours(&out, "mx.test"),
            None,
            "a second pass removes more"
        );
        if let Some(pos) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            // The empty line and what follows (the CRLF before it may go with a last field).
            let body = &data[pos + 2..];
            assert!(out.ends_with(body), "the body changed");
        }
    }
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(4, '\u{0}');
    let (a, b, c, d) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
    );
    let v = Verdict {
        spf: Some(Spf {
            result: AuthResult::SoftFail,
            mail_from: a.into(),
            helo: b.into(),
        }),
        dkim: Some(vec![Dkim {
            result: AuthResult::Fail,
            domain: b.into(),
            selector: c.into(),
            reason: Some(d.into()),
        }]),
        dmarc: Some(Dmarc {
            result: AuthResult::Fail,
            from_domain: c.into(),
            policy: DmarcPolicy::Quarantine,
            has_record: true,
        }),
        arc: Some(AuthResult::None),
    };
    let h = headers(
        a,
        &v,
        &Decision::Accept {
            spam: Some(d.into()),
        },
    );
    assert!(h.ends_with("\r\n"));
    for line in h.trim_end_matches("\r\n").split("\r\n") {
        assert!(!line.is_empty());
        assert!(
            line.bytes()
                .all(|b| b == b'\t' || (0x20..0x7f).contains(&b)),
            "{line:?}"
        );
    }
});
