//! The router: what each envelope recipient of a message means — which local accounts get a
//! copy, which addresses it is forwarded to, which remote domains it goes to, and which
//! recipients fail or must wait. Pure: the directory lookup is passed in, so the rules are
//! unit-tested without a disk.
//!
//! Copies are numbered over all recipients in envelope order, one per distinct account (the
//! first recipient that reaches an account owns its copy), so the numbers — and with them the
//! Maildir file names — are the same in every attempt, whichever recipients are still pending.
//! Not here: writing anything, or deciding retries.

use std::collections::BTreeMap;

use store::directory::{Account, DirectoryError, Resolution};
use store::outcome::Outcome;

/// One copy for one local account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Copy {
    /// Its number in the message (stable across attempts).
    pub n: usize,
    pub account: Account,
    /// The pending recipients (envelope indexes) whose delivery this copy is, first the owner.
    pub rcpts: Vec<usize>,
}

/// Where the pending recipients of a message go.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Route {
    /// Local copies still to write (only those with at least one pending recipient).
    pub copies: Vec<Copy>,
    /// Recipients whose aliases also forward to addresses outside our domains.
    pub forwards: Vec<(usize, Vec<String>)>,
    /// Recipients in other domains, by lowercase domain.
    pub remote: BTreeMap<String, Vec<usize>>,
    /// Recipients with a result already: unknown user, loop, bad address (failed), or a
    /// directory that cannot be read now (deferred).
    pub settled: Vec<(usize, Outcome)>,
}

impl Route {
    /// True when every pending recipient is a local account and nothing else: the message can
    /// be delivered at once, without the queue (direct delivery).
    pub fn local_only(&self) -> bool {
        self.forwards.is_empty() && self.remote.is_empty() && self.settled.is_empty()
    }
}

/// Routes `recipients`; `pending(i)` says which still need delivering, `lookup` is the
/// directory's `resolve`.
pub fn route(
    recipients: &[String],
    pending: impl Fn(usize) -> bool,
    lookup: impl Fn(&str) -> Result<Resolution, DirectoryError>,
) -> Route {
    let mut out = Route::default();
    // Every account that got a copy number, pending or not, in order.
    let mut numbered: Vec<String> = Vec::new();
    for (i, rcpt) in recipients.iter().enumerate() {
        let is_pending = pending(i);
        match lookup(rcpt) {
            Ok(Resolution::Deliver { local, remote }) => {
                for account in local {
                    let key = account.address.to_lowercase();
                    let n = match numbered.iter().position(|k| *k == key) {
                        Some(n) => n,
                        None => {
                            numbered.push(key);
                            numbered.len() - 1
                        }
                    };
                    if !is_pending {
                        continue;
                    }
                    match out.copies.iter_mut().find(|c| c.n == n) {
                        Some(copy) => copy.rcpts.push(i),
                        None => out.copies.push(Copy {
                            n,
                            account,
                            rcpts: vec![i],
                        }),
                    }
                }
                if is_pending && !remote.is_empty() {
                    out.forwards.push((i, remote));
                }
            }
            _ if !is_pending => {}
            Ok(Resolution::NotLocal) => {
                let domain = rcpt
                    .rsplit_once('@')
                    .map(|(_, d)| d.to_lowercase())
                    .unwrap_or_default();
                out.remote.entry(domain).or_default().push(i);
            }
            Ok(Resolution::Unknown) => out
                .settled
                .push((i, Outcome::failed("5.1.1", "no such user here"))),
            Ok(Resolution::Loop) => out
                .settled
                .push((i, Outcome::failed("5.4.6", "alias expansion loops"))),
            Err(DirectoryError::InvalidAddress(e)) => out
                .settled
                .push((i, Outcome::failed("5.1.3", format!("bad address: {e}")))),
            Err(e) => out
                .settled
                .push((i, Outcome::deferred(format!("directory unavailable: {e}")))),
        }
    }
    out
}

#[cfg(test)]
#[path = "router_tests.rs"]
mod tests;
