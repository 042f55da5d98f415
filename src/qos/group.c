/* Throttle groups: one throttle state shared by members, queued requests
 * served round-robin over the members when the group's timer fires
 * (include/kvmlite/throttle.h). */
#include <string.h>

#include <glib.h>

#include "kvmlite/loop.h"
#include "kvmlite/opts.h"
#include "kvmlite/throttle.h"

struct kl_thr_group {
	char *name;
	unsigned refs;
	struct kl_throttle thr;
	struct kl_thr_member *members;          /* join order */
	struct kl_thr_member *turn[KL_THR_NDIRS];  /* whose turn is next (NULL: first) */
	bool running[KL_THR_NDIRS];             /* in group_run (re-entry guard) */
	struct kl_thr_group *next;              /* registry */
};

static struct kl_thr_group *groups;

struct kl_thr_group *kl_thr_group_find(const char *name)
{
	for (struct kl_thr_group *g = groups; g && name; g = g->next)
		if (!strcmp(g->name, name))
			return g;
	return NULL;
}

/* The member with a queued request of dir whose turn comes first, from
 * g->turn[dir] on, wrapping around. */
static struct kl_thr_member *next_pending(struct kl_thr_group *g, enum kl_thr_dir dir)
{
	struct kl_thr_member *start = g->turn[dir] ? g->turn[dir] : g->members;
	struct kl_thr_member *m = start;
	while (m) {
		if (m->ops->pending(m->opaque, dir))
			return m;
		m = m->next ? m->next : g->members;
		if (m == start)
			break;
	}
	return NULL;
}

/* Start queued requests while the limits allow (all of them: force). */
static void group_run(struct kl_thr_group *g, enum kl_thr_dir dir, bool force)
{
	if (g->running[dir])
		return;   /* the loop below picks up what was queued meanwhile */
	g->running[dir] = true;
	for (;;) {
		struct kl_thr_member *m = next_pending(g, dir);
		if (!m)
			break;
		if (!force && !kl_throttle_allow(&g->thr, dir))
			break;   /* the timer is armed for the next one */
		g->turn[dir] = m->next;   /* the turn passes on */
		m->ops->run_one(m->opaque, dir);
	}
	g->running[dir] = false;
}

static void resume_read(void *opaque) { group_run(opaque, KL_THR_READ, false); }
static void resume_write(void *opaque) { group_run(opaque, KL_THR_WRITE, false); }

struct kl_thr_group *kl_thr_group_get(const char *name, kl_thr_clock_fn clock, void *opaque)
{
	struct kl_thr_group *g = kl_thr_group_find(name);
	if (g) {
		g->refs++;
		return g;
	}
	g = g_new0(struct kl_thr_group, 1);
	g->name = g_strdup(name);
	g->refs = 1;
	kl_throttle_init(&g->thr, clock, opaque);
	g->next = groups;
	groups = g;
	return g;
}

void kl_thr_group_ref(struct kl_thr_group *g)
{
	g->refs++;
}

void kl_thr_group_unref(struct kl_thr_group *g)
{
	if (!g || --g->refs)
		return;
	for (struct kl_thr_group **p = &groups; *p; p = &(*p)->next)
		if (*p == g) {
			*p = g->next;
			break;
		}
	kl_throttle_destroy(&g->thr);
	g_free(g->name);
	g_free(g);
}

const char *kl_thr_group_name(const struct kl_thr_group *g)
{
	return g->name;
}

const struct kl_throttle_config *kl_thr_group_config(const struct kl_thr_group *g)
{
	return g->thr.enabled ? &g->thr.cfg : NULL;
}

void kl_thr_group_kick(struct kl_thr_group *g)
{
	for (int d = 0; d < KL_THR_NDIRS; d++) {
		if (g->thr.timer[d])
			kl_ptimer_cancel(g->thr.timer[d]);
		group_run(g, d, !g->thr.enabled);
	}
}

void kl_thr_group_set_config(struct kl_thr_group *g, const struct kl_throttle_config *cfg)
{
	kl_throttle_set_config(&g->thr, cfg);
	kl_thr_group_kick(g);
}

