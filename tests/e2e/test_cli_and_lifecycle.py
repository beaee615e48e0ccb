"""The admin CLI (exit codes, one-line errors, changes seen by a running server), config
errors, a port that cannot be bound, and shutdown on SIGTERM."""

import signal
import smtplib
import socket
import subprocess
import time

from conftest import BIN, HOST, free_port


def test_domain_user_alias_commands(make_server):
    s = make_server()
    assert s.cli("domain", "add", "Example.TEST").returncode == 0
    assert s.cli("domain", "list").stdout == "example.test\n"
    r = s.cli("domain", "add", "example.test", check=False)
    assert r.returncode == 1 and r.stderr.startswith("mailroom: ") and r.stderr.count("\n") == 1

    r = s.cli("user", "add", "alice@example.org", "--password-stdin", input="pw\n", check=False)
    assert r.returncode == 1
    assert r.stderr == "mailroom: no such domain: example.org\n"

    s.add_user("Alice@Example.test", "pw1")
    r = s.cli("user", "add", "alice@example.test", "--password-stdin", input="pw\n", check=False)
    assert r.returncode == 1 and "already exists" in r.stderr
    assert s.cli("user", "list").stdout == "Alice@example.test\n"
    assert s.cli("user", "list", "example.test").stdout == "Alice@example.test\n"
    s.cli("user", "passwd", "ALICE@example.test", "--password-stdin", input="a new long password\n")
    r = s.cli("user", "passwd", "nobody@example.test", "--password-stdin", input="x\n", check=False)
    assert r.returncode == 1 and r.stderr == "mailroom: no such account: nobody@example.test\n"

    s.cli("alias", "add", "info@example.test", "alice@example.test", "someone@remote.test")
    s.cli("alias", "add", "@example.test", "alice@example.test")
    out = s.cli("alias", "list").stdout
    assert "info@example.test -> alice@example.test, someone@remote.test" in out
    assert "@example.test -> alice@example.test" in out
    s.cli("alias", "remove", "info@example.test")
    r = s.cli("alias", "remove", "info@example.test", check=False)
    assert r.returncode == 1

    r = s.cli("domain", "remove", "example.test", check=False)
    assert r.returncode == 1 and "still has" in r.stderr
    s.cli("alias", "remove", "@example.test")
    s.cli("user", "remove", "alice@example.test")
    s.cli("domain", "remove", "example.test")
    assert s.cli("domain", "list").stdout == ""
    # Passwords are never printed anywhere.
    for args in (("user", "list"), ("alias", "list"), ("domain", "list")):
        assert "pw1" not in s.cli(*args).stdout


def test_usage_errors_exit_2(make_server):
    s = make_server()
    for args in (("frobnicate",), ("user",), ("user", "add"), ("alias", "add", "a@b.test")):
        r = s.cli(*args, check=False)
        assert r.returncode == 2, (args, r.returncode, r.stderr)


def test_bad_config_exit_2_with_key_and_line(tmp_path):
    cases = {
        '[smtp]\nlisten = ["127.0.0.1:25"]\nmax_mesage_size = 5\n': ("max_mesage_size", "line 3"),
        'hostname = "a.test"\n[smtp]\nlisten = ["not an address"]\n': ("smtp.listen", "line 3"),
        '[smtp]\nmax_recipients = "lots"\n': ("smtp.max_recipients", "line 2"),
        '[pop3]\nlisten = "127.0.0.1:110"\n': ("pop3.listen", "line 2"),
    }
    for text, (key, line) in cases.items():
        cfg = tmp_path / "bad.toml"
        cfg.write_text(text)
        r = subprocess.run([BIN, "--config", str(cfg), "serve"], capture_output=True, text=True, timeout=30)
        assert r.returncode == 2, (text, r.stderr)
        assert key in r.stderr and line in r.stderr, (text, r.stderr)
        assert r.stderr.count("\n") == 1, r.stderr


