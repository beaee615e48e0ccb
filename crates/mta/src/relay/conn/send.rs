//! Writing the message of a transaction, streamed from its [`MessageBody`] one block at a
//! time: as a DATA section dot-stuffed on the fly ([`DotStuffer::data`]), or as one `BDAT`
//! chunk per block when the session asks for chunks (RFC 3030: the octets are counted, not
//! dot-stuffed; line ends are still made CRLF, [`DotStuffer::chunked`]). Memory is a few
//! buffers of about [`BLOCK`] octets, whatever the message size.
//!
//! It reads no reply and decides nothing: how many chunks go before a reply is read, and what
//! the replies mean, is [`proto::smtp::client::Session`]'s.

use proto::smtp::client::{bdat, DotStuffer};

use super::Conn;
use crate::relay::body::{MessageBody, BLOCK};

/// Why the message could not be written.
pub(super) enum BodyError {
    /// The connection failed.
    Io(String),
    /// The queued message could not be read.
    Local(String),
}

fn unreadable(e: std::io::Error) -> BodyError {
    BodyError::Local(format!("cannot read the queued message: {e}"))
}

/// Where the BDAT chunks of one transaction are: the position in the message and the
/// line-end repair state carried from chunk to chunk, with the buffers reused for each.
pub(super) struct Chunks {
    chunker: DotStuffer,
    pos: u64,
    block: Vec<u8>,
    payload: Vec<u8>,
    frame: Vec<u8>,
}

impl Chunks {
    pub fn new() -> Chunks {
        Chunks {
            chunker: DotStuffer::chunked(),
            pos: 0,
            block: Vec::new(),
            payload: Vec::new(),
            frame: Vec::new(),
        }
    }
}

impl Conn {
    /// The DATA section after `354`: the message dot-stuffed block by block, then `.` CRLF.
    /// `empty`: only the `.` (pipelined DATA with no recipient accepted).
    pub(super) async fn send_data(
        &mut self,
        message: &MessageBody,
        empty: bool,
    ) -> Result<(), BodyError> {
        let mut stuffer = DotStuffer::data();
        let mut block = Vec::with_capacity(BLOCK);
        let mut out = Vec::with_capacity(DotStuffer::max_output(BLOCK));
        // An empty section reads nothing: it starts at the end.
        let mut pos = if empty { message.len() } else { 0 };
        loop {
            block = message.read_block(pos, block).await.map_err(unreadable)?;
            if block.is_empty() {
                break;
            }
            pos += block.len() as u64;
            out.clear();
            stuffer.feed(&block, &mut out);
            self.write(&out, self.timeouts.data_block)
                .await
                .map_err(BodyError::Io)?;
        }
        out.clear();
        stuffer.finish(&mut out);
        self.write(&out, self.timeouts.data_block)
            .await
            .map_err(BodyError::Io)
    }

    /// The next block of the message as `BDAT n` (or `BDAT n LAST` at the end, RFC 3030 §2),
    /// the command and its octets in one write. True when it was the last chunk.
    pub(super) async fn send_chunk(
        &mut self,
        message: &MessageBody,
        chunks: &mut Chunks,
    ) -> Result<bool, BodyError> {
        let block = std::mem::take(&mut chunks.block);
        chunks.block = message
            .read_block(chunks.pos, block)
            .await
            .map_err(unreadable)?;
        chunks.pos += chunks.block.len() as u64;
        let last = chunks.block.is_empty() || chunks.pos >= message.len();
        chunks.payload.clear();
        chunks.chunker.feed(&chunks.block, &mut chunks.payload);
        if last {
            chunks.chunker.finish(&mut chunks.payload);
        }
        chunks.frame.clear();
        chunks
            .frame
            .extend_from_slice(bdat(chunks.payload.len(), last).as_bytes());
        chunks.frame.extend_from_slice(&chunks.payload);
        self.write(&chunks.frame, self.timeouts.data_block)
            .await
            .map_err(BodyError::Io)?;
        Ok(last)
    }
}
