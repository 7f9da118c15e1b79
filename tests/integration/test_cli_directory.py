#!/usr/bin/env python3
"""`sharemail account` and `sharemail alias`: outputs, exit codes and the directory file.

Runs build/sharemail against a temporary configuration (smtest.Daemon(minger=False)
only writes the config and state folder; no daemon is started). The directory file
is inspected with Python's own sqlite3 module, independently of our code.
"""
import os
import sqlite3
import stat
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from smtest import SHAREMAIL, Daemon, Suite  # noqa: E402

S = Suite("cli_directory")
DOMAINS = {"local_domains": ["example.com", "Example.NET"]}


def new_env(**extra):
    conf = dict(DOMAINS)
    conf.update(extra)
    return Daemon(conf=conf, minger=False)


def run(d, *args, input=None):
    return d.cli(*args, input=input, check=False)


def add(d, address, *extra):
    """`account add ADDRESS --no-password ...`: an account that cannot log in."""
    return run(d, "account", "add", address, "--no-password", *extra)


def db_path(d):
    return os.path.join(d.state, "directory.db")


def query(d, sql, args=()):
    con = sqlite3.connect(db_path(d))
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


def write(d, name, text):
    p = os.path.join(d.dir, name)
    with open(p, "w") as f:
        f.write(text)
    return p


def expect(p, code, what, stdout=None, stderr_has=None):
    S.eq(p.returncode, code, f"{what}: exit status (stderr {p.stderr!r})")
    if stdout is not None:
        S.eq(p.stdout, stdout, f"{what}: stdout")
    if stderr_has is not None:
        S.check(stderr_has in p.stderr, f"{what}: stderr {p.stderr!r} lacks {stderr_has!r}")


def test_account_add_and_list():
    with new_env() as d:
        pw = write(d, "pw", "s3cret\nsecond line ignored\n")
        expect(run(d, "account", "add", "Alice@Example.COM", "--password-file", pw), 0,
               "add with password", stdout="")
        expect(add(d, "bob@example.net", "--disabled"), 0, "add disabled")
        expect(run(d, "account", "add", "carol@example.com", "--password-file", "-",
                   input="carol pw\n"), 0, "add with password on stdin")
        expect(run(d, "account", "add", "dave@example.com", "--password-file", "-",
                   input="pw from stdin\r\n"), 0, "add with CRLF password on stdin")
        rows = dict(query(d, "SELECT address, password FROM accounts"))
        S.check(rows["alice@example.com"].startswith("$y$"), "alice's hash is yescrypt")
        S.check("s3cret" not in rows["alice@example.com"], "no plaintext stored")
        S.check(rows["bob@example.net"] is None, "no password without --password-file")
        S.check(rows["dave@example.com"].startswith("$y$"), "dave's hash")
        S.eq(stat.S_IMODE(os.stat(db_path(d)).st_mode), 0o600, "directory file mode")
        expect(run(d, "account", "list"), 0, "list",
               stdout="alice@example.com active\nbob@example.net disabled\n"
                      "carol@example.com active\ndave@example.com active\n")
        expect(run(d, "account", "list", "EXAMPLE.net"), 0, "list one domain",
               stdout="bob@example.net disabled\n")
        expect(run(d, "account", "list", "nowhere.org"), 0, "list empty domain", stdout="")


def test_carol_empty_stdin_refused():
    with new_env() as d:
        expect(run(d, "account", "add", "carol@example.com", "--password-file", "-", input=""),
               65, "empty stdin password", stderr_has="empty password")
        empty = write(d, "empty", "\nnext\n")
        expect(run(d, "account", "add", "carol@example.com", "--password-file", empty), 65,
               "empty first line", stderr_has="empty password")
        expect(run(d, "account", "add", "carol@example.com", "--password-file",
                   os.path.join(d.dir, "missing")), 74, "missing password file",
               stderr_has="cannot open password file")
        long_pw = write(d, "long", "x" * 600 + "\n")
        expect(run(d, "account", "add", "carol@example.com", "--password-file", long_pw), 65,
               "too long password", stderr_has="longer than")
        expect(run(d, "account", "list"), 0, "nothing was added", stdout="")


