/* VM state of the transport-neutral virtio core (the registers and queues
 * every transport section starts with: kl_virtio_state_*_regs/_queues) and
 * of the virtio-pci transport (include/kvmlite/vmstate.h): section
 * "virtio-pci/0000:00:SS.0", registered by kl_virtio_pci_create beside the
 * function's "pci/..." section (config space, BARs, MSI-X: src/hw/pci_state.c)
 * and before the device's own ("virtio-blk/...", "virtio-net/...").
 *
 * Version 1:
 *   u32 nvqs, u64 host_features (both must equal the destination's)
 *   u64 guest_features, u64 features, u32 dfselect, u32 gfselect
 *   u8 status, u8 broken, u8 isr, u8 config_generation, u16 config_vector,
 *   u16 queue_sel
 *   u8 pcicfg bar, u32 pcicfg offset, u32 pcicfg length (the
 *      VIRTIO_PCI_CAP_PCI_CFG window, written by the guest outside the PCI
 *      layer's writable mask)
 *   nvqs x queue (kl_virtq_save: src/virtio/virtqueue.c)
 *
 * Save refuses while requests are in flight: the device's quiesce hook
 * completes them first (virtio-blk drains its backend), so the used ring in
 * guest RAM and the indices saved here agree.  Load validates everything
 * (features a subset of the offered ones, DRIVER_OK only with FEATURES_OK,
 * vectors within the MSI-X table, every enabled ring in guest RAM, indices
 * possible) before it changes the device, then re-applies the accepted
 * features through the device's set_features hook. */
#include <glib.h>
#include <string.h>

#include "kvmlite/pci.h"
#include "kvmlite/virtio.h"
#include "kvmlite/byteorder.h"
#include "kvmlite/vm.h"
#include "kvmlite/vmstate.h"

#define VIRTIO_STATE_VERSION 1

int kl_virtio_state_check_quiesced(const struct kl_virtio_dev *vd, char **err)
{
	if (vd->inflight || vd->draining) {
		*err = g_strdup_printf("%s: %u requests still in flight after quiesce", vd->name,
				       vd->inflight);
		return -1;
	}
	return 0;
}

void kl_virtio_state_save_regs(const struct kl_virtio_dev *vd, struct kl_vms_out *out)
{
	kl_vms_put_u32(out, vd->nvqs);
	kl_vms_put_u64(out, vd->host_features);
	kl_vms_put_u64(out, vd->guest_features);
	kl_vms_put_u64(out, vd->features);
	kl_vms_put_u32(out, vd->dfselect);
	kl_vms_put_u32(out, vd->gfselect);
	kl_vms_put_u8(out, vd->status);
	kl_vms_put_u8(out, vd->broken);
	kl_vms_put_u8(out, vd->isr);
	kl_vms_put_u8(out, vd->config_generation);
	kl_vms_put_u16(out, vd->config_vector);
	kl_vms_put_u16(out, vd->queue_sel);
}

void kl_virtio_state_save_queues(const struct kl_virtio_dev *vd, struct kl_vms_out *out)
{
	for (unsigned q = 0; q < vd->nvqs; q++)
		kl_virtq_save(&vd->vqs[q], out);
}

static int vpci_save(void *opaque, struct kl_vms_out *out, char **err)
{
	struct kl_virtio_dev *vd = opaque;
	if (kl_virtio_state_check_quiesced(vd, err) < 0)
		return -1;
	kl_virtio_state_save_regs(vd, out);
	const uint8_t *c = kl_pci_config(vd->pci) + vd->pcicfg_off;
	kl_vms_put_u8(out, c[4]);
	kl_vms_put_u32(out, kl_le32(c + 8));
	kl_vms_put_u32(out, kl_le32(c + 12));
	kl_virtio_state_save_queues(vd, out);
	return 0;
}

static bool vector_ok(unsigned nvec, uint16_t v)
{
	return v == KL_VIRTIO_NO_VECTOR || v < nvec;
}

int kl_virtio_state_load_regs(const struct kl_virtio_dev *vd, struct kl_vms_in *in, unsigned nvec,
			      struct kl_virtio_regs_state *st, char **err)
{
	memset(st, 0, sizeof(*st));
	uint32_t nvqs = kl_vms_get_u32(in);
	uint64_t host = kl_vms_get_u64(in);
	if (kl_vms_failed(in))
		return -1;
	if (nvqs != vd->nvqs) {
		*err = g_strdup_printf("number of queues differs: stream %u, here %u", nvqs, vd->nvqs);
		return -1;
	}
	if (host != vd->host_features) {
		*err = g_strdup_printf("offered features differ: stream %#" G_GINT64_MODIFIER
				       "x, here %#" G_GINT64_MODIFIER "x", (guint64)host,
				       (guint64)vd->host_features);
		return -1;
	}
	st->guest_features = kl_vms_get_u64(in);
	st->features = kl_vms_get_u64(in);
	st->dfselect = kl_vms_get_u32(in);
	st->gfselect = kl_vms_get_u32(in);
	st->status = kl_vms_get_u8(in);
	st->broken = kl_vms_get_u8(in);
	st->isr = kl_vms_get_u8(in);
	st->config_generation = kl_vms_get_u8(in);
	st->config_vector = kl_vms_get_u16(in);
	st->queue_sel = kl_vms_get_u16(in);
	if (kl_vms_failed(in))
		return -1;
	uint64_t feat = st->features, gfeat = st->guest_features;
	uint8_t status = st->status;
	if (feat & ~host) {
		*err = g_strdup_printf("accepted features %#" G_GINT64_MODIFIER "x were not offered",
				       (guint64)feat);
		return -1;
	}
	if ((status & KL_VIRTIO_S_FEATURES_OK) && (feat != gfeat || !(feat >> KL_VIRTIO_F_VERSION_1 & 1))) {
		*err = g_strdup_printf("status has FEATURES_OK but the accepted features %#"
				       G_GINT64_MODIFIER "x are not a valid negotiation",
				       (guint64)feat);
		return -1;
	}
	if ((status & KL_VIRTIO_S_DRIVER_OK) && !(status & KL_VIRTIO_S_FEATURES_OK)) {
		*err = g_strdup_printf("status %#x has DRIVER_OK without FEATURES_OK", status);
		return -1;
	}
	if (st->broken > 1 || (st->broken && !(status & KL_VIRTIO_S_NEEDS_RESET))) {
		*err = g_strdup_printf("broken flag %u does not match status %#x", st->broken, status);
		return -1;
	}
	if (st->isr > 3) {
		*err = g_strdup_printf("ISR %#x has reserved bits", st->isr);
		return -1;
	}
	if (!vector_ok(nvec, st->config_vector)) {
		*err = g_strdup_printf("config MSI-X vector %u is past the table (%u vectors)",
				       st->config_vector, nvec);
		return -1;
	}
	return 0;
}

