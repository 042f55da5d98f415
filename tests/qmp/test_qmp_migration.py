#!/usr/bin/env python3
"""QMP migration commands: errors and reply shapes (QEMU 7.2 schema).

usage: test_qmp_migration.py [--vmm kvmlite|qemu] VMM_BINARY PROBE_ELF

(a) a running guest (test=migrate): query-migrate before any migration is
    {}; query-migrate-parameters / -capabilities shapes and defaults
    (downtime-limit 300, max-bandwidth 134217728, events off);
    migrate-set-parameters reads back, refuses an out-of-range
    downtime-limit; migrate-set-capabilities refuses an unknown
    capability; migrate refuses an unknown protocol, exec: (kvmlite), blk;
    migrate-incoming without -incoming is refused; migrate_cancel without a
    migration is a no-op; a migration to a unix socket nobody listens on
    ends 'failed' with an error-desc naming the path and the guest runs
    on; a file: migration ends 'completed' with QEMU's ram fields, the
    source in 'postmigrate'.
(b) -incoming defer: query-status 'inmigrate'; migrate from the guest is
    refused; migrate-incoming starts listening; a second migrate-incoming
    is refused; the source of (a)'s shape migrates into it and it runs.
(c) kvmlite: (a)'s file with one bit of vcpu/0's CPUID table (leaf 7.0
    EBX) flipped and the section's CRC-32 made good again: -incoming file:
    refuses it, exit 1, naming the leaf and register.
Exit status 0 pass, 1 fail, 77 skip.
"""
import os
import shutil
import struct
import sys
import tempfile
import time
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qmplib  # noqa: E402
from qmplib import QMP, VMM, check, check_shape, failures  # noqa: E402

MIG_STATUS = ("enum", {"none", "setup", "cancelling", "cancelled", "active", "postcopy-active",
                       "postcopy-paused", "postcopy-recover", "completed", "failed", "colo",
                       "pre-switchover", "device", "wait-unplug"})
MIG_STATS = {"transferred": int, "remaining": int, "total": int, "duplicate": int,
             "skipped": int, "normal": int, "normal-bytes": int, "dirty-pages-rate": int,
             "mbps": (float, int), "dirty-sync-count": int, "postcopy-requests": int,
             "page-size": int, "multifd-bytes": int, "pages-per-second": int,
             "precopy-bytes?": int, "downtime-bytes?": int, "postcopy-bytes?": int,
             "dirty-sync-missed-zero-copy?": int}
MIG_INFO = {"status?": MIG_STATUS, "ram?": MIG_STATS, "total-time?": int, "downtime?": int,
            "expected-downtime?": int, "setup-time?": int, "error-desc?": str,
            "blocked?": bool, "blocked-reasons?": ("list", str), "disk?": "any",
            "xbzrle-cache?": "any", "vfio?": "any", "socket-address?": "any",
            "cpu-throttle-percentage?": int, "postcopy-blocktime?": int,
            "postcopy-vcpu-blocktime?": "any", "compression?": "any",
            "dirty-limit-throttle-time-per-round?": int, "dirty-limit-ring-full-time?": int}


def wait_done(q, timeout=30):
    deadline = time.monotonic() + timeout
    while True:
        r = q.cmd("query-migrate")
        if r.get("status") in ("completed", "failed", "cancelled") or time.monotonic() > deadline:
            return r
        time.sleep(0.02)


def err_of(q, name, args=None):
    r = q.cmd_raw(name, args)
    return r.get("error", {}).get("desc", "") if "error" in r else None


