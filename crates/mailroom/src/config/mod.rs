//! The TOML configuration: its keys, their safe defaults, and loading with one-line errors.
//!
//! `--config FILE` names the file; without it `/etc/mailroom/mailroom.toml` is read when it
//! exists, else the embedded defaults apply. Unknown keys, wrong types and bad addresses are
//! errors that name the key and the line (`smtp.listen[0]: line 4: invalid socket address
//! syntax`). This module only reads; it starts nothing.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

mod authentication;
mod filter;
mod relay;
mod tls_policy;
mod values;
mod web;
pub use authentication::{AuthConfig, DkimConfig, DnsConfig, VerifyConfig};
pub use filter::{FilterConfig, LimitsConfig};
pub use relay::RelayConfig;
pub use values::LogFormat;
pub use values::{parse_duration, HostPort, LogLevel, MaybeSpan, SmarthostTls, Span};
pub use web::{AcmeConfig, HttpConfig};

/// Where the configuration is read from when `--config` is not given.
pub const DEFAULT_PATH: &str = "/etc/mailroom/mailroom.toml";

/// The whole configuration.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Greeting, `Received:`, EHLO; default: the machine's host name.
    pub hostname: String,
    /// Everything Mailroom writes lives under it.
    pub data_dir: PathBuf,
    /// Account that receives `postmaster@` mail of domains without a `postmaster` alias;
    /// empty: the first account created in that domain (then the first account at all).
    pub postmaster: String,
    /// `error`, `warn`, `info`, `debug` or `trace` (overridden by `RUST_LOG`).
    pub log_level: LogLevel,
    /// `text` (`key=value` fields) or `json` (one object per line).
    pub log_format: LogFormat,
    /// Log file, reopened on SIGHUP (for logrotate); `""`: stderr (the journal picks it up).
    pub log_file: String,
    /// Started as root, run as this user after binding the ports (created if missing);
    /// `""` keeps the user Mailroom was started as.
    pub user: String,
    pub smtp: SmtpConfig,
    pub pop3: Pop3Config,
    pub auth: AuthConfig,
    pub tls: TlsConfig,
    pub delivery: DeliveryConfig,
    pub relay: RelayConfig,
    pub dns: DnsConfig,
    pub verify: VerifyConfig,
    pub dkim: DkimConfig,
    pub filter: FilterConfig,
    pub limits: LimitsConfig,
    pub http: HttpConfig,
    pub acme: AcmeConfig,
}

/// `[tls]`: one certificate for every service.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain; empty: a self-signed one is generated under `data_dir/tls/`.
    pub certificate: String,
    /// PEM private key.
    pub private_key: String,
}

/// `[smtp]`: the MX service.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpConfig {
    /// Port 25 listeners; empty disables.
    pub listen: Vec<SocketAddr>,
    /// Port 587 listeners (STARTTLS, AUTH required; RFC 6409); empty disables.
    pub submission: Vec<SocketAddr>,
    /// Port 465 listeners (implicit TLS, AUTH required; RFC 8314); empty disables.
    pub submissions: Vec<SocketAddr>,
    /// Bytes; advertised in SIZE.
    pub max_message_size: u64,
    pub max_recipients: usize,
    /// May relay without AUTH.
    pub trusted_networks: Vec<IpNet>,
    /// Concurrent SMTP connections, all listeners together. When all are taken, the oldest
    /// idle session that has not sent MAIL (not trusted, not authenticated) is closed with
    /// `421 4.7.0` to make room; only when there is none the newcomer gets `421 4.7.0`.
    pub max_connections: usize,
    /// Concurrent SMTP connections from one IP address; more get `421 4.7.0`.
    pub max_connections_per_ip: usize,
    /// Concurrent SMTP connections from one IPv4 /24 or IPv6 /64; more get `421 4.7.0`.
    /// Trusted networks are exempt (from this and the per-address limit).
    pub max_connections_per_net: usize,
    /// Stress mode begins when this percentage of `max_connections` is open, and ends when
    /// the open connections fall to half of that.
    pub stress_threshold: u8,
    /// In stress mode, the command timeout of sessions that are not trusted, not
    /// authenticated and have not completed a transaction ("10s").
    pub stress_timeout: Span,
    /// In stress mode, refused commands allowed to such sessions before `421 4.7.0`.
    pub stress_max_errors: u32,
    /// On the MX port, untrusted clients must wait this long for the end of the greeting
    /// (a `220-` line goes out at once); one that talks first gets `554 5.5.1` ("0s": off).
    pub greet_delay: Span,
    /// How long a whole SMTP session may last, then `421 4.4.2` (seconds, or "1h").
    pub max_session_time: Span,
    /// Refused commands per session, then `421 4.7.0` and close (RFC 5321 §7.8).
    pub max_errors: u32,
    /// Largest header block accepted, in bytes (`552 5.3.4`).
    pub max_header_size: usize,
    /// More `Received:` headers than this is a mail loop (`554 5.4.6`).
    pub max_received_headers: usize,
    /// How long a client may stay silent between commands (RFC 5321 §4.5.3.2: at least 5m).
    pub command_timeout: Span,
    /// How long running sessions get to finish at shutdown before they are told `421`.
    pub shutdown_grace: Span,
}

