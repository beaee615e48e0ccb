//! Mail client set-up: Thunderbird's autoconfig (`/.well-known/autoconfig/mail/config-v1.1.xml`
//! and `/mail/config-v1.1.xml?emailaddress=...` on `autoconfig.<domain>`) and Outlook's POX
//! autodiscover (`POST /autodiscover/autodiscover.xml`). Both are rendered from the one
//! [`settings`]: POP3 over TLS (995), SMTP over TLS (465) and with STARTTLS (587), the full
//! address as the user name. Only our domains get an answer (`404` otherwise).
//!
//! Pure builders ([`settings`], [`thunderbird`], [`autodiscover`], [`requested_address`]) and
//! thin handlers; no IMAP (not offered).

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;

use crate::{host_name, ClientPorts, Web};

/// How a client reaches one service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Server {
    pub port: u16,
    /// `SSL` (implicit TLS) or `STARTTLS`.
    pub socket: &'static str,
}

/// What a client of `domain` is told.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Settings {
    pub domain: String,
    pub hostname: String,
    pub pop3: Vec<Server>,
    pub smtp: Vec<Server>,
}

/// The one source of both answers.
pub fn settings(domain: &str, hostname: &str, ports: &ClientPorts) -> Settings {
    let server = |port: Option<u16>, socket| port.map(|port| Server { port, socket });
    Settings {
        domain: domain.to_ascii_lowercase(),
        hostname: hostname.to_string(),
        pop3: server(ports.pop3s, "SSL").into_iter().collect(),
        smtp: [
            server(ports.submissions, "SSL"),
            server(ports.submission, "STARTTLS"),
        ]
        .into_iter()
        .flatten()
        .collect(),
    }
}

/// `&`, `<`, `>`, `"` and `'` as XML entities.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// Thunderbird's clientConfig 1.1.
pub fn thunderbird(s: &Settings) -> String {
    let (d, h) = (escape(&s.domain), escape(&s.hostname));
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    x.push_str("<clientConfig version=\"1.1\">\n");
    x.push_str(&format!("  <emailProvider id=\"{d}\">\n"));
    x.push_str(&format!("    <domain>{d}</domain>\n"));
    x.push_str(&format!("    <displayName>{d} mail</displayName>\n"));
    x.push_str(&format!("    <displayShortName>{d}</displayShortName>\n"));
    let server = |kind: &str, tag: &str, srv: &Server| {
        format!(
            "    <{tag} type=\"{kind}\">\n      <hostname>{h}</hostname>\n      \
             <port>{}</port>\n      <socketType>{}</socketType>\n      \
             <username>%EMAILADDRESS%</username>\n      \
             <authentication>password-cleartext</authentication>\n    </{tag}>\n",
            srv.port, srv.socket
        )
    };
    for srv in &s.pop3 {
        x.push_str(&server("pop3", "incomingServer", srv));
    }
    for srv in &s.smtp {
        x.push_str(&server("smtp", "outgoingServer", srv));
    }
    x.push_str("  </emailProvider>\n</clientConfig>\n");
    x
}

/// Outlook's POX autodiscover response (responseschema 2006a) for `address`.
pub fn autodiscover(s: &Settings, address: &str) -> String {
    let (h, a) = (escape(&s.hostname), escape(address));
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
    x.push_str(
        "<Autodiscover xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006\">\n\
         <Response xmlns=\"http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a\">\n\
         <Account>\n<AccountType>email</AccountType>\n<Action>settings</Action>\n",
    );
    let protocol = |kind: &str, srv: &Server| {
        let (ssl, encryption) = match srv.socket {
            "SSL" => ("on", "SSL"),
            _ => ("on", "TLS"),
        };
        format!(
            "<Protocol>\n<Type>{kind}</Type>\n<Server>{h}</Server>\n<Port>{}</Port>\n\
             <LoginName>{a}</LoginName>\n<DomainRequired>off</DomainRequired>\n<SPA>off</SPA>\n\
             <SSL>{ssl}</SSL>\n<Encryption>{encryption}</Encryption>\n\
             <AuthRequired>on</AuthRequired>\n</Protocol>\n",
            srv.port
        )
    };
    for srv in &s.pop3 {
        x.push_str(&protocol("POP3", srv));
    }
    for srv in &s.smtp {
        x.push_str(&protocol("SMTP", srv));
    }
    x.push_str("</Account>\n</Response>\n</Autodiscover>\n");
    x
}

