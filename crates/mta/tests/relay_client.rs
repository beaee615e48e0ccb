//! Integration tests of the relay client against a scripted fake SMTP server on 127.0.0.1:0.
//!
//! Covers: per-recipient delivered/deferred/failed, the PIPELINING batch, STARTTLS upgrade (a
//! self-signed rcgen certificate, ring provider) and the plaintext retry after a failed
//! handshake, EHLO->HELO fallback, SIZE pre-flight, connection reuse with RSET, moving on to the
//! next host after a refused connection or a 4xx, smarthost AUTH (TLS required), and a server
//! that stops reading during DATA (deferred by the write timeout, under paused time), and
//! CHUNKING: BDAT chunks (pipelined, exact bytes, LAST on the last; a refused chunk stops the
//! sending) from a message streamed out of a real spool file, DATA with dot-stuffing without it. DNS
//! routing is unit-tested in `relay::mx`; here hosts are given to `deliver_to_hosts`.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mta::relay::{Destination, RcptOutcome, RcptResult, Relay, RelayConfig, Timeouts};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

#[derive(Clone)]
enum Tls {
    Off,
    On(Arc<rustls::ServerConfig>),
    /// Says 220 to STARTTLS, then sends garbage instead of a handshake.
    Broken,
    /// Sends a forged reply right behind the 220 to STARTTLS (CVE-2011-0411 class).
    Inject,
}

type RcptFn = Arc<dyn Fn(&str) -> String + Send + Sync>;

#[derive(Clone)]
struct Script {
    greeting: String,
    caps: Vec<String>,
    ehlo_reply: Option<String>,
    tls: Tls,
    mail_reply: String,
    rcpt_reply: RcptFn,
    end_reply: String,
    /// Close the connection right after the reply to the final dot.
    hangup_after_data: bool,
    /// After `354`, never read again (and never close).
    stall_after_data: bool,
    /// BDAT: replies are held back until this many chunks arrived (or the LAST one), so a
    /// client that waits for each reply before the next chunk hangs.
    bdat_hold: usize,
    /// BDAT: the chunk (counted from 0) that gets `552 5.3.4`; later ones get `503`.
    bdat_refuse: Option<usize>,
}

impl Default for Script {
    fn default() -> Script {
        Script {
            greeting: "220 fake.test ESMTP".into(),
            caps: vec!["8BITMIME".into()],
            ehlo_reply: None,
            tls: Tls::Off,
            mail_reply: "250 2.1.0 Ok".into(),
            rcpt_reply: Arc::new(|_| "250 2.1.5 Ok".into()),
            end_reply: "250 2.0.0 Ok: queued as ABC".into(),
            hangup_after_data: false,
            stall_after_data: false,
            bdat_hold: 0,
            bdat_refuse: None,
        }
    }
}

#[derive(Clone, Default)]
struct Record {
    /// Commands received, `[tls]` prefixed after STARTTLS; `<conn N>` at each new connection.
    log: Arc<Mutex<Vec<String>>>,
    connections: Arc<AtomicUsize>,
    messages: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Record {
    fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }
    fn push(&self, s: String) {
        self.log.lock().unwrap().push(s);
    }
}

async fn fake(script: Script) -> (SocketAddr, Record) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let record = Record::default();
    let rec = record.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let n = rec.connections.fetch_add(1, Ordering::SeqCst) + 1;
            rec.push(format!("<conn {n}>"));
            let (script, rec) = (script.clone(), rec.clone());
            tokio::spawn(async move {
                let mut tcp = tcp;
                let line = format!("{}\r\n", script.greeting);
                if tcp.write_all(line.as_bytes()).await.is_err()
                    || !script.greeting.starts_with("220")
                {
                    return;
                }
                let Some(tcp) = session(tcp, &script, &rec, false).await else {
                    return;
                };
                match &script.tls {
                    Tls::On(config) => {
                        let acceptor = tokio_rustls::TlsAcceptor::from(config.clone());
                        if let Ok(tls) = acceptor.accept(tcp).await {
                            session(tls, &script, &rec, true).await;
                        }
                    }
                    Tls::Broken => {
                        let mut tcp = tcp;
                        let mut hello = [0u8; 512];
                        let _ = tcp.read(&mut hello).await;
                        let _ = tcp.write_all(b"this is not a TLS server hello\r\n").await;
                    }
                    Tls::Off | Tls::Inject => {}
                }
            });
        }
    });
    (addr, record)
}

