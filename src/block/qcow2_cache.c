/* qcow2 metadata caches: L2 slices and refcount blocks, LRU, write-back.
 * A dirty L2 slice is only written after the refcount blocks (and the guest
 * data written so far) are on disk: write dirty refblocks, flush the file,
 * then the slice. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2.h"

int qc_cache_init(struct qc_cache *c, unsigned n, size_t size, bool is_l2)
{
	memset(c, 0, sizeof(*c));
	c->e = g_new0(struct qc_slice, n);
	c->n = n;
	c->size = size;
	c->is_l2 = is_l2;
	c->map = g_hash_table_new(g_int64_hash, g_int64_equal);
	for (unsigned i = 0; i < n; i++)
		c->e[i].data = g_malloc(size);
	return 0;
}

void qc_cache_free(struct qc_cache *c)
{
	if (!c->e)
		return;
	for (unsigned i = 0; i < c->n; i++)
		g_free(c->e[i].data);
	g_free(c->e);
	g_hash_table_destroy(c->map);
	memset(c, 0, sizeof(*c));
}

static int write_slice(struct qcow2 *s, struct qc_cache *c, struct qc_slice *sl)
{
	int r;
	if (c->is_l2) {
		/* refcounts and guest data before the L2 entries referencing them */
		r = qc_rc_flush(s);
		if (r < 0)
			return r;
		r = kl_bnode_flush_sync(s->bs->file);
		if (r < 0)
			return r;
	}
	r = kl_bnode_pwrite_sync(s->bs->file, sl->off, sl->data, c->size);
	if (r < 0)
		return r;
	sl->dirty = false;
	return 0;
}

struct qc_slice *qc_cache_get(struct qcow2 *s, struct qc_cache *c, uint64_t off, bool fresh,
			      int *err)
{
	struct qc_slice *sl = g_hash_table_lookup(c->map, &off);
	if (sl) {
		sl->lru = ++c->tick;
		if (fresh) {
			memset(sl->data, 0, c->size);
		}
		return sl;
	}
	/* victim: an invalid entry, else the least recently used */
	struct qc_slice *v = NULL;
	for (unsigned i = 0; i < c->n; i++) {
		struct qc_slice *e = &c->e[i];
		if (!e->valid) {
			v = e;
			break;
		}
		if (!v || e->lru < v->lru)
			v = e;
	}
	if (v->valid) {
		if (v->dirty) {
			int r = write_slice(s, c, v);
			if (r < 0) {
				*err = r;
				return NULL;
			}
		}
		g_hash_table_remove(c->map, &v->off);
		v->valid = false;
	}
	if (fresh) {
		memset(v->data, 0, c->size);
	} else {
		int r = kl_bnode_pread_sync(s->bs->file, off, v->data, c->size);
		if (r < 0) {
			*err = r;
			return NULL;
		}
	}
	v->off = off;
	v->valid = true;
	v->dirty = false;
	v->lru = ++c->tick;
	g_hash_table_insert(c->map, &v->off, v);
	return v;
}

void qc_cache_dirty(struct qc_cache *c, struct qc_slice *sl)
{
	(void)c;
	sl->dirty = true;
}

int qc_cache_write_dirty(struct qcow2 *s, struct qc_cache *c, int *nwritten)
{
	int n = 0;
	for (unsigned i = 0; i < c->n; i++) {
		struct qc_slice *e = &c->e[i];
		if (e->valid && e->dirty) {
			int r = kl_bnode_pwrite_sync(s->bs->file, e->off, e->data, c->size);
			if (r < 0)
				return r;
			e->dirty = false;
			n++;
		}
	}
	if (nwritten)
		*nwritten = n;
	return 0;
}

/* Forget entries inside [off, off+len) (their clusters were freed or
 * rewritten outside the cache); dirty contents are dropped. */
void qc_cache_drop(struct qc_cache *c, uint64_t off, uint64_t len)
{
	if (len <= 64 * c->size) {
		/* a cluster: look its slices up */
		for (uint64_t o = off; o < off + len; o += c->size) {
			struct qc_slice *e = g_hash_table_lookup(c->map, &o);
			if (e) {
				g_hash_table_remove(c->map, &e->off);
				e->valid = false;
				e->dirty = false;
			}
		}
		return;
	}
	for (unsigned i = 0; i < c->n; i++) {
		struct qc_slice *e = &c->e[i];
		if (e->valid && e->off >= off && e->off < off + len) {
			g_hash_table_remove(c->map, &e->off);
			e->valid = false;
			e->dirty = false;
		}
	}
}
