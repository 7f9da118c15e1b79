#!/usr/bin/env python3
"""Alias expansion against the real daemon: every final mailbox has its own state.

An alias team@ -> arvel@, carol@ with carol over quota: arvel gets his copy at
once, the message stays queued with carol deferred (4.2.2) and a log line says
so; a SIGKILL and a restart keep carol deferred and never give arvel a second
copy; once carol is under quota again (`account enable`) a `queue flush` gives
her exactly one copy and the message leaves the queue. A disabled member fails
(5.2.1, logged as bounced) while the others get their copies.

Waits are bounds on the daemon (never asserted durations); every assertion is
about mailboxes, the queue (through the CLI) and the log.
"""
import os
import re
import signal
import smtplib
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import smtest  # noqa: E402
from smtest import Suite, wait_mail  # noqa: E402

S = Suite("alias_delivery")
WAIT = 20.0  # a bound for the daemon, never asserted
BODY = "From: s@example.org\r\nSubject: to the team\r\n\r\nhello, team\r\n"


def until(pred, timeout=WAIT):
    """Polls pred() until it returns something true or the bound passes; returns it."""
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got or time.monotonic() >= deadline:
            return got
        time.sleep(0.05)


def send(d, rcpts, body=BODY):
    with smtplib.SMTP("127.0.0.1", d.smtp_port, timeout=10) as c:
        c.ehlo("client.test")
        return c.sendmail("s@example.org", rcpts, body)


def rcpt_code(d, addr):
    """The daemon's RCPT reply code for addr (what its index says now)."""
    with smtplib.SMTP("127.0.0.1", d.smtp_port, timeout=10) as c:
        c.ehlo("client.test")
        c.mail("s@example.org")
        return c.rcpt(addr)[0]


def queue_lines(d):
    """The message lines of `queue list` (not the indented per-recipient lines)."""
    return [ln for ln in d.cli("queue", "list").stdout.splitlines() if not ln.startswith(" ")]


def show(d, qid):
    return d.cli("queue", "show", qid, check=False).stdout


def log_lines(d, qid, to):
    """The daemon's delivery log lines of message qid for the mailbox `to`."""
    return [ln for ln in d.logtext().splitlines() if f" {qid}: to=<{to}>" in ln]


def line_re(qid, to, orig, dsn, status):
    orig_to = f", orig_to=<{re.escape(orig)}>" if orig else ""
    return re.compile(rf" {qid}: to=<{re.escape(to)}>{orig_to}, relay=local, "
                      rf"delay=\d+(\.\d+)?, dsn={re.escape(dsn)}, status={re.escape(status)}$")


def team_daemon(members, states):
    """A started daemon with accounts, the alias team@ -> members, and account states
    ({address: "over-quota" | "disable"}) set before it starts (no refresh to wait for)."""
    d = smtest.smtp_daemon(accounts=members + ("bob@example.com",))
    try:
        d.stop()
        d.cli("alias", "add", "team@example.com", *members)
        for addr, st in states.items():
            d.cli("account", st, addr)
        d.start()
    except Exception:
        d.cleanup()
        raise
    return d


