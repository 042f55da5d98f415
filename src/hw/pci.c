/* PCI bus 0: type-1 config mechanism, host bridge, BARs, capabilities,
 * MSI-X and INTx.  See include/kvmlite/pci.h for the platform decisions. */
#include "kvmlite/pci.h"

#include <errno.h>
#include <glib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "kvmlite/vm.h"
#include "pci_priv.h"

/* Set by src/hw/pci_kvm.c (a constructor) in the kvmlite executable. */
const struct kl_pci_platform_ops *kl_pci_default_platform_ops;
static const struct kl_pci_platform_ops no_platform_ops;

/* One VM per process in practice; unit tests may create several. */
static GPtrArray *hosts;

struct kl_pci_host *kl_pci_host_get(struct kl_vm *vm)
{
	if (!hosts)
		return NULL;
	for (unsigned i = 0; i < hosts->len; i++) {
		struct kl_pci_host *h = g_ptr_array_index(hosts, i);
		if (h->vm == vm)
			return h;
	}
	return NULL;
}

static inline uint32_t get32(const uint8_t *p)
{
	return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline void put32(uint8_t *p, uint32_t v)
{
	p[0] = v;
	p[1] = v >> 8;
	p[2] = v >> 16;
	p[3] = v >> 24;
}
static inline uint16_t get16(const uint8_t *p) { return p[0] | p[1] << 8; }
static inline void put16(uint8_t *p, uint16_t v)
{
	p[0] = v;
	p[1] = v >> 8;
}

static uint64_t ones(unsigned size)
{
	return size >= 8 ? ~0ULL : (1ULL << (size * 8)) - 1;
}

/* ---------------- MSI-X ---------------- */

static bool msix_enabled(const struct kl_pci_dev *d)
{
	return d->msix_nvec && (get16(&d->cfg[d->msix_cap + 2]) & KL_PCI_MSIX_CTRL_ENABLE);
}

static bool msix_fmasked(const struct kl_pci_dev *d)
{
	return get16(&d->cfg[d->msix_cap + 2]) & KL_PCI_MSIX_CTRL_MASKALL;
}

static bool vec_deliverable(const struct kl_pci_dev *d, unsigned v)
{
	return msix_enabled(d) && !msix_fmasked(d) &&
	       !(d->vec[v].ctrl & KL_PCI_MSIX_ENTRY_CTRL_MASKBIT);
}

static uint64_t vec_addr(const struct msix_vec *m)
{
	return (uint64_t)m->addr_hi << 32 | m->addr_lo;
}

static void msix_deliver(struct kl_pci_dev *d, unsigned v)
{
	struct msix_vec *m = &d->vec[v];
	const struct kl_pci_platform_ops *ops = d->host->ops;
	if (m->irqfd) {
		uint64_t one = 1;
		if (write(m->efd, &one, sizeof(one)) == sizeof(one))
			return;
	}
	if (ops->signal_msi)
		ops->signal_msi(d->host->vm, vec_addr(m), m->data);
}

static bool msix_efd_ready(int fd, GIOCondition cond, void *opaque);

static void vec_watch(struct kl_pci_dev *d, unsigned v, bool on)
{
	struct msix_vec *m = &d->vec[v];
	const struct kl_pci_platform_ops *ops = d->host->ops;
	if (on && !m->watch && m->efd >= 0 && ops->fd_add) {
		m->watch = ops->fd_add(m->efd, msix_efd_ready, &d->vec[v]);
	} else if (!on && m->watch) {
		if (ops->source_remove)
			ops->source_remove(m->watch);
		m->watch = 0;
	}
}

/* Bring vector v's KVM state in line with its table entry and masks. */
static void msix_update_vector(struct kl_pci_dev *d, unsigned v)
{
	struct msix_vec *m = &d->vec[v];
	const struct kl_pci_platform_ops *ops = d->host->ops;
	struct kl_vm *vm = d->host->vm;

	if (!vec_deliverable(d, v)) {
		if (m->irqfd) {
			if (ops->irqfd)
				ops->irqfd(vm, m->efd, m->gsi, false);
			m->irqfd = false;
		}
		vec_watch(d, v, true);
		return;
	}
	uint64_t addr = vec_addr(m);
	if (m->gsi < 0) {
		if (ops->msi_route_add) {
			m->gsi = ops->msi_route_add(vm, addr, m->data);
			m->route_addr = addr;
			m->route_data = m->data;
		}
	} else if (m->route_addr != addr || m->route_data != m->data) {
		if (ops->msi_route_update && ops->msi_route_update(vm, m->gsi, addr, m->data) == 0) {
			m->route_addr = addr;
			m->route_data = m->data;
		}
	}
	if (m->gsi >= 0 && !m->irqfd && m->efd >= 0 && ops->irqfd &&
	    ops->irqfd(vm, m->efd, m->gsi, true) == 0)
		m->irqfd = true;
	/* without an irqfd the watch turns eventfd writes into MSIs */
	vec_watch(d, v, !m->irqfd);
	if (d->pending & (1ULL << v)) {
		d->pending &= ~(1ULL << v);
		msix_deliver(d, v);
	}
}

static bool msix_efd_ready(int fd, GIOCondition cond, void *opaque)
{
	(void)cond;
	struct msix_vec *m = opaque;
	uint64_t cnt;
	if (read(fd, &cnt, sizeof(cnt)) != sizeof(cnt))
		return true;
	struct kl_pci_dev *d = m->dev;
	unsigned v = m->idx;
	if (vec_deliverable(d, v))
		msix_deliver(d, v);
	else if (msix_enabled(d))
		d->pending |= 1ULL << v;
	return true;
}

void pci_msix_update_all(struct kl_pci_dev *d)
{
	for (unsigned v = 0; v < d->msix_nvec; v++)
		msix_update_vector(d, v);
}

static uint32_t msix_table_read32(struct kl_pci_dev *d, uint64_t off)
{
	unsigned v = off / 16, w = (off % 16) / 4;
	if (v >= d->msix_nvec)
		return 0;
	struct msix_vec *m = &d->vec[v];
	switch (w) {
	case 0: return m->addr_lo;
	case 1: return m->addr_hi;
	case 2: return m->data;
	default: return m->ctrl;
	}
}

static void msix_table_write32(struct kl_pci_dev *d, uint64_t off, uint32_t val)
{
	unsigned v = off / 16, w = (off % 16) / 4;
	if (v >= d->msix_nvec)
		return;
	struct msix_vec *m = &d->vec[v];
	switch (w) {
	case 0: m->addr_lo = val & ~3u; break;
	case 1: m->addr_hi = val; break;
	case 2: m->data = val; break;
	default: m->ctrl = val & KL_PCI_MSIX_ENTRY_CTRL_MASKBIT; break;
	}
	msix_update_vector(d, v);
}

/* Table and PBA accesses of any size 1..8 within the structure. */
static uint64_t msix_read(struct kl_pci_dev *d, bool table, uint64_t off, unsigned size)
{
	uint64_t val = 0;
	for (unsigned i = 0; i < size; i++) {
		uint64_t o = off + i;
		uint8_t b;
		if (table)
			b = msix_table_read32(d, o & ~3ULL) >> ((o & 3) * 8);
		else
			b = o < 8 ? d->pending >> (o * 8) : 0;
		val |= (uint64_t)b << (i * 8);
	}
	return val;
}

static void msix_write(struct kl_pci_dev *d, uint64_t off, uint64_t val, unsigned size)
{
	/* the PBA is read-only; table writes merge into dwords */
	uint64_t o = off;
	unsigned left = size;
	while (left) {
		uint64_t dw = o & ~3ULL;
		unsigned sh = o & 3, n = 4 - sh < left ? 4 - sh : left;
		uint32_t cur = msix_table_read32(d, dw);
		uint32_t mask = (uint32_t)(ones(n) << (sh * 8));
		uint32_t nv = (cur & ~mask) | ((uint32_t)(val << (sh * 8)) & mask);
		msix_table_write32(d, dw, nv);
		val >>= n * 8;
		o += n;
		left -= n;
	}
}

/* ---------------- BAR dispatch ---------------- */

static bool in_range(uint64_t off, unsigned size, uint64_t base, uint64_t len)
{
	return off >= base && off + size <= base + len;
}

static uint64_t bar_read(void *opaque, uint64_t off, unsigned size)
{
	struct pci_bar *b = opaque;
	struct kl_pci_dev *d = b->dev;
	if (d->msix_nvec && d->msix_bar == b->idx) {
		if (in_range(off, size, d->msix_table_off, d->msix_nvec * 16ULL))
			return msix_read(d, true, off - d->msix_table_off, size);
		if (in_range(off, size, d->msix_pba_off, 8))
			return msix_read(d, false, off - d->msix_pba_off, size);
	}
	if (off + size > b->size || !b->ops || !b->ops->read)
		return ones(size);
	return b->ops->read(b->opaque, off, size);
}

static void bar_write(void *opaque, uint64_t off, uint64_t val, unsigned size)
{
	struct pci_bar *b = opaque;
	struct kl_pci_dev *d = b->dev;
	if (d->msix_nvec && d->msix_bar == b->idx) {
		if (in_range(off, size, d->msix_table_off, d->msix_nvec * 16ULL)) {
			msix_write(d, off - d->msix_table_off, val, size);
			return;
		}
		if (in_range(off, size, d->msix_pba_off, 8))
			return;
	}
	if (off + size > b->size || !b->ops || !b->ops->write)
		return;
	b->ops->write(b->opaque, off, val, size);
}

static const struct kl_io_ops bar_io_ops = { .read = bar_read, .write = bar_write };

static uint64_t bar_cfg_addr(const struct kl_pci_dev *d, const struct pci_bar *b)
{
	uint32_t lo = get32(&d->cfg[KL_PCI_BAR0 + 4 * b->idx]);
	if (b->type == KL_PCI_BAR_IO)
		return lo & ~3u;
	uint64_t a = lo & ~0xfu;
	if (b->type == KL_PCI_BAR_MEM64)
		a |= (uint64_t)get32(&d->cfg[KL_PCI_BAR0 + 4 * (b->idx + 1)]) << 32;
	return a;
}

static struct kl_bus *bar_bus(struct kl_pci_dev *d, const struct pci_bar *b)
{
	return b->type == KL_PCI_BAR_IO ? &d->host->vm->pio : &d->host->vm->mmio;
}

static void bar_unmap(struct kl_pci_dev *d, struct pci_bar *b)
{
	if (!b->mapped)
		return;
	kl_bus_unregister(bar_bus(d, b), b->mapped_addr, b);
	b->mapped = false;
	if (d->ops && d->ops->bar_map)
		d->ops->bar_map(d, d->opaque, b->idx, b->mapped_addr, false);
}

static void bar_update(struct kl_pci_dev *d, struct pci_bar *b)
{
	uint16_t cmd = get16(&d->cfg[KL_PCI_COMMAND]);
	bool io = b->type == KL_PCI_BAR_IO;
	bool decode = cmd & (io ? KL_PCI_CMD_IO : KL_PCI_CMD_MEMORY);
	uint64_t a = bar_cfg_addr(d, b);
	uint64_t limit = io ? 0x10000ULL : b->type == KL_PCI_BAR_MEM32 ? KL_4G : (1ULL << 52);
	/* the sizing pattern (all-ones in the low dword) is never a placement */
	uint32_t lo = get32(&d->cfg[KL_PCI_BAR0 + 4 * b->idx]) & (io ? ~3u : ~0xfu);
	uint32_t sizing = ~(uint32_t)(b->size - 1) & (io ? ~3u : ~0xfu);
	bool valid = decode && a != 0 && lo != sizing && a + b->size > a && a + b->size <= limit;
	if (b->mapped && valid && a == b->mapped_addr)
		return;
	bar_unmap(d, b);
	if (!valid)
		return;
	if (kl_bus_register(bar_bus(d, b), a, b->size, &bar_io_ops, b, b->name) < 0)
		return; /* overlapping placement: leave the BAR unmapped */
	b->mapped = true;
	b->mapped_addr = a;
	if (d->ops && d->ops->bar_map)
		d->ops->bar_map(d, d->opaque, b->idx, a, true);
}

void pci_bars_update(struct kl_pci_dev *d)
{
	for (unsigned i = 0; i < NBARS; i++)
		if (d->bars[i].present)
			bar_update(d, &d->bars[i]);
}

static void bar_write_cfg(struct kl_pci_dev *d, unsigned idx, uint32_t val)
{
	/* idx may be the upper half of a 64-bit BAR */
	struct pci_bar *b = &d->bars[idx];
	if (b->present) {
		uint32_t lowbits;
		uint32_t mask;
		if (b->type == KL_PCI_BAR_IO) {
			lowbits = 1;
			mask = ~(uint32_t)(b->size - 1) & ~3u;
		} else {
			lowbits = (b->type == KL_PCI_BAR_MEM64 ? 4 : 0) | (b->prefetch ? 8 : 0);
			mask = ~(uint32_t)(b->size - 1) & ~0xfu;
		}
		put32(&d->cfg[KL_PCI_BAR0 + 4 * idx], (val & mask) | lowbits);
		bar_update(d, b);
		return;
	}
	if (idx > 0 && d->bars[idx - 1].present && d->bars[idx - 1].type == KL_PCI_BAR_MEM64) {
		b = &d->bars[idx - 1];
		uint32_t mask = ~(uint32_t)((b->size - 1) >> 32);
		put32(&d->cfg[KL_PCI_BAR0 + 4 * idx], val & mask);
		bar_update(d, b);
	}
	/* unimplemented BARs stay 0 */
}

/* ---------------- INTx ---------------- */

unsigned kl_pci_intx_gsi(const struct kl_pci_dev *d)
{
	unsigned pin = d->cfg[KL_PCI_INTERRUPT_PIN];
	return KL_PCI_INTX_GSI_BASE + ((d->slot + (pin ? pin - 1 : 0)) & 1);
}

void pci_intx_update(struct kl_pci_dev *d)
{
	uint16_t cmd = get16(&d->cfg[KL_PCI_COMMAND]);
	uint16_t st = get16(&d->cfg[KL_PCI_STATUS]);
	if (d->intx_level)
		st |= KL_PCI_STATUS_INTERRUPT;
	else
		st &= ~KL_PCI_STATUS_INTERRUPT;
	put16(&d->cfg[KL_PCI_STATUS], st);
	bool assert = d->intx_level && d->cfg[KL_PCI_INTERRUPT_PIN] &&
		      !(cmd & KL_PCI_CMD_INTX_DISABLE);
	if (assert == d->intx_asserted)
		return;
	d->intx_asserted = assert;
	unsigned gsi = kl_pci_intx_gsi(d);
	unsigned *cnt = &d->host->gsi_count[gsi - KL_PCI_INTX_GSI_BASE];
	bool before = *cnt > 0;
	*cnt += assert ? 1 : -1;
	bool after = *cnt > 0;
	if (before != after && d->host->ops->set_irq)
		d->host->ops->set_irq(d->host->vm, gsi, after);
}

void kl_pci_set_irq(struct kl_pci_dev *d, int level)
{
	d->intx_level = level ? 1 : 0;
	pci_intx_update(d);
}

/* ---------------- config space ---------------- */

static uint32_t dev_cfg_read(struct kl_pci_dev *d, unsigned off, unsigned size)
{
	uint32_t val;
	if (d->ops && d->ops->config_read && d->ops->config_read(d, d->opaque, off, size, &val))
		return val;
	val = 0;
	for (unsigned i = 0; i < size; i++)
		val |= (uint32_t)d->cfg[off + i] << (i * 8);
	return val;
}

static void dev_cfg_write(struct kl_pci_dev *d, unsigned off, unsigned size, uint32_t val)
{
	uint16_t old_cmd = get16(&d->cfg[KL_PCI_COMMAND]);
	uint16_t old_msix = d->msix_nvec ? get16(&d->cfg[d->msix_cap + 2]) : 0;
	bool bar_touched[NBARS] = { false };
	bool any_bar = false;

	for (unsigned i = 0; i < size; i++) {
		unsigned o = off + i;
		uint8_t b = val >> (i * 8);
		if (o >= KL_PCI_BAR0 && o < KL_PCI_BAR0 + 4 * NBARS) {
			bar_touched[(o - KL_PCI_BAR0) / 4] = true;
			continue;
		}
		d->cfg[o] = (d->cfg[o] & ~d->wmask[o]) | (b & d->wmask[o]);
	}
	for (unsigned idx = 0; idx < NBARS; idx++) {
		if (!bar_touched[idx])
			continue;
		/* merge the written bytes into the current register value */
		unsigned base = KL_PCI_BAR0 + 4 * idx;
		uint8_t nv[4];
		memcpy(nv, &d->cfg[base], 4);
		for (unsigned i = 0; i < size; i++) {
			unsigned o = off + i;
			if (o >= base && o < base + 4)
				nv[o - base] = val >> (i * 8);
		}
		bar_write_cfg(d, idx, get32(nv));
		any_bar = true;
	}
	/* a BAR placed where another BAR of this device still was stays
	 * unmapped (bar_update); once that one moved away, map it: Linux
	 * reassigns a hot-plugged device's BARs one by one, with decoding on */
	if (any_bar)
		pci_bars_update(d);
	uint16_t cmd = get16(&d->cfg[KL_PCI_COMMAND]);
	if ((cmd ^ old_cmd) & (KL_PCI_CMD_IO | KL_PCI_CMD_MEMORY))
		pci_bars_update(d);
	if ((cmd ^ old_cmd) & KL_PCI_CMD_INTX_DISABLE)
		pci_intx_update(d);
	if (d->msix_nvec && get16(&d->cfg[d->msix_cap + 2]) != old_msix)
		pci_msix_update_all(d);
	if (d->ops && d->ops->config_write)
		d->ops->config_write(d, d->opaque, off, size, val);
}

static struct kl_pci_dev *find_dev(struct kl_pci_host *h, unsigned slot, unsigned fn)
{
	if (slot >= KL_PCI_NSLOTS || fn != 0)
		return NULL;
	return h->devs[slot];
}

static bool cfg_ok(unsigned off, unsigned size)
{
	return (size == 1 || size == 2 || size == 4) && off + size <= KL_PCI_CFG_SIZE &&
	       (off & (size - 1)) == 0;
}

uint32_t kl_pci_cfg_read(struct kl_vm *vm, unsigned slot, unsigned fn, unsigned off, unsigned size)
{
	struct kl_pci_host *h = kl_pci_host_get(vm);
	struct kl_pci_dev *d = h ? find_dev(h, slot, fn) : NULL;
	if (!d || !cfg_ok(off, size))
		return (uint32_t)ones(size > 4 ? 4 : size);
	return dev_cfg_read(d, off, size);
}

void kl_pci_cfg_write(struct kl_vm *vm, unsigned slot, unsigned fn, unsigned off, unsigned size,
		      uint32_t val)
{
	struct kl_pci_host *h = kl_pci_host_get(vm);
	struct kl_pci_dev *d = h ? find_dev(h, slot, fn) : NULL;
	if (!d || !cfg_ok(off, size))
		return;
	dev_cfg_write(d, off, size, val);
}

/* 0xcf8: CONFIG_ADDRESS (dword accesses only; 0xcf9 is left to the reset
 * control register).  0xcfc..0xcff: CONFIG_DATA. */
static uint64_t cf8_read(void *opaque, uint64_t off, unsigned size)
{
	struct kl_pci_host *h = opaque;
	if (off == 0 && size == 4)
		return h->cf8;
	return ones(size);
}

static void cf8_write(void *opaque, uint64_t off, uint64_t val, unsigned size)
{
	struct kl_pci_host *h = opaque;
	if (off == 0 && size == 4)
		h->cf8 = val & 0x80fffffc;
}

static bool cfc_target(struct kl_pci_host *h, uint64_t off, unsigned size, unsigned *slot,
		       unsigned *reg)
{
	if (!(h->cf8 & 0x80000000u) || off + size > 4)
		return false;
	if (((h->cf8 >> 16) & 0xff) != 0 || ((h->cf8 >> 8) & 7) != 0)
		return false;
	*slot = (h->cf8 >> 11) & 0x1f;
	*reg = (h->cf8 & 0xfc) + off;
	return true;
}

static uint64_t cfc_read(void *opaque, uint64_t off, unsigned size)
{
	struct kl_pci_host *h = opaque;
	unsigned slot, reg;
	if (!cfc_target(h, off, size, &slot, &reg))
		return ones(size);
	return kl_pci_cfg_read(h->vm, slot, 0, reg, size);
}

static void cfc_write(void *opaque, uint64_t off, uint64_t val, unsigned size)
{
	struct kl_pci_host *h = opaque;
	unsigned slot, reg;
	if (cfc_target(h, off, size, &slot, &reg))
		kl_pci_cfg_write(h->vm, slot, 0, reg, size, val);
}

static const struct kl_io_ops cf8_ops = { .read = cf8_read, .write = cf8_write };
static const struct kl_io_ops cfc_ops = { .read = cfc_read, .write = cfc_write };

/* ---------------- registration ---------------- */

static struct kl_pci_dev *dev_new(struct kl_pci_host *h, unsigned slot,
				  const struct kl_pci_dev_info *info)
{
	struct kl_pci_dev *d = g_new0(struct kl_pci_dev, 1);
	d->host = h;
	d->slot = slot;
	d->name = g_strdup(info->name ? info->name : "pci");
	put16(&d->cfg[KL_PCI_VENDOR_ID], info->vendor_id);
	put16(&d->cfg[KL_PCI_DEVICE_ID], info->device_id);
	d->cfg[KL_PCI_REVISION_ID] = info->revision;
	d->cfg[KL_PCI_CLASS_PROG] = info->class_code;
	d->cfg[0x0a] = info->class_code >> 8;
	d->cfg[0x0b] = info->class_code >> 16;
	put16(&d->cfg[KL_PCI_SUBSYS_VENDOR_ID], info->subsys_vendor_id);
	put16(&d->cfg[KL_PCI_SUBSYS_ID], info->subsys_id);
	unsigned pin = info->irq_pin <= 4 ? info->irq_pin : 0;
	d->cfg[KL_PCI_INTERRUPT_PIN] = pin;
	d->cfg[KL_PCI_INTERRUPT_LINE] = pin ? kl_pci_intx_gsi(d) : 0;
	d->default_cmd = KL_PCI_CMD_IO | KL_PCI_CMD_MEMORY | KL_PCI_CMD_MASTER;
	put16(&d->cfg[KL_PCI_COMMAND], d->default_cmd);
	/* writable: COMMAND (io, mem, master, parity, serr, intx-disable),
	 * cache line size, latency timer, interrupt line */
	put16(&d->wmask[KL_PCI_COMMAND], 0x0547);
	d->wmask[0x0c] = 0xff;
	d->wmask[0x0d] = 0xff;
	d->wmask[KL_PCI_INTERRUPT_LINE] = 0xff;
	d->cap_free = 0x40;
	h->devs[slot] = d;
	pci_state_register(d);
	return d;
}

static void host_reset(void *opaque)
{
	struct kl_pci_host *h = opaque;
	for (unsigned s = 0; s < KL_PCI_NSLOTS; s++)
		if (h->devs[s])
			kl_pci_dev_reset(h->devs[s]);
}

static void host_cleanup(void *opaque)
{
	struct kl_pci_host *h = opaque;
	kl_pci_host_destroy(h->vm);
}

struct kl_pci_host *kl_pci_host_create(struct kl_vm *vm, const struct kl_pci_platform_ops *ops,
				       char **err)
{
	if (kl_pci_host_get(vm)) {
		*err = g_strdup("pci: host bridge already created");
		return NULL;
	}
	struct kl_pci_host *h = g_new0(struct kl_pci_host, 1);
	h->vm = vm;
	if (!ops)
		ops = kl_pci_default_platform_ops ? kl_pci_default_platform_ops : &no_platform_ops;
	h->ops = ops;
	h->next_mmio = KL_PCI_MMIO_BASE;
	h->next_io = KL_PCI_IO_BASE;
	if (kl_bus_register(&vm->pio, 0xcf8, 1, &cf8_ops, h, "pci-cf8") < 0 ||
	    kl_bus_register(&vm->pio, 0xcfc, 4, &cfc_ops, h, "pci-cfc") < 0) {
		kl_bus_unregister(&vm->pio, 0xcf8, h);
		g_free(h);
		*err = g_strdup("pci: I/O ports 0xcf8/0xcfc are already in use");
		return NULL;
	}
	if (!hosts)
		hosts = g_ptr_array_new();
	g_ptr_array_add(hosts, h);
	struct kl_pci_dev_info bridge = {
		.name = "pci-host", .vendor_id = KL_PCI_HOST_VENDOR,
		.device_id = KL_PCI_HOST_DEVICE, .class_code = 0x060000,
		.subsys_vendor_id = 0x1af4, .subsys_id = 0x1100,
	};
	dev_new(h, 0, &bridge);
	if (h->ops->add_reset_handler)
		h->ops->add_reset_handler(vm, host_reset, h);
	if (h->ops->add_cleanup)
		h->ops->add_cleanup(vm, host_cleanup, h);
	return h;
}

static void dev_free(struct kl_pci_dev *d)
{
	const struct kl_pci_platform_ops *ops = d->host->ops;
	pci_state_unregister(d);
	for (unsigned i = 0; i < NBARS; i++) {
		if (d->bars[i].present)
			bar_unmap(d, &d->bars[i]);
		g_free(d->bars[i].name);
	}
	if (d->intx_asserted) {
		d->intx_level = 0;
		pci_intx_update(d);
	}
	/* The device first: its exit may complete requests in flight (a
	 * virtio-blk drain), which signal their MSI-X vectors (ASan saw
	 * kl_pci_msix_notify read d->vec after it was freed here). */
	if (d->ops && d->ops->destroy)
		d->ops->destroy(d, d->opaque);
	for (unsigned v = 0; v < d->msix_nvec; v++) {
		struct msix_vec *m = &d->vec[v];
		vec_watch(d, v, false);
		if (m->irqfd && ops->irqfd)
			ops->irqfd(d->host->vm, m->efd, m->gsi, false);
		if (m->gsi >= 0 && ops->msi_route_del)
			ops->msi_route_del(d->host->vm, m->gsi);
		if (m->efd >= 0)
			close(m->efd);
	}
	g_free(d->vec);
	g_free(d->name);
	g_free(d);
}

void kl_pci_host_destroy(struct kl_vm *vm)
{
	struct kl_pci_host *h = kl_pci_host_get(vm);
	if (!h)
		return;
	for (unsigned s = KL_PCI_NSLOTS; s-- > 0;) { /* devices before the bridge */
		struct kl_pci_dev *d = h->devs[s];
		h->devs[s] = NULL;
		if (d)
			dev_free(d);
	}
	kl_bus_unregister(&vm->pio, 0xcf8, h);
	kl_bus_unregister(&vm->pio, 0xcfc, h);
	g_ptr_array_remove(hosts, h);
	if (hosts->len == 0) {
		g_ptr_array_free(hosts, true);
		hosts = NULL;
	}
	g_free(h);
}

void kl_pci_unregister(struct kl_pci_dev *d)
{
	if (!d)
		return;
	if (d->host->devs[d->slot] == d)
		d->host->devs[d->slot] = NULL;
	dev_free(d);
}

struct kl_pci_dev *kl_pci_register(struct kl_vm *vm, const struct kl_pci_dev_info *info,
				   const struct kl_pci_dev_ops *ops, void *opaque, char **err)
{
	struct kl_pci_host *h = kl_pci_host_get(vm);
	if (!h && vm->virtio_mmio) { /* -M microvm without pcie=on */
		*err = g_strdup_printf("%s: -M microvm has no PCI bus (pcie=on adds one; "
				       "virtio devices: use their -device variant)", info->name);
		return NULL;
	}
	if (!h && !(h = kl_pci_host_create(vm, NULL, err)))
		return NULL;
	int slot = info->slot;
	if (slot < 0) {
		for (slot = 1; slot < KL_PCI_NSLOTS && h->devs[slot]; slot++)
			;
		if (slot == KL_PCI_NSLOTS) {
			*err = g_strdup_printf("%s: no free PCI slot on bus 0", info->name);
			return NULL;
		}
	} else if (slot == 0 || slot >= KL_PCI_NSLOTS || h->devs[slot]) {
		*err = g_strdup_printf("%s: PCI slot %d is invalid or in use", info->name, slot);
		return NULL;
	}
	struct kl_pci_dev *d = dev_new(h, slot, info);
	d->ops = ops;
	d->opaque = opaque;
	return d;
}

int kl_pci_add_bar(struct kl_pci_dev *d, unsigned bar, uint64_t size, enum kl_pci_bar_type type,
		   bool prefetchable, const struct kl_io_ops *ops, void *opaque, char **err)
{
	struct kl_pci_host *h = d->host;
	bool io = type == KL_PCI_BAR_IO;
	if (bar >= NBARS || (type == KL_PCI_BAR_MEM64 && bar == NBARS - 1) ||
	    d->bars[bar].present || (type == KL_PCI_BAR_MEM64 && d->bars[bar + 1].present) ||
	    (bar > 0 && d->bars[bar - 1].present && d->bars[bar - 1].type == KL_PCI_BAR_MEM64)) {
		*err = g_strdup_printf("%s: BAR %u is invalid or already in use", d->name, bar);
		return -1;
	}
	if (size == 0 || (size & (size - 1)) || (io && (size < 4 || size > 256)) ||
	    (!io && size > (KL_PCI_MMIO_END - KL_PCI_MMIO_BASE))) {
		*err = g_strdup_printf("%s: BAR %u size %#" G_GINT64_MODIFIER "x is invalid",
				       d->name, bar, (guint64)size);
		return -1;
	}
	if (!io && size < 4096)
		size = 4096;
	uint64_t addr;
	if (io) {
		addr = (h->next_io + size - 1) & ~(size - 1);
		if (addr + size > KL_PCI_IO_END) {
			*err = g_strdup_printf("%s: PCI I/O window exhausted", d->name);
			return -1;
		}
		h->next_io = addr + size;
	} else {
		addr = (h->next_mmio + size - 1) & ~(size - 1);
		if (addr + size > KL_PCI_MMIO_END) {
			*err = g_strdup_printf("%s: PCI MMIO window exhausted", d->name);
			return -1;
		}
		h->next_mmio = addr + size;
	}
	struct pci_bar *b = &d->bars[bar];
	b->dev = d;
	b->idx = bar;
	b->present = true;
	b->type = type;
	b->prefetch = prefetchable && !io;
	b->size = size;
	b->default_addr = addr;
	b->ops = ops;
	b->opaque = opaque;
	b->name = g_strdup_printf("%s-bar%u", d->name, bar);
	bar_write_cfg(d, bar, (uint32_t)addr);
	if (type == KL_PCI_BAR_MEM64)
		bar_write_cfg(d, bar + 1, addr >> 32);
	if (!b->mapped && get16(&d->cfg[KL_PCI_COMMAND]) & (io ? KL_PCI_CMD_IO : KL_PCI_CMD_MEMORY)) {
		*err = g_strdup_printf("%s: BAR %u at %#" G_GINT64_MODIFIER "x overlaps another device",
				       d->name, bar, (guint64)addr);
		memset(&d->cfg[KL_PCI_BAR0 + 4 * bar], 0, type == KL_PCI_BAR_MEM64 ? 8 : 4);
		g_free(b->name);
		memset(b, 0, sizeof(*b));
		return -1;
	}
	return 0;
}

int kl_pci_add_cap(struct kl_pci_dev *d, uint8_t cap_id, const void *body, unsigned len)
{
	unsigned off = (d->cap_free + 3) & ~3u;
	if (off + 2 + len > KL_PCI_CFG_SIZE)
		return -1;
	d->cfg[off] = cap_id;
	d->cfg[off + 1] = 0;
	if (len)
		memcpy(&d->cfg[off + 2], body, len);
	if (d->last_cap)
		d->cfg[d->last_cap + 1] = off;
	else
		d->cfg[KL_PCI_CAP_PTR] = off;
	put16(&d->cfg[KL_PCI_STATUS], get16(&d->cfg[KL_PCI_STATUS]) | KL_PCI_STATUS_CAP_LIST);
	d->last_cap = off;
	d->cap_free = off + 2 + len;
	return off;
}

int kl_pci_msix_init(struct kl_pci_dev *d, unsigned nvec, unsigned bar, uint32_t table_off,
		     uint32_t pba_off, char **err)
{
	if (d->msix_nvec || nvec == 0 || nvec > KL_PCI_MSIX_MAX_VECTORS || bar >= NBARS ||
	    !d->bars[bar].present || (table_off & 7) || (pba_off & 7) ||
	    table_off + nvec * 16ULL > d->bars[bar].size || pba_off + 8ULL > d->bars[bar].size ||
	    (pba_off < table_off + nvec * 16ULL && table_off < pba_off + 8ULL)) {
		*err = g_strdup_printf("%s: invalid MSI-X layout", d->name);
		return -1;
	}
	uint8_t body[10] = { 0 };
	put16(&body[0], nvec - 1);
	put32(&body[2], table_off | bar);
	put32(&body[6], pba_off | bar);
	int off = kl_pci_add_cap(d, KL_PCI_CAP_ID_MSIX, body, sizeof(body));
	if (off < 0) {
		*err = g_strdup_printf("%s: PCI config space full", d->name);
		return -1;
	}
	d->msix_cap = off;
	d->wmask[off + 3] = (KL_PCI_MSIX_CTRL_ENABLE | KL_PCI_MSIX_CTRL_MASKALL) >> 8;
	d->msix_bar = bar;
	d->msix_table_off = table_off;
	d->msix_pba_off = pba_off;
	d->vec = g_new0(struct msix_vec, nvec);
	d->msix_nvec = nvec;
	for (unsigned v = 0; v < nvec; v++) {
		d->vec[v].dev = d;
		d->vec[v].idx = v;
		d->vec[v].ctrl = KL_PCI_MSIX_ENTRY_CTRL_MASKBIT;
		d->vec[v].gsi = -1;
		d->vec[v].efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	}
	pci_msix_update_all(d);
	return 0;
}

/* ---------------- accessors ---------------- */

uint8_t *kl_pci_config(struct kl_pci_dev *d) { return d->cfg; }

struct kl_pci_dev *kl_pci_dev_at(struct kl_vm *vm, unsigned slot)
{
	struct kl_pci_host *h = kl_pci_host_get(vm);
	return h && slot < KL_PCI_NSLOTS ? h->devs[slot] : NULL;
}

uint64_t kl_pci_bar_size(const struct kl_pci_dev *d, unsigned bar, enum kl_pci_bar_type *type,
			 bool *prefetch)
{
	if (bar >= NBARS || !d->bars[bar].present)
		return 0;
	*type = d->bars[bar].type;
	*prefetch = d->bars[bar].prefetch;
	return d->bars[bar].size;
}
struct kl_vm *kl_pci_vm(struct kl_pci_dev *d) { return d->host->vm; }
const struct kl_pci_platform_ops *kl_pci_platform(const struct kl_pci_dev *d) { return d->host->ops; }
unsigned kl_pci_slot(const struct kl_pci_dev *d) { return d->slot; }

uint64_t kl_pci_bar_addr(const struct kl_pci_dev *d, unsigned bar, bool *mapped)
{
	if (bar >= NBARS || !d->bars[bar].present) {
		if (mapped)
			*mapped = false;
		return 0;
	}
	if (mapped)
		*mapped = d->bars[bar].mapped;
	return bar_cfg_addr(d, &d->bars[bar]);
}

bool kl_pci_bus_master(const struct kl_pci_dev *d)
{
	return get16(&d->cfg[KL_PCI_COMMAND]) & KL_PCI_CMD_MASTER;
}

bool kl_pci_msix_enabled(const struct kl_pci_dev *d) { return msix_enabled(d); }
unsigned kl_pci_msix_nvec(const struct kl_pci_dev *d) { return d->msix_nvec; }

void kl_pci_msix_notify(struct kl_pci_dev *d, unsigned vec)
{
	if (vec >= d->msix_nvec || !msix_enabled(d))
		return;
	if (vec_deliverable(d, vec))
		msix_deliver(d, vec);
	else
		d->pending |= 1ULL << vec;
}

int kl_pci_msix_vector_eventfd(struct kl_pci_dev *d, unsigned vec)
{
	return vec < d->msix_nvec ? d->vec[vec].efd : -1;
}

bool kl_pci_msix_is_pending(const struct kl_pci_dev *d, unsigned vec)
{
	return vec < d->msix_nvec && (d->pending >> vec) & 1;
}

bool kl_pci_msix_is_masked(const struct kl_pci_dev *d, unsigned vec)
{
	return vec >= d->msix_nvec || msix_fmasked(d) ||
	       (d->vec[vec].ctrl & KL_PCI_MSIX_ENTRY_CTRL_MASKBIT);
}

void kl_pci_dev_reset(struct kl_pci_dev *d)
{
	d->intx_level = 0;
	pci_intx_update(d);
	put16(&d->cfg[KL_PCI_COMMAND], d->default_cmd);
	put16(&d->cfg[KL_PCI_STATUS], get16(&d->cfg[KL_PCI_STATUS]) & KL_PCI_STATUS_CAP_LIST);
	d->cfg[KL_PCI_INTERRUPT_LINE] = d->cfg[KL_PCI_INTERRUPT_PIN] ? kl_pci_intx_gsi(d) : 0;
	for (unsigned i = 0; i < NBARS; i++) {
		struct pci_bar *b = &d->bars[i];
		if (!b->present)
			continue;
		bar_write_cfg(d, i, (uint32_t)b->default_addr);
		if (b->type == KL_PCI_BAR_MEM64)
			bar_write_cfg(d, i + 1, b->default_addr >> 32);
	}
	if (d->msix_nvec) {
		put16(&d->cfg[d->msix_cap + 2], d->msix_nvec - 1);
		d->pending = 0;
		for (unsigned v = 0; v < d->msix_nvec; v++) {
			d->vec[v].addr_lo = d->vec[v].addr_hi = d->vec[v].data = 0;
			d->vec[v].ctrl = KL_PCI_MSIX_ENTRY_CTRL_MASKBIT;
			uint64_t cnt;
			if (d->vec[v].efd >= 0 && read(d->vec[v].efd, &cnt, sizeof(cnt)) < 0)
				(void)errno;
		}
		pci_msix_update_all(d);
	}
	if (d->ops && d->ops->reset)
		d->ops->reset(d, d->opaque);
}
