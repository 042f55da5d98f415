/* Unit tests for src/block: all engines x cache modes on tmpfs (/dev/shm)
 * and /tmp, bounce buffers, flush/discard/write-zeroes, range and
 * read-only errors, queue depth 64, stats, drain, -drive parsing. */
#include <check.h>

#include "../kl_check.h"
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kvmlite/block.h"
#include "pagecache.h"
#include "kvmlite/loop.h"
#include "kvmlite/opts.h"
#include "../../../src/block/block_int.h" /* white box: fallocate fallbacks */
#include "../../../src/block/node.h"

#define FILE_SIZE (1u << 20)

static const char *const dirs[] = { "/dev/shm", "/tmp" };
static bool in_submit;
static char tmpl_path[256];

struct op {
	long ret;
	bool done;
	int seq;
};
static int done_seq;

static void op_cb(void *opaque, long ret)
{
	struct op *o = opaque;
	ck_assert_msg(!in_submit, "callback ran inside kl_blk_submit");
	ck_assert_msg(kl_loop_is_main_thread(), "callback not on the main loop thread");
	ck_assert_msg(kl_locked(), "callback without the BQL");
	ck_assert_msg(!o->done, "callback ran twice");
	o->done = true;
	o->ret = ret;
	o->seq = done_seq++;
}

static gboolean tick(gpointer p)
{
	(void)p;
	return G_SOURCE_CONTINUE;
}

/* Iterate the main loop until all n ops are done (fails after 30 s). */
static void wait_ops(struct op *ops, int n)
{
	gint64 deadline = g_get_monotonic_time() + 30 * G_USEC_PER_SEC;
	guint t = kl_timer_add_ms(50, tick, NULL);
	for (;;) {
		int left = 0;
		for (int i = 0; i < n; i++)
			left += !ops[i].done;
		if (!left)
			break;
		ck_assert_msg(g_get_monotonic_time() < deadline, "%d requests never completed", left);
		g_main_context_iteration(kl_loop_context(), TRUE);
	}
	kl_source_remove(t);
}

static int submit(struct kl_blockdev *bd, enum kl_blk_op op, uint64_t off,
		  const struct iovec *iov, int n, uint64_t len, struct op *o)
{
	memset(o, 0, sizeof(*o));
	in_submit = true;
	int r = kl_blk_submit(bd, op, off, iov, n, len, op_cb, o);
	in_submit = false;
	ck_assert_msg(!o->done, "completed inside submit");
	return r;
}

/* Submit one request and run the loop until it completes; returns ret. */
static long run1(struct kl_blockdev *bd, enum kl_blk_op op, uint64_t off,
		 const struct iovec *iov, int n, uint64_t len)
{
	struct op o;
	ck_assert_int_eq(submit(bd, op, off, iov, n, len, &o), 0);
	wait_ops(&o, 1);
	return o.ret;
}

static char *make_file(const char *dir, uint64_t size)
{
	char *p = g_strdup_printf("%s/klblk-test-XXXXXX", dir);
	int fd = mkstemp(p);
	ck_assert_msg(fd >= 0, "mkstemp %s: %s", p, strerror(errno));
	ck_assert_int_eq(ftruncate(fd, (off_t)size), 0);
	close(fd);
	return p;
}

static void read_file(const char *path, uint64_t off, void *buf, size_t len)
{
	int fd = open(path, O_RDONLY);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(pread(fd, buf, len, (off_t)off), (ssize_t)len);
	close(fd);
}

static void fill(unsigned char *b, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		b[i] = (unsigned char)((i * 131 + seed * 7 + (i >> 8)) ^ seed);
}

static bool all_zero(const unsigned char *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (b[i])
			return false;
	return true;
}

/* loop index -> dir, engine, cache */
static void combo(int i, const char **dir, enum kl_blk_engine *e, enum kl_blk_cache *c)
{
	*dir = dirs[i / 15];
	*e = (enum kl_blk_engine)((i % 15) / 5);
	*c = (enum kl_blk_cache)(i % 5);
}

static struct kl_blockdev *open_dev(const char *path, enum kl_blk_engine e,
				    enum kl_blk_cache c, bool ro)
{
	struct kl_block_opts o = { .id = "t", .file = path, .engine = e, .cache = c,
				   .readonly = ro, .discard_unmap = true };
	char *err = NULL;
	struct kl_blockdev *bd = kl_blockdev_open(&o, &err);
	ck_assert_msg(bd, "open %s aio=%s cache=%s: %s", path, kl_blk_engine_name(e),
		      kl_blk_cache_name(c), err ? err : "?");
	return bd;
}

