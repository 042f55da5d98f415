/* e1000 core: registers, EEPROM (microwire + EERD), PHY (MDIC), interrupt
 * logic with ITR throttling, RX ring and address filtering, statistics. */
#include <string.h>

#include <glib.h>

#include "kvmlite/net.h"
#include "e1000_int.h"

/* ---- PHY (Marvell 88E1011-like, as on 82540EM boards) ----------------- */
#define PHY_CTRL 0x00
#define PHY_STATUS 0x01
#define PHY_ID1 0x02
#define PHY_ID2 0x03
#define PHY_AUTONEG_ADV 0x04
#define PHY_LP_ABILITY 0x05
#define PHY_AUTONEG_EXP 0x06
#define PHY_1000T_CTRL 0x09
#define PHY_1000T_STATUS 0x0a
#define PHY_EXT_STATUS 0x0f
#define M88_PHY_SPEC_CTRL 0x10
#define M88_PHY_SPEC_STATUS 0x11
#define M88_EXT_PHY_SPEC_CTRL 0x14
#define M88_EXT_PHY_SPEC_STATUS 0x1b

#define PHY_CTRL_RESET 0x8000
#define PHY_CTRL_RESTART_AN 0x0200
#define PHY_STATUS_LINK 0x0004
#define PHY_STATUS_AN_COMPLETE 0x0020
#define M88_STATUS_LINK 0x0400

/* Writable bits per PHY register (0: read-only). */
static const uint16_t phy_wmask[32] = {
	[PHY_CTRL] = 0xffff, [PHY_AUTONEG_ADV] = 0xffff, [PHY_1000T_CTRL] = 0xffff,
	[M88_PHY_SPEC_CTRL] = 0xffff, [M88_EXT_PHY_SPEC_CTRL] = 0xffff,
	[0x07] = 0xffff, [0x1a] = 0xffff, [0x1d] = 0xffff, [0x1e] = 0xffff,
};

static void phy_reset(struct e1000_core *c)
{
	memset(c->phy, 0, sizeof(c->phy));
	c->phy[PHY_CTRL] = 0x1140;          /* AN enable, full duplex, 1000 */
	c->phy[PHY_STATUS] = 0x7949;        /* capabilities, AN able, ext caps */
	c->phy[PHY_ID1] = 0x0141;
	c->phy[PHY_ID2] = 0x0c20;
	c->phy[PHY_AUTONEG_ADV] = 0x0de1;
	c->phy[PHY_LP_ABILITY] = 0x45e1;
	c->phy[PHY_AUTONEG_EXP] = 0x0001;
	c->phy[0x07] = 0x2001;
	c->phy[PHY_1000T_CTRL] = 0x0e00;
	c->phy[PHY_1000T_STATUS] = 0x3c00;
	c->phy[PHY_EXT_STATUS] = 0x3000;
	c->phy[M88_PHY_SPEC_CTRL] = 0x0360;
	c->phy[M88_PHY_SPEC_STATUS] = 0xac00; /* 1000 Mb/s, FD, resolved */
	c->phy[M88_EXT_PHY_SPEC_CTRL] = 0x0d60;
	c->phy[M88_EXT_PHY_SPEC_STATUS] = 0x8000;
}

/* Reflect the cable state in PHY and MAC status. */
static void link_update(struct e1000_core *c, bool notify)
{
	uint32_t old = E1000_REG(c, E1000_STATUS);
	if (c->link_up) {
		c->phy[PHY_STATUS] |= PHY_STATUS_LINK | PHY_STATUS_AN_COMPLETE;
		c->phy[M88_PHY_SPEC_STATUS] |= M88_STATUS_LINK;
		E1000_REG(c, E1000_STATUS) |= E1000_STATUS_LU;
	} else {
		c->phy[PHY_STATUS] &= (uint16_t)~(PHY_STATUS_LINK | PHY_STATUS_AN_COMPLETE);
		c->phy[M88_PHY_SPEC_STATUS] &= (uint16_t)~M88_STATUS_LINK;
		E1000_REG(c, E1000_STATUS) &= ~E1000_STATUS_LU;
	}
	if (notify && old != E1000_REG(c, E1000_STATUS))
		e1000_set_ics(c, E1000_ICR_LSC);
}

