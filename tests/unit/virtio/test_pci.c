/* PCI host (config mechanism, BARs, capabilities, MSI-X, INTx) and the
 * virtio-pci transport, with a hand-built struct kl_vm and fake platform
 * ops (no /dev/kvm). */
#include <check.h>

#include "../kl_check.h"
#include <glib.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kvmlite/pci.h"
#include "kvmlite/virtio.h"
#include "kvmlite/vm.h"
#include "kvmlite/vmstate.h"

/* ---- fake platform ---- */
static int irq_level[32];
static int irq_calls;
static int routes_added, routes_updated, irqfds_assigned, irqfds_deassigned, msis_signalled;
static uint64_t last_route_addr;
static uint32_t last_route_data;
static int ioeventfds;

static int f_set_irq(struct kl_vm *vm, unsigned gsi, int level)
{
	(void)vm;
	ck_assert_uint_lt(gsi, 32);
	irq_level[gsi] = level;
	irq_calls++;
	return 0;
}
static int f_irqfd(struct kl_vm *vm, int efd, unsigned gsi, bool assign)
{
	(void)vm; (void)efd; (void)gsi;
	if (assign)
		irqfds_assigned++;
	else
		irqfds_deassigned++;
	return 0;
}
static int f_ioeventfd(struct kl_vm *vm, uint64_t addr, unsigned len, bool pio, int efd,
		       bool datamatch, uint64_t data, bool assign)
{
	(void)vm; (void)addr; (void)len; (void)pio; (void)efd; (void)datamatch; (void)data;
	ioeventfds += assign ? 1 : -1;
	return 0;
}
static int f_route_add(struct kl_vm *vm, uint64_t addr, uint32_t data)
{
	(void)vm;
	last_route_addr = addr;
	last_route_data = data;
	return 100 + routes_added++;
}
static int f_route_update(struct kl_vm *vm, unsigned gsi, uint64_t addr, uint32_t data)
{
	(void)vm; (void)gsi;
	last_route_addr = addr;
	last_route_data = data;
	routes_updated++;
	return 0;
}
static void f_route_del(struct kl_vm *vm, unsigned gsi) { (void)vm; (void)gsi; }
static int f_signal_msi(struct kl_vm *vm, uint64_t addr, uint32_t data)
{
	(void)vm; (void)addr; (void)data;
	msis_signalled++;
	return 0;
}

static const struct kl_pci_platform_ops fake_ops = {
	.set_irq = f_set_irq, .irqfd = f_irqfd, .ioeventfd = f_ioeventfd,
	.msi_route_add = f_route_add, .msi_route_update = f_route_update,
	.msi_route_del = f_route_del, .signal_msi = f_signal_msi,
};

static struct kl_vm vm;
static uint8_t *ram;
#define RAM_SIZE (1u << 20)

static void setup(void)
{
	memset(&vm, 0, sizeof(vm));
	memset(irq_level, 0, sizeof(irq_level));
	irq_calls = routes_added = routes_updated = irqfds_assigned = irqfds_deassigned = 0;
	msis_signalled = ioeventfds = 0;
	kl_bus_init(&vm.pio, "pio");
	kl_bus_init(&vm.mmio, "mmio");
	kl_mem_init_empty(&vm.mem);
	ram = calloc(1, RAM_SIZE);
	kl_mem_add_region(&vm.mem, 0, RAM_SIZE, ram);
	char *err = NULL;
	ck_assert_ptr_nonnull(kl_pci_host_create(&vm, &fake_ops, &err));
}

static void teardown(void)
{
	kl_pci_host_destroy(&vm);
	kl_vmstate_free_all(&vm); /* the (now empty) section registry */
	ck_assert_uint_eq(vm.pio.n, 0);
	ck_assert_uint_eq(vm.mmio.n, 0);
	kl_bus_destroy(&vm.pio);
	kl_bus_destroy(&vm.mmio);
	free(ram);
}

/* config access through the 0xcf8/0xcfc ports, like a guest */
static uint32_t cfg_rd(unsigned slot, unsigned off, unsigned size)
{
	uint64_t v;
	kl_bus_write(&vm.pio, 0xcf8, 4, 0x80000000u | slot << 11 | (off & 0xfc));
	kl_bus_read(&vm.pio, 0xcfc + (off & 3), size, &v);
	return v;
}
static void cfg_wr(unsigned slot, unsigned off, unsigned size, uint32_t val)
{
	kl_bus_write(&vm.pio, 0xcf8, 4, 0x80000000u | slot << 11 | (off & 0xfc));
	kl_bus_write(&vm.pio, 0xcfc + (off & 3), size, val);
}
static uint64_t mmio_rd(uint64_t a, unsigned size)
{
	uint64_t v;
	kl_bus_read(&vm.mmio, a, size, &v);
	return v;
}
static void mmio_wr(uint64_t a, unsigned size, uint64_t v) { kl_bus_write(&vm.mmio, a, size, v); }

/* a trivial register device */
static uint32_t dev_reg[64];
static uint64_t dev_read(void *o, uint64_t off, unsigned size)
{
	(void)o; (void)size;
	return dev_reg[(off / 4) % 64];
}
static void dev_write(void *o, uint64_t off, uint64_t val, unsigned size)
{
	(void)o; (void)size;
	dev_reg[(off / 4) % 64] = val;
}
static const struct kl_io_ops dev_ops = { dev_read, dev_write };

