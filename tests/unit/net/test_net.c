/* Network back-ends and helpers: checksums/TSO, -netdev parsing, socket
 * framing over a socketpair and over listen/connect, flow control, and
 * the slirp back-end answering ARP, DHCP and ICMP echo. */
#include <check.h>

#include "../kl_check.h"
#include <glib.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include "kvmlite/loop.h"
#include "kvmlite/net.h"
#include "../../../src/net/net_int.h"

/* ---- fake NIC ------------------------------------------------------------ */
struct fake_nic {
	GPtrArray *frames;   /* GByteArray */
	bool full;           /* can_receive false */
	int refuse;          /* receive returns 0 this many times */
};

static bool fake_can_receive(void *opaque)
{
	struct fake_nic *n = opaque;
	return !n->full;
}

static ssize_t fake_receive(void *opaque, const struct iovec *iov, int iovcnt)
{
	struct fake_nic *n = opaque;
	if (n->refuse > 0) {
		n->refuse--;
		return 0;
	}
	size_t len = kl_iov_size(iov, (unsigned)iovcnt);
	GByteArray *b = g_byte_array_sized_new((guint)len);
	g_byte_array_set_size(b, (guint)len);
	kl_iov_to_buf(iov, (unsigned)iovcnt, 0, b->data, len);
	g_ptr_array_add(n->frames, b);
	return (ssize_t)len;
}

static void fake_init(struct fake_nic *n)
{
	memset(n, 0, sizeof(*n));
	n->frames = g_ptr_array_new_with_free_func((GDestroyNotify)g_byte_array_unref);
}

static struct kl_net_peer fake_peer(struct fake_nic *n)
{
	struct kl_net_peer p = { .model = "fake", .can_receive = fake_can_receive,
				 .receive = fake_receive, .opaque = n };
	return p;
}

static void pump(int ms)
{
	gint64 end = g_get_monotonic_time() + ms * 1000;
	while (g_get_monotonic_time() < end)
		if (!g_main_context_iteration(kl_loop_context(), FALSE))
			g_usleep(1000);
}

/* Pump until n->frames has at least want entries (or 2 s). */
static void pump_until(struct fake_nic *n, guint want)
{
	gint64 end = g_get_monotonic_time() + 2000 * 1000;
	while (n->frames->len < want && g_get_monotonic_time() < end)
		if (!g_main_context_iteration(kl_loop_context(), FALSE))
			g_usleep(500);
}

static void setup(void)
{
	kl_loop_init();
}

static void teardown(void)
{
	kl_netdev_free_all();
	pump(5);
}

static uint16_t rd16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static uint32_t rd32(const uint8_t *p) { return (uint32_t)rd16(p) << 16 | rd16(p + 2); }

/* ---- checksum helpers ---------------------------------------------------- */

/* Build Ethernet + IPv4 + TCP with payload; checksums left zero. */
static size_t build_tcp(uint8_t *f, size_t payload, uint8_t flags)
{
	memset(f, 0, 54 + payload);
	memcpy(f, "\x52\x54\x00\x00\x00\x02\x52\x54\x00\x00\x00\x01\x08\x00", 14);
	uint8_t *ip = f + 14;
	ip[0] = 0x45;
	ip[2] = (uint8_t)((20 + 20 + payload) >> 8);
	ip[3] = (uint8_t)(20 + 20 + payload);
	ip[4] = 0x12; ip[5] = 0x34;
	ip[8] = 64;
	ip[9] = 6;
	memcpy(ip + 12, "\x0a\x00\x02\x0f\x0a\x00\x02\x02", 8);
	uint8_t *tcp = ip + 20;
	tcp[0] = 0x30; tcp[1] = 0x39; tcp[2] = 0x00; tcp[3] = 0x50;
	tcp[4] = 0x10; tcp[5] = 0x00; tcp[6] = 0x00; tcp[7] = 0x00;  /* seq 0x10000000 */
	tcp[12] = 0x50;
	tcp[13] = flags;
	tcp[14] = 0xff; tcp[15] = 0xff;
	for (size_t i = 0; i < payload; i++)
		tcp[20 + i] = (uint8_t)(i * 7 + 3);
	return 54 + payload;
}

/* Verify IPv4 header and TCP checksums of a frame. */
static bool frame_csums_ok(const uint8_t *f, size_t len)
{
	const uint8_t *ip = f + 14;
	size_t ihl = (size_t)(ip[0] & 15) * 4;
	if (kl_net_csum_fold(kl_net_csum_add(0, ip, ihl)) != 0)
		return false;
	size_t tot = rd16(ip + 2);
	if (14 + tot > len)
		return false;
	size_t l4 = tot - ihl;
	uint8_t ph[12];
	memcpy(ph, ip + 12, 8);
	ph[8] = 0; ph[9] = ip[9]; ph[10] = (uint8_t)(l4 >> 8); ph[11] = (uint8_t)l4;
	uint32_t s = kl_net_csum_add(0, ph, 12);
	s = kl_net_csum_add(s, ip + ihl, l4);
	return kl_net_csum_fold(s) == 0;
}

