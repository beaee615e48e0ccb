"""Inbound SPF/DKIM/DMARC/ARC checks on port 25 (issue 18): dnsmasq serves the records of
remote domains, messages are signed by Python's `dkim.sign` (python3-dkim), and sent with
smtplib from 127.0.0.1 (allowed by the test domains' SPF) or 127.0.0.5 (not allowed). Neither
address is in trusted_networks (conftest trusts only 127.0.0.2), so every message is checked.
What the server concluded is read from the `Authentication-Results:` it prepended."""

import base64
import smtplib
import subprocess

import pytest

from conftest import HOST, HOSTNAME, has
from remote_mta import DNSMASQ, Dns

dkim = pytest.importorskip("dkim")

pytestmark = pytest.mark.skipif(not has(DNSMASQ), reason="dnsmasq needed")

GOOD_IP = "127.0.0.1"
BAD_IP = "127.0.0.5"
RCPT = "alice@example.test"
HEADER_LIMIT = 65536
STREAMED = 256 * 1024  # Connection::spill_at with that header limit
MEMORY_LIMIT_KIB = 60 << 10


@pytest.fixture(scope="module")
def rsa_key(tmp_path_factory):
    """An RSA-2048 key pair: (private PEM, public key as a DKIM p= value)."""
    d = tmp_path_factory.mktemp("dkim")
    subprocess.run(["openssl", "genrsa", "-out", str(d / "k.pem"), "2048"], check=True, capture_output=True)
    der = subprocess.run(["openssl", "rsa", "-in", str(d / "k.pem"), "-pubout", "-outform", "DER"],
                         check=True, capture_output=True).stdout
    return (d / "k.pem").read_bytes(), base64.b64encode(der).decode()


def records(pub):
    spf_ok = "v=spf1 ip4:127.0.0.1 -all"
    key = f"v=DKIM1; k=rsa; p={pub}"
    txt = [
        ("reject.test", spf_ok), ("_dmarc.reject.test", "v=DMARC1; p=reject"),
        ("sel._domainkey.reject.test", key),
        ("sel._domainkey.mail.reject.test", key),
        ("sel._domainkey.fwd.test", key),
        ("none.test", spf_ok), ("_dmarc.none.test", "v=DMARC1; p=none"),
        ("quar.test", spf_ok), ("_dmarc.quar.test", "v=DMARC1; p=quarantine"),
        ("soft.test", "v=spf1 ip4:127.0.0.1 ~all"),
        ("spfonly.test", spf_ok),
        ("helo.test", spf_ok),
        # Hostile records: each must give a result, never a crash or a hang.
        ("loop.test", "v=spf1 include:loop.test -all"),
        ("many.test", "v=spf1 " + " ".join(f"include:i{n}.many.test" for n in range(12)) + " -all"),
        *[(f"i{n}.many.test", "v=spf1 ip4:10.0.0.1 -all") for n in range(12)],
        ("big.test", "v=spf1 " + " ".join(f"ip4:10.{n // 250}.{n % 250}.1" for n in range(400)) + " -all"),
        ("wrongtype._domainkey.reject.test", f"v=DKIM1; k=ed25519; p={pub}"),
        ("garbage._domainkey.reject.test", "v=DKIM1; k=rsa; p=!!!not-base64!!!"),
        ("baddmarc.test", spf_ok), ("_dmarc.baddmarc.test", "v=DMARC1; p=bogus; pct=abc; adkim=x; rua=:::"),
    ]
    return txt


@pytest.fixture
def world(tmp_path, make_server, rsa_key, request):
    """dnsmasq with the remote domains' records + a Mailroom checking mail on port 25.
    `@pytest.mark.verify_extra("...")` adds `[verify]` keys."""
    marker = request.node.get_closest_marker("verify_extra")
    verify_extra = marker.args[0] if marker else ""
    pem, pub = rsa_key
    big = [t for n, t in records(pub) if n == "big.test"][0]
    assert len(big) > 5000
    dns = Dns(tmp_path, txt=records(pub),
              # Queries under tempfail.test go to a server that is not there: SERVFAIL.
              forward=[("tempfail._domainkey.reject.test", "127.0.0.1#9")])
    extra = f'[dns]\nservers = ["{dns.server}"]\n[verify]\n{verify_extra}\n'
    # Messages past max(max_header_size, 256 KiB) are streamed to the spool before their end.
    s = make_server(extra=extra, verify=True, max_message_size=20 << 20,
                    smtp_extra=f"max_header_size = {HEADER_LIMIT}\n")
    s.cli("domain", "add", "example.test")
    s.add_user(RCPT)
    s.start()
    yield s, pem
    s.stop()
    dns.stop()


