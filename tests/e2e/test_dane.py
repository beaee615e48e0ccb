"""Issue 12, DANE (RFC 7672) over a real DNSSEC chain: Debian's knotd signs the test zone
`dane.test` (automatic signing, its own config, on a 127.0.0.x port); Debian's unbound
validates it with the zone's KSK as its only trust anchor (`val-permissive-mode: no`) and
is Mailroom's `[dns]` server, so the AD bit Mailroom trusts comes from a real validator.
Postfix is the MX with a certificate from a test CA that Mailroom does NOT trust
(no `ca_file`): only a TLSA record can verify it."""

import email
import email.policy
import gzip
import hashlib
import json
import os
import pathlib
import shutil
import smtplib
import subprocess
import time

import pytest

from conftest import HOST, free_port, has, wait_port
from remote_mta import POSTFIX, Postfix
from test_mta_sts import Ca

KNOTD = shutil.which("knotd") or "/usr/sbin/knotd"
KDIG = shutil.which("kdig") or "/usr/bin/kdig"
UNBOUND = shutil.which("unbound") or "/usr/sbin/unbound"

pytestmark = pytest.mark.skipif(not (has(KNOTD) and has(KDIG) and has(UNBOUND) and has(POSTFIX)),
                                reason="knotd, kdig, unbound and postfix needed")

KNOT_IP = "127.0.0.71"
MX_IP = "127.0.0.72"
UNBOUND_IP = "127.0.0.73"


def der_of(pem, public_key=False):
    """DER of a PEM certificate, or of its SubjectPublicKeyInfo."""
    if public_key:
        pub = subprocess.run(["openssl", "x509", "-in", str(pem), "-noout", "-pubkey"],
                             check=True, capture_output=True).stdout
        return subprocess.run(["openssl", "pkey", "-pubin", "-outform", "DER"], input=pub,
                              check=True, capture_output=True).stdout
    return subprocess.run(["openssl", "x509", "-in", str(pem), "-outform", "DER"],
                          check=True, capture_output=True).stdout


def tlsa(usage, selector, pem):
    """`usage selector 1 <sha256>` of a certificate (selector 0) or its key (selector 1)."""
    return f"{usage} {selector} 1 {hashlib.sha256(der_of(pem, selector == 1)).hexdigest()}"


