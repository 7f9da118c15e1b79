"""peerutil: plumbing shared by the test peers (fakepeer, postfixpeer, dnszone).

- Child: a helper process (nsd, smtp-sink, Postfix's master) that never outlives the
  test: its own session and process group, stopped with SIGTERM then SIGKILL to the
  group; an atexit stop for a test that forgets; and, for a test killed outright (kill -9,
  run-all's timeout), a watchdog process that SIGKILLs every group still registered and
  removes the work folders as soon as the test process is gone. (PR_SET_PDEATHSIG alone
  would not do: the kernel clears it when a program changes its user, as smtp-sink -u and
  Postfix's master do.)
- workdir(): a temporary folder other users can traverse (Postfix's and smtp-sink's
  unprivileged processes work in it), removed at exit (or by the watchdog).
- selfsigned_cert(): a throwaway P-256 certificate for CN=peer.test, made once per process
  with the openssl command line tool.
- hard_timeout() / bounded(): a deadline per test (SIGALRM raises HardTimeout in the main
  thread), so a test that would hang fails instead, and its `with` blocks still clean up.
- wait_until(): smtpraw.wait_for that raises when the condition never comes.
Standard library only.
"""
import atexit
import ctypes
import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from smtpraw import wait_for

PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)
_children = set()
_dirs = []
_children_lock = threading.Lock()
_watchdog = None

# The watchdog reads "+PGID", "-PGID", "dPATH", "rPATH" lines from the test process; the
# pipe's EOF means the test process is gone, however it died: then it kills what is left.
WATCHDOG = r"""# sharemail peerutil watchdog
import os, shutil, signal, sys, time
groups, dirs = set(), []
for line in sys.stdin:
    op, arg = line[:1], line[1:].rstrip("\n")
    if op == "+":
        groups.add(int(arg))
    elif op == "-":
        groups.discard(int(arg))
    elif op == "d":
        dirs.append(arg)
    elif op == "r" and arg in dirs:
        dirs.remove(arg)
for g in groups:
    try:
        os.killpg(g, signal.SIGKILL)
    except OSError:
        pass
if groups:
    time.sleep(0.5)     # the killed daemons let go of their files
for d in dirs:
    shutil.rmtree(d, ignore_errors=True)
"""


class HardTimeout(Exception):
    """A test ran past its hard deadline (raised by hard_timeout in the main thread)."""


