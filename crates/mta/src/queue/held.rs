//! Small queued messages kept in memory between the steps of one attempt: the first step
//! ([`super::attempt`]'s `open`) has the message file open for the envelope anyway, so it
//! reads a message of at most [`LARGEST`] octets whole there, and the remote deliveries of
//! the same attempt scan and send those bytes instead of opening the file again and reading
//! it block by block on the blocking pool (for a 100 KiB message, five trips through the pool
//! less: the open, then two blocks for the relay's scan and two for DATA).
//!
//! Bounded: at most [`BUDGET`] octets are held this way in the whole process (messages wait
//! between the steps for as long as their destination has no free slot, possibly thousands
//! of them); past it a message is read from the spool when its turn comes, as larger ones
//! always are. The charge is given back when the [`Held`] is dropped (at the last step).
//!
//! Not here: reading the file (`store::spool`), sending it (`crate::relay`).

use std::io::{self, Read};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use store::spool::Body;

use crate::relay::MessageBody;

/// The most octets of queued messages held in memory between steps, process-wide.
pub const BUDGET: usize = 32 << 20;
/// The largest message held (most mail is smaller); larger ones are always streamed.
pub const LARGEST: u64 = 256 * 1024;

static HELD: AtomicUsize = AtomicUsize::new(0);

/// A small message read whole, charged against [`BUDGET`] while it lives.
#[derive(Debug)]
pub struct Held {
    bytes: Arc<[u8]>,
    _charge: Charge,
}

impl Held {
    /// Reads `body` whole when it is at most [`LARGEST`] and the budget has room for it;
    /// `None` otherwise (the relay then reads it from the spool). Blocking file I/O.
    pub fn load(body: &Body) -> io::Result<Option<Held>> {
        let len = body.len();
        if len > LARGEST {
            return Ok(None);
        }
        let Some(charge) = Charge::take(len as usize) else {
            return Ok(None);
        };
        let mut bytes = Vec::with_capacity(len as usize);
        body.reader().read_to_end(&mut bytes)?;
        Ok(Some(Held {
            bytes: bytes.into(),
            _charge: charge,
        }))
    }

    /// The bytes as the relay sends them (shares them, copies nothing).
    pub fn body(&self) -> MessageBody {
        MessageBody::Bytes(self.bytes.clone())
    }
}

/// Octets counted against [`BUDGET`] until dropped.
#[derive(Debug)]
struct Charge(usize);

impl Charge {
    fn take(len: usize) -> Option<Charge> {
        HELD.fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
            held.checked_add(len).filter(|&total| total <= BUDGET)
        })
        .ok()
        .map(|_| Charge(len))
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        HELD.fetch_sub(self.0, Ordering::AcqRel);
    }
}

/// Octets held now (tests).
#[cfg(test)]
pub(crate) fn held() -> usize {
    HELD.load(Ordering::Acquire)
}

#[cfg(test)]
#[path = "held_tests.rs"]
mod tests;
