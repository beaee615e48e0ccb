//! The early-talker test (postscreen's "pregreet" test): with `smtp.greet_delay` set, an
//! untrusted client on the MX port waits that long for the end of the greeting, and one that
//! sends anything before it is a bot that did not wait (RFC 5321 §4.3.1: the client waits for
//! the greeting) and gets `554 5.5.1` and the close.
//!
//! The first line of a multi-line greeting, `220-<host> ESMTP`, goes out at once (as
//! postscreen does): a real client reads on until the final `220 ` line, which the session
//! itself sends after the delay; many bots answer the first line they see.
//!
//! It does not decide who is tested (the listener: MX port, untrusted client, delay above
//! zero) and does not log; it counts early talkers for the listener's log line.

use std::io;
use std::time::Duration;

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Early talkers refused since the start (a metric once metrics exist).
static EARLY_TALKERS: AtomicU64 = AtomicU64::new(0);

/// Counts one more early talker; returns the count so far.
pub(crate) fn count_early_talker() -> u64 {
    EARLY_TALKERS.fetch_add(1, Ordering::Relaxed) + 1
}

/// The most the `554` may wait for a client that does not read.
const LAST_WORD: Duration = Duration::from_secs(5);

/// How the wait for the greeting ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Pregreet {
    /// The client was silent for the whole delay: greet it as usual.
    Waited,
    /// The client talked first; it was told `554 5.5.1`, the session ends.
    TalkedEarly,
    /// The client closed the connection.
    Gone,
}

/// Sends the first greeting line, then waits `delay` for silence.
pub(crate) async fn pregreet<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    hostname: &str,
    delay: Duration,
) -> io::Result<Pregreet> {
    let first = format!("220-{hostname} ESMTP\r\n");
    tokio::time::timeout(LAST_WORD, stream.write_all(first.as_bytes()))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "greeting write timed out"))??;
    let mut byte = [0u8; 512];
    match tokio::time::timeout(delay, stream.read(&mut byte)).await {
        Err(_) => Ok(Pregreet::Waited),
        Ok(Ok(0)) => Ok(Pregreet::Gone),
        Ok(Ok(_)) => {
            let reply = b"554 5.5.1 Protocol error: talking before the greeting\r\n";
            let _ = tokio::time::timeout(LAST_WORD, stream.write_all(reply)).await;
            Ok(Pregreet::TalkedEarly)
        }
        Ok(Err(e)) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_silent_client_is_greeted_after_the_delay() {
        let (mut server, mut client) = tokio::io::duplex(1024);
        let r = pregreet(&mut server, "mx.test", Duration::from_millis(50)).await;
        assert_eq!(r.unwrap(), Pregreet::Waited);
        let mut buf = [0u8; 64];
        let n = client.read(&mut buf).await.unwrap();
        assert_eq!(&buf[..n], b"220-mx.test ESMTP\r\n");
    }

    #[tokio::test]
    async fn an_early_talker_gets_554() {
        let (mut server, mut client) = tokio::io::duplex(1024);
        client.write_all(b"EHLO bot\r\n").await.unwrap();
        let r = pregreet(&mut server, "mx.test", Duration::from_secs(30)).await;
        assert_eq!(r.unwrap(), Pregreet::TalkedEarly);
        drop(server);
        let mut out = Vec::new();
        client.read_to_end(&mut out).await.unwrap();
        assert_eq!(
            out,
            b"220-mx.test ESMTP\r\n554 5.5.1 Protocol error: talking before the greeting\r\n"
        );
    }

    #[tokio::test]
    async fn a_client_that_leaves_is_gone() {
        let (mut server, client) = tokio::io::duplex(1024);
        drop(client);
        let r = pregreet(&mut server, "mx.test", Duration::from_secs(30)).await;
        // Writing the first line to a closed pipe fails, or the read sees the end.
        assert!(matches!(r, Ok(Pregreet::Gone) | Err(_)));
    }
}
