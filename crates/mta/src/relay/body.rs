//! The message the relay sends, read in bounded blocks: a queued message's
//! [`store::spool::Body`] (the queue runner), or bytes in memory (a queued message of at
//! most one [`BLOCK`], read whole by [`MessageBody::load`]; tests, small callers). The relay
//! reads it once to find its [`MessageTraits`] and once per transaction to send it, one
//! [`BLOCK`] at a time; nothing here holds more than a block of a larger message.

use std::io::{self, Read};
use std::sync::Arc;

use proto::smtp::client::{MessageTraits, TraitsScanner};
use store::spool::Body;

/// Octets read from the message at a time (and so, about, per DATA write or BDAT chunk).
pub const BLOCK: usize = 64 * 1024;

/// A message to relay. Cheap to clone.
#[derive(Clone, Debug)]
pub enum MessageBody {
    /// In memory.
    Bytes(Arc<[u8]>),
    /// In the spool, read with positional reads on a blocking thread.
    Spool(Body),
}

impl From<&[u8]> for MessageBody {
    fn from(bytes: &[u8]) -> MessageBody {
        MessageBody::Bytes(bytes.into())
    }
}

impl From<Vec<u8>> for MessageBody {
    fn from(bytes: Vec<u8>) -> MessageBody {
        MessageBody::Bytes(bytes.into())
    }
}

impl From<Body> for MessageBody {
    fn from(body: Body) -> MessageBody {
        MessageBody::Spool(body)
    }
}

impl MessageBody {
    /// A queued message as the relay will read it: in memory when it fits in one [`BLOCK`]
    /// (read now, once, instead of a blocking read per pass), else from the spool file.
    /// Blocking file I/O.
    pub fn load(body: Body) -> io::Result<MessageBody> {
        if body.len() > BLOCK as u64 {
            return Ok(MessageBody::Spool(body));
        }
        let mut bytes = Vec::with_capacity(body.len() as usize);
        body.reader().read_to_end(&mut bytes)?;
        Ok(MessageBody::Bytes(bytes.into()))
    }

    /// Octets in the message.
    pub fn len(&self) -> u64 {
        match self {
            MessageBody::Bytes(b) => b.len() as u64,
            MessageBody::Spool(b) => b.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The block of at most [`BLOCK`] octets at `pos`, read into `buf` (reused: its old
    /// contents are dropped); empty at the end of the message.
    pub(crate) async fn read_block(&self, pos: u64, mut buf: Vec<u8>) -> io::Result<Vec<u8>> {
        match self {
            MessageBody::Bytes(b) => {
                buf.clear();
                let start = usize::try_from(pos).unwrap_or(usize::MAX).min(b.len());
                let end = start.saturating_add(BLOCK).min(b.len());
                buf.extend_from_slice(&b[start..end]);
                Ok(buf)
            }
            MessageBody::Spool(body) => {
                let body = body.clone();
                tokio::task::spawn_blocking(move || {
                    // Only what the last read left short is zeroed (a full block is not
                    // zeroed again: the read overwrites it).
                    buf.resize(BLOCK, 0);
                    let n = body.read_at(pos, &mut buf)?;
                    buf.truncate(n);
                    Ok(buf)
                })
                .await
                .map_err(|e| io::Error::other(format!("reader task failed: {e}")))?
            }
        }
    }

    /// The traits of the message (one pass over it, block by block).
    pub(crate) async fn traits(
        &self,
        sender: &str,
        recipients: &[String],
    ) -> io::Result<MessageTraits> {
        if let MessageBody::Bytes(b) = self {
            return Ok(MessageTraits::of(sender, recipients, b));
        }
        let mut scanner = TraitsScanner::new();
        let mut pos = 0;
        let mut block = Vec::new();
        loop {
            block = self.read_block(pos, block).await?;
            if block.is_empty() {
                return Ok(scanner.finish(sender, recipients));
            }
            scanner.feed(&block);
            pos += block.len() as u64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_small_message_is_loaded_whole_a_large_one_stays_in_the_spool() {
        let t = tempfile::tempdir().unwrap();
        let spool = store::spool::Spool::open(t.path()).unwrap();
        let small = b"Subject: s\r\n\r\nsmall\r\n".to_vec();
        let mut large = b"Subject: l\r\n\r\n".to_vec();
        large.resize(BLOCK + 1, b'x');
        for (message, in_memory) in [(&small, true), (&large, false)] {
            let id = store::spool::new_id();
            let origin = store::spool::Origin::client("c");
            spool
                .enqueue(
                    &id,
                    "a@b.test",
                    &["c@d.test".into()],
                    &origin,
                    1,
                    &[message],
                )
                .await
                .unwrap();
            let (_, body) = spool.open_message(&id).unwrap();
            let loaded = MessageBody::load(body).unwrap();
            assert_eq!(matches!(loaded, MessageBody::Bytes(_)), in_memory);
            assert_eq!(loaded.len(), message.len() as u64);
            let mut read = Vec::new();
            let mut block = Vec::new();
            loop {
                block = loaded.read_block(read.len() as u64, block).await.unwrap();
                if block.is_empty() {
                    break;
                }
                read.extend_from_slice(&block);
            }
            assert_eq!(&read, message);
        }
    }
}
