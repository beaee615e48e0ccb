//! MTA-STS (RFC 8461), the pure part: the `_mta-sts` TXT record (§3.1), the policy file
//! (§3.2), which MX host names a policy allows (§4.1), and how a verified-TLS failure is
//! named for `queue list`, the logs and TLS-RPT (RFC 8460 §4.3 result types).
//!
//! Hostile input is bounded here: a policy larger than [`MAX_POLICY`] or not UTF-8 is
//! refused, at most [`MAX_MX_PATTERNS`] `mx` lines are kept, lines longer than 1000 octets
//! are refused, and `max_age` is capped at [`MAX_AGE`] (one year, the RFC's maximum). It does
//! no I/O: fetching is [`super::https`], caching [`super::cache`].

/// The largest policy file accepted (RFC 8461 §3.3: 64 KiB is a fair limit).
pub const MAX_POLICY: usize = 64 * 1024;
/// `max_age` above this (31557600 s, §3.2) is taken as this.
pub const MAX_AGE: u64 = 31_557_600;
/// `mx` patterns kept from one policy.
pub const MAX_MX_PATTERNS: usize = 64;
const MAX_LINE: usize = 1000;

/// `mode` of a policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Deliver only to matching MX hosts over verified TLS.
    Enforce,
    /// Deliver as without a policy; report failures (TLS-RPT).
    Testing,
    /// The domain withdrew its policy.
    None,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Enforce => "enforce",
            Mode::Testing => "testing",
            Mode::None => "none",
        }
    }
}

/// A parsed policy file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    pub mode: Mode,
    /// Seconds the policy may be cached, at most [`MAX_AGE`].
    pub max_age: u64,
    /// `mx` patterns, lower case, without a trailing dot: `mx.example.org` or `*.example.org`.
    pub mx: Vec<String>,
}

/// The `id` of a valid `_mta-sts` TXT record set, or why there is none (then the domain has
/// no MTA-STS policy as far as a fresh lookup can tell, §3.1).
pub fn record_id(records: &[String]) -> Result<String, String> {
    let sts: Vec<&String> = records
        .iter()
        .filter(|r| r.starts_with("v=STSv1;") || r.trim_end() == "v=STSv1")
        .collect();
    let [record] = sts.as_slice() else {
        return Err(format!(
            "{} TXT records start with v=STSv1 (one is needed)",
            sts.len()
        ));
    };
    let mut id = None;
    for (n, field) in record.split(';').enumerate() {
        let field = field.trim_matches(|c| c == ' ' || c == '\t');
        if field.is_empty() {
            continue;
        }
        let Some((key, value)) = field.split_once('=') else {
            return Err(format!("TXT field without '=': {field:?}"));
        };
        match key {
            "v" if n == 0 => {}
            "id" => {
                let ok = (1..=32).contains(&value.len())
                    && value.bytes().all(|b| b.is_ascii_alphanumeric());
                if !ok {
                    return Err("TXT id is not 1 to 32 letters and digits".into());
                }
                id = Some(value.to_string());
            }
            _ => {}
        }
    }
    id.ok_or_else(|| "TXT record without id".into())
}

/// Parses a policy file (§3.2). Unknown keys are ignored, as the RFC asks; `version`, `mode`
/// and `max_age` are required, and `mx` unless the mode is `none`.
pub fn parse_policy(body: &[u8]) -> Result<Policy, String> {
    if body.len() > MAX_POLICY {
        return Err(format!("policy larger than {} KiB", MAX_POLICY / 1024));
    }
    let text = std::str::from_utf8(body).map_err(|_| "policy is not UTF-8".to_string())?;
    let (mut version, mut mode, mut max_age) = (false, None, None);
    let mut mx = Vec::new();
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.len() > MAX_LINE {
            return Err("policy line longer than 1000 octets".into());
        }
        if line.trim().is_empty() {
            continue;
        }
        let Some((key, value)) = line.split_once(':') else {
            return Err(format!("policy line without ':': {:?}", clip(line)));
        };
        let value = value.trim_matches(|c| c == ' ' || c == '\t');
        match key.trim() {
            "version" if value == "STSv1" => version = true,
            "version" => return Err(format!("policy version {:?}", clip(value))),
            "mode" => {
                mode = Some(match value {
                    "enforce" => Mode::Enforce,
                    "testing" => Mode::Testing,
                    "none" => Mode::None,
                    other => return Err(format!("policy mode {:?}", clip(other))),
                })
            }
            "max_age" => {
                let ok = !value.is_empty()
                    && value.len() <= 10
                    && value.bytes().all(|b| b.is_ascii_digit());
                if !ok {
                    return Err(format!("policy max_age {:?}", clip(value)));
                }
                let n: u64 = value.parse().map_err(|_| "policy max_age".to_string())?;
                max_age = Some(n.min(MAX_AGE));
            }
            "mx" => {
                let pattern = value.trim_end_matches('.').to_ascii_lowercase();
                if !valid_pattern(&pattern) {
                    return Err(format!("policy mx {:?}", clip(value)));
                }
                if mx.len() < MAX_MX_PATTERNS && !mx.contains(&pattern) {
                    mx.push(pattern);
                }
            }
            _ => {}
        }
    }
    if !version {
        return Err("policy without version: STSv1".into());
    }
    let mode = mode.ok_or("policy without mode")?;
    let max_age = max_age.ok_or("policy without max_age")?;
    if mx.is_empty() && mode != Mode::None {
        return Err("policy without mx".into());
    }
    Ok(Policy { mode, max_age, mx })
}

