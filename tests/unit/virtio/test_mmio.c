/* The virtio-mmio transport (src/virtio/virtio_mmio.c) with a hand-built
 * struct kl_vm, guest RAM from calloc and fake platform ops (no /dev/kvm):
 * registers through the MMIO bus as a guest does them, feature
 * negotiation, queue setup, bad accesses, the interrupt line, the
 * microvm slot allocation, and the VM state section. */
#include <check.h>

#include "../kl_check.h"
#include <glib.h>
#include <stdlib.h>
#include <string.h>

#include "kvmlite/microvm.h"
#include "kvmlite/pci.h"
#include "kvmlite/virtio.h"
#include "kvmlite/vm.h"
#include "kvmlite/vmstate.h"

#define BASE 0xfeb00000ULL
#define GSI 5
#define RAM_SIZE (1u << 20)

static int irq_level[32];
static int ioeventfds, ioeventfd_len, ioeventfd_datamatch;
static uint64_t ioeventfd_addr;

static int f_set_irq(struct kl_vm *vm, unsigned gsi, int level)
{
	(void)vm;
	ck_assert_uint_lt(gsi, 32);
	irq_level[gsi] = level;
	return 0;
}
static int f_ioeventfd(struct kl_vm *vm, uint64_t addr, unsigned len, bool pio, int efd,
		       bool datamatch, uint64_t data, bool assign)
{
	(void)vm; (void)pio; (void)efd; (void)data;
	ioeventfds += assign ? 1 : -1;
	ioeventfd_addr = addr;
	ioeventfd_len = len;
	ioeventfd_datamatch = datamatch;
	return 0;
}
static const struct kl_pci_platform_ops fake_ops = { .set_irq = f_set_irq,
						     .ioeventfd = f_ioeventfd };

static struct kl_vm vm;
static uint8_t *ram;

/* kl_microvm_init registers the slots' free function among the VM's
 * cleanups (src/cpu/vm.c is not linked here): keep it to run it */
static GDestroyNotify cleanup_fn;
static void *cleanup_opaque;
void kl_vm_add_cleanup(struct kl_vm *v, GDestroyNotify fn, void *opaque)
{
	ck_assert_ptr_eq(v, &vm);
	cleanup_fn = fn;
	cleanup_opaque = opaque;
}
static struct kl_virtio_dev *vd;
static unsigned kicks[4], resets, completed;
static uint8_t cfg_written[8];

static void t_notify(struct kl_virtio_dev *d, unsigned q)
{
	kicks[q]++;
	struct kl_vq_elem *e;
	while ((e = kl_virtio_pop(d, q))) {
		kl_virtio_complete(d, q, e, 5);
		completed++;
	}
}
static void t_reset(struct kl_virtio_dev *d) { (void)d; resets++; }
static void t_cfg_write(struct kl_virtio_dev *d, unsigned off, const void *buf, unsigned len)
{
	(void)d;
	if (off + len <= sizeof(cfg_written))
		memcpy(cfg_written + off, buf, len);
}
static const struct kl_virtio_ops tops = {
	.device_features = 1ULL << 5 | 1ULL << 40,
	.queue_notify = t_notify,
	.reset = t_reset,
	.config_write = t_cfg_write,
};

static struct kl_virtio_dev *make(uint64_t base, unsigned gsi)
{
	struct kl_virtio_pci_info info = { .name = "virtio-test-device", .device_id = 2,
					   .num_queues = 2, .queue_size = 16, .config_len = 8 };
	char *err = NULL;
	struct kl_virtio_dev *d = kl_virtio_mmio_create(&vm, &fake_ops, base, gsi, &info, &tops,
							NULL, &err);
	ck_assert_msg(d != NULL, "%s", err ? err : "");
	memcpy(d->config, "\x11\x22\x33\x44\x55\x66\x77\x88", 8);
	return d;
}

