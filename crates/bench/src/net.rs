//! Client sockets from many loopback source addresses (127.10.x.y), one after the other, so
//! that thousands of connections look like many clients, as they would in production, and a
//! server's per-IP connection limit does not cap the load generator. Falls back to the
//! default source address when the bind fails.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::{TcpSocket, TcpStream};

static NEXT: AtomicUsize = AtomicUsize::new(0);

fn next_source() -> IpAddr {
    let n = NEXT.fetch_add(1, Ordering::Relaxed) % (250 * 250);
    IpAddr::V4(Ipv4Addr::new(127, 10, (n / 250) as u8, (n % 250 + 1) as u8))
}

pub async fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    if addr.ip().is_loopback() && addr.is_ipv4() {
        let sock = TcpSocket::new_v4()?;
        if sock.bind(SocketAddr::new(next_source(), 0)).is_ok() {
            return sock.connect(addr).await;
        }
    }
    TcpStream::connect(addr).await
}
