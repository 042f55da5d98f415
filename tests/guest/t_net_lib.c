/* Probe guest network helpers: see t_net.h. */
#include "t_net.h"

uint16_t net_be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
uint32_t net_be32(const uint8_t *p) { return (uint32_t)net_be16(p) << 16 | net_be16(p + 2); }
void net_put16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
void net_put32(uint8_t *p, uint32_t v) { net_put16(p, (uint16_t)(v >> 16)); net_put16(p + 2, (uint16_t)v); }

uint32_t net_sum(uint32_t s, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	while (len >= 2) {
		s += net_be16(p);
		p += 2;
		len -= 2;
	}
	if (len)
		s += (uint32_t)p[0] << 8;
	return s;
}

uint16_t net_fold(uint32_t s)
{
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)~s;
}

uint64_t net_us_since(uint64_t tsc0)
{
	uint64_t per = tsc_per_us();
	if (!per)
		per = 1000;
	return (rdtsc() - tsc0) / per;
}

static void eth_hdr(uint8_t *f, const uint8_t dst[6], const uint8_t src[6], uint16_t type)
{
	memcpy(f, dst, 6);
	memcpy(f + 6, src, 6);
	net_put16(f + 12, type);
}

static const uint8_t bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };

size_t net_build_arp_req(uint8_t *f, const uint8_t mac[6], uint32_t sip, uint32_t tip)
{
	memset(f, 0, 60);
	eth_hdr(f, bcast, mac, 0x0806);
	net_put16(f + 14, 1);
	net_put16(f + 16, 0x0800);
	f[18] = 6;
	f[19] = 4;
	net_put16(f + 20, 1);
	memcpy(f + 22, mac, 6);
	net_put32(f + 28, sip);
	net_put32(f + 38, tip);
	return 42;
}

static void ip_hdr(uint8_t *ip, uint8_t proto, uint32_t sip, uint32_t dip, size_t total, uint16_t id)
{
	memset(ip, 0, 20);
	ip[0] = 0x45;
	net_put16(ip + 2, (uint16_t)total);
	net_put16(ip + 4, id);
	ip[8] = 64;
	ip[9] = proto;
	net_put32(ip + 12, sip);
	net_put32(ip + 16, dip);
	net_put16(ip + 10, net_fold(net_sum(0, ip, 20)));
}

size_t net_build_dhcp_discover(uint8_t *f, const uint8_t mac[6], uint32_t xid, bool full_csum)
{
	size_t bootp = 240 + 8;
	size_t udp_len = 8 + bootp;
	size_t len = 14 + 20 + udp_len;
	memset(f, 0, len);
	eth_hdr(f, bcast, mac, 0x0800);
	ip_hdr(f + 14, 17, 0, 0xffffffffu, 20 + udp_len, 1);
	uint8_t *u = f + 34;
	net_put16(u, 68);
	net_put16(u + 2, 67);
	net_put16(u + 4, (uint16_t)udp_len);
	uint8_t *b = u + 8;
	b[0] = 1;
	b[1] = 1;
	b[2] = 6;
	net_put32(b + 4, xid);
	memcpy(b + 28, mac, 6);
	net_put32(b + 236, 0x63825363);
	b[240] = 53; b[241] = 1; b[242] = 1;   /* DHCPDISCOVER */
	b[243] = 255;
	/* pseudo-header sum in the checksum field (what offload expects) */
	uint8_t ph[12];
	memcpy(ph, f + 26, 8);
	ph[8] = 0; ph[9] = 17;
	net_put16(ph + 10, (uint16_t)udp_len);
	uint32_t ps = net_sum(0, ph, 12);
	if (full_csum) {
		uint16_t c = net_fold(net_sum(ps, u, udp_len));
		net_put16(u + 6, c ? c : 0xffff);
	} else {
		net_put16(u + 6, (uint16_t)~net_fold(ps));
	}
	return len;
}

size_t net_build_icmp_echo(uint8_t *f, const uint8_t mac[6], const uint8_t dst[6], uint32_t sip,
			   uint32_t dip, uint16_t id, uint16_t seq, size_t payload, bool partial)
{
	size_t len = 14 + 20 + 8 + payload;
	eth_hdr(f, dst, mac, 0x0800);
	ip_hdr(f + 14, 1, sip, dip, 20 + 8 + payload, 2);
	uint8_t *ic = f + 34;
	memset(ic, 0, 8);
	ic[0] = 8;
	net_put16(ic + 4, id);
	net_put16(ic + 6, seq);
	for (size_t i = 0; i < payload; i++)
		ic[8 + i] = (uint8_t)(i + seq);
	if (!partial)
		net_put16(ic + 2, net_fold(net_sum(0, ic, 8 + payload)));
	return len;
}

