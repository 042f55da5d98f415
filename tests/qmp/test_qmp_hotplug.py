#!/usr/bin/env python3
"""QMP hot-plug commands: errors as QEMU 7.2 gives them, NICs plugged with
netdev_add back-ends, query-pci / qom-list, and the guest unaffected.

usage: test_qmp_hotplug.py [--vmm kvmlite|qemu] VMM_BINARY PROBE_ELF

The probe runs its `qmp` test (power button) with a cold-plugged
virtio-blk-pci disk0 at addr=3 on drive d0, a spare -drive if=none d1, and
an isa-debug-exit with id=dbg.  Checked (the same texts from QEMU 7.2 -M pc,
--vmm qemu): device_add with an unknown driver, without driver, with a bad
or duplicate id, an unknown bus, the occupied slot 3, a non-hot-pluggable
ISA device; device_del of an unknown id (DeviceNotFound) and of the ISA
device; netdev_add duplicate / without type; netdev_del of an unknown id;
qom-list of an unknown path (DeviceNotFound).  Errors whose text is
kvmlite's own (each must fail and name the missing thing): a missing or
unknown drive / netdev, a drive or netdev already in use.  Then netdev_add
user n1 / n2, device_add virtio-net-pci (n1, id nic1) and e1000 (n2, id
nic2) succeed: query-pci lists them with their qdev_id and class 0x200,
qom-list /machine/peripheral lists disk0, dbg, nic1, nic2 with their
types; a virtio-net-pci without id appears as /machine/peripheral-anon/
device[N] and device_del accepts that path.  Finally the guest still reacts to system_powerdown (its power
button line, then SHUTDOWN guest: true).
Exit status 0 pass, 1 fail, 77 skip.
"""
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qmplib  # noqa: E402
from qmplib import QMP, VMM, QMPError, check  # noqa: E402

SAME = [
    ({"driver": "nope"}, "'nope' is not a valid device model name"),
    ({}, "Parameter 'driver' is missing"),
    ({"driver": "virtio-blk-pci", "drive": "d1", "id": "x", "addr": "3"},
     "PCI: slot 3 function 0 not available for virtio-blk-pci, in use by virtio-blk-pci,id=disk0"),
    ({"driver": "virtio-blk-pci", "drive": "d1", "id": "disk0"}, "Duplicate device ID 'disk0'"),
    ({"driver": "virtio-blk-pci", "drive": "d1", "id": "1bad"},
     "Parameter 'id' expects an identifier"),
    ({"driver": "virtio-blk-pci", "drive": "d1", "id": "x", "bus": "nobus"},
     "Bus 'nobus' not found"),
    ({"driver": "isa-debug-exit", "id": "x"}, "Bus 'isa.0' does not support hotplugging"),
]
# kvmlite's own wording: must fail and name the culprit
OWN = [
    ({"driver": "virtio-blk-pci", "drive": "nodrive", "id": "x"}, "nodrive"),
    ({"driver": "virtio-blk-pci", "id": "x"}, "drive"),
    ({"driver": "virtio-blk-pci", "drive": "d0", "id": "x"}, "d0"),
    ({"driver": "virtio-net-pci", "netdev": "nonet", "id": "x"}, "nonet"),
    ({"driver": "e1000", "netdev": "nonet", "id": "x"}, "nonet"),
]


def err(q, cmd, args):
    r = q.cmd_raw(cmd, args)
    return r.get("error", {"class": None, "desc": "(succeeded: %r)" % r.get("return")})