static void setup(void)
{
	memset(&vm, 0, sizeof(vm));
	memset(irq_level, 0, sizeof(irq_level));
	memset(kicks, 0, sizeof(kicks));
	memset(cfg_written, 0, sizeof(cfg_written));
	resets = completed = 0;
	ioeventfds = 0;
	kl_bus_init(&vm.pio, "pio");
	kl_bus_init(&vm.mmio, "mmio");
	kl_mem_init_empty(&vm.mem);
	ram = calloc(1, RAM_SIZE);
	kl_mem_add_region(&vm.mem, 0, RAM_SIZE, ram);
	vd = make(BASE, GSI);
}

static void teardown(void)
{
	kl_virtio_mmio_destroy(vd);
	ck_assert_int_eq(ioeventfds, 0);
	ck_assert_uint_eq(vm.mmio.n, 0);
	kl_vmstate_free_all(&vm);
	kl_bus_destroy(&vm.pio);
	kl_bus_destroy(&vm.mmio);
	free(ram);
}

static uint64_t rd(unsigned off, unsigned size)
{
	uint64_t v = 0;
	ck_assert(kl_bus_read(&vm.mmio, BASE + off, size, &v));
	return v;
}
static void wr(unsigned off, unsigned size, uint64_t v)
{
	ck_assert(kl_bus_write(&vm.mmio, BASE + off, size, v));
}
static uint32_t rd32(unsigned off) { return rd(off, 4); }
static void wr32(unsigned off, uint32_t v) { wr(off, 4, v); }

static void negotiate(uint32_t lo, uint32_t hi)
{
	wr32(KL_VMMIO_STATUS, 0);
	wr32(KL_VMMIO_STATUS, KL_VIRTIO_S_ACKNOWLEDGE | KL_VIRTIO_S_DRIVER);
	wr32(KL_VMMIO_DRIVER_FEATURES_SEL, 0);
	wr32(KL_VMMIO_DRIVER_FEATURES, lo);
	wr32(KL_VMMIO_DRIVER_FEATURES_SEL, 1);
	wr32(KL_VMMIO_DRIVER_FEATURES, hi);
	wr32(KL_VMMIO_STATUS, 1 | 2 | KL_VIRTIO_S_FEATURES_OK);
}

static void ring(unsigned q, uint64_t desc, uint64_t avail, uint64_t used, unsigned num)
{
	wr32(KL_VMMIO_QUEUE_SEL, q);
	wr32(KL_VMMIO_QUEUE_NUM, num);
	wr32(KL_VMMIO_QUEUE_DESC_LOW, (uint32_t)desc);
	wr32(KL_VMMIO_QUEUE_DESC_HIGH, desc >> 32);
	wr32(KL_VMMIO_QUEUE_AVAIL_LOW, (uint32_t)avail);
	wr32(KL_VMMIO_QUEUE_AVAIL_HIGH, avail >> 32);
	wr32(KL_VMMIO_QUEUE_USED_LOW, (uint32_t)used);
	wr32(KL_VMMIO_QUEUE_USED_HIGH, used >> 32);
}

/* queue 0 at 0x1000/0x2000/0x3000 with 8 entries, DRIVER_OK */
static void bring_up(void)
{
	negotiate(0, 1);
	ring(0, 0x1000, 0x2000, 0x3000, 8);
	wr32(KL_VMMIO_QUEUE_READY, 1);
	ck_assert_uint_eq(rd32(KL_VMMIO_QUEUE_READY), 1);
	wr32(KL_VMMIO_STATUS, 1 | 2 | KL_VIRTIO_S_FEATURES_OK | KL_VIRTIO_S_DRIVER_OK);
	ck_assert(kl_virtio_ready(vd));
}

/* one device-writable buffer at 0x5000 made available on queue 0 */
static void post_buffer(uint16_t avail_idx)
{
	struct kl_vring_desc *d = (struct kl_vring_desc *)(ram + 0x1000);
	d[0] = (struct kl_vring_desc){ 0x5000, 64, KL_VRING_DESC_F_WRITE, 0 };
	uint16_t *av = (uint16_t *)(ram + 0x2000);
	av[2 + (avail_idx - 1) % 8] = 0;
	av[1] = avail_idx;
}

