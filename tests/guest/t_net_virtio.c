/* Probe tests for virtio-net-pci (tests/guest/virtio_drv.c underneath):
 *   net_virtio        features (MAC, STATUS, CSUM, MRG_RXBUF, CTRL_VQ, CTRL_RX),
 *                     config MAC + link up, control queue (promisc off, MAC
 *                     table), then ARP, DHCP DISCOVER with a NEEDS_CSUM UDP
 *                     checksum and ICMP echo with a NEEDS_CSUM ICMP checksum
 *                     against slirp.
 *   net_bad_virtio    a TX descriptor loop and a TX buffer outside RAM mark
 *                     the device NEEDS_RESET without hurting the VMM; after
 *                     a reset the NIC works again.
 *   net_flood_virtio  send n= frames (default 20000) as fast as possible.
 *   net_pair_virtio   role=a|b: two VMs on -netdev socket exchange frames
 *                     both ways (tests/guest/run-net-pair). */
#include "t_net.h"
#include "virtio_drv.h"

#define F_CSUM 0
#define F_MAC 5
#define F_HOST_TSO4 11
#define F_MRG_RXBUF 15
#define F_STATUS 16
#define F_CTRL_VQ 17
#define F_CTRL_RX 18

#define HDR 12
#define NRXBUF 8
#define RXBUF_SZ 2048
#define QSZ 16

struct vnetg {
	struct vdev d;
	struct vq rx, tx, ctrl;
	uint64_t feat;
	uint8_t *rxbuf;            /* NRXBUF x RXBUF_SZ */
	int head_buf[VDRV_MAX_QUEUE];
	uint8_t *txbuf;            /* header + frame */
	uint8_t *ctl;              /* control request scratch */
};

static struct vnetg vg;
static struct netif virtio_nif;

static void rx_post(unsigned i)
{
	struct vbuf b = { (uint64_t)(uintptr_t)(vg.rxbuf + i * RXBUF_SZ), RXBUF_SZ, true };
	int head = vq_add(&vg.rx, &b, 1);
	vg.head_buf[head] = (int)i;
}

static int ctrl_cmd(uint8_t cls, uint8_t cmd, const void *data, unsigned len)
{
	uint8_t *req = vg.ctl, *ack = vg.ctl + 512;
	req[0] = cls;
	req[1] = cmd;
	memcpy(req + 2, data, len);
	*ack = 0xee;
	struct vbuf b[2] = { { (uint64_t)(uintptr_t)req, 2 + len, false },
			     { (uint64_t)(uintptr_t)ack, 1, true } };
	vq_add(&vg.ctrl, b, 2);
	vq_kick(&vg.ctrl);
	uint32_t l;
	if (vq_wait(&vg.ctrl, &l, 2000000) < 0)
		return probe_fail("control command %u/%u not completed", cls, cmd);
	return *ack;
}

static int virtio_send(struct netif *nif, const uint8_t *frame, size_t len, int mode)
{
	(void)nif;
	uint8_t *h = vg.txbuf;
	memset(h, 0, HDR);
	if (mode) {
		h[0] = 1;                 /* NEEDS_CSUM */
		h[6] = 34;                /* csum_start: L4 header */
		h[8] = (uint8_t)mode;     /* csum_offset */
	}
	memcpy(h + HDR, frame, len);
	/* header and frame in two descriptors, like Linux without any_layout */
	struct vbuf b[2] = { { (uint64_t)(uintptr_t)h, HDR, false },
			     { (uint64_t)(uintptr_t)(h + HDR), (uint32_t)len, false } };
	vq_add(&vg.tx, b, 2);
	vq_kick(&vg.tx);
	uint32_t l;
	if (vq_wait(&vg.tx, &l, 2000000) < 0)
		return probe_fail("TX not completed (status 0x%x)", vdev_status(&vg.d));
	return 0;
}

/* GSO: the frame as the e1000 TSO form (IP length 0, TCP field without
 * length) becomes what Linux hands a virtio device: real IP length and
 * checksum, TCP field = pseudo-header sum with the L4 length, then
 * NEEDS_CSUM + GSO_TCPV4 in the header. */
