//! Recording the DMARC result of a checked message for the aggregate report its `From:`
//! domain asked for (`rua=`, RFC 7489 §7.2), when `[verify] dmarc_reports` is on: one
//! `dns::dmarc_line::ResultLine` (the policy published, the `rua` URIs, mail-auth's report
//! row with the source address, identifiers, DKIM and SPF results and the disposition we
//! applied) into `store::dmarc_reports`, which bounds what is kept. The report itself is
//! built and sent by `mta::dmarc_report`.

use std::net::IpAddr;

use dns::dmarc_line::ResultLine;
use dns::mail_auth::dmarc::Dmarc;
use dns::mail_auth::report::{ActionDisposition, PolicyPublished, Record, SPFDomainScope};
use dns::mail_auth::{DkimOutput, DmarcOutput, SpfOutput};
use proto::smtp::verdict::Decision;
use store::dmarc_reports::{DmarcReports, Recorded};

/// What one check gives the report.
pub(crate) struct Checked<'a> {
    pub ip: IpAddr,
    pub sender: &'a str,
    pub helo: &'a str,
    pub spf: &'a SpfOutput,
    pub dkim: &'a [DkimOutput<'a>],
    pub dmarc: &'a DmarcOutput,
    pub record: &'a Dmarc,
    pub decision: &'a Decision,
}

/// Appends the result; a failure or a full store is logged, never a reason to refuse mail.
pub(crate) fn record(reports: &DmarcReports, c: &Checked<'_>) {
    let domain = c.dmarc.domain().to_ascii_lowercase();
    let disposition = match c.decision {
        Decision::Refuse(_) => ActionDisposition::Reject,
        Decision::Accept { spam: Some(_) } => ActionDisposition::Quarantine,
        Decision::Accept { spam: None } => ActionDisposition::None,
    };
    let (scope, envelope_from) = match c.sender.rsplit_once('@') {
        Some((_, d)) => (SPFDomainScope::MailFrom, d.to_ascii_lowercase()),
        None => (SPFDomainScope::Helo, c.helo.to_ascii_lowercase()),
    };
    let row = Record::new()
        .with_source_ip(c.ip)
        .with_count(1)
        .with_dmarc_output(c.dmarc)
        .with_action_disposition(disposition)
        .with_header_from(domain.clone())
        .with_envelope_from(envelope_from)
        .with_dkim_output(c.dkim)
        .with_spf_output(c.spf, scope);
    let line = ResultLine {
        policy: PolicyPublished::from_record(domain.clone(), c.record),
        // mail-auth keeps only mailto URIs, as the bare address.
        rua: c
            .record
            .rua()
            .iter()
            .map(|u| format!("mailto:{}", u.uri()))
            .collect(),
        record: row,
    };
    match reports.record(&domain, &line.to_json()) {
        Ok(Recorded::Kept) => {}
        Ok(Recorded::Dropped) => {
            tracing::info!("verify: DMARC result for {domain} not kept for its report (limit)")
        }
        Err(e) => tracing::warn!("verify: DMARC result for {domain} not kept: {e}"),
    }
}
