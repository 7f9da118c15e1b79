#!/usr/bin/env python3
"""`sharemail queue list|show|delete|flush`: outputs, exit codes and the queue files.

Queue files are written here by an independent Python implementation of the
format documented in src/queue/queue_file.h (magic line, data, length-prefixed
records, END record with SHA-256), so the test also pins the on-disk format.
One test runs the real daemon: a relayed message sent with smtplib waits in the
queue for remote delivery, and the CLI lists, shows and deletes it; damaged files
and junk names present at start-up are quarantined.
"""
import hashlib
import os
import re
import smtplib
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import smtest  # noqa: E402
from smtest import Suite, free_tcp_port  # noqa: E402

S = Suite("queue_cli")
WAIT = 10.0  # a bound for the daemon, never asserted
ID_RE = re.compile(r"^[0-9A-Za-z]{11,31}$")
DELIVERED, FAILED, DEFERRED, REMOTE = 1, 2, 3, 4


def rec(t, v):
    return t + struct.pack(">I", len(v)) + v


def with_end(magic, data, recs):
    body = magic + data + recs
    return body + rec(b"E", struct.pack(">Q", len(data)) + hashlib.sha256(body).digest())


def msg_file(data, mail_from, rcpts, helo=b"client.example.org", received_at=None):
    recs = rec(b"F", mail_from) + rec(b"H", helo) + rec(b"C", b"192.0.2.9")
    recs += rec(b"T", struct.pack(">q", int(received_at or time.time())))
    recs += rec(b"S", b"\x00")
    for r in rcpts:
        recs += rec(b"P", rec(b"a", r))
    return with_end(b"sharemail-queue 1\n", data, recs)


def state_file(states):
    """states: list of (state, attempts, next_try, status bytes). Version 1, as the code
    before final mailboxes wrote it: files like it may be on disk and are still read."""
    recs = b""
    for st, att, nxt, status in states:
        inner = rec(b"s", bytes([st])) + rec(b"A", struct.pack(">I", att))
        inner += rec(b"N", struct.pack(">q", nxt)) + rec(b"M", status)
        recs += rec(b"r", inner)
    return with_end(b"sharemail-state 1\n", b"", recs)


def state_file_v2(rcpts):
    """rcpts: list of ((state, attempts, next_try, status), [(mailbox, state, attempts,
    status or None), ...]): version 2, with each recipient's final mailboxes."""
    recs = b""
    for (st, att, nxt, status), finals in rcpts:
        inner = rec(b"s", bytes([st])) + rec(b"A", struct.pack(">I", att))
        inner += rec(b"N", struct.pack(">q", nxt)) + rec(b"M", status)
        for box, fst, fatt, fstatus in finals:
            x = rec(b"a", box) + rec(b"s", bytes([fst])) + rec(b"A", struct.pack(">I", fatt))
            inner += rec(b"X", x + (rec(b"M", fstatus) if fstatus else b""))
        recs += rec(b"r", inner)
    return with_end(b"sharemail-state 2\n", b"", recs)


def qpath(d, *parts):
    return os.path.join(d.state, "queue", *parts)


def put(d, sub, name, content):
    os.makedirs(qpath(d, sub), exist_ok=True)
    with open(qpath(d, sub, name), "wb") as f:
        f.write(content)


def run(d, *args):
    return d.cli("queue", *args, check=False)


def expect(p, code, what):
    S.eq(p.returncode, code, f"{what}: exit status (stderr {p.stderr!r})")


def test_usage_and_empty_queue():
    with smtest.Daemon(minger=False) as d:
        expect(run(d), 64, "no subcommand")
        expect(run(d, "bogus"), 64, "unknown subcommand")
        expect(run(d, "show"), 64, "show without id")
        expect(run(d, "list", "extra"), 64, "list with an argument")
        p = run(d, "list")
        expect(p, 0, "list of an empty queue")
        S.eq(p.stdout, "", "empty list prints nothing")
        for sub in ("tmp", "msg", "state", "quarantine"):
            S.check(os.path.isdir(qpath(d, sub)), f"queue/{sub} created")
        p = run(d, "show", "0000000000nothere")
        expect(p, 1, "show of a missing id")
        S.check("no such message" in p.stderr, f"show missing: {p.stderr!r}")
        expect(run(d, "delete", "../directory.db"), 1, "delete with a path in the id")
        p = run(d, "flush")
        expect(p, 0, "flush of an empty queue")
        S.eq(p.stdout, "0 recipients due now\n", "flush output")


