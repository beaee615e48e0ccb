//! One server per `data_dir`: `serve` holds an exclusive `flock` on `data_dir/mailroom.lock`
//! for as long as it runs (the kernel releases it when the process ends, however it ends), so
//! a second `serve` on the same data_dir refuses to start instead of delivering the same queue
//! twice. The file holds the holder's pid, for `mailroom tls reload` and for the error message.
//!
//! The file is opened without following a symlink (root opens it before the privilege drop,
//! in a directory the service user owns). It does not lock anything for admin commands.

use std::io::{Read, Seek, Write};
use std::os::fd::AsRawFd;
use std::path::Path;

use crate::at;

const NAME: &str = "mailroom.lock";

/// The held lock; dropping it (or exiting) releases it.
#[derive(Debug)]
pub struct InstanceLock {
    _file: std::fs::File,
}

/// Takes the lock for this process, or says who holds it.
pub fn acquire(data_dir: &Path) -> Result<InstanceLock, String> {
    let fail = |e: std::io::Error| format!("cannot lock {}: {e}", data_dir.join(NAME).display());
    let top = at::open_configured_dir(data_dir).map_err(fail)?;
    let fd = at::open_at(
        &top,
        &at::c_name(NAME).map_err(fail)?,
        libc::O_RDWR | libc::O_CREAT,
        0o600,
    )
    .map_err(fail)?;
    let mut file = std::fs::File::from(fd);
    // SAFETY: plain system call on a descriptor we own.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::WouldBlock {
            return Err(fail(e));
        }
        let mut pid = String::new();
        let _ = file.read_to_string(&mut pid);
        return Err(format!(
            "another mailroom serve (pid {}) is running on data_dir {}",
            pid.trim(),
            data_dir.display()
        ));
    }
    let written = file
        .set_len(0)
        .and_then(|_| file.rewind())
        .and_then(|_| writeln!(file, "{}", std::process::id()));
    written.map_err(fail)?;
    Ok(InstanceLock { _file: file })
}

/// The pid of the running server, if one holds the lock.
pub fn holder(data_dir: &Path) -> Option<i32> {
    let file = std::fs::File::open(data_dir.join(NAME)).ok()?;
    // SAFETY: plain system call on a descriptor we own; a shared lock we get means no holder.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_SH | libc::LOCK_NB) } == 0 {
        return None;
    }
    let mut text = String::new();
    (&file).read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_is_gone() {
        let t = tempfile::tempdir().unwrap();
        assert_eq!(holder(t.path()), None);
        let first = acquire(t.path()).unwrap();
        let e = acquire(t.path()).unwrap_err();
        assert!(e.contains("another mailroom serve"), "{e}");
        assert!(e.contains(&std::process::id().to_string()), "{e}");
        assert_eq!(holder(t.path()), Some(std::process::id() as i32));
        drop(first);
        assert_eq!(holder(t.path()), None);
        acquire(t.path()).unwrap();
    }
}
