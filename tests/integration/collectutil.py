"""collectutil: helpers of the DomainPOP tests (test_collect*.py).

- collector(): a Daemon (smtest) with one collect_source pointing at a POP3 server
  on loopback (tls=none), the accounts created, not started yet.
- collect_now(d): `sharemail collect now`, the CompletedProcess.
- settle(d): waits (a bound, never asserted) until delivery has emptied the queue.
- mailbox(d, addr): the messages of a Maildir (new/ and cur/), bytes each.
- by_tag(msgs): how many messages carry each "X-Test-Tag:" value.
- msg(): a message (bytes, CRLF) with the fields given.
"""
import glob
import os
import re
import time

from smtest import Daemon

ISP_PW_FILE = "isp.pw"


def collector(port, accounts=("alice@example.com", "bob@example.com", "carol@example.com"),
              conf=None, options="", password=None, user="isp", scheme="pop3", tls="none"):
    import isp_pop3
    src = (f"{scheme}://{user}@127.0.0.1:{port} password_file={ISP_PW_FILE} tls={tls} "
           f"interval=7d {options}").strip()
    keys = {"collect_source": src}
    keys.update(conf or {})
    d = Daemon(conf=keys, minger=False)
    with open(os.path.join(d.dir, ISP_PW_FILE), "w") as f:
        f.write((password or isp_pop3.PASSWORD) + "\n")
    for a in accounts:
        d.cli("account", "add", a, "--no-password")
    return d


def collect_now(d, *args, timeout=60):
    return d.cli("collect", "now", *args, "--timeout", str(timeout), check=False)


def queue_ids(d):
    p = d.cli("queue", "list", check=False)
    return [ln.split()[0] for ln in p.stdout.splitlines()
            if ln.strip() and not ln.startswith((" ", "\t", "#"))]


def settle(d, timeout=30.0, allow_left=0):
    """Waits until at most allow_left messages are queued (deferred ones, e.g. bounces to a
    relay nobody listens on, may stay); returns the ids still queued."""
    deadline = time.monotonic() + timeout
    while True:
        ids = queue_ids(d)
        if len(ids) <= allow_left or time.monotonic() > deadline:
            return ids
        time.sleep(0.05)


def mailbox(d, addr):
    user, domain = addr.lower().split("@")
    base = os.path.join(d.state, "mail", domain, user, "Maildir")
    out = []
    for sub in ("new", "cur"):
        for f in sorted(glob.glob(os.path.join(base, sub, "*"))):
            with open(f, "rb") as fh:
                out.append(fh.read())
    return out


def by_tag(msgs):
    tags = {}
    for m in msgs:
        for t in re.findall(rb"^X-Test-Tag: (\S+)\r?$", m, re.M):
            tags[t.decode()] = tags.get(t.decode(), 0) + 1
    return tags


def msg(tag, fields=(), body=b"body line\r\n", msgid=None):
    """A message: the fields (name, value) in order, then From/Subject/Message-ID/tag."""
    head = b"".join(f"{n}: {v}\r\n".encode() for n, v in fields)
    head += (b"From: sender@else.example\r\n"
             + f"Subject: test {tag}\r\n".encode()
             + f"Message-ID: <{msgid or tag}@else.example>\r\n".encode()
             + b"Date: Tue, 1 Dec 2026 10:00:00 +0000\r\n"
             + f"X-Test-Tag: {tag}\r\n".encode())
    return head + b"\r\n" + body


def isp_received(for_addr=None, by="pop.isp.example", frm="out.else.example"):
    """A Received field value as an ISP's MX writes it (for clause when one recipient)."""
    f = f" for <{for_addr}>" if for_addr else ""
    return (f"from {frm} (out.else.example [192.0.2.9]) by {by} with ESMTP id ISP1{f}; "
            "Tue, 1 Dec 2026 10:00:00 +0000")
