//! `/admin`: the pages of accounts marked admin. A request without a session is sent to
//! `/admin/login` (`303`), a logged-in account that is not an admin gets `403`, a POST
//! without the session's CSRF token gets `403` and changes nothing.
//!
//! Pages (GET): the dashboard (`/admin`), `/admin/domains`, `/admin/domain?name=` (DKIM
//! keys, the records of `dns-records`, a button running `dns-check`), `/admin/accounts`,
//! `/admin/aliases`, `/admin/queue`, `/admin/message?id=`. Actions (POST
//! `/admin/{section}/{action}`) call the [`Console`](crate::console::Console), which runs
//! the CLI's own functions; the answer is the section's page with the outcome on top.
//!
//! Not here: logging in (`login`), HTML escaping (`html`).

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Form};

use crate::console::Console;
use crate::html::Page;
use crate::login::{self, blocking, see_other, SignedIn};
use crate::{Peer, Web};

type Fields = HashMap<String, String>;

/// The signed-in admin, or the answer for everybody else.
async fn gate(web: &Web, peer: &Peer, headers: &HeaderMap) -> Result<SignedIn, Response> {
    match login::signed_in(web, peer, headers).await {
        None => Err(see_other("/admin/login")),
        Some(me) if !me.who.admin => Err((StatusCode::FORBIDDEN, "admins only\n").into_response()),
        Some(me) => Ok(me),
    }
}

pub async fn dashboard(
    State(web): State<Web>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
) -> Response {
    match gate(&web, &peer, &headers).await {
        Ok(me) => render(&web, &me, "dashboard", &Fields::new(), None).await,
        Err(r) => r,
    }
}

pub async fn section(
    State(web): State<Web>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    Path(section): Path<String>,
    Query(query): Query<Fields>,
) -> Response {
    match gate(&web, &peer, &headers).await {
        Ok(me) => render(&web, &me, &section, &query, None).await,
        Err(r) => r,
    }
}

/// Any other `/admin/...` path: the gate, then `404`.
pub async fn other(
    State(web): State<Web>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
) -> Response {
    match gate(&web, &peer, &headers).await {
        Ok(_) => StatusCode::NOT_FOUND.into_response(),
        Err(r) => r,
    }
}

pub async fn action(
    State(web): State<Web>,
    Extension(peer): Extension<Peer>,
    headers: HeaderMap,
    Path((section, action)): Path<(String, String)>,
    Form(form): Form<Fields>,
) -> Response {
    let me = match gate(&web, &peer, &headers).await {
        Ok(me) => me,
        Err(r) => return r,
    };
    if !login::csrf_ok(&me.session, &form) {
        tracing::warn!(client = %peer.addr.ip(), user = %me.who.address, "http: admin POST refused: CSRF token");
        return login::csrf_refused();
    }
    let Some(console) = web.console.clone() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let by = format!("web admin {}", me.who.address);
    let (s, a, f) = (section.clone(), action.clone(), form.clone());
    let outcome = blocking(move || run(&*console, &s, &a, &f, &by))
        .await
        .unwrap_or_else(|| Some(Err("internal error".into())));
    let Some(outcome) = outcome else {
        return StatusCode::NOT_FOUND.into_response();
    };
    tracing::info!(
        client = %peer.addr.ip(),
        user = %me.who.address,
        action = %format!("{section}/{action}"),
        ok = outcome.is_ok(),
        "http: admin action"
    );
    if outcome.is_ok() && section == "accounts" && (action == "password" || action == "remove") {
        // A new password (or no account) ends the account's sessions everywhere.
        web.sessions.remove_others(field(&form, "address"), "");
    }
    let note = match outcome {
        Ok(text) => (true, text),
        Err(text) => (false, text),
    };
    render(&web, &me, &section, &form, Some(note)).await
}

fn field<'f>(form: &'f Fields, name: &str) -> &'f str {
    form.get(name).map(|v| v.trim()).unwrap_or("")
}

