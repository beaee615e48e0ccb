"""Connection and session limits: per IP and in total (421 4.7.0), session time (421 4.4.2),
idle time (421 4.4.2)."""

import socket
import time

from conftest import HOST


def greet(port, source="127.0.0.1"):
    c = socket.create_connection((HOST, port), timeout=10, source_address=(source, 0))
    return c, c.makefile("rb").readline()


def test_connections_per_ip_and_in_total(make_server):
    s = make_server(smtp_extra="max_connections_per_ip = 2\nmax_connections = 3\n")
    s.start()
    a, ga = greet(s.smtp_port)
    b, gb = greet(s.smtp_port)
    assert ga.startswith(b"220 ") and gb.startswith(b"220 ")
    c, gc = greet(s.smtp_port)
    assert gc.startswith(b"421 4.7.0"), gc
    c.close()
    # Another address still gets in, up to the total.
    d, gd = greet(s.smtp_port, "127.0.0.9")
    assert gd.startswith(b"220 ")
    # Full, but every session has sent MAIL, so none may be closed to make room
    # (test_flood.py has the eviction of idle ones): the newcomer is refused.
    for x in (a, b, d):
        x.sendall(b"EHLO client.test\r\nMAIL FROM:<>\r\n")
        f = x.makefile("rb")
        while not (line := f.readline()).startswith(b"250 2.1.0"):
            assert line.startswith(b"250"), line
    e, ge = greet(s.smtp_port, "127.0.0.10")
    assert ge.startswith(b"421 4.7.0"), ge
    for x in (a, b, d, e):
        x.close()
    # Slots come back when connections close (the server notices the close, then frees it).
    deadline = time.time() + 15
    while True:
        f, gf = greet(s.smtp_port)
        f.close()
        if gf.startswith(b"220 ") or time.time() > deadline:
            break
        time.sleep(0.05)
    assert gf.startswith(b"220 "), gf
    s.stop()


def test_idle_and_session_time_limits(make_server):
    s = make_server(smtp_extra="command_timeout = 1\nmax_session_time = 3\n")
    s.start()
    c, g = greet(s.smtp_port)
    # Say nothing: the server must speak first, with the idle timeout's 421.
    c.settimeout(30)
    assert c.makefile("rb").readline().startswith(b"421 4.4.2"), "idle timeout"
    c.close()
    # A client that keeps talking is still cut off at the session limit.
    c, g = greet(s.smtp_port)
    f = c.makefile("rb")
    start = time.time()
    last = b""
    while time.time() - start < 60:
        try:
            c.sendall(b"NOOP\r\n")
        except OSError:
            break
        last = f.readline()
        if not last.startswith(b"250"):
            break
        time.sleep(0.5)
    assert last.startswith(b"421 4.4.2"), last
    # Not before the limit (3 s); how long after it is the scheduler's business, not a test's.
    assert time.time() - start > 2.5
    c.close()
    s.stop()


def test_connections_per_network(make_server):
    # Per IPv4 /24 (IPv6 /64: unit tests in store::admission); trusted networks are exempt.
    s = make_server(trusted=("127.0.0.2/32",), smtp_extra="max_connections_per_net = 2\n")
    s.start()
    a, ga = greet(s.smtp_port, "127.0.5.1")
    b, gb = greet(s.smtp_port, "127.0.5.2")
    assert ga.startswith(b"220 ") and gb.startswith(b"220 ")
    c, gc = greet(s.smtp_port, "127.0.5.3")
    assert gc.startswith(b"421 4.7.0 Too many connections from your network"), gc
    # Another /24 gets in; a trusted client is not limited (three from one /24 here).
    d, gd = greet(s.smtp_port, "127.0.6.1")
    assert gd.startswith(b"220 "), gd
    t1, g1 = greet(s.smtp_port, "127.0.0.2")
    t2, g2 = greet(s.smtp_port, "127.0.0.2")
    t3, g3 = greet(s.smtp_port, "127.0.0.2")
    assert all(g.startswith(b"220 ") for g in (g1, g2, g3)), (g1, g2, g3)
    for x in (a, b, c, d, t1, t2, t3):
        x.close()
    s.stop()
