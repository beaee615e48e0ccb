"""Admin input (issue 15): domain names that cannot be mail domains, alias loops and aliases
to unknown local accounts, removing one alias target, weak and piped passwords, and the queue
commands an admin scripts against (`queue list --json`, `queue show --body` with dates,
`queue flush --domain`, `queue remove ALL`)."""

import json
import smtplib
import subprocess

from conftest import BIN, HOST


def test_domain_names_that_cannot_be_mail_domains_are_refused(make_server):
    s = make_server()
    for bad, why in (("-bad.com", "hyphen"), ("1.2.3.4", "IP address"), ("com", "two labels"),
                     ("localhost", "RFC 6761")):
        r = s.cli("domain", "add", bad, check=False)
        assert r.returncode == 1, (bad, r.stderr)
        assert why in r.stderr, (bad, r.stderr)
        assert r.stderr.count("\n") == 1
    assert s.cli("domain", "list").stdout == ""
    s.cli("domain", "add", "mail.example.co.uk")
    assert s.cli("domain", "list").stdout == "mail.example.co.uk\n"


def test_alias_loops_unknown_targets_and_removing_one_target(make_server):
    s = make_server()
    s.cli("domain", "add", "example.test")
    s.add_user("alice@example.test")
    r = s.cli("alias", "add", "sales@example.test", "nobody@example.test", check=False)
    assert r.returncode == 1 and "no such account or alias" in r.stderr, r.stderr
    s.cli("alias", "add", "b@example.test", "alice@example.test")
    s.cli("alias", "add", "a@example.test", "b@example.test")
    r = s.cli("alias", "add", "b@example.test", "a@example.test", check=False)
    assert r.returncode == 1 and "loop" in r.stderr, r.stderr
    # Nothing of the refused alias was stored.
    assert "b@example.test -> alice@example.test\n" in s.cli("alias", "list").stdout
    s.cli("alias", "add", "team@example.test", "alice@example.test", "ext@remote.test")
    s.cli("alias", "remove", "team@example.test", "ext@remote.test")
    out = s.cli("alias", "list").stdout
    assert "team@example.test -> alice@example.test\n" in out, out
    r = s.cli("alias", "remove", "team@example.test", "ext@remote.test", check=False)
    assert r.returncode == 1


def test_weak_and_piped_passwords(make_server):
    s = make_server()
    s.cli("domain", "add", "example.test")
    for pw, why in (("short", "shorter than 10"), ("bob@example.test", "the address"),
                    ("bob", "the address"), ("            ", "blank")):
        r = s.cli("user", "add", "bob@example.test", "--password-stdin", input=pw + "\n",
                  check=False)
        assert r.returncode == 1 and why in r.stderr and "--allow-weak" in r.stderr, (pw, r.stderr)
    assert s.cli("user", "list").stdout == ""
    s.cli("user", "add", "bob@example.test", "--password-stdin", "--allow-weak", input="short\n")
    # A password piped in without --password-stdin: refused with the hint, not a hang.
    r = subprocess.run([BIN, "--config", str(s.config), "user", "add", "carol@example.test"],
                       input="a long enough password\n", capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 1 and "--password-stdin" in r.stderr, r.stderr
    s.cli("user", "add", "carol@example.test", "--password-stdin",
          input="a long enough password\n")
    assert s.cli("user", "list").stdout == "bob@example.test\ncarol@example.test\n"


def test_queue_commands_for_scripts(make_server):
    # Relay to an MX that does not answer: the messages wait in the queue.
    s = make_server(trusted=("127.0.0.1/32",),
                    extra='[relay]\nsmarthost = "127.0.0.1:9"\nretry_schedule = ["1h"]\n')
    s.cli("domain", "add", "example.test")
    s.add_user("alice@example.test")
    s.start()
    with smtplib.SMTP(HOST, s.smtp_port, timeout=30) as c:
        c.sendmail("alice@example.test", ["x@one.test", "y@two.test"],
                   b"Subject: first\r\n\r\nline one\r\n\x1b[31mred\r\n")
        c.sendmail("alice@example.test", ["z@two.test"], b"Subject: second\r\n\r\nbody\r\n")
    msgs = [json.loads(line) for line in s.cli("queue", "list", "--json").stdout.splitlines()]
    assert len(msgs) == 2
    first = next(m for m in msgs if len(m["recipients"]) == 2)
    assert first["sender"] == "alice@example.test"
    assert [r["address"] for r in first["recipients"]] == ["x@one.test", "y@two.test"]
    assert all(r["pending"] for r in first["recipients"])
    assert isinstance(first["received"], int) and first["size"] > 0

    shown = s.cli("queue", "show", first["id"], "--body").stdout
    assert "received: " in shown and " +0000 (" in shown, shown  # an RFC 5322 date
    assert "line one\n" in shown
    assert "\x1b" not in shown and "\\x1b[31mred" in shown
    assert "line one" not in s.cli("queue", "show", first["id"]).stdout

    # flush --domain: only the messages waiting for that domain are made due now.
    r = s.cli("queue", "flush", "--domain", "nowhere.test", check=False)
    assert r.returncode == 1 and "no queued message waits for nowhere.test" in r.stderr
    s.cli("queue", "flush", "--domain", "ONE.test")
    s.wait_log("queue flush asked for 1 message(s)")
    s.cli("queue", "flush", "--domain", "two.test")
    s.wait_log("queue flush asked for 2 message(s)")

    out = s.cli("queue", "remove", "ALL").stdout
    assert "removed 2 message(s)" in out
    assert s.cli("queue", "list", "--json").stdout == ""
    s.stop()
