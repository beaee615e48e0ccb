//! The delivery scheduler: which piece of ready work gets a delivery slot next, so that one
//! slow destination or broken mailbox never delays the others (Postfix's qmgr, in one struct).
//!
//! Pure: no I/O, no tokio, no clock of its own. Time comes in as an `Instant` argument, so the
//! tests drive it with a fake clock. The queue runner owns one [`Scheduler`], pushes work into
//! it when messages come due, asks [`Scheduler::next`] for work whenever a slot may have freed,
//! and reports each attempt's end with [`Scheduler::finished`].
//!
//! **What it decides.** Ready work waits per destination (the next hop, [`Dest`]). A slot goes
//! only to a destination below its concurrency window, so mail for a saturated destination
//! waits in its queue *without* holding one of the `remote_slots`; destinations take turns
//! (round robin), so a domain with 100,000 queued messages gets one slot per turn like a domain
//! with one. Local delivery has its own lane and its own slots and never waits behind remote
//! mail. Each remote destination starts at `initial_concurrency` connections (slow start),
//! grows by one per successful connection up to `per_destination_limit`, and halves on a
//! failure. A failure adds `1/window` "pseudo-cohorts" (Postfix's
//! `destination_concurrency_failed_cohort_limit`); a success resets the count. At
//! `failed_cohort_limit` cohorts the destination is **dead** for `dead_backoff` (doubling per
//! consecutive death up to `max_dead_backoff`): its queued work comes back from
//! [`Scheduler::defer_all_dead`], new work is refused by [`Scheduler::push`], both with the last
//! error, and nothing is tried there until the back-off ends; then one probe connection goes
//! out. A connection that succeeds while the destination is dead (an attempt that started
//! before) revives it at once.
//!
//! **Granularity: the work item is (message id, destination).** A message with recipients in
//! three domains and a local account is four work items, pushed when the message comes due;
//! each attempt delivers only that message's recipients of that destination. How the results
//! merge: each attempt records every one of its recipients' results in the message's spool
//! state log (delivered, failed, deferred with the reply — for a dead destination, the
//! [`Deferred::reply`] text). The runner counts the message's work items still out; when the
//! last one ends, the message is done if every recipient is delivered or failed (one DSN for
//! all failures, then the spool file goes), else it is due again at the earliest of its
//! deferrals' next times (the retry schedule, or the destination's `dead_until`). So a message
//! whose local copy is written and whose remote domain is dead is finished locally at once and
//! retried only for the remote recipients.
//!
//! Not here: routing (which recipients go where), the retry schedule of messages, the spool,
//! the relay's own per-address connection limit (a second guard, never reached when this one
//! holds).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Where a delivery attempt goes: the next hop.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dest {
    /// Maildir delivery: its own lane, no per-destination limit, never dead.
    Local,
    /// A remote next hop: the recipient domain (the relay looks up its MX hosts), or the
    /// smarthost's `host:port` when one is configured (then all remote mail is one destination).
    Remote(String),
}

impl std::fmt::Display for Dest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dest::Local => f.write_str("local"),
            Dest::Remote(name) => f.write_str(name),
        }
    }
}

/// The scheduler's limits.
#[derive(Clone, Debug)]
pub struct SchedConfig {
    /// Remote attempts in flight, all destinations together (`delivery.concurrency`).
    pub remote_slots: usize,
    /// Local deliveries in flight.
    pub local_slots: usize,
    /// Most attempts in flight to one remote destination (`relay.per_destination_limit`).
    pub per_destination_limit: usize,
    /// Window of a new destination; `per_destination_limit` or more turns slow start off.
    pub initial_concurrency: usize,
    /// Pseudo-cohorts of failed connections (one cohort = a window's worth) before a
    /// destination is dead.
    pub failed_cohort_limit: u32,
    /// How long a destination stays dead the first time.
    pub dead_backoff: Duration,
    /// The longest it stays dead (the back-off doubles per consecutive death).
    pub max_dead_backoff: Duration,
}

