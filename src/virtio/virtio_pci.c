/* virtio 1.x modern PCI transport (layout in include/kvmlite/virtio.h). */
#include "kvmlite/virtio.h"

#include <glib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "kvmlite/pci.h"
#include "kvmlite/vm.h"

#define VIRTIO_VENDOR 0x1af4
#define CAP_LEN 16

/* ---------------- transport ops ---------------- */

static void pci_raise(struct kl_virtio_dev *vd, uint16_t vector, uint8_t isr_bit)
{
	if (kl_pci_msix_enabled(vd->pci)) {
		if (vector != KL_VIRTIO_NO_VECTOR)
			kl_pci_msix_notify(vd->pci, vector);
		return;
	}
	vd->isr |= isr_bit;
	kl_pci_set_irq(vd->pci, 1);
}

static void pci_lower(struct kl_virtio_dev *vd)
{
	if (vd->pci)
		kl_pci_set_irq(vd->pci, 0);
}

/* no DMA without COMMAND.MASTER */
static bool pci_dma_ok(const struct kl_virtio_dev *vd)
{
	return kl_pci_bus_master(vd->pci);
}

static const struct kl_virtio_transport pci_transport = {
	.name = "virtio-pci", .raise = pci_raise, .lower = pci_lower, .dma_ok = pci_dma_ok,
};

/* ---------------- common configuration ---------------- */

static uint64_t common_read(struct kl_virtio_dev *vd, unsigned off, unsigned size)
{
	struct kl_virtq *vq = vd->queue_sel < vd->nvqs ? &vd->vqs[vd->queue_sel] : NULL;
	uint64_t v;
	unsigned base = off;
	switch (off) {
	case KL_VPCI_DFSELECT: v = vd->dfselect; break;
	case KL_VPCI_DF: v = kl_virtio_get_device_features(vd, vd->dfselect); break;
	case KL_VPCI_GFSELECT: v = vd->gfselect; break;
	case KL_VPCI_GF: v = kl_virtio_get_driver_features(vd, vd->gfselect); break;
	case KL_VPCI_MSIX_CONFIG: v = vd->config_vector; break;
	case KL_VPCI_NUM_QUEUES: v = vd->nvqs; break;
	case KL_VPCI_STATUS: v = kl_virtio_get_status(vd); break;
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
	case KL_VPCI_GF: kl_virtio_set_driver_features(vd, vd->gfselect, val); break;
	case KL_VPCI_MSIX_CONFIG:
		vd->config_vector = (val & 0xffff) < nvec ? (uint16_t)val : KL_VIRTIO_NO_VECTOR;
		break;
	case KL_VPCI_STATUS:
		kl_virtio_set_status(vd, val);
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
		if (vq && (val & 0xffff) == 1)
			kl_virtio_queue_enable(vd, vd->queue_sel);
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
	if (off >= KL_VPCI_DEVCFG_OFF && off < KL_VPCI_DEVCFG_OFF + 0x1000)
		return kl_virtio_config_read(vd, off - KL_VPCI_DEVCFG_OFF, size);
	return 0;
}

void kl_virtio_pci_bar_write(struct kl_virtio_dev *vd, uint64_t off, uint64_t val, unsigned size)
{
	if (off < KL_VPCI_COMMON_OFF + KL_VPCI_COMMON_LEN) {
		common_write(vd, off, val, size);
	} else if (off >= KL_VPCI_DEVCFG_OFF && off < KL_VPCI_DEVCFG_OFF + 0x1000) {
		kl_virtio_config_write(vd, off - KL_VPCI_DEVCFG_OFF, val, size);
	} else if (off >= KL_VPCI_NOTIFY_OFF &&
		   off < KL_VPCI_NOTIFY_OFF + (uint64_t)KL_VPCI_NOTIFY_MULT * vd->nvqs) {
		kl_virtio_queue_kick(vd, (off - KL_VPCI_NOTIFY_OFF) / KL_VPCI_NOTIFY_MULT);
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
		kl_virtio_notify_assign(vd, false);
		vd->notify_mapped = false;
		return;
	}
	vd->notify_base = addr + KL_VPCI_NOTIFY_OFF;
	vd->notify_mapped = true;
	kl_virtio_notify_assign(vd, true);
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
	struct kl_virtio_dev *vd = kl_virtio_dev_new(vm, &pci_transport, NULL, info, 0x1000, ops,
						     opaque, err);
	if (!vd)
		return NULL;
	struct kl_pci_dev_info pi = {
		.name = info->name,
		.vendor_id = VIRTIO_VENDOR, .device_id = 0x1040 + info->device_id,
		.subsys_vendor_id = VIRTIO_VENDOR, .subsys_id = info->device_id,
		.revision = 1, .class_code = info->class_code, .irq_pin = 1, .slot = info->slot,
	};
	vd->notify_stride = KL_VPCI_NOTIFY_MULT;
	vd->notify_len = 2;
	vd->pci = kl_pci_register(vm, &pi, &vpci_ops, vd, err);
	if (!vd->pci)
		goto fail;
	vd->plat = kl_pci_platform(vd->pci);
	kl_pci_addr_str(vd->pci, vd->inst, sizeof(vd->inst));
	kl_virtio_state_register(vd);
	kl_virtio_notify_init(vd);
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

static void pci_destroy_hook(struct kl_pci_dev *d, void *opaque)
{
	(void)d;
	kl_virtio_dev_free(opaque);
}

void kl_virtio_pci_destroy(struct kl_virtio_dev *vd)
{
	if (!vd)
		return;
	if (vd->pci)
		kl_pci_unregister(vd->pci); /* unmaps BAR 4, then pci_destroy_hook */
	else
		kl_virtio_dev_free(vd);
}
