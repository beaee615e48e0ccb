"""Mailbox quotas (issue 13 item 6): a mailbox at its quota gets `452 4.2.2` at RCPT; the
Maildir++ `maildirsize` file the MDA keeps (one line per copy) agrees with the byte sums of
the files, in the format Dovecot and Courier read; POP3 DELE frees room at once (a negative
line) and the next message is accepted; `user list` shows usage and quota.

Copies that reach the queue for a full mailbox (an alias whose other target has room, a
mailbox that filled up between RCPT and DATA): deferred with `4.2.2 Mailbox full` in `queue
list`, delivered after a DELE and `queue flush`, bounced to the sender with a `5.2.2` DSN at
the end of the queue lifetime. An alias whose every mailbox is full is `452` at RCPT."""

import email
import email.policy
import poplib
import re
import smtplib
import ssl
import time

from conftest import HOST

RCPT = "alice@example.test"


def maildirsize(s):
    text = (s.maildir(RCPT) / "maildirsize").read_text()
    lines = text.splitlines()
    # Maildir++: the quota definition, then "<bytes> <count>" lines.
    assert re.fullmatch(r"\d+S", lines[0]), text
    pairs = [tuple(int(x) for x in line.split()) for line in lines[1:]]
    assert all(len(p) == 2 for p in pairs), text
    return int(lines[0][:-1]), sum(p[0] for p in pairs), sum(p[1] for p in pairs)


def du(s):
    files = s.message_files(RCPT)
    return sum(f.stat().st_size for f in files), len(files)


def test_a_full_mailbox_is_452_and_pop3_dele_frees_room(make_server):
    s = make_server()
    s.cli("domain", "add", "example.test")
    s.add_user(RCPT)
    s.cli("user", "add", "bob@example.test", "--password-stdin", "--allow-weak", "--quota", "1M",
          input="secret\n")
    s.cli("user", "quota", RCPT, "3K")
    s.start()
    try:
        body = "x" * 998 + "\r\n"
        accepted = 0
        c = smtplib.SMTP(HOST, s.smtp_port, timeout=30, source_address=("127.0.0.1", 0))
        c.ehlo("client.test")
        for i in range(10):
            c.mail("someone@remote.test")
            code, text = c.rcpt(RCPT)
            if code != 250:
                c.rset()
                break
            c.data(f"Subject: m{i}\r\n\r\n{body}".encode())
            accepted += 1
            s.wait_messages(RCPT, accepted)
        assert (code, text) == (452, b"4.2.2 <alice@example.test>: Recipient address rejected: Mailbox full"), (code, text)
        # Filled up to the quota, not beyond one message past it.
        assert 3072 <= du(s)[0] < 3072 + 1200 and accepted == 3, (du(s), accepted)
        quota, used, count = maildirsize(s)
        assert (quota, used, count) == (3072, *du(s))
        # Another account (quota 1M) still receives.
        c.mail("someone@remote.test")
        assert c.rcpt("bob@example.test")[0] == 250
        c.rset()
        listed = s.cli("user", "list").stdout
        assert f"alice@example.test usage={used} quota=3072\n" in listed, listed
        assert "bob@example.test usage=0 quota=1048576\n" in listed, listed
        # POP3 DELE of one message frees room at once.
        p = poplib.POP3(HOST, s.pop3_port, timeout=30)
        p.stls(ssl._create_unverified_context())
        p.user(RCPT)
        p.pass_("secret")
        p.dele(1)
        p.quit()
        quota, used, count = maildirsize(s)
        assert (used, count) == du(s) and count == 2, (used, count, du(s))
        assert "\n-" in (s.maildir(RCPT) / "maildirsize").read_text()
        c.mail("someone@remote.test")
        assert c.rcpt(RCPT)[0] == 250
        c.data(f"Subject: after dele\r\n\r\n{body}".encode())
        c.quit()
        s.wait_messages(RCPT, 3)
        assert maildirsize(s)[1:] == du(s)
        # No quota: no limit.
        s.cli("user", "quota", RCPT, "none")
        assert s.cli("user", "quota", RCPT).stdout.startswith(f"{RCPT}: usage=")
    finally:
        s.stop()


def fill(s, address, size):
    """One message of about `size` octets for `address` (under its quota: accepted)."""
    c = smtplib.SMTP(HOST, s.smtp_port, timeout=30)
    c.ehlo("client.test")
    before = len(s.message_files(address))
    c.sendmail("someone@remote.test", [address], b"Subject: filler\r\n\r\n" + b"f" * size + b"\r\n")
    c.quit()
    s.wait_messages(address, before + 1)


def queue_listing(s):
    return s.cli("queue", "list").stdout


