//! Integration tests of POP3 over TLS on 127.0.0.1: implicit TLS (pop3s, RFC 8314) and STLS
//! (RFC 2595), with a self-signed certificate made by rcgen at test time and a tokio-rustls
//! client that trusts only that certificate. The ring crypto provider is chosen explicitly,
//! since rustls is built without default features.
//!
//! Covers: login and retrieval over pop3s, the STLS upgrade, the clear-text login rule before
//! and after STLS, the CVE-2011-0411 injection (clear text pipelined after STLS must be
//! dropped), the session reset after STLS, and handshake failure and timeout. The per-account
//! lockout is unit-tested in `limits` (it needs several client addresses).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use pop3::{serve, Authenticator, LoginGuard, LoginLimits, Pop3Config};
use rustls::crypto::ring::default_provider;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::{TlsAcceptor, TlsConnector};

struct MapAuth(HashMap<String, (String, PathBuf)>);

impl Authenticator for MapAuth {
    fn authenticate(&self, user: &str, password: &str) -> Option<PathBuf> {
        let (pw, root) = self.0.get(user)?;
        (pw == password).then(|| root.clone())
    }
}

const M1: &[u8] = b"Subject: one\r\n\r\nhello over TLS\r\n.dot\r\n";
const M2: &[u8] = b"Subject: two\r\n\r\nsecond\r\n";

struct Server {
    addr: std::net::SocketAddr,
    connector: TlsConnector,
    _dir: tempfile::TempDir,
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// A server certificate for "localhost" and a client connector trusting only it.
fn tls_pair() -> (TlsAcceptor, TlsConnector) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let cert: CertificateDer<'static> = ck.cert.der().clone();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.signing_key.serialize_der()));
    let provider = Arc::new(default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], key)
        .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    (
        TlsAcceptor::from(Arc::new(server)),
        TlsConnector::from(Arc::new(client)),
    )
}

/// Starts a server; `plaintext_allowed_networks` is empty (no trusted clients) unless
/// `config` says otherwise.
async fn start(implicit_tls: bool, config: Pop3Config) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("Maildir");
    for sub in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    for (t, body) in [(1_764_300_001u64, M1), (1_764_300_002, M2)] {
        let name = format!("{t}.Q{t:016X}R0.mx.example.test,S={}", body.len());
        std::fs::write(root.join("new").join(name), body).unwrap();
    }
    let mut users = HashMap::new();
    users.insert("alice".to_string(), ("pw pw".to_string(), root));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (acceptor, connector) = tls_pair();
    let (tx, rx) = watch::channel(false);
    let task = tokio::spawn(serve(
        listener,
        Arc::new(config),
        Arc::new(MapAuth(users)),
        fast_guard(),
        Some(acceptor),
        implicit_tls,
        rx,
    ));
    Server {
        addr,
        connector,
        _dir: dir,
        shutdown: tx,
        task,
    }
}

/// A login guard with the default lockouts and short failure delays.
fn fast_guard() -> Arc<LoginGuard> {
    Arc::new(LoginGuard::new(LoginLimits {
        failure_delay: Duration::from_millis(20),
        ..LoginLimits::default()
    }))
}

fn untrusted() -> Pop3Config {
    Pop3Config {
        hostname: "mx.example.test".into(),
        plaintext_allowed_networks: vec![],
        ..Pop3Config::default()
    }
}

fn trusted() -> Pop3Config {
    Pop3Config {
        plaintext_allowed_networks: Pop3Config::default().plaintext_allowed_networks,
        ..untrusted()
    }
}

const GREETING: &str = "+OK mx.example.test POP3 server ready\r\n";
const STLS_OK: &str = "+OK Begin TLS negotiation\r\n";

/// A line-oriented client over any stream.
struct Client<S> {
    io: BufReader<S>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    fn new(stream: S) -> Self {
        Client {
            io: BufReader::new(stream),
        }
    }

    async fn line(&mut self) -> String {
        let mut s = String::new();
        tokio::time::timeout(Duration::from_secs(10), self.io.read_line(&mut s))
            .await
            .expect("reply in time")
            .unwrap();
        s
    }