START_TEST(test_csum_basic)
{
	/* RFC 1071 example words */
	static const uint8_t d[] = { 0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7 };
	ck_assert_uint_eq(kl_net_csum_fold(kl_net_csum_add(0, d, sizeof(d))), (uint16_t)~0xddf2);
	/* odd length pads with zero */
	static const uint8_t o[] = { 0x12, 0x34, 0x56 };
	ck_assert_uint_eq(kl_net_csum_fold(kl_net_csum_add(0, o, 3)), (uint16_t)~(0x1234 + 0x5600));
	uint8_t f[200];
	size_t len = build_tcp(f, 100, 0x18);
	ck_assert(!frame_csums_ok(f, len));
	ck_assert_int_eq(kl_net_csum_fill(f, len), 0);
	ck_assert(frame_csums_ok(f, len));
	/* insert at an offset: what a NEEDS_CSUM header asks for */
	uint8_t g[200];
	memcpy(g, f, len);
	g[14 + 20 + 16] = 0; g[14 + 20 + 17] = 0;
	/* field = pseudo-header sum (not complemented) */
	uint8_t ph[12];
	memcpy(ph, g + 14 + 12, 8);
	ph[8] = 0; ph[9] = 6; ph[10] = 0; ph[11] = 120;
	uint16_t p = (uint16_t)~kl_net_csum_fold(kl_net_csum_add(0, ph, 12));
	g[50] = (uint8_t)(p >> 8); g[51] = (uint8_t)p;
	ck_assert_int_eq(kl_net_csum_insert(g, len, 34, 16), 0);
	ck_assert_mem_eq(g, f, len);
	ck_assert_int_eq(kl_net_csum_insert(g, len, len, 0), -1);
	ck_assert_int_eq(kl_net_csum_insert(g, len, 34, len), -1);
	/* non-IP frame */
	uint8_t arp[60] = { 0 };
	arp[12] = 0x08; arp[13] = 0x06;
	ck_assert_int_eq(kl_net_csum_fill(arp, sizeof(arp)), -1);
}
END_TEST

struct segs {
	GPtrArray *v;
};

static void seg_emit(void *opaque, const uint8_t *f, size_t len)
{
	struct segs *s = opaque;
	GByteArray *b = g_byte_array_new();
	g_byte_array_append(b, f, (guint)len);
	g_ptr_array_add(s->v, b);
}

START_TEST(test_tso_segment)
{
	uint8_t *f = g_malloc(54 + 3500);
	size_t len = build_tcp(f, 3500, 0x19 /* FIN PSH ACK */ | 0x80 /* CWR */);
	struct segs s = { g_ptr_array_new_with_free_func((GDestroyNotify)g_byte_array_unref) };
	int n = kl_net_tso_segment(f, len, 0, 1448, seg_emit, &s);
	ck_assert_int_eq(n, 3);
	ck_assert_uint_eq(s.v->len, 3);
	size_t off = 0;
	for (int i = 0; i < 3; i++) {
		GByteArray *b = g_ptr_array_index(s.v, i);
		size_t pl = i < 2 ? 1448 : 3500 - 2 * 1448;
		ck_assert_uint_eq(b->len, 54 + pl);
		ck_assert(frame_csums_ok(b->data, b->len));
		ck_assert_uint_eq(rd16(b->data + 14 + 2), 40 + pl);
		ck_assert_uint_eq(rd16(b->data + 14 + 4), 0x1234 + i);
		ck_assert_uint_eq(rd32(b->data + 34 + 4), 0x10000000u + off);
		uint8_t fl = b->data[34 + 13];
		ck_assert_uint_eq(!!(fl & 0x01), i == 2);   /* FIN */
		ck_assert_uint_eq(!!(fl & 0x08), i == 2);   /* PSH */
		ck_assert_uint_eq(!!(fl & 0x80), i == 0);   /* CWR */
		ck_assert(fl & 0x10);                         /* ACK everywhere */
		ck_assert_mem_eq(b->data + 54, f + 54 + off, pl);
		off += pl;
	}
	/* malformed: not TCP, bad header length */
	f[14 + 9] = 17;
	ck_assert_int_eq(kl_net_tso_segment(f, len, 0, 1448, seg_emit, &s), -1);
	f[14 + 9] = 6;
	ck_assert_int_eq(kl_net_tso_segment(f, len, 60, 1448, seg_emit, &s), -1);
	ck_assert_int_eq(kl_net_tso_segment(f, 40, 0, 1448, seg_emit, &s), -1);
	ck_assert_int_eq(kl_net_tso_segment(f, len, 0, 0, seg_emit, &s), -1);
	g_ptr_array_free(s.v, TRUE);
	g_free(f);
}
END_TEST

START_TEST(test_mac_parse)
{
	uint8_t m[6];
	ck_assert_int_eq(kl_net_parse_mac("52:54:00:ab:cd:ef", m), 0);
	ck_assert_mem_eq(m, "\x52\x54\x00\xab\xcd\xef", 6);
	ck_assert_int_eq(kl_net_parse_mac("52:54:00:ab:cd", m), -1);
	ck_assert_int_eq(kl_net_parse_mac("52:54:00:ab:cd:ef:01", m), -1);
	ck_assert_int_eq(kl_net_parse_mac("01:00:5e:00:00:01", m), -1);  /* multicast */
	ck_assert_int_eq(kl_net_parse_mac("zz:54:00:ab:cd:ef", m), -1);
}
END_TEST

