#!/usr/bin/env python3
"""dsncheck self-test: a hand-written RFC 3464 report parses into the expected fields
(per message, per recipient, the returned message, its exact octets), with CRLF and with
LF line ends; and each way of being malformed raises MalformedReport."""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from smtest import Suite  # noqa: E402
import dsncheck  # noqa: E402

S = Suite("dsncheck")

RETURNED = (b"From: alice@example.com\r\nSubject: hi\r\nMessage-ID: <m@example.com>\r\n\r\n"
            b"body line\r\n.dot line\r\n")
STATUS = (b"Reporting-MTA: dns; mx.example.com\r\n"
          b"Original-Envelope-Id: ENV-1\r\n"
          b"Arrival-Date: Thu, 28 May 2026 20:00:00 +0000\r\n"
          b"\r\n"
          b"Original-Recipient: rfc822;Bob@Example.ORG\r\n"
          b"Final-Recipient: rfc822; bob@example.org\r\n"
          b"Action: failed\r\n"
          b"Status: 5.1.1\r\n"
          b"Remote-MTA: dns; mx.example.org\r\n"
          b"Diagnostic-Code: smtp; 550 5.1.1 no such user\r\n"
          b"\r\n"
          b"Final-Recipient: rfc822; carol@example.net\r\n"
          b"Action: delayed\r\n"
          b"Status: 4.4.1 (connection refused)\r\n"
          b"Will-Retry-Until: Tue, 2 Jun 2026 20:00:00 +0000\r\n")


def report(status=STATUS, third=True, top_type=b"multipart/report; report-type=delivery-status",
           second=b"message/delivery-status", close=b"--B--\r\n", extra_part=b""):
    out = (b"From: Mail Delivery System <MAILER-DAEMON@mx.example.com>\r\n"
           b"To: alice@example.com\r\nSubject: Undelivered Mail\r\nMIME-Version: 1.0\r\n"
           b"Content-Type: " + top_type + b"; boundary=\"B\"\r\n\r\n"
           b"preamble\r\n--B\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n"
           b"Your mail was not delivered.\r\n"
           b"\r\n--B\r\nContent-Type: " + second + b"\r\n\r\n" + status)
    if third:
        out += (b"\r\n--B\r\nContent-Type: message/rfc822\r\nContent-Description: Undelivered\r\n"
                b"\r\n" + RETURNED)
    out += extra_part
    return out + b"\r\n" + close


def test_parse():
    for nl in (b"\r\n", b"\n"):
        raw = report().replace(b"\r\n", nl)
        rep = dsncheck.parse(raw)
        what = "CRLF" if nl == b"\r\n" else "LF"
        S.eq(dict(rep.per_message), {"Reporting-MTA": "dns; mx.example.com",
                                     "Original-Envelope-Id": "ENV-1",
                                     "Arrival-Date": "Thu, 28 May 2026 20:00:00 +0000"},
             f"{what}: per-message fields")
        S.eq((rep.reporting_mta, rep.envid), ("mx.example.com", "ENV-1"), f"{what}: shortcuts")
        S.eq(rep.arrival_date, "Thu, 28 May 2026 20:00:00 +0000", f"{what}: Arrival-Date")
        S.eq(len(rep.recipients), 2, f"{what}: two recipients")
        bob = rep.recipient("BOB@example.org")
        S.eq((bob.address, bob.original, bob.action, bob.status, bob.remote_mta),
             ("bob@example.org", "Bob@Example.ORG", "failed", "5.1.1", "mx.example.org"),
             f"{what}: bob")
        S.eq(bob.diagnostic, "smtp; 550 5.1.1 no such user", f"{what}: Diagnostic-Code")
        S.eq(bob["final-recipient"], "rfc822; bob@example.org", f"{what}: case-insensitive")
        S.check("STATUS" in bob and "Will-Retry-Until" not in bob, f"{what}: in")
        carol = rep.recipient("carol@example.net")
        S.eq((carol.action, carol.will_retry_until), ("delayed", "Tue, 2 Jun 2026 20:00:00 +0000"),
             f"{what}: carol")
        S.eq(dsncheck.date(carol.will_retry_until).timestamp(), 1780430400, f"{what}: date()")
        S.eq(rep.actions(), {"bob@example.org": "failed", "carol@example.net": "delayed"},
             f"{what}: actions")
        S.eq(rep.returned_type, "message/rfc822", f"{what}: returned type")
        S.eq(str(rep.returned["Subject"]), "hi", f"{what}: returned message")
        S.eq(rep.returned_bytes, RETURNED.replace(b"\r\n", nl), f"{what}: returned octets")
        S.eq(rep.raw_close, b"--" + nl, f"{what}: close")
        S.eq(len(rep.raw_parts), 3, f"{what}: raw parts")
        S.eq(rep.text.strip(), "Your mail was not delivered.", f"{what}: text part")
    S.raises(KeyError, lambda: rep.recipient("nobody@example.org"), "found a recipient that is not there")
    rep = dsncheck.parse(report(third=False))
    S.eq((rep.returned_type, rep.returned, rep.returned_bytes), (None, None, None), "no third")
    S.check(dsncheck.is_report(report()), "is_report")


