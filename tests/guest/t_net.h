/* Probe guest network helpers (t_net_lib.c) shared by the t_net_*.c tests:
 * frame builders/checkers for ARP, DHCP, ICMP over slirp's default
 * 10.0.2.0/24 network, and a tiny NIC interface the tests drive. */
#ifndef PROBE_T_NET_H
#define PROBE_T_NET_H

#include "probe.h"

#define NET_GUEST_IP 0x0a00020fu   /* 10.0.2.15 */
#define NET_GW_IP 0x0a000202u      /* 10.0.2.2 */
#define NET_FRAME_MAX 2048

struct netif {
	const char *name;
	uint8_t mac[6];
	void *ctx;
	/* send one frame; mode selects a driver-specific TX path
	 * (e1000: 0 legacy, 1 legacy + IC checksum insert, 2 context/data with
	 * IXSM/TXSM; virtio: 0 plain, 1 NEEDS_CSUM).  0 or -1. */
	int (*send)(struct netif *nif, const uint8_t *frame, size_t len, int mode);
	/* poll for one received frame: length, or 0 when none */
	size_t (*recv)(struct netif *nif, uint8_t *buf, size_t cap);
	/* send a TCP/IPv4 super-frame (IP total length 0, IP checksum 0, TCP
	 * checksum field = pseudo-header sum without length) to be segmented
	 * by the NIC into mss-byte segments (e1000 TSE, virtio GSO). */
	int (*send_tso)(struct netif *nif, const uint8_t *frame, size_t len, size_t hdr_len,
			unsigned mss);
};

uint16_t net_be16(const uint8_t *p);
uint32_t net_be32(const uint8_t *p);
void net_put16(uint8_t *p, uint16_t v);
void net_put32(uint8_t *p, uint32_t v);
uint32_t net_sum(uint32_t s, const void *buf, size_t len);
uint16_t net_fold(uint32_t s);

/* Builders return the frame length. */
size_t net_build_arp_req(uint8_t *f, const uint8_t mac[6], uint32_t sip, uint32_t tip);
/* UDP checksum: 0 = left for offload (the pseudo-header sum is put in the
 * field and *csum_off says where), 1 = complete. */
size_t net_build_dhcp_discover(uint8_t *f, const uint8_t mac[6], uint32_t xid, bool full_csum);
/* ICMP checksum: complete unless partial (then the field is 0 and the
 * checksum of [34, len) must be inserted at 36). */
size_t net_build_icmp_echo(uint8_t *f, const uint8_t mac[6], const uint8_t dst[6], uint32_t sip,
			   uint32_t dip, uint16_t id, uint16_t seq, size_t payload, bool partial);

/* Wait up to ms for a frame accepted by match(); returns its length or 0. */
size_t net_wait(struct netif *nif, uint8_t *buf, size_t cap, unsigned ms,
		bool (*match)(const uint8_t *f, size_t len, void *opaque), void *opaque);

/* The slirp conversation: ARP for 10.0.2.2 (mode arp_mode), DHCP DISCOVER
 * -> OFFER of 10.0.2.15 (dhcp_mode), ICMP echo to 10.0.2.2 -> reply
 * (icmp_mode, icmp_partial: checksum left to the NIC).  0 or probe_fail. */
int net_slirp_conversation(struct netif *nif, int arp_mode, int dhcp_mode, bool dhcp_full,
			   int icmp_mode, bool icmp_partial);

/* Two VMs joined by -netdev socket (cmdline role=a|b, count=N): each
 * repeats a HELLO until it hears from the peer (frames sent before the
 * peer is connected and up are lost, as on a real wire), then sends N
 * broadcast frames (ethertype 0x88b5, role + kind + sequence) and must
 * receive the peer's N in order.  0 or probe_fail. */
int net_pair_run(struct netif *nif);

/* TCP to 10.0.2.2:port (cmdline port=N; slirp forwards it to the host's
 * 127.0.0.1:N): handshake, then bytes= (default 6000) bytes of pattern
 * (i * 7 + 1) & 0xff sent as one super-frame through send_tso with
 * MSS 1000, then wait until slirp acknowledges all of it (segments with a
 * bad checksum would be dropped), then FIN.  0 or probe_fail. */
int net_tcp_tso_run(struct netif *nif);

/* Elapsed microseconds since a rdtsc() value. */
uint64_t net_us_since(uint64_t tsc0);
/* Sink probes: stop waiting 3 s after the last frame once one arrived, or
 * after 60 s with none (last = TSC of the last frame or of the start). */
bool net_sink_idle(unsigned long got, uint64_t last);
/* Record the time at which got first reaches cmdline mark=K (rate
 * tests: net_sink_finish then prints "SINK mark=K' mark_us=T", the
 * frames after the mark and the microseconds they took). */
void net_sink_progress(unsigned long got);
/* Print "SINK got=N us=T" (t0 = TSC of the first frame) and give the verdict. */
int net_sink_finish(unsigned long got, unsigned long n, uint64_t t0);

/* Bring up the first NIC of a kind for other probe tests (t_migrate.c):
 * virtio-net-pci (t_net_virtio.c, MAC feature) or e1000 (t_net_e1000.c).
 * The interface, or NULL (with probe_fail). */
struct netif *net_virtio_open(void);
struct netif *net_e1000_open(void);

#endif
