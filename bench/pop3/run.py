#!/usr/bin/env python3
"""The POP3 benchmark: sharemaild's POP3 server against Dovecot's (Debian's
dovecot-pop3d) serving the same mailbox to the same client, in one invocation.

Run by `make bench` (python3 bench/pop3/run.py --build build). Standard library
only; the client is bench/pop3/pop3_load (built by `make bench-bin`): one
session that logs in with USER/PASS, reads UIDL and LIST, RETRs every message
with 32 commands pipelined (RFC 2449 PIPELINING) and QUITs, parsing every
response; it costs little next to either server.

1. Writes MESSAGES messages of MSG_LEN octets (LF line ends, as a Maildir holds
   them, with a few lines that open with '.') into one account's Maildir under
   sharemaild's state_dir, named as sharemaild names what it delivers
   ("<unique>,S=<size>,W=<CRLF size>"), and copies the same Maildir for Dovecot.
2. Starts sharemaild (pop3_listen on a free loopback port, auth_allow_plaintext,
   the Dynamic Screen off for the bench's own address) and a throwaway Dovecot
   (its own config dir in the work folder, protocols = pop3, a static passdb,
   loopback port; pop3_uidl_format = %f, the file's base name, as ours).
3. One untimed warm-up session each (Dovecot builds its index then), then RUNS
   interleaved rounds (the order rotates): msgs/s = messages / the session's wall
   time. Every run must return every message (count and octets checked).
4. Prints the medians, the median of the per-round ratios, and
   "PASS|MISS sharemaild >= 1.0 x dovecot ...: RATIO".

Exit status: 0 when the benchmark ran (a MISS is a result, not a failure); 1 when
something broke (a server that did not start, a session that failed).
"""
import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
import dovecotrun  # noqa: E402

DOMAIN = "bench.example"
USER = "reader"
ADDRESS = f"{USER}@{DOMAIN}"
PASSWORD = "bench-pop3-password-0123"
MESSAGES = 5000
MSG_LEN = 4096
RUNS = 15
TARGET = 1.0
DOVECOT = dovecotrun.DOVECOT


def free_tcp_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def verdict(ok):
    return "PASS" if ok else "MISS"


def message(i):
    """One message of MSG_LEN octets as stored (LF line ends)."""
    head = (f"From: sender{i}@client.test\nTo: {ADDRESS}\nSubject: bench message {i}\n"
            f"Message-ID: <bench-{i}@client.test>\n\n").encode()
    body = b""
    n = 0
    while len(head) + len(body) < MSG_LEN:
        line = (b"." if n % 16 == 0 else b"") + b"line %06d of the bench body, 4 KiB in all\n" % n
        body += line
        n += 1
    m = head + body
    return m[:MSG_LEN - 1] + b"\n"


