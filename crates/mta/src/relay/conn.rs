//! One SMTP client connection to a remote MTA, the I/O half: it connects, moves bytes between
//! the socket and [`proto::smtp::client::Session`] under the timeouts of RFC 5321 §4.5.3.2,
//! runs the TLS handshake when the session asks for STARTTLS, and streams the message when it
//! asks for the DATA section or a BDAT chunk ([`send`]).
//!
//! What to send next and what each reply means (greeting, EHLO/HELO, STARTTLS, AUTH, MAIL/RCPT
//! pipelining, DATA/BDAT, RSET, QUIT, when to try the next host) is the session's; this file
//! makes no protocol decision. It does not choose hosts, retry, or pool: that is [`super`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use proto::smtp::client::{Action, Hello, MessageTraits, Session, Timer, TxEnd};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{timeout, timeout_at, Instant};
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::body::MessageBody;
use super::tls::CertCheck;
use super::tls_policy::Problem;
use super::{Destination, Timeouts};

mod send;
use send::{BodyError, Chunks};

/// TLS handshake, RSET on a pooled connection, QUIT: short, nothing waits on the server's disk.
const SHORT_TIMEOUT: Duration = Duration::from_secs(60);
const QUIT_TIMEOUT: Duration = Duration::from_secs(10);

enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

/// Why a connection could not be set up.
pub(crate) enum OpenError {
    /// Connection failure or a refusal: try the next host.
    Failed(String),
    /// The TLS handshake after STARTTLS failed: the same host may be tried in plaintext.
    Tls(String),
    /// TLS was required and the server did not offer STARTTLS, or refused it.
    NoStartTls(String),
}

/// An established SMTP session, ready for MAIL.
pub(crate) struct Conn {
    stream: Stream,
    session: Session,
    /// `host[ip]:port`, for logs and outcomes.
    pub label: String,
    pub addr: SocketAddr,
    timeouts: Timeouts,
    /// The host name the certificate was checked against.
    pub host: String,
    /// `TLSv1.3`, `TLSv1.2`, or `None` in plaintext.
    pub tls_version: Option<&'static str>,
    /// The WebPKI verdict on the server's certificate for `host` (`None`: no TLS or no check).
    pub certificate: Option<Result<(), Problem>>,
    /// The handshake passed a TLSA check (set by the relay's DANE opener).
    pub dane: bool,
}

/// How to set up a session.
pub(crate) struct Setup<'a> {
    pub helo_name: &'a str,
    pub timeouts: &'a Timeouts,
    /// `None`: plaintext only (after a failed handshake).
    pub tls: Option<&'a TlsConnector>,
    /// STARTTLS then AUTH PLAIN with these credentials; no TLS is then an error.
    pub auth: Option<&'a (String, String)>,
    /// No session without TLS (a verified smarthost).
    pub require_tls: bool,
    /// AUTH may be sent without TLS (`smarthost_tls = "none"`).
    pub plaintext_auth: bool,
    /// Checks the certificate of an opportunistic handshake (the verdict is noted, not acted on).
    pub check: Option<&'a CertCheck>,
}

/// How a host is named in logs and outcomes: `host[ip]:port` (Postfix's `relay=`).
pub(crate) fn label(dest: &Destination) -> String {
    format!("{}[{}]:{}", dest.host, dest.addr.ip(), dest.addr.port())
}

