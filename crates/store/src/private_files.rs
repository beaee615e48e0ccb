//! Private files under `data_dir/<dir>/` (the self-signed TLS pair today, DKIM keys next):
//! written and read by root before the privilege drop in a directory the service user owns, so
//! nothing there is followed. `<dir>` is opened with `O_NOFOLLOW` below the configured
//! `data_dir`, files are replaced atomically (fresh `<stem>.tmp` with `O_CREAT | O_EXCL |
//! O_NOFOLLOW`, mode 0600, fsynced, renamed, directory fsynced) and read with `O_NOFOLLOW`.
//!
//! It does not know what the bytes are (PEM, keys): callers parse them.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::Path;

use crate::at;

/// Writes each `(name, bytes)` into `data_dir/<dir>/` (created 0700 when missing), mode 0600,
/// each replaced whole; the directory is fsynced once at the end. A symlink at `<dir>` is an
/// error; a symlink at a name is replaced, never followed.
pub fn write(data_dir: &Path, dir: &str, files: &[(&str, &[u8])]) -> std::io::Result<()> {
    std::fs::create_dir_all(data_dir)?;
    let top = at::open_configured_dir(data_dir)?;
    let sub = at::subdir(&top, &at::c_name(dir)?, 0o700)?;
    for (name, bytes) in files {
        write_one(&sub, name, bytes)
            .map_err(|e| std::io::Error::new(e.kind(), format!("{dir}/{name}: {e}")))?;
    }
    std::fs::File::from(sub).sync_all()
}

fn write_one(dir: &OwnedFd, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = at::c_name(Path::new(name).with_extension("tmp"))?;
    at::unlink_at(dir, &tmp)?;
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL;
    let mut f = std::fs::File::from(at::open_at(dir, &tmp, flags, 0o600)?);
    f.write_all(bytes)?;
    f.sync_all()?;
    at::rename_at(dir, &tmp, &at::c_name(name)?)
}

/// The bytes of `data_dir/<dir>/<name>`; neither `<dir>` nor `<name>` may be a symlink.
pub fn read(data_dir: &Path, dir: &str, name: &str) -> std::io::Result<Vec<u8>> {
    let top = at::open_configured_dir(data_dir)?;
    let sub = at::open_at(
        &top,
        &at::c_name(dir)?,
        libc::O_RDONLY | libc::O_DIRECTORY,
        0,
    )?;
    let mut bytes = Vec::new();
    std::fs::File::from(at::open_at(&sub, &at::c_name(name)?, libc::O_RDONLY, 0)?)
        .read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Whether `data_dir/<dir>/<name>` exists (a symlink counts: [`read`] then refuses it rather
/// than a caller silently making a new file).
pub fn exists(data_dir: &Path, dir: &str, name: &str) -> bool {
    std::fs::symlink_metadata(data_dir.join(dir).join(name)).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, PermissionsExt};

    #[test]
    fn written_files_are_private_and_read_back() {
        let t = tempfile::tempdir().unwrap();
        write(t.path(), "keys", &[("a", b"one"), ("b", b"two")]).unwrap();
        assert_eq!(read(t.path(), "keys", "a").unwrap(), b"one");
        let m = std::fs::metadata(t.path().join("keys/b")).unwrap();
        assert_eq!(m.permissions().mode() & 0o777, 0o600);
        let d = std::fs::metadata(t.path().join("keys")).unwrap();
        assert_eq!(d.permissions().mode() & 0o777, 0o700);
        write(t.path(), "keys", &[("a", b"new")]).unwrap();
        assert_eq!(read(t.path(), "keys", "a").unwrap(), b"new");
        assert!(exists(t.path(), "keys", "b"));
        assert!(!exists(t.path(), "keys", "c"));
    }

    #[test]
    fn symlinks_are_neither_written_through_nor_read() {
        let t = tempfile::tempdir().unwrap();
        let outside = t.path().join("outside");
        std::fs::write(&outside, "precious").unwrap();
        let data = t.path().join("data");
        std::fs::create_dir_all(data.join("keys")).unwrap();
        symlink(&outside, data.join("keys/a.tmp")).unwrap();
        symlink(&outside, data.join("keys/b")).unwrap();
        write(&data, "keys", &[("a", b"new")]).unwrap();
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), "precious");
        assert!(read(&data, "keys", "b").is_err());
        std::fs::remove_dir_all(data.join("keys")).unwrap();
        symlink(t.path(), data.join("keys")).unwrap();
        assert!(write(&data, "keys", &[("a", b"x")]).is_err());
        assert!(read(&data, "keys", "outside").is_err());
    }
}
