#!/usr/bin/env python3
"""collect_transport against a scripted fake POP3 server (fakepop3.py): the POP3 client
and its libevent glue over real sockets and real TLS, driven by build/tests/pop3c_drive
(the collector's policy, simplified: retrieve every message whose uid is not a repeat,
delete what arrived whole, quit). Each fault must end in bounded time with nothing
delivered twice, nothing half-delivered, and nothing deleted that was not retrieved;
a session that does not end by QUIT deletes nothing. Also checks fakepop3 itself (the
maildrop's UPDATE-state semantics that the collector's crash tests rely on) with
Python's poplib, an independent client."""
import os
import poplib
import re
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from smtest import BUILD, Suite, free_tcp_port  # noqa: E402
from peerutil import bounded  # noqa: E402
from fakepop3 import FakePop3, Mailbox  # noqa: E402

S = Suite("collect_transport")
DRIVE = os.path.join(BUILD, "tests", "pop3c_drive")
T = 30  # hard seconds per test

MSGS = [
    b"From: a@isp.test\r\nTo: b@example.com\r\nSubject: one\r\n\r\nhello\r\n",
    b"Subject: two\r\n\r\n.a line starting with a dot\r\n..two dots\r\n.\r\nend\r\n",
    b"Subject: three\r\n\r\n" + b"L" * 998 + b"\r\n" + b"8-bit: caf\xc3\xa9\r\n",
]


def password_file(pw="secret"):
    f = tempfile.NamedTemporaryFile("w", delete=False, prefix="pop3c-pw-")
    f.write(pw + "\n")
    f.close()
    return f.name


class Run:
    """One pop3c_drive run: its output lines parsed, the files it wrote."""

    def __init__(self, port, *extra, user="isp", pw="secret", dele=True, max_seconds=20):
        self.out = tempfile.mkdtemp(prefix="pop3c-out-")
        pwf = password_file(pw)
        argv = [DRIVE, "--port", str(port), "--user", user, "--pass-file", pwf, "--out",
                self.out, "--max-seconds", str(max_seconds)] + list(extra)
        if dele:
            argv.append("--dele")
        t0 = time.monotonic()
        p = subprocess.run(argv, capture_output=True, text=True, timeout=max_seconds + 10)
        self.seconds = time.monotonic() - t0
        os.unlink(pwf)
        self.rc = p.returncode
        self.stdout = p.stdout
        self.stderr = p.stderr
        self.lines = p.stdout.splitlines()
        # Every run ends (DONE, exit 0) and, under ASan (make check-asan-integration),
        # without a sanitizer report.
        S.eq(self.rc, 0, f"pop3c_drive exit status ({p.stdout[-300:]!r})")
        S.check("Sanitizer" not in p.stderr, f"no sanitizer report: {p.stderr[-2000:]}")
        self.done = {}
        for l in self.lines:
            if l.startswith("DONE "):
                head, _, reason = l.partition(" reason=")
                # Values may hold spaces ("end=login refused"): split before each key.
                self.done = dict(re.findall(r"(\w+)=(.*?)(?= \w+=|$)", head[5:]))
                self.done["reason"] = reason

    def nums(self, tag):
        return [int(l.split()[1]) for l in self.lines if l.startswith(tag + " ")]

    def eml(self, n):
        p = os.path.join(self.out, f"{n}.eml")
        return open(p, "rb").read() if os.path.exists(p) else None

    def files(self):
        return sorted(os.listdir(self.out))

    def __repr__(self):
        return f"<run rc={self.rc} {self.stdout!r} {self.stderr!r}>"


def healthy(srv, what):
    S.eq(srv.failures, [], f"{what}: no fakepop3 failures")
    for c in srv.connections:
        S.eq(c.errors, [], f"{what}: the client sent only CRLF lines, nothing out of turn")


