#!/usr/bin/env python3
"""Relay against scripted fake peers (fakepeer.py): the real sharemaild delivers to a
relay_route, and every fault of "sharemail as a client" (hostile-inputs.md) is played:
refused connections, a 421 greeting, mixed 250/451/550 per recipient, a drop after the
final dot, silence, plaintext injected after STARTTLS's 220, a 7-bit peer for an 8-bit
message. Checked each time: who is retried, who is bounced (the notice parsed with
Python's email package, dsncheck), that nothing the peer accepted is sent twice, and
the back-off in the queue state. DSN (NOTIFY, <>, delay notices), lists and aliases
with foreign members, and mail that would loop back to ourselves."""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from smtest import Suite  # noqa: E402
from fakepeer import (ENDLESS_MAX, FakePeer, drop, endless_line, refused_port,  # noqa: E402
                      serve, silent, starttls_hang, starttls_inject)
from peerutil import bounded  # noqa: E402
from relayutil import (WAIT, mailbox, notices, queue_lines, queued_ids, rcpt_code,  # noqa: E402
                       rcpt_state, relay_daemon, send, until, wait_gone, wait_notices)
from smtest import free_tcp_port  # noqa: E402

S = Suite("relay")
T = 90  # hard seconds per test

BODY = (b"From: sender@example.com\r\nTo: bob@peer.test\r\nSubject: relay\r\n\r\n"
        b".a line starting with a dot\r\n..two dots\r\n.\r\n"
        + b"L" * 998 + b"\r\n"
        b"8-bit: caf\xc3\xa9 \xff\r\n"
        b"last\r\n")


def route(peer, domain="peer.test"):
    return {"relay_route": f"{domain} {peer.hostport}"}


def relayed_body(content):
    """What the peer got, less the Received: field sharemaild put on top."""
    if not content.startswith(b"Received: "):
        return None
    i = content.find(b"\r\n", 0)
    while content[i + 2:i + 3] in (b"\t", b" "):  # its folded lines
        i = content.find(b"\r\n", i + 2)
    return content[i + 2:]


@bounded(T)
def test_relayed_byte_exact_and_logged():
    with FakePeer() as peer:
        d = relay_daemon(route(peer))
        try:
            S.eq(send(d, "sender@example.com", ["bob@peer.test", "Carol@Peer.Test"], BODY,
                      mail_options=["BODY=8BITMIME"]), {}, "accepted")
            S.check(peer.wait_messages(1, accepted=True, timeout=WAIT), "the peer has it")
            S.check(wait_gone(d), f"delivered, the queue empty: {queue_lines(d)}")
            ms = peer.accepted()
            S.eq(len(ms), 1, "one transaction for both recipients (one destination)")
            if ms:
                m = ms[0]
                S.eq(m.mail_from, "sender@example.com", "MAIL FROM")
                S.check("BODY=8BITMIME" in m.mail_params, f"8BITMIME kept: {m.mail_params}")
                S.check(re.search(r"SIZE=\d+", m.mail_params), "SIZE given")
                S.eq(m.rcpts, ["bob@peer.test", "Carol@Peer.Test"], "recipients as received")
                S.eq(relayed_body(m.content), BODY, "byte-exact: dot lines, 998 octets, 8-bit")
                S.eq(m.bare_line_ends, 0, "only CRLF on the wire")
            S.eq(peer.duplicates(), {}, "nothing twice")
            hp = f"127.0.0.1[127.0.0.1]:{peer.port}"
            for rc in ("bob@peer.test", "Carol@Peer.Test"):
                ln = [x for x in d.logtext().splitlines() if f" to=<{rc}>, " in x]
                S.check(ln and re.search(rf"relay={re.escape(hp)}, delay=[\d.]+, dsn=2\.0\.0, "
                                         r"status=sent \(250 2\.0\.0 ", ln[-1]),
                        f"logged as sent via the peer: {ln}")
            S.eq(peer.failures, [], "no fake-peer failures")
            S.eq(d.stop(), 0, "clean stop")
        finally:
            d.cleanup()


