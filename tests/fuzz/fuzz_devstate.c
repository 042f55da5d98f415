/* libFuzzer target: hostile device state sections (kvmlite/vmstate.h) fed to
 * the load() of freshly created devices, as an incoming migration stream
 * would: src/hw/pci_state.c, src/virtio/virtio_state.c + virtqueue.c,
 * src/e1000/e1000_state.c.
 *
 * Input: [selector byte][section bytes]
 *   selector % 5: 0 "pci/0000:00:01.0" (a virtio function: BARs, MSI-X),
 *                 1 "pci/0000:00:00.0" (the host bridge, CONFIG_ADDRESS),
 *                 2 "virtio-pci/0000:00:01.0" (transport + 2 queues),
 *                 3 the e1000 core,
 *                 4 "virtio-rng/0000:00:02.0" (src/virtio/rng.c: rate limit,
 *                   quota; a loaded section must save back to the same bytes)
 * Every input runs on a new VM: a fake platform (no /dev/kvm), 64 KiB of
 * guest RAM at GPA 0, a two-queue virtio device (max queue size 64).  A
 * load that succeeds is followed by post_load and by work on the loaded
 * state -- every queue popped until empty or broken (each element's
 * buffers checked to lie in guest RAM), MSI-X table and BAR reads, an e1000
 * TX pass and a received frame -- so a value the loader let through but
 * the device cannot handle shows up as a crash.  A failed load must leave
 * an error message.
 *
 * Seeds (tests/fuzz/corpus/devstate/) are real saves of driven devices:
 * KL_DEVSTATE_SEEDS=DIR fuzz_devstate writes them (tests/fuzz/make-seeds
 * does not know these layouts; regenerate with this after a format change). */
#include <glib.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kvmlite/device.h"
#include "kvmlite/mem.h"
#include "kvmlite/opts.h"
#include "kvmlite/pci.h"
#include "kvmlite/virtio.h"
#include "kvmlite/vm.h"
#include "kvmlite/vmstate.h"
#include "../../src/e1000/e1000_int.h"

#include "fuzz_util.h"

#define RAM_SIZE 0x10000u
#define QMAX 64

static struct kl_vm vm;
static uint8_t *ram;
static struct kl_virtio_dev *vd;

static int f_route_add(struct kl_vm *v, uint64_t addr, uint32_t data)
{
	(void)v; (void)addr; (void)data;
	return 200;
}
static int f_irqfd(struct kl_vm *v, int efd, unsigned gsi, bool assign)
{
	(void)v; (void)assign;
	FUZZ_ASSERT(efd >= 0 && gsi == 200);
	return 0;
}
static int f_ioeventfd(struct kl_vm *v, uint64_t addr, unsigned len, bool pio, int efd,
		       bool datamatch, uint64_t data, bool assign)
{
	(void)v; (void)addr; (void)len; (void)pio; (void)datamatch; (void)data; (void)assign;
	FUZZ_ASSERT(efd >= 0);
	return 0;
}
static const struct kl_pci_platform_ops fake_ops = {
	.irqfd = f_irqfd, .msi_route_add = f_route_add, .ioeventfd = f_ioeventfd,
};

static bool dev_set_features(struct kl_virtio_dev *d, uint64_t f)
{
	(void)d;
	return !(f & 1); /* refuses bit 0: the load path must cope */
}
static const struct kl_virtio_ops dev_ops = { .device_features = 3, .set_features = dev_set_features };

static void make_vm(void)
{
	memset(&vm, 0, sizeof(vm));
	kl_bus_init(&vm.pio, "pio");
	kl_bus_init(&vm.mmio, "mmio");
	kl_mem_init_empty(&vm.mem);
	ram = calloc(1, RAM_SIZE);
	kl_mem_add_region(&vm.mem, 0, RAM_SIZE, ram);
	char *err = NULL;
	FUZZ_ASSERT(kl_pci_host_create(&vm, &fake_ops, &err));
	struct kl_virtio_pci_info info = {
		.name = "fuzz-virtio", .device_id = 5, .class_code = 0xff0000,
		.num_queues = 2, .queue_size = QMAX, .config_len = 8, .slot = 1,
	};
	vd = kl_virtio_pci_create(&vm, &info, &dev_ops, NULL, &err);
	FUZZ_ASSERT(vd);
}

