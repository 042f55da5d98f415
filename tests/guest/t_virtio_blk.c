/* Probe tests for virtio-blk-pci (modern virtio 1.x transport):
 *   blk         negotiate, MSI-X completion interrupt, write a pattern to 8
 *               sectors (split data descriptors), FLUSH, read back, compare,
 *               GET_ID, out-of-range read -> IOERR.  `ro=1`: expect a
 *               read-only drive (RO feature, write -> IOERR).
 *   blk-ro      same as blk with ro=1.
 *   blk-queues  num-queues=2: requests on both queues in flight at once.
 *   blk-bad     malformed chains (descriptor loop, buffer outside RAM,
 *               over-long indirect table, avail index jump): each must set
 *               DEVICE_NEEDS_RESET; after a reset a normal request works.
 *   mmio-blk    the virtio-mmio transport (-M microvm, virtio-blk-device):
 *               registers (magic, version 2, ids), wrong-size accesses
 *               ignored, QueueNum above QueueNumMax ignored, QueueReady
 *               with a ring outside RAM -> NEEDS_RESET, then reset,
 *               write/read 8 sectors with the completion interrupt on its
 *               ISA IRQ through the 8259 (InterruptStatus + ACK), config
 *               generation.  blk-queues / blk-bad run over mmio too with
 *               transport=mmio on the command line.
 *   blk-crash   numbered block writes, "ACK n" after each acknowledged write
 *               (after FLUSH when flush=1); driven by tests/crash/crash.py.
 *   blk-rate    writes as fast as the device takes them (I/O limit tests,
 *               bench/qos), from a ring-3 driver (below): size= bytes each
 *               (512..1 MiB, a multiple of 512), depth= in flight (1..128,
 *               default 64) on each of disks= devices (1 or 2, both kept
 *               busy at once), "W<d> <n>" (n = writes done) once every=
 *               or more completions of disk d have arrived since the
 *               last line, count= writes per disk (0: until the VM is
 *               stopped); to every other block (a gap after each write,
 *               so that a VMM merging adjacent requests, as QEMU's
 *               virtio-blk does, still sees each write on its own),
 *               wrapping at the end; idle= us of polling without a
 *               completion before the guest sleeps (default 1000, 0:
 *               never).
 */
#include "probe.h"
#include "t_assist.h"
#include "virtio_drv.h"
#include "t_blk.h"

/* PROBE_TEST with a test name that is not a C identifier ("blk-ro") */
#define PROBE_TEST_NAMED(id, tname, func)                                      \
	static const struct probe_test probe_test_##id                         \
		__attribute__((used, section("probe_tests"), aligned(16))) = { \
			tname, func }

#define VIRTIO_ID_BLOCK 2
#define F_SIZE_MAX 1
#define F_SEG_MAX 2
#define F_RO 5
#define F_BLK_SIZE 6
#define F_FLUSH 9
#define F_MQ 12

#define T_IN 0
#define T_OUT 1
#define T_FLUSH 4
#define T_GET_ID 8

#define S_OK 0
#define S_IOERR 1
#define QSIZE 64
#define TIMEOUT_US 30000000 /* flushes can be slow on a loaded host */
#define VEC_CFG 0x50
#define VEC_Q0 0x51

struct blk_req {
	uint32_t type;
	uint32_t ioprio;
	uint64_t sector;
	uint8_t status;
} __attribute__((packed));

struct blk {
	struct vdev d;
	struct vq q[2];
	unsigned nq;
	uint64_t features;
	uint64_t capacity;
	struct blk_req *reqs;  /* one per queue slot */
};

static volatile uint64_t cfg_irqs, q_irqs;
static void cfg_handler(struct trap_frame *f) { (void)f; cfg_irqs++; lapic_eoi(); }
static void q_handler(struct trap_frame *f) { (void)f; q_irqs++; lapic_eoi(); }

/* Open the inst-th virtio-blk device with nq queues. */
static int blk_open_nth(struct blk *b, unsigned inst, unsigned nq, unsigned qsize, uint64_t extra)
{
	/* transport=mmio: the virtio-blk-device of -M microvm */
	if (vdev_find_any(VIRTIO_ID_BLOCK, inst, &b->d) < 0)
		return -1;
	uint64_t want = 1ULL << F_SIZE_MAX | 1ULL << F_SEG_MAX | 1ULL << F_RO | 1ULL << F_BLK_SIZE |
			1ULL << F_FLUSH | (nq > 1 ? 1ULL << F_MQ : 0) | extra;
	if (vdev_negotiate(&b->d, want, &b->features) < 0)
		return -1;
	b->nq = nq;
	for (unsigned i = 0; i < nq; i++)
		if (vq_setup(&b->d, &b->q[i], i, qsize) < 0)
			return -1;
	if (!b->reqs)
		b->reqs = probe_alloc(sizeof(struct blk_req) * qsize * 2, 16);
	if (!b->reqs)
		return probe_fail("out of memory");
	b->capacity = vdev_cfg64(&b->d, 0);
	vdev_driver_ok(&b->d);
	if (!(vdev_status(&b->d) & VIRTIO_S_DRIVER_OK))
		return probe_fail("DRIVER_OK not set (status 0x%x)", vdev_status(&b->d));
	return 0;
}

static int blk_open(struct blk *b, unsigned nq, uint64_t extra)
{
	return blk_open_nth(b, 0, nq, QSIZE, extra);
}