size_t net_wait(struct netif *nif, uint8_t *buf, size_t cap, unsigned ms,
		bool (*match)(const uint8_t *f, size_t len, void *opaque), void *opaque)
{
	uint64_t t0 = rdtsc();
	while (net_us_since(t0) < (uint64_t)ms * 1000) {
		size_t n = nif->recv(nif, buf, cap);
		if (n && match(buf, n, opaque))
			return n;
		if (!n)
			udelay(200);
	}
	return 0;
}

/* ---- the slirp conversation ------------------------------------------------ */

static bool is_arp_reply(const uint8_t *f, size_t len, void *opaque)
{
	(void)opaque;
	return len >= 42 && net_be16(f + 12) == 0x0806 && net_be16(f + 20) == 2 &&
	       net_be32(f + 28) == NET_GW_IP;
}

static bool is_dhcp_offer(const uint8_t *f, size_t len, void *opaque)
{
	uint32_t xid = *(uint32_t *)opaque;
	return len >= 14 + 20 + 8 + 243 && net_be16(f + 12) == 0x0800 && f[23] == 17 &&
	       net_be16(f + 36) == 68 && f[42] == 2 && net_be32(f + 46) == xid;
}

static bool is_echo_reply(const uint8_t *f, size_t len, void *opaque)
{
	uint16_t seq = *(uint16_t *)opaque;
	return len >= 42 && net_be16(f + 12) == 0x0800 && f[23] == 1 && f[34] == 0 &&
	       net_be16(f + 40) == seq;
}

int net_slirp_conversation(struct netif *nif, int arp_mode, int dhcp_mode, bool dhcp_full,
			   int icmp_mode, bool icmp_partial)
{
	uint8_t *tx = probe_alloc(NET_FRAME_MAX, 64);
	uint8_t *rx = probe_alloc(NET_FRAME_MAX, 64);
	uint8_t gw[6];
	if (!tx || !rx)
		return probe_fail("%s: out of memory", nif->name);

	size_t len = net_build_arp_req(tx, nif->mac, NET_GUEST_IP, NET_GW_IP);
	if (nif->send(nif, tx, len, arp_mode) < 0)
		return probe_fail("%s: ARP request not sent", nif->name);
	size_t n = net_wait(nif, rx, NET_FRAME_MAX, 3000, is_arp_reply, NULL);
	if (!n)
		return probe_fail("%s: no ARP reply for 10.0.2.2", nif->name);
	if (memcmp(rx, nif->mac, 6))
		return probe_fail("%s: ARP reply not addressed to our MAC", nif->name);
	memcpy(gw, rx + 22, 6);
	printf("%s: ARP 10.0.2.2 is at %02x:%02x:%02x:%02x:%02x:%02x\n", nif->name, gw[0], gw[1],
	       gw[2], gw[3], gw[4], gw[5]);

	char nodhcp[4];
	if (probe_cmdline_get("nodhcp", nodhcp, sizeof(nodhcp)))
		goto icmp;   /* tap: no DHCP server on the host side */
	uint32_t xid = 0x4b4c0000u | (uint32_t)(rdtsc() & 0xffff);
	len = net_build_dhcp_discover(tx, nif->mac, xid, dhcp_full);
	if (nif->send(nif, tx, len, dhcp_mode) < 0)
		return probe_fail("%s: DHCP DISCOVER not sent", nif->name);
	n = net_wait(nif, rx, NET_FRAME_MAX, 3000, is_dhcp_offer, &xid);
	if (!n)
		return probe_fail("%s: no DHCP OFFER (a bad UDP checksum is dropped by slirp)", nif->name);
	uint32_t yi = net_be32(rx + 14 + 20 + 8 + 16);
	const uint8_t *opt = rx + 14 + 20 + 8 + 240;
	if (yi != NET_GUEST_IP || opt[0] != 53 || opt[2] != 2)
		return probe_fail("%s: DHCP reply is not an OFFER of 10.0.2.15 (yiaddr %x, type %u)",
				  nif->name, yi, opt[2]);
	if (net_fold(net_sum(0, rx + 14, 20)) != 0)
		return probe_fail("%s: DHCP OFFER has a bad IP header checksum", nif->name);
	printf("%s: DHCP OFFER 10.0.2.15 (xid %x)\n", nif->name, xid);

icmp:;
	uint16_t seq = 7;
	len = net_build_icmp_echo(tx, nif->mac, gw, NET_GUEST_IP, NET_GW_IP, 0x4b4c, seq, 56, icmp_partial);
	if (nif->send(nif, tx, len, icmp_mode) < 0)
		return probe_fail("%s: ICMP echo not sent", nif->name);
	n = net_wait(nif, rx, NET_FRAME_MAX, 3000, is_echo_reply, &seq);
	if (!n)
		return probe_fail("%s: no ICMP echo reply from 10.0.2.2 (a bad ICMP checksum is dropped)",
				  nif->name);
	if (n < 14 + 20 + 8 + 56 || memcmp(rx + 42, tx + 42, 56))
		return probe_fail("%s: echo reply payload differs", nif->name);
	if (net_fold(net_sum(0, rx + 34, 8 + 56)) != 0)
		return probe_fail("%s: echo reply has a bad ICMP checksum", nif->name);
	printf("%s: ICMP echo reply from 10.0.2.2\n", nif->name);
	return 0;
}

