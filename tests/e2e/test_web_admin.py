"""The admin pages (/admin) and self-service (/account) of the web face (issue 11, items 6
and 7). A real browser (Playwright driving Debian's chromium) logs in, adds a domain, an
account and an alias, reads the DNS records and runs the check, flushes the queue; the new
account then logs in over POP3 (poplib), changes its password on /account, and POP3 takes the
new one only. Plain http.client checks the gate: no session -> login, no CSRF token -> 403 and
nothing changed, a non-admin -> 403, escaping, path traversal, huge headers, plain http, and
the login guard shared with POP3.

One server for the module (logins cost an argon2 check each; delays are shortened in
`[auth]`); every test uses its own accounts and client addresses so they do not lock each
other out."""

import http.client
import json
import pathlib
import poplib
import re
import smtplib
import socket
import ssl
import struct
import time
import urllib.parse
import zlib

import pytest

from conftest import HOST, Server, free_port, has, wait_port
from remote_mta import DNSMASQ, Dns

ADMIN, ADMIN_PW = "root@example.test", "admin-password-1"
BOB, BOB_PW = "bob@example.test", "bob-password-12"

pytestmark = pytest.mark.skipif(not has(DNSMASQ), reason="dnsmasq needed")


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("web_admin")
    # A resolver that knows the MX of the domain the browser adds, and that of deferred.test:
    # 127.0.0.3, where nothing listens on the relay's port, so mail to it is deferred at once.
    (tmp / "dns").mkdir()
    dns = Dns(tmp / "dns", mx=[("browser.test", "mx.example.test", 10),
                               ("deferred.test", "gone.deferred.test", 10)],
              a=[("gone.deferred.test", "127.0.0.3")])
    s = Server(tmp, http=True,
               extra=f'[dns]\nservers = ["{dns.server}"]\n[relay]\nremote_port = {free_port()}\n'
                     '[auth]\nfailure_delay = "10ms"\nmax_failure_delay = "40ms"\n'
                     'lockout_after_per_account = 5\nlockout_after_per_ip = 50\n')
    s.cli("domain", "add", "example.test")
    s.cli("user", "add", ADMIN, "--admin", "--password-stdin", input=ADMIN_PW + "\n")
    s.cli("user", "add", BOB, "--password-stdin", input=BOB_PW + "\n")
    s.start()
    wait_port(HOST, s.https_port)
    yield s
    s.stop()
    dns.stop()


class Tls(http.client.HTTPSConnection):
    """HTTPS to 127.0.0.1 with our host name as SNI."""

    def connect(self):
        sock = socket.create_connection((HOST, self.port), self.timeout, self.source_address)
        self.sock = self._context.wrap_socket(sock, server_hostname="mx.example.test")


