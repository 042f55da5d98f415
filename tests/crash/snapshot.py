#!/usr/bin/env python3
"""Crash consistency of qcow2 internal snapshots: kvmlite dies at every step
of the metadata write sequence of QMP blockdev-snapshot-internal-sync /
blockdev-snapshot-delete-internal-sync while the guest writes.

usage: snapshot.py [--max-steps N] [-v] KVMLITE PROBE_ELF

The image (4 KiB clusters, two L2 tables) holds generation 1 of every block
of the probe test `blk-crash` (see crash.py) and a snapshot "base" made by
qemu-img, so the runs create snapshots over tables used by the active image
only and over shared ones, and delete the last snapshot that shares a table
(OFLAG_COPIED comes back: the tables are replaced by corrected copies).  Run N copies that image, starts kvmlite with
KVMLITE_BLOCK_CRASH_AT=N (the test hook of src/block/node.c: SIGKILL before
the N-th synchronous write or flush of a snapshot operation), lets the
guest write generation 2 (flush before each ACK) and runs over QMP
  delete base  (the last snapshot sharing the tables: OFLAG_COPIED back)
  create a     (over tables the active image alone uses: copies)
  create b     (over tables shared with a: refcount +1)
  delete a     (tables stay shared with b)
with the guest's writes in flight between them.  The run stops at step N
(the hook) or after the last operation (then the sequence has N-1 steps and
the test ends: every step was a crash point once).  After each run:
  * `qemu-img check` reports no corruption (leaks are allowed, as in QEMU);
  * every acknowledged write reads back, no block is torn (crash.py);
  * `qemu-img snapshot -l` lists every snapshot whose create was
    acknowledged and none whose delete was (an unacknowledged one may be
    either);
  * the snapshot "base", while listed, still holds generation 1.
Exit: 0 pass, 1 fail, 77 skip (no /dev/kvm, no qemu-img, no test hook).
"""
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True
HERE = os.path.dirname(os.path.realpath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "qmp"))
import crash  # noqa: E402
import qmplib  # noqa: E402
import sanitizers  # noqa: E402

SECTORS = 8192          # 4 MiB: two L2 tables of 4 KiB clusters
OPS = [("delete", "base"), ("create", "a"), ("create", "b"), ("delete", "a")]


def snapshots(img):
    r = subprocess.run(["qemu-img", "snapshot", "-l", img], capture_output=True, text=True)
    names = set()
    for line in r.stdout.splitlines()[2:]:
        f = line.split()
        if len(f) >= 2:
            names.add(f[1])
    return names


def make_image(d):
    raw1 = os.path.join(d, "gen1.raw")
    with open(raw1, "wb") as f:
        for i in range(SECTORS):
            f.write(crash.expected_block(i, 1))
    tmpl = os.path.join(d, "template.qcow2")
    for c in (["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", "-o",
               "cluster_size=4096", raw1, tmpl],
              ["qemu-img", "snapshot", "-c", "base", tmpl]):
        r = subprocess.run(c, capture_output=True, text=True)
        if r.returncode:
            return None, "%s: %s" % (" ".join(c), r.stderr.strip())
    return tmpl, raw1


def one_run(o, d, tmpl, n):
    img = os.path.join(d, "run.qcow2")
    shutil.copyfile(tmpl, img)
    sock = os.path.join(d, "qmp.sock")
    if os.path.exists(sock):
        os.unlink(sock)
    cmd = [o["kvmlite"], "-m", "64", "-kernel", o["elf"], "-nographic",
           "-append", "test=blk-crash gen=2 flush=1 count=%d" % SECTORS,
           "-device", "isa-debug-exit,iobase=0xf4,iosize=4",
           "-qmp", "unix:%s,server=on,wait=off" % sock,
           "-drive", "file=%s,if=virtio,format=qcow2,cache=writeback,aio=threads" % img]
    env = dict(os.environ, KVMLITE_BLOCK_CRASH_AT=str(n))
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, start_new_session=True, env=env)
    fd = p.stdout.fileno()
    state = {"buf": b"", "acked": -1, "started": False}

    def pump(timeout):
        r, _, _ = select.select([fd], [], [], timeout)
        if not r:
            return True
        chunk = os.read(fd, 65536)
        if not chunk:
            return False
        lines = (state["buf"] + chunk).split(b"\n")
        state["buf"] = lines.pop()
        for raw in lines:
            line = raw.decode("utf-8", "replace").strip()
            if line.startswith("ACK "):
                state["acked"] = int(line[4:])
            elif line.startswith("CRASH START"):
                state["started"] = True
        return True

    done = {}           # op index -> True when acknowledged
    died = False
    err = None
    try:
        q = qmplib.QMP(sock, timeout=20)
        q.cmd("qmp_capabilities")
        deadline = time.monotonic() + 30
        while not state["started"] and time.monotonic() < deadline:
            if not pump(0.2):
                break
        if not state["started"]:
            raise qmplib.QMPError("the guest never started writing")
        for k, (op, name) in enumerate(OPS):
            # guest writes in flight before each operation
            t_end = time.monotonic() + 0.03
            while time.monotonic() < t_end and pump(0.01):
                pass
            if op == "create":
                q.cmd("blockdev-snapshot-internal-sync", {"device": "virtio0", "name": name})
            else:
                q.cmd("blockdev-snapshot-delete-internal-sync",
                      {"device": "virtio0", "name": name})
            done[k] = True
        t_end = time.monotonic() + 0.03
        while time.monotonic() < t_end and pump(0.01):
            pass
    except (qmplib.QMPError, OSError, ValueError) as e:
        if p.poll() is None:
            time.sleep(0.2)
        if p.poll() is None:
            err = "QMP failed with kvmlite alive: %r" % e
        died = True
    if p.poll() is None:
        os.killpg(p.pid, signal.SIGKILL)
    p.wait()
    while pump(0):
        pass
    stderr = p.stderr.read().decode("utf-8", "replace")
    if died and p.returncode != -signal.SIGKILL:
        err = err or "kvmlite exited with %s, not the hook's SIGKILL: %s" % (
            p.returncode, stderr[-400:])
    san = sanitizers.report(stderr, None)
    if san:
        err = err or "%s\n%s" % (san, "\n".join(sanitizers.excerpt(stderr)))
    return img, done, died, state["acked"], err


