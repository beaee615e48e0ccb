//! `mailroom serve`: opens the directory and spool, loads (or makes) the TLS certificate,
//! binds every configured listener (a port that cannot be bound is an error naming the config
//! key), starts the SMTP services (25, 587, 465), the POP3 listeners and the queue runner,
//! reloads the certificate on SIGHUP, and shuts down in order on SIGTERM/SIGINT: stop
//! accepting, let sessions finish (then `421`), let running deliveries finish, exit 0.
//! Everything acknowledged is already durable in the spool, so nothing is lost by stopping.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mta::queue::Runner;
use mta::relay::{Relay, RelayConfig};
use proto::smtp::{Service, SessionConfig};
use smtpd::auth::SmtpAuth;
use smtpd::direct::Direct;
use smtpd::policy::DirectoryPolicy;
use smtpd::{Smtpd, SmtpdConfig};
use store::admission::AdmissionLimits;
use store::admission_gate::Gate;
use store::directory::Directory;
use store::login_guard::LoginGuard;
use store::spool::Spool;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::config::Config;
use crate::Failure;

fn bind_all(addrs: &[SocketAddr], key: &str) -> Result<Vec<std::net::TcpListener>, Failure> {
    let mut out = Vec::new();
    for addr in addrs {
        match bind(addr) {
            Ok(l) => out.push(l),
            // `[::]` on a host without IPv6: the IPv4 listeners still serve.
            Err(e)
                if addr.is_ipv6()
                    && addr.ip().is_unspecified()
                    && matches!(
                        e.raw_os_error(),
                        Some(libc::EAFNOSUPPORT | libc::EADDRNOTAVAIL)
                    ) =>
            {
                tracing::warn!("not listening on {addr} ({key}): {e}; no IPv6 on this host?");
            }
            Err(e) => {
                return Err(Failure::failed(format!(
                    "cannot listen on {addr} ({key}): {e}; change {key} in the config file"
                )))
            }
        }
    }
    Ok(out)
}

/// A non-blocking listener; an IPv6 one only for IPv6 (`IPV6_V6ONLY`), so `[::]:25` and
/// `0.0.0.0:25` are two sockets whatever `net.ipv6.bindv6only` says.
fn bind(addr: &SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(*addr), Type::STREAM, None)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.bind(&(*addr).into())?;
    socket.listen(1024)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Listening sockets, bound before privileges are dropped.
struct Listeners {
    smtp: Vec<std::net::TcpListener>,
    submission: Vec<std::net::TcpListener>,
    submissions: Vec<std::net::TcpListener>,
    pop3: Vec<std::net::TcpListener>,
    pop3s: Vec<std::net::TcpListener>,
    http: Vec<std::net::TcpListener>,
    https: Vec<std::net::TcpListener>,
}

/// The host name is in EHLO, `Received:` and bounces: other servers expect a fully
/// qualified name there (RFC 5321 §4.1.1.1), and some refuse mail from a bare one.
fn warn_if_not_fqdn(hostname: &str) {
    let labels: Vec<&str> = hostname.trim_end_matches('.').split('.').collect();
    if labels.len() < 2 || labels.iter().any(|l| l.is_empty()) {
        tracing::warn!(
            "hostname \"{hostname}\" is not a fully qualified domain name; it is used in EHLO, \
             Received: and bounces: set hostname = \"mx.example.org\" in the config file"
        );
    }
}

