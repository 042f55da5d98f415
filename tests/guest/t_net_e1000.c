/* Probe tests for the e1000 (82540EM):
 *   net_e1000      EEPROM (EERD, checksum 0xBABA), PHY id over MDIC, link up,
 *                  then ARP (legacy descriptor), DHCP DISCOVER (context +
 *                  data descriptors, IP + UDP checksum offload) and ICMP echo
 *                  (legacy descriptor with the IC checksum insert) against
 *                  slirp; ICR and read-to-clear statistics.
 *   net_bad_e1000  hostile TX ring values (TDLEN not a multiple of 128, TDT
 *                  beyond the ring, buffer and ring outside RAM) leave the
 *                  VMM alive; after CTRL.RST the NIC works again.
 *   net_flood_e1000 send N frames (cmdline n=N, default 20000) as fast as
 *                  possible (bench/net).
 *   net_pair_e1000 two VMs on -netdev socket (tests/guest/run-net-pair). */
#include "t_net.h"

#define CTRL 0x0000
#define STATUS 0x0008
#define EERD 0x0014
#define MDIC 0x0020
#define ICR 0x00c0
#define IMC 0x00d8
#define RCTL 0x0100
#define TCTL 0x0400
#define RDBAL 0x2800
#define RDBAH 0x2804
#define RDLEN 0x2808
#define RDH 0x2810
#define RDT 0x2818
#define TDBAL 0x3800
#define TDBAH 0x3804
#define TDLEN 0x3808
#define TDH 0x3810
#define TDT 0x3818
#define GPRC 0x4074
#define GPTC 0x4080
#define RAL0 0x5400

#define NTX 256
#define NRX 8
#define BUFSZ 2048

struct rxd {
	uint64_t addr;
	uint16_t length, csum;
	uint8_t status, errors;
	uint16_t special;
};
struct txd {
	uint64_t addr;
	uint32_t lower, upper;
};

struct e1000g {
	uint64_t mmio;
	volatile struct txd *tx;
	volatile struct rxd *rx;
	uint8_t *txbuf, *rxbuf;
	unsigned tx_tail, rx_next;
	unsigned long nsent, nrecv;   /* frames through e1000_send / e1000_recv */
};

static struct e1000g eg;
static struct netif e1000_nif;

static uint32_t rd(uint32_t off) { return mmio_read32(eg.mmio + off); }
static void wr(uint32_t off, uint32_t v) { mmio_write32(eg.mmio + off, v); }

static uint16_t eerd(unsigned a)
{
	wr(EERD, a << 8 | 1);
	for (int i = 0; i < 1000; i++) {
		uint32_t v = rd(EERD);
		if (v & 0x10)
			return (uint16_t)(v >> 16);
	}
	return 0xdead;
}

static int phy_read(unsigned reg, uint16_t *out)
{
	wr(MDIC, 2u << 26 | 1u << 21 | reg << 16);
	for (int i = 0; i < 1000; i++) {
		uint32_t v = rd(MDIC);
		if (v & (1u << 28)) {
			*out = (uint16_t)v;
			return (v & (1u << 30)) ? -1 : 0;
		}
	}
	return -1;
}

static void phy_write(unsigned reg, uint16_t v)
{
	wr(MDIC, 1u << 26 | 1u << 21 | reg << 16 | v);
	for (int i = 0; i < 1000 && !(rd(MDIC) & (1u << 28)); i++)
		;
}

