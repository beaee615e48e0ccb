//! The admin commands for domains, accounts and aliases (the queue's are in `admin_queue`).
//! Each opens the directory under `data_dir` directly (SQLite is safe to use while the server
//! runs; the server sees changes at its next lookup, no restart). Passwords are read from
//! stdin or the terminal, checked against weak choices, and never printed or logged.

use std::io::BufRead;

use clap::Subcommand;
use store::directory::Directory;

use crate::config::Config;
use crate::Failure;

pub use crate::admin_queue::{queue, QueueCommand};

#[derive(Subcommand, Debug)]
pub enum DomainCommand {
    /// Receive mail for DOMAIN.
    Add {
        /// A name like `-bad.com` is taken as the domain (and refused with its reason), not as
        /// an option.
        #[arg(allow_hyphen_values = true)]
        domain: String,
    },
    /// Stop receiving mail for DOMAIN (it must have no accounts or aliases left).
    Remove { domain: String },
    /// List our domains.
    List,
    /// Set the default mailbox quota of DOMAIN's accounts (`1G`, `none`).
    Quota { domain: String, size: String },
}

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Create an account; the password is prompted for, or read from stdin.
    Add {
        address: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        /// Accept a password shorter than 10 characters, equal to the address or blank.
        #[arg(long)]
        allow_weak: bool,
        /// The mailbox quota: `2G`, `500M`, `100K`, bytes, or `none` (the domain's).
        #[arg(long)]
        quota: Option<String>,
        /// Let the account use the web face's /admin pages.
        #[arg(long)]
        admin: bool,
    },
    /// Let an account use the web face's /admin pages (`on`) or not (`off`).
    Admin {
        address: String,
        #[arg(value_parser = ["on", "off"])]
        state: String,
    },
    /// Change an account's password.
    Passwd {
        address: String,
        #[arg(long)]
        password_stdin: bool,
        #[arg(long)]
        allow_weak: bool,
    },
    /// Remove an account (its Maildir is left on disk).
    Remove { address: String },
    /// List accounts, all or of one domain.
    List { domain: Option<String> },
    /// Set an account's mailbox quota (`2G`, `500M`, `none`: the domain's, if any); a full
    /// mailbox gets `452 4.2.2` at RCPT. Without SIZE, show usage and quota.
    Quota {
        address: String,
        size: Option<String>,
    },
    /// Override the POP3 retention of an account (`[pop3]`): durations like `30d`, `none`
    /// (never for this account) or `default`; without an option, show them.
    Retention {
        address: String,
        #[arg(long)]
        delete_retrieved_after: Option<String>,
        #[arg(long)]
        delete_after: Option<String>,
    },
    /// Override an account's sending limits (`[limits]`; 0: no limit); without an option,
    /// show them.
    Limits {
        address: String,
        #[arg(long)]
        messages_per_hour: Option<u32>,
        #[arg(long)]
        recipients_per_day: Option<u32>,
        /// Back to the `[limits]` defaults.
        #[arg(long, conflicts_with_all = ["messages_per_hour", "recipients_per_day"])]
        default: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum AliasCommand {
    /// Deliver mail for ALIAS to each TARGET (local or remote); `@domain` is a catch-all.
    Add {
        alias: String,
        #[arg(required = true)]
        targets: Vec<String>,
    },
    /// Remove an alias, or only its TARGET (the alias goes with its last target).
    Remove {
        alias: String,
        target: Option<String>,
    },
    /// List aliases.
    List,
}

pub fn open_directory(config: &Config) -> Result<Directory, Failure> {
    Directory::open(&config.data_dir)
        .map(|d| d.with_argon2(config.auth.argon2()))
        .map_err(Failure::failed)
}

/// Shortest password accepted without `--allow-weak`.
const MIN_PASSWORD_CHARS: usize = 10;

fn read_password(from_stdin: bool) -> Result<String, Failure> {
    if !from_stdin && !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
        return Err(Failure::failed(
            "standard input is not a terminal: to pipe the password in, use --password-stdin",
        ));
    }
    let password = if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| Failure::failed(format!("cannot read password: {e}")))?;
        line.trim_end_matches(['\r', '\n']).to_string()
    } else {
        let first = rpassword::prompt_password("Password: ")
            .map_err(|e| Failure::failed(format!("cannot read password: {e}")))?;
        let again = rpassword::prompt_password("Password again: ")
            .map_err(|e| Failure::failed(format!("cannot read password: {e}")))?;
        if first != again {
            return Err(Failure::failed("passwords do not match"));
        }
        first
    };
    if password.is_empty() {
        return Err(Failure::failed("empty password"));
    }
    Ok(password)
}

