//! `/account`: any account's own page. It shows the address and the aliases delivering to
//! it, and changes the password (the current one checked under the login guard, the new one
//! by the CLI's strength rule; the account's other sessions end). Nothing of another account
//! is reachable: the only address used is the session's.
//!
//! Not here: logging in (`login`).

use std::collections::HashMap;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form};

use crate::html::Page;
use crate::login::{self, blocking, see_other, SignedIn};
use crate::{Peer, Web};

pub async fn show(
    State(web): State<Web>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
) -> Response {
    match login::signed_in(&web, &peer, &headers).await {
        Some(me) => page(&web, &me, None).await,
        None => see_other("/account/login"),
    }
}

async fn page(web: &Web, me: &SignedIn, note: Option<(bool, String)>) -> Response {
    let Some(console) = web.console.clone() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let address = me.who.address.clone();
    let aliases = blocking(move || console.aliases_of(&address))
        .await
        .unwrap_or_else(|| Err("internal error".into()));
    let mut p = Page::new("Your mail account", &me.session.csrf);
    p.raw("<nav>");
    if me.who.admin {
        p.link("/admin", "Admin");
    }
    p.form("/account/logout", true).submit("Log out").end_form();
    p.raw("</nav>\n<p>Logged in as <strong id=\"me\">")
        .text(&me.who.address)
        .raw("</strong></p>\n");
    if let Some((ok, text)) = &note {
        p.message(*ok, text);
    }
    p.raw("<h2>Your aliases</h2>\n");
    match aliases {
        Ok(list) if list.is_empty() => {
            p.raw("<p>No alias delivers to this address.</p>\n");
        }
        Ok(list) => {
            p.raw("<table id=\"aliases\"><tr><th>Alias</th><th>Delivers to</th></tr>\n");
            for (alias, targets) in &list {
                p.raw("<tr>")
                    .element("td", alias)
                    .element("td", &targets.join(", "))
                    .raw("</tr>\n");
            }
            p.raw("</table>\n");
        }
        Err(e) => {
            p.message(false, &e);
        }
    }
    p.raw("<h2>Change your password</h2>\n");
    p.form("/account/password", false)
        .input("Current password", "current", "password")
        .input("New password", "new", "password")
        .input("New password again", "again", "password")
        .submit("Change password")
        .end_form();
    let mut response = p.finish();
    if let Some((false, _)) = note {
        *response.status_mut() = StatusCode::BAD_REQUEST;
    }
    response
}

pub async fn change_password(
    State(web): State<Web>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let Some(me) = login::signed_in(&web, &peer, &headers).await else {
        return see_other("/account/login");
    };
    if !login::csrf_ok(&me.session, &form) {
        return login::csrf_refused();
    }
    let Some(console) = web.console.clone() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let field = |k: &str| form.get(k).cloned().unwrap_or_default();
    let (current, new, again) = (field("current"), field("new"), field("again"));
    if new != again {
        return page(&web, &me, Some((false, "the new passwords differ".into()))).await;
    }
    if new.len() > 1024 {
        return page(&web, &me, Some((false, "password too long".into()))).await;
    }
    if login::check_password(console.clone(), &peer, &me.who.address, &current)
        .await
        .is_none()
    {
        return page(
            &web,
            &me,
            Some((false, "the current password is wrong".into())),
        )
        .await;
    }
    let address = me.who.address.clone();
    let result = blocking(move || console.change_password(&address, &new))
        .await
        .unwrap_or_else(|| Err("internal error".into()));
    match result {
        Ok(()) => {
            web.sessions.remove_others(&me.who.address, &me.id);
            tracing::info!(client = %peer.addr.ip(), user = %me.who.address, "http: password changed");
            page(&web, &me, Some((true, "Password changed.".into()))).await
        }
        Err(e) => page(&web, &me, Some((false, e))).await,
    }
}