/// `[pop3]`.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Pop3Config {
    /// Port 110 listeners; empty disables.
    pub listen: Vec<SocketAddr>,
    /// Port 995 listeners (implicit TLS); empty disables.
    pub pop3s: Vec<SocketAddr>,
    /// Concurrent POP3 connections. When all are taken, the oldest session that has not
    /// logged in is closed to make room.
    pub max_connections: usize,
    /// Stress mode begins at this percentage of `max_connections` (ends at half of that).
    pub stress_threshold: u8,
    /// In stress mode, the idle timeout of sessions that have not logged in ("10s").
    pub stress_timeout: Span,
    /// Delete messages retrieved over POP3 this long after their retrieval, even when the
    /// client leaves them on the server ("30d"); "" keeps them.
    pub delete_retrieved_after: MaybeSpan,
    /// Delete any message this long after its delivery; "" keeps them.
    pub delete_after: MaybeSpan,
}

impl Pop3Config {
    /// The retention policy (`store::retention`).
    pub fn retention(&self) -> store::retention::Policy {
        store::retention::Policy {
            delete_retrieved_after: self.delete_retrieved_after.get(),
            delete_after: self.delete_after.get(),
        }
    }
}

/// The POP3 listener's old login-limit settings (`pop3::Pop3Config` fields, never accepted by
/// this file): written under `[pop3]` they get a one-line error naming the `[auth]` key.
const MOVED_POP3_KEYS: [(&str, &str); 5] = [
    ("failed_login_delay", "auth.failure_delay"),
    ("max_failed_login_delay", "auth.max_failure_delay"),
    ("max_failed_per_ip", "auth.lockout_after_per_ip"),
    ("max_failed_per_account", "auth.lockout_after_per_account"),
    ("failed_login_window", "auth.lockout_window"),
];

/// `[delivery]`: the local delivery agent.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeliveryConfig {
    /// Messages delivered at the same time.
    pub concurrency: usize,
    /// Mail whose recipients are all local accounts is written into their Maildirs before the
    /// `250` (durably), skipping the spool: half the disk writes. `false`: always queue.
    pub direct_local: bool,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            hostname: machine_hostname(),
            data_dir: PathBuf::from("/var/lib/mailroom"),
            postmaster: String::new(),
            log_level: LogLevel::Info,
            log_format: LogFormat::Text,
            log_file: String::new(),
            user: "mailroom".into(),
            smtp: SmtpConfig::default(),
            pop3: Pop3Config::default(),
            auth: AuthConfig::default(),
            tls: TlsConfig::default(),
            relay: RelayConfig::default(),
            dkim: DkimConfig::default(),
            delivery: DeliveryConfig::default(),
            dns: DnsConfig::default(),
            verify: VerifyConfig::default(),
            filter: FilterConfig::default(),
            limits: LimitsConfig::default(),
            http: HttpConfig::default(),
            acme: AcmeConfig::default(),
        }
    }
}

/// `0.0.0.0:port` and `[::]:port`: every IPv4 and IPv6 address (the IPv6 socket is bound
/// with `IPV6_V6ONLY`, so the two do not clash).
fn every_address(port: u16) -> Vec<SocketAddr> {
    vec![
        SocketAddr::from(([0, 0, 0, 0], port)),
        SocketAddr::from(([0u16; 8], port)),
    ]
}

