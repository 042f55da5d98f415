/* qcow2 format driver: header, open (validation, features, extensions,
 * caches), close, probe, info and create.  See docs/interop/qcow2.txt of
 * QEMU for the format. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "qcow2.h"

#define EXT_END 0
#define EXT_BACKING_FMT 0xe2792acau
#define EXT_FEATURES 0x6803f857u

uint64_t qc_file_len(struct qcow2 *s)
{
	return kl_bnode_file_length(s->bs->file);
}

bool qc_offset_ok(struct qcow2 *s, uint64_t off, uint64_t len)
{
	uint64_t fl = qc_file_len(s);
	return off >= s->cluster_size && len <= fl && off <= fl - len;
}

int qc_write_header_field(struct qcow2 *s, uint64_t off, const void *buf, size_t len)
{
	return kl_bnode_pwrite_sync(s->bs->file, off, buf, len);
}

static int write_incompat(struct qcow2 *s)
{
	uint8_t b[8];
	if (s->version < 3)
		return 0;
	kl_put_be64(b, s->incompat);
	int r = qc_write_header_field(s, 72, b, 8);
	if (r >= 0)
		r = kl_bnode_flush_sync(s->bs->file);
	return r;
}

int qc_mark_corrupt(struct qcow2 *s, const char *what)
{
	if (!s->corrupt) {
		fprintf(stderr, "qcow2: Marking image as corrupt: %s; further corruption events "
			"will be suppressed\n", what);
		s->corrupt = true;
		if (!s->readonly) {
			s->incompat |= QC_INCOMPAT_CORRUPT;
			write_incompat(s);
		}
	}
	return -EIO;
}

int qc_set_dirty(struct qcow2 *s)
{
	if ((s->incompat & QC_INCOMPAT_DIRTY) || s->version < 3)
		return 0;
	int r = kl_bnode_flush_sync(s->bs->file);
	if (r < 0)
		return r;
	s->incompat |= QC_INCOMPAT_DIRTY;
	return write_incompat(s);
}

int qc_write_l1_entry(struct qcow2 *s, uint32_t idx)
{
	uint8_t b[8];
	kl_put_be64(b, s->l1[idx]);
	return kl_bnode_pwrite_sync(s->bs->file, s->l1_offset + (uint64_t)idx * 8, b, 8);
}

static int qcow2_probe(const uint8_t *buf, size_t len)
{
	return len >= 8 && kl_get_be32(buf) == QC_MAGIC &&
	       (kl_get_be32(buf + 4) == 2 || kl_get_be32(buf + 4) == 3) ? 100 : 0;
}

static char *unsupported_features(struct qcow2 *s, uint64_t mask)
{
	GString *g = g_string_new("Unsupported qcow2 feature(s): ");
	bool first = true;
	for (int b = 0; b < 64; b++) {
		if (!(mask & (1ull << b)) || !s->feature_names[b])
			continue;
		g_string_append_printf(g, "%s%s", first ? "" : ", ", s->feature_names[b]);
		mask &= ~(1ull << b);
		first = false;
	}
	if (mask)
		g_string_append_printf(g, "%sUnknown incompatible feature: %" PRIx64,
				       first ? "" : ", ", mask);
	return g_string_free(g, false);
}

static int parse_extensions(struct qcow2 *s, const uint8_t *h, uint64_t start, uint64_t end,
			    char **err)
{
	uint64_t off = start;
	while (off + 8 <= end) {
		uint32_t type = kl_get_be32(h + off), len = kl_get_be32(h + off + 4);
		off += 8;
		if (len > end - off) {
			*err = g_strdup("qcow2: header extension exceeds the header cluster");
			return -EINVAL;
		}
		const uint8_t *d = h + off;
		if (type == EXT_END)
			break;
		if (type == EXT_BACKING_FMT) {
			if (len == 0 || len > 1023) {
				*err = g_strdup("qcow2: bad backing format extension");
				return -EINVAL;
			}
			g_free(s->bs->backing_fmt);
			s->bs->backing_fmt = g_strndup((const char *)d, len);
		} else if (type == EXT_FEATURES) {
			for (uint32_t i = 0; i + 48 <= len; i += 48) {
				unsigned t = d[i], bit = d[i + 1];
				if (t > 2 || bit > 63)
					continue;
				char **slot = &s->feature_names[t * 64 + bit];
				g_free(*slot);
				*slot = g_strndup((const char *)d + i + 2, 46);
			}
		}
		/* bitmaps, encryption, data file name, unknown: ignored */
		off += ((uint64_t)len + 7) & ~7ull;
	}
	return 0;
}

