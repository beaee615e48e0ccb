//! Transcript tests of the POP3 session: a fake loop performs the actions against an
//! in-memory maildrop and user table, and each client line is checked against the expected
//! output (exact, or by prefix). The fake loop's TLS handshake always succeeds at once, so
//! these tests cover the session's STLS rules, not the handshake or input discarding (see the
//! `pop3` crate's integration tests for those).

use super::*;

const MSG1: &[u8] = b"Subject: one\r\n\r\nhello\r\n";
const MSG2: &[u8] = b"Subject: two\r\nX: y\r\n\r\n.dot line\r\n..two dots\r\n.\r\nlast";
const MSG3: &[u8] = b"Subject: three\r\n\r\na\r\nb\r\nc\r\n";

enum Expect {
    Exact(&'static str),
    Prefix(&'static str),
}
use Expect::{Exact, Prefix};

struct FakeLoop {
    session: Session,
    messages: Vec<&'static [u8]>,
    /// What the next successful login returns instead of a listing, if set.
    outcome_override: Option<AuthOutcome>,
    closed: bool,
}

impl FakeLoop {
    fn new(plaintext: bool) -> Self {
        Self::with_flags(SessionFlags {
            plaintext_login_allowed: plaintext,
            tls_available: false,
            tls_active: false,
        })
    }

    fn with_flags(flags: SessionFlags) -> Self {
        FakeLoop {
            session: Session::new(flags),
            messages: vec![MSG1, MSG2, MSG3],
            outcome_override: None,
            closed: false,
        }
    }

    fn perform(&mut self, action: Action) -> String {
        match action {
            Action::Reply(s) => s,
            Action::Authenticate { user, password } => {
                let good = user == "alice" && password == "secret word";
                let outcome = match (good, self.outcome_override.take()) {
                    (false, _) => AuthOutcome::BadCredentials,
                    (true, Some(o)) => o,
                    (true, None) => AuthOutcome::Ok(
                        self.messages
                            .iter()
                            .enumerate()
                            .map(|(i, m)| (format!("uid{}", i + 1), m.len() as u64))
                            .collect(),
                    ),
                };
                let a = self.session.auth_result(outcome);
                self.perform(a)
            }
            Action::SendMessage {
                index,
                top_lines,
                reply,
            } => {
                let mut out = reply.into_bytes();
                out.extend(dot_stuff(self.messages[index], top_lines));
                String::from_utf8(out).unwrap()
            }
            // The fake handshake always succeeds.
            Action::StartTls(s) => {
                self.session.tls_started();
                s
            }
            Action::Quit { delete, seen } => {
                let r = self.session.update_result(0);
                self.closed = true;
                format!("UPDATE delete={delete:?} seen={seen:?}\n{r}")
            }
            Action::Close(s) => {
                self.closed = true;
                s
            }
        }
    }

    fn run(&mut self, steps: &[(&str, Expect)]) {
        for (line, expect) in steps {
            assert!(!self.closed, "line {line:?} after close");
            let a = self.session.handle_line(line.as_bytes());
            let got = self.perform(a);
            match expect {
                Exact(e) => assert_eq!(got, *e, "after {line:?}"),
                Prefix(p) => assert!(got.starts_with(p), "after {line:?}: got {got:?}"),
            }
        }
    }
}

fn logged_in() -> FakeLoop {
    let mut f = FakeLoop::new(true);
    f.run(&[
        ("USER alice", Exact("+OK Send PASS\r\n")),
        ("PASS secret word", Prefix("+OK Logged in, 3 messages")),
    ]);
    f
}

#[test]
fn login_and_stat_list_uidl() {
    let mut f = logged_in();
    let total = MSG1.len() + MSG2.len() + MSG3.len();
    let stat = format!("+OK 3 {total}\r\n");
    let list = format!(
        "+OK 3 messages ({total} octets)\r\n1 {}\r\n2 {}\r\n3 {}\r\n.\r\n",
        MSG1.len(),
        MSG2.len(),
        MSG3.len()
    );
    let one = format!("+OK 2 {}\r\n", MSG2.len());
    let (stat, list, one): (&'static str, &'static str, &'static str) =
        (stat.leak(), list.leak(), one.leak());
    f.run(&[
        ("STAT", Exact(stat)),
        ("list", Exact(list)),
        ("LIST 2", Exact(one)),
        ("LIST 4", Prefix("-ERR No such message")),
        ("LIST 0", Prefix("-ERR No such message")),
        ("LIST x", Exact("-ERR Invalid number\r\n")),
        ("LIST -1", Exact("-ERR Invalid number\r\n")),
        (
            "UIDL",
            Exact("+OK Unique-ID listing follows\r\n1 uid1\r\n2 uid2\r\n3 uid3\r\n.\r\n"),
        ),
        ("UIDL 3", Exact("+OK 3 uid3\r\n")),
        ("NOOP", Exact("+OK \r\n")),
        ("USER bob", Prefix("-ERR")),
        ("XYZ", Exact("-ERR Unknown command\r\n")),
    ]);
}

#[test]
fn retr_and_top_stuff_dots() {
    let mut f = logged_in();
    f.run(&[
        (
            "RETR 2",
            Exact(
                "+OK 52 octets\r\nSubject: two\r\nX: y\r\n\r\n..dot line\r\n...two dots\r\n..\r\nlast\r\n.\r\n",
            ),
        ),
        ("TOP 2 0", Exact("+OK Top of message follows\r\nSubject: two\r\nX: y\r\n\r\n.\r\n")),
        (
            "TOP 3 2",
            Exact("+OK Top of message follows\r\nSubject: three\r\n\r\na\r\nb\r\n.\r\n"),
        ),
        (
            "TOP 3 99",
            Exact("+OK Top of message follows\r\nSubject: three\r\n\r\na\r\nb\r\nc\r\n.\r\n"),
        ),
        ("TOP 3", Prefix("-ERR Wrong number")),
        ("TOP 3 -1", Prefix("-ERR Invalid number")),
        ("RETR 9", Prefix("-ERR No such message")),
        ("RETR", Prefix("-ERR Wrong number")),
    ]);
    assert_eq!(MSG2.len(), 52);
    assert_eq!(f.session.counts().0, 1);
}

#[test]
fn dele_rset_quit() {
    let mut f = logged_in();
    f.run(&[
        ("DELE 1", Exact("+OK Message 1 deleted\r\n")),
        ("DELE 1", Exact("-ERR Message 1 already deleted\r\n")),
        ("RETR 1", Exact("-ERR Message 1 already deleted\r\n")),
        ("TOP 1 0", Exact("-ERR Message 1 already deleted\r\n")),
        ("LIST 1", Exact("-ERR Message 1 already deleted\r\n")),
        ("UIDL 1", Exact("-ERR Message 1 already deleted\r\n")),
        (
            "UIDL",
            Exact("+OK Unique-ID listing follows\r\n2 uid2\r\n3 uid3\r\n.\r\n"),
        ),
        ("STAT", Prefix("+OK 2 ")),
        ("RSET", Prefix("+OK Maildrop has 3 messages")),
        ("STAT", Prefix("+OK 3 ")),
        ("RETR 1", Prefix("+OK")),
        ("RETR 3", Prefix("+OK")),
        ("DELE 3", Prefix("+OK")),
        ("DELE 2", Prefix("+OK")),
        (
            "QUIT",
            Exact("UPDATE delete=[1, 2] seen=[0]\n+OK Bye (1 messages left)\r\n"),
        ),
    ]);
    assert_eq!(f.session.counts(), (2, 2));
    assert_eq!(f.session.state(), State::Closed);
    assert_eq!(f.session.user(), Some("alice"));
}

#[test]
fn pipelined_commands() {
    // The session is line-at-a-time, so a pipelined batch is just consecutive lines; replies
    // come back in order (RFC 2449 §6.6).
    let mut f = FakeLoop::new(true);
    f.run(&[
        ("CAPA", Prefix("+OK Capability list follows\r\n")),
        ("USER alice", Prefix("+OK")),
        ("PASS secret word", Prefix("+OK")),
        ("STAT", Prefix("+OK 3 ")),
        ("LIST 1", Prefix("+OK 1 ")),
        ("RETR 1", Prefix("+OK")),
        ("DELE 1", Prefix("+OK")),
        ("QUIT", Prefix("UPDATE delete=[0] seen=[]")),
    ]);
}

#[test]
fn bad_credentials_are_uniform_and_limited() {
    let mut f = FakeLoop::new(true);
    let bad = "-ERR [AUTH] Invalid user name or password\r\n";
    f.run(&[
        ("PASS x", Exact("-ERR USER first\r\n")),
        ("USER nobody", Exact("+OK Send PASS\r\n")),
        ("PASS secret word", Exact(bad)),
    ]);
    assert_eq!(f.session.user(), None);
    f.run(&[
        // After a failure, PASS needs USER again (RFC 1939 §7).
        ("PASS secret word", Exact("-ERR USER first\r\n")),
        ("USER alice", Exact("+OK Send PASS\r\n")),
        ("PASS wrong", Exact(bad)),
        ("STAT", Prefix("-ERR Not allowed before login")),
        (
            "APOP alice 0123456789abcdef",
            Exact("-ERR APOP not supported\r\n"),
        ),
        ("USER alice", Prefix("+OK")),
        (
            "PASS wrong",
            Exact("-ERR [AUTH] Invalid user name or password; closing\r\n"),
        ),
    ]);
    assert!(f.closed);
}

#[test]
fn auth_outcomes_have_response_codes() {
    for (o, want) in [
        (AuthOutcome::InUse, "-ERR [IN-USE] "),
        (AuthOutcome::TempFailure, "-ERR [SYS/TEMP] "),
        (AuthOutcome::PermFailure, "-ERR [SYS/PERM] "),
        (AuthOutcome::Throttled, "-ERR [AUTH] "),
    ] {
        let mut f = FakeLoop::new(true);
        f.outcome_override = Some(o);
        f.run(&[
            ("USER alice", Prefix("+OK")),
            ("PASS secret word", Prefix(want)),
        ]);
        assert_eq!(f.session.state(), State::Authorization);
        // A later attempt may succeed.
        f.run(&[
            ("USER alice", Prefix("+OK")),
            ("PASS secret word", Prefix("+OK")),
        ]);
    }
}

#[test]
fn plaintext_refused_without_tls() {
    let mut f = FakeLoop::new(false);
    f.run(&[
        (
            "USER alice",
            Prefix("-ERR [AUTH] Plain-text login is only allowed over TLS"),
        ),
        ("PASS secret word", Prefix("-ERR [AUTH] ")),
        (
            "AUTH PLAIN AGFsaWNlAHNlY3JldCB3b3Jk",
            Prefix("-ERR [AUTH] "),
        ),
        ("STLS", Exact("-ERR STLS not available\r\n")),
        ("QUIT", Exact("+OK Bye\r\n")),
    ]);
}

#[test]
fn capa_depends_on_state_and_flags() {
    let mut f = FakeLoop::new(false);
    let Action::Reply(c) = f.session.handle_line(b"CAPA") else {
        panic!()
    };
    assert!(!c.contains("USER\r\n") && !c.contains("SASL") && !c.contains("STLS"));
    assert!(c.contains("IMPLEMENTATION Mailroom\r\n") && c.ends_with("\r\n.\r\n"));
    for cap in [
        "TOP",
        "UIDL",
        "RESP-CODES",
        "AUTH-RESP-CODE",
        "PIPELINING",
        "EXPIRE NEVER",
    ] {
        assert!(c.contains(&format!("\r\n{cap}\r\n")), "{cap}");
    }

    let mut s = Session::new(SessionFlags {
        plaintext_login_allowed: true,
        tls_available: true,
        tls_active: false,
    });
    let Action::Reply(c) = s.handle_line(b"CAPA") else {
        panic!()
    };
    assert!(c.contains("\r\nUSER\r\n") && c.contains("\r\nSASL PLAIN\r\n"));
    assert!(c.contains("\r\nSTLS\r\n"));
    assert_eq!(
        s.handle_line(b"STLS"),
        Action::StartTls("+OK Begin TLS negotiation\r\n".into())
    );
    s.tls_started();
    let Action::Reply(c) = s.handle_line(b"CAPA") else {
        panic!()
    };
    assert!(!c.contains("STLS"));

    let mut f = logged_in();
    let Action::Reply(c) = f.session.handle_line(b"capa") else {
        panic!()
    };
    assert!(!c.contains("USER\r\n") && !c.contains("SASL"));
}

#[test]
fn auth_plain() {
    // "\0alice\0secret word"
    let good = "AGFsaWNlAHNlY3JldCB3b3Jk";
    let mut f = FakeLoop::new(true);
    f.run(&[
        ("AUTH", Exact("+OK\r\nPLAIN\r\n.\r\n")),
        ("AUTH LOGIN", Exact("-ERR Unsupported SASL mechanism\r\n")),
        ("AUTH PLAIN", Exact("+ \r\n")),
        ("*", Exact("-ERR Authentication cancelled\r\n")),
        ("AUTH PLAIN", Exact("+ \r\n")),
        ("not base64!", Exact("-ERR [AUTH] invalid base64\r\n")),
        ("AUTH PLAIN =", Prefix("-ERR [AUTH] malformed")),
        // authzid bob, authcid alice: refused.
        (
            "AUTH PLAIN Ym9iAGFsaWNlAHNlY3JldCB3b3Jk",
            Prefix("-ERR [AUTH] authorization"),
        ),
        (
            "AUTH PLAIN AGFsaWNlAHdyb25n",
            Exact("-ERR [AUTH] Invalid user name or password\r\n"),
        ),
        ("AUTH PLAIN", Exact("+ \r\n")),
        (good, Prefix("+OK Logged in")),
        ("AUTH PLAIN", Exact("-ERR Already logged in\r\n")),
    ]);
    let mut f = FakeLoop::new(true);
    f.run(&[(
        "auth plain AGFsaWNlAHNlY3JldCB3b3Jk",
        Prefix("+OK Logged in"),
    )]);
}

#[test]
fn sasl_line_may_exceed_command_limit() {
    let mut f = FakeLoop::new(true);
    f.run(&[("AUTH PLAIN", Exact("+ \r\n"))]);
    assert!(f.session.max_line_length() > MAX_COMMAND_LINE);
    f.run(&[("x", Prefix("-ERR [AUTH]"))]);
    assert_eq!(f.session.max_line_length(), MAX_COMMAND_LINE - 2);
}

#[test]
fn overlong_line_is_refused_and_session_continues() {
    let mut f = logged_in();
    let long: &'static str = format!("LIST {}", "1".repeat(300)).leak();
    f.run(&[
        (long, Exact("-ERR Command line too long\r\n")),
        ("STAT", Prefix("+OK 3 ")),
        ("", Exact("-ERR Unknown command\r\n")),
    ]);
}

#[test]
fn quit_without_changes_and_dropped_session() {
    let mut f = logged_in();
    f.run(&[(
        "QUIT",
        Exact("UPDATE delete=[] seen=[]\n+OK Bye (3 messages left)\r\n"),
    )]);
    // A session that is simply dropped never produces a Quit action: nothing to delete.
    let mut f = logged_in();
    f.run(&[("DELE 1", Prefix("+OK"))]);
    drop(f);
}

#[test]
fn send_failed_and_update_failure() {
    let mut f = logged_in();
    let a = f.session.handle_line(b"RETR 1");
    assert!(matches!(a, Action::SendMessage { index: 0, .. }));
    assert!(f.session.send_failed(0).starts_with("-ERR [SYS/TEMP]"));
    assert_eq!(f.session.counts().0, 0);
    f.session.handle_line(b"DELE 2");
    let Action::Quit { delete, .. } = f.session.handle_line(b"QUIT") else {
        panic!()
    };
    assert_eq!(delete, vec![1]);
    assert_eq!(
        f.session.update_result(1),
        "-ERR [SYS/TEMP] Some deleted messages not removed\r\n"
    );
    assert_eq!(f.session.counts(), (0, 0));
}

const STLS_OK: &str = "+OK Begin TLS negotiation\r\n";

fn capa(s: &mut Session) -> String {
    match s.handle_line(b"CAPA") {
        Action::Reply(c) => c,
        a => panic!("CAPA gave {a:?}"),
    }
}

fn has_cap(capa: &str, cap: &str) -> bool {
    capa.split("\r\n").any(|l| l == cap)
}

/// An untrusted client on a listener that offers STLS.
fn stls_offered() -> FakeLoop {
    FakeLoop::with_flags(SessionFlags {
        plaintext_login_allowed: false,
        tls_available: true,
        tls_active: false,
    })
}

#[test]
fn stls_offered_and_refused_by_state() {
    // Offered before login when TLS is available.
    let mut f = stls_offered();
    let c = capa(&mut f.session);
    assert!(has_cap(&c, "STLS"));
    assert!(!has_cap(&c, "USER") && !has_cap(&c, "SASL PLAIN"));

    // Not available on this listener.
    let mut f = FakeLoop::new(true);
    assert!(!has_cap(&capa(&mut f.session), "STLS"));
    f.run(&[("STLS", Exact("-ERR STLS not available\r\n"))]);

    // RFC 2595 §4: only in AUTHORIZATION; after login it is refused.
    let mut f = FakeLoop::with_flags(SessionFlags {
        plaintext_login_allowed: true,
        tls_available: true,
        tls_active: false,
    });
    f.run(&[
        ("USER alice", Prefix("+OK")),
        ("PASS secret word", Prefix("+OK Logged in")),
        ("STLS", Exact("-ERR Already logged in\r\n")),
        ("STAT", Prefix("+OK 3 ")),
    ]);
    assert!(!has_cap(&capa(&mut f.session), "STLS"));

    // Implicit TLS (pop3s): never offered, refused.
    let mut f = FakeLoop::with_flags(SessionFlags {
        plaintext_login_allowed: false,
        tls_available: false,
        tls_active: true,
    });
    let c = capa(&mut f.session);
    assert!(!has_cap(&c, "STLS"));
    assert!(has_cap(&c, "USER") && has_cap(&c, "SASL PLAIN"));
    f.run(&[
        ("STLS", Exact("-ERR TLS already active\r\n")),
        ("USER alice", Prefix("+OK")),
        ("PASS secret word", Prefix("+OK Logged in")),
    ]);
}

#[test]
fn stls_twice_is_refused() {
    let mut f = stls_offered();
    f.run(&[
        ("STLS", Exact(STLS_OK)),
        ("STLS", Exact("-ERR TLS already active\r\n")),
        ("stls", Exact("-ERR TLS already active\r\n")),
        ("NOOP", Exact("+OK \r\n")),
    ]);
    assert!(f.session.tls_active());
}

#[test]
fn no_lines_executed_while_tls_is_negotiated() {
    // If a buggy loop fed a line between StartTls and tls_started, it must not be executed.
    let mut s = Session::new(SessionFlags {
        plaintext_login_allowed: true,
        tls_available: true,
        tls_active: false,
    });
    assert_eq!(s.handle_line(b"STLS"), Action::StartTls(STLS_OK.into()));
    assert_eq!(s.state(), State::StartingTls);
    for line in [&b"CAPA"[..], b"USER alice", b"STLS", b"QUIT"] {
        assert_eq!(s.handle_line(line), Action::Reply("-ERR Busy\r\n".into()));
    }
    assert!(!s.tls_active());
    s.tls_started();
    assert_eq!(s.state(), State::Authorization);
    assert!(s.tls_active());
}

#[test]
fn tls_started_outside_stls_does_nothing() {
    let mut f = FakeLoop::new(false);
    f.session.tls_started();
    assert!(!f.session.tls_active());
    f.run(&[("USER alice", Prefix("-ERR [AUTH] Plain-text login"))]);
}

#[test]
fn capa_before_and_after_tls() {
    let mut f = stls_offered();
    let before = capa(&mut f.session);
    f.run(&[("STLS", Exact(STLS_OK))]);
    let after = capa(&mut f.session);
    assert!(has_cap(&before, "STLS") && !has_cap(&after, "STLS"));
    assert!(!has_cap(&before, "USER") && has_cap(&after, "USER"));
    assert!(!has_cap(&before, "SASL PLAIN") && has_cap(&after, "SASL PLAIN"));
    for cap in ["TOP", "UIDL", "RESP-CODES", "PIPELINING"] {
        assert!(has_cap(&before, cap) && has_cap(&after, cap), "{cap}");
    }
    // Logged in over TLS: no login capabilities and no STLS.
    f.run(&[
        ("USER alice", Prefix("+OK")),
        ("PASS secret word", Prefix("+OK Logged in")),
    ]);
    let c = capa(&mut f.session);
    assert!(!has_cap(&c, "STLS") && !has_cap(&c, "USER") && !has_cap(&c, "SASL PLAIN"));
}

#[test]
fn plaintext_refused_untrusted_then_allowed_after_tls() {
    let mut f = stls_offered();
    f.run(&[
        ("USER alice", Prefix("-ERR [AUTH] Plain-text login")),
        ("PASS secret word", Prefix("-ERR [AUTH] Plain-text login")),
        (
            "AUTH PLAIN AGFsaWNlAHNlY3JldCB3b3Jk",
            Prefix("-ERR [AUTH] Plain-text login"),
        ),
        ("AUTH PLAIN", Prefix("-ERR [AUTH] Plain-text login")),
        ("STLS", Exact(STLS_OK)),
        ("USER alice", Exact("+OK Send PASS\r\n")),
        ("PASS secret word", Prefix("+OK Logged in, 3 messages")),
        ("STAT", Prefix("+OK 3 ")),
    ]);
    // AUTH PLAIN is allowed over TLS too.
    let mut f = stls_offered();
    f.run(&[
        ("STLS", Exact(STLS_OK)),
        (
            "AUTH PLAIN AGFsaWNlAHNlY3JldCB3b3Jk",
            Prefix("+OK Logged in"),
        ),
    ]);
}

#[test]
fn state_is_reset_after_tls() {
    // A trusted client gives USER in clear text, then STLS: the USER is forgotten.
    let mut f = FakeLoop::with_flags(SessionFlags {
        plaintext_login_allowed: true,
        tls_available: true,
        tls_active: false,
    });
    f.run(&[
        ("USER alice", Exact("+OK Send PASS\r\n")),
        ("STLS", Exact(STLS_OK)),
        ("PASS secret word", Exact("-ERR USER first\r\n")),
        ("USER alice", Exact("+OK Send PASS\r\n")),
        ("PASS secret word", Prefix("+OK Logged in")),
    ]);

    // A SASL exchange cannot be open when STLS is read (the next line is the SASL response),
    // and a cancelled one leaves nothing behind.
    let mut f = FakeLoop::with_flags(SessionFlags {
        plaintext_login_allowed: true,
        tls_available: true,
        tls_active: false,
    });
    f.run(&[
        ("AUTH PLAIN", Exact("+ \r\n")),
        ("STLS", Prefix("-ERR [AUTH]")),
        ("STLS", Exact(STLS_OK)),
        ("CAPA", Prefix("+OK Capability")),
        ("AUTH PLAIN", Exact("+ \r\n")),
        ("AGFsaWNlAHNlY3JldCB3b3Jk", Prefix("+OK Logged in")),
    ]);
    assert_eq!(f.session.state(), State::Transaction);
}
