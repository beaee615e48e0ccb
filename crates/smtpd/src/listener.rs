//! The SMTP listener: accepts connections and moves bytes between each socket and its
//! [`proto::smtp::Connection`]; commits finished messages to the spool and only then lets the
//! `250` go out.
//!
//! It owns what protocol logic cannot: the connection limit (`421 4.7.0`), the idle timeout
//! (`421 4.4.2`, RFC 5321 §4.5.3.2; writes get it too, see [`crate::timed_io`]), the shutdown (`421 4.3.2` after a grace period), TLS
//! handshakes (implicit on port 465, after STARTTLS on 25 and 587), password checks through
//! [`crate::auth::SmtpAuth`], and the log line per connection and per accepted message. It
//! does not parse SMTP and does not deliver: accepted ids are handed to the queue runner
//! through a channel.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ipnet::IpNet;
use proto::smtp::{
    CommitError, Connection, Event, Peer, Policy, Service, Session, SessionConfig, TlsInfo,
};
use store::spool::Spool;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use crate::auth::SmtpAuth;
use crate::direct::DirectResult;
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
    /// Concurrent connections allowed from one IP address.
    pub max_connections_per_ip: usize,
    /// How long a whole session may last.
    pub max_session_time: Duration,
}

/// Connections open per client IP address, shared by all SMTP listeners.
#[derive(Debug, Default)]
pub struct PerIp {
    open: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
}

/// One counted connection; uncounted when dropped.
struct IpSlot<'a> {
    per_ip: &'a PerIp,
    ip: std::net::IpAddr,
}

impl PerIp {
    fn enter(&self, ip: std::net::IpAddr, max: usize) -> Option<IpSlot<'_>> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(ip).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(IpSlot { per_ip: self, ip })
    }
}

impl Drop for IpSlot<'_> {
    fn drop(&mut self) {
        let mut open = self.per_ip.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

/// What the SMTP sessions of one service share.
pub struct Smtpd {
    pub config: SmtpdConfig,
    pub policy: Arc<dyn Policy + Send + Sync>,
    pub spool: Arc<Spool>,
    /// Ids of newly queued messages, for the queue runner.
    pub queued: mpsc::UnboundedSender<String>,
    /// Connection slots shared by all SMTP listeners.
    pub slots: Arc<Semaphore>,
    /// Connections per client IP, shared by all SMTP listeners.
    pub per_ip: Arc<PerIp>,
    /// TLS for STARTTLS and port 465; `None` when no certificate is loaded.
    pub tls: Option<TlsAcceptor>,
    /// Password checks and brute-force limits, shared by all SMTP listeners.
    pub auth: Arc<SmtpAuth>,
    /// When set, mail for local accounts only is delivered at commit time
    /// ([`crate::direct::Direct::deliver`]) instead of through the spool.
    pub direct: Option<Arc<crate::direct::Direct>>,
    /// DKIM keys for the mail of verified senders from our domains; `None`: unsigned.
    pub dkim: Option<Arc<dkim::Keyring>>,
}

/// How long a TLS handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

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

fn now() -> u64 {
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
        Some(other) => format!("{other:?}"),
        None => "TLS".to_string(),
    };
    let cipher = conn
        .negotiated_cipher_suite()
        .map(|c| format!("{:?}", c.suite()))
        .unwrap_or_else(|| "unknown".into());
    TlsInfo { version, cipher }
}

async fn handle(
    mut stream: TcpStream,
    addr: SocketAddr,
    smtpd: Arc<Smtpd>,
    shutdown: watch::Receiver<bool>,
) {
    let ip = addr.ip().to_canonical();
    let Ok(_slot) = smtpd.slots.clone().try_acquire_owned() else {
        tracing::warn!("smtpd: connection from [{ip}] refused: too many connections");
        let limit = smtpd.config.command_timeout;
        let _ = tokio::time::timeout(
            limit,
            stream.write_all(b"421 4.7.0 Too many connections, try again later\r\n"),
        )
        .await;
        return;
    };
    let Some(_ip_slot) = smtpd.per_ip.enter(ip, smtpd.config.max_connections_per_ip) else {
        tracing::warn!(
            "smtpd: connection from [{ip}] refused: too many connections from this address"
        );
        let limit = smtpd.config.command_timeout;
        let _ = tokio::time::timeout(
            limit,
            stream.write_all(
                b"421 4.7.0 Too many connections from your address, try again later\r\n",
            ),
        )
        .await;
        return;
    };
    let _ = stream.set_nodelay(true);
    let trusted = smtpd
        .config
        .trusted_networks
        .iter()
        .any(|n| n.contains(&ip));
    let service = smtpd.config.session.service;
    tracing::info!(
        "smtpd: connect from [{ip}]:{} service={service:?} trusted={trusted}",
        addr.port()
    );
    let mut session = Session::new(smtpd.config.session.clone(), Peer { ip, trusted });
    let mut stats = Stats::default();
    if service == Service::Submissions {
        // RFC 8314: TLS first, then the greeting.
        let mut tls = match handshake(&smtpd, stream).await {
            Ok(tls) => tls,
            Err(e) => {
                tracing::info!("smtpd: disconnect from [{ip}] ({e})");
                return;
            }
        };
        let info = tls_info(&tls);
        tracing::info!("smtpd: [{ip}] TLS {} {}", info.version, info.cipher);
        session.tls_started(info);
        let mut conn = Connection::new(session);
        let r = run(&mut tls, &mut conn, &smtpd, ip, shutdown, &mut stats).await;
        log_end(ip, &conn, &stats, r.map(|_| ()));
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
    )
    .await;
    let result = match first {
        Ok(Exit::StartTls) => match handshake(&smtpd, stream).await {
            Ok(mut tls) => {
                let info = tls_info(&tls);
                tracing::info!("smtpd: [{ip}] STARTTLS {} {}", info.version, info.cipher);
                conn.tls_started(info);
                run(&mut tls, &mut conn, &smtpd, ip, shutdown, &mut stats)
                    .await
                    .map(|_| ())
            }
            Err(e) => Err(e),
        },
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
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(r) => r.map_err(|e| std::io::Error::other(format!("TLS handshake failed: {e}"))),
        Err(_) => Err(std::io::Error::other("TLS handshake timed out")),
    }
}

