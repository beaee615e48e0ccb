//! `mailroom sendmail` (also run as `sendmail` through a symlink) and `mailq`: the
//! command-line mail injection that cron, PHP `mail()`, mailx and `git send-email` call.
//!
//! Options follow sendmail/Postfix: `-t`, `-i`/`-oi`, `-f`/`-r sender`, `-F name`, `-bp`
//! (= `mailq`), `-q` (flush), `-bi` (no-op); other `-o…`, `-B`, `-N`, `-R`, `-V`, `-O`, `-v`
//! options are accepted and ignored. Without `-i`, a line with a single `.` ends the message.
//!
//! How the message gets in, by who runs it (see README "sendmail"):
//! - root or the service user: straight into the spool (`store::spool`), server up or down; a
//!   running server is told through a flush request;
//! - anyone else: into the maildrop (`store::maildrop`), which the server reads at start and
//!   every second. Nothing here is setuid; the caller is the maildrop file's owner.
//!
//! Exit status: 0 queued, 1 not queued (one line saying why), 2 usage.

use std::ffi::OsString;
use std::io::Read;

use crate::config::Config;
use crate::local_mail::{self, Caller, Request, Site};
use crate::Failure;

/// What the command line asked for.
#[derive(Debug, PartialEq, Eq)]
pub enum Mode {
    /// Send a message (`-bm`, the default).
    Deliver { request: Request, dot_ends: bool },
    /// `-bp` / `mailq`.
    ListQueue,
    /// `-q`.
    Flush,
    /// `-bi` / `newaliases`: aliases live in the directory, nothing to rebuild.
    NewAliases,
}

fn usage(m: impl std::fmt::Display) -> Failure {
    Failure {
        code: 2,
        message: format!("sendmail: {m}"),
    }
}

/// Parses sendmail's options (after the program name).
pub fn parse_args(args: &[OsString]) -> Result<Mode, Failure> {
    let mut r = Request::default();
    let mut dot_ends = true;
    let mut mode = None;
    let mut i = 0;
    while i < args.len() {
        let arg = args[i]
            .to_str()
            .ok_or_else(|| usage("an argument is not UTF-8"))?;
        i += 1;
        if arg == "--" {
            break;
        }
        let Some(cluster) = arg.strip_prefix('-').filter(|c| !c.is_empty()) else {
            i -= 1;
            break;
        };
        for (at, c) in cluster.char_indices() {
            let rest = &cluster[at + c.len_utf8()..];
            // An option's value: the rest of this argument, else the next one.
            let mut value = || -> Result<String, Failure> {
                if !rest.is_empty() {
                    return Ok(rest.to_string());
                }
                let v = args.get(i).and_then(|v| v.to_str());
                i += 1;
                v.map(str::to_string)
                    .ok_or_else(|| usage(format!("option -{c} needs a value")))
            };
            match c {
                't' => r.from_headers = true,
                'i' => dot_ends = false,
                'v' | 'n' | 'U' | 'm' | 'G' => {}
                'f' | 'r' => r.sender = Some(value()?),
                'F' => r.full_name = Some(value()?),
                'o' => {
                    if value()? == "i" {
                        dot_ends = false;
                    }
                }
                'B' | 'N' | 'R' | 'V' | 'O' | 'L' | 'h' | 'C' | 'X' | 'p' | 'e' => {
                    value()?;
                }
                'q' => mode = Some(Mode::Flush),
                'b' => match rest {
                    "m" | "" => {}
                    "p" => mode = Some(Mode::ListQueue),
                    "i" => mode = Some(Mode::NewAliases),
                    "s" => return Err(usage(
                        "-bs (SMTP on standard input) is not supported; connect to port 587 or 25",
                    )),
                    other => return Err(usage(format!("-b{other} is not supported"))),
                },
                other => return Err(usage(format!("unknown option -{other}"))),
            }
            if matches!(c, 'f' | 'r' | 'F' | 'o' | 'B' | 'N' | 'R' | 'V' | 'O' | 'L')
                || matches!(c, 'h' | 'C' | 'X' | 'p' | 'e' | 'b' | 'q')
            {
                break;
            }
        }
    }
    for rcpt in &args[i.min(args.len())..] {
        let rcpt = rcpt
            .to_str()
            .ok_or_else(|| usage("a recipient is not UTF-8"))?;
        // `a@x, b@x` in one argument (mailx does this) is two recipients.
        r.recipients.extend(
            rcpt.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string),
        );
    }
    Ok(mode.unwrap_or(Mode::Deliver {
        request: r,
        dot_ends,
    }))
}

/// Reads the message: to the end of input, or (`dot_ends`) to a line holding only `.`; at most
/// `max` bytes.
pub fn read_message(input: impl Read, dot_ends: bool, max: u64) -> Result<Vec<u8>, Failure> {
    let mut raw = Vec::new();
    input
        .take(max + 1)
        .read_to_end(&mut raw)
        .map_err(|e| Failure::failed(format!("sendmail: cannot read the message: {e}")))?;
    if dot_ends {
        let mut pos = 0;
        for line in raw.split_inclusive(|&b| b == b'\n') {
            if matches!(line, b".\n" | b".\r\n" | b".") {
                raw.truncate(pos);
                return Ok(raw);
            }
            pos += line.len();
        }
    }
    if raw.len() as u64 > max {
        return Err(Failure::failed(format!(
            "sendmail: message larger than smtp.max_message_size ({max} bytes); not queued"
        )));
    }
    Ok(raw)
}

