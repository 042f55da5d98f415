/* e1000 register model on fake guest memory: EEPROM, PHY, interrupts,
 * TX (legacy, context/data, checksum offload, TSO), RX and filtering,
 * statistics, hostile ring values. */
#include <check.h>

#include "../kl_check.h"
#include <glib.h>
#include <stdlib.h>
#include <string.h>

#include "kvmlite/mem.h"
#include "kvmlite/net.h"
#include "../../../src/e1000/e1000_int.h"

#define RAM_SIZE (1u << 20)
#define TXRING 0x1000
#define RXRING 0x2000
#define TXBUF 0x10000
#define RXBUF 0x40000

static struct kl_guest_mem mem;
static uint8_t *ram;
static struct e1000_core core;
static int irq;
static uint64_t now;
static uint64_t timer_delay;
static bool timer_armed;
static GPtrArray *sent;
static const uint8_t mac[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 };

static void t_set_irq(void *o, int level) { (void)o; irq = level; }
static bool t_send(void *o, const uint8_t *f, size_t len)
{
	(void)o;
	GByteArray *b = g_byte_array_new();
	g_byte_array_append(b, f, (guint)len);
	g_ptr_array_add(sent, b);
	return true;
}
static uint64_t t_now(void *o) { (void)o; return now; }
static void t_arm(void *o, uint64_t d) { (void)o; timer_delay = d; timer_armed = true; }

static const struct e1000_core_cb cbs = {
	.set_irq = t_set_irq, .send = t_send, .now_ns = t_now, .arm_timer = t_arm,
};

static void setup(void)
{
	ram = calloc(1, RAM_SIZE);
	kl_mem_init_empty(&mem);
	kl_mem_add_region(&mem, 0, RAM_SIZE, ram);
	sent = g_ptr_array_new_with_free_func((GDestroyNotify)g_byte_array_unref);
	irq = 0;
	now = 1000000;
	timer_armed = false;
	e1000_core_init(&core, &mem, mac, &cbs, NULL);
}

static void teardown(void)
{
	e1000_core_cleanup(&core);
	g_ptr_array_free(sent, TRUE);
	free(ram);
}

static uint32_t rd(uint32_t off) { return (uint32_t)e1000_mmio_read(&core, off, 4); }
static void wr(uint32_t off, uint32_t v) { e1000_mmio_write(&core, off, v, 4); }
static uint16_t be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }
static uint32_t be32(const uint8_t *p) { return (uint32_t)be16(p) << 16 | be16(p + 2); }

/* ---- EEPROM / PHY / registers ------------------------------------------- */

static uint16_t eerd(unsigned addr)
{
	wr(E1000_EERD, (addr << 8) | E1000_EERD_START);
	uint32_t v = rd(E1000_EERD);
	ck_assert(v & E1000_EERD_DONE);
	return (uint16_t)(v >> 16);
}

/* Linux-style microwire read: REQ/GNT, CS, opcode 110, 6 address bits. */
static void ee_clock(uint32_t *e)
{
	wr(E1000_EECD, *e | E1000_EECD_SK);
	wr(E1000_EECD, *e);
}

static uint16_t ee_microwire(unsigned addr)
{
	uint32_t e = E1000_EECD_REQ;
	wr(E1000_EECD, e);
	ck_assert(rd(E1000_EECD) & E1000_EECD_GNT);
	e |= E1000_EECD_CS;
	wr(E1000_EECD, e);
	unsigned cmd = (6u << 6) | addr;   /* 1 1 0 a5..a0 */
	for (int i = 8; i >= 0; i--) {
		if ((cmd >> i) & 1)
			e |= E1000_EECD_DI;
		else
			e &= ~(uint32_t)E1000_EECD_DI;
		wr(E1000_EECD, e);
		ee_clock(&e);
	}
	e &= ~(uint32_t)E1000_EECD_DI;
	uint16_t v = 0;
	for (int i = 0; i < 16; i++) {
		wr(E1000_EECD, e | E1000_EECD_SK);
		v = (uint16_t)(v << 1 | !!(rd(E1000_EECD) & E1000_EECD_DO));
		wr(E1000_EECD, e);
	}
	wr(E1000_EECD, 0);
	return v;
}

START_TEST(test_eeprom)
{
	uint16_t sum = 0;
	for (unsigned i = 0; i < 64; i++)
		sum = (uint16_t)(sum + eerd(i));
	ck_assert_uint_eq(sum, 0xbaba);
	ck_assert_uint_eq(eerd(0), 0x5452);
	ck_assert_uint_eq(eerd(1), 0x1200);
	ck_assert_uint_eq(eerd(2), 0x5634);
	ck_assert_uint_eq(eerd(0x0d), 0x100e);
	ck_assert_uint_eq(eerd(0x0e), 0x8086);
	/* microwire bit-banging gives the same words */
	for (unsigned i = 0; i < 64; i += 7)
		ck_assert_uint_eq(ee_microwire(i), eerd(i));
	ck_assert_uint_eq(ee_microwire(63), eerd(63));
	ck_assert(rd(E1000_EECD) & E1000_EECD_PRES);
	/* RAL0/RAH0 come from the EEPROM MAC */
	ck_assert_uint_eq(rd(E1000_RA), 0x12005452);
	ck_assert_uint_eq(rd(E1000_RA + 4), 0x80005634);
}
END_TEST

