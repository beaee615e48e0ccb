//! Pure SASL helpers shared by POP3 AUTH (RFC 5034) and, later, SMTP AUTH (RFC 4954).
//!
//! What it does: decodes the base64 client responses of the PLAIN mechanism (RFC 4616) into
//! credentials, and decodes single base64 response lines (as used by the LOGIN mechanism),
//! recognising the `*` cancellation response.
//!
//! What it does not do: check passwords, keep any state between lines, or perform I/O. The
//! caller owns the conversation (`+ ` challenges, cancellation replies) and the password check.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use std::fmt;

/// Maximum length in characters of one base64 client response line accepted here.
///
/// RFC 4616 §2 requires servers to accept authcid, authzid and passwd of up to 255 octets each;
/// 3 * 255 + 2 NULs encode to 1024 base64 characters, so 4096 leaves ample room while bounding
/// what an unauthenticated client can make us decode.
pub const MAX_RESPONSE_LEN: usize = 4096;

/// Credentials decoded from a SASL PLAIN response (RFC 4616).
#[derive(Clone, PartialEq, Eq)]
pub struct PlainCredentials {
    /// Authentication identity: the account whose password is checked.
    pub authcid: String,
    /// The password, as sent.
    pub password: String,
}

// Never print the password, even in debug logs.
impl fmt::Debug for PlainCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PlainCredentials")
            .field("authcid", &self.authcid)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Why a SASL client response was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslError {
    /// The client sent `*`, cancelling the exchange (RFC 4422 §3.5, RFC 5034 §4).
    Cancelled,
    /// The response is longer than [`MAX_RESPONSE_LEN`].
    TooLong,
    /// The response is not valid base64 (RFC 4648 §4, padding required).
    BadBase64,
    /// The decoded PLAIN message does not have the form `authzid NUL authcid NUL passwd`.
    Malformed,
    /// A PLAIN field is not valid UTF-8 (RFC 4616 §2 requires UTF-8).
    NotUtf8,
    /// The authentication identity is empty.
    EmptyAuthcid,
    /// The authorization identity is non-empty and differs from the authentication identity;
    /// we do not support acting as another user (the maddy CVE-2023-27582 class of bug is to
    /// authenticate one user and then act as the authzid).
    AuthzidMismatch,
}

impl fmt::Display for SaslError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            SaslError::Cancelled => "authentication cancelled",
            SaslError::TooLong => "response too long",
            SaslError::BadBase64 => "invalid base64",
            SaslError::Malformed => "malformed PLAIN response",
            SaslError::NotUtf8 => "credentials are not UTF-8",
            SaslError::EmptyAuthcid => "empty authentication identity",
            SaslError::AuthzidMismatch => "authorization identity differs from user",
        };
        f.write_str(s)
    }
}

impl std::error::Error for SaslError {}

/// Decodes one base64 client response line (without its CRLF), e.g. for the LOGIN mechanism.
///
/// `*` is the client cancelling the exchange and yields [`SaslError::Cancelled`]
/// (RFC 4422 §3.5). An empty line is an empty response and decodes to an empty vector.
pub fn decode_base64_line(s: &str) -> Result<Vec<u8>, SaslError> {
    if s == "*" {
        return Err(SaslError::Cancelled);
    }
    if s.len() > MAX_RESPONSE_LEN {
        return Err(SaslError::TooLong);
    }
    STANDARD.decode(s).map_err(|_| SaslError::BadBase64)
}

/// Decodes a base64 SASL PLAIN response: `[authzid] NUL authcid NUL passwd` (RFC 4616 §2).
///
/// Rejects cancellation (`*`), over-long input, bad base64, a wrong number of NULs, non-UTF-8
/// fields, an empty authcid or password, and a non-empty authzid that differs from the authcid.
pub fn decode_plain(b64: &str) -> Result<PlainCredentials, SaslError> {
    let raw = decode_base64_line(b64)?;
    let mut parts = raw.split(|&b| b == 0);
    let (Some(authzid), Some(authcid), Some(passwd), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SaslError::Malformed);
    };
    let authzid = std::str::from_utf8(authzid).map_err(|_| SaslError::NotUtf8)?;
    let authcid = std::str::from_utf8(authcid).map_err(|_| SaslError::NotUtf8)?;
    let passwd = std::str::from_utf8(passwd).map_err(|_| SaslError::NotUtf8)?;
    if authcid.is_empty() {
        return Err(SaslError::EmptyAuthcid);
    }
    // RFC 4616 §2: passwd = 1*SAFE.
    if passwd.is_empty() {
        return Err(SaslError::Malformed);
    }
    // RFC 4616 §2: the server must verify the authcid may act as authzid; we only allow itself.
    if !authzid.is_empty() && authzid != authcid {
        return Err(SaslError::AuthzidMismatch);
    }
    Ok(PlainCredentials {
        authcid: authcid.to_owned(),
        password: passwd.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(raw: &[u8]) -> String {
        STANDARD.encode(raw)
    }

    #[test]
    fn plain_without_authzid() {
        let c = decode_plain(&b64(b"\0alice\0secret pw")).unwrap();
        assert_eq!(c.authcid, "alice");
        assert_eq!(c.password, "secret pw");
    }

    #[test]
    fn plain_with_same_authzid() {
        let c = decode_plain(&b64(b"alice\0alice\0pw")).unwrap();
        assert_eq!(c.authcid, "alice");
    }

    #[test]
    fn plain_rejects_other_authzid() {
        assert_eq!(
            decode_plain(&b64(b"bob\0alice\0pw")),
            Err(SaslError::AuthzidMismatch)
        );
    }

    #[test]
    fn plain_rejects_malformed() {
        assert_eq!(decode_plain(&b64(b"alice\0pw")), Err(SaslError::Malformed));
        assert_eq!(decode_plain(&b64(b"alicepw")), Err(SaslError::Malformed));
        assert_eq!(decode_plain(&b64(b"\0a\0b\0c")), Err(SaslError::Malformed));
        assert_eq!(decode_plain(&b64(b"\0alice\0")), Err(SaslError::Malformed));
        assert_eq!(decode_plain(""), Err(SaslError::Malformed));
        assert_eq!(decode_plain(&b64(b"\0\0pw")), Err(SaslError::EmptyAuthcid));
        assert_eq!(
            decode_plain(&b64(b"\0al\xffce\0pw")),
            Err(SaslError::NotUtf8)
        );
    }

    #[test]
    fn plain_rejects_bad_base64_and_long_input() {
        assert_eq!(decode_plain("not base64!"), Err(SaslError::BadBase64));
        assert_eq!(
            decode_plain("AGFsaWNlAHB3"),
            Ok(PlainCredentials {
                authcid: "alice".into(),
                password: "pw".into()
            })
        );
        assert_eq!(decode_plain("AGFsaWNlAHB"), Err(SaslError::BadBase64));
        let long = "A".repeat(MAX_RESPONSE_LEN + 4);
        assert_eq!(decode_plain(&long), Err(SaslError::TooLong));
    }

    #[test]
    fn cancellation() {
        assert_eq!(decode_plain("*"), Err(SaslError::Cancelled));
        assert_eq!(decode_base64_line("*"), Err(SaslError::Cancelled));
    }

    #[test]
    fn base64_line() {
        assert_eq!(decode_base64_line("YWxpY2U=").unwrap(), b"alice");
        assert_eq!(decode_base64_line("").unwrap(), b"");
        assert_eq!(decode_base64_line("YWxpY2U"), Err(SaslError::BadBase64));
    }

    #[test]
    fn debug_redacts_password() {
        let c = decode_plain(&b64(b"\0alice\0hunter2")).unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