@bounded(T)
def test_mixed_replies_retried_and_bounced():
    seen = set()

    def temp_once(conn, addr):  # 451 the first time only (the connection may be reused)
        if addr.lower() in seen:
            return "250 2.1.5 ok now"
        seen.add(addr.lower())
        return "451 4.3.0 try later"
    spec = {"temp@peer.test": temp_once, "gone@peer.test": "550 5.1.1 no such user"}
    with FakePeer(script=serve(rcpt=spec)) as peer:
        d = relay_daemon(route(peer))
        try:
            send(d, "sender@example.com", ["ok@peer.test", "temp@peer.test", "gone@peer.test"],
                 BODY)
            # ok at once, temp at the retry, gone never: bounced in one notice.
            S.check(peer.wait(lambda p: len(p.deliveries()) >= 2, WAIT), "both delivered")
            S.check(wait_gone(d), f"the queue empties: {queue_lines(d)}")
            got = sorted(r for r, _ in peer.deliveries())
            S.eq(got, ["ok@peer.test", "temp@peer.test"], "ok and temp delivered, once each")
            S.eq(peer.duplicates(), {}, "nothing accepted is sent twice")
            ms = peer.messages()
            S.eq([[a for a, _ in m.rcpt_replies] for m in ms],
                 [["ok@peer.test", "temp@peer.test", "gone@peer.test"], ["temp@peer.test"]],
                 "the retry names only the deferred recipient")
            reps = wait_notices(d, "sender@example.com")
            S.eq(len(reps), 1, "one bounce")
            if reps:
                r = reps[0]
                S.eq(r.actions(), {"gone@peer.test": "failed"}, "lists the failed one only")
                g = r.recipient("gone@peer.test")
                S.eq(g.status, "5.1.1", "its status")
                S.check("550 5.1.1 no such user" in (g.diagnostic or ""), f"{g.diagnostic}")
                S.check(g.remote_mta and "127.0.0.1" in g.remote_mta, f"{g.remote_mta}")
                S.eq(r.returned_type, "message/rfc822", "the message returned")
                S.check(r.reporting_mta == "mx.test", f"Reporting-MTA {r.reporting_mta}")
        finally:
            d.cleanup()


@bounded(T)
def test_refused_then_421_backs_off():
    port = refused_port()
    d = relay_daemon({"relay_route": f"peer.test 127.0.0.1:{port}"})
    try:
        send(d, "sender@example.com", ["bob@peer.test"], BODY)
        ids = until(lambda: queued_ids(d, "sender@example.com"))
        qid = ids[0] if ids else None
        first = until(lambda: (rcpt_state(d, qid, "bob@peer.test") or {}).get("attempts") ==
                      "1" and rcpt_state(d, qid, "bob@peer.test"))
        S.check(first and first["state"] == "deferred", f"deferred: {first}")
        S.check(first and "refused" in first.get("status", ""), f"says why: {first}")
        S.eq(first and first.get("route"), "peer.test", "the route recorded")
        # Retried with a growing wait: each next try later than the last.
        later = until(lambda: (rcpt_state(d, qid, "bob@peer.test") or {}).get("attempts") in
                      ("3", "4") and rcpt_state(d, qid, "bob@peer.test"))
        S.check(later and later["next"] > first["next"], f"back-off: {first} then {later}")
        S.check(notices(d, "sender@example.com") == [], "no bounce for a temporary failure")
    finally:
        d.cleanup()
    # A peer that greets with 421: deferred and retried, never bounced.
    with FakePeer(scripts=[serve(greeting=421), serve(greeting=421)], then=serve()) as peer:
        d = relay_daemon(route(peer))
        try:
            send(d, "sender@example.com", ["bob@peer.test"], BODY)
            S.check(peer.wait(lambda p: len(p.deliveries()) == 1, WAIT), "delivered at last")
            S.check(peer.count >= 3, f"two refusals, then accepted: {peer.count}")
            S.check(wait_gone(d), "queue empty")
            S.eq(peer.duplicates(), {}, "once")
            S.check(notices(d, "sender@example.com") == [], "no bounce")
        finally:
            d.cleanup()


