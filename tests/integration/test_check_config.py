#!/usr/bin/env python3
"""check-config: `sharemail -c FILE check-config` and `sharemaild -t` on good and bad
configurations: every problem as `file:line: message` on stderr and exit status 78,
or "FILE: ok" and 0. Also `sharemail config-doc` against the man page."""
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from smtest import SHAREMAIL, SHAREMAILD, Suite  # noqa: E402

TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SECRET = "0123456789abcdef-integration"
S = Suite("check-config")


class Dir:
    """A temporary folder holding a config and its secret file."""

    def __init__(self):
        self.path = tempfile.mkdtemp(prefix="sharemail-cc-")

    def write(self, name, text, mode="w"):
        p = os.path.join(self.path, name)
        with open(p, mode) as f:
            f.write(text)
        return p

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        shutil.rmtree(self.path, ignore_errors=True)


def run(argv, env=None):
    e = dict(os.environ)
    e.pop("SHAREMAIL_CONF", None)
    e.update(env or {})
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, env=e)


def both(conf):
    """Runs check-config and sharemaild -t on conf; returns the two results."""
    return (run([SHAREMAIL, "-c", conf, "check-config"]),
            run([SHAREMAILD, "-c", conf, "-t"]))


GOOD = f"""# a good configuration
hostname = mx.test
state_dir = state
local_domains = Example.COM example.org
log_level = debug
minger_listen = 127.0.0.1:4069
minger_listen = [::1]:4069
minger_secret_file = secrets.txt
minger_allow = 127.0.0.0/8 ::1
minger_threads = 2
minger_cache_positive_ttl = 5d
"""


def test_good_config():
    with Dir() as d:
        d.write("secrets.txt", "# secrets\n\n" + SECRET + "\n")
        conf = d.write("sharemail.conf", GOOD)
        cc, t = both(conf)
        S.eq(cc.returncode, 0, "check-config status")
        S.eq(cc.stdout, f"{conf}: ok\n", "check-config stdout")
        S.eq(cc.stderr, "", "check-config stderr")
        S.eq(t.returncode, 0, "sharemaild -t status")
        S.check("sharemaild ready" not in t.stdout + t.stderr, "-t must not start services")


def test_good_config_from_environment():
    with Dir() as d:
        d.write("secrets.txt", SECRET + "\n")
        conf = d.write("sharemail.conf", GOOD)
        p = run([SHAREMAIL, "check-config"], env={"SHAREMAIL_CONF": conf})
        S.eq(p.returncode, 0, "status")
        S.eq(p.stdout, f"{conf}: ok\n", "stdout")
        # A relative -c path works from another working directory too.
        p = subprocess.run([SHAREMAIL, "-c", "sharemail.conf", "check-config"], cwd=d.path,
                           capture_output=True, text=True, timeout=30)
        S.eq(p.returncode, 0, "relative -c status")
        S.eq(p.stdout, "sharemail.conf: ok\n", "relative -c stdout")


BAD = """hostname = mx.test
foo = 1
minger_threads = abc
minger_threads = 100
state_dir
log_level = loud
minger_listen = 127.0.0.1:0
minger_allow = 10.0.0.1/8
minger_cache = perhaps
local_domains = ok.example bad_domain
minger_replay_window = 2h
"""

BAD_WANT = [
    (2, "unknown key 'foo'"),
    (3, "value 'abc' for minger_threads is not a number"),
    (4, "'minger_threads' may appear only once (first at line 3)"),
    (5, "missing '='"),
    (6, "log_level must be one of err|warning|info|debug (not 'loud')"),
    (7, "minger_listen: port 0 is not allowed in '127.0.0.1:0'"),
    (8, "minger_allow: '10.0.0.1/8' has bits set after its prefix length"),
    (9, "value 'perhaps' for minger_cache is not yes or no"),
    (10, "'bad_domain' in local_domains is not a domain name"),
    (11, "minger_replay_window must be between 5 and 3600 seconds"),
]


def test_bad_config_every_problem():
    with Dir() as d:
        conf = d.write("bad.conf", BAD)
        for name, p in zip(("check-config", "sharemaild -t"), both(conf)):
            S.eq(p.returncode, 78, f"{name} status")
            S.eq(p.stdout, "", f"{name} stdout")
            lines = p.stderr.splitlines()
            got = []
            for line in lines:
                m = re.match(r"^(.*?):(\d+): (.*)$", line)
                if S.check(m is not None, f"{name}: line not file:line: {line!r}"):
                    S.eq(m.group(1), conf, f"{name}: file name")
                    got.append((int(m.group(2)), m.group(3)))
            S.eq(got, BAD_WANT, f"{name} problems")


