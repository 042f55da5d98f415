#!/usr/bin/env python3
"""Run the same QMP conversation against kvmlite and QEMU 7.2 (microvm) with
the probe guest, and diff the reply *shapes* (member names and JSON types;
values are ignored except error classes/texts, which are compared too).

usage: side-by-side.py [-v] KVMLITE_BINARY PROBE_ELF [QEMU_BINARY]

QEMU: qemu-system-x86_64 -enable-kvm -M microvm -cpu qemu64 -S -nographic
-nodefaults -qmp unix:... with the probe (test=qmp) on -serial stdio.
Differences listed in KNOWN (documented in docs/qmp.md) are reported but
tolerated; exit status 1 if any other difference shows up, 77 if /dev/kvm
or QEMU is missing.
"""
import json
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qmplib  # noqa: E402
from qmplib import QMP, VMM, shape_of  # noqa: E402

DEVICE = {"kvmlite": "virtio-blk-pci", "qemu": "virtio-blk-device"}

# (label, raw message or None for the greeting, events to wait for after it)
CONVERSATION = [
    ("greeting", None, []),
    ("before-negotiation", '{"execute": "query-status", "id": 1}', []),
    ("qmp_capabilities", '{"execute": "qmp_capabilities", "id": "x"}', []),
    ("caps-again", '{"execute": "qmp_capabilities"}', []),
    ("query-version", '{"execute": "query-version"}', []),
    ("query-name", '{"execute": "query-name"}', []),
    ("query-uuid", '{"execute": "query-uuid"}', []),
    ("query-kvm", '{"execute": "query-kvm"}', []),
    ("query-status", '{"execute": "query-status"}', []),
    ("query-cpus-fast", '{"execute": "query-cpus-fast"}', []),
    ("query-block", '{"execute": "query-block"}', []),
    ("query-blockstats", '{"execute": "query-blockstats"}', []),
    ("query-chardev", '{"execute": "query-chardev"}', []),
    ("query-commands", '{"execute": "query-commands"}', []),
    ("hmp-info-status", '{"execute": "human-monitor-command", "arguments": {"command-line": "info status"}}', []),
    ("hmp-info-cpus", '{"execute": "human-monitor-command", "arguments": {"command-line": "info cpus"}}', []),
    ("hmp-unknown", '{"execute": "human-monitor-command", "arguments": {"command-line": "nope"}}', []),
    ("err-unknown-command", '{"execute": "no-such-command", "id": [1]}', []),
    ("err-not-object", '[1, 2]', []),
    ("err-no-execute", '{"id": 5}', []),
    ("err-execute-type", '{"execute": 5}', []),
    ("err-arguments-type", '{"execute": "query-status", "arguments": []}', []),
    ("err-extra-member", '{"execute": "query-status", "bogus": 1}', []),
    ("err-unexpected-arg", '{"execute": "query-status", "arguments": {"x": 1}}', []),
    ("err-missing-arg", '{"execute": "human-monitor-command", "arguments": {}}', []),
    ("err-arg-type", '{"execute": "human-monitor-command", "arguments": {"command-line": 1}}', []),
    ("err-json", '{"execute": tru}', []),
    ("err-stray-close", '}', []),
    ("cont", '{"execute": "cont"}', ["RESUME"]),
    ("query-status-running", '{"execute": "query-status"}', []),
    ("stop", '{"execute": "stop"}', ["STOP"]),
    ("query-status-paused", '{"execute": "query-status"}', []),
    ("cont-again", '{"execute": "cont"}', ["RESUME"]),
    ("system_reset", '{"execute": "system_reset"}', ["RESET"]),
    ("system_powerdown", '{"execute": "system_powerdown"}', ["POWERDOWN"]),
    ("quit", '{"execute": "quit", "id": "bye"}', ["SHUTDOWN"]),
]

# Differences we know about and accept (see docs/qmp.md, "Differences").
KNOWN = {
    "greeting": "capabilities [] (kvmlite has no out-of-band execution) vs [\"oob\"]",
    "err-json": "JSON syntax error texts come from json-glib (same class and "
                "'JSON parse error, ' prefix)",
}


def converse(vm):
    out = {}
    q = QMP(vm.sock, timeout=60)
    out["greeting"] = {"reply": q.greeting, "events": []}
    vm.serial_start = 0
    for label, msg, evs in CONVERSATION[1:]:
        q.send_raw(msg)
        r = q.response()
        got = []
        for e in evs:
            got.append(q.wait_event(e, 60))
        if label == "cont":
            vm.wait_serial("PROBE READY", 120)
        out[label] = {"reply": r, "events": got}
    try:
        vm.wait_exit(20)
    finally:
        q.close()
    return out


def strip(rec):
    """Shape of reply and events; error texts kept (they are part of the
    protocol users match on)."""
    r = rec["reply"]
    s = {"reply": shape_of(r), "events": [shape_of(e) for e in rec["events"]]}
    if "error" in r:
        s["error"] = r["error"]
    s["event-data"] = [e.get("data") for e in rec["events"]]
    return s


def main():
    args = sys.argv[1:]
    verbose = False
    if args[:1] == ["-v"]:
        verbose, args = True, args[1:]
    if len(args) not in (2, 3):
        print(__doc__)
        return 2
    kvmlite, probe = args[:2]
    qemu = args[2] if len(args) == 3 else shutil.which("qemu-system-x86_64")
    why = qmplib.kvm_usable()
    if why:
        print("SKIP: %s" % why)
        return qmplib.SKIP
    if not qemu:
        print("SKIP: qemu-system-x86_64 not found")
        return qmplib.SKIP
    results = {}
    import tempfile
    tmp = tempfile.mkdtemp(prefix="klsbs-")
    img = os.path.join(tmp, "disk.img")
    with open(img, "wb") as f:
        f.truncate(8 << 20)
    for flavour, binary in (("kvmlite", kvmlite), ("qemu", qemu)):
        extra = ["-drive", "file=%s,format=raw,if=none,id=drive0" % img,
                 "-device", "%s,drive=drive0" % DEVICE[flavour]]
        vm = VMM(flavour, binary, probe, "qmp", cmdline="wait=300", extra=extra)
        print("%s: %s" % (flavour, " ".join(vm.cmd)), flush=True)
        try:
            results[flavour] = converse(vm)
        except (qmplib.QMPError, OSError, ValueError) as e:
            print("%s: conversation aborted: %s; stderr: %s" % (flavour, e, vm.stderr_text()[-1000:]))
            return 1
        finally:
            vm.stop()
    shutil.rmtree(tmp, ignore_errors=True)
    unexpected = 0
    for label, _, _ in CONVERSATION:
        k = strip(results["kvmlite"][label])
        q = strip(results["qemu"][label])
        if k == q:
            print("same      %-22s %s" % (label, json.dumps(k["reply"])[:110]))
            continue
        tag = "known" if label in KNOWN else "DIFFERENT"
        if label not in KNOWN:
            unexpected += 1
        print("%-9s %-22s %s" % (tag, label, KNOWN.get(label, "")))
        if verbose or label not in KNOWN:
            print("    kvmlite: %s" % json.dumps(k))
            print("    qemu:    %s" % json.dumps(q))
    print("%d unexpected difference(s)" % unexpected)
    return 1 if unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
