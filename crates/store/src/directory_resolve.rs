//! The router half of the directory: what an envelope recipient means ([`Resolution`]), from
//! the accounts and aliases in SQLite. Exact account, exact alias (expanded recursively, with
//! loop and size limits), plus-address, the postmaster fallback, the catch-all alias.
//!
//! It only reads; the tables are written by the rest of [`super`].

use std::collections::HashSet;

use rusqlite::Connection;

use super::address::{parse_address, parse_lookup, Addr};
use super::{account_by_key, alias_targets, domain_exists, first_account};
use super::{Account, Directory, DirectoryError};

/// Maximum alias nesting (alias of an alias of ...) before [`Resolution::Loop`].
const MAX_ALIAS_DEPTH: usize = 10;
/// Maximum number of alias targets visited in one expansion before [`Resolution::Loop`].
const MAX_ALIAS_TARGETS: usize = 1000;

/// What an envelope recipient means (the answer of [`Directory::resolve`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resolution {
    /// The domain is not one of ours.
    NotLocal,
    /// A local domain, but no such account or alias (SMTP: 550 5.1.1, RFC 3463).
    Unknown,
    /// Deliver to these accounts and forward to these remote addresses; both deduplicated.
    Deliver {
        /// Local accounts, one entry per distinct account.
        local: Vec<Account>,
        /// Forwarding targets outside our domains, deduplicated case-insensitively.
        remote: Vec<String>,
    },
    /// Alias expansion loops, nests deeper than 10 or visits more than 1000 targets.
    Loop,
}

/// Accumulates the result of an alias expansion.
#[derive(Default)]
struct Expansion {
    local: Vec<Account>,
    local_seen: HashSet<String>,
    remote: Vec<String>,
    remote_seen: HashSet<String>,
    visited: usize,
}

impl Expansion {
    fn add_local(&mut self, key: String, account: Account) {
        if self.local_seen.insert(key) {
            self.local.push(account);
        }
    }
    fn add_remote(&mut self, address: String) {
        if self.remote_seen.insert(address.to_lowercase()) {
            self.remote.push(address);
        }
    }
    fn into_resolution(self) -> Resolution {
        if self.local.is_empty() && self.remote.is_empty() {
            Resolution::Unknown
        } else {
            Resolution::Deliver {
                local: self.local,
                remote: self.remote,
            }
        }
    }
}

/// Expands alias `key` into `out`. Returns `false` on a loop or when a limit is exceeded.
fn expand(
    conn: &Connection,
    key: &str,
    stack: &mut Vec<String>,
    out: &mut Expansion,
) -> Result<bool, DirectoryError> {
    if stack.len() >= MAX_ALIAS_DEPTH || stack.iter().any(|k| k == key) {
        return Ok(false);
    }
    stack.push(key.to_string());
    for target in alias_targets(conn, key)? {
        out.visited += 1;
        if out.visited > MAX_ALIAS_TARGETS {
            return Ok(false);
        }
        // Targets were validated when stored; skip any that no longer parse.
        let Ok(addr) = parse_address(&target) else {
            continue;
        };
        if !domain_exists(conn, &addr.domain)? {
            out.add_remote(target);
            continue;
        }
        let tkey = addr.key();
        if let Some(acc) = account_by_key(conn, &tkey)? {
            out.add_local(tkey, acc);
        } else if !alias_targets(conn, &tkey)?.is_empty() && !expand(conn, &tkey, stack, out)? {
            return Ok(false);
        }
        // A target in one of our domains that is neither account nor alias is skipped.
    }
    stack.pop();
    Ok(true)
}

/// Whether expanding alias `key` loops or exceeds the limits (for `add_alias`, inside its
/// transaction).
pub(super) fn loops(conn: &Connection, key: &str) -> Result<bool, DirectoryError> {
    Ok(matches!(resolve_exact(conn, key)?, Some(Resolution::Loop)))
}

/// Resolves an exact key: account, then alias. `None` when it is neither.
fn resolve_exact(conn: &Connection, key: &str) -> Result<Option<Resolution>, DirectoryError> {
    if let Some(acc) = account_by_key(conn, key)? {
        return Ok(Some(Resolution::Deliver {
            local: vec![acc],
            remote: Vec::new(),
        }));
    }
    if !alias_targets(conn, key)?.is_empty() {
        let mut out = Expansion::default();
        if !expand(conn, key, &mut Vec::new(), &mut out)? {
            return Ok(Some(Resolution::Loop));
        }
        return Ok(Some(out.into_resolution()));
    }
    Ok(None)
}

impl Directory {
    /// The router: what an envelope recipient means. `postmaster` is the configured full
    /// address of the account that receives mail for `postmaster@<any local domain>` when no
    /// alias says otherwise (RFC 5321 section 4.5.1 requires that mailbox to exist).
    ///
    /// Order: not a local domain; exact account; exact alias; plus-address `user+tag` ->
    /// `user`; postmaster fallback (configured account, first account of the domain, first
    /// account at all); catch-all alias `@domain`; unknown.
    pub fn resolve(
        &self,
        address: &str,
        postmaster: Option<&str>,
    ) -> Result<Resolution, DirectoryError> {
        self.resolve_with(address, postmaster, true)
    }

    /// [`Directory::resolve`] for deciding which sender addresses an account owns: the same
    /// order, but the last postmaster fallback (the first account of all, for a domain that
    /// has no account) is left out, so that account does not own `postmaster@` of domains it
    /// has nothing to do with. An explicit alias or the configured postmaster still count.
    pub fn resolve_sender(
        &self,
        address: &str,
        postmaster: Option<&str>,
    ) -> Result<Resolution, DirectoryError> {
        self.resolve_with(address, postmaster, false)
    }

    fn resolve_with(
        &self,
        address: &str,
        postmaster: Option<&str>,
        any_domain_fallback: bool,
    ) -> Result<Resolution, DirectoryError> {
        // Every address the SMTP session accepts gets an answer here, never `InvalidAddress`:
        // the syntax check is the session's own, and a local part that cannot name a mailbox
        // of ours is simply unknown in our domains (and none of our business in others).
        let a = parse_lookup(address)?;
        let conn = self.lock()?;
        if !domain_exists(&conn, &a.domain)? {
            return Ok(Resolution::NotLocal);
        }
        if !a.may_be_mailbox() {
            return Ok(Resolution::Unknown);
        }
        let key = a.key();
        if let Some(r) = resolve_exact(&conn, &key)? {
            return Ok(r);
        }
        if let Some((user, _tag)) = a.local.split_once('+') {
            if !user.is_empty() {
                let base = Addr {
                    local: user.to_string(),
                    domain: a.domain.clone(),
                };
                if let Some(r) = resolve_exact(&conn, &base.key())? {
                    return Ok(r);
                }
            }
        }
        if a.local.to_lowercase() == "postmaster" {
            let configured = match postmaster.map(parse_address) {
                Some(Ok(p)) => account_by_key(&conn, &p.key())?,
                _ => None,
            };
            let acc = match configured {
                Some(acc) => Some(acc),
                None => match first_account(&conn, Some(&a.domain))? {
                    Some(acc) => Some(acc),
                    None if any_domain_fallback => first_account(&conn, None)?,
                    None => None,
                },
            };
            if let Some(acc) = acc {
                return Ok(Resolution::Deliver {
                    local: vec![acc],
                    remote: Vec::new(),
                });
            }
        }
        let catch_all = format!("@{}", a.domain);
        if let Some(r) = resolve_exact(&conn, &catch_all)? {
            return Ok(r);
        }
        Ok(Resolution::Unknown)
    }
}
