use mail_auth::dkim::Signature;

use super::*;
use crate::keygen;

const MESSAGE: &[u8] = b"From: Alice <alice@Example.ORG>\r\n\
To: bob@remote.test\r\n\
Subject: hello\r\n\
List-Id: <friends.example.org>\r\n\
\r\n\
Hello  there \r\n\
\r\n\
\r\n";

fn keys() -> Vec<SigningKey> {
    keygen::generate()
        .unwrap()
        .into_iter()
        .map(|k| {
            let sel = format!("s-{}", k.algorithm.as_str());
            SigningKey::new("example.org", &sel, k.algorithm, &k.private_der).unwrap()
        })
        .collect()
}

#[test]
fn two_signatures_relaxed_from_oversigned_no_length() {
    let out = sign(&keys(), &[b"Received: x\r\nDate: now\r\n", MESSAGE]).unwrap();
    let text = String::from_utf8(out).unwrap();
    let fields: Vec<&str> = text
        .split("DKIM-Signature: ")
        .filter(|s| !s.is_empty())
        .collect();
    assert_eq!(fields.len(), 2, "{text}");
    assert!(fields[0].contains("a=ed25519-sha256"));
    assert!(fields[1].contains("a=rsa-sha256"));
    for f in &fields {
        let unfolded: String = f.replace("\r\n\t", "").replace("\r\n", "");
        let sig = Signature::parse(unfolded.as_bytes()).unwrap();
        assert_eq!(sig.d, "example.org");
        assert_eq!(sig.l, 0, "no l=");
        assert!(unfolded.contains("c=relaxed/relaxed"));
        let froms = sig
            .h
            .iter()
            .filter(|h| h.eq_ignore_ascii_case("from"))
            .count();
        assert_eq!(froms, 2, "From oversigned: {:?}", sig.h);
        // Date comes from the trace chunk; Message-ID and References are absent: not named.
        for name in ["To", "Subject", "Date", "List-Id"] {
            assert!(
                sig.h.iter().any(|h| h.eq_ignore_ascii_case(name)),
                "{name} in {:?}",
                sig.h
            );
        }
        for name in ["Message-ID", "References", "Cc"] {
            assert!(!sig.h.iter().any(|h| h.eq_ignore_ascii_case(name)));
        }
    }
    assert!(text.ends_with("\r\n"));
}

#[test]
fn from_domain_of_the_single_from() {
    assert_eq!(from_domain(MESSAGE).as_deref(), Some("example.org"));
    assert_eq!(
        from_domain(b"Subject: x\r\nFrom: <a@b.example>\r\n\r\nFrom: <x@y.z>\r\n").as_deref(),
        Some("b.example")
    );
    assert_eq!(
        from_domain(b"From: a@b.example\r\nFrom: c@d.example\r\n\r\n"),
        None
    );
    assert_eq!(from_domain(b"From: a@b.example, c@d.example\r\n\r\n"), None);
    assert_eq!(from_domain(b"Subject: none\r\n\r\n"), None);
}

#[test]
fn list_fields_are_signed_when_present_only() {
    let names = headers_to_sign(&[b"From: a@b\r\nList-Unsubscribe: <x>\r\n\r\nList-Id: body\r\n"]);
    assert!(names.iter().any(|n| n == "List-Unsubscribe"));
    assert!(!names.iter().any(|n| n == "List-Id"));
}

#[test]
fn bad_keys_are_refused() {
    assert!(SigningKey::new("a.example", "s", Algorithm::Rsa, b"junk").is_err());
    assert!(SigningKey::new("a.example", "s", Algorithm::Ed25519, b"junk").is_err());
}

#[test]
fn both_signatures_carry_the_relaxed_body_hash() {
    use base64::Engine;
    // RFC 6376 §3.4.4 by hand: spaces runs to one, trailing spaces gone, empty lines at the
    // end gone; then SHA-256.
    let canonical: &[u8] = b"Hello there\r\n";
    let mut hasher = <Sha256 as HashImpl>::hasher();
    mail_auth::common::headers::Writer::write(&mut hasher, canonical);
    let expected = hasher.complete().as_ref().to_vec();
    for body in [MESSAGE, b"From: a@example.org\r\n\r\nHello there\r\n"] {
        let out = sign(&keys(), &[body]).unwrap();
        let text = String::from_utf8(out).unwrap();
        let fields: Vec<&str> = text
            .split("DKIM-Signature: ")
            .filter(|s| !s.is_empty())
            .collect();
        assert_eq!(fields.len(), 2);
        for f in fields {
            let unfolded: String = f.replace("\r\n\t", "").replace("\r\n", "");
            let sig = Signature::parse(unfolded.as_bytes()).unwrap();
            assert_eq!(
                base64::engine::general_purpose::STANDARD.encode(&sig.bh),
                base64::engine::general_purpose::STANDARD.encode(&expected),
                "{unfolded}"
            );
        }
    }
}
