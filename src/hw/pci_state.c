/* VM state of a PCI function (include/kvmlite/vmstate.h): section
 * "pci/0000:00:SS.0", registered for every function (the host bridge too)
 * when it is created and removed when it is freed.
 *
 * Version 1:
 *   cfg[256]            config space as the guest programmed it
 *   u8  intx_level      the device's INTx level
 *   u32 nvec            MSI-X vectors (must equal the destination's)
 *   nvec x { u32 addr_lo, addr_hi, data, ctrl }   the MSI-X table
 *   u64 pending         the PBA
 *   (host bridge only) u32 cf8   the CONFIG_ADDRESS latch
 *
 * Load checks the identity bytes (vendor, device, revision, class, header
 * type, subsystem, capability pointer, interrupt pin) against the
 * destination's function, merges the other config bytes under the
 * writable mask (read-only capability bodies stay as the destination built
 * them), refuses a BAR value with wrong type bits or a memory BAR that
 * decodes over guest RAM, then re-maps the BARs at the loaded addresses.
 * post_load maps BARs again (two devices may have swapped addresses: the
 * second one frees the first one's place only when it loads) and re-creates
 * the MSI-X KVM routes / irqfds and the INTx line. */
#include <glib.h>
#include <string.h>

#include "kvmlite/byteorder.h"
#include "kvmlite/vm.h"
#include "kvmlite/vmstate.h"
#include "pci_priv.h"

#define PCI_STATE_VERSION 1

static int pci_save(void *opaque, struct kl_vms_out *out, char **err)
{
	(void)err;
	struct kl_pci_dev *d = opaque;
	kl_vms_put_bytes(out, d->cfg, KL_PCI_CFG_SIZE);
	kl_vms_put_u8(out, d->intx_level ? 1 : 0);
	kl_vms_put_u32(out, d->msix_nvec);
	for (unsigned v = 0; v < d->msix_nvec; v++) {
		kl_vms_put_u32(out, d->vec[v].addr_lo);
		kl_vms_put_u32(out, d->vec[v].addr_hi);
		kl_vms_put_u32(out, d->vec[v].data);
		kl_vms_put_u32(out, d->vec[v].ctrl);
	}
	kl_vms_put_u64(out, d->pending);
	if (d->slot == 0)
		kl_vms_put_u32(out, d->host->cf8);
	return 0;
}

/* config bytes that name the function: they must match */
static const struct {
	unsigned off, len;
	const char *what;
} identity[] = {
	{ KL_PCI_VENDOR_ID, 2, "vendor id" },
	{ KL_PCI_DEVICE_ID, 2, "device id" },
	{ KL_PCI_REVISION_ID, 1, "revision" },
	{ KL_PCI_CLASS_PROG, 3, "class code" },
	{ KL_PCI_HEADER_TYPE, 1, "header type" },
	{ KL_PCI_SUBSYS_VENDOR_ID, 2, "subsystem vendor id" },
	{ KL_PCI_SUBSYS_ID, 2, "subsystem id" },
	{ KL_PCI_CAP_PTR, 1, "capability pointer" },
	{ KL_PCI_INTERRUPT_PIN, 1, "interrupt pin" },
};

/* The BAR register value bar_write_cfg() would have stored. */
static bool bar_value_ok(const struct kl_pci_dev *d, unsigned idx, uint32_t val)
{
	const struct pci_bar *b = &d->bars[idx];
	if (b->present) {
		uint32_t lowbits, mask;
		if (b->type == KL_PCI_BAR_IO) {
			lowbits = 1;
			mask = ~(uint32_t)(b->size - 1) & ~3u;
		} else {
			lowbits = (b->type == KL_PCI_BAR_MEM64 ? 4 : 0) | (b->prefetch ? 8 : 0);
			mask = ~(uint32_t)(b->size - 1) & ~0xfu;
		}
		return val == ((val & mask) | lowbits);
	}
	if (idx > 0 && d->bars[idx - 1].present && d->bars[idx - 1].type == KL_PCI_BAR_MEM64) {
		uint32_t mask = ~(uint32_t)((d->bars[idx - 1].size - 1) >> 32);
		return val == (val & mask);
	}
	return val == 0;
}

