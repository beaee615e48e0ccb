"""rspamd after DATA (issue 13 item 2): Debian's rspamd, started here with its own config
directory and a local port (no redis; network-using modules off), judges port 25 mail from
untrusted clients: GTUBE is refused with rspamd's message, a message it tags arrives with
`X-Spam-Flag: YES`, an allowlisted client and authenticated senders are not scanned. rspamd
down is fail-open (counted in the log), or 451 with `rspamd_fail_open = false`; a fake rspamd
that never answers costs `rspamd_timeout`, not a hung session.

Large messages (streamed to the spool during DATA) are sent to rspamd from the file in blocks:
GTUBE at the end of a 20 MiB message is refused with 550 and the server's memory does not grow
with the message; a tagged one arrives whole with `X-Spam-Flag: YES`; over `rspamd_max_size`
the message is stored unscanned, logged and counted."""

import base64
import hashlib
import random

import os
import pathlib
import shutil
import smtplib
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request

import pytest

from conftest import HOST, free_port, has
from remote_mta import DNSMASQ, Dns

RSPAMD = shutil.which("rspamd") or "/usr/bin/rspamd"
RCPT = "alice@example.test"
GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X"

pytestmark = pytest.mark.skipif(not has(RSPAMD), reason="rspamd needed")

CONF = """.include "$CONFDIR/common.conf"
options {
    pidfile = "$RUNDIR/rspamd.pid";
    .include "$CONFDIR/options.inc"
    .include(try=true; priority=1,duplicate=merge) "$LOCAL_CONFDIR/local.d/options.inc"
}
logging { type = "file"; filename = "$LOGDIR/rspamd.log"; level = "info"; }
worker "normal" {
    bind_socket = "127.0.0.1:PORT";
    .include "$CONFDIR/worker-normal.inc"
    count = 1;
}
"""


@pytest.fixture(scope="module")
def rspamd(tmp_path_factory):
    d = tmp_path_factory.mktemp("rspamd")
    port = free_port()
    (d / "rspamd.conf").write_text(CONF.replace("PORT", str(port)))
    local = d / "local.d"
    local.mkdir()
    # No DNS server answers (so no lookup waits long), nothing that needs the network or redis.
    (local / "options.inc").write_text('dns { nameserver = ["127.0.0.1:9"]; timeout = 0.2s; retransmits = 1; }\n')
    for m in ("rbl", "surbl", "emails", "dkim_signing", "arc", "spf", "dkim", "dmarc", "asn", "fuzzy_check",
              "phishing", "neural", "ratelimit", "greylist", "replies", "history_redis", "url_redirector"):
        (local / f"{m}.conf").write_text("enabled = false;\n")
    # A missing Date: and Message-ID: (3.5 points) are enough to be tagged.
    (local / "actions.conf").write_text("reject = 15;\nadd_header = 3;\ngreylist = null;\nrewrite_subject = null;\n")
    # The compiled hyperscan databases are kept between runs (about 20 s to build, once).
    db = pathlib.Path(tempfile.gettempdir()) / "mailroom-e2e-rspamd-db"
    db.mkdir(exist_ok=True)
    args = [RSPAMD, "-f", "-i", "-u", "root", "-g", "root", "-c", str(d / "rspamd.conf"),
            "--var=CONFDIR=/etc/rspamd", f"--var=LOCAL_CONFDIR={d}", f"--var=RUNDIR={d}",
            f"--var=DBDIR={db}", f"--var=LOGDIR={d}"]
    proc = subprocess.Popen(args, stdout=open(d / "out.log", "wb"), stderr=subprocess.STDOUT)
    deadline = time.time() + 120
    while True:
        assert proc.poll() is None, (d / "out.log").read_text()[-3000:]
        try:
            if urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=2).read().startswith(b"pong"):
                break
        except OSError:
            pass
        assert time.time() < deadline, "rspamd did not start"
        time.sleep(0.2)
    yield port
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


def message(subject, body="Hello.\r\n", frm="someone@remote.test", full=True):
    extra = f"Date: Mon, 07 Dec 2026 12:00:00 +0000\r\nMessage-ID: <{subject.replace(' ', '.')}@remote.test>\r\n" if full else ""
    return (f"From: {frm}\r\nTo: {RCPT}\r\nSubject: {subject}\r\n{extra}\r\n{body}").encode()


