//! STARTTLS (RFC 3207) and AUTH (RFC 4954) for the SMTP session: which service offers what,
//! what a finished TLS handshake resets, the PLAIN (RFC 4616) and LOGIN exchanges, and their
//! reply codes.
//!
//! AUTH is offered only on the submission services and only over TLS; port 25 never offers
//! it. Credentials are decoded here and handed to the network loop
//! ([`Action::Authenticate`]); checking them, delays and lockouts are the loop's business.
//! Passwords are never put in a reply or a log line.

use super::{reply, Hello, Sasl, Session};
use crate::sasl::{self, SaslError};
use crate::smtp::reply::Reply;
use crate::smtp::types::{Action, Service, TlsInfo};

// RFC 4954 §4: base64 "Username:" and "Password:" prompts used by the LOGIN mechanism.
const LOGIN_USER_PROMPT: &str = "VXNlcm5hbWU6";
const LOGIN_PASSWORD_PROMPT: &str = "UGFzc3dvcmQ6";

impl Session {
    /// The TLS handshake finished (STARTTLS, or before the greeting on port 465). RFC 3207
    /// §4.2: everything learnt before is forgotten; the client starts again with EHLO.
    pub fn tls_started(&mut self, info: TlsInfo) {
        self.tls = Some(info);
        self.hello = Hello::None;
        self.helo_name.clear();
        self.tx = None;
        self.user = None;
        self.sasl = None;
        self.pending_chunk = None;
    }

    /// STARTTLS is advertised: a certificate is loaded, TLS is not active yet, and the
    /// service is not implicit TLS.
    pub(super) fn starttls_offered(&self) -> bool {
        self.config.tls_available
            && self.tls.is_none()
            && self.config.service != Service::Submissions
    }

    /// AUTH is advertised: a submission service over TLS, not yet authenticated.
    pub(super) fn auth_offered(&self) -> bool {
        self.config.service.is_submission() && self.tls.is_some() && self.user.is_none()
    }

    pub(super) fn starttls(&mut self) -> Action {
        if self.tls.is_some() {
            return reply(503, "5.5.1 Error: TLS already active");
        }
        if !self.starttls_offered() {
            return reply(502, "5.5.1 Error: STARTTLS not available");
        }
        Action::StartTls(Reply::new(220, "2.0.0 Ready to start TLS"))
    }

    pub(super) fn auth(&mut self, mechanism: u64, initial: &str) -> Action {
        if !self.config.service.is_submission() {
            return reply(502, "5.5.1 Error: AUTH not available on this service");
        }
        if self.tls.is_none() {
            return reply(530, "5.7.0 Must issue a STARTTLS command first");
        }
        if !self.said_hello() {
            return reply(503, "5.5.1 Error: send EHLO first");
        }
        if self.user.is_some() {
            return reply(503, "5.5.1 Error: already authenticated");
        }
        if self.tx.is_some() {
            return reply(
                503,
                "5.5.1 Error: AUTH not allowed during a mail transaction",
            );
        }
        match mechanism {
            smtp_proto::AUTH_PLAIN => {
                if initial.is_empty() {
                    self.sasl = Some(Sasl::Plain);
                    return reply(334, "");
                }
                // RFC 4954 §4: "=" is an empty initial response.
                let initial = if initial == "=" { "" } else { initial };
                self.plain_response(initial)
            }
            smtp_proto::AUTH_LOGIN => {
                if initial.is_empty() {
                    self.sasl = Some(Sasl::LoginUser);
                    return reply(334, LOGIN_USER_PROMPT);
                }
                self.login_user(initial)
            }
            _ => reply(504, "5.5.4 Unrecognized authentication type"),
        }
    }

    /// A line received while an AUTH exchange is in progress.
    pub(super) fn sasl_line(&mut self, line: &[u8]) -> Action {
        let text = match std::str::from_utf8(line) {
            Ok(t) => t.trim_end_matches(['\r', '\n']),
            Err(_) => {
                self.sasl = None;
                return reply(501, "5.5.2 Invalid base64 data");
            }
        };
        match self.sasl.take() {
            Some(Sasl::Plain) => self.plain_response(text),
            Some(Sasl::LoginUser) => self.login_user(text),
            Some(Sasl::LoginPassword(user)) => match sasl::decode_base64_line(text) {
                Ok(bytes) => match String::from_utf8(bytes) {
                    Ok(password) => self.check(user, password),
                    Err(_) => reply(501, "5.5.2 Invalid password encoding"),
                },
                Err(e) => sasl_error(e),
            },
            // A line while the loop checks credentials cannot happen: the loop does not read
            // until it has the result. Refuse it safely anyway.
            Some(Sasl::Checking(user)) => {
                self.sasl = Some(Sasl::Checking(user));
                reply(503, "5.5.1 Error: authentication in progress")
            }
            None => reply(503, "5.5.1 Error: no authentication in progress"),
        }
    }

    fn plain_response(&mut self, b64: &str) -> Action {
        match sasl::decode_plain(b64) {
            Ok(creds) => self.check(creds.authcid, creds.password),
            // An authzid naming someone else: never act for another account
            // (CVE-2023-27582 class). Refused like bad credentials, without a password check.
            Err(SaslError::AuthzidMismatch) => {
                reply(535, "5.7.8 Authentication credentials invalid")
            }
            Err(e) => sasl_error(e),
        }
    }

    fn login_user(&mut self, b64: &str) -> Action {
        match sasl::decode_base64_line(b64) {
            Ok(bytes) => match String::from_utf8(bytes) {
                Ok(user) if !user.is_empty() && user.len() <= 320 => {
                    self.sasl = Some(Sasl::LoginPassword(user));
                    reply(334, LOGIN_PASSWORD_PROMPT)
                }
                _ => reply(501, "5.5.2 Invalid user name"),
            },
            Err(e) => sasl_error(e),
        }
    }

    fn check(&mut self, user: String, password: String) -> Action {
        self.sasl = Some(Sasl::Checking(user.clone()));
        if let Some(attempt) = self.attempt.as_mut() {
            attempt.user = Some(user.clone());
        }
        Action::Authenticate { user, password }
    }

    /// The loop's verdict on the credentials of the last [`Action::Authenticate`]:
    /// `Some(account)` (the canonical address) on success.
    pub fn auth_result(&mut self, account: Option<String>) -> Reply {
        self.sasl = None;
        match account {
            Some(account) => {
                self.user = Some(account);
                Reply::new(235, "2.7.0 Authentication successful")
            }
            None => Reply::new(535, "5.7.8 Authentication credentials invalid"),
        }
    }
}

fn sasl_error(e: SaslError) -> Action {
    match e {
        SaslError::Cancelled => reply(501, "5.7.0 Authentication cancelled"),
        SaslError::BadBase64 | SaslError::TooLong => reply(501, "5.5.2 Invalid base64 data"),
        _ => reply(501, "5.5.2 Malformed authentication response"),
    }
}