fn user_name(uid: u32) -> String {
    let mut buf = vec![0u8; 4096];
    let mut pw = std::mem::MaybeUninit::<libc::passwd>::uninit();
    let mut out = std::ptr::null_mut();
    // SAFETY: all pointers are valid for the call; buf outlives the use of pw's strings.
    let rc = unsafe {
        libc::getpwuid_r(
            uid,
            pw.as_mut_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
            &mut out,
        )
    };
    if rc != 0 || out.is_null() {
        return format!("uid{uid}");
    }
    // SAFETY: getpwuid_r succeeded, so pw_name points to a NUL-terminated string in buf.
    let name = unsafe { std::ffi::CStr::from_ptr((*out).pw_name) };
    name.to_string_lossy().into_owned()
}

/// The caller as the kernel knows it; `trusted` for root and the service user.
pub fn caller(uid: u32, config: &Config) -> Caller {
    let name = user_name(uid);
    let trusted = uid == 0 || (!config.user.is_empty() && name == config.user);
    Caller { uid, name, trusted }
}

/// The domain of unqualified addresses: the host name when we host it, else its parent domain
/// when we host that, else the host name.
pub fn local_domain(domains: &[String], hostname: &str) -> String {
    let ours = |d: &str| domains.iter().any(|x| x.eq_ignore_ascii_case(d));
    if ours(hostname) {
        return hostname.to_string();
    }
    match hostname.split_once('.') {
        Some((_, parent)) if ours(parent) => parent.to_string(),
        _ => hostname.to_string(),
    }
}

fn unix_now() -> i64 {
    use store::clock::Clock as _;
    i64::try_from(store::clock::SystemClock.unix()).unwrap_or(i64::MAX)
}

/// Runs `sendmail` with `args` (the options after the program name).
pub fn run(config: &Config, args: &[OsString]) -> Result<(), Failure> {
    // SAFETY: getuid has no preconditions. Taken before any switch to the service user.
    let uid = unsafe { libc::getuid() };
    let (request, dot_ends) = match parse_args(args)? {
        Mode::Deliver { request, dot_ends } => (request, dot_ends),
        Mode::ListQueue => return queue(config, crate::admin::QueueCommand::List { json: false }),
        Mode::Flush => {
            return queue(
                config,
                crate::admin::QueueCommand::Flush {
                    id: None,
                    domain: None,
                },
            )
        }
        Mode::NewAliases => return Ok(()),
    };
    let max = config.smtp.max_message_size;
    let message = read_message(std::io::stdin().lock(), dot_ends, max)?;
    let request = Request { message, ..request };
    let caller = caller(uid, config);
    // Root switches to the service user before touching data_dir. Without the ownership walk
    // of the admin commands when data_dir exists: cron may call this every minute, and the
    // walk visits every Maildir file. We create nothing as root here.
    match crate::privilege::service_user(config)? {
        Some(user) if config.data_dir.is_dir() => crate::privilege::drop_to(&user)?,
        _ => crate::privilege::become_service_user(config)?,
    }
    if owns_data_dir(config) {
        queue_directly(config, &request, &caller)
    } else {
        let bytes = local_mail::encode(&request);
        store::maildrop::post(&config.data_dir, &bytes)
            .map(drop)
            .map_err(|e| {
                Failure::failed(format!(
                    "sendmail: cannot queue the message in {}: {e} \
                     (the maildrop is made by `mailroom serve` at its first start)",
                    config.data_dir.join(store::maildrop::DIR).display()
                ))
            })
    }
}

fn queue(config: &Config, cmd: crate::admin::QueueCommand) -> Result<(), Failure> {
    crate::privilege::become_service_user(config)?;
    crate::admin::queue(config, cmd)
}

/// Root, or the user who owns data_dir (the service user), may write the spool itself.
fn owns_data_dir(config: &Config) -> bool {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    euid == 0 || std::fs::metadata(&config.data_dir).is_ok_and(|m| m.uid() == euid)
}

/// Composes the message here and enqueues it (durable before we return), then asks a running
/// server to deliver it now.
fn queue_directly(config: &Config, request: &Request, caller: &Caller) -> Result<(), Failure> {
    let fail = |e: String| Failure::failed(format!("sendmail: not queued: {e}"));
    let directory =
        store::directory::Directory::open(&config.data_dir).map_err(|e| fail(e.to_string()))?;
    let domains = directory.list_domains().map_err(|e| fail(e.to_string()))?;
    let domain = local_domain(&domains, &config.hostname);
    let id = store::spool::new_id();
    let site = Site {
        hostname: &config.hostname,
        local_domain: &domain,
        id: &id,
        unix_secs: unix_now(),
        max_recipients: config.smtp.max_recipients,
    };
    let m = local_mail::compose(request, caller, &site).map_err(fail)?;
    let spool = store::spool::Spool::open(&config.data_dir).map_err(|e| fail(e.to_string()))?;
    let origin = store::spool::Origin {
        client: &m.client,
        sender_verified: m.sender_verified,
        notify_never: false,
        require_tls: false,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| fail(e.to_string()))?;
    runtime
        .block_on(spool.enqueue(
            &id,
            &m.sender,
            &m.recipients,
            &origin,
            site.unix_secs as u64,
            &[&m.message],
        ))
        .map_err(|e| fail(e.to_string()))?;
    // A running server picks it up within a second; a stopped one at its next start.
    let _ = spool.request_flush(std::slice::from_ref(&id));
    Ok(())
}

#[cfg(test)]
#[path = "sendmail_tests.rs"]
mod tests;
