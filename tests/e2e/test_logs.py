"""The log an admin greps (issue 15 item 2), from real sessions: the `NOQUEUE: reject:` line of
every refused RCPT/AUTH with client, from, to, proto and helo; the accepted line with the
client, HELO, authenticated user and Message-ID; delivery lines to a real Postfix (by MX from
dnsmasq) and to a dead MX with the host and TLS state; expiry, delay and bounce notices,
removal by the server and by `queue remove`. Every line is parsed: as `key=value` fields after
the message (text), or as one JSON object (`log_format = "json"`). `log_file` is reopened on
SIGHUP after a rename (logrotate's way). No line may hold a Rust debug form."""

import json
import re
import signal
import smtplib
import ssl
import subprocess
import time

import pytest

from conftest import BIN, HOST, has
from remote_mta import DNSMASQ, POSTFIX, Dns, Postfix

pytestmark = pytest.mark.skipif(not (has(DNSMASQ) and has(POSTFIX)), reason="dnsmasq and postfix needed")

PF_IP = "127.0.0.20"
DEAD_IP = "127.0.0.24"

# A line of the text form: time, level, message, then ` key=value` fields.
LINE = re.compile(r"^\S+Z\s+(TRACE|DEBUG|INFO|WARN|ERROR) (.*)$")
FIELD = r"[a-z][a-z0-9_.-]*=(?:\"(?:[^\"\\]|\\.)*\"|[^\s\"=\\][^\s\"\\]*)"
FIELDS = re.compile(rf"((?: {FIELD})*)$")
ONE_FIELD = re.compile(r"([a-z][a-z0-9_.-]*)=(\"(?:[^\"\\]|\\.)*\"|\S+)")
DEBUG_FORMS = ("Some(", "None", "Ok(", "Err(")


def tls_ctx():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def unquote(v):
    if v.startswith('"'):
        return re.sub(r"\\(.)", r"\1", v[1:-1])
    return v


def parse_text(line):
    """(level, message, fields) of one text line; fails when a field is not `key=value`."""
    m = LINE.match(line)
    assert m, f"not a log line: {line!r}"
    level, rest = m.groups()
    # The message ends where the first ` key=` begins; everything after it must be fields.
    first = re.search(r" [a-z][a-z0-9_.-]*=", rest)
    if not first:
        return level, rest, {}
    tail = rest[first.start():]
    assert FIELDS.fullmatch(tail), f"not key=value fields: {tail!r} in {line!r}"
    fields = {k: unquote(v) for k, v in ONE_FIELD.findall(tail)}
    return level, rest[:first.start()], fields


def no_debug_forms(lines):
    bad = [l for l in lines if any(d in l for d in DEBUG_FORMS)]
    assert not bad, bad


def text_lines(s):
    every = s.log_text().splitlines()
    no_debug_forms(every)
    return [parse_text(l) for l in every if LINE.match(l)]


def find(lines, message_part, **want):
    """The parsed lines whose message holds `message_part` and whose fields hold `want`."""
    return [
        f for (_, m, f) in lines
        if message_part in m and all(f.get(k) == v for k, v in want.items())
    ]


def relay_config(dns, pf_port, extra=""):
    return (
        f"{extra}"
        "[relay]\n"
        f'dns_servers = ["{dns.server}"]\n'
        f"remote_port = {pf_port}\n"
        'retry_schedule = ["1s"]\n'
        'max_queue_lifetime = "4s"\n'
        'delay_warning_after = "2s"\n'
    )


def refused_and_accepted_sessions(s):
    """From 127.0.0.1 (not trusted) on port 25: an unknown user, a relay attempt, then a message
    for alice; on 587: a wrong password, then alice's, and mail to bob@remote.test and
    carol@dead.test."""
    with smtplib.SMTP(HOST, s.smtp_port, timeout=30) as c:
        c.ehlo("client.example")
        assert c.mail("bob@remote.test")[0] == 250
        assert c.rcpt("nobody@example.test")[0] == 550
        assert c.rcpt("x@elsewhere.test")[0] == 554
        assert c.rcpt("alice@example.test")[0] == 250
        assert c.data(b"Subject: in\r\nMessage-ID: <in-1@remote.test>\r\n\r\nhello\r\n")[0] == 250
    with smtplib.SMTP(HOST, s.submission_port, timeout=30) as c:
        c.starttls(context=tls_ctx())
        with pytest.raises(smtplib.SMTPAuthenticationError):
            c.login("alice@example.test", "not-her-password")
        c.login("alice@example.test", "alice-pw")
        c.sendmail("alice@example.test", ["bob@remote.test", "carol@dead.test"],
                   b"From: alice@example.test\r\nSubject: out\r\nMessage-ID: <out-1@example.test>\r\n\r\nx\r\n")


