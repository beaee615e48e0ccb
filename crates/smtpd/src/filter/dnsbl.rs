//! DNS blocklists and allowlists (RFC 5782) for clients on port 25: which zones to ask, the
//! query name of a client address, what an answer means, and the lookups themselves, all
//! zones at once through the one resolver (`dns::Dns`) under one deadline.
//!
//! A zone is written `"zone"` (any `127.0.0.0/8` answer lists the client) or
//! `"zone=127.0.0.2"` (only that answer does). An allowlisted client ([`Listing::Allowed`])
//! skips the blocklists and every other filter; a blocklisted one ([`Listing::Blocked`]) is
//! refused at RCPT with Postfix's wording ([`refusal`]). A lookup that fails or times out
//! lists nothing: the client goes through, and the failure is logged and counted.
//!
//! Not here: who is looked up (the listener: port 25, untrusted), when the answer is awaited
//! (before MAIL, [`super::ClientCheck`]) and what else is checked at RCPT ([`super::Screened`]).

use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use proto::smtp::Reply;

/// One zone to ask, and the answer that counts as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Zone {
    /// The zone's name, without a trailing dot.
    pub name: String,
    /// Only this answer lists; `None`: any address in `127.0.0.0/8`.
    pub answer: Option<Ipv4Addr>,
}

impl Zone {
    /// `"zone"` or `"zone=127.0.0.2"`.
    pub fn parse(text: &str) -> Result<Zone, String> {
        let (name, answer) = match text.split_once('=') {
            Some((n, a)) => {
                let a: Ipv4Addr = a.trim().parse().map_err(|_| {
                    format!("{text:?}: the answer after '=' must be an IPv4 address")
                })?;
                (n, Some(a))
            }
            None => (text, None),
        };
        let name = name.trim().trim_end_matches('.').to_ascii_lowercase();
        let valid_label = |l: &str| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if name.is_empty() || name.len() > 200 || !name.split('.').all(valid_label) {
            return Err(format!("{text:?}: not a DNS zone name"));
        }
        Ok(Zone { name, answer })
    }

    /// True if `answer` (an A record of the client's query name) lists the client.
    pub fn lists(&self, answer: Ipv4Addr) -> bool {
        match self.answer {
            Some(want) => answer == want,
            None => answer.octets()[0] == 127,
        }
    }
}

/// The name to ask `zone` about `ip`: the IPv4 octets reversed, an IPv6 address as 32
/// reversed nibbles (RFC 5782 §2.1, §2.4).
pub fn query_name(ip: IpAddr, zone: &str) -> String {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.{zone}", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut name = String::with_capacity(64 + zone.len() + 1);
            for byte in v6.octets().iter().rev() {
                name.push(char::from_digit(u32::from(byte & 0xf), 16).unwrap_or('0'));
                name.push('.');
                name.push(char::from_digit(u32::from(byte >> 4), 16).unwrap_or('0'));
                name.push('.');
            }
            name.push_str(zone);
            name
        }
    }
}

/// What the lists said about a client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Listing {
    /// On no list (or every lookup failed).
    Clean,
    /// On this allowlist: no other filter applies.
    Allowed(String),
    /// On this blocklist: refused at RCPT.
    Blocked(String),
}

/// Postfix's reply for a blocklisted client (its log parsers look for "blocked using").
pub fn refusal(ip: IpAddr, zone: &str) -> Reply {
    Reply::new(
        554,
        format!("5.7.1 Service unavailable; Client host [{ip}] blocked using {zone}"),
    )
}

/// The zones and the resolver.
pub struct Lists {
    pub blocklists: Vec<Zone>,
    pub allowlists: Vec<Zone>,
    pub dns: Arc<dns::Dns>,
    /// All lookups of one client end by then.
    pub deadline: Duration,
    /// Lookups that failed or timed out (the client went through).
    failures: AtomicU64,
}

/// A zone's answer about one client: listed, not listed, or unknown (failure).
type Answer = Result<bool, String>;

impl Lists {
    pub fn new(
        blocklists: Vec<Zone>,
        allowlists: Vec<Zone>,
        dns: Arc<dns::Dns>,
        deadline: Duration,
    ) -> Lists {
        Lists {
            blocklists,
            allowlists,
            dns,
            deadline,
            failures: AtomicU64::new(0),
        }
    }

    /// True if there is any zone to ask.
    pub fn any(&self) -> bool {
        !self.blocklists.is_empty() || !self.allowlists.is_empty()
    }