/// One action; `None` when there is no such action. `Ok`: what to tell the admin.
fn run(
    c: &dyn Console,
    section: &str,
    action: &str,
    form: &Fields,
    by: &str,
) -> Option<Result<String, String>> {
    let f = |n: &str| field(form, n);
    Some(match (section, action) {
        ("domains", "add") => c.add_domain(f("domain")).map(|made| {
            let mut text = format!("domain {} added", f("domain").to_lowercase());
            for m in made {
                text.push_str("; ");
                text.push_str(&m);
            }
            text
        }),
        ("domains", "remove") => c
            .remove_domain(f("domain"))
            .map(|()| format!("domain {} removed", f("domain"))),
        ("domain", "check") => Ok(String::new()),
        ("accounts", "add") => c
            .add_account(
                f("address"),
                form.get("password").map_or("", |p| p),
                f("admin") == "on",
            )
            .map(|()| format!("account {} added", f("address"))),
        ("accounts", "password") => c
            .set_password(f("address"), form.get("password").map_or("", |p| p))
            .map(|()| format!("password of {} changed", f("address"))),
        ("accounts", "remove") => c
            .remove_account(f("address"))
            .map(|()| format!("account {} removed", f("address"))),
        ("aliases", "add") => {
            let targets: Vec<String> = f("targets")
                .split([',', ' ', '\n', '\r', '\t'])
                .filter(|t| !t.is_empty())
                .map(str::to_string)
                .collect();
            if targets.is_empty() {
                Err("an alias needs at least one target".into())
            } else {
                c.add_alias(f("alias"), &targets)
                    .map(|()| format!("alias {} added", f("alias")))
            }
        }
        ("aliases", "remove") => c
            .remove_alias(f("alias"))
            .map(|()| format!("alias {} removed", f("alias"))),
        ("queue", "flush") => {
            let id = Some(f("id")).filter(|i| !i.is_empty());
            c.queue_flush(id).map(|()| match id {
                Some(id) => format!("{id}: flush requested"),
                None => "flush of every message requested".into(),
            })
        }
        ("queue", "remove") => c
            .queue_remove(f("id"), by)
            .map(|()| format!("{}: removed", f("id"))),
        ("queue", "bounce") => c
            .queue_bounce(f("id"))
            .map(|()| format!("{}: bounce requested", f("id"))),
        _ => return None,
    })
}

fn nav(p: &mut Page) {
    p.raw(
        "<nav><a href=\"/admin\">Dashboard</a><a href=\"/admin/domains\">Domains</a>\
         <a href=\"/admin/accounts\">Accounts</a><a href=\"/admin/aliases\">Aliases</a>\
         <a href=\"/admin/queue\">Queue</a><a href=\"/account\">My account</a>",
    );
    p.form("/admin/logout", true).submit("Log out").end_form();
    p.raw("</nav>\n");
}

/// The page of `section` (with `query`: `name=` or `id=`), `note` on top.
async fn render(
    web: &Web,
    me: &SignedIn,
    section: &str,
    query: &Fields,
    note: Option<(bool, String)>,
) -> Response {
    let Some(console) = web.console.clone() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let (section, query, csrf) = (section.to_string(), query.clone(), me.session.csrf.clone());
    let built = blocking(move || page(&*console, &section, &query, &csrf, note)).await;
    match built {
        Some(Some(mut p)) => p.finish(),
        Some(None) => StatusCode::NOT_FOUND.into_response(),
        None => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

fn page(
    c: &dyn Console,
    section: &str,
    query: &Fields,
    csrf: &str,
    note: Option<(bool, String)>,
) -> Option<Page> {
    let title = match section {
        "dashboard" => "Mailroom admin",
        "domains" => "Domains",
        "domain" => "Domain",
        "accounts" => "Accounts",
        "aliases" => "Aliases",
        "queue" => "Queue",
        "message" => "Queued message",
        _ => return None,
    };
    let mut p = Page::new(title, csrf);
    nav(&mut p);
    if let Some((ok, text)) = &note {
        if !text.is_empty() {
            p.message(*ok, text);
        }
    }
    let shown = match section {
        "dashboard" => {
            crate::admin_views::dashboard(&mut p, &c.dashboard());
            Ok(())
        }
        "domains" => c.domains().map(|d| crate::admin_views::domains(&mut p, &d)),
        "domain" => crate::admin_views::domain(&mut p, c, field(query, "name"), note.is_some()),
        "accounts" => c
            .accounts()
            .map(|a| crate::admin_views::accounts(&mut p, &a)),
        "aliases" => c.aliases().map(|a| crate::admin_views::aliases(&mut p, &a)),
        "queue" => c.queue().map(|q| crate::admin_views::queue(&mut p, &q)),
        "message" => c
            .queue_show(field(query, "id"))
            .map(|text| crate::admin_views::message(&mut p, field(query, "id"), &text)),
        _ => return None,
    };
    if let Err(e) = shown {
        p.message(false, &e);
    }
    Some(p)
}
