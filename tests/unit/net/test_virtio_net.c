/* virtio-net-pci on the virtio core and the PCI layer (fake platform, no
 * KVM), with a socket back-end over a socketpair as the wire: TX plain,
 * NEEDS_CSUM and GSO fallbacks, RX with mergeable buffers, the control
 * queue's RX filter, and RX flow control. */
#include <check.h>

#include "../kl_check.h"
#include <glib.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>

#include "kvmlite/device.h"
#include "kvmlite/loop.h"
#include "kvmlite/net.h"
#include "kvmlite/pci.h"
#include "kvmlite/virtio.h"
#include "kvmlite/vm.h"
#include "kvmlite/vmstate.h"
#include "../../../src/net/net_int.h"

#define RAM_SIZE (4u << 20)
#define QSZ 16
#define QBASE(q) (0x1000u + 0x1000u * (q))
#define BUF 0x10000u

#define F_CSUM 0
#define F_MAC 5
#define F_HOST_TSO4 11
#define F_MRG_RXBUF 15
#define F_STATUS 16
#define F_CTRL_VQ 17
#define F_CTRL_RX 18

static const struct kl_pci_platform_ops fake_ops;
static struct kl_vm vm;
static uint8_t *ram;
static uint64_t bar;
static int wire;            /* host end of the socket back-end */
static uint16_t avail_idx[3], used_seen[3], next_desc[3];

static void vw(unsigned off, unsigned size, uint64_t v) { kl_bus_write(&vm.mmio, bar + off, size, v); }
static uint64_t vr(unsigned off, unsigned size)
{
	uint64_t v;
	kl_bus_read(&vm.mmio, bar + off, size, &v);
	return v;
}

static void pump(int ms)
{
	gint64 end = g_get_monotonic_time() + ms * 1000;
	while (g_get_monotonic_time() < end)
		if (!g_main_context_iteration(kl_loop_context(), FALSE))
			g_usleep(500);
}

static void setup(void)
{
	kl_loop_init();
	memset(&vm, 0, sizeof(vm));
	kl_bus_init(&vm.pio, "pio");
	kl_bus_init(&vm.mmio, "mmio");
	kl_mem_init_empty(&vm.mem);
	ram = calloc(1, RAM_SIZE);
	kl_mem_add_region(&vm.mem, 0, RAM_SIZE, ram);
	char *err = NULL;
	ck_assert_ptr_nonnull(kl_pci_host_create(&vm, &fake_ops, &err));
	int sv[2];
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	ck_assert_ptr_nonnull(kl_net_socket_new_fd("wire", sv[0], &err));
	wire = sv[1];
	const struct kl_device_type *t = kl_device_type_find("virtio-net-pci");
	ck_assert_ptr_nonnull(t);
	struct kl_opts *o = kl_opts_parse("virtio-net-pci,netdev=wire,mac=52:54:00:aa:bb:cc", "driver", &err);
	kl_opts_get(o, "driver");
	ck_assert_msg(t->create(&vm, o, &err) == 0, "%s", err ? err : "");
	ck_assert_int_eq(kl_opts_check_unused(o, "virtio-net-pci", &err), 0);
	kl_opts_free(o);
	ck_assert_uint_eq(kl_pci_cfg_read(&vm, 1, 0, 0, 4), (0x1040u + 1) << 16 | 0x1af4);
	bar = kl_pci_cfg_read(&vm, 1, 0, 0x20, 4) & ~0xfu;
	bar |= (uint64_t)kl_pci_cfg_read(&vm, 1, 0, 0x24, 4) << 32;
}

static void teardown(void)
{
	kl_pci_host_destroy(&vm);
	kl_vmstate_free_all(&vm); /* the (now empty) section registry */
	kl_netdev_free_all();
	pump(5);
	close(wire);
	kl_bus_destroy(&vm.pio);
	kl_bus_destroy(&vm.mmio);
	free(ram);
}

