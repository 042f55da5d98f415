/* Checksums, TCP segmentation and MAC helpers shared by the NIC models. */
#include <stdio.h>
#include <string.h>

#include <glib.h>

#include "kvmlite/net.h"

#define ETH_HLEN 14
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86dd
#define ETH_P_8021Q 0x8100


int kl_net_parse_mac(const char *s, uint8_t mac[6])
{
	unsigned v[6];
	char tail;
	if (!s || sscanf(s, "%2x:%2x:%2x:%2x:%2x:%2x%c", &v[0], &v[1], &v[2], &v[3],
			 &v[4], &v[5], &tail) != 6 || strlen(s) != 17)
		return -1;
	for (int i = 0; i < 6; i++)
		mac[i] = (uint8_t)v[i];
	if (mac[0] & 1)
		return -1;  /* multicast address */
	return 0;
}

void kl_net_default_mac(uint8_t mac[6])
{
	static unsigned n;
	static const uint8_t base[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 };
	memcpy(mac, base, 6);
	mac[5] = (uint8_t)(base[5] + n++);
}

uint32_t kl_net_csum_add(uint32_t sum, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	uint64_t s = sum;
	while (len >= 2) {
		s += kl_get_be16(p);
		p += 2;
		len -= 2;
	}
	if (len)
		s += (uint32_t)p[0] << 8;
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint32_t)s;
}

