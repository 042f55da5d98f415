#!/usr/bin/env python3
"""virtio-serial end to end: the probe guest's `vserial` test
(tests/guest/t_virtio_serial.c) against

  -device virtio-serial-pci,id=vser0
  -device virtconsole,chardev=con0,id=console0,bus=vser0.0
  -device virtserialport,chardev=ch1,name=org.qemu.guest_agent.0,id=port1,bus=vser0.0
  -chardev socket,id=con0,path=C,server=on,wait=off
  -chardev socket,id=ch1,path=P,server=on,wait=off

The host connects to both sockets while the guest is paused (-S), then:
bytes both ways on the console and on the port, VSERPORT_CHANGE {port1,
open: true} when the guest opens the port, query-chardev's frontend-open
following the guest, the host's hang-up reaching the guest as PORT_OPEN 0
and the guest's close as VSERPORT_CHANGE open=false.  The guest also sends
hostile control messages (see the C file) that must be ignored.

With --mmio the same on -M microvm with virtio-serial-device (virtio-mmio;
the probe runs with transport=mmio).  QEMU then runs microvm with acpi=off
(its only way to announce the transports on the command line) and
virtio-mmio.force-legacy=false (its default is the legacy version 1).

usage: test_vserial.py [--mmio] [--vmm kvmlite|qemu] VMM_BINARY PROBE_ELF
Exit status 0 pass, 1 fail, 77 skip.
"""
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qmplib import QMP, VMM, check, failures, main_args, verdict  # noqa: E402


def connect(path, timeout=20):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    deadline = time.monotonic() + timeout
    while True:
        try:
            s.connect(path)
            return s
        except (FileNotFoundError, ConnectionRefusedError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def read_until(s, want, timeout=30):
    s.settimeout(1)
    got = b""
    deadline = time.monotonic() + timeout
    while want not in got and time.monotonic() < deadline:
        try:
            d = s.recv(4096)
        except socket.timeout:
            continue
        if not d:
            break
        got += d
    return got


def port_event(q, port_id, timeout=60):
    """Next VSERPORT_CHANGE of port_id (others are kept in seen)."""
    deadline = time.monotonic() + timeout
    while True:
        ev = q.wait_event("VSERPORT_CHANGE", timeout=max(0.1, deadline - time.monotonic()))
        seen.append(ev.get("data"))
        if ev.get("data", {}).get("id") == port_id:
            return ev.get("data")


seen = []


def frontend_open(q, label):
    for c in q.cmd("query-chardev"):
        if c["label"] == label:
            return c["frontend-open"]
    return None


def main():
    argv = sys.argv[1:]
    mmio = argv[:1] == ["--mmio"]
    if mmio:
        argv = argv[1:]
    flavour, binary, probe, status = main_args(__doc__, argv)
    if status is not None:
        return status
    import tempfile
    d = tempfile.mkdtemp(prefix="klvser-")
    con, port = os.path.join(d, "con.sock"), os.path.join(d, "port.sock")
    extra = ["-device", "virtio-serial-pci,id=vser0",
             "-device", "virtconsole,chardev=con0,id=console0,bus=vser0.0",
             "-device", "virtserialport,chardev=ch1,name=org.qemu.guest_agent.0,id=port1,"
                        "bus=vser0.0",
             "-chardev", "socket,id=con0,path=%s,server=on,wait=off" % con,
             "-chardev", "socket,id=ch1,path=%s,server=on,wait=off" % port]
    if mmio:
        extra[1] = "virtio-serial-device,id=vser0"
        if flavour == "qemu":
            extra += ["-M", "microvm,acpi=off", "-global", "virtio-mmio.force-legacy=false"]
        else:
            extra += ["-M", "microvm"]
    elif flavour == "qemu":  # modern-only, as kvmlite's (device id 0x1043)
        extra[1] += ",disable-legacy=on"
        extra += ["-M", "pc"]
    vm = VMM(flavour, binary, probe, "vserial", extra=extra,
             cmdline="transport=mmio" if mmio else "")
    print("vserial: %s" % " ".join(vm.cmd), flush=True)
    try:
        q = QMP(vm.sock)
        q.cmd("qmp_capabilities")
        cs, ps = connect(con), connect(port)
        time.sleep(0.3)  # the VMM accepts both before the guest runs
        check(frontend_open(q, "ch1") is False, "query-chardev: ch1 not open before the guest opens it")
        check(frontend_open(q, "con0") is True, "query-chardev: con0 (virtconsole) frontend-open")
        q.cmd("cont")
        ev = port_event(q, "port1")
        check(ev == {"id": "port1", "open": True},
              "VSERPORT_CHANGE when the guest opens the port: %r" % ev)
        vm.wait_serial("VSER READY", timeout=60)
        check(frontend_open(q, "ch1") is True, "query-chardev: ch1 frontend-open after the guest opened it")
        got = read_until(cs, b"console-hello")
        check(got == b"console-hello", "console output on the host: %r" % got)
        got = read_until(ps, b"port-hello")
        check(got == b"port-hello", "port output on the host: %r" % got)
        cs.sendall(b"ping-console")
        ps.sendall(b"ping-port")
        got = read_until(cs, b"got:ping-console")
        check(got == b"got:ping-console", "console: guest received and answered: %r" % got)
        got = read_until(ps, b"got:ping-port")
        check(got == b"got:ping-port", "port: guest received and answered: %r" % got)
        ps.close()  # host hang-up: PORT_OPEN 0 to the guest, which closes
        ev = port_event(q, "port1")
        check(ev == {"id": "port1", "open": False},
              "VSERPORT_CHANGE when the guest closes the port: %r" % ev)
        check({"id": "console0", "open": True} in seen,
              "VSERPORT_CHANGE for the console too (it has an id, as QEMU): %r" % seen)
        i = vm.wait_serial("PROBE ", timeout=60)
        check("PROBE PASS vserial" in vm.lines[i], "guest verdict: %r" % vm.lines[i])
        st = vm.wait_exit(20)
        check(st == 1, "VMM exit status 1 (isa-debug-exit pass), got %r" % st)
        cs.close()
    except Exception as e:  # noqa: BLE001
        check(False, "exception: %s" % e)
        print("serial: %s" % vm.lines[-10:])
        print("stderr: %s" % vm.stderr_text()[-2000:])
    finally:
        vm.stop()
        for p in (con, port):
            if os.path.exists(p):
                os.unlink(p)
        os.rmdir(d)
    return verdict(failures)


if __name__ == "__main__":
    sys.exit(main())