START_TEST(test_rw_all_modes)
{
	const char *dir;
	enum kl_blk_engine e;
	enum kl_blk_cache c;
	combo(_i, &dir, &e, &c);
	char *path = make_file(dir, FILE_SIZE);
	bool direct = c == KL_CACHE_NONE || c == KL_CACHE_DIRECTSYNC;

	if (e == KL_AIO_NATIVE && !direct) {
		struct kl_block_opts o = { .file = path, .engine = e, .cache = c };
		char *err = NULL;
		ck_assert_ptr_null(kl_blockdev_open(&o, &err));
		ck_assert_str_eq(err, "aio=native was specified, but it requires "
			     "cache.direct=on, which was not specified.");
		g_free(err);
		unlink(path);
		g_free(path);
		return;
	}
	struct kl_blockdev *bd = open_dev(path, e, c, false);
	ck_assert_uint_eq(kl_blockdev_size(bd), FILE_SIZE);
	ck_assert_uint_eq(kl_blockdev_block_size(bd), 512);
	if (direct)
		ck_assert_uint_ge(kl_blockdev_dio_align(bd), 512);

	/* 1. sector-aligned offset, misaligned guest buffers and segment sizes */
	unsigned char *src = malloc(8192 + 16), *dst = malloc(8192 + 16), chk[8192];
	fill(src, 8192 + 16, 1);
	struct iovec wiov[3] = { { src + 1, 100 }, { src + 101, 3000 }, { src + 3101, 4096 - 3100 + 512 } };
	uint64_t wlen = 100 + 3000 + 4096 - 3100 + 512; /* 4608 */
	ck_assert_int_eq(run1(bd, KL_BLK_WRITE, 3 * 512, wiov, 3, 0), (long)wlen);
	memset(dst, 0xee, 8192);
	struct iovec riov[2] = { { dst + 3, 1000 }, { dst + 2000, wlen - 1000 } };
	ck_assert_int_eq(run1(bd, KL_BLK_READ, 3 * 512, riov, 2, 0), (long)wlen);
	ck_assert(memcmp(dst + 3, src + 1, 1000) == 0);
	ck_assert(memcmp(dst + 2000, src + 1001, wlen - 1000) == 0);

	/* 2. byte-granular offset and length inside the data just written
	 * (read-modify-write of the partial blocks with O_DIRECT) */
	struct iovec zr = { dst + 1, 100 }; /* leaves zeroes in a recycled bounce buffer */
	ck_assert_int_eq(run1(bd, KL_BLK_READ, 512 * 1024 + 5, &zr, 1, 0), 100);
	ck_assert(all_zero(dst + 1, 100));
	struct iovec biov = { src + 7, 333 };
	ck_assert_int_eq(run1(bd, KL_BLK_WRITE, 1536 + 50, &biov, 1, 0), 333);
	ck_assert_int_eq(run1(bd, KL_BLK_FLUSH, 0, NULL, 0, 0), 0);
	unsigned char exp[8192];
	memset(exp, 0, sizeof(exp));
	memcpy(exp + 1536, src + 1, wlen);
	memcpy(exp + 1536 + 50, src + 7, 333);
	read_file(path, 0, chk, 8192);
	ck_assert(memcmp(chk, exp, 8192) == 0);
	/* and through the device, from an odd buffer */
	memset(dst, 0, 8192);
	struct iovec r2 = { dst + 1, 8000 };
	ck_assert_int_eq(run1(bd, KL_BLK_READ, 0, &r2, 1, 0), 8000);
	ck_assert(memcmp(dst + 1, exp, 8000) == 0);

	/* 3. discard and write-zeroes read back as zeroes, neighbours kept */
	unsigned char *big = malloc(192 * 1024);
	fill(big, 192 * 1024, 5);
	struct iovec giov = { big, 192 * 1024 };
	ck_assert_int_eq(run1(bd, KL_BLK_WRITE, 64 * 1024, &giov, 1, 0), 192 * 1024);
	ck_assert_int_eq(run1(bd, KL_BLK_DISCARD, 64 * 1024, NULL, 0, 64 * 1024), 0);
	ck_assert_int_eq(run1(bd, KL_BLK_WRITE_ZEROES, 128 * 1024 + 512, NULL, 0, 4096 + 1024), 0);
	unsigned char *rb = malloc(192 * 1024);
	struct iovec rbiov = { rb, 192 * 1024 };
	ck_assert_int_eq(run1(bd, KL_BLK_READ, 64 * 1024, &rbiov, 1, 0), 192 * 1024);
	ck_assert(all_zero(rb, 64 * 1024));
	ck_assert(memcmp(rb + 64 * 1024, big + 64 * 1024, 512) == 0);
	ck_assert(all_zero(rb + 64 * 1024 + 512, 4096 + 1024));
	ck_assert(memcmp(rb + 64 * 1024 + 512 + 5120, big + 64 * 1024 + 512 + 5120,
			 128 * 1024 - 512 - 5120) == 0);

	/* 4. ranges past the end */
	struct iovec e1 = { dst, 512 };
	ck_assert_int_eq(run1(bd, KL_BLK_READ, FILE_SIZE, &e1, 1, 0), -EINVAL);
	ck_assert_int_eq(run1(bd, KL_BLK_READ, FILE_SIZE - 256, &e1, 1, 0), -EINVAL);
	ck_assert_int_eq(run1(bd, KL_BLK_WRITE, UINT64_MAX - 100, &e1, 1, 0), -EINVAL);
	ck_assert_int_eq(run1(bd, KL_BLK_DISCARD, FILE_SIZE - 512, NULL, 0, 1024), -EINVAL);
	ck_assert_int_eq(run1(bd, KL_BLK_READ, FILE_SIZE - 512, &e1, 1, 0), 512);

	/* 5. stats */
	struct kl_blk_stats s;
	kl_blockdev_get_stats(bd, &s);
	ck_assert_uint_eq(s.wr_ops, 3);
	ck_assert_uint_eq(s.wr_bytes, wlen + 333 + 192 * 1024);
	ck_assert_uint_eq(s.rd_ops, 5);
	ck_assert_uint_eq(s.rd_bytes, wlen + 100 + 8000 + 192 * 1024 + 512);
	ck_assert_uint_eq(s.flush_ops, 1);
	ck_assert_uint_eq(s.discard_ops, 1);
	ck_assert_uint_eq(s.wz_ops, 1);
	ck_assert_uint_eq(s.failed_rd_ops, 2);
	ck_assert_uint_eq(s.failed_wr_ops, 1);
	ck_assert_uint_gt(s.rd_total_ns, 0);
	ck_assert_uint_gt(s.wr_total_ns, 0);
	ck_assert_uint_eq(kl_blockdev_in_flight(bd), 0);

	kl_blockdev_close(bd);
	free(src);
	free(dst);
	free(big);
	free(rb);
	unlink(path);
	g_free(path);
}
END_TEST

