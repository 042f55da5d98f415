/* Main event loop, big device lock (BQL) and bottom halves.
 *
 * One thread runs a GLib GMainContext (kl_loop_run).  That thread holds the
 * BQL at all times except while it sleeps in poll(), so every fd handler,
 * timer and bottom half runs with the BQL held.  vCPU threads take the BQL
 * only around device I/O handlers (bus dispatch); they never wait on a
 * back-end that belongs to the main loop.
 */
#ifndef KVMLITE_LOOP_H
#define KVMLITE_LOOP_H

#include <glib.h>
#include <stdbool.h>
#include <stdint.h>

void kl_loop_init(void);
GMainContext *kl_loop_context(void);
/* Run the loop on the calling thread (which becomes the main thread) until
 * kl_loop_quit().  Call with the BQL held (kl_loop_init takes it). */
void kl_loop_run(void);
void kl_loop_quit(void); /* any thread */
bool kl_loop_is_main_thread(void);

/* Big device lock. Recursive locking is a bug (it aborts). */
void kl_lock(void);
void kl_unlock(void);
bool kl_locked(void); /* held by the calling thread */
/* Wait on cond, releasing the BQL meanwhile (like pthread_cond_wait). */
void kl_cond_wait(GCond *cond);

/* Bottom half: run fn(opaque) once on the main loop, with the BQL held.
 * Safe from any thread, with or without the BQL. */
typedef void (*kl_bh_fn)(void *opaque);
void kl_bh_schedule(kl_bh_fn fn, void *opaque);

/* fd watch; the callback returns false to remove the watch. Runs under BQL. */
typedef bool (*kl_fd_fn)(int fd, GIOCondition cond, void *opaque);
guint kl_fd_add(int fd, GIOCondition cond, kl_fd_fn fn, void *opaque);
/* Timer: fn returns G_SOURCE_CONTINUE / G_SOURCE_REMOVE. Runs under BQL. */
guint kl_timer_add_ms(unsigned ms, GSourceFunc fn, void *opaque);
void kl_source_remove(guint id);

/* Precise one-shot timer (a timerfd on the main loop): fn(opaque) runs on
 * the main loop, BQL held, delay_ns after kl_ptimer_arm_ns (re-arming
 * replaces the previous deadline).  Create and free on the main thread;
 * arm/cancel from any thread holding the BQL.  NULL if no timerfd. */
struct kl_ptimer;
struct kl_ptimer *kl_ptimer_new(kl_bh_fn fn, void *opaque);
void kl_ptimer_arm_ns(struct kl_ptimer *t, uint64_t delay_ns);
void kl_ptimer_cancel(struct kl_ptimer *t);
bool kl_ptimer_armed(const struct kl_ptimer *t);
void kl_ptimer_free(struct kl_ptimer *t);

#endif
