//! What S2T needs around the Mailroom under test: a tiny DNS server on 127.0.0.1 (UDP) that
//! routes `remote.example` to the smtp-sink (127.0.0.1) and `tarpit.example` to
//! [`TARPIT_IP`] (A records, no MX: the implicit MX), and a tarpit on that address that
//! accepts connections and never says a word (a greylisting or overloaded MX).
//!
//! Just enough DNS for the relay's resolver: one question, A answered for those two names,
//! every other question NOERROR with no answer.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// Where the tarpit listens (with the sink's port: the relay uses one port for every MX).
pub const TARPIT_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 41);
/// The healthy destination (its A record is the sink's address).
pub const HEALTHY_DOMAIN: &str = "remote.example";
pub const TARPIT_DOMAIN: &str = "tarpit.example";

/// The DNS server; answers until the process ends.
pub fn start_dns(sink: Ipv4Addr) -> Result<SocketAddr, String> {
    let socket = UdpSocket::bind("127.0.0.1:0").map_err(|e| format!("dns: {e}"))?;
    let addr = socket.local_addr().map_err(|e| e.to_string())?;
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        loop {
            let Ok((n, peer)) = socket.recv_from(&mut buf) else {
                return;
            };
            if let Some(reply) = answer(&buf[..n], sink) {
                let _ = socket.send_to(&reply, peer);
            }
        }
    });
    Ok(addr)
}

/// The response to one query, or `None` for something that is not one.
fn answer(query: &[u8], sink: Ipv4Addr) -> Option<Vec<u8>> {
    if query.len() < 12 || u16::from_be_bytes([query[4], query[5]]) != 1 {
        return None;
    }
    // The question: labels up to the root, then type and class.
    let mut pos = 12;
    let mut name = String::new();
    loop {
        let len = *query.get(pos)? as usize;
        pos += 1;
        if len == 0 {
            break;
        }
        if len > 63 {
            return None;
        }
        let label = query.get(pos..pos + len)?;
        if !name.is_empty() {
            name.push('.');
        }
        name.push_str(&String::from_utf8_lossy(label).to_ascii_lowercase());
        pos += len;
    }
    let qtype = u16::from_be_bytes([*query.get(pos)?, *query.get(pos + 1)?]);
    let question = &query[12..pos + 4];
    let ip = match (name.as_str(), qtype) {
        (HEALTHY_DOMAIN, 1) => Some(sink),
        (TARPIT_DOMAIN, 1) => Some(TARPIT_IP),
        _ => None,
    };
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&query[..2]); // id
    out.extend_from_slice(&[0x85, 0x80]); // response, authoritative, RD, RA, NOERROR
    out.extend_from_slice(&[0, 1, 0, u8::from(ip.is_some()), 0, 0, 0, 0]);
    out.extend_from_slice(question);
    if let Some(ip) = ip {
        // Name: pointer to the question's; A, IN, TTL 60, 4 octets.
        out.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4]);
        out.extend_from_slice(&ip.octets());
    }
    Some(out)
}

/// A listener that accepts and holds every connection without a word.
pub struct Tarpit {
    pub accepted: Arc<AtomicUsize>,
    _held: Arc<Mutex<Vec<TcpStream>>>,
}

impl Tarpit {
    pub fn start(addr: SocketAddr) -> Result<Tarpit, String> {
        let listener = TcpListener::bind(addr).map_err(|e| format!("tarpit on {addr}: {e}"))?;
        let accepted = Arc::new(AtomicUsize::new(0));
        let held = Arc::new(Mutex::new(Vec::new()));
        let (a, h) = (accepted.clone(), held.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                a.fetch_add(1, Ordering::Relaxed);
                h.lock().expect("lock").push(stream);
            }
        });
        Ok(Tarpit {
            accepted,
            _held: held,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut q = vec![0xab, 0xcd, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name.split('.') {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&[0, 1]);
        q
    }

    #[test]
    fn answers_a_for_the_two_names_and_nothing_else() {
        let sink = Ipv4Addr::new(127, 0, 0, 1);
        let r = answer(&query("tarpit.example", 1), sink).expect("reply");
        assert_eq!(&r[..2], &[0xab, 0xcd]);
        assert_eq!(u16::from_be_bytes([r[6], r[7]]), 1);
        assert_eq!(&r[r.len() - 4..], &TARPIT_IP.octets());
        let r = answer(&query("Remote.Example", 1), sink).expect("reply");
        assert_eq!(&r[r.len() - 4..], &sink.octets());
        let r = answer(&query("remote.example", 15), sink).expect("reply");
        assert_eq!(u16::from_be_bytes([r[6], r[7]]), 0, "no MX: implicit MX");
        assert!(answer(&[0; 5], sink).is_none());
    }
}
