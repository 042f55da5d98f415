/* Block node graph: the driver table, opening nodes from -blockdev style
 * options (children `file` and `backing`), the registry by node-name,
 * reference counting, the generic I/O entry points and drain.  See node.h. */
#include "node.h"
#include "block_int.h"

#include <errno.h>
#include <glib.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "kvmlite/iov.h"
#include "kvmlite/loop.h"

extern const struct kl_bdrv kl_bdrv_raw;
extern const struct kl_bdrv kl_bdrv_qcow2;
extern const struct kl_bdrv kl_bdrv_throttle;

static const struct kl_bdrv *const drivers[] = {
	&kl_bdrv_file,
	&kl_bdrv_raw,
	&kl_bdrv_qcow2,
	&kl_bdrv_throttle,
};

#define MAX_BACKING_DEPTH 64

static GList *nodes;        /* struct kl_bnode *, creation order */
static unsigned next_auto;  /* "#blockNNN" */

const struct kl_bdrv *kl_bdrv_find(const char *name)
{
	for (size_t i = 0; i < G_N_ELEMENTS(drivers); i++)
		if (!strcmp(drivers[i]->name, name))
			return drivers[i];
	return NULL;
}

const struct kl_bdrv *kl_bdrv_probe_buf(const uint8_t *buf, size_t len)
{
	const struct kl_bdrv *best = NULL;
	int score = 0;
	for (size_t i = 0; i < G_N_ELEMENTS(drivers); i++) {
		int s = drivers[i]->probe ? drivers[i]->probe(buf, len) : 0;
		if (s > score) {
			score = s;
			best = drivers[i];
		}
	}
	return best;
}

const struct kl_bdrv *kl_bdrv_probe(struct kl_bnode *file, char **warn)
{
	uint8_t buf[512];
	uint64_t flen = kl_bnode_file_length(file);
	size_t len = flen < sizeof(buf) ? (size_t)flen : sizeof(buf);
	const struct kl_bdrv *best = NULL;

	*warn = NULL;
	if (len && kl_bnode_pread_sync(file, 0, buf, len) == 0)
		best = kl_bdrv_probe_buf(buf, len);
	if (best)
		return best;
	*warn = g_strdup_printf("WARNING: Image format was not specified for '%s' and probing "
				"guessed raw.\n         Automatically detecting the format is "
				"dangerous for raw images, write operations on block 0 will be "
				"restricted.\n         Specify the 'raw' format explicitly to "
				"remove the restrictions.", file->filename);
	return &kl_bdrv_raw;
}

struct kl_bnode *kl_bnode_find(const char *node_name)
{
	if (!node_name)
		return NULL;
	for (GList *l = nodes; l; l = l->next) {
		struct kl_bnode *bs = l->data;
		if (!strcmp(bs->node_name, node_name))
			return bs;
	}
	return NULL;
}

void kl_bnode_foreach(void (*fn)(struct kl_bnode *bs, void *opaque), void *opaque)
{
	for (GList *l = nodes; l; l = l->next)
		fn(l->data, opaque);
}

void kl_bnode_ref(struct kl_bnode *bs)
{
	bs->refs++;
}

void kl_bnode_unref(struct kl_bnode *bs)
{
	if (!bs || --bs->refs)
		return;
	kl_bnode_drain(bs);
	if (bs->drv->close)
		bs->drv->close(bs);
	nodes = g_list_remove(nodes, bs);
	if (bs->backing)
		kl_bnode_unref(bs->backing);
	if (bs->file)
		kl_bnode_unref(bs->file);
	g_free(bs->node_name);
	g_free(bs->filename);
	g_free(bs->backing_file);
	g_free(bs->backing_fmt);
	g_free(bs);
}

/* QEMU's rule: a letter first, then letters, digits, '-', '.', '_'; < 32. */
static bool valid_node_name(const char *n)
{
	if (!g_ascii_isalpha(n[0]) || strlen(n) > 31)
		return false;
	for (const char *p = n; *p; p++)
		if (!g_ascii_isalnum(*p) && *p != '-' && *p != '.' && *p != '_')
			return false;
	return true;
}

char *kl_bnode_backing_path(const char *overlay_filename, const char *backing)
{
	if (!backing)
		return NULL;
	if (backing[0] == '/' || !overlay_filename || !strchr(overlay_filename, '/'))
		return g_strdup(backing);
	char *dir = g_path_get_dirname(overlay_filename);
	char *p = g_build_filename(dir, backing, NULL);
	g_free(dir);
	return p;
}

