/* libFuzzer target: what a guest driver sends virtio-balloon-pci
 * (src/virtio/balloon.c) through the real virtio-pci transport, with a
 * fake platform (no /dev/kvm) and the monitor's balloon registry.
 *
 * Input: [script length u8][script][guest RAM image]
 * Guest RAM: 64 KiB at GPA 0 (the image lands there) and 16 KiB at 0x30000,
 * both page-aligned mappings (inflated pages are really released).  The
 * four queues (inflate, deflate, stats, reporting) have 16 entries each,
 * laid out from GPA 0x8000.  Script ops (see the switch): descriptor
 * writes with any address/length/flags, chain publishing and kicks, RAM
 * pokes (PFN arrays, stats records), config space writes (actual,
 * poison_val), the host's target (QMP balloon), device resets.
 *
 * Invariants: the balloon's "actual" never exceeds guest RAM, the device
 * holds at most one buffer (the stats buffer) between operations, and at
 * the end everything is freed (LeakSanitizer). */
#include <glib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "kvmlite/balloon.h"
#include "kvmlite/device.h"
#include "kvmlite/mem.h"
#include "kvmlite/opts.h"
#include "kvmlite/pci.h"
#include "kvmlite/virtio.h"
#include "kvmlite/vm.h"
#include "kvmlite/vmstate.h"

#include "fuzz_platform.h"
#include "fuzz_util.h"

#define RAM_A_SIZE 0x10000u
#define RAM_B_GPA 0x30000u
#define RAM_B_SIZE 0x4000u
#define RING_BASE 0x8000u
#define NQ 4
#define QS 16

static struct kl_vm vm;
static uint8_t *ram_a, *ram_b;
static struct kl_virtio_dev *vd;
static uint64_t ring[NQ][3];
static uint16_t avail_idx[NQ];


static void wr(unsigned off, unsigned size, uint64_t v)
{
	kl_virtio_pci_bar_write(vd, off, v, size);
}

static void driver_init(void)
{
	wr(KL_VPCI_STATUS, 1, 0);
	wr(KL_VPCI_STATUS, 1, KL_VIRTIO_S_ACKNOWLEDGE | KL_VIRTIO_S_DRIVER);
	wr(KL_VPCI_GFSELECT, 4, 0);
	wr(KL_VPCI_GF, 4, 1u << 1 | 1u << 2 | 1u << 4 | 1u << 5); /* stats, oom, poison, report */
	wr(KL_VPCI_GFSELECT, 4, 1);
	wr(KL_VPCI_GF, 4, 1); /* VERSION_1 */
	wr(KL_VPCI_STATUS, 1, 3 | KL_VIRTIO_S_FEATURES_OK);
	for (unsigned q = 0; q < NQ; q++) {
		wr(KL_VPCI_Q_SELECT, 2, q);
		wr(KL_VPCI_Q_SIZE, 2, QS);
		wr(KL_VPCI_Q_DESC, 8, ring[q][0]);
		wr(KL_VPCI_Q_AVAIL, 8, ring[q][1]);
		wr(KL_VPCI_Q_USED, 8, ring[q][2]);
		wr(KL_VPCI_Q_ENABLE, 2, 1);
		memset(ram_a + ring[q][0], 0, ring[q + 1 < NQ ? q + 1 : q][0] - ring[q][0]);
		avail_idx[q] = 0;
	}
	wr(KL_VPCI_STATUS, 1, 3 | KL_VIRTIO_S_FEATURES_OK | KL_VIRTIO_S_DRIVER_OK);
}

