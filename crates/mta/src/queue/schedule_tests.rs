//! Unit tests of the scheduler with a fake clock: fair share, saturation, the local lane, dead
//! destinations (cohorts, back-off, recovery) and slow start.

use std::time::{Duration, Instant};

use super::*;

fn remote(name: &str) -> Dest {
    Dest::Remote(name.to_string())
}

fn config() -> SchedConfig {
    SchedConfig {
        remote_slots: 100,
        local_slots: 2,
        per_destination_limit: 4,
        initial_concurrency: 4,
        failed_cohort_limit: 1,
        dead_backoff: Duration::from_secs(300),
        max_dead_backoff: Duration::from_secs(1000),
    }
}

fn fill(s: &mut Scheduler<u32>, dest: &Dest, n: u32, now: Instant) {
    for i in 0..n {
        s.push(dest.clone(), i, now).unwrap();
    }
}

/// Takes everything `next` gives now.
fn drain(s: &mut Scheduler<u32>, now: Instant) -> Vec<(Dest, u32)> {
    std::iter::from_fn(|| s.next(now)).collect()
}

fn timeout() -> Feedback {
    Feedback::TimedOut("mx.tarpit.test [192.0.2.1]:25: timed out waiting for reply".into())
}

#[test]
fn a_huge_queue_does_not_starve_a_single_message() {
    let now = Instant::now();
    let mut s = Scheduler::new(SchedConfig {
        remote_slots: 1,
        ..config()
    });
    let (big, small) = (remote("big.test"), remote("small.test"));
    fill(&mut s, &big, 100_000, now);
    s.push(small.clone(), 7, now).unwrap();
    assert_eq!(s.next(now), Some((big.clone(), 0)));
    assert_eq!(s.next(now), None, "the only remote slot is taken");
    s.finished(&big, Feedback::Connected, now);
    assert_eq!(s.next(now), Some((small.clone(), 7)));
    s.finished(&small, Feedback::Connected, now);
    assert_eq!(s.next(now), Some((big.clone(), 1)));
}

#[test]
fn destinations_take_turns() {
    let now = Instant::now();
    let mut s = Scheduler::new(config());
    let (a, b, c) = (remote("a.test"), remote("b.test"), remote("c.test"));
    fill(&mut s, &a, 10, now);
    fill(&mut s, &b, 10, now);
    fill(&mut s, &c, 1, now);
    let order: Vec<Dest> = drain(&mut s, now).into_iter().map(|(d, _)| d).collect();
    assert_eq!(
        order,
        [&a, &b, &c, &a, &b, &a, &b, &a, &b].map(Clone::clone),
        "round robin, each up to its window of 4"
    );
}

#[test]
fn a_saturated_destination_holds_no_slot() {
    // The measured failure: 150 messages for a tarpit held all 100 slots. Here the tarpit gets
    // its window (4) and the rest of its mail waits without a slot.
    let now = Instant::now();
    let mut s = Scheduler::new(config());
    let (tarpit, healthy) = (remote("tarpit.test"), remote("healthy.test"));
    fill(&mut s, &tarpit, 150, now);
    let started = drain(&mut s, now);
    assert_eq!(started.len(), 4);
    assert_eq!(s.in_flight(&tarpit), 4);
    assert_eq!(s.queued(&tarpit), 146);
    s.push(healthy.clone(), 1, now).unwrap();
    assert_eq!(s.next(now), Some((healthy.clone(), 1)));
    assert_eq!(s.next(now), None);
    // One tarpit attempt ends: exactly one more goes out.
    s.finished(&tarpit, Feedback::Connected, now);
    assert_eq!(drain(&mut s, now).len(), 1);
    assert_eq!(s.in_flight(&tarpit), 4);
}

#[test]
fn the_global_slot_limit_holds() {
    let now = Instant::now();
    let mut s = Scheduler::new(SchedConfig {
        remote_slots: 6,
        ..config()
    });
    for d in ["a", "b", "c"] {
        fill(&mut s, &remote(d), 10, now);
    }
    assert_eq!(drain(&mut s, now).len(), 6);
    s.finished(&remote("a"), Feedback::Connected, now);
    assert_eq!(drain(&mut s, now).len(), 1);
}

