/* -drive: a backend over a format node (format=, or probed) over a file
 * node, like QEMU's -drive; the keys -drive does not know are the format
 * driver's (l2-cache-size=... for qcow2). */
#include "node.h"
#include "kvmlite/throttle.h"

#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <inttypes.h>
#include <string.h>
#include <unistd.h>

/* The unit each -drive holds on its interface (QEMU's DriveInfo): index=,
 * else the first unit no other drive of the interface holds.  An entry is
 * dropped once no backend has its id (the drive was closed). */
struct drive_unit {
	char *id;
	char *ifname;
	uint64_t unit;
};
static GArray *units;

static struct drive_unit *unit_find(const char *ifname, uint64_t unit)
{
	for (guint i = 0; units && i < units->len; i++) {
		struct drive_unit *u = &g_array_index(units, struct drive_unit, i);
		if (!strcmp(u->ifname, ifname) && u->unit == unit)
			return u;
	}
	return NULL;
}

static void units_prune(void)
{
	for (guint i = 0; units && i < units->len;) {
		struct drive_unit *u = &g_array_index(units, struct drive_unit, i);
		if (kl_blockdev_find(u->id)) {
			i++;
			continue;
		}
		g_free(u->id);
		g_free(u->ifname);
		g_array_remove_index(units, i);
	}
}

static int parse_cache(const char *v, enum kl_blk_cache *out)
{
	for (int c = KL_CACHE_NONE; c <= KL_CACHE_UNSAFE; c++)
		if (strcmp(v, kl_blk_cache_name(c)) == 0) {
			*out = c;
			return 0;
		}
	return -1;
}

struct kl_blockdev *kl_drive_add(struct kl_opts *opts, char **if_out, char **err)
{
	struct kl_block_opts o = { .engine = KL_AIO_THREADS, .cache = KL_CACHE_WRITEBACK };
	const char *v;
	char *auto_id = NULL;
	uint64_t index;

	if (if_out)
		*if_out = NULL;
	o.file = kl_opts_get(opts, "file");
	o.id = kl_opts_get(opts, "id");
	const char *ifv = kl_opts_get(opts, "if");
	if (!ifv)
		ifv = "virtio";
	if (strcmp(ifv, "virtio") != 0 && strcmp(ifv, "none") != 0) {
		*err = g_strdup_printf("drive: if=%s is not supported (use if=virtio or if=none)", ifv);
		return NULL;
	}
	o.format = kl_opts_get(opts, "format");
	if ((v = kl_opts_get(opts, "cache")) && parse_cache(v, &o.cache) < 0) {
		*err = g_strdup_printf("drive: invalid cache option '%s' (none, writethrough, "
				       "writeback, directsync, unsafe)", v);
		return NULL;
	}
	if ((v = kl_opts_get(opts, "aio")) && kl_blk_engine_parse(v, &o.engine) < 0) {
		*err = g_strdup_printf("drive: invalid aio option '%s' (threads, native, io_uring)", v);
		return NULL;
	}
	if (kl_opts_get_bool(opts, "readonly", false, &o.readonly, err) < 0)
		return NULL;
	if ((v = kl_opts_get(opts, "media")) && strcmp(v, "disk") != 0) {
		*err = g_strdup_printf("drive: media=%s is not supported (only media=disk)", v);
		return NULL;
	}
	bool has_index = kl_opts_get(opts, "index") != NULL;
	if (kl_opts_get_u64(opts, "index", 0, &index, err) < 0)
		return NULL;
	if (has_index && index > INT32_MAX) {
		*err = g_strdup_printf("drive: index=%" PRIu64 " is out of range", index);
		return NULL;
	}
	if ((v = kl_opts_get(opts, "discard")) && kl_blk_discard_parse(v, &o.discard_unmap) < 0) {
		*err = g_strdup_printf("drive: invalid discard option '%s' (ignore, unmap)", v);
		return NULL;
	}
	struct kl_throttle_config thr;
	kl_throttle_config_init(&thr);
	/* the throttle group (QEMU: created by name if none has it; the
	 * drive's id when not given); without limits it is not joined */
	const char *thr_group = kl_opts_get(opts, "throttling.group");
	if (kl_throttle_config_from_opts(&thr, kl_throttle_disk_keys, true, opts, "throttling",
					 err) < 0) {
		char *e = *err;
		*err = g_strdup_printf("drive: %s", e);
		g_free(e);
		return NULL;
	}
	o.fmt_opts = opts; /* the keys not used so far */
	o.probe = true;
	if (!o.file || !*o.file) {
		*err = g_strdup("drive: file= is required");
		return NULL;
	}
	/* QEMU 7.2's drive_new: bus 0 (virtio and none have one bus of any
	 * number of units); without id= the drive is "<if><unit>" */
	units_prune();
	uint64_t unit = 0;
	if (has_index) {
		unit = index;
		if (unit_find(ifv, unit)) {
			*err = g_strdup_printf("drive with bus=0, unit=%" PRIu64 " (index=%" PRIu64
					       ") exists", unit, index);
			return NULL;
		}
	} else {
		while (unit_find(ifv, unit))
			unit++;
	}
	if (o.id) {
		if (!*o.id) {
			*err = g_strdup("drive: id= must not be empty");
			return NULL;
		}
		if (kl_blockdev_find(o.id)) {
			*err = g_strdup_printf("drive: duplicate id '%s'", o.id);
			return NULL;
		}
	} else {
		auto_id = g_strdup_printf("%s%" PRIu64, ifv, unit);
		if (kl_blockdev_find(auto_id)) {
			*err = g_strdup_printf("Device with id '%s' already exists", auto_id);
			g_free(auto_id);
			return NULL;
		}
		o.id = auto_id;
	}
	struct kl_blockdev *bd = kl_blockdev_open(&o, err);
	g_free(auto_id);
	if (!bd)
		return NULL;
	if (kl_opts_check_unused(opts, "drive", err) < 0) {
		kl_blockdev_close(bd);
		return NULL;
	}
	if (kl_throttle_config_enabled(&thr) &&
	    kl_blockdev_set_throttle(bd, &thr, thr_group ? thr_group : kl_blockdev_id(bd), err) < 0) {
		kl_blockdev_close(bd);
		return NULL;
	}
	kl_blockdev_register(bd);
	if (!units)
		units = g_array_new(false, false, sizeof(struct drive_unit));
	struct drive_unit u = { g_strdup(kl_blockdev_id(bd)), g_strdup(ifv), unit };
	g_array_append_val(units, u);
	if (if_out)
		*if_out = g_strdup(ifv);
	return bd;
}
