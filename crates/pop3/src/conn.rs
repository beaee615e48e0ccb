//! One POP3 connection: the I/O loop around `proto::pop3::Session`.
//!
//! What it does: reads lines (bounded by the session's current limit, each within the idle
//! timeout), feeds them to the session and performs the returned actions: password checks
//! and Maildir access on blocking threads, the failed-login delay and per-IP limit, streaming
//! messages through the dot-stuffer in large writes, and the UPDATE state at QUIT. Replies
//! are flushed when no pipelined input is pending. Logs logins (never passwords) and QUIT
//! counts.
//!
//! What it does not do: TLS. A connection that times out, drops, or is shut down never runs
//! UPDATE, so nothing is deleted (RFC 1939 §6).

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use proto::pop3::{greeting, Action, AuthOutcome, DotStuffer, Session, SessionFlags};
use store::mailbox::{Mailbox, MailboxError};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::io::{BufReader, BufWriter};
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::{Authenticator, FailedLogins, Pop3Config};

/// Size of the chunks read from message files and written to the socket.
const CHUNK: usize = 64 * 1024;

/// Shared state a connection needs.
pub(crate) struct Context {
    pub config: Arc<Pop3Config>,
    pub auth: Arc<dyn Authenticator>,
    pub failed: Arc<FailedLogins>,
    pub shutdown: watch::Receiver<bool>,
}

/// Why the loop stops.
enum Stop {
    /// The session ended normally (QUIT, or closed by the session).
    Done,
    /// I/O error, EOF, timeout or shutdown.
    Abort(&'static str),
}

/// Reads one line of at most `max` octets (without CRLF). A longer line is consumed up to
/// its LF and returned truncated to `max + 1` octets so the session rejects it. `None` on EOF
/// (a partial last line is dropped).
async fn read_line<R: AsyncRead + Unpin>(
    rd: &mut BufReader<R>,
    max: usize,
) -> io::Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    let mut truncated = false;
    loop {
        let buf = rd.fill_buf().await?;
        if buf.is_empty() {
            return Ok(None);
        }
        let (part, used, end) = match buf.iter().position(|&b| b == b'\n') {
            Some(p) => (&buf[..p], p + 1, true),
            None => (buf, buf.len(), false),
        };
        // Keep max + 2 octets: room for a CR to strip while still detecting overflow.
        let room = (max + 2).saturating_sub(line.len());
        if part.len() > room {
            truncated = true;
        }
        line.extend_from_slice(&part[..part.len().min(room)]);
        rd.consume(used);
        if end {
            break;
        }
    }
    if line.last() == Some(&b'\r') && !truncated {
        line.pop();
    }
    if truncated || line.len() > max {
        line.truncate(max + 1);
        line.resize(max + 1, b'x');
    }
    Ok(Some(line))
}

async fn send<W: AsyncWrite + Unpin>(wr: &mut W, data: &[u8], t: Duration) -> io::Result<()> {
    match tokio::time::timeout(t, wr.write_all(data)).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "write timeout")),
    }
}

async fn flush<W: AsyncWrite + Unpin>(wr: &mut W, t: Duration) -> io::Result<()> {
    match tokio::time::timeout(t, wr.flush()).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::new(io::ErrorKind::TimedOut, "write timeout")),
    }
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
    let flags = SessionFlags {
        plaintext_login_allowed: ctx.config.plaintext_allowed(ip),
        tls_available: false,
        tls_active: false,
    };
    let _ = stream.set_nodelay(true);
    let (rd, wr) = stream.into_split();
    let mut rd = BufReader::with_capacity(4096, rd);
    let mut wr = BufWriter::with_capacity(CHUNK, wr);
    let mut conn = Conn {
        session: Session::new(flags),
        mailbox: None,
        ip,
        timeout: ctx.config.idle_timeout,
    };
    let stop = conn.serve(&mut rd, &mut wr, &mut ctx).await;
    if let Stop::Abort(why) = stop {
        tracing::info!(%ip, user = ?conn.session.user(), reason = why, "pop3: connection closed without QUIT");
    }
    // Dropping `conn.mailbox` releases the lock; nothing was deleted unless QUIT ran UPDATE.
}

struct Conn {
    session: Session,
    mailbox: Option<Mailbox>,
    ip: IpAddr,
    timeout: Duration,
}