/* Queue depth 64: distinct patterns per request, all in flight at once. */
START_TEST(test_qd64)
{
	const char *dir;
	enum kl_blk_engine e;
	enum kl_blk_cache c;
	combo(_i, &dir, &e, &c);
	if (e == KL_AIO_NATIVE && c != KL_CACHE_NONE && c != KL_CACHE_DIRECTSYNC)
		c = KL_CACHE_NONE;
	char *path = make_file(dir, 4u << 20);
	struct kl_blockdev *bd = open_dev(path, e, c, false);
	kl_blk_set_poll_ns(_i >= 15 ? 50000 : 0); /* busy-polling on for /tmp */
	enum { N = 64, BS = 8192 };
	unsigned char *buf;
	ck_assert_int_eq(posix_memalign((void **)&buf, 4096, N * BS), 0);
	struct op ops[N];
	struct iovec iov[N];
	for (int i = 0; i < N; i++) {
		fill(buf + i * BS, BS, (unsigned)i + 100);
		iov[i].iov_base = buf + i * BS;
		iov[i].iov_len = BS;
		/* scattered, descending offsets */
		ck_assert_int_eq(submit(bd, KL_BLK_WRITE, (uint64_t)(N - 1 - i) * 3 * BS,
					&iov[i], 1, 0, &ops[i]), 0);
	}
	ck_assert_uint_eq(kl_blockdev_in_flight(bd), N);
	wait_ops(ops, N);
	for (int i = 0; i < N; i++)
		ck_assert_int_eq(ops[i].ret, BS);
	memset(buf, 0, N * BS);
	for (int i = 0; i < N; i++)
		ck_assert_int_eq(submit(bd, KL_BLK_READ, (uint64_t)(N - 1 - i) * 3 * BS,
					&iov[i], 1, 0, &ops[i]), 0);
	wait_ops(ops, N);
	unsigned char exp[BS];
	for (int i = 0; i < N; i++) {
		ck_assert_int_eq(ops[i].ret, BS);
		fill(exp, BS, (unsigned)i + 100);
		ck_assert_msg(memcmp(buf + i * BS, exp, BS) == 0, "request %d data", i);
	}
	struct kl_blk_stats s;
	kl_blockdev_get_stats(bd, &s);
	ck_assert_uint_eq(s.wr_ops, N);
	ck_assert_uint_eq(s.rd_ops, N);
	ck_assert_uint_eq(s.rd_bytes, N * BS);
	kl_blockdev_close(bd);
	kl_blk_set_poll_ns(0);
	free(buf);
	unlink(path);
	g_free(path);
}
END_TEST

/* aio=threads with more requests in flight than the pool's ring holds
 * (1024): what does not fit waits in the main loop's batch and starts as
 * completions free ring slots (O_DIRECT on /tmp: 1 or 3 workers take far
 * longer for 1500 requests than the loop takes to submit them); the workers
 * are outnumbered by requests, so they take queued ones without sleeping.
 * Every write and read completes with its own data. */
START_TEST(test_pool_overflow)
{
	unsigned nthreads = _i ? 3 : 1;
	kl_blk_set_pool_size(nthreads);
	char *path = make_file("/tmp", 8u << 20);
	struct kl_blockdev *bd = open_dev(path, KL_AIO_THREADS, KL_CACHE_NONE, false);
	enum { N = 1500, BS = 4096 };
	unsigned char *buf;
	ck_assert_int_eq(posix_memalign((void **)&buf, 4096, (size_t)N * BS), 0);
	struct op *ops = g_new(struct op, N);
	struct iovec *iov = g_new(struct iovec, N);
	for (int i = 0; i < N; i++) {
		fill(buf + (size_t)i * BS, BS, (unsigned)i + 7);
		iov[i].iov_base = buf + (size_t)i * BS;
		iov[i].iov_len = BS;
		ck_assert_int_eq(submit(bd, KL_BLK_WRITE, (uint64_t)(N - 1 - i) * BS,
					&iov[i], 1, 0, &ops[i]), 0);
	}
	ck_assert_uint_eq(kl_blockdev_in_flight(bd), N);
	wait_ops(ops, N);
	for (int i = 0; i < N; i++)
		ck_assert_int_eq(ops[i].ret, BS);
	unsigned char exp[BS], got[BS];
	for (int i = 0; i < N; i += 97) {
		read_file(path, (uint64_t)(N - 1 - i) * BS, got, BS);
		fill(exp, BS, (unsigned)i + 7);
		ck_assert_msg(memcmp(got, exp, BS) == 0, "write %d on disk", i);
	}
	memset(buf, 0, (size_t)N * BS);
	for (int i = 0; i < N; i++)
		ck_assert_int_eq(submit(bd, KL_BLK_READ, (uint64_t)(N - 1 - i) * BS,
					&iov[i], 1, 0, &ops[i]), 0);
	wait_ops(ops, N);
	for (int i = 0; i < N; i++) {
		ck_assert_int_eq(ops[i].ret, BS);
		fill(exp, BS, (unsigned)i + 7);
		ck_assert_msg(memcmp(buf + (size_t)i * BS, exp, BS) == 0, "read %d data", i);
	}
	kl_blockdev_close(bd);
	kl_blk_set_pool_size(16);
	g_free(iov);
	g_free(ops);
	free(buf);
	unlink(path);
	g_free(path);
}
END_TEST

/* Completions follow the I/O, not submission order: a FLUSH of 32 MiB of
 * dirty page cache submitted first is overtaken by small O_DIRECT reads
 * (every engine runs them concurrently); a few tries for robustness. */
START_TEST(test_out_of_order)
{
	enum kl_blk_engine e = (enum kl_blk_engine)_i;
	char *path = make_file("/tmp", 64u << 20);
	struct kl_blockdev *bd = open_dev(path, e, KL_CACHE_NONE, false);
	void *dirty, *small;
	ck_assert_int_eq(posix_memalign(&dirty, 4096, 32u << 20), 0);
	ck_assert_int_eq(posix_memalign(&small, 4096, 4096), 0);
	memset(dirty, 0x33, 32u << 20);
	int fd = open(path, O_WRONLY);
	ck_assert_int_ge(fd, 0);
	bool overtaken = false;
	for (int t = 0; t < 5 && !overtaken; t++) {
		struct op ops[9];
		struct iovec si = { small, 4096 };
		ck_assert_int_eq(pwrite(fd, dirty, 32u << 20, 0), 32 << 20);
		ck_assert_int_eq(submit(bd, KL_BLK_FLUSH, 0, NULL, 0, 0, &ops[0]), 0);
		for (int i = 1; i < 9; i++)
			ck_assert_int_eq(submit(bd, KL_BLK_READ, (48u << 20) + 4096u * i, &si, 1, 0,
						&ops[i]), 0);
		wait_ops(ops, 9);
		for (int i = 0; i < 9; i++)
			ck_assert_int_eq(ops[i].ret, i ? 4096 : 0);
		for (int i = 1; i < 9; i++)
			if (ops[i].seq < ops[0].seq)
				overtaken = true;
	}
	ck_assert_msg(overtaken, "aio=%s: completions always in submission order",
		      kl_blk_engine_name(e));
	close(fd);
	kl_blockdev_close(bd);
	free(dirty);
	free(small);
	unlink(path);
	g_free(path);
}
END_TEST

