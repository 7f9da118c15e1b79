#!/usr/bin/env python3
"""fakepeer self-test: the scripted fake SMTP server, driven by Python's smtplib
(an independent client, including STARTTLS) and by raw sockets (smtpraw.Conn), so
that the relay tests can trust what it records and the faults it plays."""
import os
import smtplib
import socket
import ssl
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from smtest import Suite, have_ipv6  # noqa: E402
from smtpraw import Conn, Timeout  # noqa: E402
from peerutil import bounded, selfsigned_cert  # noqa: E402
from fakepeer import (FakePeer, drop, endless_line, greet, read, refused_port,  # noqa: E402
                      reset, say, serve, silent, starttls_hang, starttls_inject, unstuff)

S = Suite("fakepeer")
T = 15      # hard seconds per test
BODY = (b"From: a@client.test\r\nTo: b@peer.test\r\nSubject: fake\r\n\r\n"
        b".a line starting with a dot\r\n..two dots\r\n.\r\n"
        b"L" * 998 + b"\r\n"
        b"8-bit: caf\xc3\xa9 \xff\r\n"
        b"last\r\n")


def stuffed(content):
    """What a correct client sends for content (CRLF lines): dot-stuffed, then .CRLF."""
    return b"".join(b"." + l if l.startswith(b".") else l
                    for l in content.splitlines(keepends=True)) + b".\r\n"


def smtp(peer, timeout=5):
    return smtplib.SMTP(peer.host, peer.port, timeout=timeout)


@bounded(T)
def test_default_session_smtplib():
    with FakePeer() as peer:
        with smtp(peer) as s:
            code, caps = s.ehlo("client.test")
            S.eq(code, 250, "EHLO")
            for k in ("pipelining", "size", "8bitmime", "enhancedstatuscodes"):
                S.check(s.has_extn(k), f"EHLO offers {k}")
            S.check(not s.has_extn("starttls"), "no STARTTLS by default")
            refused = s.sendmail("a@client.test", ["b@peer.test", "C@Peer.Test"], BODY,
                                 mail_options=["BODY=8BITMIME"])
            S.eq(refused, {}, "all recipients accepted")
        S.check(peer.wait_closed(1), "connection ended")
        c = peer.connections[0]
        S.eq(c.ended, "quit", "ended by QUIT")
        S.eq(c.ehlo, "client.test", "EHLO name")
        S.eq([x.split()[0].upper() for x in c.commands], ["EHLO", "MAIL", "RCPT", "RCPT", "DATA",
                                                          "QUIT"], "commands")
        S.check(all(l.endswith(b"\r\n") for l in c.lines), "every line CRLF")
        S.eq(c.errors, [], "no protocol slips")
        m = c.messages[0]
        S.eq(m.mail_from, "a@client.test", "MAIL FROM")
        S.check("BODY=8BITMIME" in m.mail_params, f"MAIL params {m.mail_params!r}")
        S.eq(m.rcpts, ["b@peer.test", "C@Peer.Test"], "accepted recipients")
        S.eq(m.raw, stuffed(BODY), "raw DATA octets: dot-stuffed as sent")
        S.eq(m.content, BODY, "content: unstuffed, byte-exact")
        S.eq(m.bare_line_ends, 0, "only CRLF")
        S.check(m.complete and m.accepted and m.dot_reply.startswith("250 2.0.0"), f"{m}")
        S.eq(peer.deliveries(), [("b@peer.test", BODY), ("c@peer.test", BODY)], "deliveries")
        S.eq(peer.duplicates(), {}, "no duplicates")
        S.eq(peer.failures, [], "no script failures")


