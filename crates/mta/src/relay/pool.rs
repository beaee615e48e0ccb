//! Idle SMTP connections kept for reuse, and the per-destination connection limit.
//!
//! A connection that finished a transaction cleanly waits here, keyed by the destination
//! address, for up to [`IDLE_TIME`] and at most [`MAX_MESSAGES`] messages; it is RSET before
//! reuse (by the caller) and QUIT when discarded. The limit is a semaphore per destination
//! address held while a connection is in use; a new connection is only opened when no idle one
//! is left, so open connections per destination never exceed the limit. This file sends no
//! commands except the QUIT of expired connections.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::conn::Conn;

/// How long a connection may sit idle.
pub(crate) const IDLE_TIME: Duration = Duration::from_secs(30);
/// Messages per connection before it is closed.
pub(crate) const MAX_MESSAGES: usize = 100;

#[derive(Default)]
pub(crate) struct Pool {
    idle: Mutex<HashMap<SocketAddr, Vec<(Instant, Conn)>>>,
    limits: Mutex<HashMap<SocketAddr, Arc<Semaphore>>>,
}

impl Pool {
    /// Waits for a connection slot to `addr`.
    pub async fn slot(&self, addr: SocketAddr, limit: usize) -> Option<OwnedSemaphorePermit> {
        let semaphore = {
            let mut limits = self.limits.lock().unwrap_or_else(|e| e.into_inner());
            // Forget destinations nobody uses, so the map does not grow forever.
            if limits.len() > 1024 {
                limits.retain(|_, s| Arc::strong_count(s) > 1);
            }
            limits
                .entry(addr)
                .or_insert_with(|| Arc::new(Semaphore::new(limit.max(1))))
                .clone()
        };
        semaphore.acquire_owned().await.ok()
    }

    /// The most recently used idle connection to `addr`, if one is still fresh.
    pub fn take(self: &Arc<Self>, addr: SocketAddr) -> Option<Conn> {
        self.expire();
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.get_mut(&addr)?;
        let conn = list.pop().map(|(_, c)| c);
        if list.is_empty() {
            idle.remove(&addr);
        }
        conn
    }

    /// Keeps `conn` for reuse, or QUITs it when it has carried enough messages.
    pub fn put(self: &Arc<Self>, conn: Conn) {
        if conn.messages() >= MAX_MESSAGES {
            tokio::spawn(conn.quit());
            return;
        }
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(conn.addr)
            .or_default()
            .push((Instant::now(), conn));
        let pool = Arc::downgrade(self);
        tokio::spawn(async move {
            tokio::time::sleep(IDLE_TIME + Duration::from_millis(100)).await;
            if let Some(pool) = pool.upgrade() {
                pool.expire();
            }
        });
    }

    /// QUITs the connections idle for longer than [`IDLE_TIME`].
    fn expire(&self) {
        let mut expired = Vec::new();
        {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            for list in idle.values_mut() {
                let (old, fresh): (Vec<_>, Vec<_>) = std::mem::take(list)
                    .into_iter()
                    .partition(|(since, _)| since.elapsed() >= IDLE_TIME);
                *list = fresh;
                expired.extend(old.into_iter().map(|(_, c)| c));
            }
            idle.retain(|_, list| !list.is_empty());
        }
        for conn in expired {
            tracing::debug!("relay: {}: idle, closing", conn.label);
            tokio::spawn(conn.quit());
        }
    }
}