int kl_blk_discard_parse(const char *v, bool *unmap)
{
	if (!strcmp(v, "unmap") || !strcmp(v, "on"))
		*unmap = true;
	else if (!strcmp(v, "ignore") || !strcmp(v, "off"))
		*unmap = false;
	else
		return -1;
	return 0;
}

static int parse_generic(struct kl_opts *o, struct kl_bnode_inherit *in, char **err)
{
	const char *v;
	bool b;

	if (kl_opts_get_bool(o, "read-only", in->readonly, &in->readonly, err) < 0)
		return -1;
	if (kl_opts_get_bool(o, "auto-read-only", false, &b, err) < 0)
		return -1;
	if (kl_opts_get_bool(o, "force-share", false, &b, err) < 0)
		return -1;
	if (kl_opts_get_bool(o, "cache.direct", in->direct, &in->direct, err) < 0 ||
	    kl_opts_get_bool(o, "cache.no-flush", in->no_flush, &in->no_flush, err) < 0)
		return -1;
	if ((v = kl_opts_get(o, "discard")) && kl_blk_discard_parse(v, &in->discard_unmap) < 0) {
		*err = g_strdup_printf("Invalid discard option '%s' (ignore, unmap)", v);
		return -1;
	}
	if ((v = kl_opts_get(o, "detect-zeroes")) && strcmp(v, "off")) {
		*err = g_strdup_printf("detect-zeroes=%s is not supported (only off)", v);
		return -1;
	}
	return 0;
}

static struct kl_bnode *open_depth(struct kl_opts *o, const struct kl_bnode_inherit *pin,
				   unsigned depth, char **err);

/* Child `name` of parent: a reference, nested keys or (backing only) absent
 * / "" (none).  *child NULL with 0 returned: none given. */
static int open_child(struct kl_opts *o, const char *name, const struct kl_bnode_inherit *in,
		      unsigned depth, struct kl_bnode **child, char **err)
{
	const char *ref = kl_opts_get(o, name);
	*child = NULL;
	if (ref && kl_opts_has_prefix(o, name)) {
		*err = g_strdup_printf("Cannot reference an existing block device for '%s' and "
				       "give options for it at the same time", name);
		return -1;
	}
	if (ref) {
		if (!*ref)
			return 0;
		struct kl_bnode *c = kl_bnode_find(ref);
		if (!c) {
			*err = g_strdup_printf("Cannot find device='%s' nor node-name='%s'", ref,
					       ref);
			return -1;
		}
		kl_bnode_ref(c);
		*child = c;
		return 0;
	}
	if (!kl_opts_has_prefix(o, name))
		return 0;
	struct kl_opts *sub = kl_opts_sub(o, name);
	*child = open_depth(sub, in, depth + 1, err);
	kl_opts_free(sub);
	return *child ? 0 : -1;
}

/* The backing file named in the image header (relative to the overlay). */
static int open_backing_from_header(struct kl_bnode *bs, unsigned depth, char **err)
{
	struct kl_bnode_inherit in = bs->in;
	in.readonly = true;
	if (depth >= MAX_BACKING_DEPTH) {
		*err = g_strdup_printf("'%s': backing chain deeper than %u (a loop?)", bs->filename,
				       MAX_BACKING_DEPTH);
		return -1;
	}
	char *path = kl_bnode_backing_path(bs->filename, bs->backing_file);
	struct stat a, b;
	/* a chain that comes back to a file already in it is a loop */
	for (struct kl_bnode *p = bs; p; p = p->backing)
		if (p->filename && stat(p->filename, &a) == 0 && stat(path, &b) == 0 &&
		    a.st_dev == b.st_dev && a.st_ino == b.st_ino) {
			*err = g_strdup_printf("'%s': backing file '%s' is already in the chain (a loop)",
					       bs->filename, path);
			g_free(path);
			return -1;
		}
	struct kl_opts *o = kl_opts_new(path);
	kl_opts_add(o, "file.driver", "file");
	kl_opts_add(o, "file.filename", path);
	if (bs->backing_fmt)
		kl_opts_add(o, "driver", bs->backing_fmt);
	char *e = NULL;
	bs->backing = open_depth(o, &in, depth + 1, &e);
	kl_opts_free(o);
	if (!bs->backing) {
		*err = g_strdup_printf("Could not open backing file: %s", e);
		g_free(e);
		g_free(path);
		return -1;
	}
	g_free(path);
	return 0;
}

