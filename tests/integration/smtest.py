"""smtest: helpers for integration tests that run the real sharemaild.

- Suite: counts checks and skips, and prints the closing
  "N passed, N failed, N skipped" line (a skip is never counted as a pass).
- free_udp_port / free_tcp_port: an unused port on a loopback address.
- Daemon: writes a config into a fresh temporary state directory, runs
  build/sharemaild -c FILE in the foreground, waits until it logs "ready",
  and stops it (SIGTERM, then SIGKILL) when the test ends.
- cli(): runs build/sharemail with the daemon's config.
Only the Python standard library is used, so the clients are independent of ours.
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

BUILD = os.environ.get("SHAREMAIL_BUILD") or os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "build")
SHAREMAILD = os.path.join(BUILD, "sharemaild")
SHAREMAIL = os.path.join(BUILD, "sharemail")
# A smart host nobody listens on: connections are refused at once (see Daemon).
RELAY_NOWHERE = "[127.0.0.1]:1"


class Suite:
    """Runs test functions, counting each check; a test that raises is one failure."""

    def __init__(self, name):
        self.name = name
        self.passed = 0
        self.failed = 0
        self.skipped = 0
        self.current = None

    def check(self, cond, what=""):
        if cond:
            self.passed += 1
        else:
            self.failed += 1
            frames = [f for f in traceback.extract_stack() if f.filename != __file__]
            caller = frames[-1] if frames else traceback.extract_stack()[-2]
            print(f"FAIL {self.current}: {caller.filename}:{caller.lineno}: {what}", flush=True)
        return cond

    def skip(self, why):
        """Records that the current test could not run here (never a pass)."""
        self.skipped += 1
        print(f"SKIP {self.current}: {why}", flush=True)

    def raises(self, excs, fn, what=""):
        """Checks that fn() raises one of excs (a class or a tuple); returns the exception,
        or None after recording a failure. Any other exception propagates (a failure too)."""
        try:
            fn()
        except excs as e:
            self.passed += 1
            return e
        self.check(False, f"{what}: no {excs!r} raised")
        return None

    def eq(self, got, want, what=""):
        return self.check(got == want, f"{what}: got {got!r}, want {want!r}")

    def run(self, tests):
        for t in tests:
            self.current = t.__name__
            try:
                t()
            except Exception:
                self.failed += 1
                print(f"FAIL {t.__name__}: exception", flush=True)
                traceback.print_exc(file=sys.stdout)
        print(f"{self.passed} passed, {self.failed} failed, {self.skipped} skipped", flush=True)
        return 0 if self.failed == 0 else 1


def free_udp_port(host="127.0.0.1"):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def free_tcp_port(host="127.0.0.1"):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def have_ipv6():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


class Daemon:
    """A sharemaild with its own temporary state_dir and config.

    conf: dict of extra config keys (a list value repeats the key, None leaves it out).
    Mail for other domains goes to a smart host that refuses connections
    (RELAY_NOWHERE) unless a test sets relay_smarthost (None: MX lookups): a test
    never reaches the internet, and such mail stays deferred.
    secrets: list of Minger secrets written to secrets.txt (sets minger_secret_file).
    """

    def __init__(self, conf=None, secrets=None, domains="example.com", minger=True):
        self.dir = tempfile.mkdtemp(prefix="sharemail-test-")
        self.state = os.path.join(self.dir, "state")
        self.conf_path = os.path.join(self.dir, "sharemail.conf")
        self.log_path = os.path.join(self.dir, "sharemaild.log")
        self.proc = None
        self.minger_port = free_udp_port() if minger else None
        keys = {"hostname": "mx.test", "state_dir": "state", "local_domains": domains,
                "log_level": "debug", "relay_smarthost": RELAY_NOWHERE,
                # Every test client is 127.0.0.1: the Dynamic Screen's event rules are
                # off unless a test turns them on (test_screen_daemon.py does).
                "screen_connection_rate": "0/1m", "screen_unknown_recipients": "0/1m",
                "screen_auth_failures": "0/1m"}
        if minger:
            keys["minger_listen"] = f"127.0.0.1:{self.minger_port}"
        if secrets:
            path = os.path.join(self.dir, "secrets.txt")
            with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
                f.write("".join(s + "\n" for s in secrets))
            keys["minger_secret_file"] = "secrets.txt"
        keys.update(conf or {})
        self.write_conf(keys)

    def write_conf(self, keys):
        with open(self.conf_path, "w") as f:
            for k, v in keys.items():
                for item in (v if isinstance(v, list) else [] if v is None else [v]):
                    f.write(f"{k} = {item}\n")

    def cli(self, *args, input=None, check=True):
        """Runs `sharemail -c CONF args...`; returns CompletedProcess (text)."""
        p = subprocess.run([SHAREMAIL, "-c", self.conf_path, *args], input=input,
                           capture_output=True, text=True, timeout=60)
        if check and p.returncode != 0:
            raise RuntimeError(f"sharemail {' '.join(args)} -> {p.returncode}: {p.stderr}")
        return p

    def start(self, wait=10.0, extra_env=None):
        env = dict(os.environ)
        env.pop("NOTIFY_SOCKET", None)  # a test daemon never notifies a real service manager
        env.update(extra_env or {})
        # A restart appends to the same log: only lines written after this point count.
        start_offset = len(self.logtext())
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([SHAREMAILD, "-c", self.conf_path], stdout=self.log,
                                     stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sharemaild exited {self.proc.returncode}:\n{self.logtext()}")
            if "sharemaild ready" in self.logtext()[start_offset:]:
                return self
            time.sleep(0.02)
        raise RuntimeError("sharemaild did not become ready:\n" + self.logtext())

    def logtext(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def stop(self):
        rc = None
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                rc = self.proc.wait()
        elif self.proc:
            rc = self.proc.returncode
        self.proc = None
        return rc

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()


def auth_daemon(conf, accounts=()):
    """A started Daemon on a free SMTP port (d.port) with plaintext AUTH allowed, the
    account alice@example.com (password "secret"), bob@example.com and each of accounts
    (no password), and the alias al@example.com -> alice: the sender-rule suites
    (test_auth_rules_daemon.py, test_pop_before_smtp_daemon.py). conf adds or overrides
    keys."""
    port = free_tcp_port()
    keys = {"smtp_listen": f"127.0.0.1:{port}", "auth_allow_plaintext": "yes"}
    keys.update(conf)
    d = Daemon(conf=keys, minger=False)
    d.port = port
    pw = os.path.join(d.dir, "pw")
    with open(pw, "w") as f:
        f.write("secret\n")
    d.cli("account", "add", "alice@example.com", "--password-file", pw)
    for a in ("bob@example.com",) + tuple(accounts):
        d.cli("account", "add", a, "--no-password")
    d.cli("alias", "add", "al@example.com", "alice@example.com")
    d.start()
    return d


def udp_ask(port, payload, host="127.0.0.1", timeout=1.0):
    """Sends one datagram, returns the reply bytes or None after timeout."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(payload, (host, port))
        try:
            data, _ = s.recvfrom(4096)
            return data
        except socket.timeout:
            return None


