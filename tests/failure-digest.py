#!/usr/bin/env python3
"""After a failed `meson test` run: every failing test with the lines of its
output that say why, and the host CPU, in a few lines at the end of the log
(CI keeps the log's tail; the full logs of the first failures scroll away).

usage: failure-digest.py BUILD_DIR"""
import json
import os
import re
import sys

WHY = re.compile(r"\bFAIL\b|:[FE]:|Assertion|assertion|ERROR|[Ee]rror:|Traceback|"
                 r"AddressSanitizer|runtime error|timed out|Killed|SIGSEGV|SIGILL")
GOOD = {"OK", "SKIP", "EXPECTEDFAIL"}


def host_cpu():
    info = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                k, _, v = line.partition(":")
                k = k.strip()
                if k in ("vendor_id", "cpu family", "model", "model name", "stepping",
                         "microcode", "flags") and k not in info:
                    info[k] = v.strip()
                if not line.strip() and info:
                    break
    except OSError:
        return "host CPU: /proc/cpuinfo unreadable"
    flags = info.pop("flags", "").split()
    keep = [f for f in flags if re.match(r"xsave|avx512f$|pku|ospke|amx|fxsr_opt|"
                                         r"hypervisor|vmx|svm|x2apic|hybrid", f)]
    return "host CPU: %s; flags: %s" % (", ".join("%s %s" % kv for kv in info.items()),
                                        " ".join(keep))


def main(argv):
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    path = os.path.join(argv[1], "meson-logs", "testlog.json")
    failed = []
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    t = json.loads(line)
                except ValueError:
                    continue
                if t.get("result") not in GOOD:
                    failed.append(t)
    except OSError as e:
        print("failure digest: %s: %s" % (path, e))
        return 0
    print("==== failure digest (%s): %d failing test(s) ====" % (argv[1], len(failed)))
    print(host_cpu())
    for t in failed:
        print("-- %s: %s (exit %s, %.1f s)" % (t.get("name"), t.get("result"),
                                              t.get("returncode"), t.get("duration", 0)))
        out = (t.get("stdout") or "") + "\n" + (t.get("stderr") or "")
        why = [l.strip() for l in out.splitlines() if WHY.search(l)]
        for l in why[:6]:
            print("   " + (l if len(l) <= 400 else l[:400] + " ..."))
        if len(why) > 6:
            print("   ... %d more" % (len(why) - 6))
        if not why:
            tail = [l for l in out.splitlines() if l.strip()][-3:]
            for l in tail:
                print("   | " + l[:400])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
