//! `mailroom-bench`: drives a release build of Mailroom through four scenarios and, with
//! `--peers`, the same scenarios against Postfix (Maildir delivery, relay) and Dovecot (POP3)
//! in the same run, next to a physical probe of the disk; prints one table.
//!
//! - S1 inbound SMTP to Maildir (4 KiB and 64 KiB), every message verified on disk;
//! - S2 relay through the queue to `smtp-sink`, end to end (with `--peer-dkim`, signed S2
//!   also against Postfix signing through OpenDKIM);
//! - S2S S2 through a TLS MX under an MTA-STS policy in enforce mode (`sts`; Postfix: TLS
//!   `may`), every delivery verified by MTA-STS and every message received over TLS;
//! - S3 POP3: log in, UIDL, RETR every message, QUIT, over many mailboxes;
//! - S4 many idle SMTP and POP3 connections: server memory, and S1 latency meanwhile;
//! - S5 S1 during a 5,000-connection flood (`flood`; full runs, or `--only s5`);
//! - S1WEB S1 (4 KiB) while `/metrics` and a page are fetched over HTTPS (`web_scrape`).
//!
//! It asserts nothing about speed: it exits non-zero only when a verification fails (a
//! message lost, duplicated, truncated or refused; a connection refused).

mod filtered;
mod flood;
mod maildir;
mod net;
mod peers;
mod pki;
mod pop3;
mod probe;
mod report;
mod scenarios;
mod server;
mod smtp;
mod sts;
mod tarpit;
mod tls_sink;
mod web_scrape;
mod zone;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;

use report::{percentile_ms, rate, Report};
use scenarios::*;
use server::{user, Mailroom, DOMAIN, PASSWORD};

#[derive(Parser, Debug)]
#[command(
    name = "mailroom-bench",
    about = "Load scenarios against Mailroom, optionally side by side with Postfix and Dovecot"
)]
struct Args {
    /// Tiny scale, every scenario, Mailroom only unless --peers; for CI (exit 1 on any
    /// verification failure).
    #[arg(long)]
    quick: bool,
    /// The mailroom binary (default: `mailroom` next to this program, i.e. target/release/).
    #[arg(long)]
    mailroom: Option<PathBuf>,
    /// Work directory (default: a new /tmp/mailroom-bench-<pid>); data, logs and results.
    #[arg(long)]
    workdir: Option<PathBuf>,
    /// Also run Postfix and Dovecot (needs root, Postfix and Dovecot installed; see
    /// scripts/bench-peers).
    #[arg(long)]
    peers: bool,
    /// The peers script (default: scripts/bench-peers of this source tree).
    #[arg(long)]
    peers_script: Option<PathBuf>,
    /// With --peers: S2 signed also against Postfix signing through OpenDKIM (one RSA-2048
    /// signature by milter; needs opendkim, see scripts/bench-peers).
    #[arg(long)]
    peer_dkim: bool,
    /// Scenarios to run, comma separated: probe,s1,s1web,s2,s2t,s2s,s3,s4,s5 (default: all;
    /// s5 not in --quick).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Accounts that S1 spreads messages over.
    #[arg(long)]
    accounts: Option<usize>,
    /// Concurrent SMTP connections in S1, S2 and S4.
    #[arg(long)]
    connections: Option<usize>,
    /// Messages per size in S1.
    #[arg(long)]
    messages: Option<usize>,
    /// Messages per size in S2.
    #[arg(long)]
    relay_messages: Option<usize>,
    /// S3 mailboxes.
    #[arg(long)]
    pop3_mailboxes: Option<usize>,
    /// S3 messages per mailbox.
    #[arg(long)]
    pop3_messages: Option<usize>,
    /// S3 concurrent POP3 clients.
    #[arg(long)]
    pop3_clients: Option<usize>,
    /// S3 message size in bytes.
    #[arg(long, default_value_t = 4096)]
    pop3_size: usize,
    /// S4 idle SMTP connections.
    #[arg(long)]
    idle_smtp: Option<usize>,
    /// S4 idle POP3 connections.
    #[arg(long)]
    idle_pop3: Option<usize>,
    /// Seconds for each of the two disk probes.
    #[arg(long)]
    probe_seconds: Option<f64>,
    /// Also write the results (Markdown) to this file.
    #[arg(long)]
    out: Option<PathBuf>,
    /// "ip:port" of a DNS server with the records of client.bench.test: the SMTP client is
    /// then untrusted and every S1 message is checked (SPF, DKIM, DMARC, ARC) through it.
    #[arg(long)]
    verify_dns: Option<std::net::SocketAddr>,
    /// S1 with a DNS blocklist looked up at this "ip:port" for every connection from an
    /// untrusted client (`filtered`).
    #[arg(long)]
    filter_dns: Option<std::net::SocketAddr>,
    /// S1 with every message scanned by the rspamd at this URL (`filtered`).
    #[arg(long)]
    filter_rspamd: Option<String>,
    /// S1WEB: milliseconds between two rounds of HTTPS requests (/metrics, then the page).
    #[arg(long, default_value_t = 100)]
    scrape_every: u64,
    /// S1WEB: the page fetched beside /metrics (e.g. /admin/login).
    #[arg(long, default_value = "/.well-known/autoconfig/mail/config-v1.1.xml")]
    web_page: String,
    /// S1WEB: the Host header of the page request.
    #[arg(long, default_value = "autoconfig.bench.test")]
    web_host: String,
    /// Keep the work directory (it is always kept when a verification failed).
    #[arg(long)]
    keep: bool,
}