/* Queue one request (header, data split in up to two descriptors, status);
 * returns the request slot (for status) or -1. */
static struct blk_req *blk_submit(struct blk *b, unsigned qi, uint32_t type, uint64_t sector,
				  void *buf, uint32_t len)
{
	struct vq *q = &b->q[qi];
	struct blk_req *r = &b->reqs[qi * QSIZE + q->next_desc % QSIZE];
	r->type = type;
	r->ioprio = 0;
	r->sector = sector;
	r->status = 0xff;
	bool dw = type == T_IN || type == T_GET_ID;
	struct vbuf v[4];
	unsigned n = 0;
	v[n++] = (struct vbuf){ (uint64_t)(uintptr_t)r, 16, false };
	if (len) {
		uint32_t first = len > 512 ? len / 2 : len;
		v[n++] = (struct vbuf){ (uint64_t)(uintptr_t)buf, first, dw };
		if (len > first)
			v[n++] = (struct vbuf){ (uint64_t)(uintptr_t)buf + first, len - first, dw };
	}
	v[n++] = (struct vbuf){ (uint64_t)(uintptr_t)&r->status, 1, true };
	if (vq_add(q, v, n) < 0)
		return NULL;
	return r;
}

/* Synchronous request: returns the status byte, or -1 on timeout. */
static int blk_do(struct blk *b, unsigned qi, uint32_t type, uint64_t sector, void *buf, uint32_t len)
{
	struct blk_req *r = blk_submit(b, qi, type, sector, buf, len);
	if (!r)
		return probe_fail("vq_add failed");
	vq_kick(&b->q[qi]);
	uint32_t ulen;
	if (vq_wait(&b->q[qi], &ulen, TIMEOUT_US) < 0)
		return probe_fail("request type %u sector %lu: no completion (status reg 0x%x)", type,
				  sector, vdev_status(&b->d));
	return r->status;
}

static void fill(uint8_t *p, unsigned len, unsigned seed)
{
	for (unsigned i = 0; i < len; i++)
		p[i] = (uint8_t)(i * 31 + seed * 7 + (i >> 8));
}

static int test_blk_common(bool ro)
{
	struct blk b = { 0 };
	if (blk_open(&b, 1, 0) < 0)
		return -1;
	printf("blk: capacity %lu sectors, features 0x%lx, status 0x%x\n", b.capacity, b.features,
	       vdev_status(&b.d));
	if (b.capacity < 64)
		return probe_fail("capacity %lu sectors is too small for the test", b.capacity);
	bool dev_ro = b.d.features & (1ULL << F_RO);
	if (dev_ro != ro)
		return probe_fail("RO feature %d, expected %d", dev_ro, ro);
	if ((b.d.features & (1ULL << F_BLK_SIZE)) && vdev_cfg32(&b.d, 20) != 512)
		return probe_fail("blk_size %u", vdev_cfg32(&b.d, 20));

	/* MSI-X: config -> vector 0, queue 0 -> vector 1 */
	irq_set_handler(VEC_CFG, cfg_handler);
	irq_set_handler(VEC_Q0, q_handler);
	lapic_enable();
	/* The BSP's LINT0 is ExtINT after reset and the 8259 comes up unmasked
	 * with vector base 0 (8 under a BIOS): a legacy IRQ during the
	 * interrupt-enabled wait below arrived as #DE (#DF under QEMU).  Only
	 * MSI-X is wanted here: remap and mask the 8259. */
	pic_init(0x20);
	if (vdev_msix_enable(&b.d) < 0 || vdev_msix_vector(&b.d, 0, VEC_CFG) < 0 ||
	    vdev_msix_vector(&b.d, 1, VEC_Q0) < 0)
		return -1;
	if (vdev_set_config_vector(&b.d, 0) != 0 || vdev_set_queue_vector(&b.d, 0, 1) != 1)
		return probe_fail("MSI-X vectors not accepted");

	uint8_t *wbuf = probe_alloc(4096, 4096), *rbuf = probe_alloc(4096, 4096);
	fill(wbuf, 4096, 5);
	int st = blk_do(&b, 0, T_OUT, 16, wbuf, 4096);
	if (st < 0)
		return -1;
	if (ro) {
		if (st != S_IOERR)
			return probe_fail("write to a read-only drive: status %d, want IOERR", st);
	} else if (st != S_OK) {
		return probe_fail("write: status %d", st);
	}
	/* completion interrupt through MSI-X (bounded wait with interrupts on) */
	irq_enable();
	for (unsigned i = 0; i < 1000000 && !q_irqs; i++)
		cpu_relax();
	irq_disable();
	if (!q_irqs)
		return probe_fail("no MSI-X interrupt for the queue (vector 0x%x)", VEC_Q0);
	if ((st = blk_do(&b, 0, T_FLUSH, 0, NULL, 0)) != S_OK)
		return probe_fail("flush: status %d", st);
	memset(rbuf, 0xee, 4096);
	if ((st = blk_do(&b, 0, T_IN, 16, rbuf, 4096)) != S_OK)
		return probe_fail("read: status %d", st);
	if (!ro && memcmp(rbuf, wbuf, 4096))
		return probe_fail("read-back differs from the written pattern");
	/* GET_ID (20 bytes, device-writable) */
	memset(rbuf, 0xee, 32);
	if ((st = blk_do(&b, 0, T_GET_ID, 0, rbuf, 20)) != S_OK)
		return probe_fail("GET_ID: status %d", st);
	/* reads past the end fail */
	if ((st = blk_do(&b, 0, T_IN, b.capacity - 1, rbuf, 1024)) != S_IOERR)
		return probe_fail("read past the end: status %d, want IOERR", st);
	if (cfg_irqs)
		return probe_fail("unexpected config interrupt");
	printf("blk: %s 8 sectors ok, %lu queue interrupts\n", ro ? "read-only" : "wrote+read", q_irqs);
	return 0;
}

