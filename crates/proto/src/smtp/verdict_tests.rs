use super::*;

fn spf(result: AuthResult, from: &str) -> Spf {
    Spf {
        result,
        mail_from: from.into(),
        helo: "mail.example.org".into(),
    }
}

fn dmarc(result: AuthResult, policy: DmarcPolicy) -> Dmarc {
    Dmarc {
        result,
        from_domain: "example.org".into(),
        policy,
        has_record: true,
    }
}

fn verdict(spf_result: AuthResult, d: Option<Dmarc>) -> Verdict {
    Verdict {
        spf: Some(spf(spf_result, "a@example.org")),
        dkim: Some(vec![]),
        dmarc: d,
        arc: Some(AuthResult::None),
    }
}

fn code(d: &Decision) -> Option<u16> {
    match d {
        Decision::Refuse(r) => Some(r.code),
        Decision::Accept { .. } => None,
    }
}

#[test]
fn dmarc_policies() {
    let rules = Rules::default();
    let reject = verdict(
        AuthResult::Fail,
        Some(dmarc(AuthResult::Fail, DmarcPolicy::Reject)),
    );
    let d = decide(&reject, &rules);
    assert_eq!(code(&d), Some(550));
    let Decision::Refuse(r) = &d else { panic!() };
    assert!(r.to_wire().starts_with("550 5.7.1 "), "{r:?}");
    assert!(r.to_wire().contains("example.org"), "{r:?}");

    // Tag only: a reject failure is delivered, flagged like quarantine.
    let tag = Rules {
        dmarc_reject: false,
        ..rules
    };
    assert!(matches!(
        decide(&reject, &tag),
        Decision::Accept { spam: Some(_) }
    ));

    let q = verdict(
        AuthResult::Pass,
        Some(dmarc(AuthResult::Fail, DmarcPolicy::Quarantine)),
    );
    let Decision::Accept { spam: Some(why) } = decide(&q, &rules) else {
        panic!("quarantine is delivered, flagged")
    };
    assert!(
        why.contains("quarantine") && why.contains("example.org"),
        "{why}"
    );

    let none = verdict(
        AuthResult::Fail,
        Some(dmarc(AuthResult::Fail, DmarcPolicy::None)),
    );
    assert_eq!(decide(&none, &rules), Decision::Accept { spam: None });

    let pass = verdict(
        AuthResult::Fail,
        Some(dmarc(AuthResult::Pass, DmarcPolicy::Reject)),
    );
    assert_eq!(decide(&pass, &rules), Decision::Accept { spam: None });

    let temp = verdict(
        AuthResult::TempError,
        Some(dmarc(AuthResult::TempError, DmarcPolicy::Reject)),
    );
    let Decision::Refuse(r) = decide(&temp, &rules) else {
        panic!()
    };
    assert!(r.to_wire().starts_with("451 4.7.5 "), "{r:?}");
    // A temporary error where the policy would not reject: accepted.
    let temp_q = verdict(
        AuthResult::TempError,
        Some(dmarc(AuthResult::TempError, DmarcPolicy::Quarantine)),
    );
    assert_eq!(decide(&temp_q, &rules), Decision::Accept { spam: None });
}

#[test]
fn spf_reject_only_without_dmarc_and_when_asked() {
    let strict = Rules {
        spf_reject: true,
        ..Rules::default()
    };
    let no_dmarc = verdict(AuthResult::Fail, None);
    let Decision::Refuse(r) = decide(&no_dmarc, &strict) else {
        panic!()
    };
    assert!(r.to_wire().starts_with("550 5.7.23 "), "{r:?}");
    assert_eq!(
        decide(&no_dmarc, &Rules::default()),
        Decision::Accept { spam: None }
    );
    // Softfail (~all) is never refused.
    assert_eq!(
        decide(&verdict(AuthResult::SoftFail, None), &strict),
        Decision::Accept { spam: None }
    );
    // A DMARC record decides instead (p=none here).
    let with_dmarc = verdict(
        AuthResult::Fail,
        Some(dmarc(AuthResult::Fail, DmarcPolicy::None)),
    );
    assert_eq!(
        decide(&with_dmarc, &strict),
        Decision::Accept { spam: None }
    );
    // A From: domain without a record does not count as DMARC.
    let mut no_record = dmarc(AuthResult::None, DmarcPolicy::None);
    no_record.has_record = false;
    assert_eq!(
        code(&decide(
            &verdict(AuthResult::Fail, Some(no_record)),
            &strict
        )),
        Some(550)
    );
}

