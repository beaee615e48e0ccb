//! DMARC aggregate reports (RFC 7489 §7.2), when `[verify] dmarc_reports` is on: every
//! `interval` (a day by default) each domain's results recorded by `smtpd::verify` are taken
//! from `store::dmarc_reports`, counted into rows (identical rows become one with their
//! count), and one report per domain is built with mail-auth's `report` module (XML, gzip
//! attachment) and queued from our postmaster, DKIM-signed, to the domain's `rua=` mailto
//! addresses, like any other mail we send (the queue retries it).
//!
//! RFC 7489 §7.1: a `rua` address outside the domain (not the domain, a subdomain or a
//! parent of it) gets the report only if its domain publishes
//! `<domain>._report._dmarc.<rua domain>` TXT `v=DMARC1`; else it is skipped and logged.
//! The envelope sender is null (`<>`): a report that cannot be delivered bounces nowhere.
//!
//! Bounded by the store (per-domain file size, number of domains); one domain's results are
//! in memory at a time. Not here: which results are recorded (`smtpd::verify_report`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use dns::dmarc_line::ResultLine;
use mail_auth::report::{Record, Report};
use store::dmarc_reports::DmarcReports;
use store::spool::{Origin, Spool};
use tokio::sync::{mpsc, watch};

/// Report addresses per domain (RFC 7489 allows any number; nobody needs many).
const MAX_RUA: usize = 5;

