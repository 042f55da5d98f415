/* aio=io_uring: liburing with the device eventfd registered for completion
 * notification.  READV/WRITEV/FSYNC(DATASYNC)/FALLOCATE all go through the
 * ring.  Submissions made while completions are processed are batched into
 * one io_uring_submit(); requests that find the ring full wait on a list.
 * The ring is set up with COOP_TASKRUN where the kernel has it (below). */
#include "block_int.h"

#include <errno.h>
#include <glib.h>
#include <liburing.h>
#include <string.h>

#define URING_DEPTH 256

struct uring {
	struct io_uring ring;
	unsigned inflight;  /* submitted to the kernel */
	unsigned queued;    /* SQEs prepared, not yet submitted */
	struct kl_blk_req *pend, **pend_tail;
};

static int uring_init(struct kl_bfile *bf, char **err)
{
	struct uring *u = g_new0(struct uring, 1);
	/* COOP_TASKRUN (Linux 5.19): the task work a completion queues for
	 * this thread (e.g. when an io-wq worker finishes a request) wakes it
	 * if it sleeps but does not IPI it while it runs; it runs at our next
	 * syscall, and TASKRUN_FLAG makes io_uring_peek_cqe() enter the
	 * kernel for it (figures: bench/README.md, "COOP_TASKRUN").  Older
	 * kernels refuse the flags with EINVAL: set up without them. */
	int r = io_uring_queue_init(URING_DEPTH, &u->ring,
				    IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG);
	if (r == -EINVAL)
		r = io_uring_queue_init(URING_DEPTH, &u->ring, 0);
	if (r < 0) {
		*err = g_strdup_printf("aio=io_uring: io_uring_queue_init failed: %s",
				       g_strerror(-r));
		g_free(u);
		return -1;
	}
	r = io_uring_register_eventfd(&u->ring, bf->efd);
	if (r < 0) {
		*err = g_strdup_printf("aio=io_uring: cannot register eventfd: %s", g_strerror(-r));
		io_uring_queue_exit(&u->ring);
		g_free(u);
		return -1;
	}
	u->pend_tail = &u->pend;
	bf->engine_state = u;
	return 0;
}

static bool prep(struct kl_bfile *bf, struct uring *u, struct kl_blk_req *r)
{
	if (u->inflight + u->queued >= URING_DEPTH)
		return false;
	struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
	if (!sqe)
		return false;
	switch (r->eop) {
	case KL_EOP_READ:
		io_uring_prep_readv(sqe, bf->fd, r->eiov, (unsigned)r->eiovcnt, r->eoff);
		break;
	case KL_EOP_WRITE:
		io_uring_prep_writev(sqe, bf->fd, r->eiov, (unsigned)r->eiovcnt, r->eoff);
		break;
	case KL_EOP_FLUSH:
		io_uring_prep_fsync(sqe, bf->fd, IORING_FSYNC_DATASYNC);
		break;
	case KL_EOP_FALLOC:
		io_uring_prep_fallocate(sqe, bf->fd, r->falloc_mode, (off_t)r->eoff,
					(off_t)r->elen);
		break;
	}
	io_uring_sqe_set_data(sqe, r);
	u->queued++;
	return true;
}

static void uring_flush_batch(struct kl_bfile *bf)
{
	struct uring *u = bf->engine_state;

	while (u->pend && prep(bf, u, u->pend)) {
		u->pend = u->pend->next;
		if (!u->pend)
			u->pend_tail = &u->pend;
	}
	while (u->queued) {
		int r = io_uring_submit(&u->ring);
		if (r == -EINTR)
			continue;
		if (r < 0) {
			/* -EAGAIN/-EBUSY: retry after reaping; if nothing is in
			 * flight nothing will wake us, so kick the handler. */
			if (!u->inflight)
				kl_blk_kick(bf);
			return;
		}
		u->inflight += (unsigned)r;
		u->queued -= (unsigned)r;
		if (r == 0)
			break;
	}
}

static void uring_submit(struct kl_bfile *bf, struct kl_blk_req *r)
{
	struct uring *u = bf->engine_state;

	if (u->pend || !prep(bf, u, r)) {
		r->next = NULL;
		*u->pend_tail = r;
		u->pend_tail = &r->next;
	}
	if (!bf->in_poll || u->queued >= bf->max_batch)
		uring_flush_batch(bf);
}

static void uring_poll(struct kl_bfile *bf)
{
	struct uring *u = bf->engine_state;
	struct io_uring_cqe *cqe;

	while (io_uring_peek_cqe(&u->ring, &cqe) == 0) {
		struct kl_blk_req *r = io_uring_cqe_get_data(cqe);
		long res = cqe->res;
		io_uring_cqe_seen(&u->ring, cqe);
		u->inflight--;
		kl_blk_io_done(r, res);
	}
}

static bool uring_has_completions(struct kl_bfile *bf)
{
	struct uring *u = bf->engine_state;
	/* IORING_SQ_TASKRUN: completions wait in task work that
	 * io_uring_peek_cqe() runs by entering the kernel. */
	return io_uring_cq_ready(&u->ring) > 0 ||
	       (IO_URING_READ_ONCE(*u->ring.sq.kflags) & IORING_SQ_TASKRUN);
}

static void uring_fini(struct kl_bfile *bf)
{
	struct uring *u = bf->engine_state;
	io_uring_unregister_eventfd(&u->ring);
	io_uring_queue_exit(&u->ring);
	g_free(u);
	bf->engine_state = NULL;
}

const struct kl_blk_engine_ops kl_blk_io_uring_ops = {
	.name = "io_uring",
	.init = uring_init,
	.submit = uring_submit,
	.poll = uring_poll,
	.flush_batch = uring_flush_batch,
	.has_completions = uring_has_completions,
	.fini = uring_fini,
};
