/* libFuzzer target: guest-controlled split virtqueues through the real
 * virtio-pci transport (src/virtio/virtio_pci.c + virtqueue.c + pci.c), or
 * the virtio-mmio one (virtio_mmio.c; hdr[3] bit0), with a fake platform
 * (no /dev/kvm).
 *
 * Input: [hdr 4 bytes][script: hdr[2] bytes][guest RAM image]
 *   hdr[0] bit0 EVENT_IDX, bit1 INDIRECT_DESC, bit2 enable queue 1,
 *          bit3 the device holds requests (completes them on a script op),
 *          bit4 the device uses set_notification like virtio-blk / -net,
 *          bit5 MSI-X on (vectors programmed and unmasked)
 *   hdr[1] log2 of the queue size (mod 9: 1..256)
 *   hdr[3] bit0: the virtio-mmio transport (src/virtio/virtio_mmio.c) at
 *          MMIO_GPA instead of virtio-pci: the same script drives its
 *          registers (kicks through QueueNotify, register accesses of any
 *          size and offset in its 512-byte window)
 * The RAM image lands at GPA 0 of a 64 KiB RAM region (a second 16 KiB
 * region sits at 0x30000, after a hole).  Rings are laid out compactly from
 * GPA 0: desc0, avail0, used0, then queue 1's.  BAR1 (MSI-X) is mapped at
 * 0xc0000000, BAR4 (virtio registers) at 0xc0010000.  The script replays
 * guest actions (see the switch below): kicks, avail index bumps, RAM
 * pokes, register and MMIO accesses, PCI config space through 0xcf8/0xcfc,
 * queue setups with arbitrary addresses, device and VM resets.
 *
 * The fake device pops like blk/net do and checks every element: each
 * buffer lies inside one guest RAM region, counts and byte totals agree and
 * stay within the limits; a NULL pop leaves the ring empty or the device
 * broken with DEVICE_NEEDS_RESET in its status. */
#include <glib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvmlite/mem.h"
#include "kvmlite/pci.h"
#include "kvmlite/virtio.h"
#include "kvmlite/vm.h"
#include "kvmlite/vmstate.h"

#include "fuzz_platform.h"
#include "fuzz_util.h"

#define RAM_A_SIZE 0x10000u
#define RAM_B_GPA 0x30000u
#define RAM_B_SIZE 0x4000u
#define NQ 2
#define QMAX 256
#define HELD_MAX 64
#define BAR1_GPA 0xc0000000u
#define BAR4_GPA 0xc0010000u
#define MMIO_GPA 0xfeb00000u
#define MMIO_GSI 5

static struct kl_vm vm;
static uint8_t *ram_a, *ram_b;
static struct kl_virtio_dev *vd;
static uint8_t feat_byte;
static unsigned qsize;
static struct { struct kl_vq_elem *e; unsigned q; } held[HELD_MAX];
static unsigned nheld;
static uint64_t ring_gpa[NQ][3];
static bool mmio_mode;


static bool in_region(const void *p, size_t len, const uint8_t *base, size_t size)
{
	const uint8_t *b = p;
	return b >= base && b <= base + size && len <= (size_t)(base + size - b);
}

static void check_elem(struct kl_virtio_dev *d, unsigned q, const struct kl_vq_elem *e)
{
	FUZZ_ASSERT(e->head < d->vqs[q].size);
	unsigned n = e->out_num + e->in_num;
	FUZZ_ASSERT(n <= KL_VIRTQ_MAX_SIZE);
	uint64_t out = 0, in = 0;
	for (unsigned i = 0; i < n; i++) {
		const struct iovec *v = &e->iov[i];
		FUZZ_ASSERT(v->iov_len > 0);
		FUZZ_ASSERT(in_region(v->iov_base, v->iov_len, ram_a, RAM_A_SIZE) ||
			    in_region(v->iov_base, v->iov_len, ram_b, RAM_B_SIZE));
		if (i < e->out_num)
			out += v->iov_len;
		else
			in += v->iov_len;
	}
	FUZZ_ASSERT(out == e->out_len && in == e->in_len);
	FUZZ_ASSERT(out + in <= UINT32_MAX);
}

/* What a device does with a request: read what the driver wrote, write the
 * reply.  ASan checks every byte touched. */
