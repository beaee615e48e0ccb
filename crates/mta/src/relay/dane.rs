//! DANE for SMTP (RFC 7672): whether an MX host's TLSA records bind it ([`state_of`], pure)
//! and whether a certificate chain satisfies them ([`check`], pure; [`DaneVerifier`], the
//! rustls verifier that runs it during the handshake).
//!
//! Usable records are DANE-TA(2) and DANE-EE(3) with selector 0 (whole certificate) or 1
//! (SubjectPublicKeyInfo) and matching 0 (exact), 1 (SHA-256) or 2 (SHA-512); PKIX-TA/EE (0/1)
//! are unusable for SMTP (§3.1.3) and ignored. DANE-EE checks neither name nor expiry
//! (§3.1.1); DANE-TA needs the trust anchor in the server's chain and checks the chain, its
//! dates and the MX host name from that anchor (§3.1.2), through WebPKI. The DNS side (AD
//! bits of the address and TLSA answers) is `dns::Dns`; what a failure means for a delivery
//! (defer, never plaintext) is `super`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dns::secure::{SecureAnswer, Tlsa};
use dns::Failure;
use rustls::client::danger::{ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::CertificateError;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

/// What DANE asks of one MX host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DaneState {
    /// No DANE: the address or TLSA answer is not authenticated, or no usable record.
    None,
    /// Usable records: TLS is mandatory and must match one of them.
    Required(Arc<Vec<Tlsa>>),
    /// The TLSA lookup failed: the host may not be used now (RFC 7672 §2.2).
    Defer(String),
}

/// How long a host's state is reused (the resolver caches by TTL; this saves the queries).
const CACHE_FOR: Duration = Duration::from_secs(60);
/// Hosts remembered at most (past it the cache starts over).
const CACHE_MAX: usize = 10_000;

/// The DANE states of MX hosts (and ports) for [`CACHE_FOR`]; a deferral is not kept.
#[derive(Default)]
pub(crate) struct DaneCache {
    states: Mutex<HashMap<(String, u16), (Instant, DaneState)>>,
}

impl DaneCache {
    pub fn get(&self, host: &str, port: u16) -> Option<DaneState> {
        let states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        let (at, state) = states.get(&(host.to_ascii_lowercase(), port))?;
        (at.elapsed() < CACHE_FOR).then(|| state.clone())
    }

    pub fn put(&self, host: &str, port: u16, state: &DaneState) {
        if matches!(state, DaneState::Defer(_)) {
            return;
        }
        let mut states = self.states.lock().unwrap_or_else(|e| e.into_inner());
        if states.len() >= CACHE_MAX {
            states.clear();
        }
        states.insert(
            (host.to_ascii_lowercase(), port),
            (Instant::now(), state.clone()),
        );
    }
}

/// The records usable for SMTP (DANE-TA, DANE-EE with known selector and matching types).
pub fn usable(records: &[Tlsa]) -> Vec<Tlsa> {
    records
        .iter()
        .filter(|r| matches!(r.usage, 2 | 3) && r.selector <= 1 && r.matching <= 2)
        .filter(|r| r.matching == 0 || r.data.len() == digest_len(r.matching))
        .cloned()
        .collect()
}

fn digest_len(matching: u8) -> usize {
    match matching {
        1 => 32,
        2 => 64,
        _ => 0,
    }
}

/// What the TLSA answer for `host` (asked only when its address answer was authenticated)
/// means: records the resolver did not authenticate, or a secure denial, are no DANE; a
/// lookup failure defers the host.
pub fn state_of(host: &str, answer: Result<SecureAnswer<Tlsa>, Failure>) -> DaneState {
    match answer {
        Ok(a) if a.authentic => {
            let records = usable(&a.records);
            if records.is_empty() {
                DaneState::None
            } else {
                DaneState::Required(Arc::new(records))
            }
        }
        Ok(_) | Err(Failure::NxDomain | Failure::NoRecords) => DaneState::None,
        Err(Failure::Temporary(e)) => {
            DaneState::Defer(format!("TLSA lookup for {host} failed: {e}"))
        }
    }
}

/// A record as zone-file text (`3 1 1 <hex>`), for logs and TLS-RPT's `policy-string`.
pub fn presentation(r: &Tlsa) -> String {
    let hex: String = r.data.iter().map(|b| format!("{b:02x}")).collect();
    format!("{} {} {} {hex}", r.usage, r.selector, r.matching)
}

/// The bytes a record's selector picks out of a certificate.
fn selected(cert: &[u8], selector: u8) -> Option<Vec<u8>> {
    match selector {
        0 => Some(cert.to_vec()),
        1 => {
            let (_, parsed) = x509_parser::parse_x509_certificate(cert).ok()?;
            Some(parsed.public_key().raw.to_vec())
        }
        _ => None,
    }
}