@bounded(T)
def test_fakepop3_with_poplib():
    """The fake's maildrop as an independent client sees it: DELE takes effect at QUIT
    only; a dropped session deletes nothing; a second session meanwhile is [IN-USE]."""
    box = Mailbox(MSGS)
    with FakePop3(box) as srv:
        p = poplib.POP3(srv.host, srv.port, timeout=5)
        p.user("isp")
        p.pass_("secret")
        S.eq(p.stat()[0], 3, "STAT")
        S.eq(b"\r\n".join(p.retr(2)[1]) + b"\r\n", MSGS[1], "RETR unstuffed")
        p2 = poplib.POP3(srv.host, srv.port, timeout=5)
        p2.user("isp")
        S.raises(poplib.error_proto, lambda: p2.pass_("secret"), "second session refused")
        p2.quit()
        p.dele(1)
        p.sock.shutdown(socket.SHUT_RDWR)  # a drop: nothing is deleted
        p.file.close()
        p.sock.close()
        S.check(srv.wait_closed(2, 5), "sessions ended")
        S.eq(box.uids(), ["m1", "m2", "m3"], "drop deleted nothing")
        p = poplib.POP3(srv.host, srv.port, timeout=5)
        p.apop("isp", "secret")
        p.dele(1)
        p.quit()
        S.check(srv.wait_closed(3, 5), "session ended")
        S.eq(box.uids(), ["m2", "m3"], "QUIT deleted the marked one")
        healthy(srv, "poplib")


@bounded(T)
def test_collect_all_and_delete():
    box = Mailbox(MSGS)
    with FakePop3(box) as srv:
        r = Run(srv.port)
        S.eq(r.rc, 0, f"exit {r}")
        S.eq(r.done.get("end"), "ok", f"ended by QUIT {r}")
        for i, m in enumerate(MSGS, 1):
            S.eq(r.eml(i), m, f"message {i} byte-exact")
        S.eq(r.nums("DELE_OK"), [1, 2, 3], "each deleted after it arrived")
        S.check(srv.wait_closed(1), "closed")
        c = srv.connections[0]
        S.eq(c.commands[:5], ["CAPA", "APOP isp ***", "STAT", "LIST", "UIDL"],
             "APOP (the greeting has a timestamp), then the listing")
        S.eq(c.ended, "quit", "QUIT")
        S.eq(box.uids(), [], "the maildrop is empty")
        healthy(srv, "collect all")


@bounded(T)
def test_user_pass_without_capa_or_pipelining():
    box = Mailbox(MSGS)
    with FakePop3(box, apop=0, capa=None) as srv:
        r = Run(srv.port, "--auth", "user")
        S.eq(r.done.get("end"), "ok", f"ok {r}")
        S.eq([r.eml(i) for i in (1, 2, 3)], MSGS, "all three")
        c = srv.connections[0]
        S.eq(c.commands[:3], ["CAPA", "USER isp", "PASS ***"], "USER/PASS after a CAPA -ERR")
        # Without PIPELINING each command waits for the previous reply.
        S.eq([x for x in c.commands if x.startswith("RETR")], ["RETR 1", "RETR 2", "RETR 3"],
             "RETRs in order")
        healthy(srv, "user/pass")


@bounded(T)
def test_wrong_password_and_in_use():
    with FakePop3(Mailbox(MSGS), apop=0) as srv:
        r = Run(srv.port, pw="wrong")
        S.eq(r.done.get("end"), "login refused", f"wrong password {r}")
        S.eq(r.done.get("code"), "AUTH", "[AUTH]")
        S.check("wrong" not in r.stdout and "wrong" not in r.stderr, "password never printed")
    with FakePop3(Mailbox(MSGS), faults={"login": "in-use"}) as srv:
        r = Run(srv.port)
        S.eq(r.done.get("end"), "mailbox in use", f"in use {r}")
        S.eq(r.files(), [], "nothing collected")


@bounded(T)
def test_starttls():
    box = Mailbox(MSGS)
    with FakePop3(box, tls="starttls", apop=0) as srv:
        r = Run(srv.port, "--tls", "starttls", "--name", "pop.isp.test")
        S.eq(r.done.get("end"), "ok", f"ok {r}")
        S.eq(r.done.get("tls"), "1", "over TLS")
        S.eq([r.eml(i) for i in (1, 2, 3)], MSGS, "all three")
        c = srv.connections[0]
        S.check(c.tls, "the server saw TLS")
        S.eq(c.commands[:4], ["CAPA", "STLS", "CAPA", "USER isp"], "CAPA again after TLS")
        healthy(srv, "starttls")


@bounded(T)
def test_starttls_required_not_offered():
    with FakePop3(Mailbox(MSGS), tls=None) as srv:
        r = Run(srv.port, "--tls", "starttls")
        S.eq(r.done.get("end"), "TLS unavailable", f"refused {r}")
        c = srv.connections[0]
        S.check(not any(x.startswith(("USER", "PASS", "APOP")) for x in c.commands),
                f"no credentials in plaintext {c.commands}")


