//! The queue: everything between "the message is in the spool" and "every recipient has an
//! outcome". Rooms:
//!
//! - [`runner`]: scheduling — what is due, `queue flush`, delivery slots, restarts;
//! - [`attempt`]: one attempt at one message — route (`mda::router`), write local copies
//!   (`mda::Mda`), queue forwarded copies, hand remote recipients to the relay, record each
//!   recipient's [`Outcome`](store::outcome::Outcome);
//! - [`retry`]: when to try again, when to give up, when to warn (pure);
//! - [`dsn`]: which outcomes become reports to the sender, and queuing them
//!   ([`crate::bounce`] builds the bytes).
//!
//! It never reads a client socket (it does not depend on `smtpd`).

mod arc_forward;
pub mod attempt;
pub mod dsn;
mod forward_sender;
mod held;
pub mod retry;
pub mod runner;
pub mod schedule;
pub mod tls_reports;

pub use retry::RetryPolicy;
pub use runner::{Runner, Verdict};
