//! The queue runner and full mailboxes (issue 13, item 6): a copy for an account at its quota
//! is deferred with `4.2.2 Mailbox full` (an alias's other copies delivered once), retried,
//! delivered once there is room, and at the end of the queue lifetime bounced to the sender
//! with `Status: 5.2.2`. A fake clock: days of queue life without sleeping.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use mta::queue::schedule::SchedConfig;
use mta::queue::{RetryPolicy, Runner, Verdict};
use store::clock::{Clock, FakeClock};
use store::directory::Directory;
use store::outcome::{Entry, Outcome};
use store::quota::Quotas;
use store::spool::{Origin, Spool};
use tokio::sync::mpsc;

const START: u64 = 1_800_000_000;
const HOUR: u64 = 3600;

struct World {
    _dir: tempfile::TempDir,
    data: PathBuf,
    spool: Arc<Spool>,
    clock: Arc<FakeClock>,
    runner: Arc<Runner>,
    resubmitted: mpsc::UnboundedReceiver<String>,
}

fn world(with_quotas: bool) -> World {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_path_buf();
    let directory = Arc::new(Directory::open(&data).expect("directory"));
    directory.add_domain("example.test").expect("domain");
    for u in ["alice", "bob", "carol"] {
        directory
            .add_user(&format!("{u}@example.test"), "pw")
            .expect("user");
    }
    directory
        .add_alias(
            "team@example.test",
            &[
                "alice@example.test".to_string(),
                "bob@example.test".to_string(),
            ],
        )
        .expect("alias");
    let quotas = Arc::new(Quotas::open(&data).expect("quotas"));
    quotas
        .set_account("alice@example.test", Some(100))
        .expect("quota");
    let spool = Arc::new(Spool::open_and_recover(&data).expect("spool"));
    let clock = Arc::new(FakeClock::new(START));
    let (resubmit, resubmitted) = mpsc::unbounded_channel();
    let runner = Arc::new(Runner {
        directory,
        spool: spool.clone(),
        data_dir: data.clone(),
        hostname: "mx.example.test".into(),
        postmaster: None,
        sched: SchedConfig::default(),
        relay: None,
        retry: RetryPolicy {
            schedule: vec![Duration::from_secs(600)],
            max_lifetime: Duration::from_secs(48 * HOUR),
            delay_warning_after: None,
        },
        resubmit,
        forward_failures: Arc::default(),
        clock: clock.clone(),
        dkim: None,
        srs_secret: None,
        quotas: with_quotas.then_some(quotas),
    });
    World {
        _dir: dir,
        data,
        spool,
        clock,
        runner,
        resubmitted,
    }
}

async fn enqueue(w: &World, rcpt: &str, body: &[u8]) -> String {
    let id = store::spool::new_id();
    w.spool
        .enqueue(
            &id,
            "carol@example.test",
            &[rcpt.to_string()],
            &Origin::client("t"),
            w.clock.unix(),
            &[body],
        )
        .await
        .expect("enqueue");
    id
}

fn maildir(w: &World, user: &str) -> PathBuf {
    w.data.join(format!("mail/example.test/{user}/Maildir"))
}

fn files(root: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = ["new", "cur"]
        .iter()
        .flat_map(|s| std::fs::read_dir(root.join(s)).into_iter().flatten())
        .map(|e| e.expect("entry").path())
        .collect();
    out.sort();
    out
}

/// Fills alice's mailbox past its quota of 100 octets with one message.
async fn fill_alice(w: &World) {
    let id = enqueue(w, "alice@example.test", &[b'f'; 200]).await;
    assert_eq!(w.runner.attempt(&id, false).await, Verdict::Done);
    assert_eq!(files(&maildir(w, "alice")).len(), 1);
}

