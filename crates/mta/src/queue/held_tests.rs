use super::*;

use crate::relay::BLOCK;

use store::spool::{Origin, Spool};

/// The budget is process-wide: these tests take it in turn (other tests only find it full
/// at times, and then read from the spool, as they should).
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn queued(spool: &Spool, body: &[u8]) -> Body {
    let id = store::spool::new_id();
    spool
        .enqueue(
            &id,
            "a@example.org",
            &["b@remote.example".to_string()],
            &Origin::client("c"),
            1,
            &[body],
        )
        .await
        .expect("enqueue");
    spool.open_message(&id).expect("open").1
}

fn bytes(b: &MessageBody) -> Vec<u8> {
    match b {
        MessageBody::Bytes(b) => b.to_vec(),
        MessageBody::Spool(_) => panic!("not held in memory"),
    }
}

#[tokio::test]
async fn a_message_up_to_the_largest_is_held_whole_a_larger_one_is_not() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let t = tempfile::tempdir().expect("tempdir");
    let spool = Spool::open(t.path()).expect("spool");
    let small = b"Subject: s\r\n\r\nsmall\r\n".to_vec();
    let held = Held::load(&queued(&spool, &small).await)
        .expect("read")
        .expect("held");
    assert_eq!(bytes(&held.body()), small);
    let mut block = b"Subject: b\r\n\r\n".to_vec();
    block.resize(BLOCK, b'x');
    let held = Held::load(&queued(&spool, &block).await)
        .expect("read")
        .expect("held");
    assert_eq!(bytes(&held.body()), block);
    let mut largest = block.clone();
    largest.resize(LARGEST as usize, b'z');
    let held = Held::load(&queued(&spool, &largest).await)
        .expect("read")
        .expect("held");
    assert_eq!(bytes(&held.body()), largest);
    let mut larger = largest.clone();
    larger.push(b'y');
    assert!(Held::load(&queued(&spool, &larger).await)
        .expect("read")
        .is_none());
}

#[tokio::test]
async fn what_is_held_counts_against_the_budget_until_dropped() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let t = tempfile::tempdir().expect("tempdir");
    let spool = Spool::open(t.path()).expect("spool");
    let mut block = b"Subject: b\r\n\r\n".to_vec();
    block.resize(BLOCK, b'x');
    let body = queued(&spool, &block).await;
    // More than the budget in all, one at a time: each charge comes back when it is dropped.
    for _ in 0..(BUDGET / BLOCK + 8) {
        let held = Held::load(&body).expect("read");
        assert!(held.is_some(), "budget not given back");
    }
    // Held together, the budget ends it (the other tests of this process hold little).
    let mut all = Vec::new();
    while let Some(h) = Held::load(&body).expect("read") {
        all.push(h);
        assert!(all.len() <= BUDGET / BLOCK, "held past the budget");
    }
    assert!(all.len() >= BUDGET / BLOCK - 8, "{} held", all.len());
    assert!(held() <= BUDGET);
    drop(all);
    assert!(Held::load(&body).expect("read").is_some());
}
