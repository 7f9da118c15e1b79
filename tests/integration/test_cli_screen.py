#!/usr/bin/env python3
"""`sharemail screen list | add ADDRESS [--for DURATION] | del ADDRESS`: outputs, exit
codes and <state_dir>/screen.db, read with Python's own sqlite3 module (independent of
our code): the key forms (IPv4, IPv6 as its /64, IPv4-mapped as IPv4), the expiry the
tool writes, replacing, deleting, expired and hand-written rows, bad addresses and
durations, the warning for exempt addresses, WAL mode, and (as root) that a database
root creates in a state_dir another user owns belongs to that user, so the daemon
running as that user can write it. smtest.Daemon only writes the config here; the
test against a running daemon comes with its wiring into the SMTP session.
"""
import calendar
import os
import pwd
import sqlite3
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from smtest import Daemon, Suite  # noqa: E402

S = Suite("cli_screen")
SLACK = 120  # seconds the tool's clock may be ahead of the one read here (a bound)


def new_env(**conf):
    return Daemon(conf=dict(conf), minger=False)


def screen(d, *args):
    return d.cli("screen", *args, check=False)


def rows(d):
    con = sqlite3.connect(os.path.join(d.state, "screen.db"))
    try:
        return con.execute("SELECT addr, until, reason FROM screen ORDER BY addr").fetchall()
    finally:
        con.close()


def iso_to_epoch(s):
    return calendar.timegm(time.strptime(s, "%Y-%m-%dT%H:%M:%SZ"))


def expect(p, code, what, stdout=None, stderr_has=None):
    S.eq(p.returncode, code, f"{what}: exit status (stderr {p.stderr!r})")
    if stdout is not None:
        S.eq(p.stdout, stdout, f"{what}: stdout")
    if stderr_has is not None:
        S.check(stderr_has in p.stderr, f"{what}: stderr {p.stderr!r} lacks {stderr_has!r}")


def near(value, want, what):
    S.check(want <= value <= want + SLACK, f"{what}: {value} not within [{want}, +{SLACK}]")


def test_add_list_del():
    with new_env() as d:
        expect(screen(d, "list"), 0, "list of an empty screen", stdout="")
        t0 = int(time.time())
        p = screen(d, "add", "192.0.2.7")
        expect(p, 0, "add with the default duration")
        word = p.stdout.split()
        S.eq(word[:3], ["192.0.2.7", "screened", "until"], "add says what it did")
        near(iso_to_epoch(word[3]), t0 + 3600, "default: screen_duration (1h)")
        expect(screen(d, "add", "2001:DB8:1:2::99", "--for", "1d"), 0, "add IPv6 for 1d")
        expect(screen(d, "add", "::ffff:192.0.2.8", "--for", "90"), 0, "add IPv4-mapped")
        expect(screen(d, "add", "2001:db8:9::/64", "--for", "15m"), 0, "add a /64")
        r = rows(d)
        S.eq([(a, reason) for a, _, reason in r],
             [("192.0.2.7", "manual"), ("192.0.2.8", "manual"),
              ("2001:db8:1:2::/64", "manual"), ("2001:db8:9::/64", "manual")],
             "rows: one key per address, IPv6 by its /64")
        until = {a: u for a, u, _ in r}
        near(until["2001:db8:1:2::/64"], t0 + 86400, "--for 1d")
        near(until["192.0.2.8"], t0 + 90, "--for 90")
        near(until["2001:db8:9::/64"], t0 + 900, "--for 15m")
        p = screen(d, "list")
        expect(p, 0, "list")
        lines = p.stdout.splitlines()
        S.eq([l.split()[0] for l in lines],
             ["192.0.2.7", "192.0.2.8", "2001:db8:1:2::/64", "2001:db8:9::/64"],
             "list: by address")
        S.eq([l.split()[2] for l in lines], ["manual"] * 4, "list: the reason")
        S.eq(iso_to_epoch(lines[2].split()[1]), until["2001:db8:1:2::/64"],
             "list: the expiry in UTC")
        # Another host of the same /64 names the same entry; add replaces it.
        expect(screen(d, "add", "2001:db8:1:2::1", "--for", "10m"), 0, "add again")
        near({a: u for a, u, _ in rows(d)}["2001:db8:1:2::/64"], t0 + 600,
             "a second add replaces the expiry, even with a shorter one")
        S.eq(len(rows(d)), 4, "still one row for the /64")
        expect(screen(d, "del", "2001:db8:1:2:ffff::1"), 0, "del by another host of the /64",
               stdout="2001:db8:1:2::/64 no longer screened\n")
        expect(screen(d, "del", "192.0.2.7"), 0, "del", stdout="192.0.2.7 no longer screened\n")
        expect(screen(d, "del", "192.0.2.7"), 1, "del twice", stderr_has="192.0.2.7 is not screened")
        expect(screen(d, "del", "203.0.113.1"), 1, "del of an address never screened",
               stderr_has="is not screened")
        S.eq([a for a, _, _ in rows(d)], ["192.0.2.8", "2001:db8:9::/64"], "rows after del")


