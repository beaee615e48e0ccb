//! The admission of one listener family, shared by its listeners and sessions: the pure
//! [`Admission`] table behind a mutex, a [`Ticket`] per admitted session that gives the slot
//! back when dropped, and the eviction signal that tells a session to close.
//!
//! What it does: admits or refuses a newcomer, wakes the session the table chose to evict
//! (its [`Ticket::evicted`] resolves; the session writes its `421` and ends), marks sessions
//! that may no longer be evicted ([`Ticket::protect`]), and logs entering and leaving stress
//! mode (counted, for a metric once metrics exist). [`Gate::stressed`] is a lock-free read for
//! every command's timeout, and [`Gate::stress_watch`] wakes sessions already waiting when
//! stress mode begins, so their wait is shortened too.
//!
//! What it does not do: write to clients or choose timeouts; the listeners do.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{watch, Notify};

use crate::admission::{Admission, AdmissionLimits, Refusal, SessionId, StressChange};

/// The admission state of one listener family (all SMTP ports, or all POP3 ports).
pub struct Gate {
    /// `smtpd` or `pop3`, for the log.
    name: &'static str,
    table: Mutex<Admission<Arc<Notify>>>,
    stressed: AtomicBool,
    /// The stress state for sessions waiting on a client, so a wait begun before stress mode
    /// is shortened when it begins.
    stress_watch: watch::Sender<bool>,
    /// Times stress mode was entered.
    stress_episodes: AtomicU64,
    /// Sessions closed to make room.
    evictions: AtomicU64,
}

/// One admitted session's slot; dropping it frees the slot.
pub struct Ticket {
    gate: Arc<Gate>,
    id: SessionId,
    evicted: Arc<Notify>,
    protected: AtomicBool,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("name", &self.name)
            .field("open", &self.open())
            .field("stressed", &self.stressed())
            .finish()
    }
}

impl Gate {
    pub fn new(name: &'static str, limits: AdmissionLimits) -> Arc<Gate> {
        Arc::new(Gate {
            name,
            table: Mutex::new(Admission::new(limits)),
            stressed: AtomicBool::new(false),
            stress_watch: watch::Sender::new(false),
            stress_episodes: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
        })
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Admission<Arc<Notify>>> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits a session from `ip`, telling the session it displaces (if any) to close.
    pub fn admit(self: &Arc<Self>, ip: IpAddr, trusted: bool) -> Result<Ticket, Refusal> {
        let evicted = Arc::new(Notify::new());
        let (result, change) = self.table().admit(ip, trusted, evicted.clone());
        self.stress_changed(change);
        let admitted = result?;
        if let Some(victim) = admitted.evicted {
            self.evictions.fetch_add(1, Ordering::Relaxed);
            // A stored permit: a session busy right now sees it at its next read.
            victim.notify_one();
        }
        Ok(Ticket {
            gate: self.clone(),
            id: admitted.id,
            evicted,
            protected: AtomicBool::new(trusted),
        })
    }

    /// True in stress mode.
    pub fn stressed(&self) -> bool {
        self.stressed.load(Ordering::Relaxed)
    }

    /// The stress state, to wait for its changes.
    pub fn stress_watch(&self) -> watch::Receiver<bool> {
        self.stress_watch.subscribe()
    }

    /// Sessions open now.
    pub fn open(&self) -> usize {
        self.table().open()
    }

    /// Times stress mode was entered, and sessions evicted, since the start.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.stress_episodes.load(Ordering::Relaxed),
            self.evictions.load(Ordering::Relaxed),
        )
    }

    fn stress_changed(&self, change: Option<StressChange>) {
        let Some(change) = change else { return };
        let (open, limits) = {
            let t = self.table();
            (t.open(), t.limits().clone())
        };
        match change {
            StressChange::Entered => {
                self.stressed.store(true, Ordering::Relaxed);
                self.stress_watch.send_replace(true);
                let n = self.stress_episodes.fetch_add(1, Ordering::Relaxed) + 1;
                metrics::global().stress_episodes.inc();
                tracing::warn!(
                    "{}: stress mode on: {open} of {} connections open (threshold {}); short timeouts for unproven sessions, oldest idle ones closed when full (episode {n})",
                    self.name,
                    limits.max_connections,
                    limits.stress_at
                );
            }
            StressChange::Left => {
                self.stressed.store(false, Ordering::Relaxed);
                self.stress_watch.send_replace(false);
                tracing::warn!(
                    "{}: stress mode off: {open} of {} connections open ({} evicted so far)",
                    self.name,
                    limits.max_connections,
                    self.evictions.load(Ordering::Relaxed)
                );
            }
        }
    }
}

impl Ticket {
    /// The session sent `MAIL` or authenticated: it keeps its slot whatever comes. Cheap after
    /// the first call.
    pub fn protect(&self) {
        if !self.protected.swap(true, Ordering::Relaxed) {
            self.gate.table().protect(self.id);
        }
    }

    /// Resolves when the session was chosen to make room for a newcomer.
    pub async fn evicted(&self) {
        self.evicted.notified().await
    }

    /// The eviction signal, for a future that must own it.
    pub fn eviction_signal(&self) -> Arc<Notify> {
        self.evicted.clone()
    }

    /// The gate this ticket belongs to.
    pub fn gate(&self) -> &Gate {
        &self.gate
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let change = self.gate.table().release(self.id);
        self.gate.stress_changed(change);
    }
}
