/* virtio-mmio transport, version 2 (virtio 1.x 4.2; layout and the rules
 * for bad accesses in include/kvmlite/virtio.h).  One transport is
 * KL_VMMIO_SIZE bytes on the VM's MMIO bus and one GSI of the in-kernel
 * irqchip: asserted while InterruptStatus is non-zero (KVM_IRQ_LINE), so
 * the line is level-like whatever the IOAPIC pin's trigger mode; the queue
 * notify register is an ioeventfd per queue (datamatch on the queue
 * index).  VM state: section "virtio-mmio/0xBASE" (version 1):
 *   u64 base, u32 gsi (both must equal the destination's)
 *   the core's registers and queues (kl_virtio_state_*: virtio_state.c)
 * Only 32-bit register accesses count (QEMU logs and ignores others). */
#include "kvmlite/virtio.h"

#include <glib.h>
#include <stdio.h>
#include <string.h>

#include "kvmlite/bus.h"
#include "kvmlite/pci.h"
#include "kvmlite/vm.h"
#include "kvmlite/vmstate.h"

#define VMMIO_STATE_VERSION 1

static void set_line(struct kl_virtio_dev *vd)
{
	if (vd->plat && vd->plat->set_irq)
		vd->plat->set_irq(vd->vm, vd->mmio_gsi, vd->isr ? 1 : 0);
}

static void mmio_raise(struct kl_virtio_dev *vd, uint16_t vector, uint8_t isr_bit)
{
	(void)vector;
	vd->isr |= isr_bit;
	set_line(vd);
}

static void mmio_lower(struct kl_virtio_dev *vd)
{
	set_line(vd);
}

static const struct kl_virtio_transport mmio_transport = {
	.name = "virtio-mmio", .raise = mmio_raise, .lower = mmio_lower,
};

static struct kl_virtq *sel_vq(struct kl_virtio_dev *vd)
{
	return vd->queue_sel < vd->nvqs ? &vd->vqs[vd->queue_sel] : NULL;
}

uint64_t kl_virtio_mmio_read(struct kl_virtio_dev *vd, uint64_t off, unsigned size)
{
	if (off >= KL_VMMIO_CONFIG) {
		if (size != 1 && size != 2 && size != 4)
			return 0;
		return kl_virtio_config_read(vd, off - KL_VMMIO_CONFIG, size);
	}
	if (size != 4 || (off & 3))
		return 0;
	struct kl_virtq *vq = sel_vq(vd);
	switch (off) {
	case KL_VMMIO_MAGIC_VALUE: return KL_VMMIO_MAGIC;
	case KL_VMMIO_VERSION_REG: return KL_VMMIO_VERSION;
	case KL_VMMIO_DEVICE_ID: return vd->device_id;
	case KL_VMMIO_VENDOR_ID: return KL_VMMIO_VENDOR;
	case KL_VMMIO_DEVICE_FEATURES: return kl_virtio_get_device_features(vd, vd->dfselect);
	case KL_VMMIO_QUEUE_NUM_MAX: return vq ? vq->max_size : 0;
	case KL_VMMIO_QUEUE_READY: return vq ? vq->enabled : 0;
	case KL_VMMIO_INTERRUPT_STATUS: return vd->isr;
	case KL_VMMIO_STATUS: return kl_virtio_get_status(vd);
	case KL_VMMIO_SHM_LEN_LOW: case KL_VMMIO_SHM_LEN_HIGH:
		return 0xffffffffu; /* no shared memory region */
	case KL_VMMIO_SHM_BASE_LOW: case KL_VMMIO_SHM_BASE_HIGH:
		return 0xffffffffu;
	case KL_VMMIO_CONFIG_GENERATION: return vd->config_generation;
	default: return 0; /* write-only or reserved */
	}
}

static void set_half(uint64_t *field, bool high, uint32_t val)
{
	if (high)
		*field = (*field & 0xffffffffULL) | (uint64_t)val << 32;
	else
		*field = (*field & ~0xffffffffULL) | val;
}

void kl_virtio_mmio_write(struct kl_virtio_dev *vd, uint64_t off, uint64_t val, unsigned size)
{
	if (off >= KL_VMMIO_CONFIG) {
		if (size == 1 || size == 2 || size == 4)
			kl_virtio_config_write(vd, off - KL_VMMIO_CONFIG, val, size);
		return;
	}
	if (size != 4 || (off & 3))
		return;
	uint32_t v = val;
	struct kl_virtq *vq = sel_vq(vd);
	/* ring registers only while the queue is off (4.2.2.2) */
	uint64_t *ring = NULL;
	switch (off) {
	case KL_VMMIO_DEVICE_FEATURES_SEL: vd->dfselect = v; break;
	case KL_VMMIO_DRIVER_FEATURES: kl_virtio_set_driver_features(vd, vd->gfselect, v); break;
	case KL_VMMIO_DRIVER_FEATURES_SEL: vd->gfselect = v; break;
	case KL_VMMIO_QUEUE_SEL: vd->queue_sel = v > 0xffff ? 0xffff : v; break;
	case KL_VMMIO_QUEUE_NUM:
		if (vq && !vq->enabled && v && v <= vq->max_size)
			vq->size = v;
		break;
	case KL_VMMIO_QUEUE_READY:
		if (!vq)
			break;
		if (v == 1)
			kl_virtio_queue_enable(vd, vd->queue_sel);
		else if (v == 0 && vq->enabled)
			kl_virtq_reset(vq);
		break;
	case KL_VMMIO_QUEUE_NOTIFY: kl_virtio_queue_kick(vd, v); break;
	case KL_VMMIO_INTERRUPT_ACK:
		vd->isr &= ~v;
		set_line(vd);
		break;
	case KL_VMMIO_STATUS: kl_virtio_set_status(vd, v); break;
	case KL_VMMIO_QUEUE_DESC_LOW: case KL_VMMIO_QUEUE_DESC_HIGH:
		ring = vq ? &vq->desc_gpa : NULL;
		break;
	case KL_VMMIO_QUEUE_AVAIL_LOW: case KL_VMMIO_QUEUE_AVAIL_HIGH:
		ring = vq ? &vq->avail_gpa : NULL;
		break;
	case KL_VMMIO_QUEUE_USED_LOW: case KL_VMMIO_QUEUE_USED_HIGH:
		ring = vq ? &vq->used_gpa : NULL;
		break;
	default: break; /* read-only, SHMSel (no regions) or reserved */
	}
	if (ring && !vq->enabled)
		set_half(ring, off & 4, v);
}

