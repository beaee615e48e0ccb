//! Runs the Mailroom under test: writes a config into the work directory, creates the
//! domain and accounts through the admin CLI (`mailroom --config F domain add`, `user add
//! --password-stdin`), starts `serve`, and stops it with SIGTERM. Knows nothing of
//! Mailroom's internals beyond its documented config keys and file layout.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const DOMAIN: &str = "bench.test";
pub const PASSWORD: &str = "bench-password";

/// The local part of account `i` (lower case: Mailroom's Maildir path uses it as is).
pub fn user(i: usize) -> String {
    format!("u{i}")
}

/// A free TCP port on `ip`.
pub fn free_port(ip: &str) -> std::io::Result<u16> {
    Ok(TcpListener::bind((ip, 0))?.local_addr()?.port())
}

/// Waits until something accepts connections on `addr`.
pub fn wait_port(
    addr: SocketAddr,
    timeout: Duration,
    child: Option<&mut Child>,
) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    let mut child = child;
    while Instant::now() < deadline {
        if let Some(c) = child.as_deref_mut() {
            if let Ok(Some(st)) = c.try_wait() {
                return Err(format!("server exited with {st}"));
            }
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!("{addr} not listening after {timeout:?}"))
}

pub struct Mailroom {
    pub bin: PathBuf,
    pub config: PathBuf,
    pub data: PathBuf,
    pub log: PathBuf,
    pub smtp: SocketAddr,
    pub pop3: SocketAddr,
    pub sink: SocketAddr,
    pub child: Option<Child>,
}

impl Mailroom {
    /// Writes the config (ports picked now) under `dir`: every remote domain goes to the
    /// smtp-sink as the smarthost.
    pub fn configure(bin: &Path, dir: &Path) -> Result<Mailroom, String> {
        Mailroom::configure_relay(bin, dir, None)
    }

    /// Like [`Mailroom::configure`], but the SMTP client (127.0.0.1) is not trusted, so every
    /// message on the SMTP port gets the SPF/DKIM/DMARC/ARC checks, asking `dns`
    /// (`--verify-dns`; relaying is then refused, so only S1 makes sense).
    pub fn configure_checked(bin: &Path, dir: &Path, dns: SocketAddr) -> Result<Mailroom, String> {
        let mr = Mailroom::configure_relay(bin, dir, None)?;
        let text = std::fs::read_to_string(&mr.config).map_err(|e| e.to_string())?;
        let text = text.replace(
            "trusted_networks = [\"127.0.0.0/8\"]",
            "trusted_networks = [\"127.0.0.42/32\"]",
        ) + &format!("\n[dns]\nservers = [\"{dns}\"]\n");
        std::fs::write(&mr.config, text).map_err(|e| e.to_string())?;
        Ok(mr)
    }

    /// Like [`Mailroom::configure`], but remote domains are routed by DNS through `dns` (each
    /// domain its own destination, on the sink's port), for S2T.
    pub fn configure_routed(bin: &Path, dir: &Path, dns: SocketAddr) -> Result<Mailroom, String> {
        Mailroom::configure_relay(bin, dir, Some(dns))
    }

    /// Like [`Mailroom::configure_routed`], with `[dns] servers` = `dns`, the sink on a free
    /// port of `sink_ip` (the port of every MX), and MTA-STS on: the policy servers' port is
    /// `policy_port` and `ca_file` (PEM) is trusted besides the system's CAs, for S2S.
    pub fn configure_sts(
        bin: &Path,
        dir: &Path,
        dns: SocketAddr,
        sink_ip: std::net::Ipv4Addr,
        policy_port: u16,
        ca_file: &Path,
    ) -> Result<Mailroom, String> {
        let mut mr = Mailroom::configure_relay(bin, dir, Some(dns))?;
        let port = free_port(&sink_ip.to_string()).map_err(|e| format!("free port: {e}"))?;
        let routed = format!(
            "dns_servers = [\"{dns}\"]\nremote_port = {}\n",
            mr.sink.port()
        );
        mr.sink = SocketAddr::new(sink_ip.into(), port);
        let text = std::fs::read_to_string(&mr.config).map_err(|e| e.to_string())?;
        if !text.contains(&routed) {
            return Err("bench config without its routed [relay] keys".into());
        }
        let sts = format!(
            "remote_port = {port}\nmta_sts = true\nmta_sts_port = {policy_port}\nca_file = \"{}\"\n",
            ca_file.display()
        );
        let text = text.replace(&routed, &sts) + &format!("\n[dns]\nservers = [\"{dns}\"]\n");
        std::fs::write(&mr.config, text).map_err(|e| e.to_string())?;
        Ok(mr)
    }

