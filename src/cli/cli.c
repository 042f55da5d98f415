/* QEMU-compatible command line parsing. */
#include "kvmlite/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvmlite/assist.h"
#include "kvmlite/opts.h"
#include "cli_compat.h"

enum arg { NOARG, ARG };

struct flag {
	const char *name;
	enum arg arg;
	int (*fn)(struct kl_cli *c, const char *flag, const char *v, char **err);
	const char *help;
};

#define FLAGFN(n) static int n(struct kl_cli *c, const char *flag, const char *v, char **err)

static int set_str(char **dst, const char *v)
{
	g_free(*dst);
	*dst = g_strdup(v);
	return 0;
}

FLAGFN(f_m)
{
	/* -m 512 | -m 512M | -m size=512M[,slots=N,maxmem=S] */
	struct kl_opts *o = kl_opts_parse(v, "size", err);
	if (!o)
		return -1;
	const char *sz = kl_opts_get(o, "size");
	uint64_t bytes = 0;
	kl_opts_get(o, "slots");  /* accepted: no memory hotplug, ignored */
	kl_opts_get(o, "maxmem");
	int r = -1;
	if (kl_opts_check_unused(o, flag, err) < 0)
		goto out;
	if (!sz || kl_parse_size(sz, 1ULL << 20, &bytes) < 0) {
		*err = g_strdup_printf("%s %s: invalid RAM size", flag, v);
		goto out;
	}
	if (bytes < (1ULL << 20)) {
		*err = g_strdup_printf("%s %s: RAM size must be at least 1 MiB", flag, v);
		goto out;
	}
	if (bytes & 0xfff) {
		*err = g_strdup_printf("%s %s: RAM size must be a multiple of 4 KiB", flag, v);
		goto out;
	}
	if (bytes > (1ULL << 40)) {
		*err = g_strdup_printf("%s %s: RAM size above 1 TiB is not supported", flag, v);
		goto out;
	}
	c->ram_size = bytes;
	r = 0;
out:
	kl_opts_free(o);
	return r;
}

static int get_count(struct kl_opts *o, const char *key, const char *flag, unsigned *out, char **err)
{
	uint64_t x;
	if (kl_opts_get_u64(o, key, 0, &x, err) < 0) {
		g_free(*err);
		*err = g_strdup_printf("%s %s: '%s' must be a number", flag, o->src, key);
		return -1;
	}
	if (x > 4096) {
		*err = g_strdup_printf("%s %s: '%s' is too large", flag, o->src, key);
		return -1;
	}
	*out = (unsigned)x;
	return 0;
}

FLAGFN(f_smp)
{
	struct kl_opts *o = kl_opts_parse(v, "cpus", err);
	if (!o)
		return -1;
	unsigned cpus, sockets, cores, threads, maxcpus, dies;
	int r = -1;
	if (get_count(o, "cpus", flag, &cpus, err) < 0 || get_count(o, "sockets", flag, &sockets, err) < 0 ||
	    get_count(o, "cores", flag, &cores, err) < 0 || get_count(o, "threads", flag, &threads, err) < 0 ||
	    get_count(o, "maxcpus", flag, &maxcpus, err) < 0 || get_count(o, "dies", flag, &dies, err) < 0 ||
	    kl_opts_check_unused(o, flag, err) < 0)
		goto out;
	if (!kl_opts_get(o, "cpus") && !sockets && !cores && !threads && !maxcpus) {
		*err = g_strdup_printf("%s %s: give the number of CPUs", flag, v);
		goto out;
	}
	if (kl_opts_get(o, "cpus") && cpus == 0) {
		*err = g_strdup_printf("%s %s: the number of CPUs must be at least 1", flag, v);
		goto out;
	}
	/* QEMU 7.2's machine_parse_smp_config (cores preferred over sockets) */
	if (!dies) dies = 1;
	if (!cpus && !maxcpus) {
		if (!sockets) sockets = 1;
		if (!cores) cores = 1;
		if (!threads) threads = 1;
	} else {
		if (!maxcpus) maxcpus = cpus;
		if (!sockets) sockets = 1;
		if (!cores) {
			if (!threads) threads = 1;
			cores = maxcpus / (sockets * dies * threads);
		}
		if (!threads) threads = cores ? maxcpus / (sockets * dies * cores) : 0;
	}
	if (!maxcpus) maxcpus = sockets * dies * cores * threads;
	if (!cpus) cpus = maxcpus;
	if (sockets * dies * cores * threads != maxcpus) {
		*err = g_strdup_printf("Invalid CPU topology: product of the hierarchy must match "
				       "maxcpus: sockets (%u) * dies (%u) * cores (%u) * threads (%u) "
				       "!= maxcpus (%u)", sockets, dies, cores, threads, maxcpus);
		goto out;
	}
	if (maxcpus < cpus) {
		*err = g_strdup_printf("Invalid CPU topology: maxcpus must be equal to or greater than "
				       "smp: sockets (%u) * dies (%u) * cores (%u) * threads (%u) == "
				       "maxcpus (%u) < smp_cpus (%u)", sockets, dies, cores, threads,
				       maxcpus, cpus);
		goto out;
	}
	if (dies != 1) {
		*err = g_strdup_printf("%s %s: dies > 1 are not supported", flag, v);
		goto out;
	}
	if (maxcpus > 255) {
		*err = g_strdup_printf("%s %s: at most 255 CPUs are supported", flag, v);
		goto out;
	}
	c->smp = cpus;
	c->maxcpus = maxcpus;
	c->sockets = sockets;
	c->cores = cores;
	c->threads = threads;
	r = 0;
out:
	kl_opts_free(o);
	return r;
}

