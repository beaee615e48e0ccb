"""Crash safety with mixed local and relayed mail: senders keep going while the server is
killed with SIGKILL several times; afterwards every message that got a 250 is delivered —
exactly once locally, at least once remotely (duplicates there are counted and reported) —
and no partial message is visible in any Maildir."""

import re
import smtplib
import threading
import time
from collections import Counter

import pytest

from conftest import HOST, has
from remote_mta import DNSMASQ, POSTFIX, Dns, Postfix

pytestmark = pytest.mark.skipif(not (has(DNSMASQ) and has(POSTFIX)), reason="dnsmasq and postfix needed")

TARGETS = ["alice@example.test", "bob@remote.test", "bob@example.test", "carol@remote.test"]


class Sender(threading.Thread):
    def __init__(self, server, n, acked, lock, stop):
        super().__init__(daemon=True)
        self.server, self.n, self.acked, self.lock, self.stop = server, n, acked, lock, stop
        self.seq = 0

    def run(self):
        while not self.stop.is_set():
            try:
                with smtplib.SMTP(HOST, self.server.smtp_port, timeout=10) as s:
                    s.ehlo("client.test")
                    while not self.stop.is_set():
                        self.seq += 1
                        tag = f"{self.n}-{self.seq}"
                        rcpt = TARGETS[self.seq % len(TARGETS)]
                        body = (f"Subject: mixed {tag}\r\nX-Seq: {tag}\r\n\r\n" + f"line of {tag}\r\n" * 40).encode()
                        s.mail("sender@example.test")
                        s.rcpt(rcpt)
                        code, _ = s.data(body)
                        if code == 250:
                            with self.lock:
                                self.acked[tag] = rcpt
            except (OSError, smtplib.SMTPException):
                time.sleep(0.05)


def tags_in(messages):
    seen = Counter()
    for raw in messages:
        m = re.search(rb"\nX-Seq: (\d+-\d+)\r?\n", raw)
        assert m, raw[:300]
        tag = m.group(1).decode()
        assert raw.replace(b"\r\n", b"\n").endswith(f"line of {tag}\n".encode()), raw[-80:]
        seen[tag] += 1
    return seen


def test_sigkill_with_local_and_relayed_mail(tmp_path, make_server):
    pf = Postfix(tmp_path, ip="127.0.0.23", domains=("remote.test",))
    dns = Dns(tmp_path, mx=[("remote.test", "mx1.remote.test", 10)], a=[("mx1.remote.test", "127.0.0.23")])
    extra = f'[relay]\ndns_servers = ["{dns.server}"]\nremote_port = {pf.port}\nretry_schedule = ["1s"]\n'
    s = make_server(trusted=("127.0.0.1/32",), extra=extra)
    s.cli("domain", "add", "example.test")
    for u in ("alice", "bob", "sender"):
        s.add_user(f"{u}@example.test")
    s.start()
    acked, lock, stop = {}, threading.Lock(), threading.Event()
    senders = [Sender(s, n, acked, lock, stop) for n in range(6)]
    try:
        for t in senders:
            t.start()
        for _ in range(3):
            time.sleep(2.0)
            s.kill()
            s.start()
        time.sleep(1.0)
        stop.set()
        for t in senders:
            t.join(timeout=30)
        s.wait_queue_empty(timeout=90)
        with lock:
            acked = dict(acked)
        assert len(acked) > 40, len(acked)
        local = tags_in(s.messages("alice@example.test") + s.messages("bob@example.test"))
        # DSNs would land in sender@'s Maildir: there must be none.
        assert s.messages("sender@example.test") == []
        remote_msgs = []
        deadline = time.time() + 60
        want_remote = {t for t, r in acked.items() if r.endswith("@remote.test")}
        while time.time() < deadline:
            remote_msgs = pf.maildir_messages("bob") + pf.maildir_messages("carol")
            if want_remote <= set(tags_in(remote_msgs)):
                break
            time.sleep(0.5)
        remote = tags_in(remote_msgs)
        lost = [t for t, r in acked.items() if (remote if r.endswith("@remote.test") else local)[t] == 0]
        assert not lost, f"{len(lost)} acknowledged messages lost, e.g. {lost[:5]}"
        local_dups = [t for t, n in local.items() if n > 1]
        assert not local_dups, f"local duplicates: {local_dups[:5]}"
        remote_dups = sum(n - 1 for n in remote.values() if n > 1)
        print(f"acknowledged={len(acked)} local={sum(local.values())} remote={sum(remote.values())} remote_duplicates={remote_dups}")
    finally:
        stop.set()
        s.stop()
        pf.stop()
        dns.stop()