/* ---- -netdev parsing ------------------------------------------------------- */

static void expect_err(const char *opt, const char *needle)
{
	char *err = NULL;
	struct kl_netdev *nd = kl_netdev_add(opt, &err);
	ck_assert_msg(nd == NULL, "'%s' should fail", opt);
	ck_assert_msg(err && strstr(err, needle), "'%s': error '%s' lacks '%s'", opt,
		      err ? err : "(null)", needle);
	g_free(err);
}

START_TEST(test_netdev_parse)
{
	expect_err("bogus,id=x", "unknown type 'bogus'");
	expect_err("user", "id=");
	expect_err("user,id=u,net=10.0.2.0/40", "net=10.0.2.0/40");
	expect_err("user,id=u,host=1.2.3", "host=1.2.3");
	expect_err("user,id=u,host=192.168.1.1", "host=");
	expect_err("user,id=u,frobnicate=1", "frobnicate");
	expect_err("user,id=u,hostfwd=tcp::abc-:22", "hostfwd=tcp::abc-:22");
	expect_err("tap,id=t,ifname=x,script=/etc/qemu-ifup", "script=/etc/qemu-ifup");
	expect_err("tap,id=t,ifname=x,vhost=on", "vhost=on");
	expect_err("tap,id=t", "ifname=");
	expect_err("socket,id=s", "listen=");
	expect_err("socket,id=s,listen=:1,connect=127.0.0.1:2", "exactly one");
	expect_err("socket,id=s,connect=127.0.0.1:99999", "invalid port");
	expect_err("socket,id=s,tap=foo,listen=:0", "tap");
	expect_err("tap,id=t,ifname=x,hostfwd=tcp::1-:2", "hostfwd");

	char *err = NULL;
	struct kl_netdev *nd = kl_netdev_add("user,id=u0,net=10.0.3.0/24,dhcpstart=10.0.3.20,"
					     "hostfwd=tcp:127.0.0.1:0-:22,hostfwd=udp:127.0.0.1:0-:53,"
					     "restrict=off", &err);
	ck_assert_msg(nd, "%s", err ? err : "");
	ck_assert_str_eq(kl_netdev_id(nd), "u0");
	ck_assert_str_eq(kl_netdev_type(nd), "user");
	ck_assert_ptr_eq(kl_netdev_find("u0"), nd);
	ck_assert(!kl_netdev_has_vnet_hdr(nd));
	ck_assert_int_eq(kl_netdev_set_vnet_hdr(nd, true), -1);
	expect_err("user,id=u0", "duplicate id 'u0'");
	/* one NIC per netdev */
	struct fake_nic n;
	fake_init(&n);
	struct kl_net_peer p = fake_peer(&n);
	ck_assert_int_eq(kl_netdev_attach(nd, &p, &err), 0);
	ck_assert_int_eq(kl_netdev_attach(nd, &p, &err), -1);
	ck_assert(strstr(err, "already used"));
	g_free(err);
	err = NULL;
	ck_assert_ptr_null(kl_netdev_attach_id("nope", &p, &err));
	ck_assert(strstr(err, "netdev=nope"));
	g_free(err);
	err = NULL;
	struct kl_netdev *d0 = kl_netdev_default_user(&err);
	struct kl_netdev *d1 = kl_netdev_default_user(&err);
	ck_assert(d0 && d1 && d0 != d1);
	ck_assert_str_ne(kl_netdev_id(d0), kl_netdev_id(d1));
	g_ptr_array_free(n.frames, TRUE);
}
END_TEST

/* ---- socket back-end --------------------------------------------------------- */

static void write_frame(int fd, const void *buf, uint32_t len)
{
	uint8_t h[4] = { (uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8), (uint8_t)len };
	ck_assert_int_eq(write(fd, h, 4), 4);
	ck_assert_int_eq(write(fd, buf, len), (ssize_t)len);
}

/* Read len bytes from fd while running the main loop (the back-end
 * writes from a bottom half); gives up after 2 s. */
static ssize_t read_full(int fd, void *buf, size_t len)
{
	size_t got = 0;
	gint64 end = g_get_monotonic_time() + 2000 * 1000;
	while (got < len) {
		struct pollfd p = { fd, POLLIN, 0 };
		if (poll(&p, 1, 1) <= 0) {
			if (g_get_monotonic_time() > end)
				return (ssize_t)got;
			g_main_context_iteration(kl_loop_context(), FALSE);
			continue;
		}
		ssize_t n = read(fd, (uint8_t *)buf + got, len - got);
		if (n <= 0)
			return (ssize_t)got;
		got += (size_t)n;
	}
	return (ssize_t)got;
}

