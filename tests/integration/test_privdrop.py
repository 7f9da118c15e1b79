#!/usr/bin/env python3
"""sharemaild started as root with `user = NAME` (ISSUE 9 item 7), against the real
daemon: it binds a privileged port as root, then no thread of it keeps uid, gid,
saved id or a supplementary group 0 (every /proc/PID/task/TID/status), state_dir and
what it writes there (queue, Maildir, screen.db, pid file) belong to the user, a
state_dir root made is given to the user at the first start, a message is still
received and delivered; a user that does not exist, or a state_dir another user
owns, stops it at start with a message naming the user; started as root without
`user` it warns once, loudly.

The user `sharemail-test` is created with useradd for the run when it is missing and
removed afterwards. Runs only as root (else every test is skipped, counted as such)
and only once the drop is wired into sharemaild (WIRED below: the lead sets it when
src/sharemaild.c calls util/privdrop.h).
"""
import glob
import os
import pwd
import smtplib
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import smtest  # noqa: E402
from smtest import Daemon, Suite, free_tcp_port  # noqa: E402

S = Suite("privdrop")
WIRED = True  # sharemaild calls util/privdrop.h (src/sharemaild.c)
USER = "sharemail-test"
WAIT = 10.0  # a bound on waiting, never asserted as a duration
ROOT_WARNING = "running as root"


def can_run():
    if os.geteuid() != 0:
        S.skip("needs root: the daemon must start as root to drop it")
        return False
    if not WIRED:
        S.skip("the privilege drop is not wired into sharemaild yet (WIRED = False)")
        return False
    return True


class TestUser:
    """USER for the run: created when missing (and then removed at the end)."""

    def __init__(self):
        self.created = False

    def __enter__(self):
        try:
            pwd.getpwnam(USER)
        except KeyError:
            subprocess.run(["useradd", "--system", "--user-group", "--no-create-home",
                            "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin", USER],
                           check=True, capture_output=True, timeout=60)
            self.created = True
        self.pw = pwd.getpwnam(USER)
        return self.pw

    def __exit__(self, *exc):
        if self.created:
            subprocess.run(["userdel", USER], capture_output=True, timeout=60)


def privileged_port():
    """A free TCP port below 1024 on 127.0.0.1 (only root may bind it)."""
    for port in range(1023, 600, -1):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port below 1024")


def thread_ids(pid):
    """{tid: (uids, gids, groups)} of every thread of pid, from /proc."""
    out = {}
    for status in glob.glob(f"/proc/{pid}/task/*/status"):
        fields = {}
        try:
            with open(status) as f:
                for line in f:
                    k, _, v = line.partition(":")
                    fields[k] = v.split()
        except FileNotFoundError:
            continue  # a thread that ended meanwhile
        tid = status.split("/")[4]
        out[tid] = ([int(x) for x in fields["Uid"]], [int(x) for x in fields["Gid"]],
                    [int(x) for x in fields.get("Groups", [])])
    return out


def open_dirs(d):
    """The test's folder must be passable by the user (mkdtemp makes it 0700)."""
    os.chmod(d.dir, 0o755)


def owners(root):
    """{path relative to root: uid} of everything under root."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            out[os.path.relpath(p, root)] = os.lstat(p).st_uid
    return out


def test_drop_every_thread():
    if not can_run():
        return
    with TestUser() as pw:
        port = privileged_port()
        with Daemon(conf={"user": USER, "smtp_listen": f"127.0.0.1:{port}"}, minger=False) as d:
            open_dirs(d)
            # state_dir made by root, with the directory in it, as an administrator would.
            d.cli("account", "add", "alice@example.com", "--no-password")
            S.eq(os.stat(d.state).st_uid, 0, "state_dir made by root before the start")
            d.start()
            ids = thread_ids(d.proc.pid)
            S.check(len(ids) >= 2, f"several threads to check: {sorted(ids)}")
            for tid, (uids, gids, groups) in sorted(ids.items()):
                S.eq(uids, [pw.pw_uid] * 4, f"thread {tid}: real, effective, saved, fs uid")
                S.eq(gids, [pw.pw_gid] * 4, f"thread {tid}: gids")
                S.check(0 not in groups, f"thread {tid}: no supplementary group 0: {groups}")
            with smtplib.SMTP("127.0.0.1", port, timeout=30) as c:
                c.sendmail("bob@example.org", ["alice@example.com"],
                           b"Subject: t\r\n\r\nafter the drop\r\n")
            mail = smtest.wait_mail(d, "alice@example.com", 1, WAIT)
            S.eq(len(mail), 1, "received and delivered after the drop")
            S.check(ROOT_WARNING not in d.logtext(), "no root warning with user set")
            not_users = {p: u for p, u in owners(d.state).items() if u != pw.pw_uid}
            S.eq(not_users, {}, "everything in state_dir belongs to the user")
            S.eq(os.stat(d.state).st_uid, pw.pw_uid, "state_dir belongs to the user")
            # SIGHUP after the drop: the configuration is still readable, the daemon lives.
            d.proc.send_signal(1)
            deadline = time.monotonic() + WAIT
            while "configuration reloaded" not in d.logtext() and time.monotonic() < deadline:
                time.sleep(0.05)
            S.check("configuration reloaded" in d.logtext(), "SIGHUP re-read the file as the user")
            S.check(d.proc.poll() is None, "alive after SIGHUP as the user")
            S.eq(d.stop(), 0, "clean stop as the user")


def start_fails(d):
    try:
        d.start()
    except RuntimeError as e:
        return str(e)
    return None


def test_refusals():
    if not can_run():
        return
    with Daemon(conf={"user": "sharemail-no-such-user",
                      "smtp_listen": f"127.0.0.1:{free_tcp_port()}"}, minger=False) as d:
        why = start_fails(d)
        S.check(why is not None and "user 'sharemail-no-such-user' does not exist" in why,
                f"a missing user stops the start, named: {why!r}")
    with TestUser():
        with Daemon(conf={"user": USER, "smtp_listen": f"127.0.0.1:{free_tcp_port()}"},
                    minger=False) as d:
            open_dirs(d)
            os.makedirs(d.state, 0o700)
            os.chown(d.state, 12345, 12345)
            why = start_fails(d)
            S.check(why is not None and f"not to user {USER}" in why and "12345" in why,
                    f"a state_dir another user owns stops the start: {why!r}")
            S.eq(os.stat(d.state).st_uid, 12345, "and it is left as it was")


def test_root_without_user_warns_once():
    if not can_run():
        return
    with Daemon(conf={"smtp_listen": f"127.0.0.1:{free_tcp_port()}"}, minger=False) as d:
        d.start()
        d.proc.send_signal(1)  # a reload does not warn again
        deadline = time.monotonic() + WAIT
        while "configuration reloaded" not in d.logtext() and time.monotonic() < deadline:
            time.sleep(0.05)
        d.stop()
        lines = [l for l in d.logtext().splitlines() if ROOT_WARNING in l]
        S.eq(len(lines), 1, f"one warning: {lines}")
        S.check(lines and "warning" in lines[0] and "user" in lines[0],
                f"the warning says what to set: {lines}")


if __name__ == "__main__":
    sys.exit(S.run([test_drop_every_thread, test_refusals, test_root_without_user_warns_once]))
