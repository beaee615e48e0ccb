use super::*;
use store::clock::FakeClock;

struct Everyone;

impl Policy for Everyone {
    fn check_rcpt(&self, address: &str, _sender: &str, _relay: bool) -> RcptVerdict {
        if address.starts_with("nobody@") {
            RcptVerdict::UnknownUser
        } else {
            RcptVerdict::Accept(address.to_string())
        }
    }
    fn may_send_as(&self, _user: &str, _address: &str) -> bool {
        true
    }
}

fn filters(greylist: Option<Arc<Greylist>>, clock: Arc<FakeClock>) -> Filters {
    Filters {
        lists: None,
        greylist,
        limits: Limits::new(2, 3),
        mailbox_full: None,
        rspamd: None,
        clock,
    }
}

fn screened<'a>(
    f: &'a Filters,
    check: &'a ClientCheck,
    ip: &str,
    trusted: bool,
    user: Option<&'a str>,
) -> Screened<'a> {
    Screened {
        inner: &Everyone,
        filters: f,
        service: if user.is_some() {
            Service::Submission
        } else {
            Service::Mx
        },
        ip: ip.parse().unwrap(),
        trusted,
        user,
        check,
    }
}

fn refused_code(v: RcptVerdict) -> Option<u16> {
    match v {
        RcptVerdict::Refused(r) => Some(r.code),
        _ => None,
    }
}

#[tokio::test]
async fn a_blocklisted_client_is_refused_with_the_zone_but_unknown_users_stay_550() {
    let f = filters(None, Arc::new(FakeClock::new(1000)));
    let check = ClientCheck::Known(Listing::Blocked("bl.test".into()));
    let s = screened(&f, &check, "192.0.2.5", false, None);
    match s.check_rcpt("a@example.test", "x@remote.example", false) {
        RcptVerdict::Refused(r) => assert_eq!(
            r.to_wire(),
            "554 5.7.1 Service unavailable; Client host [192.0.2.5] blocked using bl.test\r\n"
        ),
        v => panic!("{v:?}"),
    }
    assert_eq!(
        s.check_rcpt("nobody@example.test", "x@remote.example", false),
        RcptVerdict::UnknownUser
    );
    // Pipelined past the lookup: try later, never accepted unchecked.
    let pending = ClientCheck::Pending(tokio::spawn(std::future::pending()));
    let s = screened(&f, &pending, "192.0.2.5", false, None);
    assert_eq!(
        refused_code(s.check_rcpt("a@example.test", "x@r", false)),
        Some(451)
    );
}

#[test]
fn greylisting_spares_allowlisted_trusted_and_authenticated_clients() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(FakeClock::new(1000));
    let g = Arc::new(Greylist::open(dir.path(), store::greylist::Timing::with_delay(60)).unwrap());
    let f = filters(Some(g), clock.clone());
    let clean = ClientCheck::Known(Listing::Clean);
    let s = screened(&f, &clean, "192.0.2.5", false, None);
    assert_eq!(
        refused_code(s.check_rcpt("a@example.test", "x@r.example", false)),
        Some(451)
    );
    // Another address of the same /24 is the same triplet.
    let s2 = screened(&f, &clean, "192.0.2.77", false, None);
    assert_eq!(
        refused_code(s2.check_rcpt("a@example.test", "x@r.example", false)),
        Some(451)
    );
    clock.advance(std::time::Duration::from_secs(61));
    assert!(matches!(
        s2.check_rcpt("a@example.test", "x@r.example", false),
        RcptVerdict::Accept(_)
    ));
    let allowed = ClientCheck::Known(Listing::Allowed("wl.test".into()));
    let s = screened(&f, &allowed, "198.51.100.1", false, None);
    assert!(matches!(
        s.check_rcpt("a@example.test", "y@r.example", false),
        RcptVerdict::Accept(_)
    ));
    let none = ClientCheck::NotAsked;
    let s = screened(&f, &none, "198.51.100.1", true, None);
    assert!(matches!(
        s.check_rcpt("a@example.test", "y@r.example", true),
        RcptVerdict::Accept(_)
    ));
    let s = screened(&f, &none, "198.51.100.1", false, Some("u@example.test"));
    assert!(matches!(
        s.check_rcpt("a@example.test", "y@r.example", true),
        RcptVerdict::Accept(_)
    ));
}

