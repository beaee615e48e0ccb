//! The configuration sections about authentication: `[auth]` (the login guard of SMTP AUTH
//! and POP3), `[dns]` (the one resolver), `[verify]` (SPF/DKIM/DMARC/ARC checks of inbound
//! mail) and `[dkim]` (signing what we send). Types and defaults only; checked in `super`.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::{Config, Span};

/// `[dns]`: the one resolver every lookup goes through (MX, SPF, DKIM, DMARC, ARC).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DnsConfig {
    /// "ip:port" DNS servers; empty: the system resolver (`/etc/resolv.conf`).
    /// `relay.dns_servers` is the old name of this key.
    pub servers: Vec<SocketAddr>,
}

/// `[verify]`: SPF/DKIM/DMARC/ARC checks of mail on port 25 from clients neither trusted
/// nor authenticated.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct VerifyConfig {
    pub spf: bool,
    pub dkim: bool,
    pub dmarc: bool,
    pub arc: bool,
    /// A DMARC `p=reject` failure is refused (`550 5.7.1`); false: delivered, tagged spam.
    pub dmarc_reject: bool,
    /// SPF `fail` (`-all`) of a domain without DMARC is refused (`550 5.7.23`); false: tagged
    /// in `Authentication-Results:` only.
    pub spf_reject: bool,
    /// Record the DMARC results of checked mail and send aggregate reports (RFC 7489 §7.2) to
    /// the `rua=` of each domain that asks.
    pub dmarc_reports: bool,
    /// How often the aggregate reports go out (RFC 7489: daily).
    pub dmarc_report_interval: Span,
}

impl Default for VerifyConfig {
    fn default() -> VerifyConfig {
        VerifyConfig {
            spf: true,
            dkim: true,
            dmarc: true,
            arc: true,
            dmarc_reject: true,
            spf_reject: false,
            dmarc_reports: false,
            dmarc_report_interval: Span::secs(86_400),
        }
    }
}

impl VerifyConfig {
    /// The checker's settings.
    pub fn checks(&self) -> smtpd::verify::VerifyConfig {
        smtpd::verify::VerifyConfig {
            spf: self.spf,
            dkim: self.dkim,
            dmarc: self.dmarc,
            arc: self.arc,
            rules: proto::smtp::verdict::Rules {
                dmarc_reject: self.dmarc_reject,
                spf_reject: self.spf_reject,
            },
        }
    }
}

impl Config {
    /// The DNS servers: `[dns] servers`, else the old `relay.dns_servers`.
    pub fn dns_servers(&self) -> &[SocketAddr] {
        if self.dns.servers.is_empty() {
            &self.relay.dns_servers
        } else {
            &self.dns.servers
        }
    }
}

/// `[dkim]`: signing the mail we send.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DkimConfig {
    /// Sign mail from our domains (submission, trusted networks, our DSNs) once at enqueue
    /// with the domain's active Ed25519 and RSA keys; `false`: send unsigned.
    pub sign: bool,
}

impl Default for DkimConfig {
    fn default() -> DkimConfig {
        DkimConfig { sign: true }
    }
}

/// `[auth]`: the one login guard that SMTP AUTH (587/465) and POP3 (110/995) both obey;
/// failures over either protocol count against both.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Delay before answering the first recent failure ("1s", "500ms"); it doubles with each
    /// further failure from the client's network or against the account.
    pub failure_delay: Span,
    /// Cap on that delay.
    pub max_failure_delay: Span,
    /// Failures (and checks in flight) per client IPv4 address or IPv6 /64 within
    /// `lockout_window`; then that client is refused without a password check.
    pub lockout_after_per_ip: u32,
    /// Failures (and checks in flight) per account from one client address (IPv6: /64) within
    /// `lockout_window`; then that client's logins to it are refused without a password
    /// check. Failures from anywhere only grow the delay: strangers cannot lock the owner out.
    pub lockout_after_per_account: u32,
    /// How long a failure counts.
    pub lockout_window: Span,
    /// Memory of each new argon2id hash, KiB (at least 19456 = 19 MiB, OWASP's minimum).
    pub argon2_memory_kib: u32,
    /// Passes of each new argon2id hash (at least 2, OWASP's minimum at 19 MiB).
    pub argon2_iterations: u32,
}

impl Default for AuthConfig {
    fn default() -> AuthConfig {
        AuthConfig {
            failure_delay: Span::of("1s"),
            max_failure_delay: Span::of("8s"),
            lockout_after_per_ip: 10,
            lockout_after_per_account: 10,
            lockout_window: Span::of("10m"),
            argon2_memory_kib: store::password_hash::Argon2Params::OWASP_MIN.memory_kib,
            argon2_iterations: store::password_hash::Argon2Params::OWASP_MIN.iterations,
        }
    }
}

impl AuthConfig {
    /// The cost of new password hashes (checked at load against OWASP's minimum).
    pub fn argon2(&self) -> store::password_hash::Argon2Params {
        store::password_hash::Argon2Params {
            memory_kib: self.argon2_memory_kib,
            iterations: self.argon2_iterations,
        }
    }

    /// The guard's limits.
    pub fn limits(&self) -> store::login_guard::LoginLimits {
        store::login_guard::LoginLimits {
            failure_delay: self.failure_delay.get(),
            max_failure_delay: self.max_failure_delay.get(),
            lockout_after_per_ip: self.lockout_after_per_ip,
            lockout_after_per_account: self.lockout_after_per_account,
            lockout_window: self.lockout_window.get(),
        }
    }
}
