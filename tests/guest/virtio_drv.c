/* Minimal virtio 1.x driver for probe tests: modern PCI or virtio-mmio
 * version 2 (see virtio_drv.h). */
#include "virtio_drv.h"

#define PCI_CAP_VNDR 0x09
#define PCI_CAP_MSIX 0x11
#define CAP_COMMON 1
#define CAP_NOTIFY 2
#define CAP_ISR 3
#define CAP_DEVICE 4

/* full barrier without SSE/MFENCE (a locked RMW orders everything) */
static inline void mb(void) { __asm__ volatile("lock; orq $0, (%%rsp)" ::: "memory"); }

static uint64_t bar_addr(uint16_t bdf, unsigned bar)
{
	uint32_t lo = pci_read32(bdf, 0x10 + 4 * bar);
	if (lo & 1)
		return lo & ~3u;
	uint64_t a = lo & ~0xfu;
	if (((lo >> 1) & 3) == 2 && bar < 5)
		a |= (uint64_t)pci_read32(bdf, 0x14 + 4 * bar) << 32;
	return a;
}

struct find_ctx {
	uint16_t device;
	unsigned instance, seen;
	uint16_t bdf;
};

static int find_cb(uint16_t bdf, uint16_t vendor, uint16_t device, void *opaque)
{
	struct find_ctx *c = opaque;
	if (vendor != VIRTIO_VENDOR || device != c->device)
		return 0;
	if (c->seen++ != c->instance)
		return 0;
	c->bdf = bdf;
	return 1;
}

int vdev_find(uint16_t device_id, unsigned instance, struct vdev *d)
{
	struct find_ctx c = { (uint16_t)(0x1040 + device_id), instance, 0, 0 };
	memset(d, 0, sizeof(*d));
	if (pci_scan_bus0(find_cb, &c) != 1)
		return probe_fail("no virtio device 0x%x (instance %u) on PCI bus 0", 0x1040 + device_id,
				  instance);
	d->bdf = c.bdf;
	if (pci_read8(d->bdf, 8) < 1)
		return probe_fail("virtio device revision %u, want >= 1", pci_read8(d->bdf, 8));
	pci_write16(d->bdf, 4, pci_read16(d->bdf, 4) | 0x6); /* memory + bus master */
	if (!(pci_read16(d->bdf, 6) & 0x10))
		return probe_fail("virtio device without capability list");
	unsigned n = 0;
	for (unsigned p = pci_read8(d->bdf, 0x34); p && n < 48; p = pci_read8(d->bdf, p + 1), n++) {
		uint8_t id = pci_read8(d->bdf, p);
		if (id == PCI_CAP_MSIX) {
			uint32_t t = pci_read32(d->bdf, p + 4);
			d->msix_n = (pci_read16(d->bdf, p + 2) & 0x7ff) + 1;
			d->msix_table = bar_addr(d->bdf, t & 7) + (t & ~7u);
			continue;
		}
		if (id != PCI_CAP_VNDR)
			continue;
		uint8_t type = pci_read8(d->bdf, p + 3), bar = pci_read8(d->bdf, p + 4);
		if (bar > 5)
			continue;
		uint64_t a = bar_addr(d->bdf, bar) + pci_read32(d->bdf, p + 8);
		switch (type) {
		case CAP_COMMON: if (!d->common) d->common = a; break;
		case CAP_NOTIFY:
			if (!d->notify) {
				d->notify = a;
				d->notify_mult = pci_read32(d->bdf, p + 16);
			}
			break;
		case CAP_ISR: if (!d->isr) d->isr = a; break;
		case CAP_DEVICE:
			if (!d->devcfg) {
				d->devcfg = a;
				d->devcfg_len = pci_read32(d->bdf, p + 12);
			}
			break;
		}
	}
	if (!d->common || !d->notify || !d->isr)
		return probe_fail("virtio caps missing: common 0x%lx notify 0x%lx isr 0x%lx", d->common,
				  d->notify, d->isr);
	return 0;
}

