//! One mail transaction of the client (RFC 5321 §3.3), sans-I/O: MAIL, the RCPTs and DATA
//! (or `BDAT` chunks, RFC 3030), sent as one group with PIPELINING (RFC 2920) or one command
//! per reply without, and what each reply means:
//!
//! - a `421` to MAIL, RCPT or DATA: the server is closing; nothing was delivered, try the next
//!   host (the pipelined replies after it are not waited for);
//! - a 4xx to MAIL: try the next host (RFC 5321 §5.1); a 5xx: every recipient fails with it;
//! - a refused RCPT fails (5xx) or defers (4xx) only its recipient; with none accepted no
//!   message is sent (a pipelined DATA that got `354` anyway is ended with an empty section);
//! - DATA must get `354`; a refusal applies to every accepted recipient, any other positive
//!   reply is a broken server (try the next host) rather than a delivery;
//! - BDAT chunks go `window` at a time ([`BDAT_WINDOW`] with PIPELINING, else 1); the first
//!   refused chunk stops the sending (RFC 3030 §2), the replies still due are read, and the
//!   first refusal, else the last reply, decides;
//! - the connection failing before the end of the message: try the next host; after it (the
//!   server may have taken the message): every accepted recipient deferred.
//!
//! Replies come from [`super::Session`], which owns the parser; this file builds no reply
//! text beyond the outcomes, reads no message and does no I/O.

use std::collections::VecDeque;

use super::action::{Action, Timer, TxEnd};
use super::{outcomes, plan, reply_text, Capabilities, MessageTraits, Outcome, Plan, Replies};
use crate::smtp::Reply;

/// BDAT chunks in flight (sent, reply not read yet) with PIPELINING; 1 without.
pub const BDAT_WINDOW: usize = 8;

/// The reply awaited next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    Mail,
    Rcpt,
    Data,
    /// A BDAT chunk that is not the last.
    Chunk,
    /// `BDAT ... LAST`.
    LastChunk,
    /// The final dot.
    DataEnd,
}

