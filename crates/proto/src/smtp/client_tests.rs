//! Unit tests of `client` (kept in their own file so `client.rs` stays readable).
use super::*;

fn parse_all(input: &[u8]) -> Result<Vec<Reply>, ReplyError> {
    let mut p = ReplyParser::new();
    p.feed(input);
    let mut out = Vec::new();
    while let Some(r) = p.next_reply()? {
        out.push(r);
    }
    Ok(out)
}

#[test]
fn single_and_multi_line_replies() {
    let replies =
        parse_all(b"220 mx.example ESMTP\r\n250-mx.example\r\n250-PIPELINING\r\n250 SIZE 100\r\n")
            .unwrap();
    assert_eq!(replies.len(), 2);
    assert_eq!(replies[0], Reply::new(220, "mx.example ESMTP"));
    assert_eq!(replies[1].code, 250);
    assert_eq!(
        replies[1].lines,
        vec!["mx.example", "PIPELINING", "SIZE 100"]
    );
}

#[test]
fn byte_by_byte_and_bare_code() {
    let mut p = ReplyParser::new();
    let input = b"250-a\r\n250\r\n354 go\n";
    let mut got = Vec::new();
    for b in input {
        p.feed(&[*b]);
        while let Some(r) = p.next_reply().unwrap() {
            got.push(r);
        }
    }
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].lines, vec!["a", ""]);
    assert_eq!(got[1], Reply::new(354, "go"));
    assert_eq!(p.buffered(), 0);
}

#[test]
fn incomplete_reply_waits() {
    let mut p = ReplyParser::new();
    p.feed(b"250-a\r\n250-b\r\n25");
    assert_eq!(p.next_reply(), Ok(None));
    p.feed(b"0 c\r\n");
    assert_eq!(p.next_reply().unwrap().unwrap().lines, vec!["a", "b", "c"]);
}