static uint32_t mdic(bool read, unsigned phy, unsigned reg, uint16_t data)
{
	wr(E1000_MDIC, (read ? E1000_MDIC_OP_READ : E1000_MDIC_OP_WRITE) | phy << 21 | reg << 16 | data);
	uint32_t v = rd(E1000_MDIC);
	ck_assert(v & E1000_MDIC_READY);
	return v;
}

START_TEST(test_phy_mdic)
{
	ck_assert_uint_eq(mdic(true, 1, 2, 0) & 0xffff, 0x0141);
	ck_assert_uint_eq(mdic(true, 1, 3, 0) & 0xffff, 0x0c20);
	uint32_t st = mdic(true, 1, 1, 0);
	ck_assert(st & 0x0004);           /* link up */
	ck_assert(st & 0x0020);           /* autoneg complete */
	ck_assert(!(st & E1000_MDIC_ERROR));
	ck_assert(mdic(true, 2, 1, 0) & E1000_MDIC_ERROR);  /* no PHY at address 2 */
	/* writable register keeps the value; read-only ignores writes */
	mdic(false, 1, 4, 0x01e1);
	ck_assert_uint_eq(mdic(true, 1, 4, 0) & 0xffff, 0x01e1);
	mdic(false, 1, 2, 0x1234);
	ck_assert_uint_eq(mdic(true, 1, 2, 0) & 0xffff, 0x0141);
	/* restart autoneg self-clears */
	mdic(false, 1, 0, 0x1340);
	ck_assert_uint_eq(mdic(true, 1, 0, 0) & 0x0200, 0);
	ck_assert(rd(E1000_STATUS) & E1000_STATUS_LU);
	ck_assert(rd(E1000_STATUS) & E1000_STATUS_FD);
	ck_assert_uint_eq(rd(E1000_STATUS) & 0xc0, E1000_STATUS_SPEED_1000);
}
END_TEST

START_TEST(test_interrupts)
{
	ck_assert_int_eq(irq, 0);
	wr(E1000_ICS, E1000_ICR_TXDW);
	ck_assert_int_eq(irq, 0);                 /* masked */
	wr(E1000_IMS, E1000_ICR_TXDW | E1000_ICR_RXT0);
	ck_assert_int_eq(irq, 1);
	ck_assert_uint_eq(rd(E1000_IMS), E1000_ICR_TXDW | E1000_ICR_RXT0);
	wr(E1000_IMC, E1000_ICR_TXDW);
	ck_assert_int_eq(irq, 0);
	ck_assert_uint_eq(rd(E1000_IMS), E1000_ICR_RXT0);
	wr(E1000_IMS, E1000_ICR_TXDW);
	ck_assert_int_eq(irq, 1);
	uint32_t icr = rd(E1000_ICR);             /* read-to-clear */
	ck_assert_uint_eq(icr, E1000_ICR_TXDW | E1000_ICR_INT_ASSERTED);
	ck_assert_int_eq(irq, 0);
	ck_assert_uint_eq(rd(E1000_ICR), 0);
	/* write-1-to-clear */
	wr(E1000_ICS, E1000_ICR_RXT0 | E1000_ICR_LSC);
	ck_assert_int_eq(irq, 1);
	wr(E1000_ICR, E1000_ICR_RXT0);
	ck_assert_int_eq(irq, 0);                 /* LSC is not enabled */
	ck_assert_uint_eq(rd(E1000_ICR), E1000_ICR_LSC);
	/* link loss raises LSC and clears STATUS.LU */
	wr(E1000_IMS, E1000_ICR_LSC);
	e1000_set_link(&core, false);
	ck_assert_int_eq(irq, 1);
	ck_assert(!(rd(E1000_STATUS) & E1000_STATUS_LU));
	ck_assert(!(mdic(true, 1, 1, 0) & 4));
	ck_assert(rd(E1000_ICR) & E1000_ICR_LSC);
	e1000_set_link(&core, true);
	ck_assert(rd(E1000_STATUS) & E1000_STATUS_LU);
	/* CTRL.RST resets the registers */
	wr(E1000_RCTL, E1000_RCTL_EN);
	wr(E1000_CTRL, E1000_CTRL_RST);
	ck_assert_uint_eq(rd(E1000_RCTL), 0);
	ck_assert_uint_eq(rd(E1000_IMS), 0);
	ck_assert_int_eq(irq, 0);
	ck_assert_uint_eq(rd(E1000_CTRL) & E1000_CTRL_RST, 0);
}
END_TEST

