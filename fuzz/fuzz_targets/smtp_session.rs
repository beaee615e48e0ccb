//! The SMTP server connection (`proto::smtp::Connection`: framing, command parser from
//! smtp-proto, session state machine, DATA and BDAT readers, AUTH, STARTTLS) on arbitrary
//! client bytes, delivered in arbitrary chunks, for each service.
//!
//! Input: byte 0 = settings (service, TLS available, trusted client, AUTH verdict, commit
//! result), byte 1 = how the rest is cut into chunks, the rest = what the client sends.
//!
//! Checks: no panic; every event is answered as the network loop would; the output is only
//! well-formed reply lines; a committed envelope is sane (recipients, no relaying for an
//! untrusted and unauthenticated client, size matches the message, submission only after
//! AUTH); heap use stays bounded by the input size.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use mailroom_fuzz::{check_smtp_replies, peak, reset_peak, CountingAlloc, Splitter};
use proto::smtp::address;
use proto::smtp::{
    CommitError, Connection, Event, Peer, Policy, RcptVerdict, Service, Session, SessionConfig,
    TlsInfo,
};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

const MAX_SIZE: u64 = 4096;
const MAX_RCPTS: usize = 5;
const ACCOUNT: &str = "user@example.test";

/// Local domain `example.test`; a few local parts give the other verdicts.
struct TestPolicy;

impl Policy for TestPolicy {
    fn check_rcpt(&self, address: &str, _sender: &str, relay_allowed: bool) -> RcptVerdict {
        if address.is_empty() {
            return RcptVerdict::Accept("postmaster@example.test".into());
        }
        let Some((local, domain)) = address::split(address) else {
            return RcptVerdict::UnknownUser;
        };
        if domain.eq_ignore_ascii_case("example.test") {
            match local {
                "nobody" => RcptVerdict::UnknownUser,
                "temp" => RcptVerdict::TempFail,
                "loop" => RcptVerdict::Loop,
                _ => RcptVerdict::Accept(address.to_string()),
            }
        } else if relay_allowed {
            RcptVerdict::Accept(address.to_string())
        } else {
            RcptVerdict::RelayDenied
        }
    }

    fn may_send_as(&self, user: &str, address: &str) -> bool {
        address.eq_ignore_ascii_case(user)
            || address::split(address).is_some_and(|(_, d)| d.eq_ignore_ascii_case("example.test"))
    }
}

fn tls() -> TlsInfo {
    TlsInfo {
        version: "TLSv1.3".into(),
        cipher: "TLS13_AES_256_GCM_SHA384".into(),
    }
}

fuzz_target!(|input: &[u8]| {
    if input.len() < 2 {
        return;
    }
    let (settings, split, data) = (input[0], input[1], &input[2..]);
    let service = match settings & 3 {
        1 => Service::Submission,
        2 => Service::Submissions,
        _ => Service::Mx,
    };
    let tls_available = settings & 4 != 0;
    let trusted = settings & 8 != 0;
    let auth_ok = settings & 16 != 0;
    let commit_result = (settings >> 5) & 3;

    let baseline = reset_peak();
    let config = Arc::new(SessionConfig {
        max_message_size: MAX_SIZE,
        max_recipients: MAX_RCPTS,
        tls_available,
        // Small, so the fuzzer reaches the streaming (spill) path and the header limits.
        max_header_size: 2048,
        max_received_headers: 5,
        max_errors: 20,
        ..SessionConfig::new("mx.example.test", service)
    });
    let peer = Peer {
        ip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        trusted,
    };
    let mut session = Session::new(config, peer);
    if service == Service::Submissions {
        session.tls_started(tls());
    }
    let mut conn = Connection::new(session);
    let greeting = conn.take_output();
    assert!(greeting.starts_with(b"220 "), "greeting {greeting:?}");
    check_smtp_replies(&greeting);

    let chunks = if split == 0xff {
        vec![data]
    } else {
        Splitter::new(split as u64, (split as usize & 0x3f) + 1).split(data)
    };
    let policy = TestPolicy;
    let mut authenticated = false;
    let mut commits = 0usize;
    let mut spilled = 0u64;
    'feed: for chunk in chunks {
        conn.receive(chunk);
        loop {
            let event = conn.advance(&policy);
            let out = conn.take_output();
            check_smtp_replies(&out);
            match event {
                Event::NeedInput => break,
                Event::Close => {
                    assert!(conn.is_closed());
                    break 'feed;
                }
                Event::StartTls => {
                    // The last reply before the handshake is the 220 of STARTTLS.
                    let body = out.strip_suffix(b"\r\n").expect("STARTTLS reply");
                    let last = body.rsplit(|&b| b == b'\n').next().unwrap_or(&[]);
                    assert!(last.starts_with(b"220 "), "STARTTLS answered {out:?}");
                    assert!(service != Service::Submissions, "STARTTLS on implicit TLS");
                    authenticated = false;
                    conn.tls_started(tls());
                }
                Event::Authenticate { user, password } => {
                    assert!(service.is_submission(), "AUTH on port 25");
                    assert!(!user.is_empty());
                    let _ = password;
                    authenticated = auth_ok;
                    conn.auth_result(auth_ok.then(|| ACCOUNT.to_string()));
                }
                Event::Spill(bytes) => spilled += bytes.len() as u64,
                Event::Abandon => spilled = 0,
                Event::Commit { envelope, message } => {
                    let spilled = std::mem::take(&mut spilled);
                    commits += 1;
                    assert!(!envelope.recipients.is_empty(), "commit without recipients");
                    assert!(envelope.recipients.len() <= MAX_RCPTS);
                    assert_eq!(envelope.size, spilled + message.len() as u64, "size vs message");
                    assert!(envelope.size <= MAX_SIZE, "message over the size limit");
                    if !envelope.sender.is_empty() {
                        assert_eq!(address::check(&envelope.sender), Ok(()));
                    }
                    for r in &envelope.recipients {
                        assert_eq!(address::check(r), Ok(()), "recipient {r:?}");
                        if !trusted && !authenticated {
                            let (_, d) = address::split(r).expect("split");
                            assert!(d.eq_ignore_ascii_case("example.test"), "open relay: {r:?}");
                        }
                    }
                    for (i, a) in envelope.recipients.iter().enumerate() {
                        for b in &envelope.recipients[..i] {
                            assert!(!a.eq_ignore_ascii_case(b), "duplicate recipient {a:?}");
                        }
                    }
                    if service.is_submission() {
                        assert!(authenticated, "submission without AUTH");
                    }
                    let headers = conn.trace_headers("0123456789ABCDEF", 1_700_000_000);
                    assert!(headers.starts_with("Received: "));
                    assert!(headers.ends_with("\r\n"));
                    for line in headers.split("\r\n") {
                        assert!(
                            !line.contains(['\r', '\n']),
                            "bare line end in trace header"
                        );
                    }
                    let result = match commit_result {
                        1 => Err(CommitError::NoSpace),
                        2 => Err(CommitError::Failed),
                        _ => Ok("0123456789ABCDEF"),
                    };
                    conn.committed(result);
                    check_smtp_replies(&conn.take_output());
                }
            }
        }
    }
    // Heap: the framing keeps at most one line (or chunk) of input, the message is capped by
    // the size limit, and replies are taken as they come.
    let used = peak().saturating_sub(baseline);
    assert!(
        used <= 256 * 1024 + 8 * input.len(),
        "{used} bytes of heap for {} bytes of input",
        input.len()
    );
    let _ = commits;
});