@bounded(T)
def test_drop_after_dot_and_silence_retried():
    """The peer drops the connection after the final dot (it may have the message: the
    client cannot know) or goes silent: deferred, retried, delivered; never lost."""
    with FakePeer(scripts=[serve(dot=drop()), silent()], then=serve()) as peer:
        d = relay_daemon(route(peer))
        try:
            send(d, "sender@example.com", ["bob@peer.test"], BODY)
            S.check(peer.wait(lambda p: len(p.deliveries()) == 1, WAIT), "delivered")
            S.check(wait_gone(d), "queue empty")
            cs = peer.connections
            S.check(cs[0].messages and cs[0].messages[0].complete and
                    cs[0].messages[0].dot_reply is None, "first: whole message, no reply")
            S.check(len(cs) >= 3 and cs[1].messages == [] and cs[1].closed_by_client,
                    f"second: silence, given up by us: {cs[1:2]}")
            S.eq(len(peer.accepted()), 1, "accepted once")
            ln = [x for x in d.logtext().splitlines() if " to=<bob@peer.test>, " in x]
            S.check(len(ln) >= 3 and "status=deferred" in ln[0] and "status=deferred" in ln[1]
                    and "status=sent" in ln[-1], f"deferred twice, then sent: {ln}")
        finally:
            d.cleanup()


@bounded(T)
def test_starttls_injection_discarded():
    caps = ("PIPELINING", "8BITMIME", "STARTTLS", "ENHANCEDSTATUSCODES")
    with FakePeer(script=serve(caps=caps, starttls=starttls_inject())) as peer:
        d = relay_daemon(route(peer))
        try:
            send(d, "sender@example.com", ["bob@peer.test"], BODY)
            S.check(peer.wait(lambda p: len(p.deliveries()) == 1, WAIT), "delivered")
            ms = peer.accepted()
            S.check(ms and ms[0].tls, "over TLS")
            c = peer.connections[0]
            S.check(c.tls.established, f"handshake done: {c.tls}")
            S.eq(peer.duplicates(), {}, "once")
            S.check(wait_gone(d), "queue empty")
        finally:
            d.cleanup()


def vm_rss(d):
    """The daemon's resident set size in octets (VmRSS of /proc/PID/status)."""
    with open(f"/proc/{d.proc.pid}/status") as f:
        for ln in f:
            if ln.startswith("VmRSS:"):
                return int(ln.split()[1]) * 1024
    return None


def attempt_state(d, qid, addr, n):
    """Waits (bounded) until addr's `queue show` line counts n attempts; returns it."""
    return until(lambda: (rcpt_state(d, qid, addr) or {}).get("attempts") == str(n) and
                 rcpt_state(d, qid, addr))


@bounded(T)
def test_endless_line_deferred_and_retried():
    """A greeting, then a reply to RCPT, that never ends (no line end, ever): the
    daemon gives up (the peer's write fails before its own 64 MiB cap), keeps the
    message with a 4xx reason, retries it when flushed and delivers it once; its memory
    stays bounded and it keeps running. Retries wait an hour unless flushed, so each try
    here is one the test asked for."""
    with FakePeer(scripts=[endless_line(b"220-"), serve(rcpt=endless_line(b"250-"))],
                  then=serve()) as peer:
        d = relay_daemon(dict(route(peer), queue_retry_initial="1h", queue_retry_max="1h"))
        try:
            rss0 = vm_rss(d)
            send(d, "sender@example.com", ["bob@peer.test"], BODY)
            ids = until(lambda: queued_ids(d, "sender@example.com"))
            qid = ids[0] if ids else None
            for n, what in ((1, "greeting"), (2, "reply to RCPT")):
                st = attempt_state(d, qid, "bob@peer.test", n)
                S.check(st and st["state"] == "deferred" and st.get("status", "")[:1] == "4",
                        f"endless {what}: deferred with a 4xx: {st}")
                S.check(peer.wait_closed(n, WAIT), f"endless {what}: the connection ended")
                c = peer.connections[n - 1]
                S.check(c.closed_by_client and c.endless_sent < ENDLESS_MAX,
                        f"endless {what}: given up by the daemon after {c.endless_sent} "
                        f"octets: {c}")
                S.eq(c.messages if n == 1 else [m for m in c.messages if m.accepted], [],
                     f"endless {what}: no message")
                S.eq(peer.count, n, f"endless {what}: not retried before the flush")
                S.check(d.proc.poll() is None, f"endless {what}: the daemon runs")
                d.cli("queue", "flush")
            S.check(peer.wait(lambda p: len(p.deliveries()) == 1, WAIT), "delivered")
            S.check(wait_gone(d), f"queue empty: {queue_lines(d)}")
            S.eq(peer.count, 3, "three connections: two endless lines, then served")
            S.eq(len(peer.accepted()), 1, "accepted once")
            S.eq(peer.duplicates(), {}, "nothing twice")
            if peer.accepted():
                S.eq(relayed_body(peer.accepted()[0].content), BODY, "byte-exact")
            # The "sent" line is written once the peer's reply is handled, which can be
            # a moment after the peer counted the delivery: wait for it (bounded).
            def bob_lines():
                return [x for x in d.logtext().splitlines() if " to=<bob@peer.test>, " in x]
            until(lambda: len(bob_lines()) >= 3)
            ln = bob_lines()
            S.check(len(ln) == 3 and "status=deferred" in ln[0] and "status=deferred" in ln[1]
                    and "status=sent" in ln[2], f"deferred twice, then sent: {ln}")
            rss1 = vm_rss(d)
            S.check(rss0 and rss1 and rss1 - rss0 < 16 << 20,
                    f"memory bounded: VmRSS {rss0} then {rss1}")
            S.eq(peer.failures, [], "no fake-peer failures")
            S.eq(d.stop(), 0, "clean stop")
        finally:
            d.cleanup()


