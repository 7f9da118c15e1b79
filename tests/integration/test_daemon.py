#!/usr/bin/env python3
"""test_daemon: sharemaild as a process that an administrator and a service
manager drive, against the real daemon.

- Ports: a second daemon on the same minger_listen (SO_REUSEPORT would let it
  join and take a share of the queries) or on a port any other socket holds fails
  to start, naming the config line; the first one still answers every query.
- state_dir: a second daemon on the same state refuses to start, naming the pid.
- SIGHUP: the daemon keeps running; keys that reload take effect for new
  sessions (an open session keeps its own); keys that need a restart are named
  in one line and not applied; a broken file is reported with file:line and the
  running configuration stays; log_file is reopened (logrotate's rename).
- log_syslog, through a datagram socket the test binds (SHAREMAIL_TEST_SYSLOG_PATH).
- sd_notify: READY=1 once the ports are bound, RELOADING=1/READY=1, STOPPING=1.
- --help, --version, -t.
"""
import os
import re
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from smtest import RELAY_NOWHERE, SHAREMAILD, Daemon, Suite, free_tcp_port, udp_ask  # noqa: E402

S = Suite("daemon")
TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WAIT = 10.0  # a bound on waiting, never asserted as a duration
ARVEL = b"arvel@example.com pad=00"  # an anonymous Minger query (padded: strict amplification)


def clean_env(extra=None):
    e = dict(os.environ)
    for k in ("SHAREMAIL_CONF", "NOTIFY_SOCKET", "SHAREMAIL_TEST_SYSLOG_PATH"):
        e.pop(k, None)
    e.update(extra or {})
    return e


