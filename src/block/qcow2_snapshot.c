/* qcow2 internal snapshots: the snapshot table, create, delete and list.
 * Create and delete are metadata transactions (qcow2_txn.c): a SIGKILL at
 * any moment leaves either the old or the new image, each consistent for
 * `qemu-img check` (docs/qcow2.md). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qcow2.h"

#define SN_MAX_EXTRA 1024
#define SN_MAX_TABLE (64u << 20)

static void snap_clear(struct qc_snap *sn)
{
	g_free(sn->id);
	g_free(sn->name);
	g_free(sn->extra);
}

void qc_snapshots_free(struct qcow2 *s)
{
	for (uint32_t i = 0; i < s->nb_snapshots && s->snaps; i++)
		snap_clear(&s->snaps[i]);
	g_free(s->snaps);
	s->snaps = NULL;
}

int qc_snapshots_load(struct qcow2 *s, char **err)
{
	uint64_t cs = s->cluster_size, flen = qc_file_len(s);
	if (!s->nb_snapshots)
		return 0;
	if (s->nb_snapshots > QC_MAX_SNAPSHOTS) {
		*err = g_strdup_printf("qcow2: too many snapshots (%u)", s->nb_snapshots);
		return -EINVAL;
	}
	if ((s->snapshots_offset & (cs - 1)) || s->snapshots_offset < cs ||
	    s->snapshots_offset >= flen) {
		*err = g_strdup("qcow2: snapshot table offset invalid");
		return -EINVAL;
	}
	s->snaps = g_new0(struct qc_snap, s->nb_snapshots);
	uint64_t off = s->snapshots_offset;
	uint8_t h[40];
	for (uint32_t i = 0; i < s->nb_snapshots; i++) {
		struct qc_snap *sn = &s->snaps[i];
		int r = kl_bnode_pread_sync(s->bs->file, off, h, 40);
		if (r < 0)
			goto io;
		sn->l1_offset = kl_get_be64(h);
		sn->l1_size = kl_get_be32(h + 8);
		uint32_t idl = kl_get_be16(h + 12), nl = kl_get_be16(h + 14);
		sn->date_sec = kl_get_be32(h + 16);
		sn->date_nsec = kl_get_be32(h + 20);
		sn->vm_clock = kl_get_be64(h + 24);
		sn->vm_state_size = kl_get_be32(h + 32);
		sn->extra_size = kl_get_be32(h + 36);
		sn->icount = UINT64_MAX;
		if (sn->extra_size > SN_MAX_EXTRA) {
			*err = g_strdup_printf("qcow2: snapshot %u: too much extra data", i);
			return -EINVAL;
		}
		uint64_t esz = 40 + (uint64_t)sn->extra_size + idl + nl;
		if (off + esz - s->snapshots_offset > SN_MAX_TABLE || off + esz > flen) {
			*err = g_strdup("qcow2: snapshot table too large or past the end of the file");
			return -EINVAL;
		}
		uint8_t *b = g_malloc(esz - 40 + 1);
		r = kl_bnode_pread_sync(s->bs->file, off + 40, b, esz - 40);
		if (r < 0) {
			g_free(b);
			goto io;
		}
		sn->extra = g_memdup2(b, sn->extra_size + 1);
		if (sn->extra_size >= 8)
			sn->vm_state_size = kl_get_be64(b);
		if (sn->extra_size >= 16)
			sn->disk_size = kl_get_be64(b + 8);
		else
			sn->disk_size = s->size;
		if (sn->extra_size >= 24)
			sn->icount = kl_get_be64(b + 16);
		sn->id = g_strndup((const char *)b + sn->extra_size, idl);
		sn->name = g_strndup((const char *)b + sn->extra_size + idl, nl);
		g_free(b);
		if ((sn->l1_offset & (cs - 1)) || (uint64_t)sn->l1_size * 8 > QC_MAX_L1_BYTES ||
		    (sn->l1_size && (sn->l1_offset < cs || sn->l1_offset > flen ||
				     (uint64_t)sn->l1_size * 8 > flen - sn->l1_offset))) {
			*err = g_strdup_printf("qcow2: snapshot %s: L1 table invalid", sn->id);
			return -EINVAL;
		}
		off += (esz + 7) & ~7ull;
	}
	s->snapshots_size = off - s->snapshots_offset;
	return 0;
io:
	*err = g_strdup("qcow2: cannot read the snapshot table");
	return -EIO;
}

/* The snapshot table for snaps[0..n), as it is on disk. */
static GByteArray *table_bytes(struct qc_snap *snaps, uint32_t n)
{
	GByteArray *g = g_byte_array_new();
	for (uint32_t i = 0; i < n; i++) {
		struct qc_snap *sn = &snaps[i];
		uint8_t h[40];
		size_t idl = strlen(sn->id), nl = strlen(sn->name);
		kl_put_be64(h, sn->l1_offset);
		kl_put_be32(h + 8, sn->l1_size);
		kl_put_be16(h + 12, (uint16_t)idl);
		kl_put_be16(h + 14, (uint16_t)nl);
		kl_put_be32(h + 16, sn->date_sec);
		kl_put_be32(h + 20, sn->date_nsec);
		kl_put_be64(h + 24, sn->vm_clock);
		kl_put_be32(h + 32, sn->vm_state_size > UINT32_MAX ? 0 : (uint32_t)sn->vm_state_size);
		kl_put_be32(h + 36, sn->extra_size);
		g_byte_array_append(g, h, 40);
		g_byte_array_append(g, sn->extra, sn->extra_size);
		g_byte_array_append(g, (const uint8_t *)sn->id, (guint)idl);
		g_byte_array_append(g, (const uint8_t *)sn->name, (guint)nl);
		while (g->len & 7)
			g_byte_array_append(g, (const uint8_t *)"", 1);
	}
	return g;
}

