"""`mailroom dns-check DOMAIN` (issue 18, item 8) against a real DNS server: dnsmasq serves
the records `mailroom dns-records` printed (all ok, exit 0), then the same zone with one DKIM
key left out and a different SPF record (exit 1, both named with the values)."""

import re

import pytest

from conftest import has
from remote_mta import DNSMASQ, Dns

pytestmark = pytest.mark.skipif(not has(DNSMASQ), reason="dnsmasq needed")

DOMAIN = "example.test"
IPV4 = "192.0.2.7"


def serve_zone(tmp_path, lines, drop=(), replace=None):
    """dnsmasq serving the zone-file `lines` but those whose owner name is in `drop`;
    `replace` maps (name, first words of the value) to a value served instead."""
    mx, a, txt, raw, srv = [], [], [], [], []
    for line in lines:
        if line.startswith(";"):
            continue
        name, _, kind, data = re.match(r"^(\S+)\. (\d+) IN (\S+) (.*)$", line).groups()
        if name in drop:
            continue
        if kind == "MX":
            pref, host = data.split()
            mx.append((name, host.rstrip("."), int(pref)))
        elif kind in ("A", "AAAA"):
            a.append((name, data))
        elif kind == "TXT":
            strings = re.findall(r'"((?:[^"\\]|\\.)*)"', data)
            for (rname, start), value in (replace or {}).items():
                if rname == name and "".join(strings).startswith(start):
                    strings = [value]
            txt.append((name, strings))
        elif kind == "SRV":
            prio, weight, port, target = data.split()
            if target == ".":
                # "Not offered" (RFC 6186 §3.4): priority 0, weight 0, port 0, root target.
                raw.append(f"{name},33,00000000000000")
            else:
                srv.append((name, target.rstrip("."), port, prio, weight))
    tmp_path.mkdir(parents=True, exist_ok=True)
    return Dns(tmp_path, mx=mx, a=a, txt=txt, raw=raw, srv=srv)


def use_resolver(s, dns):
    s.config.write_text(re.sub(r'servers = \["[^"]*"\]', f'servers = ["{dns.server}"]',
                               s.config.read_text()))


def test_dns_check_ok_then_missing_and_different(tmp_path, make_server):
    s = make_server(extra='[dns]\nservers = ["127.0.0.1:9"]\n')
    s.cli("domain", "add", DOMAIN)
    lines = s.cli("dns-records", DOMAIN, "--ipv4", IPV4).stdout.splitlines()
    records = [l for l in lines if not l.startswith(";")]
    assert sum("._domainkey." in l for l in records) == 2, lines

    good = serve_zone(tmp_path / "good", lines)
    try:
        use_resolver(s, good)
        r = s.cli("dns-check", DOMAIN, "--ipv4", IPV4, check=False)
        assert r.returncode == 0, r.stdout + r.stderr
        out = r.stdout.splitlines()
        assert len(out) == len(records), out
        assert all(l.startswith("ok ") for l in out), out
        assert sum("_domainkey." in l and "v=DKIM1" in l for l in out) == 2, out
    finally:
        good.stop()

    rsa = [l for l in records if "k=rsa" in l][0].split(" ", 1)[0].rstrip(".")
    bad = serve_zone(tmp_path / "bad", lines, drop={rsa},
                     replace={(DOMAIN, "v=spf1"): "v=spf1 a -all"})
    try:
        use_resolver(s, bad)
        r = s.cli("dns-check", DOMAIN, "--ipv4", IPV4, check=False)
        assert r.returncode == 1, r.stdout + r.stderr
        out = r.stdout.splitlines()
        not_ok = [l for l in out if not l.startswith("ok ")]
        assert len(not_ok) == 2, out
        assert any(l.startswith(f"missing   {rsa} TXT expected: v=DKIM1; k=rsa; p=") for l in not_ok), out
        assert (f"different {DOMAIN} TXT expected: v=spf1 ip4:{IPV4} -all found: v=spf1 a -all"
                in not_ok), out
        assert "2 of " in r.stderr
        # The Ed25519 key and the host name's own SPF are still fine.
        assert any(l.startswith("ok ") and "k=ed25519" in l for l in out), out
        assert f"ok        mx.example.test TXT v=spf1 ip4:{IPV4} -all" in out, out
    finally:
        bad.stop()
