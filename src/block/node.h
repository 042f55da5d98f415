/* Block node graph (src/block/): format and protocol drivers behind one ops
 * table, like QEMU's BlockDriver.
 *
 *   backend (backend.c)  what a device attaches to: id, stats, registry;
 *        |               kl_blk_submit() -> kl_bnode_*() on its root node
 *   format node          driver "raw" (raw.c) or "qcow2" (qcow2*.c), with
 *        | file          a "file" child (a protocol node) and, for formats
 *        | backing       that have one, an optional "backing" child (a
 *        v               format node, opened read-only)
 *   protocol node        driver "file" (file.c): fd, cache mode, O_DIRECT
 *                        bounce buffers, write serialisation and the engine
 *                        (threads.c, native.c, io_uring.c)
 *
 * A new format = one file with one `const struct kl_bdrv` listed in
 * node.c's driver table.
 *
 * Threading: everything here runs on the main loop thread with the BQL held.
 * Asynchronous calls return 0 and call cb(opaque, ret) later (never inside
 * the call), or return -errno and never call cb.  ret is the byte count for
 * reads/writes and 0 for the others, or -errno.
 * Synchronous calls (*_sync) block; formats use them for metadata only.
 */
#ifndef KVMLITE_BLOCK_NODE_H
#define KVMLITE_BLOCK_NODE_H

#include <json-glib/json-glib.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "kvmlite/block.h"
#include "kvmlite/opts.h"

struct kl_bnode;
struct kl_bfile;

/* write_zeroes flags */
#define KL_BZ_MAY_UNMAP 1u /* may deallocate (discard=unmap) */

/* Options a child inherits from its parent when the user did not set them
 * on the child (like QEMU's inherited cache.* / read-only). */
struct kl_bnode_inherit {
	bool readonly;
	bool direct;          /* cache.direct */
	bool no_flush;        /* cache.no-flush */
	bool writethrough;    /* -drive cache=writethrough|directsync: O_DSYNC */
	bool discard_unmap;   /* discard=unmap */
	enum kl_blk_engine engine;
};

struct kl_snapshot_info {
	char id[128];
	char name[256];
	uint64_t vm_state_size;
	uint64_t date_sec, date_nsec;   /* host wall clock at creation */
	uint64_t vm_clock_ns;           /* guest clock at creation */
	uint64_t icount;                /* (uint64_t)-1: absent */
};

struct kl_bdrv {
	const char *name;               /* "file", "raw", "qcow2" */
	bool protocol;                  /* opens `filename` itself (no file child) */
	bool has_backing;               /* format with a backing child */
	bool meta_cache;                /* metadata cached in memory: writethrough
					   backends flush after each write */

	/* Format probing: score (0 = not this format, 100 = certain) for the
	 * first bytes of a file (len may be < 512 for tiny files). */
	int (*probe)(const uint8_t *buf, size_t len);

	/* bs->file is open (formats).  Consume the driver's own keys from o
	 * (kl_opts_get marks them used; the caller rejects unused ones).  Set
	 * bs->size and bs->opaque; formats with a backing file set
	 * bs->backing_file / bs->backing_fmt from the image, and node.c opens the
	 * backing child after open() unless the user gave `backing`. */
	int (*open)(struct kl_bnode *bs, struct kl_opts *o, const struct kl_bnode_inherit *in,
		    char **err);
	/* Called after the backing child is attached (may be NULL). */
	int (*backing_attached)(struct kl_bnode *bs, char **err);
	/* Write back metadata (may block), free everything but bs itself. */
	void (*close)(struct kl_bnode *bs);
	/* Start every request the driver holds back (a filter's queues; may
	 * be NULL); kl_bnode_drain calls it. */
	void (*drain)(struct kl_bnode *bs);

	/* Asynchronous I/O; range checked by node.c (within bs->size, not
	 * read-only for writes). */
	int (*preadv)(struct kl_bnode *bs, uint64_t off, const struct iovec *iov, int iovcnt,
		      uint64_t len, kl_blk_cb cb, void *opaque);
	int (*pwritev)(struct kl_bnode *bs, uint64_t off, const struct iovec *iov, int iovcnt,
		       uint64_t len, kl_blk_cb cb, void *opaque);
	int (*flush)(struct kl_bnode *bs, kl_blk_cb cb, void *opaque);
	int (*discard)(struct kl_bnode *bs, uint64_t off, uint64_t len, kl_blk_cb cb, void *opaque);
	int (*write_zeroes)(struct kl_bnode *bs, uint64_t off, uint64_t len, unsigned flags,
			    kl_blk_cb cb, void *opaque);

