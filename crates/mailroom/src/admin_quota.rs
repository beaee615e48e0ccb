//! Mailbox quotas from the CLI: `user add --quota`, `user quota ADDRESS [SIZE|none]`,
//! `domain quota DOMAIN SIZE|none`, and the usage and quota columns of `user list` (shown
//! only for accounts that have a quota, so the plain list stays one address per line). The
//! limits live in `store::quota::Quotas`; setting one rebuilds the Maildir's `maildirsize`
//! so its first line names the new quota.

use store::directory::Directory;
use store::quota::{self, Quotas};

use crate::config::Config;
use crate::Failure;

fn quotas(config: &Config) -> Result<Quotas, Failure> {
    Quotas::open(&config.data_dir).map_err(Failure::failed)
}

/// Usage in bytes and messages of `address`'s Maildir (0 when it has none yet).
fn usage(config: &Config, dir: &Directory, address: &str, limit: Option<u64>) -> (u64, u64) {
    match dir.account(address) {
        Ok(Some(account)) => {
            let root = store::maildir::maildir_path(&config.data_dir, &account);
            if root.join("new").is_dir() {
                quota::usage(&root, limit).unwrap_or((0, 0))
            } else {
                (0, 0)
            }
        }
        _ => (0, 0),
    }
}

fn rebuild(config: &Config, dir: &Directory, address: &str, limit: Option<u64>) {
    if let Ok(Some(account)) = dir.account(address) {
        let root = store::maildir::maildir_path(&config.data_dir, &account);
        if root.join("tmp").is_dir() {
            let _ = quota::rebuild(&root, limit);
        }
    }
}

pub fn set_user(
    config: &Config,
    dir: &Directory,
    address: &str,
    limit: Option<u64>,
) -> Result<(), Failure> {
    let q = quotas(config)?;
    q.set_account(address, limit).map_err(Failure::failed)?;
    let effective = q.of(address).map_err(Failure::failed)?;
    rebuild(config, dir, address, effective);
    Ok(())
}

pub fn user(
    config: &Config,
    dir: &Directory,
    address: &str,
    size: Option<&str>,
) -> Result<(), Failure> {
    let Some(account) = dir.account(address).map_err(Failure::failed)? else {
        return Err(Failure::failed(format!("no such account: {address}")));
    };
    if let Some(size) = size {
        let limit = quota::parse_size(size).map_err(Failure::failed)?;
        set_user(config, dir, &account.address, limit)?;
    }
    let limit = quotas(config)?
        .of(&account.address)
        .map_err(Failure::failed)?;
    let (bytes, count) = usage(config, dir, &account.address, limit);
    println!(
        "{}: usage={bytes} messages={count} quota={}",
        account.address,
        limit.map_or("none".to_string(), |l| l.to_string())
    );
    Ok(())
}

pub fn set_domain(
    config: &Config,
    dir: &Directory,
    domain: &str,
    size: &str,
) -> Result<(), Failure> {
    if !dir.is_local_domain(domain).map_err(Failure::failed)? {
        return Err(Failure::failed(format!(
            "no such domain: {}",
            domain.to_lowercase()
        )));
    }
    let limit = quota::parse_size(size).map_err(Failure::failed)?;
    let q = quotas(config)?;
    q.set_domain(domain, limit).map_err(Failure::failed)?;
    for address in dir.list_users(Some(domain)).map_err(Failure::failed)? {
        let effective = q.of(&address).map_err(Failure::failed)?;
        rebuild(config, dir, &address, effective);
    }
    Ok(())
}

pub fn list(config: &Config, dir: &Directory, users: &[String]) -> Result<(), Failure> {
    let q = quotas(config)?;
    for u in users {
        // Marked admins (`user admin ADDRESS on`) end with ` admin`.
        let admin = if dir.is_admin(u).map_err(Failure::failed)? {
            " admin"
        } else {
            ""
        };
        match q.of(u).map_err(Failure::failed)? {
            None => println!("{u}{admin}"),
            Some(limit) => {
                let (bytes, _) = usage(config, dir, u, Some(limit));
                println!("{u} usage={bytes} quota={limit}{admin}");
            }
        }
    }
    Ok(())
}
