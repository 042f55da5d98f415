/* VM state of the e1000 core (kvmlite/vmstate.h); the PCI glue (e1000.c)
 * puts it in the section "e1000/0000:00:SS.0".
 *
 * Version 1: all 32768 registers (statistics, MTA, RA, VFTA included), PHY
 * registers, EEPROM words, MAC, the microwire EEPROM shift state, link,
 * interrupt level, the ITR timer (armed flag and the remaining delay, so the
 * destination's clock need not match), IOADDR, and the transmit state: the
 * last context descriptor and any partially assembled packet (its bytes,
 * TSO header and segment counters).  Nothing is in flight outside the
 * rings: a frame is sent synchronously from e1000_tx_process, and RX writes
 * the ring while it receives.
 *
 * Load refuses values the core would trust: ring lengths that are not
 * 128-byte multiples up to 1 MiB, ring bases not 16-byte aligned, a head or
 * tail past the ring, ITR past 16 bits, IOADDR outside BAR0, an EEPROM
 * output bit out of range, a partial packet longer than the assembly buffer
 * or than its TSO segment, TSO with an invalid context. */
#include <glib.h>
#include <string.h>

#include "kvmlite/vmstate.h"
#include "e1000_int.h"

#define ITR_MAX_NS (0xffffULL * 256)

static void put_ctx(struct kl_vms_out *o, const struct e1000_tx_ctx *x)
{
	kl_vms_put_u8(o, x->ipcss);
	kl_vms_put_u8(o, x->ipcso);
	kl_vms_put_u16(o, x->ipcse);
	kl_vms_put_u8(o, x->tucss);
	kl_vms_put_u8(o, x->tucso);
	kl_vms_put_u16(o, x->tucse);
	kl_vms_put_u32(o, x->paylen);
	kl_vms_put_u8(o, x->tucmd);
	kl_vms_put_u8(o, x->hdr_len);
	kl_vms_put_u16(o, x->mss);
}

static void get_ctx(struct kl_vms_in *in, struct e1000_tx_ctx *x)
{
	x->ipcss = kl_vms_get_u8(in);
	x->ipcso = kl_vms_get_u8(in);
	x->ipcse = kl_vms_get_u16(in);
	x->tucss = kl_vms_get_u8(in);
	x->tucso = kl_vms_get_u8(in);
	x->tucse = kl_vms_get_u16(in);
	x->paylen = kl_vms_get_u32(in);
	x->tucmd = kl_vms_get_u8(in);
	x->hdr_len = kl_vms_get_u8(in);
	x->mss = kl_vms_get_u16(in);
}

void e1000_core_save(const struct e1000_core *c, struct kl_vms_out *o)
{
	for (unsigned i = 0; i < E1000_NREGS; i++)
		kl_vms_put_u32(o, c->regs[i]);
	for (unsigned i = 0; i < 32; i++)
		kl_vms_put_u16(o, c->phy[i]);
	for (unsigned i = 0; i < 64; i++)
		kl_vms_put_u16(o, c->eeprom[i]);
	kl_vms_put_bytes(o, c->macaddr, 6);
	kl_vms_put_u32(o, c->eecd_old);
	kl_vms_put_u32(o, c->ee_in);
	kl_vms_put_u32(o, c->ee_bits_in);
	kl_vms_put_u32(o, (uint32_t)c->ee_bit_out);
	kl_vms_put_u8(o, c->ee_reading);
	kl_vms_put_u8(o, c->link_up);
	kl_vms_put_u8(o, c->irq_level ? 1 : 0);
	kl_vms_put_u8(o, c->timer_armed);
	uint64_t now = c->cb && c->cb->now_ns ? c->cb->now_ns(c->opaque) : 0;
	uint64_t delay = c->irq_ok_ns > now ? c->irq_ok_ns - now : 0;
	kl_vms_put_u64(o, delay > ITR_MAX_NS ? ITR_MAX_NS : delay);
	kl_vms_put_u32(o, c->ioaddr);
	const struct e1000_tx_state *t = &c->tx;
	put_ctx(o, &t->ctx);
	kl_vms_put_u32(o, (uint32_t)t->len);
	kl_vms_put_bytes(o, t->buf, t->len);
	kl_vms_put_u8(o, t->bad);
	kl_vms_put_u8(o, t->in_pkt);
	kl_vms_put_u8(o, t->tse);
	kl_vms_put_u8(o, t->popts);
	kl_vms_put_u8(o, t->legacy_ic);
	kl_vms_put_u8(o, t->css);
	kl_vms_put_u8(o, t->cso);
	kl_vms_put_u32(o, t->seg_sent);
	kl_vms_put_u16(o, t->seg_count);
	kl_vms_put_bytes(o, t->hdr, sizeof(t->hdr));
	kl_vms_put_u8(o, t->hdr_saved);
}

