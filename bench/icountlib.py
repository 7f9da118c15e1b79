"""icountlib: what the instruction- and processor-counting scripts of the benchmarks
(bench/smtp/icount.py, bench/sharing/icount.py) share: a build folder whose sharemaild
runs under callgrind, callgrind_control on the running daemon, the total of a dump, and
the processor time and context switches of every thread of a process (/proc).

Each function raises `error` (the caller's exception class, RuntimeError by default)
when something it needs did not happen.
"""
import os
import re
import subprocess
import tempfile
import time


def wrapper_build(real_build, outdir):
    """A temporary build folder (the caller removes it) whose sharemaild runs the real one
    under `valgrind --tool=callgrind`, every thread in one dump, dumps in outdir; its
    sharemail is the real one. Names are written uncompressed in every dump, so each
    dump can be read by callgrind_annotate on its own (compressed, a later dump names
    functions by numbers that only the first dump defines)."""
    d = tempfile.mkdtemp(prefix="icount-build-")
    os.symlink(os.path.join(real_build, "sharemail"), os.path.join(d, "sharemail"))
    w = os.path.join(d, "sharemaild")
    with open(w, "w") as f:
        f.write("#!/bin/sh\nexec valgrind -q --tool=callgrind --separate-threads=no "
                "--compress-strings=no --compress-pos=no "
                f"--callgrind-out-file={outdir}/callgrind.out.%p "
                f"{os.path.join(real_build, 'sharemaild')} \"$@\"\n")
    os.chmod(w, 0o755)
    return d


def control(pid, flag, wake=None, timeout=120, error=RuntimeError):
    """callgrind_control FLAG (-z zero, -d dump) on pid, within timeout seconds. A thread
    blocked in epoll runs no code to notice the request: wake(), when given, is called
    every 0.2 s until callgrind_control returns (a session that makes the daemon's
    threads run)."""
    c = subprocess.Popen(["callgrind_control", flag, str(pid)], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + timeout
    while c.poll() is None and time.monotonic() < deadline:
        if wake is None:
            try:
                c.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        else:
            wake()
            time.sleep(0.2)
    if c.poll() is None:
        c.kill()
        c.wait()
        raise error(f"callgrind_control {flag} did not return")
    if c.returncode != 0:
        raise error(f"callgrind_control {flag} failed")


def total_ir(path, error=RuntimeError):
    """The instructions a callgrind dump counted (its summary or totals line)."""
    with open(path) as f:
        for line in f:
            m = re.match(r"(?:summary|totals): (\d+)", line)
            if m:
                return int(m.group(1))
    raise error(f"no totals in {path}")


def threads_counts(pid, per=None):
    """(processor ns, voluntary, involuntary context switches) summed over pid's threads
    (/proc/PID/task/*/schedstat and status); per, a dict, gets the same by thread id as
    (ns, voluntary, involuntary, name). A thread that ends meanwhile is left out."""
    ns = vol = invol = 0
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{t}/schedstat") as f:
                tns = int(f.read().split()[0])
            tvol = tinv = 0
            name = "?"
            with open(f"/proc/{pid}/task/{t}/status") as f:
                for line in f:
                    if line.startswith("Name:"):
                        name = line.split(None, 1)[1].strip()
                    elif line.startswith("voluntary_ctxt_switches:"):
                        tvol = int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches:"):
                        tinv = int(line.split()[1])
        except (OSError, ValueError, IndexError):
            continue
        ns, vol, invol = ns + tns, vol + tvol, invol + tinv
        if per is not None:
            per[int(t)] = (tns, tvol, tinv, name)
    return ns, vol, invol