void e1000_set_link(struct e1000_core *c, bool up)
{
	c->link_up = up;
	link_update(c, true);
}

static void phy_write(struct e1000_core *c, unsigned reg, uint16_t val)
{
	c->phy[reg] = (uint16_t)((c->phy[reg] & ~phy_wmask[reg]) | (val & phy_wmask[reg]));
	if (reg == PHY_CTRL && (val & (PHY_CTRL_RESET | PHY_CTRL_RESTART_AN))) {
		if (val & PHY_CTRL_RESET) {
			uint16_t ctrl = c->phy[PHY_CTRL] & (uint16_t)~PHY_CTRL_RESET;
			phy_reset(c);
			c->phy[PHY_CTRL] = ctrl;
		}
		/* auto-negotiation completes at once */
		c->phy[PHY_CTRL] &= (uint16_t)~(PHY_CTRL_RESET | PHY_CTRL_RESTART_AN);
		link_update(c, true);
	}
}

static void mdic_write(struct e1000_core *c, uint32_t val)
{
	unsigned phyaddr = (val >> E1000_MDIC_PHY_SHIFT) & 0x1f;
	unsigned reg = (val >> E1000_MDIC_REG_SHIFT) & 0x1f;
	uint32_t r = val & ~(E1000_MDIC_READY | E1000_MDIC_ERROR);
	if (phyaddr != 1) {
		r |= E1000_MDIC_ERROR;
	} else if (val & E1000_MDIC_OP_READ) {
		r = (r & ~E1000_MDIC_DATA_MASK) | c->phy[reg];
	} else if (val & E1000_MDIC_OP_WRITE) {
		phy_write(c, reg, (uint16_t)val);
	}
	E1000_REG(c, E1000_MDIC) = r | E1000_MDIC_READY;
	if (val & E1000_MDIC_INT_EN)
		e1000_set_ics(c, E1000_ICR_MDAC);
}

/* ---- EEPROM --------------------------------------------------------------- */

uint16_t e1000_eeprom_checksum_word(const uint16_t *ee)
{
	uint16_t sum = 0;
	for (int i = 0; i < 0x3f; i++)
		sum = (uint16_t)(sum + ee[i]);
	return (uint16_t)(0xbaba - sum);
}

static void eeprom_build(struct e1000_core *c)
{
	uint16_t *ee = c->eeprom;
	for (int i = 0; i < 64; i++)
		ee[i] = 0xffff;
	for (int i = 0; i < 3; i++)
		ee[i] = (uint16_t)(c->macaddr[2 * i] | c->macaddr[2 * i + 1] << 8);
	ee[0x03] = 0x0000;     /* compatibility */
	ee[0x05] = 0x0000;     /* image version */
	ee[0x06] = 0x0000;
	ee[0x07] = 0x0000;
	ee[0x08] = 0x3000;     /* PBA number */
	ee[0x09] = 0x1000;
	ee[0x0a] = 0x6403;     /* init control 1: load subsystem ids, ... */
	ee[0x0b] = 0x001e;     /* subsystem id */
	ee[0x0c] = 0x8086;     /* subsystem vendor */
	ee[0x0d] = 0x100e;     /* device id */
	ee[0x0e] = 0x8086;     /* vendor id */
	ee[0x0f] = 0x3040;     /* init control 2 (pause capabilities) */
	ee[0x3f] = e1000_eeprom_checksum_word(ee);
}

/* Microwire bit-banging as done by the Linux e1000 driver on 82540:
 * CS high, clock in start bit + READ opcode (1 1 0) + 6 address bits on DI
 * (sampled on SK rising edges), then the word's 16 bits appear on DO, MSB
 * first, one per clock. */
