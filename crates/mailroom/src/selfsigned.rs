//! The self-signed certificate used when `[tls]` names none: made for `hostname`, valid for
//! one year, and made again (at start, and daily while running) when it is missing, expires
//! within 30 days, or names another host (the hostname changed). Written through [`store::private_files`] in
//! `data_dir/tls/`.
//!
//! It does not load the certificate into rustls (see [`crate::tls`]).

use std::path::Path;

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

pub const CERT: &str = "selfsigned-cert.pem";
pub const KEY: &str = "selfsigned-key.pem";
/// Validity of a new certificate.
const VALIDITY_DAYS: i64 = 365;
/// Made again when it expires sooner than this.
const RENEW_BEFORE_DAYS: i64 = 30;

/// Why the existing pair is not good enough, or `None` when it is.
pub fn needs_new(cert_pem: &[u8], hostname: &str, now: time::OffsetDateTime) -> Option<String> {
    let Ok(der) = CertificateDer::from_pem_slice(cert_pem) else {
        return Some("unreadable".into());
    };
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(&der) else {
        return Some("unparsable".into());
    };
    let not_after = cert.validity().not_after.to_datetime();
    if not_after - now < time::Duration::days(RENEW_BEFORE_DAYS) {
        return Some(format!("expires {not_after}"));
    }
    let names_host = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .is_some_and(|san| {
            san.value.general_names.iter().any(|n| {
                matches!(n, x509_parser::extensions::GeneralName::DNSName(d)
                    if d.eq_ignore_ascii_case(hostname))
            })
        });
    (!names_host).then(|| format!("not made for {hostname}"))
}

/// A new key and certificate (PEM) for `hostname`, valid from a day ago for a year.
pub fn generate(hostname: &str, now: time::OffsetDateTime) -> Result<(String, String), String> {
    let fail = |e: rcgen::Error| format!("tls: cannot generate a self-signed certificate: {e}");
    let mut params = rcgen::CertificateParams::new(vec![hostname.to_string()]).map_err(fail)?;
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(VALIDITY_DAYS);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, hostname);
    let key = rcgen::KeyPair::generate().map_err(fail)?;
    let cert = params.self_signed(&key).map_err(fail)?;
    Ok((key.serialize_pem(), cert.pem()))
}

/// Makes the pair in `data_dir/tls/` when [`needs_new`] says so (or it is missing).
pub fn ensure(data_dir: &Path, hostname: &str) -> Result<(), String> {
    let now = time::OffsetDateTime::now_utc();
    let present = store::private_files::exists(data_dir, "tls", CERT)
        && store::private_files::exists(data_dir, "tls", KEY);
    if present {
        // A symlink or unreadable file: leave it, loading refuses it with a clear error.
        let Ok(pem) = store::private_files::read(data_dir, "tls", CERT) else {
            return Ok(());
        };
        match needs_new(&pem, hostname, now) {
            None => return Ok(()),
            Some(why) => tracing::warn!("tls: the self-signed certificate {why}: making a new one"),
        }
    } else {
        tracing::warn!(
            "tls: no certificate configured; generating a self-signed one for {hostname} in {} \
             (mail clients will warn; set tls.certificate and tls.private_key)",
            data_dir.join("tls").display()
        );
    }
    let (key, cert) = generate(hostname, now)?;
    store::private_files::write(
        data_dir,
        "tls",
        &[(KEY, key.as_bytes()), (CERT, cert.as_bytes())],
    )
    .map_err(|e| {
        format!(
            "tls: cannot write in {}: {e}",
            data_dir.join("tls").display()
        )
    })
}

/// For a server that runs for months: once a day, [`ensure`] (as the service user, who owns
/// `data_dir/tls`) and reload, so the certificate is renewed before it expires.
pub async fn renew_daily(
    data_dir: std::path::PathBuf,
    hostname: String,
    cert: std::sync::Arc<crate::tls::ReloadableCert>,
) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(24 * 3600));
    every.tick().await;
    loop {
        every.tick().await;
        let (d, h) = (data_dir.clone(), hostname.clone());
        match tokio::task::spawn_blocking(move || ensure(&d, &h)).await {
            Ok(Ok(())) => {
                if let Err(e) = cert.reload() {
                    tracing::error!("tls: reload of the self-signed certificate failed: {e}");
                }
            }
            Ok(Err(e)) => tracing::error!("{e}"),
            Err(e) => tracing::error!("tls: renewal task failed: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_year_for_the_hostname_then_renewed() {
        let now = time::OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let (_, cert) = generate("mx.example.test", now).unwrap();
        assert_eq!(needs_new(cert.as_bytes(), "mx.example.test", now), None);
        assert_eq!(needs_new(cert.as_bytes(), "MX.example.test", now), None);
        let later = now + time::Duration::days(330);
        assert_eq!(needs_new(cert.as_bytes(), "mx.example.test", later), None);
        let near = now + time::Duration::days(340);
        assert!(needs_new(cert.as_bytes(), "mx.example.test", near).is_some());
        let other = needs_new(cert.as_bytes(), "mail.example.test", now).unwrap();
        assert!(other.contains("not made for"), "{other}");
        assert!(needs_new(b"junk", "mx.example.test", now).is_some());
        let der = CertificateDer::from_pem_slice(cert.as_bytes()).unwrap();
        let (_, parsed) = x509_parser::parse_x509_certificate(&der).unwrap();
        let days = (parsed.validity().not_after.to_datetime() - now).whole_days();
        assert_eq!(days, VALIDITY_DAYS);
    }

    #[test]
    fn ensure_keeps_a_good_pair_and_replaces_one_for_another_host() {
        let t = tempfile::tempdir().unwrap();
        ensure(t.path(), "mx.example.test").unwrap();
        let first = store::private_files::read(t.path(), "tls", CERT).unwrap();
        ensure(t.path(), "mx.example.test").unwrap();
        assert_eq!(
            store::private_files::read(t.path(), "tls", CERT).unwrap(),
            first
        );
        ensure(t.path(), "mail.example.test").unwrap();
        let second = store::private_files::read(t.path(), "tls", CERT).unwrap();
        assert_ne!(second, first);
        let now = time::OffsetDateTime::now_utc();
        assert_eq!(needs_new(&second, "mail.example.test", now), None);
    }
}
