"""Promises README makes that had no test: POP3 `max_connections`, DELE then SIGTERM / SIGKILL,
`relay.per_destination_limit` and `delivery.concurrency` against a slow SMTP server, the
12,288-octet AUTH line, and where a bare `RCPT TO:<postmaster>` is delivered."""

import base64
import poplib
import signal
import smtplib
import socket
import ssl
import threading
import time

import pytest

from conftest import HOST, free_port


def wait_for(cond, what, timeout=30.0):
    deadline = time.time() + timeout
    while not cond():
        assert time.time() < deadline, what
        time.sleep(0.05)


def add_pop3_key(s, line):
    # [pop3] is the config's last section.
    s.config.write_text(s.config.read_text() + line + "\n")


# --- POP3 max_connections ---------------------------------------------------------------

def test_pop3_max_connections(make_server):
    # The held sessions come from a trusted address: those are never evicted to make room
    # (issue 17), so a full server refuses the newcomer.
    s = make_server(trusted=("127.0.0.1/32",))
    add_pop3_key(s, "max_connections = 2")
    s.cli("domain", "add", "example.test")
    s.start()
    held = []
    for _ in range(2):
        c = socket.create_connection((HOST, s.pop3_port), timeout=10)
        assert c.makefile("rb").readline().startswith(b"+OK"), "within the limit"
        held.append(c)
    extra = socket.create_connection((HOST, s.pop3_port), timeout=10)
    f = extra.makefile("rb")
    assert f.readline().startswith(b"-ERR [SYS/TEMP]")
    assert f.readline() == b"", "the extra client is closed"
    extra.close()
    held.pop().close()

    def greeted():
        with socket.create_connection((HOST, s.pop3_port), timeout=10) as c:
            return c.makefile("rb").readline().startswith(b"+OK")
    wait_for(greeted, "a slot is free again once a session ended")
    held[0].close()
    assert s.stop() == 0


# --- DELE then shutdown / kill ----------------------------------------------------------

@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_dele_then_server_stops_deletes_nothing(make_server, sig):
    s = make_server(trusted=("127.0.0.1/32",))
    s.cli("domain", "add", "example.test")
    s.add_user("alice@example.test", "alice-pw")
    s.start()
    with smtplib.SMTP(HOST, s.smtp_port, timeout=30) as c:
        for i in range(3):
            c.sendmail("s@remote.test", ["alice@example.test"], f"Subject: keep {i}\r\n\r\nx\r\n".encode())
    s.wait_messages("alice@example.test", 3)
    before = {p.name: p.read_bytes() for p in s.message_files("alice@example.test")}
    p = poplib.POP3(HOST, s.pop3_port, timeout=10)
    p.user("alice@example.test")
    p.pass_("alice-pw")
    for i in (1, 2, 3):
        assert p.dele(i).startswith(b"+OK")
    assert s.stop(sig) == (0 if sig == signal.SIGTERM else -signal.SIGKILL)
    try:
        p.quit()  # too late: the server is gone
    except (poplib.error_proto, OSError, EOFError):
        pass
    after = {p.name: p.read_bytes() for p in s.message_files("alice@example.test")}
    assert after == before
    s.start()
    p = poplib.POP3(HOST, s.pop3_port, timeout=10)
    p.user("alice@example.test")
    p.pass_("alice-pw")
    assert p.stat()[0] == 3
    p.quit()
    assert s.stop() == 0


# --- relay.per_destination_limit and delivery.concurrency ------------------------------

class SlowSmtp:
    """A plain SMTP server that answers the final dot slowly and records how many
    connections were open at the same time."""

    def __init__(self, delay=0.4):
        self.delay = delay
        self.sock = socket.create_server((HOST, 0))
        self.port = self.sock.getsockname()[1]
        self.lock = threading.Lock()
        self.open = 0
        self.max_open = 0
        self.messages = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn):
        with self.lock:
            self.open += 1
            self.max_open = max(self.max_open, self.open)
        try:
            f = conn.makefile("rb")
            conn.sendall(b"220 slow.test ESMTP\r\n")
            while True:
                line = f.readline()
                if not line:
                    return
                cmd = line[:4].upper()
                if cmd == b"EHLO":
                    conn.sendall(b"250-slow.test\r\n250 8BITMIME\r\n")
                elif cmd == b"DATA":
                    conn.sendall(b"354 go\r\n")
                    while f.readline() not in (b".\r\n", b""):
                        pass
                    time.sleep(self.delay)
                    with self.lock:
                        self.messages += 1
                    conn.sendall(b"250 2.0.0 ok\r\n")
                elif cmd == b"QUIT":
                    conn.sendall(b"221 bye\r\n")
                    return
                else:
                    conn.sendall(b"250 ok\r\n")
        finally:
            with self.lock:
                self.open -= 1
            conn.close()

    def close(self):
        self.sock.close()


