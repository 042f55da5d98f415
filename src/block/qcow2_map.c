/* qcow2 request paths: guest offset -> host cluster through L1/L2 (the L2
 * slice cache), reads (host, zero, backing, compressed, subclusters),
 * writes (direct pass-through to allocated clusters; allocation with
 * copy-on-write of head/tail otherwise), write-zeroes, discard, flush.
 *
 * A request touching a cluster whose allocation is in flight waits for it;
 * requests on other clusters run in parallel. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2.h"
#include "kvmlite/iov.h"

enum { OP_READ, OP_WRITE, OP_ZERO, OP_DISCARD };

struct qc_req {
	struct qcow2 *s;
	int op;
	uint64_t off, len;
	struct iovec *iov;
	int iovcnt;
	unsigned flags;
	kl_blk_cb cb;
	void *opaque;
	int pending;
	int ret;
	bool internal;
	bool counted;
	GArray *frees;       /* OP_ZERO/OP_DISCARD: struct qc_free after write-back */
};

struct qc_child {
	struct qc_req *r;
	struct iovec *iov;
	int iovcnt;
	uint8_t *cbuf;       /* compressed data */
	uint64_t clen, o, n, rpos;
	uint64_t host;       /* discard: cluster to free */
};

/* one cluster being allocated by a write */
struct qc_aop {
	struct qc_req *r;
	uint64_t ci, o, n, pos;
	uint64_t e, bmp;
	uint64_t host, rs, re;
	uint8_t *buf;
	bool realloc, fresh;
	bool extend;        /* past the end of the file: fallocate the cluster first */
	int pending, ret;
};

/* ---- L2 access ---- */

static bool table_ok(struct qcow2 *s, uint64_t off)
{
	if ((off & (s->cluster_size - 1)) || off < s->cluster_size || off >= QC_MAX_HOST_OFFSET)
		return false;
	if (off + s->cluster_size <= s->flen_cache)
		return true;
	s->flen_cache = qc_file_len(s);
	return off + s->cluster_size <= s->flen_cache;
}

int qc_l2t_get(struct qcow2 *s, uint64_t l2off, uint64_t idx, uint64_t *e, uint64_t *bmp)
{
	int r;
	uint64_t si = idx / s->slice_entries;
	struct qc_slice *sl = qc_cache_get(s, &s->l2c, l2off + si * s->slice_size, false, &r);
	if (!sl)
		return r;
	const uint8_t *p = sl->data + (idx % s->slice_entries) * s->l2e_size;
	*e = kl_get_be64(p);
	*bmp = s->ext_l2 ? kl_get_be64(p + 8) : 0;
	return 0;
}

int qc_l2t_set(struct qcow2 *s, uint64_t l2off, uint64_t idx, uint64_t e, uint64_t bmp)
{
	int r;
	uint64_t si = idx / s->slice_entries;
	struct qc_slice *sl = qc_cache_get(s, &s->l2c, l2off + si * s->slice_size, false, &r);
	if (!sl)
		return r;
	uint8_t *p = sl->data + (idx % s->slice_entries) * s->l2e_size;
	kl_put_be64(p, e);
	if (s->ext_l2)
		kl_put_be64(p + 8, bmp);
	qc_cache_dirty(&s->l2c, sl);
	return 0;
}

void qc_compressed_range(struct qcow2 *s, uint64_t e, uint64_t *off, uint64_t *len)
{
	unsigned x = 62 - (s->cluster_bits - 8);
	*off = e & ((1ull << x) - 1);
	uint64_t ns = (e >> x) & ((1ull << (62 - x)) - 1);
	*len = (ns + 1) * 512 - (*off & 511);
}

