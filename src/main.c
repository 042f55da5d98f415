/* kvmlite: command line -> machine assembly -> main loop. */
#include <errno.h>
#include <fcntl.h>
#include <glib-unix.h>
#include <glib.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kvmlite/block.h"
#include "kvmlite/boot.h"
#include "kvmlite/chardev.h"
#include "kvmlite/cli.h"
#include "kvmlite/cpu.h"
#include "kvmlite/device.h"
#include "kvmlite/cpu_hotplug.h"
#include "kvmlite/fdset.h"
#include "kvmlite/hotplug.h"
#include "kvmlite/hw.h"
#include "kvmlite/loop.h"
#include "kvmlite/job.h"
#include "kvmlite/migration.h"
#include "kvmlite/monitor.h"
#include "kvmlite/hostmem.h"
#include "kvmlite/net.h"
#include "kvmlite/microvm.h"
#include "kvmlite/numa.h"
#include "kvmlite/object.h"
#include "kvmlite/pci.h"
#include "kvmlite/privs.h"
#include "kvmlite/seccomp.h"
#include "kvmlite/throttle.h"
#include "kvmlite/vm.h"

#ifndef KVMLITE_VERSION
#define KVMLITE_VERSION "0.1.0"
#endif

static struct kl_vm the_vm;
static struct kl_boot_config boot_cfg;
static struct kl_boot_opts boot_opts;
static int daemon_pipe = -1;
/* -pidfile: write_pidfile(); removed by remove_pidfile() on every exit */
struct pidfile {
	int fd, dir_fd;
	char *base;
};
static struct pidfile pidfile = { .fd = -1, .dir_fd = -1 };
static void remove_pidfile(struct pidfile *pf);

static void G_GNUC_PRINTF(1, 2) die(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fprintf(stderr, "kvmlite: ");
	vfprintf(stderr, fmt, ap);
	fprintf(stderr, "\n");
	va_end(ap);
	kl_chardev_restore_tty();
	remove_pidfile(&pidfile);
	if (daemon_pipe >= 0) {
		char st = 1;
		if (write(daemon_pipe, &st, 1) < 0) { /* parent exits non-zero anyway */ }
	}
	exit(1);
}

static void die_err(char *err)
{
	die("%s", err ? err : "unknown error");
}

/* Load the kernel and set the BSP's boot registers (first boot and reset). */
static int load_boot(struct kl_vm *vm)
{
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	char *err = NULL;
	kl_vcpu_get_reset_state(vm->vcpus[0], &regs, &sregs);
	if (kl_boot_load_ex(&vm->mem, &boot_cfg, vm->boot_cpus, &boot_opts, &regs, &sregs, NULL,
			    &err) < 0) {
		fprintf(stderr, "kvmlite: %s\n", err);
		g_free(err);
		return -1;
	}
	kl_vcpu_set_boot_state(vm->vcpus[0], &regs, &sregs);
	return 0;
}

struct mem_backend {
	char *id;
	char *mem_path;
	uint64_t size;
	struct kl_mem_opts opts;
	struct kl_hostmem_bind bind;   /* host-nodes=, policy= */
};

static GPtrArray *mem_backends;

static void mem_backend_free(struct mem_backend *mb)
{
	g_free(mb->id);
	g_free(mb->mem_path);
	g_free(mb);
}

/* -object memory-backend-{ram,memfd,file}: QEMU 7.2's properties; share
 * defaults off for ram and file, on for memfd; merge defaults to the
 * machine's mem-merge. */
