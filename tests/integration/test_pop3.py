#!/usr/bin/env python3
"""The POP3 server (RFC 1939, RFC 2449 CAPA, RFC 2595 STLS, RFC 5034 AUTH PLAIN)
against the real sharemaild.

Real clients: Python's poplib (login, STAT/LIST/UIDL/RETR/TOP/DELE/RSET, STLS,
POP3_SSL) and fetchmail (Debian's, plaintext with auth_allow_plaintext, over STLS
and over pop3s, delivering with --mda to files in the test's folder). A raw socket sends
the hostile inputs (an overlong line, binary and NUL, a pipelined flood, a
megabyte without a line end, AUTH guessing until the Dynamic Screen closes the
door), the per-address cap, SIGHUP and SIGTERM with a session open, and POP
before SMTP end to end. Messages are delivered over SMTP (smtplib) and read back over POP3 byte
for byte: CRLF line ends, lines that start with '.' stuffed on the wire and
unstuffed by the client. Deadlines are waited for by polling with a bound.
"""
import base64
import glob
import os
import re
import poplib
import shutil
import smtplib
import socket
import ssl
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import smtest  # noqa: E402
from smtest import Daemon, Suite, free_tcp_port  # noqa: E402

S = Suite("pop3")
PASSWORD = "pop3 test password"
WAIT = 10.0  # a bound on polling, never asserted


def make_cert(folder):
    cert, key = os.path.join(folder, "pop.crt"), os.path.join(folder, "pop.key")
    subprocess.run(["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", key, "-subj", "/CN=pop.test", "-x509", "-days", "2",
                    "-out", cert], check=True, capture_output=True)
    return cert, key


def client_ctx():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def delivery_order(path):
    """The store's message order (src/store/mailbox.c): the name's seconds, then its
    microseconds as a number (".M<usec>" is not zero-padded, so names of one second do
    not sort as strings), then the name."""
    name = os.path.basename(path)
    m = re.match(r"(\d+)\.M(\d+)", name)
    return (int(m.group(1)), int(m.group(2)), name) if m else (0, 0, name)


class Pop3Daemon:
    """A started daemon: SMTP on d.smtp, POP3 on d.pop (and POP3S on d.pops with
    tls=True); alice@example.com (password PASSWORD, alias al@example.com), bob."""

    def __init__(self, conf=None, tls=False, plaintext=True, open_dir=False):
        self.smtp, self.pop, self.pops = free_tcp_port(), free_tcp_port(), free_tcp_port()
        keys = {"smtp_listen": f"127.0.0.1:{self.smtp}", "pop3_listen": f"127.0.0.1:{self.pop}",
                "auth_allow_plaintext": "yes" if plaintext else "no", "queue_min_free": "0",
                "smtp_max_errors": "1000"}
        self.d = Daemon(conf=None, minger=False)
        if tls:
            cert, key = make_cert(self.d.dir)
            keys.update({"tls_cert_file": cert, "tls_key_file": key,
                         "pop3s_listen": f"127.0.0.1:{self.pops}"})
        base = {"hostname": "mx.test", "state_dir": "state", "local_domains": "example.com",
                "log_level": "debug", "relay_smarthost": smtest.RELAY_NOWHERE,
                "screen_connection_rate": "0/1m", "screen_unknown_recipients": "0/1m",
                "screen_auth_failures": "0/1m"}
        base.update(keys)
        base.update(conf or {})
        self.d.write_conf(base)
        try:
            pw = os.path.join(self.d.dir, "pw")
            with open(pw, "w") as f:
                f.write(PASSWORD + "\n")
            self.d.cli("account", "add", "alice@example.com", "--password-file", pw)
            self.d.cli("account", "add", "bob@example.com", "--password-file", pw)
            self.d.cli("alias", "add", "al@example.com", "alice@example.com")
            if open_dir:  # another user must pass (mkdtemp makes it 0700)
                os.chmod(self.d.dir, 0o755)
            self.d.start()
        except Exception:
            self.d.cleanup()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.d.cleanup()

    def send(self, rcpt, body):
        """Delivers one message over SMTP and waits until it is in the Maildir."""
        before = len(self.files(rcpt))
        with smtplib.SMTP("127.0.0.1", self.smtp, timeout=30) as c:
            c.sendmail("sender@other.example", [rcpt], body)
        deadline = time.monotonic() + WAIT
        while len(self.files(rcpt)) <= before and time.monotonic() < deadline:
            time.sleep(0.02)

    def files(self, addr):
        user, domain = addr.split("@")
        root = os.path.join(self.d.state, "mail", domain, user, "Maildir")
        return sorted(glob.glob(os.path.join(root, "new", "*")) +
                      glob.glob(os.path.join(root, "cur", "*")), key=delivery_order)

    def login(self, user="alice@example.com", password=PASSWORD):
        p = poplib.POP3("127.0.0.1", self.pop, timeout=30)
        p.user(user)
        p.pass_(password)
        return p


