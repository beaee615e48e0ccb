//! Transcript tests of the SMTP session through its connection framing: client bytes in,
//! server reply lines out, as OpenSMTPD's regress scripts and Postfix's `.in`/`.ref` files do.

use std::sync::Arc;

use super::*;

/// A directory with one local domain `example.test` holding `alice` and `bob`.
struct FakePolicy;

impl Policy for FakePolicy {
    fn may_send_as(&self, user: &str, address: &str) -> bool {
        address.eq_ignore_ascii_case(user)
            || (user == "alice@example.test" && address.eq_ignore_ascii_case("sales@example.test"))
    }

    fn check_rcpt(&self, address: &str, _sender: &str, relay_allowed: bool) -> RcptVerdict {
        if address.is_empty() {
            return RcptVerdict::Accept("postmaster@example.test".into());
        }
        let (local, domain) = address::split(address).unwrap();
        if domain.eq_ignore_ascii_case("example.test") {
            let l = local.to_lowercase();
            if ["alice", "bob", "postmaster", "用户"].contains(&l.as_str()) {
                RcptVerdict::Accept(address.to_string())
            } else {
                RcptVerdict::UnknownUser
            }
        } else if domain == "tempfail.test" {
            RcptVerdict::TempFail
        } else if relay_allowed {
            RcptVerdict::Accept(address.to_string())
        } else {
            RcptVerdict::RelayDenied
        }
    }
}

struct Run {
    replies: Vec<String>,
    /// The headers the server prepends to each committed message.
    headers: Vec<String>,
    committed: Vec<(Envelope, Vec<u8>)>,
    closed: bool,
}

fn config() -> Arc<SessionConfig> {
    config_for(Service::Mx, false)
}

fn config_for(service: Service, tls_available: bool) -> Arc<SessionConfig> {
    Arc::new(SessionConfig {
        max_message_size: 1000,
        max_recipients: 3,
        tls_available,
        ..SessionConfig::new("mx.example.test", service)
    })
}

fn tls_info() -> TlsInfo {
    TlsInfo {
        version: "TLSv1.3".into(),
        cipher: "TLS13_AES_128_GCM_SHA256".into(),
    }
}

/// Feeds `chunks` (each as one network read) and collects every reply line.
fn run_chunks(chunks: &[&[u8]], trusted: bool) -> Run {
    run_service(chunks, trusted, config(), false)
}

/// Like [`run_chunks`] for any service. STARTTLS "succeeds" at once; the password of every
/// account is "pw". `implicit_tls`: the session starts inside TLS (port 465).
fn run_service(
    chunks: &[&[u8]],
    trusted: bool,
    config: Arc<SessionConfig>,
    implicit_tls: bool,
) -> Run {
    let mut session = Session::new(
        config,
        Peer {
            ip: "192.0.2.1".parse().unwrap(),
            trusted,
        },
    );
    if implicit_tls {
        session.tls_started(tls_info());
    }
    let mut conn = Connection::new(session);
    let mut out = Vec::new();
    let mut committed = Vec::new();
    let mut headers = Vec::new();
    let mut closed = false;
    let mut n = 0;
    'outer: for chunk in chunks {
        conn.receive(chunk);
        loop {
            match conn.advance(&FakePolicy) {
                Event::NeedInput => break,
                Event::Close => {
                    closed = true;
                    break 'outer;
                }
                Event::Commit { envelope, message } => {
                    n += 1;
                    let id = format!("ID{n}");
                    headers.push(conn.trace_headers(&id, 0));
                    committed.push((envelope, message));
                    conn.committed(Ok(&id));
                }
                Event::StartTls => {
                    // Whatever followed STARTTLS in this read was dropped by the connection;
                    // the rest of this chunk list is "inside TLS".
                    out.extend(conn.take_output());
                    conn.tls_started(tls_info());
                }
                Event::Spill(_) | Event::Abandon => panic!("transcripts stay below the spill size"),
                Event::Authenticate { user, password } => {
                    let ok = password == "pw"
                        && ["alice@example.test", "bob@example.test"].contains(&user.as_str());
                    conn.auth_result(ok.then_some(user));
                }
            }
        }
        out.extend(conn.take_output());
    }
    out.extend(conn.take_output());
    let text = String::from_utf8(out).unwrap();
    Run {
        replies: text.split_terminator("\r\n").map(str::to_string).collect(),
        headers,
        committed,
        closed,
    }
}

fn run(input: &[u8]) -> Run {
    run_chunks(&[input], false)
}

/// Asserts each reply line starts with the expected prefix, in order.
fn expect(run: &Run, expected: &[&str]) {
    let got: Vec<&str> = run.replies.iter().map(String::as_str).collect();
    assert_eq!(got.len(), expected.len(), "replies: {got:#?}");
    for (g, e) in got.iter().zip(expected) {
        assert!(g.starts_with(e), "expected {e:?}, got {g:?}\nall: {got:#?}");
    }
}

const EHLO: &[&str] = &[
    "250-mx.example.test",
    "250-PIPELINING",
    "250-SIZE 1000",
    "250-8BITMIME",
    "250-ENHANCEDSTATUSCODES",
    "250-SMTPUTF8",
    "250 CHUNKING",
];

