//! `mailroom check-config [--non-default]`: the configuration in effect printed as TOML (every
//! key with the defaults filled in, or with `--non-default` only what differs from them, like
//! `postconf -n`), after the checks a start would make without binding anything: the file
//! parses, and a configured certificate and key open, parse and match (exit 2 naming the key
//! otherwise). It writes nothing: a missing self-signed pair is not generated here.

use toml::{Table, Value};

use crate::config::Config;
use crate::Failure;

pub fn run(config: &Config, non_default: bool) -> Result<(), Failure> {
    check_tls(config)?;
    crate::tls::ca_certificates(&config.relay.ca_file)
        .map_err(|message| Failure { code: 2, message })?;
    let value = Value::try_from(config).map_err(|e| Failure::failed(format!("config: {e}")))?;
    let shown = if non_default {
        let defaults = Value::try_from(Config::default())
            .map_err(|e| Failure::failed(format!("config: {e}")))?;
        difference(&value, &defaults).unwrap_or(Value::Table(Table::new()))
    } else {
        value
    };
    let text = toml::to_string(&shown).map_err(|e| Failure::failed(format!("config: {e}")))?;
    print!("{text}");
    Ok(())
}

/// A configured certificate pair must load as the server would load it.
fn check_tls(config: &Config) -> Result<(), Failure> {
    let t = &config.tls;
    if t.certificate.is_empty() && t.private_key.is_empty() {
        return Ok(());
    }
    let source = crate::tls::cert_source(
        &t.certificate,
        &t.private_key,
        &config.hostname,
        &config.data_dir,
    )
    .and_then(|s| crate::tls::server_config(s).map(drop));
    source.map_err(|e| Failure {
        code: 2,
        message: e,
    })
}

/// What of `value` differs from `defaults`: tables compared key by key (a table with no
/// difference left is dropped), anything else whole. `None` when nothing differs.
fn difference(value: &Value, defaults: &Value) -> Option<Value> {
    match (value, defaults) {
        (Value::Table(v), Value::Table(d)) => {
            let mut out = Table::new();
            for (key, val) in v {
                let diff = match d.get(key) {
                    Some(dv) => difference(val, dv),
                    None => Some(val.clone()),
                };
                if let Some(diff) = diff {
                    out.insert(key.clone(), diff);
                }
            }
            (!out.is_empty()).then_some(Value::Table(out))
        }
        (v, d) if v == d => None,
        (v, _) => Some(v.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_what_differs_is_kept() {
        let c = crate::config::parse(
            "hostname = \"mx.example.test\"\n[smtp]\ncommand_timeout = \"10m\"\nmax_recipients = 100\n[relay]\nretry_schedule = [\"1m\"]\n",
        )
        .unwrap();
        let v = Value::try_from(&c).unwrap();
        let mut d = Value::try_from(Config::default()).unwrap();
        // The default host name is the machine's: make it differ for the test.
        d["hostname"] = Value::String("other.example".into());
        let diff = difference(&v, &d).unwrap();
        let text = toml::to_string(&diff).unwrap();
        assert_eq!(
            text,
            "hostname = \"mx.example.test\"\n\n[relay]\nretry_schedule = [\"1m\"]\n\n[smtp]\ncommand_timeout = \"10m\"\n"
        );
        // What it prints parses back to the same configuration.
        let again = crate::config::parse(&text).unwrap();
        assert_eq!(again.smtp.command_timeout, c.smtp.command_timeout);
        assert_eq!(difference(&d, &d), None);
    }
}