static struct kl_pci_dev *make_dev(int slot)
{
	struct kl_pci_dev_info info = { .name = "testdev", .vendor_id = 0x1234, .device_id = 0x5678,
					.class_code = 0x020000, .irq_pin = 1, .slot = slot };
	char *err = NULL;
	struct kl_pci_dev *d = kl_pci_register(&vm, &info, NULL, NULL, &err);
	ck_assert_msg(d != NULL, "%s", err);
	ck_assert_int_eq(kl_pci_add_bar(d, 0, 0x4000, KL_PCI_BAR_MEM32, false, &dev_ops, NULL, &err), 0);
	ck_assert_int_eq(kl_pci_add_bar(d, 2, 0x20, KL_PCI_BAR_IO, false, &dev_ops, NULL, &err), 0);
	ck_assert_int_eq(kl_pci_add_bar(d, 4, 0x10000, KL_PCI_BAR_MEM64, true, &dev_ops, NULL, &err), 0);
	return d;
}

START_TEST(host_bridge)
{
	setup();
	ck_assert_uint_eq(cfg_rd(0, 0, 4), KL_PCI_HOST_DEVICE << 16 | KL_PCI_HOST_VENDOR);
	ck_assert_uint_eq(cfg_rd(0, 0x0b, 1), 0x06);
	ck_assert_uint_eq(cfg_rd(5, 0, 4), 0xffffffffu);     /* empty slot */
	/* function 1 and bus 1 do not exist */
	uint64_t v;
	kl_bus_write(&vm.pio, 0xcf8, 4, 0x80000100u);
	kl_bus_read(&vm.pio, 0xcfc, 4, &v);
	ck_assert_uint_eq(v, 0xffffffffu);
	kl_bus_write(&vm.pio, 0xcf8, 4, 0x80010000u);
	kl_bus_read(&vm.pio, 0xcfc, 4, &v);
	ck_assert_uint_eq(v, 0xffffffffu);
	/* enable bit clear: no access */
	kl_bus_write(&vm.pio, 0xcf8, 4, 0);
	kl_bus_read(&vm.pio, 0xcfc, 4, &v);
	ck_assert_uint_eq(v, 0xffffffffu);
	kl_bus_read(&vm.pio, 0xcf8, 4, &v);
	ck_assert_uint_eq(v, 0);
	/* 0xcf9 is not claimed by the PCI host (reset control) */
	ck_assert(!kl_bus_write(&vm.pio, 0xcf9, 1, 6));
	/* byte access to config data at an odd offset */
	ck_assert_uint_eq(cfg_rd(0, 1, 1), KL_PCI_HOST_VENDOR >> 8);
	teardown();
}
END_TEST

START_TEST(bar_preassign_and_sizing)
{
	setup();
	struct kl_pci_dev *d = make_dev(-1);
	unsigned s = kl_pci_slot(d);
	ck_assert_uint_eq(s, 1);
	ck_assert_uint_eq(cfg_rd(s, 0x3d, 1), 1);
	ck_assert_uint_eq(cfg_rd(s, 0x3c, 1), kl_pci_intx_gsi(d));
	ck_assert_uint_eq(cfg_rd(s, 4, 2) & 7, 7);  /* IO|MEM|MASTER like a BIOS */
	/* BAR0 pre-assigned at the window base, mapped */
	uint32_t bar0 = cfg_rd(s, 0x10, 4);
	ck_assert_uint_eq(bar0, (uint32_t)KL_PCI_MMIO_BASE);
	const struct kl_bus_range *r = kl_bus_find(&vm.mmio, KL_PCI_MMIO_BASE + 0x10);
	ck_assert_ptr_nonnull(r);
	ck_assert_uint_eq(r->len, 0x4000);
	mmio_wr(KL_PCI_MMIO_BASE + 8, 4, 0xabcd);
	ck_assert_uint_eq(dev_reg[2], 0xabcd);
	ck_assert_uint_eq(mmio_rd(KL_PCI_MMIO_BASE + 8, 4), 0xabcd);
	/* I/O BAR from 0xc000 with the I/O bit */
	ck_assert_uint_eq(cfg_rd(s, 0x18, 4), KL_PCI_IO_BASE | 1);
	ck_assert_ptr_nonnull(kl_bus_find(&vm.pio, KL_PCI_IO_BASE + 0x1f));
	/* 64-bit prefetchable BAR: type bits, naturally aligned */
	uint32_t b4 = cfg_rd(s, 0x20, 4);
	ck_assert_uint_eq(b4 & 0xf, 0xc);
	ck_assert_uint_eq((b4 & ~0xfu) % 0x10000, 0);
	ck_assert_uint_eq(cfg_rd(s, 0x24, 4), 0);

	/* sizing: decode off, write all-ones, read the mask, restore */
	cfg_wr(s, 4, 2, 0);
	ck_assert_ptr_null(kl_bus_find(&vm.mmio, KL_PCI_MMIO_BASE));
	ck_assert_ptr_null(kl_bus_find(&vm.pio, KL_PCI_IO_BASE));
	cfg_wr(s, 0x10, 4, 0xffffffff);
	ck_assert_uint_eq(cfg_rd(s, 0x10, 4), 0xffffc000u);
	cfg_wr(s, 0x18, 4, 0xffffffff);
	ck_assert_uint_eq(cfg_rd(s, 0x18, 4), 0xffffffe1u);
	cfg_wr(s, 0x20, 4, 0xffffffff);
	cfg_wr(s, 0x24, 4, 0xffffffff);
	ck_assert_uint_eq(cfg_rd(s, 0x20, 4), 0xffff000cu);
	ck_assert_uint_eq(cfg_rd(s, 0x24, 4), 0xffffffffu);
	/* unimplemented BARs read 0 */
	cfg_wr(s, 0x14, 4, 0xffffffff);
	ck_assert_uint_eq(cfg_rd(s, 0x14, 4), 0);
	/* move BAR0, restore others, enable decoding */
	cfg_wr(s, 0x10, 4, 0xd0000000);
	cfg_wr(s, 0x18, 4, 0xe000);
	cfg_wr(s, 0x20, 4, 0xd0010000);
	cfg_wr(s, 0x24, 4, 0);
	cfg_wr(s, 4, 2, 7);
	ck_assert_ptr_null(kl_bus_find(&vm.mmio, KL_PCI_MMIO_BASE));
	ck_assert_ptr_nonnull(kl_bus_find(&vm.mmio, 0xd0000000));
	ck_assert_ptr_nonnull(kl_bus_find(&vm.mmio, 0xd0010000));
	ck_assert_ptr_nonnull(kl_bus_find(&vm.pio, 0xe000));
	bool mapped;
	ck_assert_uint_eq(kl_pci_bar_addr(d, 0, &mapped), 0xd0000000);
	ck_assert(mapped);
	ck_assert_uint_eq(mmio_rd(0xd0000008, 4), 0xabcd);
	/* move while decoding is on */
	cfg_wr(s, 0x10, 4, 0xd0004000);
	ck_assert_ptr_null(kl_bus_find(&vm.mmio, 0xd0000000));
	ck_assert_ptr_nonnull(kl_bus_find(&vm.mmio, 0xd0004000));
	/* a 32-bit BAR whose end would wrap past 4 GiB stays unmapped */
	cfg_wr(s, 0x10, 4, 0xffffc000);
	ck_assert_ptr_null(kl_bus_find(&vm.mmio, 0xffffc000));
	ck_assert_uint_eq(kl_pci_bar_addr(d, 0, &mapped), 0xffffc000);
	ck_assert(!mapped);
	/* 64-bit BAR above 4 GiB */
	cfg_wr(s, 0x24, 4, 0x1);
	ck_assert_ptr_nonnull(kl_bus_find(&vm.mmio, 0x1d0010000ull));
	teardown();
}
END_TEST