static void rings_init(void)
{
	memset((void *)eg.tx, 0, NTX * sizeof(struct txd));
	for (unsigned i = 0; i < NRX; i++) {
		eg.rx[i].addr = (uint64_t)(uintptr_t)(eg.rxbuf + i * BUFSZ);
		eg.rx[i].status = 0;
	}
	wr(TDBAL, (uint32_t)(uintptr_t)eg.tx);
	wr(TDBAH, 0);
	wr(TDLEN, NTX * 16);
	wr(TDH, 0);
	wr(TDT, 0);
	eg.tx_tail = 0;
	wr(RDBAL, (uint32_t)(uintptr_t)eg.rx);
	wr(RDBAH, 0);
	wr(RDLEN, NRX * 16);
	wr(RDH, 0);
	wr(RDT, NRX - 1);
	eg.rx_next = 0;
	wr(IMC, 0xffffffff);
	wr(RCTL, 0x2 | 0x8000 | 0x04000000);  /* EN, BAM, SECRC, 2 KiB buffers */
	wr(TCTL, 0x2 | 0x8);                  /* EN, PSP */
}

/* Wait until the descriptor before the tail is done. */
static int tx_wait(unsigned idx)
{
	for (int i = 0; i < 20000; i++) {
		if (eg.tx[idx].upper & 1)
			return 0;
		if (i > 100)
			udelay(50);
	}
	return -1;
}

static unsigned tx_put(uint64_t addr, uint32_t lower, uint32_t upper)
{
	unsigned i = eg.tx_tail;
	eg.tx[i].addr = addr;
	eg.tx[i].lower = lower;
	eg.tx[i].upper = upper;
	eg.tx_tail = (i + 1) % NTX;
	return i;
}

static int e1000_send(struct netif *nif, const uint8_t *frame, size_t len, int mode)
{
	(void)nif;
	uint8_t *buf = eg.txbuf + eg.tx_tail * BUFSZ;
	memcpy(buf, frame, len);
	uint64_t a = (uint64_t)(uintptr_t)buf;
	unsigned last;
	const uint32_t EOP = 0x01, IFCS = 0x02, IC = 0x04, RS = 0x08, DEXT = 0x20;
	if (mode == 0) {
		last = tx_put(a, (uint32_t)len | (EOP | IFCS | RS) << 24, 0);
	} else if (mode == 1) {
		/* legacy + IC: checksum of [34, len) inserted at 36 (ICMP) */
		last = tx_put(a, (uint32_t)len | 36u << 16 | (EOP | IFCS | RS | IC) << 24, 34u << 8);
	} else {
		/* context: IPv4 header 14..33 (csum at 24), UDP from 34 (csum at 40) */
		buf[24] = buf[25] = 0;   /* IXSM must produce the IP checksum */
		uint64_t ctx = 14 | 24ull << 8 | 33ull << 16 | 34ull << 32 | 40ull << 40;
		tx_put(ctx, (0x02u /* TUCMD.IP, UDP */ | DEXT) << 24, 0);
		/* data: split into two descriptors; POPTS IXSM|TXSM in the first */
		tx_put(a, 42u | 1u << 20 | (IFCS | DEXT) << 24, 0x3u << 8);
		last = tx_put(a + 42, (uint32_t)(len - 42) | 1u << 20 | (EOP | IFCS | RS | DEXT) << 24, 0);
	}
	wr(TDT, eg.tx_tail);
	eg.nsent++;
	return tx_wait(last);
}

/* TSO: context (IP + TCP offsets, MSS, header length) + two data
 * descriptors (header, payload) with TSE and IXSM|TXSM. */
static int e1000_send_tso(struct netif *nif, const uint8_t *frame, size_t len, size_t hdr_len,
			  unsigned mss)
{
	(void)nif;
	static uint8_t *big;
	if (!big && !(big = probe_alloc(65536, 4096)))
		return -1;
	if (len > 65536)
		return -1;
	memcpy(big, frame, len);
	uint64_t a = (uint64_t)(uintptr_t)big;
	const uint32_t EOP = 0x01, IFCS = 0x02, TSE = 0x04, RS = 0x08, DEXT = 0x20;
	uint64_t ctx = 14 | 24ull << 8 | 33ull << 16 | 34ull << 32 | 50ull << 40;
	tx_put(ctx, (uint32_t)(len - hdr_len) | (0x01u /* TCP */ | 0x02u /* IP */ | TSE | DEXT) << 24,
	       (uint32_t)hdr_len << 8 | (uint32_t)mss << 16);
	tx_put(a, (uint32_t)hdr_len | 1u << 20 | (IFCS | TSE | DEXT) << 24, 0x3u << 8);
	unsigned last = tx_put(a + hdr_len, (uint32_t)(len - hdr_len) | 1u << 20 |
			       (EOP | IFCS | TSE | RS | DEXT) << 24, 0);
	wr(TDT, eg.tx_tail);
	eg.nsent++;
	return tx_wait(last);
}

