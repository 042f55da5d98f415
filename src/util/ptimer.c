/* Precise one-shot timers: a timerfd watched by the main loop (GLib
 * timeouts have millisecond resolution). */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "kvmlite/loop.h"

struct kl_ptimer {
	int fd;
	guint watch;
	bool armed;
	kl_bh_fn fn;
	void *opaque;
};

static bool ptimer_ready(int fd, GIOCondition cond, void *opaque)
{
	struct kl_ptimer *t = opaque;
	uint64_t n;
	(void)cond;
	if (read(fd, &n, sizeof(n)) != sizeof(n))
		return true;    /* disarmed meanwhile (EAGAIN) */
	t->armed = false;
	t->fn(t->opaque);
	return true;
}

struct kl_ptimer *kl_ptimer_new(kl_bh_fn fn, void *opaque)
{
	struct kl_ptimer *t = g_new0(struct kl_ptimer, 1);
	t->fn = fn;
	t->opaque = opaque;
	t->fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	if (t->fd < 0) {
		fprintf(stderr, "kvmlite: timerfd_create: %s\n", strerror(errno));
		g_free(t);
		return NULL;
	}
	t->watch = kl_fd_add(t->fd, G_IO_IN, ptimer_ready, t);
	return t;
}

void kl_ptimer_arm_ns(struct kl_ptimer *t, uint64_t delay_ns)
{
	struct itimerspec its = { 0 };
	if (delay_ns == 0)
		delay_ns = 1;   /* 0 would disarm */
	its.it_value.tv_sec = (time_t)(delay_ns / 1000000000ull);
	its.it_value.tv_nsec = (long)(delay_ns % 1000000000ull);
	t->armed = true;
	if (timerfd_settime(t->fd, 0, &its, NULL) < 0) {
		t->armed = false;
		kl_bh_schedule(t->fn, t->opaque);   /* cannot wait: run soon */
	}
}

void kl_ptimer_cancel(struct kl_ptimer *t)
{
	struct itimerspec its = { 0 };
	timerfd_settime(t->fd, 0, &its, NULL);
	t->armed = false;
}

bool kl_ptimer_armed(const struct kl_ptimer *t)
{
	return t->armed;
}

void kl_ptimer_free(struct kl_ptimer *t)
{
	if (!t)
		return;
	kl_source_remove(t->watch);
	close(t->fd);
	g_free(t);
}
