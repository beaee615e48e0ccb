//! The queue runner and local delivery agent (MDA): takes messages out of the spool, routes
//! each recipient through the directory, writes one copy per distinct account into its
//! Maildir, and removes the message from the spool once every recipient is done.
//!
//! Delivery is at-least-once made exactly-once for Maildirs: the Maildir file name of a copy
//! is derived from the queue id and the copy's number, so after a crash (the copy was written
//! but the spool entry not yet removed) a second attempt finds the copy and skips it. On start
//! every message left in the spool is delivered; messages that could not be delivered are
//! tried again every `retry_interval`. Recipients in other domains (relay) stay queued until
//! the relay client exists; unknown recipients are logged as failed (bounces come with the
//! relay). Not here: reading a client socket, or anything of SMTP.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use store::directory::{Directory, DirectoryError, Resolution};
use store::maildir::{maildir_path, Maildir};
use store::spool::Spool;
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;

use crate::stopped;

/// The local delivery agent's settings and handles.
pub struct Delivery {
    pub directory: Arc<Directory>,
    pub spool: Arc<Spool>,
    pub data_dir: PathBuf,
    pub hostname: String,
    pub postmaster: Option<String>,
    /// Messages delivered at the same time.
    pub concurrency: usize,
    /// Pause before a message that is still in the queue is tried again.
    pub retry_interval: Duration,
}

/// How one attempt at a message ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every recipient is done; the message left the spool.
    Done,
    /// Some recipients must be tried again later.
    Deferred,
}

