//! The web face of Mailroom: one axum application behind our own HTTP/1.1 listener.
//!
//! Port 80 ([`plain_router`]) answers ACME HTTP-01 challenges and redirects everything else to
//! https; port 443 ([`https_router`]) serves Thunderbird autoconfig and Outlook autodiscover
//! ([`autoconfig`]), the MTA-STS policy of our domains ([`mta_sts`]) and `/metrics`
//! ([`metrics`], from a supplier plugged in by `serve`), the `/admin` pages ([`admin_pages`])
//! and `/account` ([`account_pages`]) behind logins and sessions ([`login`], [`session`]).
//! [`listener`] bounds every connection (count, header size, header and request time, body
//! size, lifetime); paths with `..` or encoded dots are refused before any route.
//!
//! It does not open the directory or read the configuration file: `mailroom serve` hands it a
//! [`Site`] (plain settings), a [`Backend`] (what it may ask the directory) and a
//! [`Console`] (what the admin and account pages may ask and do).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

pub mod account_pages;
pub mod acme;
pub mod admin_pages;
pub mod admin_views;
pub mod console;
pub mod html;
pub mod login;
pub mod session;

pub use console::Console;
pub mod autoconfig;
pub mod listener;
pub mod metrics;
pub mod mta_sts;
pub mod tls_alpn;

/// What the web face may ask the mail server.
pub trait Backend: Send + Sync {
    /// Whether `domain` (lower case) is one of ours.
    fn is_local_domain(&self, domain: &str) -> bool;
}

/// The ports clients are told about; `None` when the service is not offered.
#[derive(Clone, Debug, Default)]
pub struct ClientPorts {
    pub pop3s: Option<u16>,
    pub submissions: Option<u16>,
    pub submission: Option<u16>,
}

/// Plain settings from the configuration.
#[derive(Clone, Debug)]
pub struct Site {
    /// Our host name: the MX, and the server clients are told to use.
    pub hostname: String,
    pub ports: ClientPorts,
    pub mta_sts: mta_sts::Policy,
    /// Who may read `/metrics`.
    pub metrics_networks: Vec<ipnet::IpNet>,
}

/// Where a request came from; put into every request's extensions by [`listener`].
#[derive(Clone, Copy, Debug)]
pub struct Peer {
    pub addr: SocketAddr,
    pub https: bool,
}

/// ACME answers in flight: HTTP-01 token -> key authorization, and the TLS-ALPN-01
/// certificates ([`tls_alpn::Pending`]).
#[derive(Clone, Default, Debug)]
pub struct Challenges(Arc<RwLock<HashMap<String, String>>>, pub tls_alpn::Pending);

impl Challenges {
    pub fn insert(&self, token: &str, key_authorization: &str) {
        self.0
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(token.to_string(), key_authorization.to_string());
    }

    pub fn remove(&self, token: &str) {
        self.0
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(token);
    }

    pub fn get(&self, token: &str) -> Option<String> {
        self.0
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(token)
            .cloned()
    }
}

/// A `/metrics` body supplier (the registry's `encode`).
pub type MetricsSupplier = Arc<dyn Fn() -> String + Send + Sync>;

/// Everything the handlers share.
#[derive(Clone)]
pub struct Web {
    pub site: Arc<Site>,
    pub backend: Arc<dyn Backend>,
    pub metrics: Option<MetricsSupplier>,
    pub challenges: Challenges,
    /// The admin and account pages' access to the server (`None`: those pages are `404`).
    pub console: Option<Arc<dyn Console>>,
    /// Their login sessions.
    pub sessions: Arc<session::Sessions>,
}

/// The host part of a `Host` header, lower case, when it is a plausible DNS name (letters,
/// digits, `-`, `.`); a port is dropped. Anything else (IP literals included) is `None`.
pub fn host_name(headers: &HeaderMap) -> Option<String> {
    let raw = headers.get(header::HOST)?.to_str().ok()?;
    let name = match raw.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => raw,
    };
    let name = name.trim_end_matches('.');
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    ok.then(|| name.to_ascii_lowercase())
}

/// Port 80: ACME HTTP-01 answers; everything else `301` to the same path over https.
pub fn plain_router(web: Web) -> Router {
    Router::new()
        .route("/.well-known/acme-challenge/{token}", get(acme_challenge))
        .fallback(to_https)
        .with_state(web)
}

