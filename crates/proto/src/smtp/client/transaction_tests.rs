//! Transcript tests of one client mail transaction: pipelined and one-by-one commands, mixed
//! RCPT replies, refusals and 421 at each step, DATA and BDAT, connection failures before and
//! after the end of the message, reuse after RSET.

use super::transcript::{rcpts, ready, small, talk, waiting};
use super::{Action, MessageTraits, Outcome, Session, Timer, TxEnd, BDAT_WINDOW};

fn delivered(reply: &str) -> Outcome {
    Outcome::Delivered {
        reply: reply.into(),
    }
}

fn deferred(reply: &str) -> Outcome {
    Outcome::Deferred {
        reply: reply.into(),
    }
}

fn failed(status: &str, reply: &str) -> Outcome {
    Outcome::Failed {
        status: status.into(),
        reply: reply.into(),
    }
}

fn done(outcomes: Vec<Outcome>, reusable: bool) -> Action {
    Action::End(TxEnd::Done { outcomes, reusable })
}

fn try_next(reason: &str, io: bool) -> Action {
    Action::End(TxEnd::TryNext {
        reason: reason.into(),
        io,
    })
}

fn begin(s: &mut Session, to: &[&str]) {
    s.begin("a@here.test", &rcpts(to), &small());
}

#[test]
fn pipelined_commands_go_in_one_write_and_replies_pair_in_order() {
    let mut s = ready(&["PIPELINING"]);
    begin(&mut s, &["b@x.test", "c@x.test", "d@x.test"]);
    assert_eq!(
        s.poll(),
        Action::Send(
            b"MAIL FROM:<a@here.test>\r\nRCPT TO:<b@x.test>\r\nRCPT TO:<c@x.test>\r\n\
              RCPT TO:<d@x.test>\r\nDATA\r\n"
                .to_vec(),
            Timer::Mail
        )
    );
    // Each reply waits under its own timer, in order.
    assert_eq!(waiting(&mut s), Timer::Mail);
    assert_eq!(
        talk(&mut s, "S: 250 2.1.0 Ok"),
        Action::Receive(Timer::Rcpt)
    );
    let rest = "S: 250 2.1.5 Ok
                S: 550 5.1.1 no such user
                S: 450 4.2.1 mailbox busy";
    assert_eq!(talk(&mut s, rest), Action::Receive(Timer::DataInit));
    assert_eq!(
        talk(&mut s, "S: 354 go ahead"),
        Action::SendData { empty: false }
    );
    s.body_sent();
    assert_eq!(waiting(&mut s), Timer::DataEnd);
    assert_eq!(
        talk(&mut s, "S: 250 2.0.0 Ok: queued as X"),
        done(
            vec![
                delivered("250 2.0.0 Ok: queued as X"),
                failed("5.1.1", "550 5.1.1 no such user"),
                deferred("450 4.2.1 mailbox busy"),
            ],
            true
        )
    );
    assert_eq!(s.poll(), Action::Ready);
    assert_eq!(s.transactions(), 1);
}

#[test]
fn without_pipelining_each_command_waits_for_its_reply() {
    let mut s = ready(&[]);
    begin(&mut s, &["b@x.test", "c@x.test"]);
    let script = "C: MAIL FROM:<a@here.test>
                  S: 250 ok
                  C: RCPT TO:<b@x.test>
                  S: 250 ok
                  C: RCPT TO:<c@x.test>
                  S: 250 ok
                  C: DATA
                  S: 354 go";
    assert_eq!(talk(&mut s, script), Action::SendData { empty: false });
    s.body_sent();
    assert_eq!(
        talk(&mut s, "S: 250 queued"),
        done(vec![delivered("250 queued"); 2], true)
    );
}

#[test]
fn all_recipients_refused_sends_no_data_and_the_connection_is_reused_after_rset() {
    let mut s = ready(&[]);
    begin(&mut s, &["b@x.test", "c@x.test"]);
    let script = "C: MAIL FROM:<a@here.test>
                  S: 250 ok
                  C: RCPT TO:<b@x.test>
                  S: 550 5.1.1 unknown
                  C: RCPT TO:<c@x.test>
                  S: 451 4.3.0 later";
    assert_eq!(
        talk(&mut s, script),
        done(
            vec![
                failed("5.1.1", "550 5.1.1 unknown"),
                deferred("451 4.3.0 later")
            ],
            true
        )
    );
    s.reset();
    assert_eq!(talk(&mut s, "C: RSET\nS: 250 2.0.0 ok"), Action::Ready);
    begin(&mut s, &["d@x.test"]);
    let script = "C: MAIL FROM:<a@here.test>
                  S: 250 ok
                  C: RCPT TO:<d@x.test>
                  S: 250 ok
                  C: DATA
                  S: 354 go";
    assert_eq!(talk(&mut s, script), Action::SendData { empty: false });
    s.body_sent();
    assert_eq!(
        talk(&mut s, "S: 250 ok"),
        done(vec![delivered("250 ok")], true)
    );
    assert_eq!(s.transactions(), 2);
}

