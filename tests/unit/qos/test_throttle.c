/* Unit tests: the leaky-bucket limiter (src/qos) on a fake clock. */
#include <check.h>

#include "../kl_check.h"
#include <glib.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kvmlite/opts.h"
#include "kvmlite/throttle.h"

#define S 1000000000ull

static uint64_t fake_now;
static uint64_t fake_clock(void *opaque)
{
	(void)opaque;
	return fake_now;
}

static void setup(struct kl_throttle *t, struct kl_throttle_config *cfg)
{
	fake_now = 1000 * S;
	kl_throttle_init(t, fake_clock, NULL);
	kl_throttle_config_init(cfg);
}

/* A queue that always has requests of `bytes` in dir: run until `until`,
 * waking late by up to `jitter_ns` after each refusal (a real timer is
 * late); returns requests done after `from`. */
static uint64_t run(struct kl_throttle *t, enum kl_thr_dir dir, uint64_t bytes,
		    uint64_t from, uint64_t until, uint64_t jitter_ns, uint64_t *bytes_out)
{
	uint64_t n = 0, b = 0;
	while (fake_now < until) {
		uint64_t w = kl_throttle_wait_ns(t, dir);
		if (w) {
			fake_now += w + (jitter_ns ? (uint64_t)g_random_int_range(0, (gint32)jitter_ns) : 0);
			continue;
		}
		kl_throttle_account(t, dir, bytes);
		if (fake_now >= from) {
			n++;
			b += bytes;
		}
	}
	if (bytes_out)
		*bytes_out = b;
	return n;
}

static void assert_within(double got, double want, double pct)
{
	double err = fabs(got - want) / want * 100;
	ck_assert_msg(err <= pct, "got %.1f, want %.1f (error %.3f %% > %.2f %%)", got, want, err, pct);
}

START_TEST(disabled_is_free)
{
	struct kl_throttle t;
	struct kl_throttle_config cfg;
	setup(&t, &cfg);
	ck_assert(!t.enabled);
	for (int i = 0; i < 100000; i++) {
		ck_assert(kl_throttle_allow(&t, KL_THR_WRITE));
		kl_throttle_account(&t, KL_THR_WRITE, 65536);
	}
	ck_assert_uint_eq(kl_throttle_wait_ns(&t, KL_THR_READ), 0);
}
END_TEST

START_TEST(steady_ops)
{
	struct kl_throttle t;
	struct kl_throttle_config cfg;
	setup(&t, &cfg);
	cfg.b[KL_THR_OPS_WRITE].avg = 1000;
	kl_throttle_set_config(&t, &cfg);
	uint64_t t0 = fake_now;
	/* steady state: skip the first second (the avg/10 initial burst) */
	uint64_t n = run(&t, KL_THR_WRITE, 1500, t0 + S, t0 + 11 * S, 0, NULL);
	assert_within((double)n, 10000, 0.5);
	/* late wake-ups (up to 50 us) cost nothing: no cool-down */
	n = run(&t, KL_THR_WRITE, 1500, fake_now, fake_now + 10 * S, 50000, NULL);
	assert_within((double)n, 10000, 0.5);
	/* the other direction is not limited */
	ck_assert_uint_eq(kl_throttle_wait_ns(&t, KL_THR_READ), 0);
}
END_TEST

/* The top of bench/qos's sweep: 20,000 IOPS and 200 MiB/s of 64 KiB
 * writes, with wake-ups up to 1 ms late (a loaded host; the group's loop
 * then starts every request the buckets allow at once): still the
 * configured rate, as nothing but the buckets decides. */
START_TEST(high_rates_late_wakeups)
{
	struct kl_throttle t;
	struct kl_throttle_config cfg;
	setup(&t, &cfg);
	cfg.b[KL_THR_OPS_TOTAL].avg = 20000;
	kl_throttle_set_config(&t, &cfg);
	uint64_t t0 = fake_now;
	uint64_t n = run(&t, KL_THR_WRITE, 512, t0 + S, t0 + 11 * S, 1000000, NULL);
	assert_within((double)n, 200000, 0.1);

	setup(&t, &cfg);
	cfg.b[KL_THR_BPS_TOTAL].avg = 200 << 20;
	kl_throttle_set_config(&t, &cfg);
	t0 = fake_now;
	uint64_t bytes;
	run(&t, KL_THR_WRITE, 65536, t0 + S, t0 + 11 * S, 1000000, &bytes);
	assert_within((double)bytes, 10.0 * (200 << 20), 0.1);
}
END_TEST

START_TEST(steady_bps_mixed_sizes)
{
	struct kl_throttle t;
	struct kl_throttle_config cfg;
	setup(&t, &cfg);
	cfg.b[KL_THR_BPS_READ].avg = 1 << 20;
	kl_throttle_set_config(&t, &cfg);
	uint64_t t0 = fake_now, total = 0;
	run(&t, KL_THR_READ, 60, t0, t0 + S, 0, NULL);
	/* sizes 60..1514 in turn */
	uint64_t from = fake_now, until = from + 10 * S;
	for (unsigned i = 0; fake_now < until; i++) {
		uint64_t w = kl_throttle_wait_ns(&t, KL_THR_READ);
		if (w) {
			fake_now += w;
			continue;
		}
		uint64_t sz = 60 + (i * 397) % 1455;
		kl_throttle_account(&t, KL_THR_READ, sz);
		total += sz;
	}
	assert_within((double)total, 10.0 * (1 << 20), 0.5);
}
END_TEST