static int test_blk(void)
{
	char v[8];
	const char *ro = probe_cmdline_get("ro", v, sizeof(v));
	return test_blk_common(ro && ro[0] == '1');
}
PROBE_TEST(blk, test_blk);

static int test_blk_ro(void) { return test_blk_common(true); }
PROBE_TEST_NAMED(blk_ro, "blk-ro", test_blk_ro);

static int test_blk_queues(void)
{
	struct blk b = { 0 };
	if (blk_open(&b, 2, 0) < 0)
		return -1;
	if (!(b.features & (1ULL << F_MQ)) || vdev_num_queues(&b.d) != 2 || vdev_cfg16(&b.d, 34) != 2)
		return probe_fail("MQ: features 0x%lx num_queues %u cfg %u", b.features,
				  vdev_num_queues(&b.d), vdev_cfg16(&b.d, 34));
	uint8_t *w0 = probe_alloc(2048, 512), *w1 = probe_alloc(2048, 512);
	uint8_t *r0 = probe_alloc(2048, 512), *r1 = probe_alloc(2048, 512);
	fill(w0, 2048, 1);
	fill(w1, 2048, 2);
	/* both writes in flight before either is kicked */
	struct blk_req *a = blk_submit(&b, 0, T_OUT, 100, w0, 2048);
	struct blk_req *c = blk_submit(&b, 1, T_OUT, 200, w1, 2048);
	if (!a || !c)
		return probe_fail("vq_add failed");
	vq_kick(&b.q[0]);
	vq_kick(&b.q[1]);
	if (vq_wait(&b.q[0], NULL, TIMEOUT_US) < 0 || vq_wait(&b.q[1], NULL, TIMEOUT_US) < 0)
		return probe_fail("no completion on one of the queues");
	if (a->status != S_OK || c->status != S_OK)
		return probe_fail("write status q0 %u q1 %u", a->status, c->status);
	/* read back crosswise */
	int s0 = blk_do(&b, 1, T_IN, 100, r0, 2048), s1 = blk_do(&b, 0, T_IN, 200, r1, 2048);
	if (s0 != S_OK || s1 != S_OK)
		return probe_fail("read status %d %d", s0, s1);
	if (memcmp(r0, w0, 2048) || memcmp(r1, w1, 2048))
		return probe_fail("multi-queue read-back mismatch");
	printf("blk-queues: 2 queues, concurrent writes ok\n");
	return 0;
}
PROBE_TEST_NAMED(blk_queues, "blk-queues", test_blk_queues);

/* wait (bounded) for NEEDS_RESET; the queue must not have completed anything */
static int expect_needs_reset(struct blk *b, const char *what)
{
	for (unsigned i = 0; i < 200000; i++) {
		if (vdev_status(&b->d) & VIRTIO_S_NEEDS_RESET)
			break;
		udelay(5);
	}
	uint8_t s = vdev_status(&b->d);
	if (!(s & VIRTIO_S_NEEDS_RESET))
		return probe_fail("%s: status 0x%x without NEEDS_RESET", what, s);
	if (vq_has_used(&b->q[0]))
		return probe_fail("%s: malformed chain was completed", what);
	printf("blk-bad: %s -> status 0x%x (NEEDS_RESET)\n", what, s);
	return 0;
}

static int recover(struct blk *b, uint8_t *buf, const char *what)
{
	if (blk_open(b, 1, 1ULL << VIRTIO_F_INDIRECT_DESC) < 0)
		return -1;
	fill(buf, 512, 9);
	int st = blk_do(b, 0, T_OUT, 3, buf, 512);
	if (st != S_OK)
		return probe_fail("after %s + reset: write status %d", what, st);
	return 0;
}

