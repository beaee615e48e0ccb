//! The one syntax check for mail addresses (RFC 5321 §4.1.2, §4.5.3.1; RFC 6531 for UTF-8),
//! used by the SMTP session at MAIL and RCPT and by the directory for every address it stores
//! or looks up, so that what one accepts the other can look up.
//!
//! An address is split at its last `@` (a quoted local part, already unquoted by the command
//! parser, may itself hold `@`). Local part at most 64 octets, domain at most 255, path at most
//! 256 with its brackets. The domain is a host name (labels of at most 63 letters, digits and
//! hyphens, no hyphen at either end, non-ASCII alphanumerics allowed for SMTPUTF8) or an
//! address literal `[192.0.2.1]` / `[IPv6:...]`; no trailing dot. No control byte (CR, LF,
//! NUL, DEL, ...) and no Unicode line break (C1 controls such as U+0085 NEL, U+2028, U+2029)
//! may ever reach a spool record, a log line or a header: such addresses are refused here.
//!
//! Not here: SMTP replies (`smtp::session`), quoting and escaping for the wire and for logs
//! (`smtp::address`), case folding, and what may name a mailbox on disk (the directory's
//! rules in `store`).

/// Why an address was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressProblem {
    /// No `@`, empty local part or empty domain.
    Syntax,
    /// Local part over 64 octets.
    LocalTooLong,
    /// Domain over 255 octets.
    DomainTooLong,
    /// Whole path over 256 octets.
    PathTooLong,
    /// A control byte or a byte that cannot appear in an address.
    BadCharacter,
    /// The domain is not a valid host name or address literal.
    BadDomain,
}

/// Splits at the last `@` (a quoted local part may itself hold `@`).
pub fn split(address: &str) -> Option<(&str, &str)> {
    let at = address.rfind('@')?;
    let (local, domain) = (&address[..at], &address[at + 1..]);
    if local.is_empty() || domain.is_empty() {
        return None;
    }
    Some((local, domain))
}

/// Validates a non-empty envelope address.
pub fn check(address: &str) -> Result<(), AddressProblem> {
    // RFC 5321 §4.5.3.1.3: a path (with its angle brackets) is at most 256 octets.
    if address.len() + 2 > 256 {
        return Err(AddressProblem::PathTooLong);
    }
    if address.bytes().any(|b| b < 0x20 || b == 0x7f) || address.chars().any(is_unicode_break) {
        return Err(AddressProblem::BadCharacter);
    }
    let (local, domain) = split(address).ok_or(AddressProblem::Syntax)?;
    // RFC 5321 §4.5.3.1.1.
    if local.len() > 64 {
        return Err(AddressProblem::LocalTooLong);
    }
    check_domain(domain)
}

/// Validates the domain of an address: at most 255 octets (RFC 5321 §4.5.3.1.2), a host name
/// or an address literal ([`valid_domain`]), and no trailing dot: RFC 5321 §4.1.2 `Domain =
/// sub-domain *("." sub-domain)`, so the absolute form is not an address (and `u@remote.` must
/// not read as a local user either).
pub fn check_domain(domain: &str) -> Result<(), AddressProblem> {
    if domain.len() > 255 {
        return Err(AddressProblem::DomainTooLong);
    }
    if !valid_domain(domain) || domain.ends_with('.') {
        return Err(AddressProblem::BadDomain);
    }
    Ok(())
}

/// C1 control characters (U+0080 to U+009F, NEL among them) and the Unicode line and
/// paragraph separators: line ends to some readers, so never part of an address.
fn is_unicode_break(c: char) -> bool {
    ('\u{80}'..='\u{9f}').contains(&c) || c == '\u{2028}' || c == '\u{2029}'
}

