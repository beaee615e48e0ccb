"""One broken mailbox never delays the others (direct delivery): a message to alice and bob
while bob's Maildir cannot be written gets 250, alice's copy at once, bob's recipient waits in
the queue (shown in `queue list`) and is delivered exactly once when his Maildir is fixed."""

import shutil
import smtplib
import time

from conftest import HOST


def test_broken_mailbox_defers_only_its_own_copy(server):
    s = server
    bob = s.maildir("bob@example.test")
    # Root ignores permissions, so break it for real: tmp/ is a file, not a directory.
    bob.mkdir(parents=True, exist_ok=True)
    (bob / "tmp").write_text("not a directory")
    with smtplib.SMTP(HOST, s.smtp_port, timeout=30) as c:
        refused = c.sendmail("someone@outside.test", ["alice@example.test", "bob@example.test"],
                             b"Subject: to both\r\n\r\nhello both\r\n")
    assert refused == {}
    # alice has hers at once (direct delivery, before the 250).
    assert len(s.messages("alice@example.test")) == 1
    # bob's waits in the queue, deferred with the reason.
    deadline = time.time() + 20
    listing = ""
    while time.time() < deadline:
        listing = s.cli("queue", "list").stdout
        if "to=<bob@example.test>  pending" in listing and "local delivery failed" in listing:
            break
        time.sleep(0.1)
    assert "to=<bob@example.test>  pending" in listing, listing
    assert "to=<alice@example.test>  done" in listing, listing
    # Fixed: the next retry (flush) delivers bob's copy, and alice gets no second one.
    (bob / "tmp").unlink()
    shutil.rmtree(bob / "new", ignore_errors=True)
    s.cli("queue", "flush")
    [got] = s.wait_messages("bob@example.test", 1)
    assert got.endswith(b"hello both\r\n")
    s.wait_queue_empty()
    assert len(s.messages("alice@example.test")) == 1
    assert len(s.messages("bob@example.test")) == 1
