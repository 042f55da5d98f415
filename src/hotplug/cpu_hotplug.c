/* vCPU hot-plug, QMP side: device_add / device_del of CPU types,
 * query-hotpluggable-cpus, the guest's eject (kvmlite/cpu_hotplug.h,
 * docs/hotplug.md).  Slot i = APIC id i = socket/core/thread as QEMU's
 * x86 topology with the -smp sockets/cores/threads. */
#include <stdlib.h>
#include <string.h>

#include "kvmlite/cpu.h"
#include "kvmlite/cpu_hotplug.h"
#include "kvmlite/opts.h"
#include "kvmlite/vm.h"
#include "kvmlite/vmstate.h"
#include "../cpu/cpumodel_priv.h"

struct cpuhp_state {
	struct kl_vm *vm;
	char **ids;          /* per slot: the device_add id (NULL: none or boot CPU) */
	bool *pending;       /* per slot: device_del asked, the guest has not ejected */
};

static struct cpuhp_state *the_st; /* owned by the VM's cleanup list */
static void (*deleted_fn)(const char *id, const char *path);

void kl_cpuhp_set_deleted_fn(void (*fn)(const char *id, const char *path))
{
	deleted_fn = fn;
}

static struct cpuhp_state *st_of(struct kl_vm *vm)
{
	return the_st && the_st->vm == vm ? the_st : NULL;
}

/* QEMU's type name of the CPU model in use: "<model>-x86_64-cpu" */
static char *cpu_type(const struct kl_vm *vm)
{
	const char *m = vm->cpu_model ? vm->cpu_model : kl_cpu_default_model(kl_host_is_emulated());
	size_t n = strcspn(m, ",");
	return g_strdup_printf("%.*s-x86_64-cpu", (int)n, m);
}

bool kl_cpuhp_is_cpu_driver(const char *driver)
{
	size_t n = driver ? strlen(driver) : 0;
	return n > 11 && !strcmp(driver + n - 11, "-x86_64-cpu");
}

static void topo(const struct kl_vm *vm, unsigned slot, unsigned *so, unsigned *co, unsigned *th)
{
	unsigned t = vm->threads ? vm->threads : 1, c = vm->cores ? vm->cores : 1;
	*th = slot % t;
	*co = (slot / t) % c;
	*so = slot / (t * c);
}

static char *qom_path(const struct cpuhp_state *st, unsigned slot)
{
	if (st && st->ids[slot])
		return g_strdup_printf("/machine/peripheral/%s", st->ids[slot]);
	return g_strdup_printf("/machine/unattached/device[%u]", slot);
}

char *kl_cpuhp_qom_path(struct kl_vm *vm, unsigned slot)
{
	struct cpuhp_state *st = st_of(vm);
	return qom_path(st && slot < vm->ncpus ? st : NULL, slot);
}

void kl_cpuhp_foreach_slot(struct kl_vm *vm,
			   void (*fn)(void *opaque, const char *type, unsigned slot,
				      unsigned socket, unsigned core, unsigned thread,
				      const char *qom_path),
			   void *opaque)
{
	char *type = cpu_type(vm);
	struct cpuhp_state *st = st_of(vm);
	for (unsigned i = vm->ncpus; i > 0; i--) {
		unsigned so, co, th;
		topo(vm, i - 1, &so, &co, &th);
		char *path = kl_vcpu_plugged(vm->vcpus[i - 1]) ? qom_path(st, i - 1) : NULL;
		fn(opaque, type, i - 1, so, co, th, path);
		g_free(path);
	}
	g_free(type);
}

static bool id_taken(const struct cpuhp_state *st, const char *id)
{
	for (unsigned i = 0; id && i < st->vm->ncpus; i++)
		if (st->ids[i] && !strcmp(st->ids[i], id))
			return true;
	return false;
}

/* socket-id/core-id/thread-id: -1 absent, -2 not a number (*err set) */
static long get_id(struct kl_opts *o, const char *key, char **err)
{
	const char *v = kl_opts_get(o, key);
	if (!v)
		return -1;
	char *end;
	long x = strtol(v, &end, 10);
	if (!*v || *end || x < 0) {
		*err = g_strdup_printf("Parameter '%s' expects uint32_t", key);
		return -2;
	}
	return x;
}