static int virtio_send_tso(struct netif *nif, const uint8_t *frame, size_t len, size_t hdr_len,
			   unsigned mss)
{
	(void)nif;
	static uint8_t *big;
	if (!big && !(big = probe_alloc(65536 + 4096, 4096)))
		return -1;
	if (len > 65536)
		return -1;
	uint8_t *h = big, *f = big + HDR;
	memset(h, 0, HDR);
	h[0] = 1;                           /* NEEDS_CSUM */
	h[1] = 1;                           /* GSO_TCPV4 */
	h[2] = (uint8_t)hdr_len;
	h[4] = (uint8_t)mss;
	h[5] = (uint8_t)(mss >> 8);
	h[6] = 34;
	h[8] = 16;
	memcpy(f, frame, len);
	net_put16(f + 16, (uint16_t)(len - 14));
	net_put16(f + 24, 0);
	net_put16(f + 24, net_fold(net_sum(0, f + 14, 20)));
	uint8_t ph[12];
	memcpy(ph, f + 26, 8);
	ph[8] = 0;
	ph[9] = 6;
	net_put16(ph + 10, (uint16_t)(len - 34));
	net_put16(f + 50, (uint16_t)~net_fold(net_sum(0, ph, 12)));
	struct vbuf b[2] = { { (uint64_t)(uintptr_t)h, HDR, false },
			     { (uint64_t)(uintptr_t)f, (uint32_t)len, false } };
	vq_add(&vg.tx, b, 2);
	vq_kick(&vg.tx);
	uint32_t l;
	if (vq_wait(&vg.tx, &l, 2000000) < 0)
		return probe_fail("GSO TX not completed (status 0x%x)", vdev_status(&vg.d));
	return 0;
}

static size_t virtio_recv(struct netif *nif, uint8_t *out, size_t cap)
{
	(void)nif;
	if (!vq_has_used(&vg.rx))
		return 0;
	uint32_t len;
	int head = vq_wait(&vg.rx, &len, 0);
	if (head < 0 || head >= (int)vg.rx.size)
		return 0;
	int i = vg.head_buf[head];
	uint8_t *b = vg.rxbuf + (unsigned)i * RXBUF_SZ;
	size_t n = 0;
	uint16_t nbuf = (uint16_t)(b[10] | b[11] << 8);
	if (len > HDR && len <= RXBUF_SZ && nbuf == 1) {
		n = len - HDR;
		if (n > cap)
			n = cap;
		memcpy(out, b + HDR, n);
	}
	rx_post((unsigned)i);
	vq_kick(&vg.rx);
	return n;
}

/* want: required features; CSUM is taken when offered (QEMU offers it
 * only with a vnet-header back-end). */
static int virtio_up(uint64_t want)
{
	if (vdev_find(1, 0, &vg.d) < 0)
		return -1;
	if (vdev_negotiate(&vg.d, want | 1ull << F_CSUM, &vg.feat) < 0)
		return -1;
	if ((vg.feat & want) != want)
		return probe_fail("features 0x%lx lack 0x%lx", vg.feat, want & ~vg.feat);
	if (vq_setup(&vg.d, &vg.rx, 0, QSZ) || vq_setup(&vg.d, &vg.tx, 1, QSZ))
		return -1;
	if ((want & (1ull << F_CTRL_VQ)) && vq_setup(&vg.d, &vg.ctrl, 2, 8))
		return -1;
	if (!vg.rxbuf) {
		vg.rxbuf = probe_alloc(NRXBUF * RXBUF_SZ, 4096);
		vg.txbuf = probe_alloc(4096, 4096);
		vg.ctl = probe_alloc(1024, 64);
		if (!vg.rxbuf || !vg.txbuf || !vg.ctl)
			return probe_fail("out of memory");
	}
	for (unsigned i = 0; i < 6; i++)
		virtio_nif.mac[i] = vdev_cfg8(&vg.d, i);
	vdev_driver_ok(&vg.d);
	for (unsigned i = 0; i < NRXBUF; i++)
		rx_post(i);
	vq_kick(&vg.rx);
	virtio_nif.name = "virtio-net";
	virtio_nif.send = virtio_send;
	virtio_nif.recv = virtio_recv;
	virtio_nif.send_tso = virtio_send_tso;
	return 0;
}

static const uint64_t WANT = 1ull << F_MAC | 1ull << F_MRG_RXBUF | 1ull << F_STATUS |
			     1ull << F_CTRL_VQ | 1ull << F_CTRL_RX;

/* ARP plain; with CSUM: DHCP with NEEDS_CSUM at UDP (offset 6) and ICMP
 * with NEEDS_CSUM (offset 2), else complete checksums. */
static int conversation(void)
{
	bool csum = vg.feat & (1ull << F_CSUM);
	printf("virtio-net: checksum offload %s\n", csum ? "on (NEEDS_CSUM)" : "off");
	return net_slirp_conversation(&virtio_nif, 0, csum ? 6 : 0, !csum, csum ? 2 : 0, csum);
}

