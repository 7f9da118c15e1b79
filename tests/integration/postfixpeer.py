"""postfixpeer: real peers from Debian's postfix package, on loopback, for the relay tests.

- Postfix: a throwaway Postfix instance (the part the SMTP benchmark shares): its own
  config_directory, queue_directory and data_directory in a temporary folder (or where
  the caller says), Debian's master.cf with the smtp listener moved to HOST:PORT, every
  other inet service dropped and chroot off, and main.cf settings the caller adds. Its
  master(8) runs in the foreground as a peerutil.Child (SIGKILL when the test dies; its
  daemons exit when the master is gone), never the system-wide instance. Needs root and
  the `postfix` user and `postdrop` group the package creates.
- PostfixPeer: a Postfix that accepts mail for test domains from anyone and delivers each
  recipient's copy to a Maildir file (virtual(8)); delivered() / wait_delivered() return
  Delivery objects: the stored octets and the message as it arrived, CRLF restored.
  Mail for any other domain is refused at RCPT (554 relay access denied).
- SmtpSink: smtp-sink(1) answering 250 to everything, dumping each transaction to a file
  (-d); messages() / wait_messages() parse the dumps (envelope and message).

    with PostfixPeer(domains=["peer.test"]) as pf:
        ... relay_route = peer.test {pf.hostport} ...
        d = pf.wait_delivered("bob@peer.test")[0]
        d.message, d.return_path, d.delivered_to

Both peers store lines with LF and give them back with CRLF: a bare LF the client sent
cannot be told from a CRLF there (and smtp-sink drops every CR). The exact octets on
the wire are fakepeer's job. Standard library only.
"""
import collections
import glob
import grp
import os
import pwd
import re
import socket
import subprocess

from peerutil import Child, selfsigned_cert, wait_until, workdir

POSTFIX = "/usr/sbin/postfix"
POSTCONF = "/usr/sbin/postconf"
SMTP_SINK = "/usr/sbin/smtp-sink"
MASTER_CF = "/etc/postfix/master.cf"


