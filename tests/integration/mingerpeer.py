"""mingerpeer: an independent Minger responder (and a tiny client), written from the
protocol page (/work/shared/minger-protocol.md: draft-hathcock-minger-06 plus the
sharemail extension), never from sharemail's C code, so a test that talks to it proves
sharemaild interoperates with somebody else's reading of the draft.

    with Responder({"bob@example.com": 5}, secrets=["0123456789abcdef"]) as m:
        ...  # point a sharemaild at m.hostport
        m.count            # datagrams received
        m.mailboxes()      # the mailboxes asked, in order (a repeat is a retransmission)

What it does (the page's section in brackets):
- [Query] parses `mailbox [SP d=digest] [SP tag=value]*`: the mailbox by RFC 5321 syntax
  (a quoted local part may hold spaces), exactly one SP between words, printable ASCII
  only, local part <= 64 and domain <= 255 octets, the digest 24 base64 characters
  decoding to 16 octets, tags [A-Za-z0-9_]+ never repeated, "d" only first; unknown tags
  are ignored. With compat=True also the -02 bare digest and the -03/-04 "D=".
  Anything else is status 0, echoing the mailbox (or the octets before the first space);
  with nothing printable to echo, or an empty or oversize (> 1024) datagram: no reply.
- [Authentication] a digest must match one of `secrets` (else 2); no digest is answered
  only when `anonymous` (else 2); a source outside `allow` gets 1.
- [extension] ts/nonce/mac all present or all absent; a valid mac (HMAC-SHA256), a ts
  within `window` seconds and a nonce not seen before, else 2; a reply to a valid
  extension query carries ` mac=` (HMAC-SHA256 of "R mailbox status nonce").
- [Amplification] a reply longer than its query + 2 octets is not sent (strict=True:
  longer than the query).
- Answers: `answers` maps a mailbox (matched as sent, then lower-cased) to a status;
  anything else gets `default` (3, no such address).
- Behaviour for fault tests: silent=True records but never answers; hold=N keeps every
  reply until N different mailboxes have been asked (or hold_limit seconds passed, a
  bound so a test cannot hang), then sends them all: `distinct_before_reply` then shows
  how many different queries were in flight at once.
Standard library only (hashlib, hmac, base64, socket, threading).
"""
import base64
import binascii
import hashlib
import hmac
import os
import re
import socket
import threading
import time

PORT = 4069
DATAGRAM_MAX = 1024
LOCAL_MAX = 64
DOMAIN_MAX = 255

ATEXT = re.compile(rb"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+")
SUBDOMAIN = re.compile(rb"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?")
LITERAL = re.compile(rb"\[[\x21-\x5a\x5e-\x7e]+\]")
TAG = re.compile(r"[A-Za-z0-9_]+")
DIGEST = re.compile(r"[A-Za-z0-9+/]{22}==")
HEX16 = re.compile(r"[0-9a-f]{16}")
HEX64 = re.compile(r"[0-9a-f]{64}")
DECIMAL = re.compile(r"(?:0|[1-9][0-9]{0,18})")


# The protocol page's test vectors, literal: (secret, mailbox, d= digest). test_mingerpeer
# checks digest() against them, test_minger_interop sharemaild.
PAGE_SECRET = "0123456789abcdef"
PAGE_SECRET2 = "correct-horse-battery-staple"
PAGE_VECTORS = [
    (PAGE_SECRET, "arvel@example.com", "A7E/WJtlUbO5NWDjZba+bw=="),
    (PAGE_SECRET, "Arvel@Example.COM", "ptWbzmLDqSk0pEQ13tbBrA=="),
    (PAGE_SECRET, "nobody@example.com", "OtuP1skxbYmws8JVVf3DuA=="),
    (PAGE_SECRET, '"arvel smith"@example.com', "K9q4S8Lwg595GGvSSqnlKQ=="),
    (PAGE_SECRET2, "user01@example.com", "1oG3c4Nb6/PSKnIOj2Lg+w=="),
    ("wrong-secret-0000", "arvel@example.com", "2P4Wlz1pI7ZmGe89PLJ8fw=="),
]
# The page's example exchanges (server secret PAGE_SECRET, arvel active, nobody unknown).
PAGE_EXCHANGES = [
    (b"arvel@example.com d=A7E/WJtlUbO5NWDjZba+bw==", b"arvel@example.com 5"),
    (b"nobody@example.com d=OtuP1skxbYmws8JVVf3DuA==", b"nobody@example.com 3"),
    (b"arvel@example.com d=2P4Wlz1pI7ZmGe89PLJ8fw==", b"arvel@example.com 2"),
    (b"arvel@example.com", b"arvel@example.com 2"),
    (b"arvel@example.com d=A7E/WJtlUbO5NWDjZba+bw== foo=bar", b"arvel@example.com 5"),
    (b"arvel", b"arvel 0"),
]

