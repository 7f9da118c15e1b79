#!/usr/bin/env python3
"""Domain Sharing (issue 8) with real daemons: three sharemaild for example.com (A, B, C;
sharingutil.Mesh), each with its own state_dir, ports and users, each the others' peer.

- Mail for a user on B sent to A lands in B's Maildir (and nowhere else); a user on no
  server gets 550 5.1.1.
- B stopped: B's users get 451 (never 5xx) at A, a user on C still 250; a user A had
  verified on B while B was up (the cache) is accepted while B is down, waits in A's
  queue, and is delivered once B is back (`sharemail queue flush` on A).
- A wrong secret for B: 451 and a log line naming B, never 550.
- 50 pipelined RCPTs (one packet) against two independent Minger responders
  (mingerpeer.py) standing in for B and C: every one of the 50 queries reaches each
  peer before any answer is sent (one parallel round, counted in datagrams), about
  50 datagrams per peer in all, and the 50 replies come back in order.
- `sharemail account add` refuses an address a peer has (exit 1, naming it), --force
  overrides with a warning, a peer that does not answer refuses too.
- A list on all three servers (domain_sharing_share_lists = yes): one post reaches every
  member once, whichever server it was posted to.
- The loop: A thinks a user is on B and B thinks it is on A: one bounce, 5.4.6.
- MAIL FROM a user on a peer is a known sender (` sender=peer` on the accept log line).
Nothing waits on wall time to decide: every wait is a bounded poll for a state.
"""
import os
import re
import smtplib
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mingerpeer  # noqa: E402
import relayutil  # noqa: E402
import sharingutil  # noqa: E402
from peerutil import bounded, wait_until  # noqa: E402
from sharingutil import DOMAIN, SECRET, Mesh, Office  # noqa: E402
from smtest import Suite  # noqa: E402
from smtpraw import Conn  # noqa: E402

S = Suite("domain_sharing")
OUTSIDER = "someone@client.test"
WAIT = relayutil.WAIT


def addr(user):
    return f"{user}@{DOMAIN}"


def three(**kw):
    return Mesh({"a": [addr("alice"), addr("sender")],
                 "b": [addr("bob"), addr("bob2"), addr("bob3")],
                 "c": [addr("carol")]}, **kw)


def codes(replies):
    return [c for c, _ in replies]


def enhanced(text):
    m = re.match(r"([245]\.\d{1,3}\.\d{1,3})", text)
    return m.group(1) if m else None


def body(marker, to):
    return sharingutil.message(marker, to=to)


def minger_status(office, user):
    """What the office's own Minger server says about user (None: no answer)."""
    return mingerpeer.query(office.minger, addr(user), SECRET, timeout=0.5)


@bounded(120)
def test_delivered_to_peer_and_unknown_everywhere():
    with three() as m:
        got = m.rcpt_codes("a", OUTSIDER, [addr("bob"), addr("carol"), addr("nobody"),
                                           addr("alice")])
        S.eq(codes(got), [250, 250, 550, 250], f"RCPT at A (B's, C's, nobody's, A's): {got}")
        if len(got) == 4:
            S.eq(enhanced(got[2][1]), "5.1.1", "a user on no server: 5.1.1")
        m.send("a", OUTSIDER, [addr("bob"), addr("carol")], body("to-b-and-c", addr("bob")))
        b = m.wait_mail("b", addr("bob"))
        c = m.wait_mail("c", addr("carol"))
        S.eq(len(b), 1, "one copy in bob's Maildir on B")
        S.eq(len(c), 1, "one copy in carol's Maildir on C")
        S.check(b and b"Subject: to-b-and-c" in b[0], "B got the message sent to A")
        S.check(m.quiet(), "every queue empties")
        S.eq(m.mailbox("a", addr("bob")), [], "nothing for bob in a Maildir on A")
        S.eq(len(m.mailbox("b", addr("bob"))), 1, "still exactly one copy on B")


