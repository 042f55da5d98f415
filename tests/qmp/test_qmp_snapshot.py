#!/usr/bin/env python3
"""snapshot-save / snapshot-load / snapshot-delete jobs: the job flows and
QEMU 7.2's errors (migration/savevm.c, block/snapshot.c, job.c).

usage: test_qmp_snapshot.py [--vmm kvmlite|qemu] VMM_BINARY PROBE_ELF

A running probe guest (test=migrate) with a qcow2 node (q0), a second qcow2
node (q1) and a raw node (r0), none attached to a device:
 - a successful save: JOB_STATUS_CHANGE created, running, waiting, pending,
   concluded; query-jobs {id, type snapshot-save, status concluded,
   current-progress 1, total-progress 1}; the snapshot is listed with a
   vm-state-size > 0 on q0 (query-named-block-nodes) and 0 on q1;
 - a failing job: created, running, aborting, concluded, query-jobs carries
   the error: an unknown node ("No block device node 'nope'"), a raw node
   ("Device 'r0' is writable but does not support snapshots"), a tag that
   exists ("Snapshot 'snap1' already exists in one or more devices"), a
   vmstate node not in devices ("vmstate block device 'q1' does not
   exist"), a load of an absent tag ("Snapshot 'nope' does not exist in one
   or more devices"), a load of a disk-only snapshot (made by
   blockdev-snapshot-internal-sync: "This is a disk-only snapshot. Revert
   to it  offline using qemu-img", two spaces as QEMU 7.2); a failed load
   leaves the guest paused (QEMU stops it before loading);
 - command errors: an invalid job id ("Invalid job ID '1x'"), a job id in
   use ("Job ID 'ok1' already in use"), job-dismiss of an unknown job ("Job
   not found"), a device that is not a string;
 - job-dismiss: status null, gone from query-jobs;
 - snapshot-delete of snap1 on q0 and q1 concludes and removes it; of a tag
   nobody has concludes too (QEMU skips nodes without it).
Exit status 0 pass, 1 fail, 77 skip.
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qmplib  # noqa: E402
from qmplib import QMP, VMM, check, failures  # noqa: E402


def run_job(q, cmd, args, timeout=30):
    """Issue cmd; the job's statuses until concluded, and its query-jobs entry."""
    q.events.clear()
    r = q.cmd_raw(cmd, args)
    if "error" in r:
        return None, r["error"]
    jid = args["job-id"]
    seen = []
    deadline = time.monotonic() + timeout
    while not seen or seen[-1] != "concluded":
        e = q.wait_event("JOB_STATUS_CHANGE", timeout=max(0.1, deadline - time.monotonic()))
        if e["data"]["id"] == jid:
            seen.append(e["data"]["status"])
    info = [j for j in q.cmd("query-jobs") if j["id"] == jid]
    return seen, info[0] if info else None


def dismiss(q, jid):
    q.events.clear()
    q.cmd("job-dismiss", {"id": jid})
    e = q.wait_event("JOB_STATUS_CHANGE")
    return e["data"] == {"id": jid, "status": "null"}


def snapshots(q, node):
    for n in q.cmd("query-named-block-nodes"):
        if n.get("node-name") == node:
            return {s["name"]: s for s in n.get("image", {}).get("snapshots", [])}
    return {}


OK_SEQ = ["created", "running", "waiting", "pending", "concluded"]
FAIL_SEQ = ["created", "running", "aborting", "concluded"]


def failing(q, cmd, args, want, what):
    seen, info = run_job(q, cmd, args)
    check(seen == FAIL_SEQ, "%s: events %r" % (what, seen))
    err = (info or {}).get("error", "")
    check(err.startswith(want), "%s: error %r" % (what, err))
    check(dismiss(q, args["job-id"]), "%s: dismissed" % what)


