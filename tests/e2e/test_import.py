"""Migration from Dovecot and Postfix (issue 15): a Dovecot passwd-file whose hashes were made
by Dovecot itself (`doveadm pw`, SHA512-CRYPT and BLF-CRYPT) is imported, its users log in over
POP3 with their old passwords, and the hashes are then argon2id; a Postfix virtual alias map
becomes aliases that deliver."""

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
