/* qcow2 metadata transactions (internal snapshot create / delete): every
 * table the operation changes is written to clusters that are free both
 * before and after it -- refcount blocks included (shadow copies) -- and
 * one write of header bytes 36..71 (l1_size, l1_table_offset,
 * refcount_table_offset, refcount_table_clusters, nb_snapshots,
 * snapshots_offset: one sector) switches from the old metadata to the new.
 *
 * Why not in place: `qemu-img check` counts an OFLAG_COPIED flag that
 * disagrees with the refcount as a corruption in both directions (set
 * with refcount 2, and clear with refcount 1), and the flag lives in L1/L2
 * tables while the refcount lives in a refcount block: no order of
 * in-place writes goes from "refcount 1, COPIED set" to "refcount 2, COPIED
 * clear" through consistent states.  Here a SIGKILL before the header write
 * leaves the old image (the new clusters are free in it), after it the new
 * one; the clusters the new image no longer uses (old refcount blocks,
 * old refcount table, old snapshot table, ...) are already free in it. */
#include <errno.h>
#include <string.h>

#include "qcow2.h"

struct txn_rb {
	uint64_t rti;
	uint64_t old_off;       /* the block in the old image (0: none) */
	uint8_t *old;           /* its contents (zeroes when none) */
	uint8_t *cur;           /* the new contents */
	uint64_t new_off;       /* where cur goes (0: not placed yet) */
	bool dirty;
};

void qc_txn_begin(struct qcow2 *s, struct qc_txn *t)
{
	memset(t, 0, sizeof(*t));
	t->s = s;
	t->rbs = g_ptr_array_new();
	t->map = g_hash_table_new(g_int64_hash, g_int64_equal);
	t->hint = 1;
}

void qc_txn_free(struct qc_txn *t)
{
	for (guint i = 0; t->rbs && i < t->rbs->len; i++) {
		struct txn_rb *b = g_ptr_array_index(t->rbs, i);
		g_free(b->old);
		g_free(b->cur);
		g_free(b);
	}
	if (t->rbs)
		g_ptr_array_free(t->rbs, true);
	if (t->map)
		g_hash_table_destroy(t->map);
	memset(t, 0, sizeof(*t));
}

static struct txn_rb *rb_load(struct qc_txn *t, uint64_t rti, int *err)
{
	struct qcow2 *s = t->s;
	uint64_t cs = s->cluster_size;
	struct txn_rb *b = g_hash_table_lookup(t->map, &rti);
	if (b)
		return b;
	if (rti >= QC_MAX_HOST_OFFSET / cs / s->rb_entries) {
		*err = -EFBIG;
		return NULL;
	}
	uint64_t o = rti < s->rt_entries ? s->rt[rti] & QC_RTE_MASK : 0;
	if ((o & (cs - 1)) || o >= QC_MAX_HOST_OFFSET) {
		*err = qc_mark_corrupt(s, "refcount block offset unaligned");
		return NULL;
	}
	b = g_new0(struct txn_rb, 1);
	b->rti = rti;
	b->old_off = o;
	b->old = g_malloc0(cs);
	if (o) {
		int r = kl_bnode_pread_sync(s->bs->file, o, b->old, cs);
		if (r < 0) {
			g_free(b->old);
			g_free(b);
			*err = r;
			return NULL;
		}
	}
	b->cur = g_memdup2(b->old, cs);
	g_ptr_array_add(t->rbs, b);
	g_hash_table_insert(t->map, &b->rti, b);
	return b;
}

int qc_txn_rc(struct qc_txn *t, uint64_t ci, bool old, uint64_t *out)
{
	int r = 0;
	struct txn_rb *b = rb_load(t, ci / t->s->rb_entries, &r);
	if (!b)
		return r;
	*out = qc_rb_get(t->s, old ? b->old : b->cur, ci % t->s->rb_entries);
	return 0;
}

int qc_txn_add(struct qc_txn *t, uint64_t ci, int64_t delta)
{
	struct qcow2 *s = t->s;
	int r = 0;
	struct txn_rb *b = rb_load(t, ci / s->rb_entries, &r);
	if (!b)
		return r;
	uint64_t i = ci % s->rb_entries, v = qc_rb_get(s, b->cur, i);
	if (delta < 0 && v < (uint64_t)-delta)
		return qc_mark_corrupt(s, "refcount underflow");
	if (delta > 0 && s->rc_max - v < (uint64_t)delta)
		return -ERANGE;
	qc_rb_set(s, b->cur, i, v + (uint64_t)delta);
	b->dirty = true;
	return 0;
}

int qc_txn_add_range(struct qc_txn *t, uint64_t off, uint64_t len, int64_t delta)
{
	uint64_t cs = t->s->cluster_size;
	for (uint64_t c = off / cs; len && c <= (off + len - 1) / cs; c++) {
		int r = qc_txn_add(t, c, delta);
		if (r < 0)
			return r;
	}
	return 0;
}

/* n contiguous clusters free in the old image and in the new one (a cluster
 * the transaction frees is still in use until the header switches). */
