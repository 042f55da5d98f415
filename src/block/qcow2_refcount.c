/* qcow2 refcounts: lookups and updates through the refcount-block cache,
 * cluster allocation, refcount table growth, ordered write-back and the
 * rebuild of a dirty (lazy refcounts) image. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2.h"

uint64_t qc_rb_get(struct qcow2 *s, const uint8_t *d, uint64_t i)
{
	unsigned b = s->rc_bits;
	switch (b) {
	case 8: return d[i];
	case 16: return kl_get_be16(d + 2 * i);
	case 32: return kl_get_be32(d + 4 * i);
	case 64: return kl_get_be64(d + 8 * i);
	default: {
		uint64_t bit = i * b;
		return (uint64_t)(d[bit / 8] >> (bit % 8)) & ((1u << b) - 1);
	}
	}
}

void qc_rb_set(struct qcow2 *s, uint8_t *d, uint64_t i, uint64_t v)
{
	unsigned b = s->rc_bits;
	switch (b) {
	case 8: d[i] = (uint8_t)v; break;
	case 16: kl_put_be16(d + 2 * i, (uint16_t)v); break;
	case 32: kl_put_be32(d + 4 * i, (uint32_t)v); break;
	case 64: kl_put_be64(d + 8 * i, v); break;
	default: {
		uint64_t bit = i * b;
		uint8_t m = (uint8_t)(((1u << b) - 1) << (bit % 8));
		d[bit / 8] = (uint8_t)((d[bit / 8] & ~m) | ((v << (bit % 8)) & m));
	}
	}
}

static int rb_offset(struct qcow2 *s, uint64_t rti, uint64_t *out)
{
	*out = 0;
	if (rti >= s->rt_entries)
		return 0;
	uint64_t o = s->rt[rti] & QC_RTE_MASK;
	if (!o)
		return 0;
	if ((o & (s->cluster_size - 1)) || o >= QC_MAX_HOST_OFFSET) {
		qc_mark_corrupt(s, "refcount block offset unaligned");
		return -EIO;
	}
	*out = o;
	return 0;
}

int qc_rc_get(struct qcow2 *s, uint64_t ci, uint64_t *out)
{
	uint64_t o;
	int r = rb_offset(s, ci / s->rb_entries, &o);
	*out = 0;
	if (r < 0 || !o)
		return r;
	struct qc_slice *sl = qc_cache_get(s, &s->rbc, o, false, &r);
	if (!sl)
		return r;
	*out = qc_rb_get(s, sl->data, ci % s->rb_entries);
	return 0;
}

/* Write the refcount table nrt (nent entries, tc clusters) at off, then
 * point the header at it (each step flushed: the header never names a
 * table that is not on disk) and make it the table in use (nrt is taken
 * over; freed on error). */
static int rt_install(struct qcow2 *s, uint64_t *nrt, uint64_t nent, uint64_t off, uint64_t tc)
{
	uint64_t cs = s->cluster_size;
	uint8_t *buf = g_malloc0(tc * cs);
	for (uint64_t i = 0; i < nent; i++)
		kl_put_be64(buf + 8 * i, nrt[i]);
	int r = kl_bnode_pwrite_sync(s->bs->file, off, buf, tc * cs);
	g_free(buf);
	if (r >= 0)
		r = kl_bnode_flush_sync(s->bs->file);
	uint8_t h[12];
	kl_put_be64(h, off);
	kl_put_be32(h + 8, (uint32_t)tc);
	if (r >= 0)
		r = qc_write_header_field(s, 48, h, 12);
	if (r >= 0)
		r = kl_bnode_flush_sync(s->bs->file);
	if (r < 0) {
		g_free(nrt);
		return r;
	}
	g_free(s->rt);
	s->rt = nrt;
	s->rt_entries = nent;
	s->rt_offset = off;
	s->rt_clusters = (uint32_t)tc;
	return 0;
}

/* Bigger refcount table: new refblocks for its own clusters at a fresh
 * refblock-aligned range beyond everything, then the header. */
