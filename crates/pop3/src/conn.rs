//! One POP3 connection: the I/O loop around `proto::pop3::Session`.
//!
//! What it does: reads the socket into `proto::pop3::LineFramer` (which cuts lines, bounded by
//! the session's current limit; each line must arrive within the idle timeout), feeds them to
//! the session and performs the returned actions: password checks and Maildir access on
//! blocking threads, the shared login guard's delays and lockouts, sending messages, and the
//! UPDATE state at QUIT. Replies collect in one output buffer, written when no pipelined input
//! is pending. A message of up to [`WHOLE_MAX`] octets is read in one blocking call (open,
//! read into the session's buffer, right after its `+OK` line) and, when it needs no stuffing
//! (`proto::pop3::sent_unchanged`: Mailroom's CRLF files without a line starting with `.`),
//! goes out with its `+OK` and `.` in one write; otherwise through the dot-stuffer, and larger
//! messages are streamed in 64 KiB chunks.
//!
//! Memory of an idle session: no read buffer of its own (reads go through a per-thread scratch
//! buffer inside `poll`, so a waiting read holds nothing), and output buffers above
//! [`KEEP_CAPACITY`] are released after each write. Every write is bounded too: by the idle timeout, and after
//! shutdown by a short grace period, so a client that asks for a large message and never reads
//! it neither keeps its session nor holds up shutdown. Logs logins with `tls=yes/no`, failures
//! with IP and account (never passwords), and QUIT counts.
//!
//! TLS: the loop is generic over the stream, so the same code serves plain TCP and
//! `tokio_rustls` streams. Implicit TLS (RFC 8314) runs the handshake, with a timeout, before
//! the greeting. After `+OK` to STLS (RFC 2595 §4) the loop has the framer throw away every
//! octet the client sent after the STLS line and that is already buffered (CVE-2011-0411:
//! clear-text commands must never run inside TLS), runs the handshake with a timeout, and
//! continues reading inside TLS; a failed handshake closes the connection.
//!
//! What it does not do: build TLS configurations or check certificates. A connection that
//! times out, drops, or is shut down never runs UPDATE, so nothing is deleted (RFC 1939 §6).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use proto::pop3::{
    greeting, sent_unchanged, Action, AuthOutcome, DotStuffer, LineFramer, Session, SessionFlags,
};
use store::mailbox::{Mailbox, MailboxError};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::{Authenticator, LoginGuard, Pop3Config};
use store::login_guard::Lockout;

/// Size of the chunks read from large message files and written to the socket.
const CHUNK: usize = 64 * 1024;

/// Messages up to this size are read whole in one blocking call; larger ones are streamed.
const WHOLE_MAX: u64 = 256 * 1024;

/// Output and message buffers larger than this are released once written, so a session that
/// retrieved a large message does not keep its buffer while idle.
const KEEP_CAPACITY: usize = 16 * 1024;

/// Shared state a connection needs.
pub(crate) struct Context {
    pub config: Arc<Pop3Config>,
    pub auth: Arc<dyn Authenticator>,
    pub guard: Arc<LoginGuard>,
    pub shutdown: watch::Receiver<bool>,
    /// Set for implicit TLS, or to offer STLS.
    pub tls: Option<TlsAcceptor>,
    /// Handshake before the greeting (RFC 8314).
    pub implicit_tls: bool,
    /// This session's slot (`store::admission_gate`): freed when the connection ends.
    pub ticket: store::admission_gate::Ticket,
}

/// Octets asked of the socket per read; the framer holds at most this much unframed input.
const READ_SIZE: usize = 4096;

thread_local! {
    /// The read buffer of every connection polled on this thread: used only inside one
    /// `poll_read` call, so a connection waiting for input holds no buffer.
    static SCRATCH: std::cell::RefCell<Box<[u8; READ_SIZE]>> =
        std::cell::RefCell::new(Box::new([0; READ_SIZE]));
}

/// The connection's stream and its pending output: replies are appended to `out` and written
/// by [`flush`] in one `write_all`.
struct Io<S> {
    stream: S,
    out: Vec<u8>,
}

fn buffered<S: AsyncRead + AsyncWrite + Unpin>(stream: S) -> Io<S> {
    Io {
        stream,
        out: Vec::new(),
    }
}

