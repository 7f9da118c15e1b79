#!/usr/bin/env python3
"""Hostile SMTP input against the real sharemaild (hostile-inputs.md: "SMTP framing",
"Addresses and parameters", "Limits and load").

Every test talks raw octets through smtpraw.Conn and checks the first digit of the
reply code, the enhanced-code class, whether the connection is still open, and what
ended up in the queue (<state>/queue/msg) or a Maildir (<state>/mail/*/*/Maildir).
Each "nothing was stored" check is paired with a positive control in the same daemon
that proves a good message with the same kind of marker does get stored.

127.0.0.1 is an untrusted client; 127.0.0.2 is in smtp_trusted_networks.
"""
import os
import socket
import sys
import threading
import time
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from smtest import Daemon, Suite, free_tcp_port  # noqa: E402
from smtpraw import (Conn, consistent, digit, enh_class, find_marker, message,  # noqa: E402
                     read, restart, rss_kib, send_mail, wait_for)

S = Suite("smtp_hostile")
ACCOUNTS = ["bob@example.com", "alice@example.com", "postmaster@example.com"]
UNTRUSTED = "127.0.0.1"
TRUSTED = "127.0.0.2"


def mark():
    return "M" + uuid.uuid4().hex[:16]


def start_daemon(extra=None, accounts=ACCOUNTS):
    port = free_tcp_port()
    conf = {"smtp_listen": f"127.0.0.1:{port}", "smtp_trusted_networks": f"{TRUSTED}/32",
            "smtp_max_message_size": "100k", "queue_min_free": "0",
            "smtp_command_timeout": "60", "smtp_data_timeout": "60"}
    conf.update(extra or {})
    d = Daemon(conf=conf, minger=False)
    try:
        for a in accounts:
            d.cli("account", "add", a, "--no-password")
        d.start()
    except Exception:
        d.cleanup()
        raise
    d.port = port
    return d


_shared = None


def shared():
    """One daemon with the default test config, reused by tests that need nothing special."""
    global _shared
    if _shared is None or _shared.proc is None or _shared.proc.poll() is not None:
        if _shared is not None:
            _shared.cleanup()
        _shared = start_daemon()
    return _shared


def expect(r, first, what, codes=None):
    """Reply r has first digit `first` (and code in codes if given) and a consistent enhanced code."""
    ok = r is not None and digit(r) == first and (codes is None or r.code in codes)
    S.check(ok, f"{what}: got {r and r.lines}, want {codes or str(first) + 'xx'}")
    # RFC 2034: every reply but the greeting and the EHLO/HELO answer carries one
    if r is not None and first in (2, 4, 5) and r.code not in (220, 221, 354, 421) and \
            not what.split()[0] in ("EHLO", "HELO") and "EHLO" not in what:
        S.check(r.enhanced is not None and consistent(r),
                f"{what}: enhanced code class of {r.lines}")
    return ok


def delivered(d, marker, n=1, timeout=15.0):
    """Waits until marker is in at least n Maildir files; checks and returns the files."""
    files = wait_for(lambda: len(find_marker(d.state, marker, "maildir")) >= n and
                     find_marker(d.state, marker, "maildir"), timeout)
    files = find_marker(d.state, marker, "maildir")
    S.check(len(files) >= n, f"{marker} delivered to {n} mailbox(es): found {len(files)}")
    return files


def absent(d, marker, settle=0.7):
    """Nothing holding marker in the queue or any Maildir (after a moment for delivery)."""
    time.sleep(settle)
    found = find_marker(d.state, marker)
    S.check(found == [], f"{marker} must not be stored, found in {found}")


def control(d, source=None):
    """Positive control: a good message from this daemon's client is delivered."""
    m = mark()
    out = send_mail(d.port, "sender@client.test", ["bob@example.com"], message(m), source=source)
    S.check(out[-1] is not None and out[-1].code == 250, f"control message accepted: {out}")
    delivered(d, m)


def alive(d):
    S.check(d.proc.poll() is None, "daemon still running")
    with Conn(d.port) as c:
        S.eq(c.greeting.code, 220, "new client greeted")
        expect(c.cmd("EHLO alive.test"), 2, "new client EHLO")


def open_data(c, rcpt="bob@example.com", sender="sender@client.test"):
    expect(c.cmd("EHLO client.test"), 2, "EHLO")
    expect(c.cmd(f"MAIL FROM:<{sender}>"), 2, "MAIL")
    expect(c.cmd(f"RCPT TO:<{rcpt}>"), 2, "RCPT")
    r = c.cmd("DATA")
    S.check(r is not None and r.code == 354, f"DATA 354: {r and r.lines}")


# ---- SMTP framing ------------------------------------------------------------------

SMUGGLES = [b"\n.\n", b"\n.\r\n", b"\r.\r", b"\r\n.\n", b"\r\n.\r", b"\n.\r", b"\r.\r\n"]