class Knot:
    """knotd serving `zones` ({name: (records, signed)}); a signed zone gets ECDSA P-256 keys
    at its first load (automatic signing)."""

    def __init__(self, tmp: pathlib.Path, zones):
        self.dir = tmp / "knot"
        (self.dir / "zones").mkdir(parents=True)
        (self.dir / "db").mkdir()
        self.port = free_port(KNOT_IP)
        self.zones = zones
        entries = ""
        for name, (records, signed) in zones.items():
            zone = [f"$ORIGIN {name}.", "$TTL 300",
                    f"@ SOA ns.{name}. hostmaster.{name}. 1 3600 900 604800 300",
                    f"@ NS ns.{name}.", f"ns A {KNOT_IP}", *records]
            (self.dir / "zones" / f"{name}.zone").write_text("\n".join(zone) + "\n")
            entries += f"  - domain: {name}\n    dnssec-signing: {'on' if signed else 'off'}\n"
        (self.dir / "knot.conf").write_text(f"""server:
    rundir: "{self.dir}"
    user: root:root
    listen: {KNOT_IP}@{self.port}
database:
    storage: "{self.dir / 'db'}"
log:
  - target: {self.dir / 'knot.log'}
    any: info
template:
  - id: default
    storage: "{self.dir / 'zones'}"
    file: "%s.zone"
    zonefile-sync: -1
    zonefile-load: difference-no-serial
    journal-content: all
zone:
{entries}""")
        self.proc = subprocess.Popen([KNOTD, "-c", str(self.dir / "knot.conf")],
                                     stdout=subprocess.DEVNULL, stderr=open(self.dir / "knotd.err", "ab"))
        self.ksk = {name: self._wait_signed(name) for name, (_, signed) in zones.items() if signed}

    def _wait_signed(self, zone, timeout=15.0):
        """The zone's KSK (`257 3 13 ...`) once knotd answers with the signed zone."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError((self.dir / "knotd.err").read_text())
            out = subprocess.run([KDIG, f"@{KNOT_IP}", "-p", str(self.port), "+short", "+time=1",
                                  "DNSKEY", f"{zone}."], capture_output=True, text=True).stdout
            ksk = [l for l in out.splitlines() if l.startswith("257 ")]
            if ksk:
                return ksk[0]
            time.sleep(0.1)
        raise TimeoutError("knotd does not serve the signed zone")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


class Unbound:
    """unbound validating knotd's zones (a stub zone each) with the KSKs of `anchored` zones as
    its only trust anchors; a zone without one is insecure to it (AD never set)."""

    def __init__(self, tmp: pathlib.Path, knot: Knot, anchored):
        self.dir = tmp / "unbound"
        self.dir.mkdir()
        self.port = free_port(UNBOUND_IP)
        trust = "".join(f'    trust-anchor: "{z}. DNSKEY {knot.ksk[z]}"\n' for z in anchored)
        stubs = "".join(f'stub-zone:\n    name: "{z}"\n    stub-addr: {KNOT_IP}@{knot.port}\n'
                        for z in knot.zones)
        (self.dir / "unbound.conf").write_text(f"""server:
    interface: {UNBOUND_IP}
    port: {self.port}
    username: ""
    chroot: ""
    directory: "{self.dir}"
    pidfile: "{self.dir / 'unbound.pid'}"
    logfile: "{self.dir / 'unbound.log'}"
    use-syslog: no
    do-daemonize: no
    do-ip6: no
    do-not-query-localhost: no
    module-config: "validator iterator"
    val-permissive-mode: no
    access-control: 127.0.0.0/8 allow
    local-zone: "test." nodefault
    verbosity: 1
{trust}remote-control:
    control-enable: no
{stubs}""")
        self.proc = subprocess.Popen([UNBOUND, "-d", "-c", str(self.dir / "unbound.conf")],
                                     stdout=subprocess.DEVNULL, stderr=open(self.dir / "unbound.err", "ab"))
        self._wait_ready()

    def _wait_ready(self, timeout=15.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError((self.dir / "unbound.err").read_text())
            r = subprocess.run([KDIG, f"@{UNBOUND_IP}", "-p", str(self.port), "+time=1", "+adflag",
                                "SOA", "dane.test."], capture_output=True, text=True).stdout
            if "status: NOERROR" in r:
                return r
            time.sleep(0.1)
        raise TimeoutError("unbound does not answer for dane.test")

    def flags(self, name, rtype):
        """The header flags of unbound's answer (`qr rd ra ad`)."""
        out = subprocess.run([KDIG, f"@{UNBOUND_IP}", "-p", str(self.port), "+adflag", rtype, name],
                             capture_output=True, text=True).stdout
        return [l for l in out.splitlines() if l.startswith(";; Flags:")][0]

    @property
    def server(self):
        return f"{UNBOUND_IP}:{self.port}"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


