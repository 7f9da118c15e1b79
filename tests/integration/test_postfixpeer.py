#!/usr/bin/env python3
"""postfixpeer self-test: a throwaway real Postfix (virtual(8) to Maildir files) and
smtp-sink (-d dumps), each sent mail by Python's smtplib; the delivered octets must be
what was sent: a body with dot lines, a 998-octet line and 8-bit octets. Also: the
envelope, refusals (foreign domain, unknown user), STARTTLS with the throwaway
certificate, a dump still being written is not returned, and nothing keeps running
after the `with`."""
import os
import smtplib
import socket
import ssl
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from smtest import Suite  # noqa: E402
from smtpraw import Conn  # noqa: E402
from peerutil import bounded, selfsigned_cert  # noqa: E402
from postfixpeer import (PostfixPeer, SmtpSink, parse_sink_dump,  # noqa: E402
                         split_delivery)

S = Suite("postfixpeer")
T = 30
BODY = (b"From: Alice <alice@client.test>\r\nTo: bob@peer.test\r\nSubject: byte-exact\r\n"
        b"Message-ID: <pf1@client.test>\r\n\r\n"
        b".a line starting with a dot\r\n..two dots\r\n.\r\n"
        + b"L" * 998 + b"\r\n"
        b"8-bit: caf\xc3\xa9 \xff\xfe\x80\r\n"
        b"\r\nlast line\r\n")


def gone(pid):
    try:
        os.kill(pid, 0)
        return False
    except ProcessLookupError:
        return True


