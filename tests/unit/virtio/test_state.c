/* VM state sections of a PCI function, the virtio-pci transport and
 * virtio-blk (src/hw/pci_state.c, src/virtio/virtio_state.c, blk.c): a
 * virtio-blk-pci device on a hand-built VM (fake platform ops, real block
 * layer on a temp image) is driven into a non-trivial state, saved, and
 * loaded into a freshly created device; truncated and out-of-range sections
 * are refused naming the field, leaving the device unchanged. */
#include <check.h>

#include "../kl_check.h"
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kvmlite/block.h"
#include "kvmlite/device.h"
#include "kvmlite/loop.h"
#include "kvmlite/pci.h"
#include "kvmlite/virtio.h"
#include "kvmlite/vm.h"
#include "kvmlite/vmstate.h"

#define RAM_SIZE (4u << 20)
#define IMG_SIZE (1u << 20)
#define QSZ 16
#define DESC 0x1000
#define AVAIL 0x2000
#define USED 0x3000
#define HDR 0x8000
#define STATUS 0x9000
#define DATA 0x10000
#define NEW_BAR4 0xd0000000ULL
#define SLOT 1
#define ADDR "0000:00:01.0"

/* ---- fake platform: count the KVM routes and irqfds ---- */
static int routes, irqfds;
static int f_irqfd(struct kl_vm *v, int efd, unsigned gsi, bool assign)
{
	(void)v; (void)efd; (void)gsi;
	irqfds += assign ? 1 : -1;
	return 0;
}
static int f_route_add(struct kl_vm *v, uint64_t addr, uint32_t data)
{
	(void)v; (void)addr; (void)data;
	return 100 + routes++;
}
static int f_ioeventfd(struct kl_vm *v, uint64_t addr, unsigned len, bool pio, int efd,
		       bool datamatch, uint64_t data, bool assign)
{
	(void)v; (void)addr; (void)len; (void)pio; (void)efd; (void)datamatch; (void)data;
	(void)assign;
	return 0;
}
static const struct kl_pci_platform_ops fake_ops = {
	.irqfd = f_irqfd, .msi_route_add = f_route_add, .ioeventfd = f_ioeventfd,
};

static struct kl_vm vm;
static uint8_t *ram;
static char img[64];
static uint16_t avail_idx, used_seen, next_desc;

static struct kl_virtio_dev *vdev(void)
{
	return kl_vmstate_find(&vm, "virtio-pci/" ADDR)->opaque;
}
static uint64_t bar4(void) { return kl_pci_bar_addr(vdev()->pci, KL_VPCI_BAR, NULL); }
static void vw(unsigned off, unsigned size, uint64_t v) { kl_bus_write(&vm.mmio, bar4() + off, size, v); }
static uint64_t vr(unsigned off, unsigned size)
{
	uint64_t v = 0;
	kl_bus_read(&vm.mmio, bar4() + off, size, &v);
	return v;
}

static void make_img(void)
{
	strcpy(img, "/tmp/kl-vstate-XXXXXX");
	int fd = mkstemp(img);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, IMG_SIZE), 0);
	close(fd);
}

/* a fresh VM with one virtio-blk-pci (slot 1) on img */
static void make_vm(const char *serial)
{
	memset(&vm, 0, sizeof(vm));
	kl_bus_init(&vm.pio, "pio");
	kl_bus_init(&vm.mmio, "mmio");
	kl_mem_init_empty(&vm.mem);
	ram = calloc(1, RAM_SIZE);
	kl_mem_add_region(&vm.mem, 0, RAM_SIZE, ram);
	char *err = NULL;
	ck_assert_ptr_nonnull(kl_pci_host_create(&vm, &fake_ops, &err));
	char *s = g_strdup_printf("file=%s,id=d0,if=none,aio=threads,cache=writeback", img);
	struct kl_opts *o = kl_opts_parse(s, NULL, &err);
	char *ifv = NULL;
	ck_assert_msg(kl_drive_add(o, &ifv, &err) != NULL, "%s", err ? err : "");
	g_free(ifv);
	kl_opts_free(o);
	g_free(s);
	s = g_strdup_printf("virtio-blk-pci,drive=d0,serial=%s", serial);
	o = kl_opts_parse(s, "driver", &err);
	kl_opts_get(o, "driver");
	ck_assert_msg(kl_device_type_find("virtio-blk-pci")->create(&vm, o, &err) == 0, "%s",
		      err ? err : "");
	kl_opts_free(o);
	g_free(s);
	routes = irqfds = 0;
}