impl Conn {
    async fn serve<R, W>(&mut self, rd: &mut BufReader<R>, wr: &mut W, ctx: &mut Context) -> Stop
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let t = self.timeout;
        if send(wr, greeting(&ctx.config.hostname).as_bytes(), t)
            .await
            .is_err()
            || flush(wr, t).await.is_err()
        {
            return Stop::Abort("write error");
        }
        loop {
            let max = self.session.max_line_length();
            let line = tokio::select! {
                r = tokio::time::timeout(t, read_line(rd, max)) => match r {
                    Ok(Ok(Some(line))) => line,
                    Ok(Ok(None)) => return Stop::Abort("eof"),
                    Ok(Err(_)) => return Stop::Abort("read error"),
                    Err(_) => {
                        let _ = send(wr, b"-ERR Idle timeout, closing\r\n", t).await;
                        let _ = flush(wr, t).await;
                        return Stop::Abort("idle timeout");
                    }
                },
                _ = ctx.shutdown.changed() => {
                    let _ = send(wr, b"-ERR [SYS/TEMP] Server shutting down\r\n", t).await;
                    let _ = flush(wr, t).await;
                    return Stop::Abort("shutdown");
                }
            };
            let action = self.session.handle_line(&line);
            match self.perform(action, wr, ctx).await {
                Ok(None) => {}
                Ok(Some(stop)) => {
                    let _ = flush(wr, t).await;
                    return stop;
                }
                Err(_) => return Stop::Abort("write error"),
            }
            // RFC 2449 §6.6 PIPELINING: answer a batch with as few writes as possible.
            if rd.buffer().is_empty() && flush(wr, t).await.is_err() {
                return Stop::Abort("write error");
            }
        }
    }

    async fn perform<W: AsyncWrite + Unpin>(
        &mut self,
        action: Action,
        wr: &mut W,
        ctx: &Context,
    ) -> io::Result<Option<Stop>> {
        let t = self.timeout;
        match action {
            Action::Reply(s) => send(wr, s.as_bytes(), t).await?,
            Action::Close(s) => {
                send(wr, s.as_bytes(), t).await?;
                return Ok(Some(Stop::Done));
            }
            // TLS is not implemented: the session never offers it, since tls_available is false.
            Action::StartTls(_) => send(wr, b"-ERR STLS not available\r\n", t).await?,
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
                let file = with_mailbox(&mut self.mailbox, move |mb| mb.open_message(index)).await;
                match file {
                    Some(Ok(file)) => {
                        send(wr, reply.as_bytes(), t).await?;
                        if self.stream(file, top_lines, wr).await.is_err() {
                            // After +OK there is no way to report an error: drop the connection.
                            return Ok(Some(Stop::Abort("error sending message")));
                        }
                    }
                    _ => {
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
                tracing::info!(ip = %self.ip, user = ?self.session.user(), retrieved, deleted, "pop3: quit");
                self.mailbox = None;
                send(wr, reply.as_bytes(), t).await?;
                return Ok(Some(Stop::Done));
            }
        }
        Ok(None)
    }

    async fn authenticate(&mut self, user: &str, password: String, ctx: &Context) -> AuthOutcome {
        let ip = self.ip;
        let delay = ctx.config.failed_login_delay;
        if ctx.failed.is_blocked(ip) {
            tracing::warn!(%ip, user = ?user, "pop3: login refused, too many failures from this address");
            tokio::time::sleep(delay).await;
            return AuthOutcome::Throttled;
        }
        let auth = ctx.auth.clone();
        let u = user.to_owned();
        let root = tokio::task::spawn_blocking(move || auth.authenticate(&u, &password)).await;
        let root = match root {
            Ok(Some(root)) => root,
            Ok(None) => {
                // Same path, reply and delay for unknown users and wrong passwords.
                ctx.failed.record_failure(ip);
                tracing::warn!(%ip, user = ?user, "pop3: login failed");
                tokio::time::sleep(delay).await;
                return AuthOutcome::BadCredentials;
            }
            Err(_) => {
                tracing::error!(%ip, user = ?user, "pop3: authenticator panicked");
                return AuthOutcome::TempFailure;
            }
        };
        let opened = tokio::task::spawn_blocking(move || Mailbox::open(&root)).await;
        match opened {
            Ok(Ok(mb)) => {
                let listing = mb.listing();
                tracing::info!(%ip, user = ?user, messages = listing.len(), "pop3: login ok");
                self.mailbox = Some(mb);
                AuthOutcome::Ok(listing)
            }
            Ok(Err(MailboxError::Locked)) => {
                tracing::info!(%ip, user = ?user, "pop3: login ok but maildrop in use");
                AuthOutcome::InUse
            }
            Ok(Err(MailboxError::Io(e))) => {
                tracing::error!(%ip, user = ?user, error = %e, "pop3: cannot open maildrop");
                AuthOutcome::TempFailure
            }
            Err(_) => AuthOutcome::TempFailure,
        }
    }

    /// Streams a message file, dot-stuffed, ending with `.\r\n`.
    async fn stream<W: AsyncWrite + Unpin>(
        &mut self,
        file: std::fs::File,
        top_lines: Option<u64>,
        wr: &mut W,
    ) -> io::Result<()> {
        let t = self.timeout;
        let mut file = tokio::fs::File::from_std(file);
        let mut stuffer = DotStuffer::new(top_lines);
        let mut buf = vec![0u8; CHUNK];
        let mut out = Vec::with_capacity(CHUNK + CHUNK / 8);
        loop {
            let n = file.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            stuffer.push(&buf[..n], &mut out);
            send(wr, &out, t).await?;
            out.clear();
            if stuffer.is_done() {
                break;
            }
        }
        stuffer.finish(&mut out);
        send(wr, &out, t).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn lines(input: &[u8], max: usize) -> Vec<Vec<u8>> {
        let mut rd = BufReader::with_capacity(7, input);
        let mut v = Vec::new();
        while let Some(l) = read_line(&mut rd, max).await.unwrap() {
            v.push(l);
        }
        v
    }

    #[tokio::test]
    async fn bounded_lines() {
        let got = lines(b"STAT\r\nLIST 1\nabcdefghijklmnop\r\nNOOP\r\npartial", 10).await;
        assert_eq!(got[0], b"STAT");
        assert_eq!(got[1], b"LIST 1");
        assert_eq!(got[2].len(), 11);
        assert_eq!(got[3], b"NOOP");
        assert_eq!(got.len(), 4);
        // Exactly max octets plus CRLF is fine; max + 1 octets is too long even if the
        // truncation point falls on the CR.
        let got = lines(b"0123456789\r\n0123456789a\r\n", 10).await;
        assert_eq!(got[0], b"0123456789");
        assert_eq!(got[1].len(), 11);
    }
}
