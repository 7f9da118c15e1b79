#!/usr/bin/env python3
"""mingerpeer.py (the independent Minger responder of the Domain Sharing and gateway
tests) checked against /work/shared/minger-protocol.md: the digest test vectors, the
example exchanges byte for byte, the malformed list, the sharemail extension (reply
mac, replay and stale ts refused), the amplification bound, and the fault behaviours
the other tests rely on (silent, hold, counting). Then, when build/sharemail exists,
sharemail's own client (`sharemail minger query`) against it, with and without the
extension: two independent readings of the draft agree.
"""
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mingerpeer  # noqa: E402
import smtest  # noqa: E402
from mingerpeer import Responder  # noqa: E402
from smtest import Suite  # noqa: E402

S = Suite("mingerpeer")
SECRET = mingerpeer.PAGE_SECRET
ANSWERS = {"arvel@example.com": 5, '"arvel smith"@example.com': 5, "off@example.com": 4}

VECTORS = mingerpeer.PAGE_VECTORS
EXCHANGES = mingerpeer.PAGE_EXCHANGES


def server(**kw):
    kw.setdefault("secrets", [SECRET])
    return Responder(ANSWERS, **kw)


def test_digest_vectors():
    for secret, mailbox, want in VECTORS:
        S.eq(mingerpeer.digest(secret, mailbox), want, f"digest({secret}, {mailbox})")


def test_example_exchanges():
    r = server()
    for q, want in EXCHANGES:
        S.eq(r.answer(q), want, f"reply to {q!r}")
    d = mingerpeer.digest(SECRET, '"arvel smith"@example.com')
    S.eq(r.answer(f'"arvel smith"@example.com d={d}'.encode()), b'"arvel smith"@example.com 5',
         "a quoted local part with a space is one mailbox")
    d = mingerpeer.digest(SECRET, "off@example.com")
    S.eq(r.answer(f"off@example.com d={d}".encode()), b"off@example.com 4", "disabled: 4")


def test_anonymous_and_allow():
    r = server(anonymous=True)
    S.eq(r.answer(b"arvel@example.com"), b"arvel@example.com 5", "anonymous allowed")
    S.eq(r.answer(b"arvel@example.com d=2P4Wlz1pI7ZmGe89PLJ8fw=="), b"arvel@example.com 2",
         "a wrong digest is 2 even when anonymous queries are allowed")
    r = server(allow=["127.0.0.9"])
    S.eq(r.answer(b"arvel@example.com d=A7E/WJtlUbO5NWDjZba+bw==", "127.0.0.1"),
         b"arvel@example.com 1", "a source outside allow: 1")


def test_malformed():
    r = server()
    d = "A7E/WJtlUbO5NWDjZba+bw=="
    zero = b"arvel@example.com 0"
    cases = [
        (b"", None), (b"x" * 1025, None), (b" arvel@example.com", None),
        (b"arvel@example.com ", zero), (f"arvel@example.com  d={d}".encode(), zero),
        (b"arvel\t@example.com", None), (b"arvel@example.com\x00", None),
        (b"arv\xe9l@example.com", None), (b"@example.com", b"@example.com 0"),
        (b"arvel@", b"arvel@ 0"), (b"a@b@example.com", b"a@b@example.com 0"),
        (b"<arvel@example.com>", b"<arvel@example.com> 0"),
        (("x" * 65 + "@example.com").encode(), ("x" * 65 + "@example.com 0").encode()),
        (b"arvel@example.com d=", zero), (b"arvel@example.com d=AAAA", zero),
        (f"arvel@example.com foo=bar d={d}".encode(), zero),
        (f"arvel@example.com d={d} d={d}".encode(), zero),
        (f"arvel@example.com d={d} foo=".encode(), zero),
        (f"arvel@example.com d={d} foo".encode(), zero),
        (f"arvel@example.com d={d} f-o=bar".encode(), zero),
        (f"arvel@example.com d={d} foo=a foo=b".encode(), zero),
        (f"arvel@example.com d={d} ts=1".encode(), zero),
    ]
    for q, want in cases:
        S.eq(r.answer(q), want, f"malformed {q[:60]!r}")
    long_domain = "arvel@" + ".".join(["a" * 60] * 5)
    S.eq(r.answer(long_domain.encode()), (long_domain + " 0").encode(), "domain over 255")


def test_compat_forms():
    d = "A7E/WJtlUbO5NWDjZba+bw=="
    r = server()
    S.eq(r.answer(f"arvel@example.com {d}".encode()), b"arvel@example.com 5", "-02 bare digest")
    S.eq(r.answer(f"arvel@example.com D={d}".encode()), b"arvel@example.com 5", "-03/-04 D=")
    strict = server(compat=False)
    S.eq(strict.answer(f"arvel@example.com {d}".encode()), b"arvel@example.com 0",
         "bare digest refused without compat")
    S.eq(strict.answer(f"arvel@example.com D={d}".encode()), b"arvel@example.com 0",
         "D= without compat is a tag, and a digest is no tag-value: 0")


def ext_query(secret, mailbox, ts, nonce):
    mac = mingerpeer.query_mac(secret, mailbox, ts, nonce)
    return (f"{mailbox} d={mingerpeer.digest(secret, mailbox)} ts={ts} nonce={nonce} "
            f"mac={mac}").encode()


