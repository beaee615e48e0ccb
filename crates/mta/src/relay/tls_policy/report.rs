//! TLS-RPT (RFC 8460), the pure part: per policy domain and policy type (`sts`: MTA-STS, the
//! recipient domain; `tlsa`: DANE, the MX host, RFC 8460 §3), sessions that met the policy
//! and those that failed by result type and MX host ([`Counts`], also read back from
//! `store::tls_report_counts`); the `_smtp._tls` TXT
//! record's `rua=mailto:` addresses ([`mailto_rua`]); the JSON report of §4 ([`json`]).
//! It does not send anything: `crate::queue::tls_reports` queues the report.

use std::collections::BTreeMap;

use serde_json::json;

use super::sts::Problem;

/// Failure rows kept per domain at most (distinct result type, MX host and address).
const MAX_FAILURE_ROWS: usize = 100;
/// Policy domains counted at most between two reports.
const MAX_DOMAINS: usize = 10_000;

/// One failure row: result type, receiving MX host, its address.
type FailureKey = (String, String, String);

/// `sts` (MTA-STS) or `tlsa` (DANE), RFC 8460 §4.4 `policy-type`.
pub const STS: &str = "sts";
pub const TLSA: &str = "tlsa";

/// What one policy domain's sessions came to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DomainCounts {
    /// `mode`, `max_age` and `mx` lines of the policy, as RFC 8460 §4.4 `policy-string`.
    pub policy_lines: Vec<String>,
    pub successes: u64,
    pub failures: BTreeMap<FailureKey, u64>,
}

impl DomainCounts {
    pub fn failure_total(&self) -> u64 {
        self.failures.values().sum()
    }
}

/// The counts of every policy domain since the last report, by `(domain, policy type)`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub domains: BTreeMap<(String, String), DomainCounts>,
    /// The earliest day (since 1970) of the counts read back from the store.
    pub first_day: Option<u64>,
}

/// A session's result: met the policy, or `(result type, MX host, address)`.
pub type SessionResult<'a> = Result<(), (&'a str, &'a str, &'a str)>;

impl Counts {
    /// One session to an MX of `domain` under a policy of `policy_type` described by
    /// `policy_lines`.
    pub fn record(
        &mut self,
        policy_type: &str,
        domain: &str,
        policy_lines: &[String],
        result: SessionResult<'_>,
    ) {
        self.add(policy_type, domain, policy_lines, result, 1);
    }

    fn add(
        &mut self,
        policy_type: &str,
        domain: &str,
        policy_lines: &[String],
        result: SessionResult<'_>,
        n: u64,
    ) {
        let key = (domain.to_string(), policy_type.to_string());
        if !self.domains.contains_key(&key) && self.domains.len() >= MAX_DOMAINS {
            return;
        }
        let d = self.domains.entry(key).or_default();
        if !policy_lines.is_empty() || d.policy_lines.is_empty() {
            d.policy_lines = policy_lines.to_vec();
        }
        match result {
            Ok(()) => d.successes += n,
            Err((result_type, mx, ip)) => {
                let key = (result_type.to_string(), mx.to_string(), ip.to_string());
                if d.failures.contains_key(&key) || d.failures.len() < MAX_FAILURE_ROWS {
                    *d.failures.entry(key).or_default() += n;
                }
            }
        }
    }

    /// Adds what `store::tls_report_counts` had kept.
    pub fn add_taken(&mut self, taken: &store::tls_report_counts::Taken) {
        for row in &taken.rows {
            let none = Vec::new();
            let lines = taken
                .policies
                .get(&(row.policy_type.clone(), row.domain.clone()))
                .unwrap_or(&none);
            let result = if row.result.is_empty() {
                Ok(())
            } else {
                Err((row.result.as_str(), row.mx.as_str(), row.ip.as_str()))
            };
            self.add(&row.policy_type, &row.domain, lines, result, row.count);
            self.first_day = Some(self.first_day.map_or(row.day, |d| d.min(row.day)));
        }
    }
}

