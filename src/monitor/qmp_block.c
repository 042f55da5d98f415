/* QMP block commands (QEMU 7.2 schema, qapi/block-core.json): query-block,
 * query-blockstats, query-named-block-nodes, blockdev-add / -del and the
 * snapshot commands.  The graph operations are the block layer's
 * (src/block/blockdev.c); this file builds the replies from the nodes. */
#include <string.h>
#include <sys/stat.h>

#include "../block/node.h"
#include "kvmlite/block.h"
#include "kvmlite/throttle.h"
#include "monitor_int.h"

/* BlockIOThrottle member <-> the limiter's disk key (QEMU's names). */
static const struct {
	const char *qmp, *key;
} thr_names[] = {
	{ "bps", "bps-total" }, { "bps_rd", "bps-read" }, { "bps_wr", "bps-write" },
	{ "iops", "iops-total" }, { "iops_rd", "iops-read" }, { "iops_wr", "iops-write" },
};

static const char *str_arg(JsonObject *args, const char *k)
{
	return json_object_has_member(args, k) ? json_object_get_string_member(args, k) : NULL;
}

static bool bool_arg(JsonObject *args, const char *k)
{
	return json_object_has_member(args, k) && json_object_get_boolean_member(args, k);
}

/* ---- BlockDeviceInfo / ImageInfo ---- */

static JsonObject *snapshot_info(const struct kl_snapshot_info *s)
{
	JsonObject *o = json_object_new();
	json_object_set_string_member(o, "id", s->id);
	json_object_set_string_member(o, "name", s->name);
	json_object_set_int_member(o, "vm-state-size", (gint64)s->vm_state_size);
	json_object_set_int_member(o, "date-sec", (gint64)s->date_sec);
	json_object_set_int_member(o, "date-nsec", (gint64)s->date_nsec);
	json_object_set_int_member(o, "vm-clock-sec", (gint64)(s->vm_clock_ns / 1000000000u));
	json_object_set_int_member(o, "vm-clock-nsec", (gint64)(s->vm_clock_ns % 1000000000u));
	if (s->icount != (uint64_t)-1)
		json_object_set_int_member(o, "icount", (gint64)s->icount);
	return o;
}

static uint64_t node_size(struct kl_bnode *bs)
{
	return bs->drv->protocol ? kl_bnode_file_length(bs) : bs->size;
}

static JsonObject *image_info(struct kl_bnode *bs, bool nest)
{
	JsonObject *img = json_object_new();
	json_object_set_string_member(img, "filename", bs->filename ? bs->filename : "");
	json_object_set_string_member(img, "format", bs->drv->name);
	json_object_set_int_member(img, "virtual-size", (gint64)node_size(bs));
	struct stat st;
	if (bs->filename && stat(bs->filename, &st) == 0)
		json_object_set_int_member(img, "actual-size", (gint64)st.st_blocks * 512);
	uint32_t cs = bs->drv->cluster_size ? bs->drv->cluster_size(bs) : 0;
	if (cs)
		json_object_set_int_member(img, "cluster-size", cs);
	json_object_set_boolean_member(img, "dirty-flag", false);
	if (bs->drv->info) {
		JsonObject *data = json_object_new();
		bs->drv->info(bs, data);
		JsonObject *spec = json_object_new();
		json_object_set_string_member(spec, "type", bs->drv->name);
		json_object_set_object_member(spec, "data", data);
		json_object_set_object_member(img, "format-specific", spec);
	}
	if (bs->backing_file) {
		char *full = kl_bnode_backing_path(bs->filename, bs->backing_file);
		json_object_set_string_member(img, "backing-filename", bs->backing_file);
		json_object_set_string_member(img, "full-backing-filename", full);
		g_free(full);
		if (bs->backing_fmt)
			json_object_set_string_member(img, "backing-filename-format", bs->backing_fmt);
	}
	if (bs->drv->snapshot_list) {
		GArray *a = g_array_new(FALSE, TRUE, sizeof(struct kl_snapshot_info));
		if (bs->drv->snapshot_list(bs, a) >= 0 && a->len) {
			JsonArray *l = json_array_new();
			for (guint i = 0; i < a->len; i++)
				json_array_add_object_element(
					l, snapshot_info(&g_array_index(a, struct kl_snapshot_info, i)));
			json_object_set_array_member(img, "snapshots", l);
		}
		g_array_free(a, TRUE);
	}
	if (nest && bs->backing)
		json_object_set_object_member(img, "backing-image", image_info(bs->backing, true));
	return img;
}