int kl_cpuhp_device_add(struct kl_vm *vm, struct kl_opts *o, char **err)
{
	struct cpuhp_state *st = st_of(vm);
	const char *drv = kl_opts_get(o, "driver");
	const char *id = kl_opts_get(o, "id");
	char *type = cpu_type(vm);
	int r = -1;
	if (strcmp(drv, type)) {
		*err = g_strdup_printf("Invalid CPU type, expected cpu type: '%s'", type);
		goto out;
	}
	long so = get_id(o, "socket-id", err), co = -1, th = -1;
	if (so == -2 || (co = get_id(o, "core-id", err)) == -2 ||
	    (th = get_id(o, "thread-id", err)) == -2)
		goto out;
	for (unsigned i = 0; i < o->n; i++) {
		const char *k = o->v[i].key;
		if (strcmp(k, "driver") && strcmp(k, "id") && strcmp(k, "socket-id") &&
		    strcmp(k, "core-id") && strcmp(k, "thread-id")) {
			*err = g_strdup_printf("Property '%s.%s' not found", type, k);
			goto out;
		}
	}
	if (!st) {
		*err = g_strdup_printf("CPU hot-plug needs -smp maxcpus= greater than the CPUs "
				       "present (%u)", vm->ncpus);
		goto out;
	}
	if (so < 0 || co < 0 || th < 0) {
		*err = g_strdup_printf("CPU %s is not set",
				       so < 0 ? "socket-id" : co < 0 ? "core-id" : "thread-id");
		goto out;
	}
	unsigned sockets = vm->ncpus / (vm->cores * vm->threads);
	if ((unsigned long)so >= sockets) {
		*err = g_strdup_printf("Invalid CPU socket-id: %ld must be in range 0:%u", so, sockets - 1);
		goto out;
	}
	if ((unsigned long)co >= vm->cores) {
		*err = g_strdup_printf("Invalid CPU core-id: %ld must be in range 0:%u", co, vm->cores - 1);
		goto out;
	}
	if ((unsigned long)th >= vm->threads) {
		*err = g_strdup_printf("Invalid CPU thread-id: %ld must be in range 0:%u", th,
				       vm->threads - 1);
		goto out;
	}
	unsigned slot = (unsigned)((so * vm->cores + co) * vm->threads + th);
	if (slot >= vm->ncpus) {
		*err = g_strdup_printf("Invalid CPU [socket: %ld, die: 0, core: %ld, thread: %ld] with "
				       "APIC ID %u, valid index range 0:%u", so, co, th, slot, vm->ncpus - 1);
		goto out;
	}
	if (kl_vcpu_plugged(vm->vcpus[slot])) {
		*err = g_strdup_printf("CPU[%u] with APIC ID %u exists", slot, slot);
		goto out;
	}
	if (id && id_taken(st, id)) {
		*err = g_strdup_printf("Duplicate device ID '%s'", id);
		goto out;
	}
	g_free(st->ids[slot]);
	st->ids[slot] = g_strdup(id);
	st->pending[slot] = false;
	kl_vcpu_plug(vm->vcpus[slot]);
	kl_acpi_cpuhp_plugged(vm, slot);
	r = 0;
out:
	g_free(type);
	return r;
}

int kl_cpuhp_device_del(struct kl_vm *vm, const char *id, char **err)
{
	struct cpuhp_state *st = st_of(vm);
	if (!id)
		return 1;
	for (unsigned i = 0; i < vm->ncpus; i++) {
		if (!kl_vcpu_plugged(vm->vcpus[i]))
			continue;
		char *path = qom_path(st, i);
		bool match = !strcmp(path, id) || (st && st->ids[i] && !strcmp(st->ids[i], id));
		g_free(path);
		if (!match)
			continue;
		if (i == 0) {
			*err = g_strdup("Boot CPU is unpluggable");
			return -1;
		}
		if (!st) {
			*err = g_strdup("CPU hot-unplug needs -smp maxcpus=");
			return -1;
		}
		if (st->pending[i]) {
			*err = g_strdup_printf("Device %s is already in the process of unplug", id);
			return -1;
		}
		st->pending[i] = true;
		kl_acpi_cpuhp_unplug_request(vm, i);
		return 0;
	}
	return 1;
}

/* The guest ejected slot (main loop, BQL held): stop the vCPU, then
 * DEVICE_DELETED. */
static void eject(void *opaque, unsigned slot)
{
	struct cpuhp_state *st = opaque;
	struct kl_vm *vm = st->vm;
	if (slot == 0 || slot >= vm->ncpus || !kl_vcpu_plugged(vm->vcpus[slot]))
		return;
	kl_vcpu_unplug(vm->vcpus[slot]);
	char *path = qom_path(st, slot);
	if (deleted_fn)
		deleted_fn(st->ids[slot], path);
	g_free(path);
	g_free(st->ids[slot]);
	st->ids[slot] = NULL;
	st->pending[slot] = false;
}

/* Migration and snapshots with a CPU plugged or unplugged at run time are
 * refused: the destination's -smp has only the boot CPUs present. */
static int st_check(void *opaque, char **err)
{
	struct cpuhp_state *st = opaque;
	for (unsigned i = 0; i < st->vm->ncpus; i++)
		if (kl_vcpu_plugged(st->vm->vcpus[i]) != (i < st->vm->boot_cpus)) {
			*err = g_strdup_printf("vCPU %u was hot-%s: migration and snapshots of a VM "
					       "whose CPUs changed are not supported", i,
					       i < st->vm->boot_cpus ? "unplugged" : "plugged");
			return -1;
		}
	return 0;
}

static int st_save(void *opaque, struct kl_vms_out *o, char **err)
{
	(void)o;
	return st_check(opaque, err);
}

static int st_load(void *opaque, struct kl_vms_in *in, uint32_t version, char **err)
{
	(void)opaque, (void)in, (void)version, (void)err;
	return 0;
}

static const struct kl_vmstate_ops st_vmstate = {
	.kind = "cpu-hotplug", .version = 1, .min_version = 1,
	.quiesce = st_check, .save = st_save, .load = st_load,
};

static void st_cleanup(void *opaque)
{
	struct cpuhp_state *st = opaque;
	for (unsigned i = 0; i < st->vm->ncpus; i++)
		g_free(st->ids[i]);
	g_free(st->ids);
	g_free(st->pending);
	if (the_st == st)
		the_st = NULL;
	g_free(st);
}

int kl_cpuhp_init(struct kl_vm *vm, char **err)
{
	if (vm->ncpus <= vm->boot_cpus)
		return 0;
	struct cpuhp_state *st = g_new0(struct cpuhp_state, 1);
	st->vm = vm;
	st->ids = g_new0(char *, vm->ncpus);
	st->pending = g_new0(bool, vm->ncpus);
	if (kl_acpi_cpuhp_init(vm, eject, st, err) < 0) {
		g_free(st->ids);
		g_free(st->pending);
		g_free(st);
		return -1;
	}
	the_st = st;
	kl_vm_add_cleanup(vm, st_cleanup, st);
	kl_vmstate_register(vm, "0", &st_vmstate, st);
	return 0;
}
