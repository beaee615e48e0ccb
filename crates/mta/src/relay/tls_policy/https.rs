//! The MTA-STS policy fetch (RFC 8461 §3.3): one HTTP/1.1 GET of
//! `https://mta-sts.<domain>/.well-known/mta-sts.txt` over TLS verified for that name (the
//! system's CAs plus `[relay] ca_file`), the address found through the one resolver.
//!
//! A small bounded client of our own rather than hyper: one request, `Connection: close`,
//! the answer read into a buffer of at most [`MAX_RESPONSE`] under one deadline, then parsed
//! by the pure [`parse_response`] (status 200 only: redirects are refused as §3.3 asks;
//! `Content-Length`, chunked or read to the end). hyper would bring its own framing, pool and
//! body types (and five crates) for a file of at most 64 KiB that we read whole anyway.
//! It does not parse the policy ([`super::sts`]) nor cache it ([`super::cache`]).

use std::sync::Arc;
use std::time::Duration;

use dns::Dns;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::sts::MAX_POLICY;

/// Response head plus the largest policy.
pub const MAX_RESPONSE: usize = MAX_POLICY + 16 * 1024;

/// Where and how to fetch.
pub struct Fetcher {
    pub dns: Arc<Dns>,
    pub tls: TlsConnector,
    /// 443; tests use another.
    pub port: u16,
    /// The whole fetch (DNS, connect, handshake, request, answer).
    pub timeout: Duration,
}

impl Fetcher {
    /// The policy body of `domain`, or why not.
    pub async fn fetch(&self, domain: &str) -> Result<Vec<u8>, String> {
        let host = format!("mta-sts.{}", domain.trim_end_matches('.'));
        match tokio::time::timeout(self.timeout, self.get(&host)).await {
            Ok(r) => r.map_err(|e| format!("policy fetch from {host}: {e}")),
            Err(_) => Err(format!(
                "policy fetch from {host}: timed out after {}s",
                self.timeout.as_secs()
            )),
        }
    }

    async fn get(&self, host: &str) -> Result<Vec<u8>, String> {
        let ips = self.dns.ips(host).await.map_err(|e| format!("DNS: {e}"))?;
        let ip = ips[0];
        let tcp = TcpStream::connect((ip, self.port))
            .await
            .map_err(|e| format!("connect to {ip}:{}: {e}", self.port))?;
        let name = rustls_pki_types::ServerName::try_from(host.to_string())
            .map_err(|e| format!("name: {e}"))?;
        let mut tls = self
            .tls
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        let request = format!(
            "GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: {host}\r\nUser-Agent: mailroom\r\nAccept: text/plain\r\nConnection: close\r\n\r\n"
        );
        tls.write_all(request.as_bytes())
            .await
            .map_err(|e| format!("write: {e}"))?;
        tls.flush().await.map_err(|e| format!("write: {e}"))?;
        let mut buf = Vec::new();
        let mut chunk = [0u8; 8192];
        loop {
            match tls.read(&mut chunk).await {
                Ok(0) => break,
                Ok(n) => {
                    if buf.len() + n > MAX_RESPONSE {
                        return Err(format!("answer larger than {} KiB", MAX_RESPONSE / 1024));
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if let Ok(Some(body)) = parse_response(&buf, false) {
                        return Ok(body);
                    }
                }
                // A server closing without close_notify: what arrived is parsed as is.
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
                Err(e) => return Err(format!("read: {e}")),
            }
        }
        parse_response(&buf, true)?.ok_or_else(|| "answer cut short".to_string())
    }
}

/// The body of a complete `200` response with a `text/plain` type, `Ok(None)` while more is
/// needed (`ended`: the connection is closed, nothing more will come).
pub fn parse_response(buf: &[u8], ended: bool) -> Result<Option<Vec<u8>>, String> {
    let Some(head_end) = find(buf, b"\r\n\r\n") else {
        return if ended || buf.len() > 16 * 1024 {
            Err("no complete HTTP response head".into())
        } else {
            Ok(None)
        };
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| "HTTP head not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or("");
    let mut parts = status.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    let code = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(format!("not an HTTP/1 answer: {:?}", clip(status)));
    }
    match code {
        "200" => {}
        c if c.starts_with('3') => {
            return Err(format!(
                "redirect refused (RFC 8461 §3.3): {}",
                clip(status)
            ))
        }
        _ => return Err(format!("HTTP status {}", clip(status))),
    }
    let (mut length, mut chunked, mut plain) = (None, false, false);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            return Err("malformed HTTP header".into());
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => {
                length = Some(value.parse::<usize>().map_err(|_| "bad Content-Length")?)
            }
            "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
            "content-type" => {
                plain = value
                    .split(';')
                    .next()
                    .is_some_and(|t| t.trim().eq_ignore_ascii_case("text/plain"))
            }
            _ => {}
        }
    }
    if !plain {
        return Err("policy not served as text/plain".into());
    }
    let rest = &buf[head_end + 4..];
    if chunked {
        return dechunk(rest, ended);
    }
    match length {
        Some(n) if n > MAX_POLICY => Err(format!("policy larger than {} KiB", MAX_POLICY / 1024)),
        Some(n) if rest.len() >= n => Ok(Some(rest[..n].to_vec())),
        Some(_) if ended => Err("answer shorter than its Content-Length".into()),
        Some(_) => Ok(None),
        None if ended => Ok(Some(rest.to_vec())),
        None => Ok(None),
    }
}

