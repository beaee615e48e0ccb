//! The TLS-RPT counts (RFC 8460) between two reports, in the `tls_report_counts` and
//! `tls_report_policies` tables of `directory.sqlite3` (created when missing; the directory's
//! schema version is not touched), so a restart does not lose a day's counts.
//!
//! A row is one (policy type, policy domain, day, result, MX host, address) with its count;
//! a success has an empty result, host and address. The policy's text (its lines) is kept per
//! (policy type, domain), the latest seen. [`TlsReportCounts::take`] reads everything and
//! clears it in one transaction. Bounded: at most [`MAX_DOMAINS`] policy domains and
//! [`MAX_FAILURE_ROWS`] failure rows per domain and day; past that, sessions are not counted.
//!
//! Commits are not fsynced (`synchronous = NORMAL`): the counts survive a restart or a crash
//! of the server, not necessarily a power cut. Not here: what is counted
//! (`mta::relay::tls_policy`) or the report (`mta::queue::tls_reports`).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

/// Policy domains (per policy type) counted at most between two reports.
pub const MAX_DOMAINS: i64 = 10_000;
/// Failure rows kept per domain and day at most.
pub const MAX_FAILURE_ROWS: i64 = 100;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS tls_report_counts (
    policy_type TEXT NOT NULL,
    domain TEXT NOT NULL,
    day INTEGER NOT NULL,
    result TEXT NOT NULL,
    mx TEXT NOT NULL,
    ip TEXT NOT NULL,
    count INTEGER NOT NULL,
    PRIMARY KEY (policy_type, domain, day, result, mx, ip)
);
CREATE TABLE IF NOT EXISTS tls_report_policies (
    policy_type TEXT NOT NULL,
    domain TEXT NOT NULL,
    policy TEXT NOT NULL,
    PRIMARY KEY (policy_type, domain)
);
";

/// One session to count.
#[derive(Clone, Debug)]
pub struct Session<'a> {
    /// `sts` or `tlsa`.
    pub policy_type: &'a str,
    pub domain: &'a str,
    /// The policy's text, one entry per line (RFC 8460 §4.4 `policy-string`).
    pub policy: &'a [String],
    /// Days since 1970-01-01 (UTC).
    pub day: u64,
    /// `(result type, MX host, address)` of a failure; `None`: a success.
    pub failure: Option<(&'a str, &'a str, &'a str)>,
}

/// One stored row.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub policy_type: String,
    pub domain: String,
    pub day: u64,
    /// Empty for successes.
    pub result: String,
    pub mx: String,
    pub ip: String,
    pub count: u64,
}

/// What [`TlsReportCounts::take`] returns: the rows and each (type, domain)'s policy lines.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Taken {
    pub rows: Vec<Row>,
    pub policies: BTreeMap<(String, String), Vec<String>>,
}

/// The counts tables.
pub struct TlsReportCounts {
    conn: Mutex<Connection>,
}

impl TlsReportCounts {
    pub fn open(data_dir: &Path) -> Result<TlsReportCounts, String> {
        let conn = crate::directory::open_side_table(data_dir, SCHEMA)
            .map_err(|e| format!("TLS-RPT counts: {e}"))?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(|e| format!("TLS-RPT counts: {e}"))?;
        Ok(TlsReportCounts {
            conn: Mutex::new(conn),
        })
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts `session`; `Ok(false)` when a bound left it uncounted.
    pub fn record(&self, session: &Session<'_>) -> Result<bool, String> {
        let mut conn = self.conn();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| e.to_string())?;
        let e = |e: rusqlite::Error| e.to_string();
        let (ty, domain) = (session.policy_type, session.domain);
        let known: Option<i64> = tx
            .query_row(
                "SELECT 1 FROM tls_report_policies WHERE policy_type = ?1 AND domain = ?2",
                params![ty, domain],
                |r| r.get(0),
            )
            .optional()
            .map_err(e)?;
        if known.is_none() {
            let domains: i64 = tx
                .query_row("SELECT COUNT(*) FROM tls_report_policies", [], |r| r.get(0))
                .map_err(e)?;
            if domains >= MAX_DOMAINS {
                return Ok(false);
            }
        }
        tx.execute(
            "INSERT INTO tls_report_policies (policy_type, domain, policy) VALUES (?1, ?2, ?3)
             ON CONFLICT (policy_type, domain) DO UPDATE SET policy = excluded.policy",
            params![ty, domain, session.policy.join("\n")],
        )
        .map_err(e)?;
        let (result, mx, ip) = session.failure.unwrap_or(("", "", ""));
        let day = session.day as i64;
        if session.failure.is_some() {
            let exists: Option<i64> = tx
                .query_row(
                    "SELECT 1 FROM tls_report_counts WHERE policy_type = ?1 AND domain = ?2
                     AND day = ?3 AND result = ?4 AND mx = ?5 AND ip = ?6",
                    params![ty, domain, day, result, mx, ip],
                    |r| r.get(0),
                )
                .optional()
                .map_err(e)?;
            if exists.is_none() {
                let rows: i64 = tx
                    .query_row(
                        "SELECT COUNT(*) FROM tls_report_counts WHERE policy_type = ?1
                         AND domain = ?2 AND day = ?3 AND result != ''",
                        params![ty, domain, day],
                        |r| r.get(0),
                    )
                    .map_err(e)?;
                if rows >= MAX_FAILURE_ROWS {
                    tx.commit().map_err(e)?;
                    return Ok(false);
                }
            }
        }
        tx.execute(
            "INSERT INTO tls_report_counts (policy_type, domain, day, result, mx, ip, count)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1)
             ON CONFLICT (policy_type, domain, day, result, mx, ip) DO UPDATE SET count = count + 1",
            params![ty, domain, day, result, mx, ip],
        )
        .map_err(e)?;
        tx.commit().map_err(e)?;
        Ok(true)
    }

