//! Reading a queued message without loading it: [`Spool::open_message`] parses the envelope
//! from the head of `msg/<id>` and returns the message bytes as a [`Body`], a window onto the
//! open file that is read in bounded blocks (positional reads, so one `Body` can be read by
//! several readers, one after the other or at once). [`Spool::enqueue_body`] queues a copy of
//! a body (forwarding) the same way.
//!
//! Nothing here holds more than one block of a message; [`Spool::read`] is still there for
//! small uses and tests.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

use super::{check_id, invalid_data, parse_envelope, Envelope, Origin, Spool};

/// Octets read at a time: from the spool file, and into a copy.
pub const BLOCK: usize = 64 * 1024;
/// An envelope longer than this is not one of ours (a recipient line is a few hundred octets
/// and SMTP limits the recipients).
const MAX_ENVELOPE: usize = 16 << 20;

/// The message bytes of a queued message: `len` octets of an open spool file from `offset`.
/// Cheap to clone; the file stays open (and readable, even if the message is removed from the
/// queue meanwhile) until the last clone is dropped.
#[derive(Clone, Debug)]
pub struct Body {
    file: Arc<File>,
    offset: u64,
    len: u64,
}

impl Body {
    /// Octets in the message.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Reads message octets from position `pos` into `buf` (at most to the end of the
    /// message); returns how many, 0 at the end. Blocking file I/O.
    pub fn read_at(&self, pos: u64, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.len.saturating_sub(pos);
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.offset + pos)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "queue file is shorter than when it was opened",
            ));
        }
        Ok(n)
    }

    /// A reader of the whole message from its first octet (blocking file I/O).
    pub fn reader(&self) -> BodyReader<'_> {
        BodyReader { body: self, pos: 0 }
    }

    /// The first `max` octets (or all, if shorter): enough for a header block.
    pub fn head(&self, max: usize) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        self.reader().take(max as u64).read_to_end(&mut out)?;
        Ok(out)
    }
}

/// See [`Body::reader`].
pub struct BodyReader<'a> {
    body: &'a Body,
    pos: u64,
}

impl Read for BodyReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.body.read_at(self.pos, buf)?;
        self.pos += n as u64;
        Ok(n)
    }
}

impl Spool {
    /// Opens one message for delivery: its envelope, parsed as [`Spool::read`] parses it, and
    /// its bytes as a [`Body`] to read in blocks. Reads only the envelope (in [`BLOCK`]s); a
    /// malformed file is `InvalidData`.
    pub fn open_message(&self, id: &str) -> io::Result<(Envelope, Body)> {
        check_id(id)?;
        let file = super::open_shared(&self.msg.join(id))?;
        let size = file.metadata()?.len();
        let mut head = Vec::new();
        let mut block = vec![0u8; BLOCK.min(size as usize).max(1)];
        // Values are escaped, so the first empty line ends the envelope; `from`: where the
        // search goes on after the last read (one octet back, for a "\n\n" across reads).
        let mut from = 0;
        let end = loop {
            if let Some(p) = head[from..].windows(2).position(|w| w == b"\n\n") {
                break from + p + 2;
            }
            from = head.len().saturating_sub(1);
            if head.len() > MAX_ENVELOPE {
                return Err(invalid_data(format!("{id}: envelope too long")));
            }
            let n = file.read_at(&mut block, head.len() as u64)?;
            if n == 0 {
                return Err(invalid_data(format!("{id}: truncated envelope")));
            }
            head.extend_from_slice(&block[..n]);
        };
        let (env, parsed) = parse_envelope(id, &head[..end])?;
        debug_assert_eq!(parsed, end);
        let body = Body {
            file: Arc::new(file),
            offset: end as u64,
            len: size - end as u64,
        };
        Ok((env, body))
    }

    /// [`Spool::enqueue`] for a message that is `prefix` followed by `body` (another queued
    /// message's bytes, e.g. a forwarded copy): the body is copied in [`BLOCK`]s on a blocking
    /// thread, then the file is made durable and committed exactly as `enqueue` does. Must be
    /// called inside a tokio runtime.
    #[allow(clippy::too_many_arguments)]
    pub async fn enqueue_body(
        &self,
        id: &str,
        sender: &str,
        recipients: &[String],
        origin: &Origin<'_>,
        received: u64,
        prefix: &[u8],
        body: &Body,
    ) -> io::Result<()> {
        let mut draft = self.begin(id, sender, recipients, origin, received, prefix)?;
        let body = body.clone();
        let draft = tokio::task::spawn_blocking(move || {
            let mut block = vec![0u8; BLOCK];
            let mut pos = 0;
            loop {
                let n = body.read_at(pos, &mut block)?;
                if n == 0 {
                    return Ok::<_, io::Error>(draft);
                }
                draft.write(&block[..n])?;
                pos += n as u64;
            }
        })
        .await
        .map_err(|e| io::Error::other(format!("spool writer task failed: {e}")))??;
        self.commit(draft).await
    }
}
