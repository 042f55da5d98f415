/* Test doubles for the vm.h / block.h functions the monitor calls, so the
 * monitor can be unit-tested with a struct kl_vm built by hand. */
#include <string.h>

#include "fake_vm.h"
#include "kvmlite/assist.h"
#include "kvmlite/cpu_hotplug.h"
#include "kvmlite/hotplug.h"
#include "kvmlite/pci.h"
#include "kvmlite/migration.h"
#include "../../../src/block/node.h"

struct fake_calls fake;

struct kl_vcpu {
	int index;
	int tid;
};

const char *kl_runstate_name(enum kl_runstate s)
{
	static const char *const n[] = { "prelaunch", "running", "paused", "shutdown",
					 "internal-error", "inmigrate", "postmigrate" };
	return (unsigned)s < G_N_ELEMENTS(n) ? n[s] : "unknown";
}

static void emit(struct kl_vm *vm, enum kl_vm_event ev, bool guest, const char *reason)
{
	(void)vm;
	struct kl_event_info info = { guest, reason };
	if (fake.listener)
		fake.listener(fake.listener_opaque, ev, &info);
}

void kl_vm_pause(struct kl_vm *vm)
{
	fake.pause++;
	vm->state = KL_RS_PAUSED;
	emit(vm, KL_EV_STOP, false, NULL);
}

void kl_vm_resume(struct kl_vm *vm)
{
	fake.resume++;
	vm->state = KL_RS_RUNNING;
	emit(vm, KL_EV_RESUME, false, NULL);
}

void kl_vm_request_reset(struct kl_vm *vm, bool guest, const char *reason)
{
	fake.reset++;
	fake.reset_guest = guest;
	g_strlcpy(fake.reset_reason, reason, sizeof(fake.reset_reason));
	emit(vm, KL_EV_RESET, guest, reason);
}

/* the fake resets at once (kl_vm_request_reset): nothing is pending */
void kl_vm_reset_now(struct kl_vm *vm)
{
	(void)vm;
}

void kl_vm_request_shutdown(struct kl_vm *vm, int exit_code, bool guest, const char *reason)
{
	fake.shutdown++;
	fake.shutdown_code = exit_code;
	fake.shutdown_guest = guest;
	g_strlcpy(fake.shutdown_reason, reason, sizeof(fake.shutdown_reason));
	vm->state = KL_RS_SHUTDOWN;
	emit(vm, KL_EV_SHUTDOWN, guest, reason);
}

void kl_vm_request_powerdown(struct kl_vm *vm)
{
	fake.powerdown++;
	emit(vm, KL_EV_POWERDOWN, false, NULL);
	if (vm->powerdown_fn)
		vm->powerdown_fn(vm->powerdown_opaque);
}

void kl_vm_add_event_listener(struct kl_vm *vm, kl_event_fn fn, void *opaque)
{
	(void)vm;
	fake.listener = fn;
	fake.listener_opaque = opaque;
	fake.listeners++;
}

void kl_vm_add_reset_handler(struct kl_vm *vm, kl_reset_fn fn, void *opaque)
{
	(void)vm;
	fake.reset_fn = fn;
	fake.reset_opaque = opaque;
}

int kl_vm_set_irq(struct kl_vm *vm, unsigned gsi, int level)
{
	(void)vm;
	fake.irq_calls++;
	fake.irq_gsi = gsi;
	fake.irq_level = level;
	return 0;
}

int kl_vcpu_index(const struct kl_vcpu *c)
{
	return c->index;
}

int kl_vcpu_thread_id(const struct kl_vcpu *c)
{
	return c->tid;
}

void fake_vm_init(struct kl_vm *vm, unsigned ncpus)
{
	memset(vm, 0, sizeof(*vm));
	memset(&fake, 0, sizeof(fake));
	vm->kvm_fd = vm->vm_fd = -1;
	vm->ncpus = ncpus;
	vm->sockets = 1;
	vm->cores = ncpus;
	vm->threads = 1;
	vm->vcpus = g_new0(struct kl_vcpu *, ncpus);
	for (unsigned i = 0; i < ncpus; i++) {
		vm->vcpus[i] = g_new0(struct kl_vcpu, 1);
		vm->vcpus[i]->index = (int)i;
		vm->vcpus[i]->tid = 1000 + (int)i;
	}
	vm->state = KL_RS_PRELAUNCH;
	kl_bus_init(&vm->pio, "pio");
}

