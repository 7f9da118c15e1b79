#!/usr/bin/env python3
"""Mailing lists: `sharemail list ...` against the real tool, and the real daemon's answers.

- The CLI: add/join/leave/show/list/del, their outputs and exit codes, the errors
  (no such list, an address taken by an account, joining twice, ...); the directory
  file is inspected with Python's sqlite3 module, independently of our code.
- A version 1 directory (today's schema, written here by hand) gains the list tables.
- The running daemon: RCPT 250 to a list from anyone; a members-only list answers
  550 5.7.1 to a non-member (and to <>) and 250 to a member; Minger answers 5 for a
  list (raw UDP); a change made with the CLI while the daemon runs is seen within a
  bounded wait (never an asserted duration).
- A post to a list is accepted and stays queued with the list recipient "remote"
  (its expansion is not built yet): no member gets a copy, the other recipients do.
"""
import os
import re
import smtplib
import socket
import sqlite3
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import smtest  # noqa: E402
from smtest import Daemon, Suite, wait_mail  # noqa: E402

S = Suite("lists")
WAIT = 10.0  # a bound for the daemon's index refresh (about once a second), never asserted
DOMAINS = "example.com"


def run(d, *args):
    return d.cli(*args, check=False)


def expect(p, code, what, stdout=None, stderr_has=None):
    S.eq(p.returncode, code, f"{what}: exit status (stderr {p.stderr!r})")
    if stdout is not None:
        S.eq(p.stdout, stdout, f"{what}: stdout")
    if stderr_has is not None:
        S.check(stderr_has in p.stderr, f"{what}: stderr {p.stderr!r} lacks {stderr_has!r}")


def query(d, sql, args=()):
    con = sqlite3.connect(os.path.join(d.state, "directory.db"))
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


def until(pred, timeout=WAIT):
    """Polls pred() until it returns something true or the bound passes; returns it."""
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got or time.monotonic() >= deadline:
            return got
        time.sleep(0.05)


def test_cli_add_join_show_list_del():
    with Daemon(minger=False) as d:
        expect(run(d, "account", "add", "alice@example.com", "--no-password"), 0, "account")
        p = run(d, "list", "add", "Sales@Example.com")
        expect(p, 0, "add with the default owner", stdout="")
        S.check("warning: the owner sales-owner@example.com is not an account" in p.stderr,
                f"warns that the default owner does not exist: {p.stderr!r}")
        p = run(d, "list", "add", "dev.team@example.com", "--owner", "Alice@Example.com",
                "--members-only")
        expect(p, 0, "add members-only with an owner", stdout="")
        S.eq(p.stderr, "", "an owner that exists draws no warning")
        expect(run(d, "list", "add", "ext@example.com", "--owner", "boss@other.example"), 0,
               "a foreign owner")
        S.eq(run(d, "list", "add", "ext2@example.com", "--owner", "boss@other.example").stderr,
             "", "a foreign owner draws no warning")
        expect(run(d, "list", "join", "sales@example.com", "alice@example.com", "Bob@Other.ORG",
                   "alice@example.com"), 0, "join (a repeat counts once)", stdout="")
        expect(run(d, "list", "join", "DEV.team@example.com", "bob@other.org"), 0, "join")
        expect(run(d, "list", "show", "SALES@example.com"), 0, "show",
               stdout="list: sales@example.com\nowner: sales-owner@example.com\n"
                      "list-id: <sales.example.com>\nmembers-only: no\nmembers: 2\n"
                      "member: alice@example.com\nmember: bob@other.org\n")
        expect(run(d, "list", "show", "dev.team@example.com"), 0, "show members-only",
               stdout="list: dev.team@example.com\nowner: alice@example.com\n"
                      "list-id: <dev.team.example.com>\nmembers-only: yes\nmembers: 1\n"
                      "member: bob@other.org\n")
        expect(run(d, "list", "list"), 0, "list",
               stdout="dev.team@example.com 1 alice@example.com members-only\n"
                      "ext2@example.com 0 boss@other.example -\n"
                      "ext@example.com 0 boss@other.example -\n"
                      "sales@example.com 2 sales-owner@example.com -\n")
        S.eq(query(d, "SELECT list, member FROM list_members ORDER BY list, member"),
             [("dev.team@example.com", "bob@other.org"), ("sales@example.com", "alice@example.com"),
              ("sales@example.com", "bob@other.org")], "member rows, by key")
        S.eq(query(d, "SELECT address, owner, members_only FROM lists WHERE address LIKE 'd%'"),
             [("dev.team@example.com", "alice@example.com", 1)], "list row")
        S.eq(query(d, "PRAGMA user_version"), [(2,)], "schema version")
        expect(run(d, "list", "leave", "sales@example.com", "ALICE@example.com"), 0, "leave",
               stdout="")
        expect(run(d, "list", "show", "sales@example.com"), 0, "show after leave")
        S.check("member: alice" not in run(d, "list", "show", "sales@example.com").stdout,
                "alice left")
        expect(run(d, "list", "del", "sales@example.com"), 0, "del", stdout="")
        S.eq(query(d, "SELECT COUNT(*) FROM list_members WHERE list = 'sales@example.com'"),
             [(0,)], "del takes the members")
        expect(run(d, "list", "show", "sales@example.com"), 1, "show a deleted list",
               stdout="", stderr_has="no such list: sales@example.com")
        # The address is free again, for an account too.
        expect(run(d, "account", "add", "sales@example.com", "--no-password"), 0,
               "account on a deleted list's address")


