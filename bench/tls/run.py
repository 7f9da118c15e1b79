#!/usr/bin/env python3
"""The TLS benchmark: the SMTP benchmark over STARTTLS on a submission port, sharemaild
against Postfix, in one invocation, both spools on one ext4 loop image.

Run by `make bench` (python3 bench/tls/run.py --build build), as root. It reuses
bench/smtp/run.py (the loop image, the server wrappers, the Maildir and queue
accounting) and drives both servers with bench/tls/tls_load (built by `make
bench-bin`): smtp-source cannot speak TLS.

- sharemaild: submission_listen on a loopback port, tls_cert_file / tls_key_file
  (one P-256 certificate, the same file Postfix gets), one local account whose
  Maildir receives every message. No AUTH (see --auth): the client does STARTTLS
  and sends.
- Postfix: the throwaway instance of bench/smtp with smtpd_tls_security_level =
  encrypt (STARTTLS required before MAIL) and the same certificate; no AUTH
  (Postfix's SASL needs Dovecot or Cyrus); messages discarded once queued.

Interleaved rounds: for 1 then 20 sessions each server in turn gets `tls_load -m
MESSAGES -s SESSIONS` (one message per connection, a full handshake each: the
client keeps no session cache); msgs/s = MESSAGES / wall seconds. Then
`tls_load -H`: connections that only do STARTTLS, the handshake and NOOP/QUIT:
handshakes per second. Every message must be accounted for (bench/smtp's checks).

Exit status: 0 when the benchmark ran (a MISS is a result), 1 when something broke.
"""
import argparse
import importlib.util
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(REPO, "tests", "integration"))
_spec = importlib.util.spec_from_file_location("smtp_bench",
                                               os.path.join(REPO, "bench", "smtp", "run.py"))
sb = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(sb)
from peerutil import selfsigned_cert  # noqa: E402

MESSAGES = 1000
HANDSHAKES = 1000
RUNS = 3
SESSIONS = (1, 20)
TARGET_VS_POSTFIX = 1.0      # issue 9: >= 1.0 x Postfix at 1 and 20 sessions
SERVERS = ("sharemaild", "postfix")
RUN_LIMIT = 600.0


class Sharemaild(sb.Sharemaild):
    """bench/smtp's sharemaild with a TLS submission listener; self.port is that one."""

    def __init__(self, build, work, mnt, cert, key, auth):
        super().__init__(build, work, mnt)
        self.sub_port = sb.free_tcp_port()
        self.extra_conf = (f"submission_listen = 127.0.0.1:{self.sub_port}\n"
                           f"tls_cert_file = {cert}\ntls_key_file = {key}\n")
        self.auth = auth

    def start(self):
        super().start()
        if self.auth:
            user, password = self.auth.split(":", 1)
            pw = os.path.join(self.work, "bench-password")
            with open(pw, "w") as f:
                f.write(password + "\n")
            sb.run_cmd([os.path.join(self.build, "sharemail"), "-c", self.conf, "account",
                        "passwd", user, "--password-file", pw], what="sharemail account passwd")
        self.smtp_port = self.port
        self.port = self.sub_port


class Postfix(sb.Postfix):
    """bench/smtp's Postfix with STARTTLS required (smtpd_tls_security_level = encrypt)."""

    def __init__(self, work, mnt, cert, key):
        super().__init__(work, mnt)
        self.extra.update({"smtpd_tls_security_level": "encrypt",
                           "smtpd_tls_cert_file": cert, "smtpd_tls_key_file": key,
                           "smtpd_tls_loglevel": "0"})


