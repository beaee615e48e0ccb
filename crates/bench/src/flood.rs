//! S5: S1 during a connection flood (issue 17). An attacker holds 5,000 idle connections from
//! 200 addresses (127.60.k.1, each its own /24, 25 connections each) and opens a new one at
//! once whenever the server closes one (as a real flood does: reconnect on 421 or timeout);
//! meanwhile S1 (4 KiB) runs from its usual sources (127.10.x.y), which the server trusts.
//! Figures: S1's end-of-DATA p50/p99 and rate, and how many flood connections the server
//! closed meanwhile (evictions and stress timeouts).
//!
//! Mailroom runs twice, with its own configuration (only 127.10.0.0/16 trusted): with the
//! default slots (10,000: the flood fits), and with `max_connections = 2000` (the flood fills
//! them: stress mode and eviction). With `--peers`, Postfix under the same flood (its bench
//! configuration, `scripts/bench-peers`).

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::net::TcpSocket;

use crate::report::Report;
use crate::server::{user, Mailroom};
use crate::Scale;

/// Flood connections and source addresses.
const FLOOD: usize = 5000;
const SOURCES: usize = 200;
/// How long a flood may last before it lets go.
const WATCHDOG: Duration = Duration::from_secs(180);

/// A running flood; stops (and closes its connections) when dropped.
struct Flood {
    stop: Arc<AtomicBool>,
    /// Closes every flood connection when it fires (the watchdog, or drop).
    release: Arc<tokio::sync::Notify>,
    open: Arc<AtomicUsize>,
    closed_by_server: Arc<AtomicUsize>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Flood {
    fn start(rt: &tokio::runtime::Runtime, target: SocketAddr) -> Flood {
        let stop = Arc::new(AtomicBool::new(false));
        let open = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(tokio::sync::Notify::new());
        // The watchdog: a server the flood knocks out (Postfix's 100 smtpd processes all held)
        // would keep S1 waiting forever; after WATCHDOG the flood lets go, S1 finishes, and
        // its accepted rate shows the wait.
        {
            let (stop, release) = (stop.clone(), release.clone());
            rt.spawn(async move {
                tokio::time::sleep(WATCHDOG).await;
                if !stop.swap(true, Ordering::Relaxed) {
                    eprintln!("mailroom-bench: S5: watchdog: flood stopped after {WATCHDOG:?}");
                }
                release.notify_waiters();
            });
        }
        // Connect at most 200 at a time so the listen backlog is not overrun.
        let connecting = Arc::new(tokio::sync::Semaphore::new(200));
        let tasks = (0..FLOOD)
            .map(|i| {
                let (stop, open, closed) = (stop.clone(), open.clone(), closed.clone());
                let release = release.clone();
                let connecting = connecting.clone();
                let k = (i % SOURCES) as u8;
                let source = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 60, k, 1)), 0);
                rt.spawn(async move {
                    let mut buf = [0u8; 512];
                    while !stop.load(Ordering::Relaxed) {
                        let permit = connecting.acquire().await.expect("semaphore");
                        let sock = TcpSocket::new_v4().and_then(|s| s.bind(source).map(|()| s));
                        let stream = match sock {
                            Ok(s) => s.connect(target).await,
                            Err(e) => Err(e),
                        };
                        drop(permit);
                        let Ok(mut stream) = stream else {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        };
                        open.fetch_add(1, Ordering::Relaxed);
                        // Never a word: read until the server gives up on us (or we let go).
                        let released = release.notified();
                        tokio::pin!(released);
                        released.as_mut().enable();
                        if stop.load(Ordering::Relaxed) {
                            open.fetch_sub(1, Ordering::Relaxed);
                            break;
                        }
                        loop {
                            tokio::select! {
                                r = stream.read(&mut buf) => match r {
                                    Ok(n) if n > 0 => continue,
                                    _ => break,
                                },
                                () = &mut released => {
                                    open.fetch_sub(1, Ordering::Relaxed);
                                    return;
                                }
                            }
                        }
                        open.fetch_sub(1, Ordering::Relaxed);
                        closed.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        Flood {
            stop,
            release,
            open,
            closed_by_server: closed,
            tasks,
        }
    }

    /// Waits until the whole flood is connected (or 60 s passed).
    fn wait_connected(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.open.load(Ordering::Relaxed) < FLOOD && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.release.notify_waiters();
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// S1 during the flood against one server; returns (p50, p99, accepted/s, closed by server).
fn one(
    rt: &tokio::runtime::Runtime,
    rep: &mut Report,
    scen: &str,
    target: SocketAddr,
    maildir: &dyn Fn(usize) -> std::path::PathBuf,
    sc: &Scale,
) -> [Option<f64>; 4] {
    let flood = Flood::start(rt, target);
    flood.wait_connected();
    let before = flood.closed_by_server.load(Ordering::Relaxed);
    eprintln!(
        "mailroom-bench: {scen}: {} flood connections open",
        flood.open.load(Ordering::Relaxed)
    );
    let m = crate::s1(
        rt,
        rep,
        scen,
        target,
        maildir,
        sc,
        4096,
        sc.messages.min(2000),
    );
    let closed = flood.closed_by_server.load(Ordering::Relaxed) - before;
    drop(flood);
    [m.p50, m.p99, m.accepted_s, Some(closed as f64)]
}

/// Runs S5 and adds its rows.
pub fn run(
    rt: &tokio::runtime::Runtime,
    rep: &mut Report,
    bin: &std::path::Path,
    work: &std::path::Path,
    peers: Option<&crate::peers::Peers>,
    sc: &Scale,
) -> Result<(), String> {
    let accounts = sc.accounts;
    let mut results = Vec::new();
    for (label, slots) in [
        ("default slots", None),
        ("max_connections 2000", Some(2000)),
    ] {
        let dir = work.join(format!("mailroom-flood-{}", slots.unwrap_or(0)));
        let mut mr = Mailroom::configure(bin, &dir)?;
        let text = std::fs::read_to_string(&mr.config).map_err(|e| e.to_string())?;
        let slots_line = slots.map(|n| format!("max_connections = {n}\n"));
        let text = text
            .replace(
                "trusted_networks = [\"127.0.0.0/8\"]",
                "trusted_networks = [\"127.10.0.0/16\"]",
            )
            .replacen(
                "max_connections = 20000\n",
                slots_line.as_deref().unwrap_or(""),
                1,
            );
        std::fs::write(&mr.config, text).map_err(|e| e.to_string())?;
        mr.create_accounts(accounts, 2)?;
        mr.start()?;
        let scen = format!("S5 S1 4 KiB during a {FLOOD}-connection flood ({label})");
        let r = one(rt, rep, &scen, mr.smtp, &|k| mr.maildir(&user(k)), sc);
        let log = std::fs::read_to_string(&mr.log).unwrap_or_default();
        rep.note(format!(
            "S5 ({label}): Mailroom logged stress mode on {} times, {} sessions closed to make room",
            log.matches("stress mode on").count(),
            log.matches("closed to make room").count()
        ));
        mr.kill();
        results.push((label, r));
    }
    let postfix = peers.map(|p| {
        one(
            rt,
            rep,
            &format!("S5 (Postfix) S1 4 KiB during a {FLOOD}-connection flood"),
            p.postfix_smtp,
            &|k| p.postfix_maildir(&user(k)),
            sc,
        )
    });
    let rows = [
        ("end-of-DATA reply p50", "ms"),
        ("end-of-DATA reply p99", "ms"),
        ("accepted (until last 250)", "msg/s"),
        ("flood connections closed by the server meanwhile", "conns"),
    ];
    for (label, r) in &results {
        let scen = format!("S5 S1 4 KiB, {FLOOD}-conn flood ({label})");
        for (i, (what, unit)) in rows.iter().enumerate() {
            let peer = if *label == "default slots" {
                postfix.and_then(|p| p[i])
            } else {
                None
            };
            rep.add(&scen, what, unit, r[i], peer, None);
        }
    }
    Ok(())
}
