#!/usr/bin/env python3
"""Local delivery read by a real Dovecot: mail sent with smtplib to sharemaild is
delivered to <state_dir>/mail/<domain>/<user>/Maildir, and Dovecot (Debian's
dovecot-imapd, started here as a non-daemon process with its own minimal config on
a random loopback port) serves it over IMAP byte for byte, proving the Maildir
layout and file names are right. The names in new/ carry Dovecot's size fields,
",S=<file size>,W=<size with CRLF>": Dovecot must report RFC822.SIZE = W=, keep the
names (it renames a file whose S= is wrong) and log no error or warning.

Dovecot refuses to run mail processes as uid 0, so when this test runs as root
its userdb names the `dovecot` system user and the delivered tree is handed to
that user (a real installation runs sharemaild and Dovecot's userdb under one
mail uid). As an ordinary user everything runs under the current uid.
"""
import imaplib
import os
import re
import smtplib
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from smtest import Daemon, Suite, free_tcp_port  # noqa: E402
import dovecotrun  # noqa: E402

S = Suite("delivery_dovecot")
PASSWORD = "imap-test-pass"

MESSAGE = (b"From: Sender <sender@example.net>\r\n"
           b"To: alice@example.com\r\n"
           b"Subject: Maildir through Dovecot\r\n"
           b"Message-ID: <dovecot-test-1@example.net>\r\n"
           b"\r\n"
           b"first line\r\n"
           b".a line that began with a dot\r\n"
           b"\r\n"
           b"tab\there, trailing space \r\n"
           + b"x" * 900 + b"\r\n"
           b"last line\r\n")


def wait_for(fn, what, timeout=20.0):
    """Polls fn() until it returns something true (a bound, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = fn()
        if v:
            return v
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


def maildir_new(d, domain, user):
    path = os.path.join(d.state, "mail", domain, user, "Maildir", "new")
    try:
        return sorted(os.path.join(path, n) for n in os.listdir(path))
    except FileNotFoundError:
        return []


class ImapDovecot(dovecotrun.Dovecot):
    """A throwaway Dovecot (dovecotrun.py) serving the daemon's mail tree over IMAP."""

    def __init__(self, mail_root):
        super().__init__(os.path.join(os.path.dirname(mail_root), "dovecot"), "imap",
                         f"maildir:{mail_root}/%d/%n/Maildir", f"{mail_root}/%d/%n",
                         PASSWORD, mail_trees=[mail_root])

    def fetch_all(self, user):
        """Logs in as user; returns [(uid, RFC822.SIZE, BODY[] octets)] of INBOX."""
        c = imaplib.IMAP4("127.0.0.1", self.port)
        try:
            typ, _ = c.login(user, PASSWORD)
            S.eq(typ, "OK", f"IMAP LOGIN {user}")
            typ, data = c.select("INBOX", readonly=True)
            S.eq(typ, "OK", f"IMAP SELECT INBOX of {user}: {data}")
            n = int(data[0])
            out = []
            for i in range(1, n + 1):
                typ, data = c.fetch(str(i), "(UID RFC822.SIZE BODY.PEEK[])")
                S.eq(typ, "OK", "IMAP FETCH")
                meta = data[0][0].decode()
                size = int(meta.split("RFC822.SIZE ")[1].split()[0].rstrip(")"))
                out.append((meta, size, data[0][1]))
            return out
        finally:
            try:
                c.logout()
            except (OSError, imaplib.IMAP4.error):
                pass


