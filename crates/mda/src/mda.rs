//! The MDA: writes the copies the router decided into the accounts' Maildirs, durably
//! (`store::maildir`: tmp/ -> fsync -> rename into new/ -> fsync new/, through the spool's
//! `Disk` seam), under names derived from the queue id and the copy number
//! (`<received>.Q<id>R<n>.<host>,S=<size>`), and takes copies back when asked.
//!
//! The name rule is why delivery is exactly-once across crashes: whichever door wrote a copy
//! first (direct delivery or the queue runner, before or after a restart), a second attempt
//! finds it under the same name.
//!
//! Quotas: with [`Mda::with_quotas`], a copy for an account whose Maildir is at or over its
//! quota (`store::quota::is_full`, the RCPT check's rule) is not written:
//! [`CopyResult::OverQuota`], which the queue defers (`4.2.2 Mailbox full`) and direct
//! delivery hands to the queue. Not here: deciding who gets a copy (the router), retries, or
//! anything about SMTP.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use store::directory::Account;
use store::durable::Disk;
use store::maildir::{maildir_path, Maildir};
use store::quota::Quotas;
use store::spool::Body;

/// The RFC 3463 status and text of a copy refused for a full mailbox (what the queue records,
/// `queue list` shows and, once the queue gives up, the DSN reports as `5.2.2`).
pub const MAILBOX_FULL: &str = "4.2.2 Mailbox full";

/// Writes Maildir copies for one server.
#[derive(Clone)]
pub struct Mda {
    data_dir: PathBuf,
    hostname: String,
    disk: Arc<dyn Disk>,
    /// The accounts' quotas; `None`: no quota is checked.
    quotas: Option<Arc<Quotas>>,
}

/// A copy that was written: where, so it can be taken back.
#[derive(Debug)]
pub struct Written {
    maildir: Maildir,
    path: PathBuf,
}

impl Written {
    /// The file in `new/`.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Which copy: copy `n` of message `id` (received at `received`, unix seconds) for
/// `account`. Its Maildir file name follows from these alone.
#[derive(Clone, Copy, Debug)]
pub struct CopyOf<'a> {
    pub id: &'a str,
    pub account: &'a Account,
    pub n: usize,
    pub received: u64,
}

/// How a copy turned out.
#[derive(Debug)]
pub enum CopyResult {
    /// Written now.
    Written(Written),
    /// It was there already (an earlier attempt wrote it).
    AlreadyThere,
    /// Not written: the account's Maildir is at or over its quota (`usage` octets of
    /// `quota`).
    OverQuota { usage: u64, quota: u64 },
}

impl Mda {
    /// `disk`: the seam every fsync and rename goes through (the spool's).
    pub fn new(data_dir: &Path, hostname: &str, disk: Arc<dyn Disk>) -> Mda {
        Mda {
            data_dir: data_dir.to_path_buf(),
            hostname: hostname.to_string(),
            disk,
            quotas: None,
        }
    }

    /// Checks each copy against its account's quota first.
    pub fn with_quotas(mut self, quotas: Option<Arc<Quotas>>) -> Mda {
        self.quotas = quotas;
        self
    }

    /// `Some((usage, quota))` when `account`'s Maildir is full. A quota that cannot be read
    /// is logged and the copy written: a broken table must not stop mail.
    fn full(&self, account: &Account, maildir: &Maildir) -> Option<(u64, u64)> {
        let quota = match self.quotas.as_ref()?.of(&account.address) {
            Ok(q) => q?,
            Err(e) => {
                tracing::error!("quota: {}: cannot read the quota: {e}", account.address);
                return None;
            }
        };
        if !store::quota::is_full(maildir.root(), quota) {
            return None;
        }
        let usage = store::quota::usage(maildir.root(), Some(quota)).map_or(quota, |u| u.0);
        Some((usage, quota))
    }

    /// The Maildir and file name of a copy of `size` octets.
    pub fn target(&self, copy: &CopyOf, size: u64) -> io::Result<(Maildir, String)> {
        let unique = format!("Q{}R{}", copy.id, copy.n);
        let name = Maildir::file_name(copy.received, &unique, &self.hostname, size)?;
        let maildir = Maildir::with_disk(
            maildir_path(&self.data_dir, copy.account),
            self.disk.clone(),
        );
        Ok((maildir, name))
    }

