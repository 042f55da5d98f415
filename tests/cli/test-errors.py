#!/usr/bin/env python3
"""Bad command lines and inputs give a one-line error naming the problem and a
non-zero exit, never a crash.  Runs without /dev/kvm (suite 'unit') except
where a case needs it, which is then skipped individually with the reason."""
import os
import subprocess
import sys
import tempfile

kvmlite = sys.argv[1]
probe = sys.argv[2] if len(sys.argv) > 2 else None
failures = 0
passed = 0


def run(args, env=None, needle=None, name=None):
    global failures, passed
    e = dict(os.environ)
    if env:
        e.update(env)
    p = subprocess.run([kvmlite] + args, capture_output=True, text=True, timeout=30,
                       env=e, stdin=subprocess.DEVNULL)
    err = p.stderr.strip()
    lines = err.splitlines()
    ok = True
    why = []
    if p.returncode <= 0 or p.returncode >= 128:
        ok = False
        why.append("exit status %d (want 1..127)" % p.returncode)
    if len(lines) != 1:
        ok = False
        why.append("stderr has %d lines, want 1" % len(lines))
    if needle and needle not in err:
        ok = False
        why.append("stderr lacks %r" % needle)
    if ok:
        passed += 1
        print("ok   %-28s %s" % (name, err))
    else:
        failures += 1
        print("FAIL %-28s %s\n     stderr: %r" % (name, "; ".join(why), err))


def host_is_emulated():
    """Same rule as kl_host_is_emulated() (src/cpu/cpumodel.c)."""
    if os.path.exists("/sys/module/kvm_pvm"):
        return True
    with open("/proc/cpuinfo") as f:
        flags = [l.split(":", 1)[1].split() for l in f if l.startswith("flags")]
    return not any("vmx" in fl or "svm" in fl for fl in flags)


