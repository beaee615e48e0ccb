"""The web face (issue 11) through curl and raw sockets: port 80 redirects to https, Thunderbird
autoconfig and Outlook autodiscover (checked by xmllint), the MTA-STS policy and its DNS id,
/metrics only for metrics_networks, and the listener's bounds (header size, slowloris,
connection count, body size, path traversal)."""

import socket
import subprocess
import time

import pytest

from conftest import HOST, HOSTNAME, has

pytestmark = pytest.mark.skipif(not (has("curl") and has("xmllint")), reason="curl and xmllint needed")


def curl(*args, data=None):
    r = subprocess.run(["curl", "-sS", "-k", "--max-time", "10", "-i", *args],
                       input=data, capture_output=True, timeout=20)
    head, _, body = r.stdout.partition(b"\r\n\r\n")
    status = int(head.split()[1]) if head else 0
    return status, head.decode(errors="replace"), body


def https(s, name, path, *args, data=None):
    """A request to https://<name><path> as a client would send it (SNI and Host), at our port."""
    return curl("--resolve", f"{name}:{s.https_port}:{HOST}", f"https://{name}:{s.https_port}{path}",
                *args, data=data)


@pytest.fixture
def web(make_server):
    def start(**kw):
        s = make_server(http=True, **kw)
        s.cli("domain", "add", "example.test")
        s.add_user("alice@example.test")
        s.start()
        return s
    return start


def xml_ok(body, tmp_path):
    f = tmp_path / "answer.xml"
    f.write_bytes(body)
    r = subprocess.run(["xmllint", "--noout", str(f)], capture_output=True, text=True)
    assert r.returncode == 0, (r.stderr, body)


def test_port_80_redirects_everything_but_acme_to_https(web):
    s = web()
    status, head, _ = curl("-H", "Host: mx.example.test", f"http://{HOST}:{s.http_port}/account?x=1")
    assert status == 301, head
    assert "location: https://mx.example.test/account?x=1" in head.lower(), head
    # No Host worth trusting: our own name.
    status, head, _ = curl("-H", "Host: evil\"x", f"http://{HOST}:{s.http_port}/")
    assert status in (301, 400), head
    if status == 301:
        assert f"location: https://{HOSTNAME}/" in head.lower(), head
    # An ACME token we do not hold is not found (not redirected).
    status, _, _ = curl(f"http://{HOST}:{s.http_port}/.well-known/acme-challenge/abc")
    assert status == 404


def test_thunderbird_autoconfig_and_outlook_autodiscover(web, tmp_path):
    s = web()
    for name, path in [
        ("autoconfig.example.test", "/mail/config-v1.1.xml?emailaddress=alice%40example.test"),
        ("autoconfig.example.test", "/mail/config-v1.1.xml"),
        ("example.test", "/.well-known/autoconfig/mail/config-v1.1.xml"),
    ]:
        status, head, body = https(s, name, path)
        assert status == 200, (name, path, head, body)
        assert "content-type: application/xml" in head.lower()
        xml_ok(body, tmp_path)
        text = body.decode()
        assert "<domain>example.test</domain>" in text
        assert f"<hostname>{HOSTNAME}</hostname>" in text
        assert f"<port>{s.pop3s_port}</port>\n      <socketType>SSL</socketType>" in text, text
        assert f"<port>{s.submissions_port}</port>\n      <socketType>SSL</socketType>" in text
        assert f"<port>{s.submission_port}</port>\n      <socketType>STARTTLS</socketType>" in text
        assert text.count("<username>%EMAILADDRESS%</username>") == 3
    # Not our domain: nothing.
    status, _, _ = https(s, "autoconfig.other.test", "/mail/config-v1.1.xml?emailaddress=a%40other.test")
    assert status == 404
    request = (b'<?xml version="1.0" encoding="utf-8"?>\n<Autodiscover xmlns="http://schemas.microsoft.com/'
               b'exchange/autodiscover/outlook/requestschema/2006"><Request><EMailAddress>alice@example.test'
               b'</EMailAddress><AcceptableResponseSchema>http://schemas.microsoft.com/exchange/autodiscover/'
               b'outlook/responseschema/2006a</AcceptableResponseSchema></Request></Autodiscover>')
    status, head, body = https(s, "autodiscover.example.test", "/autodiscover/autodiscover.xml",
                               "-H", "Content-Type: text/xml", "--data-binary", "@-", data=request)
    assert status == 200, (head, body)
    xml_ok(body, tmp_path)
    text = body.decode()
    assert f"<Type>POP3</Type>\n<Server>{HOSTNAME}</Server>\n<Port>{s.pop3s_port}</Port>" in text, text
    assert f"<Port>{s.submissions_port}</Port>" in text and f"<Port>{s.submission_port}</Port>" in text
    assert "<LoginName>alice@example.test</LoginName>" in text
    # A body past the limit is refused before any parsing, and the client gets to read that
    # answer while it is still sending (the server lingers instead of resetting).
    for size in [100 * 1024] + [4 * 1024 * 1024] * 8:
        status, _, _ = https(s, "autodiscover.example.test", "/autodiscover/autodiscover.xml",
                             "-H", "Expect:", "--data-binary", "@-", data=request + b" " * size)
        assert status == 413, size


