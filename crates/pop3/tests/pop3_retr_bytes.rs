//! The octets RETR and TOP put on the wire, compared with the Maildir files, over plain TCP
//! and implicit TLS on 127.0.0.1: messages that go out unchanged (the one-write path), ones
//! that need byte-stuffing (lines starting with `.`), foreign files with bare LF or without a
//! final CRLF, an empty one, and messages above the size read whole (streamed in chunks), with
//! and without dots. The client is a raw socket reader: it takes the response up to the
//! terminating `CRLF.CRLF`, undoes the stuffing itself and compares octet for octet.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use pop3::{serve, Authenticator, LoginGuard, LoginLimits, Pop3Config};
use rustls::crypto::ring::default_provider;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::{TlsAcceptor, TlsConnector};

struct OneUser(PathBuf);

impl Authenticator for OneUser {
    fn authenticate(&self, user: &str, password: &str) -> Option<PathBuf> {
        (user == "alice" && password == "pw").then(|| self.0.clone())
    }
}

/// A message of `lines` lines of `width` octets each, CRLF, every `dot_every`-th line starting
/// with a dot (0: none).
fn body(lines: usize, width: usize, dot_every: usize) -> Vec<u8> {
    let mut v = b"Subject: generated\r\nX-N: 1\r\n\r\n".to_vec();
    for i in 0..lines {
        if dot_every > 0 && i % dot_every == 0 {
            v.push(b'.');
        }
        v.extend(std::iter::repeat_n(b'a' + (i % 26) as u8, width));
        v.extend_from_slice(b"\r\n");
    }
    v
}

/// The messages, in delivery order, and what RETR must give back for each (after unstuffing).
fn messages() -> Vec<(Vec<u8>, Vec<u8>)> {
    let same = |m: Vec<u8>| (m.clone(), m);
    vec![
        same(b"Subject: clean\r\n\r\nhello\r\nworld\r\n".to_vec()),
        same(b"Subject: dots\r\n\r\n.first\r\nmid\r\n..two\r\n.\r\nend\r\n".to_vec()),
        same(b".starts with a dot\r\n\r\nbody\r\n".to_vec()),
        same(Vec::new()),
        // Foreign files: bare LF becomes CRLF, a last line without one gets it.
        (
            b"Subject: lf\n\nline\n.dot\n".to_vec(),
            b"Subject: lf\r\n\r\nline\r\n.dot\r\n".to_vec(),
        ),
        (
            b"Subject: open\r\n\r\nno end".to_vec(),
            b"Subject: open\r\n\r\nno end\r\n".to_vec(),
        ),
        // Above the size read whole: streamed.
        same(body(4000, 98, 0)),
        same(body(4000, 98, 7)),
        // Just below it, with dots at the end of a 4 KiB read and elsewhere.
        same(body(2000, 60, 13)),
    ]
}

struct Server {
    addr: std::net::SocketAddr,
    connector: TlsConnector,
    files: Vec<Vec<u8>>,
    _dir: tempfile::TempDir,
    _shutdown: watch::Sender<bool>,
}

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

async fn start(implicit_tls: bool) -> (Server, Vec<Vec<u8>>) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("Maildir");
    for sub in ["new", "cur", "tmp"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    let mut files = Vec::new();
    let mut wanted = Vec::new();
    for (i, (file, want)) in messages().into_iter().enumerate() {
        let t = 1_764_400_000 + i as u64;
        let name = format!("{t}.Q{t:016X}R0.mx.example.test,S={}", file.len());
        std::fs::write(root.join("new").join(name), &file).unwrap();
        files.push(file);
        wanted.push(want);
    }
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (acceptor, connector) = tls_pair();
    let (tx, rx) = watch::channel(false);
    let guard = Arc::new(LoginGuard::new(LoginLimits::default()));
    tokio::spawn(serve(
        listener,
        Arc::new(Pop3Config::default()),
        Arc::new(OneUser(root)),
        guard,
        Some(acceptor),
        implicit_tls,
        rx,
    ));
    let s = Server {
        addr,
        connector,
        files,
        _dir: dir,
        _shutdown: tx,
    };
    (s, wanted)
}