def wait_listing(s, text, timeout=20.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        listing = queue_listing(s)
        if text in listing:
            return listing
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not in the queue listing:\n{queue_listing(s)}\n{s.log_text()[-3000:]}")


def test_an_alias_copy_for_a_full_mailbox_waits_in_the_queue_until_dele_frees_room(make_server):
    # Retries an hour apart: only `queue flush` brings the copy in during the test.
    s = make_server(extra='[relay]\nretry_schedule = ["1h"]\n')
    s.cli("domain", "add", "example.test")
    s.add_user(RCPT)
    s.add_user("bob@example.test")
    s.cli("alias", "add", "team@example.test", RCPT, "bob@example.test")
    s.cli("alias", "add", "only-alice@example.test", RCPT)
    s.cli("user", "quota", RCPT, "2K")
    s.start()
    try:
        fill(s, RCPT, 2100)
        c = smtplib.SMTP(HOST, s.smtp_port, timeout=30)
        c.ehlo("client.test")
        c.mail("someone@remote.test")
        # Every mailbox of this alias is full: the sender keeps it and retries.
        assert c.rcpt("only-alice@example.test") == (
            452, b"4.2.2 <only-alice@example.test>: Recipient address rejected: Mailbox full")
        # Bob has room: accepted, alice's copy goes to the queue.
        assert c.rcpt("team@example.test")[0] == 250
        message = b"From: someone@remote.test\r\nSubject: for the team\r\n\r\nexact bytes \xc3\xa9\r\n"
        assert c.data(message)[0] == 250
        c.quit()
        bob = s.wait_messages("bob@example.test", 1)
        assert bob[0].endswith(message)
        listing = wait_listing(s, "last: 4.2.2 Mailbox full")
        assert "to=<team@example.test>  pending  attempts=1  last: 4.2.2 Mailbox full  next: in 60m" in listing, listing
        assert len(s.message_files(RCPT)) == 1
        s.wait_log('reply="4.2.2 Mailbox full"')
        # DELE of the filler frees the room; `queue flush` delivers the waiting copy.
        p = poplib.POP3(HOST, s.pop3_port, timeout=30)
        p.stls(ssl._create_unverified_context())
        p.user(RCPT)
        p.pass_("secret")
        p.dele(1)
        p.quit()
        s.cli("queue", "flush")
        deadline = time.time() + 20
        while time.time() < deadline and not any(m.endswith(message) for m in s.messages(RCPT)):
            time.sleep(0.05)
        got = s.messages(RCPT)
        assert len(got) == 1 and got[0] == bob[0], got
        s.wait_queue_empty()
        assert len(s.messages("bob@example.test")) == 1
        assert maildirsize(s)[1:] == du(s)
    finally:
        s.stop()


def test_a_copy_still_over_quota_when_the_queue_gives_up_bounces_to_the_sender_with_5_2_2(make_server):
    s = make_server(extra='[relay]\nretry_schedule = ["1s"]\nmax_queue_lifetime = "3s"\n')
    s.cli("domain", "add", "example.test")
    s.add_user(RCPT)
    s.add_user("carol@example.test")
    s.cli("user", "quota", RCPT, "1K")
    s.start()
    try:
        # Two sessions pass RCPT while alice's mailbox is empty; the first message fills it,
        # so the second one's copy finds it full at delivery.
        first = smtplib.SMTP(HOST, s.smtp_port, timeout=30)
        second = smtplib.SMTP(HOST, s.smtp_port, timeout=30)
        for c in (first, second):
            c.ehlo("client.test")
            assert c.mail("carol@example.test")[0] == 250
            assert c.rcpt(RCPT)[0] == 250
        assert first.data(b"Subject: big\r\n\r\n" + b"b" * 1500 + b"\r\n")[0] == 250
        s.wait_messages(RCPT, 1)
        assert second.data(b"Subject: too late\r\nMessage-ID: <late@example.test>\r\n\r\nlate\r\n")[0] == 250
        for c in (first, second):
            c.quit()
        wait_listing(s, "last: 4.2.2 Mailbox full")
        dsn = s.wait_messages("carol@example.test", 1, timeout=30)[0]
        report = email.message_from_bytes(dsn, policy=email.policy.default)
        assert report.get_content_type() == "multipart/report", dsn
        assert report.get_param("report-type") == "delivery-status", dsn
        status = next(p for p in report.walk() if p.get_content_type() == "message/delivery-status")
        text = status.as_bytes().decode(errors="replace")
        assert "Final-Recipient: rfc822; alice@example.test" in text, text
        assert "Action: failed" in text and "Status: 5.2.2" in text, text
        assert "Mailbox full" in text, text
        assert b"Message-ID: <late@example.test>" in dsn
        s.wait_queue_empty()
        assert len(s.message_files(RCPT)) == 1
    finally:
        s.stop()
