"""Relay to other domains through the queue: MX lookup against a real DNS server (dnsmasq),
delivery to a real Postfix, retries, DSNs and relay-abuse refusals."""

import email
import re
import email.policy
import smtplib
import socket
import ssl
import time

import pytest

from conftest import HOST, has
from remote_mta import DNSMASQ, POSTFIX, Dns, Postfix

pytestmark = pytest.mark.skipif(not (has(DNSMASQ) and has(POSTFIX)), reason="dnsmasq and postfix needed")

PF_IP = "127.0.0.20"
DOWN_IP = "127.0.0.21"


@pytest.fixture
def world(tmp_path, make_server, request):
    """dnsmasq + Postfix for remote.test (and friends) + a Mailroom that relays for 127.0.0.1.
    A test can add `[relay]` keys with @pytest.mark.relay_extra("...")."""
    marker = request.node.get_closest_marker("relay_extra")
    relay_extra = marker.args[0] if marker else ""
    pf = Postfix(tmp_path, ip=PF_IP, domains=("remote.test", "pref.test", "implicit.test"))
    dns = Dns(
        tmp_path,
        mx=[
            ("remote.test", "mx1.remote.test", 10),
            ("pref.test", "down.pref.test", 5),
            ("pref.test", "mx1.remote.test", 10),
        ],
        a=[("mx1.remote.test", PF_IP), ("down.pref.test", DOWN_IP), ("implicit.test", PF_IP)],
        raw=["nullmx.test,15,000000"],
    )
    extra = (
        "[relay]\n"
        f'dns_servers = ["{dns.server}"]\n'
        f"remote_port = {pf.port}\n"
        'retry_schedule = ["1s"]\n'
        f"{relay_extra}"
    )
    s = make_server(trusted=("127.0.0.1/32",), extra=extra)
    s.cli("domain", "add", "example.test")
    s.add_user("alice@example.test", "alice-pw")
    s.start()
    yield s, pf, dns
    s.stop()
    pf.stop()
    dns.stop()


def tls_ctx():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def test_submitted_and_trusted_mail_reach_postfix_by_mx(world):
    s, pf, _ = world
    with smtplib.SMTP(HOST, s.submission_port, timeout=30) as c:
        c.starttls(context=tls_ctx())
        c.login("alice@example.test", "alice-pw")
        c.sendmail("alice@example.test", ["bob@remote.test"],
                   b"From: alice@example.test\r\nSubject: submitted\r\n\r\nvia 587\r\n")
    with smtplib.SMTP(HOST, s.smtp_port, timeout=30) as c:
        c.sendmail("alice@example.test", ["carol@remote.test"],
                   b"From: alice@example.test\r\nSubject: trusted\r\n\r\nfrom a trusted network\r\n..dot line\r\n")
    [bob] = pf.wait_messages("bob", 1)
    [carol] = pf.wait_messages("carol", 1)
    assert b"Subject: submitted" in bob and b"via 587" in bob
    assert b"by mx.example.test (Mailroom)" in bob
    # The line arrives as sent: dot-stuffing is undone at every hop (Postfix stores LF ends).
    assert b"\n..dot line\n" in carol
    s.wait_queue_empty()
    assert "relay=mx1.remote.test" in s.log_text() or PF_IP in s.log_text()


def test_mx_preference_first_down_second_gets_it(world):
    s, pf, _ = world
    with smtplib.SMTP(HOST, s.smtp_port, timeout=30) as c:
        c.sendmail("alice@example.test", ["dave@pref.test"], b"Subject: pref\r\n\r\nx\r\n")
    [got] = pf.wait_messages("dave", 1)
    assert b"Subject: pref" in got
    s.wait_queue_empty()


