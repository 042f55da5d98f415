"""Sanitizer reports in the stderr of a kvmlite built with -Db_sanitize=...
(build-asan: AddressSanitizer + LeakSanitizer + UndefinedBehaviorSanitizer),
for the test drivers that start kvmlite themselves (tests/guest/run-*,
tests/qmp/qmplib.py, tests/crash/crash.py).

Such a report must fail the test even when kvmlite's exit status is the one
the test expects: by default ASan, LSan (inside ASan it uses ASan's exit
code, not 23) and UBSan (halt_on_error=1) all exit with status 1, which is
also isa-debug-exit's status for a passing probe.  So the drivers look for
the report on stderr, and take an exit status equal to an exitcode= given in
ASAN_OPTIONS / UBSAN_OPTIONS / LSAN_OPTIONS as a report too (scripts/test
sets exitcode=99 for the sanitizer guest run; that also catches a report
sent elsewhere with log_path=).

Python stdlib only; drivers import it with sys.dont_write_bytecode set.
"""
import os
import re

# "==PID==ERROR: AddressSanitizer: heap-use-after-free ...",
# "==PID==ERROR: LeakSanitizer: detected memory leaks",
# "==PID==LeakSanitizer has encountered a fatal error." (the leak check could
#   not run, e.g. no ptrace; exits with status 1 too),
# "==PID==AddressSanitizer CHECK failed: ...",
# "FILE:LINE:COL: runtime error: ..." (UBSan),
# "SUMMARY: AddressSanitizer: ..." / "SUMMARY: UndefinedBehaviorSanitizer: ...",
# "WARNING: ThreadSanitizer: data race" (a -Db_sanitize=thread build).
_MARKERS = re.compile(r"==\d+==(ERROR: )?\w*Sanitizer|^SUMMARY: \w*Sanitizer|: runtime error: "
                      r"|WARNING: ThreadSanitizer:", re.M)


def exit_codes():
    """Distinctive exit codes (not 0 or 1) the sanitizer options ask for."""
    codes = set()
    for var in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS", "TSAN_OPTIONS"):
        for opt in re.split(r"[:,\s]+", os.environ.get(var, "")):
            key, _, val = opt.partition("=")
            if key == "exitcode" and re.fullmatch(r"\d+", val) and int(val) > 1:
                codes.add(int(val))
    return codes


def _text(stderr):
    if isinstance(stderr, bytes):
        return stderr.decode("utf-8", "replace")
    return stderr or ""


def report(stderr, status=None):
    """None when there is no sanitizer report, else a one-line description.
    status: the VMM's exit status (None or negative when killed/unknown)."""
    text = _text(stderr)
    m = _MARKERS.search(text)
    if m:
        start = text.rfind("\n", 0, m.start()) + 1
        end = text.find("\n", m.end())
        line = text[start:end if end >= 0 else len(text)].strip()
        return "sanitizer report on the VMM's stderr: %s" % line
    if status is not None and status in exit_codes():
        return ("VMM exit status %d is the sanitizer exitcode from ASAN_OPTIONS/UBSAN_OPTIONS "
                "(sanitizer report, not on stderr)" % status)
    return None


def excerpt(stderr, max_lines=80):
    """The report itself: stderr lines from the first marker on."""
    lines = _text(stderr).splitlines()
    for i, line in enumerate(lines):
        if _MARKERS.search(line):
            # include the "=====" rule ASan prints above the ERROR line
            first = i - 1 if i > 0 and lines[i - 1].startswith("=====") else i
            return lines[first:first + max_lines]
    return []
