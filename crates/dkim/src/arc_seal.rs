//! ARC sealing of a message we forward (RFC 8617): the next set (`ARC-Authentication-Results`,
//! `ARC-Message-Signature`, `ARC-Seal`, instance i = n + 1 over an existing chain of n) made
//! with the forwarding domain's RSA key through mail-auth's `ArcSealer`. Pure: the caller
//! gives the header block, the body's relaxed/sha256 hash (computed while reading the spool
//! file in blocks: [`relaxed_body_hash`]), and what our checks concluded on arrival.
//!
//! The ARC-Authentication-Results copy our own `Authentication-Results:` (authserv-id and
//! results, unfolded); a message without one (a local or trusted sender: not checked) says
//! `none`. The chain validation `cv=` comes from the `arc=` result of that header: `pass`
//! continues the chain, anything else over an existing chain seals `cv=fail`, and a chain
//! whose last seal says `cv=fail` is not sealed again (RFC 8617 §5.1.2).
//!
//! Not here: which messages are forwarded, reading the spool, the keys' storage.

use std::io::{self, Read};

use mail_auth::arc::{ArcError, ArcSealer, Set};
use mail_auth::common::crypto::{HashAlgorithm, HashContext, HashImpl, Sha256};
use mail_auth::common::headers::{Header, HeaderWriter};
use mail_auth::dkim::canonicalize::BodyHasher;
use mail_auth::dkim::Canonicalization;
use mail_auth::{ArcOutput, AuthenticatedMessage, AuthenticationResults, DkimResult, Error};

use crate::signer::{headers_to_sign, Borrowed, SigningKey};

/// What our arrival checks said about the ARC chain the message came with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChainSeen {
    Pass,
    /// `fail`, or not checked at all.
    NotPass,
}

/// The relaxed/sha256 body hash of a body given as `first` then the rest of `rest`, read in
/// 64 KiB blocks.
pub fn relaxed_body_hash(first: &[u8], rest: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut h = BodyHasher::new(Sha256::hasher(), Canonicalization::Relaxed, 0);
    h.write(first);
    let mut block = vec![0u8; 64 * 1024];
    loop {
        match rest.read(&mut block) {
            Ok(0) => break,
            Ok(n) => h.write(&block[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(h.finish().0.complete().as_ref().to_vec())
}

/// The authserv-id and results of the first `Authentication-Results:` in `head` naming
/// `hostname`, unfolded with white space collapsed, and the chain result it gives; else
/// `hostname; none`.
pub fn our_results(head: &[u8], hostname: &str) -> (String, ChainSeen) {
    let text = String::from_utf8_lossy(head);
    let unfolded = text.replace("\r\n ", " ").replace("\r\n\t", " ");
    for line in unfolded.split("\r\n") {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if !name.trim().eq_ignore_ascii_case("authentication-results") {
            continue;
        }
        let value = value.split_whitespace().collect::<Vec<_>>().join(" ");
        let id = value.split(';').next().unwrap_or("").trim();
        if !id.eq_ignore_ascii_case(hostname) {
            continue;
        }
        let pass = value
            .split(';')
            .any(|r| r.trim().to_ascii_lowercase().starts_with("arc=pass"));
        let seen = if pass {
            ChainSeen::Pass
        } else {
            ChainSeen::NotPass
        };
        return (value, seen);
    }
    (format!("{hostname}; none"), ChainSeen::NotPass)
}

/// The ARC set to put on top of the message whose header block is `head` (with its empty
/// line) and whose body hashes to `body_hash`, sealed with the RSA key among `keys`;
/// `None` when there is nothing to seal with or the chain must not be sealed.
pub fn seal(
    keys: &[SigningKey],
    head: &[u8],
    body_hash: Vec<u8>,
    results: &str,
    seen: ChainSeen,
) -> Result<Option<Vec<u8>>, String> {
    let Some(key) = keys.iter().find(|k| k.rsa().is_some()) else {
        return Ok(None);
    };
    let Some(mut message) = AuthenticatedMessage::parse(head) else {
        return Ok(None);
    };
    let n = message.as_headers.len();
    if message.has_arc_errors || message.ams_headers.len() != n || message.aar_headers.len() != n {
        return Ok(None);
    }
    message.body_hashes.retain(|(c, h, l, _)| {
        !(*c == Canonicalization::Relaxed && *h == HashAlgorithm::Sha256 && *l == 0)
    });
    message.body_hashes.push((
        Canonicalization::Relaxed,
        HashAlgorithm::Sha256,
        0,
        body_hash,
    ));
    let mut output = ArcOutput::default().with_result(match (n, seen) {
        (0, _) => DkimResult::None,
        (_, ChainSeen::Pass) => DkimResult::Pass,
        (_, ChainSeen::NotPass) => DkimResult::Fail(Error::Arc(ArcError::BrokenChain)),
    });
    for i in 0..n {
        let (s, m, r) = (
            &message.as_headers[i],
            &message.ams_headers[i],
            &message.aar_headers[i],
        );
        output = output.with_set(Set {
            signature: Header {
                name: m.name,
                value: m.value,
                header: &m.header,
            },
            seal: Header {
                name: s.name,
                value: s.value,
                header: &s.header,
            },
            results: Header {
                name: r.name,
                value: r.value,
                header: &r.header,
            },
        });
    }
    if !output.can_be_sealed() {
        return Ok(None);
    }
    let names = headers_to_sign(&[head]);
    let rsa = key.rsa().expect("an RSA key");
    // The authserv-id and results as one token: written as they are (no later folding), so
    // the sealed text is the relaxed form a verifier computes.
    let aar = AuthenticationResults::new(results);
    let set = ArcSealer::from_key(Borrowed(rsa))
        .domain(key.domain.clone())
        .selector(key.selector.clone())
        .headers(names)
        .seal(&message, &aar, &output)
        .map_err(|e| format!("ARC sealing for {}: {e}", key.domain))?;
    Ok(Some(set.to_header().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_results_found_unfolded_and_others_ignored() {
        let head = b"Received: x\r\nAuthentication-Results: other.test; arc=pass\r\n\
Authentication-Results: mx.example.test;\r\n\tspf=pass smtp.mailfrom=a@b.test;\r\n\tarc=pass\r\n\
From: a@b.test\r\n\r\n";
        let (text, seen) = our_results(head, "mx.example.test");
        assert_eq!(
            text,
            "mx.example.test; spf=pass smtp.mailfrom=a@b.test; arc=pass"
        );
        assert_eq!(seen, ChainSeen::Pass);
        let (text, seen) = our_results(b"From: a@b.test\r\n\r\n", "mx.example.test");
        assert_eq!(text, "mx.example.test; none");
        assert_eq!(seen, ChainSeen::NotPass);
    }

    #[test]
    fn body_hash_in_blocks_is_mail_auths() {
        let body: Vec<u8> = (0..200_000u32)
            .flat_map(|i| format!("l {i}  \r\n").into_bytes())
            .collect();
        let whole = HashAlgorithm::Sha256
            .hash(Canonicalization::Relaxed.canonical_body(&body, 0))
            .as_ref()
            .to_vec();
        let (a, b) = body.split_at(1000);
        assert_eq!(relaxed_body_hash(a, &mut &b[..]).unwrap(), whole);
    }
}