static void layout(void)
{
	uint64_t a = RING_BASE;
	for (unsigned q = 0; q < NQ; q++) {
		ring[q][0] = a;
		a += 16 * QS;
		ring[q][1] = a;
		a += 6 + 2 * QS;
		a = (a + 3) & ~3ull;
		ring[q][2] = a;
		a += 6 + 8 * QS;
		a = (a + 15) & ~15ull;
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
	if (size < 1)
		return 0;
	size_t slen = data[0];
	data++, size--;
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
	ram_a = mmap(NULL, RAM_A_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	ram_b = mmap(NULL, RAM_B_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	FUZZ_ASSERT(ram_a != MAP_FAILED && ram_b != MAP_FAILED);
	memcpy(ram_a, data, size < RAM_A_SIZE ? size : RAM_A_SIZE);
	kl_mem_add_region(&vm.mem, 0, RAM_A_SIZE, ram_a);
	kl_mem_add_region(&vm.mem, RAM_B_GPA, RAM_B_SIZE, ram_b);
	vm.mem.shared = false;
	char *err = NULL;
	FUZZ_ASSERT(kl_pci_host_create(&vm, &fuzz_pci_ops, &err));
	const struct kl_device_type *t = kl_device_type_find("virtio-balloon-pci");
	FUZZ_ASSERT(t);
	struct kl_opts *o = kl_opts_parse("free-page-reporting=on,deflate-on-oom=on", NULL, &err);
	FUZZ_ASSERT(o);
	FUZZ_ASSERT(t->create(&vm, o, &err) == 0);
	kl_opts_free(o);
	FUZZ_ASSERT(kl_balloon_present());
	/* the transport's VM state section has the virtio device as opaque */
	vd = NULL;
	for (unsigned i = 0; i < kl_vmstate_count(&vm); i++) {
		const struct kl_vmstate_entry *e = kl_vmstate_get(&vm, i);
		if (g_str_has_prefix(e->name, "virtio-pci/"))
			vd = e->opaque;
	}
	FUZZ_ASSERT(vd);
	layout();
	driver_init();
	uint64_t ram = vm.mem.ram_size;

	while (sc.len) {
		uint8_t op = fuzz_u8(&sc);
		unsigned q = (op >> 4) % NQ;
		switch (op % 8) {
		case 0: { /* descriptor i of queue q */
			unsigned i = fuzz_u8(&sc) % QS;
			uint8_t *d = ram_a + ring[q][0] + 16 * i;
			uint64_t addr = fuzz_u32(&sc) % (RAM_B_GPA + RAM_B_SIZE + 0x1000);
			uint32_t len = fuzz_u32(&sc);
			uint16_t fl = fuzz_u8(&sc) & 7, next = fuzz_u8(&sc) % QS;
			memcpy(d, &addr, 8);
			memcpy(d + 8, &len, 4);
			memcpy(d + 12, &fl, 2);
			memcpy(d + 14, &next, 2);
			break;
		}
		case 1: { /* publish head and kick */
			uint16_t head = fuzz_u8(&sc) % QS;
			uint16_t *av = (uint16_t *)(ram_a + ring[q][1]);
			av[2 + avail_idx[q] % QS] = head;
			av[1] = ++avail_idx[q];
			wr(KL_VPCI_NOTIFY_OFF + KL_VPCI_NOTIFY_MULT * q, 2, q);
			break;
		}
		case 2: { /* RAM: a 32-bit word (a PFN, part of a stats record) */
			uint32_t off = fuzz_u16(&sc) % (RAM_A_SIZE - 4);
			uint32_t v = fuzz_u32(&sc);
			memcpy(ram_a + off, &v, 4);
			break;
		}
		case 3: { /* config space write */
			unsigned sz = 1u << (fuzz_u8(&sc) % 3);
			unsigned off = fuzz_u8(&sc) % 16 & ~(sz - 1);
			wr(KL_VPCI_DEVCFG_OFF + off, sz, fuzz_u32(&sc));
			break;
		}
		case 4: { /* QMP balloon */
			uint64_t v = fuzz_u32(&sc);
			if (v)
				kl_balloon_set_target(v);
			break;
		}
		case 5: /* kick without new buffers */
			wr(KL_VPCI_NOTIFY_OFF + KL_VPCI_NOTIFY_MULT * q, 2, q);
			break;
		case 6: /* reset and set up again */
			driver_init();
			break;
		case 7: /* config reads */
			for (unsigned off = 0; off < 16; off += 4)
				kl_virtio_pci_bar_read(vd, KL_VPCI_DEVCFG_OFF + off, 4);
			break;
		}
		FUZZ_ASSERT(kl_balloon_actual() <= ram);
		FUZZ_ASSERT(vd->inflight <= 1);
	}

	kl_pci_host_destroy(&vm);
	fuzz_platform_forget();
	FUZZ_ASSERT(!kl_balloon_present());
	kl_vmstate_free_all(&vm);
	kl_bus_destroy(&vm.pio);
	kl_bus_destroy(&vm.mmio);
	munmap(ram_a, RAM_A_SIZE);
	munmap(ram_b, RAM_B_SIZE);
	vd = NULL;
	return 0;
}
