//! The rspamd content filter after DATA: the message and its envelope go to rspamd's
//! `/checkv2` (the `IP`, `Helo`, `From`, `Rcpt` and `User` headers of its protocol) over a
//! small HTTP/1.1 client, one connection per message (`Connection: close`), the whole
//! exchange under `rspamd_timeout`, the answer read up to 1 MiB. Its action becomes a
//! refusal, tags or nothing through the pure [`super::rspamd_verdict`].
//!
//! Who is scanned: port 25 clients neither trusted nor authenticated, unless allowlisted;
//! authenticated and trusted senders only with `scan_outbound`. rspamd down, too slow or
//! answering nonsense: accepted and counted (`rspamd_fail_open`), else `451 4.7.1`.
//!
//! A message streamed to its spool draft (larger than what a session keeps in memory) is
//! sent from the file in [`BLOCK`]s ([`Payload::File`], [`super::rspamd_draft`]); one over
//! `rspamd_max_size` (rspamd's own limit, 50 MiB by default) is not sent: stored unscanned,
//! logged and counted. hyper is not used: one request shape, one answer read to its end,
//! under one deadline.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use proto::smtp::{Connection, Envelope, Reply, Service};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::rspamd_verdict::{self, Verdict};

/// Largest answer read.
const MAX_ANSWER: usize = 1024 * 1024;

/// Octets read from a draft file and written to rspamd at a time.
pub const BLOCK: usize = 64 * 1024;

/// What rspamd is sent after the request head.
pub enum Payload<'a> {
    /// A message held in memory.
    Memory(&'a [u8]),
    /// `len` octets of `file` from its position (the client's message in its draft), read
    /// in [`BLOCK`]s: memory is one block whatever the message size.
    File { file: std::fs::File, len: u64 },
}

impl Payload<'_> {
    fn len(&self) -> u64 {
        match self {
            Payload::Memory(m) => m.len() as u64,
            Payload::File { len, .. } => *len,
        }
    }
}

/// Where rspamd is and how to treat it.
pub struct Rspamd {
    /// `host:port` to connect to.
    authority: String,
    pub timeout: Duration,
    pub fail_open: bool,
    pub scan_outbound: bool,
    /// Larger messages are not sent (stored unscanned, counted in `skipped`).
    pub max_size: u64,
    /// Messages accepted (or deferred) because rspamd could not be asked.
    unavailable: AtomicU64,
    /// Messages stored unscanned because they were over `max_size`.
    skipped: AtomicU64,
}

/// The envelope data rspamd is told.
pub struct Meta<'a> {
    pub ip: IpAddr,
    pub helo: &'a str,
    pub from: &'a str,
    pub rcpts: &'a [String],
    pub user: Option<&'a str>,
}

/// A header value without control characters.
fn value(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control())
        .take(1000)
        .collect()
}

