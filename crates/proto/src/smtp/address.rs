//! Envelope addresses on the SMTP side: the syntax check itself is [`crate::address`] (shared
//! with the directory) and is re-exported here; this module adds what only SMTP needs.
//! [`quoted`] writes an address back out with its local part quoted when RFC 5321 §4.1.2
//! requires it, so that nothing inside the brackets reads as a parameter on the relay's wire;
//! [`escape`] makes client-supplied text safe for a header or a log line.
//! This module decides nothing about routing or relaying.

pub use crate::address::{check, check_domain, split, valid_domain, AddressProblem};

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
    fn escape_control_bytes() {
        assert_eq!(escape("mx.example"), "mx.example");
        assert_eq!(escape("a b\r\n(c)"), "a\\x20b\\x0d\\x0a\\x28c\\x29");
    }
}
