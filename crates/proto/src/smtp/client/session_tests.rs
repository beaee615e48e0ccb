//! Transcript tests of the client session's setup and upkeep: greeting, EHLO/HELO, STARTTLS,
//! AUTH, malformed replies, RSET and QUIT. Transactions are in `transaction_tests.rs`.

use super::transcript::{ehlo_reply, hello, ready, talk, talk_noting, waiting};
use super::{Action, Capabilities, Hello, Session, Timer};

fn failed(reason: &str) -> Action {
    Action::Failed(reason.into())
}

#[test]
fn setup_with_ehlo_learns_the_capabilities() {
    let mut s = Session::new(hello());
    assert_eq!(waiting(&mut s), Timer::Greeting);
    let script = format!(
        "S: 220 mx.test ESMTP\nC: EHLO relay.test\n{}",
        ehlo_reply(&["PIPELINING", "SIZE 1000", "CHUNKING"])
    );
    assert_eq!(talk(&mut s, &script), Action::Ready);
    assert!(s.caps().pipelining && s.caps().chunking);
    assert_eq!(s.caps().max_size(), Some(1000));
    assert!(!s.tls());
    assert_eq!(s.replies(), 2);
}

#[test]
fn a_greeting_other_than_220_gives_up_on_the_host() {
    for (greeting, reason) in [
        ("554 5.7.1 go away", "greeting: 554 5.7.1 go away"),
        ("421 4.3.2 busy", "greeting: 421 4.3.2 busy"),
        ("250 hello?", "greeting: 250 hello?"),
    ] {
        let mut s = Session::new(hello());
        let script = format!("S: {greeting}");
        assert_eq!(talk(&mut s, &script), failed(reason), "{greeting}");
        // It stays failed, and sends nothing more.
        assert_eq!(s.poll(), failed(reason));
    }
}

#[test]
fn ehlo_refused_with_5xx_falls_back_to_helo() {
    let mut s = Session::new(hello());
    let script = "S: 220 old.test SMTP
                  C: EHLO relay.test
                  S: 502 5.5.2 what?
                  C: HELO relay.test
                  S: 250 old.test";
    assert_eq!(talk(&mut s, script), Action::Ready);
    assert_eq!(s.caps(), &Capabilities::default());
    // HELO refused too: give up.
    let mut s = Session::new(hello());
    let script = "S: 220 old.test SMTP
                  C: EHLO relay.test
                  S: 500 no
                  C: HELO relay.test
                  S: 501 5.5.4 no either";
    assert_eq!(talk(&mut s, script), failed("HELO: 501 5.5.4 no either"));
}

#[test]
fn ehlo_refused_with_4xx_gives_up_without_helo() {
    let mut s = Session::new(hello());
    let script = "S: 220 mx.test
                  C: EHLO relay.test
                  S: 451 4.3.0 try later";
    assert_eq!(talk(&mut s, script), failed("EHLO: 451 4.3.0 try later"));
}

#[test]
fn starttls_when_offered_then_ehlo_again() {
    let mut s = Session::new(hello());
    let script = format!(
        "S: 220 mx.test\nC: EHLO relay.test\n{}C: STARTTLS\nS: 220 2.0.0 go ahead",
        ehlo_reply(&["STARTTLS", "PIPELINING"])
    );
    assert_eq!(talk(&mut s, &script), Action::StartTls);
    // Until the driver says the handshake is done, the session waits for it.
    assert_eq!(s.poll(), Action::StartTls);
    s.tls_started();
    assert!(s.tls());
    // What the server said in plaintext is forgotten (RFC 3207 §4.2).
    assert_eq!(s.caps(), &Capabilities::default());
    let script = format!("C: EHLO relay.test\n{}", ehlo_reply(&["CHUNKING"]));
    assert_eq!(talk(&mut s, &script), Action::Ready);
    assert!(s.caps().chunking && !s.caps().pipelining);
}

#[test]
fn starttls_is_not_tried_when_not_wanted_or_not_offered() {
    let mut s = Session::new(Hello {
        starttls: false,
        ..hello()
    });
    let script = format!(
        "S: 220 mx.test\nC: EHLO relay.test\n{}",
        ehlo_reply(&["STARTTLS"])
    );
    assert_eq!(talk(&mut s, &script), Action::Ready);
    let mut s = Session::new(hello());
    let script = format!(
        "S: 220 mx.test\nC: EHLO relay.test\n{}",
        ehlo_reply(&["8BITMIME"])
    );
    assert_eq!(talk(&mut s, &script), Action::Ready);
}

#[test]
fn starttls_refused_goes_on_in_plaintext_with_a_note() {
    let mut s = Session::new(hello());
    let script = format!(
        "S: 220 mx.test\nC: EHLO relay.test\n{}C: STARTTLS\nS: 454 4.7.0 TLS not available",
        ehlo_reply(&["STARTTLS", "PIPELINING"])
    );
    let (action, notes) = talk_noting(&mut s, &script);
    assert_eq!(action, Action::Ready);
    assert_eq!(notes, vec!["STARTTLS refused: 454 4.7.0 TLS not available"]);
    assert!(!s.tls());
    assert!(s.caps().pipelining, "the plaintext capabilities stay");
}