def message(frm, subject="test", body="Hello.\r\n", extra_headers=""):
    return (f"From: {frm}\r\nTo: {RCPT}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject.replace(' ', '.')}@test>\r\n{extra_headers}\r\n{body}").encode()


def sign(msg, pem, domain, selector="sel"):
    sig = dkim.sign(msg, selector.encode(), domain.encode(), pem,
                    include_headers=[b"from", b"to", b"subject", b"message-id"])
    return sig + msg


def send(s, sender, msg, ip=GOOD_IP, helo="client.test"):
    """Sends one message; returns the reply to the end of DATA as (code, text)."""
    with smtplib.SMTP(HOST, s.smtp_port, local_hostname=helo, source_address=(ip, 0), timeout=60) as c:
        c.ehlo(helo)
        code, _ = c.mail(sender)
        assert code == 250
        code, _ = c.rcpt(RCPT)
        assert code == 250
        code, text = c.data(msg)
        return code, text.decode()


def auth_results(text):
    """Our Authentication-Results field, unfolded."""
    head = text.split("\r\n\r\n", 1)[0]
    fields = head.replace("\r\n\t", " ").replace("\r\n ", " ").split("\r\n")
    ours = [f for f in fields if f.lower().startswith("authentication-results:")
            and f.split(":", 1)[1].strip().split(";")[0].strip() == HOSTNAME]
    assert len(ours) == 1, head
    return ours[0]


def send_and_read(s, sender, msg, ip=GOOD_IP, helo="client.test", n=1):
    code, text = send(s, sender, msg, ip, helo)
    assert code == 250, text
    body = s.wait_messages(RCPT, n)[n - 1].decode()
    return body, auth_results(body)


def test_valid_signature_passes_everything(world):
    s, pem = world
    msg = sign(message("Boss <boss@reject.test>"), pem, "reject.test")
    body, ar = send_and_read(s, "boss@reject.test", msg)
    assert "spf=pass smtp.mailfrom=boss@reject.test" in ar
    assert "dkim=pass header.d=reject.test header.s=sel" in ar
    assert "dmarc=pass" in ar and "header.from=reject.test" in ar
    assert "arc=none" in ar
    # Prepended: above the message's own header fields.
    assert body.index("Authentication-Results:") < body.index("From: Boss")
    assert "X-Spam-Flag" not in body


def test_changed_body_fails_dkim(world):
    s, pem = world
    msg = sign(message("boss@reject.test"), pem, "reject.test").replace(b"Hello.", b"Hullo.")
    _, ar = send_and_read(s, "boss@reject.test", msg)
    assert "dkim=fail" in ar and "header.d=reject.test" in ar
    # SPF still aligns: DMARC passes and the message is delivered.
    assert "dmarc=pass" in ar


def test_unknown_selector_and_hostile_keys(world):
    s, pem = world
    n = 0
    for selector in ("nosuch", "wrongtype", "garbage"):
        n += 1
        msg = sign(message("boss@reject.test", subject=f"sel {selector}"), pem, "reject.test", selector)
        _, ar = send_and_read(s, "boss@reject.test", msg, n=n)
        dkim_part = [p for p in ar.split(";") if p.strip().startswith("dkim=")][0]
        assert f"header.s={selector}" in dkim_part, ar
        assert "dkim=pass" not in dkim_part, ar
        assert any(f"dkim={r}" in dkim_part for r in ("permerror", "fail", "neutral")), ar


@pytest.mark.parametrize("sender,ip,result", [
    ("a@soft.test", GOOD_IP, "pass"),
    ("a@soft.test", BAD_IP, "softfail"),
    ("a@spfonly.test", BAD_IP, "fail"),
    ("a@nospf.test", BAD_IP, "none"),
])
def test_spf_by_client_address(world, sender, ip, result):
    s, _ = world
    _, ar = send_and_read(s, sender, message(sender), ip=ip)
    assert f"spf={result} smtp.mailfrom={sender}" in ar


def test_null_sender_checks_helo(world):
    s, _ = world
    _, ar = send_and_read(s, "", message("mailer-daemon@helo.test"), helo="helo.test")
    assert "spf=pass smtp.helo=helo.test" in ar


def test_dmarc_reject_refuses_forged_from_and_stores_nothing(world):
    s, _ = world
    code, text = send(s, "x@nospf.test", message("CEO <ceo@reject.test>"), ip=BAD_IP)
    assert code == 550, text
    assert text.startswith("5.7.1") and "reject.test" in text
    assert s.messages(RCPT) == []
    assert s.queue_files() == []
    s.wait_log("verify: from=<x@nospf.test>")
    assert "accepted from=<x@nospf.test>" not in s.log_text()


