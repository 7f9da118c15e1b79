#!/usr/bin/env python3
"""Every rule of seeds/smtp-authentication.txt against the real daemon (ISSUE 9
item 5): for each key, a refused case and an accepted case, with the replies the
issue gives (530 5.7.0 at MAIL, at RCPT where the recipients decide; 550 5.7.1 for
a mismatched MAIL FROM; 550 5.7.1 after the final dot for a From: mismatch, and
then nothing is delivered). 127.0.0.1 is an untrusted client unless a case sets
smtp_trusted_networks. The Domain Sharing exemption is test_domain_sharing's
territory (a peer needed); its transcripts are auth_unless_domain_sharing*.
"""
import base64
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import smtest  # noqa: E402
from smtest import Suite, auth_daemon  # noqa: E402
from smtpraw import Conn  # noqa: E402

S = Suite("auth_rules_daemon")
AUTH = "AUTH PLAIN " + base64.b64encode(b"\0alice@example.com\0secret").decode()


def daemon(conf):
    return auth_daemon(conf, accounts=("postmaster@example.com",))


def run(d, auth, sender, rcpts, from_hdr=None, source=None):
    """(MAIL, [RCPT...], final reply or None) as (code, class) pairs."""
    with Conn(d.port, source=source) as c:
        c.cmd("EHLO client.example.net")
        if auth:
            S.eq(c.cmd(AUTH).code, 235, "AUTH")
        m = c.cmd(f"MAIL FROM:<{sender}>")
        out = [(m.code, m.enhanced)]
        if m.code != 250:
            return out
        ok = False
        for r in rcpts:
            rr = c.cmd(f"RCPT TO:<{r}>")
            out.append((rr.code, rr.enhanced))
            ok |= rr.code == 250
        if not ok:
            return out
        c.cmd("DATA")
        body = (f"From: {from_hdr or sender}\r\nSubject: t\r\n\r\nx\r\n.").encode()
        f = c.cmd(body)
        out.append((f.code, f.enhanced))
        return out


