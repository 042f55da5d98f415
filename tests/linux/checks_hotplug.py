"""Hot-plug checks of tests/linux/run-linux (issue 15; docs/hotplug.md).

run-linux imports this module and calls checks(lib) with its own namespace
(Fail, Skip, PARKED, need_userspace, ...): the helpers have one copy, there.
Every check runs on kvmlite and on QEMU 7.2 -M pc (QEMU's microvm has
neither ACPI PCI hot-plug nor CPU hot-plug).
"""

import json
import os
import socket
import time

class _Lib:
    """run-linux's globals, looked up when used (not a copy)."""

    def __init__(self, names):
        self.names = names

    def __getattr__(self, name):
        try:
            return self.names[name]
        except KeyError:
            raise AttributeError(name)


L = None  # set by checks()


def checks(lib):
    """The hot-plug checks for run-linux's CHECKS; lib: its globals()."""
    global L
    L = _Lib(lib)
    return [("cpuhp", check_cpuhp), ("cpuhp-userspace", check_cpuhp_userspace),
            ("pcihp", check_pcihp), ("pcihp-microvm", check_pcihp_microvm),
            ("pcihp-userspace", check_pcihp_userspace)]


# --- vCPU hot-plug -----------------------------------------------------------

def hotplug_cpu(g, dev_id):
    """device_add the lowest empty CPU slot (type and props as the VMM's
    query-hotpluggable-cpus says); its slot."""
    free = [c for c in g.qmp("query-hotpluggable-cpus") if "qom-path" not in c]
    if not free:
        raise L.Fail("query-hotpluggable-cpus lists no empty slot")
    slot = free[-1]
    args = dict(slot["props"], driver=slot["type"], id=dev_id)
    g.qmp("device_add", arguments=args)
    return slot["props"]


