//! The POP3 command parser (`proto::pop3::parse_command`) and session state machine
//! (`proto::pop3::Session`) on arbitrary client lines, answered as the network loop would.
//!
//! Input: byte 0 = session flags and the loop's verdicts (plain-text login allowed, TLS
//! available / active, AUTH outcome, a failing message file), the rest = client bytes, cut
//! into lines at LF (a CR before it is dropped), each truncated to the session's
//! `max_line_length() + 1` as the loop does.
//!
//! Checks: no panic; the parser only returns commands whose arguments hold no control byte
//! and whose PASS never shows up in `Debug`; every reply is `+OK ...CRLF`, `-ERR ...CRLF` or
//! the SASL `+ CRLF`, single-line replies hold one CRLF, and multi-line replies are CRLF
//! lines ending in `.CRLF` with no other line that is just `.`; no plain-text login without
//! TLS unless allowed; message indices are in range.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::pop3::{parse_command, Action, AuthOutcome, Command, Session, SessionFlags, State};

fn check_reply(r: &str, multi_ok: bool) {
    assert!(r.ends_with("\r\n"), "reply without CRLF: {r:?}");
    if r == "+ \r\n" {
        return;
    }
    assert!(
        r.starts_with("+OK") || r.starts_with("-ERR"),
        "bad status: {r:?}"
    );
    let lines: Vec<&str> = r[..r.len() - 2].split("\r\n").collect();
    for l in &lines {
        assert!(!l.contains(['\r', '\n']), "bare line end in reply {r:?}");
    }
    if lines.len() > 1 {
        assert!(
            multi_ok && r.starts_with("+OK"),
            "unexpected multi-line reply {r:?}"
        );
        assert_eq!(
            *lines.last().unwrap(),
            ".",
            "multi-line reply not ended by '.': {r:?}"
        );
        for l in &lines[1..lines.len() - 1] {
            assert_ne!(*l, ".", "early terminator in {r:?}");
        }
    }
}

fn check_command(line: &[u8], cmd: &Command) {
    assert!(line.len() + 2 <= 255);
    let dbg = format!("{cmd:?}");
    match cmd {
        Command::Pass(p) => {
            assert!(!p.is_empty());
            assert_eq!(dbg, "Pass(<redacted>)");
        }
        Command::User(u) => assert!(!u.is_empty() && !u.bytes().any(|b| b.is_ascii_control())),
        Command::Auth {
            mechanism: Some(m), ..
        } => {
            assert!(!m.is_empty() && !m.contains(' ') && *m == m.to_ascii_uppercase())
        }
        Command::Retr(n) | Command::Dele(n) => assert!(line.ends_with(n.to_string().as_bytes())),
        _ => {}
    }
}

fuzz_target!(|input: &[u8]| {
    let Some((&settings, data)) = input.split_first() else {
        return;
    };
    let flags = SessionFlags {
        plaintext_login_allowed: settings & 1 != 0,
        tls_available: settings & 2 != 0,
        tls_active: settings & 4 != 0,
    };
    let outcome = || match (settings >> 3) & 7 {
        0 | 1 => AuthOutcome::Ok(vec![
            ("uid-1".into(), 120),
            ("uid-2".into(), 0),
            ("uid-3".into(), 99_999),
        ]),
        2 => AuthOutcome::Ok(Vec::new()),
        3 => AuthOutcome::BadCredentials,
        4 => AuthOutcome::Throttled,
        5 => AuthOutcome::InUse,
        6 => AuthOutcome::TempFailure,
        _ => AuthOutcome::PermFailure,
    };
    let send_fails = settings & 0x40 != 0;

    let mut session = Session::new(flags);
    let mut tls = flags.tls_active;
    let mut messages = 0usize;
    let mut lines = data.split(|&b| b == b'\n').peekable();
    while let Some(raw) = lines.next() {
        if lines.peek().is_none() && !data.ends_with(b"\n") && raw.is_empty() {
            break;
        }
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        let max = session.max_line_length();
        let line = &line[..line.len().min(max + 1)];
        if let Ok(cmd) = parse_command(line) {
            check_command(line, &cmd);
        }
        let before = session.state();
        let action = session.handle_line(line);
        match action {
            Action::Reply(r) => check_reply(&r, true),
            Action::Close(r) => {
                check_reply(&r, false);
                break;
            }
            Action::Authenticate { user, password } => {
                assert!(
                    tls || flags.plaintext_login_allowed,
                    "clear-text login accepted"
                );
                assert!(!user.is_empty());
                let _ = password;
                assert_eq!(session.state(), State::Authenticating);
                let out = outcome();
                if let AuthOutcome::Ok(l) = &out {
                    messages = l.len();
                }
                let next = session.auth_result(out);
                match next {
                    Action::Reply(r) => check_reply(&r, false),
                    Action::Close(r) => {
                        check_reply(&r, false);
                        break;
                    }
                    other => panic!("auth_result gave {other:?}"),
                }
            }
            Action::StartTls(r) => {
                assert!(!tls && flags.tls_available, "STLS when not allowed");
                assert_eq!(before, State::Authorization);
                check_reply(&r, false);
                assert!(r.starts_with("+OK"));
                session.tls_started();
                tls = true;
                assert!(session.tls_active());
                assert_eq!(session.state(), State::Authorization);
            }
            Action::SendMessage {
                index,
                top_lines: _,
                reply,
            } => {
                assert_eq!(before, State::Transaction);
                assert!(index < messages, "message index {index} of {messages}");
                check_reply(&reply, false);
                assert!(reply.starts_with("+OK"));
                if send_fails {
                    let r = session.send_failed(index);
                    check_reply(&r, false);
                    assert!(r.starts_with("-ERR"));
                }
            }
            Action::Quit { delete, seen } => {
                assert_eq!(before, State::Transaction);
                for i in delete.iter().chain(&seen) {
                    assert!(*i < messages);
                }
                for i in &seen {
                    assert!(!delete.contains(i), "message both deleted and seen");
                }
                let r = session.update_result(if send_fails { delete.len() } else { 0 });
                check_reply(&r, false);
                assert_eq!(session.state(), State::Closed);
                break;
            }
        }
    }
    let (retrieved, deleted) = session.counts();
    assert!(retrieved <= messages && deleted <= messages);
});
