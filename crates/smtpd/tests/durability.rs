//! No `250` before the message is on stable storage, seen from the outside: a real `smtpd` on
//! 127.0.0.1 writes through a `store::durable::Recorder`, a raw SMTP client notes when the
//! `250` arrives, and the recorded steps must read "file fsync -> rename -> directory fsync ->
//! 250" for the spool copy, and for every Maildir copy of a direct delivery. A failed spool
//! fsync must give `451` and leave nothing visible (no file in `queue/msg/` or in any `new/`);
//! a failed direct copy keeps the other copies and queues the message for the rest, durably,
//! before the `250`.
//!
//! A SIGKILL keeps the page cache, so the crash tests cannot see a missing fsync; these can:
//! remove any `sync_file`/`sync_dir` call in `store::maildir` or `store::spool` and a test here
//! fails.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use mda::Mda;
use proto::smtp::{Service, SessionConfig};
use smtpd::direct::Direct;
use smtpd::policy::DirectoryPolicy;
use smtpd::{Smtpd, SmtpdConfig};
use store::admission::AdmissionLimits;
use store::admission_gate::Gate;
use store::directory::Directory;
use store::durable::{check_durable_before, Recorder, Step};
use store::login_guard::{LoginGuard, LoginLimits};
use store::spool::Spool;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

struct World {
    _dir: tempfile::TempDir,
    data: PathBuf,
    recorder: Arc<Recorder>,
    port: u16,
    _shutdown: watch::Sender<bool>,
}

