//! Sans-I/O protocol logic: SMTP and POP3 parsers and session state machines, SASL decoding.
//! Nothing here performs I/O or depends on tokio; the network loops in `mta` and `pop3` move the
//! bytes and call in here.

pub mod pop3;
pub mod sasl;
pub mod smtp;
