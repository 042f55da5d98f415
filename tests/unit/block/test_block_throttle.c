/* Unit tests: backends in a throttle group on the real main loop (group
 * round-robin through the backend's queues, a member closed while
 * requests of both wait, -drive throttling.group). */
#include <check.h>

#include "../kl_check.h"
#include <glib.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "kvmlite/block.h"
#include "kvmlite/loop.h"
#include "kvmlite/opts.h"
#include "kvmlite/throttle.h"

#define N 40

static char *img;
static int seq;

struct op {
	bool done;
	long ret;
	int seq;
};

static void op_cb(void *opaque, long ret)
{
	struct op *o = opaque;
	ck_assert(!o->done);
	o->done = true;
	o->ret = ret;
	o->seq = seq++;
}

static struct kl_blockdev *drive(const char *id, const char *thr)
{
	char *s = g_strdup_printf("file=%s,if=none,id=%s,format=raw,%s", img, id, thr);
	char *err = NULL;
	struct kl_opts *o = kl_opts_parse(s, "file", &err);
	ck_assert(o);
	struct kl_blockdev *bd = kl_drive_add(o, NULL, &err);
	ck_assert_msg(bd, "%s: %s", s, err ? err : "?");
	kl_opts_free(o);
	g_free(s);
	return bd;
}

static gboolean tick(gpointer p)
{
	(void)p;
	return G_SOURCE_CONTINUE;
}

static int count(const struct op *ops, int n)
{
	int k = 0;
	for (int i = 0; i < n; i++)
		k += ops[i].done;
	return k;
}

/* Run the loop until `want` of the n ops are done (fails after 30 s). */
static void wait_done(const struct op *ops, int n, int want)
{
	gint64 deadline = g_get_monotonic_time() + 30 * G_USEC_PER_SEC;
	guint t = kl_timer_add_ms(20, tick, NULL);
	while (count(ops, n) < want) {
		ck_assert_msg(g_get_monotonic_time() < deadline, "%d of %d requests never completed",
			      want - count(ops, n), want);
		g_main_context_iteration(kl_loop_context(), TRUE);
	}
	kl_source_remove(t);
}

static char buf[512];
static struct iovec iov = { buf, sizeof(buf) };

static void submit_n(struct kl_blockdev *bd, struct op *ops, int n, unsigned base)
{
	for (int i = 0; i < n; i++) {
		memset(&ops[i], 0, sizeof(ops[i]));
		ck_assert_int_eq(kl_blk_submit(bd, KL_BLK_WRITE, (base + (unsigned)i) * 512ull, &iov,
					       1, 0, op_cb, &ops[i]), 0);
	}
}

/* a's requests are queued first, b's after: the group serves them in
 * turns, so b gets its share while a still has some waiting. */
START_TEST(round_robin)
{
	struct kl_blockdev *a = drive("a", "throttling.group=g,throttling.iops-total=200");
	struct kl_blockdev *b = drive("b", "throttling.group=g,throttling.iops-total=200");
	const char *ga = NULL, *gb = NULL;
	ck_assert_ptr_nonnull(kl_blockdev_throttle(a, &ga));
	ck_assert_ptr_nonnull(kl_blockdev_throttle(b, &gb));
	ck_assert_str_eq(ga, "g");
	ck_assert_str_eq(gb, "g");
	static struct op oa[N], ob[N];
	seq = 0;
	submit_n(a, oa, N, 0);
	submit_n(b, ob, N, N);
	wait_done(oa, N, N);
	wait_done(ob, N, N);
	/* the bucket (200/s: 20 + 1 at once) let a's first 21 go; a's other
	 * 19 and b's 40 then alternate: when a's last one completes, about
	 * 19 of b's have (FIFO over the members would give 0) */
	int last_a = oa[N - 1].seq, b_before = 0;
	for (int i = 0; i < N; i++)
		b_before += ob[i].seq < last_a;
	ck_assert_msg(b_before >= 15 && b_before <= 23, "b had %d done when a finished", b_before);
	for (int i = 0; i < N; i++)
		ck_assert(oa[i].ret == 512 && ob[i].ret == 512);
	kl_blockdev_close(a);
	kl_blockdev_close(b);
	ck_assert_ptr_null(kl_thr_group_find("g"));
}
END_TEST

/* Red Hat BZ 1535914: a member closed while both wait must not leave the
 * other without the group's timer. */
START_TEST(close_member_mid_wait)
{
	struct kl_blockdev *a = drive("a", "throttling.group=g,throttling.iops-total=200");
	struct kl_blockdev *b = drive("b", "throttling.group=g,throttling.iops-total=200");
	static struct op oa[N], ob[N];
	submit_n(a, oa, N, 0);
	submit_n(b, ob, N, N);
	wait_done(oa, N, 25);
	ck_assert_int_lt(count(ob, N), N);
	kl_blockdev_close(b);        /* drain: b's waiting requests go now */
	ck_assert_int_eq(count(ob, N), N);
	ck_assert_int_lt(count(oa, N), N);
	gint64 t0 = g_get_monotonic_time();
	wait_done(oa, N, N);
	/* the rest of a at 200/s: ~0.1 s (a stall would hit wait_done's 30 s) */
	ck_assert_int_lt(g_get_monotonic_time() - t0, 5 * G_USEC_PER_SEC);
	kl_blockdev_close(a);
}
END_TEST

START_TEST(group_without_limits_ignored)
{
	struct kl_blockdev *a = drive("a", "throttling.group=g");
	ck_assert_ptr_null(kl_blockdev_throttle(a, NULL));
	ck_assert_ptr_null(kl_thr_group_find("g"));
	/* the drive id names the group when throttling.group is not given */
	struct kl_blockdev *b = drive("b", "throttling.bps-total=1000000");
	const char *gb = NULL;
	ck_assert_ptr_nonnull(kl_blockdev_throttle(b, &gb));
	ck_assert_str_eq(gb, "b");
	/* all zero leaves the group, which goes with its last member */
	struct kl_throttle_config none;
	kl_throttle_config_init(&none);
	char *err = NULL;
	ck_assert_int_eq(kl_blockdev_set_throttle(b, &none, NULL, &err), 0);
	ck_assert_ptr_null(kl_blockdev_throttle(b, NULL));
	ck_assert_ptr_null(kl_thr_group_find("b"));
	kl_blockdev_close(a);
	kl_blockdev_close(b);
}
END_TEST

int main(void)
{
	kl_loop_init();
	int fd = g_file_open_tmp("kl-thr-XXXXXX", &img, NULL);
	if (fd < 0 || ftruncate(fd, 1 << 20) < 0) {
		perror("test image");
		return 1;
	}
	close(fd);
	Suite *s = suite_create("block-throttle");
	TCase *tc = tcase_create("group");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, round_robin);
	tcase_add_test(tc, close_member_mid_wait);
	tcase_add_test(tc, group_without_limits_ignored);
	suite_add_tcase(s, tc);
	int r = kl_check_run(s);
	unlink(img);
	g_free(img);
	return r;
}
