//! The one DNS resolver of the server: built once from `[dns]` (or the system's
//! `/etc/resolv.conf`), shared by the relay's MX lookups and the inbound SPF/DKIM/DMARC/ARC
//! checks, so every lookup goes to the same servers, under the same timeouts, through the
//! same caches.
//!
//! [`Dns`] holds a hickory resolver (which caches raw answers by TTL) wrapped in mail-auth's
//! [`MessageAuthenticator`], plus [`cache::Caches`] of parsed records for mail-auth. The
//! lookups the relay needs ([`Dns::mx`], [`Dns::ips`]) each run under one timeout and come
//! back with their failure classified ([`Failure`]): the name does not exist, it exists
//! without records of that type, or try later. [`Dns::answers`] gives any record type's
//! answers as text (for `mailroom dns-check`). It makes no decision about mail: what a
//! failure means for a recipient or a message is the caller's business.

pub mod cache;
pub mod dmarc_line;
pub mod secure;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use hickory_resolver::config::{
    ConnectionConfig, LookupIpStrategy, NameServerConfig, ResolveHosts, ResolverConfig,
};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{RData, RecordType};
use hickory_resolver::{Resolver, TokioResolver};
use mail_auth::MessageAuthenticator;

pub use cache::Caches;
pub use mail_auth;

/// Where and how to ask.
#[derive(Clone, Debug)]
pub struct DnsConfig {
    /// `ip:port` servers, asked over UDP then TCP; empty: the system resolver.
    pub servers: Vec<SocketAddr>,
    /// One query to one server.
    pub query_timeout: Duration,
    /// Queries per lookup before giving up.
    pub attempts: usize,
    /// A whole lookup (all servers, retries, CNAME chase) ends by then.
    pub lookup_timeout: Duration,
}

impl Default for DnsConfig {
    fn default() -> DnsConfig {
        // Short: a dead resolver defers a delivery or a message quickly instead of hanging it.
        DnsConfig {
            servers: Vec::new(),
            query_timeout: Duration::from_secs(5),
            attempts: 2,
            lookup_timeout: Duration::from_secs(12),
        }
    }
}

/// How a lookup failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// NXDOMAIN: the name does not exist.
    NxDomain,
    /// NOERROR without records of the type asked.
    NoRecords,
    /// SERVFAIL, timeout, refused, unreadable answer...: try later.
    Temporary(String),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::NxDomain => f.write_str("name not found"),
            Failure::NoRecords => f.write_str("no records"),
            Failure::Temporary(e) => write!(f, "{e}"),
        }
    }
}

/// hickory's error as one of the three cases that matter to mail.
pub fn classify(e: &NetError) -> Failure {
    // hickory reports SERVFAIL as "no records found" too: only the response code tells.
    match e {
        NetError::Dns(DnsError::NoRecordsFound(none)) => match none.response_code {
            ResponseCode::NXDomain => Failure::NxDomain,
            ResponseCode::NoError => Failure::NoRecords,
            _ => Failure::Temporary(e.to_string()),
        },
        _ => Failure::Temporary(e.to_string()),
    }
}

/// The shared resolver.
pub struct Dns {
    authenticator: MessageAuthenticator,
    caches: Caches,
    lookup_timeout: Duration,
    /// Where [`Dns::tlsa`] and [`Dns::address_authentic`] ask (the first that answers).
    secure_servers: Vec<SocketAddr>,
}

fn fqdn(name: &str) -> String {
    format!("{}.", name.trim_end_matches('.'))
}

impl Dns {
    pub fn new(config: &DnsConfig) -> Result<Dns, String> {
        let secure_servers = if config.servers.is_empty() {
            system_servers()
        } else {
            config.servers.clone()
        };
        let mut builder = if config.servers.is_empty() {
            TokioResolver::builder_tokio().map_err(|e| format!("system DNS configuration: {e}"))?
        } else {
            let servers: Vec<NameServerConfig> = config
                .servers
                .iter()
                .map(|addr| {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = addr.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = addr.port();
                    NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
                })
                .collect();
            let mut builder = Resolver::builder_with_config(
                ResolverConfig::from_parts(None, vec![], servers),
                TokioRuntimeProvider::default(),
            );
            builder.options_mut().use_hosts_file = ResolveHosts::Never;
            builder
        };
        let options = builder.options_mut();
        options.timeout = config.query_timeout;
        options.attempts = config.attempts;
        options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        let resolver = builder.build().map_err(|e| format!("DNS resolver: {e}"))?;
        Ok(Dns {
            authenticator: MessageAuthenticator(resolver),
            caches: Caches::new(cache::MAX_ENTRIES),
            lookup_timeout: config.lookup_timeout,
            secure_servers,
        })
    }

