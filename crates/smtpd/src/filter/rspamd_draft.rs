//! rspamd for a message streamed to its spool draft (larger than what a session keeps in
//! memory): the client's message goes to `/checkv2` from the file, one block at a time
//! ([`super::rspamd::Payload::File`]), so memory stays a block whatever the message size.
//! Its verdict applies as for a message in memory: a refusal drops the draft (its file is
//! removed), tags go on top of the header block, read back alone (at most `spill_at` and
//! some slack) and put back with `store::spool::Draft::replace_start` (the body copied file
//! to file). A message over `rspamd_max_size` is not sent (logged, counted).
//!
//! Not here: who is scanned and what rspamd's answer means (`super::rspamd`,
//! `super::rspamd_verdict`).

use std::io::{self, Seek};

use proto::smtp::Reply;
use store::spool::Draft;

use super::rspamd::{Meta, Payload, Rspamd};
use super::rspamd_verdict::{self, Verdict};

/// The client's message in `draft` and its length, on a new descriptor at its first octet.
fn client_message(draft: &mut Draft) -> io::Result<(std::fs::File, u64)> {
    let mut file = draft.client_message()?;
    let at = file.stream_position()?;
    let len = file.metadata()?.len().saturating_sub(at);
    Ok((file, len))
}

/// Scans the complete message in `draft`: `Err(reply)` refuses it (and drops the draft),
/// `Ok` stores it (tagged in place when rspamd said so). A file error leaves `Some(Err(e))`
/// in `draft` for the commit to report.
pub async fn scan_draft(
    rspamd: &Rspamd,
    meta: &Meta<'_>,
    spill_at: usize,
    draft: &mut Option<io::Result<Draft>>,
) -> Result<(), Reply> {
    let Some(Ok(file)) = draft.as_mut() else {
        return Ok(());
    };
    let (message, len) = match tokio::task::block_in_place(|| client_message(file)) {
        Ok(m) => m,
        Err(e) => {
            *draft = Some(Err(e));
            return Ok(());
        }
    };
    let from = proto::smtp::address::escape(meta.from);
    if rspamd.too_large(len, &from, meta.ip) {
        return Ok(());
    }
    let answer = rspamd.ask(meta, Payload::File { file: message, len }).await;
    let (headers, subject) = match rspamd.verdict(answer, meta) {
        Verdict::Accept => return Ok(()),
        Verdict::Refuse(reply) => {
            *draft = None;
            return Err(reply);
        }
        Verdict::Tag { headers, subject } => (headers, subject),
    };
    let limit = spill_at.saturating_add(crate::verify_draft::HEADER_SLACK);
    let tagged = tokio::task::block_in_place(|| -> io::Result<()> {
        let mut reader = file.client_message()?;
        let start = crate::verify_draft::read_start(&mut reader, limit)?;
        drop(reader);
        let head = rspamd_verdict::tagged(&start.head, &headers, subject.as_deref());
        file.replace_start(start.head.len() as u64, &head)
    });
    if let Err(e) = tagged {
        *draft = Some(Err(e));
    }
    Ok(())
}