/// Why the loop stops.
enum Stop {
    /// The session ended normally (QUIT, or closed by the session).
    Done,
    /// I/O error, EOF, timeout or shutdown.
    Abort(&'static str),
    /// `+OK` to STLS was sent and flushed: negotiate TLS now.
    StartTls,
}

/// Reads until the framer has a complete line of at most `max` octets (without CRLF; a longer
/// line comes out as `max + 1` octets so the session rejects it). `None` on EOF (a partial last
/// line is dropped).
async fn read_line<R: AsyncRead + Unpin>(
    rd: &mut R,
    lines: &mut LineFramer,
    max: usize,
) -> io::Result<Option<Vec<u8>>> {
    loop {
        if let Some(line) = lines.next_line(max) {
            return Ok(Some(line));
        }
        let n = std::future::poll_fn(|cx| {
            SCRATCH.with(|scratch| {
                let mut scratch = scratch.borrow_mut();
                let mut buf = ReadBuf::new(&mut scratch[..]);
                match std::pin::Pin::new(&mut *rd).poll_read(cx, &mut buf) {
                    std::task::Poll::Ready(Ok(())) => {
                        lines.receive(buf.filled());
                        std::task::Poll::Ready(Ok(buf.filled().len()))
                    }
                    std::task::Poll::Ready(Err(e)) => std::task::Poll::Ready(Err(e)),
                    std::task::Poll::Pending => std::task::Poll::Pending,
                }
            })
        })
        .await?;
        if n == 0 {
            return Ok(None);
        }
    }
}

/// Time a write may still take once shutdown is asked: a RETR to a client that reads finishes,
/// one to a client that does not read ends.
const SHUTDOWN_WRITE_GRACE: Duration = Duration::from_secs(5);

/// The bounds on every write to the client: the idle timeout, and shutdown after
/// [`SHUTDOWN_WRITE_GRACE`].
#[derive(Clone)]
struct WriteLimit {
    timeout: Duration,
    shutdown: watch::Receiver<bool>,
    /// When this connection first saw the shutdown.
    stopping_since: Arc<std::sync::OnceLock<tokio::time::Instant>>,
}

impl WriteLimit {
    /// Resolves when a write must give up because of shutdown.
    async fn stopped(&self) {
        let mut rx = self.shutdown.clone();
        if rx.wait_for(|stop| *stop).await.is_err() {
            return std::future::pending().await;
        }
        let since = *self.stopping_since.get_or_init(tokio::time::Instant::now);
        tokio::time::sleep_until(since + SHUTDOWN_WRITE_GRACE).await;
    }

    /// Runs a write under the limits.
    async fn run(
        &self,
        write: impl std::future::Future<Output = io::Result<()>>,
    ) -> io::Result<()> {
        tokio::select! {
            r = tokio::time::timeout(self.timeout, write) => match r {
                Ok(r) => r,
                Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "write timeout")),
            },
            _ = self.stopped() => Err(io::Error::other("shutdown while writing")),
        }
    }
}

/// Queues `data` for the next [`flush`]; writes at once when a lot is pending.
async fn send<S: AsyncWrite + Unpin>(
    io: &mut Io<S>,
    data: &[u8],
    t: &WriteLimit,
) -> io::Result<()> {
    io.out.extend_from_slice(data);
    if io.out.len() >= CHUNK {
        flush(io, t).await?;
    }
    Ok(())
}

/// Writes the pending output (one `write_all`), then flushes the stream (TLS records).
async fn flush<S: AsyncWrite + Unpin>(io: &mut Io<S>, t: &WriteLimit) -> io::Result<()> {
    let Io { stream, out } = io;
    // Boxed: the write's timers live only while it runs, not in every idle session's future.
    Box::pin(t.run(async {
        if !out.is_empty() {
            stream.write_all(out).await?;
        }
        stream.flush().await
    }))
    .await?;
    out.clear();
    if out.capacity() > KEEP_CAPACITY {
        *out = Vec::new();
    }
    Ok(())
}

/// Runs `f` on the mailbox in a blocking thread and gives the mailbox back.
async fn with_mailbox<T: Send + 'static>(
    slot: &mut Option<Mailbox>,
    f: impl FnOnce(&mut Mailbox) -> T + Send + 'static,
) -> Option<T> {
    let mut mb = slot.take()?;
    let (mb, r) = tokio::task::spawn_blocking(move || {
        let r = f(&mut mb);
        (mb, r)
    })
    .await
    .ok()?;
    *slot = Some(mb);
    Some(r)
}