/* A file whose size is not a multiple of the O_DIRECT alignment: the
 * partial last block reads and writes correctly and the size is kept. */
START_TEST(test_odd_size)
{
	enum kl_blk_engine e = (enum kl_blk_engine)_i;
	enum { SZ = 8192 + 1000 };
	char *path = make_file("/tmp", SZ);
	unsigned char pat[SZ], got[SZ + 1], w[700];
	fill(pat, SZ, 11);
	int fd = open(path, O_WRONLY);
	ck_assert_int_eq(pwrite(fd, pat, SZ, 0), SZ);
	close(fd);
	struct kl_blockdev *bd = open_dev(path, e, KL_CACHE_NONE, false);
	ck_assert_uint_eq(kl_blockdev_size(bd), SZ);
	struct iovec iov = { got + 1, 1000 };
	ck_assert_int_eq(run1(bd, KL_BLK_READ, 8192, &iov, 1, 0), 1000);
	ck_assert(memcmp(got + 1, pat + 8192, 1000) == 0);
	fill(w, sizeof(w), 12);
	struct iovec wi = { w, 692 };
	ck_assert_int_eq(run1(bd, KL_BLK_WRITE, SZ - 692, &wi, 1, 0), 692);
	struct iovec all = { got, SZ };
	ck_assert_int_eq(run1(bd, KL_BLK_READ, 0, &all, 1, 0), SZ);
	memcpy(pat + SZ - 692, w, 692);
	ck_assert(memcmp(got, pat, SZ) == 0);
	struct stat st;
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_eq(st.st_size, SZ);
	struct iovec past = { got, 200 };
	ck_assert_int_eq(run1(bd, KL_BLK_READ, SZ - 100, &past, 1, 0), -EINVAL);
	kl_blockdev_close(bd);
	unlink(path);
	g_free(path);
}
END_TEST

/* The file node's synchronous I/O (formats' metadata, file_drv.c) with
 * cache.direct=on: unaligned offsets, lengths and buffers, on a file whose
 * last block is partial, and a write across its end.  The bytes and the
 * size come out as a buffered fd would leave them, and no page of the file
 * is left in the page cache. */
START_TEST(test_sync_direct)
{
	enum { SZ = 8192 + 1000 };
	char *path = make_file("/tmp", SZ);
	static unsigned char pat[SZ + 20], got[2048], w[30];
	fill(pat, SZ, 21);
	int fd = open(path, O_WRONLY);
	ck_assert_int_eq(pwrite(fd, pat, SZ, 0), SZ);
	close(fd);
	kl_test_drop_cached(path);
	ck_assert_uint_eq(kl_test_cached_pages(path), 0);
	char *spec = g_strdup_printf("driver=file,filename=%s,cache.direct=on", path), *err = NULL;
	struct kl_opts *o = kl_opts_parse(spec, NULL, &err);
	ck_assert_msg(o, "%s", err);
	struct kl_bnode_inherit in = { .direct = true };
	struct kl_bnode *bs = kl_bnode_open(o, &in, &err);
	ck_assert_msg(bs, "%s", err);
	kl_opts_free(o);
	/* across the end: the file's bytes, then zeroes (unaligned buffer) */
	memset(got, 0xee, sizeof(got));
	ck_assert_int_eq(kl_bnode_pread_sync(bs, 8190, got + 1, 1500), 0);
	ck_assert(memcmp(got + 1, pat + 8190, SZ - 8190) == 0);
	ck_assert(all_zero(got + 1 + (SZ - 8190), 1500 - (SZ - 8190)));
	/* 8 bytes inside a block, as an L1 entry is written */
	fill(w, sizeof(w), 22);
	ck_assert_int_eq(kl_bnode_pwrite_sync(bs, 100, w, 8), 0);
	memcpy(pat + 100, w, 8);
	/* across the end of the file: it grows to exactly the write's end */
	fill(w, sizeof(w), 23);
	ck_assert_int_eq(kl_bnode_pwrite_sync(bs, SZ - 10, w + 1, 29), 0);
	memcpy(pat + SZ - 10, w + 1, 29);
	/* inside the (still partial) last block */
	ck_assert_int_eq(kl_bnode_pwrite_sync(bs, SZ + 2, w, 5), 0);
	memcpy(pat + SZ + 2, w, 5);
	ck_assert_int_eq(kl_bnode_pread_sync(bs, 0, got, 1024), 0);
	ck_assert(memcmp(got, pat, 1024) == 0);
	kl_bnode_unref(bs);
	ck_assert_msg(kl_test_cached_pages(path) == 0, "%zu pages cached", kl_test_cached_pages(path));
	struct stat st;
	ck_assert_int_eq(stat(path, &st), 0);
	ck_assert_int_eq(st.st_size, SZ + 19);
	static unsigned char all[SZ + 19];
	read_file(path, 0, all, SZ + 19);
	ck_assert(memcmp(all, pat, SZ + 19) == 0);
	unlink(path);
	g_free(path);
	g_free(spec);
}
END_TEST

/* Writes that share an O_DIRECT block are read-modify-written: the block
 * layer must serialise them.  Blocks 0-15: four concurrent writes of
 * distinct quarters of the same block; all four must land.  Blocks 16-31:
 * a whole-block write, then a quarter write of it, both in flight: the
 * result must be one of the two serial orders (never the quarter on top
 * of the block's old contents).  Repeated to give the race its chances. */
