/* aio=threads: a pool of worker threads doing preadv/pwritev/fdatasync/
 * fallocate.  Finished requests go on a list and the device eventfd is
 * signalled; the main loop hands them to kl_blk_io_done().  The pool is
 * also used by aio=native for what libaio cannot do (fallocate).
 *
 * Wake-ups and locks (bench/README.md, "aio=threads"): no mutex.  The main
 * loop is the only producer of a ring of queued requests that the workers
 * take from with a compare-and-swap; a worker that finishes a request takes
 * the next queued one without sleeping and sleeps (on one futex word shared
 * by the pool, FUTEX_WAIT) only when the ring is empty.  After filling the
 * ring the main loop wakes, with one FUTEX_WAKE per batch, at most as many
 * sleepers as there are queued requests (none when no worker sleeps).
 * Completions go on a lock-free stack and only the push onto an empty
 * stack signals the eventfd, so one main-loop wake-up collects many
 * completions -- and not even that push while the main loop is draining
 * completions (bf->draining, file.c's process(): it looks at the stack
 * again after it clears the flag).  A worker that finds the ring empty
 * right after finishing a request calls sched_yield() once before it
 * sleeps: with more workers than CPUs, the main loop its completion woke
 * usually runs in that slot and refills the ring (bench/README.md,
 * "sched_yield").  Nothing spins: an idle pool sleeps. */
#include "block_int.h"
#include "kvmlite/seccomp.h"

#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <limits.h>
#include <sched.h>
#include <linux/futex.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#define TPOOL_RING 1024 /* queued requests; more wait in the main loop's batch */

struct kl_tpool {
	struct kl_bfile *bf;
	/* ring: slots [head, tail) are queued; tail written by the main loop
	 * only, head advanced by the workers (CAS) */
	struct kl_blk_req *ring[TPOOL_RING];
	uint64_t head __attribute__((aligned(64)));
	uint64_t tail __attribute__((aligned(64)));
	uint32_t seq __attribute__((aligned(64))); /* futex word: bumped to wake */
	unsigned nwait;                 /* workers in (or about to enter) FUTEX_WAIT */
	bool stop;
	struct kl_blk_req *done __attribute__((aligned(64))); /* finished (lock-free stack) */
	struct kl_blk_req *batch, **batch_tail; /* main loop: to hand over at once */
	/* main loop: taken from done, not handled yet, in finishing order (a
	 * handler may poll again, nested: kl_bfile_wait_span) */
	struct kl_blk_req *taken;
	unsigned nbatch;
	unsigned n;
	pthread_t *th;
};

long kl_blk_do_sync(struct kl_bfile *bf, struct kl_blk_req *r)
{
	long ret;
	do {
		switch (r->eop) {
		case KL_EOP_READ:
			ret = preadv(bf->fd, r->eiov, r->eiovcnt, (off_t)r->eoff);
			break;
		case KL_EOP_WRITE:
			ret = pwritev(bf->fd, r->eiov, r->eiovcnt, (off_t)r->eoff);
			break;
		case KL_EOP_FLUSH:
			ret = fdatasync(bf->fd);
			break;
		case KL_EOP_FALLOC:
			ret = fallocate(bf->fd, r->falloc_mode, (off_t)r->eoff, (off_t)r->elen);
			break;
		default:
			errno = EINVAL;
			ret = -1;
		}
	} while (ret < 0 && errno == EINTR);
	return ret < 0 ? -errno : ret;
}

