//! The queue gauges of `/metrics`: messages in the queue by state and the age of the oldest,
//! read from the spool every 30 seconds on a blocking thread (a scrape never walks the
//! queue itself, so it stays cheap however long the queue is).
//!
//! `active`: a message never attempted yet (new, or due at start); `deferred`: one with a state
//! log, i.e. tried and waiting for its next attempt. It only reads the spool.

use std::sync::Arc;
use std::time::Duration;

use store::spool::Spool;

/// How often the gauges are brought up to date.
const EVERY: Duration = Duration::from_secs(30);

/// (active, deferred, age of the oldest in seconds) of the queue now.
pub fn count(spool: &Spool, now: u64) -> (i64, i64, i64) {
    let (mut active, mut deferred, mut oldest) = (0i64, 0i64, None::<u64>);
    for id in spool.list().unwrap_or_default() {
        // A message delivered meanwhile is simply not counted.
        let Ok((env, _)) = spool.open_message(&id) else {
            continue;
        };
        if spool.log(&id).map(|l| l.is_empty()).unwrap_or(true) {
            active += 1;
        } else {
            deferred += 1;
        }
        oldest = Some(oldest.map_or(env.received, |o: u64| o.min(env.received)));
    }
    let age = oldest.map_or(0, |t| now.saturating_sub(t));
    (active, deferred, i64::try_from(age).unwrap_or(i64::MAX))
}

/// Updates the gauges every [`EVERY`] until the process ends.
pub async fn run(spool: Arc<Spool>) {
    let mut every = tokio::time::interval(EVERY);
    loop {
        every.tick().await;
        let s = spool.clone();
        let now = crate::admin_dkim::unix_now();
        let Ok((active, deferred, age)) = tokio::task::spawn_blocking(move || count(&s, now)).await
        else {
            continue;
        };
        let m = metrics::global();
        m.queue_messages
            .get_or_create(&metrics::QueueLabel { state: "active" })
            .set(active);
        m.queue_messages
            .get_or_create(&metrics::QueueLabel { state: "deferred" })
            .set(deferred);
        m.queue_oldest_age.set(age);
    }
}
