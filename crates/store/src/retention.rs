//! POP3 retention: messages that "leave mail on the server" clients never delete are removed
//! by policy (`[pop3] delete_retrieved_after`, `delete_after`).
//!
//! A message counts as retrieved once it carries the Seen flag (`cur/<base>:2,...S...`): POP3
//! sets it at QUIT for every message it sent (`mailbox`), and that rename is when the file's
//! ctime was last set, so the ctime is the retrieval time. A message's age is the delivery time
//! at the head of its name (`<unix secs>.…`), else its mtime.
//!
//! The sweep takes the same lock as a POP3 session (`flock` on `mailroom.lock`, without
//! waiting): a mailbox a session holds is skipped and swept next time. Deleted files are
//! unlinked and the directory fsynced. It does not decide when to run (the server's sweep
//! task does) and never touches `tmp/`.

use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::mailbox::MailboxError;

/// What to delete; `None` keeps forever.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// Retrieved (Seen) messages this long after their retrieval.
    pub delete_retrieved_after: Option<Duration>,
    /// Any message this long after its delivery.
    pub delete_after: Option<Duration>,
}

impl Policy {
    pub fn is_off(&self) -> bool {
        self.delete_retrieved_after.is_none() && self.delete_after.is_none()
    }
}

/// What one sweep of one mailbox removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Swept {
    pub deleted: usize,
    pub bytes: u64,
}

/// Sweeps the Maildir at `root` under its lock; [`MailboxError::Locked`] when a POP3 session
/// holds it.
pub fn sweep_mailbox(root: &Path, policy: &Policy, now: SystemTime) -> Result<Swept, MailboxError> {
    let _lock = crate::mailbox::lock(root)?;
    let now = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let mut swept = Swept::default();
    for sub in ["new", "cur"] {
        let dir = root.join(sub);
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e.into()),
        };
        let mut removed = false;
        for entry in entries {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            let meta = match entry.metadata() {
                Ok(m) if m.is_file() => m,
                _ => continue,
            };
            if expired(&name, &meta, policy, now) {
                match fs::remove_file(entry.path()) {
                    Ok(()) => {
                        swept.deleted += 1;
                        swept.bytes += meta.len();
                        removed = true;
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        if removed {
            fs::File::open(&dir)?.sync_all()?;
        }
    }
    crate::quota::removed(root, swept.bytes, swept.deleted as u64);
    Ok(swept)
}

fn expired(name: &str, meta: &fs::Metadata, policy: &Policy, now: u64) -> bool {
    let older = |since: u64, limit: Duration| now.saturating_sub(since) >= limit.as_secs();
    if let Some(limit) = policy.delete_after {
        let delivered = match crate::mailbox::leading_time(name) {
            u64::MAX => u64::try_from(meta.mtime()).unwrap_or(0),
            t => t,
        };
        if older(delivered, limit) {
            return true;
        }
    }
    if let Some(limit) = policy.delete_retrieved_after {
        if seen(name) && older(u64::try_from(meta.ctime()).unwrap_or(0), limit) {
            return true;
        }
    }
    false
}

/// Whether the maildir(5) info of `name` (`:2,<flags>`) has the Seen flag.
fn seen(name: &str) -> bool {
    name.split_once(":2,")
        .is_some_and(|(_, flags)| flags.contains('S'))
}

/// Every account Maildir under `data_dir/mail/<domain>/<local>/Maildir`, swept; the result
/// per mailbox (only those where something was deleted, or that failed).
pub fn sweep_all(
    data_dir: &Path,
    policy: &Policy,
    now: SystemTime,
) -> Vec<(PathBuf, Result<Swept, MailboxError>)> {
    if policy.is_off() {
        return Vec::new();
    }
    sweep_all_with(data_dir, &|_| *policy, now)
}

/// Like [`sweep_all`], with the policy of each mailbox from `policy_of(account)` (the
/// account as `local@domain` from the Maildir's place, lowercased; per-account overrides).
pub fn sweep_all_with(
    data_dir: &Path,
    policy_of: &dyn Fn(&str) -> Policy,
    now: SystemTime,
) -> Vec<(PathBuf, Result<Swept, MailboxError>)> {
    let mut out = Vec::new();
    let Ok(domains) = fs::read_dir(data_dir.join("mail")) else {
        return out;
    };
    for domain in domains.flatten() {
        let Ok(users) = fs::read_dir(domain.path()) else {
            continue;
        };
        for user in users.flatten() {
            let root = user.path().join("Maildir");
            if !root.is_dir() {
                continue;
            }
            let account = format!(
                "{}@{}",
                user.file_name().to_string_lossy(),
                domain.file_name().to_string_lossy()
            );
            let policy = policy_of(&account);
            if policy.is_off() {
                continue;
            }
            match sweep_mailbox(&root, &policy, now) {
                Ok(s) if s.deleted == 0 => {}
                r => out.push((root, r)),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn maildir(root: &Path) {
        for sub in ["new", "cur", "tmp"] {
            fs::create_dir_all(root.join(sub)).unwrap();
        }
    }

    #[test]
    fn retrieved_go_after_their_time_unretrieved_stay() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("Maildir");
        maildir(&root);
        fs::write(root.join("cur/100.a,S=1:2,S"), "a").unwrap();
        fs::write(root.join("cur/101.b,S=1:2,"), "b").unwrap();
        fs::write(root.join("new/102.c,S=1"), "c").unwrap();
        let policy = Policy {
            delete_retrieved_after: Some(Duration::from_secs(60)),
            delete_after: None,
        };
        let now = SystemTime::now();
        // Retrieved just now (ctime): not yet.
        assert_eq!(sweep_mailbox(&root, &policy, now).unwrap().deleted, 0);
        let later = now + Duration::from_secs(61);
        assert_eq!(
            sweep_mailbox(&root, &policy, later).unwrap(),
            Swept {
                deleted: 1,
                bytes: 1
            }
        );
        assert!(!root.join("cur/100.a,S=1:2,S").exists());
        assert!(root.join("cur/101.b,S=1:2,").exists());
        assert!(root.join("new/102.c,S=1").exists());
        // delete_after: by delivery time in the name.
        let policy = Policy {
            delete_retrieved_after: None,
            delete_after: Some(Duration::from_secs(1)),
        };
        assert_eq!(sweep_mailbox(&root, &policy, now).unwrap().deleted, 2);
    }

    #[test]
    fn a_locked_mailbox_is_skipped() {
        let t = tempfile::tempdir().unwrap();
        let root = t.path().join("Maildir");
        maildir(&root);
        fs::write(root.join("new/1.x"), "x").unwrap();
        let held = crate::mailbox::Mailbox::open(&root).unwrap();
        let policy = Policy {
            delete_after: Some(Duration::from_secs(1)),
            ..Policy::default()
        };
        assert!(matches!(
            sweep_mailbox(&root, &policy, SystemTime::now()),
            Err(MailboxError::Locked)
        ));
        drop(held);
        assert_eq!(
            sweep_mailbox(&root, &policy, SystemTime::now())
                .unwrap()
                .deleted,
            1
        );
    }
}