static void eecd_write(struct e1000_core *c, uint32_t val)
{
	uint32_t old = c->eecd_old;
	c->eecd_old = val & (E1000_EECD_SK | E1000_EECD_CS | E1000_EECD_DI |
			     E1000_EECD_FWE | E1000_EECD_REQ);
	if (!(val & E1000_EECD_CS))
		return;
	if (!(old & E1000_EECD_CS)) {      /* select: start a new command */
		c->ee_in = 0;
		c->ee_bits_in = 0;
		c->ee_reading = false;
		c->ee_bit_out = 0;
	}
	if (!((val ^ old) & E1000_EECD_SK))
		return;
	if (!(val & E1000_EECD_SK)) {       /* falling edge: next output bit */
		if (c->ee_reading)
			c->ee_bit_out++;
		return;
	}
	if (c->ee_reading)
		return;
	c->ee_in = (c->ee_in << 1) | !!(val & E1000_EECD_DI);
	if (++c->ee_bits_in == 9) {
		/* start(1) opcode(2) address(6) */
		if (((c->ee_in >> 6) & 7) == 6) {
			c->ee_reading = true;
			c->ee_bit_out = (int)((c->ee_in & 0x3f) * 16) - 1;
		}
	}
}

static uint32_t eecd_read(struct e1000_core *c)
{
	uint32_t r = c->eecd_old | E1000_EECD_PRES;
	if (c->eecd_old & E1000_EECD_REQ)
		r |= E1000_EECD_GNT;
	if (c->ee_reading) {
		if (c->ee_bit_out >= 0 && c->ee_bit_out < 64 * 16) {
			uint16_t w = c->eeprom[c->ee_bit_out >> 4];
			if ((w >> (15 - (c->ee_bit_out & 15))) & 1)
				r |= E1000_EECD_DO;
		}
	} else {
		r |= E1000_EECD_DO;   /* ready */
	}
	return r;
}

static void eerd_write(struct e1000_core *c, uint32_t val)
{
	if (!(val & E1000_EERD_START)) {
		E1000_REG(c, E1000_EERD) = 0;
		return;
	}
	unsigned addr = (val >> E1000_EERD_ADDR_SHIFT) & 0xff;
	uint32_t r = (val & 0xff00) | E1000_EERD_DONE;
	if (addr < 64)
		r |= (uint32_t)c->eeprom[addr] << E1000_EERD_DATA_SHIFT;
	E1000_REG(c, E1000_EERD) = r;
}

/* ---- interrupts ------------------------------------------------------------ */

static void irq_update(struct e1000_core *c)
{
	uint32_t pending = E1000_REG(c, E1000_ICR) & E1000_REG(c, E1000_IMS);
	if (!pending) {
		if (c->irq_level) {
			c->irq_level = 0;
			c->cb->set_irq(c->opaque, 0);
		}
		return;
	}
	if (c->irq_level)
		return;
	uint32_t itr = E1000_REG(c, E1000_ITR) & 0xffff;
	uint64_t now = c->cb->now_ns ? c->cb->now_ns(c->opaque) : 0;
	if (itr && c->cb->arm_timer && now < c->irq_ok_ns) {
		if (!c->timer_armed) {
			c->timer_armed = true;
			c->cb->arm_timer(c->opaque, c->irq_ok_ns - now);
		}
		return;
	}
	c->irq_ok_ns = now + (uint64_t)itr * 256;
	c->irq_level = 1;
	c->cb->set_irq(c->opaque, 1);
}

void e1000_core_timer(struct e1000_core *c)
{
	c->timer_armed = false;
	irq_update(c);
}

void e1000_set_ics(struct e1000_core *c, uint32_t causes)
{
	E1000_REG(c, E1000_ICR) |= causes & E1000_ICR_MASK;
	irq_update(c);
}

/* ---- statistics ----------------------------------------------------------- */

void e1000_stat_inc(struct e1000_core *c, uint32_t off, uint32_t n)
{
	uint32_t *r = &E1000_REG(c, off);
	*r = *r + n < *r ? 0xffffffffu : *r + n;   /* saturate */
}

