//! Sans-I/O POP3 server side: line framing, command parser, session state machine and dot-stuffing
//! (RFC 1939, RFC 2449 CAPA, RFC 3206 response codes, RFC 5034 SASL AUTH, RFC 2595 STLS).
//!
//! What it does: everything about POP3 that can be decided without touching a socket or a
//! file. The `pop3` crate runs the network loop and the `store` crate reads the Maildir.
//!
//! What it does not do: I/O, the TLS handshake (the session only decides when STLS is allowed
//! and what is forgotten after it), password checks, locking or timers.

pub mod command;
pub mod framer;
pub mod session;
pub mod stuff;

#[cfg(test)]
#[path = "transcript_tests.rs"]
mod transcript_tests;

pub use command::{parse_command, Command, ParseError, MAX_COMMAND_LINE};
pub use framer::LineFramer;
pub use session::{greeting, Action, AuthOutcome, Session, SessionFlags, State};
pub use stuff::{dot_stuff, sent_unchanged, DotStuffer};