/// Why `password` is too weak for `address`, if it is.
fn weakness(address: &str, password: &str) -> Option<&'static str> {
    let p = password.to_lowercase();
    let local = address.split('@').next().unwrap_or("").to_lowercase();
    if password.trim().is_empty() {
        Some("it is blank")
    } else if p == address.to_lowercase() || p == local {
        Some("it is the address")
    } else if password.chars().count() < MIN_PASSWORD_CHARS {
        Some("it is shorter than 10 characters")
    } else {
        None
    }
}

fn new_password(address: &str, from_stdin: bool, allow_weak: bool) -> Result<String, Failure> {
    let password = read_password(from_stdin)?;
    match weakness(address, &password) {
        Some(why) if !allow_weak => Err(Failure::failed(format!(
            "password refused: {why} (use --allow-weak to set it anyway)"
        ))),
        _ => Ok(password),
    }
}

/// Why `password` is refused for `address` by the rule of `user password` (the web face's
/// too; it has no `--allow-weak`).
pub fn password_refusal(address: &str, password: &str) -> Option<String> {
    weakness(address, password).map(|why| format!("password refused: {why}"))
}

/// `domain add`: the domain, then its first DKIM keys (returned).
pub fn add_domain(
    config: &Config,
    dir: &Directory,
    domain: &str,
) -> Result<Vec<store::dkim_keys::KeyInfo>, Failure> {
    dir.add_domain(domain).map_err(Failure::failed)?;
    crate::admin_dkim::make_keys_for_new_domain(config, domain)
}

/// What `user add` checks before asking for a password: no such account yet, a local domain.
pub fn check_new_account(dir: &Directory, address: &str) -> Result<(), Failure> {
    if dir.account(address).map_err(Failure::failed)?.is_some() {
        return Err(Failure::failed(format!(
            "account already exists: {address}"
        )));
    }
    let domain = address.rsplit_once('@').map(|(_, d)| d).unwrap_or("");
    if !dir.is_local_domain(domain).unwrap_or(false) {
        return Err(Failure::failed(format!(
            "no such domain: {}",
            domain.to_lowercase()
        )));
    }
    Ok(())
}

/// `user add` once the password is known (and checked): the account, its quota, its flag.
pub fn create_account(
    config: &Config,
    dir: &Directory,
    address: &str,
    password: &str,
    quota: Option<Option<u64>>,
    admin: bool,
) -> Result<(), Failure> {
    dir.add_user(address, password).map_err(Failure::failed)?;
    if admin {
        dir.set_admin(address, true).map_err(Failure::failed)?;
    }
    match quota {
        Some(q) => crate::admin_quota::set_user(config, dir, address, q),
        None => Ok(()),
    }
}

/// `user passwd` once the password is known (and checked).
pub fn change_password(dir: &Directory, address: &str, password: &str) -> Result<(), Failure> {
    if dir.account(address).map_err(Failure::failed)?.is_none() {
        return Err(Failure::failed(format!("no such account: {address}")));
    }
    dir.set_password(address, password).map_err(Failure::failed)
}

