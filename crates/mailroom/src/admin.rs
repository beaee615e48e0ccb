//! The admin commands: domains, accounts, aliases and the queue. Each opens the directory or
//! spool under `data_dir` directly (SQLite and the spool are safe to use while the server
//! runs; the server sees changes at its next lookup, no restart). Passwords are read from
//! stdin or the terminal and never printed or logged.

use std::io::BufRead;

use clap::Subcommand;
use store::directory::Directory;
use store::queue_status::MessageStatus;
use store::spool::Spool;

use crate::config::Config;
use crate::terminal::safe;
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
    /// List queued messages: id, age, size, sender, and each recipient's state, attempts and
    /// last error.
    List,
    /// Show one message's envelope and headers.
    Show { id: String },
    /// Retry now: one message, or every message.
    Flush { id: Option<String> },
    /// Delete a message from the queue without delivering or bouncing it.
    Remove { id: String },
    /// Give up on a message: its pending recipients are bounced to the sender.
    Bounce { id: String },
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
        DomainCommand::Add { domain } => {
            dir.add_domain(&domain).map_err(Failure::failed)?;
            crate::admin_dkim::keys_for_new_domain(config, &domain)
        }
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

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn age(secs: u64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

fn no_such_message(id: &str, e: std::io::Error) -> Failure {
    if matches!(
        e.kind(),
        std::io::ErrorKind::NotFound | std::io::ErrorKind::InvalidInput
    ) {
        Failure::failed(format!("no such message in the queue: {id}"))
    } else {
        Failure::failed(format!("{id}: {e}"))
    }
}

/// Octets of a message `queue show` reads for its header block.
const SHOW_HEADERS: usize = 1 << 20;

pub fn queue(config: &Config, cmd: QueueCommand) -> Result<(), Failure> {
    let spool = Spool::open(&config.data_dir).map_err(Failure::failed)?;
    match cmd {
        QueueCommand::List => {
            let now = unix_now();
            let ids = spool.list().map_err(Failure::failed)?;
            for id in &ids {
                let Ok((env, message)) = spool.open_message(id) else {
                    continue;
                };
                let log = spool.log(id).unwrap_or_default();
                let status = MessageStatus::from_log(env.recipients.len(), &log);
                println!(
                    "{id}  age={}  size={}  from=<{}>",
                    age(now.saturating_sub(env.received)),
                    message.len(),
                    safe(&env.sender)
                );
                for (r, st) in env.recipients.iter().zip(&status.recipients) {
                    let next = match &st.last {
                        Some(store::outcome::Outcome::Deferred {
                            next_attempt: Some(t),
                            ..
                        }) => format!("  next: in {}", age(t.saturating_sub(now))),
                        _ => String::new(),
                    };
                    let last = match &st.last {
                        None => String::new(),
                        Some(_) => format!("  last: {}{next}", safe(&st.last_text())),
                    };
                    println!(
                        "    to=<{}>  {}  attempts={}{last}",
                        safe(r),
                        st.state.as_str(),
                        st.attempts
                    );
                }
            }
            println!("-- {} message(s) in the queue", ids.len());
            Ok(())
        }
        QueueCommand::Show { id } => {
            let (env, body) = spool
                .open_message(&id)
                .map_err(|e| no_such_message(&id, e))?;
            // The header block only: a large message is not loaded to show it.
            let message = body
                .head(SHOW_HEADERS)
                .map_err(|e| no_such_message(&id, e))?;
            println!("id: {}", env.id);
            println!(
                "received: {} ({}s ago)",
                env.received,
                unix_now().saturating_sub(env.received)
            );
            println!("sender: <{}>", safe(&env.sender));
            println!("client: {}", safe(&env.client));
            for r in &env.recipients {
                println!("recipient: <{}>", safe(r));
            }
            println!();
            // Header bytes are a stranger's: escaped so they cannot drive the terminal.
            print!("{}", crate::terminal::header_block(&message));
            Ok(())
        }
        QueueCommand::Flush { id } => {
            let ids = match id {
                Some(id) => {
                    spool
                        .open_message(&id)
                        .map_err(|e| no_such_message(&id, e))?;
                    vec![id]
                }
                None => Vec::new(),
            };
            spool.request_flush(&ids).map_err(Failure::failed)
        }
        QueueCommand::Remove { id } => spool.remove(&id).map_err(|e| no_such_message(&id, e)),
        QueueCommand::Bounce { id } => {
            spool
                .record(
                    &id,
                    &store::outcome::Entry::Mark(store::outcome::Mark::BounceRequested),
                )
                .map_err(|e| no_such_message(&id, e))?;
            spool
                .request_flush(std::slice::from_ref(&id))
                .map_err(Failure::failed)
        }
    }
}