START_TEST(test_itr)
{
	wr(E1000_ITR, 1000);                      /* 256 us */
	wr(E1000_IMS, E1000_ICR_TXDW);
	wr(E1000_ICS, E1000_ICR_TXDW);
	ck_assert_int_eq(irq, 1);                 /* first one at once */
	rd(E1000_ICR);
	ck_assert_int_eq(irq, 0);
	now += 100000;                            /* 100 us later */
	wr(E1000_ICS, E1000_ICR_TXDW);
	ck_assert_int_eq(irq, 0);                 /* throttled */
	ck_assert(timer_armed);
	ck_assert_uint_eq(timer_delay, 256000 - 100000);
	now += timer_delay;
	e1000_core_timer(&core);
	ck_assert_int_eq(irq, 1);
	/* ITR = 0: no throttling */
	rd(E1000_ICR);
	wr(E1000_ITR, 0);
	timer_armed = false;
	wr(E1000_ICS, E1000_ICR_TXDW);
	ck_assert_int_eq(irq, 1);
	ck_assert(!timer_armed);
}
END_TEST

/* ---- TX ------------------------------------------------------------------- */

static void tx_setup(unsigned ndesc)
{
	wr(E1000_TDBAL, TXRING);
	wr(E1000_TDBAH, 0);
	wr(E1000_TDLEN, ndesc * 16);
	wr(E1000_TDH, 0);
	wr(E1000_TDT, 0);
	wr(E1000_TCTL, E1000_TCTL_EN | E1000_TCTL_PSP);
	wr(E1000_IMS, E1000_ICR_TXDW);
}

static void put_desc(unsigned i, uint64_t addr, uint32_t lower, uint32_t upper)
{
	struct e1000_tx_desc d = { addr, lower, upper };
	memcpy(ram + TXRING + 16 * i, &d, 16);
}

static uint8_t tx_status(unsigned i) { return ram[TXRING + 16 * i + 12]; }

/* Ethernet + IPv4 + TCP frame at ram+at, payload bytes of pattern. */
static size_t make_tcp(uint32_t at, size_t payload)
{
	uint8_t *f = ram + at;
	memset(f, 0, 54);
	memcpy(f, "\x52\x55\x0a\x00\x02\x02", 6);
	memcpy(f + 6, mac, 6);
	f[12] = 0x08;
	uint8_t *ip = f + 14;
	ip[0] = 0x45; ip[8] = 64; ip[9] = 6;
	ip[4] = 0x10; ip[5] = 0x00;
	memcpy(ip + 12, "\x0a\x00\x02\x0f\x0a\x00\x02\x02", 8);
	uint8_t *tcp = ip + 20;
	tcp[1] = 80; tcp[3] = 81;
	tcp[4] = 0xa0; tcp[7] = 0x01;             /* seq 0xa0000001 */
	tcp[12] = 0x50;
	tcp[13] = 0x18 | 0x01;                    /* PSH ACK FIN */
	for (size_t i = 0; i < payload; i++)
		f[54 + i] = (uint8_t)(i % 251);
	return 54 + payload;
}

static uint32_t pseudo(const uint8_t *ip, size_t l4len, bool with_len)
{
	uint8_t ph[12];
	memcpy(ph, ip + 12, 8);
	ph[8] = 0; ph[9] = ip[9];
	ph[10] = with_len ? (uint8_t)(l4len >> 8) : 0;
	ph[11] = with_len ? (uint8_t)l4len : 0;
	return kl_net_csum_add(0, ph, 12);
}

static bool csums_ok(const uint8_t *f, size_t len)
{
	const uint8_t *ip = f + 14;
	if (kl_net_csum_fold(kl_net_csum_add(0, ip, 20)) != 0)
		return false;
	size_t tot = be16(ip + 2);
	if (14 + tot > len)
		return false;
	return kl_net_csum_fold(kl_net_csum_add(pseudo(ip, tot - 20, true), ip + 20, tot - 20)) == 0;
}