FLAGFN(f_machine)
{
	static const char *const types[] = { "microvm", "pc", "q35", "kvmlite", "none", NULL };
	struct kl_opts *o = kl_opts_parse(v, "type", err);
	if (!o)
		return -1;
	int r = -1;
	const char *t = kl_opts_get(o, "type");
	const char *accel = kl_opts_get(o, "accel");
	const char *mb = kl_opts_get(o, "memory-backend");
	bool b, acpi = true;
	/* Properties with no effect on kvmlite's one machine (acpi=on: on
	 * microvm the virtio-mmio transports go into the DSDT, as QEMU). */
	if (kl_opts_get_bool(o, "acpi", true, &acpi, err) < 0 || kl_opts_get_bool(o, "pic", true, &b, err) < 0 ||
	    kl_opts_get_bool(o, "pit", true, &b, err) < 0 || kl_opts_get_bool(o, "rtc", true, &b, err) < 0 ||
	    kl_opts_get_bool(o, "isa-serial", true, &b, err) < 0 ||
	    kl_opts_get_bool(o, "usb", false, &b, err) < 0 ||
	    kl_opts_get_bool(o, "dump-guest-core", true, &b, err) < 0)
		goto out;
	/* microvm (src/hw/microvm.c): pcie=on gives it kvmlite's PCI host;
	 * the virtio-mmio devices go on the kernel command line unless
	 * auto-kernel-cmdline=off; one IOAPIC (ioapic2=on is refused) */
	bool pcie = false, autocl = true;
	const char *ioapic2 = kl_opts_get(o, "ioapic2");
	if (kl_opts_get(o, "pcie") && kl_opts_get_bool(o, "pcie", false, &pcie, err) < 0)
		goto out;
	if (kl_opts_get(o, "auto-kernel-cmdline") &&
	    kl_opts_get_bool(o, "auto-kernel-cmdline", true, &autocl, err) < 0)
		goto out;
	if (ioapic2 && strcmp(ioapic2, "off") && strcmp(ioapic2, "auto")) {
		*err = g_strdup_printf("%s %s: ioapic2=%s is not supported (kvmlite's microvm has one "
				       "IOAPIC: off or auto)", flag, v, ioapic2);
		goto out;
	}
	if (kl_opts_get_bool(o, "mem-merge", c->mem_merge, &c->mem_merge, err) < 0)
		goto out;
	kl_opts_get(o, "kernel-irqchip");
	if (kl_opts_check_unused(o, flag, err) < 0)
		goto out;
	if (t) {
		bool ok = !strcmp(t, "help") || g_str_has_prefix(t, "pc-");
		for (int i = 0; types[i]; i++)
			ok |= !strcmp(t, types[i]);
		if (!ok) {
			*err = g_strdup_printf("%s %s: unsupported machine type '%s' (supported: pc, q35, "
					       "pc-*, kvmlite, microvm)", flag, v, t);
			goto out;
		}
		set_str(&c->machine, t);
	}
	/* accel=kvm:tcg (libvirt's probe): the first of the list kvmlite has */
	if (accel && strcmp(accel, "kvm") && !g_str_has_prefix(accel, "kvm:")) {
		*err = g_strdup_printf("%s %s: accelerator '%s' is not supported (only kvm)", flag, v, accel);
		goto out;
	}
	if (mb)
		set_str(&c->mem_backend, mb);
	if (kl_opts_get(o, "pcie"))
		c->machine_pcie = pcie;
	if (kl_opts_get(o, "auto-kernel-cmdline"))
		c->machine_auto_cmdline = autocl;
	if (kl_opts_get(o, "acpi"))
		c->machine_acpi = acpi;
	r = 0;
out:
	kl_opts_free(o);
	return r;
}

