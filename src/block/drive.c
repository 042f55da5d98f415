/* -drive: a backend over a format node (format=, or probed) over a file
 * node, like QEMU's -drive; the keys -drive does not know are the format
 * driver's (l2-cache-size=... for qcow2). */
#include "node.h"
#include "kvmlite/throttle.h"

#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <string.h>
#include <unistd.h>

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
	if (kl_opts_get_u64(opts, "index", 0, &index, err) < 0)
		return NULL;
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
		for (unsigned n = 0;; n++) {
			auto_id = g_strdup_printf("drive%u", n);
			if (!kl_blockdev_find(auto_id))
				break;
			g_free(auto_id);
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
	if (if_out)
		*if_out = g_strdup(ifv);
	return bd;
}