def smtp_in_clear(raw):
    """SMTP commands among octets the client sent after STARTTLS's 220."""
    return re.findall(rb"(?im)^(?:EHLO|HELO|MAIL FROM|RCPT TO|DATA|QUIT|RSET)\b", raw)


@bounded(T)
def test_starttls_hang_may_plaintext_retry():
    """relay_tls = may, STARTTLS answered 220 and then no handshake: the handshake's
    deadline (relay_command_timeout) fires, and the same attempt goes to the same address
    once more in plaintext (RFC 7435), without STARTTLS: delivered once, not over TLS,
    nothing deferred, and on the hung connection nothing but the TLS ClientHello."""
    caps = ("PIPELINING", "8BITMIME", "STARTTLS", "ENHANCEDSTATUSCODES")
    with FakePeer(scripts=[serve(caps=caps, starttls=starttls_hang())],
                  then=serve(caps=caps)) as peer:
        d = relay_daemon(dict(route(peer), relay_tls="may", relay_command_timeout="1",
                              queue_retry_initial="1h", queue_retry_max="1h"))
        try:
            send(d, "sender@example.com", ["bob@peer.test"], BODY)
            S.check(peer.wait(lambda p: len(p.deliveries()) == 1, WAIT), "delivered")
            S.check(wait_gone(d), f"queue empty: {queue_lines(d)}")
            S.check(peer.wait_closed(1, WAIT), "the hung connection ended")
            cs = peer.connections
            S.eq(len(cs), 2, f"two connections: the hung one, the plaintext retry: {cs}")
            c0 = cs[0]
            S.check(c0.tls.started and not c0.tls.established, f"first: 220, no TLS: {c0.tls}")
            S.eq(c0.commands[-1:], ["STARTTLS"], "first: nothing after STARTTLS in clear")
            S.eq(c0.messages, [], "first: no message")
            S.check(c0.closed_by_client, f"first: given up by the daemon: {c0}")
            S.eq(smtp_in_clear(c0.after_silence), [],
                 f"no SMTP before the handshake: {c0.after_silence[:80]!r}")
            S.check(c0.after_silence == b"" or c0.after_silence[:1] == b"\x16",
                    f"only a TLS handshake record after the 220: {c0.after_silence[:16]!r}")
            if len(cs) > 1:
                c1 = cs[1]
                S.check("STARTTLS" not in [x.upper() for x in c1.commands],
                        f"the retry does not try STARTTLS: {c1.commands}")
                S.check(not c1.tls.started, "the retry in plaintext")
            ms = peer.accepted()
            S.check(len(ms) == 1 and not ms[0].tls, "accepted once, not over TLS")
            S.eq(peer.duplicates(), {}, "nothing twice")
            ln = [x for x in d.logtext().splitlines() if " to=<bob@peer.test>, " in x]
            S.check(len(ln) == 1 and "status=sent" in ln[0],
                    f"one attempt, sent (the plaintext retry is part of it): {ln}")
            S.eq(peer.failures, [], "no fake-peer failures")
            S.eq(d.stop(), 0, "clean stop")
        finally:
            d.cleanup()


