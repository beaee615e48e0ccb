//! S2S: S2 relayed through a TLS MX under an MTA-STS policy in enforce mode (issue 12).
//!
//! The world: a bench CA ([`crate::pki`]); the TLS sink ([`crate::tls_sink`]) on
//! [`MX_IP`] as `mx.remote.example`; a small HTTPS server on [`POLICY_IP`] serving
//! `https://mta-sts.remote.example/.well-known/mta-sts.txt` (enforce, `mx: mx.remote.example`);
//! and a DNS zone ([`crate::zone`]) with the MX, A and `_mta-sts` TXT records. A second
//! Mailroom routes `remote.example` by DNS to the sink's port, with `relay.mta_sts = true`,
//! the policy server's port and `relay.ca_file` = the CA. Postfix (with `--peers`) relays to
//! the same sink as its relayhost with `smtp_tls_security_level = may`, otherwise its
//! defaults; its S2 settings are put back afterwards.
//!
//! Verification, beside S2's (the sink got exactly the accepted messages): every message
//! reached the sink over TLS, for both servers; for Mailroom, every delivery line of the run
//! says `status=sent` with `verified=mta-sts` (a delivery deferred by MTA-STS stops the run at
//! once), and the policy was fetched. `BENCH_STS_POLICY_MX` replaces the policy's `mx:` (a
//! broken setup, to check that the bench fails). The sender is [`UNSIGNED_FROM`]: this
//! measures TLS and MTA-STS, not DKIM.

use std::cell::RefCell;
use std::io::{Read, Seek, SeekFrom};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::scenarios::{never, s2, UNSIGNED_FROM};
use crate::zone::Record;
use crate::{pki, tls_sink, zone, Mailroom, Report, Scale};

/// The MX's address (not one Mailroom listens on).
pub const MX_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 43);
/// The MTA-STS policy server's address.
pub const POLICY_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 44);
const DOMAIN: &str = "remote.example";
const MX: &str = "mx.remote.example";
const POLICY_HOST: &str = "mta-sts.remote.example";
const POLICY_ID: &str = "bench1";

/// The policy text, with `mx` as its one MX pattern.
fn policy(mx: &str) -> String {
    format!("version: STSv1\r\nmode: enforce\r\nmx: {mx}\r\nmax_age: 86400\r\n")
}

/// The HTTPS server of the policy; stops accepting when dropped.
struct PolicyServer {
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    accept: tokio::task::JoinHandle<()>,
}

impl PolicyServer {
    fn start(
        rt: &tokio::runtime::Runtime,
        addr: SocketAddr,
        tls: Arc<rustls::ServerConfig>,
        body: String,
    ) -> Result<PolicyServer, String> {
        let listener = rt
            .block_on(TcpListener::bind(addr))
            .map_err(|e| format!("policy server on {addr}: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let requests = Arc::new(AtomicUsize::new(0));
        let (n, acceptor, body) = (requests.clone(), TlsAcceptor::from(tls), Arc::new(body));
        let accept = rt.spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (n, acceptor, body) = (n.clone(), acceptor.clone(), body.clone());
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let mut head = Vec::new();
                    let mut buf = [0u8; 2048];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16384 {
                        match tls.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(k) => head.extend_from_slice(&buf[..k]),
                        }
                    }
                    n.fetch_add(1, Ordering::Relaxed);
                    let answer = if head.starts_with(b"GET /.well-known/mta-sts.txt ") {
                        format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                            body.len()
                        )
                    } else {
                        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                            .to_string()
                    };
                    let _ = tls.write_all(answer.as_bytes()).await;
                    let _ = tls.shutdown().await;
                });
            }
        });
        Ok(PolicyServer {
            addr,
            requests,
            accept,
        })
    }
}

impl Drop for PolicyServer {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

/// Mailroom's delivery lines, read as the log grows.
#[derive(Default)]
struct DeliveryLog {
    path: PathBuf,
    offset: u64,
    partial: Vec<u8>,
    sent_verified: usize,
    sent_other: usize,
    deferred: usize,
    /// The first delivery line that is not `status=sent verified=mta-sts`.
    first_problem: Option<String>,
    /// A deferral because of MTA-STS: it will not go better on a retry here.
    sts_deferral: Option<String>,
}

impl DeliveryLog {
    fn new(path: &Path) -> DeliveryLog {
        DeliveryLog {
            path: path.to_path_buf(),
            ..DeliveryLog::default()
        }
    }