START_TEST(id_registers)
{
	ck_assert_uint_eq(rd32(KL_VMMIO_MAGIC_VALUE), 0x74726976);
	ck_assert_uint_eq(rd32(KL_VMMIO_VERSION_REG), 2);
	ck_assert_uint_eq(rd32(KL_VMMIO_DEVICE_ID), 2);
	ck_assert_uint_eq(rd32(KL_VMMIO_VENDOR_ID), 0x554d4551);
	ck_assert_uint_eq(rd32(KL_VMMIO_STATUS), 0);
	ck_assert_uint_eq(rd32(KL_VMMIO_SHM_LEN_LOW), 0xffffffffu);
	ck_assert_str_eq(vd->inst, "0xfeb00000");
	ck_assert_ptr_nonnull(kl_vmstate_find(&vm, "virtio-mmio/0xfeb00000"));
	/* the notify register is one datamatch ioeventfd per queue */
	ck_assert_int_eq(ioeventfds, 2);
	ck_assert_uint_eq(ioeventfd_addr, BASE + KL_VMMIO_QUEUE_NOTIFY);
	ck_assert_int_eq(ioeventfd_len, 4);
	ck_assert(ioeventfd_datamatch);
}
END_TEST

START_TEST(features)
{
	wr32(KL_VMMIO_DEVICE_FEATURES_SEL, 0);
	ck_assert_uint_eq(rd32(KL_VMMIO_DEVICE_FEATURES),
			  1u << 5 | 1u << KL_VIRTIO_F_INDIRECT_DESC | 1u << KL_VIRTIO_F_EVENT_IDX);
	wr32(KL_VMMIO_DEVICE_FEATURES_SEL, 1);
	ck_assert_uint_eq(rd32(KL_VMMIO_DEVICE_FEATURES), 1u << 8 | 1u << 0);
	wr32(KL_VMMIO_DEVICE_FEATURES_SEL, 2);
	ck_assert_uint_eq(rd32(KL_VMMIO_DEVICE_FEATURES), 0);
	/* an offered subset with VERSION_1 is accepted */
	negotiate(1u << 5, 1);
	ck_assert(rd32(KL_VMMIO_STATUS) & KL_VIRTIO_S_FEATURES_OK);
	ck_assert(kl_virtio_has_feature(vd, 5));
	ck_assert(kl_virtio_has_feature(vd, KL_VIRTIO_F_VERSION_1));
	ck_assert(!kl_virtio_has_feature(vd, 40));
	/* driver features are frozen after FEATURES_OK */
	wr32(KL_VMMIO_DRIVER_FEATURES_SEL, 1);
	wr32(KL_VMMIO_DRIVER_FEATURES, 1 | 1u << 8);
	ck_assert_uint_eq(vd->guest_features >> 32, 1);
	/* without VERSION_1, or with a bit not offered: FEATURES_OK stays clear */
	negotiate(1u << 5, 0);
	ck_assert(!(rd32(KL_VMMIO_STATUS) & KL_VIRTIO_S_FEATURES_OK));
	negotiate(1u << 6, 1);
	ck_assert(!(rd32(KL_VMMIO_STATUS) & KL_VIRTIO_S_FEATURES_OK));
	/* DRIVER_OK without FEATURES_OK is refused */
	wr32(KL_VMMIO_STATUS, 1 | 2 | KL_VIRTIO_S_DRIVER_OK);
	ck_assert(!(rd32(KL_VMMIO_STATUS) & KL_VIRTIO_S_DRIVER_OK));
}
END_TEST

