#!/usr/bin/env python3
"""TLS against the real sharemaild: STARTTLS (RFC 3207) on smtp_listen and
submission_listen, implicit TLS on smtps_listen (RFC 8314), tls_cert_file and
tls_key_file (load errors, SIGHUP), and the TLS parts of hostile-inputs.md.

Real clients: Python's smtplib (starttls(), SMTP_SSL), `openssl s_client`
(-starttls smtp, -connect to 465) and swaks (--tls, --tlsc). A raw socket
(smtpraw.Conn, wrapped by Python's ssl module where TLS is wanted) sends the
hostile sequences: plaintext pipelined after STARTTLS, plaintext and garbage on
465, a TLS close mid-DATA followed by cleartext, handshakes that never finish.

Certificates are made in each test's temporary folder with the openssl CLI.
Deadlines are short (smtp_command_timeout = 2) and waited for by polling with a
bound, never by sleeping a fixed time to decide.
"""
import base64
import os
import re
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from smtest import SHAREMAILD, Daemon, Suite, free_tcp_port  # noqa: E402
from smtpraw import Conn, find_marker, queue_files, wait_for  # noqa: E402

S = Suite("tls")
WAIT = 10


def mark():
    return "T" + uuid.uuid4().hex[:16]


def make_cert(folder, name, cn, ca=None):
    """A P-256 key and certificate (self-signed, or signed by ca=(cert, key)) in folder;
    returns (cert_path, key_path)."""
    cert = os.path.join(folder, name + ".crt")
    key = os.path.join(folder, name + ".key")
    base = ["openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", key, "-subj", f"/CN={cn}"]
    if ca is None:
        cmd = base + ["-x509", "-days", "2", "-out", cert]
        subprocess.run(cmd, check=True, capture_output=True)
    else:
        csr = os.path.join(folder, name + ".csr")
        subprocess.run(base + ["-out", csr], check=True, capture_output=True)
        subprocess.run(["openssl", "x509", "-req", "-in", csr, "-CA", ca[0], "-CAkey", ca[1],
                        "-CAcreateserial", "-days", "2", "-out", cert],
                       check=True, capture_output=True)
    return cert, key