pub fn domain(config: &Config, cmd: DomainCommand) -> Result<(), Failure> {
    let dir = open_directory(config)?;
    match cmd {
        DomainCommand::Add { domain } => {
            let made = add_domain(config, &dir, &domain)?;
            crate::admin_dkim::print_made(&made);
            Ok(())
        }
        DomainCommand::Remove { domain } => dir.remove_domain(&domain).map_err(Failure::failed),
        DomainCommand::List => {
            for d in dir.list_domains().map_err(Failure::failed)? {
                println!("{d}");
            }
            Ok(())
        }
        DomainCommand::Quota { domain, size } => {
            crate::admin_quota::set_domain(config, &dir, &domain, &size)
        }
    }
}

pub fn user(config: &Config, cmd: UserCommand) -> Result<(), Failure> {
    let dir = open_directory(config)?;
    match cmd {
        UserCommand::Add {
            address,
            password_stdin,
            allow_weak,
            quota,
            admin,
        } => {
            let quota = quota
                .map(|q| store::quota::parse_size(&q).map_err(Failure::failed))
                .transpose()?;
            // Check the address and domain before asking for a password.
            check_new_account(&dir, &address)?;
            let password = new_password(&address, password_stdin, allow_weak)?;
            create_account(config, &dir, &address, &password, quota, admin)
        }
        UserCommand::Admin { address, state } => dir
            .set_admin(&address, state == "on")
            .map_err(Failure::failed),
        UserCommand::Passwd {
            address,
            password_stdin,
            allow_weak,
        } => {
            if dir.account(&address).map_err(Failure::failed)?.is_none() {
                return Err(Failure::failed(format!("no such account: {address}")));
            }
            let password = new_password(&address, password_stdin, allow_weak)?;
            change_password(&dir, &address, &password)
        }
        UserCommand::Remove { address } => dir.remove_user(&address).map_err(Failure::failed),
        UserCommand::List { domain } => {
            let users = dir.list_users(domain.as_deref()).map_err(Failure::failed)?;
            crate::admin_quota::list(config, &dir, &users)
        }
        UserCommand::Retention {
            address,
            delete_retrieved_after,
            delete_after,
        } => {
            let Some(account) = dir.account(&address).map_err(Failure::failed)? else {
                return Err(Failure::failed(format!("no such account: {address}")));
            };
            crate::admin_limits::retention(
                config,
                &account.address,
                delete_retrieved_after.as_deref(),
                delete_after.as_deref(),
            )
        }
        UserCommand::Quota { address, size } => {
            crate::admin_quota::user(config, &dir, &address, size.as_deref())
        }
        UserCommand::Limits {
            address,
            messages_per_hour,
            recipients_per_day,
            default,
        } => {
            let account = dir.account(&address).map_err(Failure::failed)?;
            let Some(account) = account else {
                return Err(Failure::failed(format!("no such account: {address}")));
            };
            crate::admin_limits::limits(
                config,
                &account.address,
                (messages_per_hour, recipients_per_day),
                default,
            )
        }
    }
}

pub fn alias(config: &Config, cmd: AliasCommand) -> Result<(), Failure> {
    let dir = open_directory(config)?;
    match cmd {
        AliasCommand::Add { alias, targets } => {
            dir.add_alias(&alias, &targets).map_err(Failure::failed)
        }
        AliasCommand::Remove { alias, target } => match target {
            Some(t) => dir.remove_alias_target(&alias, &t),
            None => dir.remove_alias(&alias),
        }
        .map_err(Failure::failed),
        AliasCommand::List => {
            for (alias, targets) in dir.list_aliases().map_err(Failure::failed)? {
                println!("{alias} -> {}", targets.join(", "));
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_passwords() {
        let a = "Alice@example.test";
        assert_eq!(weakness(a, "          "), Some("it is blank"));
        assert_eq!(weakness(a, "alice@EXAMPLE.test"), Some("it is the address"));
        assert_eq!(weakness(a, "alice"), Some("it is the address"));
        assert_eq!(
            weakness(a, "short-pw1"),
            Some("it is shorter than 10 characters")
        );
        assert_eq!(weakness(a, "correct horse"), None);
        assert_eq!(weakness(a, "pässwörter!"), None);
    }
}