def test_list_show_flush_delete_files_written_by_python():
    with smtest.Daemon(minger=False) as d:
        run(d, "list")  # creates the folders
        now = int(time.time())
        a, b = "08AAAAAAAAaaaaaaaa", "08AAAAAAABbbbbbbbb"
        data = b"Subject: test\r\n\r\nhello\r\n"
        put(d, "msg", a, msg_file(data, b"sender@example.org",
                                  [b"one@example.net", b"two@example.net"],
                                  received_at=now - 600))
        put(d, "state", a, state_file([(DEFERRED, 2, now + 3600, b"451 4.4.1 no answer"),
                                       (REMOTE, 0, 0, b"450 4.4.0 remote")]))
        hostile = b"evil\x1b[31m\r\nX-Forged: yes\\"
        put(d, "msg", b, msg_file(b"x\r\n", b"", [b"r@example.net"], helo=hostile,
                                  received_at=now - 7200))
        bad = msg_file(b"y\r\n", b"s@example.org", [b"r@example.net"])
        put(d, "msg", "08AAAAAAACcccccccc", bad[:-1])

        p = run(d, "list")
        expect(p, 0, "list")
        lines = p.stdout.splitlines()
        S.eq(len(lines), 3, f"three lines: {p.stdout!r}")
        S.eq(lines[0], f"{a} 10m <sender@example.org> 2 deferred=1 remote=1", "list line 1")
        S.eq(lines[1], f"{b} 2h <> 1 pending=1", "list line 2 (no state file: pending)")
        S.eq(lines[2], "08AAAAAAACcccccccc damaged", "list line 3")

        p = run(d, "show", a)
        expect(p, 0, "show")
        S.check(f"id: {a}\n" in p.stdout, "show id")
        S.check("from: <sender@example.org>\n" in p.stdout, "show from")
        S.check(f"size: {len(data)}\n" in p.stdout, f"show size: {p.stdout!r}")
        S.check("rcpt: <one@example.net> state=deferred attempts=2 next=" in p.stdout,
                "show deferred recipient")
        S.check('status="451 4.4.1 no answer"' in p.stdout, "show status")
        S.check("rcpt: <two@example.net> state=remote" in p.stdout, "show remote recipient")

        p = run(d, "show", b)
        expect(p, 0, "show hostile")
        S.check("\x1b" not in p.stdout and "\r" not in p.stdout, "no raw control bytes")
        S.check("helo: evil\\x1b[31m\\x0d\\x0aX-Forged: yes\\x5c\n" in p.stdout,
                f"hostile helo escaped: {p.stdout!r}")
        expect(run(d, "show", "08AAAAAAACcccccccc"), 1, "show damaged")

        p = run(d, "flush")
        expect(p, 0, "flush")
        S.eq(p.stdout, "1 recipients due now\n", "flush count")
        p = run(d, "show", a)
        m = re.search(r"one@example.net> state=deferred attempts=2 next=(\S+)", p.stdout)
        S.check(m is not None, "still deferred after flush")
        if m:
            due = time.mktime(time.strptime(m.group(1), "%Y-%m-%dT%H:%M:%SZ")) - time.timezone
            S.check(due <= time.time() + 1, f"next try is now, got {m.group(1)}")
        S.check("two@example.net> state=remote" in p.stdout, "flush left remote alone")

        p = run(d, "delete", a)
        expect(p, 0, "delete")
        S.eq(p.stdout, f"deleted {a}\n", "delete output")
        S.check(not os.path.exists(qpath(d, "msg", a)), "message file removed")
        S.check(not os.path.exists(qpath(d, "state", a)), "state file removed")
        expect(run(d, "delete", a), 1, "delete twice")
        S.eq(len(run(d, "list").stdout.splitlines()), 2, "two left")


def test_final_mailboxes_written_by_python():
    """A version 2 state file: every final mailbox of an alias with its own state."""
    with smtest.Daemon(minger=False) as d:
        run(d, "list")
        now = int(time.time())
        a = "08AAAAAAAAteamteam"
        put(d, "msg", a, msg_file(b"Subject: t\r\n\r\nhi\r\n", b"s@example.org",
                                  [b"team@example.com", b"far@example.net"],
                                  received_at=now - 30))
        put(d, "state", a, state_file_v2([
            ((DEFERRED, 1, now + 300, b"452 4.2.2 mailbox full"),
             [(b"arvel@example.com", DELIVERED, 1, b"250 2.0.0 delivered to maildir"),
              (b"carol@example.com", DEFERRED, 1, b"452 4.2.2 mailbox full"),
              (b"x\x1b[0m@example.com", FAILED, 1, None)]),
            ((REMOTE, 1, 0, b"450 4.4.0 remote delivery not built yet"), [])]))
        p = run(d, "list")
        expect(p, 0, "list")
        S.eq(p.stdout, f"{a} 30s <s@example.org> 2 deferred=1 remote=1; 3 mailboxes "
                       "delivered=1 failed=1 deferred=1\n", "list counts the mailboxes")
        p = run(d, "show", a)
        expect(p, 0, "show")
        want = ('rcpt: <team@example.com> state=deferred attempts=1 next=',
                '\n  mailbox: <arvel@example.com> state=delivered attempts=1 '
                'status="250 2.0.0 delivered to maildir"\n'
                '  mailbox: <carol@example.com> state=deferred attempts=1 '
                'status="452 4.2.2 mailbox full"\n'
                '  mailbox: <x\\x1b[0m@example.com> state=failed attempts=1\n'
                'rcpt: <far@example.net> state=remote attempts=1 notify=- '
                'status="450 4.4.0 remote delivery not built yet"\n')
        S.check(want[0] in p.stdout and p.stdout.endswith(want[1]), f"show: {p.stdout!r}")
        p = run(d, "flush")
        S.eq(p.stdout, "1 recipients due now\n", "flush")
        S.check("  mailbox: <carol@example.com> state=deferred attempts=1 " in run(d, "show", a).stdout,
                "flush keeps the mailboxes")
        # A damaged final mailbox record damages the state file: pending again, listed.
        put(d, "state", a, state_file_v2([((DEFERRED, 1, 0, b"x"), [(b"", DELIVERED, 1, None)]),
                                          ((REMOTE, 1, 0, b"y"), [])]))
        S.eq(run(d, "list").stdout, f"{a} 30s <s@example.org> 2 pending=2\n",
             "a damaged state counts as pending")


