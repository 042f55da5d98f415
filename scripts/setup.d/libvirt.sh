#!/bin/sh
# libvirt 9.0 (Debian) for the libvirt suite (tests/libvirt/run-libvirt):
# the daemon, its QEMU driver and virsh.  Without libvirt-daemon-system the
# QEMU driver refuses to start unless a libvirt-qemu user exists (even with
# user = "root" in qemu.conf), so create it.  The suite runs its own libvirtd
# with its own libvirtd.conf; the QEMU driver reads /etc/libvirt/qemu.conf
# (a privileged daemon has no other place for it), written here.
set -eu
SUDO=""
[ "$(id -u)" = 0 ] || SUDO=sudo
export DEBIAN_FRONTEND=noninteractive
missing=""
for p in libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing="$missing $p"
done
if [ -n "$missing" ]; then
	echo "setup: installing:$missing"
	$SUDO apt-get update -qq
	# shellcheck disable=SC2086
	$SUDO apt-get install -y -qq --no-install-recommends $missing
fi
getent group kvm >/dev/null || $SUDO groupadd -r kvm
# the driver resolves its built-in user and group before it reads qemu.conf
getent group libvirt-qemu >/dev/null || $SUDO groupadd -r libvirt-qemu
id libvirt-qemu >/dev/null 2>&1 || $SUDO useradd -r -g kvm -d /var/lib/libvirt -s /usr/sbin/nologin libvirt-qemu
$SUDO mkdir -p /etc/libvirt /run/libvirt /var/lib/libvirt/qemu /var/cache/libvirt/qemu /var/log/libvirt/qemu
conf=/etc/libvirt/qemu.conf
if ! grep -q '^# kvmlite libvirt suite' "$conf" 2>/dev/null; then
	$SUDO tee "$conf" >/dev/null <<'CONF'
# kvmlite libvirt suite (scripts/setup.d/libvirt.sh): no systemd, no cgroups,
# no security driver on these machines
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
stdio_handler = "file"
CONF
fi