static bool get_bool(struct kl_vms_in *in, const char *what)
{
	uint8_t v = kl_vms_get_u8(in);
	if (v > 1)
		kl_vms_fail(in, "%s %u is not 0 or 1", what, v);
	return v == 1;
}

static void check_ring(struct kl_vms_in *in, const uint32_t *regs, const char *name,
		       uint32_t bal, uint32_t len, uint32_t head, uint32_t tail)
{
	uint32_t l = regs[len >> 2], h = regs[head >> 2], t = regs[tail >> 2];
	if (regs[bal >> 2] & 0xf)
		kl_vms_fail(in, "%sBAL %#x is not 16-byte aligned", name, regs[bal >> 2]);
	else if (l & ~0x000fff80u)
		kl_vms_fail(in, "%sLEN %#x is not a multiple of 128 up to 1 MiB", name, l);
	else if (l && h >= l / 16)
		kl_vms_fail(in, "%sH %u is past the ring (%u descriptors)", name, h, l / 16);
	else if (l && t >= l / 16)
		kl_vms_fail(in, "%sT %u is past the ring (%u descriptors)", name, t, l / 16);
	else if (h > 0xffff || t > 0xffff)
		kl_vms_fail(in, "%sH/%sT %u/%u exceed 16 bits", name, name, h, t);
}

