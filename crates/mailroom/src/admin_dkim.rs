//! The DKIM admin commands: `dkim generate|list|rotate|activate`, and the keys `domain add`
//! makes. Keys are made by `dkim::keygen` and kept by `store::dkim_keys`; the server reads the
//! active ones at each message, so a change here needs no restart. Nothing secret is printed.

use clap::Subcommand;
use store::dkim_keys::{DkimKeys, KeyInfo, KeyState};

use crate::config::Config;
use crate::Failure;

#[derive(Subcommand, Debug)]
pub enum DkimCommand {
    /// Make DOMAIN's first Ed25519 and RSA keys (signing at once) if it has none.
    Generate { domain: String },
    /// Show every key: domain, selector, algorithm, created, state.
    List { domain: Option<String> },
    /// Make a new key pair for DOMAIN, published (shown by dns-records) but not signing yet.
    Rotate { domain: String },
    /// Sign DOMAIN's mail with the pair of SELECTOR from now on; the pair signing before is
    /// retired (listed by dns-records for a week more).
    Activate { domain: String, selector: String },
}

pub fn unix_now() -> u64 {
    use store::clock::Clock as _;
    store::clock::SystemClock.unix()
}

pub fn open_keys(config: &Config) -> Result<DkimKeys, Failure> {
    DkimKeys::open(&config.data_dir).map_err(Failure::failed)
}

/// The domain must be one of ours (keys of strangers' domains would sign nothing).
fn check_local(config: &Config, domain: &str) -> Result<String, Failure> {
    let dir = store::directory::Directory::open(&config.data_dir).map_err(Failure::failed)?;
    let d = domain.to_ascii_lowercase();
    if !dir.is_local_domain(&d).map_err(Failure::failed)? {
        return Err(Failure::failed(format!("no such domain: {domain}")));
    }
    Ok(d)
}

pub fn print_made(keys: &[KeyInfo]) {
    for k in keys {
        println!("{}", made_line(k));
    }
}

/// The line `domain add` and `dkim generate|rotate` print for a key they made.
pub fn made_line(k: &KeyInfo) -> String {
    format!(
        "{}: DKIM key {} ({}) {}",
        k.domain,
        k.selector,
        k.algorithm.as_str(),
        k.state.as_str()
    )
}

/// What `domain add` does after adding the domain: the keys made.
pub fn make_keys_for_new_domain(config: &Config, domain: &str) -> Result<Vec<KeyInfo>, Failure> {
    let keys = open_keys(config)?;
    dkim::keygen::ensure(&keys, &domain.to_ascii_lowercase(), unix_now()).map_err(Failure::failed)
}

/// `2026-11-29 15:04`, UTC.
fn date(unix: u64) -> String {
    let date = proto::smtp::received::rfc5322_date(unix as i64);
    // "Sun, 29 Nov 2026 15:04:05 +0000" -> keep it readable and sortable enough.
    date.get(5..22).unwrap_or(&date).to_string()
}

/// One line of `dkim list`.
pub fn list_line(k: &KeyInfo) -> String {
    let retired = match (k.state, k.retired_at) {
        (KeyState::Retired, Some(t)) => format!("  retired-at {}", date(t)),
        _ => String::new(),
    };
    format!(
        "{}  {}  {}  created {}  {}{retired}",
        k.domain,
        k.selector,
        k.algorithm.as_str(),
        date(k.created),
        k.state.as_str()
    )
}

pub fn dkim(config: &Config, cmd: DkimCommand) -> Result<(), Failure> {
    match cmd {
        DkimCommand::Generate { domain } => {
            let domain = check_local(config, &domain)?;
            let keys = open_keys(config)?;
            let made = dkim::keygen::ensure(&keys, &domain, unix_now()).map_err(Failure::failed)?;
            if made.is_empty() {
                println!("{domain}: has DKIM keys already (see `mailroom dkim rotate`)");
            }
            print_made(&made);
            Ok(())
        }
        DkimCommand::List { domain } => {
            let keys = open_keys(config)?;
            let list = keys.list(domain.as_deref()).map_err(Failure::failed)?;
            for k in list {
                println!("{}", list_line(&k));
            }
            Ok(())
        }
        DkimCommand::Rotate { domain } => {
            let domain = check_local(config, &domain)?;
            let keys = open_keys(config)?;
            let made = dkim::keygen::rotate(&keys, &domain, unix_now()).map_err(Failure::failed)?;
            print_made(&made);
            if made.iter().any(|k| k.state == KeyState::Published) {
                println!(
                    "publish them (mailroom dns-records {domain}), wait for the DNS TTL, then: mailroom dkim activate {domain} {}",
                    made[0].selector
                );
            }
            Ok(())
        }
        DkimCommand::Activate { domain, selector } => {
            let domain = check_local(config, &domain)?;
            let keys = open_keys(config)?;
            keys.activate(&domain, &selector, unix_now())
                .map_err(Failure::failed)?;
            for k in keys.signing(&domain).map_err(Failure::failed)? {
                println!(
                    "{}: signing with {} ({})",
                    k.domain,
                    k.selector,
                    k.algorithm.as_str()
                );
            }
            Ok(())
        }
    }
}