static void add_object(const char *spec, const struct kl_cli *cli)
{
	char *err = NULL;
	struct kl_opts *o = kl_opts_parse(spec, "qom-type", &err);
	if (!o)
		die("-object %s: %s", spec, err);
	const char *type = kl_opts_get(o, "qom-type");
	const struct kl_object_type *ot = kl_object_type_find(type);
	if (ot) {   /* a registered type (kvmlite/object.h): rng-random, ... */
		int r = ot->add(type, o, &err);
		if (r == 0)
			r = kl_opts_check_unused(o, NULL, &err);
		kl_opts_free(o);
		if (r < 0)
			die("-object %s: %s", spec, err);
		return;
	}
	if (!strcmp(type, "throttle-group")) {   /* the qos code's object */
		int r = kl_thr_group_object_add(o, &err);
		kl_opts_free(o); /* before die(): LeakSanitizer need not find it on the stack */
		if (r < 0)
			die("-object %s: %s", spec, err);
		return;
	}
	bool b, share_def = false;
	if (!strcmp(type, "memory-backend-ram") || !strcmp(type, "memory-backend-file")) {
		/* (defaults as QEMU: share=off) */
	} else if (!strcmp(type, "memory-backend-memfd")) {
		share_def = true;
	} else {
		err = g_strdup_printf("unsupported object type '%s' (memory-backend-ram, "
				      "memory-backend-memfd, memory-backend-file, throttle-group, "
				      "rng-random, rng-builtin)", type);
		kl_opts_free(o);
		die("-object %s: %s", spec, err);
	}
	struct mem_backend *mb = g_new0(struct mem_backend, 1);
	bool share = false;
	if (!strcmp(type, "memory-backend-memfd")) {
		mb->opts.memfd = true;
		if (kl_opts_get_bool(o, "hugetlb", false, &mb->opts.hugetlb, &err) < 0)
			goto fail;
		kl_opts_get(o, "hugetlbsize");
		if (kl_opts_get_bool(o, "seal", true, &b, &err) < 0)
			goto fail;
	} else if (!strcmp(type, "memory-backend-file")) {
		const char *path = kl_opts_get(o, "mem-path");
		if (!path || !*path) {
			err = g_strdup("parameter 'mem-path' is missing");
			goto fail;
		}
		mb->mem_path = g_strdup(path);
		mb->opts.mem_path = mb->mem_path;
		uint64_t align;
		if (kl_opts_get_bool(o, "discard-data", false, &b, &err) < 0 ||
		    kl_opts_get_size(o, "align", 0, &align, &err) < 0 ||
		    kl_opts_get_bool(o, "readonly", false, &b, &err) < 0)
			goto fail;
		if (b) {
			err = g_strdup("readonly=on is not supported (guest RAM must be writable)");
			goto fail;
		}
		if (kl_opts_get_bool(o, "pmem", false, &b, &err) < 0)
			goto fail;
		if (b) {
			err = g_strdup("pmem=on is not supported");
			goto fail;
		}
	}
	const char *id = kl_opts_get(o, "id");
	if (!id) {
		err = g_strdup("parameter 'id' is missing");
		goto fail;
	}
	if (kl_opts_get_size(o, "size", 0, &mb->size, &err) < 0)
		goto fail;
	if (!mb->size) {
		err = g_strdup("parameter 'size' is missing");
		goto fail;
	}
	if (kl_opts_get_bool(o, "share", share_def, &share, &err) < 0 ||
	    kl_opts_get_bool(o, "merge", cli->mem_merge, &mb->opts.merge, &err) < 0 ||
	    kl_opts_get_bool(o, "prealloc", false, &mb->opts.prealloc, &err) < 0 ||
	    kl_opts_get_bool(o, "dump", false, &b, &err) < 0)
		goto fail;
	uint64_t threads;
	if (kl_opts_get_u64(o, "prealloc-threads", 1, &threads, &err) < 0)
		goto fail;
	if (mb->opts.memfd && !share) {
		/* a memfd is only ever mapped shared here */
		err = g_strdup("share=off is not supported for memory-backend-memfd");
		goto fail;
	}
	mb->opts.private_map = !share;
	if (kl_hostmem_parse(kl_opts_get(o, "host-nodes"), kl_opts_get(o, "policy"), &mb->bind,
			     &err) < 0)
		goto fail;
	if (kl_opts_check_unused(o, "-object", &err) < 0)
		goto fail;
	mb->id = g_strdup(id);
	if (!mem_backends)
		mem_backends = g_ptr_array_new();
	g_ptr_array_add(mem_backends, mb);
	kl_opts_free(o);
	return;
fail:
	mem_backend_free(mb);
	kl_opts_free(o);
	die("-object %s: %s", spec, err);
}

static struct mem_backend *find_mem_backend(const char *id)
{
	for (guint i = 0; mem_backends && id && i < mem_backends->len; i++) {
		struct mem_backend *x = g_ptr_array_index(mem_backends, i);
		if (!strcmp(x->id, id))
			return x;
	}
	return NULL;
}

