#!/usr/bin/env python3
"""test_minger_interop: the exchanges of the project's Minger reference (the protocol page:
draft-hathcock-minger-06 and the sharemail extension), byte for byte, against the real
sharemaild with its default configuration, spoken to with raw UDP sockets.

What an MDaemon peer sees: its anonymous client sends a plain -06 query with no digest
(`arvel@example.com`); with minger_anonymous = yes it must get `arvel@example.com 5`, one
datagram, from the port it asked, nothing after the digit. That needs the default
minger_strict_amplification = no (a reply at most 2 octets longer than its query, the
draft's own form); strict mode (documented hardening) drops such replies.

The digests are the literal values of the protocol page's test vectors
(mingerpeer.PAGE_VECTORS, which test_mingerpeer checks against mingerpeer's digest(), so a
wrong vector cannot pass silently); the extension's macs come from mingerpeer's functions,
written from the page, never from sharemail's C code."""
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mingerpeer  # noqa: E402
from smtest import Daemon, Suite  # noqa: E402

S = Suite("minger_interop")
SECRET = mingerpeer.PAGE_SECRET
SECRET2 = mingerpeer.PAGE_SECRET2
NO_LIMITS = {"minger_rate_per_source": "0", "minger_rate_global": "0"}
VECTORS = mingerpeer.PAGE_VECTORS
EXAMPLES = mingerpeer.PAGE_EXCHANGES


def ask(d, payload, timeout=1.0):
    """One datagram from a fresh socket; the reply or None. Checks what an MDaemon client
    relies on: the reply comes from the port it asked, and it is one datagram, at most 2
    octets longer than the query (0 in strict mode)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.sendto(payload, ("127.0.0.1", d.minger_port))
        try:
            data, peer = s.recvfrom(4096)
        except socket.timeout:
            return None
        S.eq(peer, ("127.0.0.1", d.minger_port), "reply source")
        s.settimeout(0.05)
        try:
            extra, _ = s.recvfrom(4096)
            S.check(False, f"a second datagram for {payload!r}: {extra!r}")
        except socket.timeout:
            pass
    S.check(len(data) <= len(payload) + d.slack,
            f"amplification: {payload!r} ({len(payload)}) -> {data!r} ({len(data)})")
    return data


def started(conf=None, secrets=(SECRET,)):
    """A daemon with arvel (active), off (disabled), user01 and "arvel smith" (active)."""
    keys = dict(NO_LIMITS)
    keys.update(conf or {})
    d = Daemon(conf=keys, secrets=list(secrets))
    d.slack = 0 if keys.get("minger_strict_amplification") == "yes" else 2
    try:
        for a in ("arvel@example.com", "user01@example.com", '"arvel smith"@example.com'):
            d.cli("account", "add", a, "--no-password")
        d.cli("account", "add", "off@example.com", "--no-password", "--disabled")
        d.start()
    except Exception:
        d.cleanup()
        raise
    return d


def test_document_examples():
    """The page's six exchanges, byte for byte, default configuration (anonymous off)."""
    with started() as d:
        S.eq(d.slack, 2, "the default is not strict")
        for q, want in EXAMPLES:
            S.eq(ask(d, q), want, q.decode())


def test_mdaemon_plain_query():
    """minger_anonymous = yes: MDaemon's plain -06 query (no digest, no tag) is answered."""
    with started({"minger_anonymous": "yes"}) as d:
        for q, want in [(b"arvel@example.com", b"arvel@example.com 5"),
                        (b"nobody@example.com", b"nobody@example.com 3"),
                        (b"off@example.com", b"off@example.com 4"),
                        (b"Arvel@Example.COM", b"Arvel@Example.COM 5"),
                        (b'"arvel smith"@example.com', b'"arvel smith"@example.com 5'),
                        (b"a@b", b"a@b 3"),
                        (b"arvel", b"arvel 0")]:
            r = ask(d, q)
            S.eq(r, want, f"plain {q.decode()}")
            S.check(r is None or len(r) == len(q) + 2, f"{q!r}: the draft's reply is 2 longer")
        # A digest is still checked in anonymous mode.
        S.eq(ask(d, b"arvel@example.com d=2P4Wlz1pI7ZmGe89PLJ8fw=="), b"arvel@example.com 2",
             "wrong digest, anonymous on")
        S.eq(ask(d, b"arvel@example.com d=A7E/WJtlUbO5NWDjZba+bw=="), b"arvel@example.com 5",
             "right digest, anonymous on")


def test_digest_vectors():
    """Each test vector's literal digest, to a server holding both secrets."""
    want = {"arvel@example.com": b"5", "Arvel@Example.COM": b"5", "nobody@example.com": b"3",
            '"arvel smith"@example.com': b"5", "user01@example.com": b"5"}
    with started(secrets=(SECRET, SECRET2)) as d:
        for secret, mailbox, dig in VECTORS:
            status = want[mailbox] if secret in (SECRET, SECRET2) else b"2"
            q = f"{mailbox} d={dig}".encode()
            S.eq(ask(d, q), mailbox.encode() + b" " + status, q.decode())
        # The digest hashes the mailbox as sent: another case's digest is wrong.
        S.eq(ask(d, b"Arvel@Example.COM d=A7E/WJtlUbO5NWDjZba+bw=="), b"Arvel@Example.COM 2",
             "digest of another spelling")


