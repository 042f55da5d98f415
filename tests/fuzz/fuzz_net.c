/* libFuzzer target: packets and NIC rings from the guest.
 *
 * input[0] & 1 == 0: virtio-net transmit with a back-end without vnet
 *   headers (src/net/csum.c): input[1..13) is the virtio_net_hdr_v1, the
 *   rest the frame.  kl_net_vnet_hdr_apply() completes the checksum or
 *   segments the TSO super-frame; also kl_net_csum_fill() on the frame.
 *   The frame sits in a buffer of exactly its length, so ASan sees any
 *   access past it; every emitted frame is checked (length, count).
 *
 * input[0] & 1 == 1: the e1000 register model (src/e1000/e1000_core.c,
 *   e1000_tx.c) on 64 KiB of guest RAM: input[1..3) is a script length,
 *   then the script (register writes/reads, ring setup shortcuts, frames
 *   received from the network, timer ticks), then the RAM image (TX/RX
 *   descriptor rings, buffers).  Transmission runs synchronously in the
 *   TDT/TCTL write.  Sent frames must be 14..64 KiB + VLAN tag long. */
#include <glib.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kvmlite/mem.h"
#include "kvmlite/net.h"
#include "../../src/e1000/e1000_int.h"

#include "fuzz_util.h"

#define RAM_SIZE 0x10000u

/* ---- virtio-net header + frame ---- */

struct emit_state {
	int frames;
	size_t max_len;
	uint8_t sum;
};

static void emit(void *opaque, const uint8_t *frame, size_t len)
{
	struct emit_state *st = opaque;
	/* (an empty frame is possible: kl_netdev_send drops it) */
	FUZZ_ASSERT(len <= st->max_len);
	for (size_t i = 0; i < len; i++)
		st->sum ^= frame[i];
	st->frames++;
	FUZZ_TRACE("vnet: emitted %zu bytes\n", len);
}

static void vnet(const uint8_t *data, size_t size)
{
	if (size < KL_VNET_HDR_LEN)
		return;
	uint8_t hdr[KL_VNET_HDR_LEN];
	memcpy(hdr, data, KL_VNET_HDR_LEN);
	size_t len = size - KL_VNET_HDR_LEN;
	if (len > KL_NET_MAX_FRAME)
		return; /* virtio-net drops these before the header is looked at */
	uint8_t *f = malloc(len ? len : 1);
	memcpy(f, data + KL_VNET_HDR_LEN, len);
	/* segments never exceed the super-frame, nor KL_NET_MAX_FRAME */
	struct emit_state st = { 0, len, 0 };
	int n = kl_net_vnet_hdr_apply(hdr, f, len, emit, &st);
	FUZZ_ASSERT(n == -1 ? st.frames == 0 : n == st.frames);
	memcpy(f, data + KL_VNET_HDR_LEN, len);
	kl_net_csum_fill(f, len);
	free(f);
}

/* ---- e1000 ---- */

static uint64_t now_ns;
static unsigned sent;

static void e_set_irq(void *o, int level)
{
	(void)o;
	FUZZ_ASSERT(level == 0 || level == 1);
}
static bool e_send(void *o, const uint8_t *f, size_t len)
{
	(void)o;
	FUZZ_ASSERT(len >= 14 && len <= E1000_TX_BUF_MAX + 4);
	uint8_t x = 0;
	for (size_t i = 0; i < len; i++)
		x ^= f[i];
	sent++;
	FUZZ_TRACE("e1000: sent %zu bytes\n", len);
	return x != 0x55; /* sometimes "dropped" */
}
static uint64_t e_now(void *o)
{
	(void)o;
	return now_ns;
}
static void e_arm(void *o, uint64_t d)
{
	(void)o, (void)d;
}

static const struct e1000_core_cb e_cbs = {
	.set_irq = e_set_irq, .send = e_send, .now_ns = e_now, .arm_timer = e_arm,
};