def start(make_server, filter_keys, extra=""):
    s = make_server(extra=f"{extra}[filter]\n{filter_keys}")
    s.cli("domain", "add", "example.test")
    s.add_user(RCPT)
    return s.start()


def send(s, source, msg, frm="someone@remote.test"):
    c = smtplib.SMTP(HOST, s.smtp_port, timeout=60, source_address=(source, 0))
    c.ehlo("client.remote.test")
    c.mail(frm)
    assert c.rcpt(RCPT)[0] == 250
    reply = c.data(msg)
    c.quit()
    return reply


@pytest.mark.skipif(not has(DNSMASQ), reason="dnsmasq needed")
def test_rspamd_refuses_gtube_tags_spam_and_skips_allowlisted_and_authenticated(rspamd, make_server, tmp_path):
    dns = Dns(tmp_path, a=[("6.0.0.127.wl.test", "127.0.0.2")])
    s = start(make_server, f'rspamd_url = "http://127.0.0.1:{rspamd}"\ndnswl = ["wl.test"]\n',
              extra=f'[dns]\nservers = ["{dns.server}"]\n')
    try:
        code, text = send(s, "127.0.0.5", message("gtube", f"{GTUBE}\r\n"))
        assert (code, text) == (550, b"5.7.1 Gtube pattern"), (code, text)
        # Tagged: delivered with the flag, the score and the symbols.
        assert send(s, "127.0.0.5", message("tagged", full=False))[0] == 250
        got = s.wait_messages(RCPT, 1)
        assert len(got) == 1 and b"Subject: tagged" in got[0]
        head = got[0].split(b"\r\n\r\n", 1)[0]
        assert b"\r\nX-Spam-Flag: YES\r\n" in head, head
        assert b"X-Spam-Status: Yes, score=" in head and b"MISSING_MID" in head, head
        # A clean-enough message arrives untagged.
        assert send(s, "127.0.0.5", message("fine"))[0] == 250
        # The allowlisted client is not scanned: its GTUBE is delivered.
        assert send(s, "127.0.0.6", message("allowlisted gtube", f"{GTUBE}\r\n"))[0] == 250
        # An authenticated sender is not scanned (scan_outbound = false).
        c = smtplib.SMTP(HOST, s.submission_port, timeout=60)
        c.starttls()
        c.login(RCPT, "secret")
        c.sendmail(RCPT, [RCPT], message("outbound gtube", f"{GTUBE}\r\n", frm=RCPT))
        c.quit()
        got = s.wait_messages(RCPT, 4)
        fine = [m for m in got if b"Subject: fine" in m][0]
        assert b"X-Spam-Flag" not in fine
        assert not any(b"Subject: gtube" in m for m in got)
        assert "rspamd_unavailable" not in s.log_text()
    finally:
        s.stop()
        dns.stop()


def test_rspamd_down_is_fail_open_or_451(make_server):
    dead = free_port()
    s = start(make_server, f'rspamd_url = "http://127.0.0.1:{dead}"\n')
    try:
        assert send(s, "127.0.0.5", message("while down"))[0] == 250
        s.wait_messages(RCPT, 1)
        s.wait_log("filter: event=rspamd_unavailable")
        assert "fail_open=true count=1" in s.log_text()
    finally:
        s.stop()
    s = start(make_server, f'rspamd_url = "http://127.0.0.1:{dead}"\nrspamd_fail_open = false\n')
    try:
        code, text = send(s, "127.0.0.5", message("while down, closed"))
        assert code == 451 and text.startswith(b"4.7.1 "), (code, text)
        assert s.messages(RCPT) == []
    finally:
        s.stop()


def test_a_stalling_rspamd_costs_the_timeout_not_the_session(make_server):
    # A fake rspamd that accepts, reads and never answers.
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    held = []
    stop = threading.Event()

    def accept():
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
                held.append(conn)
            except OSError:
                pass

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    s = start(make_server, f'rspamd_url = "http://127.0.0.1:{srv.getsockname()[1]}"\nrspamd_timeout = "1s"\n')
    try:
        assert send(s, "127.0.0.5", message("stalled"))[0] == 250
        s.wait_messages(RCPT, 1)
        assert held, "the fake rspamd was never asked"
        assert "no answer within 1s" in s.log_text()
    finally:
        s.stop()
        stop.set()
        t.join()
        for c in held:
            c.close()
        srv.close()


