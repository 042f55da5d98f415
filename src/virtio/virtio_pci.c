/* virtio 1.x modern PCI transport (layout in include/kvmlite/virtio.h). */
#include "kvmlite/virtio.h"

#include <glib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "kvmlite/pci.h"
#include "kvmlite/vm.h"

#define VIRTIO_VENDOR 0x1af4
#define ISR_QUEUE 1
#define ISR_CONFIG 2
#define CAP_LEN 16

static const struct kl_pci_platform_ops *plat(struct kl_virtio_dev *vd);

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

/* ---------------- interrupts ---------------- */

static void raise_irq(struct kl_virtio_dev *vd, uint16_t vector, uint8_t isr_bit)
{
	if (kl_pci_msix_enabled(vd->pci)) {
		if (vector != KL_VIRTIO_NO_VECTOR)
			kl_pci_msix_notify(vd->pci, vector);
		return;
	}
	vd->isr |= isr_bit;
	kl_pci_set_irq(vd->pci, 1);
}

void kl_virtio_notify(struct kl_virtio_dev *vd, unsigned q)
{
	if (q >= vd->nvqs)
		return;
	struct kl_virtq *vq = &vd->vqs[q];
	if (kl_virtq_should_notify(vq))
		raise_irq(vd, vq->msix_vector, ISR_QUEUE);
}

void kl_virtio_config_changed(struct kl_virtio_dev *vd)
{
	vd->config_generation++;
	if (vd->status & KL_VIRTIO_S_DRIVER_OK)
		raise_irq(vd, vd->config_vector, ISR_CONFIG);
}

void kl_virtio_set_broken(struct kl_virtio_dev *vd, const char *why)
{
	if (vd->broken)
		return;
	g_printerr("kvmlite: %s: %s; device needs reset\n", vd->name, why);
	vd->broken = true;
	vd->status |= KL_VIRTIO_S_NEEDS_RESET;
	if (vd->status & KL_VIRTIO_S_DRIVER_OK)
		raise_irq(vd, vd->config_vector, ISR_CONFIG);
}

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
	kl_pci_set_irq(vd->pci, 0);
	if (vd->ops->reset)
		vd->ops->reset(vd);
}

/* ---------------- notifications ---------------- */

static void queue_kick(struct kl_virtio_dev *vd, unsigned q)
{
	/* no DMA without COMMAND.MASTER */
	if (q >= vd->nvqs || !kl_virtio_ready(vd) || !vd->vqs[q].enabled ||
	    !kl_pci_bus_master(vd->pci))
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
		queue_kick(w->vd, w->q);
	return true;
}

static void notify_assign(struct kl_virtio_dev *vd, bool on)
{
	const struct kl_pci_platform_ops *ops = plat(vd);
	for (unsigned q = 0; q < vd->nvqs; q++) {
		if (vd->notify_efd[q] < 0 || !ops->ioeventfd || vd->notify_assigned[q] == on)
			continue;
		uint64_t a = vd->notify_base + KL_VPCI_NOTIFY_OFF + KL_VPCI_NOTIFY_MULT * q;
		if (ops->ioeventfd(vd->vm, a, 2, false, vd->notify_efd[q], false, 0, on) == 0)
			vd->notify_assigned[q] = on;
	}
}

void kl_virtio_kick_pending(struct kl_virtio_dev *vd)
{
	for (unsigned q = 0; q < vd->nvqs; q++)
		if (vd->vqs[q].enabled && kl_virtq_has_avail(&vd->vqs[q]))
			queue_kick(vd, q);
}

/* ---------------- common configuration ---------------- */

