"""isp_pop3: a real ISP POP3 server for the DomainPOP tests and the benchmark.

IspDovecot runs Debian's dovecot-pop3d (a private Dovecot from dovecotrun.py) in a
temporary folder, on a random loopback port, over one Maildir that the test fills
(add()): the ISP mailbox a whole domain's mail lands in.
Every login name gets the same Maildir (the test decides what is in it); the
password is PASSWORD for any user.

Dovecot refuses to run mail processes as uid 0: as root its userdb names the
`dovecot` system user and the Maildir is handed to that user; as an ordinary user
everything runs under the current uid.
"""
import os
import poplib
import shutil
import tempfile
import time

from dovecotrun import Dovecot, free_tcp_port, installed  # noqa: F401 (free_tcp_port: users)

PASSWORD = "isp-pop3-pass"


def available():
    """None when Dovecot with POP3 is installed here, else why not."""
    return installed("pop3")


class IspDovecot:
    """A throwaway Dovecot POP3 server over one Maildir (self.maildir)."""

    def __init__(self, parent=None):
        self.dir = tempfile.mkdtemp(prefix="isp-dovecot-", dir=parent)
        os.chmod(self.dir, 0o755)
        self.maildir = os.path.join(self.dir, "Maildir")
        for sub in ("new", "cur", "tmp"):
            os.makedirs(os.path.join(self.maildir, sub))
        self.seq = 0
        # The UIDL is Dovecot's own (uid and uidvalidity); flags are not written back.
        self.dovecot = Dovecot(self.dir, "pop3", f"maildir:{self.maildir}", self.dir, PASSWORD,
                               settings="pop3_uidl_format = %08Xu%08Xv\n"
                                        "pop3_no_flag_updates = yes",
                               mail_trees=[self.dir])
        self.port, self.uid, self.gid = self.dovecot.port, self.dovecot.uid, self.dovecot.gid
        self.log = self.dovecot.log

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
        self.dovecot.start()
        return self

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
        return self.dovecot.logtext()

    def stop(self):
        self.dovecot.stop()

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()