def test_expired_and_hand_written_rows():
    with new_env() as d:
        expect(screen(d, "list"), 0, "list creates the database", stdout="")
        con = sqlite3.connect(os.path.join(d.state, "screen.db"))
        now = int(time.time())
        with con:
            con.execute("INSERT INTO screen VALUES('192.0.2.50', ?, 'auth-failures', ?)",
                        (now - 10, now - 3610))
            con.execute("INSERT INTO screen VALUES('not-an-address', ?, 'manual', ?)",
                        (now + 3600, now))
            con.execute("INSERT INTO screen VALUES('192.0.2.51', ?, 'bad\nreason', ?)",
                        (now + 3600, now))
        mode = con.execute("PRAGMA journal_mode").fetchone()[0]
        con.close()
        S.eq(mode, "wal", "screen.db is in WAL mode")
        p = screen(d, "list")
        expect(p, 0, "list")
        lines = p.stdout.splitlines()
        S.eq([l.split()[0] for l in lines], ["192.0.2.51"],
             "an expired row and a row naming no address are not listed")
        S.eq(lines[0].split()[2], "bad?reason", "a control byte in a reason is not printed")
        expect(screen(d, "del", "192.0.2.50"), 1, "del of an expired row",
               stderr_has="is not screened")


def test_refused_arguments():
    with new_env() as d:
        for addr in ("mail.example.com", "192.0.2.0/24", "2001:db8::/48", "192.0.2.256",
                     "", "192.0.2.7 "):
            expect(screen(d, "add", addr), 65, f"add {addr!r}",
                   stderr_has="is not an IP address")
            expect(screen(d, "del", addr), 65, f"del {addr!r}")
        for dur in ("0", "5x", "-1", "99999d", "1.5h", "", "10mm", "3651d"):
            expect(screen(d, "add", "192.0.2.7", "--for", dur), 64, f"--for {dur!r}",
                   stderr_has="usage: sharemail")
        expect(screen(d, "add", "192.0.2.7", "--for", "3650d"), 0, "--for 3650d, the longest")
        for args in ((), ("add",), ("del",), ("frob",), ("list", "x"), ("del", "192.0.2.7", "x"),
                     ("add", "192.0.2.7", "--four", "1h"), ("add", "192.0.2.7", "--for")):
            expect(screen(d, *args), 64, f"screen {' '.join(args)}", stderr_has="usage:")
        S.eq([a for a, _, _ in rows(d)], ["192.0.2.7"], "nothing but the good add was written")
        expect(screen(d, "--help"), 0, "--help")


def test_exempt_warning():
    with new_env(screen_exempt="198.51.100.0/24",
                 smtp_trusted_networks="203.0.113.0/24 2001:db8:aa::/48") as d:
        for addr in ("198.51.100.5", "203.0.113.9", "2001:db8:aa:1::1"):
            p = screen(d, "add", addr)
            expect(p, 0, f"add exempt {addr}",
                   stderr_has="is in screen_exempt or smtp_trusted_networks")
        p = screen(d, "add", "192.0.2.1")
        expect(p, 0, "add of an address not exempt")
        S.eq(p.stderr, "", "no warning for an address that is not exempt")
        S.eq(len(rows(d)), 4, "exempt addresses are listed all the same")


def test_root_gives_file_to_state_owner():
    if os.geteuid() != 0:
        S.skip("needs root: the ownership of a database root creates")
        return
    nobody = pwd.getpwnam("nobody")
    with new_env() as d:
        os.makedirs(d.state, mode=0o700, exist_ok=True)
        os.chown(d.state, nobody.pw_uid, nobody.pw_gid)
        expect(screen(d, "add", "192.0.2.7"), 0, "add as root")
        for name in ("screen.db", "screen.db-wal", "screen.db-shm"):
            path = os.path.join(d.state, name)
            if os.path.exists(path):
                st = os.stat(path)
                S.eq((st.st_uid, st.st_gid), (nobody.pw_uid, nobody.pw_gid),
                     f"{name} belongs to state_dir's owner")
        S.check(os.path.exists(os.path.join(d.state, "screen.db")), "screen.db exists")
    with new_env() as d:
        os.makedirs(d.state, mode=0o700, exist_ok=True)
        expect(screen(d, "add", "192.0.2.7"), 0, "add as root in root's state_dir")
        S.eq(os.stat(os.path.join(d.state, "screen.db")).st_uid, 0, "then it stays root's")


if __name__ == "__main__":
    sys.exit(S.run([test_add_list_del, test_expired_and_hand_written_rows, test_refused_arguments,
                    test_exempt_warning, test_root_gives_file_to_state_owner]))
