"""Shared helpers for the QMP integration tests (python3 stdlib only):
a small QMP client, VMM launchers (kvmlite / QEMU) for the probe guest, and
reply-shape schemas hand-written from the QEMU 7.2 QAPI documentation
(qapi/control.json, misc.json, run-state.json, machine.json, block-core.json,
char.json, qapi/error.json, docs/interop/qmp-spec.txt)."""
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), ".."))
import sanitizers  # noqa: E402  (tests/sanitizers.py)

SKIP = 77

# ---------------------------------------------------------------- schemas
# A schema is: a type (str, int, bool, float), "any", ("list", elem),
# ("enum", {values}), or a dict {key: schema}; keys ending in "?" are optional.
RUNSTATE = ("enum", {"debug", "inmigrate", "internal-error", "io-error", "paused",
                     "postmigrate", "prelaunch", "finish-migrate", "restore-vm",
                     "running", "save-vm", "shutdown", "suspended", "watchdog",
                     "guest-panicked", "colo"})
SHUTDOWN_CAUSE = ("enum", {"none", "host-error", "host-qmp-quit", "host-qmp-system-reset",
                           "host-signal", "host-ui", "guest-shutdown", "guest-reset",
                           "guest-panic", "subsystem-reset", "snapshot-load"})
VERSION_INFO = {"qemu": {"major": int, "minor": int, "micro": int}, "package": str}
GREETING = {"QMP": {"version": VERSION_INFO, "capabilities": ("list", ("enum", {"oob"}))}}
STATUS_INFO = {"running": bool, "singlestep": bool, "status": RUNSTATE}
NAME_INFO = {"name?": str}
UUID_INFO = {"UUID": str}
KVM_INFO = {"enabled": bool, "present": bool}
CPU_PROPS = {"node-id?": int, "socket-id?": int, "die-id?": int, "cluster-id?": int,
             "core-id?": int, "thread-id?": int}
CPU_INFO_FAST = {"cpu-index": int, "qom-path": str, "thread-id": int, "props?": CPU_PROPS,
                 "target": str}
CHARDEV_INFO = {"label": str, "filename": str, "frontend-open": bool}
IMAGE_INFO = {"filename": str, "format": str, "dirty-flag?": bool, "actual-size?": int,
              "virtual-size": int, "cluster-size?": int, "encrypted?": bool,
              "compressed?": bool, "backing-filename?": str, "full-backing-filename?": str,
              "backing-filename-format?": str, "snapshots?": ("list", "any"),
              "backing-image?": "any", "format-specific?": "any"}
CACHE_INFO = {"writeback": bool, "direct": bool, "no-flush": bool}
BLOCK_DEVICE_INFO = {
    "file": str, "node-name?": str, "ro": bool, "drv": str, "backing_file?": str,
    "backing_file_depth": int, "encrypted": bool,
    "detect_zeroes": ("enum", {"off", "on", "unmap"}),
    "bps": int, "bps_rd": int, "bps_wr": int, "iops": int, "iops_rd": int, "iops_wr": int,
    "image": IMAGE_INFO, "bps_max?": int, "bps_rd_max?": int, "bps_wr_max?": int,
    "iops_max?": int, "iops_rd_max?": int, "iops_wr_max?": int,
    "bps_max_length?": int, "bps_rd_max_length?": int, "bps_wr_max_length?": int,
    "iops_max_length?": int, "iops_rd_max_length?": int, "iops_wr_max_length?": int,
    "iops_size?": int, "group?": str, "cache": CACHE_INFO, "write_threshold": int,
    "dirty-bitmaps?": ("list", "any")}
BLOCK_INFO = {"device": str, "qdev?": str, "type": str, "removable": bool, "locked": bool,
              "inserted?": BLOCK_DEVICE_INFO, "tray_open?": bool,
              "io-status?": ("enum", {"ok", "failed", "nospace"}),
              "dirty-bitmaps?": ("list", "any")}
BLOCK_DEVICE_STATS = {k: int for k in (
    "rd_bytes", "wr_bytes", "unmap_bytes", "rd_operations", "wr_operations",
    "flush_operations", "unmap_operations", "rd_total_time_ns", "wr_total_time_ns",
    "flush_total_time_ns", "unmap_total_time_ns", "wr_highest_offset", "rd_merged",
    "wr_merged", "unmap_merged", "failed_rd_operations", "failed_wr_operations",
    "failed_flush_operations", "failed_unmap_operations", "invalid_rd_operations",
    "invalid_wr_operations", "invalid_flush_operations", "invalid_unmap_operations")}