START_TEST(test_rmw_serialised)
{
	enum kl_blk_engine e = (enum kl_blk_engine)_i;
	char *path = make_file("/tmp", FILE_SIZE);
	struct kl_blockdev *bd = open_dev(path, e, KL_CACHE_NONE, false);
	uint32_t a = kl_blockdev_dio_align(bd);
	ck_assert_uint_gt(a, 1);
	enum { NB = 32, Q = 4, N = 16 * Q + 2 * 16 };
	ck_assert_uint_le((uint64_t)NB * a, FILE_SIZE);
	unsigned char *buf = g_malloc((size_t)N * a), *img = g_malloc((size_t)NB * a);
	struct op ops[N];
	struct iovec iov[N];
	for (int round = 0; round < 20; round++) {
		int n = 0;
		for (int b = 0; b < 16; b++)
			for (int q = 0; q < Q; q++, n++) {
				iov[n].iov_base = buf + (size_t)n * a;
				iov[n].iov_len = a / Q;
				fill(iov[n].iov_base, a / Q, (unsigned)(round * 1000 + n));
				ck_assert_int_eq(submit(bd, KL_BLK_WRITE, (uint64_t)b * a + q * (a / Q),
							&iov[n], 1, 0, &ops[n]), 0);
			}
		for (int b = 16; b < NB; b++) {
			iov[n].iov_base = buf + (size_t)n * a;
			iov[n].iov_len = a;
			fill(iov[n].iov_base, a, (unsigned)(round * 1000 + n));
			ck_assert_int_eq(submit(bd, KL_BLK_WRITE, (uint64_t)b * a, &iov[n], 1, 0,
						&ops[n]), 0);
			n++;
			iov[n].iov_base = buf + (size_t)n * a;
			iov[n].iov_len = a / Q;
			fill(iov[n].iov_base, a / Q, (unsigned)(round * 1000 + n));
			ck_assert_int_eq(submit(bd, KL_BLK_WRITE, (uint64_t)b * a + a / Q, &iov[n], 1,
						0, &ops[n]), 0);
			n++;
		}
		wait_ops(ops, N);
		for (int i = 0; i < N; i++)
			ck_assert_int_eq(ops[i].ret, (long)iov[i].iov_len);
		read_file(path, 0, img, (size_t)NB * a);
		for (int i = 0; i < 16 * Q; i++)
			ck_assert_msg(memcmp(img + (size_t)(i / Q) * a + (i % Q) * (a / Q),
					     iov[i].iov_base, a / Q) == 0,
				      "round %d: quarter %d of block %d lost", round, i % Q, i / Q);
		for (int b = 16, i = 16 * Q; b < NB; b++, i += 2) {
			unsigned char *blk = img + (size_t)b * a;
			bool whole_last = memcmp(blk, iov[i].iov_base, a) == 0;
			bool quarter_last = memcmp(blk, iov[i].iov_base, a / Q) == 0 &&
				memcmp(blk + a / Q, iov[i + 1].iov_base, a / Q) == 0 &&
				memcmp(blk + 2 * (a / Q), (unsigned char *)iov[i].iov_base + 2 * (a / Q),
				       a - 2 * (a / Q)) == 0;
			ck_assert_msg(whole_last || quarter_last,
				      "round %d: block %d is neither serial order", round, b);
		}
	}
	kl_blockdev_close(bd);
	g_free(buf);
	g_free(img);
	unlink(path);
	g_free(path);
}
END_TEST

/* A synchronous write of part of an O_DIRECT block (a format's metadata
 * beside a data cluster in the block) is a read-modify-write too: it must
 * wait for the async writes in flight to that block, or write their old
 * bytes back (or have its own undone by their RMW).  Per block: an async
 * write of its first quarter, at once a sync write of its third; both must
 * land, and the async callback must not run inside the sync call. */
START_TEST(test_sync_rmw_waits)
{
	enum kl_blk_engine e = (enum kl_blk_engine)_i;
	char *path = make_file("/tmp", FILE_SIZE);
	kl_blk_set_min_align(4096); /* a 4 KiB block whatever the disk's */
	struct kl_blockdev *bd = open_dev(path, e, KL_CACHE_NONE, false);
	kl_blk_set_min_align(0);
	uint32_t a = kl_blockdev_dio_align(bd);
	ck_assert_uint_eq(a, 4096);
	struct kl_bnode *file = kl_blockdev_root(bd)->file;
	ck_assert_ptr_nonnull(file);
	enum { NB = 32 };
	ck_assert_uint_le((uint64_t)NB * a, FILE_SIZE);
	unsigned char *abuf = g_malloc((size_t)NB * a), *sbuf = g_malloc((size_t)NB * a);
	unsigned char *img = g_malloc((size_t)NB * a);
	struct op ops[NB];
	struct iovec iov[NB];
	for (int round = 0; round < 10; round++) {
		for (int b = 0; b < NB; b++) {
			unsigned char *x = abuf + (size_t)b * a, *y = sbuf + (size_t)b * a;
			fill(x, a / 4, (unsigned)(round * 1000 + b));
			fill(y, a / 4, (unsigned)(round * 1000 + 500 + b));
			iov[b] = (struct iovec){ x, a / 4 };
			ck_assert_int_eq(submit(bd, KL_BLK_WRITE, (uint64_t)b * a, &iov[b], 1, 0,
						&ops[b]), 0);
			in_submit = true; /* op_cb: not inside the sync call either */
			ck_assert_int_eq(kl_bnode_pwrite_sync(file, (uint64_t)b * a + a / 2, y,
							      a / 4), 0);
			in_submit = false;
		}
		wait_ops(ops, NB);
		read_file(path, 0, img, (size_t)NB * a);
		for (int b = 0; b < NB; b++) {
			ck_assert_int_eq(ops[b].ret, (long)(a / 4));
			ck_assert_msg(!memcmp(img + (size_t)b * a, abuf + (size_t)b * a, a / 4),
				      "round %d block %d: the async write was undone", round, b);
			ck_assert_msg(!memcmp(img + (size_t)b * a + a / 2, sbuf + (size_t)b * a, a / 4),
				      "round %d block %d: the sync write was undone", round, b);
		}
	}
	kl_blockdev_close(bd);
	g_free(abuf);
	g_free(sbuf);
	g_free(img);
	unlink(path);
	g_free(path);
}
END_TEST

/* File systems without fallocate ZERO_RANGE/PUNCH_HOLE: write-zeroes is
 * emulated with writes of a zero buffer (several chunks, unaligned ends),
 * discard completes as a no-op. */
