//! MAIL and RCPT (RFC 5321 §4.1.1.2, §4.1.1.3): the envelope of a transaction. MAIL checks
//! the order of commands, the ESMTP parameters EHLO advertised (SIZE, 8BITMIME, SMTPUTF8), the
//! sender's syntax and, on submission, that the account owns it; RCPT checks the recipient's
//! syntax and asks the [`Policy`] for a verdict, which it turns into a reply.
//!
//! Not here: the address syntax itself (`smtp::address`), deciding who is local or may relay
//! (the policy), the message (`message`).

use super::{reply, Hello, Session, Transaction};
use crate::smtp::address::{self, AddressProblem};
use crate::smtp::types::{Action, Policy, RcptVerdict};

impl Session {
    pub(super) fn mail(
        &mut self,
        from: smtp_proto::MailFrom<std::borrow::Cow<'_, str>>,
        policy: &dyn Policy,
    ) -> Action {
        if self.hello == Hello::None {
            return reply(503, "5.5.1 Error: send HELO/EHLO first");
        }
        if self.tx.is_some() {
            return reply(503, "5.5.1 Error: nested MAIL command");
        }
        if self.config.service.is_submission() && self.user.is_none() {
            // RFC 4954 §6 / RFC 6409 §4.3: submission needs authentication first.
            return reply(530, "5.7.0 Authentication required");
        }
        let mut allowed =
            smtp_proto::MAIL_BODY_7BIT | smtp_proto::MAIL_BODY_8BITMIME | smtp_proto::MAIL_SMTPUTF8;
        if self.tls.is_some() {
            // Advertised (RFC 8689) on TLS sessions only; elsewhere it is unadvertised.
            allowed |= smtp_proto::MAIL_REQUIRETLS;
        }
        let has_params = from.flags != 0 || from.size != 0;
        let unadvertised = from.flags & !allowed != 0
            || from.trans_id.is_some()
            || from.env_id.is_some()
            || from.solicit.is_some()
            || from.mtrk.is_some()
            || from.auth.is_some()
            || from.by != 0
            || from.hold_for != 0
            || from.hold_until != 0
            || from.mt_priority != 0;
        // RFC 5321 §4.1.1.11: parameters only for extensions that EHLO advertised.
        if unadvertised || (has_params && self.hello == Hello::Helo) {
            return reply(555, "5.5.4 Unsupported MAIL parameter");
        }
        // RFC 1870 §6.1: a declared size over the limit is refused at MAIL.
        if from.size as u64 > self.config.max_message_size {
            return reply(552, "5.3.4 Message size exceeds fixed maximum message size");
        }
        let smtputf8 = from.flags & smtp_proto::MAIL_SMTPUTF8 != 0;
        let require_tls = from.flags & smtp_proto::MAIL_REQUIRETLS != 0;
        let sender = from.address.to_string();
        if !sender.is_empty() {
            if let Err(p) = address::check(&sender) {
                return address_refusal(p, "5.1.7", "sender");
            }
            if !sender.is_ascii() && !smtputf8 {
                // RFC 6531 §3.4: non-ASCII addresses need SMTPUTF8.
                return reply(
                    553,
                    "5.6.7 Non-ASCII address requires the SMTPUTF8 parameter",
                );
            }
        }
        if let Some(user) = &self.user {
            // RFC 6409 §8.1 allows the submission server to enforce the sender: only an
            // address the account owns (the null sender is never one).
            if sender.is_empty() || !policy.may_send_as(user, &sender) {
                return reply(
                    553,
                    format!("5.7.1 <{sender}>: Sender address rejected: not owned by user {user}"),
                );
            }
        }
        if let Some(refusal) = policy.check_mail(&sender, self.user.as_deref()) {
            return Action::Reply(refusal);
        }
        self.tx = Some(Transaction {
            sender,
            declared_size: from.size as u64,
            smtputf8,
            require_tls,
            ..Transaction::default()
        });
        reply(250, "2.1.0 Ok")
    }

