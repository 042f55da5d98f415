/* Throttle state: six leaky buckets (bucket.c), leaked to the clock before
 * each decision, and one precise main-loop timer per direction that
 * resumes a refused queue at the moment the buckets allow it. */
#include <stdio.h>
#include <string.h>

#include <glib.h>

#include "kvmlite/clock.h"
#include "kvmlite/loop.h"
#include "kvmlite/opts.h"
#include "kvmlite/throttle.h"

const struct kl_throttle_key kl_throttle_net_keys[] = {
	{ "bps-tx", KL_THR_BPS_WRITE },
	{ "pps-tx", KL_THR_OPS_WRITE },
	{ "bps-rx", KL_THR_BPS_READ },
	{ "pps-rx", KL_THR_OPS_READ },
	{ NULL, 0 },
};

const struct kl_throttle_key kl_throttle_disk_keys[] = {
	{ "bps-total", KL_THR_BPS_TOTAL },
	{ "bps-read", KL_THR_BPS_READ },
	{ "bps-write", KL_THR_BPS_WRITE },
	{ "iops-total", KL_THR_OPS_TOTAL },
	{ "iops-read", KL_THR_OPS_READ },
	{ "iops-write", KL_THR_OPS_WRITE },
	{ NULL, 0 },
};

/* Buckets that apply to each direction. */
static const enum kl_thr_bucket dir_buckets[KL_THR_NDIRS][4] = {
	[KL_THR_READ] = { KL_THR_BPS_TOTAL, KL_THR_BPS_READ, KL_THR_OPS_TOTAL, KL_THR_OPS_READ },
	[KL_THR_WRITE] = { KL_THR_BPS_TOTAL, KL_THR_BPS_WRITE, KL_THR_OPS_TOTAL, KL_THR_OPS_WRITE },
};

static bool is_bps(enum kl_thr_bucket b)
{
	return b <= KL_THR_BPS_WRITE;
}

/* ---- configuration ------------------------------------------------------ */

void kl_throttle_config_init(struct kl_throttle_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	for (int i = 0; i < KL_THR_NBUCKETS; i++)
		cfg->b[i].burst_length = 1;
}

bool kl_throttle_config_enabled(const struct kl_throttle_config *cfg)
{
	for (int i = 0; i < KL_THR_NBUCKETS; i++)
		if (cfg->b[i].avg > 0)
			return true;
	return false;
}

int kl_throttle_config_check(const struct kl_throttle_config *cfg, char **err)
{
	for (int k = 0; k < 2; k++) {
		const struct kl_bucket *b = &cfg->b[k * 3];
		bool tot = b[0].avg > 0 || b[0].max > 0;
		bool rw = b[1].avg > 0 || b[1].max > 0 || b[2].avg > 0 || b[2].max > 0;
		if (tot && rw) {
			*err = g_strdup("bps/iops total and read/write limits cannot be used at the same time");
			return -1;
		}
	}
	for (int i = 0; i < KL_THR_NBUCKETS; i++) {
		const struct kl_bucket *b = &cfg->b[i];
		if (b->avg < 0 || b->max < 0 || b->avg > (double)KL_THR_VALUE_MAX ||
		    b->max > (double)KL_THR_VALUE_MAX) {
			*err = g_strdup_printf("bps/iops/max values must be within [0, %llu]",
					       (unsigned long long)KL_THR_VALUE_MAX);
			return -1;
		}
		if (b->burst_length == 0 || b->burst_length > KL_THR_VALUE_MAX) {
			*err = g_strdup_printf("the burst length must be within [1, %llu]",
					       (unsigned long long)KL_THR_VALUE_MAX);
			return -1;
		}
		if (b->max > 0 && b->avg <= 0) {
			*err = g_strdup("a -max value requires the corresponding average value");
			return -1;
		}
		if (b->max > 0 && b->max < b->avg) {
			*err = g_strdup("a -max value cannot be lower than the average value");
			return -1;
		}
		if (b->burst_length > 1 && b->max <= 0) {
			*err = g_strdup("a -max-length above 1 requires a -max value");
			return -1;
		}
	}
	return 0;
}

static const struct kl_throttle_key *find_key(const struct kl_throttle_key *keys, const char *key,
					      int *field)
{
	for (const struct kl_throttle_key *k = keys; k->name; k++) {
		size_t n = strlen(k->name);
		if (strncmp(key, k->name, n))
			continue;
		if (!key[n])
			*field = 0;
		else if (!strcmp(key + n, "-max"))
			*field = 1;
		else if (!strcmp(key + n, "-max-length"))
			*field = 2;
		else
			continue;
		return k;
	}
	return NULL;
}

int kl_throttle_config_set(struct kl_throttle_config *cfg, const struct kl_throttle_key *keys,
			   bool allow_size, const char *key, const char *val, char **err)
{
	int field = 0;
	const struct kl_throttle_key *k = find_key(keys, key, &field);
	bool size = allow_size && !strcmp(key, "iops-size");
	if (!k && !size)
		return 1;
	uint64_t v;
	if (!val || kl_parse_size(val, 1, &v) < 0 || v > KL_THR_VALUE_MAX) {
		*err = g_strdup_printf("%s=%s: expected a number of at most %llu", key,
				       val ? val : "", (unsigned long long)KL_THR_VALUE_MAX);
		return -1;
	}
	if (size) {
		cfg->op_size = v;
		return 0;
	}
	struct kl_bucket *b = &cfg->b[k->bucket];
	if (field == 0)
		b->avg = (double)v;
	else if (field == 1)
		b->max = (double)v;
	else
		b->burst_length = v;
	return 0;
}

