#!/usr/bin/env python3
"""Gateway verification and verified forwarding (issue 8, items 10 and 11), real daemons.

A gateway sharemaild G relays for domains it protects (`gateway_domain = DOMAIN
host=H:P minger=H:P [secret_file=F] [unreachable=defer|accept]`) and verifies every
recipient with Minger on the protected server before RCPT is accepted:
- against a sharemaild P playing the protected server (corp.test): its user 250 and
  the message delivered into P's Maildir; an unknown user 550 5.1.1 (no backscatter);
  a disabled one 550 5.2.1; P stopped: an address verified before is still accepted
  (the cache), a new one 451 with unreachable=defer;
- against mingerpeer.py (an independent responder): 5/3/4 become 250/550/550, every
  verdict came from a datagram it received (with a digest when a secret is set, none
  without: MDaemon's anonymous form); a silent server: unreachable=defer answers 451,
  unreachable=accept answers 250;
- verification applies to trusted clients too (it is about the recipient);
- forward_domain: *@DOMAIN forwarded only when Minger there says the address exists.
"""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import relayutil  # noqa: E402
import sharingutil  # noqa: E402
from mingerpeer import Responder  # noqa: E402
from peerutil import bounded  # noqa: E402
from sharingutil import SECRET, Office  # noqa: E402
from smtest import Suite  # noqa: E402

S = Suite("gateway")
OUTSIDER = "someone@client.test"
TRUSTED_IP = "127.0.0.101"
DEAD = "[127.0.0.1]:1"


def codes(replies):
    return [c for c, _ in replies]


def enhanced(text):
    m = re.match(r"([245]\.\d{1,3}\.\d{1,3})", text)
    return m.group(1) if m else None


def gateway(lines, forward=(), trusted=False):
    """A started gateway sharemaild (local domain gw.test) with these gateway_domain
    (and forward_domain) lines; each "{secret}" in a line becomes its secret file."""
    g = Office("gw", ["postmaster@gw.test"], domains="gw.test",
               conf={"smtp_trusted_networks": f"{TRUSTED_IP}/32" if trusted else None})
    f = g.secret_file("gw.secret", SECRET)
    g.configure({"gateway_domain": [ln.replace("{secret}", f) for ln in lines],
                 "forward_domain": [ln.replace("{secret}", f) for ln in forward] or None})
    try:
        g.start()
    except Exception:
        g.d.cleanup()
        raise
    return g


@bounded(150)
def test_against_a_protected_sharemaild():
    p = Office("p", ["ann@corp.test", "ann2@corp.test"], domains="corp.test")
    g = None
    try:
        p.cli("account", "add", "off@corp.test", "--no-password", "--disabled")
        p.start()
        g = gateway([f"corp.test host=[127.0.0.1]:{p.smtp_port} minger={p.minger} "
                     "secret_file={secret}"])
        got = sharingutil.rcpt_codes(g, OUTSIDER, ["ann@corp.test", "nobody@corp.test",
                                                   "off@corp.test"])
        S.eq(codes(got), [250, 550, 550], f"ann 250, nobody 550, disabled 550: {got}")
        if len(got) == 3:
            S.eq(enhanced(got[1][1]), "5.1.1", "unknown on the protected server: 5.1.1")
            S.eq(enhanced(got[2][1]), "5.2.1", "disabled there: 5.2.1")
        refused = sharingutil.send(g, OUTSIDER, ["ann@corp.test"],
                                   sharingutil.message("through the gateway", "ann@corp.test"))
        S.eq(refused, {}, "the message for ann is accepted")
        mail = relayutil.until(lambda: relayutil.mailbox(p.d, "ann@corp.test"))
        S.eq(len(mail or []), 1, "delivered into ann's Maildir on the protected server")
        S.check(mail and b"Subject: through the gateway" in mail[0], "the message relayed")
        S.check(relayutil.until(lambda: relayutil.queue_lines(g.d) == []), "G's queue empties")
        p.stop()
        got = sharingutil.rcpt_codes(g, OUTSIDER, ["ann@corp.test", "ann2@corp.test"])
        S.eq(codes(got), [250, 451],
             f"P down: ann (verified before, cached) 250, ann2 (never asked) 451: {got}")
    finally:
        if g:
            g.d.cleanup()
        p.d.cleanup()