START_TEST(test_tx_legacy)
{
	tx_setup(8);
	size_t len = make_tcp(TXBUF, 100);
	uint8_t *ip = ram + TXBUF + 14;
	ip[2] = 0; ip[3] = 140;
	/* IP checksum by hand, TCP by the legacy IC insert with pseudo-header */
	uint16_t ipc = kl_net_csum_fold(kl_net_csum_add(0, ip, 20));
	ip[10] = (uint8_t)(ipc >> 8); ip[11] = (uint8_t)ipc;
	uint16_t ps = (uint16_t)~kl_net_csum_fold(pseudo(ip, 120, true));
	ip[36] = (uint8_t)(ps >> 8); ip[37] = (uint8_t)ps;
	/* two descriptors: 30 bytes, then the rest; CSS=34, CSO=50 */
	put_desc(0, TXBUF, 30 | 50u << 16 | (uint32_t)E1000_TXD_CMD_IC << 24, 34u << 8);
	put_desc(1, TXBUF + 30, (uint32_t)(len - 30) | (uint32_t)(E1000_TXD_CMD_EOP | E1000_TXD_CMD_RS) << 24, 0);
	wr(E1000_TDT, 2);
	ck_assert_uint_eq(sent->len, 1);
	GByteArray *b = g_ptr_array_index(sent, 0);
	ck_assert_uint_eq(b->len, len);
	ck_assert(csums_ok(b->data, b->len));
	ck_assert_uint_eq(rd(E1000_TDH), 2);
	ck_assert(tx_status(1) & E1000_TXD_STAT_DD);
	ck_assert(!(tx_status(0) & E1000_TXD_STAT_DD));  /* no RS */
	ck_assert_int_eq(irq, 1);
	ck_assert(rd(E1000_ICR) & (E1000_ICR_TXDW | E1000_ICR_TXQE));
	/* short frame padded to 60 with PSP */
	memset(ram + TXBUF, 0xee, 20);
	put_desc(2, TXBUF, 20 | (uint32_t)(E1000_TXD_CMD_EOP | E1000_TXD_CMD_RS) << 24, 0);
	wr(E1000_TDT, 3);
	ck_assert_uint_eq(sent->len, 2);
	ck_assert_uint_eq(((GByteArray *)g_ptr_array_index(sent, 1))->len, 60);
	/* statistics, read-to-clear */
	ck_assert_uint_eq(rd(E1000_GPTC), 2);
	ck_assert_uint_eq(rd(E1000_GPTC), 0);
	ck_assert_uint_eq(rd(E1000_TPT), 2);
	ck_assert_uint_eq(rd(E1000_GOTCL), len + 4 + 64);
	ck_assert_uint_eq(rd(E1000_GOTCH), 0);
	ck_assert_uint_eq(rd(E1000_GOTCL), 0);
	ck_assert_uint_eq(rd(E1000_PTC64), 1);
	ck_assert_uint_eq(rd(E1000_PTC255), 1);
}
END_TEST

static void put_ctx(unsigned i, uint8_t ipcss, uint8_t ipcso, uint16_t ipcse, uint8_t tucss,
		    uint8_t tucso, uint16_t tucse, uint32_t paylen, uint8_t tucmd, uint8_t hdrlen,
		    uint16_t mss)
{
	uint64_t a = ipcss | (uint64_t)ipcso << 8 | (uint64_t)ipcse << 16 | (uint64_t)tucss << 32 |
		     (uint64_t)tucso << 40 | (uint64_t)tucse << 48;
	put_desc(i, a, (paylen & 0xfffff) | (uint32_t)(tucmd | E1000_TXD_CMD_DEXT) << 24,
		 (uint32_t)hdrlen << 8 | (uint32_t)mss << 16);
}

static void put_data(unsigned i, uint64_t addr, uint32_t len, uint8_t dcmd, uint8_t popts)
{
	put_desc(i, addr, len | 1u << 20 | (uint32_t)(dcmd | E1000_TXD_CMD_DEXT) << 24,
		 (uint32_t)popts << 8);
}

START_TEST(test_tx_ctx_csum)
{
	tx_setup(8);
	size_t len = make_tcp(TXBUF, 200);
	uint8_t *ip = ram + TXBUF + 14;
	ip[2] = 0; ip[3] = 240;
	/* driver puts the pseudo-header sum (with length) in the TCP field */
	uint16_t ps = (uint16_t)~kl_net_csum_fold(pseudo(ip, 220, true));
	ip[36] = (uint8_t)(ps >> 8); ip[37] = (uint8_t)ps;
	put_ctx(0, 14, 24, 33, 34, 50, 0, 0, E1000_TUCMD_IP | E1000_TUCMD_TCP, 0, 0);
	put_data(1, TXBUF, 100, 0, E1000_TXD_POPTS_IXSM | E1000_TXD_POPTS_TXSM);
	put_data(2, TXBUF + 100, (uint32_t)len - 100, E1000_TXD_CMD_EOP | E1000_TXD_CMD_RS, 0);
	wr(E1000_TDT, 3);
	ck_assert_uint_eq(sent->len, 1);
	GByteArray *b = g_ptr_array_index(sent, 0);
	ck_assert_uint_eq(b->len, len);
	ck_assert(csums_ok(b->data, b->len));
	ck_assert(tx_status(2) & E1000_TXD_STAT_DD);
	ck_assert_uint_eq(rd(E1000_TDH), 3);
}
END_TEST

