/* The transport-neutral virtio device core (include/kvmlite/virtio.h):
 * feature negotiation, device status and reset, queue enable and kicks,
 * device config space, in-flight accounting, notify eventfds, and
 * interrupts through the transport's ops table.  The PCI (virtio_pci.c)
 * and MMIO (virtio_mmio.c) transports decode their registers into these. */
#include "kvmlite/virtio.h"

#include <glib.h>
#include <stdio.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "kvmlite/pci.h"
#include "kvmlite/vm.h"

#define ISR_QUEUE 1
#define ISR_CONFIG 2

static const struct kl_pci_platform_ops no_ops;

static const struct kl_pci_platform_ops *plat(const struct kl_virtio_dev *vd)
{
	return vd->plat ? vd->plat : &no_ops;
}

static uint64_t transport_features(void)
{
	return 1ULL << KL_VIRTIO_F_VERSION_1 | 1ULL << KL_VIRTIO_F_EVENT_IDX |
	       1ULL << KL_VIRTIO_F_INDIRECT_DESC;
}

bool kl_virtio_has_feature(const struct kl_virtio_dev *vd, unsigned bit)
{
	return bit < 64 && (vd->features >> bit) & 1;
}

bool kl_virtio_ready(const struct kl_virtio_dev *vd)
{
	return (vd->status & KL_VIRTIO_S_DRIVER_OK) && !vd->broken;
}

const char *kl_virtio_type_name(const char *base, enum kl_virtio_transport_kind t)
{
	char *s = g_strconcat(base, t == KL_VIRTIO_TRANSPORT_PCI ? "-pci" : "-device", NULL);
	const char *r = g_intern_string(s);
	g_free(s);
	return r;
}

/* ---------------- interrupts ---------------- */

void kl_virtio_notify(struct kl_virtio_dev *vd, unsigned q)
{
	if (q >= vd->nvqs)
		return;
	struct kl_virtq *vq = &vd->vqs[q];
	if (kl_virtq_should_notify(vq))
		vd->transport->raise(vd, vq->msix_vector, ISR_QUEUE);
}

void kl_virtio_config_changed(struct kl_virtio_dev *vd)
{
	vd->config_generation++;
	if (vd->status & KL_VIRTIO_S_DRIVER_OK)
		vd->transport->raise(vd, vd->config_vector, ISR_CONFIG);
}

void kl_virtio_set_broken(struct kl_virtio_dev *vd, const char *why)
{
	if (vd->broken)
		return;
	/* stdio, not g_printerr: this may run on a vCPU thread (a bad
	 * QueueReady), whose seccomp filter has no openat for GLib's first
	 * charset lookup */
	fprintf(stderr, "kvmlite: %s: %s; device needs reset\n", vd->name, why);
	vd->broken = true;
	vd->status |= KL_VIRTIO_S_NEEDS_RESET;
	if (vd->status & KL_VIRTIO_S_DRIVER_OK)
		vd->transport->raise(vd, vd->config_vector, ISR_CONFIG);
}

/* ---------------- requests ---------------- */

struct kl_vq_elem *kl_virtio_pop(struct kl_virtio_dev *vd, unsigned q)
{
	if (q >= vd->nvqs || !kl_virtio_ready(vd))
		return NULL;
	struct kl_vq_elem *e;
	int r = kl_virtq_pop(&vd->vqs[q], &e);
	if (r < 0) {
		char *why = g_strdup_printf("queue %u: %s", q, kl_vq_strerror(r));
		kl_virtio_set_broken(vd, why);
		g_free(why);
		return NULL;
	}
	if (r)
		vd->inflight++;
	return r ? e : NULL;
}

static void inflight_done(struct kl_virtio_dev *vd)
{
	if (vd->inflight)
		vd->inflight--;
	if (!vd->inflight)
		vd->draining = false;
}

void kl_virtio_discard(struct kl_virtio_dev *vd, struct kl_vq_elem *elem)
{
	g_free(elem);
	inflight_done(vd);
}

