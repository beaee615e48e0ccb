//! The SMTP listener: accepts connections and moves bytes between each socket and its
//! [`proto::smtp::Connection`]; commits finished messages to the spool and only then lets the
//! `250` go out.
//!
//! It owns what protocol logic cannot: admission through the shared `store::admission_gate`
//! (refusals and evictions get `421 4.7.0`; stress mode shortens the timeout and the error
//! limit of unproven sessions), the early-talker test on the MX port ([`crate::pregreet`]),
//! the idle timeout
//! (`421 4.4.2`, RFC 5321 §4.5.3.2; writes get it too, see [`crate::timed_io`]), the shutdown (`421 4.3.2` after a grace period), TLS
//! handshakes (implicit on port 465, after STARTTLS on 25 and 587), password checks through
//! [`crate::auth::SmtpAuth`], and the log line per connection and per accepted message. It
//! does not parse SMTP and does not deliver: accepted ids are handed to the queue runner
//! through a channel.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ipnet::IpNet;
use proto::smtp::rejection::Stage;
use proto::smtp::{
    CommitError, Connection, Event, Peer, Policy, Service, Session, SessionConfig, TlsInfo,
};
use store::admission::Refusal;
use store::admission_gate::{Gate, Ticket};
use store::spool::Spool;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::auth::SmtpAuth;
use crate::filter::{ClientCheck, Screened};
use crate::pregreet::{pregreet, Pregreet};
use crate::timed_io::{Clocks, Interrupt};

use crate::stopped;

/// Settings of one SMTP service.
pub struct SmtpdConfig {
    pub session: Arc<SessionConfig>,
    pub trusted_networks: Vec<IpNet>,
    /// Seconds of silence allowed while waiting for the client.
    pub command_timeout: Duration,
    /// Time running sessions get after shutdown is asked before `421`.
    pub shutdown_grace: Duration,
    /// How long a whole session may last.
    pub max_session_time: Duration,
    /// In stress mode: the command timeout of sessions that are neither trusted nor
    /// authenticated and have not completed a transaction yet.
    pub stress_timeout: Duration,
    /// In stress mode: refused commands allowed to such sessions before the close.
    pub stress_max_errors: u32,
    /// On the MX port, untrusted clients wait this long for the end of the greeting and are
    /// refused if they talk first ([`crate::pregreet`]); zero: off.
    pub greet_delay: Duration,
}

/// What the SMTP sessions of one service share.
pub struct Smtpd {
    pub config: SmtpdConfig,
    pub policy: Arc<dyn Policy + Send + Sync>,
    pub spool: Arc<Spool>,
    /// Ids of newly queued messages, for the queue runner.
    pub queued: mpsc::UnboundedSender<String>,
    /// Connection slots, per-address and per-network limits and stress mode, shared by all
    /// SMTP listeners (`store::admission`).
    pub gate: Arc<Gate>,
    /// TLS for STARTTLS and port 465; `None` when no certificate is loaded.
    pub tls: Option<TlsAcceptor>,
    /// Password checks and brute-force limits, shared by all SMTP listeners.
    pub auth: Arc<SmtpAuth>,
    /// When set, mail for local accounts only is delivered at commit time
    /// ([`crate::direct::Direct::deliver`]) instead of through the spool.
    pub direct: Option<Arc<crate::direct::Direct>>,
    /// SPF/DKIM/DMARC/ARC checks at the end of a message ([`crate::verify::screen`]).
    pub verifier: Option<Arc<crate::verify::Verifier>>,
    /// DKIM keys for the mail of verified senders from our domains; `None`: unsigned.
    pub dkim: Option<Arc<dkim::Keyring>>,
    /// DNS lists, greylisting and sending limits at MAIL/RCPT ([`crate::filter`]).
    pub filters: Option<Arc<crate::filter::Filters>>,
}

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// The most a refused client's `421` may wait for the client to read it.
const REFUSAL_WRITE: Duration = Duration::from_secs(5);

