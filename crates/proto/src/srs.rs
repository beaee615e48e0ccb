//! SRS, the Sender Rewriting Scheme: the envelope sender of mail we forward to another domain
//! becomes an address of ours that carries the original, so the target's SPF check sees our
//! domain, and a bounce to it finds its way back.
//!
//! `SRS0=<hash>=<tt>=<original domain>=<original local part>@<our domain>`: `tt` is the day
//! (days since the epoch modulo 1024, two base32 digits), `hash` the first 8 base32 digits of
//! HMAC-SHA256(secret, "tt=domain=local" lowercased). Base32 because MTAs on the way may change
//! the case of a local part. [`decode`] refuses a bad hash or a timestamp older than
//! [`MAX_AGE_DAYS`] (forged or stale bounces), so an SRS address is no open relay.
//!
//! Not here: the secret (kept by `store`), where it is applied (the queue's forwarding) and
//! checked (the RCPT policy). Forwarding an address that is already SRS wraps it again
//! (SRS1's shortcut is not done); a result longer than 64 octets is not made ([`encode`]
//! returns `None` and the original sender is kept).

use ring::hmac;

/// How long an SRS address is honoured.
pub const MAX_AGE_DAYS: u64 = 21;
/// RFC 5321 §4.5.3.1.1: a local part is at most 64 octets.
const MAX_LOCAL: usize = 64;
const HASH_LEN: usize = 8;
const B32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// Why an SRS address is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SrsError {
    /// Not of the form `SRS0=hash=tt=domain=local`.
    Malformed,
    /// The hash does not match: forged.
    BadHash,
    /// Older than [`MAX_AGE_DAYS`] (or from the future).
    Expired,
}

fn timestamp(day: u64) -> String {
    let t = day % 1024;
    [
        B32[(t >> 5) as usize] as char,
        B32[(t & 31) as usize] as char,
    ]
    .iter()
    .collect()
}

fn parse_timestamp(tt: &str) -> Option<u64> {
    let b = tt.as_bytes();
    if b.len() != 2 {
        return None;
    }
    let digit = |c: u8| B32.iter().position(|x| *x == c.to_ascii_lowercase());
    Some((digit(b[0])? as u64) << 5 | digit(b[1])? as u64)
}

fn hash(secret: &[u8], tt: &str, domain: &str, local: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    let text = format!("{tt}={domain}={local}").to_ascii_lowercase();
    let tag = hmac::sign(&key, text.as_bytes());
    // 5 bits per digit from the tag's first octets.
    let bits: Vec<u8> = tag.as_ref()[..5]
        .iter()
        .flat_map(|b| (0..8).rev().map(move |i| (b >> i) & 1))
        .collect();
    bits.chunks(5)
        .take(HASH_LEN)
        .map(|c| B32[c.iter().fold(0usize, |a, b| a << 1 | *b as usize)] as char)
        .collect()
}

/// The SRS local part (without `@our_domain`) for `sender` on `day` (days since the epoch),
/// or `None` when the sender is `<>`, has no `@`, or the result would be too long.
pub fn encode(secret: &[u8], sender: &str, day: u64) -> Option<String> {
    let (local, domain) = sender.rsplit_once('@')?;
    // A domain with `=` could not be told from the local part again.
    if local.is_empty() || domain.is_empty() || domain.contains('=') {
        return None;
    }
    let tt = timestamp(day);
    let h = hash(secret, &tt, domain, local);
    let out = format!("SRS0={h}={tt}={domain}={local}");
    (out.len() <= MAX_LOCAL).then_some(out)
}

/// Whether a local part claims to be SRS (then it must [`decode`] or be refused).
pub fn is_srs(local: &str) -> bool {
    // `get`: a UTF-8 local part (SMTPUTF8) may have no char boundary at 5 (found by fuzzing).
    local.len() > 5
        && local
            .get(..5)
            .is_some_and(|p| p.eq_ignore_ascii_case("SRS0="))
}

/// The original address an SRS local part stands for, if its hash is right and it is at most
/// [`MAX_AGE_DAYS`] old on `day`.
pub fn decode(secret: &[u8], local: &str, day: u64) -> Result<String, SrsError> {
    if !is_srs(local) {
        return Err(SrsError::Malformed);
    }
    let mut parts = local[5..].splitn(4, '=');
    let (Some(h), Some(tt), Some(domain), Some(orig)) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SrsError::Malformed);
    };
    if domain.is_empty() || orig.is_empty() || h.len() != HASH_LEN {
        return Err(SrsError::Malformed);
    }
    let t = parse_timestamp(tt).ok_or(SrsError::Malformed)?;
    if !hash(secret, tt, domain, orig).eq_ignore_ascii_case(h) {
        return Err(SrsError::BadHash);
    }
    let age = (day % 1024 + 1024 - t) % 1024;
    if age > MAX_AGE_DAYS {
        return Err(SrsError::Expired);
    }
    Ok(format!("{orig}@{domain}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
    const DAY: u64 = 20_421;

    #[test]
    fn round_trip_and_case_insensitive() {
        let local = encode(KEY, "Dave@Remote.test", DAY).unwrap();
        assert!(local.starts_with("SRS0="), "{local}");
        assert!(local.ends_with("=Remote.test=Dave"), "{local}");
        assert_eq!(decode(KEY, &local, DAY).unwrap(), "Dave@Remote.test");
        assert_eq!(
            decode(KEY, &local.to_ascii_lowercase(), DAY + 3).unwrap(),
            "dave@remote.test"
        );
        assert_eq!(
            decode(KEY, &local.to_ascii_uppercase(), DAY).unwrap(),
            "DAVE@REMOTE.TEST"
        );
    }

    #[test]
    fn forged_stale_and_malformed_are_refused() {
        let local = encode(KEY, "dave@remote.test", DAY).unwrap();
        assert_eq!(decode(b"other key", &local, DAY), Err(SrsError::BadHash));
        let forged = local.replace("dave", "eve");
        assert_eq!(decode(KEY, &forged, DAY), Err(SrsError::BadHash));
        assert_eq!(decode(KEY, &local, DAY + 22), Err(SrsError::Expired));
        assert_eq!(
            decode(KEY, &local, DAY + MAX_AGE_DAYS),
            Ok("dave@remote.test".into())
        );
        // Across the 1024-day wrap.
        let wrap = encode(KEY, "a@b.test", 1023).unwrap();
        assert_eq!(decode(KEY, &wrap, 1025), Ok("a@b.test".into()));
        for bad in [
            "SRS0=",
            "SRS0=abc",
            "SRS0=abcdefgh=zz",
            "SRS0=abcdefgh=11=d=l",
            "bob",
        ] {
            assert!(decode(KEY, bad, DAY).is_err(), "{bad}");
        }
        assert_eq!(encode(KEY, "", DAY), None);
        // Non-ASCII local parts from SMTPUTF8 clients: no panic.
        assert!(!is_srs("\u{fffd}\u{fffd}dave"));
        assert_eq!(decode(KEY, "SRé0=x", DAY), Err(SrsError::Malformed));
        assert_eq!(
            encode(KEY, &format!("{}@x.test", "l".repeat(60)), DAY),
            None
        );
    }
}