/// Runs the server until SIGTERM or SIGINT.
pub fn run(config: Config) -> Result<(), Failure> {
    // SIGHUP means "reload" here, never "stop": ignored until `serve` installs its handler
    // (first thing), so a log rotation during a long start (queue recovery, DKIM keys made
    // for old domains) cannot kill the server.
    // SAFETY: setting a signal's disposition to SIG_IGN has no preconditions.
    unsafe {
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
    }
    crate::logging::init(&config).map_err(|message| Failure { code: 2, message })?;
    crate::open_files::raise(&config);
    std::fs::create_dir_all(&config.data_dir).map_err(|e| {
        Failure::failed(format!(
            "cannot create data_dir {}: {e}",
            config.data_dir.display()
        ))
    })?;
    // One server per data_dir, held until we return (or the kernel ends the process).
    let _lock = store::instance_lock::acquire(&config.data_dir).map_err(Failure::failed)?;
    warn_if_not_fqdn(&config.hostname);
    store::maildrop::prepare(&config.data_dir).map_err(|e| {
        Failure::failed(format!(
            "cannot prepare {}: {e}",
            config.data_dir.join(store::maildrop::DIR).display()
        ))
    })?;
    // Bind everything first: a port we cannot have stops the start before anything runs.
    let listeners = Listeners {
        smtp: bind_all(&config.smtp.listen, "smtp.listen")?,
        submission: bind_all(&config.smtp.submission, "smtp.submission")?,
        submissions: bind_all(&config.smtp.submissions, "smtp.submissions")?,
        pop3: bind_all(&config.pop3.listen, "pop3.listen")?,
        pop3s: bind_all(&config.pop3.pop3s, "pop3.pop3s")?,
        http: bind_all(&config.http.listen, "http.listen")?,
        https: bind_all(&config.http.https, "http.https")?,
    };
    // The key may be readable by root only: load it before dropping privileges.
    let source = crate::tls::cert_source(
        &config.tls.certificate,
        &config.tls.private_key,
        &config.hostname,
        &config.data_dir,
    )
    .map_err(Failure::failed)?;
    let (tls_config, cert) = crate::tls::server_config(source.clone()).map_err(Failure::failed)?;
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        // The service user may not be able to read the files at the next SIGHUP.
        if let Err(e) = crate::tls::install_copy(&source) {
            tracing::warn!("{e}");
        }
    }
    if let Some(user) = crate::privilege::service_user(&config)? {
        crate::privilege::own_data_dir(&config.data_dir, &user)?;
        crate::privilege::drop_to(&user)?;
        tracing::info!("running as user {} (uid {})", user.name, user.uid);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::failed(format!("cannot start runtime: {e}")))?;
    runtime.block_on(serve(config, listeners, tls_config, cert))
}

fn to_tokio(listeners: Vec<std::net::TcpListener>) -> Result<Vec<TcpListener>, Failure> {
    listeners
        .into_iter()
        .map(|l| TcpListener::from_std(l).map_err(|e| Failure::failed(format!("listener: {e}"))))
        .collect()
}

/// Gives every domain without DKIM keys its first pair (domains made before keys existed),
/// and returns the keyring to sign with, `None` when `[dkim] sign = false`.
fn dkim_keyring(
    config: &Config,
    directory: &Directory,
) -> Result<Option<Arc<dkim::Keyring>>, Failure> {
    let keys = crate::admin_dkim::open_keys(config)?;
    let now = crate::admin_dkim::unix_now();
    for domain in directory.list_domains().map_err(Failure::failed)? {
        match dkim::keygen::ensure(&keys, &domain, now) {
            Ok(made) => {
                for k in made {
                    tracing::info!(
                        "dkim: {domain}: made key {} ({}); publish it: mailroom dns-records {domain}",
                        k.selector,
                        k.algorithm.as_str()
                    );
                }
            }
            Err(e) => tracing::error!("dkim: {domain}: cannot make keys: {e}"),
        }
    }
    Ok(config.dkim.sign.then(|| Arc::new(dkim::Keyring::new(keys))))
}

