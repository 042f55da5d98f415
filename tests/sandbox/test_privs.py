#!/usr/bin/env python3
"""Identity and capabilities after set-up (src/sandbox/privs.c).

usage: test_privs.py KVMLITE PROBE_ELF

Runs as root (skips otherwise).  Each case starts kvmlite -S with virtio-blk
disks on all three engines (aio=threads has its worker threads before the
drop), reads /proc/PID/task/*/status of EVERY thread while paused and again
and again while the probe guest runs, and checks:
  -run-with user=nobody                 (probe blk)
  -run-with user=nobody,chroot=EMPTYDIR (probe net_virtio over -netdev user)
  -runas nobody                         (probe blk on the io_uring disk)
  -run-with user=nobody,chroot=EMPTYDIR (probe reset: the kernel reloaded
                                         from memory, its path is gone)
      Uid/Gid = nobody's, Groups = getgrouplist(nobody), CapEff, CapPrm,
      CapBnd, CapInh, CapAmb all 0, NoNewPrivs 1; with chroot, the root
      directory of every thread is EMPTYDIR
  root without -run-with                (probe blk)
      Uid 0, CapEff = CapPrm = CapBnd = CAP_DAC_OVERRIDE only, CapInh and
      CapAmb 0, NoNewPrivs 1
and that QMP answers (query-status, query-block, query-chardev,
query-cpus-fast) after the drop and the probe passes (blk or net).
Exit: 0 pass, 1 fail, 77 skip.
"""
import os
import pwd
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), "..", "qmp"))
import qmplib  # noqa: E402
from qmplib import QMP, VMM, check  # noqa: E402

CAP_DAC_OVERRIDE = 1


def task_status(pid):
    """{tid: {field: value}} for every thread of pid (threads that exit
    while being read are left out)."""
    out = {}
    try:
        tids = os.listdir("/proc/%d/task" % pid)
    except FileNotFoundError:
        return out
    for tid in tids:
        try:
            with open("/proc/%d/task/%s/status" % (pid, tid)) as f:
                text = f.read()
            root = os.readlink("/proc/%d/task/%s/root" % (pid, tid))
        except (FileNotFoundError, ProcessLookupError):
            continue
        st = {}
        for line in text.splitlines():
            k, _, v = line.partition(":")
            st[k] = " ".join(v.split())  # id lists are tab-separated
        st["root"] = root
        out[tid] = st
    return out


def bad_threads(tasks, want):
    """Lines describing every thread whose status differs from want."""
    bad = []
    for tid, st in sorted(tasks.items()):
        for k, v in want.items():
            got = st.get(k)
            if k.startswith("Cap") and got is not None:
                ok = int(got, 16) == v
            elif k == "Groups":
                ok = sorted(int(x) for x in (got or "").split()) == sorted(v)
            else:
                ok = got == v
            if not ok:
                bad.append("thread %s (%s): %s is %r, want %r" % (tid, st.get("Name"), k, got, v))
    return bad


def sanitized(kv):
    with open(kv, "rb") as f:
        return b"__asan_init" in f.read()


def proc_wrapper(d, kv, root):
    """LeakSanitizer reads /proc at exit: for a sanitizer build, run kvmlite
    in a private mount namespace with /proc mounted inside the chroot
    directory (unshare and exec keep the pid; the release build runs in the
    empty directory)."""
    os.mkdir(os.path.join(root, "proc"))
    w = os.path.join(d, "kvmlite-procns")
    with open(w, "w") as f:
        f.write("#!/bin/sh\nexec unshare --mount --propagation private sh -c "
                "'mount -t proc proc \"$0\"/proc && exec \"$@\"' %s %s \"$@\"\n" % (root, kv))
    os.chmod(w, 0o755)
    return w