fn clip(s: &str) -> String {
    s.chars().take(40).collect()
}

/// A host name, or `*.` and a host name of at least two labels.
fn valid_pattern(p: &str) -> bool {
    let name = p.strip_prefix("*.").unwrap_or(p);
    let labels: Vec<&str> = name.split('.').collect();
    (!p.starts_with("*.") || labels.len() >= 2)
        && name.len() <= 253
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

impl Policy {
    /// §4.1: `host` equals a pattern, or a `*.` pattern's suffix with exactly one more label
    /// in front. Case and a trailing dot do not matter.
    pub fn allows(&self, host: &str) -> bool {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        self.mx.iter().any(|p| match p.strip_prefix("*.") {
            Some(suffix) => host
                .strip_suffix(suffix)
                .and_then(|front| front.strip_suffix('.'))
                .is_some_and(|label| !label.is_empty() && !label.contains('.')),
            None => *p == host,
        })
    }
}

/// Why a hop did not meet a policy that asks for verified TLS, in the words of RFC 8460 §4.3.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Problem {
    StarttlsNotSupported,
    CertificateHostMismatch,
    CertificateExpired,
    CertificateNotTrusted,
    ValidationFailure,
    /// The MX host is not one the policy names (no TLS-RPT result type of its own).
    MxNotInPolicy,
}

impl Problem {
    /// The RFC 8460 result type.
    pub fn result_type(self) -> &'static str {
        match self {
            Problem::StarttlsNotSupported => "starttls-not-supported",
            Problem::CertificateHostMismatch => "certificate-host-mismatch",
            Problem::CertificateExpired => "certificate-expired",
            Problem::CertificateNotTrusted => "certificate-not-trusted",
            Problem::ValidationFailure | Problem::MxNotInPolicy => "validation-failure",
        }
    }

    /// For people: `queue list`, logs.
    pub fn describe(self) -> &'static str {
        match self {
            Problem::StarttlsNotSupported => "STARTTLS not offered",
            Problem::CertificateHostMismatch => "certificate name mismatch",
            Problem::CertificateExpired => "certificate expired",
            Problem::CertificateNotTrusted => "certificate not trusted",
            Problem::ValidationFailure => "TLS handshake failed",
            Problem::MxNotInPolicy => "MX host not in the policy",
        }
    }

    /// rustls' verdict on a certificate, as a problem.
    pub fn of_certificate(error: &rustls::Error) -> Problem {
        use rustls::CertificateError as C;
        match error {
            rustls::Error::InvalidCertificate(c) => match c {
                C::NotValidForName | C::NotValidForNameContext { .. } => {
                    Problem::CertificateHostMismatch
                }
                C::Expired | C::ExpiredContext { .. } => Problem::CertificateExpired,
                C::UnknownIssuer | C::BadSignature | C::NotValidYet => {
                    Problem::CertificateNotTrusted
                }
                C::NotValidYetContext { .. } => Problem::CertificateNotTrusted,
                _ => Problem::CertificateNotTrusted,
            },
            _ => Problem::ValidationFailure,
        }
    }
}

#[cfg(test)]
#[path = "sts_tests.rs"]
mod tests;