    async fn send(&mut self, data: &[u8]) {
        self.io.get_mut().write_all(data).await.unwrap();
        self.io.get_mut().flush().await.unwrap();
    }

    async fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n").as_bytes()).await;
        self.line().await
    }

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

    async fn capa(&mut self) -> Vec<String> {
        assert_eq!(self.cmd("CAPA").await, "+OK Capability list follows\r\n");
        self.body()
            .await
            .lines()
            .map(str::to_owned)
            .filter(|l| l != ".")
            .collect()
    }

    /// Reads until the server closes the connection; returns what arrived.
    async fn until_closed(&mut self) -> Vec<u8> {
        let mut rest = Vec::new();
        // An error (e.g. a reset) counts as closed too.
        let _ = tokio::time::timeout(Duration::from_secs(10), self.io.read_to_end(&mut rest))
            .await
            .expect("connection closed in time");
        rest
    }
}

async fn plain(s: &Server) -> Client<TcpStream> {
    let mut c = Client::new(TcpStream::connect(s.addr).await.unwrap());
    assert_eq!(c.line().await, GREETING);
    c
}

type TlsClient = Client<tokio_rustls::client::TlsStream<TcpStream>>;

/// Hands a plain connection to TLS after `+OK` to STLS. Nothing may be buffered unread.
async fn upgrade(s: &Server, c: Client<TcpStream>) -> TlsClient {
    assert!(
        c.io.buffer().is_empty(),
        "server sent data after +OK to STLS"
    );
    let tcp = c.io.into_inner();
    let name = ServerName::try_from("localhost").unwrap();
    Client::new(s.connector.connect(name, tcp).await.expect("TLS handshake"))
}

