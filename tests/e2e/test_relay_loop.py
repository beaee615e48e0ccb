"""MX loop detection with the default wildcard listener (issue 19): a server listening on
0.0.0.0 counts its interface and loopback addresses as its own, so mail for a domain whose MX
is this machine bounces at once with 5.4.6 ("loops back to myself") instead of being sent to
itself."""

import email
import email.policy
import smtplib
import socket

import pytest

from conftest import HOST, free_port, has
from remote_mta import DNSMASQ, Dns

pytestmark = pytest.mark.skipif(not has(DNSMASQ), reason="dnsmasq needed")

CLIENT_IP = "127.0.0.2"  # the only trusted (relaying) address: our own relay is not


def interface_ip():
    """The machine's non-loopback source address, if it has a route (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))
        except OSError:
            return None
        ip = s.getsockname()[0]
    return None if ip.startswith("127.") else ip


def test_mx_pointing_at_us_bounces_5_4_6_with_wildcard_listener(tmp_path, make_server):
    ext_ip = interface_ip()
    targets = [("loop.test", "127.0.0.1")] + ([("loop2.test", ext_ip)] if ext_ip else [])
    dns = Dns(
        tmp_path,
        mx=[(d, f"mx.{d}", 10) for d, _ in targets],
        a=[(f"mx.{d}", ip) for d, ip in targets],
    )
    port = free_port("0.0.0.0")
    # The relay dials remote_port: our own SMTP port, as it would be port 25 in production.
    s = make_server(
        trusted=(f"{CLIENT_IP}/32",),
        extra=f'[relay]\ndns_servers = ["{dns.server}"]\nremote_port = {port}\nretry_schedule = ["1s"]\n',
    )
    s.config.write_text(
        s.config.read_text().replace(f'listen = ["{HOST}:{s.smtp_port}"]', f'listen = ["0.0.0.0:{port}"]')
    )
    s.smtp_port = port
    s.cli("domain", "add", "example.test")
    s.add_user("alice@example.test")
    s.start()
    try:
        rcpts = [f"x@{d}" for d, _ in targets]
        with smtplib.SMTP(HOST, port, timeout=30, source_address=(CLIENT_IP, 0)) as c:
            c.sendmail("alice@example.test", rcpts, b"Subject: to myself\r\n\r\nx\r\n")
        [raw] = s.wait_messages("alice@example.test", 1, timeout=20)
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        status = list(msg.iter_parts())[1].as_string()
        for r in rcpts:
            assert f"Final-Recipient: rfc822; {r}" in status, status
        # One status per recipient, each the loop, not what our own smtpd said to our relay.
        assert status.count("Status: 5.4.6") == len(rcpts), status
        assert "loops back to myself" in status, status
        s.wait_queue_empty()
    finally:
        s.stop()
        dns.stop()
