//! Typed configuration values, parsed once at load so that nothing parses a config string
//! again later: durations ([`Span`]: `"90"`, `"250ms"`, `"30s"`, `"5m"`, `"2h"`, `"5d"`, or a
//! bare TOML integer of seconds, as the older keys such as `smtp.command_timeout = 300` were
//! written; [`MaybeSpan`]: the same, `""` meaning "off"), `host:port` ([`HostPort`]) and the
//! log level ([`LogLevel`]).
//!
//! A bad value is a load error naming the key and line (through serde).

use std::fmt;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A duration from the configuration.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Span(pub Duration);

impl Span {
    /// `text` in the configuration's syntax; for defaults written in code.
    pub fn of(text: &str) -> Span {
        Span(parse_duration(text).expect("a literal duration"))
    }

    pub fn secs(secs: u64) -> Span {
        Span(Duration::from_secs(secs))
    }

    pub fn get(self) -> Duration {
        self.0
    }

    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }
}

impl From<Span> for Duration {
    fn from(s: Span) -> Duration {
        s.0
    }
}

/// A duration that may be switched off with `""`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MaybeSpan(pub Option<Duration>);

impl MaybeSpan {
    pub fn get(self) -> Option<Duration> {
        self.0
    }
}

/// Parses "90", "250ms", "30s", "5m", "2h", "5d" into a duration.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let t = text.trim();
    let (num, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => (&t[..i], &t[i..]),
        None => (t, "s"),
    };
    let n: u64 = num.parse().ok()?;
    if unit == "ms" {
        return Some(Duration::from_millis(n));
    }
    let secs = match unit {
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        "d" => n.checked_mul(86_400)?,
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}

struct SpanVisitor {
    empty_is_none: bool,
}

impl Visitor<'_> for SpanVisitor {
    type Value = Option<Duration>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration such as \"30s\", \"5m\", \"2h\", \"5d\", \"250ms\" or seconds")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Option<Duration>, E> {
        if v.is_empty() && self.empty_is_none {
            return Ok(None);
        }
        parse_duration(v)
            .map(Some)
            .ok_or_else(|| E::custom(format!("not a duration: {v:?}")))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Option<Duration>, E> {
        u64::try_from(v)
            .map(|s| Some(Duration::from_secs(s)))
            .map_err(|_| E::custom(format!("not a duration: {v}")))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Option<Duration>, E> {
        Ok(Some(Duration::from_secs(v)))
    }
}

/// The shortest way to write `d` in the configuration's syntax ("90s" stays "90s", "300s"
/// becomes "5m").
pub fn format_duration(d: Duration) -> String {
    if d.subsec_millis() != 0 || d.as_secs() == 0 && !d.is_zero() {
        return format!("{}ms", d.as_millis());
    }
    let s = d.as_secs();
    match s {
        0 => "0s".into(),
        s if s % 86_400 == 0 => format!("{}d", s / 86_400),
        s if s % 3600 == 0 => format!("{}h", s / 3600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

impl Serialize for Span {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_duration(self.0))
    }
}

impl Serialize for MaybeSpan {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.map(format_duration).unwrap_or_default())
    }
}

impl Serialize for HostPort {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match &self.0 {
            None => s.serialize_str(""),
            Some((h, p)) if h.contains(':') => s.serialize_str(&format!("[{h}]:{p}")),
            Some((h, p)) => s.serialize_str(&format!("{h}:{p}")),
        }
    }
}

impl<'de> Deserialize<'de> for Span {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Span, D::Error> {
        let v = d.deserialize_any(SpanVisitor {
            empty_is_none: false,
        })?;
        Ok(Span(v.unwrap_or_default()))
    }
}

impl<'de> Deserialize<'de> for MaybeSpan {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<MaybeSpan, D::Error> {
        d.deserialize_any(SpanVisitor {
            empty_is_none: true,
        })
        .map(MaybeSpan)
    }
}

/// `host:port`, the host a name, an IPv4 address or a bracketed IPv6 address; `""` is none.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostPort(pub Option<(String, u16)>);

