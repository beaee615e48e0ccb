//! What the spool's state log says about a queued message: per recipient, whether it is still
//! pending, done or failed, how many attempts were made and the last reply; per message,
//! whether the delay warning went out and whether the admin asked to bounce it.
//!
//! Pure interpretation of [`Spool::attempts`](crate::spool::Spool::attempts) lines; it writes
//! nothing.

/// Where one recipient stands.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RcptStatus {
    /// `pending` (never tried or deferred), `done` or `failed`.
    pub state: RcptState,
    /// Attempts recorded (deferrals and the final result).
    pub attempts: u32,
    /// The last recorded reply or reason.
    pub last: String,
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
    pub fn from_log(n: usize, log: &[(usize, String, String)]) -> MessageStatus {
        let mut st = MessageStatus {
            recipients: vec![RcptStatus::default(); n],
            ..MessageStatus::default()
        };
        for (index, state, detail) in log {
            match state.as_str() {
                "warned" => st.warned = true,
                "bounce" => st.bounce_requested = true,
                s => {
                    let Some(r) = st.recipients.get_mut(*index) else {
                        continue;
                    };
                    r.attempts += 1;
                    r.last = detail.clone();
                    r.state = match s {
                        "done" => RcptState::Done,
                        "failed" => RcptState::Failed,
                        _ => RcptState::Pending,
                    };
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

    fn line(i: usize, s: &str, d: &str) -> (usize, String, String) {
        (i, s.to_string(), d.to_string())
    }

    #[test]
    fn interprets_log() {
        let log = vec![
            line(0, "deferred", "451 try later"),
            line(1, "done", "250 ok"),
            line(0, "deferred", "451 again"),
            line(2, "failed", "550 no"),
            line(0, "warned", ""),
            line(9, "done", "ignored"),
        ];
        let st = MessageStatus::from_log(3, &log);
        assert_eq!(st.recipients[0].state, RcptState::Pending);
        assert_eq!(st.recipients[0].attempts, 2);
        assert_eq!(st.recipients[0].last, "451 again");
        assert_eq!(st.recipients[1].state, RcptState::Done);
        assert_eq!(st.recipients[2].state, RcptState::Failed);
        assert!(st.warned && !st.bounce_requested);
        assert_eq!(st.pending(), vec![0]);
        assert_eq!(st.attempts(), 2);
    }
}
