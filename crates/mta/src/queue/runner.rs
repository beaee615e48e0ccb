//! The queue runner's loop: delivers what the spool holds at start (recovery), each id that
//! arrives from `smtpd` or from the runner itself (forwarded copies, DSNs), and retries
//! deferred messages when due or when `mailroom queue flush` asks.
//!
//! A due message is prepared first (local copies and forwards, in the local lane of
//! `sched.local_slots`, never behind remote mail); its remote recipients become one piece of
//! work per destination, handed to the [`Scheduler`]: a slot goes only to a destination below
//! its window, destinations take turns, and a dead destination's work is deferred without a
//! connection. When a message's last piece of work is back, it is finished (expiry, reports,
//! state log or removal).
//!
//! Due times are kept in memory only: after a restart everything in the spool is due at
//! once, which is what a restart should do. Not here: what each step does ([`super::attempt`]),
//! when to retry ([`super::retry`]), or the scheduling rules ([`super::schedule`]).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mda::Mda;
use store::clock::Clock;
use store::directory::Directory;
use store::forward_failures::ForwardFailures;
use store::outcome::Outcome;
use store::spool::Spool;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;

use super::attempt::{InProgress, RemoteWork};
use super::schedule::{Dest, Feedback, SchedConfig, Scheduler};
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
    /// Slots, windows and dead-destination rules of the scheduler.
    pub sched: SchedConfig,
    /// Delivery to other domains; `None` keeps remote recipients queued.
    pub relay: Option<Arc<Relay>>,
    pub retry: RetryPolicy,
    /// New messages made here (forwarding copies, DSNs) go back to the runner through this.
    pub resubmit: mpsc::UnboundedSender<String>,
    /// Remote addresses that refused mail permanently (shared with the RCPT policy).
    pub forward_failures: Arc<ForwardFailures>,
    /// Where "now" comes from.
    pub clock: Arc<dyn Clock>,
    /// Signs the DSNs we send from our domains; `None`: unsigned.
    pub dkim: Option<Arc<dkim::Keyring>>,
    /// The SRS secret: forwarded copies get an SRS envelope sender (`proto::srs`); `None`:
    /// the original sender is kept.
    pub srs_secret: Option<Arc<[u8]>>,
    /// The accounts' quotas: a copy for a full mailbox is deferred (`4.2.2 Mailbox full`) and,
    /// at the end of the queue lifetime, bounced (`5.2.2`); `None`: no quota.
    pub quotas: Option<Arc<store::quota::Quotas>>,
}

/// How long running steps may take to end after a shutdown is asked.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// The runner loop's state.
struct Loop {
    /// Slots for the first step of messages (local copies, forwards).
    local: Arc<Semaphore>,
    sched: Scheduler<RemoteWork>,
    /// Messages being worked on, from their first step to their last.
    in_flight: HashSet<String>,
    /// When each waiting message is due.
    due: HashMap<String, Instant>,
    /// Prepared messages and how many pieces of their remote work are still out.
    progress: HashMap<String, (InProgress, usize)>,
    tasks: JoinSet<Step>,
}

