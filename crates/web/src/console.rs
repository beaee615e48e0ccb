//! What the `/admin` and `/account` pages may ask the mail server: the [`Console`] trait,
//! implemented by `mailroom` over the directory, the queue and the same functions as its CLI
//! (so the pages and the CLI always agree), and the plain data it answers with.
//!
//! Every method is blocking (SQLite, argon2, DNS on a runtime of its own): the pages call them
//! through `tokio::task::spawn_blocking`. Errors are the CLI's one-line messages.
//!
//! Not here: sessions, HTML, HTTP.

use std::net::IpAddr;
use std::time::Duration;

/// A logged-in account, as the directory says now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Who {
    /// The address as stored (case kept).
    pub address: String,
    pub admin: bool,
}

/// The answer to a login: the account on success, and how long to make the client wait
/// first (the login guard's delay after a failure or a lockout; zero on success).
#[derive(Clone, Debug)]
pub struct LoginAnswer {
    pub who: Option<Who>,
    pub delay: Duration,
}

/// One queued message, as `mailroom queue list` shows it.
#[derive(Clone, Debug, Default)]
pub struct Queued {
    pub id: String,
    pub age: String,
    pub size: u64,
    pub sender: String,
    /// Address, state, attempts, last result.
    pub recipients: Vec<(String, String, u32, String)>,
}

/// The dashboard's numbers.
#[derive(Clone, Debug, Default)]
pub struct Dashboard {
    /// Recipients in the queue by state (`pending`, `deferred`...), and messages.
    pub queue_states: Vec<(String, u64)>,
    pub queued_messages: u64,
    /// What the counters cover: "the last hour" or "the last N minutes (since the start)".
    pub window: String,
    /// Delivery results and refusals in that window, by kind.
    pub counts: Vec<(String, u64)>,
    /// The last errors of queued recipients (`id <address>: reply`), newest first.
    pub recent_errors: Vec<String>,
}

/// The mail server as the pages see it.
pub trait Console: Send + Sync {
    /// `user`/`password` checked with the same password check and login guard as SMTP AUTH
    /// and POP3 (`ip`: the client's).
    fn login(&self, ip: IpAddr, user: &str, password: &str) -> LoginAnswer;
    /// The account `address` now (`None`: removed).
    fn who(&self, address: &str) -> Option<Who>;
    /// A new password for `address`, refused by the CLI's strength rule.
    fn change_password(&self, address: &str, password: &str) -> Result<(), String>;
    /// The aliases with `address` among their targets, with all their targets.
    fn aliases_of(&self, address: &str) -> Result<Vec<(String, Vec<String>)>, String>;

    fn dashboard(&self) -> Dashboard;

    fn domains(&self) -> Result<Vec<String>, String>;
    /// `domain add`: returns what was made (the DKIM keys), one line each.
    fn add_domain(&self, domain: &str) -> Result<Vec<String>, String>;
    fn remove_domain(&self, domain: &str) -> Result<(), String>;
    /// `dkim list DOMAIN`, one line per key.
    fn dkim_keys(&self, domain: &str) -> Result<Vec<String>, String>;
    /// `dns-records DOMAIN`, the zone-file lines.
    fn dns_records(&self, domain: &str) -> Result<Vec<String>, String>;
    /// `dns-check DOMAIN`, its report lines.
    fn dns_check(&self, domain: &str) -> Result<Vec<String>, String>;

    fn accounts(&self) -> Result<Vec<Who>, String>;
    fn add_account(&self, address: &str, password: &str, admin: bool) -> Result<(), String>;
    /// `user passwd` (the strength rule applies).
    fn set_password(&self, address: &str, password: &str) -> Result<(), String>;
    fn remove_account(&self, address: &str) -> Result<(), String>;

    fn aliases(&self) -> Result<Vec<(String, Vec<String>)>, String>;
    fn add_alias(&self, alias: &str, targets: &[String]) -> Result<(), String>;
    fn remove_alias(&self, alias: &str) -> Result<(), String>;

    fn queue(&self) -> Result<Vec<Queued>, String>;
    /// `queue show ID`: envelope and header block.
    fn queue_show(&self, id: &str) -> Result<String, String>;
    /// `queue flush [ID]` (`None`: every message).
    fn queue_flush(&self, id: Option<&str>) -> Result<(), String>;
    /// `queue remove ID`, logged as done by `by`.
    fn queue_remove(&self, id: &str, by: &str) -> Result<(), String>;
    fn queue_bounce(&self, id: &str) -> Result<(), String>;
}