uint16_t kl_net_csum_fold(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

int kl_net_csum_insert(uint8_t *frame, size_t len, size_t start, size_t off)
{
	if (start >= len || off > len - start || len - start - off < 2)
		return -1;
	uint16_t c = kl_net_csum_fold(kl_net_csum_add(0, frame + start, len - start));
	kl_put_be16(frame + start + off, c);
	return 0;
}

struct l3info {
	size_t l3;       /* offset of the IP header */
	size_t l4;       /* offset of the L4 header */
	int v6;
	uint8_t proto;
	size_t l3_end;   /* end of the IP datagram inside the frame */
};

/* Locate the IP and L4 headers; -1 if not IPv4/IPv6 or truncated. */
static int parse_l3(const uint8_t *f, size_t len, struct l3info *li)
{
	if (len < ETH_HLEN)
		return -1;
	size_t off = 12;
	uint16_t et = kl_get_be16(f + off);
	off += 2;
	if (et == ETH_P_8021Q) {
		if (len < off + 4)
			return -1;
		et = kl_get_be16(f + off + 2);
		off += 4;
	}
	li->l3 = off;
	if (et == ETH_P_IP) {
		if (len < off + 20 || (f[off] >> 4) != 4)
			return -1;
		size_t ihl = (size_t)(f[off] & 0xf) * 4;
		size_t tot = kl_get_be16(f + off + 2);
		if (tot == 0)
			tot = len - off;   /* TSO super-frames may leave it 0 */
		if (ihl < 20 || len < off + ihl || tot < ihl)
			return -1;
		li->v6 = 0;
		li->proto = f[off + 9];
		li->l4 = off + ihl;
		li->l3_end = off + tot <= len ? off + tot : len;
		return 0;
	}
	if (et == ETH_P_IPV6) {
		if (len < off + 40 || (f[off] >> 4) != 6)
			return -1;
		li->v6 = 1;
		li->proto = f[off + 6];
		li->l4 = off + 40;
		size_t end = off + 40 + kl_get_be16(f + off + 4);
		li->l3_end = end <= len ? end : len;
		return 0;
	}
	return -1;
}

static uint32_t pseudo_sum(const uint8_t *f, const struct l3info *li, size_t l4len)
{
	uint32_t s;
	if (li->v6) {
		s = kl_net_csum_add(0, f + li->l3 + 8, 32);
		uint8_t tail[8] = { 0, 0, 0, 0, 0, 0, 0, li->proto };
		kl_put_be32(tail, (uint32_t)l4len);
		s = kl_net_csum_add(s, tail, 8);
	} else {
		s = kl_net_csum_add(0, f + li->l3 + 12, 8);
		uint8_t tail[4] = { 0, li->proto, (uint8_t)(l4len >> 8), (uint8_t)l4len };
		s = kl_net_csum_add(s, tail, 4);
	}
	return s;
}

static void fill_ipv4_hdr(uint8_t *f, size_t l3, size_t ihl)
{
	kl_put_be16(f + l3 + 10, 0);
	kl_put_be16(f + l3 + 10, kl_net_csum_fold(kl_net_csum_add(0, f + l3, ihl)));
}

int kl_net_csum_fill(uint8_t *f, size_t len)
{
	struct l3info li;
	if (parse_l3(f, len, &li) < 0)
		return -1;
	if (!li.v6) {
		fill_ipv4_hdr(f, li.l3, li.l4 - li.l3);
		uint16_t frag = kl_get_be16(f + li.l3 + 6);
		if (frag & 0x3fff)
			return 0;  /* fragment: no L4 header to fix */
	}
	if (li.l3_end < li.l4)
		return 0;
	size_t l4len = li.l3_end - li.l4;
	size_t coff;
	if (li.proto == 6 && l4len >= 20)
		coff = 16;
	else if (li.proto == 17 && l4len >= 8)
		coff = 6;
	else
		return 0;
	kl_put_be16(f + li.l4 + coff, 0);
	uint16_t c = kl_net_csum_fold(kl_net_csum_add(pseudo_sum(f, &li, l4len), f + li.l4, l4len));
	if (li.proto == 17 && c == 0)
		c = 0xffff;
	kl_put_be16(f + li.l4 + coff, c);
	return 0;
}

int kl_net_tso_segment(const uint8_t *frame, size_t len, size_t hdr_len, size_t mss,
		       kl_net_emit_fn emit, void *opaque)
{
	struct l3info li;
	if (parse_l3(frame, len, &li) < 0 || li.proto != 6 || mss == 0)
		return -1;
	if (len < li.l4 + 20)
		return -1;
	size_t thl = (size_t)(frame[li.l4 + 12] >> 4) * 4;
	if (thl < 20)
		return -1;
	if (hdr_len == 0)
		hdr_len = li.l4 + thl;
	if (hdr_len != li.l4 + thl || hdr_len > len || hdr_len > 512)
		return -1;
	size_t payload = len - hdr_len;
	if (mss > KL_NET_MAX_FRAME - hdr_len)
		mss = KL_NET_MAX_FRAME - hdr_len;
	uint8_t *seg = g_malloc(hdr_len + (mss < payload ? mss : payload));
	uint32_t seq = kl_get_be32(frame + li.l4 + 4);
	uint16_t ipid = li.v6 ? 0 : kl_get_be16(frame + li.l3 + 4);
	uint8_t flags = frame[li.l4 + 13];
	size_t done = 0;
	int n = 0;
	do {
		size_t chunk = payload - done < mss ? payload - done : mss;
		bool last = done + chunk >= payload;
		memcpy(seg, frame, hdr_len);
		memcpy(seg + hdr_len, frame + hdr_len + done, chunk);
		size_t seglen = hdr_len + chunk;
		size_t l4len = seglen - li.l4;
		if (li.v6) {
			kl_put_be16(seg + li.l3 + 4, (uint16_t)(seglen - li.l3 - 40));
		} else {
			kl_put_be16(seg + li.l3 + 2, (uint16_t)(seglen - li.l3));
			kl_put_be16(seg + li.l3 + 4, (uint16_t)(ipid + n));
			fill_ipv4_hdr(seg, li.l3, li.l4 - li.l3);
		}
		kl_put_be32(seg + li.l4 + 4, seq + (uint32_t)done);
		uint8_t fl = flags;
		if (!last)
			fl &= (uint8_t)~0x09;  /* FIN, PSH only on the last */
		if (n > 0)
			fl &= (uint8_t)~0x80;  /* CWR only on the first */
		seg[li.l4 + 13] = fl;
		kl_put_be16(seg + li.l4 + 16, 0);
		struct l3info sli = li;
		uint16_t c = kl_net_csum_fold(kl_net_csum_add(pseudo_sum(seg, &sli, l4len),
							     seg + li.l4, l4len));
		kl_put_be16(seg + li.l4 + 16, c);
		emit(opaque, seg, seglen);
		done += chunk;
		n++;
	} while (done < payload);
	g_free(seg);
	return n;
}

int kl_net_vnet_hdr_apply(const uint8_t hdr[KL_VNET_HDR_LEN], uint8_t *frame, size_t len,
			  kl_net_emit_fn emit, void *opaque)
{
	uint8_t flags = hdr[0];
	uint8_t gso = hdr[1] & (uint8_t)~KL_VNET_HDR_GSO_ECN;
	uint16_t gso_size = (uint16_t)(hdr[4] | hdr[5] << 8);
	uint16_t csum_start = (uint16_t)(hdr[6] | hdr[7] << 8);
	uint16_t csum_offset = (uint16_t)(hdr[8] | hdr[9] << 8);
	if (gso == KL_VNET_HDR_GSO_TCPV4 || gso == KL_VNET_HDR_GSO_TCPV6) {
		if (!gso_size)
			return -1;
		/* the segments get complete checksums */
		return kl_net_tso_segment(frame, len, 0, gso_size, emit, opaque);
	}
	if (gso != KL_VNET_HDR_GSO_NONE)
		return -1;   /* UFO is not offered */
	if ((flags & KL_VNET_HDR_F_NEEDS_CSUM) &&
	    kl_net_csum_insert(frame, len, csum_start, csum_offset) < 0)
		return -1;
	emit(opaque, frame, len);
	return 1;
}
