//! TLS for the relay client: opportunistic STARTTLS (RFC 3207) towards remote MTAs, and a
//! verifying configuration for the smarthost ([`verified_config`]: the system's CA
//! certificates plus `[relay] ca_file`, the name checked against the smarthost's).
//!
//! Opportunistic TLS protects against passive eavesdropping only; like most MTAs (and RFC 7435)
//! we encrypt whenever the server offers it and do not verify its certificate, since a failed
//! check would only make us fall back to plaintext. The handshake signatures are still checked
//! with the ring provider. [`CertCheck`] verifies the chain after such a handshake, for the
//! log (`verified=ca`) and for MTA-STS (`super::tls_policy`), which decides what a failure
//! means. This file does not do DANE.

use std::sync::Arc;

use rustls::client::danger::{ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

/// The `ServerCertVerifier` methods that only check the handshake's signatures, with the
/// algorithms `$algs` (an expression of `self`) of a crypto provider: shared by the relay's
/// verifiers (this file's and `super::dane`'s), which differ only in how they judge a chain.
macro_rules! provider_signature_checks {
    ($self:ident => $algs:expr) => {
        fn verify_tls12_signature(
            &$self,
            message: &[u8],
            cert: &rustls_pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(message, cert, dss, &$algs)
        }

        fn verify_tls13_signature(
            &$self,
            message: &[u8],
            cert: &rustls_pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &$algs)
        }

        fn supported_verify_schemes(&$self) -> Vec<rustls::SignatureScheme> {
            $algs.supported_schemes()
        }
    };
}
pub(crate) use provider_signature_checks;

/// Accepts any certificate chain; checks that the server holds the key of the one it showed.
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    provider_signature_checks!(self => self.0.signature_verification_algorithms);
}

/// The client configuration for opportunistic STARTTLS (certificates not verified).
pub(crate) fn opportunistic_config() -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS client configuration: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider)))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The system's trusted CAs (`/etc/ssl/certs` through rustls-native-certs) plus `extra`.
fn roots(extra: &[CertificateDer<'static>]) -> Result<Arc<rustls::RootCertStore>, String> {
    let mut roots = rustls::RootCertStore::empty();
    let native = rustls_native_certs::load_native_certs();
    for e in &native.errors {
        tracing::warn!("relay: system CA certificates: {e}");
    }
    let (added, _ignored) = roots.add_parsable_certificates(native.certs);
    for cert in extra {
        roots
            .add(cert.clone())
            .map_err(|e| format!("relay.ca_file: {e}"))?;
    }
    if added == 0 && extra.is_empty() {
        tracing::warn!(
            "relay: no trusted CA certificates: verified TLS (smarthost, MTA-STS) cannot work"
        );
    }
    Ok(Arc::new(roots))
}

/// The client configuration that verifies the server's certificate chain and name: the
/// system's trusted CAs (`/etc/ssl/certs` through rustls-native-certs) plus `extra`.
pub fn verified_config(
    extra: &[CertificateDer<'static>],
) -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS client configuration: {e}"))?
        .with_root_certificates(roots(extra)?)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The WebPKI check of a chain a server showed during an opportunistic handshake, run after
/// it: the connection learns whether its certificate verifies for the MX name (`verified=ca`,
/// and what MTA-STS needs) without the handshake failing on it.
#[derive(Clone)]
pub(crate) struct CertCheck(Arc<rustls::client::WebPkiServerVerifier>);

impl CertCheck {
    pub fn new(extra: &[CertificateDer<'static>]) -> Result<CertCheck, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(roots(extra)?, provider)
                .build()
                .map_err(|e| format!("certificate verifier: {e}"))?;
        Ok(CertCheck(verifier))
    }

    /// Whether `chain` (end entity first) is trusted, current and names `host`.
    pub fn verify(
        &self,
        chain: &[CertificateDer<'_>],
        host: &str,
    ) -> Result<(), super::tls_policy::Problem> {
        use super::tls_policy::Problem;
        let Some((end_entity, intermediates)) = chain.split_first() else {
            return Err(Problem::CertificateNotTrusted);
        };
        let name = ServerName::try_from(host.trim_end_matches('.').to_string())
            .map_err(|_| Problem::CertificateHostMismatch)?;
        self.0
            .verify_server_cert(end_entity, intermediates, &name, &[], UnixTime::now())
            .map(|_| ())
            .map_err(|e| Problem::of_certificate(&e))
    }
}

/// The name to send in SNI: the MX host name when it is a valid DNS name, else the address.
pub(crate) fn server_name(host: &str, ip: std::net::IpAddr) -> ServerName<'static> {
    ServerName::try_from(host.trim_end_matches('.').to_string()).unwrap_or(ServerName::from(ip))
}
