#!/usr/bin/env python3
"""Domain Sharing, the delivery side, with real sharemaild peers on 127.0.0.1.

A recipient of a local domain that the SMTP session found on a peer carries the peer's
route "[HOST]:PORT" in its queue state. Until the session's part is merged these tests
write that queue state themselves (a message file and a version 3 state file with the
route, as tests/integration/test_queue_cli.py does) before the daemon starts; delivery
is what is tested:

- a pre-routed recipient of a local domain is relayed to the peer (a second real
  sharemaild) and lands in the peer's Maildir, never expanded or delivered here; the
  copy carries X-Sharemail-Shared: by OUR-HOSTNAME;
- the peer stopped: deferred, retried; the peer started again and `queue flush`: delivered;
- domain_sharing_keep_on_error = no: after a failed try the recipient goes to
  relay_smarthost (a fake peer) instead; = yes (default): never to the smart host;
- loops: a message already carrying X-Sharemail-Shared by us, or 5 of them, is not
  relayed to the peer: the recipient fails 5.4.6 and the sender gets exactly one
  bounce (dsncheck);
- gateway_domain / forward_domain route their domain to host= (a relay_route for the
  same domain wins);
- domain_sharing_share_lists: a post to a list reaches the members on A and one copy
  goes to each peer that has the list (Minger status 5), whose members get it once; the
  copy is not shared back; a peer without the list gets nothing; a peer whose Minger does
  not answer keeps its copy deferred and gets it once after it answers.
"""
import hashlib
import os
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import fakepeer  # noqa: E402
import mingerpeer  # noqa: E402
import relayutil  # noqa: E402
import smtest  # noqa: E402
from relayutil import mailbox, notices, queue_lines, rcpt_state, until, wait_gone  # noqa: E402

S = smtest.Suite("sharing_delivery")
WAIT = relayutil.WAIT
PENDING, DELIVERED, FAILED, DEFERRED = 0, 1, 2, 3


# ---- queue files written by hand (the session's part is not merged yet) ----

def rec(t, v):
    return t + struct.pack(">I", len(v)) + v


def msg_file(data, mail_from, rcpts, received_at=None):
    """A version 2 message file (D1 over magic and data, D2 over D1, length, records)."""
    recs = rec(b"F", mail_from) + rec(b"H", b"client.test") + rec(b"C", b"127.0.0.1")
    recs += rec(b"T", struct.pack(">q", int(received_at or time.time())))
    recs += rec(b"S", b"\x01")
    for r in rcpts:
        recs += rec(b"P", rec(b"a", r))
    head = b"sharemail-queue 2\n" + data
    d1 = hashlib.sha256(head).digest()
    dlen = struct.pack(">Q", len(data))
    d2 = hashlib.sha256(d1 + dlen + recs).digest()
    return head + recs + rec(b"E", dlen + d1 + d2)


def state_file(routes):
    """A version 3 state file: every recipient PENDING with the given route (None: none)."""
    recs = b""
    for route in routes:
        inner = rec(b"s", bytes([PENDING])) + rec(b"A", struct.pack(">I", 0))
        if route:
            inner += rec(b"D", route.encode())
        inner += rec(b"N", struct.pack(">q", 0))
        recs += rec(b"r", inner)
    body = b"sharemail-state 3\n" + recs
    return body + rec(b"E", struct.pack(">Q", 0) + hashlib.sha256(body).digest())


_seq = [0]


def queue_routed(d, sender, rcpts, data):
    """Puts a message into d's queue (d stopped): rcpts is [(address, route or None)]."""
    _seq[0] += 1
    qid = "08AAAAAAA%dxsharing%03d" % (_seq[0] % 10, _seq[0])
    for sub in ("msg", "state"):
        os.makedirs(os.path.join(d.state, "queue", sub), exist_ok=True)
    with open(os.path.join(d.state, "queue", "msg", qid), "wb") as f:
        f.write(msg_file(data, sender.encode(), [a.encode() for a, _ in rcpts]))
    with open(os.path.join(d.state, "queue", "state", qid), "wb") as f:
        f.write(state_file([r for _, r in rcpts]))
    return qid


