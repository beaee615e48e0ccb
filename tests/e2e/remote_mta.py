"""The far side of relaying for the end-to-end tests: a real DNS server (dnsmasq) answering
MX/A queries on 127.0.0.1, and a real Postfix instance with its own config directory on a
127.0.0.x address, delivering into its own Maildirs."""

import os
import pathlib
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from conftest import free_port, wait_port

DNSMASQ = shutil.which("dnsmasq") or "/usr/sbin/dnsmasq"
POSTFIX = shutil.which("postfix") or "/usr/sbin/postfix"


class Dns:
    """dnsmasq serving only the records given, nothing else (no upstream, no /etc/hosts)."""

    def __init__(self, tmp: pathlib.Path, mx=(), a=(), raw=(), txt=(), forward=(), srv=()):
        """`txt`: (name, text) pairs, text split into 255-octet strings by dnsmasq, or (name,
        [character strings]); `forward`: (domain, "ip#port") pairs whose queries go to that
        server (a dead one: SERVFAIL); `srv`: (name, target, port, priority, weight)."""
        self.port = free_port()
        self.tmp = tmp
        args = [DNSMASQ, "--keep-in-foreground", "--no-daemon", "--no-resolv", "--no-hosts",
                "--no-poll", "--bind-interfaces", "--listen-address=127.0.0.1",
                f"--port={self.port}", "--log-queries", f"--log-facility={tmp / 'dnsmasq.log'}",
                f"--pid-file={tmp / 'dnsmasq.pid'}", "--user=root", "--group=root",
                # Authoritative-like answers for the test domains: NODATA / NXDOMAIN, never
                # REFUSED (which a resolver rightly takes as a temporary failure).
                "--local=/test/"]
        for domain, host, pref in mx:
            args.append(f"--mx-host={domain},{host},{pref}")
        for name, ip in a:
            args.append(f"--host-record={name},{ip}")
        for r in raw:
            args.append(f"--dns-rr={r}")
        # TXT: one string, or a list of character strings (one per comma: no quoting on a
        # command line).
        for name, text in txt:
            if isinstance(text, str):
                args.append(f"--txt-record={name},{text}")
            else:
                assert not any("," in s for s in text), text
                args.append(f"--txt-record={name}," + ",".join(text))
        for domain, server in forward:
            args.append(f"--server=/{domain}/{server}")
        for name, target, port, prio, weight in srv:
            args.append(f"--srv-host={name},{target},{port},{prio},{weight}")
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=open(tmp / "dnsmasq.err", "ab"))
        self._wait_ready(tmp)

    def _wait_ready(self, tmp, timeout=15.0):
        """Until dnsmasq answers a query (any answer) on its port."""
        query = bytes.fromhex("abcd01000001000000000000") + b"\x05ready\x04test\x00" + b"\x00\x01\x00\x01"
        deadline = time.time() + timeout
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.settimeout(0.2)
            while True:
                if self.proc.poll() is not None:
                    raise RuntimeError((tmp / "dnsmasq.err").read_text())
                u.sendto(query, ("127.0.0.1", self.port))
                try:
                    if u.recv(512)[:2] == b"\xab\xcd":
                        return
                except OSError:
                    pass
                if time.time() > deadline:
                    raise TimeoutError("dnsmasq does not answer")

    @property
    def server(self):
        return f"127.0.0.1:{self.port}"

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


