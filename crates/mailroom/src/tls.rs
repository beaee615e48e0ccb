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
    /// The generated pair in `data_dir/tls/`, which the service user can write: read with
    /// `O_NOFOLLOW` (`tls` and the file), so a planted symlink cannot make root load (and
    /// then serve with) some other key on the machine.
    pub in_data_dir: bool,
    /// Configured files that the service user may not read (a root-only key, certbot's
    /// layout): root keeps a copy in `data_dir/tls/installed-*.pem` ([`install_copy`]), and a
    /// reload that may not read the files loads that copy.
    pub copy_in: Option<PathBuf>,
}

/// The names of the copy of a configured pair in `data_dir/tls/`.
pub const COPY_CERT: &str = "installed-cert.pem";
pub const COPY_KEY: &str = "installed-key.pem";

/// The certificate in use; swapped whole on reload.
#[derive(Debug)]
pub struct ReloadableCert {
    source: CertSource,
    current: RwLock<Arc<CertifiedKey>>,
    /// Set once an ACME certificate is installed: reloads of the files then keep it.
    from_acme: std::sync::atomic::AtomicBool,
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
    /// Seconds from `now_unix` until the served certificate's notAfter (negative: expired);
    /// `None` when it cannot be read.
    pub fn seconds_left(&self, now_unix: i64) -> Option<i64> {
        let key = self
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let der = key.cert.first()?;
        let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
        Some(cert.validity().not_after.timestamp() - now_unix)
    }

    /// Reads the files again; on error the old certificate stays in use.
    pub fn reload(&self) -> Result<(), String> {
        if self.from_acme.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(());
        }
        let key = load(&self.source)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(key);
        Ok(())
    }
}

impl ReloadableCert {
    /// Installs a certificate obtained by ACME (PEM chain and key); new handshakes get it,
    /// running sessions keep theirs. On error the old certificate stays.
    pub fn install_acme(&self, chain: &str, key: &str) -> Result<(), String> {
        let ck = parse(&self.source, chain.as_bytes(), key.as_bytes())?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(ck);
        self.from_acme
            .store(true, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }
}

fn load(source: &CertSource) -> Result<CertifiedKey, String> {
    let (cert_pem, key_pem) = match (read_pair(source), &source.copy_in) {
        (Err(e), Some(data_dir)) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            let copy = |name| store::private_files::read(data_dir, "tls", name);
            let pair = copy(COPY_CERT).and_then(|c| Ok((c, copy(COPY_KEY)?)));
            let pair = pair.map_err(|_| {
                format!("{e}; and no copy in data_dir/tls (run `mailroom tls reload` as root)")
            })?;
            tracing::info!(
                "tls: {e}; loading the copy made by root (`mailroom tls reload` or the start)"
            );
            pair
        }
        (pair, _) => pair.map_err(|e| e.to_string())?,
    };
    parse(source, &cert_pem, &key_pem)
}

/// The configured pair's bytes; errors name the key.
fn read_pair(source: &CertSource) -> std::io::Result<(Vec<u8>, Vec<u8>)> {
    let read = |path: &Path, key: &str| {
        read_file(path, source.in_data_dir)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{key} {}: {e}", path.display())))
    };
    Ok((
        read(&source.certificate, "tls.certificate")?,
        read(&source.private_key, "tls.private_key")?,
    ))
}

/// As root, before the drop or from `mailroom tls reload`: checks the configured pair and
/// copies it into `data_dir/tls/` (0600, in a 0700 directory) for the service user's reloads.
/// The originals are neither changed nor made readable to anyone.
pub fn install_copy(source: &CertSource) -> Result<(), String> {
    let Some(data_dir) = &source.copy_in else {
        return Ok(());
    };
    let (cert, key) = read_pair(source).map_err(|e| e.to_string())?;
    parse(source, &cert, &key)?;
    store::private_files::write(data_dir, "tls", &[(COPY_KEY, &key), (COPY_CERT, &cert)]).map_err(
        |e| {
            format!(
                "tls: cannot copy the certificate into {}/tls: {e}",
                data_dir.display()
            )
        },
    )
}

