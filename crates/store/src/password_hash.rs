//! Password hashes as the directory stores them: argon2id (PHC string, what Mailroom writes),
//! and the crypt(3) forms an import from Dovecot brings along and keeps until the account's next
//! successful login rehashes it: SHA512-CRYPT / SHA256-CRYPT (`$6$`, `$5$`) and BLF-CRYPT
//! (`$2y$`, `$2b$`, `$2a$`). Dovecot's own `{ARGON2ID}` / `{ARGON2I}` values are PHC strings too.
//!
//! [`from_dovecot`] turns a Dovecot passwd-file password field (`{SCHEME}value`) into the
//! stored form, refusing schemes we cannot verify (`{MD5-CRYPT}`, `{SSHA}`, ...) and work
//! factors that would make one login an attack on the CPU. Pure apart from argon2's cost; no
//! I/O, no database.
//!
//! [`Argon2Params`] are the cost of new hashes (`[auth] argon2_memory_kib`,
//! `argon2_iterations`), never below OWASP's minimum for argon2id (m = 19 MiB, t = 2, p = 1,
//! [`Argon2Params::OWASP_MIN`], also the default). A hash that verified is rehashed when it is
//! an imported form or an argon2id hash made with other parameters ([`needs_rehash_for`]).
//! Verification always uses the parameters written in the hash itself.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

/// The cost of the argon2id hashes Mailroom writes (parallelism is always 1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Argon2Params {
    /// Memory per hash, KiB (`m`).
    pub memory_kib: u32,
    /// Passes over that memory (`t`).
    pub iterations: u32,
}

impl Argon2Params {
    /// OWASP's minimum for argon2id: m = 19 MiB, t = 2, p = 1 (the Password Storage Cheat
    /// Sheet); the argon2 crate's default too.
    pub const OWASP_MIN: Argon2Params = Argon2Params {
        memory_kib: 19 * 1024,
        iterations: 2,
    };
    /// Upper bounds, so a typo cannot make every login take seconds and gigabytes.
    pub const MAX_MEMORY_KIB: u32 = 1024 * 1024;
    pub const MAX_ITERATIONS: u32 = 64;

    /// Refuses parameters below [`Argon2Params::OWASP_MIN`] or above the maximums; the error
    /// names the `[auth]` key.
    pub fn check(&self) -> Result<(), String> {
        let min = Self::OWASP_MIN;
        if self.memory_kib < min.memory_kib || self.memory_kib > Self::MAX_MEMORY_KIB {
            return Err(format!(
                "auth.argon2_memory_kib: {} is outside {}..={} (OWASP's minimum for argon2id is 19 MiB = {} KiB)",
                self.memory_kib,
                min.memory_kib,
                Self::MAX_MEMORY_KIB,
                min.memory_kib
            ));
        }
        if self.iterations < min.iterations || self.iterations > Self::MAX_ITERATIONS {
            return Err(format!(
                "auth.argon2_iterations: {} is outside {}..={} (OWASP's minimum for argon2id at 19 MiB is 2)",
                self.iterations,
                min.iterations,
                Self::MAX_ITERATIONS
            ));
        }
        Ok(())
    }

    fn hasher(&self) -> Result<Argon2<'static>, String> {
        self.check()?;
        let params = Params::new(self.memory_kib, self.iterations, 1, None)
            .map_err(|e| format!("argon2 parameters: {e}"))?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }
}

impl Default for Argon2Params {
    fn default() -> Argon2Params {
        Argon2Params::OWASP_MIN
    }
}

/// SHA-crypt rounds accepted at import (glibc's default is 5,000; Dovecot's 5,000).
const MAX_SHA_CRYPT_ROUNDS: u32 = 1_000_000;
/// bcrypt cost accepted at import (Dovecot's default is 5; 12 is common; each step doubles).
const MAX_BCRYPT_COST: u32 = 14;

/// A new argon2id hash of `password` with a random salt and the default parameters.
pub fn hash(password: &str) -> Result<String, String> {
    hash_with(password, Argon2Params::default())
}

/// A new argon2id hash of `password` with a random salt and the given parameters.
pub fn hash_with(password: &str, params: Argon2Params) -> Result<String, String> {
    let salt_bytes: [u8; 16] = rand::random();
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| e.to_string())?;
    params
        .hasher()?
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| format!("password hashing failed: {e}"))
}