#[test]
fn pipelined_with_every_recipient_refused() {
    // The server refuses DATA: nothing is sent.
    let mut s = ready(&["PIPELINING"]);
    begin(&mut s, &["b@x.test"]);
    let script = "C: MAIL FROM:<a@here.test>
                  C: RCPT TO:<b@x.test>
                  C: DATA
                  S: 250 ok
                  S: 550 5.1.1 unknown
                  S: 554 5.5.1 no valid recipients";
    assert_eq!(
        talk(&mut s, script),
        done(vec![failed("5.1.1", "550 5.1.1 unknown")], true)
    );
    // The server said 354 anyway: the section is ended at once, empty.
    let mut s = ready(&["PIPELINING"]);
    begin(&mut s, &["b@x.test"]);
    let script = "C: MAIL FROM:<a@here.test>
                  C: RCPT TO:<b@x.test>
                  C: DATA
                  S: 250 ok
                  S: 550 5.1.1 unknown
                  S: 354 go";
    assert_eq!(talk(&mut s, script), Action::SendData { empty: true });
    s.body_sent();
    assert_eq!(
        talk(&mut s, "S: 554 5.5.1 no recipients"),
        done(vec![failed("5.1.1", "550 5.1.1 unknown")], true)
    );
}

#[test]
fn mail_4xx_tries_the_next_host_and_5xx_fails_everyone() {
    let mut s = ready(&[]);
    begin(&mut s, &["b@x.test", "c@x.test"]);
    let script = "C: MAIL FROM:<a@here.test>\nS: 451 4.3.0 queue full";
    assert_eq!(
        talk(&mut s, script),
        try_next("451 4.3.0 queue full", false)
    );
    // Pipelined: the group's replies are read, then the next host.
    let mut s = ready(&["PIPELINING"]);
    begin(&mut s, &["b@x.test"]);
    let script = "C: MAIL FROM:<a@here.test>
                  C: RCPT TO:<b@x.test>
                  C: DATA
                  S: 452 4.3.1 no space
                  S: 503 5.5.1 MAIL first
                  S: 503 5.5.1 MAIL first";
    assert_eq!(talk(&mut s, script), try_next("452 4.3.1 no space", false));

    let mut s = ready(&[]);
    begin(&mut s, &["b@x.test", "c@x.test"]);
    let script = "C: MAIL FROM:<a@here.test>\nS: 553 5.1.8 bad sender";
    let fail = failed("5.1.8", "553 5.1.8 bad sender");
    assert_eq!(talk(&mut s, script), done(vec![fail.clone(), fail], true));
}

#[test]
fn a_421_at_any_command_tries_the_next_host() {
    // Without PIPELINING: after MAIL, the first RCPT, the second RCPT, DATA.
    let steps = [
        "C: MAIL FROM:<a@here.test>",
        "S: 250 ok\nC: RCPT TO:<b@x.test>",
        "S: 250 ok\nC: RCPT TO:<c@x.test>",
        "S: 250 ok\nC: DATA",
    ];
    for n in 1..=steps.len() {
        let mut s = ready(&[]);
        begin(&mut s, &["b@x.test", "c@x.test"]);
        let script = format!("{}\nS: 421 4.3.2 shutting down", steps[..n].join("\n"));
        assert_eq!(
            talk(&mut s, &script),
            try_next("421 4.3.2 shutting down", false),
            "421 after step {n}"
        );
        // The connection is spent: QUIT and close.
        s.quit();
        assert_eq!(talk(&mut s, "C: QUIT"), Action::Receive(Timer::Quit));
    }
    // Pipelined: the 421 ends it at once, the replies after it are not waited for.
    let mut s = ready(&["PIPELINING"]);
    begin(&mut s, &["b@x.test", "c@x.test"]);
    let script = "C: MAIL FROM:<a@here.test>
                  C: RCPT TO:<b@x.test>
                  C: RCPT TO:<c@x.test>
                  C: DATA
                  S: 250 ok
                  S: 421 4.7.0 too many errors";
    assert_eq!(
        talk(&mut s, script),
        try_next("421 4.7.0 too many errors", false)
    );
    assert_eq!(
        s.poll(),
        Action::Failed("the connection cannot carry another transaction".into())
    );
}