FLAGFN(f_accel)
{
	struct kl_opts *o = kl_opts_parse(v, "accel", err);
	if (!o)
		return -1;
	const char *a = kl_opts_get(o, "accel");
	int r = -1;
	kl_opts_get(o, "kernel-irqchip");
	const char *ea = kl_opts_get(o, "emulation-assist");
	if (kl_opts_check_unused(o, flag, err) < 0)
		goto out;
	if (!a || strcmp(a, "kvm")) {
		*err = g_strdup_printf("%s %s: accelerator '%s' is not supported (only kvm)", flag, v,
				       a ? a : "");
		goto out;
	}
	if (ea) {
		if (!strcmp(ea, "on"))
			c->assist = KL_ASSIST_ON;
		else if (!strcmp(ea, "off"))
			c->assist = KL_ASSIST_OFF;
		else if (!strcmp(ea, "auto"))
			c->assist = KL_ASSIST_AUTO;
		else {
			*err = g_strdup_printf("%s %s: emulation-assist must be on, off or auto, not '%s'",
					       flag, v, ea);
			goto out;
		}
	}
	r = 0;
out:
	kl_opts_free(o);
	return r;
}

int kl_parse_uuid(const char *s, uint8_t out[16])
{
	if (strlen(s) != 36)
		return -1;
	int j = 0;
	for (int i = 0; i < 36;) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return -1;
			i++;
			continue;
		}
		int hi = g_ascii_xdigit_value(s[i]), lo = g_ascii_xdigit_value(s[i + 1]);
		if (hi < 0 || lo < 0)
			return -1;
		out[j++] = (uint8_t)(hi << 4 | lo);
		i += 2;
	}
	return 0;
}

FLAGFN(f_uuid)
{
	uint8_t u[16];
	if (kl_parse_uuid(v, u) < 0) {
		*err = g_strdup_printf("%s %s: invalid UUID (expected xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)", flag, v);
		return -1;
	}
	return set_str(&c->uuid, v);
}

FLAGFN(f_display)
{
	(void)c;
	if (strcmp(v, "none") && !g_str_has_prefix(v, "none,")) {
		*err = g_strdup_printf("%s %s: kvmlite has no display; only 'none' is supported", flag, v);
		return -1;
	}
	return 0;
}

FLAGFN(f_vga)
{
	(void)c;
	if (strcmp(v, "none")) {
		*err = g_strdup_printf("%s %s: kvmlite has no display adapter; only 'none' is supported", flag, v);
		return -1;
	}
	return 0;
}

FLAGFN(f_cpu)
{
	(void)flag; (void)err;
	return set_str(&c->cpu, v);
}

#define STRFLAG(fn, field) \
	FLAGFN(fn) { (void)flag; (void)err; return set_str(&c->field, v); }
STRFLAG(f_kernel, kernel)
STRFLAG(f_initrd, initrd)
STRFLAG(f_append, append)
STRFLAG(f_pidfile, pidfile)
STRFLAG(f_sandbox, sandbox)
STRFLAG(f_incoming, incoming)
STRFLAG(f_loadvm, loadvm)

FLAGFN(f_name_opts)
{
	(void)flag; (void)err;
	/* -name guest=NAME,... or plain NAME */
	struct kl_opts *o = kl_opts_parse(v, "guest", err);
	if (!o)
		return -1;
	const char *g = kl_opts_get(o, "guest");
	kl_opts_get(o, "process");
	kl_opts_get(o, "debug-threads");
	int r = kl_opts_check_unused(o, flag, err);
	if (r == 0)
		r = set_str(&c->name, g);
	kl_opts_free(o);
	return r;
}

#define LISTFLAG(fn, field) \
	FLAGFN(fn) { (void)flag; (void)err; g_ptr_array_add(c->field, g_strdup(v)); return 0; }
LISTFLAG(f_drive, drives)
LISTFLAG(f_blockdev, blockdevs)
LISTFLAG(f_device, devices)
LISTFLAG(f_netdev, netdevs)
LISTFLAG(f_chardev, chardevs)
LISTFLAG(f_serial, serials)
LISTFLAG(f_qmp, qmps)
LISTFLAG(f_mon, mons)
LISTFLAG(f_object, objects)
LISTFLAG(f_numa, numas)

