//! One attempt at one queued message, in three steps so the runner can schedule the middle one
//! per destination: [`Runner::prepare`] reads the envelope, routes the pending recipients
//! (`mda::router`), writes the local copies (`mda::Mda`), queues forwarded copies as new
//! messages and returns the remote work, one [`RemoteWork`] per domain;
//! [`Runner::deliver_remote`] hands one domain's recipients to the relay (the message is
//! streamed from the spool file, or sent from memory when the first step kept it,
//! [`super::held`]); [`Runner::finish`] applies expiry, tells the sender
//! ([`super::dsn`]) and records each recipient's [`Outcome`] in the state log, or removes the
//! message. [`Runner::attempt`] runs the three in a row (tests, and a message's whole attempt
//! without the scheduler).
//!
//! Exactly once, locally: copy names come from the queue id and copy number, and a message
//! with any history (a retry, a restart, a direct delivery that was partly done) looks for
//! each copy before writing it. Not here: when attempts happen ([`super::runner`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mda::mda::{CopyOf, CopyResult};
use store::forward_failures::ForwardFailures;
use store::outcome::{Entry, Outcome};
use store::queue_status::MessageStatus;
use store::spool::{Body, Envelope, Origin};

use super::held::Held;
use super::runner::{Runner, Verdict};
use super::schedule::Feedback;
use crate::relay::MessageBody;

/// Per recipient (envelope index), what this attempt did.
pub type Results = BTreeMap<usize, Outcome>;

/// A message between [`Runner::prepare`] and [`Runner::finish`].
#[derive(Debug)]
pub struct InProgress {
    pub id: String,
    pub env: Envelope,
    status: MessageStatus,
    /// Per recipient, what happened so far in this attempt.
    pub results: Results,
    started: Instant,
    /// The message itself when it is small enough to keep for the remote step (`held`).
    held: Option<Held>,
}

impl InProgress {
    /// The message for [`Runner::deliver_remote`], when this attempt holds it in memory.
    pub fn held_body(&self) -> Option<MessageBody> {
        self.held.as_ref().map(Held::body)
    }
}

/// One destination's share of a message: the recipients (envelope indexes) in `domain`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteWork {
    pub id: String,
    pub domain: String,
    pub rcpts: Vec<usize>,
}

impl Runner {
    /// One attempt at one message: prepare, every domain's remote delivery in turn, finish.
    /// `retry`: an earlier attempt may have written some copies already, so look before
    /// writing (also done whenever the state log has entries).
    pub async fn attempt(self: &Arc<Self>, id: &str, retry: bool) -> Verdict {
        let (mut msg, remote) = match self.prepare(id, retry).await {
            Ok(x) => x,
            Err(verdict) => return verdict,
        };
        for work in remote {
            let (outcomes, _) = self.deliver_remote(&work, &msg.env, msg.held_body()).await;
            msg.results.extend(outcomes);
        }
        self.finish(msg).await
    }

    /// Step 1: read the envelope and the state log, route the pending recipients, write local
    /// copies and queue forwards. `Err` when there is nothing to do (the message is gone) or it
    /// cannot be read.
    pub async fn prepare(
        self: &Arc<Self>,
        id: &str,
        retry: bool,
    ) -> Result<(InProgress, Vec<RemoteWork>), Verdict> {
        let started = Instant::now();
        let (env, message, log, held) = self.open(id).await?;
        let retry = retry || !log.is_empty();
        let status = MessageStatus::from_log(env.recipients.len(), &log);
        let pending = status.pending();
        let mut results = Results::new();
        let mut remote = Vec::new();
        if status.bounce_requested {
            for &i in &pending {
                results.insert(
                    i,
                    Outcome::failed("5.0.0", "message bounced by the administrator"),
                );
            }
        } else {
            remote = self
                .route_and_deliver(id, &env, &message, &pending, retry, &mut results)
                .await;
        }
        let msg = InProgress {
            id: id.to_string(),
            env,
            status,
            results,
            started,
            held,
        };
        Ok((msg, remote))
    }

