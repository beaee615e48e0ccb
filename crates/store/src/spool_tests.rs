//! Unit tests of `spool` (kept in their own file so `spool.rs` stays readable).
use super::*;
use crate::outcome::{Entry, Outcome};
use std::io::Read;

impl Spool {
    /// The old one-call form: a fresh id, one part.
    async fn enqueue_new(
        &self,
        sender: &str,
        recipients: &[String],
        client: &str,
        received: u64,
        message: &[u8],
    ) -> io::Result<String> {
        let id = new_id();
        self.enqueue(
            &id,
            sender,
            recipients,
            &Origin::client(client),
            received,
            &[message],
        )
        .await
        .map(|()| id)
    }
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

#[test]
fn ids_are_well_formed_unique_and_sorted() {
    let ids: Vec<String> = (0..1000).map(|_| new_id()).collect();
    for id in &ids {
        assert!(is_id(id), "{id}");
    }
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(sorted, ids, "ids sort in creation order");
    let set: HashSet<&String> = ids.iter().collect();
    assert_eq!(set.len(), ids.len());
    assert!(!is_id("../../etc/passwd"));
    assert!(!is_id("0123456789abcdef"));
}

#[test]
fn escape_round_trip() {
    for v in ["", "a b", "%", "%41", "x\r\ny\0z\x7f", "ünï€"] {
        let e = escape(v);
        assert!(!e.bytes().any(|b| b < 0x20 || b == 0x7f), "{e:?}");
        assert_eq!(unescape(e.as_bytes()).expect("unescape"), v);
    }
    assert!(unescape(b"%4").is_err());
    assert!(unescape(b"%zz").is_err());
    assert!(unescape(b"a\rb").is_err());
    assert!(unescape(b"%FF").is_err());
}

#[tokio::test]
async fn round_trip_binary() {
    let t = tempfile::tempdir().expect("tempdir");
    let spool = Spool::open(t.path()).expect("open");
    let msg: &[u8] = b"Subject: x\r\n\r\n\0\x80\xff bare\rcr\n\nMAILROOM-QUEUE 1\n";
    let id = spool
        .enqueue_new(
            "",
            &s(&["a@example.org", "B@remote.net"]),
            "helo mx.example [192.0.2.1]",
            1700000000,
            msg,
        )
        .await
        .expect("enqueue");
    assert!(is_id(&id));
    assert_eq!(spool.list().expect("list"), vec![id.clone()]);
    let (env, body) = spool.read(&id).expect("read");
    assert_eq!(
        env,
        Envelope {
            id: id.clone(),
            received: 1700000000,
            sender: String::new(),
            recipients: s(&["a@example.org", "B@remote.net"]),
            client: "helo mx.example [192.0.2.1]".into(),
            sender_verified: false,
            notify_never: false,
            require_tls: false,
        }
    );
    assert_eq!(body, msg);
    assert_eq!(fs::read_dir(&spool.tmp).expect("tmp").count(), 0);
    assert_eq!(spool.dir_syncs(), 1);
    // Empty message is fine too.
    let id2 = spool
        .enqueue_new("s@x.org", &s(&["a@b.c"]), "", 1, b"")
        .await
        .expect("enqueue");
    assert_eq!(spool.read(&id2).expect("read").1, b"");
    assert_eq!(spool.list().expect("list"), vec![id.clone(), id2.clone()]);
    // No recipients is refused.
    assert!(spool
        .enqueue_new("s@x.org", &[], "", 1, b"x")
        .await
        .is_err());
}

#[tokio::test]
async fn hostile_values_cannot_inject_lines() {
    let t = tempfile::tempdir().expect("tempdir");
    let spool = Spool::open(t.path()).expect("open");
    let sender = "evil@x.org\r\nrcpt victim@example.org\r\n\r\nFake: body";
    let rcpts = s(&[
        "a@b.c\nrcpt injected@x.org",
        "c@d.e\0\n\nclient x",
        "%0Arcpt z@z",
    ]);
    let client = "helo\n\nreceived 0";
    let id = spool
        .enqueue_new(sender, &rcpts, client, 42, b"real body")
        .await
        .expect("enqueue");
    let (env, body) = spool.read(&id).expect("read");
    assert_eq!(env.sender, sender);
    assert_eq!(env.recipients, rcpts);
    assert_eq!(env.client, client);
    assert_eq!(env.received, 42);
    assert_eq!(body, b"real body");
    let raw = fs::read(spool.msg.join(&id)).expect("raw");
    let header_end = raw
        .windows(2)
        .position(|w| w == b"\n\n")
        .expect("header end");
    let header = std::str::from_utf8(&raw[..header_end]).expect("utf8");
    assert_eq!(header.lines().count(), 1 + 1 + 1 + 3 + 1);
    assert_eq!(header.lines().filter(|l| l.starts_with("rcpt ")).count(), 3);
}

#[test]
fn malformed_files_are_errors() {
    let t = tempfile::tempdir().expect("tempdir");
    let spool = Spool::open(t.path()).expect("open");
    let id = new_id();
    let cases: Vec<&[u8]> = vec![
        b"",
        b"garbage",
        b"MAILROOM-QUEUE 2\nreceived 1\nsender \nrcpt a@b\nclient \n\nx",
        b"MAILROOM-QUEUE 1\n",
        b"MAILROOM-QUEUE 1\nreceived 1\nsender \nrcpt a@b\nclient x",
        b"MAILROOM-QUEUE 1\nreceived x\nsender \nrcpt a@b\nclient \n\n",
        b"MAILROOM-QUEUE 1\nreceived 1\nrcpt a@b\nclient \n\n",
        b"MAILROOM-QUEUE 1\nreceived 1\nsender \nclient \n\n",
        b"MAILROOM-QUEUE 1\nreceived 1\nsender \nsender \nrcpt a@b\nclient \n\n",
        b"MAILROOM-QUEUE 1\nreceived 1\nsender \nrcpt a@b\nclient \nbogus 1\n\n",
        b"MAILROOM-QUEUE 1\nreceived 1\nsender\nrcpt a@b\nclient \n\n",
        b"MAILROOM-QUEUE 1\nreceived 1\nsender a\rb\nrcpt a@b\nclient \n\n",
        b"MAILROOM-QUEUE 1\nreceived 1\nsender %G0\nrcpt a@b\nclient \n\n",
        b"MAILROOM-QUEUE 1\nreceived 1\nsender \xff\nrcpt a@b\nclient \n\n",
        b"MAILROOM-QUEUE 1\nreceived 99999999999999999999999\nsender \nrcpt a@b\nclient \n\n",
    ];
    for (i, data) in cases.iter().enumerate() {
        fs::write(spool.msg.join(&id), data).expect("write");
        let err = spool.read(&id).expect_err(&format!("case {i} should fail"));
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "case {i}: {err}");
        let err = spool
            .open_message(&id)
            .expect_err(&format!("case {i} should fail to open"));
        assert_eq!(err.kind(), io::ErrorKind::InvalidData, "case {i}: {err}");
    }
    fs::write(
        spool.msg.join(&id),
        b"MAILROOM-QUEUE 1\nreceived 1\nsender \nrcpt a@b\nclient \n\n",
    )
    .expect("write");
    assert!(spool.read(&id).is_ok());
    assert_eq!(
        spool.read("../x").expect_err("bad id").kind(),
        io::ErrorKind::InvalidInput
    );
    assert_eq!(
        spool.read(&new_id()).expect_err("missing").kind(),
        io::ErrorKind::NotFound
    );
}

