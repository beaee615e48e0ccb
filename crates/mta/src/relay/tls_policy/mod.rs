//! The TLS policy of a destination domain: what the relay must demand of a hop before it
//! hands it mail. Today MTA-STS (RFC 8461): [`sts`] (pure: TXT record, policy file, MX
//! matching, named failures), [`https`] (the bounded policy fetch), [`cache`] (the cached
//! form, kept through `store::tls_policies` so it survives restarts).
//!
//! [`Policies::demand`] follows §5.1: the `_mta-sts` TXT record through the one resolver; a
//! cached policy that has not expired and carries the same `id` is used as is; otherwise the
//! policy is fetched again, and when that fails a still-valid cached policy is used, or none
//! (the domain is then treated as having no policy, as the RFC says). It decides nothing about
//! a connection: the relay filters MX hosts and checks certificates by the [`Demand`].

pub mod cache;
pub mod https;
pub mod report;
pub mod sts;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dns::Dns;
use store::clock::Clock;
use store::tls_policies::TlsPolicies;
use store::tls_report_counts::{Session, TlsReportCounts};
use tokio_rustls::TlsConnector;

pub use cache::Cached;
pub use sts::{Mode, Problem};

/// Policies kept in memory at most (past it the memory copy starts over from the store).
const MAX_IN_MEMORY: usize = 10_000;

/// `[relay]` settings of the TLS policy room.
#[derive(Clone, Debug)]
pub struct TlsPolicyConfig {
    /// Look MTA-STS policies up and obey them (`[relay] mta_sts`).
    pub mta_sts: bool,
    /// DANE (RFC 7672) for MX hosts whose address answer the resolver authenticated
    /// (`[relay] dane`).
    pub dane: bool,
    /// Port of the policy web servers (443; tests use another).
    pub https_port: u16,
    /// One whole policy fetch.
    pub fetch_timeout: Duration,
    /// Where policies are cached (`data_dir`); `None`: memory only.
    pub data_dir: Option<std::path::PathBuf>,
    /// TLS-RPT reports are sent (`[relay] tls_reports`): the counts are then kept in
    /// `store::tls_report_counts` under `data_dir` (they survive a restart).
    pub tls_reports: bool,
}

impl Default for TlsPolicyConfig {
    fn default() -> TlsPolicyConfig {
        TlsPolicyConfig {
            mta_sts: true,
            dane: true,
            https_port: 443,
            fetch_timeout: Duration::from_secs(20),
            data_dir: None,
            tls_reports: false,
        }
    }
}

/// What a destination asks of the hops that carry its mail.
#[derive(Clone, Debug, Default)]
pub enum Demand {
    /// Opportunistic TLS, as without any policy.
    #[default]
    Opportunistic,
    /// MTA-STS `testing`: deliver as without a policy; failures are counted.
    StsTesting(Arc<Cached>),
    /// MTA-STS `enforce`: only MX hosts the policy names, only over TLS verified for them.
    StsEnforce(Arc<Cached>),
}

impl Demand {
    /// The policy's view of `host`, for `enforce` and `testing`.
    pub fn allows(&self, host: &str) -> bool {
        match self {
            Demand::Opportunistic => true,
            Demand::StsTesting(c) | Demand::StsEnforce(c) => c.policy.allows(host),
        }
    }
}

/// How a delivery's TLS was verified (the log's `verified=`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Verified {
    /// An MTA-STS policy in `enforce` required it and the certificate passed.
    MtaSts,
    /// A usable TLSA record matched (DANE).
    Dane,
    /// The certificate verifies for the MX name by the trusted CAs, nobody required it.
    Ca,
    #[default]
    None,
}

impl std::fmt::Display for Verified {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Verified::MtaSts => "mta-sts",
            Verified::Dane => "dane",
            Verified::Ca => "ca",
            Verified::None => "none",
        })
    }
}

/// The MTA-STS policies of remote domains: lookup, fetch, caches.
pub struct Policies {
    config: TlsPolicyConfig,
    dns: Arc<Dns>,
    fetcher: https::Fetcher,
    store: Option<TlsPolicies>,
    clock: Arc<dyn Clock>,
    memory: Mutex<HashMap<String, Arc<Cached>>>,
    /// One fetch per domain at a time: a burst of mail to a domain fetches its policy once.
    fetching: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// Sessions under a policy since the last TLS-RPT report (without a store).
    counts: Mutex<report::Counts>,
    /// The same, kept through restarts (`tls_reports` with a `data_dir`).
    counts_store: Option<TlsReportCounts>,
}

