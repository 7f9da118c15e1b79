#!/usr/bin/env python3
"""`sharemail queue list|show|delete|flush [ID]`: outputs, exit codes and the queue files.

Queue files are written here by an independent Python implementation of the
format documented in src/queue/queue_file.h (magic line, data, length-prefixed
records, END record with SHA-256 digests; message files of version 1, from
before queue v2, and 2; state files of versions 1 to 3), so the test also pins
the on-disk format. Against the real daemon: a relayed message sent with smtplib
waits in the queue for remote delivery, and the CLI lists, shows and deletes it
(and its files are checked byte by byte); damaged files, files cut short and junk
names present at start-up are quarantined; the queue files written by the code
before queue v2 (tests/fixtures/queue-v1) are delivered; `queue flush [ID]` makes
the running daemon retry within a bounded wait, with no other event to wake it.
"""
import glob
import hashlib
import os
import re
import shutil
import smtplib
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import smtest  # noqa: E402
from smtest import Suite, free_tcp_port  # noqa: E402

S = Suite("queue_cli")
WAIT = 10.0  # a bound for the daemon, never asserted
FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fixtures", "queue-v1")
ID_RE = re.compile(r"^[0-9A-Za-z]{11,31}$")
DELIVERED, FAILED, DEFERRED, REMOTE = 1, 2, 3, 4


def rec(t, v):
    return t + struct.pack(">I", len(v)) + v


def with_end(magic, data, recs):
    body = magic + data + recs
    return body + rec(b"E", struct.pack(">Q", len(data)) + hashlib.sha256(body).digest())


def msg_file(data, mail_from, rcpts, helo=b"client.example.org", received_at=None, version=1):
    """A message file: version 1 (one digest, as before queue v2) or 2 (D1, D2)."""
    recs = rec(b"F", mail_from) + rec(b"H", helo) + rec(b"C", b"192.0.2.9")
    recs += rec(b"T", struct.pack(">q", int(received_at or time.time())))
    recs += rec(b"S", b"\x00")
    for r in rcpts:
        recs += rec(b"P", rec(b"a", r))
    if version == 1:
        return with_end(b"sharemail-queue 1\n", data, recs)
    head = b"sharemail-queue 2\n" + data
    d1 = hashlib.sha256(head).digest()
    dlen = struct.pack(">Q", len(data))
    d2 = hashlib.sha256(d1 + dlen + recs).digest()
    return head + recs + rec(b"E", dlen + d1 + d2)


def records(b):
    """[(type, value)] of a records section."""
    out = []
    while b:
        n = struct.unpack(">I", b[1:5])[0]
        out.append((b[:1], b[5:5 + n]))
        b = b[5 + n:]
    return out


def parse_msg_v2(raw):
    """(data, envelope records) of a version 2 message file; checks both digests."""
    S.check(raw.startswith(b"sharemail-queue 2\n"), "magic line of version 2")
    end = raw[-77:]
    S.eq(end[:5], b"E" + struct.pack(">I", 72), "END record header")
    dlen = struct.unpack(">Q", end[5:13])[0]
    d1, d2 = end[13:45], end[45:77]
    S.eq(hashlib.sha256(raw[:18 + dlen]).digest(), d1, "D1 = SHA-256(magic, data)")
    recs = raw[18 + dlen:-77]
    S.eq(hashlib.sha256(d1 + end[5:13] + recs).digest(), d2, "D2 = SHA-256(D1, length, records)")
    return raw[18:18 + dlen], records(recs)