static int test_blk_bad(void)
{
	struct blk b = { 0 };
	uint8_t *buf = probe_alloc(4096, 4096);
	if (recover(&b, buf, "start") < 0)
		return -1;
	if (!(b.features & (1ULL << VIRTIO_F_INDIRECT_DESC)))
		return probe_fail("INDIRECT_DESC not offered");
	struct vq *q = &b.q[0];
	struct blk_req *r = &b.reqs[0];
	r->type = T_IN;
	r->sector = 0;

	/* 1. descriptor loop: 0 -> 1 -> 0 */
	q->desc[0] = (struct vring_desc){ (uint64_t)(uintptr_t)r, 16, VRING_DESC_F_NEXT, 1 };
	q->desc[1] = (struct vring_desc){ (uint64_t)(uintptr_t)buf, 512,
					  VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 0 };
	vq_publish(q, 0);
	vq_kick(q);
	if (expect_needs_reset(&b, "descriptor loop") < 0 || recover(&b, buf, "loop") < 0)
		return -1;

	/* 2. data buffer outside guest RAM */
	q->desc[0] = (struct vring_desc){ (uint64_t)(uintptr_t)r, 16, VRING_DESC_F_NEXT, 1 };
	q->desc[1] = (struct vring_desc){ 0x7f00000000ull, 512, VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, 2 };
	q->desc[2] = (struct vring_desc){ (uint64_t)(uintptr_t)&r->status, 1, VRING_DESC_F_WRITE, 0 };
	vq_publish(q, 0);
	vq_kick(q);
	if (expect_needs_reset(&b, "buffer outside RAM") < 0 || recover(&b, buf, "bad buffer") < 0)
		return -1;

	/* 3. over-long chain: an indirect table of 2048 descriptors */
	struct vring_desc *t = probe_alloc(2048 * 16, 4096);
	for (unsigned i = 0; i < 2048; i++)
		t[i] = (struct vring_desc){ (uint64_t)(uintptr_t)buf, 512,
					    VRING_DESC_F_NEXT | VRING_DESC_F_WRITE, (uint16_t)(i + 1) };
	t[0] = (struct vring_desc){ (uint64_t)(uintptr_t)r, 16, VRING_DESC_F_NEXT, 1 };
	t[2047].flags = VRING_DESC_F_WRITE;
	q->desc[0] = (struct vring_desc){ (uint64_t)(uintptr_t)t, 2048 * 16, VRING_DESC_F_INDIRECT, 0 };
	vq_publish(q, 0);
	vq_kick(q);
	if (expect_needs_reset(&b, "2048-entry indirect chain") < 0 ||
	    recover(&b, buf, "long chain") < 0)
		return -1;

	/* 4. avail index jumping more than the queue size ahead */
	q->avail_idx += q->size + 5;
	q->avail[1] = q->avail_idx;
	vq_kick(q);
	if (expect_needs_reset(&b, "avail index jump") < 0 || recover(&b, buf, "avail jump") < 0)
		return -1;

	/* the recovered device reads back what we wrote */
	uint8_t *rb = probe_alloc(512, 512);
	if (blk_do(&b, 0, T_IN, 3, rb, 512) != S_OK || memcmp(rb, buf, 512))
		return probe_fail("read-back after recovery failed");
	return 0;
}
PROBE_TEST_NAMED(blk_bad, "blk-bad", test_blk_bad);

/* ---- virtio-mmio transport ---- */
static volatile uint64_t mmio_irqs, mmio_isr_seen;
static struct vdev *mmio_dev;

static void mmio_irq_handler(struct trap_frame *f)
{
	(void)f;
	uint32_t st = mmio_read32(mmio_dev->mmio + VM_INT_STATUS);
	mmio_isr_seen |= st;
	mmio_write32(mmio_dev->mmio + VM_INT_ACK, st);
	mmio_irqs++;
	pic_eoi(mmio_dev->mmio_irq);
}