static struct kl_bnode *open_depth(struct kl_opts *o, const struct kl_bnode_inherit *pin,
				   unsigned depth, char **err)
{
	struct kl_bnode_inherit in = *pin;
	const char *dname = kl_opts_get(o, "driver");
	const char *name = kl_opts_get(o, "node-name");
	const struct kl_bdrv *drv = NULL;
	struct kl_bnode *file = NULL;
	char *warn = NULL;
	bool probed = false;

	if (depth > MAX_BACKING_DEPTH * 2) {
		*err = g_strdup("block graph nested too deeply");
		return NULL;
	}
	if (name && (!valid_node_name(name) || kl_bnode_find(name) || kl_blockdev_find(name))) {
		*err = !valid_node_name(name)
			? g_strdup_printf("Invalid node-name: '%s'", name)
			: kl_blockdev_find(name)
			? g_strdup_printf("node-name=%s is conflicting with a device id", name)
			: g_strdup_printf("Duplicate nodes with node-name='%s'", name);
		return NULL;
	}
	if (dname && !(drv = kl_bdrv_find(dname))) {
		*err = g_strdup_printf("Unknown driver '%s'", dname);
		return NULL;
	}
	if (parse_generic(o, &in, err) < 0)
		return NULL;
	if (!drv || !drv->protocol) {
		if (open_child(o, "file", &in, depth, &file, err) < 0)
			return NULL;
		if (!file) {
			*err = dname ? g_strdup_printf("A block device must be specified for \"file\"")
				     : g_strdup("Parameter 'driver' is missing");
			return NULL;
		}
		if (!drv) {
			probed = true;
			drv = kl_bdrv_probe(file, &warn);
			if (warn) {
				fprintf(stderr, "kvmlite: %s\n", warn);
				g_free(warn);
			}
		}
	}
	struct kl_bnode *bs = g_new0(struct kl_bnode, 1);
	bs->drv = drv;
	bs->refs = 1;
	bs->file = file;
	bs->readonly = in.readonly;
	bs->discard_unmap = in.discard_unmap;
	bs->probed = probed;
	bs->in = in;
	if (name) {
		bs->node_name = g_strdup(name);
	} else {
		bs->node_name = g_strdup_printf("#block%03u", next_auto++);
		bs->auto_name = true;
	}
	if (file)
		bs->filename = g_strdup(file->filename);
	if (drv->open(bs, o, &in, err) < 0)
		goto fail_open;
	if (drv->has_backing) {
		struct kl_bnode_inherit bin = bs->in;
		bin.readonly = true;
		bool given = kl_opts_get(o, "backing") || kl_opts_has_prefix(o, "backing");
		if (open_child(o, "backing", &bin, depth, &bs->backing, err) < 0)
			goto fail;
		if (!given && bs->backing_file && open_backing_from_header(bs, depth, err) < 0)
			goto fail;
		if (drv->backing_attached && drv->backing_attached(bs, err) < 0)
			goto fail;
	}
	for (unsigned i = 0; i < o->n; i++)
		if (!o->v[i].used) {
			*err = g_strdup_printf("Block %s '%s' does not support the option '%s'",
					       drv->protocol ? "protocol" : "format", drv->name,
					       o->v[i].key);
			goto fail;
		}
	nodes = g_list_append(nodes, bs);
	return bs;
fail:
	if (drv->close)
		drv->close(bs);
fail_open:
	if (bs->backing)
		kl_bnode_unref(bs->backing);
	if (file)
		kl_bnode_unref(file);
	g_free(bs->node_name);
	g_free(bs->filename);
	g_free(bs->backing_file);
	g_free(bs->backing_fmt);
	g_free(bs);
	return NULL;
}

struct kl_bnode *kl_bnode_open(struct kl_opts *o, const struct kl_bnode_inherit *in, char **err)
{
	return open_depth(o, in, 0, err);
}

