/* libFuzzer target: a hostile guest driving virtio-serial-pci
 * (src/virtio/serial.c) through the real virtio-pci transport, with a
 * virtconsole (port 0, id c0) and a virtserialport (port 1, id p1, named)
 * on ringbuf chardevs; fake PCI platform, no /dev/kvm.
 *
 * Input: [hdr 2 bytes][script]
 *   hdr[0] % 4 + 2: max_ports (2..5)
 *   hdr[1] bit0 negotiate MULTIPORT, bit1 EVENT_IDX
 * Queues (2 * (max_ports + 1), 8 entries each) are laid out from GPA 0 of
 * a 64 KiB RAM; buffers live at 0x4000 and up.  Script ops: control
 * messages on queue 3 (any id / event / value, any length 0..15), rx
 * buffers on any queue, port data on any queue, kicks, device reset and
 * set-up again, pokes into the buffers, host ringbuf reads, emergency
 * writes, and a VM reset at the end.
 *
 * Asserts: every control message the device puts on the control rx queue
 * fits the buffer, is at least the 8-byte header and names a port below
 * max_ports; DEVICE_ADD only for the two existing ports; VSERPORT_CHANGE
 * only for the ports' ids, alternating open/close per port. */
#include <glib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvmlite/bus.h"
#include "kvmlite/chardev.h"
#include "kvmlite/device.h"
#include "kvmlite/loop.h"
#include "kvmlite/mem.h"
#include "kvmlite/monitor.h"
#include "kvmlite/opts.h"
#include "kvmlite/pci.h"
#include "kvmlite/virtio.h"
#include "kvmlite/vm.h"
#include "kvmlite/vmstate.h"

#include "fuzz_platform.h"
#include "fuzz_util.h"

#define RAM_SIZE 0x10000u
#define BUF_BASE 0x4000u
#define BUF_SIZE 256u
#define NBUF ((RAM_SIZE - BUF_BASE) / BUF_SIZE)
#define QS 8
#define MAXQ 12
#define BAR4_GPA 0xc0010000u

static struct kl_vm vm;
static uint8_t *ram;
static unsigned slot, nq, max_ports;
static uint8_t flags;
static uint64_t ring[MAXQ][3];
static uint16_t avail_idx[MAXQ], last_used2;
static unsigned next_buf;
static bool port_open[2];


/* the monitor's event (the target links no monitor) */
void kl_monitor_vserport_change(const char *id, bool open)
{
	FUZZ_ASSERT(id && (!strcmp(id, "c0") || !strcmp(id, "p1")));
	unsigned i = id[0] == 'p';
	FUZZ_ASSERT(port_open[i] != open); /* only changes are reported */
	port_open[i] = open;
}

/* ---- the hostile driver ---- */
static void wr(unsigned off, unsigned size, uint64_t v)
{
	kl_bus_write(&vm.mmio, BAR4_GPA + off, size, v);
}

static void cfg_wr(unsigned off, unsigned size, uint32_t v)
{
	kl_pci_cfg_write(&vm, slot, 0, off, size, v);
}

static void driver_init(void)
{
	wr(KL_VPCI_STATUS, 1, 0);
	wr(KL_VPCI_STATUS, 1, KL_VIRTIO_S_ACKNOWLEDGE | KL_VIRTIO_S_DRIVER);
	uint64_t f = 1ULL << KL_VIRTIO_F_VERSION_1;
	if (flags & 1)
		f |= 1ULL << 1; /* VIRTIO_CONSOLE_F_MULTIPORT */
	if (flags & 2)
		f |= 1ULL << KL_VIRTIO_F_EVENT_IDX;
	wr(KL_VPCI_GFSELECT, 4, 0);
	wr(KL_VPCI_GF, 4, (uint32_t)f);
	wr(KL_VPCI_GFSELECT, 4, 1);
	wr(KL_VPCI_GF, 4, (uint32_t)(f >> 32));
	wr(KL_VPCI_STATUS, 1, 3 | KL_VIRTIO_S_FEATURES_OK);
	uint64_t a = 0;
	for (unsigned q = 0; q < nq; q++) {
		ring[q][0] = a;
		a += 16 * QS;
		ring[q][1] = a;
		a += (6 + 2 * QS + 3) & ~3u;
		ring[q][2] = a;
		a += (6 + 8 * QS + 15) & ~15u;
		memset(ram + ring[q][0], 0, a - ring[q][0]);
		avail_idx[q] = 0;
		wr(KL_VPCI_Q_SELECT, 2, q);
		wr(KL_VPCI_Q_SIZE, 2, QS);
		wr(KL_VPCI_Q_DESC, 8, ring[q][0]);
		wr(KL_VPCI_Q_AVAIL, 8, ring[q][1]);
		wr(KL_VPCI_Q_USED, 8, ring[q][2]);
		wr(KL_VPCI_Q_ENABLE, 2, 1);
	}
	FUZZ_ASSERT(a <= BUF_BASE);
	last_used2 = 0;
	wr(KL_VPCI_STATUS, 1, 3 | KL_VIRTIO_S_FEATURES_OK | KL_VIRTIO_S_DRIVER_OK);
}

