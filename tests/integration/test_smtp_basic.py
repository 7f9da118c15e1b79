#!/usr/bin/env python3
"""The SMTP server's normal paths against the real sharemaild, with smtplib and
swaks as independent clients: local delivery into the Maildir, unknown users,
relaying (refused from outside, queued from smtp_trusted_networks), SIZE, the
submission port, IPv6, several recipients, and a graceful SIGTERM.
"""
import os
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import smtest  # noqa: E402
from smtest import Suite, free_tcp_port, have_ipv6, maildir_new, wait_mail  # noqa: E402

daemon = smtest.smtp_daemon

S = Suite("smtp_basic")


def queue_files_containing(d, needle):
    """Queue files (outside quarantine and tmp) whose octets contain needle."""
    hits = []
    root = os.path.join(d.state, "queue")
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [x for x in dirnames if x not in ("quarantine", "tmp")]
        for f in filenames:
            try:
                with open(os.path.join(dirpath, f), "rb") as fh:
                    if needle in fh.read():
                        hits.append(f)
            except OSError:
                pass
    return hits


def message(subject, body="Hello there.\r\n", date=True):
    hdr = f"From: sender@example.org\r\nTo: alice@example.com\r\nSubject: {subject}\r\n"
    if date:
        hdr += "Date: Mon, 1 Jan 2024 00:00:00 +0000\r\n"
    return (hdr + "\r\n" + body).encode()


def enhanced(msg):
    """The enhanced status code class digit (RFC 3463) at the start of a reply text."""
    text = msg.decode() if isinstance(msg, bytes) else msg
    return text[:1] if len(text) > 2 and text[1] == "." else None


def test_local_delivery():
    with daemon() as d:
        with smtplib.SMTP("127.0.0.1", d.smtp_port, timeout=10) as c:
            code, banner = c.ehlo("client.example.org")
            S.eq(code, 250, "EHLO")
            S.check(c.has_extn("pipelining"), "PIPELINING advertised")
            S.check(c.has_extn("8bitmime"), "8BITMIME advertised")
            S.check(c.has_extn("enhancedstatuscodes"), "ENHANCEDSTATUSCODES advertised")
            S.check(c.has_extn("dsn"), "DSN advertised by default")
            code, msg = c.mail("sender@example.org")
            S.eq((code, enhanced(msg)), (250, "2"), "MAIL")
            code, msg = c.rcpt("alice@example.com")
            S.eq((code, enhanced(msg)), (250, "2"), "RCPT")
            code, msg = c.data(message("first"))
            S.eq((code, enhanced(msg)), (250, "2"), "DATA accepted")
        mails = wait_mail(d, "alice@example.com")
        S.eq(len(mails), 1, "one message in alice's Maildir/new")
        if mails:
            m = mails[0]
            S.check(b"Subject: first\r\n" in m or b"Subject: first\n" in m, "headers kept")
            S.check(b"Hello there." in m, "body kept")
            S.check(m.lower().startswith(b"return-path:") or b"\nReturn-Path:" in m,
                    "Return-Path added")
            S.check(b"Delivered-To: alice@example.com" in m, "Delivered-To added")
            S.check(b"Received:" in m, "Received added")
        S.eq(wait_mail(d, "bob@example.com", timeout=0), [], "nothing for bob")


def test_two_recipients_and_rset():
    with daemon() as d:
        with smtplib.SMTP("127.0.0.1", d.smtp_port, timeout=10) as c:
            c.ehlo("client.example.org")
            c.mail("sender@example.org")
            S.eq(c.rcpt("nobody-yet@example.com")[0], 550, "unknown first")
            code, _ = c.rset()
            S.eq(code, 250, "RSET")
            c.mail("sender@example.org")
            S.eq(c.rcpt("alice@example.com")[0], 250, "alice")
            S.eq(c.rcpt("BOB@Example.COM")[0], 250, "bob, any case")
            S.eq(c.data(message("both"))[0], 250, "DATA")
            S.eq(c.noop()[0], 250, "NOOP after a message")
        a = wait_mail(d, "alice@example.com")
        b = wait_mail(d, "bob@example.com")
        S.eq((len(a), len(b)), (1, 1), "one copy each")
        S.check(all(b"Subject: both" in m for m in a + b), "the right message")


def test_unknown_user():
    with daemon() as d:
        with smtplib.SMTP("127.0.0.1", d.smtp_port, timeout=10) as c:
            c.ehlo("client.example.org")
            c.mail("sender@example.org")
            code, msg = c.rcpt("nosuch@example.com")
            S.eq((code, enhanced(msg)), (550, "5"), "unknown local user")
            S.check(b"5.1.1" in msg, "5.1.1")
            code, msg = c.rcpt("postmaster@example.com")
            S.eq(code, 250, "postmaster is always accepted")
            code, msg = c.docmd("DATA")
            S.eq(code, 354, "DATA with postmaster")
        # sendmail() with only unknown recipients raises
        with smtplib.SMTP("127.0.0.1", d.smtp_port, timeout=10) as c:
            try:
                c.sendmail("sender@example.org", ["nosuch@example.com"], message("x"))
                S.check(False, "sendmail to an unknown user must fail")
            except smtplib.SMTPRecipientsRefused as e:
                S.eq(e.recipients["nosuch@example.com"][0], 550, "refused with 550")