static JsonObject *cache_info(const struct kl_bnode *bs)
{
	JsonObject *c = json_object_new();
	json_object_set_boolean_member(c, "writeback", !bs->in.writethrough);
	json_object_set_boolean_member(c, "direct", bs->in.direct);
	json_object_set_boolean_member(c, "no-flush", bs->in.no_flush);
	return c;
}

/* BlockDeviceInfo; nest false (flat): no backing-image, depth 0. */
static JsonObject *device_info(struct kl_bnode *bs, bool nest)
{
	JsonObject *o = json_object_new();
	json_object_set_string_member(o, "file", bs->filename ? bs->filename : "");
	json_object_set_string_member(o, "node-name", bs->node_name);
	json_object_set_boolean_member(o, "ro", bs->readonly);
	json_object_set_string_member(o, "drv", bs->drv->name);
	const char *bf = bs->backing_file ? bs->backing_file
			 : bs->backing ? bs->backing->filename : NULL;
	if (bf)
		json_object_set_string_member(o, "backing_file", bf);
	int depth = 0;
	for (struct kl_bnode *b = bs->backing; nest && b; b = b->backing)
		depth++;
	json_object_set_int_member(o, "backing_file_depth", depth);
	json_object_set_boolean_member(o, "encrypted", false);
	json_object_set_string_member(o, "detect_zeroes", "off");
	static const char *const zeros[] = { "bps", "bps_rd", "bps_wr", "iops", "iops_rd",
					     "iops_wr" };
	for (unsigned i = 0; i < G_N_ELEMENTS(zeros); i++)
		json_object_set_int_member(o, zeros[i], 0);
	json_object_set_object_member(o, "image", image_info(bs, nest));
	json_object_set_object_member(o, "cache", cache_info(bs));
	json_object_set_int_member(o, "write_threshold", 0);
	return o;
}

/* ---- query-block ---- */

static void block_info(struct kl_blockdev *bd, void *opaque)
{
	JsonArray *a = opaque;
	JsonObject *o = json_object_new();
	json_object_set_string_member(o, "device", kl_blockdev_id(bd));
	const char *qdev = kl_blockdev_attached(bd);
	if (qdev)
		json_object_set_string_member(o, "qdev", qdev);
	json_object_set_string_member(o, "type", "unknown");
	json_object_set_boolean_member(o, "removable", false);
	json_object_set_boolean_member(o, "locked", false);
	JsonObject *ins = device_info(kl_blockdev_root(bd), true);
	const char *group = NULL;
	const struct kl_throttle_config *cfg = kl_blockdev_throttle(bd, &group);
	for (unsigned i = 0; cfg && i < G_N_ELEMENTS(thr_names); i++) {
		uint64_t v, mx, len;
		char *k = g_strdup_printf("%s-max", thr_names[i].key);
		char *kl = g_strdup_printf("%s-max-length", thr_names[i].key);
		if (kl_throttle_config_get(cfg, kl_throttle_disk_keys, thr_names[i].key, &v))
			json_object_set_int_member(ins, thr_names[i].qmp, (gint64)v);
		if (kl_throttle_config_get(cfg, kl_throttle_disk_keys, k, &mx) && mx) {
			char *m = g_strdup_printf("%s_max", thr_names[i].qmp);
			char *ml = g_strdup_printf("%s_max_length", thr_names[i].qmp);
			json_object_set_int_member(ins, m, (gint64)mx);
			if (kl_throttle_config_get(cfg, kl_throttle_disk_keys, kl, &len))
				json_object_set_int_member(ins, ml, (gint64)len);
			g_free(m);
			g_free(ml);
		}
		g_free(k);
		g_free(kl);
	}
	if (cfg && cfg->op_size)
		json_object_set_int_member(ins, "iops_size", (gint64)cfg->op_size);
	if (cfg)
		json_object_set_string_member(ins, "group", group);
	json_object_set_object_member(o, "inserted", ins);
	if (qdev)
		json_object_set_string_member(o, "io-status", "ok");
	json_array_add_object_element(a, o);
}