def main():
    flavour, binary, probe, status = qmplib.main_args(__doc__, sys.argv[1:])
    if status is not None:
        return status
    if not shutil.which("qemu-img"):
        print("SKIP: no qemu-img")
        return qmplib.SKIP
    tmp = tempfile.mkdtemp(prefix="klqmpsnap-")
    imgs = {}
    for name, fmt in (("q0", "qcow2"), ("q1", "qcow2"), ("r0", "raw")):
        imgs[name] = os.path.join(tmp, name + "." + fmt)
        subprocess.run(["qemu-img", "create", "-f", fmt, imgs[name], "16M"], check=True,
                       capture_output=True)
    extra = []
    for name, fmt in (("q0", "qcow2"), ("q1", "qcow2"), ("r0", "raw")):
        extra += ["-blockdev", "driver=file,filename=%s,node-name=%s-file" % (imgs[name], name),
                  "-blockdev", "driver=%s,file=%s-file,node-name=%s" % (fmt, name, name)]
    vm = VMM(flavour, binary, probe, "migrate", paused=False, extra=extra)
    print(" ".join(vm.cmd), flush=True)
    try:
        q = QMP(vm.sock)
        q.cmd("qmp_capabilities")
        vm.wait_serial("MIG 0 3", timeout=20)
        save = {"job-id": "ok1", "tag": "snap1", "vmstate": "q0", "devices": ["q0", "q1"]}
        seen, info = run_job(q, "snapshot-save", save)
        check(seen == OK_SEQ, "snapshot-save: events %r" % seen)
        check(info is not None and info.get("type") == "snapshot-save" and
              info.get("status") == "concluded" and info.get("current-progress") == 1 and
              info.get("total-progress") == 1 and "error" not in info,
              "snapshot-save: query-jobs %r" % info)
        s0, s1 = snapshots(q, "q0"), snapshots(q, "q1")
        check("snap1" in s0 and s0["snap1"].get("vm-state-size", 0) > 0,
              "snap1 on q0 with VM state: %r" % s0.get("snap1"))
        check("snap1" in s1 and s1["snap1"].get("vm-state-size") == 0,
              "snap1 on q1 without VM state: %r" % s1.get("snap1"))
        r = q.cmd_raw("snapshot-save", dict(save, tag="other"))
        check(r.get("error", {}).get("desc") == "Job ID 'ok1' already in use",
              "a job id in use: %r" % r)
        check(dismiss(q, "ok1"), "job-dismiss ok1: null")
        check(not q.cmd("query-jobs"), "no jobs after job-dismiss")
        r = q.cmd_raw("job-dismiss", {"id": "ok1"})
        check(r.get("error", {}).get("desc") == "Job not found", "job-dismiss again: %r" % r)
        r = q.cmd_raw("snapshot-save", dict(save, **{"job-id": "1x"}))
        check(r.get("error", {}).get("desc") == "Invalid job ID '1x'", "invalid job id: %r" % r)
        r = q.cmd_raw("snapshot-save", dict(save, **{"job-id": "t", "devices": [1]}))
        check("error" in r and "devices" in r["error"].get("desc", ""),
              "a device that is not a string: %r" % r)

        failing(q, "snapshot-save", dict(save, **{"job-id": "e1", "devices": ["q0", "nope"]}),
                "No block device node 'nope'", "unknown node")
        failing(q, "snapshot-save", dict(save, **{"job-id": "e2", "tag": "x",
                                                  "devices": ["q0", "r0"]}),
                "Device 'r0' is writable but does not support snapshots", "raw node")
        failing(q, "snapshot-save", dict(save, **{"job-id": "e3"}),
                "Snapshot 'snap1' already exists in one or more devices", "tag exists")
        failing(q, "snapshot-save", dict(save, **{"job-id": "e4", "tag": "x", "vmstate": "q1",
                                                  "devices": ["q0"]}),
                "vmstate block device 'q1' does not exist", "vmstate not in devices")
        load = dict(save, **{"job-id": "l1"})
        failing(q, "snapshot-load", dict(load, tag="nope"),
                "Snapshot 'nope' does not exist in one or more devices", "load of an absent tag")
        q.cmd("blockdev-snapshot-internal-sync", {"device": "q0", "name": "diskonly"})
        failing(q, "snapshot-load", dict(load, tag="diskonly", devices=["q0"]),
                "This is a disk-only snapshot. Revert to it  offline using qemu-img",
                "load of a disk-only snapshot")
        # as QEMU: a snapshot-load stops the guest first and a failed one
        # leaves it stopped
        st = q.cmd("query-status")["status"]
        # (QEMU's run state is then restore-vm, kvmlite's paused)
        check(st in ("paused", "restore-vm"), "the guest is stopped after the failed loads "
              "(%r)" % st)
        q.cmd("cont")

        seen, info = run_job(q, "snapshot-load", load)
        check(seen == OK_SEQ and info and "error" not in info,
              "snapshot-load snap1: events %r, %r" % (seen, info))
        check(info is not None and info.get("type") == "snapshot-load", "type snapshot-load")
        check(dismiss(q, "l1"), "job-dismiss l1")
        check(q.cmd("query-status")["status"] == "running", "the guest runs after the load")
        vm.wait_serial("MIG 0 ", timeout=20, start=len(vm.lines))

        dl = {"job-id": "d1", "tag": "snap1", "devices": ["q0", "q1"]}
        seen, info = run_job(q, "snapshot-delete", dl)
        check(seen == OK_SEQ and info.get("type") == "snapshot-delete",
              "snapshot-delete: events %r, %r" % (seen, info))
        check("snap1" not in snapshots(q, "q0") and "snap1" not in snapshots(q, "q1"),
              "snap1 deleted on q0 and q1")
        check(dismiss(q, "d1"), "job-dismiss d1")
        seen, info = run_job(q, "snapshot-delete", dict(dl, tag="never"))
        check(seen == OK_SEQ and "error" not in info,
              "snapshot-delete of a tag nobody has: %r %r" % (seen, info))
        check(dismiss(q, "d1"), "job-dismiss d1 again")
        q.cmd_raw("quit")
        vm.wait_exit()
        q.close()
    finally:
        vm.stop()
    for name in ("q0", "q1"):
        r = subprocess.run(["qemu-img", "check", imgs[name]], capture_output=True, text=True)
        check(r.returncode == 0, "qemu-img check %s: %s" % (name, (r.stdout + r.stderr)[:200]))
    shutil.rmtree(tmp, ignore_errors=True)
    return qmplib.verdict(failures)


if __name__ == "__main__":
    sys.exit(main())
