"""End-to-end fixtures: run the real `mailroom` binary on 127.0.0.1 ephemeral ports with a
temporary config and data_dir, and read what it delivered straight from the Maildirs."""

import os
import pathlib
import random
import shutil
import signal
import socket
import subprocess
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = os.environ.get("MAILROOM_BIN", str(ROOT / "target" / "debug" / "mailroom"))
HOST = "127.0.0.1"
HOSTNAME = "mx.example.test"


_HANDED_OUT = set()


def free_port(host=HOST):
    """A port that is free now, below the kernel's ephemeral range (32768 and up on Linux):
    a port the kernel hands out (bind to 0) may be given again to an outgoing connection
    before the server binds it, and then the start fails with "Address already in use"."""
    low, high = 20000, 32000
    try:
        eph = open("/proc/sys/net/ipv4/ip_local_port_range").read().split()
        high = min(high, int(eph[0]) - 1)
    except (OSError, ValueError, IndexError):
        pass
    # Under pytest-xdist (`run-tests` runs files in parallel) each worker draws from its own
    # slice of the range: _HANDED_OUT is per process, and a port one worker handed out but
    # whose server has not bound it yet would look free to another.
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    if worker.startswith("gw") and workers > 1:
        span = (high - low) // workers
        low += int(worker[2:]) * span
        high = low + span - 1
    for _ in range(1000):
        port = random.randint(low, high)
        # Never the same port twice in one run: a port handed out is free only until its
        # server binds it, and two servers (or two listeners of one) given the same free port
        # made a start fail now and then with "Address already in use".
        if port in _HANDED_OUT:
            continue
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            _HANDED_OUT.add(port)
            return port
    raise RuntimeError("no free port")


def wait_port(host, port, timeout=15.0, proc=None):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"{host}:{port} not listening")


