#!/usr/bin/env python3
"""`make install` and `make uninstall` into temporary folders (DESTDIR, PREFIX).

Checks every installed file, its mode and its content; that a second install keeps an
edited configuration; that the systemd unit carries the paths of the install and passes
`systemd-analyze verify`; as root, that systemd-sysusers and systemd-tmpfiles applied to
the DESTDIR create the user and state_dir the unit and the example config expect; and
that the example config as shipped runs the README's Quick start (ports changed only). make runs with the build folder of this test run (SHAREMAIL_BUILD) and only
after checking that it is up to date, so it never builds (make check runs this suite
after building).
"""
import os
import pwd
import re
import shutil
import smtplib
import socket
import stat
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import smtest  # noqa: E402
from smtest import Suite  # noqa: E402

S = Suite("install")
TOP = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD_ARG = os.path.relpath(smtest.BUILD, TOP) if smtest.BUILD.startswith(TOP + os.sep) \
    else smtest.BUILD
# Variables a caller's environment could set and that would change what make does.
SCRUB = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "DESTDIR", "PREFIX", "BINDIR",
         "SBINDIR", "MANDIR", "SYSCONFDIR", "SYSTEMDDIR", "SYSUSERSDIR", "TMPFILESDIR",
         "INSTALL", "B")


def make(*args):
    env = {k: v for k, v in os.environ.items() if k not in SCRUB}
    return subprocess.run(["make", "--no-print-directory", "-C", TOP, f"B={BUILD_ARG}", *args],
                          capture_output=True, text=True, env=env, timeout=120)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def tree(root):
    """{relative path: mode} of every file and folder under root (root itself excluded)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = os.path.join(dirpath, n)
            out[os.path.relpath(p, root)] = stat.S_IMODE(os.lstat(p).st_mode)
    return out


def expected_files(prefix, sysconfdir="etc"):
    """{path under DESTDIR: (mode, source file or None)} of one install."""
    b = smtest.BUILD
    return {
        f"{prefix}/sbin/sharemaild": (0o755, os.path.join(b, "sharemaild")),
        f"{prefix}/bin/sharemail": (0o755, os.path.join(b, "sharemail")),
        f"{prefix}/share/man/man8/sharemaild.8": (0o644, "doc/sharemaild.8"),
        f"{prefix}/share/man/man1/sharemail.1": (0o644, "doc/sharemail.1"),
        f"{prefix}/share/man/man5/sharemail.conf.5": (0o644, "doc/sharemail.conf.5"),
        f"{sysconfdir}/sharemail/sharemail.conf": (0o644, "etc/sharemail.conf"),
        f"{prefix}/lib/systemd/system/sharemaild.service": (0o644, None),
        f"{prefix}/lib/sysusers.d/sharemail.conf": (0o644, "etc/systemd/sharemail.sysusers"),
        f"{prefix}/lib/tmpfiles.d/sharemail.conf": (0o644, "etc/systemd/sharemail.tmpfiles"),
    }


def check_tree(root, files, what):
    """Exactly `files` (and their folders, mode 0755) are under root, each as expected."""
    got = tree(root)
    dirs = set()
    for f in files:
        d = os.path.dirname(f)
        while d:
            dirs.add(d)
            d = os.path.dirname(d)
    S.eq(sorted(p for p in got if p not in dirs), sorted(files), f"{what}: the files installed")
    for d in sorted(dirs):
        S.eq(oct(got.get(d, 0)), oct(0o755), f"{what}: mode of {d}/")
    for f, (mode, src) in files.items():
        if f not in got:
            continue
        S.eq(oct(got[f]), oct(mode), f"{what}: mode of {f}")
        if src is not None:
            S.check(read(os.path.join(root, f)) == read(os.path.join(TOP, src)),
                    f"{what}: {f} is a copy of {src}")


def unit_keys(path):
    """{key: [values]} of a unit file's lines (sections ignored, comments skipped)."""
    keys = {}
    for line in read(path).decode().splitlines():
        if line.startswith(("#", ";", "[")) or "=" not in line:
            continue
        k, v = line.split("=", 1)
        keys.setdefault(k.strip(), []).append(v.strip())
    return keys


def conf_value(path, key):
    for line in read(path).decode().splitlines():
        k, sep, v = line.partition("=")
        if sep and k.strip() == key:
            return v.strip()
    return None