void fake_vm_free(struct kl_vm *vm)
{
	for (unsigned i = 0; i < vm->ncpus; i++)
		g_free(vm->vcpus[i]);
	g_free(vm->vcpus);
	kl_bus_destroy(&vm->pio);
	if (vm->vmstate) /* sections a device registered (acpi-pm's) */
		g_ptr_array_free(vm->vmstate, TRUE);
	vm->vmstate = NULL;
}

/* ---- block layer: two backends, each a raw node over a file node ---- */
static const struct kl_bdrv fake_file_drv = { .name = "file", .protocol = true };
static const struct kl_bdrv fake_raw_drv = { .name = "raw" };

struct kl_blockdev {
	const char *id, *file;
	uint64_t size;
	bool ro;
	enum kl_blk_cache cache;
	const char *qdev;
	struct kl_blk_stats st;
	struct kl_bnode fmt, proto;
};

static struct kl_blockdev fake_bds[] = {
	{ "drive0", "/nonexistent/disk0.img", 8 << 20, false, KL_CACHE_NONE, "/machine/peripheral-anon/device[0]",
	  { .rd_ops = 3, .wr_ops = 2, .rd_bytes = 1536, .wr_bytes = 1024, .flush_ops = 1 } },
	{ "drive1", "/nonexistent/disk1.img", 4096, true, KL_CACHE_UNSAFE, NULL, { 0 } },
};
unsigned fake_nblockdevs;

static void fake_nodes(void)
{
	for (unsigned i = 0; i < G_N_ELEMENTS(fake_bds); i++) {
		struct kl_blockdev *bd = &fake_bds[i];
		if (bd->fmt.drv)
			continue;
		struct kl_bnode_inherit in = { .readonly = bd->ro,
					       .direct = bd->cache == KL_CACHE_NONE,
					       .no_flush = bd->cache == KL_CACHE_UNSAFE };
		bd->proto = (struct kl_bnode){ .node_name = g_strdup_printf("#file%03u", i),
					       .drv = &fake_file_drv, .filename = (char *)bd->file,
					       .size = bd->size, .readonly = bd->ro, .in = in };
		bd->fmt = (struct kl_bnode){ .node_name = g_strdup_printf("#block%03u", i),
					     .drv = &fake_raw_drv, .file = &bd->proto,
					     .filename = (char *)bd->file, .size = bd->size,
					     .readonly = bd->ro, .in = in };
		if (i == 0) {
			/* drive0 wrote up to 8 KiB; its file passed one discard on */
			bd->fmt.stats.wr_highest_offset = 8192;
			bd->proto.stats = (struct kl_bnode_stats){ .wr_highest_offset = 8192,
				.discard_nb_ok = 1, .discard_bytes_ok = 4096 };
		}
	}
}

void kl_blockdev_foreach(void (*fn)(struct kl_blockdev *bd, void *opaque), void *opaque)
{
	fake_nodes();
	for (unsigned i = 0; i < fake_nblockdevs && i < G_N_ELEMENTS(fake_bds); i++)
		fn(&fake_bds[i], opaque);
}
void kl_bnode_foreach(void (*fn)(struct kl_bnode *bs, void *opaque), void *opaque)
{
	fake_nodes();
	for (unsigned i = 0; i < fake_nblockdevs && i < G_N_ELEMENTS(fake_bds); i++) {
		fn(&fake_bds[i].proto, opaque);
		fn(&fake_bds[i].fmt, opaque);
	}
}
const char *kl_blockdev_id(const struct kl_blockdev *bd) { return bd->id; }
struct kl_bnode *kl_blockdev_root(const struct kl_blockdev *bd) { return (struct kl_bnode *)&bd->fmt; }
const char *kl_blockdev_attached(const struct kl_blockdev *bd) { return bd->qdev; }
void kl_blockdev_get_stats(const struct kl_blockdev *bd, struct kl_blk_stats *out)
{
	*out = bd->st;
}
uint64_t kl_bnode_file_length(struct kl_bnode *bs) { return bs->size; }
char *kl_bnode_backing_path(const char *overlay, const char *backing)
{
	(void)overlay;
	return g_strdup(backing);
}