async fn serve(
    config: Config,
    listeners: Listeners,
    tls_config: Arc<rustls::ServerConfig>,
    cert: Arc<crate::tls::ReloadableCert>,
) -> Result<(), Failure> {
    // Before anything slow: a SIGTERM during the start is then a shutdown right after it,
    // and SIGHUP stops being ignored only once it reloads.
    let signals = Signals::install();
    let directory = Arc::new(
        Directory::open(&config.data_dir)
            .map_err(Failure::failed)?
            .with_argon2(config.auth.argon2()),
    );
    let spool = Arc::new(Spool::open_and_recover(&config.data_dir).map_err(|e| {
        Failure::failed(format!(
            "cannot open the queue under {}: {e}",
            config.data_dir.display()
        ))
    })?);
    let keyring = dkim_keyring(&config, &directory)?;
    let srs_secret: Arc<[u8]> = store::srs_secret::load_or_create(&config.data_dir)
        .map_err(|e| Failure::failed(format!("SRS secret: {e}")))?
        .into();
    let postmaster = (!config.postmaster.is_empty()).then(|| config.postmaster.clone());
    let smtp_listeners = to_tokio(listeners.smtp)?;
    let submission_listeners = to_tokio(listeners.submission)?;
    let submissions_listeners = to_tokio(listeners.submissions)?;
    let pop3_listeners = to_tokio(listeners.pop3)?;
    let pop3s_listeners = to_tokio(listeners.pop3s)?;
    let http_listeners = to_tokio(listeners.http)?;
    let https_listeners = to_tokio(listeners.https)?;
    let acceptor = tokio_rustls::TlsAcceptor::from(tls_config);

    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let (queued_tx, queued_rx) = mpsc::unbounded_channel();

    // One resolver for every lookup: the relay's MX and the inbound checks.
    let dns = Arc::new(
        dns::Dns::new(&dns::DnsConfig {
            servers: config.dns_servers().to_vec(),
            ..dns::DnsConfig::default()
        })
        .map_err(|e| Failure::failed(format!("dns: {e}")))?,
    );
    let checks = config.verify.checks();
    // With every method off there is nothing to check and no header to add.
    // DMARC results kept for aggregate reports (`[verify] dmarc_reports`).
    let dmarc_reports = (config.verify.dmarc_reports && checks.dmarc)
        .then(|| store::dmarc_reports::DmarcReports::open(&config.data_dir).map(Arc::new))
        .transpose()
        .map_err(|e| Failure::failed(format!("dmarc reports: {e}")))?;
    let verifier = (checks.spf || checks.dkim || checks.dmarc || checks.arc).then(|| {
        let v = smtpd::verify::Verifier::new(dns.clone(), checks, &config.hostname);
        Arc::new(match &dmarc_reports {
            Some(r) => v.with_reports(r.clone()),
            None => v,
        })
    });
    let filter_dns = dns.clone();
    let report_dns = dns.clone();
    let relay = Arc::new(build_relay(&config, dns)?);
    let forward_failures = Arc::new(store::forward_failures::ForwardFailures::default());
    // One clock for every decision that reads the time (retries, expiry, DSN dates, the
    // forwarding-failure memory, login limits).
    let clock: Arc<dyn store::clock::Clock> = Arc::new(store::clock::SystemClock);
    let runner = Arc::new(Runner {
        directory: directory.clone(),
        spool: spool.clone(),
        data_dir: config.data_dir.clone(),
        hostname: config.hostname.clone(),
        postmaster: postmaster.clone(),
        sched: config.relay.schedule(config.delivery.concurrency),
        relay: Some(relay),
        retry: config.relay.retry(),
        resubmit: queued_tx.clone(),
        forward_failures: forward_failures.clone(),
        clock: clock.clone(),
        dkim: keyring.clone(),
        srs_secret: Some(srs_secret.clone()),
        quotas: Some(Arc::new(
            store::quota::Quotas::open(&config.data_dir).map_err(Failure::failed)?,
        )),
    });
    let direct = Arc::new(Direct {
        directory: directory.clone(),
        postmaster: postmaster.clone(),
        mda: runner.mda(),
    });
    let delivery_task = tokio::spawn(runner.clone().run(queued_rx, shutdown_rx.clone()));
    if config.relay.tls_reports {
        let period = config.relay.tls_report_period.get();
        tokio::spawn(runner.clone().tls_reports(period, shutdown_rx.clone()));
    }
    if let Some(reports) = dmarc_reports {
        let reporter = mta::dmarc_report::DmarcReporter {
            reports,
            spool: spool.clone(),
            dns: report_dns,
            dkim: keyring.clone(),
            hostname: config.hostname.clone(),
            from: format!("postmaster@{}", config.hostname),
            interval: config.verify.dmarc_report_interval.get(),
            queued: queued_tx.clone(),
        };
        tokio::spawn(reporter.run(shutdown_rx.clone()));
    }
    let queue_gauges = tokio::spawn(crate::queue_gauges::run(spool.clone()));

    let mut servers = tokio::task::JoinSet::new();
    let policy: Arc<dyn proto::smtp::Policy + Send + Sync> = Arc::new(
        DirectoryPolicy::new(directory.clone(), postmaster)
            .with_clock(clock.clone())
            .with_forward_failures(forward_failures)
            .with_srs(srs_secret),
    );
    // One admission for all SMTP listeners: slots, per-address and per-network limits,
    // stress mode.
    let gate = Gate::new(
        "smtpd",
        AdmissionLimits::new(
            config.smtp.max_connections,
            config.smtp.max_connections_per_ip,
            config.smtp.max_connections_per_net,
            config.smtp.stress_threshold,
        ),
    );
    // One login guard for every SMTP and POP3 listener: failures count across protocols.
    let login_guard = Arc::new(LoginGuard::with_clock(config.auth.limits(), clock.clone()));
    let filters = crate::screening::build(
        &config,
        filter_dns,
        clock.clone(),
        &config.data_dir,
        directory.clone(),
    )
    .map_err(|e| Failure::failed(format!("filter: {e}")))?;
    let guard = Arc::new(SmtpAuth::new(directory.clone(), login_guard.clone()));
    for (service, listeners) in [
        (Service::Mx, smtp_listeners),
        (Service::Submission, submission_listeners),
        (Service::Submissions, submissions_listeners),
    ] {
        let smtpd = Arc::new(Smtpd {
            config: SmtpdConfig {
                session: Arc::new(SessionConfig {
                    max_message_size: config.smtp.max_message_size,
                    max_recipients: config.smtp.max_recipients,
                    tls_available: true,
                    max_errors: config.smtp.max_errors,
                    max_header_size: config.smtp.max_header_size,
                    max_received_headers: config.smtp.max_received_headers,
                    ..SessionConfig::new(&config.hostname, service)
                }),
                max_session_time: config.smtp.max_session_time.get(),
                trusted_networks: config.smtp.trusted_networks.clone(),
                command_timeout: config.smtp.command_timeout.get(),
                shutdown_grace: config.smtp.shutdown_grace.get(),
                stress_timeout: config.smtp.stress_timeout.get(),
                stress_max_errors: config.smtp.stress_max_errors,
                greet_delay: config.smtp.greet_delay.get(),
            },
            policy: policy.clone(),
            spool: spool.clone(),
            queued: queued_tx.clone(),
            gate: gate.clone(),
            tls: Some(acceptor.clone()),
            auth: guard.clone(),
            direct: config.delivery.direct_local.then(|| direct.clone()),
            verifier: verifier.clone().filter(|_| service == Service::Mx),
            dkim: keyring.clone(),
            filters: Some(filters.clone()),
        });
        for listener in listeners {
            let addr = listener.local_addr().map_or("-".into(), |a| a.to_string());
            tracing::info!(service = service.as_str(), "smtpd: listening on {addr}");
            servers.spawn(smtpd::serve(listener, smtpd.clone(), shutdown_rx.clone()));
        }
    }
    let pickup = crate::pickup::Pickup {
        config: config.clone(),
        directory: directory.clone(),
        spool: spool.clone(),
        queued: queued_tx.clone(),
    };
    servers.spawn(pickup.run(shutdown_rx.clone()));
    drop(queued_tx);
    let retention = spawn_retention(&config, clock.clone());
    let (pop3_config, pop3_auth) = pop3_service(&config, directory.clone());
    let pop3_sets = [(pop3_listeners, false), (pop3s_listeners, true)];
    for (listeners, implicit_tls) in pop3_sets {
        for listener in listeners {
            let addr = listener.local_addr().map_or("-".into(), |a| a.to_string());
            tracing::info!(implicit_tls, "pop3d: listening on {addr}");
            servers.spawn(pop3::serve(
                listener,
                pop3_config.clone(),
                pop3_auth.clone(),
                login_guard.clone(),
                Some(acceptor.clone()),
                implicit_tls,
                shutdown_rx.clone(),
            ));
        }
    }
    let web = web::Web {
        site: Arc::new(crate::web_face::site(&config)),
        backend: Arc::new(crate::web_face::DirectoryBackend {
            directory: directory.clone(),
        }),
        metrics: Some(Arc::new(|| metrics::encode(metrics::global().registry()))),
        challenges: web::Challenges::default(),
        console: Some(Arc::new(crate::web_admin::WebConsole::new(
            config.clone(),
            directory.clone(),
            login_guard.clone(),
        ))),
        sessions: Arc::default(),
    };
    let acme =
        crate::web_face::spawn_acme(&config, &directory, cert.clone(), web.challenges.clone());
    crate::web_face::spawn(
        &mut servers,
        web,
        http_listeners,
        https_listeners,
        acceptor.clone(),
        &config,
        &shutdown_rx,
    );
    tracing::info!(
        "mailroom started as {} with data_dir {}",
        config.hostname,
        config.data_dir.display()
    );

    // Freed memory (bursts of connections, argon2 checks) goes back to the system instead of
    // staying in malloc's per-thread arenas, so RSS follows the load down again.
    let trimmer = tokio::spawn(async {
        let mut every = tokio::time::interval(Duration::from_secs(30));
        loop {
            every.tick().await;
            // SAFETY: malloc_trim only releases free memory; safe to call from any thread.
            unsafe {
                libc::malloc_trim(0);
            }
        }
    });
    crate::sd_notify::notify("READY=1");
    let watchdog = crate::sd_notify::watchdog_interval().map(|every| {
        tracing::info!(every = %format!("{}ms", every.as_millis()), "systemd: watchdog ping");
        tokio::spawn(crate::sd_notify::watchdog(every))
    });
    let renewal = config.tls.certificate.is_empty().then(|| {
        tokio::spawn(crate::selfsigned::renew_daily(
            config.data_dir.clone(),
            config.hostname.clone(),
            cert.clone(),
        ))
    });
    // The metric of the certificate's remaining life, set every minute (and after a reload).
    let cert_metric = {
        let cert = cert.clone();
        let clock = clock.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(60));
            loop {
                every.tick().await;
                if let Some(left) = cert.seconds_left(clock.unix() as i64) {
                    metrics::global().certificate_expiry_seconds.set(left);
                }
            }
        })
    };
    wait_for_signal(signals, &cert).await;
    cert_metric.abort();
    if let Some(r) = renewal {
        r.abort();
    }
    if let Some(a) = acme {
        a.abort();
    }
    crate::sd_notify::notify("STOPPING=1");
    trimmer.abort();
    queue_gauges.abort();
    if let Some(r) = retention {
        r.abort();
    }
    if let Some(w) = watchdog {
        w.abort();
    }
    tracing::info!(
        grace = %format!("{}s", config.smtp.shutdown_grace.get().as_secs()),
        "shutdown requested: no new connections; sessions get the grace to finish"
    );
    let _ = shutdown_tx.send(true);
    while servers.join_next().await.is_some() {}
    let _ = delivery_task.await;
    tracing::info!("mailroom stopped");
    Ok(())
}