def test_cli_errors():
    with Daemon(minger=False) as d:
        d.cli("account", "add", "alice@example.com", "--no-password")
        d.cli("alias", "add", "al@example.com", "alice@example.com")
        d.cli("list", "add", "team@example.com", "--owner", "alice@example.com")
        d.cli("list", "join", "team@example.com", "alice@example.com", "x@other.example")
        before = run(d, "list", "show", "team@example.com").stdout
        # Unknown list, for every command that needs one.
        for args in (["show", "nolist@example.com"], ["del", "nolist@example.com"],
                     ["join", "nolist@example.com", "x@other.example"],
                     ["leave", "nolist@example.com", "x@other.example"],
                     ["show", "alice@example.com"], ["join", "al@example.com", "y@other.example"]):
            expect(run(d, "list", *args), 1, f"list {' '.join(args)}",
                   stderr_has=f"no such list: {args[1]}")
        # An address taken by an account, an alias or a list, in either direction.
        for addr in ("alice@example.com", "AL@example.com", "team@example.com"):
            expect(run(d, "list", "add", addr), 1, f"list add {addr}",
                   stderr_has="already exists")
        expect(run(d, "account", "add", "team@example.com", "--no-password"), 1,
               "account add on a list", stderr_has="already exists")
        expect(run(d, "alias", "add", "team@example.com", "alice@example.com"), 1,
               "alias add on a list", stderr_has="already exists")
        # Joining twice, leaving as a non-member: nothing changes, the message names who.
        expect(run(d, "list", "join", "team@example.com", "new@other.example", "X@Other.example"),
               1, "join twice",
               stderr_has="X@Other.example is already a member of team@example.com"
                          " (nothing changed)")
        expect(run(d, "list", "leave", "team@example.com", "alice@example.com",
                   "stranger@other.example"), 1, "leave a non-member",
               stderr_has="stranger@other.example is not a member of team@example.com")
        S.eq(run(d, "list", "show", "team@example.com").stdout, before, "nothing changed")
        # A local member must exist unless --force; a list is no member of itself.
        expect(run(d, "list", "join", "team@example.com", "ghost@example.com"), 1,
               "unknown local member", stderr_has="use --force")
        expect(run(d, "list", "join", "team@example.com", "ghost@example.com", "--force"), 0,
               "unknown local member with --force")
        expect(run(d, "list", "join", "team@example.com", "team@example.com"), 65,
               "the list as its own member", stderr_has="cannot be a member of itself")
        # Addresses.
        expect(run(d, "list", "add", "x@other.example"), 65, "a foreign list",
               stderr_has="is not in local_domains")
        expect(run(d, "list", "add", '"a b"@example.com'), 65, "a quoted local part",
               stderr_has="unquoted local part")
        expect(run(d, "list", "add", "self@example.com", "--owner", "SELF@example.com"), 65,
               "owner is the list", stderr_has="cannot be its own owner")
        expect(run(d, "list", "add", "a" * 60 + "@example.com"), 65, "default owner too long",
               stderr_has="--owner")
        expect(run(d, "list", "add", "ok@example.com", "--owner", "not an address"), 65,
               "bad owner")
        expect(run(d, "list", "join", "team@example.com", "bad@"), 65, "bad member")
        # Usage.
        for args in ([], ["frob"], ["add"], ["add", "a@example.com", "b@example.com"],
                     ["add", "a@example.com", "--owner"], ["add", "a@example.com", "--bogus"],
                     ["join", "team@example.com"], ["leave", "team@example.com"],
                     ["show"], ["list", "extra"], ["del", "a@example.com", "b@example.com"],
                     ["leave", "team@example.com", "x@other.example", "--force"],
                     ["add", "a@example.com", "--owner", "b@x.example", "--owner", "c@x.example"]):
            p = run(d, "list", *args)
            expect(p, 64, f"usage: list {' '.join(args)}", stderr_has="usage: sharemail")
        p = run(d, "list", "--help")
        expect(p, 0, "--help")
        S.check("list add LIST [--owner ADDRESS] [--members-only]" in p.stdout, "help text")
        S.check("sharemail list add" in run(d, "--help").stdout, "the command table lists it")
        S.eq(run(d, "list", "show", "team@example.com").stdout.count("member: "), 3,
             "only the --force join changed the list")


