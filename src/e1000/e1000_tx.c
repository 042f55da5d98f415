/* e1000 transmit: legacy descriptors (with the IC checksum insert), TCP/IP
 * context descriptors and data descriptors with IP/TCP/UDP checksum
 * offload (POPTS IXSM/TXSM) and TCP segmentation (TSE).
 *
 * Guest-controlled values are checked: TDLEN is a multiple of 128 (the
 * register drops the low bits), TDH/TDT must be below the ring size or
 * nothing is processed, one kick walks at most the ring size, descriptors
 * and buffers are reached only through kl_mem_read (a buffer outside RAM
 * drops that packet), header/MSS values from the context are bounded. */
#include <string.h>

#include <glib.h>

#include "kvmlite/net.h"
#include "e1000_int.h"


void e1000_tx_reset(struct e1000_core *c)
{
	uint8_t *buf = c->tx.buf;
	memset(&c->tx, 0, sizeof(c->tx));
	c->tx.buf = buf;
}

/* One's-complement sum of f[start .. end) (end = cse + 1, or the frame end
 * when cse is 0) plus add, stored complemented at f[cso]. */
static void csum_insert(uint8_t *f, size_t len, size_t css, size_t cso, size_t cse, uint32_t add)
{
	size_t end = cse ? cse + 1 : len;
	if (end > len)
		end = len;
	if (css >= end || cso + 2 > len)
		return;
	uint32_t s = kl_net_csum_add(add, f + css, end - css);
	kl_put_be16(f + cso, kl_net_csum_fold(s));
}

static void tx_send(struct e1000_core *c, uint8_t *f, size_t len, bool vle, uint16_t vlan)
{
	uint8_t *out = f;
	uint8_t *tmp = NULL;
	if (len < 14)
		return;
	if (vle && (E1000_REG(c, E1000_CTRL) & 0x40000000 /* VME */)) {
		tmp = g_malloc(len + 4);
		memcpy(tmp, f, 12);
		kl_put_be16(tmp + 12, (uint16_t)E1000_REG(c, E1000_VET));
		kl_put_be16(tmp + 14, vlan);
		memcpy(tmp + 16, f + 12, len - 12);
		out = tmp;
		len += 4;
	}
	/* short frames are padded by the MAC when TCTL.PSP is set */
	uint8_t pad[60];
	if (len < 60 && (E1000_REG(c, E1000_TCTL) & E1000_TCTL_PSP)) {
		memset(pad, 0, sizeof(pad));
		memcpy(pad, out, len);
		out = pad;
		len = 60;
	}
	e1000_stat_inc(c, E1000_TPT, 1);
	e1000_stat_add64(c, E1000_TOTL, len + 4);
	e1000_stat_size(c, E1000_PTC64, len + 4);
	if (c->cb->send(c->opaque, out, len)) {
		e1000_stat_inc(c, E1000_GPTC, 1);
		e1000_stat_add64(c, E1000_GOTCL, len + 4);
		if (!memcmp(out, "\xff\xff\xff\xff\xff\xff", 6))
			e1000_stat_inc(c, E1000_BPTC, 1);
		else if (out[0] & 1)
			e1000_stat_inc(c, E1000_MPTC, 1);
	}
	g_free(tmp);
}

/* Apply the context's checksum offloads to a complete frame. */
static void tx_offload(struct e1000_core *c, uint8_t *f, size_t len, uint32_t l4_add)
{
	struct e1000_tx_ctx *x = &c->tx.ctx;
	if (c->tx.popts & E1000_TXD_POPTS_IXSM) {
		if ((size_t)x->ipcso + 2 <= len) {
			kl_put_be16(f + x->ipcso, 0);
			csum_insert(f, len, x->ipcss, x->ipcso, x->ipcse, 0);
		}
	}
	if (c->tx.popts & E1000_TXD_POPTS_TXSM)
		csum_insert(f, len, x->tucss, x->tucso, x->tucse, l4_add);
}

bool e1000_tso_ctx_valid(const struct e1000_tx_ctx *x)
{
	return x->hdr_len >= 14 + 20 && x->mss > 0 &&
	       (size_t)x->hdr_len + x->mss <= E1000_TX_BUF_MAX &&
	       x->ipcss + 20u <= x->hdr_len && x->tucss + 8u <= x->hdr_len &&
	       x->tucso + 2u <= x->hdr_len && x->ipcso + 2u <= x->hdr_len;
}

