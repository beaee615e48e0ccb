use store::dkim_keys::Algorithm;

use super::*;

fn key(selector: &str, state: KeyState, retired_at: Option<u64>, len: usize) -> KeyInfo {
    KeyInfo {
        domain: "example.org".into(),
        selector: selector.into(),
        algorithm: Algorithm::Rsa,
        generation: 1,
        created: 0,
        state,
        retired_at,
        public_key: vec![7; len],
    }
}

const NOW: u64 = 10_000_000;

fn input<'a>(keys: &'a [KeyInfo]) -> ZoneInput<'a> {
    ZoneInput {
        domain: "example.org",
        hostname: "mail.example.org",
        ipv4: None,
        ipv6: None,
        keys,
        now: NOW,
        submission: Some(587),
        submissions: Some(465),
        pop3: Some(110),
        pop3s: None,
    }
}

#[test]
fn the_usual_records() {
    let r = records(&input(&[]));
    let has = |l: &str| r.iter().any(|x| x == l);
    assert!(
        has("example.org. 3600 IN MX 10 mail.example.org."),
        "{r:#?}"
    );
    assert!(has("example.org. 3600 IN TXT \"v=spf1 mx -all\""));
    assert!(has("mail.example.org. 3600 IN TXT \"v=spf1 a -all\""));
    assert!(has(
        "_dmarc.example.org. 3600 IN TXT \"v=DMARC1; p=reject; rua=mailto:postmaster@example.org\""
    ));
    assert!(has(
        "_smtp._tls.example.org. 3600 IN TXT \"v=TLSRPTv1; rua=mailto:postmaster@example.org\""
    ));
    assert!(has(
        "_submission._tcp.example.org. 3600 IN SRV 0 1 587 mail.example.org."
    ));
    assert!(has(
        "_submissions._tcp.example.org. 3600 IN SRV 0 1 465 mail.example.org."
    ));
    assert!(has(
        "_pop3._tcp.example.org. 3600 IN SRV 0 1 110 mail.example.org."
    ));
    assert!(has("_pop3s._tcp.example.org. 3600 IN SRV 0 0 0 ."));
    assert!(!r.iter().any(|l| l.contains(" IN A ")));
}

#[test]
fn addresses_replace_mx_in_spf_and_give_a_records() {
    let mut z = input(&[]);
    z.ipv4 = Some("192.0.2.1".parse().unwrap());
    z.ipv6 = Some("2001:db8::1".parse().unwrap());
    let r = records(&z);
    assert!(r.contains(&"mail.example.org. 3600 IN A 192.0.2.1".to_string()));
    assert!(r.contains(&"mail.example.org. 3600 IN AAAA 2001:db8::1".to_string()));
    assert!(r.contains(
        &"example.org. 3600 IN TXT \"v=spf1 ip4:192.0.2.1 ip6:2001:db8::1 -all\"".to_string()
    ));
}

#[test]
fn dkim_keys_published_active_and_recently_retired_split_at_255() {
    let keys = [
        key("old", KeyState::Retired, Some(NOW - RETIRED_KEPT - 1), 10),
        key("recent", KeyState::Retired, Some(NOW - 60), 10),
        key("now", KeyState::Active, None, 294),
        key("next", KeyState::Published, None, 10),
    ];
    let r = records(&input(&keys));
    let dkim: Vec<&String> = r.iter().filter(|l| l.contains("._domainkey.")).collect();
    assert_eq!(dkim.len(), 3, "{dkim:#?}");
    assert!(!r.iter().any(|l| l.starts_with("old.")));
    let long = dkim.iter().find(|l| l.starts_with("now.")).unwrap();
    // 294 octets of key: 392 base64 characters, more than one string.
    let strings: Vec<&str> = long
        .split(" IN TXT ")
        .nth(1)
        .unwrap()
        .split("\" \"")
        .collect();
    assert_eq!(strings.len(), 2);
    assert!(strings.iter().all(|s| s.trim_matches('"').len() <= 255));
    assert!(long.contains("\"v=DKIM1; k=rsa; p="));
}

#[test]
fn web_names_and_the_mta_sts_id_follow_the_policy() {
    let policy = web::mta_sts::Policy {
        mode: web::mta_sts::Mode::Testing,
        mx: "mx.example.org".into(),
        max_age: 604_800,
    };
    let lines = super::web_records("example.org", "mx.example.org", Some(&policy));
    assert!(lines.contains(&"mta-sts.example.org. 3600 IN CNAME mx.example.org.".to_string()));
    assert!(lines.contains(&"autoconfig.example.org. 3600 IN CNAME mx.example.org.".to_string()));
    let txt = format!(
        "_mta-sts.example.org. 3600 IN TXT \"v=STSv1; id={}\"",
        policy.id()
    );
    assert!(lines.contains(&txt), "{lines:?}");
    let enforce = web::mta_sts::Policy {
        mode: web::mta_sts::Mode::Enforce,
        ..policy.clone()
    };
    let other = super::web_records("example.org", "mx.example.org", Some(&enforce));
    assert_ne!(lines[3], other[3]);
    assert!(super::web_records("example.org", "mx.example.org", None).is_empty());
}