def body(subject, extra=b""):
    return (extra + b"From: sender@example.com\r\nTo: carol@example.com\r\n"
            b"Subject: " + subject.encode() + b"\r\n\r\nhello\r\n")


def daemon(name, accounts, conf=None, start=True):
    keys = {"hostname": f"{name}.test"}
    keys.update(conf or {})
    return relayutil.relay_daemon(keys, accounts=accounts, start=start)


def with_minger(name, accounts, conf=None):
    """A daemon that answers Minger anonymously (for the list checks)."""
    port = smtest.free_tcp_port()
    keys = dict(relayutil.BASE)
    keys.update({"hostname": f"{name}.test", "smtp_listen": f"127.0.0.1:{port}",
                 "minger_anonymous": "yes"})
    keys.update(conf or {})
    d = smtest.Daemon(conf=keys, minger=True)
    d.smtp_port = port
    for a in accounts:
        d.cli("account", "add", a, "--no-password")
    return d


def route_of(d):
    return f"[127.0.0.1]:{d.smtp_port}"


def cleanup(*ds):
    for d in ds:
        if d:
            d.cleanup()


# ---- 1: the pre-routed recipient ----

def test_prerouted_recipient_goes_to_the_peer():
    b = daemon("b", ("carol@example.com",))
    a = None
    try:
        # A also has a carol: delivery must not take the local path for a routed recipient.
        a = daemon("a", ("sender@example.com", "carol@example.com", "alice@example.com"),
                   start=False)
        qid = queue_routed(a, "sender@example.com",
                           [("carol@example.com", route_of(b)), ("alice@example.com", None)],
                           body("routed"))
        a.start()
        got = until(lambda: mailbox(b, "carol@example.com"), WAIT)
        S.eq(len(got), 1, "carol's copy is in the peer's Maildir")
        S.check(got and b"\r\nX-Sharemail-Shared: by a.test; id " + qid.encode() in
                b"\r\n" + got[0], f"the trace field names A and the queue id: {got[:1]!r}")
        S.check(until(lambda: mailbox(a, "alice@example.com"), WAIT),
                "the unrouted local recipient is delivered here as today")
        S.check(wait_gone(a), "A's queue is empty")
        S.eq(mailbox(a, "carol@example.com"), [], "nothing for A's own carol")
        S.check(relayutil.log_lines(a, r"carol@example\.com.*relay=127\.0\.0\.1\[127\.0\.0\.1\]"
                                       rf":{b.smtp_port}"),
                "A's log names the peer as the relay")
    finally:
        cleanup(a, b)


# ---- 2: the peer down, then back ----

def test_peer_down_deferred_then_delivered_after_it_returns():
    b = daemon("b", ("carol@example.com",), start=False)
    a = None
    try:
        a = daemon("a", ("sender@example.com",), start=False)
        qid = queue_routed(a, "sender@example.com", [("carol@example.com", route_of(b))],
                           body("later"))
        a.start()
        st = until(lambda: int((rcpt_state(a, qid, "carol@example.com") or {})
                               .get("attempts", "0")) >= 2)
        S.check(st, "tried at least twice while the peer is down")
        info = rcpt_state(a, qid, "carol@example.com") or {}
        S.eq(info.get("state"), "deferred", f"deferred, not bounced: {info}")
        S.eq(notices(a, "sender@example.com"), [], "no bounce while the peer is down")
        b.start()
        a.cli("queue", "flush")
        S.eq(len(until(lambda: mailbox(b, "carol@example.com"), WAIT)), 1,
             "delivered once the peer is back")
        S.check(wait_gone(a), "A's queue is empty")
    finally:
        cleanup(a, b)


# ---- 3: keep_on_error ----