static uint32_t serve(const struct kl_vq_elem *e)
{
	uint8_t sum = 0;
	for (unsigned i = 0; i < e->out_num; i++) {
		const uint8_t *p = e->iov[i].iov_base;
		for (size_t k = 0; k < e->iov[i].iov_len; k++)
			sum ^= p[k];
	}
	FUZZ_ASSERT(kl_iov_size(e->iov, e->out_num) == e->out_len);
	static uint8_t reply[4096];
	memset(reply, sum, sizeof(reply));
	for (uint64_t off = 0; off < e->in_len; off += sizeof(reply)) {
		size_t n = kl_iov_from_buf(e->iov + e->out_num, e->in_num, off, reply,
					   sizeof(reply));
		FUZZ_ASSERT(n == MIN(sizeof(reply), e->in_len - off));
	}
	/* the iov helpers on a slice of the chain */
	struct iovec sl[4];
	int ns = kl_iov_slice(e->iov, e->out_num + e->in_num, sum, 1 + sum, sl, 4);
	FUZZ_ASSERT(ns >= -1 && ns <= 4);
	if (ns > 0) {
		uint8_t tmp[256 + 1];
		size_t got = kl_iov_to_buf(sl, (unsigned)ns, 0, tmp, sizeof(tmp));
		FUZZ_ASSERT(got == (size_t)1 + sum);
	}
	return (uint32_t)e->in_len;
}

static void complete_held(unsigned i, uint32_t len)
{
	struct kl_vq_elem *e = held[i].e;
	kl_virtio_complete(vd, held[i].q, e, len);
	memmove(&held[i], &held[i + 1], (nheld - i - 1) * sizeof(held[0]));
	nheld--;
}

/* A broken device reports NEEDS_RESET and puts nothing more on a used
 * ring until it is reset (queue generation bumped). */
static bool was_broken;
static struct { uint16_t used_idx; uint64_t gen; } snap[NQ];

static void check_status(struct kl_virtio_dev *d)
{
	if (!d->broken) {
		was_broken = false;
		return;
	}
	FUZZ_ASSERT((mmio_mode ? kl_virtio_mmio_read(d, KL_VMMIO_STATUS, 4)
			       : kl_virtio_pci_bar_read(d, KL_VPCI_STATUS, 1)) & KL_VIRTIO_S_NEEDS_RESET);
	for (unsigned q = 0; q < NQ; q++) {
		const struct kl_virtq *vq = &d->vqs[q];
		if (was_broken && snap[q].gen == vq->gen)
			FUZZ_ASSERT(snap[q].used_idx == vq->used_idx);
		snap[q].used_idx = vq->used_idx;
		snap[q].gen = vq->gen;
	}
	was_broken = true;
}

static void dev_notify(struct kl_virtio_dev *d, unsigned q)
{
	struct kl_virtq *vq = &d->vqs[q];
	bool use_notif = feat_byte & 16;
	for (unsigned round = 0; round < 4; round++) {
		if (use_notif)
			kl_virtq_set_notification(vq, false);
		struct kl_vq_elem *e;
		while ((e = kl_virtio_pop(d, q))) {
			check_elem(d, q, e);
			FUZZ_TRACE("q%u: head %u out %u/%llu in %u/%llu\n", q, e->head, e->out_num,
				   (unsigned long long)e->out_len, e->in_num,
				   (unsigned long long)e->in_len);
			uint32_t len = serve(e);
			if ((feat_byte & 8) && nheld < HELD_MAX) {
				held[nheld].e = e;
				held[nheld].q = q;
				nheld++;
			} else {
				kl_virtio_complete(d, q, e, len);
			}
		}
		check_status(d);
		if (d->broken) {
			FUZZ_ASSERT(!kl_virtio_pop(d, q));
			return;
		}
		/* NULL without an error: nothing left */
		FUZZ_ASSERT(!kl_virtq_has_avail(vq));
		if (!use_notif || !kl_virtio_ready(d) || !kl_virtq_set_notification(vq, true))
			return;
	}
}

static void dev_reset(struct kl_virtio_dev *d)
{
	(void)d;
}

static const struct kl_virtio_ops dev_ops = {
	.device_features = 1ULL << 5,
	.queue_notify = dev_notify,
	.reset = dev_reset,
};

static void wr(unsigned off, unsigned size, uint64_t v)
{
	kl_virtio_pci_bar_write(vd, off, v, size);
}

static void mwr(unsigned off, uint32_t v)
{
	kl_virtio_mmio_write(vd, off, v, 4);
}

static unsigned slot;

static void cfg_wr(unsigned off, unsigned size, uint32_t v)
{
	kl_pci_cfg_write(&vm, slot, 0, off, size, v);
}