static void free_vm(void)
{
	kl_pci_host_destroy(&vm);
	ck_assert_uint_eq(kl_vmstate_count(&vm), 0); /* every section went with its device */
	kl_vmstate_free_all(&vm);
	kl_blockdev_close_all();
	kl_bus_destroy(&vm.pio);
	kl_bus_destroy(&vm.mmio);
	free(ram);
}

static struct kl_vring_desc *desc(unsigned i) { return (struct kl_vring_desc *)(ram + DESC) + i; }

static unsigned submit(uint32_t type, uint64_t sector, uint64_t data, uint32_t dlen, bool dev_writes)
{
	unsigned h = next_desc % QSZ;
	uint8_t *hdr = ram + HDR + 16 * h;
	memset(hdr, 0, 16);
	memcpy(hdr, &type, 4);
	memcpy(hdr + 8, &sector, 8);
	ram[STATUS + h] = 0xff;
	unsigned i = h;
	*desc(i) = (struct kl_vring_desc){ HDR + 16 * h, 16, KL_VRING_DESC_F_NEXT, (i + 1) % QSZ };
	i = (i + 1) % QSZ;
	*desc(i) = (struct kl_vring_desc){ data, dlen,
		KL_VRING_DESC_F_NEXT | (dev_writes ? KL_VRING_DESC_F_WRITE : 0), (i + 1) % QSZ };
	i = (i + 1) % QSZ;
	*desc(i) = (struct kl_vring_desc){ STATUS + h, 1, KL_VRING_DESC_F_WRITE, 0 };
	next_desc += 3;
	uint16_t *av = (uint16_t *)(ram + AVAIL);
	av[2 + avail_idx % QSZ] = h;
	avail_idx++;
	__atomic_store_n(&av[1], avail_idx, __ATOMIC_RELEASE);
	vw(KL_VPCI_NOTIFY_OFF, 2, 0);
	return h;
}

static uint16_t used_idx_ram(void)
{
	return __atomic_load_n((uint16_t *)(ram + USED) + 1, __ATOMIC_ACQUIRE);
}

static void wait_used(unsigned n)
{
	gint64 end = g_get_monotonic_time() + 20 * G_USEC_PER_SEC;
	while ((uint16_t)(used_idx_ram() - used_seen) < n) {
		ck_assert_msg(g_get_monotonic_time() < end, "timeout waiting for completion");
		g_main_context_iteration(kl_loop_context(), TRUE);
	}
	used_seen += n;
}

static unsigned msix_cap(void)
{
	uint8_t *c = kl_pci_config(vdev()->pci);
	for (unsigned o = c[KL_PCI_CAP_PTR]; o; o = c[o + 1])
		if (c[o] == KL_PCI_CAP_ID_MSIX)
			return o;
	ck_abort_msg("no MSI-X capability");
	return 0;
}

/* The guest's part: move BAR4, enable MSI-X with two vectors programmed,
 * negotiate features, set queue 0 up, write 3 sectors, leave one request in
 * flight. */