def keep_on_error_case(keep):
    smart = fakepeer.FakePeer()
    a = None
    try:
        dead = fakepeer.refused_port()
        a = daemon("a", ("sender@example.com",), conf={
            "relay_smarthost": smart.hostport,
            "domain_sharing_keep_on_error": keep}, start=False)
        qid = queue_routed(a, "sender@example.com",
                           [("carol@example.com", f"[127.0.0.1]:{dead}")], body("fallback"))
        a.start()
        return a, smart, qid
    except Exception:
        cleanup(a)
        smart.stop()
        raise


def test_keep_on_error_no_sends_to_the_smarthost():
    a, smart, qid = keep_on_error_case("no")
    try:
        smart.wait_messages(1, timeout=WAIT, accepted=True)
        ms = smart.accepted()
        S.eq(len(ms), 1, "the smart host got the message after the peer failed")
        S.check(ms and ms[0].rcpts == ["carol@example.com"], "for carol")
        S.check(ms and b"X-Sharemail-Shared: by a.test" in ms[0].content,
                "with the trace field (a smart host sending it back is a loop we see)")
        S.check(wait_gone(a), "A's queue is empty")
    finally:
        cleanup(a)
        smart.stop()


def test_keep_on_error_yes_keeps_it_for_the_peer():
    a, smart, qid = keep_on_error_case("yes")
    try:
        S.check(until(lambda: int((rcpt_state(a, qid, "carol@example.com") or {})
                                  .get("attempts", "0")) >= 3),
                "tried three times")
        S.eq(smart.messages(), [], "never to the smart host")
        S.eq((rcpt_state(a, qid, "carol@example.com") or {}).get("state"), "deferred",
             "still waiting for the peer")
    finally:
        cleanup(a)
        smart.stop()


# ---- 4: loops ----

def loop_case(extra, want_text):
    b = daemon("b", ("carol@example.com",))
    a = None
    try:
        a = daemon("a", ("sender@example.com",), start=False)
        queue_routed(a, "sender@example.com", [("carol@example.com", route_of(b))],
                     body("loop", extra))
        a.start()
        reps = relayutil.wait_notices(a, "sender@example.com", 1)
        S.check(wait_gone(a), "A's queue is empty")
        # A second bounce would come within the same job's record: none may follow.
        reps = notices(a, "sender@example.com")
        S.eq(len(reps), 1, "exactly one bounce")
        if reps:
            r = reps[0].recipient("carol@example.com")
            S.eq(r.action, "failed", "action failed")
            S.eq(r.status, "5.4.6", "status 5.4.6")
            S.check(want_text in (r.diagnostic or ""), f"diagnostic: {r.diagnostic!r}")
        S.eq(mailbox(b, "carol@example.com"), [], "the peer got nothing")
    finally:
        cleanup(a, b)


def test_loop_back_to_us_bounces_once():
    loop_case(b"X-Sharemail-Shared: by b.test; id X1; Mon, 1 Jan 2024 00:00:00 +0000\r\n"
              b"X-Sharemail-Shared: by A.TEST; id X0; Mon, 1 Jan 2024 00:00:00 +0000\r\n",
              "Domain Sharing loop")


def test_too_many_hops_bounces_once():
    hops = b"".join(b"X-Sharemail-Shared: by h%d.test; id X%d; Mon, 1 Jan 2024 00:00:00 "
                    b"+0000\r\n" % (i, i) for i in range(5))
    loop_case(hops, "too many Domain Sharing hops")


def test_four_hops_still_relayed():
    b = daemon("b", ("carol@example.com",))
    a = None
    try:
        a = daemon("a", ("sender@example.com",), start=False)
        hops = b"".join(b"X-Sharemail-Shared: by h%d.test; id X; Mon, 1 Jan 2024 00:00:00 "
                        b"+0000\r\n" % i for i in range(4))
        queue_routed(a, "sender@example.com", [("carol@example.com", route_of(b))],
                     body("four", hops))
        a.start()
        got = until(lambda: mailbox(b, "carol@example.com"), WAIT)
        S.eq(len(got), 1, "four hops before ours: delivered")
        S.check(got and got[0].count(b"X-Sharemail-Shared:") == 5, "our field added: five")
    finally:
        cleanup(a, b)


