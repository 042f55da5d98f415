/* Unit tests for the qcow2 driver (src/block/qcow2*.c) on the real file
 * driver, against images made by qemu-img and a raw reference: reads,
 * random concurrent writes, zeroes/discard, backing chains, snapshots,
 * dirty-bit repair, feature errors, refcount table growth.  Every image is
 * checked with `qemu-img check` and compared with `qemu-img compare`. */
#include <check.h>

#include "../kl_check.h"
#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kvmlite/loop.h"
#include "pagecache.h"
#include "kvmlite/opts.h"
#include "../../../src/block/node.h"

static char dir[256];
static bool have_qemu;
static bool no_unmap; /* open_img: discard=ignore */
static bool direct_io; /* open_img: cache.direct=on */
static enum kl_blk_engine engine_sel; /* open_img: aio= */

/* ---- helpers ---- */

static int sh(const char *fmt, ...) G_GNUC_PRINTF(1, 2);
static int sh(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *cmd = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	char *inner = g_strdup_printf("cd %s && (%s) >/dev/null 2>&1", dir, cmd);
	gchar *q = g_shell_quote(inner);
	char *full = g_strdup_printf("bash -c %s", q);
	g_free(q);
	g_free(inner);
	int st = system(full);
	g_free(full);
	g_free(cmd);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static char *sh_out(const char *fmt, ...) G_GNUC_PRINTF(1, 2);
static char *sh_out(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	char *cmd = g_strdup_vprintf(fmt, ap);
	va_end(ap);
	char *full = g_strdup_printf("cd %s && %s 2>&1", dir, cmd);
	char *out = NULL;
	gchar *argv[] = { "/bin/sh", "-c", full, NULL };
	g_spawn_sync(NULL, argv, NULL, 0, NULL, NULL, &out, NULL, NULL, NULL);
	g_free(full);
	g_free(cmd);
	return out ? out : g_strdup("");
}

static char *path(const char *name)
{
	return g_strdup_printf("%s/%s", dir, name);
}

static void check_clean(const char *img)
{
	char *out = sh_out("qemu-img check %s; echo rc=$?", img);
	ck_assert_msg(strstr(out, "rc=0"), "qemu-img check %s:\n%s", img, out);
	g_free(out);
}

static void compare_raw(const char *img, const char *raw)
{
	char *out = sh_out("qemu-img compare -f qcow2 -F raw %s %s; echo rc=$?", img, raw);
	ck_assert_msg(strstr(out, "rc=0"), "qemu-img compare %s %s:\n%s", img, raw, out);
	g_free(out);
}

static uint8_t *read_file(const char *name, size_t *len)
{
	char *p = path(name);
	gchar *d = NULL;
	gsize n = 0;
	ck_assert_msg(g_file_get_contents(p, &d, &n, NULL), "read %s", p);
	g_free(p);
	*len = n;
	return (uint8_t *)d;
}

static void write_file(const char *name, const uint8_t *d, size_t len)
{
	char *p = path(name);
	ck_assert(g_file_set_contents(p, (const char *)d, (gssize)len, NULL));
	g_free(p);
}

static struct kl_bnode *open_img(const char *name, bool ro, const char *opts, char **err)
{
	struct kl_bnode_inherit in = { 0 };
	in.readonly = ro;
	in.discard_unmap = !no_unmap;
	in.direct = direct_io;
	in.engine = engine_sel;
	char *p = path(name);
	struct kl_opts *o = NULL;
	if (opts) {
		char *e = NULL;
		o = kl_opts_parse(opts, NULL, &e);
		ck_assert_msg(o, "opts: %s", e);
	}
	char *e = NULL;
	struct kl_bnode *bs = kl_bnode_open_image(p, "qcow2", &in, o, &e);
	if (o)
		kl_opts_free(o);
	g_free(p);
	if (err)
		*err = e;
	else {
		ck_assert_msg(bs, "open %s: %s", name, e);
		g_free(e);
	}
	return bs;
}

struct op {
	bool done;
	long ret;
};

static bool in_submit;

static void op_cb(void *opaque, long ret)
{
	struct op *o = opaque;
	ck_assert_msg(!in_submit, "callback inside the submitting call");
	ck_assert_msg(!o->done, "callback twice");
	o->done = true;
	o->ret = ret;
}

static void wait_ops(struct kl_bnode *bs, struct op *ops, int n)
{
	kl_bnode_drain(bs);
	for (int i = 0; i < n; i++)
		ck_assert_msg(ops[i].done, "request %d never completed", i);
}

enum { R, W, Z, D, F };

static void submit(struct kl_bnode *bs, int op, uint64_t off, void *buf, uint64_t len,
		   unsigned flags, struct op *o)
{
	struct iovec v[3];
	int n = 0;
	/* split the buffer into up to 3 iovecs to exercise slicing */
	if (buf && len >= 3) {
		uint64_t a = len / 3, b = len / 2;
		v[0] = (struct iovec){ buf, a };
		v[1] = (struct iovec){ (uint8_t *)buf + a, b - a };
		v[2] = (struct iovec){ (uint8_t *)buf + b, len - b };
		n = 3;
	} else if (buf) {
		v[0] = (struct iovec){ buf, len };
		n = 1;
	}
	memset(o, 0, sizeof(*o));
	in_submit = true;
	int r;
	switch (op) {
	case R: r = kl_bnode_preadv(bs, off, v, n, op_cb, o); break;
	case W: r = kl_bnode_pwritev(bs, off, v, n, op_cb, o); break;
	case Z: r = kl_bnode_write_zeroes(bs, off, len, flags, op_cb, o); break;
	case D: r = kl_bnode_discard(bs, off, len, op_cb, o); break;
	default: r = kl_bnode_flush(bs, op_cb, o); break;
	}
	in_submit = false;
	ck_assert_msg(r == 0, "submit op %d: %d", op, r);
	ck_assert_msg(!o->done, "completed inside submit");
}

static void io1(struct kl_bnode *bs, int op, uint64_t off, void *buf, uint64_t len,
		unsigned flags)
{
	struct op o;
	submit(bs, op, off, buf, len, flags, &o);
	wait_ops(bs, &o, 1);
	ck_assert_msg(o.ret == ((op == R || op == W) ? (long)len : 0),
		      "op %d at %lu+%lu: ret %ld", op, (unsigned long)off, (unsigned long)len, o.ret);
}

/* random reads of bs compared with ref */
static void read_compare(struct kl_bnode *bs, const uint8_t *ref, uint64_t size, GRand *rnd,
			 int n)
{
	uint8_t *buf = g_malloc(1 << 20);
	for (int i = 0; i < n; i++) {
		uint64_t len = (uint64_t)g_rand_int_range(rnd, 1, 1 << 20);
		if (i % 3 == 0)
			len = (uint64_t)g_rand_int_range(rnd, 1, 8192);
		if (len > size)
			len = size;
		uint64_t off = (uint64_t)g_rand_double_range(rnd, 0, (double)(size - len + 1));
		if (off + len > size)
			off = size - len;
		memset(buf, 0xa5, len);
		io1(bs, R, off, buf, len, 0);
		if (memcmp(buf, ref + off, len)) {
			uint64_t k = 0;
			while (buf[k] == ref[off + k])
				k++;
			ck_abort_msg("read %lu+%lu differs at %lu: %02x != %02x", (unsigned long)off,
				     (unsigned long)len, (unsigned long)(off + k), buf[k], ref[off + k]);
		}
	}
	/* whole image in 1 MiB pieces */
	for (uint64_t off = 0; off < size; off += 1 << 20) {
		uint64_t len = size - off < (1 << 20) ? size - off : (1 << 20);
		io1(bs, R, off, buf, len, 0);
		ck_assert_msg(!memcmp(buf, ref + off, len), "full read differs in MiB %lu",
			      (unsigned long)(off >> 20));
	}
	g_free(buf);
}

/* A raw file of size with random data, zero runs and holes. */
static uint8_t *make_raw(const char *name, uint64_t size, GRand *rnd)
{
	uint8_t *d = g_malloc0(size);
	for (uint64_t off = 0; off < size;) {
		uint64_t len = (uint64_t)g_rand_int_range(rnd, 1, 300000);
		if (len > size - off)
			len = size - off;
		int kind = g_rand_int_range(rnd, 0, 3);
		if (kind == 0)
			for (uint64_t i = 0; i < len; i++)
				d[off + i] = (uint8_t)g_rand_int(rnd);
		off += len;
	}
	write_file(name, d, size);
	return d;
}

static uint64_t rw_base; /* random_writes: offset of ref[0] in the image */

/* Batches of concurrent non-overlapping requests (random writes, zeroes,
 * discards), applied to ref in order; batches overlap each other. */
static void random_writes(struct kl_bnode *bs, uint8_t *ref, uint64_t size, uint32_t cs,
			  GRand *rnd, int batches, bool zd)
{
	enum { N = 16 };
	for (int b = 0; b < batches; b++) {
		struct op ops[N];
		uint8_t *bufs[N] = { 0 };
		uint64_t offs[N], lens[N];
		int n = 0;
		for (int t = 0; t < 64 && n < N; t++) {
			uint64_t len = (uint64_t)g_rand_int_range(rnd, 1, 3 * (int)cs + 5000);
			if (g_rand_boolean(rnd))
				len = (uint64_t)g_rand_int_range(rnd, 1, 1500);
			if (len > size)
				len = size;
			uint64_t off = (uint64_t)g_rand_double_range(rnd, 0, (double)(size - len));
			/* sometimes two requests in the same cluster */
			if (n && g_rand_int_range(rnd, 0, 4) == 0) {
				off = offs[n - 1] + lens[n - 1] + (uint64_t)g_rand_int_range(rnd, 0, 700);
				if (off + len > size)
					continue;
			}
			int kind = zd ? g_rand_int_range(rnd, 0, 10) : 0;
			int op = kind < 7 ? W : kind < 9 ? Z : D;
			unsigned flags = g_rand_boolean(rnd) ? KL_BZ_MAY_UNMAP : 0;
			if (op == D) {
				off = off / cs * cs;
				len = (len + cs - 1) / cs * cs;
				if (off + len > size)
					len = (size - off) / cs * cs;
				if (!len)
					continue;
			}
			bool clash = false;
			for (int k = 0; k < n; k++)
				if (off < offs[k] + lens[k] && offs[k] < off + len)
					clash = true;
			if (clash)
				continue;
			offs[n] = off;
			lens[n] = len;
			if (op == W) {
				bufs[n] = g_malloc(len);
				for (uint64_t i = 0; i < len; i++)
					bufs[n][i] = (uint8_t)g_rand_int(rnd);
				memcpy(ref + off, bufs[n], len);
			} else {
				memset(ref + off, 0, len);
			}
			submit(bs, op, rw_base + off, bufs[n], len, flags, &ops[n]);
			n++;
		}
		wait_ops(bs, ops, n);
		for (int k = 0; k < n; k++) {
			ck_assert_msg(ops[k].ret >= 0, "batch %d req %d: %ld", b, k, ops[k].ret);
			g_free(bufs[k]);
		}
		if (b % 7 == 3)
			io1(bs, F, 0, NULL, 0, 0);
	}
}

/* ---- images ---- */

struct cfg {
	const char *name;
	uint32_t cs;
	const char *create_opts;   /* -o for convert */
	bool compress;
	uint64_t size;
};

static const struct cfg cfgs[] = {
	{ "c512", 512, "cluster_size=512", false, 6 << 20 },
	{ "c64k", 65536, "cluster_size=65536", false, 24 << 20 },
	{ "c2m", 2 << 20, "cluster_size=2M", false, 24 << 20 },
	{ "extl2", 65536, "cluster_size=65536,extended_l2=on", false, 24 << 20 },
	{ "extl2_32k", 32768, "cluster_size=32768,extended_l2=on", false, 8 << 20 },
	{ "zlib", 65536, "cluster_size=65536,compression_type=zlib", true, 16 << 20 },
	{ "zstd", 65536, "cluster_size=65536,compression_type=zstd", true, 16 << 20 },
	{ "rc1", 65536, "cluster_size=65536,refcount_bits=1", false, 16 << 20 },
	{ "rc64", 65536, "cluster_size=65536,refcount_bits=64", false, 16 << 20 },
	{ "rc64_512", 512, "cluster_size=512,refcount_bits=64", false, 4 << 20 },
	{ "v2", 65536, "cluster_size=65536,compat=0.10", false, 16 << 20 },
	{ "lazy", 4096, "cluster_size=4096,lazy_refcounts=on", false, 8 << 20 },
};

#define SKIP_NO_QEMU() do { if (!have_qemu) { \
	fprintf(stderr, "SKIP: qemu-img not found\n"); return; } } while (0)

