/* Main event loop, BQL, bottom halves: see include/kvmlite/loop.h. */
#include "kvmlite/loop.h"

#include <glib-unix.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

static GMainContext *ctx;
static GMainLoop *main_loop;
static GMutex bql;
static __thread bool bql_held;
static pthread_t main_thread;
static bool main_thread_set;

void kl_lock(void)
{
	if (bql_held) {
		fprintf(stderr, "kvmlite: BUG: recursive BQL\n");
		abort();
	}
	g_mutex_lock(&bql);
	bql_held = true;
}

void kl_unlock(void)
{
	if (!bql_held) {
		fprintf(stderr, "kvmlite: BUG: BQL unlock without lock\n");
		abort();
	}
	bql_held = false;
	g_mutex_unlock(&bql);
}

bool kl_locked(void)
{
	return bql_held;
}

void kl_cond_wait(GCond *cond)
{
	bql_held = false;
	g_cond_wait(cond, &bql);
	bql_held = true;
}

/* Release the BQL while the main loop sleeps in poll(). */
static gint locked_poll(GPollFD *fds, guint nfds, gint timeout)
{
	bool held = bql_held;
	if (held)
		kl_unlock();
	gint r = g_poll(fds, nfds, timeout);
	if (held)
		kl_lock();
	return r;
}

void kl_loop_init(void)
{
	if (ctx)
		return;
	ctx = g_main_context_new();
	g_main_context_set_poll_func(ctx, locked_poll);
	main_loop = g_main_loop_new(ctx, FALSE);
	main_thread = pthread_self();
	main_thread_set = true;
	kl_lock();
}

GMainContext *kl_loop_context(void)
{
	return ctx;
}

void kl_loop_run(void)
{
	main_thread = pthread_self();
	main_thread_set = true;
	g_main_context_push_thread_default(ctx);
	g_main_loop_run(main_loop);
	g_main_context_pop_thread_default(ctx);
}

void kl_loop_quit(void)
{
	g_main_loop_quit(main_loop);
	g_main_context_wakeup(ctx);
}

bool kl_loop_is_main_thread(void)
{
	return main_thread_set && pthread_equal(main_thread, pthread_self());
}

struct bh {
	kl_bh_fn fn;
	void *opaque;
};

static gboolean bh_dispatch(gpointer p)
{
	struct bh *b = p;
	b->fn(b->opaque);
	return G_SOURCE_REMOVE;
}

void kl_bh_schedule(kl_bh_fn fn, void *opaque)
{
	struct bh *b = g_new(struct bh, 1);
	b->fn = fn;
	b->opaque = opaque;
	GSource *s = g_idle_source_new();
	g_source_set_priority(s, G_PRIORITY_DEFAULT);
	g_source_set_callback(s, bh_dispatch, b, g_free);
	g_source_attach(s, ctx);
	g_source_unref(s);
}

struct fdw {
	kl_fd_fn fn;
	void *opaque;
};

static gboolean fd_dispatch(gint fd, GIOCondition cond, gpointer p)
{
	struct fdw *w = p;
	return w->fn(fd, cond, w->opaque) ? G_SOURCE_CONTINUE : G_SOURCE_REMOVE;
}

guint kl_fd_add(int fd, GIOCondition cond, kl_fd_fn fn, void *opaque)
{
	struct fdw *w = g_new(struct fdw, 1);
	w->fn = fn;
	w->opaque = opaque;
	GSource *s = g_unix_fd_source_new(fd, cond);
	g_source_set_callback(s, (GSourceFunc)(void (*)(void))fd_dispatch, w, g_free);
	guint id = g_source_attach(s, ctx);
	g_source_unref(s);
	return id;
}

guint kl_timer_add_ms(unsigned ms, GSourceFunc fn, void *opaque)
{
	GSource *s = g_timeout_source_new(ms);
	g_source_set_callback(s, fn, opaque, NULL);
	guint id = g_source_attach(s, ctx);
	g_source_unref(s);
	return id;
}

void kl_source_remove(guint id)
{
	GSource *s = g_main_context_find_source_by_id(ctx, id);
	if (s)
		g_source_destroy(s);
}
