/* e1000 core VM state (src/e1000/e1000_state.c): a core with rings set up,
 * registers written and a half-assembled TX packet is saved and loaded into
 * a fresh core, which then finishes the packet; truncated and out-of-range
 * states are refused naming the field, leaving the core unchanged. */
#include <check.h>

#include "../kl_check.h"
#include <glib.h>
#include <stdlib.h>
#include <string.h>

#include "kvmlite/mem.h"
#include "kvmlite/vmstate.h"
#include "../../../src/e1000/e1000_int.h"

#define RAM_SIZE (1u << 20)
#define TXRING 0x1000
#define RXRING 0x2000
#define TXBUF 0x10000

static struct kl_guest_mem mem;
static uint8_t *ram;
static int irq;
static uint64_t now;
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
static void t_arm(void *o, uint64_t d) { (void)o; (void)d; }
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
}

static void teardown(void)
{
	g_ptr_array_free(sent, TRUE);
	free(ram);
}

static void wr(struct e1000_core *c, uint32_t off, uint32_t v) { e1000_mmio_write(c, off, v, 4); }

static void tx_desc(unsigned i, uint64_t addr, uint16_t len, uint8_t cmd)
{
	struct e1000_tx_desc d = { addr, len | (uint32_t)cmd << 24, 0 };
	memcpy(ram + TXRING + 16 * i, &d, 16);
}

/* rings, filters, interrupt mask, a PHY write, and the first 100 bytes of a
 * 150-byte frame (no EOP yet) */
static void drive(struct e1000_core *c)
{
	wr(c, E1000_RDBAL, RXRING);
	wr(c, E1000_RDLEN, 256);
	wr(c, E1000_RDT, 7);
	wr(c, E1000_RCTL, E1000_RCTL_EN | E1000_RCTL_BAM);
	wr(c, E1000_IMS, E1000_ICR_TXDW | E1000_ICR_RXT0);
	wr(c, E1000_MTA + 4 * 3, 0x80);
	wr(c, E1000_MDIC, E1000_MDIC_OP_WRITE | 1u << E1000_MDIC_PHY_SHIFT | 4u << E1000_MDIC_REG_SHIFT | 0x1e1);
	wr(c, E1000_TDBAL, TXRING);
	wr(c, E1000_TDLEN, 128);
	wr(c, E1000_TCTL, E1000_TCTL_EN);
	for (unsigned i = 0; i < 150; i++)
		ram[TXBUF + i] = (uint8_t)(i * 3 + 1);
	tx_desc(0, TXBUF, 100, E1000_TXD_CMD_IFCS);
	wr(c, E1000_TDT, 1);
	ck_assert_uint_eq(c->tx.len, 100);
	ck_assert(c->tx.in_pkt);
	ck_assert_uint_eq(sent->len, 0);
}

static GByteArray *save(struct e1000_core *c)
{
	struct kl_vms_out o;
	kl_vms_out_init(&o);
	e1000_core_save(c, &o);
	return o.buf;
}

static int load(struct e1000_core *c, const uint8_t *p, size_t n, char **msg)
{
	struct kl_vms_in in;
	kl_vms_in_init(&in, p, n);
	int r = e1000_core_load(c, &in);
	if (r == 0 && kl_vms_remaining(&in))
		r = -1;
	if (r < 0)
		*msg = g_strdup(in.err ? in.err : "trailing bytes");
	kl_vms_in_free(&in);
	return r;
}

static void same_core(const struct e1000_core *a, const struct e1000_core *b)
{
	ck_assert_int_eq(memcmp(a->regs, b->regs, sizeof(a->regs)), 0);
	ck_assert_int_eq(memcmp(a->phy, b->phy, sizeof(a->phy)), 0);
	ck_assert_int_eq(memcmp(a->eeprom, b->eeprom, sizeof(a->eeprom)), 0);
	ck_assert_int_eq(memcmp(a->macaddr, b->macaddr, 6), 0);
	ck_assert_uint_eq(a->tx.len, b->tx.len);
	ck_assert_int_eq(memcmp(a->tx.buf, b->tx.buf, a->tx.len), 0);
	ck_assert_int_eq(a->tx.in_pkt, b->tx.in_pkt);
	ck_assert_int_eq(a->link_up, b->link_up);
	ck_assert_int_eq(a->irq_level, b->irq_level);
	ck_assert_uint_eq(a->ioaddr, b->ioaddr);
}