START_TEST(test_tx_tso)
{
	tx_setup(16);
	size_t payload = 4000, mss = 1460;
	size_t len = make_tcp(TXBUF, payload);
	uint8_t *ip = ram + TXBUF + 14;
	/* Linux e1000 TSO: tot_len 0, ip csum 0, TCP field = pseudo sum w/o length */
	uint16_t ps = (uint16_t)~kl_net_csum_fold(pseudo(ip, 0, false));
	ip[36] = (uint8_t)(ps >> 8); ip[37] = (uint8_t)ps;
	ip[33] |= 0x80;  /* TCP flags: CWR */
	put_ctx(0, 14, 24, 33, 34, 50, 0, (uint32_t)payload,
		E1000_TUCMD_IP | E1000_TUCMD_TCP | E1000_TXD_CMD_TSE, 54, (uint16_t)mss);
	/* header in its own descriptor, payload split oddly over three */
	put_data(1, TXBUF, 54, E1000_TXD_CMD_TSE, E1000_TXD_POPTS_IXSM | E1000_TXD_POPTS_TXSM);
	put_data(2, TXBUF + 54, 1000, E1000_TXD_CMD_TSE, 0);
	put_data(3, TXBUF + 1054, 2500, E1000_TXD_CMD_TSE, 0);
	put_data(4, TXBUF + 3554, (uint32_t)len - 3554,
		 E1000_TXD_CMD_TSE | E1000_TXD_CMD_EOP | E1000_TXD_CMD_RS, 0);
	wr(E1000_TDT, 5);
	ck_assert_uint_eq(sent->len, 3);
	size_t off = 0;
	for (unsigned i = 0; i < 3; i++) {
		GByteArray *b = g_ptr_array_index(sent, i);
		size_t pl = i < 2 ? mss : payload - 2 * mss;
		ck_assert_uint_eq(b->len, 54 + pl);
		ck_assert_msg(csums_ok(b->data, b->len), "segment %u checksums", i);
		ck_assert_uint_eq(be16(b->data + 16), 40 + pl);           /* IP total length */
		ck_assert_uint_eq(be16(b->data + 18), 0x1000 + i);        /* IP id */
		ck_assert_uint_eq(be32(b->data + 38), 0xa0000001u + off); /* TCP seq */
		uint8_t fl = b->data[47];
		ck_assert_uint_eq(!!(fl & 0x09), i == 2);                 /* PSH/FIN last only */
		ck_assert_uint_eq(!!(fl & 0x80), i == 0);                 /* CWR first only */
		ck_assert_mem_eq(b->data + 54, ram + TXBUF + 54 + off, pl);
		off += pl;
	}
	ck_assert_uint_eq(rd(E1000_TSCTC), 1);
	ck_assert(tx_status(4) & E1000_TXD_STAT_DD);
	/* the next plain packet after a TSO one is not segmented */
	size_t l2 = make_tcp(TXBUF, 10);
	put_data(5, TXBUF, (uint32_t)l2, E1000_TXD_CMD_EOP | E1000_TXD_CMD_RS, 0);
	wr(E1000_TDT, 6);
	ck_assert_uint_eq(sent->len, 4);
	ck_assert_uint_eq(((GByteArray *)g_ptr_array_index(sent, 3))->len, l2);
}
END_TEST

