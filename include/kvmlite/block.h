/* Block layer (src/block/): backends (what devices attach to) over a graph
 * of nodes: format drivers (raw, qcow2) over the file protocol and its
 * engines; see src/block/node.h for the graph and docs/block.md.
 *
 *   engine  aio=threads  worker pool, preadv/pwritev
 *           aio=native   libaio io_submit, completion eventfd on the main loop
 *           aio=io_uring liburing, completion eventfd on the main loop
 *   cache   none         O_DIRECT (unaligned guest buffers are bounced)
 *           writethrough O_DSYNC
 *           writeback    page cache; FLUSH = fdatasync
 *           directsync   O_DIRECT|O_DSYNC
 *           unsafe       page cache; FLUSH ignored
 *   aio=native needs cache=none or directsync (as in QEMU).
 *
 * Completion callbacks always run on the main loop thread with the BQL held,
 * never inside kl_blk_submit(), and never on a vCPU thread.
 */
#ifndef KVMLITE_BLOCK_H
#define KVMLITE_BLOCK_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "kvmlite/opts.h"

enum kl_blk_engine { KL_AIO_THREADS, KL_AIO_NATIVE, KL_AIO_IO_URING };
enum kl_blk_cache { KL_CACHE_NONE, KL_CACHE_WRITETHROUGH, KL_CACHE_WRITEBACK,
		    KL_CACHE_DIRECTSYNC, KL_CACHE_UNSAFE };
enum kl_blk_op { KL_BLK_READ, KL_BLK_WRITE, KL_BLK_FLUSH, KL_BLK_DISCARD,
		 KL_BLK_WRITE_ZEROES };

struct kl_block_opts {
	const char *id;
	const char *file;
	const char *format;     /* "raw" (default unless probe), "qcow2" */
	bool probe;             /* format NULL: probe it (QEMU's -drive) */
	enum kl_blk_engine engine;
	enum kl_blk_cache cache;
	bool readonly;
	bool discard_unmap;     /* discard=unmap (default ignore, as QEMU) */
	struct kl_opts *fmt_opts; /* unused keys go to the format node (may be NULL) */
};

struct kl_blk_stats {
	uint64_t rd_ops, wr_ops, flush_ops, discard_ops, wz_ops;
	uint64_t rd_bytes, wr_bytes;
	uint64_t rd_total_ns, wr_total_ns, flush_total_ns;
	uint64_t failed_rd_ops, failed_wr_ops, failed_flush_ops;
};

struct kl_blockdev;
struct kl_bnode;
struct kl_throttle_config;

struct kl_blockdev *kl_blockdev_open(const struct kl_block_opts *o, char **err);
void kl_blockdev_close(struct kl_blockdev *bd); /* drains in-flight requests */

/* -drive option string -> opened and registered by id (QEMU 7.2's auto id
 * "<if><unit>" -- "virtio0", "none1" -- when absent; index= picks the
 * unit).  Consumes file, id, if, format, cache, aio, readonly, media=disk,
 * index; rejects others.  *if_out gets the if= value
 * ("virtio" default for kvmlite; "none" means a -device will attach it). */
struct kl_blockdev *kl_drive_add(struct kl_opts *opts, char **if_out, char **err);
struct kl_blockdev *kl_blockdev_find(const char *id);
/* A backend over root (one reference taken), not registered. */
struct kl_blockdev *kl_blockdev_new(const char *id, struct kl_bnode *root);
void kl_blockdev_register(struct kl_blockdev *bd);
/* -device ...,drive=X: the backend with id X, or a new anonymous one over
 * the node named X (QEMU's -blockdev + -device). */
struct kl_blockdev *kl_blockdev_for_device(const char *drive, char **err);
struct kl_bnode *kl_blockdev_root(const struct kl_blockdev *bd);
struct kl_bnode *kl_bnode_find(const char *node_name); /* NULL: none */
/* Wait for the requests in flight; quiesce also holds new ones back until
 * quiesce_end (nested). */
void kl_blockdev_drain(struct kl_blockdev *bd);
void kl_blockdev_quiesce_begin(struct kl_blockdev *bd);
void kl_blockdev_quiesce_end(struct kl_blockdev *bd);
/* I/O limits of the backend (QEMU's throttling.* / block_set_io_throttle;
 * checked here).  Limits set: the backend joins the throttle group called
 * group (created if none has that name) unless it is in one already and
 * group is NULL or that one's name; the limits become the group's (every
 * member's).  All zero: the backend leaves its group (the group keeps its
 * limits).  Queued requests are retried at once. */
int kl_blockdev_set_throttle(struct kl_blockdev *bd, const struct kl_throttle_config *cfg,
			     const char *group, char **err);
/* The limits in force, NULL when none; *group (may be NULL): the name of
 * the backend's throttle group. */
