//! A minimal SMTP client and the load runner built on it.
//!
//! What it does: connects, reads the greeting, says EHLO, then sends messages over the same
//! connection with MAIL/RCPT/DATA pipelined (RFC 2920; both Mailroom and Postfix advertise
//! it), and times the end-of-DATA reply. It does not do TLS, AUTH or BDAT, and it does not
//! depend on any Mailroom crate: it speaks to the server only through the socket.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// One SMTP connection.
pub struct Client {
    rd: BufReader<OwnedReadHalf>,
    wr: OwnedWriteHalf,
    line: String,
}

fn proto_err(msg: String) -> io::Error {
    io::Error::other(msg)
}

impl Client {
    /// Connects and reads the greeting (which must be 220).
    pub async fn connect(addr: SocketAddr) -> io::Result<Client> {
        let sock = crate::net::connect(addr).await?;
        sock.set_nodelay(true)?;
        let (rd, wr) = sock.into_split();
        let mut c = Client {
            rd: BufReader::with_capacity(16 * 1024, rd),
            wr,
            line: String::new(),
        };
        let (code, text) = c.reply().await?;
        if code != 220 {
            return Err(proto_err(format!("greeting: {code} {text}")));
        }
        Ok(c)
    }

    /// Reads one (possibly multi-line) reply; returns its code and last line's text.
    pub async fn reply(&mut self) -> io::Result<(u16, String)> {
        loop {
            self.line.clear();
            let n = self.rd.read_line(&mut self.line).await?;
            if n == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "connection closed",
                ));
            }
            let l = self.line.trim_end();
            if l.len() < 3 {
                return Err(proto_err(format!("short reply line: {l:?}")));
            }
            let code: u16 = l[..3]
                .parse()
                .map_err(|_| proto_err(format!("bad reply: {l:?}")))?;
            if l.as_bytes().get(3) != Some(&b'-') {
                return Ok((code, l.to_string()));
            }
        }
    }

    /// Sends one command line and reads its reply.
    pub async fn cmd(&mut self, line: &str) -> io::Result<(u16, String)> {
        self.wr.write_all(format!("{line}\r\n").as_bytes()).await?;
        self.reply().await
    }

    /// EHLO, which must be answered 250.
    pub async fn ehlo(&mut self, name: &str) -> io::Result<()> {
        let (code, text) = self.cmd(&format!("EHLO {name}")).await?;
        if code != 250 {
            return Err(proto_err(format!("EHLO: {text}")));
        }
        Ok(())
    }

    /// Sends one message (already CRLF, no line starting with '.') and returns the time from
    /// the last byte of the message written to the end-of-DATA reply.
    pub async fn send(&mut self, from: &str, to: &str, message: &[u8]) -> io::Result<Duration> {
        let head = format!(
            "MAIL FROM:<{from}> SIZE={}\r\nRCPT TO:<{to}>\r\nDATA\r\n",
            message.len()
        );
        self.wr.write_all(head.as_bytes()).await?;
        let (c1, t1) = self.reply().await?;
        let (c2, t2) = self.reply().await?;
        let (c3, t3) = self.reply().await?;
        if c1 != 250 || c2 != 250 || c3 != 354 {
            if c3 == 354 {
                // The server wants data although MAIL or RCPT failed: end it empty.
                self.wr.write_all(b".\r\n").await?;
                let _ = self.reply().await?;
            }
            return Err(proto_err(format!("MAIL/RCPT/DATA: {t1} | {t2} | {t3}")));
        }
        self.wr.write_all(message).await?;
        self.wr.write_all(b".\r\n").await?;
        let start = Instant::now();
        let (code, text) = self.reply().await?;
        let took = start.elapsed();
        if code != 250 {
            return Err(proto_err(format!("end of DATA: {text}")));
        }
        Ok(took)
    }

    /// QUIT, ignoring the answer.
    pub async fn quit(mut self) {
        let _ = self.cmd("QUIT").await;
    }
}

