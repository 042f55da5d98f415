/* Block layer core: open with cache modes, request state machine (bounce
 * buffers for O_DIRECT, short I/O continuation, fallocate fallbacks),
 * completion on the main loop, statistics.  Engines: threads.c, native.c,
 * io_uring.c; -drive parsing and the registry: drive.c. */
#include "block_int.h"
#include "kvmlite/clock.h"

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

#define ZERO_BUF_SIZE (1u << 20)
#define ZERO_CHUNK (4ull << 20)

static unsigned pool_size = 16;
static uint64_t poll_ns;
static void *zero_buf;

void kl_blk_set_pool_size(unsigned nthreads)
{
	pool_size = nthreads ? nthreads : 1;
}

unsigned kl_blk_pool_size(void)
{
	return pool_size;
}

void kl_blk_set_poll_ns(uint64_t ns)
{
	poll_ns = ns;
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

const char *kl_blk_cache_name(enum kl_blk_cache c)
{
	return (unsigned)c < G_N_ELEMENTS(cache_names) ? cache_names[c] : "?";
}

const char *kl_blockdev_id(const struct kl_blockdev *bd) { return bd->id; }
const char *kl_blockdev_filename(const struct kl_blockdev *bd) { return bd->filename; }
uint64_t kl_blockdev_size(const struct kl_blockdev *bd) { return bd->size; }
bool kl_blockdev_readonly(const struct kl_blockdev *bd) { return bd->readonly; }
uint32_t kl_blockdev_block_size(const struct kl_blockdev *bd) { (void)bd; return 512; }
enum kl_blk_engine kl_blockdev_engine(const struct kl_blockdev *bd) { return bd->engine; }
enum kl_blk_cache kl_blockdev_cache(const struct kl_blockdev *bd) { return bd->cache; }
uint32_t kl_blockdev_dio_align(const struct kl_blockdev *bd) { return bd->align; }
unsigned kl_blockdev_in_flight(const struct kl_blockdev *bd) { return bd->in_flight; }
const char *kl_blockdev_attached(const struct kl_blockdev *bd) { return bd->attached; }

void kl_blockdev_set_attached(struct kl_blockdev *bd, const char *qdev)
{
	g_free(bd->attached);
	bd->attached = g_strdup(qdev);
}

void kl_blockdev_get_stats(const struct kl_blockdev *bd, struct kl_blk_stats *out)
{
	*out = bd->stats;
}

void kl_blk_kick(struct kl_blockdev *bd)
{
	uint64_t one = 1;
	ssize_t r;
	do {
		r = write(bd->efd, &one, sizeof(one));
	} while (r < 0 && errno == EINTR);
	/* EAGAIN means the counter is already non-zero: a wakeup is pending. */
}

/* ---- open ---- */

static void probe_alignment(struct kl_blockdev *bd)
{
	uint32_t al = 0, mem = 0;
	struct statx stx;
	int lbs;

	if (bd->is_bdev && ioctl(bd->fd, BLKSSZGET, &lbs) == 0 && lbs > 0) {
		al = mem = (uint32_t)lbs;
	} else if (statx(bd->fd, "", AT_EMPTY_PATH, STATX_DIOALIGN, &stx) == 0 &&
		   (stx.stx_mask & STATX_DIOALIGN) && stx.stx_dio_offset_align) {
		al = stx.stx_dio_offset_align;
		mem = stx.stx_dio_mem_align;
	} else {
		/* Probe: 512 bytes into a buffer that is 512- but not 4096-aligned. */
		void *buf;
		if (posix_memalign(&buf, 4096, 8192) == 0) {
			ssize_t r = pread(bd->fd, (char *)buf + 512, 512, 0);
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
	if (mem < 1)
		mem = 1;
	bd->align = al;
	bd->mem_align = mem;
}

static bool efd_handler(int fd, GIOCondition cond, void *opaque);

struct kl_blockdev *kl_blockdev_open(const struct kl_block_opts *o, char **err)
{
	const char *f = o->file;
	int flags = O_CLOEXEC;
	struct stat st;

	if (!f || !*f) {
		*err = g_strdup("drive: no file name given (file=)");
		return NULL;
	}
	if (o->format && strcmp(o->format, "raw") != 0) {
		if (strcmp(o->format, "qcow2") == 0)
			*err = g_strdup_printf("'%s': format 'qcow2' is not supported yet (only raw)", f);
		else
			*err = g_strdup_printf("'%s': unknown format '%s' (only raw is supported)",
					       f, o->format);
		return NULL;
	}
	if ((unsigned)o->cache > KL_CACHE_UNSAFE || (unsigned)o->engine > KL_AIO_IO_URING) {
		*err = g_strdup_printf("'%s': invalid cache or aio mode", f);
		return NULL;
	}
	bool direct = o->cache == KL_CACHE_NONE || o->cache == KL_CACHE_DIRECTSYNC;
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
	if (o->cache == KL_CACHE_WRITETHROUGH || o->cache == KL_CACHE_DIRECTSYNC)
		flags |= O_DSYNC;

	int fd = open(f, flags);
	if (fd < 0) {
		int e = errno;
		if (e == EINVAL && direct && access(f, F_OK) == 0)
			*err = g_strdup_printf("Could not open '%s': the file system does not "
					       "support O_DIRECT (cache=%s)", f,
					       kl_blk_cache_name(o->cache));
		else
			*err = g_strdup_printf("Could not open '%s': %s", f, g_strerror(e));
		return NULL;
	}
	if (fstat(fd, &st) < 0) {
		*err = g_strdup_printf("Could not stat '%s': %s", f, g_strerror(errno));
		close(fd);
		return NULL;
	}
	struct kl_blockdev *bd = g_new0(struct kl_blockdev, 1);
	bd->fd = fd;
	bd->efd = -1;
	if (S_ISREG(st.st_mode)) {
		bd->size = (uint64_t)st.st_size;
	} else if (S_ISBLK(st.st_mode)) {
		bd->is_bdev = true;
		if (ioctl(fd, BLKGETSIZE64, &bd->size) < 0) {
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
	bd->filename = g_strdup(f);
	bd->id = g_strdup(o->id ? o->id : "");
	bd->direct = direct;
	bd->readonly = o->readonly;
	bd->engine = o->engine;
	bd->cache = o->cache;
	bd->deferred_tail = &bd->deferred;
	if (direct) {
		probe_alignment(bd);
	} else {
		bd->align = 1;
		bd->mem_align = 1;
	}
	bd->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (bd->efd < 0) {
		*err = g_strdup_printf("'%s': eventfd: %s", f, g_strerror(errno));
		goto fail;
	}
	bd->ops = o->engine == KL_AIO_THREADS ? &kl_blk_threads_ops
		: o->engine == KL_AIO_NATIVE ? &kl_blk_native_ops : &kl_blk_io_uring_ops;
	if (bd->ops->init(bd, err) < 0) {
		char *e = *err;
		*err = g_strdup_printf("'%s': %s", f, e);
		g_free(e);
		bd->ops = NULL;
		goto fail;
	}
	bd->efd_watch = kl_fd_add(bd->efd, G_IO_IN, efd_handler, bd);
	return bd;
fail:
	if (bd->pool)
		kl_tpool_free(bd->pool);
	if (bd->efd >= 0)
		close(bd->efd);
	close(fd);
	g_free(bd->filename);
	g_free(bd->id);
	g_free(bd);
	return NULL;
}

/* ---- request state machine ---- */

static void untrack_write(struct kl_blk_req *r);

static void finish(struct kl_blk_req *r, long ret)
{
	struct kl_blockdev *bd = r->bd;
	struct kl_blk_stats *s = &bd->stats;
	uint64_t ns = kl_clock_ns() - r->start_ns;

	switch (r->op) {
	case KL_BLK_READ:
		if (ret < 0) {
			s->failed_rd_ops++;
		} else {
			s->rd_ops++;
			s->rd_bytes += (uint64_t)ret;
			s->rd_total_ns += ns;
		}
		break;
	case KL_BLK_WRITE:
		if (ret < 0) {
			s->failed_wr_ops++;
		} else {
			s->wr_ops++;
			s->wr_bytes += (uint64_t)ret;
			s->wr_total_ns += ns;
		}
		break;
	case KL_BLK_FLUSH:
		if (ret < 0) {
			s->failed_flush_ops++;
		} else {
			s->flush_ops++;
			s->flush_total_ns += ns;
		}
		break;
	case KL_BLK_DISCARD:
		if (ret >= 0)
			s->discard_ops++;
		break;
	case KL_BLK_WRITE_ZEROES:
		if (ret < 0)
			s->failed_wr_ops++;
		else
			s->wz_ops++;
		break;
	}
	if (r->tracked)
		untrack_write(r);
	bd->in_flight--;
	free(r->bounce);
	g_free(r->ziov);
	kl_blk_cb cb = r->cb;
	void *opaque = r->opaque;
	g_free(r);
	cb(opaque, ret);
}

static void submit_phase(struct kl_blk_req *r)
{
	r->edone = 0;
	r->bd->ops->submit(r->bd, r);
}

/* Complete r with ret on the next run of the completion handler. */
static void defer(struct kl_blk_req *r, long ret)
{
	struct kl_blockdev *bd = r->bd;
	r->ret = ret;
	r->next = NULL;
	*bd->deferred_tail = r;
	bd->deferred_tail = &r->next;
	kl_blk_kick(bd);
}

static bool iov_aligned(const struct kl_blockdev *bd, const struct iovec *iov, int n)
{
	for (int i = 0; i < n; i++)
		if (((uintptr_t)iov[i].iov_base & (bd->mem_align - 1)) ||
		    (iov[i].iov_len & (bd->align - 1)))
			return false;
	return true;
}

static void copy_from_iov(void *dst, const struct iovec *iov, int n, uint64_t len)
{
	char *d = dst;
	for (int i = 0; i < n && len; i++) {
		size_t c = iov[i].iov_len < len ? iov[i].iov_len : len;
		memcpy(d, iov[i].iov_base, c);
		d += c;
		len -= c;
	}
}

static void copy_to_iov(const struct iovec *iov, int n, const void *src, uint64_t len)
{
	const char *s = src;
	for (int i = 0; i < n && len; i++) {
		size_t c = iov[i].iov_len < len ? iov[i].iov_len : len;
		memcpy(iov[i].iov_base, s, c);
		s += c;
		len -= c;
	}
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
	struct kl_blockdev *bd = r->bd;
	bool write = r->op != KL_BLK_READ;

	if (!bd->direct || (!((r->offset | r->len) & (bd->align - 1)) &&
			    iov_aligned(bd, r->giov, r->giovcnt))) {
		r->eop = write ? KL_EOP_WRITE : KL_EOP_READ;
		r->eoff = r->offset;
		r->elen = r->len;
		r->eiov = r->giov;
		r->eiovcnt = r->giovcnt;
		submit_phase(r);
		return;
	}
	uint64_t a = bd->align;
	r->boff = r->offset & ~(a - 1);
	r->blen = ((r->offset + r->len + a - 1) & ~(a - 1)) - r->boff;
	free(r->bounce);
	r->bounce = NULL;
	size_t ma = bd->mem_align > 4096 ? bd->mem_align : 4096;
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
		copy_from_iov(r->bounce, r->giov, r->giovcnt, r->len);
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
	struct kl_blockdev *bd = r->bd;

	if (r->op == KL_BLK_WRITE)
		start_rw(r);
	else if (!bd->no_zero_range)
		start_falloc(r, FALLOC_FL_ZERO_RANGE);
	else if (!bd->no_punch)
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
static bool write_may_start(const struct kl_blockdev *bd, const struct kl_blk_req *r)
{
	if (!r->serial && !bd->n_serial)
		return true;
	for (const struct kl_blk_req *q = bd->writes; q; q = q->wnext)
		if (spans_conflict(r, q))
			return false;
	for (const struct kl_blk_req *q = bd->waiting; q && q != r; q = q->wnext)
		if (spans_conflict(r, q))
			return false;
	return true;
}

static void writes_insert(struct kl_blockdev *bd, struct kl_blk_req *r)
{
	r->wprev = NULL;
	r->wnext = bd->writes;
	if (bd->writes)
		bd->writes->wprev = r;
	bd->writes = r;
}

/* A WRITE/WRITE_ZEROES of len > 0 is about to start: track it on direct
 * devices; false when it has to wait (it is started by untrack_write()). */
static bool track_write(struct kl_blk_req *r)
{
	struct kl_blockdev *bd = r->bd;
	uint64_t a = bd->align;

	if (a <= 1)
		return true;
	r->tracked = true;
	r->sbeg = r->offset & ~(a - 1);
	r->send = (r->offset + r->len + a - 1) & ~(a - 1);
	r->serial = ((r->offset | r->len) & (a - 1)) != 0;
	if (r->serial)
		bd->n_serial++;
	if (write_may_start(bd, r)) {
		writes_insert(bd, r);
		return true;
	}
	r->wnext = NULL;
	if (bd->waiting_tail)
		bd->waiting_tail->wnext = r;
	else
		bd->waiting = r;
	bd->waiting_tail = r;
	return false;
}

static void untrack_write(struct kl_blk_req *r)
{
	struct kl_blockdev *bd = r->bd;

	if (r->wprev)
		r->wprev->wnext = r->wnext;
	else
		bd->writes = r->wnext;
	if (r->wnext)
		r->wnext->wprev = r->wprev;
	if (r->serial)
		bd->n_serial--;
	/* start, in order, the waiting writes that no longer conflict */
	struct kl_blk_req **pp = &bd->waiting, *prev = NULL;
	while (*pp) {
		struct kl_blk_req *w = *pp;
		if (write_may_start(bd, w)) {
			*pp = w->wnext;
			if (bd->waiting_tail == w)
				bd->waiting_tail = prev;
			writes_insert(bd, w);
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
	struct kl_blockdev *bd = r->bd;
	if (r->bounce && !bd->is_bdev && r->boff + r->blen > bd->size &&
	    ftruncate(bd->fd, (off_t)bd->size) < 0)
		return -errno;
	return 0;
}

static void phase_done(struct kl_blk_req *r)
{
	int ret;

	switch (r->op) {
	case KL_BLK_READ:
		if (r->bounce)
			copy_to_iov(r->giov, r->giovcnt, (char *)r->bounce + (r->offset - r->boff),
				    r->len);
		finish(r, (long)r->len);
		return;
	case KL_BLK_WRITE:
		if (r->rmw) {
			r->rmw = false;
			copy_from_iov((char *)r->bounce + (r->offset - r->boff), r->giov,
				      r->giovcnt, r->len);
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
	struct kl_blockdev *bd = r->bd;

	if (ret == -EINTR || ret == -EAGAIN) {
		bd->ops->submit(bd, r); /* retry the remainder as it stands */
		return;
	}
	if (ret < 0) {
		if (r->eop == KL_EOP_FALLOC && (ret == -EOPNOTSUPP || ret == -ENOSYS)) {
			if (r->falloc_mode == FALLOC_FL_ZERO_RANGE) {
				bd->no_zero_range = true;
				if (!bd->no_punch) {
					start_falloc(r, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE);
					return;
				}
			} else {
				bd->no_punch = true;
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
			if (ret == 0 || (r->eop == KL_EOP_READ && r->eoff + (uint64_t)ret >= bd->size)) {
				if (ret)
					iov_advance(r, (uint64_t)ret);
				for (int i = 0; i < r->eiovcnt; i++)
					memset(r->eiov[i].iov_base, 0, r->eiov[i].iov_len);
				r->edone = r->elen;
			} else {
				iov_advance(r, (uint64_t)ret);
				r->eoff += (uint64_t)ret;
				bd->ops->submit(bd, r);
				return;
			}
		}
	}
	phase_done(r);
}

int kl_blk_submit(struct kl_blockdev *bd, enum kl_blk_op op, uint64_t offset,
		  const struct iovec *iov, int iovcnt, uint64_t len,
		  kl_blk_cb cb, void *opaque)
{
	if (!bd || !cb || (unsigned)op > KL_BLK_WRITE_ZEROES)
		return -EINVAL;
	bool rw = op == KL_BLK_READ || op == KL_BLK_WRITE;
	if (rw) {
		if (iovcnt < 0 || iovcnt > IOV_MAX || (iovcnt && !iov))
			return -EINVAL;
		len = 0;
		for (int i = 0; i < iovcnt; i++) {
			if (iov[i].iov_len > (uint64_t)LONG_MAX - len)
				return -EINVAL;
			len += iov[i].iov_len;
		}
	}
	struct kl_blk_req *r = g_malloc0(sizeof(*r) + (rw ? (size_t)iovcnt : 0) * sizeof(struct iovec));
	r->bd = bd;
	r->op = op;
	r->offset = offset;
	r->len = op == KL_BLK_FLUSH ? 0 : len;
	r->cb = cb;
	r->opaque = opaque;
	r->start_ns = kl_clock_ns();
	if (rw) {
		r->giov = (struct iovec *)(r + 1);
		if (iovcnt)
			memcpy(r->giov, iov, (size_t)iovcnt * sizeof(struct iovec));
		r->giovcnt = iovcnt;
	}
	bd->in_flight++;

	if (op != KL_BLK_READ && op != KL_BLK_FLUSH && bd->readonly) {
		r->eop = KL_EOP_FLUSH;
		defer(r, -EROFS);
		return 0;
	}
	if (op != KL_BLK_FLUSH && (offset > bd->size || r->len > bd->size - offset)) {
		r->eop = KL_EOP_FLUSH;
		defer(r, -EINVAL);
		return 0;
	}
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
		if (bd->cache == KL_CACHE_UNSAFE)
			defer(r, 0);
		else
			submit_phase(r);
		break;
	case KL_BLK_DISCARD:
		if (!r->len || bd->no_punch) {
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

static void process_once(struct kl_blockdev *bd)
{
	bd->in_poll = true;
	struct kl_blk_req *list = bd->deferred;
	bd->deferred = NULL;
	bd->deferred_tail = &bd->deferred;
	while (list) {
		struct kl_blk_req *r = list;
		list = r->next;
		kl_blk_io_done(r, r->ret);
	}
	if (bd->pool)
		kl_tpool_poll(bd->pool);
	if (bd->ops->poll)
		bd->ops->poll(bd);
	bd->in_poll = false;
	if (bd->pool)
		kl_tpool_flush(bd->pool);
	if (bd->ops->flush_batch)
		bd->ops->flush_batch(bd);
}

static bool ready(struct kl_blockdev *bd)
{
	return bd->deferred || (bd->pool && kl_tpool_has_done(bd->pool)) ||
	       (bd->ops->has_completions && bd->ops->has_completions(bd));
}

static void process(struct kl_blockdev *bd)
{
	uint64_t v;
	while (read(bd->efd, &v, sizeof(v)) < 0 && errno == EINTR)
		;
	/* Completions that arrive meanwhile are handled now rather than after
	 * another trip through poll() (a kick they made costs one spurious
	 * wakeup).  With requests in flight, busy-poll for up to poll_ns for
	 * the next completion, like QEMU's aio polling; at most 1 ms here. */
	uint64_t start = kl_clock_ns(), spin_until = 0;
	for (;;) {
		process_once(bd);
		uint64_t t = kl_clock_ns();
		if (t - start > 1000000)
			break; /* let the other main-loop sources run */
		if (ready(bd))
			continue;
		if (!poll_ns || !bd->in_flight)
			break;
		if (!spin_until)
			spin_until = t + poll_ns;
		while (!ready(bd) && kl_clock_ns() < spin_until)
			__builtin_ia32_pause();
		if (!ready(bd))
			break;
		spin_until = 0;
	}
}

static bool efd_handler(int fd, GIOCondition cond, void *opaque)
{
	(void)fd;
	(void)cond;
	process(opaque);
	return true;
}

void kl_blockdev_close(struct kl_blockdev *bd)
{
	if (!bd)
		return;
	if (bd->in_poll) {
		fprintf(stderr, "kvmlite: BUG: drive '%s' closed from its completion callback\n",
			bd->id);
		abort();
	}
	if (bd->efd_watch)
		kl_source_remove(bd->efd_watch);
	bd->efd_watch = 0;
	/* Drain: every engine signals the eventfd on completion. */
	while (bd->in_flight) {
		struct pollfd p = { .fd = bd->efd, .events = POLLIN };
		process(bd);
		if (bd->in_flight)
			poll(&p, 1, 100);
	}
	if (bd->registered)
		kl_blockdev_unregister(bd);
	bd->ops->fini(bd);
	if (bd->pool)
		kl_tpool_free(bd->pool);
	close(bd->efd);
	close(bd->fd);
	g_free(bd->id);
	g_free(bd->filename);
	g_free(bd->attached);
	g_free(bd);
}
