"""fakepeer: a scripted fake SMTP server on loopback, for the relay tests' faults.

    with FakePeer(script=serve(rcpt={"b@peer.test": "451 4.3.0 later"})) as peer:
        ... point sharemaild's relay_route at peer.hostport, let it deliver ...
        peer.wait_closed(1, timeout=10)
        conn = peer.connections[0]        # everything that happened on connection 0

Each accepted connection runs a script in its own thread: `script=` for every connection,
or `scripts=[first, second, ...]` one per connection in accept order and `then=` for the
connections after those (default: serve()). A script is
  - a Step: serve(...) (a whole SMTP server with chosen replies and faults), or one of
    greet, say, send, read, drop, reset, silent, endless_line, tls_start, starttls_hang,
    starttls_inject;
  - a list of steps (and reply strings, raw bytes) run in order, e.g.
    [greet(), read(), say("250 peer.test"), read(), drop()];
  - a function f(conn) given the Connection (read_line, read_command, read_data, answer,
    send, starttls, serve ...).
The connection is closed when the script ends.

Wherever serve() takes a reply (greeting, ehlo, mail, rcpt, data, dot, ...), a "spec" is
  - a str: one reply; a multi-line reply is lines joined by "\\n" ("250-a\\n250 b");
  - bytes: sent exactly as given (no CRLF added);
  - a Step: a fault played instead of the reply (drop(), silent(), endless_line() ...);
  - a list or tuple: each spec in turn (["250 ok", drop()]: reply, then close);
  - a function f(conn, arg) returning a spec (arg: the command's argument; for rcpt the
    address, for dot the Message);
  - None: the default reply.

Everything is recorded, per connection (Connection): the command lines received
(`lines`: raw octets with their terminator; `commands`: decoded, without it), the
replies sent, the messages (Message: envelope, the DATA octets byte-exact as received,
the dot-unstuffed content, the reply to the final dot), the TLS state, how the
connection ended and any protocol slip of the client (`errors`: bare LF, data sent after
STARTTLS before the handshake, an over-long line ...). FakePeer.failures holds
exceptions raised by a script (a harness bug: a test should check it is empty).

Bounded: every socket has a timeout (`timeout`, per read or write) and every connection
a total `limit`; stop() (or leaving the `with`) closes the listener and every
connection. Waits use a condition variable; no sleeps. Standard library only.
"""
import collections
import re
import selectors
import socket
import ssl
import threading
import time
import traceback

from peerutil import selfsigned_cert

DEFAULT_CAPS = ("PIPELINING", "SIZE 10240000", "8BITMIME", "ENHANCEDSTATUSCODES")
MAX_LINE = 65536            # a command line longer than this ends the connection
MAX_DATA = 64 << 20         # DATA octets per message
ENDLESS_MAX = 64 << 20      # endless_line() stops after this many octets anyway

PATH = re.compile(r"^\s*(?:FROM|TO)\s*:\s*<([^>]*)>\s*(.*)$", re.I | re.S)


class Hangup(Exception):
    """The connection is over: the client closed it, a read timed out, or a step ended
    it. Scripts let it propagate."""


class Step:
    """One scripted action on a connection (called with the Connection)."""

    def __init__(self, name, fn):
        self.name = name
        self.fn = fn

    def __call__(self, conn):
        return self.fn(conn)

    def __repr__(self):
        return f"<step {self.name}>"


class Message:
    """One transaction that reached a 354: its envelope and the octets received."""

    def __init__(self, conn, mail_from, mail_params, mail_line):
        self.conn = conn.index      # the connection's index
        self.mail_from = mail_from  # the address inside MAIL FROM:<...>
        self.mail_params = mail_params  # what follows the path ("BODY=8BITMIME SIZE=12")
        self.mail_line = mail_line  # the MAIL command, decoded
        self.rcpts = []             # recipients that got a 2xx, in order
        self.rcpt_replies = []      # (address, reply sent) for every RCPT
        self.raw = b""              # DATA octets after the 354, through ".\r\n", exactly
        self.content = b""          # raw without the final ".\r\n", dot-unstuffed
        self.complete = False       # the final dot arrived
        self.dot_reply = None       # the reply sent after the dot (None: none was)
        self.tls = conn.tls.established

    @property
    def accepted(self):
        """True when the peer replied 2xx to the final dot: the client may consider it
        delivered to self.rcpts."""
        return self.dot_reply is not None and self.dot_reply[:1] == "2"

    @property
    def bare_line_ends(self):
        """Bare CRs and LFs in the DATA octets (a client must send only CRLF)."""
        return len(re.findall(rb"\r(?!\n)|(?<!\r)\n", self.raw))

    def __repr__(self):
        return (f"<Message conn={self.conn} from={self.mail_from!r} rcpts={self.rcpts} "
                f"{len(self.raw)} octets dot={self.dot_reply!r}>")