def running_guest(flavour, binary, probe, tmp):
    vm = VMM(flavour, binary, probe, "migrate", paused=False)
    print("(a) %s" % " ".join(vm.cmd), flush=True)
    try:
        q = QMP(vm.sock)
        q.cmd("qmp_capabilities")
        vm.wait_serial("MIG 0 3", timeout=20)
        check(q.cmd("query-migrate") == {}, "query-migrate before any migration is {}")
        p = q.cmd("query-migrate-parameters")
        check(p.get("downtime-limit") == 300 and p.get("max-bandwidth") == 134217728,
              "parameters: downtime-limit 300, max-bandwidth 128 MiB/s (%r)" %
              {k: p.get(k) for k in ("downtime-limit", "max-bandwidth")})
        caps = {c["capability"]: c["state"] for c in q.cmd("query-migrate-capabilities")}
        check(caps.get("events") is False and caps.get("auto-converge") is False
              and "x-ignore-shared" in caps, "capabilities events/auto-converge off: %r" % caps)
        q.cmd("migrate-set-parameters", {"downtime-limit": 100, "max-bandwidth": 1 << 30})
        p = q.cmd("query-migrate-parameters")
        check(p["downtime-limit"] == 100 and p["max-bandwidth"] == 1 << 30,
              "migrate-set-parameters reads back")
        e = err_of(q, "migrate-set-parameters", {"downtime-limit": 3000000})
        check(e is not None and "downtime_limit" in e, "downtime-limit 3000000 refused: %r" % e)
        e = err_of(q, "migrate-set-capabilities",
                   {"capabilities": [{"capability": "no-such-cap", "state": True}]})
        check(e is not None and "no-such-cap" in e, "an unknown capability refused: %r" % e)
        e = err_of(q, "migrate", {"uri": "bogus:1"})
        check(e is not None and "bogus:1" in e, "unknown protocol refused: %r" % e)
        if flavour == "kvmlite":
            e = err_of(q, "migrate", {"uri": "exec:cat > /dev/null"})
            check(e is not None and "exec:" in e and "-sandbox off" in e,
                  "exec: under the sandbox refused naming -sandbox off: %r" % e)
            e = err_of(q, "migrate", {"uri": "file:" + os.path.join(tmp, "x"), "blk": True})
            check(e is not None and "blk" in e, "blk=true refused: %r" % e)
        e = err_of(q, "migrate-incoming", {"uri": "unix:" + os.path.join(tmp, "in.sock")})
        check(e is not None and "-incoming" in e, "migrate-incoming without -incoming: %r" % e)
        check(err_of(q, "migrate_cancel") is None, "migrate_cancel with nothing to cancel: ok")
        nowhere = os.path.join(tmp, "nobody.sock")
        check(err_of(q, "migrate", {"uri": "unix:" + nowhere}) is None, "migrate to nowhere accepted")
        r = wait_done(q)
        check_shape(r, MIG_INFO)
        check(r.get("status") == "failed" and nowhere in r.get("error-desc", ""),
              "to nowhere: failed naming the path (%r)" % r.get("error-desc"))
        check(q.cmd("query-status")["status"] == "running", "the guest runs on after the failure")
        snap = os.path.join(tmp, "snap.bin")
        q.cmd("migrate", {"uri": "file:" + snap})
        r = wait_done(q)
        check_shape(r, MIG_INFO)
        check(r.get("status") == "completed", "file: migration completed (%r)" % r.get("status"))
        ram = r.get("ram", {})
        check(ram.get("total") == 64 << 20 and ram.get("transferred", 0) > 0 and
              ram.get("duplicate", 0) > 0, "ram: total 64 MiB, transferred, duplicate (%r)" %
              {k: ram.get(k) for k in ("total", "transferred", "duplicate", "normal")})
        check(all(k in r for k in ("total-time", "downtime", "setup-time")),
              "total-time, downtime, setup-time present")
        check(q.cmd("query-status")["status"] == "postmigrate", "source in postmigrate")
        q.close()
    finally:
        vm.stop()
    return snap


def vcpu0_record(data):
    """(payload offset, length) of the vcpu/0 section record: its name as
    the stream writes strings, version, length, payload, CRC-32 of it."""
    name = b"vcpu/0"
    tag = struct.pack("<I", len(name)) + name
    at = data.find(tag)
    while at >= 0:
        p = at + len(tag)
        if p + 8 <= len(data):
            ver, n = struct.unpack_from("<II", data, p)
            end = p + 8 + n
            if end + 4 <= len(data) and \
                    struct.unpack_from("<I", data, end)[0] == zlib.crc32(data[p + 8:end]):
                return p + 8, n
        at = data.find(tag, at + 1)
    return None


