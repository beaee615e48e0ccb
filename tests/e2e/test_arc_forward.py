"""ARC sealing of forwarded mail (issue 18, item 4): a DMARC-protected message from a remote
domain (signed by `dkim.sign`, SPF passing) reaches an alias of ours that forwards it to a
Postfix MX; the copy caught there carries our ARC set (i=1, then i=2 over a chain it came
with), and `dkim.arc_verify` (python3-dkim) verifies it against our keys as `dns-records`
printed them, served by dnsmasq with the sender's records."""

import base64
import re
import smtplib
import subprocess

import pytest

from conftest import HOST, HOSTNAME, has
from remote_mta import DNSMASQ, POSTFIX
from test_dkim import PF_IP, crlf, dkim, txt_lookup, zone_to_dns

pytestmark = pytest.mark.skipif(not (has(DNSMASQ) and has(POSTFIX) and dkim),
                                reason="dnsmasq, postfix, python3-dkim needed")

DOMAIN = "example.test"
SENDER_IP = ("127.0.0.1", 0)  # untrusted (conftest trusts 127.0.0.2), allowed by sender.test's SPF


def rsa_key(d):
    subprocess.run(["openssl", "genrsa", "-out", str(d / "k.pem"), "2048"], check=True, capture_output=True)
    der = subprocess.run(["openssl", "rsa", "-in", str(d / "k.pem"), "-pubout", "-outform", "DER"],
                         check=True, capture_output=True).stdout
    return (d / "k.pem").read_bytes(), base64.b64encode(der).decode()


def zone_line(name, value):
    strings = " ".join(f'"{value[i:i + 200]}"' for i in range(0, len(value), 200))
    return f"{name}. 3600 IN TXT {strings}"


@pytest.fixture
def world(tmp_path, make_server):
    from remote_mta import Postfix
    pf = Postfix(tmp_path, ip=PF_IP, domains=("remote.test",))
    pem, pub = rsa_key(tmp_path)
    s = make_server(verify=True, extra='[dns]\nservers = ["127.0.0.1:9"]\n[relay]\n'
                    f'remote_port = {pf.port}\nretry_schedule = ["1s"]\n')
    s.cli("domain", "add", DOMAIN)
    s.cli("alias", "add", f"fwd@{DOMAIN}", "bob@remote.test")
    lines = s.cli("dns-records", DOMAIN).stdout.splitlines() + [
        zone_line("sender.test", "v=spf1 ip4:127.0.0.1 -all"),
        zone_line("_dmarc.sender.test", "v=DMARC1; p=reject"),
        zone_line("sel._domainkey.sender.test", f"v=DKIM1; k=rsa; p={pub}"),
        zone_line("sel._domainkey.fwd.test", f"v=DKIM1; k=rsa; p={pub}"),
    ]
    dns = zone_to_dns(tmp_path / "zone", lines)
    s.config.write_text(s.config.read_text().replace("127.0.0.1:9", dns.server))
    s.start()
    yield s, pf, pem, dns
    s.stop()
    pf.stop()
    dns.stop()


def signed(pem, subject):
    msg = (f"From: Boss <boss@sender.test>\r\nTo: fwd@{DOMAIN}\r\nSubject: {subject}\r\n"
           f"Message-ID: <{subject.replace(' ', '.')}@sender.test>\r\n\r\nHello.\r\n").encode()
    return dkim.sign(msg, b"sel", b"sender.test", pem,
                     include_headers=[b"from", b"to", b"subject", b"message-id"]) + msg


def send(s, msg):
    with smtplib.SMTP(HOST, s.smtp_port, timeout=30, source_address=SENDER_IP) as c:
        c.sendmail("boss@sender.test", [f"fwd@{DOMAIN}"], msg)


def arc_fields(raw):
    head = crlf(raw).split(b"\r\n\r\n", 1)[0]
    return re.findall(rb"^(ARC-[A-Za-z-]+): ?i=(\d+)", head, re.M)


def test_forwarded_copy_is_arc_sealed_and_verifies(world):
    s, pf, pem, dns = world
    send(s, signed(pem, "arc one"))
    [raw] = pf.wait_messages("bob", 1)
    fields = arc_fields(raw)
    assert sorted(fields) == [(b"ARC-Authentication-Results", b"1"), (b"ARC-Message-Signature", b"1"),
                              (b"ARC-Seal", b"1")], raw[:2000]
    head = crlf(raw).split(b"\r\n\r\n", 1)[0].decode()
    assert re.search(r"^ARC-Seal: i=1;.*\bcv=none\b", head.replace("\r\n\t", " ").replace("\r\n ", " "), re.M | re.S), head
    assert f"d={DOMAIN}" in head.replace("\r\n\t", " ")
    # The AAR is our verdict on arrival.
    aar = re.search(r"^ARC-Authentication-Results: (.*?)\r\n(?=\S)", head, re.M | re.S).group(1)
    assert f"i=1; {HOSTNAME}; spf=pass" in aar and "dkim=pass header.d=sender.test" in aar, aar
    assert "dmarc=pass" in aar, aar
    cv, results, reason = dkim.arc_verify(crlf(raw), dnsfunc=txt_lookup(dns.server))
    assert cv == dkim.CV_Pass, (cv, results, reason)
    # The original DKIM signature still verifies too.
    assert dkim.verify(crlf(raw), dnsfunc=txt_lookup(dns.server))


def test_seal_continues_a_chain_it_came_with(world):
    s, pf, pem, dns = world
    msg = b"Authentication-Results: fwd.test; dkim=pass header.d=sender.test\r\n" + signed(pem, "arc two")
    seal = dkim.arc_sign(msg, b"sel", b"fwd.test", pem, b"fwd.test",
                         include_headers=[b"from", b"to", b"subject"])
    send(s, b"".join(seal) + msg)
    [raw] = pf.wait_messages("bob", 1)
    assert sorted(i for _, i in arc_fields(raw)) == [b"1"] * 3 + [b"2"] * 3, raw[:3000]
    head = crlf(raw).split(b"\r\n\r\n", 1)[0].decode().replace("\r\n\t", " ").replace("\r\n ", " ")
    assert re.search(r"^ARC-Seal: i=2;[^\r\n]*\bcv=pass\b", head, re.M), head
    assert "arc=pass" in head
    cv, results, reason = dkim.arc_verify(crlf(raw), dnsfunc=txt_lookup(dns.server))
    assert cv == dkim.CV_Pass, (cv, results, reason)


def test_unchecked_mail_is_sealed_with_none_whatever_it_claims(world):
    """A trusted client's message is not checked: an Authentication-Results naming us in it
    is its own claim, and our AAR must not repeat it."""
    s, pf, pem, dns = world
    forged = f"Authentication-Results: {HOSTNAME}; dkim=pass header.d=bank.test; arc=pass\r\n".encode()
    with smtplib.SMTP(HOST, s.smtp_port, timeout=30, source_address=("127.0.0.2", 0)) as c:
        c.sendmail("boss@sender.test", [f"fwd@{DOMAIN}"], forged + signed(pem, "arc three"))
    [raw] = pf.wait_messages("bob", 1)
    head = crlf(raw).split(b"\r\n\r\n", 1)[0].decode()
    aar = re.search(r"^ARC-Authentication-Results: (.*?)\r\n(?=\S)", head, re.M | re.S).group(1)
    assert aar == f"i=1; {HOSTNAME}; none", aar
    cv, results, reason = dkim.arc_verify(crlf(raw), dnsfunc=txt_lookup(dns.server))
    assert cv == dkim.CV_Pass, (cv, results, reason)
