"""Issue 12, MTA-STS sending (RFC 8461): dnsmasq publishes `_mta-sts.sts.test`, MX and A
records; a Python HTTPS server (ssl module, certificate from a test CA) serves the policy;
Postfix is the MX with a good certificate, one for the wrong name, a self-signed one, or no
STARTTLS at all. Mailroom trusts the test CA through `[relay] ca_file`."""

import http.server
import os
import pathlib
import shutil
import smtplib
import socket
import ssl
import subprocess
import tempfile
import threading
import time

import pytest

from conftest import HOST, free_port, has
from remote_mta import DNSMASQ, POSTFIX, Dns, Postfix

pytestmark = pytest.mark.skipif(not (has(DNSMASQ) and has(POSTFIX)), reason="dnsmasq and postfix needed")

MX_IP = "127.0.0.41"
WEB_IP = "127.0.0.42"


def openssl(*args):
    subprocess.run(["openssl", *args], check=True, capture_output=True)


class Ca:
    """A CA and certificates from it, in a directory Postfix's processes can read."""

    def __init__(self):
        self.dir = pathlib.Path(tempfile.mkdtemp(prefix="mailroom-ca-"))
        os.chmod(self.dir, 0o755)
        self.cert = self.dir / "ca.pem"
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=STS Test CA",
                "-keyout", str(self.dir / "ca-key.pem"), "-out", str(self.cert))

    def issue(self, name, dns_name, self_signed=False):
        """(cert, key) for `dns_name`, signed by the CA or by itself."""
        key, cert, req, ext = (self.dir / f"{name}.{x}" for x in ("key", "pem", "req", "ext"))
        ext.write_text(f"subjectAltName=DNS:{dns_name}\nbasicConstraints=critical,CA:FALSE\n"
                       "extendedKeyUsage=serverAuth\n")
        if self_signed:
            openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={dns_name}",
                    "-addext", f"subjectAltName=DNS:{dns_name}", "-keyout", str(key), "-out", str(cert))
        else:
            openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={dns_name}",
                    "-keyout", str(key), "-out", str(req))
            openssl("x509", "-req", "-in", str(req), "-CA", str(self.cert), "-CAkey", str(self.dir / "ca-key.pem"),
                    "-CAcreateserial", "-days", "2", "-extfile", str(ext), "-out", str(cert))
        os.chmod(key, 0o644)
        return cert, key

    def remove(self):
        shutil.rmtree(self.dir, ignore_errors=True)