/* Emit the segment in tx.buf (header + up to MSS payload). */
static void tso_segment(struct e1000_core *c, bool last, bool vle, uint16_t vlan)
{
	struct e1000_tx_state *t = &c->tx;
	struct e1000_tx_ctx *x = &t->ctx;
	uint8_t *f = t->buf;
	size_t len = t->len;
	size_t payload = len - x->hdr_len;
	if (x->tucmd & E1000_TUCMD_IP) {
		kl_put_be16(f + x->ipcss + 2, (uint16_t)(len - x->ipcss));
		kl_put_be16(f + x->ipcss + 4, (uint16_t)(kl_get_be16(t->hdr + x->ipcss + 4) + t->seg_count));
	} else {
		kl_put_be16(f + x->ipcss + 4, (uint16_t)(len - x->ipcss - 40));
	}
	uint32_t l4len = (uint32_t)(len - x->tucss);
	if (x->tucmd & E1000_TUCMD_TCP) {
		kl_put_be32(f + x->tucss + 4, kl_get_be32(t->hdr + x->tucss + 4) + t->seg_sent);
		if (!last)
			f[x->tucss + 13] &= (uint8_t)~0x09;  /* PSH, FIN on the last only */
		if (t->seg_count)
			f[x->tucss + 13] &= (uint8_t)~0x80;  /* CWR on the first only */
	} else {
		kl_put_be16(f + x->tucss + 4, (uint16_t)l4len);
	}
	/* The driver left the pseudo-header sum without length in the L4
	 * checksum field: add this segment's L4 length. */
	tx_offload(c, f, len, l4len);
	tx_send(c, f, len, vle, vlan);
	t->seg_sent += (uint32_t)payload;
	t->seg_count++;
	memcpy(t->buf, t->hdr, x->hdr_len);
	t->len = x->hdr_len;
}

/* Append descriptor data to the packet being assembled. */
static void tx_append(struct e1000_core *c, uint64_t addr, size_t len, bool vle, uint16_t vlan)
{
	struct e1000_tx_state *t = &c->tx;
	if (t->bad)
		return;
	if (!t->tse) {
		if (len > E1000_TX_BUF_MAX - t->len || kl_mem_read(c->mem, addr, t->buf + t->len, len) < 0) {
			t->bad = true;
			return;
		}
		t->len += len;
		return;
	}
	size_t seg_max = (size_t)t->ctx.hdr_len + t->ctx.mss;
	while (len) {
		if (t->len == seg_max)
			tso_segment(c, false, vle, vlan);   /* more data follows */
		size_t room = (t->hdr_saved ? seg_max : t->ctx.hdr_len) - t->len;
		size_t n = len < room ? len : room;
		if (kl_mem_read(c->mem, addr, t->buf + t->len, n) < 0) {
			t->bad = true;
			return;
		}
		t->len += n;
		addr += n;
		len -= n;
		if (!t->hdr_saved && t->len == t->ctx.hdr_len) {
			memcpy(t->hdr, t->buf, t->ctx.hdr_len);
			t->hdr_saved = true;
		}
	}
}

static void tx_end_packet(struct e1000_core *c, bool vle, uint16_t vlan)
{
	struct e1000_tx_state *t = &c->tx;
	if (!t->bad) {
		if (t->tse) {
			if (t->hdr_saved && (t->len > t->ctx.hdr_len || t->seg_count == 0))
				tso_segment(c, true, vle, vlan);
			e1000_stat_inc(c, E1000_TSCTC, 1);
		} else if (t->legacy_ic) {
			csum_insert(t->buf, t->len, t->css, t->cso, 0, 0);
			tx_send(c, t->buf, t->len, vle, vlan);
		} else {
			tx_offload(c, t->buf, t->len, 0);
			tx_send(c, t->buf, t->len, vle, vlan);
		}
	} else if (t->tse) {
		e1000_stat_inc(c, E1000_TSCTFC, 1);
	}
	t->len = 0;
	t->bad = false;
	t->in_pkt = false;
	t->tse = false;
	t->popts = 0;
	t->legacy_ic = false;
	t->seg_sent = 0;
	t->seg_count = 0;
	t->hdr_saved = false;
}

