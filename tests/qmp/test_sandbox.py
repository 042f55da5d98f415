#!/usr/bin/env python3
"""seccomp sandbox end-to-end (docs/sandbox.md), with the probe guest.

usage: test_sandbox.py [--hooks] VMM_BINARY PROBE_ELF

(a) per engine (threads, native, io_uring): kvmlite with a virtio-blk drive,
    a user (slirp) NIC and QMP, running the probe's `halt` test, under the
    default (no -sandbox), `-sandbox on` and libvirt's
    `-sandbox on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny`
    (one each, rotating): once the guest has halted, every
    /proc/PID/task/TID/status says `Seccomp: 2` (main, vCPU, gmain, the I/O
    workers with aio=threads, KVM's own worker); QMP still works under it
    (query-status, query-block, a blockdev-add that opens a new image at run
    time, quit) and kvmlite exits 0 with no seccomp line on stderr.
(b) `-sandbox off`: every thread says `Seccomp: 0`.
(c) --hooks (a build with -Dsandbox_test_hooks=true): KVMLITE_SANDBOX_TEST
    makes one thread of each kind attempt a forbidden call right after it
    installed its list; the process must die of SIGSYS with the line
    "kvmlite: seccomp: thread KIND (tid N) called forbidden syscall NAME (nr N),
    args A0 A1 A2" (the first three arguments in hex).
Exit status 0 pass, 1 fail, 77 skip.
"""
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qmplib  # noqa: E402
from qmplib import QMP, VMM, check, failures  # noqa: E402

LIBVIRT = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"


def seccomp_modes(pid):
    """{tid: (comm, Seccomp value)} for every thread of pid."""
    out = {}
    for tid in os.listdir("/proc/%d/task" % pid):
        base = "/proc/%d/task/%s/" % (pid, tid)
        try:
            with open(base + "comm") as f:
                comm = f.read().strip()
            with open(base + "status") as f:
                mode = [l.split()[1] for l in f if l.startswith("Seccomp:")][0]
        except (FileNotFoundError, ProcessLookupError):
            continue  # the thread ended meanwhile
        out[int(tid)] = (comm, mode)
    return out


def drive_args(img, aio):
    cache = "writeback" if aio == "threads" else "none"
    return ["-drive", "file=%s,if=virtio,format=raw,aio=%s,cache=%s" % (img, aio, cache),
            "-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0"]


def running(binary, probe, d, aio, sandbox, want):
    img = os.path.join(d, "disk-%s.raw" % aio)
    with open(img, "wb") as f:
        f.truncate(4 << 20)
    extra = drive_args(img, aio) + (["-sandbox", sandbox] if sandbox else [])
    label = "aio=%s %s" % (aio, "-sandbox " + sandbox if sandbox else "(default)")
    vm = VMM("kvmlite", binary, probe, "halt", extra=extra, paused=False)
    try:
        vm.wait_serial("probe: halted", 30)
        modes = seccomp_modes(vm.proc.pid)
        comms = sorted(c for c, _ in modes.values())
        bad = {t: cm for t, cm in modes.items() if cm[1] != want}
        check(not bad, "%s: all %d threads (%s) have Seccomp: %s%s" % (
            label, len(modes), ",".join(sorted(set(comms))), want,
            "" if not bad else "; not: %r" % bad))
        check("vcpu0" in comms and "gmain" in comms and comms.count("kvmlite") >= 1,
              "%s: main, vcpu0 and gmain threads seen" % label)
        if aio == "threads":
            check(comms.count("kvmlite") > 1, "%s: I/O worker threads seen" % label)
        q = QMP(vm.sock)
        q.cmd("qmp_capabilities")
        check(q.cmd("query-status")["status"] == "running", "%s: query-status running" % label)
        check(len(q.cmd("query-block")) >= 1, "%s: query-block lists the drive" % label)
        new = os.path.join(d, "added-%s.raw" % aio)
        with open(new, "wb") as f:
            f.truncate(1 << 20)
        r = q.cmd_raw("blockdev-add", {"driver": "file", "node-name": "added", "filename": new,
                                       "aio": aio, "cache": {"direct": aio != "threads"}})
        check("return" in r, "%s: blockdev-add opens an image at run time: %r" % (label, r))
        q.cmd("quit")
        st = vm.wait_exit(20)
        check(st == 0, "%s: quit exits 0 (got %r)" % (label, st))
        vm.ethread.join(5)
        err = vm.err.decode("utf-8", "replace")
        check("seccomp" not in err, "%s: no seccomp line on stderr%s" % (
            label, "" if "seccomp" not in err else ": %r" % err[-300:]))
        q.close()
    except qmplib.QMPError as e:
        check(False, "%s: %s; stderr: %r" % (label, e, vm.err[-400:]))
    finally:
        vm.stop()


# (kind, KVMLITE_SANDBOX_TEST call, syscall name in the log line)
TRIGGERS = [
    ("main", "execve", "execve"),
    ("main", "mmap-exec", "mmap"),
    ("vcpu", "ioctl-create-vm", "ioctl"),
    ("io-worker", "socket-packet", "socket"),
    ("other", "socket-packet", "socket"),
]


def trigger(binary, probe, d, kind, call, name):
    img = os.path.join(d, "trig.raw")
    with open(img, "wb") as f:
        f.truncate(4 << 20)
    env = dict(os.environ, KVMLITE_SANDBOX_TEST="%s:%s" % (kind, call))
    cmd = [binary, "-m", "64", "-kernel", probe, "-append", "test=halt", "-nographic",
           "-sandbox", "on"] + drive_args(img, "threads")
    try:
        p = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=30)
    except subprocess.TimeoutExpired:
        check(False, "%s thread, %s: still running after 30 s (not refused)" % (kind, call))
        return
    err = p.stderr.decode("utf-8", "replace")
    line = re.search(r"^kvmlite: seccomp: thread %s \(tid (\d+)\) called forbidden syscall "
                     r"%s \(nr (\d+)\), args 0x[0-9a-f]+ 0x[0-9a-f]+ 0x[0-9a-f]+$" % (re.escape(kind), re.escape(name)), err, re.M)
    check(p.returncode == -signal.SIGSYS and line is not None,
          "%s thread, %s: dies of SIGSYS (status %d) with the log line%s" % (
              kind, call, p.returncode,
              (": " + line.group(0)) if line else "; stderr: %r" % err[-300:]))


def main():
    argv = sys.argv[1:]
    hooks = argv[:1] == ["--hooks"]
    if hooks:
        argv = argv[1:]
    binary, probe, status = qmplib.preflight(__doc__, argv)
    if status is not None:
        return status
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="kl-sandbox-") as d:
        for aio, sandbox in (("threads", None), ("native", "on"), ("io_uring", LIBVIRT),
                             ("threads", "on"), ("native", LIBVIRT), ("io_uring", None)):
            running(binary, probe, d, aio, sandbox, "2")
        running(binary, probe, d, "threads", "off", "0")
        if hooks:
            for kind, call, name in TRIGGERS:
                trigger(binary, probe, d, kind, call, name)
    print("(%.1f s)" % (time.monotonic() - t0))
    return qmplib.verdict(failures)


if __name__ == "__main__":
    sys.exit(main())