    fn poll(&mut self) {
        let Ok(mut f) = std::fs::File::open(&self.path) else {
            return;
        };
        if f.seek(SeekFrom::Start(self.offset)).is_err() {
            return;
        }
        let mut fresh = Vec::new();
        let Ok(n) = f.read_to_end(&mut fresh) else {
            return;
        };
        self.offset += n as u64;
        self.partial.extend_from_slice(&fresh);
        let Some(end) = self.partial.iter().rposition(|&b| b == b'\n') else {
            return;
        };
        let complete: Vec<u8> = self.partial.drain(..=end).collect();
        for line in String::from_utf8_lossy(&complete).lines() {
            if !line.contains("delivery:") || !line.contains("status=") {
                continue;
            }
            let sent = line.contains("status=sent");
            if sent && line.contains("verified=mta-sts") {
                self.sent_verified += 1;
                continue;
            }
            if sent {
                self.sent_other += 1;
            } else {
                self.deferred += 1;
                if line.contains("MTA-STS") && self.sts_deferral.is_none() {
                    self.sts_deferral = Some(line.to_string());
                }
            }
            if self.first_problem.is_none() {
                self.first_problem = Some(line.to_string());
            }
        }
    }
}

/// Runs S2S: Mailroom (always) and Postfix (`peers`) for 4 KiB and 100 KiB.
pub fn run(
    rt: &tokio::runtime::Runtime,
    rep: &mut Report,
    bin: &Path,
    work: &Path,
    sc: &Scale,
    peers: Option<&crate::peers::Peers>,
    probe: Option<f64>,
) -> Result<(), String> {
    let ca = pki::BenchCa::new()?;
    let ca_file = work.join("bench-ca.pem");
    ca.write_pem(&ca_file)?;
    let mx = std::env::var("BENCH_STS_POLICY_MX").unwrap_or_else(|_| MX.to_string());
    if mx != MX {
        rep.note(format!(
            "S2S: BENCH_STS_POLICY_MX={mx}: the policy does not name the MX, Mailroom must defer"
        ));
    }
    let web = PolicyServer::start(
        rt,
        SocketAddr::new(POLICY_IP.into(), 0),
        ca.server_config(POLICY_HOST)?,
        policy(&mx),
    )?;
    let dns = zone::start(vec![
        Record::Mx(DOMAIN.into(), 10, MX.into()),
        Record::A(MX.into(), MX_IP),
        Record::Txt(
            format!("_mta-sts.{DOMAIN}"),
            format!("v=STSv1; id={POLICY_ID}"),
        ),
        Record::A(POLICY_HOST.into(), POLICY_IP),
    ])?;
    let mut mr = Mailroom::configure_sts(
        bin,
        &work.join("mailroom-sts"),
        dns,
        MX_IP,
        web.addr.port(),
        &ca_file,
    )?;
    mr.cli_domain_only()?;
    mr.start()?;
    let sink = tls_sink::TlsSink::start(rt, mr.sink, ca.server_config(MX)?)?;
    if let Some(p) = peers {
        p.relay_to(sink.addr, "may")?;
    }
    let log = RefCell::new(DeliveryLog::new(&mr.log));
    let stop = || {
        let mut l = log.borrow_mut();
        l.poll();
        l.sts_deferral.clone()
    };
    for (size, label) in [(4096usize, "4 KiB"), (102_400, "100 KiB")] {
        let scen = format!("S2S relay {label}");
        let c = &sink.counters;
        let sessions = || c.tls_sessions.load(Ordering::Relaxed);
        let (base, base_tls, base_sess) = (sink.count(), sink.over_tls(), sessions());
        let before = {
            let mut l = log.borrow_mut();
            l.poll();
            (l.sent_verified, l.sent_other + l.deferred)
        };
        let m = s2(
            rt,
            rep,
            &scen,
            mr.smtp,
            &sink,
            Some(&mr),
            sc,
            size,
            UNSIGNED_FROM,
            &stop,
        );
        let got = sink.count() - base;
        let mut l = log.borrow_mut();
        l.poll();
        let verified = l.sent_verified - before.0;
        let other = l.sent_other + l.deferred - before.1;
        if let Some(line) = l.sts_deferral.take() {
            rep.fail(format!("{scen}: a delivery deferred by MTA-STS: {line}"));
        }
        if other > 0 || verified < got {
            rep.fail(format!(
                "{scen}: {verified} deliveries verified=mta-sts in Mailroom's log for {got} received, {other} other delivery lines; first: {}",
                l.first_problem.take().unwrap_or_default()
            ));
        }
        drop(l);
        check_tls(rep, &scen, got, sink.over_tls() - base_tls);
        let m_sessions = sessions() - base_sess;
        let p = match peers {
            Some(pp) => {
                let pscen = format!("{scen} (Postfix)");
                let (base, base_tls, base_sess) = (sink.count(), sink.over_tls(), sessions());
                let v = s2(
                    rt,
                    rep,
                    &pscen,
                    pp.postfix_smtp,
                    &sink,
                    None,
                    sc,
                    size,
                    UNSIGNED_FROM,
                    &never,
                );
                check_tls(rep, &pscen, sink.count() - base, sink.over_tls() - base_tls);
                rep.note(format!(
                    "S2S {label}: TLS sessions at the sink: Mailroom {m_sessions}, Postfix {} (Postfix caches no TLS connections by default: smtp_tls_connection_reuse = no)",
                    sessions() - base_sess
                ));
                v
            }
            None => {
                rep.note(format!(
                    "S2S {label}: TLS sessions at the sink: Mailroom {m_sessions}"
                ));
                None
            }
        };
        rep.add(
            &scen,
            "relayed msg/s, end to end, TLS (Mailroom: MTA-STS enforce, verified; Postfix: may)",
            "msg/s",
            m,
            p,
            probe,
        );
    }
    if web.requests.load(Ordering::Relaxed) == 0 {
        rep.fail("S2S: Mailroom never fetched the MTA-STS policy".into());
    }
    let handshakes = sink.counters.failed_handshakes.load(Ordering::Relaxed);
    if handshakes > 0 {
        rep.note(format!(
            "S2S: {handshakes} TLS handshakes failed at the sink"
        ));
    }
    if let Some(p) = peers {
        if let Err(e) = p.relay_to(p.postfix_relayhost, "none") {
            rep.note(format!(
                "S2S: Postfix's S2 relay settings not restored: {e}"
            ));
        }
    }
    mr.kill();
    Ok(())
}

/// Every message the sink received in a run came over TLS.
fn check_tls(rep: &mut Report, scen: &str, got: usize, over_tls: usize) {
    if over_tls != got {
        rep.fail(format!(
            "{scen}: {over_tls} of the {got} messages the sink received came over TLS"
        ));
    }
}