@pytest.fixture
def world(tmp_path):
    # With a SASL user the test Postfix also offers STARTTLS: the relay line shows its version.
    pf = Postfix(tmp_path, ip=PF_IP, domains=("remote.test",), sasl_user=("relayuser", "relay-pw"))
    dns = Dns(
        tmp_path,
        mx=[("remote.test", "mx1.remote.test", 10), ("dead.test", "down.dead.test", 10)],
        a=[("mx1.remote.test", PF_IP), ("down.dead.test", DEAD_IP)],
    )
    yield pf, dns
    pf.stop()
    dns.stop()


def test_text_lines_of_a_whole_mail_day(world, make_server):
    pf, dns = world
    s = make_server(extra=relay_config(dns, pf.port))
    s.cli("domain", "add", "example.test")
    s.add_user("alice@example.test", "alice-pw")
    s.start()
    refused_and_accepted_sessions(s)
    pf.wait_messages("bob", 1)
    s.wait_log("status=expired", timeout=40)
    s.wait_queue_empty(timeout=40)
    s.wait_log("removed", timeout=10)
    assert s.stop() == 0
    lines = text_lines(s)

    client = "unknown[127.0.0.1]"
    [unknown] = find(lines, "NOQUEUE: reject: RCPT from unknown[127.0.0.1]", to="<nobody@example.test>")
    assert unknown["reply"].startswith("550 5.1.1 <nobody@example.test>"), unknown
    assert unknown == {**unknown, "client": client, "from": "<bob@remote.test>", "proto": "ESMTP",
                       "helo": "<client.example>"}
    [relay] = find(lines, "NOQUEUE: reject: RCPT from", to="<x@elsewhere.test>")
    assert relay["reply"].startswith("554 5.7.1") and relay["from"] == "<bob@remote.test>", relay
    # smtplib tries each mechanism it knows (PLAIN, LOGIN): one line per refusal.
    auths = find(lines, "NOQUEUE: reject: AUTH from unknown[127.0.0.1]")
    assert auths and all(a["reply"].startswith("535 5.7.8") for a in auths), auths
    assert all(a["sasl_username"] == "alice@example.test" for a in auths), auths
    assert "not-her-password" not in s.log_text()

    [inbound] = find(lines, ": accepted", **{"message-id": "<in-1@remote.test>"})
    assert inbound == {**inbound, "from": "<bob@remote.test>", "client": client, "nrcpt": "1",
                       "helo": "<client.example>", "proto": "ESMTP"}
    assert "sasl_username" not in inbound and int(inbound["size"]) > 0
    [outbound] = find(lines, ": accepted", **{"message-id": "<out-1@example.test>"})
    assert outbound == {**outbound, "sasl_username": "alice@example.test", "proto": "ESMTPSA",
                        "nrcpt": "2", "client": client}
    out_id = outbound["queue_id"]

    [local] = find(lines, f"delivery: {inbound['queue_id']}:", to="<alice@example.test>", status="sent")
    assert local["relay"] == "local" and local["dsn"] == "2.0.0", local
    assert local["mailbox"] == "alice@example.test", local
    [sent] = find(lines, f"delivery: {out_id}:", to="<bob@remote.test>", status="sent")
    assert sent["relay"] == f"mx1.remote.test[{PF_IP}]:{pf.port}", sent
    assert sent["tls"] in ("TLSv1.3", "TLSv1.2") and sent["dsn"].startswith("2."), sent
    assert sent["reply"].startswith("250"), sent
    deferred = find(lines, f"delivery: {out_id}:", to="<carol@dead.test>", status="deferred")
    assert deferred, "no deferred line"
    assert deferred[0]["relay"] == f"down.dead.test[{DEAD_IP}]:{pf.port}", deferred[0]
    assert deferred[0]["tls"] == "none" and deferred[0]["dsn"].startswith("4."), deferred[0]
    [expired] = find(lines, f"delivery: {out_id}:", to="<carol@dead.test>", status="expired")
    assert expired["dsn"] == "4.4.7" and int(expired["delay"]) >= 4, expired
    assert find(lines, f"delivery: {out_id}: sender delay notification:", to="<alice@example.test>")
    assert find(lines, f"delivery: {out_id}: sender non-delivery notification:", to="<alice@example.test>")
    assert find(lines, f"delivery: {out_id}: removed")