START_TEST(queue_setup)
{
	negotiate(0, 1);
	wr32(KL_VMMIO_QUEUE_SEL, 1);
	ck_assert_uint_eq(rd32(KL_VMMIO_QUEUE_NUM_MAX), 16);
	wr32(KL_VMMIO_QUEUE_SEL, 2); /* no such queue */
	ck_assert_uint_eq(rd32(KL_VMMIO_QUEUE_NUM_MAX), 0);
	ck_assert_uint_eq(rd32(KL_VMMIO_QUEUE_READY), 0);
	wr32(KL_VMMIO_QUEUE_READY, 1); /* ignored */
	ring(1, 0x1000, 0x2000, 0x3000, 8);
	wr32(KL_VMMIO_QUEUE_READY, 1);
	ck_assert_uint_eq(rd32(KL_VMMIO_QUEUE_READY), 1);
	struct kl_virtq *q = &vd->vqs[1];
	ck_assert(q->enabled);
	ck_assert_uint_eq(q->size, 8);
	ck_assert_uint_eq(q->desc_gpa, 0x1000);
	ck_assert_uint_eq(q->avail_gpa, 0x2000);
	ck_assert_uint_eq(q->used_gpa, 0x3000);
	/* ring registers are frozen while the queue is ready */
	wr32(KL_VMMIO_QUEUE_DESC_LOW, 0x8000);
	wr32(KL_VMMIO_QUEUE_NUM, 4);
	ck_assert_uint_eq(q->desc_gpa, 0x1000);
	ck_assert_uint_eq(q->size, 8);
	/* QueueReady=0 turns it off (back to the reset values) */
	wr32(KL_VMMIO_QUEUE_READY, 0);
	ck_assert_uint_eq(rd32(KL_VMMIO_QUEUE_READY), 0);
	ck_assert_uint_eq(q->size, 16);
	ck_assert_uint_eq(q->desc_gpa, 0);
	ck_assert(!vd->broken);
}
END_TEST

START_TEST(queue_num_bad)
{
	negotiate(0, 1);
	ring(0, 0x1000, 0x2000, 0x3000, 32); /* above QueueNumMax: ignored */
	ck_assert_uint_eq(vd->vqs[0].size, 16);
	wr32(KL_VMMIO_QUEUE_NUM, 0);          /* 0: ignored */
	ck_assert_uint_eq(vd->vqs[0].size, 16);
	wr32(KL_VMMIO_QUEUE_NUM, 6);          /* not a power of two: ready fails */
	wr32(KL_VMMIO_QUEUE_READY, 1);
	ck_assert_uint_eq(rd32(KL_VMMIO_QUEUE_READY), 0);
	ck_assert(vd->broken);
	ck_assert(rd32(KL_VMMIO_STATUS) & KL_VIRTIO_S_NEEDS_RESET);
}
END_TEST

START_TEST(ring_outside_ram)
{
	negotiate(0, 1);
	ring(0, 0x7f00000000ULL, 0x2000, 0x3000, 8);
	wr32(KL_VMMIO_QUEUE_READY, 1);
	ck_assert_uint_eq(rd32(KL_VMMIO_QUEUE_READY), 0);
	ck_assert(rd32(KL_VMMIO_STATUS) & KL_VIRTIO_S_NEEDS_RESET);
	/* the used ring ending past the end of RAM */
	negotiate(0, 1);
	ck_assert(!vd->broken);
	ring(0, 0x1000, 0x2000, RAM_SIZE - 8, 8);
	wr32(KL_VMMIO_QUEUE_READY, 1);
	ck_assert_uint_eq(rd32(KL_VMMIO_QUEUE_READY), 0);
	ck_assert(vd->broken);
	/* a reset recovers */
	wr32(KL_VMMIO_STATUS, 0);
	ck_assert_uint_eq(rd32(KL_VMMIO_STATUS), 0);
	ck_assert(!vd->broken);
	ck_assert_uint_ge(resets, 1);
}
END_TEST