static uint64_t drv_init(uint64_t feat)
{
	vw(KL_VPCI_STATUS, 1, 0);
	vw(KL_VPCI_STATUS, 1, 3);
	vw(KL_VPCI_DFSELECT, 4, 0);
	uint64_t off = vr(KL_VPCI_DF, 4);
	vw(KL_VPCI_DFSELECT, 4, 1);
	off |= vr(KL_VPCI_DF, 4) << 32;
	feat |= 1ull << 32;
	ck_assert_msg((off & feat) == feat, "device lacks features %llx", (unsigned long long)(feat & ~off));
	vw(KL_VPCI_GFSELECT, 4, 0);
	vw(KL_VPCI_GF, 4, (uint32_t)feat);
	vw(KL_VPCI_GFSELECT, 4, 1);
	vw(KL_VPCI_GF, 4, (uint32_t)(feat >> 32));
	vw(KL_VPCI_STATUS, 1, 3 | 8);
	ck_assert_uint_eq(vr(KL_VPCI_STATUS, 1), 3 | 8);
	for (unsigned q = 0; q < 3; q++) {
		memset(ram + QBASE(q), 0, 0x1000);
		vw(KL_VPCI_Q_SELECT, 2, q);
		vw(KL_VPCI_Q_SIZE, 2, QSZ);
		vw(KL_VPCI_Q_DESC, 8, QBASE(q));
		vw(KL_VPCI_Q_AVAIL, 8, QBASE(q) + 0x100);
		vw(KL_VPCI_Q_USED, 8, QBASE(q) + 0x200);
		vw(KL_VPCI_Q_ENABLE, 2, 1);
		avail_idx[q] = used_seen[q] = next_desc[q] = 0;
	}
	vw(KL_VPCI_STATUS, 1, 3 | 8 | 4);
	return off;
}

struct b { uint64_t addr; uint32_t len; bool w; };

static void add(unsigned q, const struct b *bs, unsigned n)
{
	struct kl_vring_desc *d = (struct kl_vring_desc *)(ram + QBASE(q));
	uint16_t head = next_desc[q] % QSZ;
	for (unsigned i = 0; i < n; i++) {
		unsigned cur = (head + i) % QSZ;
		d[cur] = (struct kl_vring_desc){ bs[i].addr, bs[i].len,
			(uint16_t)((bs[i].w ? KL_VRING_DESC_F_WRITE : 0) | (i + 1 < n ? KL_VRING_DESC_F_NEXT : 0)),
			(uint16_t)((cur + 1) % QSZ) };
	}
	next_desc[q] = (uint16_t)(next_desc[q] + n);
	uint16_t *av = (uint16_t *)(ram + QBASE(q) + 0x100);
	av[2 + avail_idx[q] % QSZ] = head;
	avail_idx[q]++;
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	av[1] = avail_idx[q];
}

static void kick(unsigned q) { vw(KL_VPCI_NOTIFY_OFF + KL_VPCI_NOTIFY_MULT * q, 2, q); }

/* next used entry of q: true with its length */
static bool used(unsigned q, uint32_t *len)
{
	uint16_t *u = (uint16_t *)(ram + QBASE(q) + 0x200);
	if (u[1] == used_seen[q])
		return false;
	uint32_t *ring = (uint32_t *)(u + 2);
	*len = ring[2 * (used_seen[q] % QSZ) + 1];
	used_seen[q]++;
	return true;
}

static bool used_wait(unsigned q, uint32_t *len)
{
	gint64 end = g_get_monotonic_time() + 2000 * 1000;
	while (g_get_monotonic_time() < end) {
		if (used(q, len))
			return true;
		if (!g_main_context_iteration(kl_loop_context(), FALSE))
			g_usleep(500);
	}
	return false;
}

/* one framed frame from the wire (pumping the loop) */
static ssize_t wire_read(uint8_t *buf, size_t cap)
{
	uint8_t h[4];
	size_t got = 0, want = 4;
	uint8_t *dst = h;
	gint64 end = g_get_monotonic_time() + 2000 * 1000;
	for (int phase = 0; phase < 2; phase++) {
		while (got < want) {
			struct pollfd p = { wire, POLLIN, 0 };
			if (poll(&p, 1, 1) <= 0) {
				if (g_get_monotonic_time() > end)
					return -1;
				g_main_context_iteration(kl_loop_context(), FALSE);
				continue;
			}
			ssize_t n = read(wire, dst + got, want - got);
			if (n <= 0)
				return -1;
			got += (size_t)n;
		}
		if (phase == 0) {
			want = (size_t)h[0] << 24 | (size_t)h[1] << 16 | (size_t)h[2] << 8 | h[3];
			if (want > cap)
				return -1;
			dst = buf;
			got = 0;
		}
	}
	return (ssize_t)want;
}

