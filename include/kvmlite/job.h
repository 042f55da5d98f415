/* Jobs as QEMU's job framework (job.c, qapi/job.json): an id, a type, the
 * status state machine and its JOB_STATUS_CHANGE events, progress, an
 * error; query-jobs and job-dismiss.  kvmlite's jobs (snapshot-save,
 * snapshot-load, snapshot-delete) auto-finalize and are dismissed by the
 * user (QEMU's JOB_MANUAL_DISMISS).  The work runs in a bottom half on the
 * main loop (BQL held), after the command that created the job returned.
 */
#ifndef KVMLITE_JOB_H
#define KVMLITE_JOB_H

#include <stdbool.h>
#include <stdint.h>

/* QEMU's JobStatus (the ones these jobs pass through) */
enum kl_job_status {
	KL_JOB_CREATED,
	KL_JOB_RUNNING,
	KL_JOB_WAITING,
	KL_JOB_PENDING,
	KL_JOB_ABORTING,
	KL_JOB_CONCLUDED,
	KL_JOB_NULL,
};
const char *kl_job_status_name(enum kl_job_status s);

struct kl_job_info {
	char *id;
	const char *type;        /* JobType: "snapshot-save", ... */
	enum kl_job_status status;
	uint64_t current_progress, total_progress;
	char *error;             /* set when the job failed */
};

/* The work: 0, or -1 with *err (the job's error). */
typedef int (*kl_job_fn)(void *opaque, char **err);

/* Create (status created, event) and start (running, event) a job; fn runs
 * from a bottom half, then the job goes waiting -> pending -> concluded
 * (or aborting -> concluded).  free_fn(opaque) after fn.  NULL with *err:
 * "Invalid job ID 'x'", "Job ID 'x' already in use". */
const struct kl_job_info *kl_job_start(const char *id, const char *type, kl_job_fn fn,
				       void (*free_fn)(void *opaque), void *opaque, char **err);
/* job-dismiss: a concluded job goes (status null).  -1 with *err. */
int kl_job_dismiss(const char *id, char **err);
unsigned kl_job_count(void);
const struct kl_job_info *kl_job_get(unsigned i);
/* JOB_STATUS_CHANGE {id, status} goes here (set by the monitor). */
void kl_job_set_event_fn(void (*fn)(const char *id, const char *status));
/* Frees every job (at exit). */
void kl_job_cleanup(void);

#endif