static int grow_rt(struct qcow2 *s, uint64_t need_rti)
{
	uint64_t cs = s->cluster_size, E = s->rb_entries;
	uint64_t flen_c = (qc_file_len(s) + cs - 1) / cs;
	uint64_t T = (flen_c + E - 1) / E * E;
	if (T < s->rt_entries * E)
		T = s->rt_entries * E;
	uint64_t k = 1, tc = 0;
	for (int it = 0; it < 64; it++) {
		uint64_t entries = need_rti + 1;
		if (entries < T / E + k)
			entries = T / E + k;
		uint64_t want = (uint64_t)s->rt_clusters + s->rt_clusters / 2 + 1;
		tc = (entries * 8 + cs - 1) / cs;
		if (tc < want)
			tc = want;
		if (k * E >= k + tc)
			break;
		k++;
	}
	if (tc * cs > QC_MAX_RT_BYTES || (T + k + tc) * cs >= QC_MAX_HOST_OFFSET)
		return -EFBIG;
	uint8_t *blk = g_malloc0(cs);
	int r = 0;
	for (uint64_t j = 0; j < k && r >= 0; j++) {
		memset(blk, 0, cs);
		uint64_t first = (T / E + j) * E;
		for (uint64_t c = T; c < T + k + tc; c++)
			if (c >= first && c < first + E)
				qc_rb_set(s, blk, c - first, 1);
		r = kl_bnode_pwrite_sync(s->bs->file, (T + j) * cs, blk, cs);
	}
	g_free(blk);
	if (r < 0)
		return r;
	uint64_t nent = tc * cs / 8;
	uint64_t *nrt = g_new0(uint64_t, nent);
	memcpy(nrt, s->rt, s->rt_entries * 8);
	for (uint64_t j = 0; j < k; j++)
		nrt[T / E + j] = (T + j) * cs;
	uint64_t old_off = s->rt_offset, old_len = (uint64_t)s->rt_clusters * cs;
	if ((r = rt_install(s, nrt, nent, (T + k) * cs, tc)) < 0)
		return r;
	return qc_free_now(s, old_off, old_len);
}

/* Refblock for table index rti, allocating one (placed at the first
 * cluster of the range it covers, which is free by definition). */
static int ensure_refblock(struct qcow2 *s, uint64_t rti, bool *created)
{
	uint64_t o;
	int r;
	if (rti >= s->rt_entries) {
		r = grow_rt(s, rti);
		if (r < 0)
			return r;
		*created = true;
	}
	r = rb_offset(s, rti, &o);
	if (r < 0 || o)
		return r;
	if (rti == 0)
		return qc_mark_corrupt(s, "refcount block 0 missing");
	uint64_t cs = s->cluster_size;
	o = rti * s->rb_entries * cs;
	if (o >= QC_MAX_HOST_OFFSET)
		return -EFBIG;
	struct qc_slice *sl = qc_cache_get(s, &s->rbc, o, true, &r);
	if (!sl)
		return r;
	qc_rb_set(s, sl->data, 0, 1);
	r = kl_bnode_pwrite_sync(s->bs->file, o, sl->data, cs);
	if (r >= 0)
		r = kl_bnode_flush_sync(s->bs->file);
	if (r < 0)
		return r;
	uint8_t e[8];
	kl_put_be64(e, o);
	r = kl_bnode_pwrite_sync(s->bs->file, s->rt_offset + rti * 8, e, 8);
	if (r < 0)
		return r;
	s->rt[rti] = o;
	*created = true;
	return 0;
}

int qc_rc_update(struct qcow2 *s, uint64_t ci, int64_t delta)
{
	uint64_t rti = ci / s->rb_entries, o;
	int r;
	if (delta > 0) {
		bool created = false;
		r = ensure_refblock(s, rti, &created);
		if (r < 0)
			return r;
	}
	r = rb_offset(s, rti, &o);
	if (r < 0)
		return r;
	if (!o)
		return qc_mark_corrupt(s, "refcount decrement of a cluster without a refblock");
	struct qc_slice *sl = qc_cache_get(s, &s->rbc, o, false, &r);
	if (!sl)
		return r;
	uint64_t v = qc_rb_get(s, sl->data, ci % s->rb_entries);
	if (delta < 0 && v < (uint64_t)-delta)
		return qc_mark_corrupt(s, "refcount underflow");
	if (delta > 0 && s->rc_max - v < (uint64_t)delta)
		return -ERANGE;
	v += (uint64_t)delta;
	qc_rb_set(s, sl->data, ci % s->rb_entries, v);
	qc_cache_dirty(&s->rbc, sl);
	if (v == 0) {
		if (ci < s->free_hint)
			s->free_hint = ci;
		qc_cache_drop(&s->l2c, ci * s->cluster_size, s->cluster_size);
	}
	return 0;
}

