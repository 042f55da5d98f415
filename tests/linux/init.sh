#!/bin/sh
# /init (initramfs) and /sbin/init (ext4 root image) of the kvmlite Linux
# guest suite; busybox.  The host side is tests/linux/run-linux, which picks
# the check with kl.test=NAME on the kernel command line and reads the
# "KL-..." lines from the serial console.
export PATH=/bin:/sbin
# udhcpc -s /init (the pcihp check): report the lease, configure nothing
case "$1" in
deconfig | bound | renew | leasefail | nak)
	# shellcheck disable=SC2154 # udhcpc sets interface, ip, serverid
	[ "$1" = bound ] && echo "KL-LEASE $interface $ip from $serverid"
	exit 0
	;;
esac
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
echo "KL-INIT: user space up, pid $$"

test=
# shellcheck disable=SC2013 # words of the command line, not lines
for w in $(cat /proc/cmdline); do
	case "$w" in kl.test=*) test=${w#kl.test=} ;; esac
done
pass() { echo "KL-PASS $1"; }
fail() { echo "KL-FAIL $1: $2"; }

case "$test" in
user)
	# One script of everyday user space: pipes and fork+exec, a SHA-256
	# computed in the guest against the host's, shell arithmetic, a signal
	# delivered to a handler (signal frame + sigreturn), and a timer
	# interrupt preempting a busy user-space loop (timeout kills it).
	why=
	[ "$(echo hello | tr a-z A-Z | rev)" = OLLEH ] || why="$why pipe"
	[ "$(sha256sum /pattern | cut -d' ' -f1)" = "$(cat /pattern.sha256)" ] || why="$why sha256"
	[ $((6 * 7)) = 42 ] || why="$why arith"
	[ "$(seq 1 50 | sort -rn | head -n 1)" = 50 ] || why="$why sort"
	i=0
	while [ $i -lt 10 ]; do /bin/true || why="$why exec"; i=$((i + 1)); done
	[ "$(sh -c 'trap "echo caught" USR1; kill -USR1 $$; echo after')" = "caught
after" ] || why="$why signal"
	timeout 1 sh -c 'while :; do :; done'
	[ $? -ne 0 ] || why="$why preempt"
	if [ -z "$why" ]; then pass user; else fail user "failed:$why"; fi
	;;
smp2)
	# -smp 2: a process pinned to each CPU runs there (field 39 of
	# /proc/PID/stat: the CPU it last ran on)
	c0=$(taskset -c 0 cut -d' ' -f39 /proc/self/stat)
	c1=$(taskset -c 1 cut -d' ' -f39 /proc/self/stat)
	s1=$(taskset -c 1 sha256sum /pattern | cut -d' ' -f1)
	if [ "$(nproc)" = 2 ] && [ "$c0" = 0 ] && [ "$c1" = 1 ] && [ "$s1" = "$(cat /pattern.sha256)" ]; then
		pass smp2
	else
		fail smp2 "nproc $(nproc), pinned processes ran on '$c0' and '$c1'"
	fi
	;;
bench)
	# bench/assist's user-space micro-suite; times from /proc/uptime
	# (centiseconds), printed raw for the host to divide
	cs() { read -r u _ < /proc/uptime; echo "${u%.*}${u#*.}"; }
	t0=$(cs); dd if=/dev/zero of=/dev/null bs=1 count=2000 2>/dev/null; t1=$(cs)
	echo "KL-BENCH null-syscall 4000 $((t1 - t0))"
	t0=$(cs); i=0; while [ $i -lt 10 ]; do /bin/true; i=$((i + 1)); done; t1=$(cs)
	echo "KL-BENCH fork-exec 10 $((t1 - t0))"
	t0=$(cs); dd if=/dev/zero bs=4096 count=1024 2>/dev/null | cat >/dev/null; t1=$(cs)
	echo "KL-BENCH pipe-4MiB 1 $((t1 - t0))"
	echo "KL-BENCH done"
	sleep 3
	;;
