//! The queue runner: takes messages out of the spool and gets each recipient to its end —
//! a local Maildir (MDA), a forwarding target (a new message through the queue), or another
//! domain's MTA ([`crate::relay`]) — with retries on a schedule and bounces (RFC 3464 DSNs,
//! [`crate::bounce`]) for what cannot be delivered.
//!
//! Local delivery is exactly-once in practice: the Maildir file name of a copy is derived from
//! the queue id and the copy's number, so after a crash a second attempt finds the copy and
//! skips it. Per-recipient results of messages that are not finished in one attempt are kept
//! in the spool's state log, so retries, `mailroom queue list` and restarts see them. A
//! message entirely delivered in its first attempt writes no state at all (the common, fast
//! path). A DSN goes to the envelope sender for permanent failures, for temporary ones older
//! than `max_queue_lifetime`, and once as a "delayed" warning; never for the null sender.
//! Not here: reading a client socket, or anything of SMTP's wire format.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use store::directory::{Account, Directory, DirectoryError, Resolution};
use store::maildir::{maildir_path, Maildir};
use store::queue_status::MessageStatus;
use store::spool::{Body, Envelope, Origin, Spool};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinSet;

use crate::bounce;
use crate::forward_failures::ForwardFailures;
use crate::relay::{MessageBody, RcptResult, Relay};
use crate::stopped;

/// The queue runner's settings and handles.
pub struct Delivery {
    pub directory: Arc<Directory>,
    pub spool: Arc<Spool>,
    pub data_dir: PathBuf,
    pub hostname: String,
    pub postmaster: Option<String>,
    /// Messages delivered at the same time.
    pub concurrency: usize,
    /// Delivery to other domains; `None` keeps remote recipients queued.
    pub relay: Option<Arc<Relay>>,
    /// Pauses between attempts; the last one repeats.
    pub retry_schedule: Vec<Duration>,
    /// Temporary failures older than this are bounced.
    pub max_queue_lifetime: Duration,
    /// One "delayed" DSN after this long; `None` disables.
    pub delay_warning_after: Option<Duration>,
    /// New messages made here (forwarding copies, DSNs) go back to the runner through this.
    pub resubmit: mpsc::UnboundedSender<String>,
    /// Remote addresses that refused mail permanently (shared with the RCPT policy).
    pub forward_failures: Arc<ForwardFailures>,
}

/// How one attempt at a message ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every recipient is done or bounced; the message left the spool.
    Done,
    /// Some recipients must be tried again after this pause.
    Deferred(Duration),
}