int64_t qc_alloc(struct qcow2 *s, uint64_t n)
{
	int r;
	if (s->lazy && (r = qc_set_dirty(s)) < 0)
		return r;
	uint64_t maxc = QC_MAX_HOST_OFFSET / s->cluster_size;
restart:;
	uint64_t start = s->free_hint ? s->free_hint : 1, run = 0, i, first_free = 0;
	/* clusters in use far past the end of the file: the refcounts lie
	 * (bounds the scan on a hostile image) */
	uint64_t limit = (qc_file_len(s) + (1ull << 30)) / s->cluster_size + n;
	for (i = start; i < maxc && run < n; i++) {
		uint64_t rc;
		r = qc_rc_get(s, i, &rc);
		if (r < 0)
			return r;
		if (rc) {
			run = 0;
		} else {
			run++;
			if (!first_free)
				first_free = i;
		}
		if (rc && i > limit)
			return qc_mark_corrupt(s, "clusters in use far past the end of the file");
	}
	if (run < n)
		return -ENOSPC;
	uint64_t first = i - n;
	bool created = false;
	for (uint64_t rti = first / s->rb_entries; rti <= (i - 1) / s->rb_entries; rti++) {
		r = ensure_refblock(s, rti, &created);
		if (r < 0)
			return r;
	}
	if (created)
		goto restart;
	for (uint64_t c = first; c < i; c++) {
		r = qc_rc_update(s, c, 1);
		if (r < 0)
			return r;
	}
	/* Every cluster in [start, first_free) is in use: later scans start at
	 * the first free one seen (past this run when the run began there);
	 * without this every allocation rescanned all clusters from the first
	 * free one at open (quadratic). */
	s->free_hint = first_free == first ? i : first_free;
	return (int64_t)(first * s->cluster_size);
}

int qc_rc_range(struct qcow2 *s, uint64_t off, uint64_t len, int64_t delta)
{
	if (!len)
		return 0;
	uint64_t cs = s->cluster_size;
	for (uint64_t c = off / cs; c <= (off + len - 1) / cs; c++) {
		int r = qc_rc_update(s, c, delta);
		if (r < 0)
			return r;
	}
	return 0;
}

int qc_free_now(struct qcow2 *s, uint64_t off, uint64_t len)
{
	return qc_rc_range(s, off, len, -1);
}

void qc_free_later(struct qcow2 *s, uint64_t off, uint64_t len)
{
	struct qc_free f = { off, len };
	g_array_append_val(s->pending_free, f);
}

int qc_rc_flush(struct qcow2 *s)
{
	return qc_cache_write_dirty(s, &s->rbc, NULL);
}

/* Ordered write-back: refcount blocks, flush (with the guest data written
 * so far), L2 slices, flush, then the refcount decrements that waited for
 * the L2 entries dropping their clusters. */
int qc_writeback(struct qcow2 *s)
{
	int r = qc_rc_flush(s);
	if (r < 0)
		return r;
	bool dirty = false;
	for (unsigned i = 0; i < s->l2c.n; i++)
		dirty |= s->l2c.e[i].valid && s->l2c.e[i].dirty;
	if (dirty) {
		if ((r = kl_bnode_flush_sync(s->bs->file)) < 0)
			return r;
		if ((r = qc_cache_write_dirty(s, &s->l2c, NULL)) < 0)
			return r;
	}
	if (s->pending_free->len) {
		if ((r = kl_bnode_flush_sync(s->bs->file)) < 0)
			return r;
		GArray *a = s->pending_free;
		s->pending_free = g_array_new(false, false, sizeof(struct qc_free));
		for (unsigned i = 0; i < a->len && r >= 0; i++) {
			struct qc_free *f = &g_array_index(a, struct qc_free, i);
			r = qc_free_now(s, f->off, f->len);
		}
		g_array_free(a, true);
		if (r < 0)
			return r;
		r = qc_rc_flush(s);
	}
	return r;
}

/* ---- rebuild (dirty image, lazy refcounts) ---- */

struct rcount {
	uint32_t *c;
	uint64_t n;
	uint64_t cap;
};

static int rc_add(struct qcow2 *s, struct rcount *rc, uint64_t off, uint64_t len)
{
	uint64_t cs = s->cluster_size;
	if (!len)
		return 0;
	if (off >= QC_MAX_HOST_OFFSET || len > QC_MAX_HOST_OFFSET)
		return -EIO;
	uint64_t last = (off + len - 1) / cs;
	if (last >= rc->cap)
		return -EFBIG;
	if (last >= rc->n) {
		uint64_t nn = last + 1 + (last + 1) / 2;
		if (nn > rc->cap)
			nn = rc->cap;
		rc->c = g_realloc_n(rc->c, nn, sizeof(uint32_t));
		memset(rc->c + rc->n, 0, (nn - rc->n) * sizeof(uint32_t));
		rc->n = nn;
	}
	for (uint64_t c = off / cs; c <= last; c++)
		if (rc->c[c] != UINT32_MAX)
			rc->c[c]++;
	return 0;
}

