//! The TOML configuration: its keys, their safe defaults, and loading with one-line errors.
//!
//! `--config FILE` names the file; without it `/etc/mailroom/mailroom.toml` is read when it
//! exists, else the embedded defaults apply. Unknown keys, wrong types and bad addresses are
//! errors that name the key and the line (`smtp.listen[0]: line 4: invalid socket address
//! syntax`). This module only reads; it starts nothing.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::Deserialize;

/// Where the configuration is read from when `--config` is not given.
pub const DEFAULT_PATH: &str = "/etc/mailroom/mailroom.toml";

/// The whole configuration.
#[derive(Clone, Debug, Deserialize)]
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
    pub log_level: String,
    /// Started as root, run as this user after binding the ports (created if missing);
    /// `""` keeps the user Mailroom was started as.
    pub user: String,
    pub smtp: SmtpConfig,
    pub pop3: Pop3Config,
    pub auth: AuthConfig,
    pub tls: TlsConfig,
    pub delivery: DeliveryConfig,
    pub relay: RelayConfig,
    pub dkim: DkimConfig,
}

/// `[dkim]`: signing the mail we send.
#[derive(Clone, Debug, Deserialize)]
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

/// `[relay]`: delivery to other domains' MTAs.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelayConfig {
    /// Optional "host:port": all remote mail goes there instead of by MX.
    pub smarthost: String,
    /// Optional AUTH user for the smarthost (STARTTLS is then required).
    pub smarthost_username: String,
    /// File holding the smarthost password (first line).
    pub smarthost_password_file: String,
    /// "ip:port" DNS servers; empty: the system resolver.
    pub dns_servers: Vec<SocketAddr>,
    /// Port of remote MTAs (only for tests and odd networks).
    pub remote_port: u16,
    /// Pauses between attempts ("5m", "1h", ...); the last one repeats.
    pub retry_schedule: Vec<String>,
    /// A message still undeliverable after this long is bounced.
    pub max_queue_lifetime: String,
    /// One "delayed" DSN after this long; "" disables.
    pub delay_warning_after: String,
    /// Concurrent connections per destination host.
    pub per_destination_limit: usize,
    /// Waits on a remote server (RFC 5321 §4.5.3.2); durations like "30s", "5m".
    pub connect_timeout: String,
    /// The greeting, and the replies to EHLO/HELO, STARTTLS and AUTH.
    pub greeting_timeout: String,
    pub mail_timeout: String,
    /// Each RCPT reply.
    pub rcpt_timeout: String,
    /// The `354` reply to DATA.
    pub data_init_timeout: String,
    /// Each block of message data written.
    pub data_block_timeout: String,
    /// The reply to the final dot.
    pub data_end_timeout: String,
    /// One whole delivery attempt to one domain (all its MX hosts).
    pub attempt_timeout: String,
    /// Per-destination scheduler (`mta::queue::schedule`): connections a new destination starts with.
    pub initial_destination_concurrency: usize,
    /// Failed pseudo-cohorts (a window's worth of failed connections) before a destination is
    /// dead.
    pub destination_failed_cohort_limit: u32,
    /// How long a dead destination is left alone the first time; doubles per death.
    pub dead_destination_backoff: String,
    pub max_dead_destination_backoff: String,
}

