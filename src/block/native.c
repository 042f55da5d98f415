/* aio=native: Linux AIO (libaio).  Every iocb carries IOCB_FLAG_RESFD with
 * the device eventfd; completions are reaped with io_getevents() on the
 * main loop.  FLUSH uses IOCB_CMD_FDSYNC (or the thread pool if the kernel
 * or file system refuses it); DISCARD/WRITE_ZEROES (fallocate) go to the
 * thread pool.  Requests beyond the AIO context size or refused with
 * EAGAIN wait on a list; submissions made while completions are processed
 * are batched into one io_submit(). */
#include "block_int.h"

#include <errno.h>
#include <glib.h>
#include <string.h>

#define NATIVE_DEPTH 256
#define NATIVE_POOL_THREADS 4

struct native {
	io_context_t ctx;
	unsigned inflight;               /* iocbs owned by the kernel */
	struct kl_blk_req *pend, **pend_tail;
	bool no_fdsync;
	unsigned npend;                  /* length of pend */
	struct iocb *iocbs[NATIVE_DEPTH];
	/* events taken from the kernel, [ev_next, ev_n) not handled yet: a
	 * handler may poll again, nested (kl_bfile_wait_span), and then takes
	 * these first */
	struct io_event ev[NATIVE_DEPTH];
	unsigned ev_next, ev_n;
};

static int native_init(struct kl_bfile *bf, char **err)
{
	struct native *n = g_new0(struct native, 1);
	int r = io_setup(NATIVE_DEPTH, &n->ctx);
	if (r < 0) {
		*err = g_strdup_printf("aio=native: io_setup failed: %s", g_strerror(-r));
		g_free(n);
		return -1;
	}
	n->pend_tail = &n->pend;
	bf->engine_state = n;
	bf->pool = kl_tpool_new(bf, NATIVE_POOL_THREADS, err);
	if (!bf->pool) {
		io_destroy(n->ctx);
		g_free(n);
		bf->engine_state = NULL;
		return -1;
	}
	return 0;
}

static void native_flush_batch(struct kl_bfile *bf)
{
	struct native *n = bf->engine_state;

	while (n->pend && n->inflight < NATIVE_DEPTH) {
		unsigned cnt = 0;
		for (struct kl_blk_req *r = n->pend;
		     r && n->inflight + cnt < NATIVE_DEPTH; r = r->next)
			n->iocbs[cnt++] = &r->iocb;
		int got = io_submit(n->ctx, (long)cnt, n->iocbs);
		if (got == -EINTR)
			continue;
		if (got < 0) {
			struct kl_blk_req *r = n->pend;
			if (got == -EAGAIN && n->inflight)
				return; /* retried when something completes */
			n->pend = r->next;
			n->npend--;
			if (!n->pend)
				n->pend_tail = &n->pend;
			if (r->eop == KL_EOP_FLUSH && got == -EINVAL && !n->no_fdsync) {
				n->no_fdsync = true; /* no IOCB_CMD_FDSYNC here */
				r->via_pool = true;
				kl_tpool_submit(bf->pool, r);
				continue;
			}
			/* Fail this one request, from the completion handler. */
			r->via_pool = true;
			r->ret = got;
			r->next = NULL;
			*bf->deferred_tail = r;
			bf->deferred_tail = &r->next;
			kl_blk_kick(bf);
			continue;
		}
		for (int i = 0; i < got; i++) {
			n->pend = n->pend->next;
			n->npend--;
			n->inflight++;
		}
		if (!n->pend)
			n->pend_tail = &n->pend;
		if ((unsigned)got < cnt)
			return; /* queue full: the rest waits for completions */
	}
}

static void native_submit(struct kl_bfile *bf, struct kl_blk_req *r)
{
	struct native *n = bf->engine_state;

	r->via_pool = false;
	switch (r->eop) {
	case KL_EOP_READ:
		io_prep_preadv(&r->iocb, bf->fd, r->eiov, r->eiovcnt, (long long)r->eoff);
		break;
	case KL_EOP_WRITE:
		io_prep_pwritev(&r->iocb, bf->fd, r->eiov, r->eiovcnt, (long long)r->eoff);
		break;
	case KL_EOP_FLUSH:
		if (!n->no_fdsync) {
			io_prep_fdsync(&r->iocb, bf->fd);
			break;
		}
		/* fall through */
	default:
		r->via_pool = true;
		kl_tpool_submit(bf->pool, r);
		return;
	}
	io_set_eventfd(&r->iocb, bf->efd);
	r->iocb.data = r;
	r->next = NULL;
	*n->pend_tail = r;
	n->pend_tail = &r->next;
	if (++n->npend >= bf->max_batch || !bf->in_poll)
		native_flush_batch(bf);
}

/* Each event is consumed before it is handled: a nested poll goes on
 * from the next one, and the outer loop then finds them all handled. */
static void handle_events(struct native *n)
{
	while (n->ev_next < n->ev_n) {
		struct io_event *e = &n->ev[n->ev_next++];
		n->inflight--;
		kl_blk_io_done(e->data, (long)e->res);
	}
}

static void native_poll(struct kl_bfile *bf)
{
	struct native *n = bf->engine_state;
	struct timespec zero = { 0, 0 };
	int got;

	handle_events(n);
	do {
		got = io_getevents(n->ctx, 0, NATIVE_DEPTH, n->ev, &zero);
		n->ev_next = 0;
		n->ev_n = got > 0 ? (unsigned)got : 0;
		handle_events(n);
	} while (got == NATIVE_DEPTH || got == -EINTR);
}

/* The kernel's completion ring, mapped at the io_context_t address. */
struct aio_ring {
	unsigned id, nr, head, tail, magic, compat_features, incompat_features, header_length;
};
#define AIO_RING_MAGIC 0xa10a10a1

static bool native_has_completions(struct kl_bfile *bf)
{
	struct native *n = bf->engine_state;
	struct aio_ring *ring = (struct aio_ring *)n->ctx;
	if (ring->magic != AIO_RING_MAGIC)
		return false; /* layout unknown: rely on the eventfd */
	return __atomic_load_n(&ring->head, __ATOMIC_ACQUIRE) !=
	       __atomic_load_n(&ring->tail, __ATOMIC_ACQUIRE);
}

static void native_fini(struct kl_bfile *bf)
{
	struct native *n = bf->engine_state;
	io_destroy(n->ctx);
	g_free(n);
	bf->engine_state = NULL;
}

const struct kl_blk_engine_ops kl_blk_native_ops = {
	.name = "native",
	.init = native_init,
	.submit = native_submit,
	.poll = native_poll,
	.flush_batch = native_flush_batch,
	.has_completions = native_has_completions,
	.fini = native_fini,
};