static int test_net_virtio(void)
{
	if (virtio_up(WANT))
		return -1;
	uint16_t st = vdev_cfg16(&vg.d, 6);
	printf("virtio-net: MAC %02x:%02x:%02x:%02x:%02x:%02x, status %x, features 0x%lx\n",
	       virtio_nif.mac[0], virtio_nif.mac[1], virtio_nif.mac[2], virtio_nif.mac[3],
	       virtio_nif.mac[4], virtio_nif.mac[5], st, vg.feat);
	if (!(st & 1))
		return probe_fail("link is down (status %x)", st);
	uint8_t off = 0;
	if (ctrl_cmd(0, 0, &off, 1) != 0)          /* RX PROMISC off */
		return probe_fail("CTRL_RX_PROMISC not acknowledged");
	if (ctrl_cmd(0, 99, &off, 1) != 1)         /* unknown command -> ERR */
		return probe_fail("an unknown control command was not refused");
	/* MAC table: no extra unicast, one multicast */
	uint8_t tbl[4 + 4 + 6] = { 0, 0, 0, 0, 1, 0, 0, 0, 0x01, 0x00, 0x5e, 0x00, 0x00, 0x01 };
	if (ctrl_cmd(1, 0, tbl, sizeof(tbl)) != 0)
		return probe_fail("CTRL_MAC_TABLE_SET not acknowledged");
	return conversation();
}
PROBE_TEST(net_virtio, test_net_virtio);

static int wait_needs_reset(const char *what)
{
	for (int i = 0; i < 2000; i++) {
		if (vdev_status(&vg.d) & VIRTIO_S_NEEDS_RESET)
			return 0;
		udelay(1000);
	}
	return probe_fail("%s did not set DEVICE_NEEDS_RESET (status 0x%x)", what, vdev_status(&vg.d));
}

static int test_net_bad_virtio(void)
{
	if (virtio_up(WANT))
		return -1;
	/* descriptor loop on the TX queue: 0 -> 1 -> 0 */
	unsigned a = vg.tx.next_desc % vg.tx.size, b = (a + 1) % vg.tx.size;
	vg.tx.desc[a].addr = (uint64_t)(uintptr_t)vg.txbuf;
	vg.tx.desc[a].len = 64;
	vg.tx.desc[a].flags = VRING_DESC_F_NEXT;
	vg.tx.desc[a].next = (uint16_t)b;
	vg.tx.desc[b] = vg.tx.desc[a];
	vg.tx.desc[b].next = (uint16_t)a;
	vg.tx.next_desc = (b + 1) % vg.tx.size;
	vq_publish(&vg.tx, (uint16_t)a);
	vq_kick(&vg.tx);
	if (wait_needs_reset("a TX descriptor loop"))
		return -1;
	printf("virtio-net: descriptor loop -> NEEDS_RESET\n");
	/* reset and bring up again, then a buffer outside guest RAM */
	if (virtio_up(WANT))
		return -1;
	struct vbuf bad[2] = { { (uint64_t)(uintptr_t)vg.txbuf, HDR, false },
			       { 0xffffffff0000ull, 100, false } };
	vq_add(&vg.tx, bad, 2);
	vq_kick(&vg.tx);
	if (wait_needs_reset("a TX buffer outside RAM"))
		return -1;
	printf("virtio-net: buffer outside RAM -> NEEDS_RESET\n");
	if (virtio_up(WANT & ~(1ull << F_CTRL_VQ | 1ull << F_CTRL_RX)))
		return -1;
	printf("virtio-net: reset, working again\n");
	return conversation();
}
PROBE_TEST(net_bad_virtio, test_net_bad_virtio);

static unsigned long cmdline_num(const char *key, unsigned long def)
{
	char v[32];
	if (!probe_cmdline_get(key, v, sizeof(v)))
		return def;
	unsigned long n = 0;
	for (const char *p = v; *p >= '0' && *p <= '9'; p++)
		n = n * 10 + (unsigned long)(*p - '0');
	return n;
}

