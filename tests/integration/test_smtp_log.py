#!/usr/bin/env python3
"""The SMTP server's log lines, read from the real sharemaild's log (issue 6, item 7):

  QUEUEID: client=[ADDR] helo=<HELO> from=<S> size=N nrcpt=N[ msgid=<ID>]
  reject: MAIL|RCPT|DATA from [ADDR] helo=<HELO>: REPLY; from=<S>[ to=<R>]

one per accepted message (after its 250), one per refused MAIL or RCPT (or message
refused at its dot); the queue id is the one of "250 ... queued as ID" and of our
Received field; client octets outside printable ASCII never reach the log raw.
The daemon writes a line before it sends the reply it belongs to, so a line is in
the log once the client has the reply: nothing here waits on a clock.
"""
import os
import re
import smtplib
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import smtest  # noqa: E402
from smtest import Suite, wait_mail  # noqa: E402
from smtpraw import Conn  # noqa: E402

S = Suite("smtp_log")
HELO = "client.example.org"


def log_lines(d, pattern):
    """The daemon's log lines whose message (after "level: ") matches pattern."""
    out = []
    for line in d.logtext().splitlines():
        m = re.match(r"^\S+ sharemaild\[\d+\]: info: (.*)$", line)
        if m and re.search(pattern, m.group(1)):
            out.append(m.group(1))
    return out


def queued_id(msg):
    m = re.search(rb"queued as (\S+)", msg)
    return m.group(1).decode() if m else None


def received_field(mail):
    """Our Received field (its three lines) from a delivered Maildir file, with CRLFs."""
    lines = mail.replace(b"\r\n", b"\n").split(b"\n")
    for i, ln in enumerate(lines):
        if ln.startswith(b"Received: "):
            field = [ln]
            for more in lines[i + 1:]:
                if not more.startswith((b" ", b"\t")):
                    break
                field.append(more)
            return b"".join(x + b"\r\n" for x in field)
    return b""


def test_accepted_message_line():
    body = (b"From: sender@example.org\r\nTo: alice@example.com\r\nSubject: logged\r\n"
            b"Message-ID:\r\n <logged.1@example.org>\r\n\r\nHello.\r\n")
    with smtest.smtp_daemon() as d:
        with smtplib.SMTP("127.0.0.1", d.smtp_port, timeout=10) as c:
            c.ehlo(HELO)
            c.mail("sender@example.org")
            S.eq(c.rcpt("alice@example.com")[0], 250, "RCPT alice")
            S.eq(c.rcpt("bob@example.com")[0], 250, "RCPT bob")
            code, msg = c.data(body)
            S.eq(code, 250, "message accepted")
            qid = queued_id(msg)
            S.eq(c.mail("<>")[0], 250, "MAIL FROM:<>")
            S.eq(c.rcpt("alice@example.com")[0], 250, "RCPT alice")
            code, msg = c.data(b"Subject: no id\r\n\r\nx\r\n")
            S.eq(code, 250, "second message accepted")
            qid2 = queued_id(msg)
        S.check(qid is not None and qid2 is not None and qid != qid2, f"queue ids {qid} {qid2}")
        mails = wait_mail(d, "bob@example.com")
        S.eq(len(mails), 1, "delivered to bob")
        rcv = received_field(mails[0]) if mails else b""
        S.check(f" id {qid};".encode() in rcv, f"the Received id is the queue id {qid}: {rcv!r}")
        # as stored: our Received field, then the message as sent
        size = len(rcv) + len(body)
        want = (f"{qid}: client=[127.0.0.1] helo=<{HELO}> from=<sender@example.org> "
                f"size={size} nrcpt=2 msgid=<logged.1@example.org>")
        # one receipt line per message (the delivery lines that follow say to=<...>)
        S.eq(log_lines(d, "^" + re.escape(qid) + ": client="), [want], "one line for the message")
        got = log_lines(d, "^" + re.escape(qid2 or "-") + ": client=")
        S.check(len(got) == 1 and " from=<> " in got[0] and " nrcpt=1" in got[0] and
                "msgid=" not in got[0], f"no Message-ID, no msgid=: {got}")