    /// mail-auth's checker over this resolver.
    pub fn authenticator(&self) -> &MessageAuthenticator {
        &self.authenticator
    }

    /// The parsed-record caches to hand to mail-auth ([`Caches::parameters`]).
    pub fn caches(&self) -> &Caches {
        &self.caches
    }

    /// The bound on one lookup.
    pub fn lookup_timeout(&self) -> Duration {
        self.lookup_timeout
    }

    fn resolver(&self) -> &TokioResolver {
        &self.authenticator.0
    }

    /// MX records of `domain` as `(preference, exchange)`, the exchange as the answer spells
    /// it (`"."` for a null MX, RFC 7505).
    pub async fn mx(&self, domain: &str) -> Result<Vec<(u16, String)>, Failure> {
        let lookup =
            tokio::time::timeout(self.lookup_timeout, self.resolver().mx_lookup(fqdn(domain)))
                .await
                .map_err(|_| {
                    Failure::Temporary(format!("DNS lookup of MX for {domain} timed out"))
                })?
                .map_err(|e| classify(&e))?;
        Ok(lookup
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::MX(mx) => Some((mx.preference, mx.exchange.to_utf8())),
                _ => None,
            })
            .collect())
    }

    /// A and AAAA addresses of `host`, IPv4 first (more often reachable), without duplicates.
    pub async fn ips(&self, host: &str) -> Result<Vec<IpAddr>, Failure> {
        let lookup =
            tokio::time::timeout(self.lookup_timeout, self.resolver().lookup_ip(fqdn(host)))
                .await
                .map_err(|_| Failure::Temporary(format!("DNS lookup of {host} timed out")))?
                .map_err(|e| classify(&e))?;
        let mut ips: Vec<IpAddr> = lookup.iter().collect();
        ips.sort_by_key(|ip| ip.is_ipv6());
        ips.dedup();
        if ips.is_empty() {
            return Err(Failure::NoRecords);
        }
        Ok(ips)
    }

    /// The answers of type `kind` (`"MX"`, `"A"`, `"AAAA"`, `"TXT"`, `"SRV"`, `"CNAME"`) for `name`, as
    /// text: TXT strings joined into one value, MX `pref host.`, SRV `prio weight port
    /// host.`, addresses as usual. An empty answer is [`Failure::NoRecords`].
    pub async fn answers(&self, name: &str, kind: &str) -> Result<Vec<String>, Failure> {
        let rtype = match kind {
            "MX" => RecordType::MX,
            "A" => RecordType::A,
            "AAAA" => RecordType::AAAA,
            "TXT" => RecordType::TXT,
            "SRV" => RecordType::SRV,
            "CNAME" => RecordType::CNAME,
            other => return Err(Failure::Temporary(format!("record type {other} not asked"))),
        };
        let lookup = tokio::time::timeout(
            self.lookup_timeout,
            self.resolver().lookup(fqdn(name), rtype),
        )
        .await
        .map_err(|_| Failure::Temporary(format!("DNS lookup of {kind} for {name} timed out")))?
        .map_err(|e| classify(&e))?;
        let out: Vec<String> = lookup
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::MX(mx) if rtype == RecordType::MX => {
                    Some(format!("{} {}", mx.preference, mx.exchange.to_utf8()))
                }
                RData::A(a) if rtype == RecordType::A => Some(a.0.to_string()),
                RData::AAAA(a) if rtype == RecordType::AAAA => Some(a.0.to_string()),
                RData::TXT(t) if rtype == RecordType::TXT => Some(
                    t.txt_data
                        .iter()
                        .map(|s| String::from_utf8_lossy(s).into_owned())
                        .collect(),
                ),
                RData::CNAME(c) if rtype == RecordType::CNAME => Some(c.0.to_utf8()),
                RData::SRV(v) if rtype == RecordType::SRV => Some(format!(
                    "{} {} {} {}",
                    v.priority,
                    v.weight,
                    v.port,
                    v.target.to_utf8()
                )),
                _ => None,
            })
            .collect();
        if out.is_empty() {
            return Err(Failure::NoRecords);
        }
        Ok(out)
    }

    /// The A records of `name` only (a DNS blocklist's answer: `127.0.0.x`), under the
    /// lookup timeout.
    pub async fn ipv4(&self, name: &str) -> Result<Vec<std::net::Ipv4Addr>, Failure> {
        let lookup = tokio::time::timeout(
            self.lookup_timeout,
            self.resolver()
                .lookup(fqdn(name), hickory_resolver::proto::rr::RecordType::A),
        )
        .await
        .map_err(|_| Failure::Temporary(format!("DNS lookup of {name} timed out")))?
        .map_err(|e| classify(&e))?;
        let ips: Vec<std::net::Ipv4Addr> = lookup
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(a.0),
                _ => None,
            })
            .collect();
        if ips.is_empty() {
            return Err(Failure::NoRecords);
        }
        Ok(ips)
    }
}