/// Read buffer of a session outside a transaction: what idle sessions hold (commands are
/// short; a pipelined batch longer than this takes more than one read).
const SMALL_READ: usize = 512;
/// Read buffer once a transaction has begun: fewer, larger reads for message data.
const LARGE_READ: usize = 64 * 1024;

/// Accepts connections until `shutdown` turns true, then waits for the running sessions.
pub async fn serve(listener: TcpListener, smtpd: Arc<Smtpd>, mut shutdown: watch::Receiver<bool>) {
    let mut sessions = JoinSet::new();
    let session_shutdown = shutdown.clone();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, addr) = match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!("smtpd: accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let smtpd = smtpd.clone();
                let shutdown = session_shutdown.clone();
                sessions.spawn(async move { handle(stream, addr, smtpd, shutdown).await });
            }
            _ = stopped(&mut shutdown) => break,
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
        }
    }
    drop(listener);
    while sessions.join_next().await.is_some() {}
}

pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The negotiated TLS parameters of a server stream.
pub fn tls_info<S>(stream: &tokio_rustls::server::TlsStream<S>) -> TlsInfo {
    let (_, conn) = stream.get_ref();
    let version = match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_string(),
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_string(),
        Some(other) => other.as_str().unwrap_or("TLS").to_string(),
        None => "TLS".to_string(),
    };
    let cipher = conn
        .negotiated_cipher_suite()
        .and_then(|c| c.suite().as_str())
        .unwrap_or("unknown")
        .to_string();
    TlsInfo { version, cipher }
}

async fn handle(
    mut stream: TcpStream,
    addr: SocketAddr,
    smtpd: Arc<Smtpd>,
    shutdown: watch::Receiver<bool>,
) {
    let ip = addr.ip().to_canonical();
    let trusted = smtpd
        .config
        .trusted_networks
        .iter()
        .any(|n| n.contains(&ip));
    let ticket = match smtpd.gate.admit(ip, trusted) {
        Ok(ticket) => ticket,
        Err(refusal) => {
            let (why, reply): (_, &[u8]) = match refusal {
                Refusal::Full => (
                    "too many connections",
                    b"421 4.7.0 Too many connections, try again later\r\n",
                ),
                Refusal::PerIp => (
                    "too many connections from this address",
                    b"421 4.7.0 Too many connections from your address, try again later\r\n",
                ),
                Refusal::PerNet => (
                    "too many connections from this network",
                    b"421 4.7.0 Too many connections from your network, try again later\r\n",
                ),
            };
            tracing::warn!(client = %client(ip), reply = %String::from_utf8_lossy(reply).trim_end(), "smtpd: connection from [{ip}] refused: {why}");
            let _ = tokio::time::timeout(REFUSAL_WRITE, stream.write_all(reply)).await;
            return;
        }
    };
    let _ = stream.set_nodelay(true);
    let service = smtpd.config.session.service;
    // The DNS lists are asked at once, while the greeting goes out.
    let check = ClientCheck::start(smtpd.filters.as_deref(), service, ip, trusted);
    metrics::global().connection(service.as_str());
    tracing::info!(
        client = %client(ip),
        port = addr.port(),
        service = service.as_str(),
        trusted,
        "smtpd: connect from [{ip}]"
    );
    if service == Service::Mx && !trusted && !smtpd.config.greet_delay.is_zero() {
        let hostname = &smtpd.config.session.hostname;
        match pregreet(&mut stream, hostname, smtpd.config.greet_delay).await {
            Ok(Pregreet::Waited) => {}
            Ok(Pregreet::TalkedEarly) => {
                let n = crate::pregreet::count_early_talker();
                metrics::global().early_talkers.inc();
                tracing::warn!(
                    client = %client(ip),
                    reply = "554 5.5.1",
                    early_talkers = n,
                    "smtpd: [{ip}] talked before the greeting, closed"
                );
                return;
            }
            Ok(Pregreet::Gone) => {
                tracing::info!(
                    reason = "left before the greeting",
                    "smtpd: disconnect from [{ip}]"
                );
                return;
            }
            Err(e) => {
                tracing::info!(error = %e, "smtpd: disconnect from [{ip}]");
                return;
            }
        }
    }
    let mut session = Session::new(smtpd.config.session.clone(), Peer { ip, trusted });
    let mut stats = Stats { messages: 0, check };
    if service == Service::Submissions {
        // RFC 8314: TLS first, then the greeting. Boxed, like the STARTTLS branch: the TLS
        // state is allocated for TLS sessions only, not in every session's future.
        Box::pin(async move {
            let mut tls = match Box::pin(handshake(&smtpd, stream)).await {
                Ok(tls) => tls,
                Err(e) => {
                    tracing::info!(error = %e, "smtpd: disconnect from [{ip}]");
                    return;
                }
            };
            let info = tls_info(&tls);
            tracing::info!(tls = %info.version, cipher = %info.cipher, "smtpd: [{ip}] TLS");
            session.tls_started(info);
            let mut conn = Connection::new(session);
            let r = run(
                &mut tls, &mut conn, &smtpd, ip, shutdown, &mut stats, &ticket,
            )
            .await;
            log_end(ip, &conn, &stats, r.map(|_| ()));
        })
        .await;
        return;
    }
    let mut conn = Connection::new(session);
    let first = run(
        &mut stream,
        &mut conn,
        &smtpd,
        ip,
        shutdown.clone(),
        &mut stats,
        &ticket,
    )
    .await;
    let result = match first {
        Ok(Exit::StartTls) => {
            Box::pin(async {
                match Box::pin(handshake(&smtpd, stream)).await {
                    Ok(mut tls) => {
                        let info = tls_info(&tls);
                        tracing::info!(tls = %info.version, cipher = %info.cipher, "smtpd: [{ip}] STARTTLS");
                        conn.tls_started(info);
                        run(
                            &mut tls, &mut conn, &smtpd, ip, shutdown, &mut stats, &ticket,
                        )
                        .await
                        .map(|_| ())
                    }
                    Err(e) => Err(e),
                }
            })
            .await
        }
        other => other.map(|_| ()),
    };
    log_end(ip, &conn, &stats, result);
}