static void e1000(const uint8_t *data, size_t size)
{
	struct fuzz_in in = { data, size };
	size_t slen = fuzz_u16(&in);
	if (slen > in.len)
		slen = in.len;
	struct fuzz_in sc = { in.p, slen };
	in.p += slen;
	in.len -= slen;

	uint8_t *ram = calloc(1, RAM_SIZE);
	memcpy(ram, in.p, in.len < RAM_SIZE ? in.len : RAM_SIZE);
	struct kl_guest_mem mem;
	kl_mem_init_empty(&mem);
	kl_mem_add_region(&mem, 0, RAM_SIZE, ram);
	static const uint8_t mac[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 };
	struct e1000_core *c = g_new0(struct e1000_core, 1);
	now_ns = 1000000;
	sent = 0;
	e1000_core_init(c, &mem, mac, &e_cbs, NULL);

	while (sc.len) {
		uint8_t op = fuzz_u8(&sc);
		switch (op % 8) {
		case 0: { /* register write */
			uint32_t off = (uint32_t)fuzz_u16(&sc) * 4 % E1000_MMIO_SIZE;
			e1000_mmio_write(c, off, fuzz_u32(&sc), 4);
			break;
		}
		case 1: { /* register read (some clear on read) */
			uint32_t off = (uint32_t)fuzz_u16(&sc) * 4 % E1000_MMIO_SIZE;
			e1000_mmio_read(c, off, 4);
			break;
		}
		case 2: { /* TX ring at base, n*8 descriptors, head 0, tail t; enable */
			uint16_t base = fuzz_u16(&sc);
			uint8_t n = fuzz_u8(&sc), t = fuzz_u8(&sc);
			e1000_mmio_write(c, E1000_TDBAL, base, 4);
			e1000_mmio_write(c, E1000_TDBAH, 0, 4);
			e1000_mmio_write(c, E1000_TDLEN, (uint32_t)n * 128, 4);
			e1000_mmio_write(c, E1000_TDH, 0, 4);
			e1000_mmio_write(c, E1000_TCTL, E1000_TCTL_EN | (op & 0x80 ? E1000_TCTL_PSP : 0), 4);
			e1000_mmio_write(c, E1000_TDT, t, 4);
			break;
		}
		case 3: { /* RX ring, like case 2; accept everything */
			uint16_t base = fuzz_u16(&sc);
			uint8_t n = fuzz_u8(&sc), t = fuzz_u8(&sc);
			e1000_mmio_write(c, E1000_RDBAL, base, 4);
			e1000_mmio_write(c, E1000_RDBAH, 0, 4);
			e1000_mmio_write(c, E1000_RDLEN, (uint32_t)n * 128, 4);
			e1000_mmio_write(c, E1000_RDH, 0, 4);
			e1000_mmio_write(c, E1000_RDT, t, 4);
			e1000_mmio_write(c, E1000_RCTL, E1000_RCTL_EN | E1000_RCTL_UPE | E1000_RCTL_MPE |
					 E1000_RCTL_BAM | ((uint32_t)(op >> 3) << 16), 4);
			break;
		}
		case 4: { /* a frame from the network (1..2 iovecs) */
			size_t len = fuzz_u16(&sc) % 2048;
			if (len > sc.len)
				len = sc.len;
			uint8_t *f = malloc(len ? len : 1);
			memcpy(f, sc.p, len);
			sc.p += len;
			sc.len -= len;
			size_t cut = op & 0x80 ? len / 2 : len;
			struct iovec iov[2] = { { f, cut }, { f + cut, len - cut } };
			if (e1000_can_receive(c) || (op & 0x40)) {
				ssize_t r = e1000_receive(c, iov, len - cut ? 2 : 1);
				FUZZ_ASSERT(r >= -1 && r <= (ssize_t)len);
				FUZZ_TRACE("e1000: received %zu bytes: %zd\n", len, r);
			}
			free(f);
			break;
		}
		case 5: /* time passes; the interrupt throttling timer fires */
			now_ns += (uint64_t)fuzz_u16(&sc) * 1000;
			e1000_core_timer(c);
			break;
		case 6: { /* I/O BAR (IOADDR / IODATA) */
			uint32_t off = fuzz_u8(&sc) & 4;
			e1000_io_write(c, off, fuzz_u32(&sc), 4);
			break;
		}
		case 7: { /* guest pokes RAM (e.g. writes the next descriptor) */
			uint16_t a = fuzz_u16(&sc);
			ram[a % RAM_SIZE] = fuzz_u8(&sc);
			break;
		}
		}
	}
	e1000_core_cleanup(c);
	g_free(c);
	free(ram);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	fuzz_init_glib(*argv);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	if (data[0] & 1)
		e1000(data + 1, size - 1);
	else
		vnet(data + 1, size - 1);
	return 0;
}
