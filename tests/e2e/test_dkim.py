"""DKIM signing of the mail we send, checked by a real verifier (dkimpy, with PyNaCl for
Ed25519) against the records `mailroom dns-records` printed, served by a real DNS server
(dnsmasq); the mail itself is caught at a real Postfix MX. Also: keys made at `domain add`
are private files, rotation keeps every message verifiable, DSNs are signed, `[dkim] sign =
false` sends unsigned mail, and the CLI's outputs."""

import os
import re
import smtplib
import ssl
import stat

import pytest

from conftest import HOST, has
from remote_mta import DNSMASQ, POSTFIX, Dns, Postfix

try:
    import dkim
    import dns.resolver
    import nacl  # noqa: F401  (dkimpy's Ed25519 needs it)
except ImportError:  # pragma: no cover - reported as a failure under CI by conftest
    dkim = None

pytestmark = pytest.mark.skipif(
    not (has(DNSMASQ) and has(POSTFIX) and dkim), reason="dnsmasq, postfix, python3-dkim, python3-nacl needed"
)

PF_IP = "127.0.0.20"
DOMAIN = "example.test"


def zone_to_dns(tmp_path, lines, mx_ip=PF_IP):
    """Starts dnsmasq serving the zone-file lines `dns-records` printed (plus the MX host of
    remote.test for relaying)."""
    mx, a, txt, srv = [("remote.test", "mx1.remote.test", 10)], [("mx1.remote.test", mx_ip)], [], []
    for line in lines:
        if not line or line.startswith(";"):
            continue
        m = re.match(r"^(\S+)\. (\d+) IN (\S+) (.*)$", line)
        assert m, f"not a zone-file line: {line!r}"
        name, _, kind, data = m.groups()
        if kind == "MX":
            pref, host = data.split()
            mx.append((name, host.rstrip("."), int(pref)))
        elif kind in ("A", "AAAA"):
            a.append((name, data))
        elif kind == "TXT":
            strings = re.findall(r'"((?:[^"\\]|\\.)*)"', data)
            assert strings and all(len(x.encode()) <= 255 for x in strings), line
            txt.append((name, strings))
        elif kind == "SRV":
            prio, weight, port, target = data.split()
            if target != ".":
                srv.append((name, target.rstrip("."), port, prio, weight))
        else:
            raise AssertionError(f"unexpected record type: {line}")
    tmp_path.mkdir(parents=True, exist_ok=True)
    return Dns(tmp_path, mx=mx, a=a, txt=txt, srv=srv)


def txt_lookup(dns_server):
    host, port = dns_server.split(":")
    r = dns.resolver.Resolver(configure=False)
    r.nameservers = [host]
    r.port = int(port)

    def get_txt(name, timeout=5):
        n = name.decode() if isinstance(name, bytes) else name
        try:
            answer = r.resolve(n, "TXT", lifetime=timeout)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return None
        return b"".join(b"".join(rr.strings) for rr in answer)

    return get_txt


def crlf(raw):
    return raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def signatures(raw):
    """(algorithm, d=, s=, tags) of each DKIM-Signature field of the header block, top first."""
    out = []
    head = crlf(raw).split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
    for m in re.finditer(rb"^DKIM-Signature:(.*?)(?=^\S|^\r$)", head, re.M | re.S):
        value = re.sub(rb"\s+", b"", m.group(1)).decode()
        tags = dict(t.split("=", 1) for t in value.split(";") if "=" in t)
        out.append((tags["a"], tags["d"], tags["s"], tags))
    return out


def verify_each(raw, get_txt):
    """Verifies every signature on its own; returns the algorithms that passed."""
    msg = crlf(raw)
    sigs = signatures(raw)
    passed = []
    for i, (a, _, _, _) in enumerate(sigs):
        d = dkim.DKIM(msg)
        try:
            ok = d.verify(idx=i, dnsfunc=get_txt)
        except dkim.DKIMException:
            ok = False
        if ok:
            passed.append(a)
    return passed


def tls_ctx():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def submit(s, to, subject, body=b"hello\r\n", extra=b""):
    with smtplib.SMTP(HOST, s.submission_port, timeout=30) as c:
        c.starttls(context=tls_ctx())
        c.login(f"alice@{DOMAIN}", "alice-pw")
        c.sendmail(
            f"alice@{DOMAIN}",
            [to],
            f"From: Alice <alice@{DOMAIN}>\r\nTo: {to}\r\nSubject: {subject}\r\n".encode()
            + b"Message-ID: <" + subject.encode() + b"@example.test>\r\n" + extra + b"\r\n" + body,
        )