class TlsState:
    def __init__(self):
        self.started = False        # STARTTLS was answered with 220
        self.established = False    # the handshake completed
        self.version = None         # e.g. "TLSv1.3"
        self.cipher = None
        self.error = None           # why the handshake failed

    def __repr__(self):
        return (f"<TLS started={self.started} established={self.established} "
                f"{self.version} error={self.error!r}>")


class Connection:
    """One client connection: the record of what happened, and the I/O a script uses."""

    def __init__(self, peer, index, sock, client):
        self.peer = peer
        self.index = index
        self.client = client        # (address, port) of the client
        self.sock = sock
        self.lines = []             # raw command lines received, with their terminator
        self.commands = []          # the same decoded (latin-1), without the terminator
        self.replies = []           # every reply sent (str, without the final CRLF)
        self.messages = []          # Message per transaction that reached 354
        self.tls = TlsState()
        self.ehlo = None            # argument of the last EHLO/HELO
        self.errors = []            # protocol slips of the client (str)
        self.after_silence = b""    # octets received while silent()
        self.silent_timeouts = 0    # read timeouts silent() sat through
        self.endless_sent = 0       # octets sent by endless_line()
        self.closed_by_client = False   # the client closed (EOF or reset) first
        self.ended = None           # "quit", "drop", "eof", "timeout", "script end" ...
        self.done = False
        self.buf = b""
        self.deadline = time.monotonic() + peer.limit
        self.nqueued = 0

    def __repr__(self):
        return (f"<Connection {self.index} commands={self.commands} "
                f"messages={len(self.messages)} {self.tls} ended={self.ended!r}>")

    # ---- recording

    def note(self, what):
        """Records a protocol slip of the client."""
        with self.peer.cond:
            self.errors.append(what)

    def _changed(self):
        with self.peer.cond:
            self.peer.cond.notify_all()

    # ---- input

    def _left(self):
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise Hangup("limit")
        return min(left, self.peer.timeout)

    def _recv(self):
        """More octets into self.buf; raises Hangup on EOF, reset, timeout or stop()."""
        try:
            self.sock.settimeout(self._left())
            chunk = self.sock.recv(65536)
        except (socket.timeout, TimeoutError):
            raise Hangup("timeout")
        except ssl.SSLError as e:
            self.note(f"TLS read error: {e}")
            raise Hangup("tls error")
        except OSError:
            if self.peer._stopping:
                raise Hangup("stopped")
            self.closed_by_client = True
            raise Hangup("reset")
        if not chunk:
            if self.peer._stopping:
                raise Hangup("stopped")     # stop() shut the socket down, not the client
            self.closed_by_client = True
            raise Hangup("eof")
        self.buf += chunk

    def read_line(self):
        """The next line (octets with its terminator: CRLF, or a bare LF, which is
        noted as an error). Raises Hangup on EOF, timeout, or a line over MAX_LINE."""
        while b"\n" not in self.buf:
            if len(self.buf) > MAX_LINE:
                self.note(f"command line over {MAX_LINE} octets")
                raise Hangup("line too long")
            self._recv()
        i = self.buf.index(b"\n") + 1
        line, self.buf = self.buf[:i], self.buf[i:]
        if not line.endswith(b"\r\n"):
            self.note(f"bare LF ends command line {line!r}")
        text = line.rstrip(b"\n").rstrip(b"\r").decode("latin-1")
        with self.peer.cond:
            self.lines.append(line)
            self.commands.append(text)
        return line

    def read_command(self):
        """(VERB upper-cased, argument str) of the next command line."""
        text = self.read_line().rstrip(b"\n").rstrip(b"\r").decode("latin-1")
        verb, _, arg = text.partition(" ")
        return verb.upper(), arg

    def read_data(self, msg=None):
        """Reads DATA octets through the final CRLF.CRLF; returns them exactly (dot-stuffed
        as sent). With msg, fills msg.raw, msg.content and msg.complete as it goes (what
        arrived is kept even if the connection ends first)."""
        raw = bytearray()
        scan = 0
        try:
            while True:
                raw += self.buf
                self.buf = b""
                end = -1
                if raw[:3] == b".\r\n":
                    end = 3                         # an empty message
                else:
                    i = raw.find(b"\r\n.\r\n", max(0, scan - 4))
                    if i >= 0:
                        end = i + 5
                if end >= 0:
                    self.buf = bytes(raw[end:])     # pipelined commands after the dot
                    data = bytes(raw[:end])
                    if msg is not None:
                        with self.peer.cond:
                            msg.raw, msg.content, msg.complete = data, unstuff(data), True
                    return data
                scan = len(raw)
                if len(raw) > MAX_DATA:
                    self.note(f"DATA over {MAX_DATA} octets")
                    raise Hangup("data too long")
                self._recv()
        except Hangup:
            if msg is not None:     # what arrived before the end, kept
                with self.peer.cond:
                    msg.raw, msg.content = bytes(raw), unstuff(bytes(raw))
            raise

    # ---- output

    def send(self, data):
        """Sends octets exactly; raises Hangup when the client is gone or stops reading."""
        try:
            self.sock.settimeout(self._left())
            self.sock.sendall(data)
        except (socket.timeout, TimeoutError):
            raise Hangup("send timeout")
        except OSError:
            self.closed_by_client = True
            raise Hangup("send failed")

    def answer(self, spec, arg=None):
        """Plays a spec (see the module doc); returns the last reply str sent, or None."""
        if spec is None:
            return None
        if isinstance(spec, str):
            lines = [l.rstrip("\r") for l in spec.rstrip("\r\n").split("\n")]
            self.send("".join(l + "\r\n" for l in lines).encode("latin-1"))
            with self.peer.cond:        # recorded once handed to the kernel whole
                self.replies.append("\r\n".join(lines))
            return "\r\n".join(lines)
        if isinstance(spec, (bytes, bytearray)):
            self.send(bytes(spec))
            return None
        if isinstance(spec, Step):
            spec(self)
            return None
        if isinstance(spec, (list, tuple)):
            last = None
            for s in spec:
                r = self.answer(s, arg)
                last = r if r is not None else last
            return last
        if callable(spec):
            return self.answer(spec(self, arg), arg)
        raise TypeError(f"not a reply spec: {spec!r}")

    def close(self, how="script end"):
        if self.ended is None:
            self.ended = how
        try:
            self.sock.close()
        except OSError:
            pass

    def abort(self):
        """Closes with a TCP reset (SO_LINGER 0)."""
        try:
            socket.socket.setsockopt(self.sock, socket.SOL_SOCKET, socket.SO_LINGER,
                                     b"\x01\x00\x00\x00\x00\x00\x00\x00")
        except OSError:
            pass
        self.close("reset")

    # ---- TLS

    def starttls(self, prefix=b"220 2.0.0 Ready to start TLS\r\n"):
        """Sends prefix (the 220 reply, and whatever a test injects after it, in ONE
        write), then the server side of a TLS handshake with the throwaway certificate.
        Octets the client sent after STARTTLS before the handshake are noted (RFC 3207
        4: it must wait for the reply) and discarded. Raises Hangup if it fails."""
        if self.buf:
            self.note(f"{len(self.buf)} octets after STARTTLS before the handshake")
            self.buf = b""
        with self.peer.cond:
            self.tls.started = True
            if prefix:
                self.replies.append(prefix.decode("latin-1").rstrip("\r\n"))
        self.send(prefix)
        try:
            s = self.peer.tls_context().wrap_socket(self.sock, server_side=True,
                                                     do_handshake_on_connect=False)
            self.sock = s
            s.settimeout(self._left())
            s.do_handshake()
        except (ssl.SSLError, OSError) as e:
            with self.peer.cond:
                self.tls.error = f"{type(e).__name__}: {e}"
            raise Hangup("tls handshake failed")
        with self.peer.cond:
            self.tls.established = True
            self.tls.version = s.version()
            self.tls.cipher = (s.cipher() or (None,))[0]
        self._changed()

    # ---- the standard server

    def serve(self, **kw):
        """Runs serve(**kw) on this connection (for function scripts)."""
        serve(**kw)(self)


