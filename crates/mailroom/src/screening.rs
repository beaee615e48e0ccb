//! Builds the receiving filters of `smtpd::filter` from `[filter]` and `[limits]`: the DNS
//! lists over the one resolver, the greylisting table under `data_dir`, the sending limits
//! with the per-account overrides (`store::account_limits`), the full-mailbox check over
//! `store::quota` (an alias is full when all its mailboxes are). Wiring only; no decision is made here.

use std::sync::Arc;

use smtpd::filter::dnsbl::Lists;
use smtpd::filter::{Filters, Limits};
use store::directory::Resolution;
use store::greylist::{Greylist, Timing};

use crate::config::Config;

/// The filters every SMTP listener shares.
pub fn build(
    config: &Config,
    dns: Arc<dns::Dns>,
    clock: Arc<dyn store::clock::Clock>,
    data_dir: &std::path::Path,
    directory: Arc<store::directory::Directory>,
) -> Result<Arc<Filters>, String> {
    let (blocklists, allowlists) = config.filter.zones().map_err(|e| e.0)?;
    let lists = (!blocklists.is_empty() || !allowlists.is_empty()).then(|| {
        tracing::info!(
            "filter: dnsbl={:?} dnswl={:?}",
            config.filter.dnsbl,
            config.filter.dnswl
        );
        Arc::new(Lists::new(
            blocklists,
            allowlists,
            dns,
            config.filter.dnsbl_timeout.get(),
        ))
    });
    let greylist = if config.filter.greylisting {
        let delay = config.filter.greylist_delay.get().as_secs();
        tracing::info!("filter: greylisting on, delay {delay}s");
        Some(Arc::new(Greylist::open(
            &config.data_dir,
            Timing::with_delay(delay),
        )?))
    } else {
        None
    };
    let mut limits = Limits::new(
        config.limits.messages_per_hour,
        config.limits.recipients_per_day,
    );
    let overrides = store::account_limits::AccountLimits::open(data_dir)?;
    limits.overrides = Some(Box::new(move |account: &str| {
        match overrides.get(account) {
            Ok(o) => o,
            Err(e) => {
                tracing::error!("filter: event=limits_lookup_failed account={account:?} error={e}");
                None
            }
        }
    }));
    let rspamd = if config.filter.rspamd_url.is_empty() {
        None
    } else {
        tracing::info!("filter: rspamd at {}", config.filter.rspamd_url);
        Some(Arc::new(config.filter.rspamd()?))
    };
    let quotas = store::quota::Quotas::open(data_dir)?;
    let (directory, data) = (directory, data_dir.to_path_buf());
    let postmaster = (!config.postmaster.is_empty()).then(|| config.postmaster.clone());
    // Full when every mailbox the address delivers to is full (an account, or an alias
    // whose targets are all local and all full); an alias with room somewhere, or with a
    // remote target, is accepted and its full copies wait in the queue (`4.2.2`).
    let mailbox_full = Box::new(move |address: &str| {
        let local = match directory.resolve(address, postmaster.as_deref()) {
            Ok(Resolution::Deliver { local, remote }) if remote.is_empty() => local,
            _ => return false,
        };
        !local.is_empty()
            && local
                .iter()
                .all(|account| match quotas.of(&account.address) {
                    Ok(Some(quota)) => {
                        store::quota::is_full(&store::maildir::maildir_path(&data, account), quota)
                    }
                    _ => false,
                })
    });
    Ok(Arc::new(Filters {
        mailbox_full: Some(mailbox_full),
        lists,
        greylist,
        limits,
        rspamd,
        clock,
    }))
}
