//! Local delivery, shared by the two doors a message can come through: direct delivery at
//! the end of DATA (`smtpd`) and the queue runner (`mta`). Both ask the same [`router`] what
//! each recipient means and write the same copies with the same [`Mda`], so a message
//! delivered directly and then found again in the queue after a crash is recognised, never
//! written twice.
//!
//! This crate depends on neither receiving nor the queue: `smtpd` and `mta` both depend on it
//! and not on each other, so Cargo itself keeps "receiving never runs the queue" true.

pub mod mda;
pub mod router;

pub use mda::Mda;
pub use router::{route, Copy, Route};