START_TEST(test_socket_framing)
{
	int sv[2];
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	char *err = NULL;
	struct kl_netdev *nd = kl_net_socket_new_fd("s0", sv[0], &err);
	ck_assert_msg(nd, "%s", err ? err : "");
	struct fake_nic n;
	fake_init(&n);
	struct kl_net_peer p = fake_peer(&n);
	ck_assert_int_eq(kl_netdev_attach(nd, &p, &err), 0);

	/* host -> NIC: two frames in one write, then one split in pieces */
	uint8_t a[60], b[1514], c[100];
	memset(a, 0xaa, sizeof(a));
	for (size_t i = 0; i < sizeof(b); i++)
		b[i] = (uint8_t)i;
	memset(c, 0xcc, sizeof(c));
	uint8_t two[4 + 60 + 4 + 1514];
	two[0] = 0; two[1] = 0; two[2] = 0; two[3] = 60;
	memcpy(two + 4, a, 60);
	two[64] = 0; two[65] = 0; two[66] = 1514 >> 8; two[67] = 1514 & 0xff;
	memcpy(two + 68, b, sizeof(b));
	ck_assert_int_eq(write(sv[1], two, sizeof(two)), (ssize_t)sizeof(two));
	pump_until(&n, 2);
	ck_assert_uint_eq(n.frames->len, 2);
	GByteArray *f0 = g_ptr_array_index(n.frames, 0), *f1 = g_ptr_array_index(n.frames, 1);
	ck_assert_uint_eq(f0->len, 60);
	ck_assert_mem_eq(f0->data, a, 60);
	ck_assert_uint_eq(f1->len, 1514);
	ck_assert_mem_eq(f1->data, b, 1514);
	uint8_t hdr[4] = { 0, 0, 0, 100 };
	ck_assert_int_eq(write(sv[1], hdr, 2), 2);
	pump(20);
	ck_assert_int_eq(write(sv[1], hdr + 2, 2), 2);
	ck_assert_int_eq(write(sv[1], c, 30), 30);
	pump(20);
	ck_assert_uint_eq(n.frames->len, 2);
	ck_assert_int_eq(write(sv[1], c + 30, 70), 70);
	pump_until(&n, 3);
	ck_assert_uint_eq(n.frames->len, 3);
	ck_assert_mem_eq(((GByteArray *)g_ptr_array_index(n.frames, 2))->data, c, 100);

	/* NIC -> host, from the main thread (direct) with a 2-element iovec */
	struct iovec iov[2] = { { a, 20 }, { b, 40 } };
	ck_assert_int_eq(kl_netdev_send(nd, iov, 2), 60);
	uint8_t out[64];
	ck_assert_int_eq(read_full(sv[1], out, 64), 64);
	ck_assert_mem_eq(out, "\x00\x00\x00\x3c", 4);
	ck_assert_mem_eq(out + 4, a, 20);
	ck_assert_mem_eq(out + 24, b, 40);

	/* flow control: the NIC is full, frames wait; rx_ready flushes them */
	n.full = true;
	write_frame(sv[1], a, 60);
	write_frame(sv[1], c, 100);
	pump(50);
	ck_assert_uint_eq(n.frames->len, 3);
	n.full = false;
	kl_netdev_rx_ready(nd);
	pump_until(&n, 5);
	ck_assert_uint_eq(n.frames->len, 5);
	ck_assert_uint_eq(((GByteArray *)g_ptr_array_index(n.frames, 4))->len, 100);
	/* receive() returning 0 keeps the frame queued */
	n.refuse = 1;
	write_frame(sv[1], a, 60);
	pump(50);
	ck_assert_uint_eq(n.frames->len, 5);
	kl_netdev_rx_ready(nd);
	pump_until(&n, 6);
	ck_assert_uint_eq(n.frames->len, 6);

	struct kl_netdev_stats st;
	kl_netdev_get_stats(nd, &st);
	ck_assert_uint_eq(st.rx_frames, 6);
	ck_assert_uint_eq(st.tx_frames, 1);
	ck_assert_uint_eq(st.tx_bytes, 60);

	/* a bad length (0) closes the connection; sending then drops */
	uint8_t zero[4] = { 0 };
	ck_assert_int_eq(write(sv[1], zero, 4), 4);
	pump(50);
	char buf[4];
	ck_assert_int_eq(read(sv[1], buf, 4), 0);   /* EOF: kvmlite closed it */
	ck_assert_int_eq(kl_netdev_send(nd, iov, 2), -1);
	close(sv[1]);
	g_ptr_array_free(n.frames, TRUE);
}
END_TEST

static int tx_ready_calls;
static void count_tx_ready(void *opaque)
{
	(void)opaque;
	tx_ready_calls++;
}