fn parse(source: &CertSource, cert_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, String> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("tls.certificate {}: {e}", source.certificate.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "tls.certificate {}: no certificate in file",
            source.certificate.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem)
        .map_err(|e| e.to_string())
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

/// A file's bytes; with `in_data_dir`, `path` is `data_dir/tls/<name>`, read through
/// [`store::private_files`] (neither `tls` nor `<name>` may be a symlink).
fn read_file(path: &Path, in_data_dir: bool) -> std::io::Result<Vec<u8>> {
    let (Some(tls), Some(name)) = (path.parent(), path.file_name()) else {
        return std::fs::read(path);
    };
    let Some(data_dir) = tls.parent().filter(|_| in_data_dir) else {
        return std::fs::read(path);
    };
    let name = name.to_str().ok_or(std::io::ErrorKind::InvalidInput)?;
    store::private_files::read(data_dir, "tls", name)
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
            in_data_dir: false,
            copy_in: Some(data_dir.to_path_buf()),
        });
    }
    crate::selfsigned::ensure(data_dir, hostname)?;
    let dir = data_dir.join("tls");
    Ok(CertSource {
        certificate: dir.join(crate::selfsigned::CERT),
        private_key: dir.join(crate::selfsigned::KEY),
        in_data_dir: true,
        copy_in: None,
    })
}

/// The certificates of a PEM file (`[relay] ca_file`); `""` gives none.
pub fn ca_certificates(path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    if path.is_empty() {
        return Ok(Vec::new());
    }
    let pem = std::fs::read(path).map_err(|e| format!("relay.ca_file {path}: {e}"))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("relay.ca_file {path}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("relay.ca_file {path}: no certificate in file"));
    }
    Ok(certs)
}

/// The server configuration shared by every TLS listener, and the handle to reload it.
pub fn server_config(
    source: CertSource,
) -> Result<(Arc<rustls::ServerConfig>, Arc<ReloadableCert>), String> {
    let key = load(&source)?;
    let resolver = Arc::new(ReloadableCert {
        source,
        current: RwLock::new(Arc::new(key)),
        from_acme: std::sync::atomic::AtomicBool::new(false),
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
        // The self-signed certificate lives a year: the metric's seconds left.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let left = reload.seconds_left(now).unwrap();
        assert!((360 * 86_400..=366 * 86_400).contains(&left), "{left}");
        assert!(reload.seconds_left(now + 400 * 86_400).unwrap() < 0);
    }

    /// Issue 19: the key was written as root through whatever was at `selfsigned-key.tmp`.
    #[test]
    fn symlinks_planted_at_the_tmp_names_are_not_followed() {
        use std::os::unix::fs::{symlink, PermissionsExt};
        let t = tempfile::tempdir().unwrap();
        let outside = t.path().join("outside");
        std::fs::write(&outside, "precious").unwrap();
        let data = t.path().join("data");
        std::fs::create_dir_all(data.join("tls")).unwrap();
        symlink(&outside, data.join("tls/selfsigned-key.tmp")).unwrap();
        symlink(&outside, data.join("tls/selfsigned-cert.tmp")).unwrap();
        let source = cert_source("", "", "mx.example.test", &data).unwrap();
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), "precious");
        let key = std::fs::symlink_metadata(&source.private_key).unwrap();
        assert!(key.is_file());
        assert_eq!(key.permissions().mode() & 0o777, 0o600);
        assert!(!data.join("tls/selfsigned-key.tmp").exists());
        server_config(source).unwrap();
    }

    /// Root reads the generated pair before the drop: symlinks to another pair are refused.
    #[test]
    fn symlinks_in_place_of_the_generated_pair_are_not_loaded() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("other")).unwrap();
        let other = cert_source("", "", "other.example.test", &t.path().join("other")).unwrap();
        let data = t.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let ours = cert_source("", "", "mx.example.test", &data).unwrap();
        for (path, target) in [
            (&ours.certificate, &other.certificate),
            (&ours.private_key, &other.private_key),
        ] {
            std::fs::remove_file(path).unwrap();
            std::os::unix::fs::symlink(target, path).unwrap();
        }
        let again = cert_source("", "", "mx.example.test", &data).unwrap();
        let e = server_config(again).unwrap_err();
        assert!(e.starts_with("tls.certificate"), "{e}");
    }

    #[test]
    fn a_symlinked_tls_directory_is_refused() {
        let t = tempfile::tempdir().unwrap();
        let elsewhere = t.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        let data = t.path().join("data");
        std::fs::create_dir(&data).unwrap();
        std::os::unix::fs::symlink(&elsewhere, data.join("tls")).unwrap();
        let e = cert_source("", "", "mx.example.test", &data).unwrap_err();
        assert!(e.starts_with("tls: cannot write in"), "{e}");
        assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
    }

    #[test]
    fn missing_files_name_the_key() {
        let e = server_config(CertSource {
            certificate: "/nonexistent/cert.pem".into(),
            private_key: "/nonexistent/key.pem".into(),
            in_data_dir: false,
            copy_in: None,
        })
        .unwrap_err();
        assert!(e.starts_with("tls.certificate"), "{e}");
        assert!(cert_source("x", "", "h", Path::new("/tmp")).is_err());
    }
}