START_TEST(bar_overlap_ignored)
{
	setup();
	struct kl_pci_dev *a = make_dev(3);
	struct kl_pci_dev *b = make_dev(4);
	unsigned sb = kl_pci_slot(b);
	uint64_t a0 = kl_pci_bar_addr(a, 0, NULL);
	/* program b's BAR0 on top of a's BAR0 */
	cfg_wr(sb, 0x10, 4, a0);
	bool mapped;
	kl_pci_bar_addr(b, 0, &mapped);
	ck_assert(!mapped);
	kl_pci_bar_addr(a, 0, &mapped);
	ck_assert(mapped);
	const struct kl_bus_range *r = kl_bus_find(&vm.mmio, a0);
	ck_assert_ptr_nonnull(r);
	/* address 0 is "unassigned": unmapped */
	cfg_wr(sb, 0x18, 4, 0);
	kl_pci_bar_addr(b, 2, &mapped);
	ck_assert(!mapped);
	/* invalid slot / duplicate slot */
	struct kl_pci_dev_info info = { .name = "x", .slot = 3 };
	char *err = NULL;
	ck_assert_ptr_null(kl_pci_register(&vm, &info, NULL, NULL, &err));
	ck_assert_ptr_nonnull(err);
	g_free(err);
	err = NULL;
	ck_assert_int_eq(kl_pci_add_bar(a, 5, 0x1000, KL_PCI_BAR_MEM64, false, NULL, NULL, &err), -1);
	g_free(err);
	err = NULL;
	ck_assert_int_eq(kl_pci_add_bar(a, 1, 0x3000, KL_PCI_BAR_MEM32, false, NULL, NULL, &err), -1);
	g_free(err);
	/* unregister removes the mappings */
	kl_pci_unregister(b);
	ck_assert_uint_eq(cfg_rd(sb, 0, 4), 0xffffffffu);
	teardown();
}
END_TEST

START_TEST(bar_move_onto_own_bar)
{
	/* Linux reassigning a hot-plugged device's BARs with decoding on:
	 * BAR4 goes where BAR0 still is (refused, unmapped), then BAR0 moves
	 * away; BAR4 must be mapped at its new place then */
	setup();
	struct kl_pci_dev *a = make_dev(3);
	unsigned sa = kl_pci_slot(a);
	uint64_t a0 = kl_pci_bar_addr(a, 0, NULL);
	bool mapped;
	cfg_wr(sa, 0x20, 4, (uint32_t)a0 | 0xc);
	cfg_wr(sa, 0x24, 4, 0);
	kl_pci_bar_addr(a, 4, &mapped);
	ck_assert(!mapped);
	cfg_wr(sa, 0x10, 4, (uint32_t)a0 + 0x100000);
	ck_assert_uint_eq(kl_pci_bar_addr(a, 0, &mapped), a0 + 0x100000);
	ck_assert(mapped);
	ck_assert_uint_eq(kl_pci_bar_addr(a, 4, &mapped), a0);
	ck_assert(mapped);
	mmio_wr(a0 + 8, 4, 0x5a5a);
	ck_assert_uint_eq(mmio_rd(a0 + 8, 4), 0x5a5a);
	teardown();
}
END_TEST