/// The name servers of `/etc/resolv.conf`, for the raw queries of [`secure`].
fn system_servers() -> Vec<SocketAddr> {
    match hickory_resolver::system_conf::read_system_conf() {
        Ok((config, _)) => config
            .name_servers()
            .iter()
            .map(|s| {
                let port = s.connections.first().map_or(53, |c| c.port);
                SocketAddr::new(s.ip, port)
            })
            .collect(),
        Err(_) => Vec::new(),
    }
}

impl Dns {
    /// One DNSSEC-aware question ([`secure::query`]) to the servers in turn, until one
    /// answers with something other than a temporary failure.
    async fn secure_query(
        &self,
        name: &str,
        rtype: RecordType,
    ) -> Result<secure::SecureAnswer<RData>, Failure> {
        let mut last = Failure::Temporary("no DNS server configured".into());
        for server in &self.secure_servers {
            match secure::query(*server, name, rtype, self.lookup_timeout).await {
                Err(Failure::Temporary(e)) => last = Failure::Temporary(e),
                other => return other,
            }
        }
        Err(last)
    }

    /// TLSA records of `name` (`_25._tcp.<mx host>`) and whether the resolver authenticated
    /// them (AD bit; the resolver must be a local validating one).
    pub async fn tlsa(&self, name: &str) -> Result<secure::SecureAnswer<secure::Tlsa>, Failure> {
        let answer = self.secure_query(name, RecordType::TLSA).await?;
        Ok(secure::SecureAnswer {
            authentic: answer.authentic,
            records: secure::tlsa_of(&answer.records),
        })
    }

    /// Whether the address records of `host` (A, or AAAA when it has no A) come with the AD
    /// bit: the condition for DANE (RFC 7672 §2.2.2). A host without addresses is `false`.
    pub async fn address_authentic(&self, host: &str) -> Result<bool, Failure> {
        if self.secure_servers.is_empty() {
            return Ok(false);
        }
        match self.secure_query(host, RecordType::A).await {
            Ok(answer) => Ok(answer.authentic),
            Err(Failure::NoRecords | Failure::NxDomain) => {
                match self.secure_query(host, RecordType::AAAA).await {
                    Ok(answer) => Ok(answer.authentic),
                    Err(Failure::NoRecords | Failure::NxDomain) => Ok(false),
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }
}

impl Dns {
    /// TXT records of `name`, each record's character strings joined (RFC 7208 §3.3 and RFC
    /// 8461 §3.1 read them so), as UTF-8 with bad octets replaced. At most 64 records of at
    /// most 4 KiB are kept: a hostile answer costs no more memory than that.
    pub async fn txt(&self, name: &str) -> Result<Vec<String>, Failure> {
        let lookup =
            tokio::time::timeout(self.lookup_timeout, self.resolver().txt_lookup(fqdn(name)))
                .await
                .map_err(|_| Failure::Temporary(format!("DNS lookup of TXT {name} timed out")))?
                .map_err(|e| classify(&e))?;
        Ok(lookup
            .answers()
            .iter()
            .filter_map(|r| match &r.data {
                RData::TXT(txt) => {
                    let mut joined = Vec::new();
                    for part in txt.txt_data.iter() {
                        joined.extend_from_slice(part);
                    }
                    joined.truncate(4096);
                    Some(String::from_utf8_lossy(&joined).into_owned())
                }
                _ => None,
            })
            .take(64)
            .collect())
    }
}
