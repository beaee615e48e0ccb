"""DMARC aggregate reports (issue 18, item 7; RFC 7489 §7.2): with `[verify] dmarc_reports`
on and a 2 s period, the results of checked mail from sender.test (which asks for reports at
agg@remote.test, an outside address that agrees by its `_report._dmarc` record) are reported
to a Postfix MX; the gzip attachment is parsed as RFC 7489 XML and its rows counted. A domain
whose outside `rua` does not agree gets no report."""

import base64
import email
import email.policy
import gzip
import re
import smtplib
import subprocess
import xml.etree.ElementTree as ET

import pytest

from conftest import HOST, has
from remote_mta import DNSMASQ, POSTFIX, Dns, Postfix
from test_dkim import PF_IP, dkim

pytestmark = pytest.mark.skipif(not (has(DNSMASQ) and has(POSTFIX) and dkim),
                                reason="dnsmasq, postfix, python3-dkim needed")

DOMAIN = "example.test"
RCPT = f"alice@{DOMAIN}"


@pytest.fixture
def world(tmp_path, make_server):
    pf = Postfix(tmp_path, ip=PF_IP, domains=("remote.test",), users=("agg",))
    d = tmp_path / "key"
    d.mkdir()
    subprocess.run(["openssl", "genrsa", "-out", str(d / "k.pem"), "2048"], check=True, capture_output=True)
    der = subprocess.run(["openssl", "rsa", "-in", str(d / "k.pem"), "-pubout", "-outform", "DER"],
                         check=True, capture_output=True).stdout
    pem, pub = (d / "k.pem").read_bytes(), base64.b64encode(der).decode()
    (tmp_path / "dns").mkdir()
    dns = Dns(tmp_path / "dns", mx=[("remote.test", "mx1.remote.test", 10)], a=[("mx1.remote.test", PF_IP)],
              txt=[("sender.test", "v=spf1 ip4:127.0.0.1 -all"),
                   ("_dmarc.sender.test", "v=DMARC1; p=reject; rua=mailto:agg@remote.test"),
                   ("sel._domainkey.sender.test", f"v=DKIM1; k=rsa; p={pub}"),
                   ("sender.test._report._dmarc.remote.test", "v=DMARC1"),
                   ("other.test", "v=spf1 ip4:127.0.0.1 -all"),
                   ("_dmarc.other.test", "v=DMARC1; p=none; rua=mailto:agg@remote.test")])
    s = make_server(verify=True, extra=f'[dns]\nservers = ["{dns.server}"]\n'
                    '[verify]\ndmarc_reports = true\ndmarc_report_interval = "2s"\n'
                    f'[relay]\nremote_port = {pf.port}\nretry_schedule = ["1s"]\n')
    s.cli("domain", "add", DOMAIN)
    s.add_user(RCPT)
    s.start()
    yield s, pf, pem
    s.stop()
    pf.stop()
    dns.stop()


def send(s, frm, ip, pem=None, subject="m"):
    msg = (f"From: {frm}\r\nTo: {RCPT}\r\nSubject: {subject}\r\n"
           f"Message-ID: <{subject}@x.test>\r\n\r\nHello.\r\n").encode()
    if pem:
        msg = dkim.sign(msg, b"sel", b"sender.test", pem, include_headers=[b"from", b"to", b"subject"]) + msg
    with smtplib.SMTP(HOST, s.smtp_port, timeout=30, source_address=(ip, 0)) as c:
        c.ehlo("client.test")
        c.mail(frm)
        c.rcpt(RCPT)
        return c.data(msg)[0]


def test_aggregate_report_sent_with_counts(world):
    s, pf, pem = world
    assert send(s, "boss@sender.test", "127.0.0.1", pem, "a") == 250
    assert send(s, "boss@sender.test", "127.0.0.1", pem, "b") == 250
    assert send(s, "boss@sender.test", "127.0.0.5", None, "forged") == 550
    # other.test's rua is outside it and remote.test does not agree: no report for it.
    assert send(s, "x@other.test", "127.0.0.1", None, "c") == 250
    [raw] = pf.wait_messages("agg", 1)
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg["From"].addresses[0].addr_spec == "postmaster@mx.example.test"
    assert "Report Domain: sender.test" in msg["Subject"]
    assert re.search(rb"^DKIM-Signature:.*d=example\.test", raw, re.M | re.S)
    [part] = [p for p in msg.walk() if p.get_content_type() == "application/gzip"]
    root = ET.fromstring(gzip.decompress(part.get_payload(decode=True)))
    # mail-auth 0.13.3 writes the DMARCbis namespace around RFC 7489's elements.
    for el in root.iter():
        el.tag = el.tag.split("}", 1)[-1]
    assert root.tag == "feedback"
    assert root.findtext("report_metadata/org_name") == "mx.example.test"
    assert root.findtext("policy_published/domain") == "sender.test"
    assert root.findtext("policy_published/p") == "reject"
    rows = {}
    for rec in root.findall("record"):
        ip = rec.findtext("row/source_ip")
        rows[ip] = (int(rec.findtext("row/count")), rec.findtext("row/policy_evaluated/disposition"),
                    rec.findtext("row/policy_evaluated/dkim"), rec.findtext("row/policy_evaluated/spf"),
                    rec.findtext("identifiers/header_from"))
    assert rows == {
        "127.0.0.1": (2, "none", "pass", "pass", "sender.test"),
        "127.0.0.5": (1, "reject", "fail", "fail", "sender.test"),
    }, rows
    s.wait_log("not reporting to agg@remote.test: other.test._report._dmarc.remote.test does not agree")
    assert len(pf.wait_messages("agg", 1)) == 1