disk)
	# /dev/vda is a scratch disk: write /pattern at 64 KiB with O_DIRECT,
	# sync, read it back with O_DIRECT and compare.  The host compares the
	# image file against /pattern after the VMM has exited.
	if dd if=/pattern of=/dev/vda bs=4096 seek=16 oflag=direct conv=fsync 2>/dev/null &&
	   sync &&
	   dd if=/dev/vda of=/tmp/back bs=4096 skip=16 count=16 iflag=direct 2>/dev/null &&
	   cmp /pattern /tmp/back; then
		pass disk
	else
		fail disk "write/read-back of /dev/vda differs"
	fi
	;;
ping)
	# three single pings: the test kernel has no CONFIG_POSIX_TIMERS, so
	# busybox ping's interval timer (alarm) never fires between requests
	n=0
	for i in 1 2 3; do ping -c 1 10.0.2.2 && n=$((n + 1)); done
	if [ $n = 3 ]; then pass ping; else fail ping "$n of 3 replies from 10.0.2.2"; fi
	;;
powerdown)
	# wait for the ACPI power button (any input event on its device)
	dev=
	for n in /sys/class/input/input*; do
		grep -q "Power Button" "$n/name" 2>/dev/null || continue
		for e in "$n"/event*; do [ -e "$e" ] && dev=/dev/input/${e##*/}; done
	done
	if [ -z "$dev" ]; then
		fail powerdown "no Power Button input device"
	else
		# open the device before saying ready: an event that comes before
		# the open is not queued for this reader
		exec 3<"$dev"
		echo "KL-READY powerdown $dev"
		head -c 1 <&3 >/dev/null && pass powerdown
		exec 3<&-
	fi
	;;
cpuhp)
	# -smp 1,maxcpus=2: the host device_adds CPU 1 after this line; online
	# it as udev would and run a process pinned to it
	echo "KL-READY cpuhp $(nproc)"
	i=0
	while [ ! -e /sys/devices/system/cpu/cpu1/online ] && [ $i -lt 300 ]; do
		sleep 1
		i=$((i + 1))
	done
	if [ ! -e /sys/devices/system/cpu/cpu1/online ]; then
		fail cpuhp "no /sys/devices/system/cpu/cpu1 after device_add"
	elif ! echo 1 >/sys/devices/system/cpu/cpu1/online; then
		fail cpuhp "writing 1 to cpu1/online failed"
	else
		c1=$(taskset -c 1 cut -d' ' -f39 /proc/self/stat)
		if [ "$(nproc)" = 2 ] && [ "$c1" = 1 ]; then
			pass cpuhp
		else
			fail cpuhp "nproc $(nproc), the process pinned to CPU 1 ran on '$c1'"
		fi
	fi
	;;
pcihp)
	# one cold-plugged NIC (eth0): the host device_adds a virtio-net-pci
	# NIC after this line; bring it up (promisc: the kernel then names it
	# in its log), get a DHCP lease on it, then wait for its device_del
	echo "KL-READY pcihp"
	i=0
	while [ ! -e /sys/class/net/eth1 ] && [ $i -lt 300 ]; do
		sleep 1
		i=$((i + 1))
	done
	if [ ! -e /sys/class/net/eth1 ]; then
		fail pcihp "no /sys/class/net/eth1 after device_add"
	elif ! ip link set eth1 up promisc on; then
		fail pcihp "ip link set eth1 up failed"
	elif ! udhcpc -i eth1 -n -q -t 10 -T 3 -s /init; then
		fail pcihp "udhcpc got no lease on eth1"
	else
		echo "KL-READY pcihp-unplug"
		i=0
		while [ -e /sys/class/net/eth1 ] && [ $i -lt 300 ]; do
			sleep 1
			i=$((i + 1))
		done
		if [ -e /sys/class/net/eth1 ]; then
			fail pcihp "eth1 still there after device_del"
		else
			echo "KL-INIT: eth1 gone"
			pass pcihp
		fi
	fi
	;;
shell)
	exec sh
	;;
esac
echo "KL-INIT: powering off"
poweroff -f