START_TEST(test_tx_hostile)
{
	/* TDLEN not a multiple of 128: low bits dropped */
	wr(E1000_TDLEN, 100);
	ck_assert_uint_eq(rd(E1000_TDLEN), 0);
	wr(E1000_TCTL, E1000_TCTL_EN);
	wr(E1000_TDT, 5);                          /* ring of size 0: nothing */
	ck_assert_uint_eq(sent->len, 0);
	wr(E1000_TDLEN, 200);
	ck_assert_uint_eq(rd(E1000_TDLEN), 128);
	/* TDT beyond the ring (8 descriptors) */
	tx_setup(8);
	size_t len = make_tcp(TXBUF, 10);
	for (unsigned i = 0; i < 8; i++)
		put_desc(i, TXBUF, (uint32_t)len | (uint32_t)(E1000_TXD_CMD_EOP | E1000_TXD_CMD_RS) << 24, 0);
	wr(E1000_TDT, 200);
	ck_assert_uint_eq(sent->len, 0);
	ck_assert_uint_eq(rd(E1000_TDH), 0);
	/* TDH beyond the ring */
	wr(E1000_TDH, 9);
	wr(E1000_TDT, 1);
	ck_assert_uint_eq(sent->len, 0);
	/* buffer outside RAM: packet dropped, descriptor still completed */
	wr(E1000_TDH, 0);
	put_desc(0, 0xfffff000ull, 100 | (uint32_t)(E1000_TXD_CMD_EOP | E1000_TXD_CMD_RS) << 24, 0);
	put_desc(1, RAM_SIZE - 10, 100 | (uint32_t)(E1000_TXD_CMD_EOP | E1000_TXD_CMD_RS) << 24, 0);
	wr(E1000_TDT, 2);
	ck_assert_uint_eq(sent->len, 0);
	ck_assert_uint_eq(rd(E1000_TDH), 2);
	ck_assert(tx_status(0) & E1000_TXD_STAT_DD);
	/* a good packet afterwards still goes out */
	wr(E1000_TDT, 3);
	ck_assert_uint_eq(sent->len, 1);
	/* descriptor ring outside RAM: stalls, no crash */
	wr(E1000_TCTL, 0);
	wr(E1000_TDBAL, 0xfff00000);
	wr(E1000_TDBAH, 0x7fff);
	wr(E1000_TDLEN, 0x80000);
	wr(E1000_TDH, 0);
	wr(E1000_TCTL, E1000_TCTL_EN);
	wr(E1000_TDT, 100);
	ck_assert_uint_eq(rd(E1000_TDH), 0);
	ck_assert_uint_eq(sent->len, 1);
	/* ring that wraps past the end of RAM */
	wr(E1000_TDBAL, RAM_SIZE - 64);
	wr(E1000_TDBAH, 0);
	wr(E1000_TDLEN, 128);
	wr(E1000_TDH, 0);
	wr(E1000_TDT, 7);
	ck_assert_uint_eq(rd(E1000_TDH), 4);      /* 4 descriptors inside RAM, then stall */
	/* a never-ending packet (no EOP) over the full ring is bounded */
	tx_setup(256);
	for (unsigned i = 0; i < 256; i++)
		put_desc(i, TXBUF, 4000, 0);
	wr(E1000_TDT, 255);
	ck_assert_uint_eq(rd(E1000_TDH), 255);
	wr(E1000_TDH, 0);
	wr(E1000_TDT, 0);
	/* TSO with an impossible context (hdr_len 0) is dropped */
	e1000_tx_reset(&core);
	put_ctx(0, 14, 24, 33, 34, 50, 0, 100, E1000_TUCMD_IP | E1000_TUCMD_TCP | E1000_TXD_CMD_TSE, 0, 0);
	put_data(1, TXBUF, (uint32_t)len, E1000_TXD_CMD_TSE | E1000_TXD_CMD_EOP | E1000_TXD_CMD_RS, 3);
	wr(E1000_TDT, 2);
	ck_assert_uint_eq(rd(E1000_TSCTFC), 1);
	ck_assert_uint_eq(sent->len, 1);
}
END_TEST

/* ---- RX ---------------------------------------------------------------------- */

static void rx_setup(unsigned ndesc, uint32_t rctl)
{
	for (unsigned i = 0; i < ndesc; i++) {
		struct e1000_rx_desc d = { .addr = RXBUF + 2048 * i };
		memcpy(ram + RXRING + 16 * i, &d, 16);
	}
	wr(E1000_RDBAL, RXRING);
	wr(E1000_RDBAH, 0);
	wr(E1000_RDLEN, ndesc * 16);
	wr(E1000_RDH, 0);
	wr(E1000_RDT, ndesc - 1);
	wr(E1000_RCTL, rctl | E1000_RCTL_EN);
	wr(E1000_IMS, E1000_ICR_RXT0);
}

static struct e1000_rx_desc rx_desc(unsigned i)
{
	struct e1000_rx_desc d;
	memcpy(&d, ram + RXRING + 16 * i, 16);
	return d;
}

static ssize_t rx(const uint8_t *dst, size_t len)
{
	uint8_t f[2000];
	memset(f, 0x3c, sizeof(f));
	memcpy(f, dst, 6);
	memcpy(f + 6, "\x52\x55\x0a\x00\x02\x02", 6);
	f[12] = 0x08; f[13] = 0x06;
	struct iovec iov = { f, len };
	return e1000_receive(&core, &iov, 1);
}