@bounded(T)
def test_starttls_hang_require_deferred():
    """relay_tls = require and a STARTTLS that never completes: deferred with a 4xx,
    retried (each try hangs again), never sent in clear and never bounced."""
    caps = ("PIPELINING", "8BITMIME", "STARTTLS", "ENHANCEDSTATUSCODES")
    with FakePeer(script=serve(caps=caps, starttls=starttls_hang())) as peer:
        d = relay_daemon(dict(route(peer), relay_tls="require", relay_command_timeout="1"))
        try:
            send(d, "sender@example.com", ["bob@peer.test"], BODY)
            ids = until(lambda: queued_ids(d, "sender@example.com"))
            qid = ids[0] if ids else None
            st = attempt_state(d, qid, "bob@peer.test", 2)
            S.check(st and st["state"] == "deferred" and st.get("status", "")[:1] == "4",
                    f"deferred with a 4xx, tried again: {st}")
            S.check(peer.wait_closed(2, WAIT), "two hung connections ended")
            done = [c for c in peer.connections if c.done]
            S.check(len(done) >= 2, f"retried: {done}")
            for c in done:
                S.check(c.tls.started and not c.tls.established, f"{c.index}: no TLS: {c.tls}")
                S.eq(c.commands[-1:], ["STARTTLS"], f"{c.index}: every try asks for TLS")
                S.eq(c.messages, [], f"{c.index}: no message")
                S.check(c.closed_by_client, f"{c.index}: given up by the daemon: {c}")
                S.eq(smtp_in_clear(c.after_silence), [],
                     f"{c.index}: nothing in clear: {c.after_silence[:80]!r}")
            S.eq(peer.deliveries(), [], "never delivered")
            S.eq(queued_ids(d, "sender@example.com"), [qid], "still queued")
            S.check(notices(d, "sender@example.com") == [], "no bounce")
            S.check(d.proc.poll() is None, "the daemon runs")
            S.eq(peer.failures, [], "no fake-peer failures")
        finally:
            d.cleanup()


@bounded(T)
def test_8bit_to_7bit_peer_bounced():
    with FakePeer(script=serve(caps=("PIPELINING", "ENHANCEDSTATUSCODES"))) as peer:
        d = relay_daemon(route(peer))
        try:
            send(d, "sender@example.com", ["bob@peer.test"], BODY, mail_options=["BODY=8BITMIME"])
            reps = wait_notices(d, "sender@example.com")
            S.eq(len(reps), 1, "bounced")
            if reps:
                r = reps[0].recipient("bob@peer.test")
                S.eq((r.action, r.status), ("failed", "5.6.3"), "5.6.3, not mangled")
            S.eq(peer.messages(), [], "no transaction with the 7-bit peer")
            S.check(wait_gone(d), "queue empty")
        finally:
            d.cleanup()


