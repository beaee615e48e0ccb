//! S1WEB: the web face under S1 load. While S1 (4 KiB) runs, one scraper asks the HTTPS
//! listener for `/metrics` and for one HTML/XML page (a parameter: the autoconfig file today,
//! `/admin/login` once it exists) every `--scrape-every` ms, one after the other, each on a new
//! TLS connection (handshake included in the time, as a scraper without keep-alive sees it),
//! and reports p50/p99 of the answer times.
//!
//! It verifies the answers (status 200; `/metrics` parsed line by line as Prometheus text;
//! the page not empty) and asserts nothing about speed. The TLS client takes any certificate
//! (the server's is self-signed).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::server::Mailroom;

/// The largest answer read (the metrics text is a few KiB).
const MAX_ANSWER: usize = 4 << 20;
/// A liveness bound on one request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// What to ask, and how often.
#[derive(Clone, Debug)]
pub struct Plan {
    pub https: SocketAddr,
    pub page: String,
    /// The `Host` of the page request (autoconfig answers only for our domains).
    pub page_host: String,
    pub every: Duration,
}

/// When each good answer was asked for and how long it took, and what was wrong with the
/// others.
#[derive(Default, Debug)]
pub struct Scrapes {
    pub metrics: Vec<(Instant, Duration)>,
    pub page: Vec<(Instant, Duration)>,
    pub errors: Vec<String>,
}

/// S1 (4 KiB) with the scraper beside it; adds the S1 rows of this run (to compare with plain
/// S1) and the times of the answers asked for while the SMTP load ran (every answer, before
/// and after too, is verified).
pub fn run(
    rt: &tokio::runtime::Runtime,
    rep: &mut crate::Report,
    mr: &Mailroom,
    sc: &crate::Scale,
    plan: Plan,
) {
    let scen = "S1WEB inbound 4 KiB + HTTPS scrapes";
    let stop = Arc::new(AtomicBool::new(false));
    let every = plan.every;
    let page = plan.page.clone();
    let scraper = rt.spawn(scrape(plan, stop.clone()));
    let m = crate::scenarios::s1(
        rt,
        rep,
        scen,
        mr.smtp,
        &|k| mr.maildir(&crate::server::user(k)),
        sc,
        4096,
        sc.messages,
    );
    stop.store(true, Ordering::Relaxed);
    let seen = match rt.block_on(scraper) {
        Ok(s) => s,
        Err(e) => {
            rep.fail(format!("{scen}: scraper: {e}"));
            return;
        }
    };
    crate::scenarios::report_errors(rep, scen, "web answers wrong or missing", &seen.errors);
    if seen.metrics.is_empty() || seen.page.is_empty() {
        rep.fail(format!("{scen}: no good answer from /metrics or {page}"));
    }
    rep.add(
        scen,
        "S1 accepted (until last 250)",
        "msg/s",
        m.accepted_s,
        None,
        None,
    );
    rep.add(scen, "S1 end-of-DATA latency p99", "ms", m.p99, None, None);
    let page_label = format!("GET {page}");
    for (what, answers) in [
        ("GET /metrics", &seen.metrics),
        (page_label.as_str(), &seen.page),
    ] {
        let mut times: Vec<Duration> = answers
            .iter()
            .filter(|(asked, _)| m.load.contains(asked))
            .map(|(_, took)| *took)
            .collect();
        let n = times.len();
        let pct = crate::report::percentile_ms;
        let (p50, p99) = (pct(&mut times, 50.0), pct(&mut times, 99.0));
        eprintln!(
            "mailroom-bench: {scen}: {what}: {} answers verified, {n} during the load (every {} ms): p50 {:.1} ms, p99 {:.1} ms",
            answers.len(),
            every.as_millis(),
            p50.unwrap_or(0.0),
            p99.unwrap_or(0.0)
        );
        let during = format!("{what}: answers during the load (new TLS connection each)");
        rep.add(scen, &during, "count", Some(n as f64), None, None);
        rep.add(scen, &format!("{what}: p50"), "ms", p50, None, None);
        rep.add(scen, &format!("{what}: p99"), "ms", p99, None, None);
    }
}

/// Turns on the HTTPS listener of `mr`'s config (off in the other scenarios) on a free port.
pub fn configure(mr: &Mailroom) -> Result<SocketAddr, String> {
    let port = crate::server::free_port("127.0.0.1").map_err(|e| format!("free port: {e}"))?;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let text = std::fs::read_to_string(&mr.config).map_err(|e| e.to_string())?;
    let off = "[http]\nlisten = []\nhttps = []\n";
    if !text.contains(off) {
        return Err("bench config without its [http] section".into());
    }
    let text = text.replace(off, &format!("[http]\nlisten = []\nhttps = [\"{addr}\"]\n"));
    std::fs::write(&mr.config, text).map_err(|e| e.to_string())?;
    Ok(addr)
}

/// Scrapes until `stop` is set (at least one round), then returns what it saw.
pub async fn scrape(plan: Plan, stop: Arc<AtomicBool>) -> Scrapes {
    let tls = tokio_rustls::TlsConnector::from(client_config());
    let mut out = Scrapes::default();
    loop {
        let round = Instant::now();
        for (path, host) in [
            ("/metrics", "mx.bench.test"),
            (plan.page.as_str(), plan.page_host.as_str()),
        ] {
            let t = Instant::now();
            let answer = tokio::time::timeout(REQUEST_TIMEOUT, get(&tls, plan.https, host, path));
            let answer = match answer.await {
                Ok(r) => r,
                Err(_) => Err("timed out".to_string()),
            };
            let took = t.elapsed();
            let checked = answer.and_then(|(status, body)| check(path, status, &body));
            match checked {
                Ok(()) if path == "/metrics" => out.metrics.push((t, took)),
                Ok(()) => out.page.push((t, took)),
                Err(e) => out.errors.push(format!("GET {path}: {e}")),
            }
        }
        if stop.load(Ordering::Relaxed) {
            return out;
        }
        tokio::time::sleep(plan.every.saturating_sub(round.elapsed())).await;
    }
}