#[test]
fn bytes_behind_the_starttls_reply_are_an_injection() {
    // CVE-2011-0411 class: a reply forged in plaintext would be read as if it came over TLS.
    let mut s = Session::new(hello());
    let script = format!(
        "S: 220 mx.test\nC: EHLO relay.test\n{}C: STARTTLS\nS: 220 go ahead\nS: 250 forged",
        ehlo_reply(&["STARTTLS"])
    );
    assert_eq!(
        talk(&mut s, &script),
        failed("data after STARTTLS reply (injection attempt)")
    );
    assert!(!s.tls());
}

/// Found by the `smtp_client_session` fuzz target: a `220` that arrives with the EHLO reply,
/// before STARTTLS is sent, would be taken as STARTTLS's answer.
#[test]
fn a_reply_before_starttls_is_sent_is_an_injection() {
    let mut s = Session::new(hello());
    assert!(matches!(s.poll(), Action::Receive(_)));
    s.received(b"220 mx.test\r\n");
    assert!(matches!(s.poll(), Action::Send(..)));
    assert!(matches!(s.poll(), Action::Receive(_)));
    s.received(b"250-mx.test\r\n250 STARTTLS\r\n220 go ahead\r\n");
    let mut next = s.poll();
    while let Action::Note(_) = next {
        next = s.poll();
    }
    assert_eq!(
        next,
        failed("data before STARTTLS was sent (injection attempt)")
    );
    assert!(!s.tls());
}

fn with_auth() -> Session {
    Session::new(Hello {
        auth: Some(("user".into(), "pass".into())),
        ..hello()
    })
}

/// Greeting, STARTTLS accepted, handshake done, EHLO offering `keywords`, then `rest`.
fn over_tls(s: &mut Session, keywords: &[&str], rest: &str) -> Action {
    let script = format!(
        "S: 220 smarthost.test\nC: EHLO relay.test\n{}C: STARTTLS\nS: 220 go ahead",
        ehlo_reply(&["STARTTLS"])
    );
    assert_eq!(talk(s, &script), Action::StartTls);
    s.tls_started();
    let script = format!("C: EHLO relay.test\n{}{rest}", ehlo_reply(keywords));
    talk(s, &script)
}

#[test]
fn auth_plain_after_starttls() {
    let mut s = with_auth();
    // base64("\0user\0pass")
    let script = "C: AUTH PLAIN AHVzZXIAcGFzcw==\nS: 235 2.7.0 ok";
    assert_eq!(
        over_tls(&mut s, &["AUTH LOGIN PLAIN"], script),
        Action::Ready
    );
    assert!(s.tls());

    let mut s = with_auth();
    let script = "C: AUTH PLAIN AHVzZXIAcGFzcw==\nS: 535 5.7.8 bad credentials";
    assert_eq!(
        over_tls(&mut s, &["AUTH PLAIN"], script),
        failed("AUTH failed: 535 5.7.8 bad credentials")
    );

    let mut s = with_auth();
    assert_eq!(
        over_tls(&mut s, &["AUTH LOGIN"], ""),
        failed("smarthost does not offer AUTH PLAIN")
    );
}

#[test]
fn auth_is_never_sent_without_tls() {
    let plaintext =
        failed("smarthost does not offer STARTTLS; refusing to send credentials in plaintext");
    // Not offered.
    let mut s = with_auth();
    let script = format!(
        "S: 220 mx.test\nC: EHLO relay.test\n{}",
        ehlo_reply(&["AUTH PLAIN"])
    );
    assert_eq!(talk(&mut s, &script), plaintext);
    // Offered, then refused.
    let mut s = with_auth();
    let script = format!(
        "S: 220 mx.test\nC: EHLO relay.test\n{}C: STARTTLS\nS: 454 4.7.0 no",
        ehlo_reply(&["STARTTLS", "AUTH PLAIN"])
    );
    assert_eq!(talk(&mut s, &script), plaintext);
    // Not wanted (the driver's retry after a failed handshake).
    let mut s = Session::new(Hello {
        starttls: false,
        ..with_auth_hello()
    });
    let script = format!(
        "S: 220 mx.test\nC: EHLO relay.test\n{}",
        ehlo_reply(&["STARTTLS", "AUTH PLAIN"])
    );
    assert_eq!(talk(&mut s, &script), plaintext);
}

fn with_auth_hello() -> Hello {
    Hello {
        auth: Some(("user".into(), "pass".into())),
        ..hello()
    }
}

