#!/usr/bin/env python3
"""Every fd of a running kvmlite is O_CLOEXEC; RLIMIT_NOFILE soft = hard.

usage: test_fds.py KVMLITE PROBE_ELF

Runs kvmlite -S (root, in a private network namespace with a tap) with
virtio-blk disks on every engine (raw aio=threads, raw aio=native
cache=none, qcow2 aio=io_uring cache=none: its metadata fd too), -netdev
user, tap and socket (listen), QMP on a unix socket (with a client
connected: the accepted fd) and a TCP socket, -serial file:, a -chardev socket server and
-pidfile, started with a soft RLIMIT_NOFILE of 256.  Then reads
/proc/PID/fdinfo/N "flags:" of every fd: all but 0, 1, 2 (the standard
streams, which a child is meant to inherit) must have O_CLOEXEC (02000000),
and the fds must include /dev/kvm, the tun device, the images, sockets,
eventfds and the io_uring (so that the list is the real one).
/proc/PID/limits must show the soft "Max open files" equal to the hard one.
A second run with -daemonize checks the daemon's fds the same way.
Exit: 0 pass, 1 fail, 77 skip (no /dev/kvm, not root, no netns/tun).
"""
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "qmp"))
import qmplib  # noqa: E402
from qmplib import QMP, check  # noqa: E402

O_CLOEXEC = 0o2000000


def sh(*cmd):
    return subprocess.run(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def fd_table(pid):
    out = {}
    for n in os.listdir("/proc/%d/fd" % pid):
        try:
            target = os.readlink("/proc/%d/fd/%s" % (pid, n))
            with open("/proc/%d/fdinfo/%s" % (pid, n)) as f:
                flags = next(int(line.split()[1], 8) for line in f if line.startswith("flags:"))
        except (FileNotFoundError, StopIteration):
            continue
        out[int(n)] = (target, flags)
    return out


def check_fds(what, pid, need):
    fds = fd_table(pid)
    leaky = ["%d -> %s (flags %o)" % (n, t, fl) for n, (t, fl) in sorted(fds.items())
             if n > 2 and not fl & O_CLOEXEC]
    check(not leaky, "%s: all %d fds above 2 have O_CLOEXEC%s" % (
        what, len([n for n in fds if n > 2]), "".join("\n       " + x for x in leaky)))
    targets = [t for t, _ in fds.values()]
    for label, pred in need:
        check(any(pred(t) for t in targets), "%s: the fd list has %s" % (what, label))


def nofile(pid):
    with open("/proc/%d/limits" % pid) as f:
        for line in f:
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return soft, hard
    return None, None


def low_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))