class Raw:
    """A raw POP3 connection: send octets, read lines."""

    def __init__(self, port, source="127.0.0.1", greet=True):
        self.s = socket.create_connection(("127.0.0.1", port), timeout=30,
                                          source_address=(source, 0))
        self.f = self.s.makefile("rb")
        self.greeting = self.line() if greet else None

    def send(self, data):
        self.s.sendall(data)

    def line(self, timeout=30):
        self.s.settimeout(timeout)
        try:
            return self.f.readline()
        except (socket.timeout, ConnectionResetError):
            return b""

    def cmd(self, text, timeout=30):
        self.send(text.encode() + b"\r\n")
        return self.line(timeout)

    def multi(self):
        out = []
        while True:
            ln = self.line()
            if ln in (b".\r\n", b""):
                return out
            out.append(ln)

    def closed(self):
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            if self.line(timeout=WAIT) == b"":
                return True
        return False

    def close(self):
        self.s.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


MSG1 = (b"From: x@other.example\r\nSubject: one\r\n\r\nfirst line\r\n.starts with a dot\r\n"
        b"..two dots\r\n.\r\nlast line\r\n")
MSG2 = b"From: x@other.example\r\nSubject: two\r\n\r\n" + b"".join(
    b"line %d of a longer body\r\n" % i for i in range(2000))
MSG3 = b"Subject: three\r\n\r\nshort\r\n"


def stored_wire(path):
    """A stored message as it must come over the wire (before dot-stuffing)."""
    with open(path, "rb") as f:
        return f.read().replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def test_login_stat_list_uidl_retr_top():
    with Pop3Daemon() as t:
        for m in (MSG1, MSG2, MSG3):
            t.send("alice@example.com", m)
        files = t.files("alice@example.com")
        S.eq(len(files), 3, "three messages delivered")
        p = t.login()
        count, octets = p.stat()
        wires = [stored_wire(f) for f in files]
        S.eq(count, 3, "STAT count")
        S.eq(octets, sum(len(w) for w in wires), "STAT octets = the CRLF sizes")
        _, lst, _ = p.list()
        S.eq([int(x.split()[1]) for x in lst], [len(w) for w in wires], "LIST sizes")
        _, uidl, _ = p.uidl()
        uids = [x.split()[1] for x in uidl]
        S.eq(len(set(uids)), 3, "three distinct UIDLs")
        S.eq(uids, [os.path.basename(f).split(",")[0].split(":")[0].encode() for f in files],
             "the UIDL is the Maildir base name")
        for i, (orig, wire) in enumerate(zip((MSG1, MSG2, MSG3), wires), 1):
            _, lines, n = p.retr(i)
            got = b"".join(ln + b"\r\n" for ln in lines)
            S.eq(got, wire, f"RETR {i}: byte for byte the stored message with CRLF")
            S.check(got.endswith(orig), f"RETR {i}: ends with what was sent over SMTP")
        _, top, _ = p.top(2, 3)
        S.eq(top[-4:], [b"", b"line 0 of a longer body", b"line 1 of a longer body",
                        b"line 2 of a longer body"], "TOP 2 3: the header, blank, 3 lines")
        S.eq(p.uidl(2).split()[2], uids[1], "UIDL 2")
        S.check(p.list(3).startswith(b"+OK 3 "), "LIST 3")
        p.quit()
        S.eq(len(t.files("alice@example.com")), 3, "QUIT without DELE removes nothing")