static uint64_t io_read(void *opaque, uint64_t off, unsigned size)
{
	return kl_virtio_mmio_read(opaque, off, size);
}

static void io_write(void *opaque, uint64_t off, uint64_t val, unsigned size)
{
	kl_virtio_mmio_write(opaque, off, val, size);
}

static const struct kl_io_ops mmio_ops = { .read = io_read, .write = io_write };

/* ---------------- VM state ---------------- */

static int vmmio_save(void *opaque, struct kl_vms_out *out, char **err)
{
	struct kl_virtio_dev *vd = opaque;
	if (kl_virtio_state_check_quiesced(vd, err) < 0)
		return -1;
	kl_vms_put_u64(out, vd->mmio_base);
	kl_vms_put_u32(out, vd->mmio_gsi);
	kl_virtio_state_save_regs(vd, out);
	kl_virtio_state_save_queues(vd, out);
	return 0;
}

static int vmmio_load(void *opaque, struct kl_vms_in *in, uint32_t version, char **err)
{
	(void)version;
	struct kl_virtio_dev *vd = opaque;
	uint64_t base = kl_vms_get_u64(in);
	uint32_t gsi = kl_vms_get_u32(in);
	if (kl_vms_failed(in))
		return -1;
	if (base != vd->mmio_base || gsi != vd->mmio_gsi) {
		*err = g_strdup_printf("transport at %#" G_GINT64_MODIFIER "x irq %u in the stream, "
				       "%#" G_GINT64_MODIFIER "x irq %u here", (guint64)base, gsi,
				       (guint64)vd->mmio_base, vd->mmio_gsi);
		return -1;
	}
	struct kl_virtio_regs_state st;
	if (kl_virtio_state_load_regs(vd, in, 0, &st, err) < 0 ||
	    kl_virtio_state_load_queues(vd, in, 0, &st, err) < 0)
		return -1;
	return kl_virtio_state_commit(vd, &st, err);
}

static int vmmio_post_load(void *opaque, char **err)
{
	(void)err;
	struct kl_virtio_dev *vd = opaque;
	set_line(vd); /* the line follows InterruptStatus */
	kl_virtio_kick_pending(vd);
	return 0;
}

static const struct kl_vmstate_ops vmmio_vmstate_ops = {
	.kind = "virtio-mmio",
	.version = VMMIO_STATE_VERSION,
	.min_version = VMMIO_STATE_VERSION,
	.save = vmmio_save,
	.load = vmmio_load,
	.post_load = vmmio_post_load,
};

/* ---------------- life cycle ---------------- */

static void vmmio_reset(void *opaque)
{
	kl_virtio_reset(opaque);
}

static void vmmio_free(void *opaque)
{
	struct kl_virtio_dev *vd = opaque;
	kl_vmstate_unregister(vd->vm, &vmmio_vmstate_ops, vd);
	kl_bus_unregister(&vd->vm->mmio, vd->mmio_base, vd);
	kl_virtio_dev_free(vd);
}

struct kl_virtio_dev *kl_virtio_mmio_create(struct kl_vm *vm, const struct kl_pci_platform_ops *plat,
					    uint64_t base, unsigned gsi,
					    const struct kl_virtio_pci_info *info,
					    const struct kl_virtio_ops *ops, void *opaque, char **err)
{
	if (!plat)
		plat = kl_pci_default_platform_ops;
	struct kl_virtio_dev *vd = kl_virtio_dev_new(vm, &mmio_transport, plat, info,
						     KL_VMMIO_SIZE - KL_VMMIO_CONFIG, ops, opaque, err);
	if (!vd)
		return NULL;
	vd->mmio_base = base;
	vd->mmio_gsi = gsi;
	vd->notify_base = base + KL_VMMIO_QUEUE_NOTIFY;
	vd->notify_stride = 0;
	vd->notify_len = 4;
	vd->notify_datamatch = true;
	snprintf(vd->inst, sizeof(vd->inst), "%#" G_GINT64_MODIFIER "x", (guint64)base);
	if (kl_bus_register(&vm->mmio, base, KL_VMMIO_SIZE, &mmio_ops, vd, info->name) < 0) {
		*err = g_strdup_printf("%s: the virtio-mmio range at %#" G_GINT64_MODIFIER
				       "x is taken", info->name, (guint64)base);
		kl_virtio_dev_free(vd);
		return NULL;
	}
	kl_virtio_notify_init(vd);
	vd->notify_mapped = true;
	kl_virtio_notify_assign(vd, true);
	kl_vmstate_register(vm, vd->inst, &vmmio_vmstate_ops, vd);
	if (plat && plat->add_reset_handler)
		plat->add_reset_handler(vm, vmmio_reset, vd);
	if (plat && plat->add_cleanup)
		plat->add_cleanup(vm, vmmio_free, vd);
	vd->created = true;
	return vd;
}

void kl_virtio_mmio_destroy(struct kl_virtio_dev *vd)
{
	if (vd)
		vmmio_free(vd);
}