static void drive_guest(void)
{
	kl_pci_cfg_write(&vm, SLOT, 0, 0x20, 4, (uint32_t)NEW_BAR4);
	kl_pci_cfg_write(&vm, SLOT, 0, 0x24, 4, 0);
	bool mapped;
	ck_assert_uint_eq(kl_pci_bar_addr(vdev()->pci, KL_VPCI_BAR, &mapped), NEW_BAR4);
	ck_assert(mapped);
	uint64_t mbar = kl_pci_bar_addr(vdev()->pci, KL_VPCI_MSIX_BAR, NULL);
	for (unsigned v = 0; v < 2; v++) {
		kl_bus_write(&vm.mmio, mbar + 16 * v, 4, 0xfee00000u | v << 12);
		kl_bus_write(&vm.mmio, mbar + 16 * v + 8, 4, 0x40 + v);
		kl_bus_write(&vm.mmio, mbar + 16 * v + 12, 4, 0);
	}
	unsigned cap = msix_cap();
	kl_pci_cfg_write(&vm, SLOT, 0, cap + 2, 2, KL_PCI_MSIX_CTRL_ENABLE);
	ck_assert(kl_pci_msix_enabled(vdev()->pci));
	vw(KL_VPCI_STATUS, 1, 3);
	vw(KL_VPCI_GFSELECT, 4, 0);
	vw(KL_VPCI_GF, 4, 1u << 9 | 1u << KL_VIRTIO_F_EVENT_IDX | 1u << KL_VIRTIO_F_INDIRECT_DESC);
	vw(KL_VPCI_GFSELECT, 4, 1);
	vw(KL_VPCI_GF, 4, 1);
	vw(KL_VPCI_STATUS, 1, 3 | 8);
	vw(KL_VPCI_MSIX_CONFIG, 2, 1);
	memset(ram + DESC, 0, 0x3000);
	vw(KL_VPCI_Q_SELECT, 2, 0);
	vw(KL_VPCI_Q_SIZE, 2, QSZ);
	vw(KL_VPCI_Q_MSIX_VECTOR, 2, 0);
	vw(KL_VPCI_Q_DESC, 8, DESC);
	vw(KL_VPCI_Q_AVAIL, 8, AVAIL);
	vw(KL_VPCI_Q_USED, 8, USED);
	vw(KL_VPCI_Q_ENABLE, 2, 1);
	vw(KL_VPCI_STATUS, 1, 3 | 8 | 4);
	avail_idx = used_seen = next_desc = 0;
	for (unsigned k = 0; k < 3; k++) {
		memset(ram + DATA + 512 * k, 0x10 + k, 512);
		unsigned h = submit(1, k, DATA + 512 * k, 512, false);
		wait_used(1);
		ck_assert_uint_eq(ram[STATUS + h], 0);
	}
}

struct saved {
	char *name;
	GByteArray *buf;
};

/* quiesce every section, then save each (what src/migration does) */
static GPtrArray *save_all(void)
{
	char *err = NULL;
	for (unsigned i = 0; i < kl_vmstate_count(&vm); i++) {
		const struct kl_vmstate_entry *e = kl_vmstate_get(&vm, i);
		if (e->ops->quiesce)
			ck_assert_msg(e->ops->quiesce(e->opaque, &err) == 0, "%s", err);
	}
	GPtrArray *a = g_ptr_array_new();
	for (unsigned i = 0; i < kl_vmstate_count(&vm); i++) {
		const struct kl_vmstate_entry *e = kl_vmstate_get(&vm, i);
		struct kl_vms_out o;
		kl_vms_out_init(&o);
		ck_assert_msg(e->ops->save(e->opaque, &o, &err) == 0, "%s: %s", e->name, err);
		struct saved *s = g_new0(struct saved, 1);
		s->name = g_strdup(e->name);
		s->buf = o.buf;
		g_ptr_array_add(a, s);
	}
	return a;
}

static void saved_free(GPtrArray *a)
{
	for (unsigned i = 0; i < a->len; i++) {
		struct saved *s = g_ptr_array_index(a, i);
		g_free(s->name);
		g_byte_array_free(s->buf, TRUE);
		g_free(s);
	}
	g_ptr_array_free(a, TRUE);
}

static const struct saved *find_saved(GPtrArray *a, const char *name)
{
	for (unsigned i = 0; i < a->len; i++) {
		struct saved *s = g_ptr_array_index(a, i);
		if (strcmp(s->name, name) == 0)
			return s;
	}
	ck_abort_msg("no saved section %s", name);
	return NULL;
}

/* load one section as src/migration does; 0 or -1 with *msg */
static int load1(const char *name, const uint8_t *p, size_t len, char **msg)
{
	const struct kl_vmstate_entry *e = kl_vmstate_find(&vm, name);
	ck_assert_ptr_nonnull(e);
	return kl_vmstate_load_section(e, p, len, e->ops->version, msg);
}

static void load_all(GPtrArray *a)
{
	ck_assert_uint_eq(a->len, kl_vmstate_count(&vm));
	for (unsigned i = 0; i < a->len; i++) {
		struct saved *s = g_ptr_array_index(a, i);
		char *msg = NULL;
		ck_assert_msg(load1(s->name, s->buf->data, s->buf->len, &msg) == 0, "%s: %s", s->name,
			      msg);
	}
	for (unsigned i = 0; i < kl_vmstate_count(&vm); i++) {
		const struct kl_vmstate_entry *e = kl_vmstate_get(&vm, i);
		char *err = NULL;
		if (e->ops->post_load)
			ck_assert_msg(e->ops->post_load(e->opaque, &err) == 0, "%s", err);
	}
}

