//! Sans-I/O protocol logic: SMTP and POP3 parsers and session state machines, SASL decoding,
//! and the one mail address syntax check ([`address`]) that the SMTP session and the directory
//! share.
//! Nothing here performs I/O or depends on tokio; the network loops in `mta` and `pop3` move the
//! bytes and call in here.

pub mod address;
pub mod pop3;
pub mod sasl;
pub mod smtp;
pub mod srs;
