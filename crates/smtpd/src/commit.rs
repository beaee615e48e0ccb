//! Commit: makes a finished message durable before its `250` goes out: the spool file it was
//! streamed into, direct delivery into local Maildirs ([`crate::direct`]), or a new spool
//! file; records direct copies in the state log when the rest must be queued.
//!
//! It does not talk to the client: the listener writes the reply the result decides.

use std::sync::Arc;

use proto::smtp::{CommitError, Connection, Envelope};

use crate::direct::DirectResult;
use crate::listener::{angle, client, now, Smtpd};

/// Where an accepted message went.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Stored {
    /// Durable in the spool; the queue runner takes it from there.
    Queued,
    /// Durable in every recipient's Maildir already (direct local delivery).
    Delivered,
}

/// Makes a finished message durable: the streamed spool file if it was spilled, else direct
/// local delivery when every recipient is a local account, else a new spool file. Returns
/// the queue id and where it went; only then may the `250` go out.
pub(crate) async fn store_message(
    smtpd: &Smtpd,
    conn: &Connection,
    ip: std::net::IpAddr,
    draft: Option<std::io::Result<store::spool::Draft>>,
    envelope: &proto::smtp::Envelope,
    message: Vec<u8>,
) -> (String, std::io::Result<Stored>) {
    let received = now();
    match draft {
        Some(Ok(mut file)) => {
            let id = file.id().to_string();
            let verified = conn.session().sender_verified();
            let r = match tokio::task::block_in_place(|| {
                file.write(&message)?;
                crate::signing::sign_draft(smtpd.dkim.as_ref(), verified, &mut file)
            }) {
                Ok(()) => smtpd.spool.commit(file).await.map(|()| Stored::Queued),
                Err(e) => Err(e),
            };
            return (id, r);
        }
        Some(Err(e)) => return (String::new(), Err(e)),
        None => {}
    }
    let id = store::spool::new_id();
    let headers = conn.trace_headers(&id, received as i64);
    let message = Arc::new(message);
    let origin_text = client_text(conn, ip);
    let env_origin = origin(conn, &origin_text);
    let mut delivered_directly: Vec<usize> = Vec::new();
    let mut written = Vec::new();
    let mut direct_error = None;
    if let Some(direct) = &smtpd.direct {
        let (d, id2, env, h, m) = (
            direct.clone(),
            id.clone(),
            envelope.clone(),
            headers.clone(),
            message.clone(),
        );
        let result = tokio::task::spawn_blocking(move || {
            d.deliver(
                &id2,
                &env.sender,
                &env.recipients,
                received,
                &[h.as_bytes(), &m],
            )
        })
        .await;
        match result {
            Ok(DirectResult::Delivered) => return (id, Ok(Stored::Delivered)),
            Ok(DirectResult::NeedsQueue) => {}
            Ok(DirectResult::Partly {
                pending,
                written: w,
                error,
            }) => {
                // Keep what was written; the queue takes the rest (issue: one broken mailbox
                // never makes the sender retry for everybody).
                delivered_directly = (0..envelope.recipients.len())
                    .filter(|i| !pending.contains(i))
                    .collect();
                written = w;
                direct_error = Some(error);
            }
            Err(e) => return (id, Err(std::io::Error::other(e.to_string()))),
        }
    }
    let verified = conn.session().sender_verified();
    let signer = crate::signing::lead(smtpd.dkim.as_ref(), verified, &id, &headers, &message);
    let queued = smtpd
        .spool
        .enqueue_shared(
            &id,
            &envelope.sender,
            &envelope.recipients,
            &env_origin,
            received,
            signer,
            &[headers.as_bytes()],
            Some(message.clone()),
        )
        .await;
    let queued = match queued {
        Ok(()) if !delivered_directly.is_empty() => {
            // The runner must not write those copies again: say so in the state log, durably,
            // before the 250. (A crash before this only means the runner finds the copies by
            // their names.)
            let (spool, id2) = (smtpd.spool.clone(), id.clone());
            let done = delivered_directly.clone();
            tokio::task::spawn_blocking(move || {
                for i in done {
                    let entry = store::outcome::Entry::Rcpt(
                        i,
                        store::outcome::Outcome::Delivered {
                            detail: "delivered (direct)".into(),
                        },
                    );
                    spool.record(&id2, &entry)?;
                }
                Ok(())
            })
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e.to_string())))
            .inspect_err(|_| {
                let _ = smtpd.spool.remove(&id);
            })
        }
        other => other,
    };
    match queued {
        Ok(()) => (id, Ok(Stored::Queued)),
        Err(e) => {
            // Nothing may stay visible of a message the client is told to send again.
            if let Some(direct) = &smtpd.direct {
                direct.withdraw(&id, written);
            }
            // A full disk is what the client should hear about, whichever write found it.
            let e = match direct_error {
                Some(d) if d.kind() == std::io::ErrorKind::StorageFull => d,
                _ => e,
            };
            (id, Err(e))
        }
    }
}

