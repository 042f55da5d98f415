/* aio=threads: a pool of worker threads doing preadv/pwritev/fdatasync/
 * fallocate.  Finished requests go on a list and the device eventfd is
 * signalled; the main loop hands them to kl_blk_io_done().  The pool is
 * also used by aio=native for what libaio cannot do (fallocate). */
#include "block_int.h"
#include "kvmlite/seccomp.h"

#include <errno.h>
#include <fcntl.h>
#include <glib.h>
#include <semaphore.h>
#include <string.h>
#include <unistd.h>

struct kl_tpool {
	struct kl_bfile *bf;
	pthread_mutex_t lock;           /* protects q */
	sem_t sem;                      /* one post per queued request (or stop) */
	struct kl_blk_req *q, **q_tail; /* waiting for a worker */
	bool stop;
	struct kl_blk_req *done;        /* finished (lock-free stack) */
	struct kl_blk_req *batch, **batch_tail; /* main loop: to hand over at once */
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

static void *worker(void *opaque)
{
	struct kl_tpool *p = opaque;

	kl_sandbox_thread_start(KL_THREAD_IO); /* docs/sandbox.md */
	for (;;) {
		while (sem_wait(&p->sem) < 0)
			;
		pthread_mutex_lock(&p->lock);
		struct kl_blk_req *r = p->q;
		if (r) {
			p->q = r->next;
			if (!p->q)
				p->q_tail = &p->q;
		}
		pthread_mutex_unlock(&p->lock);
		if (!r)
			break; /* stop: posted once per worker */

		r->ret = kl_blk_do_sync(p->bf, r);

		/* Push on the done stack; the main loop reads the eventfd
		 * before taking the stack, so only the push onto an empty
		 * stack needs a wakeup. */
		struct kl_blk_req *head = __atomic_load_n(&p->done, __ATOMIC_RELAXED);
		do {
			r->next = head;
		} while (!__atomic_compare_exchange_n(&p->done, &head, r, true,
						      __ATOMIC_RELEASE, __ATOMIC_RELAXED));
		if (!head)
			kl_blk_kick(p->bf);
	}
	kl_sandbox_thread_end();
	return NULL;
}

struct kl_tpool *kl_tpool_new(struct kl_bfile *bf, unsigned nthreads, char **err)
{
	struct kl_tpool *p = g_new0(struct kl_tpool, 1);
	p->bf = bf;
	p->q_tail = &p->q;
	p->batch_tail = &p->batch;
	pthread_mutex_init(&p->lock, NULL);
	sem_init(&p->sem, 0, 0);
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

/* Hand the batch to the workers under one lock; wake as many as needed. */
static void tpool_flush(struct kl_tpool *p)
{
	if (!p->batch)
		return;
	pthread_mutex_lock(&p->lock);
	*p->q_tail = p->batch;
	p->q_tail = p->batch_tail;
	pthread_mutex_unlock(&p->lock);
	for (unsigned i = 0; i < p->nbatch; i++)
		sem_post(&p->sem);
	p->batch = NULL;
	p->batch_tail = &p->batch;
	p->nbatch = 0;
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
	struct kl_blk_req *list = __atomic_exchange_n(&p->done, NULL, __ATOMIC_ACQUIRE);

	/* The stack is newest first: reverse it to complete in finishing order. */
	struct kl_blk_req *rev = NULL;
	while (list) {
		struct kl_blk_req *r = list;
		list = r->next;
		r->next = rev;
		rev = r;
	}
	while (rev) {
		struct kl_blk_req *r = rev;
		rev = r->next;
		kl_blk_io_done(r, r->ret);
	}
}

bool kl_tpool_has_done(struct kl_tpool *p)
{
	return __atomic_load_n(&p->done, __ATOMIC_RELAXED) != NULL;
}

/* After a completion run (bf->in_poll cleared): start what it submitted. */
void kl_tpool_flush(struct kl_tpool *p)
{
	tpool_flush(p);
}

void kl_tpool_free(struct kl_tpool *p)
{
	/* Called with the queue drained: each worker wakes to an empty queue. */
	for (unsigned i = 0; i < p->n; i++)
		sem_post(&p->sem);
	for (unsigned i = 0; i < p->n; i++)
		pthread_join(p->th[i], NULL);
	pthread_mutex_destroy(&p->lock);
	sem_destroy(&p->sem);
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
