//! A cached MTA-STS policy as the store keeps it: a short header (`id`, when it was fetched,
//! when it expires) and the policy file as fetched, so a restart re-reads the same policy
//! through the same parser. Pure; the file is `store::tls_policies`.

use super::sts::{parse_policy, Policy};

/// A policy with what the cache rules of RFC 8461 §5.1 need.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cached {
    /// The `id` of the TXT record it was fetched under.
    pub id: String,
    /// Unix seconds.
    pub fetched: u64,
    pub expires: u64,
    pub policy: Policy,
    /// The policy file, kept for the store.
    pub body: Vec<u8>,
}

const MAGIC: &str = "mailroom-mta-sts 1";

impl Cached {
    pub fn new(id: String, fetched: u64, body: Vec<u8>) -> Result<Cached, String> {
        let policy = parse_policy(&body)?;
        Ok(Cached {
            id,
            fetched,
            expires: fetched.saturating_add(policy.max_age),
            policy,
            body,
        })
    }

    pub fn valid_at(&self, now: u64) -> bool {
        now < self.expires
    }

    /// The record for the store.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = format!("{MAGIC}\nid {}\nfetched {}\n\n", self.id, self.fetched).into_bytes();
        out.extend_from_slice(&self.body);
        out
    }

    /// A record [`Cached::encode`] wrote, or `None` for anything else (a damaged file is as
    /// good as no file: the policy is fetched again).
    pub fn decode(record: &[u8]) -> Option<Cached> {
        let split = record.windows(2).position(|w| w == b"\n\n")?;
        let head = std::str::from_utf8(&record[..split]).ok()?;
        let mut lines = head.lines();
        if lines.next()? != MAGIC {
            return None;
        }
        let id = lines.next()?.strip_prefix("id ")?.to_string();
        let fetched = lines.next()?.strip_prefix("fetched ")?.parse().ok()?;
        Cached::new(id, fetched, record[split + 2..].to_vec()).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = b"version: STSv1\nmode: enforce\nmx: mx.example\nmax_age: 86400\n";

    #[test]
    fn round_trip_and_expiry() {
        let c = Cached::new("abc".into(), 1000, BODY.to_vec()).unwrap();
        assert_eq!(c.expires, 1000 + 86400);
        assert!(c.valid_at(1000 + 86399));
        assert!(!c.valid_at(1000 + 86400));
        assert_eq!(Cached::decode(&c.encode()).unwrap(), c);
    }

    #[test]
    fn damaged_records_are_none() {
        let c = Cached::new("abc".into(), 1000, BODY.to_vec())
            .unwrap()
            .encode();
        assert!(Cached::decode(&c[..20]).is_none());
        assert!(Cached::decode(b"").is_none());
        assert!(Cached::decode(b"mailroom-mta-sts 1\nid x\nfetched y\n\nbody").is_none());
        let mut bad = c.clone();
        let n = bad.len();
        bad[n - 3] = 0xff;
        assert!(Cached::decode(&bad).is_none());
    }
}
