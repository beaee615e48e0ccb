//! Unit tests of `bounce` (kept in their own file so `bounce.rs` stays readable).
use super::*;
use mail_parser::{Message, MessageParser, MimeHeaders};

const ORIGINAL: &[u8] = b"From: Alice <alice@example.test>\r\n\
    To: bob@remote.test\r\n\
    Subject: Quarterly numbers\r\n\
    Message-ID: <orig-1@example.test>\r\n\
    \r\n\
    Hello Bob,\r\nthe numbers.\r\n";

fn failed(recipient: &str) -> RecipientStatus {
    RecipientStatus {
        recipient: recipient.to_string(),
        original: None,
        action: Action::Failed,
        status: "5.1.1".to_string(),
        remote_mta: Some("mx.remote.test".to_string()),
        diagnostic: Some("550 5.1.1 <bob@remote.test>: Recipient address rejected".to_string()),
        last_attempt: Some(1_700_000_100),
        will_retry_until: None,
    }
}

fn delayed(recipient: &str) -> RecipientStatus {
    RecipientStatus {
        recipient: recipient.to_string(),
        original: None,
        action: Action::Delayed,
        status: "4.4.1".to_string(),
        remote_mta: Some("mx.remote.test".to_string()),
        diagnostic: Some("421 4.4.1 Connection timed out".to_string()),
        last_attempt: Some(1_700_000_100),
        will_retry_until: Some(1_700_432_000),
    }
}

fn bounce<'a>(recipients: &'a [RecipientStatus], original: &'a [u8]) -> Bounce<'a> {
    Bounce {
        reporting_mta: "mx.example.test",
        queue_id: "Q1A2B3",
        sender: "alice@example.test",
        arrival_date: 1_700_000_000,
        now: 1_700_000_200,
        recipients,
        original_message: original,
    }
}

/// The three parts' (content type, contents), after checking the report structure.
fn parts(message: &Message<'_>) -> Vec<(String, String)> {
    parts_of(message, "delivery-status")
}

/// As [`parts`], for a report whose `report-type` is `report_type`.
fn parts_of(message: &Message<'_>, report_type: &str) -> Vec<(String, String)> {
    let ct = message.content_type().expect("content type");
    assert_eq!(ct.ctype(), "multipart");
    assert_eq!(ct.subtype(), Some("report"));
    assert_eq!(ct.attribute("report-type"), Some(report_type));
    let ids = message.parts[0].sub_parts().expect("multipart").to_vec();
    assert_eq!(ids.len(), 3);
    ids.iter()
        .map(|&id| {
            let part = message.part(id).expect("part");
            let ct = part.content_type().expect("part content type");
            (
                format!("{}/{}", ct.ctype(), ct.subtype().unwrap_or("")),
                String::from_utf8_lossy(part.contents()).into_owned(),
            )
        })
        .collect()
}

fn assert_crlf(raw: &[u8]) {
    for (i, &c) in raw.iter().enumerate() {
        if c == b'\n' {
            assert!(i > 0 && raw[i - 1] == b'\r', "bare LF at {i}");
        }
        if c == b'\r' {
            assert_eq!(raw.get(i + 1), Some(&b'\n'), "bare CR at {i}");
        }
    }
}

#[test]
fn failed_report_parses_field_by_field() {
    let recipients = [failed("bob@remote.test"), failed("carol@remote.test")];
    let raw = build(&bounce(&recipients, ORIGINAL)).expect("report");
    assert_crlf(&raw);
    let message = MessageParser::default().parse(&raw).expect("parses");

    let from = message.from().and_then(|a| a.first()).expect("from");
    assert_eq!(from.address(), Some("MAILER-DAEMON@mx.example.test"));
    assert_eq!(from.name(), Some("Mail Delivery System"));
    let to = message.to().and_then(|a| a.first()).expect("to");
    assert_eq!(to.address(), Some("alice@example.test"));
    assert_eq!(
        message.subject(),
        Some("Undelivered Mail Returned to Sender")
    );
    assert_eq!(
        message.header_raw("Auto-Submitted").map(str::trim),
        Some("auto-replied")
    );
    assert!(message.date().is_some());
    assert!(message.message_id().unwrap().ends_with("@mx.example.test"));

    let parts = parts(&message);
    assert_eq!(parts[0].0, "text/plain");
    assert_eq!(parts[1].0, "message/delivery-status");
    assert_eq!(parts[2].0, "text/rfc822-headers");

    let text = &parts[0].1;
    assert!(text.contains("<bob@remote.test>"));
    assert!(text.contains("<carol@remote.test>"));
    assert!(text.contains("550 5.1.1"));

    let status = &parts[1].1;
    let lines: Vec<&str> = status.split("\r\n").collect();
    assert_eq!(lines[0], "Reporting-MTA: dns; mx.example.test");
    assert!(lines.contains(&"X-Queue-ID: Q1A2B3"));
    assert!(lines.contains(&"Arrival-Date: Tue, 14 Nov 2023 22:13:20 +0000"));
    for addr in ["bob@remote.test", "carol@remote.test"] {
        assert!(lines.contains(&format!("Final-Recipient: rfc822; {addr}").as_str()));
    }
    for expected in [
        "Action: failed",
        "Status: 5.1.1",
        "Remote-MTA: dns; mx.remote.test",
        "Diagnostic-Code: smtp; 550 5.1.1 <bob@remote.test>: Recipient address rejected",
        "Last-Attempt-Date: Tue, 14 Nov 2023 22:15:00 +0000",
    ] {
        assert_eq!(
            lines.iter().filter(|l| **l == expected).count(),
            2,
            "{expected}"
        );
    }
    assert!(!status.contains("Will-Retry-Until"));
    assert!(!status.contains("Original-Recipient"));
    // Per-message block, then one block per recipient, separated by empty lines.
    assert_eq!(status.matches("\r\n\r\n").count(), 2);

    let headers = &parts[2].1;
    assert!(headers.contains("Subject: Quarterly numbers\r\n"));
    assert!(headers.contains("Message-ID: <orig-1@example.test>"));
    assert!(!headers.contains("Hello Bob"));
}