def test_dmarc_none_delivers_with_fail(world):
    s, _ = world
    body, ar = send_and_read(s, "x@nospf.test", message("a@none.test"), ip=BAD_IP)
    assert "dmarc=fail" in ar and "header.from=none.test" in ar
    assert "X-Spam-Flag" not in body


def test_dmarc_quarantine_flags_spam(world):
    s, _ = world
    body, ar = send_and_read(s, "x@nospf.test", message("a@quar.test"), ip=BAD_IP)
    assert "dmarc=fail" in ar
    head = body.split("\r\n\r\n", 1)[0]
    assert "\r\nX-Spam-Flag: YES\r\n" in head
    status = [line for line in head.split("\r\n") if line.startswith("X-Spam-Status:")]
    assert status and "quar.test" in status[0] and "quarantine" in status[0]


def test_relaxed_alignment_with_subdomain_signature(world):
    s, pem = world
    msg = sign(message("boss@reject.test"), pem, "mail.reject.test")
    body, ar = send_and_read(s, "x@nospf.test", msg, ip=BAD_IP)
    assert "dkim=pass header.d=mail.reject.test" in ar
    assert "dmarc=pass" in ar


def test_forged_authentication_results_naming_us_are_removed(world):
    s, _ = world
    forged = (f"Authentication-Results: {HOSTNAME}; dkim=pass header.d=bank.test\r\n"
              f"Authentication-Results: {HOSTNAME.upper()}\r\n\t; dmarc=pass\r\n"
              "Authentication-Results: other.test; spf=pass\r\n")
    body, ar = send_and_read(s, "a@soft.test", message("a@soft.test", extra_headers=forged))
    head = body.split("\r\n\r\n", 1)[0]
    assert "bank.test" not in head and "dmarc=pass" not in head
    assert "Authentication-Results: other.test; spf=pass" in head
    assert "spf=pass" in ar


def test_hostile_spf_records_give_a_result(world):
    s, _ = world
    n = 0
    for domain, expect in (("loop.test", "permerror"), ("many.test", "permerror"), ("big.test", None)):
        n += 1
        _, ar = send_and_read(s, f"a@{domain}", message(f"a@{domain}", subject=domain), ip=BAD_IP, n=n)
        part = [p for p in ar.split(";") if p.strip().startswith("spf=")][0]
        if expect:
            assert f"spf={expect}" in part, ar
        else:
            assert f"smtp.mailfrom=a@{domain}" in part, ar


def test_malformed_dmarc_is_a_result(world):
    s, _ = world
    _, ar = send_and_read(s, "x@nospf.test", message("a@baddmarc.test"), ip=BAD_IP)
    assert "dmarc=" in ar and "header.from=baddmarc.test" in ar


def test_dns_temporary_error_where_policy_rejects_is_451(world):
    s, pem = world
    # SPF does not pass (wrong client); the only aligned signature's key cannot be fetched.
    msg = sign(message("boss@reject.test"), pem, "reject.test", "tempfail")
    code, text = send(s, "x@nospf.test", msg, ip=BAD_IP)
    assert code == 451, text
    assert text.startswith("4.7.5") and "reject.test" in text
    assert s.messages(RCPT) == []


@pytest.mark.verify_extra("dmarc_reject = false")
def test_dmarc_reject_off_only_tags(world):
    s, _ = world
    body, ar = send_and_read(s, "x@nospf.test", message("ceo@reject.test"), ip=BAD_IP)
    assert "dmarc=fail" in ar
    assert "\r\nX-Spam-Flag: YES\r\n" in body.split("\r\n\r\n", 1)[0]


@pytest.mark.verify_extra("spf_reject = true")
def test_spf_reject_refuses_hard_fail_without_dmarc(world):
    s, _ = world
    code, text = send(s, "a@spfonly.test", message("a@spfonly.test"), ip=BAD_IP)
    assert code == 550 and text.startswith("5.7.23"), text
    # Softfail is never refused.
    code, text = send(s, "a@soft.test", message("a@soft.test"), ip=BAD_IP)
    assert code == 250, text
    assert len(s.wait_messages(RCPT, 1)) == 1


def arc_seal(msg, pem):
    """msg as a forwarder (fwd.test) passes it on: its own Authentication-Results, then an
    ARC set (i=1) by dkim.arc_sign (needs python3-authres)."""
    msg = b"Authentication-Results: fwd.test; spf=pass smtp.mailfrom=a@soft.test\r\n" + msg
    seal = dkim.arc_sign(msg, b"sel", b"fwd.test", pem, b"fwd.test",
                         include_headers=[b"from", b"to", b"subject"])
    return b"".join(seal) + msg