async fn acme_challenge(State(web): State<Web>, Path(token): Path<String>) -> Response {
    match web.challenges.get(&token) {
        Some(answer) => ([(header::CONTENT_TYPE, "text/plain")], answer).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn to_https(State(web): State<Web>, headers: HeaderMap, uri: Uri) -> Response {
    let host = host_name(&headers).unwrap_or_else(|| web.site.hostname.clone());
    let path = uri
        .path_and_query()
        .map(|p| p.as_str())
        .filter(|p| p.starts_with('/'))
        .unwrap_or("/");
    let location = format!("https://{host}{path}");
    (
        StatusCode::MOVED_PERMANENTLY,
        [(header::LOCATION, location)],
    )
        .into_response()
}

/// Port 443: autoconfig, autodiscover, the MTA-STS policy, `/metrics`.
pub fn https_router(web: Web) -> Router {
    Router::new()
        .merge(autoconfig::routes())
        .merge(mta_sts::routes())
        .merge(metrics::routes())
        .merge(console_routes())
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(listener::MAX_BODY))
        .layer(axum::middleware::from_fn(refuse_dot_segments))
        .with_state(web)
}

/// `/admin` and `/account`.
fn console_routes() -> Router<Web> {
    use axum::routing::post;
    Router::new()
        .route(
            "/admin/login",
            get(login::admin_login_form).post(login::admin_login),
        )
        .route(
            "/account/login",
            get(login::account_login_form).post(login::account_login),
        )
        .route("/admin/logout", post(login::logout))
        .route("/account/logout", post(login::logout))
        .route("/account", get(account_pages::show))
        .route("/account/password", post(account_pages::change_password))
        .route("/admin", get(admin_pages::dashboard))
        .route("/admin/{section}", get(admin_pages::section))
        .route("/admin/{section}/{action}", post(admin_pages::action))
}

/// No route: under `/admin/` the admin gate answers first (no session: to the login), else
/// `404`.
async fn not_found(
    State(web): State<Web>,
    axum::Extension(peer): axum::Extension<Peer>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    if uri.path().starts_with("/admin/") {
        return admin_pages::other(State(web), axum::Extension(peer), headers).await;
    }
    StatusCode::NOT_FOUND.into_response()
}

/// Whether a request path holds a `..` or `.` segment, an encoded dot or slash, a
/// backslash or a NUL: nothing we serve has one, so such a path is refused whole.
pub fn suspicious_path(path: &str) -> bool {
    let lower = path.to_ascii_lowercase();
    path.split('/').any(|seg| seg == ".." || seg == ".")
        || ["%2e", "%2f", "%5c", "%00", "\\"]
            .iter()
            .any(|bad| lower.contains(bad))
}

async fn refuse_dot_segments(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if suspicious_path(request.uri().path()) {
        return (StatusCode::BAD_REQUEST, "bad path\n").into_response();
    }
    next.run(request).await
}

#[cfg(test)]
#[path = "console_tests.rs"]
mod console_tests;

#[cfg(test)]
mod tests {
    use super::*;

    fn host(v: &str) -> Option<String> {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, v.parse().unwrap());
        host_name(&h)
    }

    #[test]
    fn dot_segments_are_suspicious() {
        for bad in [
            "/admin/../../etc/passwd",
            "/admin/%2e%2e/%2E%2E/etc/passwd",
            "/./admin",
            "/admin/..%2fetc",
            "/admin\\..\\x",
        ] {
            assert!(suspicious_path(bad), "{bad}");
        }
        for good in [
            "/admin",
            "/admin/domain",
            "/.well-known/mta-sts.txt",
            "/mail/config-v1.1.xml",
        ] {
            assert!(!suspicious_path(good), "{good}");
        }
    }

    #[test]
    fn host_names_are_checked() {
        assert_eq!(
            host("MTA-STS.Example.org:443").as_deref(),
            Some("mta-sts.example.org")
        );
        assert_eq!(host("example.org.").as_deref(), Some("example.org"));
        assert_eq!(host("[::1]:443"), None);
        assert_eq!(host("evil.org/x"), None);
        assert_eq!(host("a b"), None);
    }
}
