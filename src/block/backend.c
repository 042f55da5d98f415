/* Block backends: what a device attaches to.  A backend has an id (the
 * -drive id; "" for one made for `-device ...,drive=NODE-NAME`), a root
 * node, the device it is attached to, statistics, and the registry.
 * kl_blk_submit() adds the statistics and hands the request to the root
 * node (node.c); while a backend is quiesced (snapshots, graph changes)
 * new requests wait in a queue. */
#include "node.h"
#include "block_int.h"

#include <errno.h>
#include <glib.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvmlite/clock.h"
#include "kvmlite/loop.h"
#include "kvmlite/throttle.h"

struct kl_blockdev {
	char *id;
	struct kl_bnode *root;
	char *attached;
	struct kl_blk_stats stats;
	bool registered;
	unsigned in_flight;
	unsigned quiesce;
	GQueue held;                    /* struct breq * waiting for quiesce end */
	/* I/O limits (throttling.*, block_set_io_throttle): the backend is a
	 * member of a throttle group (thr.group NULL: no limits); reads and
	 * writes beyond them wait here, in order, until the group's turn */
	struct kl_thr_member thr;
	GQueue thr_q[KL_THR_NDIRS];
};

struct breq {
	struct kl_blockdev *bd;
	enum kl_blk_op op;
	uint64_t offset, len;
	kl_blk_cb cb;
	void *opaque;
	uint64_t start_ns;
	long wt_ret;                    /* writethrough: result held over the flush */
	/* held requests keep a copy of the iovec */
	struct iovec *iov;
	int iovcnt;
	struct breq *free_next;
};

static GPtrArray *backends;         /* struct kl_blockdev *, creation order */
static struct breq *breq_free;      /* recycled request records */
static unsigned breq_nfree;

/* ---- registry ---- */

struct kl_blockdev *kl_blockdev_find(const char *id)
{
	if (!backends || !id || !*id)
		return NULL;
	for (guint i = 0; i < backends->len; i++) {
		struct kl_blockdev *bd = g_ptr_array_index(backends, i);
		if (strcmp(bd->id, id) == 0)
			return bd;
	}
	return NULL;
}

struct kl_blockdev *kl_blockdev_for_device(const char *drive, char **err)
{
	struct kl_blockdev *bd = kl_blockdev_find(drive);
	if (bd)
		return bd;
	struct kl_bnode *bs = kl_bnode_find(drive);
	if (!bs) {
		*err = g_strdup_printf("Property 'drive': can't find value '%s'", drive ? drive : "");
		return NULL;
	}
	for (guint i = 0; backends && i < backends->len; i++) {
		struct kl_blockdev *b = g_ptr_array_index(backends, i);
		if (b->root == bs) {
			*err = g_strdup_printf("Property 'drive': node '%s' is already in use", drive);
			return NULL;
		}
	}
	kl_bnode_ref(bs);
	bd = kl_blockdev_new("", bs);
	kl_bnode_unref(bs);
	kl_blockdev_register(bd);
	return bd;
}

void kl_blockdev_foreach(void (*fn)(struct kl_blockdev *bd, void *opaque), void *opaque)
{
	if (!backends)
		return;
	for (guint i = 0; i < backends->len; i++)
		fn(g_ptr_array_index(backends, i), opaque);
}

void kl_blockdev_register(struct kl_blockdev *bd)
{
	if (!backends)
		backends = g_ptr_array_new();
	g_ptr_array_add(backends, bd);
	bd->registered = true;
}

void kl_blockdev_close_all(void)
{
	while (backends && backends->len)
		kl_blockdev_close(g_ptr_array_index(backends, backends->len - 1));
	if (backends) {
		g_ptr_array_free(backends, TRUE);
		backends = NULL;
	}
	kl_blockdev_release_user_nodes();
	while (breq_free) {
		struct breq *r = breq_free;
		breq_free = r->free_next;
		g_free(r);
	}
	breq_nfree = 0;
}

/* ---- life cycle ---- */

