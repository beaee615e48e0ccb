"""ACME against Debian's pebble (a real ACME server, run here with its own config and TLS
certificate): Mailroom creates its account, orders one certificate for its names, stores it and
serves it on every TLS listener: `openssl s_client` on 465, 995 and 443 shows pebble's issuer,
where the self-signed certificate served before. PEBBLE_VA_ALWAYS_VALID=1: pebble does not
connect back (no DNS for the test names here)."""

import json
import os
import smtplib
import ssl
import subprocess
import time

import pytest

from conftest import HOST, free_port, has, wait_port
from remote_mta import Dns

pytestmark = pytest.mark.skipif(not (has("pebble") and has("openssl")), reason="pebble and openssl needed")


def make_ca_and_cert(dir):
    """A root and a certificate for 127.0.0.1 signed by it, for pebble's own HTTPS."""
    run = lambda *a: subprocess.run(a, check=True, capture_output=True)
    run("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test root",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign",
        "-keyout", str(dir / "ca.key"), "-out", str(dir / "ca.pem"))
    run("openssl", "req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
        "-keyout", str(dir / "pebble.key"), "-out", str(dir / "pebble.csr"))
    (dir / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n"
                                 "extendedKeyUsage=serverAuth\n")
    run("openssl", "x509", "-req", "-in", str(dir / "pebble.csr"), "-CA", str(dir / "ca.pem"),
        "-CAkey", str(dir / "ca.key"), "-CAcreateserial", "-days", "2", "-extfile", str(dir / "ext.cnf"),
        "-out", str(dir / "pebble.pem"))


@pytest.fixture
def pebble(tmp_path):
    def start(http_port, https_port, always_valid=True, extra_env=None, dns=None, validity=None):
        d = tmp_path / "pebble"
        d.mkdir()
        make_ca_and_cert(d)
        port, mgmt = free_port(), free_port()
        (d / "config.json").write_text(json.dumps({"pebble": {
            "listenAddress": f"{HOST}:{port}", "managementListenAddress": f"{HOST}:{mgmt}",
            "certificate": str(d / "pebble.pem"), "privateKey": str(d / "pebble.key"),
            "httpPort": http_port, "tlsPort": https_port, "ocspResponderURL": "",
            "externalAccountBindingRequired": False,
            **({"certificateValidityPeriod": validity} if validity else {})}}))
        env = dict(os.environ, PEBBLE_VA_NOSLEEP="1", PEBBLE_WFE_NONCEREJECT="0")
        if always_valid:
            env["PEBBLE_VA_ALWAYS_VALID"] = "1"
        env.update(extra_env or {})
        log = open(d / "pebble.log", "wb")
        args = ["pebble", "-config", str(d / "config.json")] + (["-dnsserver", dns] if dns else [])
        proc = subprocess.Popen(args, env=env, stdout=log, stderr=log)
        procs.append(proc)
        wait_port(HOST, port, proc=proc)
        return f"https://{HOST}:{port}/dir", d / "ca.pem", d
    procs = []
    yield start
    for p in procs:
        p.kill()
        p.wait()


def issuer(port, name="mx.example.test"):
    r = subprocess.run(["openssl", "s_client", "-connect", f"{HOST}:{port}", "-servername", name],
                       input=b"", capture_output=True, timeout=20)
    text = subprocess.run(["openssl", "x509", "-noout", "-issuer", "-ext", "subjectAltName"],
                          input=r.stdout, capture_output=True).stdout.decode()
    return text


def with_acme(s, url, ca):
    text = s.config.read_text()
    s.config.write_text(text.replace("[smtp]\n", f'[acme]\ndirectory_url = "{url}"\n'
                                     f'contact = "mailto:admin@example.test"\nca_file = "{ca}"\n[smtp]\n', 1))


NAMES = ["mx.example.test", "mta-sts.example.test", "autoconfig.example.test"]


@pytest.fixture
def dns(tmp_path):
    """dnsmasq for the names of the certificate; Mailroom's [dns] asks it (names that do not
    resolve to us are left out of the order)."""
    made = []

    def start(a):
        d = tmp_path / f"dns{len(made)}"
        d.mkdir()
        made.append(Dns(d, a=a))
        return made[-1], d
    yield start
    for m in made:
        m.stop()


