#!/usr/bin/env python3
"""POP before SMTP against the real daemon, the SMTP side (ISSUE 10 item 2): with
pop_before_smtp = yes and no POP3 login yet, MAIL FROM a local account gets
530 5.7.0, a sender outside the local domains and a local alias are not
concerned, an AUTH session is exempt while auth_exempt_pop_before_smtp = yes and
refused when it is no, and smtp_trusted_networks are exempt. The case "allowed
after a POP3 login" needs the POP3 server (tests/integration for pop3d); the table
itself is unit-tested (test_pop_login), the rule in test_pop_login_rule and the
transcripts pop_before_smtp_*.
"""
import base64
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from smtest import Suite, auth_daemon  # noqa: E402
from smtpraw import Conn  # noqa: E402

S = Suite("pop_before_smtp_daemon")
AUTH = "AUTH PLAIN " + base64.b64encode(b"\0alice@example.com\0secret").decode()


def daemon(conf):
    keys = {"pop_before_smtp": "yes", "auth_required_for_local_senders": "no"}
    keys.update(conf)
    return auth_daemon(keys)


def mail(d, sender, auth=False):
    """MAIL FROM's (code, enhanced code) in a fresh session, then a whole message
    to bob when it was accepted (the final reply's code appended)."""
    with Conn(d.port) as c:
        c.cmd("EHLO client.example.net")
        if auth:
            S.eq(c.cmd(AUTH).code, 235, "AUTH")
        m = c.cmd(f"MAIL FROM:<{sender}>")
        out = [(m.code, m.enhanced)]
        if m.code == 250:
            S.eq(c.cmd("RCPT TO:<bob@example.com>").code, 250, "RCPT")
            c.cmd("DATA")
            out.append(c.cmd(b"Subject: t\r\n\r\nx\r\n.").code)
        return out


def test_untrusted_client():
    d = daemon({})
    try:
        S.eq(mail(d, "alice@example.com"), [(530, "5.7.0")], "local account, no POP3 login")
        S.eq(mail(d, "ALICE@Example.com"), [(530, "5.7.0")], "in any case")
        S.eq(mail(d, "x@other.example"), [(250, "2.1.0"), 250], "a foreign sender")
        S.eq(mail(d, "al@example.com"), [(250, "2.1.0"), 250], "an alias is not an account")
        S.eq(mail(d, "alice@example.com", auth=True), [(250, "2.1.0"), 250],
             "AUTH exempt (auth_exempt_pop_before_smtp = yes)")
        log = d.logtext()
        S.check("Check your mail over POP3 first" in log, "the refusal is logged")
    finally:
        d.cleanup()


def test_auth_not_exempt_and_trusted():
    d = daemon({"auth_exempt_pop_before_smtp": "no"})
    try:
        S.eq(mail(d, "alice@example.com", auth=True), [(530, "5.7.0")],
             "AUTH not exempt with auth_exempt_pop_before_smtp = no")
    finally:
        d.cleanup()
    d = daemon({"smtp_trusted_networks": "127.0.0.0/8"})
    try:
        S.eq(mail(d, "alice@example.com"), [(250, "2.1.0"), 250], "trusted networks exempt")
    finally:
        d.cleanup()


if __name__ == "__main__":
    sys.exit(S.run([test_untrusted_client, test_auth_not_exempt_and_trusted]))