struct kl_blockdev *kl_blockdev_new(const char *id, struct kl_bnode *root)
{
	struct kl_blockdev *bd = g_new0(struct kl_blockdev, 1);
	bd->id = g_strdup(id ? id : "");
	bd->root = root;
	kl_bnode_ref(root);
	g_queue_init(&bd->held);
	g_queue_init(&bd->thr_q[KL_THR_READ]);
	g_queue_init(&bd->thr_q[KL_THR_WRITE]);
	return bd;
}

struct kl_bnode_inherit kl_block_inherit(enum kl_blk_cache c, enum kl_blk_engine e, bool ro)
{
	struct kl_bnode_inherit in = { .readonly = ro, .engine = e };
	in.direct = c == KL_CACHE_NONE || c == KL_CACHE_DIRECTSYNC;
	in.writethrough = c == KL_CACHE_WRITETHROUGH || c == KL_CACHE_DIRECTSYNC;
	in.no_flush = c == KL_CACHE_UNSAFE;
	return in;
}

struct kl_blockdev *kl_blockdev_open(const struct kl_block_opts *o, char **err)
{
	if (!o->file || !*o->file) {
		*err = g_strdup("drive: no file name given (file=)");
		return NULL;
	}
	if ((unsigned)o->cache > KL_CACHE_UNSAFE || (unsigned)o->engine > KL_AIO_IO_URING) {
		*err = g_strdup_printf("'%s': invalid cache or aio mode", o->file);
		return NULL;
	}
	if (o->format && !kl_bdrv_find(o->format)) {
		*err = g_strdup_printf("'%s': Unknown driver '%s'", o->file, o->format);
		return NULL;
	}
	struct kl_bnode_inherit in = kl_block_inherit(o->cache, o->engine, o->readonly);
	in.discard_unmap = o->discard_unmap;
	struct kl_bnode *root = kl_bnode_open_image(o->file, o->format ? o->format : o->probe ? NULL : "raw", &in,
						    o->fmt_opts, err);
	if (!root)
		return NULL;
	struct kl_blockdev *bd = kl_blockdev_new(o->id, root);
	kl_bnode_unref(root);
	return bd;
}

void kl_blockdev_close(struct kl_blockdev *bd)
{
	if (!bd)
		return;
	kl_blockdev_drain(bd);
	kl_thr_member_leave(&bd->thr);   /* drain released its queues */
	if (bd->registered && backends)
		g_ptr_array_remove(backends, bd);
	kl_bnode_unref(bd->root);
	g_free(bd->id);
	g_free(bd->attached);
	g_free(bd);
}

/* ---- getters ---- */

static struct kl_bnode *protocol_of(struct kl_bnode *bs)
{
	while (bs && !bs->drv->protocol)
		bs = bs->file;
	return bs;
}

const char *kl_blockdev_id(const struct kl_blockdev *bd) { return bd->id; }
struct kl_bnode *kl_blockdev_root(const struct kl_blockdev *bd) { return bd->root; }
const char *kl_blockdev_filename(const struct kl_blockdev *bd) { return bd->root->filename; }
uint64_t kl_blockdev_size(const struct kl_blockdev *bd) { return bd->root->size; }
bool kl_blockdev_readonly(const struct kl_blockdev *bd) { return bd->root->readonly; }
uint32_t kl_blockdev_block_size(const struct kl_blockdev *bd) { (void)bd; return 512; }
unsigned kl_blockdev_in_flight(const struct kl_blockdev *bd) { return bd->in_flight; }
const char *kl_blockdev_attached(const struct kl_blockdev *bd) { return bd->attached; }

enum kl_blk_engine kl_blockdev_engine(const struct kl_blockdev *bd)
{
	struct kl_bnode *p = protocol_of(bd->root);
	return p ? p->in.engine : bd->root->in.engine;
}

enum kl_blk_cache kl_blockdev_cache(const struct kl_blockdev *bd)
{
	const struct kl_bnode_inherit *in = &bd->root->in;
	if (in->no_flush)
		return KL_CACHE_UNSAFE;
	if (in->direct)
		return in->writethrough ? KL_CACHE_DIRECTSYNC : KL_CACHE_NONE;
	return in->writethrough ? KL_CACHE_WRITETHROUGH : KL_CACHE_WRITEBACK;
}

