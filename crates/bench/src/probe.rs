//! The physical probe of the disk under the work directory: what durable writes it can take
//! at all, so each scenario's figure can be read as a fraction of the hardware.
//!
//! - `fdatasync/s`: one writer, write 4 KiB then fdatasync, in a loop.
//! - `durable creates/s`: 16 writers, each create a file in tmp/, write 4 KiB, fsync, rename
//!   into new/, fsync new/ — the cost of one Maildir delivery (or one queue file) with no
//!   sharing of fsyncs.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

pub struct Probe {
    pub fdatasync_per_s: f64,
    pub creates_per_s: f64,
}

pub fn run(dir: &Path, seconds: f64) -> std::io::Result<Probe> {
    std::fs::create_dir_all(dir)?;
    let budget = Duration::from_secs_f64(seconds);
    let block = [b'x'; 4096];

    let path = dir.join("fdatasync.dat");
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)?;
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < budget {
        f.write_all(&block)?;
        // SAFETY: fdatasync on a file descriptor we own.
        if unsafe { libc::fdatasync(f.as_raw_fd()) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        n += 1;
    }
    let fdatasync_per_s = n as f64 / start.elapsed().as_secs_f64();
    drop(f);
    let _ = std::fs::remove_file(&path);

    let tmp = dir.join("tmp");
    let new = dir.join("new");
    std::fs::create_dir_all(&tmp)?;
    std::fs::create_dir_all(&new)?;
    let start = Instant::now();
    let total: u64 = std::thread::scope(|s| {
        let hs: Vec<_> = (0..16)
            .map(|w| {
                let (tmp, new) = (&tmp, &new);
                s.spawn(move || -> std::io::Result<u64> {
                    let newdir = File::open(new)?;
                    let mut n = 0u64;
                    while start.elapsed() < budget {
                        let name = format!("w{w}-{n}");
                        let t = tmp.join(&name);
                        let mut f = File::create(&t)?;
                        f.write_all(&block)?;
                        f.sync_all()?;
                        drop(f);
                        std::fs::rename(&t, new.join(&name))?;
                        newdir.sync_all()?;
                        n += 1;
                    }
                    Ok(n)
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("probe thread").unwrap_or(0))
            .sum()
    });
    let creates_per_s = total as f64 / start.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(dir);
    Ok(Probe {
        fdatasync_per_s,
        creates_per_s,
    })
}