/// Serves one connection until it ends.
pub(crate) async fn run(stream: TcpStream, peer: SocketAddr, mut ctx: Context) {
    let ip = peer.ip().to_canonical();
    let _ = stream.set_nodelay(true);
    let trusted = ctx.config.plaintext_allowed(ip);
    let tls = ctx.tls.clone();
    let mut conn = Conn {
        session: Session::new(SessionFlags {
            plaintext_login_allowed: trusted,
            tls_available: tls.is_some() && !ctx.implicit_tls,
            tls_active: false,
        }),
        lines: LineFramer::new(),
        mailbox: None,
        message: Vec::new(),
        ip,
        timeout: ctx.config.idle_timeout,
        limit: WriteLimit {
            timeout: ctx.config.idle_timeout,
            shutdown: ctx.shutdown.clone(),
            stopping_since: Arc::default(),
        },
    };
    let stop = match tls {
        Some(acceptor) if ctx.implicit_tls => {
            // RFC 8314 §3.3: TLS first, then POP3 inside it.
            match Box::pin(handshake(&acceptor, stream, ip, &mut ctx)).await {
                Ok(tls) => {
                    conn.session = Session::new(SessionFlags {
                        plaintext_login_allowed: trusted,
                        tls_available: false,
                        tls_active: true,
                    });
                    Box::pin(conn.serve_stream(tls, true, &mut ctx)).await
                }
                Err(why) => Stop::Abort(why),
            }
        }
        tls => {
            let mut io = buffered(stream);
            match conn.serve(&mut io, true, &mut ctx).await {
                Stop::StartTls => match tls {
                    Some(acceptor) => Box::pin(conn.start_tls(io, &acceptor, &mut ctx)).await,
                    None => Stop::Abort("STLS without TLS"),
                },
                stop => {
                    close(io, conn.timeout).await;
                    stop
                }
            }
        }
    };
    if let Stop::Abort(why) = stop {
        tracing::info!(%ip, user = conn.session.user().map(proto::smtp::address::escape).map(tracing::field::display), reason = why, "pop3: connection closed without QUIT");
    }
    // Dropping `conn.mailbox` releases the lock; nothing was deleted unless QUIT ran UPDATE.
}

/// Runs the server side of a TLS handshake within the configured timeout, giving up early on
/// shutdown.
async fn handshake(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    ip: IpAddr,
    ctx: &mut Context,
) -> Result<tokio_rustls::server::TlsStream<TcpStream>, &'static str> {
    let limit = ctx.config.tls_handshake_timeout;
    tokio::select! {
        r = tokio::time::timeout(limit, acceptor.accept(stream)) => match r {
            Ok(Ok(tls)) => Ok(tls),
            Ok(Err(e)) => {
                tracing::info!(%ip, error = %e, "pop3: TLS handshake failed");
                metrics::global()
                    .tls_handshake_failures
                    .get_or_create(&metrics::ServiceLabel { service: "pop3" })
                    .inc();
                Err("TLS handshake failed")
            }
            Err(_) => Err("TLS handshake timeout"),
        },
        _ = ctx.shutdown.changed() => Err("shutdown"),
    }
}

/// Ends a connection: flushes and shuts down the write side (for TLS, sends close_notify),
/// without waiting long for a client that does not read.
async fn close<S: AsyncRead + AsyncWrite + Unpin>(mut io: Io<S>, t: Duration) {
    let t = t.min(Duration::from_secs(5));
    let _ = tokio::time::timeout(t, async {
        if !io.out.is_empty() {
            io.stream.write_all(&io.out).await?;
        }
        io.stream.shutdown().await
    })
    .await;
}

struct Conn {
    session: Session,
    /// Received octets cut into lines; emptied at STLS.
    lines: LineFramer,
    mailbox: Option<Mailbox>,
    /// The message being sent (its `+OK` line first), reused from one RETR to the next.
    message: Vec<u8>,
    ip: IpAddr,
    timeout: Duration,
    limit: WriteLimit,
}