/// Whether `password` matches the stored hash (any supported form; anything else never
/// matches).
pub fn verify(stored: &str, password: &str) -> bool {
    if stored.starts_with("$argon2") {
        return match PasswordHash::new(stored) {
            Ok(parsed) => Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok(),
            Err(_) => false,
        };
    }
    if stored.starts_with("$6$") || stored.starts_with("$5$") {
        use sha_crypt::PasswordVerifier as _;
        return sha_crypt::ShaCrypt::default()
            .verify_password(password.as_bytes(), stored)
            .is_ok();
    }
    if is_bcrypt(stored) {
        return bcrypt::verify(password, stored).unwrap_or(false);
    }
    false
}

/// Whether a hash that just verified should be replaced by a fresh argon2id one (it is an
/// imported form).
pub fn needs_rehash(stored: &str) -> bool {
    !stored.starts_with("$argon2id$")
}

/// Whether a hash that just verified should be replaced by one made with `params`: an
/// imported form, or argon2id with another memory, iteration count or parallelism.
pub fn needs_rehash_for(stored: &str, params: Argon2Params) -> bool {
    if needs_rehash(stored) {
        return true;
    }
    let Ok(parsed) = PasswordHash::new(stored) else {
        return true;
    };
    match Params::try_from(&parsed) {
        Ok(p) => {
            p.m_cost() != params.memory_kib || p.t_cost() != params.iterations || p.p_cost() != 1
        }
        Err(_) => true,
    }
}

fn is_bcrypt(stored: &str) -> bool {
    ["$2y$", "$2b$", "$2a$"]
        .iter()
        .any(|p| stored.starts_with(p))
}

/// The stored form of a Dovecot passwd-file password field: `{SCHEME}value`, or a bare crypt
/// string (Dovecot's default scheme, CRYPT). `{PLAIN}` / `{CLEAR}` values are hashed now.
pub fn from_dovecot(field: &str) -> Result<String, String> {
    let (scheme, value) = match field.strip_prefix('{').and_then(|r| r.split_once('}')) {
        Some((scheme, value)) => (scheme.to_ascii_uppercase(), value),
        None => ("CRYPT".to_string(), field),
    };
    let scheme = scheme.split('.').next().unwrap_or("").to_string(); // {SHA512-CRYPT.b64}
    match scheme.as_str() {
        "PLAIN" | "CLEAR" => hash(value),
        "ARGON2ID" | "ARGON2I" if PasswordHash::new(value).is_ok() => Ok(value.to_string()),
        "SHA512-CRYPT" if value.starts_with("$6$") => crypt_checked(value),
        "SHA256-CRYPT" if value.starts_with("$5$") => crypt_checked(value),
        "BLF-CRYPT" if is_bcrypt(value) => crypt_checked(value),
        "CRYPT" if value.starts_with("$6$") || value.starts_with("$5$") || is_bcrypt(value) => {
            crypt_checked(value)
        }
        "" => Err("empty scheme".into()),
        s if [
            "SHA512-CRYPT",
            "SHA256-CRYPT",
            "BLF-CRYPT",
            "ARGON2ID",
            "ARGON2I",
            "CRYPT",
        ]
        .contains(&s) =>
        {
            Err(format!("{{{s}}} value is not in that scheme's format"))
        }
        s => Err(format!(
            "scheme {{{s}}} is not supported (SHA512-CRYPT, SHA256-CRYPT, BLF-CRYPT, ARGON2ID, \
             ARGON2I, CRYPT with $6$/$5$/$2y$, PLAIN)"
        )),
    }
}

