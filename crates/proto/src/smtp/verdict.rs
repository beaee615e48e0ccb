//! What inbound mail authentication concluded, and what follows from it: SPF (RFC 7208),
//! DKIM (RFC 6376), DMARC (RFC 7489) and ARC (RFC 8617) results as plain data
//! ([`Verdict`]), the reply at the end of DATA ([`decide`]: refuse, try later or accept,
//! with `X-Spam-*` tags for a quarantined message), the RFC 8601 `Authentication-Results:`
//! header ([`headers`]), and the removal of incoming `Authentication-Results:` that claim to
//! be ours ([`strip_ours`]), so nobody can forge our verdict.
//!
//! Pure: the DNS lookups and signature checks that produce a [`Verdict`] are done elsewhere
//! (`smtpd::verify`, over mail-auth and the one resolver) and handed in. Every text taken from
//! the message or DNS (domains, selectors, reasons) is reduced to printable ASCII before it
//! goes into a header.

use super::reply::Reply;

/// A method's result, RFC 8601 §2.7 keywords.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthResult {
    Pass,
    Fail,
    SoftFail,
    Neutral,
    None,
    TempError,
    PermError,
}

impl AuthResult {
    pub fn keyword(self) -> &'static str {
        match self {
            AuthResult::Pass => "pass",
            AuthResult::Fail => "fail",
            AuthResult::SoftFail => "softfail",
            AuthResult::Neutral => "neutral",
            AuthResult::None => "none",
            AuthResult::TempError => "temperror",
            AuthResult::PermError => "permerror",
        }
    }
}

/// SPF of the MAIL FROM identity, or of the HELO identity when the sender is `<>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spf {
    pub result: AuthResult,
    /// The reverse-path checked; empty: the HELO name was checked (`smtp.helo`).
    pub mail_from: String,
    pub helo: String,
}

/// One DKIM signature's result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dkim {
    pub result: AuthResult,
    /// `d=` and `s=` of the signature (empty when it could not be parsed).
    pub domain: String,
    pub selector: String,
    /// Why it did not pass.
    pub reason: Option<String>,
}

/// The policy a DMARC record asks for (after `sp=`/`np=` and `t=y` are applied).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DmarcPolicy {
    None,
    Quarantine,
    Reject,
}

/// DMARC for the `From:` domain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dmarc {
    pub result: AuthResult,
    /// The RFC 5322 `From:` domain (`header.from`); empty when there is none.
    pub from_domain: String,
    pub policy: DmarcPolicy,
    /// A DMARC record was found (the domain takes part in DMARC).
    pub has_record: bool,
}

/// Everything that was checked; `None` for a method switched off.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Verdict {
    pub spf: Option<Spf>,
    pub dkim: Option<Vec<Dkim>>,
    pub dmarc: Option<Dmarc>,
    pub arc: Option<AuthResult>,
}

/// `[verify]`'s policy switches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rules {
    /// DMARC `p=reject` failures are refused (`550 5.7.1`); false: tagged as quarantine.
    pub dmarc_reject: bool,
    /// SPF `fail` (`-all`) for a domain without DMARC is refused (`550 5.7.23`); false: tagged.
    pub spf_reject: bool,
}

impl Default for Rules {
    fn default() -> Rules {
        Rules {
            dmarc_reject: true,
            spf_reject: false,
        }
    }
}

/// What to do with the message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// Store it; `spam` is the reason to tag it `X-Spam-Flag: YES`, if any.
    Accept { spam: Option<String> },
    /// Refuse it with this reply; nothing is stored.
    Refuse(Reply),
}