@bounded(180)
def test_peer_down_451_and_cached_user_queued_until_back():
    with three() as m:
        got = m.rcpt_codes("a", OUTSIDER, [addr("bob2")])
        S.eq(codes(got), [250], f"bob2 verified on B while B is up: {got}")
        m.stop("b")
        mark = m["a"].mark()
        got = m.rcpt_codes("a", OUTSIDER, [addr("bob"), addr("carol"), addr("nobody")])
        S.eq(codes(got), [451, 250, 451],
             f"B down: its user 451, C's user 250, nobody 451 (never 550): {got}")
        if got and got[0][0] == 451:
            S.eq(enhanced(got[0][1]), "4.4.3", "the 451 is 4.4.3")
        S.check(f"127.0.0.1:{m['b'].minger_port}" in m["a"].log_since(mark)
                or m["b"].smtp in m["a"].log_since(mark),
                "A logs the peer that did not answer")
        refused = m.send("a", OUTSIDER, [addr("bob2")], body("cached-while-down", addr("bob2")))
        S.eq(refused, {}, "bob2 (cached as on B) is accepted while B is down")
        S.check(relayutil.until(lambda: len(m.queued("a")) == 1, 10),
                f"the message waits in A's queue: {m.queued('a')}")
        S.eq(m.mailbox("a", addr("bob2")), [], "never delivered on A")
        m.start("b")
        m["a"].cli("queue", "flush")
        got = m.wait_mail("b", addr("bob2"))
        S.eq(len(got), 1, "delivered to B once B is back")
        S.check(got and b"Subject: cached-while-down" in got[0], "the message that waited")
        S.check(relayutil.until(lambda: m.queued("a") == []), "A's queue empties")


@bounded(120)
def test_wrong_secret_451_logged_never_550():
    with three(peer_secrets={("a", "b"): "wrong-secret-for-b-000000"}) as m:
        mark = m["a"].mark()
        got = m.rcpt_codes("a", OUTSIDER, [addr("bob"), addr("carol"), addr("nobody")])
        S.eq(codes(got), [451, 250, 451],
             f"B refuses A's digest (status 2): B's user 451, C's 250, nobody 451: {got}")
        S.check(all(c != 550 for c in codes(got)), "never 550")
        log = m["a"].log_since(mark)
        names_b = [ln for ln in log.splitlines()
                   if f"127.0.0.1:{m['b'].minger_port}" in ln or m["b"].smtp in ln]
        S.check(names_b, f"a log line names peer B: {log[-1500:]!r}")
        # The other direction is unaffected: B asks A with the right secret.
        S.eq(codes(m.rcpt_codes("b", OUTSIDER, [addr("alice")])), [250], "B still finds alice")


def pipelined_rcpts(n=50):
    """(address, expected code) for n RCPTs: every fifth nobody's (550), the others
    alternately on B and C (250)."""
    out = []
    for i in range(n):
        if i % 5 == 4:
            out.append((addr(f"nobody{i}"), 550))
        elif i % 2:
            out.append((addr(f"b{i}"), 250))
        else:
            out.append((addr(f"c{i}"), 250))
    return out


@bounded(120)
def test_pipelined_rcpts_one_round_of_queries():
    rcpts = pipelined_rcpts()
    on_b = {a: 5 for a, c in rcpts if a.startswith("b")}
    on_c = {a: 5 for a, c in rcpts if a.startswith("c")}
    # Each responder holds its answers until all 50 queries are in (bounded): a client
    # that asked one at a time would never get there.
    with mingerpeer.Responder(on_b, secrets=[SECRET], hold=len(rcpts), hold_limit=15) as pb, \
            mingerpeer.Responder(on_c, secrets=[SECRET], hold=len(rcpts), hold_limit=15) as pc:
        a = Office("a", [addr("alice")], conf={"minger_timeout_ms": "5000"})
        try:
            lines = []
            for p, name in ((pb, "b"), (pc, "c")):
                f = a.secret_file(f"peer-{name}.secret", SECRET)
                lines.append(f"127.0.0.1:1 minger_port={p.port} secret_file={f}")
            a.configure({"domain_sharing": "yes", "domain_sharing_host": lines})
            a.start()
            with Conn(a.smtp_port, source=sharingutil.CLIENT_IP, timeout=30) as c:
                S.eq(c.cmd("EHLO client.test").code, 250, "EHLO")
                packet = f"MAIL FROM:<{OUTSIDER}>\r\n" + "".join(
                    f"RCPT TO:<{r}>\r\n" for r, _ in rcpts)
                c.send(packet)                      # one write: one segment on loopback
                replies = c.replies(1 + len(rcpts), timeout=30)
                S.eq([r.code for r in replies], [250] + [w for _, w in rcpts],
                     "MAIL, then the 50 RCPT replies in order")
                c.cmd("RSET")
            for p, name in ((pb, "B"), (pc, "C")):
                asked = p.mailboxes()
                S.eq(p.distinct_before_reply, len(rcpts),
                     f"{name}: all {len(rcpts)} queries in flight before the first answer")
                S.eq(sorted(set(asked)), sorted(r for r, _ in rcpts),
                     f"{name} was asked about every one of the 50 addresses")
                S.check(len(rcpts) <= len(asked) <= len(rcpts) + 10,
                        f"{name}: about {len(rcpts)} datagrams in all, got {len(asked)}")
        finally:
            a.d.cleanup()


