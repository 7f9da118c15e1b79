"""faultpop3: a scripted POP3 server for the collector's fault tests (test_collect_faults.py).

It keeps a mailbox (uid, octets) across connections and applies deletions only at QUIT
(RFC 1939 6), so a test can check that nothing was lost and nothing came twice after a
faulty session followed by a clean one. `faults` is a set of words; each applies to the
first session only (later ones are clean) unless `always` holds it:
  endless-data   RETR 1 answers +OK and sends data lines that never end
  silent-data    RETR 1 answers +OK, sends a few lines, then nothing
  drop-retr      RETR 1 sends half of the message, then closes the connection
  lie-size       LIST gives message 1 as 100 octets (it is larger)
  dup-uidl       UIDL gives message 2 the unique-id of message 1
  stls           offers STLS; with neither of the next two, a real TLS handshake follows
  stls-silent    STLS answers "+OK begin TLS" and then nothing (no handshake)
  stls-inject    "+OK begin TLS" and "+OK injected" in one write, then the handshake
Records what it saw: self.commands (per session), self.pass_in_clear.
"""
import socket
import ssl
import threading
import time


class FaultPop3:
    def __init__(self, messages, faults=(), always=(), certfile=None, keyfile=None):
        self.msgs = [[f"U{i + 1}", m, False] for i, m in enumerate(messages)]  # uid, data, gone
        self.faults = set(faults)
        self.always = set(always)
        self.sessions = 0
        self.commands = []
        self.pass_in_clear = False
        self.ctx = None
        if certfile:
            self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.ctx.load_cert_chain(certfile, keyfile)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.stopping = False
        self.t = threading.Thread(target=self._serve, daemon=True)
        self.t.start()

    def left(self):
        """The messages still in the mailbox (octets)."""
        return [m[1] for m in self.msgs if not m[2]]

    def stop(self):
        self.stopping = True
        try:
            self.sock.close()
        except OSError:
            pass

    def _serve(self):
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.sessions += 1
            active = self.always | (self.faults if self.sessions == 1 else set())
            threading.Thread(target=self._session, args=(c, active), daemon=True).start()

    def _session(self, c, faults):
        cmds = []
        self.commands.append(cmds)
        c.settimeout(60)
        conn = {"s": c, "buf": b"", "tls": False}
        try:
            self._dialog(conn, faults, cmds)
        except (OSError, ssl.SSLError, ValueError):
            pass
        finally:
            try:
                conn["s"].close()
            except OSError:
                pass

    def _send(self, conn, data):
        conn["s"].sendall(data)

    def _line(self, conn):
        while b"\r\n" not in conn["buf"]:
            d = conn["s"].recv(65536)
            if not d:
                raise ValueError("closed")
            conn["buf"] += d
        line, conn["buf"] = conn["buf"].split(b"\r\n", 1)
        return line.decode("latin-1")

    def _listed(self):
        return [(i + 1, m) for i, m in enumerate(self.msgs)]

    def _dialog(self, conn, faults, cmds):
        self._send(conn, b"+OK fault server ready\r\n")
        deleting = set()
        while True:
            line = self._line(conn)
            cmds.append(line.split(" ")[0].upper() if not line.upper().startswith("PASS")
                        else "PASS")
            verb, _, arg = line.partition(" ")
            verb = verb.upper()
            if verb == "CAPA":
                caps = b"USER\r\nUIDL\r\nPIPELINING\r\n"
                if "stls" in faults or "stls-silent" in faults or "stls-inject" in faults:
                    caps += b"STLS\r\n" if not conn["tls"] else b""
                self._send(conn, b"+OK\r\n" + caps + b".\r\n")
            elif verb == "STLS":
                if "stls-silent" in faults:
                    self._send(conn, b"+OK begin TLS\r\n")
                    time.sleep(30)
                    return
                extra = b"+OK injected\r\n" if "stls-inject" in faults else b""
                self._send(conn, b"+OK begin TLS\r\n" + extra)
                conn["s"] = self.ctx.wrap_socket(conn["s"], server_side=True)
                conn["buf"] = b""
                conn["tls"] = True
            elif verb == "USER":
                self._send(conn, b"+OK\r\n")
            elif verb == "PASS":
                if not conn["tls"]:
                    self.pass_in_clear = True
                self._send(conn, b"+OK logged in\r\n")
            elif verb == "STAT":
                live = [m for m in self.msgs]
                self._send(conn, f"+OK {len(live)} {sum(len(m[1]) for m in live)}\r\n".encode())
            elif verb == "LIST":
                out = b"+OK\r\n"
                for n, m in self._listed():
                    size = 100 if (n == 1 and "lie-size" in faults) else len(m[1])
                    out += f"{n} {size}\r\n".encode()
                self._send(conn, out + b".\r\n")
            elif verb == "UIDL":
                out = b"+OK\r\n"
                for n, m in self._listed():
                    uid = self.msgs[0][0] if (n == 2 and "dup-uidl" in faults) else m[0]
                    out += f"{n} {uid}\r\n".encode()
                self._send(conn, out + b".\r\n")
            elif verb == "RETR":
                self._retr(conn, int(arg), faults)
            elif verb == "DELE":
                deleting.add(int(arg))
                self._send(conn, b"+OK marked\r\n")
            elif verb == "NOOP":
                self._send(conn, b"+OK\r\n")
            elif verb == "QUIT":
                for n in deleting:
                    self.msgs[n - 1][2] = True
                self.msgs = [m for m in self.msgs if not m[2]]
                self._send(conn, b"+OK bye\r\n")
                return
            else:
                self._send(conn, b"-ERR unknown\r\n")

    def _retr(self, conn, n, faults):
        data = self.msgs[n - 1][1]
        stuffed = b"".join((b"." + ln if ln.startswith(b".") else ln)
                           for ln in data.splitlines(keepends=True))
        if n == 1 and "endless-data" in faults:
            self._send(conn, b"+OK\r\n")
            while True:
                self._send(conn, b"endless line of data\r\n" * 512)
        if n == 1 and "silent-data" in faults:
            self._send(conn, b"+OK\r\n" + stuffed[:200])
            time.sleep(30)
            raise ValueError("silent")
        if n == 1 and "drop-retr" in faults:
            self._send(conn, b"+OK\r\n" + stuffed[:len(stuffed) // 2])
            raise ValueError("dropped")
        self._send(conn, f"+OK {len(data)} octets\r\n".encode() + stuffed + b".\r\n")