#[test]
fn data_must_get_354() {
    // A positive reply other than 354: nothing was sent, so nothing is delivered.
    let mut s = ready(&[]);
    begin(&mut s, &["b@x.test"]);
    let script = "C: MAIL FROM:<a@here.test>
                  S: 250 ok
                  C: RCPT TO:<b@x.test>
                  S: 250 ok
                  C: DATA
                  S: 250 2.0.0 ok";
    assert_eq!(
        talk(&mut s, script),
        try_next("DATA: unexpected reply: 250 2.0.0 ok", false)
    );
    // A refusal applies to every accepted recipient; a refused RCPT keeps its own reply.
    for (reply, outcome) in [
        ("554 5.3.0 no", failed("5.3.0", "554 5.3.0 no")),
        ("451 4.3.0 later", deferred("451 4.3.0 later")),
    ] {
        let mut s = ready(&["PIPELINING"]);
        begin(&mut s, &["b@x.test", "c@x.test"]);
        let script = format!(
            "C: MAIL FROM:<a@here.test>\nC: RCPT TO:<b@x.test>\nC: RCPT TO:<c@x.test>\n\
             C: DATA\nS: 250 ok\nS: 250 ok\nS: 550 5.1.1 unknown\nS: {reply}"
        );
        assert_eq!(
            talk(&mut s, &script),
            done(vec![outcome, failed("5.1.1", "550 5.1.1 unknown")], true)
        );
    }
}

/// A session with one transaction to `b@x.test` and `c@x.test` (the second refused), at the
/// point where the DATA section is to be sent.
fn at_data() -> Session {
    let mut s = ready(&["PIPELINING"]);
    begin(&mut s, &["b@x.test", "c@x.test"]);
    let script = "C: MAIL FROM:<a@here.test>
                  C: RCPT TO:<b@x.test>
                  C: RCPT TO:<c@x.test>
                  C: DATA
                  S: 250 ok
                  S: 250 ok
                  S: 550 5.1.1 unknown
                  S: 354 go";
    assert_eq!(talk(&mut s, script), Action::SendData { empty: false });
    s
}

#[test]
fn the_final_reply_decides_for_every_accepted_recipient() {
    let refused = failed("5.1.1", "550 5.1.1 unknown");
    for (reply, outcome, reusable) in [
        ("250 2.0.0 queued", delivered("250 2.0.0 queued"), true),
        ("452 4.3.1 full", deferred("452 4.3.1 full"), true),
        ("554 5.7.1 spam", failed("5.7.1", "554 5.7.1 spam"), true),
        ("421 4.3.2 bye", deferred("421 4.3.2 bye"), false),
    ] {
        let mut s = at_data();
        s.body_sent();
        let script = format!("S: {reply}");
        assert_eq!(
            talk(&mut s, &script),
            done(vec![outcome, refused.clone()], reusable),
            "{reply}"
        );
    }
}

#[test]
fn a_failed_connection_before_the_end_tries_the_next_host_after_it_defers() {
    // While the commands are answered.
    let mut s = ready(&["PIPELINING"]);
    begin(&mut s, &["b@x.test"]);
    let _ = s.poll();
    s.failed("connection closed by server".into());
    assert_eq!(s.poll(), try_next("connection closed by server", true));
    // While the message is written.
    let mut s = at_data();
    s.failed("write timed out".into());
    assert_eq!(s.poll(), try_next("write timed out", true));
    // After the final dot: it may have been taken; try again later, on another connection.
    let mut s = at_data();
    s.body_sent();
    s.failed("timed out waiting for reply".into());
    assert_eq!(
        s.poll(),
        done(
            vec![
                deferred("451 4.4.2 timed out waiting for reply after end of data"),
                failed("5.1.1", "550 5.1.1 unknown"),
            ],
            false
        )
    );
    // A malformed reply is a failed connection too.
    let mut s = ready(&[]);
    begin(&mut s, &["b@x.test"]);
    let script = "C: MAIL FROM:<a@here.test>\nS: 2x0 what";
    assert_eq!(
        talk(&mut s, script),
        try_next("malformed reply: 2x0 what", true)
    );
}

#[test]
fn an_unreadable_message_aborts() {
    let mut s = at_data();
    s.body_failed("cannot read the queued message: gone".into());
    assert_eq!(
        s.poll(),
        Action::End(TxEnd::Abort {
            reason: "cannot read the queued message: gone".into()
        })
    );
}

#[test]
fn a_message_the_server_cannot_take_is_failed_without_a_word() {
    let mut s = ready(&["SIZE 50"]);
    begin(&mut s, &["b@x.test"]);
    let reason = "message size 100 exceeds remote limit 50";
    assert_eq!(talk(&mut s, ""), done(vec![failed("5.3.4", reason)], true));
    assert_eq!(s.poll(), Action::Ready);
    assert_eq!(s.transactions(), 0);
    // 8-bit data to a server without 8BITMIME (RFC 6152).
    let mut s = ready(&[]);
    let eight_bit = MessageTraits {
        eight_bit: true,
        ..small()
    };
    s.begin("a@here.test", &rcpts(&["b@x.test"]), &eight_bit);
    assert!(matches!(
        talk(&mut s, ""),
        Action::End(TxEnd::Done { outcomes, .. })
            if matches!(&outcomes[0], Outcome::Failed { status, .. } if status == "5.6.3")
    ));
}