def test_unbindable_port_names_the_key(make_server):
    s = make_server()
    # Hold the port so the server cannot bind it.
    with socket.socket() as holder:
        holder.bind((HOST, s.smtp_port))
        holder.listen()
        r = subprocess.run([BIN, "--config", str(s.config), "serve"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert "smtp.listen" in r.stderr and f"{HOST}:{s.smtp_port}" in r.stderr, r.stderr


def test_empty_listen_disables(make_server):
    s = make_server()
    text = s.config.read_text().replace(f'listen = ["{HOST}:{s.pop3_port}"]', "listen = []")
    s.config.write_text(text)
    s.start()
    log = s.log_text()
    assert f"127.0.0.1:{s.smtp_port}" in log
    assert f"127.0.0.1:{s.pop3_port}" not in log, log
    assert s.stop() == 0


def test_sigterm_exits_0_and_open_sessions_get_421(server):
    c = socket.create_connection((HOST, server.smtp_port), timeout=10)
    f = c.makefile("rb")
    assert f.readline().startswith(b"220 ")
    c.sendall(b"EHLO client.test\r\n")
    while not f.readline().startswith(b"250 "):
        pass
    server.proc.send_signal(signal.SIGTERM)
    # The session may finish its work during the grace period; then it is told 421.
    c.sendall(b"NOOP\r\n")
    assert f.readline().startswith(b"250 ")
    line = f.readline()
    assert line.startswith(b"421 4.3.2 "), line
    assert server.proc.wait(timeout=20) == 0
    server.proc = None
    c.close()


def test_mail_accepted_before_shutdown_is_delivered_after_restart(make_server):
    """Through the spool (`direct_local = false`): the message is still in queue/msg/ when the
    server stops (its Maildir is blocked, so the first delivery attempt is deferred), and is
    delivered by the next start's recovery. Without spool recovery it would never arrive."""
    s = make_server(extra="[delivery]\ndirect_local = false\n")
    s.cli("domain", "add", "example.test")
    s.add_user("alice@example.test")
    s.start()
    md = s.maildir("alice@example.test")
    aside = md.with_name("Maildir.aside")
    if md.exists():
        md.rename(aside)
    md.parent.mkdir(parents=True, exist_ok=True)
    md.write_text("a file where the Maildir should be\n")
    with smtplib.SMTP(HOST, s.smtp_port, timeout=30) as c:
        c.sendmail("s@remote.test", ["alice@example.test"], b"Subject: before stop\r\n\r\nkept in the spool\r\n")
    deadline = time.time() + 20
    while "to=<alice@example.test>" not in s.log_text() or "status=deferred" not in s.log_text():
        assert time.time() < deadline, s.log_text()[-2000:]
        time.sleep(0.05)
    assert s.stop() == 0
    [queued] = s.queue_files()
    assert b"kept in the spool" in queued.read_bytes()
    md.unlink()
    if aside.exists():
        aside.rename(md)
    assert s.messages("alice@example.test") == []
    s.start()
    [raw] = s.wait_messages("alice@example.test", 1)
    assert raw.endswith(b"Subject: before stop\r\n\r\nkept in the spool\r\n")
    assert queued.name.encode() in raw  # the Received: names the queue id it was accepted as
    s.wait_queue_empty()
    assert s.stop() == 0


def test_check_config_prints_toml_and_checks_the_certificate(make_server, tmp_path):
    s = make_server()
    full = s.cli("check-config").stdout
    assert "[smtp]" in full and 'command_timeout = "5m"' in full and "Some(" not in full
    # --non-default: only what the test config changed, and it reads back as a config.
    nd = s.cli("check-config", "--non-default").stdout
    assert f'data_dir = "{s.data}"' in nd
    assert "max_recipients = 50" in nd and 'shutdown_grace = "2s"' in nd
    assert "max_errors" not in nd and "[relay]" not in nd and "log_level" not in nd
    back = tmp_path / "back.toml"
    back.write_text(nd)
    assert subprocess.run([BIN, "--config", str(back), "check-config", "--non-default"],
                          capture_output=True, text=True).stdout == nd
    # A configured key that cannot be read: exit 2 naming the key.
    bad = tmp_path / "bad.toml"
    bad.write_text(nd + '\n[tls]\ncertificate = "/etc/hostname"\nprivate_key = "/nonexistent/key.pem"\n')
    r = subprocess.run([BIN, "--config", str(bad), "check-config"], capture_output=True, text=True)
    assert r.returncode == 2, r
    assert "tls." in r.stderr
