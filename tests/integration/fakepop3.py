"""fakepop3: a scripted fake POP3 server on loopback (RFC 1939, CAPA, STLS, APOP), for the
collector's fault tests: a well-behaved server by default, and every fault the collector
must survive on request.

    box = Mailbox([b"Subject: one\\r\\n\\r\\nhi\\r\\n", (b"...", "uid-2")])
    with FakePop3(box, users={"isp": "secret"}, faults={"retr_drop": {2}}) as srv:
        ... point the collector (or build/tests/pop3c-drive) at srv.host, srv.port ...
        srv.wait_closed(1, timeout=10)
        conn = srv.connections[0]     # what happened on connection 0
        box.uids()                    # what is left: deletions happen only at QUIT

The Mailbox outlives connections, as an ISP's maildrop does: DELE marks a message, and
only a QUIT in the TRANSACTION state removes the marked ones (RFC 1939 6, UPDATE); a
connection that drops deletes nothing. Several FakePop3 runs (or connections) may share
one Mailbox, so a test can collect, crash, and collect again.

Options of FakePop3 (all keyword arguments):
  users        {name: password} (default {"isp": "secret"}); USER/PASS and APOP check them
  greeting     the greeting's text (default "fakepop3 ready" and an APOP timestamp)
  apop         1: the greeting has a timestamp and APOP works (default); 0: neither
  capa         the CAPA lines (default USER UIDL TOP PIPELINING RESP-CODES, plus STLS when
               tls="starttls"); None: CAPA answers -ERR (an RFC 1939 server)
  tls          None, "starttls" (STLS offered) or "implicit" (TLS at accept); a throwaway
               self-signed certificate (peerutil.selfsigned_cert) unless cert=(cert, key)
  faults       {name: value}, see FAULTS below
  hook         f(conn, verb, arg) called for every command before the server answers it:
               return None to answer normally, bytes to send exactly those octets instead,
               a str to send that line (CRLF added), or raise Hangup to end the connection
  timeout      seconds a read or write may take (default 10); limit: seconds per connection
  fault_sessions  None: the faults apply to every connection (default); k: only to the
               first k connections, later ones are clean (a faulty session, then a clean
               one that must collect everything once)

FAULTS (a set of message numbers where it says n):
  stls_silence     after "+OK Begin TLS" say nothing and never start TLS
  stls_inject      bytes sent in plaintext in the same write as "+OK Begin TLS" (then TLS)
  retr_endless     {n}: RETR n sends +OK, then data lines forever (never the final "."),
                   until the client closes (or `endless_max` octets, default 64 MiB)
  retr_stall       {n}: RETR n sends +OK and half the message, then nothing more
  retr_drop        {n}: RETR n sends +OK and half the message, then closes the connection
  retr_err         {n}: RETR n answers -ERR (the message vanished)
  list_size        {n: size}: LIST (and STAT) report that size for message n (lying sizes)
  uidl             {n: uid}: UIDL reports that unique-id for n (repeated UIDLs)
  login            "in-use" | "login-delay" | "auth": PASS/APOP answer -ERR with that code
  dele_err         {n}: DELE n answers -ERR
  quit_err         QUIT answers -ERR and deletes nothing
  drop_after_quit  QUIT: delete, then close without the +OK
  greeting_err     the greeting is -ERR

Recorded per connection (Connection): `commands` (decoded lines as received, PASS and APOP
arguments replaced by "***"), `lines` (raw octets with their terminator), `errors`
(protocol slips of the client: a bare LF or CR, a line over 255 octets, octets after STLS
before the handshake), `tls` (the session ran over TLS), `ended` ("quit", "dropped",
"fault", "client closed", "timeout", ...), `deleted` (uids removed by its QUIT),
`retrieved` (message numbers whose RETR data was sent whole). FakePop3.failures holds
exceptions raised inside the server (a harness bug: tests check it is empty).

Standard library only; every socket has a timeout; stop() (or leaving the `with`)
closes the listener and every connection. Waits use a condition variable.
"""
import hashlib
import socket
import ssl
import threading
import time
import traceback

from peerutil import selfsigned_cert

MAX_LINE = 255          # RFC 2449 4: a command line is at most 255 octets
ENDLESS_MAX = 64 << 20  # retr_endless stops after this many octets anyway


class Hangup(Exception):
    """The connection is over (client closed, timeout, or a fault ended it)."""


