use super::*;

fn e(name: &str, kind: &str, value: &str) -> Expected {
    Expected {
        name: name.into(),
        kind: kind.into(),
        value: value.into(),
    }
}

fn ok(v: &[&str]) -> Result<Vec<String>, dns::Failure> {
    Ok(v.iter().map(|s| s.to_string()).collect())
}

#[test]
fn zone_lines_parse_back_into_records() {
    let lines: Vec<String> = [
        "; DNS records for example.org (mail host mail.example.org)",
        "example.org. 3600 IN MX 10 mail.example.org.",
        "example.org. 3600 IN TXT \"v=spf1 mx -all\"",
        "s._domainkey.example.org. 3600 IN TXT \"v=DKIM1; k=rsa; p=AB\" \"CD\\\"E\"",
        "_submission._tcp.example.org. 3600 IN SRV 0 1 587 mail.example.org.",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(
        expected(&lines),
        vec![
            e("example.org", "MX", "10 mail.example.org."),
            e("example.org", "TXT", "v=spf1 mx -all"),
            e(
                "s._domainkey.example.org",
                "TXT",
                "v=DKIM1; k=rsa; p=ABCD\"E"
            ),
            e(
                "_submission._tcp.example.org",
                "SRV",
                "0 1 587 mail.example.org."
            ),
        ]
    );
}

#[test]
fn the_records_dns_records_prints_are_all_parsed() {
    let keys = [];
    let z = crate::dns_records::ZoneInput {
        domain: "example.org",
        hostname: "mail.example.org",
        ipv4: Some("192.0.2.1".parse().unwrap()),
        ipv6: None,
        keys: &keys,
        now: 0,
        submission: Some(587),
        submissions: None,
        pop3: None,
        pop3s: None,
    };
    let lines = crate::dns_records::records(&z);
    let records = expected(&lines);
    assert_eq!(
        records.len(),
        lines.iter().filter(|l| !l.starts_with(';')).count()
    );
    assert!(records.contains(&e("mail.example.org", "A", "192.0.2.1")));
    assert!(records.contains(&e("example.org", "TXT", "v=spf1 ip4:192.0.2.1 -all")));
}

#[test]
fn statuses() {
    let spf = e("example.org", "TXT", "v=spf1 mx -all");
    // Another TXT at the name is not the SPF record.
    assert_eq!(
        compare(
            &spf,
            &ok(&["google-site-verification=x", "v=spf1  mx  -all"])
        ),
        Status::Ok
    );
    assert_eq!(
        compare(&spf, &ok(&["google-site-verification=x"])),
        Status::Missing
    );
    assert_eq!(
        compare(&spf, &ok(&["v=spf1 a -all"])),
        Status::Different(vec!["v=spf1 a -all".into()])
    );
    assert_eq!(compare(&spf, &Err(dns::Failure::NxDomain)), Status::Missing);
    assert_eq!(
        compare(&spf, &Err(dns::Failure::NoRecords)),
        Status::Missing
    );
    assert!(matches!(
        compare(&spf, &Err(dns::Failure::Temporary("SERVFAIL".into()))),
        Status::Error(_)
    ));
    // TXT values: white space around ';' does not matter, case of a key does.
    let key = e("s._domainkey.example.org", "TXT", "v=DKIM1; k=rsa; p=AbC");
    assert_eq!(compare(&key, &ok(&["v=DKIM1;k=rsa;  p=AbC"])), Status::Ok);
    assert!(matches!(
        compare(&key, &ok(&["v=DKIM1; k=rsa; p=abc"])),
        Status::Different(_)
    ));
    // Names compare without case; addresses as addresses.
    let mx = e("example.org", "MX", "10 mail.example.org.");
    assert_eq!(compare(&mx, &ok(&["10 Mail.Example.ORG."])), Status::Ok);
    assert!(matches!(
        compare(&mx, &ok(&["20 mail.example.org."])),
        Status::Different(_)
    ));
    let aaaa = e("mail.example.org", "AAAA", "2001:db8::1");
    assert_eq!(compare(&aaaa, &ok(&["2001:db8:0::1"])), Status::Ok);
}

#[test]
fn lines_show_both_values_and_escape_network_text() {
    let spf = e("example.org", "TXT", "v=spf1 mx -all");
    assert_eq!(
        line(
            &spf,
            &Status::Different(vec!["v=spf1 a\x1b[2J -all".into()])
        ),
        "different example.org TXT expected: v=spf1 mx -all found: v=spf1 a\\x1b[2J -all"
    );
    assert_eq!(
        line(&spf, &Status::Missing),
        "missing   example.org TXT expected: v=spf1 mx -all"
    );
    assert_eq!(
        line(&spf, &Status::Ok),
        "ok        example.org TXT v=spf1 mx -all"
    );
}
