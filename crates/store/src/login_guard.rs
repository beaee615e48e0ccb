//! The one login guard that SMTP AUTH and POP3 both obey: failure delays and lockouts per
//! client network and per (account, client network), from the `[auth]` section of the
//! configuration.
//!
//! What it does: before a password is checked, [`LoginGuard::begin`] reserves an attempt
//! against the client's network and against the pair (account, network); a reservation counts
//! toward the limit like a failure, so at most `lockout_after_*` guesses per network and per
//! account from one network are ever checked (or in flight) within `lockout_window`, however
//! many arrive in parallel. The caller then ends the [`Attempt`] with `succeeded` (the
//! reservation is released) or `failed` (it becomes a failure, and the reply delay is
//! returned); an attempt dropped unfinished counts as a failure. A client at or over a limit is
//! [`Refused`] without a password check.
//!
//! Failures against an account from anywhere only make the failure replies slower (the delay
//! grows with them too); they never lock the account: strangers guessing from many addresses
//! must not shut its owner out (Dovecot's `auth_penalty` works the same way, per address).
//! What bounds a guesser with many addresses is the per-network limit and the argon2 checks,
//! one per CPU (`password_check`).
//!
//! Keys: IPv4 clients per address, IPv6 clients per /64 (one subscriber's prefix), an
//! IPv4-mapped IPv6 address as its IPv4 address ([`ip_key`]); accounts by the directory's own
//! fold of the login name ([`account_key`]), so every spelling that logs in as an account
//! shares its counter.
//!
//! What it does not do: check passwords, sleep or log: the protocol loops do those. Time comes
//! from the guard's [`Clock`] ([`LoginGuard::now`], the system clock unless built with
//! [`LoginGuard::with_clock`]) and is passed into each call, so tests drive it with fake times.

use std::net::{IpAddr, Ipv6Addr};
use std::time::{Duration, Instant};

use crate::clock::{Clock, SystemClock};
use crate::login_limits::{backoff, FailedLogins};

/// Longest account key (in octets) for a login name that is not an address.
const MAX_ACCOUNT_KEY: usize = 256;

/// The limits, from `[auth]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginLimits {
    /// Delay before the reply to the first recent failure; it doubles with each further one.
    pub failure_delay: Duration,
    /// Cap on the growing delay.
    pub max_failure_delay: Duration,
    /// Failures (plus attempts in flight) per client network within `lockout_window`, then
    /// that network is refused without a password check.
    pub lockout_after_per_ip: u32,
    /// Failures (plus attempts in flight) per account from one client network within
    /// `lockout_window`, then that account is refused to that network without a password
    /// check (other networks, the owner's included, are not affected).
    pub lockout_after_per_account: u32,
    /// How long a failure counts.
    pub lockout_window: Duration,
}

impl Default for LoginLimits {
    fn default() -> LoginLimits {
        LoginLimits {
            failure_delay: Duration::from_secs(1),
            max_failure_delay: Duration::from_secs(8),
            lockout_after_per_ip: 10,
            lockout_after_per_account: 10,
            lockout_window: Duration::from_secs(600),
        }
    }
}

/// Which limit refused a login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lockout {
    /// Too many recent failures from the client's network.
    Ip,
    /// Too many recent failures against the account from the client's network.
    Account,
}

/// A login refused without a password check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub lockout: Lockout,
    /// Recent failures of the key that refused.
    pub failures: u32,
    /// How long to wait before replying.
    pub delay: Duration,
}

/// A failed attempt, settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed {
    pub ip_failures: u32,
    /// Failures against the account from the client's network.
    pub account_failures: u32,
    /// Failures against the account from anywhere (they only grow the delay).
    pub account_failures_anywhere: u32,
    /// How long to wait before replying.
    pub delay: Duration,
}

/// Failed-login accounting shared by every SMTP and POP3 listener of the process.
#[derive(Debug)]
pub struct LoginGuard {
    limits: LoginLimits,
    by_ip: FailedLogins<IpAddr>,
    by_account: FailedLogins<(String, IpAddr)>,
    /// Never reserved or checked against a limit: it only grows the delay.
    by_account_anywhere: FailedLogins<String>,
    clock: std::sync::Arc<dyn Clock>,
}

/// Failures against an account from anywhere that are remembered (for the delay, which is
/// capped well before this many).
const ANYWHERE_MEMORY: u32 = 64;