/* BARs at fixed addresses, decoding and bus mastering on; MSI-X enabled
 * with every vector unmasked when hdr[0] bit5 is set. */
static void pci_init(void)
{
	cfg_wr(KL_PCI_BAR0 + 4 * KL_VPCI_MSIX_BAR, 4, BAR1_GPA);
	cfg_wr(KL_PCI_BAR0 + 4 * KL_VPCI_BAR, 4, BAR4_GPA);
	cfg_wr(KL_PCI_BAR0 + 4 * KL_VPCI_BAR + 4, 4, 0);
	cfg_wr(KL_PCI_COMMAND, 2, KL_PCI_CMD_MEMORY | KL_PCI_CMD_MASTER);
	if (!(feat_byte & 32))
		return;
	for (unsigned v = 0; v <= NQ; v++) {
		kl_bus_write(&vm.mmio, BAR1_GPA + 16 * v, 4, 0xfee00000u);
		kl_bus_write(&vm.mmio, BAR1_GPA + 16 * v + 8, 4, 0x40 + v);
		kl_bus_write(&vm.mmio, BAR1_GPA + 16 * v + 12, 4, 0);
	}
	unsigned cap = kl_pci_cfg_read(&vm, slot, 0, KL_PCI_CAP_PTR, 1);
	for (unsigned n = 0; cap && n < 48; n++) {
		if (kl_pci_cfg_read(&vm, slot, 0, cap, 1) == KL_PCI_CAP_ID_MSIX) {
			uint32_t ctrl = kl_pci_cfg_read(&vm, slot, 0, cap + 2, 2);
			cfg_wr(cap + 2, 2, ctrl | KL_PCI_MSIX_CTRL_ENABLE);
			break;
		}
		cap = kl_pci_cfg_read(&vm, slot, 0, cap + 1, 1);
	}
}

static void set_features(void)
{
	uint64_t f = 1ULL << KL_VIRTIO_F_VERSION_1;
	if (feat_byte & 1)
		f |= 1ULL << KL_VIRTIO_F_EVENT_IDX;
	if (feat_byte & 2)
		f |= 1ULL << KL_VIRTIO_F_INDIRECT_DESC;
	if (mmio_mode) {
		mwr(KL_VMMIO_STATUS, 0);
		mwr(KL_VMMIO_STATUS, KL_VIRTIO_S_ACKNOWLEDGE | KL_VIRTIO_S_DRIVER);
		mwr(KL_VMMIO_DRIVER_FEATURES_SEL, 0);
		mwr(KL_VMMIO_DRIVER_FEATURES, (uint32_t)f);
		mwr(KL_VMMIO_DRIVER_FEATURES_SEL, 1);
		mwr(KL_VMMIO_DRIVER_FEATURES, (uint32_t)(f >> 32));
		mwr(KL_VMMIO_STATUS, 3 | KL_VIRTIO_S_FEATURES_OK);
		return;
	}
	wr(KL_VPCI_STATUS, 1, 0);
	wr(KL_VPCI_STATUS, 1, KL_VIRTIO_S_ACKNOWLEDGE | KL_VIRTIO_S_DRIVER);
	wr(KL_VPCI_GFSELECT, 4, 0);
	wr(KL_VPCI_GF, 4, (uint32_t)f);
	wr(KL_VPCI_GFSELECT, 4, 1);
	wr(KL_VPCI_GF, 4, (uint32_t)(f >> 32));
	wr(KL_VPCI_STATUS, 1, 3 | KL_VIRTIO_S_FEATURES_OK);
}

static void queue_setup(unsigned q, unsigned size, uint64_t desc, uint64_t avail, uint64_t used)
{
	if (mmio_mode) {
		mwr(KL_VMMIO_QUEUE_SEL, q);
		mwr(KL_VMMIO_QUEUE_NUM, size);
		mwr(KL_VMMIO_QUEUE_DESC_LOW, (uint32_t)desc);
		mwr(KL_VMMIO_QUEUE_DESC_HIGH, (uint32_t)(desc >> 32));
		mwr(KL_VMMIO_QUEUE_AVAIL_LOW, (uint32_t)avail);
		mwr(KL_VMMIO_QUEUE_AVAIL_HIGH, (uint32_t)(avail >> 32));
		mwr(KL_VMMIO_QUEUE_USED_LOW, (uint32_t)used);
		mwr(KL_VMMIO_QUEUE_USED_HIGH, (uint32_t)(used >> 32));
		mwr(KL_VMMIO_QUEUE_READY, 1);
		return;
	}
	wr(KL_VPCI_Q_SELECT, 2, q);
	wr(KL_VPCI_Q_SIZE, 2, size);
	wr(KL_VPCI_Q_DESC, 8, desc);
	wr(KL_VPCI_Q_AVAIL, 8, avail);
	wr(KL_VPCI_Q_USED, 8, used);
	wr(KL_VPCI_Q_MSIX_VECTOR, 2, q + 1);
	wr(KL_VPCI_Q_ENABLE, 2, 1);
}

