#!/usr/bin/env python3
"""The Minger benchmark: sharemaild against a plain UDP echo server, on loopback.

Run by `make bench` (python3 bench/minger/run.py --build build). Standard library only.

1. Builds a state directory holding a 1,000,000-account directory in a temporary
   folder: the schema comes from the project itself (`sharemail account add`, or a
   first sharemaild start when the tool cannot add accounts), the other rows are
   bulk-inserted with the sqlite3 module into the same columns, in one transaction.
2. Starts two sharemaild over that state directory (1 and 2 Minger threads) and two
   echo servers (1 and 2 threads), timing each daemon's start-up until its Minger
   port answers.
3. Interleaves the runs of build/bench/minger/loadgen: echo then sharemaild at a
   window of 512 (RUNS times), then 1 thread then 2 threads at a window of 64, for
   sharemaild and, as the reference, for the echo server.
4. Prints the report: medians, ratios, targets, PASS/MISS. See README.md.

Exit status: 0 when the benchmark ran (a MISS is a result, not a failure); 1 when
something broke (a wrong reply, a crashed daemon, a loadgen failure).
"""
import argparse
import base64
import hashlib
import os
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time

ACCOUNTS = 1_000_000
DOMAIN = "bench.example"
SECRET = "bench-minger-secret-0123456789"
RUNS = 7            # interleaved runs of echo and sharemaild at window 512
SCALE_RUNS = 5      # interleaved runs of 1 and 2 threads at window 64
SECONDS = 3         # measured seconds per run (after a 1 s warm-up)
WINDOW = 512
SOCKETS = 8
SCALE_WINDOW = 64
SCALE_SOCKETS = 16  # more sources spread better over the SO_REUSEPORT sockets
ECHO_RCVBUF = 0     # 0: kernel default; matches what sharemaild's sockets ask for
STARTUP_LIMIT = 60.0

TARGET_RATIO = 0.75
AIM_RATIO = 0.9
TARGET_SCALE = 1.2
TARGET_RSS_MIB = 256
TARGET_STARTUP_S = 5.0


class BenchError(Exception):
    """Something broke: the benchmark cannot give a figure."""


def free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def query_bytes(mailbox):
    digest = hashlib.md5(f"{SECRET}:{mailbox}".encode()).digest()
    return f"{mailbox} d={base64.b64encode(digest).decode()}".encode()


class Proc:
    """A child in its own process group, stopped with SIGTERM then SIGKILL."""

    def __init__(self, argv, log_path):
        self.log_path = log_path
        self.log = open(log_path, "ab")
        self.p = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT,
                                  start_new_session=True)

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


def wait_answer(proc, port, limit):
    """Seconds until a Minger query to port gets any reply (the server is up)."""
    t0 = time.monotonic()
    q = query_bytes(f"user0000000@{DOMAIN}")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(0.01)
        while time.monotonic() - t0 < limit:
            if not proc.alive():
                raise BenchError(f"server exited {proc.p.returncode}:\n{proc.logtext()}")
            s.sendto(q, ("127.0.0.1", port))
            try:
                s.recvfrom(2048)
                return time.monotonic() - t0
            except (socket.timeout, ConnectionRefusedError):
                pass
    raise BenchError(f"server on port {port} did not answer in {limit} s:\n{proc.logtext()}")


def write_conf(path, port, threads, state):
    with open(path, "w") as f:
        f.write(f"hostname = bench.test\nstate_dir = {state}\n"
                f"local_domains = {DOMAIN}\nlog_level = warning\n"
                f"minger_listen = 127.0.0.1:{port}\nminger_secret_file = secrets.txt\n"
                f"minger_threads = {threads}\n"
                "minger_rate_per_source = 0\nminger_rate_global = 0\n")


def make_schema(build, work, conf, port):
    """Lets the project create directory.db (and its first account)."""
    db = os.path.join(work, "state", "directory.db")
    tool = os.path.join(build, "sharemail")
    if os.access(tool, os.X_OK):
        p = subprocess.run([tool, "-c", conf, "account", "add", f"user0000000@{DOMAIN}",
                            "--no-password"], capture_output=True, text=True, timeout=60)
        if p.returncode == 0 and os.path.exists(db):
            return db
    # The tool cannot add accounts: a first daemon start creates the schema.
    d = Proc([os.path.join(build, "sharemaild"), "-c", conf], os.path.join(work, "init.log"))
    try:
        wait_answer(d, port, STARTUP_LIMIT)
    finally:
        d.stop()
    if not os.path.exists(db):
        raise BenchError("neither sharemail nor sharemaild created directory.db")
    return db