def test_implicit_mx_from_a_record(world):
    s, pf, _ = world
    with smtplib.SMTP(HOST, s.smtp_port, timeout=30) as c:
        c.sendmail("alice@example.test", ["erin@implicit.test"], b"Subject: implicit\r\n\r\nx\r\n")
    # implicit.test has no MX, only an A record: that host is the implicit MX (RFC 5321 §5.1).
    [got] = pf.wait_messages("erin", 1)
    assert b"Subject: implicit" in got
    s.wait_queue_empty()


def test_remote_4xx_retried_then_delivered_and_queue_list_shows_it(world):
    s, pf, _ = world
    pf.set_access("/^later@/ 450 4.2.0 try later\n")
    with smtplib.SMTP(HOST, s.smtp_port, timeout=30) as c:
        c.sendmail("alice@example.test", ["later@remote.test"], b"Subject: deferred\r\n\r\nx\r\n")
    deadline = time.time() + 20
    out = ""
    while time.time() < deadline:
        out = s.cli("queue", "list").stdout
        if "attempts=2" in out or "attempts=3" in out:
            break
        time.sleep(0.3)
    assert "to=<later@remote.test>  pending" in out, out
    assert "450 4.2.0" in out and "try later" in out, out
    # Restart: our relay keeps its connection to Postfix open for reuse, and a Postfix smtpd
    # keeps its old tables for the life of a connection.
    pf.set_access("", restart=True)
    [got] = pf.wait_messages("later", 1, timeout=30)
    assert b"Subject: deferred" in got
    s.wait_queue_empty()
    assert "1 message(s)" not in s.cli("queue", "list").stdout


def parse_dsn(raw: bytes):
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "message/delivery-status", "text/rfc822-headers"]
    return msg, parts


def test_remote_5xx_bounces_to_local_sender(world):
    s, pf, _ = world
    pf.set_access("/^nobody@/ 550 5.1.1 no such user here\n")
    with smtplib.SMTP(HOST, s.smtp_port, timeout=30) as c:
        c.sendmail("alice@example.test", ["nobody@remote.test"], b"Subject: will bounce\r\nX-Mark: 42\r\n\r\nx\r\n")
    [raw] = s.wait_messages("alice@example.test", 1)
    assert raw.startswith(b"Return-Path: <>\r\n")
    msg, parts = parse_dsn(raw)
    assert msg["To"] == "alice@example.test" or "alice@example.test" in msg["To"]
    assert "MAILER-DAEMON@mx.example.test" in msg["From"]
    status = parts[1].as_string()
    assert "Reporting-MTA: dns; mx.example.test" in status
    assert "Final-Recipient: rfc822; nobody@remote.test" in status
    assert "Action: failed" in status
    assert "Status: 5.1.1" in status
    assert "Diagnostic-Code: smtp; 550 5.1.1" in status and "no such user here" in status
    assert "Remote-MTA: dns; " in status
    assert "X-Mark: 42" in parts[2].as_string() and "Subject: will bounce" in parts[2].as_string()
    s.wait_queue_empty()
    assert pf.maildir_messages("nobody") == []


def test_null_mx_bounces_at_once(world):
    s, _, _ = world
    with smtplib.SMTP(HOST, s.smtp_port, timeout=30) as c:
        c.sendmail("alice@example.test", ["x@nullmx.test"], b"Subject: null mx\r\n\r\nx\r\n")
    [raw] = s.wait_messages("alice@example.test", 1, timeout=15)
    _, parts = parse_dsn(raw)
    status = parts[1].as_string()
    assert "Final-Recipient: rfc822; x@nullmx.test" in status and "Status: 5.1.10" in status, status


def test_no_bounce_for_null_sender(world):
    s, pf, _ = world
    pf.set_access("/^nobody@/ 550 5.1.1 no such user here\n")
    with smtplib.SMTP(HOST, s.smtp_port, timeout=30) as c:
        c.sendmail("<>", ["nobody@remote.test"], b"Subject: bounce of a bounce?\r\n\r\nx\r\n")
    # The runner says it sends no DSN, then removes the message: after that nothing can come.
    s.wait_log("no DSN: null sender")
    s.wait_queue_empty()
    assert s.messages("alice@example.test") == []