enum kl_qmp_err kl_qmp_query_block(struct kl_qmp_session *s, JsonObject *args, JsonNode **ret,
				   char **desc)
{
	(void)s, (void)args, (void)desc;
	JsonArray *a = json_array_new();
	kl_blockdev_foreach(block_info, a);
	*ret = kl_qmp_arr_node(a);
	return KL_QMP_OK;
}

/* ---- query-named-block-nodes ---- */


static void collect(struct kl_bnode *bs, void *opaque)
{
	g_ptr_array_add(opaque, bs);
}

static GPtrArray *all_nodes(void)
{
	GPtrArray *p = g_ptr_array_new();
	kl_bnode_foreach(collect, p);
	return p;
}

enum kl_qmp_err kl_qmp_query_named_block_nodes(struct kl_qmp_session *s, JsonObject *args,
					       JsonNode **ret, char **desc)
{
	(void)s, (void)desc;
	bool flat = bool_arg(args, "flat");
	GPtrArray *p = all_nodes();
	JsonArray *a = json_array_new();
	/* QEMU lists the newest node first */
	for (guint i = p->len; i-- > 0;)
		json_array_add_object_element(a, device_info(g_ptr_array_index(p, i), !flat));
	g_ptr_array_free(p, TRUE);
	*ret = kl_qmp_arr_node(a);
	return KL_QMP_OK;
}

/* ---- query-blockstats ---- */

static JsonObject *stats_obj(const struct kl_blk_stats *st, uint64_t wr_highest, bool account)
{
	JsonObject *s = json_object_new();
#define I(k, v) json_object_set_int_member(s, k, (gint64)(v))
	I("rd_bytes", st->rd_bytes);
	I("wr_bytes", st->wr_bytes);
	I("unmap_bytes", 0);
	I("rd_operations", st->rd_ops);
	I("wr_operations", st->wr_ops);
	I("flush_operations", st->flush_ops);
	I("unmap_operations", st->discard_ops);
	I("rd_total_time_ns", st->rd_total_ns);
	I("wr_total_time_ns", st->wr_total_ns);
	I("flush_total_time_ns", st->flush_total_ns);
	I("unmap_total_time_ns", 0);
	I("wr_highest_offset", wr_highest);
	I("rd_merged", 0);
	I("wr_merged", 0);
	I("unmap_merged", 0);
	I("failed_rd_operations", st->failed_rd_ops);
	I("failed_wr_operations", st->failed_wr_ops);
	I("failed_flush_operations", st->failed_flush_ops);
	I("failed_unmap_operations", 0);
	I("invalid_rd_operations", 0);
	I("invalid_wr_operations", 0);
	I("invalid_flush_operations", 0);
	I("invalid_unmap_operations", 0);
#undef I
	json_object_set_boolean_member(s, "account_invalid", account);
	json_object_set_boolean_member(s, "account_failed", account);
	json_object_set_array_member(s, "timed_stats", json_array_new());
	return s;
}

/* BlockStats of a node, as QEMU 7.2's bdrv_query_bds_stats: the request
 * counters belong to backends (zero at node level), a node has its
 * wr_highest_offset and, for a file, the discards it passed on
 * (driver-specific). */
