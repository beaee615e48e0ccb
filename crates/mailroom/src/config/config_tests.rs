//! Loading the configuration: defaults, one-line errors naming key and line, typed values.

use super::*;

#[test]
fn empty_file_gives_defaults() {
    let c = parse("").unwrap();
    let both = |p: u16| -> Vec<std::net::SocketAddr> {
        vec![
            format!("0.0.0.0:{p}").parse().unwrap(),
            format!("[::]:{p}").parse().unwrap(),
        ]
    };
    assert_eq!(c.smtp.listen, both(25));
    assert_eq!(c.smtp.submission, both(587));
    assert_eq!(c.smtp.submissions, both(465));
    assert_eq!(c.pop3.listen, both(110));
    assert_eq!(c.pop3.pop3s, both(995));
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
    let e = parse("hostname = \"a.test\"\n[smtp]\nlisten = []\nmax_mesage_size = 5\n").unwrap_err();
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
fn durations_are_parsed_at_load() {
    let e = parse("[relay]\nretry_schedule = [\"5m\", \"soon\"]\n").unwrap_err();
    assert!(e.0.contains("relay.retry_schedule"), "{}", e.0);
    assert!(e.0.contains("line 2"), "{}", e.0);
    let c = parse("[smtp]\ncommand_timeout = \"10m\"\nmax_session_time = 90\n").unwrap();
    assert_eq!(c.smtp.command_timeout, Span::secs(600));
    assert_eq!(c.smtp.max_session_time, Span::secs(90));
    let c = parse("[relay]\ndelay_warning_after = \"\"\n").unwrap();
    assert_eq!(c.relay.delay_warning_after.get(), None);
    let e = parse("[relay]\nmax_queue_lifetime = \"\"\n").unwrap_err();
    assert!(e.0.contains("relay.max_queue_lifetime"), "{}", e.0);
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

#[test]
fn admission_keys() {
    let c = parse("").unwrap();
    assert_eq!(c.smtp.max_connections, 10_000);
    assert_eq!(c.smtp.max_connections_per_net, 200);
    assert_eq!(c.smtp.stress_threshold, 75);
    assert_eq!(c.smtp.stress_timeout, Span::secs(10));
    assert_eq!(c.smtp.greet_delay, Span::secs(0));
    let c = parse("[smtp]\ngreet_delay = \"2s\"\nstress_threshold = 50\n").unwrap();
    assert_eq!(c.smtp.greet_delay, Span::secs(2));
    assert_eq!(c.smtp.stress_threshold, 50);
    for (text, key) in [
        ("[smtp]\nstress_threshold = 0\n", "smtp.stress_threshold"),
        ("[pop3]\nstress_threshold = 101\n", "pop3.stress_threshold"),
        ("[smtp]\nstress_timeout = \"0s\"\n", "smtp.stress_timeout"),
        ("[pop3]\nstress_timeout = \"soon\"\n", "pop3.stress_timeout"),
        ("[smtp]\ngreet_delay = \"later\"\n", "smtp.greet_delay"),
        ("[smtp]\ngreet_delay = \"5m\"\n", "smtp.greet_delay"),
        (
            "[smtp]\nmax_connections_per_net = 0\n",
            "smtp.max_connections_per_net",
        ),
    ] {
        let e = parse(text).unwrap_err();
        assert!(e.0.contains(key), "{text}: {}", e.0);
    }
}

#[test]
fn dns_and_verify_sections() {
    let c = parse("").unwrap();
    assert!(c.dns_servers().is_empty());
    let v = c.verify.checks();
    assert!(v.spf && v.dkim && v.dmarc && v.arc);
    assert!(v.rules.dmarc_reject && !v.rules.spf_reject);
    let c = parse("[relay]\ndns_servers = [\"127.0.0.1:5353\"]\n").unwrap();
    assert_eq!(c.dns_servers(), &["127.0.0.1:5353".parse().unwrap()]);
    let c = parse("[dns]\nservers = [\"127.0.0.2:53\"]\n[verify]\ndmarc_reject = false\nspf_reject = true\narc = false\n").unwrap();
    assert_eq!(c.dns_servers(), &["127.0.0.2:53".parse().unwrap()]);
    let v = c.verify.checks();
    assert!(!v.arc && !v.rules.dmarc_reject && v.rules.spf_reject);
    let e =
        parse("[dns]\nservers = [\"127.0.0.2:53\"]\n[relay]\ndns_servers = [\"127.0.0.1:53\"]\n")
            .unwrap_err();
    assert!(e.0.starts_with("relay.dns_servers"), "{}", e.0);
    let c = parse("[verify]\ndmarc_reports = true\ndmarc_report_interval = \"2s\"\n").unwrap();
    assert!(c.verify.dmarc_reports && c.verify.dmarc_report_interval.get().as_secs() == 2);
    assert!(!Config::default().verify.dmarc_reports);
    let e = parse("[verify]\ndmarc_reject = \"yes\"\n").unwrap_err();
    assert!(e.0.contains("verify.dmarc_reject"), "{}", e.0);
    let e = parse("[dns]\nservers = [\"nowhere\"]\n").unwrap_err();
    assert!(e.0.contains("dns.servers"), "{}", e.0);
}

#[test]
fn argon2_parameters_floor_at_owasp_minimum() {
    let c = parse("").unwrap();
    assert_eq!(
        c.auth.argon2(),
        store::password_hash::Argon2Params::OWASP_MIN
    );
    let c = parse("[auth]\nargon2_memory_kib = 65536\nargon2_iterations = 3\n").unwrap();
    assert_eq!(
        (c.auth.argon2().memory_kib, c.auth.argon2().iterations),
        (65536, 3)
    );
    let e = parse("[auth]\nargon2_memory_kib = 19455\n").unwrap_err();
    assert!(e.0.contains("auth.argon2_memory_kib"), "{}", e.0);
    let e = parse("[auth]\nargon2_iterations = 1\n").unwrap_err();
    assert!(e.0.contains("auth.argon2_iterations"), "{}", e.0);
}
