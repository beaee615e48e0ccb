//! The ARC set a forwarded copy gets when it is queued (issue 18, item 4): a message
//! forwarded by an alias of ours to another domain keeps a verifiable record of the checks
//! we made on arrival, so DMARC-protected mail survives the hop at receivers that trust our
//! seal. Sealed once, with the alias domain's RSA key (`dkim::Keyring`), i = n + 1 over the
//! chain it came with (`dkim::arc_seal`, which also says when a chain is not to be sealed).
//!
//! Bounded: only the header block is held (at most [`HEAD_LIMIT`]); the body is hashed from
//! the spool file in blocks. A failure (no key, a file error) is logged and the copy is
//! forwarded without a seal: never a reason to hold the mail.

use store::spool::Body;

use super::runner::Runner;

/// The header block read back (a message's header block is at most `smtp.max_header_size`,
/// 1 MiB by default, plus our trace fields).
const HEAD_LIMIT: usize = (1 << 20) + 64 * 1024;

impl Runner {
    /// The ARC header fields for the copy of message `id` forwarded by `alias` (empty when
    /// there is no key for the alias's domain or nothing to seal). `checked`: the message came
    /// through the port 25 checks, so an `Authentication-Results:` naming us is ours (forged
    /// ones were removed); a verified sender's (submission, trusted network) was not checked
    /// and any such field in it is the sender's own: the AAR says `none`.
    pub(crate) fn arc_set(&self, id: &str, alias: &str, message: &Body, checked: bool) -> Vec<u8> {
        let Some(keyring) = &self.dkim else {
            return Vec::new();
        };
        let domain = alias.rsplit_once('@').map_or("", |(_, d)| d);
        let keys = match keyring.keys_for(&domain.to_ascii_lowercase()) {
            Ok(Some(keys)) => keys,
            Ok(None) => return Vec::new(),
            Err(e) => {
                tracing::warn!("delivery: {id}: forwarded copy not ARC-sealed: {e}");
                return Vec::new();
            }
        };
        let sealed = tokio::task::block_in_place(|| -> Result<Option<Vec<u8>>, String> {
            let mut start = message.head(HEAD_LIMIT).map_err(|e| e.to_string())?;
            let end = proto::smtp::headers::find_header_end(&start);
            let body_at = if start[end..].starts_with(b"\r\n") {
                end + 2
            } else {
                end + start[end..].starts_with(b"\n") as usize
            };
            let first = start.split_off(body_at);
            let mut rest = message.reader();
            std::io::copy(
                &mut std::io::Read::take(&mut rest, start.len() as u64 + first.len() as u64),
                &mut std::io::sink(),
            )
            .map_err(|e| e.to_string())?;
            let body_hash =
                dkim::arc_seal::relaxed_body_hash(&first, &mut rest).map_err(|e| e.to_string())?;
            let (results, seen) = if checked {
                dkim::arc_seal::our_results(&start, &self.hostname)
            } else {
                dkim::arc_seal::our_results(b"", &self.hostname)
            };
            dkim::arc_seal::seal(&keys, &start, body_hash, &results, seen)
        });
        match sealed {
            Ok(Some(set)) => set,
            Ok(None) => Vec::new(),
            Err(e) => {
                tracing::warn!("delivery: {id}: forwarded copy not ARC-sealed: {e}");
                Vec::new()
            }
        }
    }
}