static void driver_ok(void)
{
	if (mmio_mode) {
		mwr(KL_VMMIO_STATUS, 3 | KL_VIRTIO_S_FEATURES_OK | KL_VIRTIO_S_DRIVER_OK);
		return;
	}
	wr(KL_VPCI_MSIX_CONFIG, 2, 0);
	wr(KL_VPCI_STATUS, 1, 3 | KL_VIRTIO_S_FEATURES_OK | KL_VIRTIO_S_DRIVER_OK);
}

static void driver_init(void)
{
	set_features();
	unsigned nq = (feat_byte & 4) ? 2 : 1;
	for (unsigned q = 0; q < nq; q++)
		queue_setup(q, qsize, ring_gpa[q][0], ring_gpa[q][1], ring_gpa[q][2]);
	driver_ok();
}

static void layout(void)
{
	uint64_t a = 0;
	for (unsigned q = 0; q < NQ; q++) {
		a = (a + 15) & ~15ULL;
		ring_gpa[q][0] = a;
		a += 16 * qsize;
		ring_gpa[q][1] = a;
		a += 6 + 2 * qsize;
		a = (a + 3) & ~3ULL;
		ring_gpa[q][2] = a;
		a += 6 + 8 * qsize;
	}
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	fuzz_init_glib(*argv);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 4)
		return 0;
	feat_byte = data[0];
	qsize = 1u << (data[1] % 9);
	size_t slen = data[2];
	mmio_mode = data[3] & 1;
	data += 4;
	size -= 4;
	if (slen > size)
		slen = size;
	struct fuzz_in sc = { data, slen };
	data += slen;
	size -= slen;

	memset(&vm, 0, sizeof(vm));
	vm.kvm_fd = vm.vm_fd = -1;
	kl_bus_init(&vm.pio, "pio");
	kl_bus_init(&vm.mmio, "mmio");
	kl_mem_init_empty(&vm.mem);
	ram_a = calloc(1, RAM_A_SIZE);
	ram_b = calloc(1, RAM_B_SIZE);
	memcpy(ram_a, data, size < RAM_A_SIZE ? size : RAM_A_SIZE);
	kl_mem_add_region(&vm.mem, 0, RAM_A_SIZE, ram_a);
	kl_mem_add_region(&vm.mem, RAM_B_GPA, RAM_B_SIZE, ram_b);
	char *err = NULL;
	FUZZ_ASSERT(kl_pci_host_create(&vm, &fuzz_pci_ops, &err));
	const struct kl_virtio_pci_info info = {
		.name = "virtio-fuzz", .device_id = 0x1f, .class_code = 0xff0000,
		.num_queues = NQ, .queue_size = QMAX, .config_len = 8, .slot = -1,
	};
	if (mmio_mode) {
		vd = kl_virtio_mmio_create(&vm, &fuzz_pci_ops, MMIO_GPA, MMIO_GSI, &info, &dev_ops, NULL,
					   &err);
		FUZZ_ASSERT(vd);
		slot = 0;
	} else {
		vd = kl_virtio_pci_create(&vm, &info, &dev_ops, NULL, &err);
		FUZZ_ASSERT(vd);
		slot = kl_pci_slot(vd->pci);
		pci_init();
	}
	layout();
	driver_init();

	while (sc.len) {
		uint8_t op = fuzz_u8(&sc);
		switch (op % 13) {
		case 0: /* kick */
		case 1:
			if (mmio_mode)
				mwr(KL_VMMIO_QUEUE_NOTIFY, op >> 7);
			else
				wr(KL_VPCI_NOTIFY_OFF + KL_VPCI_NOTIFY_MULT * (op >> 7), 2, op >> 7);
			break;
		case 2: { /* the driver adds n more chains (avail idx += n) */
			unsigned q = op >> 7;
			uint16_t *idx = (uint16_t *)(ram_a + ring_gpa[q][1] + 2);
			*idx = (uint16_t)(*idx + fuzz_u8(&sc));
			break;
		}
		case 3: { /* guest writes a byte of RAM */
			uint16_t off = fuzz_u16(&sc);
			ram_a[off % RAM_A_SIZE] = fuzz_u8(&sc);
			break;
		}
		case 4: /* device finishes a held request */
			if (nheld) {
				unsigned i = fuzz_u8(&sc) % nheld;
				complete_held(i, fuzz_u16(&sc));
			}
			break;
		case 5: { /* BAR 4 / virtio-mmio register write */
			uint16_t off = fuzz_u16(&sc) % (mmio_mode ? KL_VMMIO_SIZE : KL_VPCI_BAR_SIZE);
			unsigned sz = 1u << (fuzz_u8(&sc) & 3);
			uint64_t v = fuzz_u64(&sc);
			if (mmio_mode)
				kl_virtio_mmio_write(vd, off, v, sz);
			else
				wr(off, sz, v);
			break;
		}
		case 6: { /* BAR 4 / virtio-mmio register read */
			uint16_t off = fuzz_u16(&sc) % (mmio_mode ? KL_VMMIO_SIZE : KL_VPCI_BAR_SIZE);
			unsigned sz = 1u << (fuzz_u8(&sc) & 3);
			if (mmio_mode)
				kl_virtio_mmio_read(vd, off, sz);
			else
				kl_virtio_pci_bar_read(vd, off, sz);
			break;
		}
		case 7: { /* PCI config space write (BARs, command, MSI-X control...) */
			uint8_t off = fuzz_u8(&sc);
			unsigned sz = 1u << (fuzz_u8(&sc) % 3);
			cfg_wr(off & ~(sz - 1), sz, fuzz_u32(&sc));
			break;
		}
		case 8: /* driver resets and sets the device up again */
			driver_init();
			break;
		case 9: { /* MMIO access to BAR1 (MSI-X table/PBA) or BAR4 */
			uint64_t base = mmio_mode ? MMIO_GPA : op & 0x80 ? BAR4_GPA : BAR1_GPA;
			uint32_t bsize = mmio_mode ? KL_VMMIO_SIZE + 16 /* and past its end */
				       : op & 0x80 ? KL_VPCI_BAR_SIZE : 0x1000;
			uint64_t a = base + fuzz_u16(&sc) % bsize;
			unsigned sz = 1u << (fuzz_u8(&sc) & 3);
			uint64_t v = fuzz_u64(&sc);
			if (op & 0x40)
				kl_bus_read(&vm.mmio, a, sz, &v);
			else
				kl_bus_write(&vm.mmio, a, sz, v);
			break;
		}
		case 10: { /* config space through the 0xcf8/0xcfc ports */
			uint8_t s_ = fuzz_u8(&sc), off = fuzz_u8(&sc);
			unsigned sz = 1u << (fuzz_u8(&sc) % 3);
			unsigned dev = s_ & 0x80 ? s_ & 31 : slot;
			uint64_t v = fuzz_u32(&sc);
			kl_bus_write(&vm.pio, 0xcf8, 4, 0x80000000u | dev << 11 | (off & 0xfc));
			if (op & 0x80)
				kl_bus_read(&vm.pio, 0xcfc + (off & 3 & ~(sz - 1)), sz, &v);
			else
				kl_bus_write(&vm.pio, 0xcfc + (off & 3 & ~(sz - 1)), sz, v);
			break;
		}
		case 11: { /* queue setup with any size and ring addresses */
			set_features();
			unsigned q = op >> 7;
			uint16_t size = fuzz_u16(&sc);
			uint64_t d = fuzz_u32(&sc), av = fuzz_u32(&sc), u = fuzz_u32(&sc);
			queue_setup(q, size, d, av, u);
			driver_ok();
			break;
		}
		case 12: /* VM reset (every PCI device) */
			fuzz_platform_vm_reset();
			break;
		}
		check_status(vd);
	}

	while (nheld)
		complete_held(0, 0);
	if (mmio_mode)
		kl_virtio_mmio_destroy(vd); /* the fake platform has no add_cleanup */
	kl_pci_host_destroy(&vm);
	kl_vmstate_free_all(&vm); /* the (now empty) section registry */
	fuzz_platform_forget();
	was_broken = false;
	kl_bus_destroy(&vm.pio);
	kl_bus_destroy(&vm.mmio);
	free(ram_a);
	free(ram_b);
	vd = NULL;
	return 0;
}