impl Delivery {
    /// Runs until `shutdown`: delivers what the spool holds at start, each id that arrives on
    /// `queued`, and retries deferred messages on a timer. Returns when the running deliveries
    /// have finished.
    pub async fn run(
        self: Arc<Self>,
        mut queued: mpsc::UnboundedReceiver<String>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let slots = Arc::new(Semaphore::new(self.concurrency));
        let in_flight: Arc<Mutex<HashSet<String>>> = Arc::default();
        let mut tasks = JoinSet::new();
        // Recovery: everything acknowledged and not yet delivered.
        self.sweep(&slots, &in_flight, &mut tasks, true);
        let mut retry = tokio::time::interval_at(
            tokio::time::Instant::now() + self.retry_interval,
            self.retry_interval,
        );
        loop {
            tokio::select! {
                id = queued.recv() => match id {
                    Some(id) => self.start(id, false, &slots, &in_flight, &mut tasks),
                    None => break,
                },
                _ = retry.tick() => self.sweep(&slots, &in_flight, &mut tasks, true),
                _ = stopped(&mut shutdown) => break,
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        while tasks.join_next().await.is_some() {}
    }

    fn sweep(
        self: &Arc<Self>,
        slots: &Arc<Semaphore>,
        in_flight: &Arc<Mutex<HashSet<String>>>,
        tasks: &mut JoinSet<()>,
        retry: bool,
    ) {
        match self.spool.list() {
            Ok(ids) => {
                for id in ids {
                    self.start(id, retry, slots, in_flight, tasks);
                }
            }
            Err(e) => tracing::error!("delivery: cannot list the queue: {e}"),
        }
    }

    fn start(
        self: &Arc<Self>,
        id: String,
        retry: bool,
        slots: &Arc<Semaphore>,
        in_flight: &Arc<Mutex<HashSet<String>>>,
        tasks: &mut JoinSet<()>,
    ) {
        {
            let mut set = in_flight.lock().unwrap_or_else(|p| p.into_inner());
            if !set.insert(id.clone()) {
                return;
            }
        }
        let this = self.clone();
        let slots = slots.clone();
        let in_flight = in_flight.clone();
        tasks.spawn(async move {
            let Ok(_slot) = slots.acquire_owned().await else {
                return;
            };
            let worker = this.clone();
            let id2 = id.clone();
            let res = tokio::task::spawn_blocking(move || worker.deliver(&id2, retry)).await;
            if let Err(e) = res {
                tracing::error!("delivery: {id}: worker failed: {e}");
            }
            in_flight
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&id);
        });
    }

    /// One attempt at one message (blocking file I/O). `retry`: an earlier attempt may have
    /// delivered some copies already, so look before writing.
    pub fn deliver(&self, id: &str, retry: bool) -> Outcome {
        let started = Instant::now();
        let (envelope, message) = match self.spool.read(id) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Outcome::Done,
            Err(e) => {
                tracing::error!("delivery: {id}: cannot read queue file: {e}");
                return Outcome::Deferred;
            }
        };
        let age = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0)
            .saturating_sub(envelope.received);
        let return_path = proto::smtp::received::return_path_header(&envelope.sender);
        let size = (return_path.len() + message.len()) as u64;
        let mut copies: Vec<String> = Vec::new();
        let mut deferred = false;
        for rcpt in &envelope.recipients {
            let resolution = match self.directory.resolve(rcpt, self.postmaster.as_deref()) {
                Ok(r) => r,
                Err(DirectoryError::InvalidAddress(e)) => {
                    tracing::error!("delivery: {id}: to=<{rcpt}> status=failed ({e})");
                    continue;
                }
                Err(e) => {
                    tracing::error!("delivery: {id}: to=<{rcpt}> status=deferred (directory: {e})");
                    deferred = true;
                    continue;
                }
            };
            match resolution {
                Resolution::Deliver { local, remote } => {
                    for account in local {
                        let key = account.address.to_lowercase();
                        if copies.contains(&key) {
                            continue;
                        }
                        copies.push(key);
                        let n = copies.len() - 1;
                        let maildir = Maildir::new(maildir_path(&self.data_dir, &account));
                        let name = match Maildir::file_name(
                            envelope.received,
                            &format!("Q{id}R{n}"),
                            &self.hostname,
                            size,
                        ) {
                            Ok(name) => name,
                            Err(e) => {
                                tracing::error!(
                                    "delivery: {id}: to=<{rcpt}> status=deferred ({e})"
                                );
                                deferred = true;
                                continue;
                            }
                        };
                        if retry && maildir.contains(&name).unwrap_or(false) {
                            tracing::info!("delivery: {id}: to=<{rcpt}> mailbox={} status=sent (already delivered)", account.address);
                            continue;
                        }
                        match maildir.deliver(&name, &[return_path.as_bytes(), &message]) {
                            Ok(_) => tracing::info!(
                                "delivery: {id}: to=<{rcpt}> mailbox={} status=sent delay={:.3}s age={age}s",
                                account.address,
                                started.elapsed().as_secs_f64()
                            ),
                            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                                tracing::info!("delivery: {id}: to=<{rcpt}> mailbox={} status=sent (already delivered)", account.address);
                            }
                            Err(e) => {
                                tracing::error!(
                                    "delivery: {id}: to=<{rcpt}> mailbox={} status=deferred ({e})",
                                    account.address
                                );
                                deferred = true;
                            }
                        }
                    }
                    for target in remote {
                        tracing::warn!("delivery: {id}: to=<{rcpt}> forward=<{target}> status=deferred (relay to other domains is not available yet)");
                        deferred = true;
                    }
                }
                Resolution::NotLocal => {
                    tracing::warn!("delivery: {id}: to=<{rcpt}> status=deferred (relay to other domains is not available yet)");
                    deferred = true;
                }
                Resolution::Unknown | Resolution::Loop => {
                    // The account went away between RCPT and delivery.
                    tracing::error!("delivery: {id}: to=<{rcpt}> status=failed (no such recipient: {resolution:?})");
                }
            }
        }
        if deferred {
            return Outcome::Deferred;
        }
        if let Err(e) = self.spool.remove(id) {
            tracing::error!("delivery: {id}: cannot remove from queue: {e}");
            return Outcome::Deferred;
        }
        tracing::info!("delivery: {id}: removed from queue");
        Outcome::Done
    }
}