/* The new snapshot table in new clusters (*off 0: empty); the old one is
 * freed in the new image. */
static int txn_table(struct qc_txn *t, struct qc_snap *snaps, uint32_t n, uint64_t *off,
		     uint64_t *size)
{
	struct qcow2 *s = t->s;
	uint64_t cs = s->cluster_size;
	int r = 0;
	if (s->nb_snapshots && s->snapshots_size)
		r = qc_txn_add_range(t, s->snapshots_offset, s->snapshots_size, -1);
	GByteArray *g = table_bytes(snaps, n);
	*off = 0;
	*size = g->len;
	if (r >= 0 && g->len) {
		int64_t a = qc_txn_alloc(t, (g->len + cs - 1) / cs);
		r = a < 0 ? (int)a : kl_bnode_pwrite_sync(s->bs->file, (uint64_t)a, g->data, g->len);
		*off = a < 0 ? 0 : (uint64_t)a;
	}
	g_byte_array_free(g, true);
	return r;
}

static int write_l1_at(struct qcow2 *s, uint64_t off, const uint64_t *l1, uint32_t n)
{
	uint8_t *b = g_malloc((size_t)n * 8 + 1);
	for (uint32_t i = 0; i < n; i++)
		kl_put_be64(b + 8 * i, l1[i]);
	int r = kl_bnode_pwrite_sync(s->bs->file, off, b, (size_t)n * 8);
	g_free(b);
	return r;
}

static bool l2off_ok(struct qcow2 *s, uint64_t o)
{
	return !(o & (s->cluster_size - 1)) && qc_offset_ok(s, o, s->cluster_size);
}

/* An L2 table read whole from disk (the cache is written back). */
static uint8_t *read_l2(struct qcow2 *s, uint64_t l2off, int *r)
{
	uint8_t *b = g_malloc(s->cluster_size);
	*r = kl_bnode_pread_sync(s->bs->file, l2off, b, s->cluster_size);
	if (*r < 0) {
		g_free(b);
		return NULL;
	}
	return b;
}

/* refcount += delta (new image) of the data clusters one L2 table names. */
static int l2_refs(struct qc_txn *t, const uint8_t *l2, int delta)
{
	struct qcow2 *s = t->s;
	uint64_t cs = s->cluster_size;
	for (uint64_t j = 0; j < s->l2_entries; j++) {
		uint64_t e = kl_get_be64(l2 + j * s->l2e_size);
		int r = 0;
		if (e & QC_OFLAG_COMPRESSED) {
			uint64_t co, cl;
			qc_compressed_range(s, e, &co, &cl);
			if (co < cs || co >= QC_MAX_HOST_OFFSET)
				return qc_mark_corrupt(s, "compressed cluster descriptor invalid");
			r = qc_txn_add_range(t, co, cl, delta);
		} else if (e & QC_L2E_MASK) {
			if ((e & QC_L2E_MASK) & (cs - 1))
				return qc_mark_corrupt(s, "data cluster offset invalid");
			r = qc_txn_add(t, (e & QC_L2E_MASK) / cs, delta);
		}
		if (r < 0)
			return r;
	}
	return 0;
}

