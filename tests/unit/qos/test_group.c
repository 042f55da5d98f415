/* Unit tests: throttle groups (src/qos/group.c) on a fake clock.  Members
 * are fake queues; the group's timer "fires" when the test advances the
 * clock by the group's wait and kicks it, and only if it is armed (a
 * member with queued requests and no armed timer is a stall). */
#include <check.h>

#include "../kl_check.h"
#include <glib.h>
#include <math.h>

#include "kvmlite/throttle.h"

#define S 1000000000ull

static uint64_t fake_now;
static uint64_t fake_clock(void *opaque)
{
	(void)opaque;
	return fake_now;
}

struct fm {
	struct kl_thr_member m;
	unsigned queued;
	uint64_t done;          /* started after `from` */
	bool flood;             /* submits the next request when one starts */
};

static uint64_t from_ns;

static void submit(struct fm *f);

static bool fm_pending(void *opaque, enum kl_thr_dir dir)
{
	(void)dir;
	return ((struct fm *)opaque)->queued > 0;
}

static void start(struct fm *f)
{
	kl_thr_member_account(&f->m, KL_THR_WRITE, 4096);
	if (fake_now >= from_ns)
		f->done++;
}

static void fm_run_one(void *opaque, enum kl_thr_dir dir)
{
	struct fm *f = opaque;
	(void)dir;
	f->queued--;
	start(f);
	if (f->flood)
		submit(f);
}

static const struct kl_thr_member_ops fm_ops = { fm_pending, fm_run_one };

/* One new request: it starts now or waits in the member's queue. */
static void submit(struct fm *f)
{
	if (f->queued || !kl_thr_member_allow(&f->m, KL_THR_WRITE)) {
		f->queued++;
		return;
	}
	start(f);
}

/* A flooding member keeps one request in hand: submit until one waits. */
static void flood(struct fm *f)
{
	f->flood = true;
	while (!f->queued)
		submit(f);
}

static bool any_pending(struct fm *v, int n)
{
	for (int i = 0; i < n; i++)
		if (v[i].m.group && v[i].queued)
			return true;
	return false;
}

/* Run the group's timer until `until`. */
static void run_until(struct kl_thr_group *g, struct fm *v, int n, uint64_t until)
{
	while (fake_now < until && any_pending(v, n)) {
		ck_assert_msg(kl_thr_group_waiting(g, KL_THR_WRITE),
			      "queued requests but no timer armed at %.3f s",
			      (double)fake_now / S);
		fake_now += kl_thr_group_wait_ns(g, KL_THR_WRITE);
		kl_thr_group_kick(g);
	}
	if (fake_now < until)
		fake_now = until;
}

static struct kl_thr_group *group_iops(const char *name, double iops)
{
	struct kl_throttle_config cfg;
	kl_throttle_config_init(&cfg);
	cfg.b[KL_THR_OPS_TOTAL].avg = iops;
	fake_now = 1000 * S;
	struct kl_thr_group *g = kl_thr_group_get(name, fake_clock, NULL);
	kl_thr_group_set_config(g, &cfg);
	return g;
}

static void assert_within(double got, double want, double pct)
{
	double err = fabs(got - want) / want * 100;
	ck_assert_msg(err <= pct, "got %.1f, want %.1f (error %.3f %% > %.2f %%)", got, want, err, pct);
}

START_TEST(two_flooding_members_share_evenly)
{
	struct kl_thr_group *g = group_iops("g", 200);
	struct fm v[2] = { 0 };
	for (int i = 0; i < 2; i++)
		kl_thr_member_join(&v[i].m, g, &fm_ops, &v[i]);
	from_ns = fake_now + 1 * S;        /* after the initial burst */
	flood(&v[0]);
	flood(&v[1]);
	run_until(g, v, 2, fake_now + 11 * S);
	/* 10 s at 200/s = 2000 requests, 1000 each */
	assert_within((double)(v[0].done + v[1].done), 2000, 0.5);
	assert_within((double)v[0].done, 1000, 1);
	assert_within((double)v[1].done, 1000, 1);
	for (int i = 0; i < 2; i++) {
		v[i].flood = false;
		v[i].queued = 0;
		kl_thr_member_leave(&v[i].m);
	}
	kl_thr_group_unref(g);
	ck_assert_ptr_null(kl_thr_group_find("g"));
}
END_TEST

