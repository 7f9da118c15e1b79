#!/usr/bin/env python3
"""DomainPOP against a real ISP: Debian's dovecot-pop3d (isp_pop3.py) serves one Maildir
the test fills, the real sharemaild collects it (`sharemail collect now` runs each cycle),
and each local mailbox is checked for exactly the messages routing gives it.

Covered: each routing header of collect_headers (and the precedence over To/Cc), Bcc
recipients named only in X-Rcpt-To, several ISP copies of one message (one per mailbox:
dedupe by Message-ID, and collect_dedupe = none), Received-only routing and a forged
Received field from the sender (not honoured), the ISP's Delivered-To (delivered, not a
loop) and a real loop (our own earlier Delivered-To), oversize messages (left on the
ISP, one postmaster notice), collect_fallback and its absence (kept on the ISP),
leave_days (kept, then deleted once old enough), a restart between cycles (no UIDL
collected twice, dedupe remembered), and `collect now`'s failures and exit codes.
"""
import os
import sqlite3
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import isp_pop3  # noqa: E402
from collectutil import (by_tag, collect_now, collector, isp_received, mailbox,  # noqa: E402
                         msg, settle)
from smtest import Suite  # noqa: E402

S = Suite("collect")
ALICE, BOB, CAROL = "alice@example.com", "bob@example.com", "carol@example.com"


def pair(options="leave_days=0", conf=None, accounts=None):
    isp = isp_pop3.IspDovecot()
    kw = {"conf": conf, "options": options}
    if accounts:
        kw["accounts"] = accounts
    d = collector(isp.port, **kw)
    return isp, d


def run_cycle(d, what="collect now"):
    p = collect_now(d)
    S.eq(p.returncode, 0, f"{what}: {p.stdout}{p.stderr}")
    settle(d)
    return p


def test_routing_headers():
    """Each default header routes alone; it beats To/Cc (bob is only in To).
    collect_copy_dir gets each message as collected (without our trace field)."""
    isp, d = pair(conf={"collect_copy_dir": "copies"})
    with isp, d:
        names = ["X-Rcpt-To", "X-MDRcpt-To", "X-Original-To", "Delivered-To", "Envelope-To",
                 "X-Envelope-To"]
        for i, n in enumerate(names):
            isp.add(msg(f"h{i}", [(n, ALICE), ("Received", isp_received()), ("To", BOB)]))
        isp.start()
        d.start()
        run_cycle(d)
        S.eq(by_tag(mailbox(d, ALICE)), {f"h{i}": 1 for i in range(len(names))},
             "alice got one copy of each")
        S.eq(mailbox(d, BOB), [], "To/Cc are not read when a header decided")
        S.eq(isp.count(), 0, "leave_days=0: deleted on the ISP")
        a = mailbox(d, ALICE)[0]
        S.check(b"(sharemail-collect pop3://isp@127.0.0.1:" in a, "our trace field")
        S.check(b"uidl " in a, "the UIDL in the trace field")
        copies = [open(os.path.join(d.dir, "copies", n), "rb").read()
                  for n in sorted(os.listdir(os.path.join(d.dir, "copies")))]
        S.eq(sorted(by_tag(copies)), sorted(f"h{i}" for i in range(len(names))),
             "collect_copy_dir: one copy each")
        S.check(all(c.startswith(b"X-") or c.startswith(b"Delivered-To") or
                    c.startswith(b"Envelope-To") for c in copies), "as collected: no field of ours")


def test_bcc_and_copies():
    """Two ISP copies of one message: X-Rcpt-To bob and X-Rcpt-To carol (a Bcc); To: bob."""
    isp, d = pair()
    with isp, d:
        for who in (BOB, CAROL):
            isp.add(msg("bcc", [("X-Rcpt-To", who), ("To", BOB)], msgid="bcc-1"))
        isp.start()
        d.start()
        run_cycle(d)
        S.eq(by_tag(mailbox(d, BOB)), {"bcc": 1}, "bob once")
        S.eq(by_tag(mailbox(d, CAROL)), {"bcc": 1}, "carol (Bcc) once")
        S.eq(mailbox(d, ALICE), [], "alice nothing")


