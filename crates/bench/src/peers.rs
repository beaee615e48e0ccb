//! The peers Mailroom is compared with, started by `scripts/bench-peers` (Postfix delivering
//! to Maildir, Dovecot's POP3), and Postfix's `smtp-sink`, the far end of the relay scenario.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::server::wait_port;

pub struct Peers {
    pub script: PathBuf,
    pub dir: PathBuf,
    pub postfix_smtp: SocketAddr,
    pub postfix_mail: PathBuf,
    pub postfix_relayhost: SocketAddr,
    pub dovecot_pop3: SocketAddr,
    pub dovecot_mail: PathBuf,
    pub dovecot_uid: u32,
    pub dovecot_pid: u32,
    pub dovecot_scheme: String,
}

impl Peers {
    /// Runs `script start dir` with BENCH_USERS=users and reads its key=value lines.
    pub fn start(script: &Path, dir: &Path, users: usize, password: &str) -> Result<Peers, String> {
        let out = Command::new(script)
            .arg("start")
            .arg(dir)
            .env("BENCH_USERS", users.to_string())
            .env("BENCH_PASSWORD", password)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("{}: {e}", script.display()))?;
        if !out.status.success() {
            return Err(format!(
                "{} start: {}",
                script.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        let get = |k: &str| -> Result<String, String> {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{k}=")))
                .map(|v| v.trim().to_string())
                .ok_or_else(|| format!("bench-peers did not print {k}="))
        };
        let addr = |k: &str| -> Result<SocketAddr, String> {
            get(k)?.parse().map_err(|e| format!("{k}: {e}"))
        };
        let num =
            |k: &str| -> Result<u32, String> { get(k)?.parse().map_err(|e| format!("{k}: {e}")) };
        Ok(Peers {
            script: script.to_path_buf(),
            dir: dir.to_path_buf(),
            postfix_smtp: addr("postfix_smtp")?,
            postfix_mail: get("postfix_mail")?.into(),
            postfix_relayhost: addr("postfix_relayhost")?,
            dovecot_pop3: addr("dovecot_pop3")?,
            dovecot_mail: get("dovecot_mail")?.into(),
            dovecot_uid: num("dovecot_uid")?,
            dovecot_pid: num("dovecot_pid")?,
            dovecot_scheme: get("dovecot_scheme")?,
        })
    }

    pub fn postfix_maildir(&self, local: &str) -> PathBuf {
        self.postfix_mail.join(local).join("Maildir")
    }

    pub fn dovecot_maildir(&self, local: &str) -> PathBuf {
        self.dovecot_mail.join(local).join("Maildir")
    }

    /// Makes OpenDKIM Postfix's signing milter, or stops it (`script dkim DIR on|off`).
    pub fn dkim(&self, on: bool) -> Result<(), String> {
        self.run("dkim", &[if on { "on" } else { "off" }])
    }

    /// Points Postfix's relayhost at `[addr]` with `smtp_tls_security_level = level`
    /// (`script relay DIR ADDR LEVEL`: postconf, then postfix reload), for S2S and back.
    pub fn relay_to(&self, addr: SocketAddr, level: &str) -> Result<(), String> {
        self.run("relay", &[&addr.to_string(), level])
    }

    /// `script COMMAND DIR ARGS...`, which changes Postfix's settings and reloads it.
    fn run(&self, command: &str, args: &[&str]) -> Result<(), String> {
        let out = Command::new(&self.script)
            .arg(command)
            .arg(&self.dir)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("{}: {e}", self.script.display()))?;
        if !out.status.success() {
            return Err(format!(
                "{} {command}: {}",
                self.script.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        // Postfix's daemons pick the new settings up as they finish: let them.
        std::thread::sleep(Duration::from_secs(1));
        Ok(())
    }
}

impl Drop for Peers {
    fn drop(&mut self) {
        let _ = Command::new(&self.script)
            .arg("stop")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .status();
    }
}

/// A running `smtp-sink -c`: accepts and discards mail, printing `sess=.. quit=.. mesg=N`
/// counters, which are read back from its output file.
pub struct Sink {
    child: Child,
    out: PathBuf,
}

impl Sink {
    pub fn start(addr: SocketAddr, out: &Path) -> Result<Sink, String> {
        let bin = ["/usr/sbin/smtp-sink", "/usr/bin/smtp-sink"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .ok_or("smtp-sink not found (it comes with Postfix: apt-get install postfix)")?;
        let f = std::fs::File::create(out).map_err(|e| format!("{}: {e}", out.display()))?;
        let mut cmd = Command::new(bin);
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            cmd.args(["-u", "postfix"]); // smtp-sink refuses to run as root without it
        }
        let mut child = cmd
            .args(["-c", &addr.to_string(), "1024"])
            .stdin(Stdio::null())
            .stdout(f.try_clone().map_err(|e| e.to_string())?)
            .stderr(f)
            .spawn()
            .map_err(|e| format!("{bin}: {e}"))?;
        if let Err(e) = wait_port(addr, Duration::from_secs(10), Some(&mut child)) {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "smtp-sink on {addr}: {e}: {}",
                std::fs::read_to_string(out).unwrap_or_default()
            ));
        }
        Ok(Sink {
            child,
            out: out.to_path_buf(),
        })
    }

    /// Messages received so far (the counter counts "." received, i.e. accepted messages).
    pub fn count(&self) -> usize {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        text.rsplit("mesg=")
            .next()
            .and_then(|t| t.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok())
            .unwrap_or(0)
    }
}

impl crate::scenarios::Counted for Sink {
    fn count(&self) -> usize {
        Sink::count(self)
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
