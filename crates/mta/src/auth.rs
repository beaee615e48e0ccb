//! Password checks for SMTP AUTH: argon2id verification off the event loop (bounded to one per
//! CPU by `store::password_check`),
//! and brute-force limits per client IP and per account with growing delays.
//!
//! A failed attempt costs the client a delay of 1 s doubled for each recent failure from its
//! IP or against the account (capped at 8 s). Past `max_failures` within `window`, further
//! attempts from that IP or against that account are refused without checking the password
//! (same reply, same delay), so a guesser learns nothing and burns no CPU. Memory is bounded:
//! the counters are `store::login_limits` (shared with POP3), bounded in keys and timestamps. Every failure is
//! logged with IP and account, never the password.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use store::directory::Directory;
use store::login_limits::{account_key, backoff, FailedLogins};

/// Checks credentials for the SMTP listeners.
pub struct LoginGuard {
    directory: Arc<Directory>,
    by_ip: FailedLogins<IpAddr>,
    by_account: FailedLogins<String>,
    /// Base delay unit (1 s in production; tests may shorten it).
    pub delay_unit: Duration,
}

impl LoginGuard {
    /// At most `max_failures` failures per `window`, per IP and per account.
    pub fn new(directory: Arc<Directory>, max_failures: u32, window: Duration) -> LoginGuard {
        LoginGuard {
            directory,
            by_ip: FailedLogins::new(max_failures, window),
            by_account: FailedLogins::new(max_failures, window),
            delay_unit: Duration::from_secs(1),
        }
    }

    /// The account's canonical address when `user`/`password` are right.
    pub async fn check(&self, ip: IpAddr, user: &str, password: &str) -> Option<String> {
        let account = account_key(user);
        let delay = |n: u32| backoff(self.delay_unit, n, self.delay_unit * 8);
        if self.by_ip.is_blocked(&ip) || self.by_account.is_blocked(&account) {
            tracing::warn!(
                "auth: refused user={:?} ip={ip}: too many recent failures",
                proto::smtp::address::escape(user)
            );
            tokio::time::sleep(delay(4)).await;
            return None;
        }
        // argon2 runs on a blocking thread; the directory allows one check per CPU at a time.
        let directory = self.directory.clone();
        let (u, p) = (user.to_string(), password.to_string());
        let verdict = tokio::task::spawn_blocking(move || directory.verify_password(&u, &p))
            .await
            .ok();
        match verdict {
            Some(Ok(Some(found))) => {
                tracing::info!("auth: ok user={} ip={ip}", found.address);
                Some(found.address)
            }
            other => {
                if let Some(Err(e)) = &other {
                    tracing::error!("auth: directory error: {e}");
                }
                let n = self
                    .by_ip
                    .record_failure(&ip)
                    .max(self.by_account.record_failure(&account));
                tracing::warn!(
                    "auth: failed user={:?} ip={ip} recent_failures={n}",
                    proto::smtp::address::escape(user)
                );
                tokio::time::sleep(delay(n)).await;
                None
            }
        }
    }
}
