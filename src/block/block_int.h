/* Block layer internals shared by block.c, drive.c and the engines. */
#ifndef KVMLITE_BLOCK_INT_H
#define KVMLITE_BLOCK_INT_H

#include <libaio.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "kvmlite/block.h"

/* What an engine executes for one request phase. */
enum kl_blk_eop { KL_EOP_READ, KL_EOP_WRITE, KL_EOP_FLUSH, KL_EOP_FALLOC };

struct kl_blk_req {
	struct kl_blockdev *bd;
	struct kl_blk_req *next;        /* engine queues / completion lists */

	/* as submitted */
	enum kl_blk_op op;
	uint64_t offset, len;
	struct iovec *giov;             /* copy of the caller's iovec */
	int giovcnt;
	kl_blk_cb cb;
	void *opaque;
	uint64_t start_ns;

	/* current engine phase: eop at eoff, eiov (advanced on short I/O) */
	enum kl_blk_eop eop;
	int falloc_mode;
	uint64_t eoff, elen;
	struct iovec *eiov;
	int eiovcnt;
	uint64_t edone;                 /* bytes of this phase done */

	/* O_DIRECT bounce buffer covering [boff, boff + blen) */
	void *bounce;
	uint64_t boff, blen;
	struct iovec biov;
	bool rmw;                       /* write phase 1: read the aligned span */
	struct iovec *ziov;             /* write-zeroes emulated with writes */

	/* O_DIRECT write ordering (block.c): WRITE/WRITE_ZEROES on a direct
	 * device cover the aligned span [sbeg, send); a request whose range is
	 * not aligned is read-modify-written and "serial": it does not run
	 * alongside another write whose span overlaps its own. */
	bool tracked, serial;
	uint64_t sbeg, send;
	struct kl_blk_req *wprev, *wnext; /* bd->writes (in flight) or bd->waiting */

	/* engine private */
	struct iocb iocb;
	bool via_pool;                  /* native: op sent to the thread pool */
	long ret;                       /* thread pool result */
};

struct kl_tpool;

struct kl_blk_engine_ops {
	const char *name;
	int (*init)(struct kl_blockdev *bd, char **err);
	/* Start one phase of r (r->eop ...).  Must not complete r inline:
	 * results go through kl_blk_io_done() from ->poll() on the main loop. */
	void (*submit)(struct kl_blockdev *bd, struct kl_blk_req *r);
	/* Harvest completions (main loop or drain, BQL held). */
	void (*poll)(struct kl_blockdev *bd);
	/* Called after poll(): push batched submissions to the kernel. */
	void (*flush_batch)(struct kl_blockdev *bd);
	/* Optional: completions are ready to be polled (no syscall). */
	bool (*has_completions)(struct kl_blockdev *bd);
	void (*fini)(struct kl_blockdev *bd);
};

struct kl_blockdev {
	char *id;
	char *filename;
	char *attached;
	int fd;
	int efd;                        /* completion eventfd (all engines) */
	unsigned efd_watch;
	uint64_t size;
	uint32_t align;                 /* O_DIRECT offset/length alignment (1 if cached) */
	uint32_t mem_align;             /* O_DIRECT buffer alignment (1 if cached) */
	bool direct, readonly, is_bdev;
	bool no_zero_range, no_punch;   /* fallocate modes found unsupported */
	enum kl_blk_engine engine;
	enum kl_blk_cache cache;
	const struct kl_blk_engine_ops *ops;
	void *engine_state;
	struct kl_tpool *pool;          /* threads engine, native fallbacks */
	bool in_poll;                   /* inside the completion handler: batch submits */

	unsigned in_flight;
	struct kl_blk_req *writes;      /* tracked writes in flight */
	struct kl_blk_req *waiting, *waiting_tail; /* tracked writes held back, FIFO */
	unsigned n_serial;              /* serial requests in flight or waiting */
	struct kl_blk_req *deferred, **deferred_tail; /* complete on next poll */
	struct kl_blk_stats stats;
	bool registered;
};

extern const struct kl_blk_engine_ops kl_blk_threads_ops;
extern const struct kl_blk_engine_ops kl_blk_native_ops;
extern const struct kl_blk_engine_ops kl_blk_io_uring_ops;

/* Result of one engine phase (bytes or -errno); main loop, BQL held. */
void kl_blk_io_done(struct kl_blk_req *r, long ret);
/* Wake the completion handler (any thread). */
void kl_blk_kick(struct kl_blockdev *bd);

/* Thread pool (threads.c): workers run the phase of r synchronously with
 * kl_blk_do_sync(), completed requests are handed back through the device
 * eventfd and kl_tpool_poll(). */
struct kl_tpool *kl_tpool_new(struct kl_blockdev *bd, unsigned nthreads, char **err);
void kl_tpool_submit(struct kl_tpool *p, struct kl_blk_req *r);
void kl_tpool_poll(struct kl_tpool *p);
void kl_tpool_flush(struct kl_tpool *p);
bool kl_tpool_has_done(struct kl_tpool *p);
void kl_tpool_free(struct kl_tpool *p);
long kl_blk_do_sync(struct kl_blockdev *bd, struct kl_blk_req *r);

/* registry (drive.c) */
void kl_blockdev_unregister(struct kl_blockdev *bd);

#endif