#define BOOLFLAG(fn, field) \
	FLAGFN(fn) { (void)flag; (void)v; (void)err; c->field = true; return 0; }
BOOLFLAG(f_S, start_paused)
BOOLFLAG(f_nographic, nographic)
BOOLFLAG(f_nodefaults, nodefaults)
BOOLFLAG(f_daemonize, daemonize)
BOOLFLAG(f_no_reboot, no_reboot)
BOOLFLAG(f_mem_prealloc, mem_prealloc)
BOOLFLAG(f_no_shutdown, no_shutdown)
BOOLFLAG(f_version, show_version)
BOOLFLAG(f_help, show_help)

FLAGFN(f_d)
{
	/* QEMU's -d ITEM[,ITEM]: kvmlite knows one log item */
	gchar **items = g_strsplit(v, ",", -1);
	int r = 0;
	for (gchar **i = items; *i; i++) {
		if (!strcmp(*i, "assist")) {
			c->assist_log = true;
		} else if (!strcmp(*i, "cpu_reset")) {
			c->log_cpu_reset = true;
		} else {
			*err = g_strdup_printf("%s %s: unknown log item '%s' (kvmlite has: assist, "
					       "cpu_reset)", flag, v, *i);
			r = -1;
			break;
		}
	}
	g_strfreev(items);
	return r;
}

/* QEMU 9.1's -run-with [async-teardown=on|off][,chroot=DIR][,user=USER|UID:GID];
 * the user and directory are checked in main (src/sandbox/privs.c). */
FLAGFN(f_run_with)
{
	struct kl_opts *o = kl_opts_parse(v, NULL, err);
	if (!o)
		return -1;
	int r = -1;
	bool at;
	const char *user = kl_opts_get(o, "user"), *dir = kl_opts_get(o, "chroot");
	if (kl_opts_get_bool(o, "async-teardown", false, &at, err) < 0 ||
	    kl_opts_check_unused(o, flag, err) < 0)
		goto out;
	if (at) {
		*err = g_strdup_printf("%s %s: async-teardown=on is not supported (kvmlite tears the "
				       "VM down itself before it exits)", flag, v);
		goto out;
	}
	if ((user && !*user) || (dir && !*dir)) {
		*err = g_strdup_printf("%s %s: %s must not be empty", flag, v, user && !*user ? "user" : "chroot");
		goto out;
	}
	if (user) {
		set_str(&c->run_user, user);
		c->run_user_flag = "-run-with user=";
	}
	if (dir) {
		set_str(&c->run_chroot, dir);
		c->run_chroot_flag = "-run-with chroot=";
	}
	r = 0;
out:
	kl_opts_free(o);
	return r;
}

FLAGFN(f_runas)
{
	(void)flag; (void)err;
	c->run_user_flag = "-runas ";
	return set_str(&c->run_user, v);
}

FLAGFN(f_chroot)
{
	(void)flag; (void)err;
	c->run_chroot_flag = "-chroot ";
	return set_str(&c->run_chroot, v);
}

FLAGFN(f_accepted)
{
	(void)c; (void)flag; (void)v; (void)err;
	return 0;
}

