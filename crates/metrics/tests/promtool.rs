//! The encoded registry, with every metric driven, passes `promtool check metrics` (Debian
//! `prometheus`): the text Prometheus itself would scrape, and its naming rules (units,
//! `_total` counters, help text).

use std::io::Write;
use std::process::{Command, Stdio};

use metrics::{encode, Metrics, QueueLabel, ServiceLabel};

fn promtool(text: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus) must be installed");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success() && said.trim().is_empty(), said)
}

#[test]
fn every_metric_passes_promtool() {
    let m = Metrics::new();
    for service in ["smtp", "submission", "submissions", "pop3", "pop3s"] {
        m.connection(service);
        m.tls_handshake_failures
            .get_or_create(&ServiceLabel { service })
            .inc();
        m.evictions.get_or_create(&ServiceLabel { service }).inc();
    }
    m.messages_accepted
        .get_or_create(&ServiceLabel { service: "smtp" })
        .inc();
    m.refused("RCPT", 550);
    m.refused("END-OF-MESSAGE", 451);
    for result in ["sent", "deferred", "bounced", "expired"] {
        m.delivered(result, "remote");
    }
    m.delivered("sent", "local");
    for (state, n) in [("active", 2), ("deferred", 5)] {
        m.queue_messages.get_or_create(&QueueLabel { state }).set(n);
    }
    m.queue_oldest_age.set(3600);
    m.end_of_data_seconds.observe(0.004);
    m.end_of_data_seconds.observe(1.5);
    m.delivery_seconds.observe(0.2);
    m.login_failures
        .get_or_create(&metrics::ProtocolLabel { protocol: "pop3" })
        .inc();
    m.pop3_retrievals.inc();
    m.certificate_expiry_seconds.set(30 * 86_400);
    m.stress_episodes.inc();
    m.early_talkers.inc();
    let text = encode(m.registry());
    let (ok, said) = promtool(&text);
    assert!(ok, "promtool: {said}\n{text}");
}

#[test]
fn promtool_does_refuse_a_bad_exposition() {
    // The check above can fail: a counter without `_total` and a help-less metric are refused.
    let (ok, said) = promtool("# TYPE mailroom_x counter\nmailroom_x 1\n");
    assert!(!ok, "{said}");
}
