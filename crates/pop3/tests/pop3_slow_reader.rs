//! A POP3 client that asks for a large message and never reads it: every write of the server
//! is bounded, by the idle timeout and by shutdown, so such a client neither keeps its
//! session nor holds up the server's shutdown. Real TCP on 127.0.0.1, a temporary Maildir.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pop3::{serve, Authenticator, Pop3Config};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Larger than what the socket buffers of both ends can hold.
const SIZE: usize = 32 << 20;

struct OneUser(PathBuf);

impl Authenticator for OneUser {
    fn authenticate(&self, user: &str, password: &str) -> Option<PathBuf> {
        (user == "alice" && password == "pw").then(|| self.0.clone())
    }
}

struct Server {
    addr: std::net::SocketAddr,
    _dir: tempfile::TempDir,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

async fn start(idle_timeout: Duration) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("Maildir");
    for sub in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    let mut body = b"Subject: big\r\n\r\n".to_vec();
    while body.len() < SIZE {
        body.extend_from_slice(&[b'x'; 998]);
        body.extend_from_slice(b"\r\n");
    }
    let name = format!("1764200001.Q1R0.mx.example.test,S={}", body.len());
    std::fs::write(root.join("new").join(name), &body).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let config = Pop3Config {
        hostname: "mx.example.test".into(),
        idle_timeout,
        ..Pop3Config::default()
    };
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(serve(
        listener,
        Arc::new(config),
        Arc::new(OneUser(root)),
        Arc::new(store::login_guard::LoginGuard::new(
            store::login_guard::LoginLimits::default(),
        )),
        None,
        false,
        rx,
    ));
    Server {
        addr,
        _dir: dir,
        shutdown: tx,
        task,
    }
}

/// Logs in and asks for the message; returns the connection without reading the answer.
async fn retr_and_stop_reading(s: &Server) -> BufReader<TcpStream> {
    let mut c = BufReader::new(TcpStream::connect(s.addr).await.unwrap());
    for (cmd, want) in [("", "+OK"), ("USER alice", "+OK"), ("PASS pw", "+OK")] {
        if !cmd.is_empty() {
            c.get_mut()
                .write_all(format!("{cmd}\r\n").as_bytes())
                .await
                .unwrap();
        }
        let mut line = String::new();
        c.read_line(&mut line).await.unwrap();
        assert!(line.starts_with(want), "{cmd}: {line}");
    }
    c.get_mut().write_all(b"RETR 1\r\n").await.unwrap();
    c
}

/// Reads until EOF or reset; the octets read.
async fn drain(c: &mut BufReader<TcpStream>) -> usize {
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0;
    loop {
        match tokio::time::timeout(Duration::from_secs(20), c.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return total,
            Ok(Ok(n)) => total += n,
            Err(_) => panic!("connection still open after {total} octets"),
        }
    }
}

#[tokio::test]
async fn retr_to_a_client_that_never_reads_ends_after_the_idle_timeout() {
    let s = start(Duration::from_secs(1)).await;
    let mut c = retr_and_stop_reading(&s).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    // The server gave up on its write: what it had sent is there, then the end.
    let got = drain(&mut c).await;
    assert!(got < SIZE, "the whole message came ({got} octets)");
    s.shutdown.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(10), s.task)
        .await
        .expect("serve returns")
        .unwrap();
}

#[tokio::test]
async fn shutdown_is_not_held_up_by_a_client_that_never_reads() {
    // The idle timeout is long; only the shutdown can end the stuck write.
    let s = start(Duration::from_secs(600)).await;
    let mut c = retr_and_stop_reading(&s).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let asked = Instant::now();
    s.shutdown.send(true).unwrap();
    tokio::time::timeout(Duration::from_secs(15), s.task)
        .await
        .expect("serve returns within the write grace period after shutdown")
        .unwrap();
    assert!(asked.elapsed() < Duration::from_secs(15));
    let got = drain(&mut c).await;
    assert!(got < SIZE, "the whole message came ({got} octets)");
}
