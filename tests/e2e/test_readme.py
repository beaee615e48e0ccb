"""The README's run command, run literally as a new admin would (from a clone, with a config
that moves the ports: `$MAILROOM_CONFIG`, since the command has no `--config`), answers with
the 220 greeting. `./run-tests` builds the release binary first, so the command here only
checks that it is fresh; it honours `CARGO_TARGET_DIR` as cargo does."""

import os
import re
import signal
import socket
import subprocess
import time

import pytest

from conftest import HOSTNAME, ROOT, Server, has


def readme_run_command():
    text = (ROOT / "README.md").read_text()
    section = text.split("## The two commands", 1)[1]
    return re.search(r"```sh\n(.*?)\n```", section, re.S).group(1).strip()


@pytest.mark.timeout(1800)
@pytest.mark.skipif(not has("cargo"), reason="cargo not installed")
def test_the_readme_run_command_serves(tmp_path):
    command = readme_run_command()
    assert command == "cargo run --release -- serve"
    s = Server(tmp_path)
    log = open(tmp_path / "run.log", "wb")
    proc = subprocess.Popen(["bash", "-c", command], cwd=ROOT, stdout=log, stderr=log,
                            env=dict(os.environ, MAILROOM_CONFIG=str(s.config)),
                            start_new_session=True)
    try:
        deadline = time.time() + 1700  # a cold release build on a slow machine
        greeting = None
        while time.time() < deadline and greeting is None:
            assert proc.poll() is None, (tmp_path / "run.log").read_text()[-3000:]
            try:
                with socket.create_connection(("127.0.0.1", s.smtp_port), timeout=5) as c:
                    c.settimeout(30)
                    greeting = c.recv(512)
                    c.sendall(b"QUIT\r\n")
            except OSError:
                time.sleep(0.5)
        assert greeting is not None, (tmp_path / "run.log").read_text()[-3000:]
        assert greeting.startswith(f"220 {HOSTNAME} ".encode()), greeting
        # The listeners greet before start-up has finished (queue recovery, the signal
        # handlers); a SIGTERM before "mailroom started" would end it by the signal's default.
        started = time.time() + 120
        while "mailroom started" not in (tmp_path / "run.log").read_text():
            assert proc.poll() is None and time.time() < started, (tmp_path / "run.log").read_text()[-3000:]
            time.sleep(0.1)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        rc = proc.wait(timeout=60)
    assert rc == 0, (tmp_path / "run.log").read_text()[-3000:]