def test_smuggling_in_data():
    d = shared()
    for sm in SMUGGLES:
        outer, inner = mark(), mark()
        with Conn(d.port) as c:
            open_data(c)
            payload = (message(outer).encode() + b"x" + sm +
                       b"MAIL FROM:<evil@client.test>\r\nRCPT TO:<alice@example.com>\r\nDATA\r\n" +
                       message(inner).encode() + b"\r\n.\r\n")
            c.send(payload)
            rs = c.drain(3)
            closed = c.wait_closed(10)
        S.check(rs and digit(rs[0]) == 5, f"smuggle {sm!r}: first reply 5xx: {rs}")
        S.check(all(digit(r) != 2 for r in rs), f"smuggle {sm!r}: no 2xx after it: {rs}")
        S.check(closed, f"smuggle {sm!r}: connection closed")
        absent(d, outer)
        absent(d, inner, settle=0)
    control(d)


def test_smuggling_in_commands():
    d = shared()
    for sm in [b"\n", b"\r"]:
        m = mark()
        with Conn(d.port) as c:
            expect(c.cmd("EHLO client.test"), 2, "EHLO")
            c.send(b"MAIL FROM:<sender@client.test>" + sm + b"RCPT TO:<bob@example.com>\r\n"
                   b"RCPT TO:<bob@example.com>\r\nDATA\r\n" + message(m).encode() + b".\r\n")
            rs = c.drain(3)
            closed = c.wait_closed(10)
        S.check(rs and digit(rs[0]) == 5, f"bare {sm!r} in command: 5xx: {rs}")
        S.check(all(r.code not in (250, 354) for r in rs), f"bare {sm!r}: nothing ran: {rs}")
        S.check(closed, f"bare {sm!r} in command: closed")
        absent(d, m)


def test_end_of_data_one_byte_per_write():
    d = shared()
    m = mark()
    with Conn(d.port) as c:
        open_data(c)
        c.send(message(m).encode() + b"line two")
        for b in b"\r\n.\r\n":
            c.send(bytes([b]))
            time.sleep(0.03)
        r = c.reply_or_none(30)
        expect(r, 2, "one-byte end of data", (250,))
        extra = c.drain(0.5)
        S.eq(extra, [], "no further replies")
        expect(c.cmd("QUIT"), 2, "QUIT", (221,))
    files = delivered(d, m)
    S.eq(len(files), 1, "exactly one message")


def test_dot_stuffing_round_trip():
    d = shared()
    m = mark()
    body = f"first\r\n..x\r\n...\r\n..\r\n.. leading\r\nlast {m}\r\n"
    out = send_mail(d.port, "sender@client.test", ["bob@example.com"], message(m, body=body))
    expect(out[-1], 2, "dot-stuffed message", (250,))
    files = delivered(d, m)
    if files:
        got = read(files[0]).replace(b"\r\n", b"\n")
        want = f"\n\nfirst\n.x\n..\n.\n. leading\nlast {m}\n".encode()
        S.check(got.endswith(want), f"unstuffed body byte-exact: {got[-120:]!r}")


def body_lines(data):
    """The lines of a stored message's body (after the first empty line), without line ends
    (a Maildir file has LF line ends)."""
    return data.replace(b"\r\n", b"\n").split(b"\n\n", 1)[-1].split(b"\n")


def test_longest_line_with_leading_dot():
    """RFC 5321 4.5.3.1.6: 998 octets of text; the transparency dot (4.5.2) is not text."""
    d = shared()
    m = mark()
    line = b"." + b"x" * 997  # a legal 998-octet line: 999 octets on the wire
    c_body = b"Subject: " + m.encode() + b"\r\n\r\n" + b"." + line + b"\r\nend\r\n"
    with Conn(d.port) as c:
        open_data(c)
        c.send(c_body + b".\r\n")
        expect(c.reply_or_none(30), 2, "998-octet line starting with '.'", (250,))
    files = delivered(d, m)
    if files:
        lines = body_lines(read(files[0]))
        S.check(line in lines, "stored as 998 octets starting with '.'")
        S.check(b"." + line not in lines, "the transparency dot is not stored")
    # one more octet of text is over the limit, stuffed or not
    for what, wire in (("999 octets", b"y" * 999), ("999 octets after '.'", b".." + b"y" * 998)):
        m = mark()
        with Conn(d.port) as c:
            open_data(c)
            c.send(b"Subject: " + m.encode() + b"\r\n\r\n" + wire + b"\r\n.\r\n")
            r = c.reply_or_none(30)
            expect(r, 5, what, (550,))
            S.eq(r and r.enhanced, "5.6.0", f"{what}: enhanced code")
            S.check(c.is_open(), f"{what}: session goes on")
        absent(d, m)