void e1000_stat_add64(struct e1000_core *c, uint32_t lo_off, uint64_t n)
{
	uint64_t v = (uint64_t)E1000_REG(c, lo_off + 4) << 32 | E1000_REG(c, lo_off);
	v = v + n < v ? UINT64_MAX : v + n;
	E1000_REG(c, lo_off) = (uint32_t)v;
	E1000_REG(c, lo_off + 4) = (uint32_t)(v >> 32);
}

/* size histogram: base = PRC64 or PTC64 (64, 65-127, ..., 1023-1522) */
void e1000_stat_size(struct e1000_core *c, uint32_t base, size_t len)
{
	static const size_t lim[] = { 64, 127, 255, 511, 1023 };
	unsigned i = 0;
	while (i < 5 && len > lim[i])
		i++;
	e1000_stat_inc(c, base + 4 * i, 1);
}

/* ---- reset ----------------------------------------------------------------- */

void e1000_core_reset(struct e1000_core *c)
{
	memset(c->regs, 0, sizeof(c->regs));
	phy_reset(c);
	E1000_REG(c, E1000_CTRL) = E1000_CTRL_FD | E1000_CTRL_ASDE | E1000_CTRL_SLU | 0x200 /* SPD 1000 */;
	E1000_REG(c, E1000_STATUS) = E1000_STATUS_FD | E1000_STATUS_SPEED_1000 |
				     E1000_STATUS_ASDV_1000 | 0x80080100;
	E1000_REG(c, E1000_EECD) = E1000_EECD_PRES;
	E1000_REG(c, E1000_MDIC) = E1000_MDIC_READY;
	E1000_REG(c, E1000_PBA) = 0x00100030;
	E1000_REG(c, E1000_LEDCTL) = 0x07068302;
	E1000_REG(c, E1000_TIPG) = 0x0060200a;
	E1000_REG(c, E1000_TXCW) = 0x000001a0;
	E1000_REG(c, E1000_VET) = 0x8100;
	/* receive address 0 from the EEPROM */
	E1000_REG(c, E1000_RA) = (uint32_t)c->macaddr[0] | c->macaddr[1] << 8 |
				 c->macaddr[2] << 16 | (uint32_t)c->macaddr[3] << 24;
	E1000_REG(c, E1000_RA + 4) = (uint32_t)c->macaddr[4] | c->macaddr[5] << 8 | E1000_RAH_AV;
	c->eecd_old = 0;
	c->ee_reading = false;
	c->ee_bits_in = 0;
	c->ioaddr = 0;
	c->irq_ok_ns = 0;
	if (c->irq_level) {
		c->irq_level = 0;
		c->cb->set_irq(c->opaque, 0);
	}
	e1000_tx_reset(c);
	link_update(c, false);
}

void e1000_core_init(struct e1000_core *c, const struct kl_guest_mem *mem, const uint8_t mac[6],
		     const struct e1000_core_cb *cb, void *opaque)
{
	memset(c, 0, sizeof(*c));
	c->mem = mem;
	c->cb = cb;
	c->opaque = opaque;
	memcpy(c->macaddr, mac, 6);
	c->link_up = true;
	c->tx.buf = g_malloc(E1000_TX_BUF_MAX);
	c->rx_frame = g_malloc(16384 + 64);
	eeprom_build(c);
	e1000_core_reset(c);
}

void e1000_core_cleanup(struct e1000_core *c)
{
	g_free(c->tx.buf);
	g_free(c->rx_frame);
	c->tx.buf = NULL;
	c->rx_frame = NULL;
}

/* ---- register access ------------------------------------------------------- */