static uint64_t parse_hex_or_dec(const char **pp)
{
	const char *p = *pp;
	uint64_t v = 0;
	if (p[0] == '0' && (p[1] == 'x' || p[1] == 'X')) {
		p += 2;
		for (;; p++) {
			unsigned c = (unsigned char)*p, dgt;
			if (c >= '0' && c <= '9')
				dgt = c - '0';
			else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
				dgt = (c | 0x20) - 'a' + 10;
			else
				break;
			v = v * 16 + dgt;
		}
	} else {
		for (; *p >= '0' && *p <= '9'; p++)
			v = v * 10 + (unsigned)(*p - '0');
	}
	*pp = p;
	return v;
}

int vdev_find_mmio(uint16_t device_id, unsigned instance, struct vdev *d)
{
	static const char key[] = "virtio_mmio.device=";
	memset(d, 0, sizeof(*d));
	unsigned seen = 0, entries = 0;
	for (const char *p = probe_cmdline; *p; p++) {
		if ((p != probe_cmdline && p[-1] != ' ') || strncmp(p, key, sizeof(key) - 1))
			continue;
		const char *q = p + sizeof(key) - 1;
		uint64_t size = parse_hex_or_dec(&q);
		if (*q != '@')
			return probe_fail("virtio_mmio.device= entry without '@'");
		q++;
		uint64_t base = parse_hex_or_dec(&q);
		if (*q != ':')
			return probe_fail("virtio_mmio.device= entry without ':IRQ'");
		q++;
		uint64_t irq = parse_hex_or_dec(&q);
		entries++;
		if (size < 0x100 || mmio_read32(base + VM_MAGIC) != 0x74726976)
			return probe_fail("no virtio-mmio magic at 0x%lx (size %lu)", base, size);
		if (mmio_read32(base + VM_VERSION) != 2)
			return probe_fail("virtio-mmio at 0x%lx: version %u, want 2", base,
					  mmio_read32(base + VM_VERSION));
		if (mmio_read32(base + VM_DEVICE_ID) != device_id || seen++ != instance)
			continue;
		d->mmio = base;
		d->mmio_irq = irq;
		d->common = d->notify = d->isr = 0;
		d->devcfg = base + VM_CONFIG;
		d->devcfg_len = size - VM_CONFIG;
		return 0;
	}
	return probe_fail("no virtio-mmio device id %u (instance %u) among %u virtio_mmio.device= "
			  "entries", device_id, instance, entries);
}

bool vdev_on_mmio(void)
{
	char v[8];
	const char *t = probe_cmdline_get("transport", v, sizeof(v));
	return t && !strcmp(t, "mmio");
}

int vdev_find_any(uint16_t device_id, unsigned instance, struct vdev *d)
{
	return vdev_on_mmio() ? vdev_find_mmio(device_id, instance, d)
			      : vdev_find(device_id, instance, d);
}

uint8_t vdev_status(struct vdev *d)
{
	return d->mmio ? mmio_read32(d->mmio + VM_STATUS) : mmio_read8(d->common + VC_STATUS);
}

void vdev_set_status(struct vdev *d, uint8_t s)
{
	if (d->mmio)
		mmio_write32(d->mmio + VM_STATUS, s);
	else
		mmio_write8(d->common + VC_STATUS, s);
}

uint16_t vdev_num_queues(struct vdev *d)
{
	if (!d->mmio)
		return mmio_read16(d->common + VC_NUM_QUEUES);
	uint16_t n = 0;
	for (; n < 64; n++) {
		mmio_write32(d->mmio + VM_Q_SEL, n);
		if (!mmio_read32(d->mmio + VM_Q_NUM_MAX))
			break;
	}
	return n;
}

static uint32_t get_df(struct vdev *d, unsigned sel)
{
	if (d->mmio) {
		mmio_write32(d->mmio + VM_DFSEL, sel);
		return mmio_read32(d->mmio + VM_DF);
	}
	mmio_write32(d->common + VC_DFSELECT, sel);
	return mmio_read32(d->common + VC_DF);
}

static void set_gf(struct vdev *d, unsigned sel, uint32_t v)
{
	if (d->mmio) {
		mmio_write32(d->mmio + VM_GFSEL, sel);
		mmio_write32(d->mmio + VM_GF, v);
		return;
	}
	mmio_write32(d->common + VC_GFSELECT, sel);
	mmio_write32(d->common + VC_GF, v);
}