struct Scale {
    accounts: usize,
    connections: usize,
    messages: usize,
    relay_messages: usize,
    pop3_mailboxes: usize,
    pop3_messages: usize,
    pop3_clients: usize,
    idle_smtp: usize,
    idle_pop3: usize,
    probe_seconds: f64,
}

impl Scale {
    fn from(a: &Args) -> Scale {
        let q = a.quick;
        let d =
            |v: Option<usize>, quick: usize, full: usize| v.unwrap_or(if q { quick } else { full });
        Scale {
            accounts: d(a.accounts, 20, 1000),
            connections: d(a.connections, 20, 50),
            messages: d(a.messages, 200, 5000),
            relay_messages: d(a.relay_messages, 200, 2000),
            pop3_mailboxes: d(a.pop3_mailboxes, 20, 1000),
            pop3_messages: d(a.pop3_messages, 5, 100),
            pop3_clients: d(a.pop3_clients, 20, 50),
            idle_smtp: d(a.idle_smtp, 200, 10_000),
            idle_pop3: d(a.idle_pop3, 200, 1000),
            probe_seconds: a.probe_seconds.unwrap_or(if q { 1.0 } else { 5.0 }),
        }
    }
}

fn main() {
    let args = Args::parse();
    match run(&args) {
        Ok(failed) => std::process::exit(if failed { 1 } else { 0 }),
        Err(e) => {
            eprintln!("mailroom-bench: {e}");
            std::process::exit(2);
        }
    }
}

/// Raises RLIMIT_NOFILE to its hard limit (S4 holds thousands of sockets here, and the
/// server, our child, inherits the limit). Returns the new soft limit.
fn raise_fd_limit() -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to an rlimit we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) == 0 {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
    r.rlim_cur
}

fn default_mailroom() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("mailroom")))
        .unwrap_or_else(|| PathBuf::from("target/release/mailroom"))
}

/// A liveness bound for waiting on deliveries: generous, only to stop a hang.
fn guard(n: usize) -> Duration {
    Duration::from_secs(120 + (n / 20) as u64)
}