int qc_l2_get(struct qcow2 *s, uint64_t ci, uint64_t *e, uint64_t *bmp)
{
	uint64_t l1i = ci / s->l2_entries;
	*e = *bmp = 0;
	if (l1i >= s->l1_size)
		return 0;
	uint64_t l2off = s->l1[l1i] & QC_L1E_MASK;
	if (!l2off)
		return 0;
	if (!table_ok(s, l2off))
		return qc_mark_corrupt(s, "L2 table offset invalid");
	int r = qc_l2t_get(s, l2off, ci % s->l2_entries, e, bmp);
	if (r < 0)
		return r;
	if (*e & QC_OFLAG_COMPRESSED) {
		uint64_t co, cl;
		qc_compressed_range(s, *e, &co, &cl);
		if (co < s->cluster_size || co >= QC_MAX_HOST_OFFSET || (s->ext_l2 && *bmp))
			return qc_mark_corrupt(s, "compressed cluster descriptor invalid");
	} else {
		uint64_t h = *e & QC_L2E_MASK;
		if ((h & (s->cluster_size - 1)) || (h && h < s->cluster_size))
			return qc_mark_corrupt(s, "data cluster offset invalid");
		if (s->ext_l2 && !h && (*bmp & 0xffffffffu))
			return qc_mark_corrupt(s, "subclusters allocated without a host cluster");
		if (s->ext_l2 && ((*bmp & 0xffffffffu) & (*bmp >> 32)))
			return qc_mark_corrupt(s, "subcluster both allocated and zero");
	}
	return 0;
}

/* Make the L2 table of guest cluster ci writable: allocate it, or copy a
 * shared one (COPIED clear); refcounts, then the table, then L1. */
int qc_l2_prepare(struct qcow2 *s, uint64_t ci)
{
	uint64_t l1i = ci / s->l2_entries, cs = s->cluster_size;
	if (l1i >= s->l1_size)
		return -EIO;
	uint64_t l1e = s->l1[l1i], old = l1e & QC_L1E_MASK;
	if (old && (l1e & QC_OFLAG_COPIED))
		return table_ok(s, old) ? 0 : qc_mark_corrupt(s, "L2 table offset invalid");
	if (old && !table_ok(s, old))
		return qc_mark_corrupt(s, "L2 table offset invalid");
	int64_t n = qc_alloc(s, 1);
	if (n < 0)
		return (int)n;
	uint8_t *buf = g_malloc0(cs);
	int r = 0;
	for (uint64_t k = 0; old && k < cs / s->slice_size && r >= 0; k++) {
		struct qc_slice *sl = qc_cache_get(s, &s->l2c, old + k * s->slice_size, false, &r);
		if (sl)
			memcpy(buf + k * s->slice_size, sl->data, s->slice_size);
	}
	qc_cache_drop(&s->l2c, (uint64_t)n, cs);
	if (r >= 0)
		r = qc_rc_flush(s);
	if (r >= 0)
		r = kl_bnode_flush_sync(s->bs->file);
	if (r >= 0)
		r = kl_bnode_pwrite_sync(s->bs->file, (uint64_t)n, buf, cs);
	if (r >= 0)
		r = kl_bnode_flush_sync(s->bs->file);
	g_free(buf);
	if (r < 0) {
		qc_free_now(s, (uint64_t)n, cs);
		return r;
	}
	s->l1[l1i] = (uint64_t)n | QC_OFLAG_COPIED;
	r = qc_write_l1_entry(s, (uint32_t)l1i);
	if (r < 0)
		return r;
	if (old)
		qc_free_later(s, old, cs);
	return 0;
}

int qc_l2_set(struct qcow2 *s, uint64_t ci, uint64_t e, uint64_t bmp)
{
	int r = qc_l2_prepare(s, ci);
	if (r < 0)
		return r;
	return qc_l2t_set(s, s->l1[ci / s->l2_entries] & QC_L1E_MASK, ci % s->l2_entries, e, bmp);
}

/* ---- requests ---- */

static struct qc_req *req_new(struct qcow2 *s, int op, uint64_t off, uint64_t len,
			      const struct iovec *iov, int iovcnt, kl_blk_cb cb, void *opaque)
{
	struct qc_req *r = g_new0(struct qc_req, 1);
	r->s = s;
	r->op = op;
	r->off = off;
	r->len = len;
	if (iovcnt) {
		r->iov = g_memdup2(iov, sizeof(*iov) * (size_t)iovcnt);
		r->iovcnt = iovcnt;
	}
	r->cb = cb;
	r->opaque = opaque;
	r->pending = 1;
	return r;
}

static void req_finish(struct qc_req *r, bool later)
{
	long ret = r->ret < 0 ? r->ret : (r->op == OP_READ || r->op == OP_WRITE ? (long)r->len : 0);
	kl_blk_cb cb = r->cb;
	void *opaque = r->opaque;
	if (r->counted)
		r->s->bs->in_flight--;
	if (r->frees)
		g_array_free(r->frees, true);
	g_free(r->iov);
	g_free(r);
	if (later)
		kl_bnode_complete_later(cb, opaque, ret);
	else
		cb(opaque, ret);
}

