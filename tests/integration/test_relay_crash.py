#!/usr/bin/env python3
"""kill -9 of sharemaild at named points of a relay delivery (SHAREMAIL_TEST_CRASH_AT,
HACKING.md): the message is delivered after the restart, never lost, at most once more.

- relay-before-dot: the body is on the wire, the final dot not: the peer has an
  unfinished transaction (nothing accepted); after the restart it gets the message once.
- relay-after-250: the peer said 250, our state was not written yet: after the restart
  the message goes again (the one duplicate RFC 5321 6.1 prefers to a loss), then never.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from smtest import Suite  # noqa: E402
from fakepeer import FakePeer  # noqa: E402
from peerutil import bounded  # noqa: E402
from relayutil import (WAIT, queue_lines, relay_daemon, send, until,  # noqa: E402
                       wait_gone)

S = Suite("relay_crash")
T = 90
BODY = b"Subject: crash\r\n\r\n" + b"body line\r\n" * 2000


def crashed(d):
    return until(lambda: d.proc.poll() is not None) and d.proc.returncode == -9


@bounded(T)
def test_kill_before_the_dot():
    with FakePeer() as peer:
        d = relay_daemon({"relay_route": f"peer.test {peer.hostport}"},
                         extra_env={"SHAREMAIL_TEST_CRASH_AT": "relay-before-dot"})
        try:
            S.eq(send(d, "sender@example.com", ["bob@peer.test"], BODY), {}, "accepted")
            S.check(crashed(d), "killed before the dot")
            S.check(peer.wait_closed(1, timeout=WAIT), "the connection ended")
            m = peer.messages()
            S.check(len(m) == 1 and not m[0].complete and not m[0].accepted,
                    f"the peer got the body but no dot: {m}")
            S.check(m and len(m[0].raw) > len(BODY) // 2, f"most of the body went out first: {len(m[0].raw) if m else 0} of {len(BODY)}")
            d.start()
            S.check(peer.wait(lambda p: len(p.accepted()) >= 1, WAIT), "delivered after restart")
            S.check(wait_gone(d), f"and done: {queue_lines(d)}")
            S.eq(len(peer.accepted()), 1, "exactly once")
            S.check(peer.accepted() and peer.accepted()[0].content.endswith(BODY), "whole")
        finally:
            d.cleanup()


@bounded(T)
def test_kill_after_the_250():
    with FakePeer() as peer:
        d = relay_daemon({"relay_route": f"peer.test {peer.hostport}"},
                         extra_env={"SHAREMAIL_TEST_CRASH_AT": "relay-after-250"})
        try:
            S.eq(send(d, "sender@example.com", ["bob@peer.test", "carol@peer.test"], BODY), {},
                 "accepted")
            S.check(crashed(d), "killed after the peer's 250")
            S.eq(len(peer.accepted()), 1, "the peer has it")
            d.start()
            S.check(wait_gone(d), f"done after the restart: {queue_lines(d)}")
            n = len(peer.accepted())
            S.check(n in (1, 2), f"never lost, at most one duplicate: {n}")
            # And never a third time: another restart finds nothing to send.
            d.stop()
            d.start()
            S.check(until(lambda: "sharemaild ready" in d.logtext()), "restarted")
            S.eq(queue_lines(d), [], "nothing queued")
            S.eq(len(peer.accepted()), n, "no further copy")
        finally:
            d.cleanup()


sys.exit(S.run([test_kill_before_the_dot, test_kill_after_the_250]))
