#!/usr/bin/env python3
"""Instructions per warm RCPT: all-local recipients against recipients on peers (warm
cache), counted by valgrind's callgrind on the real sharemaild under this benchmark's
client. Unlike the timed benchmark (run.py) the count does not depend on the machine's
load, so it is what to measure while changing the warm path.

    python3 bench/sharing/icount.py --build build [--peers 2] [--tx 40] [--keep DIR]

Starts the responders and the receiving daemon exactly as run.py does (the daemon under
`valgrind --tool=callgrind`), asks every peer address once (the cold pass fills the
cache), then for each kind (local, warm peer) zeroes the counters, sends TX
transactions of MAIL + 50 RCPTs + RSET pipelined on one session, and dumps. Prints the
instructions per RCPT of each kind (every thread of the daemon; the transaction's MAIL
and RSET are the same for both kinds) and the difference. --keep DIR keeps the dumps
for callgrind_annotate. Needs valgrind (not installed by make deps: a developer tool).
"""
import argparse
import glob
import os
import shutil
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import run as bench  # noqa: E402  (run.py of this folder: the same set-up)

sys.path.insert(0, os.path.dirname(HERE))
from icountlib import control as callgrind_control, threads_counts, total_ir  # noqa: E402
from icountlib import wrapper_build  # noqa: E402


def control(pid, flag, port):
    """callgrind_control FLAG on the daemon; a NOOP session wakes its threads so the
    request is seen (a thread blocked in epoll runs no code to notice it)."""
    callgrind_control(pid, flag, wake=lambda: bench.Session(port).close(), timeout=60,
                      error=bench.BenchError)


def cpu_ns(pid):
    """Nanoseconds on a processor of every thread of pid so far (schedstat)."""
    return threads_counts(pid)[0]


def load(port, addrs, tx):
    s = bench.Session(port)
    try:
        for k in range(tx):
            chunk = [addrs[(k * bench.BATCH + j) % len(addrs)] for j in range(bench.BATCH)]
            s.sock.sendall(f"MAIL FROM:<{bench.SENDER}>\r\n".encode()
                           + b"".join(map(bench.rcpt, chunk)) + b"RSET\r\n")
            got = s.replies(bench.BATCH + 2)
            bad = [r for r in got if not r.startswith(b"250")]
            if bad:
                raise bench.BenchError(f"refused: {bad[0]!r}")
    finally:
        s.close()


def native(a, b):
    """--native: the daemon without valgrind; processor time per RCPT, ABAB rounds."""
    peers = b.start_peers(a.peers)
    o, local = b.start_receiver(peers)
    remote = [f"r{i}@{bench.DOMAIN}" for i in range(1000)]
    pid = o.d.proc.pid
    load(o.smtp_port, remote, len(remote) // bench.BATCH)
    per = {"local": [], "warm": []}
    for r in range(a.rounds):
        for kind in (("local", "warm") if r % 2 == 0 else ("warm", "local")):
            t0 = cpu_ns(pid)
            load(o.smtp_port, local if kind == "local" else remote, a.tx)
            per[kind].append((cpu_ns(pid) - t0) / 1e3 / (a.tx * bench.BATCH))
    import statistics
    ratios = [w / l_ for l_, w in zip(per["local"], per["warm"])]
    for k, v in per.items():
        print(f"  {k:6s} daemon processor time per RCPT: " + " ".join(f"{x:.3f}" for x in v)
              + " us")
    print(f"{a.peers} peers warm/local daemon processor time: median {statistics.median(ratios):.3f}"
          f" over {a.rounds} rounds of {a.tx} x {bench.BATCH} RCPTs")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--peers", type=int, default=2)
    ap.add_argument("--tx", type=int, default=40, help="transactions of 50 RCPTs per kind")
    ap.add_argument("--keep", help="folder to keep the callgrind dumps in")
    ap.add_argument("--native", action="store_true",
                    help="no valgrind: the daemon's processor time per RCPT (/proc), ABAB")
    ap.add_argument("--rounds", type=int, default=6, help="--native: rounds")
    a = ap.parse_args()
    if not shutil.which("valgrind"):
        print("icount: valgrind is not installed", file=sys.stderr)
        return 1
    real = os.path.abspath(a.build)
    if a.native:
        b = bench.Bench(argparse.Namespace(build=real, cold=1000, runs=1, seconds=1,
                                           peers=[a.peers]))
        try:
            return native(a, b)
        finally:
            b.cleanup()
    outdir = os.path.abspath(a.keep) if a.keep else tempfile.mkdtemp(prefix="icount-")
    os.makedirs(outdir, exist_ok=True)
    for f in glob.glob(os.path.join(outdir, "callgrind.out.*")):
        os.unlink(f)
    wb = wrapper_build(real, outdir)
    args = argparse.Namespace(build=wb, cold=1000, runs=1, seconds=1, peers=[a.peers])
    b = bench.Bench(args)
    import smtest
    orig_start = smtest.Daemon.start
    smtest.Daemon.start = lambda self, wait=10.0, extra_env=None: orig_start(self, 300, extra_env)
    try:
        peers = b.start_peers(a.peers)
        o, local = b.start_receiver(peers)
        remote = [f"r{i}@{bench.DOMAIN}" for i in range(args.cold)]
        pid = o.d.proc.pid
        load(o.smtp_port, remote, len(remote) // bench.BATCH)  # cold: fills the cache
        load(o.smtp_port, local, 4)
        load(o.smtp_port, remote, 4)
        per = {}
        # The first dump also holds what start-up left uncounted: it is not used.
        for kind, addrs in (("first", local), ("local", local), ("warm", remote),
                            ("local2", local), ("warm2", remote)):
            before = set(glob.glob(os.path.join(outdir, "callgrind.out.*")))
            control(pid, "-z", o.smtp_port)
            load(o.smtp_port, addrs, a.tx)
            control(pid, "-d", o.smtp_port)
            new = sorted(set(glob.glob(os.path.join(outdir, "callgrind.out.*"))) - before)
            if not new:
                raise bench.BenchError("no dump written")
            os.rename(new[-1], os.path.join(outdir, f"{kind}.out"))
            per[kind] = total_ir(os.path.join(outdir, f"{kind}.out"), bench.BenchError) / (a.tx * bench.BATCH)
        del per["first"]
        for k, v in per.items():
            print(f"  {k:7s} {v:9.0f} instructions per RCPT (all threads, {a.tx} x "
                  f"{bench.BATCH} RCPTs)")
        loc = (per["local"] + per["local2"]) / 2
        warm = (per["warm"] + per["warm2"]) / 2
        print(f"{a.peers} peers warm - local: {warm - loc:.0f} instructions per RCPT "
              f"(warm/local {warm / loc:.3f}); dumps in {outdir}")
        return 0
    except bench.BenchError as e:
        print(f"icount: BROKEN: {e}", file=sys.stderr)
        return 1
    finally:
        b.cleanup()
        shutil.rmtree(wb, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
