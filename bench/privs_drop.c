/* bench/privs_drop: what kvmlite's privilege drop costs at start-up, in a
 * forked child per run (a drop cannot be undone):
 *   init: kl_privs_init() -- before any thread exists: RLIMIT_NOFILE,
 *         ambient/inheritable cleared, bounding set shrunk, no_new_privs;
 *   drop: kl_privs_drop() with W idle threads (aio=threads workers: 16 by
 *         default) -- the uid/gid/groups change (-run-with user=nobody) or,
 *         as root without -run-with, the capset of every thread; then the
 *         /proc check of every thread.
 * Must run as root.  Figures only.
 * usage: privs_drop [RUNS [WORKERS]] */
#include <pthread.h>
#include <semaphore.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <glib.h>

#include "kvmlite/privs.h"
#include "forkbench.h"

static sem_t go, started;

static void *worker(void *p)
{
	(void)p;
	sem_post(&started);
	while (sem_wait(&go) < 0)
		; /* the capset signal interrupts the wait */
	return NULL;
}

static double now_us(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

/* In a child: two timings (us) written to fd. */
static void child(const char *user, unsigned workers, int fd)
{
	struct kl_privs p = { .task_dir = -1 };
	char *err = NULL;
	double t[3];
	if (user && kl_privs_set_user(&p, user, &err) < 0)
		goto fail;
	t[0] = now_us();
	if (kl_privs_init(&p, NULL, &err) < 0)
		goto fail;
	t[1] = now_us();
	sem_init(&go, 0, 0);
	sem_init(&started, 0, 0);
	pthread_t *th = g_new(pthread_t, workers);
	for (unsigned i = 0; i < workers; i++)
		pthread_create(&th[i], NULL, worker, NULL);
	for (unsigned i = 0; i < workers; i++)
		sem_wait(&started);
	double t2 = now_us();
	if (kl_privs_drop(&p, &err) < 0)
		goto fail;
	t[2] = now_us();
	double r[2] = { t[1] - t[0], t[2] - t2 };
	if (write(fd, r, sizeof(r)) != sizeof(r))
		_exit(1);
	_exit(0); /* the workers need not be joined */
fail:
	fprintf(stderr, "privs_drop: %s\n", err);
	_exit(1);
}

struct args {
	const char *user;
	unsigned workers;
};

static void run_child(void *ctx, int fd)
{
	struct args *a = ctx;
	child(a->user, a->workers, fd);
}

int main(int argc, char **argv)
{
	unsigned runs = argc > 1 ? (unsigned)atoi(argv[1]) : 20;
	unsigned workers = argc > 2 ? (unsigned)atoi(argv[2]) : 16;
	if (!runs)
		runs = 1;
	if (geteuid() != 0) {
		fprintf(stderr, "privs_drop: must run as root\n");
		return 77;
	}
	printf("%u runs, %u idle threads at the drop; microseconds, min / median\n", runs, workers);
	printf("%-30s %18s %18s %18s\n", "", "init", "drop", "total");
	if (forkbench_row("privs_drop", "root, no -run-with", 30, runs, run_child,
			  &(struct args){ NULL, workers }) < 0 ||
	    forkbench_row("privs_drop", "-run-with user=nobody", 30, runs, run_child,
			  &(struct args){ "nobody", workers }) < 0)
		return 1;
	return 0;
}
