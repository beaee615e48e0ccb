//! File operations relative to directory descriptors, for the code that runs as root over
//! directories the service user can write ([`crate::ownership`], [`crate::private_files`]): a name
//! is looked up in a directory we hold open, with `O_NOFOLLOW`, never as a path that a planted
//! or swapped symlink could redirect.
//!
//! Thin wrappers over `libc`; no policy (what to do with what is found) lives here.

use std::ffi::{CStr, CString};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

pub fn cvt(r: libc::c_int) -> std::io::Result<libc::c_int> {
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

/// A name or path as a C string (an interior NUL is an invalid input).
pub fn c_name(name: impl AsRef<std::ffi::OsStr>) -> std::io::Result<CString> {
    CString::new(name.as_ref().as_bytes())
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))
}

/// `openat(dir, name, flags | O_CLOEXEC | O_NOFOLLOW, mode)`: a symlink at `name` is never
/// followed (directories met on the way are, so pass a single name, not a path).
pub fn open_at(
    dir: &OwnedFd,
    name: &CStr,
    flags: libc::c_int,
    mode: libc::mode_t,
) -> std::io::Result<OwnedFd> {
    open_raw(dir.as_raw_fd(), name, flags | libc::O_NOFOLLOW, mode)
}

fn open_raw(
    dir: libc::c_int,
    name: &CStr,
    flags: libc::c_int,
    mode: libc::mode_t,
) -> std::io::Result<OwnedFd> {
    // SAFETY: name is a valid NUL-terminated string; the result is a new descriptor we own.
    let fd = cvt(unsafe {
        libc::openat(
            dir,
            name.as_ptr(),
            flags | libc::O_CLOEXEC,
            libc::c_uint::from(mode),
        )
    })?;
    // SAFETY: fd was just returned by openat and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens the directory an admin configured (`data_dir`): its path is followed, symlinks
/// included; what is below it is then reached with [`open_at`] only.
pub fn open_configured_dir(path: &Path) -> std::io::Result<OwnedFd> {
    open_raw(
        libc::AT_FDCWD,
        &c_name(path)?,
        libc::O_RDONLY | libc::O_DIRECTORY,
        0,
    )
}

/// The subdirectory `name` of `dir`, created with `mode` when missing; a symlink there is an
/// error (`ELOOP` or `ENOTDIR`), not followed.
pub fn subdir(dir: &OwnedFd, name: &CStr, mode: libc::mode_t) -> std::io::Result<OwnedFd> {
    // SAFETY: name is a valid NUL-terminated string.
    if let Err(e) = cvt(unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), mode) }) {
        if e.kind() != std::io::ErrorKind::AlreadyExists {
            return Err(e);
        }
    }
    open_at(dir, name, libc::O_RDONLY | libc::O_DIRECTORY, 0)
}

pub fn fstat(fd: &OwnedFd) -> std::io::Result<libc::stat> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: st is a valid out pointer for one stat struct.
    cvt(unsafe { libc::fstat(fd.as_raw_fd(), st.as_mut_ptr()) })?;
    // SAFETY: fstat succeeded, so st is initialised.
    Ok(unsafe { st.assume_init() })
}

/// Removes the name `name` from `dir` (a symlink itself, never its target); a missing name is
/// not an error.
pub fn unlink_at(dir: &OwnedFd, name: &CStr) -> std::io::Result<()> {
    // SAFETY: name is a valid NUL-terminated string.
    match cvt(unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) }) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Renames `from` to `to`, both in `dir` (whatever `to` was, symlink included, is replaced).
pub fn rename_at(dir: &OwnedFd, from: &CStr, to: &CStr) -> std::io::Result<()> {
    let d = dir.as_raw_fd();
    // SAFETY: both names are valid NUL-terminated strings.
    cvt(unsafe { libc::renameat(d, from.as_ptr(), d, to.as_ptr()) }).map(drop)
}