/* what must not change when a load is refused */
struct snap {
	uint8_t cfg[KL_PCI_CFG_SIZE];
	uint64_t features, guest_features;
	uint8_t status, isr;
	uint16_t config_vector;
	struct kl_virtq vq0;
	bool bar4_mapped;
	uint64_t bar4;
};
static void take(struct snap *s)
{
	struct kl_virtio_dev *vd = vdev();
	memset(s, 0, sizeof(*s));
	memcpy(s->cfg, kl_pci_config(vd->pci), KL_PCI_CFG_SIZE);
	s->features = vd->features;
	s->guest_features = vd->guest_features;
	s->status = vd->status;
	s->isr = vd->isr;
	s->config_vector = vd->config_vector;
	s->vq0 = vd->vqs[0];
	/* host pointers into (this process's copy of) guest RAM, generation */
	s->vq0.desc = NULL;
	s->vq0.avail = s->vq0.used = NULL;
	s->vq0.gen = 0;
	s->bar4 = kl_pci_bar_addr(vd->pci, KL_VPCI_BAR, &s->bar4_mapped);
}
static void same(const struct snap *a)
{
	struct snap b;
	take(&b);
	ck_assert_int_eq(memcmp(a->cfg, b.cfg, KL_PCI_CFG_SIZE), 0);
	ck_assert_uint_eq(a->features, b.features);
	ck_assert_uint_eq(a->guest_features, b.guest_features);
	ck_assert_uint_eq(a->status, b.status);
	ck_assert_uint_eq(a->config_vector, b.config_vector);
	ck_assert_int_eq(memcmp(&a->vq0, &b.vq0, sizeof(b.vq0)), 0);
	ck_assert_uint_eq(a->bar4, b.bar4);
	ck_assert_int_eq(a->bar4_mapped, b.bar4_mapped);
}

START_TEST(quiesce_completes_inflight)
{
	make_img();
	make_vm("SN1");
	drive_guest();
	/* one more write, not waited for: in flight when the VM stops */
	memset(ram + DATA + 0x4000, 0x77, 512);
	unsigned h = submit(1, 7, DATA + 0x4000, 512, false);
	ck_assert_uint_eq(vdev()->inflight, 1);
	uint16_t before = used_idx_ram();
	GPtrArray *a = save_all();
	/* quiesce completed it: status byte and used entry are in guest RAM */
	ck_assert_uint_eq(vdev()->inflight, 0);
	ck_assert_uint_eq((uint16_t)(used_idx_ram() - before), 1);
	ck_assert_uint_eq(ram[STATUS + h], 0);
	ck_assert_uint_eq(((uint32_t *)(ram + USED + 4))[2 * (3 % QSZ)], h);
	FILE *fp = fopen(img, "rb");
	uint8_t buf[512];
	fseek(fp, 7 * 512, SEEK_SET);
	ck_assert_uint_eq(fread(buf, 1, 512, fp), 512);
	fclose(fp);
	ck_assert_uint_eq(buf[0], 0x77);
	ck_assert_uint_eq(buf[511], 0x77);
	/* and the saved queue state agrees with the ring: nothing done twice */
	ck_assert_uint_eq(vdev()->vqs[0].last_avail, 4);
	ck_assert_uint_eq(vdev()->vqs[0].used_idx, 4);
	saved_free(a);
	free_vm();
	unlink(img);
}
END_TEST

