//! The SASL helpers (`proto::sasl::decode_base64_line`, `decode_plain`) on arbitrary strings
//! (invalid UTF-8 is made valid with U+FFFD).
//!
//! Checks: no panic; an accepted line is at most `MAX_RESPONSE_LEN` long and is the canonical
//! base64 of what it decodes to; accepted PLAIN credentials have a non-empty authcid and
//! password without NUL, re-encode to a response that decodes the same, and their `Debug`
//! form never shows the password.
#![no_main]

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use proto::sasl::{decode_base64_line, decode_plain, SaslError, MAX_RESPONSE_LEN};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let s: &str = &text;

    match decode_base64_line(s) {
        Ok(bytes) => {
            assert!(s.len() <= MAX_RESPONSE_LEN);
            assert_eq!(STANDARD.encode(&bytes), s, "non-canonical base64 accepted");
        }
        Err(SaslError::Cancelled) => assert_eq!(s, "*"),
        Err(SaslError::TooLong) => assert!(s.len() > MAX_RESPONSE_LEN),
        Err(SaslError::BadBase64) => {}
        Err(e) => panic!("decode_base64_line gave {e:?}"),
    }

    if let Ok(c) = decode_plain(s) {
        assert!(!c.authcid.is_empty() && !c.password.is_empty());
        assert!(!c.authcid.contains('\0') && !c.password.contains('\0'));
        let dbg = format!("{c:?}");
        assert_eq!(
            dbg,
            format!(
                "PlainCredentials {{ authcid: {:?}, password: \"<redacted>\" }}",
                c.authcid
            )
        );
        let again = STANDARD.encode(format!("\0{}\0{}", c.authcid, c.password));
        if again.len() <= MAX_RESPONSE_LEN {
            assert_eq!(decode_plain(&again), Ok(c.clone()));
        }
        let with_authzid = STANDARD.encode(format!("{0}\0{0}\0{1}", c.authcid, c.password));
        if with_authzid.len() <= MAX_RESPONSE_LEN {
            assert_eq!(decode_plain(&with_authzid), Ok(c));
        }
    }
});
