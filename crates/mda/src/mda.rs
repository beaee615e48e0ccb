//! The MDA: writes the copies the router decided into the accounts' Maildirs, durably
//! (`store::maildir`: tmp/ -> fsync -> rename into new/ -> fsync new/, through the spool's
//! `Disk` seam), under names derived from the queue id and the copy number
//! (`<received>.Q<id>R<n>.<host>,S=<size>`), and takes copies back when asked.
//!
//! The name rule is why delivery is exactly-once across crashes: whichever door wrote a copy
//! first (direct delivery or the queue runner, before or after a restart), a second attempt
//! finds it under the same name. Not here: deciding who gets a copy (the router), retries, or
//! anything about SMTP.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use store::directory::Account;
use store::durable::Disk;
use store::maildir::{maildir_path, Maildir};
use store::spool::Body;

/// Writes Maildir copies for one server.
#[derive(Clone)]
pub struct Mda {
    data_dir: PathBuf,
    hostname: String,
    disk: Arc<dyn Disk>,
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
}

impl Mda {
    /// `disk`: the seam every fsync and rename goes through (the spool's).
    pub fn new(data_dir: &Path, hostname: &str, disk: Arc<dyn Disk>) -> Mda {
        Mda {
            data_dir: data_dir.to_path_buf(),
            hostname: hostname.to_string(),
            disk,
        }
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