def test_dot_stuffing_on_the_wire():
    with Pop3Daemon() as t:
        t.send("alice@example.com", MSG1)
        with Raw(t.pop) as r:
            r.cmd("USER alice@example.com")
            S.check(r.cmd("PASS " + PASSWORD).startswith(b"+OK"), "logged in")
            S.check(r.cmd("RETR 1").startswith(b"+OK"), "RETR")
            body = b"".join(r.multi())
            S.check(b"\r\n..starts with a dot\r\n...two dots\r\n..\r\nlast line\r\n" in body,
                    f"lines that open with '.' are stuffed: {body[-90:]!r}")
            S.check(b"\n" not in body.replace(b"\r\n", b""), "only CRLF line ends")
            r.cmd("QUIT")


def test_dele_quit_rset_and_drop():
    with Pop3Daemon() as t:
        for m in (MSG1, MSG3, MSG3):
            t.send("alice@example.com", m)
        p = t.login()
        p.dele(1)
        p.dele(2)
        S.raises(poplib.error_proto, lambda: p.retr(1), "RETR of a deleted message")
        S.eq(p.stat()[0], 1, "STAT leaves deleted messages out")
        p.rset()
        S.eq(p.stat()[0], 3, "RSET unmarks")
        p.dele(1)
        p.file.close()  # dropped: no QUIT
        p.sock.close()
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:  # the lock goes with the connection
            try:
                p = t.login()
                break
            except poplib.error_proto:
                time.sleep(0.05)
        S.eq(p.stat()[0], 3, "a dropped connection deleted nothing")
        p.dele(2)
        p.quit()
        S.eq(len(t.files("alice@example.com")), 2, "DELE then QUIT removes the message")
        p = t.login()
        S.eq(p.stat()[0], 2, "and the next session sees two")
        p.quit()


def test_wrong_password_unknown_user_alike():
    with Pop3Daemon() as t:
        errs = []
        for user, pw in (("alice@example.com", "wrong"), ("nobody@example.com", PASSWORD),
                         ("ALICE@example.com", "wrong")):
            p = poplib.POP3("127.0.0.1", t.pop, timeout=30)
            p.user(user)
            e = S.raises(poplib.error_proto, lambda: p.pass_(pw), f"{user}: refused")
            errs.append(e.args[0] if e else None)
            p.quit()
        S.eq(len(set(errs)), 1, f"one reply for all: {errs}")
        S.check(errs[0].startswith(b"-ERR [AUTH]"), f"-ERR [AUTH] (RFC 3206): {errs[0]}")
        p = t.login("ALICE@Example.COM")  # the address in any case: alice's maildrop
        S.eq(p.stat()[0], 0, "the login name is the address, in any case")
        p.quit()
        S.check(PASSWORD not in t.d.logtext(), "the password is never logged")


def test_in_use():
    with Pop3Daemon() as t:
        t.send("alice@example.com", MSG3)
        p1 = t.login()
        p2 = poplib.POP3("127.0.0.1", t.pop, timeout=30)
        p2.user("alice@example.com")
        e = S.raises(poplib.error_proto, lambda: p2.pass_(PASSWORD), "second session refused")
        S.check(e and e.args[0].startswith(b"-ERR [IN-USE]"), f"-ERR [IN-USE]: {e}")
        p3 = t.login("bob@example.com")
        S.eq(p3.stat()[0], 0, "another mailbox is not locked")
        p3.quit()
        p1.quit()
        p2.user("alice@example.com")
        p2.pass_(PASSWORD)
        S.eq(p2.stat()[0], 1, "after QUIT the mailbox can be opened again")
        p2.quit()