@bounded(T)
def test_notify_and_null_sender():
    spec = {"gone@peer.test": "550 5.1.1 no such user", "never@peer.test": "550 5.1.1 gone"}
    with FakePeer(script=serve(rcpt=spec)) as peer:
        d = relay_daemon(route(peer))
        try:
            # NOTIFY=NEVER: no bounce. <> never gets one. NOTIFY=SUCCESS to a peer without
            # DSN: a "relayed" notice.
            send(d, "sender@example.com", ["never@peer.test"], BODY,
                 rcpt_options=["NOTIFY=NEVER"])
            send(d, "", ["gone@peer.test"], BODY)
            send(d, "alice@example.com", ["ok@peer.test"], BODY,
                 rcpt_options=["NOTIFY=SUCCESS", "ORCPT=rfc822;ok@peer.test"])
            S.check(wait_gone(d), f"all done: {queue_lines(d)}")
            reps = wait_notices(d, "alice@example.com")
            S.eq([r.actions() for r in reps], [{"ok@peer.test": "relayed"}], "relayed notice")
            if reps:
                S.eq(reps[0].recipient("ok@peer.test").original, "ok@peer.test", "ORCPT kept")
            # NOTIFY=SUCCESS for a local mailbox: a "delivered" notice.
            send(d, "alice@example.com", ["bob@example.com"], BODY,
                 rcpt_options=["NOTIFY=SUCCESS"])
            reps = wait_notices(d, "alice@example.com", 2)
            S.eq([r.actions() for r in reps][1:], [{"bob@example.com": "delivered"}],
                 "delivered notice")
            if len(reps) > 1:
                S.eq(reps[1].returned_type, "text/rfc822-headers", "headers only")
            S.eq(notices(d, "sender@example.com"), [], "NOTIFY=NEVER: no notice")
            S.check(not re.search(r"sender non-delivery notification", d.logtext()),
                    "no bounce queued at all (<> and NEVER)")
        finally:
            d.cleanup()
    # A peer that offers DSN gets NOTIFY and ORCPT passed on, and reports itself.
    with FakePeer(script=serve(caps=("PIPELINING", "DSN", "ENHANCEDSTATUSCODES"))) as peer:
        d = relay_daemon(route(peer))
        try:
            send(d, "alice@example.com", ["ok@peer.test"], BODY,
                 mail_options=["RET=HDRS", "ENVID=env-1"],
                 rcpt_options=["NOTIFY=SUCCESS,FAILURE", "ORCPT=rfc822;ok@peer.test"])
            S.check(peer.wait(lambda p: len(p.deliveries()) == 1, WAIT), "delivered")
            m = peer.accepted()[0]
            S.check("RET=HDRS" in m.mail_params and "ENVID=env-1" in m.mail_params,
                    f"RET and ENVID passed on: {m.mail_line}")
            rl = [x for x in peer.connections[0].commands if x.upper().startswith("RCPT")]
            S.check(rl and "NOTIFY=SUCCESS,FAILURE" in rl[0] and "ORCPT=rfc822;ok@peer.test"
                    in rl[0], f"NOTIFY and ORCPT passed on: {rl}")
            S.check(wait_gone(d), "queue empty")
            S.eq(notices(d, "alice@example.com"), [], "the peer reports: no notice from us")
        finally:
            d.cleanup()


@bounded(T)
def test_delay_notice_once():
    port = refused_port()
    d = relay_daemon({"relay_route": f"peer.test 127.0.0.1:{port}", "queue_delay_warning": "1"})
    try:
        send(d, "sender@example.com", ["bob@peer.test"], BODY)
        reps = wait_notices(d, "sender@example.com")
        S.eq(len(reps), 1, "a delay notice")
        if reps:
            r = reps[0].recipient("bob@peer.test")
            S.eq(r.action, "delayed", "action delayed")
            S.check(r.status.startswith("4."), f"status {r.status}")
            S.check(r.will_retry_until, "Will-Retry-Until")
            S.eq(reps[0].returned_type, "text/rfc822-headers", "headers only")
        ids = queued_ids(d, "sender@example.com")
        S.check(ids and rcpt_state(d, ids[0], "bob@peer.test")["state"] == "deferred",
                "still queued, still tried")
        # More attempts, and a restart: never a second delay notice.
        until(lambda: ids and int(rcpt_state(d, ids[0], "bob@peer.test")["attempts"]) >= 3)
        d.stop()
        d.start()
        until(lambda: ids and int((rcpt_state(d, ids[0], "bob@peer.test") or {})
                                  .get("attempts", "0")) >= 4)
        S.eq(len(notices(d, "sender@example.com")), 1, "one delay notice only")
    finally:
        d.cleanup()


@bounded(T)
def test_lifetime_expires_with_a_bounce():
    """queue_lifetime (5 days) for a relayed recipient, on the manager's clock moved on
    (SHAREMAIL_TEST_TIME_OFFSET): one more attempt, then failed 4.4.7 and bounced."""
    port = refused_port()
    d = relay_daemon({"relay_route": f"peer.test 127.0.0.1:{port}"})
    try:
        send(d, "sender@example.com", ["bob@peer.test"], BODY)
        ids = until(lambda: queued_ids(d, "sender@example.com"))
        S.check(ids and until(lambda: (rcpt_state(d, ids[0], "bob@peer.test") or {})
                              .get("attempts") == "1"), "tried once, deferred")
        d.stop()
        d.start(extra_env={"SHAREMAIL_TEST_TIME_OFFSET": str(6 * 86400)})
        S.check(wait_gone(d), f"expired: the queue empties: {queue_lines(d)}")
        reps = until(lambda: [r for r in notices(d, "sender@example.com")
                              if r.actions().get("bob@peer.test") == "failed"])
        S.eq(len(reps or []), 1, "one failure notice")
        if reps:
            b = reps[0].recipient("bob@peer.test")
            S.eq(b.status, "4.4.7", "delivery time expired")
            S.check("expired" in (b.diagnostic or ""), f"says so: {b.diagnostic}")
        ln = [x for x in d.logtext().splitlines() if " to=<bob@peer.test>, " in x]
        S.check(len(ln) >= 3 and "status=bounced" in ln[-1] and "dsn=4.4.7" in ln[-1],
                f"attempted after the restart, then expired: {ln}")
    finally:
        d.cleanup()


