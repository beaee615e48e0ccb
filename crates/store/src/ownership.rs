//! Ownership of `data_dir`, changed by root for the service user (at start-up and before an
//! admin command drops to that user). The tree is one the user can write to, so the walk never
//! acts on a path below `data_dir`: everything is reached through directory descriptors with
//! `O_NOFOLLOW` ([`crate::at`]). It changes owners only; it creates, reads and removes nothing.
//! It does not enter `data_dir/maildrop`, whose files keep the owner that identifies their sender.

use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::at;

/// The account that is to own `data_dir`.
#[derive(Clone, Debug)]
pub struct Owner {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// Gives `data_dir` and everything under it to the user (only what is not theirs already).
///
/// Runs as root over a tree the user may write to, so it never acts on a path below
/// `data_dir`: each directory is opened with `O_NOFOLLOW` relative to its parent's descriptor,
/// its entries are read from that descriptor, and every owner is checked (`fstat`) and changed
/// (`fchown`) through a descriptor of the object itself. A directory swapped for a symlink is
/// then only a symlink, whose own owner changes. `data_dir` itself is the admin's path and is
/// followed once. Files with more than one link are left alone (a hard link could name a file
/// outside `data_dir`), and the walk stops at [`MAX_DEPTH`] levels.
pub fn give_tree(data_dir: &Path, user: &Owner) -> std::io::Result<()> {
    let top = at::open_configured_dir(data_dir)?;
    chown_fd(&top, data_dir, user)?;
    own_tree(&top, data_dir, user, 1)
}

/// Deepest level below `data_dir` the ownership walk descends to (a Maildir file is at 6).
pub const MAX_DEPTH: usize = 32;

/// Gives the object behind `fd` (any type, also an `O_PATH` descriptor) to the user.
fn chown_fd(fd: &OwnedFd, path: &Path, user: &Owner) -> std::io::Result<()> {
    let st = at::fstat(fd)?;
    if st.st_uid == user.uid && st.st_gid == user.gid {
        return Ok(());
    }
    let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
    if !is_dir && st.st_nlink > 1 {
        eprintln!(
            "mailroom: not giving {} to {}: it has {} hard links",
            path.display(),
            user.name,
            st.st_nlink
        );
        return Ok(());
    }
    // SAFETY: an empty path with AT_EMPTY_PATH acts on fd itself, never on a path.
    at::cvt(unsafe {
        libc::fchownat(
            fd.as_raw_fd(),
            c"".as_ptr(),
            user.uid,
            user.gid,
            libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
        )
    })
    .map(drop)
    .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

/// The names in a directory (without `.` and `..`), read through its descriptor.
fn entries(dir: &OwnedFd) -> std::io::Result<Vec<CString>> {
    // fdopendir takes the descriptor it is given: hand it a duplicate.
    // SAFETY: F_DUPFD_CLOEXEC returns a new descriptor or -1.
    let dup = at::cvt(unsafe { libc::fcntl(dir.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 0) })?;
    // SAFETY: dup is a valid directory descriptor; on success the stream owns it.
    let stream = unsafe { libc::fdopendir(dup) };
    if stream.is_null() {
        let e = std::io::Error::last_os_error();
        // SAFETY: fdopendir failed, so dup is still ours to close.
        unsafe { libc::close(dup) };
        return Err(e);
    }
    // The duplicate shares the offset with `dir`: start at the beginning.
    // SAFETY: stream is a valid open directory stream.
    unsafe { libc::rewinddir(stream) };
    let mut names = Vec::new();
    let result = loop {
        // SAFETY: errno is thread-local; readdir signals errors only through it.
        unsafe { *libc::__errno_location() = 0 };
        // SAFETY: stream is valid; the entry is copied out before the next call.
        let ent = unsafe { libc::readdir(stream) };
        if ent.is_null() {
            let e = std::io::Error::last_os_error();
            break if e.raw_os_error() == Some(0) {
                Ok(())
            } else {
                Err(e)
            };
        }
        // SAFETY: d_name is a NUL-terminated string inside the entry.
        let name = unsafe { CStr::from_ptr((*ent).d_name.as_ptr()) };
        if name != c"." && name != c".." {
            names.push(name.to_owned());
        }
    };
    // SAFETY: stream is valid and closed once (this also closes dup).
    unsafe { libc::closedir(stream) };
    result.map(|()| names)
}

fn gone(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::NotFound
}

/// Gives every entry of the open directory `dir` (at `path`, for messages) to the user.
fn own_tree(dir: &OwnedFd, path: &Path, user: &Owner, depth: usize) -> std::io::Result<()> {
    if depth > MAX_DEPTH {
        return Err(std::io::Error::other(format!(
            "{}: more than {MAX_DEPTH} directory levels",
            path.display()
        )));
    }
    for name in entries(dir)? {
        let child = path.join(std::ffi::OsStr::from_bytes(name.to_bytes()));
        // A directory: opened without following a symlink, then judged by what was opened.
        match at::open_at(dir, &name, libc::O_RDONLY | libc::O_DIRECTORY, 0) {
            Ok(sub) => {
                chown_fd(&sub, &child, user)?;
                // The maildrop's files belong to the local users who left them: their owner
                // is who sent them (crate::maildrop).
                if depth == 1 && name.as_bytes() == crate::maildrop::DIR.as_bytes() {
                    continue;
                }
                own_tree(&sub, &child, user, depth + 1)?;
                continue;
            }
            // Entries may vanish while the server runs (a Maildir tmp file renamed).
            Err(e) if gone(&e) => continue,
            Err(e) if matches!(e.raw_os_error(), Some(libc::ENOTDIR | libc::ELOOP)) => {}
            Err(e) => return Err(e),
        }
        // Anything else (file, symlink, socket) is pinned with O_PATH: never followed, read
        // or written. If it became a directory meanwhile, its owner is still set but the walk
        // does not enter it (it was made by the server, which runs as the user).
        match at::open_at(dir, &name, libc::O_PATH, 0) {
            Ok(fd) => chown_fd(&fd, &child, user)?,
            Err(e) if gone(&e) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "ownership_tests.rs"]
mod tests;
