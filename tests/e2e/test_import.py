"""Migration from Dovecot and Postfix (issue 15): a Dovecot passwd-file whose hashes were made
by Dovecot itself (`doveadm pw`, SHA512-CRYPT and BLF-CRYPT) is imported, its users log in over
POP3 with their old passwords, and the hashes are then argon2id; a Postfix virtual alias map
becomes aliases that deliver."""

import pathlib
import poplib
import smtplib
import sqlite3
import subprocess

from conftest import HOST


def doveadm_pw(scheme, password):
    r = subprocess.run(["doveadm", "pw", "-s", scheme, "-p", password],
                       capture_output=True, text=True, check=True)
    return r.stdout.strip()


def hashes(s):
    db = sqlite3.connect(s.data / "directory.sqlite3")
    try:
        return dict(db.execute("SELECT key, hash FROM accounts"))
    finally:
        db.close()


def pop3_login(s, user, password):
    p = poplib.POP3(HOST, s.pop3_port, timeout=30)
    try:
        p.user(user)
        p.pass_(password)
        return True
    except poplib.error_proto:
        return False
    finally:
        try:
            p.quit()
        except (poplib.error_proto, OSError):
            pass


def test_dovecot_passwd_users_keep_their_passwords_and_are_rehashed(make_server, tmp_path):
    s = make_server(trusted=("127.0.0.1/32",))  # POP3 without TLS from 127.0.0.1
    s.cli("domain", "add", "example.test")
    s.add_user("kept@example.test", "unchanged-password")
    passwd = tmp_path / "users"
    passwd.write_text(
        "# exported from dovecot\n"
        f"sha@example.test:{doveadm_pw('SHA512-CRYPT', 'sha-old-password')}:5000:5000::/home/sha::\n"
        f"blf:{doveadm_pw('BLF-CRYPT', 'blf-old-password')}:5000:5000::/home/blf::\n"
        f"kept@example.test:{doveadm_pw('SHA512-CRYPT', 'other')}::::::\n"
        "md5@example.test:{MD5-CRYPT}$1$abc$0123456789abcdefghijkl::::::\n"
    )
    r = s.cli("import", "dovecot-passwd", str(passwd), "--domain", "example.test", check=False)
    assert r.returncode == 1, r  # the MD5-CRYPT line is refused
    assert "imported 2, skipped 1 (already there), refused 1" in r.stdout, r.stdout
    assert "line 5: md5@example.test: refused: scheme {MD5-CRYPT} is not supported" in r.stderr
    before = hashes(s)
    assert before["sha@example.test"].startswith("$6$")
    assert before["blf@example.test"].startswith("$2y$")
    s.start()
    assert not pop3_login(s, "sha@example.test", "wrong-password")
    assert pop3_login(s, "sha@example.test", "sha-old-password")
    assert pop3_login(s, "blf@example.test", "blf-old-password")
    assert pop3_login(s, "kept@example.test", "unchanged-password")
    after = hashes(s)
    assert after["sha@example.test"].startswith("$argon2id$")
    assert after["blf@example.test"].startswith("$argon2id$")
    assert after["kept@example.test"] == before["kept@example.test"]
    # The new hash still takes the old password.
    assert pop3_login(s, "blf@example.test", "blf-old-password")
    assert not pop3_login(s, "blf@example.test", "blf-old-passworD")
    s.stop()


def test_postfix_virtual_map_becomes_aliases(make_server, tmp_path):
    s = make_server(trusted=("127.0.0.1/32",))
    s.cli("domain", "add", "example.test")
    s.add_user("alice@example.test")
    s.add_user("bob@example.test")
    vmap = tmp_path / "virtual"
    vmap.write_text(
        "example.test   anything       # virtual alias domain line\n"
        "sales@example.test   team@example.test\n"   # names an alias further down
        "team@example.test    alice@example.test,\n"
        "                     bob@example.test\n"
        "root@example.test    root\n"                 # a local Unix name: refused
    )
    r = s.cli("import", "postfix-virtual", str(vmap), check=False)
    assert r.returncode == 1
    assert "imported 2, skipped 0 (already there), refused 1" in r.stdout, (r.stdout, r.stderr)
    assert "local Unix name" in r.stderr
    s.start()
    with smtplib.SMTP(HOST, s.smtp_port, timeout=30) as c:
        c.sendmail("x@remote.test", ["sales@example.test"], b"Subject: via map\r\n\r\nhi\r\n")
    for user in ("alice", "bob"):
        got = s.wait_messages(f"{user}@example.test", 1)
        assert b"Subject: via map" in got[0]
    s.stop()