def test_capa_and_stls():
    with Pop3Daemon(tls=True, plaintext=False) as t:
        t.send("alice@example.com", MSG3)
        p = poplib.POP3("127.0.0.1", t.pop, timeout=30)
        capa = p.capa()
        for c in ("TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "STLS",
                  "IMPLEMENTATION"):
            S.check(c in capa, f"CAPA lists {c}: {capa}")
        S.check("USER" not in capa and "SASL" not in capa, "no USER or SASL before TLS")
        e = S.raises(poplib.error_proto, lambda: p.user("alice@example.com"), "USER before TLS")
        S.check(e and e.args[0].startswith(b"-ERR [AUTH]"), f"-ERR [AUTH]: {e}")
        p.stls(client_ctx())
        capa = p.capa()
        S.check("USER" in capa and capa.get("SASL") == ["PLAIN"] and "STLS" not in capa,
                f"after STLS: USER and SASL PLAIN, no STLS: {capa}")
        p.user("alice@example.com")
        p.pass_(PASSWORD)
        S.eq(p.stat()[0], 1, "logged in inside TLS")
        p.quit()
        # STLS with a command pipelined behind it: discarded (RFC 2595 4, CVE-2011-0411 shape).
        with Raw(t.pop) as r:
            r.send(b"STLS\r\nUSER alice@example.com\r\n")
            S.check(r.line().startswith(b"+OK"), "STLS +OK")
            tls = client_ctx().wrap_socket(r.s, server_hostname="pop.test")
            tls.sendall(b"PASS " + PASSWORD.encode() + b"\r\n")
            f = tls.makefile("rb")
            S.check(f.readline().startswith(b"-ERR USER first"),
                    "the USER sent before the handshake was not run inside TLS")
            tls.close()


def test_pop3s_and_auth_plain():
    with Pop3Daemon(tls=True, plaintext=False) as t:
        t.send("alice@example.com", MSG1)
        p = poplib.POP3_SSL("127.0.0.1", t.pops, timeout=30, context=client_ctx())
        S.check("STLS" not in p.capa(), "no STLS on pop3s")
        cred = base64.b64encode(b"\0alice@example.com\0" + PASSWORD.encode()).decode()
        S.check(p._shortcmd("AUTH PLAIN " + cred).startswith(b"+OK"), "AUTH PLAIN (RFC 5034)")
        _, lines, _ = p.retr(1)
        S.check(b"".join(ln + b"\r\n" for ln in lines).endswith(MSG1), "RETR over pop3s")
        p.quit()
        with Raw(t.pops, greet=False) as r:  # plaintext on 995: no greeting, closed
            r.send(b"USER alice@example.com\r\n")
            S.check(r.closed(), "plaintext on the implicit-TLS port is closed")


