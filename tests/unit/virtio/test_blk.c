/* virtio-blk-pci over the real block layer (threads engine, temp image),
 * driven through PCI config + BAR accesses by a tiny in-test driver. */
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
#define HDR 0x8000     /* request headers, 16 bytes each */
#define STATUS 0x9000  /* status bytes */
#define DATA 0x10000

static const struct kl_pci_platform_ops fake_ops; /* all NULL: no KVM */
static struct kl_vm vm;
static uint8_t *ram;
static char img[64];
static uint64_t bar;
static unsigned slot;
static uint16_t avail_idx, used_seen, next_desc;

static uint32_t cfg_rd(unsigned off, unsigned size)
{
	return kl_pci_cfg_read(&vm, slot, 0, off, size);
}
static void vw(unsigned off, unsigned size, uint64_t v) { kl_bus_write(&vm.mmio, bar + off, size, v); }
static uint64_t vr(unsigned off, unsigned size)
{
	uint64_t v;
	kl_bus_read(&vm.mmio, bar + off, size, &v);
	return v;
}

static void make_vm(const char *drive_opts, const char *dev_opts)
{
	memset(&vm, 0, sizeof(vm));
	kl_bus_init(&vm.pio, "pio");
	kl_bus_init(&vm.mmio, "mmio");
	kl_mem_init_empty(&vm.mem);
	ram = calloc(1, RAM_SIZE);
	kl_mem_add_region(&vm.mem, 0, RAM_SIZE, ram);
	char *err = NULL;
	ck_assert_ptr_nonnull(kl_pci_host_create(&vm, &fake_ops, &err));

	strcpy(img, "/tmp/kl-vblk-XXXXXX");
	int fd = mkstemp(img);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, IMG_SIZE), 0);
	close(fd);
	char *s = g_strdup_printf("file=%s,%s", img, drive_opts);
	struct kl_opts *o = kl_opts_parse(s, NULL, &err);
	ck_assert_ptr_nonnull(o);
	char *ifv = NULL;
	ck_assert_msg(kl_drive_add(o, &ifv, &err) != NULL, "%s", err ? err : "");
	g_free(ifv);
	kl_opts_free(o);
	g_free(s);

	const struct kl_device_type *t = kl_device_type_find("virtio-blk-pci");
	ck_assert_ptr_nonnull(t);
	o = kl_opts_parse(dev_opts, "driver", &err);
	ck_assert_ptr_nonnull(o);
	kl_opts_get(o, "driver");
	ck_assert_msg(t->create(&vm, o, &err) == 0, "%s", err ? err : "");
	ck_assert_int_eq(kl_opts_check_unused(o, "virtio-blk-pci", &err), 0);
	kl_opts_free(o);
	/* first device slot */
	slot = 1;
	ck_assert_uint_eq(cfg_rd(0, 4), (0x1040u + 2) << 16 | 0x1af4);
	bar = cfg_rd(0x20, 4) & ~0xfu;
	bar |= (uint64_t)cfg_rd(0x24, 4) << 32;
}

static void free_vm(void)
{
	kl_pci_host_destroy(&vm); /* the device first: it drains its backend */
	kl_vmstate_free_all(&vm); /* the (now empty) section registry */
	kl_blockdev_close_all();
	kl_bus_destroy(&vm.pio);
	kl_bus_destroy(&vm.mmio);
	free(ram);
	unlink(img);
}

static void drv_init(unsigned q, uint32_t feat_lo)
{
	vw(KL_VPCI_STATUS, 1, 0);
	ck_assert_uint_eq(vr(KL_VPCI_STATUS, 1), 0);
	vw(KL_VPCI_STATUS, 1, 3);
	vw(KL_VPCI_GFSELECT, 4, 0);
	vw(KL_VPCI_GF, 4, feat_lo);
	vw(KL_VPCI_GFSELECT, 4, 1);
	vw(KL_VPCI_GF, 4, 1);
	vw(KL_VPCI_STATUS, 1, 3 | 8);
	ck_assert_uint_eq(vr(KL_VPCI_STATUS, 1), 3 | 8);
	memset(ram + DESC, 0, 0x3000);
	vw(KL_VPCI_Q_SELECT, 2, q);
	vw(KL_VPCI_Q_SIZE, 2, QSZ);
	vw(KL_VPCI_Q_DESC, 8, DESC);
	vw(KL_VPCI_Q_AVAIL, 8, AVAIL);
	vw(KL_VPCI_Q_USED, 8, USED);
	vw(KL_VPCI_Q_ENABLE, 2, 1);
	vw(KL_VPCI_STATUS, 1, 3 | 8 | 4);
	avail_idx = used_seen = next_desc = 0;
}