def free_tcp_port(host="127.0.0.1"):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def hostport(host, port):
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def smtp_greets(host, port, timeout=2.0):
    """True when host:port answers with a 220 greeting (then QUIT)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            buf = b""
            while b"\n" not in buf:
                chunk = s.recv(4096)
                if not chunk:
                    return False
                buf += chunk
            s.sendall(b"QUIT\r\n")
            return buf.startswith(b"220")
    except OSError:
        return False


def _run(argv, what, timeout=60):
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if p.returncode != 0:
        raise RuntimeError(f"{what} failed ({p.returncode}): "
                           f"{(p.stderr or p.stdout).strip()[-1500:]}")
    return p.stdout


class Postfix:
    """A throwaway Postfix instance listening on host:port.

    work: the folder for config (work/conf) and, unless given, queue and data (made with
    peerutil.workdir when None). main: extra main.cf settings {name: value}, after the
    base ones (so they override them). maillog: Postfix's log in work/maillog (postlogd),
    or nothing when False (the benchmark: no logging cost)."""

    # The queue folders a message passes through.
    QUEUES = ("maildrop", "incoming", "active", "deferred", "hold", "corrupt")

    def __init__(self, work=None, host="127.0.0.1", port=None, hostname="peer.test",
                 queue_dir=None, data_dir=None, main=None, maillog=True):
        self.work = work or workdir("sharemail-postfix-")
        self.host = host
        self.port = port or free_tcp_port(host)
        self.hostname = hostname
        self.confdir = os.path.join(self.work, "conf")
        self.queue = queue_dir or os.path.join(self.work, "queue")
        self.data = data_dir or os.path.join(self.work, "data")
        self.maillog = os.path.join(self.work, "maillog") if maillog else None
        self.extra = dict(main or {})
        self.child = None

    @property
    def hostport(self):
        return hostport(self.host, self.port)

    def main_settings(self):
        """The main.cf settings {name: value}: Debian's defaults but a private instance."""
        six = ":" in self.host
        m = {"compatibility_level": "3.6",
             "queue_directory": self.queue,
             "data_directory": self.data,
             "mail_owner": "postfix",
             "setgid_group": "postdrop",
             "myhostname": self.hostname,
             "mydomain": self.hostname,
             "myorigin": self.hostname,
             "inet_interfaces": "loopback-only",
             "inet_protocols": "ipv6" if six else "ipv4",
             "mynetworks": "[::1]/128" if six else "127.0.0.0/8",
             "alias_maps": "",
             "alias_database": "",
             "biff": "no",
             "smtpd_banner": "$myhostname ESMTP"}
        if self.maillog:
            m["maillog_file"] = self.maillog
            m["maillog_file_prefixes"] = self.work
        m.update(self.extra)
        return m

    def master_cf(self):
        """Debian's master.cf with the smtp listener on host:port, other inet services
        dropped and chroot off (a chroot would need copies of /etc files)."""
        out = []
        with open(MASTER_CF) as f:
            for line in f:
                if line.startswith("#") or not line.strip():
                    continue
                if line[0].isspace():
                    out.append(line)
                    continue
                fields = line.split()
                if len(fields) < 8:
                    out.append(line)
                    continue
                if fields[:2] == ["smtp", "inet"]:
                    fields[0] = self.hostport
                elif fields[1] == "inet":
                    continue
                fields[4] = "n"
                out.append(" ".join(fields[:7]) + " " + line.split(None, 7)[7])
        return "".join(out)

    def write_conf(self):
        for d in (self.confdir, self.queue, self.data):
            os.makedirs(d, exist_ok=True)
        os.chmod(self.queue, 0o755)
        os.chown(self.data, pwd.getpwnam("postfix").pw_uid, -1)
        with open(os.path.join(self.confdir, "main.cf"), "w") as f:
            for k, v in self.main_settings().items():
                if "\n" in f"{k}{v}":
                    raise ValueError(f"main.cf {k}: a line break in {v!r}")
                f.write(f"{k} = {v}\n")
        with open(os.path.join(self.confdir, "master.cf"), "w") as f:
            f.write(self.master_cf())

    def start(self, timeout=30.0):
        if os.geteuid() != 0:
            raise RuntimeError("a Postfix instance needs root")
        for tool in (POSTFIX, POSTCONF):
            if not os.access(tool, os.X_OK):
                raise RuntimeError(f"{tool} is missing (scripts/install-deps installs postfix)")
        try:
            pwd.getpwnam("postfix")
            grp.getgrnam("postdrop")
        except KeyError as e:
            raise RuntimeError(f"Postfix's user or group is missing: {e}")
        self.write_conf()
        # The compiled-in folders (not set in our main.cf; postconf -c is slow with it).
        dirs = _run([POSTCONF, "-d", "-h", "daemon_directory",
                     "command_directory", "meta_directory"], "postconf").split()
        self.daemon_dir = dirs[0]
        # What `postfix check` does first, without its slow whole-queue scans: the queue's
        # sub-folders with their owners and modes.
        _run([os.path.join(self.daemon_dir, "post-install"), f"config_directory={self.confdir}",
              f"daemon_directory={dirs[0]}", f"command_directory={dirs[1]}",
              f"meta_directory={dirs[2]}", f"queue_directory={self.queue}", "create-missing"],
             "post-install create-missing")
        # Its own session already: the master's setsid() then fails, which it allows.
        self.child = Child([os.path.join(self.daemon_dir, "master"), "-c", self.confdir],
                           os.path.join(self.work, "master.out"))

        def up():
            if not self.child.alive():
                raise RuntimeError(f"postfix master exited {self.child.proc.returncode}:\n"
                                   f"{self.logtext()}")
            return smtp_greets(self.host, self.port, 1.0)
        try:
            wait_until(up, timeout, f"Postfix answering on {self.hostport}")
        except Exception:
            self.stop()
            raise
        return self

    def alive(self):
        return self.child is not None and self.child.alive()

    def logtext(self, tail=4000):
        out = self.child.logtext(tail) if self.child else ""
        if self.maillog:
            try:
                with open(self.maillog, errors="replace") as f:
                    out += f.read()[-tail:]
            except OSError:
                pass
        return out or "(Postfix logs nothing here)"

    def count(self, sub):
        n = 0
        for _, _, files in os.walk(os.path.join(self.queue, sub)):
            n += len(files)
        return n

    def queue_counts(self):
        """{queue folder: number of files} for QUEUES."""
        return {q: self.count(q) for q in self.QUEUES}

    def stop(self):
        """Stops the master and every daemon of the instance (bounded). Idempotent."""
        if self.child:
            self.child.stop()
            self.child = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


Delivery = collections.namedtuple("Delivery", "path raw return_path delivered_to received "
                                  "message")
TRACE = re.compile(rb"^(Return-Path|Delivered-To|X-Original-To):", re.I)


def split_delivery(path, raw, hostname):
    """A Delivery from the octets virtual(8) stored: the header fields Postfix put in front
    (Return-Path, Delivered-To, and its smtpd's Received: ... by HOSTNAME (Postfix)) taken
    off, and the rest with CRLF line ends, as the client sent it."""
    lines = raw.split(b"\n")
    fields = {}
    i = 0
    received = None
    while i < len(lines):
        line = lines[i]
        j = i + 1
        while j < len(lines) and lines[j][:1] in (b" ", b"\t"):
            j += 1
        block = b"\n".join(lines[i:j])
        if TRACE.match(line):
            fields[line.split(b":", 1)[0].decode().lower()] = \
                block.split(b":", 1)[1].strip().decode("latin-1")
        elif line.lower().startswith(b"received:") and \
                f"by {hostname} (Postfix)".encode() in block:
            received = block.decode("latin-1")
            i = j
            break
        else:
            break
        i = j
    rest = b"\n".join(lines[i:])
    return Delivery(path, raw, fields.get("return-path"), fields.get("delivered-to"),
                    received, rest.replace(b"\n", b"\r\n"))


