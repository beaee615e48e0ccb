"""POP3 retention (issue 13): with `[pop3] delete_retrieved_after`, messages a "leave on
server" client retrieved are deleted that long after retrieval; unretrieved ones stay; a
mailbox a POP3 session holds is skipped and swept once it is free."""

import poplib
import smtplib
import time

from conftest import HOST


def deliver(s, rcpt, n):
    with smtplib.SMTP(HOST, s.smtp_port, timeout=30) as c:
        for i in range(n):
            c.sendmail("x@remote.test", [rcpt], f"Subject: m{i}\r\n\r\nbody {i}\r\n".encode())
    s.wait_messages(rcpt, n)


def login(s, user):
    p = poplib.POP3(HOST, s.pop3_port, timeout=30)
    p.user(user)
    p.pass_("secret")
    return p


def test_retrieved_messages_are_deleted_after_the_period(make_server):
    s = make_server(trusted=("127.0.0.1/32",))
    # Into the [pop3] section make_server wrote.
    s.config.write_text(s.config.read_text().replace(
        "[pop3]\n", "[pop3]\ndelete_retrieved_after = \"2s\"\n"))
    s.cli("domain", "add", "example.test")
    s.add_user("alice@example.test")
    s.add_user("bob@example.test")
    s.start()
    deliver(s, "alice@example.test", 3)
    deliver(s, "bob@example.test", 1)

    # alice's client retrieves message 1 and leaves it on the server.
    p = login(s, "alice@example.test")
    keep_uidls = [line.decode().split()[1] for line in p.uidl()[1]]
    first = keep_uidls[0]
    p.retr(1)
    p.quit()
    # bob retrieves his message, then a second session holds his mailbox.
    p = login(s, "bob@example.test")
    p.retr(1)
    p.quit()
    held = login(s, "bob@example.test")

    s.wait_log("pop3: retention: mailbox=", timeout=20)
    deadline = time.time() + 20
    while time.time() < deadline and len(s.messages("alice@example.test")) != 2:
        time.sleep(0.2)
    p = login(s, "alice@example.test")
    left = [line.decode().split()[1] for line in p.uidl()[1]]
    p.quit()
    assert left == keep_uidls[1:], (left, keep_uidls)
    assert first not in left
    # bob's mailbox is held: skipped, his retrieved message still there...
    s.wait_log("skipped=in-use")
    assert len(s.messages("bob@example.test")) == 1
    held.quit()
    # ...and swept once free.
    deadline = time.time() + 20
    while time.time() < deadline and s.messages("bob@example.test"):
        time.sleep(0.2)
    assert s.messages("bob@example.test") == []
    s.stop()