impl Conn {
    /// Connects and sets the session up (greeting, EHLO, STARTTLS when offered and
    /// `setup.tls` is set, AUTH when `setup.auth` is).
    pub async fn open(dest: &Destination, setup: &Setup<'_>) -> Result<Conn, OpenError> {
        let label = label(dest);
        let fail = |e: String| OpenError::Failed(format!("{label}: {e}"));
        let tcp = match timeout(setup.timeouts.connect, TcpStream::connect(dest.addr)).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => return Err(fail(format!("connect: {e}"))),
            Err(_) => return Err(fail("connect: timed out".into())),
        };
        let _ = tcp.set_nodelay(true);
        let hello = Hello {
            name: setup.helo_name.to_string(),
            starttls: setup.tls.is_some(),
            require_tls: setup.require_tls,
            auth: setup.auth.cloned(),
            plaintext_auth: setup.plaintext_auth,
        };
        let mut conn = Conn {
            stream: Stream::Plain(tcp),
            session: Session::new(hello),
            label: label.clone(),
            addr: dest.addr,
            timeouts: setup.timeouts.clone(),
            host: dest.host.clone(),
            tls_version: None,
            certificate: None,
            dane: false,
        };
        loop {
            match (conn.drive().await, setup.tls) {
                (Action::StartTls, Some(connector)) => {
                    conn = conn.starttls(connector, &dest.host, setup.check).await?;
                }
                (Action::Ready, _) => return Ok(conn),
                // The session's wording for a missing or refused STARTTLS under require_tls.
                (Action::Failed(e), _) if setup.require_tls && e.starts_with("STARTTLS") => {
                    return Err(OpenError::NoStartTls(format!("{label}: {e}")))
                }
                (Action::Failed(e), _) => return Err(fail(e)),
                (other, _) => return Err(fail(format!("unexpected step in setup: {other:?}"))),
            }
        }
    }

    /// Whether the session runs over TLS.
    pub fn tls(&self) -> bool {
        self.session.tls()
    }

    /// Messages sent over this connection.
    pub fn messages(&self) -> usize {
        self.session.transactions()
    }

    /// Does what the session asks (writes, reads, notes) until it asks for something only the
    /// caller can do: the handshake, the message, or the end of a step.
    async fn drive(&mut self) -> Action {
        // The reply being waited for (by the session's count) and the deadline for all of it.
        let mut wait: Option<(u64, Instant)> = None;
        let mut buf = [0u8; 4096];
        loop {
            match self.session.poll() {
                Action::Send(bytes, timer) => {
                    wait = None;
                    if let Err(e) = self.write(&bytes, self.limit(timer)).await {
                        self.session.failed(e);
                    }
                }
                Action::Receive(timer) => {
                    let seen = self.session.replies();
                    let deadline = match wait {
                        Some((n, deadline)) if n == seen => deadline,
                        _ => Instant::now() + self.limit(timer),
                    };
                    wait = Some((seen, deadline));
                    match self.read(&mut buf, deadline).await {
                        Ok(n) => self.session.received(&buf[..n]),
                        Err(e) => self.session.failed(e),
                    }
                }
                Action::Note(note) => tracing::info!("relay: {}: {note}", self.label),
                other => return other,
            }
        }
    }

    fn limit(&self, timer: Timer) -> Duration {
        let t = &self.timeouts;
        match timer {
            Timer::Greeting => t.greeting,
            Timer::Mail => t.mail,
            Timer::Rcpt => t.rcpt,
            Timer::DataInit => t.data_init,
            Timer::DataEnd => t.data_end,
            Timer::Reset => SHORT_TIMEOUT,
            Timer::Quit => QUIT_TIMEOUT,
        }
    }

    async fn starttls(
        self,
        connector: &TlsConnector,
        host: &str,
        check: Option<&CertCheck>,
    ) -> Result<Conn, OpenError> {
        let Stream::Plain(tcp) = self.stream else {
            return Err(OpenError::Failed(format!("{}: TLS already on", self.label)));
        };
        let name = super::tls::server_name(host, self.addr.ip());
        let handshake = timeout(SHORT_TIMEOUT, connector.connect(name, tcp)).await;
        match handshake {
            Ok(Ok(tls)) => {
                let (_, session) = tls.get_ref();
                let certificate =
                    check.map(|c| c.verify(session.peer_certificates().unwrap_or(&[]), host));
                let verdict = match &certificate {
                    Some(Ok(())) => "verified",
                    Some(Err(p)) => p.describe(),
                    None => "not-checked",
                };
                let tls_version = match session.protocol_version() {
                    Some(rustls::ProtocolVersion::TLSv1_3) => Some("TLSv1.3"),
                    Some(rustls::ProtocolVersion::TLSv1_2) => Some("TLSv1.2"),
                    Some(_) => Some("TLS"),
                    None => None,
                };
                let cipher = session
                    .negotiated_cipher_suite()
                    .and_then(|c| c.suite().as_str())
                    .unwrap_or("unknown");
                tracing::info!(
                    tls = tls_version.unwrap_or("TLS"),
                    cipher,
                    certificate = %verdict,
                    "relay: {}: STARTTLS",
                    self.label
                );
                let mut conn = Conn {
                    stream: Stream::Tls(Box::new(tls)),
                    tls_version,
                    certificate,
                    ..self
                };
                conn.session.tls_started();
                Ok(conn)
            }
            Ok(Err(e)) => Err(OpenError::Tls(format!(
                "{}: TLS handshake: {e}",
                self.label
            ))),
            Err(_) => Err(OpenError::Tls(format!(
                "{}: TLS handshake timed out",
                self.label
            ))),
        }
    }

    async fn write(&mut self, bytes: &[u8], limit: Duration) -> Result<(), String> {
        let write = async {
            match &mut self.stream {
                Stream::Plain(s) => {
                    s.write_all(bytes).await?;
                    s.flush().await
                }
                Stream::Tls(s) => {
                    s.write_all(bytes).await?;
                    s.flush().await
                }
            }
        };
        match timeout(limit, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("write: {e}")),
            Err(_) => Err("write timed out".into()),
        }
    }

    /// One read, by `deadline`; the connection closing is an error.
    async fn read(&mut self, buf: &mut [u8], deadline: Instant) -> Result<usize, String> {
        let read = async {
            match &mut self.stream {
                Stream::Plain(s) => s.read(buf).await,
                Stream::Tls(s) => s.read(buf).await,
            }
        };
        match timeout_at(deadline, read).await {
            Ok(Ok(0)) => Err("connection closed by server".into()),
            Ok(Ok(n)) => Ok(n),
            Ok(Err(e)) => Err(format!("read: {e}")),
            Err(_) => Err("timed out waiting for reply".into()),
        }
    }

    /// RSET before reusing a pooled connection: false when the connection is dead.
    pub async fn reset(&mut self) -> bool {
        self.session.reset();
        matches!(self.drive().await, Action::Ready)
    }

    /// QUIT and close, ignoring errors.
    pub async fn quit(mut self) {
        self.session.quit();
        let _ = self.drive().await;
    }

    /// One mail transaction (RFC 5321 §3.3): the session decides, this streams the message.
    pub async fn transact(
        &mut self,
        sender: &str,
        recipients: &[String],
        message: &MessageBody,
        traits: &MessageTraits,
    ) -> TxEnd {
        self.session.begin(sender, recipients, traits);
        let mut chunks = Chunks::new();
        loop {
            match self.drive().await {
                Action::SendData { empty } => match self.send_data(message, empty).await {
                    Ok(()) => self.session.body_sent(),
                    Err(e) => self.body_error(e),
                },
                Action::SendChunk => match self.send_chunk(message, &mut chunks).await {
                    Ok(last) => self.session.chunk_sent(last),
                    Err(e) => self.body_error(e),
                },
                Action::End(end) => return end,
                other => {
                    return TxEnd::TryNext {
                        reason: format!("unexpected step in a transaction: {other:?}"),
                        io: false,
                    }
                }
            }
        }
    }

    fn body_error(&mut self, error: BodyError) {
        match error {
            BodyError::Io(e) => self.session.failed(e),
            BodyError::Local(reason) => self.session.body_failed(reason),
        }
    }
}

/// The connector for STARTTLS.
pub(crate) fn connector(config: Arc<rustls::ClientConfig>) -> TlsConnector {
    TlsConnector::from(config)
}