static void wire_write(const uint8_t *f, uint32_t len)
{
	uint8_t h[4] = { (uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8), (uint8_t)len };
	ck_assert_int_eq(write(wire, h, 4), 4);
	ck_assert_int_eq(write(wire, f, len), (ssize_t)len);
}

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

static size_t tcp_frame(uint8_t *f, size_t payload)
{
	memset(f, 0, 54 + payload);
	memcpy(f, "\x52\x55\x0a\x00\x02\x02\x52\x54\x00\xaa\xbb\xcc\x08\x00", 14);
	uint8_t *ip = f + 14;
	ip[0] = 0x45;
	ip[2] = (uint8_t)((40 + payload) >> 8);
	ip[3] = (uint8_t)(40 + payload);
	ip[8] = 64;
	ip[9] = 6;
	memcpy(ip + 12, "\x0a\x00\x02\x0f\x0a\x00\x02\x02", 8);
	ip[32] = 0x50;
	ip[33] = 0x18;
	for (size_t i = 0; i < payload; i++)
		f[54 + i] = (uint8_t)(i * 3);
	return 54 + payload;
}

static bool csums_ok(const uint8_t *f, size_t len)
{
	const uint8_t *ip = f + 14;
	if (kl_net_csum_fold(kl_net_csum_add(0, ip, 20)) != 0)
		return false;
	size_t l4 = rd16(ip + 2) - 20;
	if (34 + l4 > len)
		return false;
	uint8_t ph[12];
	memcpy(ph, ip + 12, 8);
	ph[8] = 0; ph[9] = ip[9]; ph[10] = (uint8_t)(l4 >> 8); ph[11] = (uint8_t)l4;
	return kl_net_csum_fold(kl_net_csum_add(kl_net_csum_add(0, ph, 12), ip + 20, l4)) == 0;
}

START_TEST(test_tx)
{
	drv_init(1ull << F_MAC | 1ull << F_CSUM | 1ull << F_HOST_TSO4 | 1ull << F_STATUS);
	ck_assert_uint_eq(vr(KL_VPCI_DEVCFG_OFF, 1), 0x52);
	ck_assert_uint_eq(vr(KL_VPCI_DEVCFG_OFF + 5, 1), 0xcc);
	ck_assert_uint_eq(vr(KL_VPCI_DEVCFG_OFF + 6, 2), 1);   /* link up */
	/* plain frame: header and frame in separate descriptors */
	uint8_t *hdr = ram + BUF, *f = ram + BUF + 0x100;
	memset(hdr, 0, 12);
	size_t len = tcp_frame(f, 100);
	kl_net_csum_fill(f, len);
	struct b c1[2] = { { BUF, 12, false }, { BUF + 0x100, (uint32_t)len, false } };
	add(1, c1, 2);
	kick(1);
	static uint8_t out[70000];
	ck_assert_int_eq(wire_read(out, sizeof(out)), (ssize_t)len);
	ck_assert_mem_eq(out, f, len);
	uint32_t ul;
	ck_assert(used_wait(1, &ul));
	/* NEEDS_CSUM in one descriptor (header + frame contiguous) */
	uint8_t *one = ram + BUF + 0x1000;
	memset(one, 0, 12);
	one[0] = KL_VNET_HDR_F_NEEDS_CSUM;
	one[6] = 34;
	one[8] = 16;
	len = tcp_frame(one + 12, 200);
	kl_net_csum_fill(one + 12, len);
	uint8_t good[400];
	memcpy(good, one + 12, len);
	/* replace the TCP checksum by the pseudo-header sum */
	uint8_t ph[12];
	memcpy(ph, one + 12 + 26, 8);
	ph[8] = 0; ph[9] = 6; ph[10] = 0; ph[11] = 220;
	uint16_t p = (uint16_t)~kl_net_csum_fold(kl_net_csum_add(0, ph, 12));
	one[12 + 50] = (uint8_t)(p >> 8);
	one[12 + 51] = (uint8_t)p;
	struct b c2[1] = { { BUF + 0x1000, (uint32_t)(12 + len), false } };
	add(1, c2, 1);
	kick(1);
	ck_assert_int_eq(wire_read(out, sizeof(out)), (ssize_t)len);
	ck_assert_mem_eq(out, good, len);
	/* GSO TCPv4: 4000 bytes of payload, gso_size 1448 -> 3 segments */
	uint8_t *g = ram + BUF + 0x4000;
	memset(g, 0, 12);
	g[0] = KL_VNET_HDR_F_NEEDS_CSUM;
	g[1] = KL_VNET_HDR_GSO_TCPV4;
	g[2] = 54;
	g[4] = 1448 & 0xff; g[5] = 1448 >> 8;
	g[6] = 34; g[8] = 16;
	len = tcp_frame(g + 12, 4000);
	struct b c3[1] = { { BUF + 0x4000, (uint32_t)(12 + len), false } };
	add(1, c3, 1);
	kick(1);
	size_t total = 0;
	for (int i = 0; i < 3; i++) {
		ssize_t n = wire_read(out, sizeof(out));
		ck_assert_int_gt(n, 54);
		ck_assert(csums_ok(out, (size_t)n));
		total += (size_t)n - 54;
	}
	ck_assert_uint_eq(total, 4000);
}
END_TEST