fn last_outcome(w: &World, id: &str) -> Outcome {
    match w.spool.log(id).expect("log").last() {
        Some(Entry::Rcpt(0, o)) => o.clone(),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn an_alias_copy_for_a_full_mailbox_waits_in_the_queue_until_there_is_room() {
    let w = world(true);
    fill_alice(&w).await;
    let body = b"Subject: for the team\r\n\r\nhello\r\n";
    let id = enqueue(&w, "team@example.test", body).await;
    assert_eq!(
        w.runner.attempt(&id, false).await,
        Verdict::Deferred(Duration::from_secs(600))
    );
    let Outcome::Deferred { reply, .. } = last_outcome(&w, &id) else {
        panic!("not deferred")
    };
    assert_eq!(reply, "4.2.2 Mailbox full");
    // Bob's copy went; alice's did not.
    assert_eq!(files(&maildir(&w, "bob")).len(), 1);
    assert_eq!(files(&maildir(&w, "alice")).len(), 1);
    // Still full: deferred again, bob's copy not written twice.
    w.clock.advance(Duration::from_secs(600));
    assert!(matches!(
        w.runner.attempt(&id, true).await,
        Verdict::Deferred(_)
    ));
    assert_eq!(files(&maildir(&w, "bob")).len(), 1);
    // Room again (what POP3's DELE does: unlink, then a negative line in maildirsize).
    let big = files(&maildir(&w, "alice")).remove(0);
    let size = std::fs::metadata(&big).expect("stat").len();
    std::fs::remove_file(&big).expect("unlink");
    store::quota::removed(&maildir(&w, "alice"), size, 1);
    assert_eq!(w.runner.attempt(&id, true).await, Verdict::Done);
    let alice = files(&maildir(&w, "alice"));
    assert_eq!(alice.len(), 1);
    let copy = std::fs::read(&alice[0]).expect("read");
    assert!(copy.ends_with(body), "{}", String::from_utf8_lossy(&copy));
    assert_eq!(files(&maildir(&w, "bob")).len(), 1);
    assert!(w.spool.list().expect("list").iter().all(|q| *q != id));
    assert_eq!(
        store::quota::usage(&maildir(&w, "alice"), Some(100))
            .expect("usage")
            .0,
        copy.len() as u64
    );
}

#[tokio::test]
async fn a_copy_still_over_quota_at_the_end_of_the_queue_lifetime_bounces_with_5_2_2() {
    let mut w = world(true);
    fill_alice(&w).await;
    let id = enqueue(
        &w,
        "alice@example.test",
        b"Subject: late\r\nX-Mark: 9\r\n\r\nx\r\n",
    )
    .await;
    assert!(matches!(
        w.runner.attempt(&id, false).await,
        Verdict::Deferred(_)
    ));
    while w.resubmitted.try_recv().is_ok() {}
    w.clock.advance(Duration::from_secs(49 * HOUR));
    assert_eq!(w.runner.attempt(&id, true).await, Verdict::Done);
    let dsn = w.resubmitted.try_recv().expect("a DSN was queued");
    let (env, msg) = w.spool.read(&dsn).expect("DSN");
    assert_eq!(env.sender, "");
    assert_eq!(env.recipients, vec!["carol@example.test".to_string()]);
    let text = String::from_utf8_lossy(&msg);
    assert!(
        text.contains("Action: failed")
            && text.contains("Status: 5.2.2")
            && text.contains("Final-Recipient: rfc822; alice@example.test")
            && text.contains("X-Mark: 9"),
        "{text}"
    );
    assert_eq!(files(&maildir(&w, "alice")).len(), 1);
}

#[tokio::test]
async fn without_quotas_the_runner_writes_every_copy() {
    let w = world(false);
    fill_alice(&w).await;
    let id = enqueue(&w, "team@example.test", b"Subject: t\r\n\r\nx\r\n").await;
    assert_eq!(w.runner.attempt(&id, false).await, Verdict::Done);
    assert_eq!(files(&maildir(&w, "alice")).len(), 2);
}