/* Set OFLAG_COPIED of the normal entries of l2 to "refcount == 1" in the
 * new image: true when an entry changed. */
static int l2_fix_copied(struct qc_txn *t, uint8_t *l2, bool *changed)
{
	struct qcow2 *s = t->s;
	*changed = false;
	for (uint64_t j = 0; j < s->l2_entries; j++) {
		uint8_t *p = l2 + j * s->l2e_size;
		uint64_t e = kl_get_be64(p), rc, ne;
		if ((e & QC_OFLAG_COMPRESSED) || !(e & QC_L2E_MASK))
			continue;
		int r = qc_txn_rc(t, (e & QC_L2E_MASK) / s->cluster_size, false, &rc);
		if (r < 0)
			return r;
		ne = rc == 1 ? e | QC_OFLAG_COPIED : e & ~QC_OFLAG_COPIED;
		if (ne != e) {
			kl_put_be64(p, ne);
			*changed = true;
		}
	}
	return 0;
}

/* The end of create_txn and delete_txn: the new snapshot table, then the
 * one header write that switches to the new L1 table and table (r: the
 * result so far; nl1 is freed on failure, handed out on success). */
static int txn_finish(struct qcow2 *s, struct qc_txn *t, int r, struct qc_snap *tbl, uint32_t n,
		      uint64_t *nl1, uint64_t l1off, uint64_t **l1_out, uint64_t *l1off_out,
		      uint64_t *toff, uint64_t *tsize)
{
	if (r >= 0)
		r = txn_table(t, tbl, n, toff, tsize);
	struct qc_txn_hdr h = { s->l1_size, l1off, n, *toff };
	if (r >= 0)
		r = qc_txn_commit(t, &h);
	qc_txn_free(t);
	if (r < 0) {
		g_free(nl1);
		return r;
	}
	*l1_out = nl1;
	*l1off_out = l1off;
	return 0;
}

/* The snapshot keeps the active L1 table and the L2 tables as they are on
 * disk; the active image gets a new L1 table whose entries name, for an L2
 * table only it used, a copy with OFLAG_COPIED clear (every data cluster is
 * now shared), and for one already shared the same table (refcount +1).
 * Every data cluster gets refcount +1.  One header write switches. */
/* L1 index of the VM state area: right after the L2 tables that map the
 * virtual disk (QEMU's l1_vm_state_index / qcow2_vm_state_offset). */
static uint64_t vm_l1_index(struct qcow2 *s)
{
	uint64_t span = s->cluster_size * s->l2_entries;
	return (s->size + span - 1) / span;
}

/* The VM state (vm[0..len)) goes to data clusters mapped at the VM state
 * area by new L2 tables, in a new L1 table of the snapshot sn: the active
 * L1 entries, then those tables.  The snapshot no longer keeps the old
 * active L1 table, which is freed. */
static int vm_write(struct qc_txn *t, struct qc_snap *sn, const uint8_t *vm, uint64_t len)
{
	struct qcow2 *s = t->s;
	uint64_t cs = s->cluster_size, ncl = (len + cs - 1) / cs, vmi = vm_l1_index(s);
	uint64_t nl2 = (ncl + s->l2_entries - 1) / s->l2_entries;
	uint64_t n = vmi + nl2 > s->l1_size ? vmi + nl2 : s->l1_size;
	if (n * 8 > QC_MAX_L1_BYTES)
		return -EFBIG;
	int64_t data = qc_txn_alloc(t, ncl);
	if (data < 0)
		return (int)data;
	int r = kl_bnode_pwrite_sync(s->bs->file, (uint64_t)data, vm, len);
	if (r >= 0 && len % cs)
		r = kl_bnode_pwrite_sync(s->bs->file, (uint64_t)data + len, s->zbuf, cs - len % cs);
	uint64_t *l1 = g_new0(uint64_t, n);
	memcpy(l1, s->l1, (size_t)s->l1_size * 8);
	uint8_t *l2 = g_malloc(cs);
	for (uint64_t j = 0; j < nl2 && r >= 0; j++) {
		memset(l2, 0, cs);
		for (uint64_t k = 0; k < s->l2_entries && j * s->l2_entries + k < ncl; k++) {
			uint8_t *p = l2 + k * s->l2e_size;
			kl_put_be64(p, (uint64_t)data + (j * s->l2_entries + k) * cs);
			if (s->ext_l2)
				kl_put_be64(p + 8, 0xffffffffull); /* every subcluster allocated */
		}
		int64_t a = qc_txn_alloc(t, 1);
		r = a < 0 ? (int)a : kl_bnode_pwrite_sync(s->bs->file, (uint64_t)a, l2, cs);
		l1[vmi + j] = (uint64_t)a;
	}
	g_free(l2);
	if (r >= 0 && s->l1_size)
		r = qc_txn_add_range(t, s->l1_offset, (uint64_t)s->l1_size * 8, -1);
	int64_t a = r < 0 ? r : qc_txn_alloc(t, (n * 8 + cs - 1) / cs);
	r = a < 0 ? (int)a : write_l1_at(s, (uint64_t)a, l1, (uint32_t)n);
	g_free(l1);
	if (r >= 0) {
		sn->l1_offset = (uint64_t)a;
		sn->l1_size = (uint32_t)n;
		sn->vm_state_size = len;
		kl_put_be64(sn->extra, len);
	}
	return r;
}