static void req_put(struct qc_req *r, long ret)
{
	if (ret < 0 && r->ret >= 0)
		r->ret = (int)ret;
	if (--r->pending == 0)
		req_finish(r, false);
}

/* the submitter's reference: completion never runs inside the call */
static void req_put_submit(struct qc_req *r)
{
	if (--r->pending == 0)
		req_finish(r, true);
}

static void child_done(void *opaque, long ret)
{
	struct qc_child *c = opaque;
	struct qc_req *r = c->r;
	if (ret >= 0 && c->cbuf) {
		uint8_t *d = g_malloc(r->s->cluster_size);
		if (qc_decompress(r->s->compression_type, c->cbuf, c->clen, d,
				  r->s->cluster_size) < 0)
			ret = -EIO;
		else
			kl_iov_from_buf(r->iov, (unsigned)r->iovcnt, c->rpos, d + c->o, c->n);
		g_free(d);
	}
	g_free(c->cbuf);
	g_free(c->iov);
	g_free(c);
	req_put(r, ret < 0 ? ret : 0);
}

enum { SEG_NONE, SEG_HOST, SEG_BACKING, SEG_ZERO };

struct seg {
	int kind;
	uint64_t pos, len, addr;
};

static void issue_child(struct qc_req *r, struct kl_bnode *target, uint64_t addr, uint64_t pos,
			uint64_t len, bool write)
{
	struct qc_child *c = g_new0(struct qc_child, 1);
	c->r = r;
	/* a range of the request: it fits in as many entries as the request */
	c->iov = g_new(struct iovec, r->iovcnt ? r->iovcnt : 1);
	c->iovcnt = kl_iov_slice(r->iov, (unsigned)r->iovcnt, pos, len, c->iov,
				 (unsigned)r->iovcnt);
	r->pending++;
	if (c->iovcnt < 0) {
		g_free(c->iov);
		g_free(c);
		req_put(r, -EIO);
		return;
	}
	int ret = write ? kl_bnode_pwritev(target, addr, c->iov, c->iovcnt, child_done, c)
			: kl_bnode_preadv(target, addr, c->iov, c->iovcnt, child_done, c);
	if (ret < 0) {
		g_free(c->iov);
		g_free(c);
		req_put(r, ret);
	}
}

static void seg_issue(struct qc_req *r, struct seg *sg)
{
	struct qcow2 *s = r->s;
	struct kl_bnode *bs = s->bs;
	if (sg->kind == SEG_HOST) {
		issue_child(r, bs->file, sg->addr, sg->pos, sg->len, r->op == OP_WRITE);
	} else if (sg->kind == SEG_ZERO) {
		kl_iov_memset(r->iov, (unsigned)r->iovcnt, sg->pos, 0, sg->len);
	} else if (sg->kind == SEG_BACKING) {
		uint64_t in = 0;
		if (bs->backing && sg->addr < bs->backing->size) {
			in = bs->backing->size - sg->addr;
			if (in > sg->len)
				in = sg->len;
			issue_child(r, bs->backing, sg->addr, sg->pos, in, false);
		}
		if (in < sg->len)
			kl_iov_memset(r->iov, (unsigned)r->iovcnt, sg->pos + in, 0, sg->len - in);
	}
	sg->kind = SEG_NONE;
}

static void seg_add(struct qc_req *r, struct seg *sg, int kind, uint64_t pos, uint64_t len,
		    uint64_t addr)
{
	if (sg->kind == kind && sg->pos + sg->len == pos &&
	    (kind != SEG_HOST || sg->addr + sg->len == addr) && sg->len < (1u << 30)) {
		sg->len += len;
		return;
	}
	if (sg->kind != SEG_NONE)
		seg_issue(r, sg);
	sg->kind = kind;
	sg->pos = pos;
	sg->len = len;
	sg->addr = addr;
}

