"""POP3 end to end: mail delivered over SMTP is downloaded with Python's poplib, curl and
fetchmail, kept or deleted as the client is set."""

import os
import poplib
import smtplib
import socket
import stat
import subprocess

import pytest

from conftest import HOST, has


@pytest.fixture
def pop(make_server):
    """A server whose 127.0.0.0/8 clients may log in without TLS, with alice and bob."""
    s = make_server(trusted=("127.0.0.0/8",))
    s.cli("domain", "add", "example.test")
    s.add_user("alice@example.test", "alice-pw")
    s.add_user("bob@example.test", "bob-pw")
    s.start()
    yield s
    s.stop()


def deliver(server, rcpt, body: bytes, n_expected):
    with smtplib.SMTP(HOST, server.smtp_port) as c:
        c.sendmail("s@remote.test", [rcpt], body)
    return server.wait_messages(rcpt, n_expected)


def login(server, user="alice@example.test", password="alice-pw"):
    p = poplib.POP3(HOST, server.pop3_port, timeout=10)
    p.user(user)
    p.pass_(password)
    return p


def login_after_drop(server, deadline_s=10):
    """A login right after a session was dropped without QUIT: the server releases that
    session's maildrop lock once it has read the EOF, so, like a real client, retry while it
    answers [IN-USE] (RFC 2449 §8.1.1)."""
    import time
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            return login(server)
        except poplib.error_proto as e:
            if not e.args[0].startswith(b"-ERR [IN-USE]") or time.monotonic() > deadline:
                raise
            time.sleep(0.05)


BODY1 = b"Subject: one\r\n\r\nfirst message\r\n.starts with a dot\r\n..two dots\r\n.\r\nend\r\n"
BODY2 = b"Subject: two\r\n\r\n" + b"line\r\n" * 100


def test_poplib_every_command(pop):
    files = deliver(pop, "alice@example.test", BODY1, 1)
    files = deliver(pop, "alice@example.test", BODY2, 2)
    p = login(pop)
    count, size = p.stat()
    assert count == 2 and size == sum(len(f) for f in files)
    resp, listing, _ = p.list()
    sizes = [int(l.split()[1]) for l in listing]
    assert sorted(sizes) == sorted(len(f) for f in files)
    resp, uidls, _ = p.uidl()
    uids = [l.split()[1] for l in uidls]
    assert len(set(uids)) == 2
    assert p.uidl(1).split()[2] == uids[0]
    # RETR returns the stored bytes exactly, dots and all.
    resp, lines, octets = p.retr(1)
    assert b"\r\n".join(lines) + b"\r\n" == files[0] or b"\r\n".join(lines) + b"\r\n" == files[1]
    got1 = b"\r\n".join(lines) + b"\r\n"
    assert got1.endswith(BODY1)
    assert octets == len(got1)
    resp, top, _ = p.top(2, 3)
    assert top[top.index(b"") + 1:] == [b"line"] * 3
    assert p.noop().startswith(b"+OK")
    p.dele(1)
    with pytest.raises(poplib.error_proto):
        p.retr(1)
    assert p.stat()[0] == 1
    p.rset()
    assert p.stat()[0] == 2
    p.dele(2)
    with pytest.raises(poplib.error_proto):
        p.retr(3)
    with pytest.raises(poplib.error_proto):
        p._shortcmd("RETR x")
    capa = p.capa()
    for c in ("TOP", "UIDL", "RESP-CODES", "PIPELINING", "IMPLEMENTATION"):
        assert c in capa, capa
    assert "USER" not in capa  # not usable once logged in
    p.quit()
    # Before login, USER and SASL PLAIN are offered (trusted network, no TLS yet).
    q = poplib.POP3(HOST, pop.pop3_port, timeout=10)
    capa = q.capa()
    assert "USER" in capa and "PLAIN" in capa.get("SASL", []), capa
    q.quit()
    left = pop.messages("alice@example.test")
    assert len(left) == 1 and left[0].endswith(BODY1)
    # The UIDL of the kept message is unchanged in the next session.
    p = login(pop)
    assert [l.split()[1] for l in p.uidl()[1]] == [uids[0]]
    p.quit()


def test_wrong_password_and_unknown_user_same_reply(pop):
    replies = []
    for user, pw in (("alice@example.test", "wrong"), ("nobody@example.test", "whatever")):
        p = poplib.POP3(HOST, pop.pop3_port, timeout=10)
        p.user(user)
        with pytest.raises(poplib.error_proto) as e:
            p.pass_(pw)
        replies.append(e.value.args[0])
        p.close()
    assert replies[0] == replies[1] and replies[0].startswith(b"-ERR [AUTH]"), replies


def test_second_login_in_use_and_lock_released(pop):
    deliver(pop, "alice@example.test", BODY1, 1)
    p = login(pop)
    q = poplib.POP3(HOST, pop.pop3_port, timeout=10)
    q.user("alice@example.test")
    with pytest.raises(poplib.error_proto) as e:
        q.pass_("alice-pw")
    assert e.value.args[0].startswith(b"-ERR [IN-USE]")
    q.close()
    p.close()  # drop the connection without QUIT
    p = login(pop)
    assert p.stat()[0] == 1
    p.quit()


