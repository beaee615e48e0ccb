//! `Relay::deliver` with DNS: a tiny DNS server on 127.0.0.1 (UDP) serves MX and A records
//! for the resolver seam (`dns_servers`), and a fake SMTP server listens on `remote_port`.
//!
//! Covers: MX order with the first host refusing connections, implicit MX (no MX, an A
//! record), null MX (`5.1.10`), NXDOMAIN (`5.1.2`), SERVFAIL (deferred), and an MX that is
//! this server (`5.4.6`); hostile DNS (security review 7): MX hosts resolved in parallel (a
//! gate that answers only once every host was asked), and at most `MAX_MX_HOSTS` looked up.

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_resolver::proto::op::{Message, MessageType, ResponseCode};
use hickory_resolver::proto::rr::rdata::{A, MX};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use mta::relay::{RcptOutcome, RcptResult, Relay, RelayConfig, Timeouts};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, UdpSocket};

fn answer(qname: &str, qtype: RecordType) -> (ResponseCode, Vec<RData>) {
    let mx = |p, n: &str| RData::MX(MX::new(p, Name::from_ascii(n).unwrap()));
    let a = |ip: [u8; 4]| RData::A(A(Ipv4Addr::from(ip)));
    match (qname, qtype) {
        ("ordered.test.", RecordType::MX) => (
            ResponseCode::NoError,
            vec![mx(20, "b.ordered.test."), mx(10, "a.ordered.test.")],
        ),
        // Nothing listens on 127.0.0.3.
        ("a.ordered.test.", RecordType::A) => (ResponseCode::NoError, vec![a([127, 0, 0, 3])]),
        ("b.ordered.test.", RecordType::A) => (ResponseCode::NoError, vec![a([127, 0, 0, 1])]),
        ("implicit.test.", RecordType::A) => (ResponseCode::NoError, vec![a([127, 0, 0, 1])]),
        ("null.test.", RecordType::MX) => (ResponseCode::NoError, vec![mx(0, ".")]),
        ("loop.test.", RecordType::MX) => (ResponseCode::NoError, vec![mx(10, "me.loop.test.")]),
        ("me.loop.test.", RecordType::A) => (ResponseCode::NoError, vec![a([127, 0, 0, 9])]),
        ("servfail.test.", _) => (ResponseCode::ServFail, vec![]),
        ("gate.test.", RecordType::MX) => (
            ResponseCode::NoError,
            vec![
                mx(10, "g1.gate.test."),
                mx(20, "g2.gate.test."),
                mx(30, "g3.gate.test."),
            ],
        ),
        (name, RecordType::A) if name.ends_with(".gate.test.") => {
            (ResponseCode::NoError, vec![a([127, 0, 0, 1])])
        }
        ("many.test.", RecordType::MX) => (
            ResponseCode::NoError,
            (0..20)
                .map(|i| mx(i, &format!("m{i}.many.test.")))
                .collect(),
        ),
        // Nothing listens on 127.0.0.3.
        (name, RecordType::A) if name.ends_with(".many.test.") => {
            (ResponseCode::NoError, vec![a([127, 0, 0, 3])])
        }
        (name, _) if name.ends_with(".test.") && !name.starts_with("nx.") => {
            (ResponseCode::NoError, vec![])
        }
        _ => (ResponseCode::NXDomain, vec![]),
    }
}

/// The names whose A records were asked for, in order of arrival.
type Asked = Arc<Mutex<Vec<String>>>;

async fn dns_server() -> SocketAddr {
    dns_server_logged().await.0
}

/// The A answers for `g1`..`g3.gate.test` are held back until all three were asked for: a
/// resolver that looks MX hosts up one after another only ever gets `g3` answered.
async fn dns_server_logged() -> (SocketAddr, Asked) {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let asked: Asked = Arc::default();
    let log = asked.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        let mut gate_seen: HashSet<String> = HashSet::new();
        let mut held: Vec<(SocketAddr, Vec<u8>)> = Vec::new();
        loop {
            let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                return;
            };
            let Ok(request) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let Some(query) = request.queries.first().cloned() else {
                continue;
            };
            let qname = query.name().to_ascii().to_ascii_lowercase();
            if query.query_type() == RecordType::A {
                log.lock().unwrap().push(qname.clone());
            }
            let (code, rdatas) = answer(&qname, query.query_type());
            let mut response = Message::new(
                request.metadata.id,
                MessageType::Response,
                request.metadata.op_code,
            );
            response.metadata.recursion_desired = request.metadata.recursion_desired;
            response.metadata.recursion_available = true;
            response.metadata.authoritative = true;
            response.metadata.response_code = code;
            response.add_query(query.clone());
            for rdata in rdatas {
                response.add_answer(Record::from_rdata(query.name().clone(), 60, rdata));
            }
            let Ok(bytes) = response.to_vec() else {
                continue;
            };
            if qname.ends_with(".gate.test.") && query.query_type() == RecordType::A {
                gate_seen.insert(qname);
                if gate_seen.len() < 3 {
                    held.push((peer, bytes));
                    continue;
                }
                for (peer, bytes) in held.drain(..) {
                    let _ = socket.send_to(&bytes, peer).await;
                }
            }
            let _ = socket.send_to(&bytes, peer).await;
        }
    });
    (addr, asked)
}