@bounded(120)
def test_against_mingerpeer_with_and_without_secret():
    answers = {"x@other.test": 5, "gone@other.test": 4, "x@anon.test": 5}
    with Responder(answers, secrets=[SECRET]) as r, Responder(answers, anonymous=True) as anon:
        g = gateway([f"other.test host={DEAD} minger={r.hostport} secret_file={{secret}}",
                     f"anon.test host={DEAD} minger={anon.hostport}"])
        try:
            got = sharingutil.rcpt_codes(g, OUTSIDER, ["x@other.test", "y@other.test",
                                                       "gone@other.test"])
            S.eq(codes(got), [250, 550, 550], f"5 -> 250, 3 -> 550, 4 -> 550: {got}")
            asked = r.mailboxes()
            S.eq(sorted(set(asked)), ["gone@other.test", "x@other.test", "y@other.test"],
                 "each verdict came from the responder")
            S.check(r.datagrams() and all(b" d=" in d for d in r.datagrams()),
                    "queries carry the -06 digest")
            got = sharingutil.rcpt_codes(g, OUTSIDER, ["x@anon.test", "y@anon.test"])
            S.eq(codes(got), [250, 550], f"anonymous verification: {got}")
            S.check(anon.datagrams() and all(b" d=" not in d for d in anon.datagrams()),
                    f"no digest without a secret: {anon.datagrams()}")
            n = r.count
            S.eq(codes(sharingutil.rcpt_codes(g, OUTSIDER, ["x@other.test"])), [250],
                 "x again")
            S.eq(r.count, n, "the second time comes from the cache (no datagram)")
        finally:
            g.d.cleanup()


@bounded(120)
def test_unreachable_defer_and_accept():
    with Responder({}, secrets=[SECRET], silent=True) as r:
        g = gateway([f"defer.test host={DEAD} minger={r.hostport} secret_file={{secret}}",
                     f"accept.test host={DEAD} minger={r.hostport} secret_file={{secret}} "
                     "unreachable=accept",
                     f"default.test host={DEAD} minger={r.hostport} secret_file={{secret}} "
                     "unreachable=defer"])
        try:
            got = sharingutil.rcpt_codes(g, OUTSIDER, ["u@defer.test", "u@accept.test",
                                                       "u@default.test"])
            S.eq(codes(got), [451, 250, 451],
                 f"silent server: defer 451 (the default too), accept 250: {got}")
            S.check({"u@defer.test", "u@accept.test"} <= set(r.mailboxes()),
                    "the silent server was asked")
        finally:
            g.d.cleanup()


@bounded(120)
def test_trusted_clients_are_verified_too():
    with Responder({"x@other.test": 5}, secrets=[SECRET]) as r:
        g = gateway([f"other.test host={DEAD} minger={r.hostport} secret_file={{secret}}"],
                    trusted=True)
        try:
            got = sharingutil.rcpt_codes(g, OUTSIDER, ["x@other.test", "y@other.test",
                                                       "z@elsewhere.test"], source=TRUSTED_IP)
            S.eq(codes(got), [250, 550, 250],
                 f"trusted: verified domain still 550 for y, other domains relayed: {got}")
            got = sharingutil.rcpt_codes(g, OUTSIDER, ["z@elsewhere.test"])
            S.check(codes(got) and codes(got)[0] // 100 == 5, f"untrusted: no relay: {got}")
        finally:
            g.d.cleanup()


@bounded(120)
def test_forward_domain_verified():
    with Responder({"x@lan.test": 5, "off@lan.test": 4}, secrets=[SECRET]) as r:
        g = gateway([], forward=[f"lan.test host={DEAD} minger={r.hostport} "
                                 "secret_file={secret}"])
        try:
            got = sharingutil.rcpt_codes(g, OUTSIDER, ["x@lan.test", "y@lan.test",
                                                       "off@lan.test"])
            S.eq(codes(got), [250, 550, 550], f"forward_domain: 5/3/4: {got}")
            S.eq(sorted(set(r.mailboxes())), ["off@lan.test", "x@lan.test", "y@lan.test"],
                 "each verdict came from Minger on the LAN server")
            refused = sharingutil.send(g, OUTSIDER, ["x@lan.test"],
                                       sharingutil.message("forwarded", "x@lan.test"))
            S.eq(refused, {}, "x@lan.test accepted for forwarding")
            S.check(relayutil.until(lambda: len(relayutil.queue_lines(g.d)) == 1, 10),
                    "queued for the LAN host (which refuses connections here)")
        finally:
            g.d.cleanup()


if __name__ == "__main__":
    sys.exit(S.run([test_against_a_protected_sharemaild,
                    test_against_mingerpeer_with_and_without_secret,
                    test_unreachable_defer_and_accept,
                    test_trusted_clients_are_verified_too,
                    test_forward_domain_verified]))