def digest(secret, mailbox):
    """The -06 digest: base64 of MD5(secret ":" mailbox), the mailbox as sent."""
    return base64.b64encode(hashlib.md5(f"{secret}:{mailbox}".encode("latin-1")).digest()).decode()


def query_mac(secret, mailbox, ts, nonce):
    return hmac.new(secret.encode(), f"{mailbox} {ts} {nonce}".encode("latin-1"),
                    hashlib.sha256).hexdigest()


def reply_mac(secret, mailbox, status, nonce):
    return hmac.new(secret.encode(), f"R {mailbox} {status} {nonce}".encode("latin-1"),
                    hashlib.sha256).hexdigest()


def _local_part(data, i):
    """End of an RFC 5321 Local-part starting at i (Dot-string or Quoted-string), or -1."""
    if i < len(data) and data[i:i + 1] == b'"':
        j = i + 1
        while j < len(data):
            c = data[j]
            if c == 0x22:
                return j + 1
            if c == 0x5c:  # quoted-pairSMTP: backslash and one of %d32-126
                if j + 1 >= len(data) or not 0x20 <= data[j + 1] <= 0x7e:
                    return -1
                j += 2
                continue
            if not (c in (0x20, 0x21) or 0x23 <= c <= 0x5b or 0x5d <= c <= 0x7e):
                return -1
            j += 1
        return -1
    j = i
    while True:
        m = ATEXT.match(data, j)
        if not m:
            return -1
        j = m.end()
        if data[j:j + 1] != b"." or not ATEXT.match(data, j + 1):
            return j
        j += 1


def _domain(data, i):
    m = LITERAL.match(data, i)
    if m:
        return m.end()
    j = i
    while True:
        m = SUBDOMAIN.match(data, j)
        if not m:
            return -1
        j = m.end()
        if data[j:j + 1] != b"." or not SUBDOMAIN.match(data, j + 1):
            return j
        j += 1


def parse_mailbox(data):
    """Length of the RFC 5321 Mailbox at the start of data (bytes), or -1."""
    at = _local_part(data, 0)
    if at <= 0 or data[at:at + 1] != b"@" or at > LOCAL_MAX:
        return -1
    end = _domain(data, at + 1)
    if end < 0 or end - at - 1 > DOMAIN_MAX:
        return -1
    return end


class Query:
    """A parsed query: mailbox (str), digest (str or None), tags (dict)."""

    def __init__(self, mailbox, digest=None, tags=None):
        self.mailbox = mailbox
        self.digest = digest
        self.tags = tags or {}

    @property
    def has_ext(self):
        return "mac" in self.tags


class Malformed(Exception):
    """A query to answer with status 0; .echo is what to echo (None: no reply)."""

    def __init__(self, echo):
        super().__init__(echo)
        self.echo = echo


def parse_query(data, compat=True):
    """Parses one query datagram (bytes) into a Query, or raises Malformed."""
    if not data or len(data) > DATAGRAM_MAX:
        raise Malformed(None)
    end = parse_mailbox(data)
    if end < 0 or (end < len(data) and data[end:end + 1] != b" "):
        echo = data.split(b" ", 1)[0]
        printable = echo and all(0x21 <= c <= 0x7e for c in echo)
        raise Malformed(echo.decode("ascii") if printable else None)
    mailbox = data[:end].decode("ascii")
    if any(not 0x20 <= c <= 0x7e for c in data):
        raise Malformed(mailbox)
    words = data[end + 1:].decode("ascii").split(" ") if end < len(data) else []
    q = Query(mailbox)
    for n, w in enumerate(words):
        if n == 0 and compat and DIGEST.fullmatch(w):  # -02: the bare digest
            q.digest = w
            continue
        name, eq, value = w.partition("=")
        if name == "d" or (compat and name == "D"):
            if n != 0 or not DIGEST.fullmatch(value) or len(_b64(value)) != 16:
                raise Malformed(mailbox)
            q.digest = value
            continue
        if not eq or not TAG.fullmatch(name) or not TAG.fullmatch(value) or name in q.tags:
            raise Malformed(mailbox)
        q.tags[name] = value
    ext = [k for k in ("ts", "nonce", "mac") if k in q.tags]
    if ext and (len(ext) != 3 or not DECIMAL.fullmatch(q.tags["ts"])
                or not HEX16.fullmatch(q.tags["nonce"]) or not HEX64.fullmatch(q.tags["mac"])):
        raise Malformed(mailbox)
    return q


