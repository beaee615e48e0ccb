"""A full disk: SMTP says 452 4.3.1, POP3 keeps serving and deleting, nothing acknowledged is
lost, and the server recovers by itself when space returns. data_dir lives on a small tmpfs."""

import os
import poplib
import smtplib
import subprocess
import time

import pytest

from conftest import HOST


@pytest.fixture
def small_fs(tmp_path):
    mnt = tmp_path / "small"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)], capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr!r}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)])


@pytest.mark.parametrize("direct_local", [True, False], ids=["direct", "spool"])
def test_disk_full(make_server, small_fs, direct_local):
    # direct_local = false: every message goes through the spool first (452 4.3.1 from the
    # spool write, delivery from the queue).
    extra = f'[delivery]\ndirect_local = {str(direct_local).lower()}\n[relay]\nretry_schedule = ["1s"]\n'
    s = make_server(trusted=("127.0.0.0/8",), extra=extra)
    # Put data_dir on the small file system.
    s.data = small_fs / "data"
    text = s.config.read_text().replace(str(s.tmp / "data"), str(s.data))
    s.config.write_text(text)
    s.cli("domain", "add", "example.test")
    s.add_user("alice@example.test", "pw")
    s.start()
    body = b"Subject: filler\r\n\r\n" + (b"x" * 76 + b"\r\n") * 1300  # ~100 KiB
    acked = 0
    refused = None
    with smtplib.SMTP(HOST, s.smtp_port, timeout=30) as c:
        c.ehlo("client.test")
        for i in range(100):
            c.mail("s@remote.test")
            c.rcpt("alice@example.test")
            code, resp = c.data(body.replace(b"filler", f"filler {i}".encode()))
            if code == 250:
                acked += 1
                continue
            refused = (code, resp)
            break
    assert refused is not None, "the 3 MiB file system never filled up"
    assert refused[0] == 452 and refused[1].startswith(b"4.3.1"), refused
    assert acked > 5
    # Everything acknowledged ends up in the Maildir (some may wait in the queue for space;
    # delivery removes the queue copy after writing the Maildir one, so the two fit).
    deadline = time.time() + 30
    while time.time() < deadline and len(s.messages("alice@example.test")) + len(s.queue_files()) < acked:
        time.sleep(0.2)
    assert len(s.messages("alice@example.test")) + len(s.queue_files()) >= acked
    # POP3 still works on a full disk: list, retrieve and delete.
    p = poplib.POP3(HOST, s.pop3_port, timeout=10)
    p.user("alice@example.test")
    p.pass_("pw")
    count, _ = p.stat()
    assert count >= 1
    for i in range(1, count + 1):
        p.dele(i)
    p.quit()
    # Space is back: mail flows again without a restart, and the queue drains.
    deadline = time.time() + 30
    while True:
        with smtplib.SMTP(HOST, s.smtp_port, timeout=30) as c:
            c.ehlo("client.test")
            c.mail("s@remote.test")
            c.rcpt("alice@example.test")
            code, resp = c.data(b"Subject: after\r\n\r\nspace is back\r\n")
        if code == 250 or time.time() > deadline:
            break
        time.sleep(0.5)
    assert code == 250, resp
    s.wait_queue_empty(timeout=30)
    got = s.messages("alice@example.test")
    # The acknowledged messages not yet delivered when POP3 deleted are delivered now.
    total_seen = count + len(got)
    assert total_seen >= acked + 1, (count, len(got), acked)
    assert any(m.endswith(b"space is back\r\n") for m in got)
    # The variant took the path it names.
    assert ("status=sent direct=true" in s.log_text()) == direct_local
    assert s.stop() == 0