static void tx_desc(struct e1000_core *c, const struct e1000_tx_desc *d)
{
	struct e1000_tx_state *t = &c->tx;
	uint8_t cmd = (uint8_t)(d->lower >> 24);
	uint16_t vlan = (uint16_t)(d->upper >> 16);
	bool vle = cmd & E1000_TXD_CMD_VLE;
	if (!(cmd & E1000_TXD_CMD_DEXT)) {
		/* legacy */
		size_t len = d->lower & 0xffff;
		if (!t->in_pkt) {
			t->in_pkt = true;
			t->legacy_ic = cmd & E1000_TXD_CMD_IC;
			t->css = (uint8_t)(d->upper >> 8);
			t->cso = (uint8_t)(d->lower >> 16);
		}
		tx_append(c, d->addr, len, vle, vlan);
		if (cmd & E1000_TXD_CMD_EOP)
			tx_end_packet(c, vle, vlan);
		return;
	}
	unsigned dtyp = (d->lower >> 20) & 0xf;
	if (dtyp == E1000_TXD_DTYP_CTX) {
		struct e1000_tx_ctx *x = &t->ctx;
		uint64_t a = d->addr;
		x->ipcss = (uint8_t)a;
		x->ipcso = (uint8_t)(a >> 8);
		x->ipcse = (uint16_t)(a >> 16);
		x->tucss = (uint8_t)(a >> 32);
		x->tucso = (uint8_t)(a >> 40);
		x->tucse = (uint16_t)(a >> 48);
		x->paylen = d->lower & 0xfffff;
		x->tucmd = cmd;
		x->hdr_len = (uint8_t)(d->upper >> 8);
		x->mss = (uint16_t)(d->upper >> 16);
		return;
	}
	if (dtyp != E1000_TXD_DTYP_DATA)
		return;   /* reserved type: skipped */
	size_t len = d->lower & 0xfffff;
	if (!t->in_pkt) {
		t->in_pkt = true;
		t->popts = (uint8_t)(d->upper >> 8);
		t->tse = (cmd & E1000_TXD_CMD_TSE) != 0;
		if (t->tse && !e1000_tso_ctx_valid(&t->ctx))
			t->bad = true;
	}
	tx_append(c, d->addr, len, vle, vlan);
	if (cmd & E1000_TXD_CMD_EOP)
		tx_end_packet(c, vle, vlan);
}

void e1000_tx_process(struct e1000_core *c)
{
	if (c->tx_running || !(E1000_REG(c, E1000_TCTL) & E1000_TCTL_EN))
		return;
	if (c->cb->dma_ok && !c->cb->dma_ok(c->opaque))
		return;
	uint32_t n = E1000_REG(c, E1000_TDLEN) / sizeof(struct e1000_tx_desc);
	uint32_t h = E1000_REG(c, E1000_TDH), tail = E1000_REG(c, E1000_TDT);
	if (!n || h >= n || tail >= n)
		return;   /* hostile/unset ring: nothing to do until fixed */
	uint64_t base = (uint64_t)E1000_REG(c, E1000_TDBAH) << 32 | E1000_REG(c, E1000_TDBAL);
	uint32_t causes = 0;
	bool any = false;
	c->tx_running = true;
	for (uint32_t budget = n; h != tail && budget; budget--) {
		if (c->cb->can_send && !c->cb->can_send(c->opaque))
			break;   /* back-end full: called again when it drains */
		struct e1000_tx_desc d;
		uint64_t da = base + (uint64_t)h * sizeof(d);
		if (kl_mem_read(c->mem, da, &d, sizeof(d)) < 0)
			break;   /* descriptor ring outside RAM: stall */
		tx_desc(c, &d);
		uint8_t cmd = (uint8_t)(d.lower >> 24);
		if (cmd & E1000_TXD_CMD_RS) {
			uint8_t st = (uint8_t)d.upper | E1000_TXD_STAT_DD;
			kl_mem_write(c->mem, da + 12, &st, 1);
			causes |= E1000_ICR_TXDW;
		}
		h = h + 1 == n ? 0 : h + 1;
		E1000_REG(c, E1000_TDH) = h;
		any = true;
	}
	c->tx_running = false;
	if (any && h == tail)
		causes |= E1000_ICR_TXQE;
	if (causes)
		e1000_set_ics(c, causes);
}