START_TEST(roundtrip)
{
	make_img();
	make_vm("SN1");
	drive_guest();
	GPtrArray *a = save_all();
	ck_assert_uint_eq(a->len, 4); /* pci/00.0, pci/01.0, virtio-pci/01.0, virtio-blk/01.0 */
	find_saved(a, "pci/0000:00:00.0");
	find_saved(a, "virtio-blk/" ADDR);
	struct snap src;
	take(&src);
	uint8_t guest_ram[0x10000];
	memcpy(guest_ram, ram, sizeof(guest_ram));
	uint64_t mbar = kl_pci_bar_addr(vdev()->pci, KL_VPCI_MSIX_BAR, NULL);
	free_vm();

	make_vm("SN1");
	memcpy(ram, guest_ram, sizeof(guest_ram)); /* RAM arrives before the devices */
	ck_assert(kl_pci_bar_addr(vdev()->pci, KL_VPCI_BAR, NULL) != NEW_BAR4);
	ck_assert_int_eq(routes, 0);
	load_all(a);
	same(&src);
	struct kl_virtio_dev *vd = vdev();
	ck_assert(src.bar4_mapped);
	ck_assert_uint_eq(src.bar4, NEW_BAR4);
	ck_assert_uint_eq(vd->status, 3 | 8 | 4);
	ck_assert(kl_virtio_has_feature(vd, KL_VIRTIO_F_EVENT_IDX));
	ck_assert_uint_eq(vd->config_vector, 1);
	ck_assert_uint_eq(vd->vqs[0].size, QSZ);
	ck_assert(vd->vqs[0].enabled);
	ck_assert_uint_eq(vd->vqs[0].desc_gpa, DESC);
	ck_assert_uint_eq(vd->vqs[0].used_gpa, USED);
	ck_assert_uint_eq(vd->vqs[0].last_avail, 3);
	ck_assert_uint_eq(vd->vqs[0].used_idx, 3);
	ck_assert_uint_eq(vd->vqs[0].msix_vector, 0);
	ck_assert_ptr_eq(vd->vqs[0].desc, (void *)(ram + DESC));
	/* MSI-X table as the guest wrote it, and KVM routes + irqfds re-created
	 * for the two unmasked vectors */
	ck_assert(kl_pci_msix_enabled(vd->pci));
	uint64_t v;
	kl_bus_read(&vm.mmio, mbar + 16, 4, &v);
	ck_assert_uint_eq(v, 0xfee01000u);
	kl_bus_read(&vm.mmio, mbar + 16 + 8, 4, &v);
	ck_assert_uint_eq(v, 0x41);
	ck_assert(!kl_pci_msix_is_masked(vd->pci, 0));
	ck_assert(!kl_pci_msix_is_masked(vd->pci, 1));
	ck_assert_int_eq(routes, 2);
	ck_assert_int_eq(irqfds, 2);
	/* the old BAR4 place is free, the new one answers */
	ck_assert_ptr_nonnull(kl_bus_find(&vm.mmio, NEW_BAR4));
	ck_assert_uint_eq(vr(KL_VPCI_STATUS, 1), 3 | 8 | 4);
	/* the device carries on: the next entry is the 4th of the ring */
	avail_idx = used_seen = 3;
	next_desc = 9;
	memset(ram + DATA + 0x8000, 0, 512 * 3);
	unsigned h = submit(0, 0, DATA + 0x8000, 512 * 3, true);
	wait_used(1);
	ck_assert_uint_eq(ram[STATUS + h], 0);
	for (unsigned k = 0; k < 3; k++)
		ck_assert_uint_eq(ram[DATA + 0x8000 + 512 * k + 100], 0x10 + k);
	ck_assert_uint_eq(vd->vqs[0].used_idx, 4);
	saved_free(a);
	free_vm();
	unlink(img);
}
END_TEST

/* every strict prefix of every section fails cleanly, device unchanged */
START_TEST(truncated)
{
	make_img();
	make_vm("SN1");
	drive_guest();
	GPtrArray *a = save_all();
	free_vm();
	make_vm("SN1");
	struct snap s0;
	take(&s0);
	unsigned tried = 0;
	for (unsigned i = 0; i < a->len; i++) {
		struct saved *s = g_ptr_array_index(a, i);
		for (size_t len = 0; len < s->buf->len; len++) {
			char *msg = NULL;
			ck_assert_msg(load1(s->name, s->buf->data, len, &msg) < 0, "%s: %zu bytes loaded",
				      s->name, len);
			ck_assert_ptr_nonnull(msg);
			g_free(msg);
			same(&s0);
			tried++;
		}
	}
	ck_assert_uint_gt(tried, 256 + 100);
	saved_free(a);
	free_vm();
	unlink(img);
}
END_TEST

/* patch a copy of a section and expect a refusal naming the field */
static void refused(GPtrArray *a, const char *name, size_t off, const void *val, size_t n,
		    const char *expect)
{
	const struct saved *s = find_saved(a, name);
	ck_assert_uint_le(off + n, s->buf->len);
	uint8_t *p = g_memdup2(s->buf->data, s->buf->len);
	memcpy(p + off, val, n);
	struct snap s0;
	take(&s0);
	char *msg = NULL;
	ck_assert_msg(load1(name, p, s->buf->len, &msg) < 0, "%s +%zu accepted", name, off);
	ck_assert_msg(strstr(msg, expect), "%s: '%s' does not name '%s'", name, msg, expect);
	same(&s0);
	g_free(msg);
	g_free(p);
}