def start_dovecot(root, home, password):
    """A Dovecot POP3 server on a free loopback port serving `home`/Maildir for u@example.test
    (run as `nobody`, as Dovecot will not run mail processes as root)."""
    import pwd
    import time

    from conftest import free_port, wait_port
    nobody = pwd.getpwnam("nobody")
    port = free_port()
    for d in ("run", "state"):
        (root / d).mkdir(parents=True)
    (root / "users").write_text(
        f"u@example.test:{{PLAIN}}{password}:{nobody.pw_uid}:{nobody.pw_gid}::{home}::\n")
    (root / "dovecot.conf").write_text(f"""
base_dir = {root}/run
state_dir = {root}/state
instance_name = test-import-{port}
protocols = pop3
listen = {HOST}
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
log_path = {root}/dovecot.log
default_internal_user = nobody
default_login_user = nobody
first_valid_uid = 1
mail_location = maildir:~/Maildir
passdb {{
  driver = passwd-file
  args = {root}/users
}}
userdb {{
  driver = passwd-file
  args = {root}/users
}}
service pop3-login {{
  inet_listener pop3 {{
    address = {HOST}
    port = {port}
  }}
}}
""")
    subprocess.run(["chown", "-R", f"{nobody.pw_uid}:{nobody.pw_gid}", str(home)], check=True)
    subprocess.run(["dovecot", "-c", str(root / "dovecot.conf")], check=True)
    wait_port(HOST, port)
    pidfile = root / "run" / "master.pid"
    for _ in range(100):
        if pidfile.exists() and pidfile.read_text().strip():
            break
        time.sleep(0.05)
    return port, int(pidfile.read_text())


def pop3_all(port, user, password):
    """{UIDL: message bytes} over POP3, nothing deleted."""
    p = poplib.POP3(HOST, port, timeout=30)
    try:
        p.user(user)
        p.pass_(password)
        out = {}
        for line in p.uidl()[1]:
            num, uidl = line.decode().split()
            out[uidl] = b"\r\n".join(p.retr(int(num))[1])
        return out
    finally:
        p.quit()


def test_maildir_served_by_dovecot_keeps_its_uidls_in_mailroom(make_server, tmp_path):
    import os
    import shutil
    import signal
    import tempfile
    # Dovecot reads its users file and the Maildir as `nobody`: outside pytest's 0700 tree.
    outside = pathlib.Path(tempfile.mkdtemp(prefix="mailroom-dovecot-"))
    outside.chmod(0o755)
    try:
        dovecot_then_mailroom(make_server, outside)
    finally:
        shutil.rmtree(outside, ignore_errors=True)


