//! The SRS secret: 32 random octets in `<data_dir>/srs.key` (mode 0600), made at the first
//! start (`O_EXCL | O_NOFOLLOW`, fsync, rename, directory fsync) and read at every later one,
//! so SRS addresses handed out before a restart still decode after it.
//!
//! Not here: the SRS address format (`proto::srs`).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

const NAME: &str = "srs.key";
const LEN: usize = 32;

/// Reads the secret, making it first when there is none.
pub fn load_or_create(data_dir: &Path) -> io::Result<Vec<u8>> {
    let path = data_dir.join(NAME);
    match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&path)
    {
        Ok(f) => {
            let mut secret = Vec::new();
            f.take(1024).read_to_end(&mut secret)?;
            if secret.len() < 16 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{} is too short", path.display()),
                ));
            }
            return Ok(secret);
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let secret: [u8; LEN] = rand::random();
    let tmp = data_dir.join(format!(".{NAME}.tmp"));
    let _ = fs::remove_file(&tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)?;
    f.write_all(&secret)?;
    f.sync_all()?;
    fs::rename(&tmp, &path)?;
    File::open(data_dir)?.sync_all()?;
    Ok(secret.to_vec())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn made_once_then_kept() {
        let t = tempfile::tempdir().unwrap();
        let a = load_or_create(t.path()).unwrap();
        assert_eq!(a.len(), LEN);
        assert_eq!(load_or_create(t.path()).unwrap(), a);
        let mode = fs::metadata(t.path().join(NAME))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