    /// The envelope, the message, the state log, and the message's bytes when it is small
    /// enough to hold until the remote step ([`Held`]); `Err` with what to do when that fails.
    #[allow(clippy::type_complexity)]
    async fn open(
        self: &Arc<Self>,
        id: &str,
    ) -> Result<(Envelope, Body, Vec<Entry>, Option<Held>), Verdict> {
        let this = self.clone();
        let id2 = id.to_string();
        let loaded = tokio::task::spawn_blocking(move || {
            // A larger message is streamed from the file by each delivery.
            let (env, msg) = this.spool.open_message(&id2)?;
            let log = this.spool.log(&id2)?;
            let held = Held::load(&msg)?;
            Ok::<_, std::io::Error>((env, msg, log, held))
        })
        .await;
        match loaded {
            Ok(Ok(x)) => Ok(x),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => Err(Verdict::Done),
            Ok(Err(e)) => {
                tracing::error!("delivery: {id}: cannot read queue file: {e}");
                Err(Verdict::Deferred(self.retry.pause_after(1)))
            }
            Err(e) => {
                tracing::error!("delivery: {id}: reader failed: {e}");
                Err(Verdict::Deferred(self.retry.pause_after(1)))
            }
        }
    }

    /// The message bytes only (the later steps: the envelope is in hand, the log not needed).
    async fn open_body(self: &Arc<Self>, id: &str) -> std::io::Result<Body> {
        let (spool, id) = (self.spool.clone(), id.to_string());
        tokio::task::spawn_blocking(move || spool.open_message(&id).map(|(_, body)| body))
            .await
            .map_err(std::io::Error::other)?
    }

    /// Step 2: one domain's recipients of one message, through the relay. Returns each
    /// recipient's outcome and what the attempt says about the destination's health.
    pub async fn deliver_remote(
        self: &Arc<Self>,
        work: &RemoteWork,
        env: &Envelope,
        held: Option<MessageBody>,
    ) -> (Vec<(usize, Outcome)>, Feedback) {
        let id = &work.id;
        let defer_all = |why: &str| {
            let outcomes = work
                .rcpts
                .iter()
                .map(|&i| (i, Outcome::deferred(why)))
                .collect();
            (outcomes, Feedback::Neutral)
        };
        let Some(relay) = &self.relay else {
            return defer_all("relay to other domains is disabled");
        };
        let body = match held {
            Some(body) => body,
            None => {
                let (spool, id2) = (self.spool.clone(), id.to_string());
                let loaded = tokio::task::spawn_blocking(move || {
                    MessageBody::load(spool.open_message(&id2)?.1)
                })
                .await;
                let Ok(Ok(body)) = loaded else {
                    return defer_all("cannot read the queued message");
                };
                body
            }
        };
        let rcpts: Vec<String> = work
            .rcpts
            .iter()
            .map(|&i| env.recipients[i].clone())
            .collect();
        let attempt_started = Instant::now();
        let attempt = relay
            .attempt_tls(&work.domain, &env.sender, &rcpts, &body, env.require_tls)
            .await;
        // delay: since the message arrived; attempt: this delivery attempt alone.
        let delay = self.clock.unix().saturating_sub(env.received);
        let took = attempt_started.elapsed().as_secs_f64();
        let mut out = Vec::with_capacity(rcpts.len());
        for (&i, rcpt) in work.rcpts.iter().zip(&rcpts) {
            let outcome = attempt.outcomes.iter().find(|o| &o.recipient == rcpt);
            let r = match outcome {
                Some(o) => {
                    let mx = o.mx.clone().unwrap_or_else(|| "-".into());
                    match &o.result {
                        Outcome::Delivered { detail } => {
                            delivery_line(id, rcpt, o, "sent", "2.0.0", detail, delay, took);
                            Outcome::Delivered {
                                detail: format!("{mx}: {detail}"),
                            }
                        }
                        Outcome::Deferred { reply, .. } => {
                            let dsn = dsn_of(reply, "4.0.0");
                            delivery_line(id, rcpt, o, "deferred", &dsn, reply, delay, took);
                            Outcome::deferred(reply.clone())
                        }
                        Outcome::Failed { status, reply, .. } => {
                            if ForwardFailures::is_address_failure(status) {
                                self.forward_failures
                                    .record(rcpt, reply, self.clock.instant());
                            }
                            delivery_line(id, rcpt, o, "bounced", status, reply, delay, took);
                            Outcome::Failed {
                                status: status.clone(),
                                reply: reply.clone(),
                                remote_mta: o.mx.clone(),
                            }
                        }
                    }
                }
                None => Outcome::deferred("no result from relay"),
            };
            out.push((i, r));
        }
        (out, attempt.feedback)
    }

