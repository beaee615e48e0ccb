//! Integration tests of the POP3 listener over real TCP on 127.0.0.1 with a temporary Maildir
//! and an in-memory [`Authenticator`].

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use pop3::{serve, Authenticator, LoginGuard, LoginLimits, Pop3Config};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

struct MapAuth(HashMap<String, (String, PathBuf)>);

impl Authenticator for MapAuth {
    fn authenticate(&self, user: &str, password: &str) -> Option<PathBuf> {
        let (pw, root) = self.0.get(user)?;
        (pw == password).then(|| root.clone())
    }
}

const M1: &[u8] = b"Subject: one\r\n\r\nhello\r\n";
const M2: &[u8] = b"Subject: dots\r\n\r\n.starts with a dot\r\n..two\r\n.\r\nend\r\n";
const M3: &[u8] = b"Subject: three\r\nX: y\r\n\r\nl1\r\nl2\r\nl3\r\n";

struct Server {
    addr: std::net::SocketAddr,
    root: PathBuf,
    _dir: tempfile::TempDir,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

fn deliver(root: &Path, t: u64, body: &[u8]) -> String {
    let name = format!("{t}.Q{t:016X}R0.mx.example.test,S={}", body.len());
    std::fs::write(root.join("new").join(&name), body).unwrap();
    name
}

async fn start_with(config: Pop3Config) -> Server {
    start_guarded(config, LoginLimits::default()).await
}

/// Starts a server whose logins obey `limits`, with the failure delay cut to 20 ms.
async fn start_guarded(mut config: Pop3Config, limits: LoginLimits) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("mail/example.test/alice/Maildir");
    for sub in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    deliver(&root, 1_764_200_001, M1);
    deliver(&root, 1_764_200_002, M2);
    deliver(&root, 1_764_200_003, M3);
    let mut users = HashMap::new();
    users.insert("alice".to_string(), ("pw pw".to_string(), root.clone()));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    config.hostname = "mx.example.test".into();
    let guard = Arc::new(LoginGuard::new(LoginLimits {
        failure_delay: Duration::from_millis(20),
        ..limits
    }));
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(serve(
        listener,
        Arc::new(config),
        Arc::new(MapAuth(users)),
        guard,
        None,
        false,
        rx,
    ));
    Server {
        addr,
        root,
        _dir: dir,
        shutdown: tx,
        task,
    }
}

async fn start() -> Server {
    start_with(Pop3Config::default()).await
}

struct Client {
    rd: BufReader<OwnedReadHalf>,
    wr: OwnedWriteHalf,
}

impl Client {
    async fn connect(s: &Server) -> Client {
        let (rd, wr) = TcpStream::connect(s.addr).await.unwrap().into_split();
        let mut c = Client {
            rd: BufReader::new(rd),
            wr,
        };
        assert_eq!(c.line().await, "+OK mx.example.test POP3 server ready\r\n");
        c
    }

    async fn line(&mut self) -> String {
        let mut s = String::new();
        tokio::time::timeout(Duration::from_secs(10), self.rd.read_line(&mut s))
            .await
            .expect("reply in time")
            .unwrap();
        s
    }

    async fn cmd(&mut self, line: &str) -> String {
        self.wr
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .unwrap();
        self.line().await
    }

    /// Reads a multi-line body up to and including the terminating ".\r\n".
    async fn body(&mut self) -> String {
        let mut all = String::new();
        loop {
            let l = self.line().await;
            assert!(!l.is_empty(), "EOF in multi-line response");
            all.push_str(&l);
            if l == ".\r\n" {
                return all;
            }
        }
    }

    async fn login(s: &Server) -> Client {
        let mut c = Client::connect(s).await;
        assert_eq!(c.cmd("USER alice").await, "+OK Send PASS\r\n");
        let r = c.cmd("PASS pw pw").await;
        assert!(r.starts_with("+OK Logged in, 3 messages"), "{r}");
        c
    }
}

