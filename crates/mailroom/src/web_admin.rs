//! The [`web::Console`] of `serve`: what the `/admin` and `/account` pages do, through the
//! same functions as the CLI (`admin`, `admin_queue`, `admin_dkim`, `dns_records`,
//! `dns_check`), so both always agree. Logins go through the process's one
//! `store::login_guard::LoginGuard` and the directory's password check, like SMTP AUTH and
//! POP3: failures there and here count together.
//!
//! The dashboard's "last hour" comes from the metrics registry's counters, sampled once a
//! minute ([`Tally`]); before the server has run an hour it says how many minutes it covers.
//!
//! Not here: HTTP, HTML, sessions (the `web` crate).

use std::collections::VecDeque;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use store::directory::Directory;
use store::login_guard::LoginGuard;
use store::spool::Spool;
use web::console::{Dashboard, LoginAnswer, Queued, Who};

use crate::config::Config;
use crate::Failure;

/// The pages' access to the server.
pub struct WebConsole {
    config: Config,
    directory: Arc<Directory>,
    guard: Arc<LoginGuard>,
    tally: Arc<Tally>,
}

fn text(f: Failure) -> String {
    f.message
}

impl WebConsole {
    /// Must be called inside the runtime: it starts the counters' sampler.
    pub fn new(config: Config, directory: Arc<Directory>, guard: Arc<LoginGuard>) -> WebConsole {
        let tally = Arc::new(Tally::default());
        tally.sample(Instant::now());
        let sampler = tally.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(SAMPLE_EVERY);
            every.tick().await;
            loop {
                every.tick().await;
                sampler.sample(Instant::now());
            }
        });
        WebConsole {
            config,
            directory,
            guard,
            tally,
        }
    }

    fn spool(&self) -> Result<Spool, String> {
        Spool::open(&self.config.data_dir).map_err(|e| format!("queue: {e}"))
    }

    fn new_password_ok(address: &str, password: &str) -> Result<(), String> {
        match crate::admin::password_refusal(address, password) {
            Some(why) => Err(why),
            None => Ok(()),
        }
    }
}

impl web::Console for WebConsole {
    fn login(&self, ip: IpAddr, user: &str, password: &str) -> LoginAnswer {
        let client = store::login_guard::ip_key(ip);
        let user_shown = crate::terminal::safe(user);
        let attempt = match self.guard.begin(ip, user, self.guard.now()) {
            Ok(a) => a,
            Err(refused) => {
                tracing::warn!(%client, user = %user_shown, "http: login refused: too many recent failures");
                return LoginAnswer {
                    who: None,
                    delay: refused.delay,
                };
            }
        };
        match self.directory.verify_password(user, password) {
            Ok(Some(account)) => {
                attempt.succeeded();
                let admin = self.directory.is_admin(&account.address).unwrap_or(false);
                LoginAnswer {
                    who: Some(Who {
                        address: account.address,
                        admin,
                    }),
                    delay: Duration::ZERO,
                }
            }
            other => {
                if let Err(e) = &other {
                    tracing::error!("http: directory error: {e}");
                }
                let failed = attempt.failed(self.guard.now());
                metrics::global()
                    .login_failures
                    .get_or_create(&metrics::ProtocolLabel { protocol: "http" })
                    .inc();
                let n = failed.ip_failures.max(failed.account_failures);
                tracing::warn!(%client, user = %user_shown, recent_failures = n, "http: login failed");
                LoginAnswer {
                    who: None,
                    delay: failed.delay,
                }
            }
        }
    }

    fn who(&self, address: &str) -> Option<Who> {
        let account = self.directory.account(address).ok()??;
        let admin = self.directory.is_admin(&account.address).ok()?;
        Some(Who {
            address: account.address,
            admin,
        })
    }

    fn change_password(&self, address: &str, password: &str) -> Result<(), String> {
        Self::new_password_ok(address, password)?;
        crate::admin::change_password(&self.directory, address, password).map_err(text)
    }

    fn aliases_of(&self, address: &str) -> Result<Vec<(String, Vec<String>)>, String> {
        let all = self.directory.list_aliases().map_err(|e| e.to_string())?;
        Ok(all
            .into_iter()
            .filter(|(_, targets)| targets.iter().any(|t| t.eq_ignore_ascii_case(address)))
            .collect())
    }