fn with_ehlo(rest: &[&'static str]) -> Vec<&'static str> {
    let mut v = vec!["220 mx.example.test ESMTP"];
    v.extend_from_slice(EHLO);
    v.extend_from_slice(rest);
    v
}

#[test]
fn simple_delivery() {
    let r = run(b"EHLO client.test\r\nMAIL FROM:<s@remote.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\nSubject: hi\r\n\r\nbody\r\n.\r\nQUIT\r\n");
    expect(
        &r,
        &with_ehlo(&[
            "250 2.1.0",
            "250 2.1.5",
            "354 ",
            "250 2.0.0 Ok: queued as ID1",
            "221 2.0.0",
        ]),
    );
    assert!(r.closed);
    assert_eq!(r.committed.len(), 1);
    let (env, msg) = &r.committed[0];
    assert_eq!(env.sender, "s@remote.test");
    assert_eq!(env.recipients, vec!["alice@example.test".to_string()]);
    assert_eq!(msg, b"Subject: hi\r\n\r\nbody\r\n");
}

#[test]
fn helo_and_null_sender() {
    let r = run(b"HELO c\r\nMAIL FROM:<>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\nx\r\n.\r\n");
    expect(
        &r,
        &[
            "220 ",
            "250 mx.example.test",
            "250 2.1.0",
            "250 2.1.5",
            "354 ",
            "250 2.0.0",
        ],
    );
    assert_eq!(r.committed[0].0.sender, "");
}

#[test]
fn sequence_errors() {
    let r = run(b"MAIL FROM:<a@b.test>\r\nEHLO c\r\nRCPT TO:<alice@example.test>\r\nDATA\r\nMAIL FROM:<a@b.test>\r\nMAIL FROM:<a@b.test>\r\nDATA\r\n");
    let mut expected = vec!["220", "503 5.5.1"]; // MAIL before EHLO
    expected.extend_from_slice(EHLO);
    expected.extend_from_slice(&[
        "503 5.5.1", // RCPT without MAIL
        "503 5.5.1", // DATA without MAIL
        "250 2.1.0",
        "503 5.5.1", // nested MAIL
        "554 5.5.1", // DATA without valid recipients
    ]);
    expect(&r, &expected);
}

#[test]
fn syntax_errors() {
    let r = run(b"EHLO c\r\nFOO\r\nMAIL FROM:alice\r\nMAIL FROM:<a b@c>\r\nEHLO\r\nMAIL FROM:<a@b.test> FOO=BAR\r\nMAIL FROM:<a@b.test> RET=FULL\r\n");
    expect(
        &r,
        &with_ehlo(&[
            "500 5.5.1",
            "501 ",
            "501 ",
            "501 ",
            "555 5.5.4",
            "555 5.5.4",
        ]),
    );
}

#[test]
fn unknown_user_and_relay_denied() {
    let r = run(b"EHLO c\r\nMAIL FROM:<s@r.test>\r\nRCPT TO:<nobody@example.test>\r\nRCPT TO:<x@elsewhere.test>\r\nRCPT TO:<x@tempfail.test>\r\nRCPT TO:<ALICE@Example.TEST>\r\n");
    expect(
        &r,
        &with_ehlo(&[
            "250 2.1.0",
            "550 5.1.1 <nobody@example.test>: Recipient address rejected",
            "554 5.7.1 <x@elsewhere.test>: Relay access denied",
            "451 4.3.0",
            "250 2.1.5",
        ]),
    );
}

#[test]
fn trusted_client_may_relay() {
    let r = run_chunks(
        &[b"EHLO c\r\nMAIL FROM:<s@example.test>\r\nRCPT TO:<x@elsewhere.test>\r\n"],
        true,
    );
    expect(&r, &with_ehlo(&["250 2.1.0", "250 2.1.5"]));
}

#[test]
fn postmaster_always_accepted() {
    let r = run(b"EHLO c\r\nMAIL FROM:<s@r.test>\r\nRCPT TO:<postmaster>\r\nRCPT TO:<Postmaster@example.test>\r\n");
    expect(&r, &with_ehlo(&["250 2.1.0", "250 2.1.5", "250 2.1.5"]));
}

#[test]
fn too_many_recipients() {
    let r = run(b"EHLO c\r\nMAIL FROM:<s@r.test>\r\nRCPT TO:<alice@example.test>\r\nRCPT TO:<bob@example.test>\r\nRCPT TO:<postmaster@example.test>\r\nRCPT TO:<alice+x@example.test>\r\n");
    expect(
        &r,
        &with_ehlo(&["250 2.1.0", "250", "250", "250", "452 4.5.3"]),
    );
}

#[test]
fn duplicate_recipient_recorded_once() {
    let r = run(b"EHLO c\r\nMAIL FROM:<s@r.test>\r\nRCPT TO:<alice@example.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\nx\r\n.\r\n");
    expect(&r, &with_ehlo(&["250", "250", "250", "354", "250 2.0.0"]));
    assert_eq!(r.committed[0].0.recipients.len(), 1);
}

#[test]
fn size_limits() {
    let big = format!(
        "EHLO c\r\nMAIL FROM:<s@r.test> SIZE=5000\r\nMAIL FROM:<s@r.test> SIZE=10\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n{}\r\n.\r\nNOOP\r\n",
        "x".repeat(2000)
    );
    let r = run(big.as_bytes());
    expect(
        &r,
        &with_ehlo(&[
            "552 5.3.4",
            "250 2.1.0",
            "250 2.1.5",
            "354",
            "552 5.3.4",
            "250 2.0.0",
        ]),
    );
    assert!(r.committed.is_empty());
}

#[test]
fn overlong_command_line() {
    let mut input = b"EHLO c\r\nNOOP ".to_vec();
    input.extend(std::iter::repeat_n(b'a', 600));
    input.extend_from_slice(b"\r\nNOOP\r\n");
    let r = run(&input);
    expect(&r, &with_ehlo(&["500 5.5.2", "250 2.0.0"]));
    // Same when the long line arrives in small pieces.
    let pieces: Vec<&[u8]> = input.chunks(7).collect();
    let r = run_chunks(&pieces, false);
    expect(&r, &with_ehlo(&["500 5.5.2", "250 2.0.0"]));
}

#[test]
fn line_of_exactly_512_octets_is_accepted() {
    let mut line = b"NOOP ".to_vec();
    line.extend(std::iter::repeat_n(b'a', 512 - 5 - 2));
    line.extend_from_slice(b"\r\n");
    assert_eq!(line.len(), 512);
    let r = run(&line);
    expect(&r, &["220", "250 2.0.0"]);
}

#[test]
fn unicode_line_separators_in_quoted_local_parts_refused() {
    // Security review 10: U+2028, U+2029 and NEL inside a quoted local part reached
    // `Return-Path:` and log lines.
    let input = "EHLO c\r\nMAIL FROM:<\"a\u{2028}b\"@r.test> SMTPUTF8\r\nMAIL FROM:<\"a\u{85}b\"@r.test> SMTPUTF8\r\nMAIL FROM:<s@r.test> SMTPUTF8\r\nRCPT TO:<\"x\u{2029}y\"@example.test>\r\n";
    let r = run(input.as_bytes());
    expect(
        &r,
        &with_ehlo(&["501 5.1.7", "501 5.1.7", "250 2.1.0", "501 5.1.3"]),
    );
}

#[test]
fn address_length_limits() {
    let local = "a".repeat(65);
    let input = format!("EHLO c\r\nMAIL FROM:<{local}@r.test>\r\nMAIL FROM:<s@r.test>\r\nRCPT TO:<{local}@example.test>\r\n");
    let r = run(input.as_bytes());
    expect(&r, &with_ehlo(&["501 5.1.7", "250 2.1.0", "501 5.1.3"]));
}

#[test]
fn smtputf8_required_for_utf8_addresses() {
    let r = run("EHLO c\r\nMAIL FROM:<s@r.test>\r\nRCPT TO:<用户@example.test>\r\nRSET\r\nMAIL FROM:<s@r.test> SMTPUTF8\r\nRCPT TO:<用户@example.test>\r\nDATA\r\nx\r\n.\r\n".as_bytes());
    expect(
        &r,
        &with_ehlo(&[
            "250",
            "553 5.6.7",
            "250 2.0.0",
            "250",
            "250 2.1.5",
            "354",
            "250 2.0.0",
        ]),
    );
}

#[test]
fn pipelined_batch_in_one_write() {
    let r = run(b"EHLO c\r\nMAIL FROM:<s@r.test>\r\nRCPT TO:<alice@example.test>\r\nRCPT TO:<nobody@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\nhello\r\n.\r\nMAIL FROM:<t@r.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\nsecond\r\n.\r\nQUIT\r\n");
    expect(
        &r,
        &with_ehlo(&[
            "250 2.1.0",
            "250 2.1.5",
            "550 5.1.1",
            "250 2.1.5",
            "354",
            "250 2.0.0 Ok: queued as ID1",
            "250 2.1.0",
            "250 2.1.5",
            "354",
            "250 2.0.0 Ok: queued as ID2",
            "221",
        ]),
    );
    assert_eq!(r.committed.len(), 2);
    assert_eq!(
        r.committed[0].0.recipients,
        vec!["alice@example.test", "bob@example.test"]
    );
    assert_eq!(r.committed[1].1, b"second\r\n");
}

#[test]
fn byte_at_a_time_gives_same_replies() {
    let input = b"EHLO c\r\nMAIL FROM:<s@r.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n..dot\r\nx\r\n.\r\nQUIT\r\n";
    let pieces: Vec<&[u8]> = input.chunks(1).collect();
    let r = run_chunks(&pieces, false);
    expect(&r, &with_ehlo(&["250", "250", "354", "250 2.0.0", "221"]));
    assert_eq!(r.committed[0].1, b".dot\r\nx\r\n");
}

#[test]
fn smuggling_sequences_are_refused_not_split() {
    for seq in ["\n.\r\n", "\n.\n", "\r.\r\n", "\r\n.\n", "\r.\n"] {
        let input = format!(
            "EHLO c\r\nMAIL FROM:<s@r.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\nhi{seq}MAIL FROM:<evil@r.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\nsmuggled\r\n.\r\nNOOP\r\n"
        );
        let r = run(input.as_bytes());
        expect(
            &r,
            &with_ehlo(&["250", "250", "354", "550 5.6.11", "250 2.0.0"]),
        );
        assert!(r.committed.is_empty(), "{seq:?} produced a message");
    }
}

#[test]
fn bdat_chunks() {
    // A CRLF split across two chunks is a CRLF; BDAT has no dot handling.
    let r = run(b"EHLO c\r\nMAIL FROM:<s@r.test>\r\nRCPT TO:<alice@example.test>\r\nBDAT 5\r\nab\r\ncBDAT 6 LAST\r\nd\r\n.\r\nQUIT\r\n");
    expect(
        &r,
        &with_ehlo(&[
            "250",
            "250",
            "250 2.0.0 5 octets",
            "250 2.0.0 Ok: queued as ID1",
            "221",
        ]),
    );
    assert_eq!(r.committed[0].1, b"ab\r\ncd\r\n.\r\n");
    let r = run(b"EHLO c\r\nMAIL FROM:<s@r.test>\r\nRCPT TO:<alice@example.test>\r\nBDAT 3\r\nab\rBDAT 3 LAST\r\n\ncd");
    expect(
        &r,
        &with_ehlo(&[
            "250",
            "250",
            "250 2.0.0 3 octets",
            "250 2.0.0 Ok: queued as ID1",
        ]),
    );
    assert_eq!(r.committed[0].1, b"ab\r\ncd");
}

#[test]
fn bdat_bare_line_endings_refused_like_data() {
    // README promises CRLF line ends in the Maildir and RFC 5321 §2.3.8 forbids bare CR/LF:
    // BDAT gets the same 550 5.6.11 as DATA, for the chunk where it shows and the rest of the
    // transaction; the session goes on.
    let r = run(
        b"EHLO c\r\nMAIL FROM:<s@r.test>\r\nRCPT TO:<alice@example.test>\r\n\
BDAT 5\r\nab\r\ncBDAT 3\r\nd\n.BDAT 2 LAST\r\n\r\n\
MAIL FROM:<s@r.test>\r\nRCPT TO:<alice@example.test>\r\nBDAT 3 LAST\r\nab\r\
MAIL FROM:<s@r.test>\r\nRCPT TO:<alice@example.test>\r\nBDAT 4 LAST\r\nok\r\nQUIT\r\n",
    );
    expect(
        &r,
        &with_ehlo(&[
            "250",
            "250",
            "250 2.0.0 5 octets",
            "550 5.6.11",
            "550 5.6.11",
            "250",
            "250",
            "550 5.6.11", // a CR ending the message
            "250",
            "250",
            "250 2.0.0 Ok: queued as ID1",
            "221",
        ]),
    );
    assert_eq!(r.committed.len(), 1);
    assert_eq!(r.committed[0].1, b"ok\r\n");
}

#[test]
fn bdat_errors_consume_the_chunk() {
    // BDAT without MAIL: the 4 chunk bytes are read and dropped, not run as a command.
    let r = run(b"EHLO c\r\nBDAT 6 LAST\r\nQUIT\r\nNOOP\r\n");
    expect(&r, &with_ehlo(&["503 5.5.1", "250 2.0.0"]));
    // Too big in total: the whole chunk is read and dropped, then 552.
    let mut bytes =
        b"EHLO c\r\nMAIL FROM:<s@r.test>\r\nRCPT TO:<alice@example.test>\r\nBDAT 2000 LAST\r\n"
            .to_vec();
    bytes.extend(std::iter::repeat_n(b'x', 2000));
    bytes.extend_from_slice(b"NOOP\r\n");
    let r = run(&bytes);
    expect(&r, &with_ehlo(&["250", "250", "552 5.3.4", "250 2.0.0"]));
    assert!(r.committed.is_empty());
    // DATA after BDAT.
    let r = run(b"EHLO c\r\nMAIL FROM:<s@r.test>\r\nRCPT TO:<alice@example.test>\r\nBDAT 1\r\nxDATA\r\nBDAT 0 LAST\r\n");
    expect(
        &r,
        &with_ehlo(&[
            "250",
            "250",
            "250 2.0.0 1 octets",
            "503 5.5.1",
            "250 2.0.0 Ok",
        ]),
    );
    assert_eq!(r.committed[0].1, b"x");
}

#[test]
fn rset_drops_bdat_bytes() {
    let r = run(b"EHLO c\r\nMAIL FROM:<s@r.test>\r\nRCPT TO:<alice@example.test>\r\nBDAT 3\r\nabcRSET\r\nMAIL FROM:<s@r.test>\r\nRCPT TO:<alice@example.test>\r\nBDAT 2 LAST\r\nde");
    expect(
        &r,
        &with_ehlo(&[
            "250",
            "250",
            "250",
            "250 2.0.0",
            "250",
            "250",
            "250 2.0.0 Ok",
        ]),
    );
    assert_eq!(r.committed[0].1, b"de");
}

#[test]
fn vrfy_help_noop_rset_quit() {
    let r = run(b"VRFY alice\r\nHELP\r\nNOOP\r\nRSET\r\nEXPN list\r\nSTARTTLS\r\nQUIT\r\nNOOP\r\n");
    expect(
        &r,
        &[
            "220",
            "252 2.5.2",
            "214-",
            "214 ",
            "250 2.0.0",
            "250 2.0.0",
            "502 5.5.1",
            "502 5.5.1",
            "221 2.0.0",
        ],
    );
    assert!(r.closed);
}

#[test]
fn params_after_helo_refused() {
    let r = run(b"HELO c\r\nMAIL FROM:<s@r.test> BODY=8BITMIME\r\n");
    expect(&r, &["220", "250 mx", "555 5.5.4"]);
}

#[test]
fn eight_bit_body_passes() {
    let r = run(b"EHLO c\r\nMAIL FROM:<s@r.test> BODY=8BITMIME\r\nRCPT TO:<alice@example.test>\r\nDATA\r\ncaf\xc3\xa9\r\n.\r\n");
    expect(&r, &with_ehlo(&["250", "250", "354", "250 2.0.0"]));
    assert_eq!(r.committed[0].1, b"caf\xc3\xa9\r\n");
}

#[test]
fn control_bytes_in_address_refused() {
    let r = run(b"EHLO c\r\nMAIL FROM:<a\x00b@r.test>\r\nMAIL FROM:<a@r.test;ls>\r\n");
    expect(&r, &with_ehlo(&["501", "501"]));
}

#[test]
fn commit_failure_replies_4xx() {
    let session = Session::new(
        config(),
        Peer {
            ip: "192.0.2.1".parse().unwrap(),
            trusted: false,
        },
    );
    let mut conn = Connection::new(session);
    conn.receive(b"EHLO c\r\nMAIL FROM:<s@r.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\nx\r\n.\r\nNOOP\r\n");
    match conn.advance(&FakePolicy) {
        Event::Commit { .. } => conn.committed(Err(CommitError::NoSpace)),
        e => panic!("{e:?}"),
    }
    assert_eq!(conn.advance(&FakePolicy), Event::NeedInput);
    let out = String::from_utf8(conn.take_output()).unwrap();
    assert!(out.contains("\r\n452 4.3.1 "), "{out}");
    assert!(out.ends_with("250 2.0.0 Ok\r\n"), "{out}");
}

#[test]
fn refused_at_commit_gives_that_reply_and_the_session_goes_on() {
    let session = Session::new(
        config(),
        Peer {
            ip: "192.0.2.1".parse().unwrap(),
            trusted: false,
        },
    );
    let mut conn = Connection::new(session);
    conn.receive(b"EHLO c\r\nMAIL FROM:<s@r.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\nx\r\n.\r\nMAIL FROM:<t@r.test>\r\n");
    let refusal = Reply::new(
        550,
        "5.7.1 Message refused: DMARC policy of r.test says reject",
    );
    match conn.advance(&FakePolicy) {
        Event::Commit { .. } => conn.committed(Err(CommitError::Refused(refusal))),
        e => panic!("{e:?}"),
    }
    assert_eq!(conn.advance(&FakePolicy), Event::NeedInput);
    let out = String::from_utf8(conn.take_output()).unwrap();
    assert!(
        out.contains("\r\n550 5.7.1 Message refused: DMARC policy of r.test says reject\r\n"),
        "{out}"
    );
    // The transaction is over: a new MAIL is accepted.
    assert!(out.ends_with("250 2.1.0 Ok\r\n"), "{out}");
}

#[test]
fn received_header_names_id_and_recipient() {
    let session = Session::new(
        config(),
        Peer {
            ip: "192.0.2.1".parse().unwrap(),
            trusted: false,
        },
    );
    let mut conn = Connection::new(session);
    conn.receive(b"EHLO client.test\r\nMAIL FROM:<s@r.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\nx\r\n.\r\n");
    assert!(matches!(conn.advance(&FakePolicy), Event::Commit { .. }));
    let h = conn.trace_headers("QID", 0);
    assert_eq!(
        h,
        "Received: from client.test ([192.0.2.1])\r\n\tby mx.example.test (Mailroom) with ESMTP id QID\r\n\tfor <alice@example.test>; Thu, 1 Jan 1970 00:00:00 +0000\r\n"
    );
}

// ---- STARTTLS, AUTH and submission (RFC 3207, RFC 4954, RFC 6409) ----

const EHLO_TLS: &[&str] = &[
    "250-mx.example.test",
    "250-PIPELINING",
    "250-SIZE 1000",
    "250-8BITMIME",
    "250-ENHANCEDSTATUSCODES",
    "250-SMTPUTF8",
    "250-CHUNKING",
];

/// EHLO inside TLS: REQUIRETLS (RFC 8689) follows, before AUTH.
const EHLO_IN_TLS: &[&str] = &[
    "250-mx.example.test",
    "250-PIPELINING",
    "250-SIZE 1000",
    "250-8BITMIME",
    "250-ENHANCEDSTATUSCODES",
    "250-SMTPUTF8",
    "250-CHUNKING",
    "250-REQUIRETLS",
];

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[test]
fn port_25_offers_starttls_but_never_auth() {
    let r = run_service(
        &[
            b"EHLO c\r\nAUTH PLAIN AGFsaWNlQGV4YW1wbGUudGVzdABwdw==\r\nSTARTTLS\r\n",
            b"EHLO c\r\nSTARTTLS\r\nAUTH LOGIN\r\n",
        ],
        false,
        config_for(Service::Mx, true),
        false,
    );
    let mut want = vec!["220"];
    want.extend_from_slice(EHLO_TLS);
    want.extend_from_slice(&["250 STARTTLS", "502 5.5.1", "220 2.0.0"]);
    want.extend_from_slice(&EHLO_IN_TLS[..7]);
    want.extend_from_slice(&["250 REQUIRETLS", "503 5.5.1", "502 5.5.1"]);
    expect(&r, &want);
}

#[test]
fn starttls_not_offered_without_certificate() {
    let r = run_service(
        &[b"EHLO c\r\nSTARTTLS\r\n"],
        false,
        config_for(Service::Mx, false),
        false,
    );
    expect(&r, &with_ehlo(&["502 5.5.1"]));
}

#[test]
fn starttls_injection_is_discarded() {
    // RSET and a whole transaction pipelined after STARTTLS in the same read: none of it may
    // run inside TLS (CVE-2011-0411).
    let r = run_service(
        &[
            b"EHLO c\r\nSTARTTLS\r\nRSET\r\nMAIL FROM:<a@r.test>\r\n",
            b"NOOP\r\n",
        ],
        false,
        config_for(Service::Mx, true),
        false,
    );
    let mut want = vec!["220"];
    want.extend_from_slice(EHLO_TLS);
    want.extend_from_slice(&["250 STARTTLS", "220 2.0.0", "250 2.0.0 Ok"]);
    expect(&r, &want);
}

#[test]
fn tls_forgets_earlier_state() {
    let r = run_service(
        &[
            b"EHLO c\r\nMAIL FROM:<a@r.test>\r\nSTARTTLS\r\n",
            b"MAIL FROM:<a@r.test>\r\n",
        ],
        false,
        config_for(Service::Mx, true),
        false,
    );
    let last = r.replies.last().unwrap();
    assert!(last.starts_with("503 5.5.1"), "{:#?}", r.replies);
}

#[test]
fn submission_requires_tls_then_auth() {
    let plain = b64("\0alice@example.test\0pw");
    let input1 =
        format!("EHLO c\r\nAUTH PLAIN {plain}\r\nMAIL FROM:<alice@example.test>\r\nSTARTTLS\r\n");
    let input2 = format!("EHLO c\r\nMAIL FROM:<alice@example.test>\r\nAUTH PLAIN {plain}\r\nAUTH PLAIN {plain}\r\nMAIL FROM:<alice@example.test>\r\nRCPT TO:<x@elsewhere.test>\r\n");
    let r = run_service(
        &[input1.as_bytes(), input2.as_bytes()],
        false,
        config_for(Service::Submission, true),
        false,
    );
    let mut want = vec!["220"];
    want.extend_from_slice(EHLO_TLS);
    want.extend_from_slice(&[
        "250 STARTTLS",
        "530 5.7.0 Must issue a STARTTLS command first",
        "530 5.7.0",
        "220 2.0.0",
    ]);
    want.extend_from_slice(EHLO_IN_TLS);
    want.extend_from_slice(&[
        "250 AUTH PLAIN LOGIN",
        "530 5.7.0 Authentication required",
        "235 2.7.0",
        "503 5.5.1", // already authenticated
        "250 2.1.0",
        "250 2.1.5", // authenticated users may send anywhere
    ]);
    expect(&r, &want);
}

#[test]
fn auth_plain_without_initial_response_and_login() {
    let plain = b64("\0bob@example.test\0pw");
    let input = format!("EHLO c\r\nAUTH PLAIN\r\n{plain}\r\nRSET\r\n");
    let r = run_service(
        &[input.as_bytes()],
        false,
        config_for(Service::Submissions, true),
        true,
    );
    let mut want = vec!["220"];
    want.extend_from_slice(EHLO_IN_TLS);
    want.extend_from_slice(&["250 AUTH PLAIN LOGIN", "334 ", "235 2.7.0", "250 2.0.0"]);
    expect(&r, &want);

    let input = format!(
        "EHLO c\r\nAUTH LOGIN\r\n{}\r\n{}\r\n",
        b64("alice@example.test"),
        b64("pw")
    );
    let r = run_service(
        &[input.as_bytes()],
        false,
        config_for(Service::Submissions, true),
        true,
    );
    let mut want = vec!["220"];
    want.extend_from_slice(EHLO_IN_TLS);
    want.extend_from_slice(&[
        "250 AUTH PLAIN LOGIN",
        "334 VXNlcm5hbWU6",
        "334 UGFzc3dvcmQ6",
        "235 2.7.0",
    ]);
    expect(&r, &want);
}

#[test]
fn auth_response_line_of_12288_octets_is_read_one_more_ends_the_exchange() {
    // RFC 4954 §4: AUTH response lines up to 12,288 octets (with CRLF). A longer one gets
    // `500 5.5.2` and ends the exchange, so the client's next command is a command again.
    let fits = format!("{}\r\n", "A".repeat(12_286));
    let over = format!("{}\r\n", "A".repeat(12_287));
    let over = format!("{over}NOOP\r\n");
    // The client waits for each 334 before its response, as RFC 4954 has it.
    let r = run_service(
        &[
            b"EHLO c\r\nAUTH PLAIN\r\n",
            fits.as_bytes(),
            b"AUTH PLAIN\r\n",
            over.as_bytes(),
        ],
        false,
        config_for(Service::Submissions, true),
        true,
    );
    let mut want = vec!["220"];
    want.extend_from_slice(EHLO_IN_TLS);
    want.extend_from_slice(&[
        "250 AUTH PLAIN LOGIN",
        "334 ",
        "501 5.5.2 Invalid base64",
        "334 ",
        "500 5.5.2 Line too long",
        "250 2.0.0",
    ]);
    expect(&r, &want);
}

#[test]
fn auth_errors() {
    let wrong = b64("\0alice@example.test\0nope");
    let other = b64("bob@example.test\0alice@example.test\0pw");
    let input = format!(
        "EHLO c\r\nAUTH PLAIN {wrong}\r\nAUTH PLAIN !!!notbase64\r\nAUTH PLAIN\r\n*\r\nAUTH LOGIN\r\n*\r\nAUTH PLAIN {other}\r\nAUTH CRAM-MD5\r\nAUTH PLAIN\r\n%%%\r\n"
    );
    let r = run_service(
        &[input.as_bytes()],
        false,
        config_for(Service::Submissions, true),
        true,
    );
    let mut want = vec!["220"];
    want.extend_from_slice(EHLO_IN_TLS);
    want.extend_from_slice(&[
        "250 AUTH PLAIN LOGIN",
        "535 5.7.8", // wrong password
        "501 5.5.2", // bad base64
        "334 ",
        "501 5.7.0", // cancelled
        "334 VXNlcm5hbWU6",
        "501 5.7.0", // cancelled
        "535 5.7.8", // authzid names someone else
        "504 5.5.4", // unknown mechanism
        "334 ",
        "501 5.5.2", // bad base64 in a continuation
    ]);
    expect(&r, &want);
}

#[test]
fn submission_sender_must_be_owned() {
    let plain = b64("\0alice@example.test\0pw");
    let input = format!(
        "EHLO c\r\nAUTH PLAIN {plain}\r\nMAIL FROM:<bob@example.test>\r\nMAIL FROM:<>\r\nMAIL FROM:<Sales@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\nFrom: Bob <bob@example.test>\r\n\r\nforged\r\n.\r\nMAIL FROM:<alice@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\nFrom: Alice <alice@example.test>\r\nSubject: ok\r\n\r\nhi\r\n.\r\n"
    );
    let r = run_service(
        &[input.as_bytes()],
        false,
        config_for(Service::Submissions, true),
        true,
    );
    let mut want = vec!["220"];
    want.extend_from_slice(EHLO_IN_TLS);
    want.extend_from_slice(&[
        "250 AUTH PLAIN LOGIN",
        "235 2.7.0",
        "553 5.7.1",
        "553 5.7.1",
        "250 2.1.0", // an alias of alice's
        "250 2.1.5",
        "354",
        "553 5.7.1 From: <bob@example.test> refused",
        "250 2.1.0",
        "250 2.1.5",
        "354",
        "250 2.0.0 Ok: queued as ID1",
    ]);
    expect(&r, &want);
    // Date and Message-ID were missing: added; Received names TLS and AUTH, never the password.
    let h = &r.headers[0];
    assert!(
        h.contains("\tby mx.example.test (Mailroom) with ESMTPSA id ID1"),
        "{h}"
    );
    assert!(
        h.contains("(using TLSv1.3 with cipher TLS13_AES_128_GCM_SHA256)"),
        "{h}"
    );
    assert!(h.contains("(authenticated sender)"), "{h}");
    assert!(
        h.contains("\r\nDate: Thu, 1 Jan 1970 00:00:00 +0000\r\n"),
        "{h}"
    );
    assert!(
        h.contains("\r\nMessage-ID: <ID1@mx.example.test>\r\n"),
        "{h}"
    );
    assert!(!h.contains("pw"));
}

#[test]
fn submission_refuses_two_from_headers_and_checks_every_mailbox() {
    // Security review: mail-parser's `from()` returns the last From: only, so a forged first
    // one passed. RFC 5322 §3.6 allows one From:; every mailbox in it must be owned.
    let plain = b64("\0alice@example.test\0pw");
    let input = format!(
        "EHLO c\r\nAUTH PLAIN {plain}\r\n\
         MAIL FROM:<alice@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n\
         From: CEO <bob@example.test>\r\nFrom: alice@example.test\r\n\r\nforged\r\n.\r\n\
         MAIL FROM:<alice@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n\
         From: alice@example.test, CEO <bob@example.test>\r\n\r\nforged\r\n.\r\n\
         MAIL FROM:<alice@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n\
         From: alice@example.test, Sales <sales@example.test>\r\n\r\nok\r\n.\r\n"
    );
    let r = run_service(
        &[input.as_bytes()],
        false,
        config_for(Service::Submissions, true),
        true,
    );
    let mut want = vec!["220"];
    want.extend_from_slice(EHLO_IN_TLS);
    want.extend_from_slice(&[
        "250 AUTH PLAIN LOGIN",
        "235 2.7.0",
        "250 2.1.0",
        "250 2.1.5",
        "354",
        "553 5.7.1 Message refused: more than one From: header",
        "250 2.1.0",
        "250 2.1.5",
        "354",
        "553 5.7.1 From: <bob@example.test> refused",
        "250 2.1.0",
        "250 2.1.5",
        "354",
        "250 2.0.0 Ok: queued as ID1",
    ]);
    expect(&r, &want);
}

#[test]
fn submission_keeps_existing_date_and_message_id() {
    let plain = b64("\0alice@example.test\0pw");
    let input = format!(
        "EHLO c\r\nAUTH PLAIN {plain}\r\nMAIL FROM:<alice@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\nFrom: alice@example.test\r\nDate: Fri, 27 Nov 2026 01:00:00 +0000\r\nMessage-ID: <x@y>\r\n\r\nhi\r\n.\r\n"
    );
    let r = run_service(
        &[input.as_bytes()],
        false,
        config_for(Service::Submissions, true),
        true,
    );
    assert!(
        r.replies.last().unwrap().starts_with("250 2.0.0"),
        "{:#?}",
        r.replies
    );
    assert!(!r.headers[0].contains("Date:") && !r.headers[0].contains("Message-ID:"));
}

#[test]
fn second_starttls_refused() {
    let r = run_service(
        &[b"EHLO c\r\nSTARTTLS\r\n", b"EHLO c\r\nSTARTTLS\r\n"],
        false,
        config_for(Service::Submission, true),
        false,
    );
    assert!(
        r.replies.last().unwrap().starts_with("503 5.5.1"),
        "{:#?}",
        r.replies
    );
}

#[test]
fn too_many_errors_closes_with_421() {
    let input = "FOO\r\n".repeat(25);
    let r = run(input.as_bytes());
    assert_eq!(r.replies.len(), 1 + 20 + 1, "{:#?}", r.replies);
    assert!(r.replies[20].starts_with("500 5.5.1"));
    assert!(r.replies[21].starts_with("421 4.7.0"));
    assert!(r.closed);
}

#[test]
fn mail_loop_refused_with_5_4_6() {
    let mut input =
        String::from("EHLO c\r\nMAIL FROM:<s@r.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n");
    for _ in 0..101 {
        input.push_str("Received: from a by b; date\r\n");
    }
    input.push_str("\r\nbody\r\n.\r\n");
    let session = Session::new(
        Arc::new(SessionConfig::new("mx.example.test", Service::Mx)),
        Peer {
            ip: "192.0.2.1".parse().unwrap(),
            trusted: false,
        },
    );
    let mut conn = Connection::new(session);
    conn.receive(input.as_bytes());
    assert_eq!(conn.advance(&FakePolicy), Event::NeedInput);
    let out = String::from_utf8(conn.take_output()).unwrap();
    assert!(
        out.ends_with("554 5.4.6 Too many hops (Received: headers): mail loop\r\n"),
        "{out}"
    );
}

#[test]
fn oversized_header_block_refused() {
    let mut input =
        String::from("EHLO c\r\nMAIL FROM:<s@r.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n");
    input.push_str(&format!("X-Big: {}\r\n\r\nbody\r\n.\r\n", "a".repeat(900)));
    let session = Session::new(
        Arc::new(SessionConfig {
            max_header_size: 500,
            ..SessionConfig::new("mx.example.test", Service::Mx)
        }),
        Peer {
            ip: "192.0.2.1".parse().unwrap(),
            trusted: false,
        },
    );
    let mut conn = Connection::new(session);
    conn.receive(input.as_bytes());
    assert_eq!(conn.advance(&FakePolicy), Event::NeedInput);
    let out = String::from_utf8(conn.take_output()).unwrap();
    assert!(
        out.ends_with("552 5.3.4 Message header size exceeds limit\r\n"),
        "{out}"
    );
}

#[test]
fn pipelining_before_the_greeting_is_answered_in_order() {
    // A client that talks before the 220 gets its replies after the greeting, in order;
    // nothing is skipped or run twice.
    let r = run(b"EHLO early\r\nNOOP\r\nQUIT\r\n");
    expect(&r, &with_ehlo(&["250 2.0.0", "221"]));
}

#[test]
fn nul_bytes_in_commands_are_refused() {
    let r = run(b"EHLO c\r\nMAIL FROM:<a\0@r.test>\r\nNO\0OP\r\nHELO a\0b\r\n");
    assert!(r.replies[8].starts_with("501"), "{:#?}", r.replies);
    assert!(r.replies[9].starts_with("500"), "{:#?}", r.replies);
}

/// Runs `input` on a port 25 session with small limits and returns the events' totals:
/// (bytes spilled, commits with their in-memory tails, abandons, replies).
fn run_spilling(
    input: &[u8],
    max_header_size: usize,
) -> (u64, Vec<(Envelope, Vec<u8>)>, u32, String) {
    let session = Session::new(
        Arc::new(SessionConfig {
            max_message_size: 8 << 20,
            max_header_size,
            ..SessionConfig::new("mx.example.test", Service::Mx)
        }),
        Peer {
            ip: "192.0.2.1".parse().unwrap(),
            trusted: false,
        },
    );
    let mut conn = Connection::new(session);
    let (mut spilled, mut commits, mut abandons) = (0u64, Vec::new(), 0u32);
    for chunk in input.chunks(64 * 1024) {
        conn.receive(chunk);
        loop {
            match conn.advance(&FakePolicy) {
                Event::NeedInput => break,
                Event::Spill(b) => spilled += b.len() as u64,
                Event::Abandon => abandons += 1,
                Event::Commit { envelope, message } => {
                    commits.push((envelope, message));
                    conn.committed(Ok("ID"));
                }
                e => panic!("{e:?}"),
            }
        }
    }
    (
        spilled,
        commits,
        abandons,
        String::from_utf8(conn.take_output()).unwrap(),
    )
}

fn big_message(header: &str, body_lines: usize) -> Vec<u8> {
    let mut m =
        b"EHLO c\r\nMAIL FROM:<s@r.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n".to_vec();
    m.extend_from_slice(header.as_bytes());
    m.extend_from_slice(b"\r\n\r\n");
    for i in 0..body_lines {
        m.extend_from_slice(format!("{i:08} {}\r\n", "x".repeat(90)).as_bytes());
    }
    m.extend_from_slice(b".\r\nNOOP\r\n");
    m
}

#[test]
fn large_message_streams_out_and_memory_stays_bounded() {
    // 3 MiB of body: spilled in pieces no larger than the spill size plus one read.
    let input = big_message("Subject: big", 30_000);
    let (spilled, commits, abandons, out) = run_spilling(&input, 4096);
    assert_eq!(commits.len(), 1, "{out}");
    let (env, tail) = &commits[0];
    assert!(spilled > 2_000_000, "{spilled}");
    assert_eq!(env.size, spilled + tail.len() as u64);
    assert!(tail.len() <= conn::SPILL_AT + 64 * 1024);
    assert_eq!(abandons, 0);
    assert!(
        out.ends_with("250 2.0.0 Ok: queued as ID\r\n250 2.0.0 Ok\r\n"),
        "{out}"
    );
}

#[test]
fn large_refused_message_is_never_spilled() {
    let mut header = String::new();
    for _ in 0..101 {
        header.push_str("Received: from a by b; date\r\n");
    }
    header.push_str("Subject: loop");
    let input = big_message(&header, 30_000);
    let (spilled, commits, abandons, out) = run_spilling(&input, 8192);
    assert_eq!((spilled, commits.len(), abandons), (0, 0, 0));
    assert!(out.contains("\r\n554 5.4.6 "), "{out}");
}

#[test]
fn spilled_message_with_bare_lf_is_abandoned() {
    let mut input = big_message("Subject: big", 30_000);
    // A bare LF near the end, after the first spill.
    let at = input.len() - 200;
    input.insert(at, b'\n');
    let (spilled, commits, abandons, out) = run_spilling(&input, 4096);
    assert!(spilled > 0);
    assert!(commits.is_empty());
    assert_eq!(abandons, 1);
    assert!(out.contains("\r\n550 5.6.11 "), "{out}");
}

#[test]
fn hostile_parameters_and_addresses() {
    let long_domain = format!("a@{}.test", "d".repeat(250));
    let input = format!(
        "EHLO c\r\n\
         MAIL FROM:<s@r.test> SIZE=10;rm\r\n\
         MAIL FROM:<s@r.test> BODY=8BITMIME\0\r\n\
         MAIL FROM:<`id`@r.test> SIZE=99999999999999999999999\r\n\
         MAIL FROM:<{long_domain}>\r\n\
         MAIL FROM:<s@r.test> X-FOO=$(reboot)\r\n\
         MAIL FROM:<s@r.test>\r\n\
         RCPT TO:<alice@example.test> NOTIFY=NEVER|sh\r\n\
         RCPT TO:<alice@example.test\r>\r\n\
         RCPT TO:<alice@[127.0.0.1]>\r\n"
    );
    let r = run(input.as_bytes());
    let finals: Vec<&str> = r.replies[8..].iter().map(|l| &l[..3]).collect();
    // Every hostile form gets a 5xx; only the plain MAIL is accepted.
    assert_eq!(finals.len(), 9, "{:#?}", r.replies);
    for (i, code) in finals.iter().enumerate() {
        if i == 5 {
            assert_eq!(*code, "250", "{:#?}", r.replies);
        } else {
            assert!(code.starts_with('5'), "line {i}: {:#?}", r.replies);
        }
    }
}

#[test]
fn helo_with_control_bytes_is_escaped_in_received() {
    let session = Session::new(
        config(),
        Peer {
            ip: "192.0.2.1".parse().unwrap(),
            trusted: false,
        },
    );
    let mut conn = Connection::new(session);
    conn.receive(b"EHLO evil\x1b[31m\x07host\r\nMAIL FROM:<s@r.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\nx\r\n.\r\n");
    assert!(matches!(conn.advance(&FakePolicy), Event::Commit { .. }));
    let h = conn.trace_headers("QID", 0);
    assert!(
        h.starts_with("Received: from evil\\x1b[31m\\x07host ([192.0.2.1])\r\n"),
        "{h}"
    );
    assert!(!h
        .bytes()
        .any(|b| b < 0x20 && b != b'\r' && b != b'\n' && b != b'\t'));
}

#[test]
fn a_lowered_error_limit_closes_sooner() {
    let mut conn = Connection::new(Session::new(
        config(),
        Peer {
            ip: "192.0.2.1".parse().unwrap(),
            trusted: false,
        },
    ));
    conn.limit_errors(Some(3));
    conn.receive(b"BOGUS\r\nBOGUS\r\nBOGUS\r\nNOOP\r\n");
    assert!(matches!(conn.advance(&FakePolicy), Event::Close));
    let text = String::from_utf8(conn.take_output()).unwrap();
    let replies: Vec<&str> = text.split_terminator("\r\n").collect();
    assert_eq!(replies.len(), 5, "{replies:?}");
    assert!(replies[4].starts_with("421 4.7.0"), "{replies:?}");
    // Back to the configured limit (20 in these tests): three errors are fine.
    let mut conn = Connection::new(Session::new(
        config(),
        Peer {
            ip: "192.0.2.1".parse().unwrap(),
            trusted: false,
        },
    ));
    conn.limit_errors(Some(3));
    conn.limit_errors(None);
    conn.receive(b"BOGUS\r\nBOGUS\r\nBOGUS\r\nNOOP\r\n");
    assert!(matches!(conn.advance(&FakePolicy), Event::NeedInput));
}

#[test]
fn requiretls_only_on_tls_sessions_and_recorded_in_the_envelope() {
    let mail = b"EHLO c.test\r\nMAIL FROM:<s@remote.test> REQUIRETLS\r\nRCPT TO:<alice@example.test>\r\nDATA\r\nSubject: x\r\n\r\nb\r\n.\r\nQUIT\r\n";
    // Plaintext: not advertised, and the parameter is refused as unadvertised.
    let plain = run(mail);
    assert!(
        !plain.replies.iter().any(|l| l.contains("REQUIRETLS")),
        "{:#?}",
        plain.replies
    );
    assert!(
        plain.replies.iter().any(|l| l.starts_with("555 5.5.4")),
        "{:#?}",
        plain.replies
    );
    assert!(plain.committed.is_empty());
    // Inside TLS: advertised, accepted, recorded.
    let tls = run_service(&[mail], false, config_for(Service::Mx, true), true);
    assert!(
        tls.replies
            .iter()
            .any(|l| l == "250-REQUIRETLS" || l == "250 REQUIRETLS"),
        "{:#?}",
        tls.replies
    );
    let [(envelope, _)] = tls.committed.as_slice() else {
        panic!("{:#?}", tls.replies);
    };
    assert!(envelope.require_tls);
    // Without the parameter, not recorded.
    let tls = run_service(&[b"EHLO c.test\r\nMAIL FROM:<s@remote.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\nx\r\n.\r\n"], false, config_for(Service::Mx, true), true);
    assert!(!tls.committed[0].0.require_tls);
}
