/* Probe tests for virtio-rng-pci (virtio 1.x 5.4), and virtio-rng-device
 * with `transport=mmio` on the command line (-M microvm):
 *   rng        negotiate; a request posted before DRIVER_OK is served after it;
 *              two reads of 64 bytes: neither all one value, the
 *              two differ; a chain with only a device-readable buffer
 *              completes with length 0 and the device stays usable.
 *              With `limit=N` on the command line (the VMM runs the device
 *              with max-bytes=N,period=1000): the first 4096-byte request
 *              gets at most N bytes, and over about `secs=` seconds (default
 *              3) of keeping a 4096-byte request posted the guest receives
 *              at least N and at most N * (elapsed whole periods + 1) bytes
 *              (TSC-timed: a generous bound that a loaded host cannot break,
 *              as a late period only lowers the count).
 */
#include "probe.h"
#include "virtio_drv.h"

#define VIRTIO_ID_RNG 4
#define QSIZE 8
#define TIMEOUT_US 10000000


static int rng_read(struct vq *q, uint8_t *buf, uint32_t len, uint32_t *got, uint64_t timeout)
{
	struct vbuf b = { (uint64_t)(uintptr_t)buf, len, true };
	int head = vq_add(q, &b, 1);
	vq_kick(q);
	if (vq_wait(q, got, timeout) != head)
		return probe_fail("no completion of a %u-byte request", len);
	if (*got > len)
		return probe_fail("used length %u > buffer %u", *got, len);
	return 0;
}

static bool all_same(const uint8_t *p, unsigned n)
{
	for (unsigned i = 1; i < n; i++)
		if (p[i] != p[0])
			return false;
	return true;
}

static int limit_test(struct vq *q, unsigned long limit)
{
	uint8_t *buf = probe_alloc(4096, 16);
	uint64_t hz = tsc_per_us();
	uint64_t t0 = rdtsc();
	uint32_t got;
	if (rng_read(q, buf, 4096, &got, TIMEOUT_US) < 0)
		return -1;
	if (got == 0 || got > limit)
		return probe_fail("first request of the period got %u bytes (max-bytes %lu)", got,
				  limit);
	uint64_t total = got;
	unsigned long secs = probe_cmdline_num("secs", 3);
	uint64_t end = t0 + secs * 1000000ull * hz;
	struct vbuf b = { (uint64_t)(uintptr_t)buf, 4096, true };
	int head = vq_add(q, &b, 1);
	vq_kick(q);
	unsigned completions = 1;
	while (rdtsc() < end) {
		if (vq_has_used(q)) {
			if (vq_wait(q, &got, 0) != head)
				return probe_fail("unexpected completion");
			if (got > limit)
				return probe_fail("one completion of %u bytes > max-bytes %lu", got, limit);
			total += got;
			completions++;
			head = vq_add(q, &b, 1);
			vq_kick(q);
		}
		udelay(1000);
	}
	uint64_t elapsed_ms = (rdtsc() - t0) / hz / 1000;
	uint64_t periods = elapsed_ms / 1000 + 1;   /* periods begun since the first request */
	printf("rng limit: %lu bytes in %u completions over %lu ms (max-bytes %lu/1000 ms)\n",
		     (unsigned long)total, completions, (unsigned long)elapsed_ms, limit);
	if (total > limit * (periods + 1))
		return probe_fail("%lu bytes in %lu ms: more than max-bytes %lu per period",
				  (unsigned long)total, (unsigned long)elapsed_ms, limit);
	if (elapsed_ms >= 2000 && total < 2 * limit)
		return probe_fail("only %lu bytes in %lu ms: the quota was not refilled",
				  (unsigned long)total, (unsigned long)elapsed_ms);
	return 0;
}

static int t_rng(void)
{
	struct vdev d;
	struct vq q;
	uint64_t got_f;
	if (vdev_find_any(VIRTIO_ID_RNG, 0, &d) < 0)
		return -1;
	if (vdev_negotiate(&d, 0, &got_f) < 0)
		return -1;
	if (vq_setup(&d, &q, 0, QSIZE) < 0)
		return -1;
	/* a request made available (and kicked) before DRIVER_OK is served
	 * once the driver is OK: the status write, handled on the vCPU,
	 * starts the device */
	uint8_t *early = probe_alloc(16, 16);
	struct vbuf eb = { (uint64_t)(uintptr_t)early, 16, true };
	int eh = vq_add(&q, &eb, 1);
	vq_kick(&q);
	vdev_driver_ok(&d);
	if (!(vdev_status(&d) & VIRTIO_S_DRIVER_OK))
		return probe_fail("DRIVER_OK not set (status 0x%x)", vdev_status(&d));
	uint32_t el = 0;
	if (vq_wait(&q, &el, TIMEOUT_US) != eh || el == 0 || el > 16)
		return probe_fail("the request posted before DRIVER_OK: not completed or %u bytes", el);
	unsigned long limit = probe_cmdline_num("limit", 0);
	if (limit)
		return limit_test(&q, limit);

	uint8_t *a = probe_alloc(64, 16), *b = probe_alloc(64, 16);
	uint32_t la, lb;
	if (rng_read(&q, a, 64, &la, TIMEOUT_US) < 0 || rng_read(&q, b, 64, &lb, TIMEOUT_US) < 0)
		return -1;
	if (la != 64 || lb != 64)
		return probe_fail("short reads: %u and %u of 64 bytes", la, lb);
	if (all_same(a, 64) || all_same(b, 64))
		return probe_fail("a read returned 64 equal bytes (0x%x / 0x%x)", a[0], b[0]);
	if (!memcmp(a, b, 64))
		return probe_fail("two reads returned the same 64 bytes");

	/* hostile: a chain with a device-readable buffer only, then a normal
	 * one: the first completes with length 0 (QEMU only when a writable
	 * request follows it), the second gets its bytes */
	struct vbuf ro = { (uint64_t)(uintptr_t)a, 64, false };
	struct vbuf wr = { (uint64_t)(uintptr_t)b, 64, true };
	int h1 = vq_add(&q, &ro, 1);
	int h2 = vq_add(&q, &wr, 1);
	vq_kick(&q);
	uint32_t l;
	if (vq_wait(&q, &l, TIMEOUT_US) != h1)
		return probe_fail("a read-only chain was not completed first");
	if (l != 0)
		return probe_fail("a read-only chain completed with length %u", l);
	if (vq_wait(&q, &l, TIMEOUT_US) != h2 || l != 64)
		return probe_fail("the request after a read-only chain: not completed or %u bytes", l);
	if (vdev_status(&d) & VIRTIO_S_NEEDS_RESET)
		return probe_fail("device needs reset after a read-only chain");
	int head;
	/* a request split over two writable descriptors is filled whole */
	uint8_t *c = probe_alloc(4096, 16);
	memset(c, 0, 4096);
	struct vbuf two[2] = { { (uint64_t)(uintptr_t)c, 1000, true },
			       { (uint64_t)(uintptr_t)(c + 2048), 2048, true } };
	head = vq_add(&q, two, 2);
	vq_kick(&q);
	if (vq_wait(&q, &l, TIMEOUT_US) != head)
		return probe_fail("no completion of a two-descriptor request");
	if (l != 3048)
		return probe_fail("two-descriptor request: %u bytes, expected 3048", l);
	if (all_same(c + 2048 + 1024, 1024))
		return probe_fail("second descriptor not filled");
	printf("rng: 64+64 bytes, first %02x %02x %02x %02x\n", a[0], a[1], a[2], a[3]);
	return 0;
}
PROBE_TEST(rng, t_rng);
