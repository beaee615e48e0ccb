"""`sendmail` and `mailq` as cron, PHP mail(), bsd-mailx and `git send-email` use them: root
queues straight into the spool, an ordinary user through the maildrop; both while the server
is down (delivered when it starts) and while it runs."""

import os
import pwd
import shutil
import subprocess
import time

import pytest

from conftest import BIN, has

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (runs sendmail as nobody)")


def links(s):
    """`sendmail` and `mailq` symlinks to the binary, as the package installs them."""
    d = s.tmp / "bin"
    d.mkdir(exist_ok=True)
    os.chmod(d, 0o755)
    for name in ("sendmail", "mailq"):
        p = d / name
        if not p.exists():
            p.symlink_to(BIN)
    return d


def env_for(s, home=None):
    env = dict(os.environ, MAILROOM_CONFIG=str(s.config))
    if home:
        env["HOME"] = str(home)
    return env


def as_nobody(cmd):
    return ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", "--", *cmd]


def maildrop(s):
    d = s.data / "maildrop"
    return [p for p in d.iterdir() if not p.name.startswith(".")] if d.is_dir() else []


def service_user_server(make_reachable_server):
    s = make_reachable_server()
    s.config.write_text(s.config.read_text().replace('user = ""', 'user = "mailroom"'))
    s.cli("domain", "add", "example.test")
    for u in ("alice", "nobody"):
        s.add_user(f"{u}@example.test")
    return s


