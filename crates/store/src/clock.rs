//! Where "now" comes from. Everything that reads the time for a decision (the queue runner's
//! retries, expiry and DSN dates) takes a [`Clock`], so tests can run a queue for days in
//! milliseconds with [`FakeClock`]. Not here: timeouts of network I/O (tokio's timers).

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A source of the current time.
pub trait Clock: Send + Sync + std::fmt::Debug + 'static {
    /// Seconds since the Unix epoch (for what is stored and shown).
    fn unix(&self) -> u64;
    /// A monotonic instant (for what is scheduled in memory).
    fn instant(&self) -> Instant;
}

/// The real clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn unix(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
    }

    fn instant(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that moves only when told to.
#[derive(Debug)]
pub struct FakeClock {
    start_unix: u64,
    start: Instant,
    offset: Mutex<Duration>,
}

impl FakeClock {
    /// A clock reading `unix` seconds now.
    pub fn new(unix: u64) -> FakeClock {
        FakeClock {
            start_unix: unix,
            start: Instant::now(),
            offset: Mutex::new(Duration::ZERO),
        }
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        *self.offset.lock().unwrap_or_else(|e| e.into_inner()) += by;
    }

    fn offset(&self) -> Duration {
        *self.offset.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Clock for FakeClock {
    fn unix(&self) -> u64 {
        self.start_unix + self.offset().as_secs()
    }

    fn instant(&self) -> Instant {
        self.start + self.offset()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fake_clock_moves_both_readings_together() {
        let c = FakeClock::new(1_000);
        let i0 = c.instant();
        c.advance(Duration::from_secs(90));
        assert_eq!(c.unix(), 1_090);
        assert_eq!(c.instant() - i0, Duration::from_secs(90));
        assert!(SystemClock.unix() > 1_700_000_000);
    }
}
