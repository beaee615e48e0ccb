//! The process's own limit on open files (`RLIMIT_NOFILE`), raised at start to what the
//! configured connection limits need: every connection is a descriptor, and the common soft
//! limit of 1024 would turn `smtp.max_connections = 10000` into `accept` failures (EMFILE).
//!
//! What it does: computes the need from the configuration ([`needed`]), raises the soft
//! limit up to it (never above the hard limit, never lowers it), and warns when the hard
//! limit is lower than the need. It does not raise the hard limit: that is the admin's (or
//! systemd's `LimitNOFILE=`) decision.

use crate::config::Config;

/// Descriptors beyond the connections: listeners, the directory, spool and Maildir files,
/// log, DNS sockets, relay connections' slack.
const HEADROOM: u64 = 1024;

/// Descriptors the configuration may use at once: every SMTP and POP3 connection, two per
/// delivery in progress (a relay socket and the message file), and [`HEADROOM`].
pub fn needed(config: &Config) -> u64 {
    let conns = config.smtp.max_connections as u64 + config.pop3.max_connections as u64;
    conns + 2 * config.delivery.concurrency as u64 + HEADROOM
}

/// Raises the soft `RLIMIT_NOFILE` towards `needed(config)`; logs what it did.
pub fn raise(config: &Config) {
    let need = needed(config);
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        tracing::warn!(
            "cannot read the open-file limit: {}",
            std::io::Error::last_os_error()
        );
        return;
    }
    let hard = lim.rlim_max;
    if hard != libc::RLIM_INFINITY && hard < need {
        tracing::warn!(
            "open-file hard limit {hard} is below the {need} the connection limits need (smtp.max_connections + pop3.max_connections + 2 x delivery.concurrency + {HEADROOM}); raise it (e.g. LimitNOFILE={need}) or lower the limits"
        );
    }
    if lim.rlim_cur >= need {
        return;
    }
    let target = if hard == libc::RLIM_INFINITY {
        need
    } else {
        need.min(hard)
    };
    if target <= lim.rlim_cur {
        return;
    }
    let old = lim.rlim_cur;
    lim.rlim_cur = target;
    // SAFETY: setrlimit reads the struct we pass; a soft limit at most the hard one needs
    // no privilege.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
        tracing::warn!(
            "cannot raise the open-file limit from {old} to {target}: {}",
            std::io::Error::last_os_error()
        );
    } else {
        tracing::info!("open-file limit raised from {old} to {target}");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_default_configuration_needs_room_for_every_connection() {
        let c = crate::config::parse("").unwrap();
        assert_eq!(super::needed(&c), 10_000 + 500 + 200 + 1024);
    }
}