/// The reply a verdict earns under `rules`.
pub fn decide(v: &Verdict, rules: &Rules) -> Decision {
    let mut spam = None;
    if let Some(d) = &v.dmarc {
        let domain = printable(&d.from_domain, 255);
        match (d.result, d.policy) {
            (AuthResult::Fail, DmarcPolicy::Reject) if rules.dmarc_reject => {
                return Decision::Refuse(Reply::new(
                    550,
                    format!("5.7.1 Message refused: DMARC policy of {domain} says reject (not authenticated by SPF or DKIM)"),
                ));
            }
            // RFC 7489 §6.6.3: a temporary error may be answered with a temporary failure.
            (AuthResult::TempError, DmarcPolicy::Reject) if rules.dmarc_reject => {
                return Decision::Refuse(Reply::new(
                    451,
                    format!("4.7.5 DMARC of {domain} could not be checked (DNS temporary error), try again later"),
                ));
            }
            (AuthResult::Fail, DmarcPolicy::Reject | DmarcPolicy::Quarantine) => {
                let policy = if d.policy == DmarcPolicy::Reject {
                    "reject"
                } else {
                    "quarantine"
                };
                spam = Some(format!(
                    "DMARC policy {policy} of {domain}: not authenticated by SPF or DKIM"
                ));
            }
            _ => {}
        }
    }
    let dmarc_record = v.dmarc.as_ref().is_some_and(|d| d.has_record);
    if let Some(spf) = &v.spf {
        if spf.result == AuthResult::Fail && !dmarc_record {
            let domain = printable(spf_domain(spf), 255);
            if rules.spf_reject {
                // RFC 7372: 5.7.23 SPF validation failed.
                return Decision::Refuse(Reply::new(
                    550,
                    format!("5.7.23 Message refused: SPF of {domain} does not allow this client"),
                ));
            }
        }
    }
    Decision::Accept { spam }
}

fn spf_domain(spf: &Spf) -> &str {
    match spf.mail_from.rsplit_once('@') {
        Some((_, d)) => d,
        None if spf.mail_from.is_empty() => &spf.helo,
        None => &spf.mail_from,
    }
}

/// Printable ASCII only (anything else becomes `?`), at most `max` characters.
fn printable(text: &str, max: usize) -> String {
    text.chars()
        .take(max)
        .map(|c| if c.is_ascii_graphic() { c } else { '?' })
        .collect()
}