def test_daemon_queue_and_cli():
    port = free_tcp_port()
    d = smtest.Daemon(conf={"smtp_listen": f"127.0.0.1:{port}",
                            "smtp_trusted_networks": "127.0.0.0/8"}, minger=False)
    try:
        # Damage present before start-up: quarantined and logged, the server starts.
        run(d, "list")
        good = msg_file(b"Subject: old\r\n\r\nold\r\n", b"old@example.org",
                        [b"far@remote.example"])
        put(d, "msg", "08AAAAAAAAgoodgood", good)
        flipped = bytearray(good)
        flipped[30] ^= 1
        put(d, "msg", "08AAAAAAAAflipflip", bytes(flipped))
        put(d, "msg", "junk-name", b"junk")
        put(d, "tmp", "08AAAAAAAAunfinish", good[:40])
        d.start()
        log = d.logtext()
        for name in ("08AAAAAAAAflipflip", "junk-name"):
            S.check(os.path.exists(qpath(d, "quarantine", name)), f"{name} quarantined")
            S.check(name in log, f"{name} named in the log")
        S.check(not os.path.exists(qpath(d, "tmp", "08AAAAAAAAunfinish")), "tmp cleaned")

        body = "Subject: queued\r\n\r\nwaits for remote delivery\r\n"
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as c:
            c.ehlo("client.test")
            refused = c.sendmail("me@example.org", ["far@remote.example"], body)
            S.eq(refused, {}, "relay accepted from a trusted network")
        deadline = time.monotonic() + WAIT
        lines = []
        while time.monotonic() < deadline:
            lines = [ln for ln in run(d, "list").stdout.splitlines() if "<me@example.org>" in ln]
            if lines and "pending" not in lines[0]:
                break
            time.sleep(0.05)
        S.eq(len(lines), 1, f"one queued message: {lines!r}")
        if lines:
            qid = lines[0].split()[0]
            S.check(ID_RE.match(qid) is not None, f"queue id {qid!r}")
            S.check(lines[0].endswith(" 1 remote=1"), f"waits for remote: {lines[0]!r}")
            p = run(d, "show", qid)
            expect(p, 0, "show of a received message")
            S.check("client: 127.0.0.1\n" in p.stdout, f"client address: {p.stdout!r}")
            S.check("helo: client.test\n" in p.stdout, "helo recorded")
            m = re.search(r"size: (\d+)", p.stdout)
            S.check(m is not None and int(m.group(1)) >= len(body), "size recorded")
            with open(qpath(d, "msg", qid), "rb") as f:
                raw = f.read()
            S.check(raw.startswith(b"sharemail-queue 1\n"), "magic line")
            dlen = struct.unpack(">Q", raw[-40:-32])[0]
            S.eq(hashlib.sha256(raw[:-45]).digest(), raw[-32:], "checksum over the file")
            S.check(b"waits for remote delivery\r\n" in raw[18:18 + dlen], "data in place")
            p = run(d, "delete", qid)
            expect(p, 0, "delete while the daemon runs")
            S.check(not os.path.exists(qpath(d, "msg", qid)), "file gone")
        S.check(any(ln.startswith("08AAAAAAAAgoodgood ") for ln in run(d, "list").stdout.splitlines()),
                "the undamaged old message kept")
        S.eq(d.stop(), 0, "daemon exit status")
    finally:
        d.cleanup()


sys.exit(S.run([test_usage_and_empty_queue, test_list_show_flush_delete_files_written_by_python,
                test_final_mailboxes_written_by_python, test_daemon_queue_and_cli]))