class Client:
    """A browser-like HTTPS client: one cookie jar, requests from `source`."""

    def __init__(self, s, source=HOST, https=True):
        self.s, self.source, self.https, self.jar = s, source, https, {}

    def request(self, method, path, form=None, headers=None, raw_path=False):
        ctx = ssl._create_unverified_context()
        if self.https:
            conn = Tls("mx.example.test", self.s.https_port, context=ctx, timeout=30,
                       source_address=(self.source, 0))
        else:
            conn = http.client.HTTPConnection(HOST, self.s.http_port, timeout=30,
                                              source_address=(self.source, 0))
        h = {"Host": "mx.example.test"}
        if self.jar:
            h["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.jar.items())
        body = None
        if form is not None:
            body = urllib.parse.urlencode(form)
            h["Content-Type"] = "application/x-www-form-urlencoded"
        h.update(headers or {})
        conn.request(method, path, body=body, headers=h)
        r = conn.getresponse()
        data = r.read().decode(errors="replace")
        for name, value in r.getheaders():
            if name.lower() == "set-cookie":
                k, _, rest = value.partition("=")
                v = rest.split(";", 1)[0]
                if v:
                    self.jar[k] = v
                else:
                    self.jar.pop(k, None)
        conn.close()
        return r.status, r, data

    def csrf(self, path):
        status, _, body = self.request("GET", path)
        assert status == 200, (path, status, body)
        m = re.search(r'name="csrf" value="([0-9a-f]*)"', body)
        assert m, body
        return m.group(1)

    def login(self, door, address, password):
        token = self.csrf(f"/{door}/login")
        return self.request("POST", f"/{door}/login",
                            form={"csrf": token, "address": address, "password": password})


def admin(s, source=HOST):
    c = Client(s, source)
    status, r, body = c.login("admin", ADMIN, ADMIN_PW)
    assert status == 303 and r.getheader("Location") == "/admin", (status, body)
    return c


class Pop3From(poplib.POP3_SSL):
    """poplib over pop3s from a chosen source address (the login guard counts per address)."""

    def __init__(self, host, port, source):
        self.source = source
        super().__init__(host, port, context=ssl._create_unverified_context(), timeout=30)

    def _create_socket(self, timeout):
        sock = socket.create_connection((self.host, self.port), timeout, (self.source, 0))
        return self.context.wrap_socket(sock, server_hostname="mx.example.test")


def pop3_ok(s, user, password, source=HOST):
    p = Pop3From(HOST, s.pop3s_port, source)
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


GET_PAGES = ["/admin", "/admin/domains", "/admin/domain?name=example.test", "/admin/accounts",
             "/admin/aliases", "/admin/queue", "/admin/message?id=0000000000000000",
             "/admin/no/such/page"]
POSTS = ["/admin/domains/add", "/admin/domains/remove", "/admin/domain/check",
         "/admin/accounts/add", "/admin/accounts/password", "/admin/accounts/remove",
         "/admin/aliases/add", "/admin/aliases/remove", "/admin/queue/flush",
         "/admin/queue/remove", "/admin/queue/bounce", "/admin/logout"]


def test_without_a_session_every_admin_route_goes_to_the_login(srv):
    c = Client(srv)
    for path in GET_PAGES:
        status, r, body = c.request("GET", path)
        assert status == 303 and r.getheader("Location") == "/admin/login", (path, status, body)
    for path in POSTS:
        form = {"domain": "nosession.test", "address": "x@example.test", "password": "p" * 12,
                "alias": "x@example.test", "targets": BOB, "id": "0"}
        status, r, _ = c.request("POST", path, form=form)
        assert status == 303 and r.getheader("Location").endswith("/login"), (path, status)
    status, r, _ = c.request("GET", "/account")
    assert status == 303 and r.getheader("Location") == "/account/login"
    # A forged session cookie is no session.
    c.jar["mailroom_session"] = "0" * 64
    assert c.request("GET", "/admin")[0] == 303
    assert "nosession.test" not in srv.cli("domain", "list").stdout


def test_session_cookie_and_logout(srv):
    c = Client(srv)
    token = c.csrf("/admin/login")
    status, r, _ = c.request("POST", "/admin/login",
                             form={"csrf": token, "address": ADMIN, "password": ADMIN_PW})
    assert status == 303
    cookies = [v for k, v in r.getheaders() if k.lower() == "set-cookie"]
    session = [v for v in cookies if v.startswith("mailroom_session=")]
    assert len(session) == 1, cookies
    for attr in ("HttpOnly", "Secure", "SameSite=Strict", "Path=/"):
        assert attr in session[0], session
    assert re.match(r"mailroom_session=[0-9a-f]{64};", session[0]), session
    status, _, body = c.request("GET", "/admin")
    assert status == 200 and "Dashboard" in body
    token = re.search(r'name="csrf" value="([0-9a-f]+)"', body).group(1)
    status, r, _ = c.request("POST", "/admin/logout", form={"csrf": token})
    assert status == 303
    assert c.request("GET", "/admin")[0] == 303


def test_a_post_without_the_csrf_token_is_refused_and_changes_nothing(srv):
    c = admin(srv)
    for token in (None, "", "f" * 64):
        form = {"domain": "csrf.test"}
        if token is not None:
            form["csrf"] = token
        status, _, body = c.request("POST", "/admin/domains/add", form=form)
        assert status == 403, (token, status, body)
    for token in (None, "0" * 64):
        form = {"address": BOB, "password": "taken-over-pw-1"} | ({"csrf": token} if token else {})
        assert c.request("POST", "/admin/accounts/password", form=form)[0] == 403
    assert "csrf.test" not in srv.cli("domain", "list").stdout
    assert pop3_ok(srv, BOB, BOB_PW)
    # The login form has its own token, tied to its cookie.
    other = Client(srv)
    status, _, _ = other.request("POST", "/admin/login",
                                 form={"csrf": "a" * 64, "address": ADMIN, "password": ADMIN_PW})
    assert status == 403
    assert "mailroom_session" not in other.jar
    # With the session's token the same request works (the refusals above were the token's).
    token = c.csrf("/admin/domains")
    status, _, body = c.request("POST", "/admin/domains/add", form={"csrf": token, "domain": "csrf.test"})
    assert status == 200 and "domain csrf.test added" in body, body
    assert "csrf.test" in srv.cli("domain", "list").stdout.split()
    status, _, body = c.request("POST", "/admin/domains/remove", form={"csrf": token, "domain": "csrf.test"})
    assert "domain csrf.test removed" in body
    assert "csrf.test" not in srv.cli("domain", "list").stdout.split()


def test_network_text_is_shown_escaped(srv):
    c = admin(srv)
    token = c.csrf("/admin/aliases")
    script = "<script>alert(1)</script>"
    bodies = []
    for alias in (f"{script}@example.test", f'"{script}"@example.test'):
        status, _, body = c.request("POST", "/admin/aliases/add",
                                    form={"csrf": token, "alias": alias, "targets": BOB})
        bodies.append(body)
    # A queued message whose headers and envelope carry markup: queue list and show.
    with smtplib.SMTP(HOST, srv.smtp_port, source_address=("127.0.0.2", 0), timeout=30) as m:
        m.sendmail(BOB, ["someone@deferred.test"],
                   f"From: {BOB}\r\nTo: someone@deferred.test\r\nSubject: {script}\r\n\r\nhi\r\n")
    deadline = time.time() + 20
    while time.time() < deadline and not json_queue(srv):
        time.sleep(0.2)
    ids = [m["id"] for m in json_queue(srv)]
    assert ids
    bodies.append(c.request("GET", "/admin/aliases")[2])
    bodies.append(c.request("GET", "/admin/queue")[2])
    bodies.append(c.request("GET", f"/admin/message?id={ids[0]}")[2])
    bodies.append(c.request("GET", "/admin/message?id=" + urllib.parse.quote(script))[2])
    for body in bodies:
        assert script not in body and "<script" not in body, body
    everything = "\n".join(bodies)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in everything
    assert f"Subject: &lt;script&gt;alert(1)&lt;/script&gt;" in bodies[-2], bodies[-2]
    # And the pages forbid scripts anyway.
    _, r, _ = c.request("GET", "/admin/aliases")
    assert "default-src 'none'" in r.getheader("Content-Security-Policy")
    for i in ids:
        srv.cli("queue", "remove", i)


def json_queue(s):
    return [json.loads(l) for l in s.cli("queue", "list", "--json").stdout.splitlines()]


def test_a_non_admin_is_refused_on_admin(srv):
    c = Client(srv)
    status, r, _ = c.login("account", BOB, BOB_PW)
    assert status == 303 and r.getheader("Location") == "/account"
    status, _, body = c.request("GET", "/account")
    assert status == 200 and BOB in body
    for path in GET_PAGES[:-1]:
        assert c.request("GET", path)[0] == 403, path
    token = re.search(r'name="csrf" value="([0-9a-f]+)"', body).group(1)
    status, _, _ = c.request("POST", "/admin/domains/add", form={"csrf": token, "domain": "bob.test"})
    assert status == 403
    assert "bob.test" not in srv.cli("domain", "list").stdout
    # Right password at the admin door: still not an admin.
    status, _, _ = Client(srv).login("admin", BOB, BOB_PW)
    assert status == 403
    # Made admin with the CLI, the same session gets in; made not admin again, out at once.
    srv.cli("user", "admin", BOB, "on")
    assert f"{BOB} admin" in srv.cli("user", "list").stdout
    assert c.request("GET", "/admin")[0] == 200
    srv.cli("user", "admin", BOB, "off")
    assert c.request("GET", "/admin")[0] == 403
    assert f"{BOB} admin" not in srv.cli("user", "list").stdout


def test_path_traversal_and_huge_headers_are_refused(srv):
    c = admin(srv)
    for path in ["/admin/../../etc/passwd", "/admin/%2e%2e/%2e%2e/etc/passwd",
                 "/%2E%2E/%2E%2E/etc/passwd", "/account/..%2f..%2fetc/passwd"]:
        status, _, body = c.request("GET", path)
        assert status == 400, (path, status)
        assert "root:" not in body
    ctx = ssl._create_unverified_context()
    with socket.create_connection((HOST, srv.https_port), timeout=30) as raw:
        with ctx.wrap_socket(raw, server_hostname="mx.example.test") as t:
            head = b"GET /admin HTTP/1.1\r\nHost: mx.example.test\r\nX-Big: " + b"a" * (1 << 20) + b"\r\n\r\n"
            answer = b""
            try:
                t.sendall(head)
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                pass
            try:
                while chunk := t.recv(65536):
                    answer += chunk
            except (ConnectionResetError, ssl.SSLError, socket.timeout):
                pass
    assert answer == b"" or answer.startswith(b"HTTP/1.1 431"), answer[:100]


def test_logins_only_over_https(srv):
    c = Client(srv, https=False)
    for method, path in [("GET", "/admin/login"), ("POST", "/admin/login"), ("GET", "/account/login"),
                         ("POST", "/account/login"), ("GET", "/admin")]:
        form = {"address": ADMIN, "password": ADMIN_PW} if method == "POST" else None
        status, r, _ = c.request(method, path, form=form)
        assert status == 301, (path, status)
        assert r.getheader("Location").startswith("https://"), r.getheader("Location")
    assert not c.jar


def test_wrong_passwords_lock_the_web_login_like_pop3(srv):
    srv.add_user("carol@example.test", "carol-password-1")
    srv.add_user("dave@example.test", "dave-password-1")
    c = Client(srv, source="127.0.0.7")
    for i in range(5):
        assert c.login("account", "carol@example.test", f"guess-{i}")[0] == 401
    # Locked from that address: the right password is refused too, over HTTP and POP3.
    assert c.login("account", "carol@example.test", "carol-password-1")[0] == 401
    assert not pop3_ok(srv, "carol@example.test", "carol-password-1", source="127.0.0.7")
    # From elsewhere carol still gets in.
    assert pop3_ok(srv, "carol@example.test", "carol-password-1", source="127.0.0.8")
    assert Client(srv, source="127.0.0.8").login("account", "carol@example.test", "carol-password-1")[0] == 303
    # The other way round: five wrong POP3 passwords lock the web login of that account.
    for i in range(5):
        assert not pop3_ok(srv, "dave@example.test", f"guess-{i}", source="127.0.0.9")
    web = Client(srv, source="127.0.0.9")
    assert web.login("account", "dave@example.test", "dave-password-1")[0] == 401
    srv.wait_log("http: login refused: too many recent failures")
    assert "guess-" not in srv.log_text()


def png_not_blank(path):
    data = pathlib.Path(path).read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 3000, (path, len(data))
    pos, idat, width = 8, b"", 0
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            width = struct.unpack(">I", chunk[:4])[0]
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + n
    pixels = zlib.decompress(idat)
    assert width > 0 and len(set(pixels)) > 8, (path, len(set(pixels)))


def test_browser_admin_then_account(srv, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    shots = tmp_path / "screenshots"
    shots.mkdir()
    base = f"https://mx.example.test:{srv.https_port}"
    # A deferred message for the queue page (the remote domain has no MX).
    with smtplib.SMTP(HOST, srv.smtp_port, source_address=("127.0.0.2", 0), timeout=30) as m:
        m.sendmail(BOB, ["far@deferred.test"], f"From: {BOB}\r\nSubject: queued\r\n\r\nhi\r\n")
    deadline = time.time() + 20
    while time.time() < deadline and not any(r["attempts"] for m in json_queue(srv) for r in m["recipients"]):
        time.sleep(0.2)
    [queued] = [m for m in json_queue(srv) if m["recipients"][0]["address"] == "far@deferred.test"]
    attempts_before = queued["recipients"][0]["attempts"]
    assert attempts_before >= 1

    def shot(page, name):
        path = shots / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        print("screenshot:", path)
        png_not_blank(path)

    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run",
            "--ignore-certificate-errors",
            f"--host-resolver-rules=MAP mx.example.test {HOST}"])
        try:
            ctx = browser.new_context(ignore_https_errors=True)
            page = ctx.new_page()
            page.goto(base + "/admin")
            assert page.url.endswith("/admin/login")
            shot(page, "login")
            page.fill("input[name=address]", ADMIN)
            page.fill("input[name=password]", ADMIN_PW)
            page.click("button[type=submit]")
            page.wait_for_url(base + "/admin")
            assert "Deliveries and refusals in the last" in page.inner_text("body")
            assert "recipients pending" in page.inner_text("#queue-states")
            shot(page, "dashboard")

            page.click("text=Domains")
            page.fill("form[action='/admin/domains/add'] input[name=domain]", "browser.test")
            page.click("text=Add domain")
            assert "domain browser.test added" in page.inner_text("p.ok")
            assert "browser.test" in srv.cli("domain", "list").stdout.split()
            shot(page, "domains")
            page.click("#domains >> text=browser.test")
            records = page.inner_text("#records")
            cli_records = srv.cli("dns-records", "browser.test").stdout
            assert records.strip() == cli_records.strip()
            assert "browser.test. 3600 IN MX 10 mx.example.test." in records
            page.click("text=Check DNS")
            check = page.inner_text("#check").splitlines()
            assert len(check) == len([l for l in cli_records.splitlines() if not l.startswith(";")]), check
            assert any(l.startswith("ok") and "browser.test MX" in l for l in check), check
            assert any(l.startswith("missing") for l in check), check
            shot(page, "domain")

            page.click("text=Accounts")
            page.fill("form[action='/admin/accounts/add'] input[name=address]", "eve@browser.test")
            page.fill("form[action='/admin/accounts/add'] input[name=password]", "short")
            page.click("text=Add account")
            assert "password refused: it is shorter than 10 characters" in page.inner_text("p.error")
            page.fill("form[action='/admin/accounts/add'] input[name=address]", "eve@browser.test")
            page.fill("form[action='/admin/accounts/add'] input[name=password]", "eve-first-password")
            page.click("text=Add account")
            assert "account eve@browser.test added" in page.inner_text("p.ok")
            shot(page, "accounts")

            page.click("text=Aliases")
            page.fill("form[action='/admin/aliases/add'] input[name=alias]", "team@browser.test")
            page.fill("form[action='/admin/aliases/add'] input[name=targets]", "eve@browser.test")
            page.click("text=Add alias")
            assert "alias team@browser.test added" in page.inner_text("p.ok")
            assert "team@browser.test -> eve@browser.test" in srv.cli("alias", "list").stdout
            shot(page, "aliases")

            page.click("nav >> text=Queue")
            assert queued["id"] in page.inner_text("#queue")
            page.click("text=Flush the whole queue")
            assert "flush of every message requested" in page.inner_text("p.ok")
            shot(page, "queue")
            page.click(f"text={queued['id']}")
            assert "Subject: queued" in page.inner_text("pre")
            shot(page, "message")
            ctx.close()

            # The new account gets its mail over POP3 with the password set in the browser.
            assert pop3_ok(srv, "eve@browser.test", "eve-first-password")

            ctx = browser.new_context(ignore_https_errors=True)
            page = ctx.new_page()
            page.goto(base + "/account")
            assert page.url.endswith("/account/login")
            page.fill("input[name=address]", "eve@browser.test")
            page.fill("input[name=password]", "eve-first-password")
            page.click("button[type=submit]")
            page.wait_for_url(base + "/account")
            assert page.inner_text("#me") == "eve@browser.test"
            assert "team@browser.test" in page.inner_text("#aliases")
            assert "Admin" not in page.inner_text("nav")
            page.fill("input[name=current]", "eve-first-password")
            page.fill("input[name=new]", "eve-second-password")
            page.fill("input[name=again]", "eve-second-password")
            page.click("text=Change password")
            assert "Password changed." in page.inner_text("p.ok")
            shot(page, "account")
            ctx.close()
        finally:
            browser.close()
    assert pop3_ok(srv, "eve@browser.test", "eve-second-password")
    assert not pop3_ok(srv, "eve@browser.test", "eve-first-password", source="127.0.0.30")
    # The flush made the runner try the deferred message again at once.
    deadline = time.time() + 20
    while time.time() < deadline:
        now = [m for m in json_queue(srv) if m["id"] == queued["id"]]
        if not now or now[0]["recipients"][0]["attempts"] > attempts_before:
            break
        time.sleep(0.2)
    assert now and now[0]["recipients"][0]["attempts"] > attempts_before, now
    srv.cli("queue", "remove", queued["id"])