static void free_vm(void)
{
	kl_pci_host_destroy(&vm);
	FUZZ_ASSERT(kl_vmstate_count(&vm) == 0);
	kl_vmstate_free_all(&vm);
	kl_bus_destroy(&vm.pio);
	kl_bus_destroy(&vm.mmio);
	free(ram);
}

static bool in_ram(const void *p, size_t n)
{
	const uint8_t *b = p;
	return b >= ram && n <= RAM_SIZE && b + n <= ram + RAM_SIZE;
}

static void exercise_virtio(void)
{
	for (unsigned q = 0; q < vd->nvqs; q++) {
		struct kl_vq_elem *e;
		for (unsigned k = 0; k < 2 * QMAX && (e = kl_virtio_pop(vd, q)); k++) {
			for (unsigned i = 0; i < e->out_num + e->in_num; i++)
				FUZZ_ASSERT(in_ram(e->iov[i].iov_base, e->iov[i].iov_len));
			kl_virtio_complete(vd, q, e, 0);
		}
	}
	uint64_t v;
	uint64_t bar4 = kl_pci_bar_addr(vd->pci, KL_VPCI_BAR, NULL);
	for (unsigned off = 0; off < KL_VPCI_COMMON_LEN; off += 4)
		kl_bus_read(&vm.mmio, bar4 + off, 4, &v);
	kl_virtio_config_changed(vd);
}

static void exercise_pci(void)
{
	uint64_t v;
	uint64_t mbar = kl_pci_bar_addr(vd->pci, KL_VPCI_MSIX_BAR, NULL);
	for (unsigned off = 0; off < 0x810; off += 4)
		kl_bus_read(&vm.mmio, mbar + off, 4, &v);
	for (unsigned vec = 0; vec < kl_pci_msix_nvec(vd->pci); vec++)
		kl_pci_msix_notify(vd->pci, vec);
	for (unsigned off = 0; off < KL_PCI_CFG_SIZE; off += 4)
		(void)kl_pci_cfg_read(&vm, 1, 0, off, 4);
	kl_bus_write(&vm.pio, 0xcfc, 4, 0); /* through whatever CONFIG_ADDRESS holds */
	kl_bus_read(&vm.pio, 0xcfc, 4, &v);
}

static int load_section(const char *name, const uint8_t *p, size_t n)
{
	const struct kl_vmstate_entry *e = kl_vmstate_find(&vm, name);
	FUZZ_ASSERT(e);
	char *err = NULL;
	int r = kl_vmstate_load_section(e, p, n, e->ops->version, &err);
	if (r < 0)
		FUZZ_ASSERT(err);
	FUZZ_TRACE("%s: %s\n", name, r < 0 ? err : "loaded");
	g_free(err);
	if (r == 0 && e->ops->post_load) {
		err = NULL;
		e->ops->post_load(e->opaque, &err);
		g_free(err);
	}
	return r;
}

/* ---- e1000 core ---- */
static bool e_send(void *o, const uint8_t *f, size_t len)
{
	(void)o;
	FUZZ_ASSERT(len <= E1000_TX_BUF_MAX + 4);
	volatile uint8_t x = len ? f[len - 1] : 0;
	(void)x;
	return true;
}
static void e_irq(void *o, int l) { (void)o; (void)l; }
static uint64_t e_now(void *o) { (void)o; return 1000; }
static void e_arm(void *o, uint64_t d) { (void)o; FUZZ_ASSERT(d <= 0xffffULL * 256 + 1000); }
static const struct e1000_core_cb e_cbs = {
	.set_irq = e_irq, .send = e_send, .now_ns = e_now, .arm_timer = e_arm,
};
static const uint8_t mac[6] = { 0x52, 0x54, 0, 0x12, 0x34, 0x56 };

