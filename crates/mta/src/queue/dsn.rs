//! Telling the sender (RFC 3464): which recipient outcomes of an attempt become a report —
//! every failure at once, and one "delayed" warning per message — and queuing that report
//! from `<>` like any other message. [`crate::bounce`] writes the report's bytes.
//!
//! Never a report to the null sender (the builder refuses), and none for forwarded mail whose
//! sender we could not verify (`notify never` in the envelope: the bounce would be
//! backscatter). Not here: retry decisions ([`super::retry`]).

use std::time::Duration;

use store::outcome::{Entry, Mark, Outcome};
use store::queue_status::MessageStatus;
use store::spool::{Body, Envelope, Origin};

use super::attempt::Results;
use super::runner::Runner;
use crate::bounce;

/// The report line for a failed recipient, if the outcome is a failure.
pub fn failed_status(
    recipient: &str,
    outcome: &Outcome,
    now: u64,
) -> Option<bounce::RecipientStatus> {
    let Outcome::Failed {
        status,
        reply,
        remote_mta,
    } = outcome
    else {
        return None;
    };
    Some(bounce::RecipientStatus {
        recipient: recipient.to_string(),
        original: None,
        action: bounce::Action::Failed,
        status: status.clone(),
        remote_mta: remote_mta.clone(),
        diagnostic: Some(reply.clone()),
        last_attempt: Some(now as i64),
        will_retry_until: None,
    })
}

/// The report line for a deferred recipient, if the outcome is a deferral.
pub fn delayed_status(
    recipient: &str,
    outcome: &Outcome,
    now: u64,
    retry_until: u64,
) -> Option<bounce::RecipientStatus> {
    let Outcome::Deferred { reply, .. } = outcome else {
        return None;
    };
    Some(bounce::RecipientStatus {
        recipient: recipient.to_string(),
        original: None,
        action: bounce::Action::Delayed,
        status: "4.0.0".into(),
        remote_mta: None,
        diagnostic: Some(reply.clone()),
        last_attempt: Some(now as i64),
        will_retry_until: Some(retry_until as i64),
    })
}

impl Runner {
    /// Sends the failure DSN for recipients that failed now, and the one "delayed" warning.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn send_dsn(
        &self,
        id: &str,
        env: &Envelope,
        message: &Body,
        results: &Results,
        status: &MessageStatus,
        age: Duration,
        now: u64,
    ) {
        if env.notify_never {
            let failed = results
                .values()
                .filter(|r| matches!(r, Outcome::Failed { .. }))
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
            .filter_map(|(i, r)| failed_status(&env.recipients[*i], r, now))
            .collect();
        if !failed.is_empty() {
            self.enqueue_dsn(id, env, message, &failed, now, "non-delivery")
                .await;
        }
        if !self.retry.warn_now(age, status.warned) {
            return;
        }
        let until = env.received + self.retry.max_lifetime.as_secs();
        let delayed: Vec<bounce::RecipientStatus> = results
            .iter()
            .filter_map(|(i, r)| delayed_status(&env.recipients[*i], r, now, until))
            .collect();
        if !delayed.is_empty() {
            self.enqueue_dsn(id, env, message, &delayed, now, "delay")
                .await;
            let spool = self.spool.clone();
            let id2 = id.to_string();
            let _ =
                tokio::task::spawn_blocking(move || spool.record(&id2, &Entry::Mark(Mark::Warned)))
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
        kind: &str,
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
        // A forwarded copy's SRS sender stands for the original one: tell that one.
        let to = self.dsn_recipient(&env.sender);
        let report = bounce::build(&bounce::Bounce {
            reporting_mta: &self.hostname,
            queue_id: id,
            sender: &to,
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
        // Our DSNs are our mail: signed once here, before they are queued.
        let signature = match &self.dkim {
            Some(keyring) => {
                let (keyring, r) = (keyring.clone(), report.clone());
                match tokio::task::spawn_blocking(move || keyring.sign(&[&r])).await {
                    Ok(Ok(sig)) => sig.unwrap_or_default(),
                    Ok(Err(e)) => {
                        tracing::warn!("delivery: {id}: DSN not DKIM-signed: {e}");
                        Vec::new()
                    }
                    Err(e) => {
                        tracing::warn!("delivery: {id}: DSN not DKIM-signed: {e}");
                        Vec::new()
                    }
                }
            }
            None => Vec::new(),
        };
        let dsn_id = store::spool::new_id();
        let sender = [to];
        match self
            .spool
            .enqueue(
                &dsn_id,
                "",
                &sender,
                &Origin::client(&format!("dsn for {id}")),
                now,
                &[&signature, &report],
            )
            .await
        {
            Ok(()) => {
                tracing::info!(
                    to = %format!("<{}>", sender[0]),
                    dsn_id = %dsn_id,
                    nrcpt = rcpts.len(),
                    "delivery: {id}: sender {kind} notification:"
                );
                let _ = self.resubmit.send(dsn_id);
            }
            Err(e) => tracing::error!("delivery: {id}: cannot queue DSN: {e}"),
        }
    }
}