START_TEST(burst_then_fall_back)
{
	struct kl_throttle t;
	struct kl_throttle_config cfg;
	setup(&t, &cfg);
	cfg.b[KL_THR_OPS_TOTAL].avg = 100;
	cfg.b[KL_THR_OPS_TOTAL].max = 1000;
	cfg.b[KL_THR_OPS_TOTAL].burst_length = 2;
	char *err = NULL;
	ck_assert_int_eq(kl_throttle_config_check(&cfg, &err), 0);
	kl_throttle_set_config(&t, &cfg);
	uint64_t t0 = fake_now;
	/* the burst runs at max (not faster) ... */
	uint64_t n1 = run(&t, KL_THR_READ, 4096, t0, t0 + S, 0, NULL);
	assert_within((double)n1, 1000, 10);
	/* ... until max * length (2000) is in the bucket: level grows at
	 * max - avg = 900/s, so the burst ends after 2000 / 900 s */
	uint64_t n2 = run(&t, KL_THR_WRITE, 4096, fake_now, t0 + 2 * S, 0, NULL);
	assert_within((double)n2, 1000, 10);
	run(&t, KL_THR_WRITE, 4096, fake_now, t0 + 4 * S, 0, NULL);
	/* then back to avg */
	uint64_t n3 = run(&t, KL_THR_READ, 4096, fake_now, fake_now + 10 * S, 0, NULL);
	assert_within((double)n3, 1000, 0.5);
	/* idle for long enough and the burst is available again */
	fake_now += 30 * S;
	uint64_t n4 = run(&t, KL_THR_READ, 4096, fake_now, fake_now + S, 0, NULL);
	assert_within((double)n4, 1000, 10);
}
END_TEST

START_TEST(iops_size)
{
	struct kl_throttle t;
	struct kl_throttle_config cfg;
	setup(&t, &cfg);
	cfg.b[KL_THR_OPS_TOTAL].avg = 100;
	cfg.op_size = 4096;
	kl_throttle_set_config(&t, &cfg);
	uint64_t t0 = fake_now;
	/* 16 KiB requests count as 4 ops: 25 per second */
	uint64_t n = run(&t, KL_THR_WRITE, 16384, t0 + S, t0 + 21 * S, 0, NULL);
	assert_within((double)n, 500, 0.5);
	/* smaller than iops-size: one op each */
	n = run(&t, KL_THR_WRITE, 512, fake_now + S, fake_now + 11 * S, 0, NULL);
	assert_within((double)n, 1000, 0.5);
}
END_TEST

START_TEST(live_change)
{
	struct kl_throttle t;
	struct kl_throttle_config cfg;
	setup(&t, &cfg);
	cfg.b[KL_THR_OPS_WRITE].avg = 100;
	kl_throttle_set_config(&t, &cfg);
	run(&t, KL_THR_WRITE, 1, fake_now, fake_now + 2 * S, 0, NULL);
	cfg.b[KL_THR_OPS_WRITE].avg = 200;
	kl_throttle_set_config(&t, &cfg);
	/* effective at once: the first 200 ms already see the new rate */
	uint64_t n = run(&t, KL_THR_WRITE, 1, fake_now + S / 10, fake_now + S / 10 + 10 * S, 0, NULL);
	assert_within((double)n, 2000, 0.5);
	/* removing the limit frees the queue */
	kl_throttle_config_init(&cfg);
	kl_throttle_set_config(&t, &cfg);
	ck_assert(!t.enabled);
	ck_assert_uint_eq(kl_throttle_wait_ns(&t, KL_THR_WRITE), 0);
}
END_TEST

START_TEST(combined_limits)
{
	struct kl_throttle t;
	struct kl_throttle_config cfg;
	setup(&t, &cfg);
	cfg.b[KL_THR_BPS_TOTAL].avg = 1 << 20;   /* 256 x 4 KiB per second */
	cfg.b[KL_THR_OPS_READ].avg = 100;
	cfg.b[KL_THR_OPS_WRITE].avg = 1000;
	char *err = NULL;
	ck_assert_int_eq(kl_throttle_config_check(&cfg, &err), 0);
	kl_throttle_set_config(&t, &cfg);
	uint64_t t0 = fake_now, from = t0 + 2 * S, until = from + 10 * S;
	uint64_t reads = 0, writes = 0;
	while (fake_now < until) {
		uint64_t wr = kl_throttle_wait_ns(&t, KL_THR_READ);
		uint64_t ww = kl_throttle_wait_ns(&t, KL_THR_WRITE);
		if (wr && ww) {
			fake_now += wr < ww ? wr : ww;
			continue;
		}
		enum kl_thr_dir d = !wr ? KL_THR_READ : KL_THR_WRITE;
		kl_throttle_account(&t, d, 4096);
		if (fake_now >= from)
			(*(d == KL_THR_READ ? &reads : &writes))++;
	}
	assert_within((double)reads, 1000, 0.5);            /* iops-read */
	assert_within((double)(reads + writes), 2560, 0.5); /* bps-total */
}
END_TEST

