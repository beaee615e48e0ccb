//! Direct delivery: mail whose every recipient is a local account is written into the
//! Maildirs at the end of DATA, before the `250`, with the same router, names, headers and
//! fsyncs as the queue runner and no spool copy (half the disk writes of inbound mail).
//!
//! It uses the router and the MDA from `mda`, never the queue runner: receiving depends on
//! local delivery, not on the queue. When a copy cannot be written (one account's disk is
//! broken), the copies that were written stay, and the caller puts the message in the queue
//! for the others only ([`Direct::deliver`] says which): one broken mailbox never makes the
//! sender retry for everybody. A mailbox that filled up since RCPT is the same case: its copy
//! goes to the queue, which defers it (`4.2.2 Mailbox full`). Not here: the spool (the listener does that), SMTP replies.

use std::io;
use std::sync::Arc;

use mda::mda::{CopyOf, CopyResult, Written};
use mda::Mda;
use store::directory::Directory;

/// What direct delivery needs: the directory (to route) and the MDA (to write).
pub struct Direct {
    pub directory: Arc<Directory>,
    pub postmaster: Option<String>,
    pub mda: Mda,
}

/// How a direct delivery went.
#[derive(Debug)]
pub enum DirectResult {
    /// Some recipient is not a local account only: nothing written, use the queue.
    NeedsQueue,
    /// Every copy is durable.
    Delivered,
    /// These recipients (envelope indexes) still need their copy: queue the message for them.
    /// `written` are the copies that are durable (take them back if the queue fails too);
    /// `error` is why the first copy failed.
    Partly {
        pending: Vec<usize>,
        written: Vec<Written>,
        error: io::Error,
    },
}

impl Direct {
    /// Routes and writes every copy of message `id` (`parts` concatenated after the
    /// `Return-Path:`). Blocking file I/O: call it off the event loop.
    pub fn deliver(
        &self,
        id: &str,
        sender: &str,
        recipients: &[String],
        received: u64,
        parts: &[&[u8]],
    ) -> DirectResult {
        let route = mda::route(
            recipients,
            |_| true,
            |r| self.directory.resolve(r, self.postmaster.as_deref()),
        );
        if !route.local_only() {
            return DirectResult::NeedsQueue;
        }
        let return_path = proto::smtp::received::return_path_header(sender);
        let mut all: Vec<&[u8]> = Vec::with_capacity(parts.len() + 1);
        all.push(return_path.as_bytes());
        all.extend_from_slice(parts);
        let mut written = Vec::new();
        let mut pending: Vec<usize> = Vec::new();
        let mut first_error = None;
        for copy in &route.copies {
            let owner = &recipients[copy.rcpts[0]];
            let which = CopyOf {
                id,
                account: &copy.account,
                n: copy.n,
                received,
            };
            match self.mda.write(&which, &all, false) {
                Ok(CopyResult::Written(w)) => {
                    tracing::info!(
                        to = %format!("<{owner}>"),
                        relay = "local",
                        mailbox = %copy.account.address,
                        delay = 0,
                        dsn = "2.0.0",
                        status = "sent",
                        direct = true,
                        reply = "delivered to maildir",
                        "delivery: {id}:"
                    );
                    metrics::global().delivered("sent", "local");
                    written.push(w);
                }
                Ok(CopyResult::AlreadyThere) => {}
                Ok(CopyResult::OverQuota { usage, quota }) => {
                    // Filled up since RCPT: the queue defers this copy and retries it.
                    tracing::warn!(
                        to = %format!("<{owner}>"),
                        relay = "local",
                        mailbox = %copy.account.address,
                        usage,
                        quota,
                        dsn = "4.2.2",
                        status = "queued",
                        direct = true,
                        reply = mda::mda::MAILBOX_FULL,
                        "delivery: {id}:"
                    );
                    pending.extend(&copy.rcpts);
                    first_error.get_or_insert(io::Error::new(
                        io::ErrorKind::QuotaExceeded,
                        mda::mda::MAILBOX_FULL,
                    ));
                }
                Err(e) => {
                    tracing::warn!(
                        to = %format!("<{owner}>"),
                        relay = "local",
                        mailbox = %copy.account.address,
                        dsn = "4.3.0",
                        status = "deferred",
                        direct = true,
                        reply = %format!("local delivery failed: {e}"),
                        "delivery: {id}:"
                    );
                    pending.extend(&copy.rcpts);
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            None => DirectResult::Delivered,
            Some(error) => {
                pending.sort_unstable();
                pending.dedup();
                DirectResult::Partly {
                    pending,
                    written,
                    error,
                }
            }
        }
    }

    /// Takes back copies written by a delivery whose message could not be queued after all
    /// (the client will send it again).
    pub fn withdraw(&self, id: &str, written: Vec<Written>) {
        for w in written {
            let path = w.path().display().to_string();
            if let Err(e) = self.mda.withdraw(w) {
                tracing::error!("delivery: {id}: cannot take back {path}: {e}");
            }
        }
    }
}
