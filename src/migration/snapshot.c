/* snapshot-save / snapshot-load / snapshot-delete (QEMU 6.0+ jobs,
 * migration/savevm.c save_snapshot / load_snapshot / delete_snapshot):
 * the VM state is the migration stream (stream.c, socket layout: zero
 * pages as markers), kept in the VM state area of one qcow2 node's
 * internal snapshot; every listed node gets the disk snapshot.  Save and
 * load stop the guest (STOP / RESUME) and quiesce every device, so disk,
 * memory and devices are taken at one instant; load reverts the disks
 * first, then loads the state, and runs the guest again if it ran. */
#include <errno.h>
#include <linux/kvm.h>
#include <string.h>
#include <sys/ioctl.h>

#include "../block/node.h"
#include "kvmlite/job.h"
#include "kvmlite/migration.h"
#include "kvmlite/vm.h"
#include "stream_int.h"

/* The largest VM state a load reads into memory beyond the guest's RAM
 * (headers, records, device sections). */
#define VMSTATE_SLACK (1ull << 30)

struct snap_job {
	struct kl_vm *vm;
	enum kl_snapshot_op op;
	char *tag, *vmstate;
	char **devices;
	unsigned n;
};

static void job_free(void *opaque)
{
	struct snap_job *j = opaque;
	g_free(j->tag);
	g_free(j->vmstate);
	g_strfreev(j->devices);
	g_free(j);
}

static bool migration_busy(char **err)
{
	enum kl_mig_status st = kl_mig_info()->status;
	if (st == KL_MIG_SETUP || st == KL_MIG_ACTIVE || st == KL_MIG_DEVICE) {
		*err = g_strdup("There's a migration process in progress");
		return true;
	}
	if (kl_mig_incoming_pending()) {
		*err = g_strdup("Guest is waiting for an incoming migration");
		return true;
	}
	return false;
}

/* QEMU_CLOCK_VIRTUAL's counterpart: kvmclock (guest time, ns). */
static uint64_t guest_clock(struct kl_vm *vm)
{
	struct kvm_clock_data cd;
	memset(&cd, 0, sizeof(cd));
	return ioctl(vm->vm_fd, KVM_GET_CLOCK, &cd) < 0 ? 0 : cd.clock;
}

static int do_save(struct snap_job *j, struct kl_snap_devs *d, char **err)
{
	struct kl_vm *vm = j->vm;
	if (kl_snap_any_has(d, j->tag)) {
		*err = g_strdup_printf("Snapshot '%s' already exists in one or more devices", j->tag);
		return -1;
	}
	struct kl_bnode *vbs = kl_snap_vmstate_bs(d, j->vmstate, err);
	if (!vbs || migration_busy(err))
		return -1;
	bool was_running = vm->state == KL_RS_RUNNING;
	kl_vm_pause(vm);
	struct kl_mig_out out = { .fd = -1, .mem = g_byte_array_new() };
	struct kl_mig_stats st;
	memset(&st, 0, sizeof(st));
	char *e = NULL;
	int rc = kl_mig_save(vm, &out, &st, &e);
	if (rc < 0)
		*err = g_strdup_printf("Error while writing VM state: %s", e ? e : "error");
	else
		rc = kl_snap_all_create(d, j->tag, vbs, out.mem->data, out.mem->len,
					guest_clock(vm), err);
	g_free(e);
	g_free(out.err);
	g_byte_array_free(out.mem, TRUE);
	/* as QEMU's save_snapshot: the guest runs again either way */
	if (was_running)
		kl_vm_resume(vm);
	return rc;
}

/* The VM state of tag on vbs, read whole (image content: its size is
 * bounded by what this VM's stream can be; the stream loader checks the
 * rest). */
static uint8_t *read_vmstate(struct kl_vm *vm, struct kl_bnode *vbs, const char *tag,
			     uint64_t *len, char **err)
{
	struct kl_snapshot_info in;
	if (!kl_snap_find(vbs, tag, &in)) {
		*err = g_strdup_printf("Snapshot '%s' does not exist in device '%s'", tag,
				       vbs->node_name);
		return NULL;
	}
	if (!in.vm_state_size) {
		/* sic: QEMU 7.2's text has the two spaces */
		*err = g_strdup("This is a disk-only snapshot. Revert to it  offline using qemu-img");
		return NULL;
	}
	if (in.vm_state_size > vm->mem.ram_size + VMSTATE_SLACK) {
		*err = g_strdup_printf("Snapshot '%s': %llu bytes of VM state is more than this "
				       "VM's RAM and device state can be", tag,
				       (unsigned long long)in.vm_state_size);
		return NULL;
	}
	uint8_t *buf = g_try_malloc(in.vm_state_size);
	if (!buf) {
		*err = g_strdup_printf("Cannot allocate %llu bytes for the VM state",
				       (unsigned long long)in.vm_state_size);
		return NULL;
	}
	char *e = NULL;
	if (kl_snap_vmstate_read(vbs, in.id, buf, in.vm_state_size, &e) < 0) {
		*err = g_strdup_printf("Could not read VM state of snapshot '%s': %s", tag,
				       e ? e : "error");
		g_free(e);
		g_free(buf);
		return NULL;
	}
	*len = in.vm_state_size;
	return buf;
}

