//! SMTP server side (RFC 5321 and its extensions), sans-I/O.
//!
//! - [`conn`]: framing of one connection (lines, DATA, BDAT chunks) around a session.
//! - [`session`]: the state machine that turns command lines into replies and actions.
//! - `types`: the vocabulary the parts share (settings, policy, actions), re-exported here.
//! - [`data`]: the DATA section decoder (dot-unstuffing, bare CR/LF detection, size limit).
//! - [`address`]: envelope addresses on the wire and in logs (the syntax check is
//!   [`crate::address`], re-exported there).
//! - [`reply`]: reply codes and their wire form.
//! - [`rejection`]: what a refused MAIL/RCPT/DATA/BDAT/AUTH was about, for the reject log line.
//! - [`received`]: the trace headers added to accepted mail.
//! - [`verdict`]: SPF/DKIM/DMARC/ARC results -> the reply at the end of DATA and the
//!   `Authentication-Results:` header.
//!
//! Command parsing itself is done by the `smtp-proto` crate.

pub mod address;
pub mod client;
pub mod conn;
pub mod data;
pub mod headers;
pub mod received;
pub mod rejection;
pub mod reply;
pub mod session;
pub mod submission;
mod types;
pub mod verdict;

#[cfg(test)]
mod spill_tests;
#[cfg(test)]
mod transcript_tests;

pub use conn::{Connection, Event};
pub use data::{DataEnd, DataReader};
pub use reply::Reply;
pub use session::Session;
pub use types::{
    Action, CommitError, Envelope, Peer, Policy, RcptVerdict, Service, SessionConfig, TlsInfo,
};