static bool overlaps_ram(const struct kl_guest_mem *m, uint64_t a, uint64_t len)
{
	for (unsigned i = 0; i < m->nregions; i++) {
		const struct kl_mem_region *r = &m->regions[i];
		if (a < r->gpa + r->size && r->gpa < a + len)
			return true;
	}
	return false;
}

/* A memory BAR the new config decodes (same rule as bar_update) must not
 * lie over guest RAM. */
static bool bar_over_ram(const struct kl_pci_dev *d, const uint8_t *cfg, unsigned idx,
			 uint64_t *addr)
{
	const struct pci_bar *b = &d->bars[idx];
	if (!b->present || b->type == KL_PCI_BAR_IO ||
	    !(kl_le32(&cfg[KL_PCI_COMMAND]) & KL_PCI_CMD_MEMORY))
		return false;
	uint32_t lo = kl_le32(&cfg[KL_PCI_BAR0 + 4 * idx]) & ~0xfu;
	uint64_t a = lo;
	if (b->type == KL_PCI_BAR_MEM64)
		a |= (uint64_t)kl_le32(&cfg[KL_PCI_BAR0 + 4 * (idx + 1)]) << 32;
	uint32_t sizing = ~(uint32_t)(b->size - 1) & ~0xfu;
	uint64_t limit = b->type == KL_PCI_BAR_MEM32 ? KL_4G : (1ULL << 52);
	if (a == 0 || lo == sizing || a + b->size <= a || a + b->size > limit)
		return false; /* never mapped: harmless */
	*addr = a;
	return overlaps_ram(&d->host->vm->mem, a, b->size);
}