def parse_state_v3(raw):
    """[{type: value}, ...] per recipient of a version 3 state file (digest checked)."""
    S.check(raw.startswith(b"sharemail-state 3\n"), "magic line of state version 3")
    S.eq(hashlib.sha256(raw[:-45]).digest(), raw[-32:], "state digest")
    return [dict(records(v)) for t, v in records(raw[18:-45]) if t == b"r"]


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
        S.eq(len(lines), 6, f"three messages and their recipients: {p.stdout!r}")
        nxt = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 3600))
        S.eq(lines[:6], [f"{a} 10m <sender@example.org> 2 deferred=1 remote=1",
                         f'  <one@example.net> deferred next={nxt} attempts=2 '
                         f'last="451 4.4.1 no answer"',
                         '  <two@example.net> remote last="450 4.4.0 remote"',
                         f"{b} 2h <> 1 pending=1",
                         "  <r@example.net> pending",
                         "08AAAAAAACcccccccc incomplete (being received, or damaged)"],
             "list: each message, then each recipient's state, next try and last reply")

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
        # A request for the daemon (not running here): the CLI writes no state.
        S.check(os.path.exists(qpath(d, "flush", "_all")), "flush request left for the daemon")
        p = run(d, "show", a)
        S.check(f"one@example.net> state=deferred attempts=2 next={nxt} " in p.stdout,
                f"the state is the daemon's to change: {p.stdout!r}")
        p = run(d, "flush", a)
        expect(p, 0, "flush ID")
        S.eq(p.stdout, "1 recipients due now\n", "flush ID count")
        S.check(os.path.exists(qpath(d, "flush", a)), "flush request for one message")
        S.eq(run(d, "flush", b).stdout, "0 recipients due now\n", "flush of nothing deferred")
        p = run(d, "flush", "0000000000nothere")
        expect(p, 1, "flush of a missing id")
        S.check("no such message" in p.stderr, f"flush missing: {p.stderr!r}")
        expect(run(d, "flush", "08AAAAAAACcccccccc"), 1, "flush of an unreadable file")
        expect(run(d, "flush", a, b), 64, "flush with two ids")

        p = run(d, "delete", a)
        expect(p, 0, "delete")
        S.eq(p.stdout, f"deleted {a}\n", "delete output")
        S.check(not os.path.exists(qpath(d, "msg", a)), "message file removed")
        S.check(not os.path.exists(qpath(d, "state", a)), "state file removed")
        expect(run(d, "delete", a), 1, "delete twice")
        S.eq(len([ln for ln in run(d, "list").stdout.splitlines() if not ln.startswith(" ")]), 2,
             "two left")
        # A file without a valid END (a message still being received) is never deleted.
        expect(run(d, "delete", "08AAAAAAACcccccccc"), 1, "delete of an incomplete file")
        S.check(os.path.exists(qpath(d, "msg", "08AAAAAAACcccccccc")), "incomplete file kept")


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
        # The age is about 30 s: the clock may tick between writing the file and listing it.
        line = p.stdout.splitlines()[0]
        m = re.fullmatch(re.escape(a) + r" (\d+)s (.*)", line)
        S.check(m is not None and 29 <= int(m.group(1)) <= 35, f"list shows the age: {line!r}")
        S.eq(m.group(2) if m else line, "<s@example.org> 2 deferred=1 remote=1; "
             "3 mailboxes delivered=1 failed=1 deferred=1", "list counts the mailboxes")
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
        # The age as above: seconds may have passed since the file was written (ASan is slow).
        out = run(d, "list").stdout
        m = re.match(re.escape(a) + r" (\d+)s ", out)
        S.check(m is not None and 29 <= int(m.group(1)) <= 35, f"list shows the age: {out!r}")
        S.eq(out[m.end():] if m else out, "<s@example.org> 2 pending=2\n"
             "  <team@example.com> pending\n  <far@example.net> pending\n",
             "a damaged state counts as pending")
        # Version 3: the status stored as code, enhanced code and text; a route.
        recs = rec(b"r", rec(b"s", bytes([DEFERRED])) + rec(b"A", struct.pack(">I", 4)) +
                   rec(b"N", struct.pack(">q", now + 60)) + rec(b"c", struct.pack(">H", 421)) +
                   rec(b"e", b"4.4.2") + rec(b"t", b"lost connection") +
                   rec(b"D", b"[192.0.2.25]:2525"))
        recs += rec(b"r", rec(b"s", bytes([REMOTE])) + rec(b"A", struct.pack(">I", 0)) +
                    rec(b"N", struct.pack(">q", 0)))
        put(d, "state", a, with_end(b"sharemail-state 3\n", b"", recs))
        nxt = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now + 60))
        lines = run(d, "list").stdout.splitlines()
        S.eq(lines[1], f'  <team@example.com> deferred next={nxt} attempts=4 '
                       f'route=[192.0.2.25]:2525 last="421 4.4.2 lost connection"',
             "version 3 state: route and last reply")
        S.check(f'rcpt: <team@example.com> state=deferred attempts=4 next={nxt} notify=- '
                f'route=[192.0.2.25]:2525 status="421 4.4.2 lost connection"\n'
                in run(d, "show", a).stdout, "show: route and last reply")


