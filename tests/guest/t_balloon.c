/* Probe test `balloon` for virtio-balloon-pci (virtio-balloon-device with
 * `transport=mmio`), driven from the host by tests/qmp/test_balloon.py
 * (QMP balloon / qom-set, RSS of the VMM):
 *
 *   1. negotiate STATS_VQ (+ DEFLATE_ON_OOM, PAGE_REPORTING when offered),
 *      queues inflate/deflate/stats(/reporting); a first stats buffer
 *      (swap-in 7, free 0x1234000, total = RAM, and an unknown tag 99);
 *      touch pages= 4 KiB pages (default 8192) and print
 *      "BALLOON READY pages=N".
 *   2. wait until the host's num_pages >= N (QMP balloon), inflate those
 *      pages in buffers of 256 PFNs, set actual = N: "BALLOON INFLATED N".
 *   3. wait for the device to give the stats buffer back (the host set
 *      guest-stats-polling-interval), refill it with free 0x5678000:
 *      "BALLOON STATS2".
 *   4. wait until num_pages == 0, deflate, actual = 0; every inflated page
 *      must read back as zero (the host released it) and take new data:
 *      "BALLOON DEFLATED".
 *   5. with PAGE_REPORTING: report a touched 4 MiB range as free; it must
 *      read back as zero: "BALLOON REPORTED".
 *   6. hostile: PFNs beyond RAM, an inflate buffer of 131072 PFNs (over the
 *      device's per-buffer cap), a 13-byte stats buffer, a stats buffer with
 *      only a device-writable descriptor, actual = 0xffffffff; the device
 *      must not need a reset, and one more inflate must complete; actual =
 *      0 again: "BALLOON HOSTILE ok".  Passes once num_pages >= 1 (the
 *      host is done).
 */
#include "probe.h"
#include "virtio_drv.h"

#define VIRTIO_ID_BALLOON 5
#define F_STATS_VQ 1
#define F_DEFLATE_ON_OOM 2
#define F_REPORTING 5

#define C_NUM_PAGES 0
#define C_ACTUAL 4

#define QSIZE 128
#define PFNS_PER_BUF 256
#define WAIT_HOST_US 120000000ull
#define WAIT_DEV_US 20000000ull
#define MARK 0x6b6c62616c6c6f6eull /* "kvlballoon" */

struct stat_rec {
	uint16_t tag;
	uint64_t val;
} __attribute__((packed));

static struct vdev d;
static struct vq qi, qd, qs, qr;
static bool reporting;

static int wait_cfg(unsigned off, uint32_t want, bool at_least)
{
	for (uint64_t t = 0; t < WAIT_HOST_US; t += 1000) {
		uint32_t v = vdev_cfg32(&d, off);
		if (at_least ? v >= want : v == want)
			return 0;
		udelay(1000);
	}
	return probe_fail("config 0x%x never became %s%u (is %u)", off, at_least ? ">= " : "", want,
			  vdev_cfg32(&d, off));
}

/* Send n PFNs starting at pfns[] on q in buffers of PFNS_PER_BUF and wait
 * for all of them. */
static int send_pfns(struct vq *q, uint32_t *pfns, unsigned n)
{
	unsigned bufs = 0;
	for (unsigned i = 0; i < n; i += PFNS_PER_BUF) {
		unsigned k = n - i < PFNS_PER_BUF ? n - i : PFNS_PER_BUF;
		struct vbuf b = { (uint64_t)(uintptr_t)(pfns + i), k * 4, false };
		if (vq_add(q, &b, 1) < 0)
			return probe_fail("vq_add");
		bufs++;
		if (bufs == QSIZE / 2 || i + k >= n) {
			vq_kick(q);
			for (; bufs; bufs--) {
				uint32_t len;
				if (vq_wait(q, &len, WAIT_DEV_US) < 0)
					return probe_fail("queue %u: no completion (status 0x%x)", q->idx,
							  vdev_status(&d));
			}
		}
	}
	return 0;
}

