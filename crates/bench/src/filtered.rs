//! S1 through the junk filters (`--filter-dns` / `--filter-rspamd`): the SMTP client
//! (127.0.0.1) is made untrusted, every connection is looked up on the DNS blocklist
//! `bl.bench.test` (answered by the given server: NXDOMAIN, so nobody is listed) and every
//! message goes to rspamd. Neither the DNS server nor rspamd is started here: run dnsmasq
//! (`--local=/test/`) and rspamd yourself and name them.

use std::net::SocketAddr;

use crate::server::Mailroom;

/// Rewrites `mr`'s config for the filtered run.
pub fn configure(
    mr: &Mailroom,
    dns: Option<SocketAddr>,
    rspamd: Option<&str>,
) -> Result<(), String> {
    if dns.is_none() && rspamd.is_none() {
        return Ok(());
    }
    let text = std::fs::read_to_string(&mr.config).map_err(|e| e.to_string())?;
    let mut text = text.replace(
        "trusted_networks = [\"127.0.0.0/8\"]",
        "trusted_networks = [\"127.0.0.42/32\"]",
    );
    text.push_str("\n[verify]\nspf = false\ndkim = false\ndmarc = false\narc = false\n");
    if let Some(dns) = dns {
        text.push_str(&format!("\n[dns]\nservers = [\"{dns}\"]\n"));
    }
    text.push_str("\n[filter]\n");
    if dns.is_some() {
        text.push_str("dnsbl = [\"bl.bench.test\"]\n");
    }
    if let Some(url) = rspamd {
        text.push_str(&format!("rspamd_url = \"{url}\"\n"));
    }
    std::fs::write(&mr.config, text).map_err(|e| e.to_string())
}