    /// Step 3: expiry, reports to the sender, then the message leaves the queue or its results
    /// are recorded for the next attempt.
    pub async fn finish(self: &Arc<Self>, msg: InProgress) -> Verdict {
        let InProgress {
            id,
            env,
            status,
            mut results,
            started,
            held,
        } = msg;
        // The remote steps are over: give the bytes and their budget back before the DSN work.
        drop(held);
        let id = id.as_str();
        let now = self.clock.unix();
        let age = Duration::from_secs(now.saturating_sub(env.received));
        // Temporary failures past the queue lifetime become permanent (RFC 5321 §4.5.4.1).
        if self.retry.expired(age) {
            for (i, r) in results.iter_mut() {
                if let Outcome::Deferred { reply, .. } = r {
                    let dsn = super::retry::expired_status(&dsn_of(reply, "4.0.0"));
                    tracing::warn!(
                        to = %format!("<{}>", env.recipients[*i]),
                        delay = age.as_secs(),
                        dsn,
                        status = "expired",
                        reply = %reply,
                        "delivery: {id}:"
                    );
                    metrics::global().delivered("expired", "remote");
                    *r = Outcome::failed(
                        dsn,
                        format!(
                            "message expired after {}s in the queue: {reply}",
                            age.as_secs()
                        ),
                    );
                }
            }
        }
        let deferred_left = results.values().any(Outcome::is_deferred);
        if results
            .values()
            .any(|r| !matches!(r, Outcome::Delivered { .. }))
        {
            // A report needs the headers: reopen the message (it may be gone if removed).
            if let Ok(body) = self.open_body(id).await {
                self.send_dsn(id, &env, &body, &results, &status, age, now)
                    .await;
            }
        }

        if !deferred_left {
            // Finished: nothing to record, the message leaves the queue.
            let spool = self.spool.clone();
            let id2 = id.to_string();
            match tokio::task::spawn_blocking(move || spool.remove_delivered(&id2)).await {
                Ok(Ok(())) | Ok(Err(_)) => {}
                Err(e) => tracing::error!("delivery: {id}: remover failed: {e}"),
            }
            tracing::info!(
                took = %format!("{:.3}s", started.elapsed().as_secs_f64()),
                "delivery: {id}: removed"
            );
            return Verdict::Done;
        }
        // Partly finished: keep every result in the state log, deferrals with their time.
        let after = self.retry.pause_after(status.attempts() + 1);
        let next = now + after.as_secs();
        let entries: Vec<Entry> = results
            .into_iter()
            .map(|(i, o)| match o {
                Outcome::Deferred { reply, .. } => Entry::Rcpt(
                    i,
                    Outcome::Deferred {
                        reply,
                        next_attempt: Some(next),
                    },
                ),
                o => Entry::Rcpt(i, o),
            })
            .collect();
        let spool = self.spool.clone();
        let id2 = id.to_string();
        let _ = tokio::task::spawn_blocking(move || {
            for e in entries {
                if let Err(err) = spool.record(&id2, &e) {
                    tracing::error!("delivery: {id2}: cannot record state: {err}");
                }
            }
        })
        .await;
        tracing::info!(
            next_attempt = %format!("{}s", after.as_secs()),
            "delivery: {id}: deferred"
        );
        Verdict::Deferred(after)
    }

