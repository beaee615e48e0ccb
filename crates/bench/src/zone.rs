//! A tiny DNS server for a fixed zone, on 127.0.0.1 (UDP), for S2S and S2T: A, MX and TXT records
//! given at start; every other question (AAAA, TLSA, the TLS-RPT TXT, names not in the zone)
//! is answered NOERROR with no answer, the way hickory and the relay's raw DNSSEC queries
//! expect an empty answer. Answers are never authenticated (no AD bit: no DANE).
//!
//! Just enough DNS for Mailroom's resolver: one question per query, no compression but the
//! pointer to the question's name, no EDNS in the answer, no TCP (answers stay small).

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};

/// One record of the zone.
#[derive(Clone, Debug)]
pub enum Record {
    A(String, Ipv4Addr),
    /// Name, preference, exchange.
    Mx(String, u16, String),
    /// Name, one character string (at most 255 octets).
    Txt(String, String),
}

impl Record {
    fn name(&self) -> &str {
        match self {
            Record::A(n, _) | Record::Mx(n, _, _) | Record::Txt(n, _) => n,
        }
    }

    fn qtype(&self) -> u16 {
        match self {
            Record::A(..) => 1,
            Record::Mx(..) => 15,
            Record::Txt(..) => 16,
        }
    }

    fn rdata(&self) -> Vec<u8> {
        match self {
            Record::A(_, ip) => ip.octets().to_vec(),
            Record::Mx(_, pref, host) => {
                let mut d = pref.to_be_bytes().to_vec();
                d.extend_from_slice(&wire_name(host));
                d
            }
            Record::Txt(_, text) => {
                let bytes = &text.as_bytes()[..text.len().min(255)];
                let mut d = vec![bytes.len() as u8];
                d.extend_from_slice(bytes);
                d
            }
        }
    }
}

/// `host` as DNS labels ending with the root.
fn wire_name(host: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in host.trim_end_matches('.').split('.') {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

/// Starts the server on a free 127.0.0.1 port; it answers until the process ends.
pub fn start(records: Vec<Record>) -> Result<SocketAddr, String> {
    let socket = UdpSocket::bind("127.0.0.1:0").map_err(|e| format!("dns: {e}"))?;
    let addr = socket.local_addr().map_err(|e| e.to_string())?;
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        loop {
            let Ok((n, peer)) = socket.recv_from(&mut buf) else {
                return;
            };
            if let Some(reply) = answer(&buf[..n], &records) {
                let _ = socket.send_to(&reply, peer);
            }
        }
    });
    Ok(addr)
}

/// The response to one query, or `None` for something that is not one.
pub(crate) fn answer(query: &[u8], records: &[Record]) -> Option<Vec<u8>> {
    if query.len() < 12 || u16::from_be_bytes([query[4], query[5]]) != 1 {
        return None;
    }
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
    let found: Vec<&Record> = records
        .iter()
        .filter(|r| r.qtype() == qtype && r.name().eq_ignore_ascii_case(&name))
        .collect();
    let mut out = Vec::with_capacity(128);
    out.extend_from_slice(&query[..2]); // id
    out.extend_from_slice(&[0x85, 0x80]); // response, authoritative, RD, RA, NOERROR
    out.extend_from_slice(&[0, 1]);
    out.extend_from_slice(&(found.len() as u16).to_be_bytes());
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(question);
    for r in found {
        let rdata = r.rdata();
        // Name: pointer to the question's; type, IN, TTL 3600 (cached for the whole run).
        out.extend_from_slice(&[0xc0, 12]);
        out.extend_from_slice(&qtype.to_be_bytes());
        out.extend_from_slice(&[0, 1, 0, 0, 0x0e, 0x10]);
        out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        out.extend_from_slice(&rdata);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut q = vec![0xab, 0xcd, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
        q.extend_from_slice(&wire_name(name));
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&[0, 1]);
        q
    }

    fn zone() -> Vec<Record> {
        vec![
            Record::Mx("remote.example".into(), 10, "mx.remote.example".into()),
            Record::A("mx.remote.example".into(), Ipv4Addr::new(127, 0, 0, 43)),
            Record::Txt("_mta-sts.remote.example".into(), "v=STSv1; id=b1".into()),
        ]
    }

    #[test]
    fn mx_a_and_txt_are_answered_and_the_rest_is_empty() {
        let z = zone();
        let q = query("remote.example", 15);
        let r = answer(&q, &z).unwrap();
        assert_eq!(&r[..2], &[0xab, 0xcd]);
        assert_eq!(u16::from_be_bytes([r[6], r[7]]), 1);
        let rdata = &r[q.len() + 12..];
        assert_eq!(&rdata[..2], &10u16.to_be_bytes());
        assert_eq!(&rdata[2..], wire_name("mx.remote.example").as_slice());

        let q = query("MX.Remote.Example", 1);
        let r = answer(&q, &z).unwrap();
        assert_eq!(&r[r.len() - 4..], &[127, 0, 0, 43]);

        let q = query("_mta-sts.remote.example", 16);
        let r = answer(&q, &z).unwrap();
        let rdata = &r[q.len() + 12..];
        assert_eq!(rdata[0] as usize, "v=STSv1; id=b1".len());
        assert_eq!(&rdata[1..], b"v=STSv1; id=b1");

        for (name, t) in [("mx.remote.example", 28), ("other.example", 1)] {
            let r = answer(&query(name, t), &z).unwrap();
            assert_eq!(u16::from_be_bytes([r[6], r[7]]), 0, "{name} {t}");
            assert_eq!(r[3] & 0x0f, 0, "NOERROR");
        }
        assert!(answer(&[0u8; 5], &z).is_none());
    }
}