def test_queue_survives_restart(world):
    s, pf, _ = world
    pf.set_access("/^carol@/ 450 4.2.0 not yet\n")
    with smtplib.SMTP(HOST, s.smtp_port, timeout=30) as c:
        c.sendmail("alice@example.test", ["carol@remote.test"], b"Subject: restart\r\n\r\nx\r\n")
    deadline = time.time() + 15
    while "attempts=1" not in s.cli("queue", "list").stdout and time.time() < deadline:
        time.sleep(0.2)
    assert s.stop() == 0
    assert len(s.queue_files()) == 1
    pf.set_access("", restart=True)
    s.start()
    pf.wait_messages("carol", 1)
    s.wait_queue_empty()


def test_queue_cli_show_flush_bounce_remove(world):
    s, pf, _ = world
    pf.set_access("/^later@/ 450 4.2.0 try later\n")
    with smtplib.SMTP(HOST, s.smtp_port, timeout=30) as c:
        c.sendmail("alice@example.test", ["later@remote.test"], b"Subject: cli one\r\n\r\nx\r\n")
        c.sendmail("alice@example.test", ["later@remote.test"], b"Subject: cli two\r\n\r\nx\r\n")
    deadline = time.time() + 10
    while len(s.queue_files()) < 2 and time.time() < deadline:
        time.sleep(0.1)
    ids = sorted(p.name for p in s.queue_files())
    assert len(ids) == 2
    show = s.cli("queue", "show", ids[0]).stdout
    assert "sender: <alice@example.test>" in show and "recipient: <later@remote.test>" in show
    assert "Subject: cli one" in show
    assert s.cli("queue", "flush").returncode == 0
    assert s.cli("queue", "flush", ids[0]).returncode == 0
    r = s.cli("queue", "show", "NOSUCHID0000000", check=False)
    assert r.returncode == 1 and "no such message" in r.stderr
    s.cli("queue", "bounce", ids[0])
    [dsn] = s.wait_messages("alice@example.test", 1, timeout=15)
    assert b"bounced by the administrator" in dsn
    s.cli("queue", "remove", ids[1])
    s.wait_queue_empty()
    assert pf.maildir_messages("later") == []


def raw_rcpt_replies(port, rcpts, source):
    """One session from `source`, MAIL then each RCPT; returns the RCPT reply codes."""
    with socket.create_connection((HOST, port), timeout=10, source_address=(source, 0)) as c:
        f = c.makefile("rb")
        f.readline()
        c.sendall(b"EHLO client.test\r\n")
        while not f.readline().startswith(b"250 "):
            pass
        c.sendall(b"MAIL FROM:<someone@outside.test>\r\n")
        f.readline()
        codes = []
        for r in rcpts:
            c.sendall(f"RCPT TO:<{r}>\r\n".encode())
            line = f.readline()
            codes.append((r, line.decode().strip()))
        c.sendall(b"QUIT\r\n")
        return codes


def test_untrusted_client_cannot_relay_by_any_trick(world):
    """Each trick gets the reply README ("How a recipient is resolved") promises, exactly."""
    s, pf, _ = world
    unknown, denied, syntax = "550 5.1.1 ", "554 5.7.1 ", "501 5.1.3 "
    tricks = [
        ("bob@remote.test", denied),
        ("bob%remote.test@example.test", unknown),
        ("@example.test:bob@remote.test", denied),
        ("remote.test!bob@example.test", unknown),
        ('"bob@remote.test"@example.test', unknown),
        ('"bob%remote.test"@example.test', unknown),
        ("bob@remote.test@example.test", syntax),
        ("bob@[127.0.0.20]", syntax),
        ("bob@remote.test.", syntax),
    ]
    replies = raw_rcpt_replies(s.smtp_port, [t for t, _ in tricks], "127.0.0.5")
    for (rcpt, reply), (_, want) in zip(replies, tricks):
        assert reply.startswith(want), (rcpt, reply, want)
        if want == denied:
            assert reply.endswith("Relay access denied"), (rcpt, reply)
    # The null sender grants nothing either.
    with socket.create_connection((HOST, s.smtp_port), timeout=10, source_address=("127.0.0.5", 0)) as c:
        f = c.makefile("rb")
        f.readline()
        c.sendall(b"EHLO x\r\nMAIL FROM:<>\r\nRCPT TO:<bob@remote.test>\r\nRCPT TO:<alice@example.test>\r\n")
        finals = []
        while len(finals) < 4:
            line = f.readline()
            if line[3:4] == b" ":
                finals.append(line[:3])
        assert finals == [b"250", b"250", b"554", b"250"], finals
    time.sleep(1)
    assert pf.maildir_messages("bob") == []
    assert s.queue_files() == []