uint32_t kl_blockdev_dio_align(const struct kl_blockdev *bd)
{
	struct kl_bnode *p = protocol_of(bd->root);
	return p && p->bfile ? p->bfile->align : 1;
}

void kl_blockdev_set_attached(struct kl_blockdev *bd, const char *qdev)
{
	g_free(bd->attached);
	bd->attached = g_strdup(qdev);
}

void kl_blockdev_get_stats(const struct kl_blockdev *bd, struct kl_blk_stats *out)
{
	*out = bd->stats;
}

/* ---- requests ---- */

static struct breq *breq_get(void)
{
	struct breq *r = breq_free;
	if (r) {
		breq_free = r->free_next;
		breq_nfree--;
		memset(r, 0, sizeof(*r));
		return r;
	}
	return g_new0(struct breq, 1);
}

static void breq_put(struct breq *r)
{
	g_free(r->iov);
	if (breq_nfree >= 256) {
		g_free(r);
		return;
	}
	r->free_next = breq_free;
	breq_free = r;
	breq_nfree++;
}

static void account(struct kl_blockdev *bd, enum kl_blk_op op, long ret, uint64_t ns)
{
	struct kl_blk_stats *s = &bd->stats;
	switch (op) {
	case KL_BLK_READ:
		if (ret < 0) {
			s->failed_rd_ops++;
		} else {
			s->rd_ops++;
			s->rd_bytes += (uint64_t)ret;
			s->rd_total_ns += ns;
		}
		break;
	case KL_BLK_WRITE:
		if (ret < 0) {
			s->failed_wr_ops++;
		} else {
			s->wr_ops++;
			s->wr_bytes += (uint64_t)ret;
			s->wr_total_ns += ns;
		}
		break;
	case KL_BLK_FLUSH:
		if (ret < 0) {
			s->failed_flush_ops++;
		} else {
			s->flush_ops++;
			s->flush_total_ns += ns;
		}
		break;
	case KL_BLK_DISCARD:
		if (ret >= 0)
			s->discard_ops++;
		break;
	case KL_BLK_WRITE_ZEROES:
		if (ret < 0)
			s->failed_wr_ops++;
		else
			s->wz_ops++;
		break;
	}
}

static void breq_finish(struct breq *r, long ret)
{
	struct kl_blockdev *bd = r->bd;
	account(bd, r->op, ret, kl_clock_ns() - r->start_ns);
	bd->in_flight--;
	kl_blk_cb cb = r->cb;
	void *cb_opaque = r->opaque;
	breq_put(r);
	cb(cb_opaque, ret);
}

static void wt_flush_done(void *opaque, long ret)
{
	struct breq *r = opaque;
	breq_finish(r, ret < 0 ? ret : (long)r->wt_ret);
}

static void breq_done(void *opaque, long ret)
{
	struct breq *r = opaque;
	struct kl_bnode *root = r->bd->root;
	/* Writethrough over a format with cached metadata (qcow2): the write
	 * is complete once its metadata is stable too, as QEMU does with the
	 * write cache disabled.  (raw on O_DSYNC needs no extra flush.) */
	if (ret >= 0 && root->in.writethrough && root->drv->meta_cache &&
	    (r->op == KL_BLK_WRITE || r->op == KL_BLK_WRITE_ZEROES || r->op == KL_BLK_DISCARD)) {
		r->wt_ret = ret;
		if (kl_bnode_flush(root, wt_flush_done, r) == 0)
			return;
		ret = -EIO;
	}
	breq_finish(r, ret);
}

static int dispatch(struct breq *r, const struct iovec *iov, int iovcnt)
{
	struct kl_bnode *root = r->bd->root;
	switch (r->op) {
	case KL_BLK_READ:
		return kl_bnode_preadv(root, r->offset, iov, iovcnt, breq_done, r);
	case KL_BLK_WRITE:
		return kl_bnode_pwritev(root, r->offset, iov, iovcnt, breq_done, r);
	case KL_BLK_FLUSH:
		return kl_bnode_flush(root, breq_done, r);
	case KL_BLK_DISCARD:
		return kl_bnode_discard(root, r->offset, r->len, breq_done, r);
	case KL_BLK_WRITE_ZEROES:
		return kl_bnode_write_zeroes(root, r->offset, r->len,
					     root->discard_unmap ? KL_BZ_MAY_UNMAP : 0, breq_done, r);
	}
	return -EINVAL;
}