static int pci_load(void *opaque, struct kl_vms_in *in, uint32_t version, char **err)
{
	(void)version;
	struct kl_pci_dev *d = opaque;
	uint8_t cfg[KL_PCI_CFG_SIZE];
	kl_vms_get_bytes(in, cfg, sizeof(cfg));
	uint8_t intx = kl_vms_get_u8(in);
	uint32_t nvec = kl_vms_get_u32(in);
	if (kl_vms_failed(in))
		return -1;
	if (nvec != d->msix_nvec) {
		*err = g_strdup_printf("MSI-X vector count differs: stream %u, here %u", nvec,
				       d->msix_nvec);
		return -1;
	}
	struct msix_vec *vec = g_new0(struct msix_vec, nvec ? nvec : 1);
	for (unsigned v = 0; v < nvec; v++) {
		vec[v].addr_lo = kl_vms_get_u32(in);
		vec[v].addr_hi = kl_vms_get_u32(in);
		vec[v].data = kl_vms_get_u32(in);
		vec[v].ctrl = kl_vms_get_u32(in);
	}
	uint64_t pending = kl_vms_get_u64(in);
	uint32_t cf8 = d->slot == 0 ? kl_vms_get_u32(in) : 0;
	int ret = -1;
	if (kl_vms_failed(in))
		goto out;
	for (unsigned i = 0; i < G_N_ELEMENTS(identity); i++) {
		unsigned o = identity[i].off;
		if (memcmp(&cfg[o], &d->cfg[o], identity[i].len) != 0) {
			uint32_t s = 0, h = 0;
			for (unsigned k = 0; k < identity[i].len; k++) {
				s |= (uint32_t)cfg[o + k] << (8 * k);
				h |= (uint32_t)d->cfg[o + k] << (8 * k);
			}
			*err = g_strdup_printf("%s differs: stream %#x, here %#x", identity[i].what, s, h);
			goto out;
		}
	}
	if (intx > 1) {
		*err = g_strdup_printf("INTx level %u is not 0 or 1", intx);
		goto out;
	}
	for (unsigned v = 0; v < nvec; v++) {
		if (vec[v].addr_lo & 3) {
			*err = g_strdup_printf("MSI-X vector %u: address %#x is not dword aligned", v,
					       vec[v].addr_lo);
			goto out;
		}
		if (vec[v].ctrl & ~(uint32_t)KL_PCI_MSIX_ENTRY_CTRL_MASKBIT) {
			*err = g_strdup_printf("MSI-X vector %u: control %#x has reserved bits", v,
					       vec[v].ctrl);
			goto out;
		}
	}
	if (nvec < 64 && (pending >> nvec)) {
		*err = g_strdup_printf("MSI-X pending bits %#" G_GINT64_MODIFIER "x name vectors past %u",
				       (guint64)pending, nvec);
		goto out;
	}
	if (d->slot == 0 && (cf8 & ~0x80fffffcu)) {
		*err = g_strdup_printf("CONFIG_ADDRESS %#x has reserved bits", cf8);
		goto out;
	}
	/* the new config: identity checked, BARs as loaded, STATUS derived,
	 * everything else merged under the writable mask */
	uint8_t nc[KL_PCI_CFG_SIZE];
	for (unsigned o = 0; o < KL_PCI_CFG_SIZE; o++)
		nc[o] = (d->cfg[o] & ~d->wmask[o]) | (cfg[o] & d->wmask[o]);
	for (unsigned i = 0; i < NBARS; i++) {
		uint32_t val = kl_le32(&cfg[KL_PCI_BAR0 + 4 * i]);
		if (!bar_value_ok(d, i, val)) {
			*err = g_strdup_printf("BAR%u value %#x does not fit the BAR (type bits or size)",
					       i, val);
			goto out;
		}
		kl_put32(&nc[KL_PCI_BAR0 + 4 * i], val);
	}
	for (unsigned i = 0; i < NBARS; i++) {
		uint64_t a;
		if (bar_over_ram(d, nc, i, &a)) {
			*err = g_strdup_printf("BAR%u at %#" G_GINT64_MODIFIER "x overlaps guest RAM", i,
					       (guint64)a);
			goto out;
		}
	}
	/* commit */
	memcpy(nc + KL_PCI_STATUS, d->cfg + KL_PCI_STATUS, 2);
	memcpy(d->cfg, nc, sizeof(nc));
	d->intx_level = intx;
	for (unsigned v = 0; v < nvec; v++) {
		d->vec[v].addr_lo = vec[v].addr_lo;
		d->vec[v].addr_hi = vec[v].addr_hi;
		d->vec[v].data = vec[v].data;
		d->vec[v].ctrl = vec[v].ctrl;
	}
	d->pending = pending;
	if (d->slot == 0)
		d->host->cf8 = cf8;
	pci_bars_update(d);
	ret = 0;
out:
	g_free(vec);
	return ret;
}

static int pci_post_load(void *opaque, char **err)
{
	(void)err;
	struct kl_pci_dev *d = opaque;
	pci_bars_update(d);
	pci_msix_update_all(d);
	pci_intx_update(d);
	return 0;
}

static const struct kl_vmstate_ops pci_vmstate_ops = {
	.kind = "pci",
	.version = PCI_STATE_VERSION,
	.min_version = PCI_STATE_VERSION,
	.save = pci_save,
	.load = pci_load,
	.post_load = pci_post_load,
};

void kl_pci_addr_str(const struct kl_pci_dev *d, char *buf, size_t len)
{
	g_snprintf(buf, len, "0000:00:%02x.0", d->slot);
}

void pci_state_register(struct kl_pci_dev *d)
{
	char inst[KL_PCI_ADDR_STR_LEN];
	kl_pci_addr_str(d, inst, sizeof(inst));
	kl_vmstate_register(d->host->vm, inst, &pci_vmstate_ops, d);
}

void pci_state_unregister(struct kl_pci_dev *d)
{
	kl_vmstate_unregister(d->host->vm, &pci_vmstate_ops, d);
}