fn files(root: &Path, sub: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(root.join(sub))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

#[tokio::test]
async fn stat_list_uidl_retr_top() {
    let s = start().await;
    let mut c = Client::login(&s).await;
    let total = M1.len() + M2.len() + M3.len();
    assert_eq!(c.cmd("STAT").await, format!("+OK 3 {total}\r\n"));
    assert!(c.cmd("LIST").await.starts_with("+OK 3 messages"));
    assert_eq!(
        c.body().await,
        format!(
            "1 {}\r\n2 {}\r\n3 {}\r\n.\r\n",
            M1.len(),
            M2.len(),
            M3.len()
        )
    );
    assert!(c.cmd("UIDL").await.starts_with("+OK"));
    let uidl = c.body().await;
    assert!(uidl.starts_with("1 1764200001.Q"), "{uidl}");
    assert_eq!(uidl.lines().count(), 4);
    assert_eq!(
        c.cmd("RETR 1").await,
        format!("+OK {} octets\r\n", M1.len())
    );
    assert_eq!(c.body().await, "Subject: one\r\n\r\nhello\r\n.\r\n");
    assert_eq!(c.cmd("TOP 3 1").await, "+OK Top of message follows\r\n");
    assert_eq!(c.body().await, "Subject: three\r\nX: y\r\n\r\nl1\r\n.\r\n");
    assert!(c.cmd("RETR 4").await.starts_with("-ERR No such message"));
    assert!(c.cmd("QUIT").await.starts_with("+OK Bye"));
    // RETR'd message 1 moved to cur/ with the Seen flag; the others are untouched.
    assert_eq!(files(&s.root, "new").len(), 2);
    let cur = files(&s.root, "cur");
    assert_eq!(cur.len(), 1);
    assert!(cur[0].starts_with("1764200001.") && cur[0].ends_with(":2,S"));
}

#[tokio::test]
async fn dotted_message_comes_back_intact() {
    let s = start().await;
    let mut c = Client::login(&s).await;
    assert!(c.cmd("RETR 2").await.starts_with("+OK"));
    let body = c.body().await;
    assert_eq!(
        body,
        "Subject: dots\r\n\r\n..starts with a dot\r\n...two\r\n..\r\nend\r\n.\r\n"
    );
    // Undo the stuffing as a client would and compare with the file.
    let mut unstuffed = String::new();
    for l in body.split_inclusive("\r\n") {
        if l == ".\r\n" {
            break;
        }
        unstuffed.push_str(l.strip_prefix('.').unwrap_or(l));
    }
    assert_eq!(unstuffed.as_bytes(), M2);
}

#[tokio::test]
async fn dele_quit_removes_and_drop_removes_nothing() {
    let s = start().await;
    let mut c = Client::login(&s).await;
    assert_eq!(c.cmd("DELE 1").await, "+OK Message 1 deleted\r\n");
    assert_eq!(c.cmd("DELE 1").await, "-ERR Message 1 already deleted\r\n");
    drop(c);
    // The lock is released once the server notices the disconnect.
    let mut c = loop {
        let mut c = Client::connect(&s).await;
        c.cmd("USER alice").await;
        let r = c.cmd("PASS pw pw").await;
        if r.starts_with("+OK") {
            break c;
        }
        assert!(r.starts_with("-ERR [IN-USE]"), "{r}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(files(&s.root, "new").len(), 3);
    assert!(c.cmd("STAT").await.starts_with("+OK 3 "));
    assert!(c.cmd("DELE 1").await.starts_with("+OK"));
    assert!(c.cmd("DELE 3").await.starts_with("+OK"));
    assert_eq!(c.cmd("QUIT").await, "+OK Bye (1 messages left)\r\n");
    let new = files(&s.root, "new");
    assert_eq!(new.len(), 1);
    assert!(new[0].starts_with("1764200002."));
}

#[tokio::test]
async fn second_login_is_in_use_until_first_quits() {
    let s = start().await;
    let mut a = Client::login(&s).await;
    let mut b = Client::connect(&s).await;
    b.cmd("USER alice").await;
    assert_eq!(
        b.cmd("PASS pw pw").await,
        "-ERR [IN-USE] Maildrop is locked by another session\r\n"
    );
    assert!(a.cmd("QUIT").await.starts_with("+OK"));
    b.cmd("USER alice").await;
    assert!(b.cmd("PASS pw pw").await.starts_with("+OK Logged in"));
}

#[tokio::test]
async fn bad_logins_same_reply_then_throttled() {
    let limits = LoginLimits {
        lockout_after_per_ip: 3,
        ..LoginLimits::default()
    };
    let s = start_guarded(Pop3Config::default(), limits).await;
    let bad = "-ERR [AUTH] Invalid user name or password\r\n";
    let mut c = Client::connect(&s).await;
    c.cmd("USER nobody").await;
    assert_eq!(c.cmd("PASS pw pw").await, bad);
    c.cmd("USER alice").await;
    assert_eq!(c.cmd("PASS wrong").await, bad);
    // "\0alice\0nope"
    assert_eq!(
        c.cmd("AUTH PLAIN AGFsaWNlAG5vcGU=").await,
        "-ERR [AUTH] Invalid user name or password; closing\r\n"
    );
    let mut c = Client::connect(&s).await;
    c.cmd("USER alice").await;
    let r = c.cmd("PASS pw pw").await;
    assert!(r.starts_with("-ERR [AUTH] Too many failed logins"), "{r}");
}

#[tokio::test]
async fn auth_plain_and_pipelining() {
    let s = start().await;
    let (rd, mut wr) = TcpStream::connect(s.addr).await.unwrap().into_split();
    let mut c = Client {
        rd: BufReader::new(rd),
        wr: {
            // "\0alice\0pw pw", sent after the empty challenge; then a pipelined batch.
            wr.write_all(
                b"CAPA\r\nAUTH PLAIN\r\nAGFsaWNlAHB3IHB3\r\nSTAT\r\nLIST 2\r\nNOOP\r\nQUIT\r\n",
            )
            .await
            .unwrap();
            wr
        },
    };
    assert!(c.line().await.starts_with("+OK mx.example.test"));
    assert!(c.line().await.starts_with("+OK Capability"));
    let capa = c.body().await;
    assert!(
        capa.contains("USER\r\n")
            && capa.contains("SASL PLAIN\r\n")
            && capa.contains("PIPELINING\r\n")
    );
    assert_eq!(c.line().await, "+ \r\n");
    assert!(c.line().await.starts_with("+OK Logged in"));
    assert!(c.line().await.starts_with("+OK 3 "));
    assert_eq!(c.line().await, format!("+OK 2 {}\r\n", M2.len()));
    assert_eq!(c.line().await, "+OK \r\n");
    assert!(c.line().await.starts_with("+OK Bye"));
    assert_eq!(c.line().await, "");
    drop(c.wr);
}

#[tokio::test]
async fn plaintext_refused_outside_allowed_networks() {
    let config = Pop3Config {
        plaintext_allowed_networks: vec![],
        ..Pop3Config::default()
    };
    let s = start_with(config).await;
    let mut c = Client::connect(&s).await;
    assert!(c
        .cmd("USER alice")
        .await
        .starts_with("-ERR [AUTH] Plain-text login"));
    assert!(c
        .cmd("AUTH PLAIN AGFsaWNlAHB3IHB3")
        .await
        .starts_with("-ERR [AUTH]"));
    assert!(c.cmd("CAPA").await.starts_with("+OK"));
    assert!(!c.body().await.contains("USER"));
}

#[tokio::test]
async fn overlong_line_then_continue() {
    let s = start().await;
    let mut c = Client::login(&s).await;
    let long = format!("LIST {}", "9".repeat(10_000));
    assert_eq!(c.cmd(&long).await, "-ERR Command line too long\r\n");
    assert!(c.cmd("STAT").await.starts_with("+OK 3 "));
}

#[tokio::test]
async fn idle_timeout_closes_without_update() {
    let config = Pop3Config {
        idle_timeout: Duration::from_millis(200),
        ..Pop3Config::default()
    };
    let s = start_with(config).await;
    let mut c = Client::login(&s).await;
    assert!(c.cmd("DELE 1").await.starts_with("+OK"));
    assert_eq!(c.line().await, "-ERR Idle timeout, closing\r\n");
    assert_eq!(c.line().await, "");
    assert_eq!(files(&s.root, "new").len(), 3);
}

#[tokio::test]
async fn shutdown_ends_sessions_and_serve() {
    let s = start().await;
    let mut c = Client::login(&s).await;
    s.shutdown.send(true).unwrap();
    assert_eq!(c.line().await, "-ERR [SYS/TEMP] Server shutting down\r\n");
    tokio::time::timeout(Duration::from_secs(5), s.task)
        .await
        .expect("serve returns")
        .unwrap();
    assert!(TcpStream::connect(s.addr).await.is_err());
}

#[tokio::test]
async fn account_locked_after_failures_even_with_right_password() {
    let limits = LoginLimits {
        lockout_after_per_account: 2,
        lockout_after_per_ip: 100,
        lockout_window: Duration::from_millis(1500),
        ..LoginLimits::default()
    };
    let s = start_guarded(Pop3Config::default(), limits).await;
    let bad = "-ERR [AUTH] Invalid user name or password\r\n";
    let mut c = Client::connect(&s).await;
    c.cmd("USER alice").await;
    assert_eq!(c.cmd("PASS wrong").await, bad);
    // Case variants count against the same account.
    c.cmd("USER ALICE").await;
    assert_eq!(c.cmd("PASS wrong").await, bad);
    // Locked: the right password gets the same reply as a wrong one, without being checked.
    let mut c = Client::connect(&s).await;
    c.cmd("USER alice").await;
    assert_eq!(c.cmd("PASS pw pw").await, bad);
    // The lockout ends when the failures leave the window.
    tokio::time::sleep(Duration::from_millis(1600)).await;
    c.cmd("USER alice").await;
    assert!(c.cmd("PASS pw pw").await.starts_with("+OK Logged in"));
}