/// The report task's parts.
pub struct DmarcReporter {
    pub reports: Arc<DmarcReports>,
    pub spool: Arc<Spool>,
    pub dns: Arc<dns::Dns>,
    pub dkim: Option<Arc<dkim::Keyring>>,
    /// Our host name: the report's submitter and org name.
    pub hostname: String,
    /// The report's `From:` (our postmaster).
    pub from: String,
    pub interval: Duration,
    /// New queue ids for the runner.
    pub queued: mpsc::UnboundedSender<String>,
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The mailto addresses among `rua` URIs (size suffixes removed by mail-auth already).
pub fn mailto_addresses(rua: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for uri in rua {
        let Some(addr) = uri
            .get(..7)
            .filter(|s| s.eq_ignore_ascii_case("mailto:"))
            .map(|_| &uri[7..])
        else {
            continue;
        };
        let addr = addr.split('!').next().unwrap_or("").trim().to_string();
        if proto::address::check(&addr).is_ok() && !out.contains(&addr) {
            out.push(addr);
        }
    }
    out.truncate(MAX_RUA);
    out
}

/// Whether `rua_domain` is outside `domain` (RFC 7489 §7.1 then asks it to agree).
pub fn external(domain: &str, rua_domain: &str) -> bool {
    let (d, r) = (domain.to_ascii_lowercase(), rua_domain.to_ascii_lowercase());
    !(d == r || d.ends_with(&format!(".{r}")) || r.ends_with(&format!(".{d}")))
}

/// The rows of one domain's results: identical rows counted once; the policy and `rua` of
/// the latest line.
pub fn aggregate(lines: &[Vec<u8>]) -> Option<(ResultLine, Vec<Record>)> {
    let mut counts: BTreeMap<Vec<u8>, (Record, u32)> = BTreeMap::new();
    let mut last = None;
    for line in lines {
        let Some(parsed) = ResultLine::from_json(line) else {
            tracing::warn!(
                "dmarc-report: unreadable result line: {}",
                String::from_utf8_lossy(&line[..line.len().min(200)])
            );
            continue;
        };
        let key = serde_json::to_vec(&parsed.record).unwrap_or_default();
        counts
            .entry(key)
            .or_insert_with(|| (parsed.record.clone(), 0))
            .1 += 1;
        last = Some(parsed);
    }
    let rows = counts.into_values().map(|(r, n)| r.with_count(n)).collect();
    last.map(|l| (l, rows))
}

impl DmarcReporter {
    /// Sends reports every `interval` until `shutdown`.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut begin = unix_now();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(self.interval.max(Duration::from_secs(1))) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
            let end = unix_now();
            self.send_all(begin, end).await;
            begin = end;
        }
    }

    async fn send_all(&self, begin: u64, end: u64) {
        let domains = match self.reports.domains() {
            Ok(d) => d,
            Err(e) => {
                tracing::warn!("dmarc-report: cannot read the results: {e}");
                return;
            }
        };
        for domain in domains {
            let lines = match self.reports.take(&domain) {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!("dmarc-report: {domain}: cannot read the results: {e}");
                    continue;
                }
            };
            if let Some((latest, rows)) = aggregate(&lines) {
                self.send(&domain, begin, end, latest, rows).await;
            }
        }
    }

    /// The `rua` addresses allowed to get `domain`'s report.
    async fn recipients(&self, domain: &str, rua: &[String]) -> Vec<String> {
        let mut out = Vec::new();
        for addr in mailto_addresses(rua) {
            let rua_domain = addr.rsplit_once('@').map_or("", |(_, d)| d);
            if external(domain, rua_domain) {
                let name = format!("{domain}._report._dmarc.{rua_domain}");
                let agrees = self.dns.answers(&name, "TXT").await.is_ok_and(|a| {
                    a.iter()
                        .any(|t| t.trim_start().to_ascii_lowercase().starts_with("v=dmarc1"))
                });
                if !agrees {
                    tracing::info!(
                        "dmarc-report: {domain}: not reporting to {addr}: {name} does not agree (RFC 7489 7.1)"
                    );
                    continue;
                }
            }
            out.push(addr);
        }
        out
    }

    async fn send(
        &self,
        domain: &str,
        begin: u64,
        end: u64,
        latest: ResultLine,
        rows: Vec<Record>,
    ) {
        let to = self.recipients(domain, &latest.rua).await;
        if to.is_empty() {
            return;
        }
        let messages: u32 = rows.iter().map(|r| r.count()).sum();
        let mut report = Report::new()
            .with_org_name(self.hostname.clone())
            .with_email(self.from.clone())
            .with_report_id(format!("{domain}.{begin}.{end}"))
            .with_date_range_begin(begin)
            .with_date_range_end(end)
            .with_policy_published(latest.policy);
        for row in rows {
            report = report.with_record(row);
        }
        let mut message = Vec::new();
        if let Err(e) = report.write_rfc5322(
            &self.hostname,
            ("DMARC reports", self.from.as_str()),
            to.iter().map(String::as_str),
            &mut message,
        ) {
            tracing::warn!("dmarc-report: {domain}: cannot build the report: {e}");
            return;
        }
        let signature = match &self.dkim {
            Some(keyring) => match keyring.sign(&[&message]) {
                Ok(s) => s.unwrap_or_default(),
                Err(e) => {
                    tracing::warn!("dmarc-report: {domain}: not DKIM-signed: {e}");
                    Vec::new()
                }
            },
            None => Vec::new(),
        };
        let id = store::spool::new_id();
        let origin = Origin {
            client: "DMARC aggregate report",
            sender_verified: true,
            notify_never: true,
            require_tls: false,
        };
        match self
            .spool
            .enqueue(&id, "", &to, &origin, unix_now(), &[&signature, &message])
            .await
        {
            Ok(()) => {
                tracing::info!(
                    "dmarc-report: {domain}: report of {messages} messages queued as {id} to {}",
                    to.join(", ")
                );
                let _ = self.queued.send(id);
            }
            Err(e) => tracing::warn!("dmarc-report: {domain}: cannot queue the report: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mailto_addresses_only_and_outside_domains_told_apart() {
        let rua = vec![
            "mailto:agg@remote.test!10m".to_string(),
            "https://example.test/report".into(),
            "MAILTO:agg@remote.test".into(),
            "mailto:not an address".into(),
            "mailto:b@sender.test".into(),
        ];
        assert_eq!(
            mailto_addresses(&rua),
            vec!["agg@remote.test", "b@sender.test"]
        );
        assert!(external("sender.test", "remote.test"));
        assert!(!external("sender.test", "sender.test"));
        assert!(!external("mail.sender.test", "sender.test"));
        assert!(!external("sender.test", "reports.sender.test"));
        assert!(external("sender.test", "evilsender.test"));
    }
}