static void fuzz_e1000(const uint8_t *p, size_t n)
{
	struct e1000_core *c = g_new0(struct e1000_core, 1);
	e1000_core_init(c, &vm.mem, mac, &e_cbs, NULL);
	struct kl_vms_in in;
	kl_vms_in_init(&in, p, n);
	int r = e1000_core_load(c, &in);
	FUZZ_ASSERT(r == 0 || in.err);
	if (r == 0) {
		e1000_core_post_load(c);
		e1000_tx_process(c);
		uint8_t frame[64] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x52, 0x54 };
		struct iovec iov = { frame, sizeof(frame) };
		if (e1000_can_receive(c))
			e1000_receive(c, &iov, 1);
		e1000_core_timer(c);
		(void)e1000_mmio_read(c, E1000_ICR, 4);
		(void)e1000_io_read(c, 4, 4);
	}
	kl_vms_in_free(&in);
	e1000_core_cleanup(c);
	g_free(c);
}

static GByteArray *save_of(const char *name)
{
	const struct kl_vmstate_entry *e = kl_vmstate_find(&vm, name);
	struct kl_vms_out o;
	kl_vms_out_init(&o);
	char *err = NULL;
	FUZZ_ASSERT(e->ops->save(e->opaque, &o, &err) == 0);
	return o.buf;
}

/* ---- virtio-rng (a second virtio function, slot 2) ---- */
#define RNG_SECTION "virtio-rng/0000:00:02.0"

static void make_rng(void)
{
	char *err = NULL;
	struct kl_opts *o = kl_opts_parse("max-bytes=4096,period=100,addr=2", NULL, &err);
	FUZZ_ASSERT(o);
	const struct kl_device_type *t = kl_device_type_find("virtio-rng-pci");
	FUZZ_ASSERT(t && t->create(&vm, o, &err) == 0);
	kl_opts_free(o);
}

static void fuzz_rng(const uint8_t *p, size_t n)
{
	make_rng();
	if (load_section(RNG_SECTION, p, n) != 0)
		return;
	/* the loaded state is the device's whole section: it saves back the same */
	GByteArray *b = save_of(RNG_SECTION);
	FUZZ_ASSERT(b->len == n && !memcmp(b->data, p, n));
	g_byte_array_free(b, TRUE);
}

/* ---- seeds: real saves ---- */
static void write_seed(const char *dir, const char *name, uint8_t sel, const GByteArray *b)
{
	char *path = g_strdup_printf("%s/seed-%s", dir, name);
	FILE *f = fopen(path, "wb");
	FUZZ_ASSERT(f);
	fputc(sel, f);
	fwrite(b->data, 1, b->len, f);
	fclose(f);
	g_free(path);
}