static int create_txn(struct qcow2 *s, struct qc_snap *tbl, uint32_t n, const uint8_t *vm,
		      uint64_t vmlen, uint64_t **l1_out, uint64_t *l1off_out, uint64_t *toff,
		      uint64_t *tsize)
{
	uint64_t cs = s->cluster_size;
	struct qc_txn t;
	qc_txn_begin(s, &t);
	uint64_t *nl1 = g_new0(uint64_t, s->l1_size + 1);
	int r = 0;
	for (uint32_t i = 0; i < s->l1_size && r >= 0; i++) {
		uint64_t l2off = s->l1[i] & QC_L1E_MASK, rc;
		if (!l2off)
			continue;
		if (!l2off_ok(s, l2off)) {
			r = qc_mark_corrupt(s, "L2 table offset invalid");
			break;
		}
		uint8_t *l2 = read_l2(s, l2off, &r);
		if (!l2)
			break;
		r = l2_refs(&t, l2, 1);
		if (r >= 0)
			r = qc_txn_rc(&t, l2off / cs, true, &rc);
		if (r >= 0 && rc == 1) {
			bool changed;
			int64_t a = qc_txn_alloc(&t, 1);
			r = a < 0 ? (int)a : l2_fix_copied(&t, l2, &changed);
			if (r >= 0)
				r = kl_bnode_pwrite_sync(s->bs->file, (uint64_t)a, l2, cs);
			nl1[i] = (uint64_t)a | QC_OFLAG_COPIED;
		} else if (r >= 0) {
			r = qc_txn_add(&t, l2off / cs, 1);
			nl1[i] = l2off;
		}
		g_free(l2);
	}
	uint64_t l1off = 0;
	if (r >= 0 && s->l1_size) {
		int64_t a = qc_txn_alloc(&t, ((uint64_t)s->l1_size * 8 + cs - 1) / cs);
		r = a < 0 ? (int)a : write_l1_at(s, (uint64_t)a, nl1, s->l1_size);
		l1off = a < 0 ? 0 : (uint64_t)a;
	}
	if (r >= 0 && vmlen)
		r = vm_write(&t, &tbl[n - 1], vm, vmlen);
	return txn_finish(s, &t, r, tbl, n, nl1, l1off, l1_out, l1off_out, toff, tsize);
}

int qc_snapshot_create(struct kl_bnode *bs, const char *id, const char *name, char **err)
{
	return qc_snapshot_create_vm(bs, id, name, NULL, 0, 0, err);
}

