//! Logging in and out of the `/admin` and `/account` pages, and the gate in front of them.
//!
//! - Logins only over HTTPS (`Peer::https`; port 80 redirects everything but ACME anyway),
//!   checked by [`Console::login`]: the same password check and login guard as SMTP AUTH and
//!   POP3, its delay served here (asynchronously) before the answer.
//! - The login form is protected from cross-site posting by a token of its own: a random
//!   value in a `mailroom_login` cookie and in the form, compared in constant time.
//! - A successful login makes a [`Sessions`] entry; its id goes into the `mailroom_session`
//!   cookie (`HttpOnly; Secure; SameSite=Strict; Path=/`). Logout removes it.
//! - [`signed_in`]: the session of a request and the account as the directory says *now*
//!   (a removed account or one whose admin flag was cleared loses access at its next
//!   request); [`csrf_ok`]: the session's token in a posted form.
//!
//! Not here: the pages themselves.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form};

use crate::console::{Console, Who};
use crate::html::Page;
use crate::session::{self, Session};
use crate::{Peer, Web};

pub const SESSION_COOKIE: &str = "mailroom_session";
pub const LOGIN_COOKIE: &str = "mailroom_login";
/// Longest address or password accepted from a form.
const MAX_FIELD: usize = 1024;

/// Runs blocking `f` (SQLite, argon2) off the event loop; `None` if it panicked.
pub async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    tokio::task::spawn_blocking(f).await.ok()
}

/// The value of cookie `name` in the request.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

fn set_cookie(name: &str, value: &str, max_age: u64) -> String {
    format!("{name}={value}; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age={max_age}")
}

/// Which login page: the admin's or the account's.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Door {
    Admin,
    Account,
}

impl Door {
    fn home(self) -> &'static str {
        match self {
            Door::Admin => "/admin",
            Door::Account => "/account",
        }
    }

    pub fn login_path(self) -> &'static str {
        match self {
            Door::Admin => "/admin/login",
            Door::Account => "/account/login",
        }
    }
}

/// `303` to `location`.
pub fn see_other(location: &str) -> Response {
    (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, location.to_string())],
    )
        .into_response()
}

fn not_https() -> Response {
    (StatusCode::FORBIDDEN, "logins only over https\n").into_response()
}

/// A session and the account behind it, as the directory says now.
pub struct SignedIn {
    pub id: String,
    pub session: Session,
    pub who: Who,
}

/// The request's session, if it is live, came over HTTPS and its account still exists.
pub async fn signed_in(web: &Web, peer: &Peer, headers: &HeaderMap) -> Option<SignedIn> {
    if !peer.https {
        return None;
    }
    let console = web.console.clone()?;
    let id = cookie(headers, SESSION_COOKIE)?;
    let session = web.sessions.get(&id, Instant::now())?;
    let address = session.address.clone();
    let who = blocking(move || console.who(&address)).await??;
    Some(SignedIn { id, session, who })
}

/// Whether `form`'s `csrf` field is the session's token.
pub fn csrf_ok(session: &Session, form: &HashMap<String, String>) -> bool {
    form.get("csrf")
        .is_some_and(|t| session::same(&session.csrf, t))
}

/// `403` for a missing or wrong CSRF token.
pub fn csrf_refused() -> Response {
    (StatusCode::FORBIDDEN, "missing or wrong CSRF token\n").into_response()
}