def main():
    flavour, binary, probe, status = qmplib.main_args(__doc__, sys.argv[1:])
    if status is not None:
        return status
    tmp = tempfile.mkdtemp(prefix="kl-qmphp-")
    imgs = [os.path.join(tmp, "d%d.img" % i) for i in range(2)]
    for p in imgs:
        with open(p, "wb") as f:
            f.truncate(1 << 20)
    extra = ["-drive", "file=%s,if=none,id=d0,format=raw" % imgs[0],
             "-device", "virtio-blk-pci,drive=d0,id=disk0,addr=3",
             "-drive", "file=%s,if=none,id=d1,format=raw" % imgs[1],
             "-device", "isa-debug-exit,iobase=0x500,iosize=1,id=dbg"]
    cmdline = "wait=120"
    if flavour == "qemu":
        extra += ["-M", "pc"]
        cmdline += " s5=0"
    vm = VMM(flavour, binary, probe, "qmp", extra=extra, cmdline=cmdline, paused=False)
    try:
        q = QMP(vm.sock)
        q.cmd("qmp_capabilities")
        vm.wait_serial("PROBE READY", 120)
        for args, desc in SAME:
            e = err(q, "device_add", args)
            check(e["class"] == "GenericError" and e["desc"] == desc,
                  "device_add %r: %r" % (args, e))
        for args, word in OWN:
            e = err(q, "device_add", args)
            check(e["class"] == "GenericError" and word in e["desc"],
                  "device_add %r fails naming %r: %r" % (args, word, e))
        e = err(q, "device_del", {"id": "nope"})
        check(e == {"class": "DeviceNotFound", "desc": "Device 'nope' not found"},
              "device_del of an unknown id: %r" % e)
        e = err(q, "device_del", {"id": "dbg"})
        check(e == {"class": "GenericError", "desc": "Bus 'isa.0' does not support hotplugging"},
              "device_del of the ISA device: %r" % e)
        check(q.cmd_raw("netdev_add", {"type": "user", "id": "n1"}).get("return") == {},
              "netdev_add user n1")
        e = err(q, "netdev_add", {"type": "user", "id": "n1"})
        check(e == {"class": "GenericError", "desc": "Duplicate ID 'n1'"}, "netdev_add again: %r" % e)
        e = err(q, "netdev_add", {"id": "n3"})
        check(e == {"class": "GenericError", "desc": "Parameter 'type' is missing"},
              "netdev_add without type: %r" % e)
        e = err(q, "netdev_add", {"type": "nope", "id": "n3"})
        check(e["class"] == "GenericError" and "nope" in e["desc"], "netdev_add type nope: %r" % e)
        e = err(q, "netdev_del", {"id": "nope"})
        check(e == {"class": "DeviceNotFound", "desc": "Device 'nope' not found"},
              "netdev_del of an unknown id: %r" % e)
        e = err(q, "qom-list", {"path": "/machine/nope"})
        check(e == {"class": "DeviceNotFound", "desc": "Device '/machine/nope' not found"},
              "qom-list of an unknown path: %r" % e)
        check(q.cmd_raw("netdev_add", {"type": "user", "id": "n2"}).get("return") == {},
              "netdev_add user n2")
        r = q.cmd_raw("device_add", {"driver": "virtio-net-pci", "netdev": "n1", "id": "nic1"})
        check(r.get("return") == {}, "device_add virtio-net-pci,netdev=n1,id=nic1: %r" % r)
        e = err(q, "device_add", {"driver": "e1000", "netdev": "n1", "id": "x"})
        check(e["class"] == "GenericError" and "n1" in e["desc"],
              "device_add e1000 on n1 (in use) fails naming n1: %r" % e)
        r = q.cmd_raw("device_add", {"driver": "e1000", "netdev": "n2", "id": "nic2"})
        check(r.get("return") == {}, "device_add e1000,netdev=n2,id=nic2: %r" % r)
        devs = {d["qdev_id"]: d for d in q.cmd("query-pci")[0]["devices"]}
        for nid in ("nic1", "nic2"):
            d = devs.get(nid)
            check(d is not None and d["class_info"]["class"] == 0x200 and d["bus"] == 0 and
                  d["function"] == 0 and d["regions"], "query-pci lists %s: %r" % (nid, d))
        check(devs.get("disk0", {}).get("slot") == 3, "query-pci: disk0 in slot 3")
        check(devs.get("nic1", {}).get("id", {}).get("vendor") == 0x1af4 and
              devs.get("nic2", {}).get("id", {}).get("device") == 0x100e,
              "query-pci ids: virtio 1af4, e1000 8086:100e")
        per = {c["name"]: c["type"] for c in q.cmd("qom-list", {"path": "/machine/peripheral"})}
        want = {"type": "string", "disk0": "child<virtio-blk-pci>", "dbg": "child<isa-debug-exit>",
                "nic1": "child<virtio-net-pci>", "nic2": "child<e1000>"}
        check(per == want, "qom-list /machine/peripheral: %r" % per)
        # a device without id: listed under /machine/peripheral-anon, and
        # device_del takes its QOM path
        anon = "/machine/peripheral-anon"
        before = {c["name"] for c in q.cmd("qom-list", {"path": anon})}
        check(q.cmd_raw("netdev_add", {"type": "user", "id": "n3"}).get("return") == {},
              "netdev_add user n3")
        r = q.cmd_raw("device_add", {"driver": "virtio-net-pci", "netdev": "n3"})
        check(r.get("return") == {}, "device_add virtio-net-pci without id: %r" % r)
        after = {c["name"]: c["type"] for c in q.cmd("qom-list", {"path": anon})}
        new = [n for n in after if n not in before]
        if check(len(new) == 1 and after[new[0]] == "child<virtio-net-pci>" and
                 new[0].startswith("device["), "qom-list %s gains one device[N]: %r" % (anon, new)):
            r = q.cmd_raw("device_del", {"id": "%s/%s" % (anon, new[0])})
            check(r.get("return") == {}, "device_del by QOM path: %r" % r)
        e = err(q, "device_del", {"id": anon + "/device[99]"})
        check(e == {"class": "DeviceNotFound", "desc": "Device '%s/device[99]' not found" % anon},
              "device_del of an unknown QOM path: %r" % e)
        q.cmd("system_powerdown")
        vm.wait_serial("qmp: power button", 120)
        ev = q.wait_event("SHUTDOWN", 60)
        check(ev["data"]["guest"] is True, "the guest still powers off: %r" % ev["data"])
    except QMPError as e:
        check(False, "%s; serial %r; stderr %s" % (e, vm.lines[-6:], vm.stderr_text()[-600:]))
    finally:
        vm.stop()
        for p in imgs:
            os.unlink(p)
        os.rmdir(tmp)
    return qmplib.verdict(qmplib.failures)


if __name__ == "__main__":
    sys.exit(main())