def _b64(value):
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return b""


class Responder:
    """A Minger server on (host, port) answering in a thread; see the module's text."""

    def __init__(self, answers=None, secrets=(), anonymous=False, host="127.0.0.1", port=0,
                 default=3, compat=True, window=60, strict=False, allow=None, silent=False,
                 hold=0, hold_limit=10.0, clock=time.time):
        self.answers = dict(answers or {})
        self.secrets = list(secrets)
        self.anonymous = anonymous
        self.default = default
        self.compat = compat
        self.window = window
        self.strict = strict
        self.allow = set(allow) if allow is not None else None
        self.silent = silent
        self.hold = hold
        self.hold_limit = hold_limit
        self.clock = clock
        self.nonces = {}            # nonce -> ts, for the replay check
        self.lock = threading.Lock()
        self.received = []          # (monotonic time, (addr, port), datagram)
        self.sent = []              # (datagram, (addr, port))
        self.held = []
        self.hold_started = None
        self.distinct_before_reply = None
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(fam, socket.SOCK_DGRAM)
        self.sock.bind((host, port))
        self.sock.settimeout(0.05)
        self.host, self.port = host, self.sock.getsockname()[1]
        self.stopping = False
        self.thread = threading.Thread(target=self._loop, daemon=True)

    # -- life --
    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.stopping = True
        if self.thread.is_alive():
            self.thread.join()
        self.sock.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    @property
    def hostport(self):
        return f"{self.host}:{self.port}"

    # -- what it saw --
    @property
    def count(self):
        with self.lock:
            return len(self.received)

    def mailboxes(self):
        """The mailbox of every datagram received (the octets before the first space)."""
        with self.lock:
            return [d.split(b" ", 1)[0].decode("latin-1") for _, _, d in self.received]

    def datagrams(self):
        with self.lock:
            return [d for _, _, d in self.received]

    def reset(self):
        with self.lock:
            self.received.clear()
            self.sent.clear()
            self.distinct_before_reply = None

    # -- the protocol --
    def answer(self, data, source="127.0.0.1"):
        """The reply (bytes) to one datagram from source address, or None for none."""
        try:
            q = parse_query(data, self.compat)
        except Malformed as e:
            return None if e.echo is None else self._fit(f"{e.echo} 0".encode(), data)
        if self.allow is not None and source not in self.allow:
            return self._fit(f"{q.mailbox} 1".encode(), data)
        secret = self._authenticate(q)
        if secret is None:
            return self._fit(f"{q.mailbox} 2".encode(), data)
        status = self.answers.get(q.mailbox, self.answers.get(q.mailbox.lower(), self.default))
        reply = f"{q.mailbox} {status}"
        if q.has_ext:
            reply += f" mac={reply_mac(secret, q.mailbox, status, q.tags['nonce'])}"
        return self._fit(reply.encode(), data)

    def _authenticate(self, q):
        """The secret that authenticates q ("" for an allowed anonymous query), or None."""
        if q.digest is None:
            if q.has_ext or not self.anonymous:
                return None
            return ""
        for s in self.secrets:
            if not hmac.compare_digest(q.digest, digest(s, q.mailbox)):
                continue
            if not q.has_ext:
                return s
            if not hmac.compare_digest(q.tags["mac"],
                                       query_mac(s, q.mailbox, q.tags["ts"], q.tags["nonce"])):
                return None
            now = self.clock()
            if abs(now - int(q.tags["ts"])) > self.window or q.tags["nonce"] in self.nonces:
                return None
            self.nonces = {n: t for n, t in self.nonces.items() if abs(now - t) <= self.window}
            self.nonces[q.tags["nonce"]] = int(q.tags["ts"])
            return s
        return None

    def _fit(self, reply, query):
        limit = len(query) if self.strict else len(query) + 2
        return reply if len(reply) <= limit else None

    # -- the loop --
    def _loop(self):
        while not self.stopping:
            try:
                data, peer = self.sock.recvfrom(65535)
            except socket.timeout:
                self._release_held(force=False)
                continue
            except OSError:
                return
            with self.lock:
                self.received.append((time.monotonic(), peer, data))
            if self.silent:
                continue
            reply = self.answer(data, peer[0])
            if reply is None:
                continue
            if self.hold:
                self.held.append((reply, peer))
                if self.hold_started is None:
                    self.hold_started = time.monotonic()
                self._release_held(force=False)
            else:
                self._send(reply, peer)

    def _release_held(self, force):
        if not self.held:
            return
        distinct = len(set(self.mailboxes()))
        waited = time.monotonic() - self.hold_started
        if not force and distinct < self.hold and waited < self.hold_limit:
            return
        with self.lock:
            if self.distinct_before_reply is None:
                self.distinct_before_reply = distinct
        for reply, peer in self.held:
            self._send(reply, peer)
        self.held = []
        self.hold = 0               # held once: answer at once from now on

    def _send(self, reply, peer):
        try:
            self.sock.sendto(reply, peer)
        except OSError:
            return
        with self.lock:
            self.sent.append((reply, peer))