def client_ctx(maximum=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if maximum:
        ctx.maximum_version = maximum
    return ctx


SUB_USER, SUB_PASSWORD = "sub@example.com", "tls-test-password-1"


def sub_plain():
    """AUTH PLAIN's initial response for SUB_USER (RFC 4616: authzid NUL authcid NUL passwd)."""
    return base64.b64encode(f"\0{SUB_USER}\0{SUB_PASSWORD}".encode()).decode()


class TlsDaemon:
    """A started daemon with smtp, submission and smtps listeners and a certificate
    (tls=False: no tls keys and no smtps listener)."""

    def __init__(self, tls=True, extra=None):
        self.smtp, self.sub, self.smtps = free_tcp_port(), free_tcp_port(), free_tcp_port()
        conf = {"smtp_listen": f"127.0.0.1:{self.smtp}",
                "submission_listen": f"127.0.0.1:{self.sub}",
                "smtp_command_timeout": "2", "smtp_data_timeout": "5", "queue_min_free": "0"}
        self.d = Daemon(conf=conf, minger=False)
        if tls:
            self.cert, self.key = make_cert(self.d.dir, "server", "first.mx.test")
            conf.update({"smtps_listen": f"127.0.0.1:{self.smtps}",
                         "tls_cert_file": self.cert, "tls_key_file": self.key})
        conf.update(extra or {})
        # The certificate lives in the daemon's own temporary folder: the config again.
        keys = {"hostname": "mx.test", "state_dir": "state", "local_domains": "example.com",
                "log_level": "debug", "relay_smarthost": "[127.0.0.1]:1"}
        keys.update(conf)
        self.d.write_conf(keys)
        try:
            self.d.cli("account", "add", "alice@example.com", "--no-password")
            # Submission (587, 465) wants AUTH before MAIL: an account that can log in.
            pw = os.path.join(self.d.dir, "sub.pw")
            with open(pw, "w") as f:
                f.write(SUB_PASSWORD + "\n")
            self.d.cli("account", "add", SUB_USER, "--password-file", pw)
            self.d.start()
        except Exception:
            self.d.cleanup()
            raise

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.d.cleanup()


def maildir_messages(d):
    return [open(p, "rb").read() for p in find_marker(d.state, b"", where="maildir")]


def wait_delivered(d, marker):
    return wait_for(lambda: [open(p, "rb").read()
                             for p in find_marker(d.state, marker, where="maildir")], WAIT)


def msg(marker, sender="bob@else.test"):
    return (f"From: {sender}\r\nTo: alice@example.com\r\nSubject: {marker}\r\n\r\n"
            f"body {marker}\r\n")


# The Maildir copy has LF line ends (delivery's choice); the queue file CRLF.
RECEIVED_TLS = re.compile(rb"Received: from [^\r\n]*\r?\n\t\(using (TLSv1\.[23]) with cipher "
                          rb"([A-Za-z0-9_-]+)\)\r?\n\tby mx\.test \(sharemail\) with ESMTPSA? id ")


def received_of(data):
    return RECEIVED_TLS.search(data)


def read_to_eof(sock, timeout=WAIT):
    """Reads a TLS socket to its end: 'close_notify' when the server sent one, 'eof'
    when the TCP stream ended without it, 'timeout' when nothing ended it."""
    sock.settimeout(timeout)
    sock.suppress_ragged_eofs = False  # else an EOF without close_notify reads as b""
    try:
        while True:
            if not sock.recv(4096):
                return "close_notify"
    except ssl.SSLEOFError:
        return "eof"
    except (ssl.SSLError, ConnectionResetError):
        return "eof"
    except socket.timeout:
        return "timeout"


# ---- real clients ----

def test_starttls_smtplib():
    """STARTTLS on 25 and 587: offered in EHLO, a new EHLO inside TLS no longer offers
    it, the message arrives with the TLS version and cipher in its Received field."""
    with TlsDaemon() as t:
        for port, name in ((t.smtp, "25"), (t.sub, "587")):
            m = mark()
            c = smtplib.SMTP("127.0.0.1", port, timeout=WAIT)
            code, text = c.ehlo("client.test")
            S.check(b"STARTTLS" in text.split(b"\n"), f"{name}: STARTTLS offered: {text!r}")
            code, text = c.starttls(context=client_ctx())
            S.eq(code, 220, f"{name}: STARTTLS reply")
            S.eq(c.sock.version(), "TLSv1.3", f"{name}: TLS 1.3 negotiated by default")
            code, text = c.ehlo("client.test")
            S.eq(code, 250, f"{name}: EHLO inside TLS")
            S.check(b"STARTTLS" not in text, f"{name}: no STARTTLS offered inside TLS")
            sender = "bob@else.test"
            if name == "587":  # submission: AUTH before MAIL, and From: is the account's
                c.login(SUB_USER, SUB_PASSWORD)
                sender = SUB_USER
            c.sendmail(sender, ["alice@example.com"], msg(m, sender))
            c.quit()
            got = wait_delivered(t.d, m)
            S.eq(len(got), 1, f"{name}: delivered")
            r = received_of(got[0]) if got else None
            S.check(r is not None, f"{name}: Received with TLS: {got[0][:400] if got else b''!r}")
            if r:
                S.eq(r.group(1), b"TLSv1.3", f"{name}: version in Received")
                S.check(r.group(2).startswith(b"TLS_AES_") or r.group(2).startswith(b"TLS_CHACHA"),
                        f"{name}: cipher in Received: {r.group(2)!r}")


def test_tls12_received():
    """A TLS 1.2 client: accepted, and the Received field names TLSv1.2 and its cipher."""
    with TlsDaemon() as t:
        m = mark()
        c = smtplib.SMTP("127.0.0.1", t.smtp, timeout=WAIT)
        c.starttls(context=client_ctx(ssl.TLSVersion.TLSv1_2))
        S.eq(c.sock.version(), "TLSv1.2", "TLS 1.2 negotiated")
        cipher = c.sock.cipher()[0]
        c.sendmail("bob@else.test", ["alice@example.com"], msg(m))
        c.quit()
        got = wait_delivered(t.d, m)
        r = received_of(got[0]) if got else None
        S.check(r is not None, "Received with TLS 1.2")
        if r:
            S.eq(r.group(1), b"TLSv1.2", "version")
            S.eq(r.group(2).decode(), cipher, "the cipher the client negotiated")


def test_smtps_smtplib():
    """Implicit TLS on 465: greeting inside TLS, no STARTTLS offered, a second
    STARTTLS is 503, the message arrives over ESMTPS; QUIT ends with close_notify."""
    with TlsDaemon() as t:
        m = mark()
        c = smtplib.SMTP_SSL("127.0.0.1", t.smtps, timeout=WAIT, context=client_ctx())
        code, text = c.ehlo("client.test")
        S.eq(code, 250, "EHLO on 465")
        S.check(b"STARTTLS" not in text, "STARTTLS not offered on 465")
        code, text = c.docmd("STARTTLS")
        S.eq(code, 503, "STARTTLS inside TLS (RFC 3207)")
        c.login(SUB_USER, SUB_PASSWORD)  # submission over TLS: AUTH before MAIL
        c.sendmail(SUB_USER, ["alice@example.com"], msg(m, SUB_USER))
        code, _ = c.docmd("QUIT")
        S.eq(code, 221, "QUIT")
        S.eq(read_to_eof(c.sock), "close_notify", "465: the server's close_notify before FIN")
        c.close()
        got = wait_delivered(t.d, m)
        S.check(got and received_of(got[0]) is not None, "465: Received with TLS and ESMTPS")


def test_close_notify_starttls():
    """After QUIT inside STARTTLS the server sends close_notify (not a bare FIN)."""
    with TlsDaemon() as t:
        c = smtplib.SMTP("127.0.0.1", t.sub, timeout=WAIT)
        c.starttls(context=client_ctx())
        c.ehlo("client.test")
        code, _ = c.docmd("QUIT")
        S.eq(code, 221, "QUIT")
        S.eq(read_to_eof(c.sock), "close_notify", "587: close_notify")
        c.close()


def s_client(args, stdin):
    p = subprocess.run(["openssl", "s_client", "-crlf", "-ign_eof", *args], input=stdin,
                       capture_output=True, text=True, timeout=30)
    return p.returncode, p.stdout + p.stderr


def test_openssl_s_client():
    """openssl s_client: -starttls smtp on 25 and 587, -connect on 465, each sends a
    whole transaction; the certificate chain in tls_cert_file reaches the client."""
    with TlsDaemon() as t:
        # A chain: leaf then CA in the certificate file, reloaded on SIGHUP.
        ca = make_cert(t.d.dir, "ca", "Test CA")
        leaf_cert, leaf_key = make_cert(t.d.dir, "leaf", "chain.mx.test", ca=ca)
        with open(leaf_cert) as f1, open(ca[0]) as f2, open(t.cert, "w") as out:
            out.write(f1.read() + f2.read())
        shutil.copy(leaf_key, t.key)
        off = len(t.d.logtext())
        t.d.proc.send_signal(signal.SIGHUP)
        S.check(wait_for(lambda: "tls: certificate" in t.d.logtext()[off:], WAIT),
                "SIGHUP: certificate reloaded")
        for args, name in ((["-starttls", "smtp", "-connect", f"127.0.0.1:{t.smtp}"], "25"),
                           (["-starttls", "smtp", "-connect", f"127.0.0.1:{t.sub}"], "587"),
                           (["-connect", f"127.0.0.1:{t.smtps}"], "465")):
            m = mark()
            # 587 and 465 are submission: AUTH PLAIN before MAIL, as the account itself.
            auth = "" if name == "25" else f"AUTH PLAIN {sub_plain()}\n"
            sender = "bob@else.test" if name == "25" else SUB_USER
            script = (f"EHLO client.test\n{auth}MAIL FROM:<{sender}>\n"
                      f"RCPT TO:<alice@example.com>\nDATA\nSubject: {m}\nFrom: <{sender}>\n\n"
                      "hello\n.\nQUIT\n")
            rc, out = s_client(["-showcerts", *args], script)
            S.check("250 2.0.0 OK queued as" in out, f"{name}: queued via s_client: {out[-600:]}")
            S.check(re.search(r"New, TLSv1\.3, Cipher is TLS_", out) is not None,
                    f"{name}: TLS 1.3 reported")
            S.check(re.search(r" 0 s:CN ?= ?chain\.mx\.test", out) is not None and
                    re.search(r" 1 s:CN ?= ?Test CA", out) is not None,
                    f"{name}: leaf and its chain sent")
            S.check(len(wait_delivered(t.d, m)) == 1, f"{name}: delivered")


def test_swaks():
    """swaks --tls (STARTTLS on 587) and --tlsc (implicit, 465)."""
    if shutil.which("swaks") is None:
        S.skip("swaks not installed (scripts/install-deps installs it)")
        return
    with TlsDaemon() as t:
        for opt, port, name in (("--tls", t.sub, "--tls"), ("--tlsc", t.smtps, "--tlsc")):
            m = mark()
            p = subprocess.run(["swaks", "--server", "127.0.0.1", "--port", str(port), opt,
                                "--auth", "PLAIN", "--auth-user", SUB_USER,
                                "--auth-password", SUB_PASSWORD,
                                "--from", SUB_USER, "--to", "alice@example.com",
                                "--helo", "client.test", "--header", f"Subject: {m}"],
                               capture_output=True, text=True, timeout=60)
            S.eq(p.returncode, 0, f"swaks {name} status: {p.stdout[-800:]}")
            S.check("250 2.0.0 OK queued as" in p.stdout, f"swaks {name}: queued")
            got = wait_delivered(t.d, m)
            S.check(got and received_of(got[0]) is not None, f"swaks {name}: Received with TLS")


# ---- STARTTLS state rules ----

def test_starttls_pipelined_plaintext():
    """CVE-2011-0411: commands pipelined after STARTTLS in the same packet are thrown
    away: inside TLS no MAIL exists, HELO is forgotten (503 until a new EHLO)."""
    with TlsDaemon() as t:
        m = mark()
        c = Conn(t.smtp)
        c.cmd("EHLO client.test")
        c.send("STARTTLS\r\nMAIL FROM:<evil@else.test>\r\nRCPT TO:<alice@example.com>\r\n"
               "DATA\r\n")
        r = c.reply()
        S.eq(r.code, 220, "STARTTLS 220")
        S.eq(c.buf, b"", "no reply to the pipelined commands in plaintext")
        tls = client_ctx().wrap_socket(c.sock)
        c.sock = tls
        r = c.cmd("MAIL FROM:<bob@else.test>")
        S.check(r is not None and r.code == 503, f"MAIL before a new EHLO: 503 ({r})")
        r = c.cmd("EHLO client.test")
        S.eq(r.code if r else None, 250, "EHLO inside TLS")
        r = c.cmd("RCPT TO:<alice@example.com>")
        S.check(r is not None and r.code == 503, f"the pipelined MAIL never ran: RCPT 503 ({r})")
        r = c.cmd("DATA")
        S.check(r is not None and r.code == 503, f"no transaction: DATA 503 ({r})")
        # A positive control in the same session: a real transaction inside TLS works.
        c.cmd("MAIL FROM:<bob@else.test>")
        c.cmd("RCPT TO:<alice@example.com>")
        r = c.cmd("DATA")
        S.eq(r.code if r else None, 354, "DATA inside TLS")
        c.send(msg(m) + ".\r\n")
        r = c.reply()
        S.eq(r.code, 250, "queued inside TLS")
        c.cmd("QUIT")
        c.close()
        S.eq(len(wait_delivered(t.d, m)), 1, "control delivered")
        S.check("evil@else.test" not in t.d.logtext(), "the pipelined MAIL left no trace")


def test_starttls_plaintext_after_220():
    """Plaintext sent after the 220 instead of a ClientHello: the handshake fails, the
    connection closes, no SMTP reply is ever sent for it."""
    with TlsDaemon() as t:
        c = Conn(t.smtp)
        c.cmd("EHLO client.test")
        S.eq(c.cmd("STARTTLS").code, 220, "220")
        c.send("MAIL FROM:<evil@else.test>\r\nRCPT TO:<alice@example.com>\r\n")
        S.check(c.wait_closed(WAIT), "closed after a failed handshake")
        S.check(re.search(rb"^\d{3}[ -]", c.buf) is None, f"no SMTP reply: {c.buf!r}")
        c.close()


def test_starttls_refusals():
    """STARTTLS twice (503), with a parameter (501), in a daemon without a certificate
    (454 4.7.0, and not offered in EHLO)."""
    with TlsDaemon() as t:
        c = Conn(t.smtp)
        c.cmd("EHLO client.test")
        r = c.cmd("STARTTLS now")
        S.eq((r.code, r.enhanced), (501, "5.5.4"), "STARTTLS with a parameter")
        S.eq(c.cmd("STARTTLS").code, 220, "then STARTTLS")
        c.sock = client_ctx().wrap_socket(c.sock)
        c.cmd("EHLO client.test")
        r = c.cmd("STARTTLS")
        S.eq((r.code, r.enhanced), (503, "5.5.1"), "second STARTTLS (RFC 3207)")
        S.check(c.is_open(), "the session goes on after the 503")
        c.close()
    with TlsDaemon(tls=False) as t:
        c = Conn(t.smtp)
        r = c.cmd("EHLO client.test")
        S.check(not any("STARTTLS" in ln for ln in r.lines), "no certificate: not offered")
        r = c.cmd("STARTTLS")
        S.eq((r.code, r.enhanced), (454, "4.7.0"), "no certificate: 454 4.7.0")
        S.check(c.is_open(), "still in plaintext after the 454")
        c.close()


# ---- hostile input on the TLS paths ----

def test_smtps_plaintext_and_garbage():
    """Plaintext or garbage on 465: closed (handshake error or deadline), nothing of
    the SMTP dialogue (no greeting, no reply) ever leaks in clear."""
    with TlsDaemon() as t:
        for what, data in (("plaintext EHLO", b"EHLO client.test\r\nMAIL FROM:<a@b.c>\r\n"),
                           ("garbage", os.urandom(600)),
                           ("nothing", b"")):
            s = socket.create_connection(("127.0.0.1", t.smtps), timeout=WAIT)
            if data:
                s.sendall(data)
            got, t0 = b"", time.monotonic()
            try:
                while True:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    got += chunk
            except (ConnectionResetError, socket.timeout):
                pass
            took = time.monotonic() - t0
            s.close()
            S.check(b"220" not in got and b"mx.test" not in got and b"ESMTP" not in got,
                    f"{what}: nothing leaked: {got!r}")
            S.check(took < 8, f"{what}: closed within the handshake deadline ({took:.1f}s)")
        # The daemon still serves TLS afterwards.
        c = smtplib.SMTP_SSL("127.0.0.1", t.smtps, timeout=WAIT, context=client_ctx())
        S.eq(c.ehlo("client.test")[0], 250, "465 still works")
        c.quit()


def test_handshake_never_completes():
    """A STARTTLS handshake that stops half way (part of a ClientHello, then silence)
    is ended by the deadline (smtp_command_timeout = 2)."""
    with TlsDaemon() as t:
        for port, name in ((t.sub, "587 STARTTLS"), (t.smtps, "465")):
            c = Conn(t.sub) if port == t.sub else None
            if c:
                c.cmd("EHLO client.test")
                S.eq(c.cmd("STARTTLS").code, 220, "220")
                s = c.sock
            else:
                s = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
            s.sendall(bytes.fromhex("160301020001"))  # a record header and one octet of it
            t0 = time.monotonic()
            s.settimeout(WAIT)
            try:
                rest = s.recv(4096)
            except (ConnectionResetError, socket.timeout):
                rest = b""
            took = time.monotonic() - t0
            S.check(took >= 1.5, f"{name}: waited for the deadline ({took:.1f}s)")
            S.check(took < 8, f"{name}: closed by the deadline ({took:.1f}s)")
            S.check(b"220" not in rest, f"{name}: no reply in clear")
            s.close()


def test_tls_close_mid_data():
    """TLS closed (close_notify) in the middle of DATA, then cleartext: the session
    ends, nothing is queued or delivered, the daemon keeps serving. Control: the same
    transaction without the close is delivered."""
    with TlsDaemon() as t:
        m_bad, m_good = mark(), mark()
        for m, close in ((m_bad, True), (m_good, False)):
            c = Conn(t.smtp)
            c.cmd("EHLO client.test")
            c.cmd("STARTTLS")
            c.sock = client_ctx().wrap_socket(c.sock)
            c.cmd("EHLO client.test")
            c.cmd("MAIL FROM:<bob@else.test>")
            c.cmd("RCPT TO:<alice@example.com>")
            S.eq(c.cmd("DATA").code, 354, "354")
            c.send(f"Subject: {m}\r\n\r\nfirst half\r\n")
            if close:
                plain = c.sock.unwrap()  # our close_notify; returns once the server's came
                try:
                    plain.sendall(b"rest in clear\r\n.\r\nMAIL FROM:<x@else.test>\r\n")
                except OSError:
                    pass
                plain.settimeout(WAIT)
                try:
                    leaked = plain.recv(4096)
                except (OSError, socket.timeout):
                    leaked = b""
                S.eq(leaked, b"", "nothing answered in clear after the TLS close")
                plain.close()
            else:
                c.send(".\r\n")
                S.eq(c.reply().code, 250, "control queued")
                c.cmd("QUIT")
                c.close()
        S.eq(len(wait_delivered(t.d, m_good)), 1, "control delivered")
        S.eq(find_marker(t.d.state, m_bad), [], "nothing queued or delivered for the closed one")
        S.eq(queue_files(t.d.state), [], "queue empty")
        S.check(t.d.proc.poll() is None, "daemon alive")


def test_early_talker_465():
    """With a greeting pause on 465, the ClientHello is not early talk (the client
    gets 220), but a command sent inside TLS before the greeting is (554)."""
    with TlsDaemon(extra={"smtp_greet_pause_ms": "400"}) as t:
        c = smtplib.SMTP_SSL("127.0.0.1", t.smtps, timeout=WAIT, context=client_ctx())
        S.eq(c.ehlo("client.test")[0], 250, "patient TLS client greeted and served")
        c.quit()
        raw = socket.create_connection(("127.0.0.1", t.smtps), timeout=WAIT)
        tls = client_ctx().wrap_socket(raw)
        tls.sendall(b"EHLO early.test\r\n")
        tls.settimeout(WAIT)
        got = b""
        try:
            while b"\r\n" not in got:
                chunk = tls.recv(4096)
                if not chunk:
                    break
                got += chunk
        except (ssl.SSLError, OSError):
            pass
        S.check(got.startswith(b"554 5.5.0"), f"early talker inside TLS: {got!r}")
        tls.close()


def test_drain_with_tls_sessions():
    """SIGTERM with a TLS session idle and a STARTTLS handshake half done: the TLS
    session gets its 421 inside TLS, the half handshake is dropped at once, and the
    daemon stops well before its 10 s drain limit."""
    t = TlsDaemon()
    try:
        idle = smtplib.SMTP("127.0.0.1", t.sub, timeout=WAIT)
        idle.starttls(context=client_ctx())
        idle.ehlo("client.test")
        half = Conn(t.smtp)
        half.cmd("EHLO client.test")
        S.eq(half.cmd("STARTTLS").code, 220, "220")
        half.send(bytes.fromhex("160301020001"))  # read or not yet: a handshake either way
        t0 = time.monotonic()
        t.d.proc.send_signal(signal.SIGTERM)
        code, text = idle.getreply()
        S.eq(code, 421, f"421 inside TLS on shutdown: {text!r}")
        S.check(half.wait_closed(WAIT), "the half handshake is closed")
        rc = t.d.proc.wait(WAIT)
        took = time.monotonic() - t0
        S.eq(rc, 0, "clean exit")
        S.check(took < 5, f"stopped without waiting for the drain limit ({took:.1f}s)")
        idle.close()
        half.close()
    finally:
        t.d.cleanup()


# ---- the certificate: load errors and SIGHUP ----

def test_sighup_new_certificate():
    """SIGHUP re-reads the certificate and key: new connections get the new one, an
    open TLS session goes on to deliver its message; a bad pair on SIGHUP is logged
    and the last good certificate stays."""
    with TlsDaemon() as t:
        def peer_der(port, starttls):
            if starttls:
                c = smtplib.SMTP("127.0.0.1", port, timeout=WAIT)
                c.starttls(context=client_ctx())
            else:
                c = smtplib.SMTP_SSL("127.0.0.1", port, timeout=WAIT, context=client_ctx())
            der = c.sock.getpeercert(binary_form=True)
            c.quit()
            return der

        def der_of(path):
            return ssl.PEM_cert_to_DER_cert(open(path).read())

        first = der_of(t.cert)
        S.eq(peer_der(t.smtp, True), first, "the first certificate before SIGHUP")
        m = mark()
        old = smtplib.SMTP("127.0.0.1", t.smtp, timeout=WAIT)  # 25: no AUTH needed
        old.starttls(context=client_ctx())
        old.ehlo("client.test")
        old.mail("bob@else.test")
        old.rcpt("alice@example.com")
        newdir = os.path.join(t.d.dir, "new")
        os.mkdir(newdir)
        cert2, key2 = make_cert(newdir, "server", "second.mx.test")
        shutil.copy(cert2, t.cert)
        shutil.copy(key2, t.key)
        off = len(t.d.logtext())
        t.d.proc.send_signal(signal.SIGHUP)
        S.check(wait_for(lambda: "tls: certificate" in t.d.logtext()[off:], WAIT), "reloaded")
        second = der_of(t.cert)
        S.check(second != first, "a different certificate on disk")
        S.eq(peer_der(t.smtp, True), second, "25: new connections see the new certificate")
        S.eq(peer_der(t.smtps, False), second, "465: new connections see the new one")
        code, _ = old.data(msg(m))
        S.eq(code, 250, "the session opened before SIGHUP goes on")
        old.quit()
        S.eq(len(wait_delivered(t.d, m)), 1, "and its message is delivered")
        # A key that does not match: the reload keeps the running certificate.
        _, other_key = make_cert(newdir, "other", "other.mx.test")
        shutil.copy(other_key, t.key)
        off = len(t.d.logtext())
        t.d.proc.send_signal(signal.SIGHUP)
        S.check(wait_for(lambda: "does not match" in t.d.logtext()[off:], WAIT),
                f"mismatch logged: {t.d.logtext()[off:]}")
        S.eq(peer_der(t.sub, True), second, "the last good certificate stays in use")


def check_config(keys, folder):
    path = os.path.join(folder, "check.conf")
    with open(path, "w") as f:
        f.write("".join(f"{k} = {v}\n" for k, v in keys))
    p = subprocess.run([SHAREMAILD, "-c", path, "-t"], capture_output=True, text=True,
                       timeout=30)
    return p.returncode, p.stdout + p.stderr, path


def test_config_errors():
    """tls_cert_file/tls_key_file problems are errors at FILE:LINE of the key at fault."""
    with TlsDaemon(tls=False) as t:
        folder = t.d.dir
        state = os.path.join(folder, "state")
        cert, key = make_cert(folder, "good", "good.mx.test")
        _, other = make_cert(folder, "bad", "bad.mx.test")
        junk = os.path.join(folder, "junk.pem")
        with open(junk, "w") as f:
            f.write("not a certificate\n")
        base = [("hostname", "mx.test"), ("state_dir", state), ("local_domains", "example.com"),
                ("smtp_listen", f"127.0.0.1:{free_tcp_port()}")]
        rc, out, path = check_config(base + [("tls_cert_file", cert), ("tls_key_file", key)],
                                     folder)
        S.eq(rc, 0, f"a good pair: {out}")
        cases = [
            ("missing cert", [("tls_cert_file", junk + ".none"), ("tls_key_file", key)], 5,
             "cannot open"),
            ("junk cert", [("tls_cert_file", junk), ("tls_key_file", key)], 5, "no certificate"),
            ("missing key", [("tls_cert_file", cert), ("tls_key_file", folder + "/no.key")], 6,
             "cannot open"),
            ("mismatched key", [("tls_cert_file", cert), ("tls_key_file", other)], 6,
             "does not match"),
            ("key without cert", [("tls_key_file", key)], 5, "tls_cert_file is not"),
            ("smtps without cert", [("smtps_listen", f"127.0.0.1:{free_tcp_port()}")], 5,
             "tls_cert_file is not"),
        ]
        for name, extra, line, text in cases:
            rc, out, path = check_config(base + extra, folder)
            S.check(rc != 0, f"{name}: refused")
            S.check(f"{path}:{line}:" in out and text in out, f"{name}: {path}:{line}: {text}: {out}")


if __name__ == "__main__":
    sys.exit(S.run([test_starttls_smtplib, test_tls12_received, test_smtps_smtplib,
                    test_close_notify_starttls, test_openssl_s_client, test_swaks,
                    test_starttls_pipelined_plaintext, test_starttls_plaintext_after_220,
                    test_starttls_refusals, test_smtps_plaintext_and_garbage,
                    test_handshake_never_completes, test_tls_close_mid_data,
                    test_early_talker_465, test_drain_with_tls_sessions,
                    test_sighup_new_certificate, test_config_errors]))
