//! DKIM for the mail we send (RFC 6376, RFC 8463): making key pairs (`keygen`), the pure signer
//! that turns keys and a message into `DKIM-Signature:` header lines (`signer`), the DNS TXT
//! text of a public key (`record`), and the keyring the server signs with: the active keys of
//! a `From:` domain, loaded from `store::dkim_keys` and kept parsed until they change
//! (`keyring`).
//!
//! Not here: checking other people's signatures (the inbound checks), storing keys (`store`),
//! deciding which messages are ours to sign (the callers: `smtpd` at enqueue, the queue runner
//! for DSNs).

pub mod arc_seal;
pub mod keygen;
pub mod keyring;
pub mod record;
pub mod signer;

pub use keyring::Keyring;
