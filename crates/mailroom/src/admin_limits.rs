//! `mailroom user limits ADDRESS [--messages-per-hour N] [--recipients-per-day M]
//! [--default]`: an account's override of the `[limits]` sending limits, kept by
//! `store::account_limits`; the running server reads it at the account's next MAIL/RCPT.
//! An option not given keeps its current value; without any, the limits are shown.

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
