/* File protocol internals shared by file.c and the engines (threads.c,
 * native.c, io_uring.c).  The node graph is in node.h. */
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
	struct kl_bfile *bf;
	struct kl_blk_req *next;        /* engine queues / completion lists */

	/* as submitted */
	enum kl_blk_op op;
	uint64_t offset, len;
	struct iovec *giov;             /* copy of the caller's iovec */
	int giovcnt;
	kl_blk_cb cb;
	void *opaque;

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
	struct kl_blk_req *wprev, *wnext; /* bf->writes (in flight) or bf->waiting */

	/* engine private */
	struct iocb iocb;
	bool via_pool;                  /* native: op sent to the thread pool */
	long ret;                       /* thread pool result */
};

struct kl_tpool;

struct kl_blk_engine_ops {
	const char *name;
	int (*init)(struct kl_bfile *bf, char **err);
	/* Start one phase of r (r->eop ...).  Must not complete r inline:
	 * results go through kl_blk_io_done() from ->poll() on the main loop. */
	void (*submit)(struct kl_bfile *bf, struct kl_blk_req *r);
	/* Harvest completions (main loop or drain, BQL held). */
	void (*poll)(struct kl_bfile *bf);
	/* Called after poll(): push batched submissions to the kernel. */
	void (*flush_batch)(struct kl_bfile *bf);
	/* Optional: completions are ready to be polled (no syscall). */
	bool (*has_completions)(struct kl_bfile *bf);
	void (*fini)(struct kl_bfile *bf);
};

struct kl_bfile {
	char *filename;
	int fd;
	int efd;                        /* completion eventfd (all engines) */
	unsigned efd_watch;
	uint64_t size;
	uint32_t align;                 /* O_DIRECT offset/length alignment (1 if cached) */
	uint32_t mem_align;             /* O_DIRECT buffer alignment (1 if cached) */
	bool direct, dsync, no_flush, readonly, is_bdev;
	bool no_zero_range, no_punch;   /* fallocate modes found unsupported */
	enum kl_blk_engine engine;
	const struct kl_blk_engine_ops *ops;
	void *engine_state;
	struct kl_tpool *pool;          /* threads engine, native fallbacks */
	bool in_poll;                   /* inside the completion handler: batch submits */
	bool draining;                  /* process() runs: no kick needed (atomic) */
	unsigned max_batch;             /* ... up to this many at a time */

	unsigned in_flight;
	struct kl_blk_req *writes;      /* tracked writes in flight */
	struct kl_blk_req *waiting, *waiting_tail; /* tracked writes held back, FIFO */
	unsigned n_serial;              /* serial requests in flight or waiting */
	struct kl_blk_req *deferred, **deferred_tail; /* complete on next poll */
	unsigned hold;                  /* kl_bfile_wait_span() runs: hold callbacks */
	struct kl_blk_req *held, **held_tail; /* finished, callback not yet run */
};

struct kl_bfile_opts {
	const char *filename;
	bool readonly;
	bool direct;                    /* O_DIRECT (cache.direct=on) */
	bool dsync;                     /* O_DSYNC (-drive cache=writethrough/directsync) */
	bool no_flush;                  /* cache.no-flush=on: FLUSH completes at once */
	enum kl_blk_engine engine;
	unsigned max_batch;             /* aio-max-batch (0: kl_blk_set_max_batch's) */
};

/* The file object (file.c).  Requests as kl_blk_submit() documents. */
struct kl_bfile *kl_bfile_open(const struct kl_bfile_opts *o, char **err);
void kl_bfile_close(struct kl_bfile *bf); /* drains */
int kl_bfile_submit(struct kl_bfile *bf, enum kl_blk_op op, uint64_t offset,
		    const struct iovec *iov, int iovcnt, uint64_t len,
		    kl_blk_cb cb, void *opaque);
/* Run the completion handler of every open file once, then wait up to
 * timeout_ms for one to have completions (drain loops). */
void kl_bfile_wait_any(int timeout_ms);
/* Wait until no write in flight overlaps [beg, end) on the disk, before a
 * synchronous read-modify-write of those blocks (main loop, BQL held; also
 * from a completion callback).  Requests that finish meanwhile have their
 * callbacks run by the next run of the completion handler, not inside. */
void kl_bfile_wait_span(struct kl_bfile *bf, uint64_t beg, uint64_t end);
extern const struct kl_bdrv kl_bdrv_file;


extern const struct kl_blk_engine_ops kl_blk_threads_ops;
extern const struct kl_blk_engine_ops kl_blk_native_ops;
extern const struct kl_blk_engine_ops kl_blk_io_uring_ops;

/* Result of one engine phase (bytes or -errno); main loop, BQL held. */
void kl_blk_io_done(struct kl_blk_req *r, long ret);
/* Wake the completion handler (any thread). */
void kl_blk_kick(struct kl_bfile *bf);

/* Thread pool (threads.c): workers run the phase of r synchronously with
 * kl_blk_do_sync(), completed requests are handed back through the device
 * eventfd and kl_tpool_poll(). */
struct kl_tpool *kl_tpool_new(struct kl_bfile *bf, unsigned nthreads, char **err);
void kl_tpool_submit(struct kl_tpool *p, struct kl_blk_req *r);
void kl_tpool_poll(struct kl_tpool *p);
void kl_tpool_flush(struct kl_tpool *p);
bool kl_tpool_has_done(struct kl_tpool *p);
void kl_tpool_free(struct kl_tpool *p);
long kl_blk_do_sync(struct kl_bfile *bf, struct kl_blk_req *r);


#endif