@bounded(T)
def test_per_recipient_replies():
    spec = {"temp@peer.test": "451 4.3.0 try later", "gone@peer.test": "550 5.1.1 no such user"}
    with FakePeer(script=serve(rcpt=spec)) as peer:
        with smtp(peer) as s:
            refused = s.sendmail("a@client.test", ["ok@peer.test", "temp@peer.test",
                                                   "GONE@peer.test"], BODY)
        S.eq({k: v[0] for k, v in refused.items()}, {"temp@peer.test": 451, "GONE@peer.test": 550},
             "refused recipients")
        peer.wait_closed(1)
        m = peer.messages()[0]
        S.eq(m.rcpts, ["ok@peer.test"], "only the 250 recipient")
        S.eq([(a, r[:3]) for a, r in m.rcpt_replies],
             [("ok@peer.test", "250"), ("temp@peer.test", "451"), ("GONE@peer.test", "550")],
             "reply per recipient (dict keys case-insensitive)")
        S.eq(peer.deliveries(), [("ok@peer.test", BODY)], "delivered once, to ok only")
    # "*" for the others, and a function spec
    with FakePeer(script=serve(rcpt={"*": "452 4.2.2 full", "x@peer.test": None},
                               mail=lambda c, arg: "250 2.1.0 sender " + arg[5:])) as peer:
        with Conn(peer.port) as c:
            c.cmd("EHLO t")
            r = c.cmd("MAIL FROM:<s@client.test>")
            S.eq(r.text, "2.1.0 sender <s@client.test>", "function spec gets the argument")
            S.eq(c.cmd("RCPT TO:<y@peer.test>").code, 452, "* spec")
            S.eq(c.cmd("RCPT TO:<x@peer.test>").code, 250, "None: the default")
            c.cmd("QUIT")


@bounded(T)
def test_greetings():
    with FakePeer(script=serve(greeting=421)) as peer:
        try:
            smtp(peer)
            S.check(False, "smtplib accepted a 421 greeting")
        except smtplib.SMTPConnectError as e:
            S.eq(e.smtp_code, 421, "421 greeting")
        S.check(peer.wait_closed(1), "closed after 421")
        S.eq(peer.connections[0].ended, "421 greeting", "ended")
    with FakePeer(script=serve(greeting=554)) as peer:
        with Conn(peer.port) as c:
            S.eq(c.greeting.code, 554, "554 greeting")
            S.eq(c.cmd("EHLO t").code, 503, "503 to EHLO after 554")
            S.eq(c.cmd("MAIL FROM:<a@b>").code, 503, "503 to MAIL after 554")
            S.eq(c.cmd("QUIT").code, 221, "QUIT still answered")
            S.check(c.wait_closed(5), "closed after QUIT")
    with FakePeer(script=[greet("220-first line\n220 second line"), read(), say("250 hi"),
                          read(), drop()]) as peer:
        with Conn(peer.port) as c:
            S.eq(c.greeting.lines, ["220-first line", "220 second line"], "multi-line greeting")
            S.eq(c.cmd("HELO x").code, 250, "step list: reply")
            c.send("NOOP\r\n")
            S.check(c.wait_closed(5), "step list: drop")
        peer.wait_closed(1)
        S.eq(peer.connections[0].commands, ["HELO x", "NOOP"], "step list: commands")
        S.eq(peer.connections[0].ended, "drop", "ended by drop")


@bounded(T)
def test_drop_after_dot():
    with FakePeer(script=serve(dot=drop())) as peer:
        with Conn(peer.port) as c:
            c.cmd("EHLO t")
            c.cmd("MAIL FROM:<a@client.test>")
            c.cmd("RCPT TO:<b@peer.test>")
            S.eq(c.cmd("DATA").code, 354, "354")
            c.send(stuffed(BODY))
            S.eq(c.reply_or_none(5), None, "no reply after the dot")
            S.check(c.eof, "connection closed")
        peer.wait_closed(1)
        m = peer.messages()[0]
        S.check(m.complete, "whole message received")
        S.eq(m.content, BODY, "content")
        S.eq((m.dot_reply, m.accepted), (None, False), "not accepted")
        S.eq(peer.accepted(), [], "nothing accepted")
        S.eq(peer.connections[0].ended, "drop", "ended")
    # a reply then a drop: accepted, though the client gets no reply to QUIT
    with FakePeer(script=serve(dot=["250 2.0.0 queued", drop()])) as peer:
        with smtp(peer) as s:
            s.ehlo()
            S.eq(s.sendmail("a@client.test", ["b@peer.test"], BODY), {}, "accepted")
            try:
                s.quit()
            except smtplib.SMTPServerDisconnected:
                pass
        peer.wait_closed(1)
        S.eq(peer.messages()[0].dot_reply, "250 2.0.0 queued", "dot reply recorded before drop")
        S.eq(len(peer.accepted()), 1, "accepted")