class Server:
    """One Mailroom instance with its own data_dir and ports."""

    def __init__(self, tmp: pathlib.Path, trusted=("127.0.0.2/32",), extra="", max_message_size=1048576,
                 smtp_extra="", verify=False, http=False, http_extra=""):
        self.tmp = tmp
        self.data = tmp / "data"
        self.config = tmp / "mailroom.toml"
        self.log = tmp / "server.log"
        self.smtp_port = free_port()
        self.submission_port = free_port()
        self.submissions_port = free_port()
        self.pop3_port = free_port()
        self.pop3s_port = free_port()
        # The web listeners (80/443 by default) only where a test asks for them (http=True).
        self.http_port = free_port() if http else None
        self.https_port = free_port() if http else None
        http_listen = f'["{HOST}:{self.http_port}"]' if http else "[]"
        https_listen = f'["{HOST}:{self.https_port}"]' if http else "[]"
        self.proc = None
        trusted_list = ", ".join(f'"{t}"' for t in trusted)
        # SPF/DKIM/DMARC/ARC checks (on by default) would ask this machine's resolver about
        # every test sender; only test_verify.py, with its own dnsmasq, wants them. (Before
        # [smtp]: tests append keys to the last section, [pop3].)
        no_verify = "" if verify else "[verify]\nspf = false\ndkim = false\ndmarc = false\narc = false\n"
        self.config.write_text(
            f'hostname = "{HOSTNAME}"\n'
            f'data_dir = "{self.data}"\n'
            f'log_level = "info"\n'
            f'user = ""\n'
            f"{extra}\n"
            f"{no_verify}"
            f"[http]\nlisten = {http_listen}\nhttps = {https_listen}\n{http_extra}"
            f"[smtp]\n"
            f'listen = ["{HOST}:{self.smtp_port}"]\n'
            f'submission = ["{HOST}:{self.submission_port}"]\n'
            f'submissions = ["{HOST}:{self.submissions_port}"]\n'
            f"max_message_size = {max_message_size}\n"
            f"max_recipients = 50\n"
            f"trusted_networks = [{trusted_list}]\n"
            f"shutdown_grace = 2\n"
            f"{smtp_extra}"
            f"[pop3]\n"
            f'listen = ["{HOST}:{self.pop3_port}"]\n'
            f'pop3s = ["{HOST}:{self.pop3s_port}"]\n'
        )


    def cli(self, *args, input=None, check=True):
        r = subprocess.run(
            [BIN, "--config", str(self.config), *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if check and r.returncode != 0:
            raise AssertionError(f"mailroom {' '.join(args)} failed ({r.returncode}): {r.stderr}")
        return r

    def add_user(self, address, password="secret"):
        # Test passwords are short on purpose: --allow-weak (test_admin_cli.py covers the check).
        self.cli("user", "add", address, "--password-stdin", "--allow-weak", input=password + "\n")

    def start(self):
        started_before = self.log_text().count("mailroom started")
        probes_before = self.log_text().count(f"smtpd: disconnect from [{HOST}]")
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [BIN, "--config", str(self.config), "serve"], stdout=logf, stderr=logf
        )
        wait_port(HOST, self.smtp_port, proc=self.proc)
        # Ports are bound before start-up finishes (privileges, queue recovery): wait for it.
        deadline = time.time() + 15
        while self.log_text().count("mailroom started") <= started_before:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}\n{self.log_text()[-3000:]}")
            if time.time() >= deadline:
                raise TimeoutError(f"server did not finish starting\n{self.log_text()[-3000:]}")
            time.sleep(0.02)
        # wait_port's probe connection holds a connection slot until the server sees it close:
        # tests of connection limits must not count it.
        while self.log_text().count(f"smtpd: disconnect from [{HOST}]") <= probes_before:
            if time.time() >= deadline:
                raise TimeoutError(f"the start-up probe was never seen closed\n{self.log_text()[-3000:]}")
            time.sleep(0.02)
        return self

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout=timeout)
        finally:
            self.proc = None
        return rc

    def kill(self):
        return self.stop(signal.SIGKILL)

    def log_text(self):
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_log(self, text, count=1, timeout=30.0):
        """Waits until `text` appears `count` times in the server's log."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.log_text().count(text) >= count:
                return
            time.sleep(0.05)
        raise AssertionError(f"{text!r} not {count}x in the log:\n{self.log_text()[-3000:]}")

    def maildir(self, address):
        local, domain = address.rsplit("@", 1)
        return self.data / "mail" / domain.lower() / local.lower() / "Maildir"

    def message_files(self, address):
        md = self.maildir(address)
        files = []
        for sub in ("new", "cur"):
            d = md / sub
            if d.is_dir():
                files += [p for p in d.iterdir() if not p.name.startswith(".")]
        return sorted(files)

    def messages(self, address):
        return [p.read_bytes() for p in self.message_files(address)]

    def wait_messages(self, address, n, timeout=20.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            got = self.messages(address)
            if len(got) >= n:
                return got
            time.sleep(0.05)
        raise AssertionError(
            f"{address}: expected {n} messages, have {len(self.messages(address))}\n{self.log_text()[-3000:]}"
        )

    def queue_files(self):
        q = self.data / "queue" / "msg"
        return [p for p in q.iterdir() if "." not in p.name] if q.is_dir() else []

    def wait_queue_empty(self, timeout=20.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if not self.queue_files():
                return
            time.sleep(0.05)
        raise AssertionError(f"queue not empty: {self.queue_files()}")


@pytest.fixture
def make_server(tmp_path):
    servers = []

    def make(**kw):
        sub = tmp_path / f"s{len(servers)}"
        sub.mkdir()
        s = Server(sub, **kw)
        servers.append(s)
        return s

    yield make
    for s in servers:
        if s.proc is not None and s.proc.poll() is None:
            s.kill()


@pytest.fixture
def server(make_server):
    """A running server for example.test with accounts alice, bob and carol."""
    s = make_server()
    s.cli("domain", "add", "example.test")
    for u in ("alice", "bob", "carol"):
        s.add_user(f"{u}@example.test")
    s.start()
    yield s
    s.stop()


def has(tool):
    return shutil.which(tool) is not None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """With CI set, a skipped test fails the run: a missing tool or missing root must not let
    the suite pass by testing less (.ci/run installs every tool and runs as root)."""
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") and report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under CI (a skip fails the run here): {reason}"


@pytest.fixture
def make_reachable_server():
    """Like make_server, in a directory other users (the service user, `nobody`) can reach, as
    under /var/lib: not under pytest's base directory, which other pytest runs may make private
    again while this test runs."""
    import tempfile
    base = pathlib.Path(tempfile.mkdtemp(prefix="mailroom-e2e-"))
    os.chmod(base, 0o755)
    servers = []

    def make(**kw):
        sub = base / f"s{len(servers)}"
        sub.mkdir(mode=0o755)
        servers.append(Server(sub, **kw))
        return servers[-1]

    yield make
    for s in servers:
        if s.proc is not None and s.proc.poll() is None:
            s.kill()
    shutil.rmtree(base, ignore_errors=True)
