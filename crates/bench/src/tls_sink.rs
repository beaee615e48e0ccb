//! The far end of S2S: an SMTP sink that speaks STARTTLS, written with tokio and
//! tokio-rustls, standing in for `mx.remote.example` (certificate from the bench CA,
//! [`crate::pki`]).
//!
//! It greets, advertises PIPELINING, 8BITMIME, SIZE and STARTTLS (not again once in TLS),
//! accepts MAIL, RCPT and DATA (pipelined: replies are written when the client has nothing
//! more in flight), RSET, NOOP and QUIT, serves any number of concurrent connections and
//! messages per connection, and counts messages ended with "." — in all, and those received
//! over TLS. It also accepts mail in plaintext (so a client that skips STARTTLS is seen, not
//! refused). It stores nothing, checks no addresses, and offers no AUTH, BDAT or SMTPUTF8.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

const NAME: &str = "mx.remote.example";

/// What the sink has seen so far.
#[derive(Default)]
pub struct Counters {
    pub messages: AtomicUsize,
    pub messages_over_tls: AtomicUsize,
    pub sessions: AtomicUsize,
    pub tls_sessions: AtomicUsize,
    pub failed_handshakes: AtomicUsize,
}

/// A running sink; its accept loop stops when it is dropped.
pub struct TlsSink {
    pub addr: SocketAddr,
    pub counters: Arc<Counters>,
    accept: tokio::task::JoinHandle<()>,
}

impl TlsSink {
    /// Listens on `addr` (port 0: a free one) on `rt`, presenting `tls` after STARTTLS.
    pub fn start(
        rt: &tokio::runtime::Runtime,
        addr: SocketAddr,
        tls: Arc<rustls::ServerConfig>,
    ) -> Result<TlsSink, String> {
        let listener = rt
            .block_on(TcpListener::bind(addr))
            .map_err(|e| format!("TLS sink on {addr}: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let counters = Arc::new(Counters::default());
        let c = counters.clone();
        let acceptor = TlsAcceptor::from(tls);
        let accept = rt.spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    continue;
                };
                let (c, acceptor) = (c.clone(), acceptor.clone());
                tokio::spawn(async move {
                    let _ = session(tcp, acceptor, c).await;
                });
            }
        });
        Ok(TlsSink {
            addr,
            counters,
            accept,
        })
    }

    /// Messages received so far (over TLS or not).
    pub fn count(&self) -> usize {
        self.counters.messages.load(Ordering::Relaxed)
    }

    /// Messages received over TLS so far.
    pub fn over_tls(&self) -> usize {
        self.counters.messages_over_tls.load(Ordering::Relaxed)
    }
}