V1_SCHEMA = """
CREATE TABLE accounts(address TEXT PRIMARY KEY NOT NULL, password TEXT,
  state INTEGER NOT NULL DEFAULT 0, created INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE aliases(alias TEXT NOT NULL, target TEXT NOT NULL,
  PRIMARY KEY(alias, target)) WITHOUT ROWID;
CREATE TABLE change_log(seq INTEGER PRIMARY KEY AUTOINCREMENT, address TEXT NOT NULL,
  at INTEGER NOT NULL);
CREATE TABLE meta(key TEXT PRIMARY KEY NOT NULL, value INTEGER);
CREATE TRIGGER accounts_ins AFTER INSERT ON accounts BEGIN
  INSERT INTO change_log(address, at) VALUES(NEW.address, CAST(strftime('%s','now') AS INTEGER));
END;
INSERT INTO accounts VALUES('old@example.com', NULL, 0, 1);
PRAGMA user_version = 1;
"""


def test_version_1_directory_gains_lists():
    with Daemon(minger=False) as d:
        os.makedirs(d.state, mode=0o700)
        con = sqlite3.connect(os.path.join(d.state, "directory.db"))
        con.executescript(V1_SCHEMA)
        con.close()
        expect(run(d, "list", "add", "news@example.com", "--owner", "old@example.com"), 0,
               "list add on a version 1 directory")
        expect(run(d, "list", "join", "news@example.com", "old@example.com"), 0, "join")
        expect(run(d, "account", "list"), 0, "the old account is still there",
               stdout="old@example.com active\n")
        expect(run(d, "list", "list"), 0, "the new list",
               stdout="news@example.com 1 old@example.com -\n")
        S.eq(query(d, "PRAGMA user_version"), [(2,)], "upgraded to version 2")
        logged = [a for (a,) in query(d, "SELECT address FROM change_log ORDER BY seq")]
        S.eq(logged, ["old@example.com", "news@example.com", "news@example.com"],
             "the change log kept its rows and logs the list")