@bounded(T)
def test_drop_mid_data():
    with FakePeer(script=serve()) as peer:
        with Conn(peer.port) as c:
            c.cmd("EHLO t")
            c.cmd("MAIL FROM:<a@client.test>")
            c.cmd("RCPT TO:<b@peer.test>")
            c.cmd("DATA")
            c.send(b"Subject: half\r\n\r\nhalf a mess")
        S.check(peer.wait_closed(1), "ended")
        m = peer.messages()[0]
        S.eq((m.raw, m.complete, m.accepted), (b"Subject: half\r\n\r\nhalf a mess", False, False),
             "partial data kept, not complete")
        S.eq(peer.connections[0].ended, "eof", "client closed")
        S.check(peer.connections[0].closed_by_client, "closed by client")


@bounded(T)
def test_silent():
    with FakePeer(script=serve(mail=silent())) as peer:
        with Conn(peer.port, timeout=5) as c:
            c.cmd("EHLO t")
            c.send("MAIL FROM:<a@client.test>\r\nRCPT TO:<b@peer.test>\r\n")
            S.raises(Timeout, lambda: c.reply(timeout=1), "a silent peer replied")
        S.check(peer.wait_closed(1), "the peer noticed the client's close")
        conn = peer.connections[0]
        S.eq(conn.after_silence, b"RCPT TO:<b@peer.test>\r\n", "what came during the silence")
        S.check(conn.closed_by_client and conn.ended == "eof", f"ended {conn.ended}")
    # silence outlasts the peer's read timeout (it is not the limit)
    with FakePeer(script=silent(), timeout=0.05) as peer:
        with Conn(peer.port, greet=False) as c:
            S.check(peer.wait(lambda p: p._conns and p._conns[0].silent_timeouts >= 2),
                    "read timeouts passed")
            c.send("late\r\n")
            S.check(peer.wait(lambda p: p._conns[0].after_silence == b"late\r\n"),
                    "still reading after its read timeouts")
        S.check(peer.wait_closed(1), "ended")
        S.eq(peer.connections[0].ended, "eof", "ended by the client")
    # silent from the start (no greeting), and the peer's own limit bounds it
    with FakePeer(script=silent(), limit=1) as peer:
        with Conn(peer.port, greet=False) as c:
            S.check(c.wait_closed(10), "the limit closes a silent connection")
        peer.wait_closed(1)
        S.eq(peer.connections[0].ended, "limit", "ended by the limit")


@bounded(T)
def test_endless_line():
    with FakePeer(script=serve(greeting=endless_line(b"220-"))) as peer:
        s = socket.create_connection((peer.host, peer.port), timeout=5)
        got = b""
        while len(got) < 1 << 20:
            got += s.recv(65536)
        s.close()
        S.check(got.startswith(b"220-xxxx"), "prefix then fill")
        S.check(b"\n" not in got and b"\r" not in got, "no line end in the first MiB")
        S.check(peer.wait_closed(1), "ends when the client closes")
        S.check(peer.connections[0].endless_sent >= 1 << 20, "octets counted")
    with FakePeer(script=serve(ehlo=endless_line(b"250-"))) as peer:
        def ehlo():
            with smtp(peer) as s:
                s.ehlo()
        # smtplib either answers the overlong line with its own 500 or loses the connection.
        e = S.raises((smtplib.SMTPResponseException, smtplib.SMTPServerDisconnected, OSError),
                     ehlo, "smtplib took an endless EHLO reply")
        if isinstance(e, smtplib.SMTPResponseException):
            S.eq(e.smtp_code, 500, "smtplib: line too long")
        S.check(peer.wait_closed(1), "ended")