static uint64_t common_read(struct kl_virtio_dev *vd, unsigned off, unsigned size)
{
	struct kl_virtq *vq = vd->queue_sel < vd->nvqs ? &vd->vqs[vd->queue_sel] : NULL;
	uint64_t feat = vd->host_features;
	uint64_t v;
	unsigned base = off;
	switch (off) {
	case KL_VPCI_DFSELECT: v = vd->dfselect; break;
	case KL_VPCI_DF: v = vd->dfselect == 0 ? (uint32_t)feat : vd->dfselect == 1 ? feat >> 32 : 0; break;
	case KL_VPCI_GFSELECT: v = vd->gfselect; break;
	case KL_VPCI_GF:
		v = vd->gfselect == 0 ? (uint32_t)vd->guest_features
		    : vd->gfselect == 1 ? vd->guest_features >> 32 : 0;
		break;
	case KL_VPCI_MSIX_CONFIG: v = vd->config_vector; break;
	case KL_VPCI_NUM_QUEUES: v = vd->nvqs; break;
	case KL_VPCI_STATUS: v = vd->draining ? vd->draining_status : vd->status; break;
	case KL_VPCI_CFG_GENERATION: v = vd->config_generation; break;
	case KL_VPCI_Q_SELECT: v = vd->queue_sel; break;
	case KL_VPCI_Q_SIZE: v = vq ? vq->size : 0; break;
	case KL_VPCI_Q_MSIX_VECTOR: v = vq ? vq->msix_vector : KL_VIRTIO_NO_VECTOR; break;
	case KL_VPCI_Q_ENABLE: v = vq ? vq->enabled : 0; break;
	case KL_VPCI_Q_NOTIFY_OFF: v = vq ? vd->queue_sel : 0; break;
	case KL_VPCI_Q_DESC: case KL_VPCI_Q_DESC + 4:
		base = KL_VPCI_Q_DESC; v = vq ? vq->desc_gpa : 0; break;
	case KL_VPCI_Q_AVAIL: case KL_VPCI_Q_AVAIL + 4:
		base = KL_VPCI_Q_AVAIL; v = vq ? vq->avail_gpa : 0; break;
	case KL_VPCI_Q_USED: case KL_VPCI_Q_USED + 4:
		base = KL_VPCI_Q_USED; v = vq ? vq->used_gpa : 0; break;
	default: return 0;
	}
	v >>= (off - base) * 8;
	return size >= 8 ? v : v & ((1ULL << (size * 8)) - 1);
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
		for (unsigned q = 0; q < vd->nvqs; q++)
			if (vd->vqs[q].enabled && kl_virtq_has_avail(&vd->vqs[q]))
				queue_kick(vd, q);
	}
}

static void set_addr(uint64_t *field, unsigned off, unsigned base, uint64_t val, unsigned size)
{
	if (size == 8 && off == base) {
		*field = val;
	} else if (size == 4) {
		unsigned sh = (off - base) * 8;
		*field = (*field & ~(0xffffffffULL << sh)) | ((val & 0xffffffffULL) << sh);
	}
}

static void common_write(struct kl_virtio_dev *vd, unsigned off, uint64_t val, unsigned size)
{
	struct kl_virtq *vq = vd->queue_sel < vd->nvqs ? &vd->vqs[vd->queue_sel] : NULL;
	unsigned nvec = kl_pci_msix_nvec(vd->pci);
	switch (off) {
	case KL_VPCI_DFSELECT: vd->dfselect = val; break;
	case KL_VPCI_GFSELECT: vd->gfselect = val; break;
	case KL_VPCI_GF:
		if (vd->status & KL_VIRTIO_S_FEATURES_OK)
			break;
		if (vd->gfselect == 0)
			vd->guest_features = (vd->guest_features & ~0xffffffffULL) | (uint32_t)val;
		else if (vd->gfselect == 1)
			vd->guest_features = (vd->guest_features & 0xffffffffULL) | (uint64_t)(uint32_t)val << 32;
		break;
	case KL_VPCI_MSIX_CONFIG:
		vd->config_vector = (val & 0xffff) < nvec ? (uint16_t)val : KL_VIRTIO_NO_VECTOR;
		break;
	case KL_VPCI_STATUS:
		if (!vd->draining || (val & 0xff) == 0)
			set_status(vd, val);
		break;
	case KL_VPCI_Q_SELECT: vd->queue_sel = val; break;
	case KL_VPCI_Q_SIZE:
		if (vq && !vq->enabled)
			vq->size = val;
		break;
	case KL_VPCI_Q_MSIX_VECTOR:
		if (vq)
			vq->msix_vector = (val & 0xffff) < nvec ? (uint16_t)val : KL_VIRTIO_NO_VECTOR;
		break;
	case KL_VPCI_Q_ENABLE:
		/* not while a reset is still draining requests: the driver must
		 * wait for status 0 (a ring failing here would mark the device
		 * broken while status reads still show the old value) */
		if (!vq || vq->enabled || (val & 0xffff) != 1 || vd->broken || vd->draining)
			break;
		vq->event_idx = kl_virtio_has_feature(vd, KL_VIRTIO_F_EVENT_IDX);
		vq->indirect = kl_virtio_has_feature(vd, KL_VIRTIO_F_INDIRECT_DESC);
		if (kl_virtq_enable(vq) < 0) {
			char *why = g_strdup_printf("queue %u: %s", vd->queue_sel,
						    kl_vq_strerror(KL_VQ_ERR_RING));
			kl_virtio_set_broken(vd, why);
			g_free(why);
		}
		break;
	case KL_VPCI_Q_DESC: case KL_VPCI_Q_DESC + 4:
		if (vq && !vq->enabled)
			set_addr(&vq->desc_gpa, off, KL_VPCI_Q_DESC, val, size);
		break;
	case KL_VPCI_Q_AVAIL: case KL_VPCI_Q_AVAIL + 4:
		if (vq && !vq->enabled)
			set_addr(&vq->avail_gpa, off, KL_VPCI_Q_AVAIL, val, size);
		break;
	case KL_VPCI_Q_USED: case KL_VPCI_Q_USED + 4:
		if (vq && !vq->enabled)
			set_addr(&vq->used_gpa, off, KL_VPCI_Q_USED, val, size);
		break;
	default: break; /* read-only or unknown */
	}
}

