"""A certificate whose key only root can read (certbot's layout: 0700 `archive/` and `live/`
with symlinks) is served by the unprivileged server, and a renewal is picked up through
`mailroom tls reload` (the certbot deploy hook) without the key becoming readable by anyone
else; the self-signed default is made for the hostname with one year of validity."""

import datetime
import os
import pwd
import socket
import ssl
import stat
import subprocess

import pytest

from conftest import HOST, HOSTNAME, has

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def make_cert(directory, n, name):
    key, cert = directory / f"privkey{n}.pem", directory / f"cert{n}.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "90",
                    "-subj", f"/CN={name}", "-addext", f"subjectAltName=DNS:{name}"],
                   check=True, capture_output=True)
    os.chmod(key, 0o600)
    return cert.read_bytes()


def served_cert(port):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection((HOST, port), timeout=10) as raw:
        with ctx.wrap_socket(raw) as tls:
            return tls.getpeercert(binary_form=True)


def pem_der(pem):
    return ssl.PEM_cert_to_DER_cert(pem.decode())


def point_live(live, n):
    for link, target in (("fullchain.pem", f"cert{n}.pem"), ("privkey.pem", f"privkey{n}.pem")):
        p = live / link
        if p.is_symlink():
            p.unlink()
        p.symlink_to(f"../../archive/mx/{target}")


@pytest.mark.skipif(not has("openssl"), reason="openssl not installed")
def test_root_only_key_is_served_and_renewed_through_tls_reload(make_reachable_server):
    s = make_reachable_server()
    le = s.tmp / "letsencrypt"
    archive, live = le / "archive" / "mx", le / "live" / "mx"
    archive.mkdir(parents=True)
    live.mkdir(parents=True)
    for d in (le / "archive", le / "live"):
        os.chmod(d, 0o700)
    first = make_cert(archive, 1, HOSTNAME)
    point_live(live, 1)
    s.config.write_text(s.config.read_text().replace('user = ""', 'user = "mailroom"')
                        + f'[tls]\ncertificate = "{live}/fullchain.pem"\nprivate_key = "{live}/privkey.pem"\n')
    s.start()
    s.wait_log("running as user mailroom")
    assert served_cert(s.submissions_port) == pem_der(first)
    # certbot renews: new files in archive/, live/ links moved.
    second = make_cert(archive, 2, HOSTNAME)
    point_live(live, 2)
    # The server alone cannot read the new key: a plain SIGHUP keeps a working certificate.
    r = s.cli("tls", "reload")
    assert "reloads it now" in r.stdout, r.stdout + r.stderr
    s.wait_log("tls: certificate reloaded")
    assert served_cert(s.submissions_port) == pem_der(second)
    # Nothing was made readable: the originals are root's, the copy is the service user's only.
    for d in (le / "archive", le / "live"):
        assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    for k in archive.glob("privkey*.pem"):
        st = os.stat(k)
        assert st.st_uid == 0 and stat.S_IMODE(st.st_mode) == 0o600
    user = pwd.getpwnam("mailroom")
    tls_dir = s.data / "tls"
    assert stat.S_IMODE(os.stat(tls_dir).st_mode) == 0o700
    copy = tls_dir / "installed-key.pem"
    st = os.stat(copy)
    assert st.st_uid == user.pw_uid and stat.S_IMODE(st.st_mode) == 0o600
    assert copy.read_bytes() == (archive / "privkey2.pem").read_bytes()
    assert s.stop() == 0


def test_the_self_signed_certificate_names_the_host_for_a_year(make_server):
    s = make_server()
    s.start()
    der = served_cert(s.submissions_port)
    s.stop()
    pem = ssl.DER_cert_to_PEM_cert(der)
    out = subprocess.run(["openssl", "x509", "-noout", "-enddate", "-ext", "subjectAltName"],
                         input=pem, capture_output=True, text=True, check=True).stdout
    assert f"DNS:{HOSTNAME}" in out, out
    end = next(l for l in out.splitlines() if l.startswith("notAfter="))
    not_after = datetime.datetime.strptime(end.split("=", 1)[1], "%b %d %H:%M:%S %Y %Z")
    days = (not_after - datetime.datetime.utcnow()).days
    assert 360 <= days <= 366, end
