//! The queue runner against a fake clock and a destination that never takes mail (no relay:
//! every remote recipient is deferred): the retry schedule, one "delayed" DSN, the expiry
//! bounce, never a DSN to `<>`, and forwarding — days of queue life in milliseconds, no
//! sleeping, nothing timed.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mta::queue::schedule::SchedConfig;
use mta::queue::{RetryPolicy, Runner, Verdict};
use store::clock::{Clock, FakeClock};
use store::directory::Directory;
use store::outcome::{Entry, Mark, Outcome};
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
    /// Ids the runner queued itself (DSNs, forwarded copies).
    resubmitted: mpsc::UnboundedReceiver<String>,
}

fn world() -> World {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_path_buf();
    let directory = Arc::new(Directory::open(&data).expect("directory"));
    directory.add_domain("example.test").expect("domain");
    directory
        .add_user("alice@example.test", "pw")
        .expect("user");
    directory
        .add_alias(
            "fwd@example.test",
            &[
                "alice@example.test".to_string(),
                "out@remote.test".to_string(),
            ],
        )
        .expect("alias");
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
            schedule: vec![Duration::from_secs(600), Duration::from_secs(HOUR)],
            max_lifetime: Duration::from_secs(48 * HOUR),
            delay_warning_after: Some(Duration::from_secs(4 * HOUR)),
        },
        resubmit,
        forward_failures: Arc::default(),
        clock: clock.clone(),
        dkim: None,
        srs_secret: None,
        quotas: None,
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

async fn enqueue(w: &World, sender: &str, rcpts: &[&str], origin: Origin<'_>) -> String {
    let id = store::spool::new_id();
    let rcpts: Vec<String> = rcpts.iter().map(|s| s.to_string()).collect();
    w.spool
        .enqueue(
            &id,
            sender,
            &rcpts,
            &origin,
            w.clock.unix(),
            &[b"Subject: waiting\r\nX-Mark: 7\r\n\r\nbody\r\n"],
        )
        .await
        .expect("enqueue");
    id
}

fn hours(h: u64) -> Duration {
    Duration::from_secs(h * HOUR)
}

/// The reports the runner queued so far: (sender, recipients, message) of each.
fn reports(w: &mut World) -> Vec<(String, Vec<String>, Vec<u8>)> {
    let mut out = Vec::new();
    while let Ok(id) = w.resubmitted.try_recv() {
        let (env, msg) = w.spool.read(&id).expect("queued report");
        out.push((env.sender, env.recipients, msg));
    }
    out
}

#[tokio::test]
async fn retry_schedule_delay_warning_once_then_expiry_bounce() {
    let mut w = world();
    let id = enqueue(
        &w,
        "alice@example.test",
        &["bob@remote.test"],
        Origin::client("t"),
    )
    .await;

    // Attempts 1 and 2 follow the schedule; the last pause repeats.
    assert_eq!(
        w.runner.attempt(&id, false).await,
        Verdict::Deferred(Duration::from_secs(600))
    );
    assert_eq!(
        w.runner.attempt(&id, true).await,
        Verdict::Deferred(hours(1))
    );
    assert_eq!(
        w.runner.attempt(&id, true).await,
        Verdict::Deferred(hours(1))
    );
    // The state log says when the next attempt is.
    let log = w.spool.log(&id).expect("log");
    let Some(Entry::Rcpt(
        0,
        Outcome::Deferred {
            next_attempt,
            reply,
        },
    )) = log.last()
    else {
        panic!("{log:?}")
    };
    assert_eq!(*next_attempt, Some(START + HOUR));
    assert!(
        reply.contains("relay to other domains is disabled"),
        "{reply}"
    );
    assert!(
        reports(&mut w).is_empty(),
        "no report before delay_warning_after"
    );

    // Past delay_warning_after: one "delayed" report, then never again.
    w.clock.advance(hours(5));
    assert!(matches!(
        w.runner.attempt(&id, true).await,
        Verdict::Deferred(_)
    ));
    let r = reports(&mut w);
    assert_eq!(r.len(), 1, "one delayed report");
    let (sender, rcpts, msg) = &r[0];
    assert_eq!(
        (sender.as_str(), rcpts.as_slice()),
        ("", &["alice@example.test".to_string()][..])
    );
    let text = String::from_utf8_lossy(msg);
    assert!(
        text.contains("Action: delayed") && text.contains("X-Mark: 7"),
        "{text}"
    );
    assert!(w
        .spool
        .log(&id)
        .expect("log")
        .contains(&Entry::Mark(Mark::Warned)));
    w.clock.advance(hours(5));
    assert!(matches!(
        w.runner.attempt(&id, true).await,
        Verdict::Deferred(_)
    ));
    assert!(
        reports(&mut w).is_empty(),
        "the delay warning goes out once"
    );

    // Past max_queue_lifetime: the deferral becomes a 4.4.7 failure, one report, gone.
    w.clock.advance(hours(40));
    assert_eq!(w.runner.attempt(&id, true).await, Verdict::Done);
    let r = reports(&mut w);
    assert_eq!(r.len(), 1);
    let text = String::from_utf8_lossy(&r[0].2);
    assert!(
        text.contains("Action: failed") && text.contains("Status: 4.4.7"),
        "{text}"
    );
    assert!(
        w.spool.list().expect("list").iter().all(|q| *q != id),
        "expired message left"
    );
}