static uint8_t *make_image(const struct cfg *c, GRand *rnd, const char *img)
{
	uint8_t *ref = make_raw("ref.raw", c->size, rnd);
	ck_assert_int_eq(sh("rm -f %s; qemu-img convert -f raw -O qcow2 %s -o %s ref.raw %s", img,
			    c->compress ? "-c" : "", c->create_opts, img), 0);
	return ref;
}

START_TEST(test_read_images)
{
	SKIP_NO_QEMU();
	const struct cfg *c = &cfgs[_i];
	GRand *rnd = g_rand_new_with_seed(100 + (guint32)_i);
	uint8_t *ref = make_image(c, rnd, "img.qcow2");
	struct kl_bnode *bs = open_img("img.qcow2", true, NULL, NULL);
	ck_assert_uint_eq(bs->size, c->size);
	ck_assert_uint_eq(bs->drv->cluster_size(bs), c->cs);
	read_compare(bs, ref, c->size, rnd, 200);
	JsonObject *o = json_object_new();
	bs->drv->info(bs, o);
	ck_assert_str_eq(json_object_get_string_member(o, "compat"),
			 strstr(c->create_opts, "0.10") ? "0.10" : "1.1");
	ck_assert(!json_object_get_boolean_member(o, "corrupt"));
	json_object_unref(o);
	kl_bnode_unref(bs);
	check_clean("img.qcow2");
	g_free(ref);
	g_rand_free(rnd);
}
END_TEST

