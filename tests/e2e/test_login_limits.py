"""Login limits (`[auth]`): one guard for SMTP AUTH and POP3. Parallel guesses are counted
before their password check, failures over POP3 lock SMTP AUTH from the same address, every
spelling that logs in as an account shares its lockout from that address, and strangers
guessing from many addresses never lock the owner out. The defaults are used (10 failures per
address, or per account from one address, in 10 minutes; delays of 1 s doubling to 8 s)
unless a test says otherwise; the guesses run in parallel so the delays overlap."""

import base64
import poplib
import smtplib
import socket
import ssl
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import HOST

LOCKOUT_AFTER = 10


def tls_ctx():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


@pytest.fixture
def srv(make_server):
    s = make_server(trusted=("10.255.255.255/32",))
    s.cli("domain", "add", "example.test")
    s.add_user("alice@example.test", "alice-pw")
    s.add_user("bob@example.test", "bob-pw")
    s.add_user("kate@example.test", "kate-pw")
    s.start()
    yield s
    s.stop()


def smtp_auth(srv, user, password, source="127.0.0.1"):
    """AUTH PLAIN over port 465 from `source`; returns the reply code. The user name is sent
    as UTF-8 (smtplib's own login() only takes ASCII)."""
    token = base64.b64encode(b"\0" + user.encode() + b"\0" + password.encode()).decode()
    with smtplib.SMTP_SSL(HOST, srv.submissions_port, context=tls_ctx(), timeout=60,
                          source_address=(source, 0)) as s:
        s.ehlo("client.test")
        code, _ = s.docmd("AUTH PLAIN " + token)
        return code


class POP3SFrom(poplib.POP3_SSL):
    """poplib's POP3_SSL from a chosen source address."""

    def __init__(self, source, *args, **kw):
        self.source = source
        super().__init__(*args, **kw)

    def _create_socket(self, timeout):
        sock = socket.create_connection((self.host, self.port), timeout,
                                        source_address=(self.source, 0))
        return self.context.wrap_socket(sock, server_hostname=self.host)


def pop3_login(srv, user, password, source="127.0.0.1"):
    """USER/PASS over pop3s from `source`; returns True when logged in."""
    p = POP3SFrom(source, HOST, srv.pop3s_port, context=tls_ctx(), timeout=60)
    try:
        p.user(user)
        p.pass_(password)
        return True
    except poplib.error_proto:
        return False
    finally:
        try:
            p.quit()
        except (poplib.error_proto, OSError):
            pass


def parallel(n, fn):
    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(lambda i: fn(i), range(n)))


def test_parallel_guesses_checked_at_most_n_times(srv):
    codes = parallel(30, lambda i: smtp_auth(srv, "alice@example.test", f"guess-{i}"))
    assert codes == [535] * 30
    log = srv.log_text()
    # "auth: failed" is logged once per password check, "auth: refused" for a guess refused
    # without one.
    checked = log.count("auth: failed")
    assert checked <= LOCKOUT_AFTER, f"{checked} of 30 parallel guesses reached the password check"
    assert log.count("auth: refused") == 30 - checked


def test_pop3_failures_lock_smtp_auth_from_that_address(srv):
    ok = parallel(LOCKOUT_AFTER, lambda i: pop3_login(srv, "bob@example.test", f"guess-{i}"))
    assert ok == [False] * LOCKOUT_AFTER
    # The same address is now locked for SMTP AUTH too, even with alice's right password.
    assert smtp_auth(srv, "alice@example.test", "alice-pw") == 535
    # Another address is not.
    assert smtp_auth(srv, "alice@example.test", "alice-pw", source="127.0.0.2") == 235


@pytest.fixture
def srv_wide(make_server):
    """A server whose per-address limit is above the per-account one, so an address can be
    locked out of one account while it may still try others."""
    s = make_server(trusted=("10.255.255.255/32",),
                    extra="[auth]\nlockout_after_per_ip = 100\n")
    s.cli("domain", "add", "example.test")
    s.add_user("alice@example.test", "alice-pw")
    s.add_user("kate@example.test", "kate-pw")
    s.start()
    yield s
    s.stop()


def test_every_spelling_of_a_locked_account_is_locked(srv_wide):
    srv = srv_wide
    kelvin = "\u212aate@example.test"  # KELVIN SIGN: the directory folds it to k
    assert smtp_auth(srv, kelvin, "kate-pw", source="127.0.0.3") == 235, "logs in as kate"
    codes = parallel(LOCKOUT_AFTER, lambda i: smtp_auth(srv, "kate@example.test", f"guess-{i}"))
    assert codes == [535] * LOCKOUT_AFTER
    # kate is locked from the guessing address, under every spelling, over both protocols.
    assert smtp_auth(srv, "kate@example.test", "kate-pw") == 535
    assert smtp_auth(srv, kelvin, "kate-pw") == 535
    assert smtp_auth(srv, "KATE@example.test", "kate-pw") == 535
    assert not pop3_login(srv, kelvin, "kate-pw")
    # The address may still log in to other accounts, and kate from elsewhere.
    assert smtp_auth(srv, "alice@example.test", "alice-pw") == 235
    assert smtp_auth(srv, kelvin, "kate-pw", source="127.0.0.3") == 235
    assert pop3_login(srv, "KATE@example.test", "kate-pw", source="127.0.0.4")


def test_strangers_from_many_addresses_do_not_lock_the_owner_out(srv):
    """Issue 15: twelve wrong POP3 passwords from 127.0.0.10-21 refused alice's right password
    from a new address."""
    strangers = [f"127.0.0.{i}" for i in range(10, 22)]
    ok = parallel(len(strangers),
                  lambda i: pop3_login(srv, "alice@example.test", f"guess-{i}", source=strangers[i]))
    assert ok == [False] * len(strangers)
    assert pop3_login(srv, "alice@example.test", "alice-pw", source="127.0.0.30")
    assert smtp_auth(srv, "alice@example.test", "alice-pw", source="127.0.0.31") == 235
