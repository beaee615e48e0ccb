//! The relay's waits (RFC 5321 §4.5.3.2) against servers that never finish: a tarpit that
//! accepts and never greets is deferred after the greeting timeout, and a server that drips
//! its replies byte by byte (each reply inside its own timeout) is cut by the whole-attempt
//! deadline. The tarpit runs in paused time (minutes pass at once, the elapsed virtual time is
//! exact); the drip in real time with timeouts of a second or two.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mta::queue::schedule::Feedback;
use mta::relay::{Attempt, Destination, MessageBody, RcptResult, Relay, RelayConfig, Timeouts};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

fn config(timeouts: Timeouts) -> RelayConfig {
    RelayConfig {
        hostname: "relay.test".into(),
        smarthost: None,
        smarthost_auth: None,
        smarthost_tls: mta::relay::SmarthostTls::Opportunistic,
        ca_certificates: Vec::new(),
        remote_port: 25,
        // Unused by attempt_hosts; no system resolver needed.
        dns_servers: vec!["127.0.0.1:9".parse().unwrap()],
        per_destination_limit: 2,
        local_addresses: vec![],
        timeouts,
        tls_policy: Default::default(),
    }
}

/// Accepts connections and keeps them open without a word; counts them.
async fn tarpit() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            held.push(tcp);
        }
    });
    (addr, accepted)
}

/// Answers every command with a good reply, one byte per `pause`.
async fn slow_drip(pause: Duration) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(drip_session(tcp, pause));
        }
    });
    addr
}

async fn drip_session(tcp: TcpStream, pause: Duration) -> Option<()> {
    let mut io = BufReader::new(tcp);
    let mut reply = "220 drip.test\r\n";
    loop {
        for byte in reply.as_bytes() {
            tokio::time::sleep(pause).await;
            io.get_mut().write_all(&[*byte]).await.ok()?;
        }
        let mut line = String::new();
        if io.read_line(&mut line).await.ok()? == 0 {
            return None;
        }
        reply = match line.trim_end().to_ascii_uppercase().as_str() {
            "QUIT" => return None,
            "DATA" => "354 go\r\n",
            _ => "250 ok\r\n",
        };
    }
}

async fn send(relay: &Relay, addr: SocketAddr) -> (Attempt, Duration) {
    let start = Instant::now();
    let hosts = [Destination {
        host: "mx.slow.test".into(),
        addr,
    }];
    let to = vec!["b@slow.test".to_string()];
    let attempt = relay
        .attempt_hosts(
            "slow.test",
            &hosts,
            "a@sender.test",
            &to,
            &MessageBody::from(&b"Subject: x\r\n\r\nhi\r\n"[..]),
        )
        .await;
    (attempt, start.elapsed())
}

fn deferred_reply(attempt: &Attempt) -> &str {
    assert_eq!(attempt.outcomes.len(), 1);
    match &attempt.outcomes[0].result {
        RcptResult::Deferred { reply, .. } => reply,
        other => panic!("not deferred: {other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn a_tarpit_is_deferred_after_the_greeting_timeout() {
    let (addr, accepted) = tarpit().await;
    let relay = Relay::new(config(Timeouts::default())).unwrap();
    let (attempt, waited) = send(&relay, addr).await;
    // RFC 5321 §4.5.3.2.1: 5 minutes for the greeting, then "try later".
    let reply = deferred_reply(&attempt);
    assert!(reply.contains("timed out waiting for reply"), "{reply}");
    assert!(
        matches!(&attempt.feedback, Feedback::TimedOut(e) if e.contains("timed out")),
        "{:?}",
        attempt.feedback
    );
    assert!(
        waited >= Duration::from_secs(300) && waited < Duration::from_secs(301),
        "{waited:?}"
    );
    assert_eq!(accepted.load(Ordering::SeqCst), 1);

    // The wait is the configured one.
    let relay = Relay::new(config(Timeouts {
        greeting: Duration::from_secs(7),
        ..Timeouts::default()
    }))
    .unwrap();
    let (attempt, waited) = send(&relay, addr).await;
    deferred_reply(&attempt);
    assert!(
        waited >= Duration::from_secs(7) && waited < Duration::from_secs(8),
        "{waited:?}"
    );
}

// Real time, not paused: under paused time tokio moves the clock to the next timer whenever a
// socket event is all there is to do, which starves a byte-by-byte exchange. Margins are wide:
// a reply takes 0.4 s against a step timeout of 1.5 s.
#[tokio::test]
async fn the_attempt_deadline_cuts_a_slow_drip_server() {
    // 50 ms per byte: each 7- to 15-byte reply takes under a second, inside its own timeout,
    // but the whole transaction (six replies) takes about 3 s; only the whole-attempt deadline
    // (1.5 s here) ends the attempt.
    let addr = slow_drip(Duration::from_millis(50)).await;
    let steps = Timeouts {
        connect: Duration::from_secs(2),
        greeting: Duration::from_millis(1500),
        mail: Duration::from_millis(1500),
        rcpt: Duration::from_millis(1500),
        data_init: Duration::from_millis(1500),
        data_block: Duration::from_millis(1500),
        data_end: Duration::from_millis(1500),
        attempt: Duration::from_millis(1500),
    };
    let relay = Relay::new(config(steps.clone())).unwrap();
    let (attempt, waited) = send(&relay, addr).await;
    let reply = deferred_reply(&attempt);
    assert!(reply.contains("relay.attempt_timeout"), "{reply}");
    assert!(
        matches!(&attempt.feedback, Feedback::TimedOut(_)),
        "{:?}",
        attempt.feedback
    );
    assert!(
        waited >= Duration::from_millis(1500) && waited < Duration::from_millis(2500),
        "{waited:?}"
    );

    // Without that deadline the same server gets the message through, slowly: the step
    // timeouts alone never fire.
    let relay = Relay::new(config(Timeouts {
        attempt: Duration::from_secs(60),
        ..steps
    }))
    .unwrap();
    let (attempt, waited) = send(&relay, addr).await;
    assert!(
        matches!(&attempt.outcomes[0].result, RcptResult::Delivered { .. }),
        "{:?}",
        attempt.outcomes
    );
    assert_eq!(attempt.feedback, Feedback::Connected);
    assert!(waited > Duration::from_millis(2500), "{waited:?}");
}
