#!/usr/bin/env python3
"""QMP robustness: 10,000 malformed / hostile messages, then the monitor
still answers and the guest still runs.

usage: test_qmp_robust.py [--vmm kvmlite|qemu] [--count N] VMM_BINARY PROBE_ELF

On one negotiated connection (guest running the probe's `qmp` test):
truncated-but-balanced JSON, wrong member/argument types, unknown commands,
non-objects, invalid UTF-8 (raw bytes and lone surrogate escapes), 10 MiB
strings, 100,000-deep nesting, NUL bytes, huge numbers, stray closers,
written by one thread while another reads.  For kvmlite every message must
get exactly one reply, in order, each a valid error/return shape.  Side
connections: truncated messages followed by a hang-up, binary garbage,
clients that vanish before reading their replies.  Afterwards: query-status
says running on the original and on a new connection, and the guest still
reacts to system_powerdown (prints its power-button line and powers off).
Exit status 0 pass, 1 fail, 77 skip.
"""
import json
import os
import random
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import qmplib  # noqa: E402
from qmplib import QMP, VMM, check_shape  # noqa: E402

MIB = 1 << 20


def hostile(rng, i):
    """One balanced top-level value (bytes) that must not be a success...
    except a few harmless valid queries mixed in."""
    k = i % 23
    if k == 0:
        return b'{"execute": "query-status", "arguments": {"a": }}'  # truncated member
    if k == 1:
        return b'{"execute": "' + b"query-status"[:rng.randint(0, 11)] + b'"}'  # truncated name
    if k == 2:
        return json.dumps({"execute": rng.choice([1, True, None, [], {}, 2.5])}).encode()
    if k == 3:
        return json.dumps({"execute": "query-status", "arguments": rng.choice([[], 1, "x", None])}).encode()
    if k == 4:
        return json.dumps({"execute": "no-such-%d" % i, "id": i}).encode()
    if k == 5:
        return json.dumps({"execute": "human-monitor-command",
                           "arguments": {"command-line": rng.choice([1, None, [], {}])}}).encode()
    if k == 6:
        return json.dumps({"execute": "query-cpus-fast", "arguments": {"x" * rng.randint(1, 50): 1}}).encode()
    if k == 7:
        return rng.choice([b"[1, 2, 3]", b'"just a string"', b"[]", b'[{"execute": "stop"}]'])
    if k == 8:
        return b'{"execute": "query-name", "id": "\xff\xfe' + bytes([rng.randint(0x80, 0xff)]) + b'"}'
    if k == 9:
        return b'{"execute": "query-name", "id": "\\ud800\\u0041"}'
    if k == 10:
        return b'{"execute": "query-name", "id": "a\x00b"}'
    if k == 11:
        return b'{"execute": "query-name", "id": 1' + b"0" * rng.randint(20, 400) + b"}"
    if k == 12:
        return b'{"execute": "query-version", "exec-oob": "x", "control": {}}'
    if k == 13:
        return b'{"id": {"nested": [1, {"a": [null, true, false]}]}}'  # lacks execute
    if k == 14:
        return b'{"execute": "qmp_capabilities", "arguments": {"enable": ["oob", 1]}}'
    if k == 15:
        return b'{"execute": "query-status", "arguments": {}, "id": [' + b"[" * 200 + b"]" * 200 + b"]}"
    if k == 16:
        return b'{"execute" "query-status"}'  # missing colon
    if k == 17:
        return b'{"execute": "query-status",}'  # trailing comma
    if k == 18:
        return b"{" + b'"a":1,' * rng.randint(1, 2000) + b'"execute": 7}'
    if k == 19:
        return b"{\"execute\": 'query-status'}"  # single quotes
    if k == 20:
        return b'{"execute": "human-monitor-command", "arguments": {"command-line": "info ' + \
            bytes(rng.choice(b"abcdefgh") for _ in range(rng.randint(1, 30))) + b'"}}'
    if k == 21:
        return b'{"execute": "query-kvm", "id": ' + json.dumps("\u00e9\U0001F600" * rng.randint(1, 100)).encode() + b"}"
    return b'{"execute": "query-blockstats", "arguments": {"query-nodes": "yes"}}'


def big_messages():
    ten = 10 * MIB
    yield b'{"execute": "query-name", "id": "' + b"A" * ten + b'"}'
    yield b'{"execute": "query-name", "arguments": {"' + b"k" * ten + b'": 1}}'
    yield b"[" * 100000 + b"]" * 100000
    yield b'{"a": ' + b'{"b": ' * 50000 + b"1" + b"}" * 50000 + b"}"
    yield b'[' + b'"\\"\\\\",' * (2 * MIB) + b"1]"  # 14 MiB of escapes


def side_connections(path, failures):
    """Clients that misbehave and vanish."""
    payloads = [b'{"execute": "qmp_capabilities"}{"execute": "query-st',
                b'{"execute": "qmp_capabilities"}' + b"[" * 5000,
                bytes(range(256)) * 64,
                b'{"execute": "qmp_capabilities"}' + b'{"execute": "query-commands"}' * 2000,
                b'"' + b"x" * (3 * MIB)]
    for n in range(60):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            # QEMU stops listening while its one client is connected: retry
            for attempt in range(100):
                try:
                    s.connect(path)
                    break
                except (ConnectionRefusedError, FileNotFoundError):
                    if attempt == 99:
                        raise
                    time.sleep(0.02)
            s.sendall(payloads[n % len(payloads)])
        except OSError as e:
            failures.append("side connection %d: %s" % (n, e))
        finally:
            s.close()