def test_relay_denied_untrusted():
    with daemon() as d:
        with smtplib.SMTP("127.0.0.1", d.smtp_port, timeout=10) as c:
            c.ehlo("client.example.org")
            c.mail("sender@example.org")
            code, msg = c.rcpt("someone@elsewhere.example")
            S.eq((code, enhanced(msg)), (554, "5"), "relay denied")
            S.check(b"5.7.1" in msg, "5.7.1")
            # routing tricks do not relay either
            for trick in ("someone%elsewhere.example@example.com",
                          "@example.com:someone@elsewhere.example"):
                code, msg = c.rcpt(trick)
                S.check(code // 100 == 5, f"{trick}: 5xx, got {code}")
        S.eq(queue_files_containing(d, b"elsewhere.example"), [], "nothing queued")


def test_relay_from_trusted():
    with daemon({"smtp_trusted_networks": "127.0.0.0/8"}) as d:
        with smtplib.SMTP("127.0.0.1", d.smtp_port, timeout=10) as c:
            c.ehlo("client.example.org")
            c.mail("sender@example.org")
            code, msg = c.rcpt("someone@elsewhere.example")
            S.eq((code, enhanced(msg)), (250, "2"), "relay allowed from trusted network")
            code, msg = c.data(message("outbound"))
            S.eq(code, 250, "queued")
        # Remote delivery does not exist yet: the message stays in the queue.
        time.sleep(0.5)
        S.check(len(queue_files_containing(d, b"someone@elsewhere.example")) >= 1,
                "the remote recipient stays queued")
        p = d.cli("queue", "list", check=False)
        if p.returncode == 0:
            S.check("someone@elsewhere.example" in p.stdout or p.stdout.strip() != "",
                    "sharemail queue list shows it")


def test_size():
    with daemon({"smtp_max_message_size": "20k"}) as d:
        with smtplib.SMTP("127.0.0.1", d.smtp_port, timeout=10) as c:
            c.ehlo("client.example.org")
            S.check(c.has_extn("size"), "SIZE advertised")
            S.eq(c.esmtp_features.get("size"), "20480", "SIZE value is the limit")
            code, msg = c.mail("sender@example.org", ["SIZE=30000"])
            S.eq((code, enhanced(msg)), (552, "5"), "MAIL SIZE= over the limit")
            code, msg = c.mail("sender@example.org", ["SIZE=1000"])
            S.eq(code, 250, "MAIL SIZE= under the limit")
            c.rcpt("alice@example.com")
            code, msg = c.data(message("small", "x" * 70 + "\r\n"))
            S.eq(code, 250, "small message")
            c.mail("sender@example.org")
            c.rcpt("alice@example.com")
            code, msg = c.data(message("too big", ("y" * 70 + "\r\n") * 400))
            S.eq((code, enhanced(msg)), (552, "5"), "552 after the dot")
            S.eq(c.noop()[0], 250, "session goes on after 552")
        mails = wait_mail(d, "alice@example.com")
        time.sleep(0.3)
        mails = wait_mail(d, "alice@example.com")
        S.eq(len(mails), 1, "only the small message delivered")


def test_submission_port():
    """587 (RFC 6409): MAIL before AUTH is 530 5.7.0 (ISSUE 9); the authenticated
    path is tests/integration/test_auth.py's."""
    port = free_tcp_port()
    with daemon({"submission_listen": f"127.0.0.1:{port}"}) as d:
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as c:
            S.eq(c.ehlo("client.example.org")[0], 250, "EHLO on submission")
            code, msg = c.mail("sender@example.org")
            S.eq((code, enhanced(msg)), (530, "5"), "MAIL before AUTH on submission")
            S.eq(c.rcpt("alice@example.com")[0], 503, "no transaction began")


def test_ipv6():
    if not have_ipv6():
        S.skip("no IPv6 loopback (::1) here")
        return
    port6 = free_tcp_port("::1")
    with daemon({"smtp_listen": [f"127.0.0.1:{free_tcp_port()}", f"[::1]:{port6}"]}) as d:
        with smtplib.SMTP("::1", port6, timeout=10) as c:
            S.eq(c.ehlo("client.example.org")[0], 250, "EHLO over IPv6")
            c.mail("sender@example.org")
            S.eq(c.rcpt("alice@example.com")[0], 250, "RCPT over IPv6")
            S.eq(c.data(message("over v6"))[0], 250, "DATA over IPv6")
        mails = wait_mail(d, "alice@example.com")
        S.check(len(mails) == 1 and b"over v6" in mails[0], "delivered from IPv6")
        S.check(b"::1" in mails[0] if mails else False, "Received names the IPv6 peer")


def test_swaks_normal():
    if not shutil.which("swaks"):
        S.check(False, "swaks is not installed (scripts/install-deps installs it)")
        return
    with daemon() as d:
        p = subprocess.run(["swaks", "--server", "127.0.0.1", "--port", str(d.smtp_port),
                            "--from", "sender@example.org", "--to", "alice@example.com",
                            "--helo", "swaks.example.org", "--header", "Subject: from swaks",
                            "--body", "swaks body line"],
                           capture_output=True, text=True, timeout=60)
        S.eq(p.returncode, 0, "swaks exit status:\n" + p.stdout + p.stderr)
        S.check("<~  250 2." in p.stdout or "<-  250 2." in p.stdout, "250 2.x.x in transcript")
        mails = wait_mail(d, "alice@example.com")
        S.check(len(mails) == 1 and b"swaks body line" in mails[0], "swaks message delivered")
        p = subprocess.run(["swaks", "--server", "127.0.0.1", "--port", str(d.smtp_port),
                            "--from", "sender@example.org", "--to", "nosuch@example.com",
                            "--helo", "swaks.example.org"],
                           capture_output=True, text=True, timeout=60)
        S.check(p.returncode != 0, "swaks to an unknown user fails")
        S.check("<** 550 5.1.1" in p.stdout, "550 5.1.1 in swaks transcript:\n" + p.stdout)


def recv_reply(sock, timeout=10):
    """Reads one complete (possibly multi-line) reply; returns its lines."""
    sock.settimeout(timeout)
    buf = b""
    while True:
        lines = buf.split(b"\r\n")
        for ln in lines[:-1]:
            if len(ln) >= 4 and ln[3:4] == b" ":
                return lines[:-1]
        chunk = sock.recv(4096)
        if not chunk:
            return buf.split(b"\r\n") if buf else []
        buf += chunk


def test_sigterm_ends_sessions():
    d = daemon()
    try:
        s = socket.create_connection(("127.0.0.1", d.smtp_port), timeout=10)
        greeting = recv_reply(s)
        S.check(greeting and greeting[-1].startswith(b"220 "), f"greeting {greeting!r}")
        s.sendall(b"EHLO client.example.org\r\n")
        recv_reply(s)
        d.proc.send_signal(signal.SIGTERM)
        reply = recv_reply(s)
        S.check(reply and reply[-1].startswith(b"421 4."), f"421 on shutdown, got {reply!r}")
        s.settimeout(10)
        S.eq(s.recv(100), b"", "then closed")
        s.close()
        S.eq(d.proc.wait(10), 0, "daemon exit status")
        S.check("sharemaild ready" in d.logtext(), "ready was logged")
        with socket.socket() as t:
            S.check(t.connect_ex(("127.0.0.1", d.smtp_port)) != 0, "no longer listening")
    finally:
        d.cleanup()


def test_restart_keeps_queue_and_delivers():
    """A message accepted right before SIGTERM is delivered (now or after a restart)."""
    d = daemon()
    try:
        with smtplib.SMTP("127.0.0.1", d.smtp_port, timeout=10) as c:
            S.eq(c.sendmail("sender@example.org", ["bob@example.com"], message("kept")), {},
                 "accepted")
        S.eq(d.stop(), 0, "clean stop")
        os.unlink(d.log_path)  # Daemon.start() waits for "ready" in a fresh log
        d.start()
        mails = wait_mail(d, "bob@example.com")
        S.eq(len(mails), 1, "delivered exactly once")
    finally:
        d.cleanup()


def test_listen_failure_is_fatal():
    """A listener that cannot be bound stops the start: no "ready", exit status 1."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        d = smtest.Daemon(conf={"smtp_listen": f"127.0.0.1:{port}"}, minger=False)
        try:
            S.raises(RuntimeError, lambda: d.start(wait=10), "the daemon must not become ready")
            S.check("sharemaild ready" not in d.logtext(), "ready not logged")
            S.check(f"127.0.0.1:{port}" in d.logtext(), "the address is named in the log")
            S.eq(d.proc.returncode if d.proc else None, 1, "exit status 1")
        finally:
            d.cleanup()


if __name__ == "__main__":
    sys.exit(S.run([test_local_delivery, test_two_recipients_and_rset, test_unknown_user,
                    test_relay_denied_untrusted, test_relay_from_trusted, test_size,
                    test_submission_port, test_ipv6, test_swaks_normal,
                    test_sigterm_ends_sessions, test_restart_keeps_queue_and_delivers,
                    test_listen_failure_is_fatal]))