static bool numa_memdev_size(const char *id, uint64_t *size, void *opaque)
{
	(void)opaque;
	struct mem_backend *mb = find_mem_backend(id);
	if (mb)
		*size = mb->size;
	return mb != NULL;
}

/* -numa (kvmlite/numa.h): the nodes' memdevs become guest RAM, one mapping
 * of their total size (so they must be of one kind); each node's span is
 * bound to its memdev's host-nodes/policy once RAM exists (numa_binds). */
static struct kl_numa numa;
static struct kl_hostmem_bind *numa_binds;

static void setup_numa(struct kl_cli *cli, struct kl_mem_opts *mopts)
{
	char *err = NULL;
	kl_numa_init(&numa, cli->smp, cli->cores, cli->threads);
	for (guint i = 0; i < cli->numas->len; i++) {
		const char *spec = g_ptr_array_index(cli->numas, i);
		if (kl_numa_parse(&numa, spec, numa_memdev_size, NULL, &err) < 0)
			die("-numa %s: %s", spec, err);
	}
	if (!numa.nnodes)
		return;
	const struct mem_backend *first = NULL;
	for (unsigned i = 0; i < numa.nnodes; i++) {
		const struct mem_backend *mb = find_mem_backend(numa.node[i].memdev);
		if (mb && cli->mem_backend)
			die("'-machine memory-backend' and '-numa memdev' properties are mutually exclusive");
		if (!mb)
			continue;
		if (!first) {
			first = mb;
			*mopts = mb->opts;
		} else if (mb->opts.memfd != first->opts.memfd || mb->opts.hugetlb != first->opts.hugetlb ||
			   mb->opts.private_map != first->opts.private_map || mb->opts.mem_path ||
			   first->opts.mem_path) {
			die("-numa memdev=%s: kvmlite maps guest RAM as one mapping: the memdev of every "
			    "node must be of one kind (memdev %s is not like %s)", mb->id, mb->id,
			    first->id);
		}
	}
	if (kl_numa_finish(&numa, cli->ram_size, &err) < 0)
		die_err(err);
	numa_binds = g_new0(struct kl_hostmem_bind, numa.nnodes);
	for (unsigned i = 0; i < numa.nnodes; i++) {
		const struct mem_backend *mb = find_mem_backend(numa.node[i].memdev);
		if (mb)
			numa_binds[i] = mb->bind;
	}
}

static void add_device(struct kl_vm *vm, const char *spec)
{
	char *err = NULL;
	if (!strcmp(spec, "help") || !strcmp(spec, "?")) {
		const struct kl_device_type **t = kl_device_type_list();
		printf("Available devices:\n");
		for (int i = 0; t[i]; i++)
			printf("  %-16s %s\n", t[i]->name, t[i]->help ? t[i]->help : "");
		g_free(t);
		exit(0);
	}
	struct kl_opts *o = kl_opts_parse(spec, "driver", &err);
	if (!o)
		die("-device %s: %s", spec, err);
	const char *drv = kl_opts_get(o, "driver");
	if (!kl_device_type_find(drv))
		die("-device %s: unsupported device '%s' (-device help lists them)", spec, drv);
	/* the same path as QMP device_add (src/hotplug/qdev.c) */
	if (kl_qdev_add(vm, o, false, &err) < 0)
		die("-device %s: %s", spec, err);
	kl_opts_free(o);
}

/* -device lines implied by -drive if=virtio: created after the -device
 * ones, as QEMU does (so their /machine/peripheral-anon/device[N] match). */
static GPtrArray *drive_devices;

static void add_drive(const char *spec)
{
	char *err = NULL, *iface = NULL;
	struct kl_opts *o = kl_opts_parse(spec, NULL, &err);
	if (!o)
		die("-drive %s: %s", spec, err);
	struct kl_blockdev *bd = kl_drive_add(o, &iface, &err);
	if (!bd)
		die("-drive %s: %s", spec, err);
	kl_opts_free(o);
	if (iface && !strcmp(iface, "virtio")) {
		if (!drive_devices)
			drive_devices = g_ptr_array_new_with_free_func(g_free);
		g_ptr_array_add(drive_devices,
				g_strdup_printf("virtio-blk-pci,drive=%s", kl_blockdev_id(bd)));
	}
	g_free(iface);
}