#[test]
fn local_delivery_never_waits_behind_remote_mail() {
    let now = Instant::now();
    let mut s = Scheduler::new(SchedConfig {
        remote_slots: 1,
        ..config()
    });
    let tarpit = remote("tarpit.test");
    fill(&mut s, &tarpit, 50, now);
    assert_eq!(s.next(now), Some((tarpit.clone(), 0)));
    fill(&mut s, &Dest::Local, 3, now);
    // Local first, up to its own slots (2), whatever remote mail waits.
    assert_eq!(s.next(now), Some((Dest::Local, 0)));
    assert_eq!(s.next(now), Some((Dest::Local, 1)));
    assert_eq!(s.next(now), None);
    s.finished(&Dest::Local, Feedback::Neutral, now);
    assert_eq!(s.next(now), Some((Dest::Local, 2)));
    assert_eq!(s.in_flight(&Dest::Local), 2);
    assert_eq!(s.in_flight(&tarpit), 1);
}

#[test]
fn local_delivery_is_never_dead() {
    let now = Instant::now();
    let mut s = Scheduler::new(config());
    for i in 0..10 {
        s.push(Dest::Local, i, now).unwrap();
        assert_eq!(s.next(now), Some((Dest::Local, i)));
        assert!(!s.finished(&Dest::Local, Feedback::Failed("disk".into()), now));
    }
    assert_eq!(s.dead_until(&Dest::Local), None);
}

#[test]
fn a_cohort_of_timeouts_makes_a_destination_dead() {
    let t0 = Instant::now();
    let mut s = Scheduler::new(config());
    let tarpit = remote("tarpit.test");
    fill(&mut s, &tarpit, 150, t0);
    assert_eq!(drain(&mut s, t0).len(), 4);
    let t1 = t0 + Duration::from_secs(30);
    // Window 4: 1/4 cohort, window 2: +1/2, window 1: +1 -> dead at the third.
    assert!(!s.finished(&tarpit, timeout(), t1));
    assert_eq!(s.window(&tarpit), Some(2));
    assert!(!s.finished(&tarpit, timeout(), t1));
    assert!(s.finished(&tarpit, timeout(), t1));
    let (until, error) = s.dead_until(&tarpit).unwrap();
    assert_eq!(until, t1 + Duration::from_secs(300));
    assert!(error.contains("timed out"), "{error}");
    // The last attempt in flight ends too: no new death, the back-off is not extended.
    assert!(!s.finished(&tarpit, Feedback::Failed("refused".into()), t1));
    assert_eq!(s.dead_until(&tarpit).unwrap().0, until);
    assert_eq!(s.dead_until(&tarpit).unwrap().1, "refused");

    // Its queued mail comes back with the reason; nothing goes out.
    assert_eq!(s.next(t1), None);
    let deferred = s.defer_all_dead(t1);
    assert_eq!(deferred.len(), 146);
    assert!(deferred
        .iter()
        .all(|d| d.dest == tarpit && d.until == until));
    assert!(deferred[0]
        .reply(t1)
        .starts_with("4.4.1 destination tarpit.test is dead for 300s more"));
    // New mail is refused at once, other destinations go on.
    let refused = s.push(tarpit.clone(), 999, t1).unwrap_err();
    assert_eq!(refused.item, 999);
    s.push(remote("healthy.test"), 1, t1).unwrap();
    assert_eq!(s.next(t1), Some((remote("healthy.test"), 1)));
    assert_eq!(s.dead().len(), 1);
    assert_eq!(s.next_revival(), Some(until));
}

