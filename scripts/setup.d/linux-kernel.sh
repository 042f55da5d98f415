#!/bin/sh
# Build the Linux guest suite's kernel (vmlinux + bzImage) and busybox
# initramfs (tests/linux/).  Both are cached by content hash under
# /var/cache/kvmlite-linux, so only the first run on a machine (about 4 min
# on 2 idle cores) or a changed tests/linux/kvmlite.config pays the build.
# Runs after linux-deps.sh (glob order), which installs the source.
set -eu
cd "$(dirname "$0")/../.."
tests/linux/build-kernel >/dev/null
tests/linux/build-kernel --stock >/dev/null   # without the INT3 self-test patch
tests/linux/build-initramfs >/dev/null
