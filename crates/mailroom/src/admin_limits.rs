//! `mailroom user limits ADDRESS [--messages-per-hour N] [--recipients-per-day M]
//! [--default]`: an account's override of the `[limits]` sending limits, kept by
//! `store::account_limits`; the running server reads it at the account's next MAIL/RCPT.
//! An option not given keeps its current value; without any, the limits are shown.
//! Likewise `mailroom user retention ADDRESS [--delete-retrieved-after D] [--delete-after D]`
//! for the POP3 retention (`store::account_retention`; `none`: never, `default`: `[pop3]`'s).

use store::account_limits::AccountLimits;

use crate::config::Config;
use crate::Failure;

pub fn limits(
    config: &Config,
    account: &str,
    new: (Option<u32>, Option<u32>),
    default: bool,
) -> Result<(), Failure> {
    let table = AccountLimits::open(&config.data_dir).map_err(Failure::failed)?;
    let current = table
        .get(account)
        .map_err(Failure::failed)?
        .unwrap_or((None, None));
    let wanted = if default {
        (None, None)
    } else {
        (new.0.or(current.0), new.1.or(current.1))
    };
    if default || new != (None, None) {
        table.set(account, wanted).map_err(Failure::failed)?;
    }
    let show = |v: Option<u32>, d: u32| match v {
        Some(0) => "unlimited".to_string(),
        Some(n) => n.to_string(),
        None if d == 0 => "unlimited (default)".to_string(),
        None => format!("{d} (default)"),
    };
    println!(
        "{account}: messages_per_hour={} recipients_per_day={}",
        show(wanted.0, config.limits.messages_per_hour),
        show(wanted.1, config.limits.recipients_per_day)
    );
    Ok(())
}

/// `Some(None)`: back to the default; `Some(Some(0))`: never; `Some(Some(secs))`.
fn retention_value(text: &str) -> Result<Option<u64>, Failure> {
    match text.trim() {
        "default" => Ok(None),
        "none" | "never" | "" => Ok(Some(0)),
        t => crate::config::parse_duration(t)
            .filter(|d| !d.is_zero())
            .map(|d| Some(d.as_secs().max(1)))
            .ok_or_else(|| {
                Failure::failed(format!("{t:?}: a duration like 30d, 12h, none or default"))
            }),
    }
}

pub fn retention(
    config: &Config,
    account: &str,
    retrieved: Option<&str>,
    any: Option<&str>,
) -> Result<(), Failure> {
    let table = store::account_retention::AccountRetention::open(&config.data_dir)
        .map_err(Failure::failed)?;
    let current = table
        .get(account)
        .map_err(Failure::failed)?
        .unwrap_or((None, None));
    let wanted = (
        retrieved
            .map(retention_value)
            .transpose()?
            .unwrap_or(current.0),
        any.map(retention_value).transpose()?.unwrap_or(current.1),
    );
    let wanted = (
        if retrieved.is_some_and(|t| t.trim() == "default") {
            None
        } else {
            wanted.0
        },
        if any.is_some_and(|t| t.trim() == "default") {
            None
        } else {
            wanted.1
        },
    );
    if retrieved.is_some() || any.is_some() {
        table.set(account, wanted).map_err(Failure::failed)?;
    }
    let policy = store::account_retention::policy(&config.pop3.retention(), wanted);
    let show = |d: Option<std::time::Duration>| {
        d.map_or("never".to_string(), |d| format!("{}s", d.as_secs()))
    };
    println!(
        "{account}: delete_retrieved_after={} delete_after={}",
        show(policy.delete_retrieved_after),
        show(policy.delete_after)
    );
    Ok(())
}
