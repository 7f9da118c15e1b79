#!/usr/bin/env python3
"""test_cli_peers: the sharemail tool and the other servers of a shared domain, run as the
real build/sharemail against Minger responders written in Python (minger_responder.py):

- `account add` asks every Domain Sharing peer first: refused (exit 1, the peer named)
  when a peer has the address (5 or 4), refused (exit 75, named) when a peer does not
  answer, answers 0-2 or cannot be asked; `--force` adds with a warning; not asked at all
  when the domain is not shared (domain_sharing = no, or not in domain_sharing_domains_file);
- `peers` lists every peer, gateway and forwarded domain of the config with what
  <state_dir>/peers.status says of it ("never" when nothing);
- `cache list` labels each entry with the configured server it came from; `cache flush
  ADDRESS` forgets one address.
"""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from minger_responder import Responder  # noqa: E402
from smtest import Daemon, Suite  # noqa: E402

S = Suite("cli_peers")
PEER_SECRET = "peer-secret-0123456789"
OTHER_SECRET = "another-secret-0123456789"
FAST = {"minger_timeout_ms": "200", "minger_retries": "0"}


def write_secret(d, name, secret):
    path = os.path.join(d.dir, name)
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write(secret + "\n")
    return name


def peer_line(smtp_port, resp, secret_file="peer-secret.txt"):
    line = f"127.0.0.1:{smtp_port} minger_port={resp.port}"
    return line + (f" secret_file={secret_file}" if secret_file else "")


def sharing(peers, extra=None, domains="example.com"):
    """A config (no daemon) with domain_sharing = yes and the given peer lines; the
    secret file every line names holds PEER_SECRET."""
    conf = dict(FAST, domain_sharing="yes", domain_sharing_host=peers)
    conf.update(extra or {})
    d = Daemon(conf=conf, minger=False, domains=domains)
    write_secret(d, "peer-secret.txt", PEER_SECRET)
    return d


def add(d, addr, *opts):
    return d.cli("account", "add", addr, "--no-password", *opts, check=False)


def accounts(d):
    return [line.split()[0] for line in d.cli("account", "list").stdout.splitlines()]


def test_add_refused_when_a_peer_has_it():
    with Responder({"bob@example.com": 5, "off@example.com": 4}, secret=PEER_SECRET) as peer:
        with sharing([peer_line(2525, peer)]) as d:
            p = add(d, "bob@example.com")
            S.eq(p.returncode, 1, "exists on the peer: exit 1")
            S.check("127.0.0.1:2525" in p.stderr and f"127.0.0.1:{peer.port}" in p.stderr,
                    f"the peer is named: {p.stderr!r}")
            S.check("--force" in p.stderr, "the way out is named")
            p = add(d, "Off@Example.com")
            S.eq(p.returncode, 1, "disabled on the peer (4): exit 1")
            S.check("127.0.0.1:2525" in p.stderr, "named")
            S.eq(accounts(d), [], "nothing added")
            S.eq(peer.count(), 2, "one datagram per add")
            # The digest the peer checked is the one of the secret_file (resolved against
            # the config's folder): a wrong secret would have been answered 2.
            p = add(d, "carol@example.com")
            S.eq((p.returncode, p.stderr), (0, ""), "unknown on the peer: added")
            S.eq(accounts(d), ["carol@example.com"], "carol added")
            S.check(all(b" d=" in q for q in peer.received), "queries carry a digest")


def test_add_force():
    with Responder({"bob@example.com": 5}, secret=PEER_SECRET) as peer:
        with sharing([peer_line(2525, peer)]) as d:
            p = add(d, "bob@example.com", "--force")
            S.eq(p.returncode, 0, "--force adds")
            S.check("warning" in p.stderr and "127.0.0.1:2525" in p.stderr,
                    f"a warning naming the peer: {p.stderr!r}")
            S.eq(accounts(d), ["bob@example.com"], "bob added")
            S.eq(peer.count(), 1, "the peer was still asked")
            p = add(d, "bob@example.com", "--force")
            S.eq(p.returncode, 1, "--force does not override a local duplicate")


def test_add_peer_silent():
    with Responder(silent=True) as peer:
        with sharing([peer_line(2525, peer)]) as d:
            p = add(d, "bob@example.com")
            S.eq(p.returncode, 75, "a silent peer: exit 75")
            S.check("127.0.0.1:2525" in p.stderr and "did not answer" in p.stderr,
                    f"the silent peer is named: {p.stderr!r}")
            S.eq(accounts(d), [], "nothing added")
            S.eq(peer.count(), 1, "one try (minger_retries = 0)")
            p = add(d, "bob@example.com", "--force")
            S.eq(p.returncode, 0, "--force adds")
            S.check("warning" in p.stderr and "127.0.0.1:2525" in p.stderr, "warned")
            S.eq(accounts(d), ["bob@example.com"], "added with --force")