def dovecot_then_mailroom(make_server, tmp_path):
    import os
    import signal
    home = tmp_path / "home"
    for sub in ("new", "cur", "tmp"):
        (home / "Maildir" / sub).mkdir(parents=True)
    for i in range(5):
        # LF line ends, as Dovecot's LDA writes them; one with a line starting with a dot.
        (home / "Maildir" / "new" / f"17000000{i:02d}.M{i}P1.oldhost").write_bytes(
            f"From: a@remote.test\nSubject: old {i}\n\nbody {i}\n.dot line\n".encode())
    port, pid = start_dovecot(tmp_path / "dovecot", home, "dove-pass-123")
    try:
        before = pop3_all(port, "u@example.test", "dove-pass-123")
    finally:
        os.kill(pid, signal.SIGTERM)
    assert len(before) == 5
    assert (home / "Maildir" / "dovecot-uidlist").exists()

    s = make_server(trusted=("127.0.0.1/32",))
    s.cli("domain", "add", "example.test")
    s.add_user("u@example.test", "mailroom-pass")
    r = s.cli("import", "maildir", "u@example.test", str(home / "Maildir"))
    assert "imported 5, skipped 0" in r.stdout, r.stdout
    # A second run adds nothing.
    assert "imported 0, skipped 5" in s.cli("import", "maildir", "u@example.test",
                                            str(home / "Maildir")).stdout
    s.start()
    after = pop3_all(s.pop3_port, "u@example.test", "mailroom-pass")
    s.stop()
    assert sorted(after) == sorted(before)
    for uidl, body in before.items():
        assert after[uidl] == body, uidl


def test_backup_under_load_restores_every_acknowledged_message(make_server, tmp_path):
    """Issue 15: `backup` taken while mail arrives; restored into a fresh data_dir, the server
    there has every message acknowledged before the backup started: local mail in alice's
    Maildir, and mail for a remote domain (whose relay does not answer) still in the queue."""
    import json
    import threading
    import time
    relay = '[relay]\nsmarthost = "127.0.0.1:9"\nretry_schedule = ["1h"]\n'
    s = make_server(trusted=("127.0.0.1/32",), extra="[delivery]\ndirect_local = false\n" + relay)
    s.cli("domain", "add", "example.test")
    s.add_user("alice@example.test")
    s.start()
    acked, stop = [], threading.Event()

    def load():
        with smtplib.SMTP(HOST, s.smtp_port, timeout=30) as c:
            i = 0
            while not stop.is_set():
                mid = f"<load-{i}@test>"
                rcpt = "alice@example.test" if i % 2 == 0 else "bob@remote.test"
                c.sendmail("x@example.test", [rcpt],
                           f"Message-ID: {mid}\r\nSubject: {i}\r\n\r\nbody {i}\r\n".encode())
                acked.append((time.time(), mid, rcpt))
                i += 1

    t = threading.Thread(target=load)
    t.start()
    while len(acked) < 100:
        time.sleep(0.05)
    started = time.time()
    r = s.cli("backup", str(tmp_path / "backup"))
    stop.set()
    t.join()
    assert "backup complete" in r.stdout, r
    s.stop()
    local = {mid for at, mid, rcpt in acked if at < started and rcpt.startswith("alice")}
    remote = {mid for at, mid, rcpt in acked if at < started and rcpt.startswith("bob")}
    assert len(local) >= 50 and len(remote) >= 49

    fresh = make_server(trusted=("127.0.0.1/32",), extra=relay)
    r = fresh.cli("restore", str(tmp_path / "backup"))
    assert "restored" in r.stdout
    # Restoring over a data_dir in use is refused.
    assert fresh.cli("restore", str(tmp_path / "backup"), check=False).returncode == 1

    def message_ids(blobs):
        out = set()
        for m in blobs:
            for line in m.split(b"\r\n"):
                if line.lower().startswith(b"message-id:"):
                    out.add(line.split(b":", 1)[1].strip().decode())
        return out

    queued = set()
    for line in fresh.cli("queue", "list", "--json").stdout.splitlines():
        m = json.loads(line)
        body = fresh.cli("queue", "show", m["id"]).stdout
        queued |= {l.split(":", 1)[1].strip() for l in body.splitlines()
                   if l.lower().startswith("message-id:")}
    assert remote <= queued, sorted(remote - queued)[:5]
    fresh.start()
    deadline = time.time() + 60
    while time.time() < deadline and not local <= message_ids(fresh.messages("alice@example.test")):
        time.sleep(0.2)
    got = message_ids(fresh.messages("alice@example.test"))
    fresh.stop()
    assert local <= got, sorted(local - got)[:5]
    assert fresh.cli("user", "list").stdout == "alice@example.test\n"