static struct kl_vring_desc *desc(unsigned i) { return (struct kl_vring_desc *)(ram + DESC) + i; }

/* one request: header, optional data (dir: write = device-writable), status */
static unsigned submit(unsigned q, uint32_t type, uint64_t sector, uint64_t data, uint32_t dlen,
		       bool dev_writes)
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
	if (dlen) {
		*desc(i) = (struct kl_vring_desc){ data, dlen,
			KL_VRING_DESC_F_NEXT | (dev_writes ? KL_VRING_DESC_F_WRITE : 0), (i + 1) % QSZ };
		i = (i + 1) % QSZ;
	}
	*desc(i) = (struct kl_vring_desc){ STATUS + h, 1, KL_VRING_DESC_F_WRITE, 0 };
	next_desc += dlen ? 3 : 2;
	uint16_t *av = (uint16_t *)(ram + AVAIL);
	av[2 + avail_idx % QSZ] = h;
	avail_idx++;
	__atomic_store_n(&av[1], avail_idx, __ATOMIC_RELEASE);
	vw(KL_VPCI_NOTIFY_OFF + KL_VPCI_NOTIFY_MULT * q, 2, q);
	return h;
}

/* run the loop until n more used entries appear */
static void wait_used(unsigned n)
{
	uint16_t *used = (uint16_t *)(ram + USED);
	gint64 end = g_get_monotonic_time() + 20 * G_USEC_PER_SEC;
	while ((uint16_t)(__atomic_load_n(&used[1], __ATOMIC_ACQUIRE) - used_seen) < n) {
		ck_assert_msg(g_get_monotonic_time() < end, "timeout waiting for completion");
		g_main_context_iteration(kl_loop_context(), TRUE);
	}
	used_seen += n;
}

static uint32_t used_len(unsigned k)
{
	return ((uint32_t *)(ram + USED + 4))[2 * (k % QSZ) + 1];
}

static uint8_t do_req(uint32_t type, uint64_t sector, uint64_t data, uint32_t dlen, bool dev_writes)
{
	unsigned h = submit(0, type, sector, data, dlen, dev_writes);
	wait_used(1);
	return ram[STATUS + h];
}

