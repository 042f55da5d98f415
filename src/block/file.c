/* The "file" protocol: an fd opened with the cache mode's flags, the request
 * state machine (bounce buffers for O_DIRECT, short I/O continuation,
 * fallocate fallbacks, write serialisation) and completion on the main
 * loop.  Engines (threads.c, native.c, io_uring.c) take the file object.
 * The node driver "file" over it is at the end (kl_bdrv_file). */
#include "block_int.h"
#include "kvmlite/fdset.h"
#include "kvmlite/clock.h"
#include "kvmlite/iov.h"

#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <limits.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "kvmlite/loop.h"
#include "node.h"

#define ZERO_BUF_SIZE (1u << 20)
#define ZERO_CHUNK (4ull << 20)

#define DEFAULT_MAX_BATCH 4

static unsigned pool_size = 16;
static unsigned max_batch = DEFAULT_MAX_BATCH;
static uint64_t poll_ns;
static uint32_t min_align;
static void *zero_buf;

void kl_blk_set_pool_size(unsigned nthreads)
{
	pool_size = nthreads ? nthreads : 1;
}

unsigned kl_blk_pool_size(void)
{
	return pool_size;
}

void kl_blk_set_max_batch(unsigned n)
{
	max_batch = n ? n : DEFAULT_MAX_BATCH;
}

void kl_blk_set_poll_ns(uint64_t ns)
{
	poll_ns = ns;
}

void kl_blk_set_min_align(uint32_t align)
{
	min_align = align;
}

static const char *const engine_names[] = {
	[KL_AIO_THREADS] = "threads", [KL_AIO_NATIVE] = "native",
	[KL_AIO_IO_URING] = "io_uring",
};
static const char *const cache_names[] = {
	[KL_CACHE_NONE] = "none", [KL_CACHE_WRITETHROUGH] = "writethrough",
	[KL_CACHE_WRITEBACK] = "writeback", [KL_CACHE_DIRECTSYNC] = "directsync",
	[KL_CACHE_UNSAFE] = "unsafe",
};

const char *kl_blk_engine_name(enum kl_blk_engine e)
{
	return (unsigned)e < G_N_ELEMENTS(engine_names) ? engine_names[e] : "?";
}

int kl_blk_engine_parse(const char *name, enum kl_blk_engine *out)
{
	for (int e = KL_AIO_THREADS; e <= KL_AIO_IO_URING; e++)
		if (strcmp(name, kl_blk_engine_name(e)) == 0) {
			*out = e;
			return 0;
		}
	return -1;
}

const char *kl_blk_cache_name(enum kl_blk_cache c)
{
	return (unsigned)c < G_N_ELEMENTS(cache_names) ? cache_names[c] : "?";
}

void kl_blk_kick(struct kl_bfile *bf)
{
	uint64_t one = 1;
	ssize_t r;
	do {
		r = write(bf->efd, &one, sizeof(one));
	} while (r < 0 && errno == EINTR);
	/* EAGAIN means the counter is already non-zero: a wakeup is pending. */
}

/* ---- open ---- */

