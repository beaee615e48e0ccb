//! The ownership walk over `data_dir` run as root (moved here from `mailroom::privilege`): it gives the tree to the user and never
//! touches anything outside it, also while the user swaps directories for symlinks under it.
//! These tests need root; without it they fail when `CI` is set and are skipped otherwise.

use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::*;

fn have_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "{test} needs root and CI is set: run the tests as root"
    );
    eprintln!("{test}: skipped (needs root)");
    false
}

fn user(uid: u32) -> Owner {
    Owner {
        name: format!("test{uid}"),
        uid,
        gid: uid,
    }
}

/// A root-owned 0600 file in a root-owned directory, outside any data_dir.
fn outside_secret(root: &Path) -> std::path::PathBuf {
    let outside = root.join("outside");
    std::fs::create_dir(&outside).unwrap();
    let secret = outside.join("secret");
    std::fs::write(&secret, "root only").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::chown(&secret, Some(0), Some(0)).unwrap();
    std::os::unix::fs::chown(&outside, Some(0), Some(0)).unwrap();
    secret
}

fn owner(path: &Path) -> (u32, u32) {
    let m = std::fs::symlink_metadata(path).unwrap();
    (m.uid(), m.gid())
}

#[test]
fn walk_gives_the_tree_and_never_follows_links_out_of_it() {
    if !have_root("walk_gives_the_tree_and_never_follows_links_out_of_it") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let secret = outside_secret(t.path());
    let data = t.path().join("data");
    std::fs::create_dir_all(data.join("mail/example.test/alice/Maildir/new")).unwrap();
    std::fs::write(data.join("mail/example.test/alice/Maildir/new/1.x"), "m").unwrap();
    symlink(&secret, data.join("link")).unwrap();
    symlink(t.path().join("outside"), data.join("mail/dirlink")).unwrap();
    std::fs::hard_link(&secret, data.join("hard")).unwrap();
    let u = user(4242);
    give_tree(&data, &u).unwrap();
    for p in [
        "",
        "mail",
        "mail/example.test/alice/Maildir/new",
        "mail/example.test/alice/Maildir/new/1.x",
        "link",
        "mail/dirlink",
    ] {
        assert_eq!(owner(&data.join(p)), (4242, 4242), "{p}");
    }
    // A hard link may name a file outside data_dir: left alone.
    assert_eq!(owner(&data.join("hard")), (0, 0));
    assert_eq!(owner(&secret), (0, 0));
    assert_eq!(owner(&t.path().join("outside")), (0, 0));
}

#[test]
fn walk_stops_at_max_depth() {
    if !have_root("walk_stops_at_max_depth") {
        return;
    }
    let t = tempfile::tempdir().unwrap();
    let data = t.path().join("data");
    let mut deep = data.clone();
    for _ in 0..MAX_DEPTH + 2 {
        deep.push("d");
    }
    std::fs::create_dir_all(&deep).unwrap();
    let e = give_tree(&data, &user(4242)).expect_err("too deep");
    assert!(e.to_string().contains("directory levels"), "{e}");
}

/// The attack of issue 19: between the walk's look at a directory and its use of that
/// directory, the user puts a symlink to a directory outside in its place. Many directories
/// are swapped over and over while the walk runs 500 times; the file outside keeps its owner.
#[test]
fn directories_swapped_for_symlinks_during_the_walk_change_nothing_outside() {
    if !have_root("directories_swapped_for_symlinks_during_the_walk_change_nothing_outside") {
        return;
    }
    const DIRS: usize = 64;
    let t = tempfile::tempdir().unwrap();
    let secret = outside_secret(t.path());
    let outside = t.path().join("outside");
    let data = t.path().join("data");
    let hold = t.path().join("hold");
    std::fs::create_dir(&hold).unwrap();
    for i in 0..DIRS {
        // The same name as the file outside: a path through a swapped directory finds it.
        let d = data.join(format!("mail/d{i}"));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("secret"), "mail").unwrap();
    }
    for i in 0..DIRS {
        symlink(&outside, hold.join(format!("d{i}"))).unwrap();
    }
    // Each swap is atomic (RENAME_EXCHANGE of the directory and a symlink to `outside`), so
    // the walk always finds something at the name and runs on instead of stopping at ENOENT.
    let stop = Arc::new(AtomicBool::new(false));
    let racer = {
        let (stop, data, hold) = (stop.clone(), data.clone(), hold.clone());
        std::thread::spawn(move || {
            let c = |p: std::path::PathBuf| CString::new(p.into_os_string().into_vec()).unwrap();
            let pairs: Vec<_> = (0..DIRS)
                .map(|i| {
                    (
                        c(data.join(format!("mail/d{i}"))),
                        c(hold.join(format!("d{i}"))),
                    )
                })
                .collect();
            while !stop.load(Ordering::Relaxed) {
                for (d, h) in &pairs {
                    // SAFETY: both paths are valid NUL-terminated strings.
                    unsafe {
                        libc::renameat2(
                            libc::AT_FDCWD,
                            d.as_ptr(),
                            libc::AT_FDCWD,
                            h.as_ptr(),
                            libc::RENAME_EXCHANGE,
                        )
                    };
                }
            }
        })
    };
    let mut leaked = None;
    for run in 0..500u32 {
        // Alternate owners so that every run changes every entry (a wider window).
        let _ = give_tree(&data, &user(4242 + run % 2));
        if owner(&secret) != (0, 0) || owner(&t.path().join("outside")) != (0, 0) {
            leaked = Some(run);
            break;
        }
    }
    stop.store(true, Ordering::Relaxed);
    racer.join().unwrap();
    assert_eq!(
        leaked, None,
        "the file outside data_dir changed owner in run {leaked:?}"
    );
    // With the racer stopped and every directory back in place, the walk still does its job.
    for i in 0..DIRS {
        let d = data.join(format!("mail/d{i}"));
        if std::fs::symlink_metadata(&d).unwrap().is_symlink() {
            std::fs::remove_file(&d).unwrap();
            std::fs::rename(hold.join(format!("d{i}")), &d).unwrap();
        }
    }
    give_tree(&data, &user(4242)).unwrap();
    assert_eq!(owner(&data.join("mail/d7/secret")), (4242, 4242));
}