static void fill_stats(struct stat_rec *s, uint64_t free_mem)
{
	s[0] = (struct stat_rec){ 0, 7 };            /* swap-in */
	s[1] = (struct stat_rec){ 4, free_mem };     /* free memory */
	s[2] = (struct stat_rec){ 5, probe_alloc_end() }; /* total (any value) */
	s[3] = (struct stat_rec){ 99, 5 };           /* unknown tag: ignored */
}

static int post_stats(struct stat_rec *s)
{
	struct vbuf b = { (uint64_t)(uintptr_t)s, 4 * sizeof(*s), false };
	if (vq_add(&qs, &b, 1) < 0)
		return probe_fail("vq_add stats");
	vq_kick(&qs);
	return 0;
}

static int hostile(uint32_t *pfns)
{
	/* PFNs outside guest RAM (and one that overflows when shifted) */
	pfns[0] = 0xfffffff0;
	pfns[1] = 0xffffffff;
	pfns[2] = (uint32_t)(probe_alloc_end() >> 12) + 0x100000; /* 4 GiB past */
	if (send_pfns(&qi, pfns, 3) < 0 || send_pfns(&qd, pfns, 3) < 0)
		return -1;
	/* 131072 PFNs in one buffer, all outside RAM */
	uint32_t *big = probe_alloc_raw(131072 * 4, 4096);
	if (!big)
		return probe_fail("out of memory");
	for (unsigned i = 0; i < 131072; i += 1024)
		for (unsigned k = 0; k < 1024; k++)
			big[i + k] = 0xfffff000u + k;
	struct vbuf b = { (uint64_t)(uintptr_t)big, 131072 * 4, false };
	vq_add(&qi, &b, 1);
	vq_kick(&qi);
	uint32_t len;
	if (vq_wait(&qi, &len, WAIT_DEV_US) < 0)
		return probe_fail("oversized inflate buffer not completed (status 0x%x)", vdev_status(&d));
	/* stats: 13 bytes of garbage, then a device-writable buffer only;
	 * each replaces the held buffer, which comes back used */
	uint8_t *junk = probe_alloc(64, 16);
	for (unsigned i = 0; i < 13; i++)
		junk[i] = 0xa5;
	struct vbuf s1 = { (uint64_t)(uintptr_t)junk, 13, false };
	struct vbuf s2 = { (uint64_t)(uintptr_t)(junk + 32), 16, true };
	vq_add(&qs, &s1, 1);
	vq_kick(&qs);
	if (vq_wait(&qs, &len, WAIT_DEV_US) < 0)
		return probe_fail("held stats buffer not returned");
	vq_add(&qs, &s2, 1);
	vq_kick(&qs);
	if (vq_wait(&qs, &len, WAIT_DEV_US) < 0)
		return probe_fail("13-byte stats buffer not returned");
	/* more than all of RAM */
	mmio_write32(d.devcfg + C_ACTUAL, 0xffffffff);
	if (vdev_status(&d) & (VIRTIO_S_NEEDS_RESET | VIRTIO_S_FAILED))
		return probe_fail("device needs a reset after hostile input (status 0x%x)",
				  vdev_status(&d));
	/* still working: inflate and deflate one fresh page */
	uint32_t *one = probe_alloc(16, 16);
	uint8_t *pg = probe_alloc_raw(4096, 4096);
	if (!pg)
		return probe_fail("out of memory");
	one[0] = (uint32_t)((uintptr_t)pg >> 12);
	if (send_pfns(&qi, one, 1) < 0 || send_pfns(&qd, one, 1) < 0)
		return -1;
	mmio_write32(d.devcfg + C_ACTUAL, 0);
	printf("BALLOON HOSTILE ok\n");
	/* the host checks the VMM, then asks for one page: the end */
	return wait_cfg(C_NUM_PAGES, 1, true);
}