def test_hostile_inputs():
    with Pop3Daemon() as t:
        t.send("alice@example.com", MSG3)
        with Raw(t.pop) as r:
            S.check(r.greeting.startswith(b"+OK"), "greeting")
            S.check(r.cmd("A" * 300).startswith(b"-ERR"), "a 300-octet line: -ERR")
            S.check(r.cmd("NO\0OP \xff\xfe").startswith(b"-ERR"), "NUL and binary: -ERR")
            S.check(r.cmd("CAPA").startswith(b"+OK"), "the session goes on")
            r.multi()
            r.send(b"NOOP\r\n" * 2000)  # not valid before the login: each an error
            got = [r.line() for _ in range(18)]
            S.check(all(g.startswith(b"-ERR") for g in got), "-ERR to each")
            S.check(r.line().startswith(b"-ERR [SYS/PERM]"), "the 20th error ends it")
            S.check(r.closed(), "pop3_max_errors (20): closed")
        with Raw(t.pop) as r:
            r.cmd("USER alice@example.com")
            r.cmd("PASS " + PASSWORD)
            r.send(b"NOOP\r\n" * 5000)  # a pipelined flood: every one answered, in order
            got = [r.line() for _ in range(5000)]
            S.check(all(g == b"+OK\r\n" for g in got), "5000 NOOPs answered")
            S.check(r.cmd("STAT").startswith(b"+OK 1 "), "then STAT, in order")
        with Raw(t.pop) as r:
            r.cmd("USER alice@example.com")
            r.cmd("PASS " + PASSWORD)
            r.send(b"RETR 1\r\n" * 500 + b"QUIT\r\n")
            n = 0
            while True:
                ln = r.line()
                if ln.startswith(b"+OK bye") or ln == b"":
                    break
                n += ln == b".\r\n"
            S.eq(n, 500, "500 pipelined RETRs answered in order")
        with Raw(t.pop) as r:
            S.check(r.cmd("AUTH PLAIN").startswith(b"+ "), "AUTH PLAIN: a continuation")
            S.check(r.cmd("A" * 13000).startswith(b"-ERR"), "a 13,000-octet AUTH line: -ERR")
            S.check(r.cmd("CAPA").startswith(b"+OK"), "the session goes on")
        with Raw(t.pop) as r:
            r.send(b"x" * (1 << 20))
            S.check(r.line().startswith(b"-ERR"), "a megabyte without a line end: -ERR")
            S.check(r.closed(), "and closed")
        with Raw(t.pop) as r:
            S.check(r.cmd("CAPA").startswith(b"+OK"), "still serving")


def test_auth_guessing_screened():
    with Pop3Daemon(conf={"screen_auth_failures": "3/10m", "pop3_max_errors": "50"}) as t:
        src = "127.0.0.2"
        with Raw(t.pop, source=src) as r:
            times = []
            for i in range(3):
                r.cmd("USER alice@example.com")
                t0 = time.monotonic()
                ln = r.cmd("PASS guess%d" % i)
                times.append(time.monotonic() - t0)
                S.check(ln.startswith(b"-ERR [AUTH]"), f"guess {i}: -ERR [AUTH] ({ln})")
            S.check(times[1] > times[0] and times[2] > times[1] * 0.9,
                    f"growing delays: {times}")
            ln = r.line()
            S.check(ln.startswith(b"-ERR [SYS/TEMP]"), f"then screened: {ln}")
            S.check(r.closed(), "and closed")
        with Raw(t.pop, source=src, greet=False) as r:
            ln = r.line()
            S.check(ln.startswith(b"-ERR"), f"refused at connect once screened: {ln}")
        with Raw(t.pop, source="127.0.0.3") as r:
            S.check(r.greeting.startswith(b"+OK"), "another address still served")


def fetchmail(t, mode, home):
    """fetchmail as a real client (mode: plain, stls or ssl, i.e. pop3s): keep nothing,
    deliver to files with --mda."""
    out = os.path.join(home, "mda-out")
    os.makedirs(out, exist_ok=True)
    rc = os.path.join(home, "fetchmailrc")
    opts = {"plain": 'sslproto ""', "stls": "sslproto TLS1.2+ no sslcertck",
            "ssl": "ssl sslproto TLS1.2+ no sslcertck"}[mode]
    port = t.pops if mode == "ssl" else t.pop
    with open(rc, "w") as f:
        f.write(f"poll 127.0.0.1 service {port} protocol pop3 uidl\n"
                f"  user \"alice@example.com\" password \"{PASSWORD}\"\n"
                f"  {opts}\n")
    os.chmod(rc, 0o600)
    mda = f"/bin/sh -c 'cat > {out}/$$'"
    env = dict(os.environ, HOME=home, FETCHMAILHOME=home)
    p = subprocess.run(["fetchmail", "-f", rc, "--nodetach", "--nosyslog", "-v", "--mda", mda,
                        "--pidfile", os.path.join(home, "pid")],
                       capture_output=True, text=True, timeout=120, env=env)
    msgs = []
    for f in sorted(glob.glob(os.path.join(out, "*"))):
        with open(f, "rb") as fh:
            msgs.append(fh.read())
    return p, msgs


