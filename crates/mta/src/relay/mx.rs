//! Where mail for a domain goes: MX lookup and its rules (RFC 5321 §5.1, RFC 7505).
//!
//! The pure part ([`order_mx`], [`drop_self`]) orders MX records by preference with a random
//! order among equal preferences, recognises the null MX, and removes the hosts that are this
//! server. [`route`] runs the DNS lookups (MX, then A/AAAA of every host, or the domain's own
//! A/AAAA as implicit MX) and turns DNS errors into recipient results: NXDOMAIN is permanent
//! (`5.1.2`), a temporary DNS failure defers. It does not connect anywhere.
//!
//! Hostile DNS is bounded: at most [`MAX_MX_HOSTS`] MX hosts (the best by preference) are
//! looked up at all, their addresses are resolved in parallel, and the whole route has one
//! deadline ([`ROUTE_DEADLINE`]); three MX names that never answer cost one DNS timeout, not
//! three, and a reply with thousands of MX records costs no more than one with ten.

use std::net::{IpAddr, SocketAddr};

use std::sync::Arc;

use dns::{Dns, Failure};
use rand::seq::SliceRandom;
use rand::Rng;

use super::{Destination, RcptResult};

/// Addresses tried per delivery at most (Postfix's `smtp_mx_address_limit` is 5).
const MAX_ADDRESSES: usize = 10;
/// MX hosts whose addresses are looked up, the most preferred first; the rest are ignored.
pub const MAX_MX_HOSTS: usize = 10;
/// All the DNS work of one route (MX, then every host's addresses) ends by then; hosts not
/// resolved by the deadline are left out, and with none resolved the mail is deferred.
pub const ROUTE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30);

/// What the MX records of a domain say.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MxPlan {
    /// RFC 7505: the domain accepts no mail.
    Null,
    /// Host names (no trailing dot) with their preference, in the order to try.
    Hosts(Vec<(u16, String)>),
}

/// Orders MX records `(preference, exchange)`: lowest preference first, shuffled among equal
/// preferences (RFC 5321 §5.1). A single record whose exchange is the root (`.` or empty) is a
/// null MX (RFC 7505 §3); a root exchange among other records is ignored.
pub fn order_mx<R: Rng + ?Sized>(records: &[(u16, String)], rng: &mut R) -> MxPlan {
    let is_root = |name: &str| name.trim_end_matches('.').is_empty();
    if records.len() == 1 && is_root(&records[0].1) {
        return MxPlan::Null;
    }
    let mut hosts: Vec<(u16, String)> = records
        .iter()
        .filter(|(_, name)| !is_root(name))
        .map(|(p, name)| (*p, name.trim_end_matches('.').to_ascii_lowercase()))
        .collect();
    hosts.shuffle(rng);
    // A stable sort keeps the shuffled order within each preference.
    hosts.sort_by_key(|(p, _)| *p);
    // Dedup keeps the first (best) occurrence of a name only when duplicates are adjacent.
    let mut seen = std::collections::HashSet::new();
    hosts.retain(|(_, name)| seen.insert(name.clone()));
    if hosts.is_empty() {
        return MxPlan::Null;
    }
    hosts.truncate(MAX_MX_HOSTS);
    MxPlan::Hosts(hosts)
}

/// True when `ip` is one of our own addresses (an unspecified listening address means any
/// loopback address is us too).
pub fn is_local(ip: IpAddr, local: &[IpAddr]) -> bool {
    let ip = ip.to_canonical();
    local.iter().any(|l| {
        let l = l.to_canonical();
        l == ip || (l.is_unspecified() && ip.is_loopback())
    })
}

/// RFC 5321 §5.1: if this server is among the MX hosts, only hosts with a lower preference than
/// ours may be tried. `None` when that leaves nothing: the mail would loop back to us.
pub fn drop_self(
    hosts: Vec<(u16, String, Vec<IpAddr>)>,
    local: &[IpAddr],
) -> Option<Vec<(u16, String, Vec<IpAddr>)>> {
    let ours = hosts
        .iter()
        .filter(|(_, _, ips)| ips.iter().any(|ip| is_local(*ip, local)))
        .map(|(p, _, _)| *p)
        .min();
    let kept: Vec<_> = match ours {
        Some(ours) => hosts.into_iter().filter(|(p, _, _)| *p < ours).collect(),
        None => hosts,
    };
    if kept.is_empty() {
        None
    } else {
        Some(kept)
    }
}

/// `[192.0.2.1]` or `[IPv6:2001:db8::1]` (RFC 5321 §4.1.3).
pub fn address_literal(domain: &str) -> Option<IpAddr> {
    let inner = domain.strip_prefix('[')?.strip_suffix(']')?;
    let inner = inner
        .strip_prefix("IPv6:")
        .or_else(|| inner.strip_prefix("ipv6:"))
        .unwrap_or(inner);
    inner.parse().ok()
}

