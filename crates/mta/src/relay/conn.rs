//! One SMTP client connection to a remote MTA: greeting, EHLO/HELO, STARTTLS, AUTH PLAIN, one
//! mail transaction at a time, RSET and QUIT, each network wait under the timeouts of RFC 5321
//! §4.5.3.2.
//!
//! Protocol rules (reply parsing, capabilities, command lines, dot-stuffing, per-recipient
//! outcomes) come from [`proto::smtp::client`]; this file only moves bytes and decides what to
//! send next; the message itself is streamed by [`send`] (DATA or BDAT). It does not choose
//! hosts, retry, or pool: that is [`super`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use proto::smtp::client::{
    self, outcomes, plan, reply_text, Capabilities, MessageTraits, Outcome, Replies, ReplyParser,
};
use proto::smtp::Reply;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::body::MessageBody;
use super::{Destination, Timeouts};

mod send;
use send::Sent;

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
}

/// How a transaction ended.
pub(crate) enum TxEnd {
    /// Every recipient has an outcome; `reusable` when the connection may carry another message.
    Done {
        outcomes: Vec<Outcome>,
        reusable: bool,
    },
    /// Nothing was delivered (4xx to MAIL, 421, the connection failed before the final `.`):
    /// try another host. `io` when the connection itself failed rather than the server refusing.
    TryNext { reason: String, io: bool },
    /// The queued message could not be read halfway through sending it: every recipient is
    /// deferred and the connection must be dropped at once (no QUIT, no final `.`), so that
    /// the server discards the partial message.
    Abort { reason: String },
}

/// An established SMTP session, ready for MAIL.
pub(crate) struct Conn {
    stream: Stream,
    parser: ReplyParser,
    pub caps: Capabilities,
    /// `host [ip]:port`, for logs and outcomes.
    pub label: String,
    pub addr: SocketAddr,
    pub tls: bool,
    /// Messages sent over this connection.
    pub messages: usize,
    timeouts: Timeouts,
}

/// How to set up a session.
pub(crate) struct Setup<'a> {
    pub helo_name: &'a str,
    pub timeouts: &'a Timeouts,
    /// `None`: plaintext only (after a failed handshake).
    pub tls: Option<&'a TlsConnector>,
    /// STARTTLS then AUTH PLAIN with these credentials; no TLS is then an error.
    pub auth: Option<&'a (String, String)>,
}

