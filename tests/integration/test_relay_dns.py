#!/usr/bin/env python3
"""Relay with next hops from DNS: a real nsd on loopback (dnszone.py) is sharemaild's
dns_nameserver, fake peers listen on 127.0.0.2-5. MX preference (the best MX gets the
mail; when it refuses, the next), no MX (the domain's own A record), a null MX (RFC
7505: bounced 5.1.10), a domain that does not exist (bounced 5.1.2), SERVFAIL (retried,
never bounced), and an MX that names ourselves (5.4.6, no retry storm).

MX hosts are on port 25; where a test cannot listen there, a relay_route host written
as HOST:PORT (MX lookup of HOST, as in Postfix) gives the same lookups on another port.
"""
import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from smtest import Suite  # noqa: E402
from dnszone import DnsZone  # noqa: E402
from fakepeer import FakePeer  # noqa: E402
from peerutil import bounded  # noqa: E402
from relayutil import (WAIT, notices, queue_lines, queued_ids, rcpt_state,  # noqa: E402
                       relay_daemon, send, until, wait_gone, wait_notices)

S = Suite("relay_dns")
T = 90
BODY = b"Subject: dns\r\n\r\nvia DNS\r\n"

ZONES = {
    "pref.test": [("@", "MX", "20 mx2"), ("@", "MX", "10 mx1"),
                  ("mx1", "A", "127.0.0.2"), ("mx2", "A", "127.0.0.3")],
    "amx.test": [("@", "A", "127.0.0.4")],
    "null.test": [("@", "MX", "0 ."), ("@", "A", "127.0.0.4")],
    "self.test": [("@", "MX", "10 mx.test.")],
    "real.test": [("@", "MX", "10 mx"), ("mx", "A", "127.0.0.5")],
}


def common_port(hosts):
    """A TCP port free on every host."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind((hosts[0], 0))
            port = s.getsockname()[1]
        ok = True
        for h in hosts[1:]:
            with socket.socket() as s:
                try:
                    s.bind((h, port))
                except OSError:
                    ok = False
        if ok:
            return port
    raise OSError("no common free port")


def dns_daemon(dns, conf=None):
    keys = {"dns_nameserver": dns.nameserver, "relay_smarthost": None}
    keys.update(conf or {})
    return relay_daemon(keys)


@bounded(T)
def test_mx_preference_and_fallback():
    port = common_port(["127.0.0.2", "127.0.0.3", "127.0.0.4"])
    with DnsZone(ZONES) as dns, FakePeer(host="127.0.0.2", port=port) as mx1, \
            FakePeer(host="127.0.0.3", port=port) as mx2, \
            FakePeer(host="127.0.0.4", port=port) as amx:
        d = dns_daemon(dns, {"relay_route": [f"pref.test pref.test:{port}",
                                             f"amx.test amx.test:{port}"]})
        try:
            send(d, "sender@example.com", ["a@pref.test"], BODY)
            S.check(mx1.wait(lambda p: len(p.deliveries()) == 1, WAIT), "the best MX has it")
            S.eq(mx2.count, 0, "the second MX was not needed")
            # No MX: the domain itself (its A record) is the mail exchanger.
            send(d, "sender@example.com", ["c@amx.test"], BODY)
            S.check(amx.wait(lambda p: len(p.deliveries()) == 1, WAIT), "no MX -> A")
            S.check(wait_gone(d), "queue empty")
        finally:
            d.cleanup()
    # The best MX refuses connections: the next one gets it.
    with DnsZone(ZONES) as dns, FakePeer(host="127.0.0.3", port=port) as mx2:
        d = dns_daemon(dns, {"relay_route": f"pref.test pref.test:{port}"})
        try:
            send(d, "sender@example.com", ["b@pref.test"], BODY)
            S.check(mx2.wait(lambda p: len(p.deliveries()) == 1, WAIT), "the second MX has it")
            S.check(wait_gone(d), "queue empty")
            # The attempt's log line follows the removal that wait_gone() sees: wait for it.
            ln = until(lambda: [x for x in d.logtext().splitlines()
                                if " to=<b@pref.test>, " in x]) or []
            S.check(ln and f"relay=mx2.pref.test[127.0.0.3]:{port}," in ln[-1], f"logged: {ln}")
        finally:
            d.cleanup()


@bounded(T)
def test_mx_on_port_25():
    """The plain path: the recipient domain's MX, port 25 (when a test may listen there)."""
    with DnsZone(ZONES) as dns:
        try:
            peer = FakePeer(host="127.0.0.5", port=25)
        except OSError as e:
            S.skip(f"cannot listen on 127.0.0.5:25 here: {e}")
            return
        with peer:
            d = dns_daemon(dns)
            try:
                send(d, "sender@example.com", ["r@real.test"], BODY)
                S.check(peer.wait(lambda p: len(p.deliveries()) == 1, WAIT), "via the MX")
                S.check(wait_gone(d), "queue empty")
            finally:
                d.cleanup()


@bounded(T)
def test_null_mx_nxdomain_and_self_bounced():
    with DnsZone(ZONES) as dns:
        d = dns_daemon(dns)
        try:
            send(d, "sender@example.com", ["n@null.test"], BODY)
            send(d, "sender@example.com", ["x@nowhere.pref.test"], BODY)
            send(d, "sender@example.com", ["s@self.test"], BODY)
            reps = wait_notices(d, "sender@example.com", 3)
            got = {}
            for r in reps:
                for b in r.recipients:
                    got[b.address.lower()] = (b.action, b.status)
            S.eq(got, {"n@null.test": ("failed", "5.1.10"),
                       "x@nowhere.pref.test": ("failed", "5.1.2"),
                       "s@self.test": ("failed", "5.4.6")},
                 "null MX, no such domain, a loop to ourselves: bounced")
            S.check(wait_gone(d), f"nothing retried: {queue_lines(d)}")
        finally:
            d.cleanup()


@bounded(T)
def test_servfail_retried():
    with DnsZone(ZONES, servfail=["broken.test"]) as dns:
        d = dns_daemon(dns)
        try:
            send(d, "sender@example.com", ["b@broken.test"], BODY)
            ids = until(lambda: queued_ids(d, "sender@example.com"))
            st = until(lambda: ids and (rcpt_state(d, ids[0], "b@broken.test") or {})
                       .get("attempts") in ("2", "3") and rcpt_state(d, ids[0], "b@broken.test"))
            S.check(st and st["state"] == "deferred", f"deferred, retried: {st}")
            S.check(st and st.get("status", "").startswith("451 4.4.3"), f"4.4.3: {st}")
            S.eq(notices(d, "sender@example.com"), [], "never bounced for SERVFAIL")
        finally:
            d.cleanup()


sys.exit(S.run([test_mx_preference_and_fallback, test_mx_on_port_25,
                test_null_mx_nxdomain_and_self_bounced, test_servfail_retried]))