def test_arc_chain(world):
    s, pem = world
    sealed = arc_seal(message("a@soft.test", subject="arc ok"), pem)
    _, ar = send_and_read(s, "x@nospf.test", sealed, ip=BAD_IP)
    assert "arc=pass" in ar, ar
    # The body changed after the seal: the chain no longer verifies.
    tampered = arc_seal(message("a@soft.test", subject="arc bad"), pem).replace(b"Hello.", b"Hullo.")
    _, ar = send_and_read(s, "x@nospf.test", tampered, ip=BAD_IP, n=2)
    assert "arc=fail" in ar, ar


def test_trusted_client_is_not_checked(world):
    s, _ = world
    # The same forged From: from a trusted address is delivered without our header.
    code, text = send(s, "x@nospf.test", message("ceo@reject.test"), ip="127.0.0.2")
    assert code == 250, text
    body = s.wait_messages(RCPT, 1)[0].decode()
    assert "Authentication-Results" not in body


def padded(frm, subject, extra_headers=""):
    """A message whose body (3 MiB of lines) makes it streamed to the spool before its end."""
    line = "padding " * 9 + "\r\n"
    body = "Hello.\r\n" + line * (3 * 1024 * 1024 // len(line))
    msg = message(frm, subject=subject, body=body, extra_headers=extra_headers)
    assert len(msg) > 10 * STREAMED
    return msg


def test_large_forged_reject_message_is_refused_and_nothing_stored(world):
    s, _ = world
    code, text = send(s, "x@nospf.test", padded("CEO <ceo@reject.test>", "big forged"), ip=BAD_IP)
    assert code == 550, text
    assert text.startswith("5.7.1") and "reject.test" in text
    assert s.messages(RCPT) == []
    assert s.queue_files() == []
    assert list((s.data / "queue" / "tmp").iterdir()) == []
    assert "accepted from=<x@nospf.test>" not in s.log_text()


def test_large_signed_message_passes_and_is_delivered_whole(world):
    s, pem = world
    forged = f"Authentication-Results: {HOSTNAME}; dmarc=pass header.from=bank.test\r\n"
    msg = sign(padded("Boss <boss@reject.test>", "big signed", forged), pem, "reject.test")
    body, ar = send_and_read(s, "x@nospf.test", msg, ip=BAD_IP)
    assert "dkim=pass header.d=reject.test header.s=sel" in ar, ar
    assert "dmarc=pass" in ar and "spf=none" in ar
    head, rest = body.encode().split(b"\r\n\r\n", 1)
    assert b"bank.test" not in head
    assert head.index(b"Authentication-Results:") < head.index(b"From: Boss")
    # The body arrived byte for byte.
    assert rest == msg.split(b"\r\n\r\n", 1)[1]
    # And the same body changed after signing fails DKIM (hashes from the file, not skipped).
    changed = msg.replace(b"Hello.", b"Hullo.")
    code, text = send(s, "x@nospf.test", changed, ip=BAD_IP)
    assert code == 550 and text.startswith("5.7.1"), text


def test_large_messages_are_checked_in_bounded_memory(world):
    """6 signed 16 MiB messages checked at once: the server's peak RSS stays far below what
    holding them would take (96 MiB): body hashes come from the spool file in blocks."""
    import threading

    s, pem = world
    line = "x" * 78 + "\r\n"
    msg = sign(message("boss@reject.test", subject="huge", body=line * (16 * 1024 * 1024 // 80)),
               pem, "reject.test")
    assert len(msg) > 16_000_000
    before = rss_kib(s.proc.pid, "VmRSS")
    codes, errors = [], []

    def one():
        try:
            codes.append(send(s, "boss@reject.test", msg)[0])
        except Exception as e:  # reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=one) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and codes == [250] * 6, (codes, errors)
    peak = rss_kib(s.proc.pid, "VmHWM")
    print(f"RSS before {before} KiB, peak {peak} KiB")
    assert peak < MEMORY_LIMIT_KIB, (before, peak)
    bodies = s.wait_messages(RCPT, 6)
    assert all("dkim=pass header.d=reject.test" in auth_results(b.decode()) for b in bodies)
    assert all(b.endswith(msg.split(b"\r\n\r\n", 1)[1]) for b in bodies)


def rss_kib(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for field in f:
            if field.startswith(key + ":"):
                return int(field.split()[1])
    return 0