/* Random concurrent writes on a qemu-img image, then again after reopening
 * with a tiny L2 cache (evictions); qemu-img check and compare after each.
 * direct: with cache.direct=on, and neither data nor metadata (the header,
 * L1 entries of 8 bytes, L2 slices, refcount blocks, all through the
 * O_DIRECT fd with bounce buffers where unaligned) may leave a page of the
 * image in the page cache, which would make every later O_DIRECT write
 * flush and invalidate (bench/README.md, "qcow2 metadata and the page
 * cache"). */
/* True (and a SKIP line) when the file at p cannot be opened with O_DIRECT. */
static bool direct_refused(const char *p)
{
	int t = open(p, O_RDONLY | O_DIRECT);
	if (t < 0 && errno == EINVAL) {
		fprintf(stderr, "SKIP: %s refuses O_DIRECT\n", dir);
		return true;
	}
	ck_assert_msg(t >= 0, "open %s: %s", p, strerror(errno));
	close(t);
	return false;
}

static void write_images(const struct cfg *c, GRand *rnd, int n1, int n2, bool direct)
{
	uint8_t *ref = make_image(c, rnd, "img.qcow2");
	char *p = path("img.qcow2");
	if (direct) {
		if (direct_refused(p)) {
			g_free(p);
			g_free(ref);
			return;
		}
		kl_test_drop_cached(p);
		ck_assert_uint_eq(kl_test_cached_pages(p), 0);
	}
	direct_io = direct;
	for (int pass = 0; pass < 2; pass++) {
		if (direct) /* qemu-img check and compare read through it */
			kl_test_drop_cached(p);
		struct kl_bnode *bs = open_img("img.qcow2", false, pass ? "l2-cache-size=4096,"
					       "refcount-cache-size=4096" : NULL, NULL);
		random_writes(bs, ref, c->size, c->cs, rnd, pass ? n2 : n1, true);
		read_compare(bs, ref, c->size, rnd, pass ? n2 + 10 : n1 + 10);
		kl_bnode_unref(bs);
		if (direct)
			ck_assert_msg(kl_test_cached_pages(p) == 0, "%s: %zu pages of the image "
				      "cached after cache.direct=on I/O", c->name,
				      kl_test_cached_pages(p));
		write_file("ref.raw", ref, c->size);
		check_clean("img.qcow2");
		compare_raw("img.qcow2", "ref.raw");
	}
	direct_io = false;
	g_free(p);
	g_free(ref);
}

START_TEST(test_write_images)
{
	SKIP_NO_QEMU();
	if (getenv("KL_QCOW2_CFG") && atoi(getenv("KL_QCOW2_CFG")) != _i)
		return;
	GRand *rnd = g_rand_new_with_seed(200 + (guint32)_i +
					  (getenv("KL_QCOW2_SEED") ? (guint32)atoi(getenv("KL_QCOW2_SEED")) : 0));
	write_images(&cfgs[_i], rnd, 40, 20, false);
	g_rand_free(rnd);
}
END_TEST

