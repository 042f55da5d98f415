/* -blockdev and the QMP graph operations: the JSON flattener (nested
 * objects -> dotted keys), user-added nodes (-blockdev, blockdev-add,
 * blockdev-del), internal snapshots and external snapshots (overlays),
 * with QEMU 7.2's error texts.  See node.h. */
#include "node.h"

#include "kvmlite/json.h"

#include <errno.h>
#include <glib.h>
#include <inttypes.h>
#include <string.h>

/* ---- JSON -> flat options ---- */

/* Keys QEMU's schema types as booleans (for "Invalid parameter type"). */
static bool bool_key(const char *key)
{
	static const char *const b[] = { "read-only", "auto-read-only", "force-share",
					 "cache.direct", "cache.no-flush", "lazy-refcounts",
					 "pass-discard-request", "pass-discard-snapshot",
					 "pass-discard-other", NULL };
	/* nested children: "file.cache.direct" -> check the tail too */
	for (int i = 0; b[i]; i++) {
		size_t n = strlen(key), m = strlen(b[i]);
		if (!strcmp(key, b[i]) || (n > m && key[n - m - 1] == '.' && !strcmp(key + n - m, b[i])))
			return true;
	}
	return false;
}

static int flatten(JsonObject *obj, const char *prefix, struct kl_opts *out, char **err)
{
	JsonObjectIter it;
	const char *k;
	JsonNode *v;
	json_object_iter_init_ordered(&it, obj);
	while (json_object_iter_next_ordered(&it, &k, &v)) {
		char *key = prefix ? g_strdup_printf("%s.%s", prefix, k) : g_strdup(k);
		char *val = NULL;
		int r = 0;
		/* JSON nests objects: a dotted (or empty) member name is no
		 * BlockdevOptions member (QEMU: {"file.driver": ..} is unexpected) */
		if (!*k || strchr(k, '.')) {
			*err = g_strdup_printf("Parameter '%s' is unexpected", key);
			g_free(key);
			return -1;
		}
		switch (json_node_get_node_type(v)) {
		case JSON_NODE_OBJECT:
			if (bool_key(key)) {
				*err = g_strdup_printf("Invalid parameter type for '%s', expected: boolean", key);
				r = -1;
			} else {
				r = flatten(json_node_get_object(v), key, out, err);
			}
			break;
		case JSON_NODE_ARRAY:
			*err = g_strdup_printf("Invalid parameter type for '%s', expected: %s", key,
					       bool_key(key) ? "boolean" : "string");
			r = -1;
			break;
		case JSON_NODE_NULL:
			val = g_strdup("");
			break;
		case JSON_NODE_VALUE:
			switch (json_node_get_value_type(v)) {
			case G_TYPE_BOOLEAN:
				val = g_strdup(json_node_get_boolean(v) ? "on" : "off");
				break;
			case G_TYPE_INT64:
				val = g_strdup_printf("%" PRId64, (int64_t)json_node_get_int(v));
				break;
			case G_TYPE_DOUBLE:
				val = g_strdup_printf("%.17g", json_node_get_double(v));
				break;
			default:
				if (bool_key(key)) {
					*err = g_strdup_printf("Invalid parameter type for '%s', "
							       "expected: boolean", key);
					r = -1;
				} else {
					val = g_strdup(json_node_get_string(v));
				}
				break;
			}
			break;
		}
		if (val && kl_opts_add(out, key, val) < 0) {
			*err = g_strdup_printf("Duplicate option '%s'", key);
			r = -1;
		}
		g_free(val);
		g_free(key);
		if (r < 0)
			return -1;
	}
	return 0;
}

struct kl_opts *kl_opts_from_json(JsonObject *obj, const char *src, char **err)
{
	struct kl_opts *o = kl_opts_new(src);
	if (flatten(obj, NULL, o, err) < 0) {
		kl_opts_free(o);
		return NULL;
	}
	return o;
}