def query(server, mailbox, secret=None, timeout=1.0, ext=False, tries=3):
    """Asks server ("HOST:PORT" or (host, port)) about mailbox; returns the status (int)
    from a reply that echoes mailbox (and, with ext, carries a valid reply mac), or None.
    Sends up to `tries` copies, each waited for `timeout` seconds."""
    if isinstance(server, str):
        host, _, port = server.rpartition(":")
        server = (host.strip("[]"), int(port))
    q = mailbox
    nonce = os.urandom(8).hex()
    if secret is not None:
        q += f" d={digest(secret, mailbox)}"
        if ext:
            ts = int(time.time())
            q += f" ts={ts} nonce={nonce} mac={query_mac(secret, mailbox, ts, nonce)}"
    fam = socket.AF_INET6 if ":" in server[0] else socket.AF_INET
    with socket.socket(fam, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        for _ in range(tries):
            s.sendto(q.encode("latin-1"), server)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                try:
                    data, src = s.recvfrom(4096)
                except (socket.timeout, ConnectionRefusedError):
                    break
                if src[:2] != server:
                    continue
                st = parse_reply(data, mailbox, secret if ext else None, nonce)
                if st is not None:
                    return st
    return None


def parse_reply(data, mailbox, secret=None, nonce=None):
    """The status in a reply to `mailbox`, or None if the reply is not one ([Reply]:
    wrong mailbox, status outside 0-5, extra octets; with secret, a missing or bad mac)."""
    text = data.decode("latin-1")
    m = re.fullmatch(r"(.+) ([0-5])(?: mac=([0-9a-f]{64}))?", text, re.S)
    if not m or m.group(1) != mailbox:
        return None
    status = int(m.group(2))
    if secret is not None:
        if not m.group(3) or not hmac.compare_digest(
                m.group(3), reply_mac(secret, mailbox, status, nonce)):
            return None
    return status


def serve_process(answers, secrets, host="127.0.0.1", anonymous=False):
    """A Responder in its own process (for benchmarks: no shared GIL with the load).
    Returns (process, port, counter): counter.value is the number of datagrams it has
    received; process.terminate() stops it."""
    import multiprocessing
    ctx = multiprocessing.get_context("fork")
    counter = ctx.Value("q", 0)
    ready = ctx.Queue()

    def run():
        r = Responder(answers, secrets=secrets, host=host, anonymous=anonymous)
        r.sock.settimeout(None)
        ready.put(r.port)
        while True:
            data, peer = r.sock.recvfrom(65535)
            with counter.get_lock():
                counter.value += 1
            reply = r.answer(data, peer[0])
            if reply is not None:
                r.sock.sendto(reply, peer)

    p = ctx.Process(target=run, daemon=True)
    p.start()
    port = ready.get(timeout=30)
    return p, port, counter
