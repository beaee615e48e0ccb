"""One slow destination never delays the others: 150 messages for a domain whose MX accepts TCP
and never answers (a tarpit) must not hold the runner's delivery slots, the tarpit never gets
more than `per_destination_limit` connections, after a cohort of timeouts it is dead (shown by
`mailroom queue list`, no new connections until the back-off ends), and once its MX answers
every message arrives, none lost.

The MX hosts are small Python servers on 127.0.0.30 (tarpit.test) and 127.0.0.31
(healthy.test), sharing `relay.remote_port`; dnsmasq answers the MX and A records."""

import re
import smtplib
import socket
import threading
import time

import pytest

from conftest import HOST, free_port, has
from remote_mta import DNSMASQ, Dns

pytestmark = [
    pytest.mark.skipif(not has(DNSMASQ), reason="dnsmasq needed"),
]

TARPIT_IP = "127.0.0.30"
HEALTHY_IP = "127.0.0.31"
LIMIT = 4
BACKOFF = 8  # seconds a dead destination is left alone


class Mx:
    """A listener that is a tarpit (accepts, stays silent, holds the socket) or a minimal SMTP
    sink storing every message; counts connections, and the most open at once."""

    def __init__(self, ip, port, tarpit):
        self.tarpit = tarpit
        self.lock = threading.Lock()
        self.accepted = 0
        self.open = 0
        self.max_open = 0
        self.held = []
        self.messages = []
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((ip, port))
        self.sock.listen(512)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.accepted += 1
                self.open += 1
                self.max_open = max(self.max_open, self.open)
                tarpit = self.tarpit
                if tarpit:
                    self.held.append(conn)
            if not tarpit:
                threading.Thread(target=self._serve, args=(conn,), daemon=True).start()
            else:
                threading.Thread(target=self._watch, args=(conn,), daemon=True).start()

    def _closed(self):
        with self.lock:
            self.open -= 1

    def _watch(self, conn):
        """A held socket is open until the client gives up (EOF) or we let it go."""
        try:
            while conn.recv(4096):
                pass
        except OSError:
            pass
        self._closed()

    def _serve(self, conn):
        try:
            f = conn.makefile("rb")
            conn.sendall(b"220 sink.test ESMTP\r\n")
            while True:
                line = f.readline()
                if not line:
                    break
                cmd = line.strip().upper()
                if cmd == b"DATA":
                    conn.sendall(b"354 go\r\n")
                    body = []
                    for l in f:
                        if l == b".\r\n":
                            break
                        body.append(l)
                    with self.lock:
                        self.messages.append(b"".join(body))
                    conn.sendall(b"250 2.0.0 ok\r\n")
                elif cmd == b"QUIT":
                    conn.sendall(b"221 bye\r\n")
                    break
                elif cmd.startswith(b"EHLO"):
                    conn.sendall(b"250-sink.test\r\n250 8BITMIME\r\n")
                else:
                    conn.sendall(b"250 ok\r\n")
        except OSError:
            pass
        finally:
            conn.close()
            self._closed()

    def become_sink(self):
        """The MX starts answering: held connections are dropped, new ones are served."""
        with self.lock:
            self.tarpit = False
            held, self.held = self.held, []
        for c in held:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def stats(self):
        with self.lock:
            return self.accepted, self.open, self.max_open, len(self.messages)

    def subjects(self):
        with self.lock:
            found = [re.search(rb"Subject: (\S+)", m) for m in self.messages]
        return [m.group(1).decode() for m in found if m]

    def close(self):
        self.become_sink()
        self.sock.close()


def wait_for(what, predicate, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout}s: {what}")


