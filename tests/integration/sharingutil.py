"""sharingutil: several real sharemaild for one domain (Domain Sharing), for
test_domain_sharing.py, test_gateway.py and bench/sharing.

    with Mesh({"a": ["alice@example.com"], "b": ["bob@example.com"]}) as m:
        m.send("a", "x@client.test", ["bob@example.com"], body)  # SMTP to A
        m.wait_mail("b", "bob@example.com")                       # lands in B's Maildir
        m.stop("b"); ...; m.start("b")

Each Office is a smtest.Daemon with its own state_dir, an SMTP port and a Minger port
on 127.0.0.1, its own accounts (made before the peers are configured, so `account add`
never asks a peer that is not running yet), and a `domain_sharing_host` line for every
other office of the mesh (`127.0.0.1:SMTP minger_port=M secret_file=peer-NAME.secret`),
all sharing one Minger secret unless a test gives a pair another (`peer_secrets`).

Test clients connect from CLIENT_IP (127.0.0.100), never from 127.0.0.1: the offices
talk to each other from 127.0.0.1, so a server can tell a peer from a test client.
Retries are short (relayutil.BASE: 1 s doubling to 4 s) and a Minger peer that does
not answer is given up on after MINGER_TIMEOUT_MS x (1 + retries): faults show
quickly, yet nothing here asserts a duration. Standard library only.
"""
import os
import smtplib

import relayutil
import smtest

DOMAIN = "example.com"
SECRET = "sharing-test-secret-0123456789"
CLIENT_IP = "127.0.0.100"
MINGER_TIMEOUT_MS = 400
WAIT = relayutil.WAIT

BASE = dict(relayutil.BASE)
BASE.update({
    "smtp_trusted_networks": None,      # a test client is an outsider, as on the internet
    # The offices' own users send unauthenticated here (AUTH is test_auth*.py's subject).
    "auth_required_for_local_senders": "no",
    "relay_tls": "off",
    "minger_timeout_ms": str(MINGER_TIMEOUT_MS),
    "minger_retries": "1",
    "minger_rate_per_source": "0",      # 50 pipelined RCPTs are 50 queries at once
    "minger_rate_global": "0",
})


def write_secret(path, secret):
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        f.write(secret + "\n")


class Office:
    """One sharemaild: name, smtp_port, minger_port, users, d (the smtest.Daemon)."""

    def __init__(self, name, users=(), domains=DOMAIN, conf=None, secret=SECRET):
        self.name = name
        self.users = list(users)
        self.smtp_port = smtest.free_tcp_port()
        self.minger_port = smtest.free_udp_port()
        self.keys = {"hostname": f"{name}.{DOMAIN}", "state_dir": "state",
                     "local_domains": domains, "log_level": "debug",
                     "relay_smarthost": smtest.RELAY_NOWHERE}
        self.keys.update(BASE)
        self.keys.update({"smtp_listen": f"127.0.0.1:{self.smtp_port}",
                          "minger_listen": f"127.0.0.1:{self.minger_port}",
                          "minger_secret_file": "secrets.txt" if secret else None})
        self.keys.update(conf or {})
        self.d = smtest.Daemon(conf=self.keys, secrets=[secret] if secret else None,
                               domains=domains, minger=False)
        self.d.write_conf(self.keys)
        self.d.smtp_port = self.smtp_port
        for u in self.users:
            self.d.cli("account", "add", u, "--no-password")

    @property
    def minger(self):
        return f"127.0.0.1:{self.minger_port}"

    @property
    def smtp(self):
        return f"127.0.0.1:{self.smtp_port}"

    def configure(self, extra=None):
        """Rewrites the config: the office's keys updated with extra (a None value
        leaves a key out); takes effect at the next start."""
        self.keys.update(extra or {})
        self.d.write_conf(self.keys)

    def secret_file(self, name, secret):
        """Writes a secret into the office's folder; returns the name relative to it."""
        write_secret(os.path.join(self.d.dir, name), secret)
        return name

    def start(self):
        self.d.start()
        return self

    def stop(self):
        return self.d.stop()

    def cli(self, *args, check=True, input=None):
        return self.d.cli(*args, check=check, input=input)

    def log_since(self, offset):
        return self.d.logtext()[offset:]

    def mark(self):
        """An offset into the log: log_since(mark) is what was written after it."""
        return len(self.d.logtext())


