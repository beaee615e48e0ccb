//! When to try a message again, when to give up, and when to warn the sender (RFC 5321
//! §4.5.4.1: retry for at least 4-5 days; a "delayed" DSN, RFC 3464, once). Pure: ages and
//! attempt counts in, durations and verdicts out; unit-tested without a clock.

use std::time::Duration;

/// The queue's retry settings (`[relay] retry_schedule`, `max_queue_lifetime`,
/// `delay_warning_after`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Pauses between attempts; the last one repeats. Empty: 5 minutes.
    pub schedule: Vec<Duration>,
    /// Temporary failures older than this are given up (`4.4.7`).
    pub max_lifetime: Duration,
    /// One "delayed" DSN once a message has waited this long; `None`: never.
    pub delay_warning_after: Option<Duration>,
}

impl RetryPolicy {
    /// The pause after the `attempts`-th attempt (1 = after the first).
    pub fn pause_after(&self, attempts: u32) -> Duration {
        let i = (attempts as usize)
            .saturating_sub(1)
            .min(self.schedule.len().saturating_sub(1));
        self.schedule
            .get(i)
            .copied()
            .unwrap_or(Duration::from_secs(300))
    }

    /// Whether a message of this age has outlived the queue: its temporary failures become
    /// permanent.
    pub fn expired(&self, age: Duration) -> bool {
        age >= self.max_lifetime
    }

    /// Whether the one "delayed" DSN is due now.
    pub fn warn_now(&self, age: Duration, already_warned: bool) -> bool {
        !already_warned && self.delay_warning_after.is_some_and(|d| age >= d)
    }
}

/// The status of a deferral given up at the end of the queue lifetime (its reply's status
/// `deferred`): a full mailbox (`4.2.2`) becomes the permanent `5.2.2` (RFC 3463: mailbox
/// full), so the sender learns why; everything else is `4.4.7` (delivery time expired).
pub fn expired_status(deferred: &str) -> &'static str {
    match deferred {
        "4.2.2" => "5.2.2",
        _ => "4.4.7",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn schedule_last_pause_repeats() {
        let p = RetryPolicy {
            schedule: vec![secs(60), secs(300), secs(1800)],
            max_lifetime: secs(5 * 86_400),
            delay_warning_after: Some(secs(4 * 3600)),
        };
        let pauses: Vec<u64> = (1..=5).map(|a| p.pause_after(a).as_secs()).collect();
        assert_eq!(pauses, vec![60, 300, 1800, 1800, 1800]);
        assert_eq!(p.pause_after(0), secs(60));
        assert!(!p.expired(secs(5 * 86_400 - 1)) && p.expired(secs(5 * 86_400)));
        assert!(!p.warn_now(secs(3600), false));
        assert!(p.warn_now(secs(4 * 3600), false));
        assert!(!p.warn_now(secs(4 * 3600), true));
        let empty = RetryPolicy {
            schedule: vec![],
            delay_warning_after: None,
            ..p
        };
        assert_eq!(empty.pause_after(3), secs(300));
        assert!(!empty.warn_now(secs(10 * 86_400), false));
    }

    #[test]
    fn a_full_mailbox_expires_as_5_2_2_anything_else_as_4_4_7() {
        assert_eq!(expired_status("4.2.2"), "5.2.2");
        assert_eq!(expired_status("4.4.1"), "4.4.7");
        assert_eq!(expired_status("4.0.0"), "4.4.7");
    }
}
