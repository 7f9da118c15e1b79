#!/usr/bin/env python3
"""The SMTP benchmark: sharemaild against Postfix and smtp-sink, on one ext4 loop image.

Run by `make bench` (python3 bench/smtp/run.py --build build), as root (it mounts a
loop image). Standard library only; Postfix's smtp-source and smtp-sink do the load.

1. Installs Debian's postfix if missing (scripts/install-deps --bench), creates a
   2 GiB file, formats it ext4 (journaled, the default) and loop-mounts it: both
   spools (sharemaild's state_dir and Postfix's queue_directory) live there.
2. Starts sharemaild (smtp_listen on a free loopback port, one local account whose
   Maildir receives every message), a throwaway Postfix instance (its own
   config_directory, loopback port, no chroot, every message discarded by the
   discard(8) transport once queued) and smtp-sink (no disk: the ceiling).
3. Interleaves, RUNS rounds: for 1 then 20 sessions, each server in turn (sharemaild
   and Postfix back to back, the first of the two swapped every round; then the sink) gets `smtp-source -l 4096 -m MESSAGES -s SESSIONS`; msgs/s =
   MESSAGES / wall seconds. After each run every message must be accounted for:
   sharemaild's in its Maildir or still in its queue, Postfix's queue drained with
   nothing deferred or corrupt; then a latency run of LAT_MESSAGES messages with
   this script's own client times the final "." -> 250 of every message.
4. Holds IDLE_CONNS idle connections open to sharemaild (greeting read on each):
   RSS growth per connection, and the time a new client needs for a whole
   transaction while they are open.
5. Prints the report: medians, ratios, p99, PASS/MISS per target. See README.md.

Exit status: 0 when the benchmark ran (a MISS is a result, not a failure); 1 when
something broke (a refused or lost message, a crashed server, a missing tool).
"""
import argparse
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
import postfixpeer  # noqa: E402  (the throwaway Postfix instance, shared with the tests)

DOMAIN = "bench.example"
LOCAL_RCPT = f"user@{DOMAIN}"
REMOTE_RCPT = "user@remote.example"     # --no-delivery: relayed to a refusing port, stays queued
RCPT = LOCAL_RCPT
SENDER = "sender@client.test"
CLIENT_NAME = "client.test"
MSG_LEN = 4096          # payload octets (smtp-source -l), plus ~120 octets of headers
MESSAGES = 2000         # per throughput run
RUNS = 5                # interleaved rounds (the verdicts are medians of per-round ratios)
SESSIONS = (1, 20)
LAT_MESSAGES = 200      # per latency run (one per round, per server, per session count)
IDLE_CONNS = 2000
NEW_CLIENT_TRIES = 5
IMAGE_BYTES = 2 << 30
DRAIN_LIMIT = 120.0     # seconds for a queue to empty after a run
STARTUP_LIMIT = 30.0
RUN_LIMIT = 300.0       # seconds for one smtp-source run

TARGET_VS_POSTFIX = {1: 1.2, 20: 2.0}  # issue 7: >= 1.2 x Postfix at 1 session, >= 2 x at 20
TARGET_SCALE = 3.0
TARGET_KIB_PER_CONN = 32.0
TARGET_NEW_CLIENT_MS = 100.0

SMTP_SOURCE = "/usr/sbin/smtp-source"
SMTP_SINK = "/usr/sbin/smtp-sink"
POSTFIX = "/usr/sbin/postfix"
SERVERS = ("sharemaild", "postfix", "sink")


class BenchError(Exception):
    """Something broke: the benchmark cannot give a figure."""


def free_tcp_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_cmd(argv, timeout=120, what=None, **kw):
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    if p.returncode != 0:
        raise BenchError(f"{what or argv[0]} failed ({p.returncode}): "
                         f"{(p.stderr or p.stdout).strip()[-1500:]}")
    return p