async fn world(direct_on: bool) -> World {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_path_buf();
    let directory = Arc::new(Directory::open(&data).expect("directory"));
    directory.add_domain("example.test").expect("domain");
    directory
        .add_user("alice@example.test", "pw")
        .expect("user");
    directory.add_user("bob@example.test", "pw").expect("user");
    let recorder = Recorder::new();
    let spool =
        Arc::new(Spool::open_and_recover_with_disk(&data, recorder.clone()).expect("spool"));
    let (queued_tx, _queued_rx) = mpsc::unbounded_channel();
    let direct = Arc::new(Direct {
        directory: directory.clone(),
        postmaster: None,
        mda: Mda::new(&data, "mx.example.test", spool.disk()),
    });
    let guard = Arc::new(LoginGuard::new(LoginLimits::default()));
    let smtpd = Arc::new(Smtpd {
        config: SmtpdConfig {
            session: Arc::new(SessionConfig::new("mx.example.test", Service::Mx)),
            trusted_networks: Vec::new(),
            command_timeout: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(1),
            max_session_time: Duration::from_secs(60),
            stress_timeout: Duration::from_secs(10),
            stress_max_errors: 3,
            greet_delay: Duration::ZERO,
        },
        policy: Arc::new(DirectoryPolicy::new(directory.clone(), None)),
        spool,
        queued: queued_tx,
        gate: Gate::new("smtpd", AdmissionLimits::new(10, 10, 10, 75)),
        tls: None,
        auth: Arc::new(smtpd::auth::SmtpAuth::new(directory, guard)),
        direct: direct_on.then_some(direct),
        verifier: None,
        dkim: None,
        filters: None,
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (shutdown, rx) = watch::channel(false);
    tokio::spawn(smtpd::serve(listener, smtpd, rx));
    World {
        _dir: dir,
        data,
        recorder,
        port,
        _shutdown: shutdown,
    }
}

/// One SMTP reply (the last line of a multi-line one).
async fn reply(io: &mut BufReader<TcpStream>) -> String {
    loop {
        let mut l = String::new();
        io.read_line(&mut l).await.expect("read");
        assert!(!l.is_empty(), "connection closed");
        if l.as_bytes().get(3) != Some(&b'-') {
            return l;
        }
    }
}

/// Sends one message; notes "ack" in the recorder the moment the final reply is read, and
/// returns that reply.
async fn send(w: &World, rcpts: &[&str]) -> String {
    let tcp = TcpStream::connect(("127.0.0.1", w.port))
        .await
        .expect("connect");
    let mut io = BufReader::new(tcp);
    let greeting = reply(&mut io).await;
    assert!(greeting.starts_with("220"), "{greeting}");
    let mut cmds = String::from("EHLO client.test\r\nMAIL FROM:<s@sender.test>\r\n");
    for r in rcpts {
        cmds.push_str(&format!("RCPT TO:<{r}>\r\n"));
    }
    cmds.push_str("DATA\r\n");
    io.get_mut()
        .write_all(cmds.as_bytes())
        .await
        .expect("write");
    for _ in 0..2 + rcpts.len() {
        let r = reply(&mut io).await;
        assert!(r.starts_with("250"), "{r}");
    }
    let r = reply(&mut io).await;
    assert!(r.starts_with("354"), "{r}");
    io.get_mut()
        .write_all(b"Subject: durable\r\n\r\nbody\r\n.\r\n")
        .await
        .expect("write");
    let last = reply(&mut io).await;
    w.recorder.note("ack");
    let _ = io.get_mut().write_all(b"QUIT\r\n").await;
    last
}

fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn maildir(w: &World, user: &str) -> PathBuf {
    w.data.join("mail/example.test").join(user).join("Maildir")
}

fn queue_id(reply: &str) -> String {
    reply
        .trim_end()
        .rsplit(' ')
        .next()
        .expect("queue id")
        .to_string()
}

#[tokio::test]
async fn spool_copy_is_durable_before_250() {
    let w = world(false).await;
    let reply = send(&w, &["alice@example.test"]).await;
    assert!(reply.starts_with("250 2.0.0"), "{reply}");
    let id = queue_id(&reply);
    let q = w.data.join("queue");
    let steps = w.recorder.steps();
    check_durable_before(
        &steps,
        &q.join("tmp").join(&id),
        &q.join("msg").join(&id),
        "ack",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(files(&q.join("msg")), vec![id]);
}

#[tokio::test]
async fn every_direct_copy_is_durable_before_250() {
    let w = world(true).await;
    let reply = send(&w, &["alice@example.test", "bob@example.test"]).await;
    assert!(reply.starts_with("250 2.0.0"), "{reply}");
    let steps = w.recorder.steps();
    for user in ["alice", "bob"] {
        let md = maildir(&w, user);
        let names = files(&md.join("new"));
        assert_eq!(names.len(), 1, "{user}: {names:?}");
        let name = &names[0];
        check_durable_before(
            &steps,
            &md.join("tmp").join(name),
            &md.join("new").join(name),
            "ack",
        )
        .unwrap_or_else(|e| panic!("{user}: {e}"));
    }
    // Direct delivery: no spool copy at all.
    assert!(files(&w.data.join("queue/msg")).is_empty());
}

#[tokio::test]
async fn failed_spool_fsyncs_give_451_and_leave_nothing() {
    let w = world(false).await;
    w.recorder.fail_next_file_sync("queue/tmp");
    let reply = send(&w, &["alice@example.test"]).await;
    assert!(reply.starts_with("451 4.3.0"), "{reply}");
    w.recorder.fail_next_dir_sync("queue/msg");
    let reply = send(&w, &["alice@example.test"]).await;
    assert!(reply.starts_with("451 4.3.0"), "{reply}");
    let q = w.data.join("queue");
    assert!(
        files(&q.join("msg")).is_empty(),
        "{:?}",
        files(&q.join("msg"))
    );
    assert!(files(&q.join("tmp")).is_empty());
    assert_eq!(
        w.recorder
            .steps()
            .iter()
            .filter(|s| matches!(s, Step::Failed(_)))
            .count(),
        2
    );
    // The disk is fine again: the next message is accepted.
    let reply = send(&w, &["alice@example.test"]).await;
    assert!(reply.starts_with("250 2.0.0"), "{reply}");
}

#[tokio::test]
async fn failed_direct_copy_is_queued_and_the_others_kept() {
    let w = world(true).await;
    // bob's copy fails: alice's stays, bob's recipient goes to the queue; the sender gets 250
    // (one broken mailbox never makes it retry for everybody).
    w.recorder.fail_next_file_sync("/bob/Maildir/tmp/");
    let reply = send(&w, &["alice@example.test", "bob@example.test"]).await;
    assert!(reply.starts_with("250 2.0.0"), "{reply}");
    let id = queue_id(&reply);
    let steps = w.recorder.steps();
    let alice = maildir(&w, "alice");
    let names = files(&alice.join("new"));
    assert_eq!(names.len(), 1, "{names:?}");
    check_durable_before(
        &steps,
        &alice.join("tmp").join(&names[0]),
        &alice.join("new").join(&names[0]),
        "ack",
    )
    .unwrap_or_else(|e| panic!("alice: {e}"));
    assert!(files(&maildir(&w, "bob").join("new")).is_empty());
    // The queue copy and its state log ("alice done") are durable before the 250.
    let q = w.data.join("queue");
    check_durable_before(
        &steps,
        &q.join("tmp").join(&id),
        &q.join("msg").join(&id),
        "ack",
    )
    .unwrap_or_else(|e| panic!("queue: {e}"));
    let state = q.join("msg").join(format!("{id}.state"));
    let synced = steps
        .iter()
        .position(|s| matches!(s, Step::SyncFile(p) if *p == state))
        .expect("state log fsynced");
    let acked = steps
        .iter()
        .position(|s| matches!(s, Step::Note(n) if n == "ack"))
        .expect("ack");
    assert!(synced < acked, "{steps:#?}");
    let spool = Spool::open(&w.data).expect("spool");
    let log = spool.log(&id).expect("log");
    assert_eq!(log.len(), 1, "{log:?}");
    assert!(matches!(
        &log[0],
        store::outcome::Entry::Rcpt(0, store::outcome::Outcome::Delivered { .. })
    ));
}

#[tokio::test]
async fn failed_direct_copy_and_failed_queue_give_451_and_leave_nothing() {
    let w = world(true).await;
    w.recorder.fail_next_file_sync("/bob/Maildir/tmp/");
    w.recorder.fail_next_file_sync("queue/tmp");
    let reply = send(&w, &["alice@example.test", "bob@example.test"]).await;
    assert!(reply.starts_with("451 4.3.0"), "{reply}");
    for user in ["alice", "bob"] {
        let md = maildir(&w, user);
        assert!(
            files(&md.join("new")).is_empty(),
            "{user}: {:?}",
            files(&md.join("new"))
        );
        assert!(
            files(&md.join("tmp")).is_empty(),
            "{user}: {:?}",
            files(&md.join("tmp"))
        );
    }
    assert!(files(&w.data.join("queue/msg")).is_empty());
    // alice's withdrawn copy: unlinked, then her new/ fsynced, before the 451.
    let steps = w.recorder.steps();
    let alice_new = maildir(&w, "alice").join("new");
    let failed = steps
        .iter()
        .rposition(|s| matches!(s, Step::Failed(_)))
        .expect("a failed step");
    let resynced = steps
        .iter()
        .skip(failed)
        .position(|s| matches!(s, Step::SyncDir(d) if *d == alice_new));
    assert!(resynced.is_some(), "{steps:#?}");
}
