"""/metrics families of the web face (issue 11, item 5): connections to the HTTP and HTTPS
listeners, failed TLS handshakes on 443 (and on 465 beside it), and the seconds until the
served certificate expires, each checked by value, the whole text by `promtool check metrics`."""

import socket
import subprocess
import time

import pytest

from conftest import HOST, HOSTNAME, has

pytestmark = pytest.mark.skipif(not (has("curl") and has("promtool")), reason="curl and promtool needed")


def scrape(s):
    r = subprocess.run(["curl", "-sS", "-k", "--max-time", "10", "--resolve", f"{HOSTNAME}:{s.https_port}:{HOST}",
                        f"https://{HOSTNAME}:{s.https_port}/metrics"], capture_output=True, timeout=20)
    assert r.returncode == 0, r.stderr
    return r.stdout


def samples(text):
    return {l.rsplit(" ", 1)[0]: float(l.rsplit(" ", 1)[1])
            for l in text.splitlines() if l and not l.startswith("#")}


def not_tls(port):
    """Plain text where a TLS ClientHello belongs; returns once the server has closed."""
    with socket.create_connection((HOST, port), timeout=10) as c:
        c.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        try:
            while c.recv(4096):
                pass
        except (ConnectionResetError, socket.timeout):
            pass


def test_web_connections_handshake_failures_and_certificate_expiry(make_server):
    s = make_server(http=True)
    s.cli("domain", "add", "example.test")
    s.start()
    not_tls(s.https_port)
    not_tls(s.submissions_port)
    r = subprocess.run(["curl", "-sS", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code}",
                        f"http://{HOST}:{s.http_port}/x"], capture_output=True, text=True, timeout=20)
    assert r.stdout == "301", r
    want = {
        'mailroom_tls_handshake_failures_total{service="https"}': 1,
        'mailroom_tls_handshake_failures_total{service="submissions"}': 1,
        'mailroom_connections_total{service="http"}': 1,
    }
    # Counted as the server finishes each connection: scrape until they show (or time out).
    deadline, scrapes = time.time() + 10, 0
    while True:
        body = scrape(s)
        scrapes += 1
        got = samples(body.decode())
        if all(got.get(k) == v for k, v in want.items()) or time.time() > deadline:
            break
        time.sleep(0.2)
    for k, v in want.items():
        assert got.get(k) == v, (k, body.decode())
    # The failed handshake, and every scrape up to this one (counted before it is answered).
    assert got['mailroom_connections_total{service="https"}'] == 1 + scrapes, body.decode()
    # The self-signed certificate lives a year.
    left = got["mailroom_certificate_expiry_seconds"]
    assert 360 * 86400 <= left <= 366 * 86400, left
    r = subprocess.run(["promtool", "check", "metrics"], input=body, capture_output=True, timeout=30)
    assert r.returncode == 0, (r.stdout, r.stderr)
