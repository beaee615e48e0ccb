//! Unit tests of `directory` (kept in their own file so `directory.rs` stays readable).
use super::*;

fn dir() -> (tempfile::TempDir, Directory) {
    let t = tempfile::tempdir().expect("tempdir");
    let d = Directory::open(t.path()).expect("open");
    (t, d)
}

fn deliver(local: &[&str], remote: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = local.iter().map(|s| format!("L:{s}")).collect();
    v.extend(remote.iter().map(|s| format!("R:{s}")));
    v
}

fn flat(r: &Resolution) -> Vec<String> {
    match r {
        Resolution::Deliver { local, remote } => {
            let mut v: Vec<String> = local.iter().map(|a| format!("L:{}", a.address)).collect();
            v.extend(remote.iter().map(|s| format!("R:{s}")));
            v
        }
        other => vec![format!("{other:?}")],
    }
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

#[test]
fn open_creates_data_dir_and_wal() {
    let t = tempfile::tempdir().expect("tempdir");
    let sub = t.path().join("a/b");
    let d = Directory::open(&sub).expect("open");
    assert!(sub.join("directory.sqlite3").exists());
    let conn = d.lock().expect("lock");
    let mode: String = conn
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .expect("mode");
    assert_eq!(mode, "wal");
    let v: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("version");
    assert_eq!(v, SCHEMA_VERSION);
    drop(conn);
    drop(d);
    // Reopening an existing database works.
    Directory::open(&sub).expect("reopen");
}

#[test]
fn domains() {
    let (_t, d) = dir();
    d.add_domain("Example.ORG").expect("add");
    d.add_domain("b.example").expect("add");
    assert_eq!(
        d.add_domain("example.org").map_err(|e| e.to_string()),
        Err("domain already exists: example.org".to_string())
    );
    assert_eq!(
        d.list_domains().expect("list"),
        s(&["b.example", "example.org"])
    );
    assert!(d.is_local_domain("EXAMPLE.org").expect("local"));
    assert!(!d.is_local_domain("other.org").expect("local"));
    d.remove_domain("B.example").expect("remove");
    assert_eq!(
        d.remove_domain("b.example").map_err(|e| e.to_string()),
        Err("no such domain: b.example".to_string())
    );
    assert_eq!(d.list_domains().expect("list"), s(&["example.org"]));
}

#[test]
fn remove_domain_refuses_with_accounts_or_aliases() {
    let (_t, d) = dir();
    d.add_domain("example.org").expect("add");
    d.add_user("a@example.org", "pw").expect("user");
    assert_eq!(
        d.remove_domain("example.org").map_err(|e| e.to_string()),
        Err("domain example.org still has accounts".to_string())
    );
    d.remove_user("a@example.org").expect("rm");
    d.add_alias("x@example.org", &s(&["z@remote.net"]))
        .expect("alias");
    assert_eq!(
        d.remove_domain("example.org"),
        Err(DirectoryError::DomainHasAliases("example.org".into()))
    );
    d.remove_alias("X@Example.org").expect("rm alias");
    d.remove_domain("example.org").expect("remove");
}

#[test]
fn invalid_addresses_and_domains() {
    let (_t, d) = dir();
    d.add_domain("example.org").expect("add");
    for bad in [
        "noat",
        "@example.org",
        "a@",
        "a@b@example.org",
        ".a@example.org",
        "..@example.org",
        ".@example.org",
        "a/b@example.org",
        "a b@example.org",
        "a\tb@example.org",
        "a\0b@example.org",
        "a\r\n@example.org",
        "a@example..org",
        "a@.example.org",
        "a@example.org.",
        "a@exa_mple.org",
        "a@exa mple.org",
    ] {
        match d.add_user(bad, "pw") {
            Err(DirectoryError::InvalidAddress(_)) => {}
            other => panic!("{bad:?} gave {other:?}"),
        }
    }
    let long_local = format!("{}@example.org", "a".repeat(65));
    assert!(matches!(
        d.add_user(&long_local, "pw"),
        Err(DirectoryError::InvalidAddress(_))
    ));
    let ok_local = format!("{}@example.org", "a".repeat(64));
    d.add_user(&ok_local, "pw").expect("64 octets is fine");
    let long_domain = format!("a@{}", ["abcdefghi"; 26].join("."));
    assert!(long_domain.len() - 2 > 255);
    let e = d.add_domain(&long_domain[2..]).expect_err("too long");
    assert!(e.to_string().contains("longer than 255"), "{e}");
    let e = d.add_user("a@b@example.org", "pw").expect_err("invalid");
    assert!(e.to_string().starts_with("invalid address: "), "{e}");
    // UTF-8 local part and domain are accepted.
    d.add_domain("bücher.example").expect("utf8 domain");
    d.add_user("Jürgen@BÜCHER.example", "pw")
        .expect("utf8 user");
    let acc = d
        .account("jürgen@bücher.example")
        .expect("ok")
        .expect("found");
    assert_eq!(acc.address, "Jürgen@bücher.example");
    assert_eq!(acc.domain, "bücher.example");
}

#[test]
fn users_case_and_errors() {
    let (_t, d) = dir();
    assert_eq!(
        d.add_user("a@example.org", "pw"),
        Err(DirectoryError::NoSuchDomain("example.org".into()))
    );
    d.add_domain("example.org").expect("add");
    d.add_user("Alice@Example.ORG", "pw").expect("add");
    assert_eq!(
        d.add_user("ALICE@example.org", "pw")
            .map_err(|e| e.to_string()),
        Err("account already exists: ALICE@example.org".to_string())
    );
    let acc = d.account("alice@EXAMPLE.org").expect("ok").expect("found");
    assert_eq!(
        acc,
        Account {
            address: "Alice@example.org".into(),
            local: "Alice".into(),
            domain: "example.org".into(),
        }
    );
    d.add_user("bob@example.org", "pw").expect("add");
    assert_eq!(
        d.list_users(None).expect("list"),
        s(&["Alice@example.org", "bob@example.org"])
    );
    assert_eq!(
        d.list_users(Some("EXAMPLE.org")).expect("list"),
        s(&["Alice@example.org", "bob@example.org"])
    );
    assert_eq!(
        d.list_users(Some("nope.org")),
        Err(DirectoryError::NoSuchDomain("nope.org".into()))
    );
    d.remove_user("BOB@example.org").expect("rm");
    assert_eq!(
        d.remove_user("bob@example.org").map_err(|e| e.to_string()),
        Err("no such account: bob@example.org".to_string())
    );
    assert_eq!(
        d.set_password("bob@example.org", "x"),
        Err(DirectoryError::NoSuchAccount("bob@example.org".into()))
    );
    assert_eq!(d.account("bob@example.org").expect("ok"), None);
}

#[test]
fn passwords() {
    let (_t, d) = dir();
    d.add_domain("example.org").expect("add");
    d.add_user("Alice@example.org", "correct horse")
        .expect("add");
    let acc = d
        .verify_password("alice@example.org", "correct horse")
        .expect("ok")
        .expect("verified");
    assert_eq!(acc.address, "Alice@example.org");
    assert_eq!(
        d.verify_password("alice@example.org", "wrong").expect("ok"),
        None
    );
    assert_eq!(
        d.verify_password("nobody@example.org", "correct horse")
            .expect("ok"),
        None
    );
    assert_eq!(d.verify_password("garbage", "x").expect("ok"), None);
    // The stored hash is an argon2id PHC string, not the password.
    let conn = d.lock().expect("lock");
    let h: String = conn
        .query_row("SELECT hash FROM accounts", [], |r| r.get(0))
        .expect("hash");
    drop(conn);
    assert!(h.starts_with("$argon2id$"), "{h}");
    assert!(!h.contains("correct horse"));
    d.set_password("ALICE@example.org", "new one").expect("set");
    assert_eq!(
        d.verify_password("alice@example.org", "correct horse")
            .expect("ok"),
        None
    );
    assert!(d
        .verify_password("alice@example.org", "new one")
        .expect("ok")
        .is_some());
}

#[test]
fn aliases_crud() {
    let (_t, d) = dir();
    d.add_domain("example.org").expect("add");
    d.add_user("a@example.org", "pw").expect("add");
    assert_eq!(
        d.add_alias("x@other.org", &s(&["a@example.org"])),
        Err(DirectoryError::NoSuchDomain("other.org".into()))
    );
    assert_eq!(
        d.add_alias("A@example.org", &s(&["z@remote.net"])),
        Err(DirectoryError::AccountExists("A@example.org".into()))
    );
    assert!(matches!(
        d.add_alias("x@example.org", &s(&["not an address"])),
        Err(DirectoryError::InvalidAddress(_))
    ));
    assert!(matches!(
        d.add_alias("x@example.org", &[]),
        Err(DirectoryError::InvalidAddress(_))
    ));
    d.add_alias("X@example.org", &s(&["a@example.org"]))
        .expect("alias");
    d.add_alias("x@EXAMPLE.org", &s(&["z@remote.net", "A@example.org"]))
        .expect("append");
    d.add_alias("@Example.org", &s(&["a@example.org"]))
        .expect("catch-all");
    assert_eq!(
        d.list_aliases().expect("list"),
        vec![
            ("@example.org".to_string(), s(&["a@example.org"])),
            (
                "X@example.org".to_string(),
                s(&["a@example.org", "z@remote.net"])
            ),
        ]
    );
    assert_eq!(
        d.add_user("x@example.org", "pw"),
        Err(DirectoryError::AliasExists("x@example.org".into()))
    );
    d.remove_alias("@example.org").expect("rm");
    assert_eq!(
        d.remove_alias("@example.org").map_err(|e| e.to_string()),
        Err("no such alias: @example.org".to_string())
    );
}

#[test]
fn resolve_basic_and_case() {
    let (_t, d) = dir();
    d.add_domain("example.org").expect("add");
    d.add_user("Alice@example.org", "pw").expect("add");
    assert_eq!(
        d.resolve("bob@elsewhere.net", None).expect("r"),
        Resolution::NotLocal
    );
    assert_eq!(
        flat(&d.resolve("ALICE@EXAMPLE.ORG", None).expect("r")),
        deliver(&["Alice@example.org"], &[])
    );
    assert_eq!(
        d.resolve("nobody@example.org", None).expect("r"),
        Resolution::Unknown
    );
    assert!(matches!(
        d.resolve("bad address", None),
        Err(DirectoryError::InvalidAddress(_))
    ));
}

#[test]
fn resolve_plus_address() {
    let (_t, d) = dir();
    d.add_domain("example.org").expect("add");
    d.add_user("alice@example.org", "pw").expect("add");
    d.add_user("bob+special@example.org", "pw").expect("add");
    d.add_alias(
        "list@example.org",
        &s(&["alice@example.org", "x@remote.net"]),
    )
    .expect("alias");
    assert_eq!(
        flat(&d.resolve("Alice+Tag@example.org", None).expect("r")),
        deliver(&["alice@example.org"], &[])
    );
    // `user+tag` that is itself an account wins.
    assert_eq!(
        flat(&d.resolve("bob+special@example.org", None).expect("r")),
        deliver(&["bob+special@example.org"], &[])
    );
    assert_eq!(
        d.resolve("bob+other@example.org", None).expect("r"),
        Resolution::Unknown
    );
    assert_eq!(
        flat(&d.resolve("list+x@example.org", None).expect("r")),
        deliver(&["alice@example.org"], &["x@remote.net"])
    );
    assert_eq!(
        d.resolve("+tag@example.org", None).expect("r"),
        Resolution::Unknown
    );
}

#[test]
fn resolve_aliases_forwarding_and_dedupe() {
    let (_t, d) = dir();
    d.add_domain("example.org").expect("add");
    d.add_domain("example.net").expect("add");
    d.add_user("alice@example.org", "pw").expect("add");
    d.add_user("bob@example.net", "pw").expect("add");
    d.add_alias_unchecked(
        "team@example.org",
        &s(&["ALICE@example.org", "sub@example.net"]),
    )
    .expect("alias");
    d.add_alias_unchecked(
        "sub@example.net",
        &s(&["bob@example.net", "alice@example.org", "Ext@Remote.net"]),
    )
    .expect("alias");
    d.add_alias_unchecked(
        "all@example.org",
        &s(&["team@example.org", "ext@remote.NET", "y@x.org"]),
    )
    .expect("alias");
    assert_eq!(
        flat(&d.resolve("all@example.org", None).expect("r")),
        deliver(
            &["alice@example.org", "bob@example.net"],
            &["Ext@remote.net", "y@x.org"]
        )
    );
    // Forwarding only.
    d.add_alias_unchecked("fwd@example.org", &s(&["someone@gmail.example"]))
        .expect("alias");
    assert_eq!(
        flat(&d.resolve("FWD@example.org", None).expect("r")),
        deliver(&[], &["someone@gmail.example"])
    );
    // Targets in our domains that do not exist are skipped; if none remain, Unknown.
    d.add_alias_unchecked("dead@example.org", &s(&["gone@example.org"]))
        .expect("alias");
    assert_eq!(
        d.resolve("dead@example.org", None).expect("r"),
        Resolution::Unknown
    );
    d.add_alias_unchecked(
        "half@example.org",
        &s(&["gone@example.org", "alice@example.org"]),
    )
    .expect("alias");
    assert_eq!(
        flat(&d.resolve("half@example.org", None).expect("r")),
        deliver(&["alice@example.org"], &[])
    );
}

#[test]
fn resolve_loops_and_depth() {
    let (_t, d) = dir();
    d.add_domain("example.org").expect("add");
    d.add_user("alice@example.org", "pw").expect("add");
    d.add_alias_unchecked("a@example.org", &s(&["b@example.org"]))
        .expect("alias");
    d.add_alias_unchecked("b@example.org", &s(&["alice@example.org", "A@example.org"]))
        .expect("alias");
    assert_eq!(
        d.resolve("a@example.org", None).expect("r"),
        Resolution::Loop
    );
    d.add_alias_unchecked("self@example.org", &s(&["self@example.org"]))
        .expect("alias");
    assert_eq!(
        d.resolve("self@example.org", None).expect("r"),
        Resolution::Loop
    );
    // A chain of 10 aliases is fine, 11 is too deep.
    for i in 0..11 {
        d.add_alias_unchecked(
            &format!("c{i}@example.org"),
            &s(&[&format!("c{}@example.org", i + 1)]),
        )
        .expect("alias");
    }
    d.add_alias_unchecked("c11@example.org", &s(&["alice@example.org"]))
        .expect("alias");
    assert_eq!(
        flat(&d.resolve("c2@example.org", None).expect("r")),
        deliver(&["alice@example.org"], &[])
    );
    assert_eq!(
        d.resolve("c0@example.org", None).expect("r"),
        Resolution::Loop
    );
    // A diamond is not a loop.
    d.add_alias_unchecked("top@example.org", &s(&["l@example.org", "r@example.org"]))
        .expect("alias");
    d.add_alias_unchecked("l@example.org", &s(&["alice@example.org"]))
        .expect("alias");
    d.add_alias_unchecked("r@example.org", &s(&["alice@example.org"]))
        .expect("alias");
    assert_eq!(
        flat(&d.resolve("top@example.org", None).expect("r")),
        deliver(&["alice@example.org"], &[])
    );
}

#[test]
fn resolve_too_many_targets() {
    let (_t, d) = dir();
    d.add_domain("example.org").expect("add");
    let many: Vec<String> = (0..1001).map(|i| format!("u{i}@remote.net")).collect();
    d.add_alias_unchecked("big@example.org", &many)
        .expect("alias");
    assert_eq!(
        d.resolve("big@example.org", None).expect("r"),
        Resolution::Loop
    );
    d.add_alias_unchecked("ok@example.org", &many[..1000])
        .expect("alias");
    match d.resolve("ok@example.org", None).expect("r") {
        Resolution::Deliver { local, remote } => {
            assert!(local.is_empty());
            assert_eq!(remote.len(), 1000);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn add_alias_refuses_loops_and_unknown_local_targets() {
    let (_t, d) = dir();
    d.add_domain("example.org").expect("add");
    d.add_user("alice@example.org", "pw").expect("add");
    let e = d
        .add_alias("a@example.org", &s(&["nobody@example.org"]))
        .unwrap_err();
    assert!(matches!(e, DirectoryError::UnknownTarget(ref t) if t == "nobody@example.org"));
    assert!(e.to_string().contains("no such account or alias"), "{e}");
    let e = d
        .add_alias("self@example.org", &s(&["self@example.org"]))
        .unwrap_err();
    assert!(matches!(e, DirectoryError::AliasLoop(_)), "{e:?}");
    d.add_alias("b@example.org", &s(&["alice@example.org"]))
        .expect("alias");
    d.add_alias("a@example.org", &s(&["b@example.org"]))
        .expect("alias");
    // b -> a would close the circle a -> b -> a: refused, and nothing of it stored.
    let e = d
        .add_alias("b@example.org", &s(&["a@example.org"]))
        .unwrap_err();
    assert!(matches!(e, DirectoryError::AliasLoop(_)), "{e:?}");
    assert_eq!(
        flat(&d.resolve("a@example.org", None).expect("r")),
        deliver(&["alice@example.org"], &[])
    );
    // Remote targets need nothing; a catch-all to an account is fine.
    d.add_alias("fwd@example.org", &s(&["x@remote.net"]))
        .expect("alias");
    d.add_alias("@example.org", &s(&["alice@example.org"]))
        .expect("alias");
    // One target removed; the alias goes with its last.
    d.add_alias(
        "two@example.org",
        &s(&["alice@example.org", "y@remote.net"]),
    )
    .expect("alias");
    d.remove_alias_target("two@example.org", "Y@remote.net")
        .expect("remove one");
    assert_eq!(
        flat(&d.resolve("two@example.org", None).expect("r")),
        deliver(&["alice@example.org"], &[])
    );
    assert!(d
        .remove_alias_target("two@example.org", "y@remote.net")
        .is_err());
    d.remove_alias_target("two@example.org", "alice@example.org")
        .expect("remove last");
    assert!(d.remove_alias("two@example.org").is_err());
}

#[test]
fn add_domain_refuses_names_that_cannot_be_mail_domains() {
    let (_t, d) = dir();
    for bad in [
        "-bad.com",
        "1.2.3.4",
        "com",
        "localhost",
        "mail.localhost",
        "a.123",
        "[1.2.3.4]",
    ] {
        let e = d.add_domain(bad).expect_err(bad);
        assert!(
            matches!(
                e,
                DirectoryError::InvalidDomain(_) | DirectoryError::InvalidAddress(_)
            ),
            "{bad}: {e:?}"
        );
    }
    assert!(d
        .add_domain("localhost")
        .unwrap_err()
        .to_string()
        .contains("RFC 6761"));
    assert!(d
        .add_domain("com")
        .unwrap_err()
        .to_string()
        .contains("two labels"));
    d.add_domain("mail.example.co.uk").expect("fine");
    d.add_domain("xn--bcher-kva.example").expect("fine");
}

#[test]
fn resolve_catch_all() {
    let (_t, d) = dir();
    d.add_domain("example.org").expect("add");
    d.add_user("alice@example.org", "pw").expect("add");
    d.add_user("bob@example.org", "pw").expect("add");
    d.add_alias("@example.org", &s(&["bob@example.org"]))
        .expect("alias");
    assert_eq!(
        flat(&d.resolve("whatever@example.org", None).expect("r")),
        deliver(&["bob@example.org"], &[])
    );
    // Exact account and plus-address come first.
    assert_eq!(
        flat(&d.resolve("alice+x@example.org", None).expect("r")),
        deliver(&["alice@example.org"], &[])
    );
    // postmaster fallback comes before the catch-all.
    assert_eq!(
        flat(&d.resolve("postmaster@example.org", None).expect("r")),
        deliver(&["alice@example.org"], &[])
    );
}

#[test]
fn resolve_postmaster_order() {
    let (_t, d) = dir();
    d.add_domain("a.example").expect("add");
    d.add_domain("b.example").expect("add");
    d.add_domain("c.example").expect("add");
    // No accounts at all: Unknown.
    assert_eq!(
        d.resolve("postmaster@a.example", None).expect("r"),
        Resolution::Unknown
    );
    d.add_user("first@b.example", "pw").expect("add");
    d.add_user("zed@a.example", "pw").expect("add");
    d.add_user("amy@a.example", "pw").expect("add");
    d.add_user("boss@b.example", "pw").expect("add");
    // First account created in the domain (not alphabetical).
    assert_eq!(
        flat(&d.resolve("PostMaster@a.example", None).expect("r")),
        deliver(&["zed@a.example"], &[])
    );
    // No account in the domain: first account created overall.
    assert_eq!(
        flat(&d.resolve("postmaster@c.example", None).expect("r")),
        deliver(&["first@b.example"], &[])
    );
    // The configured postmaster wins when it exists.
    assert_eq!(
        flat(
            &d.resolve("postmaster@a.example", Some("Boss@B.example"))
                .expect("r")
        ),
        deliver(&["boss@b.example"], &[])
    );
    assert_eq!(
        flat(
            &d.resolve("postmaster@a.example", Some("ghost@b.example"))
                .expect("r")
        ),
        deliver(&["zed@a.example"], &[])
    );
    // An explicit alias wins over everything.
    d.add_alias("postmaster@a.example", &s(&["ops@remote.net"]))
        .expect("alias");
    assert_eq!(
        flat(
            &d.resolve("postmaster@A.example", Some("boss@b.example"))
                .expect("r")
        ),
        deliver(&[], &["ops@remote.net"])
    );
}

#[test]
fn second_handle_sees_changes() {
    let t = tempfile::tempdir().expect("tempdir");
    let d1 = Directory::open(t.path()).expect("open");
    let d2 = Directory::open(t.path()).expect("open");
    assert_eq!(
        d2.resolve("a@example.org", None).expect("r"),
        Resolution::NotLocal
    );
    d1.add_domain("example.org").expect("add");
    assert_eq!(
        d2.resolve("a@example.org", None).expect("r"),
        Resolution::Unknown
    );
    d1.add_user("a@example.org", "pw").expect("add");
    assert_eq!(
        flat(&d2.resolve("a@example.org", None).expect("r")),
        deliver(&["a@example.org"], &[])
    );
    assert!(d2
        .verify_password("a@example.org", "pw")
        .expect("ok")
        .is_some());
    d2.set_password("a@example.org", "new").expect("set");
    assert!(d1
        .verify_password("a@example.org", "new")
        .expect("ok")
        .is_some());
    d1.remove_user("a@example.org").expect("rm");
    assert_eq!(d2.account("a@example.org").expect("ok"), None);
    assert_eq!(d2.list_domains().expect("list"), s(&["example.org"]));
}

#[test]
fn imported_crypt_hash_logs_in_and_is_rehashed_to_argon2id() {
    let (_t, d) = dir();
    d.add_domain("example.org").expect("add");
    // `openssl passwd -6 -salt saltsalt secret`
    let sha = "$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1";
    d.import_user("old@example.org", sha).expect("import");
    let stored = |d: &Directory| -> String {
        d.lock()
            .unwrap()
            .query_row(
                "SELECT hash FROM accounts WHERE key = 'old@example.org'",
                [],
                |r| r.get(0),
            )
            .unwrap()
    };
    assert!(d
        .verify_password("old@example.org", "wrong")
        .unwrap()
        .is_none());
    assert_eq!(stored(&d), sha, "a failed login changes nothing");
    assert!(d
        .verify_password("old@example.org", "secret")
        .unwrap()
        .is_some());
    let new = stored(&d);
    assert!(new.starts_with("$argon2id$"), "{new}");
    assert!(d
        .verify_password("OLD@example.org", "secret")
        .unwrap()
        .is_some());
    assert!(d
        .verify_password("old@example.org", "wrong")
        .unwrap()
        .is_none());
    assert_eq!(stored(&d), new);
}

#[test]
fn logins_rehash_to_the_configured_argon2_parameters() {
    use crate::password_hash::Argon2Params;
    let t = tempfile::tempdir().expect("tempdir");
    // Accounts made earlier with the default parameters, and imported crypt forms.
    let d = Directory::open(t.path()).expect("open");
    d.add_domain("example.org").expect("add");
    d.add_user("dflt@example.org", "secret").expect("add");
    let sha = "$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1";
    d.import_user("sha@example.org", sha).expect("import");
    let bcrypt = bcrypt::hash_with_result("secret", 5)
        .unwrap()
        .format_for_version(bcrypt::Version::TwoY);
    d.import_user("blf@example.org", &bcrypt).expect("import");
    drop(d);

    let p = Argon2Params {
        memory_kib: 20 * 1024,
        iterations: 3,
    };
    let d = Directory::open(t.path()).expect("open").with_argon2(p);
    let stored = |d: &Directory, key: &str| -> String {
        d.lock()
            .unwrap()
            .query_row("SELECT hash FROM accounts WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .unwrap()
    };
    assert!(stored(&d, "dflt@example.org").contains("$m=19456,t=2,p=1$"));
    d.add_user("new@example.org", "secret").expect("add");
    assert!(stored(&d, "new@example.org").contains("$m=20480,t=3,p=1$"));
    for user in ["dflt", "sha", "blf", "new"] {
        let a = format!("{user}@example.org");
        assert!(d.verify_password(&a, "wrong").unwrap().is_none());
        assert!(d.verify_password(&a, "secret").unwrap().is_some(), "{a}");
        let h = stored(&d, &a);
        assert!(h.starts_with("$argon2id$v=19$m=20480,t=3,p=1$"), "{a}: {h}");
        assert!(d.verify_password(&a, "secret").unwrap().is_some(), "{a}");
        assert_eq!(stored(&d, &a), h, "{a}: rehashed once");
    }
}