@pytest.mark.skipif(not has("saslpasswd2"), reason="sasl2-bin needed")
def test_smarthost_with_auth(tmp_path, make_server):
    pf = Postfix(tmp_path, ip="127.0.0.22", domains=("remote.test",), sasl_user=("relayuser", "relay-pw"))
    pwfile = tmp_path / "smarthost.pw"
    pwfile.write_text("relay-pw\n")
    extra = (
        "[relay]\n"
        f'smarthost = "127.0.0.22:{pf.port}"\n'
        'smarthost_username = "relayuser@remote.test"\n'
        f'smarthost_password_file = "{pwfile}"\n'
        # smarthost_tls = "verify" (the default): Postfix's certificate is trusted through
        # ca_file and names 127.0.0.22.
        f'ca_file = "{pf.conf / "ca.pem"}"\n'
        'dns_servers = ["127.0.0.1:9"]\n'
        'retry_schedule = ["1s"]\n'
    )
    s = make_server(trusted=("127.0.0.1/32",), extra=extra)
    s.cli("domain", "add", "example.test")
    s.add_user("alice@example.test", "alice-pw")
    s.start()
    try:
        with smtplib.SMTP(HOST, s.smtp_port, timeout=30) as c:
            c.sendmail("alice@example.test", ["bob@remote.test"], b"Subject: via smarthost\r\n\r\nx\r\n")
        [got] = pf.wait_messages("bob", 1)
        assert b"Subject: via smarthost" in got
        log = pf.log()
        assert "sasl_method=PLAIN" in log and "sasl_username=relayuser@remote.test" in log, log[-2000:]
    finally:
        s.stop()
        pf.stop()


@pytest.mark.skipif(not has("saslpasswd2"), reason="sasl2-bin needed")
def test_smarthost_with_an_untrusted_certificate_gets_no_password(tmp_path, make_server):
    """Issue 12: with smarthost_tls = "verify" (the default), a smarthost whose certificate
    does not verify is not sent the password, nor the mail: it stays queued with the reason."""
    pf = Postfix(tmp_path, ip="127.0.0.23", domains=("remote.test",), sasl_user=("relayuser", "relay-pw"))
    pwfile = tmp_path / "smarthost.pw"
    pwfile.write_text("relay-pw\n")
    extra = (
        "[relay]\n"
        f'smarthost = "127.0.0.23:{pf.port}"\n'
        'smarthost_username = "relayuser@remote.test"\n'
        f'smarthost_password_file = "{pwfile}"\n'
        'dns_servers = ["127.0.0.1:9"]\n'
        'retry_schedule = ["1h"]\n'
    )
    s = make_server(trusted=("127.0.0.1/32",), extra=extra)
    s.cli("domain", "add", "example.test")
    s.start()
    try:
        with smtplib.SMTP(HOST, s.smtp_port, timeout=30) as c:
            c.sendmail("alice@example.test", ["bob@remote.test"], b"Subject: x\r\n\r\nx\r\n")
        s.wait_log("deferred")
        out = s.cli("queue", "list").stdout
        assert "pending" in out and "invalid peer certificate" in out, out
        time.sleep(1)
        assert "sasl_username" not in pf.log()
        assert pf.maildir_messages("bob") == []
    finally:
        s.stop()
        pf.stop()