	/* Synchronous I/O (protocol drivers): whole transfers or -errno; a read
	 * past the end of the file fills zeroes.  Any alignment. */
	int (*pread_sync)(struct kl_bnode *bs, uint64_t off, void *buf, size_t len);
	int (*pwrite_sync)(struct kl_bnode *bs, uint64_t off, const void *buf, size_t len);
	int (*flush_sync)(struct kl_bnode *bs);
	int (*truncate_sync)(struct kl_bnode *bs, uint64_t size);
	/* Current length of the underlying file (protocol drivers). */
	uint64_t (*file_length)(struct kl_bnode *bs);

	/* Internal snapshots (bs drained by the caller; ids as QEMU: the
	 * driver assigns the next free numeric id when id is NULL). */
	int (*snapshot_create)(struct kl_bnode *bs, const char *id, const char *name, char **err);
	int (*snapshot_delete)(struct kl_bnode *bs, const char *id, const char *name, char **err);
	/* Appends struct kl_snapshot_info to out. */
	int (*snapshot_list)(struct kl_bnode *bs, GArray *out);
	/* snapshot-save / -load (may be NULL): a snapshot with VM state
	 * (stored in the image's guest-invisible VM state area), revert the
	 * disk to a snapshot, read the first len bytes of its VM state. */
	int (*snapshot_create_vm)(struct kl_bnode *bs, const char *id, const char *name,
				  const uint8_t *vm, uint64_t vmlen, uint64_t vm_clock, char **err);
	int (*snapshot_goto)(struct kl_bnode *bs, const char *id, char **err);
	int (*snapshot_vmstate_read)(struct kl_bnode *bs, const char *id, uint8_t *buf,
				     uint64_t len, char **err);

	/* query-block "format-specific" data (the "data" object of
	 * ImageInfoSpecific, e.g. compat, cluster-size via image info). */
	void (*info)(struct kl_bnode *bs, JsonObject *img);
	uint32_t (*cluster_size)(struct kl_bnode *bs); /* 0: none */

	/* Create an empty image of this format at filename (blockdev-snapshot-
	 * sync); backing may be NULL. */
	int (*create)(const char *filename, uint64_t size, const char *backing,
		      const char *backing_fmt, char **err);
};

/* What QEMU 7.2 keeps per node (BlockDriverState) and query-blockstats
 * shows at node level; the request counters are the backend's. */
struct kl_bnode_stats {
	uint64_t wr_highest_offset;     /* end of the furthest write (any kind) */
	/* protocol nodes: discards passed to the file (driver-specific) */
	uint64_t discard_nb_ok, discard_nb_failed, discard_bytes_ok;
};

struct kl_bnode {
	char *node_name;                /* user's or "#blockNNN" */
	bool auto_name;
	const struct kl_bdrv *drv;
	void *opaque;                   /* driver state */
	struct kl_bnode *file;          /* child "file" (formats) */
	struct kl_bnode *backing;       /* child "backing" (NULL: none) */
	char *filename;                 /* protocol: the path; formats: file's */
	char *backing_file;             /* from the image header (NULL: none) */
	char *backing_fmt;
	uint64_t size;                  /* virtual size in bytes */
	bool readonly;
	bool discard_unmap;
	bool probed;                    /* format found by probing, not given */
	struct kl_bnode_inherit in;     /* what this node was opened with */
	unsigned refs;                  /* parents + backends + QMP (blockdev-add) */
	bool user_added;                /* by -blockdev / blockdev-add: a ref of its own */
	unsigned in_flight;             /* async requests started, not completed */
	struct kl_bnode_stats stats;
	/* protocol nodes: the file object */
	struct kl_bfile *bfile;
};

