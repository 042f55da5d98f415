#!/usr/bin/env python3
"""-blockdev and the QMP block commands with the probe guest (test=blk).

usage: test_qmp_block.py [--qemu QEMU_BINARY] KVMLITE PROBE_ELF
       test_qmp_block.py --vmm qemu QEMU_BINARY PROBE_ELF

Phase raw (always): the -blockdev lines libvirt 9.0 writes (JSON, file node
+ raw format node, cache.direct, aio=native) and a dotted-keys -blockdev,
-device virtio-blk-pci,drive=libvirt-1-format,id=virtio-disk0, -S.  Checks
query-named-block-nodes (flat and not), query-block (qdev = QEMU's QOM
path, device ""), query-blockstats (with query-nodes), blockdev-add /
blockdev-del and their errors, the snapshot commands' errors on raw; with
QEMU 7.2 (--qemu, or qemu-system-x86_64 on PATH) the same command line is
run under QEMU (-M pc -S) and the reply shapes (keys, recursively) and the
meaningful values are compared.  Then cont: the probe writes and reads its
disk through the nodes (PROBE PASS blk).

Phase qcow2 (when kvmlite accepts driver qcow2 and qemu-img exists; else
reported as skipped): the libvirt lines with qcow2 and "backing": null,
compared with QEMU; blockdev-snapshot-internal-sync / -delete-internal-sync;
blockdev-snapshot-sync (query-block shows the backing-image chain, the old
root read-only); blockdev-add of a second overlay + blockdev-snapshot; the
probe then writes and reads its disk through the overlays.

--vmm qemu runs every phase against QEMU 7.2 itself (-M pc), to validate
the test's QMP expectations (suite guest-qemu; the probe boot is skipped
there: the blk probe takes a #DF under QEMU -M pc).

Exit status 0 pass, 1 fail, 77 skip (no /dev/kvm).
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qmplib  # noqa: E402
from qmplib import QMP, VMM, check, check_shape, failures  # noqa: E402

skipped = []


def libvirt_lines(img, fmt):
    storage = {"driver": "file", "filename": img, "node-name": "libvirt-1-storage",
               "auto-read-only": True, "discard": "unmap",
               "cache": {"direct": True, "no-flush": False}, "aio": "native"}
    fmtnode = {"node-name": "libvirt-1-format", "read-only": False,
               "cache": {"direct": True, "no-flush": False}, "driver": fmt,
               "file": "libvirt-1-storage"}
    if fmt == "qcow2":
        fmtnode["backing"] = None
    return ["-blockdev", json.dumps(storage, separators=(",", ":")),
            "-blockdev", json.dumps(fmtnode, separators=(",", ":")),
            "-device", "virtio-blk-pci,drive=libvirt-1-format,id=virtio-disk0"]


def err(q, name, args, desc):
    r = q.cmd_raw(name, args)
    check(r == {"error": {"class": "GenericError", "desc": desc}},
          "%s %s -> %r (got %r)" % (name, json.dumps(args), desc, r))


def ok(q, name, args=None):
    r = q.cmd_raw(name, args)
    check(r == {"return": {}}, "%s %s (got %r)" % (name, json.dumps(args), r))


def by_name(nodes):
    return {n.get("node-name"): n for n in nodes}


def key_diff(a, b, path="$"):
    """Keys present on one side only, recursively (lists of nodes paired by
    node-name, other lists by index)."""
    out = []
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a:
                out.append("%s.%s only in QEMU" % (path, k))
            elif k not in b:
                out.append("%s.%s only in kvmlite" % (path, k))
            else:
                out += key_diff(a[k], b[k], "%s.%s" % (path, k))
    elif isinstance(a, list) and isinstance(b, list):
        if all(isinstance(x, dict) and "node-name" in x for x in a + b) and a and b:
            na, nb = by_name(a), by_name(b)
            for n in sorted(set(na) | set(nb)):
                if n not in na or n not in nb:
                    out.append("%s[%s] only in %s" % (path, n, "QEMU" if n in nb else "kvmlite"))
                else:
                    out += key_diff(na[n], nb[n], "%s[%s]" % (path, n))
        elif len(a) != len(b):
            out.append("%s: %d elements vs QEMU's %d" % (path, len(a), len(b)))
        else:
            for i, (x, y) in enumerate(zip(a, b)):
                out += key_diff(x, y, "%s[%d]" % (path, i))
    elif type(a) != type(b) and not (isinstance(a, int) and isinstance(b, int)):
        out.append("%s: %s vs QEMU's %s" % (path, type(a).__name__, type(b).__name__))
    return out


# values that must agree with QEMU (per BlockDeviceInfo)
MEANINGFUL = ("file", "node-name", "ro", "drv", "backing_file", "backing_file_depth",
              "encrypted", "detect_zeroes", "write_threshold", "cache")
IMAGE_MEANINGFUL = ("filename", "format", "cluster-size", "dirty-flag", "backing-filename",
                    "full-backing-filename", "backing-filename-format")


def compare_nodes(what, mine, ref):
    d = key_diff(mine, ref)
    check(not d, "%s: same keys as QEMU 7.2%s" % (what, (": " + "; ".join(d[:12])) if d else ""))
    rm = by_name(ref)
    for n in mine:
        r = rm.get(n.get("node-name"))
        if not r:
            continue
        for k in MEANINGFUL:
            if n.get(k) != r.get(k):
                check(False, "%s %s.%s = %r, QEMU %r" % (what, n["node-name"], k, n.get(k), r.get(k)))
        for k in IMAGE_MEANINGFUL:
            if n["image"].get(k) != r["image"].get(k):
                check(False, "%s %s.image.%s = %r, QEMU %r" % (what, n["node-name"], k,
                                                              n["image"].get(k), r["image"].get(k)))
        if n["drv"] != "file" and n["image"]["virtual-size"] != r["image"]["virtual-size"]:
            check(False, "%s %s virtual-size %r, QEMU %r" % (what, n["node-name"],
                                                            n["image"]["virtual-size"],
                                                            r["image"]["virtual-size"]))
        fs, rfs = n["image"].get("format-specific"), r["image"].get("format-specific")
        if rfs and fs and fs.get("data", {}).keys() != rfs.get("data", {}).keys():
            check(False, "%s %s format-specific keys %s, QEMU %s" % (
                what, n["node-name"], sorted(fs["data"]), sorted(rfs["data"])))


QUERIES = [("query-named-block-nodes", None), ("query-named-block-nodes", {"flat": True}),
           ("query-block", None), ("query-blockstats", None),
           ("query-blockstats", {"query-nodes": True})]


def ask_all(q):
    return [q.cmd(n, a) for n, a in QUERIES]


FLAVOUR = "kvmlite"


def start(binary, probe, extra):
    if FLAVOUR == "qemu":
        # the probe drives modern virtio only (QEMU's default is transitional)
        extra = [a + ",disable-legacy=on" if a.startswith("virtio-blk-pci,") else a
                 for a in extra]
        return VMM("qemu", binary, probe, "blk", extra=["-M", "pc"] + extra)
    return VMM("kvmlite", binary, probe, "blk", extra=extra)


def qemu_reference(qemu, probe, extra):
    """The QUERIES under QEMU 7.2 -M pc -S with the same block options."""
    if not qemu or FLAVOUR == "qemu":
        return None
    vm = VMM("qemu", qemu, probe, "blk", extra=["-M", "pc"] + extra)
    try:
        q = QMP(vm.sock)
        q.cmd("qmp_capabilities")
        return ask_all(q)
    except (qmplib.QMPError, OSError, ValueError) as e:
        check(False, "QEMU reference run failed: %s; stderr %s" % (e, vm.stderr_text()[-500:]))
        return None
    finally:
        vm.stop()


def compare_with_qemu(tag, mine, ref):
    if ref is None:
        print("  skip QEMU comparison (%s): %s" % (tag, "running under QEMU" if FLAVOUR == "qemu"
                                                   else "no qemu-system-x86_64"))
        return
    for (name, args), m, r in zip(QUERIES, mine, ref):
        what = "%s %s%s" % (tag, name, " " + json.dumps(args) if args else "")
        if name == "query-named-block-nodes":
            compare_nodes(what, m, r)
        elif name == "query-block":
            d = key_diff(m, r)
            check(not d, "%s: same keys as QEMU%s" % (what, (": " + "; ".join(d)) if d else ""))
            for k in ("device", "qdev", "type", "removable", "locked", "io-status"):
                check(m[0].get(k) == r[0].get(k), "%s %s %r (QEMU %r)" % (what, k, m[0].get(k),
                                                                          r[0].get(k)))
            compare_nodes(what + " inserted", [m[0]["inserted"]], [r[0]["inserted"]])
        else:
            d = key_diff(m, r)
            check(not d, "%s: same keys as QEMU%s" % (what, (": " + "; ".join(d)) if d else ""))


def boot_probe(vm, q, what):
    if FLAVOUR == "qemu":
        # the blk probe takes a #DF under QEMU -M pc (not a kvmlite target):
        # QEMU validates the QMP side only
        print("  skip probe boot under QEMU (%s)" % what)
        return
    check(q.cmd_raw("cont") == {"return": {}}, "cont")
    try:
        i = vm.wait_serial("PROBE ", 120)
        check(vm.lines[i].startswith("PROBE PASS blk"),
              "probe wrote and read its disk %s: %r" % (what, vm.lines[i]))
    except qmplib.QMPError as e:
        check(False, "probe %s: %s" % (what, e))


def stats_by_node(q):
    """query-blockstats query-nodes: node-name -> BlockStats."""
    return {x["node-name"]: x for x in q.cmd("query-blockstats", {"query-nodes": True})}


def check_node_stats(q, what):
    """query-blockstats query-nodes as QEMU 7.2's bdrv_query_bds_stats: the
    request counters belong to backends (zero at node level); a node shows
    its own wr_highest_offset; a file node its driver-specific discards."""
    nodes = stats_by_node(q)
    check(all(x["stats"][k] == 0 for x in nodes.values()
              for k in ("rd_operations", "wr_operations", "flush_operations", "rd_bytes",
                        "wr_bytes")),
          "%s: node-level request counters are zero, as QEMU's" % what)
    return nodes


def probe_pattern():
    """What the blk probe writes at sector 16 (t_virtio_blk.c fill(), seed 5)."""
    return bytes((i * 31 + 5 * 7 + (i >> 8)) & 0xff for i in range(4096))


def check_images(vm, qimg, base, ov1, ov2, d):
    """After the probe's exit (images closed): every image consistent, the
    write landed in the top overlay, the older layers unchanged."""
    rc = vm.wait_exit(30)
    check(rc is not None, "kvmlite exited after the probe (status %r)" % rc)
    for img in (base, ov1, ov2):
        r = subprocess.run([qimg, "check", "-q", img], capture_output=True, text=True)
        check(r.returncode == 0, "qemu-img check %s: %s" % (os.path.basename(img),
                                                             (r.stdout + r.stderr).strip()))
    for img, want in ((ov2, probe_pattern()), (ov1, bytes(4096)), (base, bytes(4096))):
        out = os.path.join(d, os.path.basename(img) + ".raw")
        subprocess.run([qimg, "convert", "-O", "raw", img, out], check=True)
        with open(out, "rb") as f:
            f.seek(16 * 512)
            got = f.read(4096)
        check(got == want, "%s sectors 16..23 (with its backing chain): %s" % (
            os.path.basename(img), "the probe's pattern" if want != bytes(4096) else "zeroes"))


def phase_raw(binary, probe, qemu, d):
    img = os.path.join(d, "disk.raw")
    with open(img, "wb") as f:
        f.truncate(16 << 20)
    extra = libvirt_lines(img, "raw") + [
        "-blockdev", "driver=file,filename=%s,node-name=spare,cache.direct=on" % img]
    ref = qemu_reference(qemu, probe, extra)
    vm = start(binary, probe, extra)
    print("phase raw: %s" % " ".join(vm.cmd), flush=True)
    qcow2 = False
    try:
        q = QMP(vm.sock)
        q.cmd("qmp_capabilities")
        mine = ask_all(q)
        nodes = by_name(mine[0])
        check(set(nodes) == {"libvirt-1-storage", "libvirt-1-format", "spare"},
              "query-named-block-nodes lists the -blockdev nodes: %s" % sorted(nodes))
        for n in mine[0]:
            e = check_shape(n, qmplib.BLOCK_DEVICE_INFO)
            check(not e, "%s BlockDeviceInfo shape %s" % (n.get("node-name"), e or ""))
        f, s = nodes.get("libvirt-1-format", {}), nodes.get("libvirt-1-storage", {})
        check(f.get("drv") == "raw" and s.get("drv") == "file" and f.get("file") == img,
              "drivers raw over file, file %r" % f.get("file"))
        check(f.get("cache") == {"writeback": True, "direct": True, "no-flush": False},
              "cache of the format node %r" % f.get("cache"))
        check(nodes.get("spare", {}).get("cache", {}).get("direct") is True,
              "dotted cache.direct=on taken")
        check(f.get("image", {}).get("virtual-size") == 16 << 20, "virtual-size 16 MiB")
        blk = mine[2]
        check(len(blk) == 1 and blk[0]["device"] == "" and
              blk[0].get("qdev") == "/machine/peripheral/virtio-disk0/virtio-backend" and
              blk[0]["inserted"]["node-name"] == "libvirt-1-format",
              "query-block: device '', qdev QOM path, node-name (%r)" %
              [(b["device"], b.get("qdev"), b["inserted"]["node-name"]) for b in blk])
        st = mine[3]
        check(len(st) == 1 and st[0]["node-name"] == "libvirt-1-format" and
              st[0]["parent"]["node-name"] == "libvirt-1-storage" and "backing" not in st[0],
              "query-blockstats: format node, parent = storage node, no backing")
        e = check_shape(st, ("list", qmplib.BLOCK_STATS))
        check(not e, "query-blockstats shape %s" % (e or ""))
        check({x["node-name"] for x in mine[4]} == set(nodes) and
              all("device" not in x for x in mine[4]),
              "query-blockstats query-nodes: one entry per node, no device")
        compare_with_qemu("raw", mine, ref)

        print("blockdev-add / blockdev-del", flush=True)
        ok(q, "blockdev-add", {"driver": "file", "filename": img, "node-name": "r1"})
        ok(q, "blockdev-add", {"driver": "raw", "node-name": "r2", "file": "r1"})
        names = {n["node-name"] for n in q.cmd("query-named-block-nodes")}
        check({"r1", "r2"} <= names, "added nodes listed")
        err(q, "blockdev-add", {"driver": "raw", "node-name": "r2", "file": "r1"},
            "Duplicate nodes with node-name='r2'")
        err(q, "blockdev-add", {"driver": "raw", "node-name": "r3", "file": "nosuch"},
            "Cannot find device='nosuch' nor node-name='nosuch'")
        err(q, "blockdev-add", {"driver": "nosuch", "node-name": "r3"},
            "Parameter 'driver' does not accept value 'nosuch'")
        err(q, "blockdev-add", {"node-name": "r3"}, "Parameter 'driver' is missing")
        err(q, "blockdev-add", {"driver": "raw", "node-name": "r3", "file": "r1", "bogus": 1},
            "Parameter 'bogus' is unexpected")
        err(q, "blockdev-add", {"driver": "file", "node-name": "r4", "filename": ["a"]},
            "Invalid parameter type for 'filename', expected: string")
        err(q, "blockdev-add", {"driver": "file", "node-name": "r4",
                                "filename": os.path.join(d, "nonexistent")},
            "Could not open '%s': No such file or directory" % os.path.join(d, "nonexistent"))
        err(q, "blockdev-del", {"node-name": "r1"}, "Block device r1 is in use")
        err(q, "blockdev-del", {"node-name": "libvirt-1-format"},
            "Node libvirt-1-format is in use")
        err(q, "blockdev-del", {"node-name": "nosuch"},
            "Failed to find node with node-name='nosuch'")
        ok(q, "blockdev-del", {"node-name": "r2"})
        ok(q, "blockdev-del", {"node-name": "r1"})
        names = {n["node-name"] for n in q.cmd("query-named-block-nodes")}
        check(not ({"r1", "r2"} & names), "deleted nodes gone: %s" % sorted(names))

        print("snapshot command errors on raw", flush=True)
        err(q, "blockdev-snapshot-internal-sync", {"device": "libvirt-1-format", "name": "s1"},
            "Block format 'raw' used by device 'libvirt-1-format' does not support internal "
            "snapshots")
        err(q, "blockdev-snapshot-internal-sync", {"device": "nosuch", "name": "s1"},
            "Cannot find device='nosuch' nor node-name='nosuch'")
        err(q, "blockdev-snapshot-delete-internal-sync", {"device": "libvirt-1-format"},
            "Name or id must be provided")
        err(q, "blockdev-snapshot-sync", {"device": "libvirt-1-format",
                                          "snapshot-file": os.path.join(d, "x.qcow2")},
            "Cannot find device='libvirt-1-format' nor node-name=''")
        ok(q, "blockdev-add", {"driver": "raw", "node-name": "ovraw",
                               "file": {"driver": "file", "filename": img}})
        err(q, "blockdev-snapshot", {"node": "libvirt-1-format", "overlay": "ovraw"},
            "The overlay does not support backing images")
        ok(q, "blockdev-del", {"node-name": "ovraw"})

        qimg = shutil.which("qemu-img")
        if qimg:
            qc = os.path.join(d, "probe.qcow2")
            subprocess.run([qimg, "create", "-q", "-f", "qcow2", qc, "1M"], check=True)
            r = q.cmd_raw("blockdev-add", {"driver": "qcow2", "node-name": "q1",
                                           "file": {"driver": "file", "filename": qc}})
            qcow2 = "return" in r
            if qcow2:
                ok(q, "blockdev-del", {"node-name": "q1"})
            else:
                check(r.get("error", {}).get("desc") ==
                      "Parameter 'driver' does not accept value 'qcow2'",
                      "without a qcow2 driver, blockdev-add qcow2 is refused: %r" % r)
        print("kvmlite's qcow2 driver: %s" % ("present" if qcow2 else "absent"), flush=True)
        nodes = check_node_stats(q, "raw")
        check(all(x["stats"]["wr_highest_offset"] == 0 for x in nodes.values()) and
              nodes["libvirt-1-storage"].get("driver-specific") ==
              {"driver": "file", "discard-nb-ok": 0, "discard-nb-failed": 0,
               "discard-bytes-ok": 0},
              "raw: nothing written yet: wr_highest_offset 0, no discards (%r)" %
              nodes["libvirt-1-storage"])
        boot_probe(vm, q, "through -blockdev raw")
    except (qmplib.QMPError, OSError, ValueError, KeyError, IndexError, TypeError) as e:
        check(False, "phase raw aborted: %r" % e)
    finally:
        if failures:
            print("serial tail: %s" % vm.lines[-10:])
            print("stderr: %s" % vm.stderr_text()[-2000:])
        vm.stop()
    return qcow2 and bool(shutil.which("qemu-img"))


def phase_qcow2(binary, probe, qemu, d):
    qimg = shutil.which("qemu-img")
    base = os.path.join(d, "base.qcow2")
    subprocess.run([qimg, "create", "-q", "-f", "qcow2", base, "16M"], check=True)
    extra = libvirt_lines(base, "qcow2")
    ref = qemu_reference(qemu, probe, extra)
    vm = start(binary, probe, extra)
    print("phase qcow2: %s" % " ".join(vm.cmd), flush=True)
    try:
        q = QMP(vm.sock)
        q.cmd("qmp_capabilities")
        mine = ask_all(q)
        compare_with_qemu("qcow2", mine, ref)
        f = by_name(mine[0]).get("libvirt-1-format", {})
        check(f.get("drv") == "qcow2" and f["image"].get("cluster-size") == 65536 and
              f["image"].get("format-specific", {}).get("type") == "qcow2",
              "qcow2 node: drv, cluster-size, format-specific")

        print("internal snapshots", flush=True)
        ok(q, "blockdev-snapshot-internal-sync", {"device": "libvirt-1-format", "name": "s1"})
        err(q, "blockdev-snapshot-internal-sync", {"device": "libvirt-1-format", "name": "s1"},
            "Snapshot with name 's1' already exists on device 'libvirt-1-format'")
        err(q, "blockdev-snapshot-internal-sync", {"device": "libvirt-1-format", "name": ""},
            "Name is empty")
        img = by_name(q.cmd("query-named-block-nodes"))["libvirt-1-format"]["image"]
        sn = img.get("snapshots", [])
        check(len(sn) == 1 and sn[0]["name"] == "s1" and not
              check_shape(sn[0], {"id": str, "name": str, "vm-state-size": int, "date-sec": int,
                                  "date-nsec": int, "vm-clock-sec": int, "vm-clock-nsec": int,
                                  "icount?": int}),
              "snapshot s1 listed: %r" % sn)
        err(q, "blockdev-snapshot-delete-internal-sync",
            {"device": "libvirt-1-format", "name": "nosuch"},
            "Snapshot with id 'null' and name 'nosuch' does not exist on device "
            "'libvirt-1-format'")
        r = q.cmd_raw("blockdev-snapshot-delete-internal-sync",
                      {"device": "libvirt-1-format", "name": "s1"})
        check(r.get("return", {}).get("name") == "s1", "delete returns SnapshotInfo of s1: %r" % r)
        ok(q, "blockdev-snapshot-internal-sync", {"device": "libvirt-1-format", "name": "keep"})

        print("blockdev-snapshot-sync", flush=True)
        ov1 = os.path.join(d, "ov1.qcow2")
        ok(q, "blockdev-snapshot-sync", {"node-name": "libvirt-1-format", "snapshot-file": ov1,
                                         "snapshot-node-name": "ov1", "format": "qcow2"})
        blk = q.cmd("query-block")[0]
        ins = blk["inserted"]
        bi = ins["image"].get("backing-image", {})
        check(ins["node-name"] == "ov1" and ins.get("backing_file") == base and
              ins["backing_file_depth"] == 1 and ins["image"]["filename"] == ov1 and
              ins["image"].get("backing-filename") == base and
              ins["image"].get("backing-filename-format") == "qcow2" and
              bi.get("filename") == base and [s["name"] for s in bi.get("snapshots", [])] == ["keep"],
              "query-block after snapshot-sync: overlay ov1 on the base, backing-image with "
              "its snapshot (%s)" % json.dumps(ins)[:600])
        check(blk.get("qdev") == "/machine/peripheral/virtio-disk0/virtio-backend",
              "the device stays attached (qdev)")
        nodes = by_name(q.cmd("query-named-block-nodes", {"flat": True}))
        check(nodes.get("libvirt-1-format", {}).get("ro") is True and
              "backing-image" not in nodes.get("ov1", {}).get("image", {}) and
              nodes.get("ov1", {}).get("backing_file_depth") == 0,
              "old root read-only; flat: no backing-image, depth 0")

        print("blockdev-snapshot", flush=True)
        ov2 = os.path.join(d, "ov2.qcow2")
        subprocess.run([qimg, "create", "-q", "-f", "qcow2", "-b", ov1, "-F", "qcow2", ov2],
                       check=True)
        ok(q, "blockdev-add", {"driver": "file", "filename": ov2, "node-name": "ov2-storage"})
        ok(q, "blockdev-add", {"driver": "qcow2", "file": "ov2-storage", "node-name": "ov2",
                               "backing": None})
        ok(q, "blockdev-snapshot", {"node": "ov1", "overlay": "ov2"})
        err(q, "blockdev-snapshot", {"node": "ov1", "overlay": "ov2"},
            "Node 'ov1' is busy: node is used as backing hd of 'ov2'")
        ins = q.cmd("query-block")[0]["inserted"]
        chain = []
        im = ins["image"]
        while im:
            chain.append(im["filename"])
            im = im.get("backing-image")
        check(ins["node-name"] == "ov2" and ins["backing_file_depth"] == 2 and
              chain == [ov2, ov1, base], "chain ov2 -> ov1 -> base: %r" % chain)
        # metadata writes count (QEMU's bdrv_pwrite goes through the node
        # too): the base's file got the internal snapshots, no guest write
        # reached any format node yet
        nodes = check_node_stats(q, "qcow2")
        bst = nodes["libvirt-1-storage"]["stats"]["wr_highest_offset"]
        check(0 < bst <= os.path.getsize(base) and
              nodes["libvirt-1-format"]["stats"]["wr_highest_offset"] == 0 and
              nodes["ov2"]["stats"]["wr_highest_offset"] == 0,
              "qcow2: the base's file node wr_highest_offset %d within its %d bytes; the "
              "format nodes 0" % (bst, os.path.getsize(base)))
        boot_probe(vm, q, "through the overlays")
        if FLAVOUR == "kvmlite":
            check_images(vm, qimg, base, ov1, ov2, d)
    except (qmplib.QMPError, OSError, ValueError, KeyError, IndexError, TypeError) as e:
        check(False, "phase qcow2 aborted: %r" % e)
    finally:
        if failures:
            print("serial tail: %s" % vm.lines[-10:])
            print("stderr: %s" % vm.stderr_text()[-2000:])
        vm.stop()


def phase_qdev(binary, probe, d):
    """query-block qdev paths: a -device with id, and the device -drive
    if=virtio implies (anonymous, created after the -device ones: the probe
    VM's isa-debug-exit is peripheral-anon device[0])."""
    a, b = os.path.join(d, "a.raw"), os.path.join(d, "b.raw")
    for p in (a, b):
        with open(p, "wb") as f:
            f.truncate(1 << 20)
    extra = ["-drive", "file=%s,format=raw,if=virtio" % a,
             "-drive", "file=%s,format=raw,if=none,id=d1" % b,
             "-device", "virtio-blk-pci,drive=d1,id=vd1"]
    vm = start(binary, probe, extra)
    print("phase qdev: %s" % " ".join(vm.cmd), flush=True)
    try:
        q = QMP(vm.sock)
        q.cmd("qmp_capabilities")
        got = {x["inserted"]["file"]: x.get("qdev") for x in q.cmd("query-block")}
        check(got.get(b) == "/machine/peripheral/vd1/virtio-backend",
              "qdev of -device id=vd1: %r" % got.get(b))
        check(got.get(a) == "/machine/peripheral-anon/device[1]/virtio-backend",
              "qdev of the -drive if=virtio device: %r" % got.get(a))
        err(q, "blockdev-add", {"driver": "file", "filename": b, "node-name": "d1"},
            "node-name=d1 is conflicting with a device id")
    except (qmplib.QMPError, OSError, ValueError, KeyError) as e:
        check(False, "phase qdev aborted: %r" % e)
    finally:
        vm.stop()


def main():
    global FLAVOUR
    argv = sys.argv[1:]
    qemu = None
    if argv[:2] == ["--vmm", "qemu"]:
        FLAVOUR, argv = "qemu", argv[2:]
    elif argv[:1] == ["--qemu"]:
        qemu, argv = argv[1], argv[2:]
    else:
        qemu = shutil.which("qemu-system-x86_64")
    binary, probe, status = qmplib.preflight(__doc__, argv)
    if status is not None:
        return status
    with tempfile.TemporaryDirectory(prefix="kl-qmp-block-") as d:
        phase_qdev(binary, probe, d)
        if phase_raw(binary, probe, qemu, d):
            phase_qcow2(binary, probe, qemu, d)
        else:
            msg = "qcow2 phase (internal snapshots, blockdev-snapshot-sync, blockdev-snapshot, " \
                  "backing-image chain): kvmlite has no qcow2 driver%s" % (
                      "" if shutil.which("qemu-img") else " or qemu-img is missing")
            skipped.append(msg)
            print("SKIP %s" % msg)
    for s in skipped:
        print("skipped: " + s)
    return qmplib.verdict(failures)


if __name__ == "__main__":
    sys.exit(main())