@pytest.mark.parametrize("concurrency,limit,expect", [(100, 2, 2), (1, 4, 1)],
                         ids=["per_destination_limit", "delivery_concurrency"])
def test_relay_connections_never_exceed_the_limits(make_server, concurrency, limit, expect):
    fake = SlowSmtp()
    extra = (f"[delivery]\nconcurrency = {concurrency}\n"
             f'[relay]\nsmarthost = "{HOST}:{fake.port}"\nsmarthost_tls = "opportunistic"\nper_destination_limit = {limit}\n'
             'retry_schedule = ["1s"]\n')
    s = make_server(trusted=("127.0.0.1/32",), extra=extra)
    s.cli("domain", "add", "example.test")
    s.start()
    n = 16
    try:
        with smtplib.SMTP(HOST, s.smtp_port, timeout=30) as c:
            for i in range(n):
                c.sendmail("a@example.test", [f"r{i}@remote.test"], f"Subject: m{i}\r\n\r\nx\r\n".encode())
        wait_for(lambda: fake.messages >= n, f"{n} messages relayed", timeout=60)
        s.wait_queue_empty()
        # Never more than the limit, and the limit is reached (the test sees parallelism).
        assert fake.max_open == expect, fake.max_open
    finally:
        s.stop()
        fake.close()


# --- the 12,288-octet AUTH line -----------------------------------------------------------

def test_auth_response_line_limit_is_12288_octets(make_server):
    s = make_server(trusted=("10.255.255.255/32",))
    s.cli("domain", "add", "example.test")
    s.add_user("alice@example.test", "alice-pw")
    s.start()
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE

    def auth_with_line(line: bytes):
        with smtplib.SMTP(HOST, s.submission_port, timeout=30) as c:
            c.starttls(context=ctx)
            c.ehlo("client.test")
            assert c.docmd("AUTH", "PLAIN")[0] == 334
            c.send(line)
            reply = c.getreply()
            # The session is still in step: the next command gets its own reply.
            n = c.noop()
            assert n[0] == 250, (reply, n)
            return reply

    def plain(password_len):
        return base64.b64encode(b"\0alice@example.test\0" + b"p" * password_len)

    # A well-formed response with a wrong password is checked: 535.
    code, text = auth_with_line(plain(2000) + b"\r\n")
    assert (code, text[:5]) == (535, b"5.7.8"), (code, text)
    # 12,288 octets with CRLF: read whole and judged on its content (not "Line too long").
    line = b"A" * 12286 + b"\r\n"
    assert len(line) == 12288
    code, text = auth_with_line(line)
    assert code == 501 and text.startswith(b"5.5.2") and b"too long" not in text.lower(), (code, text)
    # One octet more: 500 5.5.2, as for any over-long line.
    line = b"A" * 12287 + b"\r\n"
    code, text = auth_with_line(line)
    assert (code, text) == (500, b"5.5.2 Line too long"), (code, text)
    assert s.stop() == 0


# --- bare RCPT TO:<postmaster> ------------------------------------------------------------

def test_bare_postmaster_goes_to_the_first_domain_alphabetically(make_server):
    s = make_server(trusted=("127.0.0.1/32",))
    # Created in reverse order, so "first created" and "first alphabetically" differ.
    for d in ("zulu.test", "alpha.test", "mike.test"):
        s.cli("domain", "add", d)
    s.add_user("zed@zulu.test")
    s.add_user("mike@mike.test")
    s.add_user("ann@alpha.test")
    s.add_user("bert@alpha.test")
    s.start()
    with socket.create_connection((HOST, s.smtp_port), timeout=10) as c:
        f = c.makefile("rb")
        f.readline()
        c.sendall(b"EHLO client.test\r\n")
        while not f.readline().startswith(b"250 "):
            pass
        c.sendall(b"MAIL FROM:<s@remote.test>\r\n")
        assert f.readline().startswith(b"250")
        c.sendall(b"RCPT TO:<Postmaster>\r\n")
        assert f.readline().startswith(b"250")
        c.sendall(b"DATA\r\n")
        assert f.readline().startswith(b"354")
        c.sendall(b"Subject: to the bare postmaster\r\n\r\nhello\r\n.\r\n")
        assert f.readline().startswith(b"250 2.0.0")
        c.sendall(b"QUIT\r\n")
    # alpha.test has no postmaster alias and no configured postmaster: its first account.
    [raw] = s.wait_messages("ann@alpha.test", 1)
    assert raw.endswith(b"Subject: to the bare postmaster\r\n\r\nhello\r\n")
    for other in ("bert@alpha.test", "zed@zulu.test", "mike@mike.test"):
        assert s.messages(other) == [], other
    assert s.stop() == 0
