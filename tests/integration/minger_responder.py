"""minger_responder: a tiny Minger server written in Python for the tests that play a
Domain Sharing peer or a gateway's protected server (standard library only, so it is
independent of sharemail's own code).

Responder(statuses, secret=None, silent=False):
- binds a UDP socket on 127.0.0.1 (responder.port) and answers each query in a thread
  with `mailbox SP status` (draft-hathcock-minger-06 section 3): statuses maps a mailbox
  (compared case-insensitively) to its status, anything else is 3;
- with secret set, a query must carry the matching `d=` digest (base64 of
  MD5(secret ":" mailbox)), else the reply is status 2;
- silent=True answers nothing (a peer that is down but whose port is open);
- records every datagram received (responder.received, a list of bytes) so a test can
  count what a daemon sent: count() includes what is queued on the socket right now,
  so "nothing was sent before the daemon's reply" needs no waiting (on loopback a
  datagram is queued by the time sendto() returns); wait_for(n, timeout) polls for n
  datagrams with a deadline.
Use it as a context manager; leaving stops the thread and closes the socket.
"""
import base64
import hashlib
import select
import socket
import threading
import time


def digest(secret, mailbox):
    """The -06 digest of mailbox for secret (base64 of the raw MD5)."""
    return base64.b64encode(hashlib.md5(f"{secret}:{mailbox}".encode()).digest()).decode()


class Responder:
    def __init__(self, statuses=None, secret=None, silent=False, host="127.0.0.1"):
        self.statuses = {k.lower(): v for k, v in (statuses or {}).items()}
        self.secret = secret
        self.silent = silent
        self.received = []
        self.times = []  # time.monotonic() of each datagram taken from the socket
        self._lock = threading.Lock()
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind((host, 0))
        self._sock.setblocking(False)
        self.port = self._sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _answer(self, data):
        words = data.split(b" ")
        mailbox = words[0].decode("ascii", "replace")
        if self.secret is not None:
            want = b"d=" + digest(self.secret, mailbox).encode()
            if want not in words[1:]:
                return f"{mailbox} 2".encode()
        return f"{mailbox} {self.statuses.get(mailbox.lower(), 3)}".encode()

    def _take(self):
        """Reads and answers every datagram queued now (the caller holds the lock, so a
        datagram is either queued or counted, never in between)."""
        while True:
            try:
                data, src = self._sock.recvfrom(4096)
            except (BlockingIOError, OSError):
                return
            self.received.append(data)
            self.times.append(time.monotonic())
            if not self.silent:
                self._sock.sendto(self._answer(data), src)

    def _run(self):
        while not self._stop.is_set():
            ready, _, _ = select.select([self._sock], [], [], 0.05)
            if ready:
                with self._lock:
                    self._take()

    def count(self):
        """Datagrams received so far, including any already queued on the socket."""
        with self._lock:
            self._take()
            return len(self.received)

    def wait_for(self, n, timeout=10.0):
        """Polls (bounded) until n datagrams were received; returns the count."""
        deadline = time.monotonic() + timeout
        while self.count() < n and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.count()

    def close(self):
        self._stop.set()
        self._thread.join(5)
        self._sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
