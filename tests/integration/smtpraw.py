"""smtpraw: a raw-socket SMTP client for hostile-input tests, and queue/Maildir inspection.

smtplib normalises what it sends (it adds CRLF, dot-stuffs, refuses bare LF), so the
hostile tests talk through plain sockets instead: send exact octets, read replies
with a deadline, parse multi-line replies into Reply(code, enhanced, text, lines).
Only the Python standard library is used.
"""
import collections
import glob
import os
import re
import socket
import time

Reply = collections.namedtuple("Reply", "code enhanced text lines")
# RFC 3463 enhanced status code at the start of the text (RFC 2034).
ENH = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})(?:\s|$)")
LINE = re.compile(rb"^(\d{3})([ -])(.*)$", re.S)


class Closed(Exception):
    """The server closed the connection (or reset it) before a full reply arrived."""


class Timeout(Exception):
    """No complete reply within the deadline."""


class Conn:
    """One SMTP connection. Every read has a deadline; nothing blocks forever."""

    def __init__(self, port, host="127.0.0.1", source=None, timeout=10.0, greet=True):
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(fam, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if source:
            self.sock.bind((source, 0))
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.timeout = timeout
        self.buf = b""
        self.eof = False
        self.greeting = self.reply() if greet else None

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def send(self, data):
        """Sends octets exactly (str is encoded as latin-1). False if the peer is gone."""
        if isinstance(data, str):
            data = data.encode("latin-1")
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise Timeout()
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(65536)
        except socket.timeout:
            raise Timeout()
        except (ConnectionResetError, BrokenPipeError):
            self.eof = True
            raise Closed()
        if not chunk:
            self.eof = True
            raise Closed()
        self.buf += chunk

    def reply(self, timeout=None):
        """Reads one (possibly multi-line) reply; raises Closed or Timeout."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        lines = []
        while True:
            while b"\r\n" not in self.buf:
                if len(self.buf) > 1 << 20:
                    raise ValueError("reply line over 1 MiB")
                self._fill(deadline)
            line, self.buf = self.buf.split(b"\r\n", 1)
            m = LINE.match(line)
            if not m:
                raise ValueError(f"malformed reply line {line!r}")
            lines.append(line.decode("latin-1"))
            if m.group(2) == b" ":
                code = int(m.group(1))
                text = m.group(3).decode("latin-1")
                e = ENH.match(text)
                return Reply(code, e.group(0).strip() if e else None, text, lines)

    def reply_or_none(self, timeout=None):
        """A reply, or None when the connection closed or the deadline passed."""
        try:
            return self.reply(timeout)
        except (Closed, Timeout):
            return None

    def cmd(self, line, timeout=None):
        """Sends one command line (CRLF added) and returns its reply (None if closed)."""
        if not self.send(line + "\r\n" if isinstance(line, str) else line + b"\r\n"):
            return None
        return self.reply_or_none(timeout)

    def replies(self, n, timeout=None):
        """Up to n replies; stops early (shorter list) when the connection ends."""
        out = []
        for _ in range(n):
            r = self.reply_or_none(timeout)
            if r is None:
                break
            out.append(r)
        return out

    def drain(self, timeout=1.0):
        """Every reply that arrives within timeout (stops at EOF or silence)."""
        out = []
        while True:
            r = self.reply_or_none(timeout)
            if r is None:
                return out
            out.append(r)

    def wait_closed(self, timeout=10.0):
        """True once the server has closed the connection within timeout (data read is kept)."""
        deadline = time.monotonic() + timeout
        while not self.eof:
            try:
                self._fill(deadline)
            except Closed:
                return True
            except Timeout:
                return False
        return True

    def is_open(self, timeout=2.0):
        """True if the server still answers NOOP with 250."""
        r = self.cmd("NOOP", timeout)
        return r is not None and r.code == 250


def digit(r):
    """The first digit of a reply code (0 for no reply)."""
    return r.code // 100 if r else 0


def enh_class(r):
    """The enhanced-code class digit as int (2, 4, 5) or None."""
    return int(r.enhanced[0]) if r and r.enhanced else None


def consistent(r):
    """A reply whose enhanced code (if any) has the same class as its code."""
    return r is not None and (r.enhanced is None or enh_class(r) == digit(r))


def ehlo(c, name="client.test"):
    return c.cmd(f"EHLO {name}")


def send_mail(port, mail_from, rcpts, body, source=None, helo="client.test"):
    """A well-formed transaction. Returns the list of replies (MAIL, RCPT..., DATA, dot)."""
    with Conn(port, source=source) as c:
        out = [ehlo(c, helo), c.cmd(f"MAIL FROM:<{mail_from}>")]
        for r in rcpts:
            out.append(c.cmd(f"RCPT TO:<{r}>"))
        d = c.cmd("DATA")
        out.append(d)
        if d and d.code == 354:
            data = body if isinstance(body, bytes) else body.encode("latin-1")
            c.send(data + b".\r\n")
            out.append(c.reply_or_none(30))
        c.cmd("QUIT")
        return out


def message(marker, extra_headers="", body="hello\r\n"):
    return (f"From: sender@client.test\r\nTo: bob@example.com\r\nSubject: {marker}\r\n"
            f"Message-ID: <{marker}@client.test>\r\n{extra_headers}\r\n{body}")


# ---- queue and mailbox inspection -------------------------------------------------

def queue_files(state, sub="msg"):
    """Names of regular files in <state>/queue/<sub>/ (recursively)."""
    root = os.path.join(state, "queue", sub)
    out = []
    for dp, _, fns in os.walk(root):
        out.extend(os.path.join(dp, f) for f in fns)
    return sorted(out)


def maildir_files(state):
    """Every delivered message file: <state>/mail/<domain>/<user>/Maildir/{new,cur}/*."""
    out = []
    for sub in ("new", "cur"):
        out.extend(glob.glob(os.path.join(state, "mail", "*", "*", "Maildir", sub, "*")))
    return sorted(out)


def read(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


def find_marker(state, marker, where="both"):
    """Files (queue or Maildir) whose content holds marker (bytes or str)."""
    if isinstance(marker, str):
        marker = marker.encode("latin-1")
    files = []
    if where in ("both", "maildir"):
        files += maildir_files(state)
    if where in ("both", "queue"):
        files += queue_files(state)
    return [p for p in files if marker in read(p)]


def wait_for(pred, timeout=10.0, step=0.05):
    """Polls pred() until truthy or timeout; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() >= deadline:
            return v
        time.sleep(step)


def rss_kib(pid):
    """VmRSS of a process in KiB (from /proc/PID/status)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def restart(d, extra_env=None, wait_port=True):
    """Restarts a smtest.Daemon. Daemon.start() waits for "sharemaild ready" in the log,
    which an earlier run already wrote, so the old log is set aside first; then waits
    until the SMTP port (d.port) accepts a connection."""
    d.stop()
    start(d, extra_env, wait_port)


def start(d, extra_env=None, wait_port=True):
    """Starts a stopped (or killed) smtest.Daemon; see restart()."""
    if getattr(d, "log", None):
        d.log.close()
    if os.path.exists(d.log_path):
        with open(d.log_path, "rb") as f:
            old = f.read()
        with open(d.log_path + ".old", "ab") as f:
            f.write(old)
        os.unlink(d.log_path)
    d.start(extra_env=extra_env)
    if wait_port and getattr(d, "port", None):
        def connectable():
            try:
                with socket.create_connection(("127.0.0.1", d.port), 0.5):
                    return True
            except OSError:
                return False
        wait_for(connectable, 10)