static int do_load(struct kl_vm *vm, const char *tag, struct kl_snap_devs *d,
		   struct kl_bnode *vbs, bool run_after, char **err)
{
	uint64_t len = 0;
	uint8_t *buf = read_vmstate(vm, vbs, tag, &len, err);
	if (!buf)
		return -1;
	char *e = NULL;
	int rc = kl_mig_quiesce(vm, &e);
	if (rc < 0) {
		*err = e;
		e = NULL;
	}
	if (rc == 0)
		rc = kl_snap_all_goto(d, tag, err);
	if (rc == 0) {
		struct kl_mig_in in = { .fd = -1, .buf = buf, .len = len };
		rc = kl_mig_load(vm, &in, &e);
		if (rc < 0)
			*err = g_strdup_printf("Error %d while loading VM state: %s", -EINVAL,
					       e ? e : "error");
	}
	g_free(e);
	g_free(buf);
	/* as QEMU: a failed load leaves the guest stopped */
	if (rc == 0 && run_after)
		kl_vm_resume(vm);
	return rc;
}

static int job_run(void *opaque, char **err)
{
	struct snap_job *j = opaque;
	struct kl_snap_devs d;
	int rc = kl_snap_devs_resolve((const char *const *)j->devices, j->n, &d, err);
	if (rc == 0 && j->op == KL_SNAP_SAVE) {
		rc = do_save(j, &d, err);
	} else if (j->op == KL_SNAP_LOAD) {
		/* as QEMU's snapshot_load_job_bh: the guest stops first and
		 * runs again only after a successful load */
		bool was_running = j->vm->state == KL_RS_RUNNING;
		struct kl_bnode *vbs = NULL;
		kl_vm_pause(j->vm);
		if (rc == 0 && !kl_snap_all_have(&d, j->tag)) {
			*err = g_strdup_printf("Snapshot '%s' does not exist in one or more devices",
					       j->tag);
			rc = -1;
		} else if (rc == 0 && (!(vbs = kl_snap_vmstate_bs(&d, j->vmstate, err)) ||
				       migration_busy(err))) {
			rc = -1;
		} else if (rc == 0) {
			rc = do_load(j->vm, j->tag, &d, vbs, was_running, err);
		}
	} else if (rc == 0 && j->op == KL_SNAP_DELETE) {
		rc = kl_snap_all_delete(&d, j->tag, err);
	}
	kl_snap_devs_free(&d);
	return rc;
}

static void add_snap_node(struct kl_bnode *bs, void *opaque)
{
	GPtrArray *a = opaque;
	struct kl_blockdev *bd;
	/* QEMU's bdrv_all_snapshots_includes_bs: writable nodes a device
	 * uses (a backend's root) */
	if (!bs->readonly && bs->drv->snapshot_goto && kl_bnode_backends(bs, &bd, 1) >= 1)
		g_ptr_array_add(a, bs->node_name);
}

int kl_snapshot_loadvm(struct kl_vm *vm, const char *tag, char **err)
{
	GPtrArray *names = g_ptr_array_new();
	kl_bnode_foreach(add_snap_node, names);
	struct kl_snap_devs d;
	int rc = kl_snap_devs_resolve((const char *const *)names->pdata, names->len, &d, err);
	if (rc == 0 && !d.n) {
		*err = g_strdup("No block device can accept snapshots");
		rc = -1;
	} else if (rc == 0 && !kl_snap_all_have(&d, tag)) {
		*err = g_strdup_printf("Snapshot '%s' does not exist in one or more devices", tag);
		rc = -1;
	} else if (rc == 0) {
		rc = do_load(vm, tag, &d, d.bs[0], false, err);
	}
	kl_snap_devs_free(&d);
	g_ptr_array_free(names, TRUE);
	return rc;
}

static const char *const types[] = { "snapshot-save", "snapshot-load", "snapshot-delete" };

int kl_snapshot_job(struct kl_vm *vm, enum kl_snapshot_op op, const char *job_id,
		    const char *tag, const char *vmstate, const char *const *devices,
		    unsigned ndevices, char **err)
{
	struct snap_job *j = g_new0(struct snap_job, 1);
	j->vm = vm;
	j->op = op;
	j->tag = g_strdup(tag);
	j->vmstate = g_strdup(vmstate);
	j->devices = g_new0(char *, ndevices + 1);
	for (unsigned i = 0; i < ndevices; i++)
		j->devices[i] = g_strdup(devices[i]);
	j->n = ndevices;
	if (!kl_job_start(job_id, types[op], job_run, job_free, j, err)) {
		job_free(j);
		return -1;
	}
	return 0;
}