impl Default for SmtpConfig {
    fn default() -> SmtpConfig {
        SmtpConfig {
            listen: every_address(25),
            submission: every_address(587),
            submissions: every_address(465),
            max_message_size: 52_428_800,
            max_recipients: 100,
            trusted_networks: vec![
                "127.0.0.0/8".parse().expect("literal network"),
                "::1/128".parse().expect("literal network"),
            ],
            // Capacity from cost: an idle SMTP session costs about 15 KiB (S4; its read buffer
            // is 4 KiB until a transaction begins) and one file descriptor, so 10,000 idle
            // sessions are about 150 MiB. docs/performance.md has the measurement.
            max_connections: 10_000,
            max_connections_per_ip: 50,
            max_connections_per_net: 200,
            stress_threshold: 75,
            stress_timeout: Span::of("10s"),
            stress_max_errors: 3,
            greet_delay: Span::secs(0),
            max_session_time: Span::secs(3600),
            max_errors: 20,
            max_header_size: 1_048_576,
            max_received_headers: 100,
            command_timeout: Span::secs(300),
            shutdown_grace: Span::secs(10),
        }
    }
}

impl Default for Pop3Config {
    fn default() -> Pop3Config {
        Pop3Config {
            listen: every_address(110),
            pop3s: every_address(995),
            max_connections: 500,
            delete_retrieved_after: MaybeSpan(None),
            delete_after: MaybeSpan(None),
            stress_threshold: 75,
            stress_timeout: Span::of("10s"),
        }
    }
}

impl Default for DeliveryConfig {
    fn default() -> DeliveryConfig {
        DeliveryConfig {
            concurrency: 100,
            direct_local: true,
        }
    }
}

/// The machine's host name (the default for `hostname`).
pub fn machine_hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc == 0 {
        let len = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        if let Ok(name) = std::str::from_utf8(&buf[..len]) {
            if !name.is_empty() {
                return name.to_string();
            }
        }
    }
    "localhost".into()
}

/// A configuration that cannot be used; its Display is the one line shown to the admin.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Loads the configuration: `path` if given, else [`DEFAULT_PATH`] if it exists, else the
/// defaults.
pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
    let path = match path {
        Some(p) => p.to_path_buf(),
        None if Path::new(DEFAULT_PATH).exists() => PathBuf::from(DEFAULT_PATH),
        None => return Ok(Config::default()),
    };
    let text = std::fs::read_to_string(&path)
        .map_err(|e| ConfigError(format!("cannot read config {}: {e}", path.display())))?;
    parse(&text).map_err(|e| ConfigError(format!("config {}: {}", path.display(), e.0)))
}

/// Parses configuration text.
pub fn parse(text: &str) -> Result<Config, ConfigError> {
    let de = toml::de::Deserializer::parse(text).map_err(|e| toml_error(text, "", &e))?;
    let config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
        let key = e.path().to_string();
        moved_key(&key, e.inner()).unwrap_or_else(|| toml_error(text, &key, e.inner()))
    })?;
    validate(&config)?;
    Ok(config)
}

/// The error for an old login-limit key under `[pop3]`: which `[auth]` key replaces it.
fn moved_key(key: &str, e: &toml::de::Error) -> Option<ConfigError> {
    if key != "pop3" && !key.starts_with("pop3.") {
        return None;
    }
    let (old, new) = MOVED_POP3_KEYS
        .iter()
        .find(|(old, _)| e.message().contains(&format!("`{old}`")))?;
    Some(ConfigError(format!(
        "pop3.{old}: login limits moved to [auth], shared with SMTP AUTH: use {new}"
    )))
}

fn toml_error(text: &str, key: &str, e: &toml::de::Error) -> ConfigError {
    let line = e
        .span()
        .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
    let message = e.message().trim().replace('\n', " ");
    let key = if key.is_empty() || key == "." {
        String::new()
    } else {
        format!("{key}: ")
    };
    match line {
        Some(l) => ConfigError(format!("{key}line {l}: {message}")),
        None => ConfigError(format!("{key}{message}")),
    }
}

