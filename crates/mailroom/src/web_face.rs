//! Wiring of the `web` crate into `serve`: the [`web::Backend`] over the directory, the
//! [`web::Site`] from `[http]`, and the HTTP (80) and HTTPS (443) listeners started on the
//! sockets `serve` bound as root. No route or HTTP logic lives here.

use std::sync::Arc;

use store::directory::Directory;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::Config;

/// What the web face may ask: the directory.
pub struct DirectoryBackend {
    pub directory: Arc<Directory>,
}

impl web::Backend for DirectoryBackend {
    fn is_local_domain(&self, domain: &str) -> bool {
        self.directory.is_local_domain(domain).unwrap_or(false)
    }
}

fn first_port(list: &[std::net::SocketAddr]) -> Option<u16> {
    list.first().map(|a| a.port())
}

/// The plain settings of the web face.
pub fn site(config: &Config) -> web::Site {
    web::Site {
        hostname: config.hostname.clone(),
        ports: web::ClientPorts {
            pop3s: first_port(&config.pop3.pop3s),
            submissions: first_port(&config.smtp.submissions),
            submission: first_port(&config.smtp.submission),
        },
        mta_sts: config.http.mta_sts(&config.hostname),
        metrics_networks: config.http.metrics_networks.clone(),
    }
}

/// The ACME account and certificate under `data_dir/acme/` (0600, through
/// `store::private_files`), installed into the shared TLS configuration.
pub struct AcmeStore {
    pub data_dir: std::path::PathBuf,
    pub cert: Arc<crate::tls::ReloadableCert>,
}

const ACME_DIR: &str = "acme";

impl AcmeStore {
    fn read(&self, name: &str) -> Option<String> {
        let bytes = store::private_files::read(&self.data_dir, ACME_DIR, name).ok()?;
        String::from_utf8(bytes).ok()
    }
}

impl web::acme::CertStore for AcmeStore {
    fn load_account(&self) -> Option<String> {
        self.read("account.json")
    }

    fn save_account(&self, json: &str) -> Result<(), String> {
        store::private_files::write(
            &self.data_dir,
            ACME_DIR,
            &[("account.json", json.as_bytes())],
        )
        .map_err(|e| format!("acme: cannot store the account: {e}"))
    }

    fn load_certificate(&self) -> Option<(String, String)> {
        Some((self.read("cert.pem")?, self.read("key.pem")?))
    }

    fn save_certificate(&self, chain: &str, key: &str) -> Result<(), String> {
        let files: [(&str, &[u8]); 2] =
            [("key.pem", key.as_bytes()), ("cert.pem", chain.as_bytes())];
        store::private_files::write(&self.data_dir, ACME_DIR, &files)
            .map_err(|e| format!("acme: cannot store the certificate: {e}"))
    }

    fn install(&self, chain: &str, key: &str) -> Result<(), String> {
        self.cert.install_acme(chain, key)
    }
}

/// The names of the one certificate: the host name, and `mta-sts.` and `autoconfig.` of each
/// of our domains.
pub fn acme_names(config: &Config, directory: &Directory) -> Vec<String> {
    let mut names = vec![config.hostname.to_ascii_lowercase()];
    for d in directory.list_domains().unwrap_or_default() {
        names.push(format!("mta-sts.{d}"));
        names.push(format!("autoconfig.{d}"));
    }
    names.dedup();
    names
}

/// The names that point at us: the host name always (the certificate is for it); another
/// name when one of its addresses is ours or the host name's (behind NAT the public address is
/// on no interface, but the host name must resolve to it for ACME to reach us at all).
pub fn names_pointing_at_us(
    hostname: &str,
    resolved: &[(String, Vec<std::net::IpAddr>)],
    ours: &[std::net::IpAddr],
) -> (Vec<String>, Vec<String>) {
    let host_ips: Vec<std::net::IpAddr> = resolved
        .iter()
        .filter(|(n, _)| n == hostname)
        .flat_map(|(_, ips)| ips.iter().copied())
        .collect();
    let (mut kept, mut dropped) = (vec![hostname.to_string()], Vec::new());
    for (name, ips) in resolved.iter().filter(|(n, _)| n != hostname) {
        if ips
            .iter()
            .any(|ip| ours.contains(ip) || host_ips.contains(ip))
        {
            kept.push(name.clone());
        } else {
            dropped.push(name.clone());
        }
    }
    (kept, dropped)
}

/// `names` resolved through `[dns]`, those not pointing at us dropped with a warning.
async fn resolvable_names(config: &Config, names: Vec<String>) -> Vec<String> {
    let dns = match dns::Dns::new(&dns::DnsConfig {
        servers: config.dns_servers().to_vec(),
        ..dns::DnsConfig::default()
    }) {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!("acme: no resolver ({e}); ordering for every name");
            return names;
        }
    };
    let mut resolved = Vec::new();
    for name in &names {
        resolved.push((name.clone(), dns.ips(name).await.unwrap_or_default()));
    }
    let mut ours = crate::local_addrs::local_addresses(&config.http.listen);
    ours.extend(crate::local_addrs::local_addresses(&config.smtp.listen));
    let (kept, dropped) = names_pointing_at_us(&names[0], &resolved, &ours);
    for name in dropped {
        tracing::warn!(
            "acme: {name} does not resolve to this server; left out of the certificate \
             (point it at {}: mailroom dns-records)",
            names[0]
        );
    }
    kept
}

