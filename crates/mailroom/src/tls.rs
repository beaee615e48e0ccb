//! TLS set-up for every service: the rustls server configuration (TLS 1.2 and 1.3 only, the
//! `ring` provider), the certificate from `[tls]`, or a self-signed one for `hostname`
//! generated under `data_dir/tls/` on first start, and reloading on SIGHUP without dropping
//! sessions (new handshakes get the new certificate; running sessions keep theirs).
//!
//! It does not speak any mail protocol: listeners get a [`tokio_rustls::TlsAcceptor`].

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::crypto::ring::default_provider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// Where the certificate and key come from.
#[derive(Clone, Debug)]
pub struct CertSource {
    pub certificate: PathBuf,
    pub private_key: PathBuf,
}

/// The certificate in use; swapped whole on reload.
#[derive(Debug)]
pub struct ReloadableCert {
    source: CertSource,
    current: RwLock<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for ReloadableCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}

impl ReloadableCert {
    /// Reads the files again; on error the old certificate stays in use.
    pub fn reload(&self) -> Result<(), String> {
        let key = load(&self.source)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(key);
        Ok(())
    }
}

fn load(source: &CertSource) -> Result<CertifiedKey, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&source.certificate)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("tls.certificate {}: {e}", source.certificate.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "tls.certificate {}: no certificate in file",
            source.certificate.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&source.private_key)
        .map_err(|e| format!("tls.private_key {}: {e}", source.private_key.display()))?;
    let signing = default_provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| format!("tls.private_key {}: {e}", source.private_key.display()))?;
    let ck = CertifiedKey::new(certs, signing);
    ck.keys_match()
        .map_err(|e| format!("tls: certificate and private key do not match: {e}"))?;
    Ok(ck)
}

/// The certificate files to use: the configured ones, or a self-signed pair for `hostname`
/// under `data_dir/tls/` (created on first start).
pub fn cert_source(
    certificate: &str,
    private_key: &str,
    hostname: &str,
    data_dir: &Path,
) -> Result<CertSource, String> {
    if !certificate.is_empty() || !private_key.is_empty() {
        if certificate.is_empty() || private_key.is_empty() {
            return Err("tls: set both certificate and private_key, or neither".into());
        }
        return Ok(CertSource {
            certificate: PathBuf::from(certificate),
            private_key: PathBuf::from(private_key),
        });
    }
    let dir = data_dir.join("tls");
    let source = CertSource {
        certificate: dir.join("selfsigned-cert.pem"),
        private_key: dir.join("selfsigned-key.pem"),
    };
    if source.certificate.exists() && source.private_key.exists() {
        return Ok(source);
    }
    tracing::warn!(
        "tls: no certificate configured; generating a self-signed one for {hostname} in {} \
         (mail clients will warn; set tls.certificate and tls.private_key)",
        dir.display()
    );
    let generated = rcgen::generate_simple_self_signed(vec![hostname.to_string()])
        .map_err(|e| format!("tls: cannot generate a self-signed certificate: {e}"))?;
    create_private_dir(&dir)?;
    write_private(
        &source.private_key,
        generated.signing_key.serialize_pem().as_bytes(),
    )?;
    write_private(&source.certificate, generated.cert.pem().as_bytes())?;
    Ok(source)
}

fn create_private_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("tls: cannot create {}: {e}", dir.display()))
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| format!("tls: cannot write {}: {e}", tmp.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("tls: cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("tls: cannot write {}: {e}", path.display()))
}

/// The server configuration shared by every TLS listener, and the handle to reload it.
pub fn server_config(
    source: CertSource,
) -> Result<(Arc<rustls::ServerConfig>, Arc<ReloadableCert>), String> {
    let key = load(&source)?;
    let resolver = Arc::new(ReloadableCert {
        source,
        current: RwLock::new(Arc::new(key)),
    });
    // TLS 1.2 and 1.3 only (rustls offers nothing older).
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| format!("tls: {e}"))?
        .with_no_client_auth()
        .with_cert_resolver(resolver.clone());
    Ok((Arc::new(config), resolver))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_signed_is_generated_once_and_loads() {
        let t = tempfile::tempdir().unwrap();
        let a = cert_source("", "", "mx.example.test", t.path()).unwrap();
        let pem1 = std::fs::read(&a.certificate).unwrap();
        let b = cert_source("", "", "mx.example.test", t.path()).unwrap();
        assert_eq!(pem1, std::fs::read(&b.certificate).unwrap());
        let (_, reload) = server_config(b).unwrap();
        reload.reload().unwrap();
    }

    #[test]
    fn missing_files_name_the_key() {
        let e = server_config(CertSource {
            certificate: "/nonexistent/cert.pem".into(),
            private_key: "/nonexistent/key.pem".into(),
        })
        .unwrap_err();
        assert!(e.starts_with("tls.certificate"), "{e}");
        assert!(cert_source("x", "", "h", Path::new("/tmp")).is_err());
    }
}
