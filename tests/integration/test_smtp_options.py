#!/usr/bin/env python3
"""Every SMTP option of the seeds (smtp-advanced.txt, the size section of
ports-size-domainpop.txt) plus the connection options, each against the real
sharemaild with smtplib (and swaks for one), each in both settings where the
default matters: the option changes the outcome, and without it the outcome is
the normal one.
"""
import os
import shutil
import smtplib
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import smtest  # noqa: E402
from smtest import Suite, free_tcp_port, wait_mail  # noqa: E402

daemon = smtest.smtp_daemon

S = Suite("smtp_options")
WAIT = 10.0
TRUSTED = {"smtp_trusted_networks": "127.0.0.0/8"}


def header_block(m):
    return m.split(b"\r\n\r\n", 1)[0] if b"\r\n\r\n" in m else m.split(b"\n\n", 1)[0]


def enh(msg):
    text = msg.decode(errors="replace") if isinstance(msg, bytes) else msg
    return text[:1] if len(text) > 2 and text[1] == "." else None


def smtp(d, helo="client.example.org"):
    c = smtplib.SMTP("127.0.0.1", d.smtp_port, timeout=10)
    c.ehlo(helo)
    return c


def send(d, rcpts, body, sender="sender@example.org"):
    with smtp(d) as c:
        c.mail(sender)
        for r in rcpts:
            S.eq(c.rcpt(r)[0], 250, f"RCPT {r}")
        code, msg = c.data(body)
        S.eq(code, 250, "message accepted")


def control(d):
    """Sends a message to bob and waits for it: the runner has caught up with the queue."""
    send(d, ["bob@example.com"], WITH_DATE.replace(b"Subject: dated", b"Subject: control"))
    S.check(any(b"Subject: control" in m for m in wait_mail(d, "bob@example.com")),
            "control message delivered")


NO_DATE = (b"From: sender@example.org\r\nTo: alice@example.com\r\nSubject: no date\r\n"
           b"\r\nbody\r\n")
WITH_DATE = (b"From: sender@example.org\r\nTo: alice@example.com\r\nSubject: dated\r\n"
             b"Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n\r\nbody\r\n")