/// Runs commands until QUIT/EOF (returns None) or STARTTLS (returns the stream to upgrade).
async fn session<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    script: &Script,
    rec: &Record,
    tls: bool,
) -> Option<S> {
    let mut io = BufReader::new(stream);
    let tag = if tls { "[tls] " } else { "" };
    // BDAT state: the message so far, chunks seen, replies held back.
    let (mut chunks, mut chunk_no, mut held) = (Vec::new(), 0usize, Vec::<String>::new());
    loop {
        let mut line = String::new();
        if io.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        let cmd = line.trim_end().to_string();
        let upper = cmd.to_ascii_uppercase();
        // For the pipelining test: what else had already arrived with this command.
        let pending = String::from_utf8_lossy(io.buffer()).to_string();
        if upper.starts_with("MAIL") && pending.contains("DATA\r\n") {
            rec.push(format!("{tag}{cmd} +pipelined"));
        } else {
            rec.push(format!("{tag}{cmd}"));
        }
        let reply = if upper.starts_with("EHLO") {
            if let Some(r) = &script.ehlo_reply {
                r.clone()
            } else {
                let mut caps = script.caps.clone();
                if !matches!(script.tls, Tls::Off) && !tls {
                    caps.push("STARTTLS".into());
                }
                let mut r = "250-fake.test".to_string();
                for c in caps {
                    r.push_str(&format!("\r\n250-{c}"));
                }
                r.push_str("\r\n250 HELP");
                r
            }
        } else if upper.starts_with("HELO") {
            "250 fake.test".into()
        } else if upper == "STARTTLS" && matches!(script.tls, Tls::Inject) {
            let forged = b"220 2.0.0 go ahead\r\n250-fake.test\r\n250 AUTH PLAIN\r\n";
            io.get_mut().write_all(forged).await.ok()?;
            continue;
        } else if upper == "STARTTLS" {
            io.get_mut()
                .write_all(b"220 2.0.0 go ahead\r\n")
                .await
                .ok()?;
            return Some(io.into_inner());
        } else if upper.starts_with("AUTH PLAIN") {
            "235 2.7.0 ok".into()
        } else if upper.starts_with("MAIL") {
            script.mail_reply.clone()
        } else if upper.starts_with("RCPT") {
            (script.rcpt_reply)(&cmd)
        } else if upper == "DATA" {
            io.get_mut().write_all(b"354 go\r\n").await.ok()?;
            if script.stall_after_data {
                std::future::pending::<()>().await;
            }
            let mut body = Vec::new();
            loop {
                let mut l = Vec::new();
                if io.read_until(b'\n', &mut l).await.ok()? == 0 {
                    return None;
                }
                if l == b".\r\n" {
                    break;
                }
                body.extend_from_slice(&l);
            }
            rec.messages.lock().unwrap().push(body);
            if script.hangup_after_data {
                let reply = format!("{}\r\n", script.end_reply);
                let _ = io.get_mut().write_all(reply.as_bytes()).await;
                return None;
            }
            script.end_reply.clone()
        } else if upper.starts_with("BDAT ") {
            let mut words = upper.split(' ').skip(1);
            let n: usize = words.next()?.parse().ok()?;
            let last = words.next() == Some("LAST");
            let mut octets = vec![0u8; n];
            io.read_exact(&mut octets).await.ok()?;
            chunks.extend_from_slice(&octets);
            let reply = match script.bdat_refuse {
                Some(k) if chunk_no == k => "552 5.3.4 message too big".to_string(),
                Some(k) if chunk_no > k => "503 5.5.1 transaction failed".to_string(),
                _ if last => script.end_reply.clone(),
                _ => format!("250 2.0.0 {n} octets"),
            };
            chunk_no += 1;
            if last {
                rec.messages
                    .lock()
                    .unwrap()
                    .push(std::mem::take(&mut chunks));
            }
            held.push(reply);
            if held.len() < script.bdat_hold && !last {
                continue;
            }
            std::mem::take(&mut held).join("\r\n")
        } else if upper == "RSET" {
            chunks.clear();
            chunk_no = 0;
            "250 2.0.0 Ok".into()
        } else if upper == "QUIT" {
            let _ = io.get_mut().write_all(b"221 2.0.0 Bye\r\n").await;
            return None;
        } else {
            "502 5.5.2 unknown".into()
        };
        io.get_mut()
            .write_all(format!("{reply}\r\n").as_bytes())
            .await
            .ok()?;
    }
}

