/* qcow2 format driver: internal state shared by qcow2*.c. */
#ifndef KVMLITE_BLOCK_QCOW2_H
#define KVMLITE_BLOCK_QCOW2_H

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>

#include "kvmlite/byteorder.h"
#include "node.h"

#define QC_MAGIC 0x514649fbu
#define QC_OFLAG_COPIED (1ull << 63)
#define QC_OFLAG_COMPRESSED (1ull << 62)
#define QC_OFLAG_ZERO 1ull
#define QC_L1E_MASK 0x00fffffffffffe00ull
#define QC_L2E_MASK 0x00fffffffffffe00ull
#define QC_RTE_MASK 0xfffffffffffffe00ull

#define QC_INCOMPAT_DIRTY (1ull << 0)
#define QC_INCOMPAT_CORRUPT (1ull << 1)
#define QC_INCOMPAT_DATA_FILE (1ull << 2)
#define QC_INCOMPAT_COMPRESSION (1ull << 3)
#define QC_INCOMPAT_EXTL2 (1ull << 4)
#define QC_INCOMPAT_KNOWN 0x1full
#define QC_COMPAT_LAZY (1ull << 0)

#define QC_MAX_L1_BYTES (32u << 20)
#define QC_MAX_RT_BYTES (8u << 20)
#define QC_MAX_SNAPSHOTS 65536
#define QC_MAX_HOST_OFFSET (1ull << 56)

struct qc_slice {
	uint64_t off;       /* host offset of the slice (key) */
	uint8_t *data;
	uint64_t lru;
	bool dirty;
	bool valid;
};

struct qc_cache {
	struct qc_slice *e;
	unsigned n;
	size_t size;        /* bytes per entry */
	uint64_t tick;
	bool is_l2;
	GHashTable *map;    /* &slice->off -> slice */
};

struct qc_snap {
	uint64_t l1_offset;
	uint32_t l1_size;
	char *id, *name;
	uint32_t date_sec, date_nsec;
	uint64_t vm_clock;
	uint64_t vm_state_size;
	uint64_t disk_size;
	uint64_t icount;     /* (uint64_t)-1: absent */
	uint32_t extra_size;
	uint8_t *extra;      /* raw extra data (kept for unknown fields) */
};

/* A cluster being allocated by a write in flight. */
struct qc_inflight {
	uint64_t ci;
	struct qc_inflight *next;
};

struct qc_free {
	uint64_t off, len;   /* bytes; every cluster touched is freed once */
};

struct qcow2 {
	struct kl_bnode *bs;
	int version;
	unsigned cluster_bits;
	uint64_t cluster_size;
	bool ext_l2;
	unsigned l2e_size;          /* 8 or 16 */
	uint64_t l2_entries;        /* per table */
	uint64_t sc_size;           /* subcluster size (ext_l2) */
	uint64_t size;
	uint32_t l1_size;
	uint64_t l1_offset;
	uint64_t *l1;
	uint64_t rt_offset;
	uint32_t rt_clusters;
	uint64_t rt_entries;
	uint64_t *rt;
	unsigned rc_order, rc_bits;
	uint64_t rb_entries;
	uint64_t rc_max;
	uint32_t nb_snapshots;
	uint64_t snapshots_offset;
	uint64_t snapshots_size;    /* bytes of the table on disk */
	struct qc_snap *snaps;
	uint64_t incompat, compat, autoclear;
	uint32_t header_length;
	int compression_type;       /* 0 zlib, 1 zstd */
	bool lazy;
	bool readonly;
	bool corrupt;
	size_t slice_size;
	uint64_t slice_entries;
	struct qc_cache l2c, rbc;
	uint64_t free_hint;         /* cluster index */
	GArray *pending_free;       /* struct qc_free, applied after L2 writeback */
	struct qc_inflight *inflight;
	GQueue waiters;             /* struct qc_req * waiting for an allocation */
	uint8_t *zbuf;              /* cluster_size zeroes */
	uint64_t flen_cache;        /* file length seen last (validation) */
	char *feature_names[64 * 3];
};

/* A metadata transaction (qcow2_txn.c): refcounts of the old and the new
 * image; every change becomes visible at once in qc_txn_commit. */
struct qc_txn {
	struct qcow2 *s;
	GPtrArray *rbs;             /* struct txn_rb *, refcount blocks touched */
	GHashTable *map;            /* &rti -> struct txn_rb */
	uint64_t hint;              /* clusters below are not free */
};

/* What the header switches to (bytes 36..71; the refcount table is the
 * transaction's). */
struct qc_txn_hdr {
	uint32_t l1_size;
	uint64_t l1_offset;
	uint32_t nb_snapshots;
	uint64_t snapshots_offset;
};

/* qcow2.c */
int qc_write_header_field(struct qcow2 *s, uint64_t off, const void *buf, size_t len);
int qc_mark_corrupt(struct qcow2 *s, const char *what);
int qc_set_dirty(struct qcow2 *s);
int qc_write_l1_entry(struct qcow2 *s, uint32_t idx);
uint64_t qc_file_len(struct qcow2 *s);
bool qc_offset_ok(struct qcow2 *s, uint64_t off, uint64_t len);

/* qcow2_cache.c */
int qc_cache_init(struct qc_cache *c, unsigned n, size_t size, bool is_l2);
void qc_cache_free(struct qc_cache *c);
/* Entry at host offset off (load from disk when !fresh; fresh: zeroed). */
struct qc_slice *qc_cache_get(struct qcow2 *s, struct qc_cache *c, uint64_t off, bool fresh,
			      int *err);