static void qcow2_free_state(struct qcow2 *s)
{
	qc_cache_free(&s->l2c);
	qc_cache_free(&s->rbc);
	qc_snapshots_free(s);
	g_free(s->l1);
	g_free(s->rt);
	g_free(s->zbuf);
	if (s->pending_free)
		g_array_free(s->pending_free, true);
	while (s->inflight) {
		struct qc_inflight *n = s->inflight->next;
		g_free(s->inflight);
		s->inflight = n;
	}
	for (unsigned i = 0; i < G_N_ELEMENTS(s->feature_names); i++)
		g_free(s->feature_names[i]);
	g_free(s);
}

static int read_table(struct qcow2 *s, uint64_t off, uint64_t n, uint64_t **out)
{
	uint8_t *b = g_malloc(n * 8 + 1);
	int r = kl_bnode_pread_sync(s->bs->file, off, b, n * 8);
	uint64_t *t = g_new0(uint64_t, n + 1);
	for (uint64_t i = 0; i < n; i++)
		t[i] = kl_get_be64(b + 8 * i);
	g_free(b);
	if (r < 0) {
		g_free(t);
		return r;
	}
	*out = t;
	return 0;
}

static int open_caches(struct qcow2 *s, struct kl_opts *o, char **err)
{
	uint64_t cs = s->cluster_size;
	uint64_t l2sz, rcsz, total, ent;
	bool has_l2 = kl_opts_get(o, "l2-cache-size") != NULL;
	bool has_rc = kl_opts_get(o, "refcount-cache-size") != NULL;
	bool has_total = kl_opts_get(o, "cache-size") != NULL;
	uint64_t max_l2 = ((s->size + cs - 1) / cs) * s->l2e_size;
	max_l2 = (max_l2 + cs - 1) / cs * cs;
	uint64_t def_l2 = max_l2 < (32u << 20) ? max_l2 : (32u << 20);
	uint64_t min_rc = 4 * cs;
	if (kl_opts_get_size(o, "l2-cache-size", def_l2, &l2sz, err) < 0 ||
	    kl_opts_get_size(o, "refcount-cache-size", 0, &rcsz, err) < 0 ||
	    kl_opts_get_size(o, "cache-size", 0, &total, err) < 0 ||
	    kl_opts_get_size(o, "l2-cache-entry-size", 4096 < cs ? 4096 : cs, &ent, err) < 0)
		return -EINVAL;
	if (has_total) {
		if (has_l2 && has_rc) {
			*err = g_strdup("cache-size, l2-cache-size and refcount-cache-size may not "
					"be set at the same time");
			return -EINVAL;
		}
		if (has_l2) {
			if (l2sz > total) {
				*err = g_strdup("l2-cache-size may not exceed cache-size");
				return -EINVAL;
			}
			rcsz = total - l2sz;
		} else if (has_rc) {
			if (rcsz > total) {
				*err = g_strdup("refcount-cache-size may not exceed cache-size");
				return -EINVAL;
			}
			l2sz = total - rcsz;
		} else if (total >= max_l2 + min_rc) {
			l2sz = max_l2;
			rcsz = total - l2sz;
		} else {
			rcsz = total < min_rc ? total : min_rc;
			l2sz = total - rcsz;
		}
	} else if (!has_rc) {
		rcsz = l2sz / 4 > min_rc ? l2sz / 4 : min_rc;
	}
	if (ent < 512 || ent > cs || (ent & (ent - 1))) {
		*err = g_strdup_printf("L2 cache entry size must be a power of two between 512 "
				       "and the cluster size (%" PRIu64 ")", cs);
		return -EINVAL;
	}
	s->slice_size = ent;
	s->slice_entries = ent / s->l2e_size;
	uint64_t nl2 = l2sz / ent, nrc = rcsz / cs;
	if (nl2 < 16)
		nl2 = 16;
	if (nrc < 4)
		nrc = 4;
	if (nl2 > (1u << 22) || nrc > (1u << 20)) {
		*err = g_strdup("qcow2: cache size too large");
		return -EINVAL;
	}
	qc_cache_init(&s->l2c, (unsigned)nl2, ent, true);
	qc_cache_init(&s->rbc, (unsigned)nrc, cs, false);
	return 0;
}

#define FAIL(...) do { *err = g_strdup_printf(__VA_ARGS__); r = -EINVAL; goto fail; } while (0)