/* discard= value (unmap/on, ignore/off) -> *unmap; -1 for others. */
int kl_blk_discard_parse(const char *v, bool *unmap);
/* What -drive cache=C aio=E readonly=R mean for the nodes. */
struct kl_bnode_inherit kl_block_inherit(enum kl_blk_cache c, enum kl_blk_engine e, bool ro);

/* ---- driver table ---- */
const struct kl_bdrv *kl_bdrv_find(const char *name);
/* Probe the format of an open protocol node: "qcow2", or "raw" (with
 * *warn set to QEMU's warning text for the caller to print). */
const struct kl_bdrv *kl_bdrv_probe(struct kl_bnode *file, char **warn);
/* The driver (other than raw) that would claim a file starting with buf, or
 * NULL (len >= 512 for a meaningful answer). */
const struct kl_bdrv *kl_bdrv_probe_buf(const uint8_t *buf, size_t len);

/* ---- opening ----
 * o: keys of one node as QEMU's -blockdev has them (flat, dotted):
 * driver, node-name, read-only, auto-read-only, discard, cache.direct,
 * cache.no-flush, detect-zeroes (off only), driver keys, and the children
 * `file` / `backing`: a node name (a reference), "" (JSON null: none, for
 * backing), or nested keys "file.driver=file,file.filename=...".
 * Marks what it used; unused keys are an error naming the first.  The node
 * is returned with one reference held by the caller. */
struct kl_bnode *kl_bnode_open(struct kl_opts *o, const struct kl_bnode_inherit *in, char **err);
/* Open the image at filename with format (NULL: probe) on a new file node,
 * backing chain from the header (used for -drive and backing files). */
struct kl_bnode *kl_bnode_open_image(const char *filename, const char *format,
				     const struct kl_bnode_inherit *in, struct kl_opts *fmt_opts,
				     char **err);
struct kl_bnode *kl_bnode_find(const char *node_name);
void kl_bnode_ref(struct kl_bnode *bs);
void kl_bnode_unref(struct kl_bnode *bs); /* closes (children too) at 0 */
void kl_bnode_foreach(void (*fn)(struct kl_bnode *bs, void *opaque), void *opaque);
/* Resolve a backing file name as QEMU does: absolute stays, relative is
 * taken against the folder of the overlay's filename. */
char *kl_bnode_backing_path(const char *overlay_filename, const char *backing);

/* ---- I/O (checks the range and read-only; counts in_flight) ---- */
int kl_bnode_preadv(struct kl_bnode *bs, uint64_t off, const struct iovec *iov, int iovcnt,
		    kl_blk_cb cb, void *opaque);
int kl_bnode_pwritev(struct kl_bnode *bs, uint64_t off, const struct iovec *iov, int iovcnt,
		     kl_blk_cb cb, void *opaque);
int kl_bnode_flush(struct kl_bnode *bs, kl_blk_cb cb, void *opaque);
int kl_bnode_discard(struct kl_bnode *bs, uint64_t off, uint64_t len, kl_blk_cb cb, void *opaque);
int kl_bnode_write_zeroes(struct kl_bnode *bs, uint64_t off, uint64_t len, unsigned flags,
			  kl_blk_cb cb, void *opaque);
/* Call cb(opaque, ret) from a bottom half (for drivers that complete
 * without I/O: they must not call cb inside the submitting call). */
void kl_bnode_complete_later(kl_blk_cb cb, void *opaque, long ret);

int kl_bnode_pread_sync(struct kl_bnode *bs, uint64_t off, void *buf, size_t len);
int kl_bnode_pwrite_sync(struct kl_bnode *bs, uint64_t off, const void *buf, size_t len);
int kl_bnode_flush_sync(struct kl_bnode *bs);
int kl_bnode_truncate_sync(struct kl_bnode *bs, uint64_t size);
/* Test hook (meson option block_test_hooks): while armed, the process
 * SIGKILLs itself before the sync write or flush KVMLITE_BLOCK_CRASH_AT
 * names (a no-op without the hook).  Arm / disarm nest. */
void kl_bnode_crash_arm(bool on);
uint64_t kl_bnode_file_length(struct kl_bnode *bs);

/* Run the main context until bs and everything below it has nothing in
 * flight (main thread, BQL held). */
void kl_bnode_drain(struct kl_bnode *bs);