void qc_cache_dirty(struct qc_cache *c, struct qc_slice *sl);
int qc_cache_write_dirty(struct qcow2 *s, struct qc_cache *c, int *nwritten);
void qc_cache_drop(struct qc_cache *c, uint64_t off, uint64_t len);

/* qcow2_refcount.c */
int qc_rc_get(struct qcow2 *s, uint64_t ci, uint64_t *out);
int qc_rc_update(struct qcow2 *s, uint64_t ci, int64_t delta);
int64_t qc_alloc(struct qcow2 *s, uint64_t n);
/* rc -1 on every cluster of [off, off+len) now */
int qc_free_now(struct qcow2 *s, uint64_t off, uint64_t len);
/* after the next L2 writeback */
void qc_free_later(struct qcow2 *s, uint64_t off, uint64_t len);
int qc_rc_flush(struct qcow2 *s);
int qc_writeback(struct qcow2 *s);
int qc_rebuild_refcounts(struct qcow2 *s, char **err);
/* rc +delta on every cluster of [off,off+len) */
int qc_rc_range(struct qcow2 *s, uint64_t off, uint64_t len, int64_t delta);

uint64_t qc_rb_get(struct qcow2 *s, const uint8_t *d, uint64_t i);
void qc_rb_set(struct qcow2 *s, uint8_t *d, uint64_t i, uint64_t v);

/* qcow2_txn.c: begin with both caches written back (qc_writeback); until
 * the commit nothing the old image uses is written. */
void qc_txn_begin(struct qcow2 *s, struct qc_txn *t);
void qc_txn_free(struct qc_txn *t);
/* refcount of cluster ci in the old image (old) or the new one */
int qc_txn_rc(struct qc_txn *t, uint64_t ci, bool old, uint64_t *out);
int qc_txn_add(struct qc_txn *t, uint64_t ci, int64_t delta);
int qc_txn_add_range(struct qc_txn *t, uint64_t off, uint64_t len, int64_t delta);
/* n clusters free in both images, refcount 1 in the new one: offset */
int64_t qc_txn_alloc(struct qc_txn *t, uint64_t n);
/* Write the refcount blocks and table, then the header; on success the
 * in-memory state (refcount table, L1 and snapshot table fields, caches)
 * is the new image's.  An error before the header leaves the old image;
 * one writing the header marks the image corrupt. */
int qc_txn_commit(struct qc_txn *t, const struct qc_txn_hdr *h);

/* qcow2_map.c */
int qc_l2_get(struct qcow2 *s, uint64_t ci, uint64_t *e, uint64_t *bmp);
int qc_l2_prepare(struct qcow2 *s, uint64_t ci);
int qc_l2_set(struct qcow2 *s, uint64_t ci, uint64_t e, uint64_t bmp);
/* L2 table entries (via cache) for any L2 table offset; idx < l2_entries. */
int qc_l2t_get(struct qcow2 *s, uint64_t l2off, uint64_t idx, uint64_t *e, uint64_t *bmp);
int qc_l2t_set(struct qcow2 *s, uint64_t l2off, uint64_t idx, uint64_t e, uint64_t bmp);
void qc_compressed_range(struct qcow2 *s, uint64_t e, uint64_t *off, uint64_t *len);
int qc_preadv(struct kl_bnode *bs, uint64_t off, const struct iovec *iov, int iovcnt,
	      uint64_t len, kl_blk_cb cb, void *opaque);
int qc_pwritev(struct kl_bnode *bs, uint64_t off, const struct iovec *iov, int iovcnt,
	       uint64_t len, kl_blk_cb cb, void *opaque);
int qc_flush(struct kl_bnode *bs, kl_blk_cb cb, void *opaque);
int qc_discard(struct kl_bnode *bs, uint64_t off, uint64_t len, kl_blk_cb cb, void *opaque);
int qc_write_zeroes(struct kl_bnode *bs, uint64_t off, uint64_t len, unsigned flags,
		    kl_blk_cb cb, void *opaque);

/* qcow2_compress.c */
int qc_decompress(int type, const uint8_t *src, size_t slen, uint8_t *dst, size_t dlen);

/* qcow2_snapshot.c */
int qc_snapshots_load(struct qcow2 *s, char **err);
void qc_snapshots_free(struct qcow2 *s);
int qc_snapshot_create(struct kl_bnode *bs, const char *id, const char *name, char **err);
int qc_snapshot_delete(struct kl_bnode *bs, const char *id, const char *name, char **err);
int qc_snapshot_list(struct kl_bnode *bs, GArray *out);
/* A snapshot with VM state vm[0..vmlen) in its VM state area (vm_clock:
 * guest clock, ns). */
int qc_snapshot_create_vm(struct kl_bnode *bs, const char *id, const char *name,
			  const uint8_t *vm, uint64_t vmlen, uint64_t vm_clock, char **err);
/* Revert the active image to snapshot id. */
int qc_snapshot_goto(struct kl_bnode *bs, const char *id, char **err);
/* The first len bytes of snapshot id's VM state. */
int qc_snapshot_vmstate_read(struct kl_bnode *bs, const char *id, uint8_t *buf, uint64_t len,
			     char **err);

#endif
