//! The checks of [`crate::verify`] on a message that was streamed to its spool draft
//! (larger than `Connection::spill_at`): without them a forged `p=reject` message would get
//! in by padding. Nothing is loaded whole: the header block (at most `spill_at`, which the
//! session checked before the first spill) is read from the draft and parsed alone, and the
//! body hashes every DKIM-Signature / ARC-Message-Signature asks for are computed from the
//! file in [`BLOCK`]-sized reads (mail-auth's `BodyHasher`, the same canonicalization it
//! uses on a message in memory) and handed to the verifier in place of the empty body's.
//!
//! Before the `250`: a refusal drops the draft (its file is removed); an accepted message
//! gets our `Authentication-Results:` on top of its header block and forged ones naming our
//! host removed (`store::spool::Draft::replace_start`, the body copied file to file).
//!
//! Not here: the decision (`proto::smtp::verdict`, through [`crate::verify::judge`]).

use std::io::{self, Read};
use std::net::IpAddr;

use dns::mail_auth::common::crypto::{HashAlgorithm, HashImpl, Sha1, Sha256};
use dns::mail_auth::dkim::canonicalize::BodyHasher;
use dns::mail_auth::dkim::Canonicalization;
use dns::mail_auth::AuthenticatedMessage;
use proto::smtp::verdict;
use proto::smtp::{Connection, Envelope, Reply, Service};
use store::spool::Draft;

use crate::verify::{applies, judge, Verifier};

/// Octets read from the draft at a time while hashing its body.
pub const BLOCK: usize = 64 * 1024;

/// Room beyond `spill_at` for the header block read back (the trace fields are before it).
pub(crate) const HEADER_SLACK: usize = 64 * 1024;

/// The header block of a streamed message and what follows it in the same read.
pub(crate) struct Start {
    /// The header block with its empty line: what mail-auth parses.
    pub(crate) head: Vec<u8>,
    /// Body octets read with it, hashed first.
    pub(crate) body: Vec<u8>,
}

/// Reads the start of the client's message: at most `limit` octets, split after the empty
/// line that ends the header block (none found within `limit`: all of it is the header
/// block and the body starts after it).
pub(crate) fn read_start(reader: &mut impl Read, limit: usize) -> io::Result<Start> {
    let mut buf = Vec::new();
    reader.take(limit as u64).read_to_end(&mut buf)?;
    let end = proto::smtp::headers::find_header_end(&buf);
    let body_at = if buf[end..].starts_with(b"\r\n") {
        end + 2
    } else if buf[end..].starts_with(b"\n") {
        end + 1
    } else {
        end
    };
    let body = buf.split_off(body_at);
    Ok(Start { head: buf, body })
}

enum Hasher {
    Sha1(BodyHasher<<Sha1 as HashImpl>::Context>),
    Sha256(BodyHasher<<Sha256 as HashImpl>::Context>),
}

impl Hasher {
    fn new(algorithm: HashAlgorithm, canonicalization: Canonicalization, l: u64) -> Hasher {
        match algorithm {
            HashAlgorithm::Sha1 => {
                Hasher::Sha1(BodyHasher::new(Sha1::hasher(), canonicalization, l))
            }
            HashAlgorithm::Sha256 => {
                Hasher::Sha256(BodyHasher::new(Sha256::hasher(), canonicalization, l))
            }
        }
    }

    fn write(&mut self, chunk: &[u8]) {
        match self {
            Hasher::Sha1(h) => h.write(chunk),
            Hasher::Sha256(h) => h.write(chunk),
        }
    }

    fn finish(self) -> Vec<u8> {
        use dns::mail_auth::common::crypto::HashContext;
        match self {
            Hasher::Sha1(h) => h.finish().0.complete().as_ref().to_vec(),
            Hasher::Sha256(h) => h.finish().0.complete().as_ref().to_vec(),
        }
    }
}

/// Sets every body hash `message` asks for from `first` then the rest of `reader`, read in
/// [`BLOCK`]s (one pass whatever the number of hashes).
fn hash_body(
    message: &mut AuthenticatedMessage<'_>,
    first: &[u8],
    reader: &mut impl Read,
) -> io::Result<()> {
    if message.body_hashes.is_empty() {
        return Ok(());
    }
    let mut hashers: Vec<Hasher> = message
        .body_hashes
        .iter()
        .map(|(c, h, l, _)| Hasher::new(*h, *c, *l))
        .collect();
    for h in &mut hashers {
        h.write(first);
    }
    let mut block = vec![0u8; BLOCK];
    loop {
        let n = match reader.read(&mut block) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        for h in &mut hashers {
            h.write(&block[..n]);
        }
    }
    for (slot, h) in message.body_hashes.iter_mut().zip(hashers) {
        slot.3 = h.finish();
    }
    Ok(())
}