START_TEST(test_rx_mrg_and_filter)
{
	drv_init(1ull << F_MAC | 1ull << F_MRG_RXBUF | 1ull << F_CTRL_VQ | 1ull << F_CTRL_RX);
	/* three 512-byte receive buffers */
	for (unsigned i = 0; i < 3; i++) {
		struct b rb = { BUF + 0x10000 + 0x1000 * i, 512, true };
		add(0, &rb, 1);
	}
	kick(0);
	uint8_t f[1100];   /* 12 + 1100 bytes need all three buffers */
	for (size_t i = 0; i < sizeof(f); i++)
		f[i] = (uint8_t)(i * 7);
	memcpy(f, "\x52\x54\x00\xaa\xbb\xcc", 6);
	wire_write(f, sizeof(f));
	uint32_t l0, l1, l2;
	ck_assert(used_wait(0, &l0));
	ck_assert(used_wait(0, &l1));
	ck_assert(used_wait(0, &l2));
	ck_assert_uint_eq(l0, 512);
	ck_assert_uint_eq(l1, 512);
	ck_assert_uint_eq(l2, 12 + 1100 - 1024);
	uint8_t *b0 = ram + BUF + 0x10000;
	ck_assert_uint_eq(b0[10] | b0[11] << 8, 3);                 /* num_buffers */
	ck_assert_mem_eq(b0 + 12, f, 500);
	ck_assert_mem_eq(ram + BUF + 0x11000, f + 500, 512);
	ck_assert_mem_eq(ram + BUF + 0x12000, f + 1012, 88);

	/* control queue: promisc off; then only our MAC, broadcast and the
	 * multicast table pass */
	uint8_t *req = ram + BUF + 0x20000, *ack = ram + BUF + 0x20100;
	req[0] = 0; req[1] = 0; req[2] = 0;
	*ack = 0xee;
	struct b cc[2] = { { BUF + 0x20000, 3, false }, { BUF + 0x20100, 1, true } };
	add(2, cc, 2);
	kick(2);
	uint32_t l;
	ck_assert(used_wait(2, &l));
	ck_assert_uint_eq(*ack, 0);
	static const uint8_t tbl[] = { 0, 0, 0, 0, 1, 0, 0, 0, 0x01, 0x00, 0x5e, 0x00, 0x00, 0x01 };
	req[0] = 1; req[1] = 0;
	memcpy(req + 2, tbl, sizeof(tbl));
	*ack = 0xee;
	struct b ct[2] = { { BUF + 0x20000, 2 + sizeof(tbl), false }, { BUF + 0x20100, 1, true } };
	add(2, ct, 2);
	kick(2);
	ck_assert(used_wait(2, &l));
	ck_assert_uint_eq(*ack, 0);
	req[0] = 9; req[1] = 9;     /* unknown class -> error */
	struct b cx[2] = { { BUF + 0x20000, 2, false }, { BUF + 0x20100, 1, true } };
	add(2, cx, 2);
	kick(2);
	ck_assert(used_wait(2, &l));
	ck_assert_uint_eq(*ack, 1);

	for (unsigned i = 0; i < 4; i++) {
		struct b rb = { BUF + 0x30000 + 0x1000 * i, 2048, true };
		add(0, &rb, 1);
	}
	kick(0);
	uint8_t other[60] = { 0x52, 0x54, 0x00, 0x11, 0x22, 0x33 };
	uint8_t mc_no[60] = { 0x01, 0x00, 0x5e, 0x00, 0x00, 0x02 };
	uint8_t mc_yes[60] = { 0x01, 0x00, 0x5e, 0x00, 0x00, 0x01 };
	uint8_t bc[60] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	uint8_t mine[60] = { 0x52, 0x54, 0x00, 0xaa, 0xbb, 0xcc };
	other[59] = 1; mc_no[59] = 2; mc_yes[59] = 3; bc[59] = 4; mine[59] = 5;
	wire_write(other, 60);
	wire_write(mc_no, 60);
	wire_write(mc_yes, 60);
	wire_write(bc, 60);
	wire_write(mine, 60);
	for (unsigned i = 0; i < 3; i++) {
		ck_assert(used_wait(0, &l));
		ck_assert_uint_eq(l, 72);
		ck_assert_uint_eq(ram[BUF + 0x30000 + 0x1000 * i + 12 + 59], 3 + i);
	}
	pump(20);
	ck_assert(!used(0, &l));      /* the filtered ones never used a buffer */
}
END_TEST