def test_daemon_queue_and_cli():
    port = free_tcp_port()
    d = smtest.Daemon(conf={"smtp_listen": f"127.0.0.1:{port}",
                            "smtp_trusted_networks": "127.0.0.0/8",
                            "relay_route": "other.example [127.0.0.1]:1"}, minger=False)
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
        # Cut short by a crash while being received (never acknowledged): no valid END.
        good2 = msg_file(b"Subject: new\r\n\r\nnew\r\n", b"new@example.org",
                         [b"far@remote.example"], version=2)
        put(d, "msg", "08AAAAAAABgoodgood", good2)
        put(d, "msg", "08AAAAAAAAcutshort", good2[:-1])
        d.start()
        log = d.logtext()
        for name in ("08AAAAAAAAflipflip", "junk-name", "08AAAAAAAAcutshort"):
            S.check(os.path.exists(qpath(d, "quarantine", name)), f"{name} quarantined")
            S.check(name in log, f"{name} named in the log")
        S.check(re.search(r"msg/08AAAAAAAAcutshort is incomplete .*never acknowledged", log),
                f"the file cut short is logged as never acknowledged: {log!r}")
        S.check(not os.path.exists(qpath(d, "tmp", "08AAAAAAAAunfinish")), "tmp cleaned")

        body = "Subject: queued\r\n\r\nwaits for remote delivery\r\n"
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as c:
            c.ehlo("client.test")
            refused = c.sendmail("me@example.org", ["far@other.example"], body)
            S.eq(refused, {}, "relay accepted from a trusted network")
        # Its route (relay_route other.example) refuses connections: tried, deferred.

        def tried():
            got = [ln for ln in run(d, "list").stdout.splitlines() if "<me@example.org>" in ln]
            return got if got and "pending" not in got[0] and os.listdir(qpath(d, "state")) \
                else None
        lines = until(tried) or []
        S.eq(len(lines), 1, f"one queued message: {lines!r}")
        if lines:
            qid = lines[0].split()[0]
            S.check(ID_RE.match(qid) is not None, f"queue id {qid!r}")
            S.check(lines[0].endswith(" 1 deferred=1"), f"deferred: {lines[0]!r}")
            p = run(d, "show", qid)
            expect(p, 0, "show of a received message")
            S.check("client: 127.0.0.1\n" in p.stdout, f"client address: {p.stdout!r}")
            S.check("helo: client.test\n" in p.stdout, "helo recorded")
            m = re.search(r"size: (\d+)", p.stdout)
            S.check(m is not None and int(m.group(1)) >= len(body), "size recorded")
            with open(qpath(d, "msg", qid), "rb") as f:
                raw = f.read()
            data, env = parse_msg_v2(raw)
            S.check(data.endswith(b"waits for remote delivery\r\n"), "data in place")
            S.check((b"F", b"me@example.org") in env, f"reverse-path record: {env!r}")
            S.check((b"P", rec(b"a", b"far@other.example")) in env, "recipient record")
            with open(qpath(d, "state", qid), "rb") as f:
                st = parse_state_v3(f.read())
            S.eq(len(st), 1, "one recipient's state")
            if st:
                S.eq(st[0].get(b"s"), bytes([DEFERRED]), "state: deferred")
                S.eq(st[0].get(b"c"), struct.pack(">H", 451), "reply code 451")
                S.eq(st[0].get(b"e"), b"4.4.1", "enhanced code")
                S.check(b"refused" in st[0].get(b"t", b""), f"text: {st[0]!r}")
                S.eq(st[0].get(b"D"), b"other.example", "route: the relay_route's domain")
                S.eq(struct.unpack(">I", st[0].get(b"A", b"\0\0\0\0"))[0], 1, "one attempt")
            p = run(d, "delete", qid)
            expect(p, 0, "delete while the daemon runs")
            S.check(not os.path.exists(qpath(d, "msg", qid)), "file gone")
        listed = run(d, "list").stdout.splitlines()
        S.check(any(ln.startswith("08AAAAAAAAgoodgood ") for ln in listed),
                "the undamaged old message (version 1) kept")
        S.check(any(ln.startswith("08AAAAAAABgoodgood ") for ln in listed),
                "the undamaged version 2 message kept")
        S.eq(d.stop(), 0, "daemon exit status")
    finally:
        d.cleanup()


def maildir_bodies(d, addr):
    user, domain = addr.split("@")
    out = []
    for sub in ("new", "cur"):
        for p in sorted(glob.glob(os.path.join(d.state, "mail", domain, user, "Maildir", sub, "*"))):
            with open(p, "rb") as f:
                out.append(f.read())
    return out


def until(pred, timeout=WAIT):
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got or time.monotonic() >= deadline:
            return got
        time.sleep(0.05)


