//! Tests of the directory's address rules against the SMTP session's check
//! (`proto::address::check`): the cases where the two used to disagree, and over a corpus of
//! addresses that what RCPT accepts can be looked up and what the directory stores passes RCPT.

use proto::address::check;

use crate::directory::{Directory, DirectoryError, Resolution};

fn dir() -> (tempfile::TempDir, Directory) {
    let t = tempfile::tempdir().expect("tempdir");
    let d = Directory::open(t.path()).expect("open");
    (t, d)
}

fn is_invalid<T>(r: &Result<T, DirectoryError>) -> bool {
    matches!(r, Err(DirectoryError::InvalidAddress(_)))
}

/// (domain, a local domain may be called so): the domains the session and the directory used
/// to judge differently.
fn disputed_domains() -> Vec<(String, bool)> {
    vec![
        (format!("{}.example", "l".repeat(63)), true),
        (format!("{}.example", "l".repeat(64)), false),
        ("-x.example".into(), false),
        ("x-.example".into(), false),
        ("x.example-".into(), false),
        ("x-y.example".into(), true),
        ("x.example.".into(), false),
        ("[192.0.2.1]".into(), false),
        ("[IPv6:2001:db8::1]".into(), false),
        ("bücher.example".into(), true),
        ("例子.测试".into(), true),
        ("bü_cher.example".into(), false),
    ]
}

#[test]
fn local_domains_follow_the_address_syntax() {
    let (_t, d) = dir();
    for (domain, ok) in disputed_domains() {
        assert_eq!(d.add_domain(&domain).is_ok(), ok, "{domain:?}");
        let r = d.is_local_domain(&domain).expect("lookup");
        assert_eq!(r, ok, "{domain:?}");
    }
}

#[test]
fn disputed_addresses() {
    let (_t, d) = dir();
    d.add_domain("example.org").expect("domain");
    // (address, RCPT accepts it, the directory's answer for it in an empty domain)
    let long_path = format!("{}@{}x.org", "a".repeat(64), "x.".repeat(94));
    assert!(long_path.len() > 254 && long_path.len() - 64 - 1 <= 255);
    let table: Vec<(String, bool, Result<Resolution, ()>)> = vec![
        (
            format!("a@{}.example", "l".repeat(63)),
            true,
            Ok(Resolution::NotLocal),
        ),
        (format!("a@{}.example", "l".repeat(64)), false, Err(())),
        ("a@-x.example".into(), false, Err(())),
        ("a@x-.example".into(), false, Err(())),
        ("a@x.example.".into(), false, Err(())),
        ("a@example.org.".into(), false, Err(())),
        ("a@[192.0.2.1]".into(), true, Ok(Resolution::NotLocal)),
        (
            "a@[IPv6:2001:db8::1]".into(),
            true,
            Ok(Resolution::NotLocal),
        ),
        (
            "Jürgen@bücher.example".into(),
            true,
            Ok(Resolution::NotLocal),
        ),
        ("jürgen@example.org".into(), true, Ok(Resolution::Unknown)),
        ("a\u{85}b@example.org".into(), false, Err(())),
        (long_path, false, Err(())),
        // Valid syntax, but no mailbox of ours can be called so: unknown here, and another
        // domain's business elsewhere (RCPT decides relaying, the relay quotes the local part).
        // The quoted `"u@remote"@example.org`, as the command parser hands it over.
        ("u@remote@example.org".into(), true, Ok(Resolution::Unknown)),
        ("a b@example.org".into(), true, Ok(Resolution::Unknown)),
        ("a\u{a0}b@example.org".into(), true, Ok(Resolution::Unknown)),
        (".a@example.org".into(), true, Ok(Resolution::Unknown)),
        ("a/b@example.org".into(), true, Ok(Resolution::Unknown)),
        ("a b@remote.example".into(), true, Ok(Resolution::NotLocal)),
    ];
    for (address, rcpt, want) in table {
        assert_eq!(check(&address).is_ok(), rcpt, "{address:?}");
        let got = d.resolve(&address, None).map_err(|_| ());
        assert_eq!(got, want, "{address:?}");
    }
}

#[test]
fn accepted_at_rcpt_iff_it_can_be_looked_up() {
    let (_t, d) = dir();
    let mut domains: Vec<String> = vec!["example.org".into(), "remote.example".into()];
    domains.extend(disputed_domains().into_iter().map(|(dom, _)| dom));
    domains.push(["abcdefghi"; 25].join("."));
    for dom in &domains {
        if dom != "remote.example" {
            let _ = d.add_domain(dom);
        }
    }
    let locals = [
        "a".to_string(),
        "Jürgen".into(),
        "用户".into(),
        "a+tag".into(),
        "a b".into(),
        "a\u{a0}b".into(),
        ".a".into(),
        "a.".into(),
        "a/b".into(),
        "u@remote".into(),
        "a\tb".into(),
        "a\u{2028}b".into(),
        "x".repeat(64),
        "x".repeat(65),
    ];
    for dom in &domains {
        for local in &locals {
            let address = format!("{local}@{dom}");
            let rcpt = check(&address).is_ok();
            let looked_up = d.resolve(&address, None);
            assert_eq!(rcpt, !is_invalid(&looked_up), "{address:?}: {looked_up:?}");
            // What the directory would store (an account, an alias, a target) passes RCPT.
            if super::parse_address(&address).is_ok() {
                assert!(rcpt, "{address:?} may be stored but RCPT refuses it");
            }
        }
    }
    // Accounts at the edges of the syntax are found again (argon2 is slow: only a few).
    for address in [
        format!("{}@{}.example", "x".repeat(64), "l".repeat(63)),
        "Jürgen@bücher.example".into(),
        format!("a.@{}", ["abcdefghi"; 25].join(".")),
    ] {
        assert!(check(&address).is_ok(), "{address:?}");
        d.add_user(&address, "pw").expect(&address);
        match d.resolve(&address.to_uppercase(), None).expect("resolve") {
            Resolution::Deliver { local, .. } => assert_eq!(local[0].address, address),
            other => panic!("{address:?} resolves to {other:?}"),
        }
    }
}
