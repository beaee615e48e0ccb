//! `mailroom dns-records DOMAIN [--ipv4 A] [--ipv6 B]`: the zone-file lines an admin publishes
//! for a domain: MX, the host name's A/AAAA (when given), SPF for the domain (and for the host
//! name, which SPF checks for DSNs sent from `<>`), every DKIM key that is published, active,
//! or retired less than a week ago (RFC 6376 §3.6.2.2: TXT split into strings of at most 255
//! octets), DMARC (`p=reject`, aggregate reports to the domain's postmaster), TLS-RPT
//! (RFC 8460), and the SRV records of RFC 6186 / RFC 8314 for submission and POP3 (IMAP named
//! with the "." target: not offered).
//!
//! [`records`] is pure (unit-tested); [`run`] gathers the keys and the configured ports.
//! Not here: checking what DNS serves (`dns_check`).

use std::net::{Ipv4Addr, Ipv6Addr};

use store::dkim_keys::{KeyInfo, KeyState};

use crate::config::Config;
use crate::Failure;

/// How long a retired key stays in DNS: messages signed just before the switch may wait in
/// queues for days, and a verifier then needs the key.
pub const RETIRED_KEPT: u64 = 7 * 86_400;

const TTL: u32 = 3600;

/// What the records are made from.
pub struct ZoneInput<'a> {
    pub domain: &'a str,
    pub hostname: &'a str,
    pub ipv4: Option<Ipv4Addr>,
    pub ipv6: Option<Ipv6Addr>,
    pub keys: &'a [KeyInfo],
    pub now: u64,
    /// Listening ports; `None` when the service is not offered.
    pub submission: Option<u16>,
    pub submissions: Option<u16>,
    pub pop3: Option<u16>,
    pub pop3s: Option<u16>,
}

/// Whether a key belongs in DNS now.
pub fn published(key: &KeyInfo, now: u64) -> bool {
    match key.state {
        KeyState::Published | KeyState::Active => true,
        KeyState::Retired => key
            .retired_at
            .is_some_and(|t| now < t.saturating_add(RETIRED_KEPT)),
    }
}

fn line(name: &str, kind: &str, data: &str) -> String {
    format!("{name}. {TTL} IN {kind} {data}")
}

fn srv(service: &str, domain: &str, host: &str, port: Option<u16>) -> String {
    let data = match port {
        Some(p) => format!("0 1 {p} {host}."),
        None => "0 0 0 .".to_string(),
    };
    line(&format!("_{service}._tcp.{domain}"), "SRV", &data)
}

/// The zone-file lines, comments included.
pub fn records(z: &ZoneInput<'_>) -> Vec<String> {
    let (d, h) = (z.domain, z.hostname);
    let txt = dkim::record::zone_strings;
    let mut out = vec![format!("; DNS records for {d} (mail host {h})")];
    out.push(line(d, "MX", &format!("10 {h}.")));
    if let Some(a) = z.ipv4 {
        out.push(line(h, "A", &a.to_string()));
    }
    if let Some(a) = z.ipv6 {
        out.push(line(h, "AAAA", &a.to_string()));
    }
    let mut spf = String::from("v=spf1");
    let mut host_spf = String::from("v=spf1");
    if z.ipv4.is_none() && z.ipv6.is_none() {
        spf.push_str(" mx");
        host_spf.push_str(" a");
    }
    for ip in z.ipv4.iter().map(|a| format!(" ip4:{a}")) {
        spf.push_str(&ip);
        host_spf.push_str(&ip);
    }
    for ip in z.ipv6.iter().map(|a| format!(" ip6:{a}")) {
        spf.push_str(&ip);
        host_spf.push_str(&ip);
    }
    spf.push_str(" -all");
    host_spf.push_str(" -all");
    out.push(line(d, "TXT", &txt(&spf)));
    if !h.eq_ignore_ascii_case(d) {
        out.push(line(h, "TXT", &txt(&host_spf)));
    }
    for key in z.keys.iter().filter(|k| published(k, z.now)) {
        out.push(format!(
            "; DKIM {} key, {}",
            key.algorithm.as_str(),
            key.state.as_str()
        ));
        out.push(line(
            &dkim::record::owner(key),
            "TXT",
            &txt(&dkim::record::txt_value(key)),
        ));
    }
    out.push(line(
        &format!("_dmarc.{d}"),
        "TXT",
        &txt(&format!("v=DMARC1; p=reject; rua=mailto:postmaster@{d}")),
    ));
    out.push(line(
        &format!("_smtp._tls.{d}"),
        "TXT",
        &txt(&format!("v=TLSRPTv1; rua=mailto:postmaster@{d}")),
    ));
    out.push(srv("submission", d, h, z.submission));
    out.push(srv("submissions", d, h, z.submissions));
    out.push(srv("pop3", d, h, z.pop3));
    out.push(srv("pop3s", d, h, z.pop3s));
    out.push(srv("imap", d, h, None));
    out.push(srv("imaps", d, h, None));
    out
}

