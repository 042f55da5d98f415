"""Device checks of tests/linux/run-linux (issue 14; docs/memory.md,
docs/numa-rng.md, docs/chardev.md, docs/virtio-pci.md): virtio-balloon,
NUMA + virtio-rng, hvc0 on a virtconsole, and the virtio-mmio devices of
-M microvm.

run-linux imports this module and calls checks(lib) with its own namespace
(Fail, MEM, PARKED, ...): the helpers have one copy, there (see
checks_hotplug.py, whose _Lib this module shares).
"""

import os
import re
import time

from checks_hotplug import _Lib

L = None  # set by checks()


def checks(lib):
    """The device checks for run-linux's CHECKS; lib: its globals()."""
    global L
    L = _Lib(lib)
    return [("balloon", check_balloon), ("numa-rng", check_numa_rng),
            ("hvc0", check_hvc0), ("microvm-devices", check_microvm_devices),
            ("microvm-acpi", lambda ctx: check_microvm_devices(ctx, "microvm,acpi=on"))]


def vmm_rss(pid):
    with open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
            if line.startswith("Rss:"):
                return int(line.split()[1]) << 10
    raise L.Fail("no Rss in /proc/%d/smaps_rollup" % pid)


def check_balloon(ctx):
    """virtio-balloon-pci with the kernel's driver (kernel only, parked):
    guest RAM preallocated (-mem-prealloc: all of it resident), the driver
    sends its first stats (qom-get guest-stats: last-update set,
    stat-total-memory within -m); QMP balloon to half of -m: query-balloon
    reaches it and the VMM's RSS falls by >= 80 % of the inflated amount;
    balloon back to all of -m: the driver deflates."""
    ram = int(L.MEM) << 20
    path = "/machine/peripheral/balloon0"
    g = ctx.guest("balloon", ["-mem-prealloc", "-device", "virtio-balloon-pci,id=balloon0"],
                  L.PARKED)
    g.wait_for(L.PARKED_LINE, what="boot")
    deadline = time.monotonic() + 60
    while True:
        gs = g.qmp("qom-get", arguments={"path": path, "property": "guest-stats"})
        if gs.get("last-update"):
            break
        if time.monotonic() > deadline:
            raise L.Fail("the driver never sent stats: %r" % gs)
        time.sleep(0.5)
    total = gs["stats"].get("stat-total-memory", 0)
    if not 0 < total <= ram:
        raise L.Fail("stat-total-memory %r not within (0, %d]" % (total, ram))
    ctx.note("guest-stats: stat-total-memory %d KiB, stat-free-memory %d KiB"
             % (total >> 10, gs["stats"].get("stat-free-memory", 0) >> 10))
    if g.qmp("query-balloon") != {"actual": ram}:
        raise L.Fail("query-balloon before: %r" % g.qmp("query-balloon"))
    before = vmm_rss(g.proc.pid)
    target = ram // 2
    took = balloon_to(g, target)
    after = vmm_rss(g.proc.pid)
    inflated = ram - target
    ctx.note("balloon to %d MiB in %.1f s: RSS before %d KiB, after %d KiB, inflated %d KiB, "
             "fell %d KiB (%.0f %% of inflated)" % (target >> 20, took, before >> 10, after >> 10,
                                                   inflated >> 10, (before - after) >> 10,
                                                   100.0 * (before - after) / inflated))
    if before - after < 0.8 * inflated:
        raise L.Fail("RSS fell by %d KiB, less than 80 %% of the inflated %d KiB"
                   % ((before - after) >> 10, inflated >> 10))
    ctx.note("deflated to %d MiB in %.1f s" % (ram >> 20, balloon_to(g, ram, "deflate: ")))


def balloon_to(g, target, what=""):
    """QMP balloon to target bytes, then wait (up to 300 s) until the
    guest's driver gets there; returns the seconds it took."""
    t0 = time.monotonic()
    g.qmp("balloon", arguments={"value": target})
    while True:
        actual = g.qmp("query-balloon")["actual"]
        if actual == target:
            return time.monotonic() - t0
        if g.proc.poll() is not None or time.monotonic() - t0 > 300:
            raise L.Fail("%squery-balloon actual %d, never reached %d" % (what, actual, target))
        time.sleep(0.5)