impl RelayConfig {
    /// The duration keys (`*_timeout`, `*_backoff`) with their names, in file order.
    pub fn timeout_keys(&self) -> [(&'static str, &str); 10] {
        [
            ("relay.connect_timeout", &self.connect_timeout),
            ("relay.greeting_timeout", &self.greeting_timeout),
            ("relay.mail_timeout", &self.mail_timeout),
            ("relay.rcpt_timeout", &self.rcpt_timeout),
            ("relay.data_init_timeout", &self.data_init_timeout),
            ("relay.data_block_timeout", &self.data_block_timeout),
            ("relay.data_end_timeout", &self.data_end_timeout),
            ("relay.attempt_timeout", &self.attempt_timeout),
            (
                "relay.dead_destination_backoff",
                &self.dead_destination_backoff,
            ),
            (
                "relay.max_dead_destination_backoff",
                &self.max_dead_destination_backoff,
            ),
        ]
    }

    /// The per-destination scheduler's settings; `concurrency` is `delivery.concurrency`
    /// (remote attempts, and local deliveries in their own lane).
    pub fn schedule(&self, concurrency: usize) -> mta::queue::schedule::SchedConfig {
        let d = |text: &str| parse_duration(text).unwrap_or_default();
        mta::queue::schedule::SchedConfig {
            remote_slots: concurrency,
            local_slots: concurrency,
            per_destination_limit: self.per_destination_limit,
            initial_concurrency: self.initial_destination_concurrency,
            failed_cohort_limit: self.destination_failed_cohort_limit,
            dead_backoff: d(&self.dead_destination_backoff),
            max_dead_backoff: d(&self.max_dead_destination_backoff),
        }
    }

    /// The relay client's timeouts (after [`validate`]: every key parses).
    pub fn timeouts(&self) -> mta::relay::Timeouts {
        let d = |text: &str| parse_duration(text).unwrap_or_default();
        mta::relay::Timeouts {
            connect: d(&self.connect_timeout),
            greeting: d(&self.greeting_timeout),
            mail: d(&self.mail_timeout),
            rcpt: d(&self.rcpt_timeout),
            data_init: d(&self.data_init_timeout),
            data_block: d(&self.data_block_timeout),
            data_end: d(&self.data_end_timeout),
            attempt: d(&self.attempt_timeout),
        }
    }
}

impl Default for RelayConfig {
    fn default() -> RelayConfig {
        RelayConfig {
            smarthost: String::new(),
            smarthost_username: String::new(),
            smarthost_password_file: String::new(),
            dns_servers: Vec::new(),
            remote_port: 25,
            retry_schedule: ["5m", "10m", "30m", "1h", "2h", "4h"]
                .map(String::from)
                .to_vec(),
            max_queue_lifetime: "5d".into(),
            delay_warning_after: "4h".into(),
            per_destination_limit: 4,
            // RFC 5321 §4.5.3.2's minimums; mta::relay::Timeouts::default() agrees (tested).
            connect_timeout: "30s".into(),
            greeting_timeout: "5m".into(),
            mail_timeout: "5m".into(),
            rcpt_timeout: "5m".into(),
            data_init_timeout: "2m".into(),
            data_block_timeout: "3m".into(),
            data_end_timeout: "10m".into(),
            attempt_timeout: "30m".into(),
            // mta::queue::schedule::SchedConfig::default() agrees (tested).
            initial_destination_concurrency: 2,
            destination_failed_cohort_limit: 1,
            dead_destination_backoff: "5m".into(),
            max_dead_destination_backoff: "1h".into(),
        }
    }
}

/// Parses "90", "250ms", "30s", "5m", "2h", "5d" into a duration.
pub fn parse_duration(text: &str) -> Option<std::time::Duration> {
    let t = text.trim();
    let (num, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => (&t[..i], &t[i..]),
        None => (t, "s"),
    };
    let n: u64 = num.parse().ok()?;
    if unit == "ms" {
        return Some(std::time::Duration::from_millis(n));
    }
    let secs = match unit {
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        "d" => n.checked_mul(86_400)?,
        _ => return None,
    };
    Some(std::time::Duration::from_secs(secs))
}

/// `[tls]`: one certificate for every service.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM certificate chain; empty: a self-signed one is generated under `data_dir/tls/`.
    pub certificate: String,
    /// PEM private key.
    pub private_key: String,
}

/// `[smtp]`: the MX service.
#[derive(Clone, Debug, Deserialize)]
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
    /// Concurrent SMTP connections, all listeners together; more get `421`.
    pub max_connections: usize,
    /// Concurrent SMTP connections from one IP address; more get `421 4.7.0`.
    pub max_connections_per_ip: usize,
    /// Seconds a whole SMTP session may last, then `421 4.4.2`.
    pub max_session_time: u64,
    /// Refused commands per session, then `421 4.7.0` and close (RFC 5321 §7.8).
    pub max_errors: u32,
    /// Largest header block accepted, in bytes (`552 5.3.4`).
    pub max_header_size: usize,
    /// More `Received:` headers than this is a mail loop (`554 5.4.6`).
    pub max_received_headers: usize,
    /// Seconds a client may stay silent between commands (RFC 5321 §4.5.3.2: at least 300).
    pub command_timeout: u64,
    /// Seconds running sessions get to finish at shutdown before they are told `421`.
    pub shutdown_grace: u64,
}

