"""Signals that arrive while the server starts. SIGHUP (a log rotation's postrotate, `tls
reload`) means "reload" and must never stop it; SIGTERM (systemd stopping a unit that is still
starting) must be a clean shutdown, not the default action of the signal. The start is made
slow the way an upgrade makes it: domains without DKIM keys get theirs (RSA-2048 and Ed25519)
at the first start, and the signals are sent once the first of those keys is logged."""

import signal
import sqlite3
import subprocess
import time

from conftest import BIN, HOST, wait_port


def server_with_keyless_domains(make_server, n=6):
    s = make_server()
    for i in range(n):
        s.cli("domain", "add", f"d{i}.example.test")
    # As before DKIM existed: the domains have no keys, so `serve` makes them while starting.
    with sqlite3.connect(s.data / "directory.sqlite3") as db:
        db.execute("DELETE FROM dkim_keys")
    for f in (s.data / "dkim").iterdir():
        f.unlink()
    return s


def start_until_first_key(s):
    logf = open(s.log, "ab")
    proc = subprocess.Popen([BIN, "--config", str(s.config), "serve"], stdout=logf, stderr=logf)
    deadline = time.time() + 60
    while "dkim: d" not in s.log_text():
        assert proc.poll() is None, f"server exited early\n{s.log_text()[-3000:]}"
        assert time.time() < deadline, f"no key made\n{s.log_text()[-3000:]}"
        time.sleep(0.005)
    # Keys of the other domains are still being made: the server has not started yet.
    assert "mailroom started" not in s.log_text()
    return proc


def test_sighup_while_starting_reloads_and_never_stops_the_server(make_server):
    s = server_with_keyless_domains(make_server)
    proc = start_until_first_key(s)
    s.proc = proc
    sent = 0
    deadline = time.time() + 60
    while "mailroom started" not in s.log_text():
        assert proc.poll() is None, (
            f"SIGHUP number {sent} during the start killed the server "
            f"(rc {proc.returncode})\n{s.log_text()[-3000:]}")
        assert time.time() < deadline, s.log_text()[-3000:]
        proc.send_signal(signal.SIGHUP)
        sent += 1
        time.sleep(0.002)
    assert sent > 0
    # The hangups kept during the start are handled as reloads once it is done.
    s.wait_log("tls: certificate reloaded")
    wait_port(HOST, s.smtp_port, proc=proc)
    assert proc.poll() is None
    assert s.stop() == 0
    assert "mailroom stopped" in s.log_text()


def test_sigterm_while_starting_is_a_clean_shutdown(make_server):
    s = server_with_keyless_domains(make_server)
    proc = start_until_first_key(s)
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(timeout=60)
    assert rc == 0, f"rc {rc} (a negative rc is the signal's default action)\n{s.log_text()[-3000:]}"
    text = s.log_text()
    assert "mailroom started" in text and "mailroom stopped" in text, text[-3000:]
    # Every domain got its keys before the shutdown: nothing half made.
    listed = s.cli("dkim", "list").stdout
    for i in range(6):
        assert f"d{i}.example.test" in listed, listed