@pytest.fixture
def dane(tmp_path, make_server):
    """`start(tlsa_of, anchored=True, mx_tls=True)` -> (mailroom, postfix, unbound, certs);
    `tlsa_of(certs)` gives the TLSA records of the MX (certs: {"mx": pem, "ca": pem})."""
    ca = Ca()
    stops = []

    def start(tlsa_of, anchored=True, mx_tls=True, relay_extra="", zone_extra=(), layout="signed",
              mailroom_mx=False):
        """`layout`: "signed" (mx1.dane.test and its TLSA in the signed dane.test);
        "insecure-tlsa" (the TLSA in `_tcp.mx1.dane.test`, an unsigned zone delegated from
        the signed one without DS); "insecure-address" (MX mx1.plain.test in the unsigned
        plain.test, its TLSA in `_tcp.mx1.plain.test`, signed and anchored: a secure TLSA
        answer for a host whose address answer is not). `mailroom_mx`: the MX is another
        Mailroom (it offers REQUIRETLS) instead of Postfix."""
        cert, key = ca.issue("mx", "mx1.dane.test")
        certs = {"mx": cert, "ca": ca.cert}
        main_extra = ""
        if mx_tls:
            # Key, certificate and the CA: the chain DANE-TA needs (RFC 7672 §3.2.1).
            chain = ca.dir / "chain.pem"
            chain.write_bytes(pathlib.Path(key).read_bytes() + pathlib.Path(cert).read_bytes()
                              + ca.cert.read_bytes())
            os.chmod(chain, 0o644)
            main_extra = f"smtpd_tls_security_level = may\nsmtpd_tls_chain_files = {chain}\n"
        if mailroom_mx:
            # Listening on MX_IP too, at a port of its own that the relay's remote_port names.
            pf = make_server(extra=f'[tls]\ncertificate = "{cert}"\nprivate_key = "{key}"\n')
            pf.port = free_port(MX_IP)
            text = pf.config.read_text()
            own = f'listen = ["{HOST}:{pf.smtp_port}"]'
            assert own in text
            pf.config.write_text(text.replace(own, f'listen = ["{HOST}:{pf.smtp_port}", "{MX_IP}:{pf.port}"]'))
            pf.cli("domain", "add", "dane.test")
            pf.add_user("bob@dane.test")
            pf.start()
        else:
            pf = Postfix(tmp_path, ip=MX_IP, domains=("dane.test",), main_extra=main_extra)
        stops.append(pf.stop)
        host = "mx1.plain.test" if layout == "insecure-address" else "mx1.dane.test"
        tlsas = [f"_{pf.port} TLSA {r}" for r in tlsa_of(certs)]
        dane_zone = [f"@ MX 10 {host}.", *zone_extra]
        zones = {}
        if layout == "signed":
            dane_zone += [f"mx1 A {MX_IP}"] + [f"_{pf.port}._tcp.mx1 TLSA {r}" for r in tlsa_of(certs)]
        elif layout == "insecure-tlsa":
            dane_zone += [f"mx1 A {MX_IP}", "_tcp.mx1 NS ns.dane.test."]
            zones["_tcp.mx1.dane.test"] = (tlsas, False)
        else:
            zones["plain.test"] = ([f"mx1 A {MX_IP}", "_tcp.mx1 NS ns.plain.test."], False)
            zones["_tcp.mx1.plain.test"] = (tlsas, True)
        zones["dane.test"] = (dane_zone, True)
        knot = Knot(tmp_path, zones)
        stops.append(knot.stop)
        anchors = [z for z, (_, signed) in zones.items() if signed] if anchored else []
        ub = Unbound(tmp_path, knot, anchors)
        stops.append(ub.stop)
        s = make_server(trusted=("127.0.0.1/32",), extra=(
            "[dns]\n"
            f'servers = ["{ub.server}"]\n'
            "[relay]\n"
            f"remote_port = {pf.port}\n"
            'retry_schedule = ["1h"]\n'
            f"{relay_extra}"))
        s.cli("domain", "add", "example.test")
        s.add_user("reports@example.test")
        s.add_user("alice@example.test", "alice-pw")
        s.start()
        stops.append(s.stop)
        return s, pf, ub, certs

    yield start
    for stop in reversed(stops):
        stop()
    ca.remove()


def send(s, subject):
    with smtplib.SMTP(HOST, s.smtp_port, timeout=30) as c:
        c.sendmail("alice@example.test", ["bob@dane.test"], f"Subject: {subject}\r\n\r\nhello\r\n".encode())