/* ---- user-added nodes ---- */

/* The keys of the top level QEMU's BlockdevOptions knows per driver (the
 * QAPI visitor's "Parameter 'x' is unexpected" before anything opens). */
static bool known_key(const char *drv, const char *key)
{
	static const char *const generic[] = { "driver", "node-name", "discard", "cache",
					       "read-only", "auto-read-only", "force-share",
					       "detect-zeroes", NULL };
	static const char *const file[] = { "filename", "pr-manager", "locking", "aio",
					    "aio-max-batch", "drop-cache", "x-check-cache-dropped",
					    NULL };
	static const char *const raw[] = { "file", "offset", "size", NULL };
	static const char *const qcow2[] = { "file", "backing", "lazy-refcounts",
					     "pass-discard-request", "pass-discard-snapshot",
					     "pass-discard-other", "overlap-check", "cache-size",
					     "l2-cache-size", "l2-cache-entry-size",
					     "refcount-cache-size", "cache-clean-interval",
					     "encrypt", "data-file", NULL };
	static const char *const throttle[] = { "file", "throttle-group", NULL };
	const char *const *lists[] = { generic, !strcmp(drv, "file") ? file :
					   !strcmp(drv, "raw") ? raw :
					   !strcmp(drv, "throttle") ? throttle : qcow2 };
	size_t n = strcspn(key, ".");
	for (unsigned l = 0; l < G_N_ELEMENTS(lists); l++)
		for (const char *const *p = lists[l]; *p; p++)
			if (strlen(*p) == n && !strncmp(*p, key, n))
				return true;
	return false;
}

int kl_blockdev_check(const struct kl_opts *o, char **err)
{
	const char *drv = NULL, *name = NULL;
	/* peek without marking used: node.c consumes them */
	for (unsigned i = 0; i < o->n; i++) {
		if (!strcmp(o->v[i].key, "driver"))
			drv = o->v[i].val;
		else if (!strcmp(o->v[i].key, "node-name"))
			name = o->v[i].val;
	}
	if (!drv) {
		*err = g_strdup("Parameter 'driver' is missing");
		return -1;
	}
	if (!kl_bdrv_find(drv)) {
		*err = g_strdup_printf("Parameter 'driver' does not accept value '%s'", drv);
		return -1;
	}
	for (unsigned i = 0; i < o->n; i++)
		if (!known_key(drv, o->v[i].key)) {
			*err = g_strdup_printf("Parameter '%s' is unexpected", o->v[i].key);
			return -1;
		}
	if (!name || !*name) {
		*err = g_strdup("'node-name' must be specified for the root node");
		return -1;
	}
	return 0;
}

struct kl_bnode *kl_blockdev_add(struct kl_opts *o, char **err)
{
	if (kl_blockdev_check(o, err) < 0)
		return NULL;
	/* -blockdev defaults: writeback, cache.direct=off, aio=threads, rw */
	struct kl_bnode_inherit in = kl_block_inherit(KL_CACHE_WRITEBACK, KL_AIO_THREADS, false);
	struct kl_bnode *bs = kl_bnode_open(o, &in, err);
	if (!bs)
		return NULL;
	bs->user_added = true; /* the reference kl_bnode_open returned */
	return bs;
}

struct kl_opts *kl_blockdev_parse_spec(const char *spec, char **err)
{
	/* QEMU: JSON when the very first character is '{' (" {" is keyval) */
	if (spec[0] != '{')
		return kl_keyval_parse(spec, "driver", err);
	JsonNode *root = kl_json_parse_text(spec, strlen(spec), err);
	if (!root)
		return NULL;
	struct kl_opts *o = NULL;
	if (!JSON_NODE_HOLDS_OBJECT(root))
		*err = g_strdup("Parameter 'driver' is missing");
	else
		o = kl_opts_from_json(json_node_get_object(root), spec, err);
	json_node_unref(root);
	return o;
}