/// `[pop3]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Pop3Config {
    /// Port 110 listeners; empty disables.
    pub listen: Vec<SocketAddr>,
    /// Port 995 listeners (implicit TLS); empty disables.
    pub pop3s: Vec<SocketAddr>,
    /// Concurrent POP3 connections.
    pub max_connections: usize,
}

/// `[auth]`: the one login guard that SMTP AUTH (587/465) and POP3 (110/995) both obey;
/// failures over either protocol count against both.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Delay before answering the first recent failure ("1s", "500ms"); it doubles with each
    /// further failure from the client's network or against the account.
    pub failure_delay: String,
    /// Cap on that delay.
    pub max_failure_delay: String,
    /// Failures (and checks in flight) per client IPv4 address or IPv6 /64 within
    /// `lockout_window`; then that client is refused without a password check.
    pub lockout_after_per_ip: u32,
    /// Failures (and checks in flight) per account, from anywhere, within `lockout_window`;
    /// then logins to it are refused without a password check.
    pub lockout_after_per_account: u32,
    /// How long a failure counts.
    pub lockout_window: String,
}

impl Default for AuthConfig {
    fn default() -> AuthConfig {
        AuthConfig {
            failure_delay: "1s".into(),
            max_failure_delay: "8s".into(),
            lockout_after_per_ip: 10,
            lockout_after_per_account: 10,
            lockout_window: "10m".into(),
        }
    }
}

impl AuthConfig {
    /// The guard's limits (the config has been validated).
    pub fn limits(&self) -> store::login_guard::LoginLimits {
        let d = store::login_guard::LoginLimits::default();
        store::login_guard::LoginLimits {
            failure_delay: parse_duration(&self.failure_delay).unwrap_or(d.failure_delay),
            max_failure_delay: parse_duration(&self.max_failure_delay)
                .unwrap_or(d.max_failure_delay),
            lockout_after_per_ip: self.lockout_after_per_ip,
            lockout_after_per_account: self.lockout_after_per_account,
            lockout_window: parse_duration(&self.lockout_window).unwrap_or(d.lockout_window),
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
#[derive(Clone, Debug, Deserialize)]
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
            log_level: "info".into(),
            user: "mailroom".into(),
            smtp: SmtpConfig::default(),
            pop3: Pop3Config::default(),
            auth: AuthConfig::default(),
            tls: TlsConfig::default(),
            relay: RelayConfig::default(),
            dkim: DkimConfig::default(),
            delivery: DeliveryConfig::default(),
        }
    }
}

impl Default for SmtpConfig {
    fn default() -> SmtpConfig {
        SmtpConfig {
            listen: vec!["0.0.0.0:25".parse().expect("literal address")],
            submission: vec!["0.0.0.0:587".parse().expect("literal address")],
            submissions: vec!["0.0.0.0:465".parse().expect("literal address")],
            max_message_size: 52_428_800,
            max_recipients: 100,
            trusted_networks: vec![
                "127.0.0.0/8".parse().expect("literal network"),
                "::1/128".parse().expect("literal network"),
            ],
            max_connections: 1000,
            max_connections_per_ip: 50,
            max_session_time: 3600,
            max_errors: 20,
            max_header_size: 1_048_576,
            max_received_headers: 100,
            command_timeout: 300,
            shutdown_grace: 10,
        }
    }
}