class Postfix:
    """A Postfix that accepts mail for `domains` on ip:port and stores it in Maildirs under
    `mail/<local part>/`. Recipients can be made to defer or fail through `access`."""

    def __init__(self, tmp: pathlib.Path, ip="127.0.0.20", domains=("remote.test",), sasl_user=None,
                 users=("bob", "carol", "dave", "erin", "later", "nobody"), main_extra=""):
        self.ip = ip
        self.port = free_port(ip)
        # Postfix's daemons run as the postfix user, so its directories live outside pytest's
        # private (0700, and reset to 0700 by every pytest start) temporary tree; `tmp/postfix`
        # links to them for a look after a failure.
        self.root = pathlib.Path(tempfile.mkdtemp(prefix="mailroom-postfix-"))
        os.chmod(self.root, 0o755)
        try:
            (tmp / "postfix").symlink_to(self.root)
        except OSError:
            pass
        self.conf = self.root / "conf"
        self.mail = self.root / "mail"
        for d in (self.conf, self.mail, self.root / "queue", self.root / "data"):
            d.mkdir(parents=True, exist_ok=True)
            os.chmod(d, 0o755)
        pw = __import__("pwd").getpwnam("postfix")
        os.chown(self.mail, pw.pw_uid, pw.pw_gid)
        os.chown(self.root / "data", pw.pw_uid, pw.pw_gid)
        self.access = self.conf / "access"
        self.access.write_text("")
        (self.conf / "vmailbox").write_text(
            "".join(f"{u}@{d} {u}/\n" for d in domains for u in users)
        )
        extra = ""
        if sasl_user:
            extra = self._sasl(*sasl_user)
        (self.conf / "main.cf").write_text(
            f"""compatibility_level = 3.6
queue_directory = {self.root / 'queue'}
data_directory = {self.root / 'data'}
command_directory = /usr/sbin
daemon_directory = /usr/lib/postfix/sbin
meta_directory = /etc/postfix
shlib_directory = /usr/lib/postfix
mail_owner = postfix
setgid_group = postdrop
myhostname = mx1.remote.test
mydomain = remote.test
myorigin = remote.test
mydestination =
inet_interfaces = all
inet_protocols = ipv4
mynetworks = 127.0.0.255/32
smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination
virtual_mailbox_domains = {' '.join(domains)}
virtual_mailbox_base = {self.mail}
virtual_mailbox_maps = texthash:{self.conf / 'vmailbox'}
virtual_uid_maps = static:{pw.pw_uid}
virtual_gid_maps = static:{pw.pw_gid}
smtpd_recipient_restrictions = check_recipient_access regexp:{self.access}, permit_mynetworks, reject_unauth_destination
maillog_file = {self.root / 'maillog'}
maillog_file_prefixes = {self.root}
alias_maps =
alias_database =
biff = no
smtputf8_enable = yes
{extra}
{main_extra}
"""
        )
        (self.conf / "master.cf").write_text(
            f"""{ip}:{self.port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""
        )
        self._run("start")
        wait_port(ip, self.port)

    def _sasl(self, user, password):
        sasl = self.conf / "sasl"
        sasl.mkdir()
        db = self.root / "sasldb2"
        subprocess.run(["saslpasswd2", "-p", "-c", "-f", str(db), "-u", "remote.test", user],
                       input=password.encode(), check=True)
        os.chmod(db, 0o644)
        (sasl / "smtpd.conf").write_text(f"pwcheck_method: auxprop\nauxprop_plugin: sasldb\nmech_list: PLAIN LOGIN\nsasldb_path: {db}\n")
        # A test CA (ca.pem: what a client may trust) and the server's certificate from it,
        # naming mx1.remote.test and the listening address.
        c = self.conf
        run = lambda *a: subprocess.run(["openssl", *a], check=True, capture_output=True)
        run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=Test CA",
            "-keyout", str(c / "ca-key.pem"), "-out", str(c / "ca.pem"))
        run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=mx1.remote.test",
            "-keyout", str(c / "key.pem"), "-out", str(c / "req.pem"))
        (c / "ext.cnf").write_text(f"subjectAltName=DNS:mx1.remote.test,IP:{self.ip}\n"
                                   "basicConstraints=critical,CA:FALSE\n"
                                   "extendedKeyUsage=serverAuth\n")
        run("x509", "-req", "-in", str(c / "req.pem"), "-CA", str(c / "ca.pem"),
            "-CAkey", str(c / "ca-key.pem"), "-CAcreateserial", "-days", "2",
            "-extfile", str(c / "ext.cnf"), "-out", str(c / "cert.pem"))
        return f"""smtpd_sasl_auth_enable = yes
smtpd_sasl_type = cyrus
cyrus_sasl_config_path = {sasl}
smtpd_sasl_local_domain = remote.test
smtpd_tls_security_level = may
smtpd_tls_auth_only = yes
smtpd_tls_cert_file = {self.conf / 'cert.pem'}
smtpd_tls_key_file = {self.conf / 'key.pem'}
"""

    def _run(self, action):
        r = subprocess.run([POSTFIX, "-c", str(self.conf), action], capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            raise RuntimeError(f"postfix {action}: {r.stdout}{r.stderr}")

    def set_access(self, text, restart=False):
        """Rules like `/^later@/ 450 4.2.0 try later`. A reload reaches new connections only;
        `restart` also ends connections a client keeps open for reuse."""
        self.access.write_text(text)
        if restart:
            self._run("stop")
            self._run("start")
            wait_port(self.ip, self.port)
        else:
            reloads = self.log().count("reload")
            self._run("reload")
            # master logs the reload once it has re-read main.cf; smtpd processes started
            # after that read the new table.
            deadline = time.time() + 15
            while self.log().count("reload") <= reloads:
                if time.time() > deadline:
                    raise TimeoutError(f"postfix did not log its reload\n{self.log()[-2000:]}")
                time.sleep(0.05)

    def maildir_messages(self, local):
        out = []
        for sub in ("new", "cur"):
            d = self.mail / local / sub
            if d.is_dir():
                out += [p.read_bytes() for p in sorted(d.iterdir())]
        return out

    def wait_messages(self, local, n, timeout=30.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            got = self.maildir_messages(local)
            if len(got) >= n:
                return got
            time.sleep(0.1)
        log = (self.root / "maillog").read_text(errors="replace") if (self.root / "maillog").exists() else ""
        raise AssertionError(f"postfix: {local} has {len(self.maildir_messages(local))} messages, want {n}\n{log[-3000:]}")

    def log(self):
        p = self.root / "maillog"
        return p.read_text(errors="replace") if p.exists() else ""

    def stop(self):
        try:
            self._run("stop")
        except Exception:
            pass
        pid = self.root / "queue" / "pid" / "master.pid"
        if pid.exists():
            try:
                os.kill(int(pid.read_text().strip()), signal.SIGKILL)
            except (ValueError, ProcessLookupError):
                pass
        shutil.rmtree(self.root, ignore_errors=True)
