#!/usr/bin/env python3
"""test_minger_server: the Minger UDP server of the real sharemaild, spoken to with
raw sockets (never our own client). Digests and extension macs are computed here
with hashlib/hmac. Every reply received anywhere in the suite is checked against
the amplification rule: at most 2 octets longer than its query (the default,
minger_strict_amplification = no), never longer where a test turns strict mode on."""
import base64
import hashlib
import hmac
import os
import smtplib
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from minger_responder import Responder  # noqa: E402
from smtest import Daemon, Suite, free_tcp_port, free_udp_port, have_ipv6  # noqa: E402

S = Suite("minger_server")
SECRET = "0123456789abcdef"
SECRET2 = "correct-horse-battery-staple"
WRONG = "wrong-secret-0000"
NO_LIMITS = {"minger_rate_per_source": "0", "minger_rate_global": "0"}


def digest(secret, mailbox):
    return base64.b64encode(hashlib.md5(f"{secret}:{mailbox}".encode()).digest()).decode()


def q_d(mailbox, secret=SECRET, form="d="):
    return f"{mailbox} {form}{digest(secret, mailbox)}".encode()


def q_ext(mailbox, secret=SECRET, ts=None, nonce=None):
    ts = int(time.time()) if ts is None else ts
    nonce = nonce or os.urandom(8).hex()
    mac = hmac.new(secret.encode(), f"{mailbox} {ts} {nonce}".encode(), hashlib.sha256)
    return (f"{mailbox} d={digest(secret, mailbox)} ts={ts} nonce={nonce} "
            f"mac={mac.hexdigest()}").encode(), nonce


def reply_mac(secret, mailbox, status, nonce):
    msg = f"R {mailbox} {status} {nonce}".encode()
    return hmac.new(secret.encode(), msg, hashlib.sha256).hexdigest()


def ask(d, payload, host="127.0.0.1", source=None, slack=None, timeout=0.5):
    """One datagram; the reply or None. Checks the amplification rule on every reply
    (slack: octets a reply may exceed its query by; None: what d's config allows)."""
    if slack is None:
        slack = d.amplification_slack
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_DGRAM) as s:
        if source:
            s.bind((source, 0))
        s.settimeout(timeout)
        s.sendto(payload, (host, d.minger_port))
        try:
            data, peer = s.recvfrom(4096)
        except socket.timeout:
            return None
    S.check(peer[1] == d.minger_port, f"reply from port {peer[1]}")
    S.check(len(data) <= len(payload) + slack,
            f"amplification: {len(payload)} -> {len(data)}: {payload[:60]!r} -> {data[:60]!r}")
    return data


def populate(d):
    """Accounts and aliases through the CLI, then waits for the index to see them."""
    pw = os.path.join(d.dir, "pw.txt")
    with open(pw, "w") as f:
        f.write("correct horse battery staple\n")
    d.cli("account", "add", "arvel@example.com", "--password-file", pw)
    d.cli("account", "add", "off@example.com", "--password-file", pw, "--disabled")
    d.cli("alias", "add", "list@example.com", "arvel@example.com")
    d.cli("alias", "add", "deadlist@example.com", "off@example.com")
    d.cli("alias", "add", "fwd@example.com", "someone@elsewhere.example")


def started(conf=None, secrets=(SECRET,), accounts=True, limits=False, probe_from=None, **kw):
    """A running daemon (no rate limits unless limits=True), populated when accounts."""
    keys = dict(NO_LIMITS) if not limits else {}
    keys.update(conf or {})
    d = Daemon(conf=keys, secrets=list(secrets) if secrets else None, **kw)
    d.amplification_slack = 0 if keys.get("minger_strict_amplification") == "yes" else 2
    try:
        d.start()
        if accounts:
            populate(d)
            # The daemon refreshes its index about once a second: wait until it knows arvel.
            deadline = time.monotonic() + 10
            while ask(d, q_d("arvel@example.com", secrets[0]), source=probe_from) != \
                    b"arvel@example.com 5":
                if time.monotonic() > deadline:
                    raise RuntimeError("the index never showed the new accounts")
                time.sleep(0.1)
    except Exception:
        d.cleanup()
        raise
    return d


def status_of(reply):
    return None if reply is None else reply.split(b" ")[1]