static int read_compressed(struct qc_req *r, uint64_t e, uint64_t o, uint64_t n, uint64_t pos)
{
	struct qcow2 *s = r->s;
	struct qc_child *c = g_new0(struct qc_child, 1);
	uint64_t co;
	qc_compressed_range(s, e, &co, &c->clen);
	if (c->clen > 2 * s->cluster_size + 512) {
		g_free(c);
		return qc_mark_corrupt(s, "compressed cluster too large");
	}
	c->r = r;
	c->o = o;
	c->n = n;
	c->rpos = pos;
	c->cbuf = g_malloc(c->clen);
	c->iov = g_new(struct iovec, 1);
	c->iov->iov_base = c->cbuf;
	c->iov->iov_len = c->clen;
	c->iovcnt = 1;
	r->pending++;
	int ret = kl_bnode_preadv(s->bs->file, co, c->iov, 1, child_done, c);
	if (ret < 0) {
		g_free(c->cbuf);
		g_free(c->iov);
		g_free(c);
		r->pending--;
		return ret;
	}
	return 0;
}

static void read_submit(struct qc_req *r)
{
	struct qcow2 *s = r->s;
	uint64_t cs = s->cluster_size, pos = 0;
	struct seg sg = { SEG_NONE, 0, 0, 0 };
	int ret = 0;
	while (pos < r->len) {
		uint64_t g = r->off + pos;
		if (g >= s->size) {
			seg_add(r, &sg, SEG_ZERO, pos, r->len - pos, 0);
			break;
		}
		uint64_t ci = g / cs, o = g % cs, n = cs - o, e, bmp;
		if (n > r->len - pos)
			n = r->len - pos;
		if (n > s->size - g)
			n = s->size - g;
		if ((ret = qc_l2_get(s, ci, &e, &bmp)) < 0)
			break;
		uint64_t h = e & QC_L2E_MASK;
		if (e & QC_OFLAG_COMPRESSED) {
			if (sg.kind != SEG_NONE)
				seg_issue(r, &sg);
			if ((ret = read_compressed(r, e, o, n, pos)) < 0)
				break;
		} else if (s->ext_l2) {
			for (uint64_t p = o; p < o + n;) {
				uint64_t sc = p / s->sc_size, end = (sc + 1) * s->sc_size;
				if (end > o + n)
					end = o + n;
				if (bmp & (1ull << sc))
					seg_add(r, &sg, SEG_HOST, pos + p - o, end - p, h + p);
				else if (bmp & (1ull << (32 + sc)))
					seg_add(r, &sg, SEG_ZERO, pos + p - o, end - p, 0);
				else
					seg_add(r, &sg, SEG_BACKING, pos + p - o, end - p, ci * cs + p);
				p = end;
			}
		} else if (s->version >= 3 && (e & QC_OFLAG_ZERO)) {
			seg_add(r, &sg, SEG_ZERO, pos, n, 0);
		} else if (h) {
			seg_add(r, &sg, SEG_HOST, pos, n, h + o);
		} else {
			seg_add(r, &sg, SEG_BACKING, pos, n, g);
		}
		pos += n;
	}
	if (ret >= 0 && sg.kind != SEG_NONE)
		seg_issue(r, &sg);
	if (ret < 0 && r->ret >= 0)
		r->ret = ret;
	req_put_submit(r);
}

static void read_internal(struct qcow2 *s, uint64_t off, uint8_t *buf, uint64_t len,
			  kl_blk_cb cb, void *opaque)
{
	struct iovec v = { buf, len };
	struct qc_req *r = req_new(s, OP_READ, off, len, &v, 1, cb, opaque);
	r->internal = true;
	read_submit(r);
}

/* ---- in-flight allocations ---- */

static bool overlaps_inflight(struct qcow2 *s, uint64_t off, uint64_t len)
{
	if (!s->inflight || !len)
		return false;
	uint64_t a = off / s->cluster_size, b = (off + len - 1) / s->cluster_size;
	for (struct qc_inflight *f = s->inflight; f; f = f->next)
		if (f->ci >= a && f->ci <= b)
			return true;
	return false;
}

static void submit(struct qc_req *r);

static void inflight_remove(struct qcow2 *s, uint64_t ci)
{
	for (struct qc_inflight **p = &s->inflight; *p; p = &(*p)->next)
		if ((*p)->ci == ci) {
			struct qc_inflight *f = *p;
			*p = f->next;
			g_free(f);
			break;
		}
	/* restart the waiters that are free to go, in order */
	GQueue q = s->waiters;
	g_queue_init(&s->waiters);
	struct qc_req *w;
	while ((w = g_queue_pop_head(&q))) {
		if (overlaps_inflight(s, w->off, w->len))
			g_queue_push_tail(&s->waiters, w);
		else
			submit(w);
	}
}