def test_refuse_helo():
    with daemon({"smtp_refuse_helo": [".badisp.example", "spammer"]}) as d:
        c = smtplib.SMTP("127.0.0.1", d.smtp_port, timeout=10)
        code, msg = c.ehlo("box23.BadISP.example")
        S.eq((code // 100, enh(msg)), (5, "5"), "EHLO containing the substring refused")
        S.raises((smtplib.SMTPServerDisconnected, ConnectionError), lambda: c.noop(), "the connection must be closed after the refusal")
        c.close()
        c = smtplib.SMTP("127.0.0.1", d.smtp_port, timeout=10)
        code, msg = c.helo("the-spammer-host")
        S.eq(code // 100, 5, "HELO containing the second substring refused")
        c.close()
        with smtp(d, "good.example.org") as c:
            S.eq(c.noop()[0], 250, "another HELO is fine")
    with daemon() as d:
        with smtp(d, "box23.badisp.example") as c:
            c.mail("sender@example.org")
            S.eq(c.rcpt("alice@example.com")[0], 250, "default: no HELO refused")


def test_dsn_off():
    with daemon({"smtp_dsn": "no"}) as d:
        with smtp(d) as c:
            S.check(not c.has_extn("dsn"), "DSN not in EHLO")
            code, msg = c.mail("sender@example.org", ["RET=HDRS"])
            S.eq((code, enh(msg)), (555, "5"), "RET refused")
            code, msg = c.mail("sender@example.org")
            S.eq(code, 250, "plain MAIL")
            code, msg = c.rcpt("alice@example.com", ["NOTIFY=SUCCESS"])
            S.eq((code, enh(msg)), (555, "5"), "NOTIFY refused")
            S.eq(c.rcpt("alice@example.com")[0], 250, "plain RCPT")
    with daemon() as d:
        with smtp(d) as c:
            S.check(c.has_extn("dsn"), "DSN in EHLO by default")
            S.eq(c.mail("sender@example.org", ["RET=HDRS", "ENVID=abc"])[0], 250, "RET ok")
            code, msg = c.rcpt("alice@example.com",
                               ["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;alice@example.com"])
            S.eq(code, 250, "NOTIFY and ORCPT accepted")


def test_refuse_percent():
    with daemon({"smtp_refuse_percent": "yes"}) as d:
        with smtp(d) as c:
            code, msg = c.mail("a%b@example.org")
            S.eq((code, enh(msg)), (553, "5"), "sender with % refused")
            S.eq(c.mail("sender@example.org")[0], 250, "plain sender")
            code, msg = c.rcpt("alice%elsewhere.example@example.com")
            S.eq((code, enh(msg)), (553, "5"), "recipient with % refused")
            S.eq(c.rcpt("alice@example.com")[0], 250, "plain recipient")
    with daemon() as d:
        with smtp(d) as c:
            S.eq(c.mail("a%b@example.org")[0], 250, "default: % sender accepted")
            code, msg = c.rcpt("alice%elsewhere.example@example.com")
            S.eq(code, 550, "default: % is an ordinary (unknown) local part, never a route")


def test_refuse_bang():
    with daemon({"smtp_refuse_bang": "yes"}) as d:
        with smtp(d) as c:
            code, msg = c.mail("host!user@example.org")
            S.eq((code, enh(msg)), (553, "5"), "sender with ! refused")
            S.eq(c.mail("sender@example.org")[0], 250, "plain sender")
            code, msg = c.rcpt("!bin/bash+rm+-rf+/@example.com")
            S.eq((code, enh(msg)), (553, "5"), "recipient with ! refused")
    with daemon() as d:
        with smtp(d) as c:
            S.eq(c.mail("host!user@example.org")[0], 250, "default: ! sender accepted")
            S.eq(c.rcpt("!bin/bash+rm+-rf+/@example.com")[0], 550,
                 "default: unknown local part, nothing interpreted")


def test_add_date_header():
    with daemon(TRUSTED) as d:
        send(d, ["alice@example.com"], NO_DATE)
        send(d, ["bob@example.com"], WITH_DATE)
        a = wait_mail(d, "alice@example.com")
        S.check(a and header_block(a[0]).count(b"\nDate: ") == 1, "Date: added")
        b = wait_mail(d, "bob@example.com")
        S.check(b and header_block(b[0]).count(b"Date: ") == 1, "an existing Date: kept, once")
        S.check(b and b"Date: Mon, 1 Jan 2024" in b[0], "the sender's Date: kept")
    with daemon(dict(TRUSTED, smtp_add_date_header="no")) as d:
        send(d, ["alice@example.com"], NO_DATE)
        a = wait_mail(d, "alice@example.com")
        S.check(a and b"\nDate: " not in header_block(a[0]), "no Date: when off")
    with daemon() as d:  # not local: a message from outside is not touched
        send(d, ["alice@example.com"], NO_DATE)
        a = wait_mail(d, "alice@example.com")
        S.check(a and b"\nDate: " not in header_block(a[0]), "no Date: for outside senders")


def test_original_recipient_header():
    with daemon({"smtp_original_recipient_header": "yes"}) as d:
        send(d, ["alice@example.com", "bob@example.com"], WITH_DATE)
        a = wait_mail(d, "alice@example.com")
        S.check(a and b"X-Sharemail-Original-Rcpt: alice@example.com" in header_block(a[0]),
                "envelope recipient as a header")
    with daemon() as d:
        send(d, ["alice@example.com", "bob@example.com"], WITH_DATE)
        a = wait_mail(d, "alice@example.com")
        S.check(a and b"X-Sharemail-Original-Rcpt" not in a[0], "off by default (privacy)")
        b = wait_mail(d, "bob@example.com")
        S.check(b and b"alice@example.com" not in header_block(b[0]).replace(
            b"To: alice@example.com", b""), "bob's copy does not reveal the envelope")


def test_rejected_recipients_log():
    with daemon({"smtp_rejected_recipients_log": "rejected.log"}) as d:
        path = os.path.join(d.dir, "rejected.log")
        with smtp(d) as c:
            c.mail("sender@example.org")
            S.eq(c.rcpt("nosuch@example.com")[0], 550, "unknown")
            S.eq(c.rcpt("alice@example.com")[0], 250, "known")
        text = ""
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline and "nosuch@example.com" not in text:
            time.sleep(0.05)
            try:
                with open(path) as f:
                    text = f.read()
            except FileNotFoundError:
                pass
        lines = text.splitlines()
        S.eq(len(lines), 1, "one line for one rejected recipient: " + text)
        S.check(lines and "nosuch@example.com" in lines[0], "names the recipient")
        S.check(lines and lines[0][:2].isdigit(), "timestamped")
        S.check("alice@example.com" not in text, "accepted recipients are not logged")
        os.unlink(path)  # rotated away: the next line goes to a new file
        with smtp(d) as c:
            c.mail("sender@example.org")
            c.rcpt("other@example.com")
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline and not os.path.exists(path):
            time.sleep(0.05)
        S.check(os.path.exists(path), "log reopened after rotation")


def test_max_message_size():
    with daemon({"smtp_max_message_size": "4k"}) as d:
        with smtp(d) as c:
            S.eq(c.esmtp_features.get("size"), "4096", "SIZE 4096 advertised")
            code, msg = c.mail("sender@example.org", ["SIZE=5000"])
            S.eq((code, enh(msg)), (552, "5"), "declared size refused at MAIL")
            c.mail("sender@example.org")
            c.rcpt("alice@example.com")
            code, msg = c.data(WITH_DATE + b"z" * 6000 + b"\r\n")
            S.eq((code, enh(msg)), (552, "5"), "552 after the dot")
            S.eq(c.noop()[0], 250, "connection kept")
        control(d)
        S.eq(wait_mail(d, "alice@example.com", timeout=0), [], "nothing delivered")


def test_drop_connection_size():
    with daemon({"smtp_max_message_size": "4k", "smtp_drop_connection_size": "16k"}) as d:
        c = smtp(d)
        c.mail("sender@example.org")
        c.rcpt("alice@example.com")
        c.putcmd("DATA")
        S.eq(c.getreply()[0], 354, "354")
        dropped = False
        try:
            for _ in range(200):
                c.send(b"w" * 998 + b"\r\n")  # 200 KB, far past 16k
            c.send(b".\r\n")
            code, msg = c.getreply()
            S.check(code // 100 in (4, 5), f"an error reply, got {code}")
            c.noop()
        except (smtplib.SMTPServerDisconnected, ConnectionError):
            dropped = True
        S.check(dropped, "connection dropped during the transmission")
        c.close()
        control(d)
        S.eq(wait_mail(d, "alice@example.com", timeout=0), [], "nothing delivered")
        with smtp(d) as c2:  # a message between the two limits: 552, not dropped
            c2.mail("sender@example.org")
            c2.rcpt("alice@example.com")
            code, msg = c2.data(WITH_DATE + (b"v" * 70 + b"\r\n") * 100)
            S.eq(code, 552, "7k: over the size limit, under the drop limit: 552")
            S.eq(c2.noop()[0], 250, "and the connection is kept")
    with daemon({"smtp_max_message_size": "4k"}) as d:  # off by default: never dropped
        with smtp(d) as c:
            c.mail("sender@example.org")
            c.rcpt("alice@example.com")
            code, msg = c.data(WITH_DATE + (b"u" * 998 + b"\r\n") * 200)
            S.eq(code, 552, "default: 552 at the dot, not dropped")
            S.eq(c.noop()[0], 250, "connection kept")


def test_vrfy():
    with daemon() as d:
        with smtp(d) as c:
            S.eq(c.verify("alice@example.com")[0], 252, "off: 252 for a user")
            S.eq(c.verify("nosuch@example.com")[0], 252, "off: 252 for anyone")
    with daemon({"smtp_vrfy": "yes"}) as d:
        with smtp(d) as c:
            S.eq(c.verify("alice@example.com")[0], 250, "on: 250 for a user")
            code, msg = c.verify("nosuch@example.com")
            S.eq((code, enh(msg)), (550, "5"), "on: 550 for an unknown user")


def states_daemon(conf):
    """A started daemon whose directory has alice (active), full (over quota), off
    (disabled) and team -> full, all set before it starts (no index refresh to wait for)."""
    port = free_tcp_port()
    keys = {"smtp_listen": f"127.0.0.1:{port}", "smtp_vrfy": "yes"}
    keys.update(conf)
    d = smtest.Daemon(conf=keys, minger=False)
    d.smtp_port = port
    try:
        for a in ("alice@example.com", "full@example.com", "off@example.com"):
            d.cli("account", "add", a, "--no-password")
        d.cli("account", "over-quota", "full@example.com")
        d.cli("account", "disable", "off@example.com")
        d.cli("alias", "add", "team@example.com", "full@example.com")
        d.start()
    except Exception:
        d.cleanup()
        raise
    return d


def test_over_quota_reply():
    """A full mailbox is temporary (452 4.2.2, MDaemon's default) unless
    smtp_over_quota_reply = 552; a disabled one stays 550 5.2.1; VRFY says the same."""
    for conf, want in (({}, (452, b"4.2.2")),
                       ({"smtp_over_quota_reply": "552"}, (552, b"5.2.2"))):
        what = f"smtp_over_quota_reply={conf.get('smtp_over_quota_reply', 'default')}"
        with states_daemon(conf) as d:
            with smtp(d) as c:
                c.mail("sender@example.org")
                code, msg = c.rcpt("full@example.com")
                S.eq((code, msg[:5]), want, f"{what}: RCPT over quota ({msg!r})")
                code, msg = c.rcpt("team@example.com")
                S.eq((code, msg[:5]), want, f"{what}: RCPT alias of an over-quota mailbox")
                code, msg = c.rcpt("off@example.com")
                S.eq((code, msg[:5]), (550, b"5.2.1"), f"{what}: RCPT disabled ({msg!r})")
                code, msg = c.verify("full@example.com")
                S.eq((code, msg[:5]), want, f"{what}: VRFY over quota")
                S.eq(c.rcpt("alice@example.com")[0], 250, f"{what}: the others are kept")
                code, msg = c.data(WITH_DATE)
                S.eq(code, 250, f"{what}: message for alice accepted")
            S.eq(len(wait_mail(d, "alice@example.com")), 1, f"{what}: delivered to alice")


def raw_reply(sock, timeout=10):
    sock.settimeout(timeout)
    buf = b""
    while True:
        for ln in buf.split(b"\r\n")[:-1]:
            if len(ln) >= 4 and ln[3:4] == b" ":
                return ln
        chunk = sock.recv(4096)
        if not chunk:
            return buf
        buf += chunk


def test_max_connections():
    with daemon({"smtp_max_connections": "2"}) as d:
        a = socket.create_connection(("127.0.0.1", d.smtp_port), timeout=10)
        b = socket.create_connection(("127.0.0.1", d.smtp_port), timeout=10)
        S.check(raw_reply(a).startswith(b"220 "), "first served")
        S.check(raw_reply(b).startswith(b"220 "), "second served")
        c = socket.create_connection(("127.0.0.1", d.smtp_port), timeout=10)
        S.check(raw_reply(c).startswith(b"421 4."), "third: 421 4.x")
        S.eq(c.recv(10), b"", "third closed")
        c.close()
        a.sendall(b"QUIT\r\n")
        S.check(raw_reply(a).startswith(b"221 "), "QUIT")
        a.close()
        e = None
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:  # the slot frees once the server has closed it
            e = socket.create_connection(("127.0.0.1", d.smtp_port), timeout=10)
            r = raw_reply(e)
            if r.startswith(b"220 "):
                break
            e.close()
            e = None
            time.sleep(0.05)
        S.check(e is not None, "a slot is free again after QUIT")
        for s in (b, e):
            if s:
                s.close()


def test_greet_pause():
    with daemon({"smtp_greet_pause_ms": "300"}) as d:
        s = socket.create_connection(("127.0.0.1", d.smtp_port), timeout=10)
        s.sendall(b"EHLO early.example.org\r\n")
        r = raw_reply(s)
        S.check(r.startswith(b"554 5."), f"early talker refused, got {r!r}")
        s.close()
        s = socket.create_connection(("127.0.0.1", d.smtp_port), timeout=10)
        r = raw_reply(s)
        S.check(r.startswith(b"220 "), "a patient client is greeted")
        s.sendall(b"EHLO patient.example.org\r\n")
        S.check(raw_reply(s).startswith(b"250"), "and served")
        s.close()


def test_command_timeout():
    with daemon({"smtp_command_timeout": "1"}) as d:
        s = socket.create_connection(("127.0.0.1", d.smtp_port), timeout=10)
        S.check(raw_reply(s).startswith(b"220 "), "greeting")
        r = raw_reply(s)  # say nothing
        S.check(r.startswith(b"421 4."), f"421 after the command timeout, got {r!r}")
        S.eq(s.recv(10), b"", "closed")
        s.close()


def test_swaks_option():
    if not shutil.which("swaks"):
        S.check(False, "swaks is not installed")
        return
    with daemon({"smtp_refuse_bang": "yes", "smtp_original_recipient_header": "yes"}) as d:
        p = subprocess.run(["swaks", "--server", "127.0.0.1", "--port", str(d.smtp_port),
                            "--from", "sender@example.org", "--to", "bang!path@example.com",
                            "--helo", "swaks.example.org"],
                           capture_output=True, text=True, timeout=60)
        S.check(p.returncode != 0, "swaks: ! recipient refused")
        S.check("<** 553 5.1" in p.stdout, "553 5.1.x in the transcript:\n" + p.stdout)
        p = subprocess.run(["swaks", "--server", "127.0.0.1", "--port", str(d.smtp_port),
                            "--from", "sender@example.org", "--to", "bob@example.com",
                            "--helo", "swaks.example.org", "--body", "swaks to bob"],
                           capture_output=True, text=True, timeout=60)
        S.eq(p.returncode, 0, "swaks delivers:\n" + p.stdout + p.stderr)
        b = wait_mail(d, "bob@example.com")
        S.check(b and b"X-Sharemail-Original-Rcpt: bob@example.com" in b[0],
                "with the original-recipient header")


if __name__ == "__main__":
    sys.exit(S.run([test_refuse_helo, test_dsn_off, test_refuse_percent, test_refuse_bang,
                    test_add_date_header, test_original_recipient_header,
                    test_rejected_recipients_log, test_max_message_size,
                    test_drop_connection_size, test_vrfy, test_over_quota_reply,
                    test_max_connections,
                    test_greet_pause, test_command_timeout, test_swaks_option]))
