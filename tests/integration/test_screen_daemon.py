#!/usr/bin/env python3
"""The Dynamic Screen against the real daemon (ISSUE 9 item 6): AUTH guessing gets
535s, then the address is screened (421 4.7.0 at once, and 421 at connect);
harvesting unknown recipients screens; AUTH on 25 with smtp_auth_on_smtp_port = no
and _screen = yes screens and closes at once; `sharemail screen add|del` is seen by
the running daemon within a second (polled with a deadline, never asserted as a
duration); screen_exempt addresses are never screened; a screening survives a
restart (screen.db). Clients use loopback source addresses 127.0.0.2.. so each
case has its own address."""
import base64
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from smtest import Daemon, Suite, free_tcp_port  # noqa: E402
from smtpraw import Conn  # noqa: E402

S = Suite("screen_daemon")
WAIT = 5.0  # a bound on polling, never asserted


def daemon(conf=None):
    port = free_tcp_port()
    keys = {"smtp_listen": f"127.0.0.1:{port}", "auth_allow_plaintext": "yes",
            "screen_auth_failures": "3/10m", "screen_unknown_recipients": "3/10m",
            "screen_connection_rate": "0/1m", "screen_exempt": "127.0.0.9/32",
            "smtp_max_errors": "50"}
    keys.update(conf or {})
    d = Daemon(conf=keys, minger=False)
    d.port = port
    pw = os.path.join(d.dir, "pw")
    with open(pw, "w") as f:
        f.write("secret\n")
    d.cli("account", "add", "alice@example.com", "--password-file", pw)
    d.start()
    return d


def greeting(d, source):
    """The first reply a new connection from source gets (None: closed)."""
    with Conn(d.port, source=source, greet=False) as c:
        return c.reply_or_none()


def wait_greeting(d, source, code):
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        r = greeting(d, source)
        if r is not None and r.code == code:
            return True
        time.sleep(0.05)
    return False


def bad_login(c):
    c.cmd("AUTH PLAIN")
    return c.cmd(base64.b64encode(b"\0alice@example.com\0guess").decode(), timeout=30)


def test_auth_guessing_screens():
    with daemon() as d:
        src = "127.0.0.2"
        with Conn(d.port, source=src) as c:
            c.cmd("EHLO x")
            codes = [getattr(bad_login(c), "code", None) for _ in range(2)]
            S.eq(codes, [535, 535], "the first guesses: 535 (after growing delays)")
            r = bad_login(c)
            S.eq(r.code, 535, "the third guess: 535")
            r2 = c.reply_or_none(timeout=30)
            S.check(r2 is not None and r2.code == 421 and r2.enhanced == "4.7.0",
                    f"then screened: 421 4.7.0 ({r2})")
            S.check(c.wait_closed(), "and closed")
        r = greeting(d, src)
        S.check(r is not None and r.code == 421, f"421 at connect once screened: {r}")
        S.eq(greeting(d, "127.0.0.3").code, 220, "another address still served")
        listed = d.cli("screen", "list").stdout
        S.check(src in listed, f"listed by `sharemail screen list`: {listed!r}")
        # A good password does not count, and the screen survives a restart.
        d.stop()
        d.start()
        r = greeting(d, src)
        S.check(r is not None and r.code == 421, "still screened after a restart")


def test_cli_add_del_seen_by_daemon():
    with daemon() as d:
        src = "127.0.0.4"
        S.eq(greeting(d, src).code, 220, "served before")
        d.cli("screen", "add", src, "--for", "1h")
        S.check(wait_greeting(d, src, 421), "screen add: 421 at connect within a second")
        d.cli("screen", "del", src)
        S.check(wait_greeting(d, src, 220), "screen del: served again within a second")


def test_harvesting_screens():
    with daemon({"auth_required_for_local_senders": "no"}) as d:
        src = "127.0.0.5"
        with Conn(d.port, source=src) as c:
            c.cmd("EHLO x")
            c.cmd("MAIL FROM:<x@other.example>")
            codes = [c.cmd(f"RCPT TO:<nosuch{i}@example.com>").code for i in range(3)]
            S.eq(codes, [550, 550, 550], "unknown recipients")
            r = c.reply_or_none()
            S.check(r is not None and r.code == 421, f"the third screens: {r}")
        S.eq(getattr(greeting(d, src), "code", None), 421, "421 at connect")


def test_auth_on_smtp_port_screens():
    with daemon({"smtp_auth_on_smtp_port": "no", "smtp_auth_on_smtp_port_screen": "yes"}) as d:
        src = "127.0.0.6"
        with Conn(d.port, source=src) as c:
            lines = c.cmd("EHLO x").lines
            S.check(not any("AUTH" in l for l in lines), "AUTH not offered on 25")
            r = c.cmd("AUTH PLAIN " + base64.b64encode(b"\0a@example.com\0b").decode())
            S.check(r is not None and r.code == 421, f"AUTH anyway: 421 ({r})")
            S.check(c.wait_closed(), "closed at once")
        S.eq(getattr(greeting(d, src), "code", None), 421, "screened: 421 at connect")


def test_exempt_never_screened():
    with daemon({"smtp_auth_on_smtp_port": "no", "smtp_auth_on_smtp_port_screen": "yes"}) as d:
        src = "127.0.0.9"  # screen_exempt
        with Conn(d.port, source=src) as c:
            c.cmd("EHLO x")
            c.cmd("AUTH PLAIN " + base64.b64encode(b"\0a@example.com\0b").decode())
        S.eq(greeting(d, src).code, 220, "an exempt address that tried AUTH on 25 is let in")
    with daemon() as d:
        src = "127.0.0.9"
        with Conn(d.port, source=src) as c:
            c.cmd("EHLO x")
            codes = [getattr(bad_login(c), "code", None) for _ in range(4)]
            S.eq(codes, [535] * 4, "exempt: guesses answered, never screened")
            S.eq(c.cmd("NOOP").code, 250, "still open")
        S.eq(greeting(d, src).code, 220, "and served at connect")


if __name__ == "__main__":
    sys.exit(S.run([test_auth_guessing_screens, test_cli_add_del_seen_by_daemon,
                    test_harvesting_screens, test_auth_on_smtp_port_screens,
                    test_exempt_never_screened]))