/// A minimal SMTP server accepting everything; returns its port and the recipients it took.
async fn smtp_server() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let got = Arc::new(Mutex::new(Vec::new()));
    let seen = got.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut io = BufReader::new(tcp);
                let _ = io.get_mut().write_all(b"220 fake ESMTP\r\n").await;
                let mut in_data = false;
                loop {
                    let mut line = String::new();
                    if io.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let reply: &[u8] = if in_data {
                        if line != ".\r\n" {
                            continue;
                        }
                        in_data = false;
                        b"250 2.0.0 queued\r\n"
                    } else if line.starts_with("EHLO") {
                        b"250-fake\r\n250 PIPELINING\r\n"
                    } else if line.starts_with("RCPT") {
                        seen.lock().unwrap().push(line.trim_end().to_string());
                        b"250 2.1.5 ok\r\n"
                    } else if line.starts_with("DATA") {
                        in_data = true;
                        b"354 go\r\n"
                    } else if line.starts_with("QUIT") {
                        return;
                    } else {
                        b"250 2.0.0 ok\r\n"
                    };
                    if io.get_mut().write_all(reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (port, got)
}

async fn relay(port: u16) -> Relay {
    relay_with_dns(port, dns_server().await)
}

fn relay_with_dns(port: u16, dns: SocketAddr) -> Relay {
    Relay::new(RelayConfig {
        hostname: "relay.test".into(),
        smarthost: None,
        smarthost_auth: None,
        smarthost_tls: mta::relay::SmarthostTls::Opportunistic,
        ca_certificates: Vec::new(),
        remote_port: port,
        dns_servers: vec![dns],
        per_destination_limit: 4,
        local_addresses: vec!["127.0.0.9".parse().unwrap()],
        timeouts: Timeouts {
            connect: Duration::from_secs(2),
            ..Timeouts::default()
        },
        tls_policy: Default::default(),
    })
    .unwrap()
}

async fn deliver(relay: &Relay, domain: &str) -> RcptOutcome {
    let to = vec![format!("user@{domain}")];
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        relay.deliver(domain, "a@sender.test", &to, b"Subject: x\r\n\r\nhi\r\n"),
    )
    .await
    .expect("delivery hangs");
    assert_eq!(out.len(), 1);
    out.into_iter().next().unwrap()
}

fn failed_with(o: &RcptOutcome, want: &str) -> bool {
    matches!(&o.result, RcptResult::Failed { status, .. } if status == want)
}

#[tokio::test]
async fn mx_in_preference_order_and_next_host() {
    let (port, got) = smtp_server().await;
    let relay = relay(port).await;
    let o = deliver(&relay, "ordered.test").await;
    assert!(matches!(o.result, RcptResult::Delivered { .. }), "{o:?}");
    assert_eq!(
        o.mx.as_deref(),
        Some(format!("b.ordered.test[127.0.0.1]:{port}").as_str())
    );
    assert_eq!(
        got.lock().unwrap().clone(),
        vec!["RCPT TO:<user@ordered.test>"]
    );
}

#[tokio::test]
async fn implicit_mx() {
    let (port, _) = smtp_server().await;
    let relay = relay(port).await;
    let o = deliver(&relay, "implicit.test").await;
    assert!(matches!(o.result, RcptResult::Delivered { .. }), "{o:?}");
    assert_eq!(
        o.mx.as_deref(),
        Some(format!("implicit.test[127.0.0.1]:{port}").as_str())
    );
}

#[tokio::test]
async fn dns_failures() {
    let (port, got) = smtp_server().await;
    let relay = relay(port).await;
    let o = deliver(&relay, "null.test").await;
    assert!(failed_with(&o, "5.1.10"), "{o:?}");
    let o = deliver(&relay, "nx.nowhere").await;
    assert!(failed_with(&o, "5.1.2"), "{o:?}");
    let o = deliver(&relay, "loop.test").await;
    assert!(failed_with(&o, "5.4.6"), "{o:?}");
    let o = deliver(&relay, "servfail.test").await;
    assert!(matches!(o.result, RcptResult::Deferred { .. }), "{o:?}");
    // A domain that exists with neither MX nor address.
    let o = deliver(&relay, "empty.test").await;
    assert!(failed_with(&o, "5.1.2"), "{o:?}");
    assert!(got.lock().unwrap().is_empty());
}

#[tokio::test]
async fn mx_hosts_are_resolved_in_parallel() {
    // Looked up one after another, g1 and g2 time out (the gate waits for all three names)
    // and the mail goes to g3; looked up together, all resolve and g1 (best) takes it.
    let (port, got) = smtp_server().await;
    let (dns, _) = dns_server_logged().await;
    let relay = relay_with_dns(port, dns);
    let o = deliver(&relay, "gate.test").await;
    assert!(matches!(o.result, RcptResult::Delivered { .. }), "{o:?}");
    assert_eq!(
        o.mx.as_deref(),
        Some(format!("g1.gate.test[127.0.0.1]:{port}").as_str())
    );
    assert_eq!(got.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn thousands_of_mx_records_cost_no_more_than_ten() {
    let (port, got) = smtp_server().await;
    let (dns, asked) = dns_server_logged().await;
    let relay = relay_with_dns(port, dns);
    let o = deliver(&relay, "many.test").await;
    assert!(matches!(o.result, RcptResult::Deferred { .. }), "{o:?}");
    let hosts: HashSet<String> = asked
        .lock()
        .unwrap()
        .iter()
        .filter(|n| n.ends_with(".many.test."))
        .cloned()
        .collect();
    assert_eq!(hosts.len(), mta::relay::mx::MAX_MX_HOSTS, "{hosts:?}");
    // The most preferred ones.
    assert!(hosts.contains("m0.many.test.") && !hosts.contains("m19.many.test."));
    assert!(got.lock().unwrap().is_empty());
}