def test_v1_fixture_delivered():
    """Queue files written by the code before queue v2 are delivered after the upgrade."""
    d = smtest.smtp_daemon()
    try:
        d.stop()
        for sub in ("msg", "state"):
            os.makedirs(qpath(d, sub), exist_ok=True)
            for f in os.listdir(os.path.join(FIXTURE, sub)):
                shutil.copy(os.path.join(FIXTURE, sub, f), qpath(d, sub, f))
        d.start()
        bob = until(lambda: maildir_bodies(d, "bob@example.com"))
        S.eq(len(bob), 1, "bob got message A (and not B: its state says delivered)")
        if bob:
            S.check(bob[0].endswith(b"\n\nv1-fixture-A-body\n"), f"A whole: {bob[0]!r}")
            S.check(bob[0].startswith(b"Return-Path: <sender@example.org>\n"), "A's sender")
        alice = until(lambda: maildir_bodies(d, "alice@example.com"))
        S.eq(len(alice), 1, "alice got message B (her deferred copy)")
        if alice:
            S.check(alice[0].startswith(b"Return-Path: <>\n"), f"B's null sender: {alice[0]!r}")
            S.check(alice[0].endswith(b"\n\n.dot line\nv1-fixture-B-body \xc3\xa9\n"),
                    f"B whole, dot line and 8-bit octets kept: {alice[0]!r}")
        lines = until(lambda: [ln for ln in run(d, "list").stdout.splitlines()
                               if ln.startswith("08E2KEuz1voDjzpCb0 ")
                               and "delivered=2 deferred=1" in ln])
        S.eq(lines, ["08E2KEuz1voDjzpCb0 0s <> 3 delivered=2 deferred=1; 2 mailboxes delivered=2"],
             f"B waits only for far@remote.example (relayed now, deferred: the smart host "
             f"refuses): {run(d, 'list').stdout!r}")
        S.check(not os.path.exists(qpath(d, "msg", "08E2KEuyncg60Xc3pf")), "A left the queue")
        S.eq(os.listdir(qpath(d, "quarantine")), [], "nothing set aside")
        S.eq(len(maildir_bodies(d, "bob@example.com")), 1, "still one copy for bob")
        S.eq(d.stop(), 0, "daemon exit status")
    finally:
        d.cleanup()


def test_flush_reaches_the_running_daemon():
    """A deferred recipient retried on `queue flush ID` and `queue flush`, with the retry
    interval an hour away and no other message to wake the runner."""
    d = smtest.smtp_daemon(conf={"queue_retry_initial": "1h"},
                           accounts=("alice@example.com", "bob@example.com"))
    try:
        d.stop()
        d.cli("alias", "add", "team@example.com", "alice@example.com", "bob@example.com")
        d.cli("account", "over-quota", "bob@example.com")
        d.start()
        qids = []
        for n in (1, 2):
            with smtplib.SMTP("127.0.0.1", d.smtp_port, timeout=10) as c:
                c.ehlo("client.test")
                S.eq(c.sendmail("s@example.org", ["team@example.com"],
                                f"Subject: {n}\r\n\r\nflush-test-{n}\r\n"), {}, f"message {n}")
            lines = until(lambda: [ln for ln in run(d, "list").stdout.splitlines()
                                   if not ln.startswith(" ") and "deferred=1" in ln
                                   and ln.split()[0] not in qids])
            S.eq(len(lines), 1, f"message {n} deferred: {run(d, 'list').stdout!r}")
            if lines:
                qids.append(lines[0].split()[0])
        if len(qids) != 2:
            return
        d.cli("account", "enable", "bob@example.com")

        def rcpt_ok():
            with smtplib.SMTP("127.0.0.1", d.smtp_port, timeout=10) as c:
                c.ehlo("client.test")
                c.mail("s@example.org")
                return c.rcpt("bob@example.com")[0] == 250
        S.check(until(rcpt_ok), "the daemon sees bob active")
        S.eq(maildir_bodies(d, "bob@example.com"), [], "nothing delivered before the flush")
        S.eq(run(d, "flush", qids[0]).stdout, "1 recipients due now\n", "flush ID")
        got = until(lambda: maildir_bodies(d, "bob@example.com"))
        S.eq(len(got), 1, "flush ID: that message delivered within the bound")
        S.check(got and got[0].endswith(b"flush-test-1\n"), f"the flushed one: {got!r}")
        S.check(any(ln.startswith(qids[1]) for ln in run(d, "list").stdout.splitlines()),
                "the other message still waits")
        S.eq(run(d, "flush").stdout, "1 recipients due now\n", "flush")
        got = until(lambda: len(maildir_bodies(d, "bob@example.com")) == 2 and
                    maildir_bodies(d, "bob@example.com"))
        S.check(got and got[1 if got[1].endswith(b"flush-test-2\n") else 0]
                .endswith(b"flush-test-2\n"), "flush: the other delivered within the bound")
        S.check(until(lambda: [ln for ln in run(d, "list").stdout.splitlines()] == []),
                "the queue is empty")
        S.eq(os.listdir(qpath(d, "flush")), [], "requests taken")
        S.eq(d.stop(), 0, "daemon exit status")
    finally:
        d.cleanup()


sys.exit(S.run([test_usage_and_empty_queue, test_list_show_flush_delete_files_written_by_python,
                test_final_mailboxes_written_by_python, test_daemon_queue_and_cli,
                test_v1_fixture_delivered, test_flush_reaches_the_running_daemon]))