def main():
    kv, elf, status = qmplib.preflight(__doc__, sys.argv[1:])
    if status is not None:
        return status
    if os.geteuid() != 0:
        print("SKIP: needs root (network namespace and tap)")
        return qmplib.SKIP
    if not os.path.exists("/dev/net/tun") or not shutil.which("qemu-img"):
        print("SKIP: needs /dev/net/tun and qemu-img")
        return qmplib.SKIP
    ns = "klfds%d" % os.getpid()
    r = sh("ip", "netns", "add", ns)
    if r.returncode:
        print("SKIP: cannot create network namespace: %s" % r.stdout.decode().strip())
        return qmplib.SKIP
    d = tempfile.mkdtemp(prefix="kl-fds-")
    try:
        for cmd in (["ip", "tuntap", "add", "dev", "kltap0", "mode", "tap", "vnet_hdr"],
                    ["ip", "link", "set", "lo", "up"]):
            r = sh("ip", "netns", "exec", ns, *cmd)
            if r.returncode:
                print("SKIP: %s: %s" % (" ".join(cmd), r.stdout.decode().strip()))
                return qmplib.SKIP
        imgs = [os.path.join(d, n) for n in ("a.raw", "b.raw")]
        for i in imgs:
            with open(i, "wb") as f:
                f.truncate(1 << 20)
        qcow = os.path.join(d, "c.qcow2")
        sh("qemu-img", "create", "-q", "-f", "qcow2", qcow, "4M")
        qsock, csock = os.path.join(d, "qmp.sock"), os.path.join(d, "chr.sock")
        pidfile = os.path.join(d, "kvmlite.pid")
        base = [kv, "-m", "64", "-kernel", elf, "-append", "test=hello", "-S", "-nodefaults",
                "-drive", "file=%s,if=virtio,format=raw,aio=threads" % imgs[0],
                "-drive", "file=%s,if=virtio,format=raw,aio=native,cache=none" % imgs[1],
                "-drive", "file=%s,if=virtio,format=qcow2,aio=io_uring,cache=none" % qcow,
                "-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0",
                "-netdev", "tap,id=n1,ifname=kltap0,script=no,downscript=no",
                "-device", "e1000,netdev=n1",
                "-netdev", "socket,id=n2,listen=127.0.0.1:45671",
                "-device", "virtio-net-pci,netdev=n2",
                "-qmp", "unix:%s,server=on,wait=off" % qsock,
                "-qmp", "tcp:127.0.0.1:45672,server=on,wait=off",
                "-serial", "file:%s" % os.path.join(d, "serial.txt"),
                "-chardev", "socket,id=c0,path=%s,server=on,wait=off" % csock,
                "-pidfile", pidfile]
        need = [("/dev/kvm", lambda t: t == "/dev/kvm"),
                ("kvm-vm", lambda t: "kvm-vm" in t),
                ("the tun device", lambda t: t == "/dev/net/tun"),
                ("the raw images", lambda t: t == imgs[1]),
                ("the qcow2 image (one O_DIRECT fd, data and metadata)", lambda t: t == qcow),
                ("sockets", lambda t: t.startswith("socket:")),
                ("eventfds", lambda t: "eventfd" in t),
                ("io_uring", lambda t: "io_uring" in t),
                ("the serial file", lambda t: t.endswith("serial.txt"))]

        p = subprocess.Popen(["ip", "netns", "exec", ns] + base, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             preexec_fn=low_nofile)
        try:
            q = QMP(qsock)
            q.cmd("qmp_capabilities")
            r = sh("ip", "netns", "exec", ns, "true")  # namespace still there
            check(r.returncode == 0, "network namespace usable")
            fds = fd_table(p.pid)
            n_qcow = sum(1 for tgt, _ in fds.values() if tgt == qcow)
            # one fd: with cache=none the metadata goes through the O_DIRECT
            # data fd too (src/block/file_drv.c), no second, buffered fd
            check(n_qcow == 1, "qcow2 with cache=none has one fd open for data and "
                  "metadata (%d)" % n_qcow)
            check_fds("running", p.pid, need)
            soft, hard = nofile(p.pid)
            check(soft is not None and soft == hard,
                  "RLIMIT_NOFILE soft %s = hard %s (started with soft 256)" % (soft, hard))
            q.cmd("quit")
            q.close()
            rc = p.wait(30)
            check(rc == 0, "quit: exit status %r" % rc)
            check(not os.path.exists(pidfile), "pidfile removed at exit")
        except (qmplib.QMPError, subprocess.TimeoutExpired, OSError) as e:
            check(False, "running: %s; stderr %s" % (e, p.stderr.read1(2000) if p.poll() else ""))
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
            err = p.stderr.read().decode("utf-8", "replace")
            san = qmplib.sanitizers.report(err, p.returncode)
            check(not san, "no sanitizer report: %s" % (san or ""))

        # -daemonize: the daemon's fds (pid from the pidfile)
        for s in (qsock, csock):
            if os.path.exists(s):
                os.unlink(s)
        dargs = [a for a in base if a != "-S"] + ["-daemonize"]
        dargs[dargs.index("-append") + 1] = "test=halt"
        r = subprocess.run(["ip", "netns", "exec", ns] + dargs, stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=60)
        check(r.returncode == 0, "-daemonize: the parent exits 0 once set up (%d, %r)" % (
            r.returncode, r.stderr[-300:]))
        try:
            with open(pidfile) as f:
                dpid = int(f.read())
            q = QMP(qsock)
            q.cmd("qmp_capabilities")
            check_fds("daemon", dpid, need)
            q.cmd("quit")
            q.close()
            deadline = time.monotonic() + 30
            while os.path.exists("/proc/%d" % dpid) and time.monotonic() < deadline:
                time.sleep(0.05)
            check(not os.path.exists(pidfile), "daemon: pidfile removed at exit")
        except (OSError, ValueError, qmplib.QMPError) as e:
            check(False, "daemon: %s" % e)
    finally:
        sh("ip", "netns", "del", ns)
        shutil.rmtree(d, ignore_errors=True)
    return qmplib.verdict(qmplib.failures)


if __name__ == "__main__":
    sys.exit(main())
