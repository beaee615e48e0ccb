//! The clocks of one SMTP session and the reads and writes that run under them.
//!
//! Every wait on the client is bounded: each read and each write gets the command timeout
//! (RFC 5321 §4.5.3.2), and the session time limit and the shutdown (after its grace period)
//! end any wait, a write as much as a read. A client that pipelines commands and never reads
//! the replies therefore cannot keep its session, or the server's shutdown, waiting: the
//! write that the full socket buffer blocks ends the session.
//!
//! A session chosen to make room for a newcomer (see `store::admission`) is told so by its
//! next read, which reports [`Interrupt::Evicted`]. The idle limit may change between commands
//! ([`Clocks::set_idle`]): stress mode shortens it for sessions that have proven nothing yet.
//!
//! It does not decide what to say: the caller queues the `421` replies; a write that cannot
//! finish simply ends the session with an error for the log.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::{Instant, Sleep};

/// The most a parting reply (`421` at a timeout, the session limit or shutdown) may wait for a
/// client that does not read.
const LAST_WORD: Duration = Duration::from_secs(5);

/// What ended a read before the client sent anything.
pub(crate) enum Interrupt {
    /// Silent for the command timeout.
    Idle,
    /// Shutdown was asked and its grace period is over.
    Shutdown,
    /// The session lasted its maximum time.
    SessionOver,
    /// The session's slot was given to a newcomer.
    Evicted,
}

/// The limits of one session.
pub(crate) struct Clocks {
    /// Time each read or write may take.
    idle: Duration,
    /// What a read may take while stress mode is on (`idle` when the session is exempt).
    stressed_idle: Duration,
    /// Stress mode; `None` once its sender is gone.
    stress: Option<watch::Receiver<bool>>,
    stop: Pin<Box<dyn Future<Output = ()> + Send>>,
    session_over: Pin<Box<Sleep>>,
    evicted: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl Clocks {
    /// `stop` resolves when the session must end for shutdown, `evicted` when its slot was
    /// given away; `max_session` counts from now.
    pub fn new(
        idle: Duration,
        max_session: Duration,
        stop: impl Future<Output = ()> + Send + 'static,
        evicted: impl Future<Output = ()> + Send + 'static,
        stress: watch::Receiver<bool>,
    ) -> Clocks {
        Clocks {
            idle,
            stressed_idle: idle,
            stress: Some(stress),
            stop: Box::pin(stop),
            session_over: Box::pin(tokio::time::sleep(max_session)),
            evicted: Box::pin(evicted),
        }
    }

    /// The time each following read or write may take: `idle`, or `stressed_idle` for reads
    /// while stress mode is on (also when it begins during the read).
    pub fn set_idle(&mut self, idle: Duration, stressed_idle: Duration) {
        self.idle = idle;
        self.stressed_idle = stressed_idle;
    }

    fn read_limit(&self) -> Duration {
        match &self.stress {
            Some(s) if *s.borrow() => self.stressed_idle,
            _ => self.idle,
        }
    }

    /// Reads what the client sent; `Ok(Err(_))` when a clock ran out first. Once this or
    /// [`Clocks::write`] reported a clock, the session must end.
    pub async fn read<S: AsyncRead + Unpin>(
        &mut self,
        stream: &mut S,
        buf: &mut [u8],
    ) -> io::Result<Result<usize, Interrupt>> {
        // Clocks first: once the session is over (or shutdown came), the next read says so,
        // even from a client whose commands are always ready, and the caller sends its 421.
        let start = Instant::now();
        loop {
            let deadline = start + self.read_limit();
            let stress = async {
                match self.stress.as_mut() {
                    Some(s) => s.changed().await.is_ok(),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = &mut self.stop => return Ok(Err(Interrupt::Shutdown)),
                _ = &mut self.session_over => return Ok(Err(Interrupt::SessionOver)),
                _ = &mut self.evicted => return Ok(Err(Interrupt::Evicted)),
                alive = stress => {
                    // The limit changed: wait again, from the same start, under the new one
                    // (a read is cancel-safe: nothing was taken from the socket).
                    if !alive {
                        self.stress = None;
                    }
                }
                r = tokio::time::timeout_at(deadline, stream.read(buf)) => return match r {
                    Ok(r) => r.map(Ok),
                    Err(_) => Ok(Err(Interrupt::Idle)),
                },
            }
        }
    }

    /// Writes all of `bytes`, or fails when the client does not take them within the command
    /// timeout, the session time is over, or shutdown comes.
    pub async fn write<S: AsyncWrite + Unpin>(
        &mut self,
        stream: &mut S,
        bytes: &[u8],
    ) -> io::Result<()> {
        // The write first: a reply the client takes at once goes out even when a clock has
        // just run out (the next read reports the clock, with a 421); only a write that is
        // stuck is ended by the clocks.
        tokio::select! {
            biased;
            r = tokio::time::timeout(self.idle, stream.write_all(bytes)) => match r {
                Ok(r) => r,
                Err(_) => Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "write timed out (client not reading replies)",
                )),
            },
            _ = &mut self.stop => Err(io::Error::other("shutdown while writing to the client")),
            _ = &mut self.session_over => {
                Err(io::Error::other("session time limit exceeded while writing to the client"))
            }
        }
    }

    /// Writes a parting reply, waiting briefly at most: the session ends either way.
    pub async fn last_word<S: AsyncWrite + Unpin>(
        &mut self,
        stream: &mut S,
        bytes: &[u8],
    ) -> io::Result<()> {
        match tokio::time::timeout(self.idle.min(LAST_WORD), stream.write_all(bytes)).await {
            Ok(r) => r,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "write timed out (client not reading replies)",
            )),
        }
    }
}
