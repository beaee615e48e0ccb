"""Running as a service: one server per data_dir, systemd's readiness and watchdog protocol
over $NOTIFY_SOCKET, and the packaged unit file as `systemd-analyze verify` sees it."""

import os
import pathlib
import smtplib
import socket
import subprocess
import time

import pytest

from conftest import BIN, HOST, ROOT, free_port, has

UNIT = ROOT / "crates" / "mailroom" / "debian" / "mailroom.service"


def test_a_second_serve_on_the_same_data_dir_refuses_to_start(make_server):
    s = make_server()
    s.cli("domain", "add", "example.test")
    s.add_user("alice@example.test")
    s.start()
    # Same data_dir, other ports: only the lock stops it.
    other = s.tmp / "second.toml"
    text = s.config.read_text()
    for port in (s.smtp_port, s.submission_port, s.submissions_port, s.pop3_port, s.pop3s_port):
        text = text.replace(f":{port}\"", f":{free_port()}\"")
    other.write_text(text)
    r = subprocess.run([BIN, "--config", str(other), "serve"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1, r.stderr
    assert f"another mailroom serve (pid {s.proc.pid}) is running on data_dir" in r.stderr, r.stderr
    # The first one still works.
    with smtplib.SMTP(HOST, s.smtp_port) as c:
        c.sendmail("x@remote.test", ["alice@example.test"], b"Subject: one\r\n\r\nx\r\n")
    s.wait_messages("alice@example.test", 1)
    assert s.stop() == 0
    # Once it is gone, the lock is free (the kernel released it).
    s.start()
    assert s.stop() == 0


def test_readiness_watchdog_and_stopping_are_sent_to_notify_socket(make_server, monkeypatch):
    s = make_server()
    path = s.tmp / "notify.sock"
    rx = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    rx.bind(str(path))
    rx.settimeout(15)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.setenv("WATCHDOG_USEC", "400000")
    s.start()
    got = []
    while got.count(b"WATCHDOG=1") < 3:
        got.append(rx.recv(256))
    # READY=1 comes once, after the listeners are up (start() waited for them), before pings.
    assert got[0] == b"READY=1", got
    assert got.count(b"READY=1") == 1
    assert s.stop() == 0
    rest = []
    rx.settimeout(2)
    try:
        while True:
            rest.append(rx.recv(256))
    except socket.timeout:
        pass
    assert b"STOPPING=1" in rest, rest
    rx.close()


@pytest.mark.skipif(not has("systemd-analyze"), reason="systemd-analyze not installed (systemd)")
def test_the_unit_file_verifies_and_is_hardened(tmp_path):
    text = UNIT.read_text()
    keys = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith("#"):
            k, v = line.split("=", 1)
            keys[k.strip()] = v.strip()
    assert keys["Type"] == "notify" and keys["WatchdogSec"]
    assert keys["ProtectSystem"] == "strict"
    assert keys["ReadWritePaths"] == "/var/lib/mailroom"
    assert keys["NoNewPrivileges"] == "yes"
    assert "CAP_NET_BIND_SERVICE" in keys["CapabilityBoundingSet"].split()
    assert keys["ExecStart"].startswith("/usr/bin/mailroom ") and keys["ExecStart"].endswith(" serve")
    # systemd-analyze checks that the command exists: point it at the binary under test.
    unit = tmp_path / "mailroom.service"
    unit.write_text(text.replace("/usr/bin/mailroom", os.path.abspath(BIN)))
    r = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0 and r.stderr.strip() == "", r.stderr


def test_ipv4_and_ipv6_wildcards_share_a_port(make_server):
    """The defaults listen on 0.0.0.0 and [::] (config_tests.rs): the IPv6 socket is IPv6-only,
    so the two bind side by side and each family reaches the server."""
    s = make_server()
    s.config.write_text(s.config.read_text().replace(
        f'listen = ["{HOST}:{s.smtp_port}"]', f'listen = ["0.0.0.0:{s.smtp_port}", "[::]:{s.smtp_port}"]'))
    s.start()
    for family, addr in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        with socket.socket(family) as c:
            c.settimeout(10)
            c.connect((addr, s.smtp_port))
            assert c.recv(512).startswith(b"220 "), addr
            c.sendall(b"QUIT\r\n")
    assert s.stop() == 0


def test_a_hostname_that_is_not_fully_qualified_is_warned_about(make_server):
    s = make_server()
    s.start()
    assert s.stop() == 0
    assert "not a fully qualified domain name" not in s.log_text()
    s.config.write_text(s.config.read_text().replace('hostname = "mx.example.test"', 'hostname = "mailhost"'))
    s.start()
    assert s.stop() == 0
    assert 'hostname "mailhost" is not a fully qualified domain name' in s.log_text()