def fill_directory(db):
    """Bulk-inserts the accounts user0000000..user(N-1) not yet there, in one transaction."""
    con = sqlite3.connect(db, isolation_level=None)
    try:
        cols = [r[1] for r in con.execute("PRAGMA table_info(accounts)")]
        if not {"address", "password", "state", "created"} >= set(cols) >= {"address", "state"}:
            raise BenchError(f"unexpected accounts columns {cols}: update fill_directory()")
        con.execute("PRAGMA synchronous = OFF")
        now = int(time.time())
        names = ["address", "password", "state"] + (["created"] if "created" in cols else [])
        sql = (f"INSERT OR IGNORE INTO accounts({', '.join(names)}) "
               f"VALUES({', '.join('?' * len(names))})")
        rows = ((f"user{i:07d}@{DOMAIN}", None, 0, now)[:len(names)] for i in range(ACCOUNTS))
        con.execute("BEGIN")
        con.executemany(sql, rows)
        con.execute("COMMIT")
        n = con.execute("SELECT COUNT(*) FROM accounts").fetchone()[0]
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        con.close()
    if n != ACCOUNTS:
        raise BenchError(f"directory holds {n} accounts, wanted {ACCOUNTS}")


def loadgen(build, port, window, sockets, echo):
    argv = [os.path.join(build, "bench", "minger", "loadgen"), "-s", f"127.0.0.1:{port}",
            "-n", str(sockets), "-w", str(window), "-d", str(SECONDS), "-k", SECRET,
            "--accounts", str(ACCOUNTS), "--domain", DOMAIN] + (["--echo"] if echo else [])
    p = subprocess.run(argv, capture_output=True, text=True, timeout=SECONDS + 60)
    if p.returncode != 0 or "replies=" not in p.stdout:
        raise BenchError(f"loadgen failed ({p.returncode}): {p.stderr.strip()}")
    r = dict(kv.split("=", 1) for kv in p.stdout.split())
    r = {k: float(v) for k, v in r.items()}
    if r["bad"]:
        raise BenchError(f"{int(r['bad'])} bad replies from port {port}: {p.stderr.strip()}")
    return r