struct kl_bnode *kl_bnode_open_image(const char *filename, const char *format,
				     const struct kl_bnode_inherit *in, struct kl_opts *fmt_opts,
				     char **err)
{
	struct kl_opts *o = kl_opts_new(filename);
	if (fmt_opts)
		for (unsigned i = 0; i < fmt_opts->n; i++)
			if (!fmt_opts->v[i].used)
				kl_opts_add(o, fmt_opts->v[i].key, fmt_opts->v[i].val);
	kl_opts_add(o, "file.driver", "file");
	kl_opts_add(o, "file.filename", filename);
	if (format)
		kl_opts_add(o, "driver", format);
	struct kl_bnode *bs = kl_bnode_open(o, in, err);
	if (bs && fmt_opts)
		for (unsigned i = 0; i < fmt_opts->n; i++)
			fmt_opts->v[i].used = true;
	kl_opts_free(o);
	return bs;
}

/* ---- I/O ---- */

struct later {
	kl_blk_cb cb;
	void *opaque;
	long ret;
};
static GQueue later_q = G_QUEUE_INIT;
static bool later_scheduled;

static void run_later(void *unused)
{
	(void)unused;
	later_scheduled = false;
	/* only what is queued now: callbacks may queue more (next round) */
	guint n = g_queue_get_length(&later_q);
	while (n--) {
		struct later *l = g_queue_pop_head(&later_q);
		kl_blk_cb cb = l->cb;
		void *opaque = l->opaque;
		long ret = l->ret;
		g_free(l);
		cb(opaque, ret);
	}
}

void kl_bnode_complete_later(kl_blk_cb cb, void *opaque, long ret)
{
	struct later *l = g_new(struct later, 1);
	l->cb = cb;
	l->opaque = opaque;
	l->ret = ret;
	g_queue_push_tail(&later_q, l);
	if (!later_scheduled) {
		later_scheduled = true;
		kl_bh_schedule(run_later, NULL);
	}
}

static inline void note_write(struct kl_bnode *bs, uint64_t off, uint64_t len)
{
	if (len && off + len > bs->stats.wr_highest_offset)
		bs->stats.wr_highest_offset = off + len;
}

static int check_range(struct kl_bnode *bs, uint64_t off, uint64_t len, bool write,
		       kl_blk_cb cb, void *opaque)
{
	if (write && bs->readonly) {
		kl_bnode_complete_later(cb, opaque, -EROFS);
		return 1;
	}
	if (bs->drv->protocol)
		return 0; /* files grow; a read past the end reads zeroes */
	if (off > bs->size || len > bs->size - off) {
		kl_bnode_complete_later(cb, opaque, -EINVAL);
		return 1;
	}
	return 0;
}

int kl_bnode_preadv(struct kl_bnode *bs, uint64_t off, const struct iovec *iov, int iovcnt,
		    kl_blk_cb cb, void *opaque)
{
	if (!cb || iovcnt < 0 || iovcnt > IOV_MAX || (iovcnt && !iov))
		return -EINVAL;
	uint64_t len = kl_iov_size(iov, (unsigned)iovcnt);
	if (check_range(bs, off, len, false, cb, opaque))
		return 0;
	return bs->drv->preadv(bs, off, iov, iovcnt, len, cb, opaque);
}

int kl_bnode_pwritev(struct kl_bnode *bs, uint64_t off, const struct iovec *iov, int iovcnt,
		     kl_blk_cb cb, void *opaque)
{
	if (!cb || iovcnt < 0 || iovcnt > IOV_MAX || (iovcnt && !iov))
		return -EINVAL;
	uint64_t len = kl_iov_size(iov, (unsigned)iovcnt);
	if (check_range(bs, off, len, true, cb, opaque))
		return 0;
	note_write(bs, off, len);
	return bs->drv->pwritev(bs, off, iov, iovcnt, len, cb, opaque);
}

int kl_bnode_flush(struct kl_bnode *bs, kl_blk_cb cb, void *opaque)
{
	if (!cb)
		return -EINVAL;
	if (!bs->drv->flush || bs->readonly) {
		kl_bnode_complete_later(cb, opaque, 0);
		return 0;
	}
	return bs->drv->flush(bs, cb, opaque);
}

