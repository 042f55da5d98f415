/* Probe guest: PCI configuration mechanism #1 (ports 0xcf8/0xcfc). */
#include "probe.h"

static void pci_addr(uint16_t bdf, unsigned off)
{
	outl(0xcf8, 0x80000000u | ((uint32_t)bdf << 8) | (off & 0xfc));
}

uint8_t pci_read8(uint16_t bdf, unsigned off)
{
	pci_addr(bdf, off);
	return inb((uint16_t)(0xcfc + (off & 3)));
}

uint16_t pci_read16(uint16_t bdf, unsigned off)
{
	pci_addr(bdf, off);
	return inw((uint16_t)(0xcfc + (off & 2)));
}

uint32_t pci_read32(uint16_t bdf, unsigned off)
{
	pci_addr(bdf, off);
	return inl(0xcfc);
}

void pci_write8(uint16_t bdf, unsigned off, uint8_t v)
{
	pci_addr(bdf, off);
	outb((uint16_t)(0xcfc + (off & 3)), v);
}

void pci_write16(uint16_t bdf, unsigned off, uint16_t v)
{
	pci_addr(bdf, off);
	outw((uint16_t)(0xcfc + (off & 2)), v);
}

void pci_write32(uint16_t bdf, unsigned off, uint32_t v)
{
	pci_addr(bdf, off);
	outl(0xcfc, v);
}

int pci_scan_bus0(int (*fn)(uint16_t bdf, uint16_t vendor, uint16_t device, void *opaque),
		  void *opaque)
{
	for (unsigned dev = 0; dev < 32; dev++) {
		unsigned nfn = 1;
		for (unsigned f = 0; f < nfn; f++) {
			uint16_t bdf = PCI_BDF(0, dev, f);
			uint32_t id = pci_read32(bdf, 0);
			int r;

			if ((id & 0xffff) == 0xffff || (id & 0xffff) == 0)
				continue;
			if (f == 0 && (pci_read8(bdf, 0x0e) & 0x80))
				nfn = 8;
			r = fn(bdf, (uint16_t)id, (uint16_t)(id >> 16), opaque);
			if (r)
				return r;
		}
	}
	return 0;
}

struct find_ctx {
	uint16_t vendor, device, bdf;
};

static int find_cb(uint16_t bdf, uint16_t vendor, uint16_t device, void *opaque)
{
	struct find_ctx *c = opaque;

	if (vendor != c->vendor || device != c->device)
		return 0;
	c->bdf = bdf;
	return 1;
}

int pci_find(uint16_t vendor, uint16_t device, uint16_t *bdf)
{
	struct find_ctx c = { vendor, device, 0 };

	if (pci_scan_bus0(find_cb, &c) != 1)
		return -1;
	*bdf = c.bdf;
	return 0;
}

int pci_bar_info(uint16_t bdf, unsigned n, struct pci_bar *bar)
{
	unsigned off = 0x10 + 4 * n;
	uint16_t cmd = pci_read16(bdf, 0x04);
	uint32_t lo, szlo, hi = 0, szhi = 0;

	memset(bar, 0, sizeof(*bar));
	if (n > 5)
		return 1;
	pci_write16(bdf, 0x04, cmd & (uint16_t)~0x3);  /* decoding off while sizing */
	lo = pci_read32(bdf, off);
	pci_write32(bdf, off, 0xffffffffu);
	szlo = pci_read32(bdf, off);
	pci_write32(bdf, off, lo);
	bar->io = lo & 1;
	if (!bar->io && ((lo >> 1) & 3) == 2 && n < 5) {
		bar->is64 = true;
		hi = pci_read32(bdf, off + 4);
		pci_write32(bdf, off + 4, 0xffffffffu);
		szhi = pci_read32(bdf, off + 4);
		pci_write32(bdf, off + 4, hi);
	}
	pci_write16(bdf, 0x04, cmd);
	if (bar->io) {
		uint32_t mask = szlo & ~3u;
		bar->addr = lo & ~3u;
		if (mask)
			bar->size = (uint32_t)(~mask + 1) & 0xffff;
	} else {
		uint64_t mask = ((uint64_t)szhi << 32) | (szlo & ~0xfu);
		if (!bar->is64)
			mask |= 0xffffffff00000000ull;
		bar->prefetch = (lo >> 3) & 1;
		bar->addr = ((uint64_t)hi << 32) | (lo & ~0xfu);
		if (mask & 0xffffffffull)
			bar->size = ~mask + 1;
		else if (bar->is64 && szhi)
			bar->size = ~mask + 1;
	}
	return bar->is64 ? 2 : 1;
}

unsigned pci_find_cap(uint16_t bdf, uint8_t cap_id)
{
	unsigned off;

	if (!(pci_read16(bdf, 0x06) & (1u << 4)))  /* status: capability list */
		return 0;
	off = pci_read8(bdf, 0x34) & 0xfc;
	for (unsigned guard = 0; off && guard < 48; guard++) {
		if (pci_read8(bdf, off) == cap_id)
			return off;
		off = pci_read8(bdf, off + 1) & 0xfc;
	}
	return 0;
}
