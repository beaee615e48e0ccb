//! The POP3 listener (RFC 1939) over tokio, with TLS (RFC 2595 STLS, RFC 8314 implicit TLS).
//!
//! What it does: accepts TCP connections (at most `max_connections` at once; extra clients get
//! `-ERR [SYS/TEMP]` and are closed), greets, and runs each connection's loop (see `conn`):
//! bounded line reads with an idle timeout, the sans-I/O `proto::pop3::Session`, password
//! checks off the event loop, failed-login limits per IP and per account with growing delays
//! (see `store::login_limits`), message streaming, and the UPDATE state at QUIT only. With a TLS acceptor
//! it either runs the handshake first (implicit TLS, the pop3s service on port 995, RFC 8314
//! §3.3) or offers STLS on the plain port (RFC 2595 §4). On the shutdown signal it stops
//! accepting, tells idle sessions it is shutting down (without UPDATE), and returns when every
//! session has ended.
//!
//! What it does not do: load certificates or build the rustls configuration (the caller
//! passes a ready `TlsAcceptor`), check passwords itself (the binary implements
//! [`Authenticator`]), or parse messages.

mod conn;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

pub use store::login_limits::{account_key, backoff, FailedLogins};
pub use tokio_rustls::TlsAcceptor;

/// Checks account credentials; implemented by the binary.
pub trait Authenticator: Send + Sync + 'static {
    /// Checks a password (expensive: argon2id, run it via spawn_blocking in your caller).
    /// Returns the Maildir root of the account on success.
    ///
    /// It should take about as long for an unknown user as for a wrong password (e.g. by
    /// hashing against a dummy hash), so that timing does not reveal which accounts exist.
    fn authenticate(&self, user: &str, password: &str) -> Option<PathBuf>;
}

/// Listener settings.
#[derive(Debug, Clone)]
pub struct Pop3Config {
    /// Name used in the greeting.
    pub hostname: String,
    /// Client networks allowed to log in with plain-text passwords without TLS.
    pub plaintext_allowed_networks: Vec<ipnet::IpNet>,
    /// Inactivity autologout timer; RFC 1939 §3 requires at least 10 minutes. Also bounds each
    /// write to a slow client.
    pub idle_timeout: Duration,
    /// Base delay before answering a failed login (same for unknown users and wrong
    /// passwords). It doubles with each recent failure from the same IP or for the same
    /// account: `failed_login_delay × 2^(failures − 1)`, at most `max_failed_login_delay`.
    pub failed_login_delay: Duration,
    /// Cap on the growing failed-login delay.
    pub max_failed_login_delay: Duration,
    /// Failed logins allowed per client IP within `failed_login_window`; beyond it, logins from
    /// that IP are refused with `-ERR [AUTH]` without checking the password.
    pub max_failed_per_ip: u32,
    /// Failed logins allowed per account (from any IP) within `failed_login_window`; beyond
    /// it, logins to that account are refused with the same reply as a wrong password,
    /// without checking the password, until the oldest failures leave the window.
    pub max_failed_per_account: u32,
    /// The window for `max_failed_per_ip` and `max_failed_per_account`.
    pub failed_login_window: Duration,
    /// Maximum concurrent connections.
    pub max_connections: usize,
    /// Time allowed for a TLS handshake (implicit TLS or after STLS); the connection is
    /// closed if it takes longer.
    pub tls_handshake_timeout: Duration,
}

impl Default for Pop3Config {
    fn default() -> Self {
        Pop3Config {
            hostname: "localhost".into(),
            plaintext_allowed_networks: vec![
                "127.0.0.0/8".parse().expect("valid literal"),
                "::1/128".parse().expect("valid literal"),
            ],
            idle_timeout: Duration::from_secs(600),
            failed_login_delay: Duration::from_secs(1),
            max_failed_login_delay: Duration::from_secs(8),
            max_failed_per_ip: 10,
            max_failed_per_account: 5,
            failed_login_window: Duration::from_secs(600),
            max_connections: 200,
            tls_handshake_timeout: Duration::from_secs(30),
        }
    }
}

impl Pop3Config {
    /// True if a client at `ip` may log in with a plain-text password without TLS.
    pub fn plaintext_allowed(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.plaintext_allowed_networks
            .iter()
            .any(|n| n.contains(&ip))
    }
}

/// Serves POP3 on `listener` until `shutdown` becomes true (or its sender is dropped), then
/// waits for the open sessions to end.
///
/// TLS: with `implicit_tls` (the pop3s service, RFC 8314) every connection starts with the
/// TLS handshake (bounded by `tls_handshake_timeout`) and the greeting is sent inside TLS;
/// `tls` must then be `Some`, otherwise nothing is served (an error is logged and the function
/// returns at once). Without `implicit_tls`, `Some(tls)` makes STLS available on the plain
/// connection (RFC 2595), and `None` serves plain POP3 only.
pub async fn serve(
    listener: TcpListener,
    config: Arc<Pop3Config>,
    auth: Arc<dyn Authenticator>,
    tls: Option<TlsAcceptor>,
    implicit_tls: bool,
    mut shutdown: watch::Receiver<bool>,
) {
    if implicit_tls && tls.is_none() {
        tracing::error!("pop3: implicit TLS requested without a TLS configuration; not serving");
        return;
    }
    let permits = Arc::new(Semaphore::new(config.max_connections));
    let failed = Arc::new(FailedLogins::new(
        config.max_failed_per_ip,
        config.failed_login_window,
    ));
    let failed_accounts = Arc::new(FailedLogins::new(
        config.max_failed_per_account,
        config.failed_login_window,
    ));
    let mut tasks = JoinSet::new();
    while !*shutdown.borrow_and_update() {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    let Ok(permit) = permits.clone().try_acquire_owned() else {
                        tracing::warn!(%peer, "pop3: too many connections, refusing");
                        if implicit_tls {
                            // A clear-text reply means nothing to a TLS client: just close.
                            drop(stream);
                            continue;
                        }
                        let timeout = config.idle_timeout;
                        tasks.spawn(async move {
                            let mut stream = stream;
                            let msg = b"-ERR [SYS/TEMP] Too many connections, try later\r\n";
                            let _ = tokio::time::timeout(timeout, stream.write_all(msg)).await;
                        });
                        continue;
                    };
                    let ctx = conn::Context {
                        config: config.clone(),
                        auth: auth.clone(),
                        failed: failed.clone(),
                        failed_accounts: failed_accounts.clone(),
                        shutdown: shutdown.clone(),
                        tls: tls.clone(),
                        implicit_tls,
                    };
                    tasks.spawn(async move {
                        conn::run(stream, peer, ctx).await;
                        drop(permit);
                    });
                }
                Err(e) => {
                    // E.g. EMFILE: back off instead of spinning.
                    tracing::warn!(error = %e, "pop3: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            r = shutdown.changed() => {
                if r.is_err() {
                    break;
                }
            }
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    drop(listener);
    tracing::info!(sessions = tasks.len(), "pop3: shutting down");
    while tasks.join_next().await.is_some() {}
}
