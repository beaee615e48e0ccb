"""Clients that send but never read: the server's writes are bounded like its reads. An SMTP
client pipelining megabytes of NOOPs without reading a reply loses its session after the command
timeout, or when the session time is over, and does not hold up a SIGTERM beyond the shutdown
grace period."""

import socket
import threading
import time

from conftest import HOST

NOOPS = b"NOOP\r\n" * 100_000  # 600 kB per write


class Flood:
    """Connects, then writes NOOPs until the connection breaks; never reads."""

    def __init__(self, port):
        self.sock = socket.create_connection((HOST, port), timeout=120)
        self.sent = 0
        self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        try:
            while True:
                self.sock.sendall(NOOPS)
                self.sent += len(NOOPS)
        except OSError as e:
            self.error = e

    def wait_stuck(self, timeout=30):
        """Until the server stopped taking bytes (its writes are blocked)."""
        deadline = time.time() + timeout
        last, since = -1, time.time()
        while time.time() < deadline:
            if self.sent != last:
                last, since = self.sent, time.time()
            elif time.time() - since > 1.0:
                return
            time.sleep(0.1)
        raise AssertionError("the client never got stuck")

    def closed_by_server(self, timeout=30):
        """True once reading shows the end of the connection (EOF or reset)."""
        self.sock.settimeout(timeout)
        deadline = time.time() + timeout
        try:
            while time.time() < deadline:
                if not self.sock.recv(1 << 20):
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False
        return False


def wait_log(s, text, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if text in s.log_text():
            return True
        time.sleep(0.1)
    return False


def start(make_server, smtp_extra):
    s = make_server(smtp_extra=smtp_extra)
    s.cli("domain", "add", "example.test")
    s.start()
    return s


def test_client_that_never_reads_is_cut_off_after_command_timeout(make_server):
    s = start(make_server, "command_timeout = 2\nmax_session_time = 600\n")
    f = Flood(s.smtp_port)
    assert wait_log(s, "write timed out (client not reading replies)", 40), s.log_text()[-2000:]
    f.thread.join(timeout=30)
    assert f.error is not None, "the server kept reading"
    assert f.closed_by_server(), "connection still open"
    assert f.sent > 1_000_000
    s.stop()


def test_client_that_never_reads_is_cut_off_at_session_time(make_server):
    s = start(make_server, "command_timeout = 60\nmax_session_time = 3\n")
    f = Flood(s.smtp_port)
    assert wait_log(s, "session time limit exceeded while writing", 40), s.log_text()[-2000:]
    assert f.closed_by_server(), "connection still open"
    s.stop()


def test_sigterm_with_a_client_that_never_reads(make_server):
    # conftest sets shutdown_grace = 2.
    s = start(make_server, "command_timeout = 300\n")
    f = Flood(s.smtp_port)
    f.wait_stuck()
    started = time.time()
    s.proc.send_signal(15)
    try:
        rc = s.proc.wait(timeout=2 + 15)
    except Exception:
        s.kill()
        raise AssertionError("server still running 17 s after SIGTERM")
    took = time.time() - started
    s.proc = None
    assert rc == 0, rc
    assert took < 2 + 15, took
    assert "shutdown while writing to the client" in s.log_text(), s.log_text()[-2000:]
    assert f.closed_by_server(), "connection still open"
