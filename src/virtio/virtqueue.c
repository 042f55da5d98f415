/* Split virtqueue core: a descriptor walker that treats the guest as hostile.
 *
 * The ring is mapped once at enable time through kl_gpa_to_hva() (so every
 * later ring access is inside guest RAM); each buffer is checked with
 * kl_gpa_to_hva() when the chain is walked.  Guest-shared fields are read
 * exactly once (volatile loads) so the guest cannot change a value between
 * check and use. */
#include "kvmlite/virtio.h"
#include "kvmlite/vmstate.h"

#include <glib.h>
#include <string.h>

#define VQ_MAX_CHAIN KL_VIRTQ_MAX_SIZE /* descriptors per request, all levels */

static inline uint16_t ld16(const uint16_t *p)
{
	return __atomic_load_n(p, __ATOMIC_RELAXED);
}
static inline void st16(uint16_t *p, uint16_t v)
{
	__atomic_store_n(p, v, __ATOMIC_RELAXED);
}
static inline void st32(uint32_t *p, uint32_t v)
{
	__atomic_store_n(p, v, __ATOMIC_RELAXED);
}
static inline void mb(void) { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
static inline void rmb(void) { __atomic_thread_fence(__ATOMIC_ACQUIRE); }
static inline void wmb(void) { __atomic_thread_fence(__ATOMIC_RELEASE); }

const char *kl_vq_strerror(int err)
{
	switch (err) {
	case KL_VQ_OK: return "ok";
	case KL_VQ_ERR_RING: return "ring not in guest RAM or misaligned";
	case KL_VQ_ERR_AVAIL_IDX: return "avail index ran more than the queue size ahead";
	case KL_VQ_ERR_HEAD: return "head descriptor index out of range";
	case KL_VQ_ERR_LOOP: return "descriptor chain too long (loop)";
	case KL_VQ_ERR_NEXT: return "next descriptor index out of range";
	case KL_VQ_ERR_INDIRECT: return "invalid indirect descriptor table";
	case KL_VQ_ERR_BUF: return "buffer outside guest RAM";
	case KL_VQ_ERR_ORDER: return "device-readable descriptor after a device-writable one";
	case KL_VQ_ERR_LEN: return "chain length overflows 32 bits";
	case KL_VQ_ERR_INDIRECT_FEAT: return "indirect descriptor without VIRTIO_F_INDIRECT_DESC";
	default: return "unknown error";
	}
}

void kl_virtq_init(struct kl_virtq *vq, const struct kl_guest_mem *mem, uint16_t index,
		   uint16_t max_size)
{
	memset(vq, 0, sizeof(*vq));
	vq->mem = mem;
	vq->index = index;
	vq->max_size = max_size;
	kl_virtq_reset(vq);
}

void kl_virtq_reset(struct kl_virtq *vq)
{
	vq->size = vq->max_size;
	vq->enabled = false;
	vq->desc_gpa = vq->avail_gpa = vq->used_gpa = 0;
	vq->msix_vector = KL_VIRTIO_NO_VECTOR;
	vq->event_idx = vq->indirect = false;
	vq->desc = NULL;
	vq->avail = vq->used = NULL;
	vq->last_avail = vq->used_idx = 0;
	vq->signalled_used = 0;
	vq->signalled_used_valid = false;
	vq->inflight = 0;
	vq->gen++;
}

int kl_virtq_enable(struct kl_virtq *vq)
{
	uint64_t n = vq->size;
	if (n == 0 || (n & (n - 1)) || n > vq->max_size || (vq->desc_gpa & 15) ||
	    (vq->avail_gpa & 1) || (vq->used_gpa & 3))
		return KL_VQ_ERR_RING;
	void *d = kl_gpa_to_hva(vq->mem, vq->desc_gpa, 16 * n);
	void *a = kl_gpa_to_hva(vq->mem, vq->avail_gpa, 6 + 2 * n);
	void *u = kl_gpa_to_hva(vq->mem, vq->used_gpa, 6 + 8 * n);
	if (!d || !a || !u)
		return KL_VQ_ERR_RING;
	vq->desc = d;
	vq->avail = a;
	vq->used = u;
	vq->last_avail = 0;
	vq->used_idx = 0;
	vq->signalled_used_valid = false;
	vq->inflight = 0;
	vq->enabled = true;
	return 0;
}

bool kl_virtq_has_avail(struct kl_virtq *vq)
{
	if (!vq->enabled)
		return false;
	return ld16(&vq->avail[1]) != vq->last_avail;
}

/* Read one descriptor from a table in guest memory, once.  Indirect tables
 * need not be 16-byte aligned (Linux kmallocs them: 8-byte alignment), so
 * copy bytewise-safe instead of dereferencing a possibly misaligned struct. */
static void desc_load(const void *t, unsigned i, struct kl_vring_desc *out)
{
	memcpy(out, (const uint8_t *)t + 16 * (size_t)i, sizeof(*out));
	__atomic_signal_fence(__ATOMIC_SEQ_CST); /* the copy is the only read */
}

struct walk {
	struct iovec *iov;
	unsigned n;          /* entries used */
	unsigned cap;
	bool heap;
	unsigned out, in;
	uint64_t out_len, in_len;
	unsigned count;      /* descriptors visited, all levels */
};

static int add_buf(struct kl_virtq *vq, struct walk *w, const struct kl_vring_desc *d)
{
	bool wr = d->flags & KL_VRING_DESC_F_WRITE;
	if (!wr && w->in)
		return KL_VQ_ERR_ORDER;
	uint64_t total = w->out_len + w->in_len + d->len;
	if (total > UINT32_MAX)
		return KL_VQ_ERR_LEN;
	if (d->len == 0)
		return 0; /* nothing to map; harmless */
	void *p = kl_gpa_to_hva(vq->mem, d->addr, d->len);
	if (!p)
		return KL_VQ_ERR_BUF;
	if (w->n == w->cap) {
		unsigned ncap = w->cap * 2;
		if (w->heap) {
			w->iov = g_renew(struct iovec, w->iov, ncap);
		} else {
			struct iovec *h = g_new(struct iovec, ncap);
			memcpy(h, w->iov, w->n * sizeof(*h));
			w->iov = h;
			w->heap = true;
		}
		w->cap = ncap;
	}
	w->iov[w->n].iov_base = p;
	w->iov[w->n].iov_len = d->len;
	w->n++;
	if (wr) {
		w->in++;
		w->in_len += d->len;
	} else {
		w->out++;
		w->out_len += d->len;
	}
	return 0;
}

static int walk_indirect(struct kl_virtq *vq, struct walk *w, const struct kl_vring_desc *id)
{
	if (!vq->indirect)
		return KL_VQ_ERR_INDIRECT_FEAT;
	/* no alignment requirement for indirect tables (virtio 1.x 2.7.5.3) */
	if (id->len == 0 || (id->len % 16) || id->len / 16 > KL_VIRTQ_MAX_SIZE ||
	    (id->flags & KL_VRING_DESC_F_NEXT))
		return KL_VQ_ERR_INDIRECT;
	unsigned n = id->len / 16;
	const void *t = kl_gpa_to_hva(vq->mem, id->addr, id->len);
	if (!t)
		return KL_VQ_ERR_INDIRECT;
	unsigned i = 0;
	for (;;) {
		if (++w->count > VQ_MAX_CHAIN)
			return KL_VQ_ERR_LOOP;
		struct kl_vring_desc d;
		desc_load(t, i, &d);
		if (d.flags & KL_VRING_DESC_F_INDIRECT)
			return KL_VQ_ERR_INDIRECT; /* nested */
		int r = add_buf(vq, w, &d);
		if (r)
			return r;
		if (!(d.flags & KL_VRING_DESC_F_NEXT))
			return 0;
		if (d.next >= n)
			return KL_VQ_ERR_NEXT;
		i = d.next;
	}
}

int kl_virtq_pop(struct kl_virtq *vq, struct kl_vq_elem **out)
{
	*out = NULL;
	if (!vq->enabled)
		return 0;
	uint16_t avail_idx = ld16(&vq->avail[1]);
	uint16_t navail = avail_idx - vq->last_avail;
	if (navail > vq->size)
		return KL_VQ_ERR_AVAIL_IDX;
	if (navail == 0)
		return 0;
	rmb(); /* read ring entries after the index */
	uint16_t head = ld16(&vq->avail[2 + (vq->last_avail & (vq->size - 1))]);
	if (head >= vq->size)
		return KL_VQ_ERR_HEAD;

	struct iovec stack_iov[32];
	struct walk w = { .iov = stack_iov, .cap = 32 };
	unsigned i = head, chain = 0;
	int r = 0;
	for (;;) {
		if (++chain > vq->size) {
			r = KL_VQ_ERR_LOOP;
			break;
		}
		struct kl_vring_desc d;
		desc_load(vq->desc, i, &d);
		if (d.flags & KL_VRING_DESC_F_INDIRECT) {
			/* the indirect descriptor must be the only one in the chain */
			if (chain != 1 || (d.flags & KL_VRING_DESC_F_NEXT)) {
				r = KL_VQ_ERR_INDIRECT;
				break;
			}
			r = walk_indirect(vq, &w, &d);
			break;
		}
		if (++w.count > VQ_MAX_CHAIN) {
			r = KL_VQ_ERR_LOOP;
			break;
		}
		r = add_buf(vq, &w, &d);
		if (r || !(d.flags & KL_VRING_DESC_F_NEXT))
			break;
		if (d.next >= vq->size) {
			r = KL_VQ_ERR_NEXT;
			break;
		}
		i = d.next;
	}
	if (r) {
		if (w.heap)
			g_free(w.iov);
		return r;
	}
	struct kl_vq_elem *e = g_malloc(sizeof(*e) + w.n * sizeof(struct iovec));
	e->head = head;
	e->out_num = w.out;
	e->in_num = w.in;
	e->out_len = w.out_len;
	e->in_len = w.in_len;
	e->gen = vq->gen;
	e->priv = NULL;
	memcpy(e->iov, w.iov, w.n * sizeof(struct iovec));
	if (w.heap)
		g_free(w.iov);
	vq->last_avail++;
	vq->inflight++;
	if (vq->event_idx) {
		/* avail_event: tell the driver how far we have read */
		st16(&vq->used[2 + 4 * vq->size], vq->last_avail);
	}
	*out = e;
	return 1;
}

bool kl_virtq_push(struct kl_virtq *vq, const struct kl_vq_elem *elem, uint32_t len)
{
	if (!vq->enabled || elem->gen != vq->gen)
		return false;
	uint32_t *ring = (uint32_t *)&vq->used[2];
	unsigned slot = vq->used_idx & (vq->size - 1);
	st32(&ring[2 * slot], elem->head);
	st32(&ring[2 * slot + 1], len);
	wmb(); /* entry before index */
	vq->used_idx++;
	st16(&vq->used[1], vq->used_idx);
	if (vq->inflight)
		vq->inflight--;
	if (vq->mem->dirty_fn) {
		/* a live migration must send what the device wrote again */
		for (unsigned i = 0; i < elem->in_num; i++)
			kl_mem_mark_dirty_hva(vq->mem, elem->iov[elem->out_num + i].iov_base,
					      elem->iov[elem->out_num + i].iov_len);
		kl_mem_mark_dirty(vq->mem, vq->used_gpa, 6 + 8 * (uint64_t)vq->size);
	}
	return true;
}

bool kl_virtq_should_notify(struct kl_virtq *vq)
{
	if (!vq->enabled)
		return false;
	mb(); /* used idx visible before reading the driver's suppression */
	if (!vq->event_idx)
		return !(ld16(&vq->avail[0]) & KL_VRING_AVAIL_F_NO_INTERRUPT);
	uint16_t old = vq->signalled_used, new = vq->used_idx;
	bool valid = vq->signalled_used_valid;
	vq->signalled_used = new;
	vq->signalled_used_valid = true;
	if (!valid)
		return true;
	uint16_t used_event = ld16(&vq->avail[2 + vq->size]);
	/* vring_need_event(): event index crossed in (old, new] */
	return (uint16_t)(new - used_event - 1) < (uint16_t)(new - old);
}

bool kl_virtq_set_notification(struct kl_virtq *vq, bool enable)
{
	if (!vq->enabled)
		return false;
	if (vq->event_idx) {
		if (enable)
			st16(&vq->used[2 + 4 * vq->size], vq->last_avail);
	} else {
		uint16_t f = ld16(&vq->used[0]);
		st16(&vq->used[0], enable ? f & ~KL_VRING_USED_F_NO_NOTIFY
					  : f | KL_VRING_USED_F_NO_NOTIFY);
	}
	kl_mem_mark_dirty(vq->mem, vq->used_gpa, 6 + 8 * (uint64_t)vq->size);
	if (!enable)
		return false;
	mb(); /* publish before re-checking avail */
	return kl_virtq_has_avail(vq);
}

/* ---------------- iov helpers ---------------- */

/* ---------------- VM state (kvmlite/vmstate.h) ---------------- */

void kl_virtq_unpop(struct kl_virtq *vq, unsigned n)
{
	if (n > vq->inflight)
		n = vq->inflight;
	vq->last_avail -= n;
	vq->inflight -= n;
}

void kl_virtq_save(const struct kl_virtq *vq, struct kl_vms_out *out)
{
	kl_vms_put_u16(out, vq->size);
	kl_vms_put_u8(out, vq->enabled);
	kl_vms_put_u64(out, vq->desc_gpa);
	kl_vms_put_u64(out, vq->avail_gpa);
	kl_vms_put_u64(out, vq->used_gpa);
	kl_vms_put_u16(out, vq->msix_vector);
	kl_vms_put_u8(out, vq->event_idx);
	kl_vms_put_u8(out, vq->indirect);
	kl_vms_put_u16(out, vq->last_avail);
	kl_vms_put_u16(out, vq->used_idx);
	kl_vms_put_u16(out, vq->signalled_used);
	kl_vms_put_u8(out, vq->signalled_used_valid);
}

static bool get_bool(struct kl_vms_in *in, unsigned q, const char *what, bool *dst)
{
	uint8_t v = kl_vms_get_u8(in);
	if (v > 1 && !kl_vms_failed(in))
		kl_vms_fail(in, "queue %u: %s %u is not 0 or 1", q, what, v);
	*dst = v == 1;
	return !kl_vms_failed(in);
}

int kl_virtq_load(struct kl_virtq *tmp, const struct kl_virtq *vq, struct kl_vms_in *in)
{
	unsigned q = vq->index;
	*tmp = *vq;
	tmp->size = kl_vms_get_u16(in);
	bool enabled;
	get_bool(in, q, "enabled", &enabled);
	tmp->desc_gpa = kl_vms_get_u64(in);
	tmp->avail_gpa = kl_vms_get_u64(in);
	tmp->used_gpa = kl_vms_get_u64(in);
	tmp->msix_vector = kl_vms_get_u16(in);
	get_bool(in, q, "event_idx", &tmp->event_idx);
	get_bool(in, q, "indirect", &tmp->indirect);
	uint16_t last_avail = kl_vms_get_u16(in);
	uint16_t used_idx = kl_vms_get_u16(in);
	uint16_t signalled = kl_vms_get_u16(in);
	bool sig_valid;
	get_bool(in, q, "signalled_used_valid", &sig_valid);
	if (kl_vms_failed(in))
		return -1;
	tmp->desc = NULL;
	tmp->avail = tmp->used = NULL;
	tmp->enabled = false;
	tmp->inflight = 0;
	tmp->last_avail = tmp->used_idx = tmp->signalled_used = 0;
	tmp->signalled_used_valid = false;
	if (!enabled)
		return 0; /* a disabled queue's registers are only used at enable */
	uint32_t n = tmp->size;
	if (n == 0 || (n & (n - 1)) || n > vq->max_size) {
		kl_vms_fail(in, "queue %u: size %u is not a power of two in 1..%u", q, n, vq->max_size);
		return -1;
	}
	if (kl_virtq_enable(tmp) < 0) {
		kl_vms_fail(in, "queue %u: ring (desc %#" G_GINT64_MODIFIER "x, avail %#"
			    G_GINT64_MODIFIER "x, used %#" G_GINT64_MODIFIER "x, size %u) is "
			    "misaligned or not in guest RAM", q, (guint64)tmp->desc_gpa,
			    (guint64)tmp->avail_gpa, (guint64)tmp->used_gpa, n);
		return -1;
	}
	/* with nothing in flight the device has used every entry it took */
	if ((uint16_t)(last_avail - used_idx) > n) {
		kl_vms_fail(in, "queue %u: last_avail_idx %u is more than the queue size %u ahead "
			    "of used idx %u", q, last_avail, n, used_idx);
		return -1;
	}
	if (sig_valid && (uint16_t)(used_idx - signalled) > n) {
		kl_vms_fail(in, "queue %u: signalled used idx %u is more than the queue size %u "
			    "behind used idx %u", q, signalled, n, used_idx);
		return -1;
	}
	tmp->last_avail = last_avail;
	tmp->used_idx = used_idx;
	tmp->signalled_used = signalled;
	tmp->signalled_used_valid = sig_valid;
	return 0;
}