def unstuff(raw):
    """The message content of DATA octets: without the final ".\\r\\n", one leading dot
    removed from each line that has one (RFC 5321 4.5.2). Lines are CRLF-delimited;
    a bare LF does not start a line."""
    if raw == b".\r\n":
        body = b""
    elif raw.endswith(b"\r\n.\r\n"):
        body = raw[:-3]
    else:
        body = raw                  # incomplete: the connection ended before the dot
    return b"\r\n".join(l[1:] if l.startswith(b".") else l for l in body.split(b"\r\n"))


# ---- steps ----------------------------------------------------------------------

GREETINGS = {220: "220 {h} ESMTP fakepeer", 421: "421 4.3.2 {h} Service not available",
             554: "554 5.3.2 {h} No SMTP service here"}


def _greeting_text(g, host):
    if isinstance(g, int):
        return GREETINGS.get(g, f"{g} {{h}} greeting").format(h=host)
    return g


def greet(reply=220):
    """Sends the greeting: an int code (220, 421, 554: standard texts) or a spec."""
    return Step(f"greet {reply!r}", lambda c: c.answer(_greeting_text(reply, c.peer.hostname)))


def say(spec):
    """Sends a reply (any spec)."""
    return Step(f"say {spec!r}", lambda c: c.answer(spec))


