//! The mail transfer agent: SMTP listeners, the recipient policy over the directory, and the
//! queue runner that delivers queued mail into local Maildirs.
//!
//! Mail flows one way: [`smtpd`] accepts and puts each message in the spool (the only door),
//! then [`delivery`] takes it out and delivers it. `mta` never reads a Maildir and holds no
//! protocol logic of its own: that lives in `proto`.

pub mod auth;
pub mod bounce;
pub mod delivery;
pub mod forward_failures;
pub mod policy;
pub mod relay;
pub mod schedule;
pub mod smtpd;
mod timed_io;

/// Resolves once `shutdown` turns true (never, if its sender is gone without saying so).
pub(crate) async fn stopped(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    if shutdown.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}