def write_maildir(root):
    """MESSAGES messages in root/new, named as sharemaild names them; returns the octets
    on the wire (CRLF) of all of them."""
    for sub in ("new", "cur", "tmp"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    wire = 0
    t = int(time.time()) - MESSAGES
    for i in range(MESSAGES):
        m = message(i)
        w = len(m) + m.count(b"\n")
        wire += w
        name = f"{t + i}.M{i:06d}P{os.getpid()}Q{i}.bench,S={len(m)},W={w}"
        with open(os.path.join(root, "new", name), "wb") as f:
            f.write(m)
    return wire


def wait_port(port, alive, what, limit=20.0):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError(f"{what} exited")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                if s.recv(64).startswith(b"+OK"):
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{what} does not greet on {port}")


class Sharemaild:
    def __init__(self, build, work):
        self.dir = os.path.join(work, "sharemaild")
        os.makedirs(self.dir)
        self.port = free_tcp_port()
        self.bin = os.path.join(build, "sharemaild")
        self.cli = os.path.join(build, "sharemail")
        self.conf = os.path.join(self.dir, "sharemail.conf")
        with open(self.conf, "w") as f:
            f.write(f"hostname = pop.bench\nstate_dir = state\nlocal_domains = {DOMAIN}\n"
                    f"pop3_listen = 127.0.0.1:{self.port}\nauth_allow_plaintext = yes\n"
                    f"screen_exempt = 127.0.0.1/32\nlog_level = warning\n")
        pw = os.path.join(self.dir, "pw")
        with open(pw, "w") as f:
            f.write(PASSWORD + "\n")
        subprocess.run([self.cli, "-c", self.conf, "account", "add", ADDRESS,
                        "--password-file", pw], check=True, capture_output=True)
        self.maildir = os.path.join(self.dir, "state", "mail", DOMAIN, USER, "Maildir")
        self.proc = None

    def start(self):
        self.log = open(os.path.join(self.dir, "log"), "wb")
        self.proc = subprocess.Popen([self.bin, "-c", self.conf], stdout=self.log,
                                     stderr=subprocess.STDOUT)
        wait_port(self.port, lambda: self.proc.poll() is None, "sharemaild")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()


class Dovecot(dovecotrun.Dovecot):
    """The reference: a private Dovecot (tests/integration/dovecotrun.py) over a copy of
    the same Maildir; the UIDL is the file name (%f), as sharemaild's is its unique part."""

    def __init__(self, work, source):
        folder = os.path.join(work, "dovecot")
        self.mail = os.path.join(folder, "mail")
        self.maildir = os.path.join(self.mail, DOMAIN, USER, "Maildir")
        shutil.copytree(source, self.maildir)
        super().__init__(folder, "pop3", f"maildir:{self.mail}/%d/%n/Maildir",
                         f"{self.mail}/%d/%n", PASSWORD, settings="pop3_uidl_format = %f",
                         mail_trees=[self.mail])


def session(load, port, wire):
    """One pop3_load session; returns msgs/s (every message and octet checked)."""
    p = subprocess.run([load, "127.0.0.1", str(port), ADDRESS, PASSWORD], capture_output=True,
                       text=True, timeout=600)
    if p.returncode != 0:
        raise RuntimeError(f"pop3_load on {port}: {p.stderr.strip()}")
    f = dict(kv.split("=") for kv in p.stdout.split())
    if int(f["messages"]) != MESSAGES:
        raise RuntimeError(f"{f['messages']} messages listed, {MESSAGES} expected")
    if int(f["octets"]) < wire:
        raise RuntimeError(f"{f['octets']} octets read, at least {wire} expected")
    return MESSAGES / float(f["seconds"])


def main():
    global MESSAGES
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--runs", type=int, default=RUNS)
    ap.add_argument("--messages", type=int, default=MESSAGES)
    a = ap.parse_args()
    MESSAGES = a.messages
    build = os.path.abspath(os.path.join(REPO, a.build))
    load = os.path.join(build, "bench", "pop3", "pop3_load")
    for need in (load, os.path.join(build, "sharemaild"), DOVECOT):
        if not os.path.exists(need):
            print(f"pop3 bench: {need} is missing (make bench-bin; scripts/install-deps "
                  f"--bench installs dovecot-pop3d)", file=sys.stderr)
            return 1
    work = tempfile.mkdtemp(prefix="sharemail-bench-pop3-")
    servers = {}
    try:
        sm = Sharemaild(build, work)
        wire = write_maildir(sm.maildir)
        dv = Dovecot(work, sm.maildir)
        servers = {"sharemaild": sm, "dovecot": dv}
        for s in servers.values():
            s.start()
        for name, s in servers.items():  # warm-up: Dovecot builds its index here
            session(load, s.port, wire)
        rates = {n: [] for n in servers}
        order = list(servers)
        for r in range(a.runs):
            for name in order:
                rates[name].append(session(load, servers[name].port, wire))
            print(f"  round {r + 1}/{a.runs}: " + "  ".join(
                f"{n} {rates[n][-1]:.0f}" for n in servers) + " msgs/s", flush=True)
            order.reverse()
        print(f"POP3 benchmark: loopback, {os.cpu_count()} CPUs; one mailbox of {MESSAGES} "
              f"messages of {MSG_LEN} octets (the same Maildir copied for each server); "
              f"{a.runs} interleaved rounds of bench/pop3/pop3_load (USER/PASS, UIDL, LIST, "
              f"RETR all with 32 pipelined, QUIT) after one warm-up session each")
        for n in servers:
            runs = " ".join(f"{x:.0f}" for x in rates[n])
            print(f"  {n:<11} median {statistics.median(rates[n]):7.0f} msgs/s "
                  f"({statistics.median(rates[n]) * MSG_LEN / 1e6:.1f} MB/s)   runs: {runs}")
        ratio = statistics.median(x / y for x, y in zip(rates["sharemaild"], rates["dovecot"]))
        print(f"  sharemaild/dovecot {ratio:.2f} (median of round ratios)")
        print(f"{verdict(ratio >= TARGET)} sharemaild >= {TARGET:.1f} x dovecot POP3 "
              f"(RETR all of {MESSAGES} x {MSG_LEN // 1024} KiB): {ratio:.2f}")
        return 0
    except (RuntimeError, subprocess.SubprocessError, OSError) as e:
        print(f"pop3 bench: {e}", file=sys.stderr)
        for name, s in servers.items():
            for log in (os.path.join(s.dir, "log"), os.path.join(s.dir, "dovecot.log")):
                if os.path.exists(log):
                    with open(log, "rb") as f:
                        tail = f.read()[-1500:].decode("utf-8", "replace")
                    print(f"--- {name} {log}:\n{tail}", file=sys.stderr)
        return 1
    finally:
        for s in servers.values():
            s.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