def rss_kib(pid, key="VmRSS"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise BenchError(f"no {key} for pid {pid}")


def verdict(ok):
    return "PASS" if ok else "MISS"


class Bench:
    def __init__(self, build):
        self.build = os.path.abspath(build)
        self.work = tempfile.mkdtemp(prefix="sharemail-bench-")
        self.procs = []
        self.results = {}

    def need_binaries(self):
        for rel in ("sharemaild", "bench/minger/echo", "bench/minger/loadgen"):
            if not os.access(os.path.join(self.build, rel), os.X_OK):
                raise BenchError(f"{self.build}/{rel} is missing: run make bench-bin")

    def spawn(self, argv, name):
        p = Proc(argv, os.path.join(self.work, name + ".log"))
        self.procs.append(p)
        return p

    def setup(self):
        secrets = os.path.join(self.work, "secrets.txt")
        with open(os.open(secrets, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
            f.write(SECRET + "\n")
        self.ports = {k: free_udp_port() for k in ("d1", "d2", "e1", "e2")}
        # One state_dir per daemon: sharemaild locks its state_dir.
        for k, t, state in (("d1", 1, "state"), ("d2", 2, "state2")):
            write_conf(os.path.join(self.work, f"{k}.conf"), self.ports[k], t, state)
        t0 = time.monotonic()
        db = make_schema(self.build, self.work, os.path.join(self.work, "d1.conf"),
                         self.ports["d1"])
        fill_directory(db)
        self.fill_s = time.monotonic() - t0
        os.makedirs(os.path.join(self.work, "state2"), mode=0o700)
        shutil.copyfile(db, os.path.join(self.work, "state2", "directory.db"))
        self.daemons = {}
        self.startup = {}
        for k in ("d1", "d2"):
            d = self.spawn([os.path.join(self.build, "sharemaild"), "-c",
                            os.path.join(self.work, f"{k}.conf")], k)
            self.startup[k] = wait_answer(d, self.ports[k], STARTUP_LIMIT)
            self.daemons[k] = d
        self.echos = {}
        for k, t in (("e1", 1), ("e2", 2)):
            argv = [os.path.join(self.build, "bench", "minger", "echo"), "-l",
                    f"127.0.0.1:{self.ports[k]}", "-t", str(t)]
            if ECHO_RCVBUF:
                argv += ["-b", str(ECHO_RCVBUF)]
            e = self.spawn(argv, k)
            wait_answer(e, self.ports[k], 10)
            self.echos[k] = e

    def run_one(self, key, window, sockets):
        proc = self.daemons.get(key) or self.echos[key]
        r = loadgen(self.build, self.ports[key], window, sockets, key.startswith("e"))
        if not proc.alive():
            raise BenchError(f"{key} died during the run:\n{proc.logtext()}")
        self.results.setdefault((key, window), []).append(r)

    def run_all(self):
        for _ in range(RUNS):
            self.run_one("e1", WINDOW, SOCKETS)
            self.run_one("d1", WINDOW, SOCKETS)
        for _ in range(SCALE_RUNS):
            for key in ("d1", "d2", "e1", "e2"):
                self.run_one(key, SCALE_WINDOW, SCALE_SOCKETS)
        self.rss = rss_kib(self.daemons["d1"].p.pid) / 1024
        self.hwm = rss_kib(self.daemons["d1"].p.pid, "VmHWM") / 1024

    def med(self, key, window, field="rps"):
        return statistics.median(r[field] for r in self.results[(key, window)])

    def total(self, key, window, field):
        return int(sum(r[field] for r in self.results[(key, window)]))

    def paired(self, num, den, window):
        """Median of num/den over the runs made back to back (same load on the machine)."""
        pairs = zip(self.results[(num, window)], self.results[(den, window)])
        return statistics.median(a["rps"] / max(b["rps"], 1) for a, b in pairs)

    def report(self):
        echo, shm = self.med("e1", WINDOW), self.med("d1", WINDOW)
        ratio = self.paired("d1", "e1", WINDOW)
        lost = self.total("d1", WINDOW, "lost")
        scale = self.paired("d2", "d1", SCALE_WINDOW)
        escale = self.paired("e2", "e1", SCALE_WINDOW)
        up = self.startup["d1"]
        runs = lambda k: " ".join(f"{r['rps']:.0f}" for r in self.results[(k, WINDOW)])
        print(f"Minger benchmark: loopback, {ACCOUNTS:,} accounts, {os.cpu_count()} CPUs; "
              f"{RUNS} interleaved runs of {SECONDS} s at window {WINDOW} over {SOCKETS} "
              f"sockets, 1 server thread each (directory built in {self.fill_s:.1f} s)")
        print(f"  echo server        median {echo:9.0f} replies/s   runs: {runs('e1')}")
        print(f"  sharemaild         median {shm:9.0f} replies/s   runs: {runs('d1')}")
        print(f"  ratio sharemaild/echo  {ratio:.3f} (median of run pairs; ratio of medians "
              f"{shm / max(echo, 1):.3f})   target >= {TARGET_RATIO} (aim {AIM_RATIO})   "
              f"{verdict(ratio >= TARGET_RATIO)}")
        print(f"  sharemaild latency p50 {self.med('d1', WINDOW, 'p50_us'):.0f} us, "
              f"p99 {self.med('d1', WINDOW, 'p99_us'):.0f} us  "
              f"(echo: p50 {self.med('e1', WINDOW, 'p50_us'):.0f} us, "
              f"p99 {self.med('e1', WINDOW, 'p99_us'):.0f} us)")
        print(f"  lost replies (sharemaild, window {WINDOW}, all runs) {lost}   target 0   "
              f"{verdict(lost == 0)}   (echo: {self.total('e1', WINDOW, 'lost')})")
        print(f"  2 threads / 1 thread at window {SCALE_WINDOW} over {SCALE_SOCKETS} sockets "
              f"({SCALE_RUNS} run pairs)  {scale:.3f}   target >= {TARGET_SCALE}   "
              f"{verdict(scale >= TARGET_SCALE)}   (echo: {escale:.3f})")
        print(f"  sharemaild RSS after the load {self.rss:.1f} MiB (peak {self.hwm:.1f} MiB)"
              f"   target < {TARGET_RSS_MIB} MiB   {verdict(self.rss < TARGET_RSS_MIB)}")
        print(f"  sharemaild start-up {up:.2f} s (2-thread daemon {self.startup['d2']:.2f} s)"
              f"   target < {TARGET_STARTUP_S:.0f} s   {verdict(up < TARGET_STARTUP_S)}")

    def cleanup(self):
        for p in reversed(self.procs):
            p.stop()
        shutil.rmtree(self.work, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build")
    args = ap.parse_args()
    b = Bench(args.build)
    try:
        b.need_binaries()
        b.setup()
        b.run_all()
        b.report()
        return 0
    except (BenchError, OSError, sqlite3.Error, subprocess.SubprocessError) as e:
        print(f"minger bench: BROKEN: {e}", file=sys.stderr)
        return 1
    finally:
        b.cleanup()


if __name__ == "__main__":
    sys.exit(main())
