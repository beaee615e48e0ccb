//! The vocabulary shared by the SMTP server's parts: the listener's settings ([`SessionConfig`],
//! [`Service`]), who is connected ([`Peer`], [`TlsInfo`]), the [`Policy`] the session asks
//! about senders and recipients and its [`RcptVerdict`], and what the network loop is told to
//! do ([`Action`], [`Envelope`], [`CommitError`]).
//!
//! Plain data and one trait, no protocol rules: the session ([`super::session`]), the framing
//! ([`super::conn`]), the submission checks and the trace headers all import from here, and
//! this module imports nothing from them.

use std::net::IpAddr;

use super::reply::Reply;

/// Settings a session needs, shared by all sessions of a listener.
#[derive(Clone, Debug)]
pub struct SessionConfig {
    /// Our host name: greeting, EHLO reply, `Received:`.
    pub hostname: String,
    /// Largest message accepted, in octets; advertised in SIZE (RFC 1870).
    pub max_message_size: u64,
    /// Largest number of recipients per message (RFC 5321 §4.5.3.1.8 asks for at least 100).
    pub max_recipients: usize,
    /// Which service this listener offers.
    pub service: Service,
    /// A certificate is loaded: STARTTLS can be offered.
    pub tls_available: bool,
    /// Refused commands allowed before the session is closed with `421` (RFC 5321 §7.8).
    pub max_errors: u32,
    /// Largest header block accepted, in octets.
    pub max_header_size: usize,
    /// More `Received:` headers than this is a mail loop: `554 5.4.6`.
    pub max_received_headers: usize,
}

impl SessionConfig {
    /// Defaults for everything but the host name (used by tests and tools).
    pub fn new(hostname: &str, service: Service) -> SessionConfig {
        SessionConfig {
            hostname: hostname.to_string(),
            max_message_size: 52_428_800,
            max_recipients: 100,
            service,
            tls_available: false,
            max_errors: 20,
            max_header_size: 1_048_576,
            max_received_headers: 100,
        }
    }
}

/// The three SMTP services.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Service {
    /// Port 25: mail from other MTAs for our domains; STARTTLS offered, no AUTH.
    Mx,
    /// Port 587 (RFC 6409): STARTTLS, then AUTH, required before MAIL.
    Submission,
    /// Port 465 (RFC 8314): implicit TLS, AUTH required before MAIL.
    Submissions,
}

impl Service {
    /// Submission services require AUTH and check the sender.
    pub fn is_submission(self) -> bool {
        !matches!(self, Service::Mx)
    }

    /// The name in logs: `smtp` (25), `submission` (587), `submissions` (465).
    pub fn as_str(self) -> &'static str {
        match self {
            Service::Mx => "smtp",
            Service::Submission => "submission",
            Service::Submissions => "submissions",
        }
    }
}

/// What a TLS handshake settled on, for `Received:` and logs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsInfo {
    /// e.g. `TLSv1.3`.
    pub version: String,
    /// e.g. `TLS13_AES_256_GCM_SHA384`.
    pub cipher: String,
}

/// Who is on the other end: what the policy needs to decide relaying.
#[derive(Clone, Debug)]
pub struct Peer {
    pub ip: IpAddr,
    /// The client is in `smtp.trusted_networks`.
    pub trusted: bool,
}

/// The policy's answer for one recipient.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RcptVerdict {
    /// Accept; the address to record in the envelope (the policy may canonicalise it, e.g. a
    /// bare `postmaster`).
    Accept(String),
    /// A local domain without that user: `550 5.1.1`.
    UnknownUser,
    /// A remote domain and the client may not relay: `554 5.7.1`.
    RelayDenied,
    /// The directory could not be read: `451 4.3.0`, try later.
    TempFail,
    /// The address expands through an alias loop: `550 5.4.6` (RFC 3463).
    Loop,
    /// A filter refused it with this reply (a blocklist's `554 5.7.1`, greylisting's or a
    /// sending limit's `451 4.7.1`, a full mailbox's `452 4.2.2`).
    Refused(Reply),
}

/// Decides about recipients and senders. Implemented over the directory by the MTA, and by
/// fakes in tests.
pub trait Policy {
    /// `address` is the forward-path without brackets; an empty string is the bare
    /// `<postmaster>` of RFC 5321 §4.5.1. `relay_allowed`: the client is trusted or
    /// authenticated, so other domains are fine.
    fn check_rcpt(&self, address: &str, sender: &str, relay_allowed: bool) -> RcptVerdict;

    /// Whether the authenticated account `user` may send as `address` (its own address, or
    /// an alias that delivers to it).
    fn may_send_as(&self, user: &str, address: &str) -> bool;

    /// A refusal of the transaction at MAIL (a sending limit), or `None` to go on. `user`:
    /// the authenticated account, if any.
    fn check_mail(&self, _sender: &str, _user: Option<&str>) -> Option<Reply> {
        None
    }
}

/// What the network loop must do next.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    /// Write this reply, then read the next command.
    Reply(Reply),
    /// Write this reply, then close the connection.
    Close(Reply),
    /// Write this reply (354), then feed the following bytes to a
    /// [`DataReader`](super::data::DataReader) with `max_size`, and call
    /// [`Session::data_end`](super::Session::data_end).
    ReadData { reply: Reply, max_size: u64 },
    /// Read exactly `size` octets of BDAT chunk; keep them (append to the message) only if
    /// `keep`; then call [`Session::chunk_end`](super::Session::chunk_end).
    ReadChunk { size: u64, keep: bool },
    /// The message is complete: write it durably to the queue with this envelope, then call
    /// [`Session::committed`](super::Session::committed) and write the reply it gives.
    Commit(Envelope),
    /// Write this reply (220), drop any input received after the STARTTLS line (RFC 3207
    /// §4.2; the CVE-2011-0411 class), run the TLS handshake, then call
    /// [`Session::tls_started`](super::Session::tls_started).
    StartTls(Reply),
    /// Check these credentials (slowly, off the event loop), then call
    /// [`Session::auth_result`](super::Session::auth_result).
    Authenticate { user: String, password: String },
}

/// The envelope of a message ready for the queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Envelope {
    /// Reverse-path; empty for the null sender `<>`.
    pub sender: String,
    /// Forward-paths in RCPT order, without duplicates.
    pub recipients: Vec<String>,
    /// Octets of message (without the headers the server adds).
    pub size: u64,
    /// `MAIL FROM:<..> REQUIRETLS` (RFC 8689): relay only over TLS verified by MTA-STS or DANE.
    pub require_tls: bool,
}

/// Why the queue could not take a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommitError {
    /// The file system is full: `452 4.3.1`.
    NoSpace,
    /// Any other failure: `451 4.3.0`.
    Failed,
    /// A check of the complete message refused it (e.g. DMARC `550 5.7.1`, or `451 4.7.5`
    /// when DNS could not tell): this reply, nothing stored.
    Refused(Reply),
}
