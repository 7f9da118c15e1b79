#!/usr/bin/env python3
"""The collector against a hostile or broken POP3 server (faultpop3.py, scripted), with
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
from faultpop3 import FaultPop3  # noqa: E402
from smtest import Suite  # noqa: E402

S = Suite("collect_faults")
ALICE = "alice@example.com"
ENV = {"SHAREMAIL_TEST_COLLECT_TIMEOUT": "3"}
BOUND = 30.0  # seconds a faulty cycle may take at most (deadlines are 3 s)


def messages(n=3, lines=300):
    return [msg(f"m{i}", [("X-Rcpt-To", ALICE)], body=(b"line %d\r\n" % i) * lines)
            for i in range(n)]


def faulty_then_clean(faults, options="leave_days=0", always=(), tls=None, n=3, lines=300):
    srv = FaultPop3(messages(n, lines), faults=faults, always=always, **(tls or {}))
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


def fault_case(fault, lines=300):
    srv, d = faulty_then_clean({fault}, lines=lines)
    try:
        d.start(extra_env=ENV)
        check_faulty_cycle(d, fault)
        settle(d)
        S.check(len(by_tag(mailbox(d, ALICE))) < 3, f"{fault}: the faulty session did not finish")
        check_clean_cycle(srv, d, fault)
    finally:
        d.cleanup()
        srv.stop()


def test_endless_data():
    fault_case("endless-data")


def test_silent_data():
    fault_case("silent-data")


def test_drop_during_retr():
    fault_case("drop-retr")


def test_lying_size():
    # Message 1 is listed as 100 octets and sends 20 KiB: more than the client's allowance
    # (listed + 1/8 + 4 KiB), so the session ends; the honest listing later collects it.
    fault_case("lie-size", lines=2500)


def test_repeated_uidl():
    srv = FaultPop3(messages(3), always={"dup-uidl"})
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


def make_cert(dirname):
    cert, key = os.path.join(dirname, "cert.pem"), os.path.join(dirname, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                    "-subj", "/CN=pop.isp.example", "-keyout", key, "-out", cert],
                   check=True, capture_output=True, timeout=60)
    return {"certfile": cert, "keyfile": key}


def tls_case(fault, expect_ok):
    import tempfile
    tmp = tempfile.mkdtemp(prefix="faultpop3-tls-")
    tls = make_cert(tmp)
    srv, d = faulty_then_clean({fault}, always={"stls"}, tls=tls)
    try:
        d.start(extra_env=ENV)
        if expect_ok:
            check_clean_cycle(srv, d, fault)
        else:
            check_faulty_cycle(d, fault)
            S.check(not srv.pass_in_clear, f"{fault}: no password sent in the clear")
            S.eq(mailbox(d, ALICE), [], f"{fault}: nothing collected")
            check_clean_cycle(srv, d, f"{fault}, then a real handshake")
        S.check(not srv.pass_in_clear, f"{fault}: the password only inside TLS")
    finally:
        d.cleanup()
        srv.stop()
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)


def test_stls_silence():
    tls_case("stls-silent", expect_ok=False)


def test_stls_injection():
    # The injected "+OK injected" is discarded, never read as the reply to a command sent
    # inside TLS: the session stays in step and collects everything.
    tls_case("stls-inject", expect_ok=True)


if __name__ == "__main__":
    sys.exit(S.run([test_endless_data, test_silent_data, test_drop_during_retr,
                    test_lying_size, test_repeated_uidl, test_stls_silence,
                    test_stls_injection]))
