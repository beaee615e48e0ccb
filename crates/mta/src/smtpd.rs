//! The SMTP listener: accepts connections and moves bytes between each socket and its
//! [`proto::smtp::Connection`]; commits finished messages to the spool and only then lets the
//! `250` go out.
//!
//! It owns what protocol logic cannot: the connection limit (`421 4.7.0`), the idle timeout
//! (`421 4.4.2`, RFC 5321 §4.5.3.2), the shutdown (`421 4.3.2` after a grace period), and the
//! log line per connection and per accepted message. It does not parse SMTP and does not
//! deliver: accepted ids are handed to the queue runner through a channel.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ipnet::IpNet;
use proto::smtp::{CommitError, Connection, Event, Peer, Policy, Session, SessionConfig};
use store::spool::Spool;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;

use crate::stopped;

/// Settings of one SMTP service.
pub struct SmtpdConfig {
    pub session: Arc<SessionConfig>,
    pub trusted_networks: Vec<IpNet>,
    /// Seconds of silence allowed while waiting for the client.
    pub command_timeout: Duration,
    /// Time running sessions get after shutdown is asked before `421`.
    pub shutdown_grace: Duration,
}

/// What every SMTP session shares.
pub struct Smtpd {
    pub config: SmtpdConfig,
    pub policy: Arc<dyn Policy + Send + Sync>,
    pub spool: Arc<Spool>,
    /// Ids of newly queued messages, for the queue runner.
    pub queued: mpsc::UnboundedSender<String>,
    /// Connection slots shared by all SMTP listeners.
    pub slots: Arc<Semaphore>,
}

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

async fn handle(
    mut stream: TcpStream,
    addr: SocketAddr,
    smtpd: Arc<Smtpd>,
    shutdown: watch::Receiver<bool>,
) {
    let ip = addr.ip().to_canonical();
    let Ok(_slot) = smtpd.slots.clone().try_acquire_owned() else {
        tracing::warn!("smtpd: connection from [{ip}] refused: too many connections");
        let _ = stream
            .write_all(b"421 4.7.0 Too many connections, try again later\r\n")
            .await;
        return;
    };
    let _ = stream.set_nodelay(true);
    let trusted = smtpd
        .config
        .trusted_networks
        .iter()
        .any(|n| n.contains(&ip));
    tracing::info!(
        "smtpd: connect from [{ip}]:{} trusted={trusted}",
        addr.port()
    );
    let session = Session::new(smtpd.config.session.clone(), Peer { ip, trusted });
    let mut conn = Connection::new(session);
    let mut stats = Stats::default();
    let result = run(&mut stream, &mut conn, &smtpd, shutdown, &mut stats).await;
    let how = match result {
        Ok(()) => "closed".to_string(),
        Err(e) => format!("error: {e}"),
    };
    tracing::info!(
        "smtpd: disconnect from [{ip}] helo={:?} messages={} errors={} ({how})",
        proto::smtp::address::escape(conn.session().helo_name()),
        stats.messages,
        conn.errors()
    );
}

#[derive(Default)]
struct Stats {
    messages: u32,
}

async fn shutdown_after_grace(mut shutdown: watch::Receiver<bool>, grace: Duration) {
    crate::stopped(&mut shutdown).await;
    tokio::time::sleep(grace).await;
}

async fn run(
    stream: &mut TcpStream,
    conn: &mut Connection,
    smtpd: &Smtpd,
    shutdown: watch::Receiver<bool>,
    stats: &mut Stats,
) -> std::io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    let stop = shutdown_after_grace(shutdown, smtpd.config.shutdown_grace);
    tokio::pin!(stop);
    loop {
        match conn.advance(&*smtpd.policy) {
            Event::NeedInput => {
                if conn.has_output() {
                    stream.write_all(&conn.take_output()).await?;
                }
                let n = tokio::select! {
                    r = tokio::time::timeout(smtpd.config.command_timeout, stream.read(&mut buf)) => match r {
                        Ok(r) => r?,
                        Err(_) => {
                            let reply = conn.session().timed_out();
                            conn.push_reply(&reply);
                            stream.write_all(&conn.take_output()).await?;
                            return Ok(());
                        }
                    },
                    _ = &mut stop => {
                        let reply = conn.session().shutting_down();
                        conn.push_reply(&reply);
                        stream.write_all(&conn.take_output()).await?;
                        return Ok(());
                    }
                };
                if n == 0 {
                    return Ok(());
                }
                conn.receive(&buf[..n]);
            }
            Event::Commit { envelope, message } => {
                let received = now();
                let id = store::spool::new_id();
                let header = conn.received_header(&id, received as i64);
                let client = format!(
                    "helo={} ip={}",
                    proto::smtp::address::escape(conn.session().helo_name()),
                    stream
                        .peer_addr()
                        .map(|a| a.ip().to_string())
                        .unwrap_or_default()
                );
                let result = smtpd
                    .spool
                    .enqueue(
                        &id,
                        &envelope.sender,
                        &envelope.recipients,
                        &client,
                        received,
                        &[header.as_bytes(), &message],
                    )
                    .await;
                match result {
                    Ok(()) => {
                        stats.messages += 1;
                        tracing::info!(
                            "smtpd: {id}: accepted from=<{}> size={} nrcpt={}",
                            envelope.sender,
                            envelope.size,
                            envelope.recipients.len()
                        );
                        conn.committed(Ok(&id));
                        let _ = smtpd.queued.send(id);
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
            Event::Close => {
                stream.write_all(&conn.take_output()).await?;
                return Ok(());
            }
        }
    }
}