void kl_virtio_push(struct kl_virtio_dev *vd, unsigned q, struct kl_vq_elem *elem, uint32_t len)
{
	if (q < vd->nvqs && !vd->broken)
		kl_virtq_push(&vd->vqs[q], elem, len);
	g_free(elem);
	inflight_done(vd);
}

void kl_virtio_complete(struct kl_virtio_dev *vd, unsigned q, struct kl_vq_elem *elem, uint32_t len)
{
	if (q < vd->nvqs && !vd->broken && kl_virtq_push(&vd->vqs[q], elem, len))
		kl_virtio_notify(vd, q);
	g_free(elem);
	inflight_done(vd);
}

void kl_virtio_reset(struct kl_virtio_dev *vd)
{
	if (vd->inflight) {
		vd->draining = true;
		vd->draining_status = vd->status ? vd->status : KL_VIRTIO_S_ACKNOWLEDGE;
	}
	for (unsigned q = 0; q < vd->nvqs; q++)
		kl_virtq_reset(&vd->vqs[q]);
	vd->status = 0;
	vd->guest_features = vd->features = 0;
	vd->dfselect = vd->gfselect = 0;
	vd->config_vector = KL_VIRTIO_NO_VECTOR;
	vd->queue_sel = 0;
	vd->isr = 0;
	vd->broken = false;
	vd->transport->lower(vd);
	if (vd->ops->reset)
		vd->ops->reset(vd);
}

/* ---------------- notifications ---------------- */

void kl_virtio_queue_kick(struct kl_virtio_dev *vd, unsigned q)
{
	if (q >= vd->nvqs || !kl_virtio_ready(vd) || !vd->vqs[q].enabled ||
	    (vd->transport->dma_ok && !vd->transport->dma_ok(vd)))
		return;
	if (vd->ops->queue_notify)
		vd->ops->queue_notify(vd, q);
}

struct kl_virtio_notify_ctx {
	struct kl_virtio_dev *vd;
	unsigned q;
};

static bool notify_efd_ready(int fd, GIOCondition cond, void *opaque)
{
	(void)cond;
	struct kl_virtio_notify_ctx *w = opaque;
	uint64_t cnt;
	if (read(fd, &cnt, sizeof(cnt)) == sizeof(cnt))
		kl_virtio_queue_kick(w->vd, w->q);
	return true;
}

void kl_virtio_notify_init(struct kl_virtio_dev *vd)
{
	const struct kl_pci_platform_ops *pops = plat(vd);
	for (unsigned q = 0; q < vd->nvqs; q++) {
		vd->notify_efd[q] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		vd->notify_ctx[q].vd = vd;
		vd->notify_ctx[q].q = q;
		if (vd->notify_efd[q] >= 0 && pops->fd_add)
			vd->notify_watch[q] = pops->fd_add(vd->notify_efd[q], notify_efd_ready,
							   &vd->notify_ctx[q]);
	}
}

void kl_virtio_notify_assign(struct kl_virtio_dev *vd, bool on)
{
	const struct kl_pci_platform_ops *ops = plat(vd);
	for (unsigned q = 0; q < vd->nvqs; q++) {
		if (vd->notify_efd[q] < 0 || !ops->ioeventfd || vd->notify_assigned[q] == on)
			continue;
		uint64_t a = vd->notify_base + (uint64_t)vd->notify_stride * q;
		if (ops->ioeventfd(vd->vm, a, vd->notify_len, false, vd->notify_efd[q],
				   vd->notify_datamatch, q, on) == 0)
			vd->notify_assigned[q] = on;
	}
}

void kl_virtio_kick_pending(struct kl_virtio_dev *vd)
{
	for (unsigned q = 0; q < vd->nvqs; q++)
		if (vd->vqs[q].enabled && kl_virtq_has_avail(&vd->vqs[q]))
			kl_virtio_queue_kick(vd, q);
}

/* ---------------- common registers ---------------- */

uint32_t kl_virtio_get_device_features(const struct kl_virtio_dev *vd, uint32_t sel)
{
	return sel == 0 ? (uint32_t)vd->host_features : sel == 1 ? vd->host_features >> 32 : 0;
}