int qc_snapshot_create_vm(struct kl_bnode *bs, const char *id, const char *name,
			  const uint8_t *vm, uint64_t vmlen, uint64_t vm_clock, char **err)
{
	struct qcow2 *s = bs->opaque;
	char idbuf[32];
	if (s->readonly || s->corrupt) {
		*err = g_strdup("qcow2: image is read-only or corrupt");
		return -EROFS;
	}
	if (s->nb_snapshots >= QC_MAX_SNAPSHOTS) {
		*err = g_strdup("qcow2: too many snapshots");
		return -EFBIG;
	}
	if (s->rc_max < 2) {
		*err = g_strdup("qcow2: cannot create snapshots with refcount_bits=1");
		return -ENOTSUP;
	}
	if (!id) {
		unsigned long max = 0;
		for (uint32_t i = 0; i < s->nb_snapshots; i++) {
			unsigned long v = strtoul(s->snaps[i].id, NULL, 10);
			if (v > max)
				max = v;
		}
		snprintf(idbuf, sizeof(idbuf), "%lu", max + 1);
		id = idbuf;
	}
	if (!name)
		name = id;
	if (strlen(id) > 127 || strlen(name) > 255) {
		*err = g_strdup("qcow2: snapshot id or name too long");
		return -EINVAL;
	}
	for (uint32_t i = 0; i < s->nb_snapshots; i++)
		if (!strcmp(s->snaps[i].id, id) || !strcmp(s->snaps[i].name, name)) {
			*err = g_strdup_printf("qcow2: a snapshot with id '%s' or name '%s' exists",
					       id, name);
			return -EEXIST;
		}
	int r = qc_writeback(s);
	if (r >= 0)
		r = kl_bnode_flush_sync(bs->file);
	struct qc_snap *n = g_new0(struct qc_snap, s->nb_snapshots + 1);
	if (s->nb_snapshots)
		memcpy(n, s->snaps, sizeof(*n) * s->nb_snapshots);
	struct qc_snap *sn = &n[s->nb_snapshots];
	gint64 now = g_get_real_time();
	sn->l1_offset = s->l1_offset;
	sn->l1_size = s->l1_size;
	sn->id = g_strdup(id);
	sn->name = g_strdup(name);
	sn->date_sec = (uint32_t)(now / G_USEC_PER_SEC);
	sn->date_nsec = (uint32_t)(now % G_USEC_PER_SEC) * 1000;
	sn->vm_clock = vm_clock;
	sn->disk_size = s->size;
	sn->icount = UINT64_MAX;
	sn->extra_size = 24;
	sn->extra = g_malloc0(24);
	kl_put_be64(sn->extra + 8, s->size);
	kl_put_be64(sn->extra + 16, UINT64_MAX);
	uint64_t *nl1 = NULL, l1off = 0, toff = 0, tsize = 0;
	kl_bnode_crash_arm(true);
	if (r >= 0)
		r = create_txn(s, n, s->nb_snapshots + 1, vm, vmlen, &nl1, &l1off, &toff, &tsize);
	kl_bnode_crash_arm(false);
	if (r < 0) {
		snap_clear(sn);
		g_free(n);
		*err = g_strdup_printf("qcow2: snapshot create failed: %s", g_strerror(-r));
		return r;
	}
	g_free(s->l1);
	s->l1 = nl1;
	g_free(s->snaps);
	s->snaps = n;
	s->snapshots_size = tsize;
	return 0;
}

/* The snapshot's references are dropped (its L1 table, its L2 tables and
 * the data clusters they name); an active L2 table whose data clusters'
 * OFLAG_COPIED must change is replaced by a corrected copy, and the active
 * L1 table, when an entry changes, by a new one.  One header write
 * switches. */
static int delete_txn(struct qcow2 *s, const struct qc_snap *sn, struct qc_snap *tbl, uint32_t n,
		      uint64_t **l1_out, uint64_t *l1off_out, uint64_t *toff, uint64_t *tsize)
{
	uint64_t cs = s->cluster_size, l1bytes = (uint64_t)sn->l1_size * 8;
	struct qc_txn t;
	qc_txn_begin(s, &t);
	uint8_t *b = g_malloc(l1bytes + 1);
	int r = kl_bnode_pread_sync(s->bs->file, sn->l1_offset, b, l1bytes);
	if (r >= 0)
		r = qc_txn_add_range(&t, sn->l1_offset, l1bytes, -1);
	for (uint32_t k = 0; k < sn->l1_size && r >= 0; k++) {
		uint64_t l2off = kl_get_be64(b + 8 * k) & QC_L1E_MASK;
		if (!l2off)
			continue;
		if (!l2off_ok(s, l2off)) {
			r = qc_mark_corrupt(s, "snapshot L2 table offset invalid");
			break;
		}
		uint8_t *l2 = read_l2(s, l2off, &r);
		if (!l2)
			break;
		r = l2_refs(&t, l2, -1);
		if (r >= 0)
			r = qc_txn_add(&t, l2off / cs, -1);
		g_free(l2);
	}
	g_free(b);
	/* OFLAG_COPIED of the active tables against the new refcounts */
	uint64_t *nl1 = g_new0(uint64_t, s->l1_size + 1);
	memcpy(nl1, s->l1, (size_t)s->l1_size * 8);
	bool l1_changed = false;
	for (uint32_t k = 0; k < s->l1_size && r >= 0; k++) {
		uint64_t l2off = s->l1[k] & QC_L1E_MASK, rc;
		if (!l2off)
			continue;
		if (!l2off_ok(s, l2off)) {
			r = qc_mark_corrupt(s, "L2 table offset invalid");
			break;
		}
		if ((r = qc_txn_rc(&t, l2off / cs, false, &rc)) < 0)
			break;
		uint64_t ne = rc == 1 ? nl1[k] | QC_OFLAG_COPIED : nl1[k] & ~QC_OFLAG_COPIED;
		bool changed = false;
		uint8_t *l2 = read_l2(s, l2off, &r);
		if (!l2)
			break;
		r = l2_fix_copied(&t, l2, &changed);
		if (r >= 0 && changed) {
			/* the active image moves to a corrected copy: refcounts
			 * of its data clusters are unchanged (one L1 entry names
			 * either table) */
			int64_t a = qc_txn_alloc(&t, 1);
			r = a < 0 ? (int)a : qc_txn_add(&t, l2off / cs, -1);
			if (r >= 0)
				r = kl_bnode_pwrite_sync(s->bs->file, (uint64_t)a, l2, cs);
			ne = (uint64_t)a | QC_OFLAG_COPIED;
		}
		g_free(l2);
		if (ne != nl1[k]) {
			nl1[k] = ne;
			l1_changed = true;
		}
	}
	uint64_t l1off = s->l1_offset;
	if (r >= 0 && l1_changed) {
		uint64_t l1c = ((uint64_t)s->l1_size * 8 + cs - 1) / cs;
		int64_t a = qc_txn_alloc(&t, l1c);
		r = a < 0 ? (int)a : qc_txn_add_range(&t, s->l1_offset, (uint64_t)s->l1_size * 8, -1);
		if (r >= 0)
			r = write_l1_at(s, (uint64_t)a, nl1, s->l1_size);
		l1off = a < 0 ? 0 : (uint64_t)a;
	}
	return txn_finish(s, &t, r, tbl, n, nl1, l1off, l1_out, l1off_out, toff, tsize);
}