def test_early_talker():
    d = start_daemon({"smtp_greet_pause_ms": "300"})
    try:
        m = mark()
        with Conn(d.port, greet=False) as c:
            c.send(b"EHLO early.test\r\nMAIL FROM:<a@client.test>\r\nRCPT TO:<bob@example.com>\r\n"
                   b"DATA\r\n" + message(m).encode() + b".\r\n")
            rs = c.drain(3)
            closed = c.wait_closed(10)
        S.check(rs and digit(rs[0]) == 5, f"early talker refused: {rs}")
        S.check(all(r.code not in (220, 250, 354) for r in rs), f"early talker: nothing ran {rs}")
        S.check(closed, "early talker closed")
        absent(d, m)
        with Conn(d.port) as c:  # a patient client is served
            S.eq(c.greeting.code, 220, "patient client greeted")
            expect(c.cmd("EHLO patient.test"), 2, "patient EHLO")
        control(d)
    finally:
        d.cleanup()


def test_pipelining_after_helo_refused():
    d = shared()
    m = mark()
    with Conn(d.port) as c:
        expect(c.cmd("HELO client.test"), 2, "HELO")
        c.send(b"MAIL FROM:<a@client.test>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n")
        rs = c.drain(2)
        S.check(any(digit(r) == 5 for r in rs), f"pipelining after HELO refused: {rs}")
        S.check(all(r.code != 354 for r in rs), f"no DATA after HELO pipelining: {rs}")
        c.send(message(m).encode() + b".\r\n")
        c.drain(1)
    absent(d, m)


def test_pipelining_after_ehlo_works():
    d = shared()
    m = mark()
    with Conn(d.port) as c:
        r = c.cmd("EHLO client.test")
        expect(r, 2, "EHLO")
        S.check(r and any("PIPELINING" in l.upper() for l in r.lines), "PIPELINING advertised")
        c.send(b"MAIL FROM:<a@client.test>\r\nRCPT TO:<bob@example.com>\r\n"
               b"RCPT TO:<alice@example.com>\r\nDATA\r\n")
        rs = c.replies(4)
        S.eq([x.code for x in rs], [250, 250, 250, 354], "pipelined MAIL/RCPT/RCPT/DATA")
        c.send(message(m).encode() + b".\r\nQUIT\r\n")
        rs = c.replies(2, 30)
        S.eq([x.code for x in rs], [250, 221], "pipelined end of data and QUIT")
    delivered(d, m, 2)


def test_long_command_line():
    d = shared()
    with Conn(d.port) as c:
        expect(c.cmd("EHLO client.test"), 2, "EHLO")
        expect(c.cmd("NOOP " + "a" * 600), 5, "600-octet command", (500,))
        expect(c.cmd("MAIL FROM:<" + "b" * 40 + "@" + "c" * 600 + ".test>"), 5,
               "long MAIL line", (500, 501, 553))
        S.check(c.is_open(), "connection kept after long lines")
        expect(c.cmd("MAIL FROM:<a@client.test>"), 2, "MAIL still works")


def test_megabyte_without_crlf():
    d = shared()
    before = rss_kib(d.proc.pid)
    with Conn(d.port) as c:
        expect(c.cmd("EHLO client.test"), 2, "EHLO")
        sent_ok = True
        chunk = b"A" * 65536
        for _ in range(16):
            if not c.send(chunk):
                sent_ok = False
                break
        rs = c.drain(5)
        closed = c.wait_closed(15)
    S.check(closed, f"megabyte line: connection closed (sent all: {sent_ok})")
    S.check(all(digit(r) != 2 for r in rs), f"megabyte line: no 2xx: {rs}")
    S.check(any(r.code == 421 for r in rs), f"megabyte line: 421 before closing: {rs}")
    after = rss_kib(d.proc.pid)
    S.check(after - before < 20 * 1024, f"RSS growth {after - before} KiB < 20 MiB")
    alive(d)


def test_nul_in_command():
    d = shared()
    with Conn(d.port) as c:
        expect(c.cmd(b"EHLO client\x00.test"), 5, "NUL in EHLO", (501,))
        expect(c.cmd("EHLO client.test"), 2, "EHLO")
        expect(c.cmd(b"MAIL FROM:<a\x00b@client.test>"), 5, "NUL in MAIL", (501,))
        expect(c.cmd("MAIL FROM:<a@client.test>"), 2, "MAIL")
        expect(c.cmd(b"RCPT TO:<bob@example.com>\x00 NOTIFY=NEVER"), 5, "NUL in RCPT", (501,))
        expect(c.cmd(b"NOOP\x00"), 5, "NUL in NOOP", (501,))
        S.check(c.is_open(), "kept after NUL")