uint32_t e1000_reg_read(struct e1000_core *c, uint32_t off)
{
	off &= ~3u;
	if (off >= E1000_MMIO_SIZE)
		return 0;
	switch (off) {
	case E1000_EECD:
		return eecd_read(c);
	case E1000_ICR: {
		uint32_t v = E1000_REG(c, E1000_ICR);
		if (v & E1000_REG(c, E1000_IMS))
			v |= E1000_ICR_INT_ASSERTED;
		E1000_REG(c, E1000_ICR) = 0;     /* read-to-clear */
		irq_update(c);
		return v;
	}
	case E1000_ICS:
	case E1000_IMC:
		return 0;                         /* write-only */
	case E1000_RDH: case E1000_RDT: case E1000_TDH: case E1000_TDT:
		return E1000_REG(c, off) & 0xffff;
	}
	if (off >= E1000_STATS_START && off < E1000_STATS_END) {
		uint32_t v = E1000_REG(c, off);
		/* 64-bit counters clear when the high half is read */
		switch (off) {
		case E1000_GORCL: case E1000_GOTCL: case E1000_TORL: case E1000_TOTL:
			return v;
		case E1000_GORCH: case E1000_GOTCH: case E1000_TORH: case E1000_TOTH:
			E1000_REG(c, off - 4) = 0;
			break;
		}
		E1000_REG(c, off) = 0;
		return v;
	}
	return E1000_REG(c, off);
}

static void tx_start(struct e1000_core *c)
{
	if (c->cb->tx_kick)
		c->cb->tx_kick(c->opaque);
	else
		e1000_tx_process(c);
}

static uint32_t ring_len_mask(uint32_t v)
{
	return v & 0x000fff80;   /* 128-byte multiple, at most 1 MiB */
}

void e1000_reg_write(struct e1000_core *c, uint32_t off, uint32_t val)
{
	off &= ~3u;
	if (off >= E1000_MMIO_SIZE)
		return;
	switch (off) {
	case E1000_CTRL:
		if (val & E1000_CTRL_RST) {
			e1000_core_reset(c);
			return;
		}
		E1000_REG(c, off) = val & ~(E1000_CTRL_RST | E1000_CTRL_PHY_RST | E1000_CTRL_LRST);
		if (val & E1000_CTRL_PHY_RST)
			phy_reset(c);
		if (val & E1000_CTRL_SLU)
			link_update(c, true);
		return;
	case E1000_STATUS:
		return;                            /* read-only */
	case E1000_EECD:
		eecd_write(c, val);
		return;
	case E1000_EERD:
		eerd_write(c, val);
		return;
	case E1000_MDIC:
		mdic_write(c, val);
		return;
	case E1000_ICR:                            /* write 1 to clear */
		E1000_REG(c, E1000_ICR) &= ~val;
		irq_update(c);
		return;
	case E1000_ICS:
		e1000_set_ics(c, val);
		return;
	case E1000_IMS:
		E1000_REG(c, E1000_IMS) |= val & E1000_ICR_MASK;
		irq_update(c);
		return;
	case E1000_IMC:
		E1000_REG(c, E1000_IMS) &= ~val;
		irq_update(c);
		return;
	case E1000_ITR:
		E1000_REG(c, off) = val & 0xffff;
		return;
	case E1000_RCTL: {
		uint32_t old = E1000_REG(c, off);
		E1000_REG(c, off) = val;
		if ((val & E1000_RCTL_EN) && !(old & E1000_RCTL_EN) && c->cb->rx_ready)
			c->cb->rx_ready(c->opaque);
		return;
	}
	case E1000_RDLEN:
	case E1000_TDLEN:
		E1000_REG(c, off) = ring_len_mask(val);
		return;
	case E1000_RDBAL:
	case E1000_TDBAL:
		E1000_REG(c, off) = val & ~0xfu;   /* 16-byte aligned */
		return;
	case E1000_RDH:
	case E1000_TDH:
		E1000_REG(c, off) = val & 0xffff;
		return;
	case E1000_RDT:
		E1000_REG(c, off) = val & 0xffff;
		if (c->cb->rx_ready)
			c->cb->rx_ready(c->opaque);
		return;
	case E1000_TDT:
		E1000_REG(c, off) = val & 0xffff;
		tx_start(c);
		return;
	case E1000_TCTL: {
		uint32_t old = E1000_REG(c, off);
		E1000_REG(c, off) = val;
		if ((val & E1000_TCTL_EN) && !(old & E1000_TCTL_EN))
			tx_start(c);
		return;
	}
	}
	if (off >= E1000_STATS_START && off < E1000_STATS_END)
		return;                            /* read-only counters */
	E1000_REG(c, off) = val;
}