@bounded(T)
def test_list_and_alias_with_foreign_members():
    with FakePeer() as peer:
        d = relay_daemon(route(peer))
        try:
            d.cli("list", "add", "team@example.com", "--owner", "alice@example.com")
            d.cli("list", "join", "team@example.com", "bob@example.com", "far@peer.test")
            d.cli("alias", "add", "fwd@example.com", "bob@example.com", "away@peer.test")
            S.check(until(lambda: rcpt_code(d, "x@other.example", "team@example.com") == 250 and
                          rcpt_code(d, "x@other.example", "fwd@example.com") == 250),
                    "the daemon knows the list and the alias")
            send(d, "poster@other.example", ["team@example.com"],
                 b"Subject: to the list\r\n\r\nhello, list\r\n")
            send(d, "sender@example.com", ["fwd@example.com"], b"Subject: fwd\r\n\r\nhi\r\n")
            S.check(peer.wait(lambda p: len(p.deliveries()) >= 2, WAIT), "relayed")
            lst = [m for m in peer.accepted() if b"hello, list" in m.content]
            S.eq(len(lst), 1, "the post reached the foreign member once")
            if lst:
                S.eq(lst[0].mail_from, "alice@example.com", "from the owner")
                S.check(b"\r\nList-Id: <team.example.com>\r\n" in b"\r\n" + lst[0].content,
                        "with List-Id")
            fw = [m for m in peer.accepted() if b"\r\n\r\nhi\r\n" in m.content]
            S.eq(len(fw), 1, "the alias's foreign target got it once")
            if fw:
                S.eq(fw[0].mail_from, "sender@example.com", "from the original sender")
                S.eq(fw[0].rcpts, ["away@peer.test"], "to the target")
                S.check(fw[0].content.startswith(b"Delivered-To: fwd@example.com\r\n"),
                        "Delivered-To: the alias")
            bob = mailbox(d, "bob@example.com")
            S.eq(sum(b"hello, list" in m for m in bob), 1, "bob has the post once")
            S.eq(sum(m.endswith(b"\r\n\r\nhi\r\n") for m in bob), 1, "and the forward once")
            S.eq(peer.duplicates(), {}, "nothing twice")
            S.check(wait_gone(d), f"queue empty: {queue_lines(d)}")
        finally:
            d.cleanup()


@bounded(T)
def test_loop_to_ourselves_bounced():
    port = free_tcp_port()
    d = relay_daemon({"relay_route": f"self.test 127.0.0.1:{port}"}, port=port)
    try:
        send(d, "sender@example.com", ["x@self.test"], BODY)
        reps = wait_notices(d, "sender@example.com")
        S.eq(len(reps), 1, "bounced at once")
        if reps:
            r = reps[0].recipient("x@self.test")
            S.eq((r.action, r.status), ("failed", "5.4.6"), "a loop: 5.4.6")
        S.check(wait_gone(d), "queue empty: no retry storm")
        S.eq(len([ln for ln in d.logtext().splitlines() if "client=[127.0.0.1]" in ln]), 1,
             "it never connected to itself")
    finally:
        d.cleanup()


sys.exit(S.run([test_relayed_byte_exact_and_logged, test_mixed_replies_retried_and_bounced,
                test_refused_then_421_backs_off, test_drop_after_dot_and_silence_retried,
                test_endless_line_deferred_and_retried, test_starttls_injection_discarded,
                test_starttls_hang_may_plaintext_retry, test_starttls_hang_require_deferred,
                test_8bit_to_7bit_peer_bounced,
                test_notify_and_null_sender, test_delay_notice_once,
                test_lifetime_expires_with_a_bounce,
                test_list_and_alias_with_foreign_members, test_loop_to_ourselves_bounced]))
