//! Test helper: runs a [`Session`] against a scripted server, OpenSMTPD-regress style. A script
//! is lines `S: text` (the server sends `text` CRLF; consecutive lines arrive together, as
//! pipelined replies do) and `C: text` (the client must have written `text` CRLF by now).

use super::{Action, Hello, MessageTraits, Session, Timer};

/// Runs `script` and returns the first action after it that is not a write (the client must
/// not write anything the script does not show). `Note`s are skipped; [`talk_noting`] keeps
/// them.
pub(super) fn talk(session: &mut Session, script: &str) -> Action {
    talk_noting(session, script).0
}

/// [`talk`], with the notes seen on the way.
pub(super) fn talk_noting(session: &mut Session, script: &str) -> (Action, Vec<String>) {
    let mut written: Vec<u8> = Vec::new();
    let mut notes = Vec::new();
    for line in script.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(server) = line.strip_prefix("S: ") {
            session.received(format!("{server}\r\n").as_bytes());
        } else if let Some(client) = line.strip_prefix("C: ") {
            while !written.windows(2).any(|w| w == b"\r\n") {
                match session.poll() {
                    Action::Send(bytes, _) => written.extend(bytes),
                    Action::Note(note) => notes.push(note),
                    other => panic!("expected the client to send {client:?}, got {other:?}"),
                }
            }
            let end = written.windows(2).position(|w| w == b"\r\n").unwrap() + 2;
            let got: Vec<u8> = written.drain(..end).collect();
            assert_eq!(String::from_utf8_lossy(&got), format!("{client}\r\n"));
        } else {
            panic!("bad script line {line:?}");
        }
    }
    assert!(
        written.is_empty(),
        "client wrote more: {:?}",
        String::from_utf8_lossy(&written)
    );
    loop {
        match session.poll() {
            Action::Send(bytes, _) => {
                panic!("unexpected write {:?}", String::from_utf8_lossy(&bytes))
            }
            Action::Note(note) => notes.push(note),
            other => return (other, notes),
        }
    }
}

pub(super) fn hello() -> Hello {
    Hello {
        name: "relay.test".into(),
        starttls: true,
        ..Hello::default()
    }
}

/// A session set up in plaintext with these EHLO keywords.
pub(super) fn ready(keywords: &[&str]) -> Session {
    let mut session = Session::new(Hello {
        starttls: false,
        ..hello()
    });
    let mut script = String::from("S: 220 mx.test ESMTP\nC: EHLO relay.test\n");
    script.push_str(&ehlo_reply(keywords));
    assert_eq!(talk(&mut session, &script), Action::Ready);
    session
}

/// The script lines of a 250 EHLO reply offering `keywords`.
pub(super) fn ehlo_reply(keywords: &[&str]) -> String {
    let mut lines = vec!["mx.test greets relay.test"];
    lines.extend_from_slice(keywords);
    let last = lines.len() - 1;
    let mut script = String::new();
    for (i, line) in lines.iter().enumerate() {
        let sep = if i == last { ' ' } else { '-' };
        script.push_str(&format!("S: 250{sep}{line}\n"));
    }
    script
}

/// The traits of a small ASCII message.
pub(super) fn small() -> MessageTraits {
    MessageTraits {
        smtputf8: false,
        eight_bit: false,
        size: 100,
        require_tls: false,
    }
}

pub(super) fn rcpts(list: &[&str]) -> Vec<String> {
    list.iter().map(|r| r.to_string()).collect()
}

/// The timer of the wait `session` is in (panics if it is not waiting for bytes).
pub(super) fn waiting(session: &mut Session) -> Timer {
    match session.poll() {
        Action::Receive(timer) => timer,
        other => panic!("expected a wait, got {other:?}"),
    }
}