/* ---- two VMs on one wire ---------------------------------------------------- */


/* Pair frame: broadcast, ethertype 0x88b5, [14] sender role 'a'|'b',
 * [15] kind, [16..19] sequence, [20..59] 0x5a. */
#define PAIR_HELLO 1
#define PAIR_DATA 2
#define PAIR_HELLO_US 20000   /* HELLO retransmit period */

static void pair_frame(uint8_t *f, const uint8_t mac[6], char role, uint8_t kind, uint32_t seq)
{
	memset(f, 0xff, 6);
	memcpy(f + 6, mac, 6);
	f[12] = 0x88;
	f[13] = 0xb5;   /* local experimental ethertype */
	f[14] = (uint8_t)role;
	f[15] = kind;
	net_put32(f + 16, seq);
	memset(f + 20, 0x5a, 60 - 20);
}

/* Like a real wire, -netdev socket drops what a NIC sends before the peer
 * is connected (listen side before the accept) and the peer's NIC may not
 * be up yet: so each side repeats a HELLO until it hears from the peer (a
 * HELLO or a data frame), and only then sends its numbered data frames,
 * which from then on must all arrive, in order (the VMMs queue frames
 * while a receive ring is full; nothing may be lost). */
int net_pair_run(struct netif *nif)
{
	char role[4];
	if (!probe_cmdline_get("role", role, sizeof(role)) || (role[0] != 'a' && role[0] != 'b'))
		return probe_fail("role=a|b missing on the command line");
	const char peer = role[0] == 'a' ? 'b' : 'a';
	unsigned long count = probe_cmdline_num("count", 20);
	uint8_t *f = probe_alloc(128, 64);
	uint8_t *r = probe_alloc(NET_FRAME_MAX, 64);
	unsigned long got = 0, next_send = 0, hellos = 0;
	bool peer_up = false;
	uint64_t t0 = rdtsc(), last_hello = 0;
	while ((got < count || next_send < count) && net_us_since(t0) < 20000000) {
		if (!peer_up) {
			if (!hellos || net_us_since(last_hello) >= PAIR_HELLO_US) {
				pair_frame(f, nif->mac, role[0], PAIR_HELLO, (uint32_t)hellos);
				if (nif->send(nif, f, 60, 0))
					return probe_fail("%s: HELLO %lu not sent", nif->name, hellos);
				hellos++;
				last_hello = rdtsc();
			}
		} else if (next_send < count) {
			pair_frame(f, nif->mac, role[0], PAIR_DATA, (uint32_t)next_send);
			if (nif->send(nif, f, 60, 0))
				return probe_fail("%s: send %lu failed", nif->name, next_send);
			next_send++;
		}
		size_t n = nif->recv(nif, r, NET_FRAME_MAX);
		if (!n) {
			if (!peer_up || next_send >= count)
				udelay(500);
			continue;
		}
		if (n < 60 || net_be16(r + 12) != 0x88b5)
			continue;
		if (r[14] == (uint8_t)role[0])
			return probe_fail("%s: received our own frame back", nif->name);
		if (r[14] != (uint8_t)peer)
			return probe_fail("%s: frame from an unknown sender %x", nif->name, r[14]);
		for (unsigned i = 20; i < 60; i++)
			if (r[i] != 0x5a)
				return probe_fail("%s: peer frame (kind %u) corrupted at byte %u", nif->name,
						  r[15], i);
		uint32_t seq = net_be32(r + 16);
		if (r[15] == PAIR_HELLO) {
			peer_up = true;   /* late or repeated HELLOs are harmless */
			continue;
		}
		if (r[15] != PAIR_DATA)
			return probe_fail("%s: peer frame of unknown kind %u", nif->name, r[15]);
		peer_up = true;           /* the peer heard us and is sending */
		if (seq != got)
			return probe_fail("%s: peer frame %u arrived, expected %lu", nif->name, seq, got);
		got++;
	}
	if (!peer_up)
		return probe_fail("%s: no answer from the peer to %lu HELLOs", nif->name, hellos);
	if (got < count || next_send < count)
		return probe_fail("%s: received %lu of %lu frames from the peer (sent %lu)", nif->name,
				  got, count, next_send);
	printf("pair %c (%s): %lu HELLO, sent %lu, received %lu in order\n", role[0], nif->name,
	       hellos, next_send, got);
	/* linger so the peer can finish receiving our last frames */
	udelay(300000);
	return 0;
}