@pytest.mark.relay_extra('delay_warning_after = "2s"\nmax_queue_lifetime = "6s"\n')
def test_delayed_warning_once_then_expiry_bounce(world):
    s, pf, _ = world
    pf.set_access("/^later@/ 450 4.2.0 try later\n")
    with smtplib.SMTP(HOST, s.smtp_port, timeout=30) as c:
        c.sendmail("alice@example.test", ["later@remote.test"], b"Subject: slow one\r\n\r\nx\r\n")
    # First a single "delayed" report, then after the lifetime a "failed" one.
    reports = s.wait_messages("alice@example.test", 2, timeout=30)
    # Once the queue is empty no further report can come (a DSN is queued before its
    # message leaves the queue, and both DSNs are delivered).
    s.wait_queue_empty(timeout=20)
    reports = s.messages("alice@example.test")
    actions = []
    for raw in reports:
        msg, parts = parse_dsn(raw)
        status = parts[1].as_string()
        assert "Final-Recipient: rfc822; later@remote.test" in status
        actions.append("delayed" if "Action: delayed" in status else "failed" if "Action: failed" in status else "?")
        if "Action: delayed" in status:
            assert "Will-Retry-Until:" in status
            assert "Delayed Mail" in msg["Subject"]
        else:
            assert "Status: 4.4.7" in status and "450 4.2.0" in status
    assert sorted(actions) == ["delayed", "failed"], actions
    assert pf.maildir_messages("later") == []


def test_alias_forwarding_to_remote(world):
    s, pf, _ = world
    s.cli("alias", "add", "fwd@example.test", "alice@example.test", "bob@remote.test")
    with smtplib.SMTP(HOST, s.smtp_port, timeout=30) as c:
        c.sendmail("someone@outside.test", ["fwd@example.test"], b"Subject: forwarded\r\n\r\nx\r\n")
    [local] = s.wait_messages("alice@example.test", 1)
    [remote] = pf.wait_messages("bob", 1)
    assert b"Subject: forwarded" in local and b"Subject: forwarded" in remote
    # Forwarded with an SRS envelope sender in the alias's domain (issue 18; test_srs.py).
    assert re.match(rb"Return-Path: <SRS0=[a-z2-7]{8}=[a-z2-7]{2}=outside\.test=someone@example\.test>", remote), remote[:200]
    s.wait_queue_empty()


def test_forwarding_never_bounces_to_an_unverified_sender(world):
    """Security review 4 (backscatter): an untrusted client names a victim as sender and sends
    to an alias whose remote target refuses with 550. No DSN may reach the victim; the next
    such message is refused at RCPT; a verified sender still gets its bounce."""
    s, pf, _ = world
    pf.set_access("/^nobody/ 550 5.1.1 no such user here\n")
    s.cli("alias", "add", "spam@example.test", "nobody@remote.test")
    s.cli("alias", "add", "ok@example.test", "nobody2@remote.test")
    with smtplib.SMTP(HOST, s.smtp_port, timeout=30, source_address=("127.0.0.5", 0)) as c:
        c.sendmail("alice@example.test", ["spam@example.test"], b"Subject: buy now\r\n\r\nspam\r\n")
    s.wait_log("no DSN for 1 failed recipient(s): forwarded mail from an unverified sender")
    s.wait_queue_empty()
    # The target is now known bad: the same trick is refused before DATA.
    with smtplib.SMTP(HOST, s.smtp_port, timeout=30, source_address=("127.0.0.5", 0)) as c:
        c.ehlo()
        c.mail("alice@example.test")
        code, text = c.rcpt("spam@example.test")
        assert (code, text[:5]) == (550, b"5.1.1"), (code, text)
    # A verified (trusted-network) sender forwarding to a bad target is told.
    with smtplib.SMTP(HOST, s.smtp_port, timeout=30) as c:
        c.sendmail("alice@example.test", ["ok@example.test"], b"Subject: legit\r\n\r\nx\r\n")
    [raw] = s.wait_messages("alice@example.test", 1)
    _, parts = parse_dsn(raw)
    assert "Final-Recipient: rfc822; nobody2@remote.test" in parts[1].as_string()
    assert b"buy now" not in raw
    s.wait_queue_empty()
    assert [m for m in s.messages("alice@example.test") if b"buy now" in m] == []