def fd_position(pid, path):
    """File position of the VMM's open file `path` (/proc/PID/fdinfo), or None."""
    d = "/proc/%d/fd" % pid
    for fd in os.listdir(d):
        try:
            if os.readlink(os.path.join(d, fd)) != path:
                continue
            with open("/proc/%d/fdinfo/%s" % (pid, fd)) as f:
                for line in f:
                    if line.startswith("pos:"):
                        return int(line.split()[1])
        except OSError:
            continue
    return None


def check_numa_rng(ctx):
    """Kernel-side, one boot: two NUMA nodes of half the RAM each (one
    memory-backend-ram per node, CPU i on node i) found through the ACPI
    SRAT, and the virtio-rng driver registered.  The kernel prints nothing
    when a hwrng registers, but registering reads entropy from the device
    at once (add_early_randomness), so the device's rng-random back-end, a
    1 MiB file, must have been read (its file position in the VMM).  QEMU
    runs -M pc: its microvm has no SRAT."""
    half = int(L.MEM) // 2
    seed = os.path.join(ctx.tmp, "rng-seed")
    with open(seed, "wb") as f:
        f.write(os.urandom(1 << 20))
    args = []
    for n in range(2):
        args += ["-object", "memory-backend-ram,id=m%d,size=%dM" % (n, half),
                 "-numa", "node,nodeid=%d,cpus=%d,memdev=m%d" % (n, n, n)]
    args += ["-object", "rng-random,id=rng0,filename=" + seed,
             "-device", "virtio-rng-pci,rng=rng0"]
    g = ctx.guest("numa-rng", args, L.PARKED, smp=2, qemu_machine="pc")
    b = half << 20
    g.wait_for(L.PARKED_LINE, what="boot")
    for pat in [r"SRAT: PXM 0 -> APIC 0x00 -> Node 0", r"SRAT: PXM 1 -> APIC 0x01 -> Node 1",
                r"ACPI: SRAT: Node 0 PXM 0 \[mem 0x00000000-0x0009ffff\]",
                r"ACPI: SRAT: Node 0 PXM 0 \[mem 0x00100000-0x%08x\]" % (b - 1),
                r"ACPI: SRAT: Node 1 PXM 1 \[mem 0x%08x-0x%08x\]" % (b, 2 * b - 1),
                r"Initmem setup node 0 \[mem 0x0000000000001000-",
                r"Initmem setup node 1 \[mem 0x%016x-" % b,
                r"smp: Brought up 2 nodes, 2 CPUs"]:
        g.wait_for(pat, 30, what="NUMA")
    pos = fd_position(g.proc.pid, seed)
    if not pos:
        raise L.Fail("virtio-rng: the guest's driver read nothing from the rng-random file "
                   "(position %s)" % pos)
    ctx.note("2 NUMA nodes of %d MiB, CPUs 0/1 on nodes 0/1; virtio-rng: %d bytes of "
             "entropy read by the guest" % (half, pos))


HVC0_ENABLED = r"printk: console \[hvc0\] enabled"


def hvc0_log(ctx, g, log):
    """After a parked boot with console=ttyS0 console=hvc0: the chardev file
    of the virtconsole holds the kernel log from hvc0's registration on,
    line for line what ttyS0 printed after "console [hvc0] enabled".  How
    many lines that is depends on the guest's timing (the kernel does not
    replay older lines to a console registered after ttyS0, and whether the
    "enabled" line itself gets there is a race inside virtio_console), so
    the check makes the kernel print after the fact: a QMP system_powerdown
    gives evbug's KEY_POWER line, which the file must hold.  Judged on
    content, load-tolerant: the file is polled up to 300 s."""
    i, _, _ = g.wait_for(HVC0_ENABLED, what="hvc0 console registered")
    k, _, _ = g.wait_for(L.PARKED_LINE, start=i, what="boot")
    g.qmp("system_powerdown")
    g.wait_for(L.KEY_POWER, 120, start=k, what="KEY_POWER after system_powerdown")
    deadline = time.monotonic() + 300
    text = ""
    while True:
        with open(log, "rb") as f:
            text = f.read().decode("utf-8", "replace")
        if re.search(L.KEY_POWER, text) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    got = [l.rstrip("\r") for l in text.split("\n") if l.rstrip("\r")]
    for want in (L.PARKED_LINE, L.KEY_POWER):
        if not any(re.search(want, l) for l in got):
            raise L.Fail("the hvc0 chardev file lacks /%s/ (%d bytes, last lines %r)"
                       % (want, len(text), got[-3:]))
    # compare up to KEY_POWER: ttyS0's reader has that far (later lines may
    # be in the file before they are in g.lines)
    got = got[:next(n for n, l in enumerate(got) if re.search(L.KEY_POWER, l)) + 1]
    with g.cond:
        serial = [t for _, _, t in g.lines[i:] if t.strip()]
    # the file's lines are ttyS0's from "[hvc0] enabled" (that line optional) on
    j = 0 if re.search(HVC0_ENABLED, got[0]) else 1
    want = serial[j:j + len(got)]
    if got != want:
        bad = next(n for n in range(len(got)) if n >= len(want) or got[n] != want[n])
        raise L.Fail("hvc0 line %d is %r, ttyS0 printed %r there" %
                   (bad, got[bad], want[bad] if bad < len(want) else None))
    return got