#[test]
fn a_dead_destination_comes_back_with_one_probe_then_grows() {
    let t0 = Instant::now();
    let mut s = Scheduler::new(SchedConfig {
        initial_concurrency: 1,
        ..config()
    });
    let d = remote("flaky.test");
    fill(&mut s, &d, 20, t0);
    assert_eq!(drain(&mut s, t0).len(), 1);
    assert!(s.finished(&d, Feedback::Failed("connection refused".into()), t0));
    let held = s.defer_all_dead(t0).len();
    assert_eq!(held, 19);

    // Just before the back-off ends: still dead.
    let before = t0 + Duration::from_secs(299);
    assert!(s.push(d.clone(), 100, before).is_err());
    // At its end: alive again, one probe at a time.
    let after = t0 + Duration::from_secs(300);
    for i in 0..10 {
        s.push(d.clone(), i, after).unwrap();
    }
    assert_eq!(s.dead_until(&d), None);
    assert_eq!(drain(&mut s, after).len(), 1);
    s.finished(&d, Feedback::Connected, after);
    assert_eq!(drain(&mut s, after).len(), 2, "window 2 after a success");
    s.finished(&d, Feedback::Connected, after);
    s.finished(&d, Feedback::Connected, after);
    assert_eq!(s.window(&d), Some(4));
    assert_eq!(drain(&mut s, after).len(), 4);
    for _ in 0..4 {
        s.finished(&d, Feedback::Connected, after);
    }
    assert_eq!(s.window(&d), Some(4), "never past per_destination_limit");
}

#[test]
fn the_back_off_doubles_per_consecutive_death_and_is_capped() {
    let mut now = Instant::now();
    let mut s = Scheduler::new(SchedConfig {
        initial_concurrency: 1,
        ..config()
    });
    let d = remote("down.test");
    let mut seen = Vec::new();
    for _ in 0..4 {
        s.push(d.clone(), 0, now).unwrap();
        assert_eq!(drain(&mut s, now).len(), 1);
        assert!(s.finished(&d, Feedback::Failed("refused".into()), now));
        let until = s.dead_until(&d).unwrap().0;
        seen.push((until - now).as_secs());
        now = until;
    }
    assert_eq!(seen, [300, 600, 1000, 1000]);
    // A success forgets the deaths: the next one starts at the minimum again.
    s.push(d.clone(), 0, now).unwrap();
    assert_eq!(drain(&mut s, now).len(), 1);
    s.finished(&d, Feedback::Connected, now);
    assert_eq!(
        s.window(&d),
        None,
        "healthy and idle: forgotten, deaths too"
    );
    s.push(d.clone(), 0, now).unwrap();
    assert_eq!(drain(&mut s, now).len(), 1);
    assert!(s.finished(&d, Feedback::Failed("refused".into()), now));
    assert_eq!(s.dead_until(&d).unwrap().0 - now, Duration::from_secs(300));
}

#[test]
fn a_success_between_failures_keeps_a_destination_alive() {
    let now = Instant::now();
    let mut s = Scheduler::new(SchedConfig {
        initial_concurrency: 2,
        per_destination_limit: 2,
        ..config()
    });
    let d = remote("mostly.test");
    fill(&mut s, &d, 100, now);
    for _ in 0..20 {
        assert_eq!(drain(&mut s, now).len(), 2);
        assert!(!s.finished(&d, Feedback::Failed("reset".into()), now));
        assert!(!s.finished(&d, Feedback::Connected, now));
    }
    assert_eq!(s.dead_until(&d), None);
}

#[test]
fn more_cohorts_allow_more_failures() {
    let now = Instant::now();
    let mut s = Scheduler::new(SchedConfig {
        failed_cohort_limit: 3,
        initial_concurrency: 1,
        ..config()
    });
    let d = remote("d.test");
    fill(&mut s, &d, 10, now);
    for expect_dead in [false, false, true] {
        assert_eq!(drain(&mut s, now).len(), 1);
        assert_eq!(s.finished(&d, timeout(), now), expect_dead);
    }
}

#[test]
fn a_late_success_revives_a_dead_destination() {
    let now = Instant::now();
    let mut s = Scheduler::new(config());
    let d = remote("d.test");
    fill(&mut s, &d, 10, now);
    assert_eq!(drain(&mut s, now).len(), 4);
    for _ in 0..3 {
        s.finished(&d, timeout(), now);
    }
    assert!(s.dead_until(&d).is_some());
    // The fourth attempt started before the death and got through: the destination lives.
    assert!(!s.finished(&d, Feedback::Connected, now));
    assert_eq!(s.dead_until(&d), None);
    assert_eq!(
        drain(&mut s, now).len(),
        2,
        "window 1, plus one for the success"
    );
}

