/* I/O limiter (src/qos/): QEMU's leaky bucket (docs/throttle.txt).
 *
 * A throttle state holds six buckets, two directions (read/write) with a
 * "total" bucket shared by both:
 *
 *   KL_THR_BPS_TOTAL/READ/WRITE   bytes per second
 *   KL_THR_OPS_TOTAL/READ/WRITE   requests per second (iops, or frames
 *                                 per second for a NIC)
 *
 * Each bucket has QEMU's three settings: avg (`x`, units/s), max (`x-max`,
 * the burst rate, units/s) and burst_length (`x-max-length`, seconds).  The
 * bucket's level drains at avg; a request is refused while the level is
 * above the bucket size (max * burst_length, or avg / 10 without a burst
 * setting).  With burst_length > 1 a second level, drained at max, keeps
 * the burst itself at `max` per second (its size max / 10).  A request that
 * is allowed is then accounted in full (the level may overshoot by one
 * request): the refused one waits exactly until the level has drained
 * back, so the long-run rate is avg whatever the request sizes.
 * iops-size: with op_size set, a request of n > op_size bytes counts as
 * n / op_size requests.
 *
 * Using it (main loop, BQL held; any thread for the pure part):
 *
 *   struct kl_throttle t;
 *   kl_throttle_init(&t, NULL, NULL);            clock = kl_clock_ns
 *   kl_throttle_set_config(&t, &cfg);            live: levels restart at 0
 *   kl_throttle_set_timers(&t, resume_read, resume_write, opaque);
 *   ...
 *   if (!kl_throttle_allow(&t, KL_THR_WRITE)) {  arms the write timer for
 *           keep the request queued;         the exact time the buckets
 *           return;                          allow the next one, then
 *   }                                        resume_write(opaque) runs
 *   kl_throttle_account(&t, KL_THR_WRITE, bytes);
 *
 * kl_throttle_allow() is a single branch on t->enabled when no limit is
 * set.  kl_throttle_wait_ns() is the pure computation (unit tests drive it
 * with a fake clock).
 */
#ifndef KVMLITE_THROTTLE_H
#define KVMLITE_THROTTLE_H

#include <stdbool.h>
#include <stdint.h>

struct kl_opts;
struct kl_ptimer;

enum kl_thr_bucket {
	KL_THR_BPS_TOTAL,
	KL_THR_BPS_READ,
	KL_THR_BPS_WRITE,
	KL_THR_OPS_TOTAL,
	KL_THR_OPS_READ,
	KL_THR_OPS_WRITE,
	KL_THR_NBUCKETS,
};

enum kl_thr_dir {
	KL_THR_READ,
	KL_THR_WRITE,
	KL_THR_NDIRS,
};

#define KL_THR_VALUE_MAX 1000000000000000ull  /* as QEMU's THROTTLE_VALUE_MAX */

/* ---- one bucket (bucket.c) ------------------------------------------------ */

struct kl_bucket {
	double avg;             /* units per second; 0 = no limit */
	double max;             /* burst rate; 0 = none (bucket = avg / 10) */
	uint64_t burst_length;  /* seconds at max (>= 1) */
	double level;           /* drains at avg */
	double burst_level;     /* drains at max (burst_length > 1 only) */
};

/* Drain for delta_ns nanoseconds. */
void kl_bucket_leak(struct kl_bucket *b, uint64_t delta_ns);
/* Nanoseconds until a request may go (0 = now).  Rounded up so that the
 * bucket allows it when that time has passed. */
uint64_t kl_bucket_wait_ns(const struct kl_bucket *b);
/* Account units (a request, or its bytes). */
void kl_bucket_fill(struct kl_bucket *b, double units);

/* ---- configuration ------------------------------------------------------ */

struct kl_throttle_config {
	struct kl_bucket b[KL_THR_NBUCKETS];
	uint64_t op_size;       /* iops-size: 0 = every request is one op */
};

/* No limits (every burst_length 1). */
void kl_throttle_config_init(struct kl_throttle_config *cfg);
/* QEMU's rules: values <= KL_THR_VALUE_MAX, max >= avg when both are set,
 * max needs avg, burst_length > 1 needs max, total and read/write
 * not both set for one kind.  -1 with *err. */