int64_t qc_txn_alloc(struct qc_txn *t, uint64_t n)
{
	struct qcow2 *s = t->s;
	uint64_t maxc = QC_MAX_HOST_OFFSET / s->cluster_size, run = 0, i;
	for (i = t->hint; i < maxc && run < n; i++) {
		uint64_t a, b;
		int r = qc_txn_rc(t, i, true, &a);
		if (r >= 0)
			r = qc_txn_rc(t, i, false, &b);
		if (r < 0)
			return r;
		if (a || b) {
			run = 0;
			/* clusters are only ever taken within a transaction */
			if (i == t->hint)
				t->hint++;
		} else {
			run++;
		}
	}
	if (run < n)
		return -ENOSPC;
	uint64_t first = i - n;
	for (uint64_t c = first; c < i; c++) {
		int r = qc_txn_add(t, c, 1);
		if (r < 0)
			return r;
	}
	return (int64_t)(first * s->cluster_size);
}

/* Place every changed refcount block and the new refcount table; placing
 * them changes refcounts again, so until nothing moves. */
static int place(struct qc_txn *t, uint64_t *rt_off, uint64_t *rt_tc)
{
	struct qcow2 *s = t->s;
	uint64_t cs = s->cluster_size;
	int r = qc_txn_add_range(t, s->rt_offset, (uint64_t)s->rt_clusters * cs, -1);
	if (r < 0)
		return r;
	*rt_off = *rt_tc = 0;
	for (int it = 0; it < 64; it++) {
		bool moved = false;
		for (guint i = 0; i < t->rbs->len; i++) {
			struct txn_rb *b = g_ptr_array_index(t->rbs, i);
			if (!b->dirty || b->new_off)
				continue;
			int64_t a = qc_txn_alloc(t, 1);
			if (a < 0)
				return (int)a;
			b->new_off = (uint64_t)a;
			if (b->old_off && (r = qc_txn_add(t, b->old_off / cs, -1)) < 0)
				return r;
			moved = true;
		}
		uint64_t nent = s->rt_entries;
		for (guint i = 0; i < t->rbs->len; i++) {
			struct txn_rb *b = g_ptr_array_index(t->rbs, i);
			if (b->new_off && b->rti + 1 > nent)
				nent = b->rti + 1;
		}
		uint64_t tc = (nent * 8 + cs - 1) / cs;
		if (tc * cs > QC_MAX_RT_BYTES)
			return -EFBIG;
		if (*rt_tc < tc) {
			if (*rt_off && (r = qc_txn_add_range(t, *rt_off, *rt_tc * cs, -1)) < 0)
				return r;
			int64_t a = qc_txn_alloc(t, tc + 1);
			if (a < 0)
				return (int)a;
			*rt_off = (uint64_t)a;
			*rt_tc = tc + 1;
			moved = true;
		}
		if (!moved)
			return 0;
	}
	return -EIO;
}

int qc_txn_commit(struct qc_txn *t, const struct qc_txn_hdr *h)
{
	struct qcow2 *s = t->s;
	uint64_t cs = s->cluster_size, rt_off, rt_tc;
	int r = place(t, &rt_off, &rt_tc);
	if (r < 0)
		return r;
	uint64_t nent = rt_tc * cs / 8;
	uint64_t *nrt = g_new0(uint64_t, nent);
	memcpy(nrt, s->rt, s->rt_entries * 8);
	for (guint i = 0; i < t->rbs->len && r >= 0; i++) {
		struct txn_rb *b = g_ptr_array_index(t->rbs, i);
		if (!b->new_off)
			continue;
		nrt[b->rti] = b->new_off;
		r = kl_bnode_pwrite_sync(s->bs->file, b->new_off, b->cur, cs);
	}
	uint8_t *buf = g_malloc0(rt_tc * cs);
	for (uint64_t i = 0; i < nent; i++)
		kl_put_be64(buf + 8 * i, nrt[i]);
	if (r >= 0)
		r = kl_bnode_pwrite_sync(s->bs->file, rt_off, buf, rt_tc * cs);
	g_free(buf);
	/* everything the new header names is on disk before the header */
	if (r >= 0)
		r = kl_bnode_flush_sync(s->bs->file);
	uint8_t hb[36];
	kl_put_be32(hb, h->l1_size);
	kl_put_be64(hb + 4, h->l1_offset);
	kl_put_be64(hb + 12, rt_off);
	kl_put_be32(hb + 20, (uint32_t)rt_tc);
	kl_put_be32(hb + 24, h->nb_snapshots);
	kl_put_be64(hb + 28, h->snapshots_offset);
	if (r < 0) {
		g_free(nrt);
		return r;       /* the old image is untouched */
	}
	r = qc_write_header_field(s, 36, hb, sizeof(hb));
	if (r >= 0)
		r = kl_bnode_flush_sync(s->bs->file);
	if (r < 0) {
		/* the header may or may not be on disk: which image is there is
		 * no longer known */
		g_free(nrt);
		return qc_mark_corrupt(s, "snapshot metadata switch failed");
	}
	g_free(s->rt);
	s->rt = nrt;
	s->rt_entries = nent;
	s->rt_offset = rt_off;
	s->rt_clusters = (uint32_t)rt_tc;
	s->l1_size = h->l1_size;
	s->l1_offset = h->l1_offset;
	s->nb_snapshots = h->nb_snapshots;
	s->snapshots_offset = h->snapshots_offset;
	/* both caches are clean (written back before the transaction) and may
	 * hold blocks and tables that moved or were freed */
	qc_cache_drop(&s->rbc, 0, UINT64_MAX);
	qc_cache_drop(&s->l2c, 0, UINT64_MAX);
	s->free_hint = 0;
	return 0;
}