/// The `<EMailAddress>` of an autodiscover request, when it is a valid address.
pub fn requested_address(body: &str) -> Option<String> {
    let start = body.find("<EMailAddress>")? + "<EMailAddress>".len();
    let len = body[start..].find("</EMailAddress>")?;
    let address = body[start..start + len].trim();
    proto::address::check(address).ok()?;
    Some(address.to_string())
}

/// The domain of `address` when it is valid.
fn domain_of(address: &str) -> Option<String> {
    proto::address::check(address).ok()?;
    let (_, domain) = proto::address::split(address)?;
    Some(domain.to_ascii_lowercase())
}

pub fn routes() -> Router<Web> {
    Router::new()
        .route(
            "/.well-known/autoconfig/mail/config-v1.1.xml",
            get(thunderbird_handler),
        )
        .route("/mail/config-v1.1.xml", get(thunderbird_handler))
        .route("/autodiscover/autodiscover.xml", post(autodiscover_handler))
        .route("/Autodiscover/Autodiscover.xml", post(autodiscover_handler))
}

#[derive(Deserialize)]
struct Wanted {
    emailaddress: Option<String>,
}

fn xml(body: String) -> Response {
    (
        [(header::CONTENT_TYPE, "application/xml; charset=utf-8")],
        body,
    )
        .into_response()
}

async fn thunderbird_handler(
    State(web): State<Web>,
    headers: HeaderMap,
    Query(wanted): Query<Wanted>,
) -> Response {
    // The address's domain; else the Host: `autoconfig.<domain>` or `<domain>` itself.
    let domain = match &wanted.emailaddress {
        Some(a) => domain_of(a),
        None => host_name(&headers).map(|h| {
            h.strip_prefix("autoconfig.")
                .map(str::to_string)
                .unwrap_or(h)
        }),
    };
    match domain.filter(|d| web.backend.is_local_domain(d)) {
        Some(d) => xml(thunderbird(&settings(
            &d,
            &web.site.hostname,
            &web.site.ports,
        ))),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn autodiscover_handler(State(web): State<Web>, body: String) -> Response {
    let Some(address) = requested_address(&body) else {
        return (StatusCode::BAD_REQUEST, "no valid EMailAddress\n").into_response();
    };
    match domain_of(&address).filter(|d| web.backend.is_local_domain(d)) {
        Some(d) => xml(autodiscover(
            &settings(&d, &web.site.hostname, &web.site.ports),
            &address,
        )),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ports() -> ClientPorts {
        ClientPorts {
            pop3s: Some(995),
            submissions: Some(465),
            submission: Some(587),
        }
    }

    #[test]
    fn one_settings_feed_both_answers() {
        let s = settings("Example.ORG", "mx.example.org", &ports());
        assert_eq!(s.domain, "example.org");
        let t = thunderbird(&s);
        assert!(
            t.contains("<port>995</port>\n      <socketType>SSL</socketType>"),
            "{t}"
        );
        assert!(
            t.contains("<port>465</port>\n      <socketType>SSL</socketType>"),
            "{t}"
        );
        assert!(
            t.contains("<port>587</port>\n      <socketType>STARTTLS</socketType>"),
            "{t}"
        );
        assert_eq!(t.matches("<username>%EMAILADDRESS%</username>").count(), 3);
        let o = autodiscover(&s, "a@example.org");
        assert!(o.contains("<Type>POP3</Type>\n<Server>mx.example.org</Server>\n<Port>995</Port>"));
        assert!(o.contains("<Port>587</Port>") && o.contains("<Encryption>TLS</Encryption>"));
    }

    #[test]
    fn services_not_offered_are_left_out() {
        let s = settings(
            "example.org",
            "mx",
            &ClientPorts {
                submission: Some(587),
                ..ClientPorts::default()
            },
        );
        let t = thunderbird(&s);
        assert!(!t.contains("incomingServer") && t.matches("outgoingServer type").count() == 1);
    }

    #[test]
    fn requested_addresses_are_checked() {
        let body = "<Autodiscover><Request><EMailAddress> a@example.org </EMailAddress></Request></Autodiscover>";
        assert_eq!(requested_address(body).as_deref(), Some("a@example.org"));
        assert_eq!(
            requested_address("<EMailAddress>no address</EMailAddress>"),
            None
        );
        assert_eq!(requested_address("<EMailAddress>a@example.org"), None);
        assert_eq!(
            escape("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&apos;"
        );
    }
}