uint64_t e1000_mmio_read(void *opaque, uint64_t off, unsigned size)
{
	struct e1000_core *c = opaque;
	if (off >= E1000_MMIO_SIZE)
		return ~0ull;
	if (size == 8)
		return e1000_reg_read(c, (uint32_t)off) |
		       (uint64_t)e1000_reg_read(c, (uint32_t)off + 4) << 32;
	uint32_t v = e1000_reg_read(c, (uint32_t)off);
	if (size == 4)
		return v;
	v >>= (off & 3) * 8;
	return size == 1 ? (v & 0xff) : (v & 0xffff);
}

void e1000_mmio_write(void *opaque, uint64_t off, uint64_t val, unsigned size)
{
	struct e1000_core *c = opaque;
	if (off >= E1000_MMIO_SIZE)
		return;
	if (size == 8) {
		e1000_reg_write(c, (uint32_t)off, (uint32_t)val);
		e1000_reg_write(c, (uint32_t)off + 4, (uint32_t)(val >> 32));
		return;
	}
	if (size == 4 && !(off & 3)) {
		e1000_reg_write(c, (uint32_t)off, (uint32_t)val);
		return;
	}
	/* narrow write: merge into plain storage registers only */
	uint32_t aligned = (uint32_t)off & ~3u;
	unsigned shift = (off & 3) * 8;
	uint32_t mask = (size == 1 ? 0xffu : 0xffffu) << shift;
	uint32_t cur = E1000_REG(c, aligned);
	switch (aligned) {
	case E1000_ICR: case E1000_EECD: case E1000_STATUS:
		return;   /* side effects need full-width access */
	}
	e1000_reg_write(c, aligned, (cur & ~mask) | (((uint32_t)val << shift) & mask));
}

uint64_t e1000_io_read(void *opaque, uint64_t off, unsigned size)
{
	struct e1000_core *c = opaque;
	(void)size;
	if (off == 0)
		return c->ioaddr;
	if (off == 4)
		return e1000_reg_read(c, c->ioaddr & (E1000_MMIO_SIZE - 1));
	return ~0u;
}

void e1000_io_write(void *opaque, uint64_t off, uint64_t val, unsigned size)
{
	struct e1000_core *c = opaque;
	(void)size;
	if (off == 0)
		c->ioaddr = (uint32_t)val & (E1000_MMIO_SIZE - 4);
	else if (off == 4)
		e1000_reg_write(c, c->ioaddr, (uint32_t)val);
}

/* ---- receive ----------------------------------------------------------------- */

uint32_t e1000_crc32(const uint8_t *p, size_t len)
{
	static uint32_t table[256];
	static bool init;
	if (!init) {
		for (uint32_t i = 0; i < 256; i++) {
			uint32_t v = i;
			for (int k = 0; k < 8; k++)
				v = v & 1 ? 0xedb88320u ^ (v >> 1) : v >> 1;
			table[i] = v;
		}
		init = true;
	}
	uint32_t crc = 0xffffffffu;
	while (len--)
		crc = table[(crc ^ *p++) & 0xff] ^ (crc >> 8);
	return ~crc;
}

bool e1000_rx_filter(struct e1000_core *c, const uint8_t *dst)
{
	uint32_t rctl = E1000_REG(c, E1000_RCTL);
	static const uint8_t bcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
	if (!memcmp(dst, bcast, 6))
		return rctl & (E1000_RCTL_BAM | E1000_RCTL_MPE);
	if (dst[0] & 1) {
		if (rctl & E1000_RCTL_MPE)
			return true;
	} else if (rctl & E1000_RCTL_UPE) {
		return true;
	}
	/* exact match against the 16 receive addresses */
	for (int i = 0; i < 16; i++) {
		uint32_t rah = E1000_REG(c, E1000_RA + 8 * i + 4);
		if (!(rah & E1000_RAH_AV))
			continue;
		uint32_t ral = E1000_REG(c, E1000_RA + 8 * i);
		uint8_t a[6] = { (uint8_t)ral, (uint8_t)(ral >> 8), (uint8_t)(ral >> 16),
				 (uint8_t)(ral >> 24), (uint8_t)rah, (uint8_t)(rah >> 8) };
		if (!memcmp(a, dst, 6))
			return true;
	}
	if (!(dst[0] & 1))
		return false;
	/* multicast table: 12 bits of the address chosen by RCTL.MO */
	unsigned mo = (rctl >> E1000_RCTL_MO_SHIFT) & 3;
	static const unsigned shift[4] = { 4, 3, 2, 0 };
	unsigned hash = ((unsigned)dst[4] >> shift[mo] | (unsigned)dst[5] << (8 - shift[mo])) & 0xfff;
	return (E1000_REG(c, E1000_MTA + 4 * (hash >> 5)) >> (hash & 31)) & 1;
}

