"""Submission (587 STARTTLS, 465 implicit TLS) with AUTH, and TLS on every service, driven by
swaks, smtplib, poplib, openssl s_client and curl."""

import base64
import poplib
import re
import smtplib
import socket
import ssl
import subprocess

import pytest

from conftest import HOST, has


def tls_ctx():
    # The server runs with its generated self-signed certificate.
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


@pytest.fixture
def sub(make_server):
    """A server that trusts no client network: only AUTH grants relaying and clear-text POP3
    login needs TLS."""
    s = make_server(trusted=("10.255.255.255/32",))
    s.cli("domain", "add", "example.test")
    s.add_user("alice@example.test", "alice-pw")
    s.add_user("bob@example.test", "bob-pw")
    s.cli("alias", "add", "sales@example.test", "alice@example.test")
    s.start()
    yield s
    s.stop()


BODY = b"From: Alice <alice@example.test>\r\nTo: bob@example.test\r\nSubject: submitted\r\n\r\nHello Bob.\r\n"


def test_smtplib_starttls_login_587(sub):
    with smtplib.SMTP(HOST, sub.submission_port, timeout=30) as s:
        s.ehlo("client.test")
        assert s.has_extn("starttls") and not s.has_extn("auth")
        s.starttls(context=tls_ctx())
        s.ehlo("client.test")
        assert "PLAIN" in s.esmtp_features["auth"] and "LOGIN" in s.esmtp_features["auth"]
        s.login("alice@example.test", "alice-pw")
        s.sendmail("alice@example.test", ["bob@example.test"], BODY)
    [raw] = sub.wait_messages("bob@example.test", 1)
    assert raw.endswith(BODY)
    assert re.search(rb"\(using TLSv1\.[23] with cipher [A-Z0-9_]+\)\r\n\t\(authenticated sender\)\r\n\tby mx\.example\.test \(Mailroom\) with ESMTPSA id ", raw), raw[:400]
    # RFC 6409 §8: Date and Message-ID added when missing.
    assert re.search(rb"\r\nDate: [A-Z][a-z]{2}, ", raw) and b"\r\nMessage-ID: <" in raw
    assert b"alice-pw" not in raw and b"alice-pw" not in sub.log_text().encode()


def test_smtp_ssl_465(sub):
    with smtplib.SMTP_SSL(HOST, sub.submissions_port, context=tls_ctx(), timeout=30) as s:
        s.ehlo("client.test")
        assert not s.has_extn("starttls")
        s.login("alice@example.test", "alice-pw")
        # Authenticated users may send to other domains (the relay takes them from there).
        refused = s.sendmail("sales@example.test", ["bob@example.test", "someone@elsewhere.test"],
                             BODY.replace(b"Alice <alice@", b"Sales <sales@"))
        assert refused == {}
    sub.wait_messages("bob@example.test", 1)
    accepted = [l for l in sub.log_text().splitlines() if ": accepted from=<sales@example.test>" in l]
    assert len(accepted) == 1 and " nrcpt=2 " in accepted[0], accepted
    assert " sasl_username=alice@example.test " in accepted[0], accepted