    /// Routes each pending recipient and delivers locally and by forwarding; returns the remote
    /// work, one piece per domain.
    async fn route_and_deliver(
        self: &Arc<Self>,
        id: &str,
        env: &Envelope,
        message: &Body,
        pending: &[usize],
        retry: bool,
        results: &mut Results,
    ) -> Vec<RemoteWork> {
        let route = mda::route(
            &env.recipients,
            |i| pending.contains(&i),
            |r| self.directory.resolve(r, self.postmaster.as_deref()),
        );
        for (i, outcome) in route.settled {
            if let Outcome::Deferred { reply, .. } = &outcome {
                tracing::error!(
                    to = %format!("<{}>", env.recipients[i]),
                    relay = "local",
                    dsn = %dsn_of(reply, "4.0.0"),
                    status = "deferred",
                    reply = %reply,
                    "delivery: {id}:"
                );
            }
            results.insert(i, outcome);
        }
        // Every pending recipient with a local copy or a forward is delivered unless one of
        // its copies or forwards fails below.
        for copy in &route.copies {
            for &i in &copy.rcpts {
                results.insert(
                    i,
                    Outcome::Delivered {
                        detail: "delivered".into(),
                    },
                );
            }
        }
        for (i, _) in &route.forwards {
            results.entry(*i).or_insert(Outcome::Delivered {
                detail: "forwarded".into(),
            });
        }

        // Local copies (blocking file I/O, one thread for the lot).
        if !route.copies.is_empty() {
            let mda = self.mda();
            let (env2, msg, id2) = (env.clone(), message.clone(), id.to_string());
            let copies = route.copies.clone();
            let delay = self.clock.unix().saturating_sub(env.received);
            let failed: Vec<(Vec<usize>, String)> = tokio::task::spawn_blocking(move || {
                let started = Instant::now();
                let return_path = proto::smtp::received::return_path_header(&env2.sender);
                let mut failed = Vec::new();
                for copy in copies {
                    let rcpt = &env2.recipients[copy.rcpts[0]];
                    let rp = return_path.as_bytes();
                    let which = CopyOf {
                        id: &id2,
                        account: &copy.account,
                        n: copy.n,
                        received: env2.received,
                    };
                    match mda.write_body(&which, rp, &msg, retry) {
                        Ok(CopyResult::Written(_)) => {
                            metrics::global().delivered("sent", "local");
                            tracing::info!(
                                to = %format!("<{rcpt}>"),
                                relay = "local",
                                mailbox = %copy.account.address,
                                delay,
                                attempt = %format!("{:.3}s", started.elapsed().as_secs_f64()),
                                dsn = "2.0.0",
                                status = "sent",
                                reply = "delivered to maildir",
                                "delivery: {id2}:"
                            );
                        }
                        Ok(CopyResult::OverQuota { usage, quota }) => {
                            metrics::global().delivered("deferred", "local");
                            tracing::warn!(
                                to = %format!("<{rcpt}>"),
                                relay = "local",
                                mailbox = %copy.account.address,
                                usage,
                                quota,
                                dsn = "4.2.2",
                                status = "deferred",
                                reply = mda::mda::MAILBOX_FULL,
                                "delivery: {id2}:"
                            );
                            // The reply names no mailbox: the sender may see it in a DSN, and
                            // an alias's targets are not the sender's business.
                            failed.push((copy.rcpts, mda::mda::MAILBOX_FULL.to_string()));
                        }
                        Ok(CopyResult::AlreadyThere) => tracing::info!(
                            to = %format!("<{rcpt}>"),
                            relay = "local",
                            mailbox = %copy.account.address,
                            dsn = "2.0.0",
                            status = "sent",
                            reply = "already in the maildir",
                            "delivery: {id2}:"
                        ),
                        Err(e) => {
                            tracing::error!(
                                to = %format!("<{rcpt}>"),
                                relay = "local",
                                mailbox = %copy.account.address,
                                dsn = "4.3.0",
                                status = "deferred",
                                reply = %format!("local delivery failed: {e}"),
                                "delivery: {id2}:"
                            );
                            failed.push((copy.rcpts, format!("local delivery failed: {e}")));
                        }
                    }
                }
                failed
            })
            .await
            .unwrap_or_default();
            for (rcpts, why) in failed {
                for i in rcpts {
                    results.insert(i, Outcome::deferred(why.clone()));
                }
            }
        }

        // Forwarding: a new message through the queue, same sender, for the remote targets.
        // A sender we have not verified gets no DSN about the forwarded copy: the address may
        // be forged, and the bounce would be backscatter.
        for (i, targets) in route.forwards {
            let sender = self.forward_sender(&env.sender, &env.recipients[i]);
            let new_id = store::spool::new_id();
            let client = format!("forward of {id}");
            let arc = self.arc_set(id, &env.recipients[i], message, !env.sender_verified);
            let origin = Origin {
                client: &client,
                sender_verified: env.sender_verified,
                notify_never: env.notify_never || !env.sender_verified,
                require_tls: env.require_tls,
            };
            let res = self
                .spool
                .enqueue_body(
                    &new_id,
                    &sender,
                    &targets,
                    &origin,
                    self.clock.unix(),
                    &arc,
                    message,
                )
                .await;
            match res {
                Ok(()) => {
                    tracing::info!(
                        to = %format!("<{}>", env.recipients[i]),
                        status = "forwarded",
                        forward_id = %new_id,
                        forward_to = %targets.join(","),
                        forward_from = %format!("<{sender}>"),
                        "delivery: {id}:"
                    );
                    let _ = self.resubmit.send(new_id);
                }
                Err(e) => {
                    results.insert(
                        i,
                        Outcome::deferred(format!("cannot queue forwarded copy: {e}")),
                    );
                }
            }
        }

        // Other domains: one piece of remote work per domain, for the scheduler.
        route
            .remote
            .into_iter()
            .map(|(domain, rcpts)| RemoteWork {
                id: id.to_string(),
                domain,
                rcpts,
            })
            .collect()
    }
}

