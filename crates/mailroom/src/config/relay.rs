//! `[relay]`: delivery to other domains' MTAs, with the typed settings the relay client and
//! the queue's scheduler and retry policy are built from. Checked in `super`.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use super::{HostPort, MaybeSpan, SmarthostTls, Span};

/// `[relay]`: delivery to other domains' MTAs.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct RelayConfig {
    /// Optional "host:port": all remote mail goes there instead of by MX.
    pub smarthost: HostPort,
    /// Optional AUTH user for the smarthost (STARTTLS is then required).
    pub smarthost_username: String,
    /// File holding the smarthost password (first line).
    pub smarthost_password_file: String,
    /// `"verify"` (STARTTLS required, certificate verified for the smarthost's name),
    /// `"opportunistic"` or `"none"` (no TLS; AUTH in plaintext).
    pub smarthost_tls: SmarthostTls,
    /// PEM CA certificates trusted besides the system's, for verifying the smarthost.
    pub ca_file: String,
    /// Old name of `dns.servers` (still read when that is empty).
    pub dns_servers: Vec<SocketAddr>,
    /// Port of remote MTAs (only for tests and odd networks).
    pub remote_port: u16,
    /// Pauses between attempts ("5m", "1h", ...); the last one repeats.
    pub retry_schedule: Vec<Span>,
    /// A message still undeliverable after this long is bounced.
    pub max_queue_lifetime: Span,
    /// One "delayed" DSN after this long; "" disables.
    pub delay_warning_after: MaybeSpan,
    /// Concurrent connections per destination host.
    pub per_destination_limit: usize,
    /// Waits on a remote server (RFC 5321 §4.5.3.2); durations like "30s", "5m".
    pub connect_timeout: Span,
    /// The greeting, and the replies to EHLO/HELO, STARTTLS and AUTH.
    pub greeting_timeout: Span,
    pub mail_timeout: Span,
    /// Each RCPT reply.
    pub rcpt_timeout: Span,
    /// The `354` reply to DATA.
    pub data_init_timeout: Span,
    /// Each block of message data written.
    pub data_block_timeout: Span,
    /// The reply to the final dot.
    pub data_end_timeout: Span,
    /// One whole delivery attempt to one domain (all its MX hosts).
    pub attempt_timeout: Span,
    /// Per-destination scheduler (`mta::queue::schedule`): connections a new destination starts with.
    pub initial_destination_concurrency: usize,
    /// Failed pseudo-cohorts (a window's worth of failed connections) before a destination is
    /// dead.
    pub destination_failed_cohort_limit: u32,
    /// How long a dead destination is left alone the first time; doubles per death.
    pub dead_destination_backoff: Span,
    pub max_dead_destination_backoff: Span,
    /// Obey the MTA-STS policies (RFC 8461) of destination domains (`config::tls_policy`).
    pub mta_sts: bool,
    /// Port of the MTA-STS policy web servers (443; only for tests).
    pub mta_sts_port: u16,
    /// One whole MTA-STS policy fetch (DNS, connect, TLS, answer).
    pub mta_sts_fetch_timeout: Span,
    /// Send TLS-RPT reports (RFC 8460) to the domains whose MTA-STS policies we met.
    pub tls_reports: bool,
    /// How often (one day; shorter only for tests).
    pub tls_report_period: Span,
    /// DANE (RFC 7672) for MX hosts whose DNSSEC-authenticated TLSA records bind them; needs
    /// `[dns] servers` to be a local validating resolver (its AD bit is trusted).
    pub dane: bool,
}

impl RelayConfig {
    /// The duration keys (`*_timeout`, `*_backoff`) with their names, in file order.
    pub fn timeout_keys(&self) -> [(&'static str, Span); 10] {
        [
            ("relay.connect_timeout", self.connect_timeout),
            ("relay.greeting_timeout", self.greeting_timeout),
            ("relay.mail_timeout", self.mail_timeout),
            ("relay.rcpt_timeout", self.rcpt_timeout),
            ("relay.data_init_timeout", self.data_init_timeout),
            ("relay.data_block_timeout", self.data_block_timeout),
            ("relay.data_end_timeout", self.data_end_timeout),
            ("relay.attempt_timeout", self.attempt_timeout),
            (
                "relay.dead_destination_backoff",
                self.dead_destination_backoff,
            ),
            (
                "relay.max_dead_destination_backoff",
                self.max_dead_destination_backoff,
            ),
        ]
    }

    /// The per-destination scheduler's settings; `concurrency` is `delivery.concurrency`
    /// (remote attempts, and local deliveries in their own lane).
    pub fn schedule(&self, concurrency: usize) -> mta::queue::schedule::SchedConfig {
        mta::queue::schedule::SchedConfig {
            remote_slots: concurrency,
            local_slots: concurrency,
            per_destination_limit: self.per_destination_limit,
            initial_concurrency: self.initial_destination_concurrency,
            failed_cohort_limit: self.destination_failed_cohort_limit,
            dead_backoff: self.dead_destination_backoff.get(),
            max_dead_backoff: self.max_dead_destination_backoff.get(),
        }
    }

    /// The queue's retry policy.
    pub fn retry(&self) -> mta::queue::retry::RetryPolicy {
        mta::queue::retry::RetryPolicy {
            schedule: self.retry_schedule.iter().map(|d| d.get()).collect(),
            max_lifetime: self.max_queue_lifetime.get(),
            delay_warning_after: self.delay_warning_after.get(),
        }
    }

    /// The relay client's timeouts.
    pub fn timeouts(&self) -> mta::relay::Timeouts {
        mta::relay::Timeouts {
            connect: self.connect_timeout.get(),
            greeting: self.greeting_timeout.get(),
            mail: self.mail_timeout.get(),
            rcpt: self.rcpt_timeout.get(),
            data_init: self.data_init_timeout.get(),
            data_block: self.data_block_timeout.get(),
            data_end: self.data_end_timeout.get(),
            attempt: self.attempt_timeout.get(),
        }
    }
}

impl Default for RelayConfig {
    fn default() -> RelayConfig {
        RelayConfig {
            smarthost: HostPort::default(),
            smarthost_username: String::new(),
            smarthost_password_file: String::new(),
            smarthost_tls: SmarthostTls::Verify,
            ca_file: String::new(),
            dns_servers: Vec::new(),
            remote_port: 25,
            retry_schedule: ["5m", "10m", "30m", "1h", "2h", "4h"]
                .map(Span::of)
                .to_vec(),
            max_queue_lifetime: Span::of("5d"),
            delay_warning_after: MaybeSpan(Some(Span::of("4h").get())),
            per_destination_limit: 4,
            // RFC 5321 §4.5.3.2's minimums; mta::relay::Timeouts::default() agrees (tested).
            connect_timeout: Span::of("30s"),
            greeting_timeout: Span::of("5m"),
            mail_timeout: Span::of("5m"),
            rcpt_timeout: Span::of("5m"),
            data_init_timeout: Span::of("2m"),
            data_block_timeout: Span::of("3m"),
            data_end_timeout: Span::of("10m"),
            attempt_timeout: Span::of("30m"),
            // mta::queue::schedule::SchedConfig::default() agrees (tested).
            initial_destination_concurrency: 2,
            destination_failed_cohort_limit: 1,
            dead_destination_backoff: Span::of("5m"),
            max_dead_destination_backoff: Span::of("1h"),
            mta_sts: true,
            mta_sts_port: 443,
            mta_sts_fetch_timeout: Span::of("20s"),
            tls_reports: false,
            tls_report_period: Span::of("1d"),
            dane: true,
        }
    }
}