fn tls_config() -> Arc<rustls::ServerConfig> {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert: CertificateDer<'static> = ck.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    Arc::new(config)
}

fn config() -> RelayConfig {
    RelayConfig {
        hostname: "relay.test".into(),
        smarthost: None,
        smarthost_auth: None,
        smarthost_tls: mta::relay::SmarthostTls::Opportunistic,
        ca_certificates: Vec::new(),
        remote_port: 25,
        // Unused by deliver_to_hosts; no system resolver needed.
        dns_servers: vec!["127.0.0.1:9".parse().unwrap()],
        per_destination_limit: 2,
        local_addresses: vec![],
        timeouts: Timeouts {
            connect: Duration::from_secs(5),
            ..Timeouts::default()
        },
        tls_policy: Default::default(),
    }
}

fn dest(addr: SocketAddr) -> Destination {
    Destination {
        host: "mx.example.test".into(),
        addr,
    }
}

fn rcpts(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

const MESSAGE: &[u8] = b"Subject: hi\r\n\r\n.leading dot\r\nbare\nlf\r\n";

async fn send(relay: &Relay, hosts: &[Destination], to: &[&str]) -> Vec<RcptOutcome> {
    tokio::time::timeout(
        Duration::from_secs(20),
        relay.deliver_to_hosts("example.test", hosts, "a@sender.test", &rcpts(to), MESSAGE),
    )
    .await
    .expect("delivery hangs")
}

fn delivered(o: &RcptOutcome) -> bool {
    matches!(o.result, RcptResult::Delivered { .. })
}

#[tokio::test]
async fn per_recipient_outcomes_without_pipelining() {
    let (addr, rec) = fake(Script {
        rcpt_reply: Arc::new(|cmd: &str| {
            if cmd.contains("later") {
                "450 4.2.1 try later".into()
            } else if cmd.contains("nobody") {
                "550 5.1.1 no such user".into()
            } else {
                "250 2.1.5 Ok".into()
            }
        }),
        ..Script::default()
    })
    .await;
    let relay = Relay::new(config()).unwrap();
    let out = send(
        &relay,
        &[dest(addr)],
        &[
            "ok@example.test",
            "later@example.test",
            "nobody@example.test",
        ],
    )
    .await;
    assert_eq!(out.len(), 3);
    assert_eq!(
        out[0].result,
        RcptResult::Delivered {
            detail: "250 2.0.0 Ok: queued as ABC".into()
        }
    );
    assert_eq!(
        out[1].result,
        RcptResult::Deferred {
            next_attempt: None,
            reply: "450 4.2.1 try later".into()
        }
    );
    assert_eq!(
        out[2].result,
        RcptResult::Failed {
            remote_mta: None,
            status: "5.1.1".into(),
            reply: "550 5.1.1 no such user".into()
        }
    );
    assert_eq!(
        out[0].mx.as_deref(),
        Some(format!("mx.example.test[127.0.0.1]:{}", addr.port()).as_str())
    );
    assert!(!out[0].tls);
    let log = rec.log();
    assert_eq!(log[1], "EHLO relay.test");
    // 8BITMIME offered but the message is 7-bit; no SIZE offered: no parameters.
    assert_eq!(log[2], "MAIL FROM:<a@sender.test>");
    assert_eq!(log[6], "DATA");
    // Dot-stuffed, bare LF turned into CRLF.
    let msgs = rec.messages.lock().unwrap().clone();
    assert_eq!(
        msgs,
        vec![b"Subject: hi\r\n\r\n..leading dot\r\nbare\r\nlf\r\n".to_vec()]
    );
}

#[tokio::test]
async fn pipelining_sends_one_batch() {
    let (addr, rec) = fake(Script {
        caps: vec!["PIPELINING".into(), "SIZE 100000".into(), "8BITMIME".into()],
        rcpt_reply: Arc::new(|cmd: &str| {
            if cmd.contains("nobody") {
                "550 5.1.1 no such user".into()
            } else {
                "250 2.1.5 Ok".into()
            }
        }),
        ..Script::default()
    })
    .await;
    let relay = Relay::new(config()).unwrap();
    let out = send(
        &relay,
        &[dest(addr)],
        &["x@example.test", "nobody@example.test"],
    )
    .await;
    assert!(delivered(&out[0]));
    assert!(matches!(&out[1].result, RcptResult::Failed { status, .. } if status == "5.1.1"));
    let log = rec.log();
    let mail = log.iter().find(|l| l.starts_with("MAIL")).unwrap();
    assert!(mail.ends_with("+pipelined"), "{log:?}");
    assert!(
        mail.contains(&format!(" SIZE={}", MESSAGE.len() + 1)),
        "{mail}"
    );
}

#[tokio::test]
async fn all_recipients_refused_sends_no_data() {
    let (addr, rec) = fake(Script {
        rcpt_reply: Arc::new(|_| "550 5.1.1 no".into()),
        ..Script::default()
    })
    .await;
    let relay = Relay::new(config()).unwrap();
    let out = send(&relay, &[dest(addr)], &["a@example.test", "b@example.test"]).await;
    assert!(out.iter().all(|o| matches!(
        o.result,
        RcptResult::Failed {
            remote_mta: None,
            ..
        }
    )));
    assert!(!rec.log().iter().any(|l| l == "DATA"));
}

#[tokio::test]
async fn starttls_upgrade() {
    let (addr, rec) = fake(Script {
        tls: Tls::On(tls_config()),
        ..Script::default()
    })
    .await;
    let relay = Relay::new(config()).unwrap();
    let out = send(&relay, &[dest(addr)], &["x@example.test"]).await;
    assert!(delivered(&out[0]), "{out:?}");
    assert!(out[0].tls);
    let log = rec.log();
    assert_eq!(
        &log[1..4],
        ["EHLO relay.test", "STARTTLS", "[tls] EHLO relay.test"]
    );
    assert!(log.iter().any(|l| l.starts_with("[tls] MAIL FROM")));
    assert_eq!(rec.connections.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn failed_handshake_retries_in_plaintext() {
    let (addr, rec) = fake(Script {
        tls: Tls::Broken,
        ..Script::default()
    })
    .await;
    let relay = Relay::new(config()).unwrap();
    let out = send(&relay, &[dest(addr)], &["x@example.test"]).await;
    assert!(delivered(&out[0]), "{out:?}");
    assert!(!out[0].tls);
    assert_eq!(rec.connections.load(Ordering::SeqCst), 2);
    let log = rec.log();
    assert_eq!(
        log.iter().filter(|l| *l == "STARTTLS").count(),
        1,
        "{log:?}"
    );
}

#[tokio::test]
async fn data_behind_starttls_reply_is_refused() {
    let (addr, rec) = fake(Script {
        tls: Tls::Inject,
        ..Script::default()
    })
    .await;
    let relay = Relay::new(config()).unwrap();
    let out = send(&relay, &[dest(addr)], &["x@example.test"]).await;
    match &out[0].result {
        RcptResult::Deferred { reply, .. } => assert!(reply.contains("injection"), "{reply}"),
        other => panic!("{other:?}"),
    }
    assert!(!rec.log().iter().any(|l| l.starts_with("MAIL")));
}

#[tokio::test]
async fn helo_when_ehlo_is_refused() {
    let (addr, rec) = fake(Script {
        ehlo_reply: Some("502 5.5.2 what".into()),
        ..Script::default()
    })
    .await;
    let relay = Relay::new(config()).unwrap();
    let out = send(&relay, &[dest(addr)], &["x@example.test"]).await;
    assert!(delivered(&out[0]));
    assert_eq!(rec.log()[2], "HELO relay.test");
}

#[tokio::test]
async fn size_preflight_fails_without_sending() {
    let (addr, rec) = fake(Script {
        caps: vec!["SIZE 10".into()],
        ..Script::default()
    })
    .await;
    let relay = Relay::new(config()).unwrap();
    let out = send(&relay, &[dest(addr)], &["x@example.test", "y@example.test"]).await;
    for o in &out {
        assert!(
            matches!(&o.result, RcptResult::Failed { status, .. } if status == "5.3.4"),
            "{o:?}"
        );
    }
    assert!(!rec.log().iter().any(|l| l.starts_with("MAIL")));
}

#[tokio::test]
async fn connection_is_reused_with_rset() {
    let (addr, rec) = fake(Script::default()).await;
    let relay = Relay::new(config()).unwrap();
    let first = send(&relay, &[dest(addr)], &["x@example.test"]).await;
    let second = send(&relay, &[dest(addr)], &["y@example.test"]).await;
    assert!(delivered(&first[0]) && delivered(&second[0]));
    assert_eq!(rec.connections.load(Ordering::SeqCst), 1);
    let log = rec.log();
    let rset = log
        .iter()
        .position(|l| l == "RSET")
        .expect("RSET before reuse");
    let mails: Vec<usize> = log
        .iter()
        .enumerate()
        .filter(|(_, l)| l.starts_with("MAIL"))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(mails.len(), 2);
    assert!(mails[0] < rset && rset < mails[1], "{log:?}");
}

#[tokio::test]
async fn dead_pooled_connection_is_replaced() {
    // The server hangs up after every message: the pooled connection is dead at reuse.
    let (addr, rec) = fake(Script {
        hangup_after_data: true,
        ..Script::default()
    })
    .await;
    let relay = Relay::new(config()).unwrap();
    assert!(delivered(
        &send(&relay, &[dest(addr)], &["x@example.test"]).await[0]
    ));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let out = send(&relay, &[dest(addr)], &["y@example.test"]).await;
    assert!(delivered(&out[0]), "{out:?}");
    assert_eq!(rec.connections.load(Ordering::SeqCst), 2);
    assert_eq!(rec.messages.lock().unwrap().len(), 2);
}

#[tokio::test]
async fn next_host_after_refused_connection_and_4xx() {
    // A port with nothing listening.
    let closed = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let (busy, busy_rec) = fake(Script {
        greeting: "421 4.3.2 busy".into(),
        ..Script::default()
    })
    .await;
    let (tempfail, _) = fake(Script {
        mail_reply: "451 4.3.0 local error".into(),
        ..Script::default()
    })
    .await;
    let (good, good_rec) = fake(Script::default()).await;
    let relay = Relay::new(config()).unwrap();
    let hosts = [
        Destination {
            host: "closed".into(),
            addr: closed,
        },
        Destination {
            host: "busy".into(),
            addr: busy,
        },
        Destination {
            host: "tempfail".into(),
            addr: tempfail,
        },
        Destination {
            host: "good".into(),
            addr: good,
        },
    ];
    let out = send(&relay, &hosts, &["x@example.test"]).await;
    assert!(delivered(&out[0]), "{out:?}");
    assert!(out[0].mx.as_deref().unwrap().starts_with("good["));
    assert_eq!(busy_rec.connections.load(Ordering::SeqCst), 1);
    assert_eq!(good_rec.messages.lock().unwrap().len(), 1);
    // Without the good host: deferred with the last error.
    let out = send(&relay, &hosts[..3], &["x@example.test", "y@example.test"]).await;
    for o in &out {
        match &o.result {
            RcptResult::Deferred { reply, .. } => assert!(reply.contains("451 4.3.0"), "{reply}"),
            other => panic!("{other:?}"),
        }
    }
}

#[tokio::test]
async fn mail_5xx_fails_everyone() {
    let (addr, _) = fake(Script {
        mail_reply: "553 5.7.1 sender rejected".into(),
        ..Script::default()
    })
    .await;
    let relay = Relay::new(config()).unwrap();
    let out = send(&relay, &[dest(addr)], &["x@example.test", "y@example.test"]).await;
    for o in &out {
        assert!(
            matches!(&o.result, RcptResult::Failed { status, .. } if status == "5.7.1"),
            "{o:?}"
        );
    }
}

#[tokio::test]
async fn smarthost_auth_requires_tls() {
    let (plain, plain_rec) = fake(Script {
        caps: vec!["AUTH PLAIN".into()],
        ..Script::default()
    })
    .await;
    let mut cfg = config();
    cfg.smarthost = Some(("127.0.0.1".into(), plain.port()));
    cfg.smarthost_auth = Some(("user".into(), "secret".into()));
    let relay = Relay::new(cfg).unwrap();
    let out = relay
        .deliver(
            "example.test",
            "a@sender.test",
            &rcpts(&["x@example.test"]),
            MESSAGE,
        )
        .await;
    match &out[0].result {
        RcptResult::Deferred { reply, .. } => assert!(reply.contains("STARTTLS"), "{reply}"),
        other => panic!("{other:?}"),
    }
    assert!(!plain_rec.log().iter().any(|l| l.starts_with("AUTH")));

    let (tls, tls_rec) = fake(Script {
        caps: vec!["AUTH PLAIN LOGIN".into()],
        tls: Tls::On(tls_config()),
        ..Script::default()
    })
    .await;
    let mut cfg = config();
    cfg.smarthost = Some(("127.0.0.1".into(), tls.port()));
    cfg.smarthost_auth = Some(("user".into(), "secret".into()));
    let relay = Relay::new(cfg).unwrap();
    let out = relay
        .deliver(
            "example.test",
            "a@sender.test",
            &rcpts(&["x@example.test"]),
            MESSAGE,
        )
        .await;
    assert!(delivered(&out[0]) && out[0].tls, "{out:?}");
    // base64("\0user\0secret")
    assert!(tls_rec
        .log()
        .contains(&"[tls] AUTH PLAIN AHVzZXIAc2VjcmV0".to_string()));
}

#[tokio::test(start_paused = true)]
async fn server_that_stops_reading_during_data_gives_deferred() {
    // 32 MiB, more than the socket buffers hold: the relay's writes block. Every write is
    // under a timeout (RFC 5321 §4.5.3.2, 3 minutes per data block), so the delivery ends
    // with "try later" instead of hanging. Time is paused: the timeouts pass at once.
    let (addr, rec) = fake(Script {
        stall_after_data: true,
        ..Script::default()
    })
    .await;
    let relay = Relay::new(config()).unwrap();
    let mut message = b"Subject: big\r\n\r\n".to_vec();
    while message.len() < 32 << 20 {
        message.extend_from_slice(&[b'x'; 998]);
        message.extend_from_slice(b"\r\n");
    }
    let to = rcpts(&["b@example.test"]);
    let out = tokio::time::timeout(
        Duration::from_secs(3600),
        relay.deliver_to_hosts(
            "example.test",
            &[dest(addr)],
            "a@sender.test",
            &to,
            &message,
        ),
    )
    .await
    .expect("delivery hangs on a server that does not read");
    assert_eq!(out.len(), 1);
    assert!(
        matches!(&out[0].result, RcptResult::Deferred { reply, .. } if reply.contains("write timed out")),
        "{out:?}"
    );
    assert!(rec.messages.lock().unwrap().is_empty());
}

// --- CHUNKING (RFC 3030) ------------------------------------------------------------------

/// A message of several relay blocks in CRLF form, with lines a DATA section would stuff.
fn large_message() -> Vec<u8> {
    let mut m = b"Subject: big\r\n\r\n.starts with a dot\r\n.\r\n".to_vec();
    let mut i = 0;
    while m.len() < 3 * mta::relay::BLOCK + 5000 {
        m.extend_from_slice(format!("line {i} of the body\r\n..two\r\n").as_bytes());
        i += 1;
    }
    m.extend_from_slice(b"the end\r\n");
    m
}

/// The `BDAT` commands the fake received, in order.
fn bdat_commands(rec: &Record) -> Vec<String> {
    rec.log()
        .into_iter()
        .filter(|l| l.starts_with("BDAT"))
        .collect()
}

#[tokio::test]
async fn chunking_sends_the_exact_bytes_in_bdat_chunks_from_the_spool() {
    let (addr, rec) = fake(Script {
        caps: vec!["PIPELINING".into(), "CHUNKING".into(), "8BITMIME".into()],
        // Replies come only after 3 chunks: the client must pipeline them.
        bdat_hold: 3,
        ..Script::default()
    })
    .await;
    // The message comes from a real spool file, read in blocks.
    let dir = tempfile::tempdir().unwrap();
    let spool = store::spool::Spool::open(dir.path()).unwrap();
    let message = large_message();
    let id = store::spool::new_id();
    let origin = store::spool::Origin::client("test");
    let to = rcpts(&["x@example.test"]);
    spool
        .enqueue(&id, "a@sender.test", &to, &origin, 1, &[&message])
        .await
        .unwrap();
    let (_, body) = spool.open_message(&id).unwrap();
    let relay = Relay::new(config()).unwrap();
    let out = tokio::time::timeout(
        Duration::from_secs(20),
        relay.attempt_hosts(
            "example.test",
            &[dest(addr)],
            "a@sender.test",
            &to,
            &body.into(),
        ),
    )
    .await
    .map(|attempt| attempt.outcomes)
    .expect("delivery hangs: BDAT chunks not pipelined?");
    assert!(delivered(&out[0]), "{out:?}");
    let log = rec.log();
    assert!(!log.iter().any(|l| l == "DATA"), "{log:?}");
    // Not dot-stuffed, nothing added: the very bytes of the message.
    assert_eq!(rec.messages.lock().unwrap().clone(), vec![message.clone()]);
    let bdats = bdat_commands(&rec);
    assert!(bdats.len() >= 4, "{bdats:?}");
    let (last, rest) = bdats.split_last().unwrap();
    assert!(last.ends_with(" LAST"), "{bdats:?}");
    assert!(rest.iter().all(|c| !c.contains("LAST")), "{bdats:?}");
    let sizes: Vec<usize> = bdats
        .iter()
        .map(|c| c.split(' ').nth(1).unwrap().parse().unwrap())
        .collect();
    assert!(
        sizes.iter().all(|&n| n <= 2 * mta::relay::BLOCK),
        "{sizes:?}"
    );
    assert_eq!(sizes.iter().sum::<usize>(), message.len());
}

#[tokio::test]
async fn chunking_without_pipelining_waits_for_each_reply() {
    let (addr, rec) = fake(Script {
        caps: vec!["CHUNKING".into(), "8BITMIME".into()],
        ..Script::default()
    })
    .await;
    let relay = Relay::new(config()).unwrap();
    let message = large_message();
    let out = relay
        .deliver_to_hosts(
            "example.test",
            &[dest(addr)],
            "a@s.test",
            &rcpts(&["x@example.test"]),
            &message,
        )
        .await;
    assert!(delivered(&out[0]), "{out:?}");
    assert_eq!(rec.messages.lock().unwrap().clone(), vec![message]);
    assert!(bdat_commands(&rec).last().unwrap().ends_with(" LAST"));
}

#[tokio::test]
async fn a_server_without_chunking_gets_dot_stuffed_data() {
    let (addr, rec) = fake(Script {
        caps: vec!["PIPELINING".into(), "8BITMIME".into()],
        ..Script::default()
    })
    .await;
    let relay = Relay::new(config()).unwrap();
    let message = large_message();
    let out = relay
        .deliver_to_hosts(
            "example.test",
            &[dest(addr)],
            "a@s.test",
            &rcpts(&["x@example.test"]),
            &message,
        )
        .await;
    assert!(delivered(&out[0]), "{out:?}");
    assert!(bdat_commands(&rec).is_empty());
    assert!(rec.log().iter().any(|l| l == "DATA"));
    // What arrived before the terminating dot is the dot-stuffed message.
    let stuffed = proto::smtp::client::dot_stuff(&message);
    let got = rec.messages.lock().unwrap().clone();
    assert_eq!(got, vec![stuffed[..stuffed.len() - 3].to_vec()]);
}

#[tokio::test]
async fn a_refused_chunk_ends_the_sending_and_fails_the_recipients() {
    let (addr, rec) = fake(Script {
        caps: vec!["PIPELINING".into(), "CHUNKING".into(), "8BITMIME".into()],
        bdat_refuse: Some(1),
        ..Script::default()
    })
    .await;
    let relay = Relay::new(config()).unwrap();
    let mut message = Vec::new();
    while message.len() < 20 * mta::relay::BLOCK {
        message.extend_from_slice(&large_message());
    }
    let out = relay
        .deliver_to_hosts(
            "example.test",
            &[dest(addr)],
            "a@s.test",
            &rcpts(&["x@example.test"]),
            &message,
        )
        .await;
    assert!(
        matches!(&out[0].result, RcptResult::Failed { status, .. } if status == "5.3.4"),
        "{out:?}"
    );
    // Sending stopped at the refusal (at most the pipelining window later): no LAST.
    let bdats = bdat_commands(&rec);
    assert!(
        bdats.len() < 20 && !bdats.iter().any(|c| c.contains("LAST")),
        "{bdats:?}"
    );
    assert!(rec.messages.lock().unwrap().is_empty());
}

#[tokio::test]
async fn a_queue_file_that_cannot_be_read_defers_without_sending() {
    let (addr, rec) = fake(Script {
        caps: vec!["PIPELINING".into(), "CHUNKING".into(), "8BITMIME".into()],
        ..Script::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let spool = store::spool::Spool::open(dir.path()).unwrap();
    let id = store::spool::new_id();
    let to = rcpts(&["x@example.test"]);
    let origin = store::spool::Origin::client("test");
    spool
        .enqueue(&id, "a@s.test", &to, &origin, 1, &[&large_message()])
        .await
        .unwrap();
    let (_, body) = spool.open_message(&id).unwrap();
    // The file shrinks under the open body (a broken disk, say): never send a cut message.
    let path = dir.path().join("queue/msg").join(&id);
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(100)
        .unwrap();
    let relay = Relay::new(config()).unwrap();
    let out = relay
        .attempt_hosts("example.test", &[dest(addr)], "a@s.test", &to, &body.into())
        .await
        .outcomes;
    assert!(
        matches!(&out[0].result, RcptResult::Deferred { reply, .. } if reply.contains("cannot read")),
        "{out:?}"
    );
    assert!(rec.messages.lock().unwrap().is_empty());
    assert!(bdat_commands(&rec).is_empty());
}