START_TEST(test_socket_backpressure)
{
	int sv[2];
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	int sz = 64 * 1024;
	setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sz, sizeof(sz));
	char *err = NULL;
	struct kl_netdev *nd = kl_net_socket_new_fd("bp", sv[0], &err);
	ck_assert(nd);
	struct fake_nic n;
	fake_init(&n);
	struct kl_net_peer p = fake_peer(&n);
	p.tx_ready = count_tx_ready;
	tx_ready_calls = 0;
	kl_netdev_attach(nd, &p, &err);
	/* nobody reads sv[1]: the back-end buffers, then asks the NIC to stop */
	static uint8_t f[1500];
	unsigned sent = 0;
	for (int i = 0; i < 20000 && kl_netdev_can_send(nd); i++) {
		f[0] = (uint8_t)sent;
		struct iovec iov = { f, sizeof(f) };
		ck_assert_int_eq(kl_netdev_send(nd, &iov, 1), (ssize_t)sizeof(f));
		sent++;
		if (i % 16 == 0)
			g_main_context_iteration(kl_loop_context(), FALSE);
	}
	ck_assert(!kl_netdev_can_send(nd));
	ck_assert_uint_gt(sent, 100);
	ck_assert_int_eq(tx_ready_calls, 0);
	/* drain: every accepted frame arrives, in order, and tx_ready fires */
	static uint8_t buf[1504];
	for (unsigned i = 0; i < sent; i++) {
		ck_assert_int_eq(read_full(sv[1], buf, sizeof(buf)), (ssize_t)sizeof(buf));
		ck_assert_uint_eq(buf[0] << 24 | buf[1] << 16 | buf[2] << 8 | buf[3], 1500);
		ck_assert_uint_eq(buf[4], (uint8_t)i);
	}
	pump(20);
	ck_assert_int_ge(tx_ready_calls, 1);
	ck_assert(kl_netdev_can_send(nd));
	struct kl_netdev_stats st;
	kl_netdev_get_stats(nd, &st);
	ck_assert_uint_eq(st.tx_frames, sent);
	ck_assert_uint_eq(st.tx_dropped, 0);
	close(sv[1]);
	g_ptr_array_free(n.frames, TRUE);
}
END_TEST

START_TEST(test_vnet_hdr_apply)
{
	uint8_t f[54 + 3000], ref[54 + 3000];
	size_t len = build_tcp(f, 3000, 0x18);
	memcpy(ref, f, len);
	kl_net_csum_fill(ref, len);
	struct segs s = { g_ptr_array_new_with_free_func((GDestroyNotify)g_byte_array_unref) };
	/* NEEDS_CSUM: field holds the pseudo-header sum, csum_start 34, offset 16 */
	uint8_t hdr[KL_VNET_HDR_LEN] = { KL_VNET_HDR_F_NEEDS_CSUM, KL_VNET_HDR_GSO_NONE };
	hdr[6] = 34; hdr[8] = 16;
	memcpy(f + 14 + 10, ref + 14 + 10, 2);   /* IP header checksum is the guest's job */
	uint8_t ph[12];
	memcpy(ph, f + 26, 8);
	ph[8] = 0; ph[9] = 6; ph[10] = (uint8_t)((len - 34) >> 8); ph[11] = (uint8_t)(len - 34);
	uint16_t p = (uint16_t)~kl_net_csum_fold(kl_net_csum_add(0, ph, 12));
	f[50] = (uint8_t)(p >> 8); f[51] = (uint8_t)p;
	ck_assert_int_eq(kl_net_vnet_hdr_apply(hdr, f, len, seg_emit, &s), 1);
	GByteArray *b = g_ptr_array_index(s.v, 0);
	ck_assert_uint_eq(b->len, len);
	ck_assert_mem_eq(b->data, ref, len);
	ck_assert(frame_csums_ok(b->data, b->len));
	/* no flags: passed through unchanged */
	uint8_t plain[KL_VNET_HDR_LEN] = { 0 };
	f[50] = 0x12;
	ck_assert_int_eq(kl_net_vnet_hdr_apply(plain, f, len, seg_emit, &s), 1);
	ck_assert_uint_eq(((GByteArray *)g_ptr_array_index(s.v, 1))->data[50], 0x12);
	/* GSO TCPv4 with gso_size 1448: three valid segments */
	g_ptr_array_set_size(s.v, 0);
	uint8_t gso[KL_VNET_HDR_LEN] = { KL_VNET_HDR_F_NEEDS_CSUM, KL_VNET_HDR_GSO_TCPV4, 54, 0,
					 1448 & 0xff, 1448 >> 8, 34, 0, 16, 0 };
	ck_assert_int_eq(kl_net_vnet_hdr_apply(gso, f, len, seg_emit, &s), 3);
	for (guint i = 0; i < 3; i++) {
		GByteArray *g = g_ptr_array_index(s.v, i);
		ck_assert(frame_csums_ok(g->data, g->len));
		ck_assert_uint_le(g->len, 54 + 1448);
	}
	/* malformed: csum_start beyond the frame, gso_size 0, UFO */
	hdr[6] = 0xff; hdr[7] = 0x7f;
	ck_assert_int_eq(kl_net_vnet_hdr_apply(hdr, f, len, seg_emit, &s), -1);
	gso[4] = gso[5] = 0;
	ck_assert_int_eq(kl_net_vnet_hdr_apply(gso, f, len, seg_emit, &s), -1);
	uint8_t ufo[KL_VNET_HDR_LEN] = { 0, KL_VNET_HDR_GSO_UDP, 0, 0, 100 };
	ck_assert_int_eq(kl_net_vnet_hdr_apply(ufo, f, len, seg_emit, &s), -1);
	g_ptr_array_free(s.v, TRUE);
}
END_TEST

struct send_arg {
	struct kl_netdev *nd;
	uint8_t frame[80];
};