def cpuid_refused(flavour, binary, probe, tmp, snap):
    data = bytearray(open(snap, "rb").read())
    rec = vcpu0_record(data)
    check(rec is not None, "(c) the vcpu/0 section record found in the file")
    if rec is None:
        return
    off, n = rec
    nent = struct.unpack_from("<I", data, off)[0]
    leaf = None
    for i in range(min(nent, (n - 4) // 28)):
        e = off + 4 + 28 * i
        fn, idx = struct.unpack_from("<II", data, e)
        if (fn, idx) == (7, 0):
            leaf = e
    check(leaf is not None, "(c) leaf 7.0 in vcpu/0's CPUID table (%d entries)" % nent)
    if leaf is None:
        return
    struct.pack_into("<I", data, leaf + 16, struct.unpack_from("<I", data, leaf + 16)[0] ^ 1)
    struct.pack_into("<I", data, off + n, zlib.crc32(bytes(data[off:off + n])))
    bad = os.path.join(tmp, "cpuid-flipped.bin")
    open(bad, "wb").write(data)
    vm = VMM(flavour, binary, probe, "migrate", paused=False, extra=["-incoming", "file:" + bad])
    print("(c) %s" % " ".join(vm.cmd), flush=True)
    try:
        rc = vm.wait_exit()
        vm.ethread.join(5)
        err = vm.stderr_text()
        check(rc == 1 and "CPUID differs from the source's: leaf 0x7.0 EBX" in err,
              "a flipped CPUID bit refused, naming leaf 7.0 EBX (exit %r: %r)" %
              (rc, err.strip()[-300:]))
    finally:
        vm.stop()


def deferred(flavour, binary, probe, tmp):
    dst = VMM(flavour, binary, probe, "migrate", paused=False, extra=["-incoming", "defer"])
    src = VMM(flavour, binary, probe, "migrate", paused=False)
    print("(b) %s" % " ".join(dst.cmd), flush=True)
    try:
        qd = QMP(dst.sock)
        qd.cmd("qmp_capabilities")
        check(qd.cmd("query-status")["status"] == "inmigrate", "-incoming defer: inmigrate")
        e = err_of(qd, "migrate", {"uri": "file:" + os.path.join(tmp, "y")})
        check(e is not None, "migrate while waiting for an incoming one refused: %r" % e)
        sock = os.path.join(tmp, "defer.sock")
        qd.cmd("migrate-incoming", {"uri": "unix:" + sock})
        e = err_of(qd, "migrate-incoming", {"uri": "unix:" + sock + "2"})
        check(e is not None, "a second migrate-incoming refused: %r" % e)
        qs = QMP(src.sock)
        qs.cmd("qmp_capabilities")
        src.wait_serial("MIG 0 3", timeout=20)
        deadline = time.monotonic() + 10
        while not os.path.exists(sock) and time.monotonic() < deadline:
            time.sleep(0.02)
        qs.cmd("migrate", {"uri": "unix:" + sock})
        r = wait_done(qs)
        check(r.get("status") == "completed", "migrated into the deferred destination (%r)" %
              r.get("error-desc"))
        deadline = time.monotonic() + 10
        st = None
        while time.monotonic() < deadline:
            st = qd.cmd("query-status")["status"]
            if st == "running":
                break
            time.sleep(0.05)
        check(st == "running", "the destination runs (%r)" % st)
        qs.close()
        qd.close()
    finally:
        src.stop()
        dst.stop()


def main():
    flavour, binary, probe, status = qmplib.main_args(__doc__, sys.argv[1:])
    if status is not None:
        return status
    tmp = tempfile.mkdtemp(prefix="klqmpmig-")
    try:
        snap = running_guest(flavour, binary, probe, tmp)
        deferred(flavour, binary, probe, tmp)
        if flavour == "kvmlite":
            cpuid_refused(flavour, binary, probe, tmp, snap)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return qmplib.verdict(failures)


if __name__ == "__main__":
    sys.exit(main())
