/* blockbench: drive the kvmlite block layer directly (no guest) with
 * random reads or writes at a fixed queue depth for a fixed time, and print
 * IOPS and latency percentiles (submit -> completion callback).
 *
 *   blockbench -f FILE [-e threads|native|io_uring] [-c none|...] [-w]
 *              [-q 32] [-b 4096] [-t 30] [-j pool-threads] [-s size]
 *              [-p busy-poll-us] [-B max-batch] [-F|--format raw|qcow2]
 *              [-n ops] [-S step]
 *
 * -n stops after that many completed I/Os instead of after -t seconds (the
 * qcow2 rows of bench/block: qemu-img bench runs a fixed count).  A format
 * whose driver is not in this build exits with status 3 and says so.
 * -S STEP replaces the random offsets by qemu-img bench's: the first request
 * at 0, each next one STEP bytes further, modulo the size (bench/block's
 * qcow2 rows, so both tools visit the same offsets in the same order).
 *
 * Output (one line): engine=... rw=... iops=... p50_us=... p99_us=... ops=...
 */
#include <errno.h>
#include <getopt.h>
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kvmlite/block.h"
#include "kvmlite/loop.h"
#include "node.h"

struct slot {
	struct iovec iov;
	uint64_t t0;
};

static struct kl_blockdev *bd;
static bool do_write, stopping;
static uint64_t nblocks, bs, done_ops, failed, t_start, t_stop, max_ops;
static uint64_t *lat;
static size_t nlat, cap;
static unsigned outstanding;
static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t stride, next_off; /* -S: qemu-img bench's offsets */

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t xorshift(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void cb(void *opaque, long ret);

static void issue(struct slot *s)
{
	uint64_t off = (xorshift() % nblocks) * bs;
	if (stride) {
		off = next_off;
		next_off = (next_off + stride) % (nblocks * bs);
	}
	s->t0 = now_ns();
	int r = kl_blk_submit(bd, do_write ? KL_BLK_WRITE : KL_BLK_READ, off, &s->iov, 1, 0,
			      cb, s);
	if (r < 0) {
		fprintf(stderr, "blockbench: submit: %s\n", strerror(-r));
		exit(1);
	}
	outstanding++;
}

static void cb(void *opaque, long ret)
{
	struct slot *s = opaque;
	uint64_t t = now_ns();
	outstanding--;
	if (stopping)
		return;
	if (ret != (long)bs) {
		failed++;
		if (failed < 5)
			fprintf(stderr, "blockbench: I/O error %ld\n", ret);
	} else {
		done_ops++;
		if (nlat == cap) {
			cap = cap ? cap * 2 : 1 << 20;
			lat = realloc(lat, cap * sizeof(*lat));
			if (!lat)
				abort();
		}
		lat[nlat++] = t - s->t0;
	}
	/* -n counts failed requests too: an image that fails every request
	 * (marked corrupt, say) must end the run, not resubmit forever. */
	if (max_ops && done_ops + failed >= max_ops) {
		stopping = true;
		t_stop = t;
		return;
	}
	issue(s);
}

static gboolean stop_timer(gpointer p)
{
	(void)p;
	stopping = true;
	t_stop = now_ns();
	return G_SOURCE_REMOVE;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static double pct(double p)
{
	if (!nlat)
		return 0;
	size_t i = (size_t)(p / 100.0 * (double)nlat);
	if (i >= nlat)
		i = nlat - 1;
	return (double)lat[i] / 1000.0;
}

static void usage(void)
{
	fprintf(stderr, "usage: blockbench -f FILE [-e threads|native|io_uring] "
		"[-c cache] [-w] [-q depth] [-b bs] [-t seconds] [-j pool-threads] "
		"[-s size-bytes] [-p poll-us] [-B max-batch] [-F|--format raw|qcow2] "
		"[-n ops] [-S step]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	struct kl_block_opts o = { .id = "bench", .engine = KL_AIO_THREADS,
				   .cache = KL_CACHE_NONE };
	unsigned qd = 32, secs = 30, pool = 32;
	uint64_t poll_ns = 0;
	unsigned max_batch = 0;
	uint64_t size = 0;
	int c;
	static const struct option longopts[] = {
		{ "format", required_argument, NULL, 'F' },
		{ NULL, 0, NULL, 0 },
	};

	bs = 4096;
	while ((c = getopt_long(argc, argv, "f:e:c:wq:b:t:j:s:p:B:F:n:S:", longopts, NULL)) != -1) {
		switch (c) {
		case 'f': o.file = optarg; break;
		case 'e':
			if (!strcmp(optarg, "threads")) o.engine = KL_AIO_THREADS;
			else if (!strcmp(optarg, "native")) o.engine = KL_AIO_NATIVE;
			else if (!strcmp(optarg, "io_uring")) o.engine = KL_AIO_IO_URING;
			else usage();
			break;
		case 'c': {
			bool ok = false;
			for (int m = KL_CACHE_NONE; m <= KL_CACHE_UNSAFE; m++)
				if (!strcmp(optarg, kl_blk_cache_name(m))) {
					o.cache = m;
					ok = true;
				}
			if (!ok)
				usage();
			break;
		}
		case 'w': do_write = true; break;
		case 'q': qd = (unsigned)atoi(optarg); break;
		case 'b': bs = strtoull(optarg, NULL, 0); break;
		case 't': secs = (unsigned)atoi(optarg); break;
		case 'j': pool = (unsigned)atoi(optarg); break;
		case 's': size = strtoull(optarg, NULL, 0); break;
		case 'p': poll_ns = strtoull(optarg, NULL, 0) * 1000; break;
		case 'B': max_batch = (unsigned)atoi(optarg); break;
		case 'F': o.format = optarg; break;
		case 'n': max_ops = strtoull(optarg, NULL, 0); break;
		case 'S': stride = strtoull(optarg, NULL, 0); break;
		default: usage();
		}
	}
	if (!o.file || !qd || !bs || !secs || stride % bs)
		usage();
	if (o.format && !kl_bdrv_find(o.format)) {
		fprintf(stderr, "blockbench: format '%s' not available in this build\n", o.format);
		return 3;
	}
	kl_loop_init();
	kl_blk_set_pool_size(pool);
	kl_blk_set_poll_ns(poll_ns);
	kl_blk_set_max_batch(max_batch);
	char *err = NULL;
	bd = kl_blockdev_open(&o, &err);
	if (!bd) {
		fprintf(stderr, "blockbench: %s\n", err);
		return 1;
	}
	if (!size || size > kl_blockdev_size(bd))
		size = kl_blockdev_size(bd);
	nblocks = size / bs;
	if (!nblocks) {
		fprintf(stderr, "blockbench: file smaller than one block\n");
		return 1;
	}
	rng ^= (uint64_t)getpid() << 20;
	struct slot *slots = calloc(qd, sizeof(*slots));
	for (unsigned i = 0; i < qd; i++) {
		if (posix_memalign(&slots[i].iov.iov_base, 4096, bs) != 0)
			abort();
		memset(slots[i].iov.iov_base, (int)i + 1, bs);
		slots[i].iov.iov_len = bs;
	}
	t_start = now_ns();
	if (!max_ops)
		kl_timer_add_ms(secs * 1000, stop_timer, NULL);
	for (unsigned i = 0; i < qd; i++)
		issue(&slots[i]);
	GMainContext *ctx = kl_loop_context();
	while (!stopping || outstanding)
		g_main_context_iteration(ctx, TRUE);
	double el = (double)(t_stop - t_start) / 1e9;
	qsort(lat, nlat, sizeof(*lat), cmp_u64);
	printf("format=%s engine=%s cache=%s rw=%s qd=%u bs=%llu pool=%u secs=%.2f ops=%llu "
	       "failed=%llu iops=%.0f p50_us=%.1f p99_us=%.1f\n",
	       o.format ? o.format : "raw", kl_blk_engine_name(o.engine), kl_blk_cache_name(o.cache),
	       stride ? (do_write ? "stridewrite" : "strideread")
		      : (do_write ? "randwrite" : "randread"), qd, (unsigned long long)bs,
	       o.engine == KL_AIO_THREADS ? pool : 0, el,
	       (unsigned long long)done_ops, (unsigned long long)failed,
	       (double)done_ops / el, pct(50), pct(99));
	kl_blockdev_close(bd);
	for (unsigned i = 0; i < qd; i++)
		free(slots[i].iov.iov_base);
	free(slots);
	free(lat);
	return failed ? 1 : 0;
}