START_TEST(test_wz_fallback)
{
	enum kl_blk_engine e = (enum kl_blk_engine)(_i / 2);
	enum kl_blk_cache c = _i % 2 ? KL_CACHE_NONE
		: e == KL_AIO_NATIVE ? KL_CACHE_DIRECTSYNC : KL_CACHE_WRITEBACK;
	enum { SZ = 12 << 20 };
	char *path = make_file("/tmp", SZ);
	unsigned char *pat = malloc(SZ), *got = malloc(SZ);
	fill(pat, SZ, 21);
	int fd = open(path, O_WRONLY);
	ck_assert_int_eq(pwrite(fd, pat, SZ, 0), SZ);
	close(fd);
	struct kl_blockdev *bd = open_dev(path, e, c, false);
	struct kl_bnode *fnode = kl_blockdev_root(bd)->file;
	fnode->bfile->no_zero_range = fnode->bfile->no_punch = true;
	uint64_t zoff = 4096 + 512 + 3, zlen = (9u << 20) + 100;
	ck_assert_int_eq(run1(bd, KL_BLK_WRITE_ZEROES, zoff, NULL, 0, zlen), 0);
	ck_assert_int_eq(run1(bd, KL_BLK_DISCARD, 0, NULL, 0, 1 << 20), 0);
	struct iovec iov = { got, SZ };
	ck_assert_int_eq(run1(bd, KL_BLK_READ, 0, &iov, 1, 0), SZ);
	memset(pat + zoff, 0, zlen);
	ck_assert(memcmp(got, pat, SZ) == 0);
	struct kl_blk_stats s;
	kl_blockdev_get_stats(bd, &s);
	ck_assert_uint_eq(s.wz_ops, 1);
	ck_assert_uint_eq(s.discard_ops, 1);
	ck_assert_uint_eq(s.wr_ops, 0);
	/* per node (query-blockstats query-nodes): the furthest write, zeroes
	 * included; the file counts the discard it passed on */
	struct kl_bnode *root = kl_blockdev_root(bd);
	ck_assert_uint_eq(root->stats.wr_highest_offset, zoff + zlen);
	ck_assert_uint_eq(fnode->stats.wr_highest_offset, zoff + zlen);
	ck_assert_uint_eq(fnode->stats.discard_nb_ok, 1);
	ck_assert_uint_eq(fnode->stats.discard_bytes_ok, 1 << 20);
	ck_assert_uint_eq(fnode->stats.discard_nb_failed, 0);
	iov = (struct iovec){ got, 512 };
	ck_assert_int_eq(run1(bd, KL_BLK_WRITE, SZ - 512, &iov, 1, 0), 512);
	ck_assert_uint_eq(root->stats.wr_highest_offset, SZ);
	ck_assert_uint_eq(fnode->stats.wr_highest_offset, SZ);
	kl_blockdev_close(bd);
	free(pat);
	free(got);
	unlink(path);
	g_free(path);
}
END_TEST

START_TEST(test_readonly)
{
	enum kl_blk_engine e = (enum kl_blk_engine)_i;
	char *path = make_file("/tmp", FILE_SIZE);
	int fd = open(path, O_WRONLY);
	unsigned char pat[4096], got[4096];
	fill(pat, sizeof(pat), 9);
	ck_assert_int_eq(pwrite(fd, pat, sizeof(pat), 8192), (ssize_t)sizeof(pat));
	close(fd);
	struct kl_blockdev *bd = open_dev(path, e, e == KL_AIO_NATIVE ? KL_CACHE_NONE
					  : KL_CACHE_WRITEBACK, true);
	ck_assert(kl_blockdev_readonly(bd));
	struct iovec iov = { got, sizeof(got) };
	ck_assert_int_eq(run1(bd, KL_BLK_WRITE, 0, &iov, 1, 0), -EROFS);
	ck_assert_int_eq(run1(bd, KL_BLK_DISCARD, 0, NULL, 0, 4096), -EROFS);
	ck_assert_int_eq(run1(bd, KL_BLK_WRITE_ZEROES, 0, NULL, 0, 4096), -EROFS);
	ck_assert_int_eq(run1(bd, KL_BLK_READ, 8192, &iov, 1, 0), 4096);
	ck_assert(memcmp(got, pat, sizeof(pat)) == 0);
	ck_assert_int_eq(run1(bd, KL_BLK_FLUSH, 0, NULL, 0, 0), 0);
	struct kl_blk_stats s;
	kl_blockdev_get_stats(bd, &s);
	ck_assert_uint_eq(s.failed_wr_ops, 2);
	ck_assert_uint_eq(s.wr_ops, 0);
	ck_assert_uint_eq(s.rd_ops, 1);
	kl_blockdev_close(bd);
	unlink(path);
	g_free(path);
}
END_TEST

/* cache=unsafe: FLUSH completes with 0 without an fdatasync. writeback:
 * FLUSH is a real fdatasync (counted, takes time > 0). */
START_TEST(test_flush_modes)
{
	char *path = make_file("/tmp", FILE_SIZE);
	struct kl_blockdev *bd = open_dev(path, KL_AIO_IO_URING, KL_CACHE_UNSAFE, false);
	ck_assert_int_eq(run1(bd, KL_BLK_FLUSH, 0, NULL, 0, 0), 0);
	struct kl_blk_stats s;
	kl_blockdev_get_stats(bd, &s);
	ck_assert_uint_eq(s.flush_ops, 1);
	kl_blockdev_close(bd);
	bd = open_dev(path, KL_AIO_THREADS, KL_CACHE_WRITEBACK, false);
	ck_assert_int_eq(run1(bd, KL_BLK_FLUSH, 0, NULL, 0, 0), 0);
	kl_blockdev_get_stats(bd, &s);
	ck_assert_uint_eq(s.flush_ops, 1);
	ck_assert_uint_gt(s.flush_total_ns, 0);
	kl_blockdev_close(bd);
	unlink(path);
	g_free(path);
}
END_TEST

static int drained;
static void count_cb(void *opaque, long ret)
{
	(void)opaque;
	ck_assert_int_eq(ret, 4096);
	drained++;
}

START_TEST(test_close_drains)
{
	enum kl_blk_engine e = (enum kl_blk_engine)_i;
	char *path = make_file("/tmp", 4u << 20);
	struct kl_blockdev *bd = open_dev(path, e, KL_CACHE_NONE, false);
	void *buf;
	ck_assert_int_eq(posix_memalign(&buf, 4096, 4096), 0);
	memset(buf, 0x5a, 4096);
	struct iovec iov = { buf, 4096 };
	drained = 0;
	for (int i = 0; i < 32; i++)
		ck_assert_int_eq(kl_blk_submit(bd, i & 1 ? KL_BLK_READ : KL_BLK_WRITE,
					       (uint64_t)i * 4096, &iov, 1, 0, count_cb, NULL), 0);
	ck_assert_int_eq(drained, 0);
	kl_blockdev_close(bd);
	ck_assert_int_eq(drained, 32);
	free(buf);
	unlink(path);
	g_free(path);
}
END_TEST

