#!/usr/bin/env python3
"""The relay benchmark: how fast sharemaild and Postfix drain a queue to smtp-sink.

Run by `make bench` (python3 bench/relay/run.py --build build), as root. It reuses
bench/smtp/run.py's pieces (the ext4 loop image, sharemaild, the throwaway Postfix,
smtp-source) and prints ratios measured in the same run. See README.md.

Each round (the order of the two servers rotates every round):
  sharemaild: local delivery rate with an empty queue (LOCAL_MESSAGES to the Maildir over
    20 sessions, from smtp-source's start to the last message in the Maildir); then
    MESSAGES of 4 KiB for relay.example submitted while its relay_route points at a
    refused port (127.0.0.1:1): they are deferred, the destination dead; the local
    delivery rate again with them deferred; then the daemon is stopped, the route pointed
    at smtp-sink, the daemon started and `sharemail queue flush` run (the messages tried
    once wait out their back-off otherwise): drain time = from the daemon's start until
    smtp-sink has received the last message.
  postfix: MESSAGES submitted while smtpd puts each on hold (check_client_access
    static:HOLD); drain time = from `postsuper -H ALL` (then `postqueue -f`: released
    messages go to the deferred queue) until smtp-sink has received the last message
    (relayhost = [127.0.0.1]:SINK, smtp_tls_security_level = none).
Drain rate = MESSAGES / drain time.

Exit status: 0 when the benchmark ran (a MISS is a result); 1 when something broke.
"""
import argparse
import importlib.util
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
_spec = importlib.util.spec_from_file_location("smtpbench",
                                               os.path.join(REPO, "bench", "smtp", "run.py"))
sb = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sb)       # also puts tests/integration on sys.path
import postfixpeer  # noqa: E402

RELAY_DOMAIN = "relay.example"
RELAY_RCPT = f"user@{RELAY_DOMAIN}"
DEAD = "[127.0.0.1]:1"             # nothing listens there: connections are refused
MESSAGES = 20000                   # queued per server per round
RUNS = 2
LOCAL_MESSAGES = 2000              # per local-delivery run
SESSIONS = 20                      # smtp-source sessions (submission and local runs)
DRAIN_LIMIT = 300.0
TARGET_VS_POSTFIX = 1.0            # issue 7 (aim 2.0)
TARGET_DEFERRED = 0.8
POSTSUPER = "/usr/sbin/postsuper"
POSTQUEUE = "/usr/sbin/postqueue"


class CountingSink(sb.Proc):
    """smtp-sink -c: its running counter (mesg=N) is the number of messages received."""

    def __init__(self, work):
        self.port = sb.free_tcp_port()
        super().__init__([sb.SMTP_SINK, "-c", "-u", "postfix", f"127.0.0.1:{self.port}", "256"],
                         os.path.join(work, "sink.log"))
        sb.wait_smtp(self.port, self.alive, self.logtext)

    def received(self):
        with open(self.log_path, "rb") as f:
            f.seek(0, 2)
            f.seek(max(0, f.tell() - 200))
            tail = f.read().decode("ascii", "replace")
        i = tail.rfind("mesg=")
        if i < 0:
            return 0
        digits = ""
        for ch in tail[i + 5:]:
            if not ch.isdigit():
                break
            digits += ch
        return int(digits or 0)

    def wait_for(self, count, t0, alive, who):
        """Polls until the counter reaches count; returns (release->last, first->last) s."""
        first = None
        base = None
        while True:
            n = self.received()
            now = time.monotonic()
            if base is None:
                base = n
            if first is None and n > base:
                first = now
            if n >= count:
                return now - t0, now - (first or now)
            if now - t0 > DRAIN_LIMIT:
                raise sb.BenchError(f"{who}: smtp-sink received {n} of {count} "
                                    f"in {DRAIN_LIMIT:.0f} s")
            if not alive():
                raise sb.BenchError(f"{who} died while draining")
            time.sleep(0.01)


class RelayPostfix(postfixpeer.Postfix):
    name = "postfix"

    def __init__(self, work, mnt, sink_port):
        super().__init__(work=os.path.join(work, "postfix"), hostname="bench.test",
                         queue_dir=os.path.join(mnt, "postfix", "queue"),
                         data_dir=os.path.join(mnt, "postfix", "data"), maillog=False,
                         main={"mydestination": "", "local_recipient_maps": "",
                               "relayhost": f"[127.0.0.1]:{sink_port}",
                               "default_transport": "smtp",
                               "smtp_tls_security_level": "none",
                               "smtpd_client_restrictions": "check_client_access static:HOLD"})

    def release(self):
        """postsuper -H moves the held messages to the deferred queue, which qmgr scans
        only every queue_run_delay (300 s): postqueue -f asks for the scan now."""
        sb.run_cmd([POSTSUPER, "-c", self.confdir, "-H", "ALL"], timeout=300,
                   what="postsuper -H ALL")
        sb.run_cmd([POSTQUEUE, "-c", self.confdir, "-f"], what="postqueue -f")


