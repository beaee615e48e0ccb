use super::*;

fn txt(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn txt_record_id() {
    assert_eq!(
        record_id(&txt(&["v=STSv1; id=20160831085700Z;"])).unwrap(),
        "20160831085700Z"
    );
    assert_eq!(record_id(&txt(&["v=STSv1;id=abc"])).unwrap(), "abc");
    // Other TXT records are ignored; two STS records are none.
    assert_eq!(
        record_id(&txt(&["v=spf1 -all", "v=STSv1; id=a1;"])).unwrap(),
        "a1"
    );
    assert!(record_id(&txt(&["v=STSv1; id=a1;", "v=STSv1; id=a2;"])).is_err());
    assert!(record_id(&txt(&[])).is_err());
    assert!(record_id(&txt(&["v=STSv1;"])).is_err());
    assert!(record_id(&txt(&["v=STSv1; id=has-dash;"])).is_err());
    assert!(record_id(&txt(&[&format!("v=STSv1; id={};", "a".repeat(33))])).is_err());
    assert!(record_id(&txt(&["v=STSv2; id=a;"])).is_err());
    assert!(record_id(&txt(&["x v=STSv1; id=a;"])).is_err());
}

const GOOD: &str = "version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmx: *.example.net\r\nmx: backupmx.example.com.\r\nmax_age: 604800\r\n";

#[test]
fn policy_of_the_rfc() {
    let p = parse_policy(GOOD.as_bytes()).unwrap();
    assert_eq!(p.mode, Mode::Enforce);
    assert_eq!(p.max_age, 604800);
    assert_eq!(
        p.mx,
        vec!["mail.example.com", "*.example.net", "backupmx.example.com"]
    );
    // LF only, unknown keys, spaces around values.
    let p =
        parse_policy(b"version: STSv1\nmode:testing\nfoo: bar\nmx:  a.example \nmax_age: 86400\n")
            .unwrap();
    assert_eq!(p.mode, Mode::Testing);
    assert_eq!(p.mx, vec!["a.example"]);
    let p = parse_policy(b"version: STSv1\nmode: none\nmax_age: 1\n").unwrap();
    assert_eq!(p.mode, Mode::None);
}

#[test]
fn policy_refusals() {
    for (bad, why) in [
        (
            "mode: enforce\nmx: a.example\nmax_age: 1\n",
            "without version",
        ),
        (
            "version: STSv2\nmode: enforce\nmx: a.example\nmax_age: 1\n",
            "version",
        ),
        (
            "version: STSv1\nmode: strict\nmx: a.example\nmax_age: 1\n",
            "mode",
        ),
        (
            "version: STSv1\nmx: a.example\nmax_age: 1\n",
            "without mode",
        ),
        ("version: STSv1\nmode: enforce\nmax_age: 1\n", "without mx"),
        (
            "version: STSv1\nmode: enforce\nmx: a.example\n",
            "without max_age",
        ),
        (
            "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: -1\n",
            "max_age",
        ),
        (
            "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 12345678901\n",
            "max_age",
        ),
        (
            "version: STSv1\nmode: enforce\nmx: *.com\nmax_age: 1\n",
            "mx",
        ),
        (
            "version: STSv1\nmode: enforce\nmx: a..example\nmax_age: 1\n",
            "mx",
        ),
        (
            "version: STSv1\nmode: enforce\nmx: a.*.example\nmax_age: 1\n",
            "mx",
        ),
        ("<html>hello</html>\n", "without ':'"),
    ] {
        let e = parse_policy(bad.as_bytes()).unwrap_err();
        assert!(e.contains(why), "{bad:?}: {e}");
    }
}

#[test]
fn hostile_policies() {
    // 1 MiB: refused before it is even looked at.
    let mut big = GOOD.as_bytes().to_vec();
    big.resize(1 << 20, b'\n');
    assert!(parse_policy(&big)
        .unwrap_err()
        .contains("larger than 64 KiB"));
    // Bad UTF-8.
    let mut bad = GOOD.as_bytes().to_vec();
    bad.extend_from_slice(b"mx: \xff\xfe.example\n");
    assert_eq!(parse_policy(&bad).unwrap_err(), "policy is not UTF-8");
    // Absurd max_age: capped at a year.
    let p = parse_policy(b"version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 9999999999\n")
        .unwrap();
    assert_eq!(p.max_age, MAX_AGE);
    // Thousands of mx lines: the first 64 kept, within 64 KiB.
    let mut many = String::from("version: STSv1\nmode: enforce\nmax_age: 60\n");
    for i in 0..3000 {
        many.push_str(&format!("mx: m{i}.example\n"));
    }
    let p = parse_policy(many.as_bytes()).unwrap();
    assert_eq!(p.mx.len(), MAX_MX_PATTERNS);
    // A line of 2000 octets.
    let long = format!(
        "version: STSv1\nmode: enforce\nmx: {}.example\nmax_age: 1\n",
        "a".repeat(2000)
    );
    assert!(parse_policy(long.as_bytes()).is_err());
}

#[test]
fn mx_matching() {
    let p = parse_policy(GOOD.as_bytes()).unwrap();
    assert!(p.allows("mail.example.com"));
    assert!(p.allows("MAIL.Example.COM."));
    assert!(p.allows("backupmx.example.com"));
    assert!(p.allows("mx1.example.net"));
    // The wildcard stands for exactly one label.
    assert!(!p.allows("example.net"));
    assert!(!p.allows("a.b.example.net"));
    assert!(!p.allows(".example.net"));
    assert!(!p.allows("mail.example.com.evil.test"));
    assert!(!p.allows("xmail.example.com"));
    assert!(!p.allows("mx1.example.net.evil"));
}

#[test]
fn problems_named_as_tls_rpt_does() {
    use rustls::CertificateError as C;
    let of = |c: C| Problem::of_certificate(&rustls::Error::InvalidCertificate(c));
    assert_eq!(of(C::NotValidForName), Problem::CertificateHostMismatch);
    assert_eq!(of(C::UnknownIssuer), Problem::CertificateNotTrusted);
    assert_eq!(of(C::Expired), Problem::CertificateExpired);
    assert_eq!(
        Problem::CertificateHostMismatch.describe(),
        "certificate name mismatch"
    );
    assert_eq!(
        Problem::StarttlsNotSupported.result_type(),
        "starttls-not-supported"
    );
}