enum HostError {
    /// The name does not exist or has no address.
    NotFound(String),
    /// Try later.
    Temporary(String),
}

async fn addresses(dns: &Dns, host: &str) -> Result<Vec<IpAddr>, HostError> {
    if let Some(ip) = address_literal(host).or_else(|| host.parse().ok()) {
        return Ok(vec![ip]);
    }
    match dns.ips(host).await {
        Ok(ips) => Ok(ips),
        Err(Failure::NoRecords) => Err(HostError::NotFound(format!("{host}: no address"))),
        Err(Failure::NxDomain) => Err(HostError::NotFound(format!("{host}: host not found"))),
        Err(Failure::Temporary(e)) => Err(HostError::Temporary(format!("{host}: DNS error: {e}"))),
    }
}

/// The addresses to try, in order, for `host` (a smarthost), at `port`.
pub(crate) async fn smarthost(
    dns: &Arc<Dns>,
    host: &str,
    port: u16,
) -> Result<Vec<Destination>, RcptResult> {
    match addresses(dns, host).await {
        Ok(ips) => Ok(destinations(host, &ips, port)),
        Err(HostError::NotFound(e) | HostError::Temporary(e)) => {
            Err(RcptResult::deferred(format!("smarthost {e}")))
        }
    }
}

fn destinations(host: &str, ips: &[IpAddr], port: u16) -> Vec<Destination> {
    ips.iter()
        .map(|ip| Destination {
            host: host.to_string(),
            addr: SocketAddr::new(*ip, port),
        })
        .collect()
}

/// The addresses to try, in order, for mail to `domain`, or the result every recipient gets.
/// All its DNS work ends within [`ROUTE_DEADLINE`].
pub(crate) async fn route(
    dns: &Arc<Dns>,
    domain: &str,
    port: u16,
    local: &[IpAddr],
) -> Result<Vec<Destination>, RcptResult> {
    let deadline = tokio::time::Instant::now() + ROUTE_DEADLINE;
    route_by(dns, domain, port, local, deadline).await
}