/// Reads raw octets; responses are taken out of `buf` as they complete.
struct Wire<S> {
    io: S,
    buf: Vec<u8>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Wire<S> {
    async fn fill(&mut self) {
        let mut chunk = [0u8; 8192];
        let n = tokio::time::timeout(Duration::from_secs(20), self.io.read(&mut chunk))
            .await
            .expect("data in time")
            .unwrap();
        assert!(n > 0, "EOF");
        self.buf.extend_from_slice(&chunk[..n]);
    }

    async fn line(&mut self) -> Vec<u8> {
        loop {
            if let Some(p) = self.buf.windows(2).position(|w| w == b"\r\n") {
                return self.buf.drain(..p + 2).collect();
            }
            self.fill().await;
        }
    }

    async fn cmd(&mut self, line: &str) -> Vec<u8> {
        self.io
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .unwrap();
        self.io.flush().await.unwrap();
        self.line().await
    }

    /// The raw multi-line body after a `+OK` line, terminator excluded.
    async fn multiline(&mut self) -> Vec<u8> {
        let mut from = 0;
        loop {
            if self.buf.starts_with(b".\r\n") {
                self.buf.drain(..3);
                return Vec::new();
            }
            if let Some(p) = self.buf[from..].windows(5).position(|w| w == b"\r\n.\r\n") {
                let end = from + p + 2;
                let body: Vec<u8> = self.buf.drain(..end + 3).take(end).collect();
                return body;
            }
            from = self.buf.len().saturating_sub(4);
            self.fill().await;
        }
    }
}

/// RFC 1939 §3: a line starting with `.` lost its first octet to stuffing.
fn unstuff(wire: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(wire.len());
    let mut at_start = true;
    for &b in wire {
        if at_start && b == b'.' {
            at_start = false;
            continue;
        }
        at_start = b == b'\n';
        out.push(b);
    }
    out
}

/// No line of the wire form starts with a single dot (the client would take it as the end).
fn properly_stuffed(wire: &[u8]) -> bool {
    wire.split(|&b| b == b'\n')
        .all(|l| !l.starts_with(b".") || l.starts_with(b".."))
}

/// What `TOP n` must give: the header, the blank line and the first `n` body lines.
fn top_of(msg: &[u8], n: usize) -> Vec<u8> {
    let text = msg;
    let sep = text
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|p| p + 4)
        .unwrap_or(text.len());
    let mut end = sep;
    for _ in 0..n {
        match text[end..].windows(2).position(|w| w == b"\r\n") {
            Some(p) => end += p + 2,
            None => {
                end = text.len();
                break;
            }
        }
    }
    text[..end].to_vec()
}

async fn check_all<S: AsyncRead + AsyncWrite + Unpin>(io: S, files: &[Vec<u8>], want: &[Vec<u8>]) {
    let mut w = Wire {
        io,
        buf: Vec::new(),
    };
    assert!(w.line().await.starts_with(b"+OK"));
    assert!(w.cmd("USER alice").await.starts_with(b"+OK"));
    assert!(w.cmd("PASS pw").await.starts_with(b"+OK"));
    for round in 0..2 {
        for (i, (file, want)) in files.iter().zip(want).enumerate() {
            let n = i + 1;
            let status = w.cmd(&format!("RETR {n}")).await;
            assert_eq!(
                status,
                format!("+OK {} octets\r\n", file.len()).into_bytes(),
                "RETR {n}"
            );
            let wire = w.multiline().await;
            assert!(properly_stuffed(&wire), "RETR {n} not stuffed");
            assert!(
                unstuff(&wire) == *want,
                "RETR {n} (round {round}): {} octets back, {} expected",
                unstuff(&wire).len(),
                want.len()
            );
        }
    }
    // TOP of the CRLF messages (1, 2, 3, the large ones).
    for n in [1usize, 2, 3, 7, 8, 9] {
        for lines in [0usize, 1, 3, 100_000] {
            assert!(w.cmd(&format!("TOP {n} {lines}")).await.starts_with(b"+OK"));
            let wire = w.multiline().await;
            assert!(properly_stuffed(&wire), "TOP {n} {lines} not stuffed");
            assert!(
                unstuff(&wire) == top_of(&files[n - 1], lines),
                "TOP {n} {lines}"
            );
        }
    }
    // Pipelined: three RETRs in one write, answered in order.
    w.io.write_all(b"RETR 1\r\nRETR 2\r\nRETR 1\r\n")
        .await
        .unwrap();
    for n in [1usize, 2, 1] {
        assert!(w.line().await.starts_with(b"+OK"));
        assert!(unstuff(&w.multiline().await) == want[n - 1]);
    }
    assert!(w.cmd("QUIT").await.starts_with(b"+OK"));
}

#[tokio::test]
async fn retr_and_top_give_the_maildir_bytes_over_tcp() {
    let (s, want) = start(false).await;
    let tcp = TcpStream::connect(s.addr).await.unwrap();
    check_all(tcp, &s.files, &want).await;
}

#[tokio::test]
async fn retr_and_top_give_the_maildir_bytes_over_tls() {
    let (s, want) = start(true).await;
    let tcp = TcpStream::connect(s.addr).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    let tls = s.connector.connect(name, tcp).await.unwrap();
    check_all(tls, &s.files, &want).await;
}