/// An RFC 8601 property value: a token as it is, else a quoted string (printable ASCII).
fn value(text: &str) -> String {
    let text = printable(text, 255);
    let token = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`{|}~@".contains(c));
    if token {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// The `reason=` of a result: a quoted string of printable ASCII and spaces.
fn reason(text: &str) -> String {
    let clean: String = text
        .chars()
        .take(100)
        .map(|c| match c {
            ' ' => ' ',
            '"' | '\\' => '\'',
            c if c.is_ascii_graphic() => c,
            _ => '?',
        })
        .collect();
    format!(" reason=\"{clean}\"")
}

/// The header fields to prepend: `Authentication-Results:` (RFC 8601), and when the decision
/// tags the message, `X-Spam-Flag: YES` and `X-Spam-Status:` with the reason. CRLF-ended.
pub fn headers(hostname: &str, v: &Verdict, decision: &Decision) -> String {
    let mut parts: Vec<String> = Vec::new();
    if let Some(spf) = &v.spf {
        let property = if spf.mail_from.is_empty() {
            format!("smtp.helo={}", value(&spf.helo))
        } else {
            format!("smtp.mailfrom={}", value(&spf.mail_from))
        };
        parts.push(format!("spf={} {property}", spf.result.keyword()));
    }
    if let Some(dkim) = &v.dkim {
        if dkim.is_empty() {
            parts.push("dkim=none".into());
        }
        for sig in dkim {
            let mut part = format!("dkim={}", sig.result.keyword());
            if let Some(why) = &sig.reason {
                part.push_str(&reason(why));
            }
            if !sig.domain.is_empty() {
                part.push_str(&format!(" header.d={}", value(&sig.domain)));
            }
            if !sig.selector.is_empty() {
                part.push_str(&format!(" header.s={}", value(&sig.selector)));
            }
            parts.push(part);
        }
    }
    if let Some(d) = &v.dmarc {
        let mut part = format!("dmarc={}", d.result.keyword());
        if d.has_record {
            let policy = match d.policy {
                DmarcPolicy::None => "none",
                DmarcPolicy::Quarantine => "quarantine",
                DmarcPolicy::Reject => "reject",
            };
            part.push_str(&format!(" policy.dmarc={policy}"));
        }
        if !d.from_domain.is_empty() {
            part.push_str(&format!(" header.from={}", value(&d.from_domain)));
        }
        parts.push(part);
    }
    if let Some(arc) = v.arc {
        parts.push(format!("arc={}", arc.keyword()));
    }
    let mut out = format!("Authentication-Results: {}", printable(hostname, 255));
    if parts.is_empty() {
        out.push_str("; none");
    }
    for part in parts {
        out.push_str(";\r\n\t");
        out.push_str(&part);
    }
    out.push_str("\r\n");
    if let Decision::Accept { spam: Some(why) } = decision {
        out.push_str("X-Spam-Flag: YES\r\n");
        out.push_str(&format!(
            "X-Spam-Status: Yes, tests=DMARC_FAIL{}\r\n",
            reason(why)
        ));
    }
    out
}

/// `message` without the `Authentication-Results:` fields of its header block whose
/// authserv-id is `hostname` (RFC 8601 §5: a border MTA removes the ones claiming to be
/// its own); `None` when there is none to remove.
pub fn strip_ours(message: &[u8], hostname: &str) -> Option<Vec<u8>> {
    let end = super::headers::find_header_end(message);
    // Fields as (start, end) byte ranges, continuation lines included.
    let mut drop: Vec<(usize, usize)> = Vec::new();
    let mut pos = 0;
    while pos < end {
        let line_end = next_line(message, pos, end);
        let mut field_end = line_end;
        while field_end < end && matches!(message[field_end], b' ' | b'\t') {
            field_end = next_line(message, field_end, end);
        }
        let field = &message[pos..field_end];
        const NAME: &[u8] = b"authentication-results:";
        if field.len() > NAME.len()
            && field[..NAME.len()].eq_ignore_ascii_case(NAME)
            && authserv_id(&field[NAME.len()..]).eq_ignore_ascii_case(hostname.as_bytes())
        {
            drop.push((pos, field_end));
        }
        pos = field_end;
    }
    if drop.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(message.len());
    let mut at = 0;
    for (start, stop) in drop {
        out.extend_from_slice(&message[at..start]);
        at = stop;
    }
    out.extend_from_slice(&message[at..]);
    Some(out)
}

/// Where the line starting at `pos` ends (after its LF), at most `end`.
fn next_line(message: &[u8], pos: usize, end: usize) -> usize {
    match message[pos..end].iter().position(|&b| b == b'\n') {
        Some(i) => pos + i + 1,
        None => end,
    }
}

/// The authserv-id at the start of a field value: after white space and comments, up to
/// `;`, white space or `(`; a quoted string is unquoted.
fn authserv_id(value: &[u8]) -> Vec<u8> {
    let mut i = 0;
    let mut depth = 0usize;
    while i < value.len() {
        match value[i] {
            b'(' => depth += 1,
            b')' if depth > 0 => depth -= 1,
            b' ' | b'\t' | b'\r' | b'\n' => {}
            _ if depth > 0 => {}
            _ => break,
        }
        i += 1;
    }
    let rest = &value[i..];
    if let Some(quoted) = rest.strip_prefix(b"\"") {
        let close = quoted
            .iter()
            .position(|&b| b == b'"')
            .unwrap_or(quoted.len());
        return quoted[..close].to_vec();
    }
    let stop = rest
        .iter()
        .position(|&b| matches!(b, b';' | b' ' | b'\t' | b'\r' | b'\n' | b'('))
        .unwrap_or(rest.len());
    rest[..stop].to_vec()
}

#[cfg(test)]
#[path = "verdict_tests.rs"]
mod tests;