int qc_snapshot_delete(struct kl_bnode *bs, const char *id, const char *name, char **err)
{
	struct qcow2 *s = bs->opaque;
	uint32_t i;
	if (s->readonly || s->corrupt) {
		*err = g_strdup("qcow2: image is read-only or corrupt");
		return -EROFS;
	}
	for (i = 0; i < s->nb_snapshots; i++)
		if ((!id || !strcmp(s->snaps[i].id, id)) && (!name || !strcmp(s->snaps[i].name, name)))
			break;
	if (i == s->nb_snapshots || (!id && !name)) {
		*err = g_strdup_printf("Can't find the snapshot (id '%s', name '%s')",
				       id ? id : "", name ? name : "");
		return -ENOENT;
	}
	struct qc_snap sn = s->snaps[i];
	int r = qc_writeback(s);
	if (r >= 0)
		r = kl_bnode_flush_sync(bs->file);
	struct qc_snap *n = g_new0(struct qc_snap, s->nb_snapshots);
	if (i)
		memcpy(n, s->snaps, sizeof(*n) * i);
	if (s->nb_snapshots - i - 1)
		memcpy(n + i, s->snaps + i + 1, sizeof(*n) * (s->nb_snapshots - i - 1));
	uint64_t *nl1 = NULL, l1off = 0, toff = 0, tsize = 0;
	kl_bnode_crash_arm(true);
	if (r >= 0)
		r = delete_txn(s, &sn, n, s->nb_snapshots - 1, &nl1, &l1off, &toff, &tsize);
	kl_bnode_crash_arm(false);
	if (r < 0) {
		g_free(n);
		*err = g_strdup_printf("qcow2: snapshot delete failed: %s", g_strerror(-r));
		return r;
	}
	g_free(s->l1);
	s->l1 = nl1;
	g_free(s->snaps);
	s->snaps = n;
	s->snapshots_size = tsize;
	snap_clear(&sn);
	return 0;
}

/* The active image becomes the snapshot's disk: its references are dropped
 * (L1 table, L2 tables, data), the snapshot's L2 tables below the VM state
 * area are shared by a new active L1 table (refcount +1, data +1), or, for
 * one whose OFLAG_COPIED flags disagree with the new refcounts, copied
 * with the flags corrected.  One header write switches. */