/* Graph operations: the fake has none; they fail with a fixed text the
 * tests check for (the monitor must pass it on as the error). */
#define FAKE_NOGRAPH(e) (*(e) = g_strdup("fake: no block graph"), -1)
struct kl_opts *kl_opts_from_json(JsonObject *obj, const char *src, char **err)
{
	(void)obj, (void)src;
	*err = g_strdup("fake: no block graph");
	return NULL;
}
struct kl_bnode *kl_blockdev_add(struct kl_opts *o, char **err)
{
	(void)o;
	*err = g_strdup("fake: no block graph");
	return NULL;
}
int kl_blockdev_del(const char *n, char **err) { (void)n; return FAKE_NOGRAPH(err); }
int kl_block_snapshot_internal(const char *d, const char *n, char **err)
{
	(void)d, (void)n;
	return FAKE_NOGRAPH(err);
}
int kl_block_snapshot_delete_internal(const char *d, const char *id, const char *n,
				      struct kl_snapshot_info *out, char **err)
{
	(void)d, (void)id, (void)n, (void)out;
	return FAKE_NOGRAPH(err);
}
int kl_block_snapshot_sync(const char *d, const char *nn, const char *f, const char *sn,
			   const char *fmt, bool existing, char **err)
{
	(void)d, (void)nn, (void)f, (void)sn, (void)fmt, (void)existing;
	return FAKE_NOGRAPH(err);
}
int kl_block_snapshot(const char *n, const char *o, char **err)
{
	(void)n, (void)o;
	return FAKE_NOGRAPH(err);
}

/* The emulation assist: a fake with two counters (struct kl_assist is
 * opaque; tests set vm->assist to any non-NULL pointer). */
unsigned kl_assist_counters(const struct kl_assist *a, struct kl_assist_counter *out,
			    unsigned max)
{
	(void)a;
	static const struct kl_assist_counter c[] = { { "xsave", 3, 3000 }, { "syscall", 5, 500 } };
	unsigned n = 0;
	for (; n < G_N_ELEMENTS(c) && n < max; n++)
		out[n] = c[n];
	return n;
}

/* I/O limits: the fake's backends have none and refuse to get any. */
const struct kl_throttle_config *kl_blockdev_throttle(const struct kl_blockdev *bd,
						      const char **group)
{
	(void)bd, (void)group;
	return NULL;
}
int kl_blockdev_set_throttle(struct kl_blockdev *bd, const struct kl_throttle_config *cfg,
			     const char *group, char **err)
{
	(void)bd, (void)cfg, (void)group;
	return FAKE_NOGRAPH(err);
}

/* ---- migration (src/migration/ is not linked into the monitor tests) ---- */
static struct kl_mig_info fake_mig;

int kl_migrate(struct kl_vm *vm, const char *uri, char **err)
{
	(void)vm;
	*err = g_strdup_printf("fake: no migration to %s", uri);
	return -1;
}

int kl_migrate_incoming_qmp(struct kl_vm *vm, const char *uri, char **err)
{
	(void)vm, (void)uri;
	*err = g_strdup("'-incoming' was not specified on the command line");
	return -1;
}

void kl_mig_incoming_autostart(bool on) { (void)on; }
const struct kl_mig_info *kl_mig_info(void) { return &fake_mig; }
const char *kl_mig_status_name(enum kl_mig_status s) { (void)s; return "none"; }
void kl_migrate_cancel(struct kl_vm *vm) { (void)vm; }
static struct kl_mig_params fake_params;
struct kl_mig_params *kl_mig_params(void) { return &fake_params; }
void kl_mig_set_event_fn(void (*fn)(const char *, const char *, const char *, int64_t)) { (void)fn; }

