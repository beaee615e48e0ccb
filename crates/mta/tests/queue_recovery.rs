//! Recovery of the queue runner, deterministic: no process is killed; the states a crash
//! leaves are made by hand (a spool file whose removal was lost, a copy that failed while the
//! others were written) and the runner must end with exactly one copy per account.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use mta::queue::{RetryPolicy, Runner, Verdict};
use store::directory::Directory;
use store::durable::Recorder;
use store::spool::{Origin, Spool};
use tokio::sync::mpsc;

struct World {
    _dir: tempfile::TempDir,
    data: PathBuf,
    spool: Arc<Spool>,
    recorder: Arc<Recorder>,
    delivery: Arc<Runner>,
}

fn world() -> World {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_path_buf();
    let directory = Arc::new(Directory::open(&data).expect("directory"));
    directory.add_domain("example.test").expect("domain");
    for u in ["alice", "bob", "carol"] {
        directory
            .add_user(&format!("{u}@example.test"), "pw")
            .expect("user");
    }
    // Two addresses of one account: still one copy.
    directory
        .add_alias("team@example.test", &["alice@example.test".to_string()])
        .expect("alias");
    let recorder = Recorder::new();
    let spool =
        Arc::new(Spool::open_and_recover_with_disk(&data, recorder.clone()).expect("spool"));
    let (resubmit, _rx) = mpsc::unbounded_channel();
    // The receiver is dropped: nothing here makes new messages (no forwarding, no DSN).
    let delivery = Arc::new(Runner {
        directory,
        spool: spool.clone(),
        data_dir: data.clone(),
        hostname: "mx.example.test".into(),
        postmaster: None,
        sched: mta::queue::schedule::SchedConfig::default(),
        relay: None,
        retry: RetryPolicy {
            schedule: vec![Duration::from_secs(60)],
            max_lifetime: Duration::from_secs(86_400),
            delay_warning_after: None,
        },
        resubmit,
        forward_failures: Arc::default(),
        clock: Arc::new(store::clock::SystemClock),
        dkim: None,
        srs_secret: None,
        quotas: None,
    });
    World {
        _dir: dir,
        data,
        spool,
        recorder,
        delivery,
    }
}

const RCPTS: [&str; 4] = [
    "alice@example.test",
    "bob@example.test",
    "team@example.test",
    "carol@example.test",
];

async fn enqueue(w: &World) -> String {
    let id = store::spool::new_id();
    let rcpts: Vec<String> = RCPTS.iter().map(|s| s.to_string()).collect();
    w.spool
        .enqueue(
            &id,
            "s@sender.test",
            &rcpts,
            &Origin::client("test"),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_secs(),
            &[b"Subject: once\r\n\r\nexactly once\r\n"],
        )
        .await
        .expect("enqueue");
    id
}

fn copies(data: &Path, user: &str) -> Vec<Vec<u8>> {
    let md = data.join("mail/example.test").join(user).join("Maildir");
    let mut out = Vec::new();
    for sub in ["new", "cur"] {
        if let Ok(dir) = std::fs::read_dir(md.join(sub)) {
            for e in dir.flatten() {
                out.push(std::fs::read(e.path()).expect("read copy"));
            }
        }
    }
    out
}

fn assert_one_copy_each(w: &World) {
    for user in ["alice", "bob", "carol"] {
        let c = copies(&w.data, user);
        assert_eq!(c.len(), 1, "{user} has {} copies", c.len());
        assert!(c[0].starts_with(b"Return-Path: <s@sender.test>\r\n"));
        assert!(c[0].ends_with(b"\r\n\r\nexactly once\r\n"));
    }
}

#[tokio::test]
async fn spool_removal_lost_in_a_crash_delivers_nothing_twice() {
    let w = world();
    let id = enqueue(&w).await;
    let record = w.data.join("queue/msg").join(&id);
    let saved = std::fs::read(&record).expect("spool file");
    assert_eq!(w.delivery.attempt(&id, false).await, Verdict::Done);
    assert_one_copy_each(&w);
    assert!(!record.exists(), "delivered message left the spool");
    // The crash: every copy was written, the spool removal was not on disk yet.
    std::fs::write(&record, &saved).expect("restore");
    assert_eq!(w.spool.list().expect("list"), vec![id.clone()]);
    assert_eq!(w.delivery.attempt(&id, true).await, Verdict::Done);
    assert_one_copy_each(&w);
    assert!(w.spool.list().expect("list").is_empty());
}

#[tokio::test]
async fn one_failed_copy_is_retried_alone() {
    let w = world();
    let id = enqueue(&w).await;
    // bob's disk fails once: alice and carol get theirs, bob waits.
    w.recorder.fail_next_file_sync("/bob/Maildir/tmp/");
    let first = w.delivery.attempt(&id, false).await;
    assert!(matches!(first, Verdict::Deferred(_)), "{first:?}");
    assert_eq!(copies(&w.data, "alice").len(), 1);
    assert_eq!(copies(&w.data, "carol").len(), 1);
    assert!(copies(&w.data, "bob").is_empty());
    // `queue list`'s view: bob deferred, the others done.
    let log = w.spool.log(&id).expect("state");
    let st = store::queue_status::MessageStatus::from_log(RCPTS.len(), &log);
    let states: Vec<&str> = st.recipients.iter().map(|r| r.state.as_str()).collect();
    assert_eq!(states, vec!["done", "pending", "done", "done"]);
    assert!(
        st.recipients[1]
            .last_text()
            .contains("local delivery failed"),
        "{:?}",
        st.recipients[1]
    );
    // The retry (as after a restart: everything in the spool is due) finishes the job.
    assert_eq!(w.delivery.attempt(&id, true).await, Verdict::Done);
    assert_one_copy_each(&w);
}

#[tokio::test]
async fn a_copy_written_before_a_crash_is_found_not_rewritten() {
    let w = world();
    let id = enqueue(&w).await;
    // First attempt delivers bob's copy only (alice's and carol's fsyncs fail), as if the
    // process had died right after bob's copy.
    w.recorder.fail_next_file_sync("/alice/Maildir/tmp/");
    w.recorder.fail_next_file_sync("/carol/Maildir/tmp/");
    assert!(matches!(
        w.delivery.attempt(&id, false).await,
        Verdict::Deferred(_)
    ));
    assert_eq!(copies(&w.data, "bob").len(), 1);
    // Forget the state log too (a crash before it was written): only the Maildir names can
    // tell that bob's copy exists.
    let _ = std::fs::remove_file(w.data.join("queue/msg").join(format!("{id}.state")));
    assert_eq!(w.delivery.attempt(&id, true).await, Verdict::Done);
    assert_one_copy_each(&w);
}