def run_case(kv, elf, name, priv_args, want, probe_test, first_aio, chroot_dir=None):
    print("case %s" % name, flush=True)
    d = qmplib.tempfile.mkdtemp(prefix="kl-privs-")
    drives = []
    order = [first_aio] + [a for a in ("threads", "native", "io_uring") if a != first_aio]
    for i, aio in enumerate(order):
        img = os.path.join(d, "disk%d.raw" % i)
        with open(img, "wb") as f:
            f.truncate(4 << 20)
        cache = "writeback" if aio == "threads" else "none"
        drives += ["-drive", "file=%s,if=virtio,format=raw,aio=%s,cache=%s" % (img, aio, cache)]
    extra = drives + ["-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0"]
    if chroot_dir:
        chroot_dir = chroot_dir(d)
        if sanitized(kv):
            kv = proc_wrapper(d, kv, chroot_dir)
    vm = VMM("kvmlite", kv, elf, probe_test, extra=extra + priv_args(chroot_dir))
    try:
        q = QMP(vm.sock)
        q.cmd("qmp_capabilities")
        if chroot_dir:
            want = dict(want, root=chroot_dir)
        tasks = task_status(vm.proc.pid)
        names = sorted(set(st.get("Name") for st in tasks.values()))
        check(len(tasks) >= 4, "%s: %d threads before cont (%s)" % (name, len(tasks), names))
        bad = bad_threads(tasks, want)
        check(not bad, "%s: every thread dropped before cont%s" % (name, "".join(
            "\n       " + b for b in bad[:6])))
        st = q.cmd("query-status")
        check(st.get("status") == "prelaunch", "%s: query-status after the drop: %r" % (name, st))
        blk = q.cmd("query-block")
        check(len(blk) == 3, "%s: query-block lists the 3 disks" % name)
        check(any(c["label"] == "serial0" for c in q.cmd("query-chardev")),
              "%s: query-chardev" % name)
        cpus = q.cmd("query-cpus-fast")
        check(len(cpus) == 1 and str(cpus[0]["thread-id"]) in tasks,
              "%s: query-cpus-fast thread-id is a thread of kvmlite" % name)
        q.cmd("cont")
        # sample while the guest does its I/O: io_uring workers, threads
        # woken late, must all be dropped too
        seen, bad = set(), []
        deadline = time.monotonic() + 60
        while vm.proc.poll() is None and time.monotonic() < deadline:
            tasks = task_status(vm.proc.pid)
            seen |= set(st.get("Name") for st in tasks.values())
            bad += bad_threads(tasks, want)
            time.sleep(0.05)
        check(not bad, "%s: every thread dropped while the guest runs (saw %s)%s" % (
            name, sorted(seen), "".join("\n       " + b for b in sorted(set(bad))[:6])))
        rc = vm.wait_exit(30)
        ok = any(("PROBE PASS %s" % probe_test) in line for line in vm.lines)
        check(ok and rc == 1, "%s: probe %s passed after the drop (exit %r; %s)" % (
            name, probe_test, rc, [line for line in vm.lines if "PROBE" in line]))
    except qmplib.QMPError as e:
        check(False, "%s: %s; stderr: %s" % (name, e, vm.stderr_text()[-400:]))
    finally:
        vm.stop()
        qmplib.shutil.rmtree(d, ignore_errors=True)


def main():
    kv, elf, status = qmplib.preflight(__doc__, sys.argv[1:])
    if status is not None:
        return status
    if os.geteuid() != 0:
        print("SKIP: needs root (kvmlite must start privileged to drop)")
        return qmplib.SKIP
    try:
        nb = pwd.getpwnam("nobody")
    except KeyError:
        print("SKIP: no user 'nobody'")
        return qmplib.SKIP
    nobody = {"Uid": " ".join([str(nb.pw_uid)] * 4), "Gid": " ".join([str(nb.pw_gid)] * 4),
              "Groups": os.getgrouplist("nobody", nb.pw_gid),
              "CapEff": 0, "CapPrm": 0, "CapBnd": 0, "CapInh": 0, "CapAmb": 0,
              "NoNewPrivs": "1"}

    def empty_dir(d):
        p = os.path.join(d, "empty-root")
        os.mkdir(p, 0o755)
        return p

    run_case(kv, elf, "run-with-user", lambda c: ["-run-with", "user=nobody"], nobody,
             "blk", "threads")
    run_case(kv, elf, "run-with-user-chroot",
             lambda c: ["-run-with", "user=nobody,chroot=%s" % c], nobody,
             "net_virtio", "threads", chroot_dir=empty_dir)
    run_case(kv, elf, "runas", lambda c: ["-runas", "nobody"], nobody, "blk", "io_uring")
    # a guest reset reloads the kernel: not from its path, gone after the chroot
    run_case(kv, elf, "chroot-reset", lambda c: ["-run-with", "user=nobody,chroot=%s" % c],
             nobody, "reset", "threads", chroot_dir=empty_dir)
    keep = 1 << CAP_DAC_OVERRIDE
    root = {"Uid": "0 0 0 0", "Gid": "0 0 0 0", "CapEff": keep, "CapPrm": keep,
            "CapBnd": keep, "CapInh": 0, "CapAmb": 0, "NoNewPrivs": "1"}
    run_case(kv, elf, "root-no-run-with", lambda c: [], root, "blk", "native")
    return qmplib.verdict(qmplib.failures)


if __name__ == "__main__":
    sys.exit(main())
