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
