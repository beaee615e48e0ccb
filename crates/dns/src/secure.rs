//! DNSSEC-aware lookups for DANE (RFC 7672 §2.1): one raw query to the configured resolver
//! with the AD bit set (RFC 6840 §5.7), and the answer's AD bit reported beside its records.
//!
//! We do not validate signatures ourselves: like Postfix with `smtp_dns_support_level =
//! dnssec`, we trust the AD bit of the resolver, which must therefore be a local validating
//! one (unbound on 127.0.0.1). hickory's `Resolver` neither sets AD in its queries nor keeps
//! the answer's header, hence this small client: UDP, then TCP when the answer is truncated,
//! every read and write under one timeout, the answer checked against the question (id,
//! name, type) before it is believed.
//!
//! [`read_answer`] is the pure half (bytes -> [`SecureAnswer`] or a [`Failure`]), unit-tested
//! with answers built by hickory; [`query`] only moves bytes. It decides nothing about mail.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_resolver::proto::op::{Edns, Message, MessageType, Query, ResponseCode};
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::Failure;

/// One TLSA record (RFC 6698 §2.1), as numbers and bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tlsa {
    pub usage: u8,
    pub selector: u8,
    pub matching: u8,
    pub data: Vec<u8>,
}

/// The records of one answer and whether the resolver vouched for them (AD).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SecureAnswer<T> {
    pub authentic: bool,
    pub records: Vec<T>,
}

/// Records kept from one answer at most (a hostile answer costs no more than that).
const MAX_RECORDS: usize = 64;

/// The query for `name`/`rtype` with id `id`: RD and AD set, EDNS with a 1232-octet payload.
pub fn build_query(id: u16, name: &str, rtype: RecordType) -> Result<Vec<u8>, Failure> {
    let name = Name::from_ascii(fqdn(name))
        .map_err(|e| Failure::Temporary(format!("bad DNS name {name}: {e}")))?;
    let mut message = Message::query();
    message.metadata.id = id;
    message.metadata.recursion_desired = true;
    message.metadata.authentic_data = true;
    message.add_query(Query::query(name, rtype));
    let mut edns = Edns::new();
    edns.set_max_payload(1232);
    message.set_edns(edns);
    message
        .to_vec()
        .map_err(|e| Failure::Temporary(format!("DNS query: {e}")))
}

fn fqdn(name: &str) -> String {
    format!("{}.", name.trim_end_matches('.'))
}

/// What an answer to our query `id` for `name`/`rtype` says: `Ok(None)` when it is truncated
/// (ask again over TCP), the records of `rtype` owned by `name` with the AD bit, or the
/// failure (NXDOMAIN, no records, SERVFAIL and other codes as temporary).
pub fn read_answer(
    bytes: &[u8],
    id: u16,
    name: &str,
    rtype: RecordType,
) -> Result<Option<SecureAnswer<RData>>, Failure> {
    let message = Message::from_vec(bytes)
        .map_err(|e| Failure::Temporary(format!("unreadable DNS answer: {e}")))?;
    let asked = Name::from_ascii(fqdn(name))
        .map_err(|e| Failure::Temporary(format!("bad DNS name {name}: {e}")))?;
    let asked = asked.to_lowercase();
    let matches_question = message.metadata.id == id
        && message.metadata.message_type == MessageType::Response
        && message.queries.len() == 1
        && message.queries[0].query_type() == rtype
        && message.queries[0].name().to_lowercase() == asked;
    if !matches_question {
        return Err(Failure::Temporary(
            "DNS answer does not match the question".into(),
        ));
    }
    if message.metadata.truncation {
        return Ok(None);
    }
    match message.metadata.response_code {
        ResponseCode::NoError => {}
        ResponseCode::NXDomain => return Err(Failure::NxDomain),
        code => {
            return Err(Failure::Temporary(format!(
                "DNS lookup of {rtype} {name}: {code}"
            )))
        }
    }
    let records: Vec<RData> = message
        .answers
        .iter()
        .filter(|r| r.record_type() == rtype && r.name.to_lowercase() == asked)
        .map(|r| r.data.clone())
        .take(MAX_RECORDS)
        .collect();
    if records.is_empty() {
        return Err(Failure::NoRecords);
    }
    Ok(Some(SecureAnswer {
        authentic: message.metadata.authentic_data,
        records,
    }))
}