START_TEST(roundtrip)
{
	struct e1000_core a, b;
	e1000_core_init(&a, &mem, mac, &cbs, NULL);
	drive(&a);
	GByteArray *s = save(&a);
	uint8_t other[6] = { 0x52, 0x54, 0, 0, 0, 9 };
	e1000_core_init(&b, &mem, other, &cbs, NULL);
	char *msg = NULL;
	ck_assert_msg(load(&b, s->data, s->len, &msg) == 0, "%s", msg);
	e1000_core_post_load(&b);
	same_core(&a, &b);
	ck_assert_uint_eq(E1000_REG(&b, E1000_TDH), 1);
	ck_assert_uint_eq(E1000_REG(&b, E1000_RDT), 7);
	/* the loaded core finishes the frame the source had started */
	tx_desc(1, TXBUF + 100, 50, E1000_TXD_CMD_IFCS | E1000_TXD_CMD_EOP | E1000_TXD_CMD_RS);
	wr(&b, E1000_TDT, 2);
	ck_assert_uint_eq(sent->len, 1);
	GByteArray *f = g_ptr_array_index(sent, 0);
	ck_assert_uint_eq(f->len, 150);
	ck_assert_int_eq(memcmp(f->data, ram + TXBUF, 150), 0);
	ck_assert_uint_eq(E1000_REG(&b, E1000_TDH), 2);
	ck_assert_uint_eq(ram[TXRING + 16 + 12] & E1000_TXD_STAT_DD, E1000_TXD_STAT_DD);
	g_byte_array_free(s, TRUE);
	e1000_core_cleanup(&a);
	e1000_core_cleanup(&b);
}
END_TEST

/* offset of register off in the section */
#define REG(off) ((size_t)(off))
/* after regs (E1000_NREGS*4), phy 64, eeprom 128, mac 6, eecd 4, ee_in 4,
 * bits_in 4, bit_out 4, 4 flags, delay 8, ioaddr 4, ctx 16, len 4 */
#define AFTER_REGS ((size_t)E1000_NREGS * 4)
#define OFF_BIT_OUT (AFTER_REGS + 64 + 128 + 6 + 12)
#define OFF_IOADDR (OFF_BIT_OUT + 4 + 4 + 8)
#define OFF_TXLEN (OFF_IOADDR + 4 + 16)

static void refused(const GByteArray *s, size_t off, uint32_t v, const char *expect)
{
	struct e1000_core c;
	e1000_core_init(&c, &mem, mac, &cbs, NULL);
	struct e1000_core ref = c;
	uint8_t *p = g_memdup2(s->data, s->len);
	memcpy(p + off, &v, 4);
	char *msg = NULL;
	ck_assert_msg(load(&c, p, s->len, &msg) < 0, "+%zu = %#x accepted", off, v);
	ck_assert_msg(strstr(msg, expect), "'%s' does not name '%s'", msg, expect);
	ck_assert_int_eq(memcmp(ref.regs, c.regs, sizeof(c.regs)), 0);
	ck_assert_uint_eq(c.tx.len, 0);
	g_free(msg);
	g_free(p);
	e1000_core_cleanup(&c);
}

START_TEST(bad_values)
{
	struct e1000_core a;
	e1000_core_init(&a, &mem, mac, &cbs, NULL);
	drive(&a);
	GByteArray *s = save(&a);
	refused(s, REG(E1000_RDH), 16, "RDH 16 is past the ring (16 descriptors)");
	refused(s, REG(E1000_TDT), 9, "TDT 9 is past the ring");
	refused(s, REG(E1000_TDLEN), 100, "TDLEN 0x64 is not a multiple of 128");
	refused(s, REG(E1000_RDBAL), RXRING + 4, "RDBAL 0x2004 is not 16-byte aligned");
	refused(s, REG(E1000_ITR), 0x10000, "ITR 0x10000");
	refused(s, OFF_BIT_OUT, 5000, "EEPROM output bit 5000");
	refused(s, OFF_IOADDR, 0x20000, "IOADDR 0x20000 is outside BAR0");
	refused(s, OFF_TXLEN, 70000, "partial TX packet length");
	/* every strict prefix fails, the core keeps its reset state */
	struct e1000_core c;
	e1000_core_init(&c, &mem, mac, &cbs, NULL);
	uint32_t ctrl = E1000_REG(&c, E1000_CTRL);
	for (size_t n = 0; n < s->len; n += (n < AFTER_REGS - 8 ? 509 : 1)) {
		char *msg = NULL;
		ck_assert_msg(load(&c, s->data, n, &msg) < 0, "%zu bytes loaded", n);
		g_free(msg);
		ck_assert_uint_eq(E1000_REG(&c, E1000_CTRL), ctrl);
		ck_assert_uint_eq(E1000_REG(&c, E1000_TDLEN), 0);
		ck_assert_uint_eq(c.tx.len, 0);
	}
	e1000_core_cleanup(&c);
	g_byte_array_free(s, TRUE);
	e1000_core_cleanup(&a);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("e1000-state");
	TCase *tc = tcase_create("state");
	tcase_set_timeout(tc, 60);
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, roundtrip);
	tcase_add_test(tc, bad_values);
	suite_add_tcase(s, tc);
	return kl_check_run(s);
}