def send(port, rcpts, msg, sender="sender@example.net"):
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as s:
        code, _ = s.ehlo("client.example.net")
        S.eq(code // 100, 2, "EHLO")
        code, reply = s.mail(sender)
        S.eq(code // 100, 2, f"MAIL: {reply}")
        for r in rcpts:
            code, reply = s.rcpt(r)
            S.eq(code // 100, 2, f"RCPT {r}: {reply}")
        code, reply = s.data(msg)
        S.eq(code, 250, f"DATA: {reply}")
        S.check(reply.startswith(b"2."), f"enhanced code class 2 in {reply!r}")


def test_dovecot_reads_delivered_mail():
    why = dovecotrun.installed("imap")
    if why:
        S.check(False, f"{why} (scripts/install-deps installs dovecot-imapd)")
        return
    port = free_tcp_port()
    d = Daemon(conf={"smtp_listen": f"127.0.0.1:{port}",
                     "smtp_original_recipient_header": "yes"}, minger=False)
    dv = None
    try:
        d.cli("account", "add", "alice@example.com", "--no-password")
        d.cli("account", "add", "bob@example.com", "--no-password")
        d.cli("alias", "add", "team@example.com", "alice@example.com", "bob@example.com")
        d.start()
        send(port, ["alice@example.com"], MESSAGE)
        # One copy each: alice is named directly and through the alias.
        send(port, ["team@example.com", "Alice@Example.com"], MESSAGE)
        wait_for(lambda: len(maildir_new(d, "example.com", "alice")) == 2
                 and len(maildir_new(d, "example.com", "bob")) == 1, "delivery")
        time.sleep(0.3)  # a duplicate copy, if any, would show up now
        S.eq(len(maildir_new(d, "example.com", "alice")), 2, "alice: one copy per message")
        S.eq(len(maildir_new(d, "example.com", "bob")), 1, "bob: one copy")
        files = {}
        wire = {}  # CRLF octets -> the W= of the file holding them
        names = set()
        for user in ("alice", "bob"):
            for p in maildir_new(d, "example.com", user):
                name = os.path.basename(p)
                S.check(":" not in name and "/" not in name, f"maildir name {name}")
                S.check(".M" in name and "P" in name and "Q" in name, f"unique name {name}")
                with open(p, "rb") as f:
                    raw = f.read()
                # Maildir holds LF line ends (the local convention); IMAP sends CRLF.
                S.check(b"\r" not in raw, f"LF line ends in the Maildir file {name}")
                crlf = raw.replace(b"\n", b"\r\n")
                files.setdefault(user, []).append(crlf)
                m = re.fullmatch(r"[^,]+,S=(\d+),W=(\d+)", name)
                S.check(m is not None, f"new/ name carries S= and W=: {name}")
                if m:
                    S.eq(int(m.group(1)), len(raw), f"S= is the file size: {name}")
                    S.eq(int(m.group(2)), len(crlf), f"W= is the CRLF size: {name}")
                    wire[crlf] = int(m.group(2))
                names.add((user, name))
        # The first message (to alice alone): messages are delivered in parallel, so
        # the order of the Maildir names is not the order they were sent in.
        first = next((b for b in files["alice"] if b"team@example.com" not in b),
                     files["alice"][0])
        S.check(first.startswith(b"Return-Path: <sender@example.net>\r\n"
                                 b"Delivered-To: alice@example.com\r\n"
                                 b"X-Sharemail-Original-Rcpt: alice@example.com\r\n"),
                f"trace fields on top: {first[:200]!r}")
        S.check(first.endswith(MESSAGE), "message octets after the added fields, unchanged")
        second = [b for b in files["alice"] if b"team@example.com" in b]
        S.eq(len(second), 1, "the alias message reached alice once")
        if second:
            S.check(b"X-Sharemail-Original-Rcpt: team@example.com\r\n"
                    b"X-Sharemail-Original-Rcpt: Alice@Example.com\r\n" in second[0],
                    "one original-recipient field per envelope recipient")
        for st in ("tmp",):
            tmp = os.path.join(d.state, "mail", "example.com", "alice", "Maildir", st)
            S.eq(os.listdir(tmp), [], "nothing left in tmp/")
        mode = os.stat(os.path.join(d.state, "mail", "example.com", "alice",
                                    "Maildir")).st_mode & 0o777
        S.eq(mode, 0o700, "Maildir mode")
        # The queue is empty once every recipient is delivered.
        q = d.cli("queue", "list", check=False)
        S.check("alice@example.com" not in q.stdout, f"queue emptied: {q.stdout!r}")
        d.stop()

        dv = ImapDovecot(os.path.join(d.state, "mail")).start()
        got = dv.fetch_all("alice@example.com")
        S.eq(len(got), 2, "alice has two messages over IMAP")
        S.eq(sorted(b for _, _, b in got), sorted(files["alice"]),
             "IMAP BODY[] equals the Maildir files (LF read as CRLF) byte for byte")
        for _, size, body in got:
            S.eq(size, len(body), "RFC822.SIZE")
            S.eq(size, wire.get(body), "Dovecot's RFC822.SIZE is our W=")
        got = dv.fetch_all("bob@example.com")
        S.eq([b for _, _, b in got], files["bob"], "bob's message over IMAP")
        S.check(b"Delivered-To: bob@example.com\r\n" in got[0][2] if got else False,
                "Delivered-To names bob")
        for _, size, body in got:
            S.eq(size, wire.get(body), "Dovecot's RFC822.SIZE is our W= (bob)")
        dv.stop()
        # Dovecot may move new/ to cur/ and add ":2,<flags>", never change the rest.
        after = set()
        for user in ("alice", "bob"):
            md = os.path.join(d.state, "mail", "example.com", user, "Maildir")
            for sub in ("new", "cur"):
                for n in os.listdir(os.path.join(md, sub)):
                    after.add((user, n.split(":")[0]))
        S.eq(after, names, "Dovecot kept every name (a wrong S= would be renamed)")
        # (Its master's own "Killed with signal 15" at our stop is not a complaint.)
        bad = [ln for ln in dv.logtext().splitlines()
               if re.search(r"Error|Panic|Warning|Fatal", ln) and "Killed with signal 15" not in ln]
        S.eq(bad, [], "dovecot logged no error or warning")
    finally:
        if dv:
            dv.stop()
        d.cleanup()


if __name__ == "__main__":
    sys.exit(S.run([test_dovecot_reads_delivered_mail]))