def main():
    args = sys.argv[1:]
    flavour, count = "kvmlite", 10000
    while args and args[0].startswith("--"):
        if args[0] == "--vmm":
            flavour, args = args[1], args[2:]
        elif args[0] == "--count":
            count, args = int(args[1]), args[2:]
        else:
            print(__doc__)
            return 2
    binary, probe, status = qmplib.preflight(__doc__, args)
    if status is not None:
        return status
    failures = []
    extra, cmdline = [], "wait=900"
    if flavour == "qemu":
        extra, cmdline = ["-M", "pc"], "wait=900 s5=0"
    vm = VMM(flavour, binary, probe, "qmp", extra=extra, cmdline=cmdline)
    print("vmm: %s" % " ".join(vm.cmd), flush=True)
    try:
        q = QMP(vm.sock, timeout=120)
        q.cmd("qmp_capabilities")
        q.cmd("cont")
        vm.wait_serial("PROBE READY boot=1", 120)
        rng = random.Random(1234)
        msgs = [hostile(rng, i) for i in range(count)]
        bigs = list(big_messages())
        # bigs spread through the stream; the last message is the sync point
        for j, b in enumerate(bigs):
            msgs.insert((j + 1) * len(msgs) // (len(bigs) + 1), b)
        total = len(msgs)
        msgs.append(b'{"execute": "query-status", "id": "sync-final"}')
        print("sending %d hostile messages (%.1f MiB) + sync" %
              (total, sum(len(m) for m in msgs) / MIB), flush=True)
        werr = []

        def writer():
            try:
                for m in msgs:
                    q.sock.sendall(m + (b"\n" if len(m) < 1000 else b""))
            except OSError as e:
                werr.append(str(e))
        t0 = time.monotonic()
        wt = threading.Thread(target=writer)
        wt.start()
        st = threading.Thread(target=side_connections, args=(vm.sock2, failures))
        st.start()
        replies, bad_shape, successes, events, bad_json = 0, 0, 0, 0, 0
        while True:
            try:
                m = q.recv(300)
            except ValueError as e:  # a line that is not JSON (QEMU: "inf")
                bad_json += 1
                replies += 1
                if bad_json < 5:
                    print("  output line is not JSON: %s" % e)
                continue
            if "event" in m:
                events += 1
                continue
            if m.get("id") == "sync-final":
                final = m
                break
            replies += 1
            if "return" in m:
                successes += 1
                errs = []
                if successes < 4:
                    print("  success reply: %r" % str(m)[:200])
            else:
                errs = check_shape(m, qmplib.ERROR)
            if errs:
                bad_shape += 1
                if bad_shape < 5:
                    print("  bad reply shape: %s: %r" % (errs, str(m)[:200]))
        wt.join()
        st.join()
        dt = time.monotonic() - t0
        print("got %d replies (%d successes, %d events) to %d messages in %.1f s" %
              (replies, successes, events, total, dt), flush=True)
        if werr:
            failures.append("writer: %s" % werr)
        # QEMU itself answers some hostile input with several errors or with
        # non-JSON ("inf"); for the peer these are reported, not failures.
        strict = failures if flavour == "kvmlite" else []
        notes = []
        if bad_json:
            (strict if flavour == "kvmlite" else notes).append("%d output lines are not JSON" % bad_json)
        if bad_shape:
            (strict if flavour == "kvmlite" else notes).append("%d replies with a bad shape" % bad_shape)
        if replies != total:
            (strict if flavour == "kvmlite" else notes).append(
                "expected exactly one reply per message: %d replies, %d messages" % (replies, total))
        for n in notes:
            print("note (%s): %s" % (flavour, n))
        if final.get("return", {}).get("status") != "running":
            failures.append("query-status after the flood: %r" % final)
        q2 = QMP(vm.sock2)
        q2.cmd("qmp_capabilities")
        st2 = q2.cmd("query-status")
        if st2.get("status") != "running":
            failures.append("new connection: query-status %r" % st2)
        # the guest still runs: it answers the power button
        q.cmd("system_powerdown")
        vm.wait_serial("qmp: power button pressed", 120)
        e = q.wait_event("SHUTDOWN", 60)
        if e.get("data") != {"guest": True, "reason": "guest-shutdown"}:
            failures.append("SHUTDOWN event %r" % e)
        rc = vm.wait_exit(30)
        if rc != 0:
            failures.append("exit status %r" % rc)
    except (qmplib.QMPError, OSError, ValueError) as e:
        failures.append("aborted: %s" % e)
    finally:
        if failures:
            print("serial tail: %s" % vm.lines[-10:])
            print("stderr: %s" % vm.stderr_text()[-2000:])
        vm.stop()
    return qmplib.verdict(failures)


if __name__ == "__main__":
    sys.exit(main())
