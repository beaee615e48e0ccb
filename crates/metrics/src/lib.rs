//! The server's Prometheus metrics (issue 11 item 5, and the flood counters of issue 17): one
//! [`Metrics`] holding every counter, gauge and histogram in a prometheus-client
//! [`Registry`], and [`encode`] for the text exposition format a `GET /metrics` serves
//! (`text/plain; version=0.0.4`).
//!
//! The counters are updated where the matching log line is written (the listeners, the queue
//! runner, the admission gate), through [`global`]: one set per process, as the log is.
//! It is a crate of its own, not a module of `store`, because `smtpd`, `pop3`, `mta` and
//! `store` all count into it and none of them should depend on another for that; it depends on
//! nothing of ours. No HTTP here, and no decision: only numbers.

use std::sync::OnceLock;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
pub use prometheus_client::registry::Registry;

/// Which listener: `smtp`, `submission`, `submissions`, `pop3`, `pop3s`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServiceLabel {
    pub service: &'static str,
}

/// A refused command: the stage (`MAIL`, `RCPT`, `DATA`, `BDAT`, `END-OF-MESSAGE`, `AUTH`)
/// and the reply class (`4xx`, `5xx`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    pub stage: &'static str,
    pub class: &'static str,
}

/// A delivery result: `sent`, `deferred`, `bounced`, `expired`; `via` `local` or `remote`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabels {
    pub result: &'static str,
    pub via: &'static str,
}

/// A queue state: `active` (due now or being delivered) or `deferred`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabel {
    pub state: &'static str,
}

/// A login protocol: `smtp` or `pop3`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProtocolLabel {
    pub protocol: &'static str,
}

/// Every metric of the server.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub connections: Family<ServiceLabel, Counter>,
    pub messages_accepted: Family<ServiceLabel, Counter>,
    pub messages_refused: Family<RefusalLabels, Counter>,
    pub deliveries: Family<DeliveryLabels, Counter>,
    pub queue_messages: Family<QueueLabel, Gauge>,
    pub queue_oldest_age: Gauge,
    pub end_of_data_seconds: Histogram,
    pub delivery_seconds: Histogram,
    pub login_failures: Family<ProtocolLabel, Counter>,
    pub pop3_retrievals: Counter,
    pub tls_handshake_failures: Family<ServiceLabel, Counter>,
    pub certificate_expiry_seconds: Gauge,
    pub stress_episodes: Counter,
    pub evictions: Family<ServiceLabel, Counter>,
    pub early_talkers: Counter,
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

/// 5 ms to about 80 s, doubling.
fn latency_buckets() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 15))
}