void kl_thr_member_join(struct kl_thr_member *m, struct kl_thr_group *g,
			const struct kl_thr_member_ops *ops, void *opaque)
{
	/* the timers with the first member: -object runs before the main
	 * loop exists, members come after it */
	kl_throttle_set_timers(&g->thr, resume_read, resume_write, g);
	m->group = g;
	m->ops = ops;
	m->opaque = opaque;
	m->next = NULL;
	struct kl_thr_member **p = &g->members;
	while (*p)
		p = &(*p)->next;
	*p = m;
	kl_thr_group_ref(g);
}

void kl_thr_member_leave(struct kl_thr_member *m)
{
	struct kl_thr_group *g = m->group;
	if (!g)
		return;
	for (int d = 0; d < KL_THR_NDIRS; d++)
		if (g->turn[d] == m)
			g->turn[d] = m->next;
	for (struct kl_thr_member **p = &g->members; *p; p = &(*p)->next)
		if (*p == m) {
			*p = m->next;
			break;
		}
	m->group = NULL;
	m->next = NULL;
	/* The group's timer, if armed, still serves the others when it
	 * fires; nothing of theirs depended on m. */
	kl_thr_group_unref(g);
}

bool kl_thr_member_allow(struct kl_thr_member *m, enum kl_thr_dir dir)
{
	struct kl_thr_group *g = m->group;
	if (!g->thr.enabled)
		return true;
	/* others wait for their turn: this one joins the round */
	if (g->running[dir] || kl_throttle_waiting(&g->thr, dir))
		return false;
	return kl_throttle_allow_slow(&g->thr, dir);
}

void kl_thr_member_account(struct kl_thr_member *m, enum kl_thr_dir dir, uint64_t bytes)
{
	kl_throttle_account(&m->group->thr, dir, bytes);
}

uint64_t kl_thr_group_wait_ns(struct kl_thr_group *g, enum kl_thr_dir dir)
{
	return kl_throttle_wait_ns(&g->thr, dir);
}

bool kl_thr_group_waiting(const struct kl_thr_group *g, enum kl_thr_dir dir)
{
	return kl_throttle_waiting(&g->thr, dir);
}

/* ---- -object throttle-group ------------------------------------------------ */

static GPtrArray *objects;   /* struct kl_thr_group *, one reference each */

int kl_thr_group_object_add(struct kl_opts *o, char **err)
{
	const char *id = kl_opts_get(o, "id");
	if (!id || !*id) {
		*err = g_strdup("Parameter 'id' is missing");
		return -1;
	}
	/* QEMU 7.2's properties: x-iops-total, x-bps-read-max-length, ...,
	 * x-iops-size, or the ThrottleLimits struct as limits.iops-total=... */
	struct kl_throttle_config cfg;
	kl_throttle_config_init(&cfg);
	bool x = false, limits = false;
	for (unsigned i = 0; i < o->n; i++) {
		struct kl_opt *opt = &o->v[i];
		const char *k = NULL;
		if (g_str_has_prefix(opt->key, "x-")) {
			k = opt->key + 2;
			x = true;
		} else if (g_str_has_prefix(opt->key, "limits.")) {
			k = opt->key + 7;
			limits = true;
		}
		if (!k)
			continue;
		char *e = NULL;
		int r = kl_throttle_config_set(&cfg, kl_throttle_disk_keys, true, k, opt->val, &e);
		if (r == 1)
			continue;   /* unused: named below */
		opt->used = true;
		if (r < 0) {
			*err = g_strdup_printf("Property '%s': %s", opt->key, e);
			g_free(e);
			return -1;
		}
	}
	if (x && limits) {
		*err = g_strdup("throttle-group: the x-* properties and 'limits' cannot be used together");
		return -1;
	}
	if (kl_opts_check_unused(o, "throttle-group", err) < 0 ||
	    kl_throttle_config_check(&cfg, err) < 0)
		return -1;
	if (kl_thr_group_find(id)) {
		*err = g_strdup("A group with this name already exists");
		return -1;
	}
	struct kl_thr_group *g = kl_thr_group_get(id, NULL, NULL);
	kl_thr_group_set_config(g, &cfg);
	if (!objects)
		objects = g_ptr_array_new();
	g_ptr_array_add(objects, g);
	return 0;
}

void kl_thr_group_objects_free(void)
{
	for (guint i = 0; objects && i < objects->len; i++)
		kl_thr_group_unref(g_ptr_array_index(objects, i));
	if (objects)
		g_ptr_array_free(objects, TRUE);
	objects = NULL;
}