def test_fetchmail():
    if not shutil.which("fetchmail"):
        S.skip("fetchmail not installed (scripts/install-deps installs it)")
        return
    for mode in ("plain", "stls", "ssl"):
        tls = mode != "plain"
        with Pop3Daemon(tls=tls, plaintext=not tls) as t:
            for m in (MSG1, MSG2):
                t.send("alice@example.com", m)
            home = os.path.join(t.d.dir, "fm")
            os.makedirs(home)
            p, msgs = fetchmail(t, mode, home)
            what = {"plain": "plaintext", "stls": "over STLS", "ssl": "over pop3s"}[mode]
            S.eq(p.returncode, 0, f"fetchmail {what}: {p.stdout[-600:]} {p.stderr[-600:]}")
            S.eq(len(msgs), 2, f"fetchmail {what}: two messages handed to the MDA")
            S.check(any(b"\n.starts with a dot\n..two dots\n.\n" in m for m in msgs),
                    f"fetchmail {what}: dot lines unstuffed")
            S.eq(len(t.files("alice@example.com")), 0, f"fetchmail {what}: deleted after")
            if tls:
                S.check("pop3: login=alice@example.com client=[127.0.0.1] tls" in
                        t.d.logtext(), "the login was inside TLS")


def test_limits_shutdown_and_reload():
    with Pop3Daemon(conf={"pop3_max_connections_per_ip": "2"}) as t:
        t.send("alice@example.com", MSG3)
        a, b = Raw(t.pop), Raw(t.pop)
        with Raw(t.pop, greet=False) as c:
            ln = c.line()
            S.check(ln.startswith(b"-ERR [SYS/TEMP]"), f"over the per-address cap: {ln}")
            S.check(c.closed(), "and closed")
        with Raw(t.pop, source="127.0.0.2") as c:
            S.check(c.greeting.startswith(b"+OK"), "another address is served")
        b.close()
        # SIGHUP: a new greeting for new connections; the open session keeps going.
        with open(t.d.conf_path, "a") as f:
            f.write("pop3_greeting = reloaded greeting\n")
        t.d.proc.send_signal(1)
        deadline = time.monotonic() + WAIT
        while "SIGHUP: configuration reloaded" not in t.d.logtext() and \
                time.monotonic() < deadline:
            time.sleep(0.05)
        with Raw(t.pop, source="127.0.0.3") as c:
            S.eq(c.greeting, b"+OK reloaded greeting\r\n", "pop3_greeting reloads")
        a.cmd("USER alice@example.com")
        S.check(a.cmd("PASS " + PASSWORD).startswith(b"+OK"), "the open session logs in")
        S.check(a.cmd("DELE 1").startswith(b"+OK"), "DELE")
        t.d.proc.send_signal(15)  # SIGTERM: sessions end, nothing is removed
        ln = a.line()
        S.check(ln.startswith(b"-ERR [SYS/TEMP]"), f"shutdown tells the client: {ln}")
        S.check(a.closed(), "and closes")
        a.close()
        S.eq(t.d.proc.wait(20), 0, "the daemon stops cleanly")
        S.eq(len(t.files("alice@example.com")), 1, "a DELE without QUIT removed nothing")


