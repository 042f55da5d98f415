#!/usr/bin/env python3
"""QMP `quit` and SIGTERM while the guest has disk writes in flight.

usage: test_quit_inflight.py [--trials N] [--seed S] KVMLITE PROBE_ELF AIO CACHE

The probe's blk-crash test writes numbered blocks to virtio-blk as fast as
it can.  At a random moment after it starts, each trial either sends QMP
`quit` or SIGTERM; kvmlite must exit with status 0, print no sanitizer
report, and the requests in flight must have been completed before guest
RAM went away (they used to complete into unmapped RAM: SIGSEGV in
virtio-blk's completion, the PCI devices were never torn down).
Exit: 0 pass, 1 fail, 77 skip (no /dev/kvm).
"""
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), ".."))
import sanitizers  # noqa: E402


def trial(kv, elf, aio, cache, d, how, delay):
    img = os.path.join(d, "disk.raw")
    with open(img, "wb") as f:
        f.truncate(1 << 20)
    sock = os.path.join(d, "qmp.sock")
    if os.path.exists(sock):
        os.unlink(sock)
    cmd = [kv, "-m", "64", "-kernel", elf, "-nographic", "-append",
           "test=blk-crash gen=1 flush=1 count=2048",
           "-device", "isa-debug-exit,iobase=0xf4,iosize=4",
           "-drive", "file=%s,if=virtio,format=raw,cache=%s,aio=%s" % (img, cache, aio),
           "-qmp", "unix:%s,server=on,wait=off" % sock]
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    buf = b""
    t_end = time.monotonic() + 30
    while b"CRASH START" not in buf and time.monotonic() < t_end:
        c = p.stdout.read1(4096)
        if not c:
            break
        buf += c
    if b"CRASH START" not in buf:
        p.kill()
        p.wait()
        return "the probe never started writing: %r / %r" % (buf[-200:], p.stderr.read()[-300:])
    time.sleep(delay)
    if how == "quit":
        s = socket.socket(socket.AF_UNIX)
        s.connect(sock)
        f = s.makefile("rw")
        f.readline()
        f.write('{"execute":"qmp_capabilities"}\n')
        f.flush()
        f.readline()
        f.write('{"execute":"quit"}\n')
        f.flush()
    else:
        p.send_signal(signal.SIGTERM)
    try:
        p.stdout.read()
        rc = p.wait(30)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
        return "kvmlite did not exit within 30 s of %s" % how
    err = p.stderr.read().decode("utf-8", "replace")
    san = sanitizers.report(err, rc)
    if san:
        return "%s\n%s" % (san, "\n".join(sanitizers.excerpt(err)))
    if rc != 0:
        return "exit status %d after %s: %s" % (rc, how, err[-600:])
    return None


def main():
    args = sys.argv[1:]
    trials, seed = 30, random.randrange(1 << 30)
    while args and args[0].startswith("--"):
        a = args.pop(0)
        if a == "--trials":
            trials = int(args.pop(0))
        elif a == "--seed":
            seed = int(args.pop(0))
        else:
            sys.exit(__doc__)
    if len(args) != 4:
        sys.exit(__doc__)
    kv, elf, aio, cache = args
    try:
        os.close(os.open("/dev/kvm", os.O_RDWR))
    except OSError as e:
        print("SKIP: cannot open /dev/kvm: %s" % e)
        return 77
    rng = random.Random(seed)
    with tempfile.TemporaryDirectory(prefix="kl-quit-") as d:
        for how in ("quit", "SIGTERM"):
            for t in range(trials):
                delay = rng.uniform(0.0, 0.25)
                e = trial(kv, elf, aio, cache, d, how, delay)
                if e:
                    print("FAIL: %s trial %d (aio=%s cache=%s, after %.3f s, seed %d): %s"
                          % (how, t, aio, cache, delay, seed, e))
                    return 1
            print("ok   %d x %s with writes in flight (aio=%s cache=%s)" % (trials, how, aio, cache))
    print("PASS (seed %d)" % seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
