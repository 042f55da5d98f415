#!/usr/bin/env python3
"""Crash-consistency test for virtio-blk: SIGKILL kvmlite mid-write, then
check that every write the guest saw acknowledged is on the disk image.

usage: crash.py [--kills N] [--soak SECONDS] [--seed S] [--sectors N]
                [--aio A] [--cache C] [-v] KVMLITE PROBE_ELF

The probe test `blk-crash` (tests/guest/t_virtio_blk.c) writes block i
(512 bytes at sector i: magic "KLCRASH", i, generation, pattern of (i, gen))
for i = 0, 1, 2, ... and prints "ACK i" on the serial console once the write
is acknowledged: after its completion for cache=none/writethrough/directsync,
after the following FLUSH for writeback.  This driver starts kvmlite, kills it
with SIGKILL at a random moment, and verifies on the image:
  * every block i <= the last ACK printed holds generation G of this run;
  * every other block is either all zeros or a well-formed block of this or
    an earlier generation (no torn or foreign data).
The same image is reused for all runs of a mode, with G = 1, 2, 3, ...

--kills N      kills per mode (default 30)
--soak SEC     instead of a fixed count, keep killing for SEC seconds
--aio/--cache  mode (default threads/writeback); kvmlite flags as in -drive
Exit: 0 pass, 1 fail, 77 skip (no /dev/kvm).
"""
import os
import random
import select
import signal
import struct
import subprocess
import sys
import tempfile
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), ".."))
import sanitizers  # noqa: E402  (tests/sanitizers.py)

SKIP = 77
MAGIC = 0x48534152434c4b
M64 = (1 << 64) - 1


def parse(argv):
    o = {"kills": 30, "soak": 0.0, "seed": None, "sectors": 2048, "aio": "threads",
         "cache": "writeback", "verbose": False}
    pos = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "-v":
            o["verbose"] = True
        elif a in ("--kills", "--soak", "--seed", "--sectors", "--aio", "--cache"):
            if i + 1 >= len(argv):
                sys.exit("crash.py: %s needs a value" % a)
            v = argv[i + 1]
            i += 1
            k = a[2:]
            if k in ("kills", "sectors", "seed"):
                o[k] = int(v)
            elif k == "soak":
                o[k] = float(v)
            else:
                o[k] = v
        elif a.startswith("-"):
            sys.exit("crash.py: unknown option %s\n%s" % (a, __doc__))
        else:
            pos.append(a)
        i += 1
    if len(pos) != 2:
        sys.exit(__doc__)
    o["kvmlite"], o["elf"] = pos
    return o


def expected_block(i, gen):
    words = [MAGIC, i, gen]
    for k in range(3, 64):
        words.append(((i * 0x9e3779b97f4a7c15) & M64) ^ (gen << 32) ^ k)
    return struct.pack("<64Q", *[w & M64 for w in words])


def check_image(path, sectors, gen, acked, prev_max_gen):
    """Return a list of problems (empty when consistent)."""
    problems = []
    with open(path, "rb") as f:
        data = f.read(sectors * 512)
    zero = bytes(512)
    for i in range(sectors):
        blk = data[i * 512:(i + 1) * 512]
        if i <= acked:
            if blk != expected_block(i, gen):
                magic, idx, g = struct.unpack_from("<3Q", blk)
                problems.append("block %d acknowledged in gen %d but holds magic %#x idx %d gen %d"
                                % (i, gen, magic, idx, g))
            continue
        if blk == zero:
            continue
        magic, idx, g = struct.unpack_from("<3Q", blk)
        if magic != MAGIC or idx != i or not 1 <= g <= max(gen, prev_max_gen) \
                or blk != expected_block(i, g):
            problems.append("block %d is torn/foreign: magic %#x idx %d gen %d" % (i, magic, idx, g))
        if len(problems) > 5:
            break
    return problems


