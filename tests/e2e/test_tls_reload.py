"""TLS details: a configured certificate is served, reloaded on SIGHUP without dropping
sessions, and only TLS 1.2 and 1.3 are spoken."""

import poplib
import signal
import smtplib
import socket
import ssl
import subprocess
import threading
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


def old_tls_client(version):
    """A client that really offers only `version` (TLS 1.0 or 1.1): OpenSSL 3 refuses them at its
    default security level, so the level is lowered to 0."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    ctx.minimum_version = ctx.maximum_version = version
    return ctx


def handshake_with_local_old_tls_server(tmp_path, version):
    """Proof that `old_tls_client(version)` can complete a handshake: against a local Python
    server that speaks only that version. Returns the negotiated version."""
    key, cert = tmp_path / "old.key", tmp_path / "old.crt"
    if not cert.exists():
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=old.test", "-keyout", str(key), "-out", str(cert)],
                       check=True, capture_output=True)
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    sctx.minimum_version = sctx.maximum_version = version
    sctx.load_cert_chain(cert, key)
    listener = socket.create_server((HOST, 0))
    port = listener.getsockname()[1]
    errors = []

    def serve():
        conn, _ = listener.accept()
        try:
            with sctx.wrap_socket(conn, server_side=True) as t:
                t.sendall(b"hello\n")
        except Exception as e:  # reported through the client's failure
            errors.append(e)

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    try:
        with socket.create_connection((HOST, port), timeout=10) as raw:
            with old_tls_client(version).wrap_socket(raw) as t:
                assert t.recv(6) == b"hello\n"
                return t.version()
    finally:
        th.join(timeout=10)
        listener.close()
        assert not errors, errors


def test_only_tls_12_and_13(make_server, tmp_path):
    """TLS 1.0 and 1.1 are refused on 465, on 587 after STARTTLS and on 995, by a client that
    is first shown to complete a TLS 1.0 / 1.1 handshake with a server that allows it."""
    s = make_server()
    s.start()
    for version, name in ((ssl.TLSVersion.TLSv1, "TLSv1"), (ssl.TLSVersion.TLSv1_1, "TLSv1.1")):
        assert handshake_with_local_old_tls_server(tmp_path, version) == name
        with pytest.raises(ssl.SSLError):
            smtplib.SMTP_SSL(HOST, s.submissions_port, context=old_tls_client(version), timeout=10)
        with smtplib.SMTP(HOST, s.submission_port, timeout=10) as c:
            with pytest.raises(ssl.SSLError):
                c.starttls(context=old_tls_client(version))
        with pytest.raises(ssl.SSLError):
            poplib.POP3_SSL(HOST, s.pop3s_port, context=old_tls_client(version), timeout=10)
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        ctx.minimum_version = ctx.maximum_version = version
        with smtplib.SMTP_SSL(HOST, s.submissions_port, context=ctx, timeout=10) as c:
            assert c.sock.version() in ("TLSv1.2", "TLSv1.3")
    s.stop()