/// What the envelope records about where the message came from: the client text, and
/// whether its sender was verified (authenticated, or a trusted network).
pub(crate) fn origin<'a>(conn: &Connection, client: &'a str) -> store::spool::Origin<'a> {
    store::spool::Origin {
        client,
        sender_verified: conn.session().sender_verified(),
        notify_never: false,
        require_tls: conn.session().require_tls(),
    }
}

/// The free-text client description stored in the envelope.
pub(crate) fn client_text(conn: &Connection, ip: std::net::IpAddr) -> String {
    format!(
        "helo={} ip={ip}",
        proto::smtp::address::escape(conn.session().helo_name())
    )
}

/// A large message's next bytes go to its spool file, begun at the first spill.
pub(crate) fn spill(
    smtpd: &Smtpd,
    conn: &Connection,
    ip: std::net::IpAddr,
    draft: &mut Option<std::io::Result<store::spool::Draft>>,
    bytes: &[u8],
) {
    let received = now();
    let d = draft.get_or_insert_with(|| {
        let id = store::spool::new_id();
        let headers = conn.trace_headers(&id, received as i64);
        let client = client_text(conn, ip);
        let (sender, rcpts) = conn.envelope().unwrap_or(("", &[]));
        smtpd.spool.begin(
            &id,
            sender,
            rcpts,
            &origin(conn, &client),
            received,
            headers.as_bytes(),
        )
    });
    if let Ok(file) = d {
        if let Err(e) = tokio::task::block_in_place(|| file.write(bytes)) {
            *draft = Some(Err(e));
        }
    }
}

/// Stores a finished message, logs it, tells the connection the result (its `250` or
/// `451`/`452`) and the queue runner the new id. True if the message was accepted.
pub(crate) async fn commit(
    smtpd: &Smtpd,
    conn: &mut Connection,
    ip: std::net::IpAddr,
    draft: Option<std::io::Result<store::spool::Draft>>,
    envelope: Envelope,
    message: Vec<u8>,
) -> bool {
    let (id, result) = store_message(smtpd, conn, ip, draft, &envelope, message).await;
    match result {
        Ok(stored) => {
            let session = conn.session();
            let message_id = session
                .message_id(&id)
                .map(|m| tracing::field::display(proto::smtp::address::escape(&m)));
            tracing::info!(
                from = %angle(&envelope.sender),
                size = envelope.size,
                nrcpt = envelope.recipients.len(),
                client = %client(ip),
                helo = %angle(session.helo_name()),
                proto = %session.protocol(),
                sasl_username = session.user(),
                "message-id" = message_id,
                queue_id = %id,
                delivered = (stored == Stored::Delivered).then_some("direct"),
                "smtpd: {id}: accepted"
            );
            conn.committed(Ok(&id));
            if stored == Stored::Queued {
                let _ = smtpd.queued.send(id);
            }
            true
        }
        Err(e) => {
            tracing::error!(client = %client(ip), error = %e, "smtpd: queue write failed");
            let full = matches!(
                e.kind(),
                std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
            );
            let kind = if full {
                CommitError::NoSpace
            } else {
                CommitError::Failed
            };
            conn.committed(Err(kind));
            false
        }
    }
}