@bounded(T)
def test_refused_and_reset():
    port = refused_port()
    S.raises(ConnectionRefusedError, lambda: socket.create_connection(("127.0.0.1", port), timeout=5).close(), "connection to the refused port succeeded")
    with FakePeer(script=[greet(), read(), reset()]) as peer:
        with Conn(peer.port) as c:
            c.send("EHLO t\r\n")
            try:
                c._fill(time.monotonic() + 5)
                S.check(False, "no reset")
            except Exception as e:  # noqa: BLE001 - Closed is what smtpraw makes of a reset
                S.eq(type(e).__name__, "Closed", "reset seen as closed")
        peer.wait_closed(1)
        S.eq(peer.connections[0].ended, "reset", "ended by reset")


def client_ctx():
    cert, _ = selfsigned_cert()
    ctx = ssl.create_default_context(cafile=cert)      # verifies the throwaway certificate
    return ctx


@bounded(T)
def test_starttls_smtplib():
    with FakePeer(script=serve(caps=("PIPELINING", "STARTTLS", "DSN", "SIZE 1000000"))) as peer:
        with smtp(peer) as s:
            s.ehlo("c1.test")
            S.check(s.has_extn("starttls") and s.has_extn("dsn"), "STARTTLS and DSN offered")
            S.eq(s.esmtp_features.get("size"), "1000000", "SIZE n")
            code, _ = s.starttls(context=client_ctx())
            S.eq(code, 220, "STARTTLS 220")
            S.eq(s.sock.version(), "TLSv1.3", "client TLS version")
            s.ehlo("c2.test")
            S.check(not s.has_extn("starttls"), "no STARTTLS after TLS")
            S.eq(s.sendmail("a@client.test", ["b@peer.test"], BODY, rcpt_options=["NOTIFY=NEVER"]),
                 {}, "sent over TLS")
        peer.wait_closed(1)
        c = peer.connections[0]
        S.check(c.tls.started and c.tls.established, f"{c.tls}")
        S.eq(c.tls.version, "TLSv1.3", "peer TLS version")
        S.eq(c.tls.error, None, "no TLS error")
        S.eq([x.split()[0] for x in c.commands], ["ehlo", "STARTTLS", "ehlo", "mail", "rcpt",
                                                 "data", "QUIT"], "commands across TLS")
        S.eq(c.ehlo, "c2.test", "EHLO after TLS")
        m = c.messages[0]
        S.check(m.tls and m.accepted and m.content == BODY, f"message over TLS {m}")
        S.eq(c.errors, [], "no slips")
    with FakePeer(script=serve(caps=("SIZE 100",))) as peer:
        with Conn(peer.port) as c:
            c.cmd("EHLO t")
            S.eq(c.cmd("STARTTLS").code, 502, "STARTTLS when not offered")
            S.eq(c.cmd("MAIL FROM:<a@b> SIZE=101").code, 552, "SIZE over the limit")
            S.eq(c.cmd("MAIL FROM:<a@b> SIZE=100").code, 250, "SIZE at the limit")


@bounded(T)
def test_starttls_hang():
    with FakePeer(script=serve(caps=("STARTTLS",), starttls=starttls_hang())) as peer:
        s = smtp(peer, timeout=1)
        s.ehlo()
        S.raises((socket.timeout, TimeoutError, ssl.SSLError, OSError), lambda: s.starttls(context=client_ctx()), "handshake completed with a peer that never answers")
        s.close()
        S.check(peer.wait_closed(1), "peer saw the client give up")
        c = peer.connections[0]
        S.check(c.tls.started and not c.tls.established, f"{c.tls}")
        S.check(c.after_silence.startswith(b"\x16\x03"), "the ClientHello arrived unanswered")