static int qcow2_open(struct kl_bnode *bs, struct kl_opts *o, const struct kl_bnode_inherit *in,
		      char **err)
{
	struct qcow2 *s = g_new0(struct qcow2, 1);
	uint8_t *h = g_malloc0(512);
	int r;
	s->bs = bs;
	s->readonly = bs->readonly || (in && in->readonly);
	s->pending_free = g_array_new(false, false, sizeof(struct qc_free));
	g_queue_init(&s->waiters);
	if ((r = kl_bnode_pread_sync(bs->file, 0, h, 512)) < 0)
		FAIL("qcow2: cannot read the header: %s", g_strerror(-r));
	if (kl_get_be32(h) != QC_MAGIC)
		FAIL("qcow2: image is not in qcow2 format");
	s->version = (int)kl_get_be32(h + 4);
	if (s->version != 2 && s->version != 3)
		FAIL("qcow2: unsupported qcow2 version %d", s->version);
	s->cluster_bits = kl_get_be32(h + 20);
	if (s->cluster_bits < 9 || s->cluster_bits > 21)
		FAIL("qcow2: cluster size must be a power of two between 512 and 2M (cluster_bits %u)",
		     s->cluster_bits);
	uint64_t cs = s->cluster_size = 1ull << s->cluster_bits;
	g_free(h);
	h = g_malloc0(cs);
	if ((r = kl_bnode_pread_sync(bs->file, 0, h, cs)) < 0)
		FAIL("qcow2: cannot read the header: %s", g_strerror(-r));
	uint64_t bf_off = kl_get_be64(h + 8);
	uint32_t bf_size = kl_get_be32(h + 16);
	s->size = kl_get_be64(h + 24);
	uint32_t crypt = kl_get_be32(h + 32);
	s->l1_size = kl_get_be32(h + 36);
	s->l1_offset = kl_get_be64(h + 40);
	s->rt_offset = kl_get_be64(h + 48);
	s->rt_clusters = kl_get_be32(h + 56);
	s->nb_snapshots = kl_get_be32(h + 60);
	s->snapshots_offset = kl_get_be64(h + 64);
	if (s->version == 2) {
		s->header_length = 72;
		s->rc_order = 4;
	} else {
		s->incompat = kl_get_be64(h + 72);
		s->compat = kl_get_be64(h + 80);
		s->autoclear = kl_get_be64(h + 88);
		s->rc_order = kl_get_be32(h + 96);
		s->header_length = kl_get_be32(h + 100);
		if (s->header_length < 104 || s->header_length > cs)
			FAIL("qcow2: invalid header length %u", s->header_length);
		if (s->header_length > 104)
			s->compression_type = h[104];
	}
	uint64_t ext_end = cs;
	if (bf_off) {
		if (bf_off > cs || bf_size > 1023 || bf_size > cs - bf_off)
			FAIL("qcow2: backing file name is outside the header cluster or too long");
		ext_end = bf_off;
	}
	if (ext_end > s->header_length &&
	    (r = parse_extensions(s, h, s->header_length, ext_end, err)) < 0)
		goto fail;
	uint64_t unknown = s->incompat & ~QC_INCOMPAT_KNOWN;
	if (unknown) {
		*err = unsupported_features(s, unknown);
		r = -ENOTSUP;
		goto fail;
	}
	if (s->incompat & QC_INCOMPAT_DATA_FILE)
		FAIL("qcow2: external data files are not supported (incompatible feature bit 2)");
	if ((s->incompat & QC_INCOMPAT_CORRUPT) && !s->readonly) {
		*err = g_strdup("qcow2: image is corrupt; cannot be opened read/write");
		r = -EACCES;
		goto fail;
	}
	s->corrupt = s->incompat & QC_INCOMPAT_CORRUPT;
	if (crypt)
		FAIL("qcow2: encrypted images are not supported");
	if (s->compression_type > 1)
		FAIL("qcow2: unknown compression type %d", s->compression_type);
	if (!!(s->incompat & QC_INCOMPAT_COMPRESSION) != (s->compression_type != 0))
		FAIL("qcow2: compression type and incompatible feature bit 3 disagree");
	if (s->rc_order > 6)
		FAIL("qcow2: refcount width may not exceed 64 bits (refcount_order %u)", s->rc_order);
	s->rc_bits = 1u << s->rc_order;
	s->rc_max = s->rc_bits == 64 ? UINT64_MAX : (1ull << s->rc_bits) - 1;
	s->rb_entries = cs * 8 / s->rc_bits;
	s->ext_l2 = s->incompat & QC_INCOMPAT_EXTL2;
	if (s->ext_l2 && cs < 16384 && s->cluster_bits < 14) {
		/* subclusters of at least 512 bytes: clusters of at least 16 KiB */
		FAIL("qcow2: extended L2 entries need clusters of at least 16 KiB");
	}
	s->l2e_size = s->ext_l2 ? 16 : 8;
	s->l2_entries = cs / s->l2e_size;
	s->sc_size = cs / 32;
	uint64_t flen = kl_bnode_file_length(bs->file);
	/* L1 */
	if ((uint64_t)s->l1_size * 8 > QC_MAX_L1_BYTES)
		FAIL("qcow2: active L1 table too large (%u entries)", s->l1_size);
	if (s->size > (1ull << 62))
		FAIL("qcow2: image size too large");
	uint64_t per_l1 = s->l2_entries * cs;
	if ((s->size + per_l1 - 1) / per_l1 > s->l1_size)
		FAIL("qcow2: L1 table too small for the image size");
	if (s->l1_size && ((s->l1_offset & (cs - 1)) || s->l1_offset < cs ||
			   s->l1_offset > flen || (uint64_t)s->l1_size * 8 > flen - s->l1_offset))
		FAIL("qcow2: L1 table offset invalid");
	/* refcount table */
	if (!s->rt_clusters || (uint64_t)s->rt_clusters * cs > QC_MAX_RT_BYTES)
		FAIL("qcow2: refcount table size invalid (%u clusters)", s->rt_clusters);
	if ((s->rt_offset & (cs - 1)) || s->rt_offset < cs || s->rt_offset > flen ||
	    (uint64_t)s->rt_clusters * cs > flen - s->rt_offset)
		FAIL("qcow2: refcount table offset invalid");
	s->rt_entries = (uint64_t)s->rt_clusters * cs / 8;
	if ((r = read_table(s, s->l1_offset, s->l1_size, &s->l1)) < 0 ||
	    (r = read_table(s, s->rt_offset, s->rt_entries, &s->rt)) < 0)
		FAIL("qcow2: cannot read metadata tables: %s", g_strerror(-r));
	if ((r = qc_snapshots_load(s, err)) < 0)
		goto fail;
	if (bf_off && bf_size) {
		g_free(bs->backing_file);
		bs->backing_file = g_strndup((const char *)h + bf_off, bf_size);
	}
	bool lazy_def = s->compat & QC_COMPAT_LAZY;
	if (kl_opts_get_bool(o, "lazy-refcounts", lazy_def, &s->lazy, err) < 0) {
		r = -EINVAL;
		goto fail;
	}
	if (s->lazy && s->version < 3)
		FAIL("Lazy refcounts require a qcow2 image with at least qemu 1.1 compatibility level");
	if ((r = open_caches(s, o, err)) < 0)
		goto fail;
	s->zbuf = g_malloc0(cs);
	bs->size = s->size;
	bs->opaque = s;
	if (!s->readonly) {
		if (s->autoclear) {
			uint8_t b[8] = { 0 };
			s->autoclear = 0;
			if ((r = qc_write_header_field(s, 88, b, 8)) < 0)
				FAIL("qcow2: cannot update the header: %s", g_strerror(-r));
		}
		if (s->incompat & QC_INCOMPAT_DIRTY) {
			if ((r = qc_rebuild_refcounts(s, err)) < 0)
				goto fail;
			s->incompat &= ~QC_INCOMPAT_DIRTY;
			if ((r = write_incompat(s)) < 0)
				FAIL("qcow2: cannot update the header: %s", g_strerror(-r));
		}
	}
	g_free(h);
	return 0;
fail:
	g_free(h);
	bs->opaque = NULL;
	qcow2_free_state(s);
	return r < 0 ? r : -EINVAL;
}