def test_json_lines_and_queue_remove(world, make_server):
    pf, dns = world
    s = make_server(extra=f'log_format = "json"\nlog_file = "{{log}}"\n')
    # The server's own log_file is the file the fixture reads (it also holds stderr).
    s.config.write_text(
        s.config.read_text()
        .replace("{log}", str(s.log))
        .replace("[smtp]\n", "[relay]\n"
                 f'dns_servers = ["{dns.server}"]\nremote_port = {pf.port}\nretry_schedule = ["1h"]\n[smtp]\n')
    )
    s.cli("domain", "add", "example.test")
    s.add_user("alice@example.test", "alice-pw")
    s.start()
    refused_and_accepted_sessions(s)
    pf.wait_messages("bob", 1)
    s.wait_log('"status":"deferred"', timeout=30)
    queued = s.queue_files()
    assert len(queued) == 1, queued
    qid = queued[0].name
    s.cli("queue", "remove", qid)
    s.wait_log(f"queue: {qid}: removed")
    assert s.stop() == 0
    objects = []
    for line in s.log_text().splitlines():
        assert not any(d in line for d in DEBUG_FORMS), line
        objects.append(json.loads(line))
    assert all({"timestamp", "level", "message"} <= o.keys() for o in objects)

    def having(part, **want):
        return [o for o in objects if part in o["message"] and all(o.get(k) == v for k, v in want.items())]

    [unknown] = having("NOQUEUE: reject: RCPT from", to="<nobody@example.test>")
    assert unknown["client"] == "unknown[127.0.0.1]" and unknown["from"] == "<bob@remote.test>"
    assert unknown["reply"].startswith("550 5.1.1") and unknown["helo"] == "<client.example>"
    assert having("NOQUEUE: reject: AUTH from", sasl_username="alice@example.test")
    [outbound] = having(": accepted", **{"message-id": "<out-1@example.test>"})
    assert outbound["sasl_username"] == "alice@example.test" and outbound["nrcpt"] == 2
    [sent] = having("delivery:", to="<bob@remote.test>", status="sent")
    assert sent["relay"] == f"mx1.remote.test[{PF_IP}]:{pf.port}" and sent["tls"].startswith("TLSv1")
    deferred = having("delivery:", to="<carol@dead.test>", status="deferred")
    assert deferred and deferred[0]["tls"] == "none" and DEAD_IP in deferred[0]["relay"]
    [removed] = having(f"queue: {qid}: removed")
    assert removed["by"] == "queue remove"


def test_log_file_is_reopened_on_sighup_after_a_rename(make_server):
    s = make_server(extra="log_file = \"{log}\"\n")
    s.config.write_text(s.config.read_text().replace("{log}", str(s.log)))
    s.start()
    rotated = s.log.with_name("server.log.1")
    s.log.rename(rotated)  # logrotate: rename, then signal
    s.proc.send_signal(signal.SIGHUP)
    s.wait_log("log: file reopened")
    with smtplib.SMTP(HOST, s.smtp_port, timeout=30) as c:
        c.ehlo("after.rotation")
        assert c.rcpt("x@example.test")[0] == 503
    s.wait_log("helo=<after.rotation>")
    assert s.stop() == 0
    old, new = rotated.read_text(), s.log.read_text()
    assert "mailroom started" in old and "mailroom started" not in new
    assert "after.rotation" in new and "after.rotation" not in old
    assert "mailroom stopped" in new
    lines = text_lines(s)
    assert find(lines, "NOQUEUE: reject: RCPT from", helo="<after.rotation>")


@pytest.mark.parametrize("key,value", [("log_format", '"xml"'), ("log_level", '"verbose"')])
def test_a_bad_log_key_is_exit_2_naming_it(tmp_path, key, value):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(f'data_dir = "{tmp_path / "data"}"\n{key} = {value}\n')
    r = subprocess.run([BIN, "--config", str(cfg), "check-config"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and key in r.stderr, (r.returncode, r.stderr)


@pytest.mark.skipif(not has("openssl"), reason="openssl needed")
def test_no_warning_for_a_client_sending_an_ip_address_as_sni(make_server):
    s = make_server()
    s.start()
    # OpenSSL sends what -servername says, an IP address here (RFC 6066 forbids it, many
    # clients connecting by address do it anyway).
    r = subprocess.run(["openssl", "s_client", "-starttls", "smtp", "-connect", f"{HOST}:{s.smtp_port}",
                        "-servername", HOST], input=b"QUIT\r\n", capture_output=True, timeout=30)
    assert b"TLSv1.3" in r.stdout, r.stdout[-2000:]
    s.wait_log("STARTTLS tls=TLSv1.3")
    assert s.stop() == 0
    lines = s.log_text().splitlines()
    assert not [l for l in lines if " WARN " in l and "self-signed" not in l], lines
    assert "SNI" not in s.log_text()