/// Sends `n` chunks (the last one `LAST` when `last`), checking the session asks for each
/// without waiting for a reply.
fn send_chunks(s: &mut Session, n: usize, last: bool) {
    for i in 0..n {
        assert_eq!(s.poll(), Action::SendChunk, "chunk {i}");
        s.chunk_sent(last && i + 1 == n);
    }
}

#[test]
fn bdat_pipelined_keeps_a_window_of_chunks_in_flight() {
    let mut s = ready(&["PIPELINING", "CHUNKING"]);
    begin(&mut s, &["b@x.test"]);
    // No DATA with CHUNKING.
    let script = "C: MAIL FROM:<a@here.test>\nC: RCPT TO:<b@x.test>\nS: 250 ok\nS: 250 ok";
    assert_eq!(talk(&mut s, script), Action::SendChunk);
    send_chunks(&mut s, BDAT_WINDOW, false);
    // The window is full: one reply makes room for one more chunk.
    assert_eq!(waiting(&mut s), Timer::Mail);
    assert_eq!(talk(&mut s, "S: 250 2.0.0 chunk ok"), Action::SendChunk);
    send_chunks(&mut s, 1, true);
    // The replies still due: the last one under the final-reply timer.
    for _ in 0..BDAT_WINDOW - 1 {
        assert_eq!(waiting(&mut s), Timer::Mail);
        s.received(b"250 2.0.0 chunk ok\r\n");
    }
    assert_eq!(waiting(&mut s), Timer::DataEnd);
    assert_eq!(
        talk(&mut s, "S: 250 2.0.0 queued"),
        done(vec![delivered("250 2.0.0 queued")], true)
    );
}

#[test]
fn bdat_without_pipelining_waits_for_each_chunk() {
    let mut s = ready(&["CHUNKING"]);
    begin(&mut s, &["b@x.test"]);
    let script = "C: MAIL FROM:<a@here.test>\nS: 250 ok\nC: RCPT TO:<b@x.test>\nS: 250 ok";
    assert_eq!(talk(&mut s, script), Action::SendChunk);
    s.chunk_sent(false);
    assert_eq!(waiting(&mut s), Timer::Mail);
    assert_eq!(talk(&mut s, "S: 250 ok"), Action::SendChunk);
    s.chunk_sent(true);
    assert_eq!(waiting(&mut s), Timer::DataEnd);
    assert_eq!(
        talk(&mut s, "S: 250 queued"),
        done(vec![delivered("250 queued")], true)
    );
}

#[test]
fn a_refused_chunk_stops_the_sending_and_decides() {
    let mut s = ready(&["PIPELINING", "CHUNKING"]);
    begin(&mut s, &["b@x.test"]);
    let script = "C: MAIL FROM:<a@here.test>\nC: RCPT TO:<b@x.test>\nS: 250 ok\nS: 250 ok";
    assert_eq!(talk(&mut s, script), Action::SendChunk);
    send_chunks(&mut s, BDAT_WINDOW, false);
    // The first chunk is refused: no more chunks, the others' replies are read.
    s.received(b"552 5.3.4 too big\r\n");
    for _ in 0..BDAT_WINDOW - 1 {
        assert_eq!(waiting(&mut s), Timer::Mail);
        s.received(b"503 5.5.1 no\r\n");
    }
    assert_eq!(
        s.poll(),
        done(vec![failed("5.3.4", "552 5.3.4 too big")], true)
    );
    // After the LAST chunk, a failure: the message may have been taken.
    let mut s = ready(&["CHUNKING"]);
    begin(&mut s, &["b@x.test"]);
    let script = "C: MAIL FROM:<a@here.test>\nS: 250 ok\nC: RCPT TO:<b@x.test>\nS: 250 ok";
    assert_eq!(talk(&mut s, script), Action::SendChunk);
    s.chunk_sent(true);
    s.failed("connection reset".into());
    assert_eq!(
        s.poll(),
        done(
            vec![deferred("451 4.4.2 connection reset after end of data")],
            false
        )
    );
    // Before it: the next host.
    let mut s = ready(&["CHUNKING"]);
    begin(&mut s, &["b@x.test"]);
    assert_eq!(talk(&mut s, script), Action::SendChunk);
    s.chunk_sent(false);
    s.failed("connection reset".into());
    assert_eq!(s.poll(), try_next("connection reset", true));
}

#[test]
fn a_transaction_needs_a_ready_session() {
    let mut s = Session::new(super::transcript::hello());
    begin(&mut s, &["b@x.test"]);
    assert_eq!(
        s.poll(),
        try_next("the session is not ready for a transaction", false)
    );
}