/* The same with cache.direct=on (skipped where the directory refuses it). */
START_TEST(test_write_images_direct)
{
	SKIP_NO_QEMU();
	GRand *rnd = g_rand_new_with_seed(300 + (guint32)_i);
	write_images(&cfgs[_i], rnd, 30, 15, true);
	g_rand_free(rnd);
}
END_TEST

/* Clusters smaller than the O_DIRECT block: 512 B clusters on a file whose
 * O_DIRECT alignment is 4 KiB (forced: kl_blk_set_min_align), so one block
 * holds data clusters and metadata (L2 tables, refcount blocks) side by
 * side, and every write of either is a read-modify-write of its block.  A
 * metadata write must not read the block while a data write to a
 * neighbouring cluster of it is in flight and write it back after (the
 * data write would be lost), nor a data write's RMW the other way round.
 * Fresh image, 32 concurrent allocating 512 B writes per batch; qemu-img
 * check and compare after; per engine. */
START_TEST(test_sub_align)
{
	SKIP_NO_QEMU();
	const uint64_t size = 8 << 20, cs = 512;
	char *p = path("sa.qcow2");
	ck_assert_int_eq(sh("rm -f sa.qcow2 && qemu-img create -q -f qcow2 -o cluster_size=512 "
			    "sa.qcow2 %lu", (unsigned long)size), 0);
	if (direct_refused(p)) {
		g_free(p);
		return;
	}
	GRand *rnd = g_rand_new_with_seed(400 + (guint32)_i);
	uint8_t *ref = g_malloc0(size);
	kl_blk_set_min_align(4096);
	direct_io = true;
	engine_sel = (enum kl_blk_engine)_i;
	/* small caches: slices are evicted (written) while data writes are in
	 * flight, as is a FLUSH submitted amid each batch */
	struct kl_bnode *bs = open_img("sa.qcow2", false, "l2-cache-size=4096,"
				       "refcount-cache-size=4096", NULL);
	enum { N = 32 };
	for (int b = 0; b < 40; b++) {
		struct op ops[N + 1];
		uint8_t *bufs[N];
		uint64_t offs[N];
		for (int n = 0; n < N; n++) {
			bool clash;
			do {
				offs[n] = (uint64_t)g_rand_int_range(rnd, 0, (gint32)(size / cs)) * cs;
				clash = false;
				for (int k = 0; k < n; k++)
					clash |= offs[k] == offs[n];
			} while (clash);
			bufs[n] = g_malloc(cs);
			for (uint64_t i = 0; i < cs; i++)
				bufs[n][i] = (uint8_t)g_rand_int(rnd);
			memcpy(ref + offs[n], bufs[n], cs);
			submit(bs, W, offs[n], bufs[n], cs, 0, &ops[n]);
			if (n == N / 2)
				submit(bs, F, 0, NULL, 0, 0, &ops[N]);
		}
		wait_ops(bs, ops, N + 1);
		ck_assert_msg(ops[N].ret == 0, "batch %d flush: %ld", b, ops[N].ret);
		for (int n = 0; n < N; n++) {
			ck_assert_msg(ops[n].ret == (long)cs, "batch %d req %d: %ld", b, n, ops[n].ret);
			g_free(bufs[n]);
		}
	}
	io1(bs, F, 0, NULL, 0, 0);
	read_compare(bs, ref, size, rnd, 20);
	kl_bnode_unref(bs);
	kl_blk_set_min_align(0);
	direct_io = false;
	engine_sel = KL_AIO_THREADS;
	write_file("ref.raw", ref, size);
	check_clean("sa.qcow2");
	compare_raw("sa.qcow2", "ref.raw");
	g_free(ref);
	g_free(p);
	g_rand_free(rnd);
}
END_TEST

/* base.raw <- mid.qcow2 (512 B clusters) <- top.qcow2 (64 KiB, extended L2 off) */
START_TEST(test_backing_chain)
{
	SKIP_NO_QEMU();
	GRand *rnd = g_rand_new_with_seed(7);
	uint64_t size = 8 << 20;
	uint8_t *base = make_raw("base.raw", size, rnd);
	g_free(base);
	ck_assert_int_eq(sh("rm -f mid.qcow2 top.qcow2 && qemu-img create -q -f qcow2 -o "
			    "cluster_size=512 -b base.raw -F raw mid.qcow2 && "
			    "qemu-io -c 'write -P 0x11 100000 300000' -c 'write -z 1000000 70000' "
			    "mid.qcow2 && qemu-img create -q -f qcow2 -b mid.qcow2 -F qcow2 top.qcow2 "
			    "6M && qemu-io -c 'write -P 0x22 200000 100000' -c 'write -P 0x33 3000000 5000' "
			    "top.qcow2 && qemu-img convert -O raw top.qcow2 ref.raw"), 0);
	size = 6 << 20;
	size_t n;
	uint8_t *ref = read_file("ref.raw", &n);
	ck_assert_uint_eq(n, size);
	struct kl_bnode *bs = open_img("top.qcow2", false, NULL, NULL);
	ck_assert_ptr_nonnull(bs->backing);
	ck_assert_ptr_nonnull(bs->backing->backing);
	ck_assert_str_eq(bs->backing_fmt, "qcow2");
	read_compare(bs, ref, size, rnd, 100);
	random_writes(bs, ref, size, 65536, rnd, 30, true);
	read_compare(bs, ref, size, rnd, 30);
	kl_bnode_unref(bs);
	write_file("ref.raw", ref, size);
	check_clean("top.qcow2");
	check_clean("mid.qcow2");
	compare_raw("top.qcow2", "ref.raw");
	g_free(ref);
	g_rand_free(rnd);
}
END_TEST