uint32_t kl_virtio_get_driver_features(const struct kl_virtio_dev *vd, uint32_t sel)
{
	return sel == 0 ? (uint32_t)vd->guest_features : sel == 1 ? vd->guest_features >> 32 : 0;
}

void kl_virtio_set_driver_features(struct kl_virtio_dev *vd, uint32_t sel, uint32_t val)
{
	if (vd->status & KL_VIRTIO_S_FEATURES_OK)
		return;
	if (sel == 0)
		vd->guest_features = (vd->guest_features & ~0xffffffffULL) | val;
	else if (sel == 1)
		vd->guest_features = (vd->guest_features & 0xffffffffULL) | (uint64_t)val << 32;
}

uint8_t kl_virtio_get_status(const struct kl_virtio_dev *vd)
{
	return vd->draining ? vd->draining_status : vd->status;
}

static void set_status(struct kl_virtio_dev *vd, uint8_t val)
{
	if (val == 0) {
		kl_virtio_reset(vd);
		return;
	}
	uint8_t old = vd->status;
	if ((val & KL_VIRTIO_S_FEATURES_OK) && !(old & KL_VIRTIO_S_FEATURES_OK)) {
		uint64_t g = vd->guest_features;
		bool ok = !(g & ~vd->host_features) && (g >> KL_VIRTIO_F_VERSION_1 & 1);
		if (ok && vd->ops->set_features)
			ok = vd->ops->set_features(vd, g);
		if (ok)
			vd->features = g;
		else
			val &= ~KL_VIRTIO_S_FEATURES_OK;
	}
	/* DRIVER_OK without FEATURES_OK is a driver bug: refuse it */
	if ((val & KL_VIRTIO_S_DRIVER_OK) && !(val & KL_VIRTIO_S_FEATURES_OK))
		val &= ~KL_VIRTIO_S_DRIVER_OK;
	vd->status = val | (vd->broken ? KL_VIRTIO_S_NEEDS_RESET : 0);
	if ((vd->status & KL_VIRTIO_S_DRIVER_OK) && !(old & KL_VIRTIO_S_DRIVER_OK)) {
		if (vd->ops->driver_ok)
			vd->ops->driver_ok(vd);
		/* buffers made available before DRIVER_OK */
		kl_virtio_kick_pending(vd);
	}
}

void kl_virtio_set_status(struct kl_virtio_dev *vd, uint8_t val)
{
	/* while a reset drains requests only another reset is accepted */
	if (!vd->draining || val == 0)
		set_status(vd, val);
}

void kl_virtio_queue_enable(struct kl_virtio_dev *vd, unsigned q)
{
	/* not while a reset is still draining requests: the driver must wait
	 * for status 0 (a ring failing here would mark the device broken
	 * while status reads still show the old value) */
	if (q >= vd->nvqs || vd->vqs[q].enabled || vd->broken || vd->draining)
		return;
	struct kl_virtq *vq = &vd->vqs[q];
	vq->event_idx = kl_virtio_has_feature(vd, KL_VIRTIO_F_EVENT_IDX);
	vq->indirect = kl_virtio_has_feature(vd, KL_VIRTIO_F_INDIRECT_DESC);
	if (kl_virtq_enable(vq) < 0) {
		char *why = g_strdup_printf("queue %u: %s", q, kl_vq_strerror(KL_VQ_ERR_RING));
		kl_virtio_set_broken(vd, why);
		g_free(why);
	}
}

uint64_t kl_virtio_config_read(const struct kl_virtio_dev *vd, uint64_t off, unsigned size)
{
	uint64_t v = 0;
	for (unsigned i = 0; i < size && i < 8; i++)
		if (off + i < vd->config_len)
			v |= (uint64_t)vd->config[off + i] << (8 * i);
	return v;
}

void kl_virtio_config_write(struct kl_virtio_dev *vd, uint64_t off, uint64_t val, unsigned size)
{
	if (size > 8 || off + size > vd->config_len || !vd->ops->config_write)
		return;
	uint8_t b[8];
	for (unsigned i = 0; i < size; i++)
		b[i] = val >> (8 * i);
	vd->ops->config_write(vd, off, b, size);
}