int kl_snapshot_job(struct kl_vm *vm, enum kl_snapshot_op op, const char *job_id,
		    const char *tag, const char *vmstate, const char *const *devices,
		    unsigned ndevices, char **err)
{
	(void)vm, (void)op, (void)job_id, (void)tag, (void)vmstate, (void)devices, (void)ndevices;
	*err = g_strdup("fake: no snapshots");
	return -1;
}
/* Hot-plug (src/hotplug/qdev.c, src/hw/pci.c): the fake machine has no
 * devices and no PCI bus; device_add fails with a fixed text. */
int kl_qdev_add(struct kl_vm *vm, struct kl_opts *o, bool hotplug, char **err)
{
	(void)vm, (void)o, (void)hotplug;
	*err = g_strdup("fake: no devices");
	return -1;
}
int kl_qdev_del(struct kl_vm *vm, const char *id, bool *not_found, char **err)
{
	(void)vm;
	*not_found = true;
	*err = g_strdup_printf("Device '%s' not found", id);
	return -1;
}
void kl_qdev_set_deleted_fn(void (*fn)(const char *id, const char *path)) { (void)fn; }
void kl_qdev_foreach(void (*fn)(const struct kl_qdev *q, void *opaque), void *opaque)
{
	(void)fn, (void)opaque;
}
const struct kl_qdev *kl_qdev_at_slot(int slot) { (void)slot; return NULL; }
/* weak: a target that links the real src/hw/pci.c (fuzz_balloon) uses it */
__attribute__((weak)) struct kl_pci_dev *kl_pci_dev_at(struct kl_vm *vm, unsigned slot)
{
	(void)vm, (void)slot;
	return NULL;
}
__attribute__((weak)) uint32_t kl_pci_cfg_read(struct kl_vm *vm, unsigned slot, unsigned fn, unsigned off, unsigned size)
{
	(void)vm, (void)slot, (void)fn, (void)off, (void)size;
	return 0xffffffffu;
}
__attribute__((weak)) uint64_t kl_pci_bar_size(const struct kl_pci_dev *d, unsigned bar, enum kl_pci_bar_type *type,
			 bool *prefetch)
{
	(void)d, (void)bar, (void)type, (void)prefetch;
	return 0;
}
__attribute__((weak)) uint64_t kl_pci_bar_addr(const struct kl_pci_dev *d, unsigned bar, bool *mapped)
{
	(void)d, (void)bar;
	*mapped = false;
	return 0;
}

/* vCPU hot-plug (src/hotplug/cpu_hotplug.c): every fake vCPU is plugged, no
 * CPU hot-plug controller */
bool kl_vcpu_plugged(const struct kl_vcpu *c) { return c != NULL; }
bool kl_cpuhp_is_cpu_driver(const char *driver) { (void)driver; return false; }
int kl_cpuhp_device_add(struct kl_vm *vm, struct kl_opts *o, char **err)
{
	(void)vm, (void)o;
	*err = g_strdup("no CPU hot-plug in the fake machine");
	return -1;
}
int kl_cpuhp_device_del(struct kl_vm *vm, const char *id, char **err)
{
	(void)vm, (void)id, (void)err;
	return 1;
}
void kl_cpuhp_foreach_slot(struct kl_vm *vm,
			   void (*fn)(void *opaque, const char *type, unsigned slot,
				      unsigned socket, unsigned core, unsigned thread,
				      const char *qom_path),
			   void *opaque)
{
	(void)vm, (void)fn, (void)opaque;
}
void kl_cpuhp_set_deleted_fn(void (*fn)(const char *id, const char *path)) { (void)fn; }
char *kl_cpuhp_qom_path(struct kl_vm *vm, unsigned slot)
{
	(void)vm;
	return g_strdup_printf("/machine/unattached/device[%u]", slot);
}