impl Default for SchedConfig {
    fn default() -> SchedConfig {
        SchedConfig {
            remote_slots: 100,
            local_slots: 16,
            per_destination_limit: 4,
            initial_concurrency: 2,
            failed_cohort_limit: 1,
            dead_backoff: Duration::from_secs(5 * 60),
            max_dead_backoff: Duration::from_secs(3600),
        }
    }
}

/// How an attempt went, as far as the destination's health goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Feedback {
    /// A host took a session (whatever it then said to the recipients): the destination lives.
    Connected,
    /// No host took a session: refused, reset, 4xx greeting, failed handshake. The last error.
    Failed(String),
    /// A wait ran out: connect, greeting, or the whole-attempt deadline. The last error.
    TimedOut(String),
    /// Nothing learned about the destination (a DNS failure, a local delivery, no recipients).
    Neutral,
}

/// Work handed back instead of tried: its destination is dead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Deferred<T> {
    pub dest: Dest,
    pub item: T,
    /// Nothing is tried at `dest` before this.
    pub until: Instant,
    /// The error that killed the destination (the latest failure).
    pub last_error: String,
}

impl<T> Deferred<T> {
    /// The deferral text for the recipients' state log, `now` being the time it is recorded.
    pub fn reply(&self, now: Instant) -> String {
        let left = self.until.saturating_duration_since(now).as_secs();
        format!(
            "4.4.1 destination {} is dead for {left}s more (no new connections): {}",
            self.dest, self.last_error
        )
    }
}

struct Dead {
    until: Instant,
    last_error: String,
}

/// One remote destination.
struct Site<T> {
    queue: VecDeque<T>,
    in_flight: usize,
    /// Attempts allowed in flight now (slow start, halved on failures).
    window: usize,
    /// Failed pseudo-cohorts since the last success.
    failed_cohorts: f64,
    /// Consecutive deaths without a success in between (the back-off doubles with each).
    deaths: u32,
    last_error: String,
    dead: Option<Dead>,
    /// Whether `dest` is in the round-robin ring (maybe stale; checked when it comes up).
    in_ring: bool,
}

impl<T> Site<T> {
    fn eligible(&self) -> bool {
        self.dead.is_none() && !self.queue.is_empty() && self.in_flight < self.window
    }

    /// Nothing queued, nothing running, nothing to remember.
    fn forgettable(&self) -> bool {
        self.queue.is_empty()
            && self.in_flight == 0
            && self.dead.is_none()
            && self.deaths == 0
            && self.failed_cohorts == 0.0
    }
}

/// Ready work per destination and the slots it may use. `T` is the runner's work item without
/// its destination: the message id.
pub struct Scheduler<T> {
    config: SchedConfig,
    sites: HashMap<Dest, Site<T>>,
    /// Remote destinations that may be eligible, in turn order.
    ring: VecDeque<Dest>,
    local: VecDeque<T>,
    local_in_flight: usize,
    remote_in_flight: usize,
    /// When dead destinations come back (maybe stale: checked against the site).
    revivals: BinaryHeap<Reverse<(Instant, Dest)>>,
}

impl<T> Scheduler<T> {
    pub fn new(config: SchedConfig) -> Scheduler<T> {
        Scheduler {
            config,
            sites: HashMap::new(),
            ring: VecDeque::new(),
            local: VecDeque::new(),
            local_in_flight: 0,
            remote_in_flight: 0,
            revivals: BinaryHeap::new(),
        }
    }

    fn limit(&self) -> usize {
        self.config.per_destination_limit.max(1)
    }