def test_to_cc_dedupe():
    """Three ISP copies routed by To/Cc: each mailbox gets one (Message-ID dedupe)."""
    isp, d = pair()
    with isp, d:
        for i in range(3):
            isp.add(msg("cc", [("To", f"{ALICE}, Bob <{BOB}>"), ("Cc", CAROL)], msgid="cc-1"))
        isp.add(msg("other", [("To", ALICE)]))
        isp.start()
        d.start()
        run_cycle(d)
        S.eq(by_tag(mailbox(d, ALICE)), {"cc": 1, "other": 1}, "alice: one of each")
        S.eq(by_tag(mailbox(d, BOB)), {"cc": 1}, "bob: one")
        S.eq(by_tag(mailbox(d, CAROL)), {"cc": 1}, "carol: one")
        S.eq(isp.count(), 0, "every copy deleted")


def test_dedupe_none():
    isp, d = pair(conf={"collect_dedupe": "none"})
    with isp, d:
        for i in range(2):
            isp.add(msg("nd", [("To", ALICE)], msgid="nd-1"))
        isp.start()
        d.start()
        run_cycle(d)
        S.eq(by_tag(mailbox(d, ALICE)), {"nd": 2}, "collect_dedupe = none: both copies")


def test_received_routing_and_forgery():
    isp, d = pair(conf={"collect_parse_to_cc": "yes"})
    with isp, d:
        # Only the ISP's (topmost) Received names the recipient.
        isp.add(msg("rcv", [("Received", isp_received(ALICE)), ("To", "list@else.example")]))
        # The sender forged a Received with a for clause below the ISP's own: not read;
        # To/Cc decides (carol).
        isp.add(msg("forged", [("Received", isp_received()),
                               ("Received", "from x by fake.example with SMTP for "
                                            f"<{BOB}>; Tue, 1 Dec 2026 09:00:00 +0000"),
                               ("To", CAROL)]))
        isp.start()
        d.start()
        run_cycle(d)
        S.eq(by_tag(mailbox(d, ALICE)), {"rcv": 1}, "alice by the ISP's Received")
        S.eq(mailbox(d, BOB), [], "the forged Received routed nothing")
        S.eq(by_tag(mailbox(d, CAROL)), {"forged": 1}, "carol by To")


def test_delivered_to_and_real_loop():
    isp, d = pair()
    with isp, d:
        # The ISP's final delivery wrote Delivered-To above its Received: delivered.
        isp.add(msg("dt", [("Return-Path", "<s@else.example>"), ("Delivered-To", ALICE),
                           ("Received", isp_received(ALICE))]))
        # We delivered it to alice once; it came back through the ISP: a loop.
        isp.add(msg("loop", [("Delivered-To", ALICE),
                             ("Received", isp_received(ALICE, frm="mx.test")),
                             ("Return-Path", "<s@else.example>"),
                             ("Delivered-To", ALICE),
                             ("Received", "from c by mx.test (sharemail) with ESMTP id Q0; "
                                          "Tue, 1 Dec 2026 09:00:00 +0000")]))
        isp.start()
        d.start()
        run_cycle(d)
        settle(d, allow_left=1)  # the loop's bounce waits for a relay nobody listens on
        S.eq(by_tag(mailbox(d, ALICE)), {"dt": 1}, "delivered once; the loop refused")
        S.check("mail loop" in d.logtext(), "the loop is logged")


def test_oversize():
    isp, d = pair(options="leave_days=0 max_size=8k", accounts=(ALICE,))
    with isp, d:
        isp.add(msg("big", [("X-Rcpt-To", ALICE)], body=(b"z" * 78 + b"\r\n") * 200))
        isp.add(msg("small", [("X-Rcpt-To", ALICE)]))
        isp.start()
        d.start()
        run_cycle(d, "first cycle")
        run_cycle(d, "second cycle")
        S.eq(by_tag(mailbox(d, ALICE)), {"small": 1}, "only the small one")
        notices = mailbox(d, "postmaster@example.com")
        S.eq(len(notices), 1, "one postmaster notice over two cycles")
        S.check(notices and b"over max_size" in notices[0], "the notice says why")
        S.eq(isp.count(), 1, "the big one stays on the ISP")