static int goto_txn(struct qcow2 *s, const struct qc_snap *sn, uint64_t **l1_out,
		    uint64_t *l1off_out, uint64_t *toff, uint64_t *tsize)
{
	uint64_t cs = s->cluster_size, vmi = vm_l1_index(s);
	uint32_t n = s->l1_size;
	uint64_t take = sn->l1_size < n ? sn->l1_size : n;
	if (take > vmi)
		take = vmi;
	struct qc_txn t;
	qc_txn_begin(s, &t);
	int r = 0;
	for (uint32_t i = 0; i < n && r >= 0; i++) {
		uint64_t l2off = s->l1[i] & QC_L1E_MASK;
		if (!l2off)
			continue;
		if (!l2off_ok(s, l2off)) {
			r = qc_mark_corrupt(s, "L2 table offset invalid");
			break;
		}
		uint8_t *l2 = read_l2(s, l2off, &r);
		if (!l2)
			break;
		r = l2_refs(&t, l2, -1);
		if (r >= 0)
			r = qc_txn_add(&t, l2off / cs, -1);
		g_free(l2);
	}
	if (r >= 0 && n)
		r = qc_txn_add_range(&t, s->l1_offset, (uint64_t)n * 8, -1);
	uint8_t *b = g_malloc((size_t)sn->l1_size * 8 + 1);
	if (r >= 0)
		r = kl_bnode_pread_sync(s->bs->file, sn->l1_offset, b, (size_t)sn->l1_size * 8);
	uint8_t **l2s = g_new0(uint8_t *, take + 1);
	for (uint64_t i = 0; i < take && r >= 0; i++) {
		uint64_t l2off = kl_get_be64(b + 8 * i) & QC_L1E_MASK;
		if (!l2off)
			continue;
		if (!l2off_ok(s, l2off)) {
			r = qc_mark_corrupt(s, "snapshot L2 table offset invalid");
			break;
		}
		if ((l2s[i] = read_l2(s, l2off, &r)))
			r = l2_refs(&t, l2s[i], 1);
	}
	uint64_t *nl1 = g_new0(uint64_t, n + 1);
	for (uint64_t i = 0; i < take && r >= 0; i++) {
		uint64_t l2off = kl_get_be64(b + 8 * i) & QC_L1E_MASK;
		bool changed;
		if (!l2s[i])
			continue;
		r = l2_fix_copied(&t, l2s[i], &changed);
		if (r >= 0 && changed) {
			int64_t a = qc_txn_alloc(&t, 1);
			r = a < 0 ? (int)a : kl_bnode_pwrite_sync(s->bs->file, (uint64_t)a, l2s[i], cs);
			nl1[i] = (uint64_t)a | QC_OFLAG_COPIED;
		} else if (r >= 0) {
			r = qc_txn_add(&t, l2off / cs, 1);
			nl1[i] = l2off;
		}
	}
	for (uint64_t i = 0; i < take; i++)
		g_free(l2s[i]);
	g_free(l2s);
	g_free(b);
	uint64_t l1off = 0;
	if (r >= 0 && n) {
		int64_t a = qc_txn_alloc(&t, ((uint64_t)n * 8 + cs - 1) / cs);
		r = a < 0 ? (int)a : write_l1_at(s, (uint64_t)a, nl1, n);
		l1off = a < 0 ? 0 : (uint64_t)a;
	}
	return txn_finish(s, &t, r, s->snaps, s->nb_snapshots, nl1, l1off, l1_out, l1off_out,
			  toff, tsize);
}

static struct qc_snap *snap_by_id(struct qcow2 *s, const char *id, char **err)
{
	for (uint32_t i = 0; i < s->nb_snapshots; i++)
		if (!strcmp(s->snaps[i].id, id))
			return &s->snaps[i];
	*err = g_strdup_printf("qcow2: no snapshot with id '%s'", id);
	return NULL;
}

int qc_snapshot_goto(struct kl_bnode *bs, const char *id, char **err)
{
	struct qcow2 *s = bs->opaque;
	if (s->readonly || s->corrupt) {
		*err = g_strdup("qcow2: image is read-only or corrupt");
		return -EROFS;
	}
	struct qc_snap *sn = snap_by_id(s, id, err);
	if (!sn)
		return -ENOENT;
	if (sn->disk_size != s->size) {
		*err = g_strdup_printf("qcow2: snapshot '%s' has a disk of %" PRIu64 " bytes, the "
				       "image %" PRIu64 " (kvmlite does not resize on revert)",
				       sn->name, sn->disk_size, s->size);
		return -ENOTSUP;
	}
	int r = qc_writeback(s);
	if (r >= 0)
		r = kl_bnode_flush_sync(bs->file);
	uint64_t *nl1 = NULL, l1off = 0, toff = 0, tsize = 0;
	kl_bnode_crash_arm(true);
	if (r >= 0)
		r = goto_txn(s, sn, &nl1, &l1off, &toff, &tsize);
	kl_bnode_crash_arm(false);
	if (r < 0) {
		*err = g_strdup_printf("qcow2: snapshot revert failed: %s", g_strerror(-r));
		return r;
	}
	g_free(s->l1);
	s->l1 = nl1;
	s->snapshots_size = tsize;
	return 0;
}