struct kl_bnode *kl_blockdev_add_spec(const char *spec, char **err)
{
	struct kl_opts *o = kl_blockdev_parse_spec(spec, err);
	if (!o)
		return NULL;
	struct kl_bnode *bs = kl_blockdev_add(o, err);
	kl_opts_free(o);
	return bs;
}

/* Node p has c as its file or backing child. */
struct child_scan {
	struct kl_bnode *child, *parent;
	bool backing;
};

static void scan_parent(struct kl_bnode *p, void *opaque)
{
	struct child_scan *s = opaque;
	if (s->parent)
		return;
	if (p->backing == s->child) {
		s->parent = p;
		s->backing = true;
	} else if (p->file == s->child) {
		s->parent = p;
	}
}

static struct kl_bnode *node_parent(struct kl_bnode *bs, bool *backing)
{
	struct child_scan s = { bs, NULL, false };
	kl_bnode_foreach(scan_parent, &s);
	if (backing)
		*backing = s.backing;
	return s.parent;
}

int kl_blockdev_del(const char *node_name, char **err)
{
	struct kl_bnode *bs = kl_bnode_find(node_name);
	if (!bs) {
		*err = g_strdup_printf("Failed to find node with node-name='%s'", node_name);
		return -1;
	}
	if (kl_bnode_backends(bs, NULL, 0)) {
		*err = g_strdup_printf("Node %s is in use", node_name);
		return -1;
	}
	if (!bs->user_added) {
		*err = g_strdup_printf("Node %s is not owned by the monitor", node_name);
		return -1;
	}
	if (bs->refs > 1) {
		*err = g_strdup_printf("Block device %s is in use", node_name);
		return -1;
	}
	bs->user_added = false;
	kl_bnode_unref(bs);
	return 0;
}

/* ---- snapshots ---- */

/* QEMU's bdrv_lookup_bs(device, node): a backend id first, then a node. */
struct kl_bnode *kl_bnode_lookup(const char *device, const char *node, char **err)
{
	struct kl_blockdev *bd = device ? kl_blockdev_find(device) : NULL;
	if (bd)
		return kl_blockdev_root(bd);
	struct kl_bnode *bs = node ? kl_bnode_find(node) : NULL;
	if (bs)
		return bs;
	*err = g_strdup_printf("Cannot find device='%s' nor node-name='%s'", device ? device : "",
			       node ? node : "");
	return NULL;
}

/* qmp_get_root_bs(): the node must not be a child of another node. */
static struct kl_bnode *root_bs(const char *device, char **err)
{
	struct kl_bnode *bs = kl_bnode_lookup(device, device, err);
	if (!bs)
		return NULL;
	if (node_parent(bs, NULL)) {
		*err = g_strdup("Need a root block node");
		return NULL;
	}
	return bs;
}

void kl_bnode_quiesce_all(struct kl_bnode *bs, struct kl_bnode_quiesce *q)
{
	q->n = kl_bnode_backends(bs, q->bd, G_N_ELEMENTS(q->bd));
	if (q->n > G_N_ELEMENTS(q->bd))
		q->n = G_N_ELEMENTS(q->bd);
	for (unsigned i = 0; i < q->n; i++)
		kl_blockdev_quiesce_begin(q->bd[i]);
	kl_bnode_drain(bs);
}

void kl_bnode_resume_all(struct kl_bnode_quiesce *q)
{
	for (unsigned i = 0; i < q->n; i++)
		kl_blockdev_quiesce_end(q->bd[i]);
}

