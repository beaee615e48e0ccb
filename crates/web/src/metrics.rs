//! `GET /metrics`: the Prometheus text from the supplier `serve` plugs in (the metrics
//! registry), only for peers inside `[http] metrics_networks`; `403` for others, `404` when
//! no supplier is plugged in. It builds no metric itself.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};

use crate::{Peer, Web};

pub fn routes() -> Router<Web> {
    Router::new().route("/metrics", get(metrics_handler))
}

/// Whether `peer` may scrape (IPv4-mapped IPv6 addresses count as IPv4).
pub fn allowed(networks: &[ipnet::IpNet], peer: std::net::IpAddr) -> bool {
    let ip = match peer {
        std::net::IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(std::net::IpAddr::V4)
            .unwrap_or(peer),
        v4 => v4,
    };
    networks.iter().any(|n| n.contains(&ip))
}

async fn metrics_handler(State(web): State<Web>, Extension(peer): Extension<Peer>) -> Response {
    if !allowed(&web.site.metrics_networks, peer.addr.ip()) {
        return (StatusCode::FORBIDDEN, "not from a metrics network\n").into_response();
    }
    match &web.metrics {
        Some(supplier) => (
            [(
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            )],
            supplier(),
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_metrics_networks_may_scrape() {
        let nets: Vec<ipnet::IpNet> =
            vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()];
        assert!(allowed(&nets, "127.0.0.5".parse().unwrap()));
        assert!(allowed(&nets, "::ffff:127.0.0.1".parse().unwrap()));
        assert!(allowed(&nets, "::1".parse().unwrap()));
        assert!(!allowed(&nets, "10.0.0.1".parse().unwrap()));
        assert!(!allowed(&[], "127.0.0.1".parse().unwrap()));
    }
}
