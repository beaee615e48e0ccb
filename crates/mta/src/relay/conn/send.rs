//! Sending the message of a transaction, streamed from its [`MessageBody`] one block at a
//! time: as a DATA section dot-stuffed on the fly ([`DotStuffer::data`]), or as `BDAT` chunks
//! when the server offers CHUNKING (RFC 3030: the octets are counted, not dot-stuffed; line
//! ends are still made CRLF, [`DotStuffer::chunked`]). With PIPELINING, up to
//! [`BDAT_WINDOW`] chunks are sent before their replies are read. Memory is a few buffers of
//! about [`BLOCK`] octets, whatever the message size.
//!
//! It does not decide what the replies mean for each recipient ([`proto::smtp::client::outcomes`]).

use proto::smtp::client::{bdat, DotStuffer};
use proto::smtp::Reply;

use super::Conn;
use crate::relay::body::{MessageBody, BLOCK};

/// BDAT chunks in flight (sent, reply not read yet) with PIPELINING; 1 without.
const BDAT_WINDOW: usize = 8;

/// How sending the message ended.
pub(super) enum Sent {
    /// The reply to the final `.` or `BDAT ... LAST`, or to the first refused chunk.
    Reply(Reply),
    /// The connection failed before the end of the message was sent: nothing was delivered.
    Io(String),
    /// The connection failed after the end of the message was sent: it may have been taken.
    IoAfterEnd(String),
    /// The queued message could not be read: the transaction must not end (the connection is
    /// dropped, so the server discards what it got).
    Local(String),
}

impl Conn {
    /// The DATA section after `354`: the message dot-stuffed block by block, then `.` CRLF,
    /// then the reply. `empty`: send only the `.` (pipelined DATA with no recipient accepted).
    pub(super) async fn send_data(&mut self, message: &MessageBody, empty: bool) -> Sent {
        let mut stuffer = DotStuffer::data();
        let mut block = Vec::with_capacity(BLOCK);
        let mut out = Vec::with_capacity(DotStuffer::max_output(BLOCK));
        // An empty section reads nothing: it starts at the end.
        let mut pos = if empty { message.len() } else { 0 };
        loop {
            block = match message.read_block(pos, block).await {
                Ok(b) => b,
                Err(e) => return Sent::Local(format!("cannot read the queued message: {e}")),
            };
            if block.is_empty() {
                break;
            }
            pos += block.len() as u64;
            out.clear();
            stuffer.feed(&block, &mut out);
            if let Err(e) = self.write(&out, self.timeouts.data_block).await {
                return Sent::Io(e);
            }
        }
        out.clear();
        stuffer.finish(&mut out);
        if let Err(e) = self.write(&out, self.timeouts.data_block).await {
            return Sent::Io(e);
        }
        match self.read_reply(self.timeouts.data_end).await {
            Ok(r) => Sent::Reply(r),
            Err(e) => Sent::IoAfterEnd(e),
        }
    }

    /// The message as `BDAT n` chunks of about [`BLOCK`] octets, the last one `BDAT n LAST`
    /// (RFC 3030 §2), each command and its octets in one write. Stops sending at the first
    /// refused chunk (RFC 3030 §2: no more BDAT after a 4xx or 5xx) but reads the replies of
    /// the chunks already sent.
    pub(super) async fn send_chunks(&mut self, message: &MessageBody, pipelining: bool) -> Sent {
        let window = if pipelining { BDAT_WINDOW } else { 1 };
        let mut chunker = DotStuffer::chunked();
        let mut block = Vec::with_capacity(BLOCK);
        let mut payload = Vec::with_capacity(DotStuffer::max_output(BLOCK));
        let mut frame = Vec::with_capacity(DotStuffer::max_output(BLOCK) + 32);
        let mut pos = 0u64;
        let mut in_flight = 0usize;
        let mut refused = None;
        let mut last_sent = false;
        while !last_sent {
            block = match message.read_block(pos, block).await {
                Ok(b) => b,
                Err(e) => return Sent::Local(format!("cannot read the queued message: {e}")),
            };
            pos += block.len() as u64;
            let last = block.is_empty() || pos >= message.len();
            payload.clear();
            chunker.feed(&block, &mut payload);
            if last {
                chunker.finish(&mut payload);
            }
            frame.clear();
            frame.extend_from_slice(bdat(payload.len(), last).as_bytes());
            frame.extend_from_slice(&payload);
            if let Err(e) = self.write(&frame, self.timeouts.data_block).await {
                return Sent::Io(e);
            }
            in_flight += 1;
            last_sent = last;
            while in_flight >= window && !last_sent {
                in_flight -= 1;
                match self.read_reply(self.timeouts.mail).await {
                    Ok(r) if r.code / 100 == 2 => {}
                    Ok(r) => {
                        refused = Some(r);
                        break;
                    }
                    Err(e) => return Sent::Io(e),
                }
            }
            if refused.is_some() {
                break;
            }
        }
        // The replies still due, in order: the first refusal decides, else the last reply.
        let mut end = refused;
        while in_flight > 0 {
            in_flight -= 1;
            let limit = if in_flight == 0 && last_sent {
                self.timeouts.data_end
            } else {
                self.timeouts.mail
            };
            match self.read_reply(limit).await {
                Ok(r) => {
                    if end.as_ref().is_none_or(|e: &Reply| e.code / 100 == 2) {
                        end = Some(r);
                    }
                }
                Err(e) if last_sent => return Sent::IoAfterEnd(e),
                Err(e) => return Sent::Io(e),
            }
        }
        match end {
            Some(r) => Sent::Reply(r),
            None => Sent::Io("no reply to BDAT".into()),
        }
    }
}