/// The file `mailroom queue flush` writes: ids to retry now, one per line, or `*`.
pub fn flush_marker(data_dir: &Path) -> PathBuf {
    data_dir.join("queue").join("flush")
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// One recipient's result in this attempt.
enum Result1 {
    Done(String),
    Deferred(String),
    Failed {
        status: String,
        reply: String,
        remote_mta: Option<String>,
    },
}

impl Delivery {
    /// Runs until `shutdown`: delivers what the spool holds at start, each id that arrives on
    /// `queued`, and retries deferred messages when due (or when `queue flush` asks). Returns
    /// when the running attempts have finished.
    pub async fn run(
        self: Arc<Self>,
        mut queued: mpsc::UnboundedReceiver<String>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let slots = Arc::new(Semaphore::new(self.concurrency));
        let mut in_flight: HashSet<String> = HashSet::new();
        let mut due: HashMap<String, Instant> = HashMap::new();
        let mut tasks: JoinSet<(String, Outcome)> = JoinSet::new();
        // Recovery: everything acknowledged and not yet delivered is due now.
        match self.spool.list() {
            Ok(ids) => {
                for id in ids {
                    due.insert(id, Instant::now());
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
                    self.read_flush(&mut due);
                    let now = Instant::now();
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
                    if let Ok((id, outcome)) = done {
                        in_flight.remove(&id);
                        if let Outcome::Deferred(after) = outcome {
                            due.insert(id, Instant::now() + after);
                        }
                    }
                }
                _ = stopped(&mut shutdown) => break,
            }
        }
        while tasks.join_next().await.is_some() {}
    }

    /// `mailroom queue flush` left a marker: make those messages (or all) due now.
    fn read_flush(&self, due: &mut HashMap<String, Instant>) {
        let marker = flush_marker(&self.data_dir);
        let Ok(text) = std::fs::read_to_string(&marker) else {
            return;
        };
        let _ = std::fs::remove_file(&marker);
        let now = Instant::now();
        let ids: Vec<String> = if text.lines().any(|l| l.trim() == "*") {
            self.spool.list().unwrap_or_default()
        } else {
            text.lines()
                .map(|l| l.trim().to_string())
                .filter(|l| !l.is_empty())
                .collect()
        };
        tracing::info!("delivery: queue flush asked for {} message(s)", ids.len());
        for id in ids {
            due.insert(id, now);
        }
    }

    async fn attempt_task(
        self: Arc<Self>,
        id: String,
        retry: bool,
        slots: Arc<Semaphore>,
    ) -> (String, Outcome) {
        let Ok(_slot) = slots.acquire_owned().await else {
            return (id, Outcome::Deferred(Duration::from_secs(60)));
        };
        let outcome = self.attempt(&id, retry).await;
        (id, outcome)
    }

    fn retry_after(&self, attempts: u32) -> Duration {
        let i = (attempts as usize)
            .saturating_sub(1)
            .min(self.retry_schedule.len().saturating_sub(1));
        self.retry_schedule
            .get(i)
            .copied()
            .unwrap_or(Duration::from_secs(300))
    }

    /// One attempt at one message. `retry`: an earlier attempt may have delivered some copies
    /// already, so look before writing.
    pub async fn attempt(self: &Arc<Self>, id: &str, retry: bool) -> Outcome {
        let started = Instant::now();
        let this = self.clone();
        let id2 = id.to_string();
        let loaded = tokio::task::spawn_blocking(move || {
            // The envelope only: the message is streamed from the file by each delivery.
            let (env, msg) = this.spool.open_message(&id2)?;
            let log = this.spool.attempts(&id2)?;
            Ok::<_, std::io::Error>((env, msg, log))
        })
        .await;
        let (env, message, log) = match loaded {
            Ok(Ok(x)) => x,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => return Outcome::Done,
            Ok(Err(e)) => {
                tracing::error!("delivery: {id}: cannot read queue file: {e}");
                return Outcome::Deferred(self.retry_after(1));
            }
            Err(e) => {
                tracing::error!("delivery: {id}: reader failed: {e}");
                return Outcome::Deferred(self.retry_after(1));
            }
        };
        let status = MessageStatus::from_log(env.recipients.len(), &log);
        let now = unix_now();
        let age = Duration::from_secs(now.saturating_sub(env.received));
        let pending = status.pending();
        let mut results: BTreeMap<usize, Result1> = BTreeMap::new();

        if status.bounce_requested {
            for &i in &pending {
                results.insert(
                    i,
                    Result1::Failed {
                        status: "5.0.0".into(),
                        reply: "message bounced by the administrator".into(),
                        remote_mta: None,
                    },
                );
            }
        } else {
            self.route_and_deliver(id, &env, &message, &pending, retry, &mut results)
                .await;
        }

        // Temporary failures past the queue lifetime become permanent (RFC 5321 §4.5.4.1).
        if age >= self.max_queue_lifetime {
            for r in results.values_mut() {
                if let Result1::Deferred(reply) = r {
                    *r = Result1::Failed {
                        status: "4.4.7".into(),
                        reply: format!(
                            "message expired after {}s in the queue: {reply}",
                            age.as_secs()
                        ),
                        remote_mta: None,
                    };
                }
            }
        }
        let deferred_left = results.values().any(|r| matches!(r, Result1::Deferred(_)));
        self.send_dsn(id, &env, &message, &results, &status, age, now)
            .await;

        if !deferred_left {
            // Finished: nothing to record, the message leaves the queue.
            let spool = self.spool.clone();
            let id2 = id.to_string();
            match tokio::task::spawn_blocking(move || spool.remove(&id2)).await {
                Ok(Ok(())) | Ok(Err(_)) => {}
                Err(e) => tracing::error!("delivery: {id}: remover failed: {e}"),
            }
            tracing::info!(
                "delivery: {id}: removed from queue ({:.3}s)",
                started.elapsed().as_secs_f64()
            );
            return Outcome::Done;
        }
        // Partly finished: keep every result in the state log.
        let spool = self.spool.clone();
        let id2 = id.to_string();
        let lines: Vec<(usize, &'static str, String)> = results
            .iter()
            .map(|(i, r)| match r {
                Result1::Done(d) => (*i, "done", d.clone()),
                Result1::Deferred(d) => (*i, "deferred", d.clone()),
                Result1::Failed { status, reply, .. } => {
                    (*i, "failed", format!("{status} {reply}"))
                }
            })
            .collect();
        let _ = tokio::task::spawn_blocking(move || {
            for (i, state, detail) in lines {
                if let Err(e) = spool.record_attempt(&id2, i, state, &detail) {
                    tracing::error!("delivery: {id2}: cannot record state: {e}");
                }
            }
        })
        .await;
        let after = self.retry_after(status.attempts() + 1);
        tracing::info!(
            "delivery: {id}: deferred, next attempt in {}s",
            after.as_secs()
        );
        Outcome::Deferred(after)
    }

    /// Resolves each pending recipient and delivers: locally, by forwarding, or by relay.
    async fn route_and_deliver(
        self: &Arc<Self>,
        id: &str,
        env: &Envelope,
        message: &Body,
        pending: &[usize],
        retry: bool,
        results: &mut BTreeMap<usize, Result1>,
    ) {
        // Copy numbers are counted over all recipients in order, so they stay the same in
        // every attempt and a retry recognises copies written before.
        let mut copies: Vec<String> = Vec::new();
        let mut local: Vec<(usize, Account, usize)> = Vec::new();
        let mut forwards: Vec<(usize, Vec<String>)> = Vec::new();
        let mut remote: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for (i, rcpt) in env.recipients.iter().enumerate() {
            let is_pending = pending.contains(&i);
            match self.directory.resolve(rcpt, self.postmaster.as_deref()) {
                Ok(Resolution::Deliver {
                    local: accounts,
                    remote: targets,
                }) => {
                    for account in accounts {
                        let key = account.address.to_lowercase();
                        if copies.contains(&key) {
                            continue;
                        }
                        copies.push(key);
                        if is_pending {
                            local.push((i, account, copies.len() - 1));
                        }
                    }
                    if is_pending {
                        results.insert(i, Result1::Done("delivered".into()));
                        if !targets.is_empty() {
                            forwards.push((i, targets));
                        }
                    }
                }
                _ if !is_pending => {}
                Ok(Resolution::NotLocal) => {
                    let domain = rcpt
                        .rsplit_once('@')
                        .map(|(_, d)| d.to_lowercase())
                        .unwrap_or_default();
                    remote.entry(domain).or_default().push(i);
                }
                Ok(Resolution::Unknown) => {
                    results.insert(
                        i,
                        Result1::Failed {
                            status: "5.1.1".into(),
                            reply: "no such user here".into(),
                            remote_mta: None,
                        },
                    );
                }
                Ok(Resolution::Loop) => {
                    results.insert(
                        i,
                        Result1::Failed {
                            status: "5.4.6".into(),
                            reply: "alias expansion loops".into(),
                            remote_mta: None,
                        },
                    );
                }
                Err(DirectoryError::InvalidAddress(e)) => {
                    results.insert(
                        i,
                        Result1::Failed {
                            status: "5.1.3".into(),
                            reply: format!("bad address: {e}"),
                            remote_mta: None,
                        },
                    );
                }
                Err(e) => {
                    tracing::error!("delivery: {id}: to=<{rcpt}> status=deferred (directory: {e})");
                    results.insert(i, Result1::Deferred(format!("directory unavailable: {e}")));
                }
            }
        }

        // Local copies (blocking file I/O, one thread for the lot).
        if !local.is_empty() {
            let this = self.clone();
            let env2 = env.clone();
            let msg = message.clone();
            let id2 = id.to_string();
            let failed: Vec<(usize, String)> = tokio::task::spawn_blocking(move || {
                this.deliver_local(&id2, &env2, &msg, &local, retry)
            })
            .await
            .unwrap_or_default();
            for (i, why) in failed {
                results.insert(i, Result1::Deferred(why));
            }
        }

        // Forwarding: a new message through the queue, same sender, for the remote targets.
        // A sender we have not verified gets no DSN about the forwarded copy: the address may
        // be forged, and the bounce would be backscatter.
        for (i, targets) in forwards {
            let new_id = store::spool::new_id();
            let client = format!("forward of {id}");
            let origin = Origin {
                client: &client,
                sender_verified: env.sender_verified,
                notify_never: env.notify_never || !env.sender_verified,
            };
            let res = self
                .spool
                .enqueue_body(
                    &new_id,
                    &env.sender,
                    &targets,
                    &origin,
                    unix_now(),
                    b"",
                    message,
                )
                .await;
            match res {
                Ok(()) => {
                    tracing::info!(
                        "delivery: {id}: to=<{}> status=forwarded as {new_id} to {}",
                        env.recipients[i],
                        targets.join(", ")
                    );
                    let _ = self.resubmit.send(new_id);
                }
                Err(e) => {
                    results.insert(
                        i,
                        Result1::Deferred(format!("cannot queue forwarded copy: {e}")),
                    );
                }
            }
        }

        // Other domains, one relay transaction per domain.
        for (domain, indexes) in remote {
            let Some(relay) = &self.relay else {
                for i in indexes {
                    results.insert(
                        i,
                        Result1::Deferred("relay to other domains is disabled".into()),
                    );
                }
                continue;
            };
            let rcpts: Vec<String> = indexes.iter().map(|&i| env.recipients[i].clone()).collect();
            let attempt_started = Instant::now();
            let body = MessageBody::from(message.clone());
            let outcomes = relay
                .deliver_body(&domain, &env.sender, &rcpts, &body)
                .await;
            // delay: since the message arrived; attempt: this delivery attempt alone.
            let delay = unix_now().saturating_sub(env.received);
            let took = attempt_started.elapsed().as_secs_f64();
            for (&i, rcpt) in indexes.iter().zip(&rcpts) {
                let outcome = outcomes.iter().find(|o| &o.recipient == rcpt);
                let r = match outcome {
                    Some(o) => {
                        let mx = o.mx.clone().unwrap_or_else(|| "-".into());
                        match &o.result {
                            RcptResult::Delivered { reply } => {
                                tracing::info!("delivery: {id}: to=<{rcpt}> relay={mx} tls={} delay={delay}s attempt={took:.3}s status=sent ({reply})", o.tls);
                                Result1::Done(format!("{mx}: {reply}"))
                            }
                            RcptResult::Deferred { reply } => {
                                tracing::warn!("delivery: {id}: to=<{rcpt}> relay={mx} tls={} delay={delay}s attempt={took:.3}s status=deferred ({reply})", o.tls);
                                Result1::Deferred(reply.clone())
                            }
                            RcptResult::Failed { status, reply } => {
                                if ForwardFailures::is_address_failure(status) {
                                    self.forward_failures.record(rcpt, reply, Instant::now());
                                }
                                tracing::warn!("delivery: {id}: to=<{rcpt}> relay={mx} tls={} delay={delay}s attempt={took:.3}s status=bounced ({reply})", o.tls);
                                Result1::Failed {
                                    status: status.clone(),
                                    reply: reply.clone(),
                                    remote_mta: o.mx.clone(),
                                }
                            }
                        }
                    }
                    None => Result1::Deferred("no result from relay".into()),
                };
                results.insert(i, r);
            }
        }
    }

    /// The fast path for mail whose every recipient is a local account (no forwarding, no
    /// relay): writes each account's copy straight into its Maildir at commit time, with the
    /// same names, headers and durability (file and directory fsynced) as the queue runner,
    /// and no spool copy at all. `Ok(true)`: delivered, the caller may answer 250.
    /// `Ok(false)`: some recipient needs the queue; nothing was written. `Err`: a write failed
    /// and the copies already written were removed: the caller answers 4xx.
    pub fn deliver_direct(
        &self,
        id: &str,
        sender: &str,
        recipients: &[String],
        received: u64,
        parts: &[&[u8]],
    ) -> std::io::Result<bool> {
        let mut copies: Vec<(usize, Account)> = Vec::new();
        let mut keys: Vec<String> = Vec::new();
        for (i, rcpt) in recipients.iter().enumerate() {
            match self.directory.resolve(rcpt, self.postmaster.as_deref()) {
                Ok(Resolution::Deliver { local, remote })
                    if remote.is_empty() && !local.is_empty() =>
                {
                    for account in local {
                        let key = account.address.to_lowercase();
                        if !keys.contains(&key) {
                            keys.push(key);
                            copies.push((i, account));
                        }
                    }
                }
                _ => return Ok(false),
            }
        }
        let return_path = proto::smtp::received::return_path_header(sender);
        let size = return_path.len() as u64 + parts.iter().map(|p| p.len() as u64).sum::<u64>();
        let mut all: Vec<&[u8]> = Vec::with_capacity(parts.len() + 1);
        all.push(return_path.as_bytes());
        all.extend_from_slice(parts);
        let mut written: Vec<(Maildir, std::path::PathBuf)> = Vec::new();
        for (n, (i, account)) in copies.iter().enumerate() {
            let result =
                self.copy_target(id, account, n, received, size)
                    .and_then(|(maildir, name)| {
                        maildir.deliver(&name, &all).map(|path| (maildir, path))
                    });
            match result {
                Ok(copy) => {
                    tracing::info!(
                        "delivery: {id}: to=<{}> mailbox={} status=sent (direct)",
                        recipients[*i],
                        account.address
                    );
                    written.push(copy);
                }
                Err(e) => {
                    tracing::error!(
                        "delivery: {id}: to=<{}> mailbox={} direct delivery failed: {e}",
                        recipients[*i],
                        account.address
                    );
                    for (maildir, path) in written {
                        if let Err(e) = maildir.withdraw(&path) {
                            tracing::error!(
                                "delivery: {id}: cannot take back {}: {e}",
                                path.display()
                            );
                        }
                    }
                    return Err(e);
                }
            }
        }
        Ok(true)
    }

    /// Where copy `n` of message `id` goes for `account`: its Maildir and file name. Both
    /// delivery paths use it, so a retry after a crash recognises a copy either path wrote.
    fn copy_target(
        &self,
        id: &str,
        account: &Account,
        n: usize,
        received: u64,
        size: u64,
    ) -> std::io::Result<(Maildir, String)> {
        let name = Maildir::file_name(received, &format!("Q{id}R{n}"), &self.hostname, size)?;
        Ok((
            Maildir::with_disk(maildir_path(&self.data_dir, account), self.spool.disk()),
            name,
        ))
    }

    /// Writes the local copies; returns the recipients that must be retried, with why.
    fn deliver_local(
        &self,
        id: &str,
        env: &Envelope,
        message: &Body,
        copies: &[(usize, Account, usize)],
        retry: bool,
    ) -> Vec<(usize, String)> {
        let started = Instant::now();
        let return_path = proto::smtp::received::return_path_header(&env.sender);
        let size = return_path.len() as u64 + message.len();
        let mut failed = Vec::new();
        for (i, account, n) in copies {
            let rcpt = &env.recipients[*i];
            let (maildir, name) = match self.copy_target(id, account, *n, env.received, size) {
                Ok(target) => target,
                Err(e) => {
                    failed.push((*i, format!("bad maildir name: {e}")));
                    continue;
                }
            };
            if retry && maildir.contains(&name).unwrap_or(false) {
                tracing::info!(
                    "delivery: {id}: to=<{rcpt}> mailbox={} status=sent (already delivered)",
                    account.address
                );
                continue;
            }
            let mut copy = std::io::Read::chain(return_path.as_bytes(), message.reader());
            match maildir.deliver_from(&name, &mut copy) {
                Ok(_) => tracing::info!(
                    "delivery: {id}: to=<{rcpt}> mailbox={} status=sent delay={:.3}s",
                    account.address,
                    started.elapsed().as_secs_f64()
                ),
                // Only when the copy really is there: EEXIST also comes from a Maildir path
                // that is a file, and then nothing was delivered.
                Err(e)
                    if e.kind() == std::io::ErrorKind::AlreadyExists
                        && maildir.contains(&name).unwrap_or(false) =>
                {
                    tracing::info!(
                        "delivery: {id}: to=<{rcpt}> mailbox={} status=sent (already delivered)",
                        account.address
                    );
                }
                Err(e) => {
                    tracing::error!(
                        "delivery: {id}: to=<{rcpt}> mailbox={} status=deferred ({e})",
                        account.address
                    );
                    failed.push((*i, format!("local delivery failed: {e}")));
                }
            }
        }
        failed
    }

    /// Sends the failure DSN for recipients that failed now, and the one "delayed" warning.
    #[allow(clippy::too_many_arguments)]
    async fn send_dsn(
        &self,
        id: &str,
        env: &Envelope,
        message: &Body,
        results: &BTreeMap<usize, Result1>,
        status: &MessageStatus,
        age: Duration,
        now: u64,
    ) {
        if env.notify_never {
            let failed = results
                .values()
                .filter(|r| matches!(r, Result1::Failed { .. }))
                .count();
            if failed > 0 {
                tracing::info!(
                    "delivery: {id}: no DSN for {failed} failed recipient(s): forwarded mail from an unverified sender"
                );
            }
            return;
        }
        let failed: Vec<bounce::RecipientStatus> = results
            .iter()
            .filter_map(|(i, r)| match r {
                Result1::Failed {
                    status,
                    reply,
                    remote_mta,
                } => Some(bounce::RecipientStatus {
                    recipient: env.recipients[*i].clone(),
                    original: None,
                    action: bounce::Action::Failed,
                    status: status.clone(),
                    remote_mta: remote_mta.clone(),
                    diagnostic: Some(reply.clone()),
                    last_attempt: Some(now as i64),
                    will_retry_until: None,
                }),
                _ => None,
            })
            .collect();
        if !failed.is_empty() {
            self.enqueue_dsn(id, env, message, &failed, now).await;
        }
        let warn = self.delay_warning_after.is_some_and(|d| age >= d) && !status.warned;
        let delayed: Vec<bounce::RecipientStatus> = results
            .iter()
            .filter_map(|(i, r)| match r {
                Result1::Deferred(reply) if warn => Some(bounce::RecipientStatus {
                    recipient: env.recipients[*i].clone(),
                    original: None,
                    action: bounce::Action::Delayed,
                    status: "4.0.0".into(),
                    remote_mta: None,
                    diagnostic: Some(reply.clone()),
                    last_attempt: Some(now as i64),
                    will_retry_until: Some(
                        (env.received + self.max_queue_lifetime.as_secs()) as i64,
                    ),
                }),
                _ => None,
            })
            .collect();
        if !delayed.is_empty() {
            self.enqueue_dsn(id, env, message, &delayed, now).await;
            let spool = self.spool.clone();
            let id2 = id.to_string();
            let _ =
                tokio::task::spawn_blocking(move || spool.record_attempt(&id2, 0, "warned", ""))
                    .await;
        }
    }

    async fn enqueue_dsn(
        &self,
        id: &str,
        env: &Envelope,
        message: &Body,
        rcpts: &[bounce::RecipientStatus],
        now: u64,
    ) {
        // The report copies only the header block: read no more than it can hold.
        let body = message.clone();
        let head = tokio::task::spawn_blocking(move || body.head(bounce::MAX_HEADERS + 4))
            .await
            .map_err(std::io::Error::other)
            .and_then(|r| r);
        let message = match head {
            Ok(head) => head,
            Err(e) => {
                tracing::error!("delivery: {id}: cannot read the headers for a DSN: {e}");
                Vec::new()
            }
        };
        let message = &message[..];
        let report = bounce::build(&bounce::Bounce {
            reporting_mta: &self.hostname,
            queue_id: id,
            sender: &env.sender,
            arrival_date: env.received as i64,
            now: now as i64,
            recipients: rcpts,
            original_message: message,
        });
        let Some(report) = report else {
            // RFC 3464: never a DSN to the null sender.
            tracing::info!("delivery: {id}: no DSN: null sender");
            return;
        };
        let dsn_id = store::spool::new_id();
        let sender = [env.sender.clone()];
        match self
            .spool
            .enqueue(
                &dsn_id,
                "",
                &sender,
                &Origin::client(&format!("dsn for {id}")),
                now,
                &[&report],
            )
            .await
        {
            Ok(()) => {
                tracing::info!(
                    "delivery: {id}: sender non-delivery notification: {dsn_id} to=<{}>",
                    env.sender
                );
                let _ = self.resubmit.send(dsn_id);
            }
            Err(e) => tracing::error!("delivery: {id}: cannot queue DSN: {e}"),
        }
    }
}

/// Asks a running server to retry these messages (all when `ids` is empty) at its next tick:
/// appends to the flush marker the runner reads. Used by `mailroom queue flush`.
pub fn write_flush_marker(data_dir: &Path, ids: &[String]) -> std::io::Result<()> {
    use std::io::Write;
    let text = if ids.is_empty() {
        "*\n".to_string()
    } else {
        ids.join("\n") + "\n"
    };
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(flush_marker(data_dir))?;
    f.write_all(text.as_bytes())
}