def test_account_errors():
    with new_env() as d:
        expect(add(d, "alice@example.com"), 0, "add")
        expect(add(d, "ALICE@example.COM"), 1, "duplicate (any case)",
               stderr_has="already exists")
        p = add(d, "bob@other.org")
        expect(p, 65, "foreign domain")
        S.eq(p.stderr.strip(), f"sharemail: domain 'other.org' is not in local_domains "
                               f"({d.conf_path})", "foreign domain message")
        for bad in ["bob", "bob@", "@example.com", "a b@example.com", "bob@exa_mple..com",
                    "b\u00f6b@example.com", ""]:
            p = add(d, bad)
            expect(p, 65, f"bad address {bad!r}", stderr_has="sharemail: ")
            S.check(p.stderr.startswith("sharemail: "), f"message format for {bad!r}")
        for args in [["account"], ["account", "frob", "x@example.com"],
                     ["account", "add"], ["account", "add", "a@example.com", "b@example.com"],
                     ["account", "add", "a@example.com", "--bogus"],
                     ["account", "del"], ["account", "list", "a", "b"],
                     ["account", "disable", "alice@example.com", "--disabled"],
                     ["account", "passwd", "alice@example.com"],
                     ["account", "add", "a@example.com", "--password-file"]]:
            expect(run(d, *args), 64, f"usage: {args}")
        expect(run(d, "account", "list"), 0, "only alice", stdout="alice@example.com active\n")


def test_account_states_passwd_del():
    with new_env() as d:
        expect(add(d, "alice@example.com"), 0, "add")
        for cmd, word in [("disable", "disabled"), ("over-quota", "over-quota"),
                          ("enable", "active"), ("over-quota", "over-quota")]:
            expect(run(d, "account", cmd, "Alice@example.com"), 0, cmd, stdout="")
            expect(run(d, "account", "list"), 0, f"list after {cmd}",
                   stdout=f"alice@example.com {word}\n")
        for cmd in ["disable", "enable", "over-quota", "del"]:
            expect(run(d, "account", cmd, "nobody@example.com"), 1, f"{cmd} missing",
                   stderr_has="no such account")
        expect(run(d, "account", "disable", "not an address"), 65, "disable bad address")
        pw1, pw2 = write(d, "pw1", "one\n"), write(d, "pw2", "two\n")
        expect(run(d, "account", "passwd", "alice@example.com", "--password-file", pw1), 0,
               "passwd")
        h1 = query(d, "SELECT password FROM accounts")[0][0]
        expect(run(d, "account", "passwd", "alice@example.com", "--password-file", pw2), 0,
               "passwd again")
        h2 = query(d, "SELECT password FROM accounts")[0][0]
        S.check(h1.startswith("$y$") and h2.startswith("$y$") and h1 != h2, "hash replaced")
        expect(run(d, "account", "passwd", "nobody@example.com", "--password-file", pw1), 1,
               "passwd missing", stderr_has="no such account")
        expect(run(d, "account", "del", "ALICE@example.com"), 0, "del")
        expect(run(d, "account", "list"), 0, "empty after del", stdout="")
        expect(run(d, "account", "del", "alice@example.com"), 1, "del twice")


def test_aliases():
    with new_env() as d:
        expect(add(d, "alice@example.com"), 0, "add account")
        expect(run(d, "alias", "add", "Sales@Example.com", "alice@example.com", "Far@Other.ORG",
                   "new@example.net", "--force"), 0, "alias add", stdout="")
        expect(run(d, "alias", "add", "info@example.net", "sales@example.com"), 0,
               "alias to alias")
        expect(run(d, "alias", "list"), 0, "alias list",
               stdout="info@example.net sales@example.com\nsales@example.com alice@example.com\n"
                      "sales@example.com far@other.org\nsales@example.com new@example.net\n")
        expect(run(d, "alias", "add", "sales@example.com", "x@example.com"), 1,
               "duplicate alias", stderr_has="already exists")
        expect(run(d, "alias", "add", "ALICE@example.com", "x@example.com"), 1,
               "alias over account", stderr_has="already exists")
        expect(add(d, "sales@EXAMPLE.com"), 1, "account over alias",
               stderr_has="already exists")
        expect(run(d, "alias", "add", "me@example.com", "x@example.com", "ME@example.com"), 65,
               "alias to itself", stderr_has="itself")
        p = run(d, "alias", "add", "x@other.org", "alice@example.com")
        expect(p, 65, "alias in foreign domain")
        S.eq(p.stderr.strip(), f"sharemail: domain 'other.org' is not in local_domains "
                               f"({d.conf_path})", "alias domain message")
        expect(run(d, "alias", "add", "y@example.com", "not-an-address"), 65, "bad target",
               stderr_has="not-an-address")
        expect(run(d, "alias", "add", "bad alias@example.com", "a@example.com"), 65,
               "bad alias")
        for args in [["alias"], ["alias", "add", "z@example.com"], ["alias", "del"],
                     ["alias", "list", "x"], ["alias", "frob"],
                     ["alias", "del", "a@example.com", "b@example.com"],
                     ["alias", "del", "a@example.com", "--force"], ["alias", "list", "--force"]]:
            expect(run(d, *args), 64, f"usage: {args}")
        expect(run(d, "alias", "del", "nobody@example.com"), 1, "del missing",
               stderr_has="no such alias")
        expect(run(d, "alias", "del", "SALES@example.com"), 0, "alias del")
        expect(run(d, "alias", "list"), 0, "list after del",
               stdout="info@example.net sales@example.com\n")
        # The address is free again for an account.
        expect(add(d, "sales@example.com"), 0, "account after alias del")


