#!/usr/bin/env python3
"""`sharemail minger query` and `sharemail cache` against an independent Minger
responder written here (socket module, draft-hathcock-minger-06 replies plus the
sharemail reply mac), so the client is proven not to depend on sharemaild's quirks.
Then, when build/sharemaild is there, the same client against the real daemon.
"""
import base64
import hashlib
import hmac
import os
import socket
import subprocess
import sys
import tempfile
import shutil
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import smtest  # noqa: E402
from smtest import Suite  # noqa: E402

S = Suite("minger_client")
SECRET = "0123456789abcdef"


def digest(secret, mailbox):
    return base64.b64encode(hashlib.md5(f"{secret}:{mailbox}".encode()).digest()).decode()


def reply_mac(secret, mailbox, status, nonce):
    text = f"R {mailbox} {status} {nonce}".encode()
    return hmac.new(secret.encode(), text, hashlib.sha256).hexdigest()


def query_mac(secret, mailbox, ts, nonce):
    text = f"{mailbox} {ts} {nonce}".encode()
    return hmac.new(secret.encode(), text, hashlib.sha256).hexdigest()


class Responder:
    """A tiny Minger server on 127.0.0.1:<random>, answering from `statuses`.

    mode: "normal", "silent", "second_copy" (answers a mailbox's 2nd datagram only),
    "wrong_source" (replies from another socket), "wrong_mailbox", "late" (replies
    after `delay` seconds), "malformed" (sends broken replies), "window" (holds the
    queries unanswered until `window` of them wait, or `expect` queries came in all,
    then answers the oldest: a client that keeps fewer in flight never gets answers,
    one that keeps more shows as max_held > window).
    mac: "none", "good" or "bad": what reply mac to add to extension queries.
    """

    def __init__(self, statuses=None, mode="normal", secret=None, mac="good", delay=0.0,
                 window=0, expect=0):
        self.statuses = statuses or {}
        self.mode = mode
        self.secret = secret
        self.mac = mac
        self.delay = delay
        self.window = window
        self.expect = expect
        self.held = []              # (reply, peer) not answered yet ("window")
        self.max_held = 0
        self.late_sent = 0          # late replies sent so far ("late")
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.other.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.received = []          # (monotonic time, datagram)
        self.copies = {}
        self.stopping = False
        self.timers = []
        self.thread = threading.Thread(target=self.loop, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stopping = True
        self.thread.join()
        for t in self.timers:
            t.cancel()
        self.sock.close()
        self.other.close()

    @property
    def server(self):
        return f"127.0.0.1:{self.port}"

    def loop(self):
        while not self.stopping:
            try:
                data, peer = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            self.received.append((time.monotonic(), data))
            self.handle(data, peer)

    def send_late(self, reply, peer):
        self.late_sent += 1
        try:
            self.sock.sendto(reply, peer)
        except OSError:
            pass

    def answer(self, data):
        """(mailbox, reply bytes) for a query, -06 section 3 plus the extension."""
        text = data.decode("ascii", "replace")
        parts = text.split(" ")
        mailbox, tags = parts[0], dict(p.split("=", 1) for p in parts[1:] if "=" in p)
        status = self.statuses.get(mailbox, 3)
        if self.secret is not None:
            if tags.get("d") != digest(self.secret, mailbox):
                status = 2
            elif "mac" in tags and tags["mac"] != query_mac(self.secret, mailbox,
                                                             tags.get("ts"), tags.get("nonce")):
                status = 2
        reply = f"{mailbox} {status}"
        if self.secret is not None and "nonce" in tags and status != 2:
            if self.mac == "good":
                reply += " mac=" + reply_mac(self.secret, mailbox, status, tags["nonce"])
            elif self.mac == "bad":
                reply += " mac=" + reply_mac("not-the-secret-000", mailbox, status, tags["nonce"])
        return mailbox, reply.encode()

    def handle(self, data, peer):
        mailbox, reply = self.answer(data)
        self.copies[mailbox] = self.copies.get(mailbox, 0) + 1
        if self.mode == "silent":
            return
        if self.mode == "second_copy" and self.copies[mailbox] < 2:
            return
        if self.mode == "wrong_source":
            self.other.sendto(reply, peer)
            return
        if self.mode == "wrong_mailbox":
            self.sock.sendto(b"x" + reply, peer)
            self.sock.sendto(reply.upper(), peer)   # not byte-exact
            return
        if self.mode == "malformed":
            for bad in (b"x 9", reply + b" extra", reply + b"\r\n", mailbox.encode() + b" 6",
                        mailbox.encode() + b"  5", mailbox.encode() + b" 5 mac=" + b"0" * 63,
                        b"", b"\x00" * 40):
                self.sock.sendto(bad, peer)
            return
        if self.mode == "late":
            t = threading.Timer(self.delay, self.send_late, (reply, peer))
            self.timers.append(t)
            t.start()
            return
        if self.mode == "window":
            self.held.append((reply, peer))
            # Take in whatever else is already queued before answering, so a client
            # that sends beyond its window shows as more held queries.
            while True:
                try:
                    more, frm = self.sock.recvfrom(4096, socket.MSG_DONTWAIT)
                except (BlockingIOError, InterruptedError, socket.timeout):
                    break
                self.received.append((time.monotonic(), more))
                self.held.append((self.answer(more)[1], frm))
            self.max_held = max(self.max_held, len(self.held))
            while self.held and (len(self.held) >= self.window
                                 or len(self.received) >= self.expect):
                self.sock.sendto(*self.held.pop(0))
            return
        self.sock.sendto(reply, peer)


def sharemail(*args, conf=None, input=None, env_extra=None):
    argv = [smtest.SHAREMAIL] + (["-c", conf] if conf else []) + list(args)
    env = dict(os.environ)
    env.pop("SHAREMAIL_CONF", None)
    env.update(env_extra or {})
    return subprocess.run(argv, input=input, capture_output=True, text=True, timeout=120, env=env)


def query(server, *addrs, extra=(), conf=None, input=None):
    return sharemail("minger", "query", *addrs, "--server", server, *extra, conf=conf,
                     input=input)


class Tmp:
    """A temporary folder with a secret file and an optional config."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="sharemail-mc-")

    def file(self, name, text):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def conf(self, **keys):
        os.makedirs(os.path.join(self.dir, "state"), exist_ok=True)
        base = {"hostname": "mx.test", "state_dir": "state", "local_domains": "example.com"}
        base.update(keys)
        return self.file("sharemail.conf", "".join(f"{k} = {v}\n" for k, v in base.items()))

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        shutil.rmtree(self.dir, ignore_errors=True)


FAST = ("--timeout", "300", "--retries", "0")


def test_statuses_3_and_5():
    with Responder({"arvel@example.com": 5}) as r:
        p = query(r.server, "arvel@example.com", "nobody@example.com")
        S.eq(p.returncode, 0, "exit")
        S.eq(p.stdout, "arvel@example.com 5 active\nnobody@example.com 3 unknown\n", "lines")
        # Anonymous queries are padded so the reply is never larger than the query.
        for _, d in r.received:
            S.check(d.endswith(b" pad=00"), f"padded: {d!r}")
            S.check(len(d) >= len(r.answer(d)[1]), "reply not larger than the query")


def test_single_query_status_4():
    with Responder({"arvel@example.com": 4}) as r:
        p = query(r.server, "arvel@example.com")
        S.eq((p.returncode, p.stdout), (0, "arvel@example.com 4 inactive\n"), "single")


def test_timeout_exit_75_and_retransmissions():
    with Responder(mode="silent") as r:
        p = query(r.server, "arvel@example.com", extra=("--timeout", "300", "--retries", "2"))
        S.eq(p.returncode, 75, "exit")
        S.eq(p.stdout, "arvel@example.com - timeout\n", "line")
        S.eq(len(r.received), 3, "first send + 2 retransmissions")
        S.check(len({d for _, d in r.received}) == 1, "retransmissions are identical")


def test_reply_within_timeout_not_retransmitted():
    # --timeout is how long the client waits before sending again: a reply that takes
    # 0.5 s is awaited under --timeout 5000 (one datagram, answered), while the same
    # delay is too long for --timeout 300 with no retries (test_late_reply_ignored).
    with Responder({"arvel@example.com": 5}, mode="late", delay=0.5) as r:
        p = query(r.server, "arvel@example.com", extra=("--timeout", "5000", "--retries", "2"))
        S.eq((p.returncode, p.stdout), (0, "arvel@example.com 5 active\n"), "late but in time")
        S.eq(len(r.received), 1, "no retransmission before the timeout")


def test_one_timeout_among_answers():
    with Responder({"arvel@example.com": 5}, mode="normal") as r:
        r.statuses["quiet@example.com"] = 5
        orig = r.handle
        r.handle = lambda data, peer: None if data.startswith(b"quiet@") else orig(data, peer)
        p = query(r.server, "arvel@example.com", "quiet@example.com", extra=FAST)
        S.eq(p.returncode, 75, "exit")
        S.eq(p.stdout, "arvel@example.com 5 active\nquiet@example.com - timeout\n", "lines")


def test_retransmission_answered():
    with Responder({"arvel@example.com": 5}, mode="second_copy") as r:
        p = query(r.server, "arvel@example.com", extra=("--timeout", "300", "--retries", "2"))
        S.eq((p.returncode, p.stdout), (0, "arvel@example.com 5 active\n"), "2nd copy answered")
        S.eq(len(r.received), 2, "no third copy after the answer")


def test_wrong_source_ignored():
    with Responder({"arvel@example.com": 5}, mode="wrong_source") as r:
        p = query(r.server, "arvel@example.com", extra=FAST)
        S.eq((p.returncode, p.stdout), (75, "arvel@example.com - timeout\n"), "wrong source")


def test_wrong_mailbox_ignored():
    with Responder({"arvel@example.com": 5}, mode="wrong_mailbox") as r:
        p = query(r.server, "arvel@example.com", extra=FAST)
        S.eq((p.returncode, p.stdout), (75, "arvel@example.com - timeout\n"), "wrong mailbox")


def test_case_of_mailbox_is_byte_exact():
    # Sent as written, echoed as written.
    with Responder({"Arvel@Example.COM": 5}) as r:
        p = query(r.server, "Arvel@Example.COM")
        S.eq((p.returncode, p.stdout), (0, "Arvel@Example.COM 5 active\n"), "as sent")
        S.check(r.received and r.received[0][1].startswith(b"Arvel@Example.COM "), "sent as is")


def test_late_reply_ignored():
    with Responder({"arvel@example.com": 5}, mode="late", delay=3.0) as r:
        p = query(r.server, "arvel@example.com", extra=FAST)
        S.eq((p.returncode, p.stdout), (75, "arvel@example.com - timeout\n"), "late")
        S.eq(len(r.received), 1, "one datagram (--retries 0)")
        S.eq(r.late_sent, 0, "gave up before the late reply was sent")


def test_malformed_replies_ignored():
    with Responder({"arvel@example.com": 5}, mode="malformed") as r:
        p = query(r.server, "arvel@example.com", extra=FAST)
        S.eq((p.returncode, p.stdout), (75, "arvel@example.com - timeout\n"), "malformed")


def secret_file(t, secret=SECRET):
    return t.file("secret.txt", f"# the shared secret\n\n{secret}\n")


def test_secret_and_extension_tags():
    with Tmp() as t, Responder({"arvel@example.com": 5}, secret=SECRET, mac="good") as r:
        sf = secret_file(t)
        p = query(r.server, "arvel@example.com", "nobody@example.com", extra=("--secret-file", sf))
        S.eq(p.returncode, 0, "exit")
        S.eq(p.stdout, "arvel@example.com 5 active\nnobody@example.com 3 unknown\n", "lines")
        S.check(SECRET not in p.stdout + p.stderr, "secret never printed")
        d = r.received[0][1].decode()
        parts = d.split(" ")
        S.eq(parts[1], "d=" + digest(SECRET, parts[0]), "-06 digest")
        tags = dict(x.split("=", 1) for x in parts[2:])
        S.eq(sorted(tags), ["mac", "nonce", "ts"], "extension tags")
        S.check(abs(int(tags["ts"]) - time.time()) < 30, "ts is now")
        S.check(len(tags["nonce"]) == 16 and all(c in "0123456789abcdef" for c in tags["nonce"]),
                "nonce is 16 lower hex")
        nonces = {dict(x.split("=", 1) for x in d.decode().split(" ")[2:])["nonce"]
                  for _, d in r.received}
        S.eq(len(nonces), 2, "a fresh nonce per query")
        # --no-ext: only the digest.
        r.received.clear()
        p = query(r.server, "arvel@example.com", extra=("--secret-file", sf, "--no-ext"))
        S.eq((p.returncode, p.stdout), (0, "arvel@example.com 5 active\n"), "--no-ext")
        S.eq(r.received[0][1].decode(), "arvel@example.com d=" + digest(SECRET,
                                                                        "arvel@example.com"),
             "--no-ext datagram")


def test_wrong_secret_gets_2():
    with Tmp() as t, Responder({"arvel@example.com": 5}, secret=SECRET) as r:
        sf = secret_file(t, "wrong-secret-0000")
        p = query(r.server, "arvel@example.com", extra=("--secret-file", sf))
        S.eq((p.returncode, p.stdout), (0, "arvel@example.com 2 bad credentials\n"), "wrong secret")


def test_require_reply_mac():
    with Tmp() as t:
        sf = secret_file(t)
        req = ("--secret-file", sf, "--require-reply-mac", "--timeout", "300", "--retries", "0")
        with Responder({"arvel@example.com": 5}, secret=SECRET, mac="none") as r:
            p = query(r.server, "arvel@example.com", extra=req)
            S.eq((p.returncode, p.stdout), (75, "arvel@example.com - timeout\n"), "no mac")
            # Without the requirement, an old server's plain reply is accepted.
            p = query(r.server, "arvel@example.com", extra=("--secret-file", sf))
            S.eq((p.returncode, p.stdout), (0, "arvel@example.com 5 active\n"), "plain ok")
        with Responder({"arvel@example.com": 5}, secret=SECRET, mac="good") as r:
            p = query(r.server, "arvel@example.com", extra=req)
            S.eq((p.returncode, p.stdout), (0, "arvel@example.com 5 active\n"), "good mac")
        with Responder({"arvel@example.com": 5}, secret=SECRET, mac="bad") as r:
            p = query(r.server, "arvel@example.com", extra=req)
            S.eq((p.returncode, p.stdout), (75, "arvel@example.com - timeout\n"), "bad mac")
            # A bad mac is ignored even without the requirement.
            p = query(r.server, "arvel@example.com", extra=("--secret-file", sf) + FAST)
            S.eq((p.returncode, p.stdout), (75, "arvel@example.com - timeout\n"), "bad mac 2")


def test_reply_mac_to_earlier_attempt_accepted():
    # The responder answers only the second copy, with a mac over THAT copy's nonce; and
    # each extension retransmission carries a fresh nonce (server replay protection).
    with Tmp() as t, Responder({"arvel@example.com": 5}, secret=SECRET, mode="second_copy") as r:
        sf = secret_file(t)
        p = query(r.server, "arvel@example.com",
                  extra=("--secret-file", sf, "--require-reply-mac", "--timeout", "300"))
        S.eq((p.returncode, p.stdout), (0, "arvel@example.com 5 active\n"), "retransmitted")
        S.eq(len(r.received), 2, "two copies")
        S.check(r.received[0][1] != r.received[1][1], "fresh nonce on retransmission")


def test_batch_file_500_window_64():
    statuses = {f"user{i:03d}@example.com": (5 if i % 3 else 3) for i in range(500)}
    with Tmp() as t, Responder(statuses) as r:
        path = t.file("addrs.txt", "# batch\n" + "".join(a + "\n" for a in statuses) + "\n")
        p = query(r.server, "--file", path, "--window", "64", conf=None)
        S.eq(p.returncode, 0, "exit")
        want = "".join(f"{a} {s} {'active' if s == 5 else 'unknown'}\n"
                       for a, s in statuses.items())
        S.check(p.stdout == want, "500 lines, in input order, each correct")
        S.eq(len(r.received), 500, "one datagram each")
        # The same from stdin.
        p = query(r.server, "--file", "-", input="".join(a + "\n" for a in list(statuses)[:20]))
        S.eq((p.returncode, len(p.stdout.splitlines())), (0, 20), "stdin")


def test_window_bounds_queries_in_flight():
    # The responder answers only while 8 queries wait: with --window 8 every query is
    # answered and no more than 8 were ever unanswered; a smaller window would stall
    # into timeouts, a larger one would show as more than 8 held.
    addrs = [f"w{i}@example.com" for i in range(24)]
    with Responder({a: 5 for a in addrs}, mode="window", window=8, expect=24) as r:
        p = query(r.server, *addrs, extra=("--window", "8", "--timeout", "5000", "--retries", "0"))
        S.eq(p.returncode, 0, "exit")
        S.eq(p.stdout, "".join(f"{a} 5 active\n" for a in addrs), "24 answers, in order")
        S.eq(r.max_held, 8, "at most 8 queries in flight, and 8 reached")
        S.eq(len(r.received), 24, "one datagram each")
    # A silent server: every query times out, each sent once.
    with Responder(mode="silent") as r:
        p = query(r.server, *addrs, extra=("--window", "8", "--timeout", "300", "--retries", "0"))
        S.eq(p.returncode, 75, "exit")
        S.eq(p.stdout, "".join(f"{a} - timeout\n" for a in addrs), "24 timeouts")
        S.eq(sorted(d for _, d in r.received), sorted(f"{a} pad=00".encode() for a in addrs),
             "each address asked once")


def test_usage_and_input_errors():
    with Tmp() as t:
        p = sharemail("minger", "query", "arvel@example.com")
        S.eq(p.returncode, 64, "no --server")
        p = query("127.0.0.1:4069", "arvel@example.com", extra=("--timeout", "abc"))
        S.eq(p.returncode, 64, "bad --timeout")
        p = query("127.0.0.1:4069", "arvel@example.com", extra=("--bogus",))
        S.eq(p.returncode, 64, "unknown option")
        p = query("127.0.0.1:4069", "arvel@example.com", extra=("--require-reply-mac",))
        S.eq(p.returncode, 64, "reply mac without a secret")
        p = query("127.0.0.1:4069", "arvel@example.com", extra=("--cached",))
        S.eq(p.returncode, 64, "--cached without a config")
        p = query("127.0.0.1:4069", "arvel")
        S.eq(p.returncode, 65, "not an address")
        p = query("127.0.0.1:4069", "a@b.example\x01")
        S.eq(p.returncode, 65, "control octet")
        p = query("127.0.0.1:4069", "arvel@example.com", extra=("--file", t.dir + "/none"))
        S.eq(p.returncode, 65, "missing file")
        short = t.file("short.txt", "tooshort\n")
        p = query("127.0.0.1:4069", "arvel@example.com", extra=("--secret-file", short))
        S.eq(p.returncode, 65, "invalid secret refused")
        S.check("tooshort" not in p.stdout + p.stderr, "invalid secret not printed")
        for bad in ("example.com:4069", "127.0.0.1:99999", "*:4069", "0.0.0.0"):
            p = query(bad, "arvel@example.com")
            S.eq(p.returncode, 69, f"server {bad}")


def test_cache_list_cached_flush():
    with Tmp() as t:
        conf = t.conf(minger_cache="yes", minger_timeout_ms="300", minger_retries="0")
        with Responder({"arvel@example.com": 5, "old@example.com": 4}) as r:
            p = query(r.server, "arvel@example.com", "nobody@example.com", "old@example.com",
                      conf=conf)
            S.eq(p.returncode, 0, "query with config")
            p2 = query(r.server, "quiet@example.com", "arvel@example.com",
                       extra=("--no-cache",), conf=conf)
            S.eq(p2.returncode, 0, "--no-cache query")
            server = r.server
        p = sharemail("cache", "list", conf=conf)
        S.eq(p.returncode, 0, "cache list")
        lines = p.stdout.splitlines()
        S.eq([l.split(" ")[:4] for l in lines],
             [["arvel@example.com", "5", "active", server],
              ["nobody@example.com", "3", "unknown", server],
              ["old@example.com", "4", "inactive", server]], "cache list lines")
        exp = time.strptime(lines[0].split(" ")[4], "%Y-%m-%dT%H:%M:%SZ")
        import calendar
        left = calendar.timegm(exp) - time.time()
        S.check(5 * 86400 - 60 < left <= 5 * 86400 + 1, f"5 days to live ({left:.0f}s)")
        left = calendar.timegm(time.strptime(lines[1].split(" ")[4], "%Y-%m-%dT%H:%M:%SZ")) \
            - time.time()
        S.check(3600 - 60 < left <= 3601, f"1 hour to live ({left:.0f}s)")
        # The responder is gone: --cached answers from the cache, the rest time out.
        p = query(server, "arvel@example.com", "NOBODY@example.com", "else@example.com",
                  extra=("--cached",), conf=conf)
        S.eq(p.returncode, 75, "exit with one timeout")
        S.eq(p.stdout, "arvel@example.com 5 active (cached)\nNOBODY@example.com 3 unknown "
             "(cached)\nelse@example.com - timeout\n", "cached answers")
        p = sharemail("cache", "flush", "old@example.com", conf=conf)
        S.eq((p.returncode, p.stdout), (0, "1 entries flushed\n"), "flush one")
        p = sharemail("cache", "flush", conf=conf)
        S.eq((p.returncode, p.stdout), (0, "2 entries flushed\n"), "flush all")
        p = sharemail("cache", "list", conf=conf)
        S.eq((p.returncode, p.stdout), (0, ""), "empty after flush")
        p = sharemail("cache", "bogus", conf=conf)
        S.eq(p.returncode, 64, "cache usage")


def test_config_defaults_used():
    # Replies come 1.5 s after each query. With the config's minger_timeout_ms = 200 and
    # minger_retries = 1 the client sends twice and gives up before any reply; with the
    # default timeout (2000) it would take the first reply, with the default retries (2)
    # it would send three times.
    with Tmp() as t, Responder({"arvel@example.com": 5}, mode="late", delay=1.5) as r:
        conf = t.conf(minger_cache="no", minger_timeout_ms="200", minger_retries="1")
        p = query(r.server, "arvel@example.com", conf=conf)
        S.eq((p.returncode, p.stdout), (75, "arvel@example.com - timeout\n"),
             "minger_timeout_ms from the config")
        S.eq(len(r.received), 2, "minger_retries from the config")
        S.eq(r.late_sent, 0, "gave up before the first reply was sent")
        S.check(not os.path.exists(os.path.join(t.dir, "state", "vcache.db")), "cache off")


def daemon_available():
    return os.access(smtest.SHAREMAILD, os.X_OK)


def test_against_sharemaild():
    if not daemon_available():
        S.skip(f"no {smtest.SHAREMAILD}")
        return
    with smtest.Daemon(secrets=[SECRET]) as d, Tmp() as t:
        os.makedirs(d.state, exist_ok=True)
        d.cli("account", "add", "arvel@example.com", "--no-password")
        d.start()
        server = f"127.0.0.1:{d.minger_port}"
        sf = secret_file(t)
        p = query(server, "arvel@example.com", "nobody@example.com",
                  extra=("--secret-file", sf, "--require-reply-mac"))
        S.eq(p.returncode, 0, f"exit ({p.stderr})")
        S.eq(p.stdout, "arvel@example.com 5 active\nnobody@example.com 3 unknown\n", "real")
        p = query(server, "arvel@example.com", extra=("--secret-file", sf, "--no-ext"))
        S.eq((p.returncode, p.stdout), (0, "arvel@example.com 5 active\n"), "real, -06 only")
        wrong = secret_file(t, "wrong-secret-0000")
        p = query(server, "arvel@example.com", extra=("--secret-file", wrong))
        S.eq((p.returncode, p.stdout), (0, "arvel@example.com 2 bad credentials\n"),
             "real, wrong secret")
        p = query(server, "arvel@example.com")
        S.eq((p.returncode, p.stdout), (0, "arvel@example.com 2 bad credentials\n"),
             "real, anonymous refused (padded query answered)")


if __name__ == "__main__":
    if not os.access(smtest.SHAREMAIL, os.X_OK):
        print(f"no {smtest.SHAREMAIL}")
        print("0 passed, 1 failed")
        sys.exit(1)
    sys.exit(S.run([
        test_statuses_3_and_5, test_single_query_status_4,
        test_timeout_exit_75_and_retransmissions, test_reply_within_timeout_not_retransmitted,
        test_one_timeout_among_answers,
        test_retransmission_answered, test_wrong_source_ignored, test_wrong_mailbox_ignored,
        test_case_of_mailbox_is_byte_exact, test_late_reply_ignored,
        test_malformed_replies_ignored, test_secret_and_extension_tags,
        test_wrong_secret_gets_2, test_require_reply_mac,
        test_reply_mac_to_earlier_attempt_accepted, test_batch_file_500_window_64,
        test_window_bounds_queries_in_flight, test_usage_and_input_errors,
        test_cache_list_cached_flush, test_config_defaults_used, test_against_sharemaild,
    ]))