static void probe_alignment(struct kl_bfile *bf)
{
	uint32_t al = 0, mem = 0;
	struct statx stx;
	int lbs;

	if (bf->is_bdev && ioctl(bf->fd, BLKSSZGET, &lbs) == 0 && lbs > 0) {
		al = mem = (uint32_t)lbs;
	} else if (statx(bf->fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 &&
		   (stx.stx_mask & STATX_DIOALIGN) && stx.stx_dio_offset_align) {
		al = stx.stx_dio_offset_align;
		mem = stx.stx_dio_mem_align;
	} else {
		/* Probe: 512 bytes into a buffer that is 512- but not 4096-aligned. */
		void *buf;
		if (posix_memalign(&buf, 4096, 8192) == 0) {
			ssize_t r = pread(bf->fd, (char *)buf + 512, 512, 0);
			if (r >= 0 || errno != EINVAL)
				al = mem = 512;
			else
				al = mem = 4096;
			free(buf);
		} else {
			al = mem = 4096;
		}
	}
	if (al < 512)
		al = 512;
	if (al < min_align)
		al = min_align;
	if (mem < min_align)
		mem = min_align;
	if (mem < 1)
		mem = 1;
	bf->align = al;
	bf->mem_align = mem;
}

static bool efd_handler(int fd, GIOCondition cond, void *opaque);
static GList *open_files; /* struct kl_bfile *: for kl_bfile_wait_any() */

struct kl_bfile *kl_bfile_open(const struct kl_bfile_opts *o, char **err)
{
	const char *f = o->filename;
	int flags = O_CLOEXEC;
	struct stat st;

	if (!f || !*f) {
		*err = g_strdup("file: no file name given (filename=)");
		return NULL;
	}
	if ((unsigned)o->engine > KL_AIO_IO_URING) {
		*err = g_strdup_printf("'%s': invalid aio mode", f);
		return NULL;
	}
	bool direct = o->direct;
	if (o->engine == KL_AIO_NATIVE && !direct) {
		*err = g_strdup("aio=native was specified, but it requires cache.direct=on, "
				"which was not specified.");
		return NULL;
	}
	if (!kl_loop_context()) {
		*err = g_strdup("block layer used before kl_loop_init()");
		return NULL;
	}
	flags |= o->readonly ? O_RDONLY : O_RDWR;
	if (direct)
		flags |= O_DIRECT;
	if (o->dsync)
		flags |= O_DSYNC;

	int fd = kl_fdset_open(f, flags, 0);
	if (fd < 0) {
		int e = errno;
		if (e == EINVAL && direct && access(f, F_OK) == 0)
			*err = g_strdup_printf("Could not open '%s': the file system does not "
					       "support O_DIRECT (cache.direct=on)", f);
		else
			*err = g_strdup_printf("Could not open '%s': %s", f, g_strerror(e));
		return NULL;
	}
	if (fstat(fd, &st) < 0) {
		*err = g_strdup_printf("Could not stat '%s': %s", f, g_strerror(errno));
		close(fd);
		return NULL;
	}
	struct kl_bfile *bf = g_new0(struct kl_bfile, 1);
	bf->fd = fd;
	bf->efd = -1;
	if (S_ISREG(st.st_mode)) {
		bf->size = (uint64_t)st.st_size;
	} else if (S_ISBLK(st.st_mode)) {
		bf->is_bdev = true;
		if (ioctl(fd, BLKGETSIZE64, &bf->size) < 0) {
			*err = g_strdup_printf("Could not get the size of '%s': %s", f,
					       g_strerror(errno));
			goto fail;
		}
	} else {
		*err = g_strdup_printf("Could not open '%s': %s", f,
				       S_ISDIR(st.st_mode) ? "Is a directory"
				       : "not a regular file or block device");
		goto fail;
	}
	bf->filename = g_strdup(f);
	bf->direct = direct;
	bf->dsync = o->dsync;
	bf->no_flush = o->no_flush;
	bf->readonly = o->readonly;
	bf->engine = o->engine;
	bf->deferred_tail = &bf->deferred;
	bf->held_tail = &bf->held;
	bf->max_batch = o->max_batch ? o->max_batch : max_batch;
	if (direct) {
		probe_alignment(bf);
	} else {
		bf->align = 1;
		bf->mem_align = 1;
	}
	bf->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (bf->efd < 0) {
		*err = g_strdup_printf("'%s': eventfd: %s", f, g_strerror(errno));
		goto fail;
	}
	bf->ops = o->engine == KL_AIO_THREADS ? &kl_blk_threads_ops
		: o->engine == KL_AIO_NATIVE ? &kl_blk_native_ops : &kl_blk_io_uring_ops;
	if (bf->ops->init(bf, err) < 0) {
		char *e = *err;
		*err = g_strdup_printf("'%s': %s", f, e);
		g_free(e);
		bf->ops = NULL;
		goto fail;
	}
	bf->efd_watch = kl_fd_add(bf->efd, G_IO_IN, efd_handler, bf);
	/* GLib blocks a non-recursive source while it dispatches: it takes the
	 * fd out of the poll set and puts it back, and each change signals the
	 * context's wakeup eventfd -- two write()s, a read() and one more poll()
	 * per completion wakeup.  Nothing iterates the main context from a
	 * completion callback, and efd_handler() does not nest anyway. */
	g_source_set_can_recurse(g_main_context_find_source_by_id(kl_loop_context(),
								  bf->efd_watch), TRUE);
	open_files = g_list_prepend(open_files, bf);
	return bf;
fail:
	if (bf->pool)
		kl_tpool_free(bf->pool);
	if (bf->efd >= 0)
		close(bf->efd);
	close(fd);
	g_free(bf->filename);
	g_free(bf);
	return NULL;
}

/* ---- request state machine ---- */

static void untrack_write(struct kl_blk_req *r);

static void deliver(struct kl_blk_req *r, long ret)
{
	struct kl_bfile *bf = r->bf;

	bf->in_flight--;
	free(r->bounce);
	g_free(r->ziov);
	kl_blk_cb cb = r->cb;
	void *opaque = r->opaque;
	g_free(r);
	cb(opaque, ret);
}

static void finish(struct kl_blk_req *r, long ret)
{
	struct kl_bfile *bf = r->bf;

	if (r->tracked)
		untrack_write(r);
	if (bf->hold) { /* kl_bfile_wait_span(): the callback runs later */
		r->ret = ret;
		r->next = NULL;
		*bf->held_tail = r;
		bf->held_tail = &r->next;
		return;
	}
	deliver(r, ret);
}

static void submit_phase(struct kl_blk_req *r)
{
	r->edone = 0;
	r->bf->ops->submit(r->bf, r);
}

/* Complete r with ret on the next run of the completion handler. */
static void defer(struct kl_blk_req *r, long ret)
{
	struct kl_bfile *bf = r->bf;
	r->ret = ret;
	r->next = NULL;
	*bf->deferred_tail = r;
	bf->deferred_tail = &r->next;
	kl_blk_kick(bf);
}

static bool iov_aligned(const struct kl_bfile *bf, const struct iovec *iov, int n)
{
	for (int i = 0; i < n; i++)
		if (((uintptr_t)iov[i].iov_base & (bf->mem_align - 1)) ||
		    (iov[i].iov_len & (bf->align - 1)))
			return false;
	return true;
}

static void start_bounce_phase(struct kl_blk_req *r, enum kl_blk_eop eop)
{
	r->biov.iov_base = r->bounce;
	r->biov.iov_len = r->blen;
	r->eop = eop;
	r->eoff = r->boff;
	r->elen = r->blen;
	r->eiov = &r->biov;
	r->eiovcnt = 1;
	submit_phase(r);
}

/* Start a READ/WRITE of r->giov at r->offset, bouncing for O_DIRECT. */
static void start_rw(struct kl_blk_req *r)
{
	struct kl_bfile *bf = r->bf;
	bool write = r->op != KL_BLK_READ;

	if (!bf->direct || (!((r->offset | r->len) & (bf->align - 1)) &&
			    iov_aligned(bf, r->giov, r->giovcnt))) {
		r->eop = write ? KL_EOP_WRITE : KL_EOP_READ;
		r->eoff = r->offset;
		r->elen = r->len;
		r->eiov = r->giov;
		r->eiovcnt = r->giovcnt;
		submit_phase(r);
		return;
	}
	uint64_t a = bf->align;
	r->boff = r->offset & ~(a - 1);
	r->blen = ((r->offset + r->len + a - 1) & ~(a - 1)) - r->boff;
	free(r->bounce);
	r->bounce = NULL;
	size_t ma = bf->mem_align > 4096 ? bf->mem_align : 4096;
	if (posix_memalign(&r->bounce, ma, r->blen) != 0) {
		r->bounce = NULL;
		defer(r, -ENOMEM);
		return;
	}
	if (!write) {
		start_bounce_phase(r, KL_EOP_READ);
	} else if (r->boff != r->offset || r->blen != r->len) {
		r->rmw = true; /* read the partial head/tail blocks first */
		start_bounce_phase(r, KL_EOP_READ);
	} else {
		kl_iov_to_buf(r->giov, (unsigned)r->giovcnt, 0, r->bounce, r->len);
		start_bounce_phase(r, KL_EOP_WRITE);
	}
}

/* Write zeroes without fallocate: write a shared zero buffer, in chunks of
 * at most ZERO_CHUNK bytes (bounded bounce buffers with O_DIRECT); the range
 * still to do is kept in offset/len of the request (stats count wz_ops). */
static void start_zero_writes(struct kl_blk_req *r)
{
	if (!zero_buf) {
		if (posix_memalign(&zero_buf, 4096, ZERO_BUF_SIZE) != 0) {
			zero_buf = NULL;
			defer(r, -ENOMEM);
			return;
		}
		memset(zero_buf, 0, ZERO_BUF_SIZE);
	}
	uint64_t chunk = r->len < ZERO_CHUNK ? r->len : ZERO_CHUNK;
	int n = (int)((chunk + ZERO_BUF_SIZE - 1) / ZERO_BUF_SIZE);
	g_free(r->ziov);
	r->ziov = g_new(struct iovec, n);
	for (int i = 0; i < n; i++) {
		r->ziov[i].iov_base = zero_buf;
		r->ziov[i].iov_len = i == n - 1 ? chunk - (uint64_t)i * ZERO_BUF_SIZE
			: ZERO_BUF_SIZE;
	}
	r->giov = r->ziov;
	r->giovcnt = n;
	uint64_t whole = r->len;
	r->len = chunk;
	r->rmw = false;
	start_rw(r);
	r->len = whole;
}

static void start_falloc(struct kl_blk_req *r, int mode)
{
	r->eop = KL_EOP_FALLOC;
	r->falloc_mode = mode;
	r->eoff = r->offset;
	r->elen = r->len;
	r->eiov = NULL;
	r->eiovcnt = 0;
	submit_phase(r);
}

static void start_write(struct kl_blk_req *r)
{
	struct kl_bfile *bf = r->bf;

	if (r->op == KL_BLK_WRITE)
		start_rw(r);
	else if (!bf->no_zero_range)
		start_falloc(r, FALLOC_FL_ZERO_RANGE);
	else if (!bf->no_punch)
		start_falloc(r, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE);
	else
		start_zero_writes(r);
}

/* ---- writes that share O_DIRECT blocks ----
 * A write whose range is not aligned to the O_DIRECT block is a
 * read-modify-write of its head/tail blocks.  Two such writes to different
 * bytes of one block, or one and a plain write of that block, would
 * otherwise overwrite each other with stale data (a lost write the guest
 * never asked for).  Such "serial" requests run alone on their span: they
 * wait for every overlapping write in flight, and later overlapping
 * writes wait for them, in submission order (like QEMU's serialising
 * requests).  Plain aligned writes are tracked but never wait for each
 * other; without serial requests the check costs nothing. */

static bool spans_conflict(const struct kl_blk_req *a, const struct kl_blk_req *b)
{
	return (a->serial || b->serial) && a->sbeg < b->send && b->sbeg < a->send;
}

/* No tracked write in flight, nor one waiting ahead of r, conflicts with r. */
static bool write_may_start(const struct kl_bfile *bf, const struct kl_blk_req *r)
{
	if (!r->serial && !bf->n_serial)
		return true;
	for (const struct kl_blk_req *q = bf->writes; q; q = q->wnext)
		if (spans_conflict(r, q))
			return false;
	for (const struct kl_blk_req *q = bf->waiting; q && q != r; q = q->wnext)
		if (spans_conflict(r, q))
			return false;
	return true;
}

static void writes_insert(struct kl_bfile *bf, struct kl_blk_req *r)
{
	r->wprev = NULL;
	r->wnext = bf->writes;
	if (bf->writes)
		bf->writes->wprev = r;
	bf->writes = r;
}

/* A WRITE/WRITE_ZEROES of len > 0 is about to start: track it on direct
 * devices; false when it has to wait (it is started by untrack_write()). */
static bool track_write(struct kl_blk_req *r)
{
	struct kl_bfile *bf = r->bf;
	uint64_t a = bf->align;

	if (a <= 1)
		return true;
	r->tracked = true;
	r->sbeg = r->offset & ~(a - 1);
	r->send = (r->offset + r->len + a - 1) & ~(a - 1);
	r->serial = ((r->offset | r->len) & (a - 1)) != 0;
	if (r->serial)
		bf->n_serial++;
	if (write_may_start(bf, r)) {
		writes_insert(bf, r);
		return true;
	}
	r->wnext = NULL;
	if (bf->waiting_tail)
		bf->waiting_tail->wnext = r;
	else
		bf->waiting = r;
	bf->waiting_tail = r;
	return false;
}

static void untrack_write(struct kl_blk_req *r)
{
	struct kl_bfile *bf = r->bf;

	if (r->wprev)
		r->wprev->wnext = r->wnext;
	else
		bf->writes = r->wnext;
	if (r->wnext)
		r->wnext->wprev = r->wprev;
	if (r->serial)
		bf->n_serial--;
	/* start, in order, the waiting writes that no longer conflict */
	struct kl_blk_req **pp = &bf->waiting, *prev = NULL;
	while (*pp) {
		struct kl_blk_req *w = *pp;
		if (write_may_start(bf, w)) {
			*pp = w->wnext;
			if (bf->waiting_tail == w)
				bf->waiting_tail = prev;
			writes_insert(bf, w);
			start_write(w);
		} else {
			prev = w;
			pp = &w->wnext;
		}
	}
}

/* An O_DIRECT write of the partial last block extended the file: cut it
 * back to the device size (files whose size is not a multiple of the
 * O_DIRECT alignment). */
static int trim_tail(struct kl_blk_req *r)
{
	struct kl_bfile *bf = r->bf;
	if (r->bounce && !bf->is_bdev && r->boff + r->blen > bf->size &&
	    ftruncate(bf->fd, (off_t)bf->size) < 0)
		return -errno;
	return 0;
}

static void phase_done(struct kl_blk_req *r)
{
	int ret;

	switch (r->op) {
	case KL_BLK_READ:
		if (r->bounce)
			kl_iov_from_buf(r->giov, (unsigned)r->giovcnt, 0,
					(char *)r->bounce + (r->offset - r->boff), r->len);
		finish(r, (long)r->len);
		return;
	case KL_BLK_WRITE:
		if (r->rmw) {
			r->rmw = false;
			kl_iov_to_buf(r->giov, (unsigned)r->giovcnt, 0,
				      (char *)r->bounce + (r->offset - r->boff), r->len);
			start_bounce_phase(r, KL_EOP_WRITE);
			return;
		}
		ret = trim_tail(r);
		finish(r, ret < 0 ? ret : (long)r->len);
		return;
	case KL_BLK_WRITE_ZEROES:
		if (r->ziov) {
			if (r->rmw) {
				r->rmw = false;
				uint64_t chunk = 0;
				for (int i = 0; i < r->giovcnt; i++)
					chunk += r->giov[i].iov_len;
				memset((char *)r->bounce + (r->offset - r->boff), 0, chunk);
				start_bounce_phase(r, KL_EOP_WRITE);
				return;
			}
			uint64_t chunk = 0;
			for (int i = 0; i < r->giovcnt; i++)
				chunk += r->giov[i].iov_len;
			if ((ret = trim_tail(r)) < 0) {
				finish(r, ret);
				return;
			}
			r->offset += chunk;
			r->len -= chunk;
			if (r->len) {
				start_zero_writes(r);
				return;
			}
		}
		finish(r, 0);
		return;
	case KL_BLK_FLUSH:
	case KL_BLK_DISCARD:
		finish(r, 0);
		return;
	}
}

static void iov_advance(struct kl_blk_req *r, uint64_t n)
{
	while (n && r->eiovcnt) {
		if (n >= r->eiov->iov_len) {
			n -= r->eiov->iov_len;
			r->eiov++;
			r->eiovcnt--;
		} else {
			r->eiov->iov_base = (char *)r->eiov->iov_base + n;
			r->eiov->iov_len -= n;
			n = 0;
		}
	}
}

void kl_blk_io_done(struct kl_blk_req *r, long ret)
{
	struct kl_bfile *bf = r->bf;

	if (ret == -EINTR || ret == -EAGAIN) {
		bf->ops->submit(bf, r); /* retry the remainder as it stands */
		return;
	}
	if (ret < 0) {
		if (r->eop == KL_EOP_FALLOC && (ret == -EOPNOTSUPP || ret == -ENOSYS)) {
			if (r->falloc_mode == FALLOC_FL_ZERO_RANGE) {
				bf->no_zero_range = true;
				if (!bf->no_punch) {
					start_falloc(r, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE);
					return;
				}
			} else {
				bf->no_punch = true;
			}
			if (r->op == KL_BLK_DISCARD) { /* advisory: nothing to do */
				finish(r, 0);
				return;
			}
			start_zero_writes(r);
			return;
		}
		finish(r, ret);
		return;
	}
	if (r->eop == KL_EOP_READ || r->eop == KL_EOP_WRITE) {
		r->edone += (uint64_t)ret;
		if (r->edone < r->elen) {
			if (ret == 0 && r->eop == KL_EOP_WRITE) {
				finish(r, -EIO);
				return;
			}
			/* End of file (O_DIRECT reads of a partial last block stop
			 * there too): the rest reads as zeroes. */
			if (ret == 0 || (r->eop == KL_EOP_READ && r->eoff + (uint64_t)ret >= bf->size)) {
				if (ret)
					iov_advance(r, (uint64_t)ret);
				for (int i = 0; i < r->eiovcnt; i++)
					memset(r->eiov[i].iov_base, 0, r->eiov[i].iov_len);
				r->edone = r->elen;
			} else {
				iov_advance(r, (uint64_t)ret);
				r->eoff += (uint64_t)ret;
				bf->ops->submit(bf, r);
				return;
			}
		}
	}
	phase_done(r);
}

int kl_bfile_submit(struct kl_bfile *bf, enum kl_blk_op op, uint64_t offset,
		  const struct iovec *iov, int iovcnt, uint64_t len,
		  kl_blk_cb cb, void *opaque)
{
	if (!bf || kl_blk_req_len(op, cb, iov, iovcnt, &len) < 0)
		return -EINVAL;
	bool rw = op == KL_BLK_READ || op == KL_BLK_WRITE;
	struct kl_blk_req *r = g_malloc0(sizeof(*r) + (rw ? (size_t)iovcnt : 0) * sizeof(struct iovec));
	r->bf = bf;
	r->op = op;
	r->offset = offset;
	r->len = op == KL_BLK_FLUSH ? 0 : len;
	r->cb = cb;
	r->opaque = opaque;
	if (rw) {
		r->giov = (struct iovec *)(r + 1);
		if (iovcnt)
			memcpy(r->giov, iov, (size_t)iovcnt * sizeof(struct iovec));
		r->giovcnt = iovcnt;
	}
	bf->in_flight++;

	if (op != KL_BLK_READ && op != KL_BLK_FLUSH && bf->readonly) {
		r->eop = KL_EOP_FLUSH;
		defer(r, -EROFS);
		return 0;
	}
	/* Ranges are the node's business (node.c): here only overflow and a
	 * block device's end are errors; a write past the end of a regular
	 * file extends it (formats allocate there), a read there reads zeroes. */
	if (op != KL_BLK_FLUSH && (offset > (uint64_t)INT64_MAX || r->len > (uint64_t)INT64_MAX - offset ||
				   (bf->is_bdev && (offset > bf->size || r->len > bf->size - offset)))) {
		r->eop = KL_EOP_FLUSH;
		defer(r, -EINVAL);
		return 0;
	}
	if (!bf->is_bdev && (op == KL_BLK_WRITE || op == KL_BLK_WRITE_ZEROES) &&
	    offset + r->len > bf->size)
		bf->size = offset + r->len;
	switch (op) {
	case KL_BLK_READ:
		if (!r->len) {
			r->eop = KL_EOP_FLUSH;
			defer(r, 0);
		} else {
			start_rw(r);
		}
		break;
	case KL_BLK_WRITE:
	case KL_BLK_WRITE_ZEROES:
		if (!r->len) {
			r->eop = KL_EOP_FLUSH;
			defer(r, 0);
		} else if (track_write(r)) {
			start_write(r);
		}
		break;
	case KL_BLK_FLUSH:
		r->eop = KL_EOP_FLUSH;
		if (bf->no_flush)
			defer(r, 0);
		else
			submit_phase(r);
		break;
	case KL_BLK_DISCARD:
		if (!r->len || bf->no_punch) {
			r->eop = KL_EOP_FLUSH;
			defer(r, 0);
		} else {
			start_falloc(r, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE);
		}
		break;
	}
	return 0;
}

/* ---- completion handler ---- */

/* Harvest completions: run the next phase of each request, and the
 * callback of each that finished (held back while bf->hold). */
static void harvest(struct kl_bfile *bf)
{
	/* The requests deferred so far, not those deferred meanwhile (a retry
	 * would spin here); one at a time off the list, which a nested
	 * harvest (kl_bfile_wait_span) continues. */
	unsigned n = 0;
	for (struct kl_blk_req *q = bf->deferred; q; q = q->next)
		n++;
	while (n-- && bf->deferred) {
		struct kl_blk_req *r = bf->deferred;
		bf->deferred = r->next;
		if (!bf->deferred)
			bf->deferred_tail = &bf->deferred;
		kl_blk_io_done(r, r->ret);
	}
	if (bf->pool)
		kl_tpool_poll(bf->pool);
	if (bf->ops->poll)
		bf->ops->poll(bf);
}

/* Push what the callbacks submitted to the kernel / the workers. */
static void flush_batches(struct kl_bfile *bf)
{
	if (bf->pool)
		kl_tpool_flush(bf->pool);
	if (bf->ops->flush_batch)
		bf->ops->flush_batch(bf);
}

static void process_once(struct kl_bfile *bf)
{
	bf->in_poll = true;
	if (!bf->hold) {
		struct kl_blk_req *h = bf->held;
		bf->held = NULL;
		bf->held_tail = &bf->held;
		while (h) {
			struct kl_blk_req *r = h;
			h = r->next;
			deliver(r, r->ret);
		}
	}
	harvest(bf);
	bf->in_poll = false;
	flush_batches(bf);
}

static bool ready(struct kl_bfile *bf)
{
	return bf->deferred || (bf->held && !bf->hold) || (bf->pool && kl_tpool_has_done(bf->pool)) ||
	       (bf->ops->has_completions && bf->ops->has_completions(bf));
}

/* Workers skip the completion kick while the main loop drains (kl_tpool's
 * push_done): after saying we stopped, look once more.  True when
 * completions are waiting. */
static bool stop_draining(struct kl_bfile *bf)
{
	__atomic_store_n(&bf->draining, false, __ATOMIC_SEQ_CST);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return ready(bf);
}

/* Reset the completion eventfd (non-blocking) before looking for work. */
static void efd_clear(struct kl_bfile *bf)
{
	uint64_t v;
	while (read(bf->efd, &v, sizeof(v)) < 0 && errno == EINTR)
		;
}

static void process(struct kl_bfile *bf)
{
	efd_clear(bf);
	/* Completions that arrive meanwhile are handled now rather than after
	 * another trip through poll() (a kick they made costs one spurious
	 * wakeup).  With requests in flight, busy-poll for up to poll_ns for
	 * the next completion, like QEMU's aio polling; at most 1 ms here. */
	uint64_t start = kl_clock_ns(), spin_until = 0;
	__atomic_store_n(&bf->draining, true, __ATOMIC_SEQ_CST);
	for (;;) {
		process_once(bf);
		uint64_t t = kl_clock_ns();
		if (t - start > 1000000)
			break; /* let the other main-loop sources run */
		if (ready(bf))
			continue;
		if (!poll_ns || !bf->in_flight) {
			if (!stop_draining(bf))
				return;
			__atomic_store_n(&bf->draining, true, __ATOMIC_SEQ_CST);
			continue;
		}
		if (!spin_until)
			spin_until = t + poll_ns;
		while (!ready(bf) && kl_clock_ns() < spin_until)
			__builtin_ia32_pause();
		if (!ready(bf))
			break;
		spin_until = 0;
	}
	if (stop_draining(bf))
		kl_blk_kick(bf); /* come back after the other sources */
}

static bool efd_handler(int fd, GIOCondition cond, void *opaque)
{
	struct kl_bfile *bf = opaque;
	(void)fd;
	(void)cond;
	if (!bf->in_poll)
		process(bf);
	return true;
}

void kl_bfile_close(struct kl_bfile *bf)
{
	if (!bf)
		return;
	if (bf->in_poll) {
		fprintf(stderr, "kvmlite: BUG: file '%s' closed from its completion callback\n",
			bf->filename);
		abort();
	}
	open_files = g_list_remove(open_files, bf);
	if (bf->efd_watch)
		kl_source_remove(bf->efd_watch);
	bf->efd_watch = 0;
	/* Drain: every engine signals the eventfd on completion. */
	while (bf->in_flight) {
		struct pollfd p = { .fd = bf->efd, .events = POLLIN };
		process(bf);
		if (bf->in_flight)
			poll(&p, 1, 100);
	}
	bf->ops->fini(bf);
	if (bf->pool)
		kl_tpool_free(bf->pool);
	close(bf->efd);
	close(bf->fd);
	g_free(bf->filename);
	g_free(bf);
	if (!open_files) { /* the write-zeroes buffer lives while files are open */
		free(zero_buf);
		zero_buf = NULL;
	}
}

static bool span_busy(const struct kl_bfile *bf, uint64_t beg, uint64_t end)
{
	for (const struct kl_blk_req *q = bf->writes; q; q = q->wnext)
		if (q->sbeg < end && beg < q->send)
			return true;
	return false;
}

/* A synchronous read-modify-write (file_drv.c) reads whole O_DIRECT blocks
 * and writes them back; a block it shares with a write in flight (clusters
 * smaller than the block) would get that write's old bytes back.  So wait
 * for such writes first, as QEMU's serialising requests do.  Completions
 * found meanwhile advance their requests (an RMW's write phase starts), but
 * their callbacks, which may submit more or re-enter the format driver, are
 * held for the next run of the completion handler.  The engines' poll()s
 * take this nesting: each consumes a completion before handling it. */
void kl_bfile_wait_span(struct kl_bfile *bf, uint64_t beg, uint64_t end)
{
	if (!span_busy(bf, beg, end))
		return;
	bool was = bf->in_poll;
	/* called from process(): workers must kick the eventfd we sleep on */
	bool was_draining = __atomic_load_n(&bf->draining, __ATOMIC_SEQ_CST);
	__atomic_store_n(&bf->draining, false, __ATOMIC_SEQ_CST);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	bf->hold++;
	while (span_busy(bf, beg, end)) {
		efd_clear(bf);
		bf->in_poll = true;
		harvest(bf);
		bf->in_poll = was;
		flush_batches(bf);
		if (span_busy(bf, beg, end) && !ready(bf)) {
			struct pollfd p = { .fd = bf->efd, .events = POLLIN };
			poll(&p, 1, 1);
		}
	}
	bf->hold--;
	__atomic_store_n(&bf->draining, was_draining, __ATOMIC_SEQ_CST);
	kl_blk_kick(bf); /* for the held callbacks, and the eventfd read above */
}

void kl_bfile_wait_any(int timeout_ms)
{
	struct pollfd p[64];
	nfds_t n = 0;
	for (GList *l = open_files; l; l = l->next) {
		struct kl_bfile *bf = l->data;
		if (!bf->in_poll)
			process(bf);
	}
	for (GList *l = open_files; l && n < G_N_ELEMENTS(p); l = l->next) {
		struct kl_bfile *bf = l->data;
		if (bf->in_flight)
			p[n++] = (struct pollfd){ .fd = bf->efd, .events = POLLIN };
	}
	if (n && timeout_ms)
		poll(p, n, timeout_ms);
}