static int test_mmio_blk(void)
{
	struct blk b = { 0 };
	struct vdev *d = &b.d;
	if (vdev_find_mmio(VIRTIO_ID_BLOCK, 0, d) < 0)
		return -1;
	uint64_t base = d->mmio;
	if (mmio_read32(base + VM_VENDOR_ID) != 0x554d4551)
		return probe_fail("vendor id 0x%x, want 0x554d4551", mmio_read32(base + VM_VENDOR_ID));
	/* registers below 0x100 take 32-bit accesses only */
	if (mmio_read8(base + VM_MAGIC) != 0 || mmio_read16(base + VM_VERSION) != 0)
		return probe_fail("narrow register reads: magic8 0x%x version16 0x%x",
				  mmio_read8(base + VM_MAGIC), mmio_read16(base + VM_VERSION));
	if (vdev_negotiate(d, 1ULL << F_FLUSH | 1ULL << F_BLK_SIZE, &b.features) < 0)
		return -1;
	mmio_write8(base + VM_STATUS, 0);   /* ignored: would be a reset */
	if (vdev_status(d) != (VIRTIO_S_ACK | VIRTIO_S_DRIVER | VIRTIO_S_FEATURES_OK))
		return probe_fail("8-bit status write changed status to 0x%x", vdev_status(d));
	mmio_write32(base + VM_Q_SEL, 0);
	uint32_t max = mmio_read32(base + VM_Q_NUM_MAX);
	if (max < QSIZE || (max & (max - 1)))
		return probe_fail("QueueNumMax %u", max);
	mmio_write32(base + VM_Q_SEL, 7);   /* no such queue */
	if (mmio_read32(base + VM_Q_NUM_MAX) != 0 || mmio_read32(base + VM_Q_READY) != 0)
		return probe_fail("queue 7: QueueNumMax %u ready %u", mmio_read32(base + VM_Q_NUM_MAX),
				  mmio_read32(base + VM_Q_READY));
	/* hostile setup: QueueNum > max, then a ring outside guest RAM */
	mmio_write32(base + VM_Q_SEL, 0);
	mmio_write32(base + VM_Q_NUM, max * 2);
	mmio_write32(base + VM_Q_DESC, 0);
	mmio_write32(base + VM_Q_DESC + 4, 0x7f);      /* 0x7f00000000: no RAM there */
	mmio_write32(base + VM_Q_READY, 1);
	if (mmio_read32(base + VM_Q_READY) != 0 || !(vdev_status(d) & VIRTIO_S_NEEDS_RESET))
		return probe_fail("ring outside RAM: ready %u status 0x%x", mmio_read32(base + VM_Q_READY),
				  vdev_status(d));
	printf("mmio-blk: ring outside RAM -> status 0x%x\n", vdev_status(d));

	/* a fresh start: reset, queue, interrupt on the ISA IRQ via the 8259 */
	lapic_enable();
	pic_init(0x20);
	mmio_dev = d;
	irq_set_handler(0x20 + d->mmio_irq, mmio_irq_handler);
	pic_unmask(d->mmio_irq);
	if (vdev_negotiate(d, 1ULL << F_FLUSH | 1ULL << F_BLK_SIZE, &b.features) < 0 ||
	    vq_setup(d, &b.q[0], 0, QSIZE) < 0)
		return -1;
	b.nq = 1;
	b.reqs = probe_alloc(sizeof(struct blk_req) * QSIZE * 2, 16);
	b.capacity = vdev_cfg64(d, 0);
	uint32_t gen = mmio_read32(base + VM_CFG_GEN);
	vdev_driver_ok(d);
	if (!(vdev_status(d) & VIRTIO_S_DRIVER_OK))
		return probe_fail("DRIVER_OK not set (status 0x%x)", vdev_status(d));
	if (b.capacity < 64 || b.q[0].size != QSIZE)
		return probe_fail("capacity %lu, queue size %u", b.capacity, b.q[0].size);
	uint8_t *wbuf = probe_alloc(4096, 4096), *rbuf = probe_alloc(4096, 4096);
	fill(wbuf, 4096, 11);
	int st = blk_do(&b, 0, T_OUT, 24, wbuf, 4096);
	if (st != S_OK)
		return probe_fail("write: status %d", st);
	irq_enable();
	for (unsigned i = 0; i < 1000000 && !mmio_irqs; i++)
		cpu_relax();
	irq_disable();
	if (!mmio_irqs || !(mmio_isr_seen & 1))
		return probe_fail("no queue interrupt on IRQ %u (%lu interrupts, status 0x%lx)",
				  d->mmio_irq, mmio_irqs, mmio_isr_seen);
	if (mmio_read32(base + VM_INT_STATUS) != 0)
		return probe_fail("InterruptStatus 0x%x after ACK", mmio_read32(base + VM_INT_STATUS));
	if ((st = blk_do(&b, 0, T_FLUSH, 0, NULL, 0)) != S_OK)
		return probe_fail("flush: status %d", st);
	memset(rbuf, 0xee, 4096);
	if ((st = blk_do(&b, 0, T_IN, 24, rbuf, 4096)) != S_OK || memcmp(rbuf, wbuf, 4096))
		return probe_fail("read-back: status %d%s", st, st == S_OK ? ", data differs" : "");
	if ((st = blk_do(&b, 0, T_IN, b.capacity - 1, rbuf, 1024)) != S_IOERR)
		return probe_fail("read past the end: status %d, want IOERR", st);
	if (mmio_read32(base + VM_CFG_GEN) != gen)
		return probe_fail("config generation changed %u -> %u", gen,
				  mmio_read32(base + VM_CFG_GEN));
	/* QueueReady=0 turns the queue off (driver-side queue teardown) */
	mmio_write32(base + VM_Q_READY, 0);
	if (mmio_read32(base + VM_Q_READY) != 0)
		return probe_fail("QueueReady=0 did not stop the queue");
	pic_mask(d->mmio_irq);
	printf("mmio-blk: at 0x%lx irq %u: %lu sectors, wrote+read 8 sectors, %lu interrupts\n", base,
	       d->mmio_irq, b.capacity, mmio_irqs);
	return vdev_reset(d);
}
PROBE_TEST_NAMED(mmio_blk, "mmio-blk", test_mmio_blk);

/* ---- crash consistency ---- */
#define CRASH_MAGIC 0x48534152434c4bull /* "KLCRASH" */

static unsigned parse_uint(const char *s, unsigned def)
{
	if (!s || !*s)
		return def;
	unsigned v = 0;
	for (; *s >= '0' && *s <= '9'; s++)
		v = v * 10 + (*s - '0');
	return v;
}

/* block i (512 bytes at sector i): magic, i, gen, then a pattern of (i, gen) */
static int test_blk_crash(void)
{
	char v[24];
	unsigned gen = parse_uint(probe_cmdline_get("gen", v, sizeof(v)), 1);
	bool flush = parse_uint(probe_cmdline_get("flush", v, sizeof(v)), 0) != 0;
	unsigned count = parse_uint(probe_cmdline_get("count", v, sizeof(v)), 0);
	struct blk b = { 0 };
	if (blk_open(&b, 1, 0) < 0)
		return -1;
	if (!count || count > b.capacity)
		count = b.capacity;
	uint64_t *blk = probe_alloc(512, 512);
	printf("CRASH START gen=%u flush=%d count=%u\n", gen, flush, count);
	for (unsigned i = 0; i < count; i++) {
		blk[0] = CRASH_MAGIC;
		blk[1] = i;
		blk[2] = gen;
		for (unsigned k = 3; k < 64; k++)
			blk[k] = (uint64_t)i * 0x9e3779b97f4a7c15ull ^ ((uint64_t)gen << 32) ^ k;
		int st = blk_do(&b, 0, T_OUT, i, blk, 512);
		if (st != S_OK)
			return probe_fail("write %u: status %d", i, st);
		if (flush && (st = blk_do(&b, 0, T_FLUSH, 0, NULL, 0)) != S_OK)
			return probe_fail("flush after %u: status %d", i, st);
		printf("ACK %u\n", i);
	}
	printf("CRASH DONE %u\n", count);
	return 0;
}
PROBE_TEST_NAMED(blk_crash, "blk-crash", test_blk_crash);