def test_refused_mail_and_rcpt_lines():
    with smtest.smtp_daemon({"smtp_refuse_percent": "yes"}) as d:
        with smtplib.SMTP("127.0.0.1", d.smtp_port, timeout=10) as c:
            c.ehlo(HELO)
            S.eq(c.mail("a%b@example.org")[0], 553, "MAIL with '%' refused")
            c.mail("sender@example.org")
            S.eq(c.rcpt("nosuch@example.com")[0], 550, "unknown")
            S.eq(c.rcpt("someone@elsewhere.example")[0], 554, "relay")
            S.eq(c.rcpt("alice@example.com")[0], 250, "known")
        S.eq(log_lines(d, "^reject: MAIL "),
             [f"reject: MAIL from [127.0.0.1] helo=<{HELO}>: 553 5.1.7 Sender address with "
              "'%' refused; from=<a%b@example.org>"], "the refused MAIL")
        S.eq(log_lines(d, "^reject: RCPT "),
             [f"reject: RCPT from [127.0.0.1] helo=<{HELO}>: 550 5.1.1 No such user here; "
              "from=<sender@example.org> to=<nosuch@example.com>",
              f"reject: RCPT from [127.0.0.1] helo=<{HELO}>: 554 5.7.1 Relay access denied; "
              "from=<sender@example.org> to=<someone@elsewhere.example>"],
             "one line per refused RCPT, none for the accepted one")
        S.eq(log_lines(d, "alice@example.com"), [], "accepted recipients are not rejects")


def test_refused_message_line():
    with smtest.smtp_daemon({"smtp_max_message_size": "1k"}) as d:
        with Conn(d.smtp_port) as c:
            c.cmd(f"EHLO {HELO}")
            c.cmd("MAIL FROM:<sender@example.org>")
            c.cmd("RCPT TO:<alice@example.com>")
            S.eq(c.cmd("DATA").code, 354, "DATA")
            c.send(b"Subject: big\r\n\r\n" + (b"y" * 70 + b"\r\n") * 40 + b".\r\n")
            S.eq(c.reply().code, 552, "too big")
        S.eq(log_lines(d, "^reject: DATA "),
             [f"reject: DATA from [127.0.0.1] helo=<{HELO}>: 552 5.3.4 Message size exceeds "
              "fixed maximum message size; from=<sender@example.org> nrcpt=1"], "the message")


def test_hostile_octets_never_reach_the_log():
    with smtest.smtp_daemon() as d:
        with Conn(d.smtp_port) as c:
            c.cmd(f"EHLO {HELO}")
            S.eq(c.cmd(b"MAIL FROM:<j\xfcrgen@example.org>").code, 553, "8-bit sender")
            c.cmd("MAIL FROM:<sender@example.org>")
            r = c.cmd(b"RCPT TO:<evil\x01\x1b[31m@example.com>")
            S.check(r is not None and r.code // 100 == 5, f"control octets refused: {r}")
            c.cmd("RCPT TO:<alice@example.com>")
            S.eq(c.cmd("DATA").code, 354, "DATA")
            c.send(b"Subject: x\r\nMessage-ID: <a\x01\x7f\xff@example.org>\r\n\r\nbody\r\n.\r\n")
            S.eq(c.reply().code, 250, "message with a hostile Message-ID accepted")
        raw = open(d.log_path, "rb").read()
        S.check(all(b >= 0x20 and b != 0x7f for line in raw.split(b"\n") for b in line),
                "no control octet in any log line")
        S.check(any(line.endswith("from=<j?rgen@example.org>")
                    for line in log_lines(d, "^reject: MAIL ")), "8-bit octet shown as '?'")
        S.check(any(line.endswith("to=<evil??[31m@example.com>")
                    for line in log_lines(d, "^reject: RCPT ")), "control octets shown as '?'")
        S.check(any(line.endswith("msgid=<a???@example.org>")
                    for line in log_lines(d, ": client=")), "the Message-ID's octets as '?'")


if __name__ == "__main__":
    sys.exit(S.run([test_accepted_message_line, test_refused_mail_and_rcpt_lines,
                    test_refused_message_line, test_hostile_octets_never_reach_the_log]))