def test_fallback():
    isp, d = pair(conf={"collect_fallback": "catch@example.com"},
                  accounts=(ALICE, "catch@example.com"))
    with isp, d:
        isp.add(msg("nobody", [("To", "someone@else.example")]))
        isp.start()
        d.start()
        run_cycle(d)
        S.eq(by_tag(mailbox(d, "catch@example.com")), {"nobody": 1}, "to the fallback")
        S.eq(isp.count(), 0, "deleted")


def test_no_fallback_kept():
    isp, d = pair()
    with isp, d:
        isp.add(msg("kept", [("To", "someone@else.example")]))
        isp.add(msg("ok", [("To", ALICE)]))
        isp.start()
        d.start()
        run_cycle(d, "first cycle")
        run_cycle(d, "second cycle")
        S.eq(by_tag(mailbox(d, ALICE)), {"ok": 1}, "alice")
        S.eq(isp.count(), 1, "the unroutable message stays on the ISP")
        S.eq(d.logtext().count("no local recipient"), 1, "logged once")


def test_leave_days_and_restart():
    isp, d = pair(options="leave_days=3")
    with isp, d:
        isp.add(msg("l1", [("X-Rcpt-To", ALICE)]))
        isp.add(msg("l2", [("X-Rcpt-To", BOB)]))
        isp.start()
        d.start()
        run_cycle(d, "first cycle")
        S.eq(isp.count(), 2, "leave_days=3: kept on the ISP")
        run_cycle(d, "second cycle")
        # A third ISP copy of l1 (a new UIDL) arrives while the daemon is down.
        d.stop()
        isp.add(msg("l1", [("X-Rcpt-To", ALICE)]))
        d.start()
        run_cycle(d, "after the restart")
        S.eq(by_tag(mailbox(d, ALICE)), {"l1": 1}, "alice once (UIDLs and dedupe remembered)")
        S.eq(by_tag(mailbox(d, BOB)), {"l2": 1}, "bob once")
        S.eq(isp.count(), 3, "still kept")
        # Four days later (the records made older while the daemon is down): deleted.
        d.stop()
        db = sqlite3.connect(os.path.join(d.state, "collect.db"))
        db.execute("UPDATE uidl SET since = since - 4 * 86400")
        db.commit()
        db.close()
        d.start()
        run_cycle(d, "four days later")
        S.eq(isp.count(), 0, "deleted once leave_days passed")
        S.eq(by_tag(mailbox(d, ALICE)), {"l1": 1}, "still once")


def test_foreign_alias_relayed():
    """A collected message for a local alias with an outside target is relayed by the queue."""
    from fakepeer import FakePeer
    with FakePeer() as peer:
        isp, d = pair(conf={"relay_route": f"partner.example [{peer.host}]:{peer.port}"})
        with isp, d:
            d.cli("alias", "add", "sales@example.com", "outside@partner.example")
            isp.add(msg("fw", [("Return-Path", "<s@else.example>"),
                               ("X-Rcpt-To", "sales@example.com")]))
            isp.start()
            d.start()
            run_cycle(d)
            S.check(peer.wait_messages(1, timeout=20, accepted=True), "relayed to the peer")
            ms = peer.accepted()
            S.eq(len(ms), 1, "one copy relayed")
            if ms:
                S.eq(ms[0].rcpts, ["outside@partner.example"], "to the alias's target")
                S.eq(ms[0].mail_from, "s@else.example", "the sender from Return-Path")
                S.check(b"X-Test-Tag: fw" in ms[0].raw, "the message itself")


