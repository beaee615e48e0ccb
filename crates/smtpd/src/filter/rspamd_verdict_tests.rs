use super::*;

#[test]
fn reject_is_550_with_rspamds_message() {
    let body = br#"{"is_skipped":true,"score":15.0,"required_score":15.0,"action":"reject","symbols":{"GTUBE":{"name":"GTUBE","score":0.0}},"messages":{"smtp_message":"Gtube pattern"}}"#;
    assert_eq!(
        decide(body).unwrap(),
        Verdict::Refuse(Reply::new(550, "5.7.1 Gtube pattern"))
    );
    let bare = br#"{"action":"reject"}"#;
    assert_eq!(
        decide(bare).unwrap(),
        Verdict::Refuse(Reply::new(550, "5.7.1 Spam message rejected"))
    );
    // A hostile message cannot break the reply.
    let evil = br#"{"action":"reject","messages":{"smtp_message":"a\r\n250 ok"}}"#;
    assert_eq!(
        decide(evil).unwrap(),
        Verdict::Refuse(Reply::new(550, "5.7.1 a  250 ok"))
    );
}

#[test]
fn soft_reject_and_greylist_are_451() {
    for action in ["soft reject", "greylist"] {
        let body = format!(r#"{{"action":"{action}"}}"#);
        match decide(body.as_bytes()).unwrap() {
            Verdict::Refuse(r) => {
                assert_eq!(r.code, 451);
                assert!(r.lines[0].starts_with("4.7.1 "));
            }
            v => panic!("{v:?}"),
        }
    }
}

#[test]
fn add_header_tags_with_score_and_symbols() {
    let body = br#"{"action":"add header","score":7.0,"required_score":15.0,"symbols":{"MISSING_MID":{"score":2.5},"RDNS_NONE":{"score":1.0},"HFILTER_HOSTNAME_UNKNOWN":{"score":2.5}}}"#;
    assert_eq!(
        decide(body).unwrap(),
        Verdict::Tag {
            headers: "X-Spam-Flag: YES\r\nX-Spam-Status: Yes, score=7.00 required=15.00\r\n\tsymbols=HFILTER_HOSTNAME_UNKNOWN,MISSING_MID,RDNS_NONE\r\n".into(),
            subject: None,
        }
    );
}

#[test]
fn rewrite_subject_replaces_the_subject() {
    let body = br#"{"action":"rewrite subject","score":9.0,"required_score":15.0,"subject":"***SPAM*** hello"}"#;
    let Verdict::Tag { headers, subject } = decide(body).unwrap() else {
        panic!()
    };
    assert_eq!(subject.as_deref(), Some("***SPAM*** hello"));
    let msg = b"From: a@b\r\nSubject: hello\r\n  folded\r\nTo: c@d\r\n\r\nSubject: body line\r\n";
    let out = tagged(msg, &headers, subject.as_deref());
    let text = String::from_utf8(out).unwrap();
    assert!(text.starts_with("X-Spam-Flag: YES\r\n"), "{text}");
    assert!(
        text.ends_with(
            "From: a@b\r\nSubject: ***SPAM*** hello\r\nTo: c@d\r\n\r\nSubject: body line\r\n"
        ),
        "{text}"
    );
    // No Subject: one is added to the header.
    let out = tagged(b"From: a@b\r\n\r\nbody\r\n", "", Some("S"));
    assert_eq!(out, b"From: a@b\r\nSubject: S\r\n\r\nbody\r\n");
}

#[test]
fn no_action_and_unknown_actions_accept_and_garbage_is_an_error() {
    assert_eq!(
        decide(br#"{"action":"no action","score":0.1}"#).unwrap(),
        Verdict::Accept
    );
    assert_eq!(
        decide(br#"{"action":"something new"}"#).unwrap(),
        Verdict::Accept
    );
    assert!(decide(b"<html>").is_err());
    assert!(decide(br#"{"score":1}"#).is_err());
    assert_eq!(unavailable(true), Verdict::Accept);
    assert!(matches!(unavailable(false), Verdict::Refuse(r) if r.code == 451));
}