fn login_page(door: Door, status: StatusCode, error: Option<&str>) -> Response {
    let token = session::token();
    let title = match door {
        Door::Admin => "Mailroom admin: log in",
        Door::Account => "Mailroom account: log in",
    };
    let mut page = Page::new(title, &token);
    if let Some(e) = error {
        page.message(false, e);
    }
    match door {
        Door::Admin => page.form("/admin/login", false),
        Door::Account => page.form("/account/login", false),
    };
    page.input("Address", "address", "text")
        .input("Password", "password", "password")
        .submit("Log in")
        .end_form();
    let mut response = page.finish();
    *response.status_mut() = status;
    if let Ok(v) = set_cookie(LOGIN_COOKIE, &token, 3600).parse() {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

pub async fn admin_login_form(Extension(peer): Extension<Peer>) -> Response {
    if !peer.https {
        return not_https();
    }
    login_page(Door::Admin, StatusCode::OK, None)
}

pub async fn account_login_form(Extension(peer): Extension<Peer>) -> Response {
    if !peer.https {
        return not_https();
    }
    login_page(Door::Account, StatusCode::OK, None)
}

pub async fn admin_login(
    State(web): State<Web>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    login(web, peer, headers, form, Door::Admin).await
}

pub async fn account_login(
    State(web): State<Web>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    login(web, peer, headers, form, Door::Account).await
}

/// Checks a password with the console under the login guard (its delay served here).
pub async fn check_password(
    console: Arc<dyn Console>,
    peer: &Peer,
    address: &str,
    password: &str,
) -> Option<Who> {
    let (ip, a, p) = (peer.addr.ip(), address.to_string(), password.to_string());
    let answer = blocking(move || console.login(ip, &a, &p)).await?;
    if !answer.delay.is_zero() {
        tokio::time::sleep(answer.delay).await;
    }
    answer.who
}

async fn login(
    web: Web,
    peer: Peer,
    headers: HeaderMap,
    form: HashMap<String, String>,
    door: Door,
) -> Response {
    if !peer.https {
        return not_https();
    }
    let Some(console) = web.console.clone() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let posted = form.get("csrf").map(String::as_str).unwrap_or("");
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if !session::same(&expected, posted) {
        return csrf_refused();
    }
    let address = form.get("address").map(|a| a.trim()).unwrap_or("");
    let password = form.get("password").map(String::as_str).unwrap_or("");
    if address.is_empty() || address.len() > MAX_FIELD || password.len() > MAX_FIELD {
        return login_page(
            door,
            StatusCode::BAD_REQUEST,
            Some("address and password, please"),
        );
    }
    let Some(who) = check_password(console, &peer, address, password).await else {
        return login_page(door, StatusCode::UNAUTHORIZED, Some("login failed"));
    };
    if door == Door::Admin && !who.admin {
        tracing::warn!(client = %peer.addr.ip(), user = %who.address, "http: admin login refused: not an admin");
        return (StatusCode::FORBIDDEN, "this account is not an admin\n").into_response();
    }
    let Some((id, _csrf)) = web.sessions.create(&who.address, Instant::now()) else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    tracing::info!(client = %peer.addr.ip(), user = %who.address, page = door.home(), "http: login");
    let mut response = see_other(door.home());
    let cookies = [
        set_cookie(SESSION_COOKIE, &id, session::ABSOLUTE.as_secs()),
        set_cookie(LOGIN_COOKIE, "", 0),
    ];
    for c in cookies {
        if let Ok(v) = c.parse() {
            response.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    response
}

/// `POST /admin/logout`, `POST /account/logout` (with the CSRF token).
pub async fn logout(
    State(web): State<Web>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let Some(me) = signed_in(&web, &peer, &headers).await else {
        return see_other("/account/login");
    };
    if !csrf_ok(&me.session, &form) {
        return csrf_refused();
    }
    web.sessions.remove(&me.id);
    let mut response = see_other("/account/login");
    if let Ok(v) = set_cookie(SESSION_COOKIE, "", 0).parse() {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_by_name() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            "a=1; mailroom_session=abc; b=2".parse().unwrap(),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE).as_deref(), Some("abc"));
        assert_eq!(cookie(&h, "mailroom"), None);
        assert_eq!(cookie(&h, LOGIN_COOKIE), None);
    }

    #[test]
    fn session_cookie_attributes() {
        let c = set_cookie(SESSION_COOKIE, "x", 60);
        for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/"] {
            assert!(c.contains(attr), "{c}");
        }
    }
}
