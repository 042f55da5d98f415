/* qcow2 internal snapshots: the snapshot table, create (copy of the active
 * L1, refcount +1 on everything reachable, COPIED cleared), delete
 * (refcount -1 through the snapshot's L1, COPIED restored where the
 * refcount is back to 1) and list. */
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

/* Write the table for snaps[0..n) in new clusters, point the header at it,
 * free the old one. */
static int write_table(struct qcow2 *s, struct qc_snap *snaps, uint32_t n)
{
	uint64_t cs = s->cluster_size;
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
	uint64_t size = g->len, noff = 0;
	int r = 0;
	if (size) {
		int64_t a = qc_alloc(s, (size + cs - 1) / cs);
		if (a < 0) {
			g_byte_array_free(g, true);
			return (int)a;
		}
		noff = (uint64_t)a;
		r = kl_bnode_pwrite_sync(s->bs->file, noff, g->data, size);
		if (r >= 0)
			r = qc_rc_flush(s);
		if (r >= 0)
			r = kl_bnode_flush_sync(s->bs->file);
	}
	g_byte_array_free(g, true);
	uint8_t h[12];
	kl_put_be32(h, n);
	kl_put_be64(h + 4, noff);
	if (r >= 0)
		r = qc_write_header_field(s, 60, h, 12);
	if (r >= 0)
		r = kl_bnode_flush_sync(s->bs->file);
	if (r < 0)
		return r;
	if (s->snapshots_size && s->nb_snapshots)
		r = qc_free_now(s, s->snapshots_offset, s->snapshots_size);
	s->snapshots_offset = noff;
	s->snapshots_size = size;
	return r;
}

static int write_l1(struct qcow2 *s)
{
	uint8_t *b = g_malloc((size_t)s->l1_size * 8 + 1);
	for (uint32_t i = 0; i < s->l1_size; i++)
		kl_put_be64(b + 8 * i, s->l1[i]);
	int r = kl_bnode_pwrite_sync(s->bs->file, s->l1_offset, b, (size_t)s->l1_size * 8);
	g_free(b);
	return r;
}

/* refcount += delta of every cluster reachable from one L1 table entry's
 * L2 table (data clusters); clear_copied: drop COPIED in the L2 entries. */
static int l2_refs(struct qcow2 *s, uint64_t l2off, int delta, bool clear_copied)
{
	uint64_t cs = s->cluster_size;
	for (uint64_t j = 0; j < s->l2_entries; j++) {
		uint64_t e, bmp;
		int r = qc_l2t_get(s, l2off, j, &e, &bmp);
		if (r < 0)
			return r;
		if (e & QC_OFLAG_COMPRESSED) {
			uint64_t co, cl;
			qc_compressed_range(s, e, &co, &cl);
			r = qc_rc_range(s, co, cl, delta);
		} else if (e & QC_L2E_MASK) {
			if ((e & QC_L2E_MASK) & (cs - 1))
				return qc_mark_corrupt(s, "data cluster offset invalid");
			r = qc_rc_update(s, (e & QC_L2E_MASK) / cs, delta);
			if (r >= 0 && clear_copied && (e & QC_OFLAG_COPIED))
				r = qc_l2t_set(s, l2off, j, e & ~QC_OFLAG_COPIED, bmp);
		}
		if (r < 0)
			return r;
	}
	return 0;
}

static bool l2off_ok(struct qcow2 *s, uint64_t o)
{
	return !(o & (s->cluster_size - 1)) && qc_offset_ok(s, o, s->cluster_size);
}