@bounded(T)
def test_starttls_inject():
    inj = b"250 2.0.0 injected\r\n"
    with FakePeer(script=serve(caps=("STARTTLS",), starttls=starttls_inject(inj))) as peer:
        with Conn(peer.port) as c:
            c.cmd("EHLO t")
            c.send("STARTTLS\r\n")
            r = c.reply()
            S.eq(r.code, 220, "220 first")
            # One write on loopback arrives in one segment: the read that brought the 220
            # brought the injected octets too.
            S.eq(c.buf, inj, "injected plaintext right after the 220")
            # A client that ignores it can still do the handshake: the peer plays along.
            tls = client_ctx().wrap_socket(c.sock, server_hostname="peer.test")
            tls.sendall(b"EHLO t\r\n")
            got = tls.recv(4096)
            S.check(got == b"250 peer.test greets t\r\n", f"EHLO over TLS: {got!r}")
            tls.close()
        peer.wait_closed(1)
        S.check(peer.connections[0].tls.established, "handshake after injection")
        S.eq(peer.connections[0].replies[-2:-1], ["220 2.0.0 Ready to start TLS\r\n" +
                                                  inj.decode().rstrip("\r\n")], "recorded")
    # A client that pipelines after STARTTLS (RFC 3207 4 forbids it) is noted.
    with FakePeer(script=serve(caps=("STARTTLS",))) as peer:
        with Conn(peer.port) as c:
            c.cmd("EHLO t")
            c.send("STARTTLS\r\nEHLO early\r\n")
            S.eq(c.reply().code, 220, "220")
        peer.wait_closed(1)
        conn = peer.connections[0]
        S.eq(conn.errors, ["12 octets after STARTTLS before the handshake"], "noted")
        S.check(conn.tls.started and not conn.tls.established, "no TLS")
        S.eq(conn.commands, ["EHLO t", "STARTTLS"], "the early command was not served")


@bounded(T)
def test_raw_octets_and_pipelining():
    data = (b"Subject: raw\r\n\r\n..stuffed\r\n.x unstuffed-invalid\r\nbare\nlf then .dot\r\n"
            b"bare\rcr\r\n\r\n")
    with FakePeer() as peer:
        with Conn(peer.port) as c:
            c.cmd("EHLO t")
            # One write: the PIPELINING group (RFC 2920), then data, dot and QUIT at once.
            c.send("MAIL FROM:<a@client.test>\r\nRCPT TO:<b@peer.test>\r\n"
                   "RCPT TO:<c@peer.test>\r\nDATA\r\n")
            S.eq([r.code for r in c.replies(4)], [250, 250, 250, 354], "pipelined replies")
            c.send(data + b".\r\nQUIT\r\n")
            S.eq([r.code for r in c.replies(2)], [250, 221], "dot and QUIT in one write")
        peer.wait_closed(1)
        m = peer.messages()[0]
        S.eq(m.raw, data + b".\r\n", "raw octets exactly")
        S.eq(m.bare_line_ends, 2, "a bare LF and a bare CR counted")
        S.eq(m.content, b"Subject: raw\r\n\r\n.stuffed\r\nx unstuffed-invalid\r\n"
                        b"bare\nlf then .dot\r\nbare\rcr\r\n\r\n", "unstuffed")
    S.eq(unstuff(b".\r\n"), b"", "empty message")
    S.eq(unstuff(b"..\r\n.\r\n"), b".\r\n", "a lone dot line")
    with FakePeer() as peer:
        with Conn(peer.port) as c:
            c.send("EHLO bare\n")
            S.eq(c.reply().code, 250, "bare LF still served")
            c.cmd("MAIL FROM:<a@b>")
            c.cmd("RCPT TO:<b@peer.test>")
            c.cmd("DATA")
            c.send(".\r\n")
            S.eq(c.reply().code, 250, "empty message accepted")
        peer.wait_closed(1)
        S.eq(peer.messages()[0].raw, b".\r\n", "empty message raw")
        S.check(any("bare LF" in e for e in peer.connections[0].errors), "bare LF noted")