int kl_blk_req_len(enum kl_blk_op op, kl_blk_cb cb, const struct iovec *iov, int iovcnt,
		   uint64_t *len)
{
	if (!cb || (unsigned)op > KL_BLK_WRITE_ZEROES)
		return -EINVAL;
	if (op != KL_BLK_READ && op != KL_BLK_WRITE)
		return 0;
	if (iovcnt < 0 || iovcnt > IOV_MAX || (iovcnt && !iov))
		return -EINVAL;
	uint64_t n = 0;
	for (int i = 0; i < iovcnt; i++) {
		if (iov[i].iov_len > (uint64_t)LONG_MAX - n)
			return -EINVAL;
		n += iov[i].iov_len;
	}
	*len = n;
	return 0;
}

/* Which limiter direction an op is accounted in (-1: not limited, as
 * QEMU: flush and discard pass). */
static int thr_dir(enum kl_blk_op op)
{
	return op == KL_BLK_READ ? KL_THR_READ
		: op == KL_BLK_WRITE || op == KL_BLK_WRITE_ZEROES ? KL_THR_WRITE : -1;
}

/* A request of dir (not quiesced) waits behind the limits: requests of
 * dir are queued, or the group does not let it go now. */
static bool thr_must_wait(struct kl_blockdev *bd, int dir)
{
	return dir >= 0 && bd->thr.group &&
	       (!g_queue_is_empty(&bd->thr_q[dir]) || !kl_thr_member_allow(&bd->thr, dir));
}

static void thr_account(struct kl_blockdev *bd, int dir, uint64_t len)
{
	if (dir >= 0 && bd->thr.group)
		kl_thr_member_account(&bd->thr, dir, len);
}

/* Dispatch a queued request (its iovec copy is freed here). */
static void dispatch_queued(struct breq *r)
{
	struct iovec *iov = r->iov;
	r->iov = NULL;
	if (dispatch(r, iov, r->iovcnt) < 0)
		kl_bnode_complete_later(breq_done, r, -EIO);
	g_free(iov);
}

/* The group's side: is one queued, start the first one. */
static bool thr_pending(void *opaque, enum kl_thr_dir dir)
{
	struct kl_blockdev *bd = opaque;
	return !bd->quiesce && !g_queue_is_empty(&bd->thr_q[dir]);
}

static void thr_run_one(void *opaque, enum kl_thr_dir dir)
{
	struct kl_blockdev *bd = opaque;
	struct breq *r = g_queue_pop_head(&bd->thr_q[dir]);
	thr_account(bd, dir, r->len);
	dispatch_queued(r);
}

static const struct kl_thr_member_ops thr_ops = { thr_pending, thr_run_one };

/* Start everything the limits hold back (drain, leaving a group); while
 * quiesced it joins the requests held for the quiesce end instead. */
static void thr_release(struct kl_blockdev *bd)
{
	for (int d = 0; d < KL_THR_NDIRS && bd->thr.group; d++)
		while (!g_queue_is_empty(&bd->thr_q[d])) {
			if (bd->quiesce)
				g_queue_push_tail(&bd->held, g_queue_pop_head(&bd->thr_q[d]));
			else
				thr_run_one(bd, d);
		}
}

int kl_blockdev_set_throttle(struct kl_blockdev *bd, const struct kl_throttle_config *cfg,
			     const char *group, char **err)
{
	if (kl_throttle_config_check(cfg, err) < 0)
		return -1;
	if (!kl_throttle_config_enabled(cfg)) {
		/* all zero: the backend leaves its group (QEMU's
		 * blk_io_limits_disable); the group keeps its limits */
		thr_release(bd);
		kl_thr_member_leave(&bd->thr);
		return 0;
	}
	if (bd->thr.group && group && strcmp(group, kl_thr_group_name(bd->thr.group))) {
		thr_release(bd);
		kl_thr_member_leave(&bd->thr);
	}
	if (!bd->thr.group) {
		if (!group || !*group) {
			*err = g_strdup("a throttle group name is needed");
			return -1;
		}
		struct kl_thr_group *g = kl_thr_group_get(group, NULL, NULL);
		kl_thr_member_join(&bd->thr, g, &thr_ops, bd);
		kl_thr_group_unref(g);   /* the member's reference keeps it */
	}
	/* the group's limits, for every member; what waits is retried */
	kl_thr_group_set_config(bd->thr.group, cfg);
	return 0;
}

