/* Probe test: pci - configuration mechanism #1 and the pci_* helpers:
 * bus 0 scan, 8/16/32-bit config reads agree, interrupt-line register is
 * writable, every BAR sizes to a power of two and is restored. */
#include "probe.h"

struct pci_scan {
	unsigned nfn;
	bool host_bridge;
	int err;
};

static int pci_check_fn(uint16_t bdf, uint16_t vendor, uint16_t device, void *opaque)
{
	struct pci_scan *s = opaque;
	uint32_t id = pci_read32(bdf, 0), cls = pci_read32(bdf, 8);
	uint8_t htype = pci_read8(bdf, 0x0e) & 0x7f;
	unsigned b = bdf >> 8, d = (bdf >> 3) & 31, f = bdf & 7;

	s->nfn++;
	printf("pci: %02x:%02x.%u %04x:%04x class %06x header %u\n", b, d, f, vendor, device,
	       cls >> 8, htype);
	if (id != ((uint32_t)device << 16 | vendor) ||
	    pci_read16(bdf, 2) != device || pci_read8(bdf, 1) != (vendor >> 8) ||
	    pci_read8(bdf, 3) != (device >> 8))
		return s->err = probe_fail("%02x:%02x.%u: 8/16/32-bit reads of the ID disagree", b, d, f);
	if (bdf == 0 && (cls >> 16) == 0x0600)
		s->host_bridge = true;

	uint8_t line = pci_read8(bdf, 0x3c);
	pci_write8(bdf, 0x3c, 0x5a);
	uint8_t got = pci_read8(bdf, 0x3c);
	pci_write8(bdf, 0x3c, line);
	if (got != 0x5a || pci_read8(bdf, 0x3c) != line)
		return s->err = probe_fail("%02x:%02x.%u: interrupt line not read/write (wrote 0x5a, read 0x%x)",
					   b, d, f, got);
	if (htype != 0)
		return 0;
	for (unsigned n = 0; n < 6;) {
		struct pci_bar bar;
		uint32_t before = pci_read32(bdf, 0x10 + 4 * n);
		int used = pci_bar_info(bdf, n, &bar);

		if (pci_read32(bdf, 0x10 + 4 * n) != before)
			return s->err = probe_fail("%02x:%02x.%u BAR%u not restored after sizing", b, d, f, n);
		if (bar.size) {
			printf("pci:   BAR%u %s%s 0x%lx size 0x%lx\n", n, bar.io ? "io" : "mem",
			       bar.is64 ? "64" : "32", bar.addr, bar.size);
			if (bar.size & (bar.size - 1) || bar.size < (bar.io ? 4u : 16u))
				return s->err = probe_fail("%02x:%02x.%u BAR%u size 0x%lx is not a power of two >= %u",
							   b, d, f, n, bar.size, bar.io ? 4 : 16);
		}
		n += (unsigned)used;
	}
	return 0;
}

static int test_pci(void)
{
	struct pci_scan s = { 0, false, 0 };

	if (pci_scan_bus0(pci_check_fn, &s))
		return -1;
	if (!s.nfn)
		return probe_fail("no PCI function on bus 0 (config mechanism #1 at 0xcf8/0xcfc)");
	if (!s.host_bridge)
		return probe_fail("00:00.0 is not a host bridge (class 0600)");
	printf("pci: %u function(s) on bus 0\n", s.nfn);
	return 0;
}
PROBE_TEST(pci, test_pci);
