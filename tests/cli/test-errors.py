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
    run(["-kernel"], needle="requires an argument", name="flag without value")
    run([], needle="-kernel is required", name="no kernel")
    if probe and os.path.exists(probe):
        run(["-kernel", probe, "-initrd", missing], needle="no-such-kernel",
            name="missing initrd")
        run(["-kernel", probe, "-nographic"], env={"KVMLITE_KVM_DEV": os.path.join(d, "kvm")},
            needle="cannot open", name="no /dev/kvm")
        run(["-kernel", probe, "-device", "nosuchdev"], needle="nosuchdev",
            name="unknown device")
        run(["-kernel", probe, "-device", "isa-debug-exit,bogus=1"], needle="bogus",
            name="unknown device property")
        run(["-kernel", probe, "-serial", "tcp:1.2.3.4:5"], needle="tcp:1.2.3.4:5",
            name="bad serial back-end")
        run(["-kernel", probe, "-drive", "file=%s,if=ide" % garbage], needle="ide",
            name="unsupported drive if=")
    else:
        print("note: probe kernel not given; cases needing a valid kernel not run")

print("%d passed, %d failed" % (passed, failures))
sys.exit(1 if failures else 0)
