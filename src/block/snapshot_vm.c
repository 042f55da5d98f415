/* snapshot-save / snapshot-load / snapshot-delete across a list of nodes,
 * as QEMU 7.2's bdrv_all_* helpers (block/snapshot.c) with an explicit
 * device list: node lookup, the checks and their error texts, create /
 * revert / delete on every node, the VM state on one of them. */
#include <string.h>

#include "kvmlite/block.h"
#include "node.h"

/* bdrv_get_device_or_node_name(): the backend's id, else the node name. */
static const char *dev_name(struct kl_bnode *bs)
{
	struct kl_blockdev *bd;
	if (kl_bnode_backends(bs, &bd, 1) >= 1) {
		const char *id = kl_blockdev_id(bd);
		if (id && *id)
			return id;
	}
	return bs->node_name;
}

static bool can_snapshot(struct kl_bnode *bs)
{
	return !bs->readonly && bs->drv->snapshot_create_vm && bs->drv->snapshot_goto;
}

int kl_snap_devs_resolve(const char *const *names, unsigned n, struct kl_snap_devs *d,
			 char **err)
{
	memset(d, 0, sizeof(*d));
	d->bs = g_new0(struct kl_bnode *, n + 1);
	for (unsigned i = 0; i < n; i++) {
		struct kl_bnode *bs = kl_bnode_find(names[i]);
		if (!bs) {
			*err = g_strdup_printf("No block device node '%s'", names[i]);
			return -1;
		}
		d->bs[d->n++] = bs;
	}
	for (unsigned i = 0; i < d->n; i++)
		if (!can_snapshot(d->bs[i])) {
			*err = g_strdup_printf("Device '%s' is writable but does not support snapshots",
					       dev_name(d->bs[i]));
			return -1;
		}
	return 0;
}

void kl_snap_devs_free(struct kl_snap_devs *d)
{
	g_free(d->bs);
	d->bs = NULL;
	d->n = 0;
}

struct kl_bnode *kl_snap_vmstate_bs(struct kl_snap_devs *d, const char *vmstate, char **err)
{
	for (unsigned i = 0; i < d->n; i++)
		if (!strcmp(d->bs[i]->node_name, vmstate))
			return d->bs[i];
	*err = g_strdup_printf("vmstate block device '%s' does not exist", vmstate);
	return NULL;
}

bool kl_snap_find(struct kl_bnode *bs, const char *tag, struct kl_snapshot_info *out)
{
	GArray *a = g_array_new(FALSE, TRUE, sizeof(struct kl_snapshot_info));
	bool found = false;
	if (bs->drv->snapshot_list && bs->drv->snapshot_list(bs, a) >= 0)
		for (guint i = 0; i < a->len && !found; i++) {
			struct kl_snapshot_info *s = &g_array_index(a, struct kl_snapshot_info, i);
			if (!strcmp(s->id, tag) || !strcmp(s->name, tag)) {
				if (out)
					*out = *s;
				found = true;
			}
		}
	g_array_free(a, TRUE);
	return found;
}

bool kl_snap_any_has(struct kl_snap_devs *d, const char *tag)
{
	for (unsigned i = 0; i < d->n; i++)
		if (kl_snap_find(d->bs[i], tag, NULL))
			return true;
	return false;
}

bool kl_snap_all_have(struct kl_snap_devs *d, const char *tag)
{
	for (unsigned i = 0; i < d->n; i++)
		if (!kl_snap_find(d->bs[i], tag, NULL))
			return false;
	return true;
}

/* One snapshot operation on one node, quiesced; 0 or -1 with *e set. */
struct snap_op {
	const char *verb;                /* "create", "load", "delete" */
	bool skip_missing;               /* a node without the snapshot is skipped */
	int (*fn)(struct kl_bnode *bs, const struct kl_snapshot_info *in,
		  const struct snap_op *op, char **e);
	const char *tag;
	struct kl_bnode *vm_bs;          /* create: the node that takes the VM state */
	const uint8_t *vm;
	uint64_t vmlen, vm_clock;
};

static int op_create(struct kl_bnode *bs, const struct kl_snapshot_info *in,
		     const struct snap_op *op, char **e)
{
	(void)in;
	bool with_vm = bs == op->vm_bs;
	return bs->drv->snapshot_create_vm(bs, NULL, op->tag, with_vm ? op->vm : NULL,
					   with_vm ? op->vmlen : 0, op->vm_clock, e);
}

static int op_goto(struct kl_bnode *bs, const struct kl_snapshot_info *in,
		   const struct snap_op *op, char **e)
{
	(void)op;
	return bs->drv->snapshot_goto(bs, in->id, e);
}

static int op_delete(struct kl_bnode *bs, const struct kl_snapshot_info *in,
		     const struct snap_op *op, char **e)
{
	(void)op;
	return bs->drv->snapshot_delete(bs, in->id, in->name, e);
}

/* Run op on every disk in turn; the first failure stops it with QEMU's
 * "Could not <verb> snapshot 'TAG' on 'DEV': why". */
static int snap_each(struct kl_snap_devs *d, const struct snap_op *op, char **err)
{
	for (unsigned i = 0; i < d->n; i++) {
		struct kl_bnode *bs = d->bs[i];
		struct kl_snapshot_info in;
		char *e = NULL;
		int r = -1;
		bool found = op->fn == op_create || kl_snap_find(bs, op->tag, &in);
		if (!found && op->skip_missing)
			continue;
		struct kl_bnode_quiesce q;
		kl_bnode_quiesce_all(bs, &q);
		if (!found)
			e = g_strdup("snapshot not found");
		else
			r = op->fn(bs, &in, op, &e);
		kl_bnode_resume_all(&q);
		if (r < 0) {
			*err = g_strdup_printf("Could not %s snapshot '%s' on '%s': %s", op->verb,
					       op->tag, dev_name(bs), e ? e : "error");
			g_free(e);
			return -1;
		}
	}
	return 0;
}

int kl_snap_all_create(struct kl_snap_devs *d, const char *tag, struct kl_bnode *vm_bs,
		       const uint8_t *vm, uint64_t vmlen, uint64_t vm_clock, char **err)
{
	const struct snap_op op = { .verb = "create", .fn = op_create, .tag = tag, .vm_bs = vm_bs,
				    .vm = vm, .vmlen = vmlen, .vm_clock = vm_clock };
	return snap_each(d, &op, err);
}

int kl_snap_all_goto(struct kl_snap_devs *d, const char *tag, char **err)
{
	const struct snap_op op = { .verb = "load", .fn = op_goto, .tag = tag };
	return snap_each(d, &op, err);
}

int kl_snap_all_delete(struct kl_snap_devs *d, const char *tag, char **err)
{
	/* as QEMU: a node without the snapshot is skipped */
	const struct snap_op op = { .verb = "delete", .skip_missing = true, .fn = op_delete,
				    .tag = tag };
	return snap_each(d, &op, err);
}

int kl_snap_vmstate_read(struct kl_bnode *bs, const char *id, uint8_t *buf, uint64_t len,
			 char **err)
{
	return bs->drv->snapshot_vmstate_read(bs, id, buf, len, err) < 0 ? -1 : 0;
}