def test_add_peer_refuses_the_secret():
    with Responder({"bob@example.com": 3}, secret=OTHER_SECRET) as peer:
        with sharing([peer_line(2525, peer)]) as d:
            p = add(d, "bob@example.com")
            S.eq(p.returncode, 75, "status 2: exit 75 (nobody knows)")
            S.check("127.0.0.1:2525" in p.stderr and "2 bad credentials" in p.stderr,
                    f"named with the status: {p.stderr!r}")
            S.eq(accounts(d), [], "nothing added")


def test_add_peer_cannot_be_asked():
    with Responder({"bob@example.com": 3}, secret=PEER_SECRET) as peer:
        with sharing([peer_line(2525, peer, "missing-secret.txt")]) as d:
            p = add(d, "bob@example.com")
            S.eq(p.returncode, 75, "unreadable secret_file: exit 75")
            S.check("cannot ask" in p.stderr and "127.0.0.1:2525" in p.stderr,
                    f"named: {p.stderr!r}")
            S.eq(peer.count(), 0, "nothing sent without the secret")


def test_add_many_peers():
    """Four peers, asked together: one has bob (named), one does not, two are silent."""
    with Responder(silent=True) as s1, Responder(silent=True) as s2, \
            Responder({"bob@example.com": 3}, secret=PEER_SECRET) as a, \
            Responder({"bob@example.com": 5}, secret=PEER_SECRET) as b:
        lines = [peer_line(2001, s1), peer_line(2002, s2), peer_line(2003, a),
                 peer_line(2004, b)]
        with sharing(lines, {"minger_timeout_ms": "3000"}) as d:
            p = add(d, "bob@example.com")
            S.eq(p.returncode, 1, "exists on b: exit 1 (outranks the silent ones)")
            S.check("127.0.0.1:2004" in p.stderr and "exists" in p.stderr, "b named")
            S.check("127.0.0.1:2001" in p.stderr and "127.0.0.1:2002" in p.stderr,
                    "the silent ones named too")
            S.check("127.0.0.1:2003" not in p.stderr, "a (unknown there) not named")
            S.eq([r.count() for r in (s1, s2, a, b)], [1, 1, 1, 1], "each peer asked once")
            # Asked together: asked one after another, the peers after a silent one would
            # get their query a whole timeout (3 s) later.
            t = [r.times[0] for r in (s1, s2, a, b)]
            S.check(max(t) - min(t) < 1.5, f"all asked within {max(t) - min(t):.2f}s")
            p = add(d, "dave@example.com")
            S.eq(p.returncode, 75, "unknown on a and b, s1 and s2 silent: exit 75")


def test_add_not_shared():
    with Responder({"bob@example.com": 5}, secret=PEER_SECRET) as peer:
        with sharing([peer_line(2525, peer)], {"domain_sharing": "no"}) as d:
            S.eq(add(d, "bob@example.com").returncode, 0, "domain_sharing = no: added")
        S.eq(peer.count(), 0, "not asked with domain_sharing = no")
        with sharing([peer_line(2525, peer)],
                     {"domain_sharing_domains_file": "shared-domains.txt"},
                     domains="example.com example.net") as d:
            with open(os.path.join(d.dir, "shared-domains.txt"), "w") as f:
                f.write("# the shared ones\n\nEXAMPLE.net\n")
            S.eq(add(d, "bob@example.com").returncode, 0, "example.com not listed: added")
            S.eq(peer.count(), 0, "not asked for an unlisted domain")
            p = add(d, "bob@example.net")
            S.eq(p.returncode, 0, "example.net listed, unknown on the peer: added")
            S.eq(peer.count(), 1, "asked for the listed domain")
            S.eq(add(d, "x@example.net").returncode, 0, "another")
            os.unlink(os.path.join(d.dir, "shared-domains.txt"))
            p = add(d, "bob2@example.com")
            S.eq(p.returncode, 0, "absent file: every local domain shared (asked, unknown)")
            S.eq(peer.count(), 3, "asked once the file is gone")


def status_line(kind, name, minger, last, rtt_last, rtt_avg, queries, failures):
    return f"{kind} {name} {minger} {last} {rtt_last} {rtt_avg} {queries} {failures}\n"


def peers_rows(d):
    p = d.cli("peers", check=False)
    S.eq(p.returncode, 0, "peers exit")
    lines = p.stdout.splitlines()
    S.eq(lines[0].split(), ["KIND", "NAME", "MINGER", "LAST-ANSWER", "RTT-LAST", "RTT-AVG",
                            "QUERIES", "FAILURES"], "header")
    return [line.split() for line in lines[1:]], p.stderr