impl<'de> Deserialize<'de> for HostPort {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<HostPort, D::Error> {
        let text = String::deserialize(d)?;
        if text.is_empty() {
            return Ok(HostPort(None));
        }
        parse_host_port(&text)
            .map(|hp| HostPort(Some(hp)))
            .ok_or_else(|| de::Error::custom(format!("not host:port: {text:?}")))
    }
}

/// Splits "host:port" (host may be a name, an IPv4 address or a bracketed IPv6 address).
pub fn parse_host_port(text: &str) -> Option<(String, u16)> {
    let (host, port) = text.rsplit_once(':')?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return None;
    }
    Some((host.to_string(), port.parse().ok()?))
}

/// `[relay] smarthost_tls`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SmarthostTls {
    /// STARTTLS required, the certificate verified for the smarthost's name.
    #[default]
    Verify,
    /// STARTTLS when offered, nothing verified; AUTH only over TLS.
    Opportunistic,
    /// No TLS; AUTH in plaintext.
    None,
}

impl From<SmarthostTls> for mta::relay::SmarthostTls {
    fn from(t: SmarthostTls) -> mta::relay::SmarthostTls {
        match t {
            SmarthostTls::Verify => mta::relay::SmarthostTls::Verify,
            SmarthostTls::Opportunistic => mta::relay::SmarthostTls::Opportunistic,
            SmarthostTls::None => mta::relay::SmarthostTls::None,
        }
    }
}

/// How much is logged (`RUST_LOG`, when set, overrides it).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    #[default]
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

/// How each log line is written: `text` (`key=value` after the message) or `json` (one
/// object per line).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct T {
        a: Span,
        #[serde(default)]
        b: MaybeSpan,
    }

    #[test]
    fn parses_text_and_integers() {
        assert_eq!(parse_duration("90"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("5m"), Some(Duration::from_secs(300)));
        assert_eq!(parse_duration("5d"), Some(Duration::from_secs(432_000)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("5x"), None);
        assert_eq!(parse_duration(""), None);
        let t: T = toml::from_str("a = 300\nb = \"\"").unwrap();
        assert_eq!((t.a, t.b), (Span::secs(300), MaybeSpan(None)));
        let t: T = toml::from_str("a = \"2h\"\nb = \"1s\"").unwrap();
        assert_eq!(t.a.get(), Duration::from_secs(7200));
        assert_eq!(t.b.get(), Some(Duration::from_secs(1)));
        assert!(toml::from_str::<T>("a = \"\"").is_err());
        assert!(toml::from_str::<T>("a = -1").is_err());
        assert!(toml::from_str::<T>("a = \"soon\"").is_err());
    }

    #[test]
    fn durations_print_back_in_their_shortest_form() {
        for (text, shown) in [
            ("300", "5m"),
            ("90s", "90s"),
            ("2h", "2h"),
            ("5d", "5d"),
            ("250ms", "250ms"),
            ("1500ms", "1500ms"),
            ("0", "0s"),
        ] {
            assert_eq!(
                format_duration(parse_duration(text).unwrap()),
                shown,
                "{text}"
            );
        }
    }

    #[test]
    fn host_port_and_log_level() {
        #[derive(Deserialize)]
        struct H {
            h: HostPort,
            l: LogLevel,
        }
        let v: H = toml::from_str("h = \"[::1]:25\"\nl = \"debug\"").unwrap();
        assert_eq!(v.h.0, Some(("::1".to_string(), 25)));
        assert_eq!(v.l, LogLevel::Debug);
        assert_eq!(
            toml::from_str::<std::collections::BTreeMap<String, LogFormat>>("f = \"json\"")
                .unwrap()["f"],
            LogFormat::Json
        );
        assert!(
            toml::from_str::<std::collections::BTreeMap<String, LogFormat>>("f = \"xml\"").is_err()
        );
        let v: H = toml::from_str("h = \"\"\nl = \"warn\"").unwrap();
        assert_eq!(v.h.0, None);
        assert!(toml::from_str::<H>("h = \"relay\"\nl = \"info\"").is_err());
        assert!(toml::from_str::<H>("h = \"\"\nl = \"verbose\"").is_err());
    }
}
