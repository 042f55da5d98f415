/* One row of a forked-child-per-run bench (bench/sandbox_arm, bench/privs_drop):
 * RUNS children each write two timings (us) to a pipe; prints LABEL and
 * min / median of the first, the second and their sum.  0 or -1 (a run failed). */
#ifndef KVMLITE_BENCH_FORKBENCH_H
#define KVMLITE_BENCH_FORKBENCH_H
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static int forkbench_cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static inline int forkbench_row(const char *name, const char *label, int width, unsigned runs,
				void (*child)(void *ctx, int fd), void *ctx)
{
	double *v = g_new(double, 3 * runs);
	for (unsigned i = 0; i < runs; i++) {
		int p[2];
		if (pipe(p) < 0)
			return -1;
		pid_t pid = fork();
		if (pid == 0) {
			close(p[0]);
			child(ctx, p[1]);
			_exit(1);
		}
		close(p[1]);
		double r[2] = { 0, 0 };
		int st;
		ssize_t n = read(p[0], r, sizeof(r));
		close(p[0]);
		waitpid(pid, &st, 0);
		if (n != sizeof(r) || !WIFEXITED(st) || WEXITSTATUS(st)) {
			fprintf(stderr, "%s: run %u failed (status %#x)\n", name, i, st);
			g_free(v);
			return -1;
		}
		v[i] = r[0];
		v[runs + i] = r[1];
		v[2 * runs + i] = r[0] + r[1];
	}
	printf("%-*s", width, label);
	for (int k = 0; k < 3; k++) {
		qsort(v + k * runs, runs, sizeof(double), forkbench_cmp);
		printf(" %8.1f / %7.1f", v[k * runs], v[k * runs + runs / 2]);
	}
	printf("\n");
	g_free(v);
	return 0;
}
#endif
