//! Checks on the envelope addresses that `smtp-proto` has already parsed out of MAIL and RCPT.
//!
//! RFC 5321 §4.5.3.1: local part at most 64 octets, domain at most 255, path at most 256.
//! The domain must be a host name (labels of letters, digits and hyphens; UTF-8 labels are
//! allowed for SMTPUTF8, RFC 6531) or an address literal `[...]`. No control byte (CR, LF, NUL,
//! ...) may ever reach a spool record, a log line or a header: such addresses are refused here,
//! and so are the Unicode line breaks (C1 controls such as U+0085 NEL, U+2028, U+2029) that a
//! quoted local part could otherwise carry into `Return-Path:` or a log. [`quoted`] writes an
//! address back out with its local part quoted when RFC 5321 §4.1.2 requires it, so that
//! nothing inside the brackets reads as a parameter on the relay's wire.
//! This module decides nothing about routing or relaying.

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
    // RFC 5321 §4.5.3.1.1 and §4.5.3.1.2.
    if local.len() > 64 {
        return Err(AddressProblem::LocalTooLong);
    }
    if domain.len() > 255 {
        return Err(AddressProblem::DomainTooLong);
    }
    // RFC 5321 §4.1.2: `Domain = sub-domain *("." sub-domain)`; the absolute form with a
    // trailing dot is not an address (and `u@remote.` must not read as a local user either).
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

/// RFC 5321 §4.1.2 `atext` (RFC 5322 §3.2.3), plus any non-ASCII character (RFC 6531 §3.3).
fn is_atext(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c) || !c.is_ascii()
}

/// The address as it must be written inside `<...>` on the wire or in a header: the local
/// part as a Dot-string when it is one, else as a Quoted-string with `"` and `\` escaped
/// (RFC 5321 §4.1.2). `""` (the null sender) stays empty.
pub fn quoted(address: &str) -> String {
    let Some(at) = address.rfind('@') else {
        return address.to_string();
    };
    let (local, domain) = (&address[..at], &address[at..]);
    let dot_string = !local.is_empty()
        && local
            .split('.')
            .all(|atom| !atom.is_empty() && atom.chars().all(is_atext));
    if dot_string {
        return address.to_string();
    }
    let mut out = String::with_capacity(address.len() + 4);
    out.push('"');
    for c in local.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out.push_str(domain);
    out
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

/// Escapes a client-supplied string for a header or a log line: printable ASCII stays, every
/// other byte becomes `\xNN`. Used for HELO names in `Received:` (they are not validated).
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if (0x21..0x7f).contains(&b) && b != b'\\' && b != b'(' && b != b')' {
            out.push(b as char);
        } else {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
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

    #[test]
    fn quotes_local_parts_that_are_not_dot_strings() {
        assert_eq!(quoted("alice@x.org"), "alice@x.org");
        assert_eq!(quoted("a.b+c@x.org"), "a.b+c@x.org");
        assert_eq!(quoted("用户@例子.测试"), "用户@例子.测试");
        assert_eq!(quoted(""), "");
        assert_eq!(
            quoted("a b ORCPT=rfc822;x@third"),
            "\"a b ORCPT=rfc822;x\"@third"
        );
        assert_eq!(quoted("u@remote@local"), "\"u@remote\"@local");
        assert_eq!(quoted(".a@x"), "\".a\"@x");
        assert_eq!(quoted("a..b@x"), "\"a..b\"@x");
        assert_eq!(quoted("q\"x\\y@x"), "\"q\\\"x\\\\y\"@x");
    }

    #[test]
    fn split_at_last_at() {
        assert_eq!(split("u@remote@local"), Some(("u@remote", "local")));
    }

    #[test]
    fn escape_control_bytes() {
        assert_eq!(escape("mx.example"), "mx.example");
        assert_eq!(escape("a b\r\n(c)"), "a\\x20b\\x0d\\x0a\\x28c\\x29");
    }
}