/// Whether `record` matches `cert` (DER).
pub fn matches(record: &Tlsa, cert: &[u8]) -> bool {
    let Some(bytes) = selected(cert, record.selector) else {
        return false;
    };
    match record.matching {
        0 => bytes == record.data,
        1 => ring::digest::digest(&ring::digest::SHA256, &bytes).as_ref() == record.data,
        2 => ring::digest::digest(&ring::digest::SHA512, &bytes).as_ref() == record.data,
        _ => false,
    }
}

/// How a chain satisfied the records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Matched {
    EndEntity,
    TrustAnchor,
}

/// Whether `chain` (end entity first, as the server sent it) satisfies one of `records` for
/// `host` at `now`; the error is the reason, for the deferral.
pub fn check(
    records: &[Tlsa],
    chain: &[CertificateDer<'_>],
    host: &str,
    now: UnixTime,
    provider: &Arc<CryptoProvider>,
) -> Result<Matched, String> {
    let host = host.trim_end_matches('.');
    let Some((end_entity, rest)) = chain.split_first() else {
        return Err(format!("no certificate from {host}"));
    };
    if records
        .iter()
        .any(|r| r.usage == 3 && matches(r, end_entity))
    {
        return Ok(Matched::EndEntity);
    }
    let mut anchor_error = None;
    for (i, cert) in rest.iter().enumerate() {
        if !records.iter().any(|r| r.usage == 2 && matches(r, cert)) {
            continue;
        }
        match chains_to(end_entity, rest, i, host, now, provider) {
            Ok(()) => return Ok(Matched::TrustAnchor),
            Err(e) => anchor_error = Some(e),
        }
    }
    Err(match anchor_error {
        Some(e) => {
            format!("the certificate of {host} does not verify from its TLSA trust anchor: {e}")
        }
        None => format!("no TLSA record matches the certificate of {host}"),
    })
}

/// WebPKI from `rest[anchor]` as the only trust anchor to `end_entity`, for `host`.
fn chains_to(
    end_entity: &CertificateDer<'_>,
    rest: &[CertificateDer<'_>],
    anchor: usize,
    host: &str,
    now: UnixTime,
    provider: &Arc<CryptoProvider>,
) -> Result<(), String> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rest[anchor].clone().into_owned())
        .map_err(|e| e.to_string())?;
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .map_err(|e| e.to_string())?;
    let intermediates: Vec<CertificateDer<'_>> = rest
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != anchor)
        .map(|(_, c)| c.clone())
        .collect();
    let name = ServerName::try_from(host.to_string()).map_err(|e| e.to_string())?;
    verifier
        .verify_server_cert(end_entity, &intermediates, &name, &[], now)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// The verifier of a handshake with an MX host that has usable TLSA records: [`check`] on
/// the chain (the name rustls passes is ignored: the records are for `host`), the handshake
/// signatures by the ring provider. The reason of a refusal is kept in `failure` for the
/// deferral (rustls's own error says only "application verification failure").
#[derive(Debug)]
pub(crate) struct DaneVerifier {
    pub records: Arc<Vec<Tlsa>>,
    pub host: String,
    pub provider: Arc<CryptoProvider>,
    pub failure: FailureSlot,
}

/// Where [`DaneVerifier`] leaves the reason of a refusal.
pub(crate) type FailureSlot = Arc<Mutex<Option<String>>>;

impl ServerCertVerifier for DaneVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut chain = vec![end_entity.clone()];
        chain.extend(intermediates.iter().cloned());
        match check(&self.records, &chain, &self.host, now, &self.provider) {
            Ok(_) => Ok(ServerCertVerified::assertion()),
            Err(reason) => {
                *self.failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason);
                Err(rustls::Error::InvalidCertificate(
                    CertificateError::ApplicationVerificationFailure,
                ))
            }
        }
    }

    super::tls::provider_signature_checks!(self => self.provider.signature_verification_algorithms);
}

/// A client configuration for one handshake with `host` under `records`, and the slot where
/// a refusal's reason lands.
pub(crate) fn config(
    records: Arc<Vec<Tlsa>>,
    host: &str,
) -> Result<(Arc<rustls::ClientConfig>, FailureSlot), String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let failure = Arc::new(Mutex::new(None));
    let verifier = DaneVerifier {
        records,
        host: host.trim_end_matches('.').to_string(),
        provider: provider.clone(),
        failure: failure.clone(),
    };
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS client configuration: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok((Arc::new(config), failure))
}

#[cfg(test)]
#[path = "dane_tests.rs"]
mod tests;