    /// Lookups that failed so far.
    pub fn failures(&self) -> u64 {
        self.failures.load(Ordering::Relaxed)
    }

    /// Asks every zone about `ip` at once; an allowlist wins over a blocklist.
    pub async fn check(self: Arc<Self>, ip: IpAddr) -> Listing {
        let mut set = tokio::task::JoinSet::new();
        let zones = self
            .allowlists
            .iter()
            .map(|z| (true, z))
            .chain(self.blocklists.iter().map(|z| (false, z)));
        for (i, (allow, zone)) in zones.enumerate() {
            let (lists, zone) = (self.clone(), zone.clone());
            set.spawn(async move {
                let answer: Answer = match lists.dns.ipv4(&query_name(ip, &zone.name)).await {
                    Ok(ips) => Ok(ips.iter().any(|a| zone.lists(*a))),
                    Err(dns::Failure::NxDomain | dns::Failure::NoRecords) => Ok(false),
                    Err(dns::Failure::Temporary(e)) => Err(e),
                };
                (i, allow, zone.name, answer)
            });
        }
        let mut answers = Vec::new();
        let all = async {
            while let Some(done) = set.join_next().await {
                if let Ok(a) = done {
                    answers.push(a);
                }
            }
        };
        if tokio::time::timeout(self.deadline, all).await.is_err() {
            set.abort_all();
            self.failures.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                "filter: event=dnsbl_timeout client=[{ip}] answered={} of={} (not listed)",
                answers.len(),
                self.blocklists.len() + self.allowlists.len()
            );
        }
        // In the configured order, so the zone named is the first listed one.
        answers.sort_by_key(|a| a.0);
        let mut blocked = None;
        for (_, allow, zone, answer) in answers {
            match answer {
                Ok(true) if allow => return Listing::Allowed(zone),
                Ok(true) => {
                    blocked.get_or_insert(zone);
                }
                Ok(false) => {}
                Err(e) => {
                    self.failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        "filter: event=dnsbl_lookup_failed client=[{ip}] zone={zone} error={:?} (not listed)",
                        e
                    );
                }
            }
        }
        blocked.map_or(Listing::Clean, Listing::Blocked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_parse_with_and_without_an_answer() {
        assert_eq!(
            Zone::parse("zen.spamhaus.org").unwrap(),
            Zone {
                name: "zen.spamhaus.org".into(),
                answer: None
            }
        );
        assert_eq!(
            Zone::parse("bl.test.=127.0.0.2").unwrap(),
            Zone {
                name: "bl.test".into(),
                answer: Some(Ipv4Addr::new(127, 0, 0, 2))
            }
        );
        assert!(Zone::parse("bl.test=nope").is_err());
        assert!(Zone::parse("").is_err());
        assert!(Zone::parse("a..b").is_err());
        assert!(Zone::parse("a b").is_err());
    }

    #[test]
    fn an_answer_lists_only_when_it_matches() {
        let any = Zone::parse("bl.test").unwrap();
        assert!(any.lists(Ipv4Addr::new(127, 0, 0, 2)));
        assert!(any.lists(Ipv4Addr::new(127, 0, 0, 10)));
        assert!(!any.lists(Ipv4Addr::new(10, 0, 0, 2)));
        let one = Zone::parse("bl.test=127.0.0.4").unwrap();
        assert!(one.lists(Ipv4Addr::new(127, 0, 0, 4)));
        assert!(!one.lists(Ipv4Addr::new(127, 0, 0, 2)));
    }

    #[test]
    fn query_names_reverse_the_address() {
        assert_eq!(
            query_name("127.0.0.5".parse().unwrap(), "bl.test"),
            "5.0.0.127.bl.test"
        );
        assert_eq!(
            query_name("::ffff:192.0.2.1".parse().unwrap(), "bl.test"),
            "1.2.0.192.bl.test"
        );
        // RFC 5782 §2.4's example.
        assert_eq!(
            query_name(
                "2001:db8:1:2:3:4:567:89ab".parse().unwrap(),
                "ugly.example.com"
            ),
            "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.ugly.example.com"
        );
    }

    #[test]
    fn the_refusal_is_postfixs() {
        assert_eq!(
            refusal("127.0.0.5".parse().unwrap(), "bl.test").to_wire(),
            "554 5.7.1 Service unavailable; Client host [127.0.0.5] blocked using bl.test\r\n"
        );
    }
}