def test_mta_sts_policy_and_its_dns_id(web):
    s = web(http_extra='mta_sts_mode = "enforce"\nmta_sts_max_age = "1d"\n')
    status, head, body = https(s, "mta-sts.example.test", "/.well-known/mta-sts.txt")
    assert status == 200, head
    assert "content-type: text/plain" in head.lower()
    assert body == f"version: STSv1\r\nmode: enforce\r\nmx: {HOSTNAME}\r\nmax_age: 86400\r\n".encode()
    # Only for mta-sts.<one of our domains>.
    assert https(s, "mta-sts.other.test", "/.well-known/mta-sts.txt")[0] == 404
    assert https(s, "example.test", "/.well-known/mta-sts.txt")[0] == 404
    records = s.cli("dns-records", "example.test").stdout
    assert f"mta-sts.example.test. 3600 IN CNAME {HOSTNAME}." in records
    assert f"autoconfig.example.test. 3600 IN CNAME {HOSTNAME}." in records
    ids = [l for l in records.splitlines() if l.startswith("_mta-sts.example.test. 3600 IN TXT")]
    assert len(ids) == 1 and '"v=STSv1; id=' in ids[0], records
    # Another policy, another id.
    s.stop()
    s.config.write_text(s.config.read_text().replace('mta_sts_mode = "enforce"', 'mta_sts_mode = "testing"'))
    again = s.cli("dns-records", "example.test").stdout
    assert ids[0] not in again and "_mta-sts.example.test. 3600 IN TXT" in again
    s.start()
    status, _, body = https(s, "mta-sts.example.test", "/.well-known/mta-sts.txt")
    assert status == 200 and b"mode: testing\r\n" in body


def test_metrics_only_from_metrics_networks(web):
    s = web(http_extra='metrics_networks = ["127.0.0.3/32"]\n')
    status, _, body = https(s, HOSTNAME, "/metrics")
    assert status == 403, body
    # A session on port 25 and a refused RCPT, then a scrape from inside the network.
    import smtplib
    with smtplib.SMTP(HOST, s.smtp_port, timeout=30) as c:
        c.ehlo("client.test")
        c.mail("someone@remote.test")
        code, _ = c.rcpt("nobody@example.test")
        assert code == 550
    status, head, body = https(s, HOSTNAME, "/metrics", "--interface", "127.0.0.3")
    assert status == 200, head
    assert "text/plain; version=0.0.4" in head.lower(), head
    text = body.decode()
    samples = {l.rsplit(" ", 1)[0]: float(l.rsplit(" ", 1)[1])
               for l in text.splitlines() if l and not l.startswith("#")}
    mx = [v for k, v in samples.items() if k.startswith("mailroom_connections_total") and 'service="smtp"' in k]
    assert mx and mx[0] >= 1, text
    refused = [v for k, v in samples.items() if k.startswith("mailroom_messages_refused_total")]
    assert refused and sum(refused) >= 1, text
    assert any(k.startswith("mailroom_queue_messages") for k in samples), text
    assert any(k.startswith("mailroom_certificate_expiry_seconds") for k in samples), text
    # What Prometheus' own checker says of it.
    if has("promtool"):
        r = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True, timeout=30)
        assert r.returncode == 0, (r.stdout, r.stderr)
    else:
        pytest.fail("promtool (Debian prometheus) is needed")


def raw(port, data, wait=5.0):
    """Sends bytes on a plain connection and returns what comes back until the server closes."""
    with socket.create_connection((HOST, port), timeout=wait) as c:
        try:
            c.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        out = b""
        try:
            while chunk := c.recv(65536):
                out += chunk
        except (ConnectionResetError, socket.timeout):
            pass
        return out


def test_listener_bounds(web):
    s = web(http_extra='max_connections = 3\nheader_timeout = "1s"\n')
    # A 1 MiB header block: 431, not buffered.
    big = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (1 << 20) + b"\r\n\r\n"
    reply = raw(s.http_port, big)
    assert reply.startswith(b"HTTP/1.1 431"), reply[:200]
    # Path traversal reaches no file: nothing is served from disk.
    for path in [b"/../../../../etc/passwd", b"/.well-known/autoconfig/../../../etc/passwd",
                 b"/mail/%2e%2e/%2e%2e/etc/passwd"]:
        status, _, body = https(s, HOSTNAME, path.decode())
        assert status in (400, 404), (path, status)
        assert b"root:" not in body
    # Slowloris: half a header block, then silence: the server hangs up after header_timeout.
    start = time.monotonic()
    reply = raw(s.http_port, b"GET / HTTP/1.1\r\nHost: x\r\n", wait=20)
    assert time.monotonic() - start < 15, "a silent client kept its connection"
    assert b"301" not in reply
    # Connection slots: three held, the fourth is closed at once; a freed slot serves again.
    held = [socket.create_connection((HOST, s.http_port)) for _ in range(3)]
    time.sleep(0.3)
    try:
        refused = raw(s.http_port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        assert refused == b"", refused
        assert "http: connection from" in s.log_text() and "slots taken" in s.log_text()
    finally:
        for h in held:
            h.close()
    time.sleep(0.3)
    assert raw(s.http_port, b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").startswith(b"HTTP/1.1 301")