static const struct flag flags[] = {
	{ "m", ARG, f_m, "-m [size=]SIZE       guest RAM (default 128M; suffixes K, M, G, T)" },
	{ "smp", ARG, f_smp, "-smp N[,maxcpus=M][,sockets=S][,cores=C][,threads=T]  number of vCPUs (M: hot-pluggable slots)" },
	{ "cpu", ARG, f_cpu, "-cpu MODEL[,+feat][,-feat]  CPU model (-cpu help lists them)" },
	{ "M", ARG, f_machine, "-M, -machine TYPE[,accel=kvm][,memory-backend=ID][,pcie=on][,mem-merge=on|off]\n"
			       "                       pc/q35: PC with PCI; microvm: virtio-mmio, no PCI unless pcie=on;\n"
			       "                       mem-merge (default on): KSM may merge guest RAM" },
	{ "mem-prealloc", NOARG, f_mem_prealloc, "-mem-prealloc        allocate all guest RAM at start-up" },
	{ "machine", ARG, f_machine, NULL },
	{ "accel", ARG, f_accel, "-accel kvm[,emulation-assist=on|off|auto]  the only accelerator; the emulation\n"
				 "                       assist (docs/cpu.md) is on by default where /dev/kvm has no VMX/SVM" },
	{ "d", ARG, f_d, "-d ITEM[,ITEM]       log items: assist (the emulation assist's counters at exit),\n"
			 "                       cpu_reset (registers of a vCPU that triple-faults)" },
	{ "enable-kvm", NOARG, f_accepted, "-enable-kvm          (always on)" },
	{ "kernel", ARG, f_kernel, "-kernel FILE         bzImage or PVH ELF vmlinux to boot" },
	{ "initrd", ARG, f_initrd, "-initrd FILE         initial ramdisk" },
	{ "append", ARG, f_append, "-append CMDLINE      kernel command line" },
	{ "drive", ARG, f_drive, "-drive file=F[,if=virtio|none][,id=ID][,format=raw][,cache=none|writethrough|writeback|directsync|unsafe][,aio=threads|native|io_uring][,readonly=on]" },
	{ "blockdev", ARG, f_blockdev, "-blockdev driver=file,filename=F,node-name=N[,...] | -blockdev '{\"driver\": ...}'\n"
				       "                       a block node (drivers file, raw, qcow2), as QEMU's (JSON or dotted keys)" },
	{ "device", ARG, f_device, "-device DRIVER[,prop=value...]  (-device help lists drivers)" },
	{ "netdev", ARG, f_netdev, "-netdev user|tap|socket,id=ID[,...]  network back-end" },
	{ "chardev", ARG, f_chardev, "-chardev socket,id=ID,path=P|host=H,port=N[,server=on[,wait=off]]  as -qmp" },
	{ "serial", ARG, f_serial, "-serial stdio|file:PATH|unix:PATH,server=on[,wait=off]|null|none" },
	{ "qmp", ARG, f_qmp, "-qmp unix:PATH|tcp:HOST:PORT[,server=on[,wait=off]]  QMP monitor: server=on listens\n"
			     "                       (wait=on, the default, waits for a client before the guest starts);\n"
			     "                       without server=on it connects to the socket at start-up; TCP: loopback only" },
	{ "mon", ARG, f_mon, "-mon chardev=ID,mode=control" },
	{ "numa", ARG, f_numa, "-numa node[,nodeid=N][,cpus=A[-B]][,memdev=ID] | dist,src=S,dst=D,val=V | cpu,node-id=N[,socket-id=S][,core-id=C][,thread-id=T]" },
	{ "object", ARG, f_object, "-object memory-backend-ram|memory-backend-memfd|memory-backend-file,id=ID,size=S\n"
				   "                       [,share=on|off][,prealloc=on|off][,merge=on|off][,hugetlb=on (memfd)]\n"
				   "                       [,mem-path=FILE|DIR (file; a directory such as /dev/hugepages: a temporary file in it)]\n"
				   "                       [,host-nodes=N[-M]][,policy=default|preferred|bind|interleave]\n"
				   "                       | rng-random,id=ID[,filename=F] | rng-builtin,id=ID" },
	{ "name", ARG, f_name_opts, "-name [guest=]NAME" },
	{ "uuid", ARG, f_uuid, "-uuid UUID" },
	{ "incoming", ARG, f_incoming, "-incoming unix:PATH|tcp:HOST:PORT|file:PATH[,offset=N]|defer\n"
				       "                       wait for an incoming migration (defer: QMP migrate-incoming; docs/migration.md)" },
	{ "loadvm", ARG, f_loadvm, "-loadvm TAG          start from the snapshot TAG (snapshot-load of every qcow2 disk,\n"
				   "                       the VM state from the first; docs/migration.md)" },
	{ "S", NOARG, f_S, "-S                   do not start the CPUs (QMP 'cont' starts them)" },
	{ "nographic", NOARG, f_nographic, "-nographic           serial on stdio (kvmlite never has a display)" },
	{ "display", ARG, f_display, "-display none" },
	{ "vga", ARG, f_vga, "-vga none" },
	{ "nodefaults", NOARG, f_nodefaults, "-nodefaults          no default serial port" },
	{ "no-reboot", NOARG, f_no_reboot, "-no-reboot           exit instead of rebooting" },
	{ "no-shutdown", NOARG, f_no_shutdown, "-no-shutdown         stay paused after guest poweroff" },
	{ "daemonize", NOARG, f_daemonize, "-daemonize           detach once the VM is set up" },
	{ "pidfile", ARG, f_pidfile, "-pidfile FILE        write the process id to FILE" },
	{ "run-with", ARG, f_run_with, "-run-with [user=USER|UID:GID][,chroot=DIR][,async-teardown=off]\n"
				       "                       once set up: chroot to DIR, become USER, drop every\n"
				       "                       capability (docs/sandbox.md)" },
	{ "runas", ARG, f_runas, "-runas USER          as -run-with user=USER (QEMU 7.2 spelling)" },
	{ "chroot", ARG, f_chroot, "-chroot DIR          as -run-with chroot=DIR (QEMU 7.2 spelling)" },
	{ "sandbox", ARG, f_sandbox, "-sandbox on|off[,obsolete=allow|deny][,elevateprivileges=allow|deny|children]\n"
			     "                       [,spawn=allow|deny][,resourcecontrol=allow|deny]\n"
			     "                       seccomp allow-lists per thread (default on; docs/sandbox.md)" },
	KL_CLI_COMPAT_FLAGS
	{ "version", NOARG, f_version, "-version             print the version and exit" },
	{ "h", NOARG, f_help, "-h, -help, --help    this help" },
	{ "help", NOARG, f_help, NULL },
};