int vdev_reset(struct vdev *d)
{
	vdev_set_status(d, 0);
	for (unsigned i = 0; i < 100000; i++) {
		if (vdev_status(d) == 0)
			return 0;
		udelay(10);
	}
	return probe_fail("virtio reset: status still 0x%x", vdev_status(d));
}

int vdev_negotiate(struct vdev *d, uint64_t want, uint64_t *got)
{
	if (vdev_reset(d) < 0)
		return -1;
	vdev_set_status(d, VIRTIO_S_ACK);
	vdev_set_status(d, VIRTIO_S_ACK | VIRTIO_S_DRIVER);
	uint64_t f = get_df(d, 0) | (uint64_t)get_df(d, 1) << 32;
	d->features = f;
	if (!(f & (1ULL << VIRTIO_F_VERSION_1)))
		return probe_fail("device does not offer VIRTIO_F_VERSION_1 (features 0x%lx)", f);
	uint64_t g = (f & want) | (1ULL << VIRTIO_F_VERSION_1);
	set_gf(d, 0, (uint32_t)g);
	set_gf(d, 1, g >> 32);
	vdev_set_status(d, VIRTIO_S_ACK | VIRTIO_S_DRIVER | VIRTIO_S_FEATURES_OK);
	if (!(vdev_status(d) & VIRTIO_S_FEATURES_OK))
		return probe_fail("FEATURES_OK not accepted (features 0x%lx)", g);
	if (got)
		*got = g;
	return 0;
}

int vq_setup(struct vdev *d, struct vq *q, unsigned idx, unsigned size)
{
	memset(q, 0, sizeof(*q));
	unsigned max;
	if (d->mmio) {
		mmio_write32(d->mmio + VM_Q_SEL, idx);
		max = mmio_read32(d->mmio + VM_Q_NUM_MAX);
	} else {
		mmio_write16(d->common + VC_Q_SELECT, idx);
		max = mmio_read16(d->common + VC_Q_SIZE);
	}
	if (max == 0)
		return probe_fail("queue %u does not exist", idx);
	if (size > max)
		size = max;
	if (size > VDRV_MAX_QUEUE)
		size = VDRV_MAX_QUEUE;
	/* desc 16*size, avail 6+2*size, used 6+8*size: two pages cover 256 */
	uint8_t *mem = probe_alloc_pages(4 + (size * 16 + 4095) / 4096);
	if (!mem)
		return probe_fail("out of memory for queue %u", idx);
	q->d = d;
	q->idx = idx;
	q->size = size;
	q->desc = (struct vring_desc *)mem;
	q->avail = (volatile uint16_t *)(mem + size * 16);
	q->used = (volatile uint16_t *)(mem + ((size * 16 + 6 + 2 * size + 4095) & ~4095u));
	if (d->mmio) {
		uint64_t b = d->mmio, a[3] = { (uintptr_t)q->desc, (uintptr_t)q->avail,
					       (uintptr_t)q->used };
		mmio_write32(b + VM_Q_NUM, size);
		for (unsigned i = 0; i < 3; i++) {
			mmio_write32(b + VM_Q_DESC + 0x10 * i, (uint32_t)a[i]);
			mmio_write32(b + VM_Q_DESC + 0x10 * i + 4, a[i] >> 32);
		}
		q->notify_addr = b + VM_Q_NOTIFY;
		q->notify32 = true;
		mmio_write32(b + VM_Q_READY, 1);
		if (mmio_read32(b + VM_Q_READY) != 1)
			return probe_fail("queue %u did not become ready (status 0x%x)", idx,
					  vdev_status(d));
		return 0;
	}
	mmio_write16(d->common + VC_Q_SIZE, size);
	mmio_write64(d->common + VC_Q_DESC, (uint64_t)(uintptr_t)q->desc);
	mmio_write64(d->common + VC_Q_AVAIL, (uint64_t)(uintptr_t)q->avail);
	mmio_write64(d->common + VC_Q_USED, (uint64_t)(uintptr_t)q->used);
	q->notify_addr = d->notify + (uint64_t)mmio_read16(d->common + VC_Q_NOTIFY_OFF) * d->notify_mult;
	mmio_write16(d->common + VC_Q_ENABLE, 1);
	if (mmio_read16(d->common + VC_Q_ENABLE) != 1)
		return probe_fail("queue %u did not enable (status 0x%x)", idx, vdev_status(d));
	return 0;
}