#[test]
fn delayed_report() {
    let recipients = [delayed("bob@remote.test")];
    let raw = build(&bounce(&recipients, ORIGINAL)).expect("report");
    assert_crlf(&raw);
    let message = MessageParser::default().parse(&raw).expect("parses");
    assert_eq!(
        message.subject(),
        Some("Delayed Mail (still being retried)")
    );
    let parts = parts(&message);
    let status = &parts[1].1;
    assert!(status.contains("\r\nAction: delayed\r\n"));
    assert!(status.contains("\r\nStatus: 4.4.1\r\n"));
    assert!(status.contains("\r\nWill-Retry-Until: Sun, 19 Nov 2023 22:13:20 +0000"));
    assert!(!status.contains("Action: failed"));
    assert!(parts[0].1.contains("will retry until"));
}

#[test]
fn mixed_report_is_a_failure_and_lists_both() {
    let recipients = [delayed("bob@remote.test"), failed("carol@remote.test")];
    let raw = build(&bounce(&recipients, ORIGINAL)).expect("report");
    let message = MessageParser::default().parse(&raw).expect("parses");
    assert_eq!(
        message.subject(),
        Some("Undelivered Mail Returned to Sender")
    );
    let status = &parts(&message)[1].1;
    assert!(status.contains("Action: delayed"));
    assert!(status.contains("Action: failed"));
}

#[test]
fn null_sender_gives_no_report() {
    let recipients = [failed("bob@remote.test")];
    let mut b = bounce(&recipients, ORIGINAL);
    b.sender = "";
    assert!(build(&b).is_none());
    b.sender = "<>";
    assert!(build(&b).is_none());
    b.sender = " \r\n";
    assert!(build(&b).is_none());
    let b = bounce(&[], ORIGINAL);
    assert!(build(&b).is_none());
}

#[test]
fn hostile_values_cannot_inject_lines() {
    let mut r = failed("bob@remote.test\r\nX-Injected: rcpt");
    r.diagnostic = Some("550 5.1.1 no\r\nX-Injected: yes\0\nX-Injected: lf\r\n\r\nbody".into());
    r.remote_mta = Some("mx.remote.test\r\nX-Injected: mta".into());
    r.original = Some("orig@example.test\nX-Injected: orig".into());
    r.status = "5.1.1\r\nX-Injected: status".into();
    let recipients = [r];
    let mut b = bounce(&recipients, ORIGINAL);
    b.sender = "alice@example.test\r\nX-Injected: to";
    b.queue_id = "Q1\r\nX-Injected: qid";
    b.reporting_mta = "mx.example.test\r\nX-Injected: host";
    let raw = build(&b).expect("report");
    assert_crlf(&raw);
    assert!(!raw.contains(&0));
    let text = String::from_utf8(raw.clone()).unwrap();
    for line in text.split("\r\n") {
        assert!(!line.starts_with("X-Injected"), "injected line: {line:?}");
    }
    let message = MessageParser::default().parse(&raw).expect("parses");
    assert!(message.header_raw("X-Injected").is_none());
    let status = &parts(&message)[1].1;
    assert!(status
        .contains("\r\nDiagnostic-Code: smtp; 550 5.1.1 no X-Injected: yes X-Injected: lf body"));
    // A malformed status code falls back to the generic one.
    assert!(status.contains("\r\nStatus: 5.0.0\r\n"));
}

#[test]
fn long_diagnostic_is_capped() {
    let mut r = failed("bob@remote.test");
    r.diagnostic = Some("550 ".to_string() + &"x".repeat(5000));
    let recipients = [r];
    let raw = build(&bounce(&recipients, ORIGINAL)).expect("report");
    let text = String::from_utf8(raw).unwrap();
    assert!(text.split("\r\n").all(|line| line.len() <= 998));
}