def one_run(o, img, gen, kill_after, rng):
    flush = 1 if o["cache"] in ("writeback", "unsafe") else 0
    cmd = [o["kvmlite"], "-m", "64", "-kernel", o["elf"], "-nographic",
           "-append", "test=blk-crash gen=%d flush=%d count=%d" % (gen, flush, o["sectors"]),
           "-device", "isa-debug-exit,iobase=0xf4,iosize=4",
           "-drive", "file=%s,if=virtio,cache=%s,aio=%s" % (img, o["cache"], o["aio"])]
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, start_new_session=True)
    buf = b""
    acked = -1
    started = None
    done = False
    killed = False
    deadline = time.monotonic() + 30
    fd = p.stdout.fileno()
    while True:
        now = time.monotonic()
        if started is not None and not killed and now - started >= kill_after:
            os.killpg(p.pid, signal.SIGKILL)
            killed = True
        if now > deadline:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
            return None, "timeout (no progress in 30 s); output tail: %r" % buf[-300:]
        timeout = 0.5 if started is None or killed else max(0.0, kill_after - (now - started))
        r, _, _ = select.select([fd], [], [], timeout)
        if not r:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        buf += chunk
        lines = buf.split(b"\n")
        buf = lines.pop()
        for raw in lines:
            line = raw.decode("utf-8", "replace").strip()
            if line.startswith("ACK "):
                acked = int(line[4:])
            elif line.startswith("CRASH START"):
                started = time.monotonic()
            elif line.startswith("CRASH DONE"):
                done = True
            elif line.startswith("PROBE FAIL"):
                p.kill()
                p.wait()
                return None, line
    p.wait()
    err = p.stderr.read().decode("utf-8", "replace").strip()
    san = sanitizers.report(err, None if killed else p.returncode)
    if san:
        return None, "%s\n%s" % (san, "\n".join(sanitizers.excerpt(err)))
    if not killed and not done:
        return None, "kvmlite exited (status %s) before the kill: %s" % (p.returncode, err[-300:])
    return {"acked": acked, "killed": killed and not done, "done": done}, None


def main():
    o = parse(sys.argv[1:])
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
        os.close(fd)
    except OSError as e:
        print("SKIP: cannot open /dev/kvm: %s" % e)
        return SKIP
    seed = o["seed"] if o["seed"] is not None else random.randrange(1 << 30)
    rng = random.Random(seed)
    mode = "aio=%s cache=%s" % (o["aio"], o["cache"])
    print("crash.py: %s, seed %d, %s" % (mode, seed,
          ("soak %.0f s" % o["soak"]) if o["soak"] else ("%d kills" % o["kills"])), flush=True)
    t_end = time.monotonic() + o["soak"]
    with tempfile.TemporaryDirectory(prefix="kl-crash-") as d:
        img = os.path.join(d, "crash.raw")
        with open(img, "wb") as f:
            f.truncate(o["sectors"] * 512)
        gen = 0
        kills = runs = 0
        total_acked = 0
        window = 0.3      # kill within [0, window) s after the guest starts writing
        while (time.monotonic() < t_end) if o["soak"] else (kills < o["kills"]):
            gen += 1
            runs += 1
            kill_after = rng.uniform(0.0, window)
            res, err = one_run(o, img, gen, kill_after, rng)
            if err:
                print("crash.py: FAIL run %d (gen %d): %s" % (runs, gen, err))
                return 1
            problems = check_image(img, o["sectors"], gen, res["acked"], gen)
            if problems:
                print("crash.py: FAIL run %d (gen %d, killed after %.3f s, last ACK %d):"
                      % (runs, gen, kill_after, res["acked"]))
                for pr in problems:
                    print("  " + pr)
                print("crash.py: reproduce with --seed %d" % seed)
                return 1
            if res["killed"]:
                kills += 1
                total_acked += res["acked"] + 1
            else:
                window *= 0.5  # the run finished first: kill earlier
            if o["verbose"]:
                print("  run %d gen %d: kill at %.3f s, last ACK %d%s" % (
                    runs, gen, kill_after, res["acked"], "" if res["killed"] else " (completed)"))
            if runs > 3 * max(o["kills"], 10) and kills < runs // 3 and not o["soak"]:
                print("crash.py: FAIL: only %d of %d runs were killed mid-write" % (kills, runs))
                return 1
    print("crash.py: PASS %s: %d kills in %d runs, %d acknowledged writes verified (seed %d)"
          % (mode, kills, runs, total_acked, seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
