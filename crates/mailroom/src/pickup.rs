//! The server's pickup (Postfix's `pickup`): moves what local users left in the maildrop
//! (`mailroom sendmail` run by someone who cannot write the spool) into the queue, at start and
//! then every second, and hands each new queue id to the queue runner.
//!
//! The file's owner (from the kernel) is the sender's identity; its bytes are a local user's
//! and are checked like network input: bounded in size, parsed by [`local_mail::decode`], and
//! composed by [`local_mail::compose`] (which adds our `Received:` naming the uid). A file
//! that can never be queued is logged and removed; one that failed on an I/O error stays for
//! the next pass.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use store::directory::Directory;
use store::spool::{Origin, Spool};
use tokio::sync::{mpsc, watch};

use crate::local_mail::{self, Site};

/// What the pickup needs from the server.
pub struct Pickup {
    pub config: crate::config::Config,
    pub directory: Arc<Directory>,
    pub spool: Arc<Spool>,
    pub queued: mpsc::UnboundedSender<String>,
}

/// Envelope lines on top of the message in a maildrop file.
const ENVELOPE_SLACK: u64 = 64 * 1024;

impl Pickup {
    /// Runs until `shutdown`.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let data_dir: PathBuf = self.config.data_dir.clone();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        // Queued but not removable: never queued twice by this process.
        let mut stuck = std::collections::HashSet::new();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            let names = match store::maildrop::list(&data_dir) {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!("pickup: cannot read the maildrop: {e}");
                    continue;
                }
            };
            for name in names {
                if *shutdown.borrow() {
                    return;
                }
                if !stuck.contains(&name) && !self.one(&name).await {
                    stuck.insert(name);
                }
            }
        }
    }

    /// Moves one file into the queue; false when it was queued but could not be removed.
    async fn one(&self, name: &str) -> bool {
        let data_dir = &self.config.data_dir;
        let max = self.config.smtp.max_message_size + ENVELOPE_SLACK;
        let dropped = match store::maildrop::take(data_dir, name, max) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                tracing::warn!("pickup: maildrop/{name}: refused: {e}");
                let _ = store::maildrop::remove(data_dir, name);
                return true;
            }
            Err(e) => {
                tracing::error!("pickup: maildrop/{name}: {e}");
                return true;
            }
        };
        let caller = crate::sendmail::caller(dropped.uid, &self.config);
        let id = store::spool::new_id();
        let composed = local_mail::decode(&dropped.bytes).and_then(|request| {
            let domains = self.directory.list_domains().map_err(|e| e.to_string())?;
            let domain = crate::sendmail::local_domain(&domains, &self.config.hostname);
            let site = Site {
                hostname: &self.config.hostname,
                local_domain: &domain,
                id: &id,
                unix_secs: unix_now(),
                max_recipients: self.config.smtp.max_recipients,
            };
            local_mail::compose(&request, &caller, &site)
        });
        let m = match composed {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(
                    "pickup: maildrop/{name}: refused from uid={} user={}: {e}",
                    caller.uid,
                    caller.name
                );
                let _ = store::maildrop::remove(data_dir, name);
                return true;
            }
        };
        let origin = Origin {
            client: &m.client,
            sender_verified: m.sender_verified,
            notify_never: false,
            require_tls: false,
        };
        let now = unix_now() as u64;
        let parts: [&[u8]; 1] = [&m.message];
        if let Err(e) = self
            .spool
            .enqueue(&id, &m.sender, &m.recipients, &origin, now, &parts)
            .await
        {
            tracing::error!("pickup: maildrop/{name}: cannot queue, will retry: {e}");
            return true;
        }
        // Queued durably first: if the removal fails the message may be queued again after a
        // restart, never lost.
        let removed = store::maildrop::remove(data_dir, name);
        if let Err(e) = &removed {
            tracing::error!("pickup: maildrop/{name}: queued as {id} but not removed: {e}");
        }
        tracing::info!(
            "pickup: {id}: accepted from=<{}> uid={} user={} size={} nrcpt={}",
            m.sender,
            caller.uid,
            caller.name,
            m.message.len(),
            m.recipients.len()
        );
        let _ = self.queued.send(id);
        removed.is_ok()
    }
}

fn unix_now() -> i64 {
    use store::clock::Clock as _;
    i64::try_from(store::clock::SystemClock.unix()).unwrap_or(i64::MAX)
}