START_TEST(config_rules)
{
	struct kl_throttle_config cfg;
	char *err = NULL;
	kl_throttle_config_init(&cfg);
	cfg.b[KL_THR_BPS_TOTAL].avg = 10;
	cfg.b[KL_THR_BPS_READ].avg = 10;
	ck_assert_int_eq(kl_throttle_config_check(&cfg, &err), -1);
	g_clear_pointer(&err, g_free);
	kl_throttle_config_init(&cfg);
	cfg.b[KL_THR_OPS_READ].max = 10;
	ck_assert_int_eq(kl_throttle_config_check(&cfg, &err), -1);
	g_clear_pointer(&err, g_free);
	cfg.b[KL_THR_OPS_READ].avg = 20;
	ck_assert_int_eq(kl_throttle_config_check(&cfg, &err), -1);   /* max < avg */
	g_clear_pointer(&err, g_free);
	cfg.b[KL_THR_OPS_READ].avg = 5;
	ck_assert_int_eq(kl_throttle_config_check(&cfg, &err), 0);
	cfg.b[KL_THR_OPS_WRITE].avg = 5;
	cfg.b[KL_THR_OPS_WRITE].burst_length = 3;
	ck_assert_int_eq(kl_throttle_config_check(&cfg, &err), -1);   /* length needs max */
	g_clear_pointer(&err, g_free);
}
END_TEST

START_TEST(from_opts)
{
	char *err = NULL;
	struct kl_throttle_config cfg;
	struct kl_opts *o = kl_opts_parse("socket,id=n0,throttling.pps-tx=1000,throttling.bps-rx=1M,"
					  "throttling.bps-rx-max=2M,throttling.bps-rx-max-length=3,"
					  "throttling.bogus=1", "type", &err);
	ck_assert_ptr_nonnull(o);
	kl_throttle_config_init(&cfg);
	ck_assert_int_eq(kl_throttle_config_from_opts(&cfg, kl_throttle_net_keys, false, o,
						      "throttling", &err), 0);
	ck_assert(cfg.b[KL_THR_OPS_WRITE].avg == 1000);
	ck_assert(cfg.b[KL_THR_BPS_READ].avg == 1 << 20);
	ck_assert(cfg.b[KL_THR_BPS_READ].max == 2 << 20);
	ck_assert_uint_eq(cfg.b[KL_THR_BPS_READ].burst_length, 3);
	uint64_t v;
	ck_assert(kl_throttle_config_get(&cfg, kl_throttle_net_keys, "bps-rx-max-length", &v));
	ck_assert_uint_eq(v, 3);
	kl_opts_get(o, "type");
	kl_opts_get(o, "id");
	ck_assert_int_eq(kl_opts_check_unused(o, "-netdev", &err), -1);
	ck_assert_str_eq(err, "-netdev: unknown parameter 'throttling.bogus'");
	g_clear_pointer(&err, g_free);
	kl_opts_free(o);
	o = kl_opts_parse("throttling.pps-tx=abc", NULL, &err);
	kl_throttle_config_init(&cfg);
	ck_assert_int_eq(kl_throttle_config_from_opts(&cfg, kl_throttle_net_keys, false, o,
						      "throttling", &err), -1);
	g_clear_pointer(&err, g_free);
	kl_opts_free(o);
	/* disk names and iops-size */
	kl_throttle_config_init(&cfg);
	ck_assert_int_eq(kl_throttle_config_set(&cfg, kl_throttle_disk_keys, true, "iops-size", "4096", &err), 0);
	ck_assert_int_eq(kl_throttle_config_set(&cfg, kl_throttle_disk_keys, true, "iops-total-max", "9", &err), 0);
	ck_assert_int_eq(kl_throttle_config_set(&cfg, kl_throttle_disk_keys, true, "pps-tx", "9", &err), 1);
	ck_assert_uint_eq(cfg.op_size, 4096);
	ck_assert(cfg.b[KL_THR_OPS_TOTAL].max == 9);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("throttle");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, disabled_is_free);
	tcase_add_test(tc, steady_ops);
	tcase_add_test(tc, high_rates_late_wakeups);
	tcase_add_test(tc, steady_bps_mixed_sizes);
	tcase_add_test(tc, burst_then_fall_back);
	tcase_add_test(tc, iops_size);
	tcase_add_test(tc, live_change);
	tcase_add_test(tc, combined_limits);
	tcase_add_test(tc, config_rules);
	tcase_add_test(tc, from_opts);
	suite_add_tcase(s, tc);
	return kl_check_run(s);
}