/* ---- writes ---- */

static void aop_end(struct qc_aop *a, int ret)
{
	struct qcow2 *s = a->r->s;
	if (ret < 0 && a->fresh)
		qc_free_now(s, a->host, s->cluster_size);
	struct qc_req *r = a->r;
	uint64_t ci = a->ci;
	g_free(a->buf);
	g_free(a);
	inflight_remove(s, ci);
	req_put(r, ret);
}

static void aop_written(void *opaque, long ret)
{
	struct qc_aop *a = opaque;
	struct qcow2 *s = a->r->s;
	if (ret < 0) {
		aop_end(a, (int)ret);
		return;
	}
	uint64_t ne = a->host | QC_OFLAG_COPIED, nb = 0;
	if (s->ext_l2) {
		uint64_t first = a->rs / s->sc_size, last = a->re / s->sc_size;
		uint64_t m = (last - first >= 32 ? 0xffffffffull
						 : ((1ull << (last - first)) - 1) << first);
		uint64_t old = 0, ce;
		/* the current bitmap: other runs of this request may have landed */
		if (!a->realloc && !(a->e & QC_OFLAG_COMPRESSED) &&
		    qc_l2_get(s, a->ci, &ce, &old) < 0) {
			aop_end(a, -EIO);
			return;
		}
		nb = (old | m) & ~(m << 32);
		if (a->realloc)
			nb = 0xffffffffull;
	}
	int r = qc_l2_set(s, a->ci, ne, nb);
	if (r >= 0 && a->realloc) {
		if (a->e & QC_OFLAG_COMPRESSED) {
			uint64_t co, cl;
			qc_compressed_range(s, a->e, &co, &cl);
			qc_free_later(s, co, cl);
		} else {
			qc_free_later(s, a->e & QC_L2E_MASK, s->cluster_size);
		}
	}
	a->fresh = a->fresh && r < 0;
	aop_end(a, r);
}

static void aop_extended(void *opaque, long ret);

static void aop_put(struct qc_aop *a, int ret)
{
	if (ret < 0 && a->ret >= 0)
		a->ret = ret;
	if (--a->pending)
		return;
	if (a->ret < 0) {
		aop_end(a, a->ret);
		return;
	}
	if (a->extend) {
		/* Extend the file by the whole cluster (a metadata operation),
		 * so that the data write below does not change the file's size:
		 * size-changing O_DIRECT writes are serialised by the kernel. */
		a->extend = false;
		int r = kl_bnode_write_zeroes(a->r->s->bs->file, a->host, a->r->s->cluster_size, 0,
					      aop_extended, a);
		if (r < 0)
			aop_end(a, r);
		return;
	}
	struct iovec v = { a->buf, a->re - a->rs };
	int r = kl_bnode_pwritev(a->r->s->bs->file, a->host + a->rs, &v, 1, aop_written, a);
	if (r < 0)
		aop_end(a, r);
}

static void aop_extended(void *opaque, long ret)
{
	struct qc_aop *a = opaque;
	a->pending++;
	aop_put(a, ret < 0 ? (int)ret : 0);
}

static void aop_cow_done(void *opaque, long ret)
{
	aop_put(opaque, ret < 0 ? (int)ret : 0);
}