#[test]
fn sending_limits_count_per_account_and_per_trusted_address() {
    let clock = Arc::new(FakeClock::new(1000));
    let f = filters(None, clock.clone());
    let none = ClientCheck::NotAsked;
    let alice = screened(&f, &none, "192.0.2.5", false, Some("Alice@example.test"));
    assert!(alice
        .check_mail("alice@example.test", Some("Alice@example.test"))
        .is_none());
    assert!(alice
        .check_mail("alice@example.test", Some("Alice@example.test"))
        .is_none());
    let third = alice
        .check_mail("alice@example.test", Some("Alice@example.test"))
        .unwrap();
    assert_eq!(third.code, 451);
    assert!(third.lines[0].starts_with("4.7.1 "), "{third:?}");
    // Another account, and an untrusted client on port 25, are not affected.
    let bob = screened(&f, &none, "192.0.2.5", false, Some("bob@example.test"));
    assert!(bob
        .check_mail("bob@example.test", Some("bob@example.test"))
        .is_none());
    let stranger = screened(&f, &none, "192.0.2.5", false, None);
    for _ in 0..5 {
        assert!(stranger.check_mail("x@r.example", None).is_none());
    }
    // Recipients per day (3) from a trusted address.
    let app = screened(&f, &none, "127.0.0.1", true, None);
    for _ in 0..3 {
        assert!(matches!(
            app.check_rcpt("a@example.test", "", true),
            RcptVerdict::Accept(_)
        ));
    }
    assert_eq!(
        refused_code(app.check_rcpt("a@example.test", "", true)),
        Some(451)
    );
    // An hour later alice may send again.
    clock.advance(std::time::Duration::from_secs(3600));
    assert!(alice
        .check_mail("alice@example.test", Some("Alice@example.test"))
        .is_none());
}

#[test]
fn an_account_override_replaces_the_default() {
    let clock = Arc::new(FakeClock::new(1000));
    let mut f = filters(None, clock);
    f.limits.overrides = Some(Box::new(|a: &str| {
        (a == "big@example.test").then_some((Some(5), None))
    }));
    let none = ClientCheck::NotAsked;
    let big = screened(&f, &none, "192.0.2.5", false, Some("big@example.test"));
    for _ in 0..5 {
        assert!(big
            .check_mail("big@example.test", Some("big@example.test"))
            .is_none());
    }
    assert!(big
        .check_mail("big@example.test", Some("big@example.test"))
        .is_some());
}

#[test]
fn a_full_mailbox_is_452_for_everyone() {
    let mut f = filters(None, Arc::new(FakeClock::new(1000)));
    f.mailbox_full = Some(Box::new(|a: &str| a == "full@example.test"));
    let none = ClientCheck::NotAsked;
    for (trusted, user) in [(false, None), (true, None), (false, Some("u@example.test"))] {
        let s = screened(&f, &none, "192.0.2.5", trusted, user);
        match s.check_rcpt(
            "full@example.test",
            "x@r.example",
            trusted || user.is_some(),
        ) {
            RcptVerdict::Refused(r) => assert_eq!(
                r.to_wire(),
                "452 4.2.2 <full@example.test>: Recipient address rejected: Mailbox full\r\n"
            ),
            v => panic!("{v:?}"),
        }
        assert!(matches!(
            s.check_rcpt("a@example.test", "x@r.example", true),
            RcptVerdict::Accept(_)
        ));
    }
}