@pytest.mark.skipif(not has("swaks"), reason="swaks not installed")
@pytest.mark.parametrize("mech", ["PLAIN", "LOGIN"])
def test_swaks_587_starttls_auth(sub, mech):
    r = subprocess.run(
        ["swaks", "--server", HOST, "--port", str(sub.submission_port), "--tls",
         "--auth", mech, "--auth-user", "alice@example.test", "--auth-password", "alice-pw",
         "--from", "alice@example.test", "--to", "bob@example.test", "--helo", "client.test",
         "--header", "From: alice@example.test", "--header", f"Subject: swaks {mech}"],
        capture_output=True, text=True, timeout=60,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "235 2.7.0" in r.stdout
    got = sub.wait_messages("bob@example.test", 1)
    assert f"Subject: swaks {mech}".encode() in got[0]


@pytest.mark.skipif(not has("swaks"), reason="swaks not installed")
def test_swaks_465_implicit_tls(sub):
    r = subprocess.run(
        ["swaks", "--server", HOST, "--port", str(sub.submissions_port), "--tlsc",
         "--auth", "PLAIN", "--auth-user", "bob@example.test", "--auth-password", "bob-pw",
         "--from", "bob@example.test", "--to", "alice@example.test", "--helo", "client.test",
         "--header", "From: bob@example.test"],
        capture_output=True, text=True, timeout=60,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    sub.wait_messages("alice@example.test", 1)


def test_auth_before_starttls_refused_and_port_25_has_no_auth(sub):
    with smtplib.SMTP(HOST, sub.submission_port, timeout=30) as s:
        s.ehlo("client.test")
        code, resp = s.docmd("AUTH PLAIN " + base64.b64encode(b"\0alice@example.test\0alice-pw").decode())
        assert code == 530 and resp.startswith(b"5.7.0 Must issue a STARTTLS command first"), resp
        code, resp = s.docmd("MAIL FROM:<alice@example.test>")
        assert code == 530, resp
    with smtplib.SMTP(HOST, sub.smtp_port, timeout=30) as s:
        s.ehlo("client.test")
        assert s.has_extn("starttls")
        s.starttls(context=tls_ctx())
        s.ehlo("client.test")
        assert not s.has_extn("auth")
        code, _ = s.docmd("AUTH PLAIN " + base64.b64encode(b"\0alice@example.test\0alice-pw").decode())
        assert code == 502


def test_wrong_password_and_forged_sender_refused(sub):
    with smtplib.SMTP_SSL(HOST, sub.submissions_port, context=tls_ctx(), timeout=30) as s:
        s.ehlo("client.test")
        with pytest.raises(smtplib.SMTPAuthenticationError) as e:
            s.login("alice@example.test", "Xyzzy-bad-pw-42")
        assert e.value.smtp_code == 535 and e.value.smtp_error.startswith(b"5.7.8")
        s.login("alice@example.test", "alice-pw")
        code, resp = s.mail("bob@example.test")
        assert code == 553 and resp.startswith(b"5.7.1"), resp
        code, resp = s.mail("alice@example.test")
        assert code == 250
        s.rcpt("bob@example.test")
        code, resp = s.data(b"From: Bob <bob@example.test>\r\nSubject: forged\r\n\r\nx\r\n")
        assert code == 553 and resp.startswith(b"5.7.1"), resp
    log = sub.log_text()
    assert "auth: failed" in log and "127.0.0.1" in log and "Xyzzy-bad-pw-42" not in log
    assert sub.messages("bob@example.test") == []


def test_starttls_injection_not_executed(sub):
    """`STARTTLS\\r\\nRSET\\r\\n` in one write: RSET must not be answered inside TLS."""
    raw = socket.create_connection((HOST, sub.smtp_port), timeout=10)
    f = raw.makefile("rb")
    assert f.readline().startswith(b"220 ")
    raw.sendall(b"EHLO client.test\r\n")
    while not f.readline().startswith(b"250 "):
        pass
    raw.sendall(b"STARTTLS\r\nRSET\r\n")
    assert f.readline().startswith(b"220 2.0.0")
    tls = tls_ctx().wrap_socket(raw, server_hostname="mx.example.test")
    tls.sendall(b"NOOP\r\n")
    first = tls.recv(4096)
    # Only the NOOP's reply: a reply to the injected RSET would come first.
    assert first == b"250 2.0.0 Ok\r\n", first
    tls.sendall(b"STARTTLS\r\n")
    assert tls.recv(4096).startswith(b"503 5.5.1")
    tls.close()


@pytest.mark.skipif(not has("openssl"), reason="openssl not installed")
@pytest.mark.parametrize("proto,port_attr", [("smtp", "submission_port"), ("pop3", "pop3_port")])
def test_openssl_s_client_starttls(sub, proto, port_attr):
    port = getattr(sub, port_attr)
    cmd = "EHLO client.test\nQUIT\n" if proto == "smtp" else "CAPA\nQUIT\n"
    r = subprocess.run(
        ["openssl", "s_client", "-starttls", proto, "-connect", f"{HOST}:{port}", "-quiet", "-verify_quiet"],
        input=cmd, capture_output=True, text=True, timeout=30,
    )
    out = r.stdout
    if proto == "smtp":
        assert "250-AUTH PLAIN LOGIN" in out or "AUTH PLAIN LOGIN" in out, out + r.stderr
    else:
        assert "USER" in out and "STLS" not in out, out + r.stderr


def test_poplib_pop3s_and_stls(sub):
    with smtplib.SMTP_SSL(HOST, sub.submissions_port, context=tls_ctx(), timeout=30) as s:
        s.login("bob@example.test", "bob-pw")
        s.sendmail("bob@example.test", ["alice@example.test"], b"From: bob@example.test\r\nSubject: for pop\r\n\r\nbody\r\n")
    [raw] = sub.wait_messages("alice@example.test", 1)
    # Clear-text login without TLS from an untrusted network: refused, and CAPA shows STLS.
    p = poplib.POP3(HOST, sub.pop3_port, timeout=10)
    capa = p.capa()
    assert "STLS" in capa and "USER" not in capa
    with pytest.raises(poplib.error_proto) as e:
        p.user("alice@example.test")
    assert e.value.args[0].startswith(b"-ERR [AUTH]")
    # STLS, then login works; CAPA no longer shows STLS.
    p.stls(context=tls_ctx())
    capa = p.capa()
    assert "STLS" not in capa and "USER" in capa
    p.user("alice@example.test")
    p.pass_("alice-pw")
    assert p.stat() == (1, len(raw))
    p.quit()
    # Implicit TLS on pop3s.
    p = poplib.POP3_SSL(HOST, sub.pop3s_port, context=tls_ctx(), timeout=10)
    p.user("alice@example.test")
    p.pass_("alice-pw")
    assert b"\r\n".join(p.retr(1)[1]) + b"\r\n" == raw
    p.quit()


def test_stls_injection_not_executed(sub):
    raw = socket.create_connection((HOST, sub.pop3_port), timeout=10)
    f = raw.makefile("rb")
    assert f.readline().startswith(b"+OK")
    raw.sendall(b"STLS\r\nCAPA\r\n")
    assert f.readline().startswith(b"+OK")
    tls = tls_ctx().wrap_socket(raw, server_hostname="mx.example.test")
    tls.sendall(b"QUIT\r\n")
    got = b""
    while True:
        chunk = tls.recv(4096)
        if not chunk:
            break
        got += chunk
    # Only QUIT's reply: a CAPA listing (TOP, UIDL...) would come first if CAPA had run.
    assert got == b"+OK Bye\r\n", got
    tls.close()


@pytest.mark.skipif(not has("curl"), reason="curl not installed")
def test_curl_smtps_and_pop3s(sub, tmp_path):
    mail = tmp_path / "mail.txt"
    mail.write_bytes(b"From: alice@example.test\r\nTo: bob@example.test\r\nSubject: via curl\r\n\r\ncurl body\r\n")
    r = subprocess.run(
        ["curl", "-sS", "-k", f"smtps://{HOST}:{sub.submissions_port}", "--mail-from", "alice@example.test",
         "--mail-rcpt", "bob@example.test", "--upload-file", str(mail), "-u", "alice@example.test:alice-pw"],
        capture_output=True, timeout=60,
    )
    assert r.returncode == 0, r.stderr
    [raw] = sub.wait_messages("bob@example.test", 1)
    assert raw.endswith(b"curl body\r\n")
    r = subprocess.run(["curl", "-sS", "-k", "-u", "bob@example.test:bob-pw", f"pop3s://{HOST}:{sub.pop3s_port}/1"],
                       capture_output=True, timeout=60)
    assert r.returncode == 0 and r.stdout == raw, r.stderr
