"""Issue 12, REQUIRETLS (RFC 8689) from smtplib over 587: a message sent with
`mail_options=["REQUIRETLS"]` reaches an MX whose TLS an MTA-STS enforce policy verifies and
which offers REQUIRETLS itself (a second Mailroom with a certificate from the test CA), and is
bounced 5.7.10 toward a domain without verified TLS (Postfix without STARTTLS), the DSN in the
sender's mailbox."""

import smtplib
import ssl
import time

import pytest

from conftest import HOST, has
from remote_mta import DNSMASQ, POSTFIX, Dns, Postfix
from test_mta_sts import WEB_IP, Ca, PolicyServer, policy

pytestmark = pytest.mark.skipif(not (has(DNSMASQ) and has(POSTFIX)), reason="dnsmasq and postfix needed")

MX2_IP = "127.0.0.44"
PLAIN_IP = "127.0.0.45"


@pytest.fixture
def world(tmp_path, make_server):
    ca = Ca()
    pf = Postfix(tmp_path, ip=PLAIN_IP, domains=("plain.test",))
    web = PolicyServer(ca, policy("enforce"))
    dns = Dns(tmp_path,
              mx=[("sts.test", "mx1.sts.test", 10), ("plain.test", "mx1.plain.test", 10)],
              a=[("mx1.sts.test", MX2_IP), ("mta-sts.sts.test", WEB_IP), ("mx1.plain.test", PLAIN_IP)],
              txt=[("_mta-sts.sts.test", "v=STSv1; id=1;")])
    # The REQUIRETLS-capable MX: another Mailroom, also listening on MX2_IP at Postfix's port
    # (the relay has one remote_port), with a certificate for mx1.sts.test.
    cert, key = ca.issue("mx2", "mx1.sts.test")
    mx = make_server(extra=f'[tls]\ncertificate = "{cert}"\nprivate_key = "{key}"\n')
    text = mx.config.read_text()
    own = f'listen = ["{HOST}:{mx.smtp_port}"]'
    assert own in text
    mx.config.write_text(text.replace(own, f'listen = ["{HOST}:{mx.smtp_port}", "{MX2_IP}:{pf.port}"]'))
    mx.cli("domain", "add", "sts.test")
    mx.add_user("bob@sts.test")
    mx.start()
    s = make_server(trusted=("127.0.0.1/32",), extra=(
        "[relay]\n"
        f'dns_servers = ["{dns.server}"]\n'
        f"remote_port = {pf.port}\n"
        f"mta_sts_port = {web.port}\n"
        f'ca_file = "{ca.cert}"\n'
        'retry_schedule = ["1h"]\n'))
    s.cli("domain", "add", "example.test")
    s.add_user("alice@example.test", "alice-pw")
    s.start()
    yield s, mx, pf
    s.stop()
    mx.stop()
    dns.stop()
    web.stop()
    pf.stop()
    ca.remove()


def submit(s, rcpt, subject, headers=""):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with smtplib.SMTP(HOST, s.submission_port, timeout=30) as c:
        c.starttls(context=ctx)
        c.ehlo()
        assert c.has_extn("requiretls"), c.esmtp_features
        c.login("alice@example.test", "alice-pw")
        msg = f"From: alice@example.test\r\nTo: {rcpt}\r\nSubject: {subject}\r\n{headers}\r\nbody\r\n"
        c.sendmail("alice@example.test", [rcpt], msg.encode(), mail_options=["REQUIRETLS"])


def test_requiretls_delivered_over_mta_sts_verified_tls_to_a_requiretls_mx(world):
    s, mx, pf = world
    submit(s, "bob@sts.test", "must be protected")
    [got] = mx.wait_messages("bob@sts.test", 1)
    assert b"Subject: must be protected" in got
    s.wait_log("status=sent")
    line = [l for l in s.log_text().splitlines() if "status=sent" in l][-1]
    assert "verified=mta-sts" in line, line


def test_requiretls_bounced_5_7_10_toward_a_domain_without_verified_tls(world):
    s, mx, pf = world
    submit(s, "bob@plain.test", "no verified hop")
    [dsn] = s.wait_messages("alice@example.test", 1)
    assert b"5.7.10" in dsn and b"REQUIRETLS" in dsn, dsn[:3000]
    time.sleep(0.5)
    assert pf.maildir_messages("bob") == []
    assert "from=<alice@example.test>" not in pf.log()


def test_without_requiretls_the_same_message_goes_out_in_plaintext(world):
    """The control: the 5.7.10 above is REQUIRETLS's doing, not the route's."""
    s, mx, pf = world
    with smtplib.SMTP(HOST, s.smtp_port, timeout=30) as c:
        c.sendmail("alice@example.test", ["bob@plain.test"], b"Subject: plain ok\r\n\r\nx\r\n")
    [got] = pf.wait_messages("bob", 1)
    assert b"Subject: plain ok" in got
