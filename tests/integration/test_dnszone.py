#!/usr/bin/env python3
"""dnszone self-test: a real nsd on loopback serving test zones, asked with the
module's own tiny DNS client (struct + socket, UDP and TCP): MX preference records,
A and AAAA, null MX, a domain without MX, NXDOMAIN, a SERVFAIL zone, REFUSED outside
the zones, the silent name server, and that nsd is gone after the `with`."""
import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from smtest import Suite  # noqa: E402
from peerutil import bounded  # noqa: E402
from dnszone import (NOERROR, NXDOMAIN, REFUSED, SERVFAIL, DnsZone, SilentDns,  # noqa: E402
                     ask, build_query, parse_reply)

S = Suite("dnszone")
T = 20

ZONES = {
    "example.test": [("@", "MX", "20 mx2"), ("@", "MX", "10 mx1.example.test."),
                     ("mx1", "A", "127.0.0.2"), ("mx2", "A", "127.0.0.3"),
                     ("mx2", "AAAA", "::1"), ("nomx", "A", "127.0.0.4"),
                     ("alias", "CNAME", "mx1"), ("txt", 300, "TXT", '"hello world"')],
    "null.test": [("@", "MX", "0 ."), ("@", "A", "127.0.0.5")],
    "other.test": [("@", "MX", "10 mx1.example.test.")],
}


def mx(answer):
    return sorted(rr.data for rr in answer.answers if rr.type == "MX")


@bounded(T)
def test_zone():
    with DnsZone(ZONES, servfail=["broken.test"]) as dns:
        S.eq(dns.nameserver, f"127.0.0.1:{dns.port}", "dns_nameserver value")
        a = dns.ask("example.test", "MX")
        S.eq((a.rcode, a.aa), (NOERROR, True), "MX answer, authoritative")
        S.eq(mx(a), [(10, "mx1.example.test."), (20, "mx2.example.test.")], "MX preferences")
        S.eq([rr.ttl for rr in a.answers], [60, 60], "default TTL")
        S.eq([rr.data for rr in dns.ask("mx1.example.test", "A").answers], ["127.0.0.2"], "A")
        S.eq([rr.data for rr in dns.ask("mx2.example.test", "AAAA").answers], ["::1"], "AAAA")
        S.eq([rr.data for rr in dns.ask("MX1.Example.Test.", "A").answers], ["127.0.0.2"],
             "case-insensitive, absolute name")
        t = dns.ask("txt.example.test", "TXT").answers
        S.eq([(rr.ttl, rr.data) for rr in t], [(300, [b"hello world"])], "TXT with a TTL")
        c = dns.ask("alias.example.test", "A").answers
        S.eq([(rr.type, rr.data) for rr in c], [("CNAME", "mx1.example.test."),
                                               ("A", "127.0.0.2")], "CNAME chased in-zone")
        n = dns.ask("nomx.example.test", "MX")
        S.eq((n.rcode, n.answers), (NOERROR, []), "no MX: NOERROR, empty (then A)")
        S.eq([rr.type for rr in n.authority], ["SOA"], "NODATA carries the SOA")
        S.eq([rr.data for rr in dns.ask("nomx.example.test", "A").answers], ["127.0.0.4"],
             "the A of a domain without MX")
        S.eq(mx(dns.ask("null.test", "MX")), [(0, ".")], "null MX (RFC 7505)")
        x = dns.ask("missing.example.test", "MX")
        S.eq((x.rcode, x.answers), (NXDOMAIN, []), "NXDOMAIN under a served zone")
        S.eq(dns.ask("broken.test", "MX").rcode, SERVFAIL, "SERVFAIL zone")
        S.eq(dns.ask("mx.broken.test", "A").rcode, SERVFAIL, "SERVFAIL under it")
        S.eq(dns.ask("elsewhere.invalid", "A").rcode, REFUSED, "REFUSED outside the zones")
        tc = dns.ask("example.test", "MX", tcp=True)
        S.eq(mx(tc), mx(a), "the same over TCP")
        pid = dns.child.pid
    S.raises(ProcessLookupError, lambda: os.kill(pid, 0), "nsd still running after the with")


@bounded(T)
def test_servfail_only_and_ipv4_port():
    with DnsZone({}, servfail=["down.test"]) as dns:
        S.eq(dns.ask("down.test", "SOA").rcode, SERVFAIL, "only a SERVFAIL zone")


@bounded(T)
def test_bad_input():
    for bad in ([("@", "MX", "10 a\nevil A 1.2.3.4")], [("x", "A")]):
        S.raises(ValueError, lambda: DnsZone({"t.test": bad}).start(), f"accepted {bad!r}")
    try:
        DnsZone({"t.test": [("@", "MX", "not a number")]}, start_timeout=5).start()
        S.check(False, "nsd loaded a broken zone")
    except RuntimeError as e:
        S.check("zone t.test did not load" in str(e), str(e))


@bounded(T)
def test_silent_and_client():
    with SilentDns() as s:
        S.eq(s.nameserver, f"127.0.0.1:{s.port}", "nameserver")
        for tcp in (False, True):
            S.raises((socket.timeout, TimeoutError), lambda: ask(s.port, "example.test", "MX", tcp=tcp, timeout=0.3), "a silent server answered")
    q = build_query("a.b", "MX", qid=7)
    S.eq(q, b"\x00\x07\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x01a\x01b\x00\x00\x0f\x00\x01",
         "query octets")
    reply = q[:2] + b"\x80\x00" + q[4:6] + b"\x00\x01" + q[8:]     # one answer RR
    loop = reply + b"\xc0" + bytes([len(reply)])                      # its name: itself
    cut = reply + b"\xc0\x0c\x00\x0f"                                  # RR cut short
    for bad, why in ((b"", "short"), (q, "not a reply"), (loop, "compression"),
                     (cut, "malformed")):
        try:
            parse_reply(bad)
            S.check(False, f"parsed {bad!r}")
        except ValueError as e:
            S.check(why in str(e), f"{why}: {e}")
    ok = reply + b"\xc0\x0c\x00\x0f\x00\x01\x00\x00\x00\x3c\x00\x04\x00\x05\xc0\x0c"
    S.eq(parse_reply(ok, qid=7).answers[0].data, (5, "a.b."), "hand-made MX reply")


sys.exit(S.run([test_zone, test_servfail_only_and_ipv4_port, test_bad_input,
                test_silent_and_client]))
