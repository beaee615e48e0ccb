//! The queue runner's scheduling: delivers what the spool holds at start (recovery), each id
//! that arrives from `smtpd` or from the runner itself (forwarded copies, DSNs), and retries
//! deferred messages when due or when `mailroom queue flush` asks. At most `concurrency`
//! attempts run at once.
//!
//! Due times are kept in memory only: after a restart everything in the spool is due at
//! once, which is what a restart should do. Not here: what an attempt does ([`super::attempt`]),
//! or when to retry ([`super::retry`]).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mda::Mda;
use store::clock::Clock;
use store::directory::Directory;
use store::forward_failures::ForwardFailures;
use store::spool::Spool;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;

use super::RetryPolicy;
use crate::relay::Relay;
use crate::stopped;

/// The queue runner's settings and handles.
pub struct Runner {
    pub directory: Arc<Directory>,
    pub spool: Arc<Spool>,
    pub data_dir: PathBuf,
    pub hostname: String,
    pub postmaster: Option<String>,
    /// Attempts running at the same time.
    pub concurrency: usize,
    /// Delivery to other domains; `None` keeps remote recipients queued.
    pub relay: Option<Arc<Relay>>,
    pub retry: RetryPolicy,
    /// New messages made here (forwarding copies, DSNs) go back to the runner through this.
    pub resubmit: mpsc::UnboundedSender<String>,
    /// Remote addresses that refused mail permanently (shared with the RCPT policy).
    pub forward_failures: Arc<ForwardFailures>,
    /// Where "now" comes from.
    pub clock: Arc<dyn Clock>,
}

/// How one attempt at a message ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Every recipient is delivered or bounced; the message left the spool.
    Done,
    /// Some recipients must be tried again after this pause.
    Deferred(Duration),
}

impl Runner {
    /// The MDA that writes this runner's local copies (through the spool's disk seam).
    pub fn mda(&self) -> Mda {
        Mda::new(&self.data_dir, &self.hostname, self.spool.disk())
    }

    /// Runs until `shutdown`: delivers what the spool holds at start, each id that arrives on
    /// `queued`, and retries deferred messages when due (or when `queue flush` asks). Returns
    /// when the running attempts have finished.
    pub async fn run(
        self: Arc<Self>,
        mut queued: mpsc::UnboundedReceiver<String>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let slots = Arc::new(Semaphore::new(self.concurrency.max(1)));
        let mut in_flight: HashSet<String> = HashSet::new();
        let mut due: HashMap<String, Instant> = HashMap::new();
        let mut tasks: JoinSet<(String, Verdict)> = JoinSet::new();
        // Recovery: everything acknowledged and not yet delivered is due now.
        match self.spool.list() {
            Ok(ids) => {
                let now = self.clock.instant();
                for id in ids {
                    due.insert(id, now);
                }
            }
            Err(e) => tracing::error!("delivery: cannot list the queue: {e}"),
        }
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                id = queued.recv() => match id {
                    Some(id) => {
                        if in_flight.insert(id.clone()) {
                            due.remove(&id);
                            tasks.spawn(self.clone().attempt_task(id, false, slots.clone()));
                        }
                    }
                    None => break,
                },
                _ = tick.tick() => {
                    self.take_flush_requests(&mut due);
                    let now = self.clock.instant();
                    let ready: Vec<String> = due
                        .iter()
                        .filter(|(id, t)| **t <= now && !in_flight.contains(*id))
                        .map(|(id, _)| id.clone())
                        .collect();
                    for id in ready {
                        due.remove(&id);
                        in_flight.insert(id.clone());
                        tasks.spawn(self.clone().attempt_task(id, true, slots.clone()));
                    }
                }
                Some(done) = tasks.join_next(), if !tasks.is_empty() => {
                    if let Ok((id, verdict)) = done {
                        in_flight.remove(&id);
                        if let Verdict::Deferred(after) = verdict {
                            due.insert(id, self.clock.instant() + after);
                        }
                    }
                }
                _ = stopped(&mut shutdown) => break,
            }
        }
        while tasks.join_next().await.is_some() {}
    }

    /// `mailroom queue flush|bounce` asked: make those messages (or all) due now.
    fn take_flush_requests(&self, due: &mut HashMap<String, Instant>) {
        let Some(ids) = self.spool.take_flush_requests() else {
            return;
        };
        let ids = if ids.is_empty() {
            self.spool.list().unwrap_or_default()
        } else {
            ids
        };
        tracing::info!("delivery: queue flush asked for {} message(s)", ids.len());
        let now = self.clock.instant();
        for id in ids {
            due.insert(id, now);
        }
    }

    async fn attempt_task(
        self: Arc<Self>,
        id: String,
        retry: bool,
        slots: Arc<Semaphore>,
    ) -> (String, Verdict) {
        let Ok(_slot) = slots.acquire_owned().await else {
            return (id, Verdict::Deferred(Duration::from_secs(60)));
        };
        let verdict = self.attempt(&id, retry).await;
        (id, verdict)
    }
}
