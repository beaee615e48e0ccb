//! The scenarios themselves (S1 inbound SMTP, S2 relay, S2T relay beside a tarpit, S3 POP3,
//! S4 idle connections): each drives its load against Mailroom (and, with `--peers`, Postfix or
//! Dovecot) and adds its rows to the report. `main` decides which run, with what scale.

use super::*;

pub(crate) fn report_errors(rep: &mut Report, scen: &str, what: &str, errs: &[String]) {
    if errs.is_empty() {
        return;
    }
    let shown: Vec<&str> = errs.iter().take(3).map(|s| s.as_str()).collect();
    rep.fail(format!(
        "{scen}: {} {what}; first: {}",
        errs.len(),
        shown.join(" / ")
    ));
}

pub(crate) struct S1 {
    pub(crate) accepted_s: Option<f64>,
    pub(crate) delivered_s: Option<f64>,
    pub(crate) p50: Option<f64>,
    pub(crate) p99: Option<f64>,
    /// When the SMTP load ran (first connection .. last reply), for what runs beside it.
    pub(crate) load: std::ops::Range<Instant>,
}

/// Flushes what earlier scenarios left dirty in the page cache, so one scenario's writeback
/// is not billed to the next (the same for every server).
pub(crate) fn settle() {
    // SAFETY: sync has no preconditions.
    unsafe { libc::sync() };
    std::thread::sleep(std::time::Duration::from_millis(500));
}

/// S1 against one server: clear the Maildirs, send `count` messages of `size` to
/// u(i % accounts), wait until all are in the Maildirs and verify each one.
#[allow(clippy::too_many_arguments)]
pub(crate) fn s1(
    rt: &tokio::runtime::Runtime,
    rep: &mut Report,
    scen: &str,
    addr: std::net::SocketAddr,
    maildir: &dyn Fn(usize) -> PathBuf,
    sc: &Scale,
    size: usize,
    count: usize,
) -> S1 {
    settle();
    let boxes: Vec<PathBuf> = (0..sc.accounts).map(maildir).collect();
    maildir::clear(&boxes);
    let n = sc.accounts;
    let prefix = format!("s1-{size}-{}", std::process::id());
    let tag_prefix = prefix.clone();
    let job = smtp::Job {
        count,
        size,
        from: "sender@client.bench.test".into(),
        rcpt: Arc::new(move |i| format!("{}@{DOMAIN}", user(i % n))),
        tag: Arc::new(move |i| format!("{tag_prefix}-{i}")),
    };
    eprintln!(
        "mailroom-bench: {scen}: sending {count} messages over {} connections",
        sc.connections
    );
    let start = Instant::now();
    let mut r = rt.block_on(smtp::load(addr, sc.connections, job));
    report_errors(rep, scen, "messages refused or failed", &r.errors);
    let (got, done) = maildir::wait_count(&boxes, r.sent, guard(r.sent));
    if done.is_none() {
        rep.fail(format!(
            "{scen}: only {got} of {} accepted messages delivered",
            r.sent
        ));
    }
    let problems = maildir::verify(&boxes, count, &|i| format!("{prefix}-{i}"), &|i| i % n);
    report_errors(
        rep,
        scen,
        "messages not verified in their Maildir",
        &problems,
    );
    let out = S1 {
        load: start..start + r.elapsed,
        accepted_s: rate(r.sent, r.elapsed),
        delivered_s: done.and_then(|d| rate(got, d - start)),
        p50: percentile_ms(&mut r.latencies, 50.0),
        p99: percentile_ms(&mut r.latencies, 99.0),
    };
    eprintln!(
        "mailroom-bench: {scen}: accepted {:.0}/s, delivered {:.0}/s, p50 {:.1} ms, p99 {:.1} ms, verified {}",
        out.accepted_s.unwrap_or(0.0),
        out.delivered_s.unwrap_or(0.0),
        out.p50.unwrap_or(0.0),
        out.p99.unwrap_or(0.0),
        if problems.is_empty() { "ok" } else { "FAILED" }
    );
    maildir::clear(&boxes);
    out
}