/* n bytes of guest-invisible VM state at pos of the VM state area through
 * the snapshot's own L1 table (image content: every offset is checked). */
static int vm_read_cluster(struct qcow2 *s, const uint8_t *l1, uint32_t l1n, uint64_t voff,
			   uint8_t *buf, uint64_t n, char **err)
{
	uint64_t cs = s->cluster_size, ci = voff / cs, l1i = ci / s->l2_entries, e, bmp;
	memset(buf, 0, n);
	if (l1i >= l1n)
		return 0;
	uint64_t l2off = kl_get_be64(l1 + 8 * l1i) & QC_L1E_MASK;
	if (!l2off)
		return 0;
	if (!l2off_ok(s, l2off)) {
		*err = g_strdup("qcow2: VM state: L2 table offset invalid");
		return -EINVAL;
	}
	int r = qc_l2t_get(s, l2off, ci % s->l2_entries, &e, &bmp);
	if (r < 0)
		goto io;
	if (e & QC_OFLAG_COMPRESSED) {
		*err = g_strdup("qcow2: VM state in compressed clusters is not supported");
		return -ENOTSUP;
	}
	uint64_t host = e & QC_L2E_MASK, in = voff % cs;
	if (!host || (!s->ext_l2 && (e & QC_OFLAG_ZERO)))
		return 0;
	if ((host & (cs - 1)) || !qc_offset_ok(s, host, cs)) {
		*err = g_strdup("qcow2: VM state: data cluster offset invalid");
		return -EINVAL;
	}
	for (uint64_t done = 0; done < n;) {
		uint64_t k = n - done, sc = 0;
		if (s->ext_l2) {
			sc = (in + done) / s->sc_size;
			uint64_t end = (sc + 1) * s->sc_size - (in + done);
			k = k < end ? k : end;
		}
		if (!s->ext_l2 || ((bmp >> sc) & 1)) {
			r = kl_bnode_pread_sync(s->bs->file, host + in + done, buf + done, k);
			if (r < 0)
				goto io;
		}
		done += k;
	}
	return 0;
io:
	*err = g_strdup_printf("qcow2: cannot read the VM state: %s", g_strerror(-r));
	return r;
}

int qc_snapshot_vmstate_read(struct kl_bnode *bs, const char *id, uint8_t *buf, uint64_t len,
			     char **err)
{
	struct qcow2 *s = bs->opaque;
	struct qc_snap *sn = snap_by_id(s, id, err);
	if (!sn)
		return -ENOENT;
	if (len > sn->vm_state_size) {
		*err = g_strdup_printf("qcow2: snapshot '%s' has %" PRIu64 " bytes of VM state",
				       sn->name, sn->vm_state_size);
		return -EINVAL;
	}
	uint64_t cs = s->cluster_size, base = vm_l1_index(s) * cs * s->l2_entries;
	uint8_t *l1 = g_malloc((size_t)sn->l1_size * 8 + 1);
	int r = kl_bnode_pread_sync(s->bs->file, sn->l1_offset, l1, (size_t)sn->l1_size * 8);
	if (r < 0)
		*err = g_strdup("qcow2: cannot read the snapshot's L1 table");
	for (uint64_t pos = 0; pos < len && r >= 0;) {
		uint64_t k = cs - (base + pos) % cs;
		k = k < len - pos ? k : len - pos;
		r = vm_read_cluster(s, l1, sn->l1_size, base + pos, buf + pos, k, err);
		pos += k;
	}
	g_free(l1);
	return r < 0 ? r : 0;
}

int qc_snapshot_list(struct kl_bnode *bs, GArray *out)
{
	struct qcow2 *s = bs->opaque;
	for (uint32_t i = 0; i < s->nb_snapshots; i++) {
		struct qc_snap *sn = &s->snaps[i];
		struct kl_snapshot_info in;
		memset(&in, 0, sizeof(in));
		g_strlcpy(in.id, sn->id, sizeof(in.id));
		g_strlcpy(in.name, sn->name, sizeof(in.name));
		in.vm_state_size = sn->vm_state_size;
		in.date_sec = sn->date_sec;
		in.date_nsec = sn->date_nsec;
		in.vm_clock_ns = sn->vm_clock;
		in.icount = sn->icount;
		g_array_append_val(out, in);
	}
	return 0;
}
