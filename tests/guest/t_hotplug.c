/* test=hotplug: ACPI PCI hot-plug (kvmlite/hotplug.h, docs/hotplug.md) as
 * the DSDT's \_GPE._E01 / PCNT / _EJ0 drive it, with the run-hotplug runner
 * issuing device_add / device_del over QMP.
 *
 * The GPE0 block comes from the FADT; the guest enables GPE bit 1 and polls
 * GPE0_STS (the SCI is not routed: the IOAPIC pin stays masked).  Per cycle
 * i (hpn=N cycles, default 1):
 *   "HP READY i"          runner: device_add virtio-blk-pci (a disk whose
 *                         sector 0 starts with "KVMLITE-HOTPLUG"),
 *                         virtio-net-pci or e1000
 *   GPE bit 1, PCIU has exactly one new slot S (a second read gives 0);
 *   a disk is opened and sector 0 read and checked; a virtio-net device
 *   negotiated and its MAC read from the config space; an e1000's MAC read
 *   from RAL0/RAH0
 *   "HP ADDED i slot S disk" / "HP ADDED i slot S mac M"   runner: device_del
 *   GPE bit 1, PCID has S; the driver resets the device
 *   "HP EJECTING i slot S"
 *   hpgo=1: wait until the runner presses the power button (PM1_STS
 *           PWRBTN, QMP system_powerdown): it has checked that no
 *           DEVICE_DELETED came before the guest's eject
 *   write 1 << S to B0EJ; S must read 0xffff within 5 s, PCID clear
 *   "HP EJECTED i"
 * hpinflight=K: every K-th cycle (i % K == 0), for disks, 8 writes of 4 KiB (sectors 8-71) are queued
 * without waiting just before EJECTING; after the eject, every used entry
 * must have its OK status ("HP INFLIGHT i completed K of 8 mask M"); the runner
 * checks that the image holds what the completed requests wrote.
 * Meanwhile (every wait loop) the first disk, cold-plugged, gets one write
 * + read-back per turn (sector n % 1024, content from n); at the end every
 * sector written is read back once more. */
#include "probe.h"
#include "t_blk.h"
#include "virtio_drv.h"

#define PCIU 0xae00
#define PCID 0xae04
#define B0EJ 0xae08
#define PM1_STS 0x600
#define GPE_HP 0x02
#define WAIT_US 60000000ull
#define DISK_A_SECTORS 1024

static uint16_t gpe_sts, gpe_en;
static uint8_t abuf[512], rbuf[512];
static uint64_t a_ops;  /* writes done on the first disk */

static void fill(uint8_t *p, uint64_t n)
{
	for (unsigned i = 0; i < 512; i++)
		p[i] = (uint8_t)(n * 13 + i * 7 + (n >> 8));
}

/* One write + read-back on the first disk; 0 or -1. */
static int disk_a_turn(void)
{
	uint64_t n = a_ops, sec = n % DISK_A_SECTORS;
	fill(abuf, n);
	if (probe_blk_rw(true, sec, abuf, 512) != 0)
		return probe_fail("disk A write of sector %lu failed", sec);
	memset(rbuf, 0, sizeof(rbuf));
	if (probe_blk_rw(false, sec, rbuf, 512) != 0)
		return probe_fail("disk A read of sector %lu failed", sec);
	if (memcmp(abuf, rbuf, 512))
		return probe_fail("disk A sector %lu reads back different data (op %lu)", sec, n);
	a_ops++;
	return 0;
}

/* Wait for GPE0_STS bit 1 (doing disk A I/O meanwhile, at least once), then clear it. */
static int wait_gpe(const char *what)
{
	uint64_t t0 = rdtsc(), limit = WAIT_US * (tsc_per_us() ? tsc_per_us() : 1000);
	/* At least one disk A turn per wait, even when the GPE is already up:
	 * the runner counts on one write per wait, whatever the timing. */
	do {
		if (disk_a_turn() < 0)
			return -1;
		if (rdtsc() - t0 > limit)
			return probe_fail("no hot-plug GPE for %s within %llu s", what,
					  (unsigned long long)(WAIT_US / 1000000));
	} while (!(inb(gpe_sts) & GPE_HP));
	outb(gpe_sts, GPE_HP);                  /* write 1 to clear */
	if (inb(gpe_sts) & GPE_HP)
		return probe_fail("GPE0_STS bit 1 does not clear");
	return 0;
}

static unsigned one_slot(uint32_t v)
{
	unsigned s = 0;
	while (s < 32 && !(v & (1u << s)))
		s++;
	return s;
}