def test_two_daemons_field_survives_the_round_trip():
    """A routes carol to B; B (where example.com is not local) relays it back to A with a
    relay_route. Until the session's RCPT routes are merged A then delivers it to its own
    carol; what matters for the loop rule is that the copy that came back carries A's
    field, which test_loop_back_to_us_bounces_once shows stops a second trip to a peer."""
    a_port = smtest.free_tcp_port()
    b = daemon("b", ("other@example.org",), conf={
        "local_domains": "example.org",
        "relay_route": f"example.com [127.0.0.1]:{a_port}"})
    a = None
    try:
        a = relayutil.relay_daemon({"hostname": "a.test"},
                                   accounts=("sender@example.com", "carol@example.com"),
                                   start=False, port=a_port)
        qid = queue_routed(a, "sender@example.com", [("carol@example.com", route_of(b))],
                           body("pingpong"))
        a.start()
        got = until(lambda: mailbox(a, "carol@example.com"), WAIT)
        S.eq(len(got), 1, "the message came back to A")
        S.check(got and (b"X-Sharemail-Shared: by a.test; id " + qid.encode()) in got[0],
                "with A's field on it")
        S.check(until(lambda: queue_lines(b) == [] and queue_lines(a) == [], WAIT),
                "both queues empty")
        S.eq(len(relayutil.log_lines(a, r"to=<carol@example\.com>.*relay=127\.0\.0\.1\[")),
             1, "A relayed carol to B once")
    finally:
        cleanup(a, b)


# ---- 5: gateway and forward domains ----

def test_gateway_and_forward_domains_route_to_host():
    gw = fakepeer.FakePeer()
    fw = fakepeer.FakePeer()
    rr = fakepeer.FakePeer()
    # The protected servers' Minger (verification comes first: test_gateway.py tests it).
    exists = mingerpeer.Responder({"x@gw.test": 5, "y@fw.test": 5, "z@both.test": 5},
                                  anonymous=True)
    exists.start()
    m = exists.hostport
    a = None
    try:
        a = daemon("a", ("sender@example.com",), conf={
            "gateway_domain": [f"gw.test host=[127.0.0.1]:{gw.port} minger={m}",
                               f"both.test host=[127.0.0.1]:{gw.port} minger={m}"],
            "forward_domain": f"fw.test host=[127.0.0.1]:{fw.port} minger={m}",
            "relay_route": f"both.test [127.0.0.1]:{rr.port}"})
        relayutil.send(a, "sender@example.com",
                       ["x@gw.test", "y@fw.test", "z@both.test"], body("gw"))
        for p in (gw, fw, rr):
            p.wait_messages(1, timeout=WAIT, accepted=True)
        S.check(wait_gone(a), "A's queue is empty")
        S.eq([m.rcpts for m in gw.accepted()], [["x@gw.test"]],
             "the gateway domain went to its host= (and nothing else did)")
        S.eq([m.rcpts for m in fw.accepted()], [["y@fw.test"]],
             "the forward domain went to its host=")
        S.eq([m.rcpts for m in rr.accepted()], [["z@both.test"]],
             "an explicit relay_route for the same domain wins")
    finally:
        cleanup(a)
        exists.stop()
        for p in (gw, fw, rr):
            p.stop()


# ---- 6: lists ----

def add_list(d, lst, *members):
    d.cli("list", "add", lst, "--owner", "owner@example.com")
    if members:
        d.cli("list", "join", lst, *members)


def peer_line(d):
    return f"127.0.0.1:{d.smtp_port} minger_port={d.minger_port}"


