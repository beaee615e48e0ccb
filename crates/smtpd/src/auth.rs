//! Password checks for SMTP AUTH: argon2id verification off the event loop (bounded to one per
//! CPU by `store::password_check`) under the process's one `store::login_guard::LoginGuard`,
//! which POP3 obeys too.
//!
//! Each attempt is reserved with the guard before the password is checked, so parallel
//! guesses count at once. A failed attempt costs the client the guard's growing delay
//! (`[auth] failure_delay`, doubling per recent failure from its network or against the
//! account, up to `max_failure_delay`). Past the lockout limits, attempts from that network or
//! against that account are refused without checking the password (same reply, a delay too),
//! so a guesser learns nothing and burns no CPU. Every failure is logged with IP and account,
//! never the password.

use std::net::IpAddr;
use std::sync::Arc;

use store::directory::Directory;
use store::login_guard::LoginGuard;

/// Checks credentials for the SMTP listeners.
pub struct SmtpAuth {
    directory: Arc<Directory>,
    guard: Arc<LoginGuard>,
}

impl SmtpAuth {
    /// Checks passwords in `directory` under the shared `guard`.
    pub fn new(directory: Arc<Directory>, guard: Arc<LoginGuard>) -> SmtpAuth {
        SmtpAuth { directory, guard }
    }

    /// The account's canonical address when `user`/`password` are right.
    pub async fn check(&self, ip: IpAddr, user: &str, password: &str) -> Option<String> {
        let attempt = match self.guard.begin(ip, user, self.guard.now()) {
            Ok(a) => a,
            Err(refused) => {
                let lockout = match refused.lockout {
                    store::login_guard::Lockout::Ip => "address",
                    store::login_guard::Lockout::Account => "account",
                };
                tracing::warn!(
                    client = %crate::listener::client(ip),
                    sasl_username = %proto::smtp::address::escape(user),
                    lockout,
                    "auth: refused: too many recent failures"
                );
                tokio::time::sleep(refused.delay).await;
                return None;
            }
        };
        // argon2 runs on a blocking thread; the directory allows one check per CPU at a time.
        let directory = self.directory.clone();
        let (u, p) = (user.to_string(), password.to_string());
        let verdict = tokio::task::spawn_blocking(move || directory.verify_password(&u, &p))
            .await
            .ok();
        match verdict {
            Some(Ok(Some(found))) => {
                attempt.succeeded();
                tracing::info!(client = %crate::listener::client(ip), sasl_username = %found.address, "auth: ok");
                Some(found.address)
            }
            other => {
                if let Some(Err(e)) = &other {
                    tracing::error!("auth: directory error: {e}");
                }
                let failed = attempt.failed(self.guard.now());
                metrics::global()
                    .login_failures
                    .get_or_create(&metrics::ProtocolLabel { protocol: "smtp" })
                    .inc();
                let n = failed.ip_failures.max(failed.account_failures);
                tracing::warn!(
                    client = %crate::listener::client(ip),
                    sasl_username = %proto::smtp::address::escape(user),
                    recent_failures = n,
                    "auth: failed"
                );
                tokio::time::sleep(failed.delay).await;
                None
            }
        }
    }
}
