#!/usr/bin/env python3
"""The character devices of a libvirt 9.0 domain command line:

  -chardev socket,id=charmonitor,fd=N,server=on,wait=off    (an inherited
                                                            listening socket)
  -mon chardev=charmonitor,id=monitor,mode=control
  -chardev file,id=charserial0,path=LOG,append=on
  -device isa-serial,chardev=charserial0,id=serial0,index=0

QMP on the inherited socket (greeting, query-chardev: both chardevs with
frontend-open, the file one named "file" as QEMU), the guest's serial
output appended to what LOG already held, exit status of the probe's pass.

usage: test_libvirt_chardev.py [--vmm kvmlite|qemu] VMM_BINARY PROBE_ELF
Exit status 0 pass, 1 fail, 77 skip.
"""
import os
import shutil
import socket
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from qmplib import QMP, check, failures, main_args, verdict  # noqa: E402


def main():
    flavour, binary, probe, status = main_args(__doc__, sys.argv[1:])
    if status is not None:
        return status
    d = tempfile.mkdtemp(prefix="kllvchr-")
    log, path = os.path.join(d, "serial.log"), os.path.join(d, "mon.sock")
    with open(log, "w") as f:
        f.write("previous run\n")
    ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    ls.bind(path)
    ls.listen(1)
    fd = ls.fileno()
    cmd = [binary]
    if flavour == "qemu":
        cmd += ["-enable-kvm", "-cpu", "qemu64", "-M", "pc", "-display", "none"]
    cmd += ["-nodefaults", "-m", "64", "-kernel", probe, "-append", "test=hello", "-S",
            "-chardev", "socket,id=charmonitor,fd=%d,server=on,wait=off" % fd,
            "-mon", "chardev=charmonitor,id=monitor,mode=control",
            "-chardev", "file,id=charserial0,path=%s,append=on" % log,
            "-device", "isa-serial,chardev=charserial0,id=serial0,index=0",
            "-device", "isa-debug-exit,iobase=0xf4,iosize=4"]
    print("libvirt chardevs: %s" % " ".join(cmd), flush=True)
    proc = subprocess.Popen(cmd, pass_fds=(fd,), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    ls.close()  # the VMM holds the listening socket now
    try:
        q = QMP(path)
        check("QMP" in q.greeting, "greeting on the inherited socket")
        q.cmd("qmp_capabilities")
        cds = {c["label"]: c for c in q.cmd("query-chardev")}
        check(cds.get("charmonitor", {}).get("frontend-open") is True,
              "query-chardev: charmonitor frontend-open: %r" % cds.get("charmonitor"))
        check(cds.get("charserial0") == {"label": "charserial0", "filename": "file",
                                        "frontend-open": True},
              "query-chardev: charserial0: %r" % cds.get("charserial0"))
        q.cmd("cont")
        try:
            st = proc.wait(60)
        except subprocess.TimeoutExpired:
            st = None
        check(st == 1, "exit status 1 (the probe passed), got %r" % st)
        with open(log, errors="replace") as f:
            text = f.read()
        check(text.startswith("previous run\n"), "append=on kept the old contents: %r" % text[:40])
        check("PROBE PASS hello" in text, "the guest's serial output is in the file: %r"
              % text[-120:])
    except Exception as e:  # noqa: BLE001
        check(False, "exception: %s" % e)
    finally:
        if proc.poll() is None:
            proc.kill()
        out, err = proc.communicate()
        if err.strip():
            print("stderr: %s" % err.decode(errors="replace")[-1500:])
        shutil.rmtree(d, ignore_errors=True)
    return verdict(failures)


if __name__ == "__main__":
    sys.exit(main())