const struct kl_throttle_config *kl_blockdev_throttle(const struct kl_blockdev *bd,
						      const char **group);
/* Point the backend at another root (external snapshots), quiesced. */
int kl_blockdev_replace_root(struct kl_blockdev *bd, struct kl_bnode *root, char **err);
/* Iterate over all registered drives in creation order. */
void kl_blockdev_foreach(void (*fn)(struct kl_blockdev *bd, void *opaque), void *opaque);
/* -blockdev SPEC: JSON ('{...}') or dotted keys (driver=file,filename=...,
 * node-name=N): a user-added node (src/block/blockdev.c). */
struct kl_bnode *kl_blockdev_add_spec(const char *spec, char **err);
/* Close every registered drive and the user-added nodes (at exit). */
void kl_blockdev_close_all(void);

const char *kl_blockdev_id(const struct kl_blockdev *bd);
const char *kl_blockdev_filename(const struct kl_blockdev *bd);
uint64_t kl_blockdev_size(const struct kl_blockdev *bd);       /* bytes */
bool kl_blockdev_readonly(const struct kl_blockdev *bd);
uint32_t kl_blockdev_block_size(const struct kl_blockdev *bd); /* logical, 512 */
enum kl_blk_engine kl_blockdev_engine(const struct kl_blockdev *bd);
enum kl_blk_cache kl_blockdev_cache(const struct kl_blockdev *bd);
const char *kl_blk_engine_name(enum kl_blk_engine e);          /* "threads" ... */
const char *kl_blk_cache_name(enum kl_blk_cache c);            /* "none" ... */
/* aio= value -> engine; -1 for an unknown name. */
int kl_blk_engine_parse(const char *name, enum kl_blk_engine *out);
void kl_blockdev_get_stats(const struct kl_blockdev *bd, struct kl_blk_stats *out);
/* Name of the device model attached (for query-block), set by the device. */
void kl_blockdev_set_attached(struct kl_blockdev *bd, const char *qdev);
const char *kl_blockdev_attached(const struct kl_blockdev *bd);

/* aio=threads: worker threads per drive opened afterwards (default 16). */
void kl_blk_set_pool_size(unsigned nthreads);
unsigned kl_blk_pool_size(void);
/* At most this many requests made by completion callbacks are held back
 * and passed to the kernel in one io_submit/io_uring_enter (or one hand-off
 * to the workers); 0 = the default (4).  A file node's aio-max-batch=N
 * overrides it for that file.  Small batches keep the device busy: a batch
 * the size of the queue depth leaves it idle until the whole batch is in. */
void kl_blk_set_max_batch(unsigned n);
/* Busy-poll for further completions for up to ns after handling some, while
 * requests are in flight (0 = off, the default; like QEMU's poll-max-ns). */
void kl_blk_set_poll_ns(uint64_t ns);
/* Files opened afterwards with O_DIRECT use at least this alignment (0 or 1:
 * what the file says).  For tests: a 4 KiB-sector disk on a 512-byte one. */
void kl_blk_set_min_align(uint32_t align);
/* O_DIRECT alignment in use (1 when the page cache is used). */
uint32_t kl_blockdev_dio_align(const struct kl_blockdev *bd);
/* Requests submitted and not yet completed. */
unsigned kl_blockdev_in_flight(const struct kl_blockdev *bd);

/* ret: bytes transferred (>=0) or -errno. */
typedef void (*kl_blk_cb)(void *opaque, long ret);
/* READ/WRITE use iov (buffers in guest RAM, any alignment); FLUSH ignores
 * offset/iov; DISCARD/WRITE_ZEROES use offset+len and no iov.  Writes on a
 * read-only device complete with -EROFS; ranges past the end with -EINVAL.
 * Returns 0 (cb will be called later) or -errno (cb will not be called):
 * -EINVAL only for a bad op, NULL cb or a bad iovec (iovcnt < 0 or > IOV_MAX);
 * -EROFS/-EINVAL for the request itself come through cb.  READ/WRITE complete
 * with the byte count, FLUSH/DISCARD/WRITE_ZEROES with 0.  Call with the BQL
 * held; do not close a device from one of its completion callbacks. */
/* The checks of kl_blk_submit's arguments: -EINVAL for a bad op, a NULL cb
 * or a bad iovec; READ/WRITE set *len to the iovec's total. */
int kl_blk_req_len(enum kl_blk_op op, kl_blk_cb cb, const struct iovec *iov, int iovcnt,
		   uint64_t *len);
int kl_blk_submit(struct kl_blockdev *bd, enum kl_blk_op op, uint64_t offset,
		  const struct iovec *iov, int iovcnt, uint64_t len,
		  kl_blk_cb cb, void *opaque);

#endif