def test_a_tarpit_domain_delays_nobody_and_loses_nothing(tmp_path, make_server):
    port = free_port(TARPIT_IP)
    tarpit = Mx(TARPIT_IP, port, tarpit=True)
    healthy = Mx(HEALTHY_IP, port, tarpit=False)
    dns = Dns(
        tmp_path,
        mx=[("tarpit.test", "mx.tarpit.test", 10), ("healthy.test", "mx.healthy.test", 10)],
        a=[("mx.tarpit.test", TARPIT_IP), ("mx.healthy.test", HEALTHY_IP)],
    )
    extra = (
        "[relay]\n"
        f'dns_servers = ["{dns.server}"]\n'
        f"remote_port = {port}\n"
        'retry_schedule = ["1s"]\n'
        f"per_destination_limit = {LIMIT}\n"
        # Longer than the healthy message's 10 s: no timeout may be what frees the slots.
        'connect_timeout = "12s"\n'
        'greeting_timeout = "12s"\n'
        'attempt_timeout = "30s"\n'
        "initial_destination_concurrency = 2\n"
        "destination_failed_cohort_limit = 1\n"
        f'dead_destination_backoff = "{BACKOFF}s"\n'
        f'max_dead_destination_backoff = "{BACKOFF}s"\n'
    )
    s = make_server(trusted=("127.0.0.1/32",), extra=extra)
    try:
        s.cli("domain", "add", "example.test")
        s.start()
        with smtplib.SMTP(HOST, s.smtp_port, timeout=30) as c:
            for i in range(150):
                c.sendmail("alice@example.test", [f"user{i}@tarpit.test"],
                           f"Subject: tarpit-{i}\r\n\r\nbody {i}\r\n".encode())
        with smtplib.SMTP(HOST, s.smtp_port, timeout=30) as c:
            c.sendmail("alice@example.test", ["bob@healthy.test"], b"Subject: healthy\r\n\r\nhi\r\n")
        # The feature's promise: the healthy domain does not wait behind the tarpit.
        wait_for("the healthy domain's message delivered", lambda: healthy.stats()[3] >= 1, 10)
        assert healthy.subjects() == ["healthy"]

        # After a cohort of greeting timeouts the tarpit is dead, and `queue list` says so.
        def dead_listed():
            out = s.cli("queue", "list").stdout
            return any("tarpit.test" in l and "dead" in l for l in out.splitlines())

        wait_for("tarpit.test shown dead in `mailroom queue list`", dead_listed, 40)
        assert tarpit.stats()[2] <= LIMIT, tarpit.stats()
        # Dead: its mail is deferred without new connections until the back-off ends.
        accepted_when_dead = tarpit.stats()[0]
        time.sleep(BACKOFF / 2)
        assert tarpit.stats()[0] == accepted_when_dead, "connections to a dead destination"
        assert len(s.queue_files()) == 150

        # The MX answers again: every message arrives, exactly once, none lost.
        tarpit.become_sink()
        wait_for("all 150 tarpit.test messages delivered", lambda: tarpit.stats()[3] >= 150, 90)
        s.wait_queue_empty(timeout=30)
        subjects = tarpit.subjects()
        assert sorted(subjects) == sorted(f"tarpit-{i}" for i in range(150))
        assert tarpit.stats()[2] <= LIMIT, tarpit.stats()
        assert healthy.stats()[2] <= LIMIT
    finally:
        s.stop()
        tarpit.close()
        healthy.close()
        dns.stop()


def test_sigterm_does_not_wait_for_a_silent_mx(tmp_path, make_server):
    """A delivery stuck on an MX that never greets must not hold a shutdown for the greeting
    timeout (5 minutes by default): the server exits, the message stays queued."""
    port = free_port(TARPIT_IP)
    tarpit = Mx(TARPIT_IP, port, tarpit=True)
    dns = Dns(tmp_path, mx=[("tarpit.test", "mx.tarpit.test", 10)], a=[("mx.tarpit.test", TARPIT_IP)])
    extra = (
        "[relay]\n"
        f'dns_servers = ["{dns.server}"]\n'
        f"remote_port = {port}\n"
    )
    s = make_server(trusted=("127.0.0.1/32",), extra=extra)
    try:
        s.cli("domain", "add", "example.test")
        s.start()
        with smtplib.SMTP(HOST, s.smtp_port, timeout=30) as c:
            c.sendmail("alice@example.test", ["user@tarpit.test"], b"Subject: stuck\r\n\r\nx\r\n")
        wait_for("the relay connected to the tarpit", lambda: tarpit.stats()[0] >= 1, 20)
        # Server.stop() allows 30 s (shutdown_grace here is 2 s) before it gives up.
        assert s.stop() == 0
        assert len(s.queue_files()) == 1
    finally:
        if s.proc is not None:
            s.kill()
        tarpit.close()
        dns.stop()
