//! How much each sender sent lately: messages in the last hour and recipients in the last
//! day, per authenticated account or trusted client address, for the sending limits of
//! `[limits]` (a compromised account or web application cannot send without end).
//!
//! What it does: [`SendingLimits::take_message`] and [`SendingLimits::take_recipient`] count
//! one more if the sender is still under its limit (sliding windows: the times of the last
//! `limit` events are kept, so memory per sender is bounded by its limit) and say no when it
//! is not. Senders silent for a day are forgotten, and at most [`MAX_SENDERS`] are kept.
//!
//! What it does not do: choose the limits (the caller passes them, per-account overrides
//! included) or write replies. It is in memory only: a restart forgets what was sent before
//! it, so a sender may send up to its limits again right after a restart.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// Senders tracked at most; past that the ones idle longest are dropped.
pub const MAX_SENDERS: usize = 100_000;

const HOUR: u64 = 3600;
const DAY: u64 = 86_400;

#[derive(Default)]
struct Usage {
    messages: VecDeque<u64>,
    recipients: VecDeque<u64>,
    last: u64,
}

/// Counts per sender key (an account's address, lowercased, or `[ip]`).
#[derive(Default)]
pub struct SendingLimits {
    senders: Mutex<HashMap<String, Usage>>,
}

fn take(events: &mut VecDeque<u64>, limit: u32, window: u64, now: u64) -> bool {
    while events
        .front()
        .is_some_and(|&t| now.saturating_sub(t) >= window)
    {
        events.pop_front();
    }
    if limit == 0 {
        return true;
    }
    if events.len() >= limit as usize {
        return false;
    }
    events.push_back(now);
    true
}

impl SendingLimits {
    pub fn new() -> SendingLimits {
        SendingLimits::default()
    }

    fn with<R>(&self, key: &str, now: u64, f: impl FnOnce(&mut Usage) -> R) -> R {
        let mut senders = self.senders.lock().unwrap_or_else(|p| p.into_inner());
        if senders.len() >= MAX_SENDERS && !senders.contains_key(key) {
            senders.retain(|_, u| now.saturating_sub(u.last) < DAY);
            if senders.len() >= MAX_SENDERS {
                // Still full: drop the idlest tenth.
                let mut lasts: Vec<u64> = senders.values().map(|u| u.last).collect();
                lasts.sort_unstable();
                let cut = lasts[lasts.len() / 10];
                senders.retain(|_, u| u.last > cut);
            }
        }
        let usage = senders.entry(key.to_string()).or_default();
        usage.last = now;
        f(usage)
    }

    /// One more message from `key` at `now` (Unix seconds), if fewer than `per_hour` were
    /// counted in the last hour (0: no limit). False: over the limit, nothing counted.
    pub fn take_message(&self, key: &str, per_hour: u32, now: u64) -> bool {
        self.with(key, now, |u| take(&mut u.messages, per_hour, HOUR, now))
    }

    /// One more recipient from `key`, if fewer than `per_day` in the last day (0: none).
    pub fn take_recipient(&self, key: &str, per_day: u32, now: u64) -> bool {
        self.with(key, now, |u| take(&mut u.recipients, per_day, DAY, now))
    }

    /// Senders tracked now.
    pub fn len(&self) -> usize {
        self.senders.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_per_hour_slide() {
        let l = SendingLimits::new();
        for i in 0..3 {
            assert!(l.take_message("a@x", 3, 100 + i));
        }
        assert!(!l.take_message("a@x", 3, 200), "the 4th in an hour");
        // Another sender is not affected.
        assert!(l.take_message("b@x", 3, 200));
        // An hour after the first, one slot is free again.
        assert!(l.take_message("a@x", 3, 100 + HOUR));
        assert!(!l.take_message("a@x", 3, 100 + HOUR));
    }

    #[test]
    fn recipients_per_day_and_zero_is_off() {
        let l = SendingLimits::new();
        assert!(l.take_recipient("a@x", 2, 0));
        assert!(l.take_recipient("a@x", 2, 10));
        assert!(!l.take_recipient("a@x", 2, DAY - 1));
        assert!(l.take_recipient("a@x", 2, DAY));
        for _ in 0..10_000 {
            assert!(l.take_recipient("c@x", 0, 5));
            assert!(l.take_message("c@x", 0, 5));
        }
    }

    #[test]
    fn the_senders_tracked_are_bounded() {
        let l = SendingLimits::new();
        for i in 0..(MAX_SENDERS + 10) {
            l.take_message(&format!("s{i}"), 1, i as u64);
        }
        assert!(l.len() <= MAX_SENDERS, "{}", l.len());
    }
}