def sent_line(s):
    s.wait_log("status=sent")
    return [l for l in s.log_text().splitlines() if "status=sent" in l][-1]


def assert_nothing_reached(pf):
    time.sleep(0.5)
    assert pf.maildir_messages("bob") == []
    log = pf.log()
    assert "from=<alice@example.test>" not in log and "RCPT" not in log, log[-2000:]


def test_tlsa_3_1_1_of_the_mx_key_delivers_verified_by_dane(dane):
    s, pf, ub, certs = dane(lambda c: [tlsa(3, 1, c["mx"])])
    # The chain is real: unbound vouches for the MX address and its TLSA record.
    assert " ad;" in ub.flags("mx1.dane.test", "A") + ";"
    send(s, "dane ee")
    [got] = pf.wait_messages("bob", 1)
    assert b"Subject: dane ee" in got
    line = sent_line(s)
    assert "verified=dane" in line and "tls=TLSv1." in line, line


def test_a_wrong_tlsa_record_defers_and_the_mx_receives_nothing(dane):
    other = Ca()
    try:
        wrong_cert, _ = other.issue("other", "mx1.dane.test")
        s, pf, ub, certs = dane(lambda c: [tlsa(3, 1, wrong_cert), tlsa(2, 0, other.cert)])
        send(s, "must not leak")
        s.wait_log("status=deferred")
        out = s.cli("queue", "list").stdout
        assert "4.7.5 DANE: no TLSA record matches the certificate of mx1.dane.test" in out, out
        assert_nothing_reached(pf)
    finally:
        other.remove()


def test_tlsa_records_make_starttls_mandatory(dane):
    """The MX offers no STARTTLS: deferred, never sent in plaintext."""
    s, pf, ub, certs = dane(lambda c: [tlsa(3, 1, c["mx"])], mx_tls=False)
    send(s, "no starttls")
    s.wait_log("status=deferred")
    out = s.cli("queue", "list").stdout
    assert "4.7.5 DANE: STARTTLS required by TLSA records, not offered" in out, out
    assert_nothing_reached(pf)


def test_without_the_trust_anchor_no_dane_applies_and_mail_goes_opportunistically(dane):
    """The same signed zone, but unbound has no anchor for it: AD clear, so even a wrong TLSA
    record is not used (no DANE, as for an unsigned zone) and the mail goes over unverified
    TLS."""
    s, pf, ub, certs = dane(lambda c: ["3 1 1 " + "00" * 32], anchored=False)
    assert " ad;" not in ub.flags("mx1.dane.test", "A") + ";"
    send(s, "insecure zone")
    [got] = pf.wait_messages("bob", 1)
    assert b"Subject: insecure zone" in got
    line = sent_line(s)
    assert "verified=none" in line and "tls=TLSv1." in line, line


@pytest.mark.parametrize("layout,insecure", [("insecure-tlsa", "TLSA"), ("insecure-address", "A")])
def test_dane_needs_both_the_address_and_the_tlsa_answer_authenticated(dane, layout, insecure):
    """A wrong TLSA record that would defer, but one of the two answers is not authenticated:
    the TLSA record in an unsigned child zone (delegated without DS), or the MX host's
    address in an unsigned zone while its TLSA sits in a signed, anchored one. No DANE: the
    mail goes over unverified TLS."""
    s, pf, ub, certs = dane(lambda c: ["3 1 1 " + "00" * 32], layout=layout)
    host = "mx1.plain.test" if layout == "insecure-address" else "mx1.dane.test"
    a, t = ub.flags(host, "A") + ";", ub.flags(f"_{pf.port}._tcp.{host}", "TLSA") + ";"
    assert (" ad;" in a, " ad;" in t) == ((False, True) if insecure == "A" else (True, False)), (a, t)
    send(s, "half secure")
    [got] = pf.wait_messages("bob", 1)
    assert b"Subject: half secure" in got
    line = sent_line(s)
    assert "verified=none" in line and "tls=TLSv1." in line, line


