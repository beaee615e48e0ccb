"""Memory of the queue runner and the relay while large messages go out: a message is streamed
from its spool file to the remote MTA (dot-stuffed on the fly for DATA, or as `BDAT` chunks
when the remote offers CHUNKING, RFC 3030), never held whole in memory. 8 messages of 40 MiB
are relayed at the same time to a sink written here; the server's peak RSS (VmHWM) must stay
under 200 MiB (holding the messages would take 320 MiB, and their dot-stuffed copies as
much again), and every message must arrive whole: what the sink received, minus the
`Received:` header the server added, has the sha256 of what was sent."""

import asyncio
import hashlib
import pathlib
import smtplib
import threading
import time

import pytest

from conftest import HOST

MESSAGES = 8
SIZE = 40 << 20
RSS_LIMIT_KIB = 200 << 10


def message(i):
    line = b"".join(b"%c" % (0x41 + k % 26) for k in range(76)) + b"\r\n"
    head = (
        f"From: <s{i}@example.test>\r\nTo: <r{i}@remote.test>\r\n"
        f"Subject: large {i}\r\n\r\n.a leading dot\r\n"
    ).encode()
    tail = f"..two dots\r\n.\r\nEND-OF-MESSAGE-{i}\r\n".encode()
    body = line * ((SIZE - len(head) - len(tail)) // len(line) + 1)
    return head + body[: SIZE - len(head) - len(tail)] + tail


class Sink:
    """A plain SMTP server on its own thread: EHLO (CHUNKING offered or not), MAIL, RCPT,
    DATA (dot-unstuffed) or BDAT, RSET, QUIT. Each message body goes to a file in `dir`;
    `received` lists (verb, path, chunks, saw_last) per message."""

    def __init__(self, directory, chunking):
        self.dir = directory
        self.chunking = chunking
        self.received = []
        self.lock = threading.Lock()
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self.thread.start()
        ready.wait(10)

    def _run(self, ready):
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(asyncio.start_server(self._session, HOST, 0))
        self.port = self.server.sockets[0].getsockname()[1]
        ready.set()
        self.loop.run_forever()

    def close(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    async def _session(self, reader, writer):
        buf = bytearray()

        async def fill():
            data = await reader.read(1 << 16)
            if not data:
                raise ConnectionError("closed")
            buf.extend(data)

        async def line():
            while (n := buf.find(b"\r\n")) < 0:
                await fill()
            out = bytes(buf[:n])
            del buf[: n + 2]
            return out

        def reply(text):
            writer.write(text.encode() + b"\r\n")

        out, chunks = None, 0
        try:
            reply("220 sink.test ESMTP")
            while True:
                await writer.drain()
                cmd = await line()
                verb = cmd.split(b" ")[0].upper()
                if verb == b"EHLO":
                    caps = ["PIPELINING", "SIZE 100000000", "8BITMIME", "ENHANCEDSTATUSCODES"]
                    if self.chunking:
                        caps.append("CHUNKING")
                    reply("\r\n".join(["250-sink.test"] + [f"250-{c}" for c in caps[:-1]] + [f"250 {caps[-1]}"]))
                elif verb in (b"MAIL", b"RCPT", b"RSET", b"NOOP"):
                    reply("250 2.0.0 ok")
                elif verb == b"DATA":
                    reply("354 go ahead")
                    await writer.drain()
                    path = self._path()
                    with open(path, "wb") as f:
                        while True:
                            cut = buf.rfind(b"\r\n")
                            if cut < 0:
                                await fill()
                                continue
                            # Whole lines, starting at a line start.
                            lines = b"\r\n" + bytes(buf[: cut + 2])
                            end = lines.find(b"\r\n.\r\n")
                            if end >= 0:
                                f.write(lines[:end + 2].replace(b"\r\n..", b"\r\n.")[2:])
                                del buf[: end + 3]
                                break
                            f.write(lines.replace(b"\r\n..", b"\r\n.")[2:])
                            del buf[: cut + 2]
                            await fill()
                    self._done(b"DATA", path, 0, False)
                    reply("250 2.0.0 queued")
                elif verb == b"BDAT":
                    words = cmd.split()
                    n, last = int(words[1]), len(words) > 2 and words[2].upper() == b"LAST"
                    if out is None:
                        out = open(self._path(), "wb")
                    chunks += 1
                    while n > 0:
                        if not buf:
                            await fill()
                        take = min(n, len(buf))
                        out.write(buf[:take])
                        del buf[:take]
                        n -= take
                    if last:
                        out.close()
                        self._done(b"BDAT", pathlib.Path(out.name), chunks, True)
                        out, chunks = None, 0
                        reply("250 2.0.0 queued")
                    else:
                        reply("250 2.0.0 chunk ok")
                elif verb == b"QUIT":
                    reply("221 2.0.0 bye")
                    await writer.drain()
                    break
                else:
                    reply("502 5.5.1 unknown")
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    def _path(self):
        with self.lock:
            return self.dir / f"m{len(self.received)}-{time.monotonic_ns()}"

    def _done(self, verb, path, chunks, last):
        with self.lock:
            self.received.append((verb, path, chunks, last))


def rss_kib(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for row in f:
            if row.startswith(key + ":"):
                return int(row.split()[1])
    return 0


@pytest.mark.parametrize("chunking", [False, True], ids=["data", "bdat"])
def test_large_relayed_messages_stream(make_server, tmp_path, chunking):
    sink_dir = tmp_path / "sink"
    sink_dir.mkdir()
    sink = Sink(sink_dir, chunking)
    extra = (
        f'[relay]\nsmarthost = "{HOST}:{sink.port}"\nsmarthost_tls = "opportunistic"\nper_destination_limit = {MESSAGES}\n'
        'retry_schedule = ["1s"]\n'
    )
    s = make_server(trusted=("127.0.0.1/32",), max_message_size=SIZE + (1 << 20), extra=extra)
    s.cli("domain", "add", "example.test")
    s.start()
    try:
        msgs = [message(i) for i in range(MESSAGES)]
        errors = []

        def send(i):
            try:
                with smtplib.SMTP(HOST, s.smtp_port, timeout=120) as c:
                    c.sendmail(f"s{i}@example.test", [f"r{i}@remote.test"], msgs[i])
            except Exception as e:  # reported below
                errors.append(f"message {i}: {e!r}")

        started = time.time()
        threads = [threading.Thread(target=send, args=(i,)) for i in range(MESSAGES)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
        deadline = time.time() + 300
        while len(sink.received) < MESSAGES and time.time() < deadline:
            time.sleep(0.1)
        took = time.time() - started
        peak = rss_kib(s.proc.pid, "VmHWM")
        assert len(sink.received) == MESSAGES, (sink.received, s.log_text()[-3000:])
        want = {hashlib.sha256(m).hexdigest(): i for i, m in enumerate(msgs)}
        seen = set()
        for verb, path, chunks, last in sink.received:
            assert verb == (b"BDAT" if chunking else b"DATA"), verb
            if chunking:
                # 64 KiB chunks, LAST on the last one.
                assert last and chunks >= SIZE >> 16, chunks
            data = path.read_bytes()
            cut = data.index(b"From: <s")
            digest = hashlib.sha256(data[cut:]).hexdigest()
            assert digest in want, f"a relayed message differs from every sent one ({len(data) - cut} octets)"
            seen.add(want[digest])
        assert seen == set(range(MESSAGES))
        print(f"{MESSAGES} x {SIZE >> 20} MiB relayed ({'BDAT' if chunking else 'DATA'}) "
              f"in {took:.1f} s, peak RSS {peak >> 10} MiB")
        assert peak <= RSS_LIMIT_KIB, f"server RSS reached {peak >> 10} MiB (limit {RSS_LIMIT_KIB >> 10} MiB)"
        s.wait_queue_empty()
    finally:
        s.stop()
        sink.close()
