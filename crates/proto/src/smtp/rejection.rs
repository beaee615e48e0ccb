//! What a refused MAIL, RCPT, DATA, BDAT, end of message or AUTH was about: the stage, the
//! reply and the envelope so far, for the listener's one `NOQUEUE: reject:` log line (Postfix's
//! mail.log form). The session notes the stage and the envelope when a command arrives
//! ([`Attempt`]); the connection turns every 4xx/5xx reply it writes during such a stage into
//! a [`Rejection`], so a new refusal anywhere in the session is logged without anyone calling a
//! log function. No I/O and no formatting of log lines here.

use super::reply::Reply;

/// The step of a transaction a reply answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Mail,
    Rcpt,
    Data,
    Bdat,
    /// After the last byte of a message (DATA's dot or BDAT LAST).
    EndOfMessage,
    Auth,
}

impl Stage {
    /// Postfix's names: `MAIL`, `RCPT`, `DATA`, `BDAT`, `END-OF-MESSAGE`, `AUTH`.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Mail => "MAIL",
            Stage::Rcpt => "RCPT",
            Stage::Data => "DATA",
            Stage::Bdat => "BDAT",
            Stage::EndOfMessage => "END-OF-MESSAGE",
            Stage::Auth => "AUTH",
        }
    }
}

/// The stage in progress and the envelope as it was when it began.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    pub stage: Stage,
    /// The reverse-path (MAIL's argument, or the transaction's); `None` before MAIL.
    pub from: Option<String>,
    /// RCPT's argument, or the first recipient of the transaction.
    pub to: Option<String>,
    /// Recipients accepted so far.
    pub nrcpt: usize,
    /// The account an AUTH exchange tried.
    pub user: Option<String>,
}

/// One refused command, as the listener logs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub attempt: Attempt,
    pub reply: Reply,
    /// The EHLO/HELO name given so far (may be empty).
    pub helo: String,
    /// `SMTP` after HELO, `ESMTP` after EHLO, `-` before either.
    pub proto: &'static str,
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::smtp::{CommitError, SessionConfig};
    use crate::smtp::{Connection, Event, Peer, Policy, RcptVerdict, Service, Session};

    struct OnlyAlice;

    impl Policy for OnlyAlice {
        fn check_rcpt(&self, address: &str, _sender: &str, relay: bool) -> RcptVerdict {
            match address {
                "alice@example.test" => RcptVerdict::Accept(address.into()),
                a if a.ends_with("@example.test") => RcptVerdict::UnknownUser,
                _ if relay => RcptVerdict::Accept(address.into()),
                _ => RcptVerdict::RelayDenied,
            }
        }
        fn may_send_as(&self, _user: &str, _address: &str) -> bool {
            false
        }
    }

    fn connection() -> Connection {
        let config = Arc::new(SessionConfig::new("mx.example.test", Service::Mx));
        let peer = Peer {
            ip: "192.0.2.7".parse().unwrap(),
            trusted: false,
        };
        Connection::new(Session::new(config, peer))
    }

    fn feed(conn: &mut Connection, bytes: &[u8]) -> Event {
        conn.receive(bytes);
        conn.advance(&OnlyAlice)
    }

    #[test]
    fn every_refused_step_is_noted_with_the_envelope_so_far() {
        let mut conn = connection();
        feed(
            &mut conn,
            b"EHLO client.example\r\nDATA\r\nMAIL FROM:<bob@remote.test>\r\n\
              RCPT TO:<nobody@example.test>\r\nRCPT TO:<x@elsewhere.test>\r\n\
              RCPT TO:<alice@example.test>\r\nNOOP\r\nXYZZY\r\n",
        );
        let r = conn.take_rejections();
        let seen: Vec<_> = r
            .iter()
            .map(|r| {
                (
                    r.attempt.stage.as_str(),
                    r.reply.code,
                    r.attempt.from.as_deref(),
                    r.attempt.to.as_deref(),
                )
            })
            .collect();
        assert_eq!(
            seen,
            [
                ("DATA", 503, None, None),
                (
                    "RCPT",
                    550,
                    Some("bob@remote.test"),
                    Some("nobody@example.test")
                ),
                (
                    "RCPT",
                    554,
                    Some("bob@remote.test"),
                    Some("x@elsewhere.test")
                ),
            ]
        );
        assert!(r
            .iter()
            .all(|r| r.helo == "client.example" && r.proto == "ESMTP"));
        assert!(conn.take_rejections().is_empty(), "taken once");
    }

    #[test]
    fn a_refusal_at_the_end_of_the_message_keeps_its_envelope() {
        let mut conn = connection();
        let ev = feed(
            &mut conn,
            b"HELO c\r\nMAIL FROM:<>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\nhi\r\n.\r\n",
        );
        assert!(matches!(ev, Event::Commit { .. }));
        let refusal = Reply::new(550, "5.7.1 DMARC policy of example.org says reject");
        conn.committed(Err(CommitError::Refused(refusal.clone())));
        let r = conn.take_rejections();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].attempt.stage, Stage::EndOfMessage);
        assert_eq!(r[0].attempt.from.as_deref(), Some(""));
        assert_eq!(r[0].attempt.to.as_deref(), Some("alice@example.test"));
        assert_eq!((r[0].attempt.nrcpt, r[0].proto), (1, "SMTP"));
        assert_eq!(r[0].reply, refusal);
    }

    #[test]
    fn a_mail_with_bad_syntax_is_a_refused_mail() {
        let mut conn = connection();
        feed(
            &mut conn,
            b"EHLO c\r\nMAIL FROM:<a b>\r\nmail from:<\x01>\r\n",
        );
        let r = conn.take_rejections();
        assert_eq!(r.len(), 2);
        assert!(r.iter().all(|r| r.attempt.stage == Stage::Mail));
    }
}
