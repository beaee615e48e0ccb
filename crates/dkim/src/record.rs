//! The DNS side of a key: the TXT value of `<selector>._domainkey.<domain>` (RFC 6376 §3.6.1,
//! RFC 8463 §4.2) and the zone-file form of a long TXT value (strings of at most 255 octets,
//! RFC 1035 §3.3.14; RFC 6376 §3.6.2.2: a verifier joins them).

use base64::Engine;
use store::dkim_keys::{Algorithm, KeyInfo};

/// `v=DKIM1; k=ed25519; p=...` or `v=DKIM1; k=rsa; p=...`.
pub fn txt_value(key: &KeyInfo) -> String {
    let k = match key.algorithm {
        Algorithm::Ed25519 => "ed25519",
        Algorithm::Rsa => "rsa",
    };
    format!(
        "v=DKIM1; k={k}; p={}",
        base64::engine::general_purpose::STANDARD.encode(&key.public_key)
    )
}

/// The owner name of a key's record, without the final dot.
pub fn owner(key: &KeyInfo) -> String {
    format!("{}._domainkey.{}", key.selector, key.domain)
}

/// A TXT value as zone-file character strings: `"..." "..."`, each at most 255 octets, `"`
/// and `\` escaped.
pub fn zone_strings(value: &str) -> String {
    value
        .as_bytes()
        .chunks(255)
        .map(|chunk| {
            let mut s = String::from("\"");
            for &b in chunk {
                if b == b'"' || b == b'\\' {
                    s.push('\\');
                }
                s.push(b as char);
            }
            s.push('"');
            s
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_values_split_at_255_octets() {
        let value = "a".repeat(600);
        let z = zone_strings(&value);
        let parts: Vec<&str> = z.split(' ').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0].len(), 257);
        assert_eq!(parts[2].len(), 90 + 2);
        assert_eq!(zone_strings("v=spf1 \"x\""), "\"v=spf1 \\\"x\\\"\"");
    }
}