@pytest.mark.skipif(not has("bsd-mailx"), reason="bsd-mailx not installed")
def test_root_mailx_and_cron_while_down_then_up(make_reachable_server):
    s = service_user_server(make_reachable_server)
    bindir = links(s)
    mailrc = s.tmp / "mailrc"
    mailrc.write_text(f"set sendmail={bindir / 'sendmail'}\n")
    env = dict(env_for(s), MAILRC=str(mailrc))
    r = subprocess.run(["bsd-mailx", "-s", "disk report", "alice@example.test"], input="all fine\n",
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    # Debian cron's call, to an unqualified local user.
    r = subprocess.run([str(bindir / "sendmail"), "-FCronDaemon", "-i", "-B8BITMIME", "-oem", "alice"],
                       input="Subject: Cron <root@host> backup\n\nbackup done\n.\nstill body\n",
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    # Server down: both are in the spool, and mailq shows them.
    assert len(s.queue_files()) == 2
    q = subprocess.run([str(bindir / "mailq")], env=env, capture_output=True, text=True, timeout=60)
    assert q.returncode == 0 and "2 message(s)" in q.stdout, q.stdout + q.stderr
    s.start()
    msgs = sorted(m.decode() for m in s.wait_messages("alice@example.test", 2))
    report = next(m for m in msgs if "disk report" in m)
    cron = next(m for m in msgs if "backup" in m)
    assert "Received: by mx.example.test (Mailroom, from userid 0)" in report
    assert "Return-Path: <root@example.test>" in report
    assert "all fine\r\n" in report
    assert 'From: "CronDaemon" <root@example.test>\r\n' in cron
    # -i: a lone dot is text.
    assert "backup done\r\n.\r\nstill body\r\n" in cron
    # Server up: PHP mail() style, recipients from the headers, Bcc removed.
    r = subprocess.run([str(bindir / "sendmail"), "-t", "-i"],
                       input="To: alice@example.test\nBcc: nobody@example.test\nSubject: php\n\nhi\n",
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    got = s.wait_messages("nobody@example.test", 1)[0].decode()
    assert "Subject: php" in got and "Bcc:" not in got
    assert len(s.wait_messages("alice@example.test", 3)) == 3
    assert s.stop() == 0


def git(*args, cwd, env):
    # Debian's git with git-email (.ci/run); another git first on PATH may lack send-email.
    exe = "/usr/bin/git" if os.path.exists("/usr/bin/git") else "git"
    r = subprocess.run(as_nobody([exe, *args]), cwd=cwd, env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, f"git {args}: {r.stdout}{r.stderr}"
    return r


@pytest.mark.skipif(not has("git") or not has("setpriv"), reason="git or setpriv not installed")
def test_git_send_email_by_an_ordinary_user_while_down_then_up(make_reachable_server):
    s = service_user_server(make_reachable_server)
    bindir = links(s)
    s.start()  # the first start makes the maildrop
    assert s.stop() == 0
    nobody = pwd.getpwnam("nobody")
    home = s.tmp / "home"
    home.mkdir()
    os.chown(home, nobody.pw_uid, nobody.pw_gid)
    env = env_for(s, home)
    env.update(GIT_AUTHOR_NAME="No Body", GIT_AUTHOR_EMAIL="nobody@example.test",
               GIT_COMMITTER_NAME="No Body", GIT_COMMITTER_EMAIL="nobody@example.test")
    git("init", "-q", "repo", cwd=home, env=env)
    repo = home / "repo"
    (repo / "a.txt").write_text("hello\n")
    os.chown(repo / "a.txt", nobody.pw_uid, nobody.pw_gid)
    git("add", "a.txt", cwd=repo, env=env)
    git("commit", "-q", "-m", "Add a greeting", cwd=repo, env=env)
    git("format-patch", "-1", "-o", "out", cwd=repo, env=env)
    [patch] = (repo / "out").iterdir()
    git("send-email", f"--sendmail-cmd={bindir / 'sendmail'}", "--to=alice@example.test",
        "--from=No Body <nobody@example.test>", "--confirm=never", "--suppress-cc=all",
        "--no-validate", "--quiet", str(patch), cwd=repo, env=env)
    # Down: the message waits in the maildrop, owned by nobody, not readable by others.
    [dropped] = maildrop(s)
    st = os.stat(dropped)
    assert st.st_uid == nobody.pw_uid and st.st_mode & 0o077 == 0o004
    # A sender that is not nobody's own is marked.
    r = subprocess.run(as_nobody([str(bindir / "sendmail"), "-f", "boss@example.test", "alice@example.test"]),
                       input="Subject: forged\n\nx\n", env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert len(maildrop(s)) == 2
    s.start()
    msgs = [m.decode() for m in s.wait_messages("alice@example.test", 2)]
    patch_mail = next(m for m in msgs if "[PATCH] Add a greeting" in m)
    assert f"Received: by mx.example.test (Mailroom, from userid {nobody.pw_uid})" in patch_mail
    assert "Return-Path: <nobody@example.test>" in patch_mail
    assert "X-Authentication-Warning" not in patch_mail
    assert "+hello" in patch_mail
    forged = next(m for m in msgs if "Subject: forged" in m)
    assert "X-Authentication-Warning: mx.example.test: nobody set sender to <boss@example.test> using -f" in forged
    assert maildrop(s) == []
    # Up: picked up within a second or so.
    r = subprocess.run(as_nobody([str(bindir / "sendmail"), "alice@example.test"]),
                       input="Subject: live\n\nx\n", env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert any("Subject: live" in m.decode() for m in s.wait_messages("alice@example.test", 3))
    assert s.stop() == 0


@pytest.mark.skipif(not has("setpriv"), reason="setpriv not installed")
def test_sendmail_says_why_it_cannot_queue(make_reachable_server):
    s = service_user_server(make_reachable_server)
    bindir = links(s)
    # Never started: no maildrop for ordinary users.
    r = subprocess.run(as_nobody([str(bindir / "sendmail"), "alice@example.test"]), input="x\n",
                       env=env_for(s), capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "cannot queue the message" in r.stderr, r.stderr
    # Too large (max_message_size is 1 MiB in these tests), and no recipient.
    r = subprocess.run([str(bindir / "sendmail"), "-i", "alice@example.test"], input="x" * (2 << 20),
                       env=env_for(s), capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "max_message_size" in r.stderr, r.stderr
    r = subprocess.run([str(bindir / "sendmail"), "-i"], input="Subject: x\n\n",
                       env=env_for(s), capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "no recipients" in r.stderr, r.stderr
    assert s.queue_files() == []
