//! The signer: keys and a message in, `DKIM-Signature:` header lines out (RFC 6376 §5, RFC 8463
//! for Ed25519). Pure: no files, no clock beyond the signature's `t=`.
//!
//! Every signature is relaxed/relaxed with no `l=` (a body length lets anybody append), signs
//! `From` twice (the second, empty, instance stops a second `From:` being added), and the
//! headers a reader sees and a list adds: To, Cc, Subject, Date, Message-ID, MIME-Version,
//! Content-Type, In-Reply-To, References (named in `h=` even when absent, so they cannot be
//! added later), plus whichever `List-*` fields the message has. mail-auth hashes the body once
//! per signature: two passes over the message for the pair, no copy of it.

use mail_auth::common::crypto::{Ed25519Key, RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::{Canonicalization, DkimSigner};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs1KeyDer};
use store::dkim_keys::Algorithm;

/// Fields signed in every message (From twice: oversigned).
const SIGNED: [&str; 11] = [
    "From",
    "From",
    "To",
    "Cc",
    "Subject",
    "Date",
    "Message-ID",
    "MIME-Version",
    "Content-Type",
    "In-Reply-To",
    "References",
];

/// A private key ready to sign for `domain` under `selector`.
pub struct SigningKey {
    pub domain: String,
    pub selector: String,
    secret: Secret,
}

enum Secret {
    Ed25519(Ed25519Key),
    Rsa(RsaKey<Sha256>),
}

impl SigningKey {
    /// Parses a stored private key: PKCS#8 for Ed25519, PKCS#1 for RSA.
    pub fn new(
        domain: &str,
        selector: &str,
        algorithm: Algorithm,
        der: &[u8],
    ) -> Result<SigningKey, String> {
        let secret = match algorithm {
            Algorithm::Ed25519 => Secret::Ed25519(
                Ed25519Key::from_pkcs8_der(der).map_err(|e| format!("Ed25519 key: {e}"))?,
            ),
            Algorithm::Rsa => Secret::Rsa(
                RsaKey::<Sha256>::from_key_der(PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(der)))
                    .map_err(|e| format!("RSA key: {e}"))?,
            ),
        };
        Ok(SigningKey {
            domain: domain.to_string(),
            selector: selector.to_string(),
            secret,
        })
    }

    pub fn algorithm(&self) -> Algorithm {
        match self.secret {
            Secret::Ed25519(_) => Algorithm::Ed25519,
            Secret::Rsa(_) => Algorithm::Rsa,
        }
    }
}

/// The end of the header block (the offset of the empty line), or the whole input.
fn header_block(message: &[u8]) -> &[u8] {
    let end = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 2)
        .unwrap_or(message.len());
    &message[..end]
}

/// The field names to sign for this message: [`SIGNED`] and its `List-*` fields.
pub fn headers_to_sign(message: &[u8]) -> Vec<String> {
    let mut names: Vec<String> = SIGNED.iter().map(|s| s.to_string()).collect();
    for line in header_block(message).split(|b| *b == b'\n') {
        if line.first().is_none_or(|b| *b == b' ' || *b == b'\t') {
            continue;
        }
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let name = String::from_utf8_lossy(&line[..colon]).trim().to_string();
        if name.len() > 5
            && name[..5].eq_ignore_ascii_case("list-")
            && name.bytes().all(|b| b.is_ascii_graphic())
            && !names.iter().any(|n| n.eq_ignore_ascii_case(&name))
        {
            names.push(name);
        }
    }
    names
}

/// The domain of the message's `From:` address (lowercase), when there is exactly one
/// `From:` field with one address.
pub fn from_domain(message: &[u8]) -> Option<String> {
    let head = header_block(message);
    let parsed = mail_parser::MessageParser::new().parse_headers(head)?;
    let froms = parsed
        .headers()
        .iter()
        .filter(|h| h.name == mail_parser::HeaderName::From)
        .count();
    if froms != 1 {
        return None;
    }
    let from = parsed.from()?;
    if from.iter().count() != 1 {
        return None;
    }
    let address = from.first()?.address()?;
    let (_, domain) = address.rsplit_once('@')?;
    let domain = domain.trim().trim_end_matches('.').to_ascii_lowercase();
    (!domain.is_empty()).then_some(domain)
}

/// Signs `message` (CRLF line ends, header block first) with each key, in order; returns the
/// `DKIM-Signature:` fields to put on top of it, CRLF-terminated.
pub fn sign(keys: &[SigningKey], message: &[u8]) -> Result<Vec<u8>, String> {
    let names = headers_to_sign(message);
    let mut out = Vec::new();
    for key in keys {
        let signature = match &key.secret {
            Secret::Ed25519(k) => {
                configure(DkimSigner::from_key(Borrowed(k)), key, &names).sign(message)
            }
            Secret::Rsa(k) => {
                configure(DkimSigner::from_key(Borrowed(k)), key, &names).sign(message)
            }
        }
        .map_err(|e| format!("DKIM signing for {}: {e}", key.domain))?;
        out.extend_from_slice(signature.to_header().as_bytes());
    }
    Ok(out)
}

/// A parsed key lent to one signing (mail-auth's signer owns its key; ours are kept parsed
/// across messages).
struct Borrowed<'a, K>(&'a K);

impl<K: mail_auth::common::crypto::SigningKey> mail_auth::common::crypto::SigningKey
    for Borrowed<'_, K>
{
    type Hasher = K::Hasher;

    fn sign(&self, input: impl mail_auth::common::headers::Writable) -> mail_auth::Result<Vec<u8>> {
        self.0.sign(input)
    }

    fn algorithm(&self) -> mail_auth::common::crypto::Algorithm {
        self.0.algorithm()
    }
}

fn configure<T: mail_auth::common::crypto::SigningKey>(
    signer: DkimSigner<T, mail_auth::dkim::NeedDomain>,
    key: &SigningKey,
    names: &[String],
) -> DkimSigner<T, mail_auth::dkim::Done> {
    signer
        .domain(key.domain.clone())
        .selector(key.selector.clone())
        .headers(names.iter().cloned())
        .header_canonicalization(Canonicalization::Relaxed)
        .body_canonicalization(Canonicalization::Relaxed)
}

#[cfg(test)]
#[path = "signer_tests.rs"]
mod tests;
