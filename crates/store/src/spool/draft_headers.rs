//! Header fields that can only be written once a streamed message is complete (DKIM
//! signatures: they cover the whole body): [`Draft::insert_headers`] reads the message back
//! from its draft file once, asks the caller for the fields, and writes a new draft with them
//! on top of the message, in place of the old one (same id, same `tmp/` name). The message is
//! held in memory once for this (one copy of its size); the caller computes from that copy.
//! Durability is unchanged: [`super::Spool::commit`] fsyncs the new file and moves it.
//!
//! For the checks of a streamed message (`smtpd::verify`) nothing is held whole:
//! [`Draft::client_message`] reads the client's message back in blocks and
//! [`Draft::replace_start`] rewrites its start (our `Authentication-Results:` on top, forged
//! ones removed), the rest copied file to file.

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;

use super::Draft;

impl Draft {
    /// Puts the fields `make` returns (given the message as written so far, trace headers
    /// included) on top of the message. Nothing changes when `make` returns no bytes; the
    /// draft is unusable (and removed when dropped) when this fails.
    pub fn insert_headers(
        &mut self,
        make: impl FnOnce(&[u8]) -> io::Result<Vec<u8>>,
    ) -> io::Result<()> {
        let file = self
            .file
            .take()
            .ok_or_else(|| io::Error::other("draft already finished"))?;
        let result = self.rewrite(file, make);
        if result.is_err() {
            let _ = fs::remove_file(&self.path);
        }
        result
    }

    /// The message as the client sent it (after the envelope record and the trace fields
    /// given to `begin`), on a new descriptor positioned at its first octet.
    pub fn client_message(&mut self) -> io::Result<fs::File> {
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("draft already finished"))?;
        file.flush()?;
        let mut reader = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&self.path)?;
        reader.seek(SeekFrom::Start(self.head_len + self.prefix_len))?;
        Ok(reader)
    }

    /// Replaces the first `old_len` octets of the client's message (after the trace fields)
    /// by `start`; the rest is copied file to file, never held in memory. The draft is
    /// unusable (and removed when dropped) when this fails.
    pub fn replace_start(&mut self, old_len: u64, start: &[u8]) -> io::Result<()> {
        let file = self
            .file
            .take()
            .ok_or_else(|| io::Error::other("draft already finished"))?;
        let result = self.rewrite_start(file, old_len, start);
        if result.is_err() {
            let _ = fs::remove_file(&self.path);
        }
        result
    }

    fn rewrite_start(&mut self, mut file: fs::File, old_len: u64, start: &[u8]) -> io::Result<()> {
        file.flush()?;
        let mut reader = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&self.path)?;
        let kept = self.head_len + self.prefix_len;
        let mut head = vec![0u8; kept as usize];
        reader.read_exact(&mut head)?;
        reader.seek(SeekFrom::Start(kept + old_len))?;
        let new_path = self.path.with_extension("headers");
        let _ = fs::remove_file(&new_path);
        let mut new = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&new_path)?;
        let written = new
            .write_all(&head)
            .and_then(|()| new.write_all(start))
            .and_then(|()| io::copy(&mut reader, &mut new).map(|_| ()))
            .and_then(|()| fs::rename(&new_path, &self.path));
        if let Err(e) = written {
            let _ = fs::remove_file(&new_path);
            return Err(e);
        }
        self.file = Some(new);
        Ok(())
    }

    fn rewrite(
        &mut self,
        mut file: fs::File,
        make: impl FnOnce(&[u8]) -> io::Result<Vec<u8>>,
    ) -> io::Result<()> {
        file.flush()?;
        let mut reader = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&self.path)?;
        let mut head = vec![0u8; self.head_len as usize];
        reader.read_exact(&mut head)?;
        reader.seek(SeekFrom::Start(self.head_len))?;
        let mut message = Vec::new();
        reader.read_to_end(&mut message)?;
        let fields = make(&message)?;
        if fields.is_empty() {
            self.file = Some(file);
            return Ok(());
        }
        let new_path = self.path.with_extension("headers");
        let _ = fs::remove_file(&new_path);
        let mut new = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&new_path)?;
        let written = new
            .write_all(&head)
            .and_then(|()| new.write_all(&fields))
            .and_then(|()| new.write_all(&message))
            .and_then(|()| fs::rename(&new_path, &self.path));
        if let Err(e) = written {
            let _ = fs::remove_file(&new_path);
            return Err(e);
        }
        self.file = Some(new);
        self.prefix_len += fields.len() as u64;
        Ok(())
    }
}
