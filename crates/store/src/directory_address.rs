//! The directory's addresses: parsing what callers hand in into a local part (case kept) and a
//! lowercase domain.
//!
//! The syntax is `proto::address::check`, the very check the SMTP session applies at MAIL and
//! RCPT, so every address a session accepts can be looked up ([`parse_lookup`]: the router
//! answers it, never `InvalidAddress`) and every address the directory accepts is one a
//! session accepts. On top of that syntax come the rules for the names of our own mailboxes
//! (accounts, aliases and alias targets, [`parse_address`]): a local part holds no `@` (a
//! quoted `"u@remote"@local` is never an account), does not start with a dot, and has no `/`,
//! control character or white space, since it may become a file name on disk. A local domain
//! is a host name, never an address literal ([`parse_domain`]).
//!
//! Not here: case folding beyond the lookup key, IDNA, anything about SMTP replies.

use proto::address::{self, AddressProblem};

use super::DirectoryError;

/// A parsed, validated address: local part as given, domain lowercase.
pub(super) struct Addr {
    pub(super) local: String,
    pub(super) domain: String,
}

impl Addr {
    pub(super) fn display(&self) -> String {
        format!("{}@{}", self.local, self.domain)
    }

    pub(super) fn key(&self) -> String {
        format!("{}@{}", self.local.to_lowercase(), self.domain)
    }

    /// Whether the local part may name one of our mailboxes (see [`parse_address`]).
    pub(super) fn may_be_mailbox(&self) -> bool {
        mailbox_rule(&self.local).is_none()
    }
}

pub(super) fn invalid(input: &str, why: &str) -> DirectoryError {
    DirectoryError::InvalidAddress(format!("{} ({why})", input.escape_debug()))
}

fn why(problem: AddressProblem) -> &'static str {
    match problem {
        AddressProblem::Syntax => "not of the form local@domain",
        AddressProblem::LocalTooLong => "local part must be 1 to 64 octets",
        AddressProblem::DomainTooLong => "domain must be 1 to 255 octets",
        AddressProblem::PathTooLong => "address longer than 254 octets",
        AddressProblem::BadCharacter => "control character or line break",
        AddressProblem::BadDomain => "bad domain name",
    }
}

/// A local domain: the address syntax's domain rule (labels of letters, digits, hyphens or
/// non-ASCII alphanumerics, at most 63 octets, no hyphen at either end, no trailing dot) and a
/// name rather than an address literal. Returned lowercase.
pub(super) fn parse_domain(input: &str, whole: &str) -> Result<String, DirectoryError> {
    if input.starts_with('[') {
        return Err(invalid(
            whole,
            "a local domain is a name, not an address literal",
        ));
    }
    address::check_domain(input).map_err(|p| invalid(whole, why(p)))?;
    Ok(input.to_lowercase())
}

/// Why a (syntactically valid, lowercase) domain cannot become one of ours, if it cannot:
/// mail for it could never reach us by DNS, or it names this machine or an address.
pub(super) fn new_domain_rule(domain: &str) -> Option<&'static str> {
    let labels: Vec<&str> = domain.split('.').collect();
    let last = labels.last().copied().unwrap_or("");
    if domain.parse::<std::net::Ipv4Addr>().is_ok() {
        Some("an IP address, not a domain name")
    } else if last == "localhost" {
        Some("reserved for this host by RFC 6761")
    } else if labels.len() < 2 {
        Some("a mail domain has at least two labels, e.g. example.com")
    } else if !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()) {
        Some("the top-level label is all digits")
    } else {
        None
    }
}

/// Why `domain` fails the domain syntax, in words for the admin (for `add_domain`).
pub(super) fn domain_syntax_why(domain: &str) -> &'static str {
    if domain.is_empty() {
        return "empty";
    }
    if domain.starts_with('[') {
        return "a local domain is a name, not an address literal";
    }
    if domain.len() > 255 {
        return "longer than 255 octets";
    }
    for label in domain.split('.') {
        if label.is_empty() {
            return "an empty label (two dots, or a dot at either end)";
        }
        if label.starts_with('-') || label.ends_with('-') {
            return "a label starts or ends with a hyphen";
        }
        if label.len() > 63 {
            return "a label longer than 63 octets";
        }
        if label.chars().any(|c| !(c == '-' || c.is_alphanumeric())) {
            return "a character other than letters, digits, hyphens and dots";
        }
    }
    "bad domain name"
}

/// An address to look up: exactly the SMTP session's syntax.
pub(super) fn parse_lookup(input: &str) -> Result<Addr, DirectoryError> {
    address::check(input).map_err(|p| invalid(input, why(p)))?;
    let (local, domain) = address::split(input).ok_or_else(|| invalid(input, "no @"))?;
    Ok(Addr {
        local: local.to_string(),
        domain: domain.to_lowercase(),
    })
}

/// An address that names a mailbox of ours or is stored as an alias target: the session's
/// syntax plus the mailbox-name rules.
pub(super) fn parse_address(input: &str) -> Result<Addr, DirectoryError> {
    let a = parse_lookup(input)?;
    match mailbox_rule(&a.local) {
        Some(why) => Err(invalid(input, why)),
        None => Ok(a),
    }
}

/// Why a local part cannot name a mailbox of ours, if it cannot.
fn mailbox_rule(local: &str) -> Option<&'static str> {
    if local.contains('@') {
        Some("more than one @")
    } else if local.starts_with('.') {
        Some("local part starts with a dot")
    } else if local
        .chars()
        .any(|c| c == '/' || c.is_control() || c.is_whitespace())
    {
        Some("bad character in local part")
    } else {
        None
    }
}

/// The key an account is looked up by for a login name (`verify_password`, `account`): the
/// whole address folded with Unicode `to_lowercase`, so every spelling that logs in as one
/// account (`Kate@`, `KATE@`, `\u{212A}ate@` with the KELVIN SIGN) gives that account's key.
/// `None` when the name is not an address and so cannot name an account.
pub fn login_key(name: &str) -> Option<String> {
    parse_address(name).ok().map(|a| a.key())
}

/// An alias name: either an address or `@domain` (catch-all). Returns (display, key, domain).
pub(super) fn parse_alias(input: &str) -> Result<(String, String, String), DirectoryError> {
    if let Some(domain) = input.strip_prefix('@') {
        let domain = parse_domain(domain, input)?;
        let name = format!("@{domain}");
        return Ok((name.clone(), name, domain));
    }
    let a = parse_address(input)?;
    Ok((a.display(), a.key(), a.domain))
}

#[cfg(test)]
#[path = "directory_address_tests.rs"]
mod tests;