def _watch(line):
    """Tells the watchdog (started on first use) one line."""
    global _watchdog
    with _children_lock:
        if _watchdog is None or _watchdog.poll() is not None:
            _watchdog = subprocess.Popen([sys.executable, "-c", WATCHDOG],
                                         stdin=subprocess.PIPE, start_new_session=True,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _watchdog.stdin.write((line + "\n").encode("utf-8", "surrogateescape"))
            _watchdog.stdin.flush()
        except OSError:
            pass


def _die_with_parent():
    parent = os.getpid()

    def pre():
        os.setsid()
        # First line of defence (kept by nsd): SIGKILL when the forking thread ends.
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before prctl: do not run orphaned
            os._exit(1)
    return pre


class Child:
    """A process started with `argv` in its own session and process group (the group's
    id is its pid), output (stdout and stderr) appended to log_path."""

    def __init__(self, argv, log_path, **popen_kw):
        self.argv = list(argv)
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=self._log,
                                     stderr=subprocess.STDOUT, preexec_fn=_die_with_parent(),
                                     **popen_kw)
        self.pid = self.proc.pid
        _watch(f"+{self.pid}")
        with _children_lock:
            _children.add(self)

    def alive(self):
        return self.proc.poll() is None

    def logtext(self, tail=4000):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")[-tail:]
        except OSError:
            return ""

    def _group_alive(self):
        """True while a process of the group lives (zombies do not count: they hold no
        files or ports, and init may reap them late)."""
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == self.pid and fields[0] != "Z":
                return True
        return False

    def stop(self, grace=10.0):
        """SIGTERM to the group, wait up to `grace` s, then SIGKILL whatever is left of the
        group; returns the exit status. Idempotent."""
        with _children_lock:
            _children.discard(self)
        if self.proc.poll() is None:
            try:
                os.killpg(self.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                pass
        # The leader is gone (or stuck): nothing of the group may stay.
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        rc = self.proc.wait()
        deadline = time.monotonic() + grace
        while self._group_alive() and time.monotonic() < deadline:
            time.sleep(0.02)    # a bound: processes of the group not yet reaped by init
        if not self._log.closed:
            self._log.close()
        _watch(f"-{self.pid}")
        return rc


@atexit.register
def _stop_all():
    with _children_lock:
        left = list(_children)
    for c in left:
        try:
            c.stop(grace=3.0)
        except Exception:  # noqa: BLE001 - at exit, keep stopping the others
            pass
    # Only then the folders: a child may still have been writing there.
    for d in reversed(_dirs):
        shutil.rmtree(d, ignore_errors=True)
        _watch(f"r{d}")
    if _watchdog is not None:
        try:
            _watchdog.stdin.close()     # EOF: nothing is left for it to do
            _watchdog.wait(5)
        except (OSError, subprocess.TimeoutExpired):
            pass


def workdir(prefix="sharemail-peer-", keep=False):
    """A new temporary folder, mode 0755 (unprivileged daemons traverse it), removed at
    exit unless keep."""
    d = tempfile.mkdtemp(prefix=prefix)
    os.chmod(d, 0o755)
    if not keep:
        with _children_lock:
            _dirs.append(d)
        _watch(f"d{d}")
    return d


_cert = None
_cert_lock = threading.Lock()


def selfsigned_cert(cn="peer.test"):
    """(cert_path, key_path) of a throwaway self-signed P-256 certificate for `cn` (also a
    subjectAltName DNS:cn and IP:127.0.0.1), valid one day; made once per process by
    `openssl req` and removed at exit. The key file is world-readable (a test key)."""
    global _cert
    with _cert_lock:
        if _cert and _cert[0] == cn:
            return _cert[1]
        d = workdir("sharemail-cert-")
        cert, key = os.path.join(d, "cert.pem"), os.path.join(d, "key.pem")
        p = subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                            "ec_paramgen_curve:P-256", "-nodes", "-days", "1", "-subj",
                            f"/CN={cn}", "-addext", f"subjectAltName=DNS:{cn},IP:127.0.0.1",
                            "-keyout", key, "-out", cert],
                           capture_output=True, text=True, timeout=60)
        if p.returncode != 0:
            raise RuntimeError(f"openssl req failed ({p.returncode}): {p.stderr.strip()}")
        os.chmod(key, 0o644)
        _cert = (cn, (cert, key))
        return cert, key


class hard_timeout:
    """with hard_timeout(20): ... raises HardTimeout in the main thread after 20 s.
    Only in the main thread (SIGALRM); does not nest."""

    def __init__(self, seconds):
        self.seconds = max(1, int(seconds))

    def _fire(self, signum, frame):
        raise HardTimeout(f"hard timeout of {self.seconds} s")

    def __enter__(self):
        self.old = signal.signal(signal.SIGALRM, self._fire)
        signal.alarm(self.seconds)
        return self

    def __exit__(self, *exc):
        signal.alarm(0)
        signal.signal(signal.SIGALRM, self.old)


def bounded(seconds):
    """Decorator: the test function fails with HardTimeout after `seconds`."""
    def wrap(fn):
        @functools.wraps(fn)
        def run(*a, **kw):
            with hard_timeout(seconds):
                return fn(*a, **kw)
        return run
    return wrap


def wait_until(cond, timeout, what="condition"):
    """smtpraw.wait_for (polls cond() until true, bounded by timeout), but raises
    TimeoutError(what) instead of returning a false value. For state only a subprocess or
    the file system shows; in-process events use threading.Condition."""
    v = wait_for(cond, timeout, 0.02)
    if not v:
        raise TimeoutError(f"{what}: not within {timeout} s")
    return v
