//! The per-message state log (`msg/<id>.state`: one [`Entry`] per line, appended and fsynced,
//! read back with the first format still understood) and the flush requests of
//! `mailroom queue flush|bounce` (`queue/flush`, taken by the runner). Storage only: what an
//! entry means is `queue_status`'s and the runner's business.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use super::{check_id, invalid_data, is_id, Spool, STATE_SUFFIX};
use crate::outcome::Entry;

impl Spool {
    /// Asks the running queue runner to retry these messages now (all of them when `ids` is
    /// empty): `mailroom queue flush` and `queue bounce`, which may run in another process,
    /// append to `queue/flush`; the runner takes the requests every half second.
    pub fn request_flush(&self, ids: &[String]) -> io::Result<()> {
        let text = if ids.is_empty() {
            "*\n".to_string()
        } else {
            for id in ids {
                check_id(id)?;
            }
            ids.join("\n") + "\n"
        };
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(self.flush_path())?;
        f.write_all(text.as_bytes())
    }

    /// Takes the pending flush requests: `Some(ids)`, with an empty list meaning "all", or
    /// `None` when there are none.
    pub fn take_flush_requests(&self) -> Option<Vec<String>> {
        // Renamed away first, so a request appended meanwhile starts a new file instead of
        // being removed unread.
        let taken = self.flush_path().with_file_name("flush.taken");
        fs::rename(self.flush_path(), &taken).ok()?;
        let text = fs::read_to_string(&taken).ok();
        let _ = fs::remove_file(&taken);
        let text = text?;
        if text.lines().any(|l| l.trim() == "*") {
            return Some(Vec::new());
        }
        Some(
            text.lines()
                .map(|l| l.trim().to_string())
                .filter(|l| is_id(l))
                .collect(),
        )
    }

    fn flush_path(&self) -> PathBuf {
        self.msg.with_file_name("flush")
    }

    pub(super) fn state_path(&self, id: &str) -> PathBuf {
        self.msg.join(format!("{id}{STATE_SUFFIX}"))
    }

    /// Appends one entry to the message's state log (`msg/<id>.state`), fsynced (and its
    /// directory too when the file is new): a recipient's [`Outcome`](crate::outcome::Outcome)
    /// after an attempt, or a message-level mark. The message must exist.
    pub fn record(&self, id: &str, entry: &Entry) -> io::Result<()> {
        check_id(id)?;
        fs::metadata(self.msg.join(id))?;
        let path = self.state_path(id);
        let (mut file, created) = match OpenOptions::new()
            .append(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
        {
            Ok(f) => (f, true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                (OpenOptions::new().append(true).open(&path)?, false)
            }
            Err(e) => return Err(e),
        };
        let mut line = entry.to_line();
        line.push('\n');
        file.write_all(line.as_bytes())?;
        self.disk.sync_file(&file, &path)?;
        if created {
            self.disk.sync_dir(&self.msg)?;
        }
        Ok(())
    }

    /// Reads back the state log, in order. No state file means no entries; a torn last line
    /// (crash while appending) is ignored; any other malformed line is `InvalidData`. Lines of
    /// the first format are read too ([`Entry::parse`]).
    pub fn log(&self, id: &str) -> io::Result<Vec<Entry>> {
        check_id(id)?;
        let data = match fs::read(self.state_path(id)) {
            Ok(d) => d,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut lines: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
        // The piece after the last '\n' is empty, or a torn line.
        lines.pop();
        lines
            .into_iter()
            .map(|line| {
                Entry::parse(line)
                    .ok_or_else(|| invalid_data(format!("{id}: malformed state line")))
            })
            .collect()
    }
}
