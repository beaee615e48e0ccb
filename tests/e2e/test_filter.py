"""Junk filters at RCPT (issue 13): DNS block- and allowlists served by dnsmasq, greylisting
with a short delay (smtplib retrying by hand, and Postfix as the sending MTA retrying on its
own), and the sending limits of accounts and trusted clients. Every client here is smtplib or
Postfix; conftest trusts only 127.0.0.2."""

import smtplib
import time

import pytest

from conftest import HOST, has
from remote_mta import DNSMASQ, POSTFIX, Dns, Postfix

RCPT = "alice@example.test"


def message(subject, frm="someone@remote.test"):
    return (f"From: {frm}\r\nTo: {RCPT}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject.replace(' ', '.')}@remote.test>\r\n\r\nHello.\r\n").encode()


def client(s, source):
    c = smtplib.SMTP(HOST, s.smtp_port, timeout=30, source_address=(source, 0))
    c.ehlo("client.remote.test")
    return c


def start(make_server, extra):
    s = make_server(extra=extra)
    s.cli("domain", "add", "example.test")
    s.add_user(RCPT)
    s.add_user("sender@example.test")
    return s.start()


@pytest.mark.skipif(not has(DNSMASQ), reason="dnsmasq needed")
def test_a_blocklisted_client_is_refused_at_rcpt_naming_the_zone(make_server, tmp_path):
    # 127.0.0.5 is on bl.test; 127.0.0.7 is on it with an answer the zone's match ignores;
    # dead.test's server does not answer: its lookup times out (dnsbl_timeout) and lists nothing.
    dns = Dns(tmp_path, a=[("5.0.0.127.bl.test", "127.0.0.2"), ("7.0.0.127.bl.test", "127.0.0.3"),
                           ("7.0.0.127.only2.test", "127.0.0.3")],
              forward=[("dead.test", "127.0.0.1#9")])
    s = start(make_server, f'[dns]\nservers = ["{dns.server}"]\n'
                           '[filter]\ndnsbl = ["dead.test", "bl.test", "only2.test=127.0.0.2"]\n'
                           'dnsbl_timeout = "1s"\n')
    try:
        c = client(s, "127.0.0.5")
        assert c.mail("someone@remote.test")[0] == 250
        code, text = c.rcpt(RCPT)
        assert (code, text) == (554, b"5.7.1 Service unavailable; Client host [127.0.0.5] blocked using bl.test"), (code, text)
        # An unknown user stays an unknown user.
        assert c.rcpt("nobody@example.test")[0] == 550
        c.quit()
        # Not listed: accepted and delivered.
        c = client(s, "127.0.0.1")
        c.sendmail("someone@remote.test", [RCPT], message("clean"))
        c.quit()
        got = s.wait_messages(RCPT, 1)
        assert b"Subject: clean" in got[0]
        # On bl.test (any 127/8 answer lists), not on only2.test (which wants 127.0.0.2).
        c = client(s, "127.0.0.7")
        c.mail("someone@remote.test")
        code, text = c.rcpt(RCPT)
        assert code == 554 and text.endswith(b"blocked using bl.test"), (code, text)
        c.quit()
        assert "filter: event=dnsbl_timeout client=[127.0.0.1] answered=2 of=3" in s.log_text()
        # A trusted client is never looked up.
        c = client(s, "127.0.0.2")
        c.sendmail("someone@remote.test", [RCPT], message("trusted"))
        c.quit()
        s.wait_messages(RCPT, 2)
        assert "client=[127.0.0.2]" not in s.log_text()
    finally:
        s.stop()
        dns.stop()