const struct kl_throttle_config *kl_blockdev_throttle(const struct kl_blockdev *bd,
						      const char **group)
{
	if (!bd->thr.group)
		return NULL;
	if (group)
		*group = kl_thr_group_name(bd->thr.group);
	return kl_thr_group_config(bd->thr.group);
}

int kl_blk_submit(struct kl_blockdev *bd, enum kl_blk_op op, uint64_t offset,
		  const struct iovec *iov, int iovcnt, uint64_t len,
		  kl_blk_cb cb, void *opaque)
{
	if (!bd || kl_blk_req_len(op, cb, iov, iovcnt, &len) < 0)
		return -EINVAL;
	bool rw = op == KL_BLK_READ || op == KL_BLK_WRITE;
	struct breq *r = breq_get();
	r->bd = bd;
	r->op = op;
	r->offset = offset;
	r->len = len;
	r->cb = cb;
	r->opaque = opaque;
	r->start_ns = kl_clock_ns();
	bd->in_flight++;
	int dir = thr_dir(op);
	if (bd->quiesce || thr_must_wait(bd, dir)) {
		if (rw && iovcnt) {
			r->iov = g_memdup2(iov, (gsize)iovcnt * sizeof(*iov));
			r->iovcnt = iovcnt;
		}
		g_queue_push_tail(bd->quiesce ? &bd->held : &bd->thr_q[dir], r);
		return 0;
	}
	thr_account(bd, dir, len);
	int ret = dispatch(r, iov, iovcnt);
	if (ret < 0) {
		bd->in_flight--;
		breq_put(r);
	}
	return ret;
}

/* ---- quiesce / drain ---- */

void kl_blockdev_drain(struct kl_blockdev *bd)
{
	/* as QEMU's drain: requests held by the limits go now */
	thr_release(bd);
	kl_bnode_drain(bd->root);
	/* requests still counted are the held ones (quiesced) */
}

void kl_blockdev_quiesce_begin(struct kl_blockdev *bd)
{
	bd->quiesce++;
	kl_bnode_drain(bd->root);
}

void kl_blockdev_quiesce_end(struct kl_blockdev *bd)
{
	if (!bd->quiesce || --bd->quiesce)
		return;
	while (!g_queue_is_empty(&bd->held)) {
		struct breq *r = g_queue_pop_head(&bd->held);
		int dir = thr_dir(r->op);
		if (thr_must_wait(bd, dir)) {
			g_queue_push_tail(&bd->thr_q[dir], r);
			continue;
		}
		thr_account(bd, dir, r->len);
		dispatch_queued(r);
	}
	/* the group skipped this backend's queues while it was quiesced */
	if (bd->thr.group)
		kl_thr_group_kick(bd->thr.group);
}

int kl_blockdev_replace_root(struct kl_blockdev *bd, struct kl_bnode *root, char **err)
{
	if (!root) {
		*err = g_strdup("no node");
		return -1;
	}
	kl_blockdev_quiesce_begin(bd);
	kl_bnode_ref(root);
	struct kl_bnode *old = bd->root;
	bd->root = root;
	kl_bnode_unref(old);
	kl_blockdev_quiesce_end(bd);
	return 0;
}


unsigned kl_bnode_backends(struct kl_bnode *bs, struct kl_blockdev **out, unsigned max)
{
	unsigned n = 0;
	for (guint i = 0; backends && i < backends->len; i++) {
		struct kl_blockdev *b = g_ptr_array_index(backends, i);
		if (b->root != bs)
			continue;
		if (out && n < max)
			out[n] = b;
		n++;
	}
	return n;
}
