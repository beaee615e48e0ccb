//! Inbound mail authentication on port 25: SPF of the MAIL FROM (or HELO) identity, the
//! message's DKIM signatures, DMARC for its `From:` domain and its ARC chain, checked through
//! mail-auth over the server's one resolver ([`dns::Dns`], with its caches and timeouts),
//! for clients that are neither in `trusted_networks` nor authenticated.
//!
//! [`Verifier::check`] only gathers the results into a [`proto::smtp::verdict::Verdict`]; the
//! decision (refuse, try later, accept and tag) and the header text are the pure
//! `proto::smtp::verdict`. [`screen`] is the one call the listener makes at the end of
//! DATA/BDAT: it returns the message to store, with our `Authentication-Results:` prepended
//! and forged ones naming our host removed, or the reply that refuses it.
//!
//! Bounded: at most [`MAX_DKIM_SIGNATURES`] signatures and [`MAX_ARC_SETS`] ARC sets are
//! verified, SPF's own limits are mail-auth's (RFC 7208 §4.6.4: 10 lookups), each DNS lookup
//! has the resolver's timeout and the whole check ends by [`CHECK_DEADLINE`] (then every
//! method is `temperror`). Messages large enough to be streamed to disk
//! (`proto::smtp::conn::SPILL_AT`) are checked from their draft file by `crate::verify_draft`
//! with the same decision ([`judge`]). Not here: DKIM signing and ARC sealing of outgoing mail.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use dns::mail_auth::arc::ArcError;
use dns::mail_auth::dkim::DkimError;
use dns::mail_auth::dmarc::verify::DmarcParameters;
use dns::mail_auth::dmarc::Policy;
use dns::mail_auth::spf::verify::SpfParameters;
use dns::mail_auth::{
    AuthenticatedMessage, DkimOutput, DkimResult, DmarcResult, Error, SpfOutput, SpfResult,
};
use dns::Dns;
use proto::smtp::verdict::{
    self, AuthResult, Decision, Dkim, Dmarc, DmarcPolicy, Rules, Spf, Verdict,
};
use proto::smtp::{Connection, Envelope, Reply, Service};

/// DKIM signatures verified per message; later ones are ignored (each costs a DNS lookup
/// and an RSA verification).
pub const MAX_DKIM_SIGNATURES: usize = 10;
/// ARC sets accepted; a longer chain is `arc=fail` without a lookup (RFC 8617 §5.1.1.2
/// allows 50, which nobody needs).
pub const MAX_ARC_SETS: usize = 10;
/// The whole check of one message ends by then.
pub const CHECK_DEADLINE: Duration = Duration::from_secs(30);

/// `[verify]`: which methods run and what their failures cost.
#[derive(Clone, Copy, Debug)]
pub struct VerifyConfig {
    pub spf: bool,
    pub dkim: bool,
    pub dmarc: bool,
    pub arc: bool,
    pub rules: Rules,
}

impl Default for VerifyConfig {
    fn default() -> VerifyConfig {
        VerifyConfig {
            spf: true,
            dkim: true,
            dmarc: true,
            arc: true,
            rules: Rules::default(),
        }
    }
}

/// The checker, shared by every port 25 session.
pub struct Verifier {
    dns: Arc<Dns>,
    config: VerifyConfig,
    /// Our host name: the authserv-id of our `Authentication-Results:`.
    hostname: String,
    /// Where DMARC results go for aggregate reports (`[verify] dmarc_reports`).
    reports: Option<Arc<store::dmarc_reports::DmarcReports>>,
}

impl Verifier {
    pub fn new(dns: Arc<Dns>, config: VerifyConfig, hostname: &str) -> Verifier {
        Verifier {
            dns,
            config,
            hostname: hostname.to_string(),
            reports: None,
        }
    }

    /// Records the DMARC results of checked mail into `reports` for aggregate reports.
    pub fn with_reports(mut self, reports: Arc<store::dmarc_reports::DmarcReports>) -> Verifier {
        self.reports = Some(reports);
        self
    }

    /// Every enabled method's result for `message` from `ip`, within [`CHECK_DEADLINE`].
    pub async fn check(&self, ip: IpAddr, helo: &str, sender: &str, message: &[u8]) -> Verdict {
        let parsed = AuthenticatedMessage::parse(message);
        self.check_parsed(ip, helo, sender, parsed).await
    }

    /// [`Verifier::check`] of a message parsed already (`None`: no header block mail-auth can
    /// read), whose `body_hashes` may have been computed elsewhere (a streamed message's, from
    /// its file: `crate::verify_draft`).
    pub async fn check_parsed(
        &self,
        ip: IpAddr,
        helo: &str,
        sender: &str,
        parsed: Option<AuthenticatedMessage<'_>>,
    ) -> Verdict {
        match tokio::time::timeout(CHECK_DEADLINE, self.check_all(ip, helo, sender, parsed)).await {
            Ok(v) => v,
            Err(_) => {
                tracing::warn!("verify: checks from [{ip}] timed out");
                self.timed_out(helo, sender)
            }
        }
    }