def dns_extra(server):
    return f'[dns]\nservers = ["{server}"]\n'


def test_certificate_from_pebble_on_every_tls_listener(make_server, pebble, dns):
    # autoconfig. points elsewhere: dropped with a warning, not a failed order.
    resolver, _ = dns([("mx.example.test", HOST), ("mta-sts.example.test", HOST),
                       ("autoconfig.example.test", "192.0.2.1")])
    s = make_server(http=True, extra=dns_extra(resolver.server))
    url, ca, d = pebble(s.http_port, s.https_port)
    with_acme(s, url, ca)
    s.cli("domain", "add", "example.test")
    s.start()
    s.wait_log("acme: certificate for", timeout=60)
    assert "acme: autoconfig.example.test does not resolve to this server" in s.log_text()
    for port in (s.submissions_port, s.pop3s_port, s.https_port):
        text = issuer(port)
        assert "Pebble" in text, (port, text)
        assert "DNS:mx.example.test" in text and "DNS:mta-sts.example.test" in text, text
        assert "autoconfig.example.test" not in text, text
    # Stored through store: a restart serves the stored certificate without a new order.
    mode = os.stat(s.data / "acme" / "key.pem").st_mode & 0o777
    assert mode == 0o600, oct(mode)
    s.stop()
    s.start()
    s.wait_log("acme: stored certificate installed", timeout=20)
    assert "Pebble" in issuer(s.submissions_port)
    assert s.log_text().count("acme: account created") == 1


def test_pebble_validates_http_01_against_our_port_80(make_server, pebble, dns):
    """No shortcut: pebble resolves every name through dnsmasq and fetches the token from our
    HTTP listener (its httpPort is our port)."""
    names = NAMES
    resolver, dns_dir = dns([(n, HOST) for n in names])
    s = make_server(http=True, extra=dns_extra(resolver.server))
    url, ca, d = pebble(s.http_port, s.https_port, always_valid=False, dns=resolver.server)
    with_acme(s, url, ca)
    s.cli("domain", "add", "example.test")
    s.start()
    s.wait_log("acme: certificate for", timeout=90)
    assert "Pebble" in issuer(s.https_port, "mta-sts.example.test")
    # pebble really asked our port 80 for each token.
    log = (d / "pebble.log").read_text()
    for n in names:
        assert f"validate w/ HTTP: http://{n}:{s.http_port}/.well-known/acme-challenge/" in log, log[-2000:]
        assert n in (dns_dir / "dnsmasq.log").read_text()
    assert log.count("set VALID by completed challenge") == 3, log[-2000:]


def serial(port):
    r = subprocess.run(["openssl", "s_client", "-connect", f"{HOST}:{port}", "-servername", "mx.example.test"],
                       input=b"", capture_output=True, timeout=20)
    return subprocess.run(["openssl", "x509", "-noout", "-serial"], input=r.stdout,
                          capture_output=True).stdout.decode().strip()


def test_short_lived_certificate_is_renewed_and_swapped_under_an_open_session(make_server, pebble, dns):
    """A 12 s certificate is renewed at two thirds of its life; an SMTP session opened on the
    first certificate stays open across the swap and still delivers."""
    resolver, _ = dns([(n, HOST) for n in NAMES])
    s = make_server(http=True, extra=dns_extra(resolver.server))
    url, ca, d = pebble(s.http_port, s.https_port, validity=12)
    with_acme(s, url, ca)
    s.cli("domain", "add", "example.test")
    s.add_user("alice@example.test")
    s.start()
    s.wait_log("acme: certificate for", timeout=60)
    first = serial(s.submissions_port)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with smtplib.SMTP_SSL(HOST, s.submissions_port, context=ctx, timeout=30) as c:
        c.login("alice@example.test", "secret")
        s.wait_log("acme: certificate for", count=2, timeout=30)
        second = serial(s.submissions_port)
        assert second != first, (first, second)
        assert c.noop()[0] == 250
        c.sendmail("alice@example.test", ["alice@example.test"],
                   b"From: alice@example.test\r\nSubject: across the swap\r\n\r\nstill here\r\n")
    s.wait_messages("alice@example.test", 1)