/// An attempt that may check a password; end it with `succeeded` or `failed`.
#[derive(Debug)]
#[must_use = "an attempt dropped unfinished counts as a failure"]
pub struct Attempt<'g> {
    guard: &'g LoginGuard,
    ip: IpAddr,
    account: (String, IpAddr),
    done: bool,
}

impl LoginGuard {
    pub fn new(limits: LoginLimits) -> LoginGuard {
        LoginGuard::with_clock(limits, std::sync::Arc::new(SystemClock))
    }

    /// A guard reading time from `clock`.
    pub fn with_clock(limits: LoginLimits, clock: std::sync::Arc<dyn Clock>) -> LoginGuard {
        LoginGuard {
            clock,
            by_ip: FailedLogins::new(limits.lockout_after_per_ip, limits.lockout_window),
            by_account: FailedLogins::new(limits.lockout_after_per_account, limits.lockout_window),
            by_account_anywhere: FailedLogins::new(ANYWHERE_MEMORY, limits.lockout_window),
            limits,
        }
    }

    /// The guard's "now", for [`LoginGuard::begin`] and [`Attempt::failed`].
    pub fn now(&self) -> Instant {
        self.clock.instant()
    }

    pub fn limits(&self) -> &LoginLimits {
        &self.limits
    }

    fn delay(&self, failures: u32) -> Duration {
        let l = &self.limits;
        backoff(l.failure_delay, failures.max(1), l.max_failure_delay)
    }

    /// Reserves an attempt by `user` from `ip`, or refuses it (check the password only with
    /// an [`Attempt`]).
    pub fn begin(&self, ip: IpAddr, user: &str, now: Instant) -> Result<Attempt<'_>, Refused> {
        let ip = ip_key(ip);
        if let Err(n) = self.by_ip.try_reserve(&ip, now) {
            return Err(Refused {
                lockout: Lockout::Ip,
                failures: n,
                delay: self.delay(n),
            });
        }
        let account = (account_key(user), ip);
        if let Err(n) = self.by_account.try_reserve(&account, now) {
            self.by_ip.release(&ip);
            return Err(Refused {
                lockout: Lockout::Account,
                failures: n,
                delay: self.delay(n),
            });
        }
        Ok(Attempt {
            guard: self,
            ip,
            account,
            done: false,
        })
    }

    /// Recent failures from `ip`'s network (for tests and logs).
    pub fn ip_failures(&self, ip: IpAddr, now: Instant) -> u32 {
        self.by_ip.recent(&ip_key(ip), now)
    }
}

impl Attempt<'_> {
    /// The password was right: the reservation is released, nothing is counted.
    pub fn succeeded(mut self) {
        self.done = true;
        self.guard.by_ip.release(&self.ip);
        self.guard.by_account.release(&self.account);
    }

    /// The password was wrong (or the user unknown): the reservation becomes a failure.
    pub fn failed(mut self, now: Instant) -> Failed {
        self.done = true;
        self.settle(now)
    }

    fn settle(&self, now: Instant) -> Failed {
        let g = self.guard;
        let ip_failures = g.by_ip.settle_failure(&self.ip, now);
        let account_failures = g.by_account.settle_failure(&self.account, now);
        let account_failures_anywhere = g.by_account_anywhere.record_failure(&self.account.0, now);
        Failed {
            ip_failures,
            account_failures,
            account_failures_anywhere,
            delay: g.delay(
                ip_failures
                    .max(account_failures)
                    .max(account_failures_anywhere),
            ),
        }
    }
}

impl Drop for Attempt<'_> {
    fn drop(&mut self) {
        if !self.done {
            // Abandoned mid-check (the task was cancelled): count it, never let it vanish.
            self.settle(self.guard.now());
        }
    }
}

/// The key for per-client accounting: an IPv4 address as is, an IPv6 address as its /64 (the
/// prefix one subscriber gets, RFC 6177), an IPv4-mapped IPv6 address as its IPv4 address.
pub fn ip_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !(u128::MAX >> 64))),
    }
}

/// The key for per-account accounting: the directory's lookup key for the login name (see
/// [`crate::directory::login_key`]), so every spelling that logs in as one account shares a
/// counter. A name that is not an address is lowercased the same way and truncated.
pub fn account_key(user: &str) -> String {
    if let Some(key) = crate::directory::login_key(user) {
        return key;
    }
    let mut end = user.len().min(MAX_ACCOUNT_KEY);
    while !user.is_char_boundary(end) {
        end -= 1;
    }
    user[..end].to_lowercase()
}

#[cfg(test)]
#[path = "login_guard_tests.rs"]
mod tests;