impl Conn {
    /// Connects and runs greeting, EHLO, STARTTLS (when offered and `setup.tls` is set), EHLO
    /// again, and AUTH.
    pub async fn open(dest: &Destination, setup: &Setup<'_>) -> Result<Conn, OpenError> {
        let label = format!("{} [{}]:{}", dest.host, dest.addr.ip(), dest.addr.port());
        let fail = |e: String| OpenError::Failed(format!("{label}: {e}"));
        let tcp = match timeout(setup.timeouts.connect, TcpStream::connect(dest.addr)).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => return Err(fail(format!("connect: {e}"))),
            Err(_) => return Err(fail("connect: timed out".into())),
        };
        let _ = tcp.set_nodelay(true);
        let mut conn = Conn {
            stream: Stream::Plain(tcp),
            parser: ReplyParser::new(),
            caps: Capabilities::default(),
            label: label.clone(),
            addr: dest.addr,
            tls: false,
            messages: 0,
            timeouts: setup.timeouts.clone(),
        };
        let greeting = conn
            .read_reply(conn.timeouts.greeting)
            .await
            .map_err(fail)?;
        if greeting.code != 220 {
            return Err(fail(format!("greeting: {}", reply_text(&greeting))));
        }
        conn.hello(setup.helo_name).await.map_err(fail)?;
        if let Some(connector) = setup.tls.filter(|_| conn.caps.starttls) {
            let reply = conn
                .command("STARTTLS\r\n", conn.timeouts.greeting)
                .await
                .map_err(fail)?;
            if reply.code == 220 {
                if conn.parser.buffered() != 0 {
                    // RFC 3207 §6: bytes sent before the handshake must not count as TLS data.
                    return Err(fail("data after STARTTLS reply (injection attempt)".into()));
                }
                conn = conn.starttls(connector, &dest.host).await?;
                conn.hello(setup.helo_name).await.map_err(fail)?;
            } else {
                tracing::info!("relay: {label}: STARTTLS refused: {}", reply_text(&reply));
            }
        }
        if let Some((user, password)) = setup.auth {
            if !conn.tls {
                return Err(fail(
                    "smarthost does not offer STARTTLS; refusing to send credentials in plaintext"
                        .into(),
                ));
            }
            if !conn.caps.auth.iter().any(|m| m == "PLAIN") {
                return Err(fail("smarthost does not offer AUTH PLAIN".into()));
            }
            let reply = conn
                .command(&client::auth_plain(user, password), conn.timeouts.greeting)
                .await
                .map_err(fail)?;
            if reply.code != 235 {
                return Err(fail(format!("AUTH failed: {}", reply_text(&reply))));
            }
        }
        Ok(conn)
    }

    /// EHLO, or HELO when EHLO gets a 5xx (RFC 5321 §3.2); under the greeting timeout, like
    /// Postfix's `smtp_helo_timeout`.
    async fn hello(&mut self, name: &str) -> Result<(), String> {
        let limit = self.timeouts.greeting;
        let reply = self.command(&client::ehlo(name), limit).await?;
        if reply.code == 250 {
            self.caps = Capabilities::from_ehlo(&reply);
            return Ok(());
        }
        if reply.code >= 500 {
            let reply = self.command(&client::helo(name), limit).await?;
            if reply.code == 250 {
                self.caps = Capabilities::default();
                return Ok(());
            }
            return Err(format!("HELO: {}", reply_text(&reply)));
        }
        Err(format!("EHLO: {}", reply_text(&reply)))
    }

    async fn starttls(self, connector: &TlsConnector, host: &str) -> Result<Conn, OpenError> {
        let Stream::Plain(tcp) = self.stream else {
            return Err(OpenError::Failed(format!("{}: TLS already on", self.label)));
        };
        let name = super::tls::server_name(host, self.addr.ip());
        let handshake = timeout(SHORT_TIMEOUT, connector.connect(name, tcp)).await;
        match handshake {
            Ok(Ok(tls)) => {
                let (_, session) = tls.get_ref();
                tracing::info!(
                    "relay: {}: STARTTLS {:?} {:?} (certificate not verified)",
                    self.label,
                    session.protocol_version(),
                    session.negotiated_cipher_suite().map(|c| c.suite()),
                );
                Ok(Conn {
                    stream: Stream::Tls(Box::new(tls)),
                    parser: ReplyParser::new(),
                    caps: Capabilities::default(),
                    tls: true,
                    ..self
                })
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

    /// The next reply, waiting at most `limit` for all of it.
    async fn read_reply(&mut self, limit: Duration) -> Result<Reply, String> {
        let read = async {
            let mut buf = [0u8; 4096];
            loop {
                if let Some(reply) = self.parser.next_reply().map_err(|e| e.to_string())? {
                    return Ok(reply);
                }
                let n = match &mut self.stream {
                    Stream::Plain(s) => s.read(&mut buf).await,
                    Stream::Tls(s) => s.read(&mut buf).await,
                }
                .map_err(|e| format!("read: {e}"))?;
                if n == 0 {
                    return Err("connection closed by server".to_string());
                }
                self.parser.feed(&buf[..n]);
            }
        };
        timeout(limit, read)
            .await
            .unwrap_or_else(|_| Err("timed out waiting for reply".into()))
    }

    async fn command(&mut self, line: &str, limit: Duration) -> Result<Reply, String> {
        self.write(line.as_bytes(), limit).await?;
        self.read_reply(limit).await
    }

    /// RSET before reusing a pooled connection: false when the connection is dead.
    pub async fn reset(&mut self) -> bool {
        matches!(self.command("RSET\r\n", SHORT_TIMEOUT).await, Ok(r) if r.code == 250)
    }

    /// QUIT and close, ignoring errors.
    pub async fn quit(mut self) {
        let _ = self.command("QUIT\r\n", QUIT_TIMEOUT).await;
    }

    /// One mail transaction (RFC 5321 §3.3), pipelined when the server offers PIPELINING.
    pub async fn transact(
        &mut self,
        sender: &str,
        recipients: &[String],
        message: &MessageBody,
        traits: &MessageTraits,
    ) -> TxEnd {
        let plan = match plan(&self.caps, sender, recipients, traits) {
            Ok(plan) => plan,
            Err(refusal) => {
                let outcome = Outcome::Failed {
                    status: refusal.status.to_string(),
                    reply: refusal.reason,
                };
                return TxEnd::Done {
                    outcomes: vec![outcome; recipients.len()],
                    reusable: true,
                };
            }
        };
        self.messages += 1;
        let io = |reason: String| TxEnd::TryNext { reason, io: true };
        let t = self.timeouts.clone();
        let (mail, rcpts, data) = if plan.pipelining {
            // RFC 2920 §3.1: MAIL, RCPTs and DATA in one write, then every reply in order
            // (with CHUNKING there is no DATA: the BDAT chunks follow the RCPT replies).
            if let Err(e) = self.write(plan.writes().concat().as_bytes(), t.mail).await {
                return io(e);
            }
            let data_replies = usize::from(!plan.chunking);
            let mut replies = Vec::with_capacity(recipients.len() + 2);
            for i in 0..recipients.len() + 1 + data_replies {
                let limit = if i == 0 {
                    t.mail
                } else if i == recipients.len() + 1 {
                    t.data_init
                } else {
                    t.rcpt
                };
                match self.read_reply(limit).await {
                    Ok(r) => replies.push(r),
                    Err(e) => return io(e),
                }
            }
            let data = if plan.chunking { None } else { replies.pop() };
            let mail = replies.remove(0);
            (mail, replies, data)
        } else {
            let mail = match self.command(&plan.mail, t.mail).await {
                Ok(r) => r,
                Err(e) => return io(e),
            };
            let mut rcpts = Vec::with_capacity(recipients.len());
            if mail.code == 250 {
                for line in &plan.rcpts {
                    match self.command(line, t.rcpt).await {
                        Ok(r) if r.code == 421 => {
                            return TxEnd::TryNext {
                                reason: format!("{}: {}", self.label, reply_text(&r)),
                                io: false,
                            }
                        }
                        Ok(r) => rcpts.push(r),
                        Err(e) => return io(e),
                    }
                }
            }
            let accepted = rcpts.iter().any(|r| r.code / 100 == 2);
            let data = if accepted && !plan.chunking {
                match self.command("DATA\r\n", t.data_init).await {
                    Ok(r) => Some(r),
                    Err(e) => return io(e),
                }
            } else {
                None
            };
            // A refused MAIL leaves no RCPT replies; every recipient gets the MAIL reply.
            if rcpts.len() < recipients.len() {
                rcpts.resize(recipients.len(), mail.clone());
            }
            (mail, rcpts, data)
        };
        // A 4xx to MAIL or a 421 anywhere: the next host may do better (RFC 5321 §5.1).
        let closing = [&mail]
            .into_iter()
            .chain(&rcpts)
            .chain(&data)
            .find(|r| r.code == 421);
        if let Some(reply) = closing.or(Some(&mail).filter(|m| m.code / 100 == 4)) {
            return TxEnd::TryNext {
                reason: format!("{}: {}", self.label, reply_text(reply)),
                io: false,
            };
        }
        let accepted = mail.code == 250 && rcpts.iter().any(|r| r.code / 100 == 2);
        let sent = if data.as_ref().is_some_and(|d| d.code == 354) {
            // With no accepted recipient (pipelined) there is nothing to send: an empty DATA.
            Some(self.send_data(message, !accepted).await)
        } else if plan.chunking && accepted {
            Some(self.send_chunks(message, plan.pipelining).await)
        } else {
            None
        };
        let end = match sent {
            None => None,
            Some(Sent::Reply(r)) => Some(r),
            Some(Sent::Io(e)) => return io(e),
            Some(Sent::Local(reason)) => return TxEnd::Abort { reason },
            Some(Sent::IoAfterEnd(e)) => {
                // The message may or may not have been taken: try again later.
                let replies = Replies {
                    mail: &mail,
                    rcpts: &rcpts,
                    data: Some(&Reply::new(451, format!("4.4.2 {e} after end of data"))),
                    end: None,
                };
                return TxEnd::Done {
                    outcomes: outcomes(&replies),
                    reusable: false,
                };
            }
        };
        let reusable = end.as_ref().is_none_or(|r| r.code != 421);
        let replies = Replies {
            mail: &mail,
            rcpts: &rcpts,
            data: data.as_ref(),
            end: end.as_ref(),
        };
        TxEnd::Done {
            outcomes: outcomes(&replies),
            reusable,
        }
    }
}

/// The connector for STARTTLS.
pub(crate) fn connector(config: Arc<rustls::ClientConfig>) -> TlsConnector {
    TlsConnector::from(config)
}