/* ---------------- BAR 4 ---------------- */

uint64_t kl_virtio_pci_bar_read(struct kl_virtio_dev *vd, uint64_t off, unsigned size)
{
	if (off < KL_VPCI_COMMON_OFF + KL_VPCI_COMMON_LEN)
		return common_read(vd, off, size);
	if (off == KL_VPCI_ISR_OFF) {
		uint8_t v = vd->isr;
		vd->isr = 0;
		kl_pci_set_irq(vd->pci, 0);
		return v;
	}
	if (off >= KL_VPCI_DEVCFG_OFF && off < KL_VPCI_DEVCFG_OFF + 0x1000) {
		uint64_t v = 0, o = off - KL_VPCI_DEVCFG_OFF;
		for (unsigned i = 0; i < size; i++)
			if (o + i < vd->config_len)
				v |= (uint64_t)vd->config[o + i] << (8 * i);
		return v;
	}
	return 0;
}

void kl_virtio_pci_bar_write(struct kl_virtio_dev *vd, uint64_t off, uint64_t val, unsigned size)
{
	if (off < KL_VPCI_COMMON_OFF + KL_VPCI_COMMON_LEN) {
		common_write(vd, off, val, size);
	} else if (off >= KL_VPCI_DEVCFG_OFF && off < KL_VPCI_DEVCFG_OFF + 0x1000) {
		uint64_t o = off - KL_VPCI_DEVCFG_OFF;
		if (o + size <= vd->config_len && vd->ops->config_write) {
			uint8_t b[8];
			for (unsigned i = 0; i < size && i < 8; i++)
				b[i] = val >> (8 * i);
			vd->ops->config_write(vd, o, b, size);
		}
	} else if (off >= KL_VPCI_NOTIFY_OFF &&
		   off < KL_VPCI_NOTIFY_OFF + (uint64_t)KL_VPCI_NOTIFY_MULT * vd->nvqs) {
		queue_kick(vd, (off - KL_VPCI_NOTIFY_OFF) / KL_VPCI_NOTIFY_MULT);
	}
}

static uint64_t bar4_read(void *opaque, uint64_t off, unsigned size)
{
	return kl_virtio_pci_bar_read(opaque, off, size);
}

static void bar4_write(void *opaque, uint64_t off, uint64_t val, unsigned size)
{
	kl_virtio_pci_bar_write(opaque, off, val, size);
}

static const struct kl_io_ops bar4_ops = { .read = bar4_read, .write = bar4_write };

/* ---------------- PCI hooks ---------------- */

/* VIRTIO_PCI_CAP_PCI_CFG: bar at +4, offset +8, length +12, data +16 */
static bool pcicfg_access(struct kl_virtio_dev *vd, uint32_t *len, uint32_t *off)
{
	uint8_t *c = kl_pci_config(vd->pci) + vd->pcicfg_off;
	*len = c[12] | c[13] << 8 | c[14] << 16 | (uint32_t)c[15] << 24;
	*off = c[8] | c[9] << 8 | c[10] << 16 | (uint32_t)c[11] << 24;
	return c[4] == KL_VPCI_BAR && (*len == 1 || *len == 2 || *len == 4) &&
	       (*off & (*len - 1)) == 0 && *off < KL_VPCI_BAR_SIZE;
}