def test_statuses():
    with started() as d:
        for mailbox, want in [("arvel@example.com", b"5"), ("off@example.com", b"4"),
                              ("nobody@example.com", b"3"), ("list@example.com", b"5"),
                              ("deadlist@example.com", b"4"), ("fwd@example.com", b"3"),
                              ("ARVEL@example.com", b"5")]:
            S.eq(ask(d, q_d(mailbox)), mailbox.encode() + b" " + want, mailbox)
        S.eq(ask(d, b"arvel pad=00"), b"arvel 0", "malformed")
        S.eq(ask(d, b"<arvel@example.com> d=A7E/WJtlUbO5NWDjZba+bw=="),
             b"<arvel@example.com> 0", "angle brackets")
        S.eq(ask(d, b"arvel@example.com d=A7E/WJtlUbO5NWDjZba+bw== foo=bar"),
             b"arvel@example.com 5", "unknown tag ignored")
        S.eq(ask(d, q_d("arvel@example.com", WRONG)), b"arvel@example.com 2", "wrong secret")
        S.eq(ask(d, q_d("nobody@example.com", WRONG)), b"nobody@example.com 2",
             "wrong secret, unknown mailbox")


def test_foreign_aliases_active():
    with started({"minger_foreign_aliases_active": "yes"}) as d:
        S.eq(ask(d, q_d("fwd@example.com")), b"fwd@example.com 5", "foreign alias")
        S.eq(ask(d, q_d("nobody@example.com")), b"nobody@example.com 3", "unknown")


def test_anonymous_off():
    with started() as d:
        for mb in ("arvel@example.com", "nobody@example.com"):
            S.eq(ask(d, f"{mb} pad=00".encode()), f"{mb} 2".encode(), f"anonymous {mb}")
            S.eq(ask(d, mb.encode()), f"{mb} 2".encode(), f"unpadded anonymous {mb}")
        S.eq(ask(d, b"a@b"), b"a@b 2", "unpadded anonymous")
    with started({"minger_strict_amplification": "yes"}) as d:
        # "a@b 2" would be longer than "a@b": dropped in strict mode.
        S.eq(ask(d, b"a@b"), None, "unpadded anonymous, strict")
        S.eq(ask(d, b"arvel@example.com"), None, "unpadded anonymous, strict")
        S.eq(ask(d, b"arvel@example.com pad=00"), b"arvel@example.com 2", "padded, strict")


def test_anonymous_on():
    with started({"minger_anonymous": "yes"}) as d:
        S.eq(ask(d, b"arvel@example.com pad=00"), b"arvel@example.com 5", "padded")
        S.eq(ask(d, b"nobody@example.com pad=00"), b"nobody@example.com 3", "padded")
        S.eq(ask(d, b"off@example.com pad=00"), b"off@example.com 4", "padded")
        S.eq(ask(d, b"arvel@example.com"), b"arvel@example.com 5", "unpadded (MDaemon)")
        S.eq(ask(d, b"nobody@example.com"), b"nobody@example.com 3", "unpadded (MDaemon)")
        S.eq(ask(d, q_d("arvel@example.com", WRONG)), b"arvel@example.com 2", "wrong digest")
    with started({"minger_anonymous": "yes", "minger_strict_amplification": "yes"}) as d:
        S.eq(ask(d, b"arvel@example.com"), None, "unpadded, strict")
        S.eq(ask(d, b"arvel@example.com pad=00"), b"arvel@example.com 5", "padded, strict")


def test_multiple_secrets():
    with started(secrets=(SECRET, SECRET2)) as d:
        S.eq(ask(d, q_d("arvel@example.com", SECRET)), b"arvel@example.com 5", "secret 1")
        S.eq(ask(d, q_d("arvel@example.com", SECRET2)), b"arvel@example.com 5", "secret 2")
        S.eq(ask(d, q_d("arvel@example.com", WRONG)), b"arvel@example.com 2", "wrong")


def test_compat():
    bare = f"arvel@example.com {digest(SECRET, 'arvel@example.com')}".encode()
    upper = q_d("arvel@example.com", form="D=")
    with started() as d:
        S.eq(ask(d, upper), b"arvel@example.com 5", "D= in compat mode")
        S.eq(ask(d, bare), b"arvel@example.com 5", "bare digest in compat mode")
        S.eq(ask(d, q_d("arvel@example.com", WRONG, "D=")), b"arvel@example.com 2", "D= wrong")
    with started({"minger_compat": "no"}) as d:
        S.eq(ask(d, upper), b"arvel@example.com 0", "D= in strict mode")
        S.eq(ask(d, bare), b"arvel@example.com 0", "bare digest in strict mode")
        S.eq(ask(d, q_d("arvel@example.com")), b"arvel@example.com 5", "d= in strict mode")


def can_bind(addr):
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((addr, 0))
        return True
    except OSError:
        return False


