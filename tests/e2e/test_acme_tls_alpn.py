"""ACME TLS-ALPN-01 (RFC 8737) against Debian's pebble really validating: pebble resolves every
name through dnsmasq and connects to our HTTPS port (its tlsPort) with ALPN `acme-tls/1`; port 80
is closed, so HTTP-01 cannot be what passed. Then `openssl s_client` on 465 and 443 shows
pebble's issuer, and only 443 speaks ALPN."""

import subprocess
import time

import pytest

from conftest import HOST, has
from test_acme import NAMES, dns, dns_extra, issuer, pebble  # noqa: F401 (fixtures)

pytestmark = pytest.mark.skipif(not (has("pebble") and has("openssl")), reason="pebble and openssl needed")


def s_client(port, alpn, name="mx.example.test"):
    """openssl s_client offering `alpn`: its whole output (the handshake summary) and the
    served certificate's issuer."""
    r = subprocess.run(["openssl", "s_client", "-connect", f"{HOST}:{port}", "-servername", name,
                        "-alpn", alpn], input=b"", capture_output=True, timeout=20)
    out = r.stdout.decode(errors="replace") + r.stderr.decode(errors="replace")
    cert = subprocess.run(["openssl", "x509", "-noout", "-issuer"], input=r.stdout,
                          capture_output=True).stdout.decode()
    return out, cert


def test_pebble_validates_tls_alpn_01_against_our_port_443(make_server, pebble, dns):  # noqa: F811
    resolver, dns_dir = dns([(n, HOST) for n in NAMES])
    s = make_server(http=True, extra=dns_extra(resolver.server))
    # Port 80 closed: pebble's httpPort points at nothing.
    text = s.config.read_text()
    plain = f'[http]\nlisten = ["{HOST}:{s.http_port}"]\n'
    assert plain in text
    text = text.replace(plain, "[http]\nlisten = []\n", 1)
    url, ca, d = pebble(s.http_port, s.https_port, always_valid=False, dns=resolver.server)
    s.config.write_text(text.replace("[smtp]\n", f'[acme]\ndirectory_url = "{url}"\n'
                                     f'challenge = "tls-alpn-01"\nca_file = "{ca}"\n[smtp]\n', 1))
    s.cli("domain", "add", "example.test")
    s.start()
    # The first order's end: a certificate, or a failure (retried only after a minute).
    deadline = time.time() + 90
    while time.time() < deadline:
        log = s.log_text()
        if "acme: certificate for" in log or "acme: order failed" in log:
            break
        time.sleep(0.1)
    assert "acme: order failed" not in log, log[-3000:]
    assert "acme: certificate for" in log, log[-3000:]
    for n in NAMES:
        assert f"acme: tls-alpn-01 challenge for {n} answered to 127.0.0.1:" in log, log[-3000:]
        assert n in (dns_dir / "dnsmasq.log").read_text()
    plog = (d / "pebble.log").read_text()
    assert plog.count("set VALID by completed challenge") == 3, plog[-3000:]
    assert "validate w/ HTTP" not in plog, plog[-3000:]

    for port in (s.submissions_port, s.https_port):
        text = issuer(port, "mta-sts.example.test")
        assert "Pebble" in text and "DNS:mta-sts.example.test" in text, (port, text)
    # Ordinary clients on 443 get http/1.1; the mail ports negotiate no ALPN at all, even when
    # offered acme-tls/1, and serve the normal certificate.
    out, cert = s_client(s.https_port, "h2,http/1.1")
    assert "ALPN protocol: http/1.1" in out and "Pebble" in cert, out[-2000:]
    out, cert = s_client(s.submissions_port, "acme-tls/1")
    assert "No ALPN negotiated" in out and "Pebble" in cert, out[-2000:]
    # With no order pending, a validation hello on 443 gets no certificate at all.
    out, cert = s_client(s.https_port, "acme-tls/1")
    assert "ALPN protocol: acme-tls/1" not in out and cert == "", out[-2000:]
    assert "acme: tls-alpn-01 hello for mx.example.test: no challenge pending" in s.log_text()