class TlsBench(sb.Bench):
    def __init__(self, args):
        super().__init__(args)
        self.load = os.path.join(self.build, "bench", "tls", "tls_load")
        self.hs = {}            # (server, sessions) -> [handshakes/s per round]
        self.tls_seen = {}      # server -> "TLSv1.3 TLS_AES_256_GCM_SHA384"

    def prepare_host(self):
        super().prepare_host()
        if not os.access(self.load, os.X_OK):
            raise sb.BenchError(f"{self.load} is missing: run make bench-bin")

    def start_servers(self):
        cert, key = selfsigned_cert("bench.test")
        makers = {"postfix": lambda: Postfix(self.work, self.mnt, cert, key),
                  "sharemaild": lambda: Sharemaild(self.build, self.work, self.mnt, cert, key,
                                                   self.args.auth)}
        for name in self.args.servers:
            s = makers[name]()
            self.servers[name] = s
            s.start()

    def sender(self, srv):
        """The envelope sender (and From:): with AUTH, the account itself, since the
        seed's rules want the return path and From: to match the credentials."""
        if self.args.auth and srv.name == "sharemaild":
            return self.args.auth.split(":", 1)[0]
        return sb.SENDER

    def tls_load(self, srv, sessions, count, handshakes):
        argv = [self.load, "-p", str(srv.port), "-m", str(count), "-s", str(sessions),
                "-l", str(sb.MSG_LEN), "-M", sb.CLIENT_NAME, "-f", self.sender(srv), "-t", sb.RCPT]
        if handshakes:
            argv.append("-H")
        if self.args.auth and srv.name == "sharemaild" and not handshakes:
            argv += ["-a", self.args.auth]
        if not handshakes:
            os.sync()
        p = subprocess.run(argv, capture_output=True, text=True, timeout=RUN_LIMIT)
        if p.returncode != 0:
            raise sb.BenchError(f"tls_load against {srv.name} at {sessions} sessions failed "
                                f"({p.returncode}): {p.stderr.strip()[-800:]}\n{srv.logtext()}")
        if not srv.alive():
            raise sb.BenchError(f"{srv.name} died during the run:\n{srv.logtext()}")
        f = dict(kv.split("=", 1) for kv in p.stdout.split())
        self.tls_seen[srv.name] = f"{f['protocol']} {f['cipher']}"
        return float(f["rate"])

    def run_all(self):
        names = list(self.args.servers)
        for r in range(self.args.runs):
            order = names[r % len(names):] + names[:r % len(names)]
            for sessions in SESSIONS:
                for name in order:
                    srv = self.servers[name]
                    rate = self.tls_load(srv, sessions, self.args.messages, False)
                    srv.settle(self.args.messages)
                    if name == "sharemaild":
                        self.total_sent += self.args.messages
                    self.rates.setdefault((name, sessions), []).append(rate)
                for name in order:
                    rate = self.tls_load(self.servers[name], sessions, self.args.handshakes,
                                         True)
                    self.hs.setdefault((name, sessions), []).append(rate)
            line = "  ".join(f"{n}@{s}={self.rates[(n, s)][-1]:.0f}/{self.hs[(n, s)][-1]:.0f}"
                             for s in SESSIONS for n in names)
            print(f"  round {r + 1}/{self.args.runs}: {line} msgs/s / handshakes/s", flush=True)

    def report(self):
        names = self.args.servers
        auth = (f"sharemaild with AUTH PLAIN ({self.args.auth.split(':')[0]}), Postfix without"
                if self.args.auth else "no AUTH on either")
        print(f"TLS benchmark: loopback, {os.cpu_count()} CPUs, both spools on one ext4 loop "
              f"image; {self.args.runs} interleaved rounds of bench/tls/tls_load (STARTTLS on a "
              f"submission port, a full handshake per connection, one {sb.MSG_LEN}-octet "
              f"message per connection) -m {self.args.messages} at "
              f"{' and '.join(map(str, SESSIONS))} sessions, then -H (handshake only) "
              f"-m {self.args.handshakes}; Postfix with smtpd_tls_security_level = encrypt; "
              f"{auth}; one P-256 certificate for both")
        for n in names:
            print(f"  {n:<11} negotiated {self.tls_seen.get(n, '?')}")
        for s in SESSIONS:
            for n in names:
                runs = " ".join(f"{x:.0f}" for x in self.rates[(n, s)])
                hs = " ".join(f"{x:.0f}" for x in self.hs[(n, s)])
                print(f"  {n:<11} {s:2d} session{'s' if s > 1 else ' '} median "
                      f"{statistics.median(self.rates[(n, s)]):7.0f} msgs/s   runs: {runs:<16} "
                      f"handshakes/s median {statistics.median(self.hs[(n, s)]):6.0f}   runs: {hs}")
        verdicts = []
        if "sharemaild" in names and "postfix" in names:
            for s in SESSIONS:
                r = self.paired("sharemaild", "postfix", s)
                h = statistics.median(a / b for a, b in zip(self.hs[("sharemaild", s)],
                                                            self.hs[("postfix", s)]))
                print(f"  sharemaild/postfix at {s:2d} session{'s' if s > 1 else ' '} "
                      f"{r:.2f} msgs/s, {h:.2f} handshakes/s (medians of round ratios)")
                verdicts.append((f"sharemaild >= {TARGET_VS_POSTFIX:.1f} x postfix over "
                                 f"STARTTLS at {s} session{'s' if s > 1 else ''}: {r:.2f}",
                                 r >= TARGET_VS_POSTFIX))
        if "sharemaild" in names:
            print(f"  every message acknowledged and stored: yes ({self.total_sent} sent to "
                  f"sharemaild)")
        for text, ok in verdicts:
            print(f"{sb.verdict(ok)} {text}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--runs", type=int, default=RUNS)
    ap.add_argument("--messages", type=int, default=MESSAGES)
    ap.add_argument("--handshakes", type=int, default=HANDSHAKES)
    ap.add_argument("--servers", default=",".join(SERVERS),
                    help="comma-separated subset of sharemaild,postfix (for development)")
    ap.add_argument("--auth", default=f"{sb.RCPT}:bench-tls-password-0123",
                    metavar="USER:PASSWORD",
                    help="AUTH PLAIN to sharemaild as this account (submission needs AUTH)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder (logs)")
    args = ap.parse_args()
    args.servers = [s for s in SERVERS if s in args.servers.split(",")]
    if not args.servers or args.runs < 1 or args.messages < 1 or args.handshakes < 1:
        ap.error("nothing to run")
    b = TlsBench(args)
    try:
        b.prepare_host()
        b.make_image()
        b.start_servers()
        b.run_all()
        b.report()
        return 0
    except (sb.BenchError, OSError, subprocess.SubprocessError) as e:
        print(f"tls bench: BROKEN: {e}", file=sys.stderr)
        return 1
    finally:
        b.cleanup()


if __name__ == "__main__":
    sys.exit(main())