static JsonObject *node_stats(struct kl_bnode *bs, bool with_backing)
{
	static const struct kl_blk_stats zero;
	JsonObject *o = json_object_new();
	json_object_set_string_member(o, "node-name", bs->node_name);
	json_object_set_object_member(o, "stats",
				      stats_obj(&zero, bs->stats.wr_highest_offset, false));
	if (bs->file)
		json_object_set_object_member(o, "parent", node_stats(bs->file, with_backing));
	if (with_backing && bs->backing)
		json_object_set_object_member(o, "backing", node_stats(bs->backing, true));
	if (bs->drv->protocol) {
		JsonObject *drv = json_object_new();
		json_object_set_string_member(drv, "driver", bs->drv->name);
		json_object_set_int_member(drv, "discard-nb-ok", (gint64)bs->stats.discard_nb_ok);
		json_object_set_int_member(drv, "discard-nb-failed",
					   (gint64)bs->stats.discard_nb_failed);
		json_object_set_int_member(drv, "discard-bytes-ok",
					   (gint64)bs->stats.discard_bytes_ok);
		json_object_set_object_member(o, "driver-specific", drv);
	}
	return o;
}

static void block_stats(struct kl_blockdev *bd, void *opaque)
{
	JsonArray *a = opaque;
	struct kl_blk_stats st;
	memset(&st, 0, sizeof(st));
	kl_blockdev_get_stats(bd, &st);
	struct kl_bnode *root = kl_blockdev_root(bd);

	JsonObject *o = json_object_new();
	json_object_set_string_member(o, "device", kl_blockdev_id(bd));
	json_object_set_string_member(o, "node-name", root->node_name);
	if (kl_blockdev_attached(bd))
		json_object_set_string_member(o, "qdev", kl_blockdev_attached(bd));
	json_object_set_object_member(o, "stats",
				      stats_obj(&st, root->stats.wr_highest_offset, true));
	if (root->file)
		json_object_set_object_member(o, "parent", node_stats(root->file, true));
	if (root->backing)
		json_object_set_object_member(o, "backing", node_stats(root->backing, true));
	json_array_add_object_element(a, o);
}

enum kl_qmp_err kl_qmp_query_blockstats(struct kl_qmp_session *s, JsonObject *args,
					JsonNode **ret, char **desc)
{
	(void)s, (void)desc;
	JsonArray *a = json_array_new();
	if (bool_arg(args, "query-nodes")) {
		GPtrArray *p = all_nodes();
		for (guint i = 0; i < p->len; i++)
			json_array_add_object_element(a, node_stats(g_ptr_array_index(p, i), false));
		g_ptr_array_free(p, TRUE);
	} else {
		kl_blockdev_foreach(block_stats, a);
	}
	*ret = kl_qmp_arr_node(a);
	return KL_QMP_OK;
}

/* ---- blockdev-add / blockdev-del ---- */

enum kl_qmp_err kl_qmp_blockdev_add(struct kl_qmp_session *s, JsonObject *args, JsonNode **ret,
				    char **desc)
{
	(void)s, (void)ret;
	struct kl_opts *o = kl_opts_from_json(args, "blockdev-add", desc);
	if (!o)
		return KL_QMP_GENERIC;
	struct kl_bnode *bs = kl_blockdev_add(o, desc);
	kl_opts_free(o);
	return bs ? KL_QMP_OK : KL_QMP_GENERIC;
}

enum kl_qmp_err kl_qmp_blockdev_del(struct kl_qmp_session *s, JsonObject *args, JsonNode **ret,
				    char **desc)
{
	(void)s, (void)ret;
	return kl_blockdev_del(str_arg(args, "node-name"), desc) < 0 ? KL_QMP_GENERIC : KL_QMP_OK;
}

/* ---- snapshots ---- */

enum kl_qmp_err kl_qmp_snapshot_internal(struct kl_qmp_session *s, JsonObject *args,
					 JsonNode **ret, char **desc)
{
	(void)s, (void)ret;
	return kl_block_snapshot_internal(str_arg(args, "device"), str_arg(args, "name"), desc) < 0
		? KL_QMP_GENERIC : KL_QMP_OK;
}