START_TEST(bad_accesses)
{
	/* registers: 32-bit only; anything else reads 0 and writes nothing */
	ck_assert_uint_eq(rd(KL_VMMIO_MAGIC_VALUE, 1), 0);
	ck_assert_uint_eq(rd(KL_VMMIO_MAGIC_VALUE, 2), 0);
	ck_assert_uint_eq(rd(KL_VMMIO_MAGIC_VALUE, 8), 0);
	ck_assert_uint_eq(rd(KL_VMMIO_MAGIC_VALUE + 1, 4), 0); /* misaligned */
	wr(KL_VMMIO_STATUS, 1, KL_VIRTIO_S_ACKNOWLEDGE);
	wr(KL_VMMIO_STATUS, 2, KL_VIRTIO_S_ACKNOWLEDGE);
	wr(KL_VMMIO_STATUS, 8, KL_VIRTIO_S_ACKNOWLEDGE);
	ck_assert_uint_eq(vd->status, 0);
	wr(KL_VMMIO_QUEUE_SEL, 2, 1);
	ck_assert_uint_eq(vd->queue_sel, 0);
	/* write-only and reserved registers read 0; read-only ones ignore writes */
	ck_assert_uint_eq(rd32(KL_VMMIO_QUEUE_NOTIFY), 0);
	ck_assert_uint_eq(rd32(KL_VMMIO_INTERRUPT_ACK), 0);
	ck_assert_uint_eq(rd32(0x0e0), 0);
	wr32(KL_VMMIO_MAGIC_VALUE, 0);
	wr32(KL_VMMIO_QUEUE_NUM_MAX, 1);
	ck_assert_uint_eq(rd32(KL_VMMIO_MAGIC_VALUE), 0x74726976);
	ck_assert_uint_eq(rd32(KL_VMMIO_QUEUE_NUM_MAX), 16);
	/* QueueSel past the queues: queue registers are inert */
	wr32(KL_VMMIO_QUEUE_SEL, 0xffffffffu);
	wr32(KL_VMMIO_QUEUE_NUM, 8);
	wr32(KL_VMMIO_QUEUE_DESC_LOW, 0x1000);
	wr32(KL_VMMIO_QUEUE_READY, 1);
	ck_assert(!vd->vqs[0].enabled && !vd->vqs[1].enabled);
	/* a kick of a queue that does not exist */
	wr32(KL_VMMIO_QUEUE_NOTIFY, 9);
	ck_assert_uint_eq(kicks[0] + kicks[1], 0);
	/* the whole 512-byte window is the device's; past the config space reads 0 */
	ck_assert_uint_eq(rd(KL_VMMIO_CONFIG + 8, 4), 0);
	ck_assert_uint_eq(rd(KL_VMMIO_SIZE - 4, 4), 0);
	uint64_t v;
	ck_assert(!kl_bus_read(&vm.mmio, BASE + KL_VMMIO_SIZE, 4, &v));
	ck_assert(!vd->broken);
}
END_TEST

START_TEST(config_space)
{
	ck_assert_uint_eq(rd(KL_VMMIO_CONFIG, 1), 0x11);
	ck_assert_uint_eq(rd(KL_VMMIO_CONFIG + 2, 2), 0x4433);
	ck_assert_uint_eq(rd(KL_VMMIO_CONFIG + 4, 4), 0x88776655);
	ck_assert_uint_eq(rd(KL_VMMIO_CONFIG + 6, 4), 0x8877); /* partly past the end */
	ck_assert_uint_eq(rd(KL_VMMIO_CONFIG, 8), 0);          /* 8-byte access refused */
	wr(KL_VMMIO_CONFIG + 1, 2, 0xbeef);
	ck_assert_uint_eq(cfg_written[1], 0xef);
	ck_assert_uint_eq(cfg_written[2], 0xbe);
	wr(KL_VMMIO_CONFIG + 6, 4, 0x01020304); /* past the end: dropped */
	ck_assert_uint_eq(cfg_written[6], 0);
	uint8_t g = rd32(KL_VMMIO_CONFIG_GENERATION);
	kl_virtio_config_changed(vd);
	ck_assert_uint_eq(rd32(KL_VMMIO_CONFIG_GENERATION), (uint8_t)(g + 1));
	ck_assert_int_eq(irq_level[GSI], 0); /* no interrupt before DRIVER_OK */
}
END_TEST