START_TEST(cap_list_walk)
{
	setup();
	struct kl_pci_dev *d = make_dev(-1);
	unsigned s = kl_pci_slot(d);
	uint8_t body[6] = { 1, 2, 3, 4, 5, 6 };
	int o1 = kl_pci_add_cap(d, KL_PCI_CAP_ID_VNDR, body, 6);
	char *err = NULL;
	ck_assert_int_eq(kl_pci_msix_init(d, 4, 0, 0x1000, 0x2000, &err), 0);
	int o3 = kl_pci_add_cap(d, KL_PCI_CAP_ID_VNDR, body, 3);
	ck_assert_int_ge(o1, 0x40);
	ck_assert_int_gt(o3, o1);
	ck_assert(cfg_rd(s, 6, 2) & KL_PCI_STATUS_CAP_LIST);
	uint8_t ids[8];
	unsigned n = 0, p = cfg_rd(s, KL_PCI_CAP_PTR, 1);
	while (p && n < 8) {
		ck_assert_uint_eq(p & 3, 0);
		ids[n++] = cfg_rd(s, p, 1);
		p = cfg_rd(s, p + 1, 1);
	}
	ck_assert_uint_eq(n, 3);
	ck_assert_uint_eq(ids[0], KL_PCI_CAP_ID_VNDR);
	ck_assert_uint_eq(ids[1], KL_PCI_CAP_ID_MSIX);
	ck_assert_uint_eq(ids[2], KL_PCI_CAP_ID_VNDR);
	ck_assert_uint_eq(cfg_rd(s, o1 + 2, 1), 1);
	/* capability bodies are read-only */
	cfg_wr(s, o1 + 2, 1, 0x55);
	ck_assert_uint_eq(cfg_rd(s, o1 + 2, 1), 1);
	/* filling config space fails cleanly */
	uint8_t big[200] = { 0 };
	ck_assert_int_eq(kl_pci_add_cap(d, KL_PCI_CAP_ID_VNDR, big, sizeof(big)), -1);
	teardown();
}
END_TEST

static unsigned find_cap(unsigned s, uint8_t id)
{
	for (unsigned p = cfg_rd(s, KL_PCI_CAP_PTR, 1), n = 0; p && n < 48; p = cfg_rd(s, p + 1, 1), n++)
		if (cfg_rd(s, p, 1) == id)
			return p;
	return 0;
}

static uint64_t efd_count(int fd)
{
	uint64_t c = 0;
	if (read(fd, &c, sizeof(c)) != sizeof(c))
		return 0;
	return c;
}

START_TEST(msix_masking)
{
	setup();
	struct kl_pci_dev *d = make_dev(-1);
	unsigned s = kl_pci_slot(d);
	char *err = NULL;
	ck_assert_int_eq(kl_pci_msix_init(d, 3, 0, 0x1000, 0x2000, &err), 0);
	unsigned cap = find_cap(s, KL_PCI_CAP_ID_MSIX);
	ck_assert_uint_ne(cap, 0);
	ck_assert_uint_eq(cfg_rd(s, cap + 2, 2), 2);             /* table size - 1 */
	ck_assert_uint_eq(cfg_rd(s, cap + 4, 4), 0x1000);        /* BIR 0 */
	ck_assert_uint_eq(cfg_rd(s, cap + 8, 4), 0x2000);
	uint64_t tbl = kl_pci_bar_addr(d, 0, NULL) + 0x1000, pba = tbl + 0x1000;
	/* disabled: notify ignored */
	kl_pci_msix_notify(d, 1);
	ck_assert(!kl_pci_msix_is_pending(d, 1));
	/* enable; entries start masked */
	cfg_wr(s, cap + 2, 2, KL_PCI_MSIX_CTRL_ENABLE);
	ck_assert(kl_pci_msix_enabled(d));
	ck_assert_uint_eq(mmio_rd(tbl + 16 + 12, 4), 1);
	kl_pci_msix_notify(d, 1);
	ck_assert(kl_pci_msix_is_pending(d, 1));
	ck_assert_uint_eq(mmio_rd(pba, 8), 2);
	ck_assert_int_eq(msis_signalled, 0);
	/* program and unmask vector 1: route + irqfd, pending delivered */
	mmio_wr(tbl + 16, 4, 0xfee01000);
	mmio_wr(tbl + 16 + 4, 4, 0);
	mmio_wr(tbl + 16 + 8, 4, 0x4041);
	ck_assert_int_eq(routes_added, 0);
	mmio_wr(tbl + 16 + 12, 4, 0);
	ck_assert_int_eq(routes_added, 1);
	ck_assert_uint_eq(last_route_addr, 0xfee01000);
	ck_assert_uint_eq(last_route_data, 0x4041);
	ck_assert_int_eq(irqfds_assigned, 1);
	ck_assert(!kl_pci_msix_is_pending(d, 1));
	ck_assert_uint_eq(mmio_rd(pba, 4), 0);
	int efd = kl_pci_msix_vector_eventfd(d, 1);
	ck_assert_int_ge(efd, 0);
	ck_assert_uint_eq(efd_count(efd), 1);  /* delivered through the irqfd */
	kl_pci_msix_notify(d, 1);
	ck_assert_uint_eq(efd_count(efd), 1);
	/* function mask: pending, delivered on unmask */
	cfg_wr(s, cap + 2, 2, KL_PCI_MSIX_CTRL_ENABLE | KL_PCI_MSIX_CTRL_MASKALL);
	ck_assert(kl_pci_msix_is_masked(d, 1));
	ck_assert_int_eq(irqfds_deassigned, 1);
	kl_pci_msix_notify(d, 1);
	ck_assert_uint_eq(efd_count(efd), 0);
	ck_assert(kl_pci_msix_is_pending(d, 1));
	cfg_wr(s, cap + 2, 2, KL_PCI_MSIX_CTRL_ENABLE);
	ck_assert(!kl_pci_msix_is_pending(d, 1));
	ck_assert_uint_eq(efd_count(efd), 1);
	/* vector mask bit and a data change while masked -> route update */
	mmio_wr(tbl + 16 + 12, 4, 1);
	mmio_wr(tbl + 16 + 8, 4, 0x4042);
	kl_pci_msix_notify(d, 1);
	ck_assert(kl_pci_msix_is_pending(d, 1));
	mmio_wr(tbl + 16 + 12, 4, 0);
	ck_assert_int_eq(routes_updated, 1);
	ck_assert_uint_eq(last_route_data, 0x4042);
	ck_assert_uint_eq(efd_count(efd), 1);
	/* table reads back; PBA writes ignored; out-of-range vectors ignored */
	ck_assert_uint_eq(mmio_rd(tbl + 16 + 8, 4), 0x4042);
	ck_assert_uint_eq(mmio_rd(tbl + 16, 8), 0xfee01000);
	mmio_wr(pba, 8, ~0ull);
	ck_assert_uint_eq(mmio_rd(pba, 8), 0);
	kl_pci_msix_notify(d, 7);
	ck_assert_int_eq(kl_pci_msix_vector_eventfd(d, 7), -1);
	/* device registers around the table still reach the device */
	mmio_wr(kl_pci_bar_addr(d, 0, NULL) + 4, 4, 0x77);
	ck_assert_uint_eq(dev_reg[1], 0x77);
	/* reset: disabled and masked again */
	kl_pci_dev_reset(d);
	ck_assert(!kl_pci_msix_enabled(d));
	ck_assert(kl_pci_msix_is_masked(d, 1));
	/* bad layouts rejected */
	struct kl_pci_dev *d2 = make_dev(-1);
	ck_assert_int_eq(kl_pci_msix_init(d2, 3, 0, 0x3ff0, 0x2000, &err), -1);
	g_free(err);
	teardown();
}
END_TEST