/// A failure of an MTA-STS session, as a [`SessionResult`].
pub fn sts_failure<'a>(problem: Problem, mx: &'a str, ip: &'a str) -> (&'a str, &'a str, &'a str) {
    (problem.result_type(), mx, ip)
}

/// The `mailto:` addresses of a `v=TLSRPTv1; rua=...` record (RFC 8460 §3); `https:` ones are
/// not used. Exactly one record starting with `v=TLSRPTv1` must be there.
pub fn mailto_rua(records: &[String]) -> Vec<String> {
    let rpt: Vec<&String> = records
        .iter()
        .filter(|r| r.starts_with("v=TLSRPTv1"))
        .collect();
    let [record] = rpt.as_slice() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for field in record.split(';') {
        let Some(value) = field.trim().strip_prefix("rua=") else {
            continue;
        };
        for uri in value.split(',') {
            let uri = uri.trim();
            if let Some(addr) = uri
                .get(..7)
                .filter(|p| p.eq_ignore_ascii_case("mailto:"))
                .map(|_| &uri[7..])
            {
                // RFC 6068: %-escapes; a bare address is what we take.
                if !addr.is_empty()
                    && addr.contains('@')
                    && !addr.contains(['%', '?', ' ', '<', '>'])
                    && out.len() < 5
                {
                    out.push(addr.to_string());
                }
            }
        }
    }
    out
}

/// Dates as RFC 3339 UTC (`2026-12-07T00:00:00Z`).
pub fn rfc3339(unix: u64) -> String {
    let days = (unix / 86_400) as i64;
    let secs = unix % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Who sends the report.
pub struct Reporter<'a> {
    pub organization: &'a str,
    pub contact: &'a str,
    pub report_id: &'a str,
    pub start: u64,
    pub end: u64,
}

/// The RFC 8460 §4 report about one policy domain: one entry per policy type counted.
pub fn json(by: &Reporter<'_>, domain: &str, policies: &[(&str, &DomainCounts)]) -> String {
    let policies: Vec<serde_json::Value> = policies
        .iter()
        .map(|(policy_type, counts)| policy_json(policy_type, domain, counts))
        .collect();
    json!({
        "organization-name": by.organization,
        "date-range": {
            "start-datetime": rfc3339(by.start),
            "end-datetime": rfc3339(by.end),
        },
        "contact-info": by.contact,
        "report-id": by.report_id,
        "policies": policies,
    })
    .to_string()
}