void vdev_driver_ok(struct vdev *d)
{
	vdev_set_status(d, vdev_status(d) | VIRTIO_S_DRIVER_OK);
}

uint8_t vdev_cfg8(struct vdev *d, unsigned off) { return mmio_read8(d->devcfg + off); }
uint16_t vdev_cfg16(struct vdev *d, unsigned off) { return mmio_read16(d->devcfg + off); }
uint32_t vdev_cfg32(struct vdev *d, unsigned off) { return mmio_read32(d->devcfg + off); }
uint64_t vdev_cfg64(struct vdev *d, unsigned off)
{
	return mmio_read32(d->devcfg + off) | (uint64_t)mmio_read32(d->devcfg + off + 4) << 32;
}

void vq_publish(struct vq *q, uint16_t head)
{
	q->avail[2 + (q->avail_idx % q->size)] = head;
	barrier();
	q->avail_idx++;
	q->avail[1] = q->avail_idx;
	mb();
}

int vq_add(struct vq *q, const struct vbuf *bufs, unsigned n)
{
	if (n == 0 || n > q->size)
		return -1;
	uint16_t head = q->next_desc % q->size;
	for (unsigned i = 0; i < n; i++) {
		uint16_t cur = (head + i) % q->size, nxt = (head + i + 1) % q->size;
		q->desc[cur].addr = bufs[i].addr;
		q->desc[cur].len = bufs[i].len;
		q->desc[cur].flags = (bufs[i].write ? VRING_DESC_F_WRITE : 0) |
				     (i + 1 < n ? VRING_DESC_F_NEXT : 0);
		q->desc[cur].next = i + 1 < n ? nxt : 0;
	}
	q->next_desc = (head + n) % q->size;
	vq_publish(q, head);
	return head;
}

void vq_kick(struct vq *q)
{
	mb();
	if (q->notify32)
		mmio_write32(q->notify_addr, q->idx);
	else
		mmio_write16(q->notify_addr, q->idx);
}

bool vq_has_used(struct vq *q)
{
	barrier();
	return q->used[1] != q->last_used;
}

int vq_wait(struct vq *q, uint32_t *len, uint64_t timeout_us)
{
	uint64_t per = tsc_per_us();
	if (!per)
		per = 1000;
	uint64_t end = rdtsc() + timeout_us * per;
	while (!vq_has_used(q)) {
		if (rdtsc() > end)
			return -1;
		cpu_relax();
	}
	barrier();
	volatile uint32_t *ring = (volatile uint32_t *)(q->used + 2);
	unsigned slot = q->last_used % q->size;
	uint32_t id = ring[2 * slot];
	if (len)
		*len = ring[2 * slot + 1];
	q->last_used++;
	return (int)id;
}

int vdev_msix_enable(struct vdev *d)
{
	unsigned cap = pci_find_cap(d->bdf, PCI_CAP_MSIX);
	if (!cap || !d->msix_table)
		return probe_fail("virtio device without MSI-X");
	pci_write16(d->bdf, cap + 2, pci_read16(d->bdf, cap + 2) | 0x8000);
	return 0;
}

int vdev_msix_vector(struct vdev *d, unsigned v, uint8_t idt_vector)
{
	if (v >= d->msix_n)
		return probe_fail("MSI-X vector %u >= table size %u", v, d->msix_n);
	uint64_t e = d->msix_table + 16 * v;
	mmio_write32(e + 0, 0xfee00000u); /* LAPIC 0, physical */
	mmio_write32(e + 4, 0);
	mmio_write32(e + 8, idt_vector);  /* fixed, edge */
	mmio_write32(e + 12, 0);          /* unmask */
	return 0;
}

uint16_t vdev_set_queue_vector(struct vdev *d, unsigned q, uint16_t v)
{
	mmio_write16(d->common + VC_Q_SELECT, q);
	mmio_write16(d->common + VC_Q_MSIX, v);
	return mmio_read16(d->common + VC_Q_MSIX);
}

uint16_t vdev_set_config_vector(struct vdev *d, uint16_t v)
{
	mmio_write16(d->common + VC_MSIX_CONFIG, v);
	return mmio_read16(d->common + VC_MSIX_CONFIG);
}