def test_malformed():
    blocks = STATUS.split(b"\r\n\r\n")
    cases = {   # what: (octets, the reason the error must give)
        "not a report": (report(top_type=b"multipart/mixed"), "not multipart/report"),
        "report-type": (report(top_type=b"multipart/report; report-type=disposition-notification"),
                        "report-type"),
        "second part": (report(second=b"text/plain"), "second part is text/plain"),
        "one part": (report().split(b"\r\n--B\r\nContent-Type: message/delivery")[0] +
                     b"\r\n--B--\r\n", "1 part(s)"),
        "no recipient block": (report(status=blocks[0] + b"\r\n"), "a recipient block"),
        "no Reporting-MTA": (report(status=STATUS.replace(
            b"Reporting-MTA: dns; mx.example.com\r\n", b"")), "without Reporting-MTA"),
        "no Action": (report(status=STATUS.replace(b"Action: failed\r\n", b"")),
                      "block 0: no Action"),
        "no Final-Recipient": (report(status=STATUS.replace(
            b"Final-Recipient: rfc822; carol@example.net\r\n", b"")),
            "block 1: no Final-Recipient"),
        "bad Action": (report(status=STATUS.replace(b"Action: failed", b"Action: bounced")),
                       "Action 'bounced'"),
        "bad Status": (report(status=STATUS.replace(b"Status: 5.1.1", b"Status: 550")),
                       "Status '550'"),
        "Status class": (report(status=STATUS.replace(b"Status: 5.1.1", b"Status: 3.1.1")),
                         "Status '3.1.1'"),
        "twice": (report(status=STATUS.replace(b"Action: failed\r\n",
                                               b"Action: failed\r\nAction: failed\r\n")),
                  "Action twice"),
        "untyped": (report(status=STATUS.replace(b"Remote-MTA: dns; mx.example.org",
                                                 b"Remote-MTA: mx.example.org")),
                    "not 'type; value'"),
        "bad date": (report(status=STATUS.replace(b"Thu, 28 May 2026 20:00:00 +0000",
                                                  b"yesterday")), "not an RFC 5322 date"),
        "third part": (report(third=False, extra_part=b"\r\n--B\r\nContent-Type: image/png"
                                                      b"\r\n\r\nxx"), "third part is image/png"),
        "four parts": (report(extra_part=b"\r\n--B\r\nContent-Type: text/plain\r\n\r\nxx"),
                       "4 part(s)"),
        "no close delimiter": (report(third=False).replace(b"\r\n--B--\r\n", b"\r\n"),
                               "CloseBoundaryNotFoundDefect"),
    }
    for what, (raw, why) in cases.items():
        try:
            dsncheck.parse(raw)
            S.check(False, f"{what}: parsed")
        except dsncheck.MalformedReport as e:
            S.check(why in str(e), f"{what}: {e}")
    try:
        dsncheck.raw_parts(report(third=False).replace(b"\r\n--B--\r\n", b"\r\n"), "B")
        S.check(False, "raw_parts without a close delimiter")
    except dsncheck.MalformedReport as e:
        S.check("no close delimiter" in str(e), str(e))
    S.check(not dsncheck.is_report(b"Subject: plain\r\n\r\nhello\r\n"), "a plain message")


sys.exit(S.run([test_parse, test_malformed]))
