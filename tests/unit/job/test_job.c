/* Unit tests: the job registry and state machine (src/job/job.c): QEMU's
 * status sequences and JOB_STATUS_CHANGE order, the work in a bottom half
 * after the start, job ids, job-dismiss, query-jobs data. */
#include <check.h>

#include "../kl_check.h"
#include <glib.h>
#include <string.h>

#include "kvmlite/job.h"
#include "kvmlite/loop.h"

static GString *events;
static int runs, frees;

static void on_event(const char *id, const char *status)
{
	g_string_append_printf(events, "%s:%s ", id, status);
}

static int work_ok(void *opaque, char **err)
{
	(void)opaque, (void)err;
	runs++;
	return 0;
}

static int work_fail(void *opaque, char **err)
{
	(void)opaque;
	runs++;
	*err = g_strdup("it broke");
	return -1;
}

static void free_fn(void *opaque)
{
	(void)opaque;
	frees++;
}

static void pump(void)
{
	while (g_main_context_iteration(kl_loop_context(), FALSE))
		;
}

static void setup(void)
{
	kl_loop_init();
	events = g_string_new("");
	runs = frees = 0;
	kl_job_set_event_fn(on_event);
}

static void teardown(void)
{
	kl_job_cleanup();
	g_string_free(events, TRUE);
}

START_TEST(success_sequence)
{
	char *err = NULL;
	const struct kl_job_info *j = kl_job_start("s1", "snapshot-save", work_ok, free_fn, NULL,
						   &err);
	ck_assert_ptr_nonnull(j);
	/* created and running at once, the work later */
	ck_assert_str_eq(events->str, "s1:created s1:running ");
	ck_assert_int_eq(runs, 0);
	ck_assert_int_eq(j->status, KL_JOB_RUNNING);
	ck_assert_int_eq(kl_job_dismiss("s1", &err), -1);
	ck_assert_str_eq(err, "Job 's1' in state 'running' cannot accept command verb 'dismiss'");
	g_free(err);
	err = NULL;
	pump();
	ck_assert_int_eq(runs, 1);
	ck_assert_int_eq(frees, 1);
	ck_assert_str_eq(events->str, "s1:created s1:running s1:waiting s1:pending s1:concluded ");
	ck_assert_uint_eq(kl_job_count(), 1);
	const struct kl_job_info *q = kl_job_get(0);
	ck_assert_str_eq(q->id, "s1");
	ck_assert_str_eq(q->type, "snapshot-save");
	ck_assert_int_eq(q->status, KL_JOB_CONCLUDED);
	ck_assert_uint_eq(q->current_progress, 1);
	ck_assert_uint_eq(q->total_progress, 1);
	ck_assert_ptr_null(q->error);
	ck_assert_int_eq(kl_job_dismiss("s1", &err), 0);
	ck_assert_str_eq(events->str + strlen(events->str) - 8, "s1:null ");
	ck_assert_uint_eq(kl_job_count(), 0);
	ck_assert_int_eq(kl_job_dismiss("s1", &err), -1);
	ck_assert_str_eq(err, "Job not found");
	g_free(err);
}
END_TEST

START_TEST(failure_sequence)
{
	char *err = NULL;
	ck_assert_ptr_nonnull(kl_job_start("f", "snapshot-load", work_fail, NULL, NULL, &err));
	pump();
	ck_assert_str_eq(events->str, "f:created f:running f:aborting f:concluded ");
	const struct kl_job_info *q = kl_job_get(0);
	ck_assert_str_eq(q->error, "it broke");
	ck_assert_str_eq(kl_job_status_name(q->status), "concluded");
}
END_TEST

START_TEST(ids)
{
	char *err = NULL;
	const char *bad[] = { "", "1x", "-a", "a b", "a/b" };
	for (unsigned i = 0; i < G_N_ELEMENTS(bad); i++) {
		ck_assert_ptr_null(kl_job_start(bad[i], "snapshot-save", work_ok, free_fn, NULL, &err));
		char *want = g_strdup_printf("Invalid job ID '%s'", bad[i]);
		ck_assert_str_eq(err, want);
		g_free(want);
		g_free(err);
		err = NULL;
	}
	ck_assert_int_eq(frees, 0); /* a refused job leaves opaque to the caller */
	ck_assert_ptr_nonnull(kl_job_start("a-1.b_2", "snapshot-delete", work_ok, NULL, NULL,
					   &err));
	ck_assert_ptr_null(kl_job_start("a-1.b_2", "snapshot-delete", work_ok, NULL, NULL, &err));
	ck_assert_str_eq(err, "Job ID 'a-1.b_2' already in use");
	g_free(err);
	ck_assert_str_eq(events->str, "a-1.b_2:created a-1.b_2:running ");
}
END_TEST

START_TEST(cleanup_before_run)
{
	char *err = NULL;
	/* a job whose bottom half never ran still frees its opaque */
	ck_assert_ptr_nonnull(kl_job_start("c", "snapshot-save", work_ok, free_fn, NULL, &err));
	kl_job_cleanup();
	ck_assert_int_eq(frees, 1);
	ck_assert_int_eq(runs, 0);
	ck_assert_uint_eq(kl_job_count(), 0);
}
END_TEST

static Suite *suite(void)
{
	Suite *s = suite_create("job");
	TCase *t = tcase_create("job");
	tcase_add_checked_fixture(t, setup, teardown);
	tcase_add_test(t, success_sequence);
	tcase_add_test(t, failure_sequence);
	tcase_add_test(t, ids);
	tcase_add_test(t, cleanup_before_run);
	suite_add_tcase(s, t);
	return s;
}

int main(void)
{
	return kl_check_run(suite());
}