/* Backends whose root is bs: the count; the first max of them in out. */
unsigned kl_bnode_backends(struct kl_bnode *bs, struct kl_blockdev **out, unsigned max);

/* ---- -blockdev, blockdev-add and the QMP graph operations (blockdev.c);
 * errors are QEMU 7.2's texts ---- */
/* JSON object -> flat dotted options: nested objects "a.b", booleans
 * on/off, numbers in decimal, null "" (arrays: an error naming the key). */
struct kl_opts *kl_opts_from_json(JsonObject *obj, const char *src, char **err);
/* A -blockdev argument as QEMU 7.2 reads it: a JSON object when it starts
 * with '{' (one value only), else keyval dotted keys with the implied key
 * "driver" (kl_keyval_parse); flat options for kl_blockdev_add. */
struct kl_opts *kl_blockdev_parse_spec(const char *spec, char **err);
/* What is checked before a node opens: the driver exists, every top-level
 * key is one BlockdevOptions knows for it, node-name is given. */
int kl_blockdev_check(const struct kl_opts *o, char **err);
/* Check, then open a user-added node (it keeps the reference of its own). */
struct kl_bnode *kl_blockdev_add(struct kl_opts *o, char **err);
/* Drop the user's reference of every user-added node (at exit). */
void kl_blockdev_release_user_nodes(void);
int kl_blockdev_del(const char *node_name, char **err);
/* A backend id first, then a node name (QEMU's bdrv_lookup_bs). */
struct kl_bnode *kl_bnode_lookup(const char *device, const char *node, char **err);
int kl_block_snapshot_internal(const char *device, const char *name, char **err);
/* *out: the deleted snapshot. */
int kl_block_snapshot_delete_internal(const char *device, const char *id, const char *name,
				      struct kl_snapshot_info *out, char **err);
/* blockdev-snapshot-sync: existing false = mode absolute-paths (create). */
int kl_block_snapshot_sync(const char *device, const char *node_name, const char *file,
			   const char *snap_node, const char *format, bool existing, char **err);
/* blockdev-snapshot: node becomes overlay's backing; overlay the root. */
int kl_block_snapshot(const char *node, const char *overlay, char **err);

/* Quiesce the backends on bs (up to 16) and drain bs; resume them. */
struct kl_bnode_quiesce {
	struct kl_blockdev *bd[16];
	unsigned n;
};
void kl_bnode_quiesce_all(struct kl_bnode *bs, struct kl_bnode_quiesce *q);
void kl_bnode_resume_all(struct kl_bnode_quiesce *q);

/* ---- snapshot-save / -load / -delete over explicit node lists
 * (snapshot_vm.c; QEMU 7.2's bdrv_all_* texts) ---- */
struct kl_snap_devs {
	struct kl_bnode **bs;
	unsigned n;
};
/* Node names -> nodes; each must support snapshots ("No block device node
 * 'x'", "Device 'x' is writable but does not support snapshots"). */
int kl_snap_devs_resolve(const char *const *names, unsigned n, struct kl_snap_devs *d,
			 char **err);
void kl_snap_devs_free(struct kl_snap_devs *d);
/* The vmstate node: one of d's. */
struct kl_bnode *kl_snap_vmstate_bs(struct kl_snap_devs *d, const char *vmstate, char **err);
/* A snapshot whose id or name is tag (QEMU's bdrv_snapshot_find). */
bool kl_snap_find(struct kl_bnode *bs, const char *tag, struct kl_snapshot_info *out);
bool kl_snap_any_has(struct kl_snap_devs *d, const char *tag);
bool kl_snap_all_have(struct kl_snap_devs *d, const char *tag);
/* Callers stopped the guest and quiesced the devices. */
int kl_snap_all_create(struct kl_snap_devs *d, const char *tag, struct kl_bnode *vm_bs,
		       const uint8_t *vm, uint64_t vmlen, uint64_t vm_clock, char **err);
int kl_snap_all_goto(struct kl_snap_devs *d, const char *tag, char **err);
int kl_snap_all_delete(struct kl_snap_devs *d, const char *tag, char **err);
int kl_snap_vmstate_read(struct kl_bnode *bs, const char *id, uint8_t *buf, uint64_t len,
			 char **err);

#endif