/* ---------------- life cycle ---------------- */

struct kl_virtio_dev *kl_virtio_dev_new(struct kl_vm *vm, const struct kl_virtio_transport *t,
					const struct kl_pci_platform_ops *pl,
					const struct kl_virtio_pci_info *info, unsigned max_config,
					const struct kl_virtio_ops *ops, void *opaque, char **err)
{
	uint16_t qs = info->queue_size;
	if (info->num_queues == 0 || info->num_queues > KL_VPCI_MAX_QUEUES || qs == 0 ||
	    (qs & (qs - 1)) || qs > KL_VIRTQ_MAX_SIZE || info->config_len > max_config) {
		*err = g_strdup_printf("%s: invalid virtio device parameters", info->name);
		return NULL;
	}
	struct kl_virtio_dev *vd = g_new0(struct kl_virtio_dev, 1);
	vd->vm = vm;
	vd->mem = &vm->mem;
	vd->transport = t;
	vd->plat = pl;
	vd->ops = ops;
	vd->opaque = opaque;
	vd->name = info->name;
	vd->device_id = info->device_id;
	vd->host_features = ops->device_features | transport_features();
	vd->config_len = info->config_len;
	vd->config = g_malloc0(info->config_len ? info->config_len : 1);
	vd->config_vector = KL_VIRTIO_NO_VECTOR;
	vd->nvqs = info->num_queues;
	vd->vqs = g_new0(struct kl_virtq, vd->nvqs);
	vd->notify_efd = g_new(int, vd->nvqs);
	vd->notify_watch = g_new0(unsigned, vd->nvqs);
	vd->notify_assigned = g_new0(bool, vd->nvqs);
	vd->notify_ctx = g_new0(struct kl_virtio_notify_ctx, vd->nvqs);
	for (unsigned q = 0; q < vd->nvqs; q++) {
		kl_virtq_init(&vd->vqs[q], vd->mem, q, qs);
		vd->notify_efd[q] = -1;
	}
	return vd;
}

void kl_virtio_dev_free(struct kl_virtio_dev *vd)
{
	const struct kl_pci_platform_ops *pops = plat(vd);
	kl_virtio_state_unregister(vd);
	kl_virtio_notify_assign(vd, false);
	for (unsigned q = 0; q < vd->nvqs; q++) {
		if (vd->notify_watch[q] && pops->source_remove)
			pops->source_remove(vd->notify_watch[q]);
		if (vd->notify_efd[q] >= 0)
			close(vd->notify_efd[q]);
	}
	if (vd->created && vd->ops->destroy)
		vd->ops->destroy(vd);
	g_free(vd->notify_efd);
	g_free(vd->notify_watch);
	g_free(vd->notify_assigned);
	g_free(vd->notify_ctx);
	g_free(vd->vqs);
	g_free(vd->config);
	g_free(vd);
}

struct kl_virtio_dev *kl_virtio_create(struct kl_vm *vm, enum kl_virtio_transport_kind t,
				       const struct kl_virtio_pci_info *info,
				       const struct kl_virtio_ops *ops, void *opaque, char **err)
{
	if (t == KL_VIRTIO_TRANSPORT_PCI)
		return kl_virtio_pci_create(vm, info, ops, opaque, err);
	struct kl_virtio_mmio_slots *s = vm->virtio_mmio;
	if (!s) {
		*err = g_strdup_printf("%s: this machine has no virtio-mmio transport (use -M microvm, "
				       "or the PCI variant on pc/q35)", info->name);
		return NULL;
	}
	if (s->used >= s->count) {
		*err = g_strdup_printf("%s: all %u virtio-mmio transports are in use", info->name,
				       s->count);
		return NULL;
	}
	unsigned i = s->used;
	struct kl_virtio_dev *vd = kl_virtio_mmio_create(vm, NULL, s->base + (uint64_t)i * KL_VMMIO_SIZE,
							 s->gsi[i], info, ops, opaque, err);
	if (vd)
		s->used++;
	return vd;
}
