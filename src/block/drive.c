/* -drive option parsing and the registry of drives by id. */
#include "block_int.h"

#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <string.h>
#include <unistd.h>

static GPtrArray *drives; /* struct kl_blockdev *, creation order */

struct kl_blockdev *kl_blockdev_find(const char *id)
{
	if (!drives || !id)
		return NULL;
	for (guint i = 0; i < drives->len; i++) {
		struct kl_blockdev *bd = g_ptr_array_index(drives, i);
		if (strcmp(bd->id, id) == 0)
			return bd;
	}
	return NULL;
}

void kl_blockdev_foreach(void (*fn)(struct kl_blockdev *bd, void *opaque), void *opaque)
{
	if (!drives)
		return;
	for (guint i = 0; i < drives->len; i++)
		fn(g_ptr_array_index(drives, i), opaque);
}

void kl_blockdev_unregister(struct kl_blockdev *bd)
{
	if (drives)
		g_ptr_array_remove(drives, bd);
	bd->registered = false;
}

void kl_blockdev_close_all(void)
{
	while (drives && drives->len)
		kl_blockdev_close(g_ptr_array_index(drives, drives->len - 1));
	if (drives) {
		g_ptr_array_free(drives, TRUE);
		drives = NULL;
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

static int parse_aio(const char *v, enum kl_blk_engine *out)
{
	for (int e = KL_AIO_THREADS; e <= KL_AIO_IO_URING; e++)
		if (strcmp(v, kl_blk_engine_name(e)) == 0) {
			*out = e;
			return 0;
		}
	return -1;
}

/* Like QEMU's format probing: without format=, a qcow2 image must not be
 * silently exposed (and overwritten) as raw. */
static bool looks_like_qcow2(const char *file)
{
	unsigned char m[4];
	int fd = open(file, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return false;
	bool q = pread(fd, m, 4, 0) == 4 && memcmp(m, "QFI\xfb", 4) == 0;
	close(fd);
	return q;
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
	if ((v = kl_opts_get(opts, "aio")) && parse_aio(v, &o.engine) < 0) {
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
	if (kl_opts_check_unused(opts, "drive", err) < 0)
		return NULL;
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
	if (!o.format && looks_like_qcow2(o.file)) {
		*err = g_strdup_printf("'%s': format 'qcow2' is not supported yet (only raw); "
				       "use format=raw to access the file as raw", o.file);
		g_free(auto_id);
		return NULL;
	}
	struct kl_blockdev *bd = kl_blockdev_open(&o, err);
	g_free(auto_id);
	if (!bd)
		return NULL;
	if (!drives)
		drives = g_ptr_array_new();
	g_ptr_array_add(drives, bd);
	bd->registered = true;
	if (if_out)
		*if_out = g_strdup(ifv);
	return bd;
}