@bounded(T)
def test_implicit_tls():
    with FakePop3(Mailbox(MSGS), tls="implicit") as srv:
        r = Run(srv.port, "--tls", "implicit")
        S.eq(r.done.get("end"), "ok", f"ok {r}")
        S.eq(r.done.get("tls"), "1", "over TLS")
        S.eq(r.eml(2), MSGS[1], "message 2 byte-exact")
        healthy(srv, "implicit")


@bounded(T)
def test_implicit_tls_to_a_plaintext_server():
    """tls=implicit against a server that greets in plaintext: the handshake fails, no
    credentials leave, bounded."""
    with FakePop3(Mailbox(MSGS)) as srv:
        r = Run(srv.port, "--tls", "implicit", "--t-tls", "3")
        S.eq(r.done.get("end"), "TLS failed", f"handshake failed {r}")
        S.check(srv.wait_closed(1), "closed")
        # The server reads the ClientHello as junk lines; no POP3 command came.
        cmds = srv.connections[0].commands
        S.check(not any(c.startswith(("USER", "PASS", "APOP", "CAPA", "STAT")) for c in cmds),
                f"no POP3 command, no credentials: {cmds!r}")


@bounded(T)
def test_silence_after_stls():
    with FakePop3(Mailbox(MSGS), tls="starttls", faults={"stls_silence": 1}) as srv:
        r = Run(srv.port, "--tls", "starttls", "--t-tls", "2")
        S.eq(r.done.get("end"), "TLS failed", f"handshake deadline {r}")
        S.check(r.seconds < 10, f"bounded wait ({r.seconds:.1f} s)")
        c = srv.connections[0]
        S.check(not any(x.startswith(("USER", "PASS", "APOP")) for x in c.commands),
                "no credentials sent")


@bounded(T)
def test_plaintext_injected_after_stls():
    """CVE-2011-0411 shape: octets after "+OK Begin TLS" in the same write are discarded,
    never read as replies. Here they would answer CAPA, USER and PASS ahead of time and
    offer a fake listing."""
    inject = b"+OK\r\nPIPELINING\r\n.\r\n+OK\r\n+OK\r\n+OK 9 9\r\n"
    box = Mailbox(MSGS)
    with FakePop3(box, tls="starttls", apop=0, faults={"stls_inject": inject}) as srv:
        r = Run(srv.port, "--tls", "starttls")
        S.eq(r.done.get("end"), "ok", f"ok {r}")
        S.eq(r.done.get("discarded"), str(len(inject)), "every injected octet discarded")
        S.check("LISTING stat=3/" in r.stdout, "the real listing, not the injected one")
        S.eq([r.eml(i) for i in (1, 2, 3)], MSGS, "all three")
        healthy(srv, "inject")


@bounded(T)
def test_multiline_reply_never_ends():
    """RETR 2 answers +OK and then data forever: the size bound (LIST size + 1/8 + slack)
    ends it; message 2 is not delivered, message 1 is, and nothing is deleted (no QUIT)."""
    box = Mailbox(MSGS)
    with FakePop3(box, faults={"retr_endless": {2}}) as srv:
        r = Run(srv.port, "--queue", "1")
        S.eq(r.done.get("end"), "protocol error", f"oversize {r}")
        S.check("ERROR 2 oversize" in r.stdout, "message 2 failed as oversize")
        S.eq(r.eml(1), MSGS[0], "message 1 delivered")
        S.eq(r.eml(2), None, "message 2 not delivered")
        S.check(r.seconds < 15, f"bounded ({r.seconds:.1f} s)")
        S.check(srv.wait_closed(1), "closed")
        S.eq(box.uids(), ["m1", "m2", "m3"], "no QUIT: nothing deleted")


@bounded(T)
def test_lying_size():
    box = Mailbox(MSGS)
    with FakePop3(box, faults={"list_size": {3: 100}}) as srv:
        r = Run(srv.port, "--size-slack", "64", "--queue", "1")
        S.check("ERROR 3 oversize" in r.stdout, f"message 3 oversize {r}")
        S.eq(r.eml(3), None, "message 3 not delivered")
        S.eq([r.eml(1), r.eml(2)], MSGS[:2], "the others delivered")
        S.eq(box.uids(), ["m1", "m2", "m3"], "nothing deleted (the session broke)")