/* ---- TCP through TSO ---------------------------------------------------------- */

struct tcp_match {
	uint16_t lport, rport;
	uint8_t need_flags;
	uint32_t min_ack;
};

static bool is_tcp_for_us(const uint8_t *f, size_t len, void *opaque)
{
	struct tcp_match *m = opaque;
	if (len < 54 || net_be16(f + 12) != 0x0800 || f[23] != 6)
		return false;
	const uint8_t *t = f + 14 + (f[14] & 15) * 4;
	if (net_be16(t) != m->rport || net_be16(t + 2) != m->lport)
		return false;
	if (t[13] & 0x04)
		return true;   /* RST: let the caller fail */
	if ((t[13] & m->need_flags) != m->need_flags)
		return false;
	return (int32_t)(net_be32(t + 8) - m->min_ack) >= 0;
}

static size_t tcp_build(uint8_t *f, struct netif *nif, const uint8_t gw[6], uint16_t lport,
			uint16_t rport, uint32_t seq, uint32_t ack, uint8_t flags,
			const uint8_t *payload, size_t plen, bool tso)
{
	memcpy(f, gw, 6);
	memcpy(f + 6, nif->mac, 6);
	net_put16(f + 12, 0x0800);
	uint8_t *ip = f + 14;
	memset(ip, 0, 40);
	ip[0] = 0x45;
	net_put16(ip + 2, tso ? 0 : (uint16_t)(40 + plen));
	net_put16(ip + 4, 0x100);
	ip[8] = 64;
	ip[9] = 6;
	net_put32(ip + 12, NET_GUEST_IP);
	net_put32(ip + 16, NET_GW_IP);
	if (!tso)
		net_put16(ip + 10, net_fold(net_sum(0, ip, 20)));
	uint8_t *t = ip + 20;
	net_put16(t, lport);
	net_put16(t + 2, rport);
	net_put32(t + 4, seq);
	net_put32(t + 8, ack);
	t[12] = 0x50;
	t[13] = flags;
	net_put16(t + 14, 65535);
	memcpy(t + 20, payload, plen);
	uint8_t ph[12];
	memcpy(ph, ip + 12, 8);
	ph[8] = 0;
	ph[9] = 6;
	net_put16(ph + 10, tso ? 0 : (uint16_t)(20 + plen));
	if (tso)
		net_put16(t + 16, (uint16_t)~net_fold(net_sum(0, ph, 12)));
	else
		net_put16(t + 16, net_fold(net_sum(net_sum(0, ph, 12), t, 20 + plen)));
	return 54 + plen;
}