    fn timed_out(&self, helo: &str, sender: &str) -> Verdict {
        let c = &self.config;
        Verdict {
            spf: c.spf.then(|| Spf {
                result: AuthResult::TempError,
                mail_from: sender.into(),
                helo: helo.into(),
            }),
            dkim: c.dkim.then(Vec::new),
            dmarc: c.dmarc.then(|| Dmarc {
                result: AuthResult::TempError,
                from_domain: String::new(),
                policy: DmarcPolicy::None,
                has_record: false,
            }),
            arc: c.arc.then_some(AuthResult::TempError),
        }
    }

    async fn check_all(
        &self,
        ip: IpAddr,
        helo: &str,
        sender: &str,
        parsed: Option<AuthenticatedMessage<'_>>,
    ) -> Verdict {
        let auth = self.dns.authenticator();
        let caches = self.dns.caches();
        let c = &self.config;
        let mut verdict = Verdict::default();
        // RFC 7208 §2.4: with a null reverse-path the HELO identity is checked.
        let spf_domain = match sender.rsplit_once('@') {
            Some((_, d)) => d.to_string(),
            None => helo.to_string(),
        };
        let spf_output = if c.spf || c.dmarc {
            let params = if sender.is_empty() {
                SpfParameters::verify_ehlo(ip, helo, &self.hostname)
            } else {
                SpfParameters::verify_mail_from(ip, helo, &self.hostname, sender)
            };
            auth.verify_spf(caches.parameters(params)).await
        } else {
            SpfOutput::new(spf_domain.clone())
        };
        if c.spf {
            verdict.spf = Some(Spf {
                result: spf_result(spf_output.result()),
                mail_from: sender.into(),
                helo: helo.into(),
            });
        }
        let parsed = parsed.map(|mut m| {
            m.dkim_headers.truncate(MAX_DKIM_SIGNATURES);
            m
        });
        let Some(parsed) = parsed else {
            // No header block mail-auth can read: nothing signed, no From: domain.
            verdict.dkim = c.dkim.then(Vec::new);
            verdict.arc = c.arc.then_some(AuthResult::None);
            verdict.dmarc = c.dmarc.then(|| Dmarc {
                result: AuthResult::None,
                from_domain: String::new(),
                policy: DmarcPolicy::None,
                has_record: false,
            });
            return verdict;
        };
        let dkim_output: Vec<DkimOutput<'_>> = if c.dkim || c.dmarc {
            let mut out = auth.verify_dkim(caches.parameters(&parsed)).await;
            out.truncate(MAX_DKIM_SIGNATURES);
            out
        } else {
            Vec::new()
        };
        if c.dkim {
            verdict.dkim = Some(dkim_output.iter().map(dkim_verdict).collect());
        }
        if c.arc {
            verdict.arc = Some(if parsed.as_headers.len() > MAX_ARC_SETS {
                AuthResult::Fail
            } else {
                let arc = auth.verify_arc(caches.parameters(&parsed)).await;
                dkim_result(arc.result()).0
            });
        }
        if c.dmarc {
            let params = DmarcParameters::new(&parsed, &dkim_output, &spf_domain, &spf_output);
            let out = auth.verify_dmarc(caches.parameters(params)).await;
            let policy = match out.policy() {
                Policy::Reject => DmarcPolicy::Reject,
                Policy::Quarantine => DmarcPolicy::Quarantine,
                _ => DmarcPolicy::None,
            };
            verdict.dmarc = Some(Dmarc {
                result: match out.result() {
                    DmarcResult::Pass => AuthResult::Pass,
                    DmarcResult::Fail(_) => AuthResult::Fail,
                    DmarcResult::TempError(_) => AuthResult::TempError,
                    DmarcResult::PermError(_) => AuthResult::PermError,
                    DmarcResult::None => AuthResult::None,
                },
                from_domain: out.domain().to_string(),
                policy,
                has_record: out.dmarc_record().is_some(),
            });
            if let (Some(reports), Some(record)) = (&self.reports, out.dmarc_record()) {
                if !record.rua().is_empty() {
                    let decision = verdict::decide(&verdict, &c.rules);
                    crate::verify_report::record(
                        reports,
                        &crate::verify_report::Checked {
                            ip,
                            sender,
                            helo,
                            spf: &spf_output,
                            dkim: &dkim_output,
                            dmarc: &out,
                            record,
                            decision: &decision,
                        },
                    );
                }
            }
        }
        verdict
    }
}

