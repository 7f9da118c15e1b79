#!/usr/bin/env python3
"""The collector against a hostile or broken POP3 server (fakepop3.py, scripted), with
the real sharemaild: a multi-line reply that never ends, a server that goes silent in
the middle of a message, lying sizes, repeated UIDLs, a drop during RETR, silence after
STLS, plaintext injected after "+OK begin TLS". Each faulty session must end within a
bound (SHAREMAIL_TEST_COLLECT_TIMEOUT makes every POP3 deadline 3 s), `collect now`
must report the failure, and after a clean session every message must be in its
mailbox exactly once with nothing left on the server (nothing lost, no duplicates).
"""
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from collectutil import by_tag, collect_now, collector, mailbox, msg, settle  # noqa: E402
from fakepop3 import FakePop3, Mailbox  # noqa: E402
from isp_pop3 import PASSWORD  # noqa: E402
from smtest import Suite  # noqa: E402

S = Suite("collect_faults")
ALICE = "alice@example.com"
ENV = {"SHAREMAIL_TEST_COLLECT_TIMEOUT": "3"}
BOUND = 30.0  # seconds a faulty cycle may take at most (deadlines are 3 s)


def messages(n=3, lines=300):
    return [msg(f"m{i}", [("X-Rcpt-To", ALICE)], body=(b"line %d\r\n" % i) * lines)
            for i in range(n)]


class Server:
    """A FakePop3 whose faults apply to its first session only (fault_sessions=1), unless
    `always`; records whether a PASS ever came outside TLS (`pass_in_clear`)."""

    def __init__(self, n=3, lines=300, faults=None, always=None, tls=None):
        self.box = Mailbox(messages(n, lines))
        self.pass_in_clear = False
        self.srv = FakePop3(self.box, users={"isp": PASSWORD}, apop=0, tls=tls,
                            faults=faults or always, fault_sessions=None if always else 1,
                            hook=self._hook, timeout=60)
        self.port = self.srv.port

    def _hook(self, conn, verb, arg):
        if verb == "PASS" and not conn.tls:
            self.pass_in_clear = True
        return None

    def left(self):
        """The unique-ids still in the maildrop."""
        return self.box.uids()

    def wait_faulty_closed(self):
        # The next session must not find the maildrop still locked by the faulty one.
        S.check(self.srv.wait_closed(1, timeout=BOUND), "the faulty session has ended")

    def stop(self):
        S.eq(self.srv.failures, [], "fakepop3 itself raised nothing")
        self.srv.stop()


def faulty_then_clean(faults, options="leave_days=0", tls=None, n=3, lines=300):
    srv = Server(n, lines, faults=faults, tls=tls)
    d = collector(srv.port, accounts=(ALICE,), options=options,
                  tls="starttls" if tls else "none")
    return srv, d


def check_faulty_cycle(d, what):
    t0 = time.monotonic()
    p = collect_now(d, timeout=int(BOUND))
    secs = time.monotonic() - t0
    S.eq(p.returncode, 1, f"{what}: the cycle fails: {p.stdout}{p.stderr}")
    S.check(secs < BOUND, f"{what}: bounded ({secs:.1f} s)")
    return p


def check_clean_cycle(srv, d, what, n=3):
    p = collect_now(d)
    S.eq(p.returncode, 0, f"{what}: the clean cycle: {p.stdout}{p.stderr}")
    settle(d)
    S.eq(by_tag(mailbox(d, ALICE)), {f"m{i}": 1 for i in range(n)},
         f"{what}: every message once")
    S.eq(srv.left(), [], f"{what}: nothing left on the server")


def fault_case(fault, faults, lines=300):
    srv, d = faulty_then_clean(faults, lines=lines)
    try:
        d.start(extra_env=ENV)
        check_faulty_cycle(d, fault)
        settle(d)
        S.check(len(by_tag(mailbox(d, ALICE))) < 3, f"{fault}: the faulty session did not finish")
        srv.wait_faulty_closed()
        check_clean_cycle(srv, d, fault)
    finally:
        d.cleanup()
        srv.stop()


def test_endless_data():
    fault_case("endless-data", {"retr_endless": {1}})


def test_silent_data():
    fault_case("silent-data", {"retr_stall": {1}})


def test_drop_during_retr():
    fault_case("drop-retr", {"retr_drop": {1}})


def test_lying_size():
    # Message 1 is listed as 100 octets and sends 20 KiB: more than the client's allowance
    # (listed + 1/8 + 4 KiB), so the session ends; the honest listing later collects it.
    fault_case("lie-size", {"list_size": {1: 100}}, lines=2500)


def test_repeated_uidl():
    # Message 2 is listed with message 1's unique-id ("m1", Mailbox's default) every time.
    srv = Server(3, always={"uidl": {2: "m1"}})
    d = collector(srv.port, accounts=(ALICE,), options="leave_days=0")
    try:
        d.start(extra_env=ENV)
        for i in range(2):
            p = collect_now(d)
            S.eq(p.returncode, 0, f"cycle {i}: {p.stdout}{p.stderr}")
            settle(d)
        S.eq(by_tag(mailbox(d, ALICE)), {"m2": 1}, "the message with its own UIDL, once")
        S.eq(len(srv.left()), 2, "the two sharing a UIDL stay on the server (never lost)")
        S.check("repeat an earlier unique-id" in d.logtext(), "logged")
    finally:
        d.cleanup()
        srv.stop()


def tls_case(fault, faults, expect_ok):
    srv, d = faulty_then_clean(faults, tls="starttls")
    try:
        d.start(extra_env=ENV)
        if expect_ok:
            check_clean_cycle(srv, d, fault)
        else:
            check_faulty_cycle(d, fault)
            S.check(not srv.pass_in_clear, f"{fault}: no password sent in the clear")
            S.eq(mailbox(d, ALICE), [], f"{fault}: nothing collected")
            srv.wait_faulty_closed()
            check_clean_cycle(srv, d, f"{fault}, then a real handshake")
        S.check(not srv.pass_in_clear, f"{fault}: the password only inside TLS")
    finally:
        d.cleanup()
        srv.stop()


def test_stls_silence():
    tls_case("stls-silent", {"stls_silence": True}, expect_ok=False)


def test_stls_injection():
    # The injected "+OK injected" is discarded, never read as the reply to a command sent
    # inside TLS: the session stays in step and collects everything.
    tls_case("stls-inject", {"stls_inject": b"+OK injected\r\n"}, expect_ok=True)


if __name__ == "__main__":
    sys.exit(S.run([test_endless_data, test_silent_data, test_drop_during_retr,
                    test_lying_size, test_repeated_uidl, test_stls_silence,
                    test_stls_injection]))