fn log_end(ip: std::net::IpAddr, conn: &Connection, stats: &Stats, result: std::io::Result<()>) {
    let how = match result {
        Ok(()) => "closed".to_string(),
        Err(e) => format!("error: {e}"),
    };
    tracing::info!(
        "smtpd: disconnect from [{ip}] helo={:?} user={} tls={} messages={} errors={} ({how})",
        proto::smtp::address::escape(conn.session().helo_name()),
        conn.session().user().unwrap_or("-"),
        if conn.session().tls().is_some() {
            "yes"
        } else {
            "no"
        },
        stats.messages,
        conn.errors()
    );
}

#[derive(Default)]
struct Stats {
    messages: u32,
}

/// Why [`run`] returned without an error.
enum Exit {
    Closed,
    StartTls,
}

/// Where an accepted message went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stored {
    /// Durable in the spool; the queue runner takes it from there.
    Queued,
    /// Durable in every recipient's Maildir already (direct local delivery).
    Delivered,
}

/// Makes a finished message durable: the streamed spool file if it was spilled, else direct
/// local delivery when every recipient is a local account, else a new spool file. Returns
/// the queue id and where it went; only then may the `250` go out.
async fn store_message(
    smtpd: &Smtpd,
    conn: &Connection,
    ip: std::net::IpAddr,
    draft: Option<std::io::Result<store::spool::Draft>>,
    envelope: &proto::smtp::Envelope,
    message: Vec<u8>,
) -> (String, std::io::Result<Stored>) {
    let received = now();
    match draft {
        Some(Ok(mut file)) => {
            let id = file.id().to_string();
            let verified = conn.session().sender_verified();
            let r = match tokio::task::block_in_place(|| {
                file.write(&message)?;
                crate::signing::sign_draft(smtpd.dkim.as_ref(), verified, &mut file)
            }) {
                Ok(()) => smtpd.spool.commit(file).await.map(|()| Stored::Queued),
                Err(e) => Err(e),
            };
            return (id, r);
        }
        Some(Err(e)) => return (String::new(), Err(e)),
        None => {}
    }
    let id = store::spool::new_id();
    let headers = conn.trace_headers(&id, received as i64);
    let message = Arc::new(message);
    let origin_text = client_text(conn, ip);
    let env_origin = origin(conn, &origin_text);
    let mut delivered_directly: Vec<usize> = Vec::new();
    let mut written = Vec::new();
    let mut direct_error = None;
    if let Some(direct) = &smtpd.direct {
        let (d, id2, env, h, m) = (
            direct.clone(),
            id.clone(),
            envelope.clone(),
            headers.clone(),
            message.clone(),
        );
        let result = tokio::task::spawn_blocking(move || {
            d.deliver(
                &id2,
                &env.sender,
                &env.recipients,
                received,
                &[h.as_bytes(), &m],
            )
        })
        .await;
        match result {
            Ok(DirectResult::Delivered) => return (id, Ok(Stored::Delivered)),
            Ok(DirectResult::NeedsQueue) => {}
            Ok(DirectResult::Partly {
                pending,
                written: w,
                error,
            }) => {
                // Keep what was written; the queue takes the rest (issue: one broken mailbox
                // never makes the sender retry for everybody).
                delivered_directly = (0..envelope.recipients.len())
                    .filter(|i| !pending.contains(i))
                    .collect();
                written = w;
                direct_error = Some(error);
            }
            Err(e) => return (id, Err(std::io::Error::other(e.to_string()))),
        }
    }
    let verified = conn.session().sender_verified();
    let signature =
        crate::signing::fields(smtpd.dkim.as_ref(), verified, &id, &headers, &message).await;
    let queued = smtpd
        .spool
        .enqueue(
            &id,
            &envelope.sender,
            &envelope.recipients,
            &env_origin,
            received,
            &[&signature, headers.as_bytes(), &message],
        )
        .await;
    let queued = match queued {
        Ok(()) if !delivered_directly.is_empty() => {
            // The runner must not write those copies again: say so in the state log, durably,
            // before the 250. (A crash before this only means the runner finds the copies by
            // their names.)
            let (spool, id2) = (smtpd.spool.clone(), id.clone());
            let done = delivered_directly.clone();
            tokio::task::spawn_blocking(move || {
                for i in done {
                    let entry = store::outcome::Entry::Rcpt(
                        i,
                        store::outcome::Outcome::Delivered {
                            detail: "delivered (direct)".into(),
                        },
                    );
                    spool.record(&id2, &entry)?;
                }
                Ok(())
            })
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())))
            .inspect_err(|_| {
                let _ = smtpd.spool.remove(&id);
            })
        }
        other => other,
    };
    match queued {
        Ok(()) => (id, Ok(Stored::Queued)),
        Err(e) => {
            // Nothing may stay visible of a message the client is told to send again.
            if let Some(direct) = &smtpd.direct {
                direct.withdraw(&id, written);
            }
            // A full disk is what the client should hear about, whichever write found it.
            let e = match direct_error {
                Some(d) if d.kind() == std::io::ErrorKind::StorageFull => d,
                _ => e,
            };
            (id, Err(e))
        }
    }
}

