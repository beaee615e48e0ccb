use super::*;

fn site() -> Site<'static> {
    Site {
        hostname: "mx.example.test",
        local_domain: "example.test",
        id: "0123456789ABCDEF",
        unix_secs: 1_700_000_000,
        max_recipients: 5,
    }
}

fn alice() -> Caller {
    Caller {
        uid: 1000,
        name: "alice".into(),
        trusted: false,
    }
}

fn text(c: &Composed) -> String {
    String::from_utf8(c.message.clone()).unwrap()
}

#[test]
fn requests_survive_the_maildrop_and_values_cannot_add_lines() {
    let r = Request {
        sender: Some("x\n\nrcpt evil@x".into()),
        full_name: Some("A %41 B".into()),
        recipients: vec!["bob".into(), "c@d.test".into()],
        from_headers: true,
        message: b"Subject: hi\r\n\r\nbody\n\n".to_vec(),
    };
    let back = decode(&encode(&r)).unwrap();
    assert_eq!(back, r);
    assert!(decode(b"MAILROOM-MAILDROP 1\nclient root\n\nx").is_err());
    assert!(decode(b"garbage").is_err());
}

#[test]
fn the_callers_address_is_the_sender_and_headers_are_added() {
    let r = Request {
        recipients: vec!["bob".into()],
        full_name: Some("Cron \"Daemon\"".into()),
        message: b"Subject: hi\nBcc: secret@x.test\n\nline\n".to_vec(),
        ..Request::default()
    };
    let c = compose(&r, &alice(), &site()).unwrap();
    assert_eq!(c.sender, "alice@example.test");
    assert_eq!(c.recipients, vec!["bob@example.test"]);
    assert!(c.sender_verified);
    assert_eq!(c.client, "local uid=1000 user=alice");
    let t = text(&c);
    assert!(
        t.starts_with(
            "Received: by mx.example.test (Mailroom, from userid 1000)\r\n\tid 0123456789ABCDEF; "
        ),
        "{t}"
    );
    assert!(
        t.contains("Subject: hi\r\nFrom: \"Cron \\\"Daemon\\\"\" <alice@example.test>\r\nDate: "),
        "{t}"
    );
    assert!(
        t.contains("Message-ID: <0123456789ABCDEF@mx.example.test>\r\n\r\nline\r\n"),
        "{t}"
    );
    assert!(!t.contains("Bcc") && !t.contains("secret"), "{t}");
    assert!(!t.contains("X-Authentication-Warning"), "{t}");
}

#[test]
fn dash_t_reads_to_cc_and_bcc_and_dedups() {
    let r = Request {
        recipients: vec!["Bob@example.test".into()],
        from_headers: true,
        message: b"From: me@example.test\r\nTo: Bob <bob@example.test>,\r\n carol@example.test\r\nCc: dave\r\nBcc: <eve@else.test>\r\nDate: x\r\nMessage-ID: <m@x>\r\n\r\nb\r\n".to_vec(),
        ..Request::default()
    };
    let c = compose(&r, &alice(), &site()).unwrap();
    assert_eq!(
        c.recipients,
        vec![
            "Bob@example.test",
            "carol@example.test",
            "dave@example.test",
            "eve@else.test"
        ]
    );
    let t = text(&c);
    assert_eq!(t.matches("From:").count(), 1);
    assert!(
        t.contains("To: Bob <bob@example.test>,\r\n carol@example.test\r\nCc: dave\r\nDate: x"),
        "{t}"
    );
    // Without -t, headers name no recipient.
    let r = Request {
        from_headers: false,
        recipients: vec![],
        ..r
    };
    assert!(compose(&r, &alice(), &site()).is_err());
}

#[test]
fn another_sender_is_marked_unless_trusted() {
    let r = Request {
        sender: Some("<www@site.test>".into()),
        recipients: vec!["bob".into()],
        message: b"hello\n".to_vec(),
        ..Request::default()
    };
    let c = compose(&r, &alice(), &site()).unwrap();
    assert_eq!(c.sender, "www@site.test");
    assert!(!c.sender_verified);
    let t = text(&c);
    assert!(t.contains("X-Authentication-Warning: mx.example.test: alice set sender to <www@site.test> using -f\r\n"), "{t}");
    // A message without headers: ours come first, then an empty line, then the text.
    assert!(t.ends_with("\r\n\r\nhello\r\n"), "{t}");
    let root = Caller {
        uid: 0,
        name: "root".into(),
        trusted: true,
    };
    let c = compose(&r, &root, &site()).unwrap();
    assert!(c.sender_verified);
    assert!(!text(&c).contains("X-Authentication-Warning"));
}

#[test]
fn bad_addresses_and_bare_cr_are_refused_or_neutralised() {
    let r = Request {
        recipients: vec!["a b@x\r\n.test".into()],
        message: b"x".to_vec(),
        ..Request::default()
    };
    assert!(compose(&r, &alice(), &site()).is_err());
    let many: Vec<String> = (0..6).map(|i| format!("u{i}")).collect();
    let r = Request {
        recipients: many,
        ..r
    };
    let e = compose(&r, &alice(), &site()).unwrap_err();
    assert!(e.contains("smtp.max_recipients"), "{e}");
    assert_eq!(normalize(b"a\rb\nc\r\n"), b"a b\r\nc\r\n");
    assert_eq!(normalize(b"no end"), b"no end\r\n");
}