class Mailbox:
    """An ISP maildrop: messages (CRLF bytes) with unique-ids, shared by connections.
    Entries are bytes (uid "m<k>" for the k-th message ever added) or (bytes, uid)."""

    def __init__(self, messages=()):
        self.lock = threading.Lock()
        self.items = []  # [uid, bytes]
        self.added = 0
        self.locked_by = None
        for m in messages:
            self.add(m)

    def add(self, m):
        with self.lock:
            self.added += 1
            data, uid = (m if isinstance(m, tuple) else (m, f"m{self.added}"))
            self.items.append([uid, bytes(data)])

    def uids(self):
        with self.lock:
            return [u for u, _ in self.items]

    def snapshot(self):
        with self.lock:
            return [(u, d) for u, d in self.items]

    def remove(self, uids):
        with self.lock:
            self.items = [it for it in self.items if it[0] not in uids]


def stuff(data):
    """RFC 1939 3: the multi-line form of data (CRLF lines): dots doubled, then ".CRLF"."""
    lines = data.split(b"\r\n")
    if lines and lines[-1] == b"":
        lines.pop()
    out = b"".join((b"." + l if l.startswith(b".") else l) + b"\r\n" for l in lines)
    return out + b".\r\n"


class Connection:
    def __init__(self, srv, index, sock):
        self.srv = srv
        self.index = index
        self.sock = sock
        self.buf = b""
        self.commands = []
        self.lines = []
        self.errors = []
        self.tls = False
        self.ended = None
        self.deleted = []
        self.retrieved = []
        self.state = "AUTHORIZATION"
        self.user = None
        self.marked = set()
        self.view = []  # the maildrop as this session sees it: [(uid, data)]
        self.start = time.monotonic()
        k = srv.fault_sessions
        self.faults = srv.faults if k is None or index < k else {}

    # ---- octets ----

    def recv(self):
        if self.srv.limit and time.monotonic() - self.start > self.srv.limit:
            raise Hangup("limit")
        try:
            d = self.sock.recv(65536)
        except socket.timeout:
            raise Hangup("timeout")
        except (OSError, ssl.SSLError):
            raise Hangup("client closed")
        if not d:
            raise Hangup("client closed")
        return d

    def read_line(self):
        while b"\n" not in self.buf:
            if len(self.buf) > MAX_LINE + 2:
                self.errors.append("line over 255 octets")
                raise Hangup("fault")
            self.buf += self.recv()
        line, self.buf = self.buf.split(b"\n", 1)
        line += b"\n"
        self.lines.append(line)
        if not line.endswith(b"\r\n"):
            self.errors.append("bare LF")
        body = line.rstrip(b"\r\n")
        if b"\r" in body:
            self.errors.append("bare CR")
        return body.decode("latin-1")

    def send(self, data):
        if isinstance(data, str):
            data = (data + "\r\n").encode("latin-1")
        try:
            self.sock.sendall(data)
        except (OSError, ssl.SSLError):
            raise Hangup("client closed")

    # ---- the session ----

    def run(self):
        f = self.faults
        if self.srv.tls == "implicit":
            self.start_tls()
        if "greeting_err" in f:
            self.send("-ERR [SYS/TEMP] not now")
            raise Hangup("fault")
        ts = f" <{self.index}.{int(time.time())}@fakepop3.test>" if self.srv.apop else ""
        self.timestamp = ts.strip()
        self.send("+OK " + self.srv.greeting + ts)
        while True:
            line = self.read_line()
            verb, _, arg = line.partition(" ")
            verb = verb.upper()
            shown = f"{verb} ***" if verb in ("PASS", "APOP") and arg else line
            if verb == "APOP":
                shown = "APOP " + arg.split(" ")[0] + " ***"
            self.commands.append(shown)
            if self.srv.hook is not None:
                r = self.srv.hook(self, verb, arg)
                if r is not None:
                    self.send(r)
                    continue
            handler = getattr(self, "do_" + verb.lower(), None)
            if handler is None:
                self.send("-ERR unknown command")
                continue
            if handler(arg) == "end":
                return

    def start_tls(self):
        cert, key = self.srv.cert
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        try:
            self.sock = ctx.wrap_socket(self.sock, server_side=True)
        except (OSError, ssl.SSLError) as e:
            self.errors.append(f"TLS handshake failed: {e}")
            raise Hangup("tls failed")
        self.tls = True

    def need(self, state):
        if self.state != state:
            self.send("-ERR not in this state")
            return False
        return True

    def do_capa(self, arg):
        caps = self.srv.capa
        if caps is None:
            self.send("-ERR unknown command")
            return
        lines = list(caps)
        if self.srv.tls == "starttls" and not self.tls and self.state == "AUTHORIZATION":
            lines.append("STLS")
        self.send("+OK Capability list follows\r\n" + "".join(l + "\r\n" for l in lines) + ".")

    def do_stls(self, arg):
        f = self.faults
        if self.srv.tls != "starttls" or self.tls or not self.need("AUTHORIZATION"):
            if self.srv.tls != "starttls" or self.tls:
                self.send("-ERR STLS not available")
            return
        if "stls_silence" in f:
            self.send("+OK Begin TLS negotiation now")
            # Hold the connection silent until the client gives up.
            while True:
                self.recv()
        inject = f.get("stls_inject", b"")
        self.send(b"+OK Begin TLS negotiation now\r\n" + inject)
        if self.buf:
            self.errors.append("octets after STLS before the handshake")
            self.buf = b""
        self.start_tls()

    def do_user(self, arg):
        if self.need("AUTHORIZATION"):
            self.user = arg
            self.send("+OK")

    def login_ok(self, user):
        f = self.faults
        code = {"in-use": "[IN-USE] mailbox locked", "login-delay": "[LOGIN-DELAY] wait",
                "auth": "[AUTH] invalid credentials"}.get(f.get("login"))
        if code:
            self.send("-ERR " + code)
            return
        box = self.srv.mailbox
        with box.lock:
            if box.locked_by is not None:
                self.send("-ERR [IN-USE] another session holds the maildrop")
                return
            box.locked_by = self
            self.view = [(u, d) for u, d in box.items]
        self.state = "TRANSACTION"
        self.send(f"+OK {len(self.view)} messages")

    def do_pass(self, arg):
        if not self.need("AUTHORIZATION"):
            return
        if self.user is None or self.srv.users.get(self.user) != arg:
            self.send("-ERR [AUTH] invalid user or password")
            return
        self.login_ok(self.user)

    def do_apop(self, arg):
        if not self.need("AUTHORIZATION"):
            return
        name, _, digest = arg.partition(" ")
        pw = self.srv.users.get(name)
        want = hashlib.md5((self.timestamp + (pw or "")).encode()).hexdigest()
        if not self.srv.apop or pw is None or digest != want:
            self.send("-ERR [AUTH] APOP failed")
            return
        self.login_ok(name)

    def size_of(self, n):
        return self.faults.get("list_size", {}).get(n, len(self.view[n - 1][1]))

    def msg(self, arg):
        try:
            n = int(arg)
        except ValueError:
            self.send("-ERR bad message number")
            return None
        if n < 1 or n > len(self.view) or n in self.marked:
            self.send("-ERR no such message")
            return None
        return n

    def live(self):
        return [n for n in range(1, len(self.view) + 1) if n not in self.marked]

    def do_stat(self, arg):
        if self.need("TRANSACTION"):
            live = self.live()
            self.send(f"+OK {len(live)} {sum(self.size_of(n) for n in live)}")

    def do_list(self, arg):
        if not self.need("TRANSACTION"):
            return
        if arg:
            n = self.msg(arg)
            if n:
                self.send(f"+OK {n} {self.size_of(n)}")
            return
        self.send("+OK\r\n" + "".join(f"{n} {self.size_of(n)}\r\n" for n in self.live()) + ".")

    def do_uidl(self, arg):
        if not self.need("TRANSACTION"):
            return
        uid = lambda n: self.faults.get("uidl", {}).get(n, self.view[n - 1][0])  # noqa
        if arg:
            n = self.msg(arg)
            if n:
                self.send(f"+OK {n} {uid(n)}")
            return
        self.send("+OK\r\n" + "".join(f"{n} {uid(n)}\r\n" for n in self.live()) + ".")

    def do_retr(self, arg):
        if not self.need("TRANSACTION"):
            return
        n = self.msg(arg)
        if not n:
            return
        f = self.faults
        data = stuff(self.view[n - 1][1])
        if n in f.get("retr_err", ()):
            self.send("-ERR [SYS/TEMP] message vanished")
            return
        if n in f.get("retr_endless", ()):
            self.send("+OK here it comes")
            sent = 0
            line = b"X" * 76 + b"\r\n"
            while sent < self.srv.endless_max:
                self.send(line * 64)
                sent += len(line) * 64
            raise Hangup("fault")
        if n in f.get("retr_stall", ()) or n in f.get("retr_drop", ()):
            self.send(b"+OK partial\r\n" + data[: len(data) // 2])
            if n in f.get("retr_drop", ()):
                raise Hangup("fault")
            while True:
                self.recv()
        self.send(b"+OK " + str(len(self.view[n - 1][1])).encode() + b" octets\r\n" + data)
        self.retrieved.append(n)

    def do_top(self, arg):
        if not self.need("TRANSACTION"):
            return
        a = arg.split()
        n = self.msg(a[0] if a else "")
        if n:
            head = self.view[n - 1][1].split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
            self.send(b"+OK\r\n" + stuff(head))

    def do_dele(self, arg):
        if not self.need("TRANSACTION"):
            return
        n = self.msg(arg)
        if not n:
            return
        if n in self.faults.get("dele_err", ()):
            self.send("-ERR [SYS/PERM] cannot delete")
            return
        self.marked.add(n)
        self.send(f"+OK message {n} deleted")

    def do_rset(self, arg):
        if self.need("TRANSACTION"):
            self.marked.clear()
            self.send("+OK")

    def do_noop(self, arg):
        if self.need("TRANSACTION"):
            self.send("+OK")

    def do_quit(self, arg):
        f = self.faults
        if self.state == "TRANSACTION":
            if "quit_err" in f:
                self.send("-ERR [SYS/TEMP] some messages were not deleted")
                self.ended = "quit"
                return "end"
            # RFC 1939 6: the UPDATE state removes the marked messages.
            uids = [self.view[n - 1][0] for n in sorted(self.marked)]
            self.srv.mailbox.remove(set(uids))
            self.deleted = uids
            if "drop_after_quit" in f:
                raise Hangup("fault")
        self.send("+OK bye")
        self.ended = "quit"
        return "end"


class FakePop3:
    def __init__(self, mailbox=None, users=None, greeting="fakepop3 ready", apop=1,
                 capa=("USER", "UIDL", "TOP", "PIPELINING", "RESP-CODES"), tls=None,
                 cert=None, faults=None, hook=None, host="127.0.0.1", port=0, timeout=10,
                 limit=120, endless_max=ENDLESS_MAX, fault_sessions=None):
        self.mailbox = mailbox if mailbox is not None else Mailbox()
        self.users = users if users is not None else {"isp": "secret"}
        self.greeting = greeting
        self.apop = apop
        self.capa = capa
        self.tls = tls
        self.cert = cert or (selfsigned_cert("pop.isp.test") if tls else None)
        self.faults = faults or {}
        self.fault_sessions = fault_sessions
        self.hook = hook
        self.timeout = timeout
        self.limit = limit
        self.endless_max = endless_max
        self.connections = []
        self.failures = []
        self.cond = threading.Condition()
        self.closed = 0
        self.listener = socket.create_server((host, port))
        self.listener.settimeout(0.2)
        self.host, self.port = self.listener.getsockname()[:2]
        self.hostport = f"{self.host}:{self.port}"
        self.stopping = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.stopping:
            try:
                sock, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            sock.settimeout(self.timeout)
            with self.cond:
                conn = Connection(self, len(self.connections), sock)
                self.connections.append(conn)
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn):
        try:
            conn.run()
        except Hangup as h:
            conn.ended = conn.ended or str(h) or "dropped"
        except Exception:  # a harness bug: recorded, the test checks failures
            self.failures.append(traceback.format_exc())
            conn.ended = conn.ended or "server error"
        finally:
            box = self.mailbox
            with box.lock:
                if box.locked_by is conn:
                    box.locked_by = None
            try:
                conn.sock.close()
            except OSError:
                pass
            with self.cond:
                self.closed += 1
                self.cond.notify_all()

    def wait_closed(self, n=1, timeout=10):
        """True once n connections have ended (within timeout seconds)."""
        with self.cond:
            return self.cond.wait_for(lambda: self.closed >= n, timeout)

    def stop(self):
        self.stopping = True
        try:
            self.listener.close()
        except OSError:
            pass
        for c in list(self.connections):
            try:
                c.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.thread.join(2)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()