class PostfixPeer(Postfix):
    """Postfix as a relay destination: accepts mail for `domains` (any local part, or only
    `users` when given: others get 550 5.1.1) and delivers each recipient's copy to a
    Maildir under work/mail/DOMAIN/(USER|_all)/. tls=True offers STARTTLS with
    peerutil's throwaway certificate. size_limit: message_size_limit (SIZE)."""

    def __init__(self, domains=("peer.test",), users=None, tls=False, size_limit=10240000,
                 main=None, **kw):
        self.domains = [d.lower() for d in domains]
        self.users = [u.lower() for u in users] if users else None
        self.tls = tls
        self.size_limit = size_limit
        self.user_main = dict(main or {})
        super().__init__(**kw)
        self.mail = os.path.join(self.work, "mail")

    def main_settings(self):
        m = super().main_settings()
        pw = pwd.getpwnam("postfix")
        if self.users:
            maps = [f"{u}={u.split('@')[1]}/{u.split('@')[0]}/" for u in self.users]
        else:
            maps = [f"@{d}={d}/_all/" for d in self.domains]
        for entry in maps:
            if re.search(r"[\s,{}=]", entry.split("=", 1)[0] + entry.split("=", 1)[1]):
                raise ValueError(f"unusable address in {entry!r}")
        m.update({
            "mydestination": "",
            "relay_domains": "",
            "local_recipient_maps": "",
            # Only the test domains: never an open relay, nothing ever sent out.
            "smtpd_relay_restrictions": "reject_unauth_destination",
            "default_transport": "error:5.7.1 this test peer sends nothing out",
            "relay_transport": "error:5.7.1 this test peer sends nothing out",
            # No header rewriting or added Message-ID/Date for loopback clients: what
            # arrives is what is stored.
            "local_header_rewrite_clients": "",
            "message_size_limit": str(self.size_limit),
            "virtual_mailbox_domains": " ".join(self.domains),
            "virtual_mailbox_base": self.mail,
            "virtual_mailbox_maps": "inline:{ " + ", ".join(maps) + " }",
            "virtual_uid_maps": f"static:{pw.pw_uid}",
            "virtual_gid_maps": f"static:{pw.pw_gid}",
            "virtual_minimum_uid": "1",
            "notify_classes": "",
        })
        if self.tls:
            cert, key = selfsigned_cert(self.hostname)
            m.update({"smtpd_tls_cert_file": cert, "smtpd_tls_key_file": key,
                      "smtpd_tls_security_level": "may", "smtpd_tls_loglevel": "1"})
        m.update(self.user_main)
        return m

    def write_conf(self):
        super().write_conf()
        os.makedirs(self.mail, exist_ok=True)
        os.chown(self.mail, pwd.getpwnam("postfix").pw_uid, -1)

    def delivered(self, rcpt=None):
        """Every Delivery so far (for `rcpt` only when given, by Delivered-To), oldest
        first. Maildir files appear whole (tmp/ then rename into new/)."""
        out = []
        files = glob.glob(os.path.join(self.mail, "*", "*", "new", "*"))
        for p in sorted(files, key=lambda p: (os.stat(p).st_mtime_ns, p)):
            with open(p, "rb") as f:
                d = split_delivery(p, f.read(), self.hostname)
            if rcpt is None or (d.delivered_to or "").lower() == rcpt.lower():
                out.append(d)
        return out

    def wait_delivered(self, rcpt=None, count=1, timeout=30.0):
        """Waits (bounded) until `count` deliveries (for rcpt) exist; returns them all.
        Raises TimeoutError with Postfix's log when they do not come."""
        try:
            wait_until(lambda: len(self.delivered(rcpt)) >= count, timeout,
                       f"{count} deliveries for {rcpt or 'anyone'}")
        except TimeoutError as e:
            raise TimeoutError(f"{e}; queues {self.queue_counts()}\n{self.logtext()}")
        return self.delivered(rcpt)


SinkMessage = collections.namedtuple("SinkMessage", "path helo mail_from mail_params rcpts "
                                     "rcpt_params message raw")