def test_account_add_needs_a_password_choice():
    """No password is only ever asked for: a forgotten --password-file is a usage error."""
    with new_env() as d:
        p = run(d, "account", "add", "alice@example.com")
        expect(p, 64, "add without --password-file or --no-password", stdout="")
        S.check(p.stderr.startswith("sharemail: account add needs --password-file F")
                and "--no-password" in p.stderr, f"says which to use: {p.stderr!r}")
        pw = write(d, "pw", "s3cret\n")
        expect(run(d, "account", "add", "alice@example.com", "--password-file", pw,
                   "--no-password"), 64, "both", stderr_has="exclude each other")
        for args in [["account", "passwd", "alice@example.com", "--no-password"],
                     ["account", "del", "alice@example.com", "--no-password"],
                     ["account", "list", "--no-password"]]:
            expect(run(d, *args), 64, f"usage: {args}")
        expect(run(d, "account", "list"), 0, "nothing was added", stdout="")
        expect(add(d, "alice@example.com"), 0, "--no-password", stdout="")
        S.eq(query(d, "SELECT address, password FROM accounts"), [("alice@example.com", None)],
             "--no-password stores no hash")


def test_alias_local_target_must_exist():
    """A local target that is no account or alias is a typo until --force says otherwise."""
    with new_env() as d:
        expect(add(d, "alice@example.com"), 0, "add account")
        p = run(d, "alias", "add", "team@example.com", "alice@example.com", "alcie@example.com")
        expect(p, 1, "missing local target", stdout="")
        S.eq(p.stderr, "sharemail: alcie@example.com is in a local domain but is not an account "
                       "or an alias; add it first, or use --force\n", "missing target message")
        p = run(d, "alias", "add", "team@example.com", "someone@Example.NET")
        expect(p, 1, "missing target in the other local domain",
               stderr_has="someone@Example.NET is in a local domain")
        expect(run(d, "alias", "list"), 0, "nothing was added", stdout="")
        expect(run(d, "alias", "add", "team@example.com", "ALICE@EXAMPLE.COM", "far@other.org"),
               0, "existing local target (any case) and a foreign one", stdout="")
        expect(run(d, "alias", "add", "all@example.net", "team@example.com"), 0,
               "an alias is a target that exists")
        expect(run(d, "alias", "add", "later@example.com", "--force", "new@example.com"), 0,
               "--force", stdout="")
        expect(run(d, "alias", "list"), 0, "list",
               stdout="all@example.net team@example.com\nlater@example.com new@example.com\n"
                      "team@example.com alice@example.com\nteam@example.com far@other.org\n")
        # What the directory refuses keeps its own message.
        expect(run(d, "alias", "add", "team@example.com", "nobody@example.com"), 1,
               "existing alias", stderr_has="already exists")
        expect(run(d, "alias", "add", "me@example.com", "nobody@example.com", "me@example.com"),
               65, "alias to itself", stderr_has="itself")


def test_commands_without_the_minger_secret():
    """Only check-config (like the daemon) reads minger_secret_file; the directory commands
    work when the administrator cannot read it (here it is missing, then a directory)."""
    with new_env(minger_secret_file="secrets.txt") as d:
        expect(add(d, "alice@example.com"), 0, "account add, secret file missing")
        for what in ("missing", "a directory"):
            if what == "a directory":
                os.mkdir(os.path.join(d.dir, "secrets.txt"))
            expect(run(d, "account", "disable", "alice@example.com"), 0,
                   f"account disable, secret file {what}")
            p = run(d, "account", "list")
            expect(p, 0, f"account list, secret file {what}",
                   stdout="alice@example.com disabled\n")
            S.eq(p.stderr, "", f"account list: no message, secret file {what}")
            expect(run(d, "alias", "list"), 0, f"alias list, secret file {what}", stdout="")
            expect(run(d, "account", "enable", "alice@example.com"), 0,
                   f"account enable, secret file {what}")
            expect(run(d, "check-config"), 78, f"check-config, secret file {what}",
                   stderr_has="cannot open minger_secret_file")


