"""The Debian package as an admin installs it: `scripts/package-deb`, then `apt-get install
./mailroom_*.deb` gives the binary, the systemd unit (verified), the man page, shell
completions, the default config, the service user and Mailroom as the sendmail alternative.
Purged at the end."""

import glob
import os
import shutil
import subprocess

import pytest

from conftest import ROOT

TARGET = os.environ.get("CARGO_TARGET_DIR", str(ROOT / "target"))


def run(*cmd, **kw):
    r = subprocess.run(list(cmd), capture_output=True, text=True, timeout=1700, **kw)
    assert r.returncode == 0, f"{cmd}: {r.stdout[-2000:]}{r.stderr[-3000:]}"
    return r.stdout


def installed(pkg):
    r = subprocess.run(["dpkg-query", "-W", "-f=${Status}", pkg], capture_output=True, text=True)
    return "install ok installed" in r.stdout


@pytest.mark.timeout(1800)
@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (installs a package)")
@pytest.mark.skipif(subprocess.run(["cargo", "deb", "--version"], capture_output=True).returncode != 0,
                    reason="cargo-deb not installed (cargo install --locked cargo-deb, as .ci/run does)")
def test_the_deb_installs_everything_an_admin_expects():
    assert not installed("mailroom"), "a mailroom package is already installed on this machine"
    had_data_dir = os.path.exists("/var/lib/mailroom")
    had_postfix = installed("postfix")
    run(str(ROOT / "scripts" / "package-deb"), cwd=ROOT)
    debs = sorted(glob.glob(f"{TARGET}/debian/mailroom_*.deb"), key=os.path.getmtime)
    assert debs, f"no package in {TARGET}/debian"
    try:
        # --no-remove: the package must install beside the MTA already there (Postfix here).
        run("apt-get", "install", "-y", "-q", "--no-install-recommends", "--no-remove",
            os.path.abspath(debs[-1]),
            env=dict(os.environ, DEBIAN_FRONTEND="noninteractive"))
        assert run("/usr/bin/mailroom", "--version").startswith("mailroom ")
        assert run("man", "-w", "mailroom").strip().startswith("/usr/share/man/man8/mailroom.8")
        unit = "/lib/systemd/system/mailroom.service"
        if not os.path.exists(unit):
            unit = "/usr/lib/systemd/system/mailroom.service"
        r = subprocess.run(["systemd-analyze", "verify", unit], capture_output=True, text=True)
        assert r.returncode == 0 and r.stderr.strip() == "", r.stderr
        assert "/usr/bin/mailroom" in run("update-alternatives", "--query", "sendmail")
        assert os.path.exists("/usr/share/bash-completion/completions/mailroom")
        conf = open("/etc/mailroom/mailroom.toml").read()
        assert 'data_dir = "/var/lib/mailroom"' in conf
        run("/usr/bin/mailroom", "--config", "/etc/mailroom/mailroom.toml", "check-config")
        st = os.stat("/var/lib/mailroom")
        import pwd
        assert st.st_uid == pwd.getpwnam("mailroom").pw_uid
    finally:
        purged = subprocess.run(["dpkg", "--purge", "mailroom"], capture_output=True, text=True)
        if not had_data_dir:
            shutil.rmtree("/var/lib/mailroom", ignore_errors=True)
    assert purged.returncode == 0, purged.stderr
    assert not os.path.exists("/usr/bin/mailroom")
    assert installed("postfix") or not had_postfix