    fn dashboard(&self) -> Dashboard {
        let mut d = Dashboard::default();
        let (window, counts) = self.tally.last_hour(Instant::now());
        d.window = window;
        d.counts = counts;
        let Ok(spool) = self.spool() else {
            return d;
        };
        let Ok(mut queued) = crate::admin_queue::queued(&spool) else {
            return d;
        };
        d.queued_messages = queued.len() as u64;
        let mut states: Vec<(String, u64)> = Vec::new();
        queued.sort_by_key(|(env, _, _)| std::cmp::Reverse(env.received));
        for (env, _, status) in &queued {
            for (r, st) in env.recipients.iter().zip(&status.recipients) {
                let state = st.state.as_str();
                match states.iter_mut().find(|(s, _)| s == state) {
                    Some((_, n)) => *n += 1,
                    None => states.push((state.to_string(), 1)),
                }
                let last = st.last_text();
                if !last.is_empty() && d.recent_errors.len() < RECENT_ERRORS {
                    d.recent_errors.push(format!("{} <{r}>: {last}", env.id));
                }
            }
        }
        d.queue_states = states;
        d
    }

    fn domains(&self) -> Result<Vec<String>, String> {
        self.directory.list_domains().map_err(|e| e.to_string())
    }

    fn add_domain(&self, domain: &str) -> Result<Vec<String>, String> {
        let made = crate::admin::add_domain(&self.config, &self.directory, domain).map_err(text)?;
        Ok(made.iter().map(crate::admin_dkim::made_line).collect())
    }

    fn remove_domain(&self, domain: &str) -> Result<(), String> {
        self.directory
            .remove_domain(domain)
            .map_err(|e| e.to_string())
    }

    fn dkim_keys(&self, domain: &str) -> Result<Vec<String>, String> {
        let keys = crate::admin_dkim::open_keys(&self.config).map_err(text)?;
        let list = keys.list(Some(domain)).map_err(|e| e.to_string())?;
        Ok(list.iter().map(crate::admin_dkim::list_line).collect())
    }

    fn dns_records(&self, domain: &str) -> Result<Vec<String>, String> {
        crate::dns_records::zone(&self.config, domain, None, None).map_err(text)
    }

    fn dns_check(&self, domain: &str) -> Result<Vec<String>, String> {
        let checked = crate::dns_check::check(&self.config, domain, None, None).map_err(text)?;
        Ok(checked
            .iter()
            .map(|(e, status)| crate::dns_check::line(e, status))
            .collect())
    }

    fn accounts(&self) -> Result<Vec<Who>, String> {
        let users = self.directory.list_users(None).map_err(|e| e.to_string())?;
        Ok(users
            .into_iter()
            .map(|address| Who {
                admin: self.directory.is_admin(&address).unwrap_or(false),
                address,
            })
            .collect())
    }

    fn add_account(&self, address: &str, password: &str, admin: bool) -> Result<(), String> {
        crate::admin::check_new_account(&self.directory, address).map_err(text)?;
        Self::new_password_ok(address, password)?;
        crate::admin::create_account(
            &self.config,
            &self.directory,
            address,
            password,
            None,
            admin,
        )
        .map_err(text)
    }

    fn set_password(&self, address: &str, password: &str) -> Result<(), String> {
        Self::new_password_ok(address, password)?;
        crate::admin::change_password(&self.directory, address, password).map_err(text)
    }

    fn remove_account(&self, address: &str) -> Result<(), String> {
        self.directory
            .remove_user(address)
            .map_err(|e| e.to_string())
    }

    fn aliases(&self) -> Result<Vec<(String, Vec<String>)>, String> {
        self.directory.list_aliases().map_err(|e| e.to_string())
    }

    fn add_alias(&self, alias: &str, targets: &[String]) -> Result<(), String> {
        self.directory
            .add_alias(alias, targets)
            .map_err(|e| e.to_string())
    }

    fn remove_alias(&self, alias: &str) -> Result<(), String> {
        self.directory
            .remove_alias(alias)
            .map_err(|e| e.to_string())
    }

    fn queue(&self) -> Result<Vec<Queued>, String> {
        let spool = self.spool()?;
        let now = crate::admin_queue::unix_now();
        let queued = crate::admin_queue::queued(&spool).map_err(text)?;
        Ok(queued
            .into_iter()
            .map(|(env, size, status)| Queued {
                age: crate::admin_queue::age(now.saturating_sub(env.received)),
                size,
                recipients: env
                    .recipients
                    .iter()
                    .zip(&status.recipients)
                    .map(|(r, st)| {
                        (
                            r.clone(),
                            st.state.as_str().to_string(),
                            st.attempts,
                            st.last_text(),
                        )
                    })
                    .collect(),
                sender: env.sender,
                id: env.id,
            })
            .collect())
    }

    fn queue_show(&self, id: &str) -> Result<String, String> {
        crate::admin_queue::show_head(&self.spool()?, id).map_err(text)
    }