def refuses(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        return False
    except OSError:
        return True


@bounded(T)
def test_postfix_delivers_byte_exact():
    with PostfixPeer(domains=["peer.test", "other.test"]) as pf:
        S.eq(pf.hostport, f"127.0.0.1:{pf.port}", "hostport")
        with smtplib.SMTP(pf.host, pf.port, timeout=10) as s:
            s.ehlo("client.test")
            S.check(s.has_extn("8bitmime") and s.has_extn("dsn"), "Postfix offers 8BITMIME, DSN")
            S.check(not s.has_extn("starttls"), "no STARTTLS unless tls=True")
            refused = s.sendmail("alice@client.test", ["bob@peer.test", "carol@other.test"],
                                 BODY, mail_options=["BODY=8BITMIME"])
            S.eq(refused, {}, "accepted")
            try:
                s.sendmail("alice@client.test", ["x@elsewhere.test"], b"Subject: no\r\n\r\nx\r\n")
                S.check(False, "Postfix relayed to a foreign domain")
            except smtplib.SMTPRecipientsRefused as e:
                S.eq(e.recipients["x@elsewhere.test"][0], 554, "relay access denied")
        bob = pf.wait_delivered("bob@peer.test")
        carol = pf.wait_delivered("carol@other.test")
        S.eq(len(bob), 1, "one copy for bob")
        S.eq(bob[0].message, BODY, "bob's copy byte-exact")
        S.eq(carol[0].message, BODY, "carol's copy byte-exact")
        S.eq(bob[0].return_path, "<alice@client.test>", "envelope sender")
        S.eq(bob[0].delivered_to, "bob@peer.test", "Delivered-To")
        S.check(bob[0].received and "by peer.test (Postfix)" in bob[0].received, "Received")
        S.check(bob[0].raw.endswith(b"last line\n"), "stored with LF")
        S.eq(len(pf.delivered()), 2, "two deliveries in all")
        S.eq(pf.queue_counts(), {q: 0 for q in pf.QUEUES}, "Postfix queue empty")
        S.check("status=sent (delivered to maildir)" in pf.logtext(), "maillog kept")
        pid = pf.child.pid
        port = pf.port
    S.check(gone(pid), "master gone after the with")
    S.check(refuses(port), "port closed after the with")


@bounded(T)
def test_postfix_users_tls_size():
    with PostfixPeer(users=["bob@peer.test"], tls=True, size_limit=20000) as pf:
        cert, _ = selfsigned_cert()
        ctx = ssl.create_default_context(cafile=cert)
        with smtplib.SMTP(pf.host, pf.port, timeout=10) as s:
            s.ehlo("client.test")
            S.check(s.has_extn("starttls"), "STARTTLS offered")
            S.eq(s.esmtp_features.get("size"), "20000", "SIZE from size_limit")
            S.eq(s.starttls(context=ctx)[0], 220, "STARTTLS")
            S.eq(s.sock.version(), "TLSv1.3", "TLS 1.3 with the throwaway certificate")
            s.ehlo("client.test")
            try:
                s.sendmail("a@client.test", ["nobody@peer.test"], BODY)
                S.check(False, "unknown user accepted")
            except smtplib.SMTPRecipientsRefused as e:
                S.eq(e.recipients["nobody@peer.test"][0], 550, "unknown user 550")
            S.eq(s.sendmail("a@client.test", ["bob@peer.test"], BODY), {}, "bob over TLS")
        d = pf.wait_delivered("bob@peer.test")
        S.eq(d[0].message, BODY, "byte-exact over TLS")
        S.check("TLS connection established" in pf.logtext(), "TLS in the log")
        with Conn(pf.port) as c:
            c.cmd("EHLO t")
            S.eq(c.cmd("MAIL FROM:<a@client.test> SIZE=20001").code, 552, "SIZE refused")


@bounded(T)
def test_sink():
    with SmtpSink() as sk:
        with smtplib.SMTP(sk.host, sk.port, timeout=10) as s:
            s.ehlo("client.test")
            S.eq(s.sendmail("alice@client.test", ["bob@peer.test", "carol@peer.test"], BODY,
                            mail_options=["BODY=8BITMIME"], rcpt_options=["NOTIFY=NEVER"]),
                 {}, "accepted")
        m = sk.wait_messages(1)
        S.eq(len(m), 1, "one dump per transaction")
        m = m[0]
        S.eq(m.message, BODY, "smtp-sink dump byte-exact (CRLF restored)")
        S.eq((m.helo, m.mail_from, m.mail_params), ("client.test", "alice@client.test",
                                                    "BODY=8BITMIME"), "envelope")
        S.eq(m.rcpts, ["bob@peer.test", "carol@peer.test"], "recipients")
        S.eq(m.rcpt_params, ["NOTIFY=NEVER", "NOTIFY=NEVER"], "recipient parameters")
        # A transaction under way is not returned; once the dot is answered, it is.
        with Conn(sk.port) as c:
            c.cmd("EHLO client.test")
            c.cmd("MAIL FROM:<a@client.test>")
            c.cmd("RCPT TO:<b@peer.test>")
            S.eq(c.cmd("DATA").code, 354, "354")
            c.send(b"Subject: half\r\n\r\nfirst half\r\n")
            c.send(b"NOOP\r\n")                   # data here, not a command
            S.eq(len(sk.messages()), 1, "the open dump is not returned")
            c.send(b".\r\n")
            S.eq(c.reply().code, 250, "dot answered")
        msgs = sk.wait_messages(2)
        S.eq(msgs[1].message, b"Subject: half\r\n\r\nfirst half\r\nNOOP\r\n", "second message")
        pid, port = sk.child.pid, sk.port
    S.check(gone(pid), "smtp-sink gone after the with")
    S.check(refuses(port), "port closed")


def test_parsers():
    raw = (b"Return-Path: <a@b>\nX-Original-To: x@peer.test\nDelivered-To: x@peer.test\n"
           b"Received: from c (c [127.0.0.1])\n\tby peer.test (Postfix) with ESMTP id 1;\n"
           b"\tdate\nReceived: from earlier by other.test\nSubject: s\n\nbody\n")
    d = split_delivery("p", raw, "peer.test")
    S.eq(d.message, b"Received: from earlier by other.test\r\nSubject: s\r\n\r\nbody\r\n",
         "only Postfix's own fields taken off")
    S.eq((d.return_path, d.delivered_to), ("<a@b>", "x@peer.test"), "trace fields")
    dump = (b"X-Client-Addr: 127.0.0.1\nX-Client-Proto: ESMTP\nX-Helo-Args: h\n"
            b"X-Mail-Args: <> RET=HDRS\nX-Rcpt-Args: <r@x>\nReceived: from h\n\tby s\n\tdate\n"
            b"Subject: s\n\nb\n\n")
    m = parse_sink_dump("p", dump)
    S.eq((m.mail_from, m.mail_params, m.rcpts, m.message),
         ("", "RET=HDRS", ["r@x"], b"Subject: s\r\n\r\nb\r\n"), "dump parsed")
    for bad in (dump[:60], b"garbage\n" + dump, dump[:-1] + b"x"):
        S.raises(ValueError, lambda: parse_sink_dump("p", bad), f"parsed a bad dump {bad[-20:]!r}")


sys.exit(S.run([test_parsers, test_postfix_delivers_byte_exact, test_postfix_users_tls_size,
                test_sink]))