static bool cfg_read_hook(struct kl_pci_dev *d, void *opaque, unsigned off, unsigned size,
			  uint32_t *val)
{
	(void)d;
	struct kl_virtio_dev *vd = opaque;
	unsigned data = vd->pcicfg_off + 16;
	if (off < data || off >= data + 4)
		return false;
	uint32_t len, boff;
	*val = 0;
	if (off == data && pcicfg_access(vd, &len, &boff)) {
		uint64_t v = kl_virtio_pci_bar_read(vd, boff, len);
		*val = size < 4 ? v & ((1u << (8 * size)) - 1) : (uint32_t)v;
	}
	return true;
}

static void cfg_write_hook(struct kl_pci_dev *d, void *opaque, unsigned off, unsigned size,
			   uint32_t val)
{
	struct kl_virtio_dev *vd = opaque;
	uint8_t *c = kl_pci_config(d);
	unsigned cap = vd->pcicfg_off;
	for (unsigned i = 0; i < size; i++) {
		unsigned o = off + i;
		/* writable: bar (+4), offset (+8..+11), length (+12..+15) */
		if (o == cap + 4 || (o >= cap + 8 && o < cap + 16))
			c[o] = val >> (8 * i);
	}
	uint32_t len, boff;
	if (off == cap + 16 && pcicfg_access(vd, &len, &boff) && size >= len)
		kl_virtio_pci_bar_write(vd, boff, val, len);
}

static void bar_map_hook(struct kl_pci_dev *d, void *opaque, unsigned bar, uint64_t addr, bool mapped)
{
	(void)d;
	struct kl_virtio_dev *vd = opaque;
	if (bar != KL_VPCI_BAR)
		return;
	if (!mapped) {
		notify_assign(vd, false);
		vd->notify_mapped = false;
		return;
	}
	vd->notify_base = addr;
	vd->notify_mapped = true;
	notify_assign(vd, true);
}

static void pci_reset_hook(struct kl_pci_dev *d, void *opaque)
{
	(void)d;
	kl_virtio_reset(opaque);
}

static void pci_destroy_hook(struct kl_pci_dev *d, void *opaque);

static const struct kl_pci_dev_ops vpci_ops = {
	.config_read = cfg_read_hook,
	.config_write = cfg_write_hook,
	.bar_map = bar_map_hook,
	.reset = pci_reset_hook,
	.destroy = pci_destroy_hook,
};

static const struct kl_pci_platform_ops no_ops;

static const struct kl_pci_platform_ops *plat(struct kl_virtio_dev *vd)
{
	return vd->plat ? vd->plat : &no_ops;
}

static int add_vcap(struct kl_pci_dev *d, uint8_t type, uint32_t off, uint32_t len,
		    const void *extra, unsigned extra_len)
{
	uint8_t body[CAP_LEN - 2 + 4] = { 0 };
	body[0] = CAP_LEN + extra_len; /* cap_len */
	body[1] = type;
	body[2] = type == KL_VIRTIO_PCI_CAP_PCI_CFG ? 0 : KL_VPCI_BAR;
	for (unsigned i = 0; i < 4; i++) {
		body[6 + i] = type == KL_VIRTIO_PCI_CAP_PCI_CFG ? 0 : off >> (8 * i);
		body[10 + i] = type == KL_VIRTIO_PCI_CAP_PCI_CFG ? 0 : len >> (8 * i);
	}
	if (extra_len)
		memcpy(&body[14], extra, extra_len);
	return kl_pci_add_cap(d, KL_PCI_CAP_ID_VNDR, body, CAP_LEN - 2 + extra_len);
}