#[tokio::test]
async fn pop3s_login_stat_retr() {
    let s = start(true, untrusted()).await;
    let tcp = TcpStream::connect(s.addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let mut c = Client::new(s.connector.connect(name, tcp).await.unwrap());
    // The greeting comes inside TLS.
    assert_eq!(c.line().await, GREETING);
    let capa = c.capa().await;
    assert!(!capa.iter().any(|l| l == "STLS"), "{capa:?}");
    assert!(capa.iter().any(|l| l == "USER") && capa.iter().any(|l| l == "SASL PLAIN"));
    assert_eq!(c.cmd("STLS").await, "-ERR TLS already active\r\n");
    // Untrusted network, but over TLS clear-text passwords are fine.
    assert_eq!(c.cmd("USER alice").await, "+OK Send PASS\r\n");
    assert!(c
        .cmd("PASS pw pw")
        .await
        .starts_with("+OK Logged in, 2 messages"));
    assert_eq!(
        c.cmd("STAT").await,
        format!("+OK 2 {}\r\n", M1.len() + M2.len())
    );
    assert_eq!(
        c.cmd("RETR 1").await,
        format!("+OK {} octets\r\n", M1.len())
    );
    assert_eq!(
        c.body().await,
        "Subject: one\r\n\r\nhello over TLS\r\n..dot\r\n.\r\n"
    );
    assert!(c.cmd("QUIT").await.starts_with("+OK Bye"));
    assert!(c.until_closed().await.is_empty());
}

#[tokio::test]
async fn stls_upgrade_then_login() {
    let s = start(false, untrusted()).await;
    let mut c = plain(&s).await;
    let capa = c.capa().await;
    assert!(capa.iter().any(|l| l == "STLS"), "{capa:?}");
    assert!(!capa.iter().any(|l| l == "USER" || l == "SASL PLAIN"));
    // Clear-text login refused from an untrusted network.
    assert!(c
        .cmd("USER alice")
        .await
        .starts_with("-ERR [AUTH] Plain-text login"));
    assert!(c
        .cmd("AUTH PLAIN AGFsaWNlAHB3IHB3")
        .await
        .starts_with("-ERR [AUTH] Plain-text login"));
    assert_eq!(c.cmd("STLS").await, STLS_OK);
    let mut c = upgrade(&s, c).await;
    // No new greeting after STLS (RFC 2595 §4); CAPA now lists the login methods.
    let capa = c.capa().await;
    assert!(!capa.iter().any(|l| l == "STLS"), "{capa:?}");
    assert!(capa.iter().any(|l| l == "USER") && capa.iter().any(|l| l == "SASL PLAIN"));
    assert_eq!(c.cmd("STLS").await, "-ERR TLS already active\r\n");
    assert_eq!(c.cmd("USER alice").await, "+OK Send PASS\r\n");
    assert!(c
        .cmd("PASS pw pw")
        .await
        .starts_with("+OK Logged in, 2 messages"));
    assert!(c.cmd("STAT").await.starts_with("+OK 2 "));
    assert!(c.cmd("QUIT").await.starts_with("+OK Bye"));
}

#[tokio::test]
async fn stls_plaintext_injection_is_discarded() {
    // CVE-2011-0411: commands pipelined after STLS in the same write are clear text and must
    // not be executed inside TLS.
    let s = start(false, untrusted()).await;
    let mut c = plain(&s).await;
    c.send(b"STLS\r\nCAPA\r\n").await;
    assert_eq!(c.line().await, STLS_OK);
    let mut c = upgrade(&s, c).await;
    // If CAPA had been kept, its reply would come first.
    assert_eq!(c.cmd("USER alice").await, "+OK Send PASS\r\n");
    assert!(c.cmd("PASS pw pw").await.starts_with("+OK Logged in"));
    assert!(c.cmd("QUIT").await.starts_with("+OK Bye"));
}

#[tokio::test]
async fn state_before_stls_is_forgotten() {
    // A trusted client: USER is accepted in clear text, then forgotten after STLS; the PASS
    // injected after STLS is dropped, too.
    let s = start(false, trusted()).await;
    let mut c = plain(&s).await;
    assert!(c.capa().await.iter().any(|l| l == "USER"));
    c.send(b"USER alice\r\nSTLS\r\nPASS pw pw\r\n").await;
    assert_eq!(c.line().await, "+OK Send PASS\r\n");
    assert_eq!(c.line().await, STLS_OK);
    let mut c = upgrade(&s, c).await;
    assert_eq!(c.cmd("PASS pw pw").await, "-ERR USER first\r\n");
    assert_eq!(c.cmd("USER alice").await, "+OK Send PASS\r\n");
    assert!(c.cmd("PASS pw pw").await.starts_with("+OK Logged in"));
}

#[tokio::test]
async fn failed_stls_handshake_closes() {
    let s = start(false, untrusted()).await;
    let mut c = plain(&s).await;
    assert_eq!(c.cmd("STLS").await, STLS_OK);
    c.send(b"USER alice\r\nPASS pw pw\r\n").await;
    let rest = c.until_closed().await;
    // At most a TLS alert; never a POP3 reply.
    assert!(
        !rest.starts_with(b"+OK") && !rest.starts_with(b"-ERR"),
        "{rest:?}"
    );
}

#[tokio::test]
async fn pop3s_handshake_timeout_closes() {
    let config = Pop3Config {
        tls_handshake_timeout: Duration::from_millis(200),
        ..untrusted()
    };
    let s = start(true, config).await;
    let mut c = Client::new(TcpStream::connect(s.addr).await.unwrap());
    // No greeting in clear text: the server waits for a ClientHello, then gives up.
    assert!(c.until_closed().await.is_empty());
}

#[tokio::test]
async fn implicit_tls_without_acceptor_serves_nothing() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (_tx, rx) = watch::channel(false);
    let auth = Arc::new(MapAuth(HashMap::new()));
    tokio::time::timeout(
        Duration::from_secs(5),
        serve(
            listener,
            Arc::new(untrusted()),
            auth,
            fast_guard(),
            None,
            true,
            rx,
        ),
    )
    .await
    .expect("serve returns at once");
}

#[tokio::test]
async fn shutdown_ends_tls_sessions() {
    let s = start(true, untrusted()).await;
    let tcp = TcpStream::connect(s.addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let mut c = Client::new(s.connector.connect(name, tcp).await.unwrap());
    assert_eq!(c.line().await, GREETING);
    s.shutdown.send(true).unwrap();
    assert_eq!(c.line().await, "-ERR [SYS/TEMP] Server shutting down\r\n");
    tokio::time::timeout(Duration::from_secs(5), s.task)
        .await
        .expect("serve returns")
        .unwrap();
}