START_TEST(test_bad_args)
{
	char *path = make_file("/dev/shm", FILE_SIZE);
	struct kl_blockdev *bd = open_dev(path, KL_AIO_THREADS, KL_CACHE_WRITEBACK, false);
	struct op o;
	ck_assert_int_eq(submit(bd, (enum kl_blk_op)42, 0, NULL, 0, 0, &o), -EINVAL);
	ck_assert_int_eq(submit(bd, KL_BLK_READ, 0, NULL, -1, 0, &o), -EINVAL);
	ck_assert_int_eq(kl_blk_submit(bd, KL_BLK_FLUSH, 0, NULL, 0, 0, NULL, NULL), -EINVAL);
	ck_assert_uint_eq(kl_blockdev_in_flight(bd), 0);
	/* zero-length read completes with 0, later */
	ck_assert_int_eq(run1(bd, KL_BLK_READ, 0, NULL, 0, 0), 0);
	kl_blockdev_close(bd);
	unlink(path);
	g_free(path);
}
END_TEST

/* ---- -drive parsing ---- */

static struct kl_blockdev *drive(const char *s, char **ifv, char **err)
{
	char *perr = NULL;
	struct kl_opts *o = kl_opts_parse(s, "file", &perr);
	ck_assert_msg(o, "parse '%s': %s", s, perr ? perr : "?");
	*err = NULL;
	struct kl_blockdev *bd = kl_drive_add(o, ifv, err);
	kl_opts_free(o);
	return bd;
}

static void drive_fails(const char *s, const char *expect)
{
	char *err, *ifv = NULL;
	struct kl_blockdev *bd = drive(s, &ifv, &err);
	ck_assert_msg(!bd, "'%s' accepted", s);
	ck_assert_msg(err && strstr(err, expect), "'%s': error '%s' lacks '%s'", s,
		      err ? err : "(none)", expect);
	ck_assert_msg(!strchr(err, '\n'), "multi-line error '%s'", err);
	g_free(err);
}

static void on_each(struct kl_blockdev *bd, void *opaque)
{
	GString *s = opaque;
	g_string_append_printf(s, "%s;", kl_blockdev_id(bd));
}

START_TEST(test_drive_options)
{
	char *path = make_file("/tmp", FILE_SIZE);
	char *s, *err, *ifv;

	s = g_strdup_printf("file=%s", path);
	struct kl_blockdev *d0 = drive(s, &ifv, &err);
	ck_assert_msg(d0, "%s", err ? err : "?");
	ck_assert_str_eq(ifv, "virtio");
	/* QEMU 7.2 names an id-less drive "<if><unit>" */
	ck_assert_str_eq(kl_blockdev_id(d0), "virtio0");
	ck_assert_int_eq(kl_blockdev_cache(d0), KL_CACHE_WRITEBACK);
	ck_assert_int_eq(kl_blockdev_engine(d0), KL_AIO_THREADS);
	ck_assert(!kl_blockdev_readonly(d0));
	ck_assert_str_eq(kl_blockdev_filename(d0), path);
	g_free(ifv);
	g_free(s);

	s = g_strdup_printf("%s,if=none,id=disk1,cache=none,aio=native,readonly=on,"
			    "media=disk,index=1,format=raw", path);
	struct kl_blockdev *d1 = drive(s, &ifv, &err);
	ck_assert_msg(d1, "%s", err ? err : "?");
	ck_assert_str_eq(ifv, "none");
	ck_assert_ptr_eq(kl_blockdev_find("disk1"), d1);
	ck_assert_int_eq(kl_blockdev_cache(d1), KL_CACHE_NONE);
	ck_assert_int_eq(kl_blockdev_engine(d1), KL_AIO_NATIVE);
	ck_assert(kl_blockdev_readonly(d1));
	g_free(ifv);
	g_free(s);

	s = g_strdup_printf("file=%s,aio=io_uring,cache=unsafe", path);
	struct kl_blockdev *d2 = drive(s, &ifv, &err);
	ck_assert_msg(d2, "%s", err ? err : "?");
	ck_assert_str_eq(kl_blockdev_id(d2), "virtio1");
	ck_assert_str_eq(kl_blk_cache_name(kl_blockdev_cache(d2)), "unsafe");
	ck_assert_str_eq(kl_blk_engine_name(kl_blockdev_engine(d2)), "io_uring");
	g_free(ifv);
	g_free(s);

	/* index= takes that unit; the next id-less drive the first free one */
	s = g_strdup_printf("file=%s,if=none,index=3,readonly=on", path);
	struct kl_blockdev *d3 = drive(s, &ifv, &err);
	ck_assert_msg(d3, "%s", err ? err : "?");
	ck_assert_str_eq(kl_blockdev_id(d3), "none3");
	g_free(ifv);
	g_free(s);
	s = g_strdup_printf("file=%s,if=none,readonly=on", path);
	struct kl_blockdev *d4 = drive(s, &ifv, &err);
	ck_assert_msg(d4, "%s", err ? err : "?");
	ck_assert_str_eq(kl_blockdev_id(d4), "none0");
	g_free(ifv);
	g_free(s);

	GString *ids = g_string_new(NULL);
	kl_blockdev_foreach(on_each, ids);
	ck_assert_str_eq(ids->str, "virtio0;disk1;virtio1;none3;none0;");
	g_string_free(ids, TRUE);

	kl_blockdev_set_attached(d1, "virtio-blk-pci");
	ck_assert_str_eq(kl_blockdev_attached(d1), "virtio-blk-pci");

#define FAILS(fmt, expect) do { s = g_strdup_printf(fmt, path); \
	drive_fails(s, expect); g_free(s); } while (0)
	FAILS("file=%s,id=disk1", "duplicate id 'disk1'");
	FAILS("file=%s,if=none,index=1", "drive with bus=0, unit=1 (index=1) exists");
	FAILS("file=%s,index=0", "drive with bus=0, unit=0 (index=0) exists");
	FAILS("file=%s,if=ide", "if=ide is not supported");
	FAILS("file=%s,if=scsi", "if=scsi");
	FAILS("file=%s,cache=sometimes", "invalid cache option 'sometimes'");
	FAILS("file=%s,aio=posix", "invalid aio option 'posix'");
	FAILS("file=%s,format=vmdk", "Unknown driver 'vmdk'");
	FAILS("file=%s,format=qcow2", "qcow2: image is not in qcow2 format");
	FAILS("file=%s,aio=native", "aio=native was specified, but it requires "
	      "cache.direct=on, which was not specified.");
	FAILS("file=%s,aio=native,cache=writethrough", "requires cache.direct=on");
	FAILS("file=%s,readonly=maybe", "readonly");
	FAILS("file=%s,media=cdrom", "media=cdrom");
	FAILS("file=%s,bogus=1", "bogus");
	FAILS("file=%s.missing", "Could not open '");
	FAILS("file=%s.missing", ".missing': No such file or directory");
	drive_fails("id=x", "file= is required");
	drive_fails("file=/dev/shm", "Is a directory");
