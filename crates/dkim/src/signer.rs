//! The signer: keys and a message in, `DKIM-Signature:` header lines out (RFC 6376 §5, RFC 8463
//! for Ed25519). Pure: no files, no clock beyond the signature's `t=`.
//!
//! Every signature is relaxed/relaxed with no `l=` (a body length lets anybody append), signs
//! `From` twice (the second, empty, instance stops a second `From:` being added), and of the
//! fields a reader sees, To, Cc, Subject, Date, Message-ID, MIME-Version, Content-Type,
//! In-Reply-To, References and `List-*`, those the message has (one it lacks is not named:
//! MTAs on the way add a missing `Date:` or `Message-ID:`, and that must not break it). The body
//! is canonicalized and hashed once for the pair (`SharedBodyHash`), with no copy of it.

use mail_auth::common::crypto::{Ed25519Key, HashContext, HashImpl, HashOutput, RsaKey, Sha256};
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

    /// The RSA key, for ARC (RFC 8617 defines rsa-sha256 only).
    pub(crate) fn rsa(&self) -> Option<&RsaKey<Sha256>> {
        match &self.secret {
            Secret::Rsa(k) => Some(k),
            Secret::Ed25519(_) => None,
        }
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

/// The field names to sign for the message made of `chunks`: `From` twice, and those of
/// [`SIGNED`] and the `List-*` fields that the message has. A field the message lacks is not
/// named: an MTA on the way that adds a missing `Date:` or `Message-ID:` (Postfix does) must
/// not break the signature.
pub fn headers_to_sign(chunks: &[&[u8]]) -> Vec<String> {
    let mut present: Vec<String> = Vec::new();
    let lines = chunks
        .iter()
        .flat_map(|c| header_block(c).split(|b| *b == b'\n'));
    for line in lines {
        if line.first().is_none_or(|b| *b == b' ' || *b == b'\t') {
            continue;
        }
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let name = String::from_utf8_lossy(&line[..colon]).trim().to_string();
        if !name.is_empty()
            && name.bytes().all(|b| b.is_ascii_graphic())
            && !present.iter().any(|n| n.eq_ignore_ascii_case(&name))
        {
            present.push(name);
        }
    }
    let has = |n: &str| present.iter().any(|p| p.eq_ignore_ascii_case(n));
    let mut names: Vec<String> = vec!["From".into(), "From".into()];
    names.extend(SIGNED[2..].iter().filter(|n| has(n)).map(|n| n.to_string()));
    names.extend(
        present
            .iter()
            .filter(|n| n.len() > 5 && n[..5].eq_ignore_ascii_case("list-"))
            .cloned(),
    );
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

/// Signs the message made of `chunks` in order (CRLF line ends; header fields that are put
/// on top, like our trace fields, may come as chunks of their own before the message) with
/// each key, in order; returns the `DKIM-Signature:` fields to put on top, CRLF-terminated.
pub fn sign(keys: &[SigningKey], chunks: &[&[u8]]) -> Result<Vec<u8>, String> {
    let names = headers_to_sign(chunks);
    let body_hash = std::cell::OnceCell::new();
    let mut out = Vec::new();
    for key in keys {
        let signature = match &key.secret {
            Secret::Ed25519(k) => configure(
                DkimSigner::from_key(SharedBodyHash(k, &body_hash)),
                key,
                &names,
            )
            .sign_chained(chunks.iter().copied()),
            Secret::Rsa(k) => configure(
                DkimSigner::from_key(SharedBodyHash(k, &body_hash)),
                key,
                &names,
            )
            .sign_chained(chunks.iter().copied()),
        }
        .map_err(|e| format!("DKIM signing for {}: {e}", key.domain))?;
        out.extend_from_slice(signature.to_header().as_bytes());
    }
    Ok(out)
}

/// A parsed key lent to one signing (mail-auth's signer owns its key; ours are kept parsed
/// across messages).
pub(crate) struct Borrowed<'a, K>(pub(crate) &'a K);

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

/// A parsed key lent to one message's signatures, which share one body hash: every signature
/// of [`sign`] hashes the same relaxed body with SHA-256 and no `l=`, so the body is
/// canonicalized and hashed once for the pair, not once per key. mail-auth's signer asks its
/// key for exactly one hash per signature, the body's (`bh=`); the header hash is the key's
/// own, inside `sign`.
struct SharedBodyHash<'a, K>(&'a K, &'a std::cell::OnceCell<HashOutput>);

impl<K: mail_auth::common::crypto::SigningKey<Hasher = Sha256>>
    mail_auth::common::crypto::SigningKey for SharedBodyHash<'_, K>
{
    type Hasher = Sha256;

    fn sign(&self, input: impl mail_auth::common::headers::Writable) -> mail_auth::Result<Vec<u8>> {
        self.0.sign(input)
    }

    fn hash(&self, data: impl mail_auth::common::headers::Writable) -> HashOutput {
        self.1
            .get_or_init(|| {
                let mut hasher = <Sha256 as HashImpl>::hasher();
                data.write(&mut hasher);
                hasher.complete()
            })
            .clone()
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