    /// Queues `item` for `dest`, or hands it back at once when `dest` is dead.
    pub fn push(&mut self, dest: Dest, item: T, now: Instant) -> Result<(), Deferred<T>> {
        self.revive(now);
        let Dest::Remote(_) = dest else {
            self.local.push_back(item);
            return Ok(());
        };
        let window = self.config.initial_concurrency.clamp(1, self.limit());
        let site = self.sites.entry(dest.clone()).or_insert_with(|| Site {
            queue: VecDeque::new(),
            in_flight: 0,
            window,
            failed_cohorts: 0.0,
            deaths: 0,
            last_error: String::new(),
            dead: None,
            in_ring: false,
        });
        if let Some(dead) = &site.dead {
            return Err(Deferred {
                until: dead.until,
                last_error: dead.last_error.clone(),
                dest,
                item,
            });
        }
        site.queue.push_back(item);
        self.enter_ring(&dest);
        Ok(())
    }

    /// The next work to start now, if a slot and a destination below its window allow; the
    /// caller must report its end with [`finished`](Self::finished). Local work first (its own
    /// slots), then remote destinations in turn.
    pub fn next(&mut self, now: Instant) -> Option<(Dest, T)> {
        self.revive(now);
        if self.local_in_flight < self.config.local_slots.max(1) {
            if let Some(item) = self.local.pop_front() {
                self.local_in_flight += 1;
                return Some((Dest::Local, item));
            }
        }
        if self.remote_in_flight >= self.config.remote_slots.max(1) {
            return None;
        }
        while let Some(dest) = self.ring.pop_front() {
            let Some(site) = self.sites.get_mut(&dest) else {
                continue;
            };
            if !site.eligible() {
                site.in_ring = false;
                continue;
            }
            let item = site.queue.pop_front()?;
            site.in_flight += 1;
            self.remote_in_flight += 1;
            if site.eligible() {
                self.ring.push_back(dest.clone());
            } else {
                site.in_ring = false;
            }
            return Some((dest, item));
        }
        None
    }

    /// An attempt handed out by [`next`](Self::next) ended. Returns true when this result made
    /// `dest` dead (for a log line); its queued work is then waiting in
    /// [`defer_all_dead`](Self::defer_all_dead).
    pub fn finished(&mut self, dest: &Dest, feedback: Feedback, now: Instant) -> bool {
        self.revive(now);
        let Dest::Remote(_) = dest else {
            self.local_in_flight = self.local_in_flight.saturating_sub(1);
            return false;
        };
        self.remote_in_flight = self.remote_in_flight.saturating_sub(1);
        let limit = self.limit();
        let config = &self.config;
        let Some(site) = self.sites.get_mut(dest) else {
            return false;
        };
        site.in_flight = site.in_flight.saturating_sub(1);
        let mut died = None;
        match feedback {
            Feedback::Connected => {
                site.dead = None;
                site.failed_cohorts = 0.0;
                site.deaths = 0;
                site.window = (site.window + 1).min(limit);
            }
            Feedback::Failed(error) | Feedback::TimedOut(error) => {
                site.last_error = error;
                if site.dead.is_none() {
                    site.failed_cohorts += 1.0 / site.window as f64;
                    site.window = (site.window / 2).max(1);
                    // A small epsilon: four quarter-cohorts make one.
                    if site.failed_cohorts + 1e-9 >= f64::from(config.failed_cohort_limit.max(1)) {
                        let backoff = config
                            .dead_backoff
                            .saturating_mul(1u32 << site.deaths.min(16))
                            .min(config.max_dead_backoff.max(config.dead_backoff));
                        let until = now + backoff;
                        site.deaths += 1;
                        site.dead = Some(Dead {
                            until,
                            last_error: site.last_error.clone(),
                        });
                        died = Some(until);
                    }
                } else if let Some(dead) = &mut site.dead {
                    dead.last_error = site.last_error.clone();
                }
            }
            Feedback::Neutral => {}
        }
        if let Some(until) = died {
            self.revivals.push(Reverse((until, dest.clone())));
        }
        self.settle(dest);
        died.is_some()
    }