def test_8bit_address():
    d = shared()
    with Conn(d.port) as c:
        expect(c.cmd("EHLO client.test"), 2, "EHLO")
        expect(c.cmd(b"MAIL FROM:<j\xc3\xb6rg@client.test>"), 5, "8-bit sender", (553,))
        expect(c.cmd("MAIL FROM:<a@client.test>"), 2, "MAIL")
        expect(c.cmd(b"RCPT TO:<b\xf6b@example.com>"), 5, "8-bit recipient", (553,))
        expect(c.cmd(b"RCPT TO:<bob@ex\xc3\xa4mple.com>"), 5, "8-bit domain", (553,))
        S.check(c.is_open(), "kept after 8-bit addresses")


def test_sequence_errors():
    d = shared()
    with Conn(d.port) as c:
        expect(c.cmd("MAIL FROM:<a@client.test>"), 5, "MAIL before EHLO", (503,))
        expect(c.cmd("EHLO client.test"), 2, "EHLO")
        expect(c.cmd("DATA"), 5, "DATA before MAIL", (503,))
        expect(c.cmd("RCPT TO:<bob@example.com>"), 5, "RCPT before MAIL", (503,))
        expect(c.cmd("MAIL FROM:<a@client.test>"), 2, "MAIL")
        expect(c.cmd("MAIL FROM:<a@client.test>"), 5, "MAIL twice", (503,))
        expect(c.cmd("DATA"), 5, "DATA before RCPT", (503,))
        S.check(c.is_open(), "kept after sequence errors")


def test_too_many_errors():
    d = shared()
    with Conn(d.port) as c:
        expect(c.cmd("EHLO client.test"), 2, "EHLO")
        rs = []
        for _ in range(40):
            r = c.cmd("XYZZY")
            if r is None:
                break
            rs.append(r)
            if r.code == 421:
                break
        closed = c.wait_closed(10)
    S.check(len(rs) < 40, f"session ended before 40 errors ({len(rs)} replies)")
    S.check(rs and rs[-1].code == 421, f"421 at the end: {rs[-1:] }")
    S.check(all(digit(r) == 5 for r in rs[:-1]), "5xx before that")
    # smtp_max_errors defaults to 20 (Postfix's hard limit): the 21st error ends it
    S.eq(len(rs) - 1, 21, "errors answered before the 421")
    S.check(closed, "closed after too many errors")
    alive(d)


# ---- addresses and parameters -----------------------------------------------------

QUOTED = ['"a b"@example.com', '"john..doe"@example.com']


def test_quoted_local_parts():
    """Quoted local parts are RFC 5321 mailboxes: the tool creates them, RCPT accepts
    them through the same lookup, and delivery keeps them byte-exact."""
    d = start_daemon(accounts=ACCOUNTS + QUOTED)  # before the start: no refresh to wait for
    try:
        for addr in QUOTED:
            m = mark()
            with Conn(d.port) as c:
                expect(c.cmd("EHLO client.test"), 2, "EHLO")
                expect(c.cmd("MAIL FROM:<sender@client.test>"), 2, "MAIL")
                expect(c.cmd(f"RCPT TO:<{addr}>"), 2, f"RCPT {addr}", (250,))
                expect(c.cmd("DATA"), 3, "DATA", (354,))
                c.send(message(m).encode() + b".\r\n")
                expect(c.reply_or_none(30), 2, "end of data", (250,))
            files = delivered(d, m)
            S.eq(len(files), 1, f"{addr}: one copy")
            for f in files:
                S.check(f"Delivered-To: {addr}".encode() in read(f),
                        f"{addr} byte-exact in the delivered file")
        with Conn(d.port) as c:  # the quotes are part of the address: no such account
            expect(c.cmd("EHLO client.test"), 2, "EHLO")
            expect(c.cmd("MAIL FROM:<sender@client.test>"), 2, "MAIL")
            r = c.cmd('RCPT TO:<"a  b"@example.com>')
            expect(r, 5, "RCPT of another quoted local part", (550,))
            S.eq(r and r.enhanced, "5.1.1", "unknown, not a relay refusal")
    finally:
        d.cleanup()


ROUTING = ['"victim@remote.test"@example.com', "victim%remote.test@example.com",
           "remote.test!victim@example.com", "@example.com:victim@remote.test",
           "@example.com,@other.test:victim@remote.test", "victim@[192.0.2.1]",
           "nobody@[127.0.0.1]", "victim@remote.test.", "victim@[IPv6:2001:db8::1]",
           "bob@example.com@remote.test", "victim@remote.test@example.com"]


