//! `mailroom dns-check DOMAIN [--ipv4 A] [--ipv6 B]`: asks the configured resolver (`[dns]`)
//! for every record `dns-records` prints and says of each whether DNS serves it (`ok`), does
//! not (`missing`), or serves something else at that name (`different`, both values shown);
//! a lookup that fails for another reason is `error`. Exit 1 unless every record is ok.
//!
//! The expected set is `dns_records::records` (the same lines, parsed back by [`expected`]);
//! [`compare`] is pure. Which answers are "the same record": for TXT, those with the same
//! `v=` tag (an SPF record beside a site-verification TXT is not different); for the other
//! types, any answer at the name. Values are compared without case for names and with white
//! space normalized for TXT.
//!
//! Not here: the lookups' limits (the `dns` crate's timeouts), the records themselves.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::config::Config;
use crate::Failure;

/// One record `dns-records` prints.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expected {
    /// Owner name without the final dot.
    pub name: String,
    pub kind: String,
    /// The value as served: TXT strings joined, names with their final dot.
    pub value: String,
}

/// What DNS said about one record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    Ok,
    Missing,
    Different(Vec<String>),
    Error(String),
}

/// The text of a TXT value written by `dkim::record::zone_strings`: quoted strings joined.
fn unquote(data: &str) -> String {
    let mut out = String::new();
    let mut quoted = false;
    let mut chars = data.chars();
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (false, '"') | (true, '"') => quoted = !quoted,
            (true, '\\') => out.extend(chars.next()),
            (true, c) => out.push(c),
            (false, _) => {}
        }
    }
    out
}

/// The records among `lines` (zone-file lines, `; comments` skipped).
pub fn expected(lines: &[String]) -> Vec<Expected> {
    lines
        .iter()
        .filter(|l| !l.starts_with(';'))
        .filter_map(|l| {
            let mut parts = l.splitn(5, ' ');
            let (name, _ttl, _class, kind, data) = (
                parts.next()?,
                parts.next()?,
                parts.next()?,
                parts.next()?,
                parts.next()?,
            );
            let value = if kind == "TXT" {
                unquote(data)
            } else {
                data.to_string()
            };
            Some(Expected {
                name: name.trim_end_matches('.').to_string(),
                kind: kind.to_string(),
                value,
            })
        })
        .collect()
}

/// A value in the form compared: TXT with white space collapsed (none around `;`), names
/// and the other types' values lower-cased with one space between fields.
fn normal(kind: &str, value: &str) -> String {
    let words: Vec<&str> = value.split_whitespace().collect();
    if kind == "TXT" {
        words.join(" ").replace(" ;", ";").replace("; ", ";")
    } else if kind == "A" || kind == "AAAA" {
        value
            .trim()
            .parse::<IpAddr>()
            .map_or_else(|_| value.trim().to_string(), |ip| ip.to_string())
    } else {
        words.join(" ").to_ascii_lowercase()
    }
}

/// The `v=` tag of a TXT value, lower-cased (`v=spf1`, `v=dkim1`, `v=dmarc1`...).
fn version(value: &str) -> Option<String> {
    let first = value.split(';').next()?.split_whitespace().next()?;
    first
        .to_ascii_lowercase()
        .starts_with("v=")
        .then(|| first.to_ascii_lowercase())
}

/// Whether `answers` (the lookup of `e.name`, type `e.kind`) hold `e`.
pub fn compare(e: &Expected, answers: &Result<Vec<String>, dns::Failure>) -> Status {
    let answers = match answers {
        Ok(a) => a,
        Err(dns::Failure::NxDomain | dns::Failure::NoRecords) => return Status::Missing,
        Err(dns::Failure::Temporary(why)) => return Status::Error(why.clone()),
    };
    let candidates: Vec<&String> = match (e.kind.as_str(), version(&e.value)) {
        ("TXT", Some(v)) => answers
            .iter()
            .filter(|a| version(a).as_deref() == Some(v.as_str()))
            .collect(),
        _ => answers.iter().collect(),
    };
    if candidates.is_empty() {
        return Status::Missing;
    }
    let want = normal(&e.kind, &e.value);
    if candidates.iter().any(|a| normal(&e.kind, a) == want) {
        Status::Ok
    } else {
        Status::Different(candidates.into_iter().cloned().collect())
    }
}

/// The report line of one record (network text escaped for the terminal).
pub fn line(e: &Expected, status: &Status) -> String {
    let shown = |v: &str| crate::terminal::safe(v);
    let what = format!("{} {}", e.name, e.kind);
    match status {
        Status::Ok => format!("ok        {what} {}", shown(&e.value)),
        Status::Missing => format!("missing   {what} expected: {}", shown(&e.value)),
        Status::Different(found) => format!(
            "different {what} expected: {} found: {}",
            shown(&e.value),
            found
                .iter()
                .map(|f| shown(f))
                .collect::<Vec<_>>()
                .join(" | ")
        ),
        Status::Error(why) => format!("error     {what} lookup failed: {}", shown(why)),
    }
}

pub fn run(
    config: &Config,
    domain: &str,
    ipv4: Option<Ipv4Addr>,
    ipv6: Option<Ipv6Addr>,
) -> Result<(), Failure> {
    let checked = check(config, domain, ipv4, ipv6)?;
    let mut bad = 0;
    for (e, status) in &checked {
        if *status != Status::Ok {
            bad += 1;
        }
        println!("{}", line(e, status));
    }
    if bad > 0 {
        return Err(Failure::failed(format!(
            "{bad} of {} records for {domain} are not as `mailroom dns-records` prints them",
            checked.len()
        )));
    }
    Ok(())
}

/// Every record of `dns-records` for `domain` with what DNS says of it (the lookups on a
/// runtime of their own: call it from a plain or blocking thread).
pub fn check(
    config: &Config,
    domain: &str,
    ipv4: Option<Ipv4Addr>,
    ipv6: Option<Ipv6Addr>,
) -> Result<Vec<(Expected, Status)>, Failure> {
    let records = expected(&crate::dns_records::zone(config, domain, ipv4, ipv6)?);
    let resolver = dns::Dns::new(&dns::DnsConfig {
        servers: config.dns_servers().to_vec(),
        ..dns::DnsConfig::default()
    })
    .map_err(|e| Failure::failed(format!("dns: {e}")))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(Failure::failed)?;
    Ok(records
        .into_iter()
        .map(|e| {
            let answers = runtime.block_on(resolver.answers(&e.name, &e.kind));
            let status = compare(&e, &answers);
            (e, status)
        })
        .collect())
}

#[cfg(test)]
#[path = "dns_check_tests.rs"]
mod tests;
