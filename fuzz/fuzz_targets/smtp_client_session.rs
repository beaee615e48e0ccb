//! The relay's SMTP client state machine (`proto::smtp::client::Session` and its transaction)
//! driven by a hostile server: arbitrary reply bytes, cut into reads at arbitrary points, and a
//! driver that does what `mta::relay::conn` does (TLS "succeeds" at once, the body is "sent").
//!
//! Input: byte 0 = settings (STARTTLS wanted, AUTH configured, 8-bit message, number of
//! recipients, whether a second transaction is begun after a reusable end), byte 1 = read size
//! step, the rest = the server's bytes.
//!
//! Checks: no panic and no endless loop (a bounded number of polls); every line we write ends
//! in CRLF and holds no other CR or LF; AUTH is never written before TLS; nothing is written
//! behind STARTTLS before its reply is read; `End(Done)` has one outcome per recipient; a
//! message is only sent (DATA section or chunk) after at least one RCPT was written.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::smtp::client::{Action, Hello, MessageTraits, Session, TxEnd};

fuzz_target!(|input: &[u8]| {
    let Some((&settings, rest)) = input.split_first() else {
        return;
    };
    let Some((&step, mut server)) = rest.split_first() else {
        return;
    };
    let step = usize::from(step % 64) + 1;
    let hello = Hello {
        name: "mx.example.test".into(),
        starttls: settings & 1 != 0,
        auth: (settings & 2 != 0).then(|| ("user".to_string(), "secret".to_string())),
        require_tls: settings & 0x40 != 0,
        plaintext_auth: false,
    };
    let n_rcpt = usize::from((settings >> 2) & 3) + 1;
    let recipients: Vec<String> = (0..n_rcpt).map(|i| format!("r{i}@remote.test")).collect();
    let traits = MessageTraits {
        smtputf8: false,
        eight_bit: settings & 0x10 != 0,
        size: 1234,
        // RFC 8689: a REQUIRETLS message goes only to a server offering it.
        require_tls: settings & 0x80 != 0,
    };
    let second = settings & 0x20 != 0;

    let mut s = Session::new(hello.clone());
    let mut tls = false;
    let mut began = 0;
    let mut rcpt_written = false;
    let mut awaiting_handshake = false; // STARTTLS written, its reply not yet read
    for _ in 0..10_000 {
        let a = s.poll();
        match a {
            Action::Send(bytes, _) => {
                assert!(!awaiting_handshake, "bytes written behind STARTTLS before its reply");
                assert!(bytes.ends_with(b"\r\n"), "{bytes:?}");
                for line in bytes[..bytes.len() - 2].split(|&b| b == b'\n') {
                    let line = line.strip_suffix(b"\r").unwrap_or(line);
                    assert!(!line.contains(&b'\r'), "bare CR in {bytes:?}");
                }
                let text = String::from_utf8_lossy(&bytes).to_ascii_uppercase();
                if text.contains("AUTH ") {
                    assert!(tls, "AUTH without TLS");
                }
                if hello.require_tls && !tls {
                    assert!(
                        text.starts_with("EHLO") || text.starts_with("HELO") || text.starts_with("STARTTLS") || text.starts_with("QUIT"),
                        "{text:?} sent in plaintext when TLS is required"
                    );
                }
                if text.contains("RCPT TO:") {
                    rcpt_written = true;
                }
                if text.starts_with("STARTTLS") {
                    awaiting_handshake = true;
                }
            }
            Action::Receive(_) => {
                awaiting_handshake = false;
                if server.is_empty() {
                    s.failed("connection closed".into());
                    continue;
                }
                let n = step.min(server.len());
                s.received(&server[..n]);
                server = &server[n..];
            }
            Action::StartTls => {
                assert!(hello.starttls);
                tls = true;
                s.tls_started();
            }
            Action::SendData { empty } => {
                assert!(rcpt_written || empty, "message sent before any RCPT");
                s.body_sent();
            }
            Action::SendChunk => {
                assert!(rcpt_written, "chunk sent before any RCPT");
                s.chunk_sent(true);
            }
            Action::Note(_) => {}
            Action::Ready => {
                if began == 0 || (second && began == 1) {
                    began += 1;
                    rcpt_written = false;
                    s.begin("sender@example.test", &recipients, &traits);
                } else {
                    s.quit();
                }
            }
            Action::End(end) => {
                if let TxEnd::Done { outcomes, .. } = &end {
                    assert_eq!(outcomes.len(), recipients.len());
                }
                match end {
                    TxEnd::Done { reusable: true, .. } => s.reset(),
                    TxEnd::Abort { .. } => return,
                    _ => s.quit(),
                }
            }
            Action::Failed(_) | Action::Closed => return,
        }
    }
    panic!("no end after 10,000 polls");
});