@bounded(120)
def test_account_add_asks_the_peers():
    with three() as m:
        a = m["a"]
        p = a.cli("account", "add", addr("bob"), "--no-password", check=False)
        S.eq(p.returncode, 1, f"bob exists on B: refused ({p.stderr!r})")
        S.check(str(m["b"].minger_port) in p.stderr or m["b"].smtp in p.stderr,
                f"the refusal names peer B: {p.stderr!r}")
        listed = a.cli("account", "list", check=False).stdout
        S.check(addr("bob") not in listed, f"bob not created on A: {listed!r}")
        p = a.cli("account", "add", addr("newbie"), "--no-password", check=False)
        S.eq(p.returncode, 0, f"an address no peer has is created ({p.stderr!r})")
        p = a.cli("account", "add", addr("bob"), "--no-password", "--force", check=False)
        S.eq(p.returncode, 0, f"--force creates it anyway ({p.stderr!r})")
        S.check("warning" in p.stderr.lower(), f"--force warns: {p.stderr!r}")
        S.check(addr("bob") in a.cli("account", "list").stdout, "bob now on A too")
        m.stop("c")
        p = a.cli("account", "add", addr("newer"), "--no-password", check=False)
        # 75 (EX_TEMPFAIL, as `minger query` on a timeout): "cannot tell now", not "exists".
        S.eq(p.returncode, 75, f"C does not answer: refused, try later ({p.stderr!r})")
        S.check(str(m["c"].minger_port) in p.stderr or m["c"].smtp in p.stderr,
                f"the refusal names peer C: {p.stderr!r}")
        p = a.cli("account", "add", addr("newer"), "--no-password", "--force", check=False)
        S.eq(p.returncode, 0, f"--force with a silent peer ({p.stderr!r})")


@bounded(180)
def test_list_shared_post_reaches_every_member_once():
    members = {"a": [addr("alice")], "b": [addr("bob")], "c": [addr("carol"), addr("carol2")]}
    m = Mesh({"a": [addr("alice")], "b": [addr("bob")],
              "c": [addr("carol"), addr("carol2")]},
             conf={"domain_sharing_share_lists": "yes"}, start=False)
    with m:
        for name, who in members.items():
            m[name].cli("list", "add", addr("team"))
            m[name].cli("list", "join", addr("team"), *who)
        for name in members:
            m.start(name)
        for n, (post_at, subject) in enumerate((("a", "team post one"),
                                                ("b", "team post two")), start=1):
            refused = m.send(post_at, OUTSIDER, [addr("team")], body(subject, addr("team")))
            S.eq(refused, {}, f"the post to the list at {post_at.upper()} is accepted")
            relayutil.until(lambda: all(len(m.mailbox(name, w)) >= n
                                        for name, who in members.items() for w in who))
            S.check(m.quiet(), "every queue empties")
            for name, who in members.items():
                for w in who:
                    got = m.mailbox(name, w)
                    S.eq(len(got), n, f"{w} on {name.upper()}: exactly {n} (post at "
                                      f"{post_at.upper()})")
                    S.eq(sum(f"Subject: {subject}".encode() in g for g in got), 1,
                         f"{w}: '{subject}' once")