static void futex_wait(uint32_t *addr, uint32_t val)
{
	/* EAGAIN (the word changed), EINTR and wakeups all return to the
	 * caller's loop, which looks at the ring again. */
	syscall(SYS_futex, addr, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static void futex_wake(uint32_t *addr, int n)
{
	syscall(SYS_futex, addr, FUTEX_WAKE_PRIVATE, n, NULL, NULL, 0);
}

static bool ring_empty(struct kl_tpool *p)
{
	return __atomic_load_n(&p->head, __ATOMIC_SEQ_CST) ==
	       __atomic_load_n(&p->tail, __ATOMIC_SEQ_CST);
}

/* Any worker: take the oldest queued request, or NULL. */
static struct kl_blk_req *ring_take(struct kl_tpool *p)
{
	uint64_t h = __atomic_load_n(&p->head, __ATOMIC_ACQUIRE);
	for (;;) {
		if (h == __atomic_load_n(&p->tail, __ATOMIC_ACQUIRE))
			return NULL;
		/* The slot is not reused before head passes h (the producer
		 * checks), and a failed CAS discards what was read. */
		struct kl_blk_req *r = __atomic_load_n(&p->ring[h % TPOOL_RING], __ATOMIC_RELAXED);
		if (__atomic_compare_exchange_n(&p->head, &h, h + 1, false,
						__ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
			return r;
	}
}

static void push_done(struct kl_tpool *p, struct kl_blk_req *r)
{
	/* The main loop reads the eventfd before taking the stack, so only
	 * the push onto an empty stack needs a wakeup. */
	struct kl_blk_req *head = __atomic_load_n(&p->done, __ATOMIC_RELAXED);
	do {
		r->next = head;
	} while (!__atomic_compare_exchange_n(&p->done, &head, r, true,
					      __ATOMIC_RELEASE, __ATOMIC_RELAXED));
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (!head && !__atomic_load_n(&p->bf->draining, __ATOMIC_SEQ_CST))
		kl_blk_kick(p->bf);
}

static void *worker(void *opaque)
{
	struct kl_tpool *p = opaque;
	bool just_finished = false; /* our last look found a request */

	kl_sandbox_thread_start(KL_THREAD_IO); /* docs/sandbox.md */
	for (;;) {
		struct kl_blk_req *r = ring_take(p);
		if (r) {
			r->ret = kl_blk_do_sync(p->bf, r);
			push_done(p, r);
			just_finished = true;
			continue;
		}
		/* The ring is empty just after our request finished: give the
		 * CPU away once first.  The main loop, woken by the completion,
		 * usually runs then and queues the next request, which we take
		 * without the FUTEX_WAIT/FUTEX_WAKE round trip (top of file). */
		if (just_finished) {
			just_finished = false;
			sched_yield();
			continue;
		}
		if (__atomic_load_n(&p->stop, __ATOMIC_ACQUIRE))
			break;
		/* Read the word, announce the wait, look again: a producer
		 * that fills the ring after our look sees nwait and bumps the
		 * word, so FUTEX_WAIT returns at once. */
		uint32_t s = __atomic_load_n(&p->seq, __ATOMIC_ACQUIRE);
		__atomic_add_fetch(&p->nwait, 1, __ATOMIC_SEQ_CST);
		if (ring_empty(p) && !__atomic_load_n(&p->stop, __ATOMIC_SEQ_CST))
			futex_wait(&p->seq, s);
		__atomic_sub_fetch(&p->nwait, 1, __ATOMIC_SEQ_CST);
	}
	kl_sandbox_thread_end();
	return NULL;
}

struct kl_tpool *kl_tpool_new(struct kl_bfile *bf, unsigned nthreads, char **err)
{
	struct kl_tpool *p = g_new0(struct kl_tpool, 1);
	p->bf = bf;
	p->batch_tail = &p->batch;
	p->th = g_new0(pthread_t, nthreads);
	for (unsigned i = 0; i < nthreads; i++) {
		int e = pthread_create(&p->th[i], NULL, worker, p);
		if (e) {
			*err = g_strdup_printf("cannot create I/O worker thread: %s", g_strerror(e));
			kl_tpool_free(p);
			return NULL;
		}
		p->n++;
	}
	return p;
}

/* Main loop: move the batch into the ring (what does not fit stays in the
 * batch for the next flush, after completions), then wake the sleepers
 * the queue needs (see the top of the file). */
static void tpool_flush(struct kl_tpool *p)
{
	if (!p->batch)
		return;
	uint64_t t = p->tail;
	uint64_t h = __atomic_load_n(&p->head, __ATOMIC_ACQUIRE);
	while (p->batch && t - h < TPOOL_RING) {
		struct kl_blk_req *r = p->batch;
		p->batch = r->next;
		p->nbatch--;
		__atomic_store_n(&p->ring[t % TPOOL_RING], r, __ATOMIC_RELAXED);
		t++;
	}
	if (!p->batch)
		p->batch_tail = &p->batch;
	__atomic_store_n(&p->tail, t, __ATOMIC_RELEASE);
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	unsigned nwait = __atomic_load_n(&p->nwait, __ATOMIC_SEQ_CST);
	if (!nwait)
		return;
	uint64_t queued = t - __atomic_load_n(&p->head, __ATOMIC_ACQUIRE);
	if (!queued)
		return; /* awake workers took it all meanwhile */
	__atomic_add_fetch(&p->seq, 1, __ATOMIC_RELEASE);
	futex_wake(&p->seq, queued < nwait ? (int)queued : (int)nwait);
}

void kl_tpool_submit(struct kl_tpool *p, struct kl_blk_req *r)
{
	r->next = NULL;
	*p->batch_tail = r;
	p->batch_tail = &r->next;
	if (++p->nbatch >= p->bf->max_batch || !p->bf->in_poll)
		tpool_flush(p);
}

void kl_tpool_poll(struct kl_tpool *p)
{
	if (!p->taken) {
		struct kl_blk_req *list = __atomic_exchange_n(&p->done, NULL, __ATOMIC_ACQUIRE);
		/* The stack is newest first: reverse it to complete in finishing order. */
		while (list) {
			struct kl_blk_req *r = list;
			list = r->next;
			r->next = p->taken;
			p->taken = r;
		}
	}
	while (p->taken) {
		struct kl_blk_req *r = p->taken;
		p->taken = r->next;
		kl_blk_io_done(r, r->ret);
	}
}

bool kl_tpool_has_done(struct kl_tpool *p)
{
	return p->taken || __atomic_load_n(&p->done, __ATOMIC_RELAXED) != NULL;
}

/* After a completion run (bf->in_poll cleared): start what it submitted. */
void kl_tpool_flush(struct kl_tpool *p)
{
	tpool_flush(p);
}

void kl_tpool_free(struct kl_tpool *p)
{
	/* Called with the queue drained: every worker ends once it finds the
	 * ring empty with stop set. */
	__atomic_store_n(&p->stop, true, __ATOMIC_SEQ_CST);
	__atomic_add_fetch(&p->seq, 1, __ATOMIC_SEQ_CST);
	futex_wake(&p->seq, INT_MAX);
	for (unsigned i = 0; i < p->n; i++)
		pthread_join(p->th[i], NULL);
	g_free(p->th);
	g_free(p);
}

static int threads_init(struct kl_bfile *bf, char **err)
{
	bf->pool = kl_tpool_new(bf, kl_blk_pool_size(), err);
	return bf->pool ? 0 : -1;
}

static void threads_submit(struct kl_bfile *bf, struct kl_blk_req *r)
{
	kl_tpool_submit(bf->pool, r);
}

static void threads_fini(struct kl_bfile *bf)
{
	(void)bf; /* the pool is freed by kl_bfile_close() */
}

const struct kl_blk_engine_ops kl_blk_threads_ops = {
	.name = "threads",
	.init = threads_init,
	.submit = threads_submit,
	.fini = threads_fini,
};