/* subclusters over a backing file: partial writes keep backing data */
START_TEST(test_extl2_backing)
{
	SKIP_NO_QEMU();
	GRand *rnd = g_rand_new_with_seed(8);
	uint64_t size = 4 << 20;
	uint8_t *ref = make_raw("base.raw", size, rnd);
	ck_assert_int_eq(sh("rm -f top.qcow2 && qemu-img create -q -f qcow2 -o "
			    "cluster_size=65536,extended_l2=on -b base.raw -F raw top.qcow2"), 0);
	struct kl_bnode *bs = open_img("top.qcow2", false, NULL, NULL);
	random_writes(bs, ref, size, 65536, rnd, 30, true);
	read_compare(bs, ref, size, rnd, 30);
	kl_bnode_unref(bs);
	write_file("ref.raw", ref, size);
	check_clean("top.qcow2");
	compare_raw("top.qcow2", "ref.raw");
	g_free(ref);
	g_rand_free(rnd);
}
END_TEST

/* _i 0-3: cached; 4-7: the same with cache.direct=on (our snapshot create,
 * list and delete with all their metadata through the O_DIRECT fd) */
START_TEST(test_snapshots)
{
	SKIP_NO_QEMU();
	direct_io = _i >= 4;
	_i %= 4;
	static const char *const opts[] = { "-o cluster_size=4096",
		"-o cluster_size=65536,extended_l2=on", "-c -o cluster_size=4096",
		"-o cluster_size=4096,compat=0.10" };
	static const uint32_t css[] = { 4096, 65536, 4096, 4096 };
	uint32_t cs = css[_i];
	GRand *rnd = g_rand_new_with_seed(9 + (guint32)_i);
	uint64_t size = 8 << 20;
	uint8_t *ref = make_raw("ref.raw", size, rnd);
	ck_assert_int_eq(sh("rm -f s.qcow2 && qemu-img convert -O qcow2 %s ref.raw s.qcow2",
			    opts[_i]), 0);
	struct kl_bnode *bs = open_img("s.qcow2", false, NULL, NULL);
	char *err = NULL;
	ck_assert_msg(bs->drv->snapshot_create(bs, NULL, "snap1", &err) == 0, "%s", err);
	uint8_t *at_snap = g_memdup2(ref, size);
	random_writes(bs, ref, size, cs, rnd, 20, true);
	GArray *a = g_array_new(false, false, sizeof(struct kl_snapshot_info));
	bs->drv->snapshot_list(bs, a);
	ck_assert_uint_eq(a->len, 1);
	ck_assert_str_eq(g_array_index(a, struct kl_snapshot_info, 0).id, "1");
	ck_assert_str_eq(g_array_index(a, struct kl_snapshot_info, 0).name, "snap1");
	g_array_set_size(a, 0);
	read_compare(bs, ref, size, rnd, 20);
	ck_assert_msg(bs->drv->snapshot_create(bs, NULL, "snap2", &err) == 0, "%s", err);
	random_writes(bs, ref, size, cs, rnd, 10, true);
	kl_bnode_unref(bs);
	write_file("cur.raw", ref, size);
	check_clean("s.qcow2");
	compare_raw("s.qcow2", "cur.raw");
	char *out = sh_out("qemu-img snapshot -l s.qcow2");
	ck_assert_msg(strstr(out, "snap1") && strstr(out, "snap2"), "%s", out);
	g_free(out);
	/* made by qemu-img, listed by the driver; delete one of ours */
	ck_assert_int_eq(sh("qemu-img snapshot -c qsnap s.qcow2"), 0);
	bs = open_img("s.qcow2", false, NULL, NULL);
	bs->drv->snapshot_list(bs, a);
	ck_assert_uint_eq(a->len, 3);
	ck_assert_str_eq(g_array_index(a, struct kl_snapshot_info, 2).name, "qsnap");
	ck_assert_msg(bs->drv->snapshot_delete(bs, NULL, "snap2", &err) == 0, "%s", err);
	ck_assert_int_ne(bs->drv->snapshot_delete(bs, "77", NULL, &err), 0);
	g_free(err);
	err = NULL;
	random_writes(bs, ref, size, cs, rnd, 10, false);
	kl_bnode_unref(bs);
	write_file("cur.raw", ref, size);
	check_clean("s.qcow2");
	compare_raw("s.qcow2", "cur.raw");
	out = sh_out("qemu-img snapshot -l s.qcow2");
	ck_assert_msg(strstr(out, "snap1") && !strstr(out, "snap2") && strstr(out, "qsnap"), "%s",
		      out);
	g_free(out);
	/* apply ours with qemu-img */
	ck_assert_int_eq(sh("qemu-img snapshot -a snap1 s.qcow2"), 0);
	write_file("snap.raw", at_snap, size);
	check_clean("s.qcow2");
	compare_raw("s.qcow2", "snap.raw");
	ck_assert_int_eq(sh("qemu-img snapshot -d snap1 s.qcow2 && qemu-img snapshot -d qsnap "
			    "s.qcow2"), 0);
	check_clean("s.qcow2");
	/* the only snapshot, made and deleted by the driver: every cluster is
	 * back to refcount 1 and OFLAG_COPIED (tables replaced by copies) */
	memcpy(ref, at_snap, size);
	bs = open_img("s.qcow2", false, NULL, NULL);
	ck_assert_msg(bs->drv->snapshot_create(bs, NULL, "x", &err) == 0, "%s", err);
	random_writes(bs, ref, size, cs, rnd, 5, true);
	ck_assert_msg(bs->drv->snapshot_delete(bs, NULL, "x", &err) == 0, "%s", err);
	random_writes(bs, ref, size, cs, rnd, 5, true);
	kl_bnode_unref(bs);
	write_file("cur.raw", ref, size);
	check_clean("s.qcow2");
	compare_raw("s.qcow2", "cur.raw");
	out = sh_out("qemu-img snapshot -l s.qcow2");
	ck_assert_msg(!strstr(out, "x"), "%s", out);
	g_free(out);
	g_array_free(a, true);
	g_free(at_snap);
	g_free(ref);
	g_rand_free(rnd);
	direct_io = false;
}
END_TEST

