"""TLS details: a configured certificate is served, reloaded on SIGHUP without dropping
sessions, and only TLS 1.2 and 1.3 are spoken."""

import signal
import smtplib
import ssl
import subprocess
import time

import pytest

from conftest import HOST, has

pytestmark = pytest.mark.skipif(not has("openssl"), reason="openssl needed")


def make_cert(dir, cn):
    key, cert = dir / f"{cn}.key", dir / f"{cn}.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", f"/CN={cn}", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    return cert, key


def peer_cn(port):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with smtplib.SMTP_SSL(HOST, port, context=ctx, timeout=10) as s:
        der = s.sock.getpeercert(binary_form=True)
    text = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-subject"],
                          input=der, capture_output=True, check=True).stdout.decode()
    return text.strip()


def test_configured_certificate_reloads_on_sighup(make_server, tmp_path):
    cert_a, key_a = make_cert(tmp_path, "first.example.test")
    cert_b, key_b = make_cert(tmp_path, "second.example.test")
    live_cert, live_key = tmp_path / "live.pem", tmp_path / "live.key"
    live_cert.write_bytes(cert_a.read_bytes())
    live_key.write_bytes(key_a.read_bytes())
    s = make_server(extra=f'[tls]\ncertificate = "{live_cert}"\nprivate_key = "{live_key}"\n')
    s.start()
    assert "first.example.test" in peer_cn(s.submissions_port)
    # A session opened before the reload keeps working after it.
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    old = smtplib.SMTP_SSL(HOST, s.submissions_port, context=ctx, timeout=10)
    old.ehlo("client.test")
    live_cert.write_bytes(cert_b.read_bytes())
    live_key.write_bytes(key_b.read_bytes())
    s.proc.send_signal(signal.SIGHUP)
    s.wait_log("certificate reloaded")
    assert "second.example.test" in peer_cn(s.submissions_port)
    assert old.noop()[0] == 250
    old.quit()
    # A broken file on reload keeps the old certificate.
    live_key.write_text("not a key")
    s.proc.send_signal(signal.SIGHUP)
    s.wait_log("reload failed")
    assert "second.example.test" in peer_cn(s.submissions_port)
    assert s.stop() == 0


def test_only_tls_12_and_13(make_server):
    s = make_server()
    s.start()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    try:
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    except (ValueError, ssl.SSLError):
        pytest.skip("this OpenSSL cannot even offer TLS 1.1")
    with pytest.raises((ssl.SSLError, OSError)):
        smtplib.SMTP_SSL(HOST, s.submissions_port, context=ctx, timeout=10).ehlo()
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.minimum_version = ctx.maximum_version = version
        with smtplib.SMTP_SSL(HOST, s.submissions_port, context=ctx, timeout=10) as c:
            assert c.sock.version() in ("TLSv1.2", "TLSv1.3")
    s.stop()