/// A host name (letters, digits, hyphens, UTF-8; no empty label, no label starting or ending
/// with a hyphen) or an address literal in brackets.
pub fn valid_domain(domain: &str) -> bool {
    if let Some(inner) = domain.strip_prefix('[') {
        return match inner.strip_suffix(']') {
            Some(lit) => {
                lit.parse::<std::net::Ipv4Addr>().is_ok()
                    || lit
                        .strip_prefix("IPv6:")
                        .is_some_and(|v6| v6.parse::<std::net::Ipv6Addr>().is_ok())
            }
            None => false,
        };
    }
    let domain = domain.strip_suffix('.').unwrap_or(domain);
    !domain.is_empty()
        && domain.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| {
                    c.is_ascii_alphanumeric() || c == '-' || (!c.is_ascii() && c.is_alphanumeric())
                })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_normal_addresses() {
        assert_eq!(check("alice@example.org"), Ok(()));
        assert_eq!(check("a.b+tag@sub.example.org"), Ok(()));
        assert_eq!(check("用户@例子.测试"), Ok(()));
        assert_eq!(check("x@[127.0.0.1]"), Ok(()));
        assert_eq!(check("x@[IPv6:::1]"), Ok(()));
    }

    #[test]
    fn refuses_bad_addresses() {
        assert_eq!(check("noat"), Err(AddressProblem::Syntax));
        assert_eq!(check("@example.org"), Err(AddressProblem::Syntax));
        assert_eq!(check("a@"), Err(AddressProblem::Syntax));
        let long_local = format!("{}@x.org", "a".repeat(65));
        assert_eq!(check(&long_local), Err(AddressProblem::LocalTooLong));
        let long_path = format!("a@{}.org", "b.".repeat(127));
        assert_eq!(check(&long_path), Err(AddressProblem::PathTooLong));
        assert_eq!(check("a\r\nb@x.org"), Err(AddressProblem::BadCharacter));
        assert_eq!(check("a\0b@x.org"), Err(AddressProblem::BadCharacter));
        assert_eq!(check("a@-x.org"), Err(AddressProblem::BadDomain));
        assert_eq!(check("a@x..org"), Err(AddressProblem::BadDomain));
        assert_eq!(check("a@x;rm -rf.org"), Err(AddressProblem::BadDomain));
        assert_eq!(check("a@[1.2.3]"), Err(AddressProblem::BadDomain));
        assert_eq!(check("a@remote.test."), Err(AddressProblem::BadDomain));
    }

    #[test]
    fn refuses_unicode_line_breaks() {
        for c in ['\u{85}', '\u{2028}', '\u{2029}', '\u{9b}'] {
            assert_eq!(
                check(&format!("a{c}b@x.org")),
                Err(AddressProblem::BadCharacter),
                "{c:?}"
            );
        }
        assert_eq!(check("Grüße@x.org"), Ok(()));
    }

    /// The cases the SMTP session and the directory used to judge differently.
    #[test]
    fn cases_the_session_and_the_directory_disagreed_on() {
        let label63 = format!("a@{}.example", "l".repeat(63));
        let label64 = format!("a@{}.example", "l".repeat(64));
        let path254 = format!("a@{}xy", "x.".repeat(125));
        let path255 = format!("a@{}xyz", "x.".repeat(125));
        let table: &[(&str, Result<(), AddressProblem>)] = &[
            (&label63, Ok(())),
            (&label64, Err(AddressProblem::BadDomain)),
            ("a@-x.example", Err(AddressProblem::BadDomain)),
            ("a@x-.example", Err(AddressProblem::BadDomain)),
            ("a@x.example-", Err(AddressProblem::BadDomain)),
            ("a@x-y.example", Ok(())),
            ("a@x.example.", Err(AddressProblem::BadDomain)),
            ("a@.", Err(AddressProblem::BadDomain)),
            ("a@[192.0.2.1]", Ok(())),
            ("a@[IPv6:2001:db8::1]", Ok(())),
            ("a@[2001:db8::1]", Err(AddressProblem::BadDomain)),
            ("a@[192.0.2.256]", Err(AddressProblem::BadDomain)),
            ("a@192.0.2.1]", Err(AddressProblem::BadDomain)),
            ("Jürgen@bücher.example", Ok(())),
            ("用户@例子.测试", Ok(())),
            ("a@bü_cher.example", Err(AddressProblem::BadDomain)),
            ("a@b\u{2028}.example", Err(AddressProblem::BadCharacter)),
            ("a\u{85}@x.example", Err(AddressProblem::BadCharacter)),
            (&path254, Ok(())),
            (&path255, Err(AddressProblem::PathTooLong)),
        ];
        for (address, want) in table {
            assert_eq!(check(address), *want, "{address:?}");
        }
    }

    #[test]
    fn domains() {
        assert_eq!(check_domain("example.org"), Ok(()));
        assert_eq!(check_domain("[127.0.0.1]"), Ok(()));
        assert_eq!(check_domain("example.org."), Err(AddressProblem::BadDomain));
        assert_eq!(check_domain(""), Err(AddressProblem::BadDomain));
        let long = ["abcdefghi"; 26].join(".");
        assert_eq!(check_domain(&long), Err(AddressProblem::DomainTooLong));
        // A host name (the configured hostname) may be written absolute.
        assert!(valid_domain("mx.example.org."));
    }

    #[test]
    fn split_at_last_at() {
        assert_eq!(split("u@remote@local"), Some(("u@remote", "local")));
    }
}