def test_allow_list():
    alt = can_bind("127.0.0.2")
    with started({"minger_allow": "127.0.0.2/32"}, accounts=alt,
                 probe_from="127.0.0.2") as d:
        S.eq(ask(d, q_d("arvel@example.com")), b"arvel@example.com 1", "denied source")
        S.eq(ask(d, q_d("nobody@example.com")), b"nobody@example.com 1", "denied source")
        S.eq(ask(d, b"arvel pad=00"), b"arvel 1", "denied before malformed")
        if alt:
            S.eq(ask(d, q_d("arvel@example.com"), source="127.0.0.2"), b"arvel@example.com 5",
                 "allowed source")
            S.eq(ask(d, q_d("nobody@example.com"), source="127.0.0.2"),
                 b"nobody@example.com 3", "allowed source")
        else:
            S.skip("cannot bind 127.0.0.2: the allowed source is not checked")


def test_gateway_clients():
    """minger_gateway_clients: a SecurityGateway (here 127.0.0.2) always sees a forwarding
    alias as active (5), whatever minger_foreign_aliases_active says; others see 3."""
    if not can_bind("127.0.0.2"):
        S.skip("cannot bind 127.0.0.2: no second source address")
        return
    with started({"minger_gateway_clients": ["10.9.9.0/24", "127.0.0.2/32"]}) as d:
        S.eq(ask(d, q_d("fwd@example.com"), source="127.0.0.2"), b"fwd@example.com 5",
             "foreign alias, gateway")
        S.eq(ask(d, q_d("fwd@example.com")), b"fwd@example.com 3", "foreign alias, not a gateway")
        S.eq(ask(d, q_d("nobody@example.com"), source="127.0.0.2"), b"nobody@example.com 3",
             "unknown, gateway")
        S.eq(ask(d, q_d("off@example.com"), source="127.0.0.2"), b"off@example.com 4",
             "disabled, gateway")
        S.eq(ask(d, q_d("fwd@example.com", WRONG), source="127.0.0.2"), b"fwd@example.com 2",
             "a gateway still authenticates")
    with started({"minger_gateway_clients": "127.0.0.2/32",
                  "minger_foreign_aliases_active": "yes"}) as d:
        S.eq(ask(d, q_d("fwd@example.com"), source="127.0.0.2"), b"fwd@example.com 5",
             "gateway, foreign aliases active")
        S.eq(ask(d, q_d("fwd@example.com")), b"fwd@example.com 5", "other, foreign aliases active")