struct kl_virtio_dev *kl_virtio_pci_create(struct kl_vm *vm, const struct kl_virtio_pci_info *info,
					   const struct kl_virtio_ops *ops, void *opaque, char **err)
{
	uint16_t qs = info->queue_size;
	if (info->num_queues == 0 || info->num_queues > KL_VPCI_MAX_QUEUES || qs == 0 ||
	    (qs & (qs - 1)) || qs > KL_VIRTQ_MAX_SIZE || info->config_len > 0x1000) {
		*err = g_strdup_printf("%s: invalid virtio device parameters", info->name);
		return NULL;
	}
	struct kl_pci_dev_info pi = {
		.name = info->name,
		.vendor_id = VIRTIO_VENDOR, .device_id = 0x1040 + info->device_id,
		.subsys_vendor_id = VIRTIO_VENDOR, .subsys_id = info->device_id,
		.revision = 1, .class_code = info->class_code, .irq_pin = 1, .slot = info->slot,
	};
	struct kl_virtio_dev *vd = g_new0(struct kl_virtio_dev, 1);
	vd->vm = vm;
	vd->mem = &vm->mem;
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

	vd->pci = kl_pci_register(vm, &pi, &vpci_ops, vd, err);
	if (!vd->pci)
		goto fail;
	vd->plat = kl_pci_platform(vd->pci);
	kl_virtio_state_register(vd);
	const struct kl_pci_platform_ops *pops = plat(vd);
	for (unsigned q = 0; q < vd->nvqs; q++) {
		vd->notify_efd[q] = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
		vd->notify_ctx[q].vd = vd;
		vd->notify_ctx[q].q = q;
		if (vd->notify_efd[q] >= 0 && pops->fd_add)
			vd->notify_watch[q] = pops->fd_add(vd->notify_efd[q], notify_efd_ready,
							   &vd->notify_ctx[q]);
	}
	if (kl_pci_add_bar(vd->pci, KL_VPCI_MSIX_BAR, 0x1000, KL_PCI_BAR_MEM32, false, NULL, NULL,
			   err) < 0 ||
	    kl_pci_msix_init(vd->pci, vd->nvqs + 1, KL_VPCI_MSIX_BAR, 0, 0x800, err) < 0 ||
	    kl_pci_add_bar(vd->pci, KL_VPCI_BAR, KL_VPCI_BAR_SIZE, KL_PCI_BAR_MEM64, true, &bar4_ops,
			   vd, err) < 0)
		goto fail;
	uint8_t mult[4] = { KL_VPCI_NOTIFY_MULT, 0, 0, 0 };
	uint8_t data[4] = { 0 };
	int pcfg;
	if (add_vcap(vd->pci, KL_VIRTIO_PCI_CAP_COMMON_CFG, KL_VPCI_COMMON_OFF, KL_VPCI_COMMON_LEN,
		     NULL, 0) < 0 ||
	    add_vcap(vd->pci, KL_VIRTIO_PCI_CAP_NOTIFY_CFG, KL_VPCI_NOTIFY_OFF,
		     KL_VPCI_NOTIFY_MULT * vd->nvqs, mult, 4) < 0 ||
	    add_vcap(vd->pci, KL_VIRTIO_PCI_CAP_ISR_CFG, KL_VPCI_ISR_OFF, 1, NULL, 0) < 0 ||
	    (vd->config_len &&
	     add_vcap(vd->pci, KL_VIRTIO_PCI_CAP_DEVICE_CFG, KL_VPCI_DEVCFG_OFF, vd->config_len,
		      NULL, 0) < 0) ||
	    (pcfg = add_vcap(vd->pci, KL_VIRTIO_PCI_CAP_PCI_CFG, 0, 0, data, 4)) < 0) {
		*err = g_strdup_printf("%s: PCI config space full", info->name);
		goto fail;
	}
	vd->pcicfg_off = pcfg;
	vd->created = true;
	return vd;
fail:
	kl_virtio_pci_destroy(vd);
	return NULL;
}

static void vd_free(struct kl_virtio_dev *vd)
{
	const struct kl_pci_platform_ops *pops = plat(vd);
	kl_virtio_state_unregister(vd);
	notify_assign(vd, false);
	for (unsigned q = 0; q < vd->nvqs; q++) {
		if (vd->notify_watch[q] && pops->source_remove)
			pops->source_remove(vd->notify_watch[q]);
		if (vd->notify_efd[q] >= 0)
			close(vd->notify_efd[q]);
	}
	bool call = vd->created && vd->ops->destroy;
	if (call)
		vd->ops->destroy(vd);
	g_free(vd->notify_efd);
	g_free(vd->notify_watch);
	g_free(vd->notify_assigned);
	g_free(vd->notify_ctx);
	g_free(vd->vqs);
	g_free(vd->config);
	g_free(vd);
}

static void pci_destroy_hook(struct kl_pci_dev *d, void *opaque)
{
	(void)d;
	vd_free(opaque);
}

void kl_virtio_pci_destroy(struct kl_virtio_dev *vd)
{
	if (!vd)
		return;
	if (vd->pci)
		kl_pci_unregister(vd->pci); /* unmaps BAR 4, then pci_destroy_hook */
	else
		vd_free(vd);
}