#[test]
fn open_cleans_tmp_and_orphan_state() {
    let t = tempfile::tempdir().expect("tempdir");
    {
        let spool = Spool::open(t.path()).expect("open");
        fs::write(spool.tmp.join(new_id()), b"half written").expect("write");
        fs::create_dir(spool.tmp.join("junkdir")).expect("mkdir");
        let orphan = new_id();
        fs::write(spool.state_path(&orphan), b"0 done x\n").expect("write");
    }
    let spool = Spool::open_and_recover(t.path()).expect("reopen");
    assert_eq!(fs::read_dir(&spool.tmp).expect("tmp").count(), 0);
    assert_eq!(fs::read_dir(&spool.msg).expect("msg").count(), 0);
    assert!(spool.list().expect("list").is_empty());
}

#[tokio::test]
async fn attempts_and_remove() {
    let t = tempfile::tempdir().expect("tempdir");
    let spool = Spool::open(t.path()).expect("open");
    let id = spool
        .enqueue_new("s@x.org", &s(&["a@b.c", "d@e.f"]), "c", 1, b"m")
        .await
        .expect("enqueue");
    assert!(spool.log(&id).expect("log").is_empty());
    let entries = vec![
        Entry::Rcpt(1, Outcome::deferred("451 4.4.1 no answer\r\nfrom host")),
        Entry::Rcpt(
            0,
            Outcome::Delivered {
                detail: String::new(),
            },
        ),
        Entry::Rcpt(1, Outcome::failed("5.1.1", "550 5.1.1 gone")),
    ];
    for e in &entries {
        spool.record(&id, e).expect("record");
    }
    assert!(spool.record(&new_id(), &entries[1]).is_err());
    assert_eq!(spool.log(&id).expect("log"), entries);
    // list() does not show the state file.
    assert_eq!(spool.list().expect("list"), vec![id.clone()]);
    // A torn last line is ignored; a malformed full line is an error.
    let mut f = OpenOptions::new()
        .append(true)
        .open(spool.state_path(&id))
        .expect("open");
    f.write_all(b"0 do").expect("write");
    drop(f);
    assert_eq!(spool.log(&id).expect("log").len(), 3);
    fs::write(spool.state_path(&id), b"x done y\n").expect("write");
    assert_eq!(
        spool.log(&id).expect_err("bad").kind(),
        io::ErrorKind::InvalidData
    );
    spool.remove(&id).expect("remove");
    assert!(spool.list().expect("list").is_empty());
    assert!(!spool.state_path(&id).exists());
    assert!(spool.remove(&id).is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_enqueues_group_commit() {
    let t = tempfile::tempdir().expect("tempdir");
    let spool = Arc::new(Spool::open(t.path()).expect("open"));
    let mut tasks = Vec::new();
    for i in 0..200u32 {
        let spool = spool.clone();
        tasks.push(tokio::spawn(async move {
            let body = format!("message {i}\r\n").into_bytes();
            let id = spool
                .enqueue_new("s@x.org", &[format!("r{i}@example.org")], "c", 1, &body)
                .await?;
            Ok::<_, io::Error>((id, i, body))
        }));
    }
    let mut ids = HashSet::new();
    let mut results = Vec::new();
    for t in tasks {
        let r = t.await.expect("join").expect("enqueue");
        assert!(ids.insert(r.0.clone()), "duplicate id {}", r.0);
        results.push(r);
    }
    for (id, i, body) in &results {
        let (env, got) = spool.read(id).expect("read");
        assert_eq!(env.recipients, vec![format!("r{i}@example.org")]);
        assert_eq!(&got, body);
    }
    assert_eq!(spool.list().expect("list").len(), 200);
    let syncs = spool.dir_syncs();
    eprintln!("200 enqueues, {syncs} directory fsyncs");
    assert!(
        (1..200).contains(&syncs),
        "{syncs} directory fsyncs for 200 messages"
    );
}

#[tokio::test]
async fn streamed_draft_round_trip_and_abandon() {
    let t = tempfile::tempdir().expect("tempdir");
    let spool = Spool::open(t.path()).expect("open");
    let id = new_id();
    let mut d = spool
        .begin(
            &id,
            "s@x.org",
            &s(&["a@b.c"]),
            &Origin::client("c"),
            7,
            b"Received: x\r\n",
        )
        .expect("begin");
    d.write(b"part one, ").expect("write");
    d.write(b"part two").expect("write");
    spool.commit(d).await.expect("commit");
    let (env, msg) = spool.read(&id).expect("read");
    assert_eq!(env.recipients, s(&["a@b.c"]));
    assert_eq!(msg, b"Received: x\r\npart one, part two");
    let id2 = new_id();
    let d = spool
        .begin(
            &id2,
            "s@x.org",
            &s(&["a@b.c"]),
            &Origin::client("c"),
            7,
            b"",
        )
        .expect("begin");
    drop(d);
    assert_eq!(fs::read_dir(&spool.tmp).expect("tmp").count(), 0);
    assert_eq!(spool.list().expect("list"), vec![id]);
}

#[tokio::test]
async fn headers_inserted_on_top_of_a_streamed_message() {
    let t = tempfile::tempdir().expect("tempdir");
    let spool = Spool::open(t.path()).expect("open");
    let id = new_id();
    let mut d = spool
        .begin(
            &id,
            "s@x.org",
            &s(&["a@b.c"]),
            &Origin::client("c"),
            7,
            b"Received: x\r\n",
        )
        .expect("begin");
    d.write(b"From: a@x.org\r\n\r\nbody").expect("write");
    d.insert_headers(|m| {
        assert_eq!(m, b"Received: x\r\nFrom: a@x.org\r\n\r\nbody");
        Ok(b"DKIM-Signature: v=1\r\n".to_vec())
    })
    .expect("insert");
    d.write(b" more").expect("write after insert");
    spool.commit(d).await.expect("commit");
    let (env, msg) = spool.read(&id).expect("read");
    assert_eq!(env.sender, "s@x.org");
    assert_eq!(
        msg,
        b"DKIM-Signature: v=1\r\nReceived: x\r\nFrom: a@x.org\r\n\r\nbody more"
    );
    assert_eq!(fs::read_dir(&spool.tmp).expect("tmp").count(), 0);

    // Nothing to insert: unchanged. A failure leaves nothing behind.
    let id2 = new_id();
    let mut d = spool
        .begin(
            &id2,
            "s@x.org",
            &s(&["a@b.c"]),
            &Origin::client("c"),
            7,
            b"",
        )
        .expect("begin");
    d.write(b"x").expect("write");
    d.insert_headers(|_| Ok(Vec::new()))
        .expect("insert nothing");
    assert!(d
        .insert_headers(|_| Err(std::io::Error::other("no")))
        .is_err());
    drop(d);
    assert_eq!(fs::read_dir(&spool.tmp).expect("tmp").count(), 0);
}

#[tokio::test]
async fn start_of_a_streamed_message_replaced_in_place() {
    let t = tempfile::tempdir().expect("tempdir");
    let spool = Spool::open(t.path()).expect("open");
    let id = new_id();
    let mut d = spool
        .begin(
            &id,
            "s@x.org",
            &s(&["a@b.c"]),
            &Origin::client("c"),
            7,
            b"Received: x\r\n",
        )
        .expect("begin");
    d.write(b"X-Forged: 1\r\nFrom: a@x.org\r\n\r\n")
        .expect("write");
    d.write(&vec![b'b'; 300_000]).expect("write");
    let mut read = Vec::new();
    std::io::Read::read_to_end(&mut d.client_message().expect("reader"), &mut read)
        .expect("read back");
    assert!(read.starts_with(b"X-Forged: 1\r\nFrom:"));
    assert_eq!(read.len(), 30 + 300_000);
    d.replace_start(13, b"Authentication-Results: h; none\r\n")
        .expect("replace");
    d.write(b"end").expect("write after replace");
    spool.commit(d).await.expect("commit");
    let (_, msg) = spool.read(&id).expect("read");
    let head = b"Received: x\r\nAuthentication-Results: h; none\r\nFrom: a@x.org\r\n\r\n";
    assert!(
        msg.starts_with(head),
        "{:?}",
        String::from_utf8_lossy(&msg[..80])
    );
    assert_eq!(msg.len(), head.len() + 300_000 + 3);
    assert!(msg.ends_with(b"bbend"));
    assert_eq!(fs::read_dir(&spool.tmp).expect("tmp").count(), 0);
}

#[tokio::test]
async fn origin_flags_round_trip_and_old_records_read() {
    let t = tempfile::tempdir().expect("tempdir");
    let spool = Spool::open(t.path()).expect("open");
    let id = new_id();
    let origin = Origin {
        client: "forward of X",
        sender_verified: true,
        notify_never: true,
        require_tls: false,
    };
    spool
        .enqueue(&id, "s@x.org", &s(&["a@b.c"]), &origin, 5, &[b"m"])
        .await
        .expect("enqueue");
    let (env, _) = spool.read(&id).expect("read");
    assert!(env.sender_verified && env.notify_never, "{env:?}");
    // A record written before these fields existed still reads, with both off.
    let old = b"MAILROOM-QUEUE 1\nreceived 1\nsender a@b\nrcpt c@d\nclient x\n\nbody";
    let (env, body) = parse_record_bytes("0123456789ABCDEF", old).expect("old record");
    assert!(!env.sender_verified && !env.notify_never);
    assert_eq!(body, b"body");
    // Only the exact values are accepted, once each.
    for bad in [
        &b"MAILROOM-QUEUE 1\nreceived 1\nsender \nrcpt c@d\nclient x\nnotify sometimes\n\n"[..],
        b"MAILROOM-QUEUE 1\nreceived 1\nsender \nrcpt c@d\nclient x\nnotify never\nnotify never\n\n",
    ] {
        assert!(parse_record_bytes("0123456789ABCDEF", bad).is_err());
    }
}

#[tokio::test]
async fn open_message_streams_the_body_and_enqueue_body_copies_it() {
    let t = tempfile::tempdir().expect("tempdir");
    let spool = Spool::open(t.path()).expect("open");
    // Several blocks, a tail that is not a whole block, and envelope-like bytes inside.
    let mut msg = b"Subject: big\r\n\r\n".to_vec();
    msg.extend((0..2 * BLOCK + 999).map(|i| b"ab\n\nMAILROOM-QUEUE 1\n"[i % 20]));
    let rcpts = s(&["a@example.org"]);
    let id = spool
        .enqueue_new("s@x.org", &rcpts, "c", 7, &msg)
        .await
        .expect("enqueue");
    let (env, body) = spool.open_message(&id).expect("open_message");
    assert_eq!(env, spool.read(&id).expect("read").0);
    assert_eq!(body.len(), msg.len() as u64);
    let mut all = Vec::new();
    body.reader().read_to_end(&mut all).expect("read body");
    assert_eq!(all, msg);
    assert_eq!(body.head(12).expect("head"), &msg[..12]);
    let mut block = [0u8; 10];
    assert_eq!(
        body.read_at(body.len() - 3, &mut block).expect("read_at"),
        3
    );
    assert_eq!(body.read_at(body.len(), &mut block).expect("read_at"), 0);
    // A forwarded copy: a prefix, then the body, durable and committed.
    let copy = new_id();
    let origin = Origin::client("forward");
    spool
        .enqueue_body(
            &copy,
            "s@x.org",
            &s(&["f@remote.net"]),
            &origin,
            8,
            b"X: 1\r\n",
            &body,
        )
        .await
        .expect("enqueue_body");
    let (env2, got) = spool.read(&copy).expect("read copy");
    assert_eq!(env2.recipients, s(&["f@remote.net"]));
    assert_eq!(got, [&b"X: 1\r\n"[..], &msg].concat());
    assert_eq!(fs::read_dir(&spool.tmp).expect("tmp").count(), 0);
    // The body stays readable after the message leaves the queue (the file is open).
    spool.remove(&id).expect("remove");
    assert_eq!(body.head(7).expect("head"), b"Subject");
    assert_eq!(
        spool.open_message(&id).expect_err("gone").kind(),
        io::ErrorKind::NotFound
    );
}

#[test]
fn require_tls_is_recorded_and_older_records_read_without_it() {
    let env = Envelope {
        id: "X".into(),
        received: 5,
        sender: "s@x.org".into(),
        recipients: s(&["a@b.c"]),
        client: "c".into(),
        sender_verified: true,
        notify_never: false,
        require_tls: true,
    };
    let record = crate::spool::encode_record(&env, b"m");
    assert!(String::from_utf8_lossy(&record).contains("\nrequire-tls yes\n"));
    let (back, body) = crate::spool::parse_record_bytes("X", &record).unwrap();
    assert_eq!((back, body), (env.clone(), b"m".to_vec()));
    // A record written before REQUIRETLS existed.
    let old = b"MAILROOM-QUEUE 1\nreceived 5\nsender s@x.org\nrcpt a@b.c\nclient c\n\nm";
    let (back, _) = crate::spool::parse_record_bytes("X", old).unwrap();
    assert!(!back.require_tls);
}

#[tokio::test]
async fn enqueue_shared_writes_the_parts_then_the_shared_body() {
    let t = tempfile::tempdir().expect("tempdir");
    let spool = Spool::open(t.path()).expect("open");
    let body = Arc::new(b"Subject: shared\r\n\r\nbody\r\n".to_vec());
    let id = new_id();
    spool
        .enqueue_shared(
            &id,
            "a@example.org",
            &s(&["b@example.org"]),
            &Origin::client("c"),
            1,
            None,
            &[b"DKIM-Signature: x\r\n", b"Received: y\r\n"],
            Some(body.clone()),
        )
        .await
        .expect("enqueue");
    let (env, bytes) = spool.read(&id).expect("read");
    assert_eq!(env.recipients, s(&["b@example.org"]));
    assert_eq!(
        bytes,
        b"DKIM-Signature: x\r\nReceived: y\r\nSubject: shared\r\n\r\nbody\r\n"
    );
    // The caller's buffer is the one written, untouched.
    assert_eq!(body.as_slice(), b"Subject: shared\r\n\r\nbody\r\n");
}

#[tokio::test]
async fn enqueue_shared_writes_what_the_lead_makes_first() {
    let t = tempfile::tempdir().expect("tempdir");
    let spool = Spool::open(t.path()).expect("open");
    let body = Arc::new(b"Subject: led\r\n\r\nbody\r\n".to_vec());
    let id = new_id();
    let seen = body.clone();
    let lead: crate::spool::Lead = Box::new(move || {
        // Made on the writer thread, from the caller's shared buffer.
        format!("DKIM-Signature: len={}\r\n", seen.len()).into_bytes()
    });
    spool
        .enqueue_shared(
            &id,
            "a@example.org",
            &s(&["b@example.org"]),
            &Origin::client("c"),
            1,
            Some(lead),
            &[b"", b"Received: y\r\n"],
            Some(body),
        )
        .await
        .expect("enqueue");
    let (_, bytes) = spool.read(&id).expect("read");
    assert_eq!(
        bytes,
        b"DKIM-Signature: len=22\r\nReceived: y\r\nSubject: led\r\n\r\nbody\r\n"
    );
}