def test_over_quota_member_deferred_then_flushed():
    d = team_daemon(("arvel@example.com", "carol@example.com"),
                    {"carol@example.com": "over-quota"})
    try:
        S.eq(send(d, ["team@example.com"]), {}, "the alias accepted")
        arvel = wait_mail(d, "arvel@example.com", 1)
        S.eq(len(arvel), 1, "arvel has his copy")
        # carol's copy is owed: the message stays, with carol deferred.
        lines = until(lambda: [ln for ln in queue_lines(d) if "deferred" in ln])
        if not S.eq(len(lines), 1, f"the message is still queued: {queue_lines(d)!r}"):
            return
        qid = lines[0].split()[0]
        S.check(lines[0].endswith(" <s@example.org> 1 deferred=1; 2 mailboxes delivered=1 "
                                  "deferred=1"), f"list line: {lines[0]!r}")
        out = show(d, qid)
        S.check(re.search(r"\n  mailbox: <arvel@example\.com> state=delivered attempts=1 "
                          r"status=\"250 2\.0\.0 [^\n]*\n", out), f"show arvel: {out!r}")
        S.check(re.search(r"\n  mailbox: <carol@example\.com> state=deferred attempts=1 "
                          r"status=\"452 4\.2\.2 mailbox full\"\n", out), f"show carol: {out!r}")
        S.eq(len(wait_mail(d, "carol@example.com", 0, timeout=0)), 0, "carol has no copy yet")
        want = line_re(qid, "carol@example.com", "team@example.com", "4.2.2",
                       "deferred (mailbox full)")
        got = log_lines(d, qid, "carol@example.com")
        S.check(len(got) == 1 and want.search(got[0]), f"carol's log line: {got!r}")
        got = log_lines(d, qid, "arvel@example.com")
        S.check(len(got) == 1 and line_re(qid, "arvel@example.com", "team@example.com",
                                          "2.0.0", "sent (delivered to maildir)").search(got[0]),
                f"arvel's log line: {got!r}")

        # SIGKILL, then a restart with carol still over quota and her retry due now:
        # she is tried again (and deferred again), arvel never gets a second copy.
        d.proc.send_signal(signal.SIGKILL)
        d.proc.wait()
        d.proc = None
        S.eq(d.cli("queue", "flush").stdout, "1 recipients due now\n", "flush while down")
        d.start()
        got = until(lambda: len(log_lines(d, qid, "carol@example.com")) >= 2 and
                    log_lines(d, qid, "carol@example.com"))
        S.check(got and want.search(got[-1]), f"carol retried after the restart: {got!r}")
        out = show(d, qid)
        S.check("  mailbox: <carol@example.com> state=deferred attempts=2 " in out,
                f"carol still deferred after the restart: {out!r}")
        S.check("  mailbox: <arvel@example.com> state=delivered attempts=1 " in out,
                f"arvel still delivered, not tried again: {out!r}")
        S.eq(len(wait_mail(d, "arvel@example.com", 2, timeout=0)), 1, "arvel still one copy")
        S.eq(len(log_lines(d, qid, "arvel@example.com")), 1, "no new attempt for arvel")

        # carol back under quota: `account enable` makes her active again.
        d.cli("account", "enable", "carol@example.com")
        S.eq(until(lambda: rcpt_code(d, "carol@example.com") == 250), True,
             "the daemon sees carol active")
        S.eq(d.cli("queue", "flush").stdout, "1 recipients due now\n", "flush")
        # The runner rescans at least every 30 s; a new message wakes it at once.
        S.eq(send(d, ["bob@example.com"], "Subject: wake up\r\n\r\nx\r\n"), {}, "a second message")
        S.check(until(lambda: not any(ln.startswith(qid) for ln in queue_lines(d))),
                f"the message left the queue: {queue_lines(d)!r}")
        carol = wait_mail(d, "carol@example.com", 1)
        S.eq(len(carol), 1, "carol got exactly one copy")
        if carol:
            S.check(b"Delivered-To: carol@example.com\n" in carol[0], "addressed to carol")
            S.check(carol[0].endswith(b"\n\nhello, team\n"), f"the message: {carol[0]!r}")
        S.eq(len(wait_mail(d, "arvel@example.com", 2, timeout=0)), 1, "arvel still one copy")
        got = log_lines(d, qid, "carol@example.com")
        S.check(len(got) == 3 and line_re(qid, "carol@example.com", "team@example.com", "2.0.0",
                                          "sent (delivered to maildir)").search(got[-1]),
                f"carol's delivery logged: {got!r}")
        S.eq(d.stop(), 0, "daemon exit status")
    finally:
        d.cleanup()


def test_disabled_member_fails_others_delivered():
    d = team_daemon(("arvel@example.com", "dora@example.com"), {"dora@example.com": "disable"})
    try:
        S.eq(send(d, ["team@example.com"]), {}, "the alias accepted")
        S.eq(len(wait_mail(d, "arvel@example.com", 1)), 1, "arvel has his copy")
        qid = None
        pat = re.compile(r" (\w+): to=<dora@example\.com>, orig_to=<team@example\.com>, "
                         r"relay=local, delay=\d+(\.\d+)?, dsn=5\.2\.1, status=bounced \(mailbox "
                         r"disabled\)$")
        m = until(lambda: next((m for m in map(pat.search, d.logtext().splitlines()) if m), None))
        S.check(m is not None, f"dora's failure logged as bounced: {d.logtext()[-2000:]!r}")
        if m:
            qid = m.group(1)
            S.check(" warning: " in log_lines(d, qid, "dora@example.com")[0], "as a warning")
        # Delivered or failed, every mailbox: the message leaves the queue. What stays
        # is the bounce to the sender, from <> (deferred: smtest's smart host refuses).
        if qid:
            S.check(re.search(rf" {qid}: sender non-delivery notification: \w+$",
                              d.logtext(), re.M), "the bounce is logged")
        S.check(until(lambda: [ln.split()[2:4] for ln in queue_lines(d)] == [["<>", "1"]]),
                f"only the bounce queued: {queue_lines(d)!r}")
        # Failed is final: enabled again, dora still gets nothing.
        d.cli("account", "enable", "dora@example.com")
        S.eq(d.cli("queue", "flush").stdout, "1 recipients due now\n", "only the bounce")
        S.eq(len(wait_mail(d, "dora@example.com", 0, timeout=0)), 0, "dora has no copy")
        S.eq(d.stop(), 0, "daemon exit status")
    finally:
        d.cleanup()


sys.exit(S.run([test_over_quota_member_deferred_then_flushed,
                test_disabled_member_fails_others_delivered]))