def test_help_and_version():
    for args in (["--help"], ["-h"]):
        p = subprocess.run([SHAREMAIL, *args], capture_output=True, text=True, timeout=30)
        S.eq((p.returncode, p.stderr), (0, ""), f"{args}: status, stderr")
        S.check(p.stdout.startswith("usage: sharemail [-c FILE] COMMAND ...\n"), f"{args} usage")
        for cmd in ("account add", "alias add", "minger query", "cache list", "queue list",
                    "check-config", "config-doc", "--help | --version"):
            S.check(f"\n  sharemail {cmd}" in p.stdout, f"{args} lists {cmd!r}")
    version = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "src",
                                "util", "version.h")).read()
    want = version.split('#define SHAREMAIL_VERSION "')[1].split('"')[0]
    p = subprocess.run([SHAREMAIL, "--version"], capture_output=True, text=True, timeout=30)
    S.eq((p.returncode, p.stdout, p.stderr), (0, f"sharemail {want}\n", ""), "--version")
    # A group's help needs no configuration and works wherever the option is.
    for args, first in [(["account", "--help"], "account add ADDRESS (--password-file F | "
                                                 "--no-password) [--disabled]"),
                        (["alias", "add", "-h"], "alias add ALIAS TARGET... [--force]"),
                        (["minger", "query", "a@b.example", "--help"], "minger query ADDRESS"),
                        (["queue", "--help"], "queue list")]:
        p = subprocess.run([SHAREMAIL, "-c", "/nonexistent.conf", *args], capture_output=True,
                           text=True, timeout=30)
        S.eq((p.returncode, p.stderr), (0, ""), f"{args}: status, stderr")
        S.check(p.stdout.startswith(f"usage: sharemail [-c FILE] {first}"), f"{args}: {p.stdout!r}")
    p = subprocess.run([SHAREMAIL, "--bogus"], capture_output=True, text=True, timeout=30)
    S.eq((p.returncode, p.stdout), (64, ""), "unknown option")
    S.check(p.stderr.startswith("usage: sharemail"), "unknown option: usage on stderr")


def test_state_dir_created_and_log_pruned():
    with new_env(state_dir="state/deeper/still") as d:
        d.state = os.path.join(d.dir, "state", "deeper", "still")
        S.check(not os.path.exists(d.state), "state_dir absent at first")
        expect(add(d, "a@example.com"), 0, "add creates state_dir")
        S.check(os.path.isfile(db_path(d)), "directory.db created under state_dir")
        rows = query(d, "SELECT address FROM change_log")
        S.eq(rows, [("a@example.com",)], "change log row written by the trigger")
        S.eq(query(d, "PRAGMA journal_mode")[0][0], "wal", "WAL mode")
        old = int(time.time()) - 8 * 86400
        con = sqlite3.connect(db_path(d))
        con.execute("UPDATE change_log SET at = ?", (old,))
        con.execute("INSERT INTO change_log(address, at) VALUES('old@example.com', ?)", (old,))
        con.commit()
        con.close()
        expect(add(d, "b@example.com"), 0, "a write prunes")
        rows = query(d, "SELECT address FROM change_log ORDER BY seq")
        S.eq(rows, [("b@example.com",)], "rows older than 7 days pruned")
        expect(run(d, "account", "list"), 0, "list does not prune",
               stdout="a@example.com active\nb@example.com active\n")
        S.eq(len(query(d, "SELECT * FROM change_log")), 1, "list wrote nothing")


def test_unwritable_state_dir():
    with new_env(state_dir="/proc/sharemail-cannot-exist") as d:
        p = add(d, "a@example.com")
        expect(p, 74, "state_dir cannot be created", stderr_has="cannot create state_dir")


if __name__ == "__main__":
    sys.exit(S.run([test_account_add_and_list, test_carol_empty_stdin_refused,
                    test_account_errors, test_account_states_passwd_del, test_aliases,
                    test_account_add_needs_a_password_choice, test_alias_local_target_must_exist,
                    test_commands_without_the_minger_secret, test_help_and_version,
                    test_state_dir_created_and_log_pruned, test_unwritable_state_dir]))
