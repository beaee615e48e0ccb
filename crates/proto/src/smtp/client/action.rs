//! What the client session state machine ([`super::Session`]) asks its driver to do, which
//! RFC 5321 §4.5.3.2 timer bounds each wait, and how a mail transaction ends ([`TxEnd`]).
//!
//! Plain data only: no I/O here, and no durations (the driver maps a [`Timer`] to its
//! configured timeout).

use super::Outcome;

/// The wait a write or a reply falls under (RFC 5321 §4.5.3.2). The driver turns each into a
/// duration; a reply's timer bounds the whole reply, however many reads it takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timer {
    /// The `220` greeting (§4.5.3.2.1), and the replies to EHLO/HELO, STARTTLS and AUTH.
    Greeting,
    /// The reply to MAIL (§4.5.3.2.2), and to a BDAT chunk that is not the last.
    Mail,
    /// Each reply to RCPT (§4.5.3.2.3).
    Rcpt,
    /// The `354` to DATA (§4.5.3.2.4).
    DataInit,
    /// The reply to the final dot or to `BDAT ... LAST` (§4.5.3.2.6).
    DataEnd,
    /// RSET before reusing an idle connection: short, nothing waits on the server's disk.
    Reset,
    /// QUIT: shorter still, nothing depends on its reply.
    Quit,
}

/// The next thing the driver does, from [`super::Session::poll`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Write these bytes (within the timer), then poll again.
    Send(Vec<u8>, Timer),
    /// Read from the server and hand the bytes to [`received`](super::Session::received);
    /// the timer bounds the whole of the reply awaited.
    Receive(Timer),
    /// Run the TLS handshake on the connection, then call
    /// [`tls_started`](super::Session::tls_started). A failed handshake ends the connection
    /// (the driver decides whether to retry in plaintext).
    StartTls,
    /// Stream the DATA section (the message dot-stuffed, then `.` CRLF; only the `.` CRLF when
    /// `empty`), then call [`body_sent`](super::Session::body_sent).
    SendData { empty: bool },
    /// Send the next block of the message as one `BDAT n` chunk (`BDAT n LAST` for the last),
    /// then call [`chunk_sent`](super::Session::chunk_sent).
    SendChunk,
    /// Something worth a log line; nothing to do.
    Note(String),
    /// The session is set up (or reset) and waits for [`begin`](super::Session::begin).
    Ready,
    /// A transaction ended: give this to the caller.
    End(TxEnd),
    /// Setup or RSET failed: the connection is of no use; drop it.
    Failed(String),
    /// QUIT is done: close the connection.
    Closed,
}

/// How a transaction ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxEnd {
    /// Every recipient has an outcome, in order; `reusable` when the connection may carry
    /// another message (after an RSET).
    Done {
        outcomes: Vec<Outcome>,
        reusable: bool,
    },
    /// Nothing was delivered (a 4xx to MAIL, a 421 at any step, a failed connection before the
    /// end of the message): QUIT and try the next host (RFC 5321 §5.1). `io` when the
    /// connection itself failed (a pooled connection then gets one retry on a fresh one).
    TryNext { reason: String, io: bool },
    /// The queued message could not be read halfway through sending it: every recipient is
    /// deferred and the connection is dropped at once (no final dot, no QUIT), so that the
    /// server discards the partial message.
    Abort { reason: String },
}