impl Rspamd {
    /// `url`: `http://host:port` (a path, if any, is ignored: the endpoint is `/checkv2`).
    /// Messages over 50 MiB (rspamd's own default limit) are not sent; see
    /// [`Rspamd::with_max_size`].
    pub fn new(
        url: &str,
        timeout: Duration,
        fail_open: bool,
        scan_outbound: bool,
    ) -> Result<Rspamd, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url:?}: must start with http://"))?;
        let authority = rest.split('/').next().unwrap_or("");
        if authority.is_empty() || authority.contains('@') {
            return Err(format!("{url:?}: no host"));
        }
        let authority = if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
        {
            authority.to_string()
        } else {
            format!("{authority}:11333")
        };
        Ok(Rspamd {
            authority,
            timeout,
            fail_open,
            scan_outbound,
            max_size: DEFAULT_MAX_SIZE,
            unavailable: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
        })
    }

    /// Sends no message larger than `max_size` octets.
    pub fn with_max_size(mut self, max_size: u64) -> Rspamd {
        self.max_size = max_size;
        self
    }

    /// Times rspamd could not be asked.
    pub fn unavailable(&self) -> u64 {
        self.unavailable.load(Ordering::Relaxed)
    }

    /// Messages stored unscanned for their size.
    pub fn skipped(&self) -> u64 {
        self.skipped.load(Ordering::Relaxed)
    }

    /// True (and logged, counted) when a message of `size` octets is over `max_size`.
    pub(super) fn too_large(&self, size: u64, from: &str, ip: IpAddr) -> bool {
        if size <= self.max_size {
            return false;
        }
        let n = self.skipped.fetch_add(1, Ordering::Relaxed) + 1;
        tracing::info!(
            "filter: event=rspamd_skipped from=<{from}> client=[{ip}] reason=over_max_size size={size} max={} count={n}",
            self.max_size
        );
        true
    }

    /// The request head for a message of `length` octets.
    pub fn request_head(&self, meta: &Meta<'_>, length: u64) -> String {
        let mut head = format!(
            "POST /checkv2 HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {length}\r\nIP: {}\r\nHelo: {}\r\nFrom: {}\r\n",
            self.authority,
            meta.ip,
            value(meta.helo),
            value(meta.from)
        );
        for r in meta.rcpts {
            head.push_str(&format!("Rcpt: {}\r\n", value(r)));
        }
        if let Some(u) = meta.user {
            head.push_str(&format!("User: {}\r\n", value(u)));
        }
        head.push_str("\r\n");
        head
    }

    /// Asks rspamd; the answer's body.
    pub async fn ask(&self, meta: &Meta<'_>, payload: Payload<'_>) -> Result<Vec<u8>, String> {
        let exchange = async {
            let mut stream = TcpStream::connect(&self.authority)
                .await
                .map_err(|e| format!("connect {}: {e}", self.authority))?;
            let _ = stream.set_nodelay(true);
            stream
                .write_all(self.request_head(meta, payload.len()).as_bytes())
                .await
                .map_err(|e| format!("write: {e}"))?;
            match payload {
                Payload::Memory(message) => stream
                    .write_all(message)
                    .await
                    .map_err(|e| format!("write: {e}"))?,
                Payload::File { file, len } => send_file(&mut stream, file, len).await?,
            }
            let mut answer = Vec::with_capacity(4096);
            let mut limited = (&mut stream).take((MAX_ANSWER + 64 * 1024) as u64);
            limited
                .read_to_end(&mut answer)
                .await
                .map_err(|e| format!("read: {e}"))?;
            Ok::<_, String>(answer)
        };
        let answer = tokio::time::timeout(self.timeout, exchange)
            .await
            .map_err(|_| format!("no answer within {:?}", self.timeout))??;
        body(&answer)
    }
}

/// rspamd's default `max_message` (50 MiB): larger messages it would refuse to scan.
pub const DEFAULT_MAX_SIZE: u64 = 50 << 20;

/// Writes `len` octets of `file` from its position, one [`BLOCK`] at a time.
async fn send_file(stream: &mut TcpStream, file: std::fs::File, len: u64) -> Result<(), String> {
    let mut file = tokio::fs::File::from_std(file).take(len);
    let mut block = vec![0u8; BLOCK];
    let mut sent = 0u64;
    loop {
        let n = file
            .read(&mut block)
            .await
            .map_err(|e| format!("read the draft: {e}"))?;
        if n == 0 {
            break;
        }
        stream
            .write_all(&block[..n])
            .await
            .map_err(|e| format!("write: {e}"))?;
        sent += n as u64;
    }
    if sent != len {
        return Err(format!("the draft ended after {sent} of {len} octets"));
    }
    Ok(())
}

/// The body of an HTTP/1.1 answer read to its end: status 200 required; `Content-Length`
/// or chunked.
pub fn body(answer: &[u8]) -> Result<Vec<u8>, String> {
    let end = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("incomplete HTTP answer")?;
    let head = String::from_utf8_lossy(&answer[..end]);
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or("");
    let code = status.split(' ').nth(1).unwrap_or("");
    if !status.starts_with("HTTP/1.") || code != "200" {
        return Err(format!("HTTP status {:?}", value(status)));
    }
    let mut length = None;
    let mut chunked = false;
    for line in lines {
        let Some((name, v)) = line.split_once(':') else {
            continue;
        };
        let v = v.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(v.parse::<usize>().map_err(|_| "bad Content-Length")?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = v.eq_ignore_ascii_case("chunked");
        }
    }
    let rest = &answer[end + 4..];
    if chunked {
        return dechunk(rest);
    }
    match length {
        Some(n) if n > MAX_ANSWER => Err("answer too large".into()),
        Some(n) if rest.len() < n => Err("answer cut short".into()),
        Some(n) => Ok(rest[..n].to_vec()),
        None if rest.len() > MAX_ANSWER => Err("answer too large".into()),
        None => Ok(rest.to_vec()),
    }
}

