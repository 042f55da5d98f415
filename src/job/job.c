/* The job registry and state machine (include/kvmlite/job.h). */
#include <glib.h>
#include <string.h>

#include "kvmlite/job.h"
#include "kvmlite/loop.h"

struct job {
	struct kl_job_info info;
	kl_job_fn fn;
	void (*free_fn)(void *opaque);
	void *opaque;
	bool ran;           /* the bottom half ran (opaque freed) */
};

static GPtrArray *jobs;   /* struct job * */
static void (*event_fn)(const char *id, const char *status);

static const char *const names[] = { "created", "running", "waiting", "pending",
				     "aborting", "concluded", "null" };

const char *kl_job_status_name(enum kl_job_status s)
{
	return (unsigned)s < G_N_ELEMENTS(names) ? names[s] : "undefined";
}

void kl_job_set_event_fn(void (*fn)(const char *id, const char *status))
{
	event_fn = fn;
}

static void transition(struct job *j, enum kl_job_status s)
{
	j->info.status = s;
	if (event_fn)
		event_fn(j->info.id, kl_job_status_name(s));
}

/* QEMU's id_wellformed(): a letter, then letters, digits, '-', '.', '_' */
static bool id_ok(const char *id)
{
	if (!g_ascii_isalpha(id[0]))
		return false;
	for (const char *p = id + 1; *p; p++)
		if (!g_ascii_isalnum(*p) && *p != '-' && *p != '.' && *p != '_')
			return false;
	return true;
}

static struct job *find(const char *id)
{
	for (guint i = 0; jobs && i < jobs->len; i++) {
		struct job *j = g_ptr_array_index(jobs, i);
		if (!strcmp(j->info.id, id))
			return j;
	}
	return NULL;
}

static void job_free(gpointer p)
{
	struct job *j = p;
	g_free(j->info.id);
	g_free(j->info.error);
	g_free(j);
}

static void run_bh(void *opaque)
{
	struct job *j = opaque;
	char *err = NULL;
	j->info.total_progress = 1;
	int rc = j->fn(j->opaque, &err);
	j->info.current_progress = 1;
	if (j->free_fn)
		j->free_fn(j->opaque);
	j->opaque = NULL;
	j->ran = true;
	if (rc < 0) {
		j->info.error = err ? err : g_strdup("job failed");
		transition(j, KL_JOB_ABORTING);
	} else {
		g_free(err);
		transition(j, KL_JOB_WAITING);
		transition(j, KL_JOB_PENDING);
	}
	transition(j, KL_JOB_CONCLUDED);
}

const struct kl_job_info *kl_job_start(const char *id, const char *type, kl_job_fn fn,
				       void (*free_fn)(void *opaque), void *opaque, char **err)
{
	if (!id_ok(id)) {
		*err = g_strdup_printf("Invalid job ID '%s'", id);
		return NULL;
	}
	if (find(id)) {
		*err = g_strdup_printf("Job ID '%s' already in use", id);
		return NULL;
	}
	if (!jobs)
		jobs = g_ptr_array_new_with_free_func(job_free);
	struct job *j = g_new0(struct job, 1);
	j->info.id = g_strdup(id);
	j->info.type = type;
	j->fn = fn;
	j->free_fn = free_fn;
	j->opaque = opaque;
	g_ptr_array_add(jobs, j);
	transition(j, KL_JOB_CREATED);
	transition(j, KL_JOB_RUNNING);
	kl_bh_schedule(run_bh, j);
	return &j->info;
}

int kl_job_dismiss(const char *id, char **err)
{
	struct job *j = find(id);
	if (!j) {
		*err = g_strdup("Job not found");
		return -1;
	}
	if (j->info.status != KL_JOB_CONCLUDED) {
		*err = g_strdup_printf("Job '%s' in state '%s' cannot accept command verb 'dismiss'",
				       id, kl_job_status_name(j->info.status));
		return -1;
	}
	transition(j, KL_JOB_NULL);
	g_ptr_array_remove(jobs, j);
	return 0;
}

unsigned kl_job_count(void)
{
	return jobs ? jobs->len : 0;
}

const struct kl_job_info *kl_job_get(unsigned i)
{
	return jobs && i < jobs->len ? &((struct job *)g_ptr_array_index(jobs, i))->info : NULL;
}

void kl_job_cleanup(void)
{
	if (!jobs)
		return;
	/* a job whose bottom half has not run yet keeps its opaque */
	for (guint i = 0; i < jobs->len; i++) {
		struct job *j = g_ptr_array_index(jobs, i);
		if (!j->ran && j->free_fn)
			j->free_fn(j->opaque);
	}
	g_ptr_array_free(jobs, TRUE);
	jobs = NULL;
}
