//! Sending TLS-RPT reports (RFC 8460 §5): every `period`, the counts the relay kept per
//! MTA-STS policy domain become one report per domain, gzipped JSON in a `multipart/report;
//! report-type="tlsrpt"` message from our postmaster to the `mailto:` addresses of the
//! domain's `_smtp._tls` TXT record, DKIM-signed and queued like our DSNs.
//!
//! Counts live in `store::tls_report_counts` between two reports (a restart loses none);
//! DANE sessions are counted under their MX host (`policy-type: tlsa`); a domain without a usable `rua=mailto:` gets no report. Not here: what is counted
//! (`crate::relay::tls_policy`), the JSON ([`crate::relay::tls_policy::report`]).

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use store::spool::Origin;
use tokio::sync::watch;

use super::runner::Runner;
use crate::relay::tls_policy::report::{self, DomainCounts, Reporter};

impl Runner {
    /// Sends the reports every `period` until `shutdown`.
    pub async fn tls_reports(
        self: Arc<Self>,
        period: Duration,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let Some(relay) = self.relay.clone() else {
            return;
        };
        let period = period.max(Duration::from_secs(1));
        let mut start = self.clock.unix();
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            let end = self.clock.unix();
            let counts = relay.policies().take_counts();
            // Counts kept through a restart may predate this task's start.
            let from = counts.first_day.map_or(start, |d| start.min(d * 86_400));
            let mut by_domain: std::collections::BTreeMap<&str, Vec<(&str, &DomainCounts)>> =
                Default::default();
            for ((domain, policy_type), c) in &counts.domains {
                by_domain
                    .entry(domain.as_str())
                    .or_default()
                    .push((policy_type.as_str(), c));
            }
            for (domain, policies) in by_domain {
                let txt = relay
                    .policies()
                    .dns()
                    .txt(&format!("_smtp._tls.{domain}"))
                    .await;
                let rua = txt.map(|r| report::mailto_rua(&r)).unwrap_or_default();
                if rua.is_empty() {
                    tracing::info!("tls-rpt: {domain}: no rua=mailto: address; no report");
                    continue;
                }
                self.send_report(domain, &policies, &rua, from, end).await;
            }
            start = end;
        }
    }

    async fn send_report(
        &self,
        domain: &str,
        policies: &[(&str, &DomainCounts)],
        rua: &[String],
        start: u64,
        end: u64,
    ) {
        let from = self
            .postmaster
            .clone()
            .unwrap_or_else(|| format!("postmaster@{}", self.hostname));
        let report_id = format!("{}.{}@{}", end, store::spool::new_id(), self.hostname);
        let by = Reporter {
            organization: &self.hostname,
            contact: &from,
            report_id: &report_id,
            start,
            end,
        };
        let json = report::json(&by, domain, policies);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        if gz.write_all(json.as_bytes()).is_err() {
            return;
        }
        let Ok(gzipped) = gz.finish() else {
            return;
        };
        let message = report_message(
            &self.hostname,
            &from,
            rua,
            domain,
            &report_id,
            end,
            &gzipped,
        );
        let signature = match &self.dkim {
            Some(keyring) => {
                let (keyring, m) = (keyring.clone(), message.clone());
                match tokio::task::spawn_blocking(move || keyring.sign(&[&m])).await {
                    Ok(Ok(sig)) => sig.unwrap_or_default(),
                    _ => Vec::new(),
                }
            }
            None => Vec::new(),
        };
        let id = store::spool::new_id();
        let origin = Origin {
            client: "tls-rpt report",
            sender_verified: true,
            notify_never: true,
            require_tls: false,
        };
        match self
            .spool
            .enqueue(&id, &from, rua, &origin, end, &[&signature, &message])
            .await
        {
            Ok(()) => {
                tracing::info!(
                    "tls-rpt: {domain}: report {report_id} queued as {id} to={} successes={} failures={}",
                    rua.join(","),
                    policies.iter().map(|(_, c)| c.successes).sum::<u64>(),
                    policies.iter().map(|(_, c)| c.failure_total()).sum::<u64>()
                );
                let _ = self.resubmit.send(id);
            }
            Err(e) => tracing::error!("tls-rpt: {domain}: cannot queue the report: {e}"),
        }
    }
}

/// The report message (RFC 8460 §5.3), pure.
pub fn report_message(
    hostname: &str,
    from: &str,
    to: &[String],
    domain: &str,
    report_id: &str,
    now: u64,
    gzipped: &[u8],
) -> Vec<u8> {
    let boundary = format!("tlsrpt-{}", store::spool::new_id());
    let b64 = base64::engine::general_purpose::STANDARD.encode(gzipped);
    let mut body = String::new();
    for line in b64.as_bytes().chunks(76) {
        body.push_str(std::str::from_utf8(line).unwrap_or(""));
        body.push_str("\r\n");
    }
    let start_day = report::rfc3339(now);
    format!(
        "From: <{from}>\r\n\
         To: {}\r\n\
         Subject: Report Domain: {domain} Submitter: {hostname} Report-ID: <{report_id}>\r\n\
         Date: {}\r\n\
         Message-ID: <{report_id}>\r\n\
         TLS-Report-Domain: {domain}\r\n\
         TLS-Report-Submitter: {hostname}\r\n\
         MIME-Version: 1.0\r\n\
         Content-Type: multipart/report; report-type=\"tlsrpt\"; boundary=\"{boundary}\"\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Type: text/plain; charset=us-ascii\r\n\
         \r\n\
         TLS report for {domain} from {hostname}, up to {start_day}.\r\n\
         \r\n\
         --{boundary}\r\n\
         Content-Type: application/tlsrpt+gzip\r\n\
         Content-Transfer-Encoding: base64\r\n\
         Content-Disposition: attachment; filename=\"{hostname}!{domain}!{now}.json.gz\"\r\n\
         \r\n\
         {body}\
         --{boundary}--\r\n",
        to.iter()
            .map(|t| format!("<{t}>"))
            .collect::<Vec<_>>()
            .join(", "),
        proto::smtp::received::rfc5322_date(now as i64),
    )
    .into_bytes()
}