static size_t e1000_recv(struct netif *nif, uint8_t *out, size_t cap)
{
	(void)nif;
	volatile struct rxd *d = &eg.rx[eg.rx_next];
	if (!(d->status & 1))
		return 0;
	size_t len = d->length;
	uint8_t errors = d->errors;
	if (len > cap)
		len = cap;
	memcpy(out, eg.rxbuf + eg.rx_next * BUFSZ, len);
	d->status = 0;
	wr(RDT, eg.rx_next);
	eg.rx_next = (eg.rx_next + 1) % NRX;
	if (errors || !len)
		return 0;
	eg.nrecv++;
	return len;
}

static int e1000_up(void)
{
	uint16_t bdf;
	struct pci_bar bar;
	if (pci_find(0x8086, 0x100e, &bdf) < 0)
		return probe_fail("no e1000 (8086:100e) on bus 0");
	pci_bar_info(bdf, 0, &bar);
	if (bar.io || bar.size != 0x20000)
		return probe_fail("e1000 BAR0 is not 128 KiB MMIO (size 0x%lx)", bar.size);
	pci_write16(bdf, 4, pci_read16(bdf, 4) | 0x7);   /* IO, MEM, bus master */
	eg.mmio = bar.addr;
	if (!eg.tx) {
		eg.tx = probe_alloc(NTX * sizeof(struct txd), 128);
		eg.rx = probe_alloc(NRX * sizeof(struct rxd), 128);
		eg.txbuf = probe_alloc(NTX * BUFSZ, 4096);
		eg.rxbuf = probe_alloc(NRX * BUFSZ, 4096);
		if (!eg.tx || !eg.rx || !eg.txbuf || !eg.rxbuf)
			return probe_fail("out of memory");
	}
	wr(CTRL, rd(CTRL) | 0x04000000);   /* RST */
	udelay(10);
	if (rd(CTRL) & 0x04000000)
		return probe_fail("CTRL.RST did not self-clear");
	uint16_t sum = 0;
	for (unsigned i = 0; i < 64; i++)
		sum = (uint16_t)(sum + eerd(i));
	if (sum != 0xbaba)
		return probe_fail("EEPROM words 0x00-0x3f sum to 0x%x, not 0xbaba", sum);
	for (int i = 0; i < 3; i++) {
		uint16_t w = eerd((unsigned)i);
		e1000_nif.mac[2 * i] = (uint8_t)w;
		e1000_nif.mac[2 * i + 1] = (uint8_t)(w >> 8);
	}
	uint32_t ral = rd(RAL0);
	if (memcmp(&ral, e1000_nif.mac, 4))
		return probe_fail("RAL0 %x does not hold the EEPROM MAC", ral);
	uint16_t id1, id2, bmsr = 0;
	if (phy_read(2, &id1) || phy_read(3, &id2))
		return probe_fail("MDIC read of PHY 1 failed");
	if (id1 != 0x0141 || id2 != 0x0c20)
		return probe_fail("PHY id %04x:%04x, expected 0141:0c20", id1, id2);
	wr(CTRL, rd(CTRL) | 0x40);          /* SLU */
	phy_write(0, 0x1340);               /* autoneg enable + restart */
	/* auto-negotiation may take a while on other implementations */
	for (int i = 0; i < 300; i++) {
		if (phy_read(1, &bmsr))
			return probe_fail("MDIC read of PHY status failed");
		if ((bmsr & 0x24) == 0x24 && (rd(STATUS) & 2))
			break;
		udelay(10000);
	}
	if ((bmsr & 0x24) != 0x24)
		return probe_fail("PHY status %04x: link or autoneg not complete", bmsr);
	if (!(rd(STATUS) & 2))
		return probe_fail("STATUS.LU clear");
	rings_init();
	e1000_nif.name = "e1000";
	e1000_nif.send = e1000_send;
	e1000_nif.recv = e1000_recv;
	e1000_nif.send_tso = e1000_send_tso;
	return 0;
}

