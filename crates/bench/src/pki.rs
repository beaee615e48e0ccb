//! The bench's own certificate authority (rcgen, ECDSA P-256), made fresh for each run: S2S
//! gives the TLS sink (`mx.remote.example`) and the MTA-STS policy server
//! (`mta-sts.remote.example`) certificates signed by it, and Mailroom trusts it through
//! `[relay] ca_file` (the CA's PEM written into the work directory).
//!
//! It keeps nothing on disk but that PEM, and it is no general PKI: one CA, server
//! certificates for one DNS name each, valid for rcgen's default period.

use std::path::Path;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

pub struct BenchCa {
    issuer: Issuer<'static, KeyPair>,
    cert: CertificateDer<'static>,
    pem: String,
}

fn fail(e: rcgen::Error) -> String {
    format!("bench CA: {e}")
}

impl BenchCa {
    pub fn new() -> Result<BenchCa, String> {
        let key = KeyPair::generate().map_err(fail)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(fail)?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "Mailroom Bench CA");
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).map_err(fail)?;
        Ok(BenchCa {
            pem: cert.pem(),
            cert: cert.der().clone(),
            issuer: Issuer::new(params, key),
        })
    }

    /// Writes the CA certificate (PEM) to `path`, for `[relay] ca_file`.
    pub fn write_pem(&self, path: &Path) -> Result<(), String> {
        std::fs::write(path, &self.pem).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// The CA certificate (DER), for a test's root store.
    #[cfg(test)]
    pub fn cert_der(&self) -> CertificateDer<'static> {
        self.cert.clone()
    }

    /// A rustls server config presenting a certificate for `name` (chain: it, then the CA).
    pub fn server_config(&self, name: &str) -> Result<Arc<rustls::ServerConfig>, String> {
        let key = KeyPair::generate().map_err(fail)?;
        let mut params = CertificateParams::new(vec![name.to_string()]).map_err(fail)?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let cert = params.signed_by(&key, &self.issuer).map_err(fail)?;
        let chain = vec![cert.der().clone(), self.cert.clone()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS for {name}: {e}"))?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| format!("TLS for {name}: {e}"))?;
        Ok(Arc::new(config))
    }
}
