//! The `/admin` and `/account` routes through the router with a fake [`Console`]: the gate,
//! the CSRF check, HTTPS-only logins, escaping. Requests go in as values (no socket).

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use tower::ServiceExt;

use crate::console::{Console, Dashboard, LoginAnswer, Queued, Who};
use crate::{https_router, Backend, Peer, Site, Web};

#[derive(Default)]
struct Fake {
    calls: Mutex<Vec<String>>,
}

impl Fake {
    fn called(&self, what: String) -> Result<(), String> {
        self.calls.lock().unwrap().push(what);
        Ok(())
    }
}

const PASSWORDS: [(&str, &str, bool); 2] = [
    ("root@x.test", "root-pw", true),
    ("user@x.test", "user-pw", false),
];

impl Console for Fake {
    fn login(&self, _ip: IpAddr, user: &str, password: &str) -> LoginAnswer {
        let who = PASSWORDS
            .iter()
            .find(|(u, p, _)| *u == user && *p == password)
            .map(|(u, _, admin)| Who {
                address: u.to_string(),
                admin: *admin,
            });
        LoginAnswer {
            delay: if who.is_some() {
                Duration::ZERO
            } else {
                Duration::from_millis(1)
            },
            who,
        }
    }
    fn who(&self, address: &str) -> Option<Who> {
        PASSWORDS
            .iter()
            .find(|(u, _, _)| *u == address)
            .map(|(u, _, admin)| Who {
                address: u.to_string(),
                admin: *admin,
            })
    }
    fn change_password(&self, address: &str, _: &str) -> Result<(), String> {
        self.called(format!("password {address}"))
    }
    fn aliases_of(&self, _: &str) -> Result<Vec<(String, Vec<String>)>, String> {
        Ok(vec![])
    }
    fn dashboard(&self) -> Dashboard {
        Dashboard::default()
    }
    fn domains(&self) -> Result<Vec<String>, String> {
        Ok(vec!["<b>x.test</b>".into()])
    }
    fn add_domain(&self, domain: &str) -> Result<Vec<String>, String> {
        self.called(format!("add {domain}")).map(|()| vec![])
    }
    fn remove_domain(&self, d: &str) -> Result<(), String> {
        self.called(format!("remove {d}"))
    }
    fn dkim_keys(&self, _: &str) -> Result<Vec<String>, String> {
        Ok(vec![])
    }
    fn dns_records(&self, _: &str) -> Result<Vec<String>, String> {
        Ok(vec![])
    }
    fn dns_check(&self, _: &str) -> Result<Vec<String>, String> {
        Ok(vec![])
    }
    fn accounts(&self) -> Result<Vec<Who>, String> {
        Ok(vec![])
    }
    fn add_account(&self, a: &str, _: &str, _: bool) -> Result<(), String> {
        self.called(format!("add account {a}"))
    }
    fn set_password(&self, a: &str, _: &str) -> Result<(), String> {
        self.called(format!("set password {a}"))
    }
    fn remove_account(&self, a: &str) -> Result<(), String> {
        self.called(format!("remove account {a}"))
    }
    fn aliases(&self) -> Result<Vec<(String, Vec<String>)>, String> {
        Ok(vec![])
    }
    fn add_alias(&self, a: &str, _: &[String]) -> Result<(), String> {
        self.called(format!("add alias {a}"))
    }
    fn remove_alias(&self, a: &str) -> Result<(), String> {
        self.called(format!("remove alias {a}"))
    }
    fn queue(&self) -> Result<Vec<Queued>, String> {
        Ok(vec![])
    }
    fn queue_show(&self, _: &str) -> Result<String, String> {
        Ok(String::new())
    }
    fn queue_flush(&self, _: Option<&str>) -> Result<(), String> {
        self.called("flush".into())
    }
    fn queue_remove(&self, id: &str, _: &str) -> Result<(), String> {
        self.called(format!("remove {id}"))
    }
    fn queue_bounce(&self, id: &str) -> Result<(), String> {
        self.called(format!("bounce {id}"))
    }
}

struct NoBackend;
impl Backend for NoBackend {
    fn is_local_domain(&self, _: &str) -> bool {
        false
    }
}

fn web(fake: Arc<Fake>) -> Web {
    Web {
        site: Arc::new(Site {
            hostname: "mx.x.test".into(),
            ports: Default::default(),
            mta_sts: crate::mta_sts::Policy {
                mode: crate::mta_sts::Mode::None,
                mx: "mx.x.test".into(),
                max_age: 86400,
            },
            metrics_networks: vec![],
        }),
        backend: Arc::new(NoBackend),
        metrics: None,
        challenges: Default::default(),
        console: Some(fake),
        sessions: Arc::default(),
    }
}

struct Answer {
    status: StatusCode,
    cookies: Vec<String>,
    location: String,
    body: String,
}