static int test_net_e1000(void)
{
	if (e1000_up())
		return -1;
	printf("e1000: MAC %02x:%02x:%02x:%02x:%02x:%02x, link up\n", e1000_nif.mac[0],
	       e1000_nif.mac[1], e1000_nif.mac[2], e1000_nif.mac[3], e1000_nif.mac[4], e1000_nif.mac[5]);
	rd(ICR);
	rd(GPTC);
	rd(GPRC);
	eg.nsent = eg.nrecv = 0;
	if (net_slirp_conversation(&e1000_nif, 0, 2, false, 1, true))
		return -1;
	uint32_t icr = rd(ICR);
	if ((icr & 0x81) != 0x81)
		return probe_fail("ICR 0x%x lacks TXDW|RXT0 after traffic", icr);
	if (rd(ICR) != 0)
		return probe_fail("ICR not cleared by reading");
	uint32_t gptc = rd(GPTC), gprc = rd(GPRC);
	if (gptc != eg.nsent || gprc < eg.nrecv)
		return probe_fail("statistics: GPTC %u (want %lu), GPRC %u (want >= %lu)", gptc,
				  eg.nsent, gprc, eg.nrecv);
	if (rd(GPTC) != 0)
		return probe_fail("GPTC not cleared by reading");
	/* INTx: with RXT0 enabled, a received frame asserts the line, which
	 * shows in PCI STATUS.INTERRUPT; reading ICR deasserts it */
	uint16_t bdf;
	pci_find(0x8086, 0x100e, &bdf);
	if (pci_read16(bdf, 6) & 0x8)
		return probe_fail("INTx asserted with all causes masked");
	wr(0x00d0 /* IMS */, 0x80);
	uint8_t *f = probe_alloc(64, 64), *r = probe_alloc(NET_FRAME_MAX, 64);
	size_t len = net_build_arp_req(f, e1000_nif.mac, NET_GUEST_IP, NET_GW_IP);
	e1000_send(&e1000_nif, f, len, 0);
	bool asserted = false;
	for (int i = 0; i < 3000 && !asserted; i++) {
		asserted = pci_read16(bdf, 6) & 0x8;
		if (!asserted)
			udelay(1000);
	}
	if (!asserted)
		return probe_fail("no INTx (PCI STATUS.INTERRUPT) after a frame arrived with IMS.RXT0");
	icr = rd(ICR);
	if (!(icr & 0x80000080u))
		return probe_fail("ICR 0x%x: RXT0/INT_ASSERTED not set while the line is up", icr);
	if (pci_read16(bdf, 6) & 0x8)
		return probe_fail("INTx still asserted after ICR was read");
	while (e1000_recv(&e1000_nif, r, NET_FRAME_MAX))
		;
	printf("e1000: INTx asserted on RX and cleared by reading ICR\n");
	return 0;
}
PROBE_TEST(net_e1000, test_net_e1000);

