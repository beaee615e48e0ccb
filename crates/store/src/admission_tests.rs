use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn limits(max: usize, per_ip: usize, per_net: usize, stress_at: usize) -> AdmissionLimits {
    AdmissionLimits {
        max_connections: max,
        max_per_ip: per_ip,
        max_per_net: per_net,
        stress_at,
    }
}

fn admit(a: &mut Admission<u32>, from: &str, trusted: bool, token: u32) -> Admitted<u32> {
    a.admit(ip(from), trusted, token).0.expect("admitted")
}

#[test]
fn stress_threshold_is_a_share_of_the_slots() {
    assert_eq!(AdmissionLimits::new(10_000, 50, 200, 75).stress_at, 7_500);
    assert_eq!(AdmissionLimits::new(3, 50, 200, 75).stress_at, 3);
    assert_eq!(AdmissionLimits::new(10, 50, 200, 0).stress_at, 1);
    assert_eq!(AdmissionLimits::new(10, 50, 200, 200).stress_at, 10);
    assert_eq!(AdmissionLimits::new(10_000, 50, 200, 75).calm_at(), 3_750);
}

#[test]
fn networks_are_ipv4_slash_24_and_ipv6_slash_64() {
    assert_eq!(net_key(ip("192.0.2.77")), ip("192.0.2.0"));
    assert_eq!(net_key(ip("::ffff:192.0.2.77")), ip("192.0.2.0"));
    assert_eq!(net_key(ip("2001:db8:1:2:3:4:5:6")), ip("2001:db8:1:2::"));
    assert_ne!(net_key(ip("192.0.3.1")), net_key(ip("192.0.2.1")));
}

#[test]
fn per_address_limit_refuses_and_frees_on_release() {
    let mut a = Admission::new(limits(100, 2, 100, 100));
    let first = admit(&mut a, "192.0.2.1", false, 1);
    admit(&mut a, "192.0.2.1", false, 2);
    assert_eq!(a.admit(ip("192.0.2.1"), false, 3).0, Err(Refusal::PerIp));
    // The same address written as IPv4-mapped IPv6 is the same client.
    assert_eq!(
        a.admit(ip("::ffff:192.0.2.1"), false, 3).0,
        Err(Refusal::PerIp)
    );
    admit(&mut a, "192.0.2.2", false, 4);
    a.release(first.id);
    assert_eq!(a.open_from(ip("192.0.2.1")), 1);
    admit(&mut a, "192.0.2.1", false, 5);
}

#[test]
fn per_network_limit_counts_a_slash_24_and_a_slash_64() {
    let mut a = Admission::new(limits(100, 10, 3, 100));
    for (n, host) in ["192.0.2.1", "192.0.2.2", "192.0.2.3"].iter().enumerate() {
        admit(&mut a, host, false, n as u32);
    }
    assert_eq!(a.admit(ip("192.0.2.200"), false, 9).0, Err(Refusal::PerNet));
    admit(&mut a, "192.0.3.1", false, 10);
    for n in 0..3 {
        admit(&mut a, &format!("2001:db8::{n}"), false, 20 + n);
    }
    assert_eq!(
        a.admit(ip("2001:db8::ffff:1"), false, 30).0,
        Err(Refusal::PerNet)
    );
    admit(&mut a, "2001:db8:0:1::1", false, 31);
}

#[test]
fn trusted_clients_skip_the_address_and_network_limits() {
    let mut a = Admission::new(limits(100, 1, 1, 100));
    admit(&mut a, "127.0.0.1", true, 1);
    admit(&mut a, "127.0.0.1", true, 2);
    admit(&mut a, "127.0.0.1", true, 3);
    assert_eq!(a.open_from(ip("127.0.0.1")), 3);
    // An untrusted neighbour still counts against the network those sessions share.
    assert_eq!(a.admit(ip("127.0.0.2"), false, 4).0, Err(Refusal::PerNet));
}

#[test]
fn full_slots_evict_the_oldest_unprotected_session() {
    let mut a = Admission::new(limits(3, 10, 10, 100));
    let s1 = admit(&mut a, "192.0.2.1", false, 1);
    let s2 = admit(&mut a, "192.0.3.1", false, 2);
    admit(&mut a, "192.0.4.1", false, 3);
    // The oldest sent MAIL: the next oldest goes.
    a.protect(s1.id);
    let s4 = admit(&mut a, "198.51.100.1", false, 4);
    assert_eq!(s4.evicted, Some(2));
    assert_eq!(a.open(), 3);
    // The evicted session's counts are gone at once; its own release later changes nothing.
    assert_eq!(a.open_from(ip("192.0.3.1")), 0);
    assert_eq!(a.release(s2.id), None);
    assert_eq!(a.open(), 3);
    let s5 = admit(&mut a, "198.51.100.2", false, 5);
    assert_eq!(s5.evicted, Some(3));
}

#[test]
fn trusted_and_protected_sessions_are_never_evicted() {
    let mut a = Admission::new(limits(2, 10, 10, 100));
    admit(&mut a, "127.0.0.1", true, 1);
    let s2 = admit(&mut a, "192.0.2.1", false, 2);
    a.protect(s2.id);
    assert_eq!(a.admit(ip("192.0.2.9"), false, 3).0, Err(Refusal::Full));
    assert_eq!(a.admit(ip("127.0.0.1"), true, 4).0, Err(Refusal::Full));
    assert_eq!(a.open(), 2);
}

#[test]
fn a_trusted_newcomer_may_evict_a_flood_session() {
    let mut a = Admission::new(limits(2, 10, 10, 100));
    admit(&mut a, "192.0.2.1", false, 1);
    admit(&mut a, "192.0.2.2", false, 2);
    let t = admit(&mut a, "127.0.0.1", true, 3);
    assert_eq!(t.evicted, Some(1));
    assert!(a.is_trusted(t.id));
}

#[test]
fn stress_is_entered_at_the_threshold_and_left_at_half_of_it() {
    let mut a = Admission::new(limits(10, 10, 10, 4));
    let mut ids = Vec::new();
    for n in 0..3 {
        let (r, change) = a.admit(ip("192.0.2.1"), false, n);
        assert_eq!(change, None);
        ids.push(r.unwrap().id);
    }
    assert!(!a.stressed());
    let (r, change) = a.admit(ip("192.0.2.1"), false, 3);
    ids.push(r.unwrap().id);
    assert_eq!(change, Some(StressChange::Entered));
    assert!(a.stressed());
    // Back under the threshold, but not yet down to half of it: still stressed.
    assert_eq!(a.release(ids.pop().unwrap()), None);
    assert!(a.stressed());
    assert_eq!(a.release(ids.pop().unwrap()), Some(StressChange::Left));
    assert!(!a.stressed());
    assert_eq!(a.release(ids.pop().unwrap()), None);
}

#[test]
fn refused_newcomers_change_nothing() {
    let mut a = Admission::new(limits(1, 10, 10, 1));
    let s = admit(&mut a, "127.0.0.1", true, 1);
    assert!(a.stressed());
    assert_eq!(
        a.admit(ip("192.0.2.1"), false, 2),
        (Err(Refusal::Full), None)
    );
    assert_eq!(a.open(), 1);
    assert_eq!(a.open_from(ip("192.0.2.1")), 0);
    assert_eq!(a.release(s.id), Some(StressChange::Left));
}
