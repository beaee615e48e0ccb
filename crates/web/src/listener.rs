//! The HTTP/1.1 accept loop of one listening socket (port 80 plain, or 443 with TLS) around an
//! axum [`Router`]: every connection is bounded before any handler runs.
//!
//! - connections: at most [`Limits::max_connections`] open over all listeners sharing the
//!   [`Slots`]; one more is closed at once;
//! - the TLS handshake and each request's header block: [`Limits::header_timeout`]
//!   (slowloris); hyper's read buffer caps the header block at [`Limits::max_header_size`]
//!   (`431` beyond it, at most 100 fields);
//! - a request, its body included: [`Limits::request_timeout`] (`408`); bodies are read only
//!   by extractors under axum's body limit (set by the router, [`MAX_BODY`]);
//! - a connection's whole life: [`Limits::max_connection_time`];
//! - the close: when hyper ends a connection with request bytes still unread (a body past
//!   the limit answered `413`), the write side is shut first and what the client still sends
//!   is read and dropped for a moment ([`linger`]), so its kernel does not get a reset
//!   before the client has read our answer.
//!
//! Connections (`http`, `https`) and failed HTTPS handshakes are counted in `metrics`.
//! It knows nothing of the routes; it puts a [`Peer`] into each request's extensions. A TLS
//! handshake that agreed on `acme-tls/1` (an ACME validation, [`crate::tls_alpn`]) is closed
//! at once.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::response::IntoResponse;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

use crate::Peer;

/// The largest request body any route reads (autodiscover, forms).
pub const MAX_BODY: usize = 64 * 1024;

#[derive(Clone, Copy, Debug)]
pub struct Limits {
    pub max_connections: usize,
    pub max_header_size: usize,
    pub header_timeout: Duration,
    pub request_timeout: Duration,
    pub max_connection_time: Duration,
    /// How long open connections get at shutdown.
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 256,
            max_header_size: 64 * 1024,
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            max_connection_time: Duration::from_secs(300),
            shutdown_grace: Duration::from_secs(2),
        }
    }
}

/// Connection slots shared by the HTTP listeners.
#[derive(Clone)]
pub struct Slots(Arc<Semaphore>);

impl Slots {
    pub fn new(n: usize) -> Slots {
        Slots(Arc::new(Semaphore::new(n)))
    }
}

/// Serves `app` on `listener` until `shutdown` turns true; with `tls`, every connection is
/// TLS first (the same acceptor as the mail services).
pub async fn serve(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    app: Router,
    limits: Limits,
    slots: Slots,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut open = tokio::task::JoinSet::new();
    loop {
        let (stream, addr) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("http: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => break,
        };
        while open.try_join_next().is_some() {}
        let Ok(permit) = slots.0.clone().try_acquire_owned() else {
            tracing::warn!(
                "http: connection from {addr} refused: all {} slots taken",
                limits.max_connections
            );
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = if tls.is_some() { "https" } else { "http" };
        ::metrics::global().connection(service);
        let (app, tls, shutdown) = (app.clone(), tls.clone(), shutdown.clone());
        open.spawn(async move {
            let peer = Peer {
                addr,
                https: tls.is_some(),
            };
            match tls {
                Some(acceptor) => {
                    match tokio::time::timeout(limits.header_timeout, acceptor.accept(stream)).await
                    {
                        Ok(Ok(mut s))
                            if crate::tls_alpn::is_validation(s.get_ref().1.alpn_protocol()) =>
                        {
                            let name = s.get_ref().1.server_name().unwrap_or("").to_string();
                            tracing::info!(
                                "acme: tls-alpn-01 challenge for {name} answered to {addr}"
                            );
                            let close = tokio::io::AsyncWriteExt::shutdown(&mut s);
                            let _ = tokio::time::timeout(limits.header_timeout, close).await;
                        }
                        Ok(Ok(s)) => connection(s, peer, app, limits, permit, shutdown).await,
                        Ok(Err(e)) => handshake_failed(addr, &e.to_string()),
                        Err(_) => handshake_failed(addr, "timed out"),
                    }
                }
                None => connection(stream, peer, app, limits, permit, shutdown).await,
            }
        });
    }
    let grace = tokio::time::sleep(limits.shutdown_grace);
    tokio::pin!(grace);
    loop {
        tokio::select! {
            r = open.join_next() => if r.is_none() { break },
            _ = &mut grace => { open.abort_all(); break }
        }
    }
}

/// A failed HTTPS handshake: logged (debug) and counted, like the mail services'.
fn handshake_failed(addr: SocketAddr, why: &str) {
    tracing::debug!("http: TLS handshake with {addr}: {why}");
    ::metrics::global()
        .tls_handshake_failures
        .get_or_create(&::metrics::ServiceLabel { service: "https" })
        .inc();
}

async fn connection<S>(
    stream: S,
    peer: Peer,
    app: Router,
    limits: Limits,
    _permit: OwnedSemaphorePermit,
    mut shutdown: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let mut req = req.map(Body::new);
        req.extensions_mut().insert(peer);
        let app = app.clone();
        // Boxed: `poll_without_shutdown` below wants an `Unpin` future.
        Box::pin(async move {
            let response =
                match tokio::time::timeout(limits.request_timeout, app.oneshot(req)).await {
                    Ok(Ok(r)) => r,
                    Ok(Err(never)) => match never {},
                    Err(_) => (StatusCode::REQUEST_TIMEOUT, "request timed out\n").into_response(),
                };
            Ok::<_, std::convert::Infallible>(response)
        })
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .max_buf_size(limits.max_header_size.max(8192))
        .keep_alive(true);
    let mut conn = builder.serve_connection(TokioIo::new(stream), service);
    let lifetime = tokio::time::sleep(limits.max_connection_time);
    tokio::pin!(lifetime);
    let addr: SocketAddr = peer.addr;
    tokio::select! {
        r = std::future::poll_fn(|cx| conn.poll_without_shutdown(cx)) => match r {
            Ok(()) => linger(conn.into_parts().io.into_inner()).await,
            Err(e) => tracing::debug!("http: connection from {addr}: {e}"),
        },
        _ = &mut lifetime => tracing::debug!("http: connection from {addr}: lifetime over"),
        _ = shutdown.changed() => {
            std::pin::Pin::new(&mut conn).graceful_shutdown();
            let _ = tokio::time::timeout(limits.shutdown_grace, conn).await;
        }
    }
}

/// How long, and how much, a closing connection's late input is read and dropped.
const LINGER_TIME: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 8 * 1024 * 1024;

/// Closes a connection hyper is done with: our side of the stream first (TLS close_notify and
/// FIN, after the answer), then the client's late bytes read and dropped until it closes, for
/// at most [`LINGER_TIME`] and [`LINGER_BYTES`]. Closing with unread input would make the
/// kernel send a reset, which can destroy the answer in flight (a `413` to an oversized body
/// never reaching the client).
async fn linger<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let drain = async {
        stream.shutdown().await?;
        let mut buf = [0u8; 4096];
        let mut total = 0;
        while total < LINGER_BYTES {
            match stream.read(&mut buf).await? {
                0 => break,
                n => total += n,
            }
        }
        Ok::<_, std::io::Error>(())
    };
    let _ = tokio::time::timeout(LINGER_TIME, drain).await;
}