#[test]
fn original_without_body_or_empty_line() {
    let recipients = [failed("bob@remote.test")];
    for original in [
        &b"Subject: Only headers\r\nFrom: alice@example.test\r\n"[..],
        &b"Subject: Only headers\nFrom: alice@example.test"[..],
        &b""[..],
    ] {
        let raw = build(&bounce(&recipients, original)).expect("report");
        assert_crlf(&raw);
        let message = MessageParser::default().parse(&raw).expect("parses");
        let parts = parts(&message);
        assert_eq!(parts[2].0, "text/rfc822-headers");
        if !original.is_empty() {
            assert!(parts[2].1.contains("Subject: Only headers\r\n"));
            assert!(parts[2].1.contains("From: alice@example.test"));
        }
    }
}

#[test]
fn original_recipient_and_non_ascii_headers() {
    let mut r = failed("bob@remote.test");
    r.original = Some("info@example.test".into());
    let mut same = failed("carol@remote.test");
    same.original = Some("carol@remote.test".into());
    let recipients = [r, same];
    let original = "Subject: Grüße\r\n\r\nbody".as_bytes();
    let raw = build(&bounce(&recipients, original)).expect("report");
    assert_crlf(&raw);
    let message = MessageParser::default().parse(&raw).expect("parses");
    let parts = parts(&message);
    let status = &parts[1].1;
    assert_eq!(parts[1].0, "message/delivery-status");
    assert!(status.is_ascii());
    assert_eq!(status.matches("Original-Recipient:").count(), 1);
    assert!(status.contains(
        "\r\nOriginal-Recipient: rfc822; info@example.test\r\n\
         Final-Recipient: rfc822; bob@remote.test\r\n"
    ));
    // RFC 6533 §6.3: header fields in UTF-8 are returned as message/global-headers.
    assert_eq!(parts[2].0, "message/global-headers");
    assert!(String::from_utf8_lossy(&raw).contains("\r\n\r\nSubject: Grüße\r\n"));
}

#[test]
fn utf8_recipient_gets_the_utf8_address_type_in_a_global_report() {
    // RFC 6533 §3: `rfc822` addresses are ASCII; a UTF-8 one is `utf-8; <address>`, and in
    // UTF-8 it may only appear in message/global-delivery-status (§6), which is then the
    // report's type (RFC 6522 §3: report-type is the second part's subtype).
    let mut utf8 = failed("dörte@remote.test");
    utf8.diagnostic = Some("550 5.1.1 unbekannt: dörte".into());
    let mut aliased = failed("bob@remote.test");
    aliased.original = Some("jürgen@example.test".into());
    let recipients = [utf8, aliased, failed("carol@remote.test")];
    let raw = build(&bounce(&recipients, ORIGINAL)).expect("report");
    assert_crlf(&raw);
    let text = String::from_utf8(raw.clone()).expect("UTF-8");
    assert!(
        text.contains("report-type=global-delivery-status;"),
        "{text}"
    );
    let message = MessageParser::default().parse(&raw).expect("parses");
    let parts = parts_of(&message, "global-delivery-status");
    assert_eq!(parts[1].0, "message/global-delivery-status");
    // The part is declared 8bit, since it carries UTF-8.
    let status_part = message
        .part(message.parts[0].sub_parts().unwrap()[1])
        .unwrap();
    assert_eq!(status_part.content_transfer_encoding(), Some("8bit"));
    let lines: Vec<&str> = text.split("\r\n").collect();
    assert!(
        lines.contains(&"Final-Recipient: utf-8; dörte@remote.test"),
        "{text}"
    );
    assert!(
        lines.contains(&"Original-Recipient: utf-8; jürgen@example.test"),
        "{text}"
    );
    assert!(
        lines.contains(&"Final-Recipient: rfc822; bob@remote.test"),
        "{text}"
    );
    assert!(
        lines.contains(&"Final-Recipient: rfc822; carol@remote.test"),
        "{text}"
    );
    assert!(!text.contains("rfc822; d"), "{text}");
    assert!(!text.contains("rfc822; j"), "{text}");
    assert!(parts[0].1.contains("<dörte@remote.test>"));
    // ASCII headers stay text/rfc822-headers.
    assert_eq!(parts[2].0, "text/rfc822-headers");
}

#[test]
fn copied_headers_are_capped_at_a_line_end() {
    let mut original = Vec::new();
    for i in 0..5000 {
        original.extend_from_slice(format!("X-Filler-{i}: {}\r\n", "y".repeat(40)).as_bytes());
    }
    original.extend_from_slice(b"\r\nbody\r\n");
    let block = header_block(&original);
    assert!(block.len() <= MAX_HEADERS);
    assert!(block.len() > MAX_HEADERS - 100);
    assert!(block.ends_with(b"\r\n"));
    let recipients = [failed("bob@remote.test")];
    let raw = build(&bounce(&recipients, &original)).expect("report");
    let message = MessageParser::default().parse(&raw).expect("parses");
    assert_eq!(parts(&message)[2].1.len(), block.len());
}