def test_answers_for_own_mailboxes_only():
    """Issue 8 item 5: with Domain Sharing on and a peer that has bob, a Minger query
    for bob answers 3 from the local mailboxes and sends nothing to the peer (peers never
    ask each other in a circle). The peer is a Python responder that would say 5."""
    peer_secret = "peer-secret-0123456789"
    with Responder({"bob@example.com": 5}, secret=peer_secret) as peer:
        smtp_port = free_tcp_port()
        conf = {"domain_sharing": "yes", "smtp_listen": f"127.0.0.1:{smtp_port}",
                "domain_sharing_host":
                    f"127.0.0.1:1 minger_port={peer.port} secret_file=peer-secret.txt"}
        d = Daemon(conf=dict(NO_LIMITS, **conf), secrets=[SECRET])
        d.amplification_slack = 2
        with d:
            path = os.path.join(d.dir, "peer-secret.txt")
            with open(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
                f.write(peer_secret + "\n")
            d.start()
            for q in (q_d("bob@example.com"), q_ext("bob@example.com")[0]):
                r = ask(d, q, timeout=5)
                S.eq(r and r.split(b" ")[:2], [b"bob@example.com", b"3"], "bob is not local")
                # The reply is in: a query to the peer would have been sent before it, and on
                # loopback it is queued on the peer's socket when sendto() returns.
                S.eq(peer.count(), 0, "datagrams the peer received for a Minger query")
            S.eq(ask(d, b"bob@example.com", timeout=5), b"bob@example.com 2", "anonymous")
            S.eq(peer.count(), 0, "datagrams the peer received")
            # The control: the SMTP RCPT check does ask the peer, so the count above could
            # have been non-zero.
            code = rcpt_code(smtp_port, "bob@example.com")
            if peer.wait_for(1, timeout=10) == 0:
                S.skip(f"RCPT got {code} and did not ask the peer (Domain Sharing not wired in "
                       "the SMTP session here): the control is not checked")
            else:
                S.eq(code, 250, "RCPT for bob, found on the peer")


def rcpt_code(port, rcpt):
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as c:
        c.ehlo("client.test")
        c.mail("someone@sender.test")
        code, _ = c.rcpt(rcpt)
        return code


def test_rate_limit():
    with started({"minger_rate_per_source": "5", "minger_rate_global": "0"},
                 accounts=False, limits=True) as d:
        q = q_d("nobody@example.com")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.settimeout(0.5)
            for _ in range(30):
                s.sendto(q, ("127.0.0.1", d.minger_port))
            got = 0
            try:
                while True:
                    r, _ = s.recvfrom(4096)
                    S.check(len(r) <= len(q), "amplification")
                    got += 1
            except socket.timeout:
                pass
        S.check(5 <= got <= 8, f"burst of 5 answered, the rest dropped: got {got}")
        time.sleep(1.1)
        S.eq(ask(d, q), b"nobody@example.com 3", "answered again after a second")
        # Another source address has its own bucket.
        if can_bind("127.0.0.3"):
            S.eq(ask(d, q, source="127.0.0.3"), b"nobody@example.com 3", "other source")
        else:
            S.skip("cannot bind 127.0.0.3: the other-source bucket is not checked")


def test_extension_and_replay():
    with started(secrets=(SECRET, SECRET2)) as d:
        for secret in (SECRET, SECRET2):
            q, nonce = q_ext("arvel@example.com", secret)
            mac = reply_mac(secret, "arvel@example.com", 5, nonce)
            S.eq(ask(d, q), f"arvel@example.com 5 mac={mac}".encode(), "reply with mac")
            S.eq(ask(d, q), b"arvel@example.com 2", "same datagram replayed")
        q, nonce = q_ext("nobody@example.com")
        mac = reply_mac(SECRET, "nobody@example.com", 3, nonce)
        S.eq(ask(d, q), f"nobody@example.com 3 mac={mac}".encode(), "unknown, with mac")
        # Same nonce, fresh timestamp and mac: still a replay.
        q2, _ = q_ext("nobody@example.com", ts=int(time.time()) + 1, nonce=nonce)
        S.eq(ask(d, q2), b"nobody@example.com 2", "nonce reused")
        now = int(time.time())
        S.eq(ask(d, q_ext("arvel@example.com", ts=now - 120)[0]), b"arvel@example.com 2", "old ts")
        S.eq(ask(d, q_ext("arvel@example.com", ts=now + 120)[0]), b"arvel@example.com 2",
             "future ts")
        S.eq(ask(d, q_ext("arvel@example.com", WRONG)[0]), b"arvel@example.com 2", "wrong secret")
        bad = bytearray(q_ext("arvel@example.com")[0])
        bad[-1] = ord("0") if bad[-1] != ord("0") else ord("1")
        S.eq(ask(d, bytes(bad)), b"arvel@example.com 2", "bad mac")


def test_ipv6():
    if not have_ipv6():
        S.skip("no IPv6 loopback (::1) here")
        return
    port = free_udp_port("::1")
    with started({"minger_listen": f"[::1]:{port}"}, accounts=False) as d:
        d.minger_port = port
        S.eq(ask(d, q_d("nobody@example.com"), host="::1"), b"nobody@example.com 3", "IPv6")
        S.eq(ask(d, q_d("nobody@example.com")), None, "v4 not served by a v6 listener")


def test_hostile_datagrams():
    with started({"minger_threads": "2"}, accounts=False) as d:
        good = q_d("nobody@example.com")
        payloads = [b"", b"x", b"\x00", b"\xff" * 7, os.urandom(64), os.urandom(1024),
                    b"a" * 1025, good + b" pad=" + b"x" * (1025 - len(good) - 5),
                    b"y" * 9000, b"z" * 65000, b"a@b\x00c pad=00", b"a@b\tc d=x",
                    b" " * 30, b"@ pad=00", b"a@ pad=00", good + b" " + good]
        for p in payloads:
            r = ask(d, p, timeout=0.2)
            S.check(r is None or r.endswith(b" 0") or r.endswith(b" 2"),
                    f"{p[:20]!r}: {r!r}")
        S.eq(ask(d, b"x" * 1025), None, "1025 octets: no reply")
        padded = good + b" pad=" + b"x" * (1024 - len(good) - 5)
        S.eq(len(padded), 1024, "padded length")
        S.eq(ask(d, padded), b"nobody@example.com 3", "1024 octets answered")
        S.eq(ask(d, good), b"nobody@example.com 3", "still answering")
        S.check(d.proc.poll() is None, "daemon alive")
        S.eq(d.stop(), 0, "clean exit on SIGTERM")


sys.exit(S.run([test_statuses, test_foreign_aliases_active, test_anonymous_off,
                test_anonymous_on, test_multiple_secrets, test_compat, test_allow_list,
                test_gateway_clients, test_answers_for_own_mailboxes_only, test_rate_limit, test_extension_and_replay, test_ipv6,
                test_hostile_datagrams]))