static void qcow2_close(struct kl_bnode *bs)
{
	struct qcow2 *s = bs->opaque;
	if (!s)
		return;
	if (!s->readonly && !s->corrupt) {
		/* (a corrupt image's metadata is not written any more, as QEMU) */
		int r = qc_writeback(s);
		if (r >= 0)
			r = kl_bnode_flush_sync(bs->file);
		if (r >= 0 && (s->incompat & QC_INCOMPAT_DIRTY)) {
			s->incompat &= ~QC_INCOMPAT_DIRTY;
			write_incompat(s);
		}
		if (r < 0)
			fprintf(stderr, "qcow2: %s: metadata write-back failed: %s\n",
				bs->filename ? bs->filename : "", g_strerror(-r));
	}
	qcow2_free_state(s);
	bs->opaque = NULL;
}

static void qcow2_info(struct kl_bnode *bs, JsonObject *img)
{
	struct qcow2 *s = bs->opaque;
	json_object_set_string_member(img, "compat", s->version == 2 ? "0.10" : "1.1");
	if (s->version >= 3)
		json_object_set_boolean_member(img, "lazy-refcounts",
					       (s->compat & QC_COMPAT_LAZY) != 0);
	json_object_set_int_member(img, "refcount-bits", s->rc_bits);
	json_object_set_boolean_member(img, "corrupt", s->corrupt);
	json_object_set_boolean_member(img, "extended-l2", s->ext_l2);
	json_object_set_string_member(img, "compression-type",
				      s->compression_type ? "zstd" : "zlib");
}

