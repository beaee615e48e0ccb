"""The cost of password hashes (issue 14): `[auth] argon2_memory_kib` / `argon2_iterations`
below OWASP's minimum for argon2id (m = 19 MiB, t = 2) stop the server with exit 2 naming the
key; with higher values, new accounts get those parameters, and accounts imported from Dovecot
(SHA512-CRYPT, BLF-CRYPT hashes made by `doveadm pw`) or hashed earlier with the defaults get
them at their next successful POP3 login (poplib), which keeps working afterwards."""

import sqlite3
import subprocess

from conftest import BIN
from test_import import doveadm_pw, pop3_login


def hashes(s):
    db = sqlite3.connect(s.data / "directory.sqlite3")
    try:
        return dict(db.execute("SELECT key, hash FROM accounts"))
    finally:
        db.close()


def test_argon2_parameters_below_owasp_minimum_exit_2(tmp_path):
    for text, key in (
        ("[auth]\nargon2_memory_kib = 8192\n", "auth.argon2_memory_kib"),
        ("[auth]\nargon2_iterations = 1\n", "auth.argon2_iterations"),
    ):
        cfg = tmp_path / "low.toml"
        cfg.write_text(f'data_dir = "{tmp_path / "data"}"\nuser = ""\n' + text)
        r = subprocess.run([BIN, "--config", str(cfg), "serve"], capture_output=True, text=True,
                           timeout=30)
        assert r.returncode == 2, (text, r.returncode, r.stderr)
        assert key in r.stderr and "OWASP" in r.stderr, r.stderr


def test_logins_rehash_to_the_configured_parameters(make_server, tmp_path):
    s = make_server(trusted=("127.0.0.1/32",))
    s.cli("domain", "add", "example.test")
    s.add_user("early@example.test", "early-password")  # default parameters
    passwd = tmp_path / "users"
    passwd.write_text(
        f"sha@example.test:{doveadm_pw('SHA512-CRYPT', 'sha-old-password')}::::::\n"
        f"blf@example.test:{doveadm_pw('BLF-CRYPT', 'blf-old-password')}::::::\n"
    )
    s.cli("import", "dovecot-passwd", str(passwd), "--domain", "example.test")
    assert hashes(s)["early@example.test"].startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    # [auth] before [smtp]: a new section of its own in the config file.
    text = s.config.read_text()
    s.config.write_text(text.replace("[smtp]\n", "[auth]\nargon2_memory_kib = 24576\n"
                                     "argon2_iterations = 3\n[smtp]\n", 1))
    s.add_user("late@example.test", "late-password")
    want = "$argon2id$v=19$m=24576,t=3,p=1$"
    assert hashes(s)["late@example.test"].startswith(want)
    s.start()
    users = {"early": "early-password", "sha": "sha-old-password", "blf": "blf-old-password",
             "late": "late-password"}
    for u, pw in users.items():
        assert pop3_login(s, f"{u}@example.test", pw), u
    after = hashes(s)
    for u in users:
        assert after[f"{u}@example.test"].startswith(want), (u, after)
    for u, pw in users.items():
        assert pop3_login(s, f"{u}@example.test", pw), u
    assert not pop3_login(s, "sha@example.test", "sha-old-password-x")
    s.stop()