def test_range_and_cross_checks():
    with Dir() as d:
        conf = d.write("x.conf", "minger_listen = 127.0.0.1:4069\nminger_threads = 0\n")
        p = run([SHAREMAIL, "-c", conf, "check-config"])
        S.eq(p.returncode, 78, "status")
        S.eq(p.stderr.splitlines(), [
            f"{conf}:2: minger_threads must be between 1 and 64",
            f"{conf}:1: minger_listen is set but there is neither a minger_secret_file nor "
            "minger_anonymous = yes, so no query could ever be answered",
        ], "stderr")
        # Anonymous mode makes the same listener valid.
        conf = d.write("y.conf", "minger_listen = 127.0.0.1:4069\nminger_anonymous = yes\n")
        cc, t = both(conf)
        S.eq((cc.returncode, t.returncode), (0, 0), "anonymous listener")


def test_bad_secrets_never_printed():
    with Dir() as d:
        d.write("secrets.txt", "# comment\nHunter2Hunter\n\n" + "Z" * 51 + "\n"
                "Sp ace-secret-0123456\n" + SECRET + "\n")
        conf = d.write("s.conf", "minger_secret_file = secrets.txt\n"
                       "minger_listen = 127.0.0.1:4069\n")
        sec = os.path.join(d.path, "secrets.txt")
        for name, p in zip(("check-config", "sharemaild -t"), both(conf)):
            S.eq(p.returncode, 78, f"{name} status")
            S.eq(p.stderr.splitlines(), [
                f"{sec}:2: secret is shorter than 16 characters",
                f"{sec}:4: secret is longer than 50 characters",
                f"{sec}:5: secret contains a space or a character that is not printable ASCII",
            ], f"{name} stderr")
            for piece in ("Hunter2", "ZZZZ", "ace-secret", SECRET):
                S.check(piece not in p.stderr + p.stdout, f"{name} printed a secret")
        os.chmod(sec, 0)
        if os.geteuid() != 0:  # root reads anything
            p = run([SHAREMAIL, "-c", conf, "check-config"])
            S.eq(p.returncode, 78, "unreadable secret file status")
            S.eq(p.stderr, f"{sec}: cannot open: Permission denied\n", "unreadable secret file")


def test_raw_file_problems():
    with Dir() as d:
        conf = d.write("raw.conf", b"hostname = a\x00b\nx = " + b"y" * 5000 +
                       b"\nlog_level = debug\x1b[2J\nminger_retries = 1", mode="wb")
        p = run([SHAREMAIL, "-c", conf, "check-config"])
        S.eq(p.returncode, 78, "status")
        S.eq(p.stderr.splitlines(), [
            f"{conf}:1: line contains a NUL octet",
            f"{conf}:2: line is longer than 4096 octets",
            f"{conf}:3: line contains a control character",
        ], "stderr")
        S.check("\x1b" not in p.stderr, "control bytes must not reach the terminal")


def test_missing_file():
    with Dir() as d:
        conf = os.path.join(d.path, "nope.conf")
        for name, p in zip(("check-config", "sharemaild -t"), both(conf)):
            S.eq(p.returncode, 78, f"{name} status")
            S.eq(p.stderr, f"{conf}: cannot open: No such file or directory\n", f"{name} stderr")


def test_usage():
    p = run([SHAREMAIL, "-c", "/nonexistent", "check-config", "extra"])
    S.eq(p.returncode, 64, "check-config with an argument")
    p = run([SHAREMAIL, "config-doc", "--roff"])
    S.eq(p.returncode, 64, "config-doc with an unknown option")


def test_example_config():
    with Dir() as d:
        with open(os.path.join(TOP, "etc", "sharemail.conf")) as f:
            conf = d.write("sharemail.conf", f.read())
        d.write("minger-secrets", SECRET + "\n")
        cc, t = both(conf)
        S.eq((cc.returncode, cc.stderr), (0, ""), "example check-config")
        S.eq(t.returncode, 0, "example sharemaild -t")


def test_config_doc():
    p = run([SHAREMAIL, "config-doc"])
    S.eq(p.returncode, 0, "config-doc status")
    keys = [line.split()[0] for line in p.stdout.splitlines()[1:]]
    S.check("minger_threads" in keys and "hostname" in keys, "config-doc lists keys")
    with open(os.path.join(TOP, "etc", "sharemail.conf")) as f:
        example = f.read()
    for k in keys:
        S.check(re.search(rf"^#?\s*{k}\s*=", example, re.M), f"etc/sharemail.conf lacks {k}")
    p = run([SHAREMAIL, "config-doc", "--man"])
    S.eq(p.returncode, 0, "config-doc --man status")
    with open(os.path.join(TOP, "doc", "sharemail.conf.5")) as f:
        page = f.read()
    m = re.search(r'^\.\\" BEGIN SCHEMA TABLE\n(.*?)^\.\\" END SCHEMA TABLE$', page, re.S | re.M)
    if S.check(m is not None, "markers in doc/sharemail.conf.5"):
        S.eq(m.group(1), p.stdout, "man page table")
    for k in keys:
        S.check(f".B {k}\n" in p.stdout, f"--man lacks {k}")


sys.exit(S.run([test_good_config, test_good_config_from_environment,
                test_bad_config_every_problem, test_range_and_cross_checks,
                test_bad_secrets_never_printed, test_raw_file_problems, test_missing_file,
                test_usage, test_example_config, test_config_doc]))