/* ---- write rate (I/O limits): a ring-3 driver ----
 * Ring 0 here is KVM's instruction emulator on a PVM host (~0.6 us an
 * instruction: a ring-0 loop topped out at ~3,000 writes/s); ring 3 runs
 * natively.  So ring 0 negotiates, prebuilds one indirect chain per slot
 * (header, data, status: descriptor i = slot i) and makes the probe's
 * image, heap and the notify page user-accessible; urate_run() then runs
 * in ring 3 at its link address, polling the used rings (no interrupts:
 * VRING_AVAIL_F_NO_INTERRUPT), resubmitting each completed slot at once
 * with the next block's sector and kicking once per batch, only when the
 * device has not set VRING_USED_F_NO_NOTIFY.  It comes back to ring 0
 * through a ud2 (#UD, t_syscall.c's handler) every `every` completions of
 * a disk, for the "W<d> <n>" line, when done, on an error, and after
 * RATE_IDLE_US without a completion: ring 0 then sleeps (HLT) until the
 * queue's MSI-X interrupt or a LAPIC timer (~2 ms), so that a throttled
 * guest leaves the host's CPUs to the VMM instead of spinning (on a loaded
 * host a spinning vCPU thread is descheduled for 100s of ms at a time,
 * and its "W" lines come late). */
#define RATE_QSIZE 128
#define RATE_MAX_SIZE (1u << 20)
#define VRING_AVAIL_F_NO_INTERRUPT 1
#define VRING_USED_F_NO_NOTIFY 1
#define UR_REPORT 1
#define UR_DONE 2
#define UR_BAD_STATUS 3
#define UR_BAD_ID 4
#define UR_STUCK 5
#define UR_IDLE 6
#define VEC_RATE_TIMER 0x40
#define VEC_RATE_Q0 0x52  /* + disk */
#define RATE_IDLE_US 1000 /* idle= default: polling this long without a completion: sleep */
#define RATE_SLEEP_TICKS 2000000 /* LAPIC timer bound on one sleep (~2 ms at KVM's 1 GHz) */

struct urate_disk {
	volatile uint16_t *avail, *used;
	uint64_t notify;
	uint16_t qidx, size, avail_idx, last_used;
	struct blk_req *req;  /* slot i: header and status of descriptor i */
	uint64_t next, done, reported, count, inflight;
	uint64_t nblk, stride;  /* blocks to cycle through, sectors from one to the next */
	uint64_t kicks;
};

struct urate {
	uint64_t ndisks, depth, every;
	uint64_t stuck_tsc;  /* no completion for this long: UR_STUCK */
	uint64_t idle_tsc;   /* nothing to do for this long: UR_IDLE */
	uint64_t last_tsc;   /* the last completion */
	uint64_t why, why_disk, why_val;
	struct urate_disk d[2];
};

static struct urate urate;

/* Ring 3: put slot s (a prebuilt chain) in the avail ring for the next block. */
static inline void urate_submit(struct urate_disk *d, unsigned s)
{
	d->req[s].sector = (d->next % d->nblk) * d->stride;
	d->req[s].status = 0xff;
	d->avail[2 + d->avail_idx % d->size] = (uint16_t)s;
	d->avail_idx++;
	d->next++;
	d->inflight++;
}

static void __attribute__((noreturn, noinline)) urate_back(struct urate *u, uint64_t why,
							  uint64_t disk, uint64_t val)
{
	u->why = why;
	u->why_disk = disk;
	u->why_val = val;
	for (;;)
		__asm__ volatile("ud2" ::: "memory");
}

/* Ring 3 (entered afresh after every ud2: all state is in *u). */
static void __attribute__((noreturn, noinline)) urate_run(struct urate *u)
{
	uint64_t busy = rdtsc();  /* the last time there was something to do */

	for (;;) {
		bool all_done = true, report = false;
		for (unsigned k = 0; k < u->ndisks; k++) {
			struct urate_disk *d = &u->d[k];
			bool more = !d->count || d->next < d->count;
			unsigned added = 0;
			if (!d->next)  /* first entry: every slot */
				for (unsigned s = 0; s < u->depth && more; s++, added++) {
					urate_submit(d, s);
					more = !d->count || d->next < d->count;
				}
			uint16_t uidx = d->used[1];
			barrier();
			if (uidx != d->last_used)
				busy = u->last_tsc = rdtsc();
			while (d->last_used != uidx) {
				volatile uint32_t *ring = (volatile uint32_t *)(d->used + 2);
				uint32_t id = ring[2 * (d->last_used % d->size)];
				d->last_used++;
				if (id >= u->depth)
					urate_back(u, UR_BAD_ID, k, id);
				if (d->req[id].status != S_OK)
					urate_back(u, UR_BAD_STATUS, k, d->req[id].status);
				d->inflight--;
				d->done++;
				if (more) {
					urate_submit(d, id);
					more = !d->count || d->next < d->count;
					added++;
				}
			}
			if (added) {
				barrier();
				d->avail[1] = d->avail_idx;
				/* the index before the flag is read (store -> load) */
				__asm__ volatile("lock; orq $0, (%%rsp)" ::: "memory");
				if (!(d->used[0] & VRING_USED_F_NO_NOTIFY)) {
					*(volatile uint16_t *)(uintptr_t)d->notify = d->qidx;
					d->kicks++;
				}
			}
			if (d->done - d->reported >= u->every)
				report = true;
			if (!d->count || d->done < d->count)
				all_done = false;
		}
		if (all_done)
			urate_back(u, UR_DONE, 0, 0);
		if (report)
			urate_back(u, UR_REPORT, 0, 0);
		uint64_t now = rdtsc();
		if (now - u->last_tsc > u->stuck_tsc)
			urate_back(u, UR_STUCK, 0, 0);
		if (now - busy > u->idle_tsc)
			urate_back(u, UR_IDLE, 0, 0);
		cpu_relax();
	}
}