pub(crate) fn add_s1_rows(
    rep: &mut Report,
    scen: &str,
    m: &S1,
    p: Option<&S1>,
    probe: Option<f64>,
) {
    rep.add(
        scen,
        "accepted (until last 250)",
        "msg/s",
        m.accepted_s,
        p.and_then(|p| p.accepted_s),
        probe,
    );
    rep.add(
        scen,
        "delivered into Maildir, end to end",
        "msg/s",
        m.delivered_s,
        p.and_then(|p| p.delivered_s),
        probe,
    );
    rep.add(
        scen,
        "end-of-DATA reply p50",
        "ms",
        m.p50,
        p.and_then(|p| p.p50),
        None,
    );
    rep.add(
        scen,
        "end-of-DATA reply p99",
        "ms",
        m.p99,
        p.and_then(|p| p.p99),
        None,
    );
}

/// S2's sender in our domain: Mailroom DKIM-signs its mail (Postfix, without a milter, not).
pub(crate) const SIGNED_FROM: &str = "sender@bench.test";
/// A sender domain Mailroom holds no keys for: its mail is relayed unsigned.
pub(crate) const UNSIGNED_FROM: &str = "sender@unsigned.test";

/// The far end of a relay scenario: how many messages it has received so far.
pub(crate) trait Counted {
    fn count(&self) -> usize;
}

/// For [`s2`]'s `give_up` when nothing can make the wait hopeless.
pub(crate) fn never() -> Option<String> {
    None
}

