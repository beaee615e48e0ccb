"""Trusted networks are exempt from the per-address connection limit (issue 13, item 5), as in
Postfix (`smtpd_client_event_limit_exceptions = $mynetworks`): a web application on a trusted
address may hold more than `max_connections_per_ip` (default 50) sessions at once, an
untrusted address gets `421 4.7.0` from the 51st."""

import socket

from conftest import HOST


def greet(port, source):
    c = socket.create_connection((HOST, port), timeout=10, source_address=(source, 0))
    return c, c.makefile("rb").readline()


def test_trusted_address_is_exempt_from_the_per_address_limit(make_server):
    # Default limits (max_connections_per_ip = 50); conftest trusts 127.0.0.2 only.
    s = make_server().start()
    held = []
    try:
        for _ in range(60):
            c, g = greet(s.smtp_port, "127.0.0.2")
            held.append(c)
            assert g.startswith(b"220 "), (len(held), g)
        for i in range(50):
            c, g = greet(s.smtp_port, "127.0.0.5")
            held.append(c)
            assert g.startswith(b"220 "), (i, g)
        c, g = greet(s.smtp_port, "127.0.0.5")
        held.append(c)
        assert g.startswith(b"421 4.7.0 Too many connections from your address"), g
        # The trusted address still gets in while the untrusted one is at its limit.
        c, g = greet(s.smtp_port, "127.0.0.2")
        held.append(c)
        assert g.startswith(b"220 "), g
    finally:
        for c in held:
            c.close()
    s.stop()