int kl_throttle_config_check(const struct kl_throttle_config *cfg, char **err);
bool kl_throttle_config_enabled(const struct kl_throttle_config *cfg);

/* Option names: a table of { "bps-tx", KL_THR_BPS_WRITE } etc.  Every
 * NAME accepts NAME, NAME-max, NAME-max-length. */
struct kl_throttle_key {
	const char *name;
	enum kl_thr_bucket bucket;
};
/* Limits NIC back-ends accept: bps-tx/pps-tx = write, bps-rx/pps-rx = read. */
extern const struct kl_throttle_key kl_throttle_net_keys[];
/* Disk names as QEMU's: iops-total/read/write, bps-total/read/write. */
extern const struct kl_throttle_key kl_throttle_disk_keys[];

/* Set one key ("bps-tx-max", "iops-size" when allow_size) to an integer
 * value string.  1 = key not in the table, 0 = set, -1 = bad value (*err). */
int kl_throttle_config_set(struct kl_throttle_config *cfg, const struct kl_throttle_key *keys,
			   bool allow_size, const char *key, const char *val, char **err);
/* Take every "PREFIX.KEY" of o (marking them used), e.g. prefix
 * "throttling".  0 or -1 with *err (also from kl_throttle_config_check). */
int kl_throttle_config_from_opts(struct kl_throttle_config *cfg, const struct kl_throttle_key *keys,
				 bool allow_size, struct kl_opts *o, const char *prefix, char **err);
/* Read a setting back by key name (as kl_throttle_config_set takes). */
bool kl_throttle_config_get(const struct kl_throttle_config *cfg, const struct kl_throttle_key *keys,
			    const char *key, uint64_t *out);

/* ---- throttle state (throttle.c) ------------------------------------------ */

typedef uint64_t (*kl_thr_clock_fn)(void *opaque);
typedef void (*kl_thr_resume_fn)(void *opaque);

struct kl_throttle {
	bool enabled;              /* some limit is set */
	struct kl_throttle_config cfg;
	uint64_t prev_ns;          /* time of the last leak */
	kl_thr_clock_fn clock;
	void *clock_opaque;
	struct kl_ptimer *timer[KL_THR_NDIRS];
	kl_thr_resume_fn resume[KL_THR_NDIRS];
	void *resume_opaque;
};

/* clock NULL = kl_clock_ns. */
void kl_throttle_init(struct kl_throttle *t, kl_thr_clock_fn clock, void *opaque);
/* Frees the timers. */
void kl_throttle_destroy(struct kl_throttle *t);
/* Replace the limits (checked by the caller); levels restart empty as in
 * QEMU's throttle_config().  Pending timers are left alone: the caller
 * resumes its queues (kl_throttle_kick) to retry under the new limits. */
void kl_throttle_set_config(struct kl_throttle *t, const struct kl_throttle_config *cfg);
/* Leak to now, then nanoseconds until a request in dir may go (0: now). */
uint64_t kl_throttle_wait_ns(struct kl_throttle *t, enum kl_thr_dir dir);
/* Account a request of bytes in dir (no-op when disabled). */
void kl_throttle_account(struct kl_throttle *t, enum kl_thr_dir dir, uint64_t bytes);

/* Main-loop side: one precise timer per direction calling resume[dir]. */
void kl_throttle_set_timers(struct kl_throttle *t, kl_thr_resume_fn read_fn,
			    kl_thr_resume_fn write_fn, void *opaque);
/* true: the request may go now.  false: wait; the timer of dir is armed
 * for the exact moment the buckets allow it (resume called then). */
bool kl_throttle_allow_slow(struct kl_throttle *t, enum kl_thr_dir dir);
static inline bool kl_throttle_allow(struct kl_throttle *t, enum kl_thr_dir dir)
{
	return !t->enabled || kl_throttle_allow_slow(t, dir);
}
/* Is dir waiting for its timer? */
bool kl_throttle_waiting(const struct kl_throttle *t, enum kl_thr_dir dir);
/* Cancel dir's timer and call its resume function now (after a config
 * change). */