async fn call(
    web: &Web,
    https: bool,
    method: &str,
    path: &str,
    cookie: &str,
    form: &[(&str, &str)],
) -> Answer {
    let body: String = form
        .iter()
        .map(|(k, v)| format!("{k}={}", v.replace('@', "%40")))
        .collect::<Vec<_>>()
        .join("&");
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::HOST, "mx.x.test")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    if !cookie.is_empty() {
        req = req.header(header::COOKIE, cookie);
    }
    let mut req = req.body(Body::from(body)).unwrap();
    req.extensions_mut().insert(Peer {
        addr: "127.0.0.1:4000".parse().unwrap(),
        https,
    });
    let r = https_router(web.clone()).oneshot(req).await.unwrap();
    let status = r.status();
    let cookies = r
        .headers()
        .get_all(header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    let location = r
        .headers()
        .get(header::LOCATION)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let bytes = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
    Answer {
        status,
        cookies,
        location,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

fn csrf_of(body: &str) -> String {
    let at = body.find("name=\"csrf\" value=\"").unwrap() + 19;
    body[at..at + 64].to_string()
}

fn cookie_value(cookies: &[String], name: &str) -> String {
    let c = cookies
        .iter()
        .find(|c| c.starts_with(&format!("{name}=")))
        .unwrap();
    c.split(';').next().unwrap().to_string()
}

/// Logs in at `door`; the session cookie (`name=value`).
async fn login(web: &Web, door: &str, user: &str, password: &str) -> Answer {
    let form = call(web, true, "GET", &format!("/{door}/login"), "", &[]).await;
    let token = csrf_of(&form.body);
    let cookie = cookie_value(&form.cookies, crate::login::LOGIN_COOKIE);
    call(
        web,
        true,
        "POST",
        &format!("/{door}/login"),
        &cookie,
        &[("csrf", &token), ("address", user), ("password", password)],
    )
    .await
}

#[tokio::test]
async fn the_gate_sessions_and_csrf() {
    let fake = Arc::new(Fake::default());
    let web = web(fake.clone());
    // No session: to the login, and nothing is called.
    for path in ["/admin", "/admin/domains", "/admin/x/y/z"] {
        let a = call(&web, true, "GET", path, "", &[]).await;
        assert_eq!(
            (a.status, a.location.as_str()),
            (StatusCode::SEE_OTHER, "/admin/login")
        );
    }
    let a = call(
        &web,
        true,
        "POST",
        "/admin/domains/add",
        "",
        &[("domain", "d")],
    )
    .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    // Logins: wrong password 401, not https 403, a non-admin at the admin door 403.
    assert_eq!(
        login(&web, "admin", "root@x.test", "no").await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login(&web, "admin", "user@x.test", "user-pw").await.status,
        StatusCode::FORBIDDEN
    );
    let plain = call(&web, false, "GET", "/admin/login", "", &[]).await;
    assert_eq!(plain.status, StatusCode::FORBIDDEN);
    let ok = login(&web, "admin", "root@x.test", "root-pw").await;
    assert_eq!(
        (ok.status, ok.location.as_str()),
        (StatusCode::SEE_OTHER, "/admin")
    );
    let session = cookie_value(&ok.cookies, crate::login::SESSION_COOKIE);
    // The same session over plain http is no session.
    assert_eq!(
        call(&web, false, "GET", "/admin", &session, &[])
            .await
            .status,
        StatusCode::SEE_OTHER
    );
    let page = call(&web, true, "GET", "/admin/domains", &session, &[]).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("&lt;b&gt;x.test&lt;/b&gt;") && !page.body.contains("<b>x.test"));
    let token = csrf_of(&page.body);
    for bad in [
        "",
        "0000000000000000000000000000000000000000000000000000000000000000",
    ] {
        let a = call(
            &web,
            true,
            "POST",
            "/admin/domains/add",
            &session,
            &[("csrf", bad), ("domain", "d.test")],
        )
        .await;
        assert_eq!(a.status, StatusCode::FORBIDDEN);
    }
    assert!(fake.calls.lock().unwrap().is_empty());
    let a = call(
        &web,
        true,
        "POST",
        "/admin/domains/add",
        &session,
        &[("csrf", &token), ("domain", "d.test")],
    )
    .await;
    assert_eq!(a.status, StatusCode::OK);
    let a = call(
        &web,
        true,
        "POST",
        "/admin/queue/bounce",
        &session,
        &[("csrf", &token), ("id", "Q1")],
    )
    .await;
    assert!(a.body.contains("Q1: bounce requested"), "{}", a.body);
    assert_eq!(*fake.calls.lock().unwrap(), ["add d.test", "bounce Q1"]);
    // A non-admin's session: 403 on /admin, its own page on /account.
    let user = login(&web, "account", "user@x.test", "user-pw").await;
    let user = cookie_value(&user.cookies, crate::login::SESSION_COOKIE);
    assert_eq!(
        call(&web, true, "GET", "/admin", &user, &[]).await.status,
        StatusCode::FORBIDDEN
    );
    let mine = call(&web, true, "GET", "/account", &user, &[]).await;
    assert!(mine.body.contains("user@x.test") && !mine.body.contains("root@x.test"));
    // Logout ends the session.
    let a = call(
        &web,
        true,
        "POST",
        "/admin/logout",
        &session,
        &[("csrf", &token)],
    )
    .await;
    assert_eq!(a.status, StatusCode::SEE_OTHER);
    assert_eq!(
        call(&web, true, "GET", "/admin", &session, &[])
            .await
            .status,
        StatusCode::SEE_OTHER
    );
}