/* Ring 0: open disk k, one indirect chain per slot. */
static int urate_open(struct blk *b, struct urate_disk *d, unsigned k, unsigned size,
		      unsigned depth, uint8_t *buf)
{
	if (blk_open_nth(b, k, 1, RATE_QSIZE, 1ULL << VIRTIO_F_INDIRECT_DESC) < 0)
		return -1;
	struct vq *q = &b->q[0];
	if (!(b->features & (1ULL << VIRTIO_F_INDIRECT_DESC)))
		return probe_fail("disk %u: VIRTIO_F_INDIRECT_DESC not offered", k);
	if (q->size < depth)
		return probe_fail("disk %u: queue of %u entries, depth=%u", k, q->size, depth);
	d->nblk = b->capacity / (2 * (size / 512));
	if (!d->nblk)
		return probe_fail("disk %u: %lu sectors, smaller than one write", k, b->capacity);
	struct vring_desc *t = probe_alloc(depth * 3 * sizeof(*t), 16);
	if (!t)
		return probe_fail("out of memory");
	for (unsigned s = 0; s < depth; s++, t += 3) {
		struct blk_req *r = &b->reqs[s];
		r->type = T_OUT;
		t[0] = (struct vring_desc){ (uint64_t)(uintptr_t)r, 16, VRING_DESC_F_NEXT, 1 };
		t[1] = (struct vring_desc){ (uint64_t)(uintptr_t)buf, size, VRING_DESC_F_NEXT, 2 };
		t[2] = (struct vring_desc){ (uint64_t)(uintptr_t)&r->status, 1, VRING_DESC_F_WRITE,
					    0 };
		q->desc[s] = (struct vring_desc){ (uint64_t)(uintptr_t)t, 3 * sizeof(*t),
						  VRING_DESC_F_INDIRECT, 0 };
	}
	q->avail[0] = VRING_AVAIL_F_NO_INTERRUPT;
	d->avail = q->avail;
	d->used = q->used;
	d->notify = q->notify_addr;
	d->qidx = (uint16_t)q->idx;
	d->size = (uint16_t)q->size;
	d->req = b->reqs;
	d->stride = 2 * (size / 512);
	if (vdev_msix_enable(&b->d) < 0 || vdev_msix_vector(&b->d, 1, VEC_RATE_Q0 + k) < 0)
		return -1;
	if (vdev_set_queue_vector(&b->d, 0, 1) != 1)
		return probe_fail("disk %u: MSI-X vector not accepted", k);
	if (probe_map_user(q->notify_addr, 2) < 0)
		return probe_fail("disk %u: notify page 0x%lx not in the identity map", k,
				  q->notify_addr);
	return 0;
}

static volatile uint64_t rate_irqs;
static void rate_irq(struct trap_frame *f) { (void)f; rate_irqs++; lapic_eoi(); }

/* Ring 0: wait for a completion interrupt (bounded by the LAPIC timer). */
static void urate_sleep(struct urate *u)
{
	bool ready = false;
	for (unsigned k = 0; k < u->ndisks; k++)
		u->d[k].avail[0] = 0;  /* interrupts on */
	__asm__ volatile("lock; orq $0, (%%rsp)" ::: "memory");
	for (unsigned k = 0; k < u->ndisks; k++)
		if (u->d[k].used[1] != u->d[k].last_used)
			ready = true;
	if (!ready) {
		lapic_write(LAPIC_TIMER_INIT, RATE_SLEEP_TICKS);
		irq_enable_and_halt();
		irq_disable();
	}
	for (unsigned k = 0; k < u->ndisks; k++)
		u->d[k].avail[0] = VRING_AVAIL_F_NO_INTERRUPT;
}

