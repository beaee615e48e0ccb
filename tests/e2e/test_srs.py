"""SRS for mail we forward to other domains: the copy leaves with an SRS0 envelope sender in
the alias's domain (seen at a real Postfix MX), a bounce to that address comes back to us and
is relayed on to the original sender, and a forged or altered SRS address is refused at RCPT."""

import re
import smtplib

from conftest import HOST
from test_dkim import DOMAIN, world  # noqa: F401  (the fixture: Postfix MX for remote.test)

OUTSIDE = ("127.0.0.3", 0)  # not in trusted_networks (127.0.0.1/32)


def test_forwarded_mail_gets_srs_and_its_bounce_finds_the_way_back(world):  # noqa: F811
    s, pf, _ = world
    s.cli("alias", "add", f"fwd@{DOMAIN}", "bob@remote.test")
    with smtplib.SMTP(HOST, s.smtp_port, timeout=30, source_address=OUTSIDE) as c:
        c.sendmail("dave@remote.test", [f"fwd@{DOMAIN}"],
                   b"From: dave@remote.test\r\nSubject: forwarded\r\n\r\nx\r\n")
    [raw] = pf.wait_messages("bob", 1)
    srs = re.search(rb"^Return-Path: <([^>]*)>", raw, re.M).group(1).decode()
    assert re.fullmatch(r"SRS0=[a-z2-7]{8}=[a-z2-7]{2}=remote\.test=dave@" + re.escape(DOMAIN), srs), srs

    # The remote MTA's bounce, from outside, to the SRS address: relayed to dave.
    with smtplib.SMTP(HOST, s.smtp_port, timeout=30, source_address=OUTSIDE) as c:
        c.sendmail("", [srs], b"From: MAILER-DAEMON@remote.test\r\nSubject: bounced\r\n\r\nx\r\n")
    [back] = pf.wait_messages("dave", 1)
    assert b"Subject: bounced" in back
    assert re.search(rb"^Return-Path: <>", back, re.M)

    # Forged: another original address under the same hash, or a changed hash.
    h = srs.split("=")[1]
    forged = [srs.replace("=dave@", "=erin@"), srs.replace(h, "aaaaaaaa" if h != "aaaaaaaa" else "bbbbbbbb")]
    with smtplib.SMTP(HOST, s.smtp_port, timeout=30, source_address=OUTSIDE) as c:
        c.ehlo()
        c.mail("")
        for f in forged:
            code, msg = c.rcpt(f)
            assert code == 550 and b"5.1.1" in msg, (f, code, msg)
    assert "SRS address BadHash" in s.log_text()
    s.wait_queue_empty()
    assert pf.maildir_messages("erin") == []


def test_senders_of_our_domains_are_not_rewritten(world):  # noqa: F811
    s, pf, _ = world
    s.cli("alias", "add", f"fwd@{DOMAIN}", "bob@remote.test")
    with smtplib.SMTP(HOST, s.smtp_port, timeout=30) as c:
        c.sendmail(f"alice@{DOMAIN}", [f"fwd@{DOMAIN}"],
                   f"From: alice@{DOMAIN}\r\nSubject: ours\r\n\r\nx\r\n".encode())
    [raw] = pf.wait_messages("bob", 1)
    assert re.search(rb"^Return-Path: <alice@example\.test>", raw, re.M), raw[:300]


def test_a_dsn_about_a_forwarded_copy_goes_to_the_original_sender(world):  # noqa: F811
    """A verified (trusted-network) sender from another domain writes to an alias whose remote
    target refuses: the DSN is for dave@remote.test itself, not for our SRS address (which
    the queue would find no mailbox for)."""
    s, pf, _ = world
    pf.set_access("/^nobody@/ 550 5.1.1 no such user here\n")
    s.cli("alias", "add", f"gone@{DOMAIN}", "nobody@remote.test")
    with smtplib.SMTP(HOST, s.smtp_port, timeout=30) as c:
        c.sendmail("dave@remote.test", [f"gone@{DOMAIN}"], b"From: dave@remote.test\r\nSubject: lost\r\n\r\nx\r\n")
    [dsn] = pf.wait_messages("dave", 1)
    assert b"Final-Recipient: rfc822; nobody@remote.test" in dsn
    assert b"To: <dave@remote.test>" in dsn or b"To: dave@remote.test" in dsn, dsn[:600]
    s.wait_queue_empty()
