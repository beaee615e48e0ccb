//! `[filter]` (DNS block- and allowlists, greylisting, rspamd) and `[limits]` (sending limits of
//! accounts and trusted clients): types, safe defaults (everything off but the limits) and
//! their check at load. What they do: `smtpd::filter`.

use serde::{Deserialize, Serialize};

use super::{Config, ConfigError, Span};
use smtpd::filter::dnsbl::Zone;
use smtpd::filter::rspamd::Rspamd;

/// `[filter]`: what is refused before the message, for port 25 clients neither trusted nor
/// authenticated.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilterConfig {
    /// DNS blocklists: `"zone"` (any 127.0.0.0/8 answer) or `"zone=127.0.0.2"`; a listed
    /// client gets `554 5.7.1 Service unavailable; Client host [IP] blocked using ZONE` at RCPT.
    pub dnsbl: Vec<String>,
    /// DNS allowlists, same form: a listed client skips the blocklists and greylisting.
    pub dnswl: Vec<String>,
    /// All list lookups of one client end by then; a lookup not answered lists nothing.
    pub dnsbl_timeout: Span,
    /// Greylisting: `451 4.7.1` to a new (client /24 or /64, sender, recipient) triplet.
    pub greylisting: bool,
    /// A retry is accepted this long after the first attempt.
    pub greylist_delay: Span,
    /// rspamd after DATA, e.g. `"http://127.0.0.1:11333"`; empty: off.
    pub rspamd_url: String,
    /// The whole exchange with rspamd for one message.
    pub rspamd_timeout: Span,
    /// rspamd down or too slow: accept (and count); false: `451 4.7.1`.
    pub rspamd_fail_open: bool,
    /// Also scan mail from authenticated users and trusted networks.
    pub scan_outbound: bool,
    /// Larger messages are stored unscanned (logged, counted): rspamd's own `max_message`
    /// default, 50 MiB, over which it refuses to scan.
    pub rspamd_max_size: u64,
}

impl Default for FilterConfig {
    fn default() -> FilterConfig {
        FilterConfig {
            dnsbl: Vec::new(),
            dnswl: Vec::new(),
            dnsbl_timeout: Span::of("10s"),
            greylisting: false,
            greylist_delay: Span::of("5m"),
            rspamd_url: String::new(),
            rspamd_timeout: Span::of("20s"),
            rspamd_fail_open: true,
            scan_outbound: false,
            rspamd_max_size: smtpd::filter::rspamd::DEFAULT_MAX_SIZE,
        }
    }
}

impl FilterConfig {
    /// The blocklists and allowlists, parsed.
    pub fn zones(&self) -> Result<(Vec<Zone>, Vec<Zone>), ConfigError> {
        let parse = |key: &str, list: &[String]| -> Result<Vec<Zone>, ConfigError> {
            list.iter()
                .enumerate()
                .map(|(i, z)| {
                    Zone::parse(z).map_err(|e| ConfigError(format!("filter.{key}[{i}]: {e}")))
                })
                .collect()
        };
        Ok((parse("dnsbl", &self.dnsbl)?, parse("dnswl", &self.dnswl)?))
    }
}

impl FilterConfig {
    /// The rspamd client of `rspamd_url`.
    pub fn rspamd(&self) -> Result<Rspamd, String> {
        Rspamd::new(
            &self.rspamd_url,
            self.rspamd_timeout.get(),
            self.rspamd_fail_open,
            self.scan_outbound,
        )
        .map(|r| r.with_max_size(self.rspamd_max_size))
    }
}

/// `[limits]`: per authenticated account and per trusted-network address; past them
/// `451 4.7.1` at MAIL (messages) or RCPT (recipients). 0: no limit. Counted in memory: a
/// restart forgets what was sent before it.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    pub messages_per_hour: u32,
    pub recipients_per_day: u32,
}

impl Default for LimitsConfig {
    fn default() -> LimitsConfig {
        LimitsConfig {
            messages_per_hour: 500,
            recipients_per_day: 2000,
        }
    }
}

/// The checks of both sections at load.
pub(super) fn validate(c: &Config) -> Result<(), ConfigError> {
    c.filter.zones()?;
    if !c.filter.rspamd_url.is_empty() {
        c.filter
            .rspamd()
            .map_err(|e| ConfigError(format!("filter.rspamd_url: {e}")))?;
    }
    if c.filter.rspamd_max_size == 0 {
        return Err(ConfigError(
            "filter.rspamd_max_size: must be more than 0".into(),
        ));
    }
    if c.filter.dnsbl_timeout.is_zero() || c.filter.rspamd_timeout.is_zero() {
        return Err(ConfigError(
            "filter.dnsbl_timeout/rspamd_timeout: must be more than 0".into(),
        ));
    }
    Ok(())
}