#[test]
fn slow_start_grows_by_one_and_halves_on_failure() {
    let now = Instant::now();
    let mut s = Scheduler::new(SchedConfig {
        initial_concurrency: 2,
        per_destination_limit: 8,
        failed_cohort_limit: 10,
        ..config()
    });
    let d = remote("d.test");
    fill(&mut s, &d, 1000, now);
    assert_eq!(drain(&mut s, now).len(), 2);
    for window in 3..=8 {
        s.finished(&d, Feedback::Connected, now);
        assert_eq!(s.window(&d), Some(window));
        assert_eq!(drain(&mut s, now).len(), 2, "the freed slot and one more");
    }
    assert_eq!(s.in_flight(&d), 8);
    s.finished(&d, Feedback::Connected, now);
    assert_eq!(s.window(&d), Some(8));
    assert_eq!(drain(&mut s, now).len(), 1);
    s.finished(&d, timeout(), now);
    assert_eq!(s.window(&d), Some(4));
    assert_eq!(drain(&mut s, now).len(), 0, "7 in flight, window 4");
    s.finished(&d, timeout(), now);
    assert_eq!(s.window(&d), Some(2));
    s.finished(&d, timeout(), now);
    s.finished(&d, timeout(), now);
    assert_eq!(s.window(&d), Some(1));
}

#[test]
fn neutral_results_change_nothing() {
    let now = Instant::now();
    let mut s = Scheduler::new(SchedConfig {
        initial_concurrency: 2,
        ..config()
    });
    let d = remote("nodns.test");
    fill(&mut s, &d, 10, now);
    for _ in 0..5 {
        assert_eq!(drain(&mut s, now).len(), 2);
        assert!(!s.finished(&d, Feedback::Neutral, now));
        assert!(!s.finished(&d, Feedback::Neutral, now));
    }
    assert_eq!(s.window(&d), None, "idle and healthy: forgotten");
}

#[test]
fn idle_healthy_destinations_are_forgotten() {
    let now = Instant::now();
    let mut s = Scheduler::new(config());
    for i in 0..1000u32 {
        let d = remote(&format!("d{i}.test"));
        s.push(d.clone(), i, now).unwrap();
        assert_eq!(s.next(now), Some((d.clone(), i)));
        s.finished(&d, Feedback::Connected, now);
    }
    assert!(s.sites.is_empty());
    assert!(s.ring.is_empty());
    assert!(s.is_idle());
}

#[test]
fn a_destination_forgotten_while_dead_gets_one_turn_per_round() {
    let now = Instant::now();
    let mut s = Scheduler::new(SchedConfig {
        initial_concurrency: 8,
        per_destination_limit: 8,
        ..config()
    });
    let (d, other) = (remote("d.test"), remote("other.test"));
    fill(&mut s, &d, 10, now);
    // Five of a window of eight: d keeps its turn in the ring when it dies.
    for _ in 0..5 {
        assert_eq!(s.next(now).unwrap().0, d);
    }
    // 1/8 + 1/4 + 1/2 + 1 cohorts.
    let died: Vec<bool> = (0..4).map(|_| s.finished(&d, timeout(), now)).collect();
    assert_eq!(died, [false, false, false, true]);
    assert_eq!(s.defer_all_dead(now).len(), 5);
    // The late success revives it; it is then idle and forgotten.
    s.finished(&d, Feedback::Connected, now);
    assert!(!s.sites.contains_key(&d));
    fill(&mut s, &d, 10, now);
    fill(&mut s, &other, 10, now);
    let order: Vec<Dest> = (0..4).map(|_| s.next(now).unwrap().0).collect();
    assert_eq!(order, [&d, &other, &d, &other].map(Clone::clone));
}