/* Snapshot matching id and/or name (NULL: any); true if found. */
static bool find_snapshot(struct kl_bnode *bs, const char *id, const char *name,
			  struct kl_snapshot_info *out)
{
	if (!bs->drv->snapshot_list)
		return false;
	GArray *a = g_array_new(FALSE, TRUE, sizeof(struct kl_snapshot_info));
	bool found = false;
	if (bs->drv->snapshot_list(bs, a) >= 0) {
		for (guint i = 0; i < a->len && !found; i++) {
			struct kl_snapshot_info *s = &g_array_index(a, struct kl_snapshot_info, i);
			if ((!id || !strcmp(s->id, id)) && (!name || !strcmp(s->name, name))) {
				if (out)
					*out = *s;
				found = true;
			}
		}
	}
	g_array_free(a, TRUE);
	return found;
}

int kl_block_snapshot_internal(const char *device, const char *name, char **err)
{
	struct kl_bnode *bs = root_bs(device, err);
	if (!bs)
		return -1;
	if (!*name) {
		*err = g_strdup("Name is empty");
		return -1;
	}
	if (bs->readonly) {
		*err = g_strdup_printf("Device '%s' is read only", device);
		return -1;
	}
	if (!bs->drv->snapshot_create) {
		*err = g_strdup_printf("Block format '%s' used by device '%s' does not support "
				       "internal snapshots", bs->drv->name, device);
		return -1;
	}
	if (find_snapshot(bs, NULL, name, NULL)) {
		*err = g_strdup_printf("Snapshot with name '%s' already exists on device '%s'", name,
				       device);
		return -1;
	}
	struct kl_bnode_quiesce q;
	kl_bnode_quiesce_all(bs, &q);
	int r = bs->drv->snapshot_create(bs, NULL, name, err);
	kl_bnode_resume_all(&q);
	return r < 0 ? -1 : 0;
}

int kl_block_snapshot_delete_internal(const char *device, const char *id, const char *name,
				      struct kl_snapshot_info *out, char **err)
{
	struct kl_bnode *bs = root_bs(device, err);
	if (!bs)
		return -1;
	if (!id && !name) {
		*err = g_strdup("Name or id must be provided");
		return -1;
	}
	if (!find_snapshot(bs, id, name, out)) {
		/* QEMU 7.2 prints an absent id / name as null (STR_OR_NULL) */
		*err = g_strdup_printf("Snapshot with id '%s' and name '%s' does not exist on "
				       "device '%s'", id ? id : "null", name ? name : "null", device);
		return -1;
	}
	if (!bs->drv->snapshot_delete) {
		*err = g_strdup_printf("Block format '%s' used by device '%s' does not support "
				       "internal snapshot deletion", bs->drv->name, device);
		return -1;
	}
	struct kl_bnode_quiesce q;
	kl_bnode_quiesce_all(bs, &q);
	int r = bs->drv->snapshot_delete(bs, out->id, out->name, err);
	kl_bnode_resume_all(&q);
	return r < 0 ? -1 : 0;
}

/* The op blocker QEMU puts on a node in use as a backing child. */
static int check_not_backing(struct kl_bnode *bs, char **err)
{
	bool backing;
	struct kl_bnode *p = node_parent(bs, &backing);
	if (p && backing) {
		*err = g_strdup_printf("Node '%s' is busy: node is used as backing hd of '%s'",
				       bs->node_name, p->node_name);
		return -1;
	}
	return 0;
}

/* old becomes read-only and the backends on it move to overlay. */
static int put_on_top(struct kl_bnode *old, struct kl_bnode *overlay, char **err)
{
	struct kl_blockdev *bd[16];
	unsigned n = kl_bnode_backends(old, bd, G_N_ELEMENTS(bd));
	if (n > G_N_ELEMENTS(bd))
		n = G_N_ELEMENTS(bd);
	for (unsigned i = 0; i < n; i++)
		kl_blockdev_quiesce_begin(bd[i]);
	kl_bnode_drain(old);
	kl_bnode_flush_sync(old);
	old->readonly = true;
	int r = 0;
	for (unsigned i = 0; i < n && r == 0; i++)
		r = kl_blockdev_replace_root(bd[i], overlay, err);
	for (unsigned i = 0; i < n; i++)
		kl_blockdev_quiesce_end(bd[i]);
	return r;
}

