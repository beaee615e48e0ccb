"""The MX keeps serving under a connection flood (issue 17): when every slot is taken the oldest
idle session that has not sent MAIL is closed with 421 4.7.0 to make room; stress mode (logged
on and off) gives unproven sessions a short timeout and a low error limit; trusted and
authenticated sessions are never evicted; early talkers (smtp.greet_delay) get 554 5.5.1;
POP3 evicts sessions that have not logged in."""

import poplib
import resource
import select
import smtplib
import socket
import ssl
import subprocess
import threading
import time

from conftest import HOST

MSG = b"From: a@remote.test\r\nTo: alice@example.test\r\nSubject: flood\r\n\r\nhello\r\n"


def raise_nofile(n):
    """This process holds thousands of sockets: lift its own soft limit (the hard one allows)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = n if hard == resource.RLIM_INFINITY else min(n, hard)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= n, "open-file hard limit too low"


def open_flood(port, addresses, per_address):
    """Idle connections that never say a word, `per_address` from each source address."""
    socks = []
    for _ in range(per_address):
        for a in addresses:
            c = socket.create_connection((HOST, port), timeout=30, source_address=(a, 0))
            socks.append(c)
    return socks


def received(socks, want, timeout):
    """Reads what the server sent on each socket until `want(texts)` holds or time runs out;
    returns {socket: bytes}."""
    got = {c: b"" for c in socks}
    by_fd = {c.fileno(): c for c in socks}
    poller = select.poll()
    for fd in by_fd:
        poller.register(fd, select.POLLIN)
    deadline = time.time() + timeout
    while by_fd and time.time() < deadline and not want(got):
        for fd, _ in poller.poll(200):
            c = by_fd[fd]
            try:
                data = c.recv(4096)
            except OSError:
                data = b""
            if not data:
                poller.unregister(fd)
                del by_fd[fd]
            got[c] += data
    return got


def evicted(got):
    return sum(1 for t in got.values() if b"421 4.7.0 Too many connections, closing idle" in t)


def prepared(make_server, **kw):
    s = make_server(**kw)
    s.cli("domain", "add", "example.test")
    s.add_user("alice@example.test")
    return s


def test_a_flood_of_idle_connections_gives_way_to_a_new_sender(make_server):
    raise_nofile(4000)
    # The attack: 1,100 idle connections from 22 addresses (50 each, so no per-address
    # limit trips; each in its own /24) against 1,000 slots. A long stress timeout keeps the
    # flood open for the whole test, so only eviction can let the newcomer in.
    s = prepared(make_server, smtp_extra='max_connections = 1000\nstress_timeout = "60s"\n').start()
    addresses = [f"127.10.{n}.1" for n in range(1, 23)]
    flood = open_flood(s.smtp_port, addresses, 50)
    s.wait_log("smtpd: stress mode on")
    # A sender from a fresh address is greeted and served (it may retry once a second).
    deadline = time.time() + 15
    while True:
        try:
            with smtplib.SMTP(HOST, s.smtp_port, timeout=30, source_address=("127.99.0.1", 0)) as c:
                c.sendmail("a@remote.test", ["alice@example.test"], MSG)
            break
        except (smtplib.SMTPConnectError, smtplib.SMTPServerDisconnected, OSError):
            if time.time() > deadline:
                raise
            time.sleep(1)
    s.wait_messages("alice@example.test", 1)
    # The flood's oldest sessions made room: 1,100 + 1 newcomers for 1,000 slots.
    got = received(flood, lambda g: evicted(g) >= 100, 60)
    assert evicted(got) >= 100, f"{evicted(got)} flood sessions closed with 421 4.7.0"
    for c in flood:
        c.close()
    s.wait_log("smtpd: stress mode off", timeout=60)
    s.stop()


def test_stress_mode_shortens_timeouts_and_error_limit_of_unproven_sessions(make_server):
    s = prepared(
        make_server,
        smtp_extra='max_connections = 20\nstress_threshold = 50\nstress_timeout = "2s"\n',
    ).start()
    # Six trusted sessions keep the server above stress mode's exit (half the threshold) while
    # the others time out.
    trusted = []
    for _ in range(6):
        t = socket.create_connection((HOST, s.smtp_port), timeout=30, source_address=("127.0.0.2", 0))
        tf = t.makefile("rb")
        assert tf.readline().startswith(b"220 ")
        trusted.append((t, tf))
    # Four idle sessions wait under the normal 300 s timeout; the tenth connection starts stress.
    idle = [socket.create_connection((HOST, s.smtp_port), timeout=60) for _ in range(4)]
    s.wait_log("smtpd: stress mode on")
    # Under stress, an unproven session is cut off after three refused commands.
    bad = socket.create_connection((HOST, s.smtp_port), timeout=30)
    bad.sendall(b"BOGUS\r\nBOGUS\r\nBOGUS\r\n")
    text = b""
    while chunk := bad.recv(4096):
        text += chunk
    assert text.rstrip().endswith(b"421 4.7.0 Too many errors, closing connection"), text
    assert text.count(b"\r\n500 ") + text.count(b"\r\n502 ") == 3, text
    # The idle ones, waiting since before stress began, now get the stress timeout's 421.
    for c in idle:
        f = c.makefile("rb")
        assert f.readline().startswith(b"220 ")
        assert f.readline().startswith(b"421 4.4.2"), "idle session kept under stress"
        c.close()
    # The trusted sessions keep the normal timeout.
    for t, tf in trusted:
        t.sendall(b"NOOP\r\n")
        assert tf.readline().startswith(b"250"), "trusted session closed under stress"
        tf.close()
        t.close()
    s.wait_log("smtpd: stress mode off")
    s.stop()


def test_trusted_sender_is_served_through_a_5000_connection_flood(make_server):
    raise_nofile(8000)
    s = prepared(make_server, trusted=("127.0.0.2/32",), smtp_extra="max_connections = 2000\n").start()
    addresses = [f"127.20.{n}.1" for n in range(200)]
    # A trusted session that is idle (no MAIL yet) and older than the whole flood: were trusted
    # sessions evictable, it would be the first to go.
    keeper = smtplib.SMTP(HOST, s.smtp_port, timeout=60, source_address=("127.0.0.2", 0))
    keeper.ehlo("keeper.test")
    flood = []
    done = threading.Event()

    def attack():
        try:
            flood.extend(open_flood(s.smtp_port, addresses, 25))
        finally:
            done.set()

    attacker = threading.Thread(target=attack)
    attacker.start()
    s.wait_log("smtpd: stress mode on")
    # S1's shape from a trusted client: one message per session, a pause after EHLO, so a
    # trusted session sits idle without MAIL while the flood looks for sessions to evict.
    sent = 0
    while not done.is_set() or sent < 30:
        with smtplib.SMTP(HOST, s.smtp_port, timeout=60, source_address=("127.0.0.2", 0)) as c:
            c.ehlo("trusted.test")
            time.sleep(0.2)
            c.sendmail("a@remote.test", ["alice@example.test"], MSG)
        sent += 1
    attacker.join()
    assert len(flood) == 5000
    keeper.sendmail("a@remote.test", ["alice@example.test"], MSG)
    keeper.quit()
    s.wait_messages("alice@example.test", sent + 1)
    assert "closed to make room for a newcomer" in s.log_text(), "the flood never filled the slots"
    for c in flood:
        c.close()
    s.stop()


def test_early_talkers_are_refused_and_patient_clients_served(make_server):
    s = prepared(make_server, trusted=("127.0.0.2/32",), smtp_extra='greet_delay = "2s"\n').start()
    # A bot that does not wait for the greeting.
    bot = socket.create_connection((HOST, s.smtp_port), timeout=30)
    bot.sendall(b"EHLO bot.test\r\n")
    text = b""
    while chunk := bot.recv(4096):
        text += chunk
    assert text.startswith(b"220-"), text
    assert b"554 5.5.1" in text and b"250" not in text, text
    s.wait_log("talked before the greeting")
    # Clients that wait are served: smtplib and swaks.
    with smtplib.SMTP(HOST, s.smtp_port, timeout=30) as c:
        c.sendmail("a@remote.test", ["alice@example.test"], MSG)
    r = subprocess.run(
        ["swaks", "--server", HOST, "--port", str(s.smtp_port), "--from", "b@remote.test",
         "--to", "alice@example.test", "--timeout", "30"],
        capture_output=True, text=True, timeout=60,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    s.wait_messages("alice@example.test", 2)
    # A trusted client skips the delay: its first line is the whole greeting.
    t = socket.create_connection((HOST, s.smtp_port), timeout=30, source_address=("127.0.0.2", 0))
    assert t.makefile("rb").readline().startswith(b"220 ")
    t.close()
    s.stop()


def test_pop3_evicts_the_oldest_session_not_logged_in(make_server):
    s = prepared(make_server, trusted=("127.0.0.2/32",))
    # Under [pop3]; a long stress timeout so that only eviction closes a session here.
    s.config.write_text(s.config.read_text() + 'max_connections = 3\nstress_timeout = "60s"\n')
    s.start()
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    # The oldest session logs in (over STLS: untrusted clients need TLS for a password).
    user = poplib.POP3(HOST, s.pop3_port, timeout=30)
    user.stls(ctx)
    user.user("alice@example.test")
    user.pass_("secret")
    waiting = []
    for _ in range(2):
        c = socket.create_connection((HOST, s.pop3_port), timeout=30)
        f = c.makefile("rb")
        assert f.readline().startswith(b"+OK")
        waiting.append((c, f))
    # Full: a newcomer is greeted, and the oldest session that has not logged in makes room.
    newcomer = poplib.POP3(HOST, s.pop3_port, timeout=30)
    assert newcomer.getwelcome().startswith(b"+OK")
    assert waiting[0][1].readline().startswith(b"-ERR [SYS/TEMP]")
    # The logged-in session is still served.
    assert user.stat() == (0, 0)
    user.quit()
    newcomer.quit()
    for c, _ in waiting:
        c.close()
    s.stop()