class Proc:
    """sharemaild -c CONF as a child; stdout and stderr go to CONF.out."""

    def __init__(self, conf_path, env=None, args=()):
        self.out_path = conf_path + ".out"
        self.out = open(self.out_path, "ab")
        self.p = subprocess.Popen([SHAREMAILD, "-c", conf_path, *args], stdout=self.out,
                                  stderr=subprocess.STDOUT, env=clean_env(env))

    def text(self):
        with open(self.out_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def wait_for(self, pred, timeout=WAIT):
        """Waits until pred() holds (True) or the process ends or the bound passes (False)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred():
                return True
            if self.p.poll() is not None:
                return pred()
            time.sleep(0.02)
        return pred()

    def outcome(self, stop=True):
        """The exit status of a daemon that must not start; None if it started (and is
        then stopped, unless stop is False)."""
        self.wait_for(lambda: "sharemaild ready" in self.text())
        if self.p.poll() is None:
            if stop:
                self.stop()
            return None
        return self.p.returncode

    def stop(self):
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGTERM)
            try:
                self.p.wait(WAIT)
            except subprocess.TimeoutExpired:
                self.p.kill()
                self.p.wait()
        self.out.close()
        return self.p.returncode


def conf_line(path, key):
    """The number of the first line of path that sets key."""
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if line.split("=")[0].strip() == key:
                return n
    raise AssertionError(f"{key} not in {path}")


def where(d, key, value):
    """What a bind error must start with: FILE:LINE: KEY VALUE (FILE resolved)."""
    return f"{os.path.realpath(d.conf_path)}:{conf_line(d.conf_path, key)}: {key} {value}"


def add_account(d, address):
    pw = os.path.join(d.dir, "pw.txt")
    with open(pw, "w") as f:
        f.write("correct horse battery staple\n")
    d.cli("account", "add", address, "--password-file", pw)


def wait_log(d, text, offset=0, timeout=WAIT):
    """Waits (bounded) until text is in d's log after offset; returns whether it is."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in d.logtext()[offset:] or d.proc.poll() is not None:
            break
        time.sleep(0.02)
    return text in d.logtext()[offset:]


def hup(d, text, offset=None):
    """Sends SIGHUP and waits for text in the log; checks that the daemon still runs."""
    offset = len(d.logtext()) if offset is None else offset
    d.proc.send_signal(signal.SIGHUP)
    got = wait_log(d, text, offset)
    S.check(d.proc.poll() is None, f"SIGHUP ended the daemon (status {d.proc.returncode})")
    S.check(got, f"after SIGHUP the log has {text!r}:\n{d.logtext()[offset:]}")
    return offset


def ehlo(d, name):
    """A new SMTP session: (greeting text, EHLO reply code)."""
    c = smtplib.SMTP(timeout=WAIT)
    code, greeting = c.connect("127.0.0.1", d.smtp_port)
    try:
        r = c.ehlo(name)[0]
    except smtplib.SMTPServerDisconnected:
        r = None
    try:
        c.close()
    except OSError:
        pass
    return greeting.decode(), r


def smtp_d(conf=None):
    port = free_tcp_port()
    keys = {"smtp_listen": f"127.0.0.1:{port}"}
    keys.update(conf or {})
    d = Daemon(conf=keys, minger=False)
    d.smtp_port = port
    d.keys = {"hostname": "mx.test", "state_dir": "state", "local_domains": "example.com",
              "log_level": "debug", "relay_smarthost": RELAY_NOWHERE, **keys}
    return d


def rewrite(d, **changes):
    """Writes d's config again with the given keys changed (None removes one)."""
    keys = dict(d.keys)
    for k, v in changes.items():
        if v is None:
            keys.pop(k, None)
        else:
            keys[k] = v
    d.write_conf(keys)


# ---- ports and state_dir ----

def test_second_daemon_same_minger_port():
    with Daemon(conf={"minger_anonymous": "yes"}) as a:
        add_account(a, "arvel@example.com")
        a.start()
        S.eq(udp_ask(a.minger_port, ARVEL), b"arvel@example.com 5", "first daemon answers")
        listen = f"127.0.0.1:{a.minger_port}"
        with Daemon(conf={"minger_anonymous": "yes", "minger_listen": listen}) as b:
            p = Proc(b.conf_path)
            rc = p.outcome(stop=False)
            S.check(rc not in (None, 0), f"second daemon on {listen}: status {rc}")
            want = where(b, "minger_listen", listen) + ": Address already in use"
            S.check(want in p.text(), f"{want!r} in:\n{p.text()}")
            # Each query from a new socket (a new source port): had the second daemon
            # joined the port's group, the kernel would give it some ("3": unknown).
            answers = [udp_ask(a.minger_port, ARVEL) for _ in range(10)]
            S.eq(sum(r == b"arvel@example.com 5" for r in answers), 10, f"answers {answers}")
            S.check(a.proc.poll() is None, "the first daemon still runs")
            p.stop()


def test_minger_port_held_with_reuseport():
    """Any socket of ours (same user) with SO_REUSEPORT: the daemon must not join it."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        listen = f"127.0.0.1:{port}"
        with Daemon(conf={"minger_anonymous": "yes", "minger_listen": listen,
                          "minger_threads": "2"}) as d:
            p = Proc(d.conf_path)
            rc = p.outcome()
            S.check(rc not in (None, 0), f"daemon on a held port: status {rc}")
            want = where(d, "minger_listen", listen) + ": Address already in use"
            S.check(want in p.text(), f"{want!r} in:\n{p.text()}")
            p.stop()


def test_smtp_port_held():
    for key in ("smtp_listen", "submission_listen"):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            s.listen(1)
            listen = f"127.0.0.1:{s.getsockname()[1]}"
            with Daemon(conf={"log_level": "info", key: listen}, minger=False) as d:
                p = Proc(d.conf_path)
                rc = p.outcome()
                S.check(rc not in (None, 0), f"{key} on a held port: status {rc}")
                want = where(d, key, listen) + ": Address already in use"
                S.check(want in p.text(), f"{want!r} in:\n{p.text()}")
                p.stop()


def test_address_not_here():
    """The example config's 192.0.2.10 (TEST-NET-1): every bind error names its line."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind(("192.0.2.10", 0))
            S.skip("192.0.2.10 is an address of this machine")
            return
        except OSError:
            pass
    for key, listen in (("minger_listen", "192.0.2.10:4069"), ("smtp_listen", "192.0.2.10:25")):
        with Daemon(conf={"minger_anonymous": "yes", key: listen},
                    minger=key == "minger_listen") as d:
            p = Proc(d.conf_path)
            rc = p.outcome()
            S.check(rc not in (None, 0), f"{key} {listen}: status {rc}")
            want = where(d, key, listen) + ": Cannot assign requested address"
            S.check(want in p.text(), f"{want!r} in:\n{p.text()}")
            p.stop()


def test_second_daemon_same_state():
    with Daemon(minger=False) as a:
        a.start()
        pid_file = os.path.join(a.state, "sharemaild.pid")
        with open(pid_file) as f:
            S.eq(f.read(), f"{a.proc.pid}\n", "the pid file holds the daemon's pid")
        with Daemon(conf={"state_dir": a.state}, minger=False) as b:
            p = Proc(b.conf_path)
            rc = p.outcome()
            S.check(rc not in (None, 0), f"second daemon on the same state_dir: status {rc}")
            want = f"state_dir {a.state} is in use by sharemaild pid {a.proc.pid}"
            S.check(want in p.text(), f"{want!r} in:\n{p.text()}")
            S.check(pid_file in p.text(), "the message names the lock file")
            p.stop()
            S.check(a.proc.poll() is None, "the first daemon still runs")
            with open(pid_file) as f:
                S.eq(f.read(), f"{a.proc.pid}\n", "the refused daemon left the pid file alone")
            S.eq(a.stop(), 0, "first daemon stops")
            # The lock goes with the process: now the second one starts.
            p = Proc(b.conf_path)
            S.check(p.wait_for(lambda: "sharemaild ready" in p.text()), "starts once free")
            with open(pid_file) as f:
                S.eq(f.read(), f"{p.p.pid}\n", "the pid file holds the new pid")
            S.eq(p.stop(), 0, "second daemon stops")


# ---- SIGHUP ----

def test_sighup_reloadable_key():
    with smtp_d() as d:
        d.start()
        S.eq(ehlo(d, "evil.example")[1], 250, "EHLO evil before the reload")
        old = smtplib.SMTP("127.0.0.1", d.smtp_port, timeout=WAIT)  # opened before SIGHUP
        rewrite(d, smtp_refuse_helo="evil")
        off = hup(d, "SIGHUP: configuration reloaded; changed: smtp_refuse_helo")
        S.check("need a restart" not in d.logtext()[off:], "nothing needs a restart")
        S.eq(ehlo(d, "evil.example")[1], 554, "EHLO evil in a new session after the reload")
        S.eq(ehlo(d, "good.example")[1], 250, "EHLO good after the reload")
        S.eq(old.ehlo("evil.example")[0], 250, "a session opened before keeps its config")
        S.eq(old.noop()[0], 250, "and goes on")
        old.quit()
        # Back again: the key can be unset as well as set. A session opened under the
        # second config keeps it after a third one retires it (freed only once that
        # session ends: under ASan a use after free would end the daemon here).
        mid = smtplib.SMTP("127.0.0.1", d.smtp_port, timeout=WAIT)
        rewrite(d)
        hup(d, "SIGHUP: configuration reloaded; changed: smtp_refuse_helo")
        S.eq(ehlo(d, "evil.example")[1], 250, "EHLO evil once the key is gone")
        code = mid.ehlo("evil.example")[0]
        S.eq(code, 554, "the session opened under the second config still refuses evil")
        off = len(d.logtext())
        S.check("freed" not in d.logtext(), "not freed while a session uses it")
        mid.close()
        S.check(wait_log(d, "an earlier configuration is used by no session; freed", off),
                "freed once its last session ended")
        S.eq(d.stop(), 0, "clean stop after reloads")


def test_sighup_restart_keys():
    with smtp_d() as d:
        d.start()
        rewrite(d, hostname="mx2.test", minger_threads="4", smtp_max_errors="7")
        off = hup(d, "SIGHUP: configuration reloaded; changed: smtp_max_errors")
        lines = [ln for ln in d.logtext()[off:].splitlines() if "need a restart" in ln]
        S.eq(len(lines), 1, f"one line names the keys: {lines}")
        S.check(lines and lines[0].endswith("SIGHUP: these keys need a restart: "
                                            "hostname, minger_threads"), f"{lines}")
        greeting, code = ehlo(d, "client.example")
        S.check(greeting.startswith("mx.test "), f"hostname not applied: {greeting!r}")
        S.eq(code, 250, "EHLO")


def test_sighup_broken_config():
    with smtp_d() as d:
        d.start()
        rewrite(d, smtp_refuse_helo="evil", no_such_key="1")
        line = conf_line(d.conf_path, "no_such_key")
        path = os.path.realpath(d.conf_path)
        off = hup(d, "the running configuration stays in force")
        log = d.logtext()[off:]
        S.check(f"{d.conf_path}:{line}: unknown key 'no_such_key'" in log or
                f"{path}:{line}: unknown key 'no_such_key'" in log, f"file:line in:\n{log}")
        S.check("configuration reloaded" not in log, "not reloaded")
        S.eq(ehlo(d, "evil.example")[1], 250, "the old config is still in force")
        rewrite(d, smtp_refuse_helo="evil")  # fixed
        hup(d, "SIGHUP: configuration reloaded; changed: smtp_refuse_helo")
        S.eq(ehlo(d, "evil.example")[1], 554, "the fixed file applies")


def test_sighup_log_level():
    with smtp_d() as d:
        d.start()
        rewrite(d, log_level="warning", hostname="mx2.test")
        off = hup(d, "SIGHUP: these keys need a restart: hostname")
        after = d.logtext().index("need a restart", off)
        ehlo(d, "client.example")
        rewrite(d, log_level="warning", bogus="1")
        hup(d, "has errors", after)
        tail = d.logtext()[after:]
        # At info, this SIGHUP would have logged "info: SIGHUP: reading ...".
        S.check(" info: " not in tail and " debug: " not in tail,
                f"log_level warning: no info or debug lines:\n{tail}")
        rewrite(d, log_level="info")
        hup(d, "SIGHUP: configuration reloaded; changed: log_level", after)


def test_log_file_reopen():
    with smtp_d({"log_file": "daemon.log", "log_level": "info"}) as d:
        log = os.path.join(d.dir, "daemon.log")
        p = Proc(d.conf_path)
        try:
            def logged(text, path=log):
                try:
                    with open(path, errors="replace") as f:
                        return text in f.read()
                except FileNotFoundError:
                    return False
            S.check(p.wait_for(lambda: logged("sharemaild ready")), "ready in log_file")
            S.check("sharemaild ready" not in p.text(), "log lines do not go to stderr")
            os.rename(log, log + ".1")  # what logrotate does
            p.p.send_signal(signal.SIGHUP)
            S.check(p.wait_for(lambda: logged("SIGHUP: configuration reloaded")),
                    "after SIGHUP the lines go to a new log_file")
            S.check(not logged("configuration reloaded", log + ".1"),
                    "the rotated file gets no more lines")
            S.check(p.p.poll() is None, "still running")
        finally:
            S.eq(p.stop(), 0, "clean stop")
        S.check(logged("stopped"), "the last line in the new file")


def test_log_file_cannot_open():
    with smtp_d({"log_file": "no-such-dir/daemon.log"}) as d:
        p = Proc(d.conf_path)
        rc = p.outcome()
        S.check(rc not in (None, 0), f"status {rc}")
        S.check("cannot open log_file" in p.text() and "No such file or directory" in p.text(),
                p.text())
        p.stop()


# ---- syslog ----

class Syslog:
    """A throwaway syslog: an AF_UNIX datagram socket at a temporary path."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="sharemail-syslog-")
        self.path = os.path.join(self.dir, "log")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.got = []

    def wait_for(self, text, timeout=WAIT):
        """Reads datagrams until one holds text; returns it (None after the bound)."""
        deadline = time.monotonic() + timeout
        for g in self.got:
            if text in g:
                return g
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                g = self.sock.recv(65536).decode("utf-8", "replace")
            except socket.timeout:
                break
            self.got.append(g)
            if text in g:
                return g
        return None

    def close(self):
        self.sock.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        os.rmdir(self.dir)


SYSLOG_LINE = re.compile(r"^<(\d+)>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d sharemaild\[(\d+)\]: "
                         r"(\w+): (.*)$")


def test_syslog_only():
    sl = Syslog()
    try:
        with smtp_d({"log_syslog": "only", "log_level": "info"}) as d:
            p = Proc(d.conf_path, env={"SHAREMAIL_TEST_SYSLOG_PATH": sl.path})
            try:
                g = sl.wait_for("sharemaild ready")
                S.check(g is not None, f"ready reaches syslog; got {sl.got}")
                m = SYSLOG_LINE.match(g or "")
                S.check(m is not None, f"syslog line format: {g!r}")
                if m:
                    S.eq(int(m.group(1)), 2 * 8 + 6, "facility mail, severity info")
                    S.eq(int(m.group(2)), p.p.pid, "pid")
                    S.eq(m.group(3), "info", "level word")
                S.check("sharemaild ready" not in p.text(), "only: nothing on stderr")
                # A warning: severity 4.
                rewrite(d, log_syslog="only", log_level="info", hostname="mx2.test")
                p.p.send_signal(signal.SIGHUP)
                g = sl.wait_for("need a restart: hostname")
                m = SYSLOG_LINE.match(g or "")
                S.check(m is not None and int(m.group(1)) == 2 * 8 + 4, f"warning: {g!r}")
                # syslog goes away: lines are not lost, they go to stderr.
                sl.sock.close()
                os.unlink(sl.path)
                p.p.send_signal(signal.SIGHUP)
                S.check(p.wait_for(lambda: "configuration reloaded" in p.text()),
                        f"without syslog the lines go to stderr:\n{p.text()}")
            finally:
                S.eq(p.stop(), 0, "clean stop")
    finally:
        sl.close()


def test_syslog_yes():
    sl = Syslog()
    try:
        with smtp_d({"log_syslog": "yes", "log_level": "info"}) as d:
            p = Proc(d.conf_path, env={"SHAREMAIL_TEST_SYSLOG_PATH": sl.path})
            try:
                S.check(sl.wait_for("sharemaild ready") is not None, "ready in syslog")
                S.check(p.wait_for(lambda: "sharemaild ready" in p.text()), "and on stderr")
            finally:
                p.stop()
    finally:
        sl.close()


# ---- sd_notify ----

def notify_socket(abstract=False):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if abstract:
        name = f"sharemail-test-{os.getpid()}-{time.monotonic_ns()}"
        s.bind("\0" + name)
        return s, "@" + name, None
    tmp = tempfile.mkdtemp(prefix="sharemail-notify-")
    path = os.path.join(tmp, "notify")
    s.bind(path)
    return s, path, tmp


def recv(s):
    s.settimeout(WAIT)
    try:
        return s.recv(4096).decode()
    except socket.timeout:
        return None


def test_sd_notify():
    for abstract in (False, True):
        s, addr, tmp = notify_socket(abstract)
        port = free_tcp_port()
        with Daemon(conf={"minger_anonymous": "yes", "smtp_listen": f"127.0.0.1:{port}"}) as d:
            add_account(d, "arvel@example.com")
            p = Proc(d.conf_path, env={"NOTIFY_SOCKET": addr})
            try:
                S.eq(recv(s), "READY=1", f"READY=1 ({addr})")
                # READY=1 came after the ports were bound: both answer at once.
                with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as c:
                    S.check(c.recv(100).startswith(b"220 "), "SMTP answers")
                S.eq(udp_ask(d.minger_port, ARVEL), b"arvel@example.com 5", "Minger answers")
                S.check("sharemaild ready" in p.text(), "the log says ready too")
                p.p.send_signal(signal.SIGHUP)
                r = recv(s) or ""
                S.check(re.fullmatch(r"RELOADING=1\nMONOTONIC_USEC=\d+", r), f"reload: {r!r}")
                S.eq(recv(s), "READY=1", "READY=1 after the reload")
                p.p.send_signal(signal.SIGTERM)
                S.eq(recv(s), "STOPPING=1", "STOPPING=1")
                S.eq(p.p.wait(WAIT), 0, "clean stop")
            finally:
                p.stop()
                s.close()
                if tmp:
                    os.unlink(os.path.join(tmp, "notify"))
                    os.rmdir(tmp)


# ---- command line ----

def version():
    with open(os.path.join(TOP, "src", "util", "version.h")) as f:
        return re.search(r'#define SHAREMAIL_VERSION "([^"]+)"', f.read()).group(1)


def run(*args):
    return subprocess.run([SHAREMAILD, *args], capture_output=True, text=True, timeout=30,
                          env=clean_env())


def test_command_line():
    p = run("--help")
    S.eq(p.returncode, 0, "--help status")
    S.check(p.stdout.startswith("usage: sharemaild"), f"--help: {p.stdout!r}")
    S.check("SIGHUP" in p.stdout and "--version" in p.stdout, "--help names SIGHUP, --version")
    S.eq(p.stderr, "", "--help stderr")
    p = run("--version")
    S.eq((p.returncode, p.stdout, p.stderr), (0, f"sharemaild {version()}\n", ""), "--version")
    p = run("--bogus")
    S.eq(p.returncode, 64, "an unknown option")
    S.check("usage: sharemaild" in p.stderr, "usage on stderr")
    p = run("-c", "x.conf", "extra")
    S.eq(p.returncode, 64, "an operand")
    with Daemon(minger=False) as d:
        p = run("-c", d.conf_path, "-t")
        S.eq((p.returncode, p.stdout, p.stderr), (0, f"{d.conf_path}: ok\n", ""), "-t ok")
        cc = d.cli("check-config")
        S.eq(p.stdout, cc.stdout, "-t says what check-config says")
        with open(d.conf_path, "a") as f:
            f.write("no_such_key = 1\n")
        n = conf_line(d.conf_path, "no_such_key")
        p = run("-c", d.conf_path, "-t")
        S.eq(p.returncode, 78, "-t on a bad file")
        S.eq(p.stdout, "", "-t prints no ok")
        S.check(f"{d.conf_path}:{n}: unknown key 'no_such_key'" in p.stderr, p.stderr)


sys.exit(S.run([test_second_daemon_same_minger_port, test_minger_port_held_with_reuseport,
                test_smtp_port_held, test_address_not_here, test_second_daemon_same_state,
                test_sighup_reloadable_key, test_sighup_restart_keys, test_sighup_broken_config,
                test_sighup_log_level, test_log_file_reopen, test_log_file_cannot_open,
                test_syslog_only, test_syslog_yes, test_sd_notify, test_command_line]))