/// The end-of-message check of a streamed message, its last bytes written already: `Ok`
/// to commit the draft (with our fields on top when it was checked) or `Err(reply)` to
/// refuse it (the caller drops the draft). A file error leaves `Some(Err(e))` in `draft`
/// for the commit to report.
pub async fn screen_draft(
    verifier: Option<&Verifier>,
    service: Service,
    conn: &Connection,
    ip: IpAddr,
    envelope: &Envelope,
    draft: &mut Option<io::Result<Draft>>,
) -> Result<(), Reply> {
    let Some(verifier) = verifier.filter(|_| applies(verifier, service, conn)) else {
        return Ok(());
    };
    let Some(Ok(file)) = draft.as_mut() else {
        return Ok(());
    };
    let limit = conn.spill_at().saturating_add(HEADER_SLACK);
    let read = tokio::task::block_in_place(|| -> io::Result<_> {
        let mut reader = file.client_message()?;
        let start = read_start(&mut reader, limit)?;
        Ok((reader, start))
    });
    let (mut reader, start) = match read {
        Ok(r) => r,
        Err(e) => {
            *draft = Some(Err(e));
            return Ok(());
        }
    };
    let mut parsed = AuthenticatedMessage::parse(&start.head);
    if let Some(m) = parsed.as_mut() {
        if let Err(e) = tokio::task::block_in_place(|| hash_body(m, &start.body, &mut reader)) {
            *draft = Some(Err(e));
            return Ok(());
        }
    }
    drop(reader);
    let helo = conn.session().helo_name();
    let v = verifier
        .check_parsed(ip, helo, &envelope.sender, parsed)
        .await;
    let header = judge(verifier, ip, envelope, &v)?;
    let stripped = verdict::strip_ours(&start.head, verifier.hostname());
    let mut new_start = header.into_bytes();
    new_start.extend_from_slice(stripped.as_deref().unwrap_or(&start.head));
    let old_len = start.head.len() as u64;
    if let Err(e) = tokio::task::block_in_place(|| file.replace_start(old_len, &new_start)) {
        *draft = Some(Err(e));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_split_after_the_empty_line() {
        let s = read_start(&mut &b"A: 1\r\nB: 2\r\n\r\nbody\r\n"[..], 100).unwrap();
        assert_eq!(s.head, b"A: 1\r\nB: 2\r\n\r\n");
        assert_eq!(s.body, b"body\r\n");
        // Cut by the limit before the empty line: all header, no body yet.
        let s = read_start(&mut &b"A: 1\r\nB: 2\r\n\r\nbody"[..], 8).unwrap();
        assert_eq!(s.head, b"A: 1\r\nB:");
        assert!(s.body.is_empty());
    }

    #[test]
    fn body_hashed_in_blocks_equals_mail_auth_on_the_whole_message() {
        // Signatures asking relaxed/sha256 and simple/sha1 body hashes (b= need not verify).
        let head = "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=x.test; s=s; \
                    h=from; bh=AAAA; b=AAAA\r\n\
                    DKIM-Signature: v=1; a=rsa-sha1; c=simple/simple; d=x.test; s=s; \
                    h=from; bh=AAAA; b=AAAA\r\n\
                    From: a@x.test\r\n\r\n";
        let mut body = Vec::new();
        for i in 0..40_000 {
            body.extend_from_slice(format!("line {i} \t with  spaces \r\n").as_bytes());
        }
        body.extend_from_slice(b"\r\n\r\n\r\n");
        let whole = [head.as_bytes(), &body].concat();
        let expected = AuthenticatedMessage::parse(&whole).unwrap();
        assert_eq!(expected.body_hashes.len(), 2);
        let mut reader = &whole[..];
        let start = read_start(&mut reader, 1000).unwrap();
        let mut parsed = AuthenticatedMessage::parse(&start.head).unwrap();
        hash_body(&mut parsed, &start.body, &mut reader).unwrap();
        assert_eq!(parsed.body_hashes, expected.body_hashes);
        assert_ne!(parsed.body_hashes[0].3, parsed.body_hashes[1].3);
    }
}