async fn handshake(
    smtpd: &Smtpd,
    stream: TcpStream,
) -> std::io::Result<tokio_rustls::server::TlsStream<TcpStream>> {
    let acceptor = smtpd
        .tls
        .clone()
        .ok_or_else(|| std::io::Error::other("TLS is not configured"))?;
    let result = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(r) => r.map_err(|e| std::io::Error::other(format!("TLS handshake failed: {e}"))),
        Err(_) => Err(std::io::Error::other("TLS handshake timed out")),
    };
    if result.is_err() {
        let service = smtpd.config.session.service.as_str();
        metrics::global()
            .tls_handshake_failures
            .get_or_create(&metrics::ServiceLabel { service })
            .inc();
    }
    result
}

fn log_end(ip: std::net::IpAddr, conn: &Connection, stats: &Stats, result: std::io::Result<()>) {
    let error = result.err().map(|e| tracing::field::display(e.to_string()));
    let session = conn.session();
    tracing::info!(
        helo = %angle(session.helo_name()),
        sasl_username = session.user(),
        tls = session.tls().map_or("none", |t| t.version.as_str()),
        messages = stats.messages,
        errors = conn.errors(),
        error,
        "smtpd: disconnect from [{ip}]"
    );
}

/// The client as Postfix names it: `host[ip]` (no reverse lookup is made: `unknown`).
pub fn client(ip: std::net::IpAddr) -> String {
    format!("unknown[{ip}]")
}

/// A client-supplied name or address between angle brackets, escaped for the log.
pub fn angle(text: &str) -> String {
    format!("<{}>", proto::smtp::address::escape(text))
}