def test_tlsa_2_0_1_of_the_test_ca_delivers_verified_by_dane(dane):
    s, pf, ub, certs = dane(lambda c: [tlsa(2, 0, c["ca"])])
    send(s, "dane ta")
    [got] = pf.wait_messages("bob", 1)
    assert b"Subject: dane ta" in got
    line = sent_line(s)
    assert "verified=dane" in line, line


def report_of(raw):
    """(message, RFC 8460 JSON) of a TLS-RPT report message."""
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    [part] = [p for p in msg.iter_attachments() if p.get_content_type() == "application/tlsrpt+gzip"]
    return msg, json.loads(gzip.decompress(part.get_content()))


def test_dane_failures_are_counted_through_a_restart_into_the_tls_rpt_report(dane):
    """tls_reports = true: a DANE failure (wrong TLSA) is counted in store; the server is
    restarted before any report (period 1h), then with a 2 s period: the report, to the rua of
    `_smtp._tls.<mx host>` (RFC 8460 §3: DANE's policy domain is the TLSA base domain), counts
    the failure from before the restart and the retry's after it (policy-type tlsa)."""
    rua = '_smtp._tls.mx1 TXT "v=TLSRPTv1; rua=mailto:reports@example.test"'
    s, pf, ub, certs = dane(lambda c: ["3 1 1 " + "00" * 32],
                            relay_extra='tls_reports = true\ntls_report_period = "1h"\n', zone_extra=[rua])
    send(s, "counted")
    s.wait_log("status=deferred")
    s.stop()
    s.config.write_text(s.config.read_text().replace('tls_report_period = "1h"', 'tls_report_period = "2s"'))
    s.start()
    # The queue retries at start: a second failure, counted by this process.
    s.wait_log("status=deferred", count=2)
    # The retry may land in a later report than the stored count: add the reports up.
    deadline = time.time() + 30
    while True:
        reports = [report_of(raw) for raw in s.messages("reports@example.test")]
        total = sum(p["summary"]["total-failure-session-count"] for _, r in reports for p in r["policies"])
        if total >= 2 or time.time() > deadline:
            break
        time.sleep(0.2)
    assert total == 2, reports
    msg, report = reports[0]
    assert msg["TLS-Report-Domain"] == "mx1.dane.test"
    [p] = report["policies"]
    assert p["policy"]["policy-type"] == "tlsa" and p["policy"]["policy-domain"] == "mx1.dane.test"
    assert p["policy"]["policy-string"] == ["3 1 1 " + "00" * 32]
    assert p["summary"]["total-successful-session-count"] == 0, p
    [f] = p["failure-details"]
    assert f["result-type"] == "validation-failure" and f["receiving-ip"] == MX_IP
    assert_nothing_reached(pf)


def test_requiretls_goes_over_dane_verified_tls(dane):
    """RFC 8689: a REQUIRETLS message needs verified TLS; with no MTA-STS policy, DANE is what
    verifies it. The MX (a Mailroom offering REQUIRETLS) gets it, `verified=dane`."""
    import ssl
    s, mx, ub, certs = dane(lambda c: [tlsa(3, 1, c["mx"])], mailroom_mx=True)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with smtplib.SMTP(HOST, s.submission_port, timeout=30) as c:
        c.starttls(context=ctx)
        c.login("alice@example.test", "alice-pw")
        msg = "From: alice@example.test\r\nTo: bob@dane.test\r\nSubject: protected\r\n\r\nbody\r\n"
        c.sendmail("alice@example.test", ["bob@dane.test"], msg.encode(), mail_options=["REQUIRETLS"])
    [got] = mx.wait_messages("bob@dane.test", 1)
    assert b"Subject: protected" in got
    line = sent_line(s)
    assert "verified=dane" in line, line
