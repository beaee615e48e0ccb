//! The keys the server signs with. For a message it finds the `From:` domain, asks the key
//! store which keys of that domain (or of the nearest parent domain we have keys for, so
//! `MAILER-DAEMON@mail.example.org` is signed `d=example.org`, aligned under relaxed DMARC)
//! are active now, and signs with them. What the store said for each domain (its parsed keys,
//! or none) is kept until the key table changes (`DkimKeys::version`: one `PRAGMA
//! data_version` per message instead of a query, and `mailroom dkim activate` in another
//! process still takes effect at the next message, without a restart).
//!
//! Not here: which messages to sign (callers), the signature itself (`signer`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use store::dkim_keys::DkimKeys;

use crate::signer::{self, SigningKey};

/// Domains whose answer is kept at most (beyond, the memo starts over): senders on trusted
/// networks may put any domain in `From:`.
const MEMO_DOMAINS: usize = 1024;

/// What the key store said of one domain, as of one version of the key table.
struct Known {
    version: (i64, u64),
    /// The active selectors (none: the domain has no active key).
    selectors: Vec<String>,
    /// Those keys, parsed.
    keys: Option<Arc<Vec<SigningKey>>>,
}

/// Signs our mail with the active keys of its `From:` domain.
pub struct Keyring {
    store: DkimKeys,
    known: Mutex<HashMap<String, Known>>,
}

impl Keyring {
    pub fn new(store: DkimKeys) -> Keyring {
        Keyring {
            store,
            known: Mutex::new(HashMap::new()),
        }
    }

    /// The active keys for `domain` itself (none when it has no active key). The store is
    /// asked again only when the key table's version moved, and keys are parsed again only
    /// when the active selectors changed.
    fn keys_of(&self, domain: &str) -> Result<Option<Arc<Vec<SigningKey>>>, String> {
        // Read before the store: a change in between only makes the next message ask again.
        let version = self.store.version().map_err(|e| e.to_string())?;
        let mut known = self.known.lock().map_err(|_| "keyring lock poisoned")?;
        let before = known.get(domain);
        if let Some(k) = before.filter(|k| k.version == version) {
            return Ok(k.keys.clone());
        }
        let active = self.store.signing(domain).map_err(|e| e.to_string())?;
        let selectors: Vec<String> = active.iter().map(|k| k.selector.clone()).collect();
        let keys = match before {
            Some(k) if k.selectors == selectors => k.keys.clone(),
            _ if active.is_empty() => None,
            _ => Some(Arc::new(self.parse(&active)?)),
        };
        if known.len() >= MEMO_DOMAINS && !known.contains_key(domain) {
            known.clear();
        }
        known.insert(
            domain.to_string(),
            Known {
                version,
                selectors,
                keys: keys.clone(),
            },
        );
        Ok(keys)
    }

    /// The private keys of `active`, Ed25519 first, then RSA: the order `signer` documents
    /// and the tests read.
    fn parse(&self, active: &[store::dkim_keys::KeyInfo]) -> Result<Vec<SigningKey>, String> {
        let mut keys = Vec::new();
        for info in active {
            let der = self.store.private_key(info).map_err(|e| e.to_string())?;
            keys.push(SigningKey::new(
                &info.domain,
                &info.selector,
                info.algorithm,
                &der,
            )?);
        }
        keys.sort_by_key(|k| k.algorithm() != store::dkim_keys::Algorithm::Ed25519);
        Ok(keys)
    }

    /// The keys for mail from `domain`: its own, else those of the nearest parent domain that
    /// has some (never a bare top-level domain).
    pub fn keys_for(&self, domain: &str) -> Result<Option<Arc<Vec<SigningKey>>>, String> {
        let mut d = domain;
        loop {
            if let Some(keys) = self.keys_of(d)? {
                return Ok(Some(keys));
            }
            match d.split_once('.') {
                Some((_, parent)) if parent.contains('.') => d = parent,
                _ => return Ok(None),
            }
        }
    }

    /// The `DKIM-Signature:` fields for the message made of `chunks` (see `signer::sign`),
    /// or `None` when its `From:` domain is not one we hold keys for (or the message has no
    /// single `From:` address). `From:` is looked for in the last chunk, the message itself.
    pub fn sign(&self, chunks: &[&[u8]]) -> Result<Option<Vec<u8>>, String> {
        let Some(domain) = chunks.last().and_then(|m| signer::from_domain(m)) else {
            return Ok(None);
        };
        let Some(keys) = self.keys_for(&domain)? else {
            return Ok(None);
        };
        signer::sign(&keys, chunks).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_with_the_active_generation_and_follows_activation() {
        let tmp = tempfile::tempdir().unwrap();
        let store = DkimKeys::open(tmp.path()).unwrap();
        let cli = DkimKeys::open(tmp.path()).unwrap();
        cli.add_generation("example.org", &crate::keygen::generate().unwrap(), 1000)
            .unwrap();
        let ring = Keyring::new(store);
        let msg = b"From: a@example.org\r\nTo: b@x.test\r\n\r\nhi\r\n";
        let first = String::from_utf8(ring.sign(&[msg]).unwrap().unwrap()).unwrap();
        assert!(first.contains("s=19700101g1-ed25519"), "{first}");
        assert!(first.contains("s=19700101g1-rsa"));

        let second = cli
            .add_generation("example.org", &crate::keygen::generate().unwrap(), 2000)
            .unwrap();
        // Published only: still signing with generation 1.
        let s = String::from_utf8(ring.sign(&[msg]).unwrap().unwrap()).unwrap();
        assert!(s.contains("g1-rsa") && !s.contains("g2-"));
        cli.activate("example.org", &second[0].selector, 3000)
            .unwrap();
        let s = String::from_utf8(ring.sign(&[msg]).unwrap().unwrap()).unwrap();
        assert!(s.contains("g2-ed25519") && s.contains("g2-rsa") && !s.contains("g1-"));

        // A subdomain signs with the parent's keys; other domains are not ours.
        let sub = b"From: MAILER-DAEMON@mail.example.org\r\n\r\nx\r\n";
        let s = String::from_utf8(ring.sign(&[sub]).unwrap().unwrap()).unwrap();
        assert!(s.contains("d=example.org;"), "{s}");
        assert!(ring
            .sign(&[b"From: a@other.test\r\n\r\nx\r\n"])
            .unwrap()
            .is_none());
        assert!(ring
            .sign(&[b"Subject: no from\r\n\r\nx\r\n"])
            .unwrap()
            .is_none());
    }
}