/// One GET on a new TLS connection: the status and the body (chunked bodies decoded).
async fn get(
    tls: &tokio_rustls::TlsConnector,
    addr: SocketAddr,
    host: &str,
    path: &str,
) -> Result<(u16, Vec<u8>), String> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| format!("{host}: {e}"))?;
    let mut s = tls
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS: {e}"))?;
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: mailroom-bench\r\nConnection: close\r\n\r\n");
    s.write_all(request.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut raw = Vec::new();
    // A server may close without close_notify: what was read counts.
    let read = (&mut s)
        .take(MAX_ANSWER as u64 + 1)
        .read_to_end(&mut raw)
        .await;
    if let Err(e) = read {
        if raw.is_empty() {
            return Err(format!("read: {e}"));
        }
    }
    if raw.len() > MAX_ANSWER {
        return Err(format!("answer above {MAX_ANSWER} bytes"));
    }
    parse_answer(&raw)
}

/// Status and body of an HTTP/1.1 answer read to the end.
pub fn parse_answer(raw: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("no end of the header block")?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| "header block not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .strip_prefix("HTTP/1.1 ")
        .or_else(|| status_line.strip_prefix("HTTP/1.0 "))
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let chunked = lines.any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = &raw[end + 4..];
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    Ok((status, body))
}

fn dechunk(mut body: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let eol = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("chunk size line not ended")?;
        let size_text = std::str::from_utf8(&body[..eol]).map_err(|_| "chunk size not text")?;
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        body = &body[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        if body.len() < size + 2 {
            return Err("chunk cut short".into());
        }
        out.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
}

fn check(path: &str, status: u16, body: &[u8]) -> Result<(), String> {
    if status != 200 {
        return Err(format!("status {status}"));
    }
    if body.is_empty() {
        return Err("empty body".into());
    }
    if path == "/metrics" {
        let text = std::str::from_utf8(body).map_err(|_| "metrics not UTF-8")?;
        check_prometheus_text(text)?;
    }
    Ok(())
}

/// Every line of a Prometheus text exposition has one of its shapes: `# HELP name text`,
/// `# TYPE name type`, `# EOF`, or `name{labels} value [timestamp]`; at least one sample
/// of ours (`mailroom_`).
pub fn check_prometheus_text(text: &str) -> Result<(), String> {
    let mut samples = 0;
    for (n, line) in text.lines().enumerate() {
        let bad = || format!("line {}: {line:?}", n + 1);
        if line.is_empty() || line == "# EOF" {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            if !rest.split(' ').next().is_some_and(metric_name) {
                return Err(bad());
            }
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let (name, kind) = (parts.next(), parts.next());
            let kinds = [
                "counter",
                "gauge",
                "histogram",
                "summary",
                "unknown",
                "info",
                "stateset",
                "gaugehistogram",
            ];
            if !name.is_some_and(metric_name) || !kind.is_some_and(|k| kinds.contains(&k)) {
                return Err(bad());
            }
            continue;
        }
        // A sample: the name, labels in braces (quoted values may hold spaces), the value.
        let (series, value) = match line.find('{') {
            Some(open) => {
                let close = line.rfind('}').ok_or_else(bad)?;
                if !metric_name(&line[..open]) || close < open {
                    return Err(bad());
                }
                (&line[..open], line[close + 1..].trim_start())
            }
            None => {
                let (name, rest) = line.split_once(' ').ok_or_else(bad)?;
                (name, rest)
            }
        };
        let mut fields = value.split(' ');
        let v = fields.next().unwrap_or("");
        let number = v.parse::<f64>().is_ok() || ["+Inf", "-Inf", "NaN"].contains(&v);
        if !metric_name(series) || !number || fields.count() > 1 {
            return Err(bad());
        }
        if series.starts_with("mailroom_") {
            samples += 1;
        }
    }
    if samples == 0 {
        return Err("no mailroom_ sample".into());
    }
    Ok(())
}

fn metric_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_' || b == b':')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

fn client_config() -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default versions")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    Arc::new(config)
}

/// Takes the self-signed certificate of the server under test (signatures still checked).
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_lines_are_checked() {
        let good = "# HELP mailroom_connections Connections.\n# TYPE mailroom_connections counter\n\
                    mailroom_connections_total{service=\"smtp\"} 3\n\
                    mailroom_end_of_data_seconds_bucket{le=\"+Inf\"} 0\nmailroom_up 1 1700000000\n# EOF\n";
        check_prometheus_text(good).unwrap();
        assert!(check_prometheus_text("mailroom_x{a=\"b\"}\n").is_err());
        assert!(check_prometheus_text("mailroom_x one\n").is_err());
        assert!(check_prometheus_text("# TYPE mailroom_x kounter\n").is_err());
        assert!(check_prometheus_text("<html>\n").is_err());
        assert!(check_prometheus_text("other_x 1\n").is_err());
    }

    #[test]
    fn answers_are_parsed_plain_and_chunked() {
        let plain = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        assert_eq!(parse_answer(plain).unwrap(), (200, b"ok".to_vec()));
        let chunked = b"HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_answer(chunked).unwrap(), (403, b"abcde".to_vec()));
        assert!(parse_answer(b"HTTP/1.1 200 OK\r\n").is_err());
        assert!(parse_answer(b"SMTP 220\r\n\r\n").is_err());
    }
}