def smtp_daemon(conf=None, accounts=("alice@example.com", "bob@example.com")):
    """A started Daemon with an SMTP listener on 127.0.0.1 (d.smtp_port), no Minger,
    and the given accounts created before it starts."""
    port = free_tcp_port()
    keys = {"smtp_listen": f"127.0.0.1:{port}"}
    keys.update(conf or {})
    d = Daemon(conf=keys, minger=False)
    d.smtp_port = port
    try:
        for a in accounts:
            d.cli("account", "add", a, "--no-password")
        d.start()
    except Exception:
        d.cleanup()
        raise
    return d


def maildir_new(d, address):
    """The new/ folder of the Maildir that holds mail for `address`."""
    user, domain = address.lower().split("@")
    return os.path.join(d.state, "mail", domain, user, "Maildir", "new")


def wait_mail(d, address, count=1, timeout=10.0):
    """Waits (a bound, never asserted) until `count` messages are in the mailbox's
    new/; returns the contents of every message there, oldest name first."""
    import glob
    path = maildir_new(d, address)
    deadline = time.monotonic() + timeout
    while True:  # looks at least once, even with timeout=0
        files = sorted(glob.glob(os.path.join(path, "*")))
        if len(files) >= count or time.monotonic() >= deadline:
            break
        time.sleep(0.05)
    out = []
    for f in files:
        with open(f, "rb") as fh:
            out.append(fh.read())
    return out