    fn queue_flush(&self, id: Option<&str>) -> Result<(), String> {
        crate::admin_queue::flush(&self.spool()?, id.map(str::to_string), None).map_err(text)
    }

    fn queue_remove(&self, id: &str, by: &str) -> Result<(), String> {
        crate::admin_queue::remove(&self.spool()?, id, by).map_err(text)
    }

    fn queue_bounce(&self, id: &str) -> Result<(), String> {
        crate::admin_queue::bounce(&self.spool()?, id).map_err(text)
    }
}

/// Queued recipients' last errors on the dashboard.
const RECENT_ERRORS: usize = 20;
const SAMPLE_EVERY: Duration = Duration::from_secs(60);
const HOUR: Duration = Duration::from_secs(3600);

/// The kinds counted on the dashboard: delivery results (`sent`, `deferred`, `bounced`,
/// `expired`, local and remote together) and refusals by reply class (every stage).
const KINDS: [&str; 6] = [
    "deliveries sent",
    "deliveries deferred",
    "deliveries bounced",
    "deliveries expired",
    "refusals 4xx",
    "refusals 5xx",
];

/// Samples of the counters of [`KINDS`], one a minute, an hour's worth kept.
#[derive(Default)]
pub struct Tally {
    samples: Mutex<VecDeque<(Instant, [u64; 6])>>,
}

fn counters() -> [u64; 6] {
    let m = metrics::global();
    let delivered = |result: &'static str| -> u64 {
        ["local", "remote"]
            .iter()
            .filter_map(|via| {
                m.deliveries
                    .get(&metrics::DeliveryLabels { result, via })
                    .map(|c| c.get())
            })
            .sum()
    };
    let refused = |class: &'static str| -> u64 {
        ["MAIL", "RCPT", "DATA", "BDAT", "END-OF-MESSAGE", "AUTH"]
            .iter()
            .filter_map(|stage| {
                m.messages_refused
                    .get(&metrics::RefusalLabels { stage, class })
                    .map(|c| c.get())
            })
            .sum()
    };
    [
        delivered("sent"),
        delivered("deferred"),
        delivered("bounced"),
        delivered("expired"),
        refused("4xx"),
        refused("5xx"),
    ]
}

impl Tally {
    fn samples(&self) -> std::sync::MutexGuard<'_, VecDeque<(Instant, [u64; 6])>> {
        self.samples.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn sample(&self, now: Instant) {
        self.record(now, counters());
    }

    fn record(&self, now: Instant, values: [u64; 6]) {
        let mut s = self.samples();
        s.push_back((now, values));
        // Keep the newest sample at least an hour old as the baseline.
        while s.len() > 1
            && s.get(1)
                .is_some_and(|(t, _)| now.duration_since(*t) >= HOUR)
        {
            s.pop_front();
        }
    }

    /// What the window covers, and each kind's count in it.
    pub fn last_hour(&self, now: Instant) -> (String, Vec<(String, u64)>) {
        self.window(now, counters())
    }

    fn window(&self, now: Instant, current: [u64; 6]) -> (String, Vec<(String, u64)>) {
        let s = self.samples();
        let (since, base) = s
            .iter()
            .find(|(t, _)| now.duration_since(*t) <= HOUR)
            .or(s.front())
            .copied()
            .unwrap_or((now, [0; 6]));
        let covered = now.duration_since(since);
        let window = if covered >= HOUR - SAMPLE_EVERY {
            "the last hour".to_string()
        } else {
            format!(
                "the last {} minutes (since the start)",
                covered.as_secs() / 60
            )
        };
        let counts = KINDS
            .iter()
            .zip(current.iter().zip(base))
            .map(|(k, (c, b))| (k.to_string(), c.saturating_sub(b)))
            .collect();
        (window, counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_covers_the_last_hour_of_samples() {
        let t = Tally::default();
        let t0 = Instant::now();
        t.record(t0, [0; 6]);
        let (w, c) = t.window(t0 + Duration::from_secs(600), [5, 0, 0, 0, 1, 2]);
        assert_eq!(w, "the last 10 minutes (since the start)");
        assert_eq!(c[0], ("deliveries sent".into(), 5));
        assert_eq!(c[5], ("refusals 5xx".into(), 2));
        for m in 1..=90u64 {
            t.record(t0 + Duration::from_secs(60 * m), [m, 0, 0, 0, 0, 0]);
        }
        let (w, c) = t.window(t0 + Duration::from_secs(90 * 60), [100, 0, 0, 0, 0, 0]);
        assert_eq!(w, "the last hour");
        // The baseline is the sample of minute 30: 100 - 30.
        assert_eq!(c[0].1, 70);
        assert!(t.samples().len() <= 62);
    }
}