START_TEST(rw_flush_getid)
{
	make_vm("id=d0,if=none,aio=threads,cache=writeback", "virtio-blk-pci,drive=d0,serial=SN123");
	vw(KL_VPCI_DFSELECT, 4, 0);
	uint32_t f = vr(KL_VPCI_DF, 4);
	ck_assert(f & (1u << 9));   /* FLUSH */
	ck_assert(f & (1u << 13));  /* DISCARD */
	ck_assert(!(f & (1u << 5))); /* not RO */
	ck_assert(!(f & (1u << 12))); /* not MQ */
	ck_assert_uint_eq(vr(KL_VPCI_DEVCFG_OFF, 8), IMG_SIZE / 512);
	ck_assert_uint_eq(vr(KL_VPCI_DEVCFG_OFF + 20, 4), 512);
	drv_init(0, 1u << 9 | 1u << 13 | 1u << 14 | 1u << 28);

	for (unsigned i = 0; i < 2048; i++)
		ram[DATA + i] = i * 7 + 3;
	ck_assert_uint_eq(do_req(1, 10, DATA, 2048, false), 0);
	ck_assert_uint_eq(used_len(0), 1);
	ck_assert_uint_eq(do_req(4, 0, 0, 0, false), 0);
	memset(ram + DATA + 0x10000, 0, 2048);
	ck_assert_uint_eq(do_req(0, 10, DATA + 0x10000, 2048, true), 0);
	ck_assert_uint_eq(used_len(2), 2049);
	ck_assert_int_eq(memcmp(ram + DATA, ram + DATA + 0x10000, 2048), 0);
	/* the image file really holds it */
	FILE *fp = fopen(img, "rb");
	uint8_t buf[2048];
	fseek(fp, 10 * 512, SEEK_SET);
	ck_assert_uint_eq(fread(buf, 1, 2048, fp), 2048);
	fclose(fp);
	ck_assert_int_eq(memcmp(buf, ram + DATA, 2048), 0);
	/* GET_ID */
	memset(ram + DATA, 0xaa, 20);
	ck_assert_uint_eq(do_req(8, 0, DATA, 20, true), 0);
	ck_assert_str_eq((char *)ram + DATA, "SN123");
	ck_assert_uint_eq(ram[DATA + 19], 0);
	/* out of range, partial sector, unknown type */
	ck_assert_uint_eq(do_req(0, IMG_SIZE / 512 - 1, DATA, 1024, true), 1);
	ck_assert_uint_eq(do_req(1, ~0ULL / 256, DATA, 512, false), 1);
	ck_assert_uint_eq(do_req(0, 0, DATA, 100, true), 1);
	ck_assert_uint_eq(do_req(99, 0, DATA, 512, true), 2);
	/* WRITE_ZEROES then read back zeros; DISCARD with unmap flag: UNSUPP */
	uint64_t seg[2] = { 10, 1 };
	memcpy(ram + DATA + 0x20000, seg, 16);
	ck_assert_uint_eq(do_req(13, 0, DATA + 0x20000, 16, false), 0);
	memset(ram + DATA, 0x55, 512);
	ck_assert_uint_eq(do_req(0, 10, DATA, 512, true), 0);
	for (unsigned i = 0; i < 512; i++)
		ck_assert_uint_eq(ram[DATA + i], 0);
	seg[1] = 1ULL | 1ULL << 32;
	memcpy(ram + DATA + 0x20000, seg, 16);
	ck_assert_uint_eq(do_req(11, 0, DATA + 0x20000, 16, false), 2);
	seg[1] = 4;
	memcpy(ram + DATA + 0x20000, seg, 16);
	ck_assert_uint_eq(do_req(11, 0, DATA + 0x20000, 16, false), 0);
	seg[0] = IMG_SIZE / 512;
	memcpy(ram + DATA + 0x20000, seg, 16);
	ck_assert_uint_eq(do_req(11, 0, DATA + 0x20000, 16, false), 1);
	free_vm();
}
END_TEST

START_TEST(readonly_drive)
{
	make_vm("id=ro0,if=none,aio=threads,cache=writethrough,readonly=on",
		"virtio-blk-pci,drive=ro0");
	vw(KL_VPCI_DFSELECT, 4, 0);
	ck_assert(vr(KL_VPCI_DF, 4) & (1u << 5));
	drv_init(0, 1u << 5);
	ck_assert_uint_eq(do_req(1, 0, DATA, 512, false), 1);
	ck_assert_uint_eq(do_req(0, 0, DATA, 512, true), 0);
	free_vm();
}
END_TEST

START_TEST(bad_request_needs_reset)
{
	make_vm("id=d1,if=none,aio=threads,cache=writeback", "virtio-blk-pci,drive=d1");
	drv_init(0, 0);
	/* header only, no status descriptor */
	*desc(0) = (struct kl_vring_desc){ HDR, 16, 0, 0 };
	uint16_t *av = (uint16_t *)(ram + AVAIL);
	av[2] = 0;
	av[1] = 1;
	vw(KL_VPCI_NOTIFY_OFF, 2, 0);
	ck_assert_uint_eq(vr(KL_VPCI_STATUS, 1) & KL_VIRTIO_S_NEEDS_RESET, KL_VIRTIO_S_NEEDS_RESET);
	drv_init(0, 0);
	ck_assert_uint_eq(do_req(1, 0, DATA, 512, false), 0);
	free_vm();
}
END_TEST