def parse_sink_dump(path, raw):
    """A SinkMessage from an smtp-sink -d dump: its X-* records and 3-line Received, then
    the message (stored with LF, dot-unstuffed, every CR dropped) with CRLF restored."""
    lines = raw.split(b"\n")
    helo, mail, rcpts = None, None, []
    i = 0
    while i < len(lines):
        line = lines[i].decode("latin-1")
        if line.startswith("X-Helo-Args: "):
            helo = line[13:]
        elif line.startswith("X-Mail-Args: "):
            mail = line[13:]
        elif line.startswith("X-Rcpt-Args: "):
            rcpts.append(line[13:])
        elif line.startswith("Received: "):
            i += 3      # "Received: from ...", "\tby ... (smtp-sink) ...;", "\tDATE"
            break
        elif not line.startswith(("X-Client-Addr: ", "X-Client-Proto: ")):
            raise ValueError(f"{path}: not an smtp-sink dump at line {i}: {line!r}")
        i += 1
    else:
        raise ValueError(f"{path}: no Received record: an incomplete dump")
    body = b"\n".join(lines[i:])
    if not body.endswith(b"\n"):
        raise ValueError(f"{path}: dump does not end with its empty line")
    body = body[:-1]

    def path_of(args):
        m = re.match(r"\s*<([^>]*)>\s*(.*)$", args or "")
        return (m.group(1), m.group(2)) if m else (args, "")
    mf, mp = path_of(mail)
    rs = [path_of(r) for r in rcpts]
    return SinkMessage(path, helo, mf, mp, [r[0] for r in rs], [r[1] for r in rs],
                       body.replace(b"\n", b"\r\n"), raw)


class SmtpSink:
    """smtp-sink on host:port (250 to everything), dumping each transaction to a file in
    work/dump (-d). options: more smtp-sink flags (e.g. ["-8"]: no 8BITMIME, ["-r",
    "rcpt"]: 4xx to RCPT; see smtp-sink(1)). dump=False: keeps nothing."""

    def __init__(self, host="127.0.0.1", port=None, work=None, hostname="sink.test",
                 options=(), dump=True, backlog=64):
        self.host = host
        self.port = port or free_tcp_port(host)
        self.work = work or workdir("sharemail-sink-")
        self.hostname = hostname
        self.options = list(options)
        self.dump = os.path.join(self.work, "dump") if dump else None
        self.backlog = backlog
        self.child = None

    @property
    def hostport(self):
        return hostport(self.host, self.port)

    def start(self, timeout=15.0):
        if not os.access(SMTP_SINK, os.X_OK):
            raise RuntimeError(f"{SMTP_SINK} is missing (scripts/install-deps installs postfix)")
        argv = [SMTP_SINK, "-h", self.hostname]
        if os.geteuid() == 0:
            argv += ["-u", "postfix"]   # smtp-sink refuses to run as root otherwise
        if self.dump:
            os.makedirs(self.dump, exist_ok=True)
            if os.geteuid() == 0:
                os.chown(self.dump, pwd.getpwnam("postfix").pw_uid, -1)
            argv += ["-d", os.path.join(self.dump, "m.")]
        argv += self.options + [self.hostport, str(self.backlog)]
        self.child = Child(argv, os.path.join(self.work, "sink.out"))

        def up():
            if not self.child.alive():
                raise RuntimeError(f"smtp-sink exited {self.child.proc.returncode}:\n"
                                   f"{self.child.logtext()}")
            return smtp_greets(self.host, self.port, 1.0)
        try:
            wait_until(up, timeout, f"smtp-sink answering on {self.hostport}")
        except Exception:
            self.stop()
            raise
        return self

    def _open_files(self):
        out = set()
        fd_dir = f"/proc/{self.child.pid}/fd" if self.child else None
        for fd in os.listdir(fd_dir) if fd_dir and os.path.isdir(fd_dir) else ():
            try:
                out.add(os.readlink(os.path.join(fd_dir, fd)))
            except OSError:
                pass
        return out

    def messages(self):
        """Every complete transaction so far, oldest first. A dump is complete once
        smtp-sink has closed it: it does so before it sends the 250 after the dot, and
        it deletes the dump of a transaction that ends otherwise."""
        if not self.dump:
            return []
        files = glob.glob(os.path.join(self.dump, "m.*"))
        busy = self._open_files()
        out = []
        for p in sorted(files, key=lambda p: (os.stat(p).st_mtime_ns, p)):
            if p in busy:
                continue
            with open(p, "rb") as f:
                out.append(parse_sink_dump(p, f.read()))
        return out

    def wait_messages(self, count=1, timeout=30.0):
        try:
            wait_until(lambda: len(self.messages()) >= count, timeout,
                       f"{count} smtp-sink messages")
        except TimeoutError as e:
            raise TimeoutError(f"{e}\n{self.child.logtext() if self.child else ''}")
        return self.messages()

    def stop(self):
        if self.child:
            self.child.stop()
            self.child = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
