#!/usr/bin/env python3
"""vCPU hot-plug over QMP: query-hotpluggable-cpus, device_add / device_del
of CPUs and their errors as QEMU 7.2 -M pc gives them (docs/hotplug.md).

usage: test_qmp_cpuhp.py [--vmm kvmlite|qemu] VMM_BINARY PROBE_ELF

The probe runs its `qmp` test (power button) with -smp 1,maxcpus=3 -cpu
qemu64.  Checked, the same on QEMU 7.2 (--vmm qemu): query-hotpluggable-cpus
lists the three slots highest first, with type qemu64-x86_64-cpu,
vcpus-count 1, props socket-id/core-id/thread-id and a qom-path for the boot
CPU only; device_add errors: the boot CPU's occupied slot, a core-id and a
socket-id out of range, a missing thread-id, an unknown property, another
CPU type; device_add of core 1 succeeds: its slot gets qom-path
/machine/peripheral/c1, query-cpus-fast lists two CPUs (c1 at that path), the same slot again
is refused, a duplicate id is refused; device_del of the boot CPU is refused.
kvmlite only (QEMU refuses CPU unplug until the guest's firmware switched
its CPU hot-plug to the modern interface, which the probe's does not): a
device_del of c1 is accepted, no DEVICE_DELETED comes while the guest does not
eject, a second device_del says the unplug is in progress.  Finally the guest
still reacts to system_powerdown.
Exit status 0 pass, 1 fail, 77 skip.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qmplib  # noqa: E402
from qmplib import QMP, VMM, QMPError, check  # noqa: E402

T = "qemu64-x86_64-cpu"


def cpu(core, socket=0, thread=0, **kw):
    a = {"driver": T, "socket-id": socket, "core-id": core, "thread-id": thread}
    a.update(kw)
    return a


ERRORS = [
    (cpu(0, id="c1"), "CPU[0] with APIC ID 0 exists"),
    (cpu(5, id="c1"), "Invalid CPU core-id: 5 must be in range 0:2"),
    (cpu(1, socket=1, id="c1"), "Invalid CPU socket-id: 1 must be in range 0:0"),
    ({"driver": T, "socket-id": 0, "core-id": 1, "id": "c1"}, "CPU thread-id is not set"),
    (cpu(1, id="c1", foo=1), "Property 'qemu64-x86_64-cpu.foo' not found"),
    (dict(cpu(1, id="c1"), driver="max-x86_64-cpu"),
     "Invalid CPU type, expected cpu type: 'qemu64-x86_64-cpu'"),
]


def err(q, cmd, args):
    r = q.cmd_raw(cmd, args)
    return r.get("error", {"class": None, "desc": "(succeeded: %r)" % r.get("return")})


def slots(q):
    return q.cmd("query-hotpluggable-cpus")


def want_slot(core, path=None):
    s = {"props": {"core-id": core, "thread-id": 0, "socket-id": 0}, "vcpus-count": 1,
         "type": T}
    if path:
        s["qom-path"] = path
    return s


def main():
    flavour, binary, probe, status = qmplib.main_args(__doc__, sys.argv[1:])
    if status is not None:
        return status
    extra = ["-smp", "1,maxcpus=3"]
    cmdline = "wait=120"
    if flavour == "qemu":
        extra += ["-M", "pc"]
        cmdline += " s5=0"
    else:
        extra += ["-cpu", "qemu64"]
    vm = VMM(flavour, binary, probe, "qmp", extra=extra, cmdline=cmdline, paused=False)
    try:
        q = QMP(vm.sock)
        q.cmd("qmp_capabilities")
        vm.wait_serial("PROBE READY", 120)
        boot = "/machine/unattached/device[0]"
        s = slots(q)
        check(s == [want_slot(2), want_slot(1), want_slot(0, boot)],
              "query-hotpluggable-cpus at start: %r" % s)
        for args, desc in ERRORS:
            e = err(q, "device_add", args)
            check(e["class"] == "GenericError" and e["desc"] == desc,
                  "device_add %r: %r" % (args, e))
        r = q.cmd_raw("device_add", cpu(1, id="c1"))
        check(r.get("return") == {}, "device_add core 1 id c1: %r" % r)
        s = slots(q)
        check(s == [want_slot(2), want_slot(1, "/machine/peripheral/c1"), want_slot(0, boot)],
              "query-hotpluggable-cpus after the plug: %r" % s)
        cpus = sorted((c["cpu-index"], c["qom-path"]) for c in q.cmd("query-cpus-fast"))
        check(cpus == [(0, boot), (1, "/machine/peripheral/c1")],
              "query-cpus-fast lists CPUs 0 and 1 with their QOM paths: %r" % cpus)
        e = err(q, "device_add", cpu(1, id="c2"))
        check(e == {"class": "GenericError", "desc": "CPU[1] with APIC ID 1 exists"},
              "device_add of the plugged slot again: %r" % e)
        e = err(q, "device_add", cpu(2, id="c1"))
        check(e["class"] == "GenericError" and e["desc"] == "Duplicate device ID 'c1'",
              "device_add with the id c1 again: %r" % e)
        e = err(q, "device_del", {"id": boot})
        check(e == {"class": "GenericError", "desc": "Boot CPU is unpluggable"},
              "device_del of the boot CPU: %r" % e)
        if flavour != "qemu":
            r = q.cmd_raw("device_del", {"id": "c1"})
            check(r.get("return") == {}, "device_del c1 accepted: %r" % r)
            e = err(q, "device_del", {"id": "c1"})
            check(e == {"class": "GenericError",
                        "desc": "Device c1 is already in the process of unplug"},
                  "device_del c1 again: %r" % e)
            s = slots(q)
            check(s[1].get("qom-path") == "/machine/peripheral/c1",
                  "c1 stays while the guest does not eject: %r" % s)
        q.cmd("system_powerdown")
        vm.wait_serial("qmp: power button", 120)
        ev = q.wait_event("SHUTDOWN", 60)
        check(ev["data"]["guest"] is True, "the guest still powers off: %r" % ev["data"])
        check(not [e for e in q.events if e.get("event") == "DEVICE_DELETED"],
              "no DEVICE_DELETED without the guest's eject: %r" % q.events)
    except QMPError as e:
        check(False, "%s; serial %r; stderr %s" % (e, vm.lines[-6:], vm.stderr_text()[-600:]))
    finally:
        vm.stop()
    return qmplib.verdict(qmplib.failures)


if __name__ == "__main__":
    sys.exit(main())