impl Conn {
    /// Before each read: a logged-in (or trusted) session keeps its slot; in stress mode one
    /// that has not logged in gets the stress timeout. Returns the timeout for the read.
    fn admission_rules(&self, ctx: &Context) -> Duration {
        if self.session.user().is_some() {
            ctx.ticket.protect();
            return self.timeout;
        }
        if ctx.ticket.gate().stressed() && !ctx.config.plaintext_allowed(self.ip) {
            ctx.config.stress_timeout.min(self.timeout)
        } else {
            self.timeout
        }
    }

    /// After `+OK` to STLS: discards the buffered clear text, negotiates TLS and serves the
    /// rest of the connection inside it.
    async fn start_tls(
        &mut self,
        io: Io<TcpStream>,
        acceptor: &TlsAcceptor,
        ctx: &mut Context,
    ) -> Stop {
        let ip = self.ip;
        // RFC 2595 §4 / CVE-2011-0411: whatever the client sent after STLS before seeing our
        // +OK was sent in clear text; it is dropped here, never read inside TLS.
        let pending = self.lines.discard_buffered();
        if pending > 0 {
            tracing::warn!(%ip, octets = pending, "pop3: discarding clear-text input sent after STLS");
        }
        // The write buffer is empty (the +OK was flushed).
        let stream = io.stream;
        match Box::pin(handshake(acceptor, stream, ip, ctx)).await {
            Ok(tls) => {
                self.session.tls_started();
                tracing::debug!(%ip, "pop3: STLS done");
                Box::pin(self.serve_stream(tls, false, ctx)).await
            }
            Err(why) => Stop::Abort(why),
        }
    }

    /// Serves a TLS stream until the session ends, then closes it.
    async fn serve_stream<S: AsyncRead + AsyncWrite + Unpin>(
        &mut self,
        stream: S,
        greet: bool,
        ctx: &mut Context,
    ) -> Stop {
        let mut io = buffered(stream);
        let stop = match self.serve(&mut io, greet, ctx).await {
            // The session never asks for STLS once TLS is active.
            Stop::StartTls => Stop::Abort("STLS inside TLS"),
            stop => stop,
        };
        close(io, self.timeout).await;
        stop
    }