enum kl_qmp_err kl_qmp_snapshot_delete_internal(struct kl_qmp_session *s, JsonObject *args,
						JsonNode **ret, char **desc)
{
	(void)s;
	struct kl_snapshot_info si;
	memset(&si, 0, sizeof(si));
	if (kl_block_snapshot_delete_internal(str_arg(args, "device"), str_arg(args, "id"),
					      str_arg(args, "name"), &si, desc) < 0)
		return KL_QMP_GENERIC;
	*ret = kl_qmp_obj_node(snapshot_info(&si));
	return KL_QMP_OK;
}

enum kl_qmp_err kl_qmp_snapshot_sync(struct kl_qmp_session *s, JsonObject *args, JsonNode **ret,
				     char **desc)
{
	(void)s, (void)ret;
	const char *mode = str_arg(args, "mode");
	if (mode && strcmp(mode, "existing") && strcmp(mode, "absolute-paths")) {
		*desc = g_strdup_printf("Parameter 'mode' does not accept value '%s'", mode);
		return KL_QMP_GENERIC;
	}
	int r = kl_block_snapshot_sync(str_arg(args, "device"), str_arg(args, "node-name"),
				       str_arg(args, "snapshot-file"),
				       str_arg(args, "snapshot-node-name"), str_arg(args, "format"),
				       mode && !strcmp(mode, "existing"), desc);
	return r < 0 ? KL_QMP_GENERIC : KL_QMP_OK;
}

enum kl_qmp_err kl_qmp_snapshot(struct kl_qmp_session *s, JsonObject *args, JsonNode **ret,
				char **desc)
{
	(void)s, (void)ret;
	return kl_block_snapshot(str_arg(args, "node"), str_arg(args, "overlay"), desc) < 0
		? KL_QMP_GENERIC : KL_QMP_OK;
}

/* ---- block_set_io_throttle ---- */

struct find_dev {
	const char *device, *id;
	struct kl_blockdev *bd;
};

static void find_dev(struct kl_blockdev *bd, void *opaque)
{
	struct find_dev *f = opaque;
	const char *qdev = kl_blockdev_attached(bd);
	if (f->bd)
		return;
	if (f->device && !strcmp(kl_blockdev_id(bd), f->device))
		f->bd = bd;
	/* id: the device's id or its QOM path (/machine/peripheral/ID/...) */
	if (f->id && qdev) {
		char *p = g_strdup_printf("/machine/peripheral/%s/", f->id);
		if (!strcmp(qdev, f->id) || g_str_has_prefix(qdev, p) ||
		    (g_str_has_prefix(qdev, f->id) && qdev[strlen(f->id)] == '/'))
			f->bd = bd;
		g_free(p);
	}
}

