//! The admin commands: domains, accounts, aliases and the queue. Each opens the directory or
//! spool under `data_dir` directly (SQLite and the spool are safe to use while the server
//! runs; the server sees changes at its next lookup, no restart). Passwords are read from
//! stdin or the terminal and never printed or logged.

use std::io::BufRead;

use clap::Subcommand;
use store::directory::Directory;
use store::spool::Spool;

use crate::config::Config;
use crate::Failure;

#[derive(Subcommand, Debug)]
pub enum DomainCommand {
    /// Receive mail for DOMAIN.
    Add { domain: String },
    /// Stop receiving mail for DOMAIN (it must have no accounts or aliases left).
    Remove { domain: String },
    /// List our domains.
    List,
}

#[derive(Subcommand, Debug)]
pub enum UserCommand {
    /// Create an account; the password is prompted for, or read from stdin.
    Add {
        address: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Change an account's password.
    Passwd {
        address: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// Remove an account (its Maildir is left on disk).
    Remove { address: String },
    /// List accounts, all or of one domain.
    List { domain: Option<String> },
}

#[derive(Subcommand, Debug)]
pub enum AliasCommand {
    /// Deliver mail for ALIAS to each TARGET (local or remote); `@domain` is a catch-all.
    Add {
        alias: String,
        #[arg(required = true)]
        targets: Vec<String>,
    },
    /// Remove an alias.
    Remove { alias: String },
    /// List aliases.
    List,
}

#[derive(Subcommand, Debug)]
pub enum QueueCommand {
    /// List queued messages with their recipients.
    List,
}

fn open_directory(config: &Config) -> Result<Directory, Failure> {
    Directory::open(&config.data_dir).map_err(Failure::failed)
}

fn read_password(from_stdin: bool) -> Result<String, Failure> {
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

pub fn domain(config: &Config, cmd: DomainCommand) -> Result<(), Failure> {
    let dir = open_directory(config)?;
    match cmd {
        DomainCommand::Add { domain } => dir.add_domain(&domain).map_err(Failure::failed),
        DomainCommand::Remove { domain } => dir.remove_domain(&domain).map_err(Failure::failed),
        DomainCommand::List => {
            for d in dir.list_domains().map_err(Failure::failed)? {
                println!("{d}");
            }
            Ok(())
        }
    }
}

pub fn user(config: &Config, cmd: UserCommand) -> Result<(), Failure> {
    let dir = open_directory(config)?;
    match cmd {
        UserCommand::Add {
            address,
            password_stdin,
        } => {
            // Check the address and domain before asking for a password.
            if dir.account(&address).map_err(Failure::failed)?.is_some() {
                return Err(Failure::failed(format!(
                    "account already exists: {address}"
                )));
            }
            let password = read_password(password_stdin)?;
            dir.add_user(&address, &password).map_err(Failure::failed)
        }
        UserCommand::Passwd {
            address,
            password_stdin,
        } => {
            if dir.account(&address).map_err(Failure::failed)?.is_none() {
                return Err(Failure::failed(format!("no such account: {address}")));
            }
            let password = read_password(password_stdin)?;
            dir.set_password(&address, &password)
                .map_err(Failure::failed)
        }
        UserCommand::Remove { address } => dir.remove_user(&address).map_err(Failure::failed),
        UserCommand::List { domain } => {
            for u in dir.list_users(domain.as_deref()).map_err(Failure::failed)? {
                println!("{u}");
            }
            Ok(())
        }
    }
}

pub fn alias(config: &Config, cmd: AliasCommand) -> Result<(), Failure> {
    let dir = open_directory(config)?;
    match cmd {
        AliasCommand::Add { alias, targets } => {
            dir.add_alias(&alias, &targets).map_err(Failure::failed)
        }
        AliasCommand::Remove { alias } => dir.remove_alias(&alias).map_err(Failure::failed),
        AliasCommand::List => {
            for (alias, targets) in dir.list_aliases().map_err(Failure::failed)? {
                println!("{alias} -> {}", targets.join(", "));
            }
            Ok(())
        }
    }
}

pub fn queue(config: &Config, cmd: QueueCommand) -> Result<(), Failure> {
    let spool = Spool::open(&config.data_dir).map_err(Failure::failed)?;
    match cmd {
        QueueCommand::List => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            for id in spool.list().map_err(Failure::failed)? {
                let Ok((env, message)) = spool.read(&id) else {
                    continue;
                };
                println!(
                    "{id} age={}s size={} from=<{}>",
                    now.saturating_sub(env.received),
                    message.len(),
                    env.sender
                );
                for r in &env.recipients {
                    println!("    to=<{r}>");
                }
            }
            Ok(())
        }
    }
}