/// The chunked body (RFC 9112 §7.1), trailers ignored.
fn dechunk(mut rest: &[u8], ended: bool) -> Result<Option<Vec<u8>>, String> {
    let mut body = Vec::new();
    loop {
        let Some(eol) = find(rest, b"\r\n") else {
            return if ended {
                Err("chunked body cut short".into())
            } else {
                Ok(None)
            };
        };
        let size_text = std::str::from_utf8(&rest[..eol]).map_err(|_| "bad chunk size")?;
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16).map_err(|_| "bad chunk size")?;
        if size == 0 {
            return Ok(Some(body));
        }
        if body.len() + size > MAX_POLICY {
            return Err(format!("policy larger than {} KiB", MAX_POLICY / 1024));
        }
        let data = &rest[eol + 2..];
        if data.len() < size + 2 {
            return if ended {
                Err("chunked body cut short".into())
            } else {
                Ok(None)
            };
        }
        body.extend_from_slice(&data[..size]);
        rest = &data[size + 2..];
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn clip(s: &str) -> String {
    s.chars().take(60).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 5\r\n\r\nhello";

    #[test]
    fn complete_answers() {
        assert_eq!(parse_response(OK, false).unwrap().unwrap(), b"hello");
        assert_eq!(parse_response(&OK[..OK.len() - 1], false).unwrap(), None);
        assert!(parse_response(&OK[..OK.len() - 1], true).is_err());
        let close = b"HTTP/1.0 200 OK\r\ncontent-type: text/plain\r\n\r\nab";
        assert_eq!(parse_response(close, false).unwrap(), None);
        assert_eq!(parse_response(close, true).unwrap().unwrap(), b"ab");
        let chunked = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_response(chunked, false).unwrap().unwrap(), b"abcde");
        assert_eq!(parse_response(&chunked[..80], false).unwrap(), None);
    }

    #[test]
    fn refusals() {
        let redirect = b"HTTP/1.1 301 Moved\r\nLocation: https://evil.test/\r\nContent-Type: text/plain\r\n\r\n";
        assert!(parse_response(redirect, true)
            .unwrap_err()
            .contains("redirect refused"));
        let html = b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 1\r\n\r\nx";
        assert!(parse_response(html, true)
            .unwrap_err()
            .contains("text/plain"));
        let missing = b"HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\n\r\n";
        assert!(parse_response(missing, true).unwrap_err().contains("404"));
        let big = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 1048576\r\n\r\n";
        assert!(parse_response(big, false).unwrap_err().contains("larger"));
        let big_chunk = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n100000\r\n";
        assert!(parse_response(big_chunk, false)
            .unwrap_err()
            .contains("larger"));
        assert!(parse_response(b"SSH-2.0-OpenSSH\r\n\r\n", true).is_err());
        assert!(parse_response(&[b'x'; 20000], false).is_err());
        assert!(parse_response(b"\xff\xfe\r\n\r\n", true).is_err());
    }
}
