"""dnszone: a real DNS server (Debian's nsd) on loopback serving test zones.

    zones = {"example.test": [("@", "MX", "10 mx1"), ("@", "MX", "20 mx2.example.test."),
                              ("mx1", "A", "127.0.0.2"), ("mx2", "A", "127.0.0.3")],
             "null.test": [("@", "MX", "0 .")]}
    with DnsZone(zones, servfail=["broken.test"]) as dns:
        conf = {"dns_nameserver": dns.nameserver}           # "127.0.0.1:PORT"
        dns.ask("example.test", "MX")                       # Answer(rcode=0, answers=[...])

As tests/unit/test_mx_dns.c does it from C: nsd runs in the foreground (-d) from a
config and zone files written into a temporary folder, on host (127.0.0.1) at a port
free for both UDP and TCP, and is killed at the end whatever happens (peerutil.Child:
own process group, SIGKILL when the test dies, atexit). Each zone gets a SOA and an NS
record (ns.invalid.); its records are (owner, type, rdata) or (owner, ttl, type, rdata),
written as zone-file lines: owner "@" is the apex, a relative owner or rdata name is
under the zone, a trailing dot makes it absolute. A name under a served zone that has no
record is NXDOMAIN; a zone in `servfail` is configured with a zone file that does not
exist, so nsd answers SERVFAIL for it (and any name under it); a name outside every zone
is REFUSED. SilentDns is a name server that never answers (the timeout case).

ask() is a tiny independent DNS client (struct + socket, UDP or TCP) for the tests.
Standard library only.
"""
import collections
import os
import socket
import struct

from peerutil import Child, wait_until, workdir

NSD = "/usr/sbin/nsd"
TYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "MX": 15, "TXT": 16,
         "AAAA": 28, "SRV": 33, "ANY": 255}
TYPE_NAMES = {v: k for k, v in TYPES.items()}
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}
NOERROR, SERVFAIL, NXDOMAIN, REFUSED = 0, 2, 3, 5

RR = collections.namedtuple("RR", "name type ttl data")
Answer = collections.namedtuple("Answer", "rcode aa tc answers authority")


def free_udp_tcp_port(host="127.0.0.1"):
    """A port free for both UDP and TCP on host (bound, read back, closed)."""
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(50):
        with socket.socket(fam, socket.SOCK_DGRAM) as u:
            u.bind((host, 0))
            port = u.getsockname()[1]
            with socket.socket(fam, socket.SOCK_STREAM) as t:
                try:
                    t.bind((host, port))
                    return port
                except OSError:
                    continue
    raise OSError("no port free for both UDP and TCP")


def _clean(s, what):
    s = str(s)
    if any(c in s for c in "\r\n\0;") or not s.strip():
        raise ValueError(f"{what} {s!r}: empty, or a line break, NUL or ';' in it")
    return s


