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
    };
    tracing::info!(
        "acme: ordering from {} for {}",
        settings.directory_url,
        settings.names.join(", ")
    );
    let store = Arc::new(AcmeStore {
        data_dir: config.data_dir.clone(),
        cert,
    });
    Some(tokio::spawn(web::acme::run(settings, store, challenges)))
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
    let sets = [
        (plain, None, web::plain_router(web.clone())),
        (https, Some(acceptor), web::https_router(web)),
    ];
    for (listeners, tls, app) in sets {
        for listener in listeners {
            let addr = listener.local_addr().ok();
            tracing::info!("http: listening on {addr:?} https={}", tls.is_some());
            servers.spawn(web::listener::serve(
                listener,
                tls.clone(),
                app.clone(),
                limits,
                slots.clone(),
                shutdown.clone(),
            ));
        }
    }
}