/// One line per refused MAIL, RCPT, DATA, BDAT, message or AUTH since the last call, with
/// the envelope so far (Postfix's `NOQUEUE: reject:`): whatever refused it, a policy check
/// added later included, it is logged here.
fn log_rejections(conn: &mut Connection, ip: std::net::IpAddr) {
    for r in conn.take_rejections() {
        let a = &r.attempt;
        metrics::global().refused(a.stage.as_str(), r.reply.code);
        let who = client(ip);
        tracing::info!(
            client = %who,
            reply = %r.reply.summary(),
            from = a.from.as_deref().map(|f| tracing::field::display(angle(f))),
            to = a.to.as_deref().map(|t| tracing::field::display(angle(t))),
            nrcpt = (a.stage == Stage::EndOfMessage || a.stage == Stage::Data).then_some(a.nrcpt),
            sasl_username = a.user.as_deref().map(|u| tracing::field::display(proto::smtp::address::escape(u))),
            proto = r.proto,
            helo = %angle(&r.helo),
            "smtpd: NOQUEUE: reject: {} from {who}",
            a.stage.as_str()
        );
    }
}

struct Stats {
    messages: u32,
    /// The DNS lists' answer about the client ([`crate::filter`]).
    check: ClientCheck,
}

/// Why [`run`] returned without an error.
enum Exit {
    Closed,
    StartTls,
}

async fn shutdown_after_grace(mut shutdown: watch::Receiver<bool>, grace: Duration) {
    crate::stopped(&mut shutdown).await;
    tokio::time::sleep(grace).await;
}

/// Before each step: a session that is trusted, authenticated or in a transaction may no
/// longer be evicted; in stress mode the others get the short timeout (until they complete a
/// transaction) and the lower error limit.
fn admission_rules(
    smtpd: &Smtpd,
    conn: &mut Connection,
    ticket: &Ticket,
    clocks: &mut Clocks,
    messages: u32,
) {
    let proven = conn.session().sender_verified();
    if proven || conn.session().in_transaction() {
        ticket.protect();
    }
    let normal = smtpd.config.command_timeout;
    let under_stress = if !proven && messages == 0 {
        smtpd.config.stress_timeout.min(normal)
    } else {
        normal
    };
    clocks.set_idle(normal, under_stress);
    let stressed = !proven && ticket.gate().stressed();
    conn.limit_errors(stressed.then_some(smtpd.config.stress_max_errors));
}

