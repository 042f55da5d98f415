#!/usr/bin/env python3
"""virtio-balloon-pci end to end: the probe guest's `balloon` test
(tests/guest/t_balloon.c) driven over QMP.

usage: test_balloon.py [--merge yes|no] [--mmio] KVMLITE PROBE_ELF [EXTRA VMM ARGS...]

--mmio: -M microvm with virtio-balloon-device (the virtio-mmio transport;
the probe runs with transport=mmio), QOM type virtio-balloon-device.

--merge: the 128 MiB guest RAM mapping must (yes) or must not (no) be
KSM-mergeable ("mg" in its smaps VmFlags): -machine mem-merge / merge=.

EXTRA: e.g. a memory backend for guest RAM (-object memory-backend-file,
...,size=128M -machine memory-backend=ID): the same checks on each backing
(punch hole on memfd/file, MADV_REMOVE on shared, MADV_DONTNEED on private
memory).

1. Without a balloon: balloon / query-balloon fail with DeviceNotActive
   "No balloon device has been activated", qom-get on the balloon's path
   with DeviceNotFound.
2. -m 128 -device virtio-balloon-pci,id=balloon0,free-page-reporting=on,
   deflate-on-oom=on; the probe touches 32 MiB:
   - qom-list /machine/peripheral/balloon0 and /machine/peripheral;
     qom-get guest-stats holds the probe's first stats (swap-in 7, free
     0x1234000, unknown ones -1, the unknown tag ignored), last-update now;
   - balloon to RAM - 32 MiB: query-balloon reaches it, BALLOON_CHANGE
     says so, the VMM's RSS (smaps_rollup) falls by >= 80 % of 32 MiB;
   - qom-set guest-stats-polling-interval 1: the device hands the stats
     buffer back, the probe refills it, qom-get shows the new value;
   - errors: balloon 0, qom-set of -1 / a string / a read-only property,
     qom-get of an unknown property;
   - balloon above RAM (clamped: the probe deflates, its pages read zero),
     free page reporting (the range reads zero), hostile input (PFNs
     beyond RAM, an oversized buffer, bad stats, actual > RAM): the probe
     passes, the VMM answers QMP, logs the ignored PFNs;
   - BALLOON_CHANGE events are at least ~1 s apart (QEMU's throttling) and
     the last one tells the final actual (all of RAM).
Exit status 0 pass, 1 fail, 77 skip.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qmplib import QMP, VMM, check, failures, main_args, verdict  # noqa: E402

RAM = 128 << 20
PAGES = 8192
PATH = "/machine/peripheral/balloon0"


def rss(pid):
    with open("/proc/%d/smaps_rollup" % pid) as f:
        for line in f:
            if line.startswith("Rss:"):
                return int(line.split()[1]) << 10
    return 0


def ram_mergeable(pid):
    """VmFlags has "mg" for the 128 MiB mapping of guest RAM (None: not found)."""
    found = None
    size = None
    with open("/proc/%d/smaps" % pid) as f:
        for line in f:
            if line.startswith("Size:"):
                size = int(line.split()[1])
            elif line.startswith("VmFlags:") and size == RAM >> 10:
                found = "mg" in line.split()[1:]
    return found


def poll(fn, timeout=20.0):
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(0.1)


def err(q, name, args):
    r = q.cmd_raw(name, args)
    return r.get("error", {}).get("class"), r.get("error", {}).get("desc")


def no_balloon(binary, probe):
    vm = VMM("kvmlite", binary, probe, "halt", paused=False)
    try:
        q = QMP(vm.sock)
        q.cmd("qmp_capabilities")
        want = ("DeviceNotActive", "No balloon device has been activated")
        check(err(q, "balloon", {"value": 1 << 20}) == want, "balloon without a balloon: %r" % (want,))
        check(err(q, "query-balloon", None) == want, "query-balloon without a balloon")
        check(err(q, "qom-get", {"path": PATH, "property": "guest-stats"}) ==
              ("DeviceNotFound", "Device '%s' not found" % PATH), "qom-get without a balloon")
        q.cmd("quit")
        vm.wait_exit()
    finally:
        vm.stop()


def main():
    argv = sys.argv[1:]
    merge = None
    mmio = False
    while argv[:1] in (["--merge"], ["--mmio"]):
        if argv[0] == "--mmio":
            mmio, argv = True, argv[1:]
        else:
            merge, argv = argv[1] == "yes", argv[2:]
    dtype = "virtio-balloon-device" if mmio else "virtio-balloon-pci"
    extra = argv[2:]
    _, binary, probe, status = main_args(__doc__, argv[:2])
    if status is not None:
        return status
    no_balloon(binary, probe)
    vm = VMM("kvmlite", binary, probe, "balloon",
             cmdline="pages=%d" % PAGES + (" transport=mmio" if mmio else ""), paused=False,
             extra=["-m", "128"] + (["-M", "microvm"] if mmio else []) +
             ["-device", dtype + ",id=balloon0,free-page-reporting=on,deflate-on-oom=on"] + extra)
    print("run: %s" % " ".join(vm.cmd), flush=True)
    try:
        q = QMP(vm.sock)
        q.cmd("qmp_capabilities")
        vm.wait_serial("BALLOON READY", 120)
        check("reporting=1" in vm.lines[-1] or any("reporting=1" in x for x in vm.lines),
              "free page reporting negotiated")
        names = {p["name"]: p["type"] for p in q.cmd("qom-list", {"path": PATH})}
        check(names.get("guest-stats") == "guest statistics" and
              names.get("guest-stats-polling-interval") == "int" and names.get("type") == "string",
              "qom-list %s: %r" % (PATH, names))
        kids = q.cmd("qom-list", {"path": "/machine/peripheral"})
        check({"name": "balloon0", "type": "child<%s>" % dtype} in kids,
              "qom-list /machine/peripheral: %r" % kids)
        check(q.cmd("qom-get", {"path": PATH, "property": "type"}) == dtype, "type")
        gs = poll(lambda: (lambda g: g if g["last-update"] else None)(
            q.cmd("qom-get", {"path": PATH, "property": "guest-stats"})))
        st = gs["stats"] if gs else {}
        check(gs and abs(gs["last-update"] - time.time()) < 120, "last-update is now: %r" % gs)
        check(st.get("stat-swap-in") == 7 and st.get("stat-free-memory") == 0x1234000 and
              st.get("stat-swap-out") == -1 and st.get("stat-htlb-pgfail") == -1 and len(st) == 10,
              "first stats: %r" % st)
        check(q.cmd("query-balloon") == {"actual": RAM}, "query-balloon before: all of RAM")
        if merge is not None:
            mg = ram_mergeable(vm.proc.pid)
            check(mg == merge, "guest RAM mergeable (KSM) is %r, want %r" % (mg, merge))

        before = rss(vm.proc.pid)
        target = RAM - PAGES * 4096
        q.cmd("balloon", {"value": target})
        vm.wait_serial("BALLOON INFLATED", 120)
        got = poll(lambda: q.cmd("query-balloon")["actual"] == target)
        check(got, "query-balloon reaches %d" % target)
        ev = q.wait_event("BALLOON_CHANGE", 10)
        check(ev.get("data") == {"actual": target}, "BALLOON_CHANGE %r" % ev)
        after = rss(vm.proc.pid)
        inflated = PAGES * 4096
        print("RSS kvmlite probe: before %d KiB, after %d KiB, inflated %d KiB, fell %d KiB (%.0f %%)"
              % (before >> 10, after >> 10, inflated >> 10, (before - after) >> 10,
                 100.0 * (before - after) / inflated), flush=True)
        check(before - after >= 0.8 * inflated, "RSS fell by >= 80 %% of the inflated %d KiB"
              % (inflated >> 10))

        q.cmd("qom-set", {"path": PATH, "property": "guest-stats-polling-interval", "value": 1})
        check(q.cmd("qom-get", {"path": PATH, "property": "guest-stats-polling-interval"}) == 1,
              "polling interval reads back 1")
        vm.wait_serial("BALLOON STATS2", 60)
        gs = poll(lambda: (lambda g: g if g["stats"]["stat-free-memory"] == 0x5678000 else None)(
            q.cmd("qom-get", {"path": PATH, "property": "guest-stats"})))
        check(gs is not None, "stats round trip: free memory 0x5678000 after the poll")
        q.cmd("qom-set", {"path": PATH, "property": "guest-stats-polling-interval", "value": 0})

        for args, want in (
                ({"value": -1}, "timer value must be greater than zero"),
                ({"value": "x"}, "Invalid parameter type for 'guest-stats-polling-interval', "
                                 "expected: integer"),
                ({"value": 1 << 40}, "timer value is too big")):
            a = dict(path=PATH, property="guest-stats-polling-interval", **args)
            check(err(q, "qom-set", a) == ("GenericError", want), "qom-set %r: %s" % (args, want))
        check(err(q, "qom-set", {"path": PATH, "property": "guest-stats", "value": 1})[1] ==
              "Property '%s.guest-stats' is not writable" % dtype, "guest-stats read-only")
        check(err(q, "qom-get", {"path": PATH, "property": "nope"}) ==
              ("GenericError", "Property '%s.nope' not found" % dtype), "unknown property")
        check(err(q, "balloon", {"value": 0}) == ("GenericError", "Parameter 'target' expects a size"),
              "balloon 0")
        check(err(q, "balloon", {"value": "1"})[0] == "GenericError", "balloon with a string")

        q.cmd("balloon", {"value": 1 << 40})   # above RAM: clamped, the guest deflates
        vm.wait_serial("BALLOON DEFLATED", 120)
        vm.wait_serial("BALLOON REPORTED", 120)
        vm.wait_serial("BALLOON HOSTILE ok", 120)
        check(poll(lambda: q.cmd("query-balloon")["actual"] == RAM), "query-balloon back to all of RAM")
        check("outside guest RAM" in vm.stderr_text(), "ignored PFNs logged")
        time.sleep(1.5)   # the throttle's last event
        try:
            while True:
                q.events.append(q.recv(0.5))
        except Exception:
            pass
        evs = [ev] + [e for e in q.events if e["event"] == "BALLOON_CHANGE"]
        ts = [e["timestamp"]["seconds"] + e["timestamp"]["microseconds"] / 1e6 for e in evs]
        gaps = [b - a for a, b in zip(ts, ts[1:])]
        print("BALLOON_CHANGE events: %s" % [(round(t - ts[0], 3), e["data"]["actual"])
                                            for t, e in zip(ts, evs)], flush=True)
        check(len(evs) >= 2 and all(g >= 0.9 for g in gaps),
              "BALLOON_CHANGE at most one a second (gaps %r)" % gaps)
        check(evs[-1]["data"] == {"actual": RAM}, "last BALLOON_CHANGE tells all of RAM")
        q.cmd("balloon", {"value": RAM - 4096})  # the probe's signal to finish
        vm.wait_serial("PROBE PASS balloon", 120)
        check(vm.wait_exit() == 1, "probe passed (debug-exit status 1)")
    finally:
        vm.stop()
    return verdict(failures)


if __name__ == "__main__":
    sys.exit(main())