static int report_test(void)
{
	const unsigned n = 1024; /* 4 MiB, 2 MiB aligned (a huge page backing) */
	uint8_t *r = probe_alloc_raw(n * 4096, 2u << 20);
	if (!r)
		return probe_fail("out of memory");
	for (unsigned i = 0; i < n; i++)
		*(volatile uint64_t *)(r + i * 4096) = MARK + i;
	struct vbuf b = { (uint64_t)(uintptr_t)r, n * 4096, true };
	vq_add(&qr, &b, 1);
	vq_kick(&qr);
	uint32_t len;
	if (vq_wait(&qr, &len, WAIT_DEV_US) < 0)
		return probe_fail("free page report not completed");
	for (unsigned i = 0; i < n; i++)
		if (*(volatile uint64_t *)(r + i * 4096) != 0)
			return probe_fail("reported page %u still holds its data", i);
	printf("BALLOON REPORTED %u\n", n);
	return 0;
}

static int balloon_test(void)
{
	char buf[32];
	unsigned npages = 8192;
	if (probe_cmdline_get("pages", buf, sizeof(buf))) {
		npages = 0;
		for (const char *p = buf; *p >= '0' && *p <= '9'; p++)
			npages = npages * 10 + (unsigned)(*p - '0');
	}
	if (vdev_find_any(VIRTIO_ID_BALLOON, 0, &d) < 0)
		return -1;
	uint64_t got;
	if (vdev_negotiate(&d, 1ull << F_STATS_VQ | 1ull << F_DEFLATE_ON_OOM | 1ull << F_REPORTING,
			   &got) < 0)
		return -1;
	if (!(got & 1ull << F_STATS_VQ))
		return probe_fail("STATS_VQ not offered (features 0x%llx)", (unsigned long long)got);
	reporting = got & 1ull << F_REPORTING;
	if (vq_setup(&d, &qi, 0, QSIZE) < 0 || vq_setup(&d, &qd, 1, QSIZE) < 0 ||
	    vq_setup(&d, &qs, 2, 4) < 0 || (reporting && vq_setup(&d, &qr, 3, 16) < 0))
		return -1;
	vdev_driver_ok(&d);
	struct stat_rec *st = probe_alloc(4 * sizeof(*st), 16);
	fill_stats(st, 0x1234000);
	if (post_stats(st) < 0)
		return -1;

	uint8_t *area = probe_alloc_raw((size_t)npages * 4096, 4096);
	uint32_t *pfns = probe_alloc((size_t)npages * 4, 16);
	if (!area || !pfns)
		return probe_fail("out of memory for %u pages", npages);
	for (unsigned i = 0; i < npages; i++) {
		*(volatile uint64_t *)(area + (size_t)i * 4096) = MARK + i;
		pfns[i] = (uint32_t)(((uintptr_t)area >> 12) + i);
	}
	printf("BALLOON READY pages=%u reporting=%u\n", npages, reporting);

	if (wait_cfg(C_NUM_PAGES, npages, true) < 0)
		return -1;
	if (send_pfns(&qi, pfns, npages) < 0)
		return -1;
	mmio_write32(d.devcfg + C_ACTUAL, npages);
	printf("BALLOON INFLATED %u\n", npages);

	uint32_t len;
	if (vq_wait(&qs, &len, WAIT_HOST_US) < 0)
		return probe_fail("the device never gave the stats buffer back");
	fill_stats(st, 0x5678000);
	if (post_stats(st) < 0)
		return -1;
	printf("BALLOON STATS2\n");

	if (wait_cfg(C_NUM_PAGES, 0, false) < 0)
		return -1;
	if (send_pfns(&qd, pfns, npages) < 0)
		return -1;
	mmio_write32(d.devcfg + C_ACTUAL, 0);
	unsigned kept = 0;
	for (unsigned i = 0; i < npages; i++) {
		volatile uint64_t *p = (volatile uint64_t *)(area + (size_t)i * 4096);
		if (*p != 0)
			kept++;
		*p = ~(MARK + i);
	}
	for (unsigned i = 0; i < npages; i++)
		if (*(volatile uint64_t *)(area + (size_t)i * 4096) != ~(MARK + i))
			return probe_fail("deflated page %u does not keep new data", i);
	if (kept)
		return probe_fail("%u of %u inflated pages still held their data", kept, npages);
	printf("BALLOON DEFLATED %u\n", npages);

	if (reporting && report_test() < 0)
		return -1;
	return hostile(pfns);
}

PROBE_TEST(balloon, balloon_test);