fn run(args: &Args) -> Result<bool, String> {
    let sc = Scale::from(args);
    let want =
        |s: &str| args.only.is_empty() || args.only.iter().any(|o| o.eq_ignore_ascii_case(s));
    let fd_limit = raise_fd_limit();
    let bin = args.mailroom.clone().unwrap_or_else(default_mailroom);
    if !bin.exists() {
        return Err(format!(
            "{} not found: cargo build --release -p mailroom, or --mailroom PATH",
            bin.display()
        ));
    }
    let work = args
        .workdir
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("/tmp/mailroom-bench-{}", std::process::id())));
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let work = work.canonicalize().map_err(|e| e.to_string())?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let mut rep = Report::default();
    let started = Instant::now();
    eprintln!(
        "mailroom-bench: work directory {} (fd limit {fd_limit})",
        work.display()
    );

    // The relay scenarios send from the domain alone: no account needed for them.
    let needs_accounts = ["s1", "s1web", "s3", "s4", "s5"].iter().any(|s| want(s));
    let accounts = if needs_accounts {
        sc.accounts.max(sc.pop3_mailboxes)
    } else {
        0
    };
    let mut mr = match args.verify_dns {
        Some(dns) => Mailroom::configure_checked(&bin, &work.join("mailroom"), dns)?,
        None => Mailroom::configure(&bin, &work.join("mailroom"))?,
    };
    filtered::configure(&mr, args.filter_dns, args.filter_rspamd.as_deref())?;
    let https = if want("s1web") {
        Some(web_scrape::configure(&mr)?)
    } else {
        None
    };
    let t = Instant::now();
    mr.create_accounts(accounts, 2)?;
    eprintln!(
        "mailroom-bench: {accounts} accounts created in {:.1}s",
        t.elapsed().as_secs_f64()
    );
    mr.start()?;

    let peers = if args.peers {
        let script = args.peers_script.clone().unwrap_or_else(|| {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/bench-peers")
        });
        let p = peers::Peers::start(&script, &work.join("peers"), accounts, PASSWORD)?;
        eprintln!(
            "mailroom-bench: peers up: Postfix {} Dovecot {}",
            p.postfix_smtp, p.dovecot_pop3
        );
        Some(p)
    } else {
        None
    };

    let mut probe_creates = None;
    if want("probe") {
        let p = probe::run(&work.join("probe"), sc.probe_seconds)
            .map_err(|e| format!("disk probe: {e}"))?;
        // The probe's own rows carry its figures in the "Mailroom" column (same disk).
        let (a, b) = (Some(p.fdatasync_per_s), Some(p.creates_per_s));
        rep.add(
            "disk probe",
            "4 KiB write + fdatasync, 1 writer",
            "ops/s",
            a,
            None,
            None,
        );
        let fig = "create+fsync+rename+dir fsync, 16 writers";
        rep.add("disk probe", fig, "ops/s", b, None, b);
        eprintln!(
            "mailroom-bench: probe: {:.0} fdatasync/s, {:.0} durable creates/s",
            p.fdatasync_per_s, p.creates_per_s
        );
        probe_creates = Some(p.creates_per_s);
    }

    // S4 first, so its memory figures start from a fresh server; after each later scenario
    // the server's RSS is recorded too (growth there is worth a look).
    let mpid = mr.pid().expect("server running");
    let mrss = || report::rss_kib(mpid).map(|k| k as f64 / 1024.0);
    if want("s4") {
        s4(&rt, &mut rep, &mr, peers.as_ref(), &sc);
    }

    if want("s1") {
        for (size, label) in [(4096usize, "4 KiB"), (65536, "64 KiB")] {
            let scen = format!("S1 inbound {label}");
            let m = s1(
                &rt,
                &mut rep,
                &scen,
                mr.smtp,
                &|k| mr.maildir(&user(k)),
                &sc,
                size,
                sc.messages,
            );
            let p = peers.as_ref().map(|p| {
                s1(
                    &rt,
                    &mut rep,
                    &format!("{scen} (Postfix)"),
                    p.postfix_smtp,
                    &|k| p.postfix_maildir(&user(k)),
                    &sc,
                    size,
                    sc.messages,
                )
            });
            add_s1_rows(&mut rep, &scen, &m, p.as_ref(), probe_creates);
        }
    }

    if want("s1") {
        rep.add("memory", "Mailroom RSS after S1", "MiB", mrss(), None, None);
    }

    if let Some(https) = https {
        let plan = web_scrape::Plan {
            https,
            page: args.web_page.clone(),
            page_host: args.web_host.clone(),
            every: Duration::from_millis(args.scrape_every.max(1)),
        };
        web_scrape::run(&rt, &mut rep, &mr, &sc, plan);
    }

    if want("s2") {
        let sink = peers::Sink::start(mr.sink, &work.join("sink-mailroom.out"))?;
        let psink = match &peers {
            Some(p) => Some(peers::Sink::start(
                p.postfix_relayhost,
                &work.join("sink-postfix.out"),
            )?),
            None => None,
        };
        for (size, label) in [(4096usize, "4 KiB"), (102_400, "100 KiB")] {
            let scen = format!("S2 relay {label}");
            // One S2 phase of this size: (report, scenario, server, its sink, Mailroom or not, From).
            let relay = |rep: &mut Report,
                         scen: &str,
                         addr: std::net::SocketAddr,
                         sink: &dyn scenarios::Counted,
                         mailroom: Option<&Mailroom>,
                         from: &str| {
                s2(
                    &rt, rep, scen, addr, sink, mailroom, &sc, size, from, &never,
                )
            };
            // From our domain: DKIM-signed (Ed25519 + RSA) at enqueue, like real mail.
            let m = relay(&mut rep, &scen, mr.smtp, &sink, Some(&mr), SIGNED_FROM);
            // The same server and run, From a domain without keys: no signature.
            let unsigned = format!("{scen} unsigned");
            let u = relay(
                &mut rep,
                &unsigned,
                mr.smtp,
                &sink,
                Some(&mr),
                UNSIGNED_FROM,
            );
            rep.add(
                &unsigned,
                "relayed msg/s, end to end, not DKIM-signed",
                "msg/s",
                u,
                None,
                None,
            );
            let p = match (&peers, &psink) {
                (Some(p), Some(ps)) => relay(
                    &mut rep,
                    &format!("{scen} (Postfix)"),
                    p.postfix_smtp,
                    ps,
                    None,
                    SIGNED_FROM,
                ),
                _ => None,
            };
            rep.add(
                &scen,
                "relayed msg/s, end to end, DKIM-signed",
                "msg/s",
                m,
                p,
                probe_creates,
            );
            if let (true, Some(p), Some(ps)) = (args.peer_dkim, &peers, &psink) {
                p.dkim(true)?;
                let signed = relay(
                    &mut rep,
                    &format!("{scen} (Postfix + OpenDKIM)"),
                    p.postfix_smtp,
                    ps,
                    None,
                    SIGNED_FROM,
                );
                p.dkim(false)?;
                rep.add(
                    &format!("{scen} signed by both"),
                    "relayed msg/s, DKIM-signed (peer: Postfix + OpenDKIM, one RSA-2048)",
                    "msg/s",
                    m,
                    signed,
                    None,
                );
            }
        }
    }

    if want("s2") {
        rep.add("memory", "Mailroom RSS after S2", "MiB", mrss(), None, None);
    }

    if want("s2t") {
        s2t(&rt, &mut rep, &bin, &work, &sc)?;
    }

    if want("s2s") {
        sts::run(
            &rt,
            &mut rep,
            &bin,
            &work,
            &sc,
            peers.as_ref(),
            probe_creates,
        )?;
    }

    if want("s3") {
        let boxes: Vec<PathBuf> = (0..sc.pop3_mailboxes)
            .map(|k| mr.maildir(&user(k)))
            .collect();
        maildir::clear(&boxes);
        let bytes = maildir::populate(&boxes, sc.pop3_messages, args.pop3_size)
            .map_err(|e| format!("populate: {e}"))?;
        eprintln!(
            "mailroom-bench: S3: {} mailboxes x {} messages ({:.1} MB) written",
            sc.pop3_mailboxes,
            sc.pop3_messages,
            bytes as f64 / 1e6
        );
        if let Some(p) = &peers {
            for (k, src) in boxes.iter().enumerate() {
                let home = p.dovecot_mail.join(user(k));
                let _ = std::fs::remove_dir_all(&home);
                maildir::link_copy(
                    src,
                    &p.dovecot_maildir(&user(k)),
                    Some((p.dovecot_uid, p.dovecot_uid)),
                )
                .map_err(|e| format!("dovecot maildir {}: {e}", home.display()))?;
            }
        }
        // Cold: the first sessions after start, every login a full password check (argon2id
        // here, Dovecot's scheme there); warm: the same sessions again, logins answered from
        // each server's cache of recent successes.
        let scen = format!("S3 POP3 {}x{}", sc.pop3_mailboxes, sc.pop3_messages);
        let dpid = peers.as_ref().map(|p| p.dovecot_pid);
        let mut runs = Vec::new();
        for pass in ["cold", "warm"] {
            let m = s3(
                &rt,
                &mut rep,
                &format!("S3 POP3 {pass}"),
                mr.pop3,
                mr.pid(),
                &sc,
            );
            let p = peers.as_ref().and_then(|p| {
                s3(
                    &rt,
                    &mut rep,
                    &format!("S3 POP3 {pass} (Dovecot)"),
                    p.dovecot_pop3,
                    dpid,
                    &sc,
                )
            });
            runs.push((pass, m, p));
        }
        let g = |r: &Option<S3>, f: fn(&S3) -> Option<f64>| r.as_ref().and_then(f);
        for (pass, m, p) in &runs {
            let row = |what: &str| format!("{pass}: {what}");
            let rows: [(String, &str, Figure); 6] = [
                (row("RETR/s"), "msg/s", |r| r.retr_s),
                (row("retrieved"), "MB/s", |r| r.mb_s),
                (row("sessions (login..QUIT)"), "/s", |r| r.sessions_s),
                (row("login latency p50"), "ms", |r| r.login_p50),
                (row("login latency p99"), "ms", |r| r.login_p99),
                (row("server CPU per RETR"), "ms", |r| r.cpu_ms_per_retr),
            ];
            for (what, unit, f) in rows {
                rep.add(&scen, &what, unit, g(m, f), g(p, f), None);
            }
        }
        if let Some(p) = &peers {
            rep.note(format!(
                "S3: Mailroom hashes passwords with argon2id (slow on purpose); Dovecot here uses {} (BENCH_DOVECOT_SCHEME)",
                p.dovecot_scheme
            ));
        }
        let dov = peers
            .as_ref()
            .and_then(|p| report::tree_rss_mib(p.dovecot_pid));
        rep.add(
            "memory",
            "server RSS after S3 (peer: Dovecot tree)",
            "MiB",
            mrss(),
            dov,
            None,
        );
    }

    if want("s5") && (!args.quick || !args.only.is_empty()) {
        flood::run(&rt, &mut rep, &bin, &work, peers.as_ref(), &sc)?;
    }

    mr.stop();
    drop(peers);
    let peer_name = "peer (Postfix / Dovecot)";
    let mut md = format!(
        "mailroom-bench {} run, {} (elapsed {:.0}s)\n\n",
        if args.quick { "quick" } else { "full" },
        describe_scale(&sc),
        started.elapsed().as_secs_f64()
    );
    md.push_str(&rep.table(peer_name));
    for n in &rep.notes {
        md.push_str(&format!("\nnote: {n}"));
    }
    for f in &rep.failures {
        md.push_str(&format!("\nVERIFICATION FAILED: {f}"));
    }
    md.push('\n');
    println!("{md}");
    let _ = std::fs::write(work.join("results.md"), &md);
    if let Some(o) = &args.out {
        std::fs::write(o, &md).map_err(|e| format!("{}: {e}", o.display()))?;
    }
    let failed = !rep.failures.is_empty();
    if failed || args.keep || args.workdir.is_some() {
        eprintln!("mailroom-bench: work directory kept: {}", work.display());
    } else {
        let _ = std::fs::remove_dir_all(&work);
    }
    if failed {
        eprintln!(
            "mailroom-bench: {} verification failure(s)",
            rep.failures.len()
        );
    }
    Ok(failed)
}

/// One figure of an S3 result.
type Figure = fn(&S3) -> Option<f64>;

fn describe_scale(sc: &Scale) -> String {
    format!(
        "S1 {} msgs/size over {} accounts, {} connections; S2 {} msgs/size; S3 {} mailboxes x {} msgs, {} clients; S4 {} SMTP + {} POP3 idle",
        sc.messages, sc.accounts, sc.connections, sc.relay_messages, sc.pop3_mailboxes, sc.pop3_messages, sc.pop3_clients, sc.idle_smtp, sc.idle_pop3
    )
}