def check_unit(path, sbindir, sysconfdir):
    text = read(path).decode()
    S.eq(re.findall(r"@[A-Z_]+@", text), [], f"every @VAR@ replaced in {path}")
    keys = unit_keys(path)
    want = {
        "Type": "notify", "User": "sharemail",
        "ExecStart": f"{sbindir}/sharemaild -c {sysconfdir}/sharemail/sharemail.conf",
        "ExecReload": "/bin/kill -HUP $MAINPID", "Restart": "on-failure",
        "AmbientCapabilities": "CAP_NET_BIND_SERVICE", "NoNewPrivileges": "yes",
        "ProtectSystem": "strict", "ReadWritePaths": "/var/lib/sharemail", "PrivateTmp": "yes",
        "WantedBy": "multi-user.target",
    }
    for k, v in want.items():
        S.eq(keys.get(k), [v], f"unit {k}=")
    return keys


def test_install_destdir_prefix_usr():
    with tempfile.TemporaryDirectory(prefix="sharemail-install-") as t:
        dest = os.path.join(t, "dest")
        p = make("install", f"DESTDIR={dest}", "PREFIX=/usr")
        S.eq(p.returncode, 0, "make install:\n" + p.stdout + p.stderr)
        files = expected_files("usr")
        check_tree(dest, files, "PREFIX=/usr")
        unit = os.path.join(dest, "usr/lib/systemd/system/sharemaild.service")
        keys = check_unit(unit, "/usr/sbin", "/etc")
        # The unit, sysusers.d, tmpfiles.d and the example config agree on user and state_dir.
        conf = os.path.join(dest, "etc/sharemail/sharemail.conf")
        state = conf_value(conf, "state_dir")
        S.eq(keys.get("ReadWritePaths"), [state], "unit ReadWritePaths= is the example's state_dir")
        tmpf = read(os.path.join(dest, "usr/lib/tmpfiles.d/sharemail.conf")).decode().split("\n")
        tmpf = [l.split() for l in tmpf if l and not l.startswith("#")]
        S.eq(tmpf, [["d", state, "0700", "sharemail", "sharemail", "-"]], "tmpfiles.d line")
        sysu = read(os.path.join(dest, "usr/lib/sysusers.d/sharemail.conf")).decode().split("\n")
        sysu = [l.split()[:2] for l in sysu if l and not l.startswith("#")]
        S.eq(sysu, [["u", "sharemail"]], "sysusers.d makes the unit's User=")
        S.eq(conf_value(conf, "user"), "sharemail", "the example's user is the unit's User=")

        # A second install keeps an edited configuration and replaces the rest.
        with open(conf, "a") as f:
            f.write("# edited by the administrator\n")
        edited = read(conf)
        os.chmod(os.path.join(dest, "usr/share/man/man1/sharemail.1"), 0o600)
        os.chmod(os.path.join(dest, "etc/sharemail"), 0o750)
        p = make("install", f"DESTDIR={dest}", "PREFIX=/usr")
        S.eq(p.returncode, 0, "second make install:\n" + p.stdout + p.stderr)
        S.check(read(conf) == edited, "the edited sharemail.conf is kept")
        S.check("kept the existing" in p.stdout, "install says it kept the config")
        S.eq(oct(stat.S_IMODE(os.stat(os.path.join(dest, "usr/share/man/man1/sharemail.1"))
                              .st_mode)), oct(0o644), "installed files are installed again")
        S.eq(oct(stat.S_IMODE(os.stat(os.path.join(dest, "etc/sharemail")).st_mode)),
             oct(0o750), "an existing folder keeps its mode")
        os.chmod(os.path.join(dest, "etc/sharemail"), 0o755)

        sysusers_tmpfiles(dest, state)

        p = make("uninstall", f"DESTDIR={dest}", "PREFIX=/usr")
        S.eq(p.returncode, 0, "make uninstall:\n" + p.stdout + p.stderr)
        left = [f for f in files if os.path.exists(os.path.join(dest, f))]
        S.eq(left, ["etc/sharemail/sharemail.conf"], "uninstall leaves only the configuration")


