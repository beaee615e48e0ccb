//! The greeting and EHLO/HELO (RFC 5321 §4.1.1.1, §4.2): what the server says first, and the
//! extensions EHLO advertises (STARTTLS and AUTH only where `tls_auth` offers them).
//!
//! Not here: the effects of TLS on the hello state (`tls_auth`), MAIL and later commands.

use super::{reply, Hello, Session};
use crate::smtp::reply::Reply;
use crate::smtp::types::Action;

impl Session {
    /// The 220 greeting (RFC 5321 §4.2).
    pub fn greeting(&self) -> Reply {
        Reply::new(220, format!("{} ESMTP Mailroom", self.config.hostname))
    }

    /// EHLO or HELO: forget any transaction, remember the name, list the extensions.
    pub(super) fn hello(&mut self, kind: Hello, host: &str) -> Action {
        // RFC 5321 §4.1.4: EHLO/HELO resets any transaction.
        self.tx = None;
        self.hello = kind;
        self.helo_name = host.to_string();
        match kind {
            Hello::Ehlo => {
                let mut lines = vec![
                    self.config.hostname.clone(),
                    "PIPELINING".into(),
                    format!("SIZE {}", self.config.max_message_size),
                    "8BITMIME".into(),
                    "ENHANCEDSTATUSCODES".into(),
                    "SMTPUTF8".into(),
                    "CHUNKING".into(),
                ];
                // RFC 8689 §4.1: only on a session that is itself protected by TLS.
                if self.tls.is_some() {
                    lines.push("REQUIRETLS".into());
                }
                if self.starttls_offered() {
                    lines.push("STARTTLS".into());
                }
                if self.auth_offered() {
                    lines.push("AUTH PLAIN LOGIN".into());
                }
                Action::Reply(Reply::multi(250, lines))
            }
            _ => reply(250, self.config.hostname.clone()),
        }
    }
}