/* Index of slot among the functions with the same ids (vdev_find's instance). */
static unsigned instance(unsigned slot, uint16_t vendor, uint16_t device)
{
	unsigned n = 0;
	for (unsigned s = 0; s < slot; s++)
		if (pci_read16(PCI_BDF(0, s, 0), 0) == vendor && pci_read16(PCI_BDF(0, s, 0), 2) == device)
			n++;
	return n;
}

/* Drive the new function a little; mac gets the NIC's address. */
static int drive_new(unsigned i, unsigned slot, uint8_t mac[6], bool *is_nic)
{
	uint16_t bdf = PCI_BDF(0, slot, 0);
	uint16_t ven = pci_read16(bdf, 0), dev = pci_read16(bdf, 2);
	*is_nic = true;
	if (ven == 0x1af4 && dev == 0x1042) {           /* virtio-blk: read sector 0 */
		*is_nic = false;
		if (!probe_blk_open_nth(instance(slot, ven, dev)))
			return -1;
		static uint8_t b[512];
		memset(b, 0, sizeof(b));
		if (probe_blk_rw_nth(false, 0, b, 512) != 0)
			return probe_fail("cycle %u: read of the added disk failed", i);
		if (memcmp(b, "KVMLITE-HOTPLUG", 15))
			return probe_fail("cycle %u: the added disk's sector 0 starts %02x %02x %02x", i,
					  b[0], b[1], b[2]);
		return 0;
	}
	if (ven == 0x1af4 && dev == 0x1041) {           /* virtio-net: negotiate, MAC */
		static struct vdev d;
		uint64_t got;
		if (vdev_find(1, instance(slot, ven, dev), &d) < 0 ||
		    vdev_negotiate(&d, 1ull << 5 /* F_MAC */, &got) < 0)
			return -1;
		if (!(got & (1ull << 5)))
			return probe_fail("cycle %u: virtio-net without F_MAC", i);
		for (unsigned k = 0; k < 6; k++)
			mac[k] = vdev_cfg8(&d, k);
		return vdev_reset(&d);
	}
	if (ven == 0x8086 && dev == 0x100e) {           /* e1000: RAL0/RAH0 in BAR 0 */
		struct pci_bar bar;
		pci_bar_info(bdf, 0, &bar);
		if (!bar.size || bar.io)
			return probe_fail("cycle %u: e1000 BAR 0 missing", i);
		pci_write16(bdf, 4, (uint16_t)(pci_read16(bdf, 4) | 0x2));
		uint32_t lo = mmio_read32(bar.addr + 0x5400), hi = mmio_read32(bar.addr + 0x5404);
		if (!(hi & 0x80000000u))
			return probe_fail("cycle %u: e1000 RAH0 0x%x without Address Valid", i, hi);
		for (unsigned k = 0; k < 4; k++)
			mac[k] = (uint8_t)(lo >> (8 * k));
		mac[4] = (uint8_t)hi;
		mac[5] = (uint8_t)(hi >> 8);
		return 0;
	}
	return probe_fail("cycle %u: slot %u holds %04x:%04x (want virtio-blk, virtio-net or e1000)",
			  i, slot, ven, dev);
}

static unsigned inflight; /* every inflight-th cycle, 0: never */

