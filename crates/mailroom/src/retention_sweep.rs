//! The POP3 retention sweep task (`[pop3] delete_retrieved_after`, `delete_after`, and the
//! per-account overrides of `mailroom user retention`): every half of the shortest period in
//! force (between 1 s and 1 h) on a blocking thread, each mailbox under its own merged
//! policy (`store::account_retention`), logged per mailbox. With nothing in force it looks
//! again every minute, so an override set while running is picked up.

use std::sync::Arc;
use std::time::Duration;

use store::account_retention::{self, AccountRetention};

use crate::config::Config;

/// How often to look for overrides when no policy is in force.
const IDLE: Duration = Duration::from_secs(60);

pub fn spawn(
    config: &Config,
    clock: Arc<dyn store::clock::Clock>,
) -> Option<tokio::task::JoinHandle<()>> {
    let default = config.pop3.retention();
    let table = match AccountRetention::open(&config.data_dir) {
        Ok(t) => Arc::new(t),
        Err(e) => {
            tracing::warn!("pop3: retention overrides not read: {e}");
            if default.is_off() {
                return None;
            }
            return spawn_with(config, clock, default, None);
        }
    };
    spawn_with(config, clock, default, Some(table))
}

fn spawn_with(
    config: &Config,
    clock: Arc<dyn store::clock::Clock>,
    default: store::retention::Policy,
    table: Option<Arc<AccountRetention>>,
) -> Option<tokio::task::JoinHandle<()>> {
    let data_dir = config.data_dir.clone();
    if !default.is_off() {
        let shown =
            |d: Option<Duration>| d.map_or("off".to_string(), |d| format!("{}s", d.as_secs()));
        tracing::info!(
            delete_retrieved_after = %shown(default.delete_retrieved_after),
            delete_after = %shown(default.delete_after),
            "pop3: retention on"
        );
    }
    Some(tokio::spawn(async move {
        loop {
            let overrides = table
                .as_ref()
                .and_then(|t| t.all().ok())
                .unwrap_or_default();
            let shortest = overrides
                .values()
                .map(|o| account_retention::policy(&default, *o))
                .chain(std::iter::once(default))
                .flat_map(|p| [p.delete_retrieved_after, p.delete_after])
                .flatten()
                .min();
            let Some(shortest) = shortest else {
                tokio::time::sleep(IDLE).await;
                continue;
            };
            let (data_dir, clock) = (data_dir.clone(), clock.clone());
            let results = tokio::task::spawn_blocking(move || {
                let policy_of = |account: &str| match overrides.get(account) {
                    Some(o) => account_retention::policy(&default, *o),
                    None => default,
                };
                store::retention::sweep_all_with(
                    &data_dir,
                    &policy_of,
                    std::time::UNIX_EPOCH + Duration::from_secs(clock.unix()),
                )
            })
            .await
            .unwrap_or_default();
            for (mailbox, result) in results {
                let mailbox = mailbox.display();
                match result {
                    Ok(s) => tracing::info!(
                        "pop3: retention: mailbox={mailbox} deleted={} bytes={}",
                        s.deleted,
                        s.bytes
                    ),
                    Err(store::mailbox::MailboxError::Locked) => {
                        tracing::info!("pop3: retention: mailbox={mailbox} skipped=in-use")
                    }
                    Err(e) => tracing::warn!("pop3: retention: mailbox={mailbox} error={e}"),
                }
            }
            let every = (shortest / 2).clamp(Duration::from_secs(1), Duration::from_secs(3600));
            tokio::time::sleep(every).await;
        }
    }))
}