START_TEST(test_rx_flow_control)
{
	drv_init(1ull << F_MAC | 1ull << F_MRG_RXBUF);
	uint8_t f[60] = { 0x52, 0x54, 0x00, 0xaa, 0xbb, 0xcc };
	for (int i = 0; i < 3; i++) {
		f[20] = (uint8_t)i;
		wire_write(f, 60);
	}
	pump(50);
	uint32_t l;
	ck_assert(!used(0, &l));      /* no buffers: frames wait in the back-end */
	for (unsigned i = 0; i < 3; i++) {
		struct b rb = { BUF + 0x1000 * i, 2048, true };
		add(0, &rb, 1);
	}
	kick(0);
	for (unsigned i = 0; i < 3; i++) {
		ck_assert(used_wait(0, &l));
		ck_assert_uint_eq(l, 72);
		ck_assert_uint_eq(ram[BUF + 0x1000 * i + 12 + 20], i);   /* in order */
	}
	struct kl_netdev_stats st;
	kl_netdev_get_stats(kl_netdev_find("wire"), &st);
	ck_assert_uint_eq(st.rx_frames, 3);
	ck_assert_uint_eq(st.rx_dropped, 0);
}

/* ---- VM state (virtio-net + virtio-pci sections) ---- */
static GByteArray *vms_save(const char *name)
{
	const struct kl_vmstate_entry *e = kl_vmstate_find(&vm, name);
	ck_assert_ptr_nonnull(e);
	struct kl_vms_out o;
	kl_vms_out_init(&o);
	char *err = NULL;
	ck_assert_msg(e->ops->save(e->opaque, &o, &err) == 0, "%s", err);
	return o.buf;
}

static int vms_load(const char *name, const uint8_t *p, size_t n, char **msg)
{
	const struct kl_vmstate_entry *e = kl_vmstate_find(&vm, name);
	return kl_vmstate_load_section(e, p, n, e->ops->version, msg);
}

#define VN "virtio-net/0000:00:01.0"
#define VP "virtio-pci/0000:00:01.0"