static int test_net_bad_e1000(void)
{
	if (e1000_up())
		return -1;
	/* TDLEN not a multiple of 128: the low bits are dropped */
	wr(TDLEN, 100);
	if (rd(TDLEN) != 0)
		return probe_fail("TDLEN 100 reads back 0x%x", rd(TDLEN));
	/* TX runs on kvmlite's main loop after the TDT write: give it 2 ms
	 * before each check.  Empty the ring (TDT = TDH) before giving it a
	 * length, or the device would rightly send descriptors 0-4 then (as
	 * the hardware does whenever head != tail). */
	wr(TDT, 5);
	udelay(2000);
	if (rd(TDH) != 0)
		return probe_fail("TX ran on a zero-length ring (TDH %u)", rd(TDH));
	wr(TDT, 0);
	/* TDT beyond the ring */
	wr(TDLEN, NTX * 16);
	wr(TDT, NTX + 44);
	udelay(2000);
	if (rd(TDH) != 0)
		return probe_fail("TX ran with TDT beyond the ring (TDH %u)", rd(TDH));
	wr(TDT, 0);
	/* data buffer outside RAM: dropped, descriptor still completed */
	eg.tx_tail = 0;
	unsigned i = tx_put(0xffffffff0000ull, 100u | (0x01u | 0x08u) << 24, 0);
	wr(TDT, eg.tx_tail);
	if (tx_wait(i) || rd(TDH) != 1)
		return probe_fail("descriptor with a buffer outside RAM not completed (TDH %u)", rd(TDH));
	/* descriptor ring outside RAM: no progress, no crash */
	wr(TCTL, 0);
	wr(TDBAL, 0);
	wr(TDBAH, 0x100);
	wr(TDH, 0);
	wr(TCTL, 0x2);
	wr(TDT, 3);
	udelay(2000);
	if (rd(TDH) != 0)
		return probe_fail("TX walked a ring outside RAM (TDH %u)", rd(TDH));
	/* RX ring outside RAM while a frame arrives: dropped */
	wr(RDBAH, 0x100);
	uint8_t *f = probe_alloc(64, 64);
	wr(TDBAL, (uint32_t)(uintptr_t)eg.tx);
	wr(TDBAH, 0);
	wr(TDH, 0);
	wr(TDT, 0);
	eg.tx_tail = 0;
	size_t len = net_build_arp_req(f, e1000_nif.mac, NET_GUEST_IP, NET_GW_IP);
	if (e1000_send(&e1000_nif, f, len, 0))
		return probe_fail("send failed after restoring the TX ring");
	udelay(20000);
	printf("e1000: hostile values survived; resetting\n");
	/* reset, and everything works again */
	if (e1000_up())
		return -1;
	return net_slirp_conversation(&e1000_nif, 0, 2, false, 1, true);
}
PROBE_TEST(net_bad_e1000, test_net_bad_e1000);

/* Send n frames (cmdline n=, default 20000) of 60 bytes (size=) as fast
 * as the ring allows; print the count and elapsed time. */
static int test_net_flood_e1000(void)
{
	char v[32];
	unsigned long n = 20000, size = 60;
	if (probe_cmdline_get("n", v, sizeof(v))) {
		n = 0;
		for (const char *p = v; *p >= '0' && *p <= '9'; p++)
			n = n * 10 + (unsigned long)(*p - '0');
	}
	if (probe_cmdline_get("size", v, sizeof(v))) {
		size = 0;
		for (const char *p = v; *p >= '0' && *p <= '9'; p++)
			size = size * 10 + (unsigned long)(*p - '0');
		if (size < 60 || size > 1514)
			size = 60;
	}
	if (e1000_up())
		return -1;
	/* one frame buffer shared by all descriptors */
	uint8_t *f = eg.txbuf;
	memset(f, 0, size);
	memset(f, 0xff, 6);
	memcpy(f + 6, e1000_nif.mac, 6);
	f[12] = 0x88;
	f[13] = 0xb5;   /* local experimental ethertype */
	for (unsigned i = 0; i < NTX; i++)
		eg.tx[i].addr = (uint64_t)(uintptr_t)f;
	printf("FLOOD start\n");
	/* descriptors never change: each batch only moves TDT up to the
	 * slot before TDH, so guest work per frame is ~nothing */
	for (unsigned i = 0; i < NTX; i++) {
		eg.tx[i].lower = (uint32_t)size | (0x01u | 0x02u) << 24;   /* EOP IFCS */
		eg.tx[i].upper = 0;
	}
	uint64_t t0 = rdtsc();
	unsigned long sent = 0;
	unsigned tail = 0;
	while (sent < n) {
		unsigned head = rd(TDH);
		unsigned room = (head + NTX - 1 - tail) % NTX;
		if (room > n - sent)
			room = (unsigned)(n - sent);
		if (room) {
			tail = (tail + room) % NTX;
			wr(TDT, tail);
			sent += room;
		}
	}
	/* wait (up to 20 s: a rate limit may hold the ring) until the NIC
	 * took every descriptor */
	uint64_t tw = rdtsc();
	while (rd(TDH) != tail && net_us_since(tw) < 20000000u)
		cpu_relax();
	uint64_t us = net_us_since(t0);
	printf("FLOOD sent=%lu us=%lu\n", sent, (unsigned long)us);
	udelay(300000);   /* let bench/net sample the VMM's CPU time */
	return 0;
}
PROBE_TEST(net_flood_e1000, test_net_flood_e1000);