static int walk_l1(struct qcow2 *s, struct rcount *rc, uint64_t l1off, uint32_t l1n, char **err)
{
	uint64_t cs = s->cluster_size;
	int r = rc_add(s, rc, l1off, (uint64_t)l1n * 8);
	if (r < 0)
		goto bad;
	uint8_t *l1 = g_malloc((size_t)l1n * 8 + 1);
	uint8_t *l2 = g_malloc(cs);
	r = kl_bnode_pread_sync(s->bs->file, l1off, l1, (size_t)l1n * 8);
	for (uint32_t i = 0; i < l1n && r >= 0; i++) {
		uint64_t l2o = kl_get_be64(l1 + 8 * i) & QC_L1E_MASK;
		if (!l2o)
			continue;
		if ((l2o & (cs - 1)) || !qc_offset_ok(s, l2o, cs)) {
			r = -EIO;
			break;
		}
		if ((r = rc_add(s, rc, l2o, cs)) < 0)
			break;
		if ((r = kl_bnode_pread_sync(s->bs->file, l2o, l2, cs)) < 0)
			break;
		for (uint64_t j = 0; j < s->l2_entries && r >= 0; j++) {
			uint64_t e = kl_get_be64(l2 + j * s->l2e_size);
			if (e & QC_OFLAG_COMPRESSED) {
				uint64_t co, cl;
				qc_compressed_range(s, e, &co, &cl);
				r = rc_add(s, rc, co, cl);
			} else if (e & QC_L2E_MASK) {
				uint64_t h = e & QC_L2E_MASK;
				if (h & (cs - 1))
					r = -EIO;
				else
					r = rc_add(s, rc, h, cs);
			}
		}
	}
	g_free(l1);
	g_free(l2);
	if (r >= 0)
		return 0;
bad:
	*err = g_strdup_printf("qcow2: cannot repair refcounts: bad L1/L2 metadata (%s)",
			       g_strerror(-r));
	return r;
}

int qc_rebuild_refcounts(struct qcow2 *s, char **err)
{
	uint64_t cs = s->cluster_size, E = s->rb_entries;
	struct rcount rc = { 0 };
	uint64_t flen_c = (qc_file_len(s) + cs - 1) / cs;
	/* metadata may only point (a little) past the end of the file */
	rc.cap = flen_c + 1024;
	if (rc.cap > (256ull << 20))
		rc.cap = 256ull << 20;
	int r = rc_add(s, &rc, 0, cs);
	if (r >= 0)
		r = walk_l1(s, &rc, s->l1_offset, s->l1_size, err);
	if (r >= 0 && s->nb_snapshots)
		r = rc_add(s, &rc, s->snapshots_offset, s->snapshots_size);
	for (uint32_t i = 0; i < s->nb_snapshots && r >= 0; i++)
		r = walk_l1(s, &rc, s->snaps[i].l1_offset, s->snaps[i].l1_size, err);
	if (r < 0) {
		if (!*err)
			*err = g_strdup_printf("qcow2: cannot repair refcounts: %s", g_strerror(-r));
		g_free(rc.c);
		return r;
	}
	uint64_t end = rc.n > flen_c ? rc.n : flen_c;
	while (end > 1 && end > flen_c && !rc.c[end - 1])
		end--;
	uint64_t nrb = 0, tc = 0;
	for (int it = 0; it < 64; it++) {
		uint64_t total = end + nrb + tc;
		uint64_t nrb2 = (total + E - 1) / E;
		uint64_t tc2 = (nrb2 * 8 + cs - 1) / cs;
		if (nrb2 == nrb && tc2 == tc)
			break;
		nrb = nrb2;
		tc = tc2;
	}
	if (tc * cs > QC_MAX_RT_BYTES) {
		g_free(rc.c);
		*err = g_strdup("qcow2: cannot repair refcounts: refcount table too large");
		return -EFBIG;
	}
	r = rc_add(s, &rc, end * cs, (nrb + tc) * cs);
	if (r < 0) {
		g_free(rc.c);
		*err = g_strdup("qcow2: cannot repair refcounts: image too large");
		return r;
	}
	uint8_t *blk = g_malloc(cs);
	uint64_t nent = tc * cs / 8;
	uint64_t *nrt = g_new0(uint64_t, nent);
	for (uint64_t b = 0; b < nrb && r >= 0; b++) {
		memset(blk, 0, cs);
		for (uint64_t j = 0; j < E; j++) {
			uint64_t c = b * E + j;
			if (c >= rc.n)
				break;
			if (rc.c[c] > s->rc_max) {
				r = -ERANGE;
				break;
			}
			qc_rb_set(s, blk, j, rc.c[c]);
		}
		nrt[b] = (end + b) * cs;
		if (r >= 0)
			r = kl_bnode_pwrite_sync(s->bs->file, nrt[b], blk, cs);
	}
	g_free(blk);
	g_free(rc.c);
	if (r >= 0)
		r = rt_install(s, nrt, nent, (end + nrb) * cs, tc);
	else
		g_free(nrt);
	if (r < 0) {
		*err = g_strdup_printf("qcow2: cannot repair refcounts: %s", g_strerror(-r));
		return r;
	}
	qc_cache_drop(&s->rbc, 0, UINT64_MAX);
	s->free_hint = 0;
	return 0;
}
