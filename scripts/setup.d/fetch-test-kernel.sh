#!/bin/sh
# Fetch Debian's cloud bzImage for the boot-loader unit tests (tests/unit/hw).
# Downloads (does not install) the linux-image-*-cloud-amd64 package that the
# linux-image-cloud-amd64 metapackage depends on, extracts /boot/vmlinuz-*
# and leaves a stable path: $KVMLITE_TEST_CACHE/vmlinuz
# (default /var/cache/kvmlite-test/vmlinuz).  Idempotent.
set -eu
CACHE=${KVMLITE_TEST_CACHE:-/var/cache/kvmlite-test}
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo

if [ -s "$CACHE/vmlinuz" ]; then
	exit 0
fi
$SUDO mkdir -p "$CACHE"

pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
	sed -n 's/^ *Depends: *\(linux-image-[^ ]*-cloud-amd64\)$/\1/p' | head -n1)
if [ -z "$pkg" ]; then
	$SUDO apt-get update -qq
	pkg=$(apt-cache depends linux-image-cloud-amd64 2>/dev/null |
		sed -n 's/^ *Depends: *\(linux-image-[^ ]*-cloud-amd64\)$/\1/p' | head -n1)
fi
if [ -z "$pkg" ]; then
	echo "fetch-test-kernel: cannot resolve linux-image-cloud-amd64 dependency" >&2
	exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
chmod 777 "$tmp"
echo "fetch-test-kernel: downloading $pkg"
# apt-get download drops privileges to _apt: the target dir must be writable.
(cd "$tmp" && apt-get download -qq "$pkg")
deb=$(ls "$tmp"/*.deb | head -n1)
dpkg-deb -x "$deb" "$tmp/x"
vmlinuz=$(ls "$tmp"/x/boot/vmlinuz-* | head -n1)
if [ ! -s "$vmlinuz" ]; then
	echo "fetch-test-kernel: no /boot/vmlinuz-* in $deb" >&2
	exit 1
fi
name=$(basename "$vmlinuz")
$SUDO cp "$vmlinuz" "$CACHE/$name"
$SUDO ln -sfn "$name" "$CACHE/vmlinuz"
echo "fetch-test-kernel: $CACHE/vmlinuz -> $name"
