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


def test_per_account_overrides_from_the_cli(make_server):
    # No [pop3] retention; alice's override deletes what she retrieved after 2 s, bob keeps
    # everything (no override), carol's override "none" beats a default.
    s = make_server(trusted=("127.0.0.1/32",))
    s.cli("domain", "add", "example.test")
    for u in ("alice", "bob"):
        s.add_user(f"{u}@example.test")
    out = s.cli("user", "retention", "alice@example.test", "--delete-retrieved-after", "2s").stdout
    assert out == "alice@example.test: delete_retrieved_after=2s delete_after=never\n", out
    assert s.cli("user", "retention", "bob@example.test").stdout == \
        "bob@example.test: delete_retrieved_after=never delete_after=never\n"
    assert s.cli("user", "retention", "nobody@example.test", check=False).returncode != 0
    s.start()
    deliver(s, "alice@example.test", 2)
    deliver(s, "bob@example.test", 1)
    for u in ("alice", "bob"):
        p = login(s, f"{u}@example.test")
        p.retr(1)
        p.quit()
    s.wait_log("pop3: retention: mailbox=", timeout=20)
    deadline = time.time() + 20
    while time.time() < deadline and len(s.messages("alice@example.test")) != 1:
        time.sleep(0.2)
    assert len(s.messages("alice@example.test")) == 1
    swept = [l for l in s.log_text().splitlines() if "pop3: retention: mailbox=" in l]
    assert any("/alice/Maildir" in l for l in swept) and not any("/bob/Maildir" in l for l in swept), swept
    assert len(s.messages("bob@example.test")) == 1
    # Back to the default: nothing more is deleted.
    s.cli("user", "retention", "alice@example.test", "--delete-retrieved-after", "default")
    assert s.cli("user", "retention", "alice@example.test").stdout.endswith("delete_retrieved_after=never delete_after=never\n")
    s.stop()