static gpointer send_thread(gpointer p)
{
	struct send_arg *a = p;
	struct iovec iov = { a->frame, sizeof(a->frame) };
	kl_lock();
	ssize_t r = kl_netdev_send(a->nd, &iov, 1);
	kl_unlock();
	return GINT_TO_POINTER((int)r);
}

START_TEST(test_socket_send_from_vcpu_thread)
{
	int sv[2];
	ck_assert_int_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	char *err = NULL;
	struct kl_netdev *nd = kl_net_socket_new_fd("s1", sv[0], &err);
	ck_assert(nd);
	struct send_arg a = { .nd = nd };
	memset(a.frame, 0x5a, sizeof(a.frame));
	/* a "vCPU" thread: queued, transmitted by the main loop's bottom half */
	kl_unlock();
	GThread *t = g_thread_new("vcpu", send_thread, &a);
	int r = GPOINTER_TO_INT(g_thread_join(t));
	kl_lock();
	ck_assert_int_eq(r, 80);
	struct pollfd pf = { sv[1], POLLIN, 0 };
	ck_assert_int_eq(poll(&pf, 1, 0), 0);   /* nothing written by the vCPU thread */
	uint8_t out[84];
	ck_assert_int_eq(read_full(sv[1], out, 84), 84);
	ck_assert_mem_eq(out, "\x00\x00\x00\x50", 4);
	ck_assert_mem_eq(out + 4, a.frame, 80);
	close(sv[1]);
}
END_TEST

START_TEST(test_socket_listen_connect)
{
	/* find a free port */
	int tmp = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);
	ck_assert_int_eq(bind(tmp, (struct sockaddr *)&sa, sizeof(sa)), 0);
	getsockname(tmp, (struct sockaddr *)&sa, &sl);
	int port = ntohs(sa.sin_port);
	close(tmp);
	char *err = NULL;
	char *o1 = g_strdup_printf("socket,id=l,listen=127.0.0.1:%d", port);
	char *o2 = g_strdup_printf("socket,id=c,connect=127.0.0.1:%d", port);
	struct kl_netdev *l = kl_netdev_add(o1, &err);
	ck_assert_msg(l, "%s", err ? err : "");
	struct kl_netdev *c = kl_netdev_add(o2, &err);
	ck_assert_msg(c, "%s", err ? err : "");
	struct fake_nic nl, nc;
	fake_init(&nl);
	fake_init(&nc);
	struct kl_net_peer pl = fake_peer(&nl), pc = fake_peer(&nc);
	kl_netdev_attach(l, &pl, &err);
	kl_netdev_attach(c, &pc, &err);
	pump(50);   /* accept */
	uint8_t f[100];
	for (int i = 0; i < 10; i++) {
		memset(f, i, sizeof(f));
		struct iovec iov = { f, 60 + (size_t)i };
		ck_assert_int_eq(kl_netdev_send(c, &iov, 1), 60 + i);
		ck_assert_int_eq(kl_netdev_send(l, &iov, 1), 60 + i);
	}
	pump_until(&nl, 10);
	pump_until(&nc, 10);
	ck_assert_uint_eq(nl.frames->len, 10);
	ck_assert_uint_eq(nc.frames->len, 10);
	for (guint i = 0; i < 10; i++) {
		GByteArray *b = g_ptr_array_index(nl.frames, i);
		ck_assert_uint_eq(b->len, 60 + i);
		ck_assert_uint_eq(b->data[0], i);
	}
	/* QEMU's stream spelling reaches the same listener */
	char *o5 = g_strdup_printf("stream,id=c3,server=off,addr.type=inet,addr.host=127.0.0.1,"
				   "addr.port=%d", port);
	struct kl_netdev *c3 = kl_netdev_add(o5, &err);
	ck_assert_msg(c3, "%s", err ? err : "");
	ck_assert_str_eq(kl_netdev_type(c3), "socket");
	kl_netdev_free(c3);
	g_free(o5);
	expect_err("stream,id=c4,addr.type=unix,addr.path=/x", "addr.type=inet");
	/* the same port cannot be bound twice */
	char *o3 = g_strdup_printf("socket,id=l2,listen=127.0.0.1:%d", port);
	expect_err(o3, "listen=");
	/* connection refused is one clear line */
	kl_netdev_free(l);
	char *o4 = g_strdup_printf("socket,id=c2,connect=127.0.0.1:%d", port);
	expect_err(o4, "Connection refused");
	g_free(o1); g_free(o2); g_free(o3); g_free(o4);
	g_ptr_array_free(nl.frames, TRUE);
	g_ptr_array_free(nc.frames, TRUE);
}
END_TEST

START_TEST(test_socket_udp)
{
	char *err = NULL;
	int tmp = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);
	bind(tmp, (struct sockaddr *)&sa, sizeof(sa));
	getsockname(tmp, (struct sockaddr *)&sa, &sl);
	int p1 = ntohs(sa.sin_port);
	close(tmp);
	char *o = g_strdup_printf("dgram,id=u,remote.type=inet,remote.host=127.0.0.1,remote.port=%d,"
				  "local.type=inet,local.host=127.0.0.1,local.port=%d", p1, p1);
	struct kl_netdev *nd = kl_netdev_add(o, &err);   /* talks to itself */
	ck_assert_msg(nd, "%s", err ? err : "");
	struct fake_nic n;
	fake_init(&n);
	struct kl_net_peer p = fake_peer(&n);
	kl_netdev_attach(nd, &p, &err);
	uint8_t f[70];
	memset(f, 0x77, sizeof(f));
	struct iovec iov = { f, sizeof(f) };
	ck_assert_int_eq(kl_netdev_send(nd, &iov, 1), 70);
	pump_until(&n, 1);
	ck_assert_uint_eq(n.frames->len, 1);
	ck_assert_uint_eq(((GByteArray *)g_ptr_array_index(n.frames, 0))->len, 70);
	g_free(o);
	g_ptr_array_free(n.frames, TRUE);
}
END_TEST