/// Starts the ACME loop when `[acme] directory_url` is set.
pub fn spawn_acme(
    config: &Config,
    directory: &Directory,
    cert: Arc<crate::tls::ReloadableCert>,
    challenges: web::Challenges,
) -> Option<tokio::task::JoinHandle<()>> {
    if config.acme.directory_url.is_empty() {
        return None;
    }
    let settings = web::acme::Settings {
        directory_url: config.acme.directory_url.clone(),
        contact: config.acme.contact.clone(),
        ca_file: (!config.acme.ca_file.is_empty()).then(|| config.acme.ca_file.clone().into()),
        names: acme_names(config, directory),
        challenge: config.acme.challenge.to_web(),
    };
    let store = Arc::new(AcmeStore {
        data_dir: config.data_dir.clone(),
        cert,
    });
    let config = config.clone();
    Some(tokio::spawn(async move {
        let mut settings = settings;
        settings.names = resolvable_names(&config, std::mem::take(&mut settings.names)).await;
        tracing::info!(
            "acme: ordering from {} for {}",
            settings.directory_url,
            settings.names.join(", ")
        );
        web::acme::run(settings, store, challenges).await
    }))
}

/// Starts the listeners into `servers`; they stop when `shutdown` turns true.
pub fn spawn(
    servers: &mut tokio::task::JoinSet<()>,
    web: web::Web,
    plain: Vec<TcpListener>,
    https: Vec<TcpListener>,
    acceptor: tokio_rustls::TlsAcceptor,
    config: &Config,
    shutdown: &watch::Receiver<bool>,
) {
    let limits = web::listener::Limits {
        max_connections: config.http.max_connections,
        header_timeout: config.http.header_timeout.get(),
        request_timeout: config.http.header_timeout.get() * 3,
        ..web::listener::Limits::default()
    };
    let slots = web::listener::Slots::new(limits.max_connections);
    // 443 alone offers ALPN (`http/1.1`, and `acme-tls/1` for TLS-ALPN-01 validations).
    let https_acceptor = tokio_rustls::TlsAcceptor::from(web::tls_alpn::https_config(
        acceptor.config(),
        web.challenges.alpn().clone(),
    ));
    let sets = [
        (plain, None, web::plain_router(web.clone())),
        (https, Some(https_acceptor), web::https_router(web)),
    ];
    // The web face runs on a thread of its own (a one-thread runtime): under a mail load that
    // keeps the main runtime's workers busy with hundreds of SMTP sessions, a `/metrics`
    // scrape or an admin page would otherwise wait in their run queues; a thread of its own
    // is scheduled by the kernel as soon as it wakes.
    let mut std_listeners = Vec::new();
    for (listeners, tls, app) in sets {
        for listener in listeners {
            let addr = listener.local_addr().ok();
            tracing::info!("http: listening on {addr:?} https={}", tls.is_some());
            match listener.into_std() {
                Ok(l) => std_listeners.push((l, tls.clone(), app.clone())),
                Err(e) => tracing::error!("http: listener {addr:?}: {e}"),
            }
        }
    }
    if std_listeners.is_empty() {
        return;
    }
    let shutdown = shutdown.clone();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("mailroom-web".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!("http: cannot start the web runtime: {e}");
                    return;
                }
            };
            rt.block_on(async move {
                let mut set = tokio::task::JoinSet::new();
                for (listener, tls, app) in std_listeners {
                    match TcpListener::from_std(listener) {
                        Ok(l) => {
                            set.spawn(web::listener::serve(
                                l,
                                tls,
                                app,
                                limits,
                                slots.clone(),
                                shutdown.clone(),
                            ));
                        }
                        Err(e) => tracing::error!("http: listener: {e}"),
                    }
                }
                while set.join_next().await.is_some() {}
            });
            let _ = done_tx.send(());
        });
    match thread {
        Ok(_) => {
            servers.spawn(async move {
                let _ = done_rx.await;
            });
        }
        Err(e) => tracing::error!("http: cannot start the web thread: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_not_pointing_at_us_are_dropped() {
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        let resolved = vec![
            ("mx.example.org".to_string(), vec![ip("203.0.113.5")]),
            ("mta-sts.example.org".to_string(), vec![ip("203.0.113.5")]),
            (
                "autoconfig.example.org".to_string(),
                vec![ip("198.51.100.7")],
            ),
            ("mta-sts.other.org".to_string(), vec![]),
            ("autoconfig.other.org".to_string(), vec![ip("10.0.0.2")]),
        ];
        let (kept, dropped) = names_pointing_at_us("mx.example.org", &resolved, &[ip("10.0.0.2")]);
        assert_eq!(
            kept,
            [
                "mx.example.org",
                "mta-sts.example.org",
                "autoconfig.other.org"
            ]
        );
        assert_eq!(dropped, ["autoconfig.example.org", "mta-sts.other.org"]);
    }
}
