"""Mailbox quotas (issue 13 item 6): a mailbox at its quota gets `452 4.2.2` at RCPT; the
Maildir++ `maildirsize` file the MDA keeps (one line per copy) agrees with the byte sums of
the files, in the format Dovecot and Courier read; POP3 DELE frees room at once (a negative
line) and the next message is accepted; `user list` shows usage and quota."""

import poplib
import re
import smtplib
import ssl

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
