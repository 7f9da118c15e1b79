"""relayutil: a sharemaild that relays, for the relay tests (test_relay*.py).

    d = relay_daemon({"relay_route": f"peer.test {peer.hostport}"})
    send(d, "sender@example.com", ["bob@peer.test"], body)     # smtplib, from a trusted net
    notices(d, "sender@example.com")   # dsncheck reports in that local mailbox
    rcpt_state(d, qid, "bob@peer.test")    # the `queue show` line's fields
    wait_gone(d)                           # the queue is empty

The daemon has local accounts (sender@, alice@, bob@ example.com), trusts 127.0.0.0/8
(so it relays for the test client), retries after 1 s doubling up to 4 s, and waits
at most 2 s for any reply of a peer: a fault is seen and retried quickly, but no test
asserts a duration. Mail for domains without a route goes to smtest's refusing smart
host unless the test sets relay_smarthost (None: MX lookups).
"""
import glob
import os
import re
import smtplib
import time

import dsncheck
import smtest

WAIT = 30.0

BASE = {
    "smtp_trusted_networks": "127.0.0.0/8",
    "queue_retry_initial": "1",
    "queue_retry_max": "4",
    "relay_connect_timeout": "2",
    "relay_command_timeout": "2",
    "relay_data_timeout": "2",
    "dns_timeout": "1",
    "dns_attempts": "1",
}
ACCOUNTS = ("sender@example.com", "alice@example.com", "bob@example.com")


def relay_daemon(conf=None, accounts=ACCOUNTS, start=True, extra_env=None, port=None):
    keys = dict(BASE)
    keys.update(conf or {})
    port = port or smtest.free_tcp_port()
    keys["smtp_listen"] = f"127.0.0.1:{port}"
    d = smtest.Daemon(conf=keys, minger=False)
    d.smtp_port = port
    try:
        for a in accounts:
            d.cli("account", "add", a, "--no-password")
        if start:
            d.start(extra_env=extra_env)
    except Exception:
        d.cleanup()
        raise
    return d


def send(d, sender, rcpts, body, mail_options=(), rcpt_options=()):
    """Sends one message over SMTP; returns smtplib's refused dict."""
    if isinstance(body, str):
        body = body.encode()
    with smtplib.SMTP("127.0.0.1", d.smtp_port, timeout=10) as c:
        c.ehlo("client.test")
        return c.sendmail(sender, rcpts, body, mail_options=list(mail_options),
                          rcpt_options=list(rcpt_options))


def rcpt_code(d, sender, rcpt):
    """The daemon's reply code to RCPT TO:<rcpt> (the transaction is then reset)."""
    with smtplib.SMTP("127.0.0.1", d.smtp_port, timeout=10) as c:
        c.ehlo("client.test")
        c.mail(sender)
        code = c.rcpt(rcpt)[0]
        c.rset()
        return code


def until(pred, timeout=WAIT):
    """Polls pred() (bounded, never asserted) until it is true; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got or time.monotonic() >= deadline:
            return got
        time.sleep(0.05)


def queue_lines(d):
    """The message lines of `queue list`."""
    return [ln for ln in d.cli("queue", "list").stdout.splitlines() if ln and ln[0] != " "]


def wait_gone(d, timeout=WAIT):
    return until(lambda: queue_lines(d) == [], timeout)


def queued_ids(d, sender=None):
    """Queue ids of the messages queued (from sender when given: "" is <>)."""
    out = []
    for ln in queue_lines(d):
        parts = ln.split()
        if sender is None or parts[2] == f"<{sender}>":
            out.append(parts[0])
    return out


def rcpt_state(d, qid, addr):
    """The fields of `queue show`'s line for recipient addr: {"state": ..., "attempts": ...,
    "next": ..., "route": ..., "status": ...}, or None."""
    shown = d.cli("queue", "show", qid, check=False).stdout
    for ln in shown.splitlines():
        if ln.startswith(f"rcpt: <{addr}> "):
            f = dict(re.findall(r'(\w+)=("[^"]*"|\S+)', ln))
            return {k: v.strip('"') for k, v in f.items()}
    return None


def mailbox(d, addr):
    """Every message in addr's Maildir (new/ and cur/), oldest first, CRLF line ends
    restored."""
    user, domain = addr.lower().split("@")
    paths = []
    for sub in ("new", "cur"):
        paths += glob.glob(os.path.join(d.state, "mail", domain, user, "Maildir", sub, "*"))
    out = []
    for p in sorted(paths, key=_maildir_order):
        with open(p, "rb") as f:
            out.append(f.read().replace(b"\n", b"\r\n"))
    return out


def _maildir_order(path):
    """Oldest first: a name is SEC.M<usec>P..., the microseconds not zero-padded, so the
    names do not sort as strings within one second."""
    name = os.path.basename(path)
    m = re.match(r"(\d+)\.M(\d+)P", name)
    return (int(m.group(1)), int(m.group(2)), name) if m else (0, 0, name)


def notices(d, addr):
    """The DSN reports in addr's mailbox (dsncheck.Report each), oldest first; a message
    that is not a report is skipped."""
    out = []
    for raw in mailbox(d, addr):
        try:
            out.append(dsncheck.parse(raw))
        except dsncheck.MalformedReport:
            pass
    return out


def wait_notices(d, addr, count=1, timeout=WAIT):
    return until(lambda: len(notices(d, addr)) >= count and notices(d, addr), timeout) or []


def log_lines(d, pattern):
    """Log lines matching the regular expression pattern."""
    r = re.compile(pattern)
    return [ln for ln in d.logtext().splitlines() if r.search(ln)]
