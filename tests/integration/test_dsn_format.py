#!/usr/bin/env python3
"""dsn format: the delivery status notifications composed by src/deliver/dsn.c,
parsed by an independent MIME parser (Python's email package, policy default).

build/tests/test_dsn --emit DIR writes each sample of its samples[] table to
DIR/NAME.eml with its envelope in DIR/NAME.env. The inputs of each sample are
restated here (not read from the C code), and the output is checked against
RFC 3464 (message/delivery-status fields, block by block), RFC 6522
(multipart/report; report-type=delivery-status; text/plain first), RFC 3461
(ENVID, ORCPT, RET), RFC 5322 (header fields, CRLF, 998-octet lines), RFC 3834
(Auto-Submitted) and RFC 5321 4.5.5 (the envelope: MAIL FROM:<>)."""
import datetime
import email
import email.policy
import email.utils
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from smtest import BUILD, Suite  # noqa: E402
import dsncheck  # noqa: E402

S = Suite("dsn-format")
TEST_DSN = os.path.join(BUILD, "tests", "test_dsn")

QID = "0AbCdEfGhIj12345"
HOST = "mx.example.com"
NOW, ARRIVAL, ATTEMPT, UNTIL = 1780000000, 1779990000, 1779999000, 1780400000
BASE_BOUNDARY = "=_sharemail_" + QID
DIAG_MAX = 800

MSG_PLAIN = (b"From: Alice <alice@example.com>\r\n"
             b"To: bob@example.org\r\n"
             b"Subject: hello\r\n"
             b"Message-ID: <m1@example.com>\r\n"
             b"\r\n"
             b"Hi Bob,\r\n"
             b".a line starting with a dot\r\n"
             b"\r\n"
             b"bye\r\n")
HDRS_PLAIN = MSG_PLAIN[:MSG_PLAIN.index(b"\r\n\r\n") + 2]
MSG_8BIT = (b"From: Alice <alice@example.com>\r\n"
            b"Subject: lunch\r\n"
            b"Content-Type: text/plain; charset=utf-8\r\n"
            b"Content-Transfer-Encoding: 8bit\r\n"
            b"\r\n"
            b"caf\xc3\xa9 at noon?\r\n")
MSG_NOSEP = b"Subject: only headers\r\nX-Last: no CRLF"
ALNUM = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
MSG_COLLISION = (b"Subject: tricky\r\n\r\n--" + BASE_BOUNDARY.encode() + b"\r\n"
                 + b"".join(b"--" + BASE_BOUNDARY.encode() + c.encode() + b"\r\n" for c in ALNUM)
                 + b"--" + BASE_BOUNDARY.encode() + b"--\r\n")
SEED = (b"5.7.1 bad\r\nX-Injected: yes\r\n\r\n--=_sharemail_" + QID.encode()
        + b"\r\n\x00nul\t\x7f\xff\xc3\xa9   spaces ")
