//! `mailroom import maildir ADDRESS DIR`: a Maildir that Dovecot served is copied into the
//! account's Maildir so that POP3 clients set to "leave mail on the server" see the same
//! UIDLs and do not download everything again.
//!
//! Mailroom's UIDL is a message's base file name (`store::mailbox`), so each message is
//! written under its Dovecot UIDL as its name: the `P` field of `dovecot-uidlist` when Dovecot
//! saved one, else Dovecot's default `pop3_uidl_format = %08Xu%08Xv` (UID and UIDVALIDITY,
//! which Dovecot 2.3 writes in lower-case hex), and for a file the list does not know, its own base name. Line ends become
//! CRLF (`local_mail::normalize`, as for sendmail: what Dovecot sends over POP3 for an LF
//! file). Each copy is durable (`store::maildir`);
//! a message already imported under its name is skipped, so a second run adds only what is
//! new. The source is only read.

use std::collections::HashMap;
use std::path::Path;

use store::maildir::{maildir_path, Maildir};

use crate::config::Config;
use crate::terminal::safe;
use crate::Failure;

/// What `dovecot-uidlist` says: UIDVALIDITY, and per base file name its UID and saved UIDL.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct UidList {
    pub uid_validity: u32,
    pub by_base: HashMap<String, (u32, Option<String>)>,
}

/// Parses `dovecot-uidlist` (version 1: `1 <uidvalidity> <next>` then `<uid> <file>`;
/// version 3: `3 V<uidvalidity> N<next> ...` then `<uid> [<ext>...] :<file>`). Lines it cannot
/// read are skipped.
pub fn parse_uidlist(text: &str) -> UidList {
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split_whitespace().collect();
    let version = header.first().copied().unwrap_or("");
    let uid_validity = match version {
        "1" => header.get(1).and_then(|v| v.parse().ok()),
        _ => header
            .iter()
            .find_map(|f| f.strip_prefix('V').and_then(|v| v.parse().ok())),
    }
    .unwrap_or(0);
    let mut by_base = HashMap::new();
    for line in lines {
        let (head, file) = match version {
            "1" => match line.split_once(' ') {
                Some((uid, file)) => (uid, file),
                None => continue,
            },
            _ => match line.split_once(" :") {
                Some(pair) => pair,
                None => continue,
            },
        };
        let mut fields = head.split_whitespace();
        let Some(Ok(uid)) = fields.next().map(str::parse::<u32>) else {
            continue;
        };
        let uidl = fields
            .find_map(|f| f.strip_prefix('P'))
            .filter(|p| !p.is_empty())
            .map(str::to_string);
        by_base.insert(base_name(file).to_string(), (uid, uidl));
    }
    UidList {
        uid_validity,
        by_base,
    }
}

/// A Maildir file name without its `:2,<flags>` info.
fn base_name(name: &str) -> &str {
    name.split_once(":2,").map_or(name, |(b, _)| b)
}

/// The UIDL Dovecot gave the file `base`.
fn uidl_of(list: &UidList, base: &str) -> String {
    match list.by_base.get(base) {
        Some((_, Some(saved))) => saved.clone(),
        // Dovecot 2.3's `%08Xu%08Xv` expands to lower-case hex (seen from a real Dovecot).
        Some((uid, None)) => format!("{uid:08x}{:08x}", list.uid_validity),
        None => base.to_string(),
    }
}

/// Whether `uidl` can be a file name and a UIDL as it is (RFC 1939: 1-70 octets 0x21-0x7E).
fn usable(uidl: &str) -> bool {
    (1..=70).contains(&uidl.len())
        && uidl
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b'/' && b != b':')
        && !uidl.starts_with('.')
}

pub fn run(config: &Config, address: &str, source: &Path) -> Result<(), Failure> {
    let dir = store::directory::Directory::open(&config.data_dir).map_err(Failure::failed)?;
    let account = dir
        .account(address)
        .map_err(Failure::failed)?
        .ok_or_else(|| Failure::failed(format!("no such account: {address}")))?;
    let list = match std::fs::read_to_string(source.join("dovecot-uidlist")) {
        Ok(text) => parse_uidlist(&text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => UidList::default(),
        Err(e) => return Err(Failure::failed(format!("dovecot-uidlist: {e}"))),
    };
    let maildir = Maildir::new(maildir_path(&config.data_dir, &account));
    maildir.create().map_err(Failure::failed)?;
    let (mut imported, mut skipped, mut refused) = (0usize, 0usize, 0usize);
    for sub in ["cur", "new"] {
        let entries = match std::fs::read_dir(source.join(sub)) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Failure::failed(format!("{}: {e}", source.display()))),
        };
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| !n.starts_with('.'))
            .collect();
        names.sort();
        for name in names {
            let uidl = uidl_of(&list, base_name(&name));
            if !usable(&uidl) {
                refused += 1;
                eprintln!(
                    "{sub}/{}: refused: UIDL {} cannot be a file name",
                    safe(&name),
                    safe(&uidl)
                );
                continue;
            }
            if maildir.contains(&uidl).map_err(Failure::failed)? {
                skipped += 1;
                continue;
            }
            let bytes = std::fs::read(source.join(sub).join(&name))
                .map_err(|e| Failure::failed(format!("{sub}/{name}: {e}")))?;
            maildir
                .deliver(&uidl, &[&crate::local_mail::normalize(&bytes)])
                .map_err(|e| Failure::failed(format!("{sub}/{name}: {e}")))?;
            imported += 1;
        }
    }
    println!("messages: imported {imported}, skipped {skipped} (already there), refused {refused}");
    if refused > 0 {
        return Err(Failure::failed(format!("{refused} message(s) refused")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uidlist_v3_and_v1() {
        let l = parse_uidlist(
            "3 V1700000000 N4 G3085f01b7f11094c501100008c4a11c1\n1 :1700000001.M1P2.host,S=10,W=11:2,S\n2 W123 P0042-legacy :1700000002.M2P2.host\nnot a line\n",
        );
        assert_eq!(l.uid_validity, 1_700_000_000);
        assert_eq!(
            uidl_of(&l, "1700000001.M1P2.host,S=10,W=11"),
            "000000016553f100"
        );
        assert_eq!(uidl_of(&l, "1700000002.M2P2.host"), "0042-legacy");
        assert_eq!(uidl_of(&l, "unknown.file"), "unknown.file");
        let v1 = parse_uidlist("1 1234 3\n7 1.M1.host:2,\n");
        assert_eq!(uidl_of(&v1, "1.M1.host"), "00000007000004d2");
    }

    #[test]
    fn lf_becomes_crlf_once() {
        assert_eq!(
            crate::local_mail::normalize(b"a\nb\r\nc\n"),
            b"a\r\nb\r\nc\r\n"
        );
        assert!(usable("000000016553f100"));
        assert!(!usable("a/b") && !usable("") && !usable(".x") && !usable("a:2,S"));
    }
}
