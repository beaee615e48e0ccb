use std::os::unix::fs::PermissionsExt;

use super::*;

fn pair() -> Vec<NewKey> {
    vec![
        NewKey {
            algorithm: Algorithm::Ed25519,
            private_der: b"ed-private".to_vec(),
            public_der: b"ed-public".to_vec(),
        },
        NewKey {
            algorithm: Algorithm::Rsa,
            private_der: b"rsa-private".to_vec(),
            public_der: b"rsa-public".to_vec(),
        },
    ]
}

// 2026-11-29 12:00 UTC
const NOW: u64 = 1_795_953_600;

#[test]
fn first_generation_signs_later_ones_are_published_until_activated() {
    let tmp = tempfile::tempdir().unwrap();
    let keys = DkimKeys::open(tmp.path()).unwrap();
    let first = keys.add_generation("Example.ORG", &pair(), NOW).unwrap();
    assert_eq!(first[0].selector, "20261129g1-ed25519");
    assert_eq!(first[1].selector, "20261129g1-rsa");
    assert!(first.iter().all(|k| k.state == KeyState::Active));
    assert_eq!(keys.signing("example.org").unwrap().len(), 2);

    let second = keys
        .add_generation("example.org", &pair(), NOW + 10)
        .unwrap();
    assert!(second.iter().all(|k| k.state == KeyState::Published));
    let signing: Vec<String> = keys
        .signing("example.org")
        .unwrap()
        .into_iter()
        .map(|k| k.selector)
        .collect();
    assert_eq!(signing, ["20261129g1-ed25519", "20261129g1-rsa"]);

    keys.activate("example.org", "20261129g2-rsa", NOW + 20)
        .unwrap();
    let all = keys.list(Some("example.org")).unwrap();
    assert_eq!(all.len(), 4);
    for k in &all {
        if k.generation == 1 {
            assert_eq!(k.state, KeyState::Retired);
            assert_eq!(k.retired_at, Some(NOW + 20));
        } else {
            assert_eq!(k.state, KeyState::Active);
            assert_eq!(k.retired_at, None);
        }
    }
    assert!(matches!(
        keys.activate("example.org", "nope", NOW),
        Err(KeyError::NoSuchKey(_))
    ));
    assert!(keys.signing("other.example").unwrap().is_empty());
}

#[test]
fn private_keys_are_private_files_and_come_back() {
    let tmp = tempfile::tempdir().unwrap();
    let keys = DkimKeys::open(tmp.path()).unwrap();
    let made = keys.add_generation("example.org", &pair(), NOW).unwrap();
    for (k, want) in made.iter().zip([&b"ed-private"[..], b"rsa-private"]) {
        assert_eq!(keys.private_key(k).unwrap(), want);
        let mode = std::fs::metadata(keys.key_path(k))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let dir_mode = std::fs::metadata(tmp.path().join("dkim"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(dir_mode & 0o777, 0o700);
    // A key file replaced by a symlink is not followed.
    let path = keys.key_path(&made[0]);
    std::fs::remove_file(&path).unwrap();
    std::os::unix::fs::symlink(tmp.path().join("directory.sqlite3"), &path).unwrap();
    assert!(keys.private_key(&made[0]).is_err());
}

#[test]
fn another_process_sees_changes_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let server = DkimKeys::open(tmp.path()).unwrap();
    let cli = DkimKeys::open(tmp.path()).unwrap();
    cli.add_generation("example.org", &pair(), NOW).unwrap();
    cli.add_generation("example.org", &pair(), NOW).unwrap();
    cli.activate("example.org", "20261129g2-ed25519", NOW)
        .unwrap();
    let signing = server.signing("example.org").unwrap();
    assert!(signing.iter().all(|k| k.generation == 2));
    // The directory opened on the same file still works.
    let dir = crate::directory::Directory::open(tmp.path()).unwrap();
    dir.add_domain("example.org").unwrap();
}

#[test]
fn file_names_only_from_domain_names() {
    let tmp = tempfile::tempdir().unwrap();
    let keys = DkimKeys::open(tmp.path()).unwrap();
    for bad in ["../x", "a/b", "", ".hidden", "a b"] {
        assert!(matches!(
            keys.add_generation(bad, &pair(), NOW),
            Err(KeyError::BadDomain(_))
        ));
    }
}

#[test]
fn dates_in_selectors() {
    assert_eq!(ymd(0), "19700101");
    assert_eq!(ymd(951_782_400), "20000229");
    assert_eq!(ymd(NOW), "20261129");
}

#[test]
fn version_moves_with_every_write_from_here_or_elsewhere() {
    let tmp = tempfile::tempdir().unwrap();
    let keys = DkimKeys::open(tmp.path()).unwrap();
    let other = DkimKeys::open(tmp.path()).unwrap();
    let v0 = keys.version().unwrap();
    assert_eq!(keys.version().unwrap(), v0, "reads change nothing");
    keys.signing("example.org").unwrap();
    assert_eq!(keys.version().unwrap(), v0);
    // A write through this handle.
    let first = keys.add_generation("example.org", &pair(), NOW).unwrap();
    let v1 = keys.version().unwrap();
    assert_ne!(v1, v0);
    // Writes through another connection (the CLI's).
    let second = other
        .add_generation("example.org", &pair(), NOW + 10)
        .unwrap();
    let v2 = keys.version().unwrap();
    assert_ne!(v2, v1);
    other
        .activate("example.org", &second[0].selector, NOW + 20)
        .unwrap();
    let v3 = keys.version().unwrap();
    assert_ne!(v3, v2);
    keys.activate("example.org", &first[0].selector, NOW + 30)
        .unwrap();
    assert_ne!(keys.version().unwrap(), v3);
}