def sysusers_tmpfiles(dest, state):
    """As root: the installed sysusers.d and tmpfiles.d files, applied to DESTDIR by
    name, as the README's production steps do (systemd finds them under the PREFIX)."""
    tools = [shutil.which(n) for n in ("systemd-sysusers", "systemd-tmpfiles")]
    if not all(tools):
        S.skip("systemd-sysusers or systemd-tmpfiles is not installed")
        return
    if os.geteuid() != 0:
        S.skip("systemd-tmpfiles can give state_dir to the sharemail user only as root")
        return
    p = subprocess.run([tools[0], f"--root={dest}", "sharemail.conf"], capture_output=True,
                       text=True, timeout=60)
    S.eq(p.returncode, 0, "systemd-sysusers --root: " + p.stderr)
    users = {}
    try:
        with open(os.path.join(dest, "etc/passwd")) as f:
            for line in f:
                fields = line.rstrip("\n").split(":")
                users[fields[0]] = fields
    except FileNotFoundError:
        pass
    u = users.get("sharemail")
    if not S.check(u is not None, "systemd-sysusers created the user sharemail"):
        return
    S.check(u[6].endswith("nologin"), f"no login shell: {u[6]}")
    p = subprocess.run([tools[1], f"--root={dest}", "--create", "sharemail.conf"],
                       capture_output=True, text=True, timeout=60)
    S.eq(p.returncode, 0, "systemd-tmpfiles --root --create: " + p.stderr)
    st = os.stat(os.path.join(dest, state.lstrip("/")))
    S.eq((oct(stat.S_IMODE(st.st_mode)), st.st_uid, st.st_gid), (oct(0o700), int(u[2]), int(u[3])),
         "state_dir: mode 0700, owned by sharemail")


def test_install_default_prefix():
    """PREFIX defaults to /usr/local; the unit names the binary there."""
    with tempfile.TemporaryDirectory(prefix="sharemail-install-") as t:
        dest = os.path.join(t, "dest")
        p = make("install", f"DESTDIR={dest}")
        S.eq(p.returncode, 0, "make install:\n" + p.stdout + p.stderr)
        check_tree(dest, expected_files("usr/local"), "default PREFIX")
        check_unit(os.path.join(dest, "usr/local/lib/systemd/system/sharemaild.service"),
                   "/usr/local/sbin", "/etc")
        sysusers_tmpfiles(dest, conf_value(os.path.join(dest, "etc/sharemail/sharemail.conf"),
                                           "state_dir"))
        p = make("uninstall", f"DESTDIR={dest}")
        S.eq(p.returncode, 0, "make uninstall")
        left = [f for f in expected_files("usr/local") if os.path.exists(os.path.join(dest, f))]
        S.eq(left, ["etc/sharemail/sharemail.conf"], "uninstall with the default PREFIX")


def test_systemd_analyze_verify():
    """The unit as installed, with its binary and man pages where it says they are."""
    analyze = shutil.which("systemd-analyze")
    if not analyze:
        S.skip("systemd-analyze is not installed")
        return
    with tempfile.TemporaryDirectory(prefix="sharemail-install-") as t:
        prefix = os.path.join(t, "usr")
        etc = os.path.join(t, "etc")
        # CREATE_USER=no: an install without DESTDIR would create the user on this machine.
        p = make("install", f"PREFIX={prefix}", f"SYSCONFDIR={etc}", "CREATE_USER=no")
        S.eq(p.returncode, 0, "make install PREFIX=tmp:\n" + p.stdout + p.stderr)
        unit = os.path.join(prefix, "lib/systemd/system/sharemaild.service")
        check_unit(unit, os.path.join(prefix, "sbin"), etc)
        argv = [analyze, "verify", unit]
        if not shutil.which("man"):
            argv.insert(2, "--man=no")
            print("note: no man(1) here, so the Documentation= pages are not checked")
        env = dict(os.environ, MANPATH=os.path.join(prefix, "share/man"))
        p = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
        S.eq((p.returncode, p.stdout + p.stderr), (0, ""), "systemd-analyze verify")
        # The check can fail: an unknown key is reported.
        bad = os.path.join(t, "broken.service")
        with open(bad, "w") as f:
            f.write(read(unit).decode().replace("ProtectSystem=strict", "ProtectSystem=strickt"))
        p = subprocess.run(argv[:-1] + [bad], capture_output=True, text=True, env=env, timeout=120)
        S.check("strickt" in p.stdout + p.stderr, "systemd-analyze verify reports a bad value")