START_TEST(test_state)
{
	drv_init(1ull << F_MAC | 1ull << F_STATUS | 1ull << F_MRG_RXBUF | 1ull << F_CTRL_VQ |
		 1ull << F_CTRL_RX);
	/* control queue: promiscuous off */
	uint8_t *cmd = ram + BUF + 0x8000;
	cmd[0] = 0; cmd[1] = 0; cmd[2] = 0; cmd[3] = 0xee;
	struct b c[2] = { { BUF + 0x8000, 3, false }, { BUF + 0x8003, 1, true } };
	add(2, c, 2);
	kick(2);
	uint32_t ul;
	ck_assert(used_wait(2, &ul));
	ck_assert_uint_eq(cmd[3], 0);
	/* one 64-byte RX buffer and a 200-byte frame: with MRG_RXBUF the device
	 * stashes the buffer and waits for more */
	struct b r1[1] = { { BUF + 0x10000, 64, true } };
	add(0, r1, 1);
	kick(0);
	uint8_t f[200];
	tcp_frame(f, 200 - 54);
	memcpy(f, "\x52\x54\x00\xaa\xbb\xcc\x52\x55\x0a\x00\x02\x02", 12); /* to us */
	wire_write(f, sizeof(f));
	pump(50);
	struct kl_virtio_dev *vd = kl_vmstate_find(&vm, VP)->opaque;
	ck_assert_uint_eq(vd->inflight, 1);
	ck_assert_uint_eq(vd->vqs[0].last_avail, 1);
	/* quiesce gives the buffer back to the ring */
	const struct kl_vmstate_entry *e = kl_vmstate_find(&vm, VN);
	char *err = NULL;
	ck_assert_msg(e->ops->quiesce(e->opaque, &err) == 0, "%s", err);
	ck_assert_uint_eq(vd->inflight, 0);
	ck_assert_uint_eq(vd->vqs[0].last_avail, 0);
	ck_assert_uint_eq(vd->vqs[0].inflight, 0);
	GByteArray *sn = vms_save(VN), *sp = vms_save(VP);
	/* a fresh device loads it; saving again gives the same bytes */
	uint8_t image[0x20000];
	memcpy(image, ram, sizeof(image));
	teardown();
	setup();
	memcpy(ram, image, sizeof(image));
	char *msg = NULL;
	ck_assert_msg(vms_load(VP, sp->data, sp->len, &msg) == 0, "%s", msg);
	ck_assert_msg(vms_load(VN, sn->data, sn->len, &msg) == 0, "%s", msg);
	GByteArray *again = vms_save(VN);
	ck_assert_uint_eq(again->len, sn->len);
	ck_assert_mem_eq(again->data, sn->data, sn->len);
	g_byte_array_free(again, TRUE);
	e = kl_vmstate_find(&vm, VP);
	ck_assert_int_eq(e->ops->post_load(e->opaque, &err), 0);
	e = kl_vmstate_find(&vm, VN);
	ck_assert_int_eq(e->ops->post_load(e->opaque, &err), 0);
	/* the given-back buffer is used again, with a second one for the rest */
	avail_idx[0] = 1; next_desc[0] = 1; used_seen[0] = 0;
	struct b r2[1] = { { BUF + 0x11000, 2048, true } };
	add(0, r2, 1);
	kick(0);
	wire_write(f, sizeof(f));
	ck_assert(used_wait(0, &ul));
	ck_assert_uint_eq(ul, 64);
	ck_assert_uint_eq(((uint32_t *)(ram + QBASE(0) + 0x200 + 4))[0], 0); /* head 0 */
	ck_assert_uint_eq(ram[BUF + 0x10000 + 10], 2); /* num_buffers */
	ck_assert_mem_eq(ram + BUF + 0x10000 + 12, f, 52);
	ck_assert(used_wait(0, &ul));
	ck_assert_uint_eq(ul, 200 + 12 - 64);
	/* promiscuous mode stayed off: a frame for another MAC is filtered */
	uint8_t other[200];
	memcpy(other, f, sizeof(other));
	other[5] = 0x99;
	add(0, r2, 1);
	kick(0);
	wire_write(other, sizeof(other));
	pump(50);
	ck_assert(!used(0, &ul));
	/* refusals: truncation everywhere, MAC table too long, link bits */
	for (size_t n = 0; n < sn->len; n++) {
		ck_assert_int_lt(vms_load(VN, sn->data, n, &msg), 0);
		g_free(msg);
	}
	uint8_t *bad = g_memdup2(sn->data, sn->len);
	uint32_t big = 65;
	memcpy(bad + 12, &big, 4);
	ck_assert_int_lt(vms_load(VN, bad, sn->len, &msg), 0);
	ck_assert_msg(strstr(msg, "unicast MAC table entries"), "%s", msg);
	g_free(msg);
	memcpy(bad, sn->data, sn->len);
	bad[20 + 7] = 1;
	ck_assert_int_lt(vms_load(VN, bad, sn->len, &msg), 0);
	ck_assert_msg(strstr(msg, "link status 0x101 has reserved bits"), "%s", msg);
	g_free(msg);
	g_free(bad);
	g_byte_array_free(sn, TRUE);
	g_byte_array_free(sp, TRUE);
}
END_TEST
END_TEST

static Suite *vnet_suite(void)
{
	Suite *s = suite_create("virtio-net");
	TCase *tc = tcase_create("core");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_tx);
	tcase_add_test(tc, test_rx_mrg_and_filter);
	tcase_add_test(tc, test_rx_flow_control);
	tcase_add_test(tc, test_state);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return kl_check_run(vnet_suite());
}
