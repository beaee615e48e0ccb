"""Memory per session while a large message arrives as BDAT chunks (RFC 3030), each `BDAT n`
written together with its n octets: at most max(max_header_size, 256 KiB) of a message may be
held in memory, the rest must stream to the spool file. 20 sessions from 20 addresses send
40 MiB each at the same time; the server's peak RSS must stay far below what holding the
messages would take (800 MiB), and every message must arrive whole in the Maildir."""

import hashlib
import socket
import threading
import time

from conftest import HOST

SESSIONS = 20
SIZE = 40 << 20
CHUNK = 60_000
RSS_LIMIT_KIB = 200 << 10


def body():
    line = b"".join(b"%c" % (0x41 + i % 26) for i in range(76)) + b"\r\n"
    return (line * (SIZE // len(line) + 1))[: SIZE - 200]


def message(i, text):
    head = f"From: <s{i}@remote.test>\r\nTo: <alice@example.test>\r\nSubject: bdat {i}\r\n\r\n".encode()
    m = head + text
    return m[:SIZE]


def rss_kib(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def send(port, i, msg, stop, errors):
    source = f"127.0.0.{10 + i}"
    try:
        c = socket.create_connection((HOST, port), timeout=60, source_address=(source, 0))
        f = c.makefile("rb")
        assert f.readline().startswith(b"220")
        c.sendall(b"EHLO client.test\r\nMAIL FROM:<s%d@remote.test>\r\nRCPT TO:<alice@example.test>\r\n" % i)
        finals = 0
        while finals < 3:  # EHLO, MAIL, RCPT
            line = f.readline()
            assert line.startswith(b"250"), line
            finals += line[3:4] == b" "
        view = memoryview(msg)
        for at in range(0, len(msg), CHUNK):
            if stop.is_set():
                c.close()
                return
            piece = view[at : at + CHUNK]
            last = b" LAST" if at + CHUNK >= len(msg) else b""
            # The command and its octets in one write, then wait for the reply: each read of
            # the server ends exactly at the end of a chunk, so no chunk ever waits for input.
            c.sendall(b"BDAT %d%s\r\n" % (len(piece), last) + piece)
            reply = f.readline()
            assert reply.startswith(b"250"), reply
        assert b"queued as" in reply, reply
        c.sendall(b"QUIT\r\n")
        c.close()
    except Exception as e:  # reported by the main thread
        errors.append(f"session {i}: {e!r}")
        stop.set()


def test_bdat_chunks_stream_to_disk(make_server):
    # The queue runner streams each message into the Maildir as it goes: the 20 deliveries
    # run at once and count against the same limit.
    s = make_server(max_message_size=SIZE + 1024)
    s.cli("domain", "add", "example.test")
    s.add_user("alice@example.test")
    s.start()
    pid = s.proc.pid
    text = body()
    msgs = [message(i, text) for i in range(SESSIONS)]
    stop, errors = threading.Event(), []
    threads = [
        threading.Thread(target=send, args=(s.smtp_port, i, msgs[i], stop, errors)) for i in range(SESSIONS)
    ]
    start = time.time()
    for t in threads:
        t.start()
    peak = 0
    # Sample while sending; stop the clients as soon as the limit is passed (the old code
    # grew to gigabytes here).
    while any(t.is_alive() for t in threads):
        peak = max(peak, rss_kib(pid, "VmRSS"))
        if peak > RSS_LIMIT_KIB:
            stop.set()
        time.sleep(0.05)
    for t in threads:
        t.join()
    peak = max(peak, rss_kib(pid, "VmHWM"))
    took = time.time() - start
    assert peak <= RSS_LIMIT_KIB, f"server RSS reached {peak >> 10} MiB (limit {RSS_LIMIT_KIB >> 10} MiB)"
    assert not errors, errors
    got = s.wait_messages("alice@example.test", SESSIONS, timeout=120)
    want = {hashlib.sha256(m).hexdigest(): i for i, m in enumerate(msgs)}
    seen = set()
    for data in got:
        # The server prepends its Received: header; the rest is the client's bytes, whole.
        cut = data.index(b"From: <s")
        digest = hashlib.sha256(data[cut:]).hexdigest()
        assert digest in want, f"a delivered message differs from every sent one ({len(data) - cut} octets)"
        seen.add(want[digest])
    assert seen == set(range(SESSIONS))
    print(f"{SESSIONS} x {SIZE >> 20} MiB over BDAT in {took:.1f} s, peak RSS {peak >> 10} MiB")
    s.stop()
