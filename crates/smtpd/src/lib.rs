//! Receiving mail: the SMTP listeners on 25, 587 and 465 ([`listener`]), which recipients
//! and senders are allowed ([`policy`]), password checks for AUTH ([`auth`]), bounded reads
//! and writes ([`timed_io`]), direct delivery of local-only mail ([`direct`]), making a
//! finished message durable (`commit`), the early-talker test (`pregreet`), the
//! SPF/DKIM/DMARC/ARC checks of mail arriving on port 25 ([`verify`]) and DKIM signatures on
//! the mail of verified senders as it is queued ([`signing`]).
//!
//! Every accepted message leaves through one of two doors, and only after it is durable: the
//! spool (`store::spool`), or the Maildirs through `mda` (direct delivery). This crate does
//! not depend on the queue runner (`mta`): receiving never runs the queue, and Cargo keeps it
//! so. Protocol logic lives in `proto`.

pub mod auth;
mod commit;
pub mod direct;
pub mod filter;
pub mod listener;
pub mod policy;
mod pregreet;
pub mod signing;
pub mod timed_io;
pub mod verify;
pub mod verify_draft;
mod verify_report;

pub use listener::{serve, Smtpd, SmtpdConfig};

/// Resolves once `shutdown` turns true (never, if its sender is gone without saying so).
pub(crate) async fn stopped(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    if shutdown.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}