/* ---- slirp back-end ----------------------------------------------------------- */

static const uint8_t guest_mac[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 };

static GByteArray *find_frame(struct fake_nic *n, uint16_t ethertype, uint8_t ipproto)
{
	for (guint i = 0; i < n->frames->len; i++) {
		GByteArray *b = g_ptr_array_index(n->frames, i);
		if (b->len < 14 || rd16(b->data + 12) != ethertype)
			continue;
		if (ethertype == 0x0800 && (b->len < 34 || b->data[23] != ipproto))
			continue;
		return b;
	}
	return NULL;
}

static void wait_frame(struct fake_nic *n, uint16_t et, uint8_t proto)
{
	gint64 end = g_get_monotonic_time() + 2000 * 1000;
	while (!find_frame(n, et, proto) && g_get_monotonic_time() < end)
		if (!g_main_context_iteration(kl_loop_context(), FALSE))
			g_usleep(500);
}

START_TEST(test_slirp_arp_dhcp_icmp)
{
	char *err = NULL;
	struct kl_netdev *nd = kl_netdev_add("user,id=net0", &err);
	ck_assert_msg(nd, "%s", err ? err : "");
	struct fake_nic n;
	fake_init(&n);
	struct kl_net_peer p = fake_peer(&n);
	kl_netdev_attach(nd, &p, &err);

	/* ARP who-has 10.0.2.2 tell 10.0.2.15 */
	uint8_t arp[42] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	memcpy(arp + 6, guest_mac, 6);
	memcpy(arp + 12, "\x08\x06\x00\x01\x08\x00\x06\x04\x00\x01", 10);
	memcpy(arp + 22, guest_mac, 6);
	memcpy(arp + 28, "\x0a\x00\x02\x0f", 4);
	memcpy(arp + 38, "\x0a\x00\x02\x02", 4);
	struct iovec iov = { arp, sizeof(arp) };
	ck_assert_int_eq(kl_netdev_send(nd, &iov, 1), 42);
	wait_frame(&n, 0x0806, 0);
	GByteArray *r = find_frame(&n, 0x0806, 0);
	ck_assert_msg(r, "no ARP reply");
	ck_assert_mem_eq(r->data, guest_mac, 6);
	ck_assert_uint_eq(rd16(r->data + 20), 2);                 /* reply */
	ck_assert_mem_eq(r->data + 28, "\x0a\x00\x02\x02", 4);     /* sender 10.0.2.2 */
	ck_assert_mem_eq(r->data + 38, "\x0a\x00\x02\x0f", 4);
	uint8_t gw_mac[6];
	memcpy(gw_mac, r->data + 22, 6);

	/* DHCP DISCOVER */
	uint8_t d[14 + 20 + 8 + 240 + 8];
	memset(d, 0, sizeof(d));
	memset(d, 0xff, 6);
	memcpy(d + 6, guest_mac, 6);
	d[12] = 0x08;
	uint8_t *ip = d + 14;
	ip[0] = 0x45; ip[8] = 64; ip[9] = 17;
	size_t iplen = 20 + 8 + 240 + 8;
	ip[2] = (uint8_t)(iplen >> 8); ip[3] = (uint8_t)iplen;
	memset(ip + 16, 0xff, 4);
	uint8_t *udp = ip + 20;
	udp[1] = 68; udp[3] = 67;
	udp[4] = (uint8_t)((8 + 248) >> 8); udp[5] = (uint8_t)(8 + 248);
	uint8_t *bp = udp + 8;
	bp[0] = 1; bp[1] = 1; bp[2] = 6;
	memcpy(bp + 4, "\xde\xad\xbe\xef", 4);
	memcpy(bp + 28, guest_mac, 6);
	memcpy(bp + 236, "\x63\x82\x53\x63", 4);
	memcpy(bp + 240, "\x35\x01\x01\xff", 4);   /* DHCPDISCOVER, end */
	kl_net_csum_fill(d, sizeof(d));
	iov.iov_base = d;
	iov.iov_len = sizeof(d);
	ck_assert_int_eq(kl_netdev_send(nd, &iov, 1), (ssize_t)sizeof(d));
	wait_frame(&n, 0x0800, 17);
	r = find_frame(&n, 0x0800, 17);
	ck_assert_msg(r, "no DHCP offer");
	const uint8_t *rb = r->data + 14 + 20 + 8;
	ck_assert_uint_eq(rb[0], 2);                                /* BOOTREPLY */
	ck_assert_mem_eq(rb + 4, "\xde\xad\xbe\xef", 4);            /* xid */
	ck_assert_mem_eq(rb + 16, "\x0a\x00\x02\x0f", 4);           /* yiaddr 10.0.2.15 */
	ck_assert_mem_eq(rb + 240, "\x35\x01\x02", 3);              /* DHCPOFFER */
	ck_assert(frame_csums_ok(r->data, r->len));                 /* IP + UDP checksums */

	/* ICMP echo to 10.0.2.2 */
	uint8_t e[14 + 20 + 8 + 32];
	memset(e, 0, sizeof(e));
	memcpy(e, gw_mac, 6);
	memcpy(e + 6, guest_mac, 6);
	e[12] = 0x08;
	ip = e + 14;
	ip[0] = 0x45; ip[3] = 60; ip[8] = 64; ip[9] = 1;
	memcpy(ip + 12, "\x0a\x00\x02\x0f\x0a\x00\x02\x02", 8);
	uint8_t *ic = ip + 20;
	ic[0] = 8; ic[4] = 0x12; ic[5] = 0x34; ic[7] = 1;
	for (int i = 0; i < 32; i++)
		ic[8 + i] = (uint8_t)i;
	uint16_t cs = kl_net_csum_fold(kl_net_csum_add(0, ic, 40));
	ic[2] = (uint8_t)(cs >> 8); ic[3] = (uint8_t)cs;
	kl_net_csum_fill(e, sizeof(e));
	iov.iov_base = e;
	iov.iov_len = sizeof(e);
	kl_netdev_send(nd, &iov, 1);
	wait_frame(&n, 0x0800, 1);
	r = find_frame(&n, 0x0800, 1);
	ck_assert_msg(r, "no ICMP echo reply");
	ck_assert_uint_eq(r->data[14 + 20], 0);                     /* echo reply */
	ck_assert_mem_eq(r->data + 14 + 12, "\x0a\x00\x02\x02", 4);
	ck_assert_mem_eq(r->data + 14 + 20 + 4, "\x12\x34\x00\x01", 4);
	ck_assert_mem_eq(r->data + 14 + 28, ic + 8, 32);
	g_ptr_array_free(n.frames, TRUE);
}
END_TEST