bool kl_throttle_config_get(const struct kl_throttle_config *cfg, const struct kl_throttle_key *keys,
			    const char *key, uint64_t *out)
{
	int field = 0;
	if (!strcmp(key, "iops-size")) {
		*out = cfg->op_size;
		return true;
	}
	const struct kl_throttle_key *k = find_key(keys, key, &field);
	if (!k)
		return false;
	const struct kl_bucket *b = &cfg->b[k->bucket];
	*out = field == 0 ? (uint64_t)b->avg : field == 1 ? (uint64_t)b->max : b->burst_length;
	return true;
}

int kl_throttle_config_from_opts(struct kl_throttle_config *cfg, const struct kl_throttle_key *keys,
				 bool allow_size, struct kl_opts *o, const char *prefix, char **err)
{
	size_t plen = strlen(prefix);
	for (unsigned i = 0; i < o->n; i++) {
		struct kl_opt *opt = &o->v[i];
		if (strncmp(opt->key, prefix, plen) || opt->key[plen] != '.')
			continue;
		char *e = NULL;
		int r = kl_throttle_config_set(cfg, keys, allow_size, opt->key + plen + 1, opt->val, &e);
		if (r == 1)
			continue;  /* left unused: kl_opts_check_unused names it */
		opt->used = true;
		if (r < 0) {
			*err = g_strdup_printf("%s.%s", prefix, e);
			g_free(e);
			return -1;
		}
	}
	char *e = NULL;
	if (kl_throttle_config_check(cfg, &e) < 0) {
		*err = g_strdup_printf("%s: %s", prefix, e);
		g_free(e);
		return -1;
	}
	return 0;
}

/* ---- state ---------------------------------------------------------------- */

static uint64_t default_clock(void *opaque)
{
	(void)opaque;
	return kl_clock_ns();
}

void kl_throttle_init(struct kl_throttle *t, kl_thr_clock_fn clock, void *opaque)
{
	memset(t, 0, sizeof(*t));
	kl_throttle_config_init(&t->cfg);
	t->clock = clock ? clock : default_clock;
	t->clock_opaque = opaque;
	t->prev_ns = t->clock(t->clock_opaque);
}

void kl_throttle_destroy(struct kl_throttle *t)
{
	for (int d = 0; d < KL_THR_NDIRS; d++) {
		kl_ptimer_free(t->timer[d]);
		t->timer[d] = NULL;
	}
}

static void leak(struct kl_throttle *t)
{
	uint64_t now = t->clock(t->clock_opaque);
	if (now <= t->prev_ns)
		return;
	for (int i = 0; i < KL_THR_NBUCKETS; i++)
		kl_bucket_leak(&t->cfg.b[i], now - t->prev_ns);
	t->prev_ns = now;
}

void kl_throttle_set_config(struct kl_throttle *t, const struct kl_throttle_config *cfg)
{
	leak(t);
	t->cfg = *cfg;
	for (int i = 0; i < KL_THR_NBUCKETS; i++)
		t->cfg.b[i].level = t->cfg.b[i].burst_level = 0;
	t->enabled = kl_throttle_config_enabled(cfg);
}

uint64_t kl_throttle_wait_ns(struct kl_throttle *t, enum kl_thr_dir dir)
{
	uint64_t wait = 0;
	if (!t->enabled)
		return 0;
	leak(t);
	for (int i = 0; i < 4; i++) {
		uint64_t w = kl_bucket_wait_ns(&t->cfg.b[dir_buckets[dir][i]]);
		if (w > wait)
			wait = w;
	}
	return wait;
}

void kl_throttle_account(struct kl_throttle *t, enum kl_thr_dir dir, uint64_t bytes)
{
	if (!t->enabled)
		return;
	double ops = 1.0;
	if (t->cfg.op_size && bytes > t->cfg.op_size)
		ops = (double)bytes / (double)t->cfg.op_size;
	for (int i = 0; i < 4; i++) {
		enum kl_thr_bucket b = dir_buckets[dir][i];
		kl_bucket_fill(&t->cfg.b[b], is_bps(b) ? (double)bytes : ops);
	}
}

/* ---- main-loop timers ------------------------------------------------------ */

static void fire(struct kl_throttle *t, enum kl_thr_dir dir)
{
	if (t->resume[dir])
		t->resume[dir](t->resume_opaque);
}

static void fire_read(void *opaque) { fire(opaque, KL_THR_READ); }
static void fire_write(void *opaque) { fire(opaque, KL_THR_WRITE); }

void kl_throttle_set_timers(struct kl_throttle *t, kl_thr_resume_fn read_fn,
			    kl_thr_resume_fn write_fn, void *opaque)
{
	t->resume[KL_THR_READ] = read_fn;
	t->resume[KL_THR_WRITE] = write_fn;
	t->resume_opaque = opaque;
	if (read_fn && !t->timer[KL_THR_READ])
		t->timer[KL_THR_READ] = kl_ptimer_new(fire_read, t);
	if (write_fn && !t->timer[KL_THR_WRITE])
		t->timer[KL_THR_WRITE] = kl_ptimer_new(fire_write, t);
}

bool kl_throttle_allow_slow(struct kl_throttle *t, enum kl_thr_dir dir)
{
	uint64_t wait = kl_throttle_wait_ns(t, dir);
	if (!wait)
		return true;
	if (t->timer[dir])
		kl_ptimer_arm_ns(t->timer[dir], wait);
	return false;
}

bool kl_throttle_waiting(const struct kl_throttle *t, enum kl_thr_dir dir)
{
	return t->timer[dir] && kl_ptimer_armed(t->timer[dir]);
}

void kl_throttle_kick(struct kl_throttle *t, enum kl_thr_dir dir)
{
	if (t->timer[dir])
		kl_ptimer_cancel(t->timer[dir]);
	fire(t, dir);
}
