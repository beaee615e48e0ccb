//! `mailroom`: the one binary. Parses the command line, loads the configuration, and either
//! runs the server (`serve`) or performs one admin command on the directory or the queue.
//!
//! Exit codes: 0 done, 1 failed (one line `mailroom: ...` on stderr), 2 usage or bad config.

mod admin;
mod admin_dkim;
mod admin_limits;
mod admin_queue;
mod admin_quota;
mod check_config;
mod config;
mod dns_check;
mod dns_records;
mod import;
mod import_maildir;
mod local_addrs;
mod local_mail;
mod logging;
mod open_files;
mod ops;
mod pickup;
mod privilege;
mod queue_gauges;
mod retention_sweep;
mod screening;
mod sd_notify;
mod selfsigned;
mod sendmail;
mod serve;
mod terminal;
mod tls;
mod tls_admin;
mod web_admin;
mod web_face;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Mailroom: an SMTP + POP3 mail server.
#[derive(Parser, Debug)]
#[command(name = "mailroom", version, about)]
struct Cli {
    /// Configuration file (default: $MAILROOM_CONFIG, else /etc/mailroom/mailroom.toml when it
    /// exists, else the built-in defaults).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server.
    Serve,
    /// Manage the domains we receive mail for.
    #[command(subcommand)]
    Domain(admin::DomainCommand),
    /// Manage accounts (mailboxes).
    #[command(subcommand)]
    User(admin::UserCommand),
    /// Manage aliases and catch-alls.
    #[command(subcommand)]
    Alias(admin::AliasCommand),
    /// Bring accounts and aliases over from Dovecot and Postfix.
    #[command(subcommand)]
    Import(import::ImportCommand),
    /// Copy data_dir (directory, queue, Maildirs, keys) into DIR while the server runs.
    Backup { dir: PathBuf },
    /// Copy a complete backup from DIR into the empty data_dir (server stopped).
    Restore { dir: PathBuf },
    /// Inspect and manage the mail queue.
    #[command(subcommand)]
    Queue(admin::QueueCommand),
    /// Manage DKIM keys: list, rotate, activate.
    #[command(subcommand)]
    Dkim(admin_dkim::DkimCommand),
    /// Print the DNS records to publish for DOMAIN, as zone-file lines.
    DnsRecords {
        domain: String,
        /// The mail host's IPv4 address (A record; SPF names it instead of `mx`).
        #[arg(long)]
        ipv4: Option<std::net::Ipv4Addr>,
        /// The mail host's IPv6 address (AAAA record; in SPF).
        #[arg(long)]
        ipv6: Option<std::net::Ipv6Addr>,
    },
    /// Ask the configured resolver for every record dns-records prints for DOMAIN: ok,
    /// missing or different (exit 1 unless all are ok).
    DnsCheck {
        domain: String,
        /// The mail host's IPv4 address, as given to dns-records.
        #[arg(long)]
        ipv4: Option<std::net::Ipv4Addr>,
        /// The mail host's IPv6 address, as given to dns-records.
        #[arg(long)]
        ipv6: Option<std::net::Ipv6Addr>,
    },
    /// Check the configuration (and the certificate files it names), then print it as TOML
    /// with the defaults filled in.
    CheckConfig {
        /// Print only the settings that differ from the defaults (like `postconf -n`).
        #[arg(long)]
        non_default: bool,
    },
    /// Reload the TLS certificate (root-only keys: copied for the server).
    #[command(subcommand)]
    Tls(tls_admin::TlsCommand),
    /// Print the man page or shell completions (for packaging).
    #[command(hide = true)]
    Generate {
        #[arg(value_enum)]
        what: ops::Generated,
    },
    /// Send a message like sendmail(8): `[-t] [-i] [-f sender] [-F name] [rcpt...]`.
    Sendmail {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
}

/// An error that ends the program with a code and a one-line message.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    /// Exit code 1: the command could not be done.
    pub fn failed(message: impl std::fmt::Display) -> Failure {
        Failure {
            code: 1,
            message: message.to_string(),
        }
    }
}

fn main() -> ExitCode {
    // Large allocations (argon2 takes ~20 MiB per password check) go straight to mmap and back
    // to the system when freed, instead of staying cached in per-thread malloc arenas.
    // SAFETY: mallopt only tunes the allocator; called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
    // Everything Mailroom creates (directory with password hashes, spool, Maildirs, keys) is
    // private to its user.
    // SAFETY: umask has no preconditions.
    unsafe {
        libc::umask(0o077);
    }
    let cli = match ops::program_name_command() {
        Some(cli) => cli,
        None => Cli::parse(),
    };
    // `$MAILROOM_CONFIG` stands in for `--config` (the `sendmail` name takes no options).
    let path =
        (cli.config.clone()).or_else(|| std::env::var_os("MAILROOM_CONFIG").map(PathBuf::from));
    let config = match config::load(path.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("mailroom: {e}");
            return ExitCode::from(2);
        }
    };
    let admin = !matches!(
        cli.command,
        Command::Serve
            | Command::CheckConfig { .. }
            | Command::Sendmail { .. }
            | Command::Tls(_)
            | Command::Generate { .. }
    );
    if admin {
        if let Err(f) = privilege::become_service_user(&config) {
            eprintln!("mailroom: {}", f.message);
            return ExitCode::from(f.code);
        }
    }
    let result = match cli.command {
        Command::Serve => serve::run(config),
        Command::Domain(c) => admin::domain(&config, c),
        Command::User(c) => admin::user(&config, c),
        Command::Alias(c) => admin::alias(&config, c),
        Command::Queue(c) => admin::queue(&config, c),
        Command::Dkim(c) => admin_dkim::dkim(&config, c),
        Command::DnsRecords { domain, ipv4, ipv6 } => {
            dns_records::run(&config, &domain, ipv4, ipv6)
        }
        Command::DnsCheck { domain, ipv4, ipv6 } => dns_check::run(&config, &domain, ipv4, ipv6),
        Command::Import(c) => import::import(&config, c),
        Command::Backup { dir } => store::backup::backup(&config.data_dir, &dir)
            .map(|c| println!("backup complete: {} files, {} bytes", c.files, c.bytes))
            .map_err(|e| Failure::failed(format!("backup into {}: {e}", dir.display()))),
        Command::Restore { dir } => store::backup::restore(&dir, &config.data_dir)
            .map(|c| println!("restored: {} files, {} bytes", c.files, c.bytes))
            .map_err(|e| Failure::failed(format!("restore from {}: {e}", dir.display()))),
        Command::CheckConfig { non_default } => check_config::run(&config, non_default),
        Command::Sendmail { args } => sendmail::run(&config, &args),
        Command::Tls(c) => tls_admin::run(&config, c),
        Command::Generate { what } => ops::generate(what),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("mailroom: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}