@pytest.fixture
def world(tmp_path, make_server, request):
    marker = request.node.get_closest_marker("dkim_extra")
    dkim_extra = marker.args[0] if marker else ""
    pf = Postfix(tmp_path, ip=PF_IP, domains=("remote.test",))
    (tmp_path / "relay-dns").mkdir()
    relay_dns = Dns(tmp_path / "relay-dns", mx=[("remote.test", "mx1.remote.test", 10)], a=[("mx1.remote.test", PF_IP)])
    extra = (
        f"{dkim_extra}\n"
        "[relay]\n"
        f'dns_servers = ["{relay_dns.server}"]\n'
        f"remote_port = {pf.port}\n"
        'retry_schedule = ["1s"]\n'
    )
    # A small header limit makes messages past 256 KiB stream to disk (Connection::spill_at).
    s = make_server(trusted=("127.0.0.1/32",), extra=extra, smtp_extra="max_header_size = 65536\n")
    out = s.cli("domain", "add", DOMAIN).stdout
    s.add_user(f"alice@{DOMAIN}", "alice-pw")
    s.start()
    yield s, pf, out
    s.stop()
    pf.stop()
    relay_dns.stop()


def test_domain_add_makes_two_private_keys_and_submitted_mail_carries_both_signatures(world, tmp_path):
    s, pf, added = world
    assert re.search(r"DKIM key \S+-ed25519 \(ed25519\) active", added), added
    assert re.search(r"DKIM key \S+-rsa \(rsa\) active", added), added
    keys = sorted((s.data / "dkim").iterdir())
    assert len(keys) == 2
    for k in keys:
        assert stat.S_IMODE(os.stat(k).st_mode) == 0o600, k
    listed = s.cli("dkim", "list").stdout.splitlines()
    assert len(listed) == 2 and all(" active" in l and DOMAIN in l for l in listed), listed

    submit(s, "bob@remote.test", "signed", body=b"a body  with  spaces \r\n\r\n\r\n", extra=b"List-Id: <x.example.test>\r\n")
    # Trusted network (port 25 from 127.0.0.1): signed too.
    with smtplib.SMTP(HOST, s.smtp_port, timeout=30) as c:
        c.sendmail(f"alice@{DOMAIN}", ["carol@remote.test"],
                   f"From: alice@{DOMAIN}\r\nSubject: trusted\r\n\r\nx\r\n".encode())
    [bob] = pf.wait_messages("bob", 1)
    [carol] = pf.wait_messages("carol", 1)

    records = s.cli("dns-records", DOMAIN, "--ipv4", "192.0.2.7").stdout.splitlines()
    served = zone_to_dns(tmp_path / "zone", records)
    try:
        get_txt = txt_lookup(served.server)
        for raw in (bob, carol):
            sigs = signatures(raw)
            assert [a for a, *_ in sigs] == ["ed25519-sha256", "rsa-sha256"], sigs
            for a, d, sel, tags in sigs:
                assert d == DOMAIN
                assert tags["c"] == "relaxed/relaxed"
                assert "l" not in tags
                assert tags["h"].lower().split(":").count("from") == 2
            assert sorted(verify_each(raw, get_txt)) == ["ed25519-sha256", "rsa-sha256"]
        assert "list-id" in signatures(bob)[0][3]["h"].lower()
        # A changed body fails both: the verifier really checks.
        tampered = crlf(bob).replace(b"a body", b"A body")
        assert verify_each(tampered, get_txt) == []
        # The other records are there too, and served.
        assert get_txt(f"_dmarc.{DOMAIN}") == f"v=DMARC1; p=reject; rua=mailto:postmaster@{DOMAIN}".encode()
        assert get_txt(f"_smtp._tls.{DOMAIN}").startswith(b"v=TLSRPTv1;")
        assert get_txt(DOMAIN) == b"v=spf1 ip4:192.0.2.7 -all"
        r = dns.resolver.Resolver(configure=False)
        r.nameservers, r.port = ["127.0.0.1"], served.port
        srv = r.resolve(f"_submission._tcp.{DOMAIN}", "SRV")
        assert [(x.port, str(x.target)) for x in srv] == [(s.submission_port, "mx.example.test.")]
        mx = r.resolve(DOMAIN, "MX")
        assert [str(x.exchange) for x in mx] == ["mx.example.test."]
    finally:
        served.stop()