START_TEST(intx_routing)
{
	setup();
	struct kl_pci_dev *a = make_dev(2);
	struct kl_pci_dev *b = make_dev(4);
	unsigned gsi = kl_pci_intx_gsi(a);
	ck_assert_uint_eq(gsi, 10 + ((2 + 0) & 1));
	ck_assert_uint_eq(kl_pci_intx_gsi(b), gsi); /* both even slots share */
	kl_pci_set_irq(a, 1);
	ck_assert_int_eq(irq_level[gsi], 1);
	ck_assert(cfg_rd(2, 6, 2) & KL_PCI_STATUS_INTERRUPT);
	kl_pci_set_irq(b, 1);
	kl_pci_set_irq(a, 0);
	ck_assert_int_eq(irq_level[gsi], 1);          /* b still asserts */
	ck_assert(!(cfg_rd(2, 6, 2) & KL_PCI_STATUS_INTERRUPT));
	/* INTX_DISABLE masks b's contribution, status still shows it */
	cfg_wr(4, 4, 2, 7 | KL_PCI_CMD_INTX_DISABLE);
	ck_assert_int_eq(irq_level[gsi], 0);
	ck_assert(cfg_rd(4, 6, 2) & KL_PCI_STATUS_INTERRUPT);
	cfg_wr(4, 4, 2, 7);
	ck_assert_int_eq(irq_level[gsi], 1);
	kl_pci_set_irq(b, 0);
	ck_assert_int_eq(irq_level[gsi], 0);
	struct kl_pci_dev *c = make_dev(5);
	ck_assert_uint_eq(kl_pci_intx_gsi(c), 11);
	teardown();
}
END_TEST

/* ---------------- virtio-pci transport ---------------- */

static unsigned kicks[4];
static unsigned resets;
static struct kl_virtio_dev *tvd;

static bool batch_mode;
static void t_notify(struct kl_virtio_dev *vd, unsigned q)
{
	kicks[q]++;
	struct kl_vq_elem *e;
	while ((e = kl_virtio_pop(vd, q))) {
		if (batch_mode)
			kl_virtio_push(vd, q, e, 9);
		else
			kl_virtio_complete(vd, q, e, 7);
	}
	if (batch_mode)
		kl_virtio_notify(vd, q);
}
static void t_reset(struct kl_virtio_dev *vd) { (void)vd; resets++; }
static uint8_t cfg_written[4];
static void t_cfg_write(struct kl_virtio_dev *vd, unsigned off, const void *buf, unsigned len)
{
	(void)vd;
	if (off + len <= 4)
		memcpy(cfg_written + off, buf, len);
}

static const struct kl_virtio_ops tops = {
	.device_features = 1ULL << 5,
	.queue_notify = t_notify,
	.reset = t_reset,
	.config_write = t_cfg_write,
};

static uint64_t vbar;

static void vsetup(void)
{
	setup();
	memset(kicks, 0, sizeof(kicks));
	resets = 0;
	struct kl_virtio_pci_info info = { .name = "virtio-test", .device_id = 2,
					   .class_code = 0x010000, .num_queues = 2,
					   .queue_size = 16, .config_len = 8, .slot = -1 };
	char *err = NULL;
	tvd = kl_virtio_pci_create(&vm, &info, &tops, NULL, &err);
	ck_assert_msg(tvd != NULL, "%s", err ? err : "");
	memcpy(tvd->config, "\x11\x22\x33\x44\x55\x66\x77\x88", 8);
	vbar = kl_pci_bar_addr(tvd->pci, KL_VPCI_BAR, NULL);
}

static void vteardown(void)
{
	kl_virtio_pci_destroy(tvd);
	ck_assert_int_eq(ioeventfds, 0);
	teardown();
}