static int test_blk_rate(void)
{
	char v[24];
	unsigned size = parse_uint(probe_cmdline_get("size", v, sizeof(v)), 512);
	unsigned depth = parse_uint(probe_cmdline_get("depth", v, sizeof(v)), 64);
	unsigned ndisks = parse_uint(probe_cmdline_get("disks", v, sizeof(v)), 1);
	unsigned every = parse_uint(probe_cmdline_get("every", v, sizeof(v)), 1);
	unsigned count = parse_uint(probe_cmdline_get("count", v, sizeof(v)), 0);
	unsigned idle = parse_uint(probe_cmdline_get("idle", v, sizeof(v)), RATE_IDLE_US);
	if (size < 512 || size > RATE_MAX_SIZE || size % 512)
		return probe_fail("size=%u: want a multiple of 512 in 512..%u", size, RATE_MAX_SIZE);
	if (depth < 1 || depth > RATE_QSIZE || ndisks < 1 || ndisks > 2 || every < 1)
		return probe_fail("depth=%u disks=%u every=%u: want 1..%u, 1..2, >= 1", depth, ndisks,
				  every, RATE_QSIZE);
	static struct blk b[2];
	struct urate *u = &urate;
	uint8_t *buf = probe_alloc(size, 4096);
	if (!buf)
		return probe_fail("out of memory");
	fill(buf, size, 1);
	memset(u, 0, sizeof(*u));
	irq_set_handler(VEC_RATE_TIMER, rate_irq);
	for (unsigned k = 0; k < ndisks; k++)
		irq_set_handler(VEC_RATE_Q0 + k, rate_irq);
	lapic_enable();
	pic_init(0x20);  /* as test_blk_common: no legacy IRQ while IF is set */
	lapic_write(LAPIC_TIMER_DIV, 0x0b);  /* divide by 1 */
	lapic_write(LAPIC_LVT_TIMER, VEC_RATE_TIMER);  /* one-shot */
	for (unsigned k = 0; k < ndisks; k++) {
		if (urate_open(&b[k], &u->d[k], k, size, depth, buf) < 0)
			return -1;
		u->d[k].count = count;
	}
	u->ndisks = ndisks;
	u->depth = depth;
	u->every = every;
	uint64_t per = tsc_per_us() ? tsc_per_us() : 1000;
	u->stuck_tsc = (uint64_t)TIMEOUT_US * per;
	u->idle_tsc = idle ? idle * per : ~0ull;
	u->last_tsc = rdtsc();
	/* code, data, rings and requests: the image and the heap */
	uint64_t lo = (uint64_t)(uintptr_t)_image_start;
	if (r3_setup() < 0 || probe_map_user(lo, probe_alloc_end() - lo) < 0)
		return probe_fail("cannot set up ring 3");
	printf("RATE START size=%u depth=%u disks=%u ring=3\n", size, depth, ndisks);
	for (;;) {
		uint64_t rip, vec = r3_call((uint64_t)(uintptr_t)urate_run, (uint64_t)(uintptr_t)u,
					    &rip);
		if (vec != 6)
			return probe_fail("ring-3 driver: exception %ld at rip 0x%lx", (long)vec, rip);
		for (unsigned k = 0; k < ndisks; k++) {
			struct urate_disk *d = &u->d[k];
			if (d->done - d->reported >= every || (u->why == UR_DONE && d->done != d->reported)) {
				printf("W%u %lu\n", k, d->done);
				d->reported = d->done;
			}
		}
		switch (u->why) {
		case UR_REPORT:
			continue;
		case UR_IDLE:
			urate_sleep(u);
			continue;
		case UR_DONE:
			for (unsigned k = 0; k < ndisks; k++)
				printf("RATE disk %u: %lu writes, %lu kicks\n", k, u->d[k].done,
				       u->d[k].kicks);
			printf("RATE %lu interrupts\n", rate_irqs);
			printf("RATE DONE\n");
			return 0;
		case UR_BAD_STATUS:
			return probe_fail("disk %lu write %lu: status %lu", u->why_disk,
					  u->d[u->why_disk].done, u->why_val);
		case UR_BAD_ID:
			return probe_fail("disk %lu: used id %lu is not a slot", u->why_disk, u->why_val);
		case UR_STUCK:
			return probe_fail("no write completed for %u s (in flight: %lu, %lu)",
					  TIMEOUT_US / 1000000, u->d[0].inflight, u->d[1].inflight);
		default:
			return probe_fail("ring-3 driver stopped with reason %lu", u->why);
		}
	}
}
PROBE_TEST_NAMED(blk_rate, "blk-rate", test_blk_rate);

/* ---- for other probe tests (t_blk.h) ---- */
static struct blk shared_blk;

uint64_t probe_blk_open(void)
{
	if (blk_open(&shared_blk, 1, 0) < 0)
		return 0;
	return shared_blk.capacity;
}

int probe_blk_rw(bool write, uint64_t sector, void *buf, uint32_t len)
{
	return blk_do(&shared_blk, 0, write ? T_OUT : T_IN, sector, buf, len);
}

/* The inst-th virtio-blk device as a second disk (t_hotplug.c): opened
 * again after each hot-plug, 16-entry queue (the rings are never freed). */
static struct blk nth_blk;

uint64_t probe_blk_open_nth(unsigned inst)
{
	if (blk_open_nth(&nth_blk, inst, 1, 16, 0) < 0)
		return 0;
	return nth_blk.capacity;
}

int probe_blk_rw_nth(bool write, uint64_t sector, void *buf, uint32_t len)
{
	return blk_do(&nth_blk, 0, write ? T_OUT : T_IN, sector, buf, len);
}

/* Queue a write of len bytes at sector on that disk and notify, without
 * waiting; the request's status byte (0xff until the device writes it). */
volatile uint8_t *probe_blk_submit_write_nth(uint64_t sector, void *buf, uint32_t len)
{
	struct blk_req *r = blk_submit(&nth_blk, 0, T_OUT, sector, buf, len);
	if (!r)
		return NULL;
	vq_kick(&nth_blk.q[0]);
	return &r->status;
}

/* Completions the device has put in the used ring so far (all time). */
unsigned probe_blk_used_nth(void)
{
	barrier();
	return nth_blk.q[0].used[1];
}