def test_routing_tricks_never_relay():
    d = shared()
    m = mark()
    with Conn(d.port, source=UNTRUSTED) as c:
        expect(c.cmd("EHLO client.test"), 2, "EHLO")
        accepted = []
        for rcpt in ROUTING:
            expect(c.cmd("MAIL FROM:<sender@client.test>"), 2, "MAIL")
            r = c.cmd(f"RCPT TO:<{rcpt}>")
            S.check(r is not None and digit(r) in (4, 5), f"{rcpt}: refused, got {r and r.lines}")
            if r is not None and r.code == 250:
                accepted.append(rcpt)
            expect(c.cmd("RSET"), 2, "RSET")
        if accepted:  # a bug: find out whether it would really queue remote mail
            c.cmd("MAIL FROM:<sender@client.test>")
            for rcpt in accepted:
                c.cmd(f"RCPT TO:<{rcpt}>")
            if c.cmd("DATA").code == 354:
                c.send(message(m).encode() + b".\r\n")
                c.reply_or_none(30)
    absent(d, m)


def test_length_limits():
    d = shared()
    local65 = "l" * 65 + "@example.com"
    dom256 = "a@" + ".".join(["d" * 63] * 4) + ".test"  # 4*64+4 > 255
    path257 = "p" * 64 + "@" + ".".join(["e" * 60] * 3) + "." + "f" * 12 + ".test"
    S.check(len(path257) > 256 and len(path257.split("@")[1]) <= 255, "test path sizes")
    with Conn(d.port) as c:
        expect(c.cmd("EHLO client.test"), 2, "EHLO")
        for a in (local65, dom256, path257):
            expect(c.cmd(f"MAIL FROM:<{a}>"), 5, f"MAIL {len(a)} octets", (501, 553))
        expect(c.cmd("MAIL FROM:<a@client.test>"), 2, "MAIL")
        for a in (local65, dom256, path257):
            expect(c.cmd(f"RCPT TO:<{a}>"), 5, f"RCPT {len(a)} octets", (501, 553))
        S.check(c.is_open(), "kept after over-long addresses")


def test_null_sender_and_postmaster():
    d = shared()
    m = mark()
    with Conn(d.port) as c:
        expect(c.cmd("EHLO client.test"), 2, "EHLO")
        expect(c.cmd("MAIL FROM:<>"), 2, "MAIL FROM:<>", (250,))
        expect(c.cmd("RCPT TO:<>"), 5, "RCPT TO:<>")
        expect(c.cmd("RCPT TO:<Postmaster>"), 2, "RCPT TO:<Postmaster>", (250,))
        expect(c.cmd("DATA"), 3, "DATA", (354,))
        c.send(message(m).encode() + b".\r\n")
        expect(c.reply_or_none(30), 2, "bounce-like message to Postmaster", (250,))
    files = delivered(d, m)
    S.check(files and "postmaster" in files[0].lower(), f"delivered to postmaster: {files}")


def test_metacharacters_literal():
    d = shared()
    m = mark()
    hostile = ";sleep 5;", "$(id)", "%n%s%n%s", "${run{/bin/sh -c id}}", "`id`"
    with Conn(d.port) as c:
        for h in hostile:  # accepted or refused as syntax, promptly, never run
            r = c.cmd(f"EHLO {h}", 4)
            S.check(r is not None and digit(r) in (2, 5), f"EHLO {h!r}: {r and r.lines}")
        expect(c.cmd("EHLO meta.test"), 2, "EHLO")
        for h in hostile:
            r = c.cmd(f'MAIL FROM:<"{h}"@client.test>', 4)
            S.check(r is not None and digit(r) in (2, 5), f"MAIL {h!r}: {r and r.lines}")
            c.cmd("RSET", 4)
            r = c.cmd(f"VRFY {h}", 4)
            S.check(r is not None and digit(r) in (2, 5), f"VRFY {h!r}: {r and r.lines}")
        expect(c.cmd('MAIL FROM:<"%n%s;sleep 5;$(id)"@client.test>', 4), 2, "quoted sender")
        for h in ("%n%s", "${run{id}}"):
            expect(c.cmd(f"RCPT TO:<{h}@example.com>", 4), 5, f"RCPT {h!r}", (550,))
        expect(c.cmd("RCPT TO:<bob@example.com>", 4), 2, "RCPT")
        expect(c.cmd("DATA", 4), 3, "DATA")
        c.send(message(m, "X-Meta: ${run{/bin/sh -c id}} $(id) `id` %n%s\r\n").encode() +
               b".\r\n")
        expect(c.reply_or_none(30), 2, "end of data")
    files = delivered(d, m)
    if files:
        data = read(files[0])
        S.check(b"${run{/bin/sh -c id}} $(id) `id` %n%s" in data, "header stored literally")
        S.check(b"%n%s;sleep 5;$(id)" in data, "sender stored literally (Return-Path)")
        S.check(b"uid=" not in data, "no command output anywhere")
    alive(d)