static gboolean on_signal(gpointer p)
{
	struct kl_vm *vm = p;
	fprintf(stderr, "kvmlite: terminating on signal\n");
	kl_vm_request_shutdown(vm, 0, false, "host-signal");
	return G_SOURCE_CONTINUE;
}

/* SIGTERM/SIGINT/SIGHUP sources: GLib starts its gmain thread for them
 * (run by kl_sandbox_run_other, so gmain gets the "other" allow-list). */
static void add_signal_sources(void *opaque)
{
	int sigs[] = { SIGTERM, SIGINT, SIGHUP };
	for (size_t i = 0; i < G_N_ELEMENTS(sigs); i++) {
		GSource *src = g_unix_signal_source_new(sigs[i]);
		g_source_set_callback(src, on_signal, opaque, NULL);
		g_source_attach(src, kl_loop_context());
		g_source_unref(src);
	}
}

static void on_reset_event(void *opaque, enum kl_vm_event ev, const struct kl_event_info *info)
{
	struct kl_vm *vm = opaque;
	(void)info;
	if (ev == KL_EV_RESET)
		kl_vm_request_shutdown(vm, 0, false, NULL); /* -no-reboot */
}

static void daemonize_start(void)
{
	int p[2];
	if (pipe2(p, O_CLOEXEC) < 0)
		die("-daemonize: pipe: %s", g_strerror(errno));
	pid_t pid = fork();
	if (pid < 0)
		die("-daemonize: fork: %s", g_strerror(errno));
	if (pid > 0) {
		close(p[1]);
		char st = 1;
		ssize_t n = read(p[0], &st, 1);
		_exit(n == 1 && st == 0 ? 0 : 1);
	}
	close(p[0]);
	daemon_pipe = p[1];
	if (setsid() < 0)
		die("-daemonize: setsid: %s", g_strerror(errno));
}

static void daemonize_finish(void)
{
	if (daemon_pipe < 0)
		return;
	int fd = open("/dev/null", O_RDWR | O_CLOEXEC); /* dup2 clears it on 0-2 */
	if (fd >= 0) {
		dup2(fd, STDIN_FILENO);
		dup2(fd, STDOUT_FILENO);
		dup2(fd, STDERR_FILENO);
		if (fd > 2)
			close(fd);
	}
	char st = 0;
	if (write(daemon_pipe, &st, 1) < 0) { /* parent gone: nothing to tell */ }
	close(daemon_pipe);
	daemon_pipe = -1;
}

/* -pidfile, as QEMU's qemu_write_pidfile: the file is locked (a second
 * kvmlite with the same pidfile fails) and stays open, locked, until exit;
 * the directory is held open so that the file can be removed at exit after
 * a chroot. */
