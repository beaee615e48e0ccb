//! `mailroom import`: bringing accounts and aliases over from Dovecot and Postfix.
//!
//! - `dovecot-passwd FILE [--domain D]`: a Dovecot passwd-file (`user:{SCHEME}hash:uid:gid:
//!   gecos:home:shell:extra`). Hashes are kept as they are (SHA512-CRYPT, SHA256-CRYPT,
//!   BLF-CRYPT, ARGON2ID/I, CRYPT; PLAIN is hashed now) and rehashed to argon2id at the
//!   account's next successful login (`store::password_hash`). A user without `@` gets
//!   `--domain`. Existing accounts are left alone.
//! - `postfix-virtual FILE`: a Postfix `virtual_alias_maps` source file (`pattern targets`,
//!   `#` comments, continuation lines). `user@domain` and `@domain` patterns become aliases;
//!   a bare domain on the left (Postfix's "virtual alias domain" line) and targets that are
//!   local Unix names are reported and skipped.
//!
//! - `maildir ADDRESS DIR`: see `import_maildir` (Dovecot's UIDLs kept).
//!
//! Every line is imported, skipped (already there) or refused with its line number and reason;
//! the exit status is 1 when any line was refused. Domains must exist first (`domain add`).

use clap::Subcommand;
use store::directory::{Directory, DirectoryError};

use crate::config::Config;
use crate::terminal::safe;
use crate::Failure;

#[derive(Subcommand, Debug)]
pub enum ImportCommand {
    /// Accounts from a Dovecot passwd-file, keeping their password hashes.
    DovecotPasswd {
        file: std::path::PathBuf,
        /// Domain for user names without `@`.
        #[arg(long)]
        domain: Option<String>,
    },
    /// Aliases from a Postfix virtual alias map source file.
    PostfixVirtual { file: std::path::PathBuf },
    /// Messages of a Maildir Dovecot served, into ADDRESS's Maildir, keeping Dovecot's UIDLs.
    Maildir {
        address: String,
        dir: std::path::PathBuf,
    },
}

#[derive(Default)]
struct Tally {
    imported: usize,
    skipped: usize,
    refused: usize,
}

impl Tally {
    fn refuse(&mut self, line: usize, what: &str, why: impl std::fmt::Display) {
        self.refused += 1;
        eprintln!("line {line}: {}: refused: {why}", safe(what));
    }

    fn finish(self, what: &str) -> Result<(), Failure> {
        println!(
            "{what}: imported {}, skipped {} (already there), refused {}",
            self.imported, self.skipped, self.refused
        );
        if self.refused > 0 {
            return Err(Failure::failed(format!(
                "{} line(s) refused (see above)",
                self.refused
            )));
        }
        Ok(())
    }
}

pub fn import(config: &Config, cmd: ImportCommand) -> Result<(), Failure> {
    let dir = Directory::open(&config.data_dir).map_err(Failure::failed)?;
    match cmd {
        ImportCommand::DovecotPasswd { file, domain } => {
            let text = read(&file)?;
            dovecot_passwd(&dir, &text, domain.as_deref()).finish("accounts")
        }
        ImportCommand::PostfixVirtual { file } => {
            let text = read(&file)?;
            postfix_virtual(&dir, &text).finish("aliases")
        }
        ImportCommand::Maildir {
            address,
            dir: source,
        } => crate::import_maildir::run(config, &address, &source),
    }
}

fn read(file: &std::path::Path) -> Result<String, Failure> {
    std::fs::read_to_string(file)
        .map_err(|e| Failure::failed(format!("cannot read {}: {e}", file.display())))
}

fn dovecot_passwd(dir: &Directory, text: &str, domain: Option<&str>) -> Tally {
    let mut t = Tally::default();
    for (n, line) in text.lines().enumerate().map(|(i, l)| (i + 1, l.trim_end())) {
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let mut fields = line.splitn(3, ':');
        let (user, field) = (fields.next().unwrap_or(""), fields.next().unwrap_or(""));
        let address = match (user.contains('@'), domain) {
            (true, _) => user.to_string(),
            (false, Some(d)) => format!("{user}@{d}"),
            (false, None) => {
                t.refuse(n, user, "no domain in the user name: give --domain");
                continue;
            }
        };
        let stored = match store::password_hash::from_dovecot(field) {
            Ok(h) => h,
            Err(why) => {
                t.refuse(n, &address, why);
                continue;
            }
        };
        match dir.import_user(&address, &stored) {
            Ok(()) => t.imported += 1,
            Err(DirectoryError::AccountExists(_)) => t.skipped += 1,
            Err(e) => t.refuse(n, &address, e),
        }
    }
    t
}

/// `(line number, pattern, targets)` of a virtual map, continuation lines joined.
fn virtual_entries(text: &str) -> Vec<(usize, String, Vec<String>)> {
    let mut out: Vec<(usize, String, Vec<String>)> = Vec::new();
    for (n, raw) in text.lines().enumerate().map(|(i, l)| (i + 1, l)) {
        let line = raw.split('#').next().unwrap_or("");
        if line.trim().is_empty() {
            continue;
        }
        let words = line
            .split(|c: char| c == ',' || c.is_whitespace())
            .filter(|w| !w.is_empty())
            .map(str::to_string);
        match out.last_mut() {
            Some(last) if raw.starts_with([' ', '\t']) => last.2.extend(words),
            _ => {
                let mut words = words;
                let pattern = words.next().unwrap_or_default();
                out.push((n, pattern, words.collect()));
            }
        }
    }
    out
}

fn postfix_virtual(dir: &Directory, text: &str) -> Tally {
    let mut t = Tally::default();
    let mut todo = Vec::new();
    for (n, pattern, targets) in virtual_entries(text) {
        if !pattern.contains('@') {
            println!(
                "line {n}: {}: skipped: a virtual alias domain line; add the domain with `domain add`",
                safe(&pattern)
            );
            continue;
        }
        if let Some(local) = targets.iter().find(|t| !t.contains('@')) {
            t.refuse(
                n,
                &pattern,
                format!(
                    "target {} is a local Unix name, not an address",
                    safe(local)
                ),
            );
            continue;
        }
        if targets.is_empty() {
            t.refuse(n, &pattern, "no target");
            continue;
        }
        todo.push((n, pattern, targets));
    }
    // An alias may name another alias further down: retry those until nothing moves.
    loop {
        let mut later = Vec::new();
        let before = todo.len();
        for (n, pattern, targets) in todo {
            match dir.add_alias(&pattern, &targets) {
                Ok(()) => t.imported += 1,
                Err(DirectoryError::UnknownTarget(_)) => later.push((n, pattern, targets)),
                Err(DirectoryError::AccountExists(_)) => t.skipped += 1,
                Err(e) => t.refuse(n, &pattern, e),
            }
        }
        if later.is_empty() || later.len() == before {
            for (n, pattern, targets) in later {
                if let Err(e) = dir.add_alias(&pattern, &targets) {
                    t.refuse(n, &pattern, e);
                }
            }
            return t;
        }
        todo = later;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtual_map_lines() {
        let e = virtual_entries(
            "# comment\nexample.com  anything\ninfo@example.com  a@example.com,\n  b@example.com  # trailing\n@example.com catch@example.com\n",
        );
        assert_eq!(e.len(), 3);
        assert_eq!(e[1].0, 3);
        assert_eq!(e[1].2, ["a@example.com", "b@example.com"]);
        assert_eq!(e[2].1, "@example.com");
    }
}