@bounded(T)
def test_scripts_per_connection_and_duplicates():
    first = serve(rcpt={"*": "451 4.3.0 later"})
    with FakePeer(scripts=[first, serve(greeting=421)], then=serve()) as peer:
        for i in range(4):
            try:
                with smtp(peer) as s:
                    s.sendmail("a@client.test", ["b@peer.test"], BODY)
            except (smtplib.SMTPRecipientsRefused, smtplib.SMTPConnectError) as e:
                S.eq(i < 2, True, f"connection {i} refused: {e}")
        S.check(peer.wait_closed(4), "four connections")
        S.eq(peer.count, 4, "count")
        S.eq(peer.connections[1].ended, "421 greeting", "second script")
        S.eq(len(peer.messages()), 2, "the 451 transaction never reached DATA")
        S.eq(len(peer.accepted()), 2, "two accepted")
        S.eq(peer.duplicates(), {("b@peer.test", BODY): 2}, "the duplicate is detected")


@bounded(T)
def test_function_script_and_failures():
    def script(conn):
        conn.answer("220 fn ready")
        verb, arg = conn.read_command()
        conn.answer(f"250 got {verb} {arg}")
        conn.read_line()
        raise ValueError("harness bug")

    with FakePeer(script=script) as peer:
        with Conn(peer.port) as c:
            S.eq(c.greeting.text, "fn ready", "function script greeting")
            S.eq(c.cmd("ehlo me").text, "got EHLO me", "read_command")
            c.send("NOOP\r\n")
            S.check(c.wait_closed(5), "closed after the exception")
        peer.wait_closed(1)
        S.eq(len(peer.failures), 1, "the script's exception is recorded")
        S.check("ValueError: harness bug" in peer.failures[0], "traceback kept")
        S.eq(peer.connections[0].ended, "script error", "ended")

    def fn_serve(conn):
        conn.answer("220 x")
        conn.serve(greeting=None, caps=())
    with FakePeer(script=fn_serve) as peer:
        with smtp(peer) as s:
            S.eq(s.sendmail("a@b", ["c@peer.test"], b"x\r\n"), {},
                 "conn.serve() after a custom start")
        peer.wait_closed(1)
        S.eq(peer.failures, [], "no failures")


@bounded(T)
def test_stop_is_bounded():
    peer = FakePeer(script=silent())
    c = Conn(peer.port, greet=False)
    S.check(peer.wait_connections(1), "connected")
    peer.stop()
    S.check(c.wait_closed(5), "stop() closed the live connection")
    S.eq((peer.connections[0].ended, peer.connections[0].closed_by_client), ("stopped", False),
         "ended by stop(), not by the client")
    c.close()
    S.check(all(not t.is_alive() for t in peer._threads), "threads joined")
    S.raises(OSError, lambda: socket.create_connection(("127.0.0.1", peer.port), timeout=2).close(), "still listening after stop")
    peer.stop()     # idempotent


@bounded(T)
def test_other_addresses():
    with FakePeer(host="127.0.0.2") as peer:
        S.eq(peer.hostport, f"127.0.0.2:{peer.port}", "hostport")
        with Conn(peer.port, host="127.0.0.2") as c:
            S.eq(c.cmd("EHLO t").code, 250, "EHLO on 127.0.0.2")
    if not have_ipv6():
        S.skip("no ::1 here")
        return
    with FakePeer(host="::1") as peer:
        S.eq(peer.hostport, f"[::1]:{peer.port}", "hostport")
        with Conn(peer.port, host="::1") as c:
            S.eq(c.cmd("EHLO t").code, 250, "EHLO over ::1")


sys.exit(S.run([test_default_session_smtplib, test_per_recipient_replies, test_greetings,
                test_drop_after_dot, test_drop_mid_data, test_silent, test_endless_line,
                test_refused_and_reset, test_starttls_smtplib, test_starttls_hang,
                test_starttls_inject, test_raw_octets_and_pipelining,
                test_scripts_per_connection_and_duplicates, test_function_script_and_failures,
                test_stop_is_bounded, test_other_addresses]))