static uint32_t qcow2_cluster_size(struct kl_bnode *bs)
{
	struct qcow2 *s = bs->opaque;
	return (uint32_t)s->cluster_size;
}

static int qcow2_create(const char *filename, uint64_t size, const char *backing,
			const char *backing_fmt, char **err)
{
	const uint64_t cs = 65536, l2e = cs / 8;
	uint64_t l1n = (size + l2e * cs - 1) / (l2e * cs);
	if (!l1n)
		l1n = 1;
	uint64_t l1c = (l1n * 8 + cs - 1) / cs;
	if (size > (1ull << 62) || 3 + l1c > cs * 8 / 16) {
		*err = g_strdup("qcow2: image size too large");
		return -EFBIG;
	}
	size_t blen = backing ? strlen(backing) : 0, flen = backing_fmt ? strlen(backing_fmt) : 0;
	if (blen > 1023 || flen > 1023) {
		*err = g_strdup("qcow2: backing file name too long");
		return -EINVAL;
	}
	uint8_t *buf = g_malloc0((3 + l1c) * cs);
	uint8_t *h = buf;
	kl_put_be32(h, QC_MAGIC);
	kl_put_be32(h + 4, 3);
	kl_put_be32(h + 20, 16);
	kl_put_be64(h + 24, size);
	kl_put_be32(h + 36, (uint32_t)l1n);
	kl_put_be64(h + 40, 3 * cs);
	kl_put_be64(h + 48, cs);
	kl_put_be32(h + 56, 1);
	kl_put_be32(h + 96, 4);
	kl_put_be32(h + 100, 112);
	uint64_t off = 112;
	if (backing && backing_fmt) {
		kl_put_be32(h + off, EXT_BACKING_FMT);
		kl_put_be32(h + off + 4, (uint32_t)flen);
		memcpy(h + off + 8, backing_fmt, flen);
		off += 8 + ((flen + 7) & ~(size_t)7);
	}
	off += 8; /* end of extensions */
	if (backing) {
		kl_put_be64(h + 8, off);
		kl_put_be32(h + 16, (uint32_t)blen);
		memcpy(h + off, backing, blen);
	}
	kl_put_be64(buf + cs, 2 * cs);
	for (uint64_t c = 0; c < 3 + l1c; c++)
		kl_put_be16(buf + 2 * cs + 2 * c, 1);
	int fd = open(filename, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		int e = errno;
		*err = g_strdup_printf("qcow2: cannot create %s: %s", filename, g_strerror(e));
		g_free(buf);
		return -e;
	}
	size_t total = (3 + l1c) * cs, done = 0;
	int r = 0;
	while (done < total) {
		ssize_t n = pwrite(fd, buf + done, total - done, (off_t)done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			r = n < 0 ? -errno : -EIO;
			break;
		}
		done += (size_t)n;
	}
	if (r == 0 && fsync(fd) < 0)
		r = -errno;
	close(fd);
	g_free(buf);
	if (r < 0)
		*err = g_strdup_printf("qcow2: cannot write %s: %s", filename, g_strerror(-r));
	return r;
}

const struct kl_bdrv kl_bdrv_qcow2 = {
	.name = "qcow2",
	.has_backing = true,
	.meta_cache = true,
	.probe = qcow2_probe,
	.open = qcow2_open,
	.close = qcow2_close,
	.preadv = qc_preadv,
	.pwritev = qc_pwritev,
	.flush = qc_flush,
	.discard = qc_discard,
	.write_zeroes = qc_write_zeroes,
	.snapshot_create = qc_snapshot_create,
	.snapshot_delete = qc_snapshot_delete,
	.snapshot_list = qc_snapshot_list,
	.snapshot_create_vm = qc_snapshot_create_vm,
	.snapshot_goto = qc_snapshot_goto,
	.snapshot_vmstate_read = qc_snapshot_vmstate_read,
	.info = qcow2_info,
	.cluster_size = qcow2_cluster_size,
	.create = qcow2_create,
};