# ---- the running daemon ----

def lists_daemon():
    """A started daemon (SMTP and Minger on loopback), with accounts alice and bob."""
    port = smtest.free_tcp_port()
    d = Daemon(conf={"smtp_listen": f"127.0.0.1:{port}", "minger_anonymous": "yes",
                     "minger_rate_per_source": "0", "minger_rate_global": "0",
                     # members post unauthenticated here (AUTH: test_auth*.py)
                     "auth_required_for_local_senders": "no"})
    d.smtp_port = port
    try:
        for a in ("alice@example.com", "bob@example.com"):
            d.cli("account", "add", a, "--no-password")
        d.start()
    except Exception:
        d.cleanup()
        raise
    return d


def rcpt(d, mail_from, to):
    """(code, text) of RCPT TO:<to> after MAIL FROM:<mail_from>."""
    with smtplib.SMTP("127.0.0.1", d.smtp_port, timeout=10) as c:
        c.ehlo("client.test")
        code, _ = c.mail(mail_from)
        if code != 250:
            return code, b"MAIL refused"
        return c.rcpt(to)


def minger(d, mailbox):
    """The status digit the daemon's Minger server answers for mailbox (raw UDP)."""
    q = f"{mailbox} pad=00".encode()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(1.0)
        s.sendto(q, ("127.0.0.1", d.minger_port))
        try:
            data, _ = s.recvfrom(4096)
        except socket.timeout:
            return None
    S.check(len(data) <= len(q), f"amplification {q!r} -> {data!r}")
    parts = data.decode("ascii", "replace").split(" ")
    S.eq(parts[0], mailbox, "the reply names the mailbox")
    return parts[1] if len(parts) > 1 else None


def test_rcpt_and_minger_see_lists():
    d = lists_daemon()
    try:
        S.eq(rcpt(d, "anyone@other.example", "open@example.com")[0], 550, "no list yet")
        S.eq(minger(d, "open@example.com"), "3", "Minger: no list yet")
        # Made while the daemon runs: seen within the bound.
        d.cli("list", "add", "open@example.com", "--owner", "alice@example.com")
        d.cli("list", "add", "closed@example.com", "--owner", "alice@example.com",
              "--members-only")
        d.cli("list", "join", "closed@example.com", "bob@example.com", "Carol@Other.example")
        S.check(until(lambda: rcpt(d, "anyone@other.example", "open@example.com")[0] == 250),
                "the daemon's index picked the new list up")
        S.check(until(lambda: rcpt(d, "bob@example.com", "closed@example.com")[0] == 250),
                "... and the members-only one with its members")
        # An open list takes a post from anyone, <> included.
        for sender in ("anyone@other.example", "", "alice@example.com"):
            S.eq(rcpt(d, sender, "OPEN@example.com")[0], 250, f"open list from <{sender}>")
        # A members-only list: members (by their key, any case) yes, others 550 5.7.1.
        for sender, code in (("bob@example.com", 250), ("BOB@Example.COM", 250),
                             ("carol@other.example", 250), ("alice@example.com", 550),
                             ("stranger@other.example", 550), ("", 550)):
            got, text = rcpt(d, sender, "closed@example.com")
            S.eq(got, code, f"members-only list from <{sender}>")
            if code == 550:
                S.check(text.startswith(b"5.7.1 "), f"enhanced code 5.7.1: {text!r}")
        # Minger answers 5 (active) for a list, members-only or not.
        S.eq(minger(d, "open@example.com"), "5", "Minger: open list")
        S.eq(minger(d, "CLOSED@example.com"), "5", "Minger: members-only list")
        S.eq(minger(d, "alice@example.com"), "5", "Minger: an account still")
        # Joining lets a stranger post; deleting the list makes it unknown again.
        d.cli("list", "join", "closed@example.com", "stranger@other.example")
        S.check(until(lambda: rcpt(d, "stranger@other.example", "closed@example.com")[0] == 250),
                "a new member may post")
        d.cli("list", "leave", "closed@example.com", "bob@example.com")
        S.check(until(lambda: rcpt(d, "bob@example.com", "closed@example.com")[0] == 550),
                "a member who left may not")
        d.cli("list", "del", "open@example.com")
        S.check(until(lambda: minger(d, "open@example.com") == "3"), "Minger: list deleted")
        got, text = rcpt(d, "anyone@other.example", "open@example.com")
        S.eq(got, 550, "RCPT to a deleted list")
        S.check(text.startswith(b"5.1.1 "), f"5.1.1 for a deleted list: {text!r}")
    finally:
        d.cleanup()