def test_older_digest_forms():
    """-02 bare digest and -03/-04 D= with minger_compat = yes (default); 0 with no."""
    bare = b"arvel@example.com A7E/WJtlUbO5NWDjZba+bw=="
    upper = b"arvel@example.com D=A7E/WJtlUbO5NWDjZba+bw=="
    with started() as d:
        S.eq(ask(d, bare), b"arvel@example.com 5", "-02 bare digest")
        S.eq(ask(d, upper), b"arvel@example.com 5", "-03/-04 D=")
        S.eq(ask(d, b"arvel@example.com D=2P4Wlz1pI7ZmGe89PLJ8fw=="), b"arvel@example.com 2",
             "D= wrong secret")
    with started({"minger_compat": "no"}) as d:
        S.eq(ask(d, bare), b"arvel@example.com 0", "bare digest, compat off")
        S.eq(ask(d, upper), b"arvel@example.com 0", "D=, compat off")


def test_extension_exchange():
    """The sharemail extension, byte for byte: the reply carries
    mac = HMAC-SHA256(secret, "R" SP mailbox SP status SP nonce)."""
    with started() as d:
        for mailbox, status in (("arvel@example.com", 5), ("nobody@example.com", 3),
                                ("off@example.com", 4)):
            ts, nonce = int(time.time()), os.urandom(8).hex()
            mac = mingerpeer.query_mac(SECRET, mailbox, ts, nonce)
            dig = mingerpeer.digest(SECRET, mailbox)
            q = f"{mailbox} d={dig} ts={ts} nonce={nonce} mac={mac}".encode()
            rmac = mingerpeer.reply_mac(SECRET, mailbox, status, nonce)
            S.eq(ask(d, q), f"{mailbox} {status} mac={rmac}".encode(), f"extension {mailbox}")


def test_malformed():
    """The page's malformed list: status 0 echoing what can be echoed, or no reply where
    there is nothing to echo. Each query carries a valid digest where it has one, so only
    the defect named makes it malformed."""
    dg = "d=A7E/WJtlUbO5NWDjZba+bw=="
    long_local = "a" * 65 + "@example.com"
    long_domain = "a@" + "b" * 256
    cases = [
        (b"", None),
        (b"arvel", b"arvel 0"),
        (b"@example.com", b"@example.com 0"),
        (b"arvel@", b"arvel@ 0"),
        (b"a@b@example.com", b"a@b@example.com 0"),
        (long_local.encode(), long_local.encode() + b" 0"),
        (long_domain.encode(), long_domain.encode() + b" 0"),
        (f"<arvel@example.com> {dg}".encode(), b"<arvel@example.com> 0"),
        (f" arvel@example.com {dg}".encode(), None),
        (f"arvel@example.com {dg} ".encode(), b"arvel@example.com 0"),
        (f"arvel@example.com  {dg}".encode(), b"arvel@example.com 0"),
        (f"arvel@example.com\t{dg}".encode(), None),
        (b"arvel@example.com\x00 " + dg.encode(), None),
        (b"arv\x01el@example.com " + dg.encode(), None),
        (b"arv\xe9l@example.com " + dg.encode(), None),
        (b"arvel@example.com d=", b"arvel@example.com 0"),
        (b"arvel@example.com d=A7E/WJtlUbO5NWDjZba+bw=", b"arvel@example.com 0"),
        (b"arvel@example.com d=A7E/WJtlUbO5NWDjZba+bw==AAAA", b"arvel@example.com 0"),
        (b"arvel@example.com d=A7E/WJtlUbO5NWDjZba+b!==", b"arvel@example.com 0"),
        (f"arvel@example.com foo=bar {dg}".encode(), b"arvel@example.com 0"),
        (f"arvel@example.com {dg} {dg}".encode(), b"arvel@example.com 0"),
        (f"arvel@example.com {dg} foo=".encode(), b"arvel@example.com 0"),
        (f"arvel@example.com {dg} foo".encode(), b"arvel@example.com 0"),
        (f"arvel@example.com {dg} fo-o=bar".encode(), b"arvel@example.com 0"),
        (f"arvel@example.com {dg} foo=b.r".encode(), b"arvel@example.com 0"),
        (f"arvel@example.com {dg} foo=1 foo=2".encode(), b"arvel@example.com 0"),
    ]
    with started({"minger_compat": "no"}) as d:
        for q, want in cases:
            S.eq(ask(d, q, timeout=0.3), want, f"malformed {q[:60]!r}")
        # And the server is still answering.
        S.eq(ask(d, EXAMPLES[0][0]), EXAMPLES[0][1], "after the malformed queries")


def test_strict_hardening():
    """minger_strict_amplification = yes: the two unpadded examples get no reply; sharemail's
    own padded form is answered."""
    with started({"minger_strict_amplification": "yes", "minger_anonymous": "yes"}) as d:
        S.eq(ask(d, b"arvel@example.com", timeout=0.3), None, "plain query, strict")
        S.eq(ask(d, b"arvel", timeout=0.3), None, "malformed, strict")
        S.eq(ask(d, b"arvel@example.com pad=00"), b"arvel@example.com 5", "padded, strict")
        S.eq(ask(d, EXAMPLES[0][0]), EXAMPLES[0][1], "digest, strict")


sys.exit(S.run([test_document_examples, test_mdaemon_plain_query,
                test_digest_vectors, test_older_digest_forms, test_extension_exchange,
                test_malformed, test_strict_hardening]))