impl Metrics {
    /// Every metric at zero, registered under the `mailroom_` prefix.
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("mailroom");
        let m = Metrics {
            registry: Registry::default(),
            connections: Family::default(),
            messages_accepted: Family::default(),
            messages_refused: Family::default(),
            deliveries: Family::default(),
            queue_messages: Family::default(),
            queue_oldest_age: Gauge::default(),
            end_of_data_seconds: latency_buckets(),
            delivery_seconds: latency_buckets(),
            login_failures: Family::default(),
            pop3_retrievals: Counter::default(),
            tls_handshake_failures: Family::default(),
            certificate_expiry_seconds: Gauge::default(),
            stress_episodes: Counter::default(),
            evictions: Family::default(),
            early_talkers: Counter::default(),
        };
        let r = &mut registry;
        r.register(
            "connections",
            "Connections accepted, by service",
            m.connections.clone(),
        );
        r.register(
            "messages_accepted",
            "Messages acknowledged with 250 after they were durable, by service",
            m.messages_accepted.clone(),
        );
        r.register(
            "messages_refused",
            "Refused MAIL/RCPT/DATA/BDAT/END-OF-MESSAGE/AUTH, by stage and reply class",
            m.messages_refused.clone(),
        );
        r.register(
            "deliveries",
            "Delivery results per recipient, by result and local or remote",
            m.deliveries.clone(),
        );
        r.register(
            "queue_messages",
            "Messages in the queue, by state",
            m.queue_messages.clone(),
        );
        r.register(
            "queue_oldest_age_seconds",
            "Age of the oldest message in the queue",
            m.queue_oldest_age.clone(),
        );
        r.register(
            "end_of_data_seconds",
            "From the end of DATA/BDAT to the reply (checks, fsync, direct delivery)",
            m.end_of_data_seconds.clone(),
        );
        r.register(
            "delivery_seconds",
            "Time of one delivery attempt per recipient",
            m.delivery_seconds.clone(),
        );
        r.register(
            "login_failures",
            "Failed logins, by protocol",
            m.login_failures.clone(),
        );
        r.register(
            "pop3_retrievals",
            "Messages retrieved over POP3 (RETR)",
            m.pop3_retrievals.clone(),
        );
        r.register(
            "tls_handshake_failures",
            "TLS handshakes that failed or timed out, by service",
            m.tls_handshake_failures.clone(),
        );
        r.register(
            "certificate_expiry_seconds",
            "Seconds until the served certificate expires",
            m.certificate_expiry_seconds.clone(),
        );
        r.register(
            "stress_episodes",
            "Times the SMTP listeners entered stress mode",
            m.stress_episodes.clone(),
        );
        r.register(
            "evictions",
            "Sessions closed to make room for a newcomer, by service",
            m.evictions.clone(),
        );
        r.register(
            "early_talkers",
            "Clients on port 25 that talked before the greeting",
            m.early_talkers.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The registry holding every metric above, for [`encode`].
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Counts one refused command; `code` is the reply code (4xx or 5xx).
    pub fn refused(&self, stage: &'static str, code: u16) {
        let class = if code >= 500 { "5xx" } else { "4xx" };
        self.messages_refused
            .get_or_create(&RefusalLabels { stage, class })
            .inc();
    }

    /// Counts one delivery result for one recipient.
    pub fn delivered(&self, result: &'static str, via: &'static str) {
        self.deliveries
            .get_or_create(&DeliveryLabels { result, via })
            .inc();
    }

    /// Counts one connection to `service`.
    pub fn connection(&self, service: &'static str) {
        self.connections
            .get_or_create(&ServiceLabel { service })
            .inc();
    }
}

static GLOBAL: OnceLock<Metrics> = OnceLock::new();

/// The process's metrics (made at the first call).
pub fn global() -> &'static Metrics {
    GLOBAL.get_or_init(Metrics::new)
}

/// The registry in the Prometheus text exposition format 0.0.4 (`text/plain;
/// version=0.0.4`), which Prometheus scrapes and `promtool check metrics` reads.
/// prometheus-client writes OpenMetrics, where a counter family `x` has samples `x_total`
/// and the text ends with `# EOF`; the classic format names the family `x_total` too and has
/// no end marker, so those two things are rewritten and nothing else.
pub fn encode(registry: &Registry) -> String {
    let mut open = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut open, registry);
    let counters: std::collections::HashSet<&str> = open
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(open.len() + 64);
    for line in open.lines() {
        if line == "# EOF" {
            continue;
        }
        let header = ["# HELP ", "# TYPE "]
            .into_iter()
            .find_map(|p| line.strip_prefix(p).map(|rest| (p, rest)));
        match header {
            Some((prefix, rest)) => {
                let (name, tail) = rest.split_once(' ').unwrap_or((rest, ""));
                out.push_str(prefix);
                out.push_str(name);
                if counters.contains(name) {
                    out.push_str("_total");
                }
                out.push(' ');
                out.push_str(tail);
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_show_up_in_the_text_format() {
        let m = Metrics::new();
        m.connection("smtp");
        m.connection("smtp");
        m.refused("RCPT", 550);
        m.refused("RCPT", 451);
        m.delivered("sent", "remote");
        m.queue_messages
            .get_or_create(&QueueLabel { state: "deferred" })
            .set(3);
        m.end_of_data_seconds.observe(0.012);
        m.certificate_expiry_seconds.set(86_400);
        let text = encode(m.registry());
        assert!(
            text.contains("mailroom_connections_total{service=\"smtp\"} 2\n"),
            "{text}"
        );
        assert!(text.contains("mailroom_messages_refused_total{stage=\"RCPT\",class=\"5xx\"} 1\n"));
        assert!(text.contains("mailroom_messages_refused_total{stage=\"RCPT\",class=\"4xx\"} 1\n"));
        assert!(text.contains("mailroom_deliveries_total{result=\"sent\",via=\"remote\"} 1\n"));
        assert!(text.contains("mailroom_queue_messages{state=\"deferred\"} 3\n"));
        assert!(text.contains("mailroom_end_of_data_seconds_count 1\n"));
        assert!(text.contains("mailroom_certificate_expiry_seconds 86400\n"));
        assert!(text.contains("# TYPE mailroom_connections_total counter\n"));
        assert!(text.contains("# TYPE mailroom_queue_messages gauge\n"));
        assert!(!text.contains("# EOF"));
    }
}