START_TEST(test_rx_basic)
{
	rx_setup(8, E1000_RCTL_BAM);                /* RDH 0, RDT 7: 7 free */
	ck_assert(e1000_can_receive(&core));
	ck_assert_int_eq(rx(mac, 42), 42);
	struct e1000_rx_desc d = rx_desc(0);
	ck_assert_uint_eq(d.length, 64);             /* padded to 60 + FCS */
	ck_assert(d.status & E1000_RXD_STAT_DD);
	ck_assert(d.status & E1000_RXD_STAT_EOP);
	ck_assert_mem_eq(ram + RXBUF, mac, 6);
	ck_assert_uint_eq(ram[RXBUF + 41], 0x3c);
	ck_assert_uint_eq(ram[RXBUF + 42], 0);       /* padding */
	uint32_t crc = e1000_crc32(ram + RXBUF, 60);
	ck_assert_uint_eq(ram[RXBUF + 60] | ram[RXBUF + 61] << 8 | ram[RXBUF + 62] << 16 |
			  (uint32_t)ram[RXBUF + 63] << 24, crc);
	ck_assert_uint_eq(rd(E1000_RDH), 1);
	ck_assert_int_eq(irq, 1);
	ck_assert(rd(E1000_ICR) & E1000_ICR_RXT0);
	/* SECRC: no FCS */
	wr(E1000_RCTL, E1000_RCTL_EN | E1000_RCTL_SECRC | E1000_RCTL_BAM);
	ck_assert_int_eq(rx(mac, 100), 100);
	ck_assert_uint_eq(rx_desc(1).length, 100);
	ck_assert_uint_eq(rd(E1000_GPRC), 2);
	ck_assert_uint_eq(rd(E1000_TPR), 2);
	ck_assert_uint_eq(rd(E1000_GORCL), 164);
	ck_assert_uint_eq(rd(E1000_GORCH), 0);
	ck_assert_uint_eq(rd(E1000_GPRC), 0);
	/* one free descriptor left, then flow control (0) */
	wr(E1000_RDT, 3);
	ck_assert_int_eq(rx(mac, 60), 60);
	ck_assert_uint_eq(rd(E1000_RDH), 3);
	ck_assert(!e1000_can_receive(&core));
	ck_assert_int_eq(rx(mac, 60), 0);
	wr(E1000_RDT, 4);                           /* guest returns a buffer */
	ck_assert(e1000_can_receive(&core));
	ck_assert_int_eq(rx(mac, 60), 60);
	/* a frame bigger than a 256-byte buffer spans descriptors */
	wr(E1000_RCTL, E1000_RCTL_EN | E1000_RCTL_SECRC | (3u << E1000_RCTL_BSIZE_SHIFT));
	wr(E1000_RDT, 5);                           /* RDH 4: only one free */
	ck_assert_int_eq(rx(mac, 600), 0);          /* needs three: wait */
	wr(E1000_RDT, 7);                           /* 4, 5, 6 free */
	ck_assert_int_eq(rx(mac, 600), 600);
	ck_assert_uint_eq(rx_desc(4).length, 256);
	ck_assert(!(rx_desc(4).status & E1000_RXD_STAT_EOP));
	ck_assert_uint_eq(rx_desc(6).length, 600 - 512);
	ck_assert(rx_desc(6).status & E1000_RXD_STAT_EOP);
	ck_assert_mem_eq(ram + RXBUF + 2048 * 4, mac, 6);
	ck_assert_uint_eq(ram[RXBUF + 2048 * 5], 0x3c);
	ck_assert_uint_eq(ram[RXBUF + 2048 * 6 + 87], 0x3c);
	ck_assert_uint_eq(rd(E1000_RDH), 7);
	wr(E1000_RDT, 6);                           /* wrap: 7, 0..5 free */
	ck_assert_int_eq(rx(mac, 60), 60);
	ck_assert_uint_eq(rd(E1000_RDH), 0);
	/* too long without LPE */
	wr(E1000_RCTL, E1000_RCTL_EN);
	ck_assert_int_eq(rx(mac, 1600), 1600);
	ck_assert_uint_eq(rd(E1000_ROC), 1);
	/* receiver disabled */
	wr(E1000_RCTL, 0);
	ck_assert(!e1000_can_receive(&core));
	ck_assert_int_eq(rx(mac, 60), -1);
}
END_TEST

START_TEST(test_rx_filter)
{
	static const uint8_t bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	static const uint8_t other[6] = { 0x52, 0x54, 0x00, 0x99, 0x99, 0x99 };
	static const uint8_t mcast[6] = { 0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb };
	rx_setup(16, 0);
	ck_assert(e1000_rx_filter(&core, mac));
	ck_assert(!e1000_rx_filter(&core, other));
	ck_assert(!e1000_rx_filter(&core, bcast));
	ck_assert(!e1000_rx_filter(&core, mcast));
	/* filtered frames are consumed without using a descriptor */
	ck_assert_int_eq(rx(other, 60), 60);
	ck_assert_uint_eq(rd(E1000_RDH), 0);
	wr(E1000_RCTL, E1000_RCTL_EN | E1000_RCTL_BAM);
	ck_assert(e1000_rx_filter(&core, bcast));
	/* second receive address */
	wr(E1000_RA + 8, 0x99005452);
	wr(E1000_RA + 12, 0x9999);
	ck_assert(!e1000_rx_filter(&core, other));  /* AV clear */
	wr(E1000_RA + 12, 0x9999 | E1000_RAH_AV);
	ck_assert(e1000_rx_filter(&core, other));
	/* multicast table, MO = 0: hash = addr[47:36] */
	unsigned h = (mcast[4] >> 4 | mcast[5] << 4) & 0xfff;
	wr(E1000_MTA + 4 * (h >> 5), 1u << (h & 31));
	ck_assert(e1000_rx_filter(&core, mcast));
	/* MO = 3 uses bits 43:32: a different bit */
	wr(E1000_RCTL, E1000_RCTL_EN | (3u << E1000_RCTL_MO_SHIFT));
	ck_assert(!e1000_rx_filter(&core, mcast));
	/* promiscuous */
	wr(E1000_RCTL, E1000_RCTL_EN | E1000_RCTL_UPE);
	ck_assert(e1000_rx_filter(&core, (const uint8_t *)"\x02\x00\x00\x00\x00\x01"));
	ck_assert(!e1000_rx_filter(&core, (const uint8_t *)"\x03\x00\x00\x00\x00\x01"));
	wr(E1000_RCTL, E1000_RCTL_EN | E1000_RCTL_MPE);
	ck_assert(e1000_rx_filter(&core, (const uint8_t *)"\x03\x00\x00\x00\x00\x01"));
	ck_assert(e1000_rx_filter(&core, bcast));
	ck_assert_int_eq(rx(mcast, 60), 60);
	ck_assert_uint_eq(rd(E1000_MPRC), 1);
}
END_TEST

