//! Unit tests of `recycle`: reuse happens, never shows a reader another message's bytes, and
//! recovery drops what a crash can leave.
use std::io::Read;
use std::os::unix::fs::MetadataExt;

use super::super::{new_id, Origin, Spool};

async fn queue(spool: &Spool, message: &[u8]) -> String {
    let id = new_id();
    spool
        .enqueue(
            &id,
            "a@example.org",
            &["b@example.net".to_string()],
            &Origin::client("test"),
            1,
            &[message],
        )
        .await
        .unwrap();
    id
}

fn inode(spool: &Spool, id: &str) -> u64 {
    std::fs::metadata(spool.msg.join(id)).unwrap().ino()
}

#[tokio::test]
async fn a_delivered_file_carries_the_next_message_and_nothing_of_the_old() {
    let t = tempfile::tempdir().unwrap();
    let spool = Spool::open_and_recover(t.path()).unwrap();
    let long = vec![b'x'; 200_000];
    let first = queue(&spool, &long).await;
    let first_inode = inode(&spool, &first);
    spool.remove_delivered(&first).unwrap();
    assert_eq!(spool.recycled(), 1);
    assert!(!spool.msg.join(&first).exists(), "gone from msg/");
    assert_eq!(
        std::fs::metadata(spool.tmp.join("free-0")).unwrap().len(),
        0
    );

    let second = queue(&spool, b"Subject: short\r\n\r\nhi\r\n").await;
    assert_eq!(inode(&spool, &second), first_inode, "the same file, reused");
    let (env, bytes) = spool.read(&second).unwrap();
    assert_eq!(env.recipients, ["b@example.net"]);
    assert_eq!(
        bytes, b"Subject: short\r\n\r\nhi\r\n",
        "no byte of the old message"
    );
    assert_eq!(std::fs::read_dir(&spool.tmp).unwrap().count(), 0);
}

#[tokio::test]
async fn a_reader_keeps_the_bytes_it_opened() {
    let t = tempfile::tempdir().unwrap();
    let spool = Spool::open_and_recover(t.path()).unwrap();
    let first = queue(&spool, b"first message\r\n").await;
    let (_, body) = spool.open_message(&first).unwrap();
    // The runner finishes while a reader (say `mailroom queue show`) still has it open.
    spool.remove_delivered(&first).unwrap();
    assert_eq!(spool.recycled(), 0, "an open file is unlinked, not reused");
    let _second = queue(&spool, b"second message, another recipient\r\n").await;
    let mut seen = Vec::new();
    body.reader().read_to_end(&mut seen).unwrap();
    assert_eq!(seen, b"first message\r\n");
    assert!(matches!(
        spool.open_message(&first).map(|_| ()).unwrap_err().kind(),
        std::io::ErrorKind::NotFound
    ));
}

#[tokio::test]
async fn a_reader_that_opened_before_the_reuse_finds_the_message_gone() {
    let t = tempfile::tempdir().unwrap();
    let spool = Spool::open_and_recover(t.path()).unwrap();
    let first = queue(&spool, b"first\r\n").await;
    let path = spool.msg.join(&first);
    // Opened (not yet locked) before the file is recycled and reused.
    let early = std::fs::File::open(&path).unwrap();
    spool.remove_delivered(&first).unwrap();
    assert_eq!(spool.recycled(), 1);
    let second = queue(&spool, b"second\r\n").await;
    assert_eq!(early.metadata().unwrap().ino(), inode(&spool, &second));
    // What open_shared does after its open: lock, then check the name.
    let err = super::lock_shared_named(early, &path).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
}

#[tokio::test]
async fn recovery_drops_emptied_files_and_the_pool() {
    let t = tempfile::tempdir().unwrap();
    let spool = Spool::open_and_recover(t.path()).unwrap();
    let kept = queue(&spool, b"kept\r\n").await;
    let gone = queue(&spool, b"delivered\r\n").await;
    spool.remove_delivered(&gone).unwrap();
    // A crash that kept the emptying of a recycled file but lost its rename.
    std::fs::write(spool.msg.join(crate::spool::new_id()), b"").unwrap();
    drop(spool);
    let spool = Spool::open_and_recover(t.path()).unwrap();
    assert_eq!(spool.list().unwrap(), std::slice::from_ref(&kept));
    assert_eq!(std::fs::read_dir(&spool.tmp).unwrap().count(), 0);
    assert_eq!(spool.read(&kept).unwrap().1, b"kept\r\n");
}

#[tokio::test]
async fn the_pool_is_bounded() {
    let t = tempfile::tempdir().unwrap();
    let mut spool = Spool::open_and_recover(t.path()).unwrap();
    assert_eq!(spool.max_free, super::MAX_FREE);
    spool.max_free = 8;
    let mut ids = Vec::new();
    for _ in 0..spool.max_free + 3 {
        ids.push(queue(&spool, b"m\r\n").await);
    }
    for id in &ids {
        spool.remove_delivered(id).unwrap();
    }
    assert_eq!(spool.recycled(), 8);
    assert_eq!(std::fs::read_dir(&spool.tmp).unwrap().count(), 8);
    assert!(spool.list().unwrap().is_empty());
}
