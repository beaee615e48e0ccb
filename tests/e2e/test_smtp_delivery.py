"""Inbound SMTP to local Maildirs, driven by Python's smtplib, swaks and raw sockets; every
check reads the delivered Maildir files byte for byte."""

import re
import smtplib
import socket
import subprocess

import pytest

from conftest import HOST, HOSTNAME, has


def send(server, sender, rcpts, body: bytes, mail_options=(), rcpt_options=()):
    """Sends one message; returns the queue id from the 250 reply."""
    with smtplib.SMTP(HOST, server.smtp_port, timeout=30) as s:
        s.ehlo("client.test")
        code, resp = s.mail(sender, list(mail_options))
        assert code == 250, resp
        for r in rcpts:
            code, resp = s.rcpt(r, list(rcpt_options))
            assert code == 250, (r, code, resp)
        code, resp = s.data(body)
        assert code == 250, resp
        m = re.match(rb"2\.0\.0 Ok: queued as ([0-9A-Z]+)$", resp)
        assert m, resp
        return m.group(1).decode()


def check_delivered(raw: bytes, sender: str, body: bytes, qid: str):
    """A delivered file is Return-Path, our Received, then exactly the bytes sent."""
    rp = f"Return-Path: <{sender}>\r\n".encode()
    assert raw.startswith(rp), raw[:200]
    rest = raw[len(rp):]
    m = re.match(rb"Received: from client\.test \(\[127\.0\.0\.1\]\)\r\n\tby mx\.example\.test \(Mailroom\) with (ESMTP|UTF8SMTP) id ([0-9A-Z]+)(\r\n\tfor <[^>]+>)?; [^\r\n]+\r\n", rest)
    assert m, rest[:300]
    assert m.group(2).decode() == qid
    assert rest[m.end():] == body


MSG = (
    b"From: Sender <sender@remote.test>\r\n"
    b"To: alice@example.test\r\n"
    b"Subject: hello\r\n"
    b"\r\n"
    b"Hello Alice.\r\n"
    b".A line that starts with a dot\r\n"
    b"..and one with two\r\n"
)


def test_account_byte_for_byte(server):
    qid = send(server, "sender@remote.test", ["alice@example.test"], MSG)
    [raw] = server.wait_messages("alice@example.test", 1)
    check_delivered(raw, "sender@remote.test", MSG, qid)
    f = server.message_files("alice@example.test")[0]
    assert f.parent.name == "new"
    # maildir(5): the size in the name is the file's size.
    assert f.name.endswith(f",S={len(raw)}")
    server.wait_queue_empty()
    assert "status=sent" in server.log_text()


def test_case_insensitive_recipient(server):
    qid = send(server, "s@remote.test", ["ALICE@Example.TEST"], MSG)
    [raw] = server.wait_messages("alice@example.test", 1)
    check_delivered(raw, "s@remote.test", MSG, qid)


def test_alias_catchall_plus_postmaster(server):
    server.cli("alias", "add", "sales@example.test", "bob@example.test", "carol@example.test")
    server.cli("alias", "add", "@example.test", "carol@example.test")
    # Changes made by the CLI while the server runs take effect at once.
    q1 = send(server, "s@remote.test", ["sales@example.test"], MSG)
    bob = server.wait_messages("bob@example.test", 1)
    carol = server.wait_messages("carol@example.test", 1)
    check_delivered(bob[0], "s@remote.test", MSG, q1)
    check_delivered(carol[0], "s@remote.test", MSG, q1)

    q2 = send(server, "s@remote.test", ["whoever@example.test"], MSG)
    carol = server.wait_messages("carol@example.test", 2)
    assert any(q2.encode() in c for c in carol)

    q3 = send(server, "s@remote.test", ["alice+lists@example.test"], MSG)
    [alice] = server.wait_messages("alice@example.test", 1)
    check_delivered(alice, "s@remote.test", MSG, q3)

    # No postmaster alias and no configured postmaster: the first account of the domain.
    q4 = send(server, "s@remote.test", ["postmaster@example.test"], MSG)
    alice = server.wait_messages("alice@example.test", 2)
    assert any(q4.encode() in a for a in alice)


