/* bench/sandbox_arm: what arming kvmlite's seccomp sandbox costs, in a
 * forked child per run (filters can only be added, never removed):
 *   build+other: kl_sandbox_run_other() -- the four BPF programs compiled by
 *                libseccomp, the handlers, the helper thread that installs
 *                the "other" list and creates GLib's gmain (one
 *                g_unix_signal_source_new, as main.c does);
 *   arm:         kl_sandbox_arm() with W registered idle threads (aio=threads
 *                workers: 16 by default) signalled to install theirs, then
 *                the main thread's;
 * beside the peer, the same child without the sandbox (-sandbox off: the
 * signal source only).  Figures only.
 * usage: sandbox_arm [RUNS [WORKERS]] */
#include <glib-unix.h>
#include <glib.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kvmlite/seccomp.h"
#include "forkbench.h"

static sem_t go, started;

static void *worker(void *p)
{
	(void)p;
	kl_sandbox_thread_start(KL_THREAD_IO);
	sem_post(&started);
	while (sem_wait(&go) < 0)
		; /* SIG_ARM interrupts the wait, as in src/block/threads.c */
	kl_sandbox_thread_end();
	return NULL;
}

static double now_us(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec * 1e6 + t.tv_nsec / 1e3;
}

static void add_source(void *p)
{
	GSource *s = g_unix_signal_source_new(SIGTERM);
	g_source_attach(s, p);
	g_source_unref(s);
}

/* In a child: two timings (us) written to fd. */
static void child(bool enable, unsigned workers, int fd)
{
	struct kl_sandbox_opts o = { .enable = enable };
	char *err = NULL;
	kl_sandbox_configure(&o);
	GMainContext *ctx = g_main_context_new();
	sem_init(&go, 0, 0);
	sem_init(&started, 0, 0);
	pthread_t *th = g_new(pthread_t, workers);
	for (unsigned i = 0; i < workers; i++)
		pthread_create(&th[i], NULL, worker, NULL);
	for (unsigned i = 0; i < workers; i++)
		sem_wait(&started);
	double t[3];
	t[0] = now_us();
	if (kl_sandbox_run_other(add_source, ctx, &err) < 0)
		goto fail;
	t[1] = now_us();
	if (kl_sandbox_arm(&err) < 0)
		goto fail;
	t[2] = now_us();
	double r[2] = { t[1] - t[0], t[2] - t[1] };
	if (write(fd, r, sizeof(r)) != sizeof(r))
		_exit(1);
	_exit(0); /* the workers need not be joined */
fail:
	fprintf(stderr, "sandbox_arm: %s\n", err);
	_exit(1);
}

struct args {
	bool enable;
	unsigned workers;
};

static void run_child(void *ctx, int fd)
{
	struct args *a = ctx;
	child(a->enable, a->workers, fd);
}

int main(int argc, char **argv)
{
	unsigned runs = argc > 1 ? (unsigned)atoi(argv[1]) : 20;
	unsigned workers = argc > 2 ? (unsigned)atoi(argv[2]) : 16;
	if (!runs)
		runs = 1;
	printf("%u runs, %u idle I/O worker threads; microseconds, min / median\n", runs, workers);
	printf("%-24s %18s %18s %18s\n", "", "build+other", "arm", "total");
	if (forkbench_row("sandbox_arm", "kvmlite -sandbox on", 24, runs, run_child,
			  &(struct args){ true, workers }) < 0 ||
	    forkbench_row("sandbox_arm", "kvmlite -sandbox off", 24, runs, run_child,
			  &(struct args){ false, workers }) < 0)
		return 1;
	return 0;
}