impl Policies {
    pub fn new(
        config: TlsPolicyConfig,
        dns: Arc<Dns>,
        verified: TlsConnector,
        clock: Arc<dyn Clock>,
    ) -> Policies {
        Policies {
            fetcher: https::Fetcher {
                dns: dns.clone(),
                tls: verified,
                port: config.https_port,
                timeout: config.fetch_timeout,
            },
            store: config.data_dir.as_deref().map(TlsPolicies::new),
            counts_store: match (&config.data_dir, config.tls_reports) {
                (Some(dir), true) => match TlsReportCounts::open(dir) {
                    Ok(c) => Some(c),
                    Err(e) => {
                        tracing::warn!("relay: {e}: TLS-RPT counts kept in memory only");
                        None
                    }
                },
                _ => None,
            },
            config,
            dns,
            clock,
            memory: Mutex::new(HashMap::new()),
            fetching: Mutex::new(HashMap::new()),
            counts: Mutex::new(report::Counts::default()),
        }
    }

    /// The resolver policies are looked up through (TLS-RPT's `_smtp._tls` too).
    pub fn dns(&self) -> &Arc<Dns> {
        &self.dns
    }

    /// Counts one session to an MX of `domain` under `demand` (nothing without a policy).
    pub fn record(&self, domain: &str, demand: &Demand, result: Result<(), (Problem, &str, &str)>) {
        let (Demand::StsEnforce(c) | Demand::StsTesting(c)) = demand else {
            return;
        };
        let lines: Vec<String> = String::from_utf8_lossy(&c.body)
            .lines()
            .map(|l| l.trim().to_string())
            .filter(|l| !l.is_empty())
            .collect();
        let result = result.map_err(|(p, mx, ip)| report::sts_failure(p, mx, ip));
        self.count(report::STS, domain, &lines, result);
    }

    /// Counts one session to `mx_host` under its TLSA `records` (DANE: the policy domain is
    /// the MX host, RFC 8460 §3); a failure is `(result type, address)`.
    pub fn record_dane(
        &self,
        mx_host: &str,
        records: &[dns::secure::Tlsa],
        result: Result<(), (&str, &str)>,
    ) {
        let lines: Vec<String> = records.iter().map(super::dane::presentation).collect();
        let mx = mx_host.trim_end_matches('.').to_ascii_lowercase();
        let result = result.map(|_| ()).map_err(|(ty, ip)| (ty, mx.as_str(), ip));
        self.count(report::TLSA, &mx, &lines, result);
    }

    fn count(
        &self,
        policy_type: &str,
        domain: &str,
        lines: &[String],
        result: report::SessionResult<'_>,
    ) {
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        if let Some(store) = &self.counts_store {
            let session = Session {
                policy_type,
                domain: &domain,
                policy: lines,
                day: self.clock.unix() / 86_400,
                failure: result.err(),
            };
            match store.record(&session) {
                Ok(_) => return,
                Err(e) => tracing::warn!("relay: TLS-RPT counts: {e}; counted in memory"),
            }
        }
        self.counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(policy_type, &domain, lines, result);
    }

    /// The counts since the last call (the store's and memory's), which start over.
    pub fn take_counts(&self) -> report::Counts {
        let mut counts =
            std::mem::take(&mut *self.counts.lock().unwrap_or_else(|e| e.into_inner()));
        if let Some(store) = &self.counts_store {
            match store.take() {
                Ok(taken) => counts.add_taken(&taken),
                Err(e) => tracing::warn!("relay: TLS-RPT counts: {e}"),
            }
        }
        counts
    }