def test_control_bytes_in_esmtp_params():
    d = shared()
    m = mark()
    with Conn(d.port, source=TRUSTED) as c:
        expect(c.cmd("EHLO client.test"), 2, "EHLO")
        for p in ("ENVID=ok+0D+0ARCPT+20TO:<evil@evil.test>", "ENVID=a+0Ab", "ENVID=a+00b",
                  "AUTH=<>+0D+0Aevil", "RET=HDRS ENVID=x+0Dy"):
            r = c.cmd(f"MAIL FROM:<sender@client.test> {p}")
            expect(r, 5, f"MAIL {p}", (501, 555))
        expect(c.cmd(f"MAIL FROM:<sender@client.test> ENVID={m}"), 2, "MAIL with clean ENVID")
        for p in ("ORCPT=rfc822;far+0D+0ARCPT+3Aevil@evil.test",
                  "ORCPT=rfc822;far+0A@remote.test", "ORCPT=rfc822;far+00@remote.test",
                  "NOTIFY=FAILURE ORCPT=rfc822;x+0D@remote.test"):
            expect(c.cmd(f"RCPT TO:<far@remote.test> {p}"), 5, f"RCPT {p}", (501, 555))
        expect(c.cmd("RCPT TO:<far@remote.test> NOTIFY=FAILURE ORCPT=rfc822;far@remote.test"),
               2, "clean RCPT to a remote recipient from a trusted client")
        expect(c.cmd("DATA"), 3, "DATA")
        c.send(message(m).encode() + b".\r\n")
        expect(c.reply_or_none(30), 2, "end of data", (250,))
    restart(d)
    files = wait_for(lambda: find_marker(d.state, m, "queue"), 5)
    S.check(len(files) == 1, f"the remote message stays queued across a restart: {files}")
    for f in files:
        data = read(f)
        S.check(b"evil" not in data, "no injected recipient in the queue file")
        S.check(data.count(b"far@remote.test") >= 1, "the real recipient is there")
    p = d.cli("queue", "list", check=False)
    S.check("evil" not in p.stdout, f"queue list shows no injected recipient: {p.stdout!r}")
    S.check(find_marker(d.state, "evil", "maildir") == [], "nothing delivered to evil")


def test_broken_size_and_unknown_params():
    d = shared()
    with Conn(d.port) as c:
        r = c.cmd("EHLO client.test")
        S.check(r and any(l[4:].upper().startswith("SIZE") for l in r.lines), "SIZE advertised")
        for p in ("SIZE=abc", "SIZE=-1", "SIZE=" + "9" * 21, "SIZE=18446744073709551616",
                  "SIZE=100 SIZE=100", "SIZE=", "SIZE=1x"):
            expect(c.cmd(f"MAIL FROM:<a@client.test> {p}"), 5, f"MAIL {p}", (501, 555))
        for p in ("FOO=bar", "X-EVIL", "SIZE=100 BOGUS=1"):
            expect(c.cmd(f"MAIL FROM:<a@client.test> {p}"), 5, f"MAIL {p}", (555,))
        expect(c.cmd("MAIL FROM:<a@client.test> SIZE=100"), 2, "MAIL SIZE=100")
        expect(c.cmd("RCPT TO:<bob@example.com> FOO=bar"), 5, "RCPT FOO=bar", (555,))
        S.check(c.is_open(), "kept after broken parameters")


RELAY_SENDERS = ["", "bob@example.com", "bob", "postmaster", "user@[127.0.0.1]",
                 "user@localhost", "sender@remote.test"]


def relay_attempt(d, source, sender, m):
    """MAIL/RCPT to an outside recipient; returns (mail reply, rcpt reply, final reply)."""
    with Conn(d.port, source=source) as c:
        expect(c.cmd("EHLO client.test"), 2, "EHLO")
        mr = c.cmd(f"MAIL FROM:<{sender}>")
        if mr is None or mr.code != 250:
            return mr, None, None
        rr = c.cmd("RCPT TO:<victim@remote.test>")
        fin = None
        if rr is not None and rr.code == 250:
            if c.cmd("DATA").code == 354:
                c.send(message(m).encode() + b".\r\n")
                fin = c.reply_or_none(30)
        return mr, rr, fin


def test_open_relay_matrix_untrusted():
    d = shared()
    for sender in RELAY_SENDERS:
        m = mark()
        mr, rr, fin = relay_attempt(d, UNTRUSTED, sender, m)
        refused = (mr is not None and digit(mr) == 5) or (rr is not None and digit(rr) == 5)
        S.check(refused, f"untrusted relay from <{sender}> refused: {mr and mr.lines} "
                         f"{rr and rr.lines}")
        if rr is not None and digit(rr) == 5:
            S.check(enh_class(rr) == 5 and rr.enhanced.startswith("5.7"),
                    f"relay refusal is 5.7.x: {rr.lines}")
        absent(d, m, settle=0.2)


