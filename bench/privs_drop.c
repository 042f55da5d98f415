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

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
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
	static const char *const users[] = { NULL, "nobody" };
	for (int u = 0; u < 2; u++) {
		double *v = g_new(double, 3 * runs);
		for (unsigned i = 0; i < runs; i++) {
			int p[2];
			if (pipe(p) < 0)
				return 1;
			pid_t pid = fork();
			if (pid == 0) {
				close(p[0]);
				child(users[u], workers, p[1]);
			}
			close(p[1]);
			double r[2] = { 0, 0 };
			int st;
			ssize_t n = read(p[0], r, sizeof(r));
			close(p[0]);
			waitpid(pid, &st, 0);
			if (n != sizeof(r) || !WIFEXITED(st) || WEXITSTATUS(st)) {
				fprintf(stderr, "privs_drop: run %u failed (status %#x)\n", i, st);
				return 1;
			}
			v[i] = r[0];
			v[runs + i] = r[1];
			v[2 * runs + i] = r[0] + r[1];
		}
		printf("%-30s", u ? "-run-with user=nobody" : "root, no -run-with");
		for (int k = 0; k < 3; k++) {
			qsort(v + k * runs, runs, sizeof(double), cmp);
			printf(" %8.1f / %7.1f", v[k * runs], v[k * runs + runs / 2]);
		}
		printf("\n");
		g_free(v);
	}
	return 0;
}