START_TEST(notify_and_irq)
{
	bring_up();
	post_buffer(1);
	wr32(KL_VMMIO_QUEUE_NOTIFY, 0);
	ck_assert_uint_eq(kicks[0], 1);
	ck_assert_uint_eq(completed, 1);
	uint16_t *used = (uint16_t *)(ram + 0x3000);
	ck_assert_uint_eq(used[1], 1);
	ck_assert_uint_eq(*(uint32_t *)(ram + 0x3000 + 8), 5); /* len */
	ck_assert_uint_eq(rd32(KL_VMMIO_INTERRUPT_STATUS), 1);
	ck_assert_int_eq(irq_level[GSI], 1);
	/* a config change adds bit 1; ACK of bit 0 keeps the line up */
	kl_virtio_config_changed(vd);
	ck_assert_uint_eq(rd32(KL_VMMIO_INTERRUPT_STATUS), 3);
	wr32(KL_VMMIO_INTERRUPT_ACK, 1);
	ck_assert_uint_eq(rd32(KL_VMMIO_INTERRUPT_STATUS), 2);
	ck_assert_int_eq(irq_level[GSI], 1);
	wr32(KL_VMMIO_INTERRUPT_ACK, 2);
	ck_assert_uint_eq(rd32(KL_VMMIO_INTERRUPT_STATUS), 0);
	ck_assert_int_eq(irq_level[GSI], 0);
	/* reset drops the line and the queue */
	post_buffer(2);
	wr32(KL_VMMIO_QUEUE_NOTIFY, 0);
	ck_assert_int_eq(irq_level[GSI], 1);
	wr32(KL_VMMIO_STATUS, 0);
	ck_assert_int_eq(irq_level[GSI], 0);
	ck_assert(!vd->vqs[0].enabled);
	/* no kick before DRIVER_OK */
	wr32(KL_VMMIO_QUEUE_NOTIFY, 0);
	ck_assert_uint_eq(kicks[0], 2);
}
END_TEST

START_TEST(broken_chain)
{
	bring_up();
	struct kl_vring_desc *d = (struct kl_vring_desc *)(ram + 0x1000);
	d[0] = (struct kl_vring_desc){ 0x7f00000000ULL, 64, KL_VRING_DESC_F_WRITE, 0 };
	uint16_t *av = (uint16_t *)(ram + 0x2000);
	av[2] = 0;
	av[1] = 1;
	wr32(KL_VMMIO_QUEUE_NOTIFY, 0);
	ck_assert_uint_eq(completed, 0);
	ck_assert(rd32(KL_VMMIO_STATUS) & KL_VIRTIO_S_NEEDS_RESET);
	ck_assert_uint_eq(rd32(KL_VMMIO_INTERRUPT_STATUS), 2); /* config interrupt */
	ck_assert_int_eq(irq_level[GSI], 1);
}
END_TEST

