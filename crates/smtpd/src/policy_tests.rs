//! Unit tests of `policy`: RCPT verdicts and sender ownership over a real directory in a
//! temporary folder.
use std::time::Instant;

use super::*;

fn setup() -> (tempfile::TempDir, Arc<Directory>) {
    let t = tempfile::tempdir().expect("tempdir");
    let d = Arc::new(Directory::open(t.path()).expect("open"));
    for dom in ["a.example", "b.example", "empty.example"] {
        d.add_domain(dom).expect("domain");
    }
    d.add_user("first@a.example", "pw").expect("user");
    d.add_user("bob@b.example", "pw").expect("user");
    (t, d)
}

fn targets(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn rcpt_verdicts() {
    let (_t, d) = setup();
    // A loop, as an older directory could hold (add_alias refuses them now).
    d.add_alias_unchecked("loop1@a.example", &targets(&["loop2@a.example"]))
        .expect("alias");
    d.add_alias_unchecked("loop2@a.example", &targets(&["loop1@a.example"]))
        .expect("alias");
    let p = DirectoryPolicy::new(d, None);
    assert_eq!(
        p.check_rcpt("first@a.example", "", false),
        RcptVerdict::Accept("first@a.example".into())
    );
    assert_eq!(
        p.check_rcpt("nobody@a.example", "", false),
        RcptVerdict::UnknownUser
    );
    assert_eq!(
        p.check_rcpt("x@remote.example", "", false),
        RcptVerdict::RelayDenied
    );
    assert_eq!(
        p.check_rcpt("x@remote.example", "", true),
        RcptVerdict::Accept("x@remote.example".into())
    );
    // An alias loop: 550 5.4.6 at RCPT time (README, RFC 3463), never a later bounce.
    assert_eq!(
        p.check_rcpt("loop1@a.example", "", false),
        RcptVerdict::Loop
    );
    // Relay tricks through a local domain are unknown local users, never relayed.
    for trick in ["u%remote.example@a.example", "remote.example!u@a.example"] {
        assert_eq!(
            p.check_rcpt(trick, "", false),
            RcptVerdict::UnknownUser,
            "{trick}"
        );
    }
    // A bare <postmaster> is the postmaster of the first domain.
    assert_eq!(
        p.check_rcpt("", "", false),
        RcptVerdict::Accept("postmaster@a.example".into())
    );
}

#[test]
fn postmaster_fallback_gives_sending_rights_only_in_the_own_domain() {
    // Security review 12: mail for postmaster@ of a domain without accounts goes to the first
    // account (RFC 5321 §4.5.1 wants it delivered), but that account must not be able to
    // send as postmaster@ of every domain.
    let (_t, d) = setup();
    let p = DirectoryPolicy::new(d.clone(), None);
    assert!(p.may_send_as("first@a.example", "postmaster@a.example"));
    assert!(!p.may_send_as("first@a.example", "postmaster@empty.example"));
    assert!(!p.may_send_as("first@a.example", "postmaster@b.example"));
    assert!(p.may_send_as("bob@b.example", "postmaster@b.example"));
    // Delivery is unchanged: postmaster@empty.example still reaches the first account.
    assert_eq!(
        p.check_rcpt("postmaster@empty.example", "", false),
        RcptVerdict::Accept("postmaster@empty.example".into())
    );
    // An explicit alias or the configured postmaster still grant it.
    d.add_alias("postmaster@empty.example", &targets(&["first@a.example"]))
        .expect("alias");
    assert!(p.may_send_as("first@a.example", "postmaster@empty.example"));
    let configured = DirectoryPolicy::new(d, Some("bob@b.example".into()));
    assert!(configured.may_send_as("bob@b.example", "postmaster@a.example"));
}

#[test]
fn sender_ownership() {
    let (_t, d) = setup();
    d.add_alias(
        "sales@a.example",
        &targets(&["first@a.example", "x@remote.example"]),
    )
    .expect("alias");
    let p = DirectoryPolicy::new(d, None);
    assert!(p.may_send_as("first@a.example", "FIRST@a.example"));
    assert!(p.may_send_as("first@a.example", "sales@a.example"));
    assert!(p.may_send_as("first@a.example", "first+tag@a.example"));
    assert!(!p.may_send_as("first@a.example", "bob@b.example"));
    assert!(!p.may_send_as("first@a.example", "x@remote.example"));
}

#[test]
fn alias_to_known_bad_targets_refused_at_rcpt() {
    let (_t, d) = setup();
    d.add_alias("fwd@a.example", &targets(&["gone@remote.example"]))
        .expect("alias");
    d.add_alias(
        "both@a.example",
        &targets(&["first@a.example", "gone@remote.example"]),
    )
    .expect("alias");
    d.add_alias(
        "two@a.example",
        &targets(&["gone@remote.example", "ok@remote.example"]),
    )
    .expect("alias");
    let failures = Arc::new(ForwardFailures::default());
    let p = DirectoryPolicy::new(d, None).with_forward_failures(failures.clone());
    let accept = |a: &str| RcptVerdict::Accept(a.to_string());
    assert_eq!(
        p.check_rcpt("fwd@a.example", "", false),
        accept("fwd@a.example")
    );
    failures.record(
        "gone@remote.example",
        "550 5.1.1 no such user",
        Instant::now(),
    );
    assert_eq!(
        p.check_rcpt("fwd@a.example", "", false),
        RcptVerdict::UnknownUser
    );
    // A local copy, or one target still good: accepted.
    assert_eq!(
        p.check_rcpt("both@a.example", "", false),
        accept("both@a.example")
    );
    assert_eq!(
        p.check_rcpt("two@a.example", "", false),
        accept("two@a.example")
    );
}

#[test]
fn srs_recipients_decode_to_the_original_or_are_refused() {
    let (_t, d) = setup();
    let secret: Arc<[u8]> = Arc::from(&b"0123456789abcdef0123456789abcdef"[..]);
    let day = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 86_400;
    let local = proto::srs::encode(&secret, "dave@remote.example", day).unwrap();
    let p = DirectoryPolicy::new(d.clone(), None).with_srs(secret.clone());
    // From anyone (no relay right needed): a bounce coming back.
    assert_eq!(
        p.check_rcpt(&format!("{local}@a.example"), "", false),
        RcptVerdict::Accept("dave@remote.example".into())
    );
    let forged = local.replace("=dave", "=eve");
    assert_eq!(
        p.check_rcpt(&format!("{forged}@a.example"), "", false),
        RcptVerdict::UnknownUser
    );
    // Not one of our domains: an ordinary remote address.
    assert_eq!(
        p.check_rcpt(&format!("{local}@remote.example"), "", false),
        RcptVerdict::RelayDenied
    );
    // Without the secret SRS means nothing special.
    let plain = DirectoryPolicy::new(d, None);
    assert_eq!(
        plain.check_rcpt(&format!("{local}@a.example"), "", false),
        RcptVerdict::UnknownUser
    );
}