static int start_alloc(struct qc_req *r, uint64_t ci, uint64_t o, uint64_t n, uint64_t pos,
		       uint64_t e, uint64_t bmp)
{
	struct qcow2 *s = r->s;
	uint64_t cs = s->cluster_size;
	bool comp = e & QC_OFLAG_COMPRESSED;
	uint64_t old = comp ? 0 : e & QC_L2E_MASK;
	bool reuse = old && (e & QC_OFLAG_COPIED);
	int ret = qc_l2_prepare(s, ci);
	if (ret < 0)
		return ret;
	struct qc_aop *a = g_new0(struct qc_aop, 1);
	a->r = r;
	a->ci = ci;
	a->o = o;
	a->n = n;
	a->pos = pos;
	a->e = e;
	a->bmp = bmp;
	a->realloc = !reuse && (comp || old);
	if (s->ext_l2 && !a->realloc) {
		a->rs = o / s->sc_size * s->sc_size;
		a->re = (o + n + s->sc_size - 1) / s->sc_size * s->sc_size;
	} else {
		a->rs = 0;
		a->re = cs;
	}
	if (reuse) {
		a->host = old;
	} else {
		uint64_t flen = kl_bnode_file_length(s->bs->file);
		int64_t h = qc_alloc(s, 1);
		if (h < 0) {
			g_free(a);
			return (int)h;
		}
		a->host = (uint64_t)h;
		a->fresh = true;
		/* A new cluster past the end of the file reads as zeroes already:
		 * when the old content is zeroes too (unallocated or zero, no
		 * backing file), only the guest's bytes need writing, not a
		 * cluster of copied zeroes (QEMU avoids the same COW). */
		if (!s->ext_l2 && !a->realloc && !s->bs->backing && (uint64_t)h >= flen) {
			a->rs = o;
			a->re = o + n;
			a->extend = a->re - a->rs < cs;
		}
	}
	struct qc_inflight *f = g_new0(struct qc_inflight, 1);
	f->ci = ci;
	f->next = s->inflight;
	s->inflight = f;
	a->buf = g_malloc(a->re - a->rs);
	kl_iov_to_buf(r->iov, (unsigned)r->iovcnt, pos, a->buf + (o - a->rs), n);
	r->pending++;
	a->pending = 1;
	if (o > a->rs) {
		a->pending++;
		read_internal(s, ci * cs + a->rs, a->buf, o - a->rs, aop_cow_done, a);
	}
	if (o + n < a->re) {
		a->pending++;
		read_internal(s, ci * cs + o + n, a->buf + (o + n - a->rs), a->re - (o + n),
			      aop_cow_done, a);
	}
	aop_put(a, 0);
	return 0;
}

static void write_submit(struct qc_req *r)
{
	struct qcow2 *s = r->s;
	uint64_t cs = s->cluster_size, pos = 0;
	struct seg sg = { SEG_NONE, 0, 0, 0 };
	int ret = s->corrupt ? -EIO : 0;
	while (ret >= 0 && pos < r->len) {
		uint64_t g = r->off + pos;
		uint64_t ci = g / cs, o = g % cs, n = cs - o, e, bmp;
		if (n > r->len - pos)
			n = r->len - pos;
		if ((ret = qc_l2_get(s, ci, &e, &bmp)) < 0)
			break;
		uint64_t h = e & QC_L2E_MASK;
		bool direct = !(e & QC_OFLAG_COMPRESSED) && (e & QC_OFLAG_COPIED) && h;
		if (direct && s->ext_l2) {
			uint64_t first = o / s->sc_size, last = (o + n - 1) / s->sc_size;
			uint64_t m = ((1ull << (last - first + 1)) - 1) << first;
			direct = (bmp & m) == m;
		} else if (direct && s->version >= 3 && (e & QC_OFLAG_ZERO)) {
			direct = false;
		}
		if (direct) {
			seg_add(r, &sg, SEG_HOST, pos, n, h + o);
		} else if (s->ext_l2 && h && (e & QC_OFLAG_COPIED) && !(e & QC_OFLAG_COMPRESSED)) {
			/* allocated subclusters are written in place (never through a
			 * COW buffer: a direct write may be in flight there); each run
			 * of unallocated ones is allocated on its own */
			for (uint64_t p = o; p < o + n && ret >= 0;) {
				uint64_t sc = p / s->sc_size, q = p;
				bool al = bmp & (1ull << sc);
				while (q < o + n && !!(bmp & (1ull << (q / s->sc_size))) == al)
					q = (q / s->sc_size + 1) * s->sc_size;
				if (q > o + n)
					q = o + n;
				if (al) {
					seg_add(r, &sg, SEG_HOST, pos + p - o, q - p, h + p);
				} else {
					if (sg.kind != SEG_NONE)
						seg_issue(r, &sg);
					ret = start_alloc(r, ci, p, q - p, pos + p - o, e, bmp);
				}
				p = q;
			}
		} else {
			if (sg.kind != SEG_NONE)
				seg_issue(r, &sg);
			ret = start_alloc(r, ci, o, n, pos, e, bmp);
		}
		pos += n;
	}
	if (sg.kind != SEG_NONE)
		seg_issue(r, &sg);
	if (ret < 0 && r->ret >= 0)
		r->ret = ret;
	req_put_submit(r);
}