static size_t rx_buf_size(uint32_t rctl)
{
	unsigned bs = (rctl >> E1000_RCTL_BSIZE_SHIFT) & 3;
	if (rctl & E1000_RCTL_BSEX) {
		static const size_t ext[4] = { 2048, 16384, 8192, 4096 };
		return ext[bs];
	}
	static const size_t std[4] = { 2048, 1024, 512, 256 };
	return std[bs];
}

static uint32_t rx_count(struct e1000_core *c)
{
	return E1000_REG(c, E1000_RDLEN) / sizeof(struct e1000_rx_desc);
}

/* Free descriptors owned by hardware: RDH..RDT-1. */
static uint32_t rx_avail(struct e1000_core *c)
{
	uint32_t n = rx_count(c);
	uint32_t h = E1000_REG(c, E1000_RDH), t = E1000_REG(c, E1000_RDT);
	if (!n || h >= n || t >= n)
		return 0;
	return t >= h ? t - h : n - h + t;
}

bool e1000_can_receive(struct e1000_core *c)
{
	if (!(E1000_REG(c, E1000_RCTL) & E1000_RCTL_EN) || !c->link_up)
		return false;
	if (c->cb->dma_ok && !c->cb->dma_ok(c->opaque))
		return false;
	return rx_avail(c) > 0;
}

static void rx_checksum(struct e1000_core *c, const uint8_t *f, size_t len, struct e1000_rx_desc *d)
{
	/* The frame arrives from the host with valid checksums: report them
	 * as verified when the guest enabled RX checksum offload. */
	uint32_t rxcsum = E1000_REG(c, E1000_RXCSUM);
	if (!(rxcsum & (E1000_RXCSUM_IPOFL | E1000_RXCSUM_TUOFL)) || len < 34) {
		d->status |= E1000_RXD_STAT_IXSM;
		return;
	}
	uint16_t et = (uint16_t)(f[12] << 8 | f[13]);
	if (et != 0x0800 || (f[14] >> 4) != 4) {
		d->status |= E1000_RXD_STAT_IXSM;
		return;
	}
	if (rxcsum & E1000_RXCSUM_IPOFL)
		d->status |= E1000_RXD_STAT_IPCS;
	uint8_t proto = f[23];
	uint16_t frag = (uint16_t)(f[20] << 8 | f[21]);
	if ((rxcsum & E1000_RXCSUM_TUOFL) && !(frag & 0x3fff) && (proto == 6 || proto == 17))
		d->status |= E1000_RXD_STAT_TCPCS;
}