/// A message of about `size` bytes, CRLF line ends, with `X-Bench-Id: <tag>` and a body
/// that starts with the tag too, so a delivered copy can be matched to what was sent.
pub fn make_message(tag: &str, from: &str, to: &str, size: usize) -> Vec<u8> {
    let mut m = Vec::with_capacity(size + 100);
    m.extend_from_slice(
        format!(
            "From: <{from}>\r\nTo: <{to}>\r\nSubject: bench {tag}\r\nMessage-ID: <{tag}@bench.test>\r\n\
             Date: Thu, 01 Jan 2026 00:00:00 +0000\r\nX-Bench-Id: {tag}\r\n\r\nbody-of {tag}\r\n"
        )
        .as_bytes(),
    );
    const LINE: &[u8] =
        b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-abcdefghijklm\r\n";
    while m.len() + LINE.len() <= size {
        m.extend_from_slice(LINE);
    }
    m.extend_from_slice(format!("end-of {tag}\r\n").as_bytes());
    m
}

/// What to send: message `i` goes to `rcpt(i)` tagged `tag(i)`.
pub struct Job {
    pub count: usize,
    pub size: usize,
    pub from: String,
    pub rcpt: Arc<dyn Fn(usize) -> String + Send + Sync>,
    pub tag: Arc<dyn Fn(usize) -> String + Send + Sync>,
}

/// The outcome of a load run.
#[derive(Default)]
pub struct LoadResult {
    pub elapsed: Duration,
    pub sent: usize,
    pub latencies: Vec<Duration>,
    pub errors: Vec<String>,
}

/// Sends `job.count` messages over `conns` connections, each reused for as many messages as
/// it can take from the shared counter. A failed connection is replaced once per message.
pub async fn load(addr: SocketAddr, conns: usize, job: Job) -> LoadResult {
    let next = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let job = Arc::new(job);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conns.max(1) {
        let next = next.clone();
        let errors = errors.clone();
        let job = job.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut client: Option<Client> = None;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= job.count {
                    break;
                }
                let to = (job.rcpt)(i);
                let msg = make_message(&(job.tag)(i), &job.from, &to, job.size);
                let mut result = Err(proto_err("not tried".into()));
                for _attempt in 0..2 {
                    if client.is_none() {
                        match Client::connect(addr).await {
                            Ok(mut c) => match c.ehlo("client.bench.test").await {
                                Ok(()) => client = Some(c),
                                Err(e) => {
                                    result = Err(e);
                                    continue;
                                }
                            },
                            Err(e) => {
                                result = Err(e);
                                continue;
                            }
                        }
                    }
                    let c = client.as_mut().expect("connected above");
                    result = c.send(&job.from, &to, &msg).await;
                    match &result {
                        Ok(_) => break,
                        Err(e) if e.kind() == io::ErrorKind::Other => break, // an SMTP refusal
                        Err(_) => client = None,                             // I/O: reconnect
                    }
                }
                match result {
                    Ok(t) => lat.push(t),
                    Err(e) => errors
                        .lock()
                        .expect("lock")
                        .push(format!("message {i} to {to}: {e}")),
                }
            }
            if let Some(c) = client {
                c.quit().await;
            }
            lat
        }));
    }
    let mut latencies = Vec::new();
    for t in tasks {
        if let Ok(l) = t.await {
            latencies.extend(l);
        }
    }
    let elapsed = start.elapsed();
    let errors = std::mem::take(&mut *errors.lock().expect("lock"));
    LoadResult {
        elapsed,
        sent: latencies.len(),
        latencies,
        errors,
    }
}

/// Opens `n` SMTP connections, reads each greeting and says EHLO, and keeps them open. Opens
/// at most `parallel` at a time so the listen backlog is not overrun.
pub async fn open_idle(addr: SocketAddr, n: usize, parallel: usize) -> (Vec<Client>, Vec<String>) {
    let sem = Arc::new(tokio::sync::Semaphore::new(parallel.max(1)));
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let sem = sem.clone();
        tasks.push(tokio::spawn(async move {
            let _p = sem.acquire_owned().await.expect("semaphore");
            let mut c = Client::connect(addr).await?;
            c.ehlo("idle.bench.test").await?;
            Ok::<Client, io::Error>(c)
        }));
    }
    let mut ok = Vec::new();
    let mut errs = Vec::new();
    for t in tasks {
        match t.await {
            Ok(Ok(c)) => ok.push(c),
            Ok(Err(e)) => errs.push(e.to_string()),
            Err(e) => errs.push(e.to_string()),
        }
    }
    (ok, errs)
}