static void vw(unsigned off, unsigned size, uint64_t v) { mmio_wr(vbar + off, size, v); }
static uint64_t vr(unsigned off, unsigned size) { return mmio_rd(vbar + off, size); }

/* bring the device up with queue 0 at 0x1000/0x2000/0x3000, MSI-X on */
static void vinit(uint64_t feat_lo)
{
	unsigned s = kl_pci_slot(tvd->pci);
	vw(KL_VPCI_STATUS, 1, 0);
	vw(KL_VPCI_STATUS, 1, KL_VIRTIO_S_ACKNOWLEDGE | KL_VIRTIO_S_DRIVER);
	vw(KL_VPCI_GFSELECT, 4, 0);
	vw(KL_VPCI_GF, 4, feat_lo);
	vw(KL_VPCI_GFSELECT, 4, 1);
	vw(KL_VPCI_GF, 4, 1); /* VERSION_1 */
	vw(KL_VPCI_STATUS, 1, 1 | 2 | KL_VIRTIO_S_FEATURES_OK);
	ck_assert_uint_eq(vr(KL_VPCI_STATUS, 1) & KL_VIRTIO_S_FEATURES_OK, KL_VIRTIO_S_FEATURES_OK);
	vw(KL_VPCI_Q_SELECT, 2, 0);
	vw(KL_VPCI_Q_DESC, 4, 0x1000);
	vw(KL_VPCI_Q_DESC + 4, 4, 0);
	vw(KL_VPCI_Q_AVAIL, 8, 0x2000);
	vw(KL_VPCI_Q_USED, 4, 0x3000);
	vw(KL_VPCI_Q_USED + 4, 4, 0);
	vw(KL_VPCI_Q_MSIX_VECTOR, 2, 1);
	vw(KL_VPCI_MSIX_CONFIG, 2, 0);
	vw(KL_VPCI_Q_ENABLE, 2, 1);
	/* MSI-X: enable, program vectors 0 and 1 unmasked */
	unsigned cap = find_cap(s, KL_PCI_CAP_ID_MSIX);
	cfg_wr(s, cap + 2, 2, KL_PCI_MSIX_CTRL_ENABLE);
	uint64_t tbl = kl_pci_bar_addr(tvd->pci, KL_VPCI_MSIX_BAR, NULL);
	for (unsigned v = 0; v < 2; v++) {
		mmio_wr(tbl + 16 * v, 4, 0xfee00000);
		mmio_wr(tbl + 16 * v + 8, 4, 0x40 + v);
		mmio_wr(tbl + 16 * v + 12, 4, 0);
	}
	vw(KL_VPCI_STATUS, 1, 1 | 2 | 8 | KL_VIRTIO_S_DRIVER_OK);
	ck_assert(kl_virtio_ready(tvd));
}

START_TEST(virtio_caps)
{
	vsetup();
	unsigned s = kl_pci_slot(tvd->pci);
	ck_assert_uint_eq(cfg_rd(s, 0, 4), (0x1040u + 2) << 16 | 0x1af4);
	ck_assert_uint_eq(cfg_rd(s, 8, 1), 1);
	ck_assert_uint_eq(cfg_rd(s, 0x2e, 2), 2);
	unsigned seen = 0;
	for (unsigned p = cfg_rd(s, KL_PCI_CAP_PTR, 1), n = 0; p && n < 48; p = cfg_rd(s, p + 1, 1), n++) {
		if (cfg_rd(s, p, 1) != KL_PCI_CAP_ID_VNDR)
			continue;
		unsigned type = cfg_rd(s, p + 3, 1);
		seen |= 1u << type;
		if (type == KL_VIRTIO_PCI_CAP_PCI_CFG)
			continue;
		ck_assert_uint_eq(cfg_rd(s, p + 4, 1), KL_VPCI_BAR);
		unsigned off = cfg_rd(s, p + 8, 4);
		if (type == KL_VIRTIO_PCI_CAP_NOTIFY_CFG) {
			ck_assert_uint_eq(off, KL_VPCI_NOTIFY_OFF);
			ck_assert_uint_eq(cfg_rd(s, p + 2, 1), 20);
			ck_assert_uint_eq(cfg_rd(s, p + 16, 4), KL_VPCI_NOTIFY_MULT);
		}
		if (type == KL_VIRTIO_PCI_CAP_DEVICE_CFG)
			ck_assert_uint_eq(cfg_rd(s, p + 12, 4), 8);
	}
	ck_assert_uint_eq(seen, 0x3e);
	ck_assert_uint_ne(find_cap(s, KL_PCI_CAP_ID_MSIX), 0);
	/* ioeventfds registered for both queues at the pre-assigned BAR */
	ck_assert_int_eq(ioeventfds, 2);
	/* moving BAR4 re-registers them */
	cfg_wr(s, 0x20, 4, 0xd0000000);
	ck_assert_int_eq(ioeventfds, 2);
	vbar = 0xd0000000;
	ck_assert_uint_eq(vr(KL_VPCI_NUM_QUEUES, 2), 2);
	cfg_wr(s, 4, 2, 0);
	ck_assert_int_eq(ioeventfds, 0);
	cfg_wr(s, 4, 2, 7);
	ck_assert_int_eq(ioeventfds, 2);
	vteardown();
}
END_TEST