    /// What mail to `domain` must get (never fails: no usable policy is `Opportunistic`).
    pub async fn demand(&self, domain: &str) -> Demand {
        if !self.config.mta_sts {
            return Demand::Opportunistic;
        }
        let domain = domain.trim_end_matches('.').to_ascii_lowercase();
        match self.policy(&domain).await {
            Some(c) => match c.policy.mode {
                Mode::Enforce => Demand::StsEnforce(c),
                Mode::Testing => Demand::StsTesting(c),
                Mode::None => Demand::Opportunistic,
            },
            None => Demand::Opportunistic,
        }
    }

    async fn policy(&self, domain: &str) -> Option<Arc<Cached>> {
        let now = self.clock.unix();
        let txt = self.dns.txt(&format!("_mta-sts.{domain}")).await;
        let id = match txt {
            Ok(records) => sts::record_id(&records),
            Err(e) => Err(e.to_string()),
        };
        let cached = self.cached(domain).filter(|c| c.valid_at(now));
        let id = match id {
            Ok(id) => id,
            // No record (or none readable): a policy still cached stays in force (§5.1).
            Err(_) => return cached,
        };
        if let Some(c) = &cached {
            if c.id == id {
                return cached;
            }
        }
        let gate = {
            let mut fetching = self.fetching.lock().unwrap_or_else(|e| e.into_inner());
            if fetching.len() > MAX_IN_MEMORY {
                fetching.retain(|_, g| Arc::strong_count(g) > 1);
            }
            fetching.entry(domain.to_string()).or_default().clone()
        };
        let _one = gate.lock().await;
        // Another delivery may have fetched it meanwhile.
        if let Some(c) = self
            .cached(domain)
            .filter(|c| c.valid_at(now) && c.id == id)
        {
            return Some(c);
        }
        let fetched = match self.fetcher.fetch(domain).await {
            Ok(body) => Cached::new(id, now, body),
            Err(e) => Err(e),
        };
        match fetched {
            Ok(c) => {
                tracing::info!(
                    "relay: {domain}: MTA-STS policy id={} mode={} max_age={} mx={}",
                    c.id,
                    c.policy.mode.as_str(),
                    c.policy.max_age,
                    c.policy.mx.join(",")
                );
                if let Some(store) = &self.store {
                    if let Err(e) = store.write(domain, &c.encode()) {
                        tracing::warn!("relay: {domain}: cannot store the MTA-STS policy: {e}");
                    }
                }
                let c = Arc::new(c);
                self.remember(domain, c.clone());
                Some(c)
            }
            Err(e) => {
                let kept = if cached.is_some() {
                    "keeping the cached policy"
                } else {
                    "no policy applies"
                };
                tracing::warn!("relay: {domain}: MTA-STS: {e}; {kept}");
                cached
            }
        }
    }

    /// The policy in memory, or read from the store into memory.
    fn cached(&self, domain: &str) -> Option<Arc<Cached>> {
        if let Some(c) = self
            .memory
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(domain)
        {
            return Some(c.clone());
        }
        let record = self.store.as_ref()?.read(domain).ok()??;
        let c = Arc::new(Cached::decode(&record)?);
        self.remember(domain, c.clone());
        Some(c)
    }

    fn remember(&self, domain: &str, c: Arc<Cached>) {
        let mut memory = self.memory.lock().unwrap_or_else(|e| e.into_inner());
        if memory.len() >= MAX_IN_MEMORY {
            memory.clear();
        }
        memory.insert(domain.to_string(), c);
    }
}

/// Whether the header section at the start of `message` holds `TLS-Required: No` (RFC 8689
/// §5; name and value case-insensitive, folded lines ignored). Stops at the first empty line.
pub fn tls_required_no(message: &[u8]) -> bool {
    for line in message.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            return false;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        if name.eq_ignore_ascii_case(b"TLS-Required")
            && value.trim_ascii().eq_ignore_ascii_case(b"no")
        {
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::tls_required_no;

    #[test]
    fn tls_required_header() {
        assert!(tls_required_no(
            b"Subject: x\r\nTLS-Required: No\r\n\r\nbody"
        ));
        assert!(tls_required_no(b"tls-required:no\n\n"));
        assert!(!tls_required_no(b"Subject: x\r\n\r\nTLS-Required: No\r\n"));
        assert!(!tls_required_no(b"TLS-Required: Yes\r\n\r\n"));
        assert!(!tls_required_no(b"X-TLS-Required: No\r\n\r\n"));
    }
}