def send(raw):
    """Sends octets exactly."""
    return Step(f"send {raw!r}", lambda c: c.send(raw))


def read():
    """Reads one command line (recorded)."""
    return Step("read", lambda c: c.read_line())


def _drop(c):
    c.close("drop")
    raise Hangup("drop")


def drop():
    """Closes the connection now (FIN), without a reply."""
    return Step("drop", _drop)


def _reset(c):
    c.abort()
    raise Hangup("reset")


def reset():
    """Closes the connection with a TCP reset."""
    return Step("reset", _reset)


def _silent(c):
    # Never replies: reads (and keeps) whatever comes until the client gives up or the
    # connection's limit passes.
    got = bytearray(c.buf)
    c.buf = b""
    try:
        while True:
            try:
                c._recv()
            except Hangup as h:
                if str(h) == "timeout":
                    with c.peer.cond:   # silence outlasts the read timeout, up to the limit
                        c.silent_timeouts += 1
                        c.peer.cond.notify_all()
                    continue
                raise
            got += c.buf
            c.buf = b""
            c.after_silence = bytes(got[:MAX_DATA])
    finally:
        c.after_silence = bytes(got[:MAX_DATA])


def silent():
    """Never replies again: reads until the client closes (its deadline must fire) or the
    connection's limit; what arrives meanwhile is in conn.after_silence."""
    return Step("silent", _silent)