fn policy_json(policy_type: &str, domain: &str, counts: &DomainCounts) -> serde_json::Value {
    let failures: Vec<serde_json::Value> = counts
        .failures
        .iter()
        .map(|((result_type, mx, ip), n)| {
            json!({
                "result-type": result_type,
                "receiving-mx-hostname": mx,
                "receiving-ip": ip,
                "failed-session-count": n,
            })
        })
        .collect();
    json!({
        "policy": {
            "policy-type": policy_type,
            "policy-string": counts.policy_lines,
            "policy-domain": domain,
        },
        "summary": {
            "total-successful-session-count": counts.successes,
            "total-failure-session-count": counts.failure_total(),
        },
        "failure-details": failures,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_and_reported_as_rfc_8460_json() {
        let mut c = Counts::default();
        let lines = vec!["version: STSv1".to_string(), "mode: testing".to_string()];
        c.record(STS, "example.net", &lines, Ok(()));
        c.record(STS, "example.net", &lines, Ok(()));
        let bad = Err(sts_failure(
            Problem::CertificateHostMismatch,
            "mx.example.net",
            "192.0.2.1",
        ));
        c.record(STS, "example.net", &lines, bad);
        c.record(STS, "example.net", &lines, bad);
        let d = &c.domains[&("example.net".to_string(), STS.to_string())];
        assert_eq!((d.successes, d.failure_total()), (2, 2));
        let by = Reporter {
            organization: "mx.example.org",
            contact: "postmaster@mx.example.org",
            report_id: "r1",
            start: 1_765_065_600,
            end: 1_765_152_000,
        };
        let v: serde_json::Value =
            serde_json::from_str(&json(&by, "example.net", &[(STS, d)])).unwrap();
        assert_eq!(v["date-range"]["start-datetime"], "2025-12-07T00:00:00Z");
        let p = &v["policies"][0];
        assert_eq!(p["policy"]["policy-type"], "sts");
        assert_eq!(p["policy"]["policy-domain"], "example.net");
        assert_eq!(p["summary"]["total-successful-session-count"], 2);
        assert_eq!(p["summary"]["total-failure-session-count"], 2);
        assert_eq!(
            p["failure-details"][0]["result-type"],
            "certificate-host-mismatch"
        );
        assert_eq!(p["failure-details"][0]["failed-session-count"], 2);
    }

    #[test]
    fn bounded_rows() {
        let mut c = Counts::default();
        for i in 0..500 {
            let host = format!("mx{i}.example.net");
            c.record(
                STS,
                "example.net",
                &[],
                Err(sts_failure(Problem::CertificateExpired, &host, "192.0.2.1")),
            );
        }
        let key = ("example.net".to_string(), STS.to_string());
        assert_eq!(c.domains[&key].failures.len(), MAX_FAILURE_ROWS);
    }

    #[test]
    fn stored_counts_come_back_by_policy_type() {
        use store::tls_report_counts::{Row, Taken};
        let row = |ty: &str, domain: &str, day, result: &str, count| Row {
            policy_type: ty.into(),
            domain: domain.into(),
            day,
            result: result.into(),
            mx: if result.is_empty() {
                ""
            } else {
                "mx.example.net"
            }
            .into(),
            ip: if result.is_empty() { "" } else { "192.0.2.1" }.into(),
            count,
        };
        let mut taken = Taken {
            rows: vec![
                row(STS, "example.net", 20_001, "", 3),
                row(TLSA, "mx.example.net", 20_000, "validation-failure", 2),
                row(TLSA, "mx.example.net", 20_001, "validation-failure", 1),
            ],
            ..Taken::default()
        };
        taken.policies.insert(
            (TLSA.into(), "mx.example.net".into()),
            vec!["3 1 1 00".into()],
        );
        let mut c = Counts::default();
        c.add_taken(&taken);
        assert_eq!(c.first_day, Some(20_000));
        let d = &c.domains[&("mx.example.net".to_string(), TLSA.to_string())];
        assert_eq!((d.successes, d.failure_total()), (0, 3));
        assert_eq!(d.policy_lines, vec!["3 1 1 00".to_string()]);
        let by = Reporter {
            organization: "o",
            contact: "c",
            report_id: "r",
            start: 0,
            end: 1,
        };
        let v: serde_json::Value =
            serde_json::from_str(&json(&by, "mx.example.net", &[(TLSA, d)])).unwrap();
        assert_eq!(v["policies"][0]["policy"]["policy-type"], "tlsa");
        assert_eq!(
            v["policies"][0]["failure-details"][0]["failed-session-count"],
            3
        );
    }

    #[test]
    fn rua_addresses() {
        let r = |s: &str| vec![s.to_string()];
        assert_eq!(
            mailto_rua(&r(
                "v=TLSRPTv1; rua=mailto:tls@example.net,https://r.example.net/x"
            )),
            vec!["tls@example.net"]
        );
        assert_eq!(mailto_rua(&r("v=TLSRPTv1;rua=MAILTO:a@b.c")), vec!["a@b.c"]);
        assert!(mailto_rua(&r("v=TLSRPTv1; rua=https://r.example.net/")).is_empty());
        assert!(mailto_rua(&r("v=spf1 -all")).is_empty());
        let two = vec![
            "v=TLSRPTv1; rua=mailto:a@b.c".to_string(),
            "v=TLSRPTv1; rua=mailto:d@e.f".to_string(),
        ];
        assert!(mailto_rua(&two).is_empty());
        assert!(mailto_rua(&r("v=TLSRPTv1; rua=mailto:a@b.c?subject=x")).is_empty());
    }
}
