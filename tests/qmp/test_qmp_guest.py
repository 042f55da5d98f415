#!/usr/bin/env python3
"""QMP end-to-end test with the probe guest (test=qmp).

usage: test_qmp_guest.py [--vmm kvmlite|qemu] VMM_BINARY PROBE_ELF

Phase 1 (-S, two QMP clients on one unix socket): greeting, negotiation,
query-* with reply shapes checked against the QEMU 7.2 schema, cont (RESUME
to both), stop/cont, system_reset (RESET to both; the probe reports its
second boot), system_powerdown (POWERDOWN; the probe sees PWRBTN_STS,
writes S5: SHUTDOWN guest=true reason=guest-shutdown to both; VMM exits 0).
Phase 2: quit (SHUTDOWN guest=false reason=host-qmp-quit; VMM exits 0).

--vmm qemu runs the same against qemu-system-x86_64 -M pc (PIIX4 PM1a block
at 0x600 set up by SeaBIOS, \\_S5 SLP_TYP 0), to validate the probe and the
test itself.  Exit status 0 pass, 1 fail, 77 skip.
"""
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qmplib  # noqa: E402
from qmplib import QMP, VMM, check, check_shape, failures  # noqa: E402


def shape(name, value, schema):
    errs = check_shape(value, schema)
    check(not errs, "%s shape%s" % (name, (": " + "; ".join(errs)) if errs else ""))


def reply(q, name, args=None):
    r = q.cmd_raw(name, args)
    if "return" not in r:
        check(False, "%s returned %r" % (name, r))
        return None
    shape(name, r["return"], qmplib.RETURNS[name])
    return r["return"]


def event(q, name, who, data=None, timeout=30):
    e = q.wait_event(name, timeout)
    shape("%s event (%s)" % (name, who), e, qmplib.EVENTS[name])
    if data is not None:
        check(e.get("data") == data, "%s event data (%s) %r == %r" % (name, who, e.get("data"), data))
    return e