def test_dele_then_dropped_connection_deletes_nothing(pop):
    deliver(pop, "alice@example.test", BODY1, 1)
    p = login(pop)
    p.dele(1)
    p.close()  # no QUIT
    p = login_after_drop(pop)
    assert p.stat()[0] == 1
    p.quit()
    assert len(pop.messages("alice@example.test")) == 1


def test_plaintext_login_refused_from_untrusted(server):
    # The default fixture trusts only 127.0.0.2; we connect from 127.0.0.1 without TLS.
    p = poplib.POP3(HOST, server.pop3_port, timeout=10)
    with pytest.raises(poplib.error_proto) as e:
        p.user("alice@example.test")
    assert e.value.args[0].startswith(b"-ERR [AUTH]")
    p.close()


@pytest.mark.skipif(not has("curl"), reason="curl not installed")
def test_curl_pop3(pop):
    files = deliver(pop, "bob@example.test", BODY2, 1)
    base = f"pop3://{HOST}:{pop.pop3_port}"
    r = subprocess.run(["curl", "-s", "-u", "bob@example.test:bob-pw", base + "/"], capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [b"1", str(len(files[0])).encode()]
    r = subprocess.run(["curl", "-s", "-u", "bob@example.test:bob-pw", base + "/1"], capture_output=True, timeout=30)
    assert r.returncode == 0 and r.stdout == files[0]


def ends_with(fetched: bytes, body: bytes):
    """fetchmail hands messages to its MDA with LF line ends."""
    return fetched.replace(b"\r\n", b"\n").endswith(body.replace(b"\r\n", b"\n"))


def fetchmail(server, tmp, user, password, keep):
    out = tmp / f"fetched-{user}"
    out.mkdir(exist_ok=True)
    mda = tmp / "mda.sh"
    mda.write_text(f'#!/bin/sh\ncat > "{out}/$(date +%s%N).$$"\n')
    mda.chmod(0o755)
    rc = tmp / "fetchmailrc"
    rc.write_text(
        f'set idfile "{tmp}/fetchids"\nset no bouncemail\n'
        f"poll {HOST} with proto POP3 port {server.pop3_port} uidl\n"
        f'  user "{user}" there with password "{password}" is "root" here\n'
        f"  {'keep' if keep else 'nokeep'}\n"
        f'  mda "{mda}"\n'
        f"  sslproto ''\n"
    )
    rc.chmod(stat.S_IRUSR | stat.S_IWUSR)
    env = dict(os.environ, HOME=str(tmp))
    r = subprocess.run(["fetchmail", "-f", str(rc), "--nodetach", "--nosyslog"],
                       capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode in (0, 1), r.stdout + r.stderr  # 1: no new mail
    return sorted(p.read_bytes() for p in out.iterdir())


@pytest.mark.skipif(not has("fetchmail"), reason="fetchmail not installed")
def test_fetchmail_keep_fetches_each_message_once(pop, tmp_path):
    deliver(pop, "alice@example.test", BODY1, 1)
    deliver(pop, "alice@example.test", BODY2, 2)
    got = fetchmail(pop, tmp_path, "alice@example.test", "alice-pw", keep=True)
    assert len(got) == 2
    assert any(ends_with(g, BODY1) for g in got) and any(ends_with(g, BODY2) for g in got)
    # Second run: nothing new, and the server still has everything.
    got = fetchmail(pop, tmp_path, "alice@example.test", "alice-pw", keep=True)
    assert len(got) == 2
    assert len(pop.messages("alice@example.test")) == 2
    # A message that arrives between two fetches is the only one fetched next time.
    body3 = b"Subject: three\r\n\r\nthird\r\n"
    deliver(pop, "alice@example.test", body3, 3)
    got = fetchmail(pop, tmp_path, "alice@example.test", "alice-pw", keep=True)
    assert len(got) == 3
    assert sum(1 for g in got if ends_with(g, body3)) == 1
    assert len(pop.messages("alice@example.test")) == 3


@pytest.mark.skipif(not has("fetchmail"), reason="fetchmail not installed")
def test_fetchmail_without_keep_empties_the_mailbox(pop, tmp_path):
    deliver(pop, "bob@example.test", BODY1, 1)
    deliver(pop, "bob@example.test", BODY2, 2)
    got = fetchmail(pop, tmp_path, "bob@example.test", "bob-pw", keep=False)
    assert len(got) == 2
    assert any(ends_with(g, BODY1) for g in got)
    assert pop.messages("bob@example.test") == []


def test_auth_plain(pop):
    import base64

    deliver(pop, "bob@example.test", BODY1, 1)
    p = poplib.POP3(HOST, pop.pop3_port, timeout=10)
    token = base64.b64encode(b"\0bob@example.test\0bob-pw").decode()
    assert p._shortcmd(f"AUTH PLAIN {token}").startswith(b"+OK")
    assert p.stat()[0] == 1
    p.quit()
    # An authzid different from the authcid is refused (CVE-2023-27582 class).
    p = poplib.POP3(HOST, pop.pop3_port, timeout=10)
    token = base64.b64encode(b"alice@example.test\0bob@example.test\0bob-pw").decode()
    with pytest.raises(poplib.error_proto):
        p._shortcmd(f"AUTH PLAIN {token}")
    p.close()
