#!/usr/bin/env python3
"""Relay to real peers from Debian's postfix package (postfixpeer.py): a throwaway
Postfix instance and smtp-sink on loopback. Bodies arrive byte-exact (dot lines, a
998-octet line, 8-bit octets with BODY=8BITMIME), over STARTTLS when the peer offers
it, with DSN parameters passed on to a peer that offers DSN, and a recipient the peer
does not know is bounced while the others are delivered."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from smtest import Suite  # noqa: E402
from peerutil import bounded  # noqa: E402
from postfixpeer import PostfixPeer, SmtpSink  # noqa: E402
from relayutil import queue_lines, relay_daemon, send, wait_gone, wait_notices  # noqa: E402

S = Suite("relay_peers")
T = 120

BODY = (b"From: sender@example.com\r\nTo: bob@peer.test\r\nSubject: to a real peer\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n\r\n"
        b".a line starting with a dot\r\n..two dots\r\n.\r\n"
        + b"L" * 998 + b"\r\n"
        b"8-bit: caf\xc3\xa9\r\n"
        b"last line\r\n")


def without_received(message):
    """The message less the Received: field sharemaild put on top (None: none there)."""
    if not message.startswith(b"Received: "):
        return None
    i = message.find(b"\r\n")
    while message[i + 2:i + 3] in (b"\t", b" "):
        i = message.find(b"\r\n", i + 2)
    return message[i + 2:]


def started(peer):
    try:
        peer.start()
        return True
    except (RuntimeError, OSError) as e:
        S.skip(f"cannot run {type(peer).__name__} here: {e}")
        return False


@bounded(T)
def test_postfix_byte_exact_tls_dsn_and_unknown_user():
    pf = PostfixPeer(users=["bob@peer.test", "carol@peer.test"], tls=True)
    if not started(pf):
        return
    try:
        d = relay_daemon({"relay_route": f"peer.test {pf.hostport}"})
        try:
            S.eq(send(d, "sender@example.com", ["bob@peer.test", "carol@peer.test",
                                               "nobody@peer.test"], BODY,
                      mail_options=["BODY=8BITMIME", "ENVID=k2-env"],
                      rcpt_options=["NOTIFY=FAILURE"]), {}, "accepted")
            for rc in ("bob@peer.test", "carol@peer.test"):
                got = pf.wait_delivered(rc)
                S.eq(len(got), 1, f"{rc}: one copy")
                if got:
                    S.eq(without_received(got[0].message), BODY, f"{rc}: byte-exact")
                    S.eq(got[0].return_path, "<sender@example.com>", f"{rc}: envelope sender")
            log = pf.logtext(20000)
            S.check("TLS connection established from" in log, "over STARTTLS")
            reps = wait_notices(d, "sender@example.com")
            S.eq(len(reps), 1, "one bounce, for the unknown user")
            if reps:
                S.eq(reps[0].actions(), {"nobody@peer.test": "failed"}, "only nobody")
                r = reps[0].recipient("nobody@peer.test")
                S.check(r.status.startswith("5.1."), f"status {r.status}")
                S.check((r.diagnostic or "").startswith("smtp; 550"), f"{r.diagnostic}")
                S.eq(reps[0].envid, "k2-env", "ENVID in the notice")
            S.check(wait_gone(d), f"queue empty: {queue_lines(d)}")
            S.eq(len(pf.delivered()), 2, "nothing twice")
        finally:
            d.cleanup()
    finally:
        pf.stop()


@bounded(T)
def test_smtp_sink_byte_exact_many():
    sk = SmtpSink()
    if not started(sk):
        return
    try:
        d = relay_daemon({"relay_route": f"peer.test {sk.hostport}"})
        try:
            for i in range(5):
                send(d, "sender@example.com", [f"r{i}@peer.test"], BODY,
                     mail_options=["BODY=8BITMIME"])
            ms = sk.wait_messages(5)
            S.eq(len(ms), 5, "five transactions")
            S.check(all(without_received(m.message) == BODY for m in ms), "each byte-exact")
            S.eq(sorted(r for m in ms for r in m.rcpts), [f"r{i}@peer.test" for i in range(5)],
                 "each recipient once")
            S.check(all("BODY=8BITMIME" in m.mail_params for m in ms), "8BITMIME")
            S.check(wait_gone(d), "queue empty")
        finally:
            d.cleanup()
    finally:
        sk.stop()


sys.exit(S.run([test_postfix_byte_exact_tls_dsn_and_unknown_user, test_smtp_sink_byte_exact_many]))
