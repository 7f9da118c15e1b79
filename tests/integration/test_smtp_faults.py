#!/usr/bin/env python3
"""Receive-side faults (hostile-inputs.md "Faults"): kill -9 during DATA and at each point
of the queue commit before the 250, the system-call order of one accepted message
(strace: openat O_EXCL in queue/msg, write, fsync(file), then on ext4 the 250, on other
file systems (tmpfs here) fsync(dir) first; one journal commit per message,
doc/internals/queue.md), a full disk (a small tmpfs as the
queue), and damaged queue files at start-up.

Needs root (mount, strace -p), as in CI. When a tool or a permission is missing the
test FAILS with the reason: it never skips silently.
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from smtest import Daemon, Suite, free_tcp_port  # noqa: E402
from smtpraw import (Conn, digit, find_marker, message, queue_files, read, start,  # noqa: E402
                     wait_for)

S = Suite("smtp_faults")
CRASH = "SHAREMAIL_TEST_CRASH_AT"


def mark():
    return "F" + os.urandom(8).hex()


def new_daemon(extra=None, run=True):
    port = free_tcp_port()
    conf = {"smtp_listen": f"127.0.0.1:{port}", "smtp_trusted_networks": "127.0.0.2/32",
            "queue_min_free": "0", "smtp_max_message_size": "10m"}
    conf.update(extra or {})
    d = Daemon(conf=conf, minger=False)
    d.port = port
    try:
        for a in ("bob@example.com", "alice@example.com"):
            d.cli("account", "add", a, "--no-password")
        if run:
            start(d)
    except Exception:
        d.cleanup()
        raise
    return d


def transaction(c, rcpt="bob@example.com"):
    """EHLO, MAIL, RCPT, DATA; True when the server said 354."""
    ok = c.cmd("EHLO client.test")
    ok = ok and c.cmd("MAIL FROM:<sender@client.test>")
    ok = ok and c.cmd(f"RCPT TO:<{rcpt}>")
    S.check(ok and ok.code == 250, f"transaction up to RCPT: {ok}")
    r = c.cmd("DATA")
    S.check(r is not None and r.code == 354, f"DATA 354: {r}")
    return r is not None and r.code == 354


def send_one(d, m, rcpt="bob@example.com", body="hello\r\n"):
    """A whole message; returns the final reply (None if the connection died)."""
    with Conn(d.port) as c:
        if not transaction(c, rcpt):
            return None
        c.send(message(m, body=body).encode() + b".\r\n")
        return c.reply_or_none(30)


def delivered(d, m, timeout=15.0):
    return wait_for(lambda: find_marker(d.state, m, "maildir"), timeout)


def control(d, what):
    m = mark()
    r = send_one(d, m)
    S.check(r is not None and r.code == 250, f"{what}: good message accepted: {r}")
    S.check(delivered(d, m), f"{what}: good message delivered")


def killed(d):
    """Waits for the daemon to die (the crash hook) and reports whether it did by SIGKILL."""
    try:
        rc = d.proc.wait(10)
    except subprocess.TimeoutExpired:
        return None
    return rc


def test_kill_during_data():
    d = new_daemon()
    try:
        m = mark()
        with Conn(d.port) as c:
            transaction(c)
            # More than the queue's 32 KiB buffer: part of it is in queue/msg already.
            c.send(message(m, body="first part of the body\r\n" * 2000).encode())
            time.sleep(0.5)  # the daemon has read (part of) it
            os.kill(d.proc.pid, signal.SIGKILL)
            d.proc.wait(10)
            r = c.reply_or_none(5)
        S.check(r is None, f"no reply after kill -9 during DATA: {r}")
        partial = find_marker(d.state, m, "queue")
        S.eq(len(partial), 1, f"the file being received is in queue/msg, cut short: {partial}")
        start(d)
        time.sleep(1)
        S.eq(find_marker(d.state, m), [], "nothing queued or delivered after restart")
        names = [os.path.basename(p) for p in partial]
        quarantine = [os.path.basename(p) for p in queue_files(d.state, "quarantine")]
        S.check(names and names[0] in quarantine, f"set aside: {quarantine}")
        S.check(names and re.search(rf"msg/{names[0]} is incomplete .*never acknowledged",
                                    d.logtext()), "and logged as never acknowledged")
        control(d, "after restart")
    finally:
        d.cleanup()


def test_kill_between_commit_and_250():
    """kill -9 at each point of the commit, all before the 250. A file cut short
    ("mid-write": all but the last octet of its END record) is set aside at the restart,
    logged, and never delivered. A whole file may be delivered although its 250 was never
    sent: a duplicate at worst (the client retries), never a loss. A SIGKILL keeps the
    page cache, so from "after-write" on the file is whole: delivered, exactly once."""
    d = new_daemon(run=False)
    try:
        for point in ("mid-write", "after-write", "after-fsync", "after-rename",
                      "after-dirsync"):
            start(d, extra_env={CRASH: point})
            m = mark()
            r = send_one(d, m, body=f"body of {m}\r\n")
            S.check(r is None or r.code != 250, f"{point}: the client never saw 250: {r}")
            rc = killed(d)
            S.eq(rc, -signal.SIGKILL, f"{point}: the hook killed the daemon")
            left = find_marker(d.state, m, "queue")
            S.eq(len(left), 1, f"{point}: the file is in queue/msg under its final name")
            start(d)
            if point == "mid-write":
                time.sleep(1)
                files = find_marker(d.state, m, "maildir")
                S.eq(files, [], f"{point}: the file cut short is never delivered")
                quarantine = [os.path.basename(p) for p in queue_files(d.state, "quarantine")]
                name = os.path.basename(left[0]) if left else None
                S.check(name in quarantine, f"{point}: set aside: {quarantine}")
                S.check(name and re.search(rf"msg/{name} is incomplete .*never acknowledged",
                                           d.logtext()), f"{point}: logged")
            else:
                files = delivered(d, m)
                S.check(files, f"{point}: the whole message is delivered after restart")
                time.sleep(0.5)
                S.eq(len(find_marker(d.state, m, "maildir")), 1, f"{point}: exactly once")
            for f in files:  # whatever is delivered is whole
                S.check(read(f).replace(b"\r\n", b"\n").endswith(f"body of {m}\n".encode()),
                        f"{point}: delivered message is whole")
            S.eq(queue_files(d.state, "tmp"), [], f"{point}: no temporary file left")
            S.eq(find_marker(d.state, m, "queue"), [], f"{point}: nothing left in queue/msg")
            control(d, point)
            d.stop()
    finally:
        d.cleanup()


SYSCALLS = "openat,write,pwrite64,writev,pwritev,pwritev2,fsync,fdatasync,rename,renameat," \
           "renameat2,linkat,sendto,sendmsg"
WRITES = ("write", "pwrite64", "writev", "pwritev", "pwritev2")
CALL = re.compile(r"^(?:\[pid\s+)?(\d+)\]?\s+(?:<\.\.\. (\w+) resumed>|(\w+)\()(.*)$")


def parse_strace(path):
    """[(index, name, is_completion, text)] in file order: an unfinished call is a start,
    its '<... resumed>' the completion; a whole line is both."""
    events = []
    with open(path, errors="replace") as f:
        for i, line in enumerate(f):
            m = CALL.match(line.strip())
            if not m:
                continue
            name = m.group(2) or m.group(3)
            text = line
            if m.group(2):
                events.append((i, name, "end", text))
            elif "<unfinished ...>" in line:
                events.append((i, name, "start", text))
            else:
                events.append((i, name, "start", text))
                events.append((i, name, "end", text))
    return events


def fd_path(text):
    m = re.search(r"\(\d+<([^>]*)>", text)
    return m.group(1) if m else None


def ret_path(text):
    """The path strace -y shows for a returned descriptor: '= 12</a/b>'."""
    m = re.search(r"=\s+\d+<([^>]*)>\s*$", text.strip())
    return m.group(1) if m else None


def fs_type(path):
    """The type of the mount holding path (/proc/self/mountinfo, longest mount point)."""
    path = os.path.realpath(path)
    best, kind = "", None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            point = left.split()[4].replace("\\040", " ")
            inside = path == point or path.startswith(point.rstrip("/") + "/")
            if inside and len(point) >= len(best):
                best, kind = point, right.split()[0]
    return kind


def syscall_order(d, names_with_file):
    """One message under strace -f: openat(O_EXCL) in queue/msg, the writes,
    fsync(file), then on ext4 (the file's fsync makes its name durable: queue.h) no
    fsync of queue/msg before the 250, elsewhere fsync(queue/msg) before it."""
    tr = os.path.join(d.dir, "strace.out")
    what = "ext4" if names_with_file else "not ext4"
    st = subprocess.Popen(["strace", "-f", "-qq", "-y", "-yy", "-s", "256", "-o", tr,
                           "-e", "trace=" + SYSCALLS, "-p", str(d.proc.pid)],
                          stderr=subprocess.PIPE)
    try:
        def attached():
            try:
                for t in os.listdir(f"/proc/{d.proc.pid}/task"):
                    with open(f"/proc/{d.proc.pid}/task/{t}/status") as f:
                        if "TracerPid:\t0\n" in f.read():
                            return False
                return True
            except OSError:
                return False
        if not wait_for(attached, 10):
            st.kill()
            err = st.communicate()[1]
            S.check(False, f"strace could not attach (needs root/ptrace): {err!r}")
            return
        m = mark()
        r = send_one(d, m)
        S.check(r is not None and r.code == 250, f"{what}: message accepted under strace: {r}")
        S.check(delivered(d, m), f"{what}: delivered under strace")
        time.sleep(0.3)
        st.send_signal(signal.SIGINT)
        st.wait(10)
        st = None
    finally:
        if st is not None:
            st.kill()
            st.wait()
    ev = parse_strace(tr)
    # the data write: a write to a queue file whose data holds the marker
    data = [e for e in ev if e[2] == "start" and e[1] in WRITES and m in e[3] and
            "/queue/" in (fd_path(e[3]) or "")]
    S.check(data, f"{what}: a data write of the message to a queue file in {tr}")
    if not data:
        return
    qfile = fd_path(data[0][3])
    S.check(qfile and os.path.dirname(qfile).endswith("/queue/msg"),
            f"{what}: written in place in queue/msg: {qfile}")
    base = os.path.basename(qfile or "")
    # created with O_EXCL under its final name (never a rename into msg/)
    opens = [e for e in ev if e[2] == "end" and e[1] == "openat" and ret_path(e[3]) == qfile]
    S.check(opens and "O_CREAT" in opens[0][3] and "O_EXCL" in opens[0][3],
            f"{what}: openat(msg/{base}, O_CREAT|O_EXCL): {opens[:1]}")
    S.eq([e[3] for e in ev if e[1].startswith(("rename", "linkat")) and base in e[3]], [],
         f"{what}: no rename or link of the message file")
    last_write = max(e[0] for e in ev if e[2] == "end" and fd_path(e[3]) == qfile and
                     e[1] in WRITES)
    fsyncs = [e[0] for e in ev if e[2] == "end" and e[1] in ("fsync", "fdatasync") and
              fd_path(e[3]) == qfile and e[0] > last_write]
    S.check(fsyncs, f"{what}: fsync of {qfile} after its writes")
    qdir = os.path.dirname(qfile or "")
    r250 = [e[0] for e in ev if e[2] == "start" and e[1] in ("write", "writev", "sendto",
            "sendmsg") and "TCP" in (fd_path(e[3]) or "") and '"250 ' in e[3] and
            e[0] > data[0][0]]
    S.check(r250, f"{what}: the 250 written to the client socket")
    if not (opens and fsyncs and r250):
        return
    fsync_after = min(fsyncs)
    dsync = [e[0] for e in ev if e[2] == "end" and e[1] in ("fsync", "fdatasync") and
             (fd_path(e[3]) or "").rstrip("/") == qdir and fsync_after < e[0] < r250[0]]
    order = [opens[0][0], data[0][0], last_write, fsync_after]
    if names_with_file:
        S.eq(dsync, [], f"{what}: no fsync of {qdir} between the file's fsync and the 250")
    else:
        S.check(dsync, f"{what}: fsync of the directory {qdir} after the file's, before 250")
        order.append(min(dsync) if dsync else None)
    order.append(r250[0])
    S.check(None not in order and order == sorted(order),
            f"{what}: openat < write..write < fsync(file) < "
            f"{'' if names_with_file else 'fsync(dir) < '}250: lines {order} of {tr}")
    with open(tr, errors="replace") as f:
        lines = f.readlines()
    for i in order:
        if i is not None:
            print(f"strace {i}: {lines[i].rstrip()[:200]}", flush=True)


def test_syscall_order():
    if not shutil.which("strace"):
        S.check(False, "strace is not installed (apt-get install strace)")
        return
    d = new_daemon()
    try:
        kind = fs_type(os.path.join(d.state, "queue", "msg"))
        print(f"queue on {kind}", flush=True)
        syscall_order(d, kind in ("ext4", "ext3"))
    finally:
        d.cleanup()


def test_syscall_order_tmpfs():
    """The other branch: on a file system not known to persist names with the file
    (tmpfs here), the queue fsyncs queue/msg before the 250."""
    if not shutil.which("strace"):
        S.check(False, "strace is not installed (apt-get install strace)")
        return
    d = new_daemon(run=False)
    qdir = os.path.join(d.state, "queue")
    ok, err = mount_tmpfs(qdir, "64m")
    if not S.check(ok, f"mount tmpfs on the queue (needs root): {err}"):
        d.cleanup()
        return
    try:
        start(d)
        S.eq(fs_type(os.path.join(qdir, "msg")), "tmpfs", "the queue is on tmpfs")
        syscall_order(d, False)
    finally:
        d.stop()
        subprocess.run(["umount", "-l", qdir], capture_output=True)
        d.cleanup()


def mount_tmpfs(path, size):
    os.makedirs(path, exist_ok=True)
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", path],
                       capture_output=True, text=True)
    return p.returncode == 0, p.stderr


def test_disk_full():
    d = new_daemon(run=False)
    qdir = os.path.join(d.state, "queue")
    ok, err = mount_tmpfs(qdir, "2m")
    if not S.check(ok, f"mount tmpfs on the queue (needs root): {err}"):
        d.cleanup()
        return
    try:
        start(d)
        m = mark()
        body = ("z" * 76 + "\r\n") * 40000  # about 3 MiB > 2 MiB of tmpfs
        with Conn(d.port) as c:
            transaction(c)
            c.send(message(m, body=body).encode() + b".\r\n")
            r = c.reply_or_none(30)
            S.check(r is not None and digit(r) == 4 and r.code in (451, 452),
                    f"disk full: 451/452 after the dot: {r}")
            S.check(r is not None and r.enhanced and r.enhanced[0] == "4", f"4.x.x: {r}")
            S.check(c.is_open(), "connection kept after a full disk")
        S.check(wait_for(lambda: queue_files(d.state, "tmp") == [], 5),
                f"partial file removed: {queue_files(d.state, 'tmp')}")
        S.eq(find_marker(d.state, m), [], "the refused message is nowhere")
        control(d, "after the full disk")
        filler = os.path.join(qdir, "filler")
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=64k", "count=64"],
                       capture_output=True)  # fills the tmpfs (dd stops at ENOSPC)
        m2 = mark()
        r = send_one(d, m2)
        S.check(r is not None and digit(r) == 4, f"small message on a full disk: 4xx: {r}")
        S.check(d.proc.poll() is None, "daemon alive on a full disk")
        os.unlink(filler)
        control(d, "after space returns")
    finally:
        d.stop()
        subprocess.run(["umount", "-l", qdir], capture_output=True)
        d.cleanup()


def test_damaged_queue_files():
    d = new_daemon(run=False)
    hold = os.path.join(d.dir, "hold")
    os.makedirs(hold)
    try:
        marks = []
        for i in range(4):  # four committed, undelivered messages (crash right after commit)
            start(d, extra_env={CRASH: "after-dirsync"})
            m = mark()
            marks.append(m)
            send_one(d, m, rcpt="alice@example.com", body=f"body of {m}\r\n")
            S.eq(killed(d), -signal.SIGKILL, f"message {i}: crashed after commit")
            files = queue_files(d.state)
            S.check(len(files) >= 1, f"message {i} is in queue/msg: {files}")
            for f in files:
                os.rename(f, os.path.join(hold, f"{i}-" + os.path.basename(f)))
        msgdir = os.path.join(d.state, "queue", "msg")
        held = sorted(os.listdir(hold))
        originals = {}
        for h in held:
            name = h.split("-", 1)[1]
            originals[h[0]] = os.path.join(msgdir, name)
            shutil.move(os.path.join(hold, h), os.path.join(msgdir, name))
        # 0: truncated; 1: one flipped byte inside the envelope's recipient; 2, 3: good
        f0, f1 = originals["0"], originals["1"]
        size = os.path.getsize(f0)
        os.truncate(f0, size // 2)
        data = bytearray(read(f1))
        at = data.find(b"alice@example.com")
        S.check(at >= 0, "recipient found in the queue file")
        data[at] ^= 0x02  # "alice" -> "cliec": a forged recipient unless the checksum catches it
        with open(f1, "wb") as f:
            f.write(data)
        with open(os.path.join(msgdir, "junk name.txt"), "wb") as f:
            f.write(b"not a queue file\n")
        with open(os.path.join(msgdir, "0000"), "wb") as f:
            pass
        start(d)
        S.check(d.proc.poll() is None, "the daemon starts over damaged queue files")
        for m in marks[2:]:
            S.check(delivered(d, m), f"good message {m} delivered")
        time.sleep(1)
        for m in marks[:2]:
            S.eq(find_marker(d.state, m, "maildir"), [], f"damaged message {m} not delivered")
        quarantine = [os.path.basename(p) for p in queue_files(d.state, "quarantine")]
        for f in (f0, f1):
            S.check(os.path.basename(f) in quarantine, f"{f} quarantined: {quarantine}")
            S.check(not os.path.exists(f), f"{f} gone from queue/msg")
        for junk in ("junk name.txt", "0000"):
            S.check(not os.path.exists(os.path.join(msgdir, junk)),
                    f"junk {junk!r} gone from queue/msg")
        S.check(len(quarantine) >= 3, f"junk set aside too: {quarantine}")
        S.check("quarantin" in d.logtext().lower(), "quarantine logged")
        S.check(not os.path.exists(os.path.join(d.state, "mail", "example.com", "cliec")),
                "no delivery to the forged recipient")
        control(d, "after quarantine")
    finally:
        d.cleanup()


if __name__ == "__main__":
    if os.geteuid() != 0:
        print("FAIL: the fault tests need root (mount, strace)", flush=True)
    tests = [test_kill_during_data, test_kill_between_commit_and_250, test_syscall_order,
             test_syscall_order_tmpfs,
             test_disk_full, test_damaged_queue_files]
    rc = S.run([t for t in tests if not sys.argv[1:] or t.__name__ in sys.argv[1:]])
    if os.geteuid() != 0:
        rc = 1
    sys.exit(rc)
