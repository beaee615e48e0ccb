//! The Maildirs on disk: clearing them between runs, waiting for and verifying delivered
//! messages (each expected `X-Bench-Id` exactly once, whole, in the right mailbox), and
//! writing POP3 test mailboxes directly in the Maildir format
//! (`new/<secs>.<unique>.<host>,S=<size>`, CRLF line ends, as Mailroom writes them).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn entries(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    !p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with('.'))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Message files in `new/` and `cur/`.
pub fn messages(maildir: &Path) -> Vec<PathBuf> {
    let mut v = entries(&maildir.join("new"));
    v.extend(entries(&maildir.join("cur")));
    v
}

/// Removes every message file of these Maildirs (the directories stay).
pub fn clear(maildirs: &[PathBuf]) {
    for m in maildirs {
        for f in messages(m) {
            let _ = std::fs::remove_file(f);
        }
    }
}

/// Waits until the Maildirs together hold `want` messages, or `limit` passes (a guard
/// against a hang, not a performance threshold). Returns when the count was reached.
pub fn wait_count(maildirs: &[PathBuf], want: usize, limit: Duration) -> (usize, Option<Instant>) {
    let deadline = Instant::now() + limit;
    loop {
        let n: usize = maildirs.iter().map(|m| messages(m).len()).sum();
        if n >= want {
            return (n, Some(Instant::now()));
        }
        if Instant::now() > deadline {
            return (n, None);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Checks that message `i` (tag `tag(i)`) is in `maildirs[mbox(i)]` exactly once and whole.
/// Returns the problems found (empty = verified).
pub fn verify(
    maildirs: &[PathBuf],
    count: usize,
    tag: &dyn Fn(usize) -> String,
    mbox: &dyn Fn(usize) -> usize,
) -> Vec<String> {
    let mut found: HashMap<String, Vec<(usize, bool)>> = HashMap::new();
    for (k, m) in maildirs.iter().enumerate() {
        for f in messages(m) {
            let Ok(bytes) = std::fs::read(&f) else {
                continue;
            };
            let text = String::from_utf8_lossy(&bytes);
            if let Some(pos) = text.find("X-Bench-Id: ") {
                let rest = &text[pos + 12..];
                let t = rest[..rest.find(['\r', '\n']).unwrap_or(rest.len())].to_string();
                let whole = text.contains(&format!("end-of {t}\r\n"))
                    || text.contains(&format!("end-of {t}\n"));
                found.entry(t).or_default().push((k, whole));
            }
        }
    }
    let mut problems = Vec::new();
    for i in 0..count {
        let t = tag(i);
        match found.get(&t).map(|v| v.as_slice()) {
            None | Some([]) => problems.push(format!("{t}: not delivered")),
            Some([(k, whole)]) => {
                if *k != mbox(i) {
                    problems.push(format!("{t}: in mailbox {k}, expected {}", mbox(i)));
                } else if !whole {
                    problems.push(format!("{t}: truncated"));
                }
            }
            Some(v) => problems.push(format!("{t}: delivered {} times", v.len())),
        }
    }
    problems
}

/// Writes `per_box` messages of about `size` bytes into `new/` of each Maildir
/// (tags `pop-<box>-<n>`). Returns the total bytes written.
pub fn populate(maildirs: &[PathBuf], per_box: usize, size: usize) -> std::io::Result<u64> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let mut total = 0u64;
    for (k, m) in maildirs.iter().enumerate() {
        for sub in ["new", "cur", "tmp"] {
            std::fs::create_dir_all(m.join(sub))?;
        }
        for n in 0..per_box {
            let tag = format!("pop-{k}-{n}");
            let msg = crate::smtp::make_message(
                &tag,
                "sender@bench.test",
                &format!("u{k}@bench.test"),
                size,
            );
            let name = format!("{secs}.B{k}M{n}.bench,S={}", msg.len());
            std::fs::write(m.join("new").join(name), &msg)?;
            total += msg.len() as u64;
        }
    }
    Ok(total)
}

/// Makes `to` a copy of Maildir `from` whose message files are hard links (same bytes, no
/// extra disk), owned by `owner` (uid, gid) when given.
pub fn link_copy(from: &Path, to: &Path, owner: Option<(u32, u32)>) -> std::io::Result<()> {
    for sub in ["new", "cur", "tmp"] {
        let d = to.join(sub);
        std::fs::create_dir_all(&d)?;
        for f in entries(&from.join(sub)) {
            let dst = d.join(f.file_name().expect("file name"));
            std::fs::hard_link(&f, &dst)?;
            chown(&dst, owner)?;
        }
        chown(&d, owner)?;
    }
    chown(to, owner)?;
    // The parents (home directory) too, so the mail user can create index files there.
    if let Some(home) = to.parent() {
        chown(home, owner)?;
    }
    Ok(())
}

fn chown(p: &Path, owner: Option<(u32, u32)>) -> std::io::Result<()> {
    match owner {
        Some((u, g)) => std::os::unix::fs::chown(p, Some(u), Some(g)),
        None => Ok(()),
    }
}