int e1000_core_load(struct e1000_core *c, struct kl_vms_in *in)
{
	uint32_t *regs = g_new(uint32_t, E1000_NREGS);
	struct e1000_tx_state *t = g_new0(struct e1000_tx_state, 1);
	uint16_t phy[32], eeprom[64];
	uint8_t mac[6];
	int ret = -1;
	for (unsigned i = 0; i < E1000_NREGS; i++)
		regs[i] = kl_vms_get_u32(in);
	for (unsigned i = 0; i < 32; i++)
		phy[i] = kl_vms_get_u16(in);
	for (unsigned i = 0; i < 64; i++)
		eeprom[i] = kl_vms_get_u16(in);
	kl_vms_get_bytes(in, mac, 6);
	uint32_t eecd_old = kl_vms_get_u32(in);
	uint32_t ee_in = kl_vms_get_u32(in);
	uint32_t ee_bits_in = kl_vms_get_u32(in); /* only ever compared with 9 */
	int32_t ee_bit_out = (int32_t)kl_vms_get_u32(in);
	bool ee_reading = get_bool(in, "EEPROM reading");
	bool link_up = get_bool(in, "link");
	bool irq = get_bool(in, "interrupt level");
	bool timer = get_bool(in, "timer armed");
	uint64_t delay = kl_vms_get_u64_max(in, ITR_MAX_NS, "ITR delay");
	uint32_t ioaddr = kl_vms_get_u32(in);
	get_ctx(in, &t->ctx);
	uint32_t len = kl_vms_get_u32_max(in, E1000_TX_BUF_MAX, "partial TX packet length");
	t->buf = kl_vms_failed(in) ? NULL : g_malloc(len ? len : 1);
	if (t->buf)
		kl_vms_get_bytes(in, t->buf, len);
	t->len = len;
	t->bad = get_bool(in, "TX bad");
	t->in_pkt = get_bool(in, "TX in packet");
	t->tse = get_bool(in, "TX TSO");
	t->popts = kl_vms_get_u8(in);
	t->legacy_ic = get_bool(in, "TX legacy IC");
	t->css = kl_vms_get_u8(in);
	t->cso = kl_vms_get_u8(in);
	t->seg_sent = kl_vms_get_u32(in);
	t->seg_count = kl_vms_get_u16(in);
	kl_vms_get_bytes(in, t->hdr, sizeof(t->hdr));
	t->hdr_saved = get_bool(in, "TX header saved");
	if (kl_vms_failed(in))
		goto out;
	if (ee_bit_out < -1 || ee_bit_out > 64 * 16) {
		kl_vms_fail(in, "EEPROM output bit %d is out of range", ee_bit_out);
		goto out;
	}
	if (ioaddr & ~(uint32_t)(E1000_MMIO_SIZE - 4)) {
		kl_vms_fail(in, "IOADDR %#x is outside BAR0", ioaddr);
		goto out;
	}
	if (regs[E1000_ITR >> 2] > 0xffff) {
		kl_vms_fail(in, "ITR %#x exceeds 16 bits", regs[E1000_ITR >> 2]);
		goto out;
	}
	check_ring(in, regs, "RD", E1000_RDBAL, E1000_RDLEN, E1000_RDH, E1000_RDT);
	check_ring(in, regs, "TD", E1000_TDBAL, E1000_TDLEN, E1000_TDH, E1000_TDT);
	if (kl_vms_failed(in))
		goto out;
	if (t->tse) {
		size_t hl = t->ctx.hdr_len;
		if (!e1000_tso_ctx_valid(&t->ctx)) {
			kl_vms_fail(in, "TX TSO packet with an invalid context (header %u, MSS %u)",
				    t->ctx.hdr_len, t->ctx.mss);
			goto out;
		}
		if (t->hdr_saved ? (len < hl || len > hl + t->ctx.mss) : len > hl) {
			kl_vms_fail(in, "partial TX packet length %u does not fit the TSO segment "
				    "(header %zu, MSS %u)", len, hl, t->ctx.mss);
			goto out;
		}
	}
	/* commit */
	memcpy(c->regs, regs, sizeof(c->regs));
	memcpy(c->phy, phy, sizeof(phy));
	memcpy(c->eeprom, eeprom, sizeof(eeprom));
	memcpy(c->macaddr, mac, 6);
	c->eecd_old = eecd_old;
	c->ee_in = ee_in;
	c->ee_bits_in = ee_bits_in;
	c->ee_bit_out = ee_bit_out;
	c->ee_reading = ee_reading;
	c->link_up = link_up;
	c->irq_level = irq;
	c->timer_armed = timer;
	uint64_t now = c->cb && c->cb->now_ns ? c->cb->now_ns(c->opaque) : 0;
	c->irq_ok_ns = now + delay;
	c->ioaddr = ioaddr;
	uint8_t *buf = c->tx.buf;
	memcpy(buf, t->buf, len);
	c->tx = *t;
	c->tx.buf = buf;
	ret = 0;
out:
	g_free(t->buf);
	g_free(t);
	g_free(regs);
	return ret;
}

void e1000_core_post_load(struct e1000_core *c)
{
	const struct e1000_core_cb *cb = c->cb;
	if (cb->set_irq)
		cb->set_irq(c->opaque, c->irq_level);
	if (c->timer_armed && cb->arm_timer) {
		uint64_t now = cb->now_ns ? cb->now_ns(c->opaque) : 0;
		cb->arm_timer(c->opaque, c->irq_ok_ns > now ? c->irq_ok_ns - now : 0);
	}
	if (E1000_REG(c, E1000_TDH) != E1000_REG(c, E1000_TDT)) {
		if (cb->tx_kick)
			cb->tx_kick(c->opaque);
		else
			e1000_tx_process(c);
	}
	if (cb->rx_ready)
		cb->rx_ready(c->opaque);
}