#[test]
fn authentication_results_header() {
    let v = Verdict {
        spf: Some(spf(AuthResult::Pass, "a@example.org")),
        dkim: Some(vec![
            Dkim {
                result: AuthResult::Pass,
                domain: "example.org".into(),
                selector: "sel".into(),
                reason: None,
            },
            Dkim {
                result: AuthResult::Fail,
                domain: "evil\r\nX-Injected: 1".into(),
                selector: "s 2".into(),
                reason: Some("body \"hash\"\r\nfailed".into()),
            },
        ]),
        dmarc: Some(dmarc(AuthResult::Pass, DmarcPolicy::Reject)),
        arc: Some(AuthResult::None),
    };
    let h = headers("mx.test", &v, &Decision::Accept { spam: None });
    assert_eq!(
        h,
        "Authentication-Results: mx.test;\r\n\tspf=pass smtp.mailfrom=a@example.org;\r\n\tdkim=pass header.d=example.org header.s=sel;\r\n\tdkim=fail reason=\"body 'hash'??failed\" header.d=\"evil??X-Injected:?1\" header.s=\"s?2\";\r\n\tdmarc=pass policy.dmarc=reject header.from=example.org;\r\n\tarc=none\r\n"
    );
    // No CR or LF but the line ends.
    assert_eq!(h.matches("\r\n").count(), 6);
    assert_eq!(h.matches('\n').count(), 6);

    let bounce = Verdict {
        spf: Some(spf(AuthResult::None, "")),
        ..Verdict::default()
    };
    let spam = Decision::Accept {
        spam: Some("DMARC policy quarantine of x.test".into()),
    };
    let h = headers("mx.test", &bounce, &spam);
    assert!(
        h.starts_with(
            "Authentication-Results: mx.test;\r\n\tspf=none smtp.helo=mail.example.org\r\n"
        ),
        "{h}"
    );
    assert!(h.contains("\r\nX-Spam-Flag: YES\r\nX-Spam-Status: Yes, tests=DMARC_FAIL reason=\"DMARC policy quarantine of x.test\"\r\n"), "{h}");
    assert_eq!(
        headers(
            "mx.test",
            &Verdict::default(),
            &Decision::Accept { spam: None }
        ),
        "Authentication-Results: mx.test; none\r\n"
    );
}

#[test]
fn forged_results_naming_us_are_removed() {
    let m = b"Authentication-Results: MX.test; dkim=pass\r\nSubject: hi\r\nAuthentication-Results: other.test; spf=pass\r\nauthentication-results:\r\n  (comment) \"mx.test\"; dmarc=pass\r\nX: 1\r\n\r\nAuthentication-Results: mx.test; body\r\n";
    let out = strip_ours(m, "mx.test").unwrap();
    assert_eq!(
        out,
        b"Subject: hi\r\nAuthentication-Results: other.test; spf=pass\r\nX: 1\r\n\r\nAuthentication-Results: mx.test; body\r\n".to_vec()
    );
    // A prefix or suffix of our name is not our name.
    assert_eq!(
        strip_ours(
            b"Authentication-Results: mx.test.evil; x=y\r\n\r\n",
            "mx.test"
        ),
        None
    );
    assert_eq!(
        strip_ours(b"Authentication-Results: x.mx.test; x=y\r\n\r\n", "mx.test"),
        None
    );
    // A short line before it does not stop the scan; a header-only message works.
    assert_eq!(
        strip_ours(b"a\r\nAuthentication-Results: mx.test;none\r\n", "mx.test"),
        Some(b"a\r\n".to_vec())
    );
    assert_eq!(strip_ours(b"", "mx.test"), None);
}