    async fn serve<S>(&mut self, io: &mut Io<S>, greet: bool, ctx: &mut Context) -> Stop
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let t = &self.limit.clone();
        if greet
            && (send(io, greeting(&ctx.config.hostname).as_bytes(), t)
                .await
                .is_err()
                || flush(io, t).await.is_err())
        {
            return Stop::Abort("write error");
        }
        let mut stress = ctx.ticket.gate().stress_watch();
        loop {
            let max = self.session.max_line_length();
            let start = tokio::time::Instant::now();
            let line = loop {
                // Re-evaluated when stress mode begins or ends during the wait.
                let deadline = start + self.admission_rules(ctx);
                tokio::select! {
                    _ = ctx.ticket.evicted() => {
                        tracing::info!(ip = %self.ip, "pop3: closed to make room for a newcomer");
                        let _ = send(io, b"-ERR [SYS/TEMP] Too many connections, closing idle session\r\n", t).await;
                        let _ = flush(io, t).await;
                        return Stop::Abort("evicted");
                    }
                    Ok(()) = stress.changed() => continue,
                    r = tokio::time::timeout_at(deadline, read_line(&mut io.stream, &mut self.lines, max)) => match r {
                        Ok(Ok(Some(line))) => break line,
                        Ok(Ok(None)) => return Stop::Abort("eof"),
                        Ok(Err(_)) => return Stop::Abort("read error"),
                        Err(_) => {
                            let _ = send(io, b"-ERR Idle timeout, closing\r\n", t).await;
                            let _ = flush(io, t).await;
                            return Stop::Abort("idle timeout");
                        }
                    },
                    _ = ctx.shutdown.changed() => {
                        let _ = send(io, b"-ERR [SYS/TEMP] Server shutting down\r\n", t).await;
                        let _ = flush(io, t).await;
                        return Stop::Abort("shutdown");
                    }
                }
            };
            let action = self.session.handle_line(&line);
            // Boxed: what a command needs (a password check, a message read) is allocated while it
            // runs, not kept in every idle session's future.
            match Box::pin(self.perform(action, io, ctx)).await {
                Ok(None) => {}
                Ok(Some(stop)) => {
                    let _ = flush(io, t).await;
                    return stop;
                }
                Err(_) => return Stop::Abort("write error"),
            }
            // RFC 2449 §6.6 PIPELINING: answer a batch with as few writes as possible.
            if !self.lines.has_buffered() && flush(io, t).await.is_err() {
                return Stop::Abort("write error");
            }
        }
    }

    async fn perform<S: AsyncWrite + Unpin>(
        &mut self,
        action: Action,
        wr: &mut Io<S>,
        ctx: &Context,
    ) -> io::Result<Option<Stop>> {
        let t = &self.limit.clone();
        match action {
            Action::Reply(s) => send(wr, s.as_bytes(), t).await?,
            Action::Close(s) => {
                send(wr, s.as_bytes(), t).await?;
                return Ok(Some(Stop::Done));
            }
            Action::StartTls(reply) => {
                // The reply must reach the client in clear text before the handshake.
                send(wr, reply.as_bytes(), t).await?;
                flush(wr, t).await?;
                return Ok(Some(Stop::StartTls));
            }
            Action::Authenticate { user, password } => {
                let outcome = self.authenticate(&user, password, ctx).await;
                let next = self.session.auth_result(outcome);
                return Box::pin(self.perform(next, wr, ctx)).await;
            }
            Action::SendMessage {
                index,
                top_lines,
                reply,
            } => {
                let mut buf = std::mem::take(&mut self.message);
                buf.clear();
                buf.extend_from_slice(reply.as_bytes());
                let read = with_mailbox(&mut self.mailbox, move |mb| {
                    let r = mb.read_into(index, &mut buf, WHOLE_MAX);
                    (buf, r)
                })
                .await;
                match read {
                    Some((buf, Ok(None))) => {
                        self.send_whole(buf, reply.len(), top_lines, wr).await?;
                    }
                    Some((buf, Ok(Some(file)))) => {
                        self.message = buf;
                        send(wr, reply.as_bytes(), t).await?;
                        if self.stream(file, top_lines, wr).await.is_err() {
                            // After +OK there is no way to report an error: drop the connection.
                            return Ok(Some(Stop::Abort("error sending message")));
                        }
                    }
                    other => {
                        if let Some((buf, _)) = other {
                            self.message = buf;
                        }
                        let r = self.session.send_failed(index);
                        send(wr, r.as_bytes(), t).await?;
                    }
                }
            }
            Action::Quit { delete, seen } => {
                // RFC 1939 §6: the UPDATE state, entered only through QUIT.
                let report =
                    with_mailbox(&mut self.mailbox, move |mb| mb.update(&delete, &seen)).await;
                let not_removed = match report {
                    Some(r) => r.not_deleted,
                    None => usize::MAX,
                };
                let reply = self.session.update_result(not_removed);
                let (retrieved, deleted) = self.session.counts();
                metrics::global().pop3_retrievals.inc_by(retrieved as u64);
                tracing::info!(ip = %self.ip, user = self.session.user().map(proto::smtp::address::escape).map(tracing::field::display), retrieved, deleted, "pop3: quit");
                self.mailbox = None;
                send(wr, reply.as_bytes(), t).await?;
                return Ok(Some(Stop::Done));
            }
        }
        Ok(None)
    }

    /// Checks credentials under the login guard (see `store::login_guard`), then locks and lists
    /// the maildrop.
    async fn authenticate(&mut self, user: &str, password: String, ctx: &Context) -> AuthOutcome {
        let ip = self.ip;
        let tls = if self.session.tls_active() {
            "yes"
        } else {
            "no"
        };
        let attempt = match ctx.guard.begin(ip, user, ctx.guard.now()) {
            Ok(a) => a,
            Err(refused) if refused.lockout == Lockout::Ip => {
                tracing::warn!(%ip, user = %proto::smtp::address::escape(user), tls, "pop3: login refused, too many failures from this address");
                tokio::time::sleep(refused.delay).await;
                return AuthOutcome::Throttled;
            }
            Err(refused) => {
                // The account is locked for a while: answer exactly as for a wrong password,
                // without running the password check.
                tracing::warn!(%ip, user = %proto::smtp::address::escape(user), tls, "pop3: login refused, too many failures for this account");
                tokio::time::sleep(refused.delay).await;
                return AuthOutcome::BadCredentials;
            }
        };
        let auth = ctx.auth.clone();
        let u = user.to_owned();
        let root = tokio::task::spawn_blocking(move || auth.authenticate(&u, &password)).await;
        let root = match root {
            Ok(Some(root)) => {
                attempt.succeeded();
                root
            }
            Ok(None) => {
                // Same path, reply and delay for unknown users and wrong passwords; the delay
                // grows with the recent failures of this address or this account.
                let f = attempt.failed(ctx.guard.now());
                metrics::global()
                    .login_failures
                    .get_or_create(&metrics::ProtocolLabel { protocol: "pop3" })
                    .inc();
                tracing::warn!(%ip, user = %proto::smtp::address::escape(user), tls, ip_failures = f.ip_failures, account_failures = f.account_failures, "pop3: login failed");
                tokio::time::sleep(f.delay).await;
                return AuthOutcome::BadCredentials;
            }
            Err(_) => {
                drop(attempt);
                tracing::error!(%ip, user = %proto::smtp::address::escape(user), "pop3: authenticator panicked");
                return AuthOutcome::TempFailure;
            }
        };
        let opened = tokio::task::spawn_blocking(move || Mailbox::open(&root)).await;
        match opened {
            Ok(Ok(mb)) => {
                // Logged in: never evicted from now on (before the +OK goes out).
                ctx.ticket.protect();
                let listing = mb.listing();
                tracing::info!(%ip, user = %proto::smtp::address::escape(user), tls, messages = listing.len(), "pop3: login ok");
                self.mailbox = Some(mb);
                AuthOutcome::Ok(listing)
            }
            Ok(Err(MailboxError::Locked)) => {
                tracing::info!(%ip, user = %proto::smtp::address::escape(user), tls, "pop3: login ok but maildrop in use");
                AuthOutcome::InUse
            }
            Ok(Err(MailboxError::Io(e))) => {
                tracing::error!(%ip, user = %proto::smtp::address::escape(user), error = %e, "pop3: cannot open maildrop");
                AuthOutcome::TempFailure
            }
            Err(_) => AuthOutcome::TempFailure,
        }
    }

    /// Queues a message read whole: `buf` holds its `+OK` line (`reply_len` octets) and then
    /// the file. A RETR of a message that needs no stuffing goes out as it is with `.\r\n`
    /// appended, in the same write as the `+OK` line; anything else through the dot-stuffer.
    async fn send_whole<S: AsyncWrite + Unpin>(
        &mut self,
        mut buf: Vec<u8>,
        reply_len: usize,
        top_lines: Option<u64>,
        wr: &mut Io<S>,
    ) -> io::Result<()> {
        let t = &self.limit.clone();
        if top_lines.is_none() && sent_unchanged(&buf[reply_len..]) {
            buf.extend_from_slice(b".\r\n");
            if wr.out.is_empty() {
                std::mem::swap(&mut wr.out, &mut buf);
            } else {
                wr.out.extend_from_slice(&buf);
            }
        } else {
            wr.out.extend_from_slice(&buf[..reply_len]);
            let mut stuffer = DotStuffer::new(top_lines);
            stuffer.push(&buf[reply_len..], &mut wr.out);
            stuffer.finish(&mut wr.out);
        }
        buf.clear();
        if buf.capacity() <= KEEP_CAPACITY {
            self.message = buf;
        }
        if wr.out.len() >= CHUNK {
            flush(wr, t).await?;
        }
        Ok(())
    }

    /// Streams a message file, dot-stuffed, ending with `.\r\n`.
    async fn stream<S: AsyncWrite + Unpin>(
        &mut self,
        file: std::fs::File,
        top_lines: Option<u64>,
        wr: &mut Io<S>,
    ) -> io::Result<()> {
        let t = &self.limit.clone();
        let mut file = tokio::fs::File::from_std(file);
        let mut stuffer = DotStuffer::new(top_lines);
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = file.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            stuffer.push(&buf[..n], &mut wr.out);
            if wr.out.len() >= CHUNK {
                flush(wr, t).await?;
            }
            if stuffer.is_done() {
                break;
            }
        }
        stuffer.finish(&mut wr.out);
        Ok(())
    }
}