HOSTILE = (SEED * (5000 // len(SEED) + 1))[:5000]


def sanitised(raw, limit=DIAG_MAX):
    """What the composer promises for reply text: whitespace runs one space,
    other controls, DEL and 8-bit '?', trimmed, at most `limit` then '...'."""
    out = re.sub(rb"[ \t\r\n]+", b" ", raw).strip(b" ")
    out = bytes(c if 0x20 <= c < 0x7f else 0x3f for c in out).decode("ascii")
    if len(out) > limit:
        out = out[:limit].rstrip(" ") + "..."
    return out


def date(t):
    return email.utils.format_datetime(
        datetime.datetime.fromtimestamp(t, datetime.timezone.utc)).replace("-0000", "+0000")


BOB = {"Original-Recipient": "rfc822;Bob@Example.ORG",
       "Final-Recipient": "rfc822; bob@example.org",
       "Action": "failed", "Status": "5.1.1",
       "Remote-MTA": "dns; mx.example.org",
       "Diagnostic-Code": "smtp; 550 5.1.1 <bob@example.org>: Recipient address rejected: "
                          "User unknown in virtual mailbox table",
       "Last-Attempt-Date": date(ATTEMPT)}
CAROL = {"Final-Recipient": "rfc822; carol@example.net",
         "Action": "failed", "Status": "5.4.6",
         "Diagnostic-Code": "X-Sharemail; mail for example.net loops back to myself",
         "Last-Attempt-Date": date(ATTEMPT)}

FAILURE = ("Undelivered Mail Returned to Sender", "Undelivered Message")
DELAY = ("Delayed Mail (still being retried)", "Delayed Message")
SUCCESS = ("Successful Mail Delivery Report", "Delivered Message")

# name: kind, ENVID, the recipients' expected fields (exactly these), the text
# that must name each one and what happens next, what is returned and its bytes,
# whether the notice is 8-bit, and a phrase on the returned part.
SAMPLES = {
    "failure_full": dict(
        kind=FAILURE, envid="QQ314159 x+y", rcpts=[BOB, CAROL],
        text=["<bob@example.org>: failed (5.1.1). No further attempts will be made.",
              "The mail server mx.example.org replied: 550 5.1.1 <bob@example.org>: "
              "Recipient address rejected: User unknown in virtual mailbox table",
              "<carol@example.net>: failed (5.4.6). No further attempts will be made.",
              "Reason: mail for example.net loops back to myself"],
        returned="full", data=MSG_PLAIN, eight=False,
        note="Your message is attached below."),
    "failure_hdrs": dict(
        kind=FAILURE, envid=None, rcpts=[BOB], text=["<bob@example.org>: failed (5.1.1)."],
        returned="headers", data=HDRS_PLAIN, eight=False,
        note="The header section of your message is attached below, as you asked (RET=HDRS)."),
    "failure_too_large": dict(
        kind=FAILURE, envid=None, rcpts=[CAROL], text=["<carol@example.net>: failed (5.4.6)."],
        returned="headers", data=HDRS_PLAIN, eight=False,
        note=f"Your message was {len(MSG_PLAIN)} octets, more than the 120 this system "
             "returns whole; only its header section is attached below."),
    "delay": dict(
        kind=DELAY, envid="ENV-7",
        rcpts=[{"Original-Recipient": "rfc822;dave@example.org",
                "Final-Recipient": "rfc822; dave@example.org",
                "Action": "delayed", "Status": "4.4.1",
                "Diagnostic-Code": "X-Sharemail; connect to mx.example.org[192.0.2.7]:25: "
                                   "Connection refused",
                "Last-Attempt-Date": date(ATTEMPT), "Will-Retry-Until": date(UNTIL)}],
        text=["This is only a warning",
              f"<dave@example.org>: not delivered yet (4.4.1). This system will keep trying "
              f"until {date(UNTIL)}; you do not need to send the message again."],
        returned="headers", data=HDRS_PLAIN, eight=False,
        note="The header section of your message is attached below."),
    "success": dict(
        kind=SUCCESS, envid=None,
        rcpts=[{"Final-Recipient": "rfc822; erin@example.com", "Action": "delivered",
                "Status": "2.0.0", "Diagnostic-Code": "X-Sharemail; delivered to mailbox",
                "Last-Attempt-Date": date(ATTEMPT)},
               {"Original-Recipient": "rfc822;frank@example.org",
                "Final-Recipient": "rfc822; frank@example.org", "Action": "relayed",
                "Status": "2.0.0", "Remote-MTA": "dns; mx.example.org",
                "Diagnostic-Code": "smtp; 250 2.0.0 Ok: queued as 4Xyz",
                "Last-Attempt-Date": date(ATTEMPT)},
               {"Final-Recipient": "rfc822; team@example.com", "Action": "expanded",
                "Status": "2.0.0", "Last-Attempt-Date": date(ATTEMPT)}],
        text=["<erin@example.com>: delivered (2.0.0).",
              "<frank@example.org>: relayed (2.0.0) to a mail system that does not report on "
              "delivery; no further report will come for this recipient.",
              "<team@example.com>: delivered (2.0.0) to an alias, and passed on to its "
              "members."],
        returned="headers", data=HDRS_PLAIN, eight=False,
        note="The header section of your message is attached below."),
    "hostile": dict(
        kind=FAILURE, envid=None,
        rcpts=[dict(BOB, **{"Remote-MTA": "dns; mx??.evil",
                            "Diagnostic-Code": "smtp; 550 " + sanitised(HOSTILE)})],
        text=["The mail server mx??.evil replied: 550 " + sanitised(HOSTILE)],
        returned="full", data=MSG_PLAIN, eight=False, note="Your message is attached below."),
    "eightbit": dict(
        kind=FAILURE, envid=None, rcpts=[BOB], text=["<bob@example.org>: failed (5.1.1)."],
        returned="full", data=MSG_8BIT, eight=True, note="Your message is attached below."),
    "collision": dict(
        kind=FAILURE, envid=None, rcpts=[CAROL], text=["<carol@example.net>: failed"],
        returned="full", data=MSG_COLLISION, eight=False,
        note="Your message is attached below."),
    "no_separator": dict(
        kind=FAILURE, envid=None, rcpts=[CAROL], text=["<carol@example.net>: failed"],
        returned="headers", data=b"Subject: only headers\r\nX-Last: no CRLF\r\n", eight=False,
        note="as you asked (RET=HDRS)."),
    "empty": dict(
        kind=FAILURE, envid=None, rcpts=[CAROL], text=["<carol@example.net>: failed"],
        returned="none", data=None, eight=False,
        note="Your message was empty, so nothing of it is attached."),
}


def norm(s):
    return re.sub(r"\s+", " ", s)


def check_lines(raw, boundary, name):
    """Every line CRLF and at most 998 octets; outside the returned part, 7-bit text."""
    S.check(raw.endswith(b"\r\n"), f"{name}: ends with CRLF")
    lines = raw.split(b"\r\n")
    S.check(all(b"\r" not in l and b"\n" not in l for l in lines), f"{name}: bare CR or LF")
    S.eq(max(len(l) for l in lines) <= 998, True, f"{name}: a line over 998 octets")
    third = raw.find(b"Content-Type: message/rfc822\r\n")
    if third < 0:
        third = raw.find(b"Content-Type: text/rfc822-headers\r\n")
    ours = raw if third < 0 else raw[:third]
    S.check(all(c == 9 or 0x20 <= c < 0x7f for l in ours.split(b"\r\n") for c in l),
            f"{name}: our own parts must be printable 7-bit text")


def check_top(msg, spec, name):
    S.eq(msg.get_content_type(), "multipart/report", f"{name}: type")
    S.eq(msg.get_param("report-type"), "delivery-status", f"{name}: report-type")
    frm = msg["From"].addresses
    S.eq([(a.display_name, a.addr_spec) for a in frm],
         [("Mail Delivery System", "MAILER-DAEMON@" + HOST)], f"{name}: From")
    S.eq([a.addr_spec for a in msg["To"].addresses], ["alice@example.com"], f"{name}: To")
    S.eq(str(msg["Subject"]), spec["kind"][0], f"{name}: Subject")
    S.eq(msg["Date"].datetime.timestamp(), NOW, f"{name}: Date")
    S.eq(str(msg["Message-ID"]), f"<20260528202640.{QID}@{HOST}>", f"{name}: Message-ID")
    S.eq(str(msg["MIME-Version"]), "1.0", f"{name}: MIME-Version")
    S.eq(str(msg["Auto-Submitted"]), "auto-replied", f"{name}: Auto-Submitted")
    S.eq(msg.get("Content-Transfer-Encoding"), "8bit" if spec["eight"] else None,
         f"{name}: top-level Content-Transfer-Encoding")
    for part in msg.walk():
        S.eq(list(part.defects), [], f"{name}: defects in {part.get_content_type()}")


def check_status(rep, spec, name):
    """The delivery-status fields, as dsncheck (the shared parser) reads them."""
    S.eq(rep.parts[1].get_content_type(), "message/delivery-status", f"{name}: second part")
    S.eq(len(rep.recipients), len(spec["rcpts"]), f"{name}: per-recipient blocks")
    want = {"Reporting-MTA": "dns; " + HOST, "X-Sharemail-Queue-ID": QID,
            "Arrival-Date": date(ARRIVAL)}
    if spec["envid"] is not None:
        want["Original-Envelope-Id"] = spec["envid"]
    S.eq(dict(rep.per_message), want, f"{name}: per-message fields")
    S.eq(rep.envid, spec["envid"], f"{name}: ENVID")
    S.eq(rep.reporting_mta, HOST, f"{name}: Reporting-MTA name")
    keys = list(rep.per_message.keys())
    S.eq(keys[0], "Original-Envelope-Id" if spec["envid"] else "Reporting-MTA",
         f"{name}: RFC 3464 2.2 order")
    for i, (blk, exp) in enumerate(zip(rep.recipients, spec["rcpts"])):
        got = dict(blk)
        S.eq(got, exp, f"{name}: recipient {i} fields")
        S.eq(rep.recipient(exp["Final-Recipient"].split(";")[1].strip()) is blk, True,
             f"{name}: recipient {i} found by address")
        order = ["Original-Recipient", "Final-Recipient", "Action", "Status", "Remote-MTA",
                 "Diagnostic-Code", "Last-Attempt-Date", "Will-Retry-Until"]
        S.eq(list(blk.keys()), [k for k in order if k in exp], f"{name}: recipient {i} order")
        S.check(re.fullmatch(r"[245]\.\d{1,3}\.\d{1,3}", got["Status"]), f"{name}: Status")
        for k in ("Last-Attempt-Date", "Will-Retry-Until"):
            if k in got:
                S.check(email.utils.parsedate_to_datetime(got[k]) is not None, f"{name}: {k}")
        S.check("Will-Retry-Until" not in got or got["Action"] == "delayed",
                f"{name}: Will-Retry-Until only for delayed (RFC 3464 2.3.9)")


def check_returned(rep, spec, name):
    want = {"full": "message/rfc822", "headers": "text/rfc822-headers"}.get(spec["returned"])
    S.eq(len(rep.parts), 3 if want else 2, f"{name}: number of parts")
    S.eq(rep.raw_close, b"--\r\n", f"{name}: close delimiter last")
    S.eq(len(rep.raw_parts), len(rep.parts), f"{name}: raw split agrees with the parser")
    S.eq(rep.returned_type, want, f"{name}: returned type")
    if not want:
        return
    boundary = rep.boundary
    third = rep.parts[2]
    S.eq(third.get_content_type(), want, f"{name}: third part type")
    desc = spec["kind"][1] + ("" if spec["returned"] == "full" else " Headers")
    S.eq(str(third["Content-Description"]), desc, f"{name}: Content-Description")
    S.eq(third.get("Content-Transfer-Encoding"), "8bit" if spec["eight"] else None,
         f"{name}: third part Content-Transfer-Encoding")
    content = rep.returned_bytes
    S.eq(content, spec["data"], f"{name}: returned octets")
    S.check(boundary.encode() not in content, f"{name}: boundary inside the returned part")
    if spec["returned"] == "full":
        sub = rep.returned
        orig = email.message_from_bytes(spec["data"], policy=email.policy.default)
        S.eq(str(sub["Subject"]), str(orig["Subject"]), f"{name}: returned Subject")
        if not sub.is_multipart():
            S.eq(sub.get_content(), orig.get_content(), f"{name}: returned body")
    else:
        S.eq(third.get_content().encode("ascii", "surrogateescape"), spec["data"],
             f"{name}: returned header section")


def check_envelope(path, spec, name):
    with open(path) as f:
        env = dict(l.rstrip("\n").split("=", 1) for l in f if "=" in l)
    S.eq(env, {"mail_from": "", "rcpt_to": "alice@example.com",
               "body_8bitmime": "1" if spec["eight"] else "0", "returned": spec["returned"]},
         f"{name}: envelope")


def check_sample(d, name, spec):
    with open(os.path.join(d, name + ".eml"), "rb") as f:
        raw = f.read()
    try:
        rep = dsncheck.parse(raw)
    except dsncheck.MalformedReport as e:
        S.check(False, f"{name}: malformed report: {e}")
        return None
    msg = rep.msg
    boundary = rep.boundary
    S.check(boundary and boundary.startswith(BASE_BOUNDARY) and len(boundary) <= 70,
            f"{name}: boundary {boundary!r}")
    check_lines(raw, boundary, name)
    check_top(msg, spec, name)
    parts = rep.parts
    S.eq(parts[0].get_content_type(), "text/plain", f"{name}: first part")
    S.eq(parts[0].get_content_charset(), "us-ascii", f"{name}: charset")
    text = norm(rep.text)
    for phrase in spec["text"] + [spec["note"], "This is the mail system at host " + HOST]:
        S.check(norm(phrase) in text, f"{name}: text lacks {phrase[:70]!r}")
    check_status(rep, spec, name)
    check_returned(rep, spec, name)
    check_envelope(os.path.join(d, name + ".env"), spec, name)
    return boundary


def emit():
    d = tempfile.mkdtemp(prefix="sharemail-dsn-")
    p = subprocess.run([TEST_DSN, "--emit", d], capture_output=True, text=True, timeout=60)
    S.eq(p.returncode, 0, f"test_dsn --emit: {p.stderr}")
    return d


def test_samples():
    if not S.check(os.access(TEST_DSN, os.X_OK), f"{TEST_DSN} missing: run make unit"):
        return
    d = emit()
    try:
        names = sorted(n[:-4] for n in os.listdir(d) if n.endswith(".eml"))
        S.eq(names, sorted(SAMPLES), "samples written")
        boundaries = {}
        for name, spec in SAMPLES.items():
            if os.path.exists(os.path.join(d, name + ".eml")):
                boundaries[name] = check_sample(d, name, spec)
        # Lengthened exactly when the content held it.
        S.eq(boundaries.get("failure_full"), BASE_BOUNDARY, "plain boundary")
        S.check(len(boundaries.get("collision", "")) > len(BASE_BOUNDARY), "collision boundary")
        S.check(len(boundaries.get("hostile", "")) > len(BASE_BOUNDARY), "hostile boundary")
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_hostile_text_is_clean():
    if not os.access(TEST_DSN, os.X_OK):
        S.skip("test_dsn not built")
        return
    d = emit()
    try:
        with open(os.path.join(d, "hostile.eml"), "rb") as f:
            raw = f.read()
        head, _, _ = raw.partition(b"Content-Type: message/rfc822")
        S.check(b"\x00" not in head and b"\xff" not in head and b"\x7f" not in head,
                "control or 8-bit octets outside the returned part")
        S.check(b"\r\nX-Injected:" not in raw, "injected field")
        diag = dsncheck.parse(raw).recipients[0].diagnostic
        S.eq(len(diag), len("smtp; 550 ") + DIAG_MAX + 3, "diagnostic bounded")
        S.check(diag.endswith("..."), "cut marked")
        status = raw[raw.index(b"Content-Type: message/delivery-status"):]
        status = status[:status.index(b"\r\n--=_")]
        S.check(max(len(l) for l in status.split(b"\r\n")) <= 78, "folded at 78")
    finally:
        shutil.rmtree(d, ignore_errors=True)


sys.exit(S.run([test_samples, test_hostile_text_is_clean]))