START_TEST(virtio_features)
{
	vsetup();
	vw(KL_VPCI_DFSELECT, 4, 0);
	uint32_t lo = vr(KL_VPCI_DF, 4);
	ck_assert_uint_eq(lo, 1u << 5 | 1u << 28 | 1u << 29);
	vw(KL_VPCI_DFSELECT, 4, 1);
	ck_assert_uint_eq(vr(KL_VPCI_DF, 4), 1);
	vw(KL_VPCI_DFSELECT, 4, 2);
	ck_assert_uint_eq(vr(KL_VPCI_DF, 4), 0);
	/* without VERSION_1: FEATURES_OK does not stick */
	vw(KL_VPCI_STATUS, 1, 3);
	vw(KL_VPCI_GFSELECT, 4, 0);
	vw(KL_VPCI_GF, 4, 1u << 5);
	vw(KL_VPCI_STATUS, 1, 3 | 8);
	ck_assert_uint_eq(vr(KL_VPCI_STATUS, 1), 3);
	/* unknown feature bit: refused */
	vw(KL_VPCI_GF, 4, 1u << 6);
	vw(KL_VPCI_GFSELECT, 4, 1);
	vw(KL_VPCI_GF, 4, 1);
	vw(KL_VPCI_STATUS, 1, 3 | 8);
	ck_assert_uint_eq(vr(KL_VPCI_STATUS, 1) & 8, 0);
	/* DRIVER_OK without FEATURES_OK is refused */
	vw(KL_VPCI_STATUS, 1, 3 | 4);
	ck_assert(!kl_virtio_ready(tvd));
	/* reset then the good path */
	vinit(1u << 5 | 1u << 29);
	ck_assert(kl_virtio_has_feature(tvd, 5));
	ck_assert(kl_virtio_has_feature(tvd, KL_VIRTIO_F_EVENT_IDX));
	ck_assert(!kl_virtio_has_feature(tvd, KL_VIRTIO_F_INDIRECT_DESC));
	ck_assert(tvd->vqs[0].event_idx);
	/* device config space and generation */
	ck_assert_uint_eq(vr(KL_VPCI_DEVCFG_OFF, 4), 0x44332211u);
	ck_assert_uint_eq(vr(KL_VPCI_DEVCFG_OFF + 6, 2), 0x8877);
	ck_assert_uint_eq(vr(KL_VPCI_DEVCFG_OFF + 8, 4), 0);
	vw(KL_VPCI_DEVCFG_OFF + 1, 2, 0xbeef);
	ck_assert_uint_eq(cfg_written[1], 0xef);
	ck_assert_uint_eq(cfg_written[2], 0xbe);
	uint8_t g = vr(KL_VPCI_CFG_GENERATION, 1);
	kl_virtio_config_changed(tvd);
	ck_assert_uint_eq(vr(KL_VPCI_CFG_GENERATION, 1), (uint8_t)(g + 1));
	/* queue registers: selected queue out of range reads size 0 */
	vw(KL_VPCI_Q_SELECT, 2, 9);
	ck_assert_uint_eq(vr(KL_VPCI_Q_SIZE, 2), 0);
	vw(KL_VPCI_Q_SELECT, 2, 1);
	ck_assert_uint_eq(vr(KL_VPCI_Q_SIZE, 2), 16);
	ck_assert_uint_eq(vr(KL_VPCI_Q_NOTIFY_OFF, 2), 1);
	vw(KL_VPCI_Q_MSIX_VECTOR, 2, 40); /* more than the vectors we have */
	ck_assert_uint_eq(vr(KL_VPCI_Q_MSIX_VECTOR, 2), KL_VIRTIO_NO_VECTOR);
	vw(KL_VPCI_Q_SELECT, 2, 0);
	ck_assert_uint_eq(vr(KL_VPCI_Q_ENABLE, 2), 1);
	ck_assert_uint_eq(vr(KL_VPCI_Q_AVAIL, 4), 0x2000);
	/* addresses are frozen while enabled */
	vw(KL_VPCI_Q_DESC, 4, 0x8000);
	ck_assert_uint_eq(vr(KL_VPCI_Q_DESC, 4), 0x1000);
	vteardown();
}
END_TEST

static struct kl_vring_desc *rdesc(unsigned i) { return (struct kl_vring_desc *)(ram + 0x1000) + i; }
static void roffer(uint16_t head)
{
	uint16_t *av = (uint16_t *)(ram + 0x2000);
	av[2 + av[1] % 16] = head;
	av[1]++;
}