async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    conn: &mut Connection,
    smtpd: &Smtpd,
    ip: std::net::IpAddr,
    shutdown: watch::Receiver<bool>,
    stats: &mut Stats,
    ticket: &Ticket,
) -> std::io::Result<Exit> {
    let mut buf = vec![0u8; SMALL_READ];
    let stop = shutdown_after_grace(shutdown, smtpd.config.shutdown_grace);
    let evicted = ticket.eviction_signal();
    let mut clocks = Clocks::new(
        smtpd.config.command_timeout,
        smtpd.config.max_session_time,
        stop,
        async move { evicted.notified().await },
        ticket.gate().stress_watch(),
    );
    // A large message streams into its spool file as it arrives.
    let mut draft: Option<Result<store::spool::Draft, std::io::Error>> = None;
    loop {
        log_rejections(conn, ip);
        // Before every step, so a batch read before stress mode began meets its rules too.
        admission_rules(smtpd, conn, ticket, &mut clocks, stats.messages);
        // The lists' answer is awaited before the first command after HELO/EHLO.
        if stats.check.pending() && conn.session().said_hello() {
            stats.check.wait().await;
        }
        let event = match smtpd.filters.as_deref() {
            Some(filters) => {
                let user = conn.session().user().map(str::to_owned);
                let screened = Screened {
                    inner: &*smtpd.policy,
                    filters,
                    service: smtpd.config.session.service,
                    ip,
                    trusted: conn.session().peer().trusted,
                    user: user.as_deref(),
                    check: &stats.check,
                };
                conn.advance(&screened)
            }
            None => conn.advance(&*smtpd.policy),
        };
        match event {
            Event::NeedInput => {
                log_rejections(conn, ip);
                // Again before the replies go out: a client that saw its MAIL accepted is
                // protected already.
                admission_rules(smtpd, conn, ticket, &mut clocks, stats.messages);
                if conn.has_output() {
                    clocks.write(stream, &conn.take_output()).await?;
                }
                // Large while a transaction is open, small again after it (an idle session keeps
                // no 64 KiB buffer from its last message).
                let want = if conn.session().in_transaction() {
                    LARGE_READ
                } else {
                    SMALL_READ
                };
                if buf.len() != want {
                    buf = vec![0u8; want];
                }
                let n = match clocks.read(stream, &mut buf).await? {
                    Ok(n) => n,
                    Err(why) => {
                        let reply = match why {
                            Interrupt::Idle => conn.session().timed_out(),
                            Interrupt::Shutdown => conn.session().shutting_down(),
                            Interrupt::SessionOver => proto::smtp::Reply::new(
                                421,
                                "4.4.2 Session time limit exceeded, closing connection",
                            ),
                            Interrupt::Evicted => {
                                metrics::global()
                                    .evictions
                                    .get_or_create(&metrics::ServiceLabel {
                                        service: smtpd.config.session.service.as_str(),
                                    })
                                    .inc();
                                tracing::info!("smtpd: [{ip}] closed to make room for a newcomer");
                                proto::smtp::Reply::new(
                                    421,
                                    "4.7.0 Too many connections, closing idle session, try again later",
                                )
                            }
                        };
                        conn.push_reply(&reply);
                        clocks.last_word(stream, &conn.take_output()).await?;
                        return Ok(Exit::Closed);
                    }
                };
                if n == 0 {
                    return Ok(Exit::Closed);
                }
                conn.receive(&buf[..n]);
            }
            Event::Spill(bytes) => crate::commit::spill(smtpd, conn, ip, &mut draft, &bytes),
            Event::Abandon => draft = None,
            Event::Commit { envelope, message } => {
                let end_of_data = std::time::Instant::now();
                let (verifier, service) = (smtpd.verifier.as_deref(), smtpd.config.session.service);
                let spilled = draft.is_some();
                let screened = if spilled {
                    // A streamed message: its last bytes go to the draft, checked there.
                    crate::commit::spill(smtpd, conn, ip, &mut draft, &message);
                    Box::pin(crate::verify_draft::screen_draft(
                        verifier, service, conn, ip, &envelope, &mut draft,
                    ))
                    .await
                    .map(|()| Vec::new())
                } else {
                    Box::pin(crate::verify::screen(
                        verifier, service, conn, ip, &envelope, message,
                    ))
                    .await
                };
                let message = match screened {
                    Ok(message) => message,
                    Err(refused) => {
                        // A refused streamed message leaves nothing: its draft is removed.
                        draft = None;
                        conn.committed(Err(CommitError::Refused(refused)));
                        continue;
                    }
                };
                let filters = smtpd.filters.as_deref();
                let message = match Box::pin(crate::filter::rspamd::scan(
                    filters,
                    &stats.check,
                    service,
                    conn,
                    ip,
                    &mut draft,
                    &envelope,
                    message,
                ))
                .await
                {
                    Ok(message) => message,
                    Err(refused) => {
                        draft = None;
                        conn.committed(Err(CommitError::Refused(refused)));
                        let took = end_of_data.elapsed().as_secs_f64();
                        metrics::global().end_of_data_seconds.observe(took);
                        continue;
                    }
                };
                let draft = draft.take();
                if Box::pin(crate::commit::commit(
                    smtpd, conn, ip, draft, envelope, message,
                ))
                .await
                {
                    stats.messages += 1;
                    metrics::global()
                        .messages_accepted
                        .get_or_create(&metrics::ServiceLabel {
                            service: smtpd.config.session.service.as_str(),
                        })
                        .inc();
                }
                let took = end_of_data.elapsed().as_secs_f64();
                metrics::global().end_of_data_seconds.observe(took);
            }
            Event::Authenticate { user, password } => {
                let account = Box::pin(smtpd.auth.check(ip, &user, &password)).await;
                conn.auth_result(account);
            }
            Event::StartTls => {
                log_rejections(conn, ip);
                clocks.write(stream, &conn.take_output()).await?;
                return Ok(Exit::StartTls);
            }
            Event::Close => {
                log_rejections(conn, ip);
                clocks.last_word(stream, &conn.take_output()).await?;
                return Ok(Exit::Closed);
            }
        }
    }
}