static void kick(unsigned q)
{
	wr(KL_VPCI_NOTIFY_OFF + KL_VPCI_NOTIFY_MULT * q, 2, q);
}

/* One-descriptor chain of len bytes at a fresh buffer; returns its GPA. */
static uint64_t add_buf(unsigned q, uint32_t len, bool writable)
{
	uint64_t gpa = BUF_BASE + (next_buf++ % NBUF) * BUF_SIZE;
	uint16_t d = avail_idx[q] % QS;
	struct kl_vring_desc desc = { gpa, len, writable ? KL_VRING_DESC_F_WRITE : 0, 0 };
	memcpy(ram + ring[q][0] + 16 * d, &desc, sizeof(desc));
	uint16_t *av = (uint16_t *)(ram + ring[q][1]);
	av[2 + avail_idx[q] % QS] = d;
	avail_idx[q]++;
	av[1] = avail_idx[q];
	return gpa;
}

/* Control messages the device wrote: header complete, port in range. */
static void check_ctrl_rx(void)
{
	const uint16_t *used = (const uint16_t *)(ram + ring[2][2]);
	while (last_used2 != used[1]) {
		const uint32_t *e = (const uint32_t *)(used + 2) + 2 * (last_used2 % QS);
		uint32_t id = e[0], len = e[1];
		last_used2++;
		if (id >= QS)
			continue;
		struct kl_vring_desc desc;
		memcpy(&desc, ram + ring[2][0] + 16 * id, sizeof(desc));
		FUZZ_ASSERT(len <= desc.len);
		if (desc.addr < BUF_BASE || desc.addr + desc.len > RAM_SIZE || len == 0)
			continue; /* a buffer the guest moved meanwhile */
		if (len < 8)
			FUZZ_ASSERT(len == desc.len); /* cut only by a short buffer */
		if (len >= 4) {
			uint32_t port;
			memcpy(&port, ram + desc.addr, 4);
			FUZZ_ASSERT(port < max_ports);
		}
	}
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc, (void)argv;
	fuzz_init_glib(*argv);
	kl_loop_init();
	return 0;
}

