//! Unit tests of the router with a fake directory: no disk.
use super::*;

fn account(address: &str) -> Account {
    let (local, domain) = address.split_once('@').expect("address");
    Account {
        address: address.to_string(),
        local: local.to_string(),
        domain: domain.to_string(),
    }
}

/// alice, bob; team -> alice + bob; fwd -> alice + out@remote; only-out -> out@remote;
/// loop; broken (directory error); anything else in example.test is unknown.
fn lookup(address: &str) -> Result<Resolution, DirectoryError> {
    let deliver = |local: &[&str], remote: &[&str]| {
        Ok(Resolution::Deliver {
            local: local.iter().map(|a| account(a)).collect(),
            remote: remote.iter().map(|s| s.to_string()).collect(),
        })
    };
    match address.to_lowercase().as_str() {
        "alice@example.test" => deliver(&["alice@example.test"], &[]),
        "bob@example.test" => deliver(&["bob@example.test"], &[]),
        "team@example.test" => deliver(&["alice@example.test", "bob@example.test"], &[]),
        "fwd@example.test" => deliver(&["alice@example.test"], &["out@remote.test"]),
        "only-out@example.test" => deliver(&[], &["out@remote.test"]),
        "loop@example.test" => Ok(Resolution::Loop),
        "broken@example.test" => Err(DirectoryError::Db("disk".into())),
        "bad@example.test" => Err(DirectoryError::InvalidAddress("x".into())),
        a if a.ends_with("@example.test") => Ok(Resolution::Unknown),
        _ => Ok(Resolution::NotLocal),
    }
}

fn rcpts(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn copies(r: &Route) -> Vec<(usize, &str, Vec<usize>)> {
    r.copies
        .iter()
        .map(|c| (c.n, c.account.address.as_str(), c.rcpts.clone()))
        .collect()
}

#[test]
fn one_copy_per_account_numbered_in_envelope_order() {
    let list = rcpts(&[
        "team@example.test",
        "alice@example.test",
        "Bob@Example.test",
    ]);
    let r = route(&list, |_| true, lookup);
    assert_eq!(
        copies(&r),
        vec![
            (0, "alice@example.test", vec![0, 1]),
            (1, "bob@example.test", vec![0, 2])
        ]
    );
    assert!(r.local_only());
}

#[test]
fn numbers_stay_the_same_when_some_recipients_are_done() {
    let list = rcpts(&["alice@example.test", "x@remote.test", "bob@example.test"]);
    // alice is done: bob's copy keeps number 1.
    let r = route(&list, |i| i != 0, lookup);
    assert_eq!(copies(&r), vec![(1, "bob@example.test", vec![2])]);
    assert_eq!(r.remote.get("remote.test"), Some(&vec![1]));
    assert!(!r.local_only());
}

#[test]
fn forwards_remote_and_settled() {
    let list = rcpts(&[
        "fwd@example.test",
        "only-out@example.test",
        "Y@Remote.Test",
        "nobody@example.test",
        "loop@example.test",
        "bad@example.test",
        "broken@example.test",
        "z@other.test",
    ]);
    let r = route(&list, |_| true, lookup);
    assert_eq!(copies(&r), vec![(0, "alice@example.test", vec![0])]);
    assert_eq!(
        r.forwards,
        vec![
            (0, vec!["out@remote.test".to_string()]),
            (1, vec!["out@remote.test".to_string()])
        ]
    );
    assert_eq!(r.remote.get("remote.test"), Some(&vec![2]));
    assert_eq!(r.remote.get("other.test"), Some(&vec![7]));
    let settled: Vec<(usize, String)> = r.settled.iter().map(|(i, o)| (*i, o.text())).collect();
    assert_eq!(settled[0], (3, "5.1.1 no such user here".to_string()));
    assert_eq!(settled[1], (4, "5.4.6 alias expansion loops".to_string()));
    assert!(settled[2].1.starts_with("5.1.3 "), "{settled:?}");
    assert!(r.settled[3].1.is_deferred(), "{settled:?}");
    assert_eq!(r.settled[3].0, 6);
}
