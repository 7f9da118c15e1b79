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

    def secret(self, name, text, perm=0o600):
        """A secret file, by default only for its owner (else check-config warns)."""
        p = self.write(name, text)
        os.chmod(p, perm)
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
        d.secret("secrets.txt", "# secrets\n\n" + SECRET + "\n")
        conf = d.write("sharemail.conf", GOOD)
        cc, t = both(conf)
        S.eq(cc.returncode, 0, "check-config status")
        S.eq(cc.stdout, f"{conf}: ok\n", "check-config stdout")
        S.eq(cc.stderr, "", "check-config stderr")
        S.eq(t.returncode, 0, "sharemaild -t status")
        S.check("sharemaild ready" not in t.stdout + t.stderr, "-t must not start services")


def test_good_config_from_environment():
    with Dir() as d:
        d.secret("secrets.txt", SECRET + "\n")
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
        conf = d.write("x.conf", "minger_listen = 127.0.0.1:4069\nminger_threads = 0\n"
                       "local_domains = example.com\n")
        p = run([SHAREMAIL, "-c", conf, "check-config"])
        S.eq(p.returncode, 78, "status")
        S.eq(p.stderr.splitlines(), [
            f"{conf}:2: minger_threads must be between 1 and 64",
            f"{conf}:1: minger_listen is set but there is neither a minger_secret_file nor "
            "minger_anonymous = yes, so no query could ever be answered",
        ], "stderr")
        # Anonymous mode makes the same listener valid.
        conf = d.write("y.conf", "minger_listen = 127.0.0.1:4069\nminger_anonymous = yes\n"
                       "local_domains = example.com\n")
        cc, t = both(conf)
        S.eq((cc.returncode, t.returncode), (0, 0), "anonymous listener")


def test_bad_secrets_never_printed():
    with Dir() as d:
        d.secret("secrets.txt", "# comment\nHunter2Hunter\n\n" + "Z" * 51 + "\n"
                 "Sp ace-secret-0123456\n" + SECRET + "\n")
        conf = d.write("s.conf", "minger_secret_file = secrets.txt\n"
                       "minger_listen = 127.0.0.1:4069\nlocal_domains = example.com\n")
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


def as_nobody():
    """preexec_fn for a child that must not be root: root reads every file."""
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)


def test_unreadable_secret_file():
    """A secret file the daemon's user cannot read is an error at the key's line. As root
    (CI) the check runs as nobody, since root may read any file."""
    with Dir() as d:
        d.secret("secrets.txt", SECRET + "\n", perm=0)
        conf = d.write("u.conf", "local_domains = example.com\n"
                       "minger_secret_file = secrets.txt\n")
        sec = os.path.join(d.path, "secrets.txt")
        want = f"{conf}:2: cannot open minger_secret_file {sec}: Permission denied\n"
        pre = None
        if os.geteuid() == 0:
            if not all(os.stat(p).st_mode & 0o001 for p in [SHAREMAIL] + parents(SHAREMAIL)):
                S.skip("root, and nobody cannot run the build's sharemail")
                return
            os.chmod(d.path, 0o755)
            os.chmod(conf, 0o644)
            pre = as_nobody
        try:
            p = subprocess.run([SHAREMAIL, "-c", conf, "check-config"], capture_output=True,
                               text=True, timeout=30, preexec_fn=pre)
        except (PermissionError, subprocess.SubprocessError) as e:
            S.skip(f"cannot drop to nobody: {e}")
            return
        S.eq((p.returncode, p.stdout, p.stderr), (78, "", want), "unreadable secret file")


def parents(path):
    """The folders above path (each must be searchable by nobody)."""
    out = []
    path = os.path.dirname(os.path.abspath(path))
    while True:
        out.append(path)
        if path == "/":
            return out
        path = os.path.dirname(path)


def test_secret_file_problems():
    """Missing, a directory (unreadable even for root), open to others: each at the line of
    minger_secret_file, so the administrator knows which line to fix."""
    with Dir() as d:
        text = "local_domains = example.com\n\nminger_secret_file = secrets.txt\n"
        conf = d.write("m.conf", text)
        sec = os.path.join(d.path, "secrets.txt")
        for name, p in zip(("check-config", "sharemaild -t"), both(conf)):
            S.eq((p.returncode, p.stderr),
                 (78, f"{conf}:3: cannot open minger_secret_file {sec}: "
                      "No such file or directory\n"), f"missing secret file, {name}")
        os.mkdir(sec)
        for name, p in zip(("check-config", "sharemaild -t"), both(conf)):
            S.eq((p.returncode, p.stderr),
                 (78, f"{conf}:3: cannot open minger_secret_file {sec}: Is a directory\n"),
                 f"secret file is a directory, {name}")
        os.rmdir(sec)
        for perm in (0o644, 0o640, 0o604):
            d.secret("secrets.txt", SECRET + "\n", perm=perm)
            cc, t = both(conf)
            S.eq((cc.returncode, cc.stdout), (0, f"{conf}: ok\n"), f"mode {perm:o}: still ok")
            S.eq(cc.stderr, f"{conf}:3: warning: minger_secret_file {sec} has mode 0{perm:o}: "
                            "group or others may read the secrets (chmod 600 it)\n",
                 f"mode {perm:o}: warning")
            S.eq(t.returncode, 0, f"mode {perm:o}: sharemaild -t status")
        d.secret("secrets.txt", SECRET + "\n", perm=0o400)
        cc = run([SHAREMAIL, "-c", conf, "check-config"])
        S.eq((cc.returncode, cc.stdout, cc.stderr), (0, f"{conf}: ok\n", ""), "mode 400: quiet")
        # A warning does not hide an error, nor make one.
        d.write("m.conf", text + "minger_threads = 0\n")
        d.secret("secrets.txt", SECRET + "\n", perm=0o644)
        cc = run([SHAREMAIL, "-c", conf, "check-config"])
        S.eq((cc.returncode, cc.stdout), (78, ""), "warning and error: status")
        S.eq(cc.stderr.splitlines(), [
            f"{conf}:4: minger_threads must be between 1 and 64",
            f"{conf}:3: warning: minger_secret_file {sec} has mode 0644: group or others may "
            "read the secrets (chmod 600 it)"], "warning and error: both shown")


