"""dovecotrun: a private Dovecot for tests and benchmarks, the one place that knows how to
start one: Debian's dovecot binary as a non-daemon process (`dovecot -F`) with its own
config in a folder the caller names, one inet listener on a free loopback port, and
stopped (and its folder left to the caller) when done.

    dv = Dovecot(folder, "pop3", "maildir:/x/Maildir", home="/x",
                 settings="pop3_uidl_format = %f", mail_trees=["/x"]).start()
    ... talk to 127.0.0.1:dv.port ...
    dv.stop()

Users: a static passdb (any name, `password`) and a static userdb: every login gets
`mail_location` (which may use %d and %n) and `home`. Dovecot refuses to run mail
processes as uid 0: as root the userdb names the `dovecot` system user, each folder of
`mail_trees` is handed to that user and its parents are made traversable; as an
ordinary user everything runs under the current uid. Used by isp_pop3.py (the ISP of the
DomainPOP tests and bench/collect), test_delivery_dovecot.py (IMAP over our Maildirs)
and bench/pop3 (the reference POP3 server).
"""
import os
import pwd
import shutil
import socket
import subprocess
import time

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
LISTENERS = {"pop3": ("pop3-login", "pop3", "pop3s"), "imap": ("imap-login", "imap", "imaps")}


def free_tcp_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def installed(protocol):
    """None when Dovecot serving `protocol` is installed here, else why not."""
    if not os.path.exists(DOVECOT):
        return f"dovecot is not installed (dovecot-{protocol}d)"
    if not os.path.exists(f"/usr/lib/dovecot/{protocol}"):
        return f"dovecot-{protocol}d is not installed"
    return None


class Dovecot:
    """A throwaway Dovecot serving one protocol ("pop3" or "imap") on 127.0.0.1:port."""

    def __init__(self, folder, protocol, mail_location, home, password, settings="",
                 mail_trees=()):
        self.dir = folder
        for d in ("base", "state"):
            os.makedirs(os.path.join(folder, d), exist_ok=True)
        self.protocol = protocol
        self.port = free_tcp_port()
        self.log = os.path.join(folder, "dovecot.log")
        self.conf = os.path.join(folder, "dovecot.conf")
        self.proc = None
        self.out = None
        if os.geteuid() == 0:
            pw = pwd.getpwnam("dovecot")
            self.uid, self.gid, internal, login = pw.pw_uid, pw.pw_gid, "dovecot", "dovenull"
        else:
            self.uid, self.gid = os.getuid(), os.getgid()
            internal = login = pwd.getpwuid(self.uid).pw_name
        for tree in mail_trees:
            self.hand_over(tree)
        service, plain, tls = LISTENERS[protocol]
        # Both login services run without a chroot (the folders are the caller's).
        others = "".join(f"service {s} {{\n  chroot =\n}}\n"
                         for s, _, _ in LISTENERS.values() if s != service)
        with open(self.conf, "w") as f:
            f.write(f"""protocols = {protocol}
listen = 127.0.0.1
base_dir = {folder}/base
state_dir = {folder}/state
log_path = {self.log}
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
mail_location = {mail_location}
{settings}
default_internal_user = {internal}
default_login_user = {login}
first_valid_uid = 1
first_valid_gid = 0
passdb {{
  driver = static
  args = password={password}
}}
userdb {{
  driver = static
  args = uid={self.uid} gid={self.gid} home={home}
}}
service {service} {{
  chroot =
  inet_listener {plain} {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener {tls} {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
{others}""")

    def hand_over(self, tree):
        """As root: `tree` (and everything in it) belongs to the mail uid, and the folders
        above it let that uid through. A no-op for an ordinary user."""
        if os.geteuid() != 0:
            return
        for root, dirs, files in os.walk(tree):
            for n in dirs + files:
                os.chown(os.path.join(root, n), self.uid, self.gid)
        os.chown(tree, self.uid, self.gid)
        p = os.path.dirname(os.path.abspath(tree))
        while p not in ("/", "/tmp"):
            os.chmod(p, os.stat(p).st_mode | 0o711)
            p = os.path.dirname(p)

    def start(self, timeout=20):
        """Starts Dovecot and returns self once it greets on its port (RuntimeError with
        its log when it exits or does not listen within `timeout` seconds)."""
        self.out = open(os.path.join(self.dir, "stdout.log"), "wb")
        self.proc = subprocess.Popen([DOVECOT, "-F", "-c", self.conf], stdout=self.out,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("dovecot exited:\n" + self.logtext())
            if self._greets():
                return self
            time.sleep(0.05)
        raise RuntimeError("dovecot did not listen:\n" + self.logtext())

    def _greets(self):
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
                return s.recv(512).startswith((b"+OK", b"* OK"))
        except OSError:
            return False

    def logtext(self):
        text = ""
        for p in (self.log, os.path.join(self.dir, "stdout.log")):
            try:
                with open(p, "rb") as f:
                    text += f.read().decode("utf-8", "replace")
            except FileNotFoundError:
                pass
        return text

    def stop(self):
        """Stops Dovecot (SIGTERM, SIGKILL after 20 s); the folder stays."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if self.out:
            self.out.close()
            self.out = None