static void set_incompat_bit(const char *img, int bit, bool on)
{
	char *p = path(img);
	int fd = open(p, O_RDWR);
	ck_assert_int_ge(fd, 0);
	uint8_t b[8];
	ck_assert_int_eq(pread(fd, b, 8, 72), 8);
	if (on)
		b[7 - bit / 8] |= (uint8_t)(1u << (bit % 8));
	else
		b[7 - bit / 8] &= (uint8_t)~(1u << (bit % 8));
	ck_assert_int_eq(pwrite(fd, b, 8, 72), 8);
	close(fd);
	g_free(p);
}

START_TEST(test_dirty_repair)
{
	SKIP_NO_QEMU();
	/* qemu-io killed with lazy refcounts: dirty bit left set */
	ck_assert_int_eq(sh("rm -f d.qcow2 && qemu-img create -q -f qcow2 -o "
			    "lazy_refcounts=on,cluster_size=4096 d.qcow2 16M && qemu-io "
			    "-c 'write -P 0x5a 0 3M' -c 'write -P 0x6b 5M 1M' -c flush "
			    "-c 'write -P 0x7c 8M 1M' -c 'sigraise 9' d.qcow2; true"), 0);
	char *out = sh_out("qemu-img info d.qcow2");
	(void)out;
	g_free(out);
	/* read-only open works without repair */
	struct kl_bnode *bs = open_img("d.qcow2", true, NULL, NULL);
	uint8_t buf[4096];
	io1(bs, R, 4096, buf, sizeof(buf), 0);
	ck_assert_uint_eq(buf[0], 0x5a);
	kl_bnode_unref(bs);
	bs = open_img("d.qcow2", false, NULL, NULL);
	kl_bnode_unref(bs);
	check_clean("d.qcow2");
	out = sh_out("qemu-io -r -c 'read -P 0x5a 0 3M' -c 'read -P 0x6b 5M 1M' d.qcow2");
	ck_assert_msg(!strstr(out, "Pattern verification failed"), "%s", out);
	g_free(out);
	/* constructed: a dirty image whose refcounts leak and undercount */
	GRand *rnd = g_rand_new_with_seed(10);
	uint64_t size = 4 << 20;
	uint8_t *ref = make_raw("ref.raw", size, rnd);
	ck_assert_int_eq(sh("rm -f d.qcow2 && qemu-img convert -O qcow2 -o "
			    "lazy_refcounts=on,cluster_size=512 ref.raw d.qcow2"), 0);
	bs = open_img("d.qcow2", false, NULL, NULL);
	random_writes(bs, ref, size, 512, rnd, 10, true);
	kl_bnode_unref(bs);
	set_incompat_bit("d.qcow2", 0, true);
	/* wreck the first refcount table entry's block: zeroes */
	ck_assert_int_eq(sh("off=$(qemu-img info --output=json d.qcow2 >/dev/null; "
			    "od -An -j48 -N8 -tx1 d.qcow2 | tr -d ' \\n'); "
			    "rt=$((16#$off)); rb=$(od -An -j$rt -N8 -tx1 d.qcow2 | tr -d ' \\n'); "
			    "dd if=/dev/zero of=d.qcow2 bs=1 seek=$((16#$rb + 16)) count=64 "
			    "conv=notrunc"), 0);
	bs = open_img("d.qcow2", false, NULL, NULL);
	read_compare(bs, ref, size, rnd, 20);
	random_writes(bs, ref, size, 512, rnd, 10, true);
	kl_bnode_unref(bs);
	write_file("ref.raw", ref, size);
	check_clean("d.qcow2");
	compare_raw("d.qcow2", "ref.raw");
	g_free(ref);
	g_rand_free(rnd);
}
END_TEST