START_TEST(idle_member_does_not_block)
{
	struct kl_thr_group *g = group_iops("g", 200);
	struct fm v[3] = { 0 };
	for (int i = 0; i < 3; i++)
		kl_thr_member_join(&v[i].m, g, &fm_ops, &v[i]);
	from_ns = fake_now + 1 * S;
	flood(&v[1]);                       /* v[0] and v[2] idle */
	run_until(g, v, 3, fake_now + 11 * S);
	assert_within((double)v[1].done, 2000, 0.5);
	ck_assert_uint_eq(v[0].done + v[2].done, 0);
	v[1].flood = false;
	v[1].queued = 0;
	for (int i = 0; i < 3; i++)
		kl_thr_member_leave(&v[i].m);
	kl_thr_group_unref(g);
}
END_TEST

/* A member whose requests wait leaves (drained) mid-wait, the turn on
 * it: the others go on with the group's timer at the full rate. */
START_TEST(member_leaves_mid_wait)
{
	struct kl_thr_group *g = group_iops("g", 200);
	struct fm v[3] = { 0 };
	for (int i = 0; i < 3; i++)
		kl_thr_member_join(&v[i].m, g, &fm_ops, &v[i]);
	from_ns = UINT64_MAX;
	for (int i = 0; i < 3; i++)
		flood(&v[i]);
	run_until(g, v, 3, fake_now + 2 * S);
	ck_assert(kl_thr_group_waiting(g, KL_THR_WRITE));
	/* each member leaves in turn while all three wait */
	for (int k = 0; k < 3; k++) {
		v[0].flood = false;
		v[0].queued = 0;
		kl_thr_member_leave(&v[0].m);
		kl_thr_member_join(&v[0].m, g, &fm_ops, &v[0]);
		flood(&v[0]);
		run_until(g, v, 3, fake_now + S / 3);
	}
	v[1].flood = false;
	v[1].queued = 0;
	kl_thr_member_leave(&v[1].m);
	from_ns = fake_now + S / 2;
	run_until(g, v, 3, fake_now + S / 2 + 5 * S);
	/* 5 s at 200/s shared by v[0] and v[2] */
	assert_within((double)(v[0].done + v[2].done), 1000, 1);
	assert_within((double)v[0].done, 500, 2);
	ck_assert_uint_eq(v[1].done, 0);
	/* the last flooding member alone, after the other left */
	v[0].flood = false;
	v[0].queued = 0;
	kl_thr_member_leave(&v[0].m);
	uint64_t before = v[2].done;
	run_until(g, v, 3, fake_now + 5 * S);
	assert_within((double)(v[2].done - before), 1000, 1);
	v[2].flood = false;
	v[2].queued = 0;
	kl_thr_member_leave(&v[2].m);
	kl_thr_group_unref(g);
}
END_TEST

START_TEST(no_limit_releases_queued)
{
	struct kl_thr_group *g = group_iops("g", 10);
	struct fm v[2] = { 0 };
	for (int i = 0; i < 2; i++)
		kl_thr_member_join(&v[i].m, g, &fm_ops, &v[i]);
	from_ns = 0;
	for (int k = 0; k < 5; k++) {
		submit(&v[0]);
		submit(&v[1]);
	}
	ck_assert_uint_eq(v[0].queued + v[1].queued, 8);   /* 1 each went */
	struct kl_throttle_config none;
	kl_throttle_config_init(&none);
	kl_thr_group_set_config(g, &none);
	ck_assert_uint_eq(v[0].queued + v[1].queued, 0);
	ck_assert_uint_eq(v[0].done, 5);
	ck_assert_uint_eq(v[1].done, 5);
	ck_assert_ptr_null(kl_thr_group_config(g));
	/* a second get finds the same group; names are distinct */
	struct kl_thr_group *g2 = kl_thr_group_get("g", NULL, NULL);
	ck_assert_ptr_eq(g, g2);
	struct kl_thr_group *h = kl_thr_group_get("h", NULL, NULL);
	ck_assert_ptr_ne(g, h);
	ck_assert_str_eq(kl_thr_group_name(h), "h");
	kl_thr_group_unref(h);
	kl_thr_group_unref(g2);
	for (int i = 0; i < 2; i++)
		kl_thr_member_leave(&v[i].m);
	kl_thr_group_unref(g);
	ck_assert_ptr_null(kl_thr_group_find("g"));
}
END_TEST

int main(void)
{
	Suite *s = suite_create("throttle-group");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, two_flooding_members_share_evenly);
	tcase_add_test(tc, idle_member_does_not_block);
	tcase_add_test(tc, member_leaves_mid_wait);
	tcase_add_test(tc, no_limit_releases_queued);
	suite_add_tcase(s, tc);
	return kl_check_run(s);
}
