#!/usr/bin/env python3
"""SMTP AUTH (RFC 4954) against the real daemon (ISSUE 9 item 3, 4): Python's
smtplib login() (PLAIN and LOGIN) and swaks --auth as real clients, with
auth_allow_plaintext on loopback (TLS is the TLS glue's); a raw socket for the
hostile cases (AUTH twice, "*", bad base64, an oversized line, AUTH without TLS);
port roles (587 needs AUTH; smtp_auth_on_smtp_port = no); the open-relay matrix of
hostile-inputs.md, refused unauthenticated and accepted after AUTH; Received
"with ESMTPA" and the identity with smtp_received_auth.
"""
import base64
import os
import shutil
import smtplib
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import smtest  # noqa: E402
from smtest import Daemon, Suite, free_tcp_port  # noqa: E402
from smtpraw import Conn  # noqa: E402

S = Suite("auth")
PASSWORD = "correct horse"


def b64(s):
    return base64.b64encode(s.encode() if isinstance(s, str) else s).decode()


def auth_daemon(conf=None):
    """alice@example.com (password PASSWORD, alias al@example.com), bob without one;
    d.smtp_port (25's role) and d.sub_port (587's)."""
    smtp, sub = free_tcp_port(), free_tcp_port()
    keys = {"smtp_listen": f"127.0.0.1:{smtp}", "submission_listen": f"127.0.0.1:{sub}",
            "auth_allow_plaintext": "yes"}
    keys.update(conf or {})
    d = Daemon(conf=keys, minger=False)
    d.smtp_port, d.sub_port = smtp, sub
    try:
        pw = os.path.join(d.dir, "pw")
        with open(pw, "w") as f:
            f.write(PASSWORD + "\n")
        d.cli("account", "add", "alice@example.com", "--password-file", pw)
        d.cli("account", "add", "bob@example.com", "--no-password")
        d.cli("alias", "add", "al@example.com", "alice@example.com")
        d.start()
    except Exception:
        d.cleanup()
        raise
    return d


def code_of(fn, *a):
    try:
        r = fn(*a)
        return r[0] if isinstance(r, tuple) else 250
    except smtplib.SMTPResponseException as e:
        return e.smtp_code
    except smtplib.SMTPRecipientsRefused as e:
        return list(e.recipients.values())[0][0]


def test_smtplib_login():
    with auth_daemon({"smtp_received_auth": "yes"}) as d:
        for mech in ("PLAIN", "LOGIN"):
            with smtplib.SMTP("127.0.0.1", d.sub_port, timeout=30) as c:
                c.ehlo("client.example.net")
                S.check("PLAIN" in c.esmtp_features.get("auth", "") and
                        "LOGIN" in c.esmtp_features.get("auth", ""), "AUTH PLAIN LOGIN offered")
                c.user, c.password = "alice@example.com", PASSWORD
                code, _ = c.auth(mech, getattr(c, "auth_" + mech.lower()),
                                 initial_response_ok=(mech == "PLAIN"))
                S.eq(code, 235, f"AUTH {mech} with the right password")
                refused = c.sendmail("alice@example.com", ["bob@example.com", "far@other.example"],
                                     b"From: Alice <alice@example.com>\r\nSubject: " +
                                     mech.encode() + b"\r\n\r\nsent after AUTH\r\n")
                S.eq(refused, {}, "a local and a foreign recipient (relay after AUTH)")
        mails = smtest.wait_mail(d, "bob@example.com", 2)
        S.eq(len(mails), 2, "both delivered")
        for m in mails:
            S.check(b"with ESMTPA id" in m, "Received says ESMTPA (RFC 3848)")
            S.check(b"(authenticated as alice@example.com)" in m, "and the identity")
        S.check(PASSWORD not in d.logtext(), "the password is never logged")


def test_wrong_password_and_unknown_user_alike():
    with auth_daemon() as d:
        got = []
        for user, pw in (("alice@example.com", "wrong"), ("nobody@example.com", PASSWORD),
                         ("bob@example.com", "x")):
            with smtplib.SMTP("127.0.0.1", d.sub_port, timeout=30) as c:
                c.ehlo("client.example.net")
                try:
                    c.login(user, pw)
                    got.append(235)
                except smtplib.SMTPAuthenticationError as e:
                    got.append((e.smtp_code, e.smtp_error[:5]))
        S.eq(got, [(535, b"5.7.8")] * 3, "wrong password, unknown user, no password: one 535")


def test_swaks_auth():
    if not shutil.which("swaks"):
        S.skip("swaks not installed (scripts/install-deps installs it)")
        return
    with auth_daemon() as d:
        p = subprocess.run(["swaks", "--server", f"127.0.0.1:{d.sub_port}", "--auth", "PLAIN",
                            "--auth-user", "al@example.com", "--auth-password", "bad",
                            "--from", "alice@example.com", "--to", "bob@example.com"],
                           capture_output=True, text=True, timeout=60)
        S.check(p.returncode != 0 and "535" in p.stdout, "swaks: a wrong password fails")
        p = subprocess.run(["swaks", "--server", f"127.0.0.1:{d.sub_port}", "--auth", "LOGIN",
                            "--auth-user", "alice@example.com", "--auth-password", PASSWORD,
                            "--from", "al@example.com", "--to", "bob@example.com",
                            "--header", "From: al@example.com"],
                           capture_output=True, text=True, timeout=60)
        S.eq(p.returncode, 0, f"swaks --auth LOGIN, sent from her alias: {p.stdout[-400:]}")
        S.eq(len(smtest.wait_mail(d, "bob@example.com", 1)), 1, "delivered")