int kl_block_snapshot_sync(const char *device, const char *node_name, const char *file,
			   const char *snap_node, const char *format, bool existing, char **err)
{
	struct kl_bnode *old = kl_bnode_lookup(device, node_name, err);
	if (!old)
		return -1;
	if (check_not_backing(old, err) < 0)
		return -1;
	if (snap_node && (kl_bnode_find(snap_node) || kl_blockdev_find(snap_node))) {
		*err = g_strdup("New snapshot node name already in use");
		return -1;
	}
	const struct kl_bdrv *drv = kl_bdrv_find(format ? format : "qcow2");
	if (!drv || drv->protocol) {
		*err = g_strdup_printf("Unknown driver '%s'", format ? format : "qcow2");
		return -1;
	}
	if (!existing) {
		if (!drv->create || !drv->has_backing) {
			*err = g_strdup_printf("Backing file not supported for file format '%s'",
					       drv->name);
			return -1;
		}
		if (drv->create(file, old->size, old->filename, old->drv->name, err) < 0)
			return -1;
	}
	struct kl_opts *o = kl_opts_new(file);
	kl_opts_add(o, "driver", drv->name);
	kl_opts_add(o, "file.driver", "file");
	kl_opts_add(o, "file.filename", file);
	if (snap_node)
		kl_opts_add(o, "node-name", snap_node);
	if (drv->has_backing)
		kl_opts_add(o, "backing", old->node_name);
	struct kl_bnode_inherit in = old->in;
	in.readonly = false;
	struct kl_bnode *ov = kl_bnode_open(o, &in, err);
	kl_opts_free(o);
	if (!ov)
		return -1;
	if (!ov->backing_file) {
		ov->backing_file = g_strdup(old->filename);
		ov->backing_fmt = g_strdup(old->drv->name);
	}
	int r = put_on_top(old, ov, err);
	kl_bnode_unref(ov); /* the backends hold it now (or it closes) */
	return r;
}

int kl_block_snapshot(const char *node, const char *overlay, char **err)
{
	struct kl_bnode *bs = kl_bnode_lookup(node, node, err);
	if (!bs)
		return -1;
	struct kl_bnode *ov = kl_bnode_lookup(overlay, overlay, err);
	if (!ov)
		return -1;
	if (check_not_backing(bs, err) < 0)
		return -1;
	if (kl_bnode_backends(ov, NULL, 0)) {
		*err = g_strdup("The overlay is already in use");
		return -1;
	}
	if (ov->backing) {
		*err = g_strdup("The overlay already has a backing image");
		return -1;
	}
	if (!ov->drv->has_backing) {
		*err = g_strdup("The overlay does not support backing images");
		return -1;
	}
	if (ov == bs) {
		*err = g_strdup_printf("Node '%s' is busy: node is used as backing hd of '%s'",
				       bs->node_name, ov->node_name);
		return -1;
	}
	/* the image header keeps what it says (QEMU: no backing-filename in
	 * ImageInfo, BlockDeviceInfo.backing_file = the backing's filename) */
	kl_bnode_ref(bs);
	ov->backing = bs;
	if (ov->drv->backing_attached && ov->drv->backing_attached(ov, err) < 0) {
		ov->backing = NULL;
		kl_bnode_unref(bs);
		return -1;
	}
	return put_on_top(bs, ov, err);
}

static void find_user(struct kl_bnode *bs, void *opaque)
{
	struct kl_bnode **first = opaque;
	if (!*first && bs->user_added)
		*first = bs;
}

void kl_blockdev_release_user_nodes(void)
{
	for (;;) {
		struct kl_bnode *bs = NULL;
		kl_bnode_foreach(find_user, &bs);
		if (!bs)
			break;
		bs->user_added = false;
		kl_bnode_unref(bs);
	}
}