def check_hvc0(ctx):
    """console=hvc0 on a virtconsole of virtio-serial-pci (MULTIPORT, the
    kernel's virtio_console driver), a file chardev: kernel only, parked.
    The log lines after the console's registration reach the file, the same
    as on ttyS0, up to a KEY_POWER event line printed on request (hvc0_log)."""
    log = os.path.join(ctx.tmp, "hvc0-%s.log" % ctx.vmm)
    g = ctx.guest("hvc0", ["-device", "virtio-serial-pci,id=vser0",
                           "-device", "virtconsole,chardev=c0,id=con0",
                           "-chardev", "file,id=c0,path=%s" % log],
                  L.PARKED + " console=hvc0")
    got = hvc0_log(ctx, g, log)
    ctx.note("hvc0 (virtio-serial-pci): %d lines in the chardev file, as on ttyS0, from %r"
             % (len(got), got[0][:60]))


def check_microvm_devices(ctx, machine="microvm"):
    """-M microvm without PCI, kernel only (parked): virtio-rng-device,
    virtio-balloon-device and virtio-serial-device + virtconsole (console=hvc0)
    on virtio-mmio transports, bound by the kernel's own drivers.  rng: the
    device's rng-random file (1 MiB) was read (hwrng registration reads
    entropy at once); balloon: QMP balloon to -m minus 16 MiB and query-balloon
    reaches it (the driver inflated), then back; console: the hvc0 file as
    in the hvc0 check.  (kvmlite: virtio_mmio.device= on the command line;
    QEMU 7.2 with ACPI: LNRO0005 in the DSDT.)  With machine=microvm,acpi=on
    (check microvm-acpi) kvmlite too describes them in the DSDT only: the
    kernel command line must not name them."""
    ram = int(L.MEM) << 20
    log = os.path.join(ctx.tmp, "hvc0-mmio-%s.log" % ctx.vmm)
    seed = os.path.join(ctx.tmp, "rng-seed-mmio")
    with open(seed, "wb") as f:
        f.write(os.urandom(1 << 20))
    dev = ["-object", "rng-random,id=rng0,filename=" + seed,
           "-device", "virtio-rng-device,rng=rng0",
           "-device", "virtio-balloon-device,id=balloon0",
           "-device", "virtio-serial-device,id=vser0",
           "-device", "virtconsole,chardev=c0,id=con0",
           "-chardev", "file,id=c0,path=%s" % log]
    g = ctx.guest("microvm-devices", dev, L.PARKED + " console=hvc0", machine=machine)
    got = hvc0_log(ctx, g, log)
    if "acpi=on" in machine:
        cl = [t for _, _, t in g.lines if t.startswith("Kernel command line:")]
        if not cl or "virtio_mmio.device=" in cl[0]:
            raise L.Fail("acpi=on: the kernel command line names the transports: %r" % cl[:1])
    if any(re.search(r"PCI host bridge to bus|pci 0000:00:", t) for t in g.tail(10 ** 6)):
        raise L.Fail("the guest found a PCI bus on -M microvm")
    pos = fd_position(g.proc.pid, seed)
    if not pos:
        raise L.Fail("virtio-rng-device: the guest's driver read nothing from the rng-random "
                   "file (position %s)" % pos)
    target = ram - (16 << 20)
    took = balloon_to(g, target, "virtio-balloon-device: ")
    balloon_to(g, ram, "virtio-balloon-device: deflate: ")
    ctx.note("virtio-mmio: rng %d bytes read, balloon inflated 16 MiB in %.1f s and deflated, "
             "hvc0 %d lines" % (pos, took, len(got)))