def test_rotation_keeps_every_message_verifiable(world, tmp_path):
    s, pf, _ = world
    submit(s, "bob@remote.test", "before")
    out = s.cli("dkim", "rotate", DOMAIN).stdout
    new = re.findall(r"DKIM key (\S+) \((ed25519|rsa)\) published", out)
    assert len(new) == 2, out
    # Published, not signing yet.
    submit(s, "bob@remote.test", "published")
    listed = s.cli("dkim", "list", DOMAIN).stdout
    assert listed.count(" published") == 2 and listed.count(" active") == 2, listed
    act = s.cli("dkim", "activate", DOMAIN, new[1][0]).stdout
    assert f"signing with {new[0][0]} (ed25519)" in act and f"signing with {new[1][0]} (rsa)" in act, act
    submit(s, "bob@remote.test", "after")
    listed = s.cli("dkim", "list", DOMAIN).stdout
    assert listed.count(" retired ") == 2 and listed.count(" active") == 2, listed
    msgs = pf.wait_messages("bob", 3)
    by_subject = {re.search(rb"Subject: (\w+)", m).group(1).decode(): m for m in msgs}
    sel = {k: [x[2] for x in signatures(v)] for k, v in by_subject.items()}
    assert sel["before"] == sel["published"]
    assert sel["after"] == [new[0][0], new[1][0]], sel

    records = s.cli("dns-records", DOMAIN).stdout.splitlines()
    assert sum("._domainkey." in l for l in records) == 4, records
    served = zone_to_dns(tmp_path / "zone", records)
    try:
        get_txt = txt_lookup(served.server)
        for subject, raw in by_subject.items():
            assert sorted(verify_each(raw, get_txt)) == ["ed25519-sha256", "rsa-sha256"], subject
    finally:
        served.stop()
    assert s.cli("dkim", "activate", DOMAIN, "nope", check=False).returncode == 1


def test_a_dsn_we_send_is_signed(world, tmp_path):
    s, pf, _ = world
    pf.set_access("/^nobody@/ 550 5.1.1 no such user here\n")
    submit(s, "nobody@remote.test", "bounce")
    [dsn] = s.wait_messages(f"alice@{DOMAIN}", 1)
    assert b"MAILER-DAEMON@mx.example.test" in dsn
    sigs = signatures(dsn)
    assert [(a, d) for a, d, *_ in sigs] == [("ed25519-sha256", DOMAIN), ("rsa-sha256", DOMAIN)], sigs
    served = zone_to_dns(tmp_path / "zone", s.cli("dns-records", DOMAIN).stdout.splitlines())
    try:
        assert sorted(verify_each(dsn, txt_lookup(served.server))) == ["ed25519-sha256", "rsa-sha256"]
    finally:
        served.stop()


def test_large_streamed_message_is_signed(world, tmp_path):
    """Past 256 KiB (with max_header_size 64 KiB) a message streams into its spool file; it is
    signed there, once."""
    s, pf, _ = world
    body = b"".join(b"line %06d of a large message\r\n" % i for i in range(20000))  # ~620 KiB
    submit(s, "bob@remote.test", "large", body=body)
    [raw] = pf.wait_messages("bob", 1)
    served = zone_to_dns(tmp_path / "zone", s.cli("dns-records", DOMAIN).stdout.splitlines())
    try:
        assert sorted(verify_each(raw, txt_lookup(served.server))) == ["ed25519-sha256", "rsa-sha256"]
    finally:
        served.stop()
    assert len(signatures(raw)) == 2


@pytest.mark.dkim_extra("[dkim]\nsign = false\n")
def test_sign_false_sends_unsigned(world):
    s, pf, _ = world
    submit(s, "bob@remote.test", "unsigned")
    [raw] = pf.wait_messages("bob", 1)
    assert signatures(raw) == []
    assert b"Subject: unsigned" in raw


def test_mail_from_outside_is_not_signed(world):
    """Only verified senders' mail is ours to sign: an untrusted client's is passed on as is."""
    s, pf, _ = world
    s.cli("alias", "add", f"fwd@{DOMAIN}", "bob@remote.test")
    # 127.0.0.3 is outside trusted_networks (127.0.0.1/32).
    with smtplib.SMTP(HOST, s.smtp_port, timeout=30, source_address=("127.0.0.3", 0)) as c:
        c.sendmail(f"x@{DOMAIN}", [f"fwd@{DOMAIN}"], f"From: x@{DOMAIN}\r\nSubject: outside\r\n\r\nx\r\n".encode())
    [raw] = pf.wait_messages("bob", 1)
    assert signatures(raw) == []


def test_keys_for_existing_domains_at_first_start(make_server):
    s = make_server()
    # A domain from before keys existed: its keys removed behind the server's back.
    s.cli("domain", "add", "old.test")
    for f in (s.data / "dkim").iterdir():
        f.unlink()
    import sqlite3

    db = sqlite3.connect(s.data / "directory.sqlite3")
    db.execute("DELETE FROM dkim_keys")
    db.commit()
    db.close()
    assert s.cli("dkim", "list").stdout == ""
    s.start()
    try:
        listed = s.cli("dkim", "list", "old.test").stdout.splitlines()
        assert len(listed) == 2 and all(" active" in l for l in listed), listed
        assert "has DKIM keys already" in s.cli("dkim", "generate", "old.test").stdout
    finally:
        s.stop()
    assert s.cli("dkim", "generate", "nosuch.test", check=False).returncode == 1
