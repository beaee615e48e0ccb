//! What the spool's state log says about a queued message: per recipient, whether it is still
//! pending, done or failed, how many attempts were made and the last reply; per message,
//! whether the delay warning went out and whether the admin asked to bounce it.
//!
//! Pure interpretation of [`Spool::log`](crate::spool::Spool::log) entries; it writes
//! nothing.

use crate::outcome::{Entry, Mark, Outcome};

/// Where one recipient stands.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RcptStatus {
    /// `pending` (never tried or deferred), `done` or `failed`.
    pub state: RcptState,
    /// Attempts recorded (deferrals and the final result).
    pub attempts: u32,
    /// The last recorded outcome, if any.
    pub last: Option<Outcome>,
}

impl RcptStatus {
    /// The last reply or reason, for `queue list` (empty before the first attempt).
    pub fn last_text(&self) -> String {
        self.last.as_ref().map(Outcome::text).unwrap_or_default()
    }
}

/// A recipient's state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RcptState {
    #[default]
    Pending,
    Done,
    Failed,
}

impl RcptState {
    /// The word used in `mailroom queue list`.
    pub fn as_str(self) -> &'static str {
        match self {
            RcptState::Pending => "pending",
            RcptState::Done => "done",
            RcptState::Failed => "failed",
        }
    }
}

/// Where a message stands.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MessageStatus {
    pub recipients: Vec<RcptStatus>,
    /// The "delayed" DSN was sent.
    pub warned: bool,
    /// `mailroom queue bounce` was asked.
    pub bounce_requested: bool,
}

impl MessageStatus {
    /// Interprets the state log of a message with `n` recipients. Lines for indexes out of
    /// range are ignored.
    pub fn from_log(n: usize, log: &[Entry]) -> MessageStatus {
        let mut st = MessageStatus {
            recipients: vec![RcptStatus::default(); n],
            ..MessageStatus::default()
        };
        for entry in log {
            match entry {
                Entry::Mark(Mark::Warned) => st.warned = true,
                Entry::Mark(Mark::BounceRequested) => st.bounce_requested = true,
                Entry::Rcpt(index, outcome) => {
                    let Some(r) = st.recipients.get_mut(*index) else {
                        continue;
                    };
                    r.attempts += 1;
                    r.state = match outcome {
                        Outcome::Delivered { .. } => RcptState::Done,
                        Outcome::Failed { .. } => RcptState::Failed,
                        Outcome::Deferred { .. } => RcptState::Pending,
                    };
                    r.last = Some(outcome.clone());
                }
            }
        }
        st
    }

    /// Indexes of recipients still to deliver.
    pub fn pending(&self) -> Vec<usize> {
        (0..self.recipients.len())
            .filter(|&i| self.recipients[i].state == RcptState::Pending)
            .collect()
    }

    /// Attempts made on the message: the most any recipient had.
    pub fn attempts(&self) -> u32 {
        self.recipients
            .iter()
            .map(|r| r.attempts)
            .max()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rcpt(i: usize, o: Outcome) -> Entry {
        Entry::Rcpt(i, o)
    }

    #[test]
    fn interprets_log() {
        let log = vec![
            rcpt(0, Outcome::deferred("451 try later")),
            rcpt(
                1,
                Outcome::Delivered {
                    detail: "250 ok".into(),
                },
            ),
            rcpt(0, Outcome::deferred("451 again")),
            rcpt(2, Outcome::failed("5.1.1", "550 no")),
            Entry::Mark(Mark::Warned),
            rcpt(
                9,
                Outcome::Delivered {
                    detail: "ignored".into(),
                },
            ),
        ];
        let st = MessageStatus::from_log(3, &log);
        assert_eq!(st.recipients[0].state, RcptState::Pending);
        assert_eq!(st.recipients[0].attempts, 2);
        assert_eq!(st.recipients[0].last_text(), "451 again");
        assert_eq!(st.recipients[1].state, RcptState::Done);
        assert_eq!(st.recipients[2].state, RcptState::Failed);
        assert_eq!(st.recipients[2].last_text(), "5.1.1 550 no");
        assert!(st.warned && !st.bounce_requested);
        assert_eq!(st.pending(), vec![0]);
        assert_eq!(st.attempts(), 2);
    }
}