BIG = 20 << 20


def big_message(subject, last_text, full=True, size=BIG):
    """A multipart message of about `size` octets: a large attachment first, then a small text
    part (rspamd looks for GTUBE only in small text parts) at the very end of the file."""
    rnd = random.Random(13)
    blob = base64.encodebytes(rnd.randbytes(size * 3 // 4)).replace(b"\n", b"\r\n")
    extra = (f"Date: Mon, 07 Dec 2026 12:00:00 +0000\r\nMessage-ID: <{subject.replace(' ', '.')}@remote.test>\r\n"
             if full else "")
    head = (f"From: someone@remote.test\r\nTo: {RCPT}\r\nSubject: {subject}\r\n{extra}MIME-Version: 1.0\r\n"
            'Content-Type: multipart/mixed; boundary="b0undary"\r\n\r\n').encode()
    return (head + b"--b0undary\r\nContent-Type: application/octet-stream\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n" + blob
            + b"--b0undary\r\nContent-Type: text/plain\r\n\r\n" + last_text.encode() + b"\r\n--b0undary--\r\n")


def status_kib(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def test_a_large_streamed_message_is_scanned_from_its_file(rspamd, make_server):
    s = make_server(extra=f'[filter]\nrspamd_url = "http://127.0.0.1:{rspamd}"\nrspamd_timeout = "60s"\n',
                    max_message_size=BIG + (1 << 20))
    s.cli("domain", "add", "example.test")
    s.add_user(RCPT)
    s.start()
    try:
        gtube = big_message("big gtube", f"Hello.\r\n{GTUBE}")
        assert len(gtube) > BIG - (1 << 20)
        before = status_kib(s.proc.pid, "VmRSS")
        code, text = send(s, "127.0.0.5", gtube)
        assert (code, text) == (550, b"5.7.1 Gtube pattern"), (code, text)
        # Nothing kept of the refused message, and the server never held it whole.
        grew = status_kib(s.proc.pid, "VmHWM") - before
        assert grew < 12 << 10, f"RSS grew by {grew >> 10} MiB for a {len(gtube) >> 20} MiB message"
        assert s.messages(RCPT) == []
        assert not [p for p in (s.data / "queue" / "tmp").iterdir()], "the refused draft was kept"
        # Tagged in its file (no Date:, no Message-ID:): delivered whole with the flag.
        tagged = big_message("big tagged", "Hello.", full=False)
        assert send(s, "127.0.0.5", tagged)[0] == 250
        got = s.wait_messages(RCPT, 1, timeout=60)[0]
        head, rest = got.split(b"\r\n\r\n", 1)
        assert b"\r\nX-Spam-Flag: YES\r\n" in head and b"MISSING_MID" in head, head
        body = tagged.split(b"\r\n\r\n", 1)[1]
        assert hashlib.sha256(rest).hexdigest() == hashlib.sha256(body).hexdigest()
        assert "rspamd_unavailable" not in s.log_text() and "rspamd_skipped" not in s.log_text()
    finally:
        s.stop()


def test_a_message_over_rspamd_max_size_is_stored_unscanned_and_counted(rspamd, make_server):
    s = make_server(extra=f'[filter]\nrspamd_url = "http://127.0.0.1:{rspamd}"\nrspamd_max_size = 1000000\n',
                    max_message_size=4 << 20)
    s.cli("domain", "add", "example.test")
    s.add_user(RCPT)
    s.start()
    try:
        # rspamd would refuse it (GTUBE in a small text part, as above): stored means not sent.
        msg = big_message("large gtube", f"Hello.\r\n{GTUBE}", size=1_500_000)
        assert len(msg) > 1_000_000
        assert send(s, "127.0.0.5", msg)[0] == 250
        assert s.wait_messages(RCPT, 1)[0].endswith(msg)
        s.wait_log("filter: event=rspamd_skipped")
        assert f"reason=over_max_size size={len(msg)} max=1000000 count=1" in s.log_text(), s.log_text()[-2000:]
        # A small one is still scanned.
        code, _ = send(s, "127.0.0.5", message("small gtube", f"{GTUBE}\r\n"))
        assert code == 550
    finally:
        s.stop()