def test_pop_before_smtp():
    conf = {"pop_before_smtp": "yes", "auth_required_for_local_senders": "no"}
    with Pop3Daemon(conf=conf) as t:
        def mail_from(sender):
            with smtplib.SMTP("127.0.0.1", t.smtp, timeout=30) as c:
                c.ehlo("client.example.net")
                code, msg = c.mail(sender)
                if code == 250:
                    code = c.rcpt("bob@example.com")[0]
                return code, msg
        code, msg = mail_from("alice@example.com")
        S.eq(code, 530, f"MAIL FROM a local account before a POP3 login: {msg}")
        S.check(msg.startswith(b"5.7.0"), f"5.7.0: {msg}")
        p = t.login("alice@example.com")
        p.quit()
        S.eq(mail_from("alice@example.com")[0], 250, "after alice's POP3 login: accepted")
        S.eq(mail_from("bob@example.com")[0], 530, "bob has not logged in: still refused")
        p = poplib.POP3("127.0.0.1", t.pop, timeout=30)
        p.user("bob@example.com")
        S.raises(poplib.error_proto, lambda: p.pass_("wrong"), "a failed login")
        p.quit()
        S.eq(mail_from("bob@example.com")[0], 530, "a failed POP3 login does not count")


def test_privileged_port_after_drop():
    """pop3_listen on a port below 1024, bound as root, served after the drop to `user`."""
    if os.geteuid() != 0:
        S.skip("needs root: the daemon must start as root to drop it")
        return
    import test_privdrop as pd
    with pd.TestUser() as pw:
        port = pd.privileged_port()
        with Pop3Daemon(conf={"user": pd.USER, "pop3_listen": f"127.0.0.1:{port}"},
                        open_dir=True) as t:
            t.pop = port
            t.send("alice@example.com", MSG3)
            p = t.login()
            S.eq(p.stat()[0], 1, "a login on a privileged port after the drop")
            p.dele(1)
            p.quit()
            S.eq(t.files("alice@example.com"), [], "DELE then QUIT removed it as the user")
            ids = pd.thread_ids(t.d.proc.pid)
            S.check(all(u == [pw.pw_uid] * 4 for u, _, _ in ids.values()),
                    f"every thread runs as {pd.USER}")


def test_drain_timeout_names_pop3():
    """SIGTERM while a client has stopped reading a RETR: the POP3 session cannot end,
    so after the drain bound the daemon logs which service still holds connections
    (pop3, not smtp) and stops anyway."""
    with Pop3Daemon() as t:
        t.send("alice@example.com", MSG3)  # makes the Maildir
        new = os.path.dirname(t.files("alice@example.com")[0])
        line = b"x" * 1023 + b"\n"
        with open(os.path.join(new, "1700000000.M1P1Q1.big"), "wb") as f:
            f.write(line * 16384)  # 16 MiB: more than the socket buffers hold
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.settimeout(30)
        s.connect(("127.0.0.1", t.pop))
        f = s.makefile("rb")
        f.readline()
        s.sendall(b"USER alice@example.com\r\nPASS " + PASSWORD.encode() + b"\r\n")
        f.readline()
        S.check(f.readline().startswith(b"+OK"), "logged in")
        s.sendall(b"RETR 1\r\n")  # the oldest name: listed first
        ok = f.readline()
        S.eq(ok, b"+OK %d octets\r\n" % (1025 * 16384), "RETR of the large message begins")
        t.d.proc.send_signal(15)  # the client reads nothing more
        try:
            t.d.proc.wait(60)  # the drain bound is 10 s
        except subprocess.TimeoutExpired:
            pass
        S.check(t.d.proc.poll() is not None, "the daemon stops despite the stuck session")
        log = t.d.logtext()
        lines = [ln for ln in log.splitlines() if "still open after" in ln]
        S.eq(len(lines), 1, f"one drain timeout line: {lines}")
        S.check(lines and "(pop3 1)" in lines[0], f"it names pop3 alone: {lines}")
        s.close()


if __name__ == "__main__":
    sys.exit(S.run([test_login_stat_list_uidl_retr_top, test_dot_stuffing_on_the_wire,
                    test_dele_quit_rset_and_drop, test_wrong_password_unknown_user_alike,
                    test_in_use, test_capa_and_stls, test_pop3s_and_auth_plain,
                    test_hostile_inputs, test_auth_guessing_screened, test_fetchmail,
                    test_limits_shutdown_and_reload, test_drain_timeout_names_pop3,
                    test_pop_before_smtp, test_privileged_port_after_drop]))