START_TEST(test_feature_errors)
{
	SKIP_NO_QEMU();
	char *err = NULL;
	ck_assert_int_eq(sh("rm -f e.qcow2 && qemu-img create -q -f qcow2 e.qcow2 1M"), 0);
	set_incompat_bit("e.qcow2", 1, true);
	ck_assert_ptr_null(open_img("e.qcow2", false, NULL, &err));
	ck_assert_msg(err && strstr(err, "qcow2: image is corrupt; cannot be opened read/write"),
		      "%s", err);
	g_free(err);
	struct kl_bnode *bs = open_img("e.qcow2", true, NULL, NULL);
	uint8_t buf[512];
	io1(bs, R, 0, buf, sizeof(buf), 0);
	kl_bnode_unref(bs);
	set_incompat_bit("e.qcow2", 1, false);
	set_incompat_bit("e.qcow2", 13, true);
	ck_assert_ptr_null(open_img("e.qcow2", true, NULL, &err));
	ck_assert_msg(err && strstr(err, "Unsupported qcow2 feature(s)") && strstr(err, "2000"),
		      "%s", err);
	g_free(err);
	set_incompat_bit("e.qcow2", 13, false);
	set_incompat_bit("e.qcow2", 2, true);
	ck_assert_ptr_null(open_img("e.qcow2", true, NULL, &err));
	ck_assert_msg(err && strstr(err, "external data file"), "%s", err);
	g_free(err);
	/* named by the feature table: qemu-img writes "extended L2 entries" for
	 * bit 4; make it bit 5 in the table and the header */
	set_incompat_bit("e.qcow2", 2, false);
	set_incompat_bit("e.qcow2", 5, true);
	ck_assert_int_eq(sh("python3 -c \"import sys\nd=bytearray(open('e.qcow2','rb').read())\n"
			    "i=d.find(b'extended L2 entries')\nd[i-1]=5\n"
			    "open('e.qcow2','wb').write(d)\""), 0);
	ck_assert_ptr_null(open_img("e.qcow2", true, NULL, &err));
	ck_assert_msg(err && strstr(err, "Unsupported qcow2 feature(s): extended L2 entries"),
		      "%s", err);
	g_free(err);
	/* bad metadata found at I/O time: -EIO, and the image is marked corrupt */
	ck_assert_int_eq(sh("rm -f e.qcow2 && qemu-img create -q -f qcow2 e.qcow2 1M && "
			    "qemu-io -c 'write -P 0x11 0 64k' e.qcow2 && python3 -c \"import struct\n"
			    "d=bytearray(open('e.qcow2','rb').read())\n"
			    "l1=struct.unpack('>Q',d[40:48])[0]\n"
			    "l2=struct.unpack('>Q',d[l1:l1+8])[0]&0x00fffffffffffe00\n"
			    "e=struct.unpack('>Q',d[l2:l2+8])[0]\n"
			    "d[l2:l2+8]=struct.pack('>Q',e|0x1200)\n"
			    "open('e.qcow2','wb').write(d)\""), 0);
	bs = open_img("e.qcow2", false, NULL, NULL);
	struct op o;
	submit(bs, R, 0, buf, sizeof(buf), 0, &o);
	wait_ops(bs, &o, 1);
	ck_assert_int_eq(o.ret, -EIO);
	submit(bs, W, 70000, buf, sizeof(buf), 0, &o);
	wait_ops(bs, &o, 1);
	ck_assert_int_eq(o.ret, -EIO);
	kl_bnode_unref(bs);
	ck_assert_ptr_null(open_img("e.qcow2", false, NULL, &err));
	ck_assert_msg(err && strstr(err, "image is corrupt"), "%s", err);
	g_free(err);
	/* not qcow2 / truncated */
	ck_assert_int_eq(sh("head -c 300 /dev/zero > z.qcow2 && printf 'QFI\\373' | dd "
			    "of=z.qcow2 conv=notrunc"), 0);
	ck_assert_ptr_null(open_img("z.qcow2", true, NULL, &err));
	g_free(err);
}
END_TEST

/* 512 B clusters, 64-bit refcounts: a refblock covers 64 clusters and a
 * refcount table cluster 64 refblocks, so 8 MiB of writes grow the table. */
START_TEST(test_refcount_growth)
{
	SKIP_NO_QEMU();
	GRand *rnd = g_rand_new_with_seed(11);
	uint64_t size = 24 << 20;
	ck_assert_int_eq(sh("rm -f g.qcow2 && qemu-img create -q -f qcow2 -o "
			    "cluster_size=512,refcount_bits=64 g.qcow2 24M"), 0);
	uint8_t *ref = g_malloc0(size);
	struct kl_bnode *bs = open_img("g.qcow2", false, NULL, NULL);
	uint8_t *buf = g_malloc(1 << 20);
	for (int i = 0; i < 10; i++) {
		uint64_t off = (uint64_t)g_rand_int_range(rnd, 0, 23) << 20;
		for (int k = 0; k < (1 << 20); k++)
			buf[k] = (uint8_t)g_rand_int(rnd);
		io1(bs, W, off, buf, 1 << 20, 0);
		memcpy(ref + off, buf, 1 << 20);
	}
	random_writes(bs, ref, size, 512, rnd, 10, true);
	read_compare(bs, ref, size, rnd, 20);
	kl_bnode_unref(bs);
	write_file("ref.raw", ref, size);
	check_clean("g.qcow2");
	compare_raw("g.qcow2", "ref.raw");
	char *out = sh_out("qemu-img info g.qcow2 >/dev/null; od -An -j56 -N4 -tu1 g.qcow2");
	ck_assert_msg(!strstr(out, " 0   0   0   1"), "refcount table did not grow: %s", out);
	g_free(out);
	g_free(buf);
	g_free(ref);
	g_rand_free(rnd);
}
END_TEST

START_TEST(test_create)
{
	SKIP_NO_QEMU();
	char *err = NULL;
	const struct kl_bdrv *d = kl_bdrv_find("qcow2");
	ck_assert_ptr_nonnull(d);
	ck_assert_int_eq(sh("rm -f c.qcow2 cb.raw && head -c 3M /dev/urandom > cb.raw"), 0);
	char *p = path("c.qcow2");
	ck_assert_msg(d->create(p, 3 << 20, "cb.raw", "raw", &err) == 0, "%s", err);
	g_free(p);
	check_clean("c.qcow2");
	ck_assert_int_eq(sh("qemu-img compare c.qcow2 cb.raw"), 0);
	struct kl_bnode *bs = open_img("c.qcow2", false, NULL, NULL);
	uint8_t buf[1000];
	memset(buf, 0x42, sizeof(buf));
	io1(bs, W, 12345, buf, sizeof(buf), 0);
	kl_bnode_unref(bs);
	check_clean("c.qcow2");
	/* discard=ignore drops discards; discard=unmap zeroes the cluster */
	no_unmap = true;
	bs = open_img("c.qcow2", false, NULL, NULL);
	no_unmap = false;
	io1(bs, D, 0, NULL, 65536, 0);
	uint8_t rb[1000];
	io1(bs, R, 12345, rb, sizeof(rb), 0);
	ck_assert(!memcmp(rb, buf, sizeof(rb)));
	kl_bnode_unref(bs);
	bs = open_img("c.qcow2", false, NULL, NULL);
	io1(bs, D, 0, NULL, 65536, 0);
	io1(bs, R, 12345, rb, sizeof(rb), 0);
	for (size_t i = 0; i < sizeof(rb); i++)
		ck_assert_uint_eq(rb[i], 0);
	io1(bs, W, 12345, buf, sizeof(buf), 0);
	kl_bnode_unref(bs);
	check_clean("c.qcow2");
	ck_assert_int_eq(sh("qemu-io -c 'read -P 0x42 12345 1000' c.qcow2 | grep -q 'read 1000'"),
			 0);
	/* probing picks qcow2 */
	ck_assert_int_eq(d->probe((const uint8_t *)"QFI\xfb\0\0\0\3", 8), 100);
}
END_TEST