def test_postmaster_alias_wins(server):
    server.cli("alias", "add", "postmaster@example.test", "bob@example.test")
    qid = send(server, "s@remote.test", ["postmaster@example.test"], MSG)
    [raw] = server.wait_messages("bob@example.test", 1)
    check_delivered(raw, "s@remote.test", MSG, qid)


def test_bare_postmaster_accepted(server):
    with smtplib.SMTP(HOST, server.smtp_port) as s:
        s.ehlo("client.test")
        s.mail("s@remote.test")
        code, _ = s.docmd("RCPT TO:<Postmaster>")
        assert code == 250


def test_several_recipients_one_copy_per_account(server):
    server.cli("alias", "add", "team@example.test", "alice@example.test", "bob@example.test")
    qid = send(
        server,
        "s@remote.test",
        ["alice@example.test", "bob@example.test", "team@example.test", "carol@example.test"],
        MSG,
    )
    for u in ("alice", "bob", "carol"):
        got = server.wait_messages(f"{u}@example.test", 1)
        check_delivered(got[0], "s@remote.test", MSG, qid)
    server.wait_queue_empty()
    # Reached twice (direct and through the alias), delivered once.
    assert len(server.messages("alice@example.test")) == 1
    assert len(server.messages("bob@example.test")) == 1


def test_8bit_body(server):
    body = "From: s@remote.test\r\nSubject: caf\u00e9\r\n\r\nGr\u00fc\u00dfe \u2603 \xff\r\n".encode("utf-8")
    qid = send(server, "s@remote.test", ["bob@example.test"], body, mail_options=["BODY=8BITMIME"])
    [raw] = server.wait_messages("bob@example.test", 1)
    check_delivered(raw, "s@remote.test", body, qid)


def test_smtputf8_address(make_server):
    s = make_server()
    s.cli("domain", "add", "example.test")
    s.add_user("j\u00f6rg@example.test")
    s.start()
    body = "Subject: utf8\r\n\r\nHall\u00f6\r\n".encode()
    with smtplib.SMTP(HOST, s.smtp_port) as c:
        c.ehlo("client.test")
        assert c.has_extn("smtputf8")
        code, _ = c.mail("s\u00e9nder@remote.test", ["SMTPUTF8"])
        assert code == 250
        code, _ = c.rcpt("J\u00d6RG@example.test")
        assert code == 250
        code, resp = c.data(body)
        assert code == 250, resp
        qid = resp.decode().rsplit(" ", 1)[1]
    [raw] = s.wait_messages("j\u00f6rg@example.test", 1)
    assert raw.startswith("Return-Path: <s\u00e9nder@remote.test>\r\n".encode())
    assert b"with UTF8SMTP id " + qid.encode() in raw
    assert raw.endswith(body)
    s.stop()


def test_unknown_user_and_relay_refused_at_rcpt(server):
    with smtplib.SMTP(HOST, server.smtp_port) as s:
        s.ehlo("client.test")
        s.mail("s@remote.test")
        code, resp = s.rcpt("nobody@example.test")
        assert code == 550 and resp.startswith(b"5.1.1"), resp
        code, resp = s.rcpt("someone@elsewhere.test")
        assert code == 554 and resp.startswith(b"5.7.1"), resp
        assert b"Relay access denied" in resp
        # Relay tricks through our domain are only unknown local users.
        for trick in ("u%elsewhere.test@example.test", "elsewhere.test!u@example.test", '"u@elsewhere.test"@example.test'):
            code, resp = s.docmd(f"RCPT TO:<{trick}>")
            assert code in (550, 501), (trick, code, resp)
        code, resp = s.docmd("RCPT TO:<@example.test:u@elsewhere.test>")
        assert code == 554, resp