/// A crypt string whose work factor is within bounds and whose syntax verifies (a wrong
/// password must be *refused*, not an error).
fn crypt_checked(value: &str) -> Result<String, String> {
    if is_bcrypt(value) {
        let cost: u32 = value
            .get(4..6)
            .and_then(|c| c.parse().ok())
            .ok_or("bcrypt hash without a cost")?;
        if cost > MAX_BCRYPT_COST {
            return Err(format!("bcrypt cost {cost} is above {MAX_BCRYPT_COST}"));
        }
        if bcrypt::verify("", value).is_err() {
            return Err("malformed bcrypt hash".into());
        }
        return Ok(value.to_string());
    }
    if let Some(rounds) = value
        .split('$')
        .nth(2)
        .and_then(|f| f.strip_prefix("rounds="))
    {
        let rounds: u32 = rounds.parse().map_err(|_| "bad rounds= field")?;
        if rounds > MAX_SHA_CRYPT_ROUNDS {
            return Err(format!("{rounds} rounds is above {MAX_SHA_CRYPT_ROUNDS}"));
        }
    }
    if sha_crypt::PasswordHashRef::new(value).is_err() || value.split('$').count() < 4 {
        return Err("malformed SHA-crypt hash".into());
    }
    Ok(value.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Made with `openssl passwd -6 -salt saltsalt secret`
    // (Dovecot's `doveadm pw -s SHA512-CRYPT` / `BLF-CRYPT` make the same forms).
    const SHA512: &str = "$6$saltsalt$TVLlQcbpFVof5W3Yz4DTP6gRstiNuHwwTt6GLc1E5n0U0aDehy0S5knV8wiOQSpT0Y77vwPZN.Pq.H91p5hVO1";

    #[test]
    fn argon2_round_trip() {
        let h = hash("correct horse").unwrap();
        assert!(verify(&h, "correct horse"));
        assert!(!verify(&h, "wrong"));
        assert!(!needs_rehash(&h));
    }

    #[test]
    fn parameters_are_written_checked_and_compared() {
        let p = Argon2Params {
            memory_kib: 24 * 1024,
            iterations: 3,
        };
        let h = hash_with("pw", p).unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=24576,t=3,p=1$"), "{h}");
        assert!(verify(&h, "pw") && !verify(&h, "pW"));
        assert!(!needs_rehash_for(&h, p));
        assert!(needs_rehash_for(&h, Argon2Params::default()));
        let d = hash("pw").unwrap();
        assert!(d.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{d}");
        assert!(!needs_rehash_for(&d, Argon2Params::OWASP_MIN));
        assert!(needs_rehash_for(SHA512, p));
        let low_m = Argon2Params {
            memory_kib: 19455,
            ..p
        };
        assert!(low_m
            .check()
            .unwrap_err()
            .starts_with("auth.argon2_memory_kib"));
        assert!(hash_with("pw", low_m).is_err());
        let low_t = Argon2Params { iterations: 1, ..p };
        assert!(low_t
            .check()
            .unwrap_err()
            .starts_with("auth.argon2_iterations"));
        let high = Argon2Params {
            memory_kib: Argon2Params::MAX_MEMORY_KIB + 1,
            ..p
        };
        assert!(high.check().is_err());
    }

    #[test]
    fn sha512_crypt_from_dovecot() {
        let stored = from_dovecot(&format!("{{SHA512-CRYPT}}{SHA512}")).unwrap();
        assert_eq!(stored, SHA512);
        assert!(verify(&stored, "secret"));
        assert!(!verify(&stored, "Secret"));
        assert!(needs_rehash(&stored));
        // A bare crypt string is Dovecot's default scheme.
        assert_eq!(from_dovecot(SHA512).unwrap(), SHA512);
    }

    #[test]
    fn bcrypt_from_dovecot() {
        let made = bcrypt::hash_with_result("secret", 5)
            .unwrap()
            .format_for_version(bcrypt::Version::TwoY);
        let stored = from_dovecot(&format!("{{BLF-CRYPT}}{made}")).unwrap();
        assert!(verify(&stored, "secret"));
        assert!(!verify(&stored, "secreT"));
        assert!(needs_rehash(&stored));
    }

    #[test]
    fn plain_is_hashed_and_others_refused() {
        let stored = from_dovecot("{PLAIN}hunter2hunter2").unwrap();
        assert!(stored.starts_with("$argon2id$") && verify(&stored, "hunter2hunter2"));
        assert!(from_dovecot("{MD5-CRYPT}$1$abc$def")
            .unwrap_err()
            .contains("not supported"));
        assert!(from_dovecot("{SHA512-CRYPT}plainjunk").is_err());
        assert!(from_dovecot("{SSHA}abcd").is_err());
        assert!(from_dovecot("$6$rounds=999999999$salt$abc")
            .unwrap_err()
            .contains("rounds"));
        let slow = bcrypt::hash_with_result("x", 4)
            .unwrap()
            .format_for_version(bcrypt::Version::TwoY)
            .replacen("$04$", "$31$", 1);
        assert!(from_dovecot(&slow).unwrap_err().contains("cost"));
        assert!(!verify("$1$abc$def", "x"));
        assert!(!verify("garbage", ""));
    }
}