BLOCK_DEVICE_STATS.update({"idle_time_ns?": int, "account_invalid": bool,
                           "account_failed": bool, "timed_stats": ("list", "any"),
                           "rd_latency_histogram?": "any", "wr_latency_histogram?": "any",
                           "flush_latency_histogram?": "any"})
BLOCK_STATS = {"device?": str, "qdev?": str, "node-name?": str, "stats": BLOCK_DEVICE_STATS,
               "driver-specific?": "any", "parent?": "any", "backing?": "any"}
COMMAND_INFO = {"name": str}
EMPTY = {}
ERROR = {"error": {"class": ("enum", {"GenericError", "CommandNotFound", "DeviceNotActive",
                                      "DeviceNotFound", "KVMMissingCap"}), "desc": str},
         "id?": "any"}
TIMESTAMP = {"seconds": int, "microseconds": int}
CAUSE_DATA = {"guest": bool, "reason": SHUTDOWN_CAUSE}
EVENTS = {
    "STOP": {"event": str, "timestamp": TIMESTAMP},
    "RESUME": {"event": str, "timestamp": TIMESTAMP},
    "POWERDOWN": {"event": str, "timestamp": TIMESTAMP},
    "RESET": {"event": str, "timestamp": TIMESTAMP, "data": CAUSE_DATA},
    "SHUTDOWN": {"event": str, "timestamp": TIMESTAMP, "data": CAUSE_DATA},
}
RETURNS = {
    "qmp_capabilities": EMPTY, "query-version": VERSION_INFO,
    "query-commands": ("list", COMMAND_INFO), "query-status": STATUS_INFO,
    "stop": EMPTY, "cont": EMPTY, "system_reset": EMPTY, "system_powerdown": EMPTY,
    "quit": EMPTY, "query-name": NAME_INFO, "query-uuid": UUID_INFO, "query-kvm": KVM_INFO,
    "query-cpus-fast": ("list", CPU_INFO_FAST), "query-block": ("list", BLOCK_INFO),
    "query-blockstats": ("list", BLOCK_STATS), "query-chardev": ("list", CHARDEV_INFO),
    "human-monitor-command": str,
    "query-named-block-nodes": ("list", BLOCK_DEVICE_INFO),
    "blockdev-add": EMPTY, "blockdev-del": EMPTY,
    "blockdev-snapshot-internal-sync": EMPTY, "blockdev-snapshot-sync": EMPTY,
    "blockdev-snapshot": EMPTY,
    "blockdev-snapshot-delete-internal-sync": {
        "id": str, "name": str, "vm-state-size": int, "date-sec": int, "date-nsec": int,
        "vm-clock-sec": int, "vm-clock-nsec": int, "icount?": int},
}


def check_shape(value, schema, path="$"):
    """Return a list of 'path: problem' strings (empty: matches)."""
    errs = []
    if schema == "any":
        return errs
    if isinstance(schema, tuple) and schema[0] == "list":
        if not isinstance(value, list):
            return ["%s: expected array, got %s" % (path, type(value).__name__)]
        for i, v in enumerate(value):
            errs += check_shape(v, schema[1], "%s[%d]" % (path, i))
        return errs
    if isinstance(schema, tuple) and schema[0] == "enum":
        if not isinstance(value, str) or value not in schema[1]:
            return ["%s: %r is not one of %s" % (path, value, sorted(schema[1]))]
        return errs
    if isinstance(schema, dict):
        if not isinstance(value, dict):
            return ["%s: expected object, got %s" % (path, type(value).__name__)]
        keys = {k.rstrip("?"): k.endswith("?") for k in schema}
        for k, opt in keys.items():
            if k not in value and not opt:
                errs.append("%s: missing member '%s'" % (path, k))
        for k, v in value.items():
            if k not in keys:
                errs.append("%s: unexpected member '%s'" % (path, k))
                continue
            sk = k + "?" if keys[k] else k
            errs += check_shape(v, schema[sk], "%s.%s" % (path, k))
        return errs
    if schema is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif schema is bool:
        ok = isinstance(value, bool)
    elif schema is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    else:
        ok = isinstance(value, schema)
    if not ok:
        errs.append("%s: expected %s, got %r" % (path, schema.__name__, value))
    return errs