def test_account_password_change_needs_the_current_one_and_a_strong_one(srv):
    srv.add_user("frank@example.test", "frank-password-1")
    c = Client(srv, source="127.0.0.40")
    assert c.login("account", "frank@example.test", "frank-password-1")[0] == 303
    token = c.csrf("/account")
    tries = [({"current": "wrong-password-1", "new": "frank-password-2", "again": "frank-password-2"},
              "the current password is wrong"),
             ({"current": "frank-password-1", "new": "short", "again": "short"},
              "password refused: it is shorter than 10 characters"),
             ({"current": "frank-password-1", "new": "frank-password-2", "again": "frank-password-3"},
              "the new passwords differ")]
    for form, why in tries:
        status, _, body = c.request("POST", "/account/password", form=form | {"csrf": token})
        assert status == 400 and why in body, (form, status, body)
    status, _, _ = c.request("POST", "/account/password",
                             form={"current": "frank-password-1", "new": "frank-password-2",
                                   "again": "frank-password-2"})
    assert status == 403
    assert pop3_ok(srv, "frank@example.test", "frank-password-1", source="127.0.0.41")


def form_token(body):
    return re.search(r'name="csrf" value="([0-9a-f]+)"', body).group(1)


def test_admin_actions_do_what_the_cli_sees(srv):
    c = admin(srv, source="127.0.0.50")
    token = form_token(c.request("GET", "/admin/accounts")[2])

    def post(path, **form):
        status, _, body = c.request("POST", path, form=form | {"csrf": token})
        assert status == 200, (path, status, body)
        return body

    assert "account gina@example.test added" in post("/admin/accounts/add", address="gina@example.test",
                                                     password="gina-password-1")
    assert "gina@example.test" in srv.cli("user", "list").stdout.split()
    assert "password of gina@example.test changed" in post(
        "/admin/accounts/password", address="gina@example.test", password="gina-password-2")
    assert pop3_ok(srv, "gina@example.test", "gina-password-2", source="127.0.0.51")
    assert "password refused: it is the address" in post(
        "/admin/accounts/password", address="gina@example.test", password="gina@example.test")
    assert "alias crew@example.test added" in post("/admin/aliases/add", alias="crew@example.test",
                                                   targets=f"gina@example.test, {BOB}")
    assert f"crew@example.test -> gina@example.test, {BOB}" in srv.cli("alias", "list").stdout
    # gina sees the alias on her own page, and nothing of bob's.
    g = Client(srv, source="127.0.0.52")
    assert g.login("account", "gina@example.test", "gina-password-2")[0] == 303
    page = g.request("GET", "/account")[2]
    assert "crew@example.test" in page and "bob-password" not in page
    assert "alias crew@example.test removed" in post("/admin/aliases/remove", alias="crew@example.test")
    assert "crew@example.test" not in srv.cli("alias", "list").stdout
    # A password set by the admin ends her sessions.
    assert "password of gina@example.test changed" in post(
        "/admin/accounts/password", address="gina@example.test", password="gina-password-3")
    assert g.request("GET", "/account")[0] == 303
    g = Client(srv, source="127.0.0.52")
    assert g.login("account", "gina@example.test", "gina-password-3")[0] == 303
    assert g.request("GET", "/account")[0] == 200
    assert "account gina@example.test removed" in post("/admin/accounts/remove", address="gina@example.test")
    assert "gina@example.test" not in srv.cli("user", "list").stdout.split()
    # Her session ends with her account.
    assert g.request("GET", "/account")[0] == 303
    # So does a session whose account the CLI removes.
    srv.add_user("hank@example.test", "hank-password-1")
    h = Client(srv, source="127.0.0.53")
    assert h.login("account", "hank@example.test", "hank-password-1")[0] == 303
    assert h.request("GET", "/account")[0] == 200
    srv.cli("user", "remove", "hank@example.test")
    assert h.request("GET", "/account")[0] == 303

    # The queue: bounce one message (the DSN goes to its local sender), remove another.
    before = len(srv.messages(BOB))
    for _ in range(2):
        with smtplib.SMTP(HOST, srv.smtp_port, source_address=("127.0.0.2", 0), timeout=30) as m:
            m.sendmail(BOB, ["later@deferred.test"], f"From: {BOB}\r\nSubject: q\r\n\r\nhi\r\n")
    ids = [m["id"] for m in json_queue(srv) if m["recipients"][0]["address"] == "later@deferred.test"]
    assert len(ids) == 2
    # After their first attempt, so the bounce is not raced by it (one asked during an attempt
    # is applied right after it: `queue::runner::retry_at`).
    deadline = time.time() + 20
    while time.time() < deadline and not all(
            m["recipients"][0]["attempts"] for m in json_queue(srv) if m["id"] in ids):
        time.sleep(0.1)
    assert f"{ids[0]}: bounce requested" in post("/admin/queue/bounce", id=ids[0])
    assert f"{ids[1]}: removed" in post("/admin/queue/remove", id=ids[1])
    assert ids[1] not in [m["id"] for m in json_queue(srv)]
    srv.wait_messages(BOB, before + 1)
    srv.wait_log(f"queue: {ids[1]}: removed")
    deadline = time.time() + 20
    while time.time() < deadline and ids[0] in [m["id"] for m in json_queue(srv)]:
        time.sleep(0.2)
    assert ids[0] not in [m["id"] for m in json_queue(srv)]
    assert "no such message in the queue" in post("/admin/queue/remove", id=ids[1])

    # The dashboard counts a refusal made now.
    def refusals():
        body = c.request("GET", "/admin")[2]
        return int(re.search(r"<th>refusals 5xx</th><td>(\d+)</td>", body).group(1))
    n = refusals()
    with smtplib.SMTP(HOST, srv.smtp_port, timeout=30) as m:
        m.ehlo("client.test")
        m.mail("someone@client.test")
        assert m.rcpt("nobody@example.test")[0] == 550
    assert refusals() == n + 1
