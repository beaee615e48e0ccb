//! `[http]` (the web listeners, MTA-STS, who may scrape `/metrics`) and `[acme]` (certificates
//! from an ACME CA), typed; turned into the `web` crate's settings here. Checked in `super`.

use std::net::SocketAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::Span;

/// `[http]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Plain HTTP listeners (port 80): ACME HTTP-01 answers, everything else redirected to
    /// https; empty disables.
    pub listen: Vec<SocketAddr>,
    /// HTTPS listeners (port 443), with the mail services' certificate; empty disables.
    pub https: Vec<SocketAddr>,
    /// Open HTTP and HTTPS connections, all listeners together; more are closed at once.
    pub max_connections: usize,
    /// How long a client may take to send the TLS handshake and each request's header block
    /// (slowloris); a whole request, its body included, gets three times that.
    pub header_timeout: Span,
    /// Who may read `/metrics`.
    pub metrics_networks: Vec<IpNet>,
    /// The MTA-STS policy's mode (RFC 8461): "testing", "enforce" or "none".
    pub mta_sts_mode: MtaStsMode,
    /// The policy's `max_age` ("7d").
    pub mta_sts_max_age: Span,
}

impl Default for HttpConfig {
    fn default() -> HttpConfig {
        HttpConfig {
            listen: super::every_address(80),
            https: super::every_address(443),
            max_connections: 256,
            header_timeout: Span::of("10s"),
            metrics_networks: vec![
                "127.0.0.0/8".parse().expect("literal network"),
                "::1/128".parse().expect("literal network"),
            ],
            mta_sts_mode: MtaStsMode::Testing,
            mta_sts_max_age: Span::of("7d"),
        }
    }
}

/// `[http] mta_sts_mode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MtaStsMode {
    #[default]
    Testing,
    Enforce,
    None,
}

impl AcmeChallenge {
    pub fn to_web(self) -> web::acme::Challenge {
        match self {
            AcmeChallenge::Http01 => web::acme::Challenge::Http01,
            AcmeChallenge::TlsAlpn01 => web::acme::Challenge::TlsAlpn01,
        }
    }
}

impl HttpConfig {
    /// The policy served for every domain, `mx:` our host name.
    pub fn mta_sts(&self, hostname: &str) -> web::mta_sts::Policy {
        web::mta_sts::Policy {
            mode: match self.mta_sts_mode {
                MtaStsMode::Testing => web::mta_sts::Mode::Testing,
                MtaStsMode::Enforce => web::mta_sts::Mode::Enforce,
                MtaStsMode::None => web::mta_sts::Mode::None,
            },
            mx: hostname.to_string(),
            max_age: self.mta_sts_max_age.get().as_secs(),
        }
    }
}

/// `[acme]`: certificates from an ACME CA (RFC 8555) instead of the self-signed one.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AcmeConfig {
    /// The CA's directory URL; empty: off (the self-signed or `[tls]` certificate).
    pub directory_url: String,
    /// Account contact, "mailto:admin@example.org"; empty: none.
    pub contact: String,
    /// "http-01" (answered on `[http] listen`) or "tls-alpn-01" (answered on `[http] https`).
    pub challenge: AcmeChallenge,
    /// PEM CA certificates trusted for the ACME server itself (tests against a local CA).
    pub ca_file: String,
}

/// `[acme] challenge`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub enum AcmeChallenge {
    #[default]
    #[serde(rename = "http-01")]
    Http01,
    #[serde(rename = "tls-alpn-01")]
    TlsAlpn01,
}

/// The checks of `[http]` and `[acme]` beyond their types.
pub(super) fn validate(http: &HttpConfig, acme: &AcmeConfig) -> Result<(), super::ConfigError> {
    use super::ConfigError;
    if http.max_connections == 0 {
        return Err(ConfigError(
            "http.max_connections: must be more than 0".into(),
        ));
    }
    if http.header_timeout.is_zero() {
        return Err(ConfigError(
            "http.header_timeout: must be more than 0".into(),
        ));
    }
    if http.mta_sts_max_age.get().as_secs() > 31_557_600 {
        return Err(ConfigError(
            "http.mta_sts_max_age: at most one year (RFC 8461)".into(),
        ));
    }
    if !acme.directory_url.is_empty() && !acme.directory_url.starts_with("https://") {
        return Err(ConfigError(
            "acme.directory_url: must be an https:// URL".into(),
        ));
    }
    if !acme.directory_url.is_empty()
        && acme.challenge == AcmeChallenge::TlsAlpn01
        && http.https.is_empty()
    {
        return Err(ConfigError(
            "acme.challenge: \"tls-alpn-01\" is answered on http.https, which is empty".into(),
        ));
    }
    if !acme.contact.is_empty() && !acme.contact.starts_with("mailto:") {
        return Err(ConfigError("acme.contact: must be a mailto: URL".into()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::parse;
    use super::*;

    #[test]
    fn tls_alpn_01_needs_the_https_listener() {
        let acme = "[acme]\ndirectory_url = \"https://ca.test/dir\"\nchallenge = \"tls-alpn-01\"\n";
        let c = parse(acme).unwrap();
        assert_eq!(c.acme.challenge, AcmeChallenge::TlsAlpn01);
        assert_eq!(c.acme.challenge.to_web(), web::acme::Challenge::TlsAlpn01);
        let e = parse(&format!("[http]\nhttps = []\n{acme}")).unwrap_err();
        assert!(e.0.starts_with("acme.challenge:"), "{}", e.0);
        // http-01 is the default, and needs no https listener.
        let c = parse("[http]\nhttps = []\n[acme]\ndirectory_url = \"https://ca.test/dir\"\n");
        assert_eq!(c.unwrap().acme.challenge, AcmeChallenge::Http01);
        assert!(parse("[acme]\nchallenge = \"dns-01\"\n").is_err());
    }
}