static int cycle(unsigned i, bool go)
{
	printf("HP READY %u\n", i);
	if (wait_gpe("device_add") < 0)
		return -1;
	uint32_t up = inl(PCIU), again = inl(PCIU), down = inl(PCID);
	unsigned slot = one_slot(up);
	if (slot == 0 || slot >= 32 || (up & ~(1u << slot)))
		return probe_fail("cycle %u: PCIU 0x%x: want exactly one slot in 1-31", i, up);
	if (again)
		return probe_fail("cycle %u: PCIU reads 0x%x again (read must clear it)", i, again);
	if (down)
		return probe_fail("cycle %u: PCID 0x%x before any device_del", i, down);
	uint16_t bdf = PCI_BDF(0, slot, 0);
	uint8_t mac[6] = { 0 };
	bool nic = false;
	if (drive_new(i, slot, mac, &nic) < 0)
		return -1;
	if (nic)
		printf("HP ADDED %u slot %u mac %02x:%02x:%02x:%02x:%02x:%02x\n", i, slot, mac[0], mac[1],
		       mac[2], mac[3], mac[4], mac[5]);
	else
		printf("HP ADDED %u slot %u disk\n", i, slot);
	if (wait_gpe("device_del") < 0)
		return -1;
	down = inl(PCID);
	if (down != (1u << slot))
		return probe_fail("cycle %u: PCID 0x%x, want 0x%x", i, down, 1u << slot);
	/* hpinflight=1, disks: queue 8 writes of 4 KiB (sectors 8..71, pattern
	 * from the cycle) and eject without waiting: kvmlite must complete
	 * them (drain) before the device goes; checked after the eject */
	static uint8_t wb[8][4096];
	volatile uint8_t *st[8] = { 0 };
	unsigned used0 = 0, nq = 0;
	if (inflight && i % inflight == 0 && !nic) {
		used0 = probe_blk_used_nth();
		for (unsigned k = 0; k < 8; k++) {
			for (unsigned b = 0; b < 4096; b++)
				wb[k][b] = (uint8_t)(i * 31 + k * 7 + b);
			st[k] = probe_blk_submit_write_nth(8 + 8 * k, wb[k], 4096);
			if (!st[k])
				return probe_fail("cycle %u: cannot queue write %u", i, k);
			nq++;
		}
	} else {
		/* the driver lets go: clear memory decoding and bus mastering */
		uint32_t cmd = pci_read16(bdf, 4);
		pci_write16(bdf, 4, (uint16_t)(cmd & ~0x6u));
	}
	printf("HP EJECTING %u slot %u\n", i, slot);
	if (go) {
		uint64_t t0 = rdtsc(), limit = WAIT_US * (tsc_per_us() ? tsc_per_us() : 1000);
		while (!(inw(PM1_STS) & 0x100)) {
			if (rdtsc() - t0 > limit)
				return probe_fail("cycle %u: no go (power button) from the runner", i);
			udelay(1000);
		}
		outw(PM1_STS, 0x100);
	}
	outl(B0EJ, 1u << slot);
	uint64_t t0 = rdtsc(), limit = 5000000ull * (tsc_per_us() ? tsc_per_us() : 1000);
	while (pci_read16(bdf, 0) != 0xffff) {
		if (rdtsc() - t0 > limit)
			return probe_fail("cycle %u: slot %u still present 5 s after the eject", i, slot);
		udelay(1000);
	}
	if (inl(PCID) & (1u << slot))
		return probe_fail("cycle %u: PCID 0x%x still has slot %u after the eject", i,
				  inl(PCID), slot);
	if (nq) {
		unsigned done = (uint16_t)(probe_blk_used_nth() - used0), ok = 0, mask = 0;
		for (unsigned k = 0; k < nq; k++)
			if (*st[k] == 0) {
				ok++;
				mask |= 1u << k;
			}
		/* every request the device took completed with status OK: none
		 * left half-done (status still 0xff with a used entry) */
		if (ok != done)
			return probe_fail("cycle %u: %u used entries but %u OK status bytes", i, done, ok);
		printf("HP INFLIGHT %u completed %u of %u mask 0x%x\n", i, done, nq, mask);
	}
	printf("HP EJECTED %u\n", i);
	return 0;
}

static int test_hotplug(void)
{
	if (acpi_gpe0_block(&gpe_sts, &gpe_en) < 0)
		return -1;
	outb(gpe_en, GPE_HP);
	if (inb(gpe_en) != GPE_HP)
		return probe_fail("GPE0_EN reads 0x%x after writing 0x2", inb(gpe_en));
	char v[16];
	unsigned n = 1;
	if (probe_cmdline_get("hpn", v, sizeof(v))) {
		n = 0;
		for (const char *p = v; *p >= '0' && *p <= '9'; p++)
			n = n * 10 + (unsigned)(*p - '0');
	}
	bool go = probe_cmdline_get("hpgo", v, sizeof(v)) && v[0] == '1';
	if (probe_cmdline_get("hpinflight", v, sizeof(v)))
		for (const char *p = v; *p >= '0' && *p <= '9'; p++)
			inflight = inflight * 10 + (unsigned)(*p - '0');
	if (!probe_blk_open())
		return -1;
	for (unsigned i = 0; i < n; i++)
		if (cycle(i, go) < 0)
			return -1;
	/* every sector written last holds op (the last n with n % 1024 == sec) */
	uint64_t last = a_ops;
	for (uint64_t sec = 0; sec < DISK_A_SECTORS && sec < last; sec++) {
		uint64_t op = sec + ((last - 1 - sec) / DISK_A_SECTORS) * DISK_A_SECTORS;
		fill(abuf, op);
		if (probe_blk_rw(false, sec, rbuf, 512) != 0 || memcmp(abuf, rbuf, 512))
			return probe_fail("disk A sector %lu lost write %lu", sec, op);
	}
	printf("HP disk A: %lu writes verified\n", last);
	return 0;
}
PROBE_TEST(hotplug, test_hotplug);