def test_open_relay_matrix_trusted():
    d = shared()
    for sender in ["", "bob@example.com", "sender@remote.test"]:
        m = mark()
        mr, rr, fin = relay_attempt(d, TRUSTED, sender, m)
        expect(rr, 2, f"trusted relay from <{sender}>", (250,))
        expect(fin, 2, f"trusted relay from <{sender}> end of data", (250,))
        files = wait_for(lambda: find_marker(d.state, m, "queue"), 5)
        S.check(len(files) == 1, f"trusted relay from <{sender}> queued: {files}")


def test_recipient_cap():
    rcpts = [f"r{i:03}@example.com" for i in range(101)]
    d = start_daemon(accounts=ACCOUNTS + rcpts)
    try:
        m = mark()
        with Conn(d.port) as c:
            expect(c.cmd("EHLO client.test"), 2, "EHLO")
            expect(c.cmd("MAIL FROM:<sender@client.test>"), 2, "MAIL")
            codes = [c.cmd(f"RCPT TO:<{r}>") for r in rcpts]
            S.check(all(r is not None and r.code == 250 for r in codes[:100]),
                    f"100 recipients accepted: {[r and r.code for r in codes[:100]]}")
            expect(codes[100], 4, "101st recipient", (452,))
            expect(c.cmd("DATA"), 3, "DATA")
            c.send(message(m).encode() + b".\r\n")
            expect(c.reply_or_none(60), 2, "end of data", (250,))
        files = delivered(d, m, 100, timeout=30)
        S.eq(len(files), 100, "delivered to exactly the 100 accepted recipients")
        S.check(not any("r100" in f for f in files), "not to the refused 101st")
    finally:
        d.cleanup()


def test_rcpt_flood():
    d = shared()
    before = rss_kib(d.proc.pid)
    total = 20000
    with Conn(d.port) as c:
        expect(c.cmd("EHLO client.test"), 2, "EHLO")
        expect(c.cmd("MAIL FROM:<sender@client.test>"), 2, "MAIL")

        def sender():
            for i in range(0, total, 500):
                if not c.send(b"RCPT TO:<bob@example.com>\r\n" * 500):
                    return

        t = threading.Thread(target=sender, daemon=True)
        t.start()
        codes = []
        while True:
            r = c.reply_or_none(15)
            if r is None:
                break
            codes.append(r.code)
            if r.code == 421 or len(codes) >= total:
                break
        try:
            c.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        t.join(10)
    ok250 = codes.count(250)
    S.check(ok250 <= 100, f"at most 100 recipients accepted, got {ok250}")
    S.check(codes and (codes[-1] == 421 or set(codes[100:]) <= {452}),
            f"flood ends in 452s or 421: last {codes[-5:]}, {len(codes)} replies")
    S.check(all(x in (250, 452, 421, 503, 550) for x in codes), f"codes {set(codes)}")
    after = rss_kib(d.proc.pid)
    S.check(after - before < 20 * 1024, f"RSS growth {after - before} KiB < 20 MiB")
    alive(d)


def test_size_declared_too_big():
    d = shared()
    with Conn(d.port) as c:
        expect(c.cmd("EHLO client.test"), 2, "EHLO")
        expect(c.cmd("MAIL FROM:<a@client.test> SIZE=200000"), 5, "SIZE above limit", (552,))
        expect(c.cmd("MAIL FROM:<a@client.test> SIZE=2000"), 2, "SIZE below limit")


def test_size_lie():
    d = shared()
    m = mark()
    with Conn(d.port) as c:
        expect(c.cmd("EHLO client.test"), 2, "EHLO")
        expect(c.cmd("MAIL FROM:<a@client.test> SIZE=1000"), 2, "MAIL SIZE=1000")
        expect(c.cmd("RCPT TO:<bob@example.com>"), 2, "RCPT")
        expect(c.cmd("DATA"), 3, "DATA")
        body = ("y" * 70 + "\r\n") * 2500  # 180 kB > 100k
        c.send(message(m, body=body).encode() + b".\r\n")
        r = c.reply_or_none(30)
        expect(r, 5, "oversized data after the dot", (552,))
        S.check(c.is_open(), "kept after 552")
    absent(d, m)
    control(d)


def test_per_address_connection_cap():
    d = start_daemon({"smtp_max_connections_per_ip": "5"})
    conns = []
    try:
        for i in range(5):
            c = Conn(d.port, source=UNTRUSTED)
            conns.append(c)
            S.eq(c.greeting.code, 220, f"connection {i + 1} greeted")
        with Conn(d.port, source=UNTRUSTED, greet=False) as c6:
            r = c6.reply_or_none(10)
            S.check(r is not None and r.code == 421, f"6th connection 421: {r and r.lines}")
            S.check(c6.wait_closed(10), "6th connection closed")
        with Conn(d.port, source=TRUSTED) as other:
            S.eq(other.greeting.code, 220, "another address still served")
            expect(other.cmd("EHLO other.test"), 2, "other EHLO")
        conns.pop().close()

        def one_more():
            with Conn(d.port, source=UNTRUSTED, greet=False) as c:
                r = c.reply_or_none(5)
                return r is not None and r.code == 220
        S.check(wait_for(one_more, 10, 0.3), "a slot frees when a connection closes")
    finally:
        for c in conns:
            c.close()
        d.cleanup()