def test_bdat_raw_socket(server):
    body = b"Subject: chunked\r\n\r\nfirst part\r\n.second part\r\n"
    part1, part2 = body[:20], body[20:]
    with socket.create_connection((HOST, server.smtp_port)) as c:
        f = c.makefile("rb")

        def reply():
            lines = []
            while True:
                line = f.readline()
                lines.append(line)
                if line[3:4] == b" ":
                    return lines

        assert reply()[0].startswith(b"220 ")
        c.sendall(b"EHLO client.test\r\n")
        assert any(b"CHUNKING" in l for l in reply())
        c.sendall(b"MAIL FROM:<s@remote.test>\r\nRCPT TO:<carol@example.test>\r\n")
        assert reply()[0].startswith(b"250")
        assert reply()[0].startswith(b"250")
        c.sendall(b"BDAT %d\r\n" % len(part1) + part1)
        assert reply()[0].startswith(b"250")
        c.sendall(b"BDAT %d LAST\r\n" % len(part2) + part2)
        last = reply()[0]
        assert last.startswith(b"250 2.0.0 Ok: queued as "), last
        qid = last.split()[-1].decode()
        c.sendall(b"QUIT\r\n")
        assert reply()[0].startswith(b"221")
    [raw] = server.wait_messages("carol@example.test", 1)
    check_delivered(raw, "s@remote.test", body, qid)


def raw_session(port, data: bytes, timeout=5.0):
    """Sends `data` in one write and returns everything the server says until it closes or
    goes quiet."""
    with socket.create_connection((HOST, port), timeout=timeout) as c:
        c.sendall(data)
        out = b""
        try:
            while True:
                chunk = c.recv(65536)
                if not chunk:
                    break
                out += chunk
                if out.endswith(b"221 2.0.0 Bye\r\n"):
                    break
        except socket.timeout:
            pass
        return out


def test_smuggling_is_refused_not_split(server):
    for seq in (b"\n.\r\n", b"\n.\n", b"\r.\r\n", b"\r\n.\n"):
        data = (
            b"EHLO client.test\r\nMAIL FROM:<s@remote.test>\r\nRCPT TO:<alice@example.test>\r\nDATA\r\n"
            b"Subject: outer\r\n\r\nhi" + seq +
            b"MAIL FROM:<admin@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\nSubject: smuggled\r\n\r\nx\r\n.\r\nQUIT\r\n"
        )
        out = raw_session(server.smtp_port, data)
        assert b"\r\n550 5.6.11 " in out, out
        assert b"queued as" not in out, out
    assert server.messages("alice@example.test") == []
    assert server.messages("bob@example.test") == []


def test_pipelined_batch_replies_in_order(server):
    data = (
        b"EHLO client.test\r\nMAIL FROM:<s@remote.test>\r\nRCPT TO:<alice@example.test>\r\n"
        b"RCPT TO:<nobody@example.test>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n"
        b"Subject: pipelined\r\n\r\nbody\r\n.\r\nRSET\r\nNOOP\r\nVRFY alice\r\nQUIT\r\n"
    )
    out = raw_session(server.smtp_port, data)
    codes = [l[:3] for l in out.split(b"\r\n") if l[3:4] == b" "]
    assert codes == [b"220", b"250", b"250", b"250", b"550", b"250", b"354", b"250", b"250", b"250", b"252", b"221"], out
    server.wait_messages("alice@example.test", 1)
    server.wait_messages("bob@example.test", 1)


def test_replies_for_bad_input(server):
    data = (
        b"MAIL FROM:<s@remote.test>\r\n"          # 503 before EHLO
        b"EHLO client.test\r\n"
        b"RCPT TO:<alice@example.test>\r\n"        # 503 need MAIL
        b"FOO bar\r\n"                              # 500 unknown
        b"MAIL FROM:<s@remote.test> XYZZY=1\r\n"    # 555 unknown parameter
        b"MAIL FROM:<s@remote.test> SIZE=99999999\r\n"  # 552 too big
        b"NOOP " + b"x" * 600 + b"\r\n"             # 500 5.5.2 too long
        b"QUIT\r\n"
    )
    out = raw_session(server.smtp_port, data)
    lines = [l for l in out.split(b"\r\n") if l[3:4] == b" "]
    codes = [l[:9] for l in lines]
    assert codes == [b"220 mx.ex", b"503 5.5.1", b"250 START", b"503 5.5.1", b"500 5.5.1", b"555 5.5.4", b"552 5.3.4", b"500 5.5.2", b"221 2.0.0"], out