def test_post_to_list_expanded():
    """A post becomes one new message to the members, from the owner, with List-Id."""
    d = lists_daemon()
    try:
        d.cli("list", "add", "team@example.com", "--owner", "alice@example.com")
        d.cli("list", "join", "team@example.com", "bob@example.com", "far@other.example")
        S.check(until(lambda: rcpt(d, "s@other.example", "team@example.com")[0] == 250),
                "the daemon knows the list")
        body = "From: s@other.example\r\nSubject: to the list\r\n\r\nhello, list\r\n"
        with smtplib.SMTP("127.0.0.1", d.smtp_port, timeout=10) as c:
            c.ehlo("client.test")
            refused = c.sendmail("s@other.example", ["team@example.com", "alice@example.com"],
                                 body)
        S.eq(refused, {}, "both recipients accepted")
        S.eq(len(wait_mail(d, "alice@example.com", 1, timeout=WAIT)), 1, "alice's own copy")
        bob = wait_mail(d, "bob@example.com", 1, timeout=WAIT)
        S.eq(len(bob), 1, "bob (a member) has the post")
        if bob:
            head = bob[0].split(b"\n\n", 1)[0].split(b"\n")
            S.eq(head[:4], [b"Return-Path: <alice@example.com>", b"Delivered-To: bob@example.com",
                            b"Delivered-To: team@example.com", b"List-Id: <team.example.com>"],
                 "from the owner, with List-Id")
            S.check(bob[0].endswith(b"\n\nhello, list\n"), f"the post: {bob[0]!r}")
        m = until(lambda: re.search(r" (\w+): list <team@example\.com> expanded into (\w+) "
                                    r"\(2 members, from <alice@example\.com>\)$",
                                    d.logtext(), re.M))
        S.check(m, "the expansion is logged")

        def waiting():
            lines = [ln for ln in d.cli("queue", "list").stdout.splitlines()
                     if ln and not ln[0].isspace()]  # message lines, not recipient lines
            return lines if len(lines) == 1 and "<alice@example.com>" in lines[0] else None
        lines = until(waiting)
        # The post is done; its copy waits for the foreign member (the smart host refuses).
        S.check(lines, f"only the copy queued: {d.cli('queue', 'list').stdout!r}")
        if lines and m:
            S.eq(lines[0].split()[0], m.group(2), "the copy is the one logged")
            shown = d.cli("queue", "show", m.group(2)).stdout
            S.check("rcpt: <far@other.example> state=" in shown and "route=[smarthost]" in shown,
                    f"the foreign member is relayed: {shown}")
            S.check("rcpt: <bob@example.com> state=delivered" in shown, f"bob done: {shown}")
        S.eq(len(wait_mail(d, "alice@example.com", 2, timeout=0)), 1, "alice got one copy")
        S.eq(len(wait_mail(d, "bob@example.com", 2, timeout=0)), 1, "bob got one copy")
    finally:
        d.cleanup()


sys.exit(S.run([test_cli_add_join_show_list_del, test_cli_errors,
                test_version_1_directory_gains_lists, test_rcpt_and_minger_see_lists,
                test_post_to_list_expanded]))
