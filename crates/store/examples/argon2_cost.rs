//! The cost of one login's password check on this machine, for the `[auth] argon2_*` settings
//! and the crypt forms imported from Dovecot: `cargo run --release -p store --example
//! argon2_cost`. Prints the median time of one verification on one core for each.

use std::time::Instant;

use store::password_hash::{hash_with, verify, Argon2Params};

fn median_ms(stored: &str, rounds: usize) -> f64 {
    let mut v: Vec<f64> = (0..rounds)
        .map(|_| {
            let t = Instant::now();
            assert!(verify(stored, "correct horse battery"));
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let rounds = 15;
    println!("| hash | one check, ms (median of {rounds}) | checks/s per core |");
    println!("|---|---:|---:|");
    for (m, t) in [
        (19 * 1024, 2),
        (19 * 1024, 3),
        (46 * 1024, 2),
        (64 * 1024, 3),
    ] {
        let p = Argon2Params {
            memory_kib: m,
            iterations: t,
        };
        let h = hash_with("correct horse battery", p).expect("valid parameters");
        let ms = median_ms(&h, rounds);
        println!(
            "| argon2id m={m} KiB t={t} p=1 | {ms:.1} | {:.0} |",
            1000.0 / ms
        );
    }
    let sha = sha_crypt_hash();
    let ms = median_ms(&sha, rounds);
    println!(
        "| SHA512-CRYPT 5000 rounds (imported) | {ms:.1} | {:.0} |",
        1000.0 / ms
    );
    let blf = bcrypt::hash_with_result("correct horse battery", 5)
        .expect("bcrypt")
        .format_for_version(bcrypt::Version::TwoY);
    let ms = median_ms(&blf, rounds);
    println!(
        "| BLF-CRYPT cost 5 (imported) | {ms:.1} | {:.0} |",
        1000.0 / ms
    );
}

/// `openssl passwd -6 -salt saltsalt 'correct horse battery'`.
fn sha_crypt_hash() -> String {
    let out = std::process::Command::new("openssl")
        .args(["passwd", "-6", "-salt", "saltsalt", "correct horse battery"])
        .output()
        .expect("openssl");
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .trim()
        .to_string()
}