#[tokio::test]
async fn never_a_report_to_the_null_sender() {
    let mut w = world();
    let id = enqueue(&w, "", &["bob@remote.test"], Origin::client("t")).await;
    assert!(matches!(
        w.runner.attempt(&id, false).await,
        Verdict::Deferred(_)
    ));
    w.clock.advance(hours(5));
    assert!(matches!(
        w.runner.attempt(&id, true).await,
        Verdict::Deferred(_)
    ));
    w.clock.advance(hours(50));
    assert_eq!(w.runner.attempt(&id, true).await, Verdict::Done);
    assert!(reports(&mut w).is_empty(), "a report to <>");
}

#[tokio::test]
async fn unknown_local_recipient_bounces_at_once() {
    let mut w = world();
    let id = enqueue(
        &w,
        "alice@example.test",
        &["nobody@example.test", "alice@example.test"],
        Origin::client("t"),
    )
    .await;
    assert_eq!(w.runner.attempt(&id, false).await, Verdict::Done);
    let r = reports(&mut w);
    assert_eq!(r.len(), 1);
    let text = String::from_utf8_lossy(&r[0].2);
    assert!(
        text.contains("Final-Recipient: rfc822; nobody@example.test"),
        "{text}"
    );
    assert!(text.contains("Status: 5.1.1"), "{text}");
    let copies = std::fs::read_dir(w.data.join("mail/example.test/alice/Maildir/new"))
        .expect("alice's new/")
        .count();
    assert_eq!(copies, 1);
}

#[tokio::test]
async fn forwarding_queues_a_copy_with_the_sender_and_its_notify_rule() {
    let mut w = world();
    // A verified sender: the forwarded copy may bounce to it.
    let verified = Origin {
        client: "t",
        sender_verified: true,
        notify_never: false,
        require_tls: false,
    };
    let id = enqueue(&w, "someone@else.test", &["fwd@example.test"], verified).await;
    assert_eq!(w.runner.attempt(&id, false).await, Verdict::Done);
    let mut queued = Vec::new();
    while let Ok(q) = w.resubmitted.try_recv() {
        queued.push(q);
    }
    assert_eq!(queued.len(), 1, "one forwarded copy");
    let (env, msg) = w.spool.read(&queued[0]).expect("forwarded copy");
    assert_eq!(env.sender, "someone@else.test");
    assert_eq!(env.recipients, vec!["out@remote.test".to_string()]);
    assert!(!env.notify_never);
    assert!(msg.ends_with(b"\r\n\r\nbody\r\n"));
    // An unverified sender: the copy carries `notify never` (no backscatter).
    let id = enqueue(
        &w,
        "victim@else.test",
        &["fwd@example.test"],
        Origin::client("t"),
    )
    .await;
    assert_eq!(w.runner.attempt(&id, false).await, Verdict::Done);
    let q = w.resubmitted.try_recv().expect("forwarded copy");
    let (env, _) = w.spool.read(&q).expect("read");
    assert!(env.notify_never);
    // Its expiry produces no report.
    w.clock.advance(hours(60));
    assert_eq!(w.runner.attempt(&q, true).await, Verdict::Done);
    assert!(reports(&mut w).is_empty());
}
