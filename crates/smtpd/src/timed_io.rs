//! The clocks of one SMTP session and the reads and writes that run under them.
//!
//! Every wait on the client is bounded: each read and each write gets the command timeout
//! (RFC 5321 §4.5.3.2), and the session time limit and the shutdown (after its grace period)
//! end any wait, a write as much as a read. A client that pipelines commands and never reads
//! the replies therefore cannot keep its session, or the server's shutdown, waiting: the
//! write that the full socket buffer blocks ends the session.
//!
//! It does not decide what to say: the caller queues the `421` replies; a write that cannot
//! finish simply ends the session with an error for the log.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::Sleep;

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
}

/// The limits of one session.
pub(crate) struct Clocks {
    /// Time each read or write may take.
    idle: Duration,
    stop: Pin<Box<dyn Future<Output = ()> + Send>>,
    session_over: Pin<Box<Sleep>>,
}

impl Clocks {
    /// `stop` resolves when the session must end for shutdown; `max_session` counts from now.
    pub fn new(
        idle: Duration,
        max_session: Duration,
        stop: impl Future<Output = ()> + Send + 'static,
    ) -> Clocks {
        Clocks {
            idle,
            stop: Box::pin(stop),
            session_over: Box::pin(tokio::time::sleep(max_session)),
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
        tokio::select! {
            biased;
            _ = &mut self.stop => Ok(Err(Interrupt::Shutdown)),
            _ = &mut self.session_over => Ok(Err(Interrupt::SessionOver)),
            r = tokio::time::timeout(self.idle, stream.read(buf)) => match r {
                Ok(r) => r.map(Ok),
                Err(_) => Ok(Err(Interrupt::Idle)),
            },
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