int qc_snapshot_create(struct kl_bnode *bs, const char *id, const char *name, char **err)
{
	struct qcow2 *s = bs->opaque;
	uint64_t cs = s->cluster_size;
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
	for (uint32_t i = 0; i < s->l1_size && r >= 0; i++) {
		uint64_t l2off = s->l1[i] & QC_L1E_MASK;
		if (!l2off)
			continue;
		if (!l2off_ok(s, l2off)) {
			r = qc_mark_corrupt(s, "L2 table offset invalid");
			break;
		}
		r = qc_rc_update(s, l2off / cs, 1);
		if (r >= 0)
			r = l2_refs(s, l2off, 1, true);
		s->l1[i] &= ~QC_OFLAG_COPIED;
	}
	uint64_t l1bytes = (uint64_t)s->l1_size * 8, l1off = 0;
	if (r >= 0 && l1bytes) {
		int64_t a = qc_alloc(s, (l1bytes + cs - 1) / cs);
		r = a < 0 ? (int)a : 0;
		l1off = a < 0 ? 0 : (uint64_t)a;
	}
	if (r >= 0)
		r = qc_writeback(s);
	if (r >= 0)
		r = write_l1(s);
	if (r >= 0 && l1bytes) {
		uint8_t *b = g_malloc(l1bytes);
		for (uint32_t i = 0; i < s->l1_size; i++)
			kl_put_be64(b + 8 * i, s->l1[i]);
		r = kl_bnode_pwrite_sync(bs->file, l1off, b, l1bytes);
		g_free(b);
	}
	if (r >= 0)
		r = kl_bnode_flush_sync(bs->file);
	if (r < 0) {
		*err = g_strdup_printf("qcow2: snapshot create failed: %s", g_strerror(-r));
		return r;
	}
	struct qc_snap *n = g_new0(struct qc_snap, s->nb_snapshots + 1);
	if (s->nb_snapshots)
		memcpy(n, s->snaps, sizeof(*n) * s->nb_snapshots);
	struct qc_snap *sn = &n[s->nb_snapshots];
	gint64 now = g_get_real_time();
	sn->l1_offset = l1off;
	sn->l1_size = s->l1_size;
	sn->id = g_strdup(id);
	sn->name = g_strdup(name);
	sn->date_sec = (uint32_t)(now / G_USEC_PER_SEC);
	sn->date_nsec = (uint32_t)(now % G_USEC_PER_SEC) * 1000;
	sn->disk_size = s->size;
	sn->icount = UINT64_MAX;
	sn->extra_size = 24;
	sn->extra = g_malloc0(24);
	kl_put_be64(sn->extra + 8, s->size);
	kl_put_be64(sn->extra + 16, UINT64_MAX);
	r = write_table(s, n, s->nb_snapshots + 1);
	if (r < 0) {
		snap_clear(sn);
		g_free(n);
		*err = g_strdup_printf("qcow2: snapshot table write failed: %s", g_strerror(-r));
		return r;
	}
	g_free(s->snaps);
	s->snaps = n;
	s->nb_snapshots++;
	return 0;
}

int qc_snapshot_delete(struct kl_bnode *bs, const char *id, const char *name, char **err)
{
	struct qcow2 *s = bs->opaque;
	uint64_t cs = s->cluster_size;
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
	struct qc_snap *n = g_new0(struct qc_snap, s->nb_snapshots);
	if (i)
		memcpy(n, s->snaps, sizeof(*n) * i);
	if (s->nb_snapshots - i - 1)
		memcpy(n + i, s->snaps + i + 1, sizeof(*n) * (s->nb_snapshots - i - 1));
	if (r >= 0)
		r = write_table(s, n, s->nb_snapshots - 1);
	if (r < 0) {
		g_free(n);
		*err = g_strdup_printf("qcow2: snapshot delete failed: %s", g_strerror(-r));
		return r;
	}
	g_free(s->snaps);
	s->snaps = n;
	s->nb_snapshots--;
	/* drop the snapshot's references */
	uint64_t l1bytes = (uint64_t)sn.l1_size * 8;
	uint8_t *b = g_malloc(l1bytes + 1);
	r = kl_bnode_pread_sync(bs->file, sn.l1_offset, b, l1bytes);
	for (uint32_t k = 0; k < sn.l1_size && r >= 0; k++) {
		uint64_t l2off = kl_get_be64(b + 8 * k) & QC_L1E_MASK;
		if (!l2off)
			continue;
		if (!l2off_ok(s, l2off)) {
			r = qc_mark_corrupt(s, "snapshot L2 table offset invalid");
			break;
		}
		r = l2_refs(s, l2off, -1, false);
		if (r >= 0)
			r = qc_rc_update(s, l2off / cs, -1);
	}
	g_free(b);
	if (r >= 0 && l1bytes)
		r = qc_free_now(s, sn.l1_offset, l1bytes);
	snap_clear(&sn);
	/* COPIED where the refcount is 1 again */
	for (uint32_t k = 0; k < s->l1_size && r >= 0; k++) {
		uint64_t l2off = s->l1[k] & QC_L1E_MASK, rc;
		if (!l2off)
			continue;
		if ((r = qc_rc_get(s, l2off / cs, &rc)) < 0)
			break;
		if (rc != 1) {
			s->l1[k] &= ~QC_OFLAG_COPIED;
			continue;
		}
		s->l1[k] |= QC_OFLAG_COPIED;
		for (uint64_t j = 0; j < s->l2_entries && r >= 0; j++) {
			uint64_t e, bmp, ne;
			if ((r = qc_l2t_get(s, l2off, j, &e, &bmp)) < 0)
				break;
			if ((e & QC_OFLAG_COMPRESSED) || !(e & QC_L2E_MASK))
				continue;
			if ((r = qc_rc_get(s, (e & QC_L2E_MASK) / cs, &rc)) < 0)
				break;
			ne = rc == 1 ? e | QC_OFLAG_COPIED : e & ~QC_OFLAG_COPIED;
			if (ne != e)
				r = qc_l2t_set(s, l2off, j, ne, bmp);
		}
	}
	if (r >= 0)
		r = qc_writeback(s);
	if (r >= 0)
		r = write_l1(s);
	if (r >= 0)
		r = kl_bnode_flush_sync(bs->file);
	if (r < 0) {
		*err = g_strdup_printf("qcow2: snapshot delete failed: %s", g_strerror(-r));
		return r;
	}
	return 0;
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
