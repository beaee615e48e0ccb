//! The queue's on-disk formats (`store::spool`): the message record reader
//! (`parse_record_bytes`, what `Spool::read` runs on a `msg/<id>` file) and the per-recipient
//! `.state` file reader (`Spool::log`, through a real spool in a temporary directory).
//!
//! Input: the bytes of the file (used both as a record and as a state file).
//!
//! Checks: no panic; a record that parses has at least one recipient, and writing its
//! envelope and message with the writer (`encode_record`, what `Spool::enqueue` writes) gives
//! a record that parses to the same envelope and message and is a fixed point of
//! parse-then-write, with no control byte in its header lines; state lines that parse write
//! back as lines that parse the same.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use store::outcome::Entry;
use store::spool::{encode_record, parse_record_bytes, Spool};

const ID: &str = "0123456789ABCDEF";

struct Fixture {
    spool: Spool,
    state_file: PathBuf,
    _dir: PathBuf,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!("mailroom-fuzz-spool-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let spool = Spool::open(&dir).expect("open spool");
        let msg = dir.join("queue").join("msg");
        std::fs::write(
            msg.join(ID),
            b"MAILROOM-QUEUE 1\nreceived 1\nsender \nrcpt a@b\nclient \n\n",
        )
        .expect("write record");
        Fixture {
            spool,
            state_file: msg.join(format!("{ID}.state")),
            _dir: dir,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok((env, body)) = parse_record_bytes(ID, data) {
        assert_eq!(env.id, ID);
        assert!(
            !env.recipients.is_empty(),
            "record without recipients accepted"
        );
        assert!(
            data.ends_with(&body),
            "message is not the tail of the record"
        );
        let written = encode_record(&env, &body);
        let header = &written[..written.len() - body.len()];
        assert!(header.ends_with(b"\n\n"));
        for line in header[..header.len() - 2].split(|&b| b == b'\n') {
            assert!(
                !line.iter().any(|&b| b < 0x20 || b == 0x7f),
                "control byte in {line:?}"
            );
        }
        let (env2, body2) =
            parse_record_bytes(ID, &written).expect("written record does not parse");
        assert_eq!(env2, env, "envelope changed through the writer");
        assert_eq!(body2, body, "message changed through the writer");
        assert_eq!(
            encode_record(&env2, &body2),
            written,
            "writer is not a fixed point"
        );
    }

    let f = fixture();
    std::fs::write(&f.state_file, data).expect("write state file");
    if let Ok(entries) = f.spool.log(ID) {
        let full_lines = data.iter().filter(|&&b| b == b'\n').count();
        assert_eq!(entries.len(), full_lines, "a state line was skipped");
        // Every entry that was read writes back as a line that reads the same.
        for e in &entries {
            let line = e.to_line();
            assert_eq!(Entry::parse(line.as_bytes()).as_ref(), Some(e), "{line}");
        }
    }
});