/// The handlers of SIGTERM, SIGINT and SIGHUP (signals that arrive before they are waited
/// for are kept), or `None` when they could not be installed.
struct Signals(
    Option<(
        tokio::signal::unix::Signal,
        tokio::signal::unix::Signal,
        tokio::signal::unix::Signal,
    )>,
);

impl Signals {
    fn install() -> Signals {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
        ) {
            (Ok(term), Ok(int), Ok(hup)) => Signals(Some((term, int, hup))),
            _ => Signals(None),
        }
    }
}

/// Waits for SIGTERM or SIGINT; reloads the certificate on each SIGHUP meanwhile.
async fn wait_for_signal(signals: Signals, cert: &crate::tls::ReloadableCert) {
    match signals.0 {
        Some((mut term, mut int, mut hup)) => loop {
            tokio::select! {
                _ = term.recv() => return,
                _ = int.recv() => return,
                _ = hup.recv() => {
                    match crate::logging::reopen() {
                        Some(Ok(path)) => tracing::info!(path = %path, "log: file reopened"),
                        Some(Err(e)) => tracing::error!("log: reopen failed, writing to the old file: {e}"),
                        None => {}
                    }
                    match cert.reload() {
                        Ok(()) => tracing::info!("tls: certificate reloaded"),
                        Err(e) => tracing::error!("tls: reload failed, keeping the old certificate: {e}"),
                    }
                }
            }
        },
        None => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// The POP3 retention sweep, with the per-account overrides (`crate::retention_sweep`).
fn spawn_retention(
    config: &Config,
    clock: Arc<dyn store::clock::Clock>,
) -> Option<tokio::task::JoinHandle<()>> {
    crate::retention_sweep::spawn(config, clock)
}

/// The relay client from `[relay]`.
fn build_relay(config: &Config, dns: Arc<dns::Dns>) -> Result<Relay, Failure> {
    let smarthost = config.relay.smarthost.0.clone();
    let smarthost_auth = if config.relay.smarthost_username.is_empty() {
        None
    } else {
        let file = &config.relay.smarthost_password_file;
        let text = std::fs::read_to_string(file).map_err(|e| {
            Failure::failed(format!(
                "relay.smarthost_password_file: cannot read {file:?}: {e}"
            ))
        })?;
        let password = text.lines().next().unwrap_or("").to_string();
        Some((config.relay.smarthost_username.clone(), password))
    };
    // Our own addresses: an MX that points here is a loop (RFC 5321 §5.1).
    let local_addresses = crate::local_addrs::local_addresses(&config.smtp.listen);
    let shown: Vec<String> = local_addresses.iter().map(|a| a.to_string()).collect();
    tracing::debug!(addresses = %shown.join(","), "relay: our own addresses (MX loop check)");
    let ca_certificates =
        crate::tls::ca_certificates(&config.relay.ca_file).map_err(Failure::failed)?;
    Relay::with_dns(
        RelayConfig {
            hostname: config.hostname.clone(),
            smarthost,
            smarthost_auth,
            smarthost_tls: config.relay.smarthost_tls.into(),
            ca_certificates,
            remote_port: config.relay.remote_port,
            dns_servers: config.dns_servers().to_vec(),
            per_destination_limit: config.relay.per_destination_limit,
            local_addresses,
            timeouts: config.relay.timeouts(),
            tls_policy: config.relay.tls_policy(&config.data_dir),
        },
        dns,
    )
    .map_err(|e| Failure::failed(format!("relay: {e}")))
}

/// POP3 logins checked against the directory.
struct DirectoryAuth {
    directory: Arc<Directory>,
    data_dir: std::path::PathBuf,
}

impl pop3::Authenticator for DirectoryAuth {
    fn authenticate(&self, user: &str, password: &str) -> Option<std::path::PathBuf> {
        match self.directory.verify_password(user, password) {
            Ok(Some(account)) => Some(store::maildir::maildir_path(&self.data_dir, &account)),
            Ok(None) => None,
            Err(e) => {
                tracing::error!("pop3d: directory lookup failed: {e}");
                None
            }
        }
    }
}

fn pop3_service(
    config: &Config,
    directory: Arc<Directory>,
) -> (Arc<pop3::Pop3Config>, Arc<dyn pop3::Authenticator>) {
    let mut pop3_config = pop3::Pop3Config {
        hostname: config.hostname.clone(),
        // Clear-text logins (no TLS) only from trusted networks; over TLS always.
        plaintext_allowed_networks: config.smtp.trusted_networks.clone(),
        max_connections: config.pop3.max_connections,
        stress_threshold: config.pop3.stress_threshold,
        stress_timeout: config.pop3.stress_timeout.get(),
        ..pop3::Pop3Config::default()
    };
    // 110 and 995 share POP3's slots (not SMTP's).
    pop3_config.gate = Some(pop3_config.new_gate());
    let auth = DirectoryAuth {
        directory,
        data_dir: config.data_dir.clone(),
    };
    (Arc::new(pop3_config), Arc::new(auth))
}
