//! `proto::srs::decode` on arbitrary local parts (the RCPT address of anyone on port 25;
//! invalid UTF-8 is made valid with U+FFFD), and `encode` on arbitrary senders.
//!
//! Checks: no panic; what decodes was made by `encode` with the same secret (encoding the
//! decoded address again gives the same local part, case aside); `encode` output is at most
//! 64 octets and decodes to its input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::srs::{decode, encode, MAX_AGE_DAYS};

const SECRET: &[u8] = b"fuzzing secret, 32 octets long!!";
const DAY: u64 = 20_000;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(original) = decode(SECRET, &text, DAY) {
        // Only an address we could have made decodes (the hash is over what it names).
        let tt = &text[14..16];
        let again = (0..=MAX_AGE_DAYS)
            .filter_map(|back| encode(SECRET, &original, DAY - back))
            .find(|e| e[14..16].eq_ignore_ascii_case(tt));
        assert!(
            again.is_some_and(|e| e.eq_ignore_ascii_case(&text)),
            "{text:?} decoded to {original:?}"
        );
    }
    if let Some(local) = encode(SECRET, &text, DAY) {
        assert!(local.len() <= 64);
        assert_eq!(decode(SECRET, &local, DAY).as_deref(), Ok(&*text));
    }
});