/// S2 against one server: send `relay_messages` from `from` to a remote domain and time until
/// the sink has them all (and, for Mailroom, the queue is empty). `give_up` is asked while
/// waiting; a reason from it ends the wait at once (a failure).
#[allow(clippy::too_many_arguments)]
pub(crate) fn s2(
    rt: &tokio::runtime::Runtime,
    rep: &mut Report,
    scen: &str,
    addr: std::net::SocketAddr,
    sink: &dyn Counted,
    mr: Option<&Mailroom>,
    sc: &Scale,
    size: usize,
    from: &str,
    give_up: &dyn Fn() -> Option<String>,
) -> Option<f64> {
    settle();
    let count = sc.relay_messages;
    let base = sink.count();
    let prefix = format!("s2-{size}-{}", std::process::id());
    let job = smtp::Job {
        count,
        size,
        from: from.into(),
        rcpt: Arc::new(|i| format!("r{}@remote.example", i % 100)),
        tag: Arc::new(move |i| format!("{prefix}-{i}")),
    };
    eprintln!("mailroom-bench: {scen}: relaying {count} messages");
    let start = Instant::now();
    let r = rt.block_on(smtp::load(addr, sc.connections, job));
    report_errors(rep, scen, "messages refused or failed", &r.errors);
    let deadline = start + guard(r.sent);
    let mut done = None;
    let mut hopeless = None;
    while Instant::now() < deadline {
        if sink.count() >= base + r.sent && mr.is_none_or(|m| m.queue_len() == 0) {
            done = Some(start.elapsed());
            break;
        }
        hopeless = give_up();
        if hopeless.is_some() {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    let got = sink.count() - base;
    if done.is_none() {
        rep.fail(format!(
            "{scen}: sink received {got} of {} accepted messages{}{}",
            r.sent,
            hopeless
                .map(|h| format!(" (gave up waiting: {h})"))
                .unwrap_or_default(),
            mr.map(|m| format!(", {} still queued", m.queue_len()))
                .unwrap_or_default()
        ));
    } else if got != r.sent {
        rep.fail(format!(
            "{scen}: sink received {got} messages for {} sent",
            r.sent
        ));
    }
    let v = done.and_then(|d| rate(r.sent, d));
    eprintln!(
        "mailroom-bench: {scen}: {:.0} msg/s end to end, sink got {got}",
        v.unwrap_or(0.0)
    );
    v
}

/// S2T: one slow destination must not delay the others. A second Mailroom routes remote mail
/// by DNS (each domain its own destination): S2 4 KiB toward the healthy sink alone, then again
/// while `relay_messages / 2` messages (1,000 at full scale) wait for a tarpit MX that accepts and
/// never answers. Figure: the second rate as a share of the first (target: at least 80%).
pub(crate) fn s2t(
    rt: &tokio::runtime::Runtime,
    rep: &mut Report,
    bin: &Path,
    work: &Path,
    sc: &Scale,
) -> Result<(), String> {
    let dns = tarpit::start_dns(std::net::Ipv4Addr::new(127, 0, 0, 42))?;
    let mut mr = Mailroom::configure_routed(bin, &work.join("mailroom-routed"), dns)?;
    mr.cli_domain_only()?;
    mr.start()?;
    let sink = peers::Sink::start(mr.sink, &work.join("sink-routed.out"))?;
    let tarpit = tarpit::Tarpit::start(std::net::SocketAddr::new(
        tarpit::TARPIT_IP.into(),
        mr.sink.port(),
    ))?;
    let alone = s2(
        rt,
        rep,
        "S2T healthy alone",
        mr.smtp,
        &sink,
        None,
        sc,
        4096,
        SIGNED_FROM,
        &never,
    );
    let queued = (sc.relay_messages / 2).max(1);
    let job = smtp::Job {
        count: queued,
        size: 4096,
        from: "sender@bench.test".into(),
        rcpt: Arc::new(|i| format!("t{}@{}", i % 100, tarpit::TARPIT_DOMAIN)),
        tag: Arc::new(|i| format!("s2t-tarpit-{i}")),
    };
    eprintln!("mailroom-bench: S2T: queueing {queued} messages for the tarpit");
    let r = rt.block_on(smtp::load(mr.smtp, sc.connections, job));
    report_errors(rep, "S2T", "tarpit messages refused", &r.errors);
    let with = s2(
        rt,
        rep,
        "S2T healthy with the tarpit",
        mr.smtp,
        &sink,
        None,
        sc,
        4096,
        SIGNED_FROM,
        &never,
    );
    let held = tarpit.accepted.load(std::sync::atomic::Ordering::Relaxed);
    mr.kill();
    rep.add(
        "S2T relay 4 KiB",
        "healthy alone",
        "msg/s",
        alone,
        None,
        None,
    );
    rep.add(
        "S2T relay 4 KiB",
        &format!("healthy while {queued} wait for a tarpit"),
        "msg/s",
        with,
        None,
        None,
    );
    let share = match (alone, with) {
        (Some(a), Some(w)) if a > 0.0 => Some(100.0 * w / a),
        _ => None,
    };
    rep.add("S2T relay 4 KiB", "with / alone", "%", share, None, None);
    rep.note(format!(
        "S2T: the tarpit accepted {held} connections (the scheduler's window for it, at most per_destination_limit = 20 at a time)"
    ));
    Ok(())
}

pub(crate) struct S3 {
    pub(crate) retr_s: Option<f64>,
    pub(crate) mb_s: Option<f64>,
    pub(crate) sessions_s: Option<f64>,
    pub(crate) login_p50: Option<f64>,
    pub(crate) login_p99: Option<f64>,
    /// Server CPU (user + system, whole process tree) per message retrieved, ms.
    pub(crate) cpu_ms_per_retr: Option<f64>,
}

pub(crate) fn s3(
    rt: &tokio::runtime::Runtime,
    rep: &mut Report,
    scen: &str,
    addr: std::net::SocketAddr,
    server_pid: Option<u32>,
    sc: &Scale,
) -> Option<S3> {
    settle();
    let cpu_before = server_pid.and_then(report::tree_cpu_secs);
    eprintln!(
        "mailroom-bench: {scen}: {} clients over {} mailboxes",
        sc.pop3_clients, sc.pop3_mailboxes
    );
    let mut r = rt.block_on(pop3::load(
        addr,
        sc.pop3_clients,
        sc.pop3_mailboxes,
        sc.pop3_messages,
        Arc::new(|k| format!("{}@{DOMAIN}", user(k))),
        PASSWORD.into(),
    ));
    report_errors(rep, scen, "sessions failed", &r.errors);
    let want = sc.pop3_mailboxes * sc.pop3_messages;
    if r.errors.is_empty() && r.retrieved != want {
        rep.fail(format!(
            "{scen}: retrieved {} of {want} messages",
            r.retrieved
        ));
    }
    let secs = r.elapsed.as_secs_f64();
    let cpu = match (cpu_before, server_pid.and_then(report::tree_cpu_secs)) {
        (Some(a), Some(b)) if r.retrieved > 0 => Some((b - a) * 1000.0 / r.retrieved as f64),
        _ => None,
    };
    let out = S3 {
        cpu_ms_per_retr: cpu,
        retr_s: rate(r.retrieved, r.elapsed),
        mb_s: (secs > 0.0).then(|| r.bytes as f64 / 1e6 / secs),
        sessions_s: rate(r.sessions, r.elapsed),
        login_p50: percentile_ms(&mut r.logins, 50.0),
        login_p99: percentile_ms(&mut r.logins, 99.0),
    };
    eprintln!(
        "mailroom-bench: {scen}: {:.0} RETR/s, {:.1} MB/s, {:.1} sessions/s, login p50 {:.1} ms p99 {:.1} ms, server CPU {:.3} ms/RETR",
        out.retr_s.unwrap_or(0.0),
        out.mb_s.unwrap_or(0.0),
        out.sessions_s.unwrap_or(0.0),
        out.login_p50.unwrap_or(0.0),
        out.login_p99.unwrap_or(0.0),
        out.cpu_ms_per_retr.unwrap_or(0.0)
    );
    Some(out)
}

/// S4: hold idle POP3 then idle SMTP connections, read the server's RSS after each step, run
/// a smaller S1 meanwhile, then check a sample of the idle connections still answer.
pub(crate) fn s4(
    rt: &tokio::runtime::Runtime,
    rep: &mut Report,
    mr: &Mailroom,
    peers: Option<&peers::Peers>,
    sc: &Scale,
) {
    let pid = mr.pid().expect("server running");
    let rss = || report::rss_kib(pid).map(|k| k as f64 / 1024.0);
    let base = rss();
    let scen = "S4 idle connections";
    eprintln!(
        "mailroom-bench: {scen}: opening {} POP3 and {} SMTP idle connections",
        sc.idle_pop3, sc.idle_smtp
    );
    let (pop_idle, e1) = rt.block_on(pop3::open_idle(mr.pop3, sc.idle_pop3, 200));
    report_errors(rep, scen, "POP3 connections failed", &e1);
    let after_pop = rss();
    let (mut smtp_idle, e2) = rt.block_on(smtp::open_idle(mr.smtp, sc.idle_smtp, 200));
    report_errors(rep, scen, "SMTP connections failed", &e2);
    let after_smtp = rss();

    // S1 meanwhile (4 KiB, at most 2,000 messages).
    let s1scen = format!(
        "S1 4 KiB during S4 ({} + {} idle)",
        smtp_idle.len(),
        pop_idle.len()
    );
    let m = s1(
        rt,
        rep,
        &s1scen,
        mr.smtp,
        &|k| mr.maildir(&user(k)),
        sc,
        4096,
        sc.messages.min(2000),
    );

    // A sample of the idle SMTP sessions must still be served.
    let step = (smtp_idle.len() / 20).max(1);
    let dead = rt.block_on(async {
        let mut dead = 0;
        for c in smtp_idle.iter_mut().step_by(step) {
            if !matches!(c.cmd("NOOP").await, Ok((250, _))) {
                dead += 1;
            }
        }
        dead
    });
    if dead > 0 {
        rep.fail(format!(
            "{scen}: {dead} sampled idle SMTP connections no longer answer NOOP"
        ));
    }
    drop(smtp_idle);
    drop(pop_idle);

    // Dovecot: the same idle POP3 connections, RSS of its whole process tree.
    let mut dov = (None, None);
    if let Some(p) = peers {
        let b = report::tree_rss_mib(p.dovecot_pid);
        let (idle, e) = rt.block_on(pop3::open_idle(p.dovecot_pop3, sc.idle_pop3, 200));
        report_errors(rep, "S4 (Dovecot)", "POP3 connections failed", &e);
        std::thread::sleep(Duration::from_millis(500));
        dov = (b, report::tree_rss_mib(p.dovecot_pid));
        drop(idle);
        rep.note("S4: Postfix runs one smtpd process per SMTP connection (process_limit 100 by default), so it is not given 10,000 idle SMTP connections; its column is empty there".into());
    }
    let ip = sc.idle_pop3;
    let is = sc.idle_smtp;
    rep.add(scen, "server RSS, no connections", "MiB", base, dov.0, None);
    rep.add(
        scen,
        &format!("server RSS, {ip} idle POP3"),
        "MiB",
        after_pop,
        dov.1,
        None,
    );
    rep.add(
        scen,
        &format!("server RSS, {ip} idle POP3 + {is} idle SMTP"),
        "MiB",
        after_smtp,
        None,
        None,
    );
    if let (Some(b), Some(a)) = (after_pop, after_smtp) {
        rep.add(
            scen,
            "RSS per idle SMTP connection",
            "KiB",
            Some((a - b) * 1024.0 / is.max(1) as f64),
            None,
            None,
        );
    }
    rep.add(&s1scen, "end-of-DATA reply p50", "ms", m.p50, None, None);
    rep.add(&s1scen, "end-of-DATA reply p99", "ms", m.p99, None, None);
    rep.add(
        &s1scen,
        "accepted (until last 250)",
        "msg/s",
        m.accepted_s,
        None,
        None,
    );
}