def shape_of(value):
    """Structure without values: for side-by-side diffs."""
    if isinstance(value, dict):
        return {k: shape_of(v) for k, v in sorted(value.items())}
    if isinstance(value, list):
        # union of element shapes, in order of first appearance
        out = []
        for v in value:
            s = shape_of(v)
            if s not in out:
                out.append(s)
        return out
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    return "null"


# ---------------------------------------------------------------- client
class QMPError(Exception):
    pass


class QMP:
    """Client end of a QMP connection: connects to the unix socket at path,
    or (path None) takes an already connected socket (e.g. one accepted
    from a VMM in client mode); reads the greeting."""

    def __init__(self, path, timeout=20.0, sock=None):
        if sock is None:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock = sock
        deadline = time.monotonic() + timeout
        while path is not None:
            try:
                self.sock.connect(path)
                break
            except (FileNotFoundError, ConnectionRefusedError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self.buf = b""
        self.events = []
        self.timeout = timeout
        self.greeting = self.recv()

    def close(self):
        self.sock.close()

    def send_raw(self, data):
        if isinstance(data, str):
            data = data.encode()
        self.sock.sendall(data)

    def recv(self, timeout=None):
        """Next JSON line (any kind)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise QMPError("timeout waiting for QMP output")
            r, _, _ = select.select([self.sock], [], [], left)
            if not r:
                continue
            d = self.sock.recv(1 << 20)
            if not d:
                raise QMPError("QMP connection closed")
            self.buf += d
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line.decode("utf-8"))

    def response(self, timeout=None):
        """Next return/error, stashing events."""
        while True:
            m = self.recv(timeout)
            if "event" in m:
                self.events.append(m)
                continue
            return m

    def cmd_raw(self, name, args=None, id=None):
        msg = {"execute": name}
        if args is not None:
            msg["arguments"] = args
        if id is not None:
            msg["id"] = id
        self.send_raw(json.dumps(msg))
        return self.response()

    def cmd(self, name, args=None):
        r = self.cmd_raw(name, args)
        if "return" not in r:
            raise QMPError("%s failed: %r" % (name, r))
        return r["return"]

    def wait_event(self, name, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            for i, e in enumerate(self.events):
                if e["event"] == name:
                    return self.events.pop(i)
            left = deadline - time.monotonic()
            if left <= 0:
                raise QMPError("timeout waiting for event %s (have %s)" %
                               (name, [e["event"] for e in self.events]))
            m = self.recv(left)
            if "event" in m:
                self.events.append(m)
            else:
                raise QMPError("unexpected reply while waiting for %s: %r" % (name, m))


# ---------------------------------------------------------------- VMM
# Sanitizer reports of every VMM stopped so far (VMM.stop), as failures.
sanitizer_failures = []


# Failed checks of the running test script (check()), for verdict().
failures = []


def check(cond, what):
    """Print one ok/FAIL line; a failed check is remembered in failures."""
    print("  %s %s" % ("ok  " if cond else "FAIL", what), flush=True)
    if not cond:
        failures.append(what)
    return cond


def verdict(failures):
    """Print the failed checks (or PASS); return the test's exit status.
    A sanitizer report of any VMM run (see VMM.stop) is a failure too."""
    failures = failures + sanitizer_failures
    if failures:
        print("FAIL: %d check(s) failed:" % len(failures))
        for f in failures:
            print("  - " + f)
        return 1
    print("PASS")
    return 0


def main_args(doc, argv):
    """[--vmm FLAVOUR] BINARY PROBE, then preflight(): returns
    (flavour, binary, probe, status) with status None to go on."""
    flavour = "kvmlite"
    if argv[:1] == ["--vmm"]:
        flavour, argv = argv[1], argv[2:]
    binary, probe, status = preflight(doc, argv)
    return flavour, binary, probe, status


def preflight(doc, args):
    """Common start of the QMP test scripts: args are BINARY PROBE (after
    their own options).  Returns (binary, probe, None) to go on, or
    (None, None, status): 2 for bad usage (doc printed), SKIP without a
    usable /dev/kvm, 1 when the binary is missing."""
    if len(args) != 2:
        print(doc)
        return None, None, 2
    binary, probe = args
    why = kvm_usable()
    if why:
        print("SKIP: %s" % why)
        return None, None, SKIP
    if not os.access(binary, os.X_OK):
        print("FAIL: VMM binary %r not found" % binary)
        return None, None, 1
    return binary, probe, None


def kvm_usable():
    dev = os.environ.get("KVMLITE_KVM_DEV", "/dev/kvm")
    try:
        fd = os.open(dev, os.O_RDWR | os.O_CLOEXEC)
    except OSError as e:
        return "cannot open %s read-write: %s" % (dev, e.strerror or e)
    os.close(fd)
    return None


class VMM:
    """kvmlite or QEMU running the probe guest with -S (paused=False: without)
    and a QMP socket.  Serial output (stdout) and stderr are collected by
    threads (stderr_text() while it runs too)."""

    def __init__(self, flavour, binary, probe, test, extra=(), cmdline="", qmp_args=None,
                 paused=True):
        self.dir = tempfile.mkdtemp(prefix="klqmp-")
        self.sock = os.path.join(self.dir, "qmp.sock")
        # QEMU and kvmlite serve one client per socket (the next waits in
        # the backlog): a second -qmp for the second client.
        self.sock2 = os.path.join(self.dir, "qmp2.sock")
        append = "test=" + test + (" " + cmdline if cmdline else "")
        self.append = append
        cmd = [binary]
        if flavour == "qemu":
            cmd += ["-enable-kvm", "-cpu", "qemu64", "-no-user-config", "-nodefaults"]
            if "-M" not in extra:
                cmd += ["-M", "microvm"]
            cmd += ["-serial", "stdio", "-display", "none"]
        else:
            cmd += ["-nographic"]
        cmd += ["-m", "64", "-kernel", probe, "-append", append] + (["-S"] if paused else [])
        cmd += ["-device", "isa-debug-exit,iobase=0xf4,iosize=4",
                "-qmp", qmp_args or ("unix:%s,server=on,wait=off" % self.sock)]
        if self.sock2 != self.sock:
            cmd += ["-qmp", "unix:%s,server=on,wait=off" % self.sock2]
        cmd += list(extra)
        self.cmd = cmd
        self.lines = []
        self.cv = threading.Condition()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, start_new_session=True)
        self.err = b""
        threading.Thread(target=self._reader, daemon=True).start()
        self.ethread = threading.Thread(target=self._ereader, daemon=True)
        self.ethread.start()

    def _reader(self):
        for raw in self.proc.stdout:
            with self.cv:
                self.lines.append(raw.decode("utf-8", "replace").rstrip("\r\n"))
                self.cv.notify_all()

    def _ereader(self):
        fd = self.proc.stderr.fileno()
        while True:
            d = os.read(fd, 65536)
            if not d:
                break
            self.err += d

    def wait_serial(self, text, timeout=60.0, start=0):
        """Index of the first line (from start) containing text."""
        deadline = time.monotonic() + timeout
        with self.cv:
            while True:
                for i in range(start, len(self.lines)):
                    if text in self.lines[i]:
                        return i
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self.cv.wait(0.2)):
                    if left <= 0 or self.proc.poll() is not None:
                        raise QMPError("serial: no %r within %.0f s; last lines: %s" %
                                       (text, timeout, self.lines[-8:]))
                self.cv.wait(min(left, 0.5))

    def wait_exit(self, timeout=20.0):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self):
        killed = self.proc.poll() is None
        if killed:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
        # A sanitizer report (e.g. LeakSanitizer at exit) fails the test even
        # when the exit status looked right: ASan/UBSan exit 1 by default.
        self.ethread.join(10)
        san = sanitizers.report(self.err, None if killed else self.proc.returncode)
        if san:
            sanitizer_failures.append("%s (-append %r): %s" % (os.path.basename(self.cmd[0]),
                                                               self.append, san))
            print("sanitizer report of %s:" % " ".join(self.cmd))
            for line in sanitizers.excerpt(self.err):
                print("  ! " + line)

    def stderr_text(self):
        return self.err.decode("utf-8", "replace")