fn dechunk(mut rest: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("bad chunk")?;
        let size_text = String::from_utf8_lossy(&rest[..eol]);
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| "bad chunk size")?;
        rest = &rest[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if size > MAX_ANSWER || out.len() + size > MAX_ANSWER || rest.len() < size + 2 {
            return Err("bad chunk".into());
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

/// The listener's call after the SPF/DKIM/DMARC screen: `Ok(message)` to store (tagged when
/// rspamd said so), or `Err(reply)` to refuse it. A message streamed to its `draft` (then
/// `message` is empty) is scanned from the file and tagged there ([`super::rspamd_draft`]);
/// a refusal drops the draft. (The arguments mirror `verify::screen`'s, plus the filters and
/// the client's list check.)
#[allow(clippy::too_many_arguments)]
pub async fn scan(
    filters: Option<&super::Filters>,
    check: &super::ClientCheck,
    service: Service,
    conn: &Connection,
    ip: IpAddr,
    draft: &mut Option<std::io::Result<store::spool::Draft>>,
    envelope: &Envelope,
    message: Vec<u8>,
) -> Result<Vec<u8>, Reply> {
    let Some(rspamd) = filters.and_then(|f| f.rspamd.as_deref()) else {
        return Ok(message);
    };
    let outbound = conn.session().sender_verified();
    if (outbound && !rspamd.scan_outbound) || (!outbound && service != Service::Mx) {
        return Ok(message);
    }
    if check.allowlisted() {
        return Ok(message);
    }
    let meta = Meta {
        ip,
        helo: conn.session().helo_name(),
        from: &envelope.sender,
        rcpts: &envelope.recipients,
        user: conn.session().user(),
    };
    if draft.is_some() {
        super::rspamd_draft::scan_draft(rspamd, &meta, conn.spill_at(), draft).await?;
        return Ok(message);
    }
    let from = proto::smtp::address::escape(&envelope.sender);
    if rspamd.too_large(message.len() as u64, &from, ip) {
        return Ok(message);
    }
    let answer = rspamd.ask(&meta, Payload::Memory(&message)).await;
    match rspamd.verdict(answer, &meta) {
        Verdict::Accept => Ok(message),
        Verdict::Refuse(reply) => Err(reply),
        Verdict::Tag { headers, subject } => Ok(rspamd_verdict::tagged(
            &message,
            &headers,
            subject.as_deref(),
        )),
    }
}

impl Rspamd {
    /// The verdict of an exchange: rspamd's, or when it could not be asked (logged and
    /// counted) accept or `451` by `fail_open`. Tags are logged here.
    pub(super) fn verdict(&self, answer: Result<Vec<u8>, String>, meta: &Meta<'_>) -> Verdict {
        let from = proto::smtp::address::escape(meta.from);
        let ip = meta.ip;
        match answer.and_then(|b| rspamd_verdict::decide(&b)) {
            Ok(v) => {
                if let Verdict::Tag { headers, .. } = &v {
                    tracing::info!(
                        "filter: event=rspamd_tagged from=<{from}> client=[{ip}] {}",
                        headers.lines().nth(1).unwrap_or("").trim()
                    );
                }
                v
            }
            Err(e) => {
                let n = self.unavailable.fetch_add(1, Ordering::Relaxed) + 1;
                tracing::warn!(
                    "filter: event=rspamd_unavailable from=<{from}> client=[{ip}] error={e:?} fail_open={} count={n}",
                    self.fail_open
                );
                rspamd_verdict::unavailable(self.fail_open)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_request_heads() {
        let r = Rspamd::new(
            "http://127.0.0.1:11333/",
            Duration::from_secs(1),
            true,
            false,
        )
        .unwrap();
        assert_eq!(r.authority, "127.0.0.1:11333");
        assert_eq!(
            Rspamd::new("http://rspamd", Duration::ZERO, true, false)
                .unwrap()
                .authority,
            "rspamd:11333"
        );
        assert!(Rspamd::new("https://x", Duration::ZERO, true, false).is_err());
        let rcpts = vec!["a@x.test".to_string(), "b@x.test".to_string()];
        let head = r.request_head(
            &Meta {
                ip: "192.0.2.1".parse().unwrap(),
                helo: "h\r\nX: y",
                from: "s@r.test",
                rcpts: &rcpts,
                user: None,
            },
            10,
        );
        assert_eq!(
            head,
            "POST /checkv2 HTTP/1.1\r\nHost: 127.0.0.1:11333\r\nConnection: close\r\nContent-Length: 10\r\nIP: 192.0.2.1\r\nHelo: hX: y\r\nFrom: s@r.test\r\nRcpt: a@x.test\r\nRcpt: b@x.test\r\n\r\n"
        );
    }

    #[test]
    fn answers_with_length_chunked_and_errors() {
        assert_eq!(
            body(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}").unwrap(),
            b"{}"
        );
        assert_eq!(
            body(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{\"\r\n1\r\n}\r\n0\r\n\r\n").unwrap(),
            b"{\"}"
        );
        assert!(body(b"HTTP/1.1 500 Oops\r\n\r\n").is_err());
        assert!(body(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n{}").is_err());
        assert!(body(b"garbage").is_err());
        assert!(body(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n").is_err());
    }
}