impl Expect {
    fn timer(self) -> Timer {
        match self {
            Expect::Mail | Expect::Chunk => Timer::Mail,
            Expect::Rcpt => Timer::Rcpt,
            Expect::Data => Timer::DataInit,
            Expect::LastChunk | Expect::DataEnd => Timer::DataEnd,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stage {
    /// MAIL, RCPT, DATA and their replies.
    Commands,
    /// The driver streams the DATA section.
    Data { empty: bool },
    /// The final dot is out; its reply is awaited.
    DataSent,
    /// BDAT: `in_flight` chunks without a reply yet; `last_sent` once `BDAT ... LAST` is out;
    /// `stopped` after a refused chunk (nothing more is sent).
    Chunks {
        in_flight: usize,
        last_sent: bool,
        stopped: bool,
    },
    /// The end is queued.
    Over,
}

/// One transaction in progress.
#[derive(Debug)]
pub(super) struct Transaction {
    plan: Plan,
    recipients: usize,
    mail: Option<Reply>,
    rcpts: Vec<Reply>,
    data: Option<Reply>,
    end: Option<Reply>,
    /// Replies awaited, in order (several with PIPELINING).
    expect: VecDeque<Expect>,
    /// Writes and the end, in order.
    out: VecDeque<Action>,
    stage: Stage,
}

impl Transaction {
    /// The transaction for this message, its first write queued; or, when the message cannot go
    /// to this server at all ([`plan`]'s pre-flight checks), the end at once, sending nothing.
    pub(super) fn new(
        caps: &Capabilities,
        sender: &str,
        recipients: &[String],
        traits: &MessageTraits,
    ) -> Result<Transaction, TxEnd> {
        let plan = plan(caps, sender, recipients, traits).map_err(|refusal| {
            let outcome = Outcome::Failed {
                status: refusal.status.to_string(),
                reply: refusal.reason,
            };
            TxEnd::Done {
                outcomes: vec![outcome; recipients.len()],
                reusable: true,
            }
        })?;
        let mut tx = Transaction {
            recipients: recipients.len(),
            mail: None,
            rcpts: Vec::with_capacity(recipients.len()),
            data: None,
            end: None,
            expect: VecDeque::new(),
            out: VecDeque::new(),
            stage: Stage::Commands,
            plan,
        };
        if tx.plan.pipelining {
            // RFC 2920 §3.1: MAIL, the RCPTs and DATA in one write, then every reply in order
            // (with CHUNKING there is no DATA: the chunks follow the RCPT replies).
            let group = tx.plan.writes().concat();
            tx.out
                .push_back(Action::Send(group.into_bytes(), Timer::Mail));
            tx.expect.push_back(Expect::Mail);
            tx.expect
                .extend(std::iter::repeat_n(Expect::Rcpt, tx.recipients));
            if !tx.plan.chunking {
                tx.expect.push_back(Expect::Data);
            }
        } else {
            let mail = tx.plan.mail.clone();
            tx.command(mail, Expect::Mail);
        }
        Ok(tx)
    }

    /// The timer of the reply awaited, if one is.
    pub(super) fn awaiting(&self) -> Option<Timer> {
        self.expect.front().map(|e| e.timer())
    }

    /// A queued write or end; else, when no reply is awaited, what the driver must do with the
    /// message.
    pub(super) fn next_action(&mut self) -> Option<Action> {
        if let Some(action) = self.out.pop_front() {
            return Some(action);
        }
        if !self.expect.is_empty() {
            return None;
        }
        match self.stage {
            Stage::Data { empty } => Some(Action::SendData { empty }),
            Stage::Chunks {
                last_sent: false,
                stopped: false,
                ..
            } => Some(Action::SendChunk),
            _ => None,
        }
    }

    /// The next reply from the server.
    pub(super) fn on_reply(&mut self, reply: Reply) {
        let Some(expect) = self.expect.pop_front() else {
            return;
        };
        match expect {
            Expect::Mail | Expect::Rcpt | Expect::Data if reply.code == 421 => {
                // RFC 5321 §3.8: the server is closing the channel.
                self.try_next(reply_text(&reply), false);
                return;
            }
            Expect::Mail => {
                let ok = reply.code / 100 == 2;
                self.mail = Some(reply);
                if ok && !self.plan.pipelining {
                    if let Some(first) = self.plan.rcpts.first().cloned() {
                        self.command(first, Expect::Rcpt);
                    }
                }
            }
            Expect::Rcpt => {
                self.rcpts.push(reply);
                if !self.plan.pipelining {
                    if let Some(next) = self.plan.rcpts.get(self.rcpts.len()).cloned() {
                        self.command(next, Expect::Rcpt);
                    } else if self.accepted() && !self.plan.chunking {
                        self.command("DATA\r\n".into(), Expect::Data);
                    }
                }
            }
            Expect::Data => self.data = Some(reply),
            Expect::Chunk | Expect::LastChunk => {
                self.on_chunk_reply(reply);
                return;
            }
            Expect::DataEnd => {
                self.end = Some(reply);
                self.finish();
                return;
            }
        }
        if self.expect.is_empty() && self.out.is_empty() {
            self.commands_done();
        }
    }

    /// The driver has written the whole DATA section.
    pub(super) fn body_sent(&mut self) {
        if let Stage::Data { .. } = self.stage {
            self.stage = Stage::DataSent;
            self.expect.push_back(Expect::DataEnd);
        }
    }

    /// The driver has written one BDAT chunk, `last` when it was `BDAT ... LAST`.
    pub(super) fn chunk_sent(&mut self, last: bool) {
        let Stage::Chunks {
            in_flight,
            last_sent: false,
            stopped: false,
        } = self.stage
        else {
            return;
        };
        let in_flight = in_flight + 1;
        self.stage = Stage::Chunks {
            in_flight,
            last_sent: last,
            stopped: false,
        };
        if last {
            self.expect
                .extend(std::iter::repeat_n(Expect::Chunk, in_flight - 1));
            self.expect.push_back(Expect::LastChunk);
        } else if in_flight >= self.window() {
            self.expect.push_back(Expect::Chunk);
        }
    }

    /// The connection failed (a read or write error, a timeout, a malformed reply).
    pub(super) fn failed(&mut self, error: String) {
        match self.stage {
            Stage::Commands | Stage::Data { .. } => self.try_next(error, true),
            Stage::Chunks {
                last_sent: false, ..
            } => self.try_next(error, true),
            Stage::DataSent | Stage::Chunks { .. } => {
                // The end of the message was sent: it may have been taken. Try again later
                // (RFC 5321 §6.1: a duplicate is better than a loss).
                self.data = Some(Reply::new(451, format!("4.4.2 {error} after end of data")));
                self.end = None;
                self.done(false);
            }
            Stage::Over => {}
        }
    }

    /// The queued message could not be read: abort without ending the message.
    pub(super) fn body_failed(&mut self, reason: String) {
        if self.stage != Stage::Over {
            self.stage = Stage::Over;
            self.expect.clear();
            self.out.push_back(Action::End(TxEnd::Abort { reason }));
        }
    }

    fn command(&mut self, line: String, expect: Expect) {
        self.out
            .push_back(Action::Send(line.into_bytes(), expect.timer()));
        self.expect.push_back(expect);
    }

    fn window(&self) -> usize {
        if self.plan.pipelining {
            BDAT_WINDOW
        } else {
            1
        }
    }

    fn accepted(&self) -> bool {
        self.mail.as_ref().is_some_and(|m| m.code / 100 == 2)
            && self.rcpts.iter().any(|r| r.code / 100 == 2)
    }

    /// Every reply to MAIL, RCPT and DATA is in: decide what comes next.
    fn commands_done(&mut self) {
        let Some(mail) = self.mail.clone() else {
            return self.try_next("no reply to MAIL".into(), true);
        };
        if mail.code / 100 == 4 {
            // RFC 5321 §5.1: another host may take it now.
            return self.try_next(reply_text(&mail), false);
        }
        // A refused MAIL leaves no RCPT replies (without PIPELINING): each recipient gets the
        // MAIL reply.
        if self.rcpts.len() < self.recipients {
            self.rcpts.resize(self.recipients, mail);
        }
        let accepted = self.accepted();
        match &self.data {
            Some(data) if data.code == 354 => self.stage = Stage::Data { empty: !accepted },
            Some(data) if accepted && data.code < 400 => {
                // RFC 5321 §4.3.2: 354 is DATA's only positive reply; no message was sent.
                let reason = format!("DATA: unexpected reply: {}", reply_text(data));
                self.try_next(reason, false);
            }
            _ if accepted && self.plan.chunking => {
                self.stage = Stage::Chunks {
                    in_flight: 0,
                    last_sent: false,
                    stopped: false,
                }
            }
            _ => self.finish(),
        }
    }

    fn on_chunk_reply(&mut self, reply: Reply) {
        let Stage::Chunks {
            in_flight,
            last_sent,
            stopped,
        } = self.stage
        else {
            return;
        };
        let in_flight = in_flight.saturating_sub(1);
        let mut stopped = stopped;
        if !stopped && !last_sent {
            // The reply that makes room in the window.
            if reply.code / 100 != 2 {
                // RFC 3030 §2: no more chunks after a refusal; read the replies still due.
                stopped = true;
                self.end = Some(reply);
                self.expect
                    .extend(std::iter::repeat_n(Expect::Chunk, in_flight));
            }
        } else if self.end.as_ref().is_none_or(|e| e.code / 100 == 2) {
            self.end = Some(reply);
        }
        self.stage = Stage::Chunks {
            in_flight,
            last_sent,
            stopped,
        };
        if (stopped || last_sent) && self.expect.is_empty() {
            self.finish();
        }
    }

    /// The transaction is over with every reply in.
    fn finish(&mut self) {
        let reusable = self.end.as_ref().is_none_or(|r| r.code != 421);
        self.done(reusable);
    }

    fn done(&mut self, reusable: bool) {
        let Some(mail) = &self.mail else {
            return self.try_next("no reply to MAIL".into(), true);
        };
        let replies = Replies {
            mail,
            rcpts: &self.rcpts,
            data: self.data.as_ref(),
            end: self.end.as_ref(),
        };
        let end = TxEnd::Done {
            outcomes: outcomes(&replies),
            reusable,
        };
        self.over(end);
    }

    fn try_next(&mut self, reason: String, io: bool) {
        self.over(TxEnd::TryNext { reason, io });
    }

    fn over(&mut self, end: TxEnd) {
        self.stage = Stage::Over;
        self.expect.clear();
        self.out.push_back(Action::End(end));
    }
}