/// One remote delivery line (Postfix's `to=<..> relay=host[ip]:port delay= dsn= status=`),
/// with the TLS state of the session (`tls=TLSv1.3`, or `tls=none`).
#[allow(clippy::too_many_arguments)]
fn delivery_line(
    id: &str,
    rcpt: &str,
    o: &crate::relay::RcptOutcome,
    status: &str,
    dsn: &str,
    reply: &str,
    delay: u64,
    took: f64,
) {
    let relay = o.mx.as_deref().unwrap_or("none");
    let tls = o.tls_label();
    let result = match status {
        "sent" => "sent",
        "deferred" => "deferred",
        _ => "bounced",
    };
    metrics::global().delivered(result, "remote");
    metrics::global().delivery_seconds.observe(took);
    let to = format!("<{rcpt}>");
    let attempt = format!("{took:.3}s");
    if status == "sent" {
        tracing::info!(to = %to, relay, tls, verified = %o.verified, delay, attempt = %attempt, dsn, status, reply, "delivery: {id}:");
    } else {
        tracing::warn!(to = %to, relay, tls, verified = %o.verified, delay, attempt = %attempt, dsn, status, reply, "delivery: {id}:");
    }
}

/// The RFC 3463 status at the start of a reply's text (`450 4.2.0 ...` or `4.2.0 ...`), else
/// `default`.
pub(crate) fn dsn_of(reply: &str, default: &str) -> String {
    let mut words = reply.split_whitespace();
    let first = words.next().unwrap_or("");
    let candidate = if first.len() == 3 && first.bytes().all(|b| b.is_ascii_digit()) {
        words.next().unwrap_or("")
    } else {
        first
    };
    let parts: Vec<&str> = candidate.split('.').collect();
    let valid = parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
        && matches!(parts[0], "2" | "4" | "5");
    if valid {
        candidate.to_string()
    } else {
        default.to_string()
    }
}

#[cfg(test)]
mod dsn_tests {
    #[test]
    fn status_codes_are_read_from_replies() {
        assert_eq!(super::dsn_of("450 4.2.0 mailbox busy", "4.0.0"), "4.2.0");
        assert_eq!(super::dsn_of("4.4.2 timed out", "4.0.0"), "4.4.2");
        assert_eq!(
            super::dsn_of("mx[1.2.3.4]:25: connect: refused", "4.0.0"),
            "4.0.0"
        );
        assert_eq!(super::dsn_of("451 try later", "4.0.0"), "4.0.0");
    }
}
