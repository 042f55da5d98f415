#!/usr/bin/env python3
"""QMP socket modes end-to-end, with the probe guest.

usage: test_qmp_sockmodes.py [--vmm kvmlite|qemu] VMM_BINARY PROBE_ELF

(a) -qmp unix:P,server=on (wait=on, QEMU's default): the VMM prints
    "... waiting for connection on: disconnected:unix:P,server=on" on stderr
    and the guest (test=hello, no -S) does not run until a client connects;
    that client gets the greeting, negotiates, and the guest then prints
    "PROBE PASS hello" and the VMM exits as usual (isa-debug-exit: 1).
(b) -qmp unix:P (client mode, server=off): the test listens on P, the VMM
    connects at start-up and sends the greeting; negotiation, query-status
    (prelaunch, -S), query-chardev ("unix:P", no ",server=on"), quit; P is
    not unlinked by the VMM.
(c) client mode to a socket nobody listens on: start-up fails with a
    one-line error naming the path, non-zero exit.

--vmm qemu runs the same against qemu-system-x86_64 (QEMU prints "info:
QEMU waiting for connection on: ..." and "Failed to connect to 'P': ..."; the
checks use what both print).  Exit status 0 pass, 1 fail, 77 skip.
"""
import os
import shutil
import socket
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qmplib  # noqa: E402
from qmplib import QMP, VMM, check, check_shape, failures  # noqa: E402


def until(pred, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return pred()


def wait_on(flavour, binary, probe):
    d = tempfile.mkdtemp(prefix="klqmpw-")
    path = os.path.join(d, "w.sock")
    vm = VMM(flavour, binary, probe, "hello", paused=False,
             qmp_args="unix:%s,server=on" % path)
    print("(a) wait=on: %s" % " ".join(vm.cmd), flush=True)
    want = "waiting for connection on: disconnected:unix:%s,server=on" % path
    try:
        until(lambda: want in vm.stderr_text() or vm.proc.poll() is not None, 20)
        check(want in vm.stderr_text(), "stderr announces the wait: %r" % vm.stderr_text().strip())
        if flavour == "kvmlite":
            check(vm.stderr_text().strip() == "kvmlite: " + want,
                  "the waiting line is exactly 'kvmlite: %s'" % want)
        time.sleep(1.5)
        check(vm.proc.poll() is None, "VMM still waiting after 1.5 s (status %r)" % vm.proc.poll())
        with vm.cv:
            early = list(vm.lines)
        check(not any("PROBE" in l or "hello" in l for l in early),
              "the guest did not run before a client connected: %r" % early[-4:])
        q = QMP(path)
        check(not check_shape(q.greeting, qmplib.GREETING), "greeting %r" % q.greeting)
        check(q.cmd_raw("qmp_capabilities") == {"return": {}}, "qmp_capabilities")
        vm.wait_serial("PROBE PASS hello", 30)
        check(True, "the guest ran after the connection")
        rc = vm.wait_exit(20)
        check(rc == 1, "VMM exited as for a normal run (isa-debug-exit status 1, got %r)" % rc)
        q.close()
    except (qmplib.QMPError, OSError, ValueError) as e:
        check(False, "(a) aborted: %s" % e)
    finally:
        if failures:
            print("serial tail: %s" % vm.lines[-10:])
            print("stderr: %s" % vm.stderr_text()[-2000:])
        vm.stop()
        shutil.rmtree(d, ignore_errors=True)


def client_mode(flavour, binary, probe):
    d = tempfile.mkdtemp(prefix="klqmpc-")
    path = os.path.join(d, "peer.sock")
    lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    lsock.bind(path)
    lsock.listen(1)
    lsock.settimeout(20)
    vm = VMM(flavour, binary, probe, "hello", qmp_args="unix:%s" % path)
    print("(b) client mode: %s" % " ".join(vm.cmd), flush=True)
    try:
        conn, _ = lsock.accept()
        q = QMP(None, sock=conn)
        check(not check_shape(q.greeting, qmplib.GREETING), "greeting %r" % q.greeting)
        check(q.cmd_raw("qmp_capabilities", id="c") == {"return": {}, "id": "c"},
              "qmp_capabilities")
        st = q.cmd_raw("query-status")
        ret = st.get("return")
        check(ret is not None and not check_shape(ret, qmplib.STATUS_INFO) and
              ret["status"] == "prelaunch" and ret["running"] is False,
              "query-status reply shape: %r" % st)
        cds = q.cmd("query-chardev")
        mine = [c for c in cds if c["label"] == "compat_monitor0"]
        # kvmlite names the configured address; QEMU 7.2 names the connected
        # socket's local address, which for a unix client is unnamed: "unix:"
        fname = "unix:%s" % path if flavour == "kvmlite" else "unix:"
        check(not check_shape(cds, qmplib.RETURNS["query-chardev"]) and len(mine) == 1 and
              mine[0]["filename"] == fname and mine[0]["frontend-open"],
              "query-chardev lists the client socket as %s: %r" % (fname, mine))
        check(q.cmd_raw("quit") == {"return": {}}, "quit")
        rc = vm.wait_exit(20)
        check(rc == 0, "VMM exited with status 0 after quit (got %r)" % rc)
        check(os.path.exists(path), "the peer's socket path was not unlinked")
        q.close()
    except (qmplib.QMPError, OSError, ValueError) as e:
        check(False, "(b) aborted: %s" % e)
    finally:
        if failures:
            print("stderr: %s" % vm.stderr_text()[-2000:])
        vm.stop()
        lsock.close()
        shutil.rmtree(d, ignore_errors=True)


def client_missing(flavour, binary, probe):
    d = tempfile.mkdtemp(prefix="klqmpm-")
    path = os.path.join(d, "nobody.sock")
    vm = VMM(flavour, binary, probe, "hello", qmp_args="unix:%s" % path)
    print("(c) client mode, nobody listening: %s" % " ".join(vm.cmd), flush=True)
    try:
        rc = vm.wait_exit(20)
        time.sleep(0.1)
        err = vm.stderr_text().strip()
        check(rc not in (None, 0) and rc < 128, "VMM exited with an error status (got %r)" % rc)
        check(len(err.splitlines()) == 1 and path in err,
              "one-line error naming the path: %r" % err)
        if flavour == "kvmlite":
            check(err == "kvmlite: -qmp 'unix:%s': cannot connect to %s: No such file or "
                  "directory" % (path, path), "exact message: %r" % err)
        check(not vm.lines, "no guest output: %r" % vm.lines[-3:])
    finally:
        vm.stop()
        shutil.rmtree(d, ignore_errors=True)


def main():
    flavour, binary, probe, status = qmplib.main_args(__doc__, sys.argv[1:])
    if status is not None:
        return status
    wait_on(flavour, binary, probe)
    client_mode(flavour, binary, probe)
    client_missing(flavour, binary, probe)
    return qmplib.verdict(failures)


if __name__ == "__main__":
    sys.exit(main())