START_TEST(slots)
{
	char *err = NULL;
	ck_assert_int_eq(kl_microvm_init(&vm, &err), 0);
	ck_assert_ptr_nonnull(vm.virtio_mmio);
	struct kl_virtio_mmio_slots *s = vm.virtio_mmio;
	s->base = 0xd0000000ULL; /* clear of the test's own transport */
	struct kl_virtio_pci_info info = { .name = "virtio-x-device", .device_id = 4,
					   .num_queues = 1, .queue_size = 8, .config_len = 0 };
	struct kl_virtio_dev *devs[KL_VMMIO_MAX_SLOTS];
	unsigned n = 0;
	/* the machine's slots use the default platform ops: these fakes */
	const struct kl_pci_platform_ops *saved = kl_pci_default_platform_ops;
	kl_pci_default_platform_ops = &fake_ops;
	for (; n < s->count; n++) {
		devs[n] = kl_virtio_create(&vm, KL_VIRTIO_TRANSPORT_MMIO, &info, &tops, NULL, &err);
		ck_assert_msg(devs[n] != NULL, "%s", err);
		ck_assert_uint_eq(devs[n]->mmio_base, 0xd0000000ULL + n * KL_VMMIO_SIZE);
		ck_assert_uint_eq(devs[n]->mmio_gsi, s->gsi[n]);
	}
	ck_assert_uint_eq(n, 7);
	ck_assert_ptr_null(kl_virtio_create(&vm, KL_VIRTIO_TRANSPORT_MMIO, &info, &tops, NULL, &err));
	ck_assert_msg(strstr(err, "virtio-x-device") && strstr(err, "all 7"), "%s", err);
	g_free(err);
	err = NULL;
	char *cl = kl_microvm_cmdline(&vm, "console=ttyS0");
	ck_assert_str_eq(cl, "console=ttyS0 virtio_mmio.device=512@0xd0000000:5 "
			     "virtio_mmio.device=512@0xd0000200:6 virtio_mmio.device=512@0xd0000400:7 "
			     "virtio_mmio.device=512@0xd0000600:12 virtio_mmio.device=512@0xd0000800:13 "
			     "virtio_mmio.device=512@0xd0000a00:14 virtio_mmio.device=512@0xd0000c00:15");
	g_free(cl);
	for (unsigned i = 0; i < n; i++)
		kl_virtio_mmio_destroy(devs[i]);
	kl_pci_default_platform_ops = saved;
	ck_assert_ptr_nonnull(cleanup_fn);
	cleanup_fn(cleanup_opaque); /* the VM's teardown frees the slots */
	ck_assert_ptr_null(vm.virtio_mmio);
	/* without slots: a clear error naming the device */
	ck_assert_ptr_null(kl_virtio_create(&vm, KL_VIRTIO_TRANSPORT_MMIO, &info, &tops, NULL, &err));
	ck_assert_msg(strstr(err, "virtio-x-device") && strstr(err, "microvm"), "%s", err);
	g_free(err);
}
END_TEST

START_TEST(overlap_refused)
{
	struct kl_virtio_pci_info info = { .name = "virtio-y-device", .device_id = 2,
					   .num_queues = 1, .queue_size = 8, .config_len = 0 };
	char *err = NULL;
	ck_assert_ptr_null(kl_virtio_mmio_create(&vm, &fake_ops, BASE, 6, &info, &tops, NULL, &err));
	ck_assert_msg(strstr(err, "virtio-y-device") && strstr(err, "taken"), "%s", err);
	g_free(err);
	err = NULL;
	info.config_len = 0x200; /* does not fit in the window */
	ck_assert_ptr_null(kl_virtio_mmio_create(&vm, &fake_ops, 0xd0000000ULL, 6, &info, &tops,
						 NULL, &err));
	g_free(err);
	ck_assert_int_eq(ioeventfds, 2); /* only the fixture's */
}
END_TEST

/* ---- VM state ---- */
static GByteArray *save_section(void)
{
	const struct kl_vmstate_entry *e = kl_vmstate_find(&vm, "virtio-mmio/0xfeb00000");
	ck_assert_ptr_nonnull(e);
	struct kl_vms_out o;
	kl_vms_out_init(&o);
	char *err = NULL;
	ck_assert_msg(e->ops->save(e->opaque, &o, &err) == 0, "%s", err);
	return o.buf;
}

static int load_section(const GByteArray *b, char **err)
{
	const struct kl_vmstate_entry *e = kl_vmstate_find(&vm, "virtio-mmio/0xfeb00000");
	int r = kl_vmstate_load_section(e, b->data, b->len, e->ops->version, err);
	if (r == 0 && e->ops->post_load)
		r = e->ops->post_load(e->opaque, err);
	return r;
}