/// The web face's names (issue 11): `mta-sts.` and `autoconfig.` of the domain pointing at the
/// host name (their certificates come with it), and the `_mta-sts` TXT whose `id` changes with
/// the policy (RFC 8461 §3.1). Nothing when there is no HTTPS listener to serve them.
pub fn web_records(
    domain: &str,
    hostname: &str,
    mta_sts: Option<&web::mta_sts::Policy>,
) -> Vec<String> {
    let Some(policy) = mta_sts else {
        return Vec::new();
    };
    let mut out = vec![format!(
        "; MTA-STS (mode {}) and autoconfig, served over https by {hostname}",
        policy.mode.as_str()
    )];
    out.push(line(
        &format!("mta-sts.{domain}"),
        "CNAME",
        &format!("{hostname}."),
    ));
    out.push(line(
        &format!("autoconfig.{domain}"),
        "CNAME",
        &format!("{hostname}."),
    ));
    out.push(line(
        &format!("_mta-sts.{domain}"),
        "TXT",
        &dkim::record::zone_strings(&policy.txt()),
    ));
    out
}

fn port(list: &[std::net::SocketAddr]) -> Option<u16> {
    list.first().map(|a| a.port())
}

pub fn run(
    config: &Config,
    domain: &str,
    ipv4: Option<Ipv4Addr>,
    ipv6: Option<Ipv6Addr>,
) -> Result<(), Failure> {
    for l in zone(config, domain, ipv4, ipv6)? {
        println!("{l}");
    }
    Ok(())
}

/// The lines of [`records`] for a local `domain`, from its keys and the configured ports
/// (also what `dns-check` expects).
pub fn zone(
    config: &Config,
    domain: &str,
    ipv4: Option<Ipv4Addr>,
    ipv6: Option<Ipv6Addr>,
) -> Result<Vec<String>, Failure> {
    let dir = store::directory::Directory::open(&config.data_dir).map_err(Failure::failed)?;
    let domain = domain.to_ascii_lowercase();
    if !dir.is_local_domain(&domain).map_err(Failure::failed)? {
        return Err(Failure::failed(format!("no such domain: {domain}")));
    }
    let keys = crate::admin_dkim::open_keys(config)?
        .list(Some(&domain))
        .map_err(Failure::failed)?;
    let z = ZoneInput {
        domain: &domain,
        hostname: &config.hostname,
        ipv4,
        ipv6,
        keys: &keys,
        now: crate::admin_dkim::unix_now(),
        submission: port(&config.smtp.submission),
        submissions: port(&config.smtp.submissions),
        pop3: port(&config.pop3.listen),
        pop3s: port(&config.pop3.pop3s),
    };
    let mut lines = records(&z);
    let policy = config.http.mta_sts(&config.hostname);
    let served = (!config.http.https.is_empty()).then_some(&policy);
    lines.extend(web_records(&domain, &config.hostname, served));
    Ok(lines)
}

#[cfg(test)]
#[path = "dns_records_tests.rs"]
mod tests;
