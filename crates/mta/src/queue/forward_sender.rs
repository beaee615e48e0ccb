//! The envelope sender of a forwarded copy: SRS (`proto::srs`) in the domain of the alias
//! that forwarded it, so the target's SPF check sees our domain and a bounce comes back to us
//! (the RCPT policy decodes it and sends it on to the original sender). Kept as it is for the
//! null sender, for senders in our own domains (our SPF covers them already), without a
//! secret, or when the SRS address would be too long. A DSN about a forwarded copy goes
//! straight to the original sender ([`Runner::dsn_recipient`]), not to our SRS address.

use super::runner::Runner;

impl Runner {
    pub(super) fn forward_sender(&self, sender: &str, alias: &str) -> String {
        let Some(secret) = &self.srs_secret else {
            return sender.to_string();
        };
        let (Some((_, sender_domain)), Some((_, alias_domain))) =
            (sender.rsplit_once('@'), alias.rsplit_once('@'))
        else {
            return sender.to_string();
        };
        if self
            .directory
            .is_local_domain(&sender_domain.to_ascii_lowercase())
            .unwrap_or(true)
        {
            return sender.to_string();
        }
        let day = self.clock.unix() / 86_400;
        match proto::srs::encode(secret, sender, day) {
            Some(local) => format!("{local}@{}", alias_domain.to_ascii_lowercase()),
            None => sender.to_string(),
        }
    }

    /// Where a DSN for a message from `sender` goes: the original address when `sender` is
    /// one of our valid SRS addresses, else `sender`.
    pub(super) fn dsn_recipient(&self, sender: &str) -> String {
        let Some(secret) = &self.srs_secret else {
            return sender.to_string();
        };
        let Some((local, domain)) = sender.rsplit_once('@') else {
            return sender.to_string();
        };
        if !proto::srs::is_srs(local)
            || !self
                .directory
                .is_local_domain(&domain.to_ascii_lowercase())
                .unwrap_or(false)
        {
            return sender.to_string();
        }
        let day = self.clock.unix() / 86_400;
        proto::srs::decode(secret, local, day).unwrap_or_else(|_| sender.to_string())
    }
}