def rss_kib(pid, key="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise BenchError(f"no {key} for pid {pid}")


def verdict(ok):
    return "PASS" if ok else "MISS"


def p99(samples):
    s = sorted(samples)
    return s[min(len(s) - 1, int(len(s) * 0.99))]


# ---------------------------------------------------------------- SMTP client

def message_bytes(n):
    """A 4 KiB message shaped like smtp-source's (80-octet lines), dot-safe."""
    head = (f"From: <{SENDER}>\r\nTo: <{RCPT}>\r\nSubject: latency {n}\r\n"
            f"Message-Id: <lat.{n}.{time.monotonic_ns()}@{CLIENT_NAME}>\r\n\r\n")
    line = "X" * 78 + "\r\n"
    body = line * (MSG_LEN // len(line)) + "X" * (MSG_LEN % len(line) or 1) + "\r\n"
    return (head + body).encode() + b".\r\n"


class Client:
    """A blocking SMTP client reading whole (multi-line) replies."""

    def __init__(self, port, timeout=30.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        # No Nagle: the final dot must not wait for the ACK of the data before it.
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def reply(self):
        """Returns (code, text) of the next reply."""
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                data = self.sock.recv(65536)
                if not data:
                    raise BenchError(f"connection closed; reply so far: {lines!r}")
                self.buf += data
                if len(self.buf) > 1 << 20:
                    raise BenchError("reply line too long")
            line, self.buf = self.buf.split(b"\r\n", 1)
            lines.append(line)
            if len(line) < 4 or line[3:4] != b"-":
                return line[:3].decode("ascii", "replace"), b"\n".join(lines)

    def expect(self, first, what):
        code, text = self.reply()
        if not code.startswith(first):
            raise BenchError(f"{what}: got {text!r}")
        return code

    def cmd(self, line, first, what=None):
        self.sock.sendall(line.encode() + b"\r\n")
        return self.expect(first, what or line)

    def transaction(self, n):
        """EHLO .. QUIT after the greeting; returns seconds from the final dot to 250."""
        self.cmd(f"EHLO {CLIENT_NAME}", "2")
        self.cmd(f"MAIL FROM:<{SENDER}>", "2")
        self.cmd(f"RCPT TO:<{RCPT}>", "2")
        self.cmd("DATA", "3")
        data = message_bytes(n)
        self.sock.sendall(data[:-3])
        t0 = time.perf_counter()
        self.sock.sendall(data[-3:])
        self.expect("2", "end of DATA")
        lat = time.perf_counter() - t0
        self.cmd("QUIT", "2")
        return lat

    def close(self):
        self.sock.close()


def one_message(port, n):
    """Connects, sends one message; returns (dot->250 seconds, whole seconds)."""
    t0 = time.perf_counter()
    c = Client(port)
    try:
        c.expect("220", "greeting")
        lat = c.transaction(n)
    finally:
        c.close()
    return lat, time.perf_counter() - t0


def latency_run(port, sessions, total):
    """`total` messages over `sessions` concurrent connections-in-turn; returns latencies."""
    out, errors = [], []
    lock = threading.Lock()
    counter = iter(range(total))

    def worker():
        try:
            while True:
                with lock:
                    n = next(counter, None)
                if n is None:
                    return
                lat, _ = one_message(port, n)
                with lock:
                    out.append(lat)
        except (OSError, BenchError) as e:
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(sessions)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise BenchError(f"latency client on port {port}: {errors[0]}")
    return out


def wait_smtp(port, alive, logtext, limit=STARTUP_LIMIT):
    t0 = time.monotonic()
    while time.monotonic() - t0 < limit:
        if not alive():
            raise BenchError(f"server for port {port} exited:\n{logtext()}")
        try:
            c = Client(port, timeout=2)
            try:
                c.expect("220", "greeting")
                c.cmd("QUIT", "2")
                return
            finally:
                c.close()
        except (OSError, BenchError):
            time.sleep(0.1)
    raise BenchError(f"nothing answered SMTP on port {port} in {limit:.0f} s:\n{logtext()}")


# ---------------------------------------------------------------- servers

class Proc:
    """A child in its own process group, stopped with SIGTERM then SIGKILL."""

    def __init__(self, argv, log_path, **kw):
        self.log_path = log_path
        self.log = open(log_path, "ab")
        self.p = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT,
                                  start_new_session=True, **kw)

    def alive(self):
        return self.p.poll() is None

    def logtext(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")[-2000:]

    def stop(self):
        if self.p.poll() is None:
            try:
                os.killpg(self.p.pid, signal.SIGTERM)
                self.p.wait(10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.p.wait()
        self.log.close()
        return self.p.returncode


class Sharemaild:
    name = "sharemaild"

    def __init__(self, build, work, mnt):
        self.build = build
        self.state = os.path.join(mnt, "sharemail")
        self.conf = os.path.join(work, "sharemail.conf")
        self.port = free_tcp_port()
        self.maildir = os.path.join(self.state, "mail", DOMAIN, "user", "Maildir")
        self.expected = 0       # messages acknowledged so far and not yet counted away
        self.proc = None
        self.work = work
        self.extra_conf = ""    # more sharemail.conf lines (bench/relay: relay_route)
        self.refuser = None     # --no-delivery: a bound, never listening socket
        self.account_added = False

    def start(self):
        os.makedirs(self.state, exist_ok=True)
        with open(self.conf, "w") as f:
            f.write("hostname = bench.test\n"
                    f"state_dir = {self.state}\n"
                    f"local_domains = {DOMAIN}\n"
                    "log_level = warning\n"
                    f"smtp_listen = 127.0.0.1:{self.port}\n"
                    f"smtp_max_connections = {IDLE_CONNS + 1000}\n"
                    f"smtp_max_connections_per_ip = {IDLE_CONNS + 1000}\n"
                    # The load comes from one address, thousands of connections a minute:
                    # the Dynamic Screen still looks every client up, but never screens it.
                    "screen_exempt = 127.0.0.0/8\n")
            if RCPT != LOCAL_RCPT:
                # Relayed to a loopback port bound but never listening: every connection
                # is refused, the destination is dead after the first one and backs off
                # as a whole, so every message stays queued (one state write at most).
                if self.refuser is None:
                    self.refuser = socket.socket()
                    self.refuser.bind(("127.0.0.1", 0))
                dead = self.refuser.getsockname()[1]
                f.write("smtp_trusted_networks = 127.0.0.0/8\n"
                        f"relay_route = {REMOTE_RCPT.split('@')[1]} [127.0.0.1]:{dead}\n")
            f.write(self.extra_conf)
        if not self.account_added:      # a restart (bench/relay) keeps the account
            run_cmd([os.path.join(self.build, "sharemail"), "-c", self.conf, "account", "add",
                     LOCAL_RCPT, "--no-password"], what="sharemail account add")
            self.account_added = True
        self.proc = Proc([os.path.join(self.build, "sharemaild"), "-c", self.conf],
                         os.path.join(self.work, "sharemaild.log"))
        wait_smtp(self.port, self.proc.alive, self.proc.logtext)

    def alive(self):
        return self.proc.alive()

    def logtext(self):
        return self.proc.logtext()

    def delivered(self):
        n = 0
        for sub in ("new", "cur"):
            try:
                n += len(os.listdir(os.path.join(self.maildir, sub)))
            except FileNotFoundError:
                pass
        return n

    def queued(self):
        p = run_cmd([os.path.join(self.build, "sharemail"), "-c", self.conf, "queue", "list"],
                    what="sharemail queue list")
        return sum(1 for line in p.stdout.splitlines()
                   if line.strip() and not line.startswith((" ", "\t", "#")))

    def settle(self, sent):
        """Every acknowledged message is delivered or queued; the Maildir is emptied."""
        self.expected += sent
        if RCPT != LOCAL_RCPT:
            q = self.queued()
            if q != self.expected:
                raise BenchError(f"sharemaild: {self.expected} acknowledged, {q} queued")
            return
        t0 = last_change = time.monotonic()
        last = -1
        while True:
            d = self.delivered()
            if d == self.expected:
                break
            if d > self.expected:
                raise BenchError(f"sharemaild delivered {d} messages, {self.expected} were sent")
            if not self.alive():
                raise BenchError(f"sharemaild died:\n{self.logtext()}")
            now = time.monotonic()
            if d != last:
                last, last_change = d, now
            elif now - last_change > 3:
                # Delivery stalled: what is not delivered must still be queued.
                q = self.queued()
                if d + q == self.expected:
                    break
                if now - t0 > DRAIN_LIMIT:
                    raise BenchError(f"sharemaild: {self.expected} acknowledged, {d} delivered "
                                     f"+ {q} queued after {DRAIN_LIMIT:.0f} s")
                last_change = now
            time.sleep(0.05)
        # Every delivered file holds a whole message; then the Maildir is emptied so
        # that every run starts alike (Postfix discards).
        checked = False
        for sub in ("new", "cur"):
            path = os.path.join(self.maildir, sub)
            for name in os.listdir(path) if os.path.isdir(path) else ():
                f = os.path.join(path, name)
                if os.stat(f).st_size < MSG_LEN:
                    raise BenchError(f"sharemaild delivered a short message: {f}")
                if not checked:
                    with open(f, "rb") as fh:
                        text = fh.read()
                    if b"X" * 70 not in text:      # smtp-source's 80-octet body lines
                        raise BenchError(f"sharemaild delivered {f} without the body sent")
                    checked = True
                os.unlink(f)
                self.expected -= 1

    def stop(self):
        if self.proc:
            self.proc.stop()


class Postfix(postfixpeer.Postfix):
    """The shared throwaway instance (tests/integration/postfixpeer.py), with every
    message discarded by discard(8) once queued, and no maillog."""
    name = "postfix"

    def __init__(self, work, mnt):
        super().__init__(work=os.path.join(work, "postfix"), hostname="bench.test",
                         queue_dir=os.path.join(mnt, "postfix", "queue"),
                         data_dir=os.path.join(mnt, "postfix", "data"), maillog=False,
                         main={"mydestination": DOMAIN, "local_recipient_maps": "",
                               "local_transport": "discard:", "default_transport": "discard:",
                               "relay_transport": "discard:"})

    def start(self):
        try:
            super().start(timeout=STARTUP_LIMIT)
        except (RuntimeError, TimeoutError, OSError, subprocess.SubprocessError) as e:
            raise BenchError(f"postfix did not start: {e}")

    def settle(self, sent):
        """smtp-source saw every 250; the queue must drain with nothing deferred."""
        t0 = time.monotonic()
        while time.monotonic() - t0 < DRAIN_LIMIT:
            counts = self.queue_counts()
            if counts["deferred"] or counts["corrupt"] or counts["hold"]:
                raise BenchError(f"postfix did not discard every message: {counts}")
            if not any(counts.values()):
                return
            time.sleep(0.05)
        raise BenchError(f"postfix queue did not drain in {DRAIN_LIMIT:.0f} s: {counts}")


class Sink:
    name = "sink"

    def __init__(self, work):
        self.port = free_tcp_port()
        self.work = work
        self.proc = None

    def start(self):
        # -u: smtp-sink refuses to run as root without dropping privileges.
        self.proc = Proc([SMTP_SINK, "-u", "postfix", f"127.0.0.1:{self.port}", "256"],
                         os.path.join(self.work, "sink.log"))
        wait_smtp(self.port, self.proc.alive, self.proc.logtext)

    def alive(self):
        return self.proc.alive()

    def logtext(self):
        return self.proc.logtext()

    def settle(self, sent):
        pass

    def stop(self):
        if self.proc:
            self.proc.stop()


# ---------------------------------------------------------------- the benchmark

class Bench:
    def __init__(self, args):
        self.args = args
        self.build = os.path.abspath(args.build)
        self.work = tempfile.mkdtemp(prefix="sharemail-smtp-bench-")
        os.chmod(self.work, 0o755)     # Postfix's daemons (user postfix) reach their queue
        self.mnt = os.path.join(self.work, "mnt")
        self.mounted = False
        self.servers = {}
        self.rates = {}         # (server, sessions) -> [msgs/s per round]
        self.lat = {}           # (server, sessions) -> [seconds]
        self.idle = None
        self.total_sent = 0
        self.final_queued = 0

    def prepare_host(self):
        if os.geteuid() != 0:
            raise BenchError("must run as root (it mounts an ext4 loop image)")
        if not os.path.exists(POSTFIX):
            # Debian's postfix asks how to configure the default instance: none.
            subprocess.run(["debconf-set-selections"], input="postfix postfix/main_mailer_type "
                           "select No configuration\n", text=True, capture_output=True)
        run_cmd([os.path.join(REPO, "scripts", "install-deps"), "--bench"], timeout=900,
                what="scripts/install-deps --bench")
        for tool in (SMTP_SOURCE, SMTP_SINK, POSTFIX, "/sbin/mkfs.ext4"):
            if not os.access(tool, os.X_OK):
                raise BenchError(f"{tool} is missing")
        if "sharemaild" in self.args.servers:
            for rel in ("sharemaild", "sharemail"):
                if not os.access(os.path.join(self.build, rel), os.X_OK):
                    raise BenchError(f"{self.build}/{rel} is missing: run make")
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = IDLE_CONNS * 2 + 1024
        if hard != resource.RLIM_INFINITY:
            hard = max(hard, want)      # root may raise the hard limit too
        # Inherited by sharemaild (and Postfix, smtp-sink): room for the idle connections.
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, want), hard))
        except (ValueError, OSError) as e:
            raise BenchError(f"cannot raise RLIMIT_NOFILE to {want}: {e}")

    def make_image(self):
        img = os.path.join(self.work, "spool.img")
        with open(img, "wb") as f:
            f.truncate(IMAGE_BYTES)
        run_cmd(["mkfs.ext4", "-q", "-F", img], what="mkfs.ext4")
        os.mkdir(self.mnt)
        run_cmd(["mount", "-o", "loop", img, self.mnt], what="mount -o loop")
        self.mounted = True

    def start_servers(self):
        makers = {"sink": lambda: Sink(self.work),
                  "postfix": lambda: Postfix(self.work, self.mnt),
                  "sharemaild": lambda: Sharemaild(self.build, self.work, self.mnt)}
        for name in self.args.servers:
            s = makers[name]()
            self.servers[name] = s
            s.start()

    def throughput_run(self, srv, sessions):
        argv = [SMTP_SOURCE, "-l", str(MSG_LEN), "-m", str(self.args.messages),
                "-s", str(sessions), "-M", CLIENT_NAME, "-f", SENDER, "-t", RCPT,
                f"127.0.0.1:{srv.port}"]
        os.sync()       # every run starts with the disk quiet
        t0 = time.monotonic()
        p = subprocess.run(argv, capture_output=True, text=True, timeout=RUN_LIMIT)
        secs = time.monotonic() - t0
        if p.returncode != 0:
            # Without -A, smtp-source stops at the first reply that is not positive.
            raise BenchError(f"smtp-source against {srv.name} at {sessions} sessions failed "
                             f"({p.returncode}): {p.stderr.strip()[-800:]}\n{srv.logtext()}")
        if not srv.alive():
            raise BenchError(f"{srv.name} died during the run:\n{srv.logtext()}")
        srv.settle(self.args.messages)
        if srv.name == "sharemaild":
            self.total_sent += self.args.messages
        self.rates.setdefault((srv.name, sessions), []).append(self.args.messages / secs)

    def latency_run(self, srv, sessions):
        os.sync()
        lat = latency_run(srv.port, sessions, LAT_MESSAGES)
        srv.settle(LAT_MESSAGES)
        if srv.name == "sharemaild":
            self.total_sent += LAT_MESSAGES
        self.lat.setdefault((srv.name, sessions), []).extend(lat)

    def run_all(self):
        names = list(self.args.servers)
        for r in range(self.args.runs):
            # ABAB: the first two (sharemaild, Postfix) run back to back in every round,
            # each first in every other round, so a pair sees the same load.
            order = names if r % 2 == 0 else names[1::-1] + names[2:]
            for sessions in SESSIONS:
                for name in order:
                    self.throughput_run(self.servers[name], sessions)
                for name in order:
                    self.latency_run(self.servers[name], sessions)
            line = "  ".join(f"{n}@{s}={self.rates[(n, s)][-1]:.0f}"
                             for s in SESSIONS for n in names)
            print(f"  round {r + 1}/{self.args.runs}: {line} msgs/s", flush=True)

    def idle_test(self):
        srv = self.servers["sharemaild"]
        pid = srv.proc.p.pid
        time.sleep(0.5)
        before = rss_kib(pid)
        conns = []
        try:
            for _ in range(IDLE_CONNS):
                c = Client(srv.port, timeout=10)
                conns.append(c)
                c.expect("220", f"greeting on idle connection {len(conns)}")
            time.sleep(0.5)
            after = rss_kib(pid)
            times = []
            for i in range(NEW_CLIENT_TRIES):
                _, whole = one_message(srv.port, 100000 + i)
                times.append(whole)
            if not srv.alive():
                raise BenchError(f"sharemaild died with {IDLE_CONNS} connections open")
            # The idle connections must still be open (not dropped to make room).
            for c in conns[:: max(1, IDLE_CONNS // 50)]:
                c.sock.setblocking(False)
                try:
                    if c.sock.recv(1) == b"":
                        raise BenchError("sharemaild closed idle connections")
                except BlockingIOError:
                    pass
        finally:
            for c in conns:
                c.close()
        srv.settle(NEW_CLIENT_TRIES)
        self.idle = {"before": before, "after": after, "times": times}
        self.final_queued = srv.queued()
        self.total_sent += NEW_CLIENT_TRIES

    # ------------------------------------------------------------ report

    def med(self, name, sessions):
        return statistics.median(self.rates[(name, sessions)])

    def paired(self, num, den, sessions):
        """Median over rounds of num/den (each round's runs were made back to back)."""
        return statistics.median(a / b for a, b in zip(self.rates[(num, sessions)],
                                                       self.rates[(den, sessions)]))

    def scale(self, name):
        return statistics.median(b / a for a, b in zip(self.rates[(name, 1)],
                                                       self.rates[(name, 20)]))

    def report(self):
        names = self.args.servers
        has = lambda n: n in names
        plural = lambda s: "s" if s > 1 else " "
        mode = ("only queues (--no-delivery)" if RCPT != LOCAL_RCPT
                else "delivers to a Maildir meanwhile")
        print(f"SMTP benchmark: loopback, {os.cpu_count()} CPUs, both spools on one ext4 loop "
              f"image; {self.args.runs} interleaved rounds of smtp-source -l {MSG_LEN} "
              f"-m {self.args.messages} at {' and '.join(map(str, SESSIONS))} sessions "
              f"(one message per connection); sharemaild {mode}")
        for s in SESSIONS:
            for n in names:
                runs = " ".join(f"{x:.0f}" for x in self.rates[(n, s)])
                p = p99(self.lat[(n, s)]) * 1000
                p50 = statistics.median(self.lat[(n, s)]) * 1000
                print(f"  {n:<11} {s:2d} session{plural(s)} median {self.med(n, s):7.0f} msgs/s"
                      f"   runs: {runs:<20}  250-latency p99 {p:7.2f} ms (p50 {p50:.2f} ms, "
                      f"{len(self.lat[(n, s)])} msgs)")
        for n in names:
            print(f"  {n:<11} 20/1 sessions  {self.scale(n):.2f}")
        verdicts = []
        if has("sharemaild") and has("postfix"):
            for s in SESSIONS:
                r = self.paired("sharemaild", "postfix", s)
                rm = self.med("sharemaild", s) / self.med("postfix", s)
                print(f"  sharemaild/postfix at {s:2d} session{plural(s)} {r:.2f} (median of round "
                      f"ratios; ratio of medians {rm:.2f})")
                want = TARGET_VS_POSTFIX[s]
                verdicts.append((f"sharemaild >= {want:.1f} x postfix at {s} "
                                 f"session{'s' if s > 1 else ''}: {r:.2f}", r >= want))
        if has("sink"):
            for n in names:
                if n != "sink":
                    print(f"  {n}/smtp-sink (no-disk ceiling): " + ", ".join(
                        f"{self.paired(n, 'sink', s):.2f} at {s}" for s in SESSIONS))
        if has("sharemaild"):
            sc = self.scale("sharemaild")
            verdicts.append((f"sharemaild 20 sessions >= {TARGET_SCALE:.0f} x 1 session "
                             f"(group commit): {sc:.2f}", sc >= TARGET_SCALE))
        if self.idle:
            i = self.idle
            per = (i["after"] - i["before"]) / IDLE_CONNS
            ms = [t * 1000 for t in i["times"]]
            med_ms = statistics.median(ms)
            print(f"  {IDLE_CONNS} idle connections: sharemaild RSS {i['before']} KiB -> "
                  f"{i['after']} KiB = {per:.1f} KiB per connection")
            print(f"  new client's whole transaction with them open: median {med_ms:.1f} ms, "
                  f"max {max(ms):.1f} ms ({NEW_CLIENT_TRIES} clients)")
            verdicts.append((f"RSS per idle connection <= {TARGET_KIB_PER_CONN:.0f} KiB: "
                             f"{per:.1f} KiB", per <= TARGET_KIB_PER_CONN))
            verdicts.append((f"new client served within {TARGET_NEW_CLIENT_MS:.0f} ms with "
                             f"{IDLE_CONNS} idle connections: {med_ms:.1f} ms",
                             med_ms <= TARGET_NEW_CLIENT_MS))
        if has("sharemaild"):
            rest = ("" if self.final_queued == self.total_sent
                    else ", the rest delivered to the Maildir")
            print(f"  every message acknowledged and stored: yes ({self.total_sent} sent to "
                  f"sharemaild, {self.final_queued} queued at the end{rest})")
        for text, ok in verdicts:
            print(f"{verdict(ok)} {text}")

    def cleanup(self):
        for s in reversed(list(self.servers.values())):
            try:
                s.stop()
            except (OSError, subprocess.SubprocessError) as e:
                print(f"smtp bench: stopping {s.name}: {e}", file=sys.stderr)
        if self.mounted:
            for _ in range(20):
                if subprocess.run(["umount", self.mnt], capture_output=True).returncode == 0:
                    self.mounted = False
                    break
                time.sleep(0.5)
            if self.mounted:
                subprocess.run(["umount", "-l", self.mnt], capture_output=True)
                print(f"smtp bench: {self.mnt} was busy: lazily unmounted", file=sys.stderr)
        if self.args.keep:
            print(f"smtp bench: kept {self.work}", file=sys.stderr)
        else:
            shutil.rmtree(self.work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--runs", type=int, default=RUNS)
    ap.add_argument("--messages", type=int, default=MESSAGES)
    ap.add_argument("--servers", default=",".join(SERVERS),
                    help="comma-separated subset of sharemaild,postfix,sink (for development)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (logs)")
    ap.add_argument("--no-delivery", action="store_true",
                    help=f"send to {REMOTE_RCPT}: sharemaild only queues (no Maildir delivery)")
    args = ap.parse_args()
    global RCPT
    if args.no_delivery:
        RCPT = REMOTE_RCPT
    args.servers = [s for s in SERVERS if s in args.servers.split(",")]
    if not args.servers or args.runs < 1 or args.messages < 1:
        ap.error("nothing to run")
    b = Bench(args)
    try:
        b.prepare_host()
        b.make_image()
        b.start_servers()
        b.run_all()
        if "sharemaild" in args.servers:
            b.idle_test()
        b.report()
        return 0
    except (BenchError, OSError, subprocess.SubprocessError) as e:
        print(f"smtp bench: BROKEN: {e}", file=sys.stderr)
        return 1
    finally:
        b.cleanup()


if __name__ == "__main__":
    sys.exit(main())
