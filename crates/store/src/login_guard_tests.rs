//! Tests of the login guard: parallel guesses, key folding, IPv6 prefixes, delays and
//! windows, all on a fake clock (a base `Instant` plus offsets).

use super::*;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Barrier};

fn limits(n: u32) -> LoginLimits {
    LoginLimits {
        lockout_after_per_ip: n,
        lockout_after_per_account: n,
        ..LoginLimits::default()
    }
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Fails `n` logins by `user` from `from` at `now`.
fn fail(g: &LoginGuard, from: &str, user: &str, n: u32, now: Instant) {
    for _ in 0..n {
        let a = g.begin(ip(from), user, now).expect("not locked yet");
        a.failed(now);
    }
}

#[test]
fn parallel_guesses_at_most_n_reach_the_checker() {
    // 30 clients from one address guess at once; a counting fake checker stands in for
    // argon2 and holds each check until every client has asked.
    const N: u32 = 10;
    let guard = Arc::new(LoginGuard::new(limits(N)));
    let checked = Arc::new(AtomicU32::new(0));
    let all_asked = Arc::new(Barrier::new(30));
    let now = Instant::now();
    let threads: Vec<_> = (0..30)
        .map(|i| {
            let (guard, checked, all_asked) = (guard.clone(), checked.clone(), all_asked.clone());
            std::thread::spawn(move || {
                let user = format!("user{i}@example.test");
                let attempt = guard.begin(ip("192.0.2.7"), &user, now);
                all_asked.wait();
                if let Ok(a) = attempt {
                    checked.fetch_add(1, Ordering::SeqCst);
                    a.failed(now);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(checked.load(Ordering::SeqCst), N);
    assert!(guard.begin(ip("192.0.2.7"), "x@example.test", now).is_err());
}

#[test]
fn parallel_guesses_per_account_from_one_network() {
    // The per-network limit is higher than the per-account one: one network may try a few
    // accounts, but only N guesses at any one of them.
    const N: u32 = 5;
    let g = LoginGuard::new(LoginLimits {
        lockout_after_per_ip: 100,
        lockout_after_per_account: N,
        ..LoginLimits::default()
    });
    let now = Instant::now();
    let in_flight: Vec<_> = (0..30)
        .filter_map(|_| g.begin(ip("198.51.100.1"), "kate@example.test", now).ok())
        .collect();
    assert_eq!(in_flight.len(), N as usize);
    let r = g
        .begin(ip("198.51.100.1"), "kate@example.test", now)
        .unwrap_err();
    assert_eq!(r.lockout, Lockout::Account);
    assert!(g.begin(ip("198.51.100.1"), "bob@example.test", now).is_ok());
    // A right password releases its reservation without counting a failure.
    for a in in_flight {
        a.succeeded();
    }
    assert!(g
        .begin(ip("198.51.100.1"), "kate@example.test", now)
        .is_ok());
}

/// Issue 15: twelve wrong passwords from twelve addresses locked the account for its owner.
#[test]
fn strangers_never_lock_the_owner_out_but_their_failures_grow_the_delay() {
    let g = LoginGuard::new(LoginLimits {
        failure_delay: Duration::from_millis(100),
        max_failure_delay: Duration::from_millis(800),
        ..limits(3)
    });
    let now = Instant::now();
    for i in 10..22u8 {
        fail(&g, &format!("127.0.0.{i}"), "alice@example.test", 3, now);
        // Each stranger is locked out of alice (and of everything, per network).
        assert!(g
            .begin(IpAddr::from([127, 0, 0, i]), "alice@example.test", now)
            .is_err());
    }
    // The owner, from a new address, gets to the password check...
    let owner = g
        .begin(ip("127.0.0.99"), "alice@example.test", now)
        .expect("owner not locked out");
    // ...and a wrong password there is answered after the longest delay, since alice has
    // 36 recent failures from anywhere.
    let f = owner.failed(now);
    assert_eq!((f.ip_failures, f.account_failures), (1, 1));
    assert_eq!(f.account_failures_anywhere, 37);
    assert_eq!(f.delay, Duration::from_millis(800));
    // A fresh account from a fresh address starts at the shortest delay.
    let f = g
        .begin(ip("127.0.0.98"), "bob@example.test", now)
        .unwrap()
        .failed(now);
    assert_eq!(f.delay, Duration::from_millis(100));
}

#[test]
fn unicode_spellings_share_the_account_counter() {
    let g = LoginGuard::new(LoginLimits {
        lockout_after_per_ip: 100,
        ..limits(3)
    });
    let now = Instant::now();
    fail(&g, "192.0.2.1", "kate@example.test", 3, now);
    // KELVIN SIGN: the directory folds it to `k`, so this name logs in as kate.
    let r = g
        .begin(ip("192.0.2.1"), "\u{212A}ate@example.test", now)
        .unwrap_err();
    assert_eq!(r.lockout, Lockout::Account);
    assert!(g.begin(ip("192.0.2.1"), "KATE@Example.TEST", now).is_err());
    assert!(g.begin(ip("192.0.2.1"), "bob@example.test", now).is_ok());
    assert!(g.begin(ip("192.0.2.99"), "KATE@Example.TEST", now).is_ok());
    assert_eq!(
        account_key("\u{212A}ate@example.test"),
        account_key("kate@example.test")
    );
}

#[test]
fn ipv6_is_counted_per_64() {
    let g = LoginGuard::new(limits(2));
    let now = Instant::now();
    fail(&g, "2001:db8::1", "a@example.test", 1, now);
    fail(&g, "2001:db8::2", "b@example.test", 1, now);
    assert_eq!(g.ip_failures(ip("2001:db8::ffff:1"), now), 2);
    let r = g
        .begin(ip("2001:db8::3"), "c@example.test", now)
        .unwrap_err();
    assert_eq!(r.lockout, Lockout::Ip);
    assert!(g
        .begin(ip("2001:db8:0:1::1"), "c@example.test", now)
        .is_ok());
    // IPv4 per address; IPv4-mapped IPv6 as IPv4.
    fail(&g, "192.0.2.1", "d@example.test", 2, now);
    assert!(g
        .begin(ip("::ffff:192.0.2.1"), "e@example.test", now)
        .is_err());
    assert!(g.begin(ip("192.0.2.2"), "e@example.test", now).is_ok());
}

#[test]
fn lockout_ends_with_the_window_and_delays_grow() {
    let l = LoginLimits {
        lockout_after_per_ip: 3,
        lockout_after_per_account: 100,
        lockout_window: Duration::from_secs(60),
        failure_delay: Duration::from_millis(100),
        max_failure_delay: Duration::from_millis(250),
    };
    let g = LoginGuard::new(l);
    let t0 = Instant::now();
    let mut delays = Vec::new();
    for i in 0..3u64 {
        let now = t0 + Duration::from_secs(i);
        let a = g.begin(ip("192.0.2.5"), "a@example.test", now).unwrap();
        delays.push(a.failed(now).delay.as_millis());
    }
    assert_eq!(delays, [100, 200, 250]);
    // Locked until the first failure is a whole window old.
    let r = g
        .begin(
            ip("192.0.2.5"),
            "a@example.test",
            t0 + Duration::from_secs(59),
        )
        .unwrap_err();
    assert_eq!((r.lockout, r.failures), (Lockout::Ip, 3));
    assert_eq!(r.delay, Duration::from_millis(250));
    assert!(g
        .begin(
            ip("192.0.2.5"),
            "a@example.test",
            t0 + Duration::from_secs(60)
        )
        .is_ok());
}

#[test]
fn abandoned_attempt_counts_as_failure() {
    let g = LoginGuard::new(limits(2));
    let now = Instant::now();
    drop(g.begin(ip("192.0.2.9"), "a@example.test", now).unwrap());
    assert_eq!(g.ip_failures(ip("192.0.2.9"), now), 1);
}

#[test]
fn account_key_is_bounded_and_utf8_safe() {
    let long = "é".repeat(300);
    let k = account_key(&long);
    assert!(k.len() <= MAX_ACCOUNT_KEY && k.starts_with('é'));
    assert_eq!(account_key("Bob@Example.TEST"), "bob@example.test");
    assert_eq!(account_key("ALICE"), "alice");
}

#[test]
fn the_guard_reads_its_own_clock() {
    let clock = std::sync::Arc::new(crate::clock::FakeClock::new(1_000));
    let g = LoginGuard::with_clock(
        LoginLimits {
            lockout_window: Duration::from_secs(60),
            ..limits(2)
        },
        clock.clone(),
    );
    for _ in 0..2 {
        g.begin(ip("192.0.2.1"), "a@example.test", g.now())
            .unwrap()
            .failed(g.now());
    }
    assert!(g.begin(ip("192.0.2.1"), "a@example.test", g.now()).is_err());
    clock.advance(Duration::from_secs(60));
    assert!(g.begin(ip("192.0.2.1"), "a@example.test", g.now()).is_ok());
}