    /// Takes back the queued work of every dead destination, each with its `until` and last
    /// error: the runner records it as deferred and makes the message due at `until`.
    pub fn defer_all_dead(&mut self, now: Instant) -> Vec<Deferred<T>> {
        self.revive(now);
        let mut out = Vec::new();
        for (dest, site) in &mut self.sites {
            if let Some(dead) = &site.dead {
                out.extend(site.queue.drain(..).map(|item| Deferred {
                    dest: dest.clone(),
                    item,
                    until: dead.until,
                    last_error: dead.last_error.clone(),
                }));
            }
        }
        out
    }

    /// Until when `dest` is dead, and why; `None` when it may be tried.
    pub fn dead_until(&self, dest: &Dest) -> Option<(Instant, &str)> {
        let dead = self.sites.get(dest)?.dead.as_ref()?;
        Some((dead.until, &dead.last_error))
    }

    /// Every dead destination with its `until` and last error, soonest revival first (for
    /// `mailroom queue list`).
    pub fn dead(&self) -> Vec<(&Dest, Instant, &str)> {
        let mut list: Vec<_> = self
            .sites
            .iter()
            .filter_map(|(d, s)| Some((d, s.dead.as_ref()?)))
            .map(|(d, dead)| (d, dead.until, dead.last_error.as_str()))
            .collect();
        list.sort_by(|a, b| (a.1, a.0).cmp(&(b.1, b.0)));
        list
    }

    /// When the next dead destination comes back: a runner with nothing else to do sleeps
    /// until then at most.
    pub fn next_revival(&self) -> Option<Instant> {
        self.revivals.peek().map(|Reverse((until, _))| *until)
    }

    /// Work waiting for `dest` (not in flight).
    pub fn queued(&self, dest: &Dest) -> usize {
        match dest {
            Dest::Local => self.local.len(),
            Dest::Remote(_) => self.sites.get(dest).map_or(0, |s| s.queue.len()),
        }
    }

    /// Attempts at `dest` in flight.
    pub fn in_flight(&self, dest: &Dest) -> usize {
        match dest {
            Dest::Local => self.local_in_flight,
            Dest::Remote(_) => self.sites.get(dest).map_or(0, |s| s.in_flight),
        }
    }

    /// Attempts at `dest` allowed in flight now (its slow-start window).
    pub fn window(&self, dest: &Dest) -> Option<usize> {
        self.sites.get(dest).map(|s| s.window)
    }

    /// No work queued or in flight.
    pub fn is_idle(&self) -> bool {
        self.local.is_empty()
            && self.local_in_flight == 0
            && self.remote_in_flight == 0
            && self.sites.values().all(|s| s.queue.is_empty())
    }

    /// Brings back the destinations whose back-off ended: one probe at a time, no failures
    /// counted yet.
    fn revive(&mut self, now: Instant) {
        while let Some(Reverse((until, _))) = self.revivals.peek() {
            if *until > now {
                break;
            }
            let Some(Reverse((until, dest))) = self.revivals.pop() else {
                break;
            };
            let Some(site) = self.sites.get_mut(&dest) else {
                continue;
            };
            if site.dead.as_ref().is_some_and(|d| d.until == until) {
                site.dead = None;
                site.failed_cohorts = 0.0;
                site.window = 1;
                self.settle(&dest);
            }
        }
    }

    /// After a change at `dest`: back in the ring when it can take work, forgotten when it
    /// holds nothing.
    fn settle(&mut self, dest: &Dest) {
        if self.sites.get(dest).is_some_and(Site::forgettable) {
            if self.sites.remove(dest).is_some_and(|s| s.in_ring) {
                // A stale turn (left by `defer_all_dead`): rare, and a new site must not
                // get two turns per round.
                self.ring.retain(|d| d != dest);
            }
        } else {
            self.enter_ring(dest);
        }
    }

    fn enter_ring(&mut self, dest: &Dest) {
        if let Some(site) = self.sites.get_mut(dest) {
            if site.eligible() && !site.in_ring {
                site.in_ring = true;
                self.ring.push_back(dest.clone());
            }
        }
    }
}

#[cfg(test)]
#[path = "schedule_tests.rs"]
mod tests;
