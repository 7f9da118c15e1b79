#!/usr/bin/env python3
"""make run: a demo sharemaild in the foreground on loopback.

Creates ./demo-state/ (kept between runs; delete it to start over) with a config,
a Minger secret and a few demo accounts and aliases, then runs build/sharemaild
in the foreground until Ctrl-C. Ports are unprivileged: Minger on 127.0.0.1:14069
and [::1]:14069, SMTP on 127.0.0.1:2525, submission on 127.0.0.1:2587, SMTPS
(implicit TLS) on 127.0.0.1:2465, POP3 on 127.0.0.1:2110 (STLS) and POP3S on
127.0.0.1:2995. A self-signed certificate (demo-cert.pem, demo-key.pem, made
with the openssl command) gives STARTTLS, SMTPS, STLS and POP3S. Every demo
account's password is "demo-password".
"""
import argparse
import os
import subprocess
import sys

TOP = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SECRET = "demo-secret-0123456789"
CONF = """# sharemail demo configuration (written by scripts/demo.py)
hostname = demo.sharemail.test
state_dir = .
local_domains = example.com example.org
log_level = info
minger_listen = 127.0.0.1:14069
{v6}minger_secret_file = minger-secrets
smtp_listen = 127.0.0.1:2525
submission_listen = 127.0.0.1:2587
{tls}smtp_trusted_networks = 127.0.0.0/8
queue_min_free = 10m
minger_anonymous = no
# The demo relays nowhere: mail for other domains (the alias outside@example.com, or an
# outside recipient from loopback) waits in the queue, retried; see `sharemail queue list`.
relay_smarthost = [127.0.0.1]:9
"""
POP3_KEYS = """pop3_listen = 127.0.0.1:2110
pop3s_listen = 127.0.0.1:2995
"""
TLS_KEYS = """smtps_listen = 127.0.0.1:2465
tls_cert_file = demo-cert.pem
tls_key_file = demo-key.pem
"""
ACCOUNTS = [("arvel@example.com", []), ("alice@example.com", []),
            ("bob@example.org", []), ("frozen@example.com", ["--disabled"])]
ALIASES = [("sales@example.com", ["alice@example.com", "bob@example.org"]),
           ("outside@example.com", ["someone@elsewhere.net"])]


def have_ipv6():
    import socket
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def demo_certificate(state):
    """A self-signed certificate for demo.sharemail.test in state (kept between runs)."""
    cert = os.path.join(state, "demo-cert.pem")
    key = os.path.join(state, "demo-key.pem")
    if os.path.exists(cert) and os.path.exists(key):
        return
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-days", "3650",
                    "-subj", "/CN=demo.sharemail.test", "-keyout", key, "-out", cert],
                   check=True, capture_output=True)
    os.chmod(key, 0o600)


def print_hints(build, state, conf):
    """Commands to paste into another terminal: relative to the working folder (where
    make runs, the top of the tree), each naming the demo's config and secret file."""
    def rel(path):
        return os.path.relpath(path) if path.startswith(os.getcwd() + os.sep) else path
    tool = rel(os.path.join(build, "sharemail"))
    secrets = rel(os.path.join(state, "minger-secrets"))
    hints = [
        f"{tool} -c {rel(conf)} minger query arvel@example.com --server 127.0.0.1:14069 "
        f"--secret-file {secrets}",
        "swaks --server 127.0.0.1 --port 2525 --to arvel@example.com",
        "swaks --server 127.0.0.1 --port 2525 --tls --to arvel@example.com",
        "swaks --server 127.0.0.1 --port 2465 --tlsc --to arvel@example.com",
        f"ls {rel(os.path.join(state, 'mail/example.com/arvel/Maildir/new'))}",
        "openssl s_client -quiet -starttls pop3 -connect 127.0.0.1:2110   "
        "(then: USER arvel@example.com, PASS demo-password, LIST, RETR 1, QUIT)",
        f"{tool} -c {rel(conf)} account list",
    ]
    print(f"demo: config {rel(conf)}, Minger secret file {secrets} ({SECRET}); "
          "Ctrl-C stops the demo", file=sys.stderr)
    print(f"demo: try these in another terminal, in {os.getcwd()}:", file=sys.stderr)
    for h in hints:
        print("  " + h, file=sys.stderr)
    sys.stderr.flush()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    a = ap.parse_args()
    build = os.path.join(TOP, a.build)
    state = os.path.join(TOP, "demo-state")
    conf = os.path.join(state, "sharemail.conf")
    cli = [os.path.join(build, "sharemail"), "-c", conf]
    fresh = not os.path.exists(conf)
    os.makedirs(state, exist_ok=True)
    demo_certificate(state)
    if fresh:
        v6 = "minger_listen = [::1]:14069\n" if have_ipv6() else ""
        with open(conf, "w") as f:
            f.write(CONF.format(v6=v6, tls=TLS_KEYS) + POP3_KEYS)
        fd = os.open(os.path.join(state, "minger-secrets"), os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, (SECRET + "\n").encode())
        os.close(fd)
        pw = os.path.join(state, "demo-password")
        with open(pw, "w") as f:
            f.write("demo-password\n")
        for addr, flags in ACCOUNTS:
            subprocess.run(cli + ["account", "add", addr, "--password-file", pw] + flags,
                           check=True)
        for alias, targets in ALIASES:
            subprocess.run(cli + ["alias", "add", alias] + targets, check=True)
    else:
        with open(conf) as f:
            text = f.read()
        if "tls_cert_file" not in text:  # a demo-state from before TLS
            with open(conf, "a") as f:
                f.write(TLS_KEYS)
        if "pop3_listen" not in text:  # a demo-state from before POP3
            with open(conf, "a") as f:
                f.write(POP3_KEYS)
    print_hints(build, state, conf)
    try:
        return subprocess.run([os.path.join(build, "sharemaild"), "-c", conf]).returncode
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