class DnsZone:
    """nsd serving `zones` ({name: [records]}) and SERVFAIL for `servfail` zones."""

    def __init__(self, zones, servfail=(), host="127.0.0.1", port=None, ttl=60,
                 start_timeout=15.0):
        self.zones = {z.rstrip(".").lower(): list(rrs) for z, rrs in zones.items()}
        self.servfail = [z.rstrip(".").lower() for z in servfail]
        if not self.zones and not self.servfail:
            raise ValueError("no zone to serve")
        self.host = host
        self.port = port or free_udp_tcp_port(host)
        self.ttl = ttl
        self.start_timeout = start_timeout
        self.dir = None
        self.child = None

    @property
    def nameserver(self):
        """The value for sharemail's dns_nameserver key: "127.0.0.1:PORT" ("[::1]:PORT")."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def zone_text(self, zone):
        out = [f"$ORIGIN {zone}.", f"$TTL {int(self.ttl)}",
               "@ SOA ns.invalid. hostmaster.invalid. 1 3600 600 86400 60",
               "@ NS ns.invalid."]
        for rr in self.zones[zone]:
            if len(rr) == 3:
                owner, rtype, rdata = rr
                ttl = ""
            elif len(rr) == 4:
                owner, ttl, rtype, rdata = rr
                ttl = str(int(ttl))
            else:
                raise ValueError(f"record {rr!r}: want (owner, type, rdata) or (owner, ttl, "
                                 f"type, rdata)")
            out.append(" ".join(x for x in (_clean(owner, "owner"), ttl,
                                            _clean(rtype, "type").upper(),
                                            _clean(rdata, "rdata")) if x))
        return "\n".join(out) + "\n"

    def config_text(self):
        d = self.dir
        lines = ["server:", f"  ip-address: {self.host}", f"  port: {self.port}",
                 f"  do-ip4: {'no' if ':' in self.host else 'yes'}",
                 f"  do-ip6: {'yes' if ':' in self.host else 'no'}",
                 '  username: ""', '  chroot: ""', '  database: ""', f'  zonesdir: "{d}"',
                 f'  pidfile: "{d}/nsd.pid"', f'  xfrdfile: "{d}/xfrd.state"',
                 f'  xfrdir: "{d}"', f'  zonelistfile: "{d}/zone.list"',
                 f'  logfile: "{d}/nsd.log"', "  verbosity: 1", "  server-count: 1",
                 "  reuseport: no", "  hide-version: yes", "  refuse-any: no",
                 "remote-control:", "  control-enable: no"]
        for i, z in enumerate(self.zones):
            lines += ["zone:", f'  name: "{z}"', f'  zonefile: "zone{i}.zone"']
        for z in self.servfail:
            # Configured, zone file missing: nsd answers SERVFAIL for it.
            lines += ["zone:", f'  name: "{z}"', '  zonefile: "missing-on-purpose.zone"']
        return "\n".join(lines) + "\n"

    def start(self):
        if not os.access(NSD, os.X_OK):
            raise RuntimeError(f"{NSD} is missing (scripts/install-deps installs nsd)")
        self.dir = workdir("sharemail-nsd-")
        for i, z in enumerate(self.zones):
            with open(os.path.join(self.dir, f"zone{i}.zone"), "w") as f:
                f.write(self.zone_text(z))
        conf = os.path.join(self.dir, "nsd.conf")
        with open(conf, "w") as f:
            f.write(self.config_text())
        self.child = Child([NSD, "-d", "-c", conf], os.path.join(self.dir, "nsd.out"))
        probe = next(iter(self.zones or self.servfail))

        def up():
            if not self.child.alive():
                raise RuntimeError(f"nsd exited {self.child.proc.returncode}:\n"
                                   f"{self.logtext()}")
            try:
                self.ask(probe, "SOA", timeout=0.1)
                return True
            except (socket.timeout, TimeoutError, ConnectionRefusedError):
                return False    # not up yet (a refused datagram comes back at once)
        try:
            wait_until(up, self.start_timeout, "nsd answering")
            for z in self.zones:
                # nsd serves a zone it could not load as SERVFAIL: a typo in a test zone
                # is an error here, not a mysterious SERVFAIL later.
                if self.ask(z, "SOA").rcode != NOERROR:
                    raise RuntimeError(f"zone {z} did not load")
        except Exception as e:
            log = self.logtext()
            self.stop()
            raise RuntimeError(f"nsd did not start: {e}\n{log}")
        return self

    def logtext(self):
        out = self.child.logtext() if self.child else ""
        try:
            with open(os.path.join(self.dir, "nsd.log"), errors="replace") as f:
                out += f.read()[-4000:]
        except OSError:
            pass
        return out

    def ask(self, name, qtype="A", tcp=False, timeout=2.0):
        """ask() against this server."""
        return ask(self.port, name, qtype, host=self.host, tcp=tcp, timeout=timeout)

    def stop(self):
        if self.child:
            self.child.stop()
            self.child = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class SilentDns:
    """A name server that never answers: a bound UDP socket nobody reads and a TCP
    listener that never accepts, on one port. with SilentDns() as s: s.nameserver"""

    def __init__(self, host="127.0.0.1"):
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.host = host
        self.port = free_udp_tcp_port(host)
        self.udp = socket.socket(fam, socket.SOCK_DGRAM)
        self.udp.bind((host, self.port))
        self.tcp = socket.socket(fam, socket.SOCK_STREAM)
        self.tcp.bind((host, self.port))
        self.tcp.listen(16)

    @property
    def nameserver(self):
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def close(self):
        self.udp.close()
        self.tcp.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ---- a tiny DNS client (RFC 1035 4.1) -----------------------------------------------

def encode_name(name):
    out = b""
    for label in name.rstrip(".").split(".") if name.strip(".") else []:
        b = label.encode("ascii")
        if not 0 < len(b) < 64:
            raise ValueError(f"bad label in {name!r}")
        out += bytes([len(b)]) + b
    return out + b"\0"


def build_query(name, qtype, qid=0x5151, rd=True):
    t = TYPES[qtype.upper()] if isinstance(qtype, str) else int(qtype)
    return struct.pack(">HHHHHH", qid, 0x0100 if rd else 0, 1, 0, 0, 0) + \
        encode_name(name) + struct.pack(">HH", t, 1)


def read_name(msg, off):
    """(name, offset after it) with compression pointers (RFC 1035 4.1.4), bounded."""
    labels, jumps, end = [], 0, None
    while True:
        if off >= len(msg):
            raise ValueError("name runs past the message")
        n = msg[off]
        if n & 0xC0 == 0xC0:
            if off + 1 >= len(msg) or jumps > 32:
                raise ValueError("bad compression pointer")
            if end is None:
                end = off + 2
            off = ((n & 0x3F) << 8) | msg[off + 1]
            jumps += 1
            continue
        if n == 0:
            return ".".join(labels) + ".", (end if end is not None else off + 1)
        if n > 63 or off + 1 + n > len(msg):
            raise ValueError("bad label")
        labels.append(msg[off + 1:off + 1 + n].decode("ascii", "replace"))
        off += 1 + n


def _rdata(msg, t, off, n):
    rd = msg[off:off + n]
    if t == 1 and n == 4:
        return socket.inet_ntop(socket.AF_INET, rd)
    if t == 28 and n == 16:
        return socket.inet_ntop(socket.AF_INET6, rd)
    if t == 15:
        return (struct.unpack(">H", rd[:2])[0], read_name(msg, off + 2)[0])
    if t in (2, 5, 12):
        return read_name(msg, off)[0]
    if t == 16:
        out, i = [], 0
        while i < n:
            out.append(rd[i + 1:i + 1 + rd[i]])
            i += 1 + rd[i]
        return out
    if t == 6:
        mname, o = read_name(msg, off)
        rname, o = read_name(msg, o)
        return (mname, rname) + struct.unpack(">IIIII", msg[o:o + 20])
    return rd


def parse_reply(msg, qid=None):
    """Answer(rcode, aa, tc, answers, authority) of a reply message; ValueError when it
    is malformed."""
    try:
        return _parse_reply(msg, qid)
    except (struct.error, IndexError) as e:
        raise ValueError(f"malformed DNS reply: {e}")


def _parse_reply(msg, qid):
    if len(msg) < 12:
        raise ValueError("short DNS message")
    rid, flags, qd, an, ns, _ = struct.unpack(">HHHHHH", msg[:12])
    if qid is not None and rid != qid:
        raise ValueError("reply to another query")
    if not flags & 0x8000:
        raise ValueError("not a reply")
    off = 12
    for _ in range(qd):
        _, off = read_name(msg, off)
        off += 4
    sections = []
    for count in (an, ns):
        rrs = []
        for _ in range(count):
            name, off = read_name(msg, off)
            t, _, ttl, n = struct.unpack(">HHIH", msg[off:off + 10])
            off += 10
            rrs.append(RR(name, TYPE_NAMES.get(t, t), ttl, _rdata(msg, t, off, n)))
            off += n
        sections.append(rrs)
    return Answer(flags & 0xF, bool(flags & 0x0400), bool(flags & 0x0200), *sections)


def ask(port, name, qtype="A", host="127.0.0.1", tcp=False, timeout=2.0, qid=0x5151):
    """Asks host:port one question; returns its Answer. Raises socket.timeout when no
    reply comes within timeout."""
    q = build_query(name, qtype, qid)
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    if tcp:
        with socket.socket(fam, socket.SOCK_STREAM) as s:
            s.settimeout(timeout)
            s.connect((host, port))
            s.sendall(struct.pack(">H", len(q)) + q)
            buf = b""
            while len(buf) < 2 or len(buf) < 2 + struct.unpack(">H", buf[:2])[0]:
                chunk = s.recv(65536)
                if not chunk:
                    raise ConnectionError("TCP DNS reply cut short")
                buf += chunk
            return parse_reply(buf[2:2 + struct.unpack(">H", buf[:2])[0]], qid)
    with socket.socket(fam, socket.SOCK_DGRAM) as s:
        s.settimeout(timeout)
        s.connect((host, port))
        s.send(q)
        return parse_reply(s.recv(65535), qid)