class Mesh:
    """Offices for one domain, each the others' Domain Sharing peer.

    users: {name: [address, ...]} (the order gives the offices); conf: keys for every
    office; per: {name: {key: value}}; peer_secrets: {(asker, asked): secret} for the
    pairs that do not use the shared SECRET (e.g. a wrong one); start=False leaves
    them stopped."""

    def __init__(self, users, conf=None, per=None, peer_secrets=None, start=True):
        self.offices = {}
        self.order = list(users)
        try:
            for name in self.order:
                keys = dict(conf or {})
                keys.update((per or {}).get(name, {}))
                keys.setdefault("local_domains", DOMAIN)
                self.offices[name] = Office(name, users[name], conf=keys)
            for name, o in self.offices.items():
                lines = []
                for other in self.order:
                    if other == name:
                        continue
                    p = self.offices[other]
                    secret = (peer_secrets or {}).get((name, other), SECRET)
                    f = o.secret_file(f"peer-{other}.secret", secret)
                    lines.append(f"{p.smtp} minger_port={p.minger_port} secret_file={f}")
                o.configure({"domain_sharing": "yes", "domain_sharing_host": lines})
            if start:
                for o in self.offices.values():
                    o.start()
        except Exception:
            self.cleanup()
            raise

    def __getitem__(self, name):
        return self.offices[name]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.cleanup()

    def cleanup(self):
        for o in self.offices.values():
            o.d.cleanup()

    def stop(self, name):
        return self.offices[name].stop()

    def start(self, name):
        return self.offices[name].start()

    # -- SMTP, from CLIENT_IP --
    def send(self, name, sender, rcpts, body):
        return send(self.offices[name], sender, rcpts, body)

    def rcpt_codes(self, name, sender, rcpts):
        return rcpt_codes(self.offices[name], sender, rcpts)

    # -- what arrived --
    def mailbox(self, name, addr):
        return relayutil.mailbox(self.offices[name].d, addr)

    def wait_mail(self, name, addr, count=1, timeout=WAIT):
        """Waits (a bound, never asserted) for count messages; returns the mailbox."""
        relayutil.until(lambda: len(self.mailbox(name, addr)) >= count, timeout)
        return self.mailbox(name, addr)

    def queued(self, name):
        return relayutil.queue_lines(self.offices[name].d)

    def quiet(self, timeout=WAIT):
        """Waits until every office's queue is empty in two passes in a row (a copy
        handed from one office to another between two looks shows up in the second);
        returns True if it happened within the bound."""
        def empty():
            return all(not self.queued(n) for n in self.order if self.offices[n].d.proc)
        return bool(relayutil.until(lambda: empty() and empty(), timeout))


def _client(office, timeout=15, source=CLIENT_IP):
    c = smtplib.SMTP(timeout=timeout, source_address=(source, 0))
    c.connect("127.0.0.1", office.smtp_port)
    c.ehlo("client.test")
    return c


def send(office, sender, rcpts, body, source=CLIENT_IP):
    """One message over SMTP from source; returns smtplib's refused dict (raises
    smtplib's exceptions when every recipient or the message is refused)."""
    if isinstance(body, str):
        body = body.encode()
    with _client(office, source=source) as c:
        return c.sendmail(sender, rcpts, body)


def rcpt_codes(office, sender, rcpts, source=CLIENT_IP):
    """[(code, text)] of RCPT TO for each address in one transaction (then RSET), from
    source."""
    with _client(office, source=source) as c:
        c.mail(sender)
        out = [c.rcpt(r) for r in rcpts]
        c.rset()
        return [(code, msg.decode("latin-1")) for code, msg in out]


def message(subject, to="list@example.com", sender="sender@client.test"):
    return (f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject.replace(' ', '.')}@client.test>\r\n\r\n{subject}\r\n")