START_TEST(virtio_request_and_msix)
{
	vsetup();
	vinit(0);
	int efd1 = kl_pci_msix_vector_eventfd(tvd->pci, 1);
	int efd0 = kl_pci_msix_vector_eventfd(tvd->pci, 0);
	*rdesc(0) = (struct kl_vring_desc){ 0x10000, 64, KL_VRING_DESC_F_WRITE, 0 };
	roffer(0);
	/* plain MMIO notify write (no ioeventfd path in the unit test) */
	vw(KL_VPCI_NOTIFY_OFF, 2, 0);
	ck_assert_uint_eq(kicks[0], 1);
	uint16_t *used = (uint16_t *)(ram + 0x3000);
	ck_assert_uint_eq(used[1], 1);
	ck_assert_uint_eq(((uint32_t *)(ram + 0x3004))[1], 7);
	ck_assert_uint_eq(efd_count(efd1), 1);
	/* notify for a disabled queue (1) is ignored; out of range too */
	vw(KL_VPCI_NOTIFY_OFF + 4, 2, 1);
	vw(KL_VPCI_NOTIFY_OFF + 40, 2, 10);
	ck_assert_uint_eq(kicks[1], 0);
	/* the pci-cfg access capability reads common config */
	unsigned s = kl_pci_slot(tvd->pci);
	unsigned cap = tvd->pcicfg_off;
	cfg_wr(s, cap + 4, 1, KL_VPCI_BAR);
	cfg_wr(s, cap + 8, 4, KL_VPCI_NUM_QUEUES);
	cfg_wr(s, cap + 12, 4, 2);
	ck_assert_uint_eq(cfg_rd(s, cap + 16, 4), 2);
	/* and writes through it: queue_select */
	cfg_wr(s, cap + 8, 4, KL_VPCI_Q_SELECT);
	cfg_wr(s, cap + 16, 4, 1);
	ck_assert_uint_eq(vr(KL_VPCI_Q_SELECT, 2), 1);

	/* hostile chain -> NEEDS_RESET + config interrupt on vector 0 */
	*rdesc(1) = (struct kl_vring_desc){ 0x10000, 64, KL_VRING_DESC_F_NEXT, 1 };
	roffer(1);
	vw(KL_VPCI_NOTIFY_OFF, 2, 0);
	ck_assert(tvd->broken);
	ck_assert_uint_eq(vr(KL_VPCI_STATUS, 1) & KL_VIRTIO_S_NEEDS_RESET, KL_VIRTIO_S_NEEDS_RESET);
	ck_assert_uint_eq(efd_count(efd0), 1);
	/* broken: further kicks do nothing */
	vw(KL_VPCI_NOTIFY_OFF, 2, 0);
	ck_assert_uint_eq(kicks[0], 2);
	/* reset clears it; re-init and a normal request works */
	vw(KL_VPCI_STATUS, 1, 0);
	ck_assert_uint_eq(resets, 2); /* one in vinit, one now */
	ck_assert_uint_eq(vr(KL_VPCI_STATUS, 1), 0);
	ck_assert_uint_eq(vr(KL_VPCI_Q_ENABLE, 2), 0);
	memset(ram + 0x1000, 0, 0x3000);
	vinit(0);
	*rdesc(0) = (struct kl_vring_desc){ 0x10000, 64, KL_VRING_DESC_F_WRITE, 0 };
	roffer(0);
	vw(KL_VPCI_NOTIFY_OFF, 2, 0);
	ck_assert_uint_eq(used[1], 1);
	ck_assert_uint_eq(efd_count(efd1), 1);
	vteardown();
}
END_TEST

START_TEST(virtio_push_batch)
{
	vsetup();
	vinit(0);
	batch_mode = true;
	int efd1 = kl_pci_msix_vector_eventfd(tvd->pci, 1);
	for (unsigned i = 0; i < 3; i++) {
		*rdesc(i) = (struct kl_vring_desc){ 0x10000 + 0x100 * i, 64, KL_VRING_DESC_F_WRITE, 0 };
		roffer(i);
	}
	vw(KL_VPCI_NOTIFY_OFF, 2, 0);
	batch_mode = false;
	uint16_t *used = (uint16_t *)(ram + 0x3000);
	ck_assert_uint_eq(used[1], 3);
	ck_assert_uint_eq(((uint32_t *)(ram + 0x3004))[5], 9);
	ck_assert_uint_eq(efd_count(efd1), 1); /* one interrupt for the batch */
	ck_assert_uint_eq(tvd->inflight, 0);
	vteardown();
}
END_TEST

START_TEST(virtio_intx_isr)
{
	vsetup();
	vinit(0);
	/* turn MSI-X off: interrupts go through INTx + ISR */
	unsigned s = kl_pci_slot(tvd->pci);
	cfg_wr(s, find_cap(s, KL_PCI_CAP_ID_MSIX) + 2, 2, 0);
	unsigned gsi = kl_pci_intx_gsi(tvd->pci);
	*rdesc(0) = (struct kl_vring_desc){ 0x10000, 64, KL_VRING_DESC_F_WRITE, 0 };
	roffer(0);
	vw(KL_VPCI_NOTIFY_OFF, 2, 0);
	ck_assert_int_eq(irq_level[gsi], 1);
	ck_assert_uint_eq(vr(KL_VPCI_ISR_OFF, 1), 1);
	ck_assert_int_eq(irq_level[gsi], 0);
	ck_assert_uint_eq(vr(KL_VPCI_ISR_OFF, 1), 0);
	/* a ring placed outside RAM: enabling queue 1 breaks the device */
	vw(KL_VPCI_Q_SELECT, 2, 1);
	vw(KL_VPCI_Q_DESC, 8, 0x7fff0000);
	vw(KL_VPCI_Q_ENABLE, 2, 1);
	ck_assert(tvd->broken);
	ck_assert_uint_eq(vr(KL_VPCI_ISR_OFF, 1), 2);
	vteardown();
}
END_TEST

Suite *pci_suite(void);
Suite *pci_suite(void)
{
	Suite *s = suite_create("pci");
	TCase *tc = tcase_create("pci");
	tcase_add_test(tc, host_bridge);
	tcase_add_test(tc, bar_preassign_and_sizing);
	tcase_add_test(tc, bar_overlap_ignored);
	tcase_add_test(tc, bar_move_onto_own_bar);
	tcase_add_test(tc, cap_list_walk);
	tcase_add_test(tc, msix_masking);
	tcase_add_test(tc, intx_routing);
	suite_add_tcase(s, tc);
	TCase *tv = tcase_create("virtio-pci");
	tcase_add_test(tv, virtio_caps);
	tcase_add_test(tv, virtio_features);
	tcase_add_test(tv, virtio_request_and_msix);
	tcase_add_test(tv, virtio_push_batch);
	tcase_add_test(tv, virtio_intx_isr);
	suite_add_tcase(s, tv);
	return s;
}

int main(void)
{
	return kl_check_run(pci_suite());
}