    pub(super) fn rcpt(
        &mut self,
        to: smtp_proto::RcptTo<std::borrow::Cow<'_, str>>,
        policy: &dyn Policy,
    ) -> Action {
        let max = self.config.max_recipients;
        let relay_allowed = self.peer.trusted || self.user.is_some();
        let Some(tx) = self.tx.as_mut() else {
            return reply(503, "5.5.1 Error: need MAIL command");
        };
        if tx.chunking {
            return reply(503, "5.5.1 Error: RCPT during BDAT transfer");
        }
        // DSN (RFC 3461) parameters are not advertised.
        if to.flags != 0 || to.orcpt.is_some() || to.rrvs != 0 {
            return reply(555, "5.5.4 Unsupported RCPT parameter");
        }
        let addr = to.address.to_string();
        if !addr.is_empty() {
            if let Err(p) = address::check(&addr) {
                return address_refusal(p, "5.1.3", "recipient");
            }
            if !addr.is_ascii() && !tx.smtputf8 {
                return reply(
                    553,
                    "5.6.7 Non-ASCII address requires the SMTPUTF8 parameter",
                );
            }
        }
        if tx.recipients.len() >= max {
            // RFC 5321 §4.5.3.1.10: 452 for too many recipients.
            return reply(452, "4.5.3 Error: too many recipients");
        }
        let shown = if addr.is_empty() { "postmaster" } else { &addr };
        match policy.check_rcpt(&addr, &tx.sender, relay_allowed) {
            RcptVerdict::Accept(canonical) => {
                if !tx
                    .recipients
                    .iter()
                    .any(|r| r.eq_ignore_ascii_case(&canonical))
                {
                    tx.recipients.push(canonical);
                }
                reply(250, "2.1.5 Ok")
            }
            RcptVerdict::UnknownUser => reply(
                550,
                format!("5.1.1 <{shown}>: Recipient address rejected: User unknown"),
            ),
            RcptVerdict::RelayDenied => reply(554, format!("5.7.1 <{shown}>: Relay access denied")),
            RcptVerdict::Loop => reply(
                550,
                format!("5.4.6 <{shown}>: Recipient address rejected: alias loop"),
            ),
            RcptVerdict::Refused(refusal) => Action::Reply(refusal),
            RcptVerdict::TempFail => reply(
                451,
                format!("4.3.0 <{shown}>: Temporary lookup failure, try again later"),
            ),
        }
    }

    /// Sender and recipients of the transaction in progress.
    pub fn envelope(&self) -> Option<(&str, &[String])> {
        self.tx
            .as_ref()
            .map(|tx| (tx.sender.as_str(), tx.recipients.as_slice()))
    }
}

/// True when a MAIL line declares `SIZE=` with more digits than any real size has.
pub(super) fn declared_size_overflows(line: &[u8]) -> bool {
    line.windows(5)
        .enumerate()
        .filter(|(_, w)| w.eq_ignore_ascii_case(b"SIZE="))
        .any(|(i, _)| {
            line[i + 5..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count()
                > 19
        })
}

fn address_refusal(p: AddressProblem, status: &str, what: &str) -> Action {
    let text = match p {
        AddressProblem::Syntax => format!("{status} Bad {what} address syntax"),
        AddressProblem::LocalTooLong => format!("{status} Local part of {what} address too long"),
        AddressProblem::DomainTooLong => format!("{status} Domain of {what} address too long"),
        AddressProblem::PathTooLong => format!("{status} The {what} path is too long"),
        AddressProblem::BadCharacter => format!("{status} Bad character in {what} address"),
        AddressProblem::BadDomain => format!("{status} Bad domain in {what} address"),
    };
    // RFC 5321 §4.5.3.1: 501 for a path that breaks the syntax or size rules.
    reply(501, text)
}