@pytest.mark.skipif(not has(DNSMASQ), reason="dnsmasq needed")
def test_greylisting_defers_a_new_triplet_and_spares_the_allowlisted(make_server, tmp_path):
    dns = Dns(tmp_path, a=[("6.0.0.127.wl.test", "127.0.0.2")])
    s = start(make_server, f'[dns]\nservers = ["{dns.server}"]\n'
                           '[filter]\ndnswl = ["wl.test"]\ngreylisting = true\ngreylist_delay = "2s"\n')
    try:
        c = client(s, "127.0.0.1")
        c.mail("someone@remote.test")
        code, text = c.rcpt(RCPT)
        first = time.time()
        assert code == 451 and text.startswith(b"4.7.1 ") and b"Greylisted" in text, (code, text)
        c.rset()
        # Too early: still deferred.
        c.mail("someone@remote.test")
        assert c.rcpt(RCPT)[0] == 451
        c.quit()
        # The allowlisted client is not greylisted.
        c = client(s, "127.0.0.6")
        c.sendmail("someone@remote.test", [RCPT], message("allowlisted"))
        c.quit()
        # Another address of the same /24 after the delay: the triplet passes.
        time.sleep(max(0, first + 2.2 - time.time()))
        c = client(s, "127.0.0.9")
        c.sendmail("someone@remote.test", [RCPT], message("retried"))
        c.quit()
        got = s.wait_messages(RCPT, 2)
        assert any(b"Subject: allowlisted" in m for m in got) and any(b"Subject: retried" in m for m in got)
        # Remembered across a restart (the table is under data_dir).
        s.stop()
        s.start()
        c = client(s, "127.0.0.1")
        c.sendmail("someone@remote.test", [RCPT], message("again"))
        c.quit()
        s.wait_messages(RCPT, 3)
    finally:
        s.stop()
        dns.stop()


@pytest.mark.skipif(not has(POSTFIX), reason="postfix needed")
def test_postfix_as_the_sending_mta_retries_past_greylisting(make_server, tmp_path):
    s = start(make_server, '[filter]\ngreylisting = true\ngreylist_delay = "3s"\n')
    # Postfix relays everything for other domains to Mailroom from 127.0.0.31 (untrusted),
    # retrying deferred mail every second or two.
    pf = Postfix(tmp_path, ip="127.0.0.30", main_extra=(
        f"relayhost = [{HOST}]:{s.smtp_port}\nsmtp_bind_address = 127.0.0.31\n"
        "minimal_backoff_time = 1s\nmaximal_backoff_time = 2s\nqueue_run_delay = 1s\n"))
    try:
        # Handed to Postfix from its mynetworks (127.0.0.255).
        c = smtplib.SMTP(pf.ip, pf.port, timeout=30, source_address=("127.0.0.255", 0))
        c.sendmail("someone@remote.test", [RCPT], message("through postfix"))
        c.quit()
        got = s.wait_messages(RCPT, 1, timeout=60)
        assert b"Subject: through postfix" in got[0]
        log = s.log_text()
        # First refused by greylisting (Postfix logged the deferral), then accepted.
        assert "connect from [127.0.0.31]" in log
        assert "Greylisted" in pf.log(), pf.log()[-2000:]
    finally:
        pf.stop()
        s.stop()


def test_sending_limits_per_account_and_per_trusted_address(make_server):
    s = start(make_server, "[limits]\nmessages_per_hour = 3\nrecipients_per_day = 4\n")
    try:
        def submit(user):
            c = smtplib.SMTP(HOST, s.submission_port, timeout=30)
            c.starttls()
            c.login(user, "secret")
            return c
        c = submit("sender@example.test")
        for i in range(3):
            c.sendmail("sender@example.test", [RCPT], message(f"limited {i}", "sender@example.test"))
        code, text = c.mail("sender@example.test")
        assert code == 451 and text.startswith(b"4.7.1 Sending limit reached"), (code, text)
        c.quit()
        assert "limit=messages_per_hour max=3 sender=sender@example.test" in s.log_text()
        # Another account is not affected.
        c = submit(RCPT)
        c.sendmail(RCPT, [RCPT], message("other account", RCPT))
        c.quit()
        # An override for the first account lifts its limit.
        s.cli("user", "limits", "sender@example.test", "--messages-per-hour", "0")
        c = submit("sender@example.test")
        c.sendmail("sender@example.test", [RCPT], message("after override", "sender@example.test"))
        c.quit()
        # Recipients per day from a trusted address: the 5th recipient is deferred.
        c = client(s, "127.0.0.2")
        c.mail("app@example.test")
        codes = [c.rcpt(f"{u}@example.test")[0] for u in ("alice", "sender", "alice", "sender", "alice")]
        assert codes == [250, 250, 250, 250, 451], codes
        c.quit()
        # An untrusted client on port 25 is not counted.
        for i in range(5):
            c = client(s, "127.0.0.5")
            c.sendmail("x@remote.test", [RCPT], message(f"stranger {i}"))
            c.quit()
        s.wait_messages(RCPT, 3 + 1 + 1 + 5)
    finally:
        s.stop()
