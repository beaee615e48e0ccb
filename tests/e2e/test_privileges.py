"""Least privilege: started as root, the server binds its ports and then runs as the
configured unprivileged user, who owns data_dir; admin commands run as root keep it so."""

import os
import pwd
import smtplib
import time

import pytest

from conftest import HOST


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root")
def test_runs_as_service_user(make_server):
    s = make_server()
    # The service user must be able to reach data_dir.
    for parent in [s.tmp, *s.tmp.parents]:
        if str(parent) in ("/", "/tmp"):
            break
        os.chmod(parent, os.stat(parent).st_mode | 0o755)
    s.config.write_text(s.config.read_text().replace('user = ""', 'user = "mailroom"'))
    s.cli("domain", "add", "example.test")
    s.add_user("alice@example.test")
    s.start()
    user = pwd.getpwnam("mailroom")
    # The port is bound (and connectable) just before privileges are dropped.
    deadline = time.time() + 10
    while "running as user mailroom" not in s.log_text() and time.time() < deadline:
        time.sleep(0.05)
    status = open(f"/proc/{s.proc.pid}/status").read()
    uid_line = next(l for l in status.splitlines() if l.startswith("Uid:"))
    assert uid_line.split()[1:] == [str(user.pw_uid)] * 4, uid_line
    with smtplib.SMTP(HOST, s.smtp_port) as c:
        c.sendmail("s@remote.test", ["alice@example.test"], b"Subject: priv\r\n\r\nx\r\n")
    [f] = s.wait_messages("alice@example.test", 1)
    # Everything under data_dir belongs to the service user, including what the CLI created.
    s.add_user("bob@example.test")
    for root, dirs, files in os.walk(s.data):
        for name in dirs + files:
            st = os.lstat(os.path.join(root, name))
            assert st.st_uid == user.pw_uid, os.path.join(root, name)
    assert s.stop() == 0