int kl_bnode_discard(struct kl_bnode *bs, uint64_t off, uint64_t len, kl_blk_cb cb, void *opaque)
{
	if (!cb)
		return -EINVAL;
	if (check_range(bs, off, len, true, cb, opaque))
		return 0;
	if (!bs->drv->discard || !len) {
		kl_bnode_complete_later(cb, opaque, 0);
		return 0;
	}
	return bs->drv->discard(bs, off, len, cb, opaque);
}

int kl_bnode_write_zeroes(struct kl_bnode *bs, uint64_t off, uint64_t len, unsigned flags,
			  kl_blk_cb cb, void *opaque)
{
	if (!cb)
		return -EINVAL;
	if (check_range(bs, off, len, true, cb, opaque))
		return 0;
	if (!len) {
		kl_bnode_complete_later(cb, opaque, 0);
		return 0;
	}
	if (!bs->drv->write_zeroes)
		return -ENOTSUP;
	note_write(bs, off, len);
	return bs->drv->write_zeroes(bs, off, len, flags, cb, opaque);
}

int kl_bnode_pread_sync(struct kl_bnode *bs, uint64_t off, void *buf, size_t len)
{
	return bs->drv->pread_sync ? bs->drv->pread_sync(bs, off, buf, len) : -ENOTSUP;
}

#ifdef KL_BLOCK_TEST_HOOKS
/* KVMLITE_BLOCK_CRASH_AT=N: SIGKILL the process before the N-th synchronous
 * write or flush (counted from 1 over the process's life) issued while a
 * driver has the crash point armed; qcow2 arms it around snapshot create /
 * delete, so a test can stop the sequence at each step (tests/crash/
 * snapshot.py).  Off in builds with -Dblock_test_hooks=false. */
static unsigned crash_armed;
static long crash_at = -1, crash_n;

void kl_bnode_crash_arm(bool on)
{
	if (crash_at < 0) {
		const char *v = getenv("KVMLITE_BLOCK_CRASH_AT");
		crash_at = v ? strtol(v, NULL, 10) : 0;
		if (crash_at < 0)
			crash_at = 0;
	}
	if (on)
		crash_armed++;
	else if (crash_armed)
		crash_armed--;
}

static void crash_point(void)
{
	if (crash_armed && crash_at > 0 && ++crash_n == crash_at)
		raise(SIGKILL);
}
#else
void kl_bnode_crash_arm(bool on)
{
	(void)on;
}

static void crash_point(void)
{
}
#endif

int kl_bnode_pwrite_sync(struct kl_bnode *bs, uint64_t off, const void *buf, size_t len)
{
	if (bs->readonly)
		return -EROFS;
	crash_point();
	if (!bs->drv->pwrite_sync)
		return -ENOTSUP;
	note_write(bs, off, len);
	return bs->drv->pwrite_sync(bs, off, buf, len);
}

int kl_bnode_flush_sync(struct kl_bnode *bs)
{
	crash_point();
	return bs->drv->flush_sync ? bs->drv->flush_sync(bs) : 0;
}

int kl_bnode_truncate_sync(struct kl_bnode *bs, uint64_t size)
{
	if (bs->readonly)
		return -EROFS;
	return bs->drv->truncate_sync ? bs->drv->truncate_sync(bs, size) : -ENOTSUP;
}

uint64_t kl_bnode_file_length(struct kl_bnode *bs)
{
	return bs->drv->file_length ? bs->drv->file_length(bs) : bs->size;
}

static bool files_busy(struct kl_bnode *bs)
{
	for (; bs; bs = bs->backing) {
		if (bs->bfile && bs->bfile->in_flight)
			return true;
		if (bs->file && files_busy(bs->file))
			return true;
	}
	return false;
}

/* Requests a driver holds back (the throttle filter's queues) go now. */
static void release_held(struct kl_bnode *bs)
{
	for (; bs; bs = bs->backing) {
		if (bs->drv->drain)
			bs->drv->drain(bs);
		if (bs->file)
			release_held(bs->file);
	}
}

void kl_bnode_drain(struct kl_bnode *bs)
{
	/* Every request ends in file I/O or in a complete_later callback; run
	 * both until nothing under bs is in flight (held ones released first,
	 * as QEMU's drain lifts the I/O limits). */
	for (;;) {
		release_held(bs);
		if (!g_queue_is_empty(&later_q))
			run_later(NULL);
		if (!files_busy(bs) && !bs->in_flight && g_queue_is_empty(&later_q))
			break;
		kl_bfile_wait_any(10);
	}
}