fn validate(c: &Config) -> Result<(), ConfigError> {
    if c.hostname.is_empty() || !proto::smtp::address::valid_domain(&c.hostname) {
        return Err(ConfigError(format!(
            "hostname: not a valid host name: {:?}",
            c.hostname
        )));
    }
    if c.data_dir.as_os_str().is_empty() {
        return Err(ConfigError("data_dir: must not be empty".into()));
    }
    if c.smtp.max_message_size == 0 {
        return Err(ConfigError(
            "smtp.max_message_size: must be more than 0".into(),
        ));
    }
    if c.smtp.max_recipients == 0 {
        return Err(ConfigError(
            "smtp.max_recipients: must be more than 0".into(),
        ));
    }
    if c.smtp.max_connections == 0
        || c.pop3.max_connections == 0
        || c.smtp.max_connections_per_ip == 0
        || c.smtp.max_errors == 0
        || c.smtp.max_received_headers == 0
    {
        return Err(ConfigError(
            "smtp/pop3 limits (max_connections, max_connections_per_ip, max_errors, max_received_headers): must be more than 0".into(),
        ));
    }
    if c.smtp.command_timeout.is_zero() || c.smtp.max_session_time.is_zero() {
        return Err(ConfigError(
            "smtp.command_timeout/max_session_time: must be more than 0".into(),
        ));
    }
    validate_admission(c)?;
    filter::validate(c)?;
    web::validate(&c.http, &c.acme)?;
    validate_auth(&c.auth)?;
    if c.delivery.concurrency == 0 {
        return Err(ConfigError(
            "delivery.concurrency: must be more than 0".into(),
        ));
    }
    if c.relay.retry_schedule.is_empty() {
        return Err(ConfigError(
            "relay.retry_schedule: needs at least one duration".into(),
        ));
    }
    if c.relay.retry_schedule.iter().any(|d| d.is_zero()) {
        return Err(ConfigError(
            "relay.retry_schedule: every pause must be more than 0".into(),
        ));
    }
    for (key, value) in c.relay.timeout_keys() {
        if value.is_zero() {
            return Err(ConfigError(format!("{key}: must be more than 0")));
        }
    }
    if c.relay.initial_destination_concurrency == 0 || c.relay.destination_failed_cohort_limit == 0
    {
        return Err(ConfigError(
            "relay.initial_destination_concurrency/destination_failed_cohort_limit: must be more than 0".into(),
        ));
    }
    if c.relay.per_destination_limit == 0 {
        return Err(ConfigError(
            "relay.per_destination_limit: must be more than 0".into(),
        ));
    }
    if !c.dns.servers.is_empty()
        && !c.relay.dns_servers.is_empty()
        && c.dns.servers != c.relay.dns_servers
    {
        return Err(ConfigError(
            "relay.dns_servers: old name of dns.servers, and both are set differently: keep dns.servers only".into(),
        ));
    }
    if !c.postmaster.is_empty() && proto::smtp::address::check(&c.postmaster).is_err() {
        return Err(ConfigError(format!(
            "postmaster: not an address: {:?}",
            c.postmaster
        )));
    }
    Ok(())
}

fn validate_admission(c: &Config) -> Result<(), ConfigError> {
    if c.smtp.max_connections_per_net == 0 || c.smtp.stress_max_errors == 0 {
        return Err(ConfigError(
            "smtp.max_connections_per_net/stress_max_errors: must be more than 0".into(),
        ));
    }
    for (key, pct) in [
        ("smtp.stress_threshold", c.smtp.stress_threshold),
        ("pop3.stress_threshold", c.pop3.stress_threshold),
    ] {
        if !(1..=100).contains(&pct) {
            return Err(ConfigError(format!(
                "{key}: a percentage of max_connections, 1 to 100: {pct}"
            )));
        }
    }
    for (key, value) in [
        ("smtp.stress_timeout", c.smtp.stress_timeout),
        ("pop3.stress_timeout", c.pop3.stress_timeout),
    ] {
        if value.is_zero() {
            return Err(ConfigError(format!("{key}: must be more than 0")));
        }
    }
    if c.smtp.greet_delay.get() > std::time::Duration::from_secs(60) {
        return Err(ConfigError("smtp.greet_delay: at most 60s".into()));
    }
    Ok(())
}

fn validate_auth(a: &AuthConfig) -> Result<(), ConfigError> {
    a.argon2().check().map_err(ConfigError)?;
    if a.lockout_window.is_zero() {
        return Err(ConfigError(
            "auth.lockout_window: must be more than 0".into(),
        ));
    }
    if a.lockout_after_per_ip == 0 || a.lockout_after_per_account == 0 {
        return Err(ConfigError(
            "auth.lockout_after_per_ip/lockout_after_per_account: must be more than 0".into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