static void create(const char *spec)
{
	char *err = NULL;
	struct kl_opts *o = kl_opts_parse(spec, "driver", &err);
	FUZZ_ASSERT(o);
	const struct kl_device_type *t = kl_device_type_find(kl_opts_get(o, "driver"));
	FUZZ_ASSERT(t);
	if (t->create(&vm, o, &err) < 0) {
		fprintf(stderr, "%s: %s\n", spec, err);
		FUZZ_ASSERT(0);
	}
	kl_opts_free(o);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	max_ports = data[0] % 4 + 2;
	nq = 2 * (max_ports + 1);
	flags = data[1];
	struct fuzz_in sc = { data + 2, size - 2 };

	memset(&vm, 0, sizeof(vm));
	vm.kvm_fd = vm.vm_fd = -1;
	kl_bus_init(&vm.pio, "pio");
	kl_bus_init(&vm.mmio, "mmio");
	kl_mem_init_empty(&vm.mem);
	ram = calloc(1, RAM_SIZE);
	kl_mem_add_region(&vm.mem, 0, RAM_SIZE, ram);
	char *err = NULL;
	FUZZ_ASSERT(kl_pci_host_create(&vm, &fuzz_pci_ops, &err));
	FUZZ_ASSERT(kl_chardev_add("ringbuf,id=r0,size=1024", &err) == 0);
	FUZZ_ASSERT(kl_chardev_add("ringbuf,id=r1,size=1024", &err) == 0);
	char spec[96];
	snprintf(spec, sizeof(spec), "virtio-serial-pci,id=vs,max_ports=%u", max_ports);
	create(spec);
	create("virtconsole,chardev=r0,id=c0,bus=vs.0");
	create("virtserialport,chardev=r1,id=p1,name=org.qemu.guest_agent.0,bus=vs.0");
	for (slot = 1; slot < 32; slot++)
		if (kl_pci_cfg_read(&vm, slot, 0, 0, 4) == (0x1043u << 16 | 0x1af4))
			break;
	FUZZ_ASSERT(slot < 32);
	cfg_wr(KL_PCI_BAR0 + 4 * KL_VPCI_BAR, 4, BAR4_GPA);
	cfg_wr(KL_PCI_BAR0 + 4 * KL_VPCI_BAR + 4, 4, 0);
	cfg_wr(KL_PCI_COMMAND, 2, KL_PCI_CMD_MEMORY | KL_PCI_CMD_MASTER);
	driver_init();

	while (sc.len) {
		uint8_t op = fuzz_u8(&sc);
		switch (op % 8) {
		case 0: { /* a control message (any length 0..15) on queue 3 */
			uint8_t m[16];
			uint32_t id = op & 0x80 ? fuzz_u32(&sc) : fuzz_u8(&sc) % 8;
			uint16_t ev = fuzz_u8(&sc) % 10, val = fuzz_u8(&sc) % 3;
			memcpy(m, &id, 4);
			memcpy(m + 4, &ev, 2);
			memcpy(m + 6, &val, 2);
			for (unsigned i = 8; i < 16; i++)
				m[i] = fuzz_u8(&sc);
			uint32_t len = op & 0x40 ? fuzz_u8(&sc) % 16 : 8;
			memcpy(ram + add_buf(3, len, false), m, sizeof(m));
			kick(3);
			break;
		}
		case 1: { /* an rx buffer on some queue */
			unsigned q = fuzz_u8(&sc) % nq;
			add_buf(q, fuzz_u8(&sc), true);
			kick(q);
			break;
		}
		case 2: { /* data on some queue (a tx queue normally) */
			unsigned q = fuzz_u8(&sc) % nq;
			uint32_t len = fuzz_u8(&sc) % 32;
			uint64_t gpa = add_buf(q, len, false);
			for (uint32_t i = 0; i < len; i++)
				ram[gpa + i] = fuzz_u8(&sc);
			kick(q);
			break;
		}
		case 3:
			kick(fuzz_u8(&sc) % (nq + 2)); /* (two past the last queue) */
			break;
		case 4:
			driver_init();
			break;
		case 5: { /* the guest scribbles on its buffers (hostile rings are
			   the virtqueue target's) */
			uint16_t off = fuzz_u16(&sc);
			ram[BUF_BASE + off % (RAM_SIZE - BUF_BASE)] = fuzz_u8(&sc);
			break;
		}
		case 6: { /* the host reads a ring buffer */
			uint8_t *out;
			size_t len;
			FUZZ_ASSERT(kl_chardev_ringbuf_read(op & 0x80 ? "r1" : "r0", 1 + fuzz_u8(&sc),
							    &out, &len, &err) == 0);
			g_free(out);
			break;
		}
		case 7: /* emergency write, or any device config write */
			wr(KL_VPCI_DEVCFG_OFF + (op & 0x80 ? fuzz_u8(&sc) % 16 : 8), 1 << (op >> 5 & 1),
			   fuzz_u16(&sc));
			break;
		}
		check_ctrl_rx();
	}

	fuzz_platform_vm_reset(); /* closes every port: events for the open ones */
	FUZZ_ASSERT(!port_open[0] && !port_open[1]);
	kl_pci_host_destroy(&vm);
	kl_chardev_cleanup();
	kl_vmstate_free_all(&vm);
	fuzz_platform_forget();
	kl_bus_destroy(&vm.pio);
	kl_bus_destroy(&vm.mmio);
	free(ram);
	next_buf = 0;
	return 0;
}