def wait_slot_empty(g, props, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for c in g.qmp("query-hotpluggable-cpus"):
            if c["props"] == props and "qom-path" not in c:
                return
        time.sleep(1)
    raise L.Fail("CPU slot %r still plugged %d s after device_del (no guest eject)"
                 % (props, timeout))


def check_cpuhp(ctx):
    """-smp 1,maxcpus=2, kernel only (parked): device_add of a CPU -> the
    kernel's ACPI processor driver hot-adds CPU 1 (GPE 2, CSCN, Notify);
    device_del -> the kernel ejects it (_EJ0) and the slot is empty again.
    QEMU: -M pc (its microvm has no CPU hot-plug)."""
    g = ctx.guest("cpuhp", [], L.PARKED, smp="1,maxcpus=2", qemu_machine="pc")
    i, _, _ = g.wait_for(L.PARKED_LINE, what="boot")
    props = hotplug_cpu(g, "cpu1")
    g.wait_for(r"CPU1 has been hot-added", 120, start=i, what="ACPI hot-add of CPU 1")
    g.qmp("device_del", arguments={"id": "cpu1"})
    wait_slot_empty(g, props, 120)


def check_cpuhp_userspace(ctx):
    """-smp 1,maxcpus=2: a CPU added with device_add once user space runs is
    brought online (init writes /sys/devices/system/cpu/cpu1/online, as
    udev would) and a process pinned to it runs there."""
    L.need_userspace(ctx)
    g = ctx.guest("cpuhp-us", [], "kl.test=cpuhp", smp="1,maxcpus=2", initrd="busybox",
                  qemu_machine="pc")
    i, _, _ = g.wait_for(r"KL-READY cpuhp", 600, what="init waiting for a CPU")
    hotplug_cpu(g, "cpu1")
    g.wait_for(r"smpboot: Booting Node 0 Processor 1", 300, start=i, what="CPU 1 brought up")
    g.wait_for(r"KL-PASS cpuhp|KL-FAIL cpuhp", 300, start=i, what="guest script")
    g.wait_for(r"KL-PASS cpuhp", 0, start=i, what="guest script result")
    g.wait_for(r"KL-INIT: powering off", 120, what="init script")
    rc = g.wait_exit(60)
    if rc != 0:
        raise L.Fail("poweroff: VMM exit status %d, wanted 0" % rc)


# --- PCI hot-plug ------------------------------------------------------------

class QmpEvents:
    """One QMP connection kept open for a whole check, so that no event is
    missed (Guest.qmp opens a fresh connection per command)."""

    def __init__(self, path, timeout=10):
        deadline = time.monotonic() + timeout
        while not os.path.exists(path):
            if time.monotonic() > deadline:
                raise L.Fail("QMP socket %s never appeared" % path)
            time.sleep(0.05)
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.connect(path)
        self.buf = b""
        self.events = []
        if "QMP" not in self._recv(10):
            raise L.Fail("bad QMP greeting")
        self.cmd("qmp_capabilities")

    def _recv(self, timeout):
        """One message, or None if none came in timeout seconds."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self.s.settimeout(left)
            try:
                chunk = self.s.recv(65536)
            except socket.timeout:
                return None
            if not chunk:
                raise L.Fail("QMP connection closed")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def cmd(self, command, **arguments):
        msg = {"execute": command}
        if arguments:
            msg["arguments"] = arguments
        self.s.sendall(json.dumps(msg).encode() + b"\r\n")
        while True:
            r = self._recv(30)
            if r is None:
                raise L.Fail("QMP %s: no reply in 30 s" % command)
            if "event" in r:
                self.events.append(r)
                continue
            if "return" not in r:
                raise L.Fail("QMP %s %r failed: %r" % (command, arguments, r))
            return r["return"]

    def pump(self, timeout):
        """Read events for up to timeout seconds (returns at the first)."""
        r = self._recv(timeout)
        if r is not None:
            if "event" not in r:
                raise L.Fail("unexpected QMP reply %r" % r)
            self.events.append(r)

    def deleted(self, dev_id):
        return [e for e in self.events if e["event"] == "DEVICE_DELETED"
                and e.get("data", {}).get("device") == dev_id]

    def wait_deleted(self, dev_id, g, timeout):
        deadline = time.monotonic() + timeout
        while not self.deleted(dev_id):
            if time.monotonic() > deadline:
                raise L.Fail("no DEVICE_DELETED for %s %d s after device_del (events: %r)"
                             % (dev_id, timeout, [e["event"] for e in self.events]))
            if g.proc.poll() is not None:
                raise L.Fail("VMM exited waiting for DEVICE_DELETED of %s" % dev_id)
            self.pump(1)

    def close(self):
        self.s.close()


def check_pcihp(ctx):
    pcihp(ctx, "pc")


def check_pcihp_microvm(ctx):
    """pcihp on kvmlite's -M microvm,pcie=on (QEMU's microvm has no ACPI
    PCI hot-plug: skipped there)."""
    if ctx.vmm != "kvmlite":
        raise L.Skip("QEMU's microvm has no ACPI PCI hot-plug (the pcihp check runs -M pc)")
    pcihp(ctx, "microvm,pcie=on")


def pcihp(ctx, machine):
    """Kernel only (parked, loglevel=8): device_add of a virtio-blk-pci disk
    (a -drive if=none drive) and of a virtio-net-pci NIC (netdev_add user)
    -> acpiphp scans the slots and assigns their BARs, virtio_blk names
    vdb (vda is cold-plugged); device_del of both -> the kernel ejects them
    (it logs nothing then), and DEVICE_DELETED comes only after that: with
    the vCPUs stopped (QMP stop) the guest cannot eject and no DEVICE_DELETED
    may come; after cont both do.  -M pc on both VMMs (QEMU's microvm has
    no ACPI PCI hot-plug; kvmlite's microvm,pcie=on: see docs/hotplug.md)."""
    imgs = []
    for n in ("cold", "hot"):
        imgs.append(os.path.join(ctx.tmp, n + ".img"))
        with open(imgs[-1], "wb") as f:
            f.truncate((8 if n == "cold" else 16) << 20)
    g = ctx.guest("pcihp", ["-drive", "file=%s,if=none,id=d0,format=raw" % imgs[0],
                            "-device", "virtio-blk-pci,drive=d0,addr=4",
                            "-drive", "file=%s,if=none,id=d1,format=raw" % imgs[1]],
                  L.PARKED, machine=machine)
    g.wait_for(r"virtio_blk virtio\d+: \[vda\] 16384 512-byte", what="cold-plugged vda")
    i, _, _ = g.wait_for(L.PARKED_LINE, what="boot")
    q = QmpEvents(g.qmp_path)
    try:
        q.cmd("device_add", driver="virtio-blk-pci", drive="d1", id="hd1", addr="5")
        j, _, _ = g.wait_for(r"virtio_blk virtio\d+: \[vdb\] 32768 512-byte logical blocks",
                             300, start=i, what="vdb after device_add")
        q.cmd("netdev_add", type="user", id="n1")
        q.cmd("device_add", driver="virtio-net-pci", netdev="n1", id="nic1", addr="6",
              mac="52:54:00:12:34:77")
        g.wait_for(r"pci 0000:00:06\.0: \[1af4:10(00|41)\] type 00 class 0x020000", 300, start=j,
                   what="PCI scan of the hot-added NIC")
        # acpiphp assigned the NIC's BARs (virtio_net logs nothing at probe;
        # "enabling device" shows only where the BARs came unassigned: QEMU)
        g.wait_for(r"pci 0000:00:06\.0: BAR 1 \[mem 0x[0-9a-f]+-0x[0-9a-f]+\]: assigned", 300,
                   start=j, what="the NIC's BARs assigned by acpiphp")
        for e in q.events:
            if e["event"] == "DEVICE_DELETED":
                raise L.Fail("DEVICE_DELETED before any device_del: %r" % e)
        q.cmd("stop")
        q.cmd("device_del", id="hd1")
        q.cmd("device_del", id="nic1")
        for _ in range(10):      # 10 s stopped: the guest cannot eject now
            q.pump(1)
        if q.deleted("hd1") or q.deleted("nic1"):
            raise L.Fail("DEVICE_DELETED while the guest's vCPUs were stopped (it could not "
                         "have ejected): %r" % q.events)
        q.cmd("cont")
        q.wait_deleted("hd1", g, 300)
        q.wait_deleted("nic1", g, 300)
    finally:
        q.close()
    pci = g.qmp("query-pci")
    left = [d for b in pci for d in b["devices"] if d["slot"] in (5, 6)]
    if left:
        raise L.Fail("query-pci still lists slot 5/6 after DEVICE_DELETED: %r" % left)


def check_pcihp_userspace(ctx):
    """-M pc, busybox init, one cold-plugged virtio-net-pci NIC (eth0):
    netdev_add user + device_add virtio-net-pci once init waits; init sees
    /sys/class/net/eth1, sets it up (promisc on, so that the kernel names
    it: "device eth1 entered promiscuous mode"; virtio_net logs nothing when
    it binds) and gets a lease on it with busybox udhcpc (slirp: 10.0.2.15
    on each user netdev); then device_del: init sees eth1 go and
    DEVICE_DELETED comes."""
    L.need_userspace(ctx)
    g = ctx.guest("pcihp-us", ["-netdev", "user,id=n0",
                               "-device", "virtio-net-pci,netdev=n0,addr=4"],
                  "kl.test=pcihp", initrd="busybox", machine="pc")
    i, _, _ = g.wait_for(r"KL-READY pcihp$", 600, what="init waiting for eth1")
    q = QmpEvents(g.qmp_path)
    try:
        q.cmd("netdev_add", type="user", id="n1")
        q.cmd("device_add", driver="virtio-net-pci", netdev="n1", id="nic1", addr="6",
              mac="52:54:00:12:34:77")
        g.wait_for(r"device eth1 entered promiscuous mode", 300, start=i,
                   what="the kernel naming eth1")
        j, _, m = g.wait_for(r"KL-LEASE (\S+) (\S+) from (\S+)|KL-FAIL pcihp", 300, start=i,
                             what="a DHCP lease on eth1")
        if m.group(0).startswith("KL-FAIL"):
            raise L.Fail("guest script: %s" % m.group(0))
        if m.groups() != ("eth1", "10.0.2.15", "10.0.2.2"):
            raise L.Fail("wanted a lease of 10.0.2.15 from 10.0.2.2 on eth1: %r" % m.group(0))
        j, _, _ = g.wait_for(r"KL-READY pcihp-unplug|KL-FAIL pcihp", 300, start=j,
                             what="udhcpc done")
        for e in q.events:
            if e["event"] == "DEVICE_DELETED":
                raise L.Fail("DEVICE_DELETED before any device_del: %r" % e)
        q.cmd("device_del", id="nic1")
        g.wait_for(r"KL-PASS pcihp|KL-FAIL pcihp", 300, start=j, what="eth1 removed")
        g.wait_for(r"KL-INIT: eth1 gone", 0, start=j, what="guest script result")
        g.wait_for(r"KL-PASS pcihp", 0, start=j, what="guest script result")
        q.wait_deleted("nic1", g, 300)
    finally:
        q.close()
    g.wait_for(r"KL-INIT: powering off", 120, what="init script")
    rc = g.wait_exit(60)
    if rc != 0:
        raise L.Fail("poweroff: VMM exit status %d, wanted 0" % rc)
