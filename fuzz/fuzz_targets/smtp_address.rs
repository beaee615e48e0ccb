//! Envelope address checks (`proto::smtp::address`: `check`, `split`, `valid_domain`,
//! `escape`) on arbitrary strings (invalid UTF-8 is made valid with U+FFFD).
//!
//! Checks: `split` cuts at the last `@` into two non-empty parts that rebuild the input;
//! whatever `check` accepts has no control byte or DEL, a path of at most 256 octets with the
//! brackets, a local part of at most 64 and a domain of at most 255 octets, and a domain that
//! is a host name of labels of at most 63 octets (letters, digits, hyphens, non-ASCII
//! alphanumerics; no hyphen at a label's ends) or an IPv4 / `IPv6:` address literal;
//! `escape` yields only printable ASCII without `\`, `(` or `)` and can be undone.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::smtp::address::{check, escape, split, valid_domain};

fn unescape(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' {
            assert_eq!(b[i + 1], b'x');
            let hex = std::str::from_utf8(&b[i + 2..i + 4]).expect("hex");
            out.push(u8::from_str_radix(hex, 16).expect("hex"));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let s: &str = &text;

    if let Some((local, domain)) = split(s) {
        assert!(!local.is_empty() && !domain.is_empty());
        assert!(!domain.contains('@'), "split not at the last @");
        assert_eq!(format!("{local}@{domain}"), s);
    } else {
        assert!(s.rfind('@').is_none_or(|at| at == 0 || at == s.len() - 1));
    }

    if check(s).is_ok() {
        assert!(
            !s.bytes().any(|b| b < 0x20 || b == 0x7f),
            "control byte accepted: {s:?}"
        );
        assert!(s.len() + 2 <= 256, "path too long accepted");
        let (local, domain) = split(s).expect("accepted without an @");
        assert!(local.len() <= 64, "local part too long accepted");
        assert!(domain.len() <= 255, "domain too long accepted");
        assert!(valid_domain(domain));
    }

    if valid_domain(s) {
        if let Some(inner) = s.strip_prefix('[') {
            let lit = inner.strip_suffix(']').expect("unclosed literal accepted");
            let ok = lit.parse::<std::net::Ipv4Addr>().is_ok()
                || lit
                    .strip_prefix("IPv6:")
                    .is_some_and(|v6| v6.parse::<std::net::Ipv6Addr>().is_ok());
            assert!(ok, "bad address literal accepted: {s:?}");
        } else {
            let name = s.strip_suffix('.').unwrap_or(s);
            assert!(!name.is_empty());
            for label in name.split('.') {
                assert!(!label.is_empty() && label.len() <= 63, "bad label in {s:?}");
                assert!(!label.starts_with('-') && !label.ends_with('-'));
                assert!(
                    label.chars().all(|c| c == '-' || c.is_alphanumeric()),
                    "bad character in {s:?}"
                );
                assert!(!label.bytes().any(|b| b < 0x20 || b == 0x7f || b == b' '));
            }
        }
    }

    let e = escape(s);
    assert!(
        e.bytes()
            .all(|b| (0x21..0x7f).contains(&b) && b != b'(' && b != b')'),
        "escape left {e:?}"
    );
    assert_eq!(unescape(&e), s.as_bytes(), "escape is not reversible");
});