static int test_net_pair_e1000(void)
{
	if (e1000_up())
		return -1;
	return net_pair_run(&e1000_nif);
}
PROBE_TEST(net_pair_e1000, test_net_pair_e1000);

/* TCP through TSO against slirp (tests/guest/run-net-tcp listens on the
 * host side and checks the bytes). */
static int test_net_tso_e1000(void)
{
	if (e1000_up())
		return -1;
	return net_tcp_tso_run(&e1000_nif);
}
PROBE_TEST(net_tso_e1000, test_net_tso_e1000);

/* Receive n= frames (default 20000) as fast as possible on a 256-entry
 * RX ring, recycling buffers in batches; prints "SINK got=N us=T" (the
 * receiving side of bench/net --pair).  Stops 3 s after the last frame. */
static int test_net_sink_e1000(void)
{
	char v[32];
	unsigned long n = 20000;
	if (probe_cmdline_get("n", v, sizeof(v))) {
		n = 0;
		for (const char *p = v; *p >= '0' && *p <= '9'; p++)
			n = n * 10 + (unsigned long)(*p - '0');
	}
	if (e1000_up())
		return -1;
	const unsigned N = 256;
	volatile struct rxd *ring = probe_alloc(N * sizeof(struct rxd), 128);
	uint8_t *bufs = probe_alloc((size_t)N * BUFSZ, 4096);
	if (!ring || !bufs)
		return probe_fail("out of memory");
	for (unsigned i = 0; i < N; i++) {
		ring[i].addr = (uint64_t)(uintptr_t)(bufs + (size_t)i * BUFSZ);
		ring[i].status = 0;
	}
	wr(RCTL, 0);
	wr(RDBAL, (uint32_t)(uintptr_t)ring);
	wr(RDBAH, 0);
	wr(RDLEN, N * 16);
	wr(RDH, 0);
	wr(RDT, N - 1);
	wr(RCTL, 0x2 | 0x8000 | 0x04000000);
	printf("SINK ready\n");
	unsigned long got = 0;
	unsigned next = 0, batch = 0;
	uint64_t t0 = 0, last = rdtsc();
	while (got < n) {
		if (ring[next].status & 1) {
			if (!got)
				t0 = rdtsc();
			ring[next].status = 0;
			next = (next + 1) % N;
			got++;
			net_sink_progress(got);
			if (++batch == 32) {
				wr(RDT, (next + N - 1) % N);
				batch = 0;
				last = rdtsc();
			}
			continue;
		}
		if (batch) {
			wr(RDT, (next + N - 1) % N);
			batch = 0;
			last = rdtsc();
		}
		if (net_sink_idle(got, last))
			break;
	}
	return net_sink_finish(got, n, t0);
}
PROBE_TEST(net_sink_e1000, test_net_sink_e1000);

struct netif *net_e1000_open(void)
{
	return e1000_up() ? NULL : &e1000_nif;
}
