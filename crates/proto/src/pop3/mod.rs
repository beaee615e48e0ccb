//! Sans-I/O POP3 server side: command parser, session state machine and dot-stuffing
//! (RFC 1939, RFC 2449 CAPA, RFC 3206 response codes, RFC 5034 SASL AUTH).
//!
//! What it does: everything about POP3 that can be decided without touching a socket or a
//! file. The `pop3` crate runs the network loop and the `store` crate reads the Maildir.
//!
//! What it does not do: I/O, TLS, password checks, locking or timers.

pub mod command;
pub mod session;
pub mod stuff;

#[cfg(test)]
mod tests;

pub use command::{parse_command, Command, ParseError, MAX_COMMAND_LINE};
pub use session::{greeting, Action, AuthOutcome, Session, SessionFlags, State};
pub use stuff::{dot_stuff, DotStuffer};