async fn route_by(
    dns: &Arc<Dns>,
    domain: &str,
    port: u16,
    local: &[IpAddr],
    deadline: tokio::time::Instant,
) -> Result<Vec<Destination>, RcptResult> {
    let loops = || RcptResult::failed("5.4.6", format!("mail for {domain} loops back to myself"));
    if let Some(ip) = address_literal(domain) {
        if is_local(ip, local) {
            return Err(loops());
        }
        return Ok(destinations(domain, &[ip], port));
    }
    let mx = tokio::time::timeout_at(deadline, dns.mx(domain)).await;
    let Ok(mx) = mx else {
        return Err(RcptResult::deferred(format!(
            "DNS lookup of MX for {domain} timed out"
        )));
    };
    let (plan, implicit) = match mx {
        Ok(records) => {
            if records.is_empty() {
                (MxPlan::Hosts(vec![(0, domain.to_string())]), true)
            } else {
                (order_mx(&records, &mut rand::rng()), false)
            }
        }
        Err(Failure::NxDomain) => {
            return Err(RcptResult::failed(
                "5.1.2",
                format!("domain {domain} not found"),
            ))
        }
        // RFC 5321 §5.1: no MX records: the domain itself is the implicit MX.
        Err(Failure::NoRecords) => (MxPlan::Hosts(vec![(0, domain.to_string())]), true),
        Err(Failure::Temporary(e)) => {
            return Err(RcptResult::deferred(format!(
                "DNS lookup of MX for {domain} failed: {e}"
            )))
        }
    };
    let hosts = match plan {
        MxPlan::Null => {
            return Err(RcptResult::failed(
                "5.1.10",
                format!("domain {domain} accepts no mail (null MX, RFC 7505)"),
            ))
        }
        MxPlan::Hosts(hosts) => hosts,
    };
    // Every host's addresses at once; results are put back in preference order.
    let mut lookups = tokio::task::JoinSet::new();
    for (n, (preference, host)) in hosts.into_iter().enumerate() {
        let dns = dns.clone();
        lookups.spawn(async move {
            let r = addresses(&dns, &host).await;
            (n, preference, host, r)
        });
    }
    let mut done = Vec::new();
    let mut last_error = String::new();
    let mut temporary = false;
    loop {
        match tokio::time::timeout_at(deadline, lookups.join_next()).await {
            Ok(Some(Ok(one))) => done.push(one),
            Ok(Some(Err(_))) => {}
            Ok(None) => break,
            Err(_) => {
                // What is still running is dropped with the JoinSet.
                temporary = true;
                last_error = format!("DNS lookups for {domain} timed out");
                break;
            }
        }
    }
    done.sort_by_key(|(n, ..)| *n);
    let mut resolved = Vec::new();
    for (_, preference, host, r) in done {
        match r {
            Ok(ips) => resolved.push((preference, host, ips)),
            Err(HostError::NotFound(e)) => {
                if last_error.is_empty() {
                    last_error = e;
                }
            }
            Err(HostError::Temporary(e)) => {
                temporary = true;
                last_error = e;
            }
        }
    }
    if resolved.is_empty() {
        if implicit && !temporary {
            return Err(RcptResult::failed(
                "5.1.2",
                format!("domain {domain} has no MX and no address"),
            ));
        }
        return Err(RcptResult::deferred(format!(
            "no usable MX host for {domain}: {last_error}"
        )));
    }
    let Some(kept) = drop_self(resolved, local) else {
        return Err(loops());
    };
    let mut out = Vec::new();
    for (_, host, ips) in kept {
        out.extend(destinations(&host, &ips, port));
    }
    out.truncate(MAX_ADDRESSES);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(list: &[(u16, &str)]) -> Vec<(u16, String)> {
        list.iter().map(|(p, n)| (*p, n.to_string())).collect()
    }

    #[test]
    fn preference_order_with_shuffle_among_equals() {
        let records = rec(&[
            (20, "c.example."),
            (10, "a.example."),
            (10, "b.example."),
            (30, "d.example"),
        ]);
        let mut seen_first = std::collections::HashSet::new();
        for _ in 0..200 {
            let MxPlan::Hosts(hosts) = order_mx(&records, &mut rand::rng()) else {
                panic!("not null");
            };
            let prefs: Vec<u16> = hosts.iter().map(|h| h.0).collect();
            assert_eq!(prefs, vec![10, 10, 20, 30]);
            assert_eq!(hosts[2].1, "c.example");
            assert_eq!(hosts[3].1, "d.example");
            seen_first.insert(hosts[0].1.clone());
        }
        assert_eq!(seen_first.len(), 2, "equal preferences are shuffled");
    }

    #[test]
    fn at_most_max_mx_hosts_the_best_first() {
        let records: Vec<(u16, String)> = (0..5000u16)
            .map(|i| (5000 - i, format!("mx{i}.example.")))
            .chain([(7, "mx4999.example.".to_string())])
            .collect();
        let MxPlan::Hosts(hosts) = order_mx(&records, &mut rand::rng()) else {
            panic!("not null");
        };
        assert_eq!(hosts.len(), MAX_MX_HOSTS);
        assert_eq!(hosts[0], (1, "mx4999.example".to_string()));
        assert_eq!(hosts[1], (2, "mx4998.example".to_string()));
        // A name listed twice counts once, at its best preference.
        assert_eq!(hosts.iter().filter(|h| h.1 == "mx4999.example").count(), 1);
    }

    #[test]
    fn null_mx() {
        assert_eq!(order_mx(&rec(&[(0, ".")]), &mut rand::rng()), MxPlan::Null);
        assert_eq!(order_mx(&rec(&[(0, "")]), &mut rand::rng()), MxPlan::Null);
        assert_eq!(
            order_mx(&rec(&[(0, "."), (10, "mx.example.")]), &mut rand::rng()),
            MxPlan::Hosts(vec![(10, "mx.example".into())])
        );
    }

    #[test]
    fn loops_back_to_self() {
        let me: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let hosts = vec![
            (10, "a".to_string(), vec![other]),
            (20, "me".to_string(), vec![me]),
            (30, "c".to_string(), vec![other]),
        ];
        let kept = drop_self(hosts.clone(), &[me]).unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].1, "a");
        assert_eq!(drop_self(hosts[1..].to_vec(), &[me]), None);
        assert_eq!(drop_self(hosts.clone(), &[]).unwrap().len(), 3);
        // Listening on 0.0.0.0: any loopback address is us.
        let lo = vec![(10, "lo".to_string(), vec!["127.0.0.5".parse().unwrap()])];
        assert_eq!(drop_self(lo.clone(), &["0.0.0.0".parse().unwrap()]), None);
        assert!(drop_self(lo, &["127.0.0.1".parse().unwrap()]).is_some());
        assert!(is_local("::ffff:192.0.2.1".parse().unwrap(), &[me]));
    }

    #[test]
    fn address_literals() {
        assert_eq!(
            address_literal("[192.0.2.1]"),
            Some("192.0.2.1".parse().unwrap())
        );
        assert_eq!(
            address_literal("[IPv6:2001:db8::1]"),
            Some("2001:db8::1".parse().unwrap())
        );
        assert_eq!(address_literal("example.org"), None);
        assert_eq!(address_literal("[example.org]"), None);
    }
}