def endless_line(prefix=b"250-", fill=b"x"):
    """Sends prefix and then `fill` forever without a line end, until the client closes,
    stops reading (the write times out), ENDLESS_MAX octets or the limit. conn.endless_sent
    counts the octets sent."""
    def run(c):
        chunk = fill * (65536 // len(fill))
        c.send(prefix)
        c.endless_sent = len(prefix)
        while c.endless_sent < ENDLESS_MAX:
            c.send(chunk)       # Hangup("send failed") once the client is gone
            c.endless_sent += len(chunk)
        raise Hangup("endless line done")
    return Step("endless_line", run)


def tls_start(reply="220 2.0.0 Ready to start TLS", inject=b""):
    """Answers STARTTLS with `reply` (plus `inject` in the same write) and does the TLS
    handshake."""
    return Step("tls_start", lambda c: c.starttls(reply.encode("latin-1") + b"\r\n" + inject))


def starttls_hang(reply="220 2.0.0 Ready to start TLS"):
    """Answers STARTTLS with 220 and then never takes part in the handshake (silent)."""
    def run(c):
        with c.peer.cond:
            c.tls.started = True
        c.answer(reply)
        _silent(c)
    return Step("starttls_hang", run)


def starttls_inject(extra=b"250 2.0.0 injected before TLS\r\n",
                    reply="220 2.0.0 Ready to start TLS"):
    """Answers STARTTLS with 220 and, in the same write, plaintext `extra` (the command
    injection of CVE-2011-0411 style), then does the handshake."""
    return tls_start(reply, extra)


def serve(greeting=220, caps=DEFAULT_CAPS, caps_tls=None, hostname=None, ehlo=None,
          helo=None, mail=None, rcpt=None, data=None, dot=None, rset=None, quit=None,
          starttls=None, on=None):
    """The standard SMTP server, every reply replaceable by a spec.

    greeting: int code (220; 421 closes after it; 5xx answers 503 to all but QUIT) or spec.
    caps: EHLO keywords (add "STARTTLS", "DSN", "SIZE n" ...); caps_tls: after TLS
      (default caps without STARTTLS). "SIZE n" also refuses MAIL ... SIZE=m > n (552).
    ehlo, helo, mail, data, rset, quit: specs replacing the default replies.
    rcpt: spec for every RCPT, or a dict {address: spec} (case-insensitive; key "*" for
      the others, default 250).
    dot: the reply after the final dot (default 250 with a queue id), e.g. drop().
    starttls: spec for STARTTLS (default tls_start() when caps offer it, else 502).
    on: {VERB: spec} for any other command (or to override one of the above).
    """
    def run(c):
        _Server(c, greeting, caps, caps_tls, hostname, dict(
            EHLO=ehlo, HELO=helo, MAIL=mail, RCPT=rcpt, DATA=data, DOT=dot, RSET=rset,
            QUIT=quit, STARTTLS=starttls), on or {}).run()
    return Step("serve", run)


def _code(reply):
    return reply[:3] if isinstance(reply, str) and reply[:3].isdigit() else None


class _Server:
    def __init__(self, c, greeting, caps, caps_tls, hostname, specs, on):
        self.c = c
        self.host = hostname or c.peer.hostname
        self.greeting = greeting
        self.caps = list(caps)
        self.caps_tls = list(caps_tls) if caps_tls is not None else \
            [k for k in self.caps if k.upper() != "STARTTLS"]
        self.specs = specs
        self.on = {k.upper(): v for k, v in on.items()}
        self.msg = None

    def spec(self, verb):
        if verb in self.on:
            return True, self.on[verb]
        s = self.specs.get(verb)
        return s is not None, s

    def offered(self):
        return self.caps_tls if self.c.tls.established else self.caps

    def size_limit(self):
        for k in self.offered():
            f = k.split()
            if f[0].upper() == "SIZE" and len(f) > 1 and f[1].isdigit() and int(f[1]) > 0:
                return int(f[1])
        return None

    def run(self):
        c = self.c
        g = c.answer(_greeting_text(self.greeting, self.host))
        code = _code(g)
        if code == "421":
            c.close("421 greeting")
            return
        refuse = code is not None and code[0] == "5"
        while True:
            verb, arg = c.read_command()
            if refuse and verb != "QUIT":
                c.answer("503 5.5.1 No SMTP service here")
                continue
            handler = getattr(self, "do_" + verb, None) if verb.isalpha() else None
            if verb in self.on and handler is None:
                c.answer(self.on[verb], arg)
            elif handler:
                handler(arg)
            else:
                c.answer("500 5.5.2 Command not recognized")

    def reply(self, verb, default, arg=None):
        given, s = self.spec(verb)
        return self.c.answer(s if given else default, arg)

    def do_EHLO(self, arg):
        self.c.ehlo = arg.strip()
        self.msg = None
        keys = [f"{self.host} greets {arg.strip()}"] + list(self.offered())
        text = "\n".join(("250 " if i == len(keys) - 1 else "250-") + k
                         for i, k in enumerate(keys))
        self.reply("EHLO", text, arg)

    def do_HELO(self, arg):
        self.c.ehlo = arg.strip()
        self.msg = None
        self.reply("HELO", f"250 {self.host}", arg)

    def do_MAIL(self, arg):
        c = self.c
        if self.msg is not None:
            c.answer("503 5.5.1 Nested MAIL command")
            return
        m = PATH.match(arg)
        if not m or not arg.upper().lstrip().startswith("FROM"):
            c.answer("501 5.5.4 Syntax: MAIL FROM:<address>")
            return
        params = m.group(2).strip()
        limit = self.size_limit()
        size = re.search(r"(?:^|\s)SIZE=(\d+)", params, re.I)
        default = "250 2.1.0 Ok"
        if limit and size and int(size.group(1)) > limit:
            default = "552 5.3.4 Message size exceeds fixed limit"
        r = self.reply("MAIL", default, arg)
        if _code(r) and r[0] == "2":
            self.msg = Message(c, m.group(1), params, "MAIL " + arg)

    def do_RCPT(self, arg):
        c = self.c
        if self.msg is None:
            c.answer("503 5.5.1 Need MAIL command")
            return
        m = PATH.match(arg)
        if not m or not arg.upper().lstrip().startswith("TO"):
            c.answer("501 5.5.4 Syntax: RCPT TO:<address>")
            return
        addr = m.group(1)
        given, s = self.spec("RCPT")
        if isinstance(s, dict):
            low = {k.lower(): v for k, v in s.items()}
            s = low.get(addr.lower(), low.get("*"))
            given = s is not None
        r = c.answer(s if given else "250 2.1.5 Ok", addr)
        with c.peer.cond:
            self.msg.rcpt_replies.append((addr, r))
            if _code(r) and r[0] == "2":
                self.msg.rcpts.append(addr)

    def do_DATA(self, arg):
        c = self.c
        if self.msg is None:
            c.answer("503 5.5.1 Need MAIL command")
            return
        if not self.msg.rcpts:
            c.answer("554 5.5.1 No valid recipients")
            self.msg = None
            return
        msg, self.msg = self.msg, None
        r = self.reply("DATA", "354 End data with <CR><LF>.<CR><LF>", arg)
        if _code(r) != "354":
            return
        with c.peer.cond:
            c.messages.append(msg)
        c._changed()
        try:
            c.read_data(msg)
        finally:
            c._changed()
        c.nqueued += 1
        default = f"250 2.0.0 Ok: queued as FP{c.index}x{c.nqueued}"
        given, s = self.spec("DOT")
        sent = len(c.replies)
        try:
            c.answer(s if given else default, msg)
        finally:
            # The first reply sent after the dot, even when a fault followed it.
            with c.peer.cond:
                if len(c.replies) > sent:
                    msg.dot_reply = c.replies[sent]
                c.peer.cond.notify_all()

    def do_RSET(self, arg):
        self.msg = None
        self.reply("RSET", "250 2.0.0 Ok", arg)

    def do_NOOP(self, arg):
        self.reply("NOOP", "250 2.0.0 Ok", arg)

    def do_VRFY(self, arg):
        self.reply("VRFY", "252 2.0.0 Send some mail, I will try my best", arg)

    def do_QUIT(self, arg):
        self.reply("QUIT", "221 2.0.0 Bye", arg)
        self.c.close("quit")
        raise Hangup("quit")

    def do_STARTTLS(self, arg):
        c = self.c
        given, s = self.spec("STARTTLS")
        if not given:
            if c.tls.established:
                c.answer("503 5.5.1 TLS already active")
                return
            if "STARTTLS" not in [k.upper() for k in self.offered()]:
                c.answer("502 5.5.1 STARTTLS not offered")
                return
            s = tls_start()
        c.answer(s, arg)
        if c.tls.established:
            self.msg = None         # RFC 3207 4.2: forget everything said before TLS
            c.ehlo = None


# ---- the server ---------------------------------------------------------------------

class FakePeer:
    """A fake SMTP server on host:port (port 0: a free one), one thread per connection.

    timeout: seconds for each read or write; limit: seconds a connection may last in all;
    hostname: the name in the default replies; tls_cn: the certificate's CN."""

    def __init__(self, script=None, scripts=None, then=None, host="127.0.0.1", port=0,
                 hostname="peer.test", timeout=30.0, limit=120.0, tls_cn="peer.test"):
        self.host = host
        self.hostname = hostname
        self.timeout = timeout
        self.limit = limit
        self.tls_cn = tls_cn
        self.script = script
        self.scripts = list(scripts or [])
        self.then = then
        self.cond = threading.Condition()
        self._conns = []
        self.failures = []          # tracebacks of exceptions raised by scripts
        self._threads = []
        self._ctx = None
        self._stopping = False
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.listener = socket.socket(fam, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((host, port))
        self.listener.listen(64)
        self.listener.setblocking(False)
        self.port = self.listener.getsockname()[1]
        self._wake_r, self._wake_w = socket.socketpair()
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True,
                                          name=f"fakepeer-{self.port}")
        self._acceptor.start()

    @property
    def hostport(self):
        """"127.0.0.1:PORT" (or "[::1]:PORT")."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def tls_context(self):
        with self.cond:
            if self._ctx is None:
                cert, key = selfsigned_cert(self.tls_cn)
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                ctx.load_cert_chain(cert, key)
                self._ctx = ctx
            return self._ctx

    def script_for(self, index):
        if self.script is not None:
            return self.script
        if index < len(self.scripts):
            return self.scripts[index]
        return self.then if self.then is not None else serve()

    # ---- threads

    def _accept_loop(self):
        sel = selectors.DefaultSelector()
        sel.register(self.listener, selectors.EVENT_READ)
        sel.register(self._wake_r, selectors.EVENT_READ)
        try:
            while not self._stopping:
                for key, _ in sel.select():
                    if key.fileobj is self._wake_r or self._stopping:
                        return
                    try:
                        sock, addr = self.listener.accept()
                    except (BlockingIOError, InterruptedError):
                        continue
                    except OSError:
                        return
                    self._start(sock, addr)
        finally:
            sel.close()

    def _start(self, sock, addr):
        sock.setblocking(True)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.cond:
            conn = Connection(self, len(self._conns), sock, addr[:2])
            self._conns.append(conn)
            t = threading.Thread(target=self._run, args=(conn,), daemon=True,
                                 name=f"fakepeer-{self.port}-{conn.index}")
            self._threads.append(t)
            self.cond.notify_all()
        t.start()

    def _run(self, conn):
        script = self.script_for(conn.index)
        try:
            if isinstance(script, (list, tuple)):
                for step in script:
                    conn.answer(step)
            elif isinstance(script, (Step, str, bytes)):
                conn.answer(script)
            else:
                script(conn)
        except Hangup as h:
            if conn.ended is None:
                conn.ended = str(h)
        except Exception:  # noqa: BLE001 - a harness bug: recorded, the test checks it
            with self.cond:
                self.failures.append(f"connection {conn.index}: {traceback.format_exc()}")
            conn.ended = conn.ended or "script error"
        finally:
            conn.close()
            with self.cond:
                conn.done = True
                self.cond.notify_all()

    # ---- the record (copies, safe while connections run)

    @property
    def connections(self):
        with self.cond:
            return list(self._conns)

    @property
    def count(self):
        """Connections accepted so far."""
        with self.cond:
            return len(self._conns)

    def messages(self):
        """Every Message that reached 354, in connection order."""
        with self.cond:
            return [m for c in self._conns for m in c.messages]

    def accepted(self):
        """Messages the peer answered 2xx after the final dot."""
        return [m for m in self.messages() if m.accepted]

    def deliveries(self):
        """(recipient, content) for every accepted recipient of every accepted message:
        what the client may count as delivered."""
        return [(r.lower(), m.content) for m in self.accepted() for r in m.rcpts]

    def duplicates(self):
        """{(recipient, content): times} for what was accepted more than once."""
        n = collections.Counter(self.deliveries())
        return {k: v for k, v in n.items() if v > 1}

    def wait(self, pred, timeout=10.0):
        """Waits until pred(self) is true (checked on every recorded event); returns it."""
        with self.cond:
            return self.cond.wait_for(lambda: pred(self), timeout)

    def wait_connections(self, n, timeout=10.0):
        """True once n connections were accepted."""
        return self.wait(lambda p: len(p._conns) >= n, timeout)

    def wait_closed(self, n, timeout=10.0):
        """True once n connections were accepted and have ended."""
        return self.wait(lambda p: sum(c.done for c in p._conns) >= n, timeout)

    def wait_messages(self, n, timeout=10.0, accepted=False):
        """True once n messages reached 354 and their data is complete or their
        connection ended (accepted=True: n got a 2xx after the dot)."""
        def enough(p):
            ms = [(m, c) for c in p._conns for m in c.messages]
            if accepted:
                return sum(m.accepted for m, _ in ms) >= n
            return sum(m.dot_reply is not None or c.done for m, c in ms) >= n
        return self.wait(enough, timeout)

    # ---- stop

    def stop(self):
        """Closes the listener and every connection; joins the threads (bounded)."""
        with self.cond:
            if self._stopping:
                return
            self._stopping = True
            conns = list(self._conns)
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass
        self._acceptor.join(5)
        self.listener.close()
        for c in conns:
            try:
                socket.socket.shutdown(c.sock, socket.SHUT_RDWR)
            except (OSError, TypeError, ValueError):
                pass
        for t in list(self._threads):
            t.join(5)
        self._wake_r.close()
        self._wake_w.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


_refused = []


def refused_port(host="127.0.0.1"):
    """A port on host where nothing listens: a connection is refused at once (RST).
    The port stays bound (not listening) by this process, so nothing else takes it."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.bind((host, 0))
    _refused.append(s)
    return s.getsockname()[1]