/* SIGKILL at any moment: a child writes (allocating) generation g to
 * cluster-sized slot g plus random writes elsewhere, flushes, and reports g
 * after each completed flush.  After the kill, `qemu-img check` finds no
 * corruption (leaks allowed) and every reported slot reads back. */
static void crash_child(const char *img, int wfd, unsigned seed)
{
	struct kl_bnode *bs = open_img(img, false, NULL, NULL);
	GRand *rnd = g_rand_new_with_seed(seed);
	uint64_t size = bs->size;
	uint8_t *ref = g_malloc0(size);
	uint8_t slot[4096];
	rw_base = 8 << 20;
	for (unsigned g = 0; g < 120; g++) {
		struct op o[2];
		memset(slot, (int)(g + 1), sizeof(slot));
		submit(bs, W, (uint64_t)g * 65536, slot, sizeof(slot), 0, &o[0]);
		wait_ops(bs, o, 1);
		random_writes(bs, ref + (8 << 20), size - (8 << 20), 4096, rnd, 1, true);
		io1(bs, F, 0, NULL, 0, 0);
		if (write(wfd, &g, sizeof(g)) != sizeof(g))
			_exit(3);
	}
	_exit(0);
}

static void crash_run(const char *img, bool lazy)
{
	ck_assert_int_eq(sh("rm -f %s && qemu-img create -q -f qcow2 -o cluster_size=4096%s %s 24M",
			    img, lazy ? ",lazy_refcounts=on" : "", img), 0);
	for (int it = 0; it < 6; it++) {
		int p[2];
		ck_assert_int_eq(pipe(p), 0);
		pid_t pid = fork();
		ck_assert_int_ge(pid, 0);
		if (pid == 0) {
			close(p[0]);
			/* random_writes asserts: in the child a failed check just exits */
			crash_child(img, p[1], 1000 + (unsigned)it);
		}
		close(p[1]);
		g_usleep((gulong)(30000 + 60000 * it));
		kill(pid, SIGKILL);
		int st;
		waitpid(pid, &st, 0);
		ck_assert_msg(WIFSIGNALED(st) || (WIFEXITED(st) && WEXITSTATUS(st) == 0),
			      "child failed: %d", st);
		unsigned g, last = 0;
		bool any = false;
		while (read(p[0], &g, sizeof(g)) == sizeof(g)) {
			last = g;
			any = true;
		}
		close(p[0]);
		if (lazy) {
			struct kl_bnode *bs = open_img(img, false, NULL, NULL);
			kl_bnode_unref(bs);
			check_clean(img);
		} else {
			char *out = sh_out("qemu-img check %s; echo rc=$?", img);
			ck_assert_msg(strstr(out, "rc=0") || strstr(out, "rc=3"),
				      "corruption after SIGKILL (iteration %d):\n%s", it, out);
			g_free(out);
		}
		for (unsigned k = 0; any && k <= last; k++) {
			char *out = sh_out("qemu-io -r -c 'read -P %u %u 4096' %s", k + 1, k * 65536, img);
			ck_assert_msg(!strstr(out, "verification failed") && strstr(out, "read 4096"),
				      "slot %u of %u lost after SIGKILL:\n%s", k, last, out);
			g_free(out);
		}
	}
}

START_TEST(test_crash_kill)
{
	SKIP_NO_QEMU();
	crash_run("k.qcow2", false);
	crash_run("kl.qcow2", true);
}
END_TEST

int main(void)
{
	kl_loop_init();
	const char *base = getenv("KL_QCOW2_TEST_DIR");
	snprintf(dir, sizeof(dir), "%s/kl-qcow2-XXXXXX", base ? base : "/tmp");
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	have_qemu = system("qemu-img --version >/dev/null 2>&1") == 0 &&
		    system("qemu-io --version >/dev/null 2>&1") == 0;
	if (!have_qemu)
		fprintf(stderr, "SKIP: qemu-img/qemu-io not found: qcow2 interop tests skipped\n");
	Suite *s = suite_create("qcow2");
	TCase *tc = tcase_create("qcow2");
	tcase_set_timeout(tc, 300);
	int n = (int)G_N_ELEMENTS(cfgs);
	tcase_add_loop_test(tc, test_read_images, 0, n);
	tcase_add_loop_test(tc, test_write_images, 0, n);
	tcase_add_loop_test(tc, test_write_images_direct, 0, n);
	tcase_add_loop_test(tc, test_sub_align, 0, 3);
	tcase_add_test(tc, test_backing_chain);
	tcase_add_test(tc, test_extl2_backing);
	tcase_add_loop_test(tc, test_snapshots, 0, 8);
	tcase_add_test(tc, test_dirty_repair);
	tcase_add_test(tc, test_feature_errors);
	tcase_add_test(tc, test_refcount_growth);
	tcase_add_test(tc, test_create);
	tcase_add_test(tc, test_crash_kill);
	suite_add_tcase(s, tc);
	int r = kl_check_run(s);
	char *cmd = g_strdup_printf("rm -rf %s", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
	g_free(cmd);
	return r;
}