START_TEST(reset_drains_inflight)
{
	make_vm("id=d2,if=none,aio=threads,cache=writeback", "virtio-blk-pci,drive=d2");
	drv_init(0, 0);
	unsigned h = submit(0, 0, 0, DATA, 4096, true);
	/* reset before the completion ran: status stays non-zero */
	vw(KL_VPCI_STATUS, 1, 0);
	ck_assert_uint_ne(vr(KL_VPCI_STATUS, 1), 0);
	/* no queue can be enabled before the reset has completed */
	vw(KL_VPCI_Q_SELECT, 2, 0);
	vw(KL_VPCI_Q_ENABLE, 2, 1);
	ck_assert_uint_eq(vr(KL_VPCI_Q_ENABLE, 2), 0);
	gint64 end = g_get_monotonic_time() + 20 * G_USEC_PER_SEC;
	while (vr(KL_VPCI_STATUS, 1) != 0) {
		ck_assert(g_get_monotonic_time() < end);
		g_main_context_iteration(kl_loop_context(), TRUE);
	}
	/* the stale completion wrote neither status nor used ring */
	ck_assert_uint_eq(ram[STATUS + h], 0xff);
	ck_assert_uint_eq(((uint16_t *)(ram + USED))[1], 0);
	drv_init(0, 0);
	ck_assert_uint_eq(do_req(0, 0, DATA, 512, true), 0);
	free_vm();
}
END_TEST

START_TEST(multiqueue)
{
	make_vm("id=d3,if=none,aio=threads,cache=none", "virtio-blk-pci,drive=d3,num-queues=2");
	vw(KL_VPCI_DFSELECT, 4, 0);
	ck_assert(vr(KL_VPCI_DF, 4) & (1u << 12));
	ck_assert_uint_eq(vr(KL_VPCI_NUM_QUEUES, 2), 2);
	ck_assert_uint_eq(vr(KL_VPCI_DEVCFG_OFF + 34, 2), 2);
	/* queue 1 only (rings at the same addresses; queue 0 stays disabled) */
	drv_init(1, 1u << 12);
	memset(ram + DATA, 0x3c, 512);
	unsigned h = submit(1, 1, 5, DATA, 512, false);
	wait_used(1);
	ck_assert_uint_eq(ram[STATUS + h], 0);
	free_vm();
}
END_TEST

START_TEST(create_errors)
{
	memset(&vm, 0, sizeof(vm));
	kl_bus_init(&vm.pio, "pio");
	kl_bus_init(&vm.mmio, "mmio");
	char *err = NULL;
	ck_assert_ptr_nonnull(kl_pci_host_create(&vm, &fake_ops, &err));
	const struct kl_device_type *t = kl_device_type_find("virtio-blk-pci");
	const char *bad[] = { "virtio-blk-pci", "virtio-blk-pci,drive=nope",
			      "virtio-blk-pci,drive=x,num-queues=0" };
	for (unsigned i = 0; i < G_N_ELEMENTS(bad); i++) {
		struct kl_opts *o = kl_opts_parse(bad[i], "driver", &err);
		kl_opts_get(o, "driver");
		err = NULL;
		ck_assert_int_eq(t->create(&vm, o, &err), -1);
		ck_assert_ptr_nonnull(err);
		ck_assert_ptr_null(strchr(err, '\n'));
		g_free(err);
		kl_opts_free(o);
	}
	kl_pci_host_destroy(&vm);
	kl_vmstate_free_all(&vm); /* the (now empty) section registry */
	kl_bus_destroy(&vm.pio);
	kl_bus_destroy(&vm.mmio);
}
END_TEST

int main(void)
{
	kl_loop_init();
	Suite *s = suite_create("virtio-blk");
	TCase *tc = tcase_create("blk");
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, rw_flush_getid);
	tcase_add_test(tc, readonly_drive);
	tcase_add_test(tc, bad_request_needs_reset);
	tcase_add_test(tc, reset_drains_inflight);
	tcase_add_test(tc, multiqueue);
	tcase_add_test(tc, create_errors);
	suite_add_tcase(s, tc);
	return kl_check_run(s);
}