fn spf_result(r: SpfResult) -> AuthResult {
    match r {
        SpfResult::Pass => AuthResult::Pass,
        SpfResult::Fail => AuthResult::Fail,
        SpfResult::SoftFail => AuthResult::SoftFail,
        SpfResult::Neutral => AuthResult::Neutral,
        SpfResult::TempError => AuthResult::TempError,
        SpfResult::PermError => AuthResult::PermError,
        SpfResult::None => AuthResult::None,
    }
}

/// mail-auth's DKIM (and ARC) result as an RFC 8601 result and its reason.
fn dkim_result(r: &DkimResult) -> (AuthResult, Option<String>) {
    match r {
        DkimResult::Pass => (AuthResult::Pass, None),
        // RFC 6376 §6.1.3: a body hash that does not verify is a failed signature (mail-auth
        // says neutral); for an ARC-Message-Signature it breaks the chain (RFC 8617 §5.2).
        DkimResult::Neutral(
            e @ (Error::Dkim(DkimError::FailedBodyHashMatch)
            | Error::Arc(ArcError::FailedBodyHashMatch)),
        ) => (AuthResult::Fail, Some(e.to_string())),
        DkimResult::Neutral(e) => (AuthResult::Neutral, Some(e.to_string())),
        DkimResult::Fail(e) => (AuthResult::Fail, Some(e.to_string())),
        DkimResult::PermError(e) => (AuthResult::PermError, Some(e.to_string())),
        DkimResult::TempError(e) => (AuthResult::TempError, Some(e.to_string())),
        DkimResult::None => (AuthResult::None, None),
    }
}

fn dkim_verdict(out: &DkimOutput<'_>) -> Dkim {
    let (result, reason) = dkim_result(out.result());
    let (domain, selector) = out
        .signature()
        .map(|s| (s.d.clone(), s.s.clone()))
        .unwrap_or_default();
    Dkim {
        result,
        domain,
        selector,
        reason,
    }
}

/// The end-of-message check the listener calls before storing a message held in memory:
/// `Ok(message)` to store (with our headers when it was checked), or `Err(reply)` to refuse
/// it. Only port 25 mail from an untrusted, unauthenticated client is checked; a streamed
/// message goes through `crate::verify_draft::screen_draft` instead.
pub async fn screen(
    verifier: Option<&Verifier>,
    service: Service,
    conn: &Connection,
    ip: IpAddr,
    envelope: &Envelope,
    message: Vec<u8>,
) -> Result<Vec<u8>, Reply> {
    let Some(verifier) = verifier.filter(|_| applies(verifier, service, conn)) else {
        return Ok(message);
    };
    let helo = conn.session().helo_name();
    let v = verifier.check(ip, helo, &envelope.sender, &message).await;
    let header = judge(verifier, ip, envelope, &v)?;
    let body = verdict::strip_ours(&message, &verifier.hostname);
    let body = body.as_deref().unwrap_or(&message);
    let mut out = Vec::with_capacity(header.len() + body.len());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(body);
    Ok(out)
}

/// Whether a port 25 message needs the checks: a verifier exists, the session is on port 25
/// and its client is neither trusted nor authenticated.
pub(crate) fn applies(verifier: Option<&Verifier>, service: Service, conn: &Connection) -> bool {
    verifier.is_some() && service == Service::Mx && !conn.session().sender_verified()
}

/// The decision on checked mail, logged: our `Authentication-Results:` (and `X-Spam-*`)
/// fields to put on top, or the refusal.
pub(crate) fn judge(
    verifier: &Verifier,
    ip: IpAddr,
    envelope: &Envelope,
    v: &Verdict,
) -> Result<String, Reply> {
    let decision = verdict::decide(v, &verifier.config.rules);
    let header = verdict::headers(&verifier.hostname, v, &decision);
    tracing::info!(
        "verify: from=<{}> [{ip}]: {}",
        proto::smtp::address::escape(&envelope.sender),
        header
            .lines()
            .skip(1)
            .map(|l| l.trim().trim_end_matches(';'))
            .filter(|l| !l.starts_with("X-Spam"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    match decision {
        Decision::Refuse(reply) => Err(reply),
        Decision::Accept { .. } => Ok(header),
    }
}

impl Verifier {
    /// Our host name, the authserv-id of our `Authentication-Results:`.
    pub fn hostname(&self) -> &str {
        &self.hostname
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_hash_failures_are_failures() {
        let dkim = DkimResult::Neutral(Error::Dkim(DkimError::FailedBodyHashMatch));
        assert_eq!(dkim_result(&dkim).0, AuthResult::Fail);
        let arc = DkimResult::Neutral(Error::Arc(ArcError::FailedBodyHashMatch));
        assert_eq!(dkim_result(&arc).0, AuthResult::Fail);
        let expired = DkimResult::Neutral(Error::Dkim(DkimError::SignatureExpired));
        assert_eq!(dkim_result(&expired).0, AuthResult::Neutral);
        assert_eq!(dkim_result(&DkimResult::Pass), (AuthResult::Pass, None));
    }
}
