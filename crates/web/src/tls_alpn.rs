//! ACME TLS-ALPN-01 (RFC 8737) on the HTTPS listener: while an order is pending, a ClientHello
//! that offers only the ALPN protocol `acme-tls/1` for a challenged name gets that name's
//! self-signed challenge certificate (its critical `id-pe-acmeIdentifier` extension holds the
//! SHA-256 of the key authorization) and `acme-tls/1`, and the listener closes the connection
//! after the handshake ([`is_validation`]); every other ClientHello gets the normal certificate.
//!
//! [`https_config`] derives port 443's rustls configuration from the mail services' one (the
//! same reloadable certificate behind a [`ChallengeResolver`], ALPN `http/1.1`, `http/1.0` and
//! `acme-tls/1`); the mail ports keep the base configuration, which offers no ALPN at all.
//! [`choose`] is the pure decision. The ACME order itself ([`crate::acme`]) fills [`Pending`].

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;

/// The ALPN protocol of TLS-ALPN-01 validations.
pub const ACME_TLS_1: &[u8] = b"acme-tls/1";

/// The ALPN protocols port 443 accepts, in our order of preference.
pub const HTTPS_ALPN: [&[u8]; 3] = [b"http/1.1", b"http/1.0", ACME_TLS_1];

/// Challenge certificates in flight: name (lower case) -> certificate and key.
#[derive(Clone, Default, Debug)]
pub struct Pending(Arc<RwLock<HashMap<String, Arc<CertifiedKey>>>>);

impl Pending {
    /// Makes and keeps the challenge certificate of `name` for a key authorization's SHA-256.
    pub fn insert(&self, name: &str, digest: &[u8]) -> Result<(), String> {
        let key = challenge_key(name, digest)?;
        self.0
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_ascii_lowercase(), Arc::new(key));
        Ok(())
    }

    pub fn remove(&self, name: &str) {
        self.0
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&name.to_ascii_lowercase());
    }

    pub fn get(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&name.to_ascii_lowercase())
            .cloned()
    }
}

impl crate::Challenges {
    /// The TLS-ALPN-01 certificates in flight.
    pub fn alpn(&self) -> &Pending {
        &self.1
    }
}

/// The self-signed challenge certificate of RFC 8737 §3 for `name` (DER) and its key (PKCS#8
/// DER): one dNSName SAN, the critical acmeIdentifier extension with `digest` (32 bytes).
pub fn challenge_certificate(name: &str, digest: &[u8]) -> Result<(Vec<u8>, Vec<u8>), String> {
    if digest.len() != 32 {
        return Err(format!(
            "acme: a key authorization digest has 32 bytes, not {}",
            digest.len()
        ));
    }
    let fail = |e: rcgen::Error| format!("acme: challenge certificate for {name}: {e}");
    let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).map_err(fail)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params
        .custom_extensions
        .push(rcgen::CustomExtension::new_acme_identifier(digest));
    let key = rcgen::KeyPair::generate().map_err(fail)?;
    let cert = params.self_signed(&key).map_err(fail)?;
    Ok((cert.der().to_vec(), key.serialize_der()))
}

fn challenge_key(name: &str, digest: &[u8]) -> Result<CertifiedKey, String> {
    let (cert, key) = challenge_certificate(name, digest)?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key));
    let signing = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| format!("acme: challenge key for {name}: {e}"))?;
    Ok(CertifiedKey::new(vec![CertificateDer::from(cert)], signing))
}

/// What a ClientHello gets.
#[derive(Debug, PartialEq, Eq)]
pub enum Choice {
    /// The normal certificate.
    Normal,
    /// A validation: the challenge certificate of this name (lower case), if one is pending.
    Challenge(String),
    /// `acme-tls/1` without a server name: no certificate, the handshake fails.
    Refuse,
}

/// A validation offers `acme-tls/1` alone (RFC 8737 §3) and names the host; a ClientHello
/// that also offers another protocol is an ordinary client (it gets that protocol).
pub fn choose<'a>(
    server_name: Option<&str>,
    alpn: Option<impl Iterator<Item = &'a [u8]>>,
) -> Choice {
    let Some(protocols) = alpn else {
        return Choice::Normal;
    };
    let mut acme = false;
    for p in protocols {
        if p != ACME_TLS_1 {
            return Choice::Normal;
        }
        acme = true;
    }
    match (acme, server_name) {
        (false, _) => Choice::Normal,
        (true, Some(name)) => Choice::Challenge(name.to_ascii_lowercase()),
        (true, None) => Choice::Refuse,
    }
}

/// Port 443's certificate: the challenge one for validations, the normal one otherwise.
#[derive(Debug)]
pub struct ChallengeResolver {
    pub normal: Arc<dyn ResolvesServerCert>,
    pub pending: Pending,
}

impl ResolvesServerCert for ChallengeResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        match choose(hello.server_name(), hello.alpn()) {
            Choice::Normal => self.normal.resolve(hello),
            Choice::Challenge(name) => {
                let key = self.pending.get(&name);
                if key.is_none() {
                    tracing::info!("acme: tls-alpn-01 hello for {name}: no challenge pending");
                }
                key
            }
            Choice::Refuse => None,
        }
    }
}

/// Port 443's configuration from the mail services' one: the same certificate (and its
/// reloads) behind a [`ChallengeResolver`], and [`HTTPS_ALPN`]. `base` is left as it is.
pub fn https_config(base: &ServerConfig, pending: Pending) -> Arc<ServerConfig> {
    let mut config = base.clone();
    config.cert_resolver = Arc::new(ChallengeResolver {
        normal: base.cert_resolver.clone(),
        pending,
    });
    config.alpn_protocols = HTTPS_ALPN.iter().map(|p| p.to_vec()).collect();
    Arc::new(config)
}

/// Whether a finished handshake was a validation (ALPN `acme-tls/1`): RFC 8737 §3 wants the
/// connection closed without any application data.
pub fn is_validation(alpn: Option<&[u8]>) -> bool {
    alpn == Some(ACME_TLS_1)
}

#[cfg(test)]
#[path = "tls_alpn_tests.rs"]
mod tests;