START_TEST(test_rx_hostile)
{
	wr(E1000_RDLEN, 0x7f);
	ck_assert_uint_eq(rd(E1000_RDLEN), 0);
	wr(E1000_RCTL, E1000_RCTL_EN | E1000_RCTL_BAM);
	ck_assert(!e1000_can_receive(&core));
	ck_assert_int_eq(rx(mac, 60), 0);
	/* RDH/RDT beyond the ring */
	rx_setup(8, E1000_RCTL_BAM);
	wr(E1000_RDT, 50);
	ck_assert(!e1000_can_receive(&core));
	wr(E1000_RDT, 3);
	wr(E1000_RDH, 9);
	ck_assert(!e1000_can_receive(&core));
	/* buffer outside RAM: error bit, no crash */
	wr(E1000_RDH, 0);
	struct e1000_rx_desc d = { .addr = 0xffffffffffff0000ull };
	memcpy(ram + RXRING, &d, 16);
	ck_assert_int_eq(rx(mac, 60), 60);
	ck_assert(rx_desc(0).errors & E1000_RXD_ERR_RXE);
	ck_assert_uint_eq(rd(E1000_RDH), 1);
	/* ring outside RAM: dropped */
	wr(E1000_RDBAL, 0xfffff000);
	wr(E1000_RDBAH, 0xffffffff);
	ck_assert_int_eq(rx(mac, 60), -1);
	/* a frame needing more descriptors than the ring has */
	rx_setup(8, E1000_RCTL_LPE | (3u << E1000_RCTL_BSIZE_SHIFT));
	uint8_t big[9000];
	memset(big, 0, sizeof(big));
	memcpy(big, mac, 6);
	struct iovec iov = { big, sizeof(big) };
	ck_assert_int_eq(e1000_receive(&core, &iov, 1), (ssize_t)sizeof(big));
	ck_assert_uint_eq(rd(E1000_RDH), 0);
}
END_TEST

START_TEST(test_io_window)
{
	e1000_io_write(&core, 0, E1000_IMS, 4);
	e1000_io_write(&core, 4, E1000_ICR_RXT0, 4);
	ck_assert_uint_eq(rd(E1000_IMS), E1000_ICR_RXT0);
	e1000_io_write(&core, 0, E1000_STATUS, 4);
	ck_assert_uint_eq(e1000_io_read(&core, 4, 4), rd(E1000_STATUS));
	ck_assert_uint_eq(e1000_io_read(&core, 0, 4), E1000_STATUS);
	/* out-of-range offsets are harmless */
	e1000_io_write(&core, 0, 0xffffffff, 4);
	e1000_io_write(&core, 4, 0, 4);
	ck_assert_uint_eq(e1000_mmio_read(&core, E1000_MMIO_SIZE + 4, 4), ~0ull);
	e1000_mmio_write(&core, E1000_MMIO_SIZE, 1, 4);
	/* narrow reads */
	ck_assert_uint_eq(e1000_mmio_read(&core, E1000_RA + 1, 1), 0x54);
	ck_assert_uint_eq(e1000_mmio_read(&core, E1000_RA + 2, 2), 0x1200);
}
END_TEST

static Suite *e1000_suite(void)
{
	Suite *s = suite_create("e1000");
	TCase *tc = tcase_create("core");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, test_eeprom);
	tcase_add_test(tc, test_phy_mdic);
	tcase_add_test(tc, test_interrupts);
	tcase_add_test(tc, test_itr);
	tcase_add_test(tc, test_tx_legacy);
	tcase_add_test(tc, test_tx_ctx_csum);
	tcase_add_test(tc, test_tx_tso);
	tcase_add_test(tc, test_tx_hostile);
	tcase_add_test(tc, test_rx_basic);
	tcase_add_test(tc, test_rx_filter);
	tcase_add_test(tc, test_rx_hostile);
	tcase_add_test(tc, test_io_window);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return kl_check_run(e1000_suite());
}
