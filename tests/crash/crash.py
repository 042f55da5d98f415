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
--format F     raw (default) or qcow2: a qcow2 image made by qemu-img (with
               --backing, over a qcow2 base holding an older generation);
               the guest always flushes before it acknowledges (qcow2
               metadata is cached, as in QEMU: cache=none is a volatile write
               cache to the guest) and after every run `qemu-img check` must
               find no corruption (leaks are allowed, as in QEMU); the image
               is read back through `qemu-img convert -O raw`.
Exit: 0 pass, 1 fail, 77 skip (no /dev/kvm).
"""
import functools
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
         "cache": "writeback", "verbose": False, "format": "raw", "backing": False}
    pos = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "-v":
            o["verbose"] = True
        elif a == "--backing":
            o["backing"] = True
        elif a in ("--kills", "--soak", "--seed", "--sectors", "--aio", "--cache", "--format"):
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


@functools.lru_cache(maxsize=1 << 15)  # snapshot.py checks the same two gens each run
def expected_block(i, gen):
    words = [MAGIC, i, gen]
    for k in range(3, 64):
        words.append(((i * 0x9e3779b97f4a7c15) & M64) ^ (gen << 32) ^ k)
    return struct.pack("<64Q", *[w & M64 for w in words])


def qcow2_check(path):
    """qemu-img check: problems (corruptions, errors) as a list; leaks are fine."""
    r = subprocess.run(["qemu-img", "check", "-f", "qcow2", path], capture_output=True, text=True)
    # exit 0: clean, 3: leaked clusters only; 1: check failed, 2: corruptions
    if r.returncode in (0, 3):
        return []
    return ["qemu-img check exit %d: %s" % (r.returncode, (r.stdout + r.stderr).strip()[-600:])]


def read_image(path, fmt, sectors):
    if fmt == "raw":
        with open(path, "rb") as f:
            return f.read(sectors * 512)
    with tempfile.NamedTemporaryFile(prefix="kl-crash-conv-") as t:
        subprocess.run(["qemu-img", "convert", "-f", fmt, "-O", "raw", path, t.name],
                       check=True, capture_output=True)
        with open(t.name, "rb") as f:
            return f.read(sectors * 512)


def check_image(path, sectors, gen, acked, prev_max_gen, fmt="raw"):
    """Return a list of problems (empty when consistent)."""
    problems = qcow2_check(path) if fmt == "qcow2" else []
    if problems:
        return problems
    data = read_image(path, fmt, sectors)
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
    flush = 1 if o["cache"] in ("writeback", "unsafe") or o["format"] != "raw" else 0
    cmd = [o["kvmlite"], "-m", "64", "-kernel", o["elf"], "-nographic",
           "-append", "test=blk-crash gen=%d flush=%d count=%d" % (gen, flush, o["sectors"]),
           "-device", "isa-debug-exit,iobase=0xf4,iosize=4",
           "-drive", "file=%s,if=virtio,format=%s,cache=%s,aio=%s"
           % (img, o["format"], o["cache"], o["aio"])]
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
    mode = "format=%s%s aio=%s cache=%s" % (o["format"], "+backing" if o["backing"] else "",
                                              o["aio"], o["cache"])
    print("crash.py: %s, seed %d, %s" % (mode, seed,
          ("soak %.0f s" % o["soak"]) if o["soak"] else ("%d kills" % o["kills"])), flush=True)
    t_end = time.monotonic() + o["soak"]
    with tempfile.TemporaryDirectory(prefix="kl-crash-") as d:
        img = os.path.join(d, "crash." + o["format"])
        gen = 0
        if o["format"] == "raw":
            with open(img, "wb") as f:
                f.truncate(o["sectors"] * 512)
        else:
            size = str(o["sectors"] * 512)
            base = os.path.join(d, "base.qcow2")
            cmds = [["qemu-img", "create", "-q", "-f", "qcow2", base if o["backing"] else img, size]]
            if o["backing"]:
                # generation 1 lives in the base: the overlay COWs from it
                raw1 = os.path.join(d, "gen1.raw")
                with open(raw1, "wb") as f:
                    for i in range(o["sectors"]):
                        f.write(expected_block(i, 1))
                cmds = [["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", "-c", raw1, base],
                        ["qemu-img", "create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2", img]]
                gen = 1
            for c in cmds:
                r = subprocess.run(c, capture_output=True, text=True)
                if r.returncode:
                    print("SKIP: %s: %s" % (" ".join(c), r.stderr.strip()))
                    return SKIP
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
            problems = check_image(img, o["sectors"], gen, res["acked"], gen, o["format"])
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