int kl_virtio_state_load_queues(const struct kl_virtio_dev *vd, struct kl_vms_in *in,
				unsigned nvec, struct kl_virtio_regs_state *st, char **err)
{
	uint64_t feat = st->features;
	struct kl_virtq *tmp = g_new0(struct kl_virtq, vd->nvqs);
	for (unsigned q = 0; q < vd->nvqs; q++) {
		if (kl_virtq_load(&tmp[q], &vd->vqs[q], in) < 0)
			goto fail;
		if (!vector_ok(nvec, tmp[q].msix_vector)) {
			*err = g_strdup_printf("queue %u: MSI-X vector %u is past the table (%u vectors)",
					       q, tmp[q].msix_vector, nvec);
			goto fail;
		}
		bool ev = feat >> KL_VIRTIO_F_EVENT_IDX & 1, ind = feat >> KL_VIRTIO_F_INDIRECT_DESC & 1;
		if (tmp[q].enabled && (tmp[q].event_idx != ev || tmp[q].indirect != ind)) {
			*err = g_strdup_printf("queue %u: ring features (event_idx %d, indirect %d) "
					       "differ from the accepted features", q,
					       tmp[q].event_idx, tmp[q].indirect);
			goto fail;
		}
	}
	if (kl_vms_failed(in))
		goto fail;
	st->vqs = tmp;
	return 0;
fail:
	g_free(tmp);
	return -1;
}

void kl_virtio_state_abort(struct kl_virtio_regs_state *st)
{
	g_free(st->vqs);
	st->vqs = NULL;
}

int kl_virtio_state_commit(struct kl_virtio_dev *vd, struct kl_virtio_regs_state *st, char **err)
{
	vd->guest_features = st->guest_features;
	vd->features = st->features;
	vd->dfselect = st->dfselect;
	vd->gfselect = st->gfselect;
	vd->status = st->status;
	vd->broken = st->broken;
	vd->isr = st->isr;
	vd->config_generation = st->config_generation;
	vd->config_vector = st->config_vector;
	vd->queue_sel = st->queue_sel;
	vd->draining = false;
	for (unsigned q = 0; q < vd->nvqs; q++) {
		st->vqs[q].gen = vd->vqs[q].gen + 1; /* nothing of before belongs here */
		vd->vqs[q] = st->vqs[q];
	}
	kl_virtio_state_abort(st);
	if ((vd->status & KL_VIRTIO_S_FEATURES_OK) && vd->ops->set_features &&
	    !vd->ops->set_features(vd, vd->features)) {
		*err = g_strdup_printf("the device refuses the features %#" G_GINT64_MODIFIER "x",
				       (guint64)vd->features);
		return -1;
	}
	return 0;
}

static int vpci_load(void *opaque, struct kl_vms_in *in, uint32_t version, char **err)
{
	(void)version;
	struct kl_virtio_dev *vd = opaque;
	unsigned nvec = kl_pci_msix_nvec(vd->pci);
	struct kl_virtio_regs_state st;
	if (kl_virtio_state_load_regs(vd, in, nvec, &st, err) < 0)
		return -1;
	uint8_t cbar = kl_vms_get_u8(in);
	uint32_t coff = kl_vms_get_u32(in);
	uint32_t clen = kl_vms_get_u32(in);
	if (kl_vms_failed(in))
		return -1;
	if (kl_virtio_state_load_queues(vd, in, nvec, &st, err) < 0)
		return -1;
	/* commit */
	uint8_t *c = kl_pci_config(vd->pci) + vd->pcicfg_off;
	c[4] = cbar;
	kl_put32(c + 8, coff);
	kl_put32(c + 12, clen);
	return kl_virtio_state_commit(vd, &st, err);
}

/* A kick the source took but had not handled when it stopped is not in the
 * stream: look at every ring once the whole machine is back. */
static int vpci_post_load(void *opaque, char **err)
{
	(void)err;
	kl_virtio_kick_pending(opaque);
	return 0;
}

static const struct kl_vmstate_ops vpci_vmstate_ops = {
	.kind = "virtio-pci",
	.version = VIRTIO_STATE_VERSION,
	.min_version = VIRTIO_STATE_VERSION,
	.save = vpci_save,
	.load = vpci_load,
	.post_load = vpci_post_load,
};

void kl_virtio_state_register(struct kl_virtio_dev *vd)
{
	kl_vmstate_register(vd->vm, vd->inst, &vpci_vmstate_ops, vd);
}

void kl_virtio_state_unregister(struct kl_virtio_dev *vd)
{
	kl_vmstate_unregister(vd->vm, &vpci_vmstate_ops, vd);
}