def test_listen_clashes():
    """Two TCP listen keys on one address, or a wildcard and an address on one port: the
    daemon would die at bind(); check-config names the line of the second."""
    with Dir() as d:
        conf = d.write("l.conf", "local_domains = example.com\n"
                       "smtp_listen = 127.0.0.1:25\n"
                       "minger_listen = 127.0.0.1:25\n"          # UDP: no clash
                       "minger_anonymous = yes\n"
                       "submission_listen = 127.0.0.1:587 127.0.0.1:25\n"
                       "smtp_listen = [::1]:2525\n"
                       "submission_listen = *:2526\n"
                       "smtps_listen = 127.0.0.2:2526\n"
                       "pop3_listen = [::]:2526\n"               # IPv6-only: no clash
                       "pop3_listen = [::1]:2525\n")
        for name, p in zip(("check-config", "sharemaild -t"), both(conf)):
            S.eq((p.returncode, p.stdout), (78, ""), f"{name} status")
            S.eq(p.stderr.splitlines(), [
                f"{conf}:5: submission_listen: '127.0.0.1:25' is also in smtp_listen (line 2); "
                "the daemon cannot bind it twice",
                f"{conf}:8: smtps_listen: '127.0.0.2:2526' overlaps '*:2526' "
                "(submission_listen, line 7); the daemon cannot bind both",
                f"{conf}:10: pop3_listen: '[::1]:2525' is also in smtp_listen (line 6); "
                "the daemon cannot bind it twice",
                f"{conf}:8: smtps_listen is set but tls_cert_file is not (implicit TLS "
                "needs a certificate)",
            ], f"{name} stderr")


def test_state_dir_not_a_directory():
    with Dir() as d:
        d.write("plain", "not a folder\n")
        conf = d.write("sd.conf", "local_domains = example.com\nstate_dir = plain\n")
        path = os.path.join(d.path, "plain")
        for name, p in zip(("check-config", "sharemaild -t"), both(conf)):
            S.eq((p.returncode, p.stderr),
                 (78, f"{conf}:2: state_dir {path} exists but is not a directory\n"),
                 f"{name}: state_dir is a file")
        conf = d.write("sd.conf", "local_domains = example.com\nstate_dir = plain/below\n")
        p = run([SHAREMAIL, "-c", conf, "check-config"])
        S.eq((p.returncode, p.stderr),
             (78, f"{conf}:2: state_dir {path}/below: Not a directory\n"), "below a file")
        # Missing is fine: the daemon creates it.
        conf = d.write("sd.conf", "local_domains = example.com\nstate_dir = new/state\n")
        p = run([SHAREMAIL, "-c", conf, "check-config"])
        S.eq((p.returncode, p.stderr), (0, ""), "missing state_dir")


def test_no_local_domains():
    with Dir() as d:
        conf = d.write("n.conf", "smtp_listen = 127.0.0.1:2525\n")
        for name, p in zip(("check-config", "sharemaild -t"), both(conf)):
            S.eq((p.returncode, p.stderr),
                 (78, f"{conf}: local_domains is not set, so this server holds no mailbox: "
                      "mail for it would be refused and every Minger query answered unknown\n"),
                 f"{name}: listener without local_domains")
        # Without a listener (a client-only configuration for the tool) it is fine.
        conf = d.write("n.conf", "minger_timeout_ms = 500\n")
        p = run([SHAREMAIL, "-c", conf, "check-config"])
        S.eq((p.returncode, p.stderr), (0, ""), "no listener, no local_domains")


def test_did_you_mean():
    with Dir() as d:
        conf = d.write("k.conf", "local_domains = example.com\n"
                       "minger_secrets_file = s\n"
                       "Hostname = mx.test\n"
                       "smtp_max_msg_size = 10m\n"
                       "smtp_listn = 127.0.0.1:25\n"
                       "frobnicate = 1\n")
        for name, p in zip(("check-config", "sharemaild -t"), both(conf)):
            S.eq(p.returncode, 78, f"{name} status")
            S.eq(p.stderr.splitlines(), [
                f"{conf}:2: unknown key 'minger_secrets_file' (did you mean "
                "'minger_secret_file'?)",
                f"{conf}:3: unknown key 'Hostname' (did you mean 'hostname'?)",
                f"{conf}:4: unknown key 'smtp_max_msg_size' (did you mean "
                "'smtp_max_message_size'?)",
                f"{conf}:5: unknown key 'smtp_listn' (did you mean 'smtp_listen'?)",
                f"{conf}:6: unknown key 'frobnicate'",
            ], f"{name} stderr")


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
        d.secret("minger-secrets", SECRET + "\n")
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
                test_bad_secrets_never_printed, test_unreadable_secret_file,
                test_secret_file_problems, test_listen_clashes, test_state_dir_not_a_directory,
                test_no_local_domains, test_did_you_mean, test_raw_file_problems, test_missing_file,
                test_usage, test_example_config, test_config_doc]))
