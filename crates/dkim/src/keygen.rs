//! Making a generation of DKIM keys: one Ed25519 (ring, PKCS#8) and one RSA-2048 (the `rsa`
//! crate through mail-auth's `generate` feature, since ring cannot make RSA keys; PKCS#1). The
//! RSA public key is published as a SubjectPublicKeyInfo, the form every verifier reads
//! (OpenDKIM, dkimpy, the big providers); the Ed25519 one as the bare 32 octets (RFC 8463).

use mail_auth::common::crypto::Ed25519Key;
use mail_auth::dkim::generate::DkimKeyPair;
use store::dkim_keys::{Algorithm, DkimKeys, KeyInfo, NewKey};

/// RSA modulus size: 2048 is what RFC 8301 asks for and every DNS host takes in one record.
pub const RSA_BITS: usize = 2048;

/// One Ed25519 and one RSA key, in that order.
pub fn generate() -> Result<Vec<NewKey>, String> {
    let ed = Ed25519Key::generate_pkcs8().map_err(|e| format!("Ed25519 key: {e}"))?;
    let ed_public = Ed25519Key::from_pkcs8_der(&ed)
        .map_err(|e| format!("Ed25519 key: {e}"))?
        .public_key();
    let rsa = DkimKeyPair::generate_rsa(RSA_BITS).map_err(|e| format!("RSA key: {e}"))?;
    let (rsa_private, rsa_public) = rsa.into_inner();
    Ok(vec![
        NewKey {
            algorithm: Algorithm::Ed25519,
            private_der: ed,
            public_der: ed_public,
        },
        NewKey {
            algorithm: Algorithm::Rsa,
            private_der: rsa_private,
            public_der: rsa_spki(&rsa_public),
        },
    ])
}

/// Makes and stores `domain`'s first generation when it has no key at all (then it signs at
/// once); returns the keys made, none when it had keys.
pub fn ensure(keys: &DkimKeys, domain: &str, now: u64) -> Result<Vec<KeyInfo>, String> {
    if !keys
        .list(Some(domain))
        .map_err(|e| e.to_string())?
        .is_empty()
    {
        return Ok(Vec::new());
    }
    keys.add_generation(domain, &generate()?, now)
        .map_err(|e| e.to_string())
}

/// Makes and stores a new generation for `domain`: active if it is the first, else published
/// until activated.
pub fn rotate(keys: &DkimKeys, domain: &str, now: u64) -> Result<Vec<KeyInfo>, String> {
    keys.add_generation(domain, &generate()?, now)
        .map_err(|e| e.to_string())
}

/// DER length octets.
fn der_len(len: usize, out: &mut Vec<u8>) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

/// Wraps a PKCS#1 RSAPublicKey in a SubjectPublicKeyInfo (RFC 5280 §4.1, algorithm
/// rsaEncryption with NULL parameters, RFC 8017 appendix A.1).
pub fn rsa_spki(pkcs1: &[u8]) -> Vec<u8> {
    const ALGORITHM: [u8; 15] = [
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let mut bit_string = vec![0x03];
    der_len(pkcs1.len() + 1, &mut bit_string);
    bit_string.push(0);
    bit_string.extend_from_slice(pkcs1);
    let mut out = vec![0x30];
    der_len(ALGORITHM.len() + bit_string.len(), &mut out);
    out.extend_from_slice(&ALGORITHM);
    out.extend_from_slice(&bit_string);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths() {
        let mut v = Vec::new();
        der_len(0x7f, &mut v);
        der_len(0x80, &mut v);
        der_len(0x10e, &mut v);
        assert_eq!(v, [0x7f, 0x81, 0x80, 0x82, 0x01, 0x0e]);
    }

    #[test]
    fn a_generation_is_an_ed25519_and_an_rsa_2048_key() {
        let keys = generate().unwrap();
        assert_eq!(keys[0].algorithm, Algorithm::Ed25519);
        assert_eq!(keys[0].public_der.len(), 32);
        assert_eq!(keys[1].algorithm, Algorithm::Rsa);
        // SPKI of a 2048-bit key: 294 octets, starting 30 82 01 22 30 0d 06 09 2a 86 48.
        assert_eq!(keys[1].public_der.len(), 294);
        assert_eq!(&keys[1].public_der[..4], &[0x30, 0x82, 0x01, 0x22]);
    }
}