    /// Everything counted so far, which is cleared.
    pub fn take(&self) -> Result<Taken, String> {
        let mut conn = self.conn();
        let e = |e: rusqlite::Error| e.to_string();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(e)?;
        let mut taken = Taken::default();
        {
            let mut q = tx
                .prepare(
                    "SELECT policy_type, domain, day, result, mx, ip, count FROM tls_report_counts
                     ORDER BY policy_type, domain, day, result, mx, ip",
                )
                .map_err(e)?;
            let rows = q
                .query_map([], |r| {
                    Ok(Row {
                        policy_type: r.get(0)?,
                        domain: r.get(1)?,
                        day: r.get::<_, i64>(2)?.max(0) as u64,
                        result: r.get(3)?,
                        mx: r.get(4)?,
                        ip: r.get(5)?,
                        count: r.get::<_, i64>(6)?.max(0) as u64,
                    })
                })
                .map_err(e)?;
            for row in rows {
                taken.rows.push(row.map_err(e)?);
            }
            let mut q = tx
                .prepare("SELECT policy_type, domain, policy FROM tls_report_policies")
                .map_err(e)?;
            let policies = q
                .query_map([], |r| {
                    Ok((
                        (r.get::<_, String>(0)?, r.get::<_, String>(1)?),
                        r.get::<_, String>(2)?,
                    ))
                })
                .map_err(e)?;
            for p in policies {
                let (key, text) = p.map_err(e)?;
                taken
                    .policies
                    .insert(key, text.lines().map(str::to_string).collect());
            }
        }
        tx.execute_batch("DELETE FROM tls_report_counts; DELETE FROM tls_report_policies;")
            .map_err(e)?;
        tx.commit().map_err(e)?;
        Ok(taken)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session<'a>(
        domain: &'a str,
        policy: &'a [String],
        failure: Option<(&'a str, &'a str, &'a str)>,
    ) -> Session<'a> {
        Session {
            policy_type: "sts",
            domain,
            policy,
            day: 20_000,
            failure,
        }
    }

    #[test]
    fn counts_survive_a_reopen_and_take_clears_them() {
        let dir = tempfile::tempdir().unwrap();
        let lines = vec!["version: STSv1".to_string(), "mode: testing".to_string()];
        let c = TlsReportCounts::open(dir.path()).unwrap();
        assert!(c.record(&session("example.net", &lines, None)).unwrap());
        assert!(c.record(&session("example.net", &lines, None)).unwrap());
        let bad = Some(("certificate-expired", "mx.example.net", "192.0.2.1"));
        assert!(c.record(&session("example.net", &lines, bad)).unwrap());
        drop(c);
        let c = TlsReportCounts::open(dir.path()).unwrap();
        let taken = c.take().unwrap();
        assert_eq!(taken.rows.len(), 2);
        assert_eq!(
            (taken.rows[0].result.as_str(), taken.rows[0].count),
            ("", 2)
        );
        assert_eq!(taken.rows[1].result, "certificate-expired");
        assert_eq!(taken.rows[1].mx, "mx.example.net");
        assert_eq!(
            taken.policies[&("sts".to_string(), "example.net".to_string())],
            lines
        );
        assert_eq!(c.take().unwrap(), Taken::default());
    }

    #[test]
    fn failure_rows_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let c = TlsReportCounts::open(dir.path()).unwrap();
        let hosts: Vec<String> = (0..MAX_FAILURE_ROWS + 5)
            .map(|i| format!("mx{i}.example.net"))
            .collect();
        let mut counted = 0;
        for h in &hosts {
            let s = session(
                "example.net",
                &[],
                Some(("validation-failure", h, "192.0.2.1")),
            );
            counted += c.record(&s).unwrap() as i64;
        }
        assert_eq!(counted, MAX_FAILURE_ROWS);
        // A known row still counts, and so do successes.
        let s = session(
            "example.net",
            &[],
            Some(("validation-failure", &hosts[0], "192.0.2.1")),
        );
        assert!(c.record(&s).unwrap());
        assert!(c.record(&session("example.net", &[], None)).unwrap());
        assert_eq!(c.take().unwrap().rows.len() as i64, MAX_FAILURE_ROWS + 1);
    }
}