int net_tcp_tso_run(struct netif *nif)
{
	char v[16];
	unsigned long port = 0, bytes = 6000;
	if (probe_cmdline_get("port", v, sizeof(v)))
		for (const char *p = v; *p >= '0' && *p <= '9'; p++)
			port = port * 10 + (unsigned long)(*p - '0');
	if (probe_cmdline_get("bytes", v, sizeof(v))) {
		bytes = 0;
		for (const char *p = v; *p >= '0' && *p <= '9'; p++)
			bytes = bytes * 10 + (unsigned long)(*p - '0');
	}
	if (!port || port > 65535 || !bytes || bytes > 30000)
		return probe_fail("port=N (and bytes<=30000) needed on the command line");
	uint8_t *tx = probe_alloc(32768 + 128, 64), *rx = probe_alloc(NET_FRAME_MAX, 64);
	uint8_t *payload = probe_alloc(bytes, 64);
	for (unsigned long i = 0; i < bytes; i++)
		payload[i] = (uint8_t)(i * 7 + 1);
	/* gateway MAC */
	size_t len = net_build_arp_req(tx, nif->mac, NET_GUEST_IP, NET_GW_IP);
	nif->send(nif, tx, len, 0);
	if (!net_wait(nif, rx, NET_FRAME_MAX, 3000, is_arp_reply, NULL))
		return probe_fail("%s: no ARP reply", nif->name);
	uint8_t gw[6];
	memcpy(gw, rx + 22, 6);
	uint16_t lport = 40000 + (uint16_t)(rdtsc() & 0xfff);
	uint32_t iss = 0x10000000u;
	/* SYN */
	len = tcp_build(tx, nif, gw, lport, (uint16_t)port, iss, 0, 0x02, NULL, 0, false);
	if (nif->send(nif, tx, len, 0))
		return probe_fail("%s: SYN not sent", nif->name);
	struct tcp_match m = { lport, (uint16_t)port, 0x12, iss + 1 };
	if (!net_wait(nif, rx, NET_FRAME_MAX, 5000, is_tcp_for_us, &m))
		return probe_fail("%s: no SYN-ACK from 10.0.2.2:%lu", nif->name, port);
	const uint8_t *t = rx + 34;
	if (t[13] & 0x04)
		return probe_fail("%s: connection to 10.0.2.2:%lu refused", nif->name, port);
	uint32_t rcv = net_be32(t + 4) + 1;
	/* ACK, then the data as one super-frame */
	len = tcp_build(tx, nif, gw, lport, (uint16_t)port, iss + 1, rcv, 0x10, NULL, 0, false);
	nif->send(nif, tx, len, 0);
	len = tcp_build(tx, nif, gw, lport, (uint16_t)port, iss + 1, rcv, 0x18, payload, bytes, true);
	if (nif->send_tso(nif, tx, len, 54, 1000))
		return probe_fail("%s: TSO send failed", nif->name);
	m.need_flags = 0x10;
	m.min_ack = iss + 1 + (uint32_t)bytes;
	if (!net_wait(nif, rx, NET_FRAME_MAX, 5000, is_tcp_for_us, &m))
		return probe_fail("%s: the %lu bytes sent with TSO were not all acknowledged",
				  nif->name, bytes);
	if (t[13] & 0x04)
		return probe_fail("%s: connection reset", nif->name);
	printf("%s: %lu bytes over TCP with segmentation offload acknowledged\n", nif->name, bytes);
	/* FIN */
	len = tcp_build(tx, nif, gw, lport, (uint16_t)port, iss + 1 + (uint32_t)bytes, rcv, 0x11,
			NULL, 0, false);
	nif->send(nif, tx, len, 0);
	udelay(200000);
	return 0;
}

bool net_sink_idle(unsigned long got, uint64_t last)
{
	return net_us_since(last) > (got ? 3000000u : 60000000u);
}

static unsigned long mark_at, mark_got;
static uint64_t mark_tsc;
static bool mark_read;

void net_sink_progress(unsigned long got)
{
	if (!mark_read) {
		char v[32];
		mark_read = true;
		if (probe_cmdline_get("mark", v, sizeof(v)))
			for (const char *p = v; *p >= '0' && *p <= '9'; p++)
				mark_at = mark_at * 10 + (unsigned long)(*p - '0');
	}
	if (mark_at && !mark_tsc && got >= mark_at) {
		mark_tsc = rdtsc();
		mark_got = got;
	}
}

int net_sink_finish(unsigned long got, unsigned long n, uint64_t t0)
{
	if (mark_tsc)
		printf("SINK mark=%lu mark_us=%lu\n", mark_got, (unsigned long)net_us_since(mark_tsc));
	printf("SINK got=%lu us=%lu\n", got, (unsigned long)(got ? net_us_since(t0) : 0));
	udelay(300000);
	if (got < n)
		return probe_fail("received %lu of %lu frames", got, n);
	return 0;
}