impl Drop for TlsSink {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl crate::scenarios::Counted for TlsSink {
    fn count(&self) -> usize {
        TlsSink::count(self)
    }
}

/// How a dialogue ended.
enum End {
    Quit,
    StartTls,
}

async fn session(tcp: TcpStream, acceptor: TlsAcceptor, c: Arc<Counters>) -> io::Result<()> {
    tcp.set_nodelay(true)?;
    c.sessions.fetch_add(1, Ordering::Relaxed);
    let mut plain = BufReader::with_capacity(64 * 1024, tcp);
    plain
        .get_mut()
        .write_all(format!("220 {NAME} ESMTP bench sink\r\n").as_bytes())
        .await?;
    if let End::Quit = dialogue(&mut plain, false, &c).await? {
        return Ok(());
    }
    if !plain.buffer().is_empty() {
        // RFC 3207 §4.2: nothing may follow STARTTLS before the handshake.
        return Err(io::Error::other("data pipelined after STARTTLS"));
    }
    let tls = match acceptor.accept(plain.into_inner()).await {
        Ok(t) => t,
        Err(e) => {
            c.failed_handshakes.fetch_add(1, Ordering::Relaxed);
            return Err(e);
        }
    };
    c.tls_sessions.fetch_add(1, Ordering::Relaxed);
    let mut secure = BufReader::with_capacity(64 * 1024, tls);
    dialogue(&mut secure, true, &c).await?;
    Ok(())
}

fn ehlo_reply(tls: bool) -> String {
    let mut r = format!("250-{NAME}\r\n250-PIPELINING\r\n250-8BITMIME\r\n");
    if tls {
        r.push_str("250 SIZE 104857600\r\n");
    } else {
        r.push_str("250-SIZE 104857600\r\n250 STARTTLS\r\n");
    }
    r
}

/// Commands until QUIT, the end of the connection, or STARTTLS (in plaintext only).
async fn dialogue<S: AsyncRead + AsyncWrite + Unpin>(
    io: &mut BufReader<S>,
    tls: bool,
    c: &Counters,
) -> io::Result<End> {
    let mut out: Vec<u8> = Vec::with_capacity(1024);
    let mut line = Vec::with_capacity(1024);
    let (mut mail, mut rcpts) = (false, 0usize);
    loop {
        // Pipelining: answer once the client has nothing more buffered here.
        if io.buffer().is_empty() && !out.is_empty() {
            io.get_mut().write_all(&out).await?;
            io.get_mut().flush().await?;
            out.clear();
        }
        line.clear();
        if io.read_until(b'\n', &mut line).await? == 0 {
            return Ok(End::Quit);
        }
        let text = String::from_utf8_lossy(&line);
        let verb = text
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_uppercase();
        let reply: &str = match verb.as_str() {
            "EHLO" => {
                (mail, rcpts) = (false, 0);
                out.extend_from_slice(ehlo_reply(tls).as_bytes());
                continue;
            }
            "HELO" => {
                (mail, rcpts) = (false, 0);
                "250 mx.remote.example\r\n"
            }
            "MAIL" if mail => "503 5.5.1 nested MAIL\r\n",
            "MAIL" => {
                (mail, rcpts) = (true, 0);
                "250 2.1.0 Ok\r\n"
            }
            "RCPT" if !mail => "503 5.5.1 need MAIL\r\n",
            "RCPT" => {
                rcpts += 1;
                "250 2.1.5 Ok\r\n"
            }
            "DATA" if rcpts == 0 => "554 5.5.1 no valid recipients\r\n",
            "DATA" => {
                out.extend_from_slice(b"354 End data with <CR><LF>.<CR><LF>\r\n");
                io.get_mut().write_all(&out).await?;
                io.get_mut().flush().await?;
                out.clear();
                read_data(io, &mut line).await?;
                c.messages.fetch_add(1, Ordering::Relaxed);
                if tls {
                    c.messages_over_tls.fetch_add(1, Ordering::Relaxed);
                }
                (mail, rcpts) = (false, 0);
                "250 2.0.0 Ok: queued\r\n"
            }
            "RSET" => {
                (mail, rcpts) = (false, 0);
                "250 2.0.0 Ok\r\n"
            }
            "NOOP" => "250 2.0.0 Ok\r\n",
            "QUIT" => {
                out.extend_from_slice(b"221 2.0.0 Bye\r\n");
                io.get_mut().write_all(&out).await?;
                io.get_mut().shutdown().await?;
                return Ok(End::Quit);
            }
            "STARTTLS" if !tls => {
                out.extend_from_slice(b"220 2.0.0 Ready to start TLS\r\n");
                io.get_mut().write_all(&out).await?;
                io.get_mut().flush().await?;
                return Ok(End::StartTls);
            }
            _ => "502 5.5.2 command not recognized\r\n",
        };
        out.extend_from_slice(reply.as_bytes());
    }
}

/// Reads message lines up to and including the lone ".".
async fn read_data<S: AsyncRead + Unpin>(
    io: &mut BufReader<S>,
    line: &mut Vec<u8>,
) -> io::Result<()> {
    loop {
        line.clear();
        if io.read_until(b'\n', line).await? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed in DATA",
            ));
        }
        if line.as_slice() == b".\r\n" || line.as_slice() == b".\n" {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plaintext_and_tls_messages_are_counted_over_reused_connections() {
        let rt = tokio::runtime::Runtime::new().unwrap();
        let ca = crate::pki::BenchCa::new().unwrap();
        let sink = TlsSink::start(
            &rt,
            "127.0.0.1:0".parse().unwrap(),
            ca.server_config(NAME).unwrap(),
        )
        .unwrap();
        let job = crate::smtp::Job {
            count: 30,
            size: 5000,
            from: "a@unsigned.test".into(),
            rcpt: Arc::new(|i| format!("r{i}@remote.example")),
            tag: Arc::new(|i| format!("t{i}")),
        };
        let r = rt.block_on(crate::smtp::load(sink.addr, 3, job));
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        assert_eq!(r.sent, 30);
        assert_eq!(sink.count(), 30);
        assert_eq!(sink.over_tls(), 0);
        assert_eq!(sink.counters.sessions.load(Ordering::Relaxed), 3);

        // STARTTLS, verified against the bench CA, then two pipelined messages.
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca.cert_der()).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
        rt.block_on(async {
            let tcp = TcpStream::connect(sink.addr).await.unwrap();
            let mut rd = BufReader::new(tcp);
            let mut l = String::new();
            rd.read_line(&mut l).await.unwrap();
            assert!(l.starts_with("220 "), "{l}");
            rd.get_mut()
                .write_all(b"EHLO c\r\nSTARTTLS\r\n")
                .await
                .unwrap();
            let mut seen = String::new();
            while !seen.ends_with("220 2.0.0 Ready to start TLS\r\n") {
                l.clear();
                rd.read_line(&mut l).await.unwrap();
                seen.push_str(&l);
            }
            assert!(seen.contains("250 STARTTLS"), "{seen}");
            let name = rustls::pki_types::ServerName::try_from(NAME).unwrap();
            let tls = connector.connect(name, rd.into_inner()).await.unwrap();
            let mut rd = BufReader::new(tls);
            let two = "MAIL FROM:<a@x>\r\nRCPT TO:<b@remote.example>\r\nDATA\r\n";
            rd.get_mut()
                .write_all(format!("EHLO c\r\n{two}").as_bytes())
                .await
                .unwrap();
            rd.get_mut().flush().await.unwrap();
            let mut got = String::new();
            for _ in 0..2 {
                while !got.ends_with("354 End data with <CR><LF>.<CR><LF>\r\n") {
                    l.clear();
                    rd.read_line(&mut l).await.unwrap();
                    got.push_str(&l);
                }
                assert!(!got.contains("STARTTLS"), "{got}");
                rd.get_mut()
                    .write_all(format!("hello\r\n.\r\n{two}").as_bytes())
                    .await
                    .unwrap();
                rd.get_mut().flush().await.unwrap();
                got.clear();
            }
            rd.get_mut()
                .write_all(b"hi\r\n.\r\nQUIT\r\n")
                .await
                .unwrap();
            rd.get_mut().flush().await.unwrap();
            let mut rest = String::new();
            while !rest.contains("221 ") {
                l.clear();
                if rd.read_line(&mut l).await.unwrap() == 0 {
                    break;
                }
                rest.push_str(&l);
            }
            assert!(rest.contains("250 2.0.0 Ok: queued"), "{rest}");
        });
        assert_eq!(sink.count(), 33);
        assert_eq!(sink.over_tls(), 3);
        assert_eq!(sink.counters.tls_sessions.load(Ordering::Relaxed), 1);
    }
}
