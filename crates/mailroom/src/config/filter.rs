//! `[filter]` (DNS block- and allowlists, greylisting) and `[limits]` (sending limits of
//! accounts and trusted clients): types, safe defaults (everything off but the limits) and
//! their check at load. What they do: `smtpd::filter`.

use serde::{Deserialize, Serialize};

use super::{Config, ConfigError, Span};
use smtpd::filter::dnsbl::Zone;

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
}

impl Default for FilterConfig {
    fn default() -> FilterConfig {
        FilterConfig {
            dnsbl: Vec::new(),
            dnswl: Vec::new(),
            dnsbl_timeout: Span::of("10s"),
            greylisting: false,
            greylist_delay: Span::of("5m"),
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
    if c.filter.dnsbl_timeout.is_zero() {
        return Err(ConfigError(
            "filter.dnsbl_timeout: must be more than 0".into(),
        ));
    }
    Ok(())
}