impl Default for Pop3Config {
    fn default() -> Pop3Config {
        Pop3Config {
            listen: vec!["0.0.0.0:110".parse().expect("literal address")],
            pop3s: vec!["0.0.0.0:995".parse().expect("literal address")],
            max_connections: 500,
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
    for d in &c.relay.retry_schedule {
        if parse_duration(d).is_none_or(|d| d.is_zero()) {
            return Err(ConfigError(format!(
                "relay.retry_schedule: not a duration: {d:?}"
            )));
        }
    }
    if parse_duration(&c.relay.max_queue_lifetime).is_none() {
        return Err(ConfigError(format!(
            "relay.max_queue_lifetime: not a duration: {:?}",
            c.relay.max_queue_lifetime
        )));
    }
    if !c.relay.delay_warning_after.is_empty()
        && parse_duration(&c.relay.delay_warning_after).is_none()
    {
        return Err(ConfigError(format!(
            "relay.delay_warning_after: not a duration: {:?}",
            c.relay.delay_warning_after
        )));
    }
    if !c.relay.smarthost.is_empty() && parse_host_port(&c.relay.smarthost).is_none() {
        return Err(ConfigError(format!(
            "relay.smarthost: not host:port: {:?}",
            c.relay.smarthost
        )));
    }
    for (key, value) in c.relay.timeout_keys() {
        if parse_duration(value).is_none_or(|d| d.is_zero()) {
            return Err(ConfigError(format!(
                "{key}: not a duration above 0: {value:?}"
            )));
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
    if !c.postmaster.is_empty() && proto::smtp::address::check(&c.postmaster).is_err() {
        return Err(ConfigError(format!(
            "postmaster: not an address: {:?}",
            c.postmaster
        )));
    }
    Ok(())
}

fn validate_auth(a: &AuthConfig) -> Result<(), ConfigError> {
    for (key, value) in [
        ("auth.failure_delay", &a.failure_delay),
        ("auth.max_failure_delay", &a.max_failure_delay),
        ("auth.lockout_window", &a.lockout_window),
    ] {
        if parse_duration(value).is_none() {
            return Err(ConfigError(format!("{key}: not a duration: {value:?}")));
        }
    }
    if parse_duration(&a.lockout_window).is_some_and(|d| d.is_zero()) {
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

/// Splits "host:port" (host may be a name, an IPv4 address or a bracketed IPv6 address).
pub fn parse_host_port(text: &str) -> Option<(String, u16)> {
    let (host, port) = text.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return None;
    }
    Some((host.to_string(), port.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.smtp.listen, vec!["0.0.0.0:25".parse().unwrap()]);
        assert_eq!(c.smtp.max_message_size, 52_428_800);
        assert_eq!(c.smtp.max_recipients, 100);
        assert_eq!(c.smtp.trusted_networks.len(), 2);
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/mailroom"));
    }

    #[test]
    fn full_file() {
        let c = parse(
            "hostname = \"mx.example.test\"\ndata_dir = \"/tmp/x\"\n[smtp]\nlisten = [\"127.0.0.1:2525\"]\nmax_message_size = 1000\nmax_recipients = 5\ntrusted_networks = [\"10.0.0.0/8\"]\n[pop3]\nlisten = []\n",
        )
        .unwrap();
        assert_eq!(c.hostname, "mx.example.test");
        assert_eq!(c.smtp.listen, vec!["127.0.0.1:2525".parse().unwrap()]);
        assert!(c.pop3.listen.is_empty());
        assert_eq!(c.smtp.trusted_networks, vec!["10.0.0.0/8".parse().unwrap()]);
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let e =
            parse("hostname = \"a.test\"\n[smtp]\nlisten = []\nmax_mesage_size = 5\n").unwrap_err();
        assert!(e.0.contains("line 4"), "{}", e.0);
        assert!(e.0.contains("max_mesage_size"), "{}", e.0);
        assert!(!e.0.contains('\n'));
    }

    #[test]
    fn bad_address_names_key_and_line() {
        let e = parse("[smtp]\n\nlisten = [\"127.0.0.1:99999\"]\n").unwrap_err();
        assert!(e.0.contains("smtp.listen"), "{}", e.0);
        assert!(e.0.contains("line 3"), "{}", e.0);
    }

    #[test]
    fn wrong_type_names_key_and_line() {
        let e = parse("[smtp]\nmax_recipients = \"many\"\n").unwrap_err();
        assert!(e.0.contains("smtp.max_recipients"), "{}", e.0);
        assert!(e.0.contains("line 2"), "{}", e.0);
    }

    #[test]
    fn bad_network() {
        let e = parse("[smtp]\ntrusted_networks = [\"10.0.0.0/99\"]\n").unwrap_err();
        assert!(e.0.contains("smtp.trusted_networks"), "{}", e.0);
    }

    #[test]
    fn durations() {
        assert_eq!(
            parse_duration("90"),
            Some(std::time::Duration::from_secs(90))
        );
        assert_eq!(
            parse_duration("5m"),
            Some(std::time::Duration::from_secs(300))
        );
        assert_eq!(
            parse_duration("5d"),
            Some(std::time::Duration::from_secs(432_000))
        );
        assert_eq!(parse_duration("5x"), None);
        assert_eq!(parse_duration(""), None);
        let e = parse("[relay]\nretry_schedule = [\"5m\", \"soon\"]\n").unwrap_err();
        assert!(e.0.contains("relay.retry_schedule"), "{}", e.0);
    }

    #[test]
    fn relay_timeouts() {
        let c = parse("").unwrap();
        assert_eq!(c.relay.timeouts(), mta::relay::Timeouts::default());
        let c = parse("[relay]\ngreeting_timeout = \"2s\"\nattempt_timeout = \"500ms\"\n").unwrap();
        let t = c.relay.timeouts();
        assert_eq!(t.greeting, std::time::Duration::from_secs(2));
        assert_eq!(t.attempt, std::time::Duration::from_millis(500));
        assert_eq!(t.data_end, std::time::Duration::from_secs(600));
        let mut defaults = c.relay.schedule(100);
        defaults.local_slots = mta::queue::schedule::SchedConfig::default().local_slots;
        assert_eq!(
            format!("{defaults:?}"),
            format!("{:?}", mta::queue::schedule::SchedConfig::default())
        );
        let e = parse("[relay]\nrcpt_timeout = \"0s\"\n").unwrap_err();
        assert!(e.0.contains("relay.rcpt_timeout"), "{}", e.0);
        let e = parse("[relay]\ndata_block_timeout = \"slow\"\n").unwrap_err();
        assert!(e.0.contains("relay.data_block_timeout"), "{}", e.0);
    }

    #[test]
    fn auth_section() {
        let c = parse("").unwrap();
        assert_eq!(c.auth.limits(), store::login_guard::LoginLimits::default());
        let c = parse(
            "[auth]\nfailure_delay = \"250ms\"\nmax_failure_delay = \"2s\"\nlockout_after_per_ip = 4\nlockout_after_per_account = 3\nlockout_window = \"1m\"\n",
        )
        .unwrap();
        let l = c.auth.limits();
        assert_eq!(l.failure_delay, std::time::Duration::from_millis(250));
        assert_eq!(l.max_failure_delay, std::time::Duration::from_secs(2));
        assert_eq!(
            (l.lockout_after_per_ip, l.lockout_after_per_account),
            (4, 3)
        );
        assert_eq!(l.lockout_window, std::time::Duration::from_secs(60));
        let e = parse("[auth]\nlockout_window = \"soon\"\n").unwrap_err();
        assert!(e.0.contains("auth.lockout_window"), "{}", e.0);
        let e = parse("[auth]\nlockout_after_per_ip = 0\n").unwrap_err();
        assert!(e.0.contains("auth.lockout_after_per_ip"), "{}", e.0);
    }

    #[test]
    fn old_pop3_login_keys_name_the_auth_key() {
        let e = parse("[pop3]\nlisten = []\nmax_failed_per_ip = 3\n").unwrap_err();
        assert_eq!(
            e.0,
            "pop3.max_failed_per_ip: login limits moved to [auth], shared with SMTP AUTH: use auth.lockout_after_per_ip"
        );
    }

    #[test]
    fn syntax_error_has_line() {
        let e = parse("hostname = \n").unwrap_err();
        assert!(e.0.contains("line 1"), "{}", e.0);
    }
}