#undef FAILS
	if (geteuid() != 0) {
		chmod(path, 0);
		s = g_strdup_printf("file=%s", path);
		drive_fails(s, "Permission denied");
		g_free(s);
		chmod(path, 0600);
	}
	kl_blockdev_close(d1);
	ck_assert_ptr_null(kl_blockdev_find("disk1"));
	kl_blockdev_close_all();
	ck_assert_ptr_null(kl_blockdev_find("virtio0"));
	/* a closed drive's unit is free again */
	s = g_strdup_printf("file=%s", path);
	d0 = drive(s, &ifv, &err);
	ck_assert_msg(d0, "%s", err ? err : "?");
	ck_assert_str_eq(kl_blockdev_id(d0), "virtio0");
	g_free(ifv);
	g_free(s);
	kl_blockdev_close_all();
	unlink(path);
	g_free(path);
}
END_TEST

/* qemu-img made images: raw works; qcow2 as format=raw (its bytes) and as qcow2. */
START_TEST(test_qemu_img_images)
{
	char *raw = g_strdup_printf("%s/klblk-raw-%d.img", "/tmp", (int)getpid());
	char *qc = g_strdup_printf("%s/klblk-q-%d.qcow2", "/tmp", (int)getpid());
	char *cmd = g_strdup_printf("qemu-img create -q -f raw %s 3M && "
				    "qemu-img create -q -f qcow2 %s 64M", raw, qc);
	bool have_qemu_img = system(cmd) == 0;
	if (!have_qemu_img) {
		/* no qemu-img: write the qcow2 magic header ourselves */
		FILE *f = fopen(qc, "wb");
		ck_assert_ptr_nonnull(f);
		static const unsigned char hdr[512] = { 'Q', 'F', 'I', 0xfb, 0, 0, 0, 3 };
		ck_assert_uint_eq(fwrite(hdr, 1, sizeof(hdr), f), sizeof(hdr));
		fclose(f);
		int fd = open(raw, O_CREAT | O_WRONLY | O_TRUNC, 0600);
		ck_assert_int_eq(ftruncate(fd, 3 << 20), 0);
		close(fd);
	}
	g_free(cmd);
	char *s, *err, *ifv;
	s = g_strdup_printf("file=%s,format=raw,cache=none,aio=io_uring", raw);
	struct kl_blockdev *bd = drive(s, &ifv, &err);
	ck_assert_msg(bd, "%s", err ? err : "?");
	ck_assert_uint_eq(kl_blockdev_size(bd), 3u << 20);
	g_free(ifv);
	g_free(s);
	kl_blockdev_close(bd);

	struct stat st;
	ck_assert_int_eq(stat(qc, &st), 0);
	s = g_strdup_printf("file=%s,format=raw", qc);
	bd = drive(s, &ifv, &err);
	ck_assert_msg(bd, "%s", err ? err : "?");
	ck_assert_uint_eq(kl_blockdev_size(bd), (uint64_t)st.st_size);
	unsigned char m[4];
	struct iovec iov = { m, 4 };
	ck_assert_int_eq(run1(bd, KL_BLK_READ, 0, &iov, 1, 0), 4);
	ck_assert(memcmp(m, "QFI\xfb", 4) == 0);
	g_free(ifv);
	g_free(s);
	kl_blockdev_close(bd);

	/* format=qcow2 and probing open the image with the qcow2 driver (the
	 * hand-made header without qemu-img has no valid tables) */
	for (int probe = 0; probe < 2; probe++) {
		s = g_strdup_printf(probe ? "file=%s" : "file=%s,format=qcow2", qc);
		if (have_qemu_img) {
			bd = drive(s, &ifv, &err);
			ck_assert_msg(bd, "%s", err ? err : "?");
			ck_assert_uint_eq(kl_blockdev_size(bd), 64u << 20);
			g_free(ifv);
			kl_blockdev_close(bd);
		} else {
			drive_fails(s, "qcow2:");
		}
		g_free(s);
	}
	unlink(raw);
	unlink(qc);
	g_free(raw);
	g_free(qc);
}
END_TEST

int main(void)
{
	kl_loop_init();
	(void)tmpl_path;
	Suite *s = suite_create("block");
	TCase *tc = tcase_create("engines");
	tcase_set_timeout(tc, 120);
	tcase_add_loop_test(tc, test_rw_all_modes, 0, 30);
	tcase_add_loop_test(tc, test_qd64, 0, 30);
	tcase_add_loop_test(tc, test_pool_overflow, 0, 2);
	tcase_add_loop_test(tc, test_out_of_order, 0, 3);
	tcase_add_loop_test(tc, test_readonly, 0, 3);
	tcase_add_loop_test(tc, test_odd_size, 0, 3);
	tcase_add_test(tc, test_sync_direct);
	tcase_add_loop_test(tc, test_rmw_serialised, 0, 3);
	tcase_add_loop_test(tc, test_sync_rmw_waits, 0, 3);
	tcase_add_loop_test(tc, test_wz_fallback, 0, 6);
	tcase_add_loop_test(tc, test_close_drains, 0, 3);
	tcase_add_test(tc, test_flush_modes);
	tcase_add_test(tc, test_bad_args);
	suite_add_tcase(s, tc);
	TCase *tp = tcase_create("drive");
	tcase_set_timeout(tp, 60);
	tcase_add_test(tp, test_drive_options);
	tcase_add_test(tp, test_qemu_img_images);
	suite_add_tcase(s, tp);
	return kl_check_run(s);
}