def test_peers_listing():
    conf = {"domain_sharing": "yes",
            "domain_sharing_host": ["10.0.0.1:25", "10.0.0.2:2525 minger_port=4070",
                                    "[2001:db8::3]:25"],
            "gateway_domain": "example.org host=[10.0.1.1]:25 minger=10.0.1.1:4069",
            "forward_domain": "lan.example host=[10.0.2.1] minger=10.0.2.1"}
    with Daemon(conf=conf, minger=False) as d:
        rows, err = peers_rows(d)
        S.eq(err, "", "no warning without a status file")
        never = ["never", "-", "-", "0", "0"]
        S.eq(rows, [["peer", "10.0.0.1:25", "10.0.0.1:4069"] + never,
                    ["peer", "10.0.0.2:2525", "10.0.0.2:4070"] + never,
                    ["peer", "[2001:db8::3]:25", "[2001:db8::3]:4069"] + never,
                    ["gateway", "example.org", "10.0.1.1:4069"] + never,
                    ["forward", "lan.example", "10.0.2.1:4069"] + never],
             "every server, nothing known yet")
        os.makedirs(d.state, exist_ok=True)
        with open(os.path.join(d.state, "peers.status"), "w") as f:
            f.write("# kind name minger_addr last_answer_epoch rtt_last_us rtt_avg_us "
                    "queries failures\n")
            f.write(status_line("peer", "10.0.0.1:25", "10.0.0.1:4069", 1700000000, 412,
                                1500, 12, 1))
            f.write(status_line("peer", "10.0.0.2:2525", "10.0.0.2:4070", 0, 0, 0, 3, 3))
            f.write("garbage line\n")
            f.write(status_line("gateway", "example.org", "10.0.1.1:4069", 1700000100,
                                2000000, 1000, 7, 0))
            f.write(status_line("peer", "gone.example:25", "10.9.9.9:4069", 1, 1, 1, 1, 1))
        rows, err = peers_rows(d)
        S.check("peers.status:4" in err, f"the bad line is named: {err!r}")
        S.eq(rows[0], ["peer", "10.0.0.1:25", "10.0.0.1:4069", "2023-11-14T22:13:20Z",
                       "0.412ms", "1.500ms", "12", "1"], "answered peer")
        S.eq(rows[1], ["peer", "10.0.0.2:2525", "10.0.0.2:4070", "never", "-", "-", "3", "3"],
             "a peer that never answered")
        S.eq(rows[2][3:], never, "not in the file")
        S.eq(rows[3], ["gateway", "example.org", "10.0.1.1:4069", "2023-11-14T22:15:00Z",
                       "2000.000ms", "1.000ms", "7", "0"], "gateway")
        S.eq(len(rows), 5, "a server no longer configured is not listed")
        p = d.cli("peers", "extra", check=False)
        S.eq(p.returncode, 64, "usage")


def test_peers_notes_sharing_off():
    with Daemon(conf={"domain_sharing_host": "10.0.0.1:25"}, minger=False) as d:
        rows, err = peers_rows(d)
        S.check("domain_sharing = no" in err, f"noted: {err!r}")
        S.eq([r[:2] for r in rows], [["peer", "10.0.0.1:25"]], "still listed")


def test_cache_list_labels():
    with Responder({"bob@example.com": 5, "eve@example.com": 3}) as peer, \
            Responder({"gw@example.org": 5}) as gw, Responder({"x@example.com": 4}) as other:
        conf = dict(FAST, domain_sharing="yes",
                    domain_sharing_host=f"127.0.0.1:2525 minger_port={peer.port}",
                    gateway_domain=f"example.org host=[127.0.0.1]:2526 "
                                   f"minger=127.0.0.1:{gw.port}")
        with Daemon(conf=conf, minger=False) as d:
            os.makedirs(d.state)  # `minger query` records into an existing state_dir only
            for port, addrs in ((peer.port, ["bob@example.com", "eve@example.com"]),
                                (gw.port, ["gw@example.org"]), (other.port, ["x@example.com"])):
                p = d.cli("minger", "query", *addrs, "--server", f"127.0.0.1:{port}",
                          check=False)
                S.eq((p.returncode, p.stderr), (0, ""), f"query {addrs}")
            p = d.cli("cache", "list")
            rows = [line.split(" ") for line in p.stdout.splitlines()]
            S.eq([(r[0], r[1], r[3], r[5]) for r in rows],
                 [("bob@example.com", "5", f"127.0.0.1:{peer.port}", "peer:127.0.0.1:2525"),
                  ("eve@example.com", "3", f"127.0.0.1:{peer.port}", "peer:127.0.0.1:2525"),
                  ("gw@example.org", "5", f"127.0.0.1:{gw.port}", "gateway:example.org"),
                  ("x@example.com", "4", f"127.0.0.1:{other.port}", "query")],
                 "labelled entries")
            S.check(all(re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", r[4]) for r in rows),
                    "expiry column")
            p = d.cli("cache", "flush", "BOB@example.com")
            S.eq(p.stdout, "1 entries flushed\n", "flush one address")
            p = d.cli("cache", "list")
            S.eq([line.split(" ")[0] for line in p.stdout.splitlines()],
                 ["eve@example.com", "gw@example.org", "x@example.com"], "bob forgotten")


sys.exit(S.run([test_add_refused_when_a_peer_has_it, test_add_force, test_add_peer_silent,
                test_add_peer_refuses_the_secret, test_add_peer_cannot_be_asked,
                test_add_many_peers, test_add_not_shared, test_peers_listing,
                test_peers_notes_sharing_off, test_cache_list_labels]))