static void write_seeds(const char *dir)
{
	make_vm();
	/* the guest: MSI-X on with vector 0 programmed, BAR4 moved, features
	 * negotiated, queue 0 enabled at 0x1000 with 16 entries */
	uint64_t mbar = kl_pci_bar_addr(vd->pci, KL_VPCI_MSIX_BAR, NULL);
	kl_bus_write(&vm.mmio, mbar, 4, 0xfee00000u);
	kl_bus_write(&vm.mmio, mbar + 8, 4, 0x41);
	kl_bus_write(&vm.mmio, mbar + 12, 4, 0);
	uint8_t *cfg = kl_pci_config(vd->pci);
	unsigned cap = cfg[KL_PCI_CAP_PTR];
	while (cap && cfg[cap] != KL_PCI_CAP_ID_MSIX)
		cap = cfg[cap + 1];
	kl_pci_cfg_write(&vm, 1, 0, cap + 2, 2, KL_PCI_MSIX_CTRL_ENABLE);
	kl_pci_cfg_write(&vm, 1, 0, 0x20, 4, 0xd000000c);
	kl_bus_write(&vm.pio, 0xcf8, 4, 0x80000810u);
	uint64_t b4 = kl_pci_bar_addr(vd->pci, KL_VPCI_BAR, NULL);
	kl_virtio_pci_bar_write(vd, KL_VPCI_STATUS, 3, 1);
	kl_virtio_pci_bar_write(vd, KL_VPCI_GFSELECT, 1, 4);
	kl_virtio_pci_bar_write(vd, KL_VPCI_GF, 1, 4);
	kl_virtio_pci_bar_write(vd, KL_VPCI_GFSELECT, 0, 4);
	kl_virtio_pci_bar_write(vd, KL_VPCI_GF, 2 | 1u << KL_VIRTIO_F_EVENT_IDX, 4);
	kl_virtio_pci_bar_write(vd, KL_VPCI_STATUS, 11, 1);
	kl_virtio_pci_bar_write(vd, KL_VPCI_Q_SIZE, 16, 2);
	kl_virtio_pci_bar_write(vd, KL_VPCI_Q_MSIX_VECTOR, 0, 2);
	kl_virtio_pci_bar_write(vd, KL_VPCI_Q_DESC, 0x1000, 8);
	kl_virtio_pci_bar_write(vd, KL_VPCI_Q_AVAIL, 0x1100, 8);
	kl_virtio_pci_bar_write(vd, KL_VPCI_Q_USED, 0x1200, 8);
	kl_virtio_pci_bar_write(vd, KL_VPCI_Q_ENABLE, 1, 2);
	kl_virtio_pci_bar_write(vd, KL_VPCI_STATUS, 15, 1);
	FUZZ_ASSERT(b4 == 0xd0000000u && vd->vqs[0].enabled && kl_virtio_ready(vd));
	GByteArray *b = save_of("pci/0000:00:01.0");
	write_seed(dir, "pci-virtio", 0, b);
	g_byte_array_free(b, TRUE);
	b = save_of("pci/0000:00:00.0");
	write_seed(dir, "pci-host", 1, b);
	g_byte_array_free(b, TRUE);
	b = save_of("virtio-pci/0000:00:01.0");
	write_seed(dir, "virtio-pci", 2, b);
	g_byte_array_free(b, TRUE);
	/* e1000: rings set up, a partial legacy TX packet */
	struct e1000_core *c = g_new0(struct e1000_core, 1);
	e1000_core_init(c, &vm.mem, mac, &e_cbs, NULL);
	e1000_mmio_write(c, E1000_RDBAL, 0x2000, 4);
	e1000_mmio_write(c, E1000_RDLEN, 256, 4);
	e1000_mmio_write(c, E1000_RDT, 7, 4);
	e1000_mmio_write(c, E1000_RCTL, E1000_RCTL_EN | E1000_RCTL_BAM, 4);
	e1000_mmio_write(c, E1000_TDBAL, 0x3000, 4);
	e1000_mmio_write(c, E1000_TDLEN, 128, 4);
	e1000_mmio_write(c, E1000_TCTL, E1000_TCTL_EN, 4);
	struct e1000_tx_desc d = { 0x4000, 60 | (uint32_t)E1000_TXD_CMD_IFCS << 24, 0 };
	memcpy(ram + 0x3000, &d, sizeof(d));
	e1000_mmio_write(c, E1000_TDT, 1, 4);
	struct kl_vms_out o;
	kl_vms_out_init(&o);
	e1000_core_save(c, &o);
	write_seed(dir, "e1000", 3, o.buf);
	make_rng();
	b = save_of(RNG_SECTION);
	write_seed(dir, "virtio-rng", 4, b);
	g_byte_array_free(b, TRUE);
	kl_vms_out_free(&o);
	e1000_core_cleanup(c);
	g_free(c);
	free_vm();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	fuzz_init_glib(*argv);
	const char *dir = getenv("KL_DEVSTATE_SEEDS");
	if (dir) {
		write_seeds(dir);
		exit(0);
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	make_vm();
	const uint8_t *p = data + 1;
	size_t n = size - 1;
	switch (data[0] % 5) {
	case 0:
		if (load_section("pci/0000:00:01.0", p, n) == 0)
			exercise_pci();
		break;
	case 1:
		if (load_section("pci/0000:00:00.0", p, n) == 0)
			exercise_pci();
		break;
	case 2:
		if (load_section("virtio-pci/0000:00:01.0", p, n) == 0)
			exercise_virtio();
		break;
	case 3:
		fuzz_e1000(p, n);
		break;
	default:
		fuzz_rng(p, n);
		break;
	}
	free_vm();
	return 0;
}
