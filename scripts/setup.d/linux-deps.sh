#!/bin/sh
# Packages needed by the Linux guest suite (tests/linux/): kernel source and
# the tools to build it (tests/linux/build-kernel) and a busybox initramfs
# (tests/linux/build-initramfs).  Installs only what is missing.
set -eu
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
PKGS="linux-source-6.1 make gcc bc bison flex libelf-dev libssl-dev xz-utils
      lz4 busybox-static cpio e2fsprogs python3"
missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing="$missing $p"
done
if [ -n "$missing" ]; then
	echo "setup.d/linux-deps: installing:$missing"
	$SUDO apt-get update -qq
	# shellcheck disable=SC2086
	$SUDO apt-get install -y -qq --no-install-recommends $missing
fi
