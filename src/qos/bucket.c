/* One leaky bucket, QEMU's arithmetic (docs/throttle.txt, util/throttle.c):
 * the level drains at avg; requests are refused while it is above the
 * bucket size; with a burst length > 1 a second level drains at max. */
#include <math.h>

#include "kvmlite/throttle.h"

#define NS_PER_S 1e9
/* Levels within this many units of the size count as "not above": the
 * waits are rounded up to whole nanoseconds, so a bucket drained for the
 * computed wait may miss the size by a rounding error only. */
#define LEVEL_EPS 1e-6

void kl_bucket_leak(struct kl_bucket *b, uint64_t delta_ns)
{
	double leak = b->avg * (double)delta_ns / NS_PER_S;
	b->level = b->level > leak ? b->level - leak : 0;
	if (b->burst_length > 1) {
		leak = b->max * (double)delta_ns / NS_PER_S;
		b->burst_level = b->burst_level > leak ? b->burst_level - leak : 0;
	}
}

static uint64_t wait_for(double extra, double rate)
{
	double ns = ceil(extra * NS_PER_S / rate);
	return ns < 1e18 ? (uint64_t)ns : (uint64_t)1e18;   /* ~31 years */
}

uint64_t kl_bucket_wait_ns(const struct kl_bucket *b)
{
	double size, burst_size;
	if (b->avg <= 0)
		return 0;
	if (b->max <= 0) {
		/* no burst setting: still allow a short burst (100 ms at avg),
		 * or every other request would wait */
		size = b->avg / 10;
		burst_size = 0;
	} else {
		/* the burst (max for burst_length seconds) first */
		size = b->max * (double)b->burst_length;
		burst_size = b->max / 10;
	}
	double extra = b->level - size;
	if (extra > LEVEL_EPS)
		return wait_for(extra, b->avg);
	if (b->burst_length > 1) {
		extra = b->burst_level - burst_size;
		if (extra > LEVEL_EPS)
			return wait_for(extra, b->max);
	}
	return 0;
}

void kl_bucket_fill(struct kl_bucket *b, double units)
{
	if (b->avg <= 0)
		return;
	b->level += units;
	if (b->burst_length > 1)
		b->burst_level += units;
}