class PolicyServer:
    """HTTPS on WEB_IP serving /.well-known/mta-sts.txt (text/plain) as set in `.policy`."""

    def __init__(self, ca, policy):
        self.policy = policy
        self.requests = 0
        cert, key = ca.issue("web", "mta-sts.sts.test")
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                owner.requests += 1
                if self.path != "/.well-known/mta-sts.txt":
                    self.send_error(404)
                    return
                body = owner.policy.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        self.port = free_port(WEB_IP)
        self.httpd = http.server.ThreadingHTTPServer((WEB_IP, self.port), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class Tarpit:
    """Accepts TCP connections on WEB_IP and never says a word."""

    def __init__(self):
        self.port = free_port(WEB_IP)
        self.sock = socket.create_server((WEB_IP, self.port))
        self.held = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while True:
            try:
                self.held.append(self.sock.accept()[0])
            except OSError:
                return

    def stop(self):
        self.sock.close()
        for c in self.held:
            c.close()


def policy(mode, mx="mx1.sts.test"):
    return f"version: STSv1\r\nmode: {mode}\r\nmx: {mx}\r\nmax_age: 86400\r\n"


@pytest.fixture
def sts(tmp_path, make_server):
    """Builds the world: `start(mx_tls, mode)` -> (mailroom, postfix, policy server)."""
    ca = Ca()
    stops = []

    def start(mx_tls, mode, mx="mx1.sts.test", fetch_timeout="20s", stall=False, relay_extra=""):
        main_extra = ""
        if mx_tls is not None:
            cert, key = {
                "good": lambda: ca.issue("mx", "mx1.sts.test"),
                "wrong-name": lambda: ca.issue("mx", "other.sts.test"),
                "self-signed": lambda: ca.issue("mx", "mx1.sts.test", self_signed=True),
            }[mx_tls]()
            main_extra = f"smtpd_tls_security_level = may\nsmtpd_tls_cert_file = {cert}\nsmtpd_tls_key_file = {key}\n"
        pf = Postfix(tmp_path, ip=MX_IP, domains=("sts.test",), main_extra=main_extra)
        stops.append(pf.stop)
        if stall:
            web = Tarpit()
        else:
            web = PolicyServer(ca, policy(mode, mx))
        stops.append(web.stop)
        dns = Dns(tmp_path, mx=[("sts.test", "mx1.sts.test", 10)],
                  a=[("mx1.sts.test", MX_IP), ("mta-sts.sts.test", WEB_IP)],
                  txt=[("_mta-sts.sts.test", "v=STSv1; id=20261207;"),
                       ("_smtp._tls.sts.test", "v=TLSRPTv1; rua=mailto:reports@example.test")])
        stops.append(dns.stop)
        extra = (
            "[relay]\n"
            f'dns_servers = ["{dns.server}"]\n'
            f"remote_port = {pf.port}\n"
            f"mta_sts_port = {web.port}\n"
            f'mta_sts_fetch_timeout = "{fetch_timeout}"\n'
            f'ca_file = "{ca.cert}"\n'
            'retry_schedule = ["1h"]\n'
            f"{relay_extra}"
        )
        s = make_server(trusted=("127.0.0.1/32",), extra=extra)
        s.cli("domain", "add", "example.test")
        s.add_user("reports@example.test")
        s.start()
        stops.append(s.stop)
        return s, pf, web

    yield start
    for stop in reversed(stops):
        stop()
    ca.remove()


def send(s, subject):
    with smtplib.SMTP(HOST, s.smtp_port, timeout=30) as c:
        c.sendmail("alice@example.test", ["bob@sts.test"], f"Subject: {subject}\r\n\r\nhello\r\n".encode())


def test_enforce_with_a_good_certificate_delivers_verified_and_the_policy_survives_a_restart(sts):
    s, pf, web = sts("good", "enforce")
    send(s, "first")
    [got] = pf.wait_messages("bob", 1)
    assert b"Subject: first" in got
    s.wait_log("status=sent")
    line = [l for l in s.log_text().splitlines() if "status=sent" in l][-1]
    assert "verified=mta-sts" in line and "tls=TLSv1." in line, line
    assert "MTA-STS policy id=20261207 mode=enforce" in s.log_text()
    assert web.requests == 1
    assert (s.data / "mta-sts" / "sts.test").is_file()
    # The policy server goes away; after a restart the stored policy (same TXT id) still rules.
    web.stop()
    s.stop()
    s.start()
    send(s, "second")
    pf.wait_messages("bob", 2)
    s.wait_log("verified=mta-sts", count=2)
    assert "policy fetch" not in s.log_text()


@pytest.mark.parametrize("mx_tls,reason", [
    ("wrong-name", "4.7.5 MTA-STS: certificate name mismatch"),
    ("self-signed", "4.7.5 MTA-STS: certificate not trusted"),
    (None, "4.7.5 MTA-STS: STARTTLS not offered"),
])
def test_enforce_defers_when_the_mx_tls_does_not_verify_and_sends_nothing(sts, mx_tls, reason):
    s, pf, web = sts(mx_tls, "enforce")
    send(s, "must not leak")
    s.wait_log("status=deferred")
    out = s.cli("queue", "list").stdout
    assert reason in out, out
    # Postfix saw a connection at most: no envelope, no message.
    time.sleep(0.5)
    assert pf.maildir_messages("bob") == []
    log = pf.log()
    assert "from=<alice@example.test>" not in log and "RCPT" not in log, log[-2000:]


def test_enforce_skips_mx_hosts_the_policy_does_not_name(sts):
    s, pf, web = sts("good", "enforce", mx="mx9.elsewhere.test")
    probes = pf.log().count("connect from")  # wait_port's
    send(s, "wrong mx")
    s.wait_log("status=deferred")
    out = s.cli("queue", "list").stdout
    assert "4.7.5 MTA-STS: MX host not in the policy" in out, out
    time.sleep(0.5)
    assert pf.log().count("connect from") == probes, pf.log()[-2000:]


def test_testing_mode_delivers_despite_a_bad_certificate_and_logs_the_failure(sts):
    s, pf, web = sts("wrong-name", "testing")
    send(s, "testing mode")
    [got] = pf.wait_messages("bob", 1)
    assert b"Subject: testing mode" in got
    s.wait_log("status=sent")
    assert "MTA-STS testing: certificate name mismatch (delivered anyway)" in s.log_text()
    line = [l for l in s.log_text().splitlines() if "status=sent" in l][-1]
    assert "verified=none" in line, line


@pytest.mark.parametrize("hostile", ["stall", "1MiB"])
def test_a_hostile_policy_server_costs_bounded_time_and_the_mail_goes_as_without_policy(sts, hostile):
    """A policy server that never answers (past mta_sts_fetch_timeout = 2s) or answers 1 MiB:
    no policy applies (RFC 8461 §5.1, nothing cached), the mail goes opportunistically."""
    s, pf, web = sts("good", "enforce", fetch_timeout="2s", stall=(hostile == "stall"))
    if hostile == "1MiB":
        web.policy = policy("enforce") + "x" * (1 << 20)
    send(s, "hostile policy server")
    pf.wait_messages("bob", 1)
    s.wait_log("status=sent")
    text = s.log_text()
    want = "timed out after 2s" if hostile == "stall" else "answer larger than 80 KiB"
    assert want in text and "no policy applies" in text, text[-3000:]
    line = [l for l in text.splitlines() if "status=sent" in l][-1]
    assert "verified=ca" in line, line
    assert not (s.data / "mta-sts" / "sts.test").exists()


def test_tls_rpt_report_counts_the_testing_mode_failure_as_rfc_8460_json(sts):
    """tls_reports = true with a 3 s period: the failure of a testing-mode delivery (wrong
    certificate name) is counted in the next report, a gzipped RFC 8460 JSON
    in a multipart/report message to the rua of _smtp._tls.sts.test."""
    import email
    import email.policy
    import gzip
    import json

    s, pf, web = sts("wrong-name", "testing", relay_extra='tls_reports = true\ntls_report_period = "3s"\n')
    send(s, "counted")
    pf.wait_messages("bob", 1)
    [raw] = s.wait_messages("reports@example.test", 1, timeout=30)
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg.get_content_type() == "multipart/report" and msg.get_param("report-type") == "tlsrpt"
    assert msg["TLS-Report-Domain"] == "sts.test"
    [part] = [p for p in msg.iter_attachments() if p.get_content_type() == "application/tlsrpt+gzip"]
    report = json.loads(gzip.decompress(part.get_content()))
    assert report["organization-name"] and report["report-id"] and report["contact-info"]
    assert set(report["date-range"]) == {"start-datetime", "end-datetime"}
    [p] = report["policies"]
    assert p["policy"]["policy-type"] == "sts" and p["policy"]["policy-domain"] == "sts.test"
    assert "mode: testing" in p["policy"]["policy-string"]
    assert p["summary"] == {"total-successful-session-count": 0, "total-failure-session-count": 1}
    [f] = p["failure-details"]
    assert f["result-type"] == "certificate-host-mismatch"
    assert f["receiving-mx-hostname"] == "mx1.sts.test" and f["receiving-ip"] == MX_IP
    assert f["failed-session-count"] == 1


def test_tls_required_no_header_lets_the_message_go_despite_an_enforce_policy(sts):
    """RFC 8689 §5: `TLS-Required: No` (sent without REQUIRETLS) sets the MTA-STS policy
    aside: the wrong-name MX gets it, over its unverified TLS."""
    s, pf, web = sts("wrong-name", "enforce")
    with smtplib.SMTP(HOST, s.smtp_port, timeout=30) as c:
        c.sendmail("alice@example.test", ["bob@sts.test"],
                   b"Subject: no policy please\r\nTLS-Required: No\r\n\r\nhello\r\n")
    [got] = pf.wait_messages("bob", 1)
    assert b"Subject: no policy please" in got
    assert "TLS-Required: No: the MTA-STS policy is not applied" in s.log_text()
    line = [l for l in s.log_text().splitlines() if "status=sent" in l][-1]
    assert "verified=none" in line and "tls=TLSv1." in line, line