def check_snapshots(img, done, raw1, d):
    names = snapshots(img)
    problems = []
    created, deleted = {"base"}, set()
    for k, (op, name) in enumerate(OPS):
        if k in done:
            (created if op == "create" else deleted).add(name)
            (deleted if op == "create" else created).discard(name)
        else:
            # the operation the kill interrupted may or may not be done
            created.discard(name)
            deleted.discard(name)
            break
    for name in created:
        if name not in names:
            problems.append("snapshot %s acknowledged but not listed (%s)" % (name, names))
    for name in deleted:
        if name in names:
            problems.append("snapshot %s deleted (acknowledged) but listed" % name)
    if "base" in names:
        out = os.path.join(d, "base.raw")
        r = subprocess.run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", "-l",
                            "snapshot.name=base", img, out], capture_output=True, text=True)
        if r.returncode:
            problems.append("qemu-img convert -l base: %s" % r.stderr.strip())
        else:
            with open(out, "rb") as a, open(raw1, "rb") as b:
                if a.read() != b.read():
                    problems.append("snapshot base no longer holds generation 1")
    return problems


def main():
    o = {"verbose": False, "max_steps": 200}
    pos = []
    args = sys.argv[1:]
    while args:
        a = args.pop(0)
        if a == "-v":
            o["verbose"] = True
        elif a == "--max-steps" and args:
            o["max_steps"] = int(args.pop(0))
        elif a.startswith("-"):
            sys.exit(__doc__)
        else:
            pos.append(a)
    if len(pos) != 2:
        sys.exit(__doc__)
    o["kvmlite"], o["elf"] = pos
    try:
        os.close(os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC))
    except OSError as e:
        print("SKIP: cannot open /dev/kvm: %s" % e)
        return qmplib.SKIP
    if not shutil.which("qemu-img"):
        print("SKIP: no qemu-img")
        return qmplib.SKIP
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="kl-snapcrash-") as d:
        tmpl, raw1 = make_image(d)
        if tmpl is None:
            print("SKIP: %s" % raw1)
            return qmplib.SKIP
        kills = 0
        for n in range(1, o["max_steps"] + 1):
            img, done, died, acked, err = one_run(o, d, tmpl, n)
            if err:
                print("snapshot.py: FAIL at step %d: %s" % (n, err))
                return 1
            problems = crash.check_image(img, SECTORS, 2, acked, 2, "qcow2")
            problems += check_snapshots(img, done, raw1, d)
            if o["verbose"]:
                print("  step %d: %s after %d of %d operations, last ACK %d" % (
                    n, "killed" if died else "completed", len(done), len(OPS), acked))
            if problems:
                print("snapshot.py: FAIL: killed at step %d (after %d of %d operations, "
                      "last ACK %d):" % (n, len(done), len(OPS), acked))
                for pr in problems:
                    print("  " + pr)
                return 1
            if not died:
                if n == 1:
                    print("SKIP: no crash point fired (kvmlite built with "
                          "-Dblock_test_hooks=false?)")
                    return qmplib.SKIP
                print("snapshot.py: PASS: killed at each of the %d steps of %d snapshot "
                      "operations; qemu-img check clean (leaks allowed), acknowledged "
                      "writes and snapshots present (%.1f s)"
                      % (kills, len(OPS), time.monotonic() - t0))
                return 0
            kills += 1
    print("snapshot.py: FAIL: still crashing after %d steps" % o["max_steps"])
    return 1


if __name__ == "__main__":
    sys.exit(main())