CASES = [
    # (rule, conf, auth, sender, rcpts, From:, expected)
    ("auth_required_for_local_senders", {}, False, "alice@example.com", ["bob@example.com"],
     None, [(530, "5.7.0")]),
    ("auth_required_for_local_senders", {}, True, "alice@example.com", ["bob@example.com"],
     None, [(250, "2.1.0"), (250, "2.1.5"), (250, "2.0.0")]),
    ("auth_required_for_local_senders trusted", {"smtp_trusted_networks": "127.0.0.0/8"},
     False, "bob@example.com", ["alice@example.com"], None,
     [(250, "2.1.0"), (250, "2.1.5"), (250, "2.0.0")]),
    ("auth_local_senders_unless_local_rcpt", {"auth_local_senders_unless_local_rcpt": "yes"},
     False, "bob@example.com", ["alice@example.com", "far@other.example"], None,
     [(250, "2.1.0"), (250, "2.1.5"), (530, "5.7.0"), (250, "2.0.0")]),
    ("auth_local_senders_unless_local_rcpt off", {}, False, "bob@example.com",
     ["alice@example.com"], None, [(530, "5.7.0")]),
    ("auth_required_from_local_networks",
     {"local_networks": "127.0.0.0/8", "auth_required_for_local_senders": "no"}, False,
     "x@other.example", ["alice@example.com"], None, [(530, "5.7.0")]),
    ("auth_required_from_local_networks trusted",
     {"local_networks": "127.0.0.0/8", "smtp_trusted_networks": "127.0.0.0/8"}, False,
     "x@other.example", ["alice@example.com"], None,
     [(250, "2.1.0"), (250, "2.1.5"), (250, "2.0.0")]),
    ("auth_required_from_local_networks off", {"local_networks": "127.0.0.0/8",
                                               "auth_required_from_local_networks": "no"},
     False, "x@other.example", ["alice@example.com"], None,
     [(250, "2.1.0"), (250, "2.1.5"), (250, "2.0.0")]),
    ("auth_required_for_role_senders", {"auth_required_for_local_senders": "no"}, False,
     "postmaster@example.com", ["alice@example.com"], None, [(530, "5.7.0")]),
    ("auth_required_for_role_senders off", {"auth_required_for_local_senders": "no",
                                            "auth_required_for_role_senders": "no"}, False,
     "postmaster@example.com", ["alice@example.com"], None,
     [(250, "2.1.0"), (250, "2.1.5"), (250, "2.0.0")]),
    ("auth_match_return_path", {}, True, "bob@example.com", ["alice@example.com"], None,
     [(550, "5.7.1")]),
    ("auth_match_return_path alias", {}, True, "al@example.com", ["bob@example.com"],
     None, [(250, "2.1.0"), (250, "2.1.5"), (250, "2.0.0")]),
    ("auth_match_exempt return path", {"auth_match_exempt": "bob@example.com",
                                       "auth_match_from_header": "no"}, True,
     "bob@example.com", ["alice@example.com"], None,
     [(250, "2.1.0"), (250, "2.1.5"), (250, "2.0.0")]),
    ("auth_match_from_header", {}, True, "alice@example.com", ["bob@example.com"],
     "Bob <bob@example.com>", [(250, "2.1.0"), (250, "2.1.5"), (550, "5.7.1")]),
    ("auth_match_from_header alias", {}, True, "alice@example.com", ["bob@example.com"],
     "\"Al\" <al@example.com>", [(250, "2.1.0"), (250, "2.1.5"), (250, "2.0.0")]),
    ("auth_match_exempt From:", {"auth_match_exempt": "bob@example.com"}, True,
     "alice@example.com", ["bob@example.com"], "bob@example.com",
     [(250, "2.1.0"), (250, "2.1.5"), (250, "2.0.0")]),
    ("auth_match_from_header off", {"auth_match_from_header": "no"}, True,
     "alice@example.com", ["bob@example.com"], "bob@example.com",
     [(250, "2.1.0"), (250, "2.1.5"), (250, "2.0.0")]),
]


def test_each_rule():
    for name, conf, auth, sender, rcpts, from_hdr, want in CASES:
        with daemon(conf) as d:
            got = run(d, auth, sender, rcpts, from_hdr)
            S.eq(got, want, f"{name}")
            if want[-1][0] == 550 and len(want) > 2:
                n = len(smtest.wait_mail(d, rcpts[0], 0, 0.5))
                S.eq(n, 0, f"{name}: nothing delivered after the 550")


def test_gateway_exempt_from_matching():
    """auth_match_exempt_gateway (default yes): mail for a gateway domain's recipients
    is exempt from both matching rules; off, it is not."""
    gw = "gw.example host=[127.0.0.1]:1 minger=127.0.0.1:1"
    for exempt, want in (("yes", [(250, "2.1.0"), (250, "2.1.5")]),
                         ("no", [(550, "5.7.1")])):
        with daemon({"gateway_domain": gw, "auth_match_exempt_gateway": exempt}) as d:
            with Conn(d.port) as c:
                c.cmd("EHLO x")
                c.cmd(AUTH)
                m = c.cmd("MAIL FROM:<bob@example.com>")
                got = [(m.code, m.enhanced)]
                if m.code == 250:
                    r = c.cmd("RCPT TO:<someone@gw.example>")
                    got.append((r.code // 100 * 100 if r.code >= 400 else r.code,
                                r.enhanced if r.code < 400 else None))
            if exempt == "yes":
                S.eq(got[0], want[0], "gateway exempt: MAIL waits for the recipients")
                S.check(len(got) == 2 and got[1] != (550, "5.7.1"),
                        f"the gateway recipient is not refused for the mismatch: {got}")
            else:
                S.eq(got, want, "exemption off: the mismatch is refused at MAIL")


if __name__ == "__main__":
    sys.exit(S.run([test_each_rule, test_gateway_exempt_from_matching]))