def test_hostile_exchanges():
    with auth_daemon() as d:
        with Conn(d.sub_port) as c:
            S.eq(c.cmd("EHLO x").code, 250, "EHLO")
            S.eq(c.cmd("AUTH PLAIN").text, "", "334 with an empty challenge")
            r = c.cmd("*")
            S.eq((r.code, r.enhanced), (501, "5.7.0"), "* cancels")
            c.cmd("AUTH LOGIN")
            r = c.cmd("%%%not base64%%%")
            S.eq((r.code, r.enhanced), (501, "5.5.2"), "bad base64")
            c.cmd("AUTH PLAIN")
            r = c.cmd("A" * 20000)
            S.eq((r.code, r.enhanced), (500, "5.5.6"), "a continuation line over 12288 octets")
            S.eq(c.cmd("NOOP").code, 250, "the session goes on")
            r = c.cmd("AUTH PLAIN " + b64(f"\0alice@example.com\0{PASSWORD}"))
            S.eq(r.code, 235, "then AUTH works")
            r = c.cmd("AUTH PLAIN " + b64(f"\0alice@example.com\0{PASSWORD}"))
            S.eq((r.code, r.enhanced), (503, "5.5.1"), "AUTH twice")
            r = c.cmd("AUTH PLAIN " + b64("$(id)\0;sleep 5;\0%n%s"))
            S.eq(r.code, 503, "metacharacters in AUTH: a plain refusal")
        with Conn(d.sub_port) as c:
            c.cmd("EHLO x")
            S.eq(c.cmd("AUTH PLAIN").code, 334, "AUTH PLAIN")
            c.send(b"AAAA\nNOOP\r\n")
            r = c.reply_or_none()
            S.check(r is not None and r.code == 500, f"a bare LF in the exchange: 500 ({r})")
            S.check(c.wait_closed(), "and the connection closed (bare LF)")


def test_auth_needs_tls():
    with auth_daemon({"auth_allow_plaintext": "no"}) as d:
        with Conn(d.sub_port) as c:
            lines = c.cmd("EHLO x").lines
            S.check(not any("AUTH" in l for l in lines), f"no AUTH offered without TLS: {lines}")
            r = c.cmd("AUTH PLAIN " + b64(f"\0alice@example.com\0{PASSWORD}"))
            S.eq((r.code, r.enhanced), (538, "5.7.11"), "AUTH before TLS refused")
        S.check("auth: client" not in d.logtext(), "credentials never checked")


def test_port_roles():
    with auth_daemon({"smtp_auth_on_smtp_port": "no"}) as d:
        with Conn(d.smtp_port) as c:
            lines = c.cmd("EHLO x").lines
            S.check(not any("AUTH" in l for l in lines), "no AUTH in EHLO on 25")
            S.eq(c.cmd("AUTH PLAIN " + b64(f"\0alice@example.com\0{PASSWORD}")).code, 500,
                 "AUTH on 25 is an unknown command")
            S.eq(c.cmd("NOOP").code, 250, "not closed")
        with Conn(d.sub_port) as c:
            c.cmd("EHLO x")
            r = c.cmd("MAIL FROM:<x@other.example>")
            S.eq((r.code, r.enhanced), (530, "5.7.0"), "587: MAIL before AUTH")
            S.eq(c.cmd("AUTH PLAIN " + b64(f"\0alice@example.com\0{PASSWORD}")).code, 235,
                 "587: AUTH offered and works")
            S.eq(c.cmd("MAIL FROM:<alice@example.com>").code, 250, "587: MAIL after AUTH")


RELAY_SENDERS = ["<>", "<alice@example.com>", "<alice>", "<user@[127.0.0.1]>",
                 "<user@localhost>", "<x@other.example>"]


def relay_try(c, sender):
    """(MAIL code, RCPT code or None) for sender to an outside recipient."""
    c.cmd("RSET")
    m = c.cmd(f"MAIL FROM:{sender}")
    if m is None or m.code != 250:
        return (m.code if m else None, None)
    r = c.cmd("RCPT TO:<victim@far.example>")
    return (250, r.code if r else None)


def test_open_relay_matrix():
    with auth_daemon({"auth_match_return_path": "no"}) as d:
        with Conn(d.smtp_port) as c:
            c.cmd("EHLO x")
            for s in RELAY_SENDERS:
                mail, rcpt = relay_try(c, s)
                S.check(mail != 250 or (rcpt is not None and rcpt >= 500),
                        f"unauthenticated {s} to an outside recipient refused: {mail} {rcpt}")
        with Conn(d.smtp_port) as c:
            c.cmd("EHLO x")
            S.eq(c.cmd("AUTH PLAIN " + b64(f"\0alice@example.com\0{PASSWORD}")).code, 235,
                 "AUTH on 25")
            for s in RELAY_SENDERS:
                mail, rcpt = relay_try(c, s)
                if s == "<alice>":
                    S.eq(mail, 501, "an unqualified sender stays a syntax error")
                    continue
                S.eq((mail, rcpt), (250, 250), f"after AUTH {s} may relay")


if __name__ == "__main__":
    sys.exit(S.run([test_smtplib_login, test_wrong_password_and_unknown_user_alike,
                    test_swaks_auth, test_hostile_exchanges, test_auth_needs_tls,
                    test_port_roles, test_open_relay_matrix]))