def smtp_source(port, n, rcpt, who):
    argv = [sb.SMTP_SOURCE, "-l", str(sb.MSG_LEN), "-m", str(n), "-s", str(SESSIONS),
            "-M", sb.CLIENT_NAME, "-f", sb.SENDER, "-t", rcpt, f"127.0.0.1:{port}"]
    p = subprocess.run(argv, capture_output=True, text=True, timeout=sb.RUN_LIMIT)
    if p.returncode != 0:
        raise sb.BenchError(f"smtp-source to {who} failed ({p.returncode}): "
                            f"{p.stderr.strip()[-800:]}")


class RelayBench:
    def __init__(self, args):
        self.args = args
        self.build = os.path.abspath(args.build)
        sb_args = argparse.Namespace(build=args.build, servers=["sharemaild", "postfix"],
                                     keep=args.keep)
        self.base = sb.Bench(sb_args)      # host checks, the loop image, cleanup
        self.work = self.base.work
        self.drain = {"sharemaild": [], "postfix": []}      # release -> last, seconds
        self.span = {"sharemaild": [], "postfix": []}       # first -> last received
        self.local = {"empty": [], "deferred": []}          # msgs/s
        self.deferred_seen = []
        self.sink_total = 0

    def route(self, hostport):
        return (f"smtp_trusted_networks = 127.0.0.0/8\n"
                f"relay_tls = off\n"
                f"relay_route = {RELAY_DOMAIN} {hostport}\n")

    def start(self):
        self.base.prepare_host()
        self.base.make_image()
        self.sink = CountingSink(self.work)
        self.shm = sb.Sharemaild(self.build, self.work, self.base.mnt)
        self.shm.extra_conf = self.route(DEAD)
        self.base.servers["sharemaild"] = self.shm
        self.shm.start()
        self.pf = RelayPostfix(self.work, self.base.mnt, self.sink.port)
        self.base.servers["postfix"] = self.pf
        self.pf.start(timeout=sb.STARTUP_LIMIT)

    def local_rate(self):
        os.sync()
        t0 = time.monotonic()
        smtp_source(self.shm.port, LOCAL_MESSAGES, sb.LOCAL_RCPT, "sharemaild")
        while self.shm.delivered() < LOCAL_MESSAGES:
            if time.monotonic() - t0 > sb.DRAIN_LIMIT:
                raise sb.BenchError(f"sharemaild: {self.shm.delivered()} of {LOCAL_MESSAGES} "
                                    "delivered locally")
            time.sleep(0.01)
        rate = LOCAL_MESSAGES / (time.monotonic() - t0)
        self.shm.settle(LOCAL_MESSAGES)        # whole messages, then the Maildir emptied
        return rate

    def round_sharemaild(self):
        n = self.args.messages
        self.local["empty"].append(self.local_rate())
        os.sync()
        smtp_source(self.shm.port, n, RELAY_RCPT, "sharemaild")
        q = self.shm.queued()
        if q != n:
            raise sb.BenchError(f"sharemaild: {n} relay messages acknowledged, {q} queued")
        self.deferred_seen.append(q)
        self.local["deferred"].append(self.local_rate())
        if self.shm.queued() != n:
            raise sb.BenchError("sharemaild: the deferred messages left the queue")
        # The route to the sink; the queue is read at start-up.
        self.shm.stop()
        self.shm.extra_conf = self.route(f"[127.0.0.1]:{self.sink.port}")
        os.sync()
        want = self.sink.received() + n
        t0 = time.monotonic()
        self.shm.start()
        # The messages tried once already wait out their back-off: a flush (taken within
        # a second) makes every one due and ends the destination's dead period.
        sb.run_cmd([os.path.join(self.build, "sharemail"), "-c", self.shm.conf, "queue",
                    "flush"], what="sharemail queue flush")
        d, span = self.sink.wait_for(want, t0, self.shm.alive, "sharemaild")
        self.finish("sharemaild", d, span, want)
        t1 = time.monotonic()
        while self.shm.queued():
            if time.monotonic() - t1 > 30:
                raise sb.BenchError(f"sharemaild: {self.shm.queued()} still queued after "
                                    "the sink received every message")
            time.sleep(0.2)
        # Back to the dead route for the next round.
        self.shm.stop()
        self.shm.extra_conf = self.route(DEAD)
        self.shm.start()

    def round_postfix(self):
        n = self.args.messages
        os.sync()
        smtp_source(self.pf.port, n, RELAY_RCPT, "postfix")
        counts = self.pf.queue_counts()
        if counts["hold"] != n or counts["deferred"] or counts["corrupt"]:
            raise sb.BenchError(f"postfix: {n} acknowledged, queue {counts}")
        os.sync()
        want = self.sink.received() + n
        t0 = time.monotonic()
        self.pf.release()
        d, span = self.sink.wait_for(want, t0, self.pf.alive, "postfix")
        self.finish("postfix", d, span, want)
        t1 = time.monotonic()
        while any(self.pf.queue_counts().values()):
            if time.monotonic() - t1 > 30:
                raise sb.BenchError(f"postfix: queue {self.pf.queue_counts()} after the sink "
                                    "received every message")
            time.sleep(0.2)

    def finish(self, name, d, span, want):
        time.sleep(0.3)
        got = self.sink.received()
        if got != want:
            raise sb.BenchError(f"{name}: smtp-sink received {got}, expected {want}")
        self.sink_total = got
        self.drain[name].append(d)
        self.span[name].append(span)

    def run(self):
        order = ["sharemaild", "postfix"]
        for r in range(self.args.runs):
            for name in order[r % 2:] + order[:r % 2]:
                getattr(self, "round_" + name)()
            n = self.args.messages
            print(f"  round {r + 1}/{self.args.runs}: drain sharemaild "
                  f"{n / self.drain['sharemaild'][-1]:.0f} postfix "
                  f"{n / self.drain['postfix'][-1]:.0f} msgs/s; local delivery empty queue "
                  f"{self.local['empty'][-1]:.0f}, {n} deferred {self.local['deferred'][-1]:.0f}"
                  " msgs/s", flush=True)

    def report(self):
        n = self.args.messages
        rate = {k: [n / d for d in v] for k, v in self.drain.items()}
        span = {k: [n / d for d in v] for k, v in self.span.items()}
        print(f"Relay benchmark: loopback, {os.cpu_count()} CPUs, both spools on one ext4 loop "
              f"image; {self.args.runs} interleaved rounds of {n} messages of {sb.MSG_LEN} "
              f"octets queued, then relayed to smtp-sink (drain rate: from the release -- "
              f"sharemaild's start, postfix's postsuper -H ALL + postqueue -f -- to the last "
              f"message the sink received)")
        for k in ("sharemaild", "postfix"):
            print(f"  {k:<11} drain median {statistics.median(rate[k]):7.0f} msgs/s   runs: "
                  + " ".join(f"{x:.0f}" for x in rate[k])
                  + f"   (first->last received: "
                  + " ".join(f"{x:.0f}" for x in span[k]) + " msgs/s)")
        r = statistics.median(a / b for a, b in zip(rate["sharemaild"], rate["postfix"]))
        print(f"  sharemaild/postfix drain {r:.2f} (median of round ratios)")
        le, ld = self.local["empty"], self.local["deferred"]
        print(f"  sharemaild local delivery ({LOCAL_MESSAGES} msgs, {SESSIONS} sessions, to the "
              f"last in the Maildir): empty queue median {statistics.median(le):.0f} msgs/s "
              f"(runs: {' '.join(f'{x:.0f}' for x in le)}), {n} deferred median "
              f"{statistics.median(ld):.0f} msgs/s (runs: {' '.join(f'{x:.0f}' for x in ld)})")
        rd = statistics.median(b / a for a, b in zip(le, ld))
        print(f"  every message accounted for: smtp-sink received {self.sink_total} "
              f"(= 2 x {self.args.runs} x {n}), both queues empty after each drain, "
              f"{LOCAL_MESSAGES * 2 * self.args.runs} whole messages in the Maildir")
        print(f"{sb.verdict(r >= TARGET_VS_POSTFIX)} sharemaild >= {TARGET_VS_POSTFIX:.1f} x "
              f"postfix relaying (drain rate): {r:.2f}")
        print(f"{sb.verdict(rd >= TARGET_DEFERRED)} local delivery with {n} deferred >= "
              f"{TARGET_DEFERRED} x empty queue: {rd:.2f}")

    def cleanup(self):
        try:
            if getattr(self, "sink", None):
                self.sink.stop()
        finally:
            self.base.cleanup()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--runs", type=int, default=RUNS)
    ap.add_argument("--messages", type=int, default=MESSAGES)
    ap.add_argument("--keep", action="store_true", help="keep the work folder (logs)")
    args = ap.parse_args()
    if args.runs < 1 or args.messages < 1:
        ap.error("nothing to run")
    b = RelayBench(args)
    try:
        b.start()
        b.run()
        b.report()
        return 0
    except (sb.BenchError, OSError, subprocess.SubprocessError, RuntimeError,
            TimeoutError) as e:
        print(f"relay bench: BROKEN: {e}", file=sys.stderr)
        return 1
    finally:
        b.cleanup()


if __name__ == "__main__":
    sys.exit(main())
