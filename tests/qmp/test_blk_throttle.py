#!/usr/bin/env python3
"""Disk I/O limits (QEMU's throttling.* and block_set_io_throttle).

usage: test_blk_throttle.py KVMLITE PROBE_ELF

The probe's blk-crash test writes 512-byte blocks as fast as it can and
prints "ACK n" after each completed write (flush=0).  The host times the
ACK lines (rates: the least-squares slope of writes against time):
  1. -drive ...,throttling.iops-total=100: over a 5 s window (after 1 s of
     warm-up) the rate is within 2 % of 100/s;
  2. query-block shows inserted.iops = 100;
  3. block_set_io_throttle iops=50 then iops=100 (live): each rate within
     2 %, and the doubling shows within 0.2 s (the first ACKs after it come
     at least 1.6x as fast as before);
  4. block_set_io_throttle with neither device nor id, or an unknown device,
     fails with QEMU's error class.
The unthrottled probe writes ~300 blocks/s here; the limits are below that.
Exit: 0 pass, 1 fail, 77 skip (no /dev/kvm).
"""
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), ".."))
import sanitizers  # noqa: E402

failures = []


def check(ok, what):
    print(("  ok   " if ok else "  FAIL ") + what, flush=True)
    if not ok:
        failures.append(what)


class Qmp:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX)
        for _ in range(100):
            try:
                self.s.connect(path)
                break
            except OSError:
                time.sleep(0.05)
        self.f = self.s.makefile("rw")
        self.f.readline()
        self.cmd("qmp_capabilities")

    def cmd(self, name, **args):
        msg = {"execute": name}
        if args:
            msg["arguments"] = args
        self.f.write(json.dumps(msg) + "\n")
        self.f.flush()
        while True:
            r = json.loads(self.f.readline())
            if "event" not in r:
                return r


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    kv, elf = sys.argv[1:]
    try:
        os.close(os.open("/dev/kvm", os.O_RDWR))
    except OSError as e:
        print("SKIP: cannot open /dev/kvm: %s" % e)
        return 77
    d = tempfile.mkdtemp(prefix="kl-thr-")
    img = os.path.join(d, "d.raw")
    with open(img, "wb") as f:
        f.truncate(40000 * 512)
    sock = os.path.join(d, "qmp.sock")
    p = subprocess.Popen([kv, "-m", "64", "-kernel", elf, "-nographic", "-append",
                          "test=blk-crash gen=1 flush=0 count=40000",
                          "-device", "isa-debug-exit,iobase=0xf4,iosize=4",
                          "-drive", "file=%s,if=virtio,format=raw,cache=writeback,aio=threads,"
                          "throttling.iops-total=100" % img,
                          "-qmp", "unix:%s,server=on,wait=off" % sock],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    acks = []
    lock = threading.Lock()

    def reader():
        for line in p.stdout:
            if line.startswith(b"ACK "):
                with lock:
                    acks.append(time.monotonic())
    threading.Thread(target=reader, daemon=True).start()

    def rate(t0, t1):
        """Least-squares slope of writes acknowledged against time (one
        late line moves the end points of a window, not the slope)."""
        with lock:
            ts = [t for t in acks if t0 <= t < t1]
        if len(ts) < 3:
            return 0.0
        mx, my = sum(ts) / len(ts), (len(ts) - 1) / 2.0
        sxx = sum((x - mx) ** 2 for x in ts)
        return sum((x - mx) * (i - my) for i, x in enumerate(ts)) / sxx if sxx > 0 else 0.0

    def window(limit, what, secs=5.0):
        time.sleep(1.0)
        t0 = time.monotonic()
        time.sleep(secs)
        r = rate(t0, time.monotonic())
        check(abs(r - limit) <= 0.02 * limit,
              "%s: %.1f writes/s for a limit of %d (%.2f %%)" % (what, r, limit,
                                                               100.0 * (r - limit) / limit))
        return r

    try:
        q = Qmp(sock)
        t_end = time.monotonic() + 60
        while not acks and time.monotonic() < t_end:
            time.sleep(0.1)
        check(bool(acks), "the probe writes")
        if acks:
            window(100, "throttling.iops-total=100")
            ins = q.cmd("query-block")["return"][0]["inserted"]
            check(ins.get("iops") == 100 and ins.get("bps") == 0,
                  "query-block: iops %r bps %r" % (ins.get("iops"), ins.get("bps")))
            zero = dict(bps=0, bps_rd=0, bps_wr=0, iops_rd=0, iops_wr=0)
            r = q.cmd("block_set_io_throttle", device="virtio0", iops=50, **zero)
            check(r == {"return": {}}, "block_set_io_throttle iops=50: %r" % r)
            slow = window(50, "live iops=50")
            t_set = time.monotonic()
            r = q.cmd("block_set_io_throttle", device="virtio0", iops=100, **zero)
            check(r == {"return": {}}, "block_set_io_throttle iops=100: %r" % r)
            time.sleep(0.6)
            fast = rate(t_set + 0.2, t_set + 0.6)
            check(fast >= 1.6 * slow, "doubled within 0.2 s: %.1f/s in 0.2-0.6 s after (was %.1f)"
                  % (fast, slow))
            window(100, "live iops=100")
            r = q.cmd("block_set_io_throttle", iops=1, **zero)
            check(r.get("error", {}).get("class") == "GenericError",
                  "no device nor id: %r" % r.get("error"))
            r = q.cmd("block_set_io_throttle", device="nope", iops=1, **zero)
            check(r.get("error", {}).get("class") == "DeviceNotFound",
                  "unknown device: %r" % r.get("error"))
            r = q.cmd("block_set_io_throttle", device="virtio0", iops=0, **zero)
            check(r == {"return": {}} and "iops" in q.cmd("query-block")["return"][0]["inserted"],
                  "limits removed: %r" % r)
            q.cmd("quit")
        rc = p.wait(30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    err = p.stderr.read().decode("utf-8", "replace")
    san = sanitizers.report(err, rc)
    check(not san, "no sanitizer report%s" % (": " + san if san else ""))
    check(rc == 0, "exit status 0 after quit (got %s)" % rc)
    if failures:
        print("FAIL: %d check(s) failed" % len(failures))
        return 1
    print("PASS")
    return 0


if __name__ == "__main__":
    sys.exit(main())