/* virtio-pci section layout (virtio_state.c): queue 0 starts at 53 */
#define VQ0 53

START_TEST(bad_values)
{
	make_img();
	make_vm("SN1");
	drive_guest();
	GPtrArray *a = save_all();
	free_vm();
	make_vm("SN1");
	uint16_t u16;
	uint64_t u64;
	uint32_t u32;
	const char *vp = "virtio-pci/" ADDR;
	u16 = 0;
	refused(a, vp, VQ0, &u16, 2, "queue 0: size 0");
	u16 = 12;
	refused(a, vp, VQ0, &u16, 2, "queue 0: size 12 is not a power of two");
	u16 = 512;
	refused(a, vp, VQ0, &u16, 2, "queue 0: size 512");
	u64 = RAM_SIZE - 0x10;
	refused(a, vp, VQ0 + 3, &u64, 8, "not in guest RAM");
	u64 = 0x100000000ULL;
	refused(a, vp, VQ0 + 19, &u64, 8, "not in guest RAM");
	u16 = 3 + QSZ + 1;
	refused(a, vp, VQ0 + 31, &u16, 2, "last_avail_idx 20");
	u16 = 99;
	refused(a, vp, VQ0 + 27, &u16, 2, "queue 0: MSI-X vector 99");
	u16 = 7;
	refused(a, vp, 40, &u16, 2, "config MSI-X vector 7");
	uint8_t st = 4 | 3;
	refused(a, vp, 36, &st, 1, "DRIVER_OK without FEATURES_OK");
	u64 = 1ULL << 40;
	refused(a, vp, 20, &u64, 8, "were not offered");
	u32 = 5;
	refused(a, vp, 0, &u32, 4, "number of queues differs");
	uint8_t two = 2;
	refused(a, vp, VQ0 + 29, &two, 1, "event_idx 2 is not 0 or 1");
	refused(a, vp, VQ0 + 30, &two, 1, "indirect 2 is not 0 or 1");
	/* PCI: identity, BAR over RAM, BAR type bits, MSI-X table */
	const char *pp = "pci/" ADDR;
	u16 = 0x1234;
	refused(a, pp, KL_PCI_DEVICE_ID, &u16, 2, "device id differs");
	u32 = 0x00100000 | 0xc; /* 64-bit prefetchable, inside RAM */
	refused(a, pp, 0x20, &u32, 4, "BAR4 at 0x100000 overlaps guest RAM");
	u32 = (uint32_t)NEW_BAR4 | 1;
	refused(a, pp, 0x20, &u32, 4, "BAR4 value");
	u32 = 3;
	refused(a, pp, 256 + 1 + 4 + 12, &u32, 4, "MSI-X vector 0: control 0x3");
	u32 = 0xfee00001;
	refused(a, pp, 256 + 1 + 4, &u32, 4, "not dword aligned");
	u32 = 9;
	refused(a, pp, 256 + 1, &u32, 4, "MSI-X vector count differs");
	/* virtio-blk: the destination's disk must be the same */
	u64 = 5;
	refused(a, "virtio-blk/" ADDR, 0, &u64, 8, "capacity differs");
	free_vm();
	/* a destination whose serial differs */
	make_vm("OTHER");
	const struct saved *s = find_saved(a, "virtio-blk/" ADDR);
	char *msg = NULL;
	ck_assert_int_lt(load1(s->name, s->buf->data, s->buf->len, &msg), 0);
	ck_assert_msg(strstr(msg, "serial differs: stream 'SN1', here 'OTHER'"), "%s", msg);
	g_free(msg);
	saved_free(a);
	free_vm();
	unlink(img);
}
END_TEST

int main(void)
{
	kl_loop_init();
	Suite *s = suite_create("virtio-state");
	TCase *tc = tcase_create("state");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, quiesce_completes_inflight);
	tcase_add_test(tc, roundtrip);
	tcase_add_test(tc, truncated);
	tcase_add_test(tc, bad_values);
	suite_add_tcase(s, tc);
	return kl_check_run(s);
}