    fn configure_relay(
        bin: &Path,
        dir: &Path,
        dns: Option<SocketAddr>,
    ) -> Result<Mailroom, String> {
        let data = dir.join("data");
        std::fs::create_dir_all(&data).map_err(|e| format!("{}: {e}", data.display()))?;
        let port = |ip| free_port(ip).map_err(|e| format!("free port: {e}"));
        let smtp: SocketAddr = format!("127.0.0.1:{}", port("127.0.0.1")?)
            .parse()
            .expect("addr");
        let pop3: SocketAddr = format!("127.0.0.1:{}", port("127.0.0.1")?)
            .parse()
            .expect("addr");
        // Routed by DNS, the sink must not be one of our listening addresses (that would be
        // a loop, 5.4.6): it gets its own loopback address.
        let sink_ip = if dns.is_some() {
            "127.0.0.42"
        } else {
            "127.0.0.1"
        };
        let sink: SocketAddr = format!("{sink_ip}:{}", port(sink_ip)?)
            .parse()
            .expect("addr");
        let config = dir.join("mailroom.toml");
        // Relaying: 127.0.0.0/8 is trusted, and every remote domain goes to the smtp-sink.
        // per_destination_limit = 20 matches Postfix's default_destination_concurrency_limit.
        let text = format!(
            r#"hostname = "mx.bench.test"
data_dir = "{data}"
user = ""
log_level = "info"

[smtp]
listen = ["{smtp}"]
submission = []
submissions = []
max_connections = 20000
max_message_size = 10485760
trusted_networks = ["127.0.0.0/8"]
command_timeout = 900

[pop3]
listen = ["{pop3}"]
pop3s = []
max_connections = 5000

[http]
listen = []
https = []

[relay]
{route}
per_destination_limit = 20
retry_schedule = ["5s"]
"#,
            data = data.display(),
            route = match dns {
                None => format!("smarthost = \"{sink}\"\nsmarthost_tls = \"opportunistic\""),
                Some(dns) => format!("dns_servers = [\"{dns}\"]\nremote_port = {}", sink.port()),
            }
        );
        std::fs::write(&config, text).map_err(|e| format!("{}: {e}", config.display()))?;
        Ok(Mailroom {
            bin: bin.to_path_buf(),
            config,
            log: dir.join("mailroom.log"),
            data,
            smtp,
            pop3,
            sink,
            child: None,
        })
    }

    fn cli(&self, args: &[&str], stdin: Option<&str>) -> Result<(), String> {
        use std::io::Write;
        let mut c = Command::new(&self.bin)
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("{}: {e}", self.bin.display()))?;
        if let Some(s) = stdin {
            let _ = c.stdin.take().expect("piped").write_all(s.as_bytes());
        }
        drop(c.stdin.take());
        let out = c.wait_with_output().map_err(|e| e.to_string())?;
        if !out.status.success() {
            return Err(format!(
                "mailroom {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(())
    }

    /// Creates the domain only (S2T relays everything).
    pub fn cli_domain_only(&self) -> Result<(), String> {
        self.cli(&["domain", "add", DOMAIN], None)
    }

    /// Creates the domain and accounts u0..u(n-1), `parallel` CLI processes at a time (each
    /// computes an argon2id hash, which is slow on purpose).
    pub fn create_accounts(&self, n: usize, parallel: usize) -> Result<(), String> {
        self.cli(&["domain", "add", DOMAIN], None)?;
        let next = std::sync::atomic::AtomicUsize::new(0);
        let err = std::sync::Mutex::new(None::<String>);
        std::thread::scope(|s| {
            for _ in 0..parallel.max(1) {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= n || err.lock().expect("lock").is_some() {
                        break;
                    }
                    let addr = format!("{}@{DOMAIN}", user(i));
                    // SQLite may be busy with a concurrent writer: try a few times.
                    let mut r = Ok(());
                    for _ in 0..5 {
                        r = self.cli(
                            &["user", "add", &addr, "--password-stdin"],
                            Some(&format!("{PASSWORD}\n")),
                        );
                        if r.is_ok() {
                            break;
                        }
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    if let Err(e) = r {
                        *err.lock().expect("lock") = Some(e);
                    }
                });
            }
        });
        match err.into_inner().expect("lock") {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    pub fn start(&mut self) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| format!("{}: {e}", self.log.display()))?;
        let child = Command::new(&self.bin)
            .arg("--config")
            .arg(&self.config)
            .arg("serve")
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("{}: {e}", self.bin.display()))?;
        self.child = Some(child);
        wait_port(self.smtp, Duration::from_secs(30), self.child.as_mut())?;
        wait_port(self.pop3, Duration::from_secs(30), self.child.as_mut())
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The Maildir of account `local`.
    pub fn maildir(&self, local: &str) -> PathBuf {
        self.data
            .join("mail")
            .join(DOMAIN)
            .join(local)
            .join("Maildir")
    }

    /// Files in the queue's `msg/` directory (0 when it is absent).
    pub fn queue_len(&self) -> usize {
        std::fs::read_dir(self.data.join("queue").join("msg"))
            .map(|d| {
                d.flatten()
                    .filter(|e| !e.file_name().to_string_lossy().contains('.'))
                    .count()
            })
            .unwrap_or(0)
    }

    /// SIGKILL at once (S2T: relay attempts stuck on the tarpit would hold a SIGTERM).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait (SIGKILL after 30 s).
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: kill(2) on the pid of a child we spawned and have not reaped.
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = c.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Mailroom {
    fn drop(&mut self) {
        self.stop();
    }
}
