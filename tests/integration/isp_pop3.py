"""isp_pop3: a real ISP POP3 server for the DomainPOP tests and the benchmark.

IspDovecot runs Debian's dovecot-pop3d as a non-daemon process (`dovecot -F`) with
its own minimal config in a temporary folder, on a random loopback port, over one
Maildir that the test fills (add()): the ISP mailbox a whole domain's mail lands in.
Every login name gets the same Maildir (the test decides what is in it); the
password is PASSWORD for any user.

Dovecot refuses to run mail processes as uid 0: as root its userdb names the
`dovecot` system user and the Maildir is handed to that user; as an ordinary user
everything runs under the current uid.
"""
import os
import poplib
import pwd
import shutil
import subprocess
import tempfile
import time

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
PASSWORD = "isp-pop3-pass"


def free_tcp_port():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def available():
    """None when Dovecot with POP3 is installed here, else why not."""
    if not os.path.exists(DOVECOT):
        return "dovecot is not installed (dovecot-pop3d)"
    if not os.path.exists("/usr/lib/dovecot/pop3"):
        return "dovecot-pop3d is not installed"
    return None


class IspDovecot:
    """A throwaway Dovecot POP3 server over one Maildir (self.maildir)."""

    def __init__(self, parent=None):
        self.dir = tempfile.mkdtemp(prefix="isp-dovecot-", dir=parent)
        os.chmod(self.dir, 0o755)
        self.maildir = os.path.join(self.dir, "Maildir")
        for sub in ("new", "cur", "tmp"):
            os.makedirs(os.path.join(self.maildir, sub))
        for sub in ("base", "state"):
            os.makedirs(os.path.join(self.dir, sub))
        self.port = free_tcp_port()
        self.log = os.path.join(self.dir, "dovecot.log")
        self.conf = os.path.join(self.dir, "dovecot.conf")
        self.proc = None
        self.seq = 0
        if os.geteuid() == 0:
            pw = pwd.getpwnam("dovecot")
            self.uid, self.gid, internal, login = pw.pw_uid, pw.pw_gid, "dovecot", "dovenull"
        else:
            self.uid, self.gid = os.getuid(), os.getgid()
            internal = login = pwd.getpwuid(self.uid).pw_name
        self._chown_tree()
        with open(self.conf, "w") as f:
            f.write(f"""protocols = pop3
listen = 127.0.0.1
base_dir = {self.dir}/base
state_dir = {self.dir}/state
log_path = {self.log}
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain
mail_location = maildir:{self.maildir}
pop3_uidl_format = %08Xu%08Xv
pop3_no_flag_updates = yes
default_internal_user = {internal}
default_login_user = {login}
first_valid_uid = 1
first_valid_gid = 0
passdb {{
  driver = static
  args = password={PASSWORD}
}}
userdb {{
  driver = static
  args = uid={self.uid} gid={self.gid} home={self.dir}
}}
service pop3-login {{
  chroot =
  inet_listener pop3 {{
    address = 127.0.0.1
    port = {self.port}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
}}
""")

    def _chown_tree(self):
        if os.geteuid() != 0:
            return
        for root, dirs, files in os.walk(self.dir):
            for n in dirs + files:
                os.chown(os.path.join(root, n), self.uid, self.gid)
        os.chown(self.dir, self.uid, self.gid)

    def add(self, msg):
        """Puts one message (bytes, CRLF lines) into the mailbox as the ISP's final delivery
        would (Dovecot stores LF line ends; POP3 sends them as CRLF). Returns its file."""
        self.seq += 1
        data = msg.replace(b"\r\n", b"\n")
        name = f"{int(time.time())}.M{self.seq}P{os.getpid()}.isp,S={len(data)}"
        tmp = os.path.join(self.maildir, "tmp", name)
        with open(tmp, "wb") as f:
            f.write(data)
        dst = os.path.join(self.maildir, "new", name)
        os.rename(tmp, dst)
        if os.geteuid() == 0:
            os.chown(dst, self.uid, self.gid)
        return dst

    def start(self):
        self.out = open(os.path.join(self.dir, "stdout.log"), "wb")
        self.proc = subprocess.Popen([DOVECOT, "-F", "-c", self.conf], stdout=self.out,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("dovecot exited:\n" + self.logtext())
            try:
                c = poplib.POP3("127.0.0.1", self.port, timeout=5)
                c.quit()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("dovecot did not listen:\n" + self.logtext())

    def count(self):
        """Messages in the mailbox as POP3 lists them now."""
        c = poplib.POP3("127.0.0.1", self.port, timeout=10)
        try:
            c.user("isp")
            c.pass_(PASSWORD)
            return c.stat()[0]
        finally:
            c.quit()

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
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None
        if getattr(self, "out", None):
            self.out.close()

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()