    /// Writes a copy (`parts` concatenated, `Return-Path:` first). With
    /// `look_first` (a retry: an earlier attempt may have written it, and a POP3 client may have
    /// moved it to `cur/` since), an existing copy is found and not written again.
    pub fn write(
        &self,
        copy: &CopyOf,
        parts: &[&[u8]],
        look_first: bool,
    ) -> io::Result<CopyResult> {
        let size = parts.iter().map(|p| p.len() as u64).sum();
        self.write_with(copy, size, look_first, |maildir, name| {
            maildir.deliver(name, parts)
        })
    }

    /// [`Mda::write`] for a queued message read from the spool: `Return-Path:` then `body`,
    /// copied in bounded blocks (memory per copy is one block, whatever the message size).
    pub fn write_body(
        &self,
        copy: &CopyOf,
        return_path: &[u8],
        body: &Body,
        look_first: bool,
    ) -> io::Result<CopyResult> {
        let size = return_path.len() as u64 + body.len();
        self.write_with(copy, size, look_first, |maildir, name| {
            maildir.deliver_from(name, &mut std::io::Read::chain(return_path, body.reader()))
        })
    }

    fn write_with(
        &self,
        copy: &CopyOf,
        size: u64,
        look_first: bool,
        deliver: impl FnOnce(&Maildir, &str) -> io::Result<PathBuf>,
    ) -> io::Result<CopyResult> {
        let (maildir, name) = self.target(copy, size)?;
        if look_first && maildir.contains(&name)? {
            return Ok(CopyResult::AlreadyThere);
        }
        if let Some((usage, quota)) = self.full(copy.account, &maildir) {
            // A copy written before the mailbox filled up (maybe the one that filled it)
            // still counts as delivered.
            if maildir.contains(&name)? {
                return Ok(CopyResult::AlreadyThere);
            }
            return Ok(CopyResult::OverQuota { usage, quota });
        }
        match deliver(&maildir, &name) {
            Ok(path) => Ok(CopyResult::Written(Written { maildir, path })),
            // Only a copy really in the Maildir counts: "exists" can also mean the Maildir
            // path is a file, and then nothing was delivered.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && maildir.contains(&name)? => {
                Ok(CopyResult::AlreadyThere)
            }
            Err(e) => Err(e),
        }
    }

    /// Takes a written copy back (unlink, fsync new/): for a multi-copy delivery that is
    /// answered with a failure, so the client's retry is the only copy.
    pub fn withdraw(&self, copy: Written) -> io::Result<()> {
        copy.maildir.withdraw(&copy.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Account {
        Account {
            address: "alice@example.test".into(),
            local: "alice".into(),
            domain: "example.test".into(),
        }
    }

    #[test]
    fn a_full_mailbox_gets_no_copy_but_an_earlier_copy_still_counts() {
        let d = tempfile::tempdir().unwrap();
        let quotas = Arc::new(Quotas::open(d.path()).unwrap());
        quotas.set_account("alice@example.test", Some(30)).unwrap();
        let mda = Mda::new(d.path(), "mx.test", Arc::new(store::durable::Os))
            .with_quotas(Some(quotas.clone()));
        let account = alice();
        let copy = |n| CopyOf {
            id: "Q1",
            account: &account,
            n,
            received: 1,
        };
        // Below the quota: written, whatever its size (the mailbox ends one message past).
        let first = mda.write(&copy(0), &[&[b'x'; 40]], false).unwrap();
        assert!(matches!(first, CopyResult::Written(_)), "{first:?}");
        let second = mda.write(&copy(1), &[b"y"], false).unwrap();
        assert!(
            matches!(
                second,
                CopyResult::OverQuota {
                    usage: 40,
                    quota: 30
                }
            ),
            "{second:?}"
        );
        // The copy written before the mailbox filled up is found, not refused.
        let again = mda.write(&copy(0), &[&[b'x'; 40]], false).unwrap();
        assert!(matches!(again, CopyResult::AlreadyThere), "{again:?}");
        // Room again (a bigger quota): written.
        quotas.set_account("alice@example.test", Some(100)).unwrap();
        let third = mda.write(&copy(1), &[b"y"], false).unwrap();
        assert!(matches!(third, CopyResult::Written(_)), "{third:?}");
        // No quotas: nothing is checked.
        quotas.set_account("alice@example.test", Some(1)).unwrap();
        let plain = Mda::new(d.path(), "mx.test", Arc::new(store::durable::Os));
        let fourth = plain.write(&copy(2), &[b"z"], false).unwrap();
        assert!(matches!(fourth, CopyResult::Written(_)), "{fourth:?}");
    }
}
