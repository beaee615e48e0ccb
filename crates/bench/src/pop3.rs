//! A minimal POP3 client (RFC 1939: USER/PASS, UIDL, RETR, QUIT) and the load runner that
//! makes each client log in to its mailboxes, list them, retrieve every message and quit.
//! No TLS, no APOP; speaks to the server only through the socket.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

pub struct Client {
    rd: BufReader<OwnedReadHalf>,
    wr: OwnedWriteHalf,
    buf: Vec<u8>,
}

fn err(msg: String) -> io::Error {
    io::Error::other(msg)
}

impl Client {
    pub async fn connect(addr: SocketAddr) -> io::Result<Client> {
        let sock = crate::net::connect(addr).await?;
        sock.set_nodelay(true)?;
        let (rd, wr) = sock.into_split();
        let mut c = Client {
            rd: BufReader::with_capacity(8 * 1024, rd),
            wr,
            buf: Vec::new(),
        };
        c.status().await?;
        Ok(c)
    }

    async fn line(&mut self) -> io::Result<&[u8]> {
        self.buf.clear();
        let n = self.rd.read_until(b'\n', &mut self.buf).await?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed",
            ));
        }
        Ok(&self.buf)
    }

    /// Reads a status line; `-ERR` becomes an error.
    async fn status(&mut self) -> io::Result<String> {
        let l = String::from_utf8_lossy(self.line().await?)
            .trim_end()
            .to_string();
        if l.starts_with("+OK") {
            Ok(l)
        } else {
            Err(err(l))
        }
    }

    async fn cmd(&mut self, line: &str) -> io::Result<String> {
        self.wr.write_all(format!("{line}\r\n").as_bytes()).await?;
        self.status().await
    }

    /// Reads a multi-line body up to the lone ".", calling `each` with every (dot-unstuffed)
    /// line including its line end. Returns the number of body bytes.
    async fn multiline(&mut self, mut each: impl FnMut(&[u8])) -> io::Result<usize> {
        let mut total = 0;
        loop {
            let l = self.line().await?;
            if l == b".\r\n" || l == b".\n" {
                return Ok(total);
            }
            let l = if l.starts_with(b"..") { &l[1..] } else { l };
            total += l.len();
            each(l);
        }
    }

    /// USER/PASS.
    pub async fn login(&mut self, user: &str, pass: &str) -> io::Result<()> {
        self.cmd(&format!("USER {user}")).await?;
        self.cmd(&format!("PASS {pass}")).await.map(|_| ())
    }

    /// UIDL: the message numbers and unique ids.
    pub async fn uidl(&mut self) -> io::Result<Vec<(u32, String)>> {
        self.cmd("UIDL").await?;
        let mut v = Vec::new();
        self.multiline(|l| {
            let s = String::from_utf8_lossy(l);
            let mut it = s.split_whitespace();
            if let (Some(n), Some(u)) = (it.next().and_then(|n| n.parse().ok()), it.next()) {
                v.push((n, u.to_string()));
            }
        })
        .await?;
        Ok(v)
    }

    /// RETR: the message's size in octets as received and whether it was whole (it carries
    /// the `X-Bench-Id` header and its own `end-of` line).
    pub async fn retr(&mut self, n: u32) -> io::Result<(usize, bool)> {
        self.cmd(&format!("RETR {n}")).await?;
        let mut id = None::<String>;
        let mut last = Vec::new();
        let size = self
            .multiline(|l| {
                if id.is_none() && l.starts_with(b"X-Bench-Id: ") {
                    id = Some(String::from_utf8_lossy(&l[12..]).trim_end().to_string());
                }
                if l.starts_with(b"end-of ") {
                    last = l.to_vec();
                }
            })
            .await?;
        let whole = match id {
            Some(t) => String::from_utf8_lossy(&last).trim_end() == format!("end-of {t}"),
            None => false,
        };
        Ok((size, whole))
    }

    pub async fn quit(mut self) -> io::Result<()> {
        self.cmd("QUIT").await.map(|_| ())
    }
}

#[derive(Default)]
pub struct LoadResult {
    pub elapsed: Duration,
    pub sessions: usize,
    pub retrieved: usize,
    pub bytes: u64,
    pub logins: Vec<Duration>,
    pub errors: Vec<String>,
}

/// `clients` concurrent clients share the mailboxes `user(0..mailboxes)`; each session logs
/// in, lists with UIDL, retrieves every message and quits. Expects `per_box` messages each.
pub async fn load(
    addr: SocketAddr,
    clients: usize,
    mailboxes: usize,
    per_box: usize,
    user: Arc<dyn Fn(usize) -> String + Send + Sync>,
    password: String,
) -> LoadResult {
    let next = Arc::new(AtomicUsize::new(0));
    let out = Arc::new(Mutex::new(LoadResult::default()));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients.max(1) {
        let (next, out, user, password) =
            (next.clone(), out.clone(), user.clone(), password.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= mailboxes {
                    break;
                }
                let u = user(i);
                match session(addr, &u, &password, per_box).await {
                    Ok((login, n, bytes)) => {
                        let mut o = out.lock().expect("lock");
                        o.sessions += 1;
                        o.logins.push(login);
                        o.retrieved += n;
                        o.bytes += bytes;
                    }
                    Err(e) => out.lock().expect("lock").errors.push(format!("{u}: {e}")),
                }
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let mut r = std::mem::take(&mut *out.lock().expect("lock"));
    r.elapsed = start.elapsed();
    r
}

async fn session(
    addr: SocketAddr,
    user: &str,
    pass: &str,
    per_box: usize,
) -> io::Result<(Duration, usize, u64)> {
    let mut c = Client::connect(addr).await?;
    let t = Instant::now();
    c.login(user, pass).await?;
    let login = t.elapsed();
    let list = c.uidl().await?;
    if list.len() != per_box {
        return Err(err(format!(
            "UIDL lists {} messages, expected {per_box}",
            list.len()
        )));
    }
    let mut bytes = 0u64;
    for (n, uid) in &list {
        let (size, whole) = c.retr(*n).await?;
        if !whole {
            return Err(err(format!("RETR {n} ({uid}): message not whole")));
        }
        bytes += size as u64;
    }
    c.quit().await?;
    Ok((login, list.len(), bytes))
}

/// Opens `n` POP3 connections (greeting read, not logged in) and keeps them.
pub async fn open_idle(addr: SocketAddr, n: usize, parallel: usize) -> (Vec<Client>, Vec<String>) {
    let sem = Arc::new(tokio::sync::Semaphore::new(parallel.max(1)));
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let sem = sem.clone();
        tasks.push(tokio::spawn(async move {
            let _p = sem.acquire_owned().await.expect("semaphore");
            Client::connect(addr).await
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
