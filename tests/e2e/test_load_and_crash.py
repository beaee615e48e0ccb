"""Volume and crash safety: Postfix's smtp-source sends 1,000 messages over 20 sessions, and a
server killed with SIGKILL in the middle of a load loses nothing it acknowledged."""

import re
import smtplib
import subprocess
import threading
import time
from collections import Counter

import pytest

from conftest import HOST, has

SMTP_SOURCE = "/usr/sbin/smtp-source"
QID = re.compile(rb"\(Mailroom\) with E?SMTP id ([0-9A-Z]+)")


@pytest.mark.skipif(not has(SMTP_SOURCE), reason="postfix (smtp-source) not installed")
def test_smtp_source_1000_messages_20_sessions(server):
    r = subprocess.run(
        [SMTP_SOURCE, "-s", "20", "-m", "1000", "-l", "2048", "-M", "client.test",
         "-f", "sender@remote.test", "-t", "alice@example.test", f"{HOST}:{server.smtp_port}"],
        capture_output=True, text=True, timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    server.wait_messages("alice@example.test", 1000, timeout=120)
    server.wait_queue_empty(timeout=60)
    files = server.messages("alice@example.test")
    assert len(files) == 1000
    ids = Counter(QID.search(f).group(1) for f in files)
    assert len(ids) == 1000, [i for i, n in ids.items() if n > 1][:5]
    log = server.log_text()
    assert log.count(": accepted from=<sender@remote.test>") == 1000


class Sender(threading.Thread):
    """Sends numbered messages in a loop until told to stop; remembers which got a 250."""

    def __init__(self, port_of, n, acked, lock, stop):
        super().__init__(daemon=True)
        self.port_of, self.n, self.acked, self.lock, self.stop = port_of, n, acked, lock, stop
        self.seq = 0

    def run(self):
        while not self.stop.is_set():
            try:
                with smtplib.SMTP(HOST, self.port_of(), timeout=10) as s:
                    s.ehlo("client.test")
                    while not self.stop.is_set():
                        self.seq += 1
                        tag = f"{self.n}-{self.seq}"
                        body = (f"Subject: crash test {tag}\r\nX-Seq: {tag}\r\n\r\n" + f"line of {tag}\r\n" * 50).encode()
                        s.mail("s@remote.test")
                        rcpt = "alice@example.test" if self.seq % 2 else "bob@example.test"
                        s.rcpt(rcpt)
                        code, resp = s.data(body)
                        if code == 250:
                            with self.lock:
                                self.acked[tag] = (rcpt, body)
            except (OSError, smtplib.SMTPException):
                time.sleep(0.05)


@pytest.mark.parametrize("direct_local", [True, False])
def test_sigkill_during_load_loses_nothing_acknowledged(make_server, direct_local):
    """With direct local delivery (the default) and with every message through the spool."""
    server = make_server(extra=f"[delivery]\ndirect_local = {str(direct_local).lower()}\n")
    server.cli("domain", "add", "example.test")
    for u in ("alice", "bob"):
        server.add_user(f"{u}@example.test")
    server.start()
    acked, lock, stop = {}, threading.Lock(), threading.Event()
    senders = [Sender(lambda: server.smtp_port, n, acked, lock, stop) for n in range(8)]
    for t in senders:
        t.start()
    for _ in range(3):
        time.sleep(1.5)
        server.kill()
        server.start()
    time.sleep(1.0)
    stop.set()
    for t in senders:
        t.join(timeout=30)
    server.wait_queue_empty(timeout=60)
    with lock:
        acked = dict(acked)
    assert len(acked) > 50, f"only {len(acked)} messages acknowledged: load too small to prove anything"
    seen = Counter()
    for user in ("alice", "bob"):
        for raw in server.messages(f"{user}@example.test"):
            m = re.search(rb"\r\nX-Seq: (\d+-\d+)\r\n", raw)
            assert m, raw[:300]
            tag = m.group(1).decode()
            seen[tag] += 1
            # Never a partial message in new/ or cur/.
            assert raw.endswith(f"line of {tag}\r\n".encode()), raw[-100:]
    missing = [t for t in acked if seen[t] == 0]
    assert not missing, f"{len(missing)} acknowledged messages lost, e.g. {missing[:5]}"
    dups = [t for t, n in seen.items() if n > 1]
    assert not dups, f"duplicates: {dups[:5]}"
    for tag, (rcpt, body) in list(acked.items())[:50]:
        files = [r for r in server.messages(rcpt) if f"X-Seq: {tag}\r\n".encode() in r]
        assert len(files) == 1 and files[0].endswith(body)