#[test]
fn malformed_replies() {
    for bad in [
        &b"25\r\n"[..],
        b"abc hello\r\n",
        b"2500 x\r\n",
        b"650 x\r\n",
        b"160 x\r\n",
        b"290 x\r\n",
        b"250_x\r\n",
        b"250-a\r\n251 b\r\n",
        b"\r\n",
    ] {
        assert!(
            matches!(parse_all(bad), Err(ReplyError::Malformed(_))),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
}

#[test]
fn overlong_line_and_too_many_lines() {
    let mut long = b"250 ".to_vec();
    long.extend(std::iter::repeat_n(b'x', MAX_REPLY_LINE));
    long.extend_from_slice(b"\r\n");
    assert_eq!(parse_all(&long), Err(ReplyError::LineTooLong));
    // Without a line end at all: refused as soon as it is too long.
    let mut p = ReplyParser::new();
    p.feed(&vec![b'2'; MAX_REPLY_LINE + 10]);
    assert_eq!(p.next_reply(), Err(ReplyError::LineTooLong));
    let many = "250-x\r\n".repeat(MAX_REPLY_LINES + 1);
    assert_eq!(parse_all(many.as_bytes()), Err(ReplyError::TooManyLines));
    let fine = format!("{}250 end\r\n", "250-x\r\n".repeat(MAX_REPLY_LINES - 1));
    assert_eq!(
        parse_all(fine.as_bytes()).unwrap()[0].lines.len(),
        MAX_REPLY_LINES
    );
}

#[test]
fn control_characters_in_text_are_masked() {
    let r = parse_all(b"550 5.1.1 a\x1b[31m\x00b\r\n").unwrap();
    assert_eq!(r[0].lines[0], "5.1.1 a?[31m?b");
}

#[test]
fn capabilities_from_ehlo() {
    let r = Reply::multi(
        250,
        vec![
            "mx.example greets you".into(),
            "pipelining".into(),
            "SIZE 10240000".into(),
            "8BITMIME".into(),
            "SMTPUTF8".into(),
            "STARTTLS".into(),
            "AUTH PLAIN login".into(),
            "AUTH=LOGIN".into(),
            "CHUNKING".into(),
            "ENHANCEDSTATUSCODES".into(),
            "X-UNKNOWN foo".into(),
        ],
    );
    let caps = Capabilities::from_ehlo(&r);
    assert_eq!(
        caps,
        Capabilities {
            pipelining: true,
            size: Some(10_240_000),
            eight_bit_mime: true,
            smtputf8: true,
            starttls: true,
            auth: vec!["PLAIN".into(), "LOGIN".into()],
            chunking: true,
            enhanced_status_codes: true,
            requiretls: false,
        }
    );
    assert_eq!(caps.max_size(), Some(10_240_000));
    // The greeting line is not a keyword; SIZE without a number means no limit.
    let caps =
        Capabilities::from_ehlo(&Reply::multi(250, vec!["PIPELINING".into(), "SIZE".into()]));
    assert!(!caps.pipelining);
    assert_eq!(caps.size, Some(0));
    assert_eq!(caps.max_size(), None);
}

#[test]
fn dot_stuffing() {
    assert_eq!(dot_stuff(b""), b".\r\n");
    assert_eq!(dot_stuff(b"a"), b"a\r\n.\r\n");
    assert_eq!(dot_stuff(b"a\r\n"), b"a\r\n.\r\n");
    assert_eq!(
        dot_stuff(b".a\r\n..b\r\nc.\r\n"),
        b"..a\r\n...b\r\nc.\r\n.\r\n"
    );
    assert_eq!(
        dot_stuff(b"a\nb\rc\r\r\nd"),
        b"a\r\nb\r\nc\r\n\r\nd\r\n.\r\n"
    );
    assert_eq!(dot_stuff(b".\r\n"), b"..\r\n.\r\n");
}

#[test]
fn dot_stuffing_defeats_smuggling() {
    for input in [
        &b"Subject: x\r\n\r\nhi\n.\r\nMAIL FROM:<evil>\r\n"[..],
        b"hi\r.\r\nMAIL FROM:<evil>\r\n",
        b"hi\n.\nMAIL FROM:<evil>\n",
        b"hi\r\n.\r\nRCPT TO:<x>\r\n",
        b"hi\r\n.\nx",
        b"hi\n.\rx",
        b"\n.\n",
        b"\r.\r",
        b".",
    ] {
        let out = dot_stuff(input);
        let ends = out.windows(5).filter(|w| w == b"\r\n.\r\n").count()
            + usize::from(out.starts_with(b".\r\n"));
        assert_eq!(ends, 1, "{:?}", String::from_utf8_lossy(&out));
        assert!(out.ends_with(b"\r\n.\r\n") || out == b".\r\n");
        for (i, &b) in out.iter().enumerate() {
            match b {
                b'\r' => assert_eq!(out.get(i + 1), Some(&b'\n')),
                b'\n' => assert_eq!(out[i - 1], b'\r'),
                _ => {}
            }
        }
    }
}

fn traits(size: u64, smtputf8: bool, eight_bit: bool) -> MessageTraits {
    MessageTraits {
        smtputf8,
        eight_bit,
        size,
        require_tls: false,
    }
}

#[test]
fn message_traits() {
    let r = vec!["b@example.org".to_string()];
    let t = MessageTraits::of("a@example.org", &r, b"Subject: x\r\n\r\nh\xc3\xa9\n");
    assert_eq!(t, traits(19, false, true));
    let t = MessageTraits::of("a@example.org", &r, "Subject: é\r\n\r\nx".as_bytes());
    assert!(t.smtputf8);
    let t = MessageTraits::of("a@example.org", &["é@example.org".to_string()], b"x");
    assert!(t.smtputf8 && !t.eight_bit);
}

#[test]
fn planning() {
    let caps = Capabilities {
        pipelining: true,
        size: Some(1000),
        eight_bit_mime: true,
        smtputf8: true,
        ..Capabilities::default()
    };
    let rcpts = vec!["b@x.org".to_string(), "c@x.org".to_string()];
    let p = plan(&caps, "a@y.org", &rcpts, &traits(10, true, true)).unwrap();
    assert_eq!(
        p.mail,
        "MAIL FROM:<a@y.org> SIZE=10 BODY=8BITMIME SMTPUTF8\r\n"
    );
    assert_eq!(p.writes(), vec![
        "MAIL FROM:<a@y.org> SIZE=10 BODY=8BITMIME SMTPUTF8\r\nRCPT TO:<b@x.org>\r\nRCPT TO:<c@x.org>\r\nDATA\r\n"
    ]);
    let p = plan(
        &Capabilities::default(),
        "",
        &rcpts,
        &traits(10, false, false),
    )
    .unwrap();
    assert_eq!(
        p.writes(),
        vec![
            "MAIL FROM:<>\r\n",
            "RCPT TO:<b@x.org>\r\n",
            "RCPT TO:<c@x.org>\r\n",
            "DATA\r\n"
        ]
    );
}

#[test]
fn eight_bit_body_never_goes_to_a_server_without_8bitmime() {
    // RFC 6152 §3: without 8BITMIME in the EHLO reply, 8-bit data must not be sent as is. We
    // bounce (RFC 3463 5.6.3, conversion required but not supported) rather than convert.
    let rcpts = vec!["b@x.org".to_string()];
    for caps in [
        Capabilities::default(),
        Capabilities {
            pipelining: true,
            size: Some(0),
            ..Capabilities::default()
        },
    ] {
        let e = plan(&caps, "a@y.org", &rcpts, &traits(10, false, true)).unwrap_err();
        assert_eq!(e.status, "5.6.3", "{caps:?}");
        // A 7-bit message goes to the same server, without BODY=.
        let p = plan(&caps, "a@y.org", &rcpts, &traits(10, false, false)).unwrap();
        assert!(!p.mail.contains("BODY="), "{}", p.mail);
    }
    // With 8BITMIME offered the body is declared 8-bit (RFC 6152 §2).
    let caps = Capabilities {
        eight_bit_mime: true,
        ..Capabilities::default()
    };
    let p = plan(&caps, "a@y.org", &rcpts, &traits(10, false, true)).unwrap();
    assert_eq!(p.mail, "MAIL FROM:<a@y.org> BODY=8BITMIME\r\n");
    // The traits see an octet above 127 anywhere in the body.
    let t = MessageTraits::of("a@y.org", &rcpts, b"Subject: x\r\n\r\nline\r\ncaf\xe9\r\n");
    assert!(t.eight_bit && !t.smtputf8);
}

#[test]
fn preflight_refusals() {
    let caps = Capabilities {
        size: Some(100),
        ..Capabilities::default()
    };
    let rcpts = vec!["b@x.org".to_string()];
    let e = plan(&caps, "a@y.org", &rcpts, &traits(101, false, false)).unwrap_err();
    assert_eq!(e.status, "5.3.4");
    assert!(plan(&caps, "a@y.org", &rcpts, &traits(100, false, false)).is_ok());
    let e = plan(&caps, "a@y.org", &rcpts, &traits(10, true, false)).unwrap_err();
    assert_eq!(e.status, "5.6.7");
    let e = plan(&caps, "a@y.org\r\nRSET", &rcpts, &traits(1, false, false)).unwrap_err();
    assert_eq!(e.status, "5.1.3");
    let e = plan(
        &caps,
        "a@y.org",
        &["x>".to_string()],
        &traits(1, false, false),
    )
    .unwrap_err();
    assert_eq!(e.status, "5.1.3");
}

#[test]
fn status_codes() {
    assert_eq!(status_of(&Reply::new(550, "5.1.1 no such user")), "5.1.1");
    assert_eq!(status_of(&Reply::new(550, "no such user")), "5.0.0");
    assert_eq!(status_of(&Reply::new(550, "4.1.1 wrong class")), "5.0.0");
    assert_eq!(status_of(&Reply::new(452, "4.5.3 too many")), "4.5.3");
    assert_eq!(status_of(&Reply::new(554, "5.x.1 bad")), "5.0.0");
    assert_eq!(
        reply_text(&Reply::multi(550, vec!["5.1.1 a".into(), "b".into()])),
        "550 5.1.1 a b"
    );
}

#[test]
fn outcome_mapping() {
    let ok = Reply::new(250, "2.1.5 ok");
    let later = Reply::new(450, "4.2.1 busy");
    let never = Reply::new(550, "5.1.1 unknown");
    let go = Reply::new(354, "go");
    let queued = Reply::new(250, "2.0.0 queued as X");
    let rcpts = [ok.clone(), later.clone(), never.clone()];
    let out = outcomes(&Replies {
        mail: &ok,
        rcpts: &rcpts,
        data: Some(&go),
        end: Some(&queued),
    });
    assert_eq!(
        out,
        vec![
            Outcome::Delivered {
                reply: "250 2.0.0 queued as X".into()
            },
            Outcome::Deferred {
                reply: "450 4.2.1 busy".into()
            },
            Outcome::Failed {
                status: "5.1.1".into(),
                reply: "550 5.1.1 unknown".into()
            },
        ]
    );
    // The final reply applies to every accepted recipient.
    let out = outcomes(&Replies {
        mail: &ok,
        rcpts: &rcpts,
        data: Some(&go),
        end: Some(&Reply::new(554, "5.7.1 spam")),
    });
    assert_eq!(
        out[0],
        Outcome::Failed {
            status: "5.7.1".into(),
            reply: "554 5.7.1 spam".into()
        }
    );
    assert_eq!(
        out[1],
        Outcome::Deferred {
            reply: "450 4.2.1 busy".into()
        }
    );
    // DATA refused.
    let out = outcomes(&Replies {
        mail: &ok,
        rcpts: &rcpts,
        data: Some(&later),
        end: None,
    });
    assert_eq!(
        out[0],
        Outcome::Deferred {
            reply: "450 4.2.1 busy".into()
        }
    );
    assert!(matches!(out[2], Outcome::Failed { .. }));
    // MAIL refused: everyone gets that, whatever the (pipelined) RCPT replies said.
    let bad_seq = Reply::new(503, "5.5.1 need MAIL");
    let out = outcomes(&Replies {
        mail: &never,
        rcpts: &[bad_seq.clone(), bad_seq],
        data: None,
        end: None,
    });
    assert!(out.iter().all(|o| o
        == &Outcome::Failed {
            status: "5.1.1".into(),
            reply: "550 5.1.1 unknown".into()
        }));
}

#[test]
fn command_lines() {
    assert_eq!(ehlo("mx.example\r\nQUIT"), "EHLO mx.exampleQUIT\r\n");
    assert_eq!(helo("mx"), "HELO mx\r\n");
    assert_eq!(auth_plain("u", "p"), "AUTH PLAIN AHUAcA==\r\n");
}

#[test]
fn quoted_local_parts_are_quoted_again_on_the_wire() {
    // Security review 10: smtp-proto hands us the local part without its quotes; written back
    // bare, `"a b ORCPT=rfc822;x"@third` became parameters on the next server's MAIL line.
    let caps = Capabilities {
        pipelining: true,
        ..Capabilities::default()
    };
    let rcpts = vec!["u@remote@local".to_string(), "ok@x.org".to_string()];
    let p = plan(
        &caps,
        "a b ORCPT=rfc822;x@third",
        &rcpts,
        &traits(10, false, false),
    )
    .unwrap();
    assert_eq!(
        p.writes(),
        vec![
            "MAIL FROM:<\"a b ORCPT=rfc822;x\"@third>\r\nRCPT TO:<\"u@remote\"@local>\r\nRCPT TO:<ok@x.org>\r\nDATA\r\n"
        ]
    );
}

#[test]
fn chunking_plan_has_no_data_and_bdat_replies_decide() {
    let caps = Capabilities {
        pipelining: true,
        chunking: true,
        ..Capabilities::default()
    };
    let rcpts = vec!["b@x.org".to_string()];
    let p = plan(&caps, "a@y.org", &rcpts, &traits(10, false, false)).unwrap();
    assert!(p.chunking);
    assert_eq!(
        p.writes(),
        vec!["MAIL FROM:<a@y.org>\r\nRCPT TO:<b@x.org>\r\n"]
    );
    assert_eq!(bdat(65536, false), "BDAT 65536\r\n");
    assert_eq!(bdat(7, true), "BDAT 7 LAST\r\n");
    let ok = Reply::new(250, "2.0.0 ok");
    let rcpt_replies = [ok.clone()];
    for (end, want) in [
        (Reply::new(250, "2.0.0 queued"), "Delivered"),
        (Reply::new(452, "4.3.1 full"), "Deferred"),
        (Reply::new(554, "5.6.0 no"), "Failed"),
    ] {
        let out = outcomes(&Replies {
            mail: &ok,
            rcpts: &rcpt_replies,
            data: None,
            end: Some(&end),
        });
        assert!(format!("{:?}", out[0]).starts_with(want), "{out:?}");
    }
}

#[test]
fn requiretls_goes_only_to_a_server_that_offers_it() {
    let r = Reply::multi(250, vec!["mx.test".into(), "requiretls".into()]);
    let offers = Capabilities::from_ehlo(&r);
    assert!(offers.requiretls);
    let rcpts = vec!["b@x.org".to_string()];
    let t = MessageTraits {
        require_tls: true,
        ..traits(10, false, false)
    };
    let p = plan(&offers, "a@y.org", &rcpts, &t).unwrap();
    assert_eq!(p.mail, "MAIL FROM:<a@y.org> REQUIRETLS\r\n");
    let e = plan(&Capabilities::default(), "a@y.org", &rcpts, &t).unwrap_err();
    assert_eq!(e.status, "5.7.30");
    // Without the flag nothing changes.
    let p = plan(&offers, "a@y.org", &rcpts, &traits(10, false, false)).unwrap();
    assert_eq!(p.mail, "MAIL FROM:<a@y.org>\r\n");
}
