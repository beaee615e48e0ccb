//! The mail transfer agent's sending side: the queue runner and its rooms ([`queue`]), the
//! relay client that hands mail to other domains' MTAs ([`relay`]), and RFC 3464 reports
//! ([`bounce`]).
//!
//! Mail comes in through `smtpd` (another crate) and reaches this one only through the spool:
//! `mta` does not depend on `smtpd` and never reads a client socket. Local copies are written
//! by `mda`, shared with direct delivery. Protocol logic lives in `proto`.

pub mod bounce;
pub mod dmarc_report;
pub mod queue;
pub mod relay;

/// Resolves once `shutdown` turns true (never, if its sender is gone without saying so).
pub(crate) async fn stopped(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    if shutdown.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}