static void write_pidfile(struct pidfile *pf, const char *path)
{
	for (;;) {
		pf->fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
		if (pf->fd < 0)
			die("-pidfile %s: cannot open pid file: %s", path, g_strerror(errno));
		if (lockf(pf->fd, F_TLOCK, 0) < 0)
			die("-pidfile %s: cannot lock pid file: %s", path, g_strerror(errno));
		/* the file may have been unlinked by its previous owner between
		 * our open and lock: then lock the new one */
		struct stat a, b;
		if (fstat(pf->fd, &a) < 0)
			die("-pidfile %s: %s", path, g_strerror(errno));
		if (stat(path, &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino)
			break;
		close(pf->fd);
	}
	char buf[32];
	int n = snprintf(buf, sizeof(buf), "%d\n", (int)getpid());
	if (ftruncate(pf->fd, 0) < 0 || pwrite(pf->fd, buf, n, 0) != n)
		die("-pidfile %s: cannot write pid file: %s", path, g_strerror(errno));
	char *dir = g_path_get_dirname(path);
	pf->dir_fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	g_free(dir);
	pf->base = g_path_get_basename(path);
}

static void remove_pidfile(struct pidfile *pf)
{
	if (pf->fd < 0)
		return;
	/* still ours? (a second instance cannot have replaced it while we
	 * hold the lock, but a user may have) */
	struct stat a, b;
	if (pf->dir_fd >= 0 && fstat(pf->fd, &a) == 0 &&
	    fstatat(pf->dir_fd, pf->base, &b, 0) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino)
		unlinkat(pf->dir_fd, pf->base, 0); /* fails quietly after -run-with user=, as QEMU */
	if (pf->dir_fd >= 0)
		close(pf->dir_fd);
	close(pf->fd);
	g_free(pf->base);
	pf->fd = pf->dir_fd = -1;
	pf->base = NULL;
}

int main(int argc, char **argv)
{
	struct kl_cli cli;
	char *err = NULL;
	struct kl_vm *vm = &the_vm;
	struct kl_privs privs = { .task_dir = -1 };

	if (kl_cli_parse(argc, argv, &cli, &err) < 0)
		die_err(err);
	if (cli.show_help) {
		kl_cli_print_help(stdout);
		return 0;
	}
	struct kl_sandbox_opts sandbox = { .enable = KL_SANDBOX_DEFAULT_ON };
	if (cli.sandbox && kl_sandbox_parse(cli.sandbox, &sandbox, &err) < 0)
		die_err(err);
	kl_sandbox_configure(&sandbox);
	/* exec: migration URIs fork and exec a shell: its command would
	 * inherit the seccomp allow-list (spawn=allow or not), so only
	 * without the sandbox */
	kl_mig_set_spawn_allowed(!sandbox.enable);
	if (cli.show_version) {
		printf("kvmlite version %s\n", KVMLITE_VERSION);
		return 0;
	}
	if (cli.cpu && !strcmp(cli.cpu, "help")) {
		const char *const *n = kl_cpu_model_names();
		printf("Available CPU models:\n");
		for (int i = 0; n[i]; i++)
			printf("  %s\n", n[i]);
		return 0;
	}
	if (cli.machine && !strcmp(cli.machine, "help")) {
		printf("Supported machines are:\nmicrovm  microvm: virtio-mmio devices, no PCI unless "
		       "pcie=on\npc       kvmlite PC (alias)\n"
		       "q35      kvmlite PC (alias)\nkvmlite  kvmlite PC: in-kernel irqchip and PIT, "
		       "16550A, PCI host with MSI-X\n");
		return 0;
	}
	for (guint i = 0; i < cli.devices->len; i++) {
		const char *d = g_ptr_array_index(cli.devices, i);
		if (!strcmp(d, "help") || !strcmp(d, "?"))
			add_device(NULL, d); /* lists the device types and exits */
	}
	/* Before any thread exists: limits, bounding/ambient/inheritable
	 * sets, no_new_privs (src/sandbox/privs.c). */
	if (cli.run_user && kl_privs_set_user(&privs, cli.run_user, &err) < 0)
		die("%s%s: %s", cli.run_user_flag, cli.run_user, err);
	if (kl_privs_init(&privs, cli.run_chroot, &err) < 0)
		die("%s", err);
	if (cli.incoming && kl_mig_uri_check(cli.incoming, true, &err) < 0)
		die("-incoming %s: %s", cli.incoming, err);
	if (cli.loadvm && cli.incoming)
		die("-loadvm and -incoming cannot be used together");
	/* -machine none (libvirt's capability probe): KVM and the monitors, no
	 * guest: no RAM-using devices, no vCPU, no kernel (as QEMU's 'none') */
	bool none = cli.machine && !strcmp(cli.machine, "none");
	if (!cli.kernel && !none)
		die("-kernel is required: kvmlite has no firmware and boots a kernel directly");
	/* Read and recognise the kernel before touching /dev/kvm; the first
	 * load uses this copy, a reset reads the file again. */
	void *kernel_img = NULL;
	size_t kernel_len = 0;
	if (cli.kernel &&
	    kl_boot_read_kernel(cli.kernel, &kernel_img, &kernel_len, &err) == KL_KERNEL_UNKNOWN)
		die_err(err);
	if (cli.initrd && kl_boot_check_file("initrd", cli.initrd, &err) < 0)
		die_err(err);

	for (guint i = 0; i < cli.objects->len; i++)
		add_object(g_ptr_array_index(cli.objects, i), &cli);
	struct kl_mem_opts mopts = { .thp = true, .merge = cli.mem_merge };
	uint64_t ram = cli.ram_size;
	struct kl_hostmem_bind ram_bind = { .policy = KL_HOSTMEM_DEFAULT };
	if (cli.mem_backend) {
		struct mem_backend *mb = find_mem_backend(cli.mem_backend);
		if (!mb)
			die("-machine memory-backend=%s: no -object with that id", cli.mem_backend);
		mopts = mb->opts;
		ram = mb->size;
		ram_bind = mb->bind;
	}
	setup_numa(&cli, &mopts);
	mopts.prealloc |= cli.mem_prealloc;

	kl_loop_init();
	if (cli.daemonize)
		daemonize_start();
	/* -blockdev nodes first (they need no VM; errors before /dev/kvm is
	 * opened), then -drive, then the devices on them, as libvirt orders
	 * them */
	for (guint i = 0; i < cli.blockdevs->len; i++) {
		const char *spec = g_ptr_array_index(cli.blockdevs, i);
		if (!kl_blockdev_add_spec(spec, &err))
			die("-blockdev %s: %s", spec, err);
	}
	struct kl_cpu_opts copts = { .model = cli.cpu, .assist = cli.assist,
				     .assist_log = cli.assist_log, .max_cpus = none ? 0 : cli.maxcpus };
	if (kl_vm_create(vm, none ? 2u << 20 : ram, &mopts, none ? 0 : cli.smp, &copts, &err) < 0)
		die_err(err);
	/* host NUMA placement, before the guest touches its RAM */
	if (kl_hostmem_apply(vm->mem.map_base, vm->mem.map_size, &ram_bind, &err) < 0)
		die("memory backend '%s': %s", cli.mem_backend, err);
	for (unsigned i = 0; i < numa.nnodes; i++)
		if (kl_hostmem_apply((uint8_t *)vm->mem.map_base + numa.node[i].ram_offset,
				     numa.node[i].size, &numa_binds[i], &err) < 0)
			die("memory backend '%s': %s", numa.node[i].memdev, err);
	g_free(numa_binds);
	numa_binds = NULL;
	kl_acpi_set_numa(&numa);   /* SRAT/SLIT (src/hw/acpi_numa.c) */
	kl_numa_set_active(&numa); /* query-cpus-fast props.node-id */
	for (guint i = 0; mem_backends && i < mem_backends->len; i++)
		mem_backend_free(g_ptr_array_index(mem_backends, i));
	if (mem_backends)
		g_ptr_array_free(mem_backends, TRUE);
	mem_backends = NULL;
	kl_mig_set_cpu_model(cli.cpu); /* named in the migration stream's header */
	vm->sockets = cli.sockets;
	vm->cores = cli.cores;
	vm->threads = cli.threads;
	vm->name = g_strdup(cli.name);
	vm->no_shutdown = cli.no_shutdown;
	vm->log_cpu_reset = cli.log_cpu_reset;
	if (cli.uuid) {
		kl_parse_uuid(cli.uuid, vm->uuid);
		vm->has_uuid = true;
	}

	if (!none && kl_platform_init(vm, &err) < 0)
		die_err(err);
	if (!none && kl_acpi_pm_init(vm, &err) < 0)
		die_err(err);
	/* -M microvm: virtio-mmio transports, PCI only with pcie=on */
	bool microvm = cli.machine && !strcmp(cli.machine, "microvm");
	if (!microvm && cli.machine_pcie >= 0)
		die("-machine pcie=%s: property 'pcie' exists only on -M microvm",
		    cli.machine_pcie ? "on" : "off");
	if (!microvm && cli.machine_auto_cmdline >= 0)
		die("-machine auto-kernel-cmdline: property exists only on -M microvm");
	if (microvm && kl_microvm_init(vm, &err) < 0)
		die_err(err);
	if (!none && (!microvm || cli.machine_pcie == 1)) {
		/* the PCI host exists from the start (microvm,pcie=on too), so
		 * that device_add finds bus 0 without a cold-plugged PCI device */
		if (!kl_pci_host_get(vm) && !kl_pci_host_create(vm, NULL, &err))
			die_err(err);
		/* ACPI PCI hot-plug on the PCI host's bus 0 (docs/hotplug.md) */
		if (kl_qdev_hotplug_init(vm, &err) < 0)
			die_err(err);
		/* vCPU hot-plug when -smp maxcpus > cpus (src/hotplug/cpu_hotplug.c) */
		if (kl_cpuhp_init(vm, &err) < 0)
			die_err(err);
		kl_acpi_set_cpu_slots(vm->ncpus);
	} else if (vm->ncpus > vm->boot_cpus) {
		die("-smp maxcpus=%u: CPU hot-plug needs ACPI PCI (-M pc, or -M microvm,pcie=on)",
		    vm->ncpus);
	}
	boot_opts.no_pci = microvm && cli.machine_pcie != 1;

	/* -chardev first: -serial chardev:ID, -mon and -device name them */
	for (guint i = 0; i < cli.chardevs->len; i++)
		if (kl_chardev_add(g_ptr_array_index(cli.chardevs, i), &err) < 0)
			die_err(err);
	/* Serial ports: COM1..COM4. */
	GPtrArray *serials = g_ptr_array_new();
	for (guint i = 0; i < cli.serials->len; i++)
		g_ptr_array_add(serials, g_ptr_array_index(cli.serials, i));
	bool isa_serial_dev = false; /* -device isa-serial: no default port, as QEMU */
	for (guint i = 0; i < cli.devices->len; i++)
		isa_serial_dev |= g_str_has_prefix(g_ptr_array_index(cli.devices, i), "isa-serial");
	if (serials->len == 0 && !cli.nodefaults && !isa_serial_dev)
		g_ptr_array_add(serials, cli.daemonize ? "null" : "stdio");
	if (serials->len > 4)
		die("-serial: at most 4 serial ports are supported");
	for (guint i = 0; i < serials->len; i++) {
		const char *spec = g_ptr_array_index(serials, i);
		if (!strcmp(spec, "none"))
			continue;
		if (cli.daemonize && !strcmp(spec, "stdio"))
			die("-serial stdio cannot be used with -daemonize");
		char label[32];
		snprintf(label, sizeof(label), "serial%u", i);
		struct kl_chardev *cd = kl_chardev_legacy("-serial", spec, label, &err);
		if (!cd || kl_serial_create(vm, cd, (int)i, &err) < 0)
			die_err(err);
	}
	g_ptr_array_free(serials, TRUE);
	for (guint i = 0; i < cli.netdevs->len; i++)
		if (!kl_netdev_add(g_ptr_array_index(cli.netdevs, i), &err))
			die_err(err);
	for (guint i = 0; i < cli.drives->len; i++)
		add_drive(g_ptr_array_index(cli.drives, i));
	for (guint i = 0; i < cli.devices->len; i++)
		add_device(vm, g_ptr_array_index(cli.devices, i));
	for (guint i = 0; drive_devices && i < drive_devices->len; i++)
		add_device(vm, g_ptr_array_index(drive_devices, i));
	if (drive_devices)
		g_ptr_array_free(drive_devices, TRUE);
	drive_devices = NULL;
	kl_device_clear_path();

	boot_cfg.kernel = cli.kernel;
	boot_cfg.initrd = cli.initrd;
	boot_cfg.cmdline = cli.append ? cli.append : "";
	static char *microvm_cmdline; /* lives as long as boot_cfg */
	/* microvm,acpi=on: the transports are LNRO0005 in the DSDT and (as
	 * QEMU) not on the command line; by default kvmlite uses the command
	 * line (docs/virtio-pci.md) */
	if (microvm && cli.machine_acpi == 1)
		boot_opts.acpi_virtio_mmio = vm->virtio_mmio;
	if (microvm && cli.machine_auto_cmdline != 0 && cli.machine_acpi != 1) {
		microvm_cmdline = kl_microvm_cmdline(vm, boot_cfg.cmdline);
		boot_cfg.cmdline = microvm_cmdline;
	}
	boot_cfg.image = kernel_img;
	boot_cfg.image_len = kernel_len;
	/* After a chroot or a user change the files may not open again: a
	 * reset then loads the copies read now (QEMU keeps them as ROMs). */
	bool keep_images = cli.run_user || cli.run_chroot;
	gchar *initrd_img = NULL;
	gsize initrd_len = 0;
	if (keep_images && cli.initrd) {
		GError *gerr = NULL;
		if (!g_file_get_contents(cli.initrd, &initrd_img, &initrd_len, &gerr))
			die("initrd '%s': %s", cli.initrd, gerr->message);
		boot_cfg.initrd_image = initrd_img;
		boot_cfg.initrd_len = initrd_len;
	}
	/* -incoming: guest RAM and the vCPUs come from the stream; as QEMU's
	 * ROM loader during INMIGRATE, nothing is written into RAM now (with
	 * x-ignore-shared RAM may be the running source's shared file) */
	if (!none && !cli.incoming && load_boot(vm) < 0)
		exit(1);
	if (!keep_images) {
		boot_cfg.image = NULL;
		g_free(kernel_img);
		kernel_img = NULL;
	}
	vm->reload_boot = none ? NULL : load_boot;

	for (guint i = 0; i < cli.qmps->len; i++)
		if (kl_monitor_add_qmp(vm, g_ptr_array_index(cli.qmps, i), &err) < 0)
			die_err(err);
	for (guint i = 0; i < cli.mons->len; i++)
		if (kl_monitor_add_mon(vm, g_ptr_array_index(cli.mons, i), &err) < 0)
			die_err(err);
	if (cli.no_reboot)
		kl_vm_add_event_listener(vm, on_reset_event, vm);

	if (cli.pidfile)
		write_pidfile(&pidfile, cli.pidfile);
	/* Everything privileged is open: drop (before the signal sources,
	 * whose GLib worker thread blocks every signal). */
	if (kl_privs_drop(&privs, &err) < 0)
		die_err(err);
#ifndef __has_feature
#define __has_feature(x) 0
#endif
#if defined(__SANITIZE_ADDRESS__) || __has_feature(address_sanitizer)
	/* LeakSanitizer's exit-time check ptraces the process's threads: a
	 * process that changed its uid is no longer dumpable.  ASan builds
	 * only (tests); a release build stays non-dumpable. */
	prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
#endif

	signal(SIGPIPE, SIG_IGN);
	/* seccomp (docs/sandbox.md): after the privilege drop above (glibc's
	 * setuid runs setresuid on every thread, so no thread may be filtered
	 * before it); GLib's signal thread is born under the 'other' list; the
	 * vCPUs wait for the BQL, held here, before their first KVM_RUN. */
	if (kl_sandbox_run_other(add_signal_sources, vm, &err) < 0)
		die_err(err);
	if (kl_vm_start(vm, cli.start_paused || cli.incoming || cli.loadvm, &err) < 0)
		die_err(err);
	if (kl_sandbox_arm(&err) < 0)
		die_err(err);
	/* -loadvm: the snapshot's state before the first instruction */
	if (cli.loadvm) {
		if (kl_snapshot_loadvm(vm, cli.loadvm, &err) < 0)
			die_err(err);
		if (!cli.start_paused)
			kl_vm_resume(vm);
	}
	/* -incoming: the vCPUs stay parked until the state has loaded
	 * (file: loads here; unix:/tcp: when the source connects) */
	if (cli.incoming && kl_migrate_incoming(vm, cli.incoming, cli.start_paused, &err) < 0)
		die("-incoming %s: %s", cli.incoming, err);
	daemonize_finish();

	kl_loop_run();

	int code = vm->exit_code;
	kl_vm_destroy(vm);
	kl_qdev_free_all();
	kl_netdev_free_all(); /* the NICs are gone: their back-ends go now */
	kl_blockdev_close_all();
	kl_thr_group_objects_free();
	kl_object_types_free_all();
	kl_fdset_free_all();
	kl_acpi_set_numa(NULL);
	kl_acpi_set_cpu_slots(0);
	kl_numa_free(&numa);
	kl_monitor_cleanup();
	kl_chardev_cleanup();
	kl_mig_cleanup();
	kl_job_cleanup();
	kl_chardev_restore_tty();
	remove_pidfile(&pidfile);
	g_free(kernel_img);
	g_free(initrd_img);
	kl_privs_free(&privs);
	kl_cli_free(&cli);
	kl_unlock();
	fflush(stdout);
	return code;
}