@bounded(T)
def test_drop_during_retr():
    box = Mailbox(MSGS)
    with FakePop3(box, faults={"retr_drop": {2}}) as srv:
        r = Run(srv.port, "--queue", "1")
        S.eq(r.done.get("end"), "dropped", f"dropped {r}")
        S.eq(r.nums("ABORTED"), [2], "message 2 aborted")
        S.eq(r.eml(2), None, "message 2 not delivered, no partial file")
        S.eq(r.files(), ["1.eml"], "only message 1")
        S.check(srv.wait_closed(1), "closed")
        S.eq(box.uids(), ["m1", "m2", "m3"], "DELE 1 not committed without QUIT")


@bounded(T)
def test_stall_during_retr():
    box = Mailbox(MSGS)
    with FakePop3(box, faults={"retr_stall": {1}}) as srv:
        r = Run(srv.port, "--t-data", "2")
        S.eq(r.done.get("end"), "timeout", f"data deadline {r}")
        S.check(r.seconds < 10, f"bounded ({r.seconds:.1f} s)")
        S.check(1 in r.nums("ABORTED"), "message 1 aborted")
        S.eq(r.files(), [], "nothing delivered")


@bounded(T)
def test_repeated_uidls():
    box = Mailbox(MSGS)
    with FakePop3(box, faults={"uidl": {3: "m1"}}) as srv:
        r = Run(srv.port, dele=False)
        S.check("ENTRY 3 " in r.stdout and "m1 dup" in r.stdout, f"3 marked dup {r}")
        S.eq(r.nums("BEGIN"), [1, 2], "the repeat not retrieved")
        S.eq(r.done.get("end"), "ok", "ok")


@bounded(T)
def test_retr_err_per_message():
    box = Mailbox(MSGS)
    with FakePop3(box, faults={"retr_err": {2}}) as srv:
        r = Run(srv.port)
        S.check("ERROR 2 refused SYS/TEMP" in r.stdout, f"message 2 refused {r}")
        S.eq(r.done.get("end"), "ok", "the session went on")
        S.eq(r.files(), ["1.eml", "3.eml"], "the others delivered")
        S.eq(box.uids(), ["m2"], "only retrieved messages deleted")


@bounded(T)
def test_pause_suspends_deadlines():
    """The caller pauses at each message (as the collector waiting for its queue): the
    data deadline (1 s) does not run meanwhile (1.5 s pauses), and nothing is lost."""
    box = Mailbox(MSGS)
    with FakePop3(box) as srv:
        r = Run(srv.port, "--t-data", "1", "--t-reply", "1", "--pause-ms", "1500", "--queue",
                "1")
        S.eq(r.nums("PAUSED"), [1, 2, 3], f"paused at each message {r}")
        S.eq(r.done.get("end"), "ok", "ok after the pauses")
        S.eq([r.eml(i) for i in (1, 2, 3)], MSGS, "all three whole")
        S.eq(box.uids(), [], "all deleted")


@bounded(T)
def test_abort_by_caller():
    box = Mailbox(MSGS)
    with FakePop3(box) as srv:
        r = Run(srv.port, "--abort-at", "2", "--queue", "1")
        S.eq(r.done.get("end"), "local error", f"aborted {r}")
        S.check(2 in r.nums("ABORTED"), "message 2 aborted")
        S.eq(r.files(), ["1.eml"], "only message 1")
        S.check(srv.wait_closed(1), "closed")
        S.eq(srv.connections[0].ended, "client closed", "closed without QUIT")
        S.eq(box.uids(), ["m1", "m2", "m3"], "nothing deleted")


@bounded(T)
def test_connect_refused_then_next_address():
    port = free_tcp_port()
    r = Run(port)
    S.eq(r.done.get("end"), "connect failed", f"refused {r}")
    S.check("Connection refused" in r.done.get("reason", ""), "the reason says why")
    with FakePop3(Mailbox(MSGS)) as srv:
        r = Run(free_tcp_port(), "--second-port", str(srv.port))
        S.eq(r.done.get("end"), "ok", f"second address {r}")
        S.eq(r.done.get("connects"), "2", "two connects")


if __name__ == "__main__":
    if not os.access(DRIVE, os.X_OK):
        print(f"SKIP: {DRIVE} not built (make unit)")
        print("0 passed, 0 failed, 1 skipped")
        sys.exit(0)
    sys.exit(S.run([v for k, v in sorted(globals().items()) if k.startswith("test_")]))