/// What the envelope records about where the message came from: the client text, and
/// whether its sender was verified (authenticated, or a trusted network).
fn origin<'a>(conn: &Connection, client: &'a str) -> store::spool::Origin<'a> {
    store::spool::Origin {
        client,
        sender_verified: conn.session().sender_verified(),
        notify_never: false,
    }
}

/// The free-text client description stored in the envelope.
fn client_text(conn: &Connection, ip: std::net::IpAddr) -> String {
    format!(
        "helo={} ip={ip}",
        proto::smtp::address::escape(conn.session().helo_name())
    )
}

async fn shutdown_after_grace(mut shutdown: watch::Receiver<bool>, grace: Duration) {
    crate::stopped(&mut shutdown).await;
    tokio::time::sleep(grace).await;
}

async fn run<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    conn: &mut Connection,
    smtpd: &Smtpd,
    ip: std::net::IpAddr,
    shutdown: watch::Receiver<bool>,
    stats: &mut Stats,
) -> std::io::Result<Exit> {
    let mut buf = vec![0u8; 64 * 1024];
    let stop = shutdown_after_grace(shutdown, smtpd.config.shutdown_grace);
    let mut clocks = Clocks::new(
        smtpd.config.command_timeout,
        smtpd.config.max_session_time,
        stop,
    );
    // A large message streams into its spool file as it arrives.
    let mut draft: Option<Result<store::spool::Draft, std::io::Error>> = None;
    loop {
        match conn.advance(&*smtpd.policy) {
            Event::NeedInput => {
                if conn.has_output() {
                    clocks.write(stream, &conn.take_output()).await?;
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
            Event::Spill(bytes) => {
                let received = now();
                let d = draft.get_or_insert_with(|| {
                    let id = store::spool::new_id();
                    let headers = conn.trace_headers(&id, received as i64);
                    let client = client_text(conn, ip);
                    let (sender, rcpts) = conn.envelope().unwrap_or(("", &[]));
                    smtpd.spool.begin(
                        &id,
                        sender,
                        rcpts,
                        &origin(conn, &client),
                        received,
                        headers.as_bytes(),
                    )
                });
                if let Ok(file) = d {
                    if let Err(e) = tokio::task::block_in_place(|| file.write(&bytes)) {
                        draft = Some(Err(e));
                    }
                }
            }
            Event::Abandon => draft = None,
            Event::Commit { envelope, message } => {
                let (id, result) =
                    store_message(smtpd, conn, ip, draft.take(), &envelope, message).await;
                match result {
                    Ok(stored) => {
                        stats.messages += 1;
                        tracing::info!(
                            "smtpd: {id}: accepted from=<{}> size={} nrcpt={} user={}{}",
                            envelope.sender,
                            envelope.size,
                            envelope.recipients.len(),
                            conn.session().user().unwrap_or("-"),
                            if stored == Stored::Delivered {
                                " (delivered directly)"
                            } else {
                                ""
                            }
                        );
                        conn.committed(Ok(&id));
                        if stored == Stored::Queued {
                            let _ = smtpd.queued.send(id);
                        }
                    }
                    Err(e) => {
                        tracing::error!("smtpd: queue write failed: {e}");
                        let full = matches!(
                            e.kind(),
                            std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
                        );
                        let kind = if full {
                            CommitError::NoSpace
                        } else {
                            CommitError::Failed
                        };
                        conn.committed(Err(kind));
                    }
                }
            }
            Event::Authenticate { user, password } => {
                let account = smtpd.auth.check(ip, &user, &password).await;
                conn.auth_result(account);
            }
            Event::StartTls => {
                clocks.write(stream, &conn.take_output()).await?;
                return Ok(Exit::StartTls);
            }
            Event::Close => {
                clocks.last_word(stream, &conn.take_output()).await?;
                return Ok(Exit::Closed);
            }
        }
    }
}