def test_queue_show_and_list_escape_terminal_controls(world):
    """Security review 11: a Subject with an escape sequence must not reach the admin's
    terminal through `queue show` or `queue list`."""
    s, pf, _ = world
    pf.set_access("/^later@/ 450 4.2.0 try \x1b[31mlater\n")
    with smtplib.SMTP(HOST, s.smtp_port, timeout=30) as c:
        c.sendmail("alice@example.test", ["later@remote.test"],
                   b"Subject: \x1b]0;owned\x07\x1b[2J hello\r\n\r\nbody\r\n")
    deadline = time.time() + 10
    while not s.queue_files() and time.time() < deadline:
        time.sleep(0.1)
    [qid] = [p.name for p in s.queue_files()]
    show = s.cli("queue", "show", qid).stdout
    assert "\x1b" not in show and "\x07" not in show, repr(show)
    assert "Subject: \\x1b]0;owned\\x07\\x1b[2J hello" in show, show
    deadline = time.time() + 15
    listing = ""
    while "attempts=1" not in listing and time.time() < deadline:
        listing = s.cli("queue", "list").stdout
        time.sleep(0.2)
    assert "attempts=1" in listing and "\x1b" not in listing, repr(listing)
    s.cli("queue", "remove", qid)


def test_8bit_body_to_server_without_8bitmime_bounces_5_6_3(tmp_path, make_server):
    """RFC 6152 §3: an 8-bit body is never sent to a server that did not offer 8BITMIME. Mailroom
    does not convert it: the sender gets a DSN with 5.6.3 and the remote mailbox stays empty,
    while a 7-bit message over the same route is delivered."""
    pf = Postfix(tmp_path, ip="127.0.0.23", domains=("remote.test",),
                 main_extra="smtpd_discard_ehlo_keywords = 8bitmime\n")
    dns = Dns(tmp_path, mx=[("remote.test", "mx1.remote.test", 10)], a=[("mx1.remote.test", "127.0.0.23")])
    extra = f'[relay]\ndns_servers = ["{dns.server}"]\nremote_port = {pf.port}\nretry_schedule = ["1s"]\n'
    s = make_server(trusted=("127.0.0.1/32",), extra=extra)
    s.cli("domain", "add", "example.test")
    s.add_user("alice@example.test", "alice-pw")
    s.start()
    try:
        with smtplib.SMTP(HOST, s.smtp_port, timeout=30) as c:
            c.sendmail("alice@example.test", ["carol@remote.test"],
                       b"Subject: seven bit\r\n\r\nplain ascii\r\n")
            c.sendmail("alice@example.test", ["bob@remote.test"],
                       b"Subject: eight bit\r\nMIME-Version: 1.0\r\n"
                       b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"
                       b"\r\ncaf\xc3\xa9\r\n", mail_options=["BODY=8BITMIME"])
        [carol] = pf.wait_messages("carol", 1)
        assert b"plain ascii" in carol
        [raw] = s.wait_messages("alice@example.test", 1)
        _, parts = parse_dsn(raw)
        status = parts[1].as_string()
        assert "Final-Recipient: rfc822; bob@remote.test" in status, status
        assert "Action: failed" in status and "Status: 5.6.3" in status, status
        s.wait_queue_empty()
        assert pf.maildir_messages("bob") == []
        assert "bob@remote.test" not in pf.log()
    finally:
        s.stop()
        pf.stop()
        dns.stop()