def test_slowloris():
    d = start_daemon({"smtp_command_timeout": "2"})
    try:
        with Conn(d.port) as c:
            closed = False
            for b in b"EHLO slow.loris.example.test":  # one byte a second, never a CRLF
                if not c.send(bytes([b])) or c.wait_closed(1.0):
                    closed = True
                    break
            S.check(closed, "slowloris closed by the command deadline within ~2 s")
            rs = c.drain(0.5)
        S.check(all(digit(r) == 4 for r in rs), f"only a 421 before closing: {rs}")
        alive(d)
    finally:
        d.cleanup()


def test_received_loop():
    d = shared()
    m = mark()
    hdrs = "".join(f"Received: from hop{i}.test by hop{i + 1}.test; Thu, 1 Jan 2026 00:00:00 "
                   f"+0000\r\n" for i in range(100))
    with Conn(d.port) as c:
        open_data(c)
        c.send((hdrs + message(m)).encode() + b".\r\n")
        r = c.reply_or_none(30)
        expect(r, 5, "100 Received headers refused as a loop")
    absent(d, m)


HELO_NAMES = ["evil.test X-Injected: yes", "a\x0bb\x0cc", "((( unbalanced", "x" * 400,
              "evil.test\x7f\x01", "h\xc3\xa9llo.test", "a; by mx.test; X-Injected: 1",
              "[127.0.0.1]", "evil.test\tX-Injected: tab"]


def header_section(data):
    data = data.replace(b"\r\n", b"\n")
    return data.split(b"\n\n", 1)[0].split(b"\n")


def test_helo_cannot_break_received():
    d = shared()
    stored = 0
    for name in HELO_NAMES:
        m = mark()
        with Conn(d.port) as c:
            r = c.cmd(b"EHLO " + name.encode("latin-1"))
            if r is None or digit(r) != 2:
                S.check(r is not None and digit(r) == 5, f"EHLO {name!r} refused: {r}")
                continue
            expect(c.cmd("MAIL FROM:<a@client.test>"), 2, "MAIL")
            expect(c.cmd("RCPT TO:<bob@example.com>"), 2, "RCPT")
            expect(c.cmd("DATA"), 3, "DATA")
            c.send(message(m).encode() + b".\r\n")
            expect(c.reply_or_none(30), 2, "end of data")
        for f in delivered(d, m):
            stored += 1
            lines = header_section(read(f))
            for ln in lines:
                S.check(ln[:1] in (b" ", b"\t") or (b":" in ln and b" " not in
                        ln.split(b":", 1)[0]), f"HELO {name!r}: header line {ln[:80]!r}")
                S.check(not ln.lower().startswith(b"x-injected"), f"injected header {ln!r}")
                S.check(all(b >= 0x20 or b == 0x09 for b in ln), f"control octet in {ln!r}")
            S.check(sum(1 for ln in lines if ln.lower().startswith(b"received:")) == 1,
                    f"HELO {name!r}: one Received header")
            S.check(any(ln.lower().startswith(b"subject: " + m.lower().encode())
                        for ln in lines), "the client's Subject is still a header")
    S.check(stored >= 1, "at least one hostile HELO was accepted and its message stored")


if __name__ == "__main__":
    try:
        tests = [test_smuggling_in_data, test_smuggling_in_commands,
                    test_end_of_data_one_byte_per_write, test_dot_stuffing_round_trip,
                    test_longest_line_with_leading_dot,
                    test_early_talker, test_pipelining_after_helo_refused,
                    test_pipelining_after_ehlo_works, test_long_command_line,
                    test_megabyte_without_crlf, test_nul_in_command, test_8bit_address,
                    test_sequence_errors, test_too_many_errors, test_quoted_local_parts,
                    test_routing_tricks_never_relay, test_length_limits,
                    test_null_sender_and_postmaster, test_metacharacters_literal,
                    test_control_bytes_in_esmtp_params, test_broken_size_and_unknown_params,
                    test_open_relay_matrix_untrusted, test_open_relay_matrix_trusted,
                    test_recipient_cap, test_rcpt_flood, test_size_declared_too_big,
                    test_size_lie, test_per_address_connection_cap, test_slowloris,
                    test_received_loop, test_helo_cannot_break_received]
        rc = S.run([t for t in tests if not sys.argv[1:] or t.__name__ in sys.argv[1:]])
    finally:
        if _shared is not None:
            _shared.cleanup()
    sys.exit(rc)