START_TEST(state_roundtrip)
{
	bring_up();
	post_buffer(1);
	wr32(KL_VMMIO_QUEUE_NOTIFY, 0);
	wr32(KL_VMMIO_QUEUE_SEL, 1);
	wr32(KL_VMMIO_DEVICE_FEATURES_SEL, 1);
	ck_assert_uint_eq(rd32(KL_VMMIO_INTERRUPT_STATUS), 1);
	GByteArray *b = save_section();
	/* a fresh device (what the destination has) takes the state */
	kl_virtio_mmio_destroy(vd);
	memset(irq_level, 0, sizeof(irq_level));
	vd = make(BASE, GSI);
	char *err = NULL;
	ck_assert_msg(load_section(b, &err) == 0, "%s", err);
	ck_assert(kl_virtio_ready(vd));
	ck_assert_uint_eq(vd->queue_sel, 1);
	ck_assert_uint_eq(rd32(KL_VMMIO_QUEUE_READY), 0);    /* queue 1 was never set up */
	ck_assert_uint_eq(vd->dfselect, 1);
	ck_assert(vd->vqs[0].enabled);
	ck_assert_uint_eq(vd->vqs[0].desc_gpa, 0x1000);
	ck_assert_uint_eq(vd->vqs[0].size, 8);
	ck_assert_uint_eq(rd32(KL_VMMIO_INTERRUPT_STATUS), 1);
	ck_assert_int_eq(irq_level[GSI], 1); /* post_load raised the line again */
	/* and the queue works on */
	post_buffer(2);
	wr32(KL_VMMIO_QUEUE_NOTIFY, 0);
	ck_assert_uint_eq(((uint16_t *)(ram + 0x3000))[1], 2);
	g_byte_array_free(b, TRUE);
}
END_TEST

START_TEST(state_bad)
{
	bring_up();
	GByteArray *b = save_section();
	char *err = NULL;
	/* another base in the stream */
	GByteArray *c = g_byte_array_new();
	g_byte_array_append(c, b->data, b->len);
	c->data[1] ^= 0x10;
	ck_assert_int_eq(load_section(c, &err), -1);
	ck_assert_msg(err && strstr(err, "irq"), "%s", err ? err : "(none)");
	g_free(err);
	err = NULL;
	/* truncated */
	g_byte_array_set_size(c, 0);
	g_byte_array_append(c, b->data, b->len - 3);
	ck_assert_int_eq(load_section(c, &err), -1);
	g_free(err);
	err = NULL;
	/* status DRIVER_OK without FEATURES_OK (offset: base 8, gsi 4, nvqs 4,
	 * host 8, guest 8, features 8, dfsel 4, gfsel 4 -> status at 48) */
	g_byte_array_set_size(c, 0);
	g_byte_array_append(c, b->data, b->len);
	ck_assert_uint_eq(c->data[48], vd->status);
	c->data[48] = KL_VIRTIO_S_DRIVER_OK;
	ck_assert_int_eq(load_section(c, &err), -1);
	ck_assert_msg(err && strstr(err, "DRIVER_OK"), "%s", err ? err : "(none)");
	g_free(err);
	err = NULL;
	/* a config vector (the transport has no MSI-X: only NO_VECTOR) */
	g_byte_array_set_size(c, 0);
	g_byte_array_append(c, b->data, b->len);
	c->data[52] = 0;
	c->data[53] = 0;
	ck_assert_int_eq(load_section(c, &err), -1);
	ck_assert_msg(err && strstr(err, "vector"), "%s", err ? err : "(none)");
	g_free(err);
	/* nothing changed by the failed loads */
	ck_assert(kl_virtio_ready(vd));
	ck_assert_uint_eq(vd->vqs[0].desc_gpa, 0x1000);
	g_byte_array_free(c, TRUE);
	g_byte_array_free(b, TRUE);
}
END_TEST

static Suite *mmio_suite(void)
{
	Suite *s = suite_create("virtio-mmio");
	TCase *tc = tcase_create("mmio");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, id_registers);
	tcase_add_test(tc, features);
	tcase_add_test(tc, queue_setup);
	tcase_add_test(tc, queue_num_bad);
	tcase_add_test(tc, ring_outside_ram);
	tcase_add_test(tc, bad_accesses);
	tcase_add_test(tc, config_space);
	tcase_add_test(tc, notify_and_irq);
	tcase_add_test(tc, broken_chain);
	tcase_add_test(tc, slots);
	tcase_add_test(tc, overlap_refused);
	tcase_add_test(tc, state_roundtrip);
	tcase_add_test(tc, state_bad);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	return kl_check_run(mmio_suite());
}