@bounded(240)
def test_loop_between_two_peers_one_bounce():
    with Mesh({"a": [addr("sender")], "b": [addr("loopy")]}) as m:
        a, b = m["a"], m["b"]
        S.eq(codes(m.rcpt_codes("a", OUTSIDER, [addr("loopy")])), [250],
             "A verifies loopy on B (and caches it)")
        b.cli("account", "del", addr("loopy"))
        wait_until(lambda: minger_status(b, "loopy") == 3, WAIT, "B forgets loopy")
        # The administrator moves loopy to A (--force: A's own cache still says B).
        a.cli("account", "add", addr("loopy"), "--no-password", "--force")
        wait_until(lambda: minger_status(a, "loopy") == 5, WAIT, "A has loopy")
        S.eq(codes(m.rcpt_codes("b", OUTSIDER, [addr("loopy")])), [250],
             "B verifies loopy on A (and caches it)")
        a.cli("account", "del", addr("loopy"))
        wait_until(lambda: minger_status(a, "loopy") == 3, WAIT, "A forgets loopy")
        # Now each one's cache says the other has loopy.
        refused = m.send("a", addr("sender"), [addr("loopy")], body("loop", addr("loopy")))
        S.eq(refused, {}, "accepted at A on the cached answer")
        reps = relayutil.wait_notices(a.d, addr("sender"), 1, timeout=90)
        S.check(m.quiet(90), "the loop stops: every queue empties")
        reps = relayutil.notices(a.d, addr("sender"))
        S.eq(len(reps), 1, "exactly one bounce to the sender")
        if reps:
            r = reps[0].recipient(addr("loopy"))
            S.check(r is not None, "the bounce is about loopy")
            S.eq(r and r.status, "5.4.6", "status 5.4.6 (routing loop detected)")
        S.eq(m.mailbox("a", addr("loopy")) + m.mailbox("b", addr("loopy")), [],
             "loopy got nothing anywhere")


def accept_line(office, sender):
    return [ln for ln in office.d.logtext().splitlines()
            if re.search(r": client=\[.*from=<" + re.escape(sender) + ">", ln)]


@bounded(120)
def test_mail_from_user_on_peer_is_known_sender():
    # The seed's rules as shipped: a local-domain sender needs AUTH "unless Domain Sharing
    # finds the sender on another server" (auth_local_senders_unless_domain_sharing).
    with three(conf={"auth_required_for_local_senders": "yes"}) as m:
        for sender in (addr("bob"), OUTSIDER):
            m.send("a", sender, [addr("alice")], body(f"from {sender}", addr("alice")))
        try:
            m.send("a", addr("alice"), [addr("alice")], body("from alice", addr("alice")))
            S.check(False, "alice (local on A, unauthenticated, from outside) was accepted")
        except smtplib.SMTPSenderRefused as e:
            S.eq(e.smtp_code, 530, "a local sender from outside without AUTH: 530 5.7.0")
        bob = accept_line(m["a"], addr("bob"))
        S.eq(len(bob), 1, f"one accept line for the message from bob: {bob}")
        S.check(bob and " sender=peer" in bob[0], f"bob (on B) is a peer sender: {bob}")
        ln = accept_line(m["a"], OUTSIDER)
        S.eq(len(ln), 1, f"one accept line from {OUTSIDER}")
        S.check(ln and " sender=peer" not in ln[0], f"{OUTSIDER} is not on a peer: {ln}")


if __name__ == "__main__":
    sys.exit(S.run([test_delivered_to_peer_and_unknown_everywhere,
                    test_peer_down_451_and_cached_user_queued_until_back,
                    test_wrong_secret_451_logged_never_550,
                    test_pipelined_rcpts_one_round_of_queries,
                    test_account_add_asks_the_peers,
                    test_list_shared_post_reaches_every_member_once,
                    test_loop_between_two_peers_one_bounce,
                    test_mail_from_user_on_peer_is_known_sender]))
