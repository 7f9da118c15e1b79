#!/usr/bin/env python3
"""What one message costs sharemaild at 1 session, received and delivered: processor
time, thread wake-ups (context switches) and, under valgrind, instructions. Counted on
the daemon itself, so the figures do not depend on what else the machine runs, unlike
the timed benchmark (run.py): what to measure while changing the path from the commit
to the Maildir.

    python3 bench/smtp/icount.py --build build [--messages N] [--callgrind] [--no-delivery]

As root (the same ext4 loop image as run.py). Starts sharemaild as run.py does (with
--callgrind under `valgrind --tool=callgrind`), sends a first batch (not counted), then
N messages with `smtp-source -s 1` (run.py's message), waits until every one is in the
Maildir (or, --no-delivery, queued), and prints per message: the daemon's processor
time and its voluntary and involuntary context switches, summed over its threads
(/proc/PID/task/*), or its instructions (every thread; callgrind_control -z / -d).
"""
import argparse
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import run as bench  # noqa: E402  (run.py of this folder: the same set-up)

sys.path.insert(0, os.path.dirname(HERE))
from icountlib import control, threads_counts, total_ir, wrapper_build  # noqa: E402


def send(srv, n):
    argv = [bench.SMTP_SOURCE, "-l", str(bench.MSG_LEN), "-m", str(n), "-s", "1",
            "-M", bench.CLIENT_NAME, "-f", bench.SENDER, "-t", bench.RCPT,
            f"127.0.0.1:{srv.port}"]
    t0 = time.monotonic()
    p = subprocess.run(argv, capture_output=True, text=True, timeout=bench.RUN_LIMIT * 4)
    if p.returncode != 0:
        raise bench.BenchError(f"smtp-source failed: {p.stderr.strip()[-400:]}")
    secs = time.monotonic() - t0
    srv.settle(n)
    return secs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--messages", type=int, default=1000)
    ap.add_argument("--callgrind", action="store_true")
    ap.add_argument("--no-delivery", action="store_true")
    ap.add_argument("--keep", help="--callgrind: folder for the dump")
    ap.add_argument("--perf-record", metavar="FILE",
                    help="also sample the daemon with `perf record -e cpu-clock -g` into FILE")
    a = ap.parse_args()
    if a.no_delivery:
        bench.RCPT = bench.REMOTE_RCPT
    real = os.path.abspath(a.build)
    outdir = wb = None
    build = real
    if a.callgrind:
        outdir = os.path.abspath(a.keep) if a.keep else tempfile.mkdtemp(prefix="icount-")
        os.makedirs(outdir, exist_ok=True)
        build = wb = wrapper_build(real, outdir)
        bench.STARTUP_LIMIT = 300.0
        bench.DRAIN_LIMIT = 600.0
    b = bench.Bench(argparse.Namespace(build=build, servers=["sharemaild"], runs=1,
                                       messages=a.messages, keep=False))
    try:
        if os.geteuid() != 0:
            raise bench.BenchError("must run as root (it mounts an ext4 loop image)")
        b.make_image()
        b.start_servers()
        srv = b.servers["sharemaild"]
        pid = srv.proc.p.pid
        send(srv, 100)  # start-up work and first-time allocations are not counted
        if a.callgrind:
            for f in glob.glob(os.path.join(outdir, "callgrind.out.*")):
                os.unlink(f)
            control(pid, "-z", error=bench.BenchError)
        p0, p1 = {}, {}
        rec = None
        if a.perf_record:
            rec = subprocess.Popen(["perf", "record", "-q", "-g", "-e", "cpu-clock", "-F", "10000",
                                    "-o", a.perf_record, "-p", str(pid)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.5)
        c0 = threads_counts(pid, p0)
        secs = send(srv, a.messages)
        c1 = threads_counts(pid, p1)
        if rec:
            rec.send_signal(2)
            rec.wait(60)
        n = a.messages
        what = "queued" if a.no_delivery else "received and delivered"
        print(f"sharemaild, 1 session, {n} messages {what} ({secs:.1f} s, "
              f"{n / secs:.0f} msgs/s here):")
        print(f"  processor time {(c1[0] - c0[0]) / 1e3 / n:8.1f} us per message")
        print(f"  context switches {(c1[1] - c0[1]) / n:6.2f} voluntary, "
              f"{(c1[2] - c0[2]) / n:.2f} involuntary per message")
        for k, tid in enumerate(sorted(p1)):  # threads in the order they were made
            d = [x - y for x, y in zip(p1[tid][:3], p0.get(tid, (0, 0, 0))[:3])]
            if d[1] + d[2] >= n / 10:
                print(f"    thread {k:2d} ({p1[tid][3]}) {d[0] / 1e3 / n:8.1f} us "
                      f"{d[1] / n:6.2f} voluntary {d[2] / n:5.2f} involuntary")
        if a.callgrind:
            control(pid, "-d", error=bench.BenchError)
            dumps = sorted(glob.glob(os.path.join(outdir, "callgrind.out.*")))
            if not dumps:
                raise bench.BenchError("no dump written")
            path = os.path.join(outdir, "messages.out")
            os.rename(dumps[-1], path)
            print(f"  instructions {total_ir(path, bench.BenchError) / n:10.0f} per message (every thread; "
                  f"dump {path}; the time and switches above are valgrind's)")
        return 0
    except (bench.BenchError, OSError, subprocess.SubprocessError) as e:
        print(f"icount: BROKEN: {e}", file=sys.stderr)
        return 1
    finally:
        b.cleanup()
        if wb:
            shutil.rmtree(wb, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