/* ---- write-zeroes / discard ---- */

static void zd_child_done(void *opaque, long ret)
{
	req_put(opaque, ret < 0 ? ret : 0);
}

static void zd_write_zeroes(struct qc_req *r, uint64_t g, uint64_t n)
{
	struct qcow2 *s = r->s;
	struct iovec v = { s->zbuf, n };
	struct qc_req *w = req_new(s, OP_WRITE, g, n, &v, 1, zd_child_done, r);
	w->internal = true;
	r->pending++;
	/* a sibling piece may be allocating the same cluster */
	if (overlaps_inflight(s, g, n))
		g_queue_push_tail(&s->waiters, w);
	else
		write_submit(w);
}

static void discard_done(void *opaque, long ret)
{
	struct qc_child *c = opaque;
	struct qc_req *r = c->r;
	(void)ret; /* the file's discard is advisory */
	int e = qc_free_now(r->s, c->host, r->s->cluster_size);
	g_free(c);
	req_put(r, e);
}

static int zd_cluster(struct qc_req *r, uint64_t ci, bool *changed)
{
	struct qcow2 *s = r->s;
	uint64_t e, bmp, ne, nb = 0;
	int ret = qc_l2_get(s, ci, &e, &bmp);
	if (ret < 0)
		return ret;
	bool comp = e & QC_OFLAG_COMPRESSED;
	uint64_t h = comp ? 0 : e & QC_L2E_MASK;
	bool unmap = r->op == OP_DISCARD || (r->flags & KL_BZ_MAY_UNMAP);
	bool keep = !unmap && h && (e & QC_OFLAG_COPIED);
	if (s->version < 3) {
		if (s->bs->backing) {
			if (r->op == OP_ZERO)
				zd_write_zeroes(r, ci * s->cluster_size, s->cluster_size);
			return 0;
		}
		if (!e)
			return 0;
		if (!unmap) {
			zd_write_zeroes(r, ci * s->cluster_size, s->cluster_size);
			return 0;
		}
		ne = 0;
	} else if (s->ext_l2) {
		ne = keep ? h | QC_OFLAG_COPIED : 0;
		nb = 0xffffffffull << 32;
	} else {
		ne = keep ? h | QC_OFLAG_COPIED | QC_OFLAG_ZERO : QC_OFLAG_ZERO;
	}
	if (ne == e && nb == bmp)
		return 0;
	if (!e && !bmp && !s->bs->backing)
		return 0; /* unallocated without a backing file reads as zeroes already */
	if ((ret = qc_l2_set(s, ci, ne, nb)) < 0)
		return ret;
	*changed = true;
	if (comp) {
		struct qc_free f;
		qc_compressed_range(s, e, &f.off, &f.len);
		f.len |= 1ull << 63; /* no discard */
		g_array_append_val(r->frees, f);
	} else if (h && !keep) {
		struct qc_free f = { h, s->cluster_size };
		g_array_append_val(r->frees, f);
	}
	return 0;
}

/* Part of a cluster with subclusters: whole subclusters get the zero bit
 * (if the cluster is not shared or compressed), the rest zero data. */
static int zd_subclusters(struct qc_req *r, uint64_t ci, uint64_t o, uint64_t n, bool *changed)
{
	struct qcow2 *s = r->s;
	uint64_t sc = s->sc_size, e, bmp, g = ci * s->cluster_size;
	uint64_t a = (o + sc - 1) / sc, b = (o + n) / sc; /* whole subclusters [a, b) */
	int ret = qc_l2_get(s, ci, &e, &bmp);
	if (ret < 0)
		return ret;
	uint64_t h = e & QC_L2E_MASK;
	bool ok = !(e & QC_OFLAG_COMPRESSED) && (!h || (e & QC_OFLAG_COPIED));
	if (a >= b || !ok) {
		zd_write_zeroes(r, g + o, n);
		return 0;
	}
	uint64_t m = ((1ull << (b - a)) - 1) << a;
	uint64_t nb = (bmp & ~m) | (m << 32);
	if (nb != bmp) {
		if ((ret = qc_l2_set(s, ci, e, nb)) < 0)
			return ret;
		*changed = true;
	}
	if (o < a * sc)
		zd_write_zeroes(r, g + o, a * sc - o);
	if (b * sc < o + n)
		zd_write_zeroes(r, g + b * sc, o + n - b * sc);
	return 0;
}