def cpu_warning(probe):
    """Not an error case.  On a host without VMX/SVM (PVM) the guest reads
    the host's own CPUID whatever -cpu says: a model or feature list that
    cannot take effect runs the guest and warns once on stderr, saying so;
    -cpu host (what the guest really sees there) and the default give no
    warning.  Elsewhere no model warns."""
    global failures, passed
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        print("skip -cpu warnings: /dev/kvm is not accessible")
        return
    emulated = host_is_emulated()
    for model, want in (("host", False), ("kvmlite-safe", emulated),
                        ("host,-avx", emulated)):
        p = subprocess.run([kvmlite, "-cpu", model, "-kernel", probe, "-append", "test=hello",
                            "-nodefaults", "-serial", "null",
                            "-device", "isa-debug-exit,iobase=0xf4,iosize=4"],
                           capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
        warned = [l for l in p.stderr.splitlines() if "warning: -cpu " + model in l]
        ok = p.returncode == 1 and len(warned) == (1 if want else 0) and \
            (not want or "reads the host's own CPUID" in warned[0])
        name = "-cpu %s warning%s" % (model, "" if want else " absent")
        if ok:
            passed += 1
            print("ok   %-28s %s" % (name, warned[0] if warned else "(no warning)"))
        else:
            failures += 1
            print("FAIL %-28s exit %d, stderr %r" % (name, p.returncode, p.stderr))


def memory_balloon_errors(probe, d):
    """Memory backends, -machine mem-merge, virtio-balloon-pci properties."""
    nokvm = {"KVMLITE_KVM_DEV": os.path.join(d, "kvm")}
    base = ["-kernel", probe, "-nographic"]
    mb = ["-machine", "memory-backend=m0"]
    for args, needle, name, env in [
        (["-machine", "mem-merge=maybe"], "mem-merge", "-machine mem-merge=maybe", nokvm),
        (["-object", "memory-backend-file,id=m0,size=64M"], "parameter 'mem-path' is missing",
         "memory-backend-file no mem-path", nokvm),
        (["-object", "memory-backend-ram,id=m0,size=64M,prealloc=maybe"], "prealloc",
         "memory-backend prealloc=maybe", nokvm),
        (["-object", "memory-backend-memfd,id=m0,size=64M,share=off"],
         "share=off is not supported for memory-backend-memfd", "memfd share=off", nokvm),
        (["-object", "memory-backend-file,id=m0,size=64M,mem-path=%s,readonly=on" % d],
         "readonly=on is not supported", "memory-backend-file readonly", nokvm),
        (["-object", "memory-backend-file,id=m0,size=64M,mem-path=%s,bogus=1" % d], "bogus",
         "memory-backend-file unknown key", nokvm),
        (["-object", "memory-backend-epc,id=m0,size=64M"], "unsupported object type 'memory-backend-epc'",
         "unknown memory backend", nokvm),
        (["-object", "memory-backend-file,id=m0,size=64M,mem-path=%s/no/such/dir/ram" % d] + mb,
         "can't open backing store %s/no/such/dir/ram" % d, "mem-path missing directory", None),
        (["-device", "virtio-balloon-pci,deflate-on-oom=maybe"], "deflate-on-oom",
         "balloon deflate-on-oom=maybe", None),
        (["-device", "virtio-balloon-pci,free-page-reporting=2"], "free-page-reporting",
         "balloon free-page-reporting=2", None),
        (["-device", "virtio-balloon-pci,free-page-hint=on"], "free-page-hint=on is not supported",
         "balloon free-page-hint", None),
        (["-device", "virtio-balloon-pci,bogus=1"], "bogus", "balloon unknown key", None),
        (["-device", "virtio-balloon-pci", "-device", "virtio-balloon-pci"],
         "only one balloon device", "two balloons", None),
    ]:
        run(base + args, env=env, needle=needle, name=name)


def blockdev_errors(probe, d):
    """-blockdev errors: QEMU 7.2's texts, prefixed with the option as QEMU
    does ("-blockdev SPEC: ...").  Nodes open before /dev/kvm is touched, so
    these run without it (KVMLITE_KVM_DEV points nowhere: reaching the VM
    would be a different error)."""
    img = os.path.join(d, "bd.raw")
    with open(img, "wb") as f:
        f.truncate(1 << 20)
    nokvm = {"KVMLITE_KVM_DEV": os.path.join(d, "kvm")}
    base = ["-kernel", probe, "-nographic"]
    cases = [
        ("driver=raw,file=x,node-name=a",
         "-blockdev driver=raw,file=x,node-name=a: Cannot find device='x' nor node-name='x'",
         "-blockdev unknown file ref"),
        ("driver=file,filename=%s" % img,
         "'node-name' must be specified for the root node", "-blockdev no node-name"),
        ('{"driver":"file","filename":"%s","node-name":"a","cache":{"direct":[1]}}' % img,
         "Invalid parameter type for 'cache.direct', expected: boolean", "-blockdev JSON array"),
        ('{"driver":"file","filename":["x"],"node-name":"a"}',
         "Invalid parameter type for 'filename', expected: string", "-blockdev JSON filename list"),
        ('{"driver":"file","read-only":"yes","filename":"%s","node-name":"a"}' % img,
         "Invalid parameter type for 'read-only', expected: boolean", "-blockdev JSON bool type"),
        ("driver=file,filename=%s,node-name=a,bogus=1" % img,
         "Parameter 'bogus' is unexpected", "-blockdev unknown key"),
        ('{"driver":"file"', "JSON parse error", "-blockdev bad JSON"),
        ("driver=nbd2,node-name=a", "Parameter 'driver' does not accept value 'nbd2'",
         "-blockdev unknown driver"),
        ("driver=file,filename=%s,node-name=1a" % img, "Invalid node-name: '1a'",
         "-blockdev invalid node-name"),
        ("driver=file,filename=%s,node-name=a" % os.path.join(d, "nope.raw"),
         "Could not open '%s': No such file or directory" % os.path.join(d, "nope.raw"),
         "-blockdev missing file"),
        # one JSON value only (QEMU's text); json-glib never sees the rest
        ('{"driver":"file","filename":"%s","node-name":"a"} x' % img,
         '-blockdev {"driver":"file","filename":"%s","node-name":"a"} x: '
         'Expecting at most one JSON value' % img, "-blockdev JSON trailing data"),
        ('{"driver":"file","filename":"%s","node-name":"a"}{}' % img,
         "Expecting at most one JSON value", "-blockdev JSON two values"),
        ('{"driver":"file","filename":"%s","node-name":"a","node-name":"b"}' % img,
         "JSON parse error, duplicate key", "-blockdev JSON duplicate key"),
        ('{"driver":"raw","node-name":"a","file":{"driver":"file","filename":"%s"},'
         '"file.driver":"file"}' % img, "Parameter 'file.driver' is unexpected",
         "-blockdev JSON dotted member"),
        # keyval (QEMU's -blockdev dotted syntax) has no flags
        ("driver=file,filename=%s,node-name=a,read-only" % img,
         "Expected '=' after parameter 'read-only'", "-blockdev flag form"),
        ("driver=file,filename=%s,node-name=a,x y=1" % img,
         "Invalid parameter 'x y'", "-blockdev bad key"),
        ("driver=raw,node-name=a,file=f,file.driver=file",
         "Parameters 'file.*' used inconsistently", "-blockdev key and object"),
        # only a '{' in the very first place makes it JSON (QEMU)
        (' {"driver":"file","node-name":"a"}', "Invalid parameter '\"node-name\":\"a\"}'",
         "-blockdev leading space"),
    ]
    for spec, needle, name in cases:
        run(base + ["-blockdev", spec], env=nokvm, needle=needle, name=name)
    # keyval: the last of repeated keys counts; the implied key is "driver"
    nope = os.path.join(d, "nope.raw")
    run(base + ["-blockdev", "driver=file,filename=%s,node-name=a,filename=%s" % (nope, img)],
        env=nokvm, needle="cannot open", name="-blockdev last repeat counts")
    run(base + ["-blockdev", "driver=file,filename=%s,node-name=a,filename=%s" % (img, nope)],
        env=nokvm, needle="Could not open '%s'" % nope, name="-blockdev last repeat used")
    run(base + ["-blockdev", "file,filename=%s,node-name=a" % img], env=nokvm,
        needle="cannot open", name="-blockdev implied driver")
    # QemuOpts front-ends (-object, -drive, -chardev, ...): a key given twice
    # in any spelling is an error (-object is read before /dev/kvm opens)
    for spec, key in (("memory-backend-ram,id=m0,size=1M,share,share", "share"),
                      ("memory-backend-ram,id=m0,size=1M,share=on,noshare", "share"),
                      ("memory-backend-ram,id=m0,size=1M,size=2M", "size")):
        run(base + ["-object", spec], env=nokvm,
            needle="-object %s: parameter '%s' given twice" % (spec, key),
            name="-object duplicate key")
    ok = "driver=file,filename=%s,node-name=a" % img
    run(base + ["-blockdev", ok, "-blockdev", ok], env=nokvm,
        needle="-blockdev %s: Duplicate nodes with node-name='a'" % ok,
        name="-blockdev duplicate node")
    # throttle groups and the throttle filter (QEMU 7.2's texts)
    tg = ["-object", "throttle-group,id=tg,x-iops-total=100"]
    for extra, needle, name in [
        (["-blockdev", ok, "-blockdev", '{"driver":"throttle","node-name":"t","file":"a"}'],
         "Please specify a throttle group", "throttle filter without group"),
        (["-blockdev", ok, "-blockdev",
          '{"driver":"throttle","node-name":"t","file":"a","throttle-group":"nope"}'],
         "Throttle group 'nope' does not exist", "throttle filter unknown group"),
        (["-object", "throttle-group,x-iops-total=1"], "Parameter 'id' is missing",
         "throttle-group without id"),
        (tg + tg, "A group with this name already exists", "throttle-group duplicate"),
        (["-object", "throttle-group,id=g,x-iops-total=10,x-bogus=1"], "x-bogus",
         "throttle-group unknown property"),
        (["-object", "throttle-group,id=g,x-iops-total=10,x-iops-read=5"],
         "cannot be used at the same time", "throttle-group total and read"),
        (["-object", "throttle-group,id=g,x-iops-total=10,limits.iops-read=5"],
         "cannot be used together", "throttle-group x-* and limits"),
        (["-object", "throttle-group,id=g,x-iops-total=ten"], "x-iops-total=ten",
         "throttle-group bad number"),
    ]:
        run(base + extra, env=nokvm, needle=needle, name=name)
    run(base + tg + ["-blockdev", ok, "-blockdev",
                     '{"driver":"throttle","node-name":"t","file":"a","throttle-group":"tg"}'],
        env=nokvm, needle="cannot open", name="throttle filter ok, then no kvm")
    # a good -blockdev gets as far as the VM (here: the missing /dev/kvm)
    run(base + ["-blockdev", ok, "-blockdev", "driver=raw,file=a,node-name=b"], env=nokvm,
        needle="cannot open", name="-blockdev ok, then no kvm")


def rngnuma_errors(probe, d):
    """-object rng-*, virtio-rng-pci, -numa and host-nodes/policy: QEMU
    7.2's texts.  Objects and -numa are read before /dev/kvm opens; the
    device and the mbind errors need the VM (skipped without /dev/kvm)."""
    nokvm = {"KVMLITE_KVM_DEV": os.path.join(d, "kvm")}
    base = ["-kernel", probe, "-nographic"]
    nofile = os.path.join(d, "no-such-rng")
    mem = lambda i, size="32M", extra="": ["-object", "memory-backend-ram,id=m%d,size=%s%s" % (i, size, extra)]
    two = ["-m", "64"] + mem(0) + mem(1) + ["-numa", "node,memdev=m0", "-numa", "node,memdev=m1"]
    for extra, needle, name in [
        (["-object", "rng-random,id=r0,filename=" + nofile],
         "Could not open '%s': No such file or directory" % nofile, "rng-random missing file"),
        (["-object", "rng-random,filename=/dev/urandom"], "Parameter 'id' is missing",
         "rng-random without id"),
        (["-object", "rng-builtin,id=r0,bogus=1"], "unknown parameter 'bogus'",
         "rng-builtin unknown key"),
        (["-object", "rng-builtin,id=r0", "-object", "rng-random,id=r0"],
         "attempt to add duplicate property 'r0'", "rng duplicate id"),
        (["-numa", "node,mem=32M"], "Parameter -numa node,mem is not supported by this machine type",
         "-numa mem="),
        (["-numa", "node,memdev=nope"], "-numa node,memdev=nope: memdev=nope is ambiguous",
         "-numa unknown memdev"),
        (mem(0) + ["-numa", "node,memdev=m0"],
         "total memory for NUMA nodes (0x2000000) should equal RAM size (0x8000000)",
         "-numa total != -m"),
        (["-m", "32"] + mem(0) + ["-numa", "node,nodeid=1,memdev=m0"], "numa: Node ID missing: 0",
         "-numa sparse node ids"),
        (["-m", "32"] + mem(0) + ["-numa", "node,memdev=m0,cpus=1"],
         "CPU index (1) should be smaller than maxcpus (1)", "-numa cpus out of range"),
        (two + ["-numa", "dist,src=0,dst=1,val=9"],
         "NUMA distance (9) is invalid, it shouldn't be less than 10.", "-numa dist val < 10"),
        (two + ["-numa", "dist,src=1,dst=1,val=20"], "Local distance of node 1 should be 10.",
         "-numa dist local"),
        (two + ["-numa", "dist,src=0,dst=2,val=20"], "Source/Destination NUMA node is missing",
         "-numa dist unknown node"),
        (two + mem(2) + ["-m", "96", "-numa", "node,memdev=m2", "-numa", "dist,src=0,dst=1,val=20"],
         "The distance between node 0 and 2 is missing", "-numa dist incomplete"),
        (two + mem(2) + ["-m", "96", "-numa", "node,memdev=m2", "-numa", "dist,src=0,dst=1,val=20",
                         "-numa", "dist,src=1,dst=0,val=30", "-numa", "dist,src=0,dst=2,val=20",
                         "-numa", "dist,src=1,dst=2,val=20"],
         "please provide distances for both directions", "-numa dist asymmetric"),
        (two + ["-numa", "cpu,socket-id=0"], "Missing mandatory node-id property",
         "-numa cpu without node-id"),
        (two + ["-machine", "memory-backend=m0"],
         "'-machine memory-backend' and '-numa memdev' properties are mutually exclusive",
         "-numa memdev + -machine memory-backend"),
        (["-m", "64"] + mem(0) + ["-object", "memory-backend-memfd,id=m1,size=32M",
                                  "-numa", "node,memdev=m0", "-numa", "node,memdev=m1"],
         "must be of one kind", "-numa mixed backend kinds"),
        (mem(0, extra=",policy=bind"), "host-nodes must be set for policy bind",
         "policy=bind without host-nodes"),
        (mem(0, extra=",host-nodes=0"), "host-nodes must be empty for policy default",
         "host-nodes without policy"),
        (mem(0, extra=",host-nodes=0,policy=foo"), "Parameter 'policy' does not accept value 'foo'",
         "bad policy"),
        (mem(0, extra=",host-nodes=200,policy=bind"), "Invalid host-nodes value: 200",
         "host-nodes too large"),
    ]:
        run(base + extra, env=nokvm, needle=needle, name=name)
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        print("skip rng/numa device cases: /dev/kvm is not usable here")
        return
    for extra, needle, name in [
        (["-device", "virtio-rng-pci,rng=nope"], "Property 'virtio-rng-pci.rng' can't find value 'nope'",
         "virtio-rng unknown rng"),
        (["-device", "virtio-rng-pci,period=0"], "'period' parameter expects a positive integer",
         "virtio-rng period=0"),
        (["-device", "virtio-rng-pci,max-bytes=9223372036854775808"],
         "'max-bytes' parameter must be non-negative, and less than 2^63", "virtio-rng max-bytes"),
        (["-device", "virtio-rng-pci,bogus=1"], "bogus", "virtio-rng unknown key"),
        (["-m", "32"] + mem(0, extra=",host-nodes=127,policy=bind") + ["-numa", "node,memdev=m0"],
         "memory backend 'm0': cannot bind memory to host NUMA nodes: Invalid argument",
         "host node that does not exist"),
    ]:
        if name == "host node that does not exist" and os.path.exists("/sys/devices/system/node/node127"):
            continue
        run(base + extra, needle=needle, name=name)


with tempfile.TemporaryDirectory() as d:
    garbage = os.path.join(d, "garbage.bin")
    with open(garbage, "wb") as f:
        f.write(os.urandom(8192))
    empty = os.path.join(d, "empty")
    open(empty, "w").close()
    trunc_bz = os.path.join(d, "trunc-bzimage")
    with open(trunc_bz, "wb") as f:
        hdr = bytearray(1024)
        hdr[0x1fe:0x200] = b"\x55\xaa"
        hdr[0x202:0x206] = b"HdrS"
        hdr[0x206:0x208] = (0x020f).to_bytes(2, "little")
        hdr[0x1f1] = 30  # setup_sects far past the end of the file
        f.write(hdr)
    missing = os.path.join(d, "no-such-kernel")

    run(["-kernel", missing], needle="no-such-kernel", name="missing kernel")
    run(["-kernel", garbage], needle="garbage.bin", name="corrupt kernel")
    run(["-kernel", empty], needle="empty", name="empty kernel")
    run(["-kernel", trunc_bz], needle="trunc-bzimage", name="truncated bzImage")
    run(["-kernel", d], needle="not a regular file", name="kernel is a directory")
    run(["-m", "0", "-kernel", garbage], needle="-m 0", name="-m 0")
    run(["-smp", "0", "-kernel", garbage], needle="-smp 0", name="-smp 0")
    run(["-frobnicate"], needle="-frobnicate: invalid option", name="unknown flag")
    for spec, needle in (("maybe", "-sandbox maybe"), ("spawn=deny", "on or off is required"),
                         ("on,spawn=maybe", "invalid argument for spawn: 'maybe'"),
                         ("on,obsolete=children", "invalid argument for obsolete: 'children'"),
                         ("on,elevateprivileges=x", "invalid argument for elevateprivileges"),
                         ("on,resourcecontrol=", "invalid argument for resourcecontrol"),
                         ("on,bogus=1", "bogus")):
        run(["-sandbox", spec, "-kernel", garbage], needle=needle, name="-sandbox " + spec)
    run(["-kernel"], needle="requires an argument", name="flag without value")
    run(["-loadvm", "s", "-incoming", "defer", "-kernel", garbage],
        needle="-loadvm and -incoming cannot be used together", name="-loadvm with -incoming")
    run([], needle="-kernel is required", name="no kernel")
    # -run-with / -runas / -chroot (checked before the kernel is read)
    run(["-run-with", "user=kl-no-such-user", "-kernel", garbage],
        needle='-run-with user=kl-no-such-user: user "kl-no-such-user" does not exist',
        name="-run-with unknown user")
    run(["-runas", "kl-no-such-user", "-kernel", garbage],
        needle='-runas kl-no-such-user: user "kl-no-such-user" does not exist',
        name="-runas unknown user")
    run(["-run-with", "user=12:x", "-kernel", garbage], needle='user "12:x" does not exist',
        name="-run-with bad uid:gid")
    run(["-run-with", "chroot=" + missing, "-kernel", garbage],
        needle="chroot directory '%s': No such file or directory" % missing,
        name="-run-with missing chroot")
    run(["-chroot", garbage, "-kernel", garbage],
        needle="chroot directory '%s': Not a directory" % garbage, name="-chroot not a dir")
    run(["-run-with", "user=nobody,frob=1", "-kernel", garbage],
        needle="unknown parameter 'frob'", name="-run-with bad key")
    run(["-run-with", "async-teardown=on", "-kernel", garbage],
        needle="async-teardown=on is not supported", name="-run-with async-teardown=on")
    run(["-run-with", "user=", "-kernel", garbage], needle="user must not be empty",
        name="-run-with empty user")
    if probe and os.path.exists(probe):
        run(["-kernel", probe, "-initrd", missing], needle="no-such-kernel",
            name="missing initrd")
        run(["-kernel", probe, "-nographic"], env={"KVMLITE_KVM_DEV": os.path.join(d, "kvm")},
            needle="cannot open", name="no /dev/kvm")
        run(["-kernel", probe, "-device", "nosuchdev"], needle="nosuchdev",
            name="unknown device")
        run(["-kernel", probe, "-device", "isa-debug-exit,bogus=1"], needle="bogus",
            name="unknown device property")
        # -M microvm: virtio-mmio only, PCI devices name themselves
        run(["-kernel", probe, "-M", "microvm", "-device", "virtio-net-pci"],
            needle="virtio-net-pci: -M microvm has no PCI bus", name="microvm + PCI device")
        run(["-kernel", probe, "-device", "virtio-net-device"],
            needle="virtio-net-device: this machine has no virtio-mmio transport",
            name="virtio-mmio device on pc")
        run(["-kernel", probe, "-M", "microvm", "-device", "virtio-net-device,addr=3"],
            needle="addr= is a PCI property", name="virtio-net-device addr=")
        run(["-kernel", probe, "-M", "microvm"] + ["-device", "virtio-net-device"] * 8,
            needle="all 7 virtio-mmio transports are in use", name="microvm: 8 transports")
        run(["-kernel", probe, "-M", "microvm,ioapic2=on"], needle="ioapic2=on is not supported",
            name="microvm ioapic2=on")
        run(["-kernel", probe, "-M", "pc,pcie=on"], needle="exists only on -M microvm",
            name="pc,pcie=on")
        run(["-kernel", probe, "-serial", "tcp:1.2.3.4:5"], needle="tcp:1.2.3.4:5",
            name="bad serial back-end")
        run(["-kernel", probe, "-drive", "file=%s,if=ide" % garbage], needle="ide",
            name="unsupported drive if=")
        nobody = os.path.join(d, "nobody.sock")
        run(["-kernel", probe, "-qmp", "unix:" + nobody],
            needle="cannot connect to %s: No such file or directory" % nobody,
            name="-qmp client, no listener")
        run(["-kernel", probe, "-qmp", "tcp:192.0.2.1:4444"], needle="not a loopback address",
            name="-qmp client, non-loopback")
        run(["-kernel", probe, "-qmp", "unix:%s,reconnect=1" % nobody],
            needle="unknown parameter 'reconnect'", name="-qmp reconnect=")
        blockdev_errors(probe, d)
        memory_balloon_errors(probe, d)
        rngnuma_errors(probe, d)
        cpu_warning(probe)
    else:
        print("note: probe kernel not given; cases needing a valid kernel not run")

print("%d passed, %d failed" % (passed, failures))
sys.exit(1 if failures else 0)
