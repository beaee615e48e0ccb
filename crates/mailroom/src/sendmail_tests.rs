use super::*;

fn args(a: &[&str]) -> Vec<OsString> {
    a.iter().map(OsString::from).collect()
}

fn deliver(a: &[&str]) -> (Request, bool) {
    match parse_args(&args(a)) {
        Ok(Mode::Deliver { request, dot_ends }) => (request, dot_ends),
        other => panic!("{a:?}: {other:?}"),
    }
}

#[test]
fn what_cron_php_mailx_and_git_pass_is_understood() {
    // Debian cron: sendmail -FCronDaemon -i -B8BITMIME -oem root
    let (r, dot) = deliver(&["-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root"]);
    assert_eq!(r.full_name.as_deref(), Some("CronDaemon"));
    assert_eq!(r.recipients, vec!["root"]);
    assert!(!dot);
    // PHP mail(): sendmail -t -i (sendmail_path), maybe with -f from the 5th argument.
    let (r, _) = deliver(&["-t", "-i", "-f", "www@site.test"]);
    assert!(r.from_headers);
    assert_eq!(r.sender.as_deref(), Some("www@site.test"));
    assert!(r.recipients.is_empty());
    // bsd-mailx: sendmail -i -- a@x b@x ; git send-email: -i a@x, b@x
    let (r, _) = deliver(&["-i", "--", "a@x.test", "-b@x.test"]);
    assert_eq!(r.recipients, vec!["a@x.test", "-b@x.test"]);
    let (r, _) = deliver(&["-i", "a@x.test,", "b@x.test"]);
    assert_eq!(r.recipients, vec!["a@x.test", "b@x.test"]);
    let (r, dot) = deliver(&["-ti", "-fme@x.test", "-oi", "-F", "Me Myself", "z@x.test"]);
    assert!(r.from_headers && !dot);
    assert_eq!(r.sender.as_deref(), Some("me@x.test"));
    assert_eq!(r.full_name.as_deref(), Some("Me Myself"));
    let (_, dot) = deliver(&["a@x.test"]);
    assert!(dot, "without -i a lone dot ends the message");
}

#[test]
fn modes_and_refusals() {
    assert_eq!(parse_args(&args(&["-bp"])).unwrap(), Mode::ListQueue);
    assert_eq!(parse_args(&args(&["-q"])).unwrap(), Mode::Flush);
    assert_eq!(parse_args(&args(&["-q1h"])).unwrap(), Mode::Flush);
    assert_eq!(parse_args(&args(&["-bi"])).unwrap(), Mode::NewAliases);
    for bad in [&["-bs"][..], &["-Z"], &["-f"], &["-bd"]] {
        let e = parse_args(&args(bad)).unwrap_err();
        assert_eq!(e.code, 2, "{bad:?}");
    }
}

#[test]
fn the_message_ends_at_a_lone_dot_only_without_dash_i() {
    let input = b"Subject: x\n\nline\n.\nafter\n";
    assert_eq!(
        read_message(&input[..], true, 100).unwrap(),
        b"Subject: x\n\nline\n"
    );
    assert_eq!(read_message(&input[..], false, 100).unwrap(), &input[..]);
    assert_eq!(
        read_message(&b"a\n..\n"[..], true, 100).unwrap(),
        b"a\n..\n"
    );
    assert_eq!(read_message(&input[..], false, 10).unwrap_err().code, 1);
}

#[test]
fn unqualified_addresses_get_the_domain_we_host() {
    let d = vec!["example.test".to_string()];
    assert_eq!(local_domain(&d, "mx.example.test"), "example.test");
    assert_eq!(local_domain(&d, "example.test"), "example.test");
    assert_eq!(local_domain(&d, "host.other.test"), "host.other.test");
    assert_eq!(local_domain(&[], "mx.example.test"), "mx.example.test");
}