static void zd_submit(struct qc_req *r)
{
	struct qcow2 *s = r->s;
	uint64_t cs = s->cluster_size, pos = 0;
	bool changed = false;
	int ret = s->corrupt ? -EIO : 0;
	r->frees = g_array_new(false, false, sizeof(struct qc_free));
	while (ret >= 0 && pos < r->len) {
		uint64_t g = r->off + pos;
		uint64_t ci = g / cs, o = g % cs, n = cs - o;
		if (n > r->len - pos)
			n = r->len - pos;
		bool full = o == 0 && (n == cs || g + n >= s->size);
		if (full)
			ret = zd_cluster(r, ci, &changed);
		else if (r->op == OP_ZERO && s->ext_l2)
			ret = zd_subclusters(r, ci, o, n, &changed);
		else if (r->op == OP_ZERO)
			zd_write_zeroes(r, g, n);
		pos += n;
	}
	if (ret >= 0 && changed)
		ret = qc_writeback(s);
	for (unsigned i = 0; ret >= 0 && i < r->frees->len; i++) {
		struct qc_free *f = &g_array_index(r->frees, struct qc_free, i);
		bool nodisc = f->len >> 63;
		uint64_t len = f->len & ~(1ull << 63), rc;
		if (!nodisc && (ret = qc_rc_get(s, f->off / cs, &rc)) >= 0 && rc == 1) {
			struct qc_child *c = g_new0(struct qc_child, 1);
			c->r = r;
			c->host = f->off;
			r->pending++;
			if (kl_bnode_discard(s->bs->file, f->off, len, discard_done, c) >= 0)
				continue;
			r->pending--;
			g_free(c);
		}
		if (ret >= 0)
			ret = qc_free_now(s, f->off, len);
	}
	if (ret < 0 && r->ret >= 0)
		r->ret = ret;
	req_put_submit(r);
}

/* ---- entry points ---- */

static void submit(struct qc_req *r)
{
	switch (r->op) {
	case OP_READ: read_submit(r); break;
	case OP_WRITE: write_submit(r); break;
	default: zd_submit(r); break;
	}
}

static int start(struct qcow2 *s, struct qc_req *r)
{
	r->counted = true;
	s->bs->in_flight++;
	if (overlaps_inflight(s, r->off, r->len))
		g_queue_push_tail(&s->waiters, r);
	else
		submit(r);
	return 0;
}

int qc_preadv(struct kl_bnode *bs, uint64_t off, const struct iovec *iov, int iovcnt,
	      uint64_t len, kl_blk_cb cb, void *opaque)
{
	struct qcow2 *s = bs->opaque;
	return start(s, req_new(s, OP_READ, off, len, iov, iovcnt, cb, opaque));
}

int qc_pwritev(struct kl_bnode *bs, uint64_t off, const struct iovec *iov, int iovcnt,
	       uint64_t len, kl_blk_cb cb, void *opaque)
{
	struct qcow2 *s = bs->opaque;
	return start(s, req_new(s, OP_WRITE, off, len, iov, iovcnt, cb, opaque));
}

int qc_write_zeroes(struct kl_bnode *bs, uint64_t off, uint64_t len, unsigned flags,
		    kl_blk_cb cb, void *opaque)
{
	struct qcow2 *s = bs->opaque;
	struct qc_req *r = req_new(s, OP_ZERO, off, len, NULL, 0, cb, opaque);
	r->flags = flags;
	return start(s, r);
}

int qc_discard(struct kl_bnode *bs, uint64_t off, uint64_t len, kl_blk_cb cb, void *opaque)
{
	struct qcow2 *s = bs->opaque;
	if (!bs->discard_unmap) {
		/* discard=ignore (as QEMU: the request is dropped) */
		kl_bnode_complete_later(cb, opaque, 0);
		return 0;
	}
	return start(s, req_new(s, OP_DISCARD, off, len, NULL, 0, cb, opaque));
}

int qc_flush(struct kl_bnode *bs, kl_blk_cb cb, void *opaque)
{
	struct qcow2 *s = bs->opaque;
	int r = s->corrupt ? -EIO : qc_writeback(s);
	if (r < 0) {
		kl_bnode_complete_later(cb, opaque, r);
		return 0;
	}
	return kl_bnode_flush(bs->file, cb, opaque);
}
