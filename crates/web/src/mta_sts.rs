//! The MTA-STS policy (RFC 8461) of our domains, served at
//! `https://mta-sts.<domain>/.well-known/mta-sts.txt`, and the `id` of its `_mta-sts` TXT
//! record: a digest of the policy text, so it changes whenever the policy does (§3.1: senders
//! fetch the policy again only when the id changes).
//!
//! Pure [`Policy::text`] and [`Policy::id`]; the handler answers only for a `Host` that is
//! `mta-sts.` + one of our domains.

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::{host_name, Web};

/// `mode:` of the policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Testing,
    Enforce,
    None,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Testing => "testing",
            Mode::Enforce => "enforce",
            Mode::None => "none",
        }
    }
}

/// One policy for every domain: the MX is our host name.
#[derive(Clone, Debug)]
pub struct Policy {
    pub mode: Mode,
    pub mx: String,
    /// Seconds (RFC 8461 §3.2: at most 31557600).
    pub max_age: u64,
}

impl Policy {
    /// The policy file, CRLF line ends (§3.2).
    pub fn text(&self) -> String {
        format!(
            "version: STSv1\r\nmode: {}\r\nmx: {}\r\nmax_age: {}\r\n",
            self.mode.as_str(),
            self.mx,
            self.max_age.min(31_557_600)
        )
    }

    /// The TXT record's `id`: 20 hex digits of the SHA-256 of [`Policy::text`].
    pub fn id(&self) -> String {
        let digest = ring::digest::digest(&ring::digest::SHA256, self.text().as_bytes());
        digest.as_ref()[..10]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// The `_mta-sts.<domain>` TXT value.
    pub fn txt(&self) -> String {
        format!("v=STSv1; id={}", self.id())
    }
}

pub fn routes() -> Router<Web> {
    Router::new().route("/.well-known/mta-sts.txt", get(policy_handler))
}

async fn policy_handler(State(web): State<Web>, headers: HeaderMap) -> Response {
    let ours = host_name(&headers)
        .and_then(|h| h.strip_prefix("mta-sts.").map(str::to_string))
        .filter(|d| web.backend.is_local_domain(d));
    match ours {
        Some(_) => (
            [(header::CONTENT_TYPE, "text/plain")],
            web.site.mta_sts.text(),
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(mode: Mode) -> Policy {
        Policy {
            mode,
            mx: "mx.example.org".into(),
            max_age: 604_800,
        }
    }

    #[test]
    fn the_policy_text_follows_rfc_8461() {
        assert_eq!(
            policy(Mode::Enforce).text(),
            "version: STSv1\r\nmode: enforce\r\nmx: mx.example.org\r\nmax_age: 604800\r\n"
        );
    }

    #[test]
    fn the_id_changes_with_the_policy_and_only_then() {
        let a = policy(Mode::Testing);
        assert_eq!(a.id(), policy(Mode::Testing).id());
        assert_ne!(a.id(), policy(Mode::Enforce).id());
        assert_ne!(
            a.id(),
            Policy {
                max_age: 86_400,
                ..a.clone()
            }
            .id()
        );
        assert_eq!(a.id().len(), 20);
        assert!(a.id().bytes().all(|b| b.is_ascii_alphanumeric()));
        assert!(a.txt().starts_with("v=STSv1; id="));
    }
}