def free_port_both(kind):
    """A port free for `kind` (SOCK_STREAM or SOCK_DGRAM) on every IPv4 and IPv6 address."""
    for _ in range(20):
        with socket.socket(socket.AF_INET, kind) as s4:
            s4.bind(("0.0.0.0", 0))
            port = s4.getsockname()[1]
            if not smtest.have_ipv6():
                return port
            try:
                with socket.socket(socket.AF_INET6, kind) as s6:
                    s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                    s6.bind(("::", port))
                return port
            except OSError:
                continue
    raise RuntimeError("no port free on both IPv4 and IPv6")


def user_exists(name):
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def quick_start_conf(smtp_port, minger_port, v6):
    """etc/sharemail.conf as shipped, with only what a test must change: the ports (25
    and 4069 may be taken), state_dir in the test's folder, without IPv6 the IPv6
    listeners dropped (as the example's comment says), and the `user` line when this
    machine has no such user."""
    out = []
    for line in read(os.path.join(TOP, "etc/sharemail.conf")).decode().splitlines():
        k, sep, v = line.partition("=")
        k, v = k.strip(), v.strip()
        if sep and k == "state_dir":
            line = "state_dir = state"
        elif sep and k == "user" and not user_exists(v):
            continue  # run as the test does (root: sharemaild warns) when there is no such user
        elif sep and k in ("smtp_listen", "minger_listen"):
            if v.startswith("[") and not v6:
                continue
            port = smtp_port if k == "smtp_listen" else minger_port
            line = f"{k} = {v.rsplit(':', 1)[0]}:{port}"
        out.append(line)
    return "\n".join(out) + "\n"


def test_quick_start_example_config():
    """The README's Quick start with the example config as shipped: check-config, an
    account and an alias, sharemaild, a Minger query from this machine answered 5, and
    a message delivered to the Maildir."""
    v6 = smtest.have_ipv6()
    smtp_port = free_port_both(socket.SOCK_STREAM)
    minger_port = free_port_both(socket.SOCK_DGRAM)
    with smtest.Daemon(minger=False) as d:
        with open(d.conf_path, "w") as f:
            f.write(quick_start_conf(smtp_port, minger_port, v6))
        secrets = os.path.join(d.dir, "minger-secrets")
        fd = os.open(secrets, os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, b"quick-start-secret-0123456789\n")
        os.close(fd)
        p = d.cli("check-config", check=False)
        S.eq((p.returncode, p.stderr), (0, ""), "check-config on the example")
        pw = os.path.join(d.dir, "password")
        with open(pw, "w") as f:
            f.write("a password\n")
        d.cli("account", "add", "arvel@example.com", "--password-file", pw)
        d.cli("alias", "add", "sales@example.com", "arvel@example.com")
        d.start()
        servers = [f"127.0.0.1:{minger_port}"] + ([f"[::1]:{minger_port}"] if v6 else [])
        for server in servers:
            p = subprocess.run([smtest.SHAREMAIL, "minger", "query", "arvel@example.com",
                                "sales@example.com", "--server", server, "--secret-file",
                                secrets], capture_output=True, text=True, timeout=60)
            S.eq((p.returncode, p.stdout),
                 (0, "arvel@example.com 5 active\nsales@example.com 5 active\n"),
                 f"minger query --server {server}: {p.stderr}")
        if not v6:
            S.skip("no IPv6 loopback: the [::1] Minger listener is not checked")
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as c:
            c.sendmail("someone@example.org", ["sales@example.com"],
                       b"Subject: quick start\r\n\r\nIt works.\r\n")
        mails = smtest.wait_mail(d, "arvel@example.com")
        S.check(len(mails) == 1 and b"It works." in mails[0],
                "delivered to state_dir/mail/example.com/arvel/Maildir/new/")


if __name__ == "__main__":
    for b in (smtest.SHAREMAILD, smtest.SHAREMAIL):
        if not os.access(b, os.X_OK):
            print(f"no {b}: run make first")
            print("0 passed, 1 failed")
            sys.exit(1)
    if not shutil.which("make"):
        print("no make")
        print("0 passed, 1 failed")
        sys.exit(1)
    # make install depends on all: with the build up to date it only copies. It must not
    # build here (make check may be using the same build folder).
    if make("-q", "all").returncode != 0:
        print(f"FAIL: {BUILD_ARG} is not up to date: run make first (this test never builds)")
        print("0 passed, 1 failed")
        sys.exit(1)
    sys.exit(S.run([test_install_destdir_prefix_usr, test_install_default_prefix,
                    test_systemd_analyze_verify, test_quick_start_example_config]))