def test_domain_sharing_peer():
    """A collected message for a user of a Domain Sharing peer goes to the peer's mailbox."""
    import sharingutil
    isp = isp_pop3.IspDovecot()
    with isp, sharingutil.Mesh({"a": [ALICE], "b": [BOB]}, start=False) as m:
        a = m["a"]
        with open(os.path.join(a.d.dir, "isp.pw"), "w") as f:
            f.write(isp_pop3.PASSWORD + "\n")
        a.configure({"collect_source": f"pop3://isp@127.0.0.1:{isp.port} password_file=isp.pw "
                                       "tls=none interval=7d leave_days=0"})
        isp.add(msg("ds", [("Return-Path", "<s@else.example>"), ("X-Rcpt-To", BOB)]))
        isp.add(msg("here", [("X-Rcpt-To", ALICE)]))
        isp.start()
        m.start("b")
        m.start("a")
        p = collect_now(a.d)
        S.eq(p.returncode, 0, f"collect now on a: {p.stdout}{p.stderr}")
        S.eq(by_tag(m.wait_mail("b", BOB)), {"ds": 1}, "bob's copy reached the peer")
        S.eq(by_tag(m.wait_mail("a", ALICE)), {"here": 1}, "alice's stayed here")
        S.check(m.quiet(), "both queues empty")
        S.eq(m.mailbox("a", BOB), [], "nothing for bob on a")


def test_sighup_adds_a_source():
    """Started without collect_source; a SIGHUP adds one and `collect now` collects it."""
    import signal
    isp, d = pair()
    with isp, d:
        src = None
        keys = {}
        with open(d.conf_path) as f:
            for line in f:
                k, _, v = line.rstrip("\n").partition(" = ")
                if k == "collect_source":
                    src = v
                else:
                    keys[k] = v
        d.write_conf(keys)
        isp.add(msg("hup", [("X-Rcpt-To", ALICE)]))
        isp.start()
        d.start()
        p = collect_now(d)
        S.eq(p.returncode, 78, f"no source yet: {p.stderr}")
        d.write_conf({**keys, "collect_source": src})
        d.proc.send_signal(signal.SIGHUP)
        # The CLI reads the new file at once; the daemon takes it within its reload.
        for _ in range(100):
            p = collect_now(d)
            if p.returncode == 0:
                break
        S.eq(p.returncode, 0, f"after SIGHUP: {p.stdout}{p.stderr}")
        settle(d)
        S.eq(by_tag(mailbox(d, ALICE)), {"hup": 1}, "collected")


def test_collect_now_failures():
    isp, d = pair()
    with isp, d:
        isp.add(msg("x", [("To", ALICE)]))
        isp.start()
        p = collect_now(d)
        S.eq(p.returncode, 75, f"daemon not running: {p.stderr}")
        S.check("not running" in p.stderr, "says so")
        d.start()
        p = collect_now(d, "pop3://nobody@else.example")
        S.eq(p.returncode, 64, f"unknown source: {p.stderr}")
        # A wrong password: the cycle fails, the reason printed.
        with open(os.path.join(d.dir, "isp.pw"), "w") as f:
            f.write("wrong\n")
        p = collect_now(d, "127.0.0.1")
        S.eq(p.returncode, 1, f"login refused: {p.stdout}{p.stderr}")
        S.check("failed" in p.stderr and "auth" in p.stderr.lower(), f"reason: {p.stderr}")
        S.eq(isp.count(), 1, "nothing taken")
        with open(os.path.join(d.dir, "isp.pw"), "w") as f:
            f.write(isp_pop3.PASSWORD + "\n")
        p = run_cycle(d, "password fixed (re-read each cycle)")
        S.check("ok collected=1" in p.stdout, f"counts: {p.stdout}")
        st = d.cli("collect", "status")
        S.check("ok collected=1" in st.stdout, f"status: {st.stdout}")
        S.eq(by_tag(mailbox(d, ALICE)), {"x": 1}, "collected")
        isp.stop()
        p = collect_now(d)
        S.eq(p.returncode, 1, f"ISP unreachable: {p.stdout}{p.stderr}")


def main():
    why = isp_pop3.available()
    if why:
        S.current = "collect"
        S.skip(why)
        print(f"{S.passed} passed, {S.failed} failed, {S.skipped} skipped")
        return 0
    return S.run([test_routing_headers, test_bcc_and_copies, test_to_cc_dedupe,
                  test_dedupe_none, test_received_routing_and_forgery,
                  test_delivered_to_and_real_loop, test_oversize, test_fallback,
                  test_no_fallback_kept, test_leave_days_and_restart, test_foreign_alias_relayed,
                  test_domain_sharing_peer, test_sighup_adds_a_source,
                  test_collect_now_failures])


if __name__ == "__main__":
    sys.exit(main())