/// A step that ended.
enum Step {
    Prepared(String, Result<(InProgress, Vec<RemoteWork>), Verdict>),
    Remote {
        dest: Dest,
        work: RemoteWork,
        outcomes: Vec<(usize, Outcome)>,
        feedback: Feedback,
    },
    Finished(String, Verdict),
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
        Mda::new(&self.data_dir, &self.hostname, self.spool.disk()).with_quotas(self.quotas.clone())
    }

    /// Runs until `shutdown`: delivers what the spool holds at start, each id that arrives on
    /// `queued`, and retries deferred messages when due (or when `queue flush` asks). Returns
    /// when the running steps have finished.
    pub async fn run(
        self: Arc<Self>,
        mut queued: mpsc::UnboundedReceiver<String>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut state = Loop {
            local: Arc::new(Semaphore::new(self.sched.local_slots.max(1))),
            sched: Scheduler::new(self.sched.clone()),
            in_flight: HashSet::new(),
            due: HashMap::new(),
            progress: HashMap::new(),
            tasks: JoinSet::new(),
        };
        // Recovery: everything acknowledged and not yet delivered is due now.
        match self.spool.list() {
            Ok(ids) => {
                let now = self.clock.instant();
                for id in ids {
                    state.due.insert(id, now);
                }
            }
            Err(e) => tracing::error!("delivery: cannot list the queue: {e}"),
        }
        let mut tick = tokio::time::interval(Duration::from_millis(500));
        loop {
            tokio::select! {
                id = queued.recv() => match id {
                    Some(id) => {
                        state.due.remove(&id);
                        self.start(&mut state, id, false);
                    }
                    None => break,
                },
                _ = tick.tick() => {
                    self.take_flush_requests(&mut state.due);
                    let now = self.clock.instant();
                    let ready: Vec<String> = state
                        .due
                        .iter()
                        .filter(|(id, t)| **t <= now && !state.in_flight.contains(*id))
                        .map(|(id, _)| id.clone())
                        .collect();
                    for id in ready {
                        state.due.remove(&id);
                        self.start(&mut state, id, true);
                    }
                    self.dispatch(&mut state);
                }
                Some(done) = state.tasks.join_next(), if !state.tasks.is_empty() => {
                    if let Ok(step) = done {
                        self.step_done(&mut state, step);
                    }
                }
                _ = stopped(&mut shutdown) => break,
            }
        }
        // Work still waiting in the scheduler stays in the spool for the next start. Steps in
        // flight get a short grace; a relay attempt stuck on a silent server (up to its
        // greeting timeout) must not hold the shutdown: it is dropped, and the message, still
        // in the spool, is tried again after the restart (at worst delivered twice, never lost).
        let grace = tokio::time::sleep(SHUTDOWN_GRACE);
        tokio::pin!(grace);
        loop {
            tokio::select! {
                next = state.tasks.join_next() => {
                    if next.is_none() {
                        return;
                    }
                }
                _ = &mut grace => {
                    tracing::info!(
                        "delivery: {} step(s) still running at shutdown, dropped; their mail stays queued",
                        state.tasks.len()
                    );
                    state.tasks.abort_all();
                    while state.tasks.join_next().await.is_some() {}
                    return;
                }
            }
        }
    }

    /// Starts a due message's first step (unless it is already being worked on).
    fn start(self: &Arc<Self>, state: &mut Loop, id: String, retry: bool) {
        if !state.in_flight.insert(id.clone()) {
            return;
        }
        let (this, local) = (self.clone(), state.local.clone());
        state.tasks.spawn(async move {
            let Ok(_slot) = local.acquire_owned().await else {
                return Step::Finished(id, Verdict::Deferred(Duration::from_secs(60)));
            };
            let prepared = this.prepare(&id, retry).await;
            Step::Prepared(id, prepared)
        });
    }

    /// Hands free slots to waiting remote work.
    fn dispatch(self: &Arc<Self>, state: &mut Loop) {
        let now = self.clock.instant();
        while let Some((dest, work)) = state.sched.next(now) {
            let Some((msg, _)) = state.progress.get(&work.id) else {
                // Its message is gone from the loop (cannot happen); give the slot back.
                state.sched.finished(&dest, Feedback::Neutral, now);
                continue;
            };
            let (this, env, held) = (self.clone(), msg.env.clone(), msg.held_body());
            state.tasks.spawn(async move {
                let (outcomes, feedback) = this.deliver_remote(&work, &env, held).await;
                Step::Remote {
                    dest,
                    work,
                    outcomes,
                    feedback,
                }
            });
        }
    }

    fn step_done(self: &Arc<Self>, state: &mut Loop, step: Step) {
        let now = self.clock.instant();
        match step {
            Step::Prepared(id, Err(verdict)) | Step::Finished(id, verdict) => {
                state.in_flight.remove(&id);
                if let Verdict::Deferred(after) = verdict {
                    retry_at(&mut state.due, id, now + after);
                }
            }
            Step::Prepared(id, Ok((mut msg, remote))) => {
                let mut out = 0;
                for work in remote {
                    let dest = match &self.relay {
                        Some(relay) => Dest::Remote(relay.next_hop(&work.domain)),
                        None => Dest::Remote(work.domain.clone()),
                    };
                    match state.sched.push(dest, work, now) {
                        Ok(()) => out += 1,
                        Err(dead) => {
                            // A dead destination: deferred with its last error, no connection.
                            let reply = dead.reply(now);
                            tracing::info!(
                                "delivery: {id}: {} recipient(s) deferred: {reply}",
                                dead.item.rcpts.len()
                            );
                            for &i in &dead.item.rcpts {
                                msg.results.insert(i, Outcome::deferred(reply.clone()));
                            }
                        }
                    }
                }
                state.progress.insert(id.clone(), (msg, out));
                self.maybe_finish(state, &id);
                self.dispatch(state);
            }
            Step::Remote {
                dest,
                work,
                outcomes,
                feedback,
            } => {
                let died = state.sched.finished(&dest, feedback, now);
                self.record_remote(state, &work.id, outcomes);
                if died {
                    for dead in state.sched.defer_all_dead(now) {
                        let reply = dead.reply(now);
                        let outcomes = dead
                            .item
                            .rcpts
                            .iter()
                            .map(|&i| (i, Outcome::deferred(reply.clone())))
                            .collect();
                        self.record_remote(state, &dead.item.id, outcomes);
                    }
                }
                self.dispatch(state);
            }
        }
    }

    /// One piece of a message's remote work is back.
    fn record_remote(
        self: &Arc<Self>,
        state: &mut Loop,
        id: &str,
        outcomes: Vec<(usize, Outcome)>,
    ) {
        if let Some((msg, out)) = state.progress.get_mut(id) {
            msg.results.extend(outcomes);
            *out = out.saturating_sub(1);
        }
        self.maybe_finish(state, id);
    }

    /// Finishes a message whose every piece of work is back.
    fn maybe_finish(self: &Arc<Self>, state: &mut Loop, id: &str) {
        if !matches!(state.progress.get(id), Some((_, 0))) {
            return;
        }
        let Some((msg, _)) = state.progress.remove(id) else {
            return;
        };
        let (this, id) = (self.clone(), id.to_string());
        state.tasks.spawn(async move {
            let verdict = this.finish(msg).await;
            Step::Finished(id, verdict)
        });
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
}

/// A deferred message is due again at `next`, unless it is already due sooner: a `queue
/// flush` or `queue bounce` asked while its attempt was running (the only way a message in
/// flight has a due time) must not wait for the retry schedule.
fn retry_at(due: &mut HashMap<String, Instant>, id: String, next: Instant) {
    due.entry(id)
        .and_modify(|t| *t = (*t).min(next))
        .or_insert(next);
}

#[cfg(test)]
mod retry_at_tests {
    use super::*;

    #[test]
    fn a_flush_asked_during_the_attempt_is_kept() {
        let now = Instant::now();
        let mut due = HashMap::new();
        due.insert("flushed".to_string(), now);
        retry_at(&mut due, "flushed".into(), now + Duration::from_secs(300));
        retry_at(&mut due, "plain".into(), now + Duration::from_secs(300));
        assert_eq!(due["flushed"], now);
        assert_eq!(due["plain"], now + Duration::from_secs(300));
    }
}