enum kl_qmp_err kl_qmp_block_set_io_throttle(struct kl_qmp_session *s, JsonObject *args,
					     JsonNode **ret, char **desc)
{
	(void)s;
	struct find_dev f = { str_arg(args, "device"), str_arg(args, "id"), NULL };
	if (!f.device == !f.id) {
		*desc = g_strdup("Need exactly one of 'device' and 'id'");
		return KL_QMP_GENERIC;
	}
	kl_blockdev_foreach(find_dev, &f);
	if (!f.bd) {
		*desc = f.device ? g_strdup_printf("Device '%s' not found", f.device)
				 : g_strdup_printf("Device '%s' not found", f.id);
		return KL_QMP_DEVICE_NOT_FOUND;
	}
	struct kl_throttle_config cfg;
	kl_throttle_config_init(&cfg);
	for (unsigned i = 0; i < G_N_ELEMENTS(thr_names); i++) {
		static const char *const sfx[][2] = { { "", "" }, { "_max", "-max" },
						       { "_max_length", "-max-length" } };
		for (unsigned j = 0; j < 3; j++) {
			char *m = g_strdup_printf("%s%s", thr_names[i].qmp, sfx[j][0]);
			if (json_object_has_member(args, m)) {
				char *k = g_strdup_printf("%s%s", thr_names[i].key, sfx[j][1]);
				char *v = g_strdup_printf("%" G_GINT64_FORMAT,
							  json_object_get_int_member(args, m));
				int r = kl_throttle_config_set(&cfg, kl_throttle_disk_keys, true, k, v,
							       desc);
				g_free(k);
				g_free(v);
				if (r != 0) {
					if (r > 0)
						*desc = g_strdup_printf("Parameter '%s' is unexpected", m);
					g_free(m);
					return KL_QMP_GENERIC;
				}
			}
			g_free(m);
		}
	}
	if (json_object_has_member(args, "iops_size")) {
		char *v = g_strdup_printf("%" G_GINT64_FORMAT,
					  json_object_get_int_member(args, "iops_size"));
		int r = kl_throttle_config_set(&cfg, kl_throttle_disk_keys, true, "iops-size", v, desc);
		g_free(v);
		if (r != 0)
			return KL_QMP_GENERIC;
	}
	/* QEMU: limits on a backend without any join the group `group`, or
	 * one named after the device / id; with limits, `group` moves it */
	const char *group = str_arg(args, "group");
	if (!group && !kl_blockdev_throttle(f.bd, NULL))
		group = f.device ? f.device : f.id;
	if (kl_blockdev_set_throttle(f.bd, &cfg, group, desc) < 0)
		return KL_QMP_GENERIC;
	*ret = kl_qmp_obj_node(json_object_new());
	return KL_QMP_OK;
}

#define I(n, opt) { n, JSON_NODE_VALUE, G_TYPE_INT64, opt }
const struct kl_qmp_arg kl_qmp_set_io_throttle_args[] = {
	{ "device", JSON_NODE_VALUE, G_TYPE_STRING, true },
	{ "id", JSON_NODE_VALUE, G_TYPE_STRING, true },
	I("bps", false), I("bps_rd", false), I("bps_wr", false),
	I("iops", false), I("iops_rd", false), I("iops_wr", false),
	I("bps_max", true), I("bps_rd_max", true), I("bps_wr_max", true),
	I("iops_max", true), I("iops_rd_max", true), I("iops_wr_max", true),
	I("bps_max_length", true), I("bps_rd_max_length", true), I("bps_wr_max_length", true),
	I("iops_max_length", true), I("iops_rd_max_length", true), I("iops_wr_max_length", true),
	I("iops_size", true),
	{ "group", JSON_NODE_VALUE, G_TYPE_STRING, true },
	{ NULL },
};
#undef I

#define S(n, opt) { n, JSON_NODE_VALUE, G_TYPE_STRING, opt }
const struct kl_qmp_arg kl_qmp_blockstats_args[] = {
	{ "query-nodes", JSON_NODE_VALUE, G_TYPE_BOOLEAN, true },
	{ NULL },
};
const struct kl_qmp_arg kl_qmp_named_nodes_args[] = {
	{ "flat", JSON_NODE_VALUE, G_TYPE_BOOLEAN, true },
	{ NULL },
};
const struct kl_qmp_arg kl_qmp_blockdev_del_args[] = { S("node-name", false), { NULL } };
const struct kl_qmp_arg kl_qmp_snap_internal_args[] = {
	S("device", false), S("name", false), { NULL },
};
const struct kl_qmp_arg kl_qmp_snap_delete_args[] = {
	S("device", false), S("id", true), S("name", true), { NULL },
};
const struct kl_qmp_arg kl_qmp_snap_sync_args[] = {
	S("device", true), S("node-name", true), S("snapshot-file", false),
	S("snapshot-node-name", true), S("format", true), S("mode", true), { NULL },
};
const struct kl_qmp_arg kl_qmp_snap_args[] = { S("node", false), S("overlay", false), { NULL } };
#undef S
