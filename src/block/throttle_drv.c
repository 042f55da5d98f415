/* Filter driver "throttle" (QEMU's block/throttle.c): every request to the
 * node passes through the limits of a throttle group (-object
 * throttle-group,id=G) on its way to the `file` child:
 *   -blockdev '{"driver":"throttle","node-name":"t0","throttle-group":"G",
 *               "file":"base"}'
 * Reads are accounted as reads; writes, write-zeroes and discards as
 * writes (as QEMU's filter); flushes pass.  Requests over the limits wait
 * in this node's queues, in order, for the group's turn (group.c); a
 * drain (kl_bnode_drain) starts them at once. */
#include "node.h"

#include <errno.h>
#include <glib.h>
#include <string.h>

#include "kvmlite/throttle.h"

enum treq_op { T_READ, T_WRITE, T_ZEROES, T_DISCARD };

struct treq {
	enum treq_op op;
	uint64_t off, len;
	unsigned flags;
	struct iovec *iov;      /* a copy */
	int iovcnt;
	kl_blk_cb cb;
	void *opaque;
};

struct tnode {
	struct kl_bnode *bs;
	struct kl_thr_member m;
	GQueue q[KL_THR_NDIRS];
};

static int pass(struct kl_bnode *bs, enum treq_op op, uint64_t off, uint64_t len, unsigned flags,
		const struct iovec *iov, int iovcnt, kl_blk_cb cb, void *opaque)
{
	switch (op) {
	case T_READ:
		return kl_bnode_preadv(bs->file, off, iov, iovcnt, cb, opaque);
	case T_WRITE:
		return kl_bnode_pwritev(bs->file, off, iov, iovcnt, cb, opaque);
	case T_ZEROES:
		return kl_bnode_write_zeroes(bs->file, off, len, flags, cb, opaque);
	case T_DISCARD:
		return kl_bnode_discard(bs->file, off, len, cb, opaque);
	}
	return -EINVAL;
}

static bool t_pending(void *opaque, enum kl_thr_dir dir)
{
	struct tnode *t = opaque;
	return !g_queue_is_empty(&t->q[dir]);
}

static void t_run_one(void *opaque, enum kl_thr_dir dir)
{
	struct tnode *t = opaque;
	struct treq *r = g_queue_pop_head(&t->q[dir]);
	kl_thr_member_account(&t->m, dir, r->len);
	if (pass(t->bs, r->op, r->off, r->len, r->flags, r->iov, r->iovcnt, r->cb, r->opaque) < 0)
		kl_bnode_complete_later(r->cb, r->opaque, -EIO);
	g_free(r->iov);
	g_free(r);
}

static const struct kl_thr_member_ops t_ops = { t_pending, t_run_one };

static int submit(struct kl_bnode *bs, enum treq_op op, uint64_t off, uint64_t len,
		  unsigned flags, const struct iovec *iov, int iovcnt, kl_blk_cb cb, void *opaque)
{
	struct tnode *t = bs->opaque;
	enum kl_thr_dir dir = op == T_READ ? KL_THR_READ : KL_THR_WRITE;
	if (g_queue_is_empty(&t->q[dir]) && kl_thr_member_allow(&t->m, dir)) {
		kl_thr_member_account(&t->m, dir, len);
		return pass(bs, op, off, len, flags, iov, iovcnt, cb, opaque);
	}
	struct treq *r = g_new0(struct treq, 1);
	*r = (struct treq){ op, off, len, flags, NULL, iovcnt, cb, opaque };
	if (iovcnt)
		r->iov = g_memdup2(iov, (gsize)iovcnt * sizeof(*iov));
	g_queue_push_tail(&t->q[dir], r);
	return 0;
}

static int t_open(struct kl_bnode *bs, struct kl_opts *o, const struct kl_bnode_inherit *in,
		  char **err)
{
	(void)in;
	const char *name = kl_opts_get(o, "throttle-group");
	if (!name) {
		*err = g_strdup("Please specify a throttle group");
		return -1;
	}
	struct kl_thr_group *g = kl_thr_group_find(name);
	if (!g) {
		*err = g_strdup_printf("Throttle group '%s' does not exist", name);
		return -1;
	}
	struct tnode *t = g_new0(struct tnode, 1);
	t->bs = bs;
	g_queue_init(&t->q[KL_THR_READ]);
	g_queue_init(&t->q[KL_THR_WRITE]);
	kl_thr_member_join(&t->m, g, &t_ops, t);
	bs->size = bs->file->size;
	bs->opaque = t;
	return 0;
}

/* A drain lifts the limits for what waits (as QEMU's throttle filter). */
static void t_drain(struct kl_bnode *bs)
{
	struct tnode *t = bs->opaque;
	for (int d = 0; t && d < KL_THR_NDIRS; d++)
		while (!g_queue_is_empty(&t->q[d]))
			t_run_one(t, d);
}

static void t_close(struct kl_bnode *bs)
{
	struct tnode *t = bs->opaque;
	if (!t)
		return;
	t_drain(bs);   /* drained by node.c already: nothing should wait */
	kl_thr_member_leave(&t->m);
	g_free(t);
	bs->opaque = NULL;
}

static int t_preadv(struct kl_bnode *bs, uint64_t off, const struct iovec *iov, int iovcnt,
		    uint64_t len, kl_blk_cb cb, void *opaque)
{
	return submit(bs, T_READ, off, len, 0, iov, iovcnt, cb, opaque);
}

static int t_pwritev(struct kl_bnode *bs, uint64_t off, const struct iovec *iov, int iovcnt,
		     uint64_t len, kl_blk_cb cb, void *opaque)
{
	return submit(bs, T_WRITE, off, len, 0, iov, iovcnt, cb, opaque);
}

static int t_flush(struct kl_bnode *bs, kl_blk_cb cb, void *opaque)
{
	return kl_bnode_flush(bs->file, cb, opaque);
}

static int t_discard(struct kl_bnode *bs, uint64_t off, uint64_t len, kl_blk_cb cb, void *opaque)
{
	return submit(bs, T_DISCARD, off, len, 0, NULL, 0, cb, opaque);
}

static int t_write_zeroes(struct kl_bnode *bs, uint64_t off, uint64_t len, unsigned flags,
			  kl_blk_cb cb, void *opaque)
{
	return submit(bs, T_ZEROES, off, len, flags, NULL, 0, cb, opaque);
}

const struct kl_bdrv kl_bdrv_throttle = {
	.name = "throttle",
	.open = t_open,
	.close = t_close,
	.drain = t_drain,
	.preadv = t_preadv,
	.pwritev = t_pwritev,
	.flush = t_flush,
	.discard = t_discard,
	.write_zeroes = t_write_zeroes,
};