/// A verified smarthost (`smarthost_tls = "verify"`): no STARTTLS offered, or refused, ends
/// the session before anything else is sent; `"none"` lets AUTH go out in plaintext.
#[test]
fn required_tls_and_explicit_plaintext_auth() {
    let required = || Hello {
        require_tls: true,
        ..with_auth_hello()
    };
    let mut s = Session::new(required());
    let script = format!(
        "S: 220 mx.test\nC: EHLO relay.test\n{}",
        ehlo_reply(&["AUTH PLAIN"])
    );
    assert_eq!(
        talk(&mut s, &script),
        failed("STARTTLS not offered and TLS is required")
    );
    let mut s = Session::new(required());
    let script = format!(
        "S: 220 mx.test\nC: EHLO relay.test\n{}C: STARTTLS\nS: 454 not now",
        ehlo_reply(&["STARTTLS", "AUTH PLAIN"])
    );
    assert_eq!(
        talk(&mut s, &script),
        failed("STARTTLS refused and TLS is required: 454 not now")
    );
    let mut s = Session::new(Hello {
        starttls: false,
        plaintext_auth: true,
        ..with_auth_hello()
    });
    let script = format!(
        "S: 220 mx.test\nC: EHLO relay.test\n{}C: AUTH PLAIN AHVzZXIAcGFzcw==\nS: 235 ok",
        ehlo_reply(&["STARTTLS", "AUTH PLAIN"])
    );
    assert_eq!(talk(&mut s, &script), Action::Ready);
}

#[test]
fn the_password_is_not_in_debug_output() {
    let debug = format!("{:?}", with_auth());
    assert!(debug.contains("user") && !debug.contains("pass"), "{debug}");
}

#[test]
fn a_malformed_reply_ends_the_session() {
    for (bytes, reason) in [
        (&b"22O hello\r\n"[..], "malformed reply: 22O hello"),
        (b"220-a\r\n250 b\r\n", "malformed reply: 250 b"),
    ] {
        let mut s = Session::new(hello());
        s.received(bytes);
        assert_eq!(s.poll(), failed(reason));
    }
    let mut s = Session::new(hello());
    s.received(&vec![b'2'; super::MAX_REPLY_LINE + 10]);
    assert_eq!(s.poll(), failed("reply line too long"));
}

#[test]
fn a_reply_split_over_reads_is_one_reply_under_one_timer() {
    let mut s = Session::new(hello());
    s.received(b"220-mx.test ");
    assert_eq!(s.poll(), Action::Receive(Timer::Greeting));
    s.received(b"ESMTP\r\n220 ");
    assert_eq!(s.poll(), Action::Receive(Timer::Greeting));
    // Still the first reply: a driver keeps its deadline.
    assert_eq!(s.replies(), 0);
    s.received(b"ready\r\n");
    assert_eq!(
        s.poll(),
        Action::Send(b"EHLO relay.test\r\n".to_vec(), Timer::Greeting)
    );
    assert_eq!(s.replies(), 1);
}

#[test]
fn a_connection_failure_during_setup_fails_it() {
    let mut s = Session::new(hello());
    s.failed("connection closed by server".into());
    assert_eq!(s.poll(), failed("connection closed by server"));
}

#[test]
fn rset_before_reuse() {
    let mut s = ready(&["PIPELINING"]);
    s.reset();
    assert_eq!(s.poll(), Action::Send(b"RSET\r\n".to_vec(), Timer::Reset));
    assert_eq!(waiting(&mut s), Timer::Reset);
    assert_eq!(talk(&mut s, "S: 250 2.0.0 Ok"), Action::Ready);
    // A refused RSET or a dead connection: not reusable.
    s.reset();
    assert_eq!(
        talk(&mut s, "C: RSET\nS: 421 4.4.2 idle too long"),
        failed("RSET: 421 4.4.2 idle too long")
    );
    let mut s = ready(&[]);
    s.reset();
    assert_eq!(talk(&mut s, "C: RSET"), Action::Receive(Timer::Reset));
    s.failed("connection closed by server".into());
    assert_eq!(s.poll(), failed("connection closed by server"));
}

#[test]
fn quit_closes_whatever_the_reply() {
    let mut s = ready(&[]);
    s.quit();
    assert_eq!(s.poll(), Action::Send(b"QUIT\r\n".to_vec(), Timer::Quit));
    assert_eq!(waiting(&mut s), Timer::Quit);
    assert_eq!(talk(&mut s, "S: 221 2.0.0 Bye"), Action::Closed);
    // No reply at all, or garbage: closed too.
    let mut s = ready(&[]);
    s.quit();
    assert_eq!(talk(&mut s, "C: QUIT"), Action::Receive(Timer::Quit));
    s.failed("timed out waiting for reply".into());
    assert_eq!(s.poll(), Action::Closed);
    let mut s = ready(&[]);
    s.quit();
    assert_eq!(talk(&mut s, "C: QUIT\nS: bye!"), Action::Closed);
    // Even a session that failed to set up may be sent QUIT.
    let mut s = Session::new(hello());
    assert_eq!(talk(&mut s, "S: 554 no"), failed("greeting: 554 no"));
    s.quit();
    assert_eq!(talk(&mut s, "C: QUIT\nS: 221 bye"), Action::Closed);
}