def test_extension():
    now = [1_700_000_000]
    r = server(clock=lambda: now[0])
    nonce = "0123456789abcdef"
    q = ext_query(SECRET, "arvel@example.com", now[0], nonce)
    rep = r.answer(q)
    mac = mingerpeer.reply_mac(SECRET, "arvel@example.com", 5, nonce)
    S.eq(rep, f"arvel@example.com 5 mac={mac}".encode(), "extension reply carries the mac")
    S.eq(r.answer(q), b"arvel@example.com 2", "the same nonce again is a replay: 2")
    S.eq(r.answer(ext_query(SECRET, "arvel@example.com", now[0] - 61, "1123456789abcdef")),
         b"arvel@example.com 2", "ts 61 s old: 2")
    S.eq(r.answer(ext_query(SECRET, "arvel@example.com", now[0] + 60, "2123456789abcdef"))[:19],
         b"arvel@example.com 5", "ts 60 s ahead is inside the window")
    bad = ext_query(SECRET, "arvel@example.com", now[0], "3123456789abcdef")
    bad = bad[:-1] + (b"0" if bad[-1:] != b"0" else b"1")
    S.eq(r.answer(bad), b"arvel@example.com 2", "a wrong query mac: 2")
    S.eq(mingerpeer.parse_reply(rep, "arvel@example.com", SECRET, nonce), 5, "reply mac checks")
    S.eq(mingerpeer.parse_reply(rep, "arvel@example.com", SECRET, "f" * 16), None,
         "a reply mac for another nonce is no reply")
    S.eq(mingerpeer.parse_reply(b"arvel@example.com 5 x", "arvel@example.com"), None,
         "extra octets: no reply")
    S.eq(mingerpeer.parse_reply(b"other@example.com 5", "arvel@example.com"), None,
         "another mailbox: no reply")
    S.eq(mingerpeer.parse_reply(b"arvel@example.com 6", "arvel@example.com"), None,
         "status 6: no reply")


def test_amplification():
    r = server(anonymous=True)
    S.eq(r.answer(b"arvel@example.com"), b"arvel@example.com 5", "2 octets longer is allowed")
    S.eq(server(anonymous=True, strict=True).answer(b"arvel@example.com"), None,
         "strict: no reply longer than the query")
    S.eq(server(anonymous=True, strict=True).answer(b"arvel@example.com pad=00"),
         b"arvel@example.com 5", "strict: a padded query is answered")


def test_socket_counts_silent_hold():
    with server() as r:
        S.eq(mingerpeer.query(r.hostport, "arvel@example.com", SECRET), 5, "over UDP: 5")
        S.eq(mingerpeer.query(r.hostport, "nobody@example.com", SECRET, ext=True), 3,
             "over UDP with the extension: 3")
        S.eq(r.count, 2, "two datagrams counted")
        S.eq(r.mailboxes(), ["arvel@example.com", "nobody@example.com"], "mailboxes asked")
    with server(silent=True) as r:
        S.eq(mingerpeer.query(r.hostport, "arvel@example.com", SECRET, timeout=0.2, tries=2),
             None, "silent: no reply")
        S.eq(r.count, 2, "silent still counts both copies")
    with server(hold=3, hold_limit=10) as r:
        import socket
        socks = []
        for i in range(3):
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.settimeout(5)
            mb = f"u{i}@example.com"
            s.sendto(f"{mb} d={mingerpeer.digest(SECRET, mb)}".encode(), ("127.0.0.1", r.port))
            socks.append((s, mb))
        for s, mb in socks:
            data, _ = s.recvfrom(100)
            S.eq(data, f"{mb} 3".encode(), "held reply sent once all three came")
            s.close()
        S.eq(r.distinct_before_reply, 3, "three different queries in flight before a reply")


def test_sharemail_client_interop():
    if not os.access(smtest.SHAREMAIL, os.X_OK):
        S.skip("build/sharemail missing")
        return
    work = tempfile.mkdtemp(prefix="sharemail-mpeer-")
    sf = os.path.join(work, "secret")
    with open(os.open(sf, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
        f.write(SECRET + "\n")
    conf = os.path.join(work, "c.conf")
    with open(conf, "w") as f:
        f.write(f"hostname = t.test\nstate_dir = {work}/state\nlocal_domains = example.net\n")
    with server() as r:
        for extra, what in (([], "with the extension"), (["--no-ext"], "plain -06")):
            p = subprocess.run([smtest.SHAREMAIL, "-c", conf, "minger", "query",
                                "arvel@example.com", "nobody@example.com", "--server",
                                r.hostport, "--secret-file", sf, "--no-cache", *extra],
                               capture_output=True, text=True, timeout=60)
            S.eq(p.returncode, 0, f"sharemail minger query {what}: exit ({p.stderr!r})")
            lines = p.stdout.splitlines()
            S.check(any(ln.startswith("arvel@example.com 5") for ln in lines),
                    f"{what}: arvel 5 in {p.stdout!r}")
            S.check(any(ln.startswith("nobody@example.com 3") for ln in lines),
                    f"{what}: nobody 3 in {p.stdout!r}")
        S.check(any(b" mac=" in d for d in r.datagrams()), "sharemail sent extension queries")
    import shutil
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(S.run([test_digest_vectors, test_example_exchanges, test_anonymous_and_allow,
                    test_malformed, test_compat_forms, test_extension, test_amplification,
                    test_socket_counts_silent_hold, test_sharemail_client_interop]))