/* hostfwd: a host connection to the forwarded port makes slirp reach for
 * the guest (ARP who-has 10.0.2.15, or a SYN to the guest port once the
 * guest's MAC is known): slirp's listening socket is polled by our loop. */
START_TEST(test_slirp_hostfwd)
{
	int tmp = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t sl = sizeof(sa);
	ck_assert_int_eq(bind(tmp, (struct sockaddr *)&sa, sizeof(sa)), 0);
	getsockname(tmp, (struct sockaddr *)&sa, &sl);
	int port = ntohs(sa.sin_port);
	close(tmp);
	char *err = NULL;
	char *o = g_strdup_printf("user,id=fw,hostfwd=tcp:127.0.0.1:%d-:2222", port);
	struct kl_netdev *nd = kl_netdev_add(o, &err);
	ck_assert_msg(nd, "%s", err ? err : "");
	struct fake_nic n;
	fake_init(&n);
	struct kl_net_peer p = fake_peer(&n);
	kl_netdev_attach(nd, &p, &err);
	int c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	connect(c, (struct sockaddr *)&sa, sizeof(sa));
	gint64 end = g_get_monotonic_time() + 3000 * 1000;
	GByteArray *hit = NULL;
	while (!hit && g_get_monotonic_time() < end) {
		if (!g_main_context_iteration(kl_loop_context(), FALSE))
			g_usleep(1000);
		for (guint i = 0; i < n.frames->len && !hit; i++) {
			GByteArray *b = g_ptr_array_index(n.frames, i);
			if (b->len >= 42 && rd16(b->data + 12) == 0x0806 &&
			    !memcmp(b->data + 38, "\x0a\x00\x02\x0f", 4))
				hit = b;   /* who-has 10.0.2.15 */
			if (b->len >= 54 && rd16(b->data + 12) == 0x0800 && b->data[23] == 6 &&
			    rd16(b->data + 36) == 2222 && (b->data[47] & 0x02))
				hit = b;   /* SYN to the guest port */
		}
	}
	ck_assert_msg(hit, "slirp did not forward the host connection to the guest");
	close(c);
	g_free(o);
	g_ptr_array_free(n.frames, TRUE);
}
END_TEST

static Suite *net_suite(void)
{
	Suite *s = suite_create("net");
	TCase *tc = tcase_create("core");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_csum_basic);
	tcase_add_test(tc, test_tso_segment);
	tcase_add_test(tc, test_mac_parse);
	tcase_add_test(tc, test_netdev_parse);
	tcase_add_test(tc, test_socket_framing);
	tcase_add_test(tc, test_socket_send_from_vcpu_thread);
	tcase_add_test(tc, test_socket_backpressure);
	tcase_add_test(tc, test_vnet_hdr_apply);
	tcase_add_test(tc, test_socket_listen_connect);
	tcase_add_test(tc, test_socket_udp);
	tcase_add_test(tc, test_slirp_arp_dhcp_icmp);
	tcase_add_test(tc, test_slirp_hostfwd);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return kl_check_run(net_suite());
}
