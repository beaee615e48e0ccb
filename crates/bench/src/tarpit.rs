//! What S2T needs around the Mailroom under test: a tiny DNS server on 127.0.0.1 (UDP) that
//! routes `remote.example` to the smtp-sink (127.0.0.1) and `tarpit.example` to
//! [`TARPIT_IP`] (A records, no MX: the implicit MX), and a tarpit on that address that
//! accepts connections and never says a word (a greylisting or overloaded MX).
//!
//! The DNS server is [`crate::zone`]'s with two A records: every other question is answered
//! NOERROR with no answer.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::zone::{self, Record};

/// Where the tarpit listens (with the sink's port: the relay uses one port for every MX).
pub const TARPIT_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 41);
/// The healthy destination (its A record is the sink's address).
pub const HEALTHY_DOMAIN: &str = "remote.example";
pub const TARPIT_DOMAIN: &str = "tarpit.example";

/// The zone: an A record for each of the two names, nothing else (no MX: the implicit MX).
fn records(sink: Ipv4Addr) -> Vec<Record> {
    vec![
        Record::A(HEALTHY_DOMAIN.into(), sink),
        Record::A(TARPIT_DOMAIN.into(), TARPIT_IP),
    ]
}

/// The DNS server ([`crate::zone`]); answers until the process ends.
pub fn start_dns(sink: Ipv4Addr) -> Result<SocketAddr, String> {
    zone::start(records(sink))
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

    fn answer(query: &[u8], sink: Ipv4Addr) -> Option<Vec<u8>> {
        zone::answer(query, &records(sink))
    }

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