ssize_t e1000_receive(struct e1000_core *c, const struct iovec *iov, int iovcnt)
{
	uint32_t rctl = E1000_REG(c, E1000_RCTL);
	size_t len = kl_iov_size(iov, (unsigned)iovcnt);
	uint8_t hdr[14];
	if (!(rctl & E1000_RCTL_EN) || !c->link_up)
		return -1;
	if (len < 14)
		return (ssize_t)len;                 /* runt: discard */
	size_t max = (rctl & E1000_RCTL_LPE) ? 16384 : 1522;
	if (len > max) {
		e1000_stat_inc(c, E1000_ROC, 1);
		return (ssize_t)len;
	}
	kl_iov_to_buf(iov, (unsigned)iovcnt, 0, hdr, sizeof(hdr));
	if (!e1000_rx_filter(c, hdr))
		return (ssize_t)len;                 /* not for us */
	if (c->cb->dma_ok && !c->cb->dma_ok(c->opaque))
		return 0;

	/* Flatten (and pad to the 60-byte minimum) so descriptors can be
	 * filled from one buffer; append the FCS unless SECRC strips it. */
	size_t flen = len < 60 ? 60 : len;
	bool fcs = !(rctl & E1000_RCTL_SECRC);
	size_t total = flen + (fcs ? 4 : 0);
	uint8_t *f = c->rx_frame;
	kl_iov_to_buf(iov, (unsigned)iovcnt, 0, f, len);
	memset(f + len, 0, flen - len);
	if (fcs) {
		uint32_t crc = e1000_crc32(f, flen);
		f[flen] = (uint8_t)crc;
		f[flen + 1] = (uint8_t)(crc >> 8);
		f[flen + 2] = (uint8_t)(crc >> 16);
		f[flen + 3] = (uint8_t)(crc >> 24);
	}
	size_t bsize = rx_buf_size(rctl);
	uint32_t need = (uint32_t)((total + bsize - 1) / bsize);
	uint32_t avail = rx_avail(c);
	if (avail < need) {
		if (rx_count(c) && need > rx_count(c)) {            /* can never fit */
			e1000_stat_inc(c, E1000_ROC, 1);
			return (ssize_t)len;
		}
		e1000_stat_inc(c, E1000_RNBC, 1);
		e1000_set_ics(c, E1000_ICR_RXO);
		return 0;
	}
	uint32_t n = rx_count(c);
	uint64_t base = (uint64_t)E1000_REG(c, E1000_RDBAH) << 32 | E1000_REG(c, E1000_RDBAL);
	uint32_t h = E1000_REG(c, E1000_RDH);
	size_t done = 0;
	ssize_t ret = (ssize_t)len;
	for (uint32_t i = 0; i < need; i++) {
		struct e1000_rx_desc d;
		uint64_t da = base + (uint64_t)h * sizeof(d);
		if (kl_mem_read(c->mem, da, &d, sizeof(d)) < 0) {
			ret = -1;                        /* ring outside RAM: drop */
			break;
		}
		size_t chunk = total - done < bsize ? total - done : bsize;
		d.status = 0;
		d.errors = 0;
		d.csum = 0;
		d.special = 0;
		if (kl_mem_write(c->mem, d.addr, f + done, chunk) < 0) {
			d.errors = E1000_RXD_ERR_RXE;     /* buffer outside RAM */
			d.length = 0;
		} else {
			d.length = (uint16_t)chunk;
		}
		done += chunk;
		d.status = E1000_RXD_STAT_DD;
		if (done == total) {
			d.status |= E1000_RXD_STAT_EOP;
			rx_checksum(c, f, flen, &d);
		}
		kl_mem_write(c->mem, da, &d, sizeof(d));
		h = h + 1 == n ? 0 : h + 1;
	}
	E1000_REG(c, E1000_RDH) = h;
	if (ret > 0) {
		e1000_stat_inc(c, E1000_GPRC, 1);
		e1000_stat_inc(c, E1000_TPR, 1);
		e1000_stat_add64(c, E1000_GORCL, total);
		e1000_stat_add64(c, E1000_TORL, total);
		e1000_stat_size(c, E1000_PRC64, total);
		if (!memcmp(f, "\xff\xff\xff\xff\xff\xff", 6))
			e1000_stat_inc(c, E1000_BPRC, 1);
		else if (f[0] & 1)
			e1000_stat_inc(c, E1000_MPRC, 1);
	}
	uint32_t causes = E1000_ICR_RXT0;
	uint32_t rdmts = (rctl >> E1000_RCTL_RDMTS_SHIFT) & 3;
	if (rdmts < 3 && rx_avail(c) <= (n >> (rdmts + 1)))
		causes |= E1000_ICR_RXDMT0;
	e1000_set_ics(c, causes);
	return ret;
}