void kl_throttle_kick(struct kl_throttle *t, enum kl_thr_dir dir);

/* ---- throttle groups (group.c) ---------------------------------------------
 * A group is one throttle state (limits, buckets, timers) shared by its
 * members (block backends, throttle filter nodes), like QEMU's
 * ThrottleGroup.  Members keep their own queues of refused requests; when
 * the group's timer fires, the group starts queued requests one at a time,
 * round-robin over the members that have one queued (QEMU's
 * schedule_next_tgm: the turn passes to the next member after each
 * request), so no member starves.  The timer belongs to the group, not to
 * a member: a member leaving never leaves the others without a timer
 * (Red Hat BZ 1535914).
 *
 * Groups are named and reference counted: -object throttle-group holds a
 * reference, every member one; kl_thr_group_get() finds or creates one
 * (an implicit group for -drive throttling.group=NAME, as QEMU). */

struct kl_thr_group;

struct kl_thr_member_ops {
	/* Does the member have a request of dir queued (and may start it)? */
	bool (*pending)(void *opaque, enum kl_thr_dir dir);
	/* Start the member's first queued request of dir: the member accounts
	 * it (kl_thr_group_account) and dispatches it. */
	void (*run_one)(void *opaque, enum kl_thr_dir dir);
};

struct kl_thr_member {
	struct kl_thr_group *group;           /* NULL: not in a group */
	const struct kl_thr_member_ops *ops;
	void *opaque;
	struct kl_thr_member *next;           /* group's member list */
};

/* Find the group called name, or create one with no limits (clock NULL =
 * kl_clock_ns); one reference for the caller. */
struct kl_thr_group *kl_thr_group_get(const char *name, kl_thr_clock_fn clock, void *opaque);
struct kl_thr_group *kl_thr_group_find(const char *name);
void kl_thr_group_ref(struct kl_thr_group *g);
void kl_thr_group_unref(struct kl_thr_group *g);
const char *kl_thr_group_name(const struct kl_thr_group *g);
/* NULL when the group has no limit set. */
const struct kl_throttle_config *kl_thr_group_config(const struct kl_thr_group *g);
/* New limits (checked by the caller) for every member; what waits is
 * retried under them at once (released when no limit is left). */
void kl_thr_group_set_config(struct kl_thr_group *g, const struct kl_throttle_config *cfg);

/* Join g (takes a reference of g) / leave it (drops it).  The member
 * must have no queued requests when it leaves. */
void kl_thr_member_join(struct kl_thr_member *m, struct kl_thr_group *g,
			const struct kl_thr_member_ops *ops, void *opaque);
void kl_thr_member_leave(struct kl_thr_member *m);
/* A new request of dir at m, whose queue of dir is empty: true = start it
 * now (then kl_thr_group_account it); false = queue it, the group starts
 * it in its turn (its timer is armed, or it is running the queues). */
bool kl_thr_member_allow(struct kl_thr_member *m, enum kl_thr_dir dir);
void kl_thr_member_account(struct kl_thr_member *m, enum kl_thr_dir dir, uint64_t bytes);
/* Start what the limits allow now in both directions (after a member's
 * queue was held back, e.g. a quiesced backend). */
void kl_thr_group_kick(struct kl_thr_group *g);
/* Leak to now, then nanoseconds until the group's buckets allow the next
 * request of dir (0: now); the pure part, for fake-clock tests. */
uint64_t kl_thr_group_wait_ns(struct kl_thr_group *g, enum kl_thr_dir dir);
/* -object throttle-group,id=G,x-iops-total=N,... (or limits.iops-total=N):
 * a group that lives until kl_thr_group_objects_free() (at exit).  QEMU
 * 7.2's property names and errors; -1 with *err. */
int kl_thr_group_object_add(struct kl_opts *o, char **err);
void kl_thr_group_objects_free(void);
/* Is the group's timer of dir armed? */
bool kl_thr_group_waiting(const struct kl_thr_group *g, enum kl_thr_dir dir);

#endif