def test_list_shared_once_per_peer_and_not_reshared():
    b = with_minger("b", ("bob@example.com", "owner@example.com"))
    c = with_minger("c", ("carl@example.com", "owner@example.com"))
    a = None
    try:
        a = with_minger("a", ("alice@example.com", "owner@example.com", "sender@example.com"),
                        conf={"domain_sharing_share_lists": "yes",
                              "domain_sharing_host": [peer_line(b), peer_line(c)]})
        # B shares its lists with A too: the copy from A must not come back.
        with open(b.conf_path, "a") as f:
            f.write("domain_sharing_share_lists = yes\n"
                    f"domain_sharing_host = {peer_line(a)}\n")
        add_list(a, "team@example.com", "alice@example.com")
        add_list(b, "team@example.com", "bob@example.com")
        # C has no such list: it is asked and gets nothing.
        for d in (b, c, a):
            d.start()
        relayutil.send(a, "sender@example.com", ["team@example.com"], body("to the team"))
        S.eq(len(until(lambda: mailbox(a, "alice@example.com"), WAIT)), 1, "alice (A) got it")
        S.eq(len(until(lambda: mailbox(b, "bob@example.com"), WAIT)), 1, "bob (B) got it")
        S.check(until(lambda: all(queue_lines(d) == [] for d in (a, b, c)), WAIT),
                "every queue empty")
        S.eq(len(mailbox(a, "alice@example.com")), 1, "alice once: B did not share it back")
        S.eq(len(mailbox(b, "bob@example.com")), 1, "bob once")
        S.eq(mailbox(c, "carl@example.com"), [], "C (no list) got nothing")
        S.eq(relayutil.log_lines(c, r"from=<"), [], "C received no message at all")
        bob = mailbox(b, "bob@example.com")
        S.check(bob and b"X-Sharemail-List-Shared: a.test" in bob[0], "the copy is marked")
        S.check(relayutil.log_lines(b, r"list <team@example\.com> expanded"),
                "B expanded its own list")
        S.eq(relayutil.log_lines(b, r"list <team@example\.com> shared"), [],
             "B did not share the copy again")
        S.eq(len(relayutil.log_lines(a, r"list <team@example\.com> shared with 2")), 1,
             "A made one shared message for its two peers")
    finally:
        cleanup(a, b, c)


def test_list_peer_without_answer_deferred_then_once():
    b = with_minger("b", ("bob@example.com", "owner@example.com"))
    a = None
    try:
        a = with_minger("a", ("alice@example.com", "owner@example.com", "sender@example.com"),
                        conf={"domain_sharing_share_lists": "yes",
                              "domain_sharing_host": peer_line(b)})
        add_list(a, "team@example.com", "alice@example.com")
        add_list(b, "team@example.com", "bob@example.com")
        a.start()
        relayutil.send(a, "sender@example.com", ["team@example.com"], body("later team"))
        S.eq(len(until(lambda: mailbox(a, "alice@example.com"), WAIT)), 1, "alice got it")
        ids = until(lambda: [q for q in relayutil.queued_ids(a, "sender@example.com")
                             if int((rcpt_state(a, q, "team@example.com") or {})
                                    .get("attempts", "0")) >= 1])
        S.check(ids, "the shared copy is queued and was tried")
        info = rcpt_state(a, ids[0], "team@example.com") if ids else {}
        S.eq((info or {}).get("state"), "deferred", f"deferred while B is silent: {info}")
        b.start()
        a.cli("queue", "flush")
        S.eq(len(until(lambda: mailbox(b, "bob@example.com"), WAIT)), 1, "bob got it")
        S.check(until(lambda: queue_lines(a) == [] and queue_lines(b) == [], WAIT),
                "queues empty")
        S.eq(len(mailbox(b, "bob@example.com")), 1, "bob exactly once")
        S.eq(len(mailbox(a, "alice@example.com")), 1, "alice exactly once")
    finally:
        cleanup(a, b)


sys.exit(S.run([
    test_prerouted_recipient_goes_to_the_peer,
    test_peer_down_deferred_then_delivered_after_it_returns,
    test_keep_on_error_no_sends_to_the_smarthost,
    test_keep_on_error_yes_keeps_it_for_the_peer,
    test_loop_back_to_us_bounces_once,
    test_too_many_hops_bounces_once,
    test_four_hops_still_relayed,
    test_two_daemons_field_survives_the_round_trip,
    test_gateway_and_forward_domains_route_to_host,
    test_list_shared_once_per_peer_and_not_reshared,
    test_list_peer_without_answer_deferred_then_once,
]))