void kl_cli_print_help(FILE *f)
{
	fprintf(f, "usage: kvmlite [options]\n"
		   "A small QEMU-compatible virtual machine monitor on /dev/kvm.\n\n");
	for (size_t i = 0; i < G_N_ELEMENTS(flags); i++)
		if (flags[i].help)
			fprintf(f, "  %s\n", flags[i].help);
	fprintf(f, "\nAny other option is an error.  Options may start with - or --.\n");
}

int kl_cli_parse(int argc, char **argv, struct kl_cli *c, char **err)
{
	memset(c, 0, sizeof(*c));
	c->ram_size = 128ULL << 20;
	c->smp = c->maxcpus = c->sockets = c->cores = c->threads = 1;
	c->machine_pcie = c->machine_auto_cmdline = c->machine_acpi = -1;
	c->mem_merge = true;
	c->drives = g_ptr_array_new_with_free_func(g_free);
	c->blockdevs = g_ptr_array_new_with_free_func(g_free);
	c->devices = g_ptr_array_new_with_free_func(g_free);
	c->netdevs = g_ptr_array_new_with_free_func(g_free);
	c->chardevs = g_ptr_array_new_with_free_func(g_free);
	c->serials = g_ptr_array_new_with_free_func(g_free);
	c->qmps = g_ptr_array_new_with_free_func(g_free);
	c->mons = g_ptr_array_new_with_free_func(g_free);
	c->objects = g_ptr_array_new_with_free_func(g_free);
	c->numas = g_ptr_array_new_with_free_func(g_free);
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (a[0] != '-' || !a[1]) {
			*err = g_strdup_printf("%s: unexpected argument (kvmlite takes no disk image "
					       "as a bare argument; use -drive file=...)", a);
			return -1;
		}
		const char *n = a + 1;
		if (*n == '-')
			n++;
		const struct flag *f = NULL;
		for (size_t k = 0; k < G_N_ELEMENTS(flags); k++)
			if (!strcmp(flags[k].name, n))
				f = &flags[k];
		if (!f) {
			*err = g_strdup_printf("%s: invalid option", a);
			return -1;
		}
		const char *v = NULL;
		if (f->arg == ARG) {
			if (i + 1 >= argc) {
				*err = g_strdup_printf("%s: requires an argument", a);
				return -1;
			}
			v = argv[++i];
		}
		char *flag = g_strdup_printf("-%s", f->name);
		int r = f->fn(c, flag, v, err);
		g_free(flag);
		if (r < 0)
			return -1;
	}
	return 0;
}

void kl_cli_free(struct kl_cli *c)
{
	g_free(c->kernel);
	g_free(c->initrd);
	g_free(c->append);
	g_free(c->cpu);
	g_free(c->machine);
	g_free(c->mem_backend);
	g_free(c->name);
	g_free(c->uuid);
	g_free(c->pidfile);
	g_free(c->run_user);
	g_free(c->run_chroot);
	g_free(c->sandbox);
	g_free(c->incoming);
	g_free(c->loadvm);
	GPtrArray *arrs[] = { c->drives, c->blockdevs, c->devices, c->netdevs, c->chardevs, c->serials,
			      c->qmps, c->mons, c->objects };
	for (size_t i = 0; i < G_N_ELEMENTS(arrs); i++)
		if (arrs[i])
			g_ptr_array_free(arrs[i], TRUE);
	if (c->numas)
		g_ptr_array_free(c->numas, TRUE);
	memset(c, 0, sizeof(*c));
}