def phase1(flavour, binary, probe):
    extra, cmdline = [], "wait=300"
    if flavour == "qemu":
        extra, cmdline = ["-M", "pc"], "wait=300 s5=0"
    vm = VMM(flavour, binary, probe, "qmp", extra=extra, cmdline=cmdline)
    print("phase 1: %s" % " ".join(vm.cmd), flush=True)
    try:
        a, b = QMP(vm.sock), QMP(vm.sock2)
        for who, q in (("A", a), ("B", b)):
            shape("greeting (%s)" % who, q.greeting, qmplib.GREETING)
        r = a.cmd_raw("query-status", id="early")
        check(r == {"error": {"class": "CommandNotFound", "desc": "Expecting capabilities "
                              "negotiation with 'qmp_capabilities'"}, "id": "early"},
              "command before negotiation refused: %r" % r)
        for who, q in (("A", a), ("B", b)):
            check(q.cmd_raw("qmp_capabilities", id=[who]) == {"return": {}, "id": [who]},
                  "qmp_capabilities (%s), id echoed" % who)
        st = reply(a, "query-status")
        check(st and st["status"] == "prelaunch" and not st["running"], "status prelaunch: %r" % st)
        reply(a, "query-version")
        kvm = reply(a, "query-kvm")
        check(kvm == {"enabled": True, "present": True}, "query-kvm %r" % kvm)
        reply(a, "query-name")
        reply(a, "query-uuid")
        cmds = reply(a, "query-commands") or []
        names = {c["name"] for c in cmds}
        missing = set(qmplib.RETURNS) - names
        check(not missing, "query-commands lists every tested command (missing %s)" % sorted(missing))
        reply(a, "query-chardev")
        reply(a, "query-block")
        reply(a, "query-blockstats")
        cpus = reply(b, "query-cpus-fast") or []
        check(len(cpus) == 1 and cpus[0]["cpu-index"] == 0 and cpus[0]["target"] == "x86_64",
              "one vCPU: %r" % cpus)
        if cpus:
            tid = cpus[0]["thread-id"]
            check(os.path.isdir("/proc/%d/task/%d" % (vm.proc.pid, tid)),
                  "thread-id %d is a thread of the VMM (pid %d)" % (tid, vm.proc.pid))
        hs = reply(a, "human-monitor-command", {"command-line": "info status"})
        check(hs == "VM status: paused (prelaunch)\r\n", "HMP info status %r" % hs)
        hc = reply(a, "human-monitor-command", {"command-line": "info cpus"})
        check(bool(hc) and re.fullmatch(r"\* CPU #0: thread_id=\d+\r\n", hc) is not None,
              "HMP info cpus %r" % hc)

        print("cont", flush=True)
        check(a.cmd_raw("cont") == {"return": {}}, "cont")
        event(a, "RESUME", "A")
        event(b, "RESUME", "B")
        st = reply(b, "query-status")
        check(st and st["status"] == "running" and st["running"], "status running: %r" % st)
        i = vm.wait_serial("PROBE READY boot=1", 120)
        check(True, "probe ready (boot 1)")

        print("stop / cont", flush=True)
        check(b.cmd_raw("stop") == {"return": {}}, "stop")
        event(a, "STOP", "A")
        event(b, "STOP", "B")
        st = reply(a, "query-status")
        check(st and st["status"] == "paused" and not st["running"], "status paused: %r" % st)
        hs = reply(a, "human-monitor-command", {"command-line": "info status"})
        check(hs == "VM status: paused\r\n", "HMP info status %r" % hs)
        check(a.cmd_raw("cont") == {"return": {}}, "cont")
        event(a, "RESUME", "A")
        event(b, "RESUME", "B")

        print("system_reset", flush=True)
        check(a.cmd_raw("system_reset") == {"return": {}}, "system_reset")
        data = {"guest": False, "reason": "host-qmp-system-reset"}
        event(a, "RESET", "A", data)
        event(b, "RESET", "B", data)
        i = vm.wait_serial("qmp: boot 2 (reset detected)", 120, i + 1)
        check(True, "probe saw the reset")
        vm.wait_serial("PROBE READY boot=2", 60, i)
        st = reply(b, "query-status")
        check(st and st["status"] == "running", "status after reset: %r" % st)

        print("system_powerdown", flush=True)
        check(b.cmd_raw("system_powerdown") == {"return": {}}, "system_powerdown")
        event(a, "POWERDOWN", "A")
        event(b, "POWERDOWN", "B")
        j = vm.wait_serial("qmp: power button pressed", 120, i)
        m = re.search(r"sci=(\d+)", vm.lines[j])
        check(m is not None and int(m.group(1)) >= 1,
              "the power button raised the SCI (IRQ 9): %r" % vm.lines[j])
        data = {"guest": True, "reason": "guest-shutdown"}
        event(a, "SHUTDOWN", "A", data, 60)
        event(b, "SHUTDOWN", "B", data, 60)
        rc = vm.wait_exit(30)
        check(rc == 0, "VMM exited with status 0 after the guest powered off (got %r)" % rc)
        a.close()
        b.close()
    except (qmplib.QMPError, OSError, ValueError) as e:
        check(False, "phase 1 aborted: %s" % e)
    finally:
        if failures:
            print("serial tail: %s" % vm.lines[-10:])
            print("stderr: %s" % vm.stderr_text()[-2000:])
        vm.stop()


def phase2(flavour, binary, probe):
    vm = VMM(flavour, binary, probe, "qmp", cmdline="wait=300",
             extra=["-M", "pc"] if flavour == "qemu" else [])
    print("phase 2: %s" % " ".join(vm.cmd), flush=True)
    try:
        q = QMP(vm.sock)
        q.cmd("qmp_capabilities")
        q.cmd("cont")
        vm.wait_serial("PROBE READY", 120)
        r = q.cmd_raw("quit", id=99)
        check(r == {"return": {}, "id": 99}, "quit %r" % r)
        event(q, "SHUTDOWN", "quit", {"guest": False, "reason": "host-qmp-quit"})
        rc = vm.wait_exit(30)
        check(rc == 0, "VMM exited with status 0 after quit (got %r)" % rc)
    except (qmplib.QMPError, OSError, ValueError) as e:
        check(False, "phase 2 aborted: %s" % e)
    finally:
        if failures:
            print("stderr: %s" % vm.stderr_text()[-2000:])
        vm.stop()


def main():
    flavour, binary, probe, status = qmplib.main_args(__doc__, sys.argv[1:])
    if status is not None:
        return status
    phase1(flavour, binary, probe)
    phase2(flavour, binary, probe)
    return qmplib.verdict(failures)


if __name__ == "__main__":
    sys.exit(main())
