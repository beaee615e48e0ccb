//! DKIM-signing mail as it is queued: a message whose sender was verified (authenticated
//! submission or a trusted network) and whose `From:` domain has active keys gets the
//! `DKIM-Signature:` fields of `dkim::Keyring` on top, once, before it is written to the
//! spool (so neither a retry nor a second recipient signs again). Mail that only goes into
//! local Maildirs directly is not signed.
//!
//! A message in memory is signed from that copy (no other); a message that was streamed to
//! its draft file is read back once and rewritten with the fields on top
//! (`store::spool::Draft::insert_headers`), one such message at a time ([`STREAMED`]), so
//! signing adds at most one `max_message_size` copy to the process, however many large
//! messages arrive together (`tests/e2e/test_relay_memory.py`: 8 x 40 MiB under 200 MiB).
//! Hashing the body while it streams to disk would remove that copy too; not done yet. A signing failure (a key file gone) is logged and
//! the message goes out unsigned rather than being refused.
//!
//! Not here: the signature (`dkim::signer`), the keys (`store::dkim_keys`).

use std::sync::Arc;

use dkim::Keyring;

fn sign_logged(keyring: &Keyring, id: &str, chunks: &[&[u8]]) -> Vec<u8> {
    match keyring.sign(chunks) {
        Ok(Some(fields)) => fields,
        Ok(None) => Vec::new(),
        Err(e) => {
            tracing::warn!("smtpd: {id}: not DKIM-signed: {e}");
            Vec::new()
        }
    }
}

/// What makes the signature fields for a message held in memory under the trace fields
/// `headers` (which may add `Date:` and `Message-ID:`; they are signed too), run by the spool
/// on the thread that writes the message (`store::spool::Lead`). `None` when it is not ours
/// to sign.
pub fn lead(
    keyring: Option<&Arc<Keyring>>,
    verified: bool,
    id: &str,
    headers: &str,
    message: &Arc<Vec<u8>>,
) -> Option<store::spool::Lead> {
    let keyring = keyring.filter(|_| verified)?.clone();
    let (message, id, headers) = (message.clone(), id.to_string(), headers.to_string());
    Some(Box::new(move || {
        sign_logged(&keyring, &id, &[headers.as_bytes(), &message])
    }))
}

/// Held while a streamed message is read back and signed: one at a time.
static STREAMED: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Signs a streamed message in its draft file (blocking: call from `block_in_place`).
pub fn sign_draft(
    keyring: Option<&Arc<Keyring>>,
    verified: bool,
    draft: &mut store::spool::Draft,
) -> std::io::Result<()> {
    let Some(keyring) = keyring.filter(|_| verified) else {
        return Ok(());
    };
    let id = draft.id().to_string();
    let _one_at_a_time = STREAMED.lock().unwrap_or_else(|e| e.into_inner());
    draft.insert_headers(|message| Ok(sign_logged(keyring, &id, &[message])))
}