static int test_net_flood_virtio(void)
{
	unsigned long n = cmdline_num("n", 20000), size = cmdline_num("size", 60);
	if (size < 60 || size > 1514)
		size = 60;
	if (vdev_find(1, 0, &vg.d) < 0 || vdev_negotiate(&vg.d, 1ull << F_MAC, &vg.feat) < 0)
		return -1;
	struct vq *q = &vg.tx;
	if (vq_setup(&vg.d, q, 1, 256))
		return -1;
	for (unsigned i = 0; i < 6; i++)
		virtio_nif.mac[i] = vdev_cfg8(&vg.d, i);
	vdev_driver_ok(&vg.d);
	uint8_t *f = probe_alloc(4096, 4096);
	memset(f, 0, HDR + size);
	memset(f + HDR, 0xff, 6);
	memcpy(f + HDR + 6, virtio_nif.mac, 6);
	f[HDR + 12] = 0x88;
	f[HDR + 13] = 0xb5;
	/* every descriptor points at the same header+frame buffer */
	for (unsigned i = 0; i < q->size; i++) {
		q->desc[i].addr = (uint64_t)(uintptr_t)f;
		q->desc[i].len = (uint32_t)(HDR + size);
		q->desc[i].flags = 0;
		q->desc[i].next = 0;
	}
	printf("FLOOD start\n");
	/* avail slot i always names descriptor i: each batch only moves
	 * avail->idx, so guest work per frame is ~nothing */
	for (unsigned i = 0; i < q->size; i++)
		q->avail[2 + i] = (uint16_t)i;
	uint64_t t0 = rdtsc();
	unsigned long sent = 0, done = 0;
	while (done < n) {
		unsigned long room = q->size - (sent - done);
		if (room > n - sent)
			room = n - sent;
		if (room) {
			sent += room;
			q->avail_idx = (uint16_t)(q->avail_idx + room);
			barrier();
			q->avail[1] = q->avail_idx;
			vq_kick(q);
		}
		barrier();
		uint16_t used = q->used[1];
		done += (uint16_t)(used - q->last_used);
		q->last_used = used;
		if (!room)
			cpu_relax();
	}
	uint64_t us = net_us_since(t0);
	printf("FLOOD sent=%lu us=%lu\n", sent, (unsigned long)us);
	udelay(300000);   /* let bench/net sample the VMM's CPU time */
	return 0;
}
PROBE_TEST(net_flood_virtio, test_net_flood_virtio);

static int test_net_pair_virtio(void)
{
	if (virtio_up(1ull << F_MAC | 1ull << F_MRG_RXBUF))
		return -1;
	return net_pair_run(&virtio_nif);
}
PROBE_TEST(net_pair_virtio, test_net_pair_virtio);

static int test_net_tso_virtio(void)
{
	if (virtio_up(1ull << F_MAC | 1ull << F_MRG_RXBUF | 1ull << F_CSUM | 1ull << F_HOST_TSO4))
		return -1;
	return net_tcp_tso_run(&virtio_nif);
}
PROBE_TEST(net_tso_virtio, test_net_tso_virtio);

/* Receive n= frames on a 256-entry RX queue (bench/net --pair). */
static int test_net_sink_virtio(void)
{
	unsigned long n = cmdline_num("n", 20000);
	if (vdev_find(1, 0, &vg.d) < 0 ||
	    vdev_negotiate(&vg.d, 1ull << F_MAC | 1ull << F_MRG_RXBUF, &vg.feat) < 0)
		return -1;
	struct vq *q = &vg.rx;
	if (vq_setup(&vg.d, q, 0, 256) || vq_setup(&vg.d, &vg.tx, 1, 16))
		return -1;
	uint8_t *bufs = probe_alloc((size_t)q->size * RXBUF_SZ, 4096);
	if (!bufs)
		return probe_fail("out of memory");
	for (unsigned i = 0; i < q->size; i++) {
		q->desc[i].addr = (uint64_t)(uintptr_t)(bufs + (size_t)i * RXBUF_SZ);
		q->desc[i].len = RXBUF_SZ;
		q->desc[i].flags = VRING_DESC_F_WRITE;
		q->desc[i].next = 0;
		q->avail[2 + i] = (uint16_t)i;
	}
	vdev_driver_ok(&vg.d);
	q->avail_idx = (uint16_t)q->size;
	barrier();
	q->avail[1] = q->avail_idx;
	vq_kick(q);
	printf("SINK ready\n");
	unsigned long got = 0;
	uint64_t t0 = 0, last = rdtsc();
	while (got < n) {
		barrier();
		uint16_t used = q->used[1];
		uint16_t k = (uint16_t)(used - q->last_used);
		if (k) {
			if (!got)
				t0 = rdtsc();
			got += k;
			net_sink_progress(got);
			q->last_used = used;
			/* slot i always names descriptor i: give them straight back */
			q->avail_idx = (uint16_t)(q->avail_idx + k);
			barrier();
			q->avail[1] = q->avail_idx;
			vq_kick(q);
			last = rdtsc();
			continue;
		}
		if (net_sink_idle(got, last))
			break;
	}
	return net_sink_finish(got, n, t0);
}
PROBE_TEST(net_sink_virtio, test_net_sink_virtio);

struct netif *net_virtio_open(void)
{
	return virtio_up(1ull << F_MAC) ? NULL : &virtio_nif;
}