/// TLSA records out of an answer's data.
pub fn tlsa_of(records: &[RData]) -> Vec<Tlsa> {
    records
        .iter()
        .filter_map(|r| match r {
            RData::TLSA(t) => Some(Tlsa {
                usage: t.cert_usage.into(),
                selector: t.selector.into(),
                matching: t.matching.into(),
                data: t.cert_data.clone(),
            }),
            _ => None,
        })
        .collect()
}

/// Asks `server` for `name`/`rtype` (UDP, then TCP if truncated), all within `limit`.
pub async fn query(
    server: SocketAddr,
    name: &str,
    rtype: RecordType,
    limit: Duration,
) -> Result<SecureAnswer<RData>, Failure> {
    let late = || Failure::Temporary(format!("DNS lookup of {rtype} {name} timed out"));
    tokio::time::timeout(limit, exchange(server, name, rtype))
        .await
        .map_err(|_| late())?
}

async fn exchange(
    server: SocketAddr,
    name: &str,
    rtype: RecordType,
) -> Result<SecureAnswer<RData>, Failure> {
    let io = |e: std::io::Error| Failure::Temporary(format!("DNS query to {server}: {e}"));
    let id: u16 = rand::random();
    let question = build_query(id, name, rtype)?;
    let local: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0".parse().expect("address")
    } else {
        "[::]:0".parse().expect("address")
    };
    let udp = tokio::net::UdpSocket::bind(local).await.map_err(io)?;
    udp.connect(server).await.map_err(io)?;
    udp.send(&question).await.map_err(io)?;
    let mut buf = vec![0u8; 4096];
    // Stray datagrams (late answers to someone else's id) are skipped, a few at most.
    let mut answer = None;
    for _ in 0..8 {
        let n = udp.recv(&mut buf).await.map_err(io)?;
        match read_answer(&buf[..n], id, name, rtype) {
            Err(Failure::Temporary(e)) if e.contains("does not match") => continue,
            other => {
                answer = Some(other?);
                break;
            }
        }
    }
    let Some(answer) = answer else {
        return Err(Failure::Temporary(format!(
            "DNS query to {server}: no matching answer"
        )));
    };
    if let Some(answer) = answer {
        return Ok(answer);
    }
    // Truncated: once more over TCP (RFC 7766), length-prefixed.
    let mut tcp = tokio::net::TcpStream::connect(server).await.map_err(io)?;
    let mut framed = (question.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&question);
    tcp.write_all(&framed).await.map_err(io)?;
    let mut len = [0u8; 2];
    tcp.read_exact(&mut len).await.map_err(io)?;
    let mut body = vec![0u8; u16::from_be_bytes(len) as usize];
    tcp.read_exact(&mut body).await.map_err(io)?;
    read_answer(&body, id, name, rtype)?
        .ok_or_else(|| Failure::Temporary(format!("DNS answer from {server} truncated over TCP")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_resolver::proto::op::OpCode;
    use hickory_resolver::proto::rr::rdata::tlsa::{CertUsage, Matching, Selector, TLSA};
    use hickory_resolver::proto::rr::rdata::A;
    use hickory_resolver::proto::rr::Record;

    fn answer(id: u16, name: &str, rtype: RecordType, ad: bool, data: Vec<RData>) -> Vec<u8> {
        let owner = Name::from_ascii(fqdn(name)).unwrap();
        let mut m = Message::response(id, OpCode::Query);
        m.add_query(Query::query(owner.clone(), rtype));
        m.metadata.authentic_data = ad;
        for d in data {
            m.add_answer(Record::from_rdata(owner.clone(), 300, d));
        }
        m.to_vec().unwrap()
    }

    #[test]
    fn the_query_asks_for_authenticated_data() {
        let bytes = build_query(7, "mx.example", RecordType::TLSA).unwrap();
        let m = Message::from_vec(&bytes).unwrap();
        assert!(m.metadata.authentic_data);
        assert!(m.metadata.recursion_desired);
        assert_eq!(m.queries[0].query_type(), RecordType::TLSA);
    }

    #[test]
    fn ad_bit_and_records() {
        let tlsa = RData::TLSA(TLSA::new(
            CertUsage::DaneEe,
            Selector::Spki,
            Matching::Sha256,
            vec![1, 2, 3],
        ));
        let name = "_25._tcp.mx.example";
        let bytes = answer(9, name, RecordType::TLSA, true, vec![tlsa.clone()]);
        let got = read_answer(&bytes, 9, name, RecordType::TLSA)
            .unwrap()
            .unwrap();
        assert!(got.authentic);
        assert_eq!(
            tlsa_of(&got.records),
            vec![Tlsa {
                usage: 3,
                selector: 1,
                matching: 1,
                data: vec![1, 2, 3]
            }]
        );
        let bytes = answer(9, name, RecordType::TLSA, false, vec![tlsa]);
        let got = read_answer(&bytes, 9, name, RecordType::TLSA)
            .unwrap()
            .unwrap();
        assert!(!got.authentic);
    }

    #[test]
    fn foreign_answers_are_not_believed() {
        let a = RData::A(A::new(192, 0, 2, 1));
        let bytes = answer(9, "mx.example", RecordType::A, true, vec![a]);
        assert!(read_answer(&bytes, 10, "mx.example", RecordType::A).is_err());
        assert!(read_answer(&bytes, 9, "other.example", RecordType::A).is_err());
        assert!(read_answer(&bytes, 9, "mx.example", RecordType::AAAA).is_err());
        assert!(read_answer(b"\x00\x01garbage", 9, "mx.example", RecordType::A).is_err());
        // Case does not matter (0x20 randomisation by resolvers).
        assert!(read_answer(&bytes, 9, "MX.Example", RecordType::A).is_ok());
    }

    #[test]
    fn failures_are_classified() {
        let owner = Name::from_ascii("mx.example.").unwrap();
        for (code, want) in [
            (ResponseCode::NXDomain, Failure::NxDomain),
            (
                ResponseCode::ServFail,
                Failure::Temporary("DNS lookup of TLSA mx.example: Server Failure".into()),
            ),
        ] {
            let mut m = Message::response(3, OpCode::Query);
            m.add_query(Query::query(owner.clone(), RecordType::TLSA));
            m.metadata.response_code = code;
            let got = read_answer(&m.to_vec().unwrap(), 3, "mx.example", RecordType::TLSA);
            match (&got, &want) {
                (Err(Failure::Temporary(_)), Failure::Temporary(_)) => {}
                _ => assert_eq!(got, Err(want)),
            }
        }
        let bytes = answer(4, "mx.example", RecordType::TLSA, true, vec![]);
        assert_eq!(
            read_answer(&bytes, 4, "mx.example", RecordType::TLSA),
            Err(Failure::NoRecords)
        );
    }

    #[test]
    fn truncated_asks_for_tcp() {
        let owner = Name::from_ascii("mx.example.").unwrap();
        let mut m = Message::response(5, OpCode::Query);
        m.add_query(Query::query(owner, RecordType::TLSA));
        m.metadata.truncation = true;
        assert_eq!(
            read_answer(&m.to_vec().unwrap(), 5, "mx.example", RecordType::TLSA),
            Ok(None)
        );
    }
}
