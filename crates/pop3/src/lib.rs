//! The POP3 listener (RFC 1939) over tokio, with TLS (RFC 2595 STLS, RFC 8314 implicit TLS).
//!
//! What it does: accepts TCP connections under its own admission (`store::admission`: at most
//! `max_connections` at once; when all are taken the oldest session that has not logged in is
//! told `-ERR [SYS/TEMP]` and closed to make room, and only when every session has logged in
//! or is trusted the newcomer gets that reply; in stress mode sessions that have not logged in
//! get `stress_timeout` instead of the idle timeout), greets, and runs each connection's loop (see `conn`):
//! bounded line reads with an idle timeout, the sans-I/O `proto::pop3::Session`, password
//! checks off the event loop under the process's one `store::login_guard::LoginGuard` (shared
//! with SMTP AUTH: delays and lockouts per network and per account), message streaming, and the UPDATE state at QUIT only. With a TLS acceptor
//! it either runs the handshake first (implicit TLS, the pop3s service on port 995, RFC 8314
//! §3.3) or offers STLS on the plain port (RFC 2595 §4). On the shutdown signal it stops
//! accepting, tells idle sessions it is shutting down (without UPDATE), and returns when every
//! session has ended.
//!
//! What it does not do: load certificates or build the rustls configuration (the caller
//! passes a ready `TlsAcceptor`), check passwords itself (the binary implements
//! [`Authenticator`]), keep login limits of its own (the caller passes the shared guard), or
//! parse messages.

mod conn;

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use store::admission::AdmissionLimits;
use store::admission_gate::Gate;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

pub use store::login_guard::{LoginGuard, LoginLimits};
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
    /// Maximum concurrent connections.
    pub max_connections: usize,
    /// Time allowed for a TLS handshake (implicit TLS or after STLS); the connection is
    /// closed if it takes longer.
    pub tls_handshake_timeout: Duration,
    /// Stress mode begins when this percentage of `max_connections` is open.
    pub stress_threshold: u8,
    /// In stress mode, the idle timeout of sessions that have not logged in.
    pub stress_timeout: Duration,
    /// The slots several listeners share (110 and 995); `None`: each listener makes its own
    /// from `max_connections`.
    pub gate: Option<Arc<Gate>>,
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
            max_connections: 200,
            tls_handshake_timeout: Duration::from_secs(30),
            stress_threshold: 75,
            stress_timeout: Duration::from_secs(10),
            gate: None,
        }
    }
}

impl Pop3Config {
    /// A gate for these settings, to share between listeners through [`Pop3Config::gate`].
    pub fn new_gate(&self) -> Arc<Gate> {
        // No per-address or per-network limit for POP3: the slots and stress mode only.
        let limits = AdmissionLimits::new(
            self.max_connections,
            usize::MAX,
            usize::MAX,
            self.stress_threshold,
        );
        Gate::new("pop3", limits)
    }

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
/// Logins obey `guard` (failure delays and lockouts; the same instance the SMTP listeners use,
/// so failures over either protocol count against both): from a locked-out network the reply
/// is `-ERR [AUTH] Too many failed logins`, for a locked account the same reply as a wrong
/// password, both without a password check.
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
    guard: Arc<LoginGuard>,
    tls: Option<TlsAcceptor>,
    implicit_tls: bool,
    mut shutdown: watch::Receiver<bool>,
) {
    if implicit_tls && tls.is_none() {
        tracing::error!("pop3: implicit TLS requested without a TLS configuration; not serving");
        return;
    }
    let gate = config.gate.clone().unwrap_or_else(|| config.new_gate());
    let mut tasks = JoinSet::new();
    while !*shutdown.borrow_and_update() {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    metrics::global().connection(if implicit_tls { "pop3s" } else { "pop3" });
                    let trusted = config.plaintext_allowed(peer.ip());
                    let Ok(ticket) = gate.admit(peer.ip(), trusted) else {
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
                        guard: guard.clone(),
                        shutdown: shutdown.clone(),
                        tls: tls.clone(),
                        implicit_tls,
                        ticket,
                    };
                    tasks.spawn(conn::run(stream, peer, ctx));
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