def test_message_too_big(server):
    with smtplib.SMTP(HOST, server.smtp_port) as s:
        s.ehlo("client.test")
        assert s.esmtp_features["size"] == "1048576"
        s.mail("s@remote.test")
        s.rcpt("alice@example.test")
        code, resp = s.data(b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * 1100)
        assert code == 552 and resp.startswith(b"5.3.4"), resp
        assert s.noop()[0] == 250
    assert server.messages("alice@example.test") == []


def test_too_many_recipients(make_server):
    s = make_server()
    s.cli("domain", "add", "example.test")
    s.add_user("alice@example.test")
    s.start()
    with smtplib.SMTP(HOST, s.smtp_port) as c:
        c.ehlo("client.test")
        c.mail("s@remote.test")
        for i in range(50):
            assert c.rcpt(f"alice+{i}@example.test")[0] == 250
        code, resp = c.rcpt("alice+51@example.test")
        assert code == 452 and resp.startswith(b"4.5.3"), resp
    s.stop()


@pytest.mark.skipif(not has("swaks"), reason="swaks not installed")
def test_swaks(server):
    r = subprocess.run(
        ["swaks", "--server", HOST, "--port", str(server.smtp_port), "--from", "s@remote.test",
         "--to", "bob@example.test", "--helo", "client.test", "--header", "Subject: from swaks",
         "--body", "Sent by swaks."],
        capture_output=True, text=True, timeout=60,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    m = re.search(r"<-\s+250 2\.0\.0 Ok: queued as ([0-9A-Z]+)", r.stdout)
    assert m, r.stdout
    [raw] = server.wait_messages("bob@example.test", 1)
    assert f"id {m.group(1)}".encode() in raw
    assert b"Subject: from swaks\r\n" in raw
    # swaks ends its body with blank lines, as its transcript shows.
    assert raw.endswith(b"\r\n\r\nSent by swaks.\r\n\r\n\r\n"), raw[-60:]


def test_ehlo_advertises_extensions(server):
    with smtplib.SMTP(HOST, server.smtp_port) as s:
        code, resp = s.ehlo("client.test")
        assert code == 250
        assert resp.split(b"\n")[0] == HOSTNAME.encode()
        for ext in ("pipelining", "size", "8bitmime", "enhancedstatuscodes", "smtputf8", "chunking"):
            assert s.has_extn(ext), ext


def test_large_messages_stream_to_disk(make_server):
    """8 MiB by DATA and by BDAT: well past the in-memory spill size; delivered intact, and the
    server's memory does not grow with the message."""
    s = make_server(max_message_size=16 * 1024 * 1024)
    s.cli("domain", "add", "example.test")
    s.add_user("alice@example.test")
    s.start()
    line = b"0123456789" * 9 + b"\r\n"
    body = b"Subject: big\r\n\r\n" + line * (8 * 1024 * 1024 // len(line))
    qid = send(s, "s@remote.test", ["alice@example.test"], body)
    [raw] = s.wait_messages("alice@example.test", 1, timeout=60)
    check_delivered(raw, "s@remote.test", body, qid)
    # BDAT in 1 MiB chunks.
    with socket.create_connection((HOST, s.smtp_port)) as c:
        f = c.makefile("rb")
        f.readline()
        c.sendall(b"EHLO client.test\r\n")
        while not f.readline().startswith(b"250 "):
            pass
        c.sendall(b"MAIL FROM:<s@remote.test>\r\nRCPT TO:<alice@example.test>\r\n")
        f.readline(), f.readline()
        chunks = [body[i:i + (1 << 20)] for i in range(0, len(body), 1 << 20)]
        for i, ch in enumerate(chunks):
            last = b" LAST" if i == len(chunks) - 1 else b""
            c.sendall(b"BDAT %d%s\r\n" % (len(ch), last) + ch)
            reply = f.readline()
            assert reply.startswith(b"250"), reply
        qid2 = reply.split()[-1].decode()
    got = s.wait_messages("alice@example.test", 2, timeout=60)
    assert any(qid2.encode() in g and g.endswith(body) for g in got)
    rss_kib = int(next(l for l in open(f"/proc/{s.proc.pid}/status") if l.startswith("VmRSS")).split()[1])
    assert rss_kib < 64 * 1024, f"server RSS {rss_kib} KiB after two 8 MiB messages"
